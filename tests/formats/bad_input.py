#!/usr/bin/env python3
"""bad-input: lazypull on damaged or hostile eStargz / zstd:chunked blobs.

Every case must end within 20 s, with an exit code in 1..127 (no signal, no
hang) and a message on stderr, and must never print a wrong byte: `cat`
output has to be a prefix of the true content ending at a chunk boundary
(or be empty).

Cases, on reference blobs of the "chunks" layer (64 KiB chunks) in each
format:
  * a flipped byte inside one chunk's compressed data (random data, stored
    deflate blocks; and compressible text, Huffman-coded): cat of that file
    fails, cat of an untouched file still works, check fails, ls still works;
  * a flipped byte inside the compressed TOC;
  * truncations (last byte, inside the TOC, half, footer-sized, empty);
  * a zeroed footer; footers whose TOC offset/length point outside the blob;
  * crafted TOCs (eStargz): hardlink cycles, a missing hardlink target,
    chunk offsets outside the blob, a wrong chunk digest, a lying size,
    "../" names, a 5000-level deep path, truncated JSON.

Usage: bad_input.py [--only SUBSTRING]. Exit 77 = skipped.
"""

import argparse
import gzip
import io
import json
import os
import struct
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmtlib as F  # noqa: E402

FOOTER = {"estargz": 51, "legacy": 47, "zstdchunked": 48}
CHUNK = 65536

Case = F.Case


def toc_offset(blob, fmt):
    """Start of the TOC (gzip member / zstd frame) and end of the payload."""
    if fmt == "zstdchunked":
        off, clen = struct.unpack("<QQ", blob[-40:-24])
        return off, off - 8
    f = FOOTER[fmt]
    at = 16 if fmt == "estargz" else 12
    off = int(blob[-f + at:-f + at + 16], 16)
    return off, off


def data_entries(toc, path):
    """TOC entries (reg + chunk) of a file, with their next offsets."""
    ents = toc["entries"]
    out, cur = [], None
    for i, e in enumerate(ents):
        if e["type"] != "chunk":
            cur = e["name"]
        if cur == path and e["type"] in ("reg", "chunk") and e.get("offset"):
            nxt = next((x["offset"] for x in ents[i + 1:] if x.get("offset")),
                       None)
            out.append((e.get("chunkOffset", 0), e["offset"], nxt))
    return out


def expect_clean_failure(c, what, rc, out, err, allow_ok=False):
    if rc == -9:
        c.fail("%s: hung (killed after %d s)" % (what, F.TIMEOUT))
    elif rc < 0 or rc >= 128:
        c.fail("%s: crashed (exit %d): %s" % (what, rc, F.short(err)))
    elif rc == 0:
        if not allow_ok:
            c.fail("%s: exit 0, expected failure; stdout: %s" %
                   (what, F.short(out, 200)))
    elif not err.strip():
        c.fail("%s: exit %d without a message on stderr" % (what, rc))
    else:
        c.note("%s: exit %d: %s" % (what, rc, F.short(err, 160)))


def check_cat_prefix(c, lp, blob, path, truth, bad_chunk_off):
    rc, out, err = F.run([lp, "cat", blob, "/" + path])
    expect_clean_failure(c, "cat /%s" % path, rc, out, err)
    if out != truth[:len(out)]:
        n = next(i for i in range(len(out)) if i >= len(truth) or
                 out[i] != truth[i])
        c.fail("cat /%s printed WRONG bytes (first at %d of %d)" %
               (path, n, len(out)))
    elif len(out) % CHUNK != 0 and len(out) != len(truth):
        c.fail("cat /%s printed %d bytes: not at a chunk boundary" %
               (path, len(out)))
    elif bad_chunk_off is not None and len(out) > bad_chunk_off:
        c.fail("cat /%s printed %d bytes, past the bad chunk at %d" %
               (path, len(out), bad_chunk_off))


def write(work, name, data):
    p = os.path.join(work, "bad", name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return p


def flip(data, at):
    b = bytearray(data)
    b[at] ^= 0x55
    return bytes(b)


def estargz_with_toc(blob, toc_json_bytes, fmt="estargz"):
    """Replace the TOC of an eStargz/legacy blob (payload kept as is)."""
    off, _ = toc_offset(blob, fmt)
    f = FOOTER[fmt]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo("stargz.index.json")
        ti.size, ti.mode, ti.mtime = len(toc_json_bytes), 0, 0
        ti.uname = ti.gname = ""
        tf.addfile(ti, io.BytesIO(toc_json_bytes))
    member = gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)
    return blob[:off] + member + blob[-f:]


def estargz_footer(off):
    return (b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x1a\x00SG\x16\x00" +
            off + b"STARGZ\x01\x00\x00\xff\xff" + b"\x00" * 8)


def corruption_cases(work, lp, fmt, blob_path, toc, truths):
    with open(blob_path, "rb") as f:
        blob = f.read()
    size = len(blob)
    tocoff, payload_end = toc_offset(blob, fmt)

    # 1. one flipped byte in a chunk's compressed data
    for path, idx in (("chunks/f300000", 2), ("chunks/text.txt", 1)):
        c = Case("%s: flipped byte in chunk %d of /%s" % (fmt, idx, path))
        ents = data_entries(toc, path)
        coff, off, nxt = ents[idx]
        nxt = nxt or payload_end
        bad = write(work, "%s-flip-%s" % (fmt, os.path.basename(path)),
                    flip(blob, off + (min(nxt, off + 200) - off) // 2))
        check_cat_prefix(c, lp, bad, path, truths[path], coff)
        rc, out, err = F.run([lp, "cat", bad, "/chunks/f65537"])
        if rc != 0 or out != truths["chunks/f65537"]:
            c.fail("cat of an untouched file /chunks/f65537: exit %d, %s" %
                   (rc, "right bytes" if out == truths["chunks/f65537"]
                    else "WRONG/partial bytes (%d)" % len(out)))
        rc, out, err = F.run([lp, "check", bad])
        expect_clean_failure(c, "check", rc, out, err)
        rc, out, err = F.run([lp, "ls", "--json", bad])
        if rc != 0:
            c.fail("ls --json (TOC intact) exit %d: %s" % (rc, F.short(err)))

    # 2. a flipped byte in the compressed TOC
    c = Case("%s: flipped byte inside the compressed TOC" % fmt)
    mid = tocoff + (size - FOOTER[fmt] - tocoff) // 2
    bad = write(work, fmt + "-tocflip", flip(blob, mid))
    for cmd in (["ls", "--json"], ["check"], ["inspect", "--json"]):
        rc, out, err = F.run([lp] + cmd + [bad])
        expect_clean_failure(c, " ".join(cmd), rc, out, err)

    # 3. truncations.  The reader is forced with --format: without it, a
    # gzip blob whose footer is gone is, correctly, read as a plain gzip
    # layer through zran (its tar stream is intact), which is no error.
    force = ["--format", {"estargz": "estargz", "legacy": "stargz",
                          "zstdchunked": "zstd:chunked"}[fmt]]
    for label, n in (("minus 1 byte", size - 1), ("minus 10 bytes", size - 10),
                     ("cut inside the TOC", tocoff + 10),
                     ("cut at the TOC", tocoff), ("half", size // 2),
                     ("51 bytes", 51), ("47 bytes", 47), ("40 bytes", 40),
                     ("10 bytes", 10), ("empty", 0)):
        c = Case("%s: truncated to %s" % (fmt, label))
        bad = write(work, "%s-trunc-%d" % (fmt, n), blob[:n])
        for cmd in (["ls", "--json"], ["check"], ["cat"]):
            args = ([lp] + cmd + force + [bad] +
                    (["/chunks/f1"] if cmd == ["cat"] else []))
            rc, out, err = F.run(args)
            expect_clean_failure(c, " ".join(cmd), rc, out, err)

    # 4. zeroed footer
    c = Case("%s: zeroed footer" % fmt)
    bad = write(work, fmt + "-zerofoot",
                blob[:-FOOTER[fmt]] + bytes(FOOTER[fmt]))
    rc, out, err = F.run([lp, "ls", "--json"] + force + [bad])
    expect_clean_failure(c, "ls --json", rc, out, err)
    words = ("support", "format", "footer", "recogn", "unknown", "not a")
    if rc not in (0, -9) and not any(w in err.decode(errors="replace").lower()
                                     for w in words):
        c.fail("ls --json: message does not say the layer is not a supported "
               "format: %s" % F.short(err))

    # 5. footers pointing outside the blob
    if fmt == "zstdchunked":
        base = blob[:-48]
        for label, off, clen in (("offset past the end", size + 100, 100),
                                 ("offset 2^63", 1 << 63, 100),
                                 ("length 2^64-1", tocoff, (1 << 64) - 1),
                                 ("offset+length overflow", (1 << 64) - 8, 16),
                                 ("length 0", tocoff, 0),
                                 ("offset into the footer", size - 20, 10)):
            c = Case("%s: footer with %s" % (fmt, label))
            foot = (b"\x50\x2a\x4d\x18" + struct.pack("<IQQQQ", 40, off, clen,
                                                        1000, 1) + b"GnUlInUx")
            bad = write(work, "%s-foot-%s" % (fmt, label.replace(" ", "_")),
                        base + foot)
            rc, out, err = F.run([lp, "ls", "--json"] + force + [bad])
            expect_clean_failure(c, "ls --json", rc, out, err)
    elif fmt == "estargz":
        base = blob[:-51]
        for label, off in (("offset past the end", b"%016x" % (size + 100)),
                           ("offset 7fff...", b"7fffffffffffffff"),
                           ("offset ffff... (negative)", b"ffffffffffffffff"),
                           ("offset 0", b"0000000000000000"),
                           ("offset -1 as text", b"-000000000000001"),
                           ("non-hex offset", b"00000000000zzzzz"),
                           ("offset = footer start", b"%016x" % (size - 51))):
            c = Case("%s: footer with %s" % (fmt, label))
            bad = write(work, "%s-foot-%d" % (fmt, len(F.CASES)),
                        base + estargz_footer(off))
            rc, out, err = F.run([lp, "ls", "--json"] + force + [bad])
            expect_clean_failure(c, "ls --json", rc, out, err)


def crafted_toc_cases(work, lp, blob_path, toc, truths):
    with open(blob_path, "rb") as f:
        blob = f.read()

    def variant(label, mutate):
        t = json.loads(json.dumps(toc))
        mutate(t)
        raw = json.dumps(t, indent="\t").encode()
        return label, write(work, "crafted-%d" % len(F.CASES),
                            estargz_with_toc(blob, raw))

    def add(*ents):
        return lambda t: t["entries"].extend(ents)

    def find(t, name, idx=0):
        """idx-th data entry (reg + chunks) of name."""
        out, cur = [], None
        for e in t["entries"]:
            if e["type"] != "chunk":
                cur = e["name"]
            if cur == name and e["type"] in ("reg", "chunk"):
                out.append(e)
        return out[idx]

    # must be refused: ls fails cleanly
    for label, mut in (
            ("hardlink cycle a->b->a",
             add({"name": "cyc1", "type": "hardlink", "linkName": "cyc2"},
                 {"name": "cyc2", "type": "hardlink", "linkName": "cyc1"})),
            ("hardlink to itself",
             add({"name": "self", "type": "hardlink", "linkName": "./self"})),
            ("hardlink to a missing name",
             add({"name": "orphan", "type": "hardlink",
                  "linkName": "no/such/file"}))):
        label, bad = variant(label, mut)
        c = Case("crafted TOC: " + label)
        rc, out, err = F.run([lp, "ls", "--json", bad])
        expect_clean_failure(c, "ls --json", rc, out, err)

    # data problems: ls may work, reading that file must fail cleanly
    def set_(name, idx, **kv):
        return lambda t: find(t, name, idx).update(kv)

    for label, mut, path, badoff in (
            ("chunk offset past the end of the blob",
             set_("chunks/f300000", 2, offset=10 ** 12), "chunks/f300000", 131072),
            ("negative chunk offset",
             set_("chunks/f300000", 1, offset=-5), "chunks/f300000", 65536),
            ("wrong chunkDigest",
             set_("chunks/f300000", 3, chunkDigest="sha256:" + "0" * 64),
             "chunks/f300000", 196608),
            ("size larger than the data (one chunk)",
             set_("chunks/f1", 0, size=1 << 40), "chunks/f1", 0),
            ("size 2^62 on a multi-chunk file",
             set_("chunks/f131072", 0, size=1 << 62), "chunks/f131072", None),
            ("chunk offset pointing at the TOC",
             set_("chunks/f65537", 1, offset=toc_offset(blob, "estargz")[0]),
             "chunks/f65537", 65536)):
        label, bad = variant(label, mut)
        c = Case("crafted TOC: " + label)
        rc, out, err = F.run([lp, "ls", "--json", bad])
        expect_clean_failure(c, "ls --json", rc, out, err, allow_ok=True)
        if rc == 0:
            check_cat_prefix(c, lp, bad, path, truths[path], badoff)
            rc, out, err = F.run([lp, "check", bad])
            expect_clean_failure(c, "check", rc, out, err)
            if path != "chunks/f65537":
                rc, out, err = F.run([lp, "cat", bad, "/chunks/f65537"])
                if rc != 0 or out != truths["chunks/f65537"]:
                    c.fail("cat of an untouched file /chunks/f65537 fails "
                           "(exit %d)" % rc)

    # names: a "../" that climbs above the root is refused with a clear
    # error (our policy: such a TOC is an attack, not a layout; upstream
    # cleans it instead)
    label, bad = variant("'../' names are refused",
                         add({"name": "../../escape/evil", "type": "reg",
                              "mode": 420}))
    c = Case("crafted TOC: " + label)
    rc, out, err = F.run([lp, "ls", "--json", bad])
    expect_clean_failure(c, "ls --json", rc, out, err)
    if rc != 0 and b"escape" not in err:
        c.fail("error does not name the entry: %s" % F.short(err))

    label, bad = variant("5000-level deep path",
                         add({"name": "d/" * 5000 + "f", "type": "reg"}))
    c = Case("crafted TOC: " + label)
    rc, out, err = F.run([lp, "ls", "--json", bad])
    expect_clean_failure(c, "ls --json", rc, out, err, allow_ok=True)

    # invalid JSON
    for label, raw in (("truncated JSON", json.dumps(toc).encode()[:-40]),
                       ("not an object", b"[1,2,3]"),
                       ("entries is a string", b'{"version":1,"entries":"x"}'),
                       ("integer with exponent",
                        json.dumps(toc).encode().replace(b'"size": 300000',
                                                         b'"size": 3e5', 1)),
                       ("empty JSON", b"")):
        c = Case("crafted TOC: " + label)
        bad = write(work, "crafted-%d" % len(F.CASES),
                    estargz_with_toc(blob, raw))
        rc, out, err = F.run([lp, "ls", "--json", bad])
        expect_clean_failure(c, "ls --json", rc, out, err)

    # a TOC member whose first tar entry is not stargz.index.json
    c = Case("crafted TOC: tar entry named ./stargz.index.json")
    off, _ = toc_offset(blob, "estargz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        raw = json.dumps(toc).encode()
        ti = tarfile.TarInfo("./stargz.index.json")
        ti.size = len(raw)
        tf.addfile(ti, io.BytesIO(raw))
    bad = write(work, "crafted-dotslash",
                blob[:off] + gzip.compress(buf.getvalue(), mtime=0) + blob[-51:])
    rc, out, err = F.run([lp, "ls", "--json", bad])
    expect_clean_failure(c, "ls --json", rc, out, err)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    src, work, lp = F.env_paths()
    F.prepare_workdir(work)
    exe = F.build_refgen(src, work)
    layers = {l["name"]: l for l in F.make_layers(src, work)}
    tar = layers["chunks"]["tar"]
    truths = {}
    with tarfile.open(tar) as tf:
        for m in tf:
            if m.isreg():
                truths[F.clean(m.name)] = tf.extractfile(m).read()

    for fmt in ("estargz", "legacy", "zstdchunked"):
        if a.only and a.only not in fmt:
            continue
        blob = os.path.join(work, "chunks-%s.blob" % fmt)
        _, toc = F.refgen(exe, tar, blob, fmt, 65536)
        corruption_cases(work, lp, fmt, blob, json.loads(toc), truths)
        if fmt == "estargz":
            crafted_toc_cases(work, lp, blob, json.loads(toc), truths)

    return F.report_cases()


if __name__ == "__main__":
    sys.exit(main())
