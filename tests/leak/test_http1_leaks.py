#!/usr/bin/python3
"""The leak scenarios over HTTP/1.1 (TLS with ALPN http/1.1; cleartext
without the HTTP/2 preface).

Each request is one pooled, reference-counted stream, exactly as over
HTTP/2: h2loop_pool_in_use rises when a request head begins,
h2loop_streams_active once it is complete, and both fall back when the
exchange ends. The scenarios below end HTTP/1.1 connections at every moment
(resets, FINs mid-request, stalled readers, pipelining floods, churn,
exhaustion, slowloris); after each test ServerTestCase checks that every
counter, the pool, the output gauge and the descriptor table are back at
idle, and each test asserts the close reason(s) it expects, counted over a
long-lived HTTP/2 metrics connection (leaklib.MetricsConn) so that the
asker's own closes do not blur them.

Raw sockets play the client: no HTTP/1.1 library would stop in the middle
of a head, pipeline megabytes without reading, or trickle a head byte by
byte. Every wait is bounded and polls the server's metrics (or the kernel's
socket tables); no sleep stands in for synchronisation."""

import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leaklib  # noqa: E402  (puts tests/integration on sys.path)
import harness  # noqa: E402
from harness import ServerTestCase  # noqa: E402
from leaklib import MetricsConn, unread_bytes  # noqa: E402

KIB = 1 << 10
MIB = 1 << 20
LARGE = "/50m.bin"
LARGE_SIZE = 50 * MIB
INDEX_SIZE = os.path.getsize(os.path.join(harness.document_root(), "index.html"))

# Far beyond every bound below: only the client's own act can end a
# connection in the resets and FIN scenarios.
LONG = ("--handshake-timeout", "120", "--idle-timeout", "120", "--write-timeout", "120",
        "--header-timeout", "120")

# The server's HTTP/1.1 limits (h1::SessionConfig, server defaults).
MAX_BUFFERED_INPUT = 64 * KIB        # pipelined input held before reading stops
READ_BUFFER = 32 * KIB               # one read of the worker (Worker::kReadBufferSize)
TLS_READ_AHEAD = 32 * KIB            # OpenSSL read-ahead (SSL_CTX_set_read_ahead) and a record
# Output per connection: the high watermark (64 KiB default), plus one step of
# body (16 KiB, h1 kStep) appended after the crossing, plus, over TLS, one
# flight of encrypted records the socket has not taken (four records).
HIGH_WATERMARK = 64 * KIB
STEP = 16 * KIB
TLS_FLIGHT = 4 * (16384 + 256) if harness.TLS else 0
OUTPUT_BOUND = HIGH_WATERMARK + STEP + 256 + TLS_FLIGHT
BUFFERED = "h2loop_output_buffered_bytes"
# An h2c upgrade (RFC 7540 §3.2) with empty SETTINGS.
H2C_UPGRADE = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
               ("HTTP2-Settings", "")]


# -- a raw HTTP/1.1 client ------------------------------------------------------

def request(path="/index.html", method="GET", version="HTTP/1.1", extra=()):
    """The bytes of one request head."""
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1", "User-Agent: h1leak"]
    lines += ["%s: %s" % kv for kv in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class H1Conn:
    """A hand-driven HTTP/1.1 client on the server's transport (over TLS with
    ALPN http/1.1, or none when alpn=()). Writes whatever bytes a test
    builds and parses responses (content-length bodies: the server's static
    files and error answers) from one buffer, so pipelined answers come out
    in order."""

    def __init__(self, server, timeout=10, rcvbuf=None, alpn=("http/1.1",)):
        self.server = server
        # As leaklib.connect_raw, but a socket refused half-way is closed here.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(timeout)
            s.connect(("127.0.0.1", server.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.port = s.getsockname()[1]  # our end's port, to find it in the TCP tables
            if server.tls:
                s = harness.tls_context(alpn).wrap_socket(s, server_hostname="localhost",
                                                  do_handshake_on_connect=False)
                s.do_handshake()
                want = alpn[0] if alpn else None
                assert s.selected_alpn_protocol() == want, s.selected_alpn_protocol()
        except BaseException:
            s.close()
            raise
        self.sock = s
        # The socket itself (for TLS the same descriptor): FIONREAD, shutdown.
        self.raw = s
        self.buf = b""
        self.eof = None  # None while open; "eof" or "reset" once the server ended it

    def send(self, data):
        """sendall; False once the server is gone."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            return False

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete response within the bound (have %r)"
                                 % self.buf[:120])
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return True
        except (ConnectionResetError, BrokenPipeError):
            self.eof = "reset"
            return False
        except ssl.SSLError:
            self.eof = "reset"
            return False
        if not data:
            self.eof = "eof"
            return False
        self.buf += data
        return True

    def take_response(self, head_only=False):
        """(status, headers, body) of the next response if all of it is in
        the buffer (taken out of it), else None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        start = end + 4
        if len(self.buf) < start + length:
            return None
        body = self.buf[start:start + length]
        self.buf = self.buf[start + length:]
        return status, headers, body

    def read_response(self, head_only=False, timeout=10):
        """(status, headers, body) of the next response, or None if the
        server ended the connection before a complete one."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.take_response(head_only)
            if r is not None:
                return r
            if self.eof is not None or not self._recv(deadline):
                return None

    def get(self, path="/index.html", extra=(), timeout=10):
        self.send(request(path, extra=extra))
        return self.read_response(timeout=timeout)

    def read_to_eof(self, timeout=10):
        """Reads (keeping what arrives) until the server ends the connection:
        "eof" or "reset"; raises if it is still open after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.eof is None:
            if time.monotonic() > deadline:
                raise AssertionError("server kept the connection open for %ss" % timeout)
            self._recv(deadline + 1)
        return self.eof

    def shutdown_write(self):
        """Our FIN. Over TLS no close_notify: Python's SSLSocket.shutdown()
        drops its TLS state, so what is read afterwards is raw records, only
        counted and discarded."""
        self.sock.shutdown(socket.SHUT_WR)

    def rst(self):
        """Abortive close (SO_LINGER 0: a RST); nothing if already closed."""
        if self.sock.fileno() != -1:
            harness.rst_close(self.sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tcp_queues(pid, local_port, remote_port):
    """(tx_queue, rx_queue) of the established TCP socket local_port ->
    remote_port in pid's network namespace (the kernel's Send-Q: bytes not
    yet acknowledged by the peer; Recv-Q: bytes received and not read by the
    application), or None when there is no such socket any more."""
    for proto in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, proto)) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] not in ("01", "08"):  # ESTABLISHED, CLOSE_WAIT
                        continue
                    if (int(p[1].rsplit(":", 1)[1], 16) == local_port and
                            int(p[2].rsplit(":", 1)[1], 16) == remote_port):
                        tx, rx = p[4].split(":")
                        return int(tx, 16), int(rx, 16)
        except OSError:
            pass
    return None


def time_wait_on_port(port):
    """Sockets in TIME_WAIT whose local (server) port is `port`."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


# -- shared test case -------------------------------------------------------------

class H1Case(ServerTestCase):
    """A MetricsConn per test (one HTTP/2 connection: the close counts stay
    exact); `self.before` holds the close counts when the test began."""

    def setUp(self):
        self.conns = []
        self.mc = MetricsConn(self.server)
        m = self.mc.wait_for(lambda m: m["h2loop_connections_active"] == 1, timeout=10,
                             what="only the metrics connection open")
        self.before = leaklib.closed_counts(m)
        self.m0 = m

    def tearDown(self):
        # A test that failed half-way may have left connections open: reset
        # them, so that what it left does not spill into the next test.
        for c in self.conns:
            c.rst()
        self.mc.close()
        super().tearDown()

    def h1(self, **kwargs):
        """An H1Conn to the server, reset at the end of the test if still open."""
        c = H1Conn(self.server, **kwargs)
        self.conns.append(c)
        return c

    def closed_since(self, m):
        return leaklib.closed_since(self.server, self.before, m)

    def wait_closes(self, reasons, count=1, timeout=5):
        """Waits until `count` connections were counted closed with one of
        `reasons` since the test began; returns every close since then."""
        reasons = (reasons,) if isinstance(reasons, str) else tuple(reasons)
        m = self.mc.wait_for(
            lambda m: sum(self.closed_since(m).get(r, 0) for r in reasons) >= count,
            timeout=timeout, what="%d close(s) with a reason in %s" % (count, reasons))
        return self.closed_since(m)

    def wait_live(self, what, timeout=10, **want):
        """Waits for the live gauges named (without their h2loop_ prefix) to
        reach the values given; the metrics connection and its request
        count themselves (+1 each)."""
        return self.mc.wait_for(
            lambda m: all(m["h2loop_" + k] == v + 1 for k, v in want.items()),
            timeout=timeout, what=what)

    def wait_freed(self, timeout=5):
        """Everything a connection held is gone (the metrics connection and
        its request remain)."""
        return self.mc.wait_for(
            lambda m: m["h2loop_connections_active"] == 1 and m["h2loop_streams_active"] == 1
            and m["h2loop_pool_in_use"] == 1 and m[BUFFERED] == 0,
            timeout=timeout, what="the connection and its stream to be freed")

    def input_held(self, c):
        """Whether the server has stopped reading c's input: some of it waits
        in the server's receive queue and stays there over a round trip
        through the server's loop (a loop that still read it would have)."""
        self.mc.get()
        first = tcp_queues(self.server.proc.pid, self.server.port, c.port)
        self.mc.get()
        then = tcp_queues(self.server.proc.pid, self.server.port, c.port)
        return first is not None and then is not None and then[1] > 0 and then[1] == first[1]

    def assert_served_meanwhile(self, open_connections):
        """A well-behaved HTTP/1.1 client is served on a fresh connection;
        then waits for its close (it closes first: peer_eof) so that it cannot
        be taken for the connection under test, and takes the counts afresh.
        open_connections: what the server holds besides it (the metrics
        connection included)."""
        c = self.h1()
        r = c.get("/index.html", timeout=10)
        self.assertIsNotNone(r, "a well-behaved client was not served")
        self.assertEqual(r[0], 200)
        self.assertGreater(len(r[2]), 0)
        c.close()
        m = self.mc.wait_for(lambda m: m["h2loop_connections_active"] == open_connections,
                             timeout=5, what="the well-behaved client's close")
        self.before = leaklib.closed_counts(m)


# -- 1. resets at each moment -------------------------------------------------------

class ClientResets(H1Case):
    """The client resets the TCP connection (SO_LINGER 0) at chosen moments
    of an HTTP/1.1 exchange. Every timeout is 120 s: only the reset can end
    the connection, so it must be noticed at once, counted peer_reset, and
    the request's pooled stream freed with it.
    Guard: reading a hang-up/reset even when nothing else is pending, and
    the one final destruction freeing the request's stream."""
    server_args = LONG

    def wait_all_read(self, c, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            ours = tcp_queues(os.getpid(), c.port, self.server.port)
            theirs = tcp_queues(self.server.proc.pid, self.server.port, c.port)
            if ours is not None and theirs is not None and ours[0] == 0 and theirs[1] == 0:
                return
            self.assertLess(time.monotonic(), deadline, "the server stopped reading the body "
                            "(our send queue, its receive queue: %s, %s)" % (ours, theirs))
            self.mc.get()

    def expect_reset(self):
        closed = self.wait_closes("peer_reset", timeout=5)
        self.assertEqual(closed, {"peer_reset": 1})
        self.wait_freed()

    def test_reset_inside_a_request_head(self):
        c = self.h1()
        c.send(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        # The head has begun: its stream is taken from the pool, and it is no
        # request yet (streams_active counts complete heads).
        self.wait_live("the partial head's stream", pool_in_use=1, streams_active=0,
                       connections_active=1)
        c.rst()
        self.expect_reset()

    def test_reset_with_a_post_body_half_sent(self):
        """POST with Content-Length 1 MiB, 512 KiB of it sent. A static file
        answers 405 at once; the request stays open until its body is read
        (the server reads and drops it), so its stream waits for the rest."""
        c = self.h1()
        c.send(request("/index.html", method="POST",
                       extra=[("Content-Length", str(MIB)), ("Content-Type", "x/y")]))
        c.send(b"p" * (512 * KIB))
        r = c.read_response(timeout=10)
        self.assertIsNotNone(r)
        self.assertEqual(r[0], 405)
        # The server read every byte sent (none left in our send queue nor in
        # its receive queue), and still holds the request for the half not sent.
        self.wait_all_read(c)
        self.wait_live("the POST in flight", pool_in_use=1, streams_active=1,
                       connections_active=1)
        c.rst()
        self.expect_reset()

    def test_reset_in_the_middle_of_a_large_download(self):
        c = self.h1()
        c.send(request(LARGE))
        got = 0
        c.sock.settimeout(10)
        while got < 2 * MIB:
            data = c.sock.recv(1 << 16)
            self.assertTrue(data, "the download ended early")
            got += len(data)
        self.wait_live("the download in flight", pool_in_use=1, streams_active=1,
                       connections_active=1)
        c.rst()
        self.expect_reset()

    def test_reset_right_after_a_pipelined_burst(self):
        """50 pipelined GETs of 1 MiB each (about 4 KiB of requests), then
        the reset before a byte of the answers was read."""
        c = self.h1()
        self.wait_live("the connection", connections_active=1)
        c.send(request("/1m.bin", extra=[("X-Pad", "x" * 16)]) * 50)
        c.rst()
        self.expect_reset()

    def test_reset_with_pipelined_input_held(self):
        """A pipelined burst above the 64 KiB input bound from a client that
        does not read: the server answers the first request, holds 64 KiB of
        the rest and leaves the remainder in the kernel; the reset frees the
        stream and the held input."""
        c = self.h1(rcvbuf=4096)
        burst = request("/1m.bin", extra=[("X-Pad", "x" * 200)]) * 1000  # about 260 KiB
        c.send(burst)
        self.wait_live("the first pipelined request in flight", pool_in_use=1,
                       streams_active=1, connections_active=1)
        deadline = time.monotonic() + 10
        while not self.input_held(c):
            self.assertLess(time.monotonic(), deadline, "the server read the whole burst")
        c.rst()
        self.expect_reset()

    @unittest.skipIf(harness.TLS, "h2c only: the upgrade is refused over TLS")
    def test_reset_right_after_an_h2c_upgrade(self):
        """Upgrade: h2c on a GET of 1 MiB: the request's stream passes from
        the HTTP/1.1 session to HTTP/2 (stream 1) and its answer follows the
        101; the reset comes before our preface. The handed-over stream is
        freed with the connection."""
        c = self.h1()
        c.send(request("/1m.bin", extra=H2C_UPGRADE))
        c.sock.settimeout(10)
        self.assertTrue(c.sock.recv(64).startswith(b"HTTP/1.1 101 "))
        self.wait_live("the upgraded request", pool_in_use=1, streams_active=1,
                       connections_active=1)
        c.rst()
        self.expect_reset()

    def test_many_resets_mid_download_leave_nothing_behind(self):
        for _ in range(30):
            c = self.h1()
            c.send(request("/1m.bin"))
            c.sock.settimeout(10)
            self.assertTrue(c.sock.recv(1 << 16))
            c.rst()
        closed = self.wait_closes("peer_reset", count=30, timeout=10)
        self.assertEqual(closed, {"peer_reset": 30})
        self.wait_freed()


# -- 2. FIN mid-request ---------------------------------------------------------------

class FinMidRequest(H1Case):
    """The client closes its sending side (FIN) in the middle of a request.
    No request can complete any more: the server closes promptly (every
    timeout is 120 s), counts peer_eof, ends its side with a FIN (not a RST:
    it read everything the client sent), and frees the request's stream.
    Guard: EOF handling on read (and, with input paused, the hang-up being
    read anyway: EPOLLRDHUP / EV_CLOSED)."""
    server_args = LONG

    def expect_eof_close(self, c):
        start = time.monotonic()
        closed = self.wait_closes("peer_eof", timeout=5)
        self.assertEqual(closed, {"peer_eof": 1})
        self.wait_freed()
        self.assertEqual(c.read_to_eof(timeout=5), "eof")
        self.assertLess(time.monotonic() - start, 10)
        c.close()

    def test_fin_after_a_partial_head(self):
        c = self.h1()
        c.send(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: yes")
        self.wait_live("the partial head's stream", pool_in_use=1, streams_active=0,
                       connections_active=1)
        self.assert_served_meanwhile(2)
        c.shutdown_write()
        self.expect_eof_close(c)

    def test_fin_after_a_partial_body(self):
        c = self.h1()
        c.send(request("/index.html", method="POST", extra=[("Content-Length", str(MIB))]))
        c.send(b"b" * (100 * KIB))
        r = c.read_response(timeout=10)
        self.assertIsNotNone(r)
        self.assertEqual(r[0], 405)
        self.wait_live("the POST in flight", pool_in_use=1, streams_active=1,
                       connections_active=1)
        self.assert_served_meanwhile(2)
        c.shutdown_write()
        self.expect_eof_close(c)

    @unittest.skipIf(harness.TLS, "h2c only: the upgrade is refused over TLS")
    def test_fin_after_an_h2c_upgrade_without_the_preface(self):
        """The 101 arrives; the client never sends the HTTP/2 preface and
        closes its side. The upgraded stream (its answer waiting for the
        preface) is freed, the close counted peer_eof."""
        c = self.h1()
        c.send(request("/1m.bin", extra=H2C_UPGRADE))
        c.sock.settimeout(10)
        self.assertTrue(c.sock.recv(64).startswith(b"HTTP/1.1 101 "))
        self.wait_live("the upgraded request", pool_in_use=1, streams_active=1,
                       connections_active=1)
        self.assert_served_meanwhile(2)
        c.shutdown_write()
        closed = self.wait_closes("peer_eof", timeout=5)
        self.assertEqual(closed, {"peer_eof": 1})
        self.wait_freed()
        c.rst()  # the answer's unread bytes: a RST from us either way

    def test_fin_while_input_is_paused_and_writes_blocked(self):
        """Pipelined GETs of 1 MiB (beyond the 64 KiB input bound) from a
        client that reads nothing: the server's writes stall and it has
        stopped reading. The FIN must still be noticed now, not at the
        write timeout (120 s)."""
        c = self.h1(rcvbuf=4096)
        # Pipelined requests in 4 KiB pieces until the server stops taking
        # them (its 64 KiB bound and the read that crossed it): what we send
        # then waits in its receive queue. No more than that is sent, so all
        # of it fits there and our FIN is not stuck behind unsent data in our
        # own send queue (a FIN travels after every byte before it).
        piece = request("/1m.bin", extra=[("X-Pad", "x" * 200)]) * 16
        sent = 0
        while True:
            self.assertTrue(c.send(piece))
            sent += len(piece)
            if self.input_held(c):
                break
            self.assertLess(sent, 1 * MIB, "the server never stopped reading")
        self.wait_live("a request in flight", pool_in_use=1, streams_active=1,
                       connections_active=1)
        deadline = time.monotonic() + 10
        last = None
        while True:
            # Our receive queue stops growing (the server's writes stall),
            # all we sent reached the server's kernel, and part of it waits
            # there unread (the server stopped reading).
            queued = unread_bytes(c.raw)
            ours = tcp_queues(os.getpid(), c.port, self.server.port)
            theirs = tcp_queues(self.server.proc.pid, self.server.port, c.port)
            if queued > 0 and queued == last and ours[0] == 0 and theirs[1] > 0:
                break
            self.assertLess(time.monotonic(), deadline,
                            "no stall with paused input: unread by us %d, our send queue %s, "
                            "its receive queue %s" % (queued, ours, theirs))
            last = queued
            self.mc.get()
        self.assert_served_meanwhile(2)
        c.shutdown_write()
        closed = self.wait_closes("peer_eof", timeout=10)
        self.assertEqual(closed, {"peer_eof": 1})
        self.wait_freed()
        # Unread answers were still on their way: the end may be a FIN or,
        # for what the server had left to send, a RST.
        c.rst()


class PipelinedBurstServed(H1Case):
    """The flip side of the read pause: 2,000 pipelined requests (about
    220 KiB, over three times the input bound), GET of a small file and HEAD of
    the 50 MiB one in turn, from a client that reads as it goes. The server
    pauses and resumes reading as the answers leave; every answer arrives,
    in order (a HEAD with the file's length and no body), and nothing is
    held afterwards. Guard: reading resumes once the exchange in hand is
    done (a pause that never lifts hangs here), HEAD sending no body."""
    server_args = LONG
    N = 2000

    def test_pipelined_burst_is_answered_in_order(self):
        c = self.h1()
        get = request("/index.html", extra=[("X-Pad", "g" * 40)])
        head = request(LARGE, method="HEAD", extra=[("X-Pad", "h" * 40)])
        burst = (get + head) * (self.N // 2)
        self.assertGreater(len(burst), 2 * MAX_BUFFERED_INPUT)
        # One thread, non-blocking: write the burst as the socket takes it,
        # read the answers as they come (a TLS socket must not be read and
        # written from two threads at once).
        sock = c.sock
        sock.setblocking(False)
        pos = answers = 0
        deadline = time.monotonic() + 30
        while answers < self.N:
            self.assertLess(time.monotonic(), deadline,
                            "%d of %d answers, %d of %d bytes of requests taken"
                            % (answers, self.N, pos, len(burst)))
            writing = [sock] if pos < len(burst) else []
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            readable, writable, _ = select.select([sock], writing, [], 0 if pending else 1.0)
            if writable:
                try:
                    pos += sock.send(burst[pos:pos + 16 * KIB])
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            if readable or pending:
                try:
                    data = sock.recv(1 << 16)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None
                if data == b"":
                    self.fail("the connection ended after %d answers" % answers)
                c.buf += data or b""
            while answers < self.N:
                is_head = answers % 2 == 1
                r = c.take_response(head_only=is_head)
                if r is None:
                    break
                self.assertEqual(r[0], 200, "answer %d" % answers)
                if is_head:
                    # The 50 MiB file's head (its real length), and no body.
                    self.assertEqual(int(r[1]["content-length"]), LARGE_SIZE, r[1])
                else:
                    self.assertEqual(len(r[2]), INDEX_SIZE)
                answers += 1
        sock.setblocking(True)
        self.assertEqual(pos, len(burst))
        self.assertEqual(c.buf, b"", "bytes after the last answer (a HEAD with a body?)")
        m = self.mc.get()
        self.assertEqual(m["h2loop_requests_total"] - self.m0["h2loop_requests_total"],
                         self.N + 1)  # and this metrics request
        self.assertEqual(self.closed_since(m), {})
        c.close()
        closed = self.wait_closes("peer_eof")
        self.assertEqual(closed, {"peer_eof": 1})
        self.wait_freed()


# -- 3. stalled readers ------------------------------------------------------------------

class StalledReaders(H1Case):
    """GETs of the 50 MiB file from clients that never read (4 KiB receive
    buffers). The server's own buffer per connection stays within the high
    watermark plus one step (plus a TLS flight), its memory does not grow
    with the file, and the write timeout (2 s) ends them.
    Guards: the output bound (h1 produce() stops above the high watermark)
    and the write timeout."""
    STALLED = 4
    WRITE_TIMEOUT = 2
    server_args = ("--write-timeout", str(WRITE_TIMEOUT), "--idle-timeout", "60",
                   "--header-timeout", "60", "--handshake-timeout", "60")

    def test_stalled_downloads_are_bounded_then_timed_out(self):
        s = self.server
        rss_before = s.rss_kib()
        clients = []
        for _ in range(self.STALLED):
            c = self.h1(rcvbuf=4096)
            c.send(request(LARGE))
            clients.append(c)
        start = time.monotonic()
        self.wait_live("the stalled downloads", connections_active=self.STALLED,
                       streams_active=self.STALLED)
        peak = positive = samples = rss_peak = 0
        last_served = 0
        deadline = start + self.WRITE_TIMEOUT + 20
        while True:
            m = self.mc.get()
            samples += 1
            peak = max(peak, m[BUFFERED])
            positive += m[BUFFERED] > 0
            rss_peak = max(rss_peak, s.rss_kib())
            if time.monotonic() - last_served > 0.5:
                # Meanwhile a well-behaved HTTP/1.1 client is served.
                w = self.h1()
                r = w.get("/index.html")
                self.assertEqual(r[0] if r else None, 200)
                w.close()
                last_served = time.monotonic()
            if self.closed_since(m).get("write_timeout", 0) >= self.STALLED:
                break
            self.assertLess(time.monotonic(), deadline,
                            "stalled readers not closed by the write timeout: %s"
                            % self.closed_since(m))
            time.sleep(0.01)  # sampling cadence
        elapsed = time.monotonic() - start
        self.assertEqual(self.closed_since(m).get("write_timeout"), self.STALLED)
        self.assertGreater(elapsed, self.WRITE_TIMEOUT * 0.8, "closed before the write timeout")
        self.assertLessEqual(peak, self.STALLED * OUTPUT_BOUND,
                             "output buffered beyond the per-connection bound")
        self.assertGreater(peak, 0, "%s never rose above zero in %d samples of the stall"
                           % (BUFFERED, samples))
        for c in clients:
            self.assertGreater(unread_bytes(c.raw), 0, "a stalled client got nothing at all")
        growth = rss_peak - rss_before
        print("\nh1 stalled: %d x GET %s unread: peak buffered %d B (bound %d; above zero in "
              "%d of %d samples), RSS +%d KiB, closed after %.1f s"
              % (self.STALLED, LARGE, peak, self.STALLED * OUTPUT_BOUND, positive, samples,
                 growth, elapsed), file=sys.stderr)
        if not harness.SANITIZED:
            self.assertLess(growth, 32 * 1024, "server RSS grew with the stalled files")
        for c in clients:
            c.rst()
        self.wait_freed()


class PipeliningFlood(H1Case):
    """5 MB of pipelined GETs for the 50 MiB file from a client that never
    reads. The server answers the first, holds at most its input bound of
    the rest and stops reading: the remainder waits in the kernel (the
    client's send blocks). Measured exactly: what the client wrote, minus
    what still sits in the client's send queue and the server's receive
    queue, is what the server took in. The write timeout ends it.
    Guards: the read pause on pipelined input (inputPaused), the output
    bound, and the write timeout."""
    WRITE_TIMEOUT = 3
    FLOOD = 5 * 1000 * 1000
    server_args = ("--write-timeout", str(WRITE_TIMEOUT), "--idle-timeout", "60",
                   "--header-timeout", "60", "--handshake-timeout", "60")
    # The input bound, one read over it, TLS read-ahead, and the one chunk
    # the sender may have written without counting it yet.
    TAKEN_BOUND = MAX_BUFFERED_INPUT + READ_BUFFER + (TLS_READ_AHEAD if harness.TLS else 0) + \
        16 * KIB + 8 * KIB

    def test_pipelined_flood_from_a_non_reader_is_paused_then_timed_out(self):
        s = self.server
        rss_before = s.rss_kib()
        c = self.h1(rcvbuf=4096)
        one = request(LARGE, extra=[("Accept", "*/*")])
        chunk = one * (16 * KIB // len(one))
        progress = {"sent": 0, "error": None}

        def flood():
            c.sock.settimeout(self.WRITE_TIMEOUT + 30)
            try:
                while progress["sent"] < self.FLOOD:
                    c.sock.sendall(chunk)
                    progress["sent"] += len(chunk)
            except (OSError, ssl.SSLError) as e:
                progress["error"] = e

        start = time.monotonic()
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        # Sample until the flood stalls: what was sent and both kernel queues
        # stay the same over 3 samples >= 0.2 s apart.
        seen = []
        taken = None
        deadline = start + self.WRITE_TIMEOUT + 20
        while taken is None:
            server_q = tcp_queues(s.proc.pid, s.port, c.port)
            client_q = tcp_queues(os.getpid(), c.port, s.port)
            self.assertIsNotNone(server_q, "the connection ended before the flood stalled "
                                 "(%d bytes sent)" % progress["sent"])
            sample = (progress["sent"], client_q[0], server_q[1])
            if seen and sample == seen[-1][1]:
                seen.append((time.monotonic(), sample))
                if seen[-1][0] - seen[0][0] >= 0.2 and len(seen) >= 3:
                    taken = sample[0] - sample[1] - sample[2]
            else:
                seen = [(time.monotonic(), sample)]
            self.assertLess(time.monotonic(), deadline, "the flood never stalled: %s" % (sample,))
            time.sleep(0.05)  # sampling cadence
        sent, client_unsent, server_unread = seen[-1][1]
        m = self.mc.get()
        self.assertEqual(m["h2loop_connections_active"], 2, "the flood connection is gone")
        self.assertLessEqual(m[BUFFERED], OUTPUT_BOUND)
        # The server took in no more than its bound...
        self.assertLessEqual(taken, self.TAKEN_BOUND,
                             "the server read %d bytes of pipelined requests (bound %d)"
                             % (taken, self.TAKEN_BOUND))
        # ... and stopped reading: the rest waits in its receive queue.
        self.assertGreater(server_unread, 0, "nothing waits in the server's receive queue")
        # The write timeout ends it (the server's last write progress was
        # before the stall was seen).
        closed = self.wait_closes("write_timeout", timeout=self.WRITE_TIMEOUT + 10)
        self.assertEqual(closed, {"write_timeout": 1})
        elapsed = time.monotonic() - start
        rss_peak = s.rss_kib()
        t.join(10)
        self.assertFalse(t.is_alive(), "the flood's send did not fail after the close")
        growth = rss_peak - rss_before
        print("\nh1 flood: sent %d B of pipelined GETs (%d requests); client send queue %d, "
              "server receive queue %d, taken by the server %d (bound %d); closed after %.1f s; "
              "RSS +%d KiB" % (sent, sent // len(one), client_unsent, server_unread, taken,
                               self.TAKEN_BOUND, elapsed, growth), file=sys.stderr)
        if not harness.SANITIZED:
            self.assertLess(growth, 20 * 1024, "server RSS grew with the pipelined flood")
        c.rst()
        self.wait_freed()


# -- 4. churn --------------------------------------------------------------------------

CHURN = 1000
CHURN_BUDGET = 60
CHURN_FLOOR = 300


class Churn(H1Case):
    """1,000 short HTTP/1.1 connections, one after another, in four kinds:
    keep-alive closed by the client (HTTP/1.1, and HTTP/1.0 with
    Connection: keep-alive), and closed by the server after its answer
    (Connection: close, and plain HTTP/1.0). The client-closes-first half
    runs first and leaves (next to) no TIME_WAIT on the server's port; the
    server-closes-first half is the server's own FIN after the response
    (its TIME_WAIT is HTTP/1.1's, and expected). Bounded in time; every close
    counted; all back to idle.
    Guards: the passive close on the client's FIN (no server TIME_WAIT),
    Connection: close / HTTP/1.0 ending the connection after the response."""
    server_args = ("--idle-timeout", "30", "--max-connections", "1000")

    def one(self, version, extra, client_closes, alpn):
        c = self.h1(alpn=alpn)
        c.send(request("/index.html", version=version, extra=extra))
        r = c.read_response(timeout=10)
        if r is None:
            m = self.server.metrics()
            self.fail("no answer (%s %s, ALPN %s): the connection ended %s; active %d, closed %s"
                      % (version, extra, alpn, c.eof, m["h2loop_connections_active"],
                         leaklib.closed_counts(m)))
        self.assertEqual(r[0], 200)
        if client_closes:
            self.assertNotEqual(r[1].get("connection", "").lower(), "close", r[1])
        else:
            self.assertEqual(r[1].get("connection", "").lower(), "close", r[1])
            # The server's FIN follows the response at once.
            self.assertEqual(c.read_to_eof(timeout=5), "eof")
        c.close()

    def run_kinds(self, kinds, budget, floor, label):
        start = time.monotonic()
        done = 0
        while done < CHURN // 2 and time.monotonic() - start < budget:
            version, extra, client_closes = kinds[done % len(kinds)]
            # Over TLS, HTTP/1.1 by ALPN and, every other pair, by no ALPN at all.
            self.one(version, extra, client_closes,
                     ("http/1.1",) if (done // len(kinds)) % 2 == 0 else ())
            done += 1
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(done, floor, "%s: only %d connections in %d s"
                                % (label, done, budget))
        return done, elapsed

    def test_a_thousand_short_connections(self):
        s = self.server
        client_first = [("HTTP/1.1", (), True),
                        ("HTTP/1.0", [("Connection", "keep-alive")], True)]
        server_first = [("HTTP/1.1", [("Connection", "close")], False),
                        ("HTTP/1.0", (), False)]
        n1, t1 = self.run_kinds(client_first, CHURN_BUDGET / 2, CHURN_FLOOR / 2, "client first")
        m1 = self.wait_freed(timeout=10)
        closed1 = self.closed_since(m1)
        tw1 = time_wait_on_port(s.port)
        # The client's FIN ends each (a RST only if a late record was unread).
        self.assertEqual(sum(closed1.values()), n1, closed1)
        self.assertGreaterEqual(closed1.get("peer_eof", 0), n1 - closed1.get("peer_reset", 0))
        self.assertEqual(set(closed1) - {"peer_eof", "peer_reset"}, set(), closed1)
        self.assertLess(tw1, 20, "server-side TIME_WAIT piles up although the client "
                        "closed first")
        self.before = leaklib.closed_counts(m1)
        n2, t2 = self.run_kinds(server_first, CHURN_BUDGET / 2, CHURN_FLOOR / 2, "server first")
        m2 = self.wait_freed(timeout=10)
        closed2 = self.closed_since(m2)
        tw2 = time_wait_on_port(s.port)
        # The server ended each after the response (its FIN, then our
        # close): completed; no timeout, no error.
        self.assertEqual(closed2, {"completed": n2})
        total = m2["h2loop_connections_total"] - self.m0["h2loop_connections_total"]
        self.assertGreaterEqual(total, n1 + n2)
        print("\nh1 churn: %d client-closes-first in %.1f s (%s; server TIME_WAIT %d), "
              "%d server-closes-first in %.1f s (%s; server TIME_WAIT %d)"
              % (n1, t1, closed1, tw1, n2, t2, closed2, tw2), file=sys.stderr)


class IdleKeepAlive(H1Case):
    """A keep-alive connection left idle after its response: the server ends
    it at the idle timeout with its FIN (HTTP/1.1 has no GOAWAY), counted
    idle_timeout. The metrics connection is polled meanwhile, which keeps it
    from being idle itself. Guard: the idle timeout."""
    IDLE = 1
    server_args = ("--idle-timeout", str(IDLE), "--header-timeout", "60")

    def test_idle_keep_alive_is_closed_at_the_idle_timeout(self):
        c = self.h1()
        self.assertEqual(c.get("/index.html")[0], 200)
        t0 = time.monotonic()
        while c.eof is None:
            self.assertLess(time.monotonic() - t0, self.IDLE + 5,
                            "an idle keep-alive connection was kept open")
            self.mc.get()
            try:
                c._recv(time.monotonic() + 0.05)
            except AssertionError:
                pass
        elapsed = time.monotonic() - t0
        self.assertEqual(c.eof, "eof")
        self.assertEqual(c.buf, b"", "unexpected bytes before the close")
        self.assertGreater(elapsed, self.IDLE * 0.8, "closed before the idle timeout")
        c.close()
        closed = self.wait_closes("idle_timeout", timeout=5)
        self.assertEqual(closed, {"idle_timeout": 1})


# -- 5. exhaustion -----------------------------------------------------------------------

class Exhaustion(H1Case):
    """--max-connections 20 and 40 HTTP/1.1 keep-alive clients: the metrics
    connection holds one slot, 19 are admitted and served (twice, on the same
    connection), 21 are refused at once (counted limit); when the clients
    close, every slot is free again. Guard: the connection limit."""
    LIMIT = 20
    CLIENTS = 40
    server_args = ("--max-connections", str(LIMIT), "--idle-timeout", "60")

    def try_client(self):
        """An H1Conn that got a 200, or None if the server refused it
        (a reset or EOF before any answer, promptly)."""
        start = time.monotonic()
        try:
            c = self.h1(timeout=5)
        except OSError as e:  # a reset, a TLS handshake cut short (a timeout: too slow)
            self.assertLess(time.monotonic() - start, 3, "refusal took long: %r" % e)
            return None
        r = c.get("/index.html", timeout=5)
        if r is None:
            self.assertLess(time.monotonic() - start, 3, "refusal took long")
            c.close()
            return None
        self.assertEqual(r[0], 200)
        return c

    def test_extra_clients_are_refused_the_admitted_served(self):
        refused0 = self.m0["h2loop_connections_refused_total"]
        admitted, refused = [], 0
        for _ in range(self.CLIENTS):
            c = self.try_client()
            if c is None:
                refused += 1
            else:
                admitted.append(c)
        self.assertEqual(len(admitted), self.LIMIT - 1)
        self.assertEqual(refused, self.CLIENTS - self.LIMIT + 1)
        m = self.mc.get()
        self.assertEqual(m["h2loop_connections_active"], self.LIMIT)
        self.assertEqual(m["h2loop_connections_refused_total"] - refused0, refused)
        self.assertEqual(self.closed_since(m), {"limit": refused})
        # The admitted are still served, on their keep-alive connections.
        for c in admitted:
            r = c.get("/1m.bin")
            self.assertIsNotNone(r)
            self.assertEqual((r[0], len(r[2])), (200, MIB))
        for c in admitted:
            c.close()
        m = self.wait_freed(timeout=10)
        self.assertEqual(self.closed_since(m), {"limit": refused, "peer_eof": len(admitted)})
        # Every slot is free again.
        again = [self.try_client() for _ in range(self.LIMIT - 1)]
        self.assertNotIn(None, again)
        for c in again:
            c.close()
        self.wait_freed(timeout=10)


# -- 6. slowloris ---------------------------------------------------------------------------

class Slowloris(H1Case):
    """50 connections each trickling a request head a byte at a time (every
    0.2 s: never idle for the idle timeout). The header timeout (1 s) ends
    every one with a 408 and a close, counted header_timeout, within a bound;
    a normal client is served meanwhile. Guard: the header timeout."""
    N = 50
    server_args = ("--header-timeout", "1", "--idle-timeout", "60", "--write-timeout", "60",
                   "--handshake-timeout", "60")

    def test_fifty_trickled_heads_are_cut_at_the_header_timeout(self):
        conns = [self.h1() for _ in range(self.N)]
        self.wait_live("the slowloris connections", connections_active=self.N)
        head = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"s" * 4000
        started = {}
        answered = {}    # index -> seconds from its first byte to the server's answer
        ended = {}       # index -> "eof"/"reset" once the server ended it
        for i, c in enumerate(conns):
            c.send(head[:8])
            started[i] = time.monotonic()
        pos = 8
        served = False
        deadline = time.monotonic() + 10
        while len(ended) < self.N:
            self.assertLess(time.monotonic(), deadline,
                            "%d of %d trickling connections still open after 10 s"
                            % (self.N - len(ended), self.N))
            for i, c in enumerate(conns):
                if i in ended:
                    continue
                if i not in answered:
                    c.send(head[pos:pos + 1])
                c.sock.setblocking(False)
                try:
                    while True:
                        data = c.sock.recv(1 << 16)
                        if not data:
                            ended[i] = "eof"
                            break
                        c.buf += data
                        answered.setdefault(i, time.monotonic() - started[i])
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except (ConnectionResetError, ssl.SSLError, OSError):
                    ended[i] = "reset"
                    answered.setdefault(i, time.monotonic() - started[i])
                c.sock.setblocking(True)
            pos += 1
            if not served:
                # While every head is still trickling, a normal request.
                w = self.h1()
                r = w.get("/index.html")
                self.assertEqual(r[0] if r else None, 200)
                w.close()
                served = True
                self.assertEqual(answered, {}, "heads cut before the header timeout")
            time.sleep(0.2)  # the trickle's pace (the test's subject, not a sync)
        for c in conns:
            c.close()
        closed = self.wait_closes("header_timeout", count=self.N, timeout=5)
        self.assertEqual(closed.get("header_timeout"), self.N, closed)
        self.assertEqual(set(closed) - {"header_timeout", "peer_eof"}, set(), closed)
        statuses = [c.buf[:12] for c in conns]
        self.assertEqual(statuses.count(b"HTTP/1.1 408"), self.N, statuses)
        times = sorted(answered.values())
        print("\nh1 slowloris: %d heads trickled; 408 after %.2f..%.2f s; ends %s"
              % (self.N, times[0], times[-1],
                 {k: list(ended.values()).count(k) for k in set(ended.values())}),
              file=sys.stderr)
        self.assertGreater(times[0], 0.8, "a head was cut before the header timeout")
        self.assertLess(times[-1], 4, "a head outlived the header timeout")
        self.wait_freed()


if __name__ == "__main__":
    harness.main()
