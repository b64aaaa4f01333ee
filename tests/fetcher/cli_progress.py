#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The progress line of the lazypull CLI, on a real terminal.

Pushes a one-layer image (a plain gzip layer holding a 6 MiB file) to a
docker-registry started here and reads it through the slow proxy of run.py
(every blob request held back a quarter of a second), so indexing the layer
and reading the file take a few seconds.  The CLI runs with its stderr on a
pseudo-terminal (python's pty); the bytes the terminal receives are read
with their arrival times.  Checked:

- `index build REF` and `cat` draw a meter: "indexing layer sha256:…
  D/T MB R MB/s M:SS", redrawn with \\r no more than about five times a
  second, first drawn only after half a second, done never above total and
  never going back, the last frame at done == total == the blob (file)
  size, and the line cleared at the end (\\r ESC[K);
- nothing is drawn when stderr is a pipe, nor with --no-progress on the
  terminal, nor for short work (a warm `ls`); --progress forces it on a
  pipe;
- the index written while the meter ran is valid;
- `mount -f --prefetch-all` (as root with FUSE) shows the background
  fetch counting chunks up to the total, then clears the line.

Env: LAZYPULL, SRCDIR, WORKDIR.  Exit 77 = skipped."""
import fcntl
import gzip
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
sys.path.insert(0, HERE)
import fmtlib as F  # noqa: E402
import run as R  # noqa: E402

fails = []

CLEAR = b"\r\x1b[K"
FRAME = re.compile(
    rb"\r(?P<what>[^\r\x1b]*?) (?P<done>[\d.]+)/(?P<total>[\d.]+) "
    rb"(?P<unit>B|kB|MB|GB) (?P<rate>[\d.]+) (?:B|kB|MB|GB)/s"
    rb"(?: (?P<eta>\d+:\d\d(?::\d\d)?))?\x1b\[K")
SCALE = {b"B": 1, b"kB": 1e3, b"MB": 1e6, b"GB": 1e9}


def fail(msg):
    fails.append(msg)
    print("FAIL: " + msg)


def ok(msg):
    print("ok   " + msg)


def run_tty(cmd, timeout=180, during=None):
    """Runs cmd with stderr on a pseudo-terminal (raw: no \\n -> \\r\\n),
    stdout a pipe.  Returns (rc, stdout, [(seconds, bytes)] of the
    terminal, seconds the command took).  during(got), if given, runs
    while the command does (and should make it end)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ,
                struct.pack("HHHH", 24, 160, 0, 0))
    got = []
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)

    def reader():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                break  # EIO: every writer closed the terminal
            if not b:
                break
            got.append((time.monotonic() - t0, b))
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    if during:
        try:
            during(got)
        except Exception as ex:  # noqa: BLE001 - report, then clean up
            fail("while running %s: %s" % (cmd[1], ex))
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    secs = time.monotonic() - t0
    th.join(10)
    os.close(master)
    return p.returncode, out, got, secs


def frames_of(got):
    """The meter frames in the terminal bytes: [(arrival, match)]."""
    data = b"".join(b for _, b in got)
    # arrival time of each byte offset
    ends, t, pos = [], [], 0
    for at, b in got:
        pos += len(b)
        ends.append(pos)
        t.append(at)
    out = []
    for m in FRAME.finditer(data):
        k = next(i for i, e in enumerate(ends) if e > m.start())
        out.append((t[k], m))
    return data, out


def check_meter(what, got, secs, want_total, label):
    """The frames of one task: sane numbers, rate limited, cleared."""
    data, frames = frames_of(got)
    if not frames:
        fail("%s: no progress line on the terminal: %r" %
             (what, data[:300]))
        return
    prev = -1.0
    for at, m in frames:
        done = float(m["done"]) * SCALE[m["unit"]]
        total = float(m["total"]) * SCALE[m["unit"]]
        if not m["what"].decode().startswith(label):
            fail("%s: frame says %r, want %r" % (what, m["what"], label))
            return
        if done > total + 1 or done + 1 < prev:
            fail("%s: frame %r: done above total or going back" %
                 (what, m.group(0)))
            return
        prev = done
    first_at = frames[0][0]
    if first_at < 0.45:
        fail("%s: first frame after %.2f s (short work must print "
             "nothing)" % (what, first_at))
    # at most ~4 a second, plus the final frame
    if len(frames) > secs / 0.2 + 2:
        fail("%s: %d frames in %.1f s (more than ~5 a second)" %
             (what, len(frames), secs))
    last = frames[-1][1]
    unit = SCALE[last["unit"]]
    done, total = float(last["done"]) * unit, float(last["total"]) * unit
    # one decimal in the unit shown
    tol = 0.05 * unit + 1
    if abs(total - want_total) > tol or abs(done - want_total) > tol:
        fail("%s: last frame %r, want %d/%d bytes" %
             (what, last.group(0), want_total, want_total))
    if not data[last.end():].startswith(CLEAR):
        fail("%s: the line is not cleared after the last frame: %r" %
             (what, data[last.end():last.end() + 40]))
    ok("%s: %d frames in %.1f s, first after %.2f s, last %r" %
       (what, len(frames), secs, first_at, last.group(0)[1:-3].decode()))


def no_meter(what, err):
    if b"\r" in err or b"\x1b[" in err:
        fail("%s: progress drawn: %r" % (what, err[:300]))
    else:
        ok("%s: nothing drawn" % what)


def main():
    src, work, lp = F.env_paths()
    R.require_registry_tools(F.skip)
    F.prepare_workdir(work)

    rnd = random.Random(5)
    big = rnd.randbytes(6 << 20)
    tar = R.make_tar((("big.bin", big), ("small.txt", b"small\n")))
    blob = gzip.compress(tar, 1, mtime=0)
    local = os.path.join(work, "layer.tar.gz")
    with open(local, "wb") as f:
        f.write(blob)

    root = os.path.join(work, "oci")
    layer = R.put_blob(root, blob,
                       "application/vnd.oci.image.layer.v1.tar+gzip")
    lay = R.ImageLayout(root, [layer], [R.sha256(tar)])
    reg = R.Registry(work, "registry")
    proxy = None
    try:
        R.skopeo_push(work, lay, "v1", "%s/test/big:v1" % reg.addr)
        proxy = R.Proxy(reg.addr)
        # each blob request takes a second: long enough for a meter even
        # when the index build streams the blob in parallel requests
        proxy.add(R.Rule("delay", match="/blobs/", count=10 ** 9,
                         seconds=1.0))
        ref = "%s/test/big:v1" % proxy.addr
        short = "sha256:" + layer["digest"][7:19]

        def state(name):
            return ["--plain-http", "--root", os.path.join(work, name)]

        # 1. index build of a registry layer, on a terminal
        idx = os.path.join(work, "big.zran")
        rc, out, got, secs = run_tty([lp, "index", "build"] +
                                     state("s1") + [ref, "-o", idx])
        err = b"".join(b for _, b in got)
        if rc:
            fail("index build on a tty: exit %d: %s" % (rc, F.short(err)))
        else:
            check_meter("index build REF on a tty", got, secs, len(blob),
                        "indexing layer " + short)
            if b"indexed " not in err:
                fail("index build: no summary line: %s" % F.short(err))
        rc, want, _ = F.run([lp, "ls", "--json", "--digest", local])
        rc2, got_ls, e2 = F.run([lp, "ls", "--json", "--digest", "--index",
                                 idx, local])
        if rc or rc2 or want != got_ls:
            fail("the index written under the meter does not load: %s" %
                 F.short(e2))
        else:
            ok("the index written under the meter loads")

        # 2. the same with stderr a pipe: nothing drawn
        rc, out, err = F.run([lp, "index", "build"] + state("s2") +
                             [ref, "-o", os.path.join(work, "b2.zran")])
        if rc:
            fail("index build to a pipe: exit %d: %s" % (rc, F.short(err)))
        no_meter("index build REF, stderr a pipe", err)

        # 3. --no-progress on a terminal: nothing drawn
        rc, out, got, secs = run_tty([lp, "index", "build",
                                      "--no-progress"] + state("s3") +
                                     [ref, "-o",
                                      os.path.join(work, "b3.zran")])
        if rc:
            fail("index build --no-progress: exit %d" % rc)
        no_meter("index build --no-progress on a tty",
                 b"".join(b for _, b in got))

        # 4. --progress forces it on a pipe
        rc, out, err = F.run([lp, "index", "build", "--progress"] +
                             state("s4") + [ref, "-o",
                                            os.path.join(work, "b4.zran")])
        n = len(FRAME.findall(err))
        if rc or not n or not err.split(b"indexed ")[0].endswith(CLEAR):
            fail("--progress on a pipe: exit %d, %d frames: %r" %
                 (rc, n, err[:300]))
        else:
            ok("--progress on a pipe: %d frames" % n)

        # 5. the first ls of the layer indexes it (into the index store),
        # with the meter on a terminal; stdout stays clean
        rc, out, got, secs = run_tty([lp, "ls", "--json", "--digest"] +
                                     state("s5") + [ref])
        if rc or out != want:
            fail("first ls on a tty: exit %d, listing %s" %
                 (rc, "differs" if out != want else "ok"))
        else:
            check_meter("first ls REF (indexing) on a tty", got, secs,
                        len(blob), "indexing layer " + short)
        stored = os.path.join(work, "s5", "indexes", "sha256",
                              layer["digest"][7:] + ".zran")
        if not os.path.exists(stored):
            fail("no index in the store: %s" % stored)

        # 6. short work (a warm ls) draws nothing, even on a terminal
        rc, out, got, secs = run_tty([lp, "ls"] + state("s5") + [ref])
        if rc:
            fail("warm ls: exit %d" % rc)
        no_meter("warm ls on a tty (%.2f s)" % secs,
                 b"".join(b for _, b in got))

        # 7. cat of the big file through a cold cache (index given)
        rc, out, got, secs = run_tty([lp, "cat", "--index", idx] +
                                     state("s7") + [ref, "/big.bin"])
        if rc or out != big:
            fail("cat on a tty: exit %d, %d bytes" % (rc, len(out)))
        else:
            check_meter("cat of a 6 MiB file on a tty", got, secs, len(big),
                        "reading /big.bin")
        # and into a pipe: nothing on stderr
        rc, out, err = F.run([lp, "cat", "--index", idx] + state("s8") +
                             [ref, "/big.bin"])
        if rc or out != big:
            fail("cat to a pipe: exit %d" % rc)
        no_meter("cat, stderr a pipe", err)
        # 8. mount --prefetch-all in the foreground: the whole image is
        # fetched in the background, with a meter counting chunks
        if os.geteuid() == 0 and os.path.exists("/dev/fuse") and \
                shutil.which("fusermount3"):
            mroot = os.path.join(work, "s9")
            os.makedirs(os.path.join(mroot, "indexes", "sha256"))
            # the index is stored already: the layer's bytes come only
            # from the prefetch
            shutil.copy(idx, os.path.join(mroot, "indexes", "sha256",
                                          layer["digest"][7:] + ".zran"))
            mnt = os.path.join(work, "mnt")
            os.makedirs(mnt)

            def until_prefetched(got):
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    data = b"".join(b for _, b in got)
                    m = re.findall(rb" (\d+)/(\d+) chunks", data)
                    if m and m[-1][0] == m[-1][1] and \
                            data.endswith(CLEAR):
                        break
                    time.sleep(0.2)
                time.sleep(0.3)
                subprocess.run([lp, "umount", mnt], timeout=30,
                               capture_output=True)
            rc, out, got, secs = run_tty(
                [lp, "mount", "-f", "--prefetch-all", "--plain-http",
                 "--root", mroot, ref, mnt], timeout=90,
                during=until_prefetched)
            data, frames = frames_of(got)
            chunks = re.findall(rb"\rprefetching [^\r]*? (\d+)/(\d+) "
                                rb"chunks [^\r]*?\x1b\[K", data)
            if rc or not chunks or chunks[-1][0] != chunks[-1][1] or \
                    not data.endswith(CLEAR):
                fail("mount --prefetch-all -f on a tty: exit %d: %r" %
                     (rc, data[-300:]))
            else:
                ok("mount --prefetch-all -f on a tty: %d frames, last "
                   "%s/%s chunks" % (len(chunks), chunks[-1][0].decode(),
                                     chunks[-1][1].decode()))
        else:
            print("skipped: mount --prefetch-all (needs root and FUSE)")
    finally:
        if proxy:
            proxy.stop()
        reg.stop()
    print("%d failure(s)" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
