#!/usr/bin/python3
"""Static files as a real browser gets them: Debian's headless Chromium
(devtools.py) loads a page from h2loop that

  (a) fetches a text file: the browser offers `gzip, deflate, br`, h2loop
      answers br (compressed on the fly), the browser decodes it to the
      file's bytes;
  (b) fetches byte ranges of a binary file (206, content-range, the bytes),
      and a Range of the text file, for which the browser offers only
      `identity` (Fetch standard) and gets a plain 206;
  (c) plays an <audio> element whose WAV (written here by python's `wave`)
      the browser's media stack fetches by ranges (`Range: bytes=0-` and a
      206), and reads its duration.

The page reports what it saw (fetch headers, the performance API's encoded
and decoded sizes) and DevTools Network events say what went over the wire
(the request's Range and Accept-Encoding, the response's status, coding and
protocol). One browser launch per case: over HTTP/2, and over HTTP/1.1
(--disable-http2). TLS only: browsers speak HTTP/2 over TLS only, and in
the h2c combos the cases skip (as tests/examples/test_browser.py does).

This lives in tests/integration, not tests/examples: it serves files with
the h2loop binary and its harness (Server, metrics, idle checks), which
the integration suites run on every backend; the examples' harness starts
example programs instead."""

import json
import math
import os
import shutil
import struct
import sys
import tempfile
import unittest
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from devtools import CHROMIUM, DevTools  # noqa: E402
from harness import Server, ServerTestCase  # noqa: E402

BROWSER_TIMEOUT = 90  # seconds: a launch takes ~3 s on two cores; asan serves slower
WAV_SECONDS = 2
WAV_RATE = 8000

TEXT = b"".join(b"line %d: a text file the browser gets compressed\n" % i for i in range(600))
BINARY = bytes((i * 131 + 7) % 256 for i in range(65536))

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>static selftest</title>
<audio id="tone" preload="auto"></audio>
<script>
async function run() {
  const out = {};
  // (a) compression: the browser sends its own Accept-Encoding.
  const t = await fetch("/text.txt", {cache: "no-store"});
  out.text = {status: t.status, encoding: t.headers.get("content-encoding"),
              vary: t.headers.get("vary"), body: await t.text()};
  const e = performance.getEntriesByName(new URL("/text.txt", location).href).pop();
  out.text.encoded = e.encodedBodySize;
  out.text.decoded = e.decodedBodySize;
  out.text.protocol = e.nextHopProtocol;
  // (b) ranges.
  out.ranges = [];
  for (const range of ["bytes=100-199", "bytes=-10", "bytes=65530-"]) {
    const r = await fetch("/range.bin", {cache: "no-store", headers: {Range: range}});
    const b = new Uint8Array(await r.arrayBuffer());
    out.ranges.push({range, status: r.status, content_range: r.headers.get("content-range"),
                     bytes: Array.from(b)});
  }
  const tr = await fetch("/text.txt", {cache: "no-store", headers: {Range: "bytes=0-9"}});
  out.text_range = {status: tr.status, encoding: tr.headers.get("content-encoding"),
                    length: (await tr.text()).length};
  // (c) media by ranges.
  const audio = document.getElementById("tone");
  out.audio = await new Promise((resolve) => {
    audio.addEventListener("loadedmetadata", () => resolve({duration: audio.duration}));
    audio.addEventListener("error", () => resolve({error: audio.error && audio.error.code}));
    audio.src = "/tone.wav";
    audio.load();
  });
  return out;
}
window.selftest = run().catch((e) => ({exception: String(e)}));
</script>
"""


def make_root():
    root = tempfile.mkdtemp(prefix="browser-static-", dir=harness.workdir())
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(PAGE)
    with open(os.path.join(root, "text.txt"), "wb") as f:
        f.write(TEXT)
    with open(os.path.join(root, "range.bin"), "wb") as f:
        f.write(BINARY)
    with wave.open(os.path.join(root, "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / WAV_RATE)))
            for i in range(WAV_RATE * WAV_SECONDS)))
    return root


@unittest.skipUnless(harness.TLS, "browsers speak HTTP/2 over TLS only (no h2c): the browser "
                     "cases run in the tls combos")
class BrowserStatic(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.root = make_root()
        cls.server = Server(root=cls.root).start()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.root, True)

    def setUp(self):
        if not shutil.which(CHROMIUM):
            self.fail("no %s: install Debian's chromium package (./dev.sh deps)" % CHROMIUM)

    def run_page(self, *flags):
        """One browser: loads the page, awaits its result. Returns (result,
        {url path: [(request headers, response)]} from DevTools)."""
        browser = DevTools("--autoplay-policy=no-user-gesture-required", *flags)
        try:
            session = browser.open_page(self.server.url("/"))
            res = browser.command("Runtime.evaluate",
                                  {"expression": "new Promise((resolve) => { const wait = () => "
                                   "window.selftest ? window.selftest.then((r) => "
                                   "resolve(JSON.stringify(r))) : setTimeout(wait, 10); "
                                   "wait(); })",
                                   "awaitPromise": True, "returnByValue": True},
                                  session=session, timeout=BROWSER_TIMEOUT)
            self.assertNotIn("exceptionDetails", res, res)
            result = json.loads(res["result"]["value"])

            def finished(events):
                # Every request the page made has its response, and the
                # media request its extra-info (the headers really sent).
                sent = {e["params"]["requestId"] for e in events
                        if e.get("method") == "Network.requestWillBeSent"}
                got = {e["params"]["requestId"] for e in events
                       if e.get("method") == "Network.responseReceived"}
                extra = {e["params"]["requestId"] for e in events
                         if e.get("method") == "Network.requestWillBeSentExtraInfo"}
                return sent and sent <= got and sent <= extra
            events = browser.wait_events(finished, "the page's responses", timeout=30)
        finally:
            browser.close()
        wire = {}
        extra = {e["params"]["requestId"]: e["params"]["headers"] for e in events
                 if e.get("method") == "Network.requestWillBeSentExtraInfo"}
        for e in events:
            if e.get("method") != "Network.responseReceived":
                continue
            p = e["params"]
            path = "/" + p["response"]["url"].split("/", 3)[3]
            headers = {k.lower(): v for k, v in extra.get(p["requestId"], {}).items()}
            response = dict(p["response"])
            response["headers"] = {k.lower(): v for k, v in response["headers"].items()}
            wire.setdefault(path, []).append((headers, response))
        return result, wire

    def check(self, protocol, result, wire):
        self.assertNotIn("exception", result, result)
        # (a) the text came br-encoded and the browser decoded it to the file.
        t = result["text"]
        self.assertEqual(t["status"], 200, t["status"])
        self.assertEqual(t["encoding"], "br")
        self.assertEqual(t["vary"], "accept-encoding")
        self.assertEqual(t["body"].encode(), TEXT)
        self.assertEqual(t["decoded"], len(TEXT))
        self.assertLess(t["encoded"], len(TEXT) // 4, t)
        self.assertEqual(t["protocol"], protocol)
        sent, response = wire["/text.txt"][0]
        self.assertIn("br", sent.get("accept-encoding", ""), sent)
        self.assertEqual(response["headers"].get("content-encoding"), "br")
        self.assertEqual(response["protocol"], protocol)
        # (b) ranges of the binary file, and a Range ignored on the compressed text.
        want = {"bytes=100-199": (100, 199), "bytes=-10": (65526, 65535),
                "bytes=65530-": (65530, 65535)}
        for r in result["ranges"]:
            first, last = want[r["range"]]
            self.assertEqual(r["status"], 206, r["range"])
            self.assertEqual(r["content_range"], "bytes %d-%d/65536" % (first, last))
            self.assertEqual(bytes(r["bytes"]), BINARY[first:last + 1], r["range"])
        ranged = [s.get("range") for s, _ in wire["/range.bin"]]
        self.assertEqual(sorted(ranged), sorted(want), ranged)
        # The Fetch standard: a request with Range says `Accept-Encoding: identity`,
        # so the text's range is a plain 206 (h2loop never ranges a compressed answer).
        self.assertEqual(result["text_range"], {"status": 206, "encoding": None, "length": 10})
        sent, response = wire["/text.txt"][1]
        self.assertEqual((sent.get("range"), sent.get("accept-encoding")), ("bytes=0-9", "identity"))
        self.assertEqual(response["headers"].get("content-range"), "bytes 0-9/%d" % len(TEXT))
        # (c) the media element fetched by ranges and decoded the WAV.
        self.assertNotIn("error", result["audio"], result["audio"])
        self.assertAlmostEqual(result["audio"]["duration"], WAV_SECONDS, places=2)
        media = wire["/tone.wav"]
        self.assertTrue(media, wire.keys())
        for sent, response in media:
            self.assertTrue(sent.get("range", "").startswith("bytes="), sent)
            self.assertEqual(response["status"], 206, response["headers"])
            self.assertTrue(response["headers"]["content-range"].startswith("bytes "))
            self.assertIsNone(response["headers"].get("content-encoding"))
            self.assertEqual(response["protocol"], protocol)

    def test_h2(self):
        result, wire = self.run_page()
        self.check("h2", result, wire)

    def test_http1(self):
        result, wire = self.run_page("--disable-http2")
        self.check("http/1.1", result, wire)


if __name__ == "__main__":
    harness.main()
