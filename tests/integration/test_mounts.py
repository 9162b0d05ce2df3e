#!/usr/bin/python3
"""Mounts (several document roots, each with its own response fields), custom
error pages and OPTIONS, with the real binary over HTTP/2 (curl, python-h2)
and HTTP/1.1 (curl, a raw socket), compared with Debian's nginx configured
the same way (add_header, alias, error_page) where that is cheap.

The server is configured by a file ([[mount]], root_headers, [error_pages])
and by flags over it (--mount-header, --error-page), so both paths are used;
--check prints what it made of them, and that reads back the same. A reload
that changes the mounts keeps the running ones and says so."""

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import nginxlib  # noqa: E402
from configlib import ConfigServer  # noqa: E402
from harness import BIN, TLS, H2Client  # noqa: E402

PAGE_404 = b"<!doctype html><title>gone</title><h1>not here</h1>\n"
PAGE_403 = b"<!doctype html><h1>forbidden</h1>\n"
PAGE_405 = b"method? no.\n"
PAGE_416 = b"<h1>no such range</h1>\n"

# Where h2loop answers differently from nginx 1.22 on purpose:
#  - OPTIONS on a file: nginx 405 without `allow`; h2loop 200 with allow
#    (RFC 9110 §9.3.7; the 405's allow names OPTIONS, so it must work);
#  - OPTIONS *: nginx 400 (it has no asterisk-form); h2loop 200 with allow.
DIFFERENT = {
    ("OPTIONS", "/assets/a.css"): (200, 405),
}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_site():
    """T/ is root ("/"); T/assets at /assets; T/images at /assets/img."""
    t = tempfile.mkdtemp(prefix="mounts-", dir=harness.workdir())
    write(os.path.join(t, "index.html"), b"home\n")
    write(os.path.join(t, "page.txt"), b"0123456789" * 10)
    os.makedirs(os.path.join(t, "secret"))  # a directory without index.html: 403
    write(os.path.join(t, "assets", "a.css"), b"body { color: red }\n")
    write(os.path.join(t, "assets", "img", "shadowed.png"), b"never served: /assets/img is a mount")
    write(os.path.join(t, "images", "x.png"), b"\x89PNG not really\n")
    write(os.path.join(t, "errors", "404.html"), PAGE_404)
    write(os.path.join(t, "errors", "403.html"), PAGE_403)
    write(os.path.join(t, "errors", "405.txt"), PAGE_405)
    write(os.path.join(t, "errors", "416.html"), PAGE_416)
    nginxlib.readable(t)
    return t


def config_body(site):
    body = f'listen = "127.0.0.1:0"\nroot = "{site}"\nlog_level = "info"\n'
    body += 'root_headers = { "cache-control" = "no-cache" }\n'
    if TLS:
        cert, key = harness.certificate()
        body += f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    body += f"""
[[mount]]
prefix = "/assets"
root = "{site}/assets"
headers = {{ "cache-control" = "max-age=3600", "x-content-type-options" = "nosniff" }}
[[mount]]
prefix = "/assets/img/"
root = "images"
headers = {{ "cache-control" = "max-age=86400" }}
[error_pages]
404 = "errors/404.html"
403 = "errors/403.html"
416 = "errors/416.html"
"""
    return body


def head_fields(raw, name):
    """Every value of field `name` in the last head of curl's -D output."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    out = []
    for line in blocks[-1].split("\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            out.append(v.strip())
    return out


class Mounts(nginxlib.Comparison, harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.site = make_site()
        # The file is in the site, so its relative paths ("images", "errors/...") are the site's.
        cls.server = ConfigServer(
            cls.site, config_body(cls.site),
            "--mount-header", "/assets/img=x-from: flag",
            "--error-page", "405=" + os.path.join(cls.site, "errors", "405.txt"))
        cls.server.root = cls.site  # cached descriptors are files under the site
        cls.server.file_mounts = 3
        # The mounts' own directory descriptors are held for the server's life,
        # like root's: part of the idle table, not cached files.
        table = cls.server.fd_table

        def fd_table():
            t = table()
            for fd, e in t.items():
                if e.kind == "file" and e.path in ("assets", "images"):
                    t[fd] = harness.FdEntry(e.target, "mount root")
            return t
        cls.server.fd_table = fd_table
        cls.server.start()
        s = cls.site
        cls.start_nginx(s, server_extra=f"""
  error_page 404 /errors/404.html; error_page 403 /errors/403.html;
  error_page 416 /errors/416.html;
  location / {{ add_header cache-control no-cache; }}
  location /errors/ {{ }}
  location /assets/ {{ alias {s}/assets/; add_header cache-control max-age=3600;
                       add_header x-content-type-options nosniff; }}
  location /assets/img/ {{ alias {s}/images/; add_header cache-control max-age=86400;
                           add_header x-from flag; }}
""")

    @classmethod
    def tearDownClass(cls):
        cls.stop_nginx()
        super().tearDownClass()
        shutil.rmtree(cls.site, True)

    # -- clients -----------------------------------------------------------------
    def proto(self, http1):
        s = self.server
        if http1:
            return ["-k", "--http1.1"] if s.tls else ["--http1.1"]
        return s.curl_args()

    def raw_head(self, path, *extra, http1=False):
        r = subprocess.run(["curl", "-sS", "--max-time", "20", "-D", "-", "-o", "/dev/null"] +
                           self.proto(http1) + list(extra) + [self.server.url(path)],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode("latin-1")

    def both(self):
        return (("h2", False), ("http/1.1", True))

    # -- mounts and their fields ---------------------------------------------------
    def test_each_mount_has_its_own_fields_and_the_longest_prefix_wins(self):
        cases = (
            ("/index.html", b"home\n", "no-cache", {}),
            ("/assets/a.css", b"body { color: red }\n", "max-age=3600",
             {"x-content-type-options": "nosniff"}),
            ("/assets/img/x.png", b"\x89PNG not really\n", "max-age=86400", {"x-from": "flag"}),
        )
        for proto, http1 in self.both():
            for path, body, cache, more in cases:
                what = "%s %s" % (proto, path)
                a = self.h2loop(path, http1=http1)
                self.assertEqual(a.status, 200, what)
                self.assertEqual(a.body, body, what)
                raw = self.raw_head(path, http1=http1)
                self.assertEqual(head_fields(raw, "cache-control"), [cache], what)  # once
                for name, value in more.items():
                    self.assertEqual(head_fields(raw, name), [value], what)
                # The server's own fields are there once, untouched.
                self.assertEqual(len(head_fields(raw, "content-type")), 1, what)
                self.assertEqual(head_fields(raw, "content-length"), [str(len(body))], what)
            # /assets/img is the images mount: the assets root's img/ is out of reach.
            self.assertEqual(self.h2loop("/assets/img/shadowed.png", http1=http1).status, 404)
            # "/assetsx" is not under /assets: root's answer (a 404 here).
            self.assertEqual(self.h2loop("/assetsx", http1=http1).status, 404)

    def test_304_and_206_keep_their_status_and_carry_the_fields(self):
        for proto, http1 in self.both():
            a = self.h2loop("/assets/a.css", http1=http1)
            etag = a.get("etag")
            n = self.h2loop("/assets/a.css", headers=["If-None-Match: " + etag], http1=http1)
            self.assertEqual(n.status, 304, proto)
            self.assertEqual(n.body, b"", proto)
            self.assertEqual(n.get("cache-control"), "max-age=3600", proto)  # RFC 9110 §15.4.5
            r = self.h2loop("/page.txt", headers=["Range: bytes=0-4"], http1=http1)
            self.assertEqual(r.status, 206, proto)
            self.assertEqual(r.body, b"01234", proto)
            self.assertEqual(r.get("cache-control"), "no-cache", proto)

    # -- error pages -----------------------------------------------------------------
    def assertPage(self, a, status, page, media, what):
        self.assertEqual(a.status, status, what)
        self.assertEqual(a.media(), media, what)
        self.assertEqual(a.get("content-length"), str(len(page)), what)
        self.assertEqual(a.body, page, what)
        # A mount's fields are for its 2xx and 3xx answers only (nginx's add_header).
        self.assertIsNone(a.get("cache-control"), what)

    def test_error_pages_over_both_protocols(self):
        for proto, http1 in self.both():
            self.assertPage(self.h2loop("/missing.html", http1=http1), 404, PAGE_404, "text/html",
                            proto + " 404 of /")
            self.assertPage(self.h2loop("/assets/missing.css", http1=http1), 404, PAGE_404,
                            "text/html", proto + " 404 of a mount")
            self.assertPage(self.h2loop("/secret/", http1=http1), 403, PAGE_403, "text/html",
                            proto + " 403")
            a = self.h2loop("/index.html", "POST", http1=http1, extra=["-d", "x=1"])
            self.assertPage(a, 405, PAGE_405, "text/plain", proto + " 405 of a file")
            self.assertEqual(a.get("allow"), "GET, HEAD, OPTIONS")
            a = self.h2loop(harness.METRICS, "DELETE", http1=http1)  # routing's own 405
            self.assertPage(a, 405, PAGE_405, "text/plain", proto + " 405 of a route")
            self.assertEqual(a.get("allow"), "GET, HEAD, OPTIONS")
            a = self.h2loop("/page.txt", headers=["Range: bytes=500-"], http1=http1)
            self.assertPage(a, 416, PAGE_416, "text/html", proto + " 416")
            self.assertEqual(a.get("content-range"), "bytes */100")
            # HEAD: the page's headers, no body.
            h = self.h2loop("/missing.html", "HEAD", http1=http1)
            self.assertEqual((h.status, h.body, h.get("content-length")),
                             (404, b"", str(len(PAGE_404))), proto)
            self.assertEqual(h.media(), "text/html")
            # 400 has no page here: the built-in text.
            b = self.h2loop("/a/../../etc/passwd", http1=http1, extra=["--path-as-is"])
            self.assertEqual((b.status, b.media()), (400, "text/plain"), proto)

    # -- OPTIONS ---------------------------------------------------------------------
    def assertOptions(self, a, allow, what):
        self.assertEqual(a.status, 200, what)
        self.assertEqual(a.get("allow"), allow, what)
        self.assertEqual(a.get("content-length"), "0", what)
        self.assertEqual(a.body, b"", what)
        self.assertIsNone(a.get("cache-control"), what)

    def test_options_on_paths_and_asterisk(self):
        for proto, http1 in self.both():
            for path in ("/index.html", "/assets/a.css", "/assets/img/none", harness.METRICS):
                self.assertOptions(self.h2loop(path, "OPTIONS", http1=http1), "GET, HEAD, OPTIONS",
                                   "%s OPTIONS %s" % (proto, path))
            self.assertOptions(
                self.h2loop("/", "OPTIONS", http1=http1, extra=["--request-target", "*"]),
                "GET, HEAD, OPTIONS", proto + " OPTIONS *")

    def test_options_asterisk_over_python_h2_and_a_raw_socket(self):
        c = H2Client(self.server)
        try:
            sid = c.request("*", "OPTIONS")
            c.pump(lambda c: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None)
            r = c.responses[sid]
            self.assertEqual(r["status"], 200)
            self.assertEqual(r["headers"].get("allow"), "GET, HEAD, OPTIONS")
            self.assertEqual(r["headers"].get("content-length"), "0")
            self.assertEqual(bytes(r["body"]), b"")
            # "*" is for OPTIONS only: nghttp2 refuses it for GET (a stream error).
            sid = c.request("*", "GET")
            c.pump(lambda c: c.responses[sid]["ended"] or c.responses[sid]["reset"] is not None)
            self.assertIsNotNone(c.responses[sid]["reset"])
        finally:
            c.close()
        sock = harness.tcp_connect(self.server)
        if TLS:
            sock = harness.tls_wrap(sock, alpn=("http/1.1",))
        try:
            sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"
                         b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            sock.settimeout(10)
            while True:  # the 400 ends the connection: read to its FIN
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        first, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(first.startswith(b"HTTP/1.1 200 "), data)
        self.assertIn(b"\r\nallow: GET, HEAD, OPTIONS", first)
        self.assertIn(b"\r\ncontent-length: 0", first)
        self.assertTrue(rest.startswith(b"HTTP/1.1 400 "), rest)  # "*" is only for OPTIONS

    # -- nginx -----------------------------------------------------------------------
    def test_same_answers_as_nginx(self):
        for path in ("/index.html", "/assets/a.css", "/assets/img/x.png", "/missing.html",
                     "/assets/missing.css", "/secret/"):
            ref = self.reference(path)
            for proto, http1 in self.both():
                what = "%s %s" % (proto, path)
                mine = self.h2loop(path, http1=http1)
                self.assertEqual(mine.status, ref.status, what)
                self.assertEqual(mine.get("cache-control"), ref.get("cache-control"), what)
                self.assertEqual(mine.get("x-from"), ref.get("x-from"), what)
                self.assertEqual(mine.body, ref.body, what)
                self.assertEqual(mine.media(), ref.media(), what)
        ref = self.reference("/page.txt", headers=["Range: bytes=500-"])
        mine = self.h2loop("/page.txt", headers=["Range: bytes=500-"])
        self.assertEqual((mine.status, mine.body, mine.get("content-range")),
                         (ref.status, ref.body, ref.get("content-range")))
        for (method, path), (want, nginx_status) in DIFFERENT.items():
            ref = self.reference(path, method)
            self.assertEqual(ref.status, nginx_status, (method, path))
            self.assertEqual(self.h2loop(path, method).status, want, (method, path))

    # -- reload --------------------------------------------------------------------------
    def test_a_reload_keeps_the_mounts(self):
        s = self.server
        original = config_body(self.site)
        try:
            s.write(original.replace("max-age=3600", "max-age=1")
                    .replace('403 = "errors/403.html"\n', ""))
            text = s.reload()
            self.assertRegex(text, r"reload: error_pages, mounts changed; that takes a restart")
            self.assertEqual(self.h2loop("/assets/a.css").get("cache-control"), "max-age=3600")
            self.assertEqual(self.h2loop("/secret/").body, PAGE_403)
        finally:
            s.write(original)
            text = s.reload()
            self.assertNotIn("takes a restart", text)


class Check(unittest.TestCase):
    """--check prints the mounts and pages (and that reads back); mistakes stop it."""

    def setUp(self):
        self.site = make_site()

    def tearDown(self):
        shutil.rmtree(self.site, True)

    def run_bin(self, *args):
        return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=30)

    def conf(self, body):
        path = os.path.join(self.site, "h2loop.toml")
        with open(path, "w") as f:
            f.write(body)
        return path

    def test_check_prints_mounts_and_error_pages_that_read_back(self):
        path = self.conf(config_body(self.site))
        r = self.run_bin("--config", path, "--check", "--mount", "/extra=" + self.site + "/images",
                         "--mount-header", "/extra=cache-control: private",
                         "--error-page", "404=" + self.site + "/errors/403.html")
        self.assertEqual(r.returncode, 0, r.stderr)
        eff = tomllib.loads(r.stdout)
        self.assertEqual(eff["root_headers"], {"cache-control": "no-cache"})
        mounts = {m["prefix"]: m for m in eff["mount"]}
        self.assertEqual(sorted(mounts), ["/assets", "/assets/img/", "/extra"])
        self.assertEqual(mounts["/assets/img/"]["root"], os.path.join(self.site, "images"))
        self.assertEqual(mounts["/assets"]["headers"],
                         {"cache-control": "max-age=3600", "x-content-type-options": "nosniff"})
        self.assertEqual(mounts["/extra"]["headers"], {"cache-control": "private"})
        self.assertEqual(eff["error_pages"]["404"], os.path.join(self.site, "errors", "403.html"))
        self.assertEqual(eff["error_pages"]["416"], os.path.join(self.site, "errors", "416.html"))
        again = self.conf(r.stdout)
        r2 = self.run_bin("--config", again, "--check")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual(r2.stdout, r.stdout)

    def test_check_and_start_refuse_what_cannot_be_served(self):
        big = os.path.join(self.site, "errors", "big.html")
        with open(big, "wb") as f:
            f.write(b"x" * (64 * 1024 + 1))
        base = f'root = "{self.site}"\n'
        cases = (
            (base + '[error_pages]\n404 = "errors/none.html"\n',
             "error page 404: %s/errors/none.html: No such file or directory" % self.site),
            (base + '[error_pages]\n404 = "errors/big.html"\n',
             "error page 404: %s: larger than 64 KiB" % big),
            (base + '[[mount]]\nprefix = "/x"\nroot = "nowhere"\n',
             "mount /x: root %s/nowhere: not a directory" % self.site),
            (base + '[[mount]]\nprefix = "/x"\nroot = "images"\nheaders = { "Vary" = "x" }\n',
             "h2loop.toml:5:22: mount[0].headers.Vary: field names are lowercase"),
            (base + 'root_headers = { "x-a" = "b\\nc" }\n',
             "h2loop.toml:2:26: root_headers.x-a: CR, LF or NUL in the value"),
        )
        for body, message in cases:
            path = self.conf(body)
            r = self.run_bin("--config", path, "--check")
            self.assertEqual(r.returncode, 2, body)
            self.assertIn(message, r.stderr, body)
        # Starting refuses it too (nothing listens).
        path = self.conf(cases[0][0])
        r = self.run_bin("--config", path, "--listen", "127.0.0.1:0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(cases[0][1], r.stderr)
        r = self.run_bin("--root", self.site, "--check", "--mount-header", "/=Date: x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--mount-header /=Date: x: field names are lowercase", r.stderr)


if __name__ == "__main__":
    harness.main()
