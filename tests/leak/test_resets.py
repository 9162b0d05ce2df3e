#!/usr/bin/python3
"""Scenario 2: the client resets the TCP connection (SO_LINGER 0) at chosen
moments. The server must notice at once (its timeouts are set far beyond the
test's bounds, so a timeout cannot be what closes it), count the reset and
free everything."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import H2Client, ServerTestCase  # noqa: E402
from leaklib import client_hello_bytes  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

# Far beyond every bound below: only the reset itself can close the connection.
LONG = ["--handshake-timeout", "120", "--idle-timeout", "120", "--write-timeout", "120"]


class ClientReset(ServerTestCase):
    server_args = LONG

    def expect_reset_noticed(self, before):
        """The reset is counted promptly (well inside the 120 s timeouts)."""
        self.server.wait_for(lambda m: self.server.closed("peer_reset", m) > before, timeout=5,
                             what="the reset to be noticed")
        self.server.wait_idle(timeout=5)

    def test_reset_right_after_connect(self):
        before = self.server.closed("peer_reset")
        s = harness.tcp_connect(self.server)
        # Wait until the server has the connection (the asker counts too).
        self.server.wait_for(lambda m: m["h2loop_connections_active"] == 2, timeout=5,
                             what="the connection to be accepted")
        harness.rst_close(s)
        self.expect_reset_noticed(before)

    @unittest.skipUnless(harness.TLS, "a TLS handshake exists only on the TLS transport")
    def test_reset_during_tls_handshake(self):
        before = self.server.closed("peer_reset")
        s = harness.tcp_connect(self.server)
        hello = client_hello_bytes()
        s.sendall(hello[: len(hello) // 2])  # half a ClientHello
        self.server.wait_for(lambda m: m["h2loop_connections_active"] == 2, timeout=5,
                             what="the connection to be accepted")
        harness.rst_close(s)
        self.expect_reset_noticed(before)

    def test_reset_inside_the_client_preface(self):
        """h2c has no handshake: its counterpart is the connection's setup
        before HTTP/2 is established, here half the client's preface (over
        TLS, after the handshake)."""
        before = self.server.closed("peer_reset")
        s = harness.connect(self.server)
        s.sendall(PREFACE[:12])
        self.server.wait_for(lambda m: m["h2loop_connections_active"] == 2, timeout=5,
                             what="the connection to be accepted")
        harness.rst_close(s)
        self.expect_reset_noticed(before)

    def test_reset_after_the_preface(self):
        before = self.server.closed("peer_reset")
        s = harness.connect(self.server)
        s.sendall(PREFACE + EMPTY_SETTINGS)
        self.assertTrue(s.recv(9))  # the server's SETTINGS: the session is up
        harness.rst_close(s)
        self.expect_reset_noticed(before)

    def test_reset_inside_a_headers_frame(self):
        before = self.server.closed("peer_reset")
        c = H2Client(self.server)  # preface and SETTINGS sent
        # A HEADERS frame header announcing 200 bytes, followed by 20 of them.
        c.sock.sendall(b"\x00\x00\xc8\x01\x04\x00\x00\x00\x01" + b"\x82" * 20)
        self.server.wait_for(lambda m: m["h2loop_connections_active"] == 2, timeout=5,
                             what="the connection to be up")
        harness.rst_close(c.sock)
        self.expect_reset_noticed(before)

    def test_reset_mid_upload(self):
        before = self.server.closed("peer_reset")
        c = H2Client(self.server)
        sid = c.request("/upload", method="POST", end_stream=False,
                        extra=[("content-length", str(8 << 20))])
        for _ in range(3):  # within the default 64 KiB window
            c.conn.send_data(sid, b"u" * 16384)
            c.flush()
        c.pump(lambda cl: cl.responses[sid]["status"] is not None, timeout=10)
        harness.rst_close(c.sock)
        self.expect_reset_noticed(before)

    def test_reset_mid_response_with_many_streams_open(self):
        before = self.server.closed("peer_reset")
        c = H2Client(self.server, settings={harness.h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                                            (1 << 31) - 1}, window=(1 << 30))
        sids = [c.request("/10m.bin") for _ in range(20)]
        # Take some of the responses in, then reset with most still in flight.
        c.pump(lambda cl: sum(len(cl.responses[s]["body"]) for s in sids) >= 1 << 20, timeout=20)
        # Several responses are in flight (the server produces only below its
        # output watermark: the rest waits inside nghttp2).
        m = self.server.metrics()
        self.assertGreaterEqual(m["h2loop_streams_active"], 1 + 2)
        harness.rst_close(c.sock)
        self.expect_reset_noticed(before)

    def test_many_resets_leave_nothing_behind(self):
        before = self.server.closed("peer_reset")
        for i in range(30):
            c = H2Client(self.server)
            c.request("/1m.bin")
            c.pump(lambda cl: any(r["body"] for r in cl.responses.values()), timeout=10)
            harness.rst_close(c.sock)
        self.server.wait_for(lambda m: self.server.closed("peer_reset", m) >= before + 30,
                             timeout=10, what="30 resets")
        self.server.wait_idle(timeout=5)


if __name__ == "__main__":
    harness.main()
