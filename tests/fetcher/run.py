#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the fetcher against a real docker-registry.

    run.py FETCH_TOOL SUITE      SUITE: registry | faults | auth | mirrors

The test starts its own docker-registry (Debian package docker-registry) on
127.0.0.1 with a random port and its own storage, pushes a hand-written OCI
layout with skopeo, and drives fetcher/ through tests/fetcher/fetch-tool.
Faults come from a loopback HTTP proxy in this file that sits between the
fetcher and the registry and can answer with canned 401/429/503 replies,
short, long or corrupted bodies, stalls, connection resets, ignored ranges
and redirects; it also plays the bearer token server.  The mirrors suite
adds a second docker-registry configured as a pull-through cache of the
first, and stops and restarts it under a running client.

Exit status: 0 pass, 1 fail, 77 skip (docker-registry or skopeo missing).
"""

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import random
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20.0):
    host = urllib.parse.urlparse(url)
    end = time.time() + timeout
    while time.time() < end:
        try:
            if host.scheme == "https":
                c = http.client.HTTPSConnection(
                    host.hostname, host.port, timeout=1,
                    context=ssl._create_unverified_context())
            else:
                c = http.client.HTTPConnection(host.hostname, host.port,
                                               timeout=1)
            c.request("GET", host.path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status in (200, 401):
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---- the image ---------------------------------------------------------------

def put_blob(root, data, media_type, annotations=None):
    """Stores data as a blob of the OCI layout at root; returns its
    descriptor."""
    d = sha256(data)
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, d[7:]), "wb") as f:
        f.write(data)
    desc = {"mediaType": media_type, "digest": d, "size": len(data)}
    if annotations:
        desc["annotations"] = annotations
    return desc


def make_tar(files):
    """A PAX tar of (name, data) pairs, in that order, with fixed metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return raw.getvalue()


class ImageLayout:
    """A one-image OCI layout at root, tagged tag: layers are descriptors
    put_blob already stored, diff_ids their uncompressed digests.  Pushed
    with skopeo_push like Layout."""

    def __init__(self, root, layers, diff_ids, tag="v1"):
        self.root = root
        cfg = put_blob(root, json.dumps({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode(),
            "application/vnd.oci.image.config.v1+json")
        man = put_blob(root, json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg, "layers": layers}).encode(),
            "application/vnd.oci.image.manifest.v1+json")
        man["annotations"] = {"org.opencontainers.image.ref.name": tag}
        with open(os.path.join(root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [man]}, f)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)


class Layout:
    """A hand-written OCI image layout: tag v1 (one image, two layers) and
    tag multi (an index for linux/amd64 and linux/arm64/v8)."""

    def __init__(self, root):
        self.root = root
        self.blobs = {}
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        rnd = random.Random(1234)
        self.big = rnd.randbytes(3 << 20)
        self.layer1 = self._layer({"data.bin": self.big,
                                   "hello.txt": b"hello, lazy world\n"})
        self.layer2 = self._layer({"etc/motd": b"second layer\n"})
        m_amd = self._image("amd64", None, [self.layer1, self.layer2])
        m_arm = self._image("arm64", "v8", [self.layer2])
        self.manifest_v1 = m_amd
        self.manifest_arm = m_arm
        idx = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                dict(self._desc(m_amd),
                     platform={"os": "linux", "architecture": "amd64"}),
                dict(self._desc(m_arm),
                     platform={"os": "linux", "architecture": "arm64",
                               "variant": "v8"}),
            ],
        }
        self.index = self._put(json.dumps(idx).encode(),
                               "application/vnd.oci.image.index.v1+json")
        top = {
            "schemaVersion": 2,
            "manifests": [
                dict(self._desc(m_amd), annotations={
                    "org.opencontainers.image.ref.name": "v1"}),
                dict(self._desc(self.index), annotations={
                    "org.opencontainers.image.ref.name": "multi"}),
            ],
        }
        with open(os.path.join(root, "index.json"), "w") as f:
            json.dump(top, f)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def _put(self, data, media_type):
        b = put_blob(self.root, data, media_type)
        self.blobs[b["digest"]] = data
        b["data"] = data
        return b

    @staticmethod
    def _desc(b):
        return {"mediaType": b["mediaType"], "digest": b["digest"],
                "size": b["size"]}

    def _layer(self, files):
        tar = make_tar(sorted(files.items()))
        gz = gzip.compress(tar, compresslevel=6, mtime=0)
        b = self._put(gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        b["diff_id"] = sha256(tar)
        return b

    def _image(self, arch, variant, layers):
        cfg = {"architecture": arch, "os": "linux",
               "rootfs": {"type": "layers",
                          "diff_ids": [l["diff_id"] for l in layers]},
               "config": {"Cmd": ["/bin/true"]}}
        if variant:
            cfg["variant"] = variant
        c = self._put(json.dumps(cfg).encode(),
                      "application/vnd.oci.image.config.v1+json")
        m = {"schemaVersion": 2,
             "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": self._desc(c),
             "layers": [self._desc(l) for l in layers]}
        return self._put(json.dumps(m).encode(),
                         "application/vnd.oci.image.manifest.v1+json")


# ---- the registry ---------------------------------------------------------------

def require_registry_tools(skip):
    """Calls skip(why), which must not return, when docker-registry or
    skopeo is not installed."""
    for t in ("docker-registry", "skopeo"):
        if not shutil.which(t):
            skip(f"{t} not installed (apt-get install {t})")


class Registry:
    def __init__(self, work, name, htpasswd=None, remote=None, tls=None,
                 storage=None):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.dir = os.path.join(work, name)
        os.makedirs(os.path.join(self.dir, "storage"))
        conf = self.conf = os.path.join(self.dir, "config.yml")
        # our own config: Debian's default enables htpasswd on :5000
        lines = ["version: 0.1",
                 "log:", "  level: warn",
                 "storage:",
                 "  filesystem: {rootdirectory: "
                 f"{storage or self.dir + '/storage'}}}",
                 "  delete: {enabled: true}",
                 "http:", f"  addr: {self.addr}"]
        if tls:
            # HTTP/2 is on by default with TLS
            lines += ["  tls:", f"    certificate: {tls[0]}",
                      f"    key: {tls[1]}"]
        self.scheme = "https" if tls else "http"
        if htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: test-realm",
                      f"    path: {htpasswd}"]
        if remote:
            # a pull-through cache of another registry
            lines += ["proxy:", f"  remoteurl: {remote}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.start()

    def start(self):
        """(Re)starts the registry on its port with its storage."""
        self.log = open(os.path.join(self.dir, "registry.log"), "a")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.conf],
                                     stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        if not wait_http(f"{self.scheme}://{self.addr}/v2/"):
            self.stop()
            raise RuntimeError(f"registry on {self.addr} did not start; "
                               f"see {self.dir}/registry.log")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def skopeo_push(work, layout, tag, dest, creds=None, all_=False):
    policy = os.path.join(work, "policy.json")
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    cmd = ["skopeo", "--policy", policy, "copy", "--quiet",
           "--dest-tls-verify=false"]
    if all_:
        cmd.append("--all")
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += [f"oci:{layout.root}:{tag}", f"docker://{dest}"]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, HOME=work))
    if r.returncode:
        raise RuntimeError(f"skopeo: {r.stderr.strip()}")


# ---- the fault-injecting proxy, token server and redirect target ----------------

def range_spans(header, size):
    """[start, end) of each range a Range header asks for (several for a
    multi-range request; a suffix is the last N of size bytes); no header:
    the whole blob."""
    if not header:
        return [(0, size)]
    out = []
    for rg in header[len("bytes="):].split(","):
        a, b = rg.strip().split("-")
        if not a:
            out.append((max(0, size - int(b)), size))
        else:
            out.append((int(a), int(b) + 1 if b else size))
    return out


class Rule:
    def __init__(self, kind, match="/blobs/", method=None, count=1, **kw):
        self.kind, self.match, self.method, self.count = \
            kind, match, method, count
        self.kw = kw


class ProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up on purpose (timeouts, resets)


class Proxy:
    """Forwards to upstream; see Handler for the faults."""

    def __init__(self, upstream, prefix="", port=0):
        self.upstream = upstream
        self.prefix = prefix
        self.rules = []
        self.log = []
        self.lock = threading.Lock()
        self.auth_mode = False
        self.users = {}
        self.tokens = set()
        self.token_ttl = 300
        self.token_requests = 0
        self.redirect_to = None
        self.conns = set()
        self.server = ProxyServer(("127.0.0.1", port), Handler)
        self.server.ctx = self
        self.port = self.server.server_address[1]
        self.addr = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        """Stops listening and hangs up kept-alive connections too."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def add(self, rule):
        with self.lock:
            self.rules.append(rule)

    def reset(self):
        with self.lock:
            self.rules = []
            self.log = []

    def take(self, method, path, rng):
        """The first rule left for this request; rng is its Range header.
        A rule with ranged=True takes range requests only, multi=True
        requests for several ranges only."""
        with self.lock:
            for r in self.rules:
                if r.count and r.match in path and \
                        (not r.method or r.method == method) and \
                        (not r.kw.get("ranged") or rng) and \
                        (not r.kw.get("multi") or (rng and "," in rng)):
                    r.count -= 1
                    return r
        return None

    def tries(self, since=0, status=503):
        """How many times each Range was answered with status, counting
        the log from entry since on."""
        out = {}
        with self.lock:
            for e in self.log[since:]:
                if e["status"] == status:
                    out[e["range"]] = out.get(e["range"], 0) + 1
        return out

    def blob_gets(self):
        with self.lock:
            return [e for e in self.log
                    if e["method"] == "GET" and "/blobs/" in e["path"]]

    def entries(self, part):
        with self.lock:
            return [e for e in self.log if part in e["path"]]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with self.server.ctx.lock:
            self.server.ctx.conns.add(self.connection)

    def finish(self):
        with self.server.ctx.lock:
            self.server.ctx.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self.serve("GET")

    def do_HEAD(self):
        self.serve("HEAD")

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve(self, method):
        p = self.server.ctx
        path = self.path
        auth = self.headers.get("Authorization")
        entry = {"method": method, "path": path,
                 "range": self.headers.get("Range"), "auth": auth,
                 "status": None, "port": self.client_address[1],
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "t": time.time()}
        with p.lock:
            p.log.append(entry)
        if path.startswith("/token"):
            return self.token(p, entry)
        if p.prefix and path.startswith(p.prefix):
            path = path[len(p.prefix):].split("?")[0]
        if p.auth_mode and path.startswith("/v2/"):
            ok = auth and auth.startswith("Bearer ") and \
                auth[7:] in p.tokens
            if not ok:
                repo = path[4:].split("/blobs/")[0].split("/manifests/")[0]
                chal = (f'Bearer realm="http://{p.addr}/token",'
                        f'service="test-registry",'
                        f'scope="repository:{repo}:pull"')
                entry["status"] = 401
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"'
                                  b',"message":"authentication required"}]}',
                                  [("WWW-Authenticate", chal),
                                   ("Content-Type", "application/json")])
        rule = p.take(method, path, self.headers.get("Range"))
        kind = rule.kind if rule else None
        if kind == "revoke":
            with p.lock:
                p.tokens.clear()
        if kind == "status":
            hdrs = [("Content-Type", "application/json")]
            if "retry_after" in rule.kw:
                hdrs.append(("Retry-After", str(rule.kw["retry_after"])))
            entry["status"] = rule.kw["code"]
            return self.reply(rule.kw["code"],
                              b'{"errors":[{"code":"UNAVAILABLE",'
                              b'"message":"injected"}]}', hdrs)
        if kind == "reset":
            entry["status"] = "reset"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if kind == "delay":
            time.sleep(rule.kw.get("seconds", 0.5))
        if kind == "redirect" and method == "GET":
            entry["status"] = 307
            loc = (f"http://{p.redirect_to}/storage{path}"
                   f"?X-Amz-Signature=topsecret")
            return self.reply(307, b"", [("Location", loc)])

        hdrs = {}
        if self.headers.get("Accept"):
            hdrs["Accept"] = self.headers["Accept"]
        if self.headers.get("Range") and kind not in ("ignore_range",
                                                      "ignore_multi"):
            hdrs["Range"] = self.headers["Range"]
        if kind == "first_range":
            hdrs["Range"] = hdrs["Range"].split(",")[0]
        c = http.client.HTTPConnection(p.upstream, timeout=30)
        c.request(method, path, headers=hdrs)
        r = c.getresponse()
        body = r.read()
        c.close()
        out = [(k, v) for k, v in r.getheaders()
               if k.lower() not in ("content-length", "connection",
                                    "transfer-encoding", "date")]
        entry["status"] = r.status
        length = int(r.getheader("Content-Length", len(body)))
        if method == "HEAD" or r.status >= 300:
            self.send_response(r.status)
            for k, v in out:
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
            return
        if kind == "flip" and body:
            b = bytearray(body)
            b[len(b) // 2] ^= 0xFF
            body = bytes(b)
        if kind == "gzip_mtime" and body[:2] == b"\x1f\x8b" and \
                len(body) > 8:
            # a lie gzip cannot see: the header's mtime (no CRC covers it)
            b = bytearray(body)
            b[4] ^= 0xFF
            body = bytes(b)
        ctype = r.getheader("Content-Type", "")
        if kind == "mangle_multipart" and "boundary=" in ctype:
            # the second delimiter loses its last byte
            bd = b"--" + ctype.split("boundary=")[1].encode()
            i = body.find(bd, body.find(bd) + 1)
            if i > 0:
                body = body[:i + len(bd) - 1] + b"#" + body[i + len(bd):]
        if kind == "shift_parts":
            # every part claims to start a byte later than it does
            body = re.sub(rb"Content-Range: bytes (\d+)-(\d+)/",
                          lambda m: b"Content-Range: bytes %d-%d/" % (
                              int(m[1]) + 1, int(m[2]) + 1), body)
        if kind == "long":
            body += b"EXTRABYTES"
        if kind == "bad_range":
            out = [(k, v) for k, v in out if k.lower() != "content-range"]
            cr = r.getheader("Content-Range", "bytes 0-0/0")
            a, rest = cr[6:].split("-", 1)
            out.append(("Content-Range", f"bytes {int(a) + 1}-{rest}"))
        send_len = len(body)
        if kind == "short_cl":
            body = body[: len(body) // 2]
            send_len = len(body)
        self.send_response(r.status)
        for k, v in out:
            self.send_header(k, v)
        self.send_header("Content-Length", str(send_len))
        self.end_headers()
        if kind == "stall":
            self.wfile.write(body[:10])
            self.wfile.flush()
            time.sleep(rule.kw.get("seconds", 5))
            self.close_connection = True
            return
        if kind == "short":
            # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def token(self, p, entry):
        with p.lock:
            p.token_requests += 1
        auth = self.headers.get("Authorization", "")
        ok = False
        if auth.startswith("Basic "):
            try:
                u, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                ok = p.users.get(u) == pw
            except Exception:
                ok = False
        if not ok:
            entry["status"] = 401
            return self.reply(401, b'{"details":"bad credentials"}',
                              [("WWW-Authenticate",
                                'Basic realm="token"')])
        tok = secrets.token_hex(16)
        with p.lock:
            p.tokens.add(tok)
        entry["status"] = 200
        body = json.dumps({"token": tok, "expires_in": p.token_ttl,
                           "issued_at": "2026-01-01T00:00:00Z"}).encode()
        self.reply(200, body, [("Content-Type", "application/json")])


# ---- running the tool ------------------------------------------------------------

class Result:
    def __init__(self, proc, secs):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr.decode(errors="replace")
        self.secs = secs
        self.stats = {}
        for line in self.err.splitlines():
            if line.startswith("stats: "):
                for kv in line[7:].split():
                    k, v = kv.split("=")
                    self.stats[k] = int(v)

    def __repr__(self):
        return f"rc={self.rc} {self.err.strip()[-300:]}"


TOOL = None
ENV = None


def tool(*args, env=None, timeout=120):
    e = dict(ENV)
    if env:
        e.update(env)
    t0 = time.time()
    p = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True,
                       env=e, timeout=timeout)
    return Result(p, time.time() - t0)


FAST = ["--plain-http", "--retry-base-ms", "50", "--retry-max-ms", "2000",
        "--timeout-ms", "10000"]


# ---- suites --------------------------------------------------------------------

def suite_registry(work, layout, reg):
    proxy = Proxy(reg.addr)
    ref = f"{proxy.addr}/test/img:v1"
    l1 = layout.layer1

    r = tool(*FAST, "manifest", ref)
    check(r.rc == 0, f"manifest by tag {r}")
    out = r.out.decode()
    check(f"digest {layout.manifest_v1['digest']}" in out,
          "manifest digest is the pushed one")
    check(f"layer {l1['digest']} {l1['size']} "
          "application/vnd.oci.image.layer.v1.tar+gzip" in out,
          "first layer descriptor")
    check(out.count("\nlayer ") == 2, "two layers")

    r = tool(*FAST, "manifest",
             f"{proxy.addr}/test/img@{layout.manifest_v1['digest']}")
    check(r.rc == 0 and layout.manifest_v1["digest"] in r.out.decode(),
          f"manifest by digest {r}")

    r = tool(*FAST, "manifest", f"{proxy.addr}/test/img:multi")
    check(r.rc == 0 and "kind index" in r.out.decode() and
          "linux/arm64/v8" in r.out.decode(), f"index by tag {r}")
    r = tool(*FAST, "image", f"{proxy.addr}/test/img:multi")
    check(r.rc == 0 and f"digest {layout.manifest_v1['digest']}"
          in r.out.decode(), f"index -> host platform (amd64) {r}")
    r = tool(*FAST, "--platform", "linux/arm64", "image",
             f"{proxy.addr}/test/img:multi")
    check(r.rc == 0 and f"digest {layout.manifest_arm['digest']}"
          in r.out.decode(), f"index -> linux/arm64 {r}")
    r = tool(*FAST, "--platform", "linux/s390x", "image",
             f"{proxy.addr}/test/img:multi")
    check(r.rc == 1 and "no manifest for platform linux/s390x" in r.err and
          "linux/arm64/v8" in r.err, f"missing platform is a clear error {r}")
    # manifests kept in the cache: no request when warm
    mc = os.path.join(work, "cache-manifests")
    multi = f"{proxy.addr}/test/img:multi"
    r1 = tool(*FAST, "--cache", mc, "--tag-ttl", 60, "image", multi)
    r2 = tool(*FAST, "--cache", mc, "--tag-ttl", 60, "image", multi)
    r3 = tool(*FAST, "--cache", mc, "--tag-ttl", 0, "image", multi)
    r4 = tool(*FAST, "--cache", mc, "--platform", "linux/arm64", "image",
              f"{proxy.addr}/test/img@{layout.index['digest']}")
    check(r1.rc == 0 and r1.stats.get("requests") == 2 and
          r2.rc == 0 and r2.out == r1.out and r2.stats.get("requests") == 0,
          f"cached image resolution: 2 requests, then none {r1} {r2}")
    check(r3.rc == 0 and r3.out == r1.out and r3.stats.get("requests") == 1,
          f"tag TTL 0: the tag is resolved again, children cached {r3}")
    check(r4.rc == 0 and layout.manifest_arm["digest"] in r4.out.decode()
          and r4.stats.get("requests") == 1,
          f"by digest: index cached, arm64 manifest fetched {r4}")

    r = tool(*FAST, "manifest", f"{proxy.addr}/test/img:nope")
    check(r.rc == 1 and "errno 2)" in r.err and "MANIFEST_UNKNOWN" in r.err,
          f"unknown tag is ENOENT {r}")

    r = tool(*FAST, "head", ref, l1["digest"])
    check(r.rc == 0 and r.out.decode().strip() == str(l1["size"]),
          f"blob HEAD size {r}")

    # the size and the last bytes in one request: a suffix range
    proxy.reset()
    r = tool(*FAST, "tail", ref, l1["digest"], 65536)
    gets = proxy.blob_gets()
    check(r.rc == 0 and r.out == l1["data"][-65536:] and
          f"size={l1['size']} got=65536" in r.err and
          len(gets) == 1 and gets[0]["range"] == "bytes=-65536",
          f"blob tail: size and last bytes in one GET {r} {gets}")
    r = tool(*FAST, "tail", ref, l1["digest"], l1["size"] + 100)
    check(r.rc == 0 and r.out == l1["data"] and
          f"size={l1['size']} got={l1['size']}" in r.err,
          f"blob tail longer than the blob: the whole blob {r}")
    tcache = os.path.join(work, "cache-tail")
    proxy.reset()
    r = tool(*FAST, "--cache", tcache, "--tail", 65536, "cat", ref,
             l1["digest"], f"{l1['size'] - 51}:51", f"{l1['size'] - 30000}:10")
    # (the whole granules of the tail are kept: 16 KiB ones here)
    check(r.rc == 0 and r.out == l1["data"][-51:] +
          l1["data"][l1["size"] - 30000:l1["size"] - 29990] and
          r.stats.get("requests") == 1 and
          not any(e["method"] == "HEAD" for e in proxy.log),
          f"a source opened with --tail: no HEAD, its reads of the last "
          f"bytes come from the cache {r}")

    ranges = [(0, 100), (12345, 4096), (l1["size"] - 51, 51),
              (700000, 300000)]
    proxy.reset()
    r = tool(*FAST, "read", ref, l1["digest"],
             *[f"{a}:{b}" for a, b in ranges])
    ports = {e["port"] for e in proxy.blob_gets()}
    check(len(proxy.blob_gets()) == 4 and len(ports) == 1,
          f"four range reads over one kept-alive connection {ports}")
    want = b"".join(l1["data"][a:a + b] for a, b in ranges)
    check(r.rc == 0 and r.out == want, f"direct range reads {r}")
    check(r.stats.get("requests") == len(ranges),
          "one request per range read")
    r = tool(*FAST, "read", ref, l1["digest"], f"{l1['size'] - 10}:20")
    check(r.rc == 1 and "errno 34)" in r.err,
          f"range past the end is ERANGE (HTTP 416) {r}")

    # short ranges near each other go in one request (a multipart answer)
    mr = [(0, 100), (5000, 4096), (300000, 1000), (600000, 70000),
          (900000, 51)]
    mwant = b"".join(l1["data"][a:a + n] for a, n in mr)
    margs = [f"{a}:{n}" for a, n in mr]
    proxy.reset()
    r = tool(*FAST, "-v", "many", ref, l1["digest"], *margs)
    gets = proxy.blob_gets()
    check(r.rc == 0 and r.out == mwant and len(gets) == 1 and
          gets[0]["range"].count(",") == 4 and " ranges=5 " in r.err,
          f"five short ranges in one request {r} {gets}")
    proxy.reset()
    r = tool(*FAST, "--max-ranges", 1, "many", ref, l1["digest"], *margs)
    gets = proxy.blob_gets()
    check(r.rc == 0 and r.out == mwant and len(gets) == 5 and
          not any("," in g["range"] for g in gets),
          f"--max-ranges 1: a request per range {r} {gets}")
    proxy.reset()
    big = [(0, 100), (1000, 300000), (400000, 100)]
    r = tool(*FAST, "many", ref, l1["digest"], *[f"{a}:{n}" for a, n in big])
    gets = sorted(g["range"] for g in proxy.blob_gets())
    check(r.rc == 0 and r.out == b"".join(l1["data"][a:a + n]
                                          for a, n in big) and
          gets == ["bytes=0-99,400000-400099", "bytes=1000-300999"],
          f"a long read goes in a request of its own {r} {gets}")
    # a registry that answers several ranges any other way: what its
    # answer put in the right place is kept, the rest is asked for range
    # by range, and so is everything after (one client, --repeat 2)
    for kind in ("ignore_multi", "first_range", "mangle_multipart",
                 "shift_parts"):
        proxy.reset()
        proxy.add(Rule(kind, multi=True))
        r = tool(*FAST, "-v", "--repeat", 2, "many", ref, l1["digest"],
                 *margs)
        gets = proxy.blob_gets()
        multi = [g for g in gets if "," in g["range"]]
        alone = len(gets) - len(multi)
        # the first range came whole before the first part or the
        # broken delimiter
        kept = 1 if kind in ("first_range", "mangle_multipart") else 0
        check(r.rc == 0 and r.out == mwant and len(multi) == 1 and
              alone == 10 - kept and
              "does not answer a request for several ranges" in r.err,
              f"{kind}: right bytes, then a range per request "
              f"({len(multi)} multi, {alone} single) {r}")

    r = tool(*FAST, "stream", ref, l1["digest"])
    check(r.rc == 0 and r.out == l1["data"], f"whole-blob stream {r}")

    # through the cache: only range requests, then hits after a restart
    cache = os.path.join(work, "cache")
    proxy.reset()
    cat_ranges = [(0, 10), (5000, 10), (1000000, 200), (l1["size"] - 51, 51)]
    args = [*FAST, "--cache", cache, "cat", ref, l1["digest"],
            *[f"{a}:{b}" for a, b in cat_ranges]]
    want = b"".join(l1["data"][a:a + b] for a, b in cat_ranges)
    r = tool(*args)
    check(r.rc == 0 and r.out == want, f"cat through the cache {r}")
    gets = proxy.blob_gets()
    check(gets and all(g["range"] for g in gets),
          "every blob GET is a range request")
    fetched = r.stats.get("bytes", 0)
    check(0 < fetched < l1["size"] // 2,
          f"fetched {fetched} of {l1['size']} bytes, not the whole blob")
    proxy.reset()
    r = tool(*args)
    check(r.rc == 0 and r.out == want, "second cat: same bytes")
    check(not proxy.blob_gets(),
          f"second cat (new process): no blob request {proxy.blob_gets()}")
    # the size too comes from the cache's map: no request at all
    check(r.stats.get("requests") == 0 and not proxy.log,
          f"second cat: no request, not even a HEAD {r} {proxy.log}")

    proxy.reset()
    r = tool(*FAST, "--cache", cache, "fill", ref, l1["digest"],
             f"0:{l1['size']}")
    check(r.rc == 0 and r.out.endswith(l1["data"]) and
          f"cached {l1['size']} of {l1['size']}".encode() in r.out,
          f"fill: whole blob cached and verified {r}")
    r = tool(*FAST, "--cache", cache, "cat", ref, l1["digest"],
             f"0:{l1['size']}")
    check(r.rc == 0 and r.out == l1["data"] and
          r.stats.get("requests") == 0, f"after fill: all from the cache, "
          f"the size too {r}")

    # many threads, one client and one cache; some reads fail and retry
    proxy.reset()
    proxy.add(Rule("status", code=503, count=5, ranged=True))
    proxy.add(Rule("reset", count=3, ranged=True))
    r = tool(*FAST, "--cache", os.path.join(work, "cache-stress"), "stress",
             ref, l1["digest"], 8, 40)
    check(r.rc == 0 and b"stress ok" in r.out,
          f"8 threads x 40 random reads, cached and direct {r.out} {r}")

    # redirect to another host drops Authorization and keeps the range
    store = Proxy(reg.addr, prefix="/storage")
    proxy.redirect_to = store.addr
    proxy.add(Rule("redirect", count=100))
    r = tool(*FAST, "--token", "registry-token-xyz", "read", ref,
             l1["digest"], "4096:1000")
    check(r.rc == 0 and r.out == l1["data"][4096:5096],
          f"redirected range read {r}")
    sl = [e for e in store.log if "/blobs/" in e["path"]]
    check(sl and sl[0]["range"] == "bytes=4096-5095",
          "the storage host got the range")
    check(sl and not sl[0]["auth"],
          "the storage host got no Authorization header")
    check("topsecret" not in r.err, "signed query string not shown")
    store.stop()
    proxy.stop()

    # HTTP/2 where offered: the same storage behind a TLS registry;
    # concurrent ranges become streams of one connection
    if not shutil.which("openssl"):
        print("skip HTTP/2: no openssl")
        return
    cert, key = (os.path.join(work, n) for n in ("tls.crt", "tls.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    treg = Registry(work, "registry-tls", tls=(cert, key),
                    storage=os.path.join(reg.dir, "storage"))
    try:
        tref = f"{treg.addr}/test/img:v1"
        far = [(0, 1000), (300000, 1000), (600000, 1000), (900000, 1000),
               (1200000, 1000)]
        r = tool("-v", "--insecure", "--max-ranges", 1, "many", tref,
                 l1["digest"],
                 *[f"{a}:{n}" for a, n in far])
        check(r.rc == 0 and r.out == b"".join(l1["data"][a:a + n]
                                              for a, n in far),
              f"ranges over https {r}")
        tr = [ln for ln in r.err.splitlines()
              if ln.startswith("trace: GET") and "/blobs/" in ln]
        check(len(tr) == 5 and all(" http=20 " in ln for ln in tr),
              f"the registry offered HTTP/2 and it was used {tr}")
        conns = sum(int(ln.split(" conns=")[1].split()[0]) for ln in tr)
        check(conns == 1, f"five concurrent ranges, one connection "
                          f"({conns})")
        r = tool("-v", "--insecure", "many", tref, l1["digest"],
                 *[f"{a}:{n}" for a, n in far])
        check(r.rc == 0 and r.out == b"".join(l1["data"][a:a + n]
                                              for a, n in far) and
              r.err.count("trace: GET") == 1 and " ranges=5 " in r.err and
              " http=20 " in r.err,
              f"five ranges in one HTTP/2 request {r}")
        r = tool("manifest", tref)
        check(r.rc == 1 and "errno 71)" in r.err,
              f"a self-signed certificate is refused without "
              f"--insecure {r}")
    finally:
        treg.stop()


def suite_faults(work, layout, reg):
    proxy = Proxy(reg.addr)
    ref = f"{proxy.addr}/test/img:v1"
    l1 = layout.layer1
    want = l1["data"][2000:6000]

    def read(*extra, rng="2000:4000"):
        return tool(*FAST, *extra, "read", ref, l1["digest"], rng)

    proxy.reset()
    proxy.add(Rule("status", code=503, count=2))
    r = read()
    check(r.rc == 0 and r.out == want and r.stats.get("retries") == 2,
          f"503 twice, then success: retried {r}")

    proxy.reset()
    proxy.add(Rule("status", code=429, retry_after=1))
    r = read()
    check(r.rc == 0 and r.out == want and r.secs >= 1.0,
          f"429 with Retry-After: 1 honoured ({r.secs:.2f}s) {r}")

    proxy.reset()
    proxy.add(Rule("status", code=503, count=100))
    r = read("--retries", "2")
    check(r.rc == 1 and "HTTP 503" in r.err and "after 2 retries" in r.err
          and r.stats.get("requests") == 3, f"retry limit {r}")

    proxy.reset()
    proxy.add(Rule("status", code=500, match="/manifests/", count=100))
    r = tool(*FAST, "--retries", "1", "manifest", ref)
    check(r.rc == 1 and "HTTP 500" in r.err, f"manifest 500 -> error {r}")

    proxy.reset()
    proxy.add(Rule("reset", count=1))
    r = read()
    check(r.rc == 0 and r.out == want and r.stats.get("retries") == 1,
          f"connection reset, then success {r}")

    for kind in ("short", "short_cl", "long", "bad_range"):
        proxy.reset()
        proxy.add(Rule(kind, count=100))
        r = read("--retries", "1")
        check(r.rc == 1 and r.out == b"" and "errno 5)" in r.err,
              f"{kind} body -> EIO, never data {r}")
        proxy.reset()
        proxy.add(Rule(kind, count=1))
        r = read()
        check(r.rc == 0 and r.out == want, f"{kind} once, then success")

    proxy.reset()
    proxy.add(Rule("ignore_range", count=100))
    r = read(rng="1000000:5000")
    check(r.rc == 0 and r.out == l1["data"][1000000:1005000],
          f"200 for a range request: the asked bytes are cut out {r}")
    # a suffix range ignored: the size alone from a blob larger than the
    # tail, the whole blob from a smaller one
    r = tool(*FAST, "tail", ref, l1["digest"], 4096)
    check(r.rc == 0 and r.out == b"" and
          f"size={l1['size']} got=0" in r.err and r.secs < 5,
          f"200 for a suffix range: only the size, the body cut {r}")
    r = tool(*FAST, "tail", ref, l1["digest"], l1["size"])
    check(r.rc == 0 and r.out == l1["data"],
          f"200 for a suffix range as long as the blob: all of it {r}")
    r = tool(*FAST, "--cache", os.path.join(work, "cache-tail-200"),
             "--tail", 4096, "cat", ref, l1["digest"],
             f"{l1['size'] - 51}:51")
    check(r.rc == 0 and r.out == l1["data"][-51:],
          f"a source with --tail on a registry ignoring ranges {r}")
    # a lying or broken answer to the suffix range: never data, and a
    # source asks with a HEAD instead
    for kind in ("bad_range", "long", "short_cl"):
        proxy.reset()
        proxy.add(Rule(kind, method="GET", count=1))
        r = tool(*FAST, "--retries", 0, "tail", ref, l1["digest"], 65536)
        check(r.rc == 1 and r.out == b"" and "errno 5)" in r.err,
              f"{kind} answer to a suffix range -> EIO {r}")
        proxy.reset()
        proxy.add(Rule(kind, method="GET", count=1))
        r = tool(*FAST, "--retries", 0, "--cache",
                 os.path.join(work, "cache-tail-" + kind), "--tail", 65536,
                 "cat", ref, l1["digest"], f"{l1['size'] - 51}:51")
        check(r.rc == 0 and r.out == l1["data"][-51:] and
              [e["method"] for e in proxy.log][:3] == ["GET", "HEAD", "GET"],
              f"{kind} answer to a suffix range: the source asks with a "
              f"HEAD, reads right {r} {[e['method'] for e in proxy.log]}")

    proxy.reset()
    proxy.add(Rule("stall", seconds=6, count=100))
    r = read("--timeout-ms", "1000", "--retries", "1")
    check(r.rc == 1 and "errno 110)" in r.err and r.secs < 5,
          f"stall -> ETIMEDOUT within the timeouts ({r.secs:.2f}s) {r}")
    # a stall ends --stall-s after the last byte: curl's own low-speed
    # limit, an average, took 8 s a try for 2 s after 10 bytes
    proxy.reset()
    proxy.add(Rule("stall", seconds=12, count=100, ranged=True))
    r = read("--stall-s", "2", "--timeout-ms", "30000", "--retries", "1")
    check(r.rc == 1 and "errno 110)" in r.err and
          "no data for 2 s" in r.err and 3.8 < r.secs < 6.5,
          f"stall: two tries of 2 s after the last byte ({r.secs:.2f}s) "
          f"{r}")

    proxy.reset()
    proxy.add(Rule("flip", count=100))
    r = tool(*FAST, "stream", ref, l1["digest"])
    check(r.rc == 1 and "errno 74)" in r.err,
          f"flipped byte in a whole-blob stream -> EBADMSG {r}")
    # a fill shows what arrived every MiB, before the digest is known: a
    # bad digest at the end drops all of it, and reads fetch again
    fcache = os.path.join(work, "cache-fill-flip")
    proxy.reset()
    proxy.add(Rule("flip", method="GET", count=1))
    r = tool(*FAST, "--cache", fcache, "fill", ref, l1["digest"])
    check(r.rc == 1 and "errno 74)" in r.err and
          f"cached 0 of {l1['size']}".encode() in r.out,
          f"fill of a flipped blob -> EBADMSG, nothing kept {r}")
    proxy.reset()
    mid = l1["size"] // 2
    r = tool(*FAST, "--cache", fcache, "cat", ref, l1["digest"],
             f"{mid - 8}:16")
    check(r.rc == 0 and r.out == l1["data"][mid - 8:mid + 8] and
          proxy.blob_gets(), f"after the flipped fill: fetched again {r}")

    # the cache never keeps a failed range
    cache = os.path.join(work, "cache-faults")
    proxy.reset()
    proxy.add(Rule("short", count=100))
    r = tool(*FAST, "--retries", "1", "--cache", cache, "cat", ref,
             l1["digest"], "3000:10")
    check(r.rc == 1 and r.out == b"", f"cat with short bodies fails {r}")
    proxy.reset()
    r = tool(*FAST, "--cache", cache, "cat", ref, l1["digest"], "3000:10")
    check(r.rc == 0 and r.out == l1["data"][3000:3010] and
          len(proxy.blob_gets()) == 1, "the failed range was not cached")

    # a long range is committed as it arrives: what came before a failure
    # stays in the cache (and other processes see it during the transfer)
    cache = os.path.join(work, "cache-progress")
    size = len(l1["data"])
    proxy.reset()
    proxy.add(Rule("short", count=100))
    r = tool(*FAST, "--retries", "0", "--cache", cache, "prefetch", ref,
             l1["digest"], f"0:{size}")
    check(r.rc == 1 and size >= 5 << 19,
          f"prefetch of {size} bytes, cut half-way, fails {r}")
    proxy.reset()
    r = tool(*FAST, "--cache", cache, "cat", ref, l1["digest"], "0:1048576")
    check(r.rc == 0 and r.out == l1["data"][:1 << 20] and
          len(proxy.blob_gets()) == 0,
          f"the first MiB of a range cut half-way was kept: {r}, "
          f"{len(proxy.blob_gets())} blob GETs")
    r = tool(*FAST, "--cache", cache, "cat", ref, l1["digest"],
             f"{size - 10}:10")
    check(r.rc == 0 and r.out == l1["data"][-10:] and
          len(proxy.blob_gets()) == 1,
          f"its end was not: fetched again {r}")

    # connection refused: a clear error, bounded time
    dead = f"127.0.0.1:{free_port()}"
    r = tool(*FAST, "--retries", "2", "manifest", f"{dead}/x:y")
    check(r.rc == 1 and "errno 111)" in r.err and r.secs < 10,
          f"connection refused -> ECONNREFUSED {r}")
    proxy.stop()


def suite_auth(work, layout, reg):
    proxy = Proxy(reg.addr)
    proxy.auth_mode = True
    proxy.users = {"alice": "s3cr3t-pw"}
    ref = f"{proxy.addr}/test/img:v1"
    l1 = layout.layer1
    secret_bits = ["s3cr3t-pw", base64.b64encode(b"alice:s3cr3t-pw").decode()]

    def leaks(r):
        text = r.err + r.out.decode(errors="replace")
        return [s for s in secret_bits + list(proxy.tokens) if s in text]

    r = tool(*FAST, "-v", "--no-env-auth", "--docker-config", "",
             "manifest", ref)
    check(r.rc == 1 and "errno 13)" in r.err,
          f"bearer: no credentials -> EACCES {r}")

    proxy.token_requests = 0
    r = tool(*FAST, "-v", "--user", "alice:s3cr3t-pw", "read", ref,
             l1["digest"], "0:100", "100000:100", "200000:100")
    check(r.rc == 0 and r.out == l1["data"][0:100] +
          l1["data"][100000:100100] + l1["data"][200000:200100],
          f"bearer with user:pass {r}")
    check(proxy.token_requests == 1,
          f"token fetched once and cached ({proxy.token_requests})")
    check(not leaks(r), f"no credential or token in the output {leaks(r)}")

    r = tool(*FAST, "--user", "alice:wrong", "manifest", ref)
    check(r.rc == 1 and "errno 13)" in r.err and "wrong" not in r.err,
          f"wrong password -> EACCES, not echoed {r}")

    b64 = base64.b64encode(b"alice:s3cr3t-pw").decode()
    r = tool(*FAST, "--docker-config", "", "manifest", ref,
             env={"IMAGE_PULL_AUTH": b64})
    check(r.rc == 0, f"IMAGE_PULL_AUTH {r}")
    r = tool(*FAST, "--no-env-auth", "--docker-config", "", "--auth", b64,
             "manifest", ref)
    check(r.rc == 0, f"nydusd-style auth (base64) {r}")

    dc = os.path.join(work, "dockercfg")
    os.makedirs(dc, exist_ok=True)
    with open(os.path.join(dc, "config.json"), "w") as f:
        json.dump({"auths": {f"http://{proxy.addr}": {"auth": b64}}}, f)
    r = tool(*FAST, "--no-env-auth", "manifest", ref,
             env={"DOCKER_CONFIG": dc})
    check(r.rc == 0, f"credentials from $DOCKER_CONFIG/config.json {r}")
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, ".docker"), exist_ok=True)
    shutil.copy(os.path.join(dc, "config.json"),
                os.path.join(home, ".docker", "config.json"))
    r = tool(*FAST, "--no-env-auth", "manifest", ref,
             env={"HOME": home, "DOCKER_CONFIG": ""})
    check(r.rc == 0, f"credentials from $HOME/.docker/config.json {r}")

    # tokens revoked mid-run: the 401 refreshes the token once
    proxy.token_requests = 0
    proxy.add(Rule("revoke", count=1))
    r = tool(*FAST, "--user", "alice:s3cr3t-pw", "read", ref, l1["digest"],
             "0:10", "10:10")
    check(r.rc == 0 and r.out == l1["data"][:20] and
          proxy.token_requests == 2,
          f"revoked token refreshed on 401 ({proxy.token_requests}) {r}")

    # expiring tokens are refreshed before use
    proxy.token_ttl = 1
    proxy.token_requests = 0
    r = tool(*FAST, "--user", "alice:s3cr3t-pw", "--pause-ms", "1100",
             "read", ref, l1["digest"], "0:10", "10:10", "20:10")
    check(r.rc == 0 and r.out == l1["data"][:30] and
          proxy.token_requests >= 3,
          f"short-lived tokens refreshed ({proxy.token_requests}) {r}")
    proxy.token_ttl = 300
    proxy.stop()

    # basic auth against a real registry with htpasswd
    if not shutil.which("htpasswd"):
        print("skip basic auth: no htpasswd (apache2-utils)")
        return
    hp = os.path.join(work, "htpasswd")
    subprocess.run(["htpasswd", "-Bbc", hp, "bob", "b0b-pw"], check=True,
                   capture_output=True)
    breg = Registry(work, "registry-basic", htpasswd=hp)
    try:
        skopeo_push(work, layout, "v1", f"{breg.addr}/test/img:v1",
                    creds="bob:b0b-pw")
        bref = f"{breg.addr}/test/img:v1"
        r = tool(*FAST, "--no-env-auth", "--docker-config", "",
                 "manifest", bref)
        check(r.rc == 1 and "errno 13)" in r.err,
              f"htpasswd registry without credentials -> EACCES {r}")
        r = tool(*FAST, "-v", "--user", "bob:b0b-pw", "read", bref,
                 l1["digest"], "0:100")
        check(r.rc == 0 and r.out == l1["data"][:100],
              f"htpasswd registry with basic auth {r}")
        check("b0b-pw" not in r.err and
              base64.b64encode(b"bob:b0b-pw").decode() not in r.err,
              "basic credentials not in the output")
        r = tool(*FAST, "--user", "bob:nope", "manifest", bref)
        check(r.rc == 1 and "errno 13)" in r.err,
              f"htpasswd wrong password -> EACCES {r}")
    finally:
        breg.stop()


class Session:
    """fetch-tool session: one client, commands on stdin."""

    def __init__(self, work, *args):
        self.errf = open(os.path.join(work, "session.err"), "a")
        self.p = subprocess.Popen([TOOL] + [str(a) for a in args],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=self.errf, env=ENV, text=True)

    def cmd(self, line):
        """Returns (ok, value, requests)."""
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        words = out.split()
        req = -1
        if words and words[-1].startswith("requests="):
            req = int(words[-1][9:])
        ok = bool(words) and words[0] == "ok"
        return ok, (words[1] if ok and len(words) > 2 else out), req

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()
        self.errf.close()
        check(self.p.returncode == 0,
              f"session exited cleanly ({self.p.returncode})")


def hosts_toml(root, registry, text):
    d = os.path.join(root, registry)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write(text)
    return root


def suite_mirrors(work, layout, reg):
    l1 = layout.layer1
    data = l1["data"]
    origin = Proxy(reg.addr)   # what reaches the origin registry
    mreg = Registry(work, "mirror", remote=f"http://{reg.addr}")
    mirror = Proxy(mreg.addr)  # what the mirror is asked
    ref = f"{origin.addr}/test/img:v1"
    dg = l1["digest"]

    def reset():
        origin.reset()
        mirror.reset()

    def sha(*ranges):
        return hashlib.sha256(b"".join(data[a:a + n]
                                       for a, n in ranges)).hexdigest()

    hd = hosts_toml(os.path.join(work, "certs.d"), origin.addr,
                    f'server = "http://{origin.addr}"\n\n'
                    f'[host."http://{mirror.addr}"]\n'
                    f'  capabilities = ["pull", "resolve"]\n')
    M = [*FAST, "--hosts-dir", hd]

    # reads go to the mirror (a pull-through cache of the origin)
    reset()
    r = tool(*M, "image", ref)
    check(r.rc == 0 and f"digest {layout.manifest_v1['digest']}"
          in r.out.decode(), f"image resolved through the mirror {r}")
    check(mirror.entries("/manifests/v1") and
          not origin.entries("/manifests/"),
          "the tag was resolved by the mirror, not the origin")
    check(all(f"ns={origin.addr}" in urllib.parse.unquote(e["path"])
              for e in mirror.entries("/v2/test/")),
          "mirror requests carry ?ns=<registry> (containerd)")
    ranges = [(0, 100), (700000, 300000), (l1["size"] - 51, 51)]
    reset()
    r = tool(*M, "--token", "registry-token-xyz", "read", ref, dg,
             *[f"{a}:{n}" for a, n in ranges])
    check(r.rc == 0 and r.out == b"".join(data[a:a + n] for a, n in ranges),
          f"range reads through the mirror {r}")
    check(len(mirror.blob_gets()) == 3 and not origin.blob_gets(),
          f"blob GETs went to the mirror only "
          f"({len(mirror.blob_gets())}, {len(origin.blob_gets())})")
    check(not any(e["auth"] for e in mirror.log),
          "no credentials sent to a mirror without auth_through")

    # a mirror's corrupt copy of a manifest: the upstream is asked
    reset()
    mirror.add(Rule("flip", match="/manifests/sha256:", count=100))
    r = tool(*M, "--platform", "linux/arm64", "image",
             f"{origin.addr}/test/img:multi")
    check(r.rc == 0 and layout.manifest_arm["digest"] in r.out.decode() and
          origin.entries("/manifests/sha256:"),
          f"corrupt manifest from the mirror -> upstream, no error {r}")

    # 5xx from the mirror: the origin answers, and gets the credentials
    reset()
    mirror.add(Rule("status", code=503, count=100))
    r = tool(*M, "--token", "registry-token-xyz", "read", ref, dg, "0:100")
    check(r.rc == 0 and r.out == data[:100],
          f"mirror 503 -> origin, no error {r}")
    check(len(origin.blob_gets()) == 1 and
          origin.blob_gets()[0]["auth"] == "Bearer registry-token-xyz",
          "the origin got the read, with the registry token")
    check(r.stats.get("retries") == 0 and r.stats.get("requests") == 2,
          f"no retry on a failing mirror, straight to the next host {r}")

    # concurrent ranges of one prefetch (curl multi): four ranges that
    # each take 0.6 s at the origin finish in about the time of one
    reset()
    mirror.add(Rule("status", code=503, count=100))
    far = [(0, 1000), (400000, 1000), (800000, 1000), (1200000, 1000)]
    origin.add(Rule("delay", seconds=0.6, count=4, ranged=True))
    cache = os.path.join(work, "cache-many")
    r = tool(*M, "--max-ranges", 1, "--cache", cache, "prefetch", ref, dg,
             *[f"{a}:{n}" for a, n in far])
    check(r.rc == 0 and r.out == b"".join(data[a:a + n] for a, n in far),
          f"prefetch of four distant ranges {r}")
    gets = origin.blob_gets()
    check(len(gets) == 4 and len({g["port"] for g in gets}) >= 2 and
          max(g["t"] for g in gets) - min(g["t"] for g in gets) < 0.5,
          f"the four range requests ran concurrently "
          f"({len(gets)} GETs, {len({g['port'] for g in gets})} "
          f"connections, {r.secs:.2f}s)")
    reset()
    origin.add(Rule("delay", seconds=0.6, count=4, ranged=True))
    r = tool(*FAST, "--max-ranges", 1, "many", ref, dg,
             *[f"{a}:{n}" for a, n in far])
    check(r.rc == 0 and r.out == b"".join(data[a:a + n] for a, n in far)
          and r.secs < 2.0,
          f"fetch_blob_read_many: 4 x 0.6 s in {r.secs:.2f}s {r}")

    # a mirror that dies and comes back, under one running client
    interval = 6
    s = Session(work, *M, "--mirror-failure-limit", 2, "--mirror-health-s",
                interval, "session", ref, dg)
    try:
        reset()
        ok, v, n = s.cmd("read 0:100")
        check(ok and v == sha((0, 100)) and n == 1 and
              len(mirror.blob_gets()) == 1 and not origin.blob_gets(),
              f"session: read through the mirror ({ok} {v} {n})")
        mreg.stop()   # the mirror's registry is gone: empty replies
        reset()
        ok, v, n = s.cmd("read 100:100")
        check(ok and v == sha((100, 100)) and n == 2 and
              len(origin.blob_gets()) == 1,
              f"mirror down: the read falls back to the origin ({v} {n})")
        ok, v, n = s.cmd("read 200:100")
        t_down = time.time()
        check(ok and v == sha((200, 100)) and n == 2,
              f"second failure: still no error ({v} {n})")
        reset()
        ok, v, n = s.cmd("read 300:100")
        check(ok and v == sha((300, 100)) and n == 1 and
              not mirror.log,
              f"after failure_limit the mirror is skipped ({v} {n})")
        mreg.start()  # back, same port and storage
        reset()
        ok, v, n = s.cmd("read 400:100")
        if time.time() < t_down + interval - 0.5:
            check(ok and v == sha((400, 100)) and n == 1 and
                  not mirror.log,
                  f"mirror back, but not tried before the health "
                  f"interval ({v} {n})")
        else:
            print("note: registry restart outlasted the health interval")
        time.sleep(max(0.0, t_down + interval + 0.3 - time.time()))
        reset()
        ok, v, n = s.cmd("read 500:100")
        check(ok and v == sha((500, 100)) and len(mirror.blob_gets()) == 1
              and not origin.blob_gets() and n == 2,
              f"after the interval: pinged, then used again ({v} {n} "
              f"{[e['path'] for e in mirror.log]})")
        reset()
        ok, v, n = s.cmd("read 600:100 800:100")
        check(ok and v == sha((600, 100), (800, 100)) and n == 2 and
              len(mirror.blob_gets()) == 2 and not origin.blob_gets(),
              f"healthy again: reads stay on the mirror ({v} {n})")
        # nobody listening at all: connection refused, no error either
        mport = mirror.port
        mirror.stop()
        reset()
        ok, v, n = s.cmd("read 900:100")
        check(ok and v == sha((900, 100)) and n == 2 and
              len(origin.blob_gets()) == 1,
              f"mirror refuses connections: origin ({v} {n})")
        mirror = Proxy(mreg.addr, port=mport)
    finally:
        s.close()

    # nydusd JSON mirrors: headers, auth_through, PULL only
    nc = os.path.join(work, "nydusd.json")
    with open(nc, "w") as f:
        json.dump({"device": {"backend": {"type": "registry", "config": {
            "host": origin.addr, "repo": "test/img",
            "mirrors": [{"host": f"http://{mirror.addr}",
                         "headers": {"X-Dragonfly-Registry":
                                     f"http://{origin.addr}"},
                         "auth_through": True, "failure_limit": 1,
                         "health_check_interval": 1}]}}}}, f)
    reset()
    r = tool(*FAST, "--nydusd-config", nc, "--token", "tok-abc", "read",
             ref, dg, "5000:100")
    gets = mirror.blob_gets()
    check(r.rc == 0 and r.out == data[5000:5100] and len(gets) == 1 and
          not origin.blob_gets(), f"nydusd mirror serves the read {r}")
    check(gets and gets[0]["headers"].get("x-dragonfly-registry") ==
          f"http://{origin.addr}", "the mirror's headers are sent")
    check(gets and gets[0]["auth"] == "Bearer tok-abc",
          "auth_through: the mirror gets the credentials")
    check(gets and "ns=" not in gets[0]["path"],
          "no ns= for nydusd mirrors")
    reset()
    r = tool(*FAST, "--nydusd-config", nc, "image", ref)
    check(r.rc == 0 and origin.entries("/manifests/v1") and
          not mirror.entries("/manifests/v1"),
          f"nydusd mirrors never resolve tags {r}")

    # capabilities: a resolve-only mirror gets no blob request
    hd2 = hosts_toml(os.path.join(work, "certs.d-resolve"), origin.addr,
                     f'[host."http://{mirror.addr}"]\n'
                     f'  capabilities = ["resolve"]\n')
    reset()
    r = tool(*FAST, "--hosts-dir", hd2, "read", ref, dg, "0:10")
    check(r.rc == 0 and origin.blob_gets() and not mirror.blob_gets(),
          f"resolve-only mirror: blobs from the origin {r}")
    reset()
    r = tool(*FAST, "--hosts-dir", hd2, "manifest", ref)
    check(r.rc == 0 and mirror.entries("/manifests/v1") and
          not origin.entries("/manifests/"),
          f"resolve-only mirror: the tag from the mirror {r}")

    # a _default mirror for every registry
    hd3 = hosts_toml(os.path.join(work, "certs.d-default"), "_default",
                     f'[host."http://{mirror.addr}"]\n')
    reset()
    r = tool(*FAST, "--hosts-dir", hd3, "read", ref, dg, "0:10")
    check(r.rc == 0 and mirror.blob_gets() and not origin.blob_gets(),
          f"_default/hosts.toml applies to any registry {r}")

    # a broken hosts.toml is a clear error with file and line
    hd4 = hosts_toml(os.path.join(work, "certs.d-bad"), origin.addr,
                     'server = "http://x"\n\n[host."http://m"]\n'
                     '  capabilities = ["pull", "fetch"]\n')
    r = tool(*FAST, "--hosts-dir", hd4, "manifest", ref)
    check(r.rc == 1 and f"{origin.addr}/hosts.toml: line 4:" in r.err and
          "unknown capability \"fetch\"" in r.err and "errno 22)" in r.err,
          f"bad hosts.toml -> EINVAL with file and line {r}")
    mirror.stop()
    origin.stop()
    mreg.stop()


def main():
    global TOOL, ENV
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    TOOL, suite = os.path.abspath(sys.argv[1]), sys.argv[2]
    def skip(why):
        print(f"SKIP: {why}")
        sys.exit(77)
    require_registry_tools(skip)
    ENV = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "image_pull_auth", "docker_config")}
    ENV["NO_PROXY"] = "127.0.0.1,localhost"
    work = tempfile.mkdtemp(prefix=f"lp-fetcher-{suite}-")
    ENV["HOME"] = work  # no stray ~/.docker/config.json
    reg = None
    try:
        layout = Layout(os.path.join(work, "oci"))
        reg = Registry(work, "registry")
        skopeo_push(work, layout, "v1", f"{reg.addr}/test/img:v1")
        skopeo_push(work, layout, "multi", f"{reg.addr}/test/img:multi",
                    all_=True)
        {"registry": suite_registry, "faults": suite_faults,
         "auth": suite_auth, "mirrors": suite_mirrors}[suite](work, layout,
                                                              reg)
    finally:
        if reg:
            reg.stop()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s); work dir {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
