#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of tests/fuzz/fuzz-grpc.c: HTTP/2 client frames
(HPACK literals, no Huffman) carrying gRPC calls, well-formed and not.
usage: gen-fuzz-grpc-seeds.py OUTDIR"""
import os
import struct
import sys

SVC = "/containerd.services.snapshots.v1.Snapshots/"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def lit(name, value):
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def headers(sid, path, ctype="application/grpc", end=False, extra=()):
    block = lit(":method", "POST") + lit(":scheme", "http") + \
        lit(":path", path) + lit(":authority", "/run/x.sock") + \
        lit("content-type", ctype) + lit("te", "trailers")
    for k, v in extra:
        block += lit(k, v)
    return frame(1, 4 | (1 if end else 0), sid, block)


def grpc_msg(body, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(body) if length is None else length) + body


def data(sid, payload, end=True):
    return frame(0, 1 if end else 0, sid, payload)


def stat_req(key):
    k = key.encode()
    return b"\x12" + bytes([len(k)]) + k


seeds = {
    "echo": headers(1, SVC + "Echo") + data(1, grpc_msg(b"hello")),
    "stat": headers(1, SVC + "Stat") + data(1, grpc_msg(stat_req("sha256:abc"))),
    "stream": headers(1, SVC + "Stream") + data(1, grpc_msg(b"")) +
    frame(8, 0, 1, struct.pack(">I", 100000)),
    "two-and-reset": headers(1, SVC + "Stream") + headers(3, SVC + "Echo") +
    data(3, grpc_msg(b"x" * 40), end=False) + data(1, grpc_msg(b"")) +
    frame(3, 0, 1, struct.pack(">I", 8)) + data(3, b"", end=True),
    "unknown-method": headers(1, SVC + "Nope") + data(1, grpc_msg(b"")),
    "unknown-service": headers(1, "/x.Y/Z") + data(1, grpc_msg(b"")),
    "bad-content-type": headers(1, SVC + "Echo", ctype="text/plain") + data(1, b"abc"),
    "compressed": headers(1, SVC + "Echo", extra=[("grpc-encoding", "gzip")]) +
    data(1, grpc_msg(b"zz", flag=1)),
    "truncated-prefix": headers(1, SVC + "Echo") + data(1, b"\x00\x00\x00"),
    "short-body": headers(1, SVC + "Echo") + data(1, grpc_msg(b"ab", length=10)),
    "oversized": headers(1, SVC + "Echo") + data(1, grpc_msg(b"", length=0x7fffffff)),
    "two-messages": headers(1, SVC + "Echo") + data(1, grpc_msg(b"a") + grpc_msg(b"b")),
    "timeout": headers(1, SVC + "Fail", extra=[("grpc-timeout", "1n")]) + data(1, grpc_msg(b"")),
    "bad-timeout": headers(1, SVC + "Fail", extra=[("grpc-timeout", "99999999999Q")]) + data(1, grpc_msg(b"")),
    "headers-only": headers(1, SVC + "Echo", end=True),
    "control": frame(6, 0, 0, b"12345678") + frame(8, 0, 0, struct.pack(">I", 1 << 20)) +
    headers(1, SVC + "Fail") + data(1, grpc_msg(b"")) + frame(7, 0, 0, struct.pack(">II", 1, 0)),
    "get": frame(1, 5, 1, lit(":method", "GET") + lit(":scheme", "http") + lit(":path", "/")),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, body in seeds.items():
    for chunk, tag in ((0, ""), (7, "-chunked")):
        with open(os.path.join(out, name + tag), "wb") as f:
            f.write(bytes([chunk]) + body)
with open(os.path.join(out, "preface-garbage"), "wb") as f:
    f.write(b"\x00PRI * HTTP/1.1\r\nHost: x\r\n\r\n")
