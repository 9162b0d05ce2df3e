"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on
a pipe (--remote-debugging-pipe: no port to find, no Python package beyond
the standard library). Shared by tests/examples/test_browser.py (the
websocket_chat example) and tests/integration/test_browser_static.py (static
files: compression and ranges). Every wait is bounded."""

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

import harness

CHROMIUM = os.environ.get("H2LOOP_CHROMIUM", "chromium")


class DevTools:
    """Headless Chromium with the DevTools protocol on fds 3 (commands in)
    and 4 (answers and events out), NUL-separated JSON."""

    def __init__(self, *flags, netlog=None):
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=harness.workdir())
        if netlog:
            flags += ("--log-net-log=" + netlog,)
        self.stderr_path = os.path.join(self.profile, "chromium.stderr")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        # The child ends go to fds 3 and 4 by a bash redirection (dash takes
        # single-digit fds only); moved above 9 first so that the
        # redirections cannot overwrite one another.
        cmd_r, out_w = self._high(cmd_r), self._high(out_w)
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--ignore-certificate-errors",
                "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-pipe"] + list(flags) + ["about:blank"]
        script = 'exec "$@" 3<&%d 4>&%d %d<&- %d>&-' % (cmd_r, out_w, cmd_r, out_w)
        with open(self.stderr_path, "w") as err:
            # A session of its own: the whole browser (zygote, renderers, the
            # network service) is one process group, ended together.
            self.proc = subprocess.Popen(["/bin/bash", "-c", script, "bash"] + args,
                                         pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events = []

    @staticmethod
    def _high(fd):
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return moved

    def command(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline, method)
            if m.get("id") == self._id:
                if "error" in m:
                    raise AssertionError("DevTools %s: %s" % (method, m["error"]))
                return m["result"]
            self.events.append(m)

    def open_page(self, url):
        """A new tab attached in flat mode, with Network and Page events on,
        navigating to `url`; returns its session id."""
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.command("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        self.command("Network.enable", session=session)
        self.command("Page.enable", session=session)
        self.command("Page.navigate", {"url": url}, session=session)
        return session

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for m in self.events:
                if m.get("method") == method:
                    return m["params"]
            self.events.append(self._read(deadline, method))

    def wait_events(self, predicate, what, timeout=30):
        """Reads events until predicate(self.events) holds; returns self.events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            self.events.append(self._read(deadline, what))
        return self.events

    def _read(self, deadline, what):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("chromium: no answer for %s in time\n%s"
                                     % (what, self.stderr_tail()))
            r, _, _ = select.select([self._out_r], [], [], left)
            if r:
                data = os.read(self._out_r, 1 << 20)
                if not data:
                    raise AssertionError("chromium exited (waiting for %s)\n%s"
                                         % (what, self.stderr_tail()))
                self._buf += data
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def stderr_tail(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                lines = [ln for ln in f if "dbus" not in ln]  # no D-Bus here: noise
            return "".join(lines[-20:])
        except OSError:
            return ""

    def close(self):
        """Browser.close, then waits; kills the process group if it lingers."""
        try:
            if self.proc.poll() is None:
                self.command("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of its group
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        for fd in (self._cmd_w, self._out_r):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)
