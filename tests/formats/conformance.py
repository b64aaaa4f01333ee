#!/usr/bin/env python3
"""conformance: one layer in eStargz, zstd:chunked and plain gzip (one and
two gzip members, streamed and through a saved zran index) must give the
same model: `lazypull ls --json --digest` output identical byte for byte,
and `lazypull check` passing on each.

eStargz and zstd:chunked blobs come from the upstream Go library
(tests/refgen); the gzip layers from Python's gzip module.
Env: LAZYPULL, SRCDIR, WORKDIR. Exit 77 = skipped."""
import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmtlib as F  # noqa: E402


def two_members(tar_bytes):
    """Split the tar in the middle of a block and gzip both halves as
    separate members (as `cat a.gz b.gz` does)."""
    cut = (len(tar_bytes) // 2) + 137
    return (gzip.compress(tar_bytes[:cut], 6, mtime=0) +
            gzip.compress(tar_bytes[cut:], 9, mtime=0))


def main():
    src, work, lp = F.env_paths()
    F.prepare_workdir(work)
    exe = F.build_refgen(src, work)
    layers = F.make_layers(src, work)
    failures = 0
    cases = 0
    for layer in layers:
        name = layer["name"]
        tar = layer["tar"]
        with open(tar, "rb") as f:
            raw = f.read()
        blobs = {}
        for fmt in ("estargz", "zstdchunked"):
            b = os.path.join(work, "%s.%s" % (name, fmt))
            F.refgen(exe, tar, b, fmt, chunk=65536)
            blobs[fmt] = (b, [])
        g1 = os.path.join(work, name + ".gz")
        with open(g1, "wb") as f:
            f.write(gzip.compress(raw, 6, mtime=0))
        blobs["gzip"] = (g1, [])
        g2 = os.path.join(work, name + ".2m.gz")
        with open(g2, "wb") as f:
            f.write(two_members(raw))
        blobs["gzip-2members"] = (g2, [])
        idx = g2 + ".idx"
        rc, out, err = F.run([lp, "index", "build", "-q", g2, "-o", idx])
        if rc != 0:
            print("not ok - %s: index build: %s" % (name, F.short(err)))
            failures += 1
            continue
        blobs["gzip-2members-index"] = (g2, ["--index", idx])

        want_fmt = {"estargz": "estargz", "zstdchunked": "zstd:chunked"}
        ref = None
        for label, (blob, extra) in blobs.items():
            cases += 1
            rc, out, err = F.run([lp, "ls", "--json", "--digest"] + extra +
                                 [blob], timeout=120)
            problems = []
            if rc != 0:
                problems.append("ls exit %d: %s" % (rc, F.short(err)))
            rc2, out2, err2 = F.run([lp, "check"] + extra + [blob],
                                    timeout=120)
            if rc2 != 0:
                problems.append("check exit %d: %s" % (rc2, F.short(err2)))
            rc3, out3, _ = F.run([lp, "inspect", "--json"] + extra + [blob])
            fmt = want_fmt.get(label, "zran")
            if rc3 != 0 or ('"format":"%s"' % fmt).encode() not in out3:
                problems.append("inspect: want format %s: %s" %
                                (fmt, F.short(out3)))
            if ref is None and not problems:
                ref = (label, out)
            elif ref is not None and out != ref[1]:
                a, _, _ = F.parse_ls(ref[1])
                b, _, _ = F.parse_ls(out)
                diffs = F.diff_listings(a, b)
                problems.append("model differs from %s: %s" %
                                (ref[0], "; ".join(diffs[:8]) or
                                 "(same entries, different bytes)"))
            if problems:
                failures += 1
                print("not ok - %s/%s" % (name, label))
                for p in problems:
                    print("    " + p)
            else:
                print("ok - %s/%s" % (name, label))
    print("%d/%d cases passed" % (cases - failures, cases))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
