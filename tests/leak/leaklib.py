"""Small shared helpers for the Python leak suites (tests/leak/test_*.py).

Raw HTTP/2 frames for hostile peers (hyperframe + hpack, which Debian's
python3-h2 depends on), close-reason counters read from the server's own
metrics, and bounded waits for the server to end a connection.
Run with /usr/bin/python3 (see harness.py).
"""

import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

import hpack  # noqa: E402
from hyperframe.frame import (  # noqa: E402
    ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
    SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 §7 error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

CLOSE_REASONS = ("completed", "peer_eof", "peer_reset", "tls_error", "protocol_error",
                 "handshake_timeout", "idle_timeout", "write_timeout", "limit", "shutdown",
                 "io_error", "header_timeout")


def closed_key(reason):
    return 'h2loop_connections_closed_total{reason="%s"}' % reason


def closed_counts(m):
    """reason -> connections closed for that reason, from metrics dict m."""
    return {r: m.get(closed_key(r), 0) for r in CLOSE_REASONS}


def closed_since(server, before, m=None):
    """reason -> connections closed since the counts `before` (only non-zero)."""
    now = closed_counts(m if m is not None else server.metrics())
    return {r: now[r] - before[r] for r in CLOSE_REASONS if now[r] != before[r]}


def wait_closed(server, before, reasons, count=1, timeout=15):
    """Polls metrics until `count` connections closed (since `before`) with one
    of `reasons`; returns the reason -> delta dict. Raises naming what did."""
    reasons = (reasons,) if isinstance(reasons, str) else tuple(reasons)
    m = server.wait_for(
        lambda m: sum(closed_counts(m)[r] - before[r] for r in reasons) >= count,
        timeout=timeout, what="%d close(s) with reason in %s" % (count, reasons))
    return closed_since(server, before, m)


def served(server, path="/", timeout=10):
    """A well-behaved client on a fresh connection: status of GET path (and
    the body length), with a bounded wait. Closes its connection cleanly."""
    c = harness.H2Client(server)
    try:
        r = c.get(path, timeout=timeout)
        return r["status"], len(r["body"])
    finally:
        c.close()


def connect_raw(server, timeout=10, rcvbuf=None):
    """A plain TCP connection to the server's port (no TLS on top), with
    SO_RCVBUF set before connecting when rcvbuf is given."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", server.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def connect(server, timeout=10, rcvbuf=None):
    """Like harness.connect, optionally with a small receive buffer set
    before connecting (a client that never reads then stalls the server's
    writes after a few KiB instead of after the kernel's megabytes)."""
    if rcvbuf is None:
        return harness.connect(server, timeout)
    s = connect_raw(server, timeout, rcvbuf)
    if server.tls:
        s = harness.tls_wrap(s)
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


def client_hello_bytes():
    """The first flight of a real TLS client (a ClientHello offering h2)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class RawConn:
    """A hand-driven HTTP/2 client: writes whatever frames a test builds,
    including ones no library would send, and reads frames back."""

    def __init__(self, server, preface=True, settings=None, timeout=10, rcvbuf=None):
        self.server = server
        self.sock = connect(server, timeout, rcvbuf)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.statuses = {}    # stream id -> :status of the response HEADERS
        self.ended = set()    # stream ids whose response ended (END_STREAM)
        self.inbuf = b""
        self.frames = []      # every frame received
        self.goaways = []     # (last_stream_id, error_code)
        self.resets = {}      # stream id -> error code of RST_STREAM received
        self.eof = None       # None while open; "eof", "reset" or "tls" once closed
        self.send_error = None
        if preface:
            self.send(PREFACE + SettingsFrame(0, settings or {}).serialize())

    # -- building -------------------------------------------------------------
    def request_headers(self, path="/", method="GET", extra=()):
        return [(":method", method), (":path", path), (":scheme", self.server.scheme),
                (":authority", "127.0.0.1:%d" % self.server.port)] + list(extra)

    def header_block(self, path="/", method="GET", extra=()):
        return self.encoder.encode(self.request_headers(path, method, extra))

    @staticmethod
    def headers_frame(sid, block, end_stream=True, end_headers=True):
        f = HeadersFrame(sid)
        f.data = block
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f.serialize()

    @staticmethod
    def continuation_frame(sid, block, end_headers=False):
        f = ContinuationFrame(sid)
        f.data = block
        if end_headers:
            f.flags.add("END_HEADERS")
        return f.serialize()

    @classmethod
    def header_block_frames(cls, sid, block, size=16384, end_stream=True):
        """`block` as one HEADERS frame and as many CONTINUATIONs as it takes
        at `size` bytes each, END_HEADERS on the last."""
        frames, first = b"", True
        while block or first:
            piece, block = block[:size], block[size:]
            if first:
                frames += cls.headers_frame(sid, piece, end_stream=end_stream,
                                            end_headers=not block)
                first = False
            else:
                frames += cls.continuation_frame(sid, piece, end_headers=not block)
        return frames

    @staticmethod
    def rst_frame(sid, code=CANCEL):
        return RstStreamFrame(sid, error_code=code).serialize()

    @staticmethod
    def data_frame(sid, data=b"", end_stream=False):
        f = DataFrame(sid, data=data)
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    @staticmethod
    def ping_frame(opaque=b"\0" * 8):
        return PingFrame(0, opaque_data=opaque).serialize()

    @staticmethod
    def settings_frame(settings=None, ack=False):
        f = SettingsFrame(0, settings or {})
        if ack:
            f.flags.add("ACK")
        return f.serialize()

    @staticmethod
    def window_update_frame(sid, increment):
        return WindowUpdateFrame(sid, window_increment=increment).serialize()

    @staticmethod
    def goaway_frame(last_sid=0, code=NO_ERROR):
        return GoAwayFrame(0, last_stream_id=last_sid, error_code=code).serialize()

    # -- I/O ----------------------------------------------------------------
    def send(self, data):
        """sendall; returns False (and records why) once the server is gone."""
        if self.send_error is not None:
            return False
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError) as e:
            self.send_error = e
            return False

    def _parse(self):
        while len(self.inbuf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.inbuf[:9]))
            if len(self.inbuf) < 9 + length:
                break
            f.parse_body(memoryview(self.inbuf[9:9 + length]))
            self.inbuf = self.inbuf[9 + length:]
            self.frames.append(f)
            if isinstance(f, GoAwayFrame):
                self.goaways.append((f.last_stream_id, f.error_code))
            elif isinstance(f, RstStreamFrame):
                self.resets[f.stream_id] = f.error_code
            elif isinstance(f, HeadersFrame):
                # The server's blocks are small: one HEADERS, END_HEADERS set.
                # Every block is decoded, in order, to keep HPACK in step.
                fields = dict(self.decoder.decode(bytes(f.data), raw=False))
                if ":status" in fields and f.stream_id not in self.statuses:
                    self.statuses[f.stream_id] = int(fields[":status"])
            if "END_STREAM" in getattr(f, "flags", ()) and f.stream_id:
                self.ended.add(f.stream_id)

    def read_some(self, timeout):
        """One recv with a timeout; parses frames. False once the peer closed
        (or on timeout, when nothing arrived)."""
        if self.eof is not None:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        except ssl.SSLWantReadError:
            return False
        except ConnectionResetError:
            self.eof = "reset"
            return False
        except ssl.SSLError:
            self.eof = "tls"
            return False
        except OSError:
            self.eof = "reset"
            return False
        if not data:
            self.eof = "eof"
            return False
        self.inbuf += data
        self._parse()
        return True

    def read_until(self, predicate, timeout=10):
        """Reads until predicate(self) or the peer closes; bounded by timeout.
        Returns predicate(self)."""
        deadline = time.monotonic() + timeout
        while not predicate(self) and self.eof is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.read_some(min(left, 1.0))
        return predicate(self)

    def wait_closed(self, timeout=10):
        """Reads (discarding) until EOF/RST; returns seconds it took, or raises
        AssertionError if the server kept the connection open past timeout."""
        start = time.monotonic()
        if not self.read_until(lambda c: c.eof is not None, timeout):
            raise AssertionError("server kept the connection open for %ss" % timeout)
        return time.monotonic() - start

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = int(float(value))
    return out


class MetricsConn:
    """Reads /metrics over one long-lived HTTP/2 connection. curl (what
    Server.metrics() uses) opens and closes a connection per poll, and each of
    those closes is counted (as peer_eof); polling over one connection keeps
    the close-reason counters exact while a test watches them. Like curl's,
    this connection and its stream count themselves (connections_active,
    streams_active and pool_in_use include 1 for the asker)."""

    def __init__(self, server):
        self.server = server
        self.client = harness.H2Client(server)

    def get(self):
        r = self.client.get(harness.METRICS, timeout=10)
        if r["status"] != 200:
            raise AssertionError("metrics request failed: %s" % r)
        return parse_metrics(bytes(r["body"]).decode())

    def wait_for(self, predicate, timeout=15, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            m = self.get()
            if predicate(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %ss waiting for %s; metrics: %s"
                                     % (timeout, what, m))
            time.sleep(0.05)  # poll cadence, not synchronisation

    def close(self):
        self.client.close()


def read_to_eof(sock, timeout=10):
    """Reads and discards until the server ends the connection; returns
    "eof" (FIN / close_notify) or "reset", or raises AssertionError if it is
    still open after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("server kept the connection open for %ss" % timeout)
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            continue
        except ssl.SSLWantReadError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except ssl.SSLError:
            return "reset"
        if not data:
            return "eof"


def unread_bytes(sock):
    """Bytes received by the kernel for `sock` and not yet read (FIONREAD;
    for TLS the raw, still encrypted bytes)."""
    import fcntl
    import struct
    import termios
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]
