"""A small WebSocket client toolkit for the integration and leak suites.

One interface over two carriers:
  - RFC 6455: an HTTP/1.1 Upgrade on a TCP socket (over TLS with ALPN
    http/1.1 when the server runs TLS, cleartext otherwise);
  - RFC 8441: one HTTP/2 stream opened by an extended CONNECT (python3-h2;
    the server must announce SETTINGS_ENABLE_CONNECT_PROTOCOL=1 first), the
    WebSocket frames riding in DATA frames, END_STREAM for the end.

Frames are encoded and decoded by python3-wsproto's frame codec
(wsproto.frame_protocol.FrameProtocol, client side: what we send is masked,
what we receive must not be); hostile frames no codec would emit (unmasked,
reserved bits or opcodes, fragment floods, half frames) are built by hand
below. Every wait is bounded; nothing sleeps to synchronise: a wait is a read
with a deadline, or a poll of the server's metrics.

    ws = connect(server, "/ws", "h2")
    ws.send_text("hello"); ws.recv_message(5)  -> ("text", "hello")
    ws.close(1000, "bye"); ws.recv_close(5)     -> (1000, "bye")
    ws.wait_end(5)                              -> "end_stream" (h2) / "eof" (h1)

Run with /usr/bin/python3 (Debian's, where python3-h2 and python3-wsproto live).
"""

import base64
import hashlib
import os
import re
import socket
import ssl
import struct
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed  # noqa: E402

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PATH = "/ws"
KIB = 1 << 10
MIB = 1 << 20

# Opcodes (RFC 6455 §5.2)
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Close codes (RFC 6455 §7.4.1)
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
NO_STATUS = 1005
INVALID_DATA = 1007
TOO_BIG = 1009
INTERNAL = 1011

# The server's WebSocket metrics, and what they read when nothing is open.
OPEN = "h2loop_websockets_open"
TOTAL = "h2loop_websockets_total"
H2_TOTAL = "h2loop_websockets_h2_total"
QUEUED = "h2loop_websocket_queued_bytes"
WS_IDLE = {OPEN: 0, QUEUED: 0}
# Application gauges that must come back to what they read on a fresh server.
APP_GAUGES = ("h2loop_app_handles", "h2loop_app_exchanges", "h2loop_app_queued_bytes")


class Blocked(Exception):
    """A send made no progress within its bound (TCP or HTTP/2 flow control
    pushed back)."""


class Closed(Exception):
    """The carrier (connection or stream) is gone."""


# -- raw frames (hostile peers) -------------------------------------------------------

def mask_bytes(data, key):
    """data XOR the 4-byte key, repeated (fast for megabytes: one big-int XOR)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None, length=None):
    """One frame as bytes, exactly as asked: any opcode (reserved ones too),
    rsv bits (0..7: RSV1=4, RSV2=2, RSV3=1), masked or not, and a declared
    payload length that may differ from len(payload) (length=)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + bytes(payload)
    key = key or os.urandom(4)
    return head + key + mask_bytes(bytes(payload), key)


def unmasked_frame(opcode=TEXT, payload=b"unmasked"):
    return frame(opcode, payload, mask=False)


def close_payload(code=None, reason=""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")


def fragments(data, size, opcode=BINARY):
    """`data` as a fragmented message: the first frame with `opcode`, the
    rest continuations, FIN on the last; pieces of `size` bytes (at least one
    frame even for empty data). Returns the frames as one bytes object."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    out = bytearray()
    for i, p in enumerate(pieces):
        out += frame(opcode if i == 0 else CONT, p, fin=i == len(pieces) - 1)
    return bytes(out)


def fragment_flood(count, size=0, opcode=BINARY, fin_last=True, filler=b"f"):
    """A message of `count` frames of `size` bytes each (so count*size bytes
    in all): the opening frame and count-1 continuations; FIN on the last
    when fin_last. Built once per distinct frame (all continuations share a
    mask key: the server must not care)."""
    body = (filler * size)[:size]
    first = frame(opcode, body, fin=(count == 1 and fin_last))
    middle = frame(CONT, body, fin=False)
    last = frame(CONT, body, fin=fin_last)
    if count == 1:
        return first
    return first + middle * (count - 2) + last


def partial_frame(payload_len, sent, opcode=BINARY):
    """The head of a masked frame declaring payload_len bytes, and the first
    `sent` bytes of its payload only (the rest never comes)."""
    whole = frame(opcode, b"p" * min(sent, payload_len), length=payload_len)
    return whole


# -- HTTP/1.1 Upgrade -------------------------------------------------------------------

def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def open_socket(server, alpn, timeout=10, rcvbuf=None, sndbuf=None):
    """A TCP connection to the server (buffers sized before connecting),
    wrapped in TLS offering `alpn` when the server runs TLS. Returns
    (socket, our local port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", server.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = s.getsockname()[1]
        if server.tls:
            s = harness.tls_context(alpn).wrap_socket(s, server_hostname="localhost",
                                              do_handshake_on_connect=False)
            s.do_handshake()
            assert s.selected_alpn_protocol() == alpn[0], s.selected_alpn_protocol()
    except BaseException:
        s.close()
        raise
    return s, port


class HttpResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(lower-case name, value)]
        self.body = body

    def get(self, name, default=None):
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def __repr__(self):
        return "<HTTP %d %s %s, body %r>" % (self.status, self.reason, self.headers,
                                            self.body[:200])


def upgrade_request(path=WS_PATH, key=None, version="13", extra=(), omit=(), method="GET",
                    host="127.0.0.1"):
    """The bytes of an HTTP/1.1 WebSocket upgrade request. key=None: a fresh
    valid key; omit: header names (lower case) to leave out."""
    key = new_key() if key is None else key
    fields = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    fields = [(n, v) for n, v in fields if n.lower() not in omit] + list(extra)
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % f for f in fields)
    return (head + "\r\n").encode("latin-1")


def read_http_response(sock, buf, timeout=10, body=True):
    """Reads one response head (and its content-length body when body) from
    sock; buf: bytes already received. Returns (HttpResponse, leftover
    bytes). AssertionError if the connection ends first or at the deadline."""
    deadline = time.monotonic() + timeout
    buf = bytearray(buf)

    def fill():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete HTTP response in %ss (have %r)" % (timeout,
                                                                                bytes(buf[:300])))
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 16)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            raise AssertionError("connection ended (%s) before a complete response: %r"
                                 % (e, bytes(buf[:300])))
        if not data:
            raise AssertionError("connection ended before a complete response: %r"
                                 % bytes(buf[:300]))
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    m = re.match(r"^HTTP/1\.1 (\d{3}) ?(.*)$", lines[0])
    assert m, "bad status line %r" % lines[0]
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        assert sep, "bad header line %r" % line
        headers.append((name.strip().lower(), value.strip()))
    resp = HttpResponse(int(m.group(1)), m.group(2), headers, b"")
    if body and resp.status >= 200 and resp.status not in (204, 304):
        n = int(resp.get("content-length", "0"))
        while len(buf) < n:
            fill()
        resp.body = bytes(buf[:n])
        del buf[:n]
    return resp, bytes(buf)


def h1_handshake(server, path=WS_PATH, key=None, version="13", extra=(), omit=(), timeout=10,
                 rcvbuf=None, sndbuf=None, raw=None):
    """Sends an upgrade request on a new connection (or `raw` bytes instead of
    the request); returns (socket, local port, HttpResponse, leftover, key)."""
    sock, port = open_socket(server, ("http/1.1",), timeout, rcvbuf, sndbuf)
    key = new_key() if key is None else key
    try:
        sock.settimeout(timeout)
        sock.sendall(raw if raw is not None else
                     upgrade_request(path, key, version, extra, omit))
        resp, rest = read_http_response(sock, b"", timeout, body=True)
    except BaseException:
        sock.close()
        raise
    return sock, port, resp, rest, key


# -- carriers -----------------------------------------------------------------------------

class H1Channel:
    """A WebSocket's bytes on an upgraded HTTP/1.1 connection."""

    transport = "h1"

    def __init__(self, sock, port, leftover=b""):
        self.sock = sock
        self.port = port           # our local port (to find the socket in the TCP tables)
        self.pending = bytearray(leftover)
        self.ended = None          # None while open; "eof", "reset"
        self.send_error = None
        self.discard = False       # after our FIN over TLS: raw records, read and dropped

    def send(self, data, timeout=10):
        if self.send_error is not None:
            raise Closed(self.send_error)
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError, ssl.SSLWantWriteError) as e:
            self.send_error = "blocked"
            raise Blocked("no progress sending for %ss" % timeout) from e
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
            self.send_error = repr(e)
            raise Closed(repr(e)) from e

    def recv(self, timeout):
        """Bytes received (b"" when nothing came within timeout), None once ended."""
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            return data
        if self.ended is not None:
            return None
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return b""
        except (ConnectionResetError, BrokenPipeError):
            self.ended = "reset"
            return None
        except ssl.SSLError:
            self.ended = "reset"
            return None
        except OSError:
            self.ended = "reset"
            return None
        if not data:
            self.ended = "eof"
            return None
        return b"" if self.discard else data

    def finish(self):
        """Our FIN (no close_notify over TLS: Python's SSLSocket.shutdown()
        drops its TLS state, so whatever comes afterwards is raw records,
        read and dropped until the end)."""
        self.discard = isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self):
        """TCP RST."""
        if self.sock.fileno() != -1:
            harness.rst_close(self.sock)

    abort_connection = abort

    def dispose(self):
        if self.sock.fileno() != -1:
            harness.rst_close(self.sock)


class H2Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = {}
        self.data = bytearray()     # received, not yet taken
        self.body = bytearray()     # everything received (plain requests)
        self.ended = False          # END_STREAM received
        self.reset = None           # RST_STREAM error code received
        self.sent_end = False


class H2Conn:
    """One HTTP/2 connection (python3-h2) that carries WebSocket streams
    (extended CONNECT) and plain requests side by side. Blocking socket,
    every read bounded."""

    def __init__(self, server, settings=None, window=None, timeout=10, rcvbuf=None, sndbuf=None,
                 ack=True):
        self.server = server
        self.sock, self.port = open_socket(server, ("h2",), timeout, rcvbuf, sndbuf)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if window:
            self.conn.increment_flow_control_window(window)
        self.streams = {}
        self.ack = ack              # return flow-control credit for received DATA
        self.ended = None           # None while open; "eof", "reset", "protocol: ..."
        self.settings_received = False
        self.goaways = []
        self._inbuf = b""
        self.flush()

    # -- I/O --------------------------------------------------------------------------
    def flush(self, timeout=10):
        data = self.conn.data_to_send()
        if data and self.ended is None:
            try:
                self.sock.settimeout(timeout)
                self.sock.sendall(data)
            except (socket.timeout, TimeoutError, ssl.SSLWantWriteError) as e:
                raise Blocked("HTTP/2 connection took no bytes for %ss" % timeout) from e
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
                self.ended = "reset"
                raise Closed(repr(e)) from e

    def pump_once(self, timeout):
        """One bounded read; handles what came. False on timeout or end."""
        if self.ended is not None:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            self.ended = "reset"
            return False
        if not data:
            self.ended = "eof"
            return False
        try:
            events = self.conn.receive_data(self._filter_goaway(data))
        except h2.exceptions.ProtocolError as e:
            self.ended = "protocol: %r" % e
            raise AssertionError("HTTP/2 protocol error from the server: %r" % e)
        for ev in events:
            self._handle(ev)
        try:
            self.flush()
        except Closed:
            pass
        return True

    def pump(self, until, timeout=10, what="condition"):
        """Reads until until(self) is true; AssertionError at the deadline or
        if the connection ended first."""
        deadline = time.monotonic() + timeout
        while not until(self):
            if self.ended is not None:
                raise AssertionError("HTTP/2 connection ended (%s) waiting for %s"
                                     % (self.ended, what))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
            self.pump_once(min(left, 1.0))
        return True

    def _filter_goaway(self, data):
        """GOAWAY frames are taken out and recorded (as harness.H2Client
        does: python-h2 would refuse the frames a graceful shutdown still sends)."""
        buf = self._inbuf + data
        out = bytearray()
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos < 9 + length:
                break
            frame_bytes = buf[pos:pos + 9 + length]
            if buf[pos + 3] == 0x7:
                payload = frame_bytes[9:]
                self.goaways.append((int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                                     int.from_bytes(payload[4:8], "big")))
            else:
                out += frame_bytes
            pos += 9 + length
        self._inbuf = buf[pos:]
        return bytes(out)

    def _handle(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_received = True
            return
        st = self.streams.get(getattr(ev, "stream_id", None))
        if st is None:
            return
        if isinstance(ev, h2.events.ResponseReceived):
            st.headers = dict(ev.headers)
            st.status = int(st.headers[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            st.data += ev.data
            st.body += ev.data
            if self.ack and ev.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
        elif isinstance(ev, h2.events.StreamEnded):
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            st.reset = ev.error_code

    # -- settings, requests, streams -------------------------------------------------
    def wait_settings(self, timeout=10):
        """Waits for the server's SETTINGS; returns its ENABLE_CONNECT_PROTOCOL."""
        self.pump(lambda c: c.settings_received, timeout, "the server's SETTINGS")
        return self.conn.remote_settings.enable_connect_protocol

    def authority(self):
        return "127.0.0.1:%d" % self.server.port

    def _open(self, headers, end_stream):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = H2Stream(sid)
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.streams[sid].sent_end = end_stream
        self.flush()
        return sid

    def open_websocket(self, path=WS_PATH, version="13", protocol="websocket", extra=(),
                       omit=()):
        """Sends the extended CONNECT (RFC 8441 §4); returns the stream id."""
        fields = [(":method", "CONNECT"), (":protocol", protocol),
                  (":scheme", self.server.scheme), (":path", path),
                  (":authority", self.authority()), ("sec-websocket-version", version)]
        fields = [(n, v) for n, v in fields if n not in omit] + list(extra)
        return self._open(fields, end_stream=False)

    def request(self, path="/", method="GET", extra=(), end_stream=True):
        return self._open([(":method", method), (":path", path), (":scheme", self.server.scheme),
                           (":authority", self.authority())] + list(extra), end_stream)

    def response(self, sid, timeout=10):
        """Waits for a whole response (or a reset) on sid; returns the H2Stream."""
        self.pump(lambda c: c.streams[sid].ended or c.streams[sid].reset is not None, timeout,
                  "the response on stream %d" % sid)
        return self.streams[sid]

    def get(self, path="/", timeout=10):
        return self.response(self.request(path), timeout)

    def window(self, sid):
        try:
            return min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size)
        except (h2.exceptions.StreamClosedError, KeyError):
            raise Closed("stream %d is closed" % sid)

    def send_data(self, sid, data, end_stream=False, timeout=10):
        """Sends data on sid within the flow-control windows, reading (for
        WINDOW_UPDATEs) while they are shut. Blocked when no credit came
        within `timeout`; Closed when the stream or connection is gone."""
        view = memoryview(bytes(data))
        st = self.streams[sid]
        deadline = time.monotonic() + timeout
        while True:
            if self.ended is not None:
                raise Closed("connection ended: %s" % self.ended)
            if st.reset is not None:
                raise Closed("stream %d was reset (%d)" % (sid, st.reset))
            if not len(view):
                if end_stream:
                    self._send_chunk(sid, b"", True)
                return
            n = min(self.window(sid), len(view))
            if n > 0:
                last = n == len(view)
                self._send_chunk(sid, view[:n].tobytes(), end_stream and last)
                view = view[n:]
                if last:
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise Blocked("no flow-control credit on stream %d for %ss" % (sid, timeout))
            self.pump_once(min(left, 0.5))

    def _send_chunk(self, sid, data, end_stream):
        try:
            self.conn.send_data(sid, data, end_stream=end_stream)
        except h2.exceptions.StreamClosedError as e:
            raise Closed("stream %d is closed" % sid) from e
        if end_stream:
            self.streams[sid].sent_end = True
        self.flush()

    def reset_stream(self, sid, code=0x8):
        try:
            self.conn.reset_stream(sid, error_code=code)
            self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, Closed):
            pass

    def end_stream(self, sid):
        st = self.streams[sid]
        if st.sent_end or st.reset is not None or self.ended is not None:
            return
        try:
            self.conn.end_stream(sid)
            st.sent_end = True
            self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, Closed):
            pass

    def close(self):
        """A graceful end: GOAWAY, then our FIN."""
        if self.ended is None:
            try:
                self.conn.close_connection()
                self.flush()
            except Exception:
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.ended = self.ended or "closed"

    def abort(self):
        """TCP RST of the whole connection."""
        if self.sock.fileno() != -1:
            harness.rst_close(self.sock)
        self.ended = self.ended or "aborted"


class H2Channel:
    """A WebSocket's bytes on one HTTP/2 stream."""

    transport = "h2"

    def __init__(self, conn, sid, owns_conn):
        self.conn = conn
        self.sid = sid
        self.owns_conn = owns_conn
        self.stream = conn.streams[sid]
        self.port = conn.port

    @property
    def sock(self):
        return self.conn.sock

    @property
    def ended(self):
        st = self.stream
        if st.data:
            return None
        if st.reset is not None:
            return "rst_stream:%d" % st.reset
        if st.ended:
            return "end_stream"
        if self.conn.ended is not None:
            return "connection " + self.conn.ended
        return None

    def send(self, data, timeout=10):
        self.conn.send_data(self.sid, data, timeout=timeout)

    def recv(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.stream.data:
                data = bytes(self.stream.data)
                self.stream.data.clear()
                return data
            if self.ended is not None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            self.conn.pump_once(min(left, 1.0))

    def finish(self):
        """END_STREAM from our side."""
        self.conn.end_stream(self.sid)

    def abort(self):
        """RST_STREAM (CANCEL) on this stream only."""
        self.conn.reset_stream(self.sid)

    def abort_connection(self):
        self.conn.abort()

    def dispose(self):
        if self.owns_conn:
            self.conn.abort()
        elif self.ended is None:
            self.conn.reset_stream(self.sid)


# -- the client ---------------------------------------------------------------------------

class WsClient:
    """A WebSocket client over an H1Channel or an H2Channel.

    Received frames are decoded by wsproto's FrameProtocol; pings are
    answered automatically unless auto_pong is False. Messages, pings,
    pongs and the close arrive in self.events in order."""

    def __init__(self, channel, response=None):
        self.ch = channel
        self.transport = channel.transport
        self.response = response      # the 101 (h1) / the H2Stream (h2)
        self.proto = FrameProtocol(client=True, extensions=[])
        self.events = deque()         # ("text", str) ("binary", bytes) ("ping", b) ("pong", b)
        self.auto_pong = True
        self.pings = []               # payloads of the pings received
        self.pongs = []
        self.close_received = None    # (code, reason) of the server's close
        self.close_sent = False
        self._msg_type = None
        self._msg_parts = []

    # -- sending ------------------------------------------------------------------------
    def send_raw(self, data, timeout=10):
        """Bytes as they are; Blocked / Closed when the carrier pushes back or is gone."""
        self.ch.send(data, timeout)

    def send_text(self, text, timeout=10):
        self.send_raw(self.proto.send_data(text, fin=True), timeout)

    def send_binary(self, data, timeout=10):
        self.send_raw(self.proto.send_data(bytes(data), fin=True), timeout)

    def send_message(self, kind, data, timeout=10):
        (self.send_text if kind == "text" else self.send_binary)(data, timeout)

    def send_fragmented(self, parts, timeout=10):
        """One message in len(parts) frames; str parts make a text message
        (each part encoded on its own), bytes a binary one. Raw bytes so that
        a part may split a UTF-8 sequence: pass bytes with text=True via
        send_raw(fragments(...)) for that."""
        for i, p in enumerate(parts):
            self.send_raw(self.proto.send_data(p, fin=i == len(parts) - 1), timeout)

    def ping(self, payload=b"", timeout=10):
        self.send_raw(self.proto.ping(payload), timeout)

    def pong(self, payload=b"", timeout=10):
        self.send_raw(self.proto.pong(payload), timeout)

    def close(self, code=NORMAL, reason="", timeout=10):
        """Sends our close frame (code None: no status at all)."""
        self.send_raw(frame(CLOSE, close_payload(code, reason)), timeout)
        self.close_sent = True

    # -- receiving ------------------------------------------------------------------------
    def _feed(self, timeout):
        """One bounded read through the codec. False when nothing came (or ended)."""
        data = self.ch.recv(timeout)
        if not data:
            return False
        self.proto.receive_bytes(data)
        try:
            for f in self.proto.received_frames():
                self._frame(f)
        except ParseFailed as e:
            raise AssertionError("the server sent an invalid frame: %s (code %s)" % (e, e.code))
        return True

    def _frame(self, f):
        if f.opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._msg_type is None:
                self._msg_type = "text" if f.opcode == Opcode.TEXT else "binary"
            self._msg_parts.append(f.payload)
            if f.message_finished:
                joiner = "" if self._msg_type == "text" else b""
                self.events.append((self._msg_type, joiner.join(
                    p if isinstance(p, str) else bytes(p) for p in self._msg_parts)))
                self._msg_type = None
                self._msg_parts = []
        elif f.opcode == Opcode.PING:
            self.pings.append(bytes(f.payload))
            self.events.append(("ping", bytes(f.payload)))
            if self.auto_pong and not self.close_sent:
                try:
                    self.pong(bytes(f.payload))
                except (Blocked, Closed):
                    pass
        elif f.opcode == Opcode.PONG:
            self.pongs.append(bytes(f.payload))
            self.events.append(("pong", bytes(f.payload)))
        elif f.opcode == Opcode.CLOSE:
            code, reason = f.payload
            self.close_received = (int(code), reason)
            self.events.append(("close", self.close_received))

    def recv_event(self, timeout=10, kinds=None):
        """The next event (of one of `kinds` when given; others are dropped).
        AssertionError at the deadline or if the carrier ended first."""
        deadline = time.monotonic() + timeout
        while True:
            while self.events:
                ev = self.events.popleft()
                if kinds is None or ev[0] in kinds:
                    return ev
            if self.ch.ended is not None:
                raise AssertionError("the WebSocket ended (%s) before a %s arrived"
                                     % (self.ch.ended, "/".join(kinds or ("frame",))))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %ss" % ("/".join(kinds or ("frame",)),
                                                           timeout))
            self._feed(min(left, 1.0))

    def recv_message(self, timeout=10):
        """(type, data) of the next text or binary message; pings and pongs
        in between are skipped (answered if auto_pong), a close is an error."""
        ev = self.recv_event(timeout, kinds=("text", "binary", "close"))
        if ev[0] == "close":
            raise AssertionError("the server closed (%s) instead of sending a message"
                                 % (ev[1],))
        return ev

    def recv_close(self, timeout=10):
        """(code, reason) of the server's close frame; messages before it are dropped."""
        if self.close_received is not None:
            return self.close_received
        return self.recv_event(timeout, kinds=("close",))[1]

    def expect_close(self, timeout=10):
        """Like recv_close but keeps what came before in self.events."""
        deadline = time.monotonic() + timeout
        while self.close_received is None:
            if self.ch.ended is not None:
                raise AssertionError("the WebSocket ended (%s) without a close frame"
                                     % self.ch.ended)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no close frame within %ss" % timeout)
            self._feed(min(left, 1.0))
        return self.close_received

    def pump(self, duration):
        """Reads (answering pings) for `duration` seconds or until the carrier
        ends; returns the carrier's end (None if still open)."""
        deadline = time.monotonic() + duration
        while self.ch.ended is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._feed(min(left, 0.5))
        return self.ch.ended

    def wait_end(self, timeout=10):
        """Reads (keeping events) until the server ends the carrier: "eof" /
        "reset" (h1), "end_stream" / "rst_stream:N" (h2). AssertionError if
        it is still open at the deadline."""
        deadline = time.monotonic() + timeout
        while self.ch.ended is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server kept the WebSocket open for %ss" % timeout)
            self._feed(min(left, 1.0))
        return self.ch.ended

    def close_handshake(self, code=NORMAL, reason="", timeout=10):
        """A client-initiated close: our close, the server's echo, then the
        server's end (h1: its FIN first, RFC 6455 §7.1.1; h2: we end our side
        once its close came, then its END_STREAM). Returns ((code, reason), end)."""
        self.close(code, reason, timeout)
        got = self.expect_close(timeout)
        if self.transport == "h2":
            self.ch.finish()
        end = self.wait_end(timeout)
        return got, end

    def answer_close(self, timeout=10):
        """The server closed first: echo its code, end our side (h2), wait for
        the server's end. Returns the end."""
        code, _ = self.close_received
        try:
            self.close(code if code != NO_STATUS else None, "", timeout)
            if self.transport == "h2":
                self.ch.finish()
        except (Blocked, Closed):
            pass
        return self.wait_end(timeout)

    # -- ends ---------------------------------------------------------------------------
    def finish(self):
        """Our end without a close frame: h1 FIN, h2 END_STREAM."""
        self.ch.finish()

    def abort(self):
        """h1: TCP RST; h2: RST_STREAM on the WebSocket's stream."""
        self.ch.abort()

    def abort_connection(self):
        """TCP RST of the carrying connection (h2: every stream on it)."""
        self.ch.abort_connection()

    def dispose(self):
        """Lets go of what this client holds (RST if still open)."""
        self.ch.dispose()


def connect(server, path=WS_PATH, transport="h1", conn=None, timeout=10, rcvbuf=None,
            sndbuf=None, extra=()):
    """An open WebSocket to `path`: transport "h1" (Upgrade) or "h2"
    (extended CONNECT on `conn`, or on a new connection)."""
    if transport == "h1":
        sock, port, resp, rest, key = h1_handshake(server, path, timeout=timeout, rcvbuf=rcvbuf,
                                                   sndbuf=sndbuf, extra=extra)
        if resp.status != 101:
            sock.close()
            raise AssertionError("upgrade to %s refused: %r" % (path, resp))
        if resp.get("sec-websocket-accept") != accept_for(key):
            sock.close()
            raise AssertionError("wrong sec-websocket-accept %r (want %r)"
                                 % (resp.get("sec-websocket-accept"), accept_for(key)))
        return WsClient(H1Channel(sock, port, rest), resp)
    owns = conn is None
    if owns:
        conn = H2Conn(server, timeout=timeout, rcvbuf=rcvbuf, sndbuf=sndbuf)
    try:
        enabled = conn.wait_settings(timeout)
        if enabled != 1:
            raise AssertionError("the server's SETTINGS_ENABLE_CONNECT_PROTOCOL is %r, not 1"
                                 % enabled)
        sid = conn.open_websocket(path, extra=extra)
        conn.pump(lambda c: c.streams[sid].status is not None or c.streams[sid].reset is not None
                  or c.streams[sid].ended, timeout, "the answer to the extended CONNECT")
        st = conn.streams[sid]
        if st.status != 200:
            raise AssertionError("extended CONNECT to %s answered %s (reset %s): %s %r"
                                 % (path, st.status, st.reset, st.headers, bytes(st.body[:200])))
    except BaseException:
        if owns:
            conn.abort()
        raise
    return WsClient(H2Channel(conn, sid, owns), st)


# -- TCP tables ----------------------------------------------------------------------------

def tcp_queues(pid, local_port, remote_port):
    """(send queue, receive queue) of the established TCP socket
    local_port -> remote_port in pid's namespace, or None."""
    for proto in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, proto)) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] not in ("01", "08"):
                        continue
                    if (int(p[1].rsplit(":", 1)[1], 16) == local_port and
                            int(p[2].rsplit(":", 1)[1], 16) == remote_port):
                        tx, rx = p[4].split(":")
                        return int(tx, 16), int(rx, 16)
        except OSError:
            pass
    return None


def wait_delivered(server, port, poll, timeout=10):
    """Waits until every byte we sent on our connection from `port` was read
    by the server process (our send queue and its receive queue empty);
    poll() is called between looks (a metrics request: one pass of the
    server's loop)."""
    deadline = time.monotonic() + timeout
    while True:
        ours = tcp_queues(os.getpid(), port, server.port)
        theirs = tcp_queues(server.proc.pid, server.port, port)
        if ours is not None and theirs is not None and ours[0] == 0 and theirs[1] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the server did not read what we sent (our send queue, "
                                 "its receive queue: %s, %s)" % (ours, theirs))
        poll()


# -- idle --------------------------------------------------------------------------------

def app_baseline(server):
    """The application gauges of a fresh, idle server (the asker counted as
    it counts itself later)."""
    m = server.metrics()
    return {k: m.get(k) for k in APP_GAUGES}


def ws_state(m, baseline=None):
    """What differs from WebSocket-idle in metrics m: no WebSocket open,
    nothing queued, the application gauges back to `baseline`."""
    diff = {}
    for k, v in WS_IDLE.items():
        if m.get(k) != v:
            diff[k] = m.get(k)
    for k in APP_GAUGES:
        want = (baseline or {}).get(k, 0)
        if m.get(k) != want:
            diff[k] = "%s, idle is %s" % (m.get(k), want)
    return diff


def wait_idle(server, baseline=None, timeout=15):
    """harness.Server.wait_idle plus the WebSocket gauges: returns the
    final metrics or raises AssertionError naming what stayed up."""
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        diff = server.idle_state(m)
        diff.update(ws_state(m, baseline))
        if not diff:
            return m
        if time.monotonic() > deadline:
            raise AssertionError("server not idle after %ss: %s" % (timeout, diff))
        time.sleep(0.05)  # poll cadence


class WsCase(harness.ServerTestCase):
    """A server with the echo WebSocket at WS_PATH; `transport` says which
    carrier the tests of a class use. Every client made through self.ws()
    is let go after the test; then the server must be idle, WebSocket gauges
    included."""

    transport = "h1"
    ws_args = ()
    server_args = ("--websocket-echo", WS_PATH)

    @classmethod
    def setUpClass(cls):
        cls.server_args = ("--websocket-echo", WS_PATH) + tuple(cls.ws_args)
        super().setUpClass()
        cls.app_idle = app_baseline(cls.server)

    def setUp(self):
        self.clients = []
        self.conns = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.dispose()
            except Exception:
                pass
        for c in self.conns:
            try:
                c.abort()
            except Exception:
                pass
        wait_idle(self.server, self.app_idle)
        super().tearDown()

    def ws(self, path=WS_PATH, transport=None, **kwargs):
        c = connect(self.server, path, transport or self.transport, **kwargs)
        self.clients.append(c)
        return c

    def h2conn(self, **kwargs):
        c = H2Conn(self.server, **kwargs)
        self.conns.append(c)
        return c

    def assert_echo(self, c, kind, data, timeout=10):
        c.send_message(kind, data)
        got = c.recv_message(timeout)
        self.assertEqual(got[0], kind)
        if got[1] != data:
            self.fail("echo differs: sent %d %s bytes, got %d (first difference at %s)"
                      % (len(data), kind, len(got[1]),
                         next((i for i, (a, b) in enumerate(zip(got[1], data)) if a != b),
                              min(len(got[1]), len(data)))))

    def expect_end(self, c, timeout=5):
        """The server's clean end of a WebSocket: FIN (h1) / END_STREAM (h2)."""
        end = c.wait_end(timeout)
        self.assertEqual(end, "eof" if c.transport == "h1" else "end_stream")
        return end


def main():
    harness.main()


__all__ = ["connect", "WsClient", "H2Conn", "WsCase", "frame", "fragments", "fragment_flood",
           "partial_frame", "unmasked_frame", "wait_idle", "Blocked", "Closed"]
