#!/usr/bin/python3
"""WebSockets on the h2loop binary's echo path (--websocket-echo /ws): RFC
6455 over an HTTP/1.1 Upgrade and RFC 8441 over HTTP/2 (extended CONNECT),
on the backend and transport chosen by the environment (see harness.py);
every group runs once over h1 and once over h2 (the *H1 / *H2 classes).

Clients: wslib (python3-wsproto's frame codec on a raw socket or on one
python3-h2 stream) for everything, including frames no library would send,
and python3-websockets, an independent client, for interoperability over
HTTP/1.1. After every test the server is back at idle: connections, streams,
pool, output, descriptors (harness) and no WebSocket open, nothing queued,
the application gauges where they were (wslib.wait_idle)."""

import asyncio
import os
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wslib  # noqa: E402
from wslib import (BINARY, CLOSE, CONT, INVALID_DATA, NO_STATUS, NORMAL, PING,  # noqa: E402
                   PROTOCOL_ERROR, TEXT, TOO_BIG, WS_PATH, WsCase, frame)

KIB = 1 << 10
MIB = 1 << 20


def ended_cleanly(transport):
    return "eof" if transport == "h1" else "end_stream"


# -- echo ------------------------------------------------------------------------------------

class Echo:
    """Text and binary messages come back unchanged, whole, in order."""

    def test_text_echo(self):
        c = self.ws()
        for text in ("hello", "", "ünïcödé ✓ 𝄞", "x" * 125, "y" * 126, "z" * 65536):
            self.assert_echo(c, "text", text)
        got, end = c.close_handshake()
        self.assertEqual(got, (NORMAL, ""))

    def test_binary_echo(self):
        c = self.ws()
        for data in (b"\x00\x01\x02", b"", bytes(range(256)) * 3, os.urandom(70000)):
            self.assert_echo(c, "binary", data)
        c.close_handshake()

    def test_one_mebibyte_at_the_default_limit(self):
        """--ws-max-message defaults to 1 MiB: a message of exactly that is
        echoed (binary, then text)."""
        c = self.ws()
        self.assert_echo(c, "binary", os.urandom(MIB), timeout=30)
        self.assert_echo(c, "text", "é" * (MIB // 2), timeout=30)
        c.close_handshake()

    def test_fragmented_message_is_reassembled(self):
        c = self.ws()
        data = os.urandom(100000)
        # Seven fragments of uneven sizes, an empty one among them.
        cuts = [0, 1, 1, 5000, 40000, 40001, 99999, 100000]
        parts = [data[a:b] for a, b in zip(cuts, cuts[1:])]
        c.send_fragmented(parts)
        self.assertEqual(c.recv_message(), ("binary", data))
        # A text message whose fragments split UTF-8 sequences (each fragment
        # alone is not valid UTF-8; the message is).
        text = "aé€𝄞z" * 1000
        c.send_raw(wslib.fragments(text, 7, opcode=TEXT))
        self.assertEqual(c.recv_message(), ("text", text))
        # A ping between fragments is answered at once; the message follows.
        c.send_raw(frame(BINARY, b"one-", fin=False) + frame(PING, b"between") +
                   frame(CONT, b"two", fin=True))
        ev = c.recv_event(kinds=("pong", "binary", "text"))
        self.assertEqual(ev, ("pong", b"between"))
        self.assertEqual(c.recv_message(), ("binary", b"one-two"))
        c.close_handshake()

    def test_many_messages_in_a_row(self):
        """2,000 messages of varied size and type, sent in batches of 200
        before reading (the kernel buffers hold a batch's echoes); every echo
        in order."""
        c = self.ws()
        sent = []
        for i in range(2000):
            if i % 2:
                sent.append(("binary", i.to_bytes(4, "big") * (1 + i % 97)))
            else:
                sent.append(("text", "m%d-" % i + "t" * (i % 300)))
        for start in range(0, len(sent), 200):
            batch = sent[start:start + 200]
            c.send_raw(b"".join(frame(TEXT if k == "text" else BINARY, d) for k, d in batch))
            for want in batch:
                self.assertEqual(c.recv_message(), want)
        m = self.server.metrics()
        self.assertEqual(m[wslib.OPEN], 1)
        c.close_handshake()

    def test_ping_is_answered_with_its_payload(self):
        c = self.ws()
        for payload in (b"", b"p", os.urandom(125)):
            c.ping(payload)
            self.assertEqual(c.recv_event(kinds=("pong",)), ("pong", payload))
        # An unsolicited pong is ignored (RFC 6455 §5.5.3); echo goes on.
        c.pong(b"unasked")
        self.assert_echo(c, "text", "after pong")
        c.close_handshake()

    def test_close_handshake_echoes_code_and_reason(self):
        c = self.ws()
        self.assert_echo(c, "text", "before close")
        got, end = c.close_handshake(4001, "bye ✓")
        self.assertEqual(got, (4001, "bye ✓"))
        self.assertEqual(end, ended_cleanly(self.transport))

    def test_close_without_a_code(self):
        """An empty close frame: the server's close carries no code (1005)."""
        c = self.ws()
        got, end = c.close_handshake(None)
        self.assertEqual(got[0], NO_STATUS)
        self.assertEqual(end, ended_cleanly(self.transport))

    def test_close_going_away(self):
        c = self.ws()
        got, end = c.close_handshake(1001, "")
        self.assertEqual(got[0], 1001)

    def test_metrics_count_websockets(self):
        before = self.server.metrics()
        a = self.ws()
        b = self.ws()
        self.assert_echo(a, "text", "a")
        self.assert_echo(b, "text", "b")
        m = self.server.metrics()
        self.assertEqual(m[wslib.OPEN], 2)
        self.assertEqual(m[wslib.TOTAL] - before[wslib.TOTAL], 2)
        self.assertEqual(m[wslib.H2_TOTAL] - before[wslib.H2_TOTAL],
                         2 if self.transport == "h2" else 0)
        self.assertEqual(m[wslib.QUEUED], 0)
        a.close_handshake()
        b.close_handshake()


class EchoH1(Echo, WsCase):
    transport = "h1"


class EchoH2(Echo, WsCase):
    transport = "h2"


# -- protocol errors ---------------------------------------------------------------------------

class ProtocolErrors:
    """Frames a client must not send: the server closes with the code RFC
    6455 names, then ends the WebSocket once we answered (or by itself)."""

    def expect_error(self, c, code):
        got = c.recv_close(10)
        self.assertEqual(got[0], code, "close %r" % (got,))
        end = c.answer_close(10)
        self.assertIn(end, ("eof", "reset") if c.transport == "h1" else
                      ("end_stream", "rst_stream:0", "rst_stream:8"))
        return got

    def test_unmasked_frame_1002(self):
        c = self.ws()
        self.assert_echo(c, "text", "fine")
        c.send_raw(wslib.unmasked_frame(TEXT, b"not masked"))
        self.expect_error(c, PROTOCOL_ERROR)

    def test_reserved_bits_1002(self):
        for rsv in (4, 2, 1):
            c = self.ws()
            c.send_raw(frame(TEXT, b"rsv", rsv=rsv))
            self.expect_error(c, PROTOCOL_ERROR)

    def test_reserved_opcodes_1002(self):
        for op in (0x3, 0x7, 0xB, 0xF):
            c = self.ws()
            c.send_raw(frame(op, b"what"))
            self.expect_error(c, PROTOCOL_ERROR)

    def test_continuation_without_a_message_1002(self):
        c = self.ws()
        c.send_raw(frame(CONT, b"orphan"))
        self.expect_error(c, PROTOCOL_ERROR)

    def test_new_message_inside_a_fragmented_one_1002(self):
        c = self.ws()
        c.send_raw(frame(TEXT, b"first", fin=False) + frame(BINARY, b"second"))
        self.expect_error(c, PROTOCOL_ERROR)

    # wslay rejects these frames in its frame layer, before any callback of
    # ours, and answers with a close without a status code (1005 on our
    # side); RFC 6455 §7.1.7 asks to fail the connection, the 1002 is a
    # SHOULD. The WebSocket still ends cleanly, and the application is told
    # 1002.
    def test_fragmented_ping_is_refused(self):
        """Control frames must not be fragmented (RFC 6455 §5.4)."""
        c = self.ws()
        c.send_raw(frame(PING, b"half", fin=False))
        self.expect_error(c, NO_STATUS)

    def test_ping_over_125_bytes_is_refused(self):
        """Control frames carry 125 bytes at most (RFC 6455 §5.5)."""
        c = self.ws()
        c.send_raw(frame(PING, b"p" * 126))
        self.expect_error(c, NO_STATUS)

    def test_invalid_utf8_text_1007(self):
        c = self.ws()
        c.send_raw(frame(TEXT, b"ok \xff\xfe not utf-8"))
        self.expect_error(c, INVALID_DATA)
        # Invalid across fragments: a truncated sequence at the end of the message.
        c = self.ws()
        c.send_raw(frame(TEXT, b"abc", fin=False) + frame(CONT, b"\xe2\x82", fin=True))
        self.expect_error(c, INVALID_DATA)
        # An encoded surrogate (invalid in UTF-8).
        c = self.ws()
        c.send_raw(frame(TEXT, b"\xed\xa0\x80"))
        self.expect_error(c, INVALID_DATA)

    def test_one_byte_close_payload_1002(self):
        """A close body is empty or starts with a 2-byte code (RFC 6455 §5.5.1)."""
        c = self.ws()
        c.send_raw(frame(CLOSE, b"\x03"))
        self.expect_error(c, PROTOCOL_ERROR)

    def test_close_codes_no_peer_may_send_1002(self):
        """999, 1004, 1005, 1006, 5000 (RFC 6455 §7.4)."""
        for code in (999, 1004, 1005, 1006, 5000):
            c = self.ws()
            c.send_raw(frame(CLOSE, code.to_bytes(2, "big")))
            self.expect_error(c, PROTOCOL_ERROR)

    def test_close_reason_not_utf8_1007(self):
        c = self.ws()
        c.send_raw(frame(CLOSE, b"\x03\xe8\xff\xfe"))
        self.expect_error(c, INVALID_DATA)

    def test_the_server_is_unharmed(self):
        """After every kind of error above, a new WebSocket works."""
        c = self.ws()
        c.send_raw(wslib.unmasked_frame())
        self.expect_error(c, PROTOCOL_ERROR)
        d = self.ws()
        self.assert_echo(d, "binary", b"still here")
        d.close_handshake()


class ProtocolErrorsH1(ProtocolErrors, WsCase):
    transport = "h1"


class ProtocolErrorsH2(ProtocolErrors, WsCase):
    transport = "h2"


# -- the message limit ----------------------------------------------------------------------

class MessageLimit:
    """--ws-max-message 4096: a message of exactly 4096 bytes is echoed; one
    byte more, in one frame or in fragments, closes with 1009."""

    LIMIT = 4096
    ws_args = ("--ws-max-message", str(LIMIT))

    def test_message_at_the_limit_is_echoed(self):
        c = self.ws()
        self.assert_echo(c, "binary", os.urandom(self.LIMIT))
        c.send_raw(wslib.fragments(b"f" * self.LIMIT, 100))
        self.assertEqual(c.recv_message(), ("binary", b"f" * self.LIMIT))
        c.close_handshake()

    def test_one_frame_over_the_limit_1009(self):
        c = self.ws()
        c.send_binary(b"o" * (self.LIMIT + 1))
        got = c.recv_close()
        self.assertEqual(got[0], TOO_BIG)
        c.answer_close()

    def test_fragments_over_the_limit_1009(self):
        c = self.ws()
        c.send_raw(wslib.fragments("t" * (self.LIMIT + 1), 1000, opcode=TEXT))
        got = c.recv_close()
        self.assertEqual(got[0], TOO_BIG)
        c.answer_close()

    def test_declared_length_over_the_limit_1009(self):
        """A frame head declaring 1 GiB: the close comes without the payload."""
        c = self.ws()
        c.send_raw(wslib.partial_frame(1 << 30, 10))
        got = c.recv_close()
        self.assertEqual(got[0], TOO_BIG)
        c.answer_close()


class MessageLimitH1(MessageLimit, WsCase):
    transport = "h1"
    ws_args = MessageLimit.ws_args


class MessageLimitH2(MessageLimit, WsCase):
    transport = "h2"
    ws_args = MessageLimit.ws_args


# -- handshakes ------------------------------------------------------------------------------

class HandshakeH1(WsCase):
    """RFC 6455 §4.2: what the server answers to upgrade requests, good and bad."""

    def refused(self, status, **kwargs):
        sock, port, resp, rest, key = wslib.h1_handshake(self.server, **kwargs)
        try:
            self.assertEqual(resp.status, status, resp)
            self.assertIsNone(resp.get("sec-websocket-accept"), resp)
            self.assertNotEqual((resp.get("upgrade") or "").lower(), "websocket", resp)
        finally:
            sock.close()
        return resp

    def test_101_with_the_accept_key(self):
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example
        sock, port, resp, rest, _ = wslib.h1_handshake(self.server, key=key)
        try:
            self.assertEqual(resp.status, 101, resp)
            self.assertEqual(resp.get("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            self.assertEqual(resp.get("upgrade", "").lower(), "websocket")
            self.assertIn("upgrade", resp.get("connection", "").lower())
            c = wslib.WsClient(wslib.H1Channel(sock, port, rest))
            self.clients.append(c)
            self.assert_echo(c, "text", "after 101")
            c.close_handshake()
        except BaseException:
            sock.close()
            raise

    def test_plain_get_426(self):
        resp = self.refused(426, raw=b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(resp.get("sec-websocket-version"), "13", resp)

    def test_plain_get_with_curl_426(self):
        args = ["curl", "-sS", "--http1.1", "--max-time", "10", "-o", "/dev/null",
                "-w", "%{http_code}", "-D", "-"]
        if self.server.tls:
            args.append("-k")
        r = subprocess.run(args + [self.server.url(WS_PATH)], capture_output=True, timeout=20)
        out = r.stdout.decode(errors="replace")
        self.assertTrue(out.endswith("426"), out + r.stderr.decode(errors="replace"))
        self.assertIn("sec-websocket-version: 13", out.lower())

    def test_wrong_version_426(self):
        for version in ("8", "12", "14", "abc"):
            resp = self.refused(426, version=version)
            self.assertEqual(resp.get("sec-websocket-version"), "13", resp)

    def test_missing_version_426(self):
        self.refused(426, omit=("sec-websocket-version",))

    def test_missing_key_400(self):
        self.refused(400, omit=("sec-websocket-key",))

    def test_invalid_keys_400(self):
        # Not base64; base64 of 15 and 17 bytes (the key is 16 bytes).
        for key in ("not a key!", "AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA=",
                    "QUFBQUFBQUFBQUFBQUFBQUE="):
            self.refused(400, key=key)

    def test_post_upgrade_is_not_a_websocket(self):
        """Only GET upgrades (RFC 6455 §4.1)."""
        sock, port, resp, rest, key = wslib.h1_handshake(
            self.server, raw=wslib.upgrade_request(method="POST",
                                                   extra=[("Content-Length", "0")]))
        sock.close()
        self.assertNotEqual(resp.status, 101, resp)
        self.assertGreaterEqual(resp.status, 400, resp)

    def test_served_after_refusals(self):
        self.refused(400, omit=("sec-websocket-key",))
        c = self.ws()
        self.assert_echo(c, "text", "ok")
        c.close_handshake()


class HandshakeH2(WsCase):
    """RFC 8441: the setting, the extended CONNECT, and a WebSocket next to
    ordinary requests on one connection."""
    transport = "h2"

    def test_server_enables_the_connect_protocol(self):
        c = self.h2conn()
        self.assertEqual(c.wait_settings(), 1)
        c.close()

    def test_plain_get_426(self):
        c = self.h2conn()
        st = c.get(WS_PATH)
        self.assertEqual(st.status, 426, st.headers)
        self.assertEqual(st.headers.get("sec-websocket-version"), "13", st.headers)
        c.close()

    def test_plain_get_with_curl_426(self):
        r = self.server.curl(WS_PATH, "-o", "/dev/null", "-D", "-", "-w", "%{http_code}",
                             timeout=10)
        out = r.stdout.decode(errors="replace")
        self.assertTrue(out.endswith("426"), out + r.stderr.decode(errors="replace"))
        self.assertIn("sec-websocket-version: 13", out.lower())

    def test_wrong_version_426(self):
        c = self.h2conn()
        c.wait_settings()
        for version in ("8", "14"):
            sid = c.open_websocket(version=version)
            st = c.response(sid)
            self.assertEqual(st.status, 426, st.headers)
            self.assertEqual(st.headers.get("sec-websocket-version"), "13", st.headers)
        c.close()

    def test_other_protocol_is_not_a_websocket(self):
        c = self.h2conn()
        c.wait_settings()
        sid = c.open_websocket(protocol="not-websocket")
        c.pump(lambda k: k.streams[sid].status is not None or k.streams[sid].reset is not None,
               what="an answer to CONNECT :protocol not-websocket")
        st = c.streams[sid]
        self.assertNotEqual(st.status, 200, st.headers)
        c.reset_stream(sid)
        c.close()

    def test_get_next_to_a_websocket_on_one_connection(self):
        conn = self.h2conn()
        a = self.ws(conn=conn)
        self.assert_echo(a, "text", "first")
        st = conn.get("/index.html")
        self.assertEqual(st.status, 200)
        with open(os.path.join(self.server.root, "index.html"), "rb") as f:
            self.assertEqual(bytes(st.body), f.read())
        b = self.ws(conn=conn)
        self.assert_echo(b, "binary", b"second")
        self.assert_echo(a, "text", "first again")
        st = conn.get("/1m.bin", timeout=30)
        self.assertEqual((st.status, len(st.body)), (200, MIB))
        m = self.server.metrics()
        self.assertEqual(m[wslib.OPEN], 2)
        a.close_handshake()
        self.assert_echo(b, "binary", b"b still open")
        b.close_handshake()
        # The connection goes on after both.
        self.assertEqual(conn.get("/index.html").status, 200)
        conn.close()

    def test_websocket_reset_leaves_the_connection(self):
        conn = self.h2conn()
        a = self.ws(conn=conn)
        b = self.ws(conn=conn)
        a.abort()   # RST_STREAM
        self.server.wait_for(lambda m: m[wslib.OPEN] == 1, timeout=10,
                             what="the reset WebSocket to be gone")
        self.assert_echo(b, "text", "b after a's reset")
        b.close_handshake()
        conn.close()


# -- interoperability: python3-websockets over HTTP/1.1 --------------------------------------

class Interop(WsCase):
    """python3-websockets (asyncio), a client nobody here wrote, against the
    echo path over HTTP/1.1: text, binary, 1 MiB, ping, close."""

    def run_async(self, coro, timeout=60):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    def uri(self):
        return ("wss" if self.server.tls else "ws") + "://127.0.0.1:%d%s" % (self.server.port,
                                                                            WS_PATH)

    def ssl_context(self):
        if not self.server.tls:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def test_websockets_library_echo(self):
        import websockets.client

        async def session():
            async with websockets.client.connect(self.uri(), ssl=self.ssl_context(),
                                                 open_timeout=10, close_timeout=5,
                                                 max_size=None, ping_interval=None) as ws:
                out = []
                await ws.send("hello from websockets")
                out.append(await asyncio.wait_for(ws.recv(), 10))
                await ws.send(b"\x00\xffbinary")
                out.append(await asyncio.wait_for(ws.recv(), 10))
                big = os.urandom(MIB)
                await ws.send(big)
                out.append((await asyncio.wait_for(ws.recv(), 30)) == big)
                # A fragmented message (an async iterator of fragments).

                async def parts():
                    for p in ("frag", "ment", "ed"):
                        yield p
                await ws.send(parts())
                out.append(await asyncio.wait_for(ws.recv(), 10))
                pong = await ws.ping(b"lib-ping")
                await asyncio.wait_for(pong, 10)
                out.append("pong")
                await ws.close(4002, "library bye")
                out.append((ws.close_code, ws.close_reason))
                return out

        out = self.run_async(session())
        self.assertEqual(out, ["hello from websockets", b"\x00\xffbinary", True, "fragmented",
                               "pong", (4002, "library bye")])

    def test_websockets_library_many_clients(self):
        import websockets.client

        async def one(i):
            async with websockets.client.connect(self.uri(), ssl=self.ssl_context(),
                                                 open_timeout=10, close_timeout=5) as ws:
                for j in range(20):
                    await ws.send("client %d message %d" % (i, j))
                    got = await asyncio.wait_for(ws.recv(), 10)
                    if got != "client %d message %d" % (i, j):
                        return got
                return "ok"

        async def all_of_them():
            return await asyncio.gather(*(one(i) for i in range(20)))

        self.assertEqual(self.run_async(all_of_them()), ["ok"] * 20)


# -- keepalive ------------------------------------------------------------------------------

class Keepalive:
    """--ws-ping-interval 200 --ws-pong-timeout 300: a client that answers the
    server's pings stays open as long as it likes; one that stays silent is
    dropped after about 0.5 s (h1: the connection closed; h2: RST_STREAM)."""

    INTERVAL = 0.2
    PONG_TIMEOUT = 0.3
    ws_args = ("--ws-ping-interval", "200", "--ws-pong-timeout", "300")

    def test_answering_client_stays_open(self):
        c = self.ws()
        start = time.monotonic()
        end = c.pump(1.5)
        self.assertIsNone(end, "a client that answered every ping was dropped after %.2f s"
                          % (time.monotonic() - start))
        self.assertGreaterEqual(len(c.pings), 2, "pings in 1.5 s: %d" % len(c.pings))
        self.assert_echo(c, "text", "still open after %d pings" % len(c.pings))
        c.close_handshake()

    def test_silent_client_is_dropped(self):
        c = self.ws()
        c.auto_pong = False
        start = time.monotonic()
        end = c.wait_end(10)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(len(c.pings), 1, "dropped without a ping first")
        # Dropped: h1 the connection ends; h2 the stream is reset (RST_STREAM).
        if self.transport == "h1":
            self.assertIn(end, ("eof", "reset"))
        else:
            self.assertTrue(end.startswith("rst_stream"), end)
        self.assertGreaterEqual(elapsed, (self.INTERVAL + self.PONG_TIMEOUT) * 0.8,
                                "dropped too early")
        self.assertLess(elapsed, self.INTERVAL + self.PONG_TIMEOUT + 3.0, "dropped too late")
        if self.transport == "h2":
            # The connection itself goes on.
            self.assertEqual(c.ch.conn.get("/index.html").status, 200)

    def test_sending_client_without_pongs_stays_open(self):
        """Input of any kind counts: a client that sends messages more often
        than the interval but never answers a ping stays open."""
        c = self.ws()
        c.auto_pong = False
        deadline = time.monotonic() + 1.2
        n = 0
        while time.monotonic() < deadline:
            self.assert_echo(c, "text", "tick %d" % n)
            n += 1
            c.pump(0.1)
        self.assertIsNone(c.ch.ended)
        c.close_handshake()


class KeepaliveH1(Keepalive, WsCase):
    transport = "h1"
    ws_args = Keepalive.ws_args


class KeepaliveH2(Keepalive, WsCase):
    transport = "h2"
    ws_args = Keepalive.ws_args


if __name__ == "__main__":
    wslib.main()
