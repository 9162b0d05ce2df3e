#!/usr/bin/python3
"""HTTP/1.1 next to HTTP/2 on the same listener: real clients (curl, wget,
h2load --h1, Python's http.client, nghttp) and hand-written hostile input,
on the backend and transport chosen by the environment (see harness.py).

Over TLS a raw HTTP/1.1 client offers ALPN http/1.1 (or none); on cleartext
anything that does not start with the HTTP/2 preface is HTTP/1.1.

Every refusal is checked the same way: its status line, `connection:
close`, a text/plain body "<status> <reason>\\n", nothing after it (input
that followed the bad request is discarded), the server's FIN within a
bound, the log line, and the close counted under its reason; a well-behaved
client is served afterwards and, after every test, the server is back at
idle (ServerTestCase)."""

import hashlib
import http.client
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "leak"))
import harness  # noqa: E402
from harness import Server, ServerTestCase  # noqa: E402
import leaklib  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

REASONS = {400: "Bad Request", 501: "Not Implemented"}

# How long the server may take to send its FIN after the last byte of an
# answer it closes on (it sends it at once; this is scheduling slack).
FIN_BOUND = 3.0


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_bytes(server, rel):
    with open(os.path.join(server.root, rel), "rb") as f:
        return f.read()


def request(path="/index.html", method="GET", host="127.0.0.1", headers=(), body=b"",
            version="HTTP/1.1"):
    """One request head (+ body) as bytes; host=None leaves Host out."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    lines += ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers    # [(lower-case name, value)]
        self.body = body
        self.raw_head = raw_head

    def all(self, name):
        return [v for n, v in self.headers if n == name]

    def get(self, name, default=None):
        v = self.all(name)
        return v[0] if v else default

    def __repr__(self):
        return "<%s %d %s, %d body bytes>" % (self.version, self.status, self.reason,
                                              len(self.body))


class H1Conn:
    """A hand-driven HTTP/1.1 client over TCP (or TLS with ALPN http/1.1 by
    default, alpn=() for none): writes whatever bytes a test builds and
    parses responses, strictly, from what comes back."""

    def __init__(self, server, alpn=("http/1.1",), timeout=10, sock=None):
        self.server = server
        if sock is None:
            sock = harness.tcp_connect(server, timeout)
            if server.tls:
                sock = harness.tls_wrap(sock, alpn=alpn)
                if alpn:
                    assert sock.selected_alpn_protocol() == "http/1.1", \
                        sock.selected_alpn_protocol()
        self.sock = sock
        self.buf = bytearray()   # received, not parsed yet (bytearray: appends are cheap)
        self.eof = None          # None while open; "eof" or "reset" once closed

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads more into buf; False once the peer closed. Raises
        AssertionError at the deadline."""
        if self.eof is not None:
            return False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no (complete) response in time; have %r" % self.buf[:300])
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                self.eof = "reset"
                return False
            if not data:
                self.eof = "eof"
                return False
            self.buf += data
            return True

    def _need(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise AssertionError("connection ended (%s) with %d of %d bytes; have %r"
                                     % (self.eof, len(self.buf), n, self.buf[:300]))

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError("connection ended (%s) mid-line: %r" % (self.eof,
                                                                             self.buf[:300]))
        end = self.buf.index(b"\r\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def read_response(self, head=False, timeout=10):
        """The next response (a 1xx one too, as it is). head: no body."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError("connection ended (%s) before a response head: %r"
                                     % (self.eof, self.buf[:300]))
        end = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:end])
        del self.buf[:end + 4]
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3}) (.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), "bad header line %r" % line
            headers.append((name.lower(), value.strip()))
        resp = Response(m.group(1), int(m.group(2)), m.group(3), headers, b"", raw)
        if head or resp.status < 200 or resp.status in (204, 304):
            return resp
        if resp.get("transfer-encoding") == "chunked":
            body = bytearray()
            while True:
                size = int(self._line(deadline).split(b";")[0], 16)
                if size == 0:
                    while self._line(deadline):
                        pass  # trailers
                    break
                self._need(size + 2, deadline)
                body += self.buf[:size]
                assert self.buf[size:size + 2] == b"\r\n"
                del self.buf[:size + 2]
            resp.body = bytes(body)
        elif resp.get("content-length") is not None:
            n = int(resp.get("content-length"))
            self._need(n, deadline)
            resp.body = bytes(self.buf[:n])
            del self.buf[:n]
        else:
            while self._fill(deadline):
                pass
            resp.body = bytes(self.buf)
            self.buf = bytearray()
        return resp

    def read_to_eof(self, timeout=10):
        """Reads (keeping what comes) until the server ends the connection;
        returns the seconds it took. AssertionError if still open."""
        start = time.monotonic()
        deadline = start + timeout
        try:
            while self._fill(deadline):
                pass
        except AssertionError:
            raise AssertionError("server kept the connection open for %ss (read %r)"
                                 % (timeout, self.buf[:200]))
        return time.monotonic() - start

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Http1Case(ServerTestCase):
    """Helpers shared by the suites below."""

    def counts(self):
        return leaklib.closed_counts(self.server.metrics())

    def curl_h1(self, path, *args, timeout=30):
        cmd = ["curl", "-sS", "--http1.1", "--max-time", str(timeout)]
        if self.server.tls:
            cmd.append("-k")
        return subprocess.run(cmd + list(args) + [self.server.url(path)], capture_output=True,
                              timeout=timeout + 10)

    def assert_still_serving(self, light=False):
        """A well-behaved HTTP/1.1 client (curl, or light: a raw one) and an
        HTTP/2 one are served."""
        if light:
            c = H1Conn(self.server)
            try:
                c.send(request("/index.html"))
                r = c.read_response()
            finally:
                c.close()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, file_bytes(self.server, "index.html"))
        else:
            r = self.curl_h1("/index.html", "-w", "\n%{http_version} %{http_code}", timeout=10)
            body, _, meta = r.stdout.decode().rpartition("\n")
            self.assertEqual(meta, "1.1 200", r.stderr)
            self.assertEqual(body.encode(), file_bytes(self.server, "index.html"))
        status, _ = leaklib.served(self.server, "/index.html")
        self.assertEqual(status, 200)

    def assert_error_response(self, r, status, reason):
        self.assertEqual((r.version, r.status, r.reason), ("HTTP/1.1", status, reason), r)
        self.assertEqual(r.all("connection"), ["close"], r.raw_head)
        self.assertEqual(r.get("content-type"), "text/plain", r.raw_head)
        self.assertEqual(r.body, ("%d %s\n" % (status, reason)).encode())

    def assert_closed_exactly(self, before, reason, count=1, timeout=10, metrics=None):
        """`count` connections closed for `reason` since the counts `before`
        (polled over `metrics`, a leaklib.MetricsConn, when given: cheaper
        than a curl per poll), and none for another reason but the noise of
        well-behaved clients."""
        if metrics is None:
            closed = leaklib.wait_closed(self.server, before, reason, count=count,
                                         timeout=timeout)
        else:
            m = metrics.wait_for(
                lambda m: leaklib.closed_counts(m)[reason] - before[reason] >= count,
                timeout=timeout, what="%d close(s) for %s" % (count, reason))
            closed = leaklib.closed_since(self.server, before, m)
        # The metrics and well-behaved clients close theirs (peer_eof,
        # completed); nothing else may have been counted.
        other = {r: n for r, n in closed.items() if r not in (reason, "peer_eof", "completed")}
        self.assertEqual(closed.get(reason), count, closed)
        self.assertEqual(other, {}, closed)

    def assert_refused(self, payload, status, reason, why=None, before_responses=(),
                       close_reason="protocol_error", trailing=True):
        """Sends `payload` (followed by a valid request that must never be
        answered); expects `before_responses` (statuses) first, then the
        error answer, nothing after it, the server's FIN within FIN_BOUND,
        the log line, the close counted under `close_reason`."""
        metrics = leaklib.MetricsConn(self.server)
        before = leaklib.closed_counts(metrics.get())
        pattern = r"connection fd \d+: HTTP/1\.1 %s: %s" % (
            "(%s)" % "|".join(map(str, status)) if isinstance(status, tuple) else status, why or "")
        logged = self.server.log_count(pattern)
        c = H1Conn(self.server)
        try:
            c.send(payload + (request("/sub/") if trailing else b""))
            for want in before_responses:
                r = c.read_response()
                self.assertEqual(r.status, want, r)
                self.assertEqual(r.all("connection"), [], r.raw_head)
            r = c.read_response()
            if isinstance(status, tuple):   # either of these, with its own phrase
                self.assertIn(r.status, status, r)
                status, reason = r.status, REASONS[r.status]
            self.assert_error_response(r, status, reason)
            took = c.read_to_eof(timeout=FIN_BOUND + 5)
            self.assertLess(took, FIN_BOUND, "the server's FIN came %.1f s after the answer" % took)
            self.assertEqual(c.eof, "eof", "closed with a reset, not a FIN")
            self.assertEqual(c.buf, b"", "bytes after the error answer")
            c.close()
            self.assert_closed_exactly(before, close_reason, metrics=metrics)
        finally:
            c.close()
            metrics.close()
        self.server.wait_log(pattern, logged + 1)
        self.assert_still_serving(light=True)


# =============================================================================
# Interop: real clients
# =============================================================================

class Interop(Http1Case):
    server_args = ("--access-log",)

    def test_curl_http11_and_http2_on_the_same_port(self):
        before = self.server.metrics()
        r = self.curl_h1("/index.html", "-w", "\n%{http_version} %{http_code} %{content_type}")
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, meta = r.stdout.decode().rpartition("\n")
        self.assertEqual(meta.split()[:2], ["1.1", "200"])
        self.assertIn("text/html", meta)
        self.assertEqual(body.encode(), file_bytes(self.server, "index.html"))
        # HTTP/2 on the same listener, in the same test.
        r = self.server.curl("/index.html", "-w", "\n%{http_version} %{http_code}")
        body, _, meta = r.stdout.decode().rpartition("\n")
        self.assertEqual(meta, "2 200")
        self.assertEqual(body.encode(), file_bytes(self.server, "index.html"))
        m = self.server.metrics()
        self.assertEqual(m["h2loop_http1_connections_total"] -
                         before["h2loop_http1_connections_total"], 1)
        self.server.wait_log(r"access: GET /index\.html 200 ", 1)

    def test_curl_http11_downloads_are_byte_identical(self):
        for name in ("1m.bin", "10m.bin"):
            out = os.path.join(harness.workdir(), "h1-%s-%s-%s" % (harness.LOOP,
                                                                     harness.TRANSPORT, name))
            r = self.curl_h1("/" + name, "-o", out, "-w", "%{http_version} %{http_code}")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"1.1 200")
            self.assertEqual(sha256_file(out), sha256_file(os.path.join(self.server.root, name)))
            os.unlink(out)

    def test_head_has_the_content_length_and_no_body(self):
        r = self.curl_h1("/1m.bin", "-I")
        text = r.stdout.decode().lower()
        self.assertRegex(text, r"^http/1\.1 200 ok\r\n")
        self.assertIn("content-length: %d\r\n" % (1 << 20), text)
        # A raw client: no body follows the head (the next response does).
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", "HEAD") + request("/sub/"))
            r = c.read_response(head=True)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.get("content-length"),
                             str(len(file_bytes(self.server, "index.html"))), r.raw_head)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        finally:
            c.close()

    def test_curl_http11_404_and_405(self):
        r = self.curl_h1("/missing.html", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"404")
        r = self.curl_h1("/index.html", "-X", "POST", "-d", "x=1", "-D", "-", "-o", "/dev/null")
        head = r.stdout.decode().lower()
        self.assertRegex(head, r"^http/1\.1 405 ")
        self.assertIn("allow: get, head, options\r\n", head)

    def test_curl_reuses_one_connection_for_several_urls(self):
        urls = [self.server.url(p) for p in ("/index.html", "/sub/", "/missing", "/1m.bin")]
        cmd = ["curl", "-sS", "--http1.1", "--max-time", "30"] + (["-k"] if self.server.tls else [])
        for u in urls:
            cmd += ["-o", "/dev/null", "-w", "%{http_version} %{http_code} %{num_connects}\\n", u]
        r = subprocess.run(cmd, capture_output=True, timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["1.1 200 1", "1.1 200 0", "1.1 404 0", "1.1 200 0"])

    def test_wget(self):
        out = os.path.join(harness.workdir(), "wget-%s-%s" % (harness.LOOP, harness.TRANSPORT))
        cmd = ["wget", "-S", "-t", "1", "-T", "30", "-O", out]
        if self.server.tls:
            cmd.append("--no-check-certificate")
        r = subprocess.run(cmd + [self.server.url("/1m.bin")], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"HTTP/1.1 200 OK", r.stderr)
        self.assertEqual(sha256_file(out), sha256_file(os.path.join(self.server.root, "1m.bin")))
        os.unlink(out)
        r = subprocess.run(cmd + [self.server.url("/missing")], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 8, r.stderr)  # wget: server issued an error response
        self.assertIn(b"HTTP/1.1 404", r.stderr)

    def http_client(self):
        if self.server.tls:
            # No ALPN at all: such a client is served HTTP/1.1.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)

    def test_python_http_client_keeps_one_connection(self):
        conn = self.http_client()
        try:
            conn.request("GET", "/index.html")
            r = conn.getresponse()
            self.assertEqual((r.version, r.status), (11, 200))
            self.assertEqual(r.read(), file_bytes(self.server, "index.html"))
            sock = conn.sock
            if self.server.tls:
                self.assertIsNone(sock.selected_alpn_protocol())
            steps = [
                ("HEAD", "/1m.bin", None, 200),
                ("GET", "/missing.html", None, 404),
                ("POST", "/index.html", b"a=1&b=2" * 100, 405),
                ("GET", "/sub/", None, 200),
                ("GET", "/1m.bin", None, 200),
            ]
            for method, path, body, status in steps:
                conn.request(method, path, body=body)
                r = conn.getresponse()
                data = r.read()
                self.assertEqual(r.status, status, (method, path))
                self.assertFalse(r.will_close, (method, path, r.getheaders()))
                self.assertIs(conn.sock, sock, "the connection was not kept (%s %s)"
                              % (method, path))
                if method == "HEAD":
                    # (its content-length: test_head_has_the_content_length_and_no_body)
                    self.assertEqual(data, b"")
                elif status == 405:
                    self.assertEqual(r.getheader("allow"), "GET, HEAD, OPTIONS")
                elif path == "/sub/":
                    self.assertEqual(data, b"sub index\n")
                elif path == "/1m.bin":
                    self.assertEqual(data, file_bytes(self.server, "1m.bin"))
        finally:
            conn.close()

    @unittest.skipUnless(harness.TLS, "ALPN is TLS only")
    def test_alpn_prefers_h2_and_accepts_http11(self):
        for offer, chosen in ((("h2", "http/1.1"), "h2"), (("http/1.1", "h2"), "h2"),
                              (("http/1.1",), "http/1.1"), ((), None)):
            with self.subTest(offer=offer):
                s = harness.tls_wrap(harness.tcp_connect(self.server), alpn=offer)
                try:
                    self.assertEqual(s.selected_alpn_protocol(), chosen)
                    if chosen != "h2":
                        c = H1Conn(self.server, sock=s)
                        c.send(request("/sub/"))
                        r = c.read_response()
                        self.assertEqual((r.version, r.status, r.body),
                                         ("HTTP/1.1", 200, b"sub index\n"))
                finally:
                    s.close()

    @unittest.skipIf(harness.TLS, "cleartext sniffing")
    def test_cleartext_sniffing(self):
        """The HTTP/2 preface trickling in byte by byte is still HTTP/2; a
        request sharing its first letter ("P") is HTTP/1.1."""
        class Trickling:
            """A socket whose first 24 bytes out (the preface) go one by one."""

            def __init__(self, sock):
                self.sock, self.sent = sock, 0

            def sendall(self, data):
                while self.sent < len(leaklib.PREFACE) and data:
                    self.sock.sendall(data[:1])
                    data, self.sent = data[1:], self.sent + 1
                    time.sleep(0.005)
                if data:
                    self.sock.sendall(data)

            def __getattr__(self, name):
                return getattr(self.sock, name)

        s = harness.tcp_connect(self.server)
        try:
            c = harness.H2Client(self.server, sock=Trickling(s))
            r = c.get("/sub/")
            self.assertEqual((r["status"], bytes(r["body"])), (200, b"sub index\n"))
        finally:
            s.close()
        for method, status in (("POST", 405), ("PUT", 405), ("PATCH", 405)):
            c = H1Conn(self.server)
            try:
                c.send(request("/index.html", method, headers=(("Content-Length", "0"),)))
                r = c.read_response()
                self.assertEqual((r.version, r.status), ("HTTP/1.1", status), method)
                self.assertEqual(r.get("allow"), "GET, HEAD, OPTIONS")
            finally:
                c.close()

    def test_h2load_h1_10000_requests_and_h2_clients_alongside(self):
        before = self.server.metrics()
        r = subprocess.run(["h2load", "--h1", "-n", "10000", "-c", "10", "-T", "30", "-N", "30",
                            self.server.url("/index.html")], capture_output=True, timeout=120)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("Application protocol: http/1.1", out)
        self.assertIn("10000 succeeded, 0 failed, 0 errored", out)
        self.assertIn("status codes: 10000 2xx", out)
        m = self.server.metrics()
        self.assertGreaterEqual(m["h2loop_requests_total"] - before["h2loop_requests_total"],
                                10000)
        self.assertEqual(m["h2loop_http1_connections_total"] -
                         before["h2loop_http1_connections_total"], 10)
        # HTTP/2 clients on the same port.
        r = subprocess.run(["h2load", "-n", "1000", "-c", "2", "-m", "10", "-T", "30", "-N", "30",
                            self.server.url("/index.html")], capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertIn("Application protocol: %s" % ("h2" if self.server.tls else "h2c"), out)
        self.assertIn("1000 succeeded, 0 failed", out)
        urls = [self.server.url(p) for p in ("/index.html", "/sub/", "/1m.bin")]
        r = subprocess.run(["nghttp", "-ns", "--timeout=30"] + urls, capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(re.findall(r"\b200\b", r.stdout.decode())), 3, r.stdout)


# =============================================================================
# h2c upgrade (cleartext) / Upgrade ignored (TLS)
# =============================================================================

UPGRADE_HEADERS = (("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                   ("HTTP2-Settings", "AAMAAABkAAQAAP__"))


class Upgrade(Http1Case):

    @unittest.skipIf(harness.TLS, "the h2c upgrade is for cleartext only")
    def test_curl_http2_upgrades_to_h2c(self):
        before = self.server.metrics()
        r = subprocess.run(["curl", "-sS", "-v", "--http2", "--max-time", "30",
                            "-w", "\n%{http_version} %{http_code}", self.server.url("/index.html")],
                           capture_output=True, timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"< HTTP/1.1 101 Switching Protocols", r.stderr)
        body, _, meta = r.stdout.rpartition(b"\n")
        self.assertEqual(meta, b"2 200")
        self.assertEqual(body, file_bytes(self.server, "index.html"))
        # Several URLs: the first upgrades, the others go on the same HTTP/2
        # connection.
        r = subprocess.run(["curl", "-sS", "--http2", "--max-time", "30",
                            "-w", "%{http_version} %{http_code} %{num_connects}\\n",
                            self.server.url("/sub/"), self.server.url("/sub/"),
                            self.server.url("/missing")], capture_output=True, timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(re.findall(rb"2 (\d{3}) (\d)\n", r.stdout),
                         [(b"200", b"1"), (b"200", b"0"), (b"404", b"0")], r.stdout)
        self.assertEqual(r.stdout.count(b"sub index\n"), 2)
        m = self.server.metrics()
        self.assertEqual(m["h2loop_h2c_upgrades_total"] - before["h2loop_h2c_upgrades_total"], 2)

    @unittest.skipIf(harness.TLS, "the h2c upgrade is for cleartext only")
    def test_curl_http2_upgrade_large_download(self):
        """1 MiB through an h2c upgrade. curl 7.88 copies whatever arrived
        with the 101 into a 32 KiB buffer (lib/http2.c H2_BUFSIZE) and fails
        with error 16 if more came: a server that sends its whole initial
        window of DATA right behind the 101 trips it (RFC-legal, but the
        most common h2c client then cannot download a large file)."""
        out = os.path.join(harness.workdir(), "h2c-%s" % harness.LOOP)
        r = subprocess.run(["curl", "-sS", "--http2", "--max-time", "30", "-o", out,
                            "-w", "%{http_version} %{http_code}", self.server.url("/1m.bin")],
                           capture_output=True, timeout=40)
        try:
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"2 200")
            self.assertEqual(sha256_file(out),
                             sha256_file(os.path.join(self.server.root, "1m.bin")))
        finally:
            if os.path.exists(out):
                os.unlink(out)

    @unittest.skipIf(harness.TLS, "the h2c upgrade is for cleartext only")
    def test_python_h2_upgrade_then_more_streams(self):
        """RFC 7540 §3.2 by hand: the request is answered as stream 1 over
        HTTP/2, and the connection then carries new streams."""
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        settings = conn.initiate_upgrade_connection()
        settings = settings.decode() if isinstance(settings, bytes) else settings
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", headers=(
                ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                ("HTTP2-Settings", settings))))
            r = c.read_response()
            self.assertEqual((r.status, r.get("upgrade")), (101, "h2c"), r.raw_head)
            c.send(conn.data_to_send())
            responses = {1: {"body": b"", "ended": False, "status": None}}
            pending = bytes(c.buf)
            c.buf = bytearray()

            def pump(until):
                nonlocal pending
                deadline = time.monotonic() + 10
                while not until():
                    if not pending:
                        self.assertTrue(c._fill(deadline), "connection closed")
                        pending, c.buf = bytes(c.buf), bytearray()
                    for ev in conn.receive_data(pending):
                        rr = responses.get(getattr(ev, "stream_id", None))
                        if isinstance(ev, h2.events.ResponseReceived):
                            rr["status"] = int(dict(ev.headers)[":status"])
                        elif isinstance(ev, h2.events.DataReceived):
                            rr["body"] += ev.data
                            conn.acknowledge_received_data(ev.flow_controlled_length,
                                                           ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded):
                            rr["ended"] = True
                    pending = b""
                    c.send(conn.data_to_send())

            pump(lambda: responses[1]["ended"])
            self.assertEqual(responses[1]["status"], 200)
            self.assertEqual(responses[1]["body"], file_bytes(self.server, "index.html"))
            for sid in (3, 5):
                conn.send_headers(sid, [(":method", "GET"), (":path", "/sub/"),
                                        (":scheme", "http"),
                                        (":authority", "127.0.0.1:%d" % self.server.port)],
                                  end_stream=True)
                responses[sid] = {"body": b"", "ended": False, "status": None}
            c.send(conn.data_to_send())
            pump(lambda: responses[3]["ended"] and responses[5]["ended"])
            self.assertEqual([responses[s]["body"] for s in (3, 5)], [b"sub index\n"] * 2)
            conn.close_connection()
            c.send(conn.data_to_send())
        finally:
            c.close()

    @unittest.skipIf(harness.TLS, "the h2c upgrade is for cleartext only")
    def test_upgrade_with_a_body_stays_http11(self):
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", "POST", headers=UPGRADE_HEADERS +
                           (("Content-Length", "5"),), body=b"hello") + request("/sub/"))
            r = c.read_response()
            self.assertEqual((r.version, r.status), ("HTTP/1.1", 405), r.raw_head)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        finally:
            c.close()

    @unittest.skipUnless(harness.TLS, "over TLS the Upgrade header is ignored")
    def test_upgrade_h2c_is_ignored_over_tls(self):
        before = self.server.metrics()
        # curl offers no upgrade over TLS; a raw client asks anyway.
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", headers=UPGRADE_HEADERS) + request("/sub/"))
            r = c.read_response()
            self.assertEqual((r.version, r.status), ("HTTP/1.1", 200), r.raw_head)
            self.assertIsNone(r.get("upgrade"))
            self.assertEqual(r.body, file_bytes(self.server, "index.html"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        finally:
            c.close()
        m = self.server.metrics()
        self.assertEqual(m["h2loop_h2c_upgrades_total"], before["h2loop_h2c_upgrades_total"])

    def test_other_upgrade_is_served_as_http11(self):
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", headers=(("Connection", "Upgrade"),
                                                   ("Upgrade", "websocket"))) + request("/sub/"))
            r = c.read_response()
            self.assertEqual((r.version, r.status), ("HTTP/1.1", 200), r.raw_head)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        finally:
            c.close()

    @unittest.skipIf(harness.TLS, "the h2c upgrade is for cleartext only")
    def test_invalid_http2_settings_is_400(self):
        for value in ("!!not-base64!!", "AAMAAABkAAQAAP_", "A"):
            with self.subTest(settings=value):
                self.assert_refused(
                    request("/index.html", headers=(
                        ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                        ("HTTP2-Settings", value))),
                    400, "Bad Request", why="invalid HTTP2-Settings")


# =============================================================================
# Connection lifetime: keep-alive, Connection: close, HTTP/1.0
# =============================================================================

class Lifetime(Http1Case):
    server_args = ("--idle-timeout", "60")

    def test_connection_close_gets_fin_right_after_the_response(self):
        c = H1Conn(self.server)
        try:
            c.send(request("/1m.bin", headers=(("Connection", "close"),)) + request("/sub/"))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.all("connection"), ["close"])
            self.assertEqual(r.body, file_bytes(self.server, "1m.bin"))
            took = c.read_to_eof(timeout=10)
            self.assertLess(took, FIN_BOUND)
            self.assertEqual(c.eof, "eof")
            self.assertEqual(c.buf, b"", "the request after Connection: close was answered")
        finally:
            c.close()

    def test_http10_without_keepalive_is_closed(self):
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", host=None, version="HTTP/1.0"))
            r = c.read_response()
            self.assertEqual((r.version, r.status), ("HTTP/1.1", 200))
            self.assertEqual(r.all("connection"), ["close"])
            self.assertEqual(r.body, file_bytes(self.server, "index.html"))
            self.assertLess(c.read_to_eof(timeout=10), FIN_BOUND)
            self.assertEqual(c.buf, b"")
        finally:
            c.close()

    def test_http10_with_keepalive_is_kept(self):
        c = H1Conn(self.server)
        try:
            for path, rel in (("/index.html", "index.html"), ("/sub/", "sub/index.html"),
                              ("/1m.bin", "1m.bin")):
                c.send(request(path, version="HTTP/1.0", headers=(("Connection", "keep-alive"),)))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.all("connection"), ["keep-alive"])
                self.assertEqual(r.body, file_bytes(self.server, rel))
            # A final HTTP/1.0 request without keep-alive ends it.
            c.send(request("/sub/", version="HTTP/1.0"))
            self.assertEqual(c.read_response().all("connection"), ["close"])
            self.assertLess(c.read_to_eof(timeout=10), FIN_BOUND)
        finally:
            c.close()

    def test_many_requests_on_one_keepalive_connection(self):
        before = self.server.metrics()
        c = H1Conn(self.server)
        try:
            for i in range(200):
                path = ("/index.html", "/sub/", "/missing")[i % 3]
                c.send(request(path, "HEAD" if i % 7 == 0 else "GET"))
                r = c.read_response(head=(i % 7 == 0))
                self.assertEqual(r.status, 404 if i % 3 == 2 else 200, (i, path))
                self.assertEqual(r.all("connection"), [])
            self.assertIsNone(c.eof)
        finally:
            c.close()
        m = self.server.metrics()
        self.assertEqual(m["h2loop_http1_connections_total"] -
                         before["h2loop_http1_connections_total"], 1)

    def test_chunked_request_body_is_parsed(self):
        c = H1Conn(self.server)
        try:
            body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"
            c.send(request("/index.html", "POST", headers=(("Transfer-Encoding", "chunked"),),
                           body=body) + request("/sub/"))
            r = c.read_response()
            self.assertEqual(r.status, 405)
            self.assertEqual(r.get("allow"), "GET, HEAD, OPTIONS")
            self.assertEqual(r.all("connection"), [])
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        finally:
            c.close()

    def test_expect_100_continue_answered_at_once_without_100(self):
        before = self.counts()
        c = H1Conn(self.server)
        try:
            # The body is announced and never sent: the 405 does not wait for it.
            c.send(request("/index.html", "POST", headers=(("Content-Length", "100000"),
                                                           ("Expect", "100-continue"))))
            r = c.read_response(timeout=5)
            self.assertEqual(r.status, 405, r.raw_head)
            self.assertEqual(r.all("connection"), ["close"], r.raw_head)
            self.assertLess(c.read_to_eof(timeout=10), FIN_BOUND)
            self.assertEqual(c.buf, b"", "a 100 Continue or more followed")
        finally:
            c.close()
        closed = leaklib.wait_closed(self.server, before, ("completed",))
        self.assertNotIn("protocol_error", closed)

    def test_expect_other_is_417(self):
        self.assert_refused(request("/index.html", headers=(("Expect", "something-else"),)),
                            417, "Expectation Failed", why="unsupported Expect")


class IdleTimeout(Http1Case):
    server_args = ("--idle-timeout", "1")

    def test_idle_keepalive_connection_gets_fin_at_idle_timeout(self):
        before = self.counts()
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html"))
            self.assertEqual(c.read_response().status, 200)
            start = time.monotonic()
            c.read_to_eof(timeout=10)
            took = time.monotonic() - start
            self.assertEqual(c.eof, "eof")
            self.assertEqual(c.buf, b"")
            self.assertGreater(took, 0.7)
            self.assertLess(took, 4)
        finally:
            c.close()
        self.assert_closed_exactly(before, "idle_timeout")


# =============================================================================
# Pipelining
# =============================================================================

class Pipelining(Http1Case):

    def test_100_pipelined_requests_answered_in_order(self):
        paths = [("/index.html", "/sub/", "/missing", "/1m.bin")[i % 4] for i in range(100)]
        want = {"/index.html": (200, file_bytes(self.server, "index.html")),
                "/sub/": (200, b"sub index\n"),
                "/missing": (404, None),
                "/1m.bin": (200, file_bytes(self.server, "1m.bin"))}
        c = H1Conn(self.server)
        try:
            c.send(b"".join(request(p, "HEAD" if i % 8 == 7 else "GET")
                            for i, p in enumerate(paths)))
            for i, p in enumerate(paths):
                head = i % 8 == 7
                r = c.read_response(head=head, timeout=20)
                status, body = want[p]
                self.assertEqual(r.status, status, (i, p, r))
                if body is not None and not head:
                    self.assertEqual(int(r.get("content-length")), len(body), (i, p))
                    self.assertEqual(r.body, body, (i, p))
            # Nothing more: the connection is open and quiet.
            c.sock.settimeout(0.3)
            with self.assertRaises((socket.timeout, TimeoutError, ssl.SSLWantReadError)):
                c.sock.recv(1)
        finally:
            c.close()

    def test_large_burst_is_pushed_back_then_all_answered(self):
        """A download the client does not read yet, then 2,000 pipelined
        requests (≈ 200 KB, three times the 64 KiB read-ahead bound) in one
        write: the server stops reading (the rest waits in its socket's
        receive queue: TCP pushback) instead of buffering it all; once the
        client reads, every request is answered, in order."""
        n = 2000
        pad = "p" * 40
        reqs = request("/10m.bin")
        reqs += b"".join(request(("/index.html", "/sub/")[i % 2],
                                 headers=(("X-Seq", "%05d" % i), ("X-Pad", pad)))
                         for i in range(n - 1))
        reqs += request("/sub/", headers=(("Connection", "close"),))
        self.assertGreater(len(reqs), 190 * 1024)
        before = self.server.metrics()
        c = H1Conn(self.server)
        try:
            c.sock.settimeout(30)
            c.send(reqs)   # the kernel buffers take what the server holds back
            client_port = c.sock.getsockname()[1]
            # What the server may have read: up to 64 KiB unparsed, plus one
            # read (32 KiB), plus over TLS a record or two inside OpenSSL and
            # the records' overhead (≈ 0.2 %); a little slack. The rest must
            # wait in the kernel.
            wire = len(reqs) * (1.01 if self.server.tls else 1)
            held = 96 * 1024 + 4096 + (2 * (16 * 1024 + 256) if self.server.tls else 0)
            queued = self.kernel_queued(client_port, lambda q: q >= wire - held)
            self.assertGreaterEqual(queued, wire - held,
                                    "the server read ~%d of %d pipelined bytes while the first "
                                    "response was stuck" % (wire - queued, len(reqs)))
            sent_at = time.monotonic()
            r = c.read_response(timeout=30)
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), 10 << 20)
            lengths = []
            for i in range(n):
                r = c.read_response(timeout=30)
                self.assertEqual(r.status, 200, (i, r))
                lengths.append(len(r.body))
            self.assertLess(c.read_to_eof(timeout=10), FIN_BOUND)
            self.assertEqual(c.buf, b"")
        finally:
            c.close()
        index = len(file_bytes(self.server, "index.html"))
        self.assertEqual(lengths, [(index, 10)[i % 2] for i in range(n - 1)] + [10])
        self.assertLess(time.monotonic() - sent_at, 30)
        m = self.server.metrics()
        self.assertGreaterEqual(m["h2loop_requests_total"] - before["h2loop_requests_total"], n + 1)

    def kernel_queued(self, client_port, enough, timeout=3):
        """Client bytes of the connection from client_port the server has
        not read: its socket's receive queue plus what the client's socket
        still holds (unsent, for want of receive window), from
        /proc/<pid>/net/tcp (tx_queue:rx_queue); once enough(q) or at the
        timeout."""
        deadline = time.monotonic() + timeout
        while True:
            q = 0
            with open("/proc/%d/net/tcp" % self.server.proc.pid) as f:
                next(f)
                for line in f:
                    p = line.split()
                    ends = (int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16))
                    tx, rx = (int(x, 16) for x in p[4].split(":"))
                    if ends == (self.server.port, client_port):
                        q += rx
                    elif ends == (client_port, self.server.port):
                        q += tx
            if enough(q) or time.monotonic() > deadline:
                return q
            time.sleep(0.05)


# =============================================================================
# Hostile input
# =============================================================================

class Hostile(Http1Case):
    server_args = ("--idle-timeout", "60", "--header-timeout", "30")

    def test_content_length_and_transfer_encoding(self):
        self.assert_refused(
            request("/index.html", "POST", headers=(("Content-Length", "5"),
                                                    ("Transfer-Encoding", "chunked")),
                    body=b"0\r\n\r\n"), 400, "Bad Request")

    def test_transfer_encoding_then_content_length(self):
        self.assert_refused(
            request("/index.html", "POST", headers=(("Transfer-Encoding", "chunked"),
                                                    ("Content-Length", "5")),
                    body=b"0\r\n\r\n"), 400, "Bad Request")

    def test_two_content_lengths(self):
        for a, b in (("3", "3"), ("3", "4")):
            with self.subTest(lengths=(a, b)):
                self.assert_refused(
                    request("/index.html", "POST", headers=(("Content-Length", a),
                                                            ("Content-Length", b)),
                            body=b"abcd"), 400, "Bad Request")

    def test_invalid_chunk_size(self):
        for chunk in (b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\n", b"fffffffffffffffffff\r\n"):
            with self.subTest(chunk=chunk):
                self.assert_refused(
                    request("/index.html", "POST", headers=(("Transfer-Encoding", "chunked"),),
                            body=chunk), 400, "Bad Request")

    def test_header_section_over_64kib_is_431(self):
        fields = tuple(("X-Big-%03d" % i, "a" * 1000) for i in range(70))
        self.assert_refused(request("/index.html", headers=fields), 431,
                            "Request Header Fields Too Large", why="header section over the limit")

    def test_header_section_under_the_limit_is_served(self):
        fields = tuple(("X-Big-%03d" % i, "a" * 1000) for i in range(60))
        c = H1Conn(self.server)
        try:
            c.send(request("/sub/", headers=fields))
            self.assertEqual(c.read_response().body, b"sub index\n")
        finally:
            c.close()

    def test_request_target_over_64kib_is_414(self):
        self.assert_refused(request("/" + "a" * (65 * 1024)), 414, "URI Too Long",
                            why="request target over")

    def test_too_many_header_fields_is_431(self):
        # Host and 127 more: the most allowed (128) is served...
        c = H1Conn(self.server)
        try:
            c.send(request("/sub/", headers=tuple(("X-F%d" % i, "v") for i in range(127))))
            self.assertEqual(c.read_response().status, 200)
        finally:
            c.close()
        # ...one more is not.
        self.assert_refused(request("/sub/", headers=tuple(("X-F%d" % i, "v") for i in range(128))),
                            431, "Request Header Fields Too Large", why="too many header fields")

    def test_missing_host(self):
        self.assert_refused(request("/index.html", host=None), 400, "Bad Request", why="no Host")

    def test_two_hosts(self):
        self.assert_refused(request("/index.html", headers=(("Host", "127.0.0.1"),)),
                            400, "Bad Request", why="more than one Host")

    def test_whitespace_in_a_field_name(self):
        for raw in (b"Host : 127.0.0.1", b"Host\t: 127.0.0.1", b" Host: 127.0.0.1"):
            with self.subTest(line=raw):
                self.assert_refused(b"GET /index.html HTTP/1.1\r\n" + raw + b"\r\n\r\n",
                                    400, "Bad Request")

    def test_obsolete_line_folding(self):
        self.assert_refused(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n b\r\n\r\n",
                            400, "Bad Request")

    def test_two_transfer_encodings(self):
        self.assert_refused(
            request("/index.html", "POST", headers=(("Transfer-Encoding", "chunked"),
                                                    ("Transfer-Encoding", "chunked")),
                    body=b"0\r\n\r\n"), 400, "Bad Request")

    def test_transfer_encoding_other_than_chunked_is_501(self):
        for te in ("gzip, chunked", "deflate,chunked"):
            with self.subTest(te=te):
                self.assert_refused(
                    request("/index.html", "POST", headers=(("Transfer-Encoding", te),),
                            body=b"0\r\n\r\n"), 501, "Not Implemented",
                    why="transfer coding other than chunked")

    def test_transfer_encoding_without_final_chunked_is_refused(self):
        """No chunked last: the body length cannot be known. RFC 9112 §6.3
        asks for a 400; the server answers 501 (unknown coding, §6.1).
        Either way the connection ends."""
        for te in ("gzip", "chunked, gzip", "identity"):
            with self.subTest(te=te):
                self.assert_refused(
                    request("/index.html", "POST", headers=(("Transfer-Encoding", te),),
                            body=b"0\r\n\r\n"), (400, 501), None)

    def test_other_http_versions_are_505(self):
        for version in ("HTTP/2.0", "HTTP/3.0", "HTTP/0.9"):
            with self.subTest(version=version):
                self.assert_refused(request("/index.html", version=version), 505,
                                    "HTTP Version Not Supported")

    def test_connect_is_405(self):
        self.assert_refused(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                            405, "Method Not Allowed", why="CONNECT")

    def test_binary_garbage_is_400(self):
        rnd = random.Random(1729)
        garbage = b"\x00\xff" + bytes(rnd.getrandbits(8) for _ in range(510))
        self.assert_refused(garbage, 400, "Bad Request")

    @unittest.skipIf(harness.TLS, "a TLS ClientHello on a cleartext port")
    def test_tls_client_hello_on_cleartext_port_is_400(self):
        self.assert_refused(leaklib.client_hello_bytes(), 400, "Bad Request")

    def test_body_longer_than_content_length(self):
        """The bytes past Content-Length are the next request: garbage there
        is a 400 after the first (keep-alive) answer."""
        self.assert_refused(
            request("/index.html", "POST", headers=(("Content-Length", "3"),),
                    body=b"abc\x00\x01\x02smuggled\r\n\r\n"),
            400, "Bad Request", before_responses=(405,))

    def test_garbage_after_an_answered_request(self):
        """Garbage where the next request should start, on a connection
        that already answered one: a 400 too (not a silent close)."""
        for garbage in (b"\x00\x01\x02\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            with self.subTest(garbage=garbage):
                self.assert_refused(request("/sub/") + garbage, 400, "Bad Request",
                                    before_responses=(200,))

    def test_smuggled_request_after_content_length_is_a_separate_request(self):
        """A valid request hidden in a too-long body is answered as the
        second request, in order (never merged into the first)."""
        c = H1Conn(self.server)
        try:
            c.send(request("/index.html", "POST", headers=(("Content-Length", "3"),),
                           body=b"abc" + request("/sub/")))
            self.assertEqual(c.read_response().status, 405)
            self.assertEqual(c.read_response().body, b"sub index\n")
        finally:
            c.close()

    def test_error_after_answered_requests_on_the_same_connection(self):
        """Good requests, then a bad one, pipelined: the good ones are
        answered, then the error, then the FIN."""
        self.assert_refused(request("/sub/") + request("/index.html") +
                            request("/index.html", host=None),
                            400, "Bad Request", why="no Host", before_responses=(200, 200))

    def test_many_bad_clients_at_once(self):
        before = self.counts()
        conns = [H1Conn(self.server) for _ in range(20)]
        try:
            for i, c in enumerate(conns):
                c.send(request("/index.html", version="HTTP/2.0") if i % 2
                       else request("/index.html", host=None))
            self.assert_still_serving()
            for i, c in enumerate(conns):
                r = c.read_response()
                self.assertEqual(r.status, 505 if i % 2 else 400)
                self.assertLess(c.read_to_eof(timeout=10), FIN_BOUND)
        finally:
            for c in conns:
                c.close()
        self.assert_closed_exactly(before, "protocol_error", count=20)


# =============================================================================
# Slowloris: the header timeout
# =============================================================================

TRICKLE = request("/index.html", headers=(("X-Trickle", "t" * 4000),))[:-4]  # never complete
HEADER_TIMEOUT = 1.5


class Slowloris(Http1Case):
    server_args = ("--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "60")

    def trickle(self, conns, interval=0.2, limit=15):
        """Sends one byte of TRICKLE on every connection still open, every
        `interval` seconds, reading between; returns per connection the
        seconds from its first byte to the server's EOF."""
        first = [None] * len(conns)
        ended = [None] * len(conns)
        sent = [0] * len(conns)
        start = time.monotonic()
        while any(e is None for e in ended):
            self.assertLess(time.monotonic() - start, limit, "trickling clients still open: %s"
                            % [i for i, e in enumerate(ended) if e is None])
            round_start = time.monotonic()
            for i, c in enumerate(conns):
                if ended[i] is not None or sent[i] >= len(TRICKLE):
                    continue
                try:
                    c.send(TRICKLE[sent[i]:sent[i] + 1])
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                if first[i] is None:
                    first[i] = time.monotonic()
                sent[i] += 1
            per = max(0.005, interval / len(conns))
            for i, c in enumerate(conns):
                if ended[i] is not None:
                    continue
                c.sock.settimeout(per)
                try:
                    data = c.sock.recv(1 << 16)
                except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                    continue
                except (ConnectionResetError, ssl.SSLError):
                    c.eof = "reset"
                    data = b""
                if data:
                    c.buf += data
                else:
                    c.eof = c.eof or "eof"
                    ended[i] = time.monotonic() - first[i]
            time.sleep(max(0.0, interval - (time.monotonic() - round_start)))
        return ended

    def check_408(self, c):
        # Everything was read up to the EOF: parse what came.
        self.assertEqual(c.eof, "eof")
        r = c.read_response(timeout=1)
        self.assert_error_response(r, 408, "Request Timeout")
        self.assertEqual(c.buf, b"")

    def test_twenty_trickling_clients_get_408_and_are_closed(self):
        """Twenty clients each trickling one byte of a head that never ends
        every 200 ms: each is answered 408 and closed 1.5-4 s after its first
        byte (the trickle does not keep it alive), counted header_timeout."""
        pattern = r"connection fd \d+: HTTP/1\.1 408: request header timeout"
        logged = self.server.log_count(pattern)
        before = self.counts()
        conns = [H1Conn(self.server) for _ in range(20)]
        try:
            took = self.trickle(conns)
        finally:
            for c in conns:
                c.close()
        for c in conns:
            self.check_408(c)
        self.assertGreater(min(took), HEADER_TIMEOUT - 0.2, "ended before the header timeout: %s"
                           % took)
        self.assertLess(max(took), 4.0, "the trickle kept connections alive: %s" % took)
        self.assert_closed_exactly(before, "header_timeout", count=20)
        self.server.wait_log(pattern, logged + 20)
        self.assert_still_serving()

    def test_timeout_runs_from_the_first_byte_of_each_head(self):
        """Quiet connections are not timed out by the header timeout (only
        the idle one applies): one connected that sent nothing yet, one
        between requests. A head that takes most of the allowance is served;
        a later head gets its full allowance, from its own first byte."""
        before = self.counts()
        quiet = H1Conn(self.server)
        c = H1Conn(self.server)
        try:
            c.send(request("/sub/"))
            self.assertEqual(c.read_response().body, b"sub index\n")
            time.sleep(HEADER_TIMEOUT + 0.3)
            quiet.send(request("/sub/"))
            self.assertEqual(quiet.read_response().body, b"sub index\n")
            part = request("/sub/")
            c.send(part[:10])
            time.sleep(HEADER_TIMEOUT - 0.7)
            c.send(part[10:])
            self.assertEqual(c.read_response().body, b"sub index\n")
            [took] = self.trickle([c])
        finally:
            c.close()
            quiet.close()
        self.check_408(c)
        self.assertGreater(took, HEADER_TIMEOUT - 0.2)
        self.assertLess(took, 4.0)
        self.assert_closed_exactly(before, "header_timeout")


# =============================================================================
# Graceful shutdown
# =============================================================================

class Shutdown(unittest.TestCase):

    def test_sigterm_finishes_the_download_and_closes_idle_keepalive(self):
        server = Server("--drain-timeout", "20").start()
        try:
            idle = H1Conn(server)
            idle.send(request("/index.html"))
            self.assertEqual(idle.read_response().status, 200)
            dl = H1Conn(server)
            dl.send(request("/10m.bin"))
            dl._need(256 * 1024, time.monotonic() + 10)   # the download is under way
            server.signal(signal.SIGTERM)
            signalled = time.monotonic()
            # The idle connection ends (the server's FIN), without waiting for
            # the download or the drain timeout.
            self.assertLess(idle.read_to_eof(timeout=10), 5)
            self.assertEqual((idle.eof, idle.buf), ("eof", b""))
            idle.close()
            r = dl.read_response(timeout=60)
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), 10 << 20)
            self.assertEqual(r.body, file_bytes(server, "10m.bin"))
            self.assertLess(dl.read_to_eof(timeout=10), FIN_BOUND)
            self.assertEqual((dl.eof, dl.buf), ("eof", b""))
            dl.close()
            self.assertEqual(server.wait(30), 0, server.log_text()[-3000:])
            self.assertLess(time.monotonic() - signalled, 15, "exit waited for the drain timeout")
            log = server.log_text()
            self.assertRegex(log, r"h2loop stopped\s*$")
            self.assertNotRegex(log, r"(?m)^\S+ (warn|warning|error|critical) ")
        finally:
            server.kill()

    def test_sigterm_closes_idle_keepalive_connections(self):
        """Several idle keep-alive clients: each gets the server's FIN
        promptly after SIGTERM, and the server exits 0."""
        server = Server("--drain-timeout", "20").start()
        try:
            conns = [H1Conn(server) for _ in range(5)]
            for c in conns:
                c.send(request("/sub/"))
                self.assertEqual(c.read_response().body, b"sub index\n")
            server.signal(signal.SIGTERM)
            for c in conns:
                self.assertLess(c.read_to_eof(timeout=10), 5)
                self.assertEqual(c.eof, "eof")
                c.close()
            self.assertEqual(server.wait(30), 0, server.log_text()[-3000:])
        finally:
            server.kill()


if __name__ == "__main__":
    harness.main()
