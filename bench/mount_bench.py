#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""FUSE mount benchmark: lazypull mount REF against a local docker-registry.

    mount_bench.py LAZYPULL WORKDIR [ROUNDS]

Builds an eStargz image (upstream Go library, tests/refgen, default 4 MiB
chunks) from this host's /usr/bin/python3.11, /usr/lib/python3.11 and a
96 MiB file concatenated from /usr files, pushes it to a docker-registry
started here on loopback, and prints, all measured in this run:

  1. sequential read throughput of the 96 MiB file through the mount:
     cold (empty blob cache, from the registry), warm blob cache with the
     page cache dropped, and warm (read before), each against the
     extracted copy on local disk read the same way (warm: decoded
     chunks served from ROOT/cache/decoded; also without that store);
  2. cold (empty blob cache) time and bytes fetched to cat python3.11 and
     time to first byte of a small file, per fresh mount (median of ROUNDS);
  3. daemon RSS after walking and reading the whole image with the
     decoded store warm (default, --cache-size 4, --no-prefetch, and
     without the store), right after the reads and once idle;
  4. cold small-file reads while --prefetch-all runs against an idle mount.

Needs root, /dev/fuse, docker-registry, skopeo, go + the estargz sources.
"""

import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "fetcher"))
sys.path.insert(0, os.path.join(SRC, "tests", "formats"))
import mount_test as MT  # noqa: E402
import mount_remote as M  # noqa: E402
import run as R  # noqa: E402
import fmtlib as F  # noqa: E402

BIG = "data/big.bin"
PYBIN = "usr/bin/python3.11"


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def read_all(path, bs=1 << 20):
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, bs)
            if not b:
                break
            n += len(b)
    finally:
        os.close(fd)
    return n


def throughput(path, cold):
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    n = read_all(path)
    return n / (time.perf_counter() - t0) / 1e6


def make_tar(path):
    files = []
    for top in ("/usr/bin/python3.11", "/usr/lib/python3.11"):
        if os.path.isfile(top):
            files.append(top)
        for dp, dn, fn in os.walk(top):
            dn[:] = [d for d in dn if d != "__pycache__"]
            for n in fn:
                p = os.path.join(dp, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    files.append(p)
    # 96 MiB of real file contents (compressible like an image is)
    pool = []
    for dp, _, fn in os.walk("/usr/lib/x86_64-linux-gnu"):
        for n in fn:
            p = os.path.join(dp, n)
            if os.path.isfile(p) and not os.path.islink(p):
                pool.append(p)
    pool.sort()
    random.Random(1).shuffle(pool)
    big = bytearray()
    for p in pool:
        if len(big) >= 96 << 20:
            break
        with open(p, "rb") as f:
            big += f.read(8 << 20)
    del big[96 << 20:]
    bigf = path + ".big"
    with open(bigf, "wb") as f:
        f.write(big)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for p in sorted(set(files)):
            t.add(p, arcname=p.lstrip("/"), recursive=False)
        t.add(bigf, arcname=BIG)
    os.unlink(bigf)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def walk_read(mp):
    n = 0
    for dp, _, fn in os.walk(mp):
        for name in fn:
            p = os.path.join(dp, name)
            if os.path.isfile(p) and not os.path.islink(p):
                n += read_all(p)
    return n


def fetched(logf):
    m = M.wait_log(logf, r"fetched: (\d+) requests, (\d+) bytes", 20)
    return (int(m.group(1)), int(m.group(2))) if m else (-1, -1)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    lp, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    if os.path.isdir(work):
        for mp in MT.mountinfo():
            if mp.startswith(os.path.realpath(work) + "/"):
                subprocess.run(["umount", "-l", mp])
        shutil.rmtree(work)
    os.makedirs(work)
    MT.Lab.umount = lambda self, mp, pid=None: M.umount_or_dump(
        self, mp, pid, os.path.basename(mp))
    lab = MT.Lab(lp, work)
    running = []
    try:
        bench(lab, work, rounds, running)
    finally:
        lab.cleanup()
        for r in reversed(running):
            r.stop()


def bench(lab, work, rounds, running):
    refgen, why = MT.build_refgen(SRC, work)
    if not refgen:
        sys.exit("bench needs refgen: " + why)
    tar = os.path.join(work, "py.tar")
    make_tar(tar)
    blob = os.path.join(work, "py.esgz")
    dg, _ = F.refgen(refgen, tar, blob, "estargz", chunk=0, verify=False)
    zblob = os.path.join(work, "py.zstd")
    zdg, _ = F.refgen(refgen, tar, zblob, "zstdchunked", chunk=0,
                      verify=False)
    raw = open(tar, "rb").read()
    lay = M.Layout(os.path.join(work, "oci"))
    data = open(blob, "rb").read()
    lay.image("py", [(data, M.MT_GZIP, {M.TOC_ANN: dg}, M.sha256_hex(raw))])
    data = open(zblob, "rb").read()
    lay.image("pyz", [(data, M.MT_ZSTD, {M.TOC_ANN: zdg},
                       M.sha256_hex(raw))])
    lay.finish()
    del raw, data
    ext = os.path.join(work, "extracted")
    os.makedirs(ext)
    subprocess.run(["tar", "-xf", tar, "-C", ext], check=True)
    print("image: %d files, %.1f MB tar, %.1f MB eStargz (4 MiB chunks)" % (
        sum(len(f) for _, _, f in os.walk(ext)),
        os.path.getsize(tar) / 1e6, os.path.getsize(blob) / 1e6))
    reg = R.Registry(work, "registry")
    running.append(reg)
    R.skopeo_push(work, lay, "py", "%s/bench/py:1" % reg.addr)
    R.skopeo_push(work, lay, "pyz", "%s/bench/py:zstd" % reg.addr)
    ref = "%s/bench/py:1" % reg.addr
    n_root = [0]

    def mount(extra=(), root=None, r=ref):
        if root is None:
            n_root[0] += 1
            root = os.path.join(work, "state%d" % n_root[0])
            os.makedirs(root)
        mp, pid, logf, secs = M.mount_ref(lab, r, root, "b", extra)
        return mp, pid, logf, secs, root

    # --- 2. cold: python3.11 and a small file, fresh mounts
    pyt, pyb, pyr, small, mnt = [], [], [], [], []
    smallf = "usr/lib/python3.11/__future__.py"
    for _ in range(rounds):
        mp, pid, logf, secs, root = mount()
        mnt.append(secs)
        t0 = time.perf_counter()
        with open(os.path.join(mp, smallf), "rb") as f:
            f.read(1)
        small.append(time.perf_counter() - t0)
        lab.umount(mp, pid)
        mp, pid, logf, secs, root = mount()
        t0 = time.perf_counter()
        n = read_all(os.path.join(mp, PYBIN))
        pyt.append(time.perf_counter() - t0)
        lab.umount(mp, pid)
        r, b = fetched(logf)
        pyr.append(r)
        pyb.append(b)
    print("\n== cold (empty blob cache), median of %d fresh mounts" % rounds)
    print("mount (manifest, footer, TOC):      %7.1f ms" % (
        statistics.median(mnt) * 1e3))
    print("first byte of %s (%d B): %6.1f ms" % (
        os.path.basename(smallf), os.path.getsize(os.path.join(ext, smallf)),
        statistics.median(small) * 1e3))
    print("cat %s (%.1f MB):         %7.1f ms, %d requests, %.1f MB "
          "fetched of %.1f MB" % (PYBIN, n / 1e6,
                                  statistics.median(pyt) * 1e3,
                                  statistics.median(pyr),
                                  statistics.median(pyb) / 1e6,
                                  os.path.getsize(blob) / 1e6))

    # --- 1. sequential throughput of the big file
    print("\n== sequential read of %s (96 MiB), 1 MiB reads, median of %d"
          % (BIG, rounds))
    # cold: empty blob cache, fresh mount, from the registry
    for what, extra in (("default", []),
                        ("kernel read-ahead 128 KiB, no chunk read-ahead",
                         ["--read-ahead", "0", "-o", "no_readahead"])):
        v = []
        for _ in range(rounds):
            mp, pid, logf, secs, root = mount(extra)
            v.append(throughput(os.path.join(mp, BIG), True))
            lab.umount(mp, pid)
        print("cold blob cache (%s): %5.0f MB/s" % (
            what, statistics.median(v)))
    mp, pid, logf, secs, root = mount()
    zmp, zpid, _, _, zroot = mount(r="%s/bench/py:zstd" % reg.addr)
    read_all(os.path.join(mp, BIG))  # fills the blob caches
    read_all(os.path.join(zmp, BIG))
    fuse_cold, disk_cold, fuse_warm, disk_warm, zstd_cold = [], [], [], \
        [], []
    for _ in range(rounds):
        fuse_cold.append(throughput(os.path.join(mp, BIG), True))
        fuse_warm.append(throughput(os.path.join(mp, BIG), False))
        zstd_cold.append(throughput(os.path.join(zmp, BIG), True))
        disk_cold.append(throughput(os.path.join(ext, BIG), True))
        disk_warm.append(throughput(os.path.join(ext, BIG), False))
    fc, dc = statistics.median(fuse_cold), statistics.median(disk_cold)
    fw, dw = statistics.median(fuse_warm), statistics.median(disk_warm)
    zc = statistics.median(zstd_cold)
    print("warm blob cache, page cache dropped: mount %5.0f MB/s, local "
          "file %5.0f MB/s: ratio %.2f" % (fc, dc, fc / dc))
    print("  the same image as zstd:chunked:    mount %5.0f MB/s, "
          "ratio %.2f" % (zc, zc / dc))
    print("warm (read before, page cache):      mount %5.0f MB/s, local "
          "file %5.0f MB/s: ratio %.2f" % (fw, dw, fw / dw))
    lab.umount(mp, pid)
    lab.umount(zmp, zpid)
    # the same without the decoded store: every read decodes + verifies
    nmp, npid, _, _, _ = mount(["--decoded-max", "0"], root)
    read_all(os.path.join(nmp, BIG))
    v = [throughput(os.path.join(nmp, BIG), True) for _ in range(rounds)]
    nc = statistics.median(v)
    print("  without the decoded store (--decoded-max 0): mount %5.0f "
          "MB/s, ratio %.2f" % (nc, nc / dc))
    lab.umount(nmp, npid)

    # --- 3. RSS after walking and reading everything (blob cache warm)
    print("\n== daemon RSS after walking and reading the whole image "
          "(decoded store warm)")
    for extra in ([], ["--cache-size", "4"], ["--no-prefetch"],
                  ["--decoded-max", "0"]):
        mp, pid, logf, secs, _ = mount(extra, root)
        r0 = rss_kb(pid)
        n = walk_read(mp)
        r1 = rss_kb(pid)
        # a prefetch still running (e.g. of the last mount's trace) holds
        # a chunk buffer until it ends
        M.wait_log(logf, "prefetch done", 5)
        time.sleep(0.5)
        r2 = rss_kb(pid)
        print("%-18s RSS %5.1f MB after mount, %5.1f MB after reading "
              "%.0f MB, %5.1f MB once idle" % (
                  " ".join(extra) or "default", r0 / 1024, r1 / 1024,
                  n / 1e6, r2 / 1024))
        lab.umount(mp, pid)

    # --- 4. on-demand reads while --prefetch-all runs
    names = []
    for dp, _, fn in os.walk(os.path.join(ext, "usr/lib/python3.11")):
        for n_ in fn:
            p = os.path.join(dp, n_)
            if os.path.getsize(p) < 16384:
                names.append(os.path.relpath(p, ext))
    names = sorted(names)
    random.Random(5).shuffle(names)
    names = names[:60]
    res = {}
    for mode in ("idle", "prefetch-all") * 3:
        extra = ["--prefetch-all"] if mode == "prefetch-all" else []
        mp, pid, logf, secs, _ = mount(extra)
        lat = M.cold_small_reads(mp, names)
        if mode == "prefetch-all" and M.wait_log(logf, "prefetch done",
                                                 0.01):
            print("note: the prefetch finished before the reads did")
        res.setdefault(mode, []).extend(lat)
        lab.umount(mp, pid)
    print("\n== cold reads of %d small files (< 16 KiB), 3 fresh mounts "
          "each" % len(names))
    for mode in ("idle", "prefetch-all"):
        v = res[mode]
        print("%-13s median %6.1f ms, p90 %6.1f ms, total %6.0f ms" % (
            mode, M.pct(v, 0.5) * 1e3, M.pct(v, 0.9) * 1e3, sum(v) * 1e3))
    print("median ratio prefetch-all / idle: %.2f" % (
        M.pct(res["prefetch-all"], 0.5) / M.pct(res["idle"], 0.5)))


if __name__ == "__main__":
    main()
