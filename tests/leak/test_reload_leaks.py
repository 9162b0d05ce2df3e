#!/usr/bin/python3
"""Scenario 11: 100 reloads (SIGHUP) under load. Each reload makes a new
configuration generation (and, over TLS, a new SSL_CTX from the certificate
files, alternating between two certificates); connections keep the one they
were accepted under. Afterwards every counter and descriptor is back to idle,
only the current generation is alive (every older one was freed with its last
connection), and RSS has not grown with the reloads."""

import os
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from configlib import ConfigServer, base_config, live_certificates  # noqa: E402
from harness import TLS  # noqa: E402

RELOADS = 100
WARMUP = 10
# RSS may move this much over 100 reloads (allocator noise); a generation
# kept alive per reload costs an SSL_CTX with its certificate and key.
RSS_SLACK_KIB = 3 * 1024


class ReloadUnderLoad(unittest.TestCase):
    def test_100_reloads_under_load_leave_nothing_behind(self):
        d = tempfile.mkdtemp(dir=harness.workdir())
        if TLS:
            _, live, swap = live_certificates(d)
            body = base_config(d, cert=live[0], key=live[1])
        else:
            body = base_config(d)
        s = ConfigServer(d, body).start()
        try:
            failures = []
            stop = threading.Event()

            def load():
                # Short h2load runs back to back: connections are accepted
                # under every generation and end while later ones are made.
                while not stop.is_set():
                    r = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "4", "-T", "30",
                                        "-N", "30", s.url("/index.html")],
                                       capture_output=True, text=True, timeout=120)
                    if r.returncode != 0 or "200 succeeded, 0 failed, 0 errored" not in r.stdout:
                        failures.append(r.stdout + r.stderr)

            def reloads(n, start):
                for i in range(start, start + n):
                    if TLS:
                        swap((i + 1) % 2)
                    s.reload()

            t = threading.Thread(target=load)
            t.start()
            try:
                reloads(WARMUP, 0)
                stop.set()
                t.join(120)
                s.wait_idle()
                rss0 = s.rss_kib()
                stop.clear()
                t = threading.Thread(target=load)
                t.start()
                reloads(RELOADS, WARMUP)
            finally:
                stop.set()
                t.join(120)
            self.assertEqual(failures, [])
            m = s.wait_idle()
            self.assertEqual(m['h2loop_config_reloads_total{result="ok"}'], WARMUP + RELOADS)
            self.assertEqual(m["h2loop_config_generations"], 1,
                             "older configurations outlived their connections")
            grown = s.rss_kib() - rss0
            if not harness.SANITIZED:
                self.assertLess(grown, RSS_SLACK_KIB,
                                "RSS grew by %d KiB over %d reloads" % (grown, RELOADS))
        finally:
            code = s.stop()
        self.assertEqual(code, 0, s.log_text()[-3000:])


if __name__ == "__main__":
    harness.main()
