"""The application API's promise, tested on h2loop_api_app (tests/api/api_app.cc)
with real clients: handles held across every way a request ends, answers from
threads, producers that never pause, paused uploads, handlers that never
answer, drop their handle or throw.

After every test the server's live counters return to idle, including the
handles the application holds (h2loop_app_handles) and the exchanges alive
(h2loop_app_exchanges); at the end the application stops cleanly (exit 0),
and it exits non-zero if any operation on an ended exchange did not say
closed. Run once per event loop and transport by ctest (see harness.py).
"""

import os
import random
import socket
import subprocess
import sys
import threading
import time
import unittest

import h2.errors
import h2.events
import h2.settings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402
from harness import H2Client, Server, ServerTestCase, connect, rst_close  # noqa: E402

BOUND = 64 * 1024


def stats(server):
    r = server.curl("/stats", timeout=10)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.decode().splitlines():
        name, value = line.split()
        out[name] = int(value)
    return out


def wait_stats(server, predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        s = stats(server)
        if predicate(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s; stats: %s" % (what, s))
        time.sleep(0.02)


def idle_app(server):
    """wait_idle, and nothing of the application's left either."""
    m = server.wait_idle()
    deadline = time.monotonic() + 15
    while m["h2loop_app_handles"] != 0 or m["h2loop_app_exchanges"] != 0:
        if time.monotonic() > deadline:
            raise AssertionError("application handles not released: handles=%d exchanges=%d" % (
                m["h2loop_app_handles"], m["h2loop_app_exchanges"]))
        time.sleep(0.05)
        m = server.metrics()
    return m


class AppCase(ServerTestCase):
    server_args = ("--response-timeout-ms", "600", "--write-timeout", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.file_mounts = 2  # the app mounts the root at / and at /static

    def tearDown(self):
        idle_app(self.server)


class HeldAcrossEveryEnd(AppCase):
    """The application holds a handle across the end of its exchange, then
    writes and ends through it: every operation says closed, nothing
    crashes, and the pooled slot stays taken until the handle drops."""

    def hold_then(self, end, reason):
        before = stats(self.server)
        pool_idle = self.server.metrics()["h2loop_pool_in_use"]
        client = H2Client(self.server)
        sid = client.request("/hold?keep=1")
        wait_stats(self.server, lambda s: s["held"] == before["held"] + 1, "the handler holding")
        end(client, sid)
        s = wait_stats(self.server, lambda s: s[reason] == before[reason] + 1,
                       "onClose(%s)" % reason)
        s = wait_stats(self.server, lambda s: s["late_closed"] == before["late_closed"] + 4,
                       "the late operations")
        self.assertEqual(s["late_other"], 0, "a late operation did not say closed")
        # The connection's part is over; the application's handle keeps the slot.
        m = self.server.metrics()
        self.assertEqual(m["h2loop_app_handles"], 1)
        self.assertEqual(m["h2loop_pool_in_use"], pool_idle + 1,
                         "the pooled slot was returned while a handle still held it")
        r = self.server.curl("/release", timeout=10)
        self.assertEqual(r.stdout.strip(), b"1")
        client.sock.close()

    def test_client_rst_stream(self):
        def end(client, sid):
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            client.flush()
        self.hold_then(end, "close_reset_by_the_client")

    def test_tcp_rst(self):
        def end(client, sid):
            rst_close(client.sock)
            client.sock = socket.socket()  # closed again by hold_then: harmless
        self.hold_then(end, "close_connection_closed")

    def test_fin_without_goaway(self):
        def end(client, sid):
            client.sock.shutdown(socket.SHUT_WR)
        self.hold_then(end, "close_connection_closed")


class IdleTimeoutEndsHeld(AppCase):
    server_args = ("--idle-timeout", "1", "--write-timeout", "2", "--response-timeout-ms", "60000")

    def test_idle_timeout(self):
        before = stats(self.server)
        client = H2Client(self.server)
        client.request("/hold?keep=1")
        wait_stats(self.server, lambda s: s["held"] == before["held"] + 1, "the handler holding")
        # No traffic: the idle timeout ends the connection (GOAWAY, then the drain).
        s = wait_stats(self.server,
                       lambda s: s["close_connection_closed"] == before["close_connection_closed"] + 1,
                       "the idle timeout ending the exchange", timeout=30)
        s = wait_stats(self.server, lambda s: s["late_closed"] == before["late_closed"] + 4,
                       "the late operations")
        self.assertEqual(s["late_other"], 0)
        self.assertEqual(self.server.curl("/release", timeout=10).stdout.strip(), b"1")
        client.sock.close()


class HeldAcrossShutdown(unittest.TestCase):
    """Handles held when the server shuts down: the exchanges end with
    kShutdown, and handles kept past the server's destruction still answer
    closed (the application checks and says so in its last log line)."""

    def test_shutdown(self):
        server = Server("--drain-timeout", "1").start()
        try:
            clients = []
            for _ in range(3):
                c = H2Client(server)
                c.request("/hold?keep=1")
                clients.append(c)
            c = H2Client(server)
            c.request("/hold")  # dropped by the application right after its onClose
            clients.append(c)
            wait_stats(server, lambda s: s["held"] == 4, "four held handles")
            code = server.stop()
            log = server.log_text()
            self.assertEqual(code, 0, log[-3000:])
            self.assertIn("after shutdown: 3 handle(s) held, late ops closed=12 other=0", log)
            for c in clients:
                c.sock.close()
        finally:
            server.kill()


class ThreadPoolAnswers(AppCase):
    """10,000 requests answered from the application's thread pool while
    clients reset streams and drop connections at random: every counter back
    to idle, every answer either delivered or told closed."""

    REQUESTS = 10_000
    CONNECTIONS = 4

    def run_client(self, n, seed, results):
        rnd = random.Random(seed)
        sent = 0
        while sent < n:
            client = H2Client(self.server)
            open_ids = []
            # Up to 200 requests per connection, 40 in flight.
            batch = min(200, n - sent)
            done = 0
            issued = 0
            drop_at = rnd.randrange(batch) if rnd.random() < 0.15 else None
            try:
                while done < batch:
                    while issued < batch and len(open_ids) < 40:
                        sid = client.request("/late?ms=%d" % rnd.randrange(3))
                        open_ids.append(sid)
                        issued += 1
                        if rnd.random() < 0.1:
                            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                            client.flush()
                            results["reset"] += 1
                            open_ids.remove(sid)
                            done += 1
                    if drop_at is not None and issued >= drop_at:
                        results["dropped_connections"] += 1
                        results["abandoned"] += batch - done
                        if rnd.random() < 0.5:
                            rst_close(client.sock)
                        else:
                            client.sock.close()
                        break
                    client.pump(lambda c: any(c.responses[s]["ended"] or c.responses[s]["reset"]
                                              is not None for s in open_ids), timeout=30)
                    for s in list(open_ids):
                        r = client.responses[s]
                        if r["ended"] or r["reset"] is not None:
                            open_ids.remove(s)
                            done += 1
                            if r["status"] == 200 and bytes(r["body"]) == b"late answer\n":
                                results["ok"] += 1
                            elif r["reset"] is None:
                                results["bad"] += 1
                else:
                    client.close()
            except Exception as e:  # noqa: BLE001 - reported by the test thread
                results["errors"].append(repr(e))
                return
            sent += batch

    def test_ten_thousand_with_resets_and_disconnects(self):
        results = {"ok": 0, "reset": 0, "bad": 0, "dropped_connections": 0, "abandoned": 0,
                   "errors": []}
        per = self.REQUESTS // self.CONNECTIONS
        threads = [threading.Thread(target=self.run_client, args=(per, 1000 + i, results))
                   for i in range(self.CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
            self.assertFalse(t.is_alive(), "client thread did not finish within 300 s")
        self.assertEqual(results["errors"], [])
        self.assertEqual(results["bad"], 0, results)
        self.assertGreater(results["ok"], self.REQUESTS // 2, results)
        self.assertGreater(results["reset"], 0, results)
        idle_app(self.server)
        s = stats(self.server)
        # Every answer the clients read was one the pool delivered; the rest
        # found their stream gone and were told so.
        self.assertGreaterEqual(s["late_answered"], results["ok"], (s, results))
        self.assertGreater(s["late_refused"] + results["reset"], 0, (s, results))


class ProducerAgainstNonReader(AppCase):
    """A producer that writes as fast as write() allows, to a client that
    never reads: queued bytes stay under the bound, the process does not
    grow, and the write timeout ends it."""

    def run_producer(self, path):
        before_done = stats(self.server)["producers_done"]
        before_wt = self.server.closed("write_timeout")
        sock = connect(self.server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client = H2Client(self.server, sock=sock,
                          settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1},
                          window=2 ** 31 - 1 - 65535)
        client.request(path)
        # Never read again. Sample the figures while the producer pushes.
        wait_stats(self.server, lambda s: s["producer_would_block"] > 0, "the bound to bite")
        rss = []
        queued = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            m = self.server.metrics()
            queued.append(m["h2loop_app_queued_bytes"])
            rss.append(self.server.rss_kib())
            self.assertLessEqual(m["h2loop_output_buffered_bytes"], 2 * BOUND + 16 * 1024)
            time.sleep(0.1)
        self.assertLessEqual(max(queued), BOUND + 16 * 1024, queued)
        self.assertLess(max(rss) - min(rss), 8 * 1024, "RSS grew: %s KiB" % rss)
        m = self.server.wait_for(lambda m: self.server.closed("write_timeout", m) > before_wt,
                                 timeout=20, what="the write timeout")
        wait_stats(self.server, lambda s: s["producers_done"] == before_done + 1,
                   "the producer told closed")
        sock.close()
        return m

    def test_loop_producer(self):
        self.run_producer("/produce")

    def test_thread_producer(self):
        self.run_producer("/produce?thread=1")


class WritableWaitsForRoom(AppCase):
    """onWritable fires when the refused write can be taken, not merely when
    the queue fell below a quarter of the bound: with a client that stalls
    after 32 KiB, a 60 KiB retry must not be called back in a loop."""

    def test_no_spin_while_the_client_stalls(self):
        before = stats(self.server)["writable_calls"]
        client = H2Client(self.server,
                          settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 32 * 1024})
        sid = client.request("/big-writes")
        client.pump(lambda c: len(c.responses[sid]["body"]) >= 32 * 1024, ack_data=False)
        cpu0 = self.server.cpu_seconds()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the stall, watched from outside
            time.sleep(0.1)
        calls = stats(self.server)["writable_calls"] - before
        self.assertLessEqual(calls, 1, "onWritable called %d times during the stall" % calls)
        self.assertLess(self.server.cpu_seconds() - cpu0, 0.5)
        # Reading again lets the rest through, intact.
        client.conn.acknowledge_received_data(len(client.responses[sid]["body"]), sid)
        client.flush()
        client.pump(lambda c: c.responses[sid]["ended"], timeout=30)
        self.assertEqual(bytes(client.responses[sid]["body"]), b"a" * 40960 + b"b" * 61440)
        client.close()


class CallbackEndsItsOwnExchange(AppCase):
    def test_body_callback_resets(self):
        before = stats(self.server)
        client = H2Client(self.server)
        sid = client.request("/upload-reset", method="POST", end_stream=False)
        client.conn.send_data(sid, b"x" * 1000, end_stream=False)
        client.flush()
        client.pump(lambda c: c.responses[sid]["reset"] is not None, timeout=20)
        s = wait_stats(self.server, lambda s: s["late_closed"] == before["late_closed"] + 1,
                       "the write after the reset")
        self.assertEqual(s["late_other"], 0)
        self.assertEqual(client.get("/late")["status"], 200)  # the connection goes on
        client.close()


class StartedElsewhere(AppCase):
    def test_loop_writes_follow_a_start_from_another_thread(self):
        client = H2Client(self.server)
        r = client.get("/start-elsewhere")
        self.assertEqual(r["status"], 200)
        self.assertEqual(bytes(r["body"]), b"written on the loop\n")
        self.assertEqual(stats(self.server)["late_other"], 0)
        client.close()


class PausedUpload(AppCase):
    """An upload whose handler pauses consumption: the client is held by
    flow control (the server returns no window), and resuming from another
    thread finishes it intact."""

    def test_pause_then_resume(self):
        payload = os.urandom(3 * 1024 * 1024 + 123)
        client = H2Client(self.server)
        # The server's SETTINGS (its stream window) first.
        self.assertEqual(client.get("/stats")["status"], 200)
        sid = client.request("/upload?id=p1", method="POST", end_stream=False)
        sent = 0

        def send_what_window_allows():
            nonlocal sent
            while sent < len(payload):
                room = min(client.conn.local_flow_control_window(sid),
                           client.conn.max_outbound_frame_size)
                if room <= 0:
                    return
                chunk = payload[sent:sent + room]
                client.conn.send_data(sid, chunk, end_stream=sent + len(chunk) == len(payload))
                sent += len(chunk)
                client.flush()

        send_what_window_allows()
        stalled_at = sent
        self.assertLess(stalled_at, len(payload))
        # Paused: no WINDOW_UPDATE for the stream may come back. Bounded wait
        # for the one that must not arrive.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = client.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except Exception:  # noqa: BLE001 - ssl want-read as timeout
                continue
            if not data:
                break
            for ev in client.conn.receive_data(data):
                client.handle(ev, True)
            client.flush()
        self.assertEqual(client.conn.local_flow_control_window(sid), 0,
                         "the server returned window while the upload was paused")
        self.assertLessEqual(stalled_at, 512 * 1024, "held more than one stream window")
        # Resume from the application's thread pool.
        r = self.server.curl("/resume?id=p1", timeout=10)
        self.assertEqual(r.stdout.strip(), b"ok")
        while sent < len(payload):
            client.pump(lambda c: c.conn.local_flow_control_window(sid) > 0 or
                        c.responses[sid]["ended"], timeout=30)
            send_what_window_allows()
        client.pump(lambda c: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None,
                    timeout=30)
        h = 0xcbf29ce484222325
        for b in payload:
            h ^= b
            h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        self.assertEqual(client.responses[sid]["status"], 200)
        self.assertEqual(bytes(client.responses[sid]["body"]).decode().split(),
                         [str(len(payload)), "%016x" % h])
        client.close()


class RequestView(AppCase):
    def test_request_facts(self):
        port = self.server.port
        url = "%s://localhost:%d/whoami?x=1&y=2" % (self.server.scheme, port)
        r = subprocess.run(["curl", "-sS", "--max-time", "10"] + self.server.curl_args() +
                           ["--connect-to", "localhost:%d:127.0.0.1:%d" % (port, port),
                            "-H", "x-probe: found", "-w", "\nlocal_port %{local_port}\n", url],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        facts = dict(line.split(" ", 1) if " " in line else (line, "")
                     for line in r.stdout.decode().splitlines() if line)
        self.assertEqual(facts["method"], "GET")
        self.assertEqual(facts["path"], "/whoami")
        self.assertEqual(facts["query"], "x=1&y=2")
        self.assertEqual(facts["authority"], "localhost:%d" % port)
        self.assertEqual(facts["scheme"], self.server.scheme)
        self.assertEqual(facts["peer"], "127.0.0.1:%s" % facts["local_port"])
        self.assertEqual(facts["x-probe"], "found")  # asked for as X-Probe
        if self.server.tls:
            self.assertEqual((facts["tls"], facts["alpn"], facts["sni"]), ("yes", "h2", "localhost"))
        else:
            self.assertEqual((facts["tls"], facts["alpn"], facts["sni"]), ("no", "", ""))


class Routing(AppCase):
    def test_files_below_a_prefix_404_and_405(self):
        name = sorted(f for f in os.listdir(self.server.root)
                      if os.path.isfile(os.path.join(self.server.root, f)))[0]
        with open(os.path.join(self.server.root, name), "rb") as f:
            want = f.read()
        self.assertEqual(self.server.curl("/static/" + name).stdout, want)
        self.assertEqual(self.server.curl("/" + name).stdout, want)
        code = lambda path, *extra: self.server.curl(path, "-o", "/dev/null", "-w", "%{http_code}",
                                                     *extra).stdout
        self.assertEqual(code("/static/no-such-file"), b"404")
        self.assertEqual(code("/static/../" + name, "--path-as-is"), b"400")
        # /hold takes GET only: another method gets 405 with allow (and OPTIONS).
        r = self.server.curl("/hold", "-X", "DELETE", "-D", "-", "-o", "/dev/null")
        self.assertIn(b" 405", r.stdout.splitlines()[0])
        self.assertIn(b"allow: get, options\r\n", r.stdout.lower())


class UnansweredDroppedThrown(AppCase):
    def test_never_answered_times_out(self):
        before = stats(self.server)
        r = self.server.curl("/never", "-w", "%{http_code}", "-o", "/dev/null", timeout=10)
        self.assertEqual(r.stdout, b"504")
        wait_stats(self.server, lambda s: s["close_response_timeout"] ==
                   before["close_response_timeout"] + 1 and s["held"] == before["held"],
                   "onClose(timeout) and the handle dropped")
        self.assertGreaterEqual(self.server.metrics()["h2loop_response_timeouts_total"], 1)

    def test_dropped_handle_is_500(self):
        r = self.server.curl("/drop", "-w", "%{http_code}", "-o", "/dev/null", timeout=10)
        self.assertEqual(r.stdout, b"500")

    def test_throw_is_500_and_the_connection_lives_on(self):
        client = H2Client(self.server)
        slow = client.request("/late?ms=200")
        bad = client.request("/throw")
        started = client.request("/throw-started")
        client.pump(lambda c: all(c.responses[s]["ended"] or c.responses[s]["reset"] is not None
                                  for s in (slow, bad, started)), timeout=20)
        self.assertEqual(client.responses[bad]["status"], 500)
        self.assertIsNotNone(client.responses[started]["reset"], "a throw after start resets")
        self.assertEqual(client.responses[slow]["status"], 200)
        self.assertEqual(client.get("/late")["status"], 200)  # same connection, still serving
        client.close()
        self.assertIn("handler threw: handler failure", self.server.log_text())


if __name__ == "__main__":
    harness.main()
