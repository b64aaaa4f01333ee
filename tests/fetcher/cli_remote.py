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

Env: LAZYPULL, SRCDIR, WORKDIR.  Exit 77 = skipped."""
import gzip
import hashlib
import os
import re
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
sys.path.insert(0, HERE)
import fmtlib as F  # noqa: E402
import run as R  # noqa: E402

fails = []


def fail(msg):
    fails.append(msg)
    print("FAIL: " + msg)


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
    finally:
        reg.stop()
    print("%d failure(s)" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
