#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""lazypull ls/cat/check/inspect on registry references.

Pushes an image whose layers are an eStargz blob, a zstd:chunked blob (both
from the upstream Go library, tests/refgen) and a plain gzip layer to a
docker-registry started here, then checks that for every layer
`lazypull ls --json --digest REF --layer N` is byte-identical to the same
command on the local blob, that `cat` returns the right bytes while fetching
only part of the blob, that a second `cat` (new process, same cache) makes
no request, and that `check` and `inspect` agree.

Then `lazypull probe` (what the snapshotter runs on a layer's Prepare), through
a counting proxy: its one answer line and exit code for each format, a wrong
TOC digest, a missing blob and bad usage; that --no-toc does not download the
TOC; and that --warm fills the blob cache with the landmark range or the files
of an access trace (--trace) and nothing else, holding the OFD lock on the
blob's cache data file while it warms.

Env: LAZYPULL, SRCDIR, WORKDIR.  Exit 77 = skipped."""
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
sys.path.insert(0, HERE)
import fmtlib as F  # noqa: E402
import run as R  # noqa: E402

fails = []


def fail(msg):
    fails.append(msg)
    print("FAIL: " + msg)


# ---- lazypull probe -------------------------------------------------------

TOC_ANN = "containerd.io/snapshot/stargz/toc.digest"
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)


def stargz_toc_offset(blob):
    """The TOC offset an eStargz footer (the last 51 bytes) records."""
    with open(blob, "rb") as f:
        f.seek(-51, 2)
        foot = f.read()
    i = foot.find(b"STARGZ")
    return int(foot[i - 16:i], 16)


def many_files_tar(path, n):
    """n small files: an eStargz TOC much larger than the blob's tail."""
    rng = random.Random(5)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("many")
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
        t.addfile(ti)
        for i in range(n):
            data = rng.randbytes(32)
            ti = tarfile.TarInfo("many/f%05d" % i)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            t.addfile(ti, io.BytesIO(data))


def blob_ranges(proxy, digest, size):
    """[start, end) of every range of the blob GETs of digest the proxy
    saw."""
    out = []
    for e in proxy.blob_gets():
        if digest in e["path"]:
            out.extend(R.range_spans(e["range"], size))
    return out


def covered(ranges, a, b):
    """Do ranges cover [a, b)?"""
    for s, e in sorted(ranges):
        if s > a:
            break
        a = max(a, e)
    return a >= b


def served(ranges):
    return sum(e - s for s, e in ranges)


def upload_blob(addr, repo, data):
    """Uploads data as a blob of repo (monolithic upload): probe reads
    layers by digest, no manifest needs to name it.  Its digest."""
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection(addr, timeout=30)
    try:
        c.request("POST", "/v2/%s/blobs/uploads/" % repo)
        r = c.getresponse()
        r.read()
        loc = urllib.parse.urlsplit(r.getheader("Location") or "")
        if r.status != 202 or not loc.path:
            raise RuntimeError("blob upload: POST -> %d" % r.status)
        q = (loc.query + "&" if loc.query else "") + "digest=" + dg
        c.request("PUT", loc.path + "?" + q, body=data,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            raise RuntimeError("blob upload: PUT -> %d" % r.status)
    finally:
        c.close()
    return dg


def ofd_write_locked(path):
    """Does some open file description hold a write lock on byte 0 of
    path (the warm mark of fetcher/cache.c)?"""
    fd = os.open(path, os.O_RDONLY)
    try:
        fl = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 1, 0)
        got = fcntl.fcntl(fd, F_OFD_GETLK, fl)
    finally:
        os.close(fd)
    return struct.unpack("hhqqi4x", got)[0] == fcntl.F_WRLCK


def probe_checks(work, lp, exe, layers, reg, img_descs):
    """`lazypull probe` against the image pushed by main (img_descs: its
    eStargz, zstd:chunked and gzip layers) and a second one holding an
    eStargz layer with a landmark, one with a large TOC and an
    uncompressed tar, all read through a counting proxy."""
    chunks = layers["chunks"]
    prio = chunks["prioritized"]
    broot = os.path.join(work, "probe-oci")
    x = os.path.join(work, "probe-x")
    F.extract(chunks["tar"], x)

    def truth(path):
        with open(os.path.join(x, path.lstrip("/")), "rb") as f:
            return f.read()

    # the probe image: [0] eStargz with prioritized files (a landmark),
    # [1] eStargz of 3000 small files (a ~140 KB TOC); and [2] a plain
    # tar, as a bare blob (skopeo would compress it)
    many = os.path.join(work, "many.tar")
    many_files_tar(many, 3000)
    pdescs, pdiff, pblobs = [], [], []
    for name, tar, pr in (("prio", chunks["tar"], prio),
                          ("many", many, None)):
        with open(tar, "rb") as f:
            raw = f.read()
        blob = os.path.join(work, "probe-%s.estargz" % name)
        dg, _ = F.refgen(exe, tar, blob, "estargz", chunk=65536,
                         prioritized=pr)
        with open(blob, "rb") as f:
            data = f.read()
        pdescs.append(R.put_blob(broot, data,
                                 "application/vnd.oci.image.layer.v1."
                                 "tar+gzip", {TOC_ANN: dg}))
        pdiff.append("sha256:" + hashlib.sha256(raw).hexdigest())
        pblobs.append(blob)
    R.skopeo_push(work, R.ImageLayout(broot, pdescs, pdiff), "v1",
                  "%s/test/probe:v1" % reg.addr)
    with open(many, "rb") as f:
        pdescs.append({"digest": upload_blob(reg.addr, "test/probe",
                                             f.read())})

    proxy = R.Proxy(reg.addr)
    img = "%s/test/img:v1" % proxy.addr
    pimg = "%s/test/probe:v1" % proxy.addr
    n_root = [0]

    def fresh_root():
        n_root[0] += 1
        return os.path.join(work, "probe-root-%d" % n_root[0])

    def probe(ref, desc, *extra, root=None, toc=True, timeout=60):
        """Runs a probe (the layer's own TOC digest unless toc is False or
        extra has one) with the proxy log reset: (rc, stdout, stderr,
        seconds)."""
        args = [lp, "probe", "--plain-http", "--root", root or fresh_root(),
                "--layer-digest", desc["digest"]]
        if toc and "--toc-digest" not in extra and \
                TOC_ANN in desc.get("annotations", {}):
            args += ["--toc-digest", desc["annotations"][TOC_ANN]]
        proxy.reset()
        t0 = time.time()
        rc, out, err = F.run(args + list(extra) + [ref], timeout=timeout)
        return rc, out, err, time.time() - t0

    def answer_is(what, res, want_rc, want):
        """One line on stdout; want: the whole line, or a prefix ending
        in a space."""
        rc, out, err, _ = res
        line = out.decode(errors="replace")
        one = line.endswith("\n") and line.count("\n") == 1
        ok = line[:-1] == want if not want.endswith(" ") else \
            line.startswith(want)
        if rc != want_rc or not one or not ok:
            fail("probe %s: exit %d (want %d), stdout %r (want %r): %s" %
                 (what, rc, want_rc, line, want, F.short(err)))
            return False
        return True

    def cat_gets(root, ref, digest, path):
        """cat of path through the proxy with root's cache: (ok, blob
        GETs of digest)."""
        proxy.reset()
        rc, out, err = F.run([lp, "cat", "-v", "--plain-http", "--root",
                              root, "--layer-digest", digest, ref, path],
                             timeout=120)
        ok = rc == 0 and out == truth(path)
        if not ok:
            fail("cat %s of layer %s: exit %d, %d bytes: %s" %
                 (path, digest, rc, len(out), F.short(err)))
        return ok, len([e for e in proxy.blob_gets()
                        if digest in e["path"]])

    try:
        # -- the answer line, per format
        for what, ref, d, want in (
                ("eStargz", img, img_descs[0], "format estargz"),
                ("zstd:chunked", img, img_descs[1], "format zstd:chunked"),
                ("gzip", img, img_descs[2], "format zran"),
                ("uncompressed tar", pimg, pdescs[2], "format none")):
            res = probe(ref, d)
            if answer_is(what, res, 0, want):
                print("probe %s layer: %r in %.2f s" %
                      (what, want, res[3]))
        # --tell-toc-digest: the digest of the TOC it loaded, which is
        # the annotation's (no label given to check against)
        for what, d, fmt in (("eStargz", img_descs[0], "estargz"),
                             ("zstd:chunked", img_descs[1], "zstd:chunked")):
            res = probe(img, d, "--tell-toc-digest", toc=False)
            want = "format %s %s" % (fmt, d["annotations"][TOC_ANN])
            if answer_is(what + " --tell-toc-digest", res, 0, want):
                print("probe --tell-toc-digest, %s: %r" % (what, want))
        res = probe(img, img_descs[2], "--tell-toc-digest")
        answer_is("gzip --tell-toc-digest", res, 0, "format zran")
        # a wrong TOC digest: an error naming the digest
        wrong = "sha256:" + "2" * 64
        res = probe(img, img_descs[0], "--toc-digest", wrong)
        if answer_is("eStargz, wrong --toc-digest", res, 1, "error "):
            msg = res[1].decode(errors="replace")
            if wrong not in msg and img_descs[0]["annotations"][TOC_ANN] \
                    not in msg:
                fail("probe with a wrong TOC digest: the error does not "
                     "name the digest: %r" % msg)
            else:
                print("probe, wrong TOC digest: %s" % msg.strip())
        # a blob the registry does not have: an error, without retrying
        res = probe(img, {"digest": "sha256:" + "1" * 64})
        if answer_is("of a missing blob", res, 1, "error ") and res[3] > 5:
            fail("probe of a missing blob took %.1f s" % res[3])
        # the registry is down: an error in bounded time
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()
        res = probe("127.0.0.1:%d/test/img:v1" % port, img_descs[0],
                    "--timeout", "2", "--retries", "0", timeout=30)
        if answer_is("with no registry", res, 1, "error ") and res[3] > 8:
            fail("probe with no registry took %.1f s" % res[3])
        # usage: --help on stdout; mistakes exit 2 with no answer line
        rc, out, err = F.run([lp, "probe", "--help"])
        if rc != 0 or b"Usage: lazypull probe" not in out or \
                b"--layer-digest" not in out:
            fail("probe --help: exit %d: %s" % (rc, F.short(out + err)))
        for what, args in (("no --layer-digest", [img]),
                           ("no REF", ["--layer-digest",
                                       img_descs[0]["digest"]]),
                           ("two REFs", ["--layer-digest",
                                         img_descs[0]["digest"], img, img]),
                           ("an unknown option", ["--bogus", img])):
            rc, out, err = F.run([lp, "probe", "--plain-http", "--root",
                                  fresh_root()] + args)
            if rc != 2 or out or not err.strip():
                fail("probe with %s: exit %d (want 2), stdout %r: %s" %
                     (what, rc, out, F.short(err)))
        print("probe usage: --help exit 0, mistakes exit 2")

        # -- --no-toc: detects without downloading the TOC
        big, bigd = pblobs[1], pdescs[1]
        size = os.path.getsize(big)
        toc_off = stargz_toc_offset(big)
        res = probe(pimg, bigd)
        full = blob_ranges(proxy, bigd["digest"], size)
        res2 = probe(pimg, bigd, "--no-toc")
        part = blob_ranges(proxy, bigd["digest"], size)
        # a wrong digest is not even noticed: the TOC is not read
        res3 = probe(pimg, bigd, "--no-toc", "--toc-digest", wrong)
        if answer_is("of the large-TOC layer", res, 0, "format estargz") \
                and not covered(full, toc_off, size):
            fail("probe did not fetch the TOC [%d, %d): %s" %
                 (toc_off, size, full))
        if answer_is("--no-toc", res2, 0, "format estargz"):
            if served(part) >= size - toc_off or \
                    served(part) >= served(full):
                fail("probe --no-toc fetched %d bytes (%s), the TOC is "
                     "%d, with the TOC %d" % (served(part), part,
                                              size - toc_off, served(full)))
            else:
                print("probe --no-toc: %d bytes fetched, with the %d-byte "
                      "TOC %d" % (served(part), size - toc_off,
                                  served(full)))
        answer_is("--no-toc with a wrong --toc-digest", res3, 0,
                  "format estargz")

        # -- --warm: the landmark range, and nothing without --warm
        lmd = pdescs[0]
        lsize = os.path.getsize(pblobs[0])
        with open(pblobs[0] + ".toc.json") as f:
            toc = json.load(f)
        lm_off = next(e["offset"] for e in toc["entries"]
                      if e["name"] == ".prefetch.landmark")
        cold = fresh_root()
        res = probe(pimg, lmd, root=cold)
        rng = blob_ranges(proxy, lmd["digest"], lsize)
        if answer_is("of the landmark layer", res, 0, "format estargz") \
                and any(a < lm_off for a, _ in rng):
            fail("probe without --warm fetched from the landmark range "
                 "[0, %d): %s" % (lm_off, rng))
        ok, n = cat_gets(cold, pimg, lmd["digest"], "/" + prio[0])
        if ok and n == 0:
            fail("/%s was cached by a probe without --warm" % prio[0])
        warm = fresh_root()
        res = probe(pimg, lmd, "--warm", root=warm)
        rng = blob_ranges(proxy, lmd["digest"], lsize)
        if answer_is("--warm", res, 0, "format estargz") and \
                not covered(rng, 0, lm_off):
            fail("probe --warm did not fetch the landmark range [0, %d): "
                 "%s" % (lm_off, rng))
        for p in prio:
            ok, n = cat_gets(warm, pimg, lmd["digest"], "/" + p)
            if ok and n:
                fail("cat /%s after probe --warm: %d blob requests" % (p, n))
        ok, n = cat_gets(warm, pimg, lmd["digest"], "/chunks/f300000")
        if ok and not n:
            fail("probe --warm cached /chunks/f300000 (not prioritized)")
        print("probe --warm: the landmark range [0, %d) cached, %s read "
              "with no request" % (lm_off, prio))

        # -- --warm --trace: the trace's files, on a layer with no landmark
        esgz = img_descs[0]
        esize = esgz["size"]
        traced = ["/chunks/text.txt", "/chunks/exec"]
        trace = os.path.join(work, "probe.trace")
        with open(trace, "w") as f:
            f.write("lazypull-trace 1\n" + "".join(p + "\n" for p in
                                                  traced))
        cold = fresh_root()
        res = probe(img, esgz, "--trace", trace, root=cold)
        if answer_is("--trace without --warm", res, 0, "format estargz"):
            ok, n = cat_gets(cold, img, esgz["digest"], traced[0])
            if ok and n == 0:
                fail("%s was cached by a probe without --warm" % traced[0])
        warm = fresh_root()
        res = probe(img, esgz, "--warm", "--trace", trace, root=warm)
        before = served(blob_ranges(proxy, esgz["digest"], esize))
        if answer_is("--warm --trace", res, 0, "format estargz"):
            for p in traced:
                ok, n = cat_gets(warm, img, esgz["digest"], p)
                if ok and n:
                    fail("cat %s after probe --warm --trace: %d blob "
                         "requests" % (p, n))
            ok, n = cat_gets(warm, img, esgz["digest"], "/chunks/f300000")
            if ok and not n:
                fail("probe --warm --trace cached /chunks/f300000 (not "
                     "in the trace)")
            print("probe --warm --trace: %s cached (%d of %d bytes "
                  "fetched)" % (traced, before, esize))

        # -- while it warms: the OFD lock on the blob's data file; a
        # second --warm probe answers without warming too
        root = fresh_root()
        data = os.path.join(root, "cache", "blobs", "sha256",
                            lmd["digest"][7:] + ".data")
        proxy.reset()
        # ranged GETs of the blob take 1.5 s: the TOC, then the warm batch
        proxy.add(R.Rule("delay", match=lmd["digest"], method="GET",
                         count=100, ranged=True, seconds=1.5))
        args = [lp, "probe", "--plain-http", "--root", root,
                "--layer-digest", lmd["digest"], "--toc-digest",
                lmd["annotations"][TOC_ANN], "--warm"]
        p = subprocess.Popen(args + [pimg], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        try:
            line = p.stdout.readline()
            rest = p.stdout.read()  # EOF: stdout closed after the answer
            running = p.poll() is None
            locked = os.path.exists(data) and ofd_write_locked(data)
            # its warm request (of the landmark range, from 0) is under
            # way: then a second probe, which must not fetch it again
            t0 = time.time()
            while time.time() - t0 < 10 and not any(
                    a == 0 for a, _ in blob_ranges(proxy, lmd["digest"],
                                                   lsize)):
                time.sleep(0.05)
            # (its only request is the one for the blob's size, a
            # suffix range: the footer and the TOC come from the cache)
            def ranged_gets():
                return [e for e in proxy.blob_gets()
                        if not (e["range"] or "").startswith("bytes=-")]
            n0 = len(ranged_gets())
            t0n = len(proxy.blob_gets())
            rc2, out2, err2 = F.run(args + [pimg], timeout=60)
            n1 = len(ranged_gets())
            tails = len(proxy.blob_gets()) - t0n - (n1 - n0)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if line != b"format estargz\n" or rest or not running:
            fail("probe --warm: answer %r then %r; %s" %
                 (line, rest, "still running" if running else
                  "exited before warming"))
        if not locked:
            fail("probe --warm: no OFD write lock on %s while it warms" %
                 data)
        if rc2 != 0 or out2 != b"format estargz\n" or n1 != n0 or \
                tails != 1:
            fail("a second probe --warm while one warms: exit %d, %r, %d "
                 "blob GETs and %d for the size: %s" %
                 (rc2, out2, n1 - n0, tails, F.short(err2)))
        if p.returncode != 0 or (os.path.exists(data) and
                                 ofd_write_locked(data)):
            fail("probe --warm: exit %d, lock %s after it: %s" %
                 (p.returncode, "held" if os.path.exists(data) and
                  ofd_write_locked(data) else "gone", F.short(err)))
        proxy.reset()
        for q in prio:
            ok, n = cat_gets(root, pimg, lmd["digest"], "/" + q)
            if ok and n:
                fail("cat /%s after the slow probe --warm: %d blob "
                     "requests" % (q, n))
        if locked and running:
            print("probe --warm: answered, then warmed holding the lock on "
                  "%s; a second --warm probe answered without fetching"
                  % os.path.basename(data))
    finally:
        proxy.stop()


def main():
    src, work, lp = F.env_paths()
    R.require_registry_tools(F.skip)
    F.prepare_workdir(work)
    exe = F.build_refgen(src, work)
    layers = {l["name"]: l for l in F.make_layers(src, work)}

    root = os.path.join(work, "oci")
    descs, diff_ids, local = [], [], []
    plan = [("chunks", "estargz"), ("links", "zstdchunked"),
            ("special", "gzip")]
    for name, fmt in plan:
        tar = layers[name]["tar"]
        with open(tar, "rb") as f:
            raw = f.read()
        blob = os.path.join(work, "%s.%s" % (name, fmt))
        ann = None
        mt = "application/vnd.oci.image.layer.v1.tar+gzip"
        if fmt == "gzip":
            with open(blob, "wb") as f:
                f.write(gzip.compress(raw, 6, mtime=0))
        else:
            dg, _ = F.refgen(exe, tar, blob, fmt, chunk=65536)
            ann = {"containerd.io/snapshot/stargz/toc.digest": dg}
            if fmt == "zstdchunked":
                mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        with open(blob, "rb") as f:
            data = f.read()
        descs.append(R.put_blob(root, data, mt, ann))
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        local.append((name, fmt, blob))
    lay = R.ImageLayout(root, descs, diff_ids)
    reg = R.Registry(work, "registry")
    try:
        R.skopeo_push(work, lay, "v1", "%s/test/img:v1" % reg.addr)
        ref = "%s/test/img:v1" % reg.addr
        cache = os.path.join(work, "state")
        common = ["--plain-http", "--root", cache]
        for i, (name, fmt, blob) in enumerate(local):
            what = "layer %d (%s, %s)" % (i, name, fmt)
            rc, want, err = F.run([lp, "ls", "--json", "--digest", blob],
                                  timeout=120)
            rc2, got, err2 = F.run([lp, "ls", "--json", "--digest",
                                    "--layer", str(i)] + common + [ref],
                                   timeout=120)
            if rc or rc2 or want != got:
                fail("%s: ls of the reference differs from the local blob "
                     "(exit %d/%d): %s" % (what, rc, rc2, F.short(err2)))
            rc, out, err = F.run([lp, "inspect", "--json", "--layer",
                                  str(i)] + common + [ref])
            wantfmt = {"estargz": "estargz", "zstdchunked": "zstd:chunked",
                       "gzip": "zran"}[fmt]
            if rc or ('"format":"%s"' % wantfmt).encode() not in out:
                fail("%s: inspect: %s %s" % (what, F.short(out),
                                             F.short(err)))
            rc, out, err = F.run([lp, "check", "--layer", str(i)] + common +
                                 [ref], timeout=120)
            if rc:
                fail("%s: check exit %d: %s" % (what, rc, F.short(err)))
        # --cache-dir: the blob cache and the saved models go there, not
        # to ROOT/cache, and the listing is the same
        croot = os.path.join(work, "croot")
        cdir = os.path.join(work, "elsewhere", "cache")
        d0 = descs[0]["digest"][len("sha256:"):]
        rc, want, err = F.run([lp, "ls", "--json", "--digest", local[0][2]],
                              timeout=120)
        rc2, got, err2 = F.run([lp, "ls", "--json", "--digest", "--layer",
                                "0", "--plain-http", "--root", croot,
                                "--cache-dir", cdir, ref], timeout=120)
        if rc or rc2 or want != got:
            fail("--cache-dir: ls differs (exit %d/%d): %s"
                 % (rc, rc2, F.short(err2)))
        for p in (os.path.join(cdir, "blobs", "sha256", d0 + ".data"),
                  os.path.join(cdir, "models", "sha256", d0 + ".model")):
            if not os.path.isfile(p):
                fail("--cache-dir: no %s" % p)
        if os.path.exists(os.path.join(croot, "cache")):
            fail("--cache-dir: ROOT/cache was made: %s"
                 % os.listdir(os.path.join(croot, "cache")))
        # without --layer: the merged tree (OCI whiteouts applied) of all
        # layers; the expected side merges the local listings the same way
        merged = {}
        for name, fmt, blob in local:
            rc, out, err = F.run([lp, "ls", "--json", "--digest", blob],
                                 timeout=120)
            got, _, _ = F.parse_ls(out)
            for p in sorted(got):
                d, b = p.rsplit("/", 1)
                d = d or "/"
                pre = (d.rstrip("/") + "/")
                if b == ".wh..wh..opq":
                    for q in [q for q in merged if q.startswith(pre)]:
                        del merged[q]
                elif b.startswith(".wh."):
                    gone = pre + b[4:]
                    for q in [q for q in merged
                              if q == gone or q.startswith(gone + "/")]:
                        del merged[q]
            for p, e in got.items():
                b = p.rsplit("/", 1)[1]
                if not b.startswith(".wh."):
                    merged[p] = e
        rc, out, err = F.run([lp, "ls", "--json", "--digest"] + common +
                             [ref], timeout=120)
        got, _, errs = F.parse_ls(out)

        def flat(listing):
            # which name of a hardlinked file is the primary one is an
            # order detail: compare every name with its file's attributes
            out = {}
            for p, e in listing.items():
                if e.get("type") == "hardlink" and e.get("link") in listing:
                    e = dict(listing[e["link"]], path=p)
                out[p] = e
            return out
        diffs = errs + F.diff_listings(flat(merged), flat(got))
        if rc or diffs:
            fail("merged ls of %s (exit %d): %s" %
                 (ref, rc, "; ".join(diffs[:6]) or F.short(err)))
        else:
            print("merged ls: %d entries from %d layers" %
                  (len(got), len(local)))
        # the plain gzip layer's zran index went to the index store, and a
        # corrupt stored index is rebuilt, not trusted
        gz_hex = descs[2]["digest"].split(":", 1)[1]
        idx = os.path.join(cache, "indexes", "sha256", gz_hex + ".zran")
        if not os.path.exists(idx):
            fail("no zran index stored at %s" % idx)
        else:
            with open(idx, "r+b") as f:
                f.seek(100)
                b = f.read(1)
                f.seek(100)
                f.write(bytes([b[0] ^ 0xFF]))
            rc, got, err = F.run([lp, "ls", "--json", "--digest", "--layer",
                                  "2"] + common + [ref], timeout=120)
            rc0, want, _ = F.run([lp, "ls", "--json", "--digest",
                                  local[2][2]], timeout=120)
            if rc or got != want:
                fail("ls with a corrupt stored index: exit %d: %s" %
                     (rc, F.short(err)))
            elif b"rebuilding" not in err:
                fail("corrupt stored index not reported: %s" % F.short(err))
        # the merged view (no --layer) goes through the same store: a
        # truncated or corrupt index is reported by name, rebuilt and
        # replaced, and ls/cat still give the right bytes
        gz_files = [p for p, e in F.parse_ls(
            F.run([lp, "ls", "--json", "--digest", local[2][2]],
                  timeout=120)[1])[0].items()
            if e.get("type") == "reg" and e.get("size")
            and merged.get(p, {}).get("sha256") == e.get("sha256")]
        if os.path.exists(idx) and not gz_files:
            fail("no file of the gzip layer shows in the merged tree")
        for how in ("truncated", "flipped"):
            if not os.path.exists(idx) or not gz_files:
                break
            size = os.path.getsize(idx)
            with open(idx, "r+b") as f:
                if how == "truncated":
                    f.truncate(size // 2)
                else:
                    for off in (40, size // 2, size - 3):
                        f.seek(off)
                        b = f.read(1)
                        f.seek(off)
                        f.write(bytes([b[0] ^ 0x5A]))
            with open(idx, "rb") as f:
                bad = f.read()
            rc, out, err = F.run([lp, "ls", "--json", "--digest"] + common +
                                 [ref], timeout=120)
            got_m, _, errs = F.parse_ls(out)
            diffs = errs + F.diff_listings(flat(merged), flat(got_m))
            if rc or diffs:
                fail("merged ls with a %s stored index (exit %d): %s" %
                     (how, rc, "; ".join(diffs[:6]) or F.short(err)))
            elif idx.encode() not in err or b"rebuilding" not in err:
                fail("merged ls: the %s index %s is not reported: %s" %
                     (how, idx, F.short(err)))
            with open(idx, "rb") as f:
                now = f.read()
            rc2, lst, err2 = F.run([lp, "ls", "--json", "--digest",
                                    "--index", idx, local[2][2]],
                                   timeout=120)
            rc0, want, _ = F.run([lp, "ls", "--json", "--digest",
                                  local[2][2]], timeout=120)
            if now == bad or len(now) != size or rc2 or lst != want:
                fail("merged ls: the %s index was not rewritten valid "
                     "(%d bytes, was %d; ls --index exit %d: %s)" %
                     (how, len(now), size, rc2, F.short(err2)))
            # corrupt it again: cat of the merged image rebuilds it too
            with open(idx, "r+b") as f:
                f.truncate(size - 1)
            path = gz_files[0]
            rc, out, err = F.run([lp, "cat"] + common + [ref, path],
                                 timeout=120)
            if rc or hashlib.sha256(out).hexdigest() != \
                    merged[path]["sha256"]:
                fail("merged cat %s with a bad stored index: exit %d: %s" %
                     (path, rc, F.short(err)))
            elif b"rebuilding" not in err or \
                    os.path.getsize(idx) != size:
                fail("merged cat did not rebuild the index: %s" %
                     F.short(err))
            else:
                print("merged ls/cat with a %s stored index: rebuilt, "
                      "%s ok" % (how, path))
        left = [n for n in os.listdir(os.path.dirname(idx))
                if not n.endswith(".zran")]
        if left:
            fail("temporary files left in the index store: %s" % left)
        # a registry that lies about the plain gzip layer with bytes gzip
        # cannot tell apart (its header's mtime): the layer digest catches
        # the lie; nothing is indexed and the bytes leave the cache, so the
        # honest registry is asked again next time
        liar = R.Proxy(reg.addr)
        try:
            liar.add(R.Rule("gzip_mtime", match=gz_hex, count=1000))
            lroot = os.path.join(work, "liar")
            lidx = os.path.join(lroot, "indexes", "sha256", gz_hex + ".zran")
            rc, out, err = F.run([lp, "ls", "--layer", "2", "--plain-http",
                                  "--root", lroot,
                                  ref.replace(reg.addr, liar.addr)],
                                 timeout=120)
            if rc != 1 or b"have the digest" not in err or out:
                fail("ls of a lied-about gzip layer: exit %d, %d bytes "
                     "out: %s" % (rc, len(out), F.short(err)))
            elif os.path.exists(lidx):
                fail("a lied-about gzip layer was indexed: %s" % lidx)
            else:
                rc, got, err = F.run([lp, "ls", "--json", "--digest",
                                      "--layer", "2", "--plain-http",
                                      "--root", lroot, ref], timeout=120)
                rc0, want, _ = F.run([lp, "ls", "--json", "--digest",
                                      local[2][2]], timeout=120)
                if rc or got != want:
                    fail("ls after the lie, from the honest registry: "
                         "exit %d: %s" % (rc, F.short(err)))
                else:
                    print("gzip layer with a lied mtime: refused, digest "
                          "mismatch; then indexed from the honest registry")
        finally:
            liar.stop()
        # cat through a cold cache fetches part of the blob, then nothing
        cold = ["--plain-http", "--root", os.path.join(work, "cold")]
        x = os.path.join(work, "x")
        F.extract(layers["chunks"]["tar"], x)
        with open(os.path.join(x, "chunks", "f65537"), "rb") as f:
            truth = f.read()
        for n in (1, 2):
            rc, out, err = F.run([lp, "cat", "-v", "--layer", "0"] + cold +
                                 [ref, "/chunks/f65537"])
            m = re.search(rb"fetched: (\d+) requests, (\d+) bytes", err)
            if rc or out != truth or not m:
                fail("cat #%d: exit %d, %d bytes (want %d): %s" %
                     (n, rc, len(out), len(truth), F.short(err)))
                continue
            reqs, got = int(m.group(1)), int(m.group(2))
            size = os.path.getsize(local[0][2])
            print("cat #%d of /chunks/f65537: %d requests, %d bytes of a "
                  "%d-byte blob" % (n, reqs, got, size))
            if n == 1 and not 0 < got < size // 2:
                fail("cold cat fetched %d of %d bytes" % (got, size))
            if n == 2 and reqs != 0:
                fail("warm cat made %d requests" % reqs)
        # a registry that fails every read of the blob: the read of a
        # one-chunk file fails after the fetcher's tries (1 + --retries),
        # not after a second round of them (the engine fetches again only
        # bytes that came but did not decode or verify)
        down = R.Proxy(reg.addr)
        try:
            droot = ["--plain-http", "--root", os.path.join(work, "down")]
            dref = ref.replace(reg.addr, down.addr)
            rc, _, err = F.run([lp, "ls", "--layer", "0"] + droot + [dref])
            down.add(R.Rule("status", code=503, count=100000, ranged=True,
                            match=descs[0]["digest"]))
            n0 = len(down.blob_gets())
            rc, out, err = F.run([lp, "cat", "--layer", "0", "--retries",
                                  "2"] + droot + [dref, "/chunks/f65535"],
                                 timeout=120)
            tries = down.tries()
            if rc != 1 or out or not err.strip():
                fail("cat with the registry failing: exit %d, %d bytes: "
                     "%s" % (rc, len(out), F.short(err)))
            elif not tries or max(tries.values()) != 3:
                fail("cat with the registry failing: tries of one range "
                     "%s (want 3: 1 + --retries 2); %d reads before" %
                     (tries, n0))
            else:
                print("cat with the registry failing: exit 1 after 3 "
                      "tries of each range (%d ranges)" % len(tries))
        finally:
            down.stop()
        # --hosts-dir: a pull-through cache registry as the mirror; reads
        # go to it, and to the origin once it is stopped
        mreg = R.Registry(work, "mirror", remote="http://%s" % reg.addr)
        try:
            hd = R.hosts_toml(os.path.join(work, "certs.d"), reg.addr,
                              '[host."http://%s"]\n' % mreg.addr)
            for n, root in ((1, "mirror-1"), (2, "mirror-2")):
                if n == 2:
                    mreg.stop()
                rc, out, err = F.run([lp, "cat", "-v", "--layer", "0",
                                      "--plain-http", "--hosts-dir", hd,
                                      "--root", os.path.join(work, root),
                                      ref, "/chunks/f65537"])
                via = len([ln for ln in err.splitlines()
                           if ("/%s/v2/test/img/blobs/" % mreg.addr)
                           .encode() in ln and b" -> 20" in ln])
                if rc or out != truth:
                    fail("cat via mirror #%d: exit %d: %s" %
                         (n, rc, F.short(err)))
                elif (n == 1) != (via > 0):
                    fail("cat via mirror #%d: %d blob reads from the "
                         "mirror: %s" % (n, via, F.short(err)))
                else:
                    print("cat with a mirror %s: ok, %d blob reads from "
                          "it" % ("up" if n == 1 else "stopped", via))
        finally:
            mreg.stop()
        # a layer that does not exist, a repository that does not exist
        rc, out, err = F.run([lp, "ls", "--layer", "7"] + common + [ref])
        if not 0 < rc < 128 or not err.strip():
            fail("--layer 7: exit %d: %s" % (rc, F.short(err)))
        rc, out, err = F.run([lp, "ls", "--layer", "0"] + common +
                             ["%s/no/such:v1" % reg.addr])
        if not 0 < rc < 128 or not err.strip():
            fail("missing repo: exit %d: %s" % (rc, F.short(err)))
        else:
            print("missing repo: %s" % F.short(err).strip())
        # a registry that accepts connections and never answers: with
        # --timeout 2 --retries 0 a clear error in bounded time
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        try:
            t0 = time.time()
            rc, out, err = F.run([lp, "ls", "--layer", "0", "--plain-http",
                                  "--timeout", "2", "--retries", "0",
                                  "--root", os.path.join(work, "mute"),
                                  "127.0.0.1:%d/test/img:v1" %
                                  mute.getsockname()[1]])
            secs = time.time() - t0
            if not 0 < rc < 128 or not err.strip() or secs > 8:
                fail("silent registry, --timeout 2: exit %d after %.1fs: "
                     "%s" % (rc, secs, F.short(err)))
            else:
                print("silent registry, --timeout 2 --retries 0: exit %d "
                      "after %.1fs: %s" % (rc, secs, F.short(err).strip()))
        finally:
            mute.close()
        probe_checks(work, lp, exe, layers, reg, descs)
    finally:
        reg.stop()
    print("%d failure(s)" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
