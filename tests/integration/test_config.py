"""The configuration file, reload (SIGHUP), log reopening (SIGUSR1) and
systemd (socket activation, sd_notify), with the real binary and real clients
(curl, h2load, openssl's view of the certificate through Python's ssl).

Every test runs on the backend and transport ctest names; the ones about
certificates need TLS and skip on h2c.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from configlib import (ConfigServer, base_config, der, live_certificates,  # noqa: E402
                       make_certificate, ocsp_setup, served_certificate, ticket_key, tls_session)
from harness import BIN, LOOP, TLS, H2Client  # noqa: E402


class Check(unittest.TestCase):
    """--check and the errors of a bad file: nothing is started."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=harness.workdir())

    def run_bin(self, *args):
        return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=30)

    def write(self, body):
        path = os.path.join(self.dir, "h2loop.toml")
        with open(path, "w") as f:
            f.write(body)
        return path

    def test_check_prints_the_effective_configuration_flags_winning(self):
        os.makedirs(os.path.join(self.dir, "www"))
        path = self.write('root = "www"\nworkers = 3\n[timeouts]\nidle = 30\nwrite = 9\n')
        r = self.run_bin("--config", path, "--check", "--idle-timeout", "7")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stderr)
        eff = tomllib.loads(r.stdout)
        self.assertEqual(eff["root"], os.path.join(self.dir, "www"))  # from the file's directory
        self.assertEqual(eff["workers"], 3)
        self.assertEqual(eff["timeouts"]["idle"], 7.0)   # the flag wins
        self.assertEqual(eff["timeouts"]["write"], 9.0)  # the file
        self.assertEqual(eff["timeouts"]["drain"], 10.0)  # the default
        self.assertEqual(eff["listen"], ["127.0.0.1:8443"])
        # What --check printed is itself a valid file that checks the same.
        again = self.write(r.stdout)
        r2 = self.run_bin("--config", again, "--check")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual(tomllib.loads(r2.stdout), eff)

    def test_errors_name_the_file_line_and_key(self):
        cases = [
            ('root = "/"\n[timeouts]\nidle = -1\n', r":3:8: timeouts\.idle: -1 seconds is out of range"),
            ('root = "/"\nworkerz = 2\n', r":2:1: workerz: unknown key"),
            ('root = "/"\n[limits]\nmax_concurrent_streams = "many"\n',
             r":3:26: limits\.max_concurrent_streams: expected an integer"),
            ('root = "/\n', r":1:\d+: "),
        ]
        for body, pattern in cases:
            path = self.write(body)
            r = self.run_bin("--config", path)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertRegex(r.stderr, "^h2loop: " + re.escape(path) + pattern)
            self.assertNotIn("listening", r.stderr)

    def test_check_refuses_a_key_that_does_not_match_the_certificate(self):
        if not TLS:
            self.skipTest("certificates: TLS only")
        cert, _ = make_certificate(self.dir, "one")
        _, key = make_certificate(self.dir, "two")
        path = self.write('root = "/"\n[tls]\ncert = "%s"\nkey = "%s"\n' % (cert, key))
        r = self.run_bin("--config", path, "--check")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(key, r.stderr)
        self.assertEqual(r.stdout, "")

    def test_root_is_required_somewhere(self):
        path = self.write('workers = 1\n')
        r = self.run_bin("--config", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--root is required (or root in the configuration file)", r.stderr)


class Reload(unittest.TestCase):
    """SIGHUP: new connections get the new file and certificates; open ones
    keep theirs; a bad file changes nothing and is counted."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=harness.workdir())
        self.server = None

    def tearDown(self):
        if self.server is not None:
            try:
                self.server.wait_idle()
            finally:
                code = self.server.stop()
            self.assertEqual(code, 0, self.server.log_text()[-3000:])

    def start(self, body, *extra, env=None):
        self.server = ConfigServer(self.dir, body, *extra, env=env).start()
        return self.server

    def reloads(self, m):
        return (m['h2loop_config_reloads_total{result="ok"}'],
                m['h2loop_config_reloads_total{result="failed"}'])

    def test_new_certificate_for_new_connections_and_the_open_one_goes_on(self):
        if not TLS:
            self.skipTest("certificates: TLS only")
        (one, two), live, swap = live_certificates(self.dir)
        s = self.start(base_config(self.dir, cert=live[0], key=live[1]))
        self.assertEqual(served_certificate(s.port), der(one[0]))
        old = H2Client(s)
        self.assertEqual(old.get("/index.html")["status"], 200)
        # Same file names, new contents: a reload re-reads them.
        swap(1)
        s.reload()
        self.assertEqual(served_certificate(s.port), der(two[0]))
        # The connection made before goes on, with the certificate it had.
        self.assertEqual(old.sock.getpeercert(binary_form=True), der(one[0]))
        self.assertEqual(old.get("/index.html")["status"], 200)
        old.close()
        self.assertEqual(self.reloads(s.metrics()), (1, 0))

    def test_new_timeouts_for_new_connections_only(self):
        s = self.start(base_config(self.dir, timeouts="idle = 2\n"))
        old = H2Client(s)
        self.assertEqual(old.get("/index.html")["status"], 200)
        s.write(base_config(self.dir, timeouts="idle = 60\n"))
        s.reload()
        new = H2Client(s)
        self.assertEqual(new.get("/index.html")["status"], 200)
        # The connection from before keeps its 2 s: it is ended (GOAWAY,
        # then the close) although the file now says 60...
        old.pump(lambda c: c.closed, timeout=10)
        self.assertIsNotNone(old.goaway)
        # ...while the new one, idle since before the old one closed, runs
        # with 60 s.
        self.assertEqual(new.get("/index.html")["status"], 200)
        self.assertFalse(new.closed)
        self.assertIsNone(new.goaway)
        new.close()

    def test_a_bad_file_keeps_the_running_configuration_and_is_counted(self):
        s = self.start(base_config(self.dir))
        good = base_config(self.dir)
        s.write(good + "\n[timeouts]\nidle = \"soon\"\n")
        text = s.reload(expect="reload failed")
        self.assertRegex(text, re.escape(s.path) + r":\d+:\d+: timeouts\.idle: expected a number")
        self.assertEqual(self.reloads(s.metrics()), (0, 1))
        r = s.curl("/index.html")
        self.assertEqual(r.returncode, 0, r.stderr)
        s.write(good)
        s.reload()
        self.assertEqual(self.reloads(s.metrics()), (1, 1))

    def test_a_certificate_that_cannot_be_loaded_keeps_the_old_one(self):
        if not TLS:
            self.skipTest("certificates: TLS only")
        s = self.start(base_config(self.dir))
        missing = os.path.join(self.dir, "missing.pem")
        s.write(base_config(self.dir, cert=missing, key=missing))
        text = s.reload(expect="reload failed")
        self.assertIn(missing, text)
        self.assertEqual(served_certificate(s.port), der(harness.certificate()[0]))
        self.assertEqual(self.reloads(s.metrics()), (0, 1))

    def test_what_takes_a_restart_is_named_and_kept(self):
        s = self.start(base_config(self.dir))
        s.write(base_config(self.dir, extra="workers = 2\nhttp1 = false\n"))
        text = s.reload()
        self.assertIn("http1, workers changed; that takes a restart", text)
        self.assertEqual(s.workers(), 1)
        # HTTP/1.1 still served: the running value stayed.
        r = subprocess.run(["curl", "-sSk", "--http1.1", "--max-time", "10", s.url("/index.html"),
                            "-o", "/dev/null", "-w", "%{http_version} %{http_code}"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.stdout, "1.1 200", r.stderr)

    def test_reloads_under_load_fail_no_request(self):
        if TLS:
            _, live, swap = live_certificates(self.dir)
            s = self.start(base_config(self.dir, cert=live[0], key=live[1]))
        else:
            s = self.start(base_config(self.dir))
        results = []
        stop = threading.Event()

        def load():
            # Runs of h2load one after the other: each opens new connections,
            # so connections start before, during and after the reloads.
            for _ in range(40):
                if stop.is_set():
                    break
                r = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "4", "-T", "30",
                                    "-N", "30", s.url("/index.html")],
                                   capture_output=True, text=True, timeout=120)
                results.append(r)

        t = threading.Thread(target=load)
        t.start()
        try:
            for i in range(20):
                if TLS:
                    swap((i + 1) % 2)
                s.reload()
        finally:
            stop.set()
            t.join(300)
        self.assertTrue(results)
        for r in results:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("400 succeeded, 0 failed, 0 errored", r.stdout)
        self.assertEqual(self.reloads(s.metrics()), (20, 0))

    def test_sigusr1_reopens_the_access_log(self):
        log = os.path.join(self.dir, "access.log")
        s = self.start(base_config(self.dir, extra='access_log = "access.log"\n'))
        self.assertEqual(s.curl("/index.html").returncode, 0)
        s.wait_idle()
        os.rename(log, log + ".1")
        s.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "access log reopened" not in s.log_text():
            self.assertLess(time.monotonic(), deadline, s.log_text())
            time.sleep(0.02)
        self.assertTrue(os.path.exists(log), "the file was not created again")
        self.assertEqual(s.curl("/sub/").returncode, 0)
        s.wait_idle()
        with open(log + ".1") as f:
            rotated = f.read()
        with open(log) as f:
            current = f.read()
        self.assertIn("GET /index.html 200", rotated)
        self.assertNotIn("GET /sub/", rotated)
        self.assertIn("GET /sub/ 200", current)
        self.assertNotIn("access:", s.log_text())  # the file, not the log


class TlsForFleets(unittest.TestCase):
    """Session tickets under shared keys (resumption across instances, key
    rotation by reload), OCSP stapling from a file, the minimum version."""

    def setUp(self):
        if not TLS:
            self.skipTest("TLS only")
        self.dir = tempfile.mkdtemp(dir=harness.workdir())
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            code = s.stop()
            self.assertEqual(code, 0, s.log_text()[-3000:])

    def start(self, tls_extra):
        d = tempfile.mkdtemp(dir=self.dir)
        cert, key = harness.certificate()
        body = base_config(d, cert=cert, key=key) + tls_extra
        s = ConfigServer(d, body).start()
        self.servers.append(s)
        return s

    def test_one_ticket_key_file_resumes_sessions_across_instances(self):
        shared = ticket_key(self.dir, "shared.key")
        other = ticket_key(self.dir, "other.key")
        a = self.start('ticket_keys = ["%s"]\n' % shared)
        b = self.start('ticket_keys = ["%s"]\n' % shared)
        c = self.start('ticket_keys = ["%s"]\n' % other)
        reused, session = tls_session(a.port)
        self.assertFalse(reused)
        self.assertTrue(session.has_ticket)
        self.assertTrue(tls_session(b.port, session)[0], "not resumed on the instance sharing the key")
        self.assertFalse(tls_session(c.port, session)[0], "resumed under another key")

    def test_rotation_by_reload_keeps_the_previous_key_for_resumption(self):
        old_key = ticket_key(self.dir, "old.key")
        new_key = ticket_key(self.dir, "new.key")
        s = self.start('ticket_keys = ["%s"]\n' % old_key)
        _, issued_before = tls_session(s.port)
        cert, key = harness.certificate()
        # The new key issues; the old one still decrypts (and its tickets are
        # renewed under the new key).
        s.write(base_config(s.dir, cert=cert, key=key) + 'ticket_keys = ["%s", "%s"]\n'
                % (new_key, old_key))
        s.reload()
        reused, renewed = tls_session(s.port, issued_before)
        self.assertTrue(reused, "a ticket of the previous key was refused after the rotation")
        # The old key retired: its tickets no longer resume, the new ones do.
        s.write(base_config(s.dir, cert=cert, key=key) + 'ticket_keys = ["%s"]\n' % new_key)
        s.reload()
        self.assertFalse(tls_session(s.port, issued_before)[0])
        self.assertTrue(tls_session(s.port, renewed)[0])

    def test_a_reload_without_key_files_keeps_resumption(self):
        s = self.start("")
        _, session = tls_session(s.port)
        self.assertTrue(tls_session(s.port, session)[0])
        s.reload()
        self.assertTrue(tls_session(s.port, session)[0],
                        "a reload threw away the key of the tickets issued before it")

    def test_a_ticket_key_of_the_wrong_size_is_refused(self):
        bad = os.path.join(self.dir, "short.key")
        with open(bad, "wb") as f:
            f.write(os.urandom(48))
        cert, key = harness.certificate()
        path = os.path.join(self.dir, "bad.toml")
        with open(path, "w") as f:
            f.write(base_config(self.dir, cert=cert, key=key) + 'ticket_keys = "%s"\n' % bad)
        r = subprocess.run([BIN, "--config", path, "--check"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("session ticket key '%s' has 48 bytes, not 80" % bad, r.stderr)

    def test_ocsp_response_is_stapled_when_asked(self):
        leaf, leaf_key, ocsp = ocsp_setup(self.dir)
        d = tempfile.mkdtemp(dir=self.dir)
        s = ConfigServer(d, base_config(d, cert=leaf, key=leaf_key)
                         + 'ocsp_response = "%s"\n' % ocsp).start()
        self.servers.append(s)

        def s_client(port, *flags):
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                                "-servername", "localhost", "-alpn", "h2"] + list(flags),
                               input="", capture_output=True, text=True, timeout=30)
            return r.stdout
        out = s_client(s.port, "-status")
        self.assertIn("OCSP Response Status: successful (0x0)", out)
        self.assertIn("Cert Status: good", out)
        self.assertIn("Serial Number: 1234", out)
        self.assertNotIn("OCSP Response Status", s_client(s.port))
        # Without a response file nothing is stapled.
        plain = self.start("")
        self.assertIn("OCSP response: no response sent", s_client(plain.port, "-status"))

    def test_minimum_version_1_3_refuses_1_2(self):
        s = self.start('min_version = "1.3"\n')

        def handshake(flag):
            return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port,
                                   flag, "-alpn", "h2"], input="", capture_output=True,
                                  text=True, timeout=30)
        self.assertIn("New, TLSv1.3", handshake("-tls1_3").stdout)
        r = handshake("-tls1_2")
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stdout + r.stderr, r"alert protocol version|no protocols available")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Systemd(unittest.TestCase):
    """Socket activation and the notification protocol, as systemd speaks
    them (systemd-socket-activate; a NOTIFY_SOCKET datagram socket)."""

    def test_the_units_in_deploy_verify_clean(self):
        # systemd's own checker (no systemd as PID 1 needed): every key known,
        # the binary's path executable. The units name /usr/local/bin/h2loop;
        # the copy checked here names the binary under test.
        units = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                             "systemd")
        d = tempfile.mkdtemp(prefix="units-", dir=harness.workdir())
        for name in ("h2loop.service", "h2loop.socket"):
            with open(os.path.join(units, name)) as f:
                text = f.read().replace("/usr/local/bin/h2loop", BIN)
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        out = subprocess.run(["systemd-analyze", "verify", "--man=no",
                              os.path.join(d, "h2loop.service"), os.path.join(d, "h2loop.socket")],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stderr.strip(), "", "systemd-analyze has remarks on the units")

    def test_socket_activation_serves_on_the_inherited_socket(self):
        port = free_port()
        args = [BIN, "--root", harness.document_root(), "--event-loop", LOOP, "--workers", "2"]
        if TLS:
            cert, key = harness.certificate()
            args += ["--cert", cert, "--key", key]
        proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port] + args,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # The socket is systemd-socket-activate's: the first connection
            # waits in its backlog while h2loop starts on it.
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    self.assertLess(time.monotonic(), deadline, "no listener")
                    time.sleep(0.02)
            scheme = "https" if TLS else "http"
            flags = ["-k", "--http2"] if TLS else ["--http2-prior-knowledge"]
            for _ in range(3):
                r = subprocess.run(["curl", "-sS", "--max-time", "10"] + flags +
                                   ["%s://127.0.0.1:%d/index.html" % (scheme, port),
                                    "-o", "/dev/null", "-w", "%{http_version} %{http_code}"],
                                   capture_output=True, text=True, timeout=20)
                self.assertEqual(r.stdout, "2 200", r.stderr)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            self.assertEqual(proc.returncode, 0, err)
            self.assertIn("h2loop listening on 127.0.0.1:%d (sockets from systemd)" % port, err)
            self.assertIn("h2loop stopped", err)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_ready_reloading_stopping_and_the_watchdog(self):
        path = os.path.join(tempfile.mkdtemp(dir=harness.workdir()), "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
        server = harness.Server(env=env).start()
        try:
            def receive(want):
                deadline = time.monotonic() + 10
                got = []
                while time.monotonic() < deadline:
                    msg = sock.recv(4096).decode()
                    got.append(msg)
                    if msg.split("\n")[0] == want:
                        return msg
                raise AssertionError("no %s; received %s" % (want, got))

            ready = receive("READY=1")
            self.assertIn("STATUS=serving on 127.0.0.1:%d" % server.port, ready)
            # Every 100 ms (half of WATCHDOG_USEC) while each loop answers.
            for _ in range(3):
                receive("WATCHDOG=1")
            server.signal(signal.SIGHUP)
            self.assertRegex(receive("RELOADING=1"), r"MONOTONIC_USEC=\d+")
            receive("READY=1")
            server.signal(signal.SIGTERM)
            receive("STOPPING=1")
            self.assertEqual(server.wait(30), 0)
        finally:
            server.kill()
            sock.close()


if __name__ == "__main__":
    harness.main()
