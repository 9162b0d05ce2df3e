#!/usr/bin/python3
"""The TLS side of the public ServerOptions and Server::reload(), through
h2loop_api_app: SNI certificates (ServerOptions::sni), a cleartext
listener next to the TLS one (listen_h2c), and reload() re-reading the
certificate files for new connections while an open connection goes on.

The clients verify against a CA made here (test_sni.Pki), so a handshake
that succeeds for a name proves which certificate was served. TLS only:
the cases skip in the h2c variants.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import configlib  # noqa: E402
import harness  # noqa: E402
from harness import TLS  # noqa: E402
from test_sni import CertServer, Pki, handshake  # noqa: E402


def ports(server):
    m = re.search(r"api app ports: ([\d ]+)", server.log_text())
    assert m, server.log_text()
    return [int(p) for p in m.group(1).split()]


@unittest.skipUnless(TLS, "certificates need TLS")
class TlsOptions(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="api-tls-", dir=harness.workdir())
        self.pki = Pki(self.dir)

    def test_sni_certificates_and_a_cleartext_listener(self):
        default = self.pki.issue("default", ["default.test"])
        a = self.pki.issue("a", ["a.test"])
        with CertServer(default[0], default[1], "--sni-cert", a[0], a[1],
                        "--listen-h2c", "127.0.0.1:0") as s:
            self.assertEqual(configlib.der(a[0]), handshake(self.pki, s.port, "a.test"))
            self.assertEqual(configlib.der(default[0]),
                             handshake(self.pki, s.port, "default.test"))
            tls_port, h2c_port = ports(s)
            self.assertEqual(tls_port, s.port)
            out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                  "-w", "%{http_version} %{http_code}",
                                  "http://127.0.0.1:%d/whoami" % h2c_port],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, "2 200", out.stderr)

    def test_reload_serves_new_certificates_and_keeps_open_connections(self):
        d = os.path.join(self.dir, "live")
        os.mkdir(d)
        certs, live, swap = configlib.live_certificates(d)
        with CertServer(live[0], live[1]) as s:
            self.assertEqual(configlib.der(certs[0][0]), configlib.served_certificate(s.port))
            # An HTTP/2 connection opened before the reload ...
            client = harness.H2Client(s)
            self.assertEqual(client.get("/whoami")["status"], 200)
            swap(1)
            s.signal(signal.SIGHUP)
            s.wait_log(r"api app: reloaded \(0 option")
            # ... new connections get the new certificate ...
            self.assertEqual(configlib.der(certs[1][0]), configlib.served_certificate(s.port))
            # ... and the old connection still answers.
            self.assertEqual(client.get("/whoami")["status"], 200)
            client.close()
            # A key that does not match: the reload fails, nothing changes.
            with open(certs[0][1]) as f, open(live[1], "w") as out:
                out.write(f.read())
            s.signal(signal.SIGHUP)
            s.wait_log(r"api app: reload failed: .*key values mismatch")
            self.assertEqual(configlib.der(certs[1][0]), configlib.served_certificate(s.port))


if __name__ == "__main__":
    unittest.main()
