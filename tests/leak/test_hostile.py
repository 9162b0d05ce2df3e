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
from hyperframe.frame import PingFrame  # noqa: E402
from leaklib import (  # noqa: E402
    ENHANCE_YOUR_CALM, FRAME_SIZE_ERROR, INTERNAL_ERROR, NO_ERROR, PROTOCOL_ERROR, RawConn)

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
        """At least one GOAWAY was read, and every one carries an allowed code."""
        self.assertTrue(conn.goaways, "no GOAWAY read before the close (%s)" % conn.eof)
        for last, code in conn.goaways:
            self.assertIn(code, allowed, "GOAWAY(last=%d, code=%d)" % (last, code))

    def assert_goaway_then_eof(self, conn, code, within):
        """RFC 9113 §5.4.1: the peer reads GOAWAY(code), then the server
        closes (a FIN, not a RST that would destroy the GOAWAY), promptly."""
        start = time.monotonic()
        conn.read_until(lambda c: c.eof is not None, timeout=within + 5)
        elapsed = time.monotonic() - start
        self.assertEqual([g[1] for g in conn.goaways], [code], conn.goaways)
        self.assertEqual(conn.eof, "eof", "the connection was %s, not closed with a FIN after "
                         "the GOAWAY" % conn.eof)
        self.assertLess(elapsed, within, "closed only after %.1f s" % elapsed)


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
        self.assertEqual(c.eof, "eof", "the GOAWAY must not be followed by a RST")
        self.assert_closed_with(before, ("protocol_error",))

    # -- oversized header lists ---------------------------------------------------

    def assert_stream_refused_connection_usable(self, extra):
        c = RawConn(self.server)
        block = c.header_block("/index.html", extra=extra)
        self.assertTrue(c.send(c.header_block_frames(1, block)))
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
        self.assert_goaway_then_eof(c, PROTOCOL_ERROR, within=1.5)
        c.close()
        self.assert_closed_with(before, ("protocol_error",))

    # -- garbage ---------------------------------------------------------------------

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
        # The client's own FIN ends it: a passive close, a FIN back.
        self.assertEqual(leaklib.read_to_eof(s, timeout=10), "eof")
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
            # Not TLS at all: an abortive close (RST), at once.
            self.assertEqual(leaklib.read_to_eof(s, timeout=5), "reset")
            self.assertLess(time.monotonic() - start, 5)
            s.close()
            self.assert_closed_with(before, ("tls_error",))


class Http2OnlyPort(HostileCase):
    """--no-http1: the port speaks HTTP/2 alone. What is not the HTTP/2
    preface is a connection error (GOAWAY), and an HTTP/1.1 request on a
    cleartext port gets a readable 505. (With HTTP/1.1 on, both are HTTP/1.1
    requests: tests/integration/test_http1.py.)"""

    server_args = ("--no-http1",)

    def test_garbage_instead_of_the_preface(self):
        _, before = self.snapshot()
        c = RawConn(self.server, preface=False)  # TLS: after a complete handshake
        start = time.monotonic()
        c.send(b"\x00\x01\x02 this is not an HTTP/2 connection preface \xff\xfe" * 4)
        self.assert_goaway_then_eof(c, PROTOCOL_ERROR, within=1.5)
        self.assertLess(time.monotonic() - start, 5)
        c.close()
        self.assert_closed_with(before, ("protocol_error",))

    @unittest.skipIf(harness.TLS, "h2c only: on the TLS port HTTP/1.1 never reaches HTTP/2")
    def test_http11_request_on_an_h2c_only_port_gets_505_and_a_close(self):
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


class ConnectionErrors(HostileCase):
    """RFC 9113 §5.4.1 and §6.8 at the connection's end: after a connection
    error the peer reads the GOAWAY and then a FIN, promptly; a client's own
    GOAWAY is honoured, not treated as the end of service. Timeouts are far
    beyond every bound asserted, so only the behaviour under test can pass."""
    server_args = ("--handshake-timeout", "60", "--idle-timeout", "60", "--write-timeout", "60")

    def test_header_list_over_too_many_continuations_gets_goaway_then_fin(self):
        """A 400 KB header list in 16 KB frames: more CONTINUATIONs than
        allowed. The client is still sending when the server decides; it
        must still read GOAWAY and a FIN, not ECONNRESET."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        block = c.header_block("/index.html", extra=[("x-big-%03d" % i, "b" * 4000)
                                                     for i in range(135)])
        self.assertGreater(len(block), 390_000)
        frames = c.header_block_frames(1, block)
        c.send(frames)  # may fail part-way: the server stops taking frames at some point
        self.assert_goaway_then_eof(c, ENHANCE_YOUR_CALM, within=2)
        c.close()
        self.assert_closed_with(before, ("protocol_error",))

    def test_invalid_ping_gets_goaway_then_close(self):
        """A PING of length 7 is a FRAME_SIZE_ERROR connection error: GOAWAY,
        then the server closes at once (it does not wait for the client)."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        # After the server's SETTINGS: the session is up.
        self.assertTrue(c.read_until(lambda c: any(f.type == 0x4 for f in c.frames), timeout=5))
        c.send(b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567")
        self.assert_goaway_then_eof(c, FRAME_SIZE_ERROR, within=1.0)
        c.close()
        self.assert_closed_with(before, ("protocol_error",))

    def test_stream_id_below_one_used_is_a_connection_error(self):
        """§5.1.1: HEADERS on stream 5 after stream 7 is PROTOCOL_ERROR (5 is
        an idle stream that 7 closed); stream 7 is answered, 5 is not."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        c.send(c.headers_frame(7, c.header_block("/index.html")))
        self.assertTrue(c.read_until(lambda c: 7 in c.ended, timeout=5))
        self.assertEqual(c.statuses[7], 200)
        c.send(c.headers_frame(5, c.header_block("/index.html")))
        self.assert_goaway_then_eof(c, PROTOCOL_ERROR, within=1.5)
        self.assertNotIn(5, c.statuses, "stream 5 was answered")
        self.assertEqual(c.goaways[0][0], 7, "last-stream-id")
        c.close()
        self.assert_closed_with(before, ("protocol_error",))

    def test_client_goaway_lets_streams_in_flight_finish_and_pings_answered(self):
        """A client's GOAWAY (with an error code no one defined: §7 says it
        must not trigger special behaviour) only says it wants no new streams
        from us: the response in flight completes, a PING is answered, and
        once nothing is left the server sends its GOAWAY and closes."""
        _, before = self.snapshot()
        # A tiny stream window keeps the 1 MiB response in flight.
        c = RawConn(self.server, settings={0x4: 1024})
        c.send(c.headers_frame(1, c.header_block("/1m.bin")))
        self.assertTrue(c.read_until(lambda c: 1 in c.statuses, timeout=5))
        c.send(c.goaway_frame(0, 0xDEAD))
        c.send(c.ping_frame(b"afterGA!"))
        self.assertTrue(c.read_until(lambda c: any(
            isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == b"afterGA!"
            for f in c.frames), timeout=3), "the PING after our GOAWAY was not answered")
        self.assertEqual(c.goaways, [], "the server ended the connection over our GOAWAY")
        # Open the windows: the response completes on the same connection.
        c.send(c.settings_frame({0x4: 1 << 30}) + c.window_update_frame(0, 1 << 30))
        self.assertTrue(c.read_until(lambda c: 1 in c.ended, timeout=10),
                        "the stream in flight did not finish")
        body = sum(len(f.data) for f in c.frames if f.type == 0x0 and f.stream_id == 1)
        self.assertEqual(body, 1 << 20)
        # Nothing left: GOAWAY(NO_ERROR) and a FIN, well within the linger bound.
        self.assert_goaway_then_eof(c, NO_ERROR, within=1.5)
        c.close()
        self.assert_closed_with(before, ("completed",))

    def test_client_goaway_with_nothing_in_flight_ends_promptly(self):
        """GOAWAY, then a PING, with no stream open: the connection does not
        hang (nghttp2 reads nothing more); our GOAWAY and FIN follow at once."""
        _, before = self.snapshot()
        c = RawConn(self.server)
        self.assertTrue(c.read_until(lambda c: c.frames, timeout=5))
        c.send(c.goaway_frame(0, 0xDEAD) + c.ping_frame(b"afterGA!"))
        self.assert_goaway_then_eof(c, NO_ERROR, within=1.0)
        c.close()
        self.assert_closed_with(before, ("completed",))


class FloodsWithoutReading(HostileCase):
    """SETTINGS / PING floods from a client that never reads. Its output
    backs up, so only the flood limit (nghttp2's max_outbound_ack, which
    needs the server to keep reading) can end it in time: the write timeout
    is 60 s here and must not be what closes it."""
    server_args = ("--handshake-timeout", "60", "--idle-timeout", "60", "--write-timeout", "60")
    BOUND = 10  # seconds from the flood's start to the close

    def flood_unread(self, frame, total=200_000):
        """Sends `frame` up to `total` times (at most 30 s), one frame per
        write (over TLS one record per frame: a server reads few frames per
        pass), from a client with a small receive buffer that never reads. Meanwhile a well-behaved
        client is served and the server's output stays bounded; the flood
        connection is closed as a protocol error within BOUND seconds."""
        _, before = self.snapshot()
        c = RawConn(self.server, rcvbuf=4096)
        progress = {"sent": 0}

        def flood():
            c.sock.settimeout(30)
            deadline = time.monotonic() + 30
            while progress["sent"] < total and time.monotonic() < deadline:
                if not c.send(frame):
                    return
                progress["sent"] += 1

        self.assertTrue(c.send(frame * 500))
        self.assert_served_meanwhile()
        start = time.monotonic()
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            peak = 0
            while True:
                m = self.server.metrics()
                peak = max(peak, m["h2loop_output_buffered_bytes"])
                closed = leaklib.closed_since(self.server, before, m)
                if closed.get("protocol_error"):
                    break
                self.assertLess(time.monotonic() - start, self.BOUND,
                                "flood connection still open after %d s (%d frames sent): %s"
                                % (self.BOUND, progress["sent"], closed))
            self.assertLessEqual(peak, OUTPUT_BOUND)
        finally:
            t.join(35)
            c.close()
        self.assertFalse(t.is_alive())
        self.assert_closed_with(before, ("protocol_error",))
        # The flood limit is what ended it (the GOAWAY itself may never reach
        # a client that does not read: the server log says what was sent).
        deadline = time.monotonic() + 5
        while ("GOAWAY(ENHANCE_YOUR_CALM)" not in self.server.log_text()
               and time.monotonic() < deadline):
            time.sleep(0.05)  # the log reader thread catching up, bounded
        self.assertIn("GOAWAY(ENHANCE_YOUR_CALM)", self.server.log_text())

    def test_settings_flood_without_reading(self):
        self.flood_unread(RawConn.settings_frame({0x4: 65535}))

    def test_ping_flood_without_reading(self):
        self.flood_unread(RawConn.ping_frame(b"floodme!"))


class HandshakeNeverFinishes(HostileCase):
    server_args = ("--handshake-timeout", "1", "--idle-timeout", "60", "--write-timeout", "60")

    def assert_closed_by_handshake_timeout(self, first_bytes):
        _, before = self.snapshot()
        s = harness.tcp_connect(self.server)
        start = time.monotonic()
        if first_bytes:
            s.sendall(first_bytes)
        self.assert_served_meanwhile()
        # A timeout is an abortive close: RST, no TIME_WAIT on the server.
        self.assertEqual(leaklib.read_to_eof(s, timeout=6), "reset")
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
        # Nothing was ever sent to it (our preface waits for the client's),
        # so no GOAWAY either: after the lingering wait, a RST. (Python's ssl
        # reports a RST under TLS as a ragged EOF; there only the time counts.)
        outcome = leaklib.read_to_eof(s, timeout=self.BOUND + 1)
        if not harness.TLS:
            self.assertEqual(outcome, "reset")
        elapsed = time.monotonic() - start
        s.close()
        self.assertGreater(elapsed, 0.8, "closed before the idle timeout")
        self.assertLess(elapsed, self.BOUND)

    def test_silent_client_close_is_counted_as_idle_timeout(self):
        _, before = self.snapshot()
        s, _ = self.open_silent()
        # Nothing was ever sent to it (our preface waits for the client's),
        # so no GOAWAY either: after the lingering wait, a RST. (Python's ssl
        # reports a RST under TLS as a ragged EOF; there only the time counts.)
        outcome = leaklib.read_to_eof(s, timeout=self.BOUND + 1)
        if not harness.TLS:
            self.assertEqual(outcome, "reset")
        s.close()
        self.assert_closed_with(before, ("idle_timeout",), timeout=5)


if __name__ == "__main__":
    harness.main()
