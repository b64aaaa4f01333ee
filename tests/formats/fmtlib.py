"""Shared helpers for the formats test suite (tar-conformance, bad-input).

Environment (set by tests/formats/meson.build):
  LAZYPULL   path of the lazypull binary ("" or unset: tests that need it SKIP)
  SRCDIR     source root
  WORKDIR    scratch directory in the build tree (recreated by each test)
  GOPATH_EXTRA  optional, defaults to /usr/share/gocode
"""

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

SKIP = 77
GOCODE = os.environ.get("GOPATH_EXTRA", "/usr/share/gocode")
ESTARGZ_PKG = "github.com/containerd/stargz-snapshotter/estargz"
LANDMARKS = (".prefetch.landmark", ".no.prefetch.landmark")
TIMEOUT = 20


def log(*a):
    print(*a, flush=True)


def skip(why):
    log("SKIP: " + why)
    sys.exit(SKIP)


def env_paths(need_lazypull=True):
    src = os.environ.get("SRCDIR") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))
    work = os.environ.get("WORKDIR")
    if not work:
        sys.exit("WORKDIR is not set")
    lp = os.environ.get("LAZYPULL", "")
    if need_lazypull and (not lp or not os.access(lp, os.X_OK)):
        skip("lazypull binary not built (LAZYPULL=%r)" % lp)
    return src, work, lp


def prepare_workdir(work):
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)


def build_refgen(src, work):
    """Build tests/refgen offline in GOPATH mode; SKIP when Go is missing."""
    go = shutil.which("go")
    if not go:
        skip("go not installed (package golang-go)")
    if not os.path.isdir(os.path.join(GOCODE, "src", ESTARGZ_PKG)):
        skip("estargz sources missing (package "
             "golang-github-containerd-stargz-snapshotter-dev)")
    gopath = os.path.join(work, "gopath")
    pkg = os.path.join(gopath, "src", "lazypull-refgen")
    os.makedirs(os.path.dirname(pkg), exist_ok=True)
    os.symlink(os.path.join(src, "tests", "refgen"), pkg)
    out = os.path.join(work, "refgen")
    env = dict(os.environ, GO111MODULE="off", GOPROXY="off", GOFLAGS="",
               GOPATH=gopath + ":" + GOCODE,
               GOCACHE=os.path.join(work, "gocache"))
    r = subprocess.run([go, "build", "-o", out, "."], cwd=pkg, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        log(r.stdout.decode(errors="replace"))
        sys.exit("building refgen failed")
    return out


def make_layers(src, work):
    out = os.path.join(work, "layers")
    subprocess.run([sys.executable,
                    os.path.join(src, "testdata", "layers", "mklayers.py"),
                    out], check=True)
    with open(os.path.join(out, "layers.json")) as f:
        layers = json.load(f)
    for l in layers:
        l["tar"] = os.path.join(out, l["tar"])
    # upstream tar vectors with every entry type (nydus tests/texture/tar)
    ref = os.path.join(src, "testdata", "reference", "tar")
    for t in ("all-entry-type.tar", "all-entry-type-macos.tar"):
        if os.path.exists(os.path.join(ref, t)):
            layers.append({"name": "vector-" + t[:-4],
                           "tar": os.path.join(ref, t)})
    return layers


def refgen(exe, tar, blob, fmt, chunk=65536, mode="build", prioritized=None,
           verify=True):
    """Write blob; return (toc_digest, toc_json_bytes)."""
    args = [exe, "-format", fmt, "-mode", mode, "-chunk-size", str(chunk),
            "-toc-digest", blob + ".toc-digest", "-toc-json", blob + ".toc.json"]
    if prioritized:
        args += ["-prioritized", ",".join(prioritized)]
    if not verify:
        args.append("-no-verify")
    r = subprocess.run(args + [tar, blob], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("refgen failed: %s" % r.stderr.decode(errors="replace"))
    with open(blob + ".toc-digest") as f:
        dg = f.read().strip()
    with open(blob + ".toc.json", "rb") as f:
        toc = f.read()
    return dg, toc


def clean(name):
    """Go's path.Clean("/"+name) with the leading "/" removed."""
    out = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if out:
                out.pop()
            continue
        out.append(c)
    return "/".join(out)


def abspath(cname):
    return "/" + cname


def modestr(m):
    return "%o" % (m & 0o7777)


# ---------------------------------------------------------------------------
# The expected listing from a real extraction.

def extract(tar, dest):
    os.makedirs(dest)
    r = subprocess.run(["tar", "--xattrs", "--xattrs-include=*",
                        "--numeric-owner", "-xpf", tar, "-C", dest],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("tar -x %s: %s" % (tar, r.stderr.decode(errors="replace")))


def tar_index(tar):
    """(final member per cleaned name, root entry present?) from tarfile."""
    final = {}
    root = False
    with tarfile.open(tar, encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            c = clean(m.name)
            if c == "":
                root = root or m.isdir()
                continue
            final[c] = m
    return final, root


def primary(final, cname):
    seen = set()
    m = final[cname]
    while m.islnk():
        if cname in seen:
            raise RuntimeError("hardlink cycle at %s" % cname)
        seen.add(cname)
        cname = clean(m.linkname)
        m = final[cname]
    return cname


def xattrs_of(p):
    names = os.listxattr(p, follow_symlinks=False)
    return {n: base64.b64encode(os.getxattr(p, n, follow_symlinks=False))
            .decode() for n in sorted(names)}


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def synth_dir(path):
    return {"path": path, "type": "dir", "mode": "755", "uid": 0, "gid": 0}


def expected_listing(tar, dest, digest=True):
    """Listing (dict path -> object) of the extracted tree at dest."""
    final, root_explicit = tar_index(tar)
    out = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in [None] + dirnames + filenames:
            p = dirpath if n is None else os.path.join(dirpath, n)
            if n is None and dirpath != dest:
                continue  # directories are listed by their parent
            rel = os.path.relpath(p, dest)
            cname = "" if rel == "." else rel
            path = abspath(cname)
            st = os.lstat(p)
            m = final.get(cname)
            if m is not None and m.islnk():
                out[path] = {"path": path, "type": "hardlink",
                             "link": abspath(primary(final, cname))}
                continue
            if stat.S_ISDIR(st.st_mode) and (
                    (cname == "" and not root_explicit) or
                    (cname != "" and (m is None or not m.isdir()))):
                out[path] = synth_dir(path)
                continue
            e = {"path": path, "mode": modestr(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISREG(st.st_mode):
                e["type"] = "reg"
                e["size"] = st.st_size
                if digest:
                    e["sha256"] = sha256_file(p)
            elif stat.S_ISLNK(st.st_mode):
                e["type"] = "symlink"
                e["link"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["type"] = "char" if stat.S_ISCHR(st.st_mode) else "block"
                e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            elif stat.S_ISFIFO(st.st_mode):
                e["type"] = "fifo"
            else:
                raise RuntimeError("unexpected file type at %s" % p)
            xa = xattrs_of(p)
            if xa:
                e["xattrs"] = xa
            out[path] = e
    # Sanity: every final tar name was extracted.
    for c in final:
        if abspath(c) not in out:
            raise RuntimeError("%s: %s missing after extraction" % (tar, c))
    return out


# ---------------------------------------------------------------------------
# The listing implied by a TOC, following the upstream reader
# (research/estargz-format.md section 5). Used to cross-check the oracle.

def toc_listing(toc_bytes):
    toc = json.loads(toc_bytes)
    ents = toc.get("entries") or []
    m = {}
    for e in ents:
        if e.get("type") == "chunk":
            continue
        m[clean(e.get("name", ""))] = e
    out = {}
    root = m.pop("", None)
    for lm in LANDMARKS:
        m.pop(lm, None)

    def attrs(path, e):
        # Linux semantics: a symlink's mode is 0777, and xattr names
        # without a namespace (macOS tars) cannot exist on a file
        mode = 0o777 if e.get("type") == "symlink" else e.get("mode", 0)
        d = {"path": path, "mode": modestr(mode),
             "uid": e.get("uid", 0), "gid": e.get("gid", 0)}
        xa = {k: v for k, v in (e.get("xattrs") or {}).items()
              if k.split(".", 1)[0] in ("user", "trusted", "security",
                                        "system") and "." in k}
        if xa:
            d["xattrs"] = dict(sorted(xa.items()))
        return d

    out["/"] = attrs("/", root) if root else synth_dir("/")
    if root:
        out["/"]["type"] = "dir"
    for c, e in m.items():
        parts = c.split("/")
        for i in range(1, len(parts)):
            pp = abspath("/".join(parts[:i]))
            if pp not in out and "/".join(parts[:i]) not in m:
                out[pp] = synth_dir(pp)
        path = abspath(c)
        t = e.get("type")
        if t == "hardlink":
            src, seen = e, set()
            while src.get("type") == "hardlink":
                tgt = clean(src.get("linkName", ""))
                if tgt in seen or tgt not in m:
                    raise RuntimeError("bad hardlink %s" % c)
                seen.add(tgt)
                src = m[tgt]
            out[path] = {"path": path, "type": "hardlink",
                         "link": abspath(tgt)}
            continue
        d = attrs(path, e)
        d["type"] = t
        if t == "reg":
            d["size"] = e.get("size", 0)
            d["sha256"] = e.get("digest", "").split(":", 1)[-1]
        elif t == "symlink":
            d["link"] = e.get("linkName", "")
        elif t in ("char", "block"):
            d["rdev"] = [e.get("devMajor", 0), e.get("devMinor", 0)]
        out[path] = d
    return out


# ---------------------------------------------------------------------------
# Comparing listings.

def path_key(p):
    return p.encode("utf-8", "surrogatepass")


def diff_listings(exp, got, limit=60):
    """Human-readable differences between two path -> object maps."""
    msgs = []
    for p in sorted(set(exp) | set(got), key=path_key):
        e, g = exp.get(p), got.get(p)
        if g is None:
            msgs.append("missing path %r (expected %s)" % (p, json.dumps(e)))
        elif e is None:
            msgs.append("unexpected path %r: %s" % (p, json.dumps(g)))
        else:
            for k in sorted(set(e) | set(g)):
                if e.get(k) != g.get(k):
                    msgs.append("%r field %s: expected %s, got %s" % (
                        p, k, json.dumps(e.get(k)) if k in e else "(absent)",
                        json.dumps(g.get(k)) if k in g else "(absent)"))
    if len(msgs) > limit:
        msgs = msgs[:limit] + ["... %d more" % (len(msgs) - limit)]
    return msgs


def run(args, timeout=TIMEOUT, stdin=subprocess.DEVNULL):
    """Run a command; returns (rc, stdout, stderr); rc -9 on timeout."""
    try:
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=stdin, timeout=timeout)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as ex:
        return -9, ex.stdout or b"", (ex.stderr or b"") + b"\n[TIMEOUT]"


def parse_ls(stdout):
    """Parse `ls --json` output; returns (dict, ordered path list, errors)."""
    errs, got, order = [], {}, []
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError as ex:
        return {}, [], ["output is not UTF-8: %s" % ex]
    for i, line in enumerate(text.split("\n")):
        if line == "":
            continue
        try:
            o = json.loads(line)
        except ValueError as ex:
            errs.append("line %d is not valid JSON (%s): %r" % (i + 1, ex, line[:200]))
            continue
        if not isinstance(o, dict) or "path" not in o:
            errs.append("line %d is not an object with a path: %r" % (i + 1, line[:200]))
            continue
        if o["path"] in got:
            errs.append("path %r listed twice" % o["path"])
        got[o["path"]] = o
        order.append(o["path"])
    if not text.endswith("\n") and text:
        errs.append("output does not end with a newline")
    if order != sorted(order, key=path_key):
        bad = next(i for i in range(1, len(order))
                   if path_key(order[i - 1]) > path_key(order[i]))
        tree = order == sorted(order, key=lambda p: [path_key(c) for c in
                                                   p.split("/")])
        errs.append("not sorted by path (bytewise, like LC_ALL=C sort): %r "
                    "listed before %r%s" % (order[bad - 1], order[bad],
                                            " (the output is in tree order)"
                                            if tree else ""))
    return got, order, errs


def short(b, n=300):
    s = b.decode("utf-8", "replace").strip()
    return s if len(s) <= n else s[:n] + "..."


# ---- cases: a named check with its failures and notes ---------------------

CASES = []


class Case:
    def __init__(self, name):
        self.name, self.fails, self.notes = name, [], []
        CASES.append(self)

    def fail(self, m):
        self.fails.append(m)

    def note(self, m):
        self.notes.append(m)

    def expect(self, cond, m):
        if not cond:
            self.fail(m)
        return cond


def report_cases():
    """Prints ok / not ok per case (TAP-like) and a total; 1 if any
    failed, else 0."""
    nfail = 0
    for c in CASES:
        if c.fails:
            nfail += 1
            log("not ok - " + c.name)
            for m in c.fails:
                log("    " + m)
        else:
            log("ok - " + c.name)
        for m in c.notes:
            log("    # " + m)
    log("%d/%d cases passed" % (len(CASES) - nfail, len(CASES)))
    return 1 if nfail else 0
