"""Helpers for the suites that configure h2loop with a file and reload it
(tests/integration/test_config.py, tests/leak/test_reload_leaks.py)."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import harness
from harness import BIN, TLS


def make_certificate(directory, cn):
    cert = os.path.join(directory, cn + ".pem")
    key = os.path.join(directory, cn + ".key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


def live_certificates(directory):
    """Two certificates and the pair of file names the server is given
    ("live"), holding the first; swap(i) copies certificate i over them."""
    certs = [make_certificate(directory, "one"), make_certificate(directory, "two")]
    live = os.path.join(directory, "live.pem"), os.path.join(directory, "live.key")

    def swap(i):
        shutil.copy(certs[i][0], live[0])
        shutil.copy(certs[i][1], live[1])
    swap(0)
    return certs, live, swap


def der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def served_certificate(port):
    """The DER certificate a new TLS connection to `port` is given."""
    ctx = harness.tls_context(("h2",))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


class ConfigServer(harness.Server):
    """h2loop configured by a file: only --config, the loop and the metrics
    path on the command line, so that what a reload re-reads is the file."""

    def __init__(self, directory, body, *extra, env=None):
        super().__init__(*extra, env=env)
        self.dir = directory
        self.path = os.path.join(directory, "h2loop.toml")
        self.write(body)

    def write(self, body):
        # Written whole and renamed, so a reload never reads half a file.
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(body)
        os.replace(tmp, self.path)

    def args(self):
        return [BIN, "--config", self.path, "--event-loop", self.loop,
                "--metrics-path", harness.METRICS] + self.extra

    def reload(self, expect="reload done", timeout=15):
        """SIGHUP, then waits for the log line that ends this reload."""
        seen = len(self.log_text().split("SIGHUP: reloading"))
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            parts = text.split("SIGHUP: reloading")
            if len(parts) > seen and re.search(r"reload done|reload failed", parts[-1]):
                self.last_reload = parts[-1]
                if expect not in parts[-1]:
                    raise AssertionError("reload: expected %r in\n%s" % (expect, parts[-1]))
                return parts[-1]
            time.sleep(0.02)
        raise AssertionError("no end of reload in the log:\n" + self.log_text()[-3000:])


def base_config(directory, extra="", cert=None, key=None, timeouts=""):
    body = 'listen = "127.0.0.1:0"\nroot = "%s"\nlog_level = "info"\n' % harness.document_root()
    body += extra
    if TLS:
        if cert is None:
            cert, key = harness.certificate()
        body += '[tls]\ncert = "%s"\nkey = "%s"\n' % (cert, key)
    if timeouts:
        body += "[timeouts]\n" + timeouts
    return body


_session_ctx = None


def tls_session(port, session=None):
    """One HTTP/1.1 request over a new TLS connection, offering `session`
    for resumption. Returns (resumed?, the session to offer next time): the
    TLS 1.3 ticket arrives after the handshake, so the answer is read first."""
    global _session_ctx
    if _session_ctx is None:
        # One context: Python resumes a session only on the context it came from.
        _session_ctx = ssl.create_default_context()
        _session_ctx.check_hostname = False
        _session_ctx.verify_mode = ssl.CERT_NONE
        _session_ctx.set_alpn_protocols(["http/1.1"])
    ctx = _session_ctx
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET /index.html HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:100]
            return s.session_reused, s.session


def ticket_key(directory, name):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(os.urandom(80))
    return path


def ocsp_setup(directory):
    """A CA, a certificate it issued, and a DER OCSP response ("good") for
    it signed by the CA, made with openssl's own responder."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=h2loop test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=localhost", "-keyout", "leaf.key", "-out", "leaf.csr")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "4660",
        "-days", "2", "-extfile", "ext.cnf", "-out", "leaf.pem")
    with open(os.path.join(directory, "index.txt"), "w") as f:
        f.write("V\t301231235959Z\t\t1234\tunknown\t/CN=localhost\n")
    run("ocsp", "-issuer", "ca.pem", "-cert", "leaf.pem", "-reqout", "req.der", "-no_nonce")
    run("ocsp", "-index", "index.txt", "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem",
        "-reqin", "req.der", "-respout", "ocsp.der", "-ndays", "1")
    return (os.path.join(directory, "leaf.pem"), os.path.join(directory, "leaf.key"),
            os.path.join(directory, "ocsp.der"))
