#!/usr/bin/python3
"""The WebSocket handle's promise, on h2loop_api_app (tests/api/api_app.cc):
an application that sends as fast as send() lets it, on the loop or from a
thread of its own, to a peer that does not read, never makes the server hold
more than the bounds (the seed failure: send buffers that grew because the
application kept writing); everything it sent arrives, in order, before its
close; and a handle used after its WebSocket ended says closed, from any
thread, without touching freed memory.

Over HTTP/1.1 (RFC 6455) and HTTP/2 (RFC 8441) each, once per event loop and
transport (ctest). After every test the server is idle again, WebSocket and
application gauges included.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402
import wslib  # noqa: E402
from test_handles import stats, wait_stats  # noqa: E402

SEND_BOUND = 64 * 1024    # WebSocketOptions::send_bound (default)
STREAM_BOUND = 64 * 1024  # ServerOptions::stream_write_bound (default)
MESSAGE = 1024


class FloodTests:
    """Mixed into one wslib.WsCase per carrier below."""

    @classmethod
    def setUpClass(cls):
        # The API app: no --websocket-echo, its own /ws routes.
        cls.server = harness.Server().start()
        cls.server.file_mounts = 2  # the app mounts the root at / and at /static
        cls.app_idle = wslib.app_baseline(cls.server)

    def flood(self, n, thread, rcvbuf=4096):
        path = "/ws/flood?n=%d&size=%d&thread=%d" % (n, MESSAGE, 1 if thread else 0)
        return self.ws(path, rcvbuf=rcvbuf)

    def read_flood(self, c, n, timeout=60):
        """Reads the n messages and the close; asserts order and size."""
        for i in range(n):
            kind, data = c.recv_message(timeout)
            self.assertEqual(kind, "binary")
            self.assertEqual(len(data), MESSAGE)
            self.assertEqual(int(data[:8]), i, "message %d out of order" % i)
        self.assertEqual(c.recv_close(timeout), (1000, "done"))
        c.close(1000)
        self.expect_end(c, 10)

    def check_bounded_while_stalled(self, thread):
        before = stats(self.server)
        n = 5000  # 5 MiB: far beyond every bound
        c = self.flood(n, thread)
        # The producer hits the bound and waits: the peer reads nothing.
        wait_stats(self.server, lambda s: s["ws_would_block"] > before["ws_would_block"],
                   "the producer to be refused at the bound")
        m = self.server.metrics()
        queued = m[wslib.QUEUED]
        app_queued = m["h2loop_app_queued_bytes"]
        self.assertLessEqual(queued, SEND_BOUND + MESSAGE,
                             "WebSocket bytes accepted past the send bound")
        self.assertLessEqual(app_queued, STREAM_BOUND + MESSAGE + 14,
                             "stream bytes queued past the stream bound")
        sent = stats(self.server)["ws_sent"] - before["ws_sent"]
        self.assertLess(sent, n // 2, "the producer was not held back")
        self.read_flood(c, n)
        after = wait_stats(self.server, lambda s: s["ws_closed"] > before["ws_closed"],
                           "on_close")
        self.assertEqual(after["ws_floods_done"] - before["ws_floods_done"], 1)
        self.assertEqual(after["ws_last_code"], 1000)

    def test_flood_on_the_loop_is_bounded_and_complete(self):
        self.check_bounded_while_stalled(thread=False)

    def test_flood_from_a_thread_is_bounded_and_complete(self):
        self.check_bounded_while_stalled(thread=True)

    def test_peer_gone_mid_flood_ends_the_producer_and_late_ops_say_closed(self):
        for thread in (False, True):
            before = stats(self.server)
            c = self.flood(100000, thread)
            wait_stats(self.server, lambda s: s["ws_would_block"] > before["ws_would_block"],
                       "the producer to be refused at the bound")
            c.abort()  # h1: RST of the connection; h2: RST_STREAM of the WebSocket alone
            # on_close told, then a pool thread sends, pings and closes on
            # the handle: each must say kClosed (late_other stays 0).
            s = wait_stats(self.server,
                           lambda s: s["late_closed"] >= before["late_closed"] + 3,
                           "the late operations on the ended WebSocket")
            self.assertEqual(s["late_other"], 0, "an operation on an ended WebSocket did not "
                             "say closed: %s" % s)
            self.assertEqual(s["ws_floods_done"], before["ws_floods_done"])
            self.assertEqual(s["ws_last_code"], 1006)
            c.dispose()
            wslib.wait_idle(self.server, self.app_idle)

    def test_echo_round_trip_and_close_code_reach_the_application(self):
        before = stats(self.server)
        c = self.ws("/ws/echo")
        self.assert_echo(c, "text", "héllo")
        self.assert_echo(c, "binary", bytes(range(256)) * 300)
        c.close(4001, "app code")
        self.assertEqual(c.recv_close(10), (4001, "app code"))
        self.expect_end(c)
        s = wait_stats(self.server, lambda s: s["ws_closed"] > before["ws_closed"],
                       "on_close")
        self.assertEqual(s["ws_last_code"], 4001)


class FloodH1(FloodTests, wslib.WsCase):
    transport = "h1"


class FloodH2(FloodTests, wslib.WsCase):
    transport = "h2"


class Shutdown(unittest.TestCase):
    """A graceful shutdown starts the close of every open WebSocket (1001);
    once the peers answered, the server exits at once (not at the drain
    timeout), 0."""

    def test_open_websockets_get_1001_and_the_server_exits(self):
        server = harness.Server("--drain-timeout", "30").start()
        server.file_mounts = 2
        clients = []
        try:
            clients = [wslib.connect(server, "/ws/echo", t) for t in ("h1", "h2")]
            for c in clients:
                c.send_text("before")
                self.assertEqual(c.recv_message(10), ("text", "before"))
            server.signal(harness.signal.SIGTERM)
            for c in clients:
                self.assertEqual(c.recv_close(10), (1001, "server shutting down"))
                c.close(1001)
            for c in clients:
                c.wait_end(10)
                c.finish()  # our side ends too (h2: END_STREAM; h1: FIN)
            # Well before the close timeout (5 s) and the drain timeout.
            self.assertEqual(server.wait(4), 0, server.log_text()[-2000:])
        finally:
            for c in clients:
                c.dispose()
            server.kill()


if __name__ == "__main__":
    harness.main()
