#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A second client stack (python3-grpcio, the gRPC C core) must get the
same answers as containerd's grpc-go: both run interop-scenario.json
against a fresh lazypull-snapshotter and their normalized transcripts
(code, message, response without timestamps) must be identical.

usage: interop.py SNAPSHOTTER SRCDIR WORKDIR
Exit 77 (SKIP) without python3-grpcio, python3-protobuf, protoc or Go (the
grpc-go side, built by run-go.sh).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format
    from google.protobuf import message_factory
except ImportError as e:
    print("SKIP: %s (python3-grpcio, python3-protobuf)" % e)
    sys.exit(77)

SVC = "/containerd.services.snapshots.v1.Snapshots/"
PKG = "containerd.services.snapshots.v1."


def load_messages(proto_dir, work):
    if not shutil.which("protoc"):
        print("SKIP: protoc (protobuf-compiler) is not installed")
        sys.exit(77)
    out = os.path.join(work, "snapshots.pb")
    subprocess.run(["protoc", "-I", proto_dir, "--include_imports",
                    "--descriptor_set_out=" + out, "snapshots.proto"],
                   check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)

    def cls(name):
        return factory.GetPrototype(pool.FindMessageTypeByName(name))
    return cls


def start(binary, root):
    os.makedirs(root)
    sock = os.path.join(root, "s.sock")
    log = open(os.path.join(root, "daemon.log"), "w")
    p = subprocess.Popen([binary, "--root", root, "--address", sock,
                          "--log-to-stdout", "--log-level", "debug"],
                         stdout=log, stderr=log)
    for _ in range(500):
        if os.path.exists(sock):
            break
        time.sleep(0.01)
    return p, sock


def stop(p):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=20)
    if rc != 0:
        raise SystemExit("snapshotter exited %d" % rc)


REQ = {
    "Prepare": ("PrepareSnapshotRequest", "PrepareSnapshotResponse"),
    "View": ("ViewSnapshotRequest", "ViewSnapshotResponse"),
    "Mounts": ("MountsRequest", "MountsResponse"),
    "Commit": ("CommitSnapshotRequest", None),
    "Remove": ("RemoveSnapshotRequest", None),
    "Stat": ("StatSnapshotRequest", "StatSnapshotResponse"),
    "Update": ("UpdateSnapshotRequest", "UpdateSnapshotResponse"),
    "List": ("ListSnapshotsRequest", "ListSnapshotsResponse"),
    "Usage": ("UsageRequest", "UsageResponse"),
    "Cleanup": ("CleanupRequest", None),
}


def strip(d, root):
    """python's view of a response, shaped like snapctl's."""
    if isinstance(d, dict):
        return {k: strip(v, root) for k, v in d.items()
                if k not in ("createdAt", "updatedAt")}
    if isinstance(d, list):
        return [strip(v, root) for v in d]
    if isinstance(d, str):
        return d.replace(root, "<root>")
    return d


def run_python(cls, sock, root, steps):
    ch = grpc.insecure_channel("unix:" + sock)
    empty = cls("google.protobuf.Empty")
    out = []
    for s in steps:
        m = s["method"]
        reqn, respn = REQ[m]
        req = cls(PKG + reqn)()
        for f in ("key", "parent", "name"):
            if f in s and f in req.DESCRIPTOR.fields_by_name:
                setattr(req, f, s[f])
        if "labels" in s:
            target = req.info.labels if m == "Update" else req.labels
            target.update(s["labels"])
        if m == "Update":
            req.info.name = s.get("name", "")
            if "paths" in s:
                req.update_mask.paths.extend(s["paths"])
        if "filters" in s:
            req.filters.extend(s["filters"])
        rc = cls(PKG + respn) if respn else empty
        e = {"method": m}
        try:
            if m == "List":
                call = ch.unary_stream(SVC + m,
                                       request_serializer=lambda x: x.SerializeToString(),
                                       response_deserializer=rc.FromString)
                infos = []
                for r in call(req, timeout=30):
                    infos += json_format.MessageToDict(r).get("info", [])
                infos = sorted(strip(infos, root), key=lambda i: i["name"])
                resp = {"info": infos} if infos else {}
            else:
                call = ch.unary_unary(SVC + m,
                                      request_serializer=lambda x: x.SerializeToString(),
                                      response_deserializer=rc.FromString)
                resp = strip(json_format.MessageToDict(call(req, timeout=30)),
                             root)
            e["code"] = 0
            e["response"] = resp
        except grpc.RpcError as err:
            e["code"] = err.code().value[0]
            e["message"] = strip(err.details(), root)
        out.append(e)
    ch.close()
    return out


def main():
    binary, srcdir, work = sys.argv[1:4]
    proto_dir = os.path.join(srcdir, "snapshotter", "proto")
    os.makedirs(work, exist_ok=True)
    snapctl = os.path.join(work, "snapctl")
    rc = subprocess.run(["bash", os.path.join(srcdir, "tests", "snapshotter",
                                              "run-go.sh"),
                         "build", os.path.join(work, "go"), snapctl]).returncode
    if rc != 0:
        sys.exit(rc)
    work = tempfile.mkdtemp(prefix="interop-", dir=work)
    scenario = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "interop-scenario.json")
    steps = json.load(open(scenario))
    cls = load_messages(proto_dir, work)

    root = os.path.join(work, "go")
    p, sock = start(binary, root)
    try:
        go = json.loads(subprocess.run([snapctl, "transcript", sock, root,
                                        scenario], check=True,
                                       capture_output=True).stdout)
    finally:
        stop(p)
    root = os.path.join(work, "py")
    p, sock = start(binary, root)
    try:
        py = run_python(cls, sock, root, steps)
    finally:
        stop(p)
    json.dump({"go": go, "python": py}, open(os.path.join(work, "transcripts.json"), "w"), indent=1)
    bad = 0
    for i, (a, b) in enumerate(zip(go, py)):
        if a != b:
            bad += 1
            print("step %d %s differs:\n  grpc-go: %s\n  grpcio:  %s" %
                  (i, steps[i]["method"], json.dumps(a), json.dumps(b)))
    if len(go) != len(steps) or len(py) != len(steps):
        bad += 1
    codes = {}
    for e in go:
        codes[e["code"]] = codes.get(e["code"], 0) + 1
    print("interop: %d steps, codes %s, %d difference(s)" %
          (len(steps), dict(sorted(codes.items())), bad))
    shutil.rmtree(work, ignore_errors=True) if not bad else None
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
