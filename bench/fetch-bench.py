#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fetcher vs curl: ranged reads and whole-blob throughput from a local
docker-registry, in one run.

    fetch-bench.py BENCH_FETCH [--size MB] [bench-fetch options...]

Starts docker-registry on 127.0.0.1 (random port, storage in a temporary
directory), pushes one random blob of --size MB (default 64) through the
registry API, and runs BENCH_FETCH (build/bench/bench-fetch) against it,
which prints both tools' throughput and the ratios.  Exit 77 when
docker-registry or curl is missing.
"""

import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(addr, timeout=20.0):
    host, port = addr.split(":")
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=1)
            c.request("GET", "/v2/")
            c.getresponse().read()
            c.close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def push_blob(addr, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    c.request("POST", f"/v2/{repo}/blobs/uploads/")
    r = c.getresponse()
    r.read()
    if r.status != 202:
        raise RuntimeError(f"upload start: HTTP {r.status}")
    loc = urllib.parse.urlparse(r.getheader("Location"))
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + \
        "digest=" + urllib.parse.quote(digest)
    c.request("PUT", path, body=data,
              headers={"Content-Type": "application/octet-stream",
                       "Content-Length": str(len(data))})
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 201:
        raise RuntimeError(f"upload: HTTP {r.status}")
    return digest


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tool, args = sys.argv[1], sys.argv[2:]
    size = 64
    if "--size" in args:
        i = args.index("--size")
        size = int(args[i + 1])
        del args[i:i + 2]
    for t in ("docker-registry", "curl"):
        if not shutil.which(t):
            print(f"SKIP: {t} not installed")
            return 77
    work = tempfile.mkdtemp(prefix="lp-fetch-bench-")
    addr = f"127.0.0.1:{free_port()}"
    conf = os.path.join(work, "config.yml")
    with open(conf, "w") as f:
        f.write("version: 0.1\nlog:\n  level: error\n"
                f"storage:\n  filesystem: {{rootdirectory: {work}/storage}}\n"
                f"http:\n  addr: {addr}\n")
    log = open(os.path.join(work, "registry.log"), "w")
    proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL)
    try:
        if not wait_up(addr):
            print(f"registry did not start; see {work}/registry.log")
            return 1
        data = os.urandom(size << 20)
        digest = push_blob(addr, "bench/blob", data)
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy",
                                    "all_proxy")}
        return subprocess.run([tool, *args, addr, "bench/blob", digest],
                              env=env).returncode
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
