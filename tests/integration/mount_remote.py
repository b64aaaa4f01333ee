#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Integration test of `lazypull mount REF` on images in a registry (issue 6).

Run by test-mount-remote.sh (which checks root and /dev/fuse).  Environment:
LAZYPULL, SRCDIR, WORKDIR (recreated).  Exit 0 pass, 1 fail, 77 skip.

The test starts its own docker-registry on loopback, writes an OCI layout
with these images and pushes them with skopeo:
  esgz, zstd, gzip, mixed   the 4-layer stack of mount_test.py (whiteouts,
                            opaque dirs, hardlinks, xattrs, devices) as
                            eStargz, zstd:chunked (upstream Go library,
                            tests/refgen), plain gzip (zran) and mixed
  landmark, landmark-zstd   one layer built with -prioritized (a
                            .prefetch.landmark)
  big                       ~48 MiB in many files, for --prefetch-all
  nydus, nydus-pf           a RAFS v5 reference bootstrap (layer with
                            image/image.boot) + its data blob; -pf has a
                            prefetch table added
and checks, for each:
  * a walk of the mount (path, type, mode, uid, gid, size, symlink target,
    rdev, xattrs, nlink, sha256) equals tar -x of the layers with the OCI
    whiteouts applied (RAFS: upstream's md5 listing);
  * --layer N mounts of the registry image stacked under a kernel overlay
    give the same tree;
  * 16 threads reading random ranges get exactly the extracted bytes;
  * the same through the fault-injecting proxy of tests/fetcher/run.py
    (503s, resets, short bodies, corrupted bytes): every read returns the
    right bytes or fails with EIO, the daemon stays up, and once the faults
    stop every file reads correctly;
  * prefetch: after mounting a landmark image the prioritized files' ranges
    are fetched before any read and reading them makes no request (RAFS:
    the prefetch table's files); --prefetch-all caches the whole image, and
    a cold on-demand read while it runs is not much slower than without.
"""

import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import io
import gzip
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fetcher"))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
import mount_test as MT  # noqa: E402
import run as R  # noqa: E402
import fmtlib as F  # noqa: E402

SKIP = 77
fail = MT.fail
check = MT.check
log = MT.log

MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_NYDUS_BLOB = "application/vnd.oci.image.layer.nydus.blob.v1"
TOC_ANN = "containerd.io/snapshot/stargz/toc.digest"


# ---------------------------------------------------------------------------
# The OCI layout.

class Layout:
    def __init__(self, root):
        self.root = root
        self.images = {}  # tag -> manifest descriptor
        os.makedirs(os.path.join(root, "blobs", "sha256"))

    def put(self, data, media_type, annotations=None):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        p = os.path.join(self.root, "blobs", "sha256", d[7:])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        desc = {"mediaType": media_type, "digest": d, "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def image(self, tag, layers, config=None):
        """layers: (blob bytes, media type, annotations, diff id);
        config: the config's "config" object (Cmd, Env, ...)."""
        descs = [self.put(b, mt, ann) for b, mt, ann, _ in layers]
        doc = {"architecture": "amd64", "os": "linux",
               "rootfs": {"type": "layers",
                          "diff_ids": [d for _, _, _, d in layers]}}
        if config is not None:
            doc["config"] = config
        cfg = self.put(json.dumps(doc).encode(),
                       "application/vnd.oci.image.config.v1+json")
        man = self.put(json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg, "layers": descs}).encode(),
            "application/vnd.oci.image.manifest.v1+json")
        man["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.images[tag] = man

    def finish(self):
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2,
                       "manifests": list(self.images.values())}, f)
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)


def sha256_hex(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Builder:
    """Layer blobs of a tar in a format, with their TOCs."""

    def __init__(self, work, refgen):
        self.dir = os.path.join(work, "blobs")
        os.makedirs(self.dir, exist_ok=True)
        self.refgen = refgen
        self.tocs = {}

    def layer(self, tar, fmt, prioritized=None):
        base = os.path.splitext(os.path.basename(tar))[0]
        tag = "-prio" if prioritized else ""
        out = os.path.join(self.dir, "%s%s.%s" % (base, tag, fmt))
        raw = open(tar, "rb").read()
        if fmt == "gzip":
            blob = gzip.compress(raw, 6, mtime=0)
            return blob, MT_GZIP, None, sha256_hex(raw)
        dg, toc = F.refgen(self.refgen, tar, out, fmt, chunk=65536,
                           prioritized=prioritized)
        self.tocs[out] = json.loads(toc)
        blob = open(out, "rb").read()
        self.tocs[sha256_hex(blob)] = self.tocs[out]
        mt = MT_ZSTD if fmt == "zstdchunked" else MT_GZIP
        return blob, mt, {TOC_ANN: dg}, sha256_hex(raw)


def big_tar(path):
    """~50 MiB: 40 files of 1 MiB and 8 of 1 MiB + 1 (random), 200 small
    files of 1-8 KiB (what an on-demand read asks for meanwhile), 300 of
    5-7 KiB in many/ (the directory read-ahead's second-open rule)."""
    rng = random.Random(77)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = MT.MTIME
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
        for d in ("big", "small"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = MT.MTIME
            t.addfile(ti)
        for i in range(48):
            add("big/b%02d" % i, rng.randbytes((1 << 20) + (i >= 40)))
        for i in range(200):
            add("small/s%03d" % i, rng.randbytes(rng.randrange(1024, 8192)))
        # more than 1 MiB of small files: a directory read-ahead waits for
        # a second open here
        ti = tarfile.TarInfo("many")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.mtime = MT.MTIME
        t.addfile(ti)
        for i in range(300):
            add("many/m%03d" % i, rng.randbytes(rng.randrange(5120, 7168)))


def elf_needed(path):
    """DT_NEEDED names of a host ELF file, as readelf prints them."""
    out = subprocess.run(["readelf", "-d", path], stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


START_LIBDIR = "usr/lib/x86_64-linux-gnu"
START_MODULE = "usr/lib/python3.11/lib-dynload/" \
    "_bz2.cpython-311-x86_64-linux-gnu.so"


def elf_closure(prog):
    """{path in the image: host file} of the host's program prog (a path
    in both), every library it needs down the DT_NEEDED chain in
    START_LIBDIR, and the loader."""
    host_lib = "/" + START_LIBDIR
    want = {prog: "/" + prog}
    todo = ["/" + prog]
    while todo:
        for name in elf_needed(todo.pop()):
            img = "%s/%s" % (START_LIBDIR, name)
            if img not in want:
                want[img] = os.path.realpath(os.path.join(host_lib, name))
                todo.append(want[img])
    want["%s/ld-linux-x86-64.so.2" % START_LIBDIR] = os.path.realpath(
        "/lib64/ld-linux-x86-64.so.2")
    return want


def tar_entry(t, name, kind, data=b"", target=""):
    ti = tarfile.TarInfo(name)
    ti.mtime = MT.MTIME
    ti.type = kind
    ti.mode = 0o755
    if kind == tarfile.SYMTYPE:
        ti.linkname = target
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data) if data else None)


def tar_merged_usr(t, paths):
    """The directories paths need, /bin, /lib and /lib64 as links into
    /usr, and the loader behind /usr/lib64, as Debian has them."""
    dirs = set()
    for p in sorted(paths):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                tar_entry(t, d, tarfile.DIRTYPE)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64")):
        tar_entry(t, link, tarfile.SYMTYPE, target=target)
    tar_entry(t, "usr/lib64", tarfile.DIRTYPE)
    tar_entry(t, "usr/lib64/ld-linux-x86-64.so.2", tarfile.SYMTYPE,
              target="../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")


PY_LIB = "usr/lib/python3.11"
# module name: (source, imported only by a function: never fetched)
PY_MODULES = {
    "encodings/__init__": "import codecs\nfrom . import aliases\n",
    "encodings/aliases": "aliases = {}\n",
    "encodings/utf_8": "import codecs\n",
    "alpha": "import delta\n\ndef later():\n    import notyet\n",
    "delta": "X = 1\n",
    "beta/__init__": "from .inner import thing\n",
    "beta/inner": "thing = 1\n",
    "beta/gamma": "import alpha\n",
    "notyet": "Y = 2\n",
    "unused": "Z = 3\n",
}


def py_start_tar(path, work):
    """An image whose config runs python3 /app/main.py: the host's
    python3.11 and the libraries it needs, a stdlib of small modules
    compiled by host python3 (__pycache__/*.cpython-311.pyc next to their
    sources).  Returns (the paths the start files must include, those they
    must not)."""
    want = elf_closure("usr/bin/python3.11")
    src = os.path.join(work, "pysrc")
    files = {}
    for mod, text in PY_MODULES.items():
        p = os.path.join(src, mod + ".py")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        d, base = os.path.split(mod)
        pyc = "%s/%s/__pycache__/%s.cpython-311.pyc" % (PY_LIB, d, base) \
            if d else "%s/__pycache__/%s.cpython-311.pyc" % (PY_LIB, base)
        files[pyc] = p + "c"
        files["%s/%s.py" % (PY_LIB, mod)] = p
    main = os.path.join(src, "main.py")
    with open(main, "w") as f:
        f.write('"""import unused"""\nimport alpha\nfrom beta import gamma\n')
    subprocess.run(["python3", "-c", "import py_compile, sys\n"
                    "for p in sys.argv[1:]: py_compile.compile(p, p + 'c', "
                    "doraise=True)"] +
                   [files[k] for k in files if k.endswith(".py")],
                   check=True)
    if not all(os.path.exists(files[k]) for k in files):
        return None
    files["%s/os.py" % PY_LIB] = None
    files["app/main.py"] = main
    pycs = {k for k in files if k.endswith(".pyc")}
    never = sorted([k for k in pycs if "/notyet." in k or "/unused." in k] +
                   [k for k in files if k.endswith(".py") and
                    k.startswith(PY_LIB) and not k.endswith("/os.py")])
    want.update({k: files[k] for k in pycs if k not in never})
    want["app/main.py"] = main
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        everything = dict(files)
        everything.update(want)
        tar_merged_usr(t, everything)
        tar_entry(t, "usr/bin/python3", tarfile.SYMTYPE, target="python3.11")
        for p in sorted(everything):
            host = everything[p]
            tar_entry(t, p, tarfile.REGTYPE,
                      open(host, "rb").read() if host else b"# stub\n")
    return want, never


def start_tar(path):
    """An image with a command: the host's ls and every library it needs
    (transitively) in a merged-/usr layout, its loader behind /lib64, an
    ld.so.cache, the file its argument names, and files nothing needs (a
    library, a text file, a Python module and the library only that module
    needs).  Returns {path in the image: host file} of what the start files
    must be, and the paths they must not include."""
    rng = random.Random(5)
    host_lib = "/" + START_LIBDIR
    want = elf_closure("usr/bin/ls")
    want["etc/ld.so.cache"] = "/etc/ld.so.cache"
    module = os.path.realpath("/" + START_MODULE)
    bz2 = [n for n in elf_needed(module) if n.startswith("libbz2")][0]
    extra = {START_MODULE: module,
             "%s/%s" % (START_LIBDIR, bz2): os.path.realpath(
                 os.path.join(host_lib, bz2))}
    never = ["app/other.txt", START_LIBDIR + "/libunrelated.so.1"]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        files = dict(want)
        files.update(extra)
        tar_merged_usr(t, list(files) + ["app/listing.txt", "usr/share/pad"]
                       + never)
        # in the blob: what only the module needs, then 256 KiB nothing
        # asks for, then the start files, then files nothing needs (of
        # 300 KB: a request for a neighbour may cover their first bytes)
        for p in sorted(extra):
            tar_entry(t, p, tarfile.REGTYPE, open(extra[p], "rb").read())
        tar_entry(t, "usr/share/pad", tarfile.REGTYPE,
                  rng.randbytes(256 << 10))
        for p in sorted(want):
            tar_entry(t, p, tarfile.REGTYPE, open(want[p], "rb").read())
        tar_entry(t, "app/listing.txt", tarfile.REGTYPE, b"list me\n")
        for p in never:
            tar_entry(t, p, tarfile.REGTYPE, rng.randbytes(300000))
    want["app/listing.txt"] = None
    return want, extra, never


def bootstrap_layer(boot):
    """A nydus bootstrap layer: a tar.gz holding image/image.boot."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("image")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        t.addfile(ti)
        ti = tarfile.TarInfo("image/image.boot")
        ti.size = len(boot)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(boot))
    raw = buf.getvalue()
    return gzip.compress(raw, 6, mtime=0), sha256_hex(raw)


def rafs_v5_files(boot):
    """path -> (i_ino, is_dir) from a RAFS v5 bootstrap (spec §1.4, §1.8)."""
    it_off, = struct.unpack_from("<Q", boot, 32)
    it_n, = struct.unpack_from("<I", boot, 56)
    recs = {}
    for i in range(it_n):
        off = struct.unpack_from("<I", boot, it_off + 4 * i)[0] << 3
        parent, ino = struct.unpack_from("<QQ", boot, off + 32)
        mode, = struct.unpack_from("<I", boot, off + 60)
        nsz, = struct.unpack_from("<H", boot, off + 100)
        name = boot[off + 128:off + 128 + nsz].decode()
        recs[i + 1] = (parent, ino, mode, name)
    byino = {}
    for idx, (parent, ino, mode, name) in recs.items():
        byino.setdefault(ino, (parent, mode, name))
    out = {}
    for idx, (parent, ino, mode, name) in recs.items():
        parts = [name]
        p = parent
        while p:
            pp, _, pn = byino[p]
            parts.append(pn)
            p = pp
        path = "/" + "/".join(x for x in reversed(parts) if x != "/")
        out[path] = (ino, stat.S_ISDIR(mode))
    return out


def with_prefetch_table(boot, inos):
    """Appends a v5 prefetch table (u32 inode numbers, 8-aligned)."""
    b = bytearray(boot)
    while len(b) % 8:
        b.append(0)
    off = len(b)
    tab = struct.pack("<%dI" % len(inos), *inos)
    while len(tab) % 8:
        tab += b"\0"
    b += tab
    struct.pack_into("<Q", b, 40, off)
    struct.pack_into("<I", b, 60, len(inos))
    return bytes(b)


# ---------------------------------------------------------------------------
# Helpers.

def umount_or_dump(lab, mp, pid, what):
    """lab.umount, but a daemon slow to exit gets its threads' stacks
    printed (gdb) before the failure is reported."""
    r = subprocess.run([lab.lp, "umount", mp], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        fail("lazypull umount %s: %s" % (mp, r.stderr.decode()))
        subprocess.run(["umount", "-l", mp])
    if mp in lab.mounts:
        lab.mounts.remove(mp)
    if not pid or MT.wait_gone(pid, 20):
        return
    fail("%s: daemon %d did not exit within 20 s of umount (%s)" % (
        what, pid, r.stderr.decode(errors="replace").strip()))
    if shutil.which("gdb"):
        g = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex",
                            "thread apply all bt"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        log(g.stdout.decode(errors="replace")[-8000:])
    logf = os.path.join(lab.logs, os.path.basename(mp) + ".log")
    if os.path.exists(logf):
        log("log of %s:\n%s" % (what, open(logf, errors="replace")
                                .read()[-3000:]))


def fresh_root(work, name):
    p = os.path.join(work, "state", name)
    os.makedirs(p)
    return p


def mount_ref(lab, ref, root, prefix, extra=()):
    t0 = time.time()
    mp, pid, logf = lab.mount([ref], prefix=prefix, extra=[
        "--plain-http", "--root", root] + list(extra))
    return mp, pid, logf, time.time() - t0


def wait_log(logf, pattern, secs):
    end = time.time() + secs
    while time.time() < end:
        try:
            text = open(logf, errors="replace").read()
        except OSError:
            text = ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(0.1)
    return None


def blob_ranges(proxy, digest=None):
    """(start, end) of every range of the blob GETs the proxy forwarded
    successfully (of blob digest only, if given)."""
    out = []
    for e in proxy.blob_gets():
        if e["status"] not in (200, 206) or (
                digest and digest not in e["path"]):
            continue
        out.extend(R.range_spans(e["range"], 1 << 62))
    return out


def covered(ranges, lo, hi):
    pos = lo
    for a, b in sorted(ranges):
        if a > pos:
            break
        pos = max(pos, b)
        if pos >= hi:
            return True
    return pos >= hi


def faulty_reads(mp, expdir, what, nthreads=16, per_thread=60, seed=7):
    """Random reads while faults are injected: each returns the right
    bytes (possibly short, at a failed page: the right prefix) or EIO."""
    files = MT.reg_files(expdir)
    data = {f: open(os.path.join(expdir, f), "rb").read() for f in files}
    errs, counts = [], {"ok": 0, "short": 0, "eio": 0}
    lock = threading.Lock()

    def worker(k):
        rng = random.Random(seed * 1000 + k)
        direct = k % 2 == 1
        for _ in range(per_thread):
            f = rng.choice(files)
            d = data[f]
            off = rng.randrange(len(d))
            ln = rng.choice([1, 4096, 65537, 300000, 1 << 20])
            want = d[off:off + ln]
            try:
                fd = os.open(os.path.join(mp, f),
                             os.O_RDONLY | (os.O_DIRECT if direct else 0))
            except OSError as ex:
                with lock:
                    errs.append("%s: open %s: %s" % (what, f, ex))
                continue
            try:
                got = os.pread(fd, ln, off)
                if got == want:
                    kind = "ok"
                elif len(got) < len(want) and got == want[:len(got)]:
                    kind = "short"
                else:
                    kind = None
                    with lock:
                        errs.append("%s: %s off %d len %d: WRONG BYTES "
                                    "(%d of %d)" % (what, f, off, ln,
                                                    len(got), len(want)))
            except OSError as ex:
                kind = "eio" if ex.errno == errno.EIO else None
                if not kind:
                    with lock:
                        errs.append("%s: %s: %s (want EIO)" % (what, f,
                                                               ex))
            finally:
                os.close(fd)
            if kind:
                with lock:
                    counts[kind] += 1

    th = [threading.Thread(target=worker, args=(k,))
          for k in range(nthreads)]
    t0 = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join()
    for e in errs[:10]:
        fail(e)
    log("  %s: %d right, %d short-but-right, %d EIO in %.1fs, %d bad" % (
        what, counts["ok"], counts["short"], counts["eio"],
        time.time() - t0, len(errs)))
    return counts


def verify_all(mp, expdir, what):
    bad = []
    for f in MT.reg_files(expdir):
        try:
            if MT.sha256_file(os.path.join(mp, f)) != MT.sha256_file(
                    os.path.join(expdir, f)):
                bad.append("%s: wrong content" % f)
        except OSError as ex:
            bad.append("%s: %s" % (f, ex))
    for b in bad[:10]:
        fail("%s: %s" % (what, b))
    return not bad


def rafs_listing(mp):
    got = {}
    for dirpath, _, files in os.walk(mp):
        for n in files:
            p = os.path.join(dirpath, n)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            try:
                with open(p, "rb") as f:
                    got["/" + os.path.relpath(p, mp)] = hashlib.md5(
                        f.read()).hexdigest()
            except OSError as ex:
                got["/" + os.path.relpath(p, mp)] = str(ex)
    return got


def rafs_want(result):
    want = {}
    with open(result) as f:
        for line in f:
            p = line.rstrip("\n").split("  ", 1)
            if len(p) == 2 and len(p[0]) == 32 and p[1].startswith("/"):
                want[p[1]] = p[0]
    return want


def cold_small_reads(mp, names):
    lat = []
    for n in names:
        t0 = time.time()
        with open(os.path.join(mp, n), "rb") as f:
            f.read()
        lat.append(time.time() - t0)
    return lat


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


# ---------------------------------------------------------------------------

def main():
    lp = os.environ.get("LAZYPULL", "")
    src = os.environ.get("SRCDIR") or os.path.abspath(
        os.path.join(HERE, "..", ".."))
    work = os.environ.get("WORKDIR")
    if not work:
        sys.exit("WORKDIR is not set")
    if not lp or not os.access(lp, os.X_OK):
        log("SKIP: lazypull binary not built (LAZYPULL=%r)" % lp)
        return SKIP
    for t in ("docker-registry", "skopeo"):
        if not shutil.which(t):
            log("SKIP: %s not installed" % t)
            return SKIP
    if os.path.isdir(work):
        for mp in MT.mountinfo():
            if mp.startswith(os.path.realpath(work) + "/"):
                subprocess.run(["umount", "-l", mp])
        shutil.rmtree(work)
    os.makedirs(work)
    os.umask(0o022)
    MT.Lab.umount = lambda self, mp, pid=None: umount_or_dump(
        self, mp, pid, os.path.basename(mp))
    lab = MT.Lab(lp, work)
    running = []  # the registry and proxies, stopped at the end
    try:
        run(lab, src, work, running)
    finally:
        lab.cleanup()
        for p in reversed(running):
            p.stop()
    left = [mp for mp in MT.mountinfo() if mp.startswith(
        os.path.realpath(work) + "/")]
    check(not left, "mounts left behind: %s" % left)
    for n in sorted(os.listdir(lab.logs)):
        if not n.endswith(".log"):
            continue
        text = open(os.path.join(lab.logs, n), errors="replace").read()
        for pat in ("Sanitizer", "runtime error:"):
            i = text.find(pat)
            if i >= 0:
                fail("%s: %s" % (n, text[max(0, i - 200):i + 1500]))
                break
    log("")
    if MT.xfails:
        log("%d known failure(s) (XFAIL), see above" % len(MT.xfails))
    if MT.failures:
        log("%d FAILURE(S)" % len(MT.failures))
        return 1
    log("PASS")
    return 0


def run(lab, src, work, proxies):
    layers_dir = os.path.join(work, "layers")
    subprocess.run([sys.executable,
                    os.path.join(src, "testdata", "layers", "mklayers.py"),
                    layers_dir], check=True, stdout=subprocess.DEVNULL)
    stack = [os.path.join(layers_dir, "chunks.tar")] + MT.stack_layers(
        layers_dir)
    chunks_tar = stack[0]
    refgen, why = MT.build_refgen(src, work)
    if refgen:
        formats = ["estargz", "zstdchunked", "gzip"]
    else:
        log("NOTE: %s: only plain gzip (zran) images are tested" % why)
        formats = ["gzip"]
    tagof = {"estargz": "esgz", "zstdchunked": "zstd", "gzip": "gzip"}
    b = Builder(work, refgen)
    lay = Layout(os.path.join(work, "oci"))
    for fmt in formats:
        lay.image(tagof[fmt], [b.layer(t, fmt) for t in stack])
    if refgen:
        mixed = ["zstdchunked", "estargz", "gzip", "estargz"]
        lay.image("mixed", [b.layer(t, f) for t, f in zip(stack, mixed)])
        prio = ["chunks/f65537", "chunks/zeros"]
        lay.image("landmark", [b.layer(chunks_tar, "estargz", prio)])
        lay.image("landmark-zstd", [b.layer(chunks_tar, "zstdchunked",
                                            prio)])
        bigt = os.path.join(layers_dir, "big.tar")
        big_tar(bigt)
        lay.image("big", [b.layer(bigt, "estargz")])
        startt = os.path.join(layers_dir, "start.tar")
        start = start_tar(startt)
        lay.image("start", [b.layer(startt, "estargz")], config={
            "Entrypoint": ["ls"], "Cmd": ["-l", "listing.txt"],
            "Env": ["PATH=/usr/local/bin:/usr/bin"], "WorkingDir": "/app"})
        pyt = os.path.join(layers_dir, "startpy.tar")
        pystart = py_start_tar(pyt, work)
        if pystart:
            lay.image("startpy", [b.layer(pyt, "estargz")], config={
                "Cmd": ["python3", "/app/main.py"],
                "Env": ["PATH=/usr/local/bin:/usr/bin"]})
    rafs_ref = os.path.join(src, "testdata", "reference", "rafs")
    boot_name = "sha256-nocompress-repeatable"
    rafs_blob = os.path.join(rafs_ref, "blobs", "7334a2594e133cf8ae364189c"
                             "2276b090fc490c627bcc3fb1077f0419a538e00")
    have_rafs = os.path.exists(os.path.join(rafs_ref, boot_name))
    pf_paths = []
    if have_rafs:
        boot = open(os.path.join(rafs_ref, boot_name), "rb").read()
        data = open(rafs_blob, "rb").read()
        blob_l = (data, MT_NYDUS_BLOB,
                  {"containerd.io/snapshot/nydus-blob": "true"},
                  sha256_hex(data))
        bl, diff = bootstrap_layer(boot)
        lay.image("nydus", [blob_l, (bl, MT_GZIP, {
            "containerd.io/snapshot/nydus-bootstrap": "true"}, diff)])
        # a prefetch table: one directory and one file of the tree
        files = rafs_v5_files(boot)
        regs = sorted(p for p, (_, d) in files.items() if not d)
        dirs = sorted(p for p, (_, d) in files.items() if d and p != "/")
        pf_dir = max(dirs, key=lambda d: (sum(
            r.startswith(d + "/") for r in regs), d))
        pf_file = next(r for r in reversed(regs)
                       if not r.startswith(pf_dir + "/"))
        pf_paths = [pf_dir, pf_file]
        bl, diff = bootstrap_layer(with_prefetch_table(
            boot, [files[pf_dir][0], files[pf_file][0]]))
        lay.image("nydus-pf", [blob_l, (bl, MT_GZIP, {
            "containerd.io/snapshot/nydus-bootstrap": "true"}, diff)])
    lay.finish()

    reg = R.Registry(work, "registry")
    proxies.append(reg)
    with open(os.path.join(lab.logs, "registry.pidfile"), "w") as f:
        f.write("%d\n" % reg.proc.pid)
    t0 = time.time()
    for tag in lay.images:
        R.skopeo_push(work, lay, tag, "%s/test/img:%s" % (reg.addr, tag))
    log("pushed %d images in %.1fs" % (len(lay.images), time.time() - t0))

    exp_root = os.path.join(work, "expected")
    exp_stack = os.path.join(exp_root, "stack")
    MT.extract_stack(stack, exp_stack)
    exp_chunks = os.path.join(exp_root, "chunks")
    MT.extract_stack([chunks_tar], exp_chunks)

    def ref(tag, via=None):
        return "%s/test/img:%s" % (via.addr if via else reg.addr, tag)

    # --- 1. merged trees and random reads, per format, cold cache
    log("== merged image trees from the registry")
    tags = [tagof[f] for f in formats] + (["mixed"] if refgen else [])
    for tag in tags:
        root = fresh_root(work, tag)
        mp, pid, logf, secs = mount_ref(lab, ref(tag), root, tag)
        ok = MT.compare_tree(mp, exp_stack, "registry/" + tag)
        log("  %-6s mounted in %.2fs, tree %s" % (
            tag, secs, "ok" if ok else "FAILED"))
        lab.umount(mp, pid)
        # the walk opened every file: the access trace names them, in
        # the order they were first opened
        traces = os.path.join(root, "traces")
        names = os.listdir(traces) if os.path.isdir(traces) else []
        check(len(names) == 1, "%s: access traces after the walk: %s" %
              (tag, names))
        if names:
            lines = open(os.path.join(traces, names[0])).read().split("\n")
            check(lines[0] == "lazypull-trace 1" and len(lines) > 3 and
                  all(x.startswith("/") for x in lines[1:-1]),
                  "%s: trace: %r" % (tag, lines[:4]))
        # a new mount on a cold blob cache (the zran index is kept) starts
        # by prefetching what the trace names
        shutil.rmtree(os.path.join(root, "cache"))
        mp, pid, logf, secs = mount_ref(lab, ref(tag), root, tag)
        check(wait_log(logf, r"access trace .*: prefetching \d+ files", 10),
              "%s: the remount did not use the access trace" % tag)
        MT.random_reads(mp, exp_stack, "registry/" + tag)
        check(MT.alive(pid), "%s: daemon died" % tag)
        log("  %-6s remounted in %.2fs" % (tag, secs))
        lab.umount(mp, pid)

    decoded_store_tests(lab, work, ref(tags[0]), exp_stack)
    full_cache_tests(lab, work, ref("big"))

    # --- 2. --layer mounts of the registry image under a kernel overlay
    log("== --layer mounts of a registry image under a kernel overlay")
    tag = tags[0]
    root = fresh_root(work, "layers")
    lowers = []
    for i in range(len(stack)):
        mp, pid, _, _ = mount_ref(lab, ref(tag), root, "layer%d" % i,
                                  extra=["--layer", str(i)])
        lowers.append((mp, pid))
    upper = os.path.join(work, "ovl-upper")
    owork = os.path.join(work, "ovl-work")
    os.makedirs(upper)
    os.makedirs(owork)
    ovl = lab.overlay([m for m, _ in reversed(lowers)], upper, owork)
    ok = MT.compare_tree(ovl, exp_stack, "overlay/" + tag, dir_nlink=False,
                         known=("/keep",), ignore=("nlink",))
    with open(os.path.join(ovl, "newfile"), "w") as f:
        f.write("written through overlay\n")
    check(open(os.path.join(upper, "newfile")).read() ==
          "written through overlay\n", "overlay: newfile not in upperdir")
    log("  overlay of %d --layer mounts of %s: %s" % (
        len(lowers), tag, "ok" if ok else "FAILED"))
    subprocess.run(["umount", ovl], check=True)
    lab.mounts.remove(ovl)
    for mp, pid in lowers:
        lab.umount(mp, pid)
    # refusals
    mp = lab.newdir("bad")
    for args, want in ((["--layer", "9", ref(tag)], b"--layer 9"),
                       ([ref(tag), chunks_tar], b"mounted alone"),
                       ([ref("nosuchtag")], b"")):
        r = subprocess.run([lab.lp, "mount", "--plain-http", "--root", root]
                           + args + [mp], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        check(r.returncode != 0 and want in r.stderr and r.stderr.strip(),
              "mount %s: rc %d, %r" % (args, r.returncode, r.stderr))
        check(not MT.is_mounted(mp), "mount %s left a mount" % args)

    # --wait-mountpoint (the snapshotter's start ahead of time): the image
    # opens first; the mount comes where stdin then says; EOF: no mount
    root = fresh_root(work, "wait-mp")
    mp = lab.newdir("waitmp")
    pidf = os.path.join(work, "waitmp.pid")
    logf = os.path.join(work, "waitmp.log")
    p = subprocess.Popen([lab.lp, "mount", "--plain-http", "--root", root,
                          "--wait-mountpoint", "--log-file", logf,
                          "--log-level", "info", ref(tag), "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    opened = wait_log(logf, r"opened ahead|up in", 0) or \
        wait_log(logf, r"xx", 1.0)
    check(p.poll() is None and not MT.is_mounted(mp) and not opened,
          "--wait-mountpoint: mounted or exited before it was told where")
    _, err = p.communicate(("%s\n%s\n" % (mp, pidf)).encode(), timeout=120)
    if p.returncode == 0 and MT.is_mounted(mp):
        lab.mounts.append(mp)
        pid = int(open(pidf).read())
        ok = MT.compare_tree(mp, exp_stack, "wait-mountpoint/" + tag)
        # (said before it became a daemon: on its stderr)
        check(re.search(rb"opened ahead in \d+ ms; mounting on " +
                        re.escape(mp.encode()), err) is not None,
              "--wait-mountpoint: no 'opened ahead' line: %r" % err)
        log("  --wait-mountpoint: mounted where stdin said: %s" %
            ("ok" if ok else "FAILED"))
        lab.umount(mp, pid)
    else:
        fail("--wait-mountpoint: rc %d, mounted %s: %r" % (
            p.returncode, MT.is_mounted(mp), err))
    for stdin, rc, what in ((b"", 0, "EOF"),
                            (b"relative/dir\n/x.pid\n", 1, "a relative path"),
                            (b"%s\n" % mp.encode(), 1, "no pid file line")):
        r = subprocess.run([lab.lp, "mount", "--plain-http", "--root", root,
                            "--wait-mountpoint", ref(tag), "-"], input=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        check(r.returncode == rc and not MT.is_mounted(mp),
              "--wait-mountpoint, %s: rc %d (want %d), %r" % (
                  what, r.returncode, rc, r.stderr))
    r = subprocess.run([lab.lp, "mount", "--plain-http", "--root", root,
                        "--wait-mountpoint", ref(tag), mp],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 2 and b"--wait-mountpoint" in r.stderr,
          "--wait-mountpoint with a MOUNTPOINT: rc %d" % r.returncode)

    # --- 3. RAFS: a nydus image (bootstrap layer + data blob)
    if have_rafs:
        log("== nydus (RAFS v5) image")
        want = rafs_want(os.path.join(rafs_ref, boot_name + ".result"))
        mp, pid, logf, secs = mount_ref(lab, ref("nydus"),
                                        fresh_root(work, "nydus"), "nydus")
        got = rafs_listing(mp)
        bad = sorted(k for k in set(want) | set(got)
                     if want.get(k) != got.get(k))
        for k in bad[:10]:
            fail("nydus: %s: md5 %s, upstream %s" % (k, got.get(k),
                                                    want.get(k)))
        log("  nydus: %d files, %s" % (len(got), "ok" if not bad
                                       else "FAILED"))
        lab.umount(mp, pid)
        r = subprocess.run([lab.lp, "mount", "--plain-http", "--root",
                            fresh_root(work, "nydus-l"), "--layer", "0",
                            ref("nydus"), lab.newdir("bad")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check(r.returncode != 0 and b"RAFS" in r.stderr,
              "nydus --layer: rc %d, %r" % (r.returncode, r.stderr))

    # --- 4. faults between the daemon and the registry
    log("== reads through the fault-injecting proxy")
    proxy = R.Proxy(reg.addr)
    proxies.append(proxy)
    for tag in tags[:3]:
        # the roots of part 1: plain gzip layers load their saved zran
        # index, so no request precedes the faults
        root = os.path.join(work, "state", tag)
        shutil.rmtree(os.path.join(root, "cache"))
        mp, pid, logf, _ = mount_ref(lab, ref(tag, proxy), root,
                                     "faults-" + tag)
        proxy.reset()
        for kind, n in (("status", 40), ("reset", 25), ("short", 25),
                        ("short_cl", 15), ("flip", 30)):
            kw = {"code": 503} if kind == "status" else {}
            proxy.add(R.Rule(kind, count=n, ranged=True, **kw))
        counts = faulty_reads(mp, exp_stack, "faults/" + tag)
        left = sum(r.count for r in proxy.rules)
        hit = {}
        for e in proxy.log:
            if e["status"] in (503, "reset"):
                hit[e["status"]] = hit.get(e["status"], 0) + 1
        log("  %s: faults not yet used: %d; requests: %d" % (
            tag, left, len(proxy.log)))
        check(MT.alive(pid), "faults/%s: daemon died" % tag)
        proxy.reset()
        ok = verify_all(mp, exp_stack, "faults/%s after" % tag)
        check(MT.alive(pid) and MT.is_mounted(mp),
              "faults/%s: mount gone" % tag)
        log("  %s: after the faults every file reads right: %s" % (
            tag, "yes" if ok else "NO"))
        check(counts["ok"] > 0, "faults/%s: no read succeeded" % tag)
        umount_or_dump(lab, mp, pid, "faults/" + tag)
    # the registry down, then back: EIO, then the same mount serves again
    tag = tags[0]
    mp, pid, logf, _ = mount_ref(lab, ref(tag, proxy),
                                 fresh_root(work, "down"), "down")
    proxy.reset()
    proxy.add(R.Rule("status", count=100000, code=503, ranged=True))
    target = "usr/lib/libbig.so"
    try:
        with open(os.path.join(mp, target), "rb") as f:
            f.read()
        fail("registry down: read of an unfetched file succeeded")
    except OSError as ex:
        check(ex.errno == errno.EIO, "registry down: %s (want EIO)" % ex)
    # the read failed after the fetcher's tries (1 + 3 by default), with
    # no second round of them: not from the engine, nor from the kernel
    # reading the page again right after its read-ahead failed (the
    # failure is held for 200 ms; test-prefetch checks the hold itself)
    tries = proxy.tries()
    # (a read of the page again that came after the hold would add one
    # try, not four: the registry is in its one-try window by then)
    check(tries and 4 <= max(tries.values()) <= 5,
          "registry down: tries of each range %s (want 4)" % tries)
    # the registry has failed a request's every try: the next read gets
    # one try per range, not four
    n0 = len(proxy.log)
    try:
        with open(os.path.join(mp, "bin/tool"), "rb") as f:
            f.read()
        fail("registry down: read of bin/tool succeeded")
    except OSError as ex:
        check(ex.errno == errno.EIO, "registry down: bin/tool: %s" % ex)
    tries = proxy.tries(since=n0)
    check(tries and max(tries.values()) <= 2,
          "registry down, a second read: tries of each range %s (want 1, "
          "2 with a late read of the page again)" % tries)
    check(wait_log(logf, r"one try each for 30 s", 2),
          "registry down: no log line saying so")
    time.sleep(0.3)  # past the hold of a failed chunk (200 ms)
    proxy.reset()
    check(MT.sha256_file(os.path.join(mp, target)) == MT.sha256_file(
        os.path.join(exp_stack, target)), "registry back: wrong bytes")
    text = open(logf).read()
    check("/" + target in text, "registry down: no log line naming %s" %
          target)
    check("answers again" in text, "registry back: no log line saying so")
    log("  registry down: EIO; back up: the same mount reads it right")
    lab.umount(mp, pid)

    # a stalled registry, then a stop: SIGTERM ends the daemon at once
    # and fails the read waiting in it, not after the fetcher's tries
    # (4 of 10 s each with the defaults)
    mp, pid, logf, _ = mount_ref(lab, ref(tag, proxy),
                                 fresh_root(work, "stop"), "stop")
    proxy.reset()
    proxy.add(R.Rule("stall", seconds=60, count=100000, ranged=True))
    res = {}

    def reader():
        try:
            with open(os.path.join(mp, target), "rb") as f:
                f.read()
            res["ok"] = True
        except OSError as ex:
            res["errno"] = ex.errno

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    end = time.time() + 10
    while time.time() < end and not proxy.blob_gets():
        time.sleep(0.05)
    time.sleep(0.5)  # the request is waiting at the registry
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)
    gone = MT.wait_gone(pid, 60)
    secs = time.time() - t0
    th.join(10)
    check(gone and secs < 5, "stalled registry: the daemon stopped %.1f s "
          "after SIGTERM (want < 5)" % secs)
    check(res.get("errno") in (errno.EIO, errno.ECONNABORTED,
                               errno.ENOTCONN),
          "stalled registry, stop: the waiting read gave %s" % res)
    check(wait_log(logf, r"libbig.so: read at offset 0: .*Operation "
                   r"canceled", 1),
          "stalled registry, stop: no log line of the cancelled read")
    log("  stalled registry: SIGTERM stopped the daemon in %.2f s, the "
        "waiting read failed (%s)" % (secs, res))
    if MT.is_mounted(mp):
        subprocess.run(["umount", "-l", mp])
    if mp in lab.mounts:
        lab.mounts.remove(mp)
    proxy.reset()

    # --- 5. prefetch
    if refgen:
        prefetch_tests(lab, work, proxy, ref, b, lay, exp_chunks)
        dirahead_tests(lab, work, proxy, ref, b, lay)
        startfiles_tests(lab, work, proxy, ref, b, lay, start)
        if pystart:
            py_startfiles_tests(lab, work, proxy, ref, pystart)
        else:
            log("== start files of a Python program: SKIPPED (host "
                "python3 did not compile the modules)")
    if have_rafs:
        log("== RAFS prefetch table")
        want = rafs_want(os.path.join(rafs_ref, boot_name + ".result"))
        proxy.reset()
        mp, pid, logf, _ = mount_ref(lab, ref("nydus-pf", proxy),
                                     fresh_root(work, "nydus-pf"),
                                     "nydus-pf")
        m = wait_log(logf, r"prefetched the priority files: (\d+) chunks",
                     60)
        if check(m, "nydus-pf: no 'prefetched the priority files' log"):
            proxy.reset()
            names = [p for p in want if p == pf_paths[1] or
                     p.startswith(pf_paths[0] + "/")]
            for p in names:
                with open(os.path.join(mp, p.lstrip("/")), "rb") as f:
                    check(hashlib.md5(f.read()).hexdigest() == want[p],
                          "nydus-pf: %s: wrong content" % p)
            check(not proxy.blob_gets(),
                  "nydus-pf: reading the prefetched files fetched: %s" %
                  proxy.blob_gets()[:3])
            log("  prefetch table %s: %s chunks fetched at mount; reading "
                "their %d files made %d requests" % (
                    pf_paths, m.group(1), len(names),
                    len(proxy.blob_gets())))
            got = rafs_listing(mp)
            check(got == want, "nydus-pf: listing differs")
        lab.umount(mp, pid)


def store_stats(logf):
    m = wait_log(logf, r"decoded store: (\d+) reads served, (\d+) chunks "
                 r"added, (\d+) bad", 10)
    return tuple(int(x) for x in m.groups()) if m else None


def decoded_store_tests(lab, work, ref, exp_stack):
    """Decoded chunks kept on disk: a second mount reads them (no decode),
    and damaged store bytes are never served: decoded again, then right."""
    log("== the decoded-chunk store (ROOT/cache/decoded)")
    root = fresh_root(work, "decoded")
    mp, pid, logf, _ = mount_ref(lab, ref, root, "dec1")
    ok = MT.compare_tree(mp, exp_stack, "decoded/first")
    lab.umount(mp, pid)
    st1 = store_stats(logf)
    check(st1 and st1[1] > 0, "decoded/first: nothing stored: %s" % (st1,))
    mp, pid, logf, _ = mount_ref(lab, ref, root, "dec2")
    ok &= MT.compare_tree(mp, exp_stack, "decoded/warm")
    lab.umount(mp, pid)
    st2 = store_stats(logf)
    check(st2 and st2[0] > 0 and st2[1] == 0 and st2[2] == 0,
          "decoded/warm: not served from the store: %s" % (st2,))
    # damage every data file in many places (the page cache sees it too)
    ddir = os.path.join(root, "cache", "decoded")
    flips = 0
    for name in sorted(os.listdir(ddir)):
        if not name.endswith(".data"):
            continue
        with open(os.path.join(ddir, name), "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            for off in range(100, size, 20011):
                f.seek(off)
                b = f.read(1)
                f.seek(off)
                f.write(bytes([b[0] ^ 0xa5]))
                flips += 1
    mp, pid, logf, _ = mount_ref(lab, ref, root, "dec3")
    ok &= MT.compare_tree(mp, exp_stack, "decoded/damaged")
    check(MT.alive(pid), "decoded/damaged: daemon died")
    lab.umount(mp, pid)
    st3 = store_stats(logf)
    check(st3 and st3[2] > 0 and st3[1] > 0,
          "decoded/damaged: bad chunks not noticed: %s" % (st3,))
    log("  stored %d chunks; warm mount served %d reads from the store; "
        "after %d flipped bytes: %d bad, %d decoded again, tree %s" % (
            st1[1] if st1 else -1, st2[0] if st2 else -1, flips,
            st3[2] if st3 else -1, st3[1] if st3 else -1,
            "ok" if ok else "FAILED"))


def full_cache_tests(lab, work, ref):
    """A cache directory on a full disk: every file still reads right
    (the bytes come past the blob cache), the daemon stays up."""
    log("== a full cache disk (--cache-dir on a 2 MiB tmpfs)")
    exp = os.path.join(work, "expected", "big")
    if not os.path.isdir(exp):
        MT.extract_stack([os.path.join(work, "layers", "big.tar")], exp)
    small = os.path.join(work, "state", "fullcache")
    os.makedirs(small)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                        small], stderr=subprocess.PIPE)
    if r.returncode != 0:
        fail("full cache: tmpfs: %s" % r.stderr.decode())
        return
    try:
        # reads alone, then reads while --prefetch-all fills (and fails)
        for mode in ("--no-prefetch", "--prefetch-all"):
            for name in os.listdir(small):
                shutil.rmtree(os.path.join(small, name))
            mp, pid, logf, _ = mount_ref(
                lab, ref, fresh_root(work, "full" + mode), "full" + mode,
                extra=["--cache-dir", small, mode])
            ok = verify_all(mp, exp, "full cache " + mode)
            check(MT.alive(pid), "full cache %s: daemon died" % mode)
            check(wait_log(logf, r"No space left on device; reading past "
                           r"the blob cache", 5),
                  "full cache %s: the cache never filled, or it was not "
                  "said" % mode)
            lab.umount(mp, pid)
            log("  %s: %d files of ~48 MiB read through a 2 MiB cache: "
                "%s" % (mode, len(list(MT.reg_files(exp))),
                        "ok" if ok else "FAILED"))
    finally:
        subprocess.run(["umount", "-l", small])


def dirahead_tests(lab, work, proxy, ref, b, lay):
    """Directory read-ahead: on by default for an image with nothing to
    prefetch; small/ holds less than 1 MiB of small files, so its first
    file opened brings the others, never big/'s 1 MiB files; many/ holds
    more, so it takes a second open; --dir-ahead 0 turns it off."""
    log("== directory read-ahead")
    man = lay.images["big"]
    mdata = json.load(open(os.path.join(
        lay.root, "blobs", "sha256", man["digest"][7:])))
    toc = b.tocs[mdata["layers"][0]["digest"]]
    off = {F.clean(e["name"]): e["offset"] for e in toc["entries"]
           if e.get("type") == "reg" and "offset" in e}
    exp = os.path.join(work, "expected", "big")
    if not os.path.isdir(exp):
        MT.extract_stack([os.path.join(work, "layers", "big.tar")], exp)
    late = ["small/s%03d" % i for i in (100, 150, 199)]

    def read(mp, p):
        return open(os.path.join(mp, p), "rb").read() == open(
            os.path.join(exp, p), "rb").read()

    for mode, extra in (("auto", []), ("off", ["--dir-ahead", "0"])):
        proxy.reset()
        mp, pid, logf, _ = mount_ref(lab, ref("big", proxy),
                                     fresh_root(work, "da-" + mode),
                                     "da-" + mode, extra=extra)
        on = wait_log(logf, r"directory read-ahead: up to 4096 KiB", 0.5)
        check(bool(on) == (mode == "auto"), "dir-ahead %s: log says %s" %
              (mode, "on" if on else "off"))
        check(read(mp, "small/s000"), "dir-ahead %s: small/s000 reads "
              "wrong" % mode)
        # the sweep runs in the background: wait until it asked for the
        # files read next (a file whose request is still in flight is
        # waited for, not asked again)
        end = time.time() + (10 if mode == "auto" else 0.5)
        while time.time() < end and not all(
                covered(blob_ranges(proxy), off[p], off[p] + 1)
                for p in late):
            time.sleep(0.05)
        swept = blob_ranges(proxy)
        check(not any(covered(swept, off["big/b%02d" % i],
                              off["big/b%02d" % i] + 1) for i in range(48)),
              "dir-ahead %s: a 1 MiB file of big/ was fetched: %s" % (
                  mode, sorted(swept)))
        proxy.reset()
        for p in late:
            check(read(mp, p), "dir-ahead %s: %s reads wrong" % (mode, p))
        n = len(proxy.blob_gets())
        if mode == "auto":
            check(n == 0, "dir-ahead: reading %s after an open in small/ "
                  "fetched %s" % (late, proxy.blob_gets()[:3]))
        else:
            check(n > 0, "--dir-ahead 0: %s read without a request" % late)
        log("  %s: one open in small/, then %d files read with %d "
            "requests" % (mode, len(late), n))
        if mode == "auto":
            # many/ holds more than 1 MiB of small files: one open does
            # not sweep it, the second does
            far = ["many/m%03d" % i for i in (150, 200, 250)]
            many = [p for p in off if p.startswith("many/")]

            def far_asked():
                return all(covered(blob_ranges(proxy), off[p], off[p] + 1)
                           for p in far)

            def all_asked():
                # the sweep goes on past m250 in batches: wait for its
                # last one, or its request lands after the reset below
                return all(covered(blob_ranges(proxy), off[p], off[p] + 1)
                           for p in many)
            proxy.reset()
            check(read(mp, "many/m000"), "dir-ahead: many/m000 reads wrong")
            time.sleep(0.5)
            check(not far_asked(), "dir-ahead: one open in many/ (over "
                  "1 MiB of small files) swept it: %s" %
                  sorted(blob_ranges(proxy)))
            check(read(mp, "many/m001"), "dir-ahead: many/m001 reads wrong")
            end = time.time() + 10
            while time.time() < end and not all_asked():
                time.sleep(0.05)
            proxy.reset()
            for p in far:
                check(read(mp, p), "dir-ahead: %s reads wrong" % p)
            check(not proxy.blob_gets(), "dir-ahead: reading %s after two "
                  "opens in many/ fetched %s" % (far,
                                                  proxy.blob_gets()[:3]))
            log("  auto: one open in many/ sweeps nothing, the second "
                "sweeps it: %d files read with %d requests" % (
                    len(far), len(proxy.blob_gets())))
        lab.umount(mp, pid)


def startfiles_tests(lab, work, proxy, ref, b, lay, start):
    """Start files: an image whose config runs ls gets, at mount and
    before any read, ls, the file its argument names, its loader (behind
    the /lib64 symlink), ld.so.cache and every library it needs down the
    DT_NEEDED chain, and nothing else; a Python module opened later gets
    the library it needs fetched before anything reads that; the bytes
    are the host's; --start-files 0 fetches nothing."""
    log("== start files")
    want, extra, never = start
    man = lay.images["start"]
    mdata = json.load(open(os.path.join(
        lay.root, "blobs", "sha256", man["digest"][7:])))
    layer = mdata["layers"][0]["digest"]
    toc = b.tocs[layer]
    off = {F.clean(e["name"]): e["offset"] for e in toc["entries"]
           if e.get("type") == "reg" and "offset" in e}

    def fetched(p, at=0):
        return covered(blob_ranges(proxy, layer), off[p] + at,
                       off[p] + at + 1)

    for mode, extra_args in (("auto", []), ("off", ["--start-files", "0"])):
        proxy.reset()
        mp, pid, logf, _ = mount_ref(lab, ref("start", proxy),
                                     fresh_root(work, "sf-" + mode),
                                     "sf-" + mode, extra=extra_args)
        if mode == "off":
            time.sleep(1)
            check(not wait_log(logf, r"start files of", 0.1),
                  "--start-files 0: the log names start files")
            got = [p for p in want if fetched(p)]
            check(not got, "--start-files 0: fetched %s" % got)
            log("  off: nothing fetched")
            lab.umount(mp, pid)
            continue
        m = wait_log(logf, r"start files of (\S+): (\d+) files", 20)
        check(m and m.group(1) == "/usr/bin/ls" and
              int(m.group(2)) == len(want),
              "start files: log %r, want /usr/bin/ls and %d files" % (
                  m.group(0) if m else None, len(want)))
        missing = [p for p in want if not fetched(p)]
        check(not missing, "start files: not fetched: %s" % missing)
        stray = [p for p in never if fetched(p, 100000)] + [
            p for p in extra if fetched(p)]
        check(not stray, "start files: fetched what nothing needs: %s" %
              stray)
        # the bytes, with no request: they are in
        proxy.reset()
        for p, host in sorted(want.items()):
            data = open(os.path.join(mp, p), "rb").read()
            if host:
                check(data == open(host, "rb").read(),
                      "start files: %s differs from %s" % (p, host))
        check(not proxy.blob_gets(), "start files: reading them asked %s" %
              proxy.blob_gets()[:3])
        log("  auto: %d files fetched at mount (%s), read with no request"
            % (len(want), ", ".join(sorted(os.path.basename(p)
                                           for p in want))))
        # a module opened later: what it needs comes without a read of it
        lib = [p for p in extra if p != START_MODULE][0]
        data = open(os.path.join(mp, START_MODULE), "rb").read()
        check(data == open(extra[START_MODULE], "rb").read(),
              "start files: %s differs" % START_MODULE)
        end = time.time() + 10
        while time.time() < end and not fetched(lib):
            time.sleep(0.05)
        check(fetched(lib), "start files: opening %s did not fetch %s" % (
            START_MODULE, lib))
        check(open(os.path.join(mp, lib), "rb").read() ==
              open(extra[lib], "rb").read(), "start files: %s differs" % lib)
        log("  opening %s fetched %s before any read of it" % (
            os.path.basename(START_MODULE), os.path.basename(lib)))
        lab.umount(mp, pid)
        check(wait_log(logf, r"start files: 1 librar", 5),
              "start files: the unmount log does not count the module")


def py_startfiles_tests(lab, work, proxy, ref, pystart):
    """A Python program's start files: at mount, before any read, the
    interpreter, its libraries and the compiled modules its script
    imports, and theirs, at module level (alpha, delta, beta, beta.inner,
    beta.gamma, encodings...) are fetched; a module imported only inside a
    function or named only in a string is not, nor is the source of a
    module that has its .pyc; reading them then asks nothing, and the
    bytes are the host's."""
    log("== start files of a Python program")
    want, never = pystart
    proxy.reset()
    mp, pid, logf, _ = mount_ref(lab, ref("startpy", proxy),
                                 fresh_root(work, "sf-py"), "sf-py",
                                 extra=["--log-level", "debug"])
    m = wait_log(logf, r"start files of (\S+): (\d+) files", 30)
    check(m and m.group(1) == "/usr/bin/python3.11" and
          int(m.group(2)) == len(want),
          "python start files: log %r, want /usr/bin/python3.11 and %d "
          "files" % (m.group(0) if m else None, len(want)))
    text = open(logf, errors="replace").read()
    listed = set(re.findall(r"startset: /(\S+) \((?:depth|level) \d+\)",
                            text))
    missing = sorted(set(want) - listed)
    check(not missing, "python start files: not fetched: %s" % missing)
    stray = sorted(set(never) & listed)
    check(not stray, "python start files: fetched what nothing reads: %s"
          % stray)
    proxy.reset()
    for p, host in sorted(want.items()):
        data = open(os.path.join(mp, p), "rb").read()
        check(data == open(host, "rb").read(),
              "python start files: %s differs from %s" % (p, host))
    check(not proxy.blob_gets(), "python start files: reading them asked "
          "%s" % proxy.blob_gets()[:3])
    log("  %d files fetched at mount (%s), read with no request; not "
        "fetched: %s" % (len(want), ", ".join(sorted(
            os.path.basename(p) for p in want if p.endswith(".pyc"))),
            ", ".join(os.path.basename(p) for p in never)))
    lab.umount(mp, pid)


def prefetch_tests(lab, work, proxy, ref, b, lay, exp_chunks):
    log("== landmark prefetch")
    for tag in ("landmark", "landmark-zstd"):
        man = lay.images[tag]
        mdata = json.load(open(os.path.join(
            lay.root, "blobs", "sha256", man["digest"][7:])))
        toc = b.tocs[mdata["layers"][0]["digest"]]
        lm = next(e for e in toc["entries"]
                  if e["name"] == ".prefetch.landmark")
        lm_off = lm["offset"]
        prio = {F.clean(e["name"]) for e in toc["entries"]
                if e.get("type") in ("reg", "chunk") and
                e.get("offset", 1 << 62) < lm_off}
        proxy.reset()
        mp, pid, logf, _ = mount_ref(lab, ref(tag, proxy),
                                     fresh_root(work, tag), tag)
        m = wait_log(logf, r"prefetched the priority files: (\d+) chunks "
                     r"in ([0-9.]+) s", 30)
        if not check(m, "%s: no 'prefetched the priority files' log" %
                     tag):
            lab.umount(mp, pid)
            continue
        rng = blob_ranges(proxy)
        check(covered(rng, 0, lm_off),
              "%s: [0, %d) not fetched before any read: %s" % (
                  tag, lm_off, sorted(rng)))
        proxy.reset()
        for p in sorted(prio):
            check(open(os.path.join(mp, p), "rb").read() == open(
                os.path.join(exp_chunks, p), "rb").read(),
                "%s: %s reads wrong" % (tag, p))
        check(not proxy.blob_gets(), "%s: reading prioritized files "
              "fetched %s" % (tag, proxy.blob_gets()[:3]))
        n0 = len(proxy.blob_gets())
        other = "chunks/f300000"
        check(open(os.path.join(mp, other), "rb").read() == open(
            os.path.join(exp_chunks, other), "rb").read(),
            "%s: %s reads wrong" % (tag, other))
        check(len(proxy.blob_gets()) > n0,
              "%s: %s was fetched without being read" % (tag, other))
        log("  %s: %s (landmark at %d) prefetched at mount (%s chunks in "
            "%s s); reading them: 0 requests; %s: %d" % (
                tag, sorted(prio), lm_off, m.group(1), m.group(2), other,
                len(proxy.blob_gets()) - n0))
        lab.umount(mp, pid)

    log("== --prefetch-all")
    exp_big = os.path.join(work, "expected", "big")
    if not os.path.isdir(exp_big):
        MT.extract_stack([os.path.join(work, "layers", "big.tar")], exp_big)
    for tag, exp in (("esgz", os.path.join(work, "expected", "stack")),
                     ("big", exp_big)):
        proxy.reset()
        mp, pid, logf, _ = mount_ref(lab, ref(tag, proxy),
                                     fresh_root(work, "all-" + tag),
                                     "all-" + tag, extra=["--prefetch-all"])
        m = wait_log(logf, r"prefetch done: (\d+) chunks \((\d+) stored "
                     r"bytes\) in ([0-9.]+) s, (\d+) failed", 180)
        if check(m, "%s: --prefetch-all never finished" % tag):
            check(m.group(4) == "0", "%s: %s prefetches failed" % (
                tag, m.group(4)))
            proxy.reset()
            verify_all(mp, exp, "prefetch-all/" + tag)
            check(not proxy.blob_gets(), "%s: reads after --prefetch-all "
                  "fetched %s" % (tag, proxy.blob_gets()[:3]))
            log("  %s: %s chunks (%s bytes) in %s s; then every file read "
                "with %d requests" % (tag, m.group(1), m.group(2),
                                      m.group(3), len(proxy.blob_gets())))
        lab.umount(mp, pid)

    # SIGTERM while --prefetch-all runs: prompt, clean unmount
    mp, pid, logf, _ = mount_ref(lab, ref("big", proxy),
                                 fresh_root(work, "term"), "term",
                                 extra=["--prefetch-all"])
    time.sleep(0.3)
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)
    gone = MT.wait_gone(pid, 20)
    check(gone, "SIGTERM during --prefetch-all: daemon still running")
    check(not MT.is_mounted(mp), "SIGTERM during --prefetch-all: still "
          "mounted")
    if gone:
        lab.mounts.remove(mp)
    text = open(logf).read()
    check("prefetch done" not in text and "unmounting" in text,
          "SIGTERM during --prefetch-all: log:\n" + text[-1500:])
    log("  SIGTERM during --prefetch-all: unmounted and gone in %.2f s" % (
        time.time() - t0))

    # an on-demand read while --prefetch-all runs (straight to the
    # registry: the proxy would be the bottleneck)
    log("== on-demand reads during --prefetch-all")
    names = ["small/s%03d" % i for i in range(0, 200, 5)]
    res = {}
    for mode in ("idle", "prefetch-all", "idle", "prefetch-all"):
        # the directory read-ahead (on when idle) would hide the idle
        # latency this compares against
        extra = ["--dir-ahead", "0"] + (
            ["--prefetch-all"] if mode == "prefetch-all" else [])
        mp, pid, logf, _ = mount_ref(lab, ref("big"),
                                     fresh_root(work, "lat-%s-%d" % (
                                         mode, len(res.get(mode, [])))),
                                     "lat", extra=extra)
        lat = cold_small_reads(mp, names)
        done = wait_log(logf, r"prefetch done", 0.01)
        if mode == "prefetch-all" and done:
            log("  note: the prefetch finished before the reads did")
        res.setdefault(mode, []).extend(lat)
        lab.umount(mp, pid)
    i50, i90 = pct(res["idle"], 0.5), pct(res["idle"], 0.9)
    p50, p90 = pct(res["prefetch-all"], 0.5), pct(res["prefetch-all"], 0.9)
    log("  cold 1-8 KiB file reads: idle median %.1f ms p90 %.1f ms; "
        "during --prefetch-all median %.1f ms p90 %.1f ms (x%.2f)" % (
            i50 * 1e3, i90 * 1e3, p50 * 1e3, p90 * 1e3, p50 / i50))
    check(p50 <= 3 * i50 + 0.010,
          "on-demand reads slowed by --prefetch-all: median %.1f ms vs "
          "%.1f ms" % (p50 * 1e3, i50 * 1e3))


if __name__ == "__main__":
    sys.exit(main())
