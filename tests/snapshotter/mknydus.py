#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds an OCI image layout holding a nydus image assembled from the RAFS
reference vectors (testdata/reference/rafs), for the snapshotter tests:

  layer 0  the RAFS data blob (mediaType ...nydus.blob.v1, annotation
           containerd.io/snapshot/nydus-blob: "true")
  layer 1  the bootstrap layer: image/image.boot in a tar.gz (annotation
           containerd.io/snapshot/nydus-bootstrap: "true")
  layer 2  a plain gzip layer with busybox-static (/bin/busybox, sh, ...):
           the vectors' tree has no programs, and `ctr run` needs one

The first two are a nydus image as nydusify lays it out (blobs, then the
bootstrap).  The ordinary layer goes on top, not beneath: containerd 1.6's
unpacker fetches every layer from the first one it has to unpack onward,
so a layer beneath would make it download the nydus blob too.  The
assembly is tests/integration/mount_remote.py's (the same helpers).

usage: mknydus.py BUSYBOX RAFSDIR BOOTSTRAP-NAME BLOB-HEX OUTDIR TAG
Prints the digests of the three layers, one a line.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mkimage  # noqa: E402
import mount_remote as MR  # noqa: E402


def main():
    busybox, rafs, boot_name, blob_hex, out, tag = sys.argv[1:7]
    bb = open(busybox, "rb").read()
    entries = [("bin", "dir", None, 0o755),
               ("bin/busybox", "file", bb, 0o755)]
    for applet in ("sh", "cat", "ls", "find", "sha256sum", "echo"):
        entries.append(("bin/" + applet, "link", "busybox", 0o777))
    for d in ("dev", "proc", "sys", "tmp", "etc"):
        entries.append((d, "dir", None, 0o1777 if d == "tmp" else 0o755))
    bb_gz, bb_diff = mkimage.tar_layer(entries)

    boot = open(os.path.join(rafs, boot_name), "rb").read()
    data = open(os.path.join(rafs, "blobs", blob_hex), "rb").read()
    boot_gz, boot_diff = MR.bootstrap_layer(boot)
    layers = [
        (data, MR.MT_NYDUS_BLOB,
         {"containerd.io/snapshot/nydus-blob": "true"},
         MR.sha256_hex(data)),
        (boot_gz, MR.MT_GZIP,
         {"containerd.io/snapshot/nydus-bootstrap": "true"}, boot_diff),
        (bb_gz, MR.MT_GZIP, None, bb_diff),
    ]
    lay = MR.Layout(out)
    lay.image(tag, layers)
    lay.finish()
    for blob, _, _, _ in layers:
        print(MR.sha256_hex(blob))


if __name__ == "__main__":
    main()
