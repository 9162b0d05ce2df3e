#!/usr/bin/python3
"""Scenario 4: clients that open many streams on 10 MiB files with a huge
flow-control window and then stop reading. Output per connection stays under
the high watermark plus one frame (plus, over TLS, one flight of encrypted
records not yet taken by the socket), server memory stays bounded, the write
timeout ends them, and a well-behaved client is served meanwhile."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from leaklib import unread_bytes  # noqa: E402
from harness import H2Client, ServerTestCase  # noqa: E402

HIGH_WATERMARK = 64 * 1024
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


class StalledReaders(ServerTestCase):
    server_args = ("--write-timeout", str(WRITE_TIMEOUT), "--idle-timeout", "60")

    def test_stalled_readers_are_bounded_then_timed_out(self):
        s = self.server
        before = s.closed("write_timeout")
        rss_before = s.rss_kib()
        huge = {harness.h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1}
        clients = []
        for _ in range(STALLED):
            c = H2Client(s, settings=huge, window=(1 << 31) - 1 - 65535)
            for _ in range(STREAMS):
                c.request("/10m.bin")
            clients.append(c)
        # Nobody reads. The server fills the kernel's socket buffers, then its
        # own output buffers up to the watermark (with TLS; over h2c the
        # kernel may take the last bytes without reporting writability, and
        # the rest stays inside nghttp2), and stops reading further HEADERS.
        m = s.wait_for(lambda m: m["h2loop_connections_active"] == STALLED + 1 and
                       m["h2loop_streams_active"] >= STALLED + 1,
                       timeout=10, what="stalled connections")
        peak = 0
        rss_peak = 0
        # Sample while they stay stalled, until the write timeout ends them.
        deadline = time.monotonic() + WRITE_TIMEOUT + 10
        while time.monotonic() < deadline:
            m = s.metrics()
            peak = max(peak, m["h2loop_output_buffered_bytes"])
            rss_peak = max(rss_peak, s.rss_kib())
            # Meanwhile a well-behaved client is served normally.
            r = s.curl("/index.html", "-o", "/dev/null", "-w", "%{http_code}", timeout=10)
            self.assertEqual(r.stdout, b"200")
            if s.closed("write_timeout", m) >= before + STALLED:
                break
        self.assertLessEqual(peak, STALLED * BOUND,
                             "output buffered beyond the watermark bound")
        # The responses did flow before they stalled: every client has bytes
        # waiting unread in its socket (how much the server still holds in
        # its own buffer at any sample depends on where the last write
        # stopped, anywhere from zero to the bound).
        for c in clients:
            self.assertGreater(unread_bytes(c.sock), 0, "a stalled client got nothing at all")
        self.assertGreaterEqual(s.closed("write_timeout"), before + STALLED,
                                "stalled readers were not closed by the write timeout")
        growth = rss_peak - rss_before
        print("\nbackpressure: %d stalled connections x %d streams of 10 MiB: peak buffered %d B "
              "(bound %d), RSS %d KiB -> peak %d KiB (+%d KiB)"
              % (STALLED, STREAMS, peak, STALLED * BOUND, rss_before,
                 rss_peak, growth), file=sys.stderr)
        # 800 MiB were requested; the server may hold buffers, not files.
        if not harness.SANITIZED:
            self.assertLess(growth, 32 * 1024, "server RSS grew without bound")
        for c in clients:
            c.sock.close()

    def test_slow_reader_gets_everything_in_the_end(self):
        c = H2Client(self.server)
        sid = c.request("/10m.bin")
        # Read in small steps (the default 64 KiB window keeps it slow).
        c.pump(lambda cl: cl.responses[sid]["ended"], timeout=60)
        self.assertEqual(len(c.responses[sid]["body"]), 10 << 20)
        c.close()


if __name__ == "__main__":
    harness.main()
