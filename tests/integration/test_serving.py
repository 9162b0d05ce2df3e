#!/usr/bin/python3
"""Serving with real clients: curl, nghttp, h2load and python-h2, on the
backend and transport chosen by the environment (see harness.py)."""

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import H2Client, Server, ServerTestCase  # noqa: E402


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Serving(ServerTestCase):

    def test_curl_gets_index_over_http2(self):
        r = self.server.curl("/", "-w", "\n%{http_version} %{http_code} %{content_type}")
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, meta = r.stdout.decode().rpartition("\n")
        self.assertEqual(meta.split()[:2], ["2", "200"])  # HTTP/2 negotiated
        self.assertIn("text/html", meta)
        with open(os.path.join(self.server.root, "index.html")) as f:
            self.assertEqual(body, f.read())

    def test_directory_serves_its_index(self):
        r = self.server.curl("/sub/")
        self.assertEqual(r.stdout, b"sub index\n")

    def test_head_has_length_and_no_body(self):
        r = self.server.curl("/1m.bin", "-I")
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode().lower()
        self.assertRegex(text, r"^http/2 200")
        self.assertIn("content-length: %d" % (1 << 20), text)
        self.assertIn("etag: ", text)
        self.assertIn("last-modified: ", text)

    def test_etag_revalidation_gives_304(self):
        r = self.server.curl("/index.html", "-I")
        etag = re.search(r"etag: (\S+)", r.stdout.decode(), re.I).group(1)
        r = self.server.curl("/index.html", "-o", "/dev/null", "-w", "%{http_code}",
                             "-H", "if-none-match: " + etag)
        self.assertEqual(r.stdout, b"304")

    def test_not_found_and_method_not_allowed(self):
        r = self.server.curl("/missing.html", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"404")
        r = self.server.curl("/index.html", "-X", "POST", "-d", "x=1", "-o", "/dev/null",
                             "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"405")

    def test_path_traversal_is_refused(self):
        for path in ["/../etc/passwd", "/%2e%2e/etc/passwd", "/sub/%2E%2E/%2e%2e/etc/passwd",
                     "/..%2fetc/passwd", "/index.html%00", "/%5c..%5cetc/passwd"]:
            r = self.server.curl(path, "--path-as-is", "-w", "\n%{http_code}")
            body, _, code = r.stdout.decode(errors="replace").rpartition("\n")
            self.assertIn(code, ("400", "403", "404"), path)
            self.assertNotIn("root:", body, path)

    def test_symlink_out_of_root_is_refused(self):
        link = os.path.join(self.server.root, "escape")
        if not os.path.islink(link):
            os.symlink("/etc", link)
        r = self.server.curl("/escape/passwd", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertIn(r.stdout, (b"403", b"404"))

    def test_50mib_file_arrives_byte_identical(self):
        out = os.path.join(harness.workdir(), "download-%s-%s" % (harness.LOOP, harness.TRANSPORT))
        r = self.server.curl("/50m.bin", "-o", out, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sha256_file(out), sha256_file(os.path.join(self.server.root, "50m.bin")))
        os.unlink(out)

    def test_nghttp_fetches_several_resources_on_one_connection(self):
        urls = [self.server.url(p) for p in ("/", "/sub/", "/1m.bin", "/missing")]
        r = subprocess.run(["nghttp", "-ns", "--timeout=30"] + urls, capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        # nghttp's stats list one line per response with its status code
        self.assertEqual(len(re.findall(r"\b200\b", out)) >= 3, True, out)
        self.assertIn("404", out)

    def test_h2load_10000_requests_all_succeed(self):
        r = subprocess.run(["h2load", "-n", "10000", "-c", "10", "-m", "10", "-T", "30", "-N", "30",
                            self.server.url("/")], capture_output=True, timeout=120)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("10000 succeeded, 0 failed, 0 errored", out)
        self.assertIn("status codes: 10000 2xx", out)
        m = self.server.metrics()
        self.assertGreaterEqual(m["h2loop_requests_total"], 10000)

    def test_many_concurrent_streams_on_one_connection(self):
        c = H2Client(self.server)
        sids = [c.request("/index.html") for _ in range(50)]
        c.pump(lambda cl: all(cl.responses[s]["ended"] for s in sids))
        for s in sids:
            self.assertEqual(c.responses[s]["status"], 200)
        c.close()

    def test_requests_arriving_together_in_many_tls_records_are_all_answered(self):
        # Corked: 60 requests, each its own TLS record (one write each), reach
        # the server in one segment. TLS reads them ahead into user space where
        # no readiness event announces them: the server must come back for
        # them by itself (a CI run once stalled here until the client gave up).
        # The client stays silent afterwards (no WINDOW_UPDATE, settings
        # already exchanged), so nothing else wakes the server up.
        c = H2Client(self.server)
        self.assertEqual(c.get("/index.html")["status"], 200)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        sids = [c.request("/index.html") for _ in range(60)]
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        self.assertTrue(c.pump(lambda cl: all(cl.responses[s]["ended"] for s in sids),
                               timeout=10, ack_data=False))
        self.assertEqual([c.responses[s]["status"] for s in sids], [200] * len(sids))
        c.close()

    def test_metrics_count_the_asker(self):
        m = self.server.metrics()
        self.assertEqual(m["h2loop_connections_active"], 1)
        self.assertEqual(m["h2loop_streams_active"], 1)
        self.assertEqual(m["h2loop_pool_in_use"], 1)
        self.assertGreater(m["h2loop_pool_capacity"], 0)
        self.assertIn('h2loop_connections_closed_total{reason="peer_reset"}', m)


class TlsSpecifics(unittest.TestCase):
    """ALPN: on an HTTP/2-only port (--no-http1) a TLS client that does not
    offer h2 fails clearly, not by a hang."""

    @unittest.skipUnless(harness.TLS, "TLS only")
    def test_client_without_h2_alpn_is_refused_quickly(self):
        with Server("--no-http1") as server:
            start = time.monotonic()
            r = server.curl("/", "--http1.1", timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertLess(time.monotonic() - start, 5)
            s = harness.tcp_connect(server)
            with self.assertRaises(ssl.SSLError) as cm:
                harness.tls_wrap(s, alpn=("http/1.1",))
            self.assertIn("NO APPLICATION PROTOCOL", str(cm.exception).upper().replace("_", " "))
            server.wait_idle()
            self.assertEqual(server.stop(), 0)
            self.assertIn("ALPN", server.log_text())


class H2cSpecifics(unittest.TestCase):

    @unittest.skipIf(harness.TLS, "h2c only")
    def test_http11_request_on_an_http2_only_port_gets_a_clear_answer(self):
        with Server("--no-http1") as server:
            r = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "10", server.url("/")],
                               capture_output=True, timeout=20)
            self.assertIn(b"HTTP/2 only", r.stdout)
            server.wait_idle()
            self.assertEqual(server.stop(), 0)


class Lifecycle(unittest.TestCase):

    def test_graceful_shutdown_lets_an_inflight_response_finish(self):
        server = Server("--drain-timeout", "20").start()
        try:
            c = H2Client(server)
            sid = c.request("/10m.bin")
            # Read a first part, then ask the server to stop.
            c.pump(lambda cl: len(cl.responses[sid]["body"]) >= 256 * 1024)
            server.signal(signal.SIGTERM)
            c.pump(lambda cl: cl.responses[sid]["ended"] or cl.closed, timeout=60)
            r = c.responses[sid]
            self.assertEqual(r["status"], 200)
            self.assertTrue(r["ended"], "stream did not complete")
            self.assertEqual(len(r["body"]), 10 << 20)
            ended = time.monotonic()
            # The client saw GOAWAY and then the server closed the connection.
            c.pump(lambda cl: cl.closed, timeout=30)
            # Two-step GOAWAY: the notice (2^31-1), then the last processed stream.
            self.assertEqual(c.goaways, [((1 << 31) - 1, 0), (sid, 0)])
            server.wait(30)
            self.assertEqual(server.proc.returncode, 0, server.log_text())
            # A clean exit: the drain finished, the timeout (20 s) did not cut
            # it (we stay connected: the server resets us after its 2 s
            # linger), and nothing was logged above info.
            self.assertLess(time.monotonic() - ended, 10, "exit waited for the drain timeout")
            log = server.log_text()
            self.assertRegex(log, r"h2loop stopped\s*$")
            self.assertNotRegex(log, r"(?m)^\S+ (warn|warning|error|critical) ", log)
        finally:
            server.kill()

    def test_two_workers_share_the_port_and_drain_to_idle(self):
        server = Server("--workers", "2").start()
        try:
            r = subprocess.run(["h2load", "-n", "4000", "-c", "20", "-m", "10", "-T", "30", "-N", "30",
                                server.url("/")], capture_output=True, timeout=120)
            self.assertIn(b"4000 succeeded, 0 failed", r.stdout)
            m = server.wait_idle()
            self.assertGreaterEqual(m["h2loop_connections_total"], 20)
            # Each worker has its own pool: the capacities add up.
            self.assertEqual(m["h2loop_pool_capacity"], 2 * 100 * 100)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_restart_on_the_same_port_at_once(self):
        first = Server().start()
        port = first.port
        r = first.curl("/")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(first.stop(), 0)
        second = Server(port=port).start()
        try:
            self.assertEqual(second.port, port)
            self.assertEqual(second.curl("/").returncode, 0)
        finally:
            self.assertEqual(second.stop(), 0)

    def test_startup_errors_are_one_clear_line_and_nonzero(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            cases = [
                (["--listen", "127.0.0.1:%d" % port, "--root", harness.document_root()],
                 "in use"),
                (["--listen", "127.0.0.1:0", "--root", "/nonexistent-root"], "nonexistent-root"),
                (["--listen", "127.0.0.1:0", "--root", harness.document_root(),
                  "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "nonexistent.pem"),
                (["--listen", "127.0.0.1:0", "--root", harness.document_root(), "--bogus-flag"],
                 "bogus-flag"),
                (["--listen", "127.0.0.1:0", "--root", harness.document_root(),
                  "--event-loop", "select"], "select"),
            ]
            for args, needle in cases:
                r = subprocess.run([harness.BIN] + args, capture_output=True, text=True, timeout=20)
                self.assertNotEqual(r.returncode, 0, args)
                first = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
                self.assertIn(needle.lower(), r.stderr.lower(), (args, r.stderr))
                self.assertTrue(first, args)


class CommandLine(unittest.TestCase):
    def test_version_names_the_libraries_it_runs_with(self):
        # No --root needed; the figures are the loaded libraries', so they
        # agree with what Debian's own tools on the same libraries say.
        r = subprocess.run([harness.BIN, "--version"], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
        self.assertRegex(lines["h2loop"], r"^\d+\.\d+\.\d+$")
        nghttp = subprocess.run(["nghttp", "--version"], capture_output=True, text=True,
                                timeout=20).stdout
        self.assertIn("nghttp2/" + lines["nghttp2"], nghttp)
        openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                                 timeout=20).stdout.split()
        self.assertEqual(lines["OpenSSL"].split()[0], openssl[1])
        self.assertRegex(lines["libevent"], r"^2\.\d+\.\d+")
        self.assertRegex(lines["http_parser"], r"^2\.\d+\.\d+$")


if __name__ == "__main__":
    harness.main()
