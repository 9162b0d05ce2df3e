#!/usr/bin/python3
"""On-the-fly compression of static files (gzip, br) against h2loop, compared
with Debian's nginx on the same document root with `gzip on` (its gzip_types,
gzip_min_length and gzip_vary set as h2loop's defaults are).

h2loop is asked over HTTP/2 and HTTP/1.1 (curl, sending Accept-Encoding
itself and keeping the bytes as they came); nginx (cleartext HTTP/1.1) is the
reference for gzip. Debian's nginx has no brotli module: br answers are
checked by decoding them (python3-brotli). Without nginx the comparisons
skip and the h2loop-only assertions run."""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import nginxlib  # noqa: E402
from harness import Server, ServerTestCase  # noqa: E402

try:
    import brotli
except ImportError:  # python3-brotli (dev.sh installs it)
    brotli = None

MIN_SIZE = 1024  # h2loop's default compress_min_size; nginx gets the same
MAX_SIZE = 256 * 1024  # h2loop's default compress_max_size (nginx has none)
NGINX_GZIP = f"""
  gzip on; gzip_vary on; gzip_min_length {MIN_SIZE}; gzip_comp_level 6;
  gzip_types text/plain text/css application/javascript application/json image/svg+xml
             text/xml application/xml;
"""

# Accept-Encoding values nginx 1.22 reads differently: it looks for a "gzip" token
# only, while h2loop follows RFC 9110 §12.5.3 ("*" stands for any coding not
# listed; x-gzip is gzip, §8.4.1.3). value -> (h2loop's coding, nginx's).
DIFFERENT = {
    "x-gzip": ("gzip", None),
    "*": ("br", None),
    "br;q=0, *": ("gzip", None),
}


def text(n, seed=0):
    out = b"".join(b"<p>line %d of a page that compresses</p>\n" % (i * 7 + seed)
                   for i in range(n // 30 + 1))
    return out[:n]


FILES = {
    "page.html": text(8000),
    "style.css": text(5000, 1),
    "app.js": text(6000, 2),  # nginx: application/javascript, h2loop: text/javascript
    "data.json": text(3000, 3),
    "icon.svg": text(2500, 4),
    "notes.txt": text(4000, 5),
    "at_min.txt": text(MIN_SIZE, 6),
    "below_min.txt": text(MIN_SIZE - 1, 7),
    "photo.png": text(6000, 8),  # compresses, but an image type: never compressed
    "blob.bin": text(6000, 9),
    "huge.txt": text(MAX_SIZE + 1, 10),
    "pre.txt": text(7000, 11),
}


def make_root():
    root = tempfile.mkdtemp(prefix="compress-", dir=harness.workdir())
    for name, data in FILES.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(root, "pre.txt.gz"), "wb") as f:
        f.write(gzip.compress(FILES["pre.txt"], compresslevel=9, mtime=0))
    nginxlib.readable(root)
    return root


def decode(answer):
    coding = answer.get("content-encoding")
    if coding is None:
        return answer.body
    if coding == "gzip":
        return gzip.decompress(answer.body)
    if coding == "br":
        if brotli is None:
            raise unittest_skip("python3-brotli is not installed")
        return brotli.decompress(answer.body)
    raise AssertionError("unexpected content-encoding %r" % coding)


def unittest_skip(why):
    import unittest
    return unittest.SkipTest(why)


class Compression(nginxlib.Comparison, ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.root = make_root()
        cls.server = Server(root=cls.root).start()
        cls.start_nginx(cls.root, http_extra=NGINX_GZIP, server_extra="gzip_static on;")

    @classmethod
    def tearDownClass(cls):
        cls.stop_nginx()
        super().tearDownClass()
        shutil.rmtree(cls.root, True)

    def answers(self, path, ae, method="GET", extra=()):
        """h2loop over HTTP/2 and HTTP/1.1, and nginx (or None)."""
        headers = (["Accept-Encoding: " + ae] if ae is not None else []) + list(extra)
        mine = self.h2loop(path, method, headers)
        mine1 = self.h2loop(path, method, headers, http1=True)
        ref = self.reference(path, method, headers) if self.nginx is not None else None
        return mine, mine1, ref

    @staticmethod
    def prefers_br(ae):
        """Whether br is acceptable with a q at least gzip's (then h2loop sends br where
        nginx, without a brotli module, sends gzip)."""
        q = {}
        for item in ae.split(","):
            name, _, params = item.strip().partition(";")
            v = 1.0
            if params.strip().startswith("q="):
                try:
                    v = float(params.strip()[2:])
                except ValueError:
                    v = 0.0  # a malformed q: not acceptable (h2loop's reading)
            q[name.strip().lower()] = v
        star = q.get("*", 0.0)
        br, gz = q.get("br", star), q.get("gzip", star)
        return br > 0 and br >= gz

    def check(self, name, ae):
        data = FILES[name]
        mine, mine1, ref = self.answers("/" + name, ae)
        what = "%s, Accept-Encoding: %r" % (name, ae)
        for m, proto in ((mine, "h2"), (mine1, "http/1.1")):
            w = "%s (%s)" % (what, proto)
            self.assertEqual(m.status, 200, w)
            self.assertEqual(decode(m), data, w)
            coding = m.get("content-encoding")
            if coding is not None:
                self.assertEqual(int(m.get("content-length")), len(m.body), w)
                self.assertLess(len(m.body), len(data), w)
                self.assertIsNone(m.get("accept-ranges"), w)
                self.assertTrue(m.get("etag").startswith('W/"'), w)
            if ref is None:
                continue
            self.assertEqual(m.status, ref.status, w)
            want = ref.get("content-encoding")
            if ae in DIFFERENT and ref.get("vary") is not None:
                self.assertEqual((coding, want), DIFFERENT[ae], w)
                want = coding
            elif ae and self.prefers_br(ae) and (want == "gzip" or want is None) and \
                    ref.get("vary") is not None:
                want = "br"  # nginx has no brotli: h2loop's br where nginx says gzip/identity
            self.assertEqual(coding, want, w)
            self.assertEqual((m.get("vary") or "").lower(), (ref.get("vary") or "").lower(), w)
            if name != "app.js":
                self.assertEqual(m.media(), ref.media(), w)
            self.assertEqual(decode(ref), data, w)
            # Both weaken the identity's etag for a compressed answer (formats differ).
            if coding == ref.get("content-encoding"):
                self.assertEqual((m.get("etag") or "").startswith("W/"),
                                 (ref.get("etag") or "").startswith("W/"), w)
        return mine

    # -- tests ---------------------------------------------------------------------
    def test_text_types_compressed_like_nginx(self):
        for name in ("page.html", "style.css", "app.js", "data.json", "icon.svg", "notes.txt"):
            for ae in ("gzip", "gzip, deflate, br"):
                with self.subTest(file=name, accept_encoding=ae):
                    r = self.check(name, ae)
                    self.assertEqual(r.get("content-encoding"), "br" if "br" in ae else "gzip")
                    self.assertEqual(r.get("vary"), "accept-encoding")

    def test_accept_encoding_forms(self):
        cases = {
            "gzip": "gzip", "br": "br", "gzip, deflate, br": "br", "br;q=0.5, gzip": "gzip",
            "gzip;q=0.8, br;q=0.8": "br", "x-gzip": "gzip", "*": "br", "br;q=0, *": "gzip",
            "gzip;q=0": None, "gzip;q=0, br;q=0": None, "*;q=0": None, "identity": None,
            "deflate": None, "gzip;q=abc": None, "": None, None: None,
        }
        for ae, want in cases.items():
            with self.subTest(accept_encoding=ae):
                if ae is None:  # no Accept-Encoding at all
                    mine, mine1, ref = self.answers("/notes.txt", None)
                    for m in (mine, mine1):
                        self.assertIsNone(m.get("content-encoding"))
                        self.assertEqual(m.get("vary"), "accept-encoding")
                        self.assertEqual(m.body, FILES["notes.txt"])
                    if ref is not None:
                        self.assertIsNone(ref.get("content-encoding"))
                        self.assertEqual(ref.get("vary").lower(), "accept-encoding")
                    continue
                r = self.check("notes.txt", ae)
                self.assertEqual(r.get("content-encoding"), want)
                self.assertEqual(r.get("vary"), "accept-encoding")  # compressed or not

    def test_thresholds_and_types(self):
        for name, compressed in (("at_min.txt", True), ("below_min.txt", False),
                                 ("photo.png", False), ("blob.bin", False)):
            with self.subTest(file=name):
                r = self.check(name, "gzip, br")
                self.assertEqual(r.get("content-encoding") is not None, compressed)
                self.assertEqual(r.get("vary") is not None, compressed)

    def test_above_the_maximum_is_sent_as_is(self):
        # nginx compresses any size (streaming, on every request); h2loop compresses
        # once and holds the result, so it stops at compress_max_size.
        for http1 in (False, True):
            r = self.h2loop("/huge.txt", headers=["Accept-Encoding: gzip, br"], http1=http1)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.get("content-encoding"))
            self.assertIsNone(r.get("vary"))
            self.assertEqual(r.get("accept-ranges"), "bytes")
            self.assertEqual(r.body, FILES["huge.txt"])

    def test_precompressed_variant_wins(self):
        for ae in ("gzip", "gzip, br;q=0.9"):
            with self.subTest(accept_encoding=ae):
                mine, mine1, ref = self.answers("/pre.txt", ae)
                with open(os.path.join(self.root, "pre.txt.gz"), "rb") as f:
                    on_disk = f.read()
                for m in (mine, mine1):
                    self.assertEqual(m.get("content-encoding"), "gzip")
                    self.assertEqual(m.body, on_disk)  # the file's bytes, not ours
                    self.assertFalse(m.get("etag").startswith("W/"))  # its own strong etag
                if ref is not None:
                    self.assertEqual(ref.body, on_disk)
        # br is not on disk: compressed on the fly.
        r = self.check("pre.txt", "br, gzip;q=0.5")
        self.assertEqual(r.get("content-encoding"), "br")

    def test_head_has_the_get_headers(self):
        for ae in ("gzip", "br"):
            with self.subTest(accept_encoding=ae):
                get, _, _ = self.answers("/page.html", ae)
                head, head1, ref = self.answers("/page.html", ae, method="HEAD")
                for h in (head, head1):
                    self.assertEqual(h.body, b"")
                    for field in ("content-encoding", "content-length", "content-type", "etag",
                                  "vary", "last-modified"):
                        self.assertEqual(h.get(field), get.get(field), field)
                if ref is not None and ae == "gzip":
                    # nginx's HEAD has the gzip headers too, without a length (it does not
                    # compress to know it); h2loop's has the length a GET's body has.
                    self.assertEqual(ref.get("content-encoding"), "gzip")
                    self.assertEqual(ref.get("vary").lower(), "accept-encoding")
                    self.assertIsNone(ref.get("content-length"))
                    self.assertEqual(int(head.get("content-length")), len(get.body))

    def test_conditional_requests(self):
        for ae in ("gzip", "br"):
            with self.subTest(accept_encoding=ae):
                first, _, ref = self.answers("/style.css", ae)
                weak = first.get("etag")
                strong = self.h2loop("/style.css").get("etag")
                self.assertEqual(weak, "W/" + strong)
                for validator in ("If-None-Match: " + weak, "If-None-Match: " + strong,
                                  "If-Modified-Since: " + first.get("last-modified")):
                    mine, mine1, _ = self.answers("/style.css", ae, extra=[validator])
                    for m in (mine, mine1):
                        self.assertEqual(m.status, 304, validator)
                        self.assertEqual(m.body, b"")
                        self.assertEqual(m.get("etag"), weak)
                        self.assertEqual(m.get("vary"), "accept-encoding")
                mine, _, _ = self.answers("/style.css", ae, extra=['If-None-Match: "other"'])
                self.assertEqual(mine.status, 200)
                if ref is not None and ae == "gzip":
                    self.assertTrue(ref.get("etag").startswith("W/"))
                    r = self.reference("/style.css", headers=["Accept-Encoding: gzip",
                                                              "If-None-Match: " + ref.get("etag")])
                    self.assertEqual(r.status, 304)

    def test_range_on_a_compressed_answer(self):
        for ae in ("gzip", "br"):
            with self.subTest(accept_encoding=ae):
                mine, mine1, ref = self.answers("/page.html", ae, extra=["Range: bytes=0-99"])
                for m in (mine, mine1):
                    # The full compressed answer; ranges are not offered on it.
                    self.assertEqual(m.status, 200)
                    self.assertEqual(m.get("content-encoding"), ae)
                    self.assertIsNone(m.get("content-range"))
                    self.assertIsNone(m.get("accept-ranges"))
                    self.assertEqual(decode(m), FILES["page.html"])
                if ref is not None and ae == "gzip":
                    self.assertEqual(ref.status, 200)
                    self.assertEqual(ref.get("content-encoding"), "gzip")
                    self.assertIsNone(ref.get("content-range"))
                    self.assertIsNone(ref.get("accept-ranges"))
        # Identity only: the range as ever.
        r = self.h2loop("/page.html", headers=["Accept-Encoding: identity", "Range: bytes=0-99"])
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, FILES["page.html"][:100])

    def test_compressed_once_and_counted(self):
        name = "/data.json"
        before = self.server.metrics()
        for _ in range(5):
            for ae in ("gzip", "br"):
                self.assertEqual(decode(self.h2loop(name, headers=["Accept-Encoding: " + ae])),
                                 FILES["data.json"])
        after = self.server.metrics()
        for coding in ("gzip", "br"):
            key = 'h2loop_static_compressed_total{coding="%s"}' % coding
            self.assertLessEqual(after[key] - before[key], 1, coding)  # at most the first time
        self.assertGreater(after["h2loop_static_compressed_bytes"], 0)

    def test_flags_reach_the_configuration(self):
        r = subprocess.run([harness.BIN, "--root", self.root, "--check", "--no-compress",
                            "--compress-min-size", "100", "--compress-max-size", "5000",
                            "--compress-budget", "65536", "--compress-types", "text/css",
                            "--gzip-level", "9", "--brotli-quality", "11"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in ("compress = false", "compress_min_size = 100", "compress_max_size = 5000",
                     "compress_budget = 65536", "gzip_level = 9", "brotli_quality = 11"):
            self.assertIn(line, r.stdout)
        self.assertRegex(r.stdout, r"compress_types = \[\s*'text/css'\s*\]")
        bad = subprocess.run([harness.BIN, "--root", self.root, "--check", "--gzip-level", "10"],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(bad.returncode, 0)


if __name__ == "__main__":
    harness.main()
