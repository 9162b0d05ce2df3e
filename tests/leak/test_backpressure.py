#!/usr/bin/python3
"""Scenario 4: clients that open many streams on 10 MiB files with a huge
flow-control window and then stop reading. Output per connection stays under
the high watermark plus one frame (plus, over TLS, one flight of encrypted
records not yet taken by the socket), server memory stays bounded, the write
timeout ends them, and a well-behaved client is served meanwhile.

The watermark is set to a quarter of the kernel's largest TCP send buffer
(net.ipv4.tcp_wmem), not left at its 64 KiB default. With the default, a
stalled loopback connection never fills the server's own buffer: each write
of at most 64 KiB + one frame goes into the kernel whole (the kernel's send
buffer grows to 4 MiB), and the kernel stops reporting writability once less
than a third of it is free, before it refuses a write; the connection then
waits with nothing in its buffer (measured: Send-Q 3.0-3.5 MB, the gauge at
0 in 5,000 samples over 3 s), and any bound on the buffer holds trivially.
With a quarter of the kernel's buffer per write, one round of writes fills
the kernel, a write is refused, and what the server holds is its own
buffer: the bound is then the watermark's, and the gauge must be above zero.

h2loop_output_buffered_bytes is summed over the server. The per-connection
bound is checked by stalling the connections one at a time: a stalled
connection's buffer no longer changes (no write progress, nothing produced
above the watermark), so each step of the gauge is one connection's share."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from leaklib import MetricsConn, unread_bytes  # noqa: E402
from harness import H2Client, ServerTestCase  # noqa: E402


def _tcp_wmem_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


HIGH_WATERMARK = max(64 * 1024, _tcp_wmem_max() // 4)
# One more frame may follow the crossing of the high watermark (see
# h2::OutputBuffer): 9-byte header + 16 KiB payload + padding headroom.
ONE_FRAME = 9 + 16384 + 256
# Over TLS, one flight of encrypted records the socket has not taken yet may
# wait in the transport on top (TlsTransport::kFlightLimit: four records).
TLS_FLIGHT = 4 * (16384 + 256) if harness.TRANSPORT == "tls" else 0
BOUND = HIGH_WATERMARK + ONE_FRAME + TLS_FLIGHT
WRITE_TIMEOUT = 3
STALLED = 4
STREAMS = 20
BUFFERED = "h2loop_output_buffered_bytes"
HUGE = {harness.h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1}


def stalled_client(server):
    """A client with huge windows, STREAMS requests for 10 MiB, that never reads."""
    c = H2Client(server, settings=HUGE, window=(1 << 31) - 1 - 65535)
    for _ in range(STREAMS):
        c.request("/10m.bin")
    return c


class PerConnectionBound(ServerTestCase):
    """Connections stalled one after another (no write timeout within the
    test): each step of the server-wide gauge is one connection's buffer."""
    server_args = ("--write-timeout", "120", "--idle-timeout", "120",
                   "--output-high-watermark", str(HIGH_WATERMARK))

    def setUp(self):
        self.mc = MetricsConn(self.server)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            harness.rst_close(c.sock)
        self.mc.close()
        super().tearDown()

    def wait_stable(self, c, level, timeout=15):
        """Waits until the gauge has left `level` and, like the client's
        unread bytes, stayed the same over 3 samples >= 0.1 s apart."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            m = self.mc.get()
            sample = (m[BUFFERED], unread_bytes(c.sock))
            if sample[0] != level and seen and sample == seen[-1][1]:
                seen.append((time.monotonic(), sample))
                if len(seen) >= 3 and seen[-1][0] - seen[0][0] >= 0.2:
                    return m
            else:
                seen = [(time.monotonic(), sample)]
            self.assertLess(time.monotonic(), deadline,
                            "connection %d never stalled with output in the server's buffer: "
                            "gauge %d (before it %d), unread %d"
                            % (len(self.clients), sample[0], level, sample[1]))
            time.sleep(0.05)  # sampling cadence

    def test_each_stalled_connection_holds_at_most_its_bound(self):
        level = self.mc.get()[BUFFERED]
        self.assertEqual(level, 0)
        shares = []
        for _ in range(STALLED):
            c = stalled_client(self.server)
            self.clients.append(c)
            m = self.wait_stable(c, level)
            self.assertEqual(m["h2loop_connections_active"], len(self.clients) + 1, m)
            share = m[BUFFERED] - level
            shares.append(share)
            level = m[BUFFERED]
            # Above zero: the server's own buffer holds the stalled output...
            self.assertGreater(share, 0, "a stalled connection added nothing to %s (shares %s)"
                               % (BUFFERED, shares))
            # ... and at most one connection's bound.
            self.assertLessEqual(share, BOUND, "one connection buffered beyond its bound "
                                 "(shares %s, bound %d)" % (shares, BOUND))
            self.assertGreater(unread_bytes(c.sock), 0, "a stalled client got nothing at all")
        print("\nbackpressure: watermark %d, per-connection shares %s (bound %d)"
              % (HIGH_WATERMARK, shares, BOUND), file=sys.stderr)
        self.assertLessEqual(level, STALLED * BOUND)


class StalledReaders(ServerTestCase):
    server_args = ("--write-timeout", str(WRITE_TIMEOUT), "--idle-timeout", "60",
                   "--output-high-watermark", str(HIGH_WATERMARK))

    def test_stalled_readers_are_bounded_then_timed_out(self):
        s = self.server
        mc = MetricsConn(s)
        before = s.closed("write_timeout", mc.get())
        rss_before = s.rss_kib()
        clients = [stalled_client(s) for _ in range(STALLED)]
        # Nobody reads. The server fills the kernel's socket buffers (up to
        # --kernel-unsent-limit unsent), then its own output buffers up to the
        # watermark; the rest waits inside nghttp2.
        mc.wait_for(lambda m: m["h2loop_connections_active"] == STALLED + 1 and
                    m["h2loop_streams_active"] >= STALLED + 1,
                    timeout=10, what="stalled connections")
        peak = 0
        positive = 0
        samples = 0
        rss_peak = 0
        last_served = 0
        # Sample while they stay stalled, until the write timeout ends them.
        # The loop ends on the closes, not on a time budget; the wait is
        # bounded generously for a loaded machine.
        deadline = time.monotonic() + WRITE_TIMEOUT + 30
        while True:
            m = mc.get()
            samples += 1
            peak = max(peak, m[BUFFERED])
            positive += m[BUFFERED] > 0
            rss_peak = max(rss_peak, s.rss_kib())
            if time.monotonic() - last_served > 0.5:
                # Meanwhile a well-behaved client is served normally.
                r = s.curl("/index.html", "-o", "/dev/null", "-w", "%{http_code}", timeout=10)
                self.assertEqual(r.stdout, b"200")
                last_served = time.monotonic()
            if s.closed("write_timeout", m) >= before + STALLED:
                break
            self.assertLess(time.monotonic(), deadline,
                            "stalled readers were not closed by the write timeout: %s" % m)
            time.sleep(0.01)  # sampling cadence
        self.assertLessEqual(peak, STALLED * BOUND,
                             "output buffered beyond the watermark bound")
        # The stalled output was held in the server's buffer (a gauge stuck
        # at zero would pass the bound above).
        self.assertGreater(peak, 0, "%s never rose above zero in %d samples of the stall"
                           % (BUFFERED, samples))
        # The responses did flow before they stalled.
        for c in clients:
            self.assertGreater(unread_bytes(c.sock), 0, "a stalled client got nothing at all")
        growth = rss_peak - rss_before
        print("\nbackpressure: %d stalled connections x %d streams of 10 MiB: peak buffered %d B "
              "(bound %d; above zero in %d of %d samples), RSS %d KiB -> peak %d KiB (+%d KiB)"
              % (STALLED, STREAMS, peak, STALLED * BOUND, positive, samples, rss_before,
                 rss_peak, growth), file=sys.stderr)
        # 800 MiB were requested; the server may hold buffers, not files.
        if not harness.SANITIZED:
            self.assertLess(growth, 32 * 1024, "server RSS grew without bound")
        for c in clients:
            c.sock.close()
        mc.close()

    def test_slow_reader_gets_everything_in_the_end(self):
        c = H2Client(self.server)
        sid = c.request("/10m.bin")
        # Read in small steps (the default 64 KiB window keeps it slow).
        c.pump(lambda cl: cl.responses[sid]["ended"], timeout=60)
        self.assertEqual(len(c.responses[sid]["body"]), 10 << 20)
        c.close()


if __name__ == "__main__":
    harness.main()
