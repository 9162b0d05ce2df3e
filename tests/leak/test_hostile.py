#!/usr/bin/python3
"""Scenario 7: hostile HTTP/2 peers.

Raw frames (hyperframe + hpack, python3-h2's own dependencies) for what no
library would send: rapid reset, CONTINUATION floods, oversized header lists,
SETTINGS / PING floods from a client that never reads, empty-DATA floods,
garbage instead of the preface (or instead of TLS), handshakes that never
finish, clients that never speak.

Each attack must end in the proper reaction (a stream reset, or a GOAWAY
with an error code and/or a close) within a bounded time, counted under the
proper close reason; the server must not buffer without bound; a
well-behaved client is served while the attack connection is open; and
afterwards every counter is back at idle (ServerTestCase)."""

import math
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leaklib  # noqa: E402  (puts tests/integration on sys.path)
import harness  # noqa: E402
from harness import ServerTestCase  # noqa: E402
from leaklib import (  # noqa: E402
    ENHANCE_YOUR_CALM, INTERNAL_ERROR, PROTOCOL_ERROR, RawConn)

# Output high watermark (server default, 64 KiB) plus one frame and slack:
# the most one connection may hold in its output buffer; over TLS, plus one
# flight of encrypted records the socket has not taken yet (four records).
OUTPUT_BOUND = 64 * 1024 + 32 * 1024 + (4 * (16384 + 256) if harness.TLS else 0)


class HostileCase(ServerTestCase):
    """Helpers shared by the hostile suites."""

    def snapshot(self):
        m = self.server.metrics()
        return m, leaklib.closed_counts(m)

    def assert_served_meanwhile(self):
        status, length = leaklib.served(self.server, "/index.html")
        self.assertEqual(status, 200, "a well-behaved client was not served during the attack")
        self.assertGreater(length, 0)

    def assert_closed_with(self, before, reasons, timeout=10):
        """The attack connection is counted closed with one of `reasons`
        (peer_eof and completed are what the well-behaved and metrics clients
        add, so they are never what an attack is expected to produce)."""
        closed = leaklib.wait_closed(self.server, before, reasons, timeout=timeout)
        noise = {"peer_eof", "completed"} - set(reasons)
        attack = {r: n for r, n in closed.items() if r not in noise}
        self.assertEqual(sum(attack.values()), 1, closed)
        return closed

    def assert_error_goaways(self, conn, allowed):
        for last, code in conn.goaways:
            self.assertIn(code, allowed, "GOAWAY(last=%d, code=%d)" % (last, code))


class HostileFrames(HostileCase):
    # Timeouts far beyond the bounds below, except the write timeout: a
    # client that never reads may legitimately be cut off by it.
    server_args = ("--handshake-timeout", "60", "--idle-timeout", "60", "--write-timeout", "2")

    # -- rapid reset (CVE-2023-44487) -----------------------------------------

    def test_rapid_reset_gets_goaway_and_is_closed(self):
        m0, before = self.snapshot()
        c = RawConn(self.server)
        pairs, sid, batch = 5000, 1, 100
        sent = 0
        start = time.monotonic()
        while sent < pairs and time.monotonic() - start < 20:
            chunk = b""
            for _ in range(batch):
                chunk += c.headers_frame(sid, c.header_block("/index.html")) + c.rst_frame(sid)
                sid += 2
            if not c.send(chunk):
                break
            sent += batch
            if sent == 2 * batch:  # well under any reset budget: still a live attack
                self.assert_served_meanwhile()
        # The server answers with an error GOAWAY and ends the connection
        # itself; the attacker neither reads nor closes until then.
        c.wait_closed(timeout=10)
        elapsed = time.monotonic() - start
        c.close()
        self.assertTrue(c.goaways, "no GOAWAY before the close")
        last, code = c.goaways[-1]
        self.assertIn(code, (ENHANCE_YOUR_CALM, INTERNAL_ERROR, PROTOCOL_ERROR), c.goaways)
        self.assertLess(last, 2 * pairs - 1, "every stream was accepted")
        self.assertLess(elapsed, 30)
        m = self.server.metrics()
        # The reset budget (burst 1000, 33 per second boundary crossed: the
        # server's defaults), the request whose RST found the budget empty,
        # the well-behaved request and the metrics request; no more, however
        # much of the flood one read of the server takes in.
        started = m["h2loop_requests_total"] - m0["h2loop_requests_total"]
        self.assertLessEqual(started, 1000 + 33 * (math.ceil(elapsed) + 1) + 1 + 2,
                             "streams were started after the reset budget ran out")
        self.assert_closed_with(before, ("protocol_error",))

    # -- CONTINUATION flood (CVE-2024-27316 class) --------------------------------

    def test_continuation_flood_is_closed_promptly(self):
        _, before = self.snapshot()
        c = RawConn(self.server)
        block = c.header_block("/index.html")
        c.send(c.headers_frame(1, block[:4], end_stream=True, end_headers=False))
        # A few CONTINUATIONs (under nghttp2's limit of 8) are legal...
        c.send(b"".join(c.continuation_frame(1, b"") for _ in range(4)))
        self.assert_served_meanwhile()
        # ...an endless series is not.
        start = time.monotonic()
        for _ in range(100):  # up to 10,000 frames
            if not c.send(b"".join(c.continuation_frame(1, b"") for _ in range(100))):
                break
        c.wait_closed(timeout=5)
        self.assertLess(time.monotonic() - start, 5)
        c.close()
        self.assert_error_goaways(c, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR))
        self.assert_closed_with(before, ("protocol_error",))

    # -- oversized header lists ---------------------------------------------------

    def assert_stream_refused_connection_usable(self, extra):
        c = RawConn(self.server)
        block = c.header_block("/index.html", extra=extra)
        frames, first = b"", True
        while block or first:
            piece, block = block[:16384], block[16384:]
            if first:
                frames += c.headers_frame(1, piece, end_stream=True, end_headers=not block)
                first = False
            else:
                frames += c.continuation_frame(1, piece, end_headers=not block)
        self.assertTrue(c.send(frames))
        self.assertTrue(c.read_until(lambda c: 1 in c.resets or 1 in c.statuses, timeout=5),
                        "no answer to the oversized request")
        if 1 in c.statuses:
            self.assertEqual(c.statuses[1], 431)
        else:
            self.assertIn(c.resets[1], (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, 0x7, 0xB),
                          c.resets)
        # The same connection serves the next request.
        c.send(c.headers_frame(3, c.header_block("/index.html")))
        self.assertTrue(c.read_until(lambda c: 3 in c.ended, timeout=5),
                        "the connection did not serve the next request")
        self.assertEqual(c.statuses.get(3), 200)
        self.assertEqual(c.goaways, [])
        self.assertIsNone(c.eof)
        c.close()

    def test_100kib_header_list_resets_the_stream_only(self):
        self.assert_stream_refused_connection_usable(
            [("x-big-%03d" % i, "a" * 1024) for i in range(100)])

    def test_500_header_fields_reset_the_stream_only(self):
        self.assert_stream_refused_connection_usable(
            [("x-field-%03d" % i, "v") for i in range(500)])

    # -- floods from a client that never reads -----------------------------------

    def flood_unread(self, frame, total=1_000_000, batch_bytes=8192):
        """Sends `frame` up to `total` times (at most 30 s) from a client with
        a small receive buffer that never reads. Meanwhile: a well-behaved
        client is served, and the server's output stays bounded. Returns the
        close reasons counted and the flood's connection."""
        _, before = self.snapshot()
        c = RawConn(self.server, rcvbuf=4096)
        per_batch = max(1, batch_bytes // len(frame))
        chunk = frame * per_batch
        progress = {"sent": 0}

        def flood():
            c.sock.settimeout(30)
            deadline = time.monotonic() + 30
            while progress["sent"] < total and time.monotonic() < deadline:
                if not c.send(chunk):
                    return
                progress["sent"] += per_batch

        # A first burst the server still answers (it flushes the replies into
        # our socket buffer), then a well-behaved client is served while this
        # connection is open, then the flood proper.
        self.assertTrue(c.send(frame * 500))
        self.assert_served_meanwhile()
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            peak = 0
            deadline = time.monotonic() + 15
            while True:
                m = self.server.metrics()
                peak = max(peak, m["h2loop_output_buffered_bytes"])
                closed = leaklib.closed_since(self.server, before, m)
                if closed.get("protocol_error") or closed.get("write_timeout"):
                    break
                self.assertLess(time.monotonic(), deadline,
                                "flood connection still open after 15 s (%d frames sent): %s"
                                % (progress["sent"], closed))
            self.assertLessEqual(peak, OUTPUT_BOUND)
        finally:
            t.join(35)
            c.close()
        self.assertFalse(t.is_alive())
        return self.assert_closed_with(before, ("protocol_error", "write_timeout")), c

    def test_settings_flood_without_reading(self):
        closed, c = self.flood_unread(RawConn.settings_frame({0x4: 65535}))
        self.assert_error_goaways(c, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR))

    def test_ping_flood_without_reading(self):
        closed, c = self.flood_unread(RawConn.ping_frame(b"floodme!"))
        self.assert_error_goaways(c, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR))

    # -- empty DATA frames (CVE-2019-9518 class) --------------------------------

    def test_empty_data_flood_is_closed(self):
        """Zero-length DATA frames without END_STREAM on an open stream cost
        the server work and carry nothing: many thousands must end the
        connection, as in nginx, Envoy, Node and SwiftNIO."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        c.send(c.headers_frame(1, c.header_block("/index.html"), end_stream=False))
        self.assertTrue(c.read_until(lambda c: 1 in c.statuses, timeout=5))
        self.assert_served_meanwhile()
        start = time.monotonic()
        chunk = c.data_frame(1) * 1000
        sent = 0
        while sent < 100_000 and time.monotonic() - start < 20:
            if not c.send(chunk):
                break
            sent += 1000
        try:
            c.wait_closed(timeout=5)
        except AssertionError:
            self.fail("%d empty DATA frames in %.1f s and the connection is still open"
                      % (sent, time.monotonic() - start))
        finally:
            c.close()
        self.assert_error_goaways(c, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR))
        self.assert_closed_with(before, ("protocol_error",))

    # -- connection-level protocol error --------------------------------------------

    def test_frame_level_protocol_error_gets_goaway_and_close(self):
        """WINDOW_UPDATE with a zero increment on stream 0 is a connection
        error (RFC 9113 §6.9): GOAWAY(PROTOCOL_ERROR), then the close."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        c.send(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
        c.wait_closed(timeout=5)
        c.close()
        self.assertTrue(c.goaways, "no GOAWAY")
        self.assertEqual(c.goaways[-1][1], PROTOCOL_ERROR, c.goaways)
        self.assert_closed_with(before, ("protocol_error",))

    # -- garbage ---------------------------------------------------------------------

    def test_garbage_instead_of_the_preface(self):
        _, before = self.snapshot()
        c = RawConn(self.server, preface=False)  # TLS: after a complete handshake
        start = time.monotonic()
        c.send(b"\x00\x01\x02 this is not an HTTP/2 connection preface \xff\xfe" * 4)
        c.wait_closed(timeout=5)
        self.assertLess(time.monotonic() - start, 5)
        c.close()
        self.assert_error_goaways(c, (PROTOCOL_ERROR,))
        self.assert_closed_with(before, ("protocol_error",))

    @unittest.skipIf(harness.TLS, "h2c only: on the TLS port HTTP/1.1 never reaches HTTP/2")
    def test_http11_request_on_h2c_gets_505_and_a_close(self):
        _, before = self.snapshot()
        s = harness.tcp_connect(self.server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n")
        s.settimeout(5)
        reply = b""
        start = time.monotonic()
        while time.monotonic() - start < 5:
            data = s.recv(4096)
            if not data:
                break
            reply += data
        else:
            self.fail("no close after the 505")
        s.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 505 "), reply[:80])
        self.assertIn(b"HTTP/2 only", reply)
        self.assert_closed_with(before, ("protocol_error",))

    @unittest.skipUnless(harness.TLS, "TLS only: h2c has no handshake")
    def test_client_hello_then_fin_is_closed_at_once(self):
        """A ClientHello, then FIN, from a client that never reads (and a
        tiny receive buffer, so our flight may not even fit): the handshake
        can never finish; the server closes now, not at the handshake timeout
        (60 s here), and does not spin on the level-triggered hang-up."""
        _, before = self.snapshot()
        cpu_before = self.server.cpu_seconds()
        s = leaklib.connect_raw(self.server, rcvbuf=2048)
        start = time.monotonic()
        s.sendall(leaklib.client_hello_bytes())
        s.shutdown(socket.SHUT_WR)
        self.assertIn(leaklib.read_to_eof(s, timeout=10), ("eof", "reset"))
        self.assertLess(time.monotonic() - start, 10)
        s.close()
        # Its close is a peer_eof, like the metrics clients' own: what tells
        # it apart is that it came long before the handshake timeout, and
        # that no timeout was counted.
        m = self.server.wait_for(lambda m: m["h2loop_connections_active"] == 1, timeout=10,
                                 what="the connection to be gone")
        closed = leaklib.closed_since(self.server, before, m)
        self.assertEqual(closed.get("handshake_timeout", 0), 0, closed)
        # Not a measurement: a spinning worker would burn the whole wait.
        self.assertLess(self.server.cpu_seconds() - cpu_before, 2.0)

    @unittest.skipUnless(harness.TLS, "TLS only: non-TLS bytes on the TLS port")
    def test_tls_garbage_is_closed_as_tls_error(self):
        for payload in (b"\x00\x01garbage, not a TLS record\r\n\r\n" * 4,
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
            _, before = self.snapshot()
            s = harness.tcp_connect(self.server)
            start = time.monotonic()
            s.sendall(payload)
            self.assertIn(leaklib.read_to_eof(s, timeout=5), ("eof", "reset"))
            self.assertLess(time.monotonic() - start, 5)
            s.close()
            self.assert_closed_with(before, ("tls_error",))


class HandshakeNeverFinishes(HostileCase):
    server_args = ("--handshake-timeout", "1", "--idle-timeout", "60", "--write-timeout", "60")

    def assert_closed_by_handshake_timeout(self, first_bytes):
        _, before = self.snapshot()
        s = harness.tcp_connect(self.server)
        start = time.monotonic()
        if first_bytes:
            s.sendall(first_bytes)
        self.assert_served_meanwhile()
        self.assertIn(leaklib.read_to_eof(s, timeout=6), ("eof", "reset"))
        elapsed = time.monotonic() - start
        s.close()
        self.assertGreater(elapsed, 0.8, "closed before the handshake timeout")
        self.assertLess(elapsed, 4)
        self.assert_closed_with(before, ("handshake_timeout",))

    @unittest.skipUnless(harness.TLS, "TLS only: h2c has no handshake")
    def test_connects_and_sends_nothing(self):
        self.assert_closed_by_handshake_timeout(b"")

    @unittest.skipUnless(harness.TLS, "TLS only: h2c has no handshake")
    def test_sends_half_a_client_hello(self):
        hello = leaklib.client_hello_bytes()
        self.assertGreater(len(hello), 100)
        self.assert_closed_by_handshake_timeout(hello[: len(hello) // 2])


class SilentClient(HostileCase):
    """A client that connects (TLS: completes the handshake) and never sends
    a byte: the idle timeout ends it."""
    server_args = ("--idle-timeout", "1", "--handshake-timeout", "60", "--write-timeout", "60")
    # The idle timeout, then at most the lingering close (2 s), plus slack.
    BOUND = 1 + 2 + 2

    def open_silent(self):
        s = harness.connect(self.server)
        start = time.monotonic()
        self.assert_served_meanwhile()
        return s, start

    def test_silent_client_sees_eof_within_a_bound(self):
        s, start = self.open_silent()
        self.assertIn(leaklib.read_to_eof(s, timeout=self.BOUND + 1), ("eof", "reset"))
        elapsed = time.monotonic() - start
        s.close()
        self.assertGreater(elapsed, 0.8, "closed before the idle timeout")
        self.assertLess(elapsed, self.BOUND)

    def test_silent_client_close_is_counted_as_idle_timeout(self):
        _, before = self.snapshot()
        s, _ = self.open_silent()
        self.assertIn(leaklib.read_to_eof(s, timeout=self.BOUND + 1), ("eof", "reset"))
        s.close()
        self.assert_closed_with(before, ("idle_timeout",), timeout=5)


if __name__ == "__main__":
    harness.main()
