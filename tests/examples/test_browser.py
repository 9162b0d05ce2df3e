#!/usr/bin/python3
"""The websocket_chat example (examples/websocket_chat.cc) in a real browser:
Debian's headless Chromium (package `chromium`), driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: no port to find, no Python
package beyond the standard library).

One browser launch per case, each against a fresh example process:

  h2        the page, /app.js and /style.css come over HTTP/2, and the
            WebSocket is opened on that connection by RFC 8441 (extended
            CONNECT; the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL)
  http/1.1  --disable-http2: the same page over HTTP/1.1, the WebSocket by
            an RFC 6455 Upgrade

The page's ?selftest=N sends N chat messages once its WebSocket is open,
waits for all of them to come back (the room broadcasts to the sender too)
and writes the outcome, with the performance API's nextHopProtocol of the
navigation and of every resource, as JSON into <pre id="result"
data-done="1">. The test waits for that element (a promise evaluated in the
page, resolved by a MutationObserver: no sleeps), reads it, checks what the
browser's own DevTools events say about the WebSocket handshake (200 on an
HTTP/2 stream, 101 for an Upgrade), and what the server says (/stats: the
socket, open, by protocol). After the browser quits, the server must see
the WebSocket end, and the browser's net log (--log-net-log, written as it
quits) must show which HTTP/2 session carried what: in the h2 case one
session with the page's GET, the SETTINGS_ENABLE_CONNECT_PROTOCOL it
received, and the extended CONNECT (:protocol websocket) for /chat; in the
http/1.1 case no HTTP/2 session at all.

TLS only: browsers speak HTTP/2 over TLS only (no h2c), and in the h2c
variants the page would come over HTTP/1.1 whatever the case asked for; the
cases skip there. Same environment as test_examples.py (H2LOOP_EXAMPLES_DIR,
H2LOOP_LOOP, H2LOOP_TRANSPORT). Every wait is bounded.
"""

import json
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_examples as examples  # noqa: E402  (also sets up the harness import path)

harness = examples.harness
from devtools import CHROMIUM, DevTools  # noqa: E402  (tests/integration/devtools.py)
# Messages the page sends (and must get back).
SELFTEST_MESSAGES = 5
# Seconds: a launch takes ~3 s on two cores; the asan build serves slower.
BROWSER_TIMEOUT = 90


def http2_sessions(netlog):
    """From a Chromium net log: {session id: {"settings": {name: value},
    "streams": [(method, path, protocol or None)]}} of every HTTP/2 session."""
    try:
        with open(netlog) as f:
            log = json.load(f)
    except (OSError, ValueError) as e:
        raise AssertionError("no complete net log at %s: %s" % (netlog, e))
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    sessions = {}
    for ev in log["events"]:
        kind = types.get(ev["type"], "")
        if not kind.startswith("HTTP2_SESSION"):
            continue
        s = sessions.setdefault(ev["source"]["id"], {"settings": {}, "streams": []})
        params = ev.get("params", {})
        if kind == "HTTP2_SESSION_RECV_SETTING":
            # {"id": "8 (SETTINGS_ENABLE_CONNECT_PROTOCOL)", "value": 1}
            name = params["id"].split("(")[-1].rstrip(")")
            s["settings"][name] = params["value"]
        elif kind == "HTTP2_SESSION_SEND_HEADERS":
            pseudo = dict(h.split(": ", 1) for h in params.get("headers", [])
                          if h.startswith(":") and ": " in h)
            s["streams"].append((pseudo.get(":method"), pseudo.get(":path"),
                                 pseudo.get(":protocol")))
    return {sid: s for sid, s in sessions.items() if s["streams"]}


def stats(ex):
    r = ex.curl("/stats", timeout=10)
    if r.returncode != 0:
        raise AssertionError("/stats: %s" % r.stderr.decode(errors="replace"))
    return json.loads(r.stdout)


def wait_stats(ex, predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        s = stats(ex)
        if predicate(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s; /stats: %s" % (what, s))
        time.sleep(0.05)


# The page's result: the element's text once data-done is set (a
# MutationObserver, so the promise settles when the page writes it).
AWAIT_RESULT = """new Promise((resolve) => {
  const el = document.getElementById("result");
  const done = () => el.dataset.done === "1";
  if (done()) return resolve(el.textContent);
  new MutationObserver(() => { if (done()) resolve(el.textContent); })
      .observe(el, {attributes: true});
})"""


@unittest.skipUnless(examples.TLS, "browsers speak HTTP/2 over TLS only (no h2c): the browser "
                     "cases run in the tls variants")
class BrowserChat(unittest.TestCase):

    def setUp(self):
        if not shutil.which(CHROMIUM):
            self.fail("no %s: install Debian's chromium package (./dev.sh deps)" % CHROMIUM)
        self.ex = examples.Example("websocket_chat").start()

    def tearDown(self):
        code, _ = self.ex.stop()
        self.assertEqual(code, 0, "websocket_chat exited with %s on SIGTERM:\n%s"
                         % (code, self.ex.log_text()[-4000:]))

    def run_page(self, *flags):
        """One browser: loads /?selftest=N, waits for the result. Returns
        (result dict, the WebSocket handshake response DevTools saw, /stats
        read while the page is still open, the HTTP/2 sessions of the
        browser's net log)."""
        netlog = os.path.join(harness.workdir(), "netlog-%s.json" % self.id().rsplit(".", 1)[-1])
        browser = DevTools(*flags, netlog=netlog)
        try:
            session = browser.open_page(self.ex.url("/?selftest=%d" % SELFTEST_MESSAGES))
            browser.wait_event("Page.loadEventFired", timeout=BROWSER_TIMEOUT)
            res = browser.command("Runtime.evaluate",
                                  {"expression": AWAIT_RESULT, "awaitPromise": True,
                                   "returnByValue": True},
                                  session=session, timeout=BROWSER_TIMEOUT)
            self.assertNotIn("exceptionDetails", res, res)
            result = json.loads(res["result"]["value"])
            handshake = browser.wait_event("Network.webSocketHandshakeResponseReceived",
                                           timeout=10)["response"]
            during = stats(self.ex)
        finally:
            browser.close()
        return result, handshake, during, http2_sessions(netlog)

    def check(self, protocol, result, handshake, during):
        n = SELFTEST_MESSAGES
        self.assertIsNone(result["error"], result)
        self.assertEqual((result["sent"], result["received"], result["in_order"]), (n, n, True),
                         result)
        self.assertEqual(result["websocket_url"], "wss://127.0.0.1:%d/chat" % self.ex.port)
        # How the page and its resources came (the performance API).
        self.assertEqual(result["navigation"], protocol, result)
        self.assertEqual(result["resources"].get("/app.js"), protocol, result)
        self.assertEqual(result["resources"].get("/style.css"), protocol, result)
        # The server: one chat WebSocket, over this protocol, every message
        # received and delivered (to its sender).
        other = "http/1.1" if protocol == "h2" else "h2"
        self.assertEqual(during["open"], {protocol: 1, other: 0}, during)
        self.assertEqual(during["opened"], {protocol: 1, other: 0}, during)
        self.assertEqual((during["messages"], during["delivered"], during["skipped"]), (n, n, 0),
                         during)
        # The browser gone, the server sees the WebSocket end.
        wait_stats(self.ex, lambda s: s["open"] == {"h2": 0, "http/1.1": 0},
                   "the WebSocket to close after the browser quit")
        self.ex.wait_metrics(lambda m: m["h2loop_app_handles"] == 0,
                             "the room to let go of its handles")

    def test_h2_page_and_websocket_over_one_h2_connection(self):
        result, handshake, during, sessions = self.run_page()
        self.check("h2", result, handshake, during)
        # The net log: the session that carried the page also carried the
        # WebSocket, as an extended CONNECT, after the server's SETTINGS
        # offered it; no other session did.
        page = "/?selftest=%d" % SELFTEST_MESSAGES
        connect = ("CONNECT", "/chat", "websocket")
        carrying = [(k, v) for k, v in sessions.items() if ("GET", page, None) in v["streams"]]
        self.assertEqual(len(carrying), 1, sessions)
        sid, session = carrying[0]
        self.assertIn(connect, session["streams"], sessions)
        self.assertIn(("GET", "/app.js", None), session["streams"], sessions)
        self.assertIn(("GET", "/style.css", None), session["streams"], sessions)
        self.assertEqual(session["settings"].get("SETTINGS_ENABLE_CONNECT_PROTOCOL"), 1, session)
        self.assertEqual([k for k, v in sessions.items() if connect in v["streams"]], [sid])
        # RFC 8441 as the browser saw it: the extended CONNECT's 200 (an
        # Upgrade would be 101), without the Upgrade handshake's headers.
        self.assertEqual(handshake["status"], 200, handshake)
        headers = {k.lower() for k in handshake.get("headers", {})}
        self.assertNotIn("sec-websocket-accept", headers, handshake)
        self.assertNotIn("upgrade", headers, handshake)

    def test_http1_page_and_websocket_upgrade(self):
        result, handshake, during, sessions = self.run_page("--disable-http2")
        self.check("http/1.1", result, handshake, during)
        self.assertEqual(sessions, {}, "HTTP/2 sessions despite --disable-http2")
        self.assertEqual(handshake["status"], 101, handshake)
        headers = {k.lower(): v for k, v in handshake.get("headers", {}).items()}
        self.assertEqual(headers.get("upgrade", "").lower(), "websocket", handshake)
        self.assertIn("sec-websocket-accept", headers, handshake)


if __name__ == "__main__":
    print("h2loop browser: loop=%s transport=%s dir=%s chromium=%s"
          % (examples.LOOP, harness.TRANSPORT, examples.EXAMPLES, shutil.which(CHROMIUM)),
          file=sys.stderr)
    unittest.main(verbosity=2)
