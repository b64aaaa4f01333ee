#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds a small two-layer OCI image layout by hand (no registry, no
daemon): layer 1 is busybox-static with a few applet links and /etc files,
layer 2 adds /hello.txt and deletes /etc/group with an OCI whiteout.

usage: mkimage.py BUSYBOX OUTDIR TAG [EXTRA_MB]
EXTRA_MB adds that many MiB of incompressible files under /opt/data to
layer 2 (data a container never reads, to show lazy pulling).
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 1700000000


def tar_layer(entries):
    """entries: (name, kind, data/target, mode) -> (gzip bytes, diff_id)"""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.mode = mode
            ti.uname = ti.gname = "root"
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(tar)
    return gz.getvalue(), "sha256:" + hashlib.sha256(tar).hexdigest()


def put_blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def main():
    busybox, out, tag = sys.argv[1:4]
    extra_mb = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    bb = open(busybox, "rb").read()
    l1 = [("bin", "dir", None, 0o755), ("bin/busybox", "file", bb, 0o755)]
    for applet in ("sh", "echo", "cat", "ls", "true", "sleep", "id"):
        l1.append(("bin/" + applet, "link", "busybox", 0o777))
    for d in ("dev", "proc", "sys", "tmp", "etc", "root"):
        l1.append((d, "dir", None, 0o1777 if d == "tmp" else 0o755))
    l1.append(("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644))
    l1.append(("etc/group", "file", b"root:x:0:\n", 0o644))
    l2 = [("hello.txt", "file", b"hello from layer 2\n", 0o644),
          ("etc", "dir", None, 0o755),
          ("etc/.wh.group", "file", b"", 0o644)]
    if extra_mb:
        import random
        rnd = random.Random(42)
        l2.append(("opt", "dir", None, 0o755))
        l2.append(("opt/data", "dir", None, 0o755))
        for i in range(extra_mb):
            l2.append(("opt/data/blob%03d.bin" % i, "file",
                       rnd.randbytes(1 << 20), 0o644))

    layers, diff_ids = [], []
    for entries in (l1, l2):
        gz, diff = tar_layer(entries)
        dg, size = put_blob(out, gz)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": dg, "size": size})
        diff_ids.append(diff)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "mkimage.py layer 1"},
                    {"created_by": "mkimage.py layer 2"}],
    }
    cd, cs = put_blob(out, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": cs},
        "layers": layers,
    }
    md, ms = put_blob(out, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(md)


if __name__ == "__main__":
    main()
