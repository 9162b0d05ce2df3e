#!/usr/bin/python3
"""Scenario 3: abrupt and browser-like ends of a connection.

A client with many responses in flight closes with a FIN and no GOAWAY; a
client says GOAWAY and closes; a client cancels in-flight responses with
RST_STREAM and keeps using the connection. Every stream, pooled handle,
buffered byte and fd is freed (ServerTestCase checks idle after each test),
the close is counted under the right reason, and a well-behaved client is
served while the abrupt one is still connected.

The server's timeouts are set far beyond the test's bounds, so no timeout can
be what ends a connection here: only the client's own act can."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leaklib  # noqa: E402  (puts tests/integration on sys.path)
import harness  # noqa: E402
from harness import H2Client, ServerTestCase  # noqa: E402
from leaklib import CANCEL, MetricsConn  # noqa: E402

LONG = ["--handshake-timeout", "120", "--idle-timeout", "120", "--write-timeout", "120",
        "--drain-timeout", "5"]
MIB = 1 << 20
# python-h2's (and RFC 9113's) default windows: with them the server can send
# 65535 bytes of DATA in all before the client acknowledges anything.
DEFAULT_WINDOW = 65535


def data_bytes(client):
    return sum(len(r["body"]) for r in client.responses.values())


class AbruptEnds(ServerTestCase):
    server_args = LONG

    def setUp(self):
        self.mc = MetricsConn(self.server)
        self.before = leaklib.closed_counts(self.mc.get())

    def tearDown(self):
        self.mc.close()
        super().tearDown()

    def closed_since(self, m):
        return {r: v for r, v in leaklib.closed_since(self.server, self.before, m).items()}

    def wait_streams(self, n, what):
        """Waits until the server holds n streams besides the metrics asker."""
        return self.mc.wait_for(lambda m: m["h2loop_streams_active"] == n + 1, timeout=10,
                                what=what)

    def assert_served_meanwhile(self, open_connections):
        """open_connections: how many the server holds besides the served
        client (the metrics connection included)."""
        """A well-behaved client is served while the abrupt one is connected.
        Then waits until its own close is counted (so that it cannot be taken
        for the abrupt connection's) and takes the close counts afresh."""
        status, length = leaklib.served(self.server, "/index.html")
        self.assertEqual(status, 200, "a well-behaved client was not served")
        self.assertGreater(length, 0)
        m = self.mc.wait_for(lambda m: m["h2loop_connections_active"] == open_connections,
                             timeout=5, what="the well-behaved client's close")
        self.before = leaklib.closed_counts(m)

    def wait_one_close(self, reasons, timeout=5):
        """Waits for exactly the one abrupt connection to be counted closed
        (the metrics connection stays open, served() adds its own close,
        which is why the count is taken over `reasons` only)."""
        m = self.mc.wait_for(
            lambda m: sum(self.closed_since(m).get(r, 0) for r in reasons) >= 1, timeout=timeout,
            what="the connection to be closed with a reason in %s" % (reasons,))
        return self.closed_since(m)

    # -- FIN, no GOAWAY ---------------------------------------------------------

    def test_fin_with_50_streams_in_flight_and_nothing_read(self):
        """50 GETs of a 1 MiB file; the client reads nothing (no recv, no
        WINDOW_UPDATE) and closes its sending side: TCP FIN, no GOAWAY."""
        c = H2Client(self.server)
        sids = [c.request("/1m.bin") for _ in range(50)]
        m = self.wait_streams(50, "50 streams in flight")
        self.assertGreaterEqual(m["h2loop_pool_in_use"], 51)
        self.assert_served_meanwhile(2)
        start = time.monotonic()
        c.sock.shutdown(socket.SHUT_WR)  # FIN (a close() with unread data would be a RST)
        # A FIN without GOAWAY is the peer's EOF, noticed at once (every
        # timeout is 120 s): the wait is the bound.
        closed = self.wait_one_close(("peer_eof",), timeout=5)
        self.assertEqual(closed, {"peer_eof": 1})
        self.mc.wait_for(lambda m: m["h2loop_streams_active"] == 1
                         and m["h2loop_pool_in_use"] == 1
                         and m["h2loop_output_buffered_bytes"] == 0, timeout=5,
                         what="the 50 streams to be freed")
        # The server ended its side with a FIN, not a RST (a close on the
        # peer's EOF is not abortive, and the client sent nothing after its
        # FIN): the client reads what was sent, then EOF, promptly.
        self.assertEqual(leaklib.read_to_eof(c.sock, timeout=5), "eof")
        self.assertLess(time.monotonic() - start, 10)
        c.sock.close()
        self.assertEqual(len(sids), 50)

    def test_fin_while_the_server_is_blocked_writing(self):
        """Same, but with large windows: the server fills the socket (and its
        output buffer; reading may be paused by backpressure) before the FIN.
        The client still reads nothing: a peer that has said it is done and
        takes no bytes must not hold its streams until a timeout."""
        c = H2Client(self.server, settings={4: 16 * MIB}, window=64 * MIB)
        for _ in range(50):
            c.request("/1m.bin")
        self.mc.wait_for(lambda m: m["h2loop_streams_active"] >= 2, timeout=10,
                         what="responses in flight")
        self.wait_socket_stalled(c.sock)
        self.assert_served_meanwhile(2)
        c.sock.shutdown(socket.SHUT_WR)
        try:
            # The FIN is noticed although reading is paused (EPOLLRDHUP /
            # EV_CLOSED) and counted as the peer's EOF; the wait is the bound
            # (every timeout is 120 s).
            closed = self.wait_one_close(("peer_eof",), timeout=10)
            self.assertEqual(closed, {"peer_eof": 1})
        finally:
            harness.rst_close(c.sock)

    def wait_socket_stalled(self, sock, timeout=15):
        """Waits until the server can push no more: the bytes queued at our
        socket (which we do not read) stop growing between two metrics round
        trips, after at least 64 KiB arrived."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            queued = leaklib.unread_bytes(sock)
            if queued >= 64 * 1024 and queued == last:
                return queued
            self.assertLess(time.monotonic(), deadline,
                            "the server's writes never stalled (%d bytes queued)" % queued)
            last = queued
            self.mc.get()

    # -- GOAWAY, then close ----------------------------------------------------

    def test_goaway_then_close_on_an_idle_connection(self):
        c = H2Client(self.server)
        r = c.get("/index.html")
        self.assertEqual(r["status"], 200)
        self.assert_served_meanwhile(2)
        c.conn.close_connection()  # GOAWAY(NO_ERROR)
        c.flush()
        # Everything sent to us was read: close() sends a FIN.
        c.sock.close()
        closed = self.wait_one_close(("completed", "peer_eof"))
        self.assertEqual(sum(closed.values()), 1, closed)

    def test_goaway_then_close_with_streams_in_flight(self):
        """A browser tab closing: 10 large responses under way, the client
        says GOAWAY and closes. With the default windows the server can send
        only 64 KiB; the client reads exactly that (so its close is a FIN)."""
        c = H2Client(self.server)
        sids = [c.request("/1m.bin") for _ in range(10)]
        c.pump(lambda cl: data_bytes(cl) >= DEFAULT_WINDOW, timeout=10, ack_data=False)
        self.assertEqual(data_bytes(c), DEFAULT_WINDOW)
        self.wait_streams(10, "10 streams in flight")
        self.assert_served_meanwhile(2)
        c.conn.close_connection()
        c.flush()
        c.sock.close()
        # A FIN, or a RST if anything more (a TLS record, a frame) arrived
        # after the last DATA we read: both are how browsers end.
        closed = self.wait_one_close(("completed", "peer_eof", "peer_reset"))
        self.assertEqual(sum(closed.values()), 1, closed)
        self.assertEqual(len(sids), 10)

    # -- RST_STREAM, the connection lives on ------------------------------------

    def test_rst_stream_frees_inflight_responses_and_the_connection_lives_on(self):
        c = H2Client(self.server, settings={4: 16 * MIB}, window=64 * MIB)
        sids = [c.request("/10m.bin") for _ in range(4)]
        # Every response is under way.
        c.pump(lambda cl: all(len(cl.responses[s]["body"]) >= 64 * 1024 for s in sids),
               timeout=20)
        m = self.wait_streams(4, "4 responses in flight")
        self.assertGreaterEqual(m["h2loop_pool_in_use"], 5)
        self.assert_served_meanwhile(2)
        for s in sids:
            c.conn.reset_stream(s, error_code=CANCEL)
        c.flush()
        # The server may have DATA of those streams in flight; keep reading
        # (a browser does) while the streams disappear on the server.
        deadline = time.monotonic() + 5
        while True:
            m = self.mc.get()
            if m["h2loop_streams_active"] == 1 and m["h2loop_pool_in_use"] == 1:
                break
            self.assertLess(time.monotonic(), deadline,
                            "reset streams still held: %s" % {k: m[k] for k in (
                                "h2loop_streams_active", "h2loop_pool_in_use",
                                "h2loop_output_buffered_bytes")})
            self._read_briefly(c)
        # The connection itself stayed open...
        self.assertEqual(m["h2loop_connections_active"], 2, m)
        self.assertEqual(self.closed_since(m), {})
        self.assertFalse(c.closed)
        self.assertEqual(c.goaways, [])
        # ...and still serves a request.
        r = c.get("/index.html", timeout=10)
        self.assertEqual(r["status"], 200)
        self.assertTrue(r["ended"])
        with open(os.path.join(self.server.root, "index.html"), "rb") as f:
            self.assertEqual(bytes(r["body"]), f.read())
        for s in sids:
            self.assertLess(len(c.responses[s]["body"]), 10 * MIB)
        c.close()

    def test_file_replaced_on_disk_is_closed_when_its_last_stream_ends(self):
        """The file cache closes its descriptors lazily: a file replaced on
        disk is dropped by the first request after the cache's 1 s TTL, and
        a stream still sending the old file holds it until the stream ends.
        Once it ends (here by RST_STREAM), the old descriptor must close."""
        path = os.path.join(self.server.root, "replaced.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(2 * MIB))
        old = path + " (deleted)"
        c = H2Client(self.server)  # default windows: 64 KiB of the body, then it waits
        sid = c.request("/replaced.bin")
        c.pump(lambda cl: data_bytes(cl) >= DEFAULT_WINDOW, timeout=10, ack_data=False)
        fresh = os.urandom(1 * MIB)
        with open(path + ".new", "wb") as f:
            f.write(fresh)
        os.replace(path + ".new", path)
        time.sleep(1.2)  # past the cache's TTL (1 s), so the next request revalidates
        r = H2Client(self.server)
        self.assertEqual(bytes(r.get("/replaced.bin")["body"]), fresh)
        r.close()

        def old_fds():
            return [fd for fd, e in self.server.fd_table().items() if e.target.endswith(old)]
        # The in-flight stream still holds the replaced file, and only it.
        self.assertEqual(len(old_fds()), 1, self.server.fd_table())
        c.conn.reset_stream(sid, error_code=CANCEL)
        c.flush()
        deadline = time.monotonic() + 5
        while old_fds():
            self.assertLess(time.monotonic(), deadline,
                            "the replaced file is still open after its stream ended: %s"
                            % self.server.fd_table())
            self.mc.get()
        c.close()

    @staticmethod
    def _read_briefly(c):
        """One bounded read of whatever the server sends (frames of reset
        streams are dropped by python-h2)."""
        c.sock.settimeout(0.05)
        try:
            data = c.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            return
        if not data:
            c.closed = True
            return
        for ev in c.conn.receive_data(c._filter_goaway(data)):
            c.handle(ev, True)
        c.flush()


if __name__ == "__main__":
    harness.main()
