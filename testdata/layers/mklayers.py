#!/usr/bin/env python3
"""Write the reference tar layers used by the formats test suite.

Usage: mklayers.py OUTDIR [NAME...]

Writes OUTDIR/NAME.tar for every layer (or only the NAMEs given) and
OUTDIR/layers.json, which lists each layer with the knobs the tests use
(prioritized files, a multi-chunk file to corrupt, ...).

Everything is deterministic: fixed mtimes, content from a seeded PRNG, no
user/group names (so "tar -x" as root uses the numeric ids). Nothing here is
committed as a binary: the tests run this script into their build directory.

Rules the layers follow so that a plain "tar -x" extraction is a valid oracle
for what an eStargz reader must show:
  * a name that is redefined later is never the target of a hardlink (tar
    links to the inode of the time, eStargz to the last definition);
  * no ".." components, no root-level landmark or stargz.index.json names;
  * symlinks have mode 0777 (Linux shows 0777 for every symlink) and carry
    no xattrs;
  * a directory is never replaced by a non-directory.
"""

import io
import json
import os
import random
import sys
import tarfile

MTIME = 1600000000
CHUNK = 65536


def content(seed, n):
    return random.Random(seed).randbytes(n)


class Layer:
    def __init__(self, name, fmt=tarfile.PAX_FORMAT, **meta):
        self.name = name
        self.fmt = fmt
        self.entries = []  # (TarInfo, bytes or None)
        self.meta = meta

    def _ti(self, name, typ, mode, uid=0, gid=0, xattrs=None):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = MTIME
        if xattrs:
            hdr = {}
            for k, v in xattrs.items():
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "surrogateescape")
                hdr["SCHILY.xattr." + k] = v
            ti.pax_headers = hdr
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0, xattrs=None):
        self.entries.append((self._ti(name, tarfile.DIRTYPE, mode, uid, gid,
                                      xattrs), None))

    def file(self, name, data=b"", mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._ti(name, tarfile.REGTYPE, mode, uid, gid, xattrs)
        ti.size = len(data)
        self.entries.append((ti, data))

    def symlink(self, name, target, uid=0, gid=0):
        ti = self._ti(name, tarfile.SYMTYPE, 0o777, uid, gid)
        ti.linkname = target
        self.entries.append((ti, None))

    def hardlink(self, name, target):
        ti = self._ti(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.entries.append((ti, None))

    def dev(self, name, typ, major, minor, mode=0o600, uid=0, gid=0):
        ti = self._ti(name, tarfile.CHRTYPE if typ == "char"
                      else tarfile.BLKTYPE, mode, uid, gid)
        ti.devmajor, ti.devminor = major, minor
        self.entries.append((ti, None))

    def fifo(self, name, mode=0o644, uid=0, gid=0):
        self.entries.append((self._ti(name, tarfile.FIFOTYPE, mode, uid, gid),
                             None))

    def write(self, path):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=self.fmt,
                          encoding="utf-8") as tf:
            for ti, data in self.entries:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        with open(path, "wb") as f:
            f.write(buf.getvalue())


def layer_chunks():
    """Chunk boundaries at 64 KiB and at the default 4 MiB."""
    l = Layer("chunks", bigfile="chunks/f300000",
              prioritized=["chunks/f65537", "chunks/zeros"])
    l.dir("chunks/")
    for n in (0, 1, 65535, 65536, 65537, 131072, 300000):
        l.file("chunks/f%d" % n, content(n, n))
    l.file("chunks/f4194305", content(4194305, 4 * 1024 * 1024 + 1))
    l.file("chunks/zeros", bytes(200000))
    l.file("chunks/text.txt", b"lazypull chunk test line\n" * 9000)
    l.file("chunks/exec", content(7, 70000), mode=0o755)
    return l


def layer_links():
    l = Layer("links", prioritized=["bin/a"])
    l.dir("bin/")
    # chain: bin/a -> bin/b -> bin/c (bin/c is the only real file)
    l.file("bin/c", content(3, 70000), mode=0o755, uid=10, gid=20)
    l.hardlink("bin/b", "bin/c")
    l.hardlink("bin/a", "bin/b")
    l.hardlink("sbin/init", "./bin/a")     # missing parent, ./ target
    l.dir("lib/")
    l.file("lib/libbig.so", content(4, 300000))
    l.hardlink("lib/libbig.so.1", "lib/libbig.so")
    l.file("lib/empty", b"")
    l.hardlink("lib/empty.link", "lib/empty")
    # symlinks
    l.symlink("lib/rel", "libbig.so")
    l.symlink("lib/abs", "/lib/libbig.so")
    l.symlink("lib/dangling", "../nowhere/at/all")
    l.symlink("lib/todir", "../bin")
    l.symlink("lib/self", "self")
    l.symlink("lib/longtarget", "t" * 150 + "/" + "u" * 120)
    l.symlink("lib/owned", "rel", uid=1000, gid=1000)
    # hardlinks to a symlink, a fifo, a device
    l.hardlink("lib/rel.hard", "lib/rel")
    l.fifo("lib/pipe")
    l.hardlink("lib/pipe.hard", "lib/pipe")
    l.dev("lib/null", "char", 1, 3, mode=0o666)
    l.hardlink("lib/null.hard", "lib/null")
    return l


def layer_special():
    l = Layer("special", fmt=tarfile.GNU_FORMAT)
    l.dir("dev/")
    l.dev("dev/null", "char", 1, 3, mode=0o666)
    l.dev("dev/tty", "char", 5, 0, mode=0o620, gid=5)
    l.dev("dev/loop0", "block", 7, 0, mode=0o660, gid=6)
    l.dev("dev/sda1", "block", 8, 1)
    l.dev("dev/bigdev", "char", 4095, 1048575)
    l.dev("dev/zero00", "char", 0, 0)       # an overlay-style whiteout
    l.fifo("dev/fifo", mode=0o600)
    l.fifo("dev/fifo2", mode=0o666, uid=33, gid=33)
    # OCI whiteouts, stored as plain files
    l.dir("wh/")
    l.file("wh/.wh.foo")
    l.dir("wh/opaque/")
    l.file("wh/opaque/.wh..wh..opq")
    l.file(".wh.rootgone")
    l.file("wh/kept", b"kept\n")
    return l


def layer_xattrs():
    cap = bytes.fromhex("0100000200040000000000000000000000000000")
    binv = bytes(range(256))
    l = Layer("xattrs")
    l.dir("x/", xattrs={"user.dirattr": "on a dir"})
    l.file("x/plain", b"plain\n", xattrs={"user.foo": "bar"})
    l.file("x/cap", content(11, 5000), mode=0o755,
           xattrs={"security.capability": cap})
    l.file("x/binary", b"bin\n", xattrs={"user.bin": binv,
                                        "user.nul": b"a\x00b\x00"})
    l.file("x/many", b"many\n",
           xattrs={"user.k%02d" % i: "v" * i for i in range(1, 20)})
    l.file("x/trusted", b"t\n", xattrs={"trusted.lazypull": "yes",
                                       "user.utf8": "données ✓"})
    l.file("x/big", content(12, 100000), xattrs={"user.big": "B" * 3000})
    l.file("x/none", b"no xattrs\n")
    return l


def names_entries(l):
    l.dir("names/")
    long1 = "names/" + "l" * 120 + ".txt"
    l.file(long1, b"long name\n")
    deep = "names/" + "/".join("d%02d_%s" % (i, "x" * 20) for i in range(12))
    l.file(deep + "/deep-file.txt", b"deep\n")  # > 255 bytes, no dir entries
    l.dir("données/")
    l.file("données/日本語.txt", "こんにちは\n".encode())
    l.file("names/😀 emoji.txt", b"smile\n")
    l.file("names/sp ace", b"space\n")
    l.file('names/quote"back\\slash', b"q\n")
    l.file("names/tab\there", b"tab\n")
    l.file("names/new\nline", b"nl\n")
    l.file("names/<html>&amp;", b"html\n")
    l.file("names/line\u2028sep", b"u2028\n")
    l.file("names/ctrl\x01\x1f", b"ctrl\n")
    l.file("names/" + "é" * 60, b"long utf8\n")
    # path sort order: strcmp order is "a", "a-b", "a.b", "a/b"
    l.dir("sort/")
    l.dir("sort/a/")
    l.file("sort/a/b", b"1")
    l.file("sort/a-b", b"2")
    l.file("sort/a.b", b"3")
    l.file("sort/B", b"4")
    l.file("sort/é", b"5")
    # odd spellings of names
    l.file("./dotslash/file", b"dotslash\n")
    l.file("dbl//slash", b"double\n")
    l.file("names/./dot/file", b"dot\n")
    # landmark / TOC names below the root are ordinary files
    l.dir("sub/")
    l.file("sub/.prefetch.landmark", b"not a landmark\n")
    l.file("sub/.no.prefetch.landmark", b"")
    l.file("sub/stargz.index.json", b"{}\n")


def layer_names():
    l = Layer("names")
    names_entries(l)
    return l


def layer_names_gnu():
    l = Layer("names-gnu", fmt=tarfile.GNU_FORMAT)
    names_entries(l)
    return l


def layer_parents():
    l = Layer("parents")
    l.dir("./", mode=0o750, uid=0, gid=0)     # root entry: gives / its mode
    l.file("a/b/c/d.txt", b"deep without parents\n")
    l.file("late/child.txt", b"child first\n")
    l.dir("late/", mode=0o700, uid=1000, gid=1000)   # parent after child
    l.dir("have/", mode=0o711)
    l.file("have/miss1/miss2/f", b"f\n")
    l.symlink("m/n/link", "../../a")
    l.dev("dv/null", "char", 1, 3)
    return l


def layer_dups():
    l = Layer("dups")
    l.dir("d/")
    l.file("d/same", b"first version, longer than the second\n")
    l.file("d/same", b"second\n", mode=0o600, uid=7, gid=8)
    l.file("d/multi", content(21, 200000))
    l.file("d/multi", content(22, 1000))     # multi-chunk -> one chunk
    l.file("d/grow", content(23, 100))
    l.file("d/grow", content(24, 150000))    # one chunk -> multi-chunk
    l.file("d/tolink", b"file first\n")
    l.symlink("d/tolink", "same")
    l.symlink("d/tofile", "same")
    l.file("d/tofile", b"now a file\n")
    l.file("d/todir", b"file, then dir\n")
    l.dir("d/todir/", mode=0o750)
    l.file("d/todir/in", b"in\n")
    l.dir("d/twice/", mode=0o700)
    l.dir("d/twice/", mode=0o755, uid=3, gid=4)
    return l


def layer_modes():
    l = Layer("modes")
    l.dir("m/")
    l.file("m/suid", b"s\n", mode=0o4755)
    l.file("m/sgid", b"g\n", mode=0o2755)
    l.file("m/both", b"b\n", mode=0o6711)
    l.file("m/all", b"a\n", mode=0o7777)
    l.file("m/none", b"n\n", mode=0o000)
    l.file("m/rw", b"r\n", mode=0o600)
    l.dir("m/sticky/", mode=0o1777)
    l.dir("m/sgiddir/", mode=0o2775, gid=100)
    l.dir("m/closed/", mode=0o000)
    l.file("m/nobody", b"nobody\n", uid=65534, gid=65534)
    l.file("m/userns", b"userns\n", uid=100000, gid=100000)
    l.file("m/huge", b"huge ids\n", uid=4000000000, gid=4294967294)
    l.dir("m/owned/", uid=1000, gid=2000)
    l.fifo("m/fifo", mode=0o4644)
    return l


def layer_empty():
    return Layer("empty")


LAYERS = [layer_chunks, layer_links, layer_special, layer_xattrs, layer_names,
          layer_names_gnu, layer_parents, layer_dups, layer_modes, layer_empty]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    want = set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    index = []
    for fn in LAYERS:
        l = fn()
        if want and l.name not in want:
            continue
        l.write(os.path.join(out, l.name + ".tar"))
        index.append(dict(name=l.name, tar=l.name + ".tar", **l.meta))
    with open(os.path.join(out, "layers.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
