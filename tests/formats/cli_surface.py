#!/usr/bin/env python3
"""cli-surface: the lazypull command line on local inputs, one part per test.

  --part help     every command that `lazypull --help` lists (and every
                  subcommand its usage names, e.g. `index build`):
                  `CMD --help` and `CMD -h` exit 0 with the same non-empty
                  text on stdout starting "Usage: lazypull CMD", nothing on
                  stderr; `CMD --no-such-option` exits 2 with nothing on
                  stdout, the option named and the usage on stderr.  Also
                  the top level (--help, --version, no command, an unknown
                  command or option).
  --part estargz  local eStargz / zstd:chunked blobs (the checked-in
                  testdata/reference/estargz blobs, and the "chunks" layer
                  of testdata/layers/mklayers.py built with tests/refgen when
                  Go is there): `check --toc-digest D` with the digest
                  `inspect --json` gives (and refgen gives) exits 0; a wrong
                  or malformed digest fails (check, ls, inspect, cat) with a
                  message naming the TOC digest; `cat -v` writes exactly the
                  file's bytes and reports on stderr its size, its chunk
                  count (from the TOC) and the compressed bytes read, which
                  must be > 0 and at most the compressed extent of that
                  file's chunks in the blob (so far less than the blob).
  --part rafs     nydus RAFS vectors (testdata/reference/rafs, see its
                  README; the same files tests/unit/test-rafs.c reads):
                  v5 bootstraps + blob: inspect says rafs-v5, check exits 0,
                  every file's cat matches the md5 of its .result, ls --json
                  --digest agrees with cat and with the .result tree; the v6
                  2.2 bootstrap + blob likewise (cat == `zstd -d` of its
                  chunks, when zstd is installed); the nydus-snapshotter
                  bootstrap layers (image/image.boot in a tar.gz): ls lists
                  the 3517 entries of the golden listing
                  testdata/rafs/snapshotter-layer.list.gz, field by field;
                  invalid, truncated and corrupted bootstraps, missing blobs:
                  exit 1..127 with a message, no stdout bytes, no hang.

Every lazypull run has a 20 s limit.  Env: LAZYPULL, SRCDIR, WORKDIR (see
fmtlib.py).  Exit 77 = skipped (no lazypull binary).
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmtlib as F  # noqa: E402

Case = F.Case


def clean_failure(c, what, rc, out, err, stdout_ok=False):
    """Exit 1..127 within the limit, a message on stderr, (no stdout)."""
    if rc == -9:
        c.fail("%s: hung (killed after %d s)" % (what, F.TIMEOUT))
    elif rc < 0 or rc >= 128:
        c.fail("%s: crashed (exit %d): %s" % (what, rc, F.short(err)))
    elif rc == 0:
        c.fail("%s: exit 0, expected a failure; stdout: %s" %
               (what, F.short(out, 200)))
    elif not err.strip():
        c.fail("%s: exit %d without a message on stderr" % (what, rc))
    else:
        if out and not stdout_ok:
            c.fail("%s: failed (exit %d) but wrote %d bytes to stdout" %
                   (what, rc, len(out)))
        return True
    return False


def ok_run(c, what, rc, out, err):
    if rc != 0:
        c.fail("%s: exit %d: %s" % (what, rc, F.short(err)))
        return False
    return True


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------
# --part help

def help_commands(text):
    """Command names from the "Commands:" block of `lazypull --help`."""
    cmds, inblock = [], False
    for line in text.splitlines():
        if line.strip() == "Commands:":
            inblock = True
            continue
        if inblock:
            m = re.match(r"^ {2}([a-z][a-z0-9-]*)\s{2,}\S", line)
            if not m:
                if cmds:
                    break
                continue
            cmds.append(m.group(1))
    return cmds


def subcommands(cmd, help_text):
    """Subcommands a command's usage lines name ("lazypull index build")."""
    subs = []
    for line in help_text.splitlines():
        if not line.strip():
            break  # the usage block ends at the first blank line
        m = re.search(r"lazypull %s ([a-z][a-z0-9-]*)\b" % re.escape(cmd), line)
        if m and m.group(1) not in subs:
            subs.append(m.group(1))
    return subs


# Listed today; a command that vanishes from `lazypull --help` is a failure,
# a new one is covered through the parsed list.
KNOWN = ("inspect", "ls", "cat", "check", "manifest", "index", "mount",
         "umount", "probe")
KNOWN_SUBS = {"index": ["build"]}


def check_help(c, lp, words):
    name = " ".join(words)
    rc, out, err = F.run([lp] + words + ["--help"])
    if not ok_run(c, "%s --help" % name, rc, out, err):
        return out
    text = out.decode("utf-8", "replace")
    want = "Usage: lazypull %s" % name
    c.expect(text.strip() != "", "%s --help: empty output" % name)
    c.expect(text.startswith(want) and text[len(want):len(want) + 1] in
             (" ", "\n"),
             "%s --help: stdout does not start with %r: %r" %
             (name, want, text[:80]))
    c.expect(len(text.splitlines()) >= 3,
             "%s --help: only %d lines" % (name, len(text.splitlines())))
    c.expect(text.endswith("\n"), "%s --help: no final newline" % name)
    c.expect(err == b"", "%s --help: wrote to stderr: %s" % (name,
                                                             F.short(err)))
    if "-h, --help" not in text:
        c.note("%s --help does not list -h, --help" % name)
    rc2, out2, err2 = F.run([lp] + words + ["-h"])
    c.expect(rc2 == 0 and out2 == out,
             "%s -h: exit %d, %s the --help text" %
             (name, rc2, "same as" if out2 == out else "not"))

    rc, o, e = F.run([lp] + words + ["--no-such-option"])
    c.expect(rc == 2, "%s --no-such-option: exit %d, expected 2 (%s)" %
             (name, rc, F.short(e)))
    c.expect(o == b"", "%s --no-such-option: wrote to stdout: %s" %
             (name, F.short(o)))
    es = e.decode("utf-8", "replace")
    c.expect("--no-such-option" in es,
             "%s --no-such-option: stderr does not name the option: %s" %
             (name, F.short(e)))
    c.expect(want in es, "%s --no-such-option: no %r on stderr: %s" %
             (name, want, F.short(e)))
    return out


def part_help(src, work, lp):
    c = Case("lazypull --help")
    rc, out, err = F.run([lp, "--help"])
    ok_run(c, "--help", rc, out, err)
    top = out.decode("utf-8", "replace")
    c.expect(top.startswith("Usage: lazypull "),
             "--help: does not start with 'Usage: lazypull ': %r" % top[:60])
    cmds = help_commands(top)
    c.expect(len(cmds) >= len(KNOWN),
             "parsed only %d commands from --help: %s" % (len(cmds), cmds))
    for k in KNOWN:
        c.expect(k in cmds, "command %r is no longer listed in --help" % k)
    c.expect(len(set(cmds)) == len(cmds), "a command listed twice: %s" % cmds)
    for extra in sorted(set(cmds) - set(KNOWN)):
        c.note("new command %r (covered below)" % extra)
    c.expect(run_eq(lp, ["-h"], out), "-h: not the --help text")

    c = Case("top level: --version, no command, unknown command/option")
    rc, out, err = F.run([lp, "--version"])
    c.expect(rc == 0 and re.match(rb"^lazypull \S+\n$", out),
             "--version: exit %d, %r" % (rc, out[:80]))
    rc, out, err = F.run([lp])
    c.expect(rc == 2 and b"Usage: lazypull" in out + err,
             "no command: exit %d, expected 2 with a usage" % rc)
    for bad in (["no-such-command"], ["--no-such-option"]):
        rc, out, err = F.run([lp] + bad)
        c.expect(rc == 2, "%s: exit %d, expected 2" % (bad[0], rc))
        c.expect(out == b"", "%s: wrote to stdout" % bad[0])
        c.expect(bad[0].encode() in err and b"--help" in err,
                 "%s: stderr does not name it and point to --help: %s" %
                 (bad[0], F.short(err)))

    for cmd in cmds:
        c = Case("%s --help / --no-such-option" % cmd)
        text = check_help(c, lp, [cmd]).decode("utf-8", "replace")
        subs = subcommands(cmd, text)
        for s in KNOWN_SUBS.get(cmd, []):
            c.expect(s in subs, "%s --help no longer names subcommand %r" %
                     (cmd, s))
        for s in subs:
            c2 = Case("%s %s --help / --no-such-option" % (cmd, s))
            check_help(c2, lp, [cmd, s])


def run_eq(lp, args, want):
    rc, out, err = F.run([lp] + args)
    return rc == 0 and out == want


# ---------------------------------------------------------------------------
# --part estargz

CAT_V = re.compile(r"(\d+) bytes from (\d+) chunks?, (\d+) compressed bytes "
                   r"read of (\d+) in the blob")
ZERO = "sha256:" + "0" * 64


def read_toc(blob_path, fmt):
    """The TOC JSON of an eStargz or zstd:chunked blob, and its offset."""
    with open(blob_path, "rb") as f:
        blob = f.read()
    if fmt == "zstdchunked":
        off, clen = struct.unpack("<QQ", blob[-40:-24])
        zstd = shutil.which("zstd")
        if not zstd:
            return None, off
        r = subprocess.run([zstd, "-dc"], input=blob[off:off + clen],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           check=True)
        return json.loads(r.stdout), off
    off = int(blob[-51 + 16:-51 + 32], 16)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob[off:-51]))) as t:
        return json.load(t.extractfile("stargz.index.json")), off


def chunk_extent(toc, tocoff, path):
    """(number of chunks, compressed bytes spanned by them) of path: each
    chunk from its offset to the next entry's offset (or the TOC)."""
    ents = toc["entries"]
    n, span, cur = 0, 0, None
    for i, e in enumerate(ents):
        if e["type"] != "chunk":
            cur = e["name"]
        if cur == path and e["type"] in ("reg", "chunk") and e.get("offset"):
            nxt = next((x["offset"] for x in ents[i + 1:] if x.get("offset")),
                       tocoff)
            n += 1
            span += nxt - e["offset"]
    return n, span


def primary_of(toc, path):
    m = {e["name"]: e for e in toc["entries"] if e["type"] != "chunk"}
    while m[path]["type"] == "hardlink":
        path = F.clean(m[path]["linkName"])
    return path


def run_in(cwd, args):
    """F.run in another working directory."""
    try:
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=F.TIMEOUT, cwd=cwd)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as ex:
        return -9, ex.stdout or b"", (ex.stderr or b"") + b"\n[TIMEOUT]"


def estargz_blob(c, lp, blob, fmt, truths, files, ref_digest=None,
                 compressible=()):
    size = os.path.getsize(blob)
    rc, out, err = F.run([lp, "inspect", "--json", blob])
    if not ok_run(c, "inspect --json", rc, out, err):
        return
    info = json.loads(out)
    dg = info.get("toc_digest", "")
    want_fmt = {"estargz": "estargz", "zstdchunked": "zstd:chunked"}[fmt]
    c.expect(info.get("format") == want_fmt, "inspect: format %r, expected %r"
             % (info.get("format"), want_fmt))
    c.expect(re.match(r"^sha256:[0-9a-f]{64}$", dg),
             "inspect: toc_digest %r is not sha256:<64 hex>" % dg)
    c.expect(info.get("blob_size") == size, "inspect: blob_size %r != %d" %
             (info.get("blob_size"), size))
    if ref_digest is not None:
        c.expect(dg == ref_digest, "inspect: toc_digest %s, the upstream "
                 "writer says %s" % (dg, ref_digest))

    # the right digest
    rc, out, err = F.run([lp, "check", "--toc-digest", dg, blob])
    if ok_run(c, "check --toc-digest <right>", rc, out, err):
        c.expect(dg.encode() in out and b" 0 bad" in out,
                 "check --toc-digest <right>: summary without the digest or "
                 "'0 bad': %s" % F.short(out))
    rc, out, err = F.run([lp, "check", "-q", "--toc-digest", dg, blob])
    ok_run(c, "check -q --toc-digest <right>", rc, out, err)

    # wrong digests: one hex digit off, and all zeros
    last = dg[-1]
    off_by_one = dg[:-1] + ("0" if last != "0" else "1")
    # (run from the blob's directory: lazypull's messages are cut at 255
    # bytes, and a long blob path would cut off the digests; see below)
    for label, wrong in (("last digit changed", off_by_one), ("zeros", ZERO)):
        what = "check --toc-digest <%s>" % label
        rc, out, err = run_in(os.path.dirname(blob),
                              [lp, "check", "--toc-digest", wrong,
                               os.path.basename(blob)])
        if clean_failure(c, what, rc, out, err):
            es = err.decode("utf-8", "replace")
            c.expect(re.search(r"\btoc\b", es, re.I) and "digest" in es.lower(),
                     "%s: the error does not mention the TOC digest: %s" %
                     (what, F.short(err)))
            c.expect(wrong in es, "%s: the error does not show the expected "
                     "digest %s: %s" % (what, wrong, F.short(err)))
    rc, out, err = F.run([lp, "check", "--toc-digest", ZERO,
                          os.path.abspath(blob)])
    if rc != 0 and ZERO.encode() not in err:
        c.note("with the blob's absolute path (%d bytes) the mismatch message "
               "is cut before the expected digest: %s" %
               (len(os.path.abspath(blob)), F.short(err, 400)))
    # the other commands take --toc-digest too ("a mismatch is an error")
    for cmd in (["ls", "--json"], ["inspect", "--json"], ["cat"]):
        args = [lp] + cmd + ["--toc-digest", ZERO, blob]
        if cmd == ["cat"]:
            args.append("/" + files[0])
        rc, out, err = F.run(args)
        if clean_failure(c, "%s --toc-digest <zeros>" % " ".join(cmd), rc,
                         out, err):
            c.expect(b"digest" in err.lower(),
                     "%s --toc-digest <zeros>: the error does not mention the "
                     "digest: %s" % (" ".join(cmd), F.short(err)))
    # malformed
    for bad in ("sha256:abc", "md5:" + "0" * 32, dg + "0", ""):
        rc, out, err = F.run([lp, "check", "--toc-digest", bad, blob])
        if clean_failure(c, "check --toc-digest %r" % bad, rc, out, err):
            c.expect(b"toc-digest" in err or b"digest" in err,
                     "check --toc-digest %r: the error does not name the "
                     "option: %s" % (bad, F.short(err)))

    # cat -v: the bytes, and what it says it read
    toc, tocoff = read_toc(blob, fmt)
    if toc is None:
        c.note("zstd not installed: the chunk extents of %s are not checked"
               % os.path.basename(blob))
    for path in files:
        rc, out, err = F.run([lp, "cat", "-v", blob, "/" + path])
        what = "cat -v /%s" % path
        if not ok_run(c, what, rc, out, err):
            continue
        truth = truths[path]
        c.expect(out == truth, "%s: %d bytes on stdout, %s the file's %d" %
                 (what, len(out), "equal to" if out == truth else
                  "NOT equal to", len(truth)))
        m = CAT_V.search(err.decode("utf-8", "replace"))
        if not c.expect(m, "%s: no 'N bytes from K chunks, C compressed bytes "
                        "read of B in the blob' on stderr: %s" %
                        (what, F.short(err))):
            continue
        nbytes, nchunks, comp, total = (int(x) for x in m.groups())
        c.expect(nbytes == len(truth), "%s: reports %d bytes, the file has %d"
                 % (what, nbytes, len(truth)))
        c.expect(total == size, "%s: reports a blob of %d bytes, it has %d" %
                 (what, total, size))
        c.expect(0 < comp < size, "%s: %d compressed bytes read of a %d-byte "
                 "blob" % (what, comp, size))
        if toc is not None:
            want_n, span = chunk_extent(toc, tocoff, primary_of(toc, path))
            c.expect(nchunks == want_n, "%s: reports %d chunks, the TOC has %d"
                     % (what, nchunks, want_n))
            c.expect(comp <= span, "%s: %d compressed bytes read, but the "
                     "file's chunks span only %d bytes of the blob" %
                     (what, comp, span))
            c.note("%s: %d bytes, %d chunks, %d of %d compressed bytes read "
                   "(chunks span %d)" % (what, nbytes, nchunks, comp, size,
                                         span))
        if path in compressible:
            c.expect(comp < nbytes // 4, "%s: compressible text, yet %d "
                     "compressed bytes read for %d bytes" % (what, comp,
                                                             nbytes))
        # -v does not change stdout
        rc2, out2, _ = F.run([lp, "cat", blob, "/" + path])
        c.expect(rc2 == 0 and out2 == out, "%s: stdout differs from plain cat"
                 % what)


def tar_truths(tar):
    out = {}
    with tarfile.open(tar) as tf:
        for m in tf:
            if m.isreg() or m.islnk():
                f = tf.extractfile(m)
                if f is not None:
                    out[F.clean(m.name)] = f.read()
    return out


def part_estargz(src, work, lp):
    ref = os.path.join(src, "testdata", "reference", "estargz")
    esgz = os.path.join(ref, "links-esgz-c64k.tar.gz")
    zst = os.path.join(ref, "links-zstdchunked-c64k.tar.zst")
    # an eStargz blob is a gzip tar too: the truth is its own tar stream
    truths = tar_truths(esgz)
    # bin/busybox: 2 chunks; sbin/init: a hardlink to it; libbig.so.1: a
    # hardlink to a 5-chunk file; etc/passwd: one small chunk
    files = ["bin/busybox", "sbin/init", "etc/passwd", "lib/libbig.so.1"]
    c = Case("reference eStargz blob (links, 64 KiB chunks)")
    if c.expect(all(f in truths for f in files),
                "reference blob misses one of %s" % files):
        estargz_blob(c, lp, esgz, "estargz", truths, files)
    c = Case("reference zstd:chunked blob (links, 64 KiB chunks)")
    if c.expect(all(f in truths for f in files), "truths incomplete"):
        estargz_blob(c, lp, zst, "zstdchunked", truths, files)

    # the "chunks" layer (~5 MB) through the upstream writer, if Go is here
    go = shutil.which("go")
    if not go or not os.path.isdir(os.path.join(F.GOCODE, "src",
                                                F.ESTARGZ_PKG)):
        c = Case("chunks layer via refgen")
        c.note("SKIPPED: go or the estargz sources missing")
        return
    exe = F.build_refgen(src, work)
    layers = {l["name"]: l for l in F.make_layers(src, work)}
    tar = layers["chunks"]["tar"]
    truths = tar_truths(tar)
    # f65537: 2 chunks; f1: 1; text.txt: compressible, 4 chunks
    files = ["chunks/f65537", "chunks/f1", "chunks/text.txt"]
    for fmt in ("estargz", "zstdchunked"):
        c = Case("chunks layer, %s via refgen (64 KiB chunks)" % fmt)
        blob = os.path.join(work, "chunks-%s.blob" % fmt)
        try:
            dg, _ = F.refgen(exe, tar, blob, fmt, 65536)
        except RuntimeError as ex:
            c.fail("reference blob: %s" % ex)
            continue
        estargz_blob(c, lp, blob, fmt, truths, files, ref_digest=dg,
                     compressible=("chunks/text.txt",))


# ---------------------------------------------------------------------------
# --part rafs

V5_BLOB = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"
V6_BLOB = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
LAYER_ENTRIES = 3517  # 3515 inodes + 2 extra hardlink names (test-rafs.c)


def parse_result(path):
    """The .result file: `tree -J` JSON, then `md5sum` lines."""
    with open(path) as f:
        text = f.read()
    end = text.index("\n]\n") + 3
    tree = json.loads(text[:end])
    md5 = {}
    for line in text[end:].splitlines():
        if line.strip():
            h, p = line.split("  ", 1)
            md5[p] = h
    return tree, md5


def tree_entries(tree):
    """path -> ("directory"|"file"|"link", target) from `tree -J`."""
    out = {}

    def walk(node, prefix):
        for ch in node.get("contents", []):
            p = prefix + "/" + ch["name"]
            out[p] = (ch["type"], ch.get("target"))
            if ch["type"] == "directory":
                walk(ch, p)
    walk(tree[0], "")
    return out


def ls_listing(c, lp, args, what):
    rc, out, err = F.run([lp, "ls", "--json"] + args)
    if not ok_run(c, what, rc, out, err):
        return None
    got, order, errs = F.parse_ls(out)
    for e in errs:
        c.fail("%s: %s" % (what, e))
    return got


def inspect_json(c, lp, args, what):
    rc, out, err = F.run([lp, "inspect", "--json"] + args)
    if not ok_run(c, what, rc, out, err):
        return {}
    try:
        return json.loads(out)
    except ValueError as ex:
        c.fail("%s: not JSON (%s)" % (what, ex))
        return {}


def rafs_v5(c, lp, ref, name, work):
    boot = os.path.join(ref, name)
    bd = ["--blob-dir", os.path.join(ref, "blobs")]
    tree, md5 = parse_result(boot + ".result")
    info = inspect_json(c, lp, bd + [boot], "inspect --json")
    c.expect(info.get("format") == "rafs-v5", "inspect: format %r, expected "
             "rafs-v5" % info.get("format"))
    c.expect(info.get("blobs") == 1, "inspect: %r blobs, expected 1" %
             info.get("blobs"))
    rc, out, err = F.run([lp, "inspect", boot])
    c.expect(rc == 0 and V5_BLOB.encode() in out,
             "inspect: exit %d, data blob id %s not shown" % (rc, V5_BLOB[:12]))

    rc, out, err = F.run([lp, "check"] + bd + [boot])
    if ok_run(c, "check --blob-dir", rc, out, err):
        c.expect(b" 0 bad" in out, "check: summary without '0 bad': %s" %
                 F.short(out))

    got = ls_listing(c, lp, ["--digest"] + bd + [boot], "ls --json --digest")
    if got is None:
        return

    # the tree: every name with its type (and symlink target) as upstream
    # saw it on a mounted image
    want = tree_entries(tree)
    kinds = {"dir": "directory", "reg": "file", "symlink": "link",
             "hardlink": "file"}
    mine = {p: (kinds.get(o["type"], o["type"]),
                o.get("link") if o["type"] == "symlink" else None)
            for p, o in got.items() if p != "/"}
    for p in sorted(set(want) | set(mine)):
        if want.get(p) != mine.get(p):
            c.fail("tree: %s is %s in the .result, %s in ls" %
                   (p, want.get(p), mine.get(p)))

    # every regular file and hardlink name: cat == the .result md5, and
    # ls's sha256 == sha256 of cat's bytes
    files = sorted(p for p, o in got.items() if o["type"] in ("reg",
                                                             "hardlink"))
    c.expect(sorted(md5) == files, "the .result md5 list has %d paths, ls "
             "lists %d files and hardlinks: %s" %
             (len(md5), len(files), sorted(set(md5) ^ set(files))[:5]))
    nbytes = 0
    for p in files:
        rc, out, err = F.run([lp, "cat"] + bd + [boot, p])
        if not ok_run(c, "cat %s" % p, rc, out, err):
            continue
        nbytes += len(out)
        if p in md5:
            c.expect(hashlib.md5(out).hexdigest() == md5[p],
                     "cat %s: md5 %s, the .result says %s" %
                     (p, hashlib.md5(out).hexdigest(), md5[p]))
        o = got[p]
        if o["type"] == "hardlink":
            o = got.get(o.get("link"), {})
        c.expect(o.get("sha256") == sha256(out),
                 "ls --digest %s: sha256 %s, cat's bytes hash to %s" %
                 (p, o.get("sha256"), sha256(out)))
        c.expect(o.get("size") == len(out), "ls %s: size %s, cat gave %d" %
                 (p, o.get("size"), len(out)))
    c.note("%d files and hardlink names, %d bytes read back and compared" %
           (len(files), nbytes))

    # the data blob missing: a clear error naming it; no --blob-dir: the
    # data are not in the bootstrap, so a clean failure, no bytes
    empty = os.path.join(work, "empty")
    os.makedirs(empty, exist_ok=True)
    rc, out, err = F.run([lp, "cat", "--blob-dir", empty, boot,
                          "/hardlink-test/foo"])
    if clean_failure(c, "cat with the data blob missing", rc, out, err):
        c.expect(V5_BLOB.encode() in err, "cat with the data blob missing: "
                 "the error does not name blob %s: %s" %
                 (V5_BLOB[:12], F.short(err)))
    rc, out, err = F.run([lp, "check", "--blob-dir", empty, boot])
    clean_failure(c, "check with the data blob missing", rc, out, err,
                  stdout_ok=True)
    rc, out, err = F.run([lp, "cat", boot, "/hardlink-test/foo"])
    if clean_failure(c, "cat without --blob-dir", rc, out, err) and \
            V5_BLOB.encode() not in err and b"blob-dir" not in err:
        c.note("cat without --blob-dir: the error does not name the "
               "missing data blob: %s" % F.short(err))


def rafs_v6(c, lp, ref):
    boot = os.path.join(ref, "rafs-v6-2.2.boot")
    blob = os.path.join(ref, "blobs", V6_BLOB)
    bd = ["--blob-dir", os.path.join(ref, "blobs")]
    info = inspect_json(c, lp, bd + [boot], "inspect --json")
    for k, v in (("format", "rafs-v6"), ("files", 2), ("chunks", 2),
                 ("file_bytes", 16931 + 13400), ("blobs", 1)):
        c.expect(info.get(k) == v, "inspect: %s %r, expected %r" %
                 (k, info.get(k), v))
    rc, out, err = F.run([lp, "check"] + bd + [boot])
    if ok_run(c, "check --blob-dir", rc, out, err):
        c.expect(b"2 chunks, 0 bad" in out, "check: summary %s" % F.short(out))
    got = ls_listing(c, lp, ["--digest"] + bd + [boot], "ls --json --digest")
    if got is None:
        return
    c.expect(sorted(got) == ["/", "/lib.rs", "/sync_io.rs"],
             "ls: %s" % sorted(got))
    # README: lib.rs and sync_io.rs are one zstd chunk each, at 0..4828 and
    # 4828..7802 of the blob
    with open(blob, "rb") as f:
        data = f.read()
    zstd = shutil.which("zstd")
    for p, size, lo, hi in (("/lib.rs", 16931, 0, 4828),
                            ("/sync_io.rs", 13400, 4828, 7802)):
        rc, out, err = F.run([lp, "cat"] + bd + [boot, p])
        if not ok_run(c, "cat %s" % p, rc, out, err):
            continue
        c.expect(len(out) == size, "cat %s: %d bytes, expected %d" %
                 (p, len(out), size))
        o = got.get(p, {})
        c.expect(o.get("size") == size and o.get("sha256") == sha256(out),
                 "ls --digest %s: size %s sha256 %s; cat: %d bytes, %s" %
                 (p, o.get("size"), o.get("sha256"), len(out), sha256(out)))
        if zstd:
            r = subprocess.run([zstd, "-dc"], input=data[lo:hi],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            c.expect(r.returncode == 0 and r.stdout == out,
                     "cat %s differs from `zstd -d` of blob bytes %d..%d" %
                     (p, lo, hi))
        rc, out2, err = F.run([lp, "cat"] + bd + ["-v", boot, p])
        m = CAT_V.search(err.decode("utf-8", "replace"))
        if c.expect(rc == 0 and out2 == out and m, "cat -v %s: exit %d, %s"
                    % (p, rc, F.short(err))):
            c.expect(int(m.group(3)) == hi - lo,
                     "cat -v %s: %s compressed bytes read, the chunk has %d"
                     % (p, m.group(3), hi - lo))
    if not zstd:
        c.note("zstd not installed: v6 content checked by digests only")
    rc, out, err = F.run([lp, "cat", boot, "/lib.rs"])
    if clean_failure(c, "cat without --blob-dir", rc, out, err) and \
            V6_BLOB.encode() not in err and b"blob-dir" not in err:
        c.note("cat without --blob-dir: the error does not name the "
               "missing data blob: %s" % F.short(err))


GOLD = re.compile(r"^(.*?) (dir|reg|symlink|char|block|fifo|sock) ([0-7]{4}) "
                  r"(\d+):(\d+)(?: (.*))?$")


def golden_listing(path):
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            m = GOLD.match(line.rstrip("\n"))
            if not m:
                raise RuntimeError("golden line not understood: %r" % line)
            p, typ, mode, uid, gid, rest = m.groups()
            rest = rest or ""
            e = {"path": p, "type": typ, "mode": "%o" % int(mode, 8),
                 "uid": int(uid), "gid": int(gid)}
            if rest.startswith("hardlink="):
                out[p] = {"path": p, "type": "hardlink",
                          "link": rest[len("hardlink="):]}
                continue
            if typ == "symlink":
                e["link"] = rest.split(" -> ", 1)[1]
                rest = rest.split(" -> ", 1)[0]
            sm = re.search(r"\bsize=(\d+)", rest)
            if sm:
                e["size"] = int(sm.group(1))
            rm = re.search(r"\brdev=(\d+),(\d+)", rest)
            if rm:
                e["rdev"] = [int(rm.group(1)), int(rm.group(2))]
            xa = dict(x.split("=", 1) for x in
                      re.findall(r"\bxattr:(\S+=\S*)", rest))
            if xa:
                e["xattrs_hex"] = xa
            out[p] = e
    return out


def compare_golden(c, got, gold):
    msgs = []
    for p in sorted(set(got) | set(gold), key=F.path_key):
        g, w = got.get(p), gold.get(p)
        if g is None or w is None:
            msgs.append("%s: %s" % (p, "missing in ls" if g is None else
                                    "not in the golden listing"))
            continue
        g = dict(g)
        if "xattrs" in g:
            g["xattrs_hex"] = {k: base64.b64decode(v)[:256].hex()
                               for k, v in g.pop("xattrs").items()}
        for k in sorted(set(w) | set(g)):
            if w.get(k) != g.get(k):
                msgs.append("%s %s: golden %r, ls %r" % (p, k, w.get(k),
                                                          g.get(k)))
    for m in msgs[:30]:
        c.fail(m)
    if len(msgs) > 30:
        c.fail("... %d more differences" % (len(msgs) - 30))


def part_rafs(src, work, lp):
    ref = os.path.join(src, "testdata", "reference", "rafs")
    if not os.path.isfile(os.path.join(ref, "rafs-v6-2.2.boot")):
        F.skip("RAFS vectors missing in %s" % ref)
    for name in ("sha256-nocompress-repeatable",
                 "blake3-lz4_block-non_repeatable"):
        rafs_v5(Case("RAFS v5 %s + blob" % name), lp, ref, name, work)
    rafs_v6(Case("RAFS v6 rafs-v6-2.2.boot + blob"), lp, ref)

    gold = golden_listing(os.path.join(src, "testdata", "rafs",
                                       "snapshotter-layer.list.gz"))
    for v, name in (("5", "v5-bootstrap-file-size-736032.tar.gz"),
                    ("6", "v6-bootstrap-chunk-pos-438272.tar.gz")):
        c = Case("nydus-snapshotter bootstrap layer %s" % name)
        layer = os.path.join(ref, "layers", name)
        info = inspect_json(c, lp, [layer], "inspect --json")
        c.expect(info.get("format") == "rafs-v" + v,
                 "inspect: format %r" % info.get("format"))
        c.expect(info.get("entries") == LAYER_ENTRIES,
                 "inspect: %r entries, expected %d" % (info.get("entries"),
                                                       LAYER_ENTRIES))
        got = ls_listing(c, lp, [layer], "ls --json")
        if got is None:
            continue
        c.expect(len(got) == LAYER_ENTRIES, "ls: %d entries, expected %d" %
                 (len(got), LAYER_ENTRIES))
        c.expect(len(gold) == LAYER_ENTRIES, "golden listing: %d entries" %
                 len(gold))
        compare_golden(c, got, gold)
        rc, out, err = F.run([lp, "ls", layer])
        c.expect(rc == 0 and out.count(b"\n") == LAYER_ENTRIES,
                 "ls (text): exit %d, %d lines" % (rc, out.count(b"\n")))

    # invalid vectors
    c = Case("invalid bootstrap layer (image.boot is not a bootstrap)")
    bad = os.path.join(ref, "layers", "invalid-bootstrap-file-size-133513.tar.gz")
    for cmd in (["inspect"], ["ls", "--json"], ["check"], ["cat"]):
        args = [lp] + cmd + [bad] + (["/etc/passwd"] if cmd == ["cat"] else [])
        rc, out, err = F.run(args)
        if clean_failure(c, " ".join(cmd), rc, out, err):
            c.expect(b"not a RAFS bootstrap" in err, "%s: unclear error: %s"
                     % (" ".join(cmd), F.short(err)))
    c = Case("gzip layer without image/image.boot")
    bad = os.path.join(ref, "layers", "invalid.tar.gz")
    for cmd in (["inspect"], ["ls", "--json"]):
        rc, out, err = F.run([lp] + cmd + ["--format", "rafs", bad])
        if clean_failure(c, " ".join(cmd) + " --format rafs", rc, out, err):
            c.expect(b"image.boot" in err, "%s --format rafs: unclear error: "
                     "%s" % (" ".join(cmd), F.short(err)))
    # detected, it is an ordinary gzip layer, not RAFS
    info = inspect_json(c, lp, [bad], "inspect --json (detected)")
    c.expect(info.get("format") == "zran", "inspect: format %r, expected "
             "zran (a plain gzip layer)" % info.get("format"))

    c = Case("truncated and corrupted bootstraps")
    outdir = os.path.join(work, "bad")
    os.makedirs(outdir, exist_ok=True)
    variants = []
    for name in ("rafs-v6-2.2.boot", "sha256-nocompress-repeatable"):
        with open(os.path.join(ref, name), "rb") as f:
            d = f.read()
        for n in (0, 4, 100, 1024, 1100, 4096, 8192, len(d) - 1):
            variants.append(("%s cut to %d bytes" % (name, n), d[:n]))
        # deterministic byte damage in the superblocks and tables
        for i, at in enumerate((8, 16, 24, 40, 1024 + 8, 1024 + 12,
                                1024 + 40, 1024 + 56, 1024 + 64, 4096,
                                8192 + 100, len(d) // 2, len(d) - 100)):
            if at < len(d):
                b = bytearray(d)
                b[at] ^= 0xff
                b[(at + 1) % len(d)] ^= 0x5a
                variants.append(("%s bytes %d,%d flipped" % (name, at, at + 1),
                                 bytes(b)))
    loaded = 0
    for i, (label, data) in enumerate(variants):
        p = os.path.join(outdir, "v%03d" % i)
        with open(p, "wb") as f:
            f.write(data)
        for cmd in (["inspect", "--json"], ["ls", "--json", "--digest"],
                    ["check"]):
            rc, out, err = F.run([lp] + cmd + ["--blob-dir",
                                               os.path.join(ref, "blobs"), p])
            what = "%s: %s" % (label, " ".join(cmd))
            if rc == 0:
                loaded += 1
            elif rc == -9:
                c.fail("%s: hung" % what)
            elif rc < 0 or rc >= 128:
                c.fail("%s: crashed (exit %d): %s" % (what, rc, F.short(err)))
            elif not err.strip():
                c.fail("%s: exit %d without a message" % (what, rc))
    c.note("%d variants x 3 commands, %d runs succeeded (damage in unused "
           "bytes), the rest failed cleanly" % (len(variants), loaded))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", required=True,
                    choices=("help", "estargz", "rafs"))
    a = ap.parse_args()
    src, work, lp = F.env_paths()
    F.prepare_workdir(work)
    {"help": part_help, "estargz": part_estargz, "rafs": part_rafs}[a.part](
        src, work, lp)

    return F.report_cases()


if __name__ == "__main__":
    sys.exit(main())
