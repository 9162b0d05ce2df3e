#!/usr/bin/python3
"""The example programs (examples/) against real clients: curl, nghttp,
h2load and python-h2 (for slow or stalled peers); WebSocket clients written
here on top of sockets (RFC 6455 over HTTP/1.1) and python-h2 (RFC 8441).
The websocket_chat example in a real browser: test_browser.py.

Environment (set by ctest, see CMakeLists.txt here):
  H2LOOP_EXAMPLES_DIR  the directory of the example binaries
  H2LOOP_LOOP          epoll | libevent (the threaded examples' --event-loop)
  H2LOOP_TRANSPORT     tls | h2c

Every example is started with --listen 127.0.0.1:0; its port is read from
the "listening on" line it prints. Every example must exit 0 on SIGTERM.
The embedded example brings its own loop (libevent, poll): it runs in the
epoll instances only. Every wait is bounded; a wait for a condition polls.
"""

import base64
import datetime
import hashlib
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402
from harness import H2Client  # noqa: E402

EXAMPLES = os.environ.get("H2LOOP_EXAMPLES_DIR", "build/release/examples")
LOOP = harness.LOOP
TLS = harness.TLS
# ServerOptions::stream_write_bound, which the examples keep at its default.
WRITE_BOUND = 64 * 1024


class Example:
    """One example process on an ephemeral port."""

    _count = 0

    def __init__(self, name, *extra, event_loop=True):
        self.name = name
        self.extra = list(extra)
        self.event_loop = event_loop  # takes --event-loop (threaded examples)
        self.tls = TLS
        self.port = None
        self.proc = None
        self.log = []
        self._reader = None

    def args(self):
        args = [os.path.join(EXAMPLES, self.name), "--listen", "127.0.0.1:0"]
        if self.event_loop:
            args += ["--event-loop", LOOP]
        if self.tls:
            cert, key = harness.certificate()
            args += ["--cert", cert, "--key", key]
        return args + self.extra

    def start(self, timeout=15):
        # The library logs through spdlog's default logger, on stdout.
        Example._count += 1
        self.stdout_path = os.path.join(harness.workdir(), "%s-%d.out" % (self.name, self._count))
        with open(self.stdout_path, "w") as out:
            self.proc = subprocess.Popen(self.args(), stdout=out, stderr=subprocess.PIPE,
                                         text=True)
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")
        while self.port is None:
            line = self._readline(deadline)
            if line is None:
                self.kill()
                raise RuntimeError("%s did not start:\n%s" % (self.name, self.log_text()))
            m = pattern.match(line.rstrip("\n"))
            if m:
                self.port = int(m.group(1))
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _readline(self, deadline):
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if r:
                line = self.proc.stderr.readline()
                if not line:
                    return None
                self.log.append(line)
                return line
            if self.proc.poll() is not None:
                return None
        return None

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def log_text(self):
        with open(self.stdout_path) as f:
            return "stderr:\n%s\nstdout:\n%s" % ("".join(self.log), f.read())

    def stop(self, timeout=10):
        """SIGTERM; returns (exit status, seconds it took). Kills and fails
        after `timeout` seconds."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not stop within %ss after SIGTERM:\n%s"
                                 % (self.name, timeout, self.log_text()[-4000:]))
        took = time.monotonic() - t0
        self._close()
        return self.proc.returncode, took

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        if self._reader:
            self._reader.join(5)
        if self.proc and not self.proc.stderr.closed and not (
                self._reader and self._reader.is_alive()):
            self.proc.stderr.close()

    # -- clients -----------------------------------------------------------
    @property
    def scheme(self):
        return "https" if self.tls else "http"

    def url(self, path="/"):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def curl(self, path, *extra, timeout=60):
        proto = ["-k", "--http2"] if self.tls else ["--http2-prior-knowledge"]
        cmd = ["curl", "-sS", "--max-time", str(timeout)] + proto + list(extra) + [self.url(path)]
        return subprocess.run(cmd, capture_output=True, timeout=timeout + 10)

    def h2load(self, path, n, c, m):
        r = subprocess.run(["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-T", "30",
                            "-N", "30", self.url(path)], capture_output=True, timeout=120)
        return r.returncode, r.stdout.decode() + r.stderr.decode()

    def metrics(self):
        r = self.curl("/metrics", timeout=10)
        if r.returncode != 0:
            raise AssertionError("metrics: %s" % r.stderr.decode(errors="replace"))
        out = {}
        for line in r.stdout.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = int(float(value))
        return out

    def wait_metrics(self, predicate, what, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if predicate(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; metrics: %s" % (what, m))
            time.sleep(0.05)


class ExampleCase(unittest.TestCase):
    """One example process per class, which must exit 0 on SIGTERM at the end."""

    example = None  # (name, *args)
    event_loop = True

    @classmethod
    def setUpClass(cls):
        cls.ex = Example(*cls.example, event_loop=cls.event_loop).start()

    @classmethod
    def tearDownClass(cls):
        code, _ = cls.ex.stop()
        if code != 0:
            raise AssertionError("%s exited with %s on SIGTERM:\n%s"
                                 % (cls.ex.name, code, cls.ex.log_text()[-4000:]))

    def assertAll2xx(self, n, code, out):
        self.assertEqual(code, 0, out)
        self.assertIn("%d succeeded, 0 failed, 0 errored" % n, out)
        self.assertIn("status codes: %d 2xx" % n, out)


# -- hello ---------------------------------------------------------------------

class Hello(ExampleCase):
    example = ("hello", "--workers", "2", "--log-level", "warn")

    def test_get_root(self):
        r = self.ex.curl("/", "-w", "\n%{http_code} %{http_version} %{content_type}")
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, meta = r.stdout.decode().rpartition("\n")
        self.assertEqual(body, "hello, world\n")
        self.assertEqual(meta, "200 2 text/plain")

    def test_unknown_path_is_404(self):
        r = self.ex.curl("/nothing", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"404")

    def test_h2load_2000_requests_all_2xx(self):
        self.assertAll2xx(2000, *self.ex.h2load("/", 2000, 10, 10))


# -- echo_upload -----------------------------------------------------------------

class EchoClient(H2Client):
    """python-h2 client that also records trailers and unacknowledged bytes."""

    def handle(self, ev, ack_data):
        r = self.responses.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.TrailersReceived):
            r["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived) and not ack_data:
            r["unacked"] = r.get("unacked", 0) + ev.flow_controlled_length
        super().handle(ev, ack_data)

    def upload(self, sid, data, sent, ack_data, stall_after=None):
        """Sends data[sent:] as the peer's windows allow, reading meanwhile.
        Returns the bytes sent so far once all is sent, or, with
        stall_after, once no window has opened for that many seconds."""
        last_progress = time.monotonic()
        while sent < len(data):
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window > 0:
                chunk = data[sent:sent + window]
                sent += len(chunk)
                self.conn.send_data(sid, chunk, end_stream=sent == len(data))
                self.flush()
                last_progress = time.monotonic()
                continue
            if stall_after is not None and time.monotonic() - last_progress > stall_after:
                return sent
            if time.monotonic() - last_progress > 30:
                raise AssertionError("the server's window stayed shut for 30 s")
            self.sock.settimeout(0.1)
            try:
                received = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # ssl's timeout is an OSError too
                continue
            if not received:
                raise AssertionError("connection closed during the upload")
            for ev in self.conn.receive_data(self._filter_goaway(received)):
                self.handle(ev, ack_data)
            self.flush()
        return sent


class EchoUpload(ExampleCase):
    example = ("echo_upload",)

    def test_5mib_upload_comes_back_identical_with_trailer(self):
        src = os.path.join(harness.workdir(), "upload-5m.bin")
        out = os.path.join(harness.workdir(), "echo-5m.bin")
        hdr = os.path.join(harness.workdir(), "echo-5m.hdr")
        data = os.urandom(5 << 20)
        with open(src, "wb") as f:
            f.write(data)
        r = self.ex.curl("/echo", "--data-binary", "@" + src, "-o", out, "-D", hdr,
                         "-w", "%{http_code} %{http_version}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"200 2")
        with open(out, "rb") as f:
            self.assertTrue(f.read() == data, "the echoed body differs from the upload")
        # curl writes trailers to the header dump, after the headers.
        with open(hdr) as f:
            self.assertIn("x-echo-bytes: %d" % len(data), f.read().lower())

    def test_nghttp_sees_the_trailer_frame(self):
        src = os.path.join(harness.workdir(), "upload-300k.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(300 * 1024))
        r = subprocess.run(["nghttp", "-v", "--timeout=30", "-d", src, self.ex.url("/echo")],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode(errors="replace")
        self.assertIn("x-echo-bytes: %d" % (300 * 1024), text)

    def test_slow_reader_pauses_the_upload_then_all_comes_back(self):
        data = os.urandom(4 << 20)
        # The client reads nothing at first: no WINDOW_UPDATE for the echo.
        c = EchoClient(self.ex, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16384})
        try:
            sid = c.request("/echo", method="POST", end_stream=False,
                            extra=[("content-type", "application/octet-stream")])
            c.responses[sid]["trailers"] = None
            sent = c.upload(sid, data, 0, ack_data=False, stall_after=1.0)
            # The example stopped taking the body: the server returns no
            # window while write() refuses (pauseBody), so the client is
            # stuck long before the end.
            self.assertLess(sent, 1 << 20, "the upload was never paused")
            self.assertEqual(c.responses[sid]["status"], 200)
            self.assertLessEqual(len(c.responses[sid]["body"]), 16384)
            # Now read: the echo drains, onWritable resumes the body.
            c.conn.acknowledge_received_data(c.responses[sid].get("unacked", 0), sid)
            c.flush()
            c.upload(sid, data, sent, ack_data=True)
            c.pump(lambda cl: cl.responses[sid]["ended"] or cl.responses[sid]["reset"] is not None,
                   timeout=60)
            r = c.responses[sid]
            self.assertIsNone(r["reset"])
            self.assertTrue(bytes(r["body"]) == data, "the echoed body differs from the upload")
            self.assertEqual(r["trailers"], {"x-echo-bytes": str(len(data))})
        finally:
            c.close()

    def test_collect_over_1mib_is_413(self):
        src = os.path.join(harness.workdir(), "upload-2m.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(2 << 20))
        r = self.ex.curl("/collect", "--data-binary", "@" + src, "-o", "/dev/null",
                         "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"413", r.stderr)

    def test_collect_100kib_answers_length_and_first_bytes(self):
        src = os.path.join(harness.workdir(), "upload-100k.bin")
        data = os.urandom(100 * 1024)
        with open(src, "wb") as f:
            f.write(data)
        r = self.ex.curl("/collect", "--data-binary", "@" + src, "-w", "%{http_code}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(),
                         "length %d\nfirst16 %s\n200" % (len(data), data[:16].hex()))


# -- sse_clock -------------------------------------------------------------------

EVENT = re.compile(rb"data: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z\n\n")


def event_times(body):
    """(timestamp, end offset) of every complete event in body."""
    return [(datetime.datetime.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S.%f")
             .replace(tzinfo=datetime.timezone.utc), m.end())
            for m in EVENT.finditer(bytes(body))]


class SseClockCount(ExampleCase):
    example = ("sse_clock", "--interval-ms", "50", "--count", "3")

    def test_curl_gets_three_events_then_the_stream_ends(self):
        hdr = os.path.join(harness.workdir(), "sse.hdr")
        r = self.ex.curl("/clock", "-N", "-D", hdr, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)  # the stream ended by itself
        with open(hdr) as f:
            self.assertIn("content-type: text/event-stream", f.read().lower())
        self.assertEqual(len(EVENT.findall(r.stdout)), 3, r.stdout)
        self.assertEqual(EVENT.sub(b"", r.stdout), b"", r.stdout)  # nothing else
        times = [t for t, _ in event_times(r.stdout)]
        self.assertEqual(times, sorted(times))


class SseClockStalled(ExampleCase):
    """A client that opens /clock with a 16-byte stream window and never
    reads: the clock must skip ticks instead of queueing them."""
    example = ("sse_clock", "--interval-ms", "1")
    BOUND = 256 * 1024

    def stalled_client(self):
        c = H2Client(self.ex, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
        sid = c.request("/clock")
        c.pump(lambda cl: len(cl.responses[sid]["body"]) >= 16, timeout=15, ack_data=False)
        self.assertEqual(c.responses[sid]["status"], 200)
        return c, sid

    def watch_stall(self, seconds):
        """Samples the server's figures while the client stalls; they must
        stay bounded all along. With the application's queue gauge (newer
        builds) it waits for the stream's queue to fill instead."""
        deadline = time.monotonic() + seconds
        full_by = time.monotonic() + 30
        while True:
            m = self.ex.metrics()
            self.assertLess(m["h2loop_output_buffered_bytes"], self.BOUND, m)
            queued = m.get("h2loop_app_queued_bytes")
            if queued is not None:
                self.assertLessEqual(queued, WRITE_BOUND, m)
            self.assertEqual(m["h2loop_app_handles"], 1, m)  # the clock's own
            if time.monotonic() >= deadline and (queued is None or queued > WRITE_BOUND - 1024):
                return m
            if time.monotonic() > full_by:
                raise AssertionError("the stream's queue never filled: %s" % m)
            time.sleep(0.1)

    def test_stalled_client_costs_bounded_memory_and_is_released(self):
        c, sid = self.stalled_client()
        try:
            self.watch_stall(2.0)
        finally:
            c.close()  # GOAWAY and close: the clock's onClose runs
        self.ex.wait_metrics(lambda m: m["h2loop_app_handles"] == 0
                             and m["h2loop_streams_active"] == 1
                             and m["h2loop_output_buffered_bytes"] == 0,
                             "the stalled stream's handle to go")

    def test_clock_skips_ticks_while_blocked_and_resumes_on_writable(self):
        c, sid = self.stalled_client()
        try:
            # At 1 ms per ~38-byte event the 64 KiB write bound is reached
            # after about 1.8 s.
            self.watch_stall(4.0)
            # Events carry milliseconds: one written after this instant
            # shows a time at or after its millisecond.
            opened = datetime.datetime.now(datetime.timezone.utc)
            opened = opened.replace(microsecond=opened.microsecond // 1000 * 1000)
            c.conn.increment_flow_control_window(8 << 20, stream_id=sid)
            c.conn.increment_flow_control_window(8 << 20)
            c.flush()

            def fresh(cl):
                return any(t >= opened for t, _ in event_times(cl.responses[sid]["body"]))
            c.pump(fresh, timeout=15)
            events = event_times(c.responses[sid]["body"])
            stale = [(t, end) for t, end in events if t < opened]
            first_fresh = next(t for t, _ in events if t >= opened)
            # What was written before the window opened is what the stream
            # had queued: at most the write bound (and the 16 bytes sent).
            self.assertLessEqual(stale[-1][1], WRITE_BOUND + 1024)
            # Ticks were skipped while blocked: a hole in the times, not a
            # backlog of old events.
            self.assertGreater((first_fresh - stale[-1][0]).total_seconds(), 0.5)
        finally:
            c.close()
        self.ex.wait_metrics(lambda m: m["h2loop_app_handles"] == 0, "the stream's handle to go")


# -- thread_pool ---------------------------------------------------------------------

def fibonacci_mod(k, mod=1_000_000_007):
    a, b = 0, 1
    for _ in range(k):
        a, b = b, (a + b) % mod
    return a


class ThreadPool(ExampleCase):
    example = ("thread_pool", "--threads", "3")

    def test_h2load_200_concurrent_computations_all_200(self):
        self.assertAll2xx(200, *self.ex.h2load("/compute?n=1000", 200, 4, 50))

    def test_value_matches(self):
        for k in (0, 1, 2, 90, 12345, 1_000_000):
            r = self.ex.curl("/compute?n=%d" % k, "-w", "%{http_code}")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.decode(), "%d\n200" % fibonacci_mod(k), k)

    def test_bad_query_is_400(self):
        for q in ("", "?n=", "?n=abc", "?n=-1", "?m=3", "?n=1000000000"):
            r = self.ex.curl("/compute" + q, "-o", "/dev/null", "-w", "%{http_code}")
            self.assertEqual(r.stdout, b"400", q)


# -- embedded_libevent -------------------------------------------------------------------

@unittest.skipUnless(LOOP == "epoll",
                     "the embedded example runs its own loop (libevent, poll); "
                     "it runs in the epoll instances only")
class Embedded(unittest.TestCase):

    def run_mode(self, loop):
        ex = Example("embedded_libevent", "--loop", loop, "--tick-ms", "20",
                     event_loop=False).start()
        try:
            def ticks():
                r = ex.curl("/ticks", "-w", "\n%{http_code}", timeout=10)
                self.assertEqual(r.returncode, 0, r.stderr)
                body, _, code = r.stdout.decode().rpartition("\n")
                self.assertEqual(code, "200")
                return int(body)

            first = ticks()
            deadline = time.monotonic() + 10
            while True:
                now = ticks()
                if now != first:
                    break
                self.assertLess(time.monotonic(), deadline, "the tick count never moved")
                time.sleep(0.02)
            self.assertGreater(now, first)
            self.assertAll2xx(ex)
            # An idle client connection still open: the graceful shutdown
            # sends it GOAWAY, and the program ends once it is gone.
            c = H2Client(ex)
            self.assertEqual(c.get("/ticks")["status"], 200)
            code, took = ex.stop(timeout=10)
            c.close()
            self.assertEqual(code, 0, ex.log_text())
            self.assertLess(took, 10)
        finally:
            ex.kill()

    def assertAll2xx(self, ex):
        code, out = ex.h2load("/ticks", 1000, 4, 10)
        self.assertEqual(code, 0, out)
        self.assertIn("status codes: 1000 2xx", out)

    def test_libevent_ticks_advance_and_sigterm_exits_0(self):
        self.run_mode("libevent")

    def test_poll_ticks_advance_and_sigterm_exits_0(self):
        self.run_mode("poll")


# -- websocket_chat ----------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload=b"", fin=True):
    """One client frame: masked, as RFC 6455 requires of clients."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + ws_mask(payload, key)


class WsClient:
    """The RFC 6455 endpoint of a client, whatever carries it (WsHttp1: an
    HTTP/1.1 Upgrade; WsH2: an HTTP/2 extended CONNECT stream). Whole
    messages land in self.messages as (opcode, payload); pings are answered;
    the server's close frame is kept as self.close_frame (code, reason)."""

    def __init__(self):
        self.status = None
        self.inbuf = bytearray()
        self.fragments = None
        self.messages = []
        self.close_frame = None
        self.ended = False  # the transport ended (EOF, END_STREAM, reset)
        self.received_bytes = 0

    def send(self, opcode, payload):
        self._send_bytes(ws_frame(opcode, payload))

    def send_text(self, text):
        self.send(OP_TEXT, text.encode())

    def close(self, code=1000, reason=b""):
        self.send(OP_CLOSE, code.to_bytes(2, "big") + reason)

    def texts(self):
        return [p.decode() for op, p in self.messages if op == OP_TEXT]

    def _received(self, data):
        self.received_bytes += len(data)
        self.inbuf += data
        while len(self.inbuf) >= 2:
            b0, b1 = self.inbuf[0], self.inbuf[1]
            if b1 & 0x80:
                raise AssertionError("the server masked a frame")
            n, pos = b1 & 0x7F, 2
            if n == 126:
                n, pos = int.from_bytes(self.inbuf[2:4], "big"), 4
            elif n == 127:
                n, pos = int.from_bytes(self.inbuf[2:10], "big"), 10
            if len(self.inbuf) < pos + n:
                return
            fin, opcode, payload = b0 & 0x80, b0 & 0x0F, bytes(self.inbuf[pos:pos + n])
            del self.inbuf[:pos + n]
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close_frame = (code, payload[2:].decode())
            elif opcode == OP_CONT:
                self.fragments[1].extend(payload)
                if fin:
                    self.messages.append((self.fragments[0], bytes(self.fragments[1])))
                    self.fragments = None
            elif opcode != OP_PONG:
                if fin:
                    self.messages.append((opcode, payload))
                else:
                    self.fragments = (opcode, bytearray(payload))

    def wait(self, until, timeout=30, what="WebSocket messages"):
        """Reads until until(self) (or the transport ended)."""
        deadline = time.monotonic() + timeout
        while not until(self):
            if self.ended:
                raise AssertionError("the WebSocket ended waiting for %s (close %s)"
                                     % (what, self.close_frame))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s: %d messages, close %s"
                                     % (what, len(self.messages), self.close_frame))
            self._read(min(left, 1.0))


class WsHttp1(WsClient):
    """RFC 6455: an HTTP/1.1 Upgrade on a connection of its own (TLS with
    ALPN http/1.1 on the tls variants)."""

    def __init__(self, ex, path="/chat"):
        super().__init__()
        self.sock = socket.create_connection(("127.0.0.1", ex.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ex.tls:
            self.sock = harness.tls_wrap(self.sock, alpn=("http/1.1",))
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), ex.port, key))
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(4096)
            if not data:
                raise AssertionError("connection closed during the handshake: %r" % head)
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, _, v in (line.partition(":") for line in lines[1:])}
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == accept, self.headers
            self._received(rest)

    def _send_bytes(self, data):
        self.sock.sendall(data)

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.ended = True
        self._received(data)

    def shutdown(self):
        self.sock.close()


class WsH2Connection(H2Client):
    """A python-h2 connection that carries chat WebSockets (RFC 8441) next
    to ordinary requests. Waits for the server's SETTINGS."""

    def __init__(self, ex):
        self.websockets = {}  # stream id -> WsH2
        self.settings_seen = False
        super().__init__(ex)
        self.pump(lambda c: c.settings_seen, timeout=10)

    def handle(self, ev, ack_data):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        ws = self.websockets.get(getattr(ev, "stream_id", None))
        if ws is not None:
            ws.h2_event(ev)
        else:
            super().handle(ev, ack_data)

    def read_once(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            for ws in self.websockets.values():
                ws.ended = True
            return
        for ev in self.conn.receive_data(self._filter_goaway(data)):
            self.handle(ev, True)
        self.flush()


class WsH2(WsClient):
    """RFC 8441: an extended CONNECT stream on an HTTP/2 connection (its
    own, or a shared WsH2Connection). reading=False: DATA is taken but no
    flow-control credit goes back, so the server's window shuts (a stalled
    reader); resume() returns it."""

    def __init__(self, ex, path="/chat", conn=None, reading=True):
        super().__init__()
        self.h2 = conn or WsH2Connection(ex)
        self.reading = reading
        self.unacked = 0
        self.reset = None
        c = self.h2.conn
        self.sid = c.get_next_available_stream_id()
        self.h2.websockets[self.sid] = self
        c.send_headers(self.sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":scheme", ex.scheme), (":path", path),
                                  (":authority", "127.0.0.1:%d" % ex.port),
                                  ("sec-websocket-version", "13")])
        self.h2.flush()
        self.wait(lambda w: w.status is not None or w.reset is not None, timeout=10,
                  what="the CONNECT's response")

    def h2_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.status = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            if self.reading:
                self.h2.conn.acknowledge_received_data(ev.flow_controlled_length, self.sid)
            else:
                self.unacked += ev.flow_controlled_length
            self._received(ev.data)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self.reset = ev.error_code
            self.ended = True

    def resume(self):
        self.reading = True
        if self.unacked:
            self.h2.conn.acknowledge_received_data(self.unacked, self.sid)
            self.unacked = 0
            self.h2.flush()

    def _send_bytes(self, data):
        c = self.h2.conn
        deadline = time.monotonic() + 30
        while data:
            window = min(c.local_flow_control_window(self.sid), c.max_outbound_frame_size)
            if window <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("the server's window stayed shut for 30 s")
                self.h2.read_once(0.5)
                continue
            c.send_data(self.sid, data[:window])
            data = data[window:]
            self.h2.flush()

    def end_stream(self):
        self.h2.conn.end_stream(self.sid)
        self.h2.flush()

    def _read(self, timeout):
        self.h2.read_once(timeout)


def chat_seq(message):
    """The sequence number a flood message carries in its first 8 bytes."""
    return int(message[1][:8])


class WebSocketChat(ExampleCase):
    example = ("websocket_chat",)
    FLOOD_SIZE = 16 * 1024

    def stats(self):
        r = self.ex.curl("/stats", timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_all_closed(self):
        deadline = time.monotonic() + 15
        while True:
            s = self.stats()
            if s["open"] == {"h2": 0, "http/1.1": 0}:
                break
            self.assertLess(time.monotonic(), deadline, "WebSockets still open: %s" % s)
            time.sleep(0.05)
        self.ex.wait_metrics(lambda m: m["h2loop_app_handles"] == 0, "the room's handles to go")

    def tearDown(self):
        self.wait_all_closed()

    def test_h2_settings_offer_extended_connect(self):
        c = WsH2Connection(self.ex)
        try:
            self.assertEqual(c.conn.remote_settings.enable_connect_protocol, 1)
        finally:
            c.close()

    def test_plain_get_on_the_websocket_path_is_426(self):
        r = self.ex.curl("/chat", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertEqual(r.stdout, b"426", r.stderr)

    def test_page_and_resources(self):
        for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"),
                            ("/style.css", "text/css")):
            r = self.ex.curl(path, "-o", "/dev/null", "-w", "%{http_code} %{content_type}")
            self.assertEqual(r.stdout.decode().split(";")[0], "200 " + ctype, path)

    def test_room_spans_http1_and_h2_and_closes_cleanly(self):
        before = self.stats()
        a = WsHttp1(self.ex)
        b = WsH2(self.ex)
        c = WsH2(self.ex, conn=b.h2)  # a second WebSocket on b's connection
        try:
            self.assertEqual((a.status, b.status, c.status), (101, 200, 200))
            peers = (a, b, c)
            # Everyone is in the room once /stats counts three open.
            deadline = time.monotonic() + 10
            while sum(self.stats()["open"].values()) < 3:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            a.send_text("from http/1.1: h\u00e9llo")
            b.send(OP_BINARY, b"\x00\xffbinary from h2")
            c.send_text("from h2, stream %d" % c.sid)
            for w in peers:
                w.wait(lambda w: len(w.messages) >= 3)
                self.assertCountEqual(w.messages, [
                    (OP_TEXT, "from http/1.1: h\u00e9llo".encode()),
                    (OP_BINARY, b"\x00\xffbinary from h2"),
                    (OP_TEXT, ("from h2, stream %d" % c.sid).encode())])
            s = self.stats()
            self.assertEqual(s["open"], {"h2": 2, "http/1.1": 1}, s)
            self.assertEqual(s["opened"]["h2"] - before["opened"]["h2"], 2, s)
            self.assertEqual(s["opened"]["http/1.1"] - before["opened"]["http/1.1"], 1, s)
            self.assertEqual(s["messages"] - before["messages"], 3, s)
            self.assertEqual(s["delivered"] - before["delivered"], 9, s)
            # The WebSockets' connection still serves requests beside them.
            self.assertEqual(b.h2.get("/stats")["status"], 200)
            # Close handshakes: the server answers 1000; HTTP/1.1 then ends the
            # connection, HTTP/2 the stream (and the connection goes on).
            a.close(1000, b"bye")
            a.wait(lambda w: w.close_frame is not None, what="the close frame")
            self.assertEqual(a.close_frame[0], 1000)
            a.wait(lambda w: w.ended, what="the connection's end")
            c.close(1000)
            c.wait(lambda w: w.close_frame is not None, what="the close frame")
            self.assertEqual(c.close_frame[0], 1000)
            c.end_stream()
            c.wait(lambda w: w.ended, what="END_STREAM")
            self.assertIsNone(c.reset)
            b.send_text("still here")
            b.wait(lambda w: (OP_TEXT, b"still here") in w.messages)
            b.close(1001)
            b.wait(lambda w: w.close_frame is not None, what="the close frame")
            b.end_stream()
            b.wait(lambda w: w.ended, what="END_STREAM")
            self.assertEqual(b.h2.get("/")["status"], 200)
        finally:
            a.shutdown()
            b.h2.close()

    def test_message_over_max_message_closes_1009(self):
        a = WsHttp1(self.ex)
        try:
            a.send(OP_BINARY, b"x" * (64 * 1024 + 1))  # --max-message: 64 KiB
            a.wait(lambda w: w.close_frame is not None, what="the close frame")
            self.assertEqual(a.close_frame[0], 1009)
        finally:
            a.shutdown()

    def flood(self, sender, n, readers):
        """n messages of FLOOD_SIZE bytes from sender; every reader in
        `readers` (the sender among them) is read in step, with at most two
        messages (32 KiB) in flight: under the send bound, so a reader that
        reads misses nothing."""
        for i in range(n):
            sender.send(OP_BINARY, b"%08d" % i + b"." * (self.FLOOD_SIZE - 8))
            for w in readers:
                w.wait(lambda w: len(w.messages) >= i - 1, what="message %d" % (i - 1))
        for w in readers:
            w.wait(lambda w: len(w.messages) >= n, what="the whole flood")
            self.assertEqual([chat_seq(m) for m in w.messages], list(range(n)))

    def drain(self, peers):
        """Reads the peers until the server holds nothing for them (its
        WebSocket queues and connection buffers are empty)."""
        deadline = time.monotonic() + 30
        while True:
            for w in peers:
                w._read(0.05)
            m = self.ex.metrics()
            if (m.get("h2loop_websocket_queued_bytes", 0) == 0
                    and m["h2loop_output_buffered_bytes"] == 0):
                return
            self.assertLess(time.monotonic(), deadline, "the server kept bytes queued: %s" % m)

    def test_stalled_readers_miss_messages_not_memory(self):
        before = self.stats()
        sender = WsHttp1(self.ex)
        fast = WsH2(self.ex)
        stalled_h2 = WsH2(self.ex, reading=False)  # returns no flow-control credit
        stalled_h1 = WsHttp1(self.ex)               # never reads its socket
        peers = (sender, fast, stalled_h2, stalled_h1)
        try:
            deadline = time.monotonic() + 10
            while sum(self.stats()["open"].values()) - sum(before["open"].values()) < 4:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            n = 600  # 9.4 MiB to each peer: more than socket buffers hold
            self.flood(sender, n, (sender, fast))
            s = self.stats()
            self.assertEqual(s["messages"] - before["messages"], n, s)
            skipped = s["skipped"] - before["skipped"]
            self.assertGreater(skipped, 0, s)
            self.assertEqual(s["delivered"] - before["delivered"] + skipped, 4 * n, s)
            # What the server holds for the two stalled peers: bounded (the
            # send bound and the stream's, per WebSocket; the connection's
            # output watermark), not the 9.4 MiB each missed.
            m = self.ex.metrics()
            self.assertLess(m["h2loop_output_buffered_bytes"], 2 * 128 * 1024, m)
            self.assertLessEqual(m.get("h2loop_websocket_queued_bytes", 0), 2 * 64 * 1024, m)
            # The stalled readers read again: once the server has handed them
            # what it held, the next message reaches everyone.
            stalled_h2.resume()
            self.drain((stalled_h2, stalled_h1))
            sender.send(OP_BINARY, b"%08d" % n + b"end")
            for w in peers:
                w.wait(lambda w: w.messages and chat_seq(w.messages[-1]) == n,
                       what="the message after the flood")
            for w in (stalled_h2, stalled_h1):
                # In order, whole, with a hole.
                seqs = [chat_seq(m) for m in w.messages]
                self.assertEqual(seqs, sorted(set(seqs)))
                self.assertLess(len(seqs), n + 1)
                self.assertTrue(all(len(m[1]) == self.FLOOD_SIZE for m in w.messages[:-1]))
            # The HTTP/2 reader held at most its window (64 KiB), the stream's
            # bound and the send bound (64 KiB each) and a frame or so of the
            # connection's output: far less than the flood.
            held = len(stalled_h2.messages) - 1
            self.assertLessEqual(held * self.FLOOD_SIZE, 4 * 64 * 1024 + 2 * self.FLOOD_SIZE, held)
        finally:
            for w in peers:
                if isinstance(w, WsHttp1):
                    w.shutdown()
                else:
                    w.h2.close()


class WebSocketChatShutdown(unittest.TestCase):

    def test_sigterm_with_open_websockets_exits_0(self):
        ex = Example("websocket_chat").start()
        try:
            a = WsHttp1(ex)
            b = WsH2(ex)
            self.assertEqual((a.status, b.status), (101, 200))
            code, took = ex.stop(timeout=15)
            self.assertEqual(code, 0, ex.log_text())
            self.assertLess(took, 10)
            # The peers were told: 1001 (going away), before the transport ended.
            for w in (a, b):
                w.wait(lambda w: w.close_frame is not None or w.ended, timeout=5,
                       what="the shutdown")
                self.assertIsNotNone(w.close_frame, "no close frame before the end")
                self.assertEqual(w.close_frame[0], 1001)
            a.shutdown()
            b.h2.close()
        finally:
            ex.kill()


if __name__ == "__main__":
    print("h2loop examples: loop=%s transport=%s dir=%s" % (LOOP, harness.TRANSPORT, EXAMPLES),
          file=sys.stderr)
    unittest.main(verbosity=2)
