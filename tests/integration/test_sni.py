#!/usr/bin/python3
"""Several certificates chosen by SNI, and a cleartext listener next to the
TLS ones.

The certificates are issued by a CA made here, and every client verifies
the chain and the host name against it (Python's ssl with check_hostname,
curl with --cacert): a handshake that succeeds for a name proves that the
certificate for that name was served. The default certificate is checked
byte for byte where no name matches (no SNI, an unknown name).

TLS only (the h2c variants have no certificates to choose from): the
cases skip there.
"""

import os
import re
import socket
import ssl
import subprocess
import tempfile
import unittest

import configlib
import harness
from harness import BIN, TLS

NGHTTP = "nghttp"


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


class Pki:
    """A CA and certificates it issued, each for the names given."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=h2loop test CA", "-keyout", self.ca_key,
            "-out", self.ca)

    def issue(self, name, sans=None, cn=None, subject=None):
        """A certificate `name`.pem/.key with these DNS subjectAltNames (none:
        no subjectAltName at all, only the CN)."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", subject or "/CN=" + (cn or name), "-keyout", key, "-out", csr)
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", ext)
        return cert, key

    def context(self, alpn=("h2",)):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def handshake(pki, port, server_name, verify=True):
    """The DER certificate served to a client sending `server_name` as SNI
    (None: no SNI). verify: the chain and `server_name` are checked, so the
    handshake fails unless the certificate carries that name."""
    ctx = pki.context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return s.getpeercert(binary_form=True)


class CertServer(harness.Server):
    """h2loop with these default certificate files instead of the harness's."""

    def __init__(self, cert, key, *extra):
        super().__init__(*extra)
        self.cert_files = (cert, key)

    def args(self):
        a = super().args()
        a[a.index("--cert") + 1], a[a.index("--key") + 1] = self.cert_files
        return a


@unittest.skipUnless(TLS, "SNI needs TLS")
class Sni(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="h2loop-sni-", dir=harness.workdir())
        cls.pki = Pki(cls.dir)
        cls.default = cls.pki.issue("default", ["default.test"])
        cls.a = cls.pki.issue("a", ["a.test", "*.wild.test"])
        cls.b = cls.pki.issue("b", ["b.test"])
        # No subjectAltName: chosen by its CN.
        cls.c = cls.pki.issue("c", None, cn="c.test")
        cls.server = CertServer(cls.default[0], cls.default[1],
                                "--sni-cert", cls.a[0], cls.a[1],
                                "--sni-cert", cls.b[0], cls.b[1],
                                "--sni-cert", cls.c[0], cls.c[1])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_each_name_gets_its_certificate(self):
        # Verified against the name: the handshake fails on any other certificate.
        for name, files in [("a.test", self.a), ("b.test", self.b), ("c.test", self.c),
                            ("x.wild.test", self.a), ("B.Test", self.b),
                            ("default.test", self.default)]:
            with self.subTest(name=name):
                self.assertEqual(configlib.der(files[0]), handshake(self.pki, self.server.port, name))

    def test_no_match_gets_the_default(self):
        d = configlib.der(self.default[0])
        # No SNI, an unknown name, and names a wildcard does not cover (the
        # bare domain, two labels).
        for name in [None, "other.test", "wild.test", "y.x.wild.test"]:
            with self.subTest(name=name):
                self.assertEqual(d, handshake(self.pki, self.server.port, name, verify=False))

    def test_requests_over_http2_and_http1_per_name(self):
        # curl verifies the chain and the name; ALPN and the request go on
        # over the certificate SNI chose.
        for name in ["a.test", "x.wild.test", "b.test"]:
            for proto in ["--http2", "--http1.1"]:
                with self.subTest(name=name, proto=proto):
                    out = subprocess.run(
                        ["curl", "-sS", proto, "--cacert", self.pki.ca, "--resolve",
                         "%s:%d:127.0.0.1" % (name, self.server.port), "-o", "/dev/null",
                         "-w", "%{http_version} %{http_code}",
                         "https://%s:%d/index.html" % (name, self.server.port)],
                        capture_output=True, text=True, timeout=30)
                    self.assertEqual(out.returncode, 0, out.stderr)
                    self.assertEqual(out.stdout, "2 200" if proto == "--http2" else "1.1 200")

    def test_wrong_certificate_fails_verification(self):
        # The check has teeth: a name no certificate carries gets the
        # default one, which a verifying client refuses.
        with self.assertRaises(ssl.SSLCertVerificationError):
            handshake(self.pki, self.server.port, "other.test")


@unittest.skipUnless(TLS, "SNI needs TLS")
class SniConfig(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="h2loop-sni-", dir=harness.workdir())
        self.pki = Pki(self.dir)
        self.default = self.pki.issue("default", ["default.test"])
        self.a = self.pki.issue("a", ["a.test"])

    def config(self, sni=()):
        body = configlib.base_config(self.dir, cert=self.default[0], key=self.default[1])
        for cert, key in sni:
            body += '[[tls.sni]]\ncert = "%s"\nkey = "%s"\n' % (cert, key)
        return body

    def test_reload_adds_a_certificate(self):
        with configlib.ConfigServer(self.dir, self.config()) as s:
            d = configlib.der(self.default[0])
            self.assertEqual(d, handshake(self.pki, s.port, "a.test", verify=False))
            s.write(self.config([self.a]))
            s.reload()
            self.assertEqual(configlib.der(self.a[0]), handshake(self.pki, s.port, "a.test"))
            # And away again.
            s.write(self.config())
            s.reload()
            self.assertEqual(d, handshake(self.pki, s.port, "a.test", verify=False))

    def test_check_prints_the_certificates_and_reads_them_back(self):
        path = os.path.join(self.dir, "h2loop.toml")
        with open(path, "w") as f:
            f.write(self.config([self.a]))
        out = subprocess.run([BIN, "--config", path, "--check"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("[[tls.sni]]", out.stdout)
        self.assertIn(self.a[0], out.stdout)
        again = os.path.join(self.dir, "again.toml")
        with open(again, "w") as f:
            f.write(out.stdout)
        out2 = subprocess.run([BIN, "--config", again, "--check"], capture_output=True, text=True,
                              timeout=30)
        self.assertEqual(out2.returncode, 0, out2.stderr)
        self.assertEqual(out.stdout, out2.stdout)

    def test_a_certificate_without_names_is_refused(self):
        # A certificate no SNI could ever choose is a configuration mistake.
        nameless = self.pki.issue("nameless", None, subject="/O=h2loop tests")
        out = subprocess.run([BIN, "--listen", "127.0.0.1:0", "--root", harness.document_root(),
                              "--cert", self.default[0], "--key", self.default[1],
                              "--sni-cert", nameless[0], nameless[1], "--check"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stdout)
        self.assertIn("carries no DNS name", out.stderr)
        self.assertIn(nameless[0], out.stderr)

    def test_sni_without_a_default_certificate_is_refused(self):
        out = subprocess.run([BIN, "--listen", "127.0.0.1:0", "--root", harness.document_root(),
                              "--sni-cert", self.a[0], self.a[1], "--check"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stdout)
        self.assertIn("need a default certificate", out.stderr)

    def test_bad_sni_entry_names_file_line_and_key(self):
        path = os.path.join(self.dir, "bad.toml")
        with open(path, "w") as f:
            f.write(self.config() + '[[tls.sni]]\ncert = "%s"\n' % self.a[0])
        out = subprocess.run([BIN, "--config", path, "--check"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertRegex(out.stderr, r"bad\.toml:\d+:\d+: tls\.sni\[0\]\.key: missing")


@unittest.skipUnless(TLS, "a cleartext listener next to TLS ones needs TLS")
class CleartextListener(unittest.TestCase):
    def test_tls_and_h2c_side_by_side(self):
        d = tempfile.mkdtemp(prefix="h2loop-listen-", dir=harness.workdir())
        body = configlib.base_config(d).replace(
            'listen = "127.0.0.1:0"',
            'listen = ["127.0.0.1:0", { address = "127.0.0.1:0", tls = false }]')
        with configlib.ConfigServer(d, body) as s:
            text = s.log_text()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+), 127\.0\.0\.1:(\d+) \(h2c\)", text)
            self.assertIsNotNone(m, text)
            tls_port, h2c_port = int(m.group(1)), int(m.group(2))
            self.assertEqual(tls_port, s.port)
            # h2c (prior knowledge) and HTTP/1.1 in cleartext on one port ...
            out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
                                  "%{http_version} %{http_code}",
                                  "http://127.0.0.1:%d/index.html" % h2c_port],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, "2 200", out.stderr)
            out = subprocess.run(["curl", "-sS", "--http1.1", "-o", "/dev/null", "-w",
                                  "%{http_version} %{http_code}",
                                  "http://127.0.0.1:%d/index.html" % h2c_port],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, "1.1 200", out.stderr)
            # ... TLS on the other, and no cleartext there.
            out = subprocess.run(["curl", "-sSk", "--http2", "-o", "/dev/null", "-w",
                                  "%{http_version} %{http_code}",
                                  "https://127.0.0.1:%d/index.html" % tls_port],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, "2 200", out.stderr)
            out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                  "http://127.0.0.1:%d/index.html" % tls_port],
                                 capture_output=True, text=True, timeout=30)
            self.assertNotEqual(out.returncode, 0)
            # The file's listener table reads back through --check.
            out = subprocess.run([BIN, "--config", s.path, "--check"], capture_output=True,
                                 text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"listen = \[ '127\.0\.0\.1:0', "
                                         r"\{ address = '127\.0\.0\.1:0', tls = false \} \]")

    def test_listen_h2c_flag(self):
        with harness.Server("--listen-h2c", "127.0.0.1:0") as s:
            m = re.search(r"listening on 127\.0\.0\.1:\d+, 127\.0\.0\.1:(\d+) \(h2c\)",
                          s.log_text())
            self.assertIsNotNone(m, s.log_text())
            # nghttp exits 0 even when no request was processed: its
            # statistics must show the 200.
            out = subprocess.run([NGHTTP, "-n", "-s", "http://127.0.0.1:%s/index.html" % m.group(1)],
                                 capture_output=True, text=True, timeout=30)
            self.assertRegex(out.stdout, r"\s200\s+\d+\s+/index\.html", out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()
