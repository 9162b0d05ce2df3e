#!/usr/bin/python3
"""The example programs (examples/) against real clients: curl, nghttp,
h2load and python-h2 (for slow or stalled peers).

Environment (set by ctest, see CMakeLists.txt here):
  H2LOOP_EXAMPLES_DIR  the directory of the example binaries
  H2LOOP_LOOP          epoll | libevent (the threaded examples' --event-loop)
  H2LOOP_TRANSPORT     tls | h2c

Every example is started with --listen 127.0.0.1:0; its port is read from
the "listening on" line it prints. Every example must exit 0 on SIGTERM.
The embedded example brings its own loop (libevent, poll): it runs in the
epoll instances only. Every wait is bounded; a wait for a condition polls.
"""

import datetime
import os
import re
import select
import signal
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


if __name__ == "__main__":
    print("h2loop examples: loop=%s transport=%s dir=%s" % (LOOP, harness.TRANSPORT, EXAMPLES),
          file=sys.stderr)
    unittest.main(verbosity=2)
