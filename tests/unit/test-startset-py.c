/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/startset on a Python program: a merged-usr model with a CPython
 * interpreter (/usr/bin/python3 -> python3.N, a synthetic ELF), its stdlib
 * with compiled modules (__pycache__/NAME.cpython-3N.pyc, compiled at test
 * time by the host's python3 from the sources here, so N and the magic are
 * the host's), extension modules in lib-dynload, site directories with
 * .pth files and a namespace package, a sitecustomize behind a symlink,
 * and an application in /app.  Checks that exactly the files the
 * interpreter reads at start are fetched and marked: the interpreter and
 * its libraries, the start-up modules, what the script imports at module
 * level and in class bodies (not in functions), found along sys.path (the
 * script's directory first: a module there shadows the stdlib's; relative
 * imports; a from-list's submodules; packages, namespace packages,
 * extension modules and their libraries), the .pyc rather than the .py
 * when there is one; -c, -m, a "#!/usr/bin/env python3" script,
 * PYTHONPATH, -E, -S; the queue's order (a module found again through an
 * earlier import moves up); the byte budget, stop, a malformed .pyc; the file
 * and depth limits (on sources only, without python3).  The io's fetch
 * runs on several threads: no file is read before its fetch returned.
 *
 * Argument: the path of pyimport-ref.py.  Without python3 3.8-3.12 the
 * cases that need compiled modules are skipped (said so).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/startset.h"

#define CHECK_WITH_MESSAGE
#include "check.h"
#include "elfgen.h"
#include "pyhost.h"

#include "startset-fx.h"

#define LD "/lib64/ld-linux-x86-64.so.2"
#define LD_FILE "/usr/lib64/ld-linux-x86-64.so.2"
#define TD "/usr/lib/x86_64-linux-gnu"

static struct pyhost host;
static unsigned minor = 11; /* of the model's interpreter */
static char tag[32] = "cpython-311";

/* a path with '@' for the stdlib directory (/usr/lib/python3.N), '=' for
 * the version (3.N) and '^' for the cache tag (cpython-3N) */
static const char *xp(const char *in)
{
	static char bufs[8][PATH_MAX];
	static unsigned next;
	char *out = bufs[next++ % 8], *p = out;

	for (; *in && p < out + PATH_MAX - 64; in++) {
		if (*in == '@')
			p += sprintf(p, "/usr/lib/python3.%u", minor);
		else if (*in == '=')
			p += sprintf(p, "3.%u", minor);
		else if (*in == '^')
			p += sprintf(p, "%s", tag);
		else
			*p++ = *in;
	}
	*p = '\0';
	return out;
}

/* dir/__pycache__/stem.<tag>.pyc of dir/stem.py */
static const char *pyc_of(const char *py)
{
	static char buf[PATH_MAX];
	const char *slash = strrchr(py, '/');
	size_t dl = (size_t)(slash - py), sl = strlen(slash + 1) - 3;

	snprintf(buf, sizeof(buf), "%.*s/__pycache__/%.*s.%s.pyc", (int)dl,
		 py, (int)sl, slash + 1, tag);
	return buf;
}

/* ---- the model ----------------------------------------------------------- */

struct pymod {
	const char *path; /* xp() form */
	const char *text;
	bool pyc; /* compiled too */
	bool big; /* its .pyc holds an 80 KB string: a batch of its own */
};

static const struct pymod mods[] = {
	/* the stdlib */
	{ "@/os.py", "import abc\n", true },
	{ "@/site.py", "import os\nimport sitelib\n", true },
	{ "@/sitelib.py", "x = 1\n", true },
	{ "@/encodings/__init__.py", "import codecs\nfrom . import aliases\n",
	  true },
	{ "@/encodings/aliases.py", "aliases = {}\n", true },
	{ "@/encodings/utf_8.py", "import codecs\n", true },
	{ "@/encodings/latin_1.py", "import codecs\n", true },
	{ "@/json/__init__.py",
	  "from .decoder import JSONDecoder\n"
	  "from .encoder import JSONEncoder\n"
	  "import codecs\n",
	  true },
	{ "@/json/decoder.py", "import re\nfrom json import scanner\n", true },
	{ "@/json/encoder.py",
	  "import re\n"
	  "def f():\n"
	  "    import lazy_only\n",
	  true },
	{ "@/json/scanner.py", "'''import notme'''\nimport re\n", true },
	{ "@/json/tool.py", "import argparse\n", true },
	{ "@/re/__init__.py", "from . import _compiler, _parser\n"
			      "import functools\n", true },
	{ "@/re/_compiler.py", "from ._parser import x\n", true },
	{ "@/re/_parser.py", "x = 1\n", true },
	{ "@/re/_casefix.py", "x = 1\n", true },
	{ "@/functools.py", "from collections import namedtuple\n", true },
	{ "@/collections/__init__.py",
	  "from operator import itemgetter as _itemgetter\n"
	  "import _x\n",
	  true },
	{ "@/operator.py", "x = 1\n", true },
	{ "@/lazy_only.py", "x = 1\n", true },
	{ "@/notme.py", "x = 1\n", true },
	{ "@/shadow.py", "import never_shadowed\n", true },
	{ "@/never_shadowed.py", "x = 1\n", true },
	{ "@/nopyc.py", "import stdonly\n", false },
	{ "@/stdonly.py", "x = 1\n", true },
	{ "@/sc_dep.py", "x = 1\n", true },
	{ "/etc/python=/sitecustomize.py", "import sc_dep\n", false },
	/* site directories */
	{ "/usr/lib/python3/dist-packages/nspkg/sub.py", "import nsdep\n",
	  true },
	{ "/usr/lib/python3/dist-packages/nsdep.py", "x = 1\n", true },
	/* the application */
	{ "/app/main.py",
	  "import json, shadow\n"
	  "import models\n"
	  "from pkg import sub, notamodule\n"
	  "from pkg.inner import deep\n"
	  "import _x, _y, _z\n"
	  "import nspkg.sub\n"
	  "import bad\n"
	  "import nopyc\n"
	  "try:\n"
	  "    import missing_mod\n"
	  "except ImportError:\n"
	  "    pass\n"
	  "if True:\n"
	  "    import cond\n"
	  "def main():\n"
	  "    import lazy_only\n",
	  false },
	{ "/app/shadow.py", "x = 1\n", false },
	{ "/app/models.py",
	  "class A:\n"
	  "    import inclass\n"
	  "    def m(self):\n"
	  "        import infunc\n",
	  true },
	{ "/app/inclass.py", "x = 1\n", true },
	{ "/app/infunc.py", "x = 1\n", true },
	{ "/app/pkg/__init__.py", "from .inner import helper\n", true },
	{ "/app/pkg/__main__.py", "from . import mainonly\n", true },
	{ "/app/pkg/mainonly.py", "x = 1\n", true },
	{ "/app/pkg/sub.py", "x = 1\n", true },
	{ "/app/pkg/unused.py", "x = 1\n", true },
	{ "/app/pkg/sibling.py", "x = 1\n", true },
	{ "/app/pkg/inner/__init__.py", "x = 1\n", true },
	{ "/app/pkg/inner/helper.py", "x = 1\n", true },
	{ "/app/pkg/inner/deep.py",
	  "from ..sub import x\n"
	  "from .. import sibling\n"
	  "from ... import beyond\n"
	  "from . import helper\n",
	  true },
	{ "/app/beyond.py", "x = 1\n", true },
	{ "/app/bad.py", "x = 1\n", false }, /* its .pyc: garbage */
	{ "/app/cond.py", "import operator\n", false },
	{ "/app/notused.py", "x = 1\n", true },
	{ "/app/tool.py",
	  "#!/usr/bin/env python3\n"
	  "import json\n"
	  "import shadow\n",
	  false },
	{ "/opt/lib/ppmod.py", "x = 1\n", false },
	/* a virtual environment */
	{ "/opt/venv/lib/python=/site-packages/venvdep.py", "x = 1\n",
	  true },
	{ "/opt/lib/shadow.py", "x = 1\n", false },
	/* the queue's order: oshared is found first through osecond (its
	 * batch comes in first), then through ofirst, which Python imports
	 * first */
	{ "/srv/order.py", "import ofirst\nimport osecond\n", false },
	{ "/srv/ofirst.py", "import oshared\n", true, true },
	{ "/srv/osecond.py",
	  "import q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, "
	  "q14, q15, q16\n"
	  "import oshared\nimport qnear\n", true,
	  true },
	{ "/srv/oshared.py", "x = 1\n", true },
	{ "/srv/q1.py", "", true, true },
	{ "/srv/q2.py", "", true, true },
	{ "/srv/q3.py", "", true, true },
	{ "/srv/q4.py", "", true, true },
	{ "/srv/q5.py", "", true, true },
	{ "/srv/q6.py", "", true, true },
	{ "/srv/q7.py", "", true, true },
	{ "/srv/q8.py", "", true, true },
	{ "/srv/q9.py", "", true, true },
	{ "/srv/q10.py", "", true, true },
	{ "/srv/q11.py", "", true, true },
	{ "/srv/q12.py", "", true, true },
	{ "/srv/q13.py", "", true, true },
	{ "/srv/q14.py", "", true, true },
	{ "/srv/q15.py", "", true, true },
	{ "/srv/q16.py", "", true, true },
	{ "/srv/qnear.py", "", true, true }, /* stored right after q16 */
};

/* the interpreter, its libraries, the C library's data, the runtime's */
static void add_system(struct fx *fx)
{
	static const char *const py_needs[] = { "libc.so.6", "libm.so.6",
						NULL };
	static const char *const c_needs[] = { "ld-linux-x86-64.so.2", NULL };
	static const char *const c_only[] = { "libc.so.6", NULL };
	static const char *const ssl_needs[] = { "libssl.so.3", "libc.so.6",
						 NULL };

	fx_link(fx, "/bin", "usr/bin");
	fx_link(fx, "/lib", "usr/lib");
	fx_link(fx, "/lib64", "usr/lib64");
	fx_elf(fx, LD_FILE, NULL, NULL, NULL, 4096);
	fx_elf(fx, TD "/libc.so.6", NULL, c_needs, NULL, 20000);
	fx_elf(fx, TD "/libm.so.6", NULL, c_only, NULL, 0);
	fx_elf(fx, TD "/libssl.so.3", NULL, c_only, NULL, 0);
	fx_elf(fx, TD "/libunused.so.1", NULL, c_only, NULL, 0);
	fx_elf(fx, xp("/usr/bin/python="), LD, py_needs, NULL, 30000);
	fx_link(fx, "/usr/bin/python3", xp("python="));
	fx_elf(fx, "/usr/bin/env", LD, c_only, NULL, 0);
	fx_text(fx, "/etc/ld.so.cache", 0644, "glibc-ld.so.cache1.1");
	fx_text(fx, "/etc/passwd", 0644, "root:x:0:0::/root:/bin/sh\n");
	fx_text(fx, "/etc/group", 0644, "root:x:0:\n");
	fx_text(fx, "/usr/share/zoneinfo/Etc/UTC", 0644, "TZif2");
	fx_text(fx, "/usr/share/zoneinfo/Europe/Paris", 0644, "TZif2");
	fx_link(fx, "/etc/localtime", "/usr/share/zoneinfo/Etc/UTC");
	fx_text(fx, "/usr/lib/locale/C.utf8/LC_CTYPE", 0644, "ctype");
	fx_text(fx, "/usr/lib/locale/C.utf8/LC_COLLATE", 0644, "collate");
	fx_text(fx, TD "/gconv/gconv-modules.cache", 0644, "gconv");
	/* extension modules: one needs a library */
	fx_elf(fx, xp("@/lib-dynload/_x.^-x86_64-linux-gnu.so"), NULL,
	       ssl_needs, NULL, 0);
	fx_elf(fx, xp("@/lib-dynload/_y.abi3.so"), NULL, c_only, NULL, 0);
	fx_elf(fx, xp("@/lib-dynload/_z.so"), NULL, NULL, NULL, 0);
	fx_elf(fx, xp("@/lib-dynload/_unused.^-x86_64-linux-gnu.so"), NULL,
	       ssl_needs, NULL, 0);
	fx_text(fx, "/usr/lib/python3/dist-packages/debian.pth",
		0644, "import never_read\n");
	fx_text(fx, xp("/usr/local/lib/python=/dist-packages/local.pth"),
		0644, "/opt/nothing\n");
	fx_link(fx, xp("@/sitecustomize.py"),
		xp("/etc/python=/sitecustomize.py"));
	fx_link(fx, "/opt/venv/bin/python", xp("/usr/bin/python="));
	fx_text(fx, "/opt/venv/pyvenv.cfg", 0644, "home = /usr/bin\n");
}

/* the model of mods, their .pyc compiled by python3; false if they could
 * not be */
static bool build_py(struct fx *fx)
{
	char dir[] = "/tmp/lp-startset-py-XXXXXX", path[PATH_MAX + 32];
	uint8_t *hdr = NULL;
	bool ok = true;

	if (!mkdtemp(dir))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(mods); i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/m%03zu.py", dir, i);
		f = fopen(path, "w");
		if (!f || fputs(mods[i].text, f) < 0 ||
		    (mods[i].big && fprintf(f, "pad = '%080000d'\n", 0) < 0) ||
		    fclose(f) != 0)
			ok = false;
	}
	ok = ok && pyhost_compile(&host, dir);
	CHECK(ok, "python3 did not compile the modules");
	fx_init(fx);
	add_system(fx);
	for (size_t i = 0; ok && i < ARRAY_SIZE(mods); i++) {
		const char *py = xp(mods[i].path);
		uint8_t *data;
		size_t len;

		/* the big ones apart in the layer (no two in one request),
		 * but for qnear, right after q16 */
		if (mods[i].big && !strstr(py, "near"))
			fx->comp += 128 << 10;
		fx_text(fx, py, strstr(py, "tool.py") ? 0755 : 0644,
			mods[i].text);
		snprintf(path, sizeof(path), "%s/m%03zu.pyc", dir, i);
		data = check_slurp(path, &len);
		CHECK(data && len > 16, "%s", path);
		if (!data)
			continue;
		if (!hdr) {
			hdr = lp_xmalloc(16);
			memcpy(hdr, data, 16);
		}
		if (mods[i].pyc)
			fx_file(fx, pyc_of(py), 0644, data, len);
		else
			free(data);
	}
	/* a .pyc of the right version whose code is garbage */
	if (hdr) {
		uint8_t *bad = lp_xmalloc(48);

		memcpy(bad, hdr, 16);
		memset(bad + 16, 0xff, 32);
		fx_file(fx, pyc_of("/app/bad.py"), 0644, bad, 48);
	}
	free(hdr);
	fx_finish(fx);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return ok && fx->m;
}

/* ---- checks -------------------------------------------------------------- */

/* exactly the files of want (xp() form; a module's .py stands for its
 * .pyc when pyc) were fetched */
static void check_exact(const struct fx *fx, const struct rec *r,
			const char *const *want, const char *what)
{
	uint8_t *is = lp_xcalloc(fx->m->n_inodes, 1);
	unsigned n = 0;

	for (size_t i = 0; want[i]; i++) {
		const char *p = xp(want[i]);
		uint32_t ino = model_lookup_path(fx->m, p);

		CHECK(ino && S_ISREG(fx->m->inodes[ino].mode),
		      "%s: %s is not in the model", what, p);
		if (ino && !is[ino]) {
			is[ino] = 1;
			n++;
		}
	}
	for (unsigned i = 0; i < fx->n_files; i++) {
		uint32_t ino = model_lookup_path(fx->m, fx->files[i].path);

		if (!ino)
			continue;
		CHECK(!!r->level[ino] == is[ino], "%s: %s %s", what,
		      fx->files[i].path,
		      is[ino] ? "was not fetched" : "was fetched");
	}
	CHECK(rec_fetched(r) == n, "%s: %u fetched, %u wanted", what,
	      rec_fetched(r), n);
	free(is);
}

/* what every run must hold: the stats are the fetched files */
static void check_stats(const struct fx *fx, const struct rec *r,
			const struct startset *s, const char *what)
{
	const struct startset_stats *st = startset_stats(s);
	uint64_t bytes = 0;

	for (uint32_t i = 0; i < fx->m->n_inodes; i++)
		if (r->level[i])
			bytes += model_file_stored(fx->m, i);
	CHECK(st->files == rec_fetched(r) && st->bytes == bytes,
	      "%s: files %u bytes %llu, fetched %u bytes %llu", what,
	      st->files, (unsigned long long)st->bytes, rec_fetched(r),
	      (unsigned long long)bytes);
	CHECK(st->levels == r->calls, "%s: levels %u, %u fetch calls", what,
	      st->levels, r->calls);
	CHECK(r->max_inflight <= STARTSET_PY_FETCHERS,
	      "%s: %u fetches at once", what, r->max_inflight);
	for (uint32_t i = 0; i < fx->m->n_inodes; i++)
		if (r->level[i] && !startset_predicted(s, i)) {
			CHECK(false, "%s: inode %u fetched, not predicted", what,
			      i);
			break;
		}
}

#define FETCHED(r, p) (lvl((r), xp(p)) != 0)

/* python3 /app/main.py: the whole set, file by file */
static uint64_t test_main(struct fx *fx)
{
	const char *const argv[] = { "python3", "/app/main.py", NULL };
	const char *const env[] = { "PATH=/usr/bin", "LANG=C.UTF-8", NULL };
	struct run_opts ro = { .argv = argv, .env = env, .delay_us = 300 };
	const char *want[80] = {
		/* the interpreter, its libraries, the C library's data */
		"/usr/bin/python=", LD_FILE, TD "/libc.so.6", TD "/libm.so.6",
		"/etc/ld.so.cache", "/usr/share/zoneinfo/Etc/UTC",
		"/usr/lib/locale/C.utf8/LC_CTYPE",
		"/usr/lib/locale/C.utf8/LC_COLLATE",
		TD "/gconv/gconv-modules.cache", "/etc/passwd", "/etc/group",
		/* site: the .pth files, sitecustomize (a source behind a
		 * link) and what it imports */
		"/usr/lib/python3/dist-packages/debian.pth",
		"/usr/local/lib/python=/dist-packages/local.pth",
		"/etc/python=/sitecustomize.py", "@/__pycache__/sc_dep.^.pyc",
		/* the start-up modules */
		"@/encodings/__pycache__/__init__.^.pyc",
		"@/encodings/__pycache__/aliases.^.pyc",
		"@/encodings/__pycache__/utf_8.^.pyc",
		/* the script and its imports */
		"/app/main.py", "@/json/__pycache__/__init__.^.pyc",
		"@/json/__pycache__/decoder.^.pyc",
		"@/json/__pycache__/encoder.^.pyc",
		"@/json/__pycache__/scanner.^.pyc",
		"@/re/__pycache__/__init__.^.pyc",
		"@/re/__pycache__/_compiler.^.pyc",
		"@/re/__pycache__/_parser.^.pyc",
		"@/__pycache__/functools.^.pyc",
		"@/collections/__pycache__/__init__.^.pyc",
		"@/__pycache__/operator.^.pyc",
		"@/lib-dynload/_x.^-x86_64-linux-gnu.so", TD "/libssl.so.3",
		"@/lib-dynload/_y.abi3.so", "@/lib-dynload/_z.so",
		"/app/shadow.py", "/app/__pycache__/models.^.pyc",
		"/app/__pycache__/inclass.^.pyc",
		"/app/pkg/__pycache__/__init__.^.pyc",
		"/app/pkg/__pycache__/sub.^.pyc",
		"/app/pkg/__pycache__/sibling.^.pyc",
		"/app/pkg/inner/__pycache__/__init__.^.pyc",
		"/app/pkg/inner/__pycache__/helper.^.pyc",
		"/app/pkg/inner/__pycache__/deep.^.pyc",
		"/usr/lib/python3/dist-packages/nspkg/__pycache__/sub.^.pyc",
		"/usr/lib/python3/dist-packages/__pycache__/nsdep.^.pyc",
		"/app/__pycache__/bad.^.pyc", "@/nopyc.py",
		"@/__pycache__/stdonly.^.pyc", "/app/cond.py",
	};
	/* the modules found: the start-up ones, sitecustomize and sc_dep,
	 * then the script's (codecs is built in from 3.11, or not there) */
	uint32_t want_mods = 3 + 2 + 29;
	const struct startset_stats *st;
	struct startset *s;
	struct rec r;
	uint64_t bytes;

	if (minor < 11) {
		/* site and os are not built in before 3.11 */
		size_t n = 0;

		while (want[n])
			n++;
		want[n++] = "@/__pycache__/site.^.pyc";
		want[n++] = "@/__pycache__/os.^.pyc";
		want[n++] = "@/__pycache__/sitelib.^.pyc";
		want_mods += 3;
	}
	s = run(fx, &r, &ro);
	if (!s)
		return 0;
	st = startset_stats(s);
	check_exact(fx, &r, want, "main.py");
	check_stats(fx, &r, s, "main.py");
	CHECK(!strcmp(st->program, xp("/usr/bin/python=")), "program %s",
	      st->program);
	CHECK(st->bad == 1, "the garbage .pyc: bad %u", st->bad);
	CHECK(st->skipped == 0, "skipped %u", st->skipped);
	CHECK(st->modules == want_mods, "modules %u, want %u", st->modules,
	      want_mods);
	CHECK(r.calls > 1, "%u fetch calls", r.calls);
	/* the ones to make sure of, by name */
	CHECK(!FETCHED(&r, "@/__pycache__/lazy_only.^.pyc") &&
		      !FETCHED(&r, "/app/__pycache__/infunc.^.pyc"),
	      "imported in functions only");
	CHECK(!FETCHED(&r, "@/__pycache__/shadow.^.pyc"),
	      "shadowed by the script's directory");
	CHECK(!FETCHED(&r, "@/json/__init__.py") &&
		      !FETCHED(&r, "/app/models.py"),
	      "the .py of a compiled module");
	CHECK(!FETCHED(&r, "/app/__pycache__/beyond.^.pyc"),
	      "a relative import beyond the top package");
	CHECK(!FETCHED(&r, "@/lib-dynload/_unused.^-x86_64-linux-gnu.so") &&
		      !FETCHED(&r, TD "/libunused.so.1"),
	      "what nothing imports or needs");
	CHECK(minor < 11 || (!FETCHED(&r, "@/__pycache__/site.^.pyc") &&
			     !FETCHED(&r, "@/__pycache__/os.^.pyc")),
	      "site and os are built in");
	bytes = st->bytes;
	printf("python3 /app/main.py: %u files, %llu bytes, %u modules, %u "
	       "fetch calls, at most %u at once\n", st->files,
	       (unsigned long long)st->bytes, st->modules, r.calls,
	       r.max_inflight);
	startset_free(s);
	rec_release(&r);
	return bytes;
}

/*
 * The queue goes in the order Python imports: a module first found through
 * a later import (its batch came in first) moves up when an earlier import
 * names it too; a module stored next to one going out goes with it.
 *
 * osecond's batch comes in first: oshared is queued behind q1..q16 (80 KB
 * each, a batch each), and q1..q5 go out beside ofirst's fetch, filling the
 * 6 fetchers.  ofirst comes in at 0.25 s (its fetcher takes q6) and names
 * oshared again.  The q modules take 1 s each, so the fetchers free in
 * waves: at 1 s five of them take oshared and q7..q11 (oshared has moved
 * up), at 1.25 s q6's takes q12, at 2 s the next five take q13..q16.
 * Without the move oshared waits for that third wave, behind q12.
 *
 * The fetch calls are numbered as they begin, and fetchers freed together
 * begin in any order: the check counts waves, not places within one (a
 * count of the q modules numbered before oshared failed in CI when q8..q10
 * of the same wave began first).
 */
static void test_order(struct fx *fx)
{
	const char *const argv[] = { "python3", "/srv/order.py", NULL };
	struct run_opts ro = { .argv = argv,
			       .slow = { { "/ofirst.", 250000 },
					 { "/__pycache__/q", 1000000 } } };
	uint32_t shared, before = 0;
	struct startset *s;
	struct rec r;

	if (getenv("LPDEBUG"))
		lp_log_max = LP_LOG_DEBUG;
	s = run(fx, &r, &ro);
	lp_log_max = LP_LOG_INFO;
	if (!s)
		return;
	check_stats(fx, &r, s, "order");
	shared = lvl(&r, pyc_of("/srv/oshared.py"));
	for (unsigned i = 1; i <= 16; i++) {
		char py[32];
		uint32_t at;

		snprintf(py, sizeof(py), "/srv/q%u.py", i);
		at = lvl(&r, pyc_of(py));
		CHECK(at, "%s was not fetched", py);
		if (at < shared)
			before++;
	}
	/* with the move: at most q1..q11 (the waves at 0, 0.25 and 1 s);
	 * without: q1..q12 at least */
	CHECK(shared && before <= 11,
	      "oshared went out after %u of q1..q16 (fetch call %u): it did "
	      "not move up", before, shared);
	/* qnear, imported after oshared, is stored next to q16: it goes
	 * with it (the two are too big for one batch in key order) */
	CHECK(lvl(&r, pyc_of("/srv/qnear.py")) ==
		      lvl(&r, pyc_of("/srv/q16.py")),
	      "qnear: fetch call %u, q16's %u",
	      lvl(&r, pyc_of("/srv/qnear.py")), lvl(&r, pyc_of("/srv/q16.py")));
	startset_free(s);
	rec_release(&r);
}

/* -c, -m, a script run by env, PYTHONPATH, -E, -S */
static void test_modes(struct fx *fx)
{
	struct startset *s;
	struct rec r;

	{
		const char *const argv[] = { "/usr/bin/python3", "-u", "-c",
					     "import json; import cond", NULL };
		struct run_opts ro = { .argv = argv, .workdir = "/app" };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/app/cond.py") &&
			      FETCHED(&r, "@/json/__pycache__/decoder.^.pyc") &&
			      FETCHED(&r, "@/__pycache__/operator.^.pyc"),
		      "-c: its imports, from the working directory");
		CHECK(!FETCHED(&r, "/app/main.py") &&
			      !FETCHED(&r, "/app/__pycache__/models.^.pyc") &&
			      !FETCHED(&r, "/app/shadow.py"),
		      "-c: nothing of main.py");
		CHECK(FETCHED(&r, "@/encodings/__pycache__/utf_8.^.pyc"),
		      "-c: the start-up modules");
		check_stats(fx, &r, s, "-c");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* -m: the package's __init__ modules, then the module */
		const char *const argv[] = { "python3", "-m",
					     "pkg.inner.deep", "--arg", NULL };
		struct run_opts ro = { .argv = argv, .workdir = "/app" };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/app/pkg/__pycache__/__init__.^.pyc") &&
			      FETCHED(&r, "/app/pkg/inner/__pycache__/"
					  "__init__.^.pyc") &&
			      FETCHED(&r, "/app/pkg/inner/__pycache__/"
					  "deep.^.pyc") &&
			      FETCHED(&r, "/app/pkg/__pycache__/sibling.^.pyc") &&
			      FETCHED(&r, "/app/pkg/__pycache__/sub.^.pyc") &&
			      FETCHED(&r, "/app/pkg/inner/__pycache__/"
					  "helper.^.pyc"),
		      "-m pkg.inner.deep");
		CHECK(!FETCHED(&r, "/app/main.py") &&
			      !FETCHED(&r, "@/json/__pycache__/__init__.^.pyc") &&
			      !FETCHED(&r, "/app/pkg/__pycache__/unused.^.pyc") &&
			      !FETCHED(&r, "/app/pkg/__pycache__/__main__.^.pyc"),
		      "-m: nothing else");
		check_stats(fx, &r, s, "-m");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* -m of a package: its __main__ too; an option with a
		 * value before it */
		const char *const argv[] = { "python3",
					     "--check-hash-based-pycs", "never",
					     "-mpkg", NULL };
		struct run_opts ro = { .argv = argv, .workdir = "/app" };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/app/pkg/__pycache__/__init__.^.pyc") &&
			      FETCHED(&r, "/app/pkg/__pycache__/__main__.^.pyc") &&
			      FETCHED(&r, "/app/pkg/__pycache__/mainonly.^.pyc"),
		      "-m pkg: pkg.__main__ and its imports");
		check_stats(fx, &r, s, "-m pkg");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* a script after --check-hash-based-pycs's value */
		const char *const argv[] = { "python3",
					     "--check-hash-based-pycs",
					     "always", "/app/main.py", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/app/main.py") &&
			      FETCHED(&r, "/app/__pycache__/models.^.pyc"),
		      "--check-hash-based-pycs always /app/main.py");
		check_stats(fx, &r, s, "--check-hash-based-pycs");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* the program is a script: env, python3, then its imports
		 * from its own directory */
		const char *const argv[] = { "/app/tool.py", NULL };
		struct run_opts ro = { .argv = argv, .delay_us = 100 };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(!strcmp(startset_stats(s)->program, "/app/tool.py"),
		      "program %s", startset_stats(s)->program);
		CHECK(lvl(&r, "/app/tool.py") == 1 &&
			      lvl(&r, "/usr/bin/env") == 2 &&
			      FETCHED(&r, "/usr/bin/python="),
		      "tool.py, env, python3");
		CHECK(FETCHED(&r, "@/json/__pycache__/scanner.^.pyc") &&
			      FETCHED(&r, "/app/shadow.py") &&
			      FETCHED(&r, "@/encodings/__pycache__/"
					  "__init__.^.pyc") &&
			      FETCHED(&r, "/etc/python=/sitecustomize.py"),
		      "the script's imports");
		CHECK(!FETCHED(&r, "@/__pycache__/shadow.^.pyc") &&
			      !FETCHED(&r, "/app/main.py"),
		      "shadow.py of the script's directory");
		check_stats(fx, &r, s, "#!/usr/bin/env python3");
		startset_free(s);
		rec_release(&r);
	}
	for (int noenv = 0; noenv < 2; noenv++) {
		/* PYTHONPATH comes before the stdlib; -E ignores it */
		const char *const argv[] = { "python3", noenv ? "-E" : "-u",
					     "-c", "import ppmod, shadow",
					     NULL };
		const char *const env[] = { "PYTHONPATH=/nonexistent:/opt/lib",
					    "TZ=Europe/Paris", NULL };
		struct run_opts ro = { .argv = argv, .env = env };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/opt/lib/ppmod.py") == !noenv &&
			      FETCHED(&r, "/opt/lib/shadow.py") == !noenv &&
			      FETCHED(&r, "@/__pycache__/shadow.^.pyc") == noenv,
		      "PYTHONPATH (-E %d)", noenv);
		CHECK(FETCHED(&r, "/usr/share/zoneinfo/Europe/Paris") &&
			      !FETCHED(&r, "/usr/share/zoneinfo/Etc/UTC") &&
			      !FETCHED(&r, "/usr/lib/locale/C.utf8/LC_CTYPE"),
		      "TZ, no locale");
		check_stats(fx, &r, s, "PYTHONPATH");
		startset_free(s);
		rec_release(&r);
	}
	for (int how = 0; how < 3; how++) {
		/* a virtual environment's site-packages: its interpreter
		 * named by path, through PATH; the system's has none */
		const char *const argv[] = { how == 0 ? "/opt/venv/bin/python"
					     : how == 1 ? "python" : "python3",
					     "-c", "import venvdep", NULL };
		const char *const env[] = { "PATH=/opt/venv/bin:/usr/bin",
					    NULL };
		struct run_opts ro = { .argv = argv, .env = env };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(FETCHED(&r, "/opt/venv/lib/python=/site-packages/"
				  "__pycache__/venvdep.^.pyc") == (how < 2),
		      "venv (%s)", argv[0]);
		CHECK(FETCHED(&r, "@/__pycache__/os.^.pyc") ||
			      FETCHED(&r, "/usr/bin/python="),
		      "venv (%s): the interpreter", argv[0]);
		check_stats(fx, &r, s, "venv");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* -S: no site directories, .pth files or sitecustomize */
		const char *const argv[] = { "python3", "-uS", "/app/main.py",
					     NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(!FETCHED(&r, "/usr/lib/python3/dist-packages/debian.pth") &&
			      !FETCHED(&r, "/usr/local/lib/python=/"
					   "dist-packages/local.pth") &&
			      !FETCHED(&r, "/etc/python=/sitecustomize.py") &&
			      !FETCHED(&r, "@/__pycache__/sc_dep.^.pyc"),
		      "-S: site");
		CHECK(!FETCHED(&r, "/usr/lib/python3/dist-packages/nspkg/"
				   "__pycache__/sub.^.pyc"),
		      "-S: no namespace package in a site directory");
		CHECK(FETCHED(&r, "/app/main.py") &&
			      FETCHED(&r, "@/json/__pycache__/__init__.^.pyc") &&
			      FETCHED(&r, "/app/pkg/inner/__pycache__/"
					  "deep.^.pyc"),
		      "-S: the script's imports still");
		check_stats(fx, &r, s, "-S");
		startset_free(s);
		rec_release(&r);
	}
}

/* the byte budget; stop */
static void test_cut(struct fx *fx, uint64_t all)
{
	const char *const argv[] = { "python3", "/app/main.py", NULL };
	const char *const env[] = { "PATH=/usr/bin", "LANG=C.UTF-8", NULL };
	struct startset *s;
	struct rec r;

	for (int k = 0; k < 2; k++) {
		/* a byte short, then half (python3 fits) */
		struct run_opts ro = { .argv = argv, .env = env,
				       .max_bytes = k ? all / 2 : all - 1 };
		const struct startset_stats *st;

		s = run(fx, &r, &ro);
		if (!s)
			return;
		st = startset_stats(s);
		CHECK(st->skipped >= 1 && st->bytes <= ro.max_bytes,
		      "budget %llu: skipped %u bytes %llu",
		      (unsigned long long)ro.max_bytes, st->skipped,
		      (unsigned long long)st->bytes);
		CHECK(FETCHED(&r, "/usr/bin/python="), "the program first");
		check_stats(fx, &r, s, "budget");

		startset_free(s);
		rec_release(&r);
	}
	{
		/* the program alone is over it */
		struct run_opts ro = { .argv = argv, .env = env,
				       .max_bytes = 1000 };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(!FETCHED(&r, "/usr/bin/python=") &&
			      startset_stats(s)->skipped >= 1,
		      "python3 over the budget");
		check_stats(fx, &r, s, "tiny budget");
		startset_free(s);
		rec_release(&r);
	}
	for (uint32_t after = 1; after <= 3; after++) {
		/* stopped while the second batch is fetched: what was not
		 * fetched is not counted, marked or predicted */
		bool stop = false;
		struct run_opts ro = { .argv = argv, .env = env, .stop = &stop,
				       .stop_at = &stop, .stop_after = after,
				       .delay_us = 500 };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(startset_stats(s)->bytes < all,
		      "stopped after %u: %llu bytes", after,
		      (unsigned long long)startset_stats(s)->bytes);
		check_stats(fx, &r, s, "stopped");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* stopped from the start */
		bool stop = true;
		struct run_opts ro = { .argv = argv, .env = env, .stop = &stop };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		check_stats(fx, &r, s, "stopped at once");
		CHECK(r.calls == 0 && startset_stats(s)->files == 0 &&
			      startset_stats(s)->bytes == 0,
		      "stopped at once: %u calls, %u files", r.calls,
		      startset_stats(s)->files);
		startset_free(s);
		rec_release(&r);
	}
}

/* ---- limits, on sources (no python3 needed) ------------------------------ */

/* STARTSET_PY_MAX_FILES: a script importing 1100 modules; the depth limit:
 * a chain of 40 modules each importing the next */
static void test_limits(void)
{
	static const char *const c_only[] = { "libc.so.6", NULL };
	char path[64], text[64], *main_py;
	size_t len = 0;
	struct fx fx;
	struct rec r;
	struct startset *s;

	fx_init(&fx);
	fx_elf(&fx, "/usr/bin/python3.11", NULL, c_only, NULL, 0);
	fx_elf(&fx, TD "/libc.so.6", NULL, NULL, NULL, 0);
	fx_text(&fx, "/usr/lib/python3.11/os.py", 0644, "import abc\n");
	main_py = lp_xmalloc(1100 * 16 + 64);
	len += (size_t)sprintf(main_py, "import c0\n");
	for (int i = 0; i < 1100; i++) {
		len += (size_t)sprintf(main_py + len, "import m%d\n", i);
		snprintf(path, sizeof(path), "/app/m%d.py", i);
		fx_text(&fx, path, 0644, "x = 1\n");
	}
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/app/chain/c%d.py", i);
		snprintf(text, sizeof(text), "import c%d\n", i + 1);
		fx_text(&fx, path, 0644, text);
	}
	fx_file(&fx, "/app/many.py", 0644, (uint8_t *)main_py, len);
	fx_text(&fx, "/app/chain/start.py", 0644, "import c0\n");
	fx_finish(&fx);
	if (!fx.m) {
		fx_release(&fx);
		return;
	}
	{
		const char *const argv[] = { "python3.11", "/app/many.py",
					     NULL };
		const char *const env[] = { "PATH=/usr/bin", NULL };
		struct run_opts ro = { .argv = argv, .env = env };

		s = run(&fx, &r, &ro);
		if (s) {
			const struct startset_stats *st = startset_stats(s);

			CHECK(st->files == STARTSET_PY_MAX_FILES &&
				      rec_fetched(&r) == STARTSET_PY_MAX_FILES &&
				      st->skipped > 0,
			      "many: %u files, %u fetched, %u skipped",
			      st->files, rec_fetched(&r), st->skipped);
			CHECK(lvl(&r, "/app/m0.py") && !lvl(&r, "/app/m1099.py"),
			      "the first imports are in, the last not");
			check_stats(&fx, &r, s, "many");
			startset_free(s);
			rec_release(&r);
		}
	}
	{
		/* the script is at depth 1, c<i> at i + 2: the 24th level
		 * is the last */
		const char *const argv[] = { "/usr/bin/python3.11",
					     "/app/chain/start.py", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(&fx, &r, &ro);
		if (s) {
			const struct startset_stats *st = startset_stats(s);

			CHECK(lvl(&r, "/app/chain/c21.py") &&
				      lvl(&r, "/app/chain/c22.py") &&
				      !lvl(&r, "/app/chain/c23.py"),
			      "depth: c21 %u c22 %u c23 %u",
			      lvl(&r, "/app/chain/c21.py"),
			      lvl(&r, "/app/chain/c22.py"),
			      lvl(&r, "/app/chain/c23.py"));
			CHECK(st->skipped == 1, "depth: skipped %u",
			      st->skipped);
			check_stats(&fx, &r, s, "depth");
			startset_free(s);
			rec_release(&r);
		}
	}
	fx_release(&fx);
}

int main(int argc, char **argv)
{
	struct fx fx;

	test_limits();
	if (!pyhost_info(argc > 1 ? argv[1] : NULL, &host)) {
		printf("the cases with compiled modules skipped\n");
	} else {
		uint64_t all;

		minor = host.minor;
		snprintf(tag, sizeof(tag), "%s", host.tag);
		if (build_py(&fx)) {
			all = test_main(&fx);
			test_modes(&fx);
			test_order(&fx);
			if (all)
				test_cut(&fx, all);
		}
		fx_release(&fx);
	}
	if (failures) {
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("ok (%d checks)\n", checks);
	return 0;
}
