/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/startset over models built with the builder: a merged-usr tree (/bin,
 * /lib, /lib64 are symlinks into /usr) of synthetic ELF programs and
 * libraries (tests/unit/elfgen.h), scripts and data files, served by an io
 * whose read() copies from memory and whose fetch() records the level
 * (fetch call) of each inode (tests/unit/startset-fx.h, shared with
 * test-startset-py.c, the Python programs' cases).  Checks the program found through PATH, a
 * relative path under WorkingDir and symlinks; the loader, the DT_NEEDED
 * libraries (run path with $ORIGIN, the triplet and plain directories)
 * and /etc/ld.so.cache a level after the ELF that needs them; scripts'
 * interpreters, also behind /usr/bin/env; argument files; the byte budget
 * and STARTSET_MAX_FILES; the level limit and stop; startset_opened; the
 * mark bitmap (exactly the fetched files, set before each fetch); that no
 * file is read before it is fetched; startset_resolve.  Then the same on
 * this host's own /bin/ls and python3 with the libraries they load.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/elf.h"
#include "fs/startset.h"

#define CHECK_WITH_MESSAGE
#include "check.h"
#include "elfgen.h"

#include "startset-fx.h"

/* ---- the synthetic tree -------------------------------------------------- */

#define LD "/lib64/ld-linux-x86-64.so.2"
#define LD_FILE "/usr/lib64/ld-linux-x86-64.so.2" /* LD without links */
#define TRIPLET_DIR "/usr/lib/x86_64-linux-gnu"

static void build_tree(struct fx *fx)
{
	static const char *const app_needs[] = { "libfoo.so.1", "libc.so.6",
						 "libmissing.so.9", NULL };
	static const char *const foo_needs[] = { "libbar.so.2", "libc.so.6",
						 NULL };
	static const char *const c_needs[] = { "ld-linux-x86-64.so.2", NULL };
	static const char *const c_only[] = { "libc.so.6", NULL };
	static const char *const py_needs[] = { "libpy.so.1", "libc.so.6",
						NULL };
	static const char *const plugin_needs[] = { "libbar.so.2",
						    "libextra.so.1",
						    "libc.so.6", NULL };
	static const char *const extra_needs[] = { "libextra2.so.1", NULL };
	static const char *const chain0[] = { "libchain1.so", NULL };
	char bad[100], path[64], next[64];
	uint8_t *p;

	fx_init(fx);
	/* merged /usr */
	fx_link(fx, "/bin", "usr/bin");
	fx_link(fx, "/lib", "usr/lib");
	fx_link(fx, "/lib64", "usr/lib64");
	fx_dir(fx, "/usr/local/sbin");
	fx_dir(fx, "/etc");
	fx_elf(fx, "/usr/lib64/ld-linux-x86-64.so.2", NULL, NULL, NULL, 8192);
	fx_elf(fx, TRIPLET_DIR "/libc.so.6", NULL, c_needs, NULL,
	       CHUNK + 5000);
	/* the run path's libfoo wins over this one */
	fx_elf(fx, TRIPLET_DIR "/libfoo.so.1", NULL, c_only, NULL, 0);
	fx_elf(fx, "/usr/lib/app/libfoo.so.1", NULL, foo_needs, NULL, 4096);
	fx_elf(fx, "/usr/local/lib/libbar.so.2", NULL, NULL, NULL, 3000);
	fx_elf(fx, TRIPLET_DIR "/libpy.so.1", NULL, c_only, NULL, 0);
	fx_elf(fx, TRIPLET_DIR "/libplugin.so", NULL, plugin_needs, NULL, 0);
	fx_elf(fx, TRIPLET_DIR "/libextra.so.1", NULL, extra_needs, NULL, 0);
	fx_elf(fx, TRIPLET_DIR "/libextra2.so.1", NULL, NULL, NULL, 0);
	fx_text(fx, "/etc/ld.so.cache", 0644, "glibc-ld.so.cache1.1");
	fx_elf(fx, "/usr/bin/app", LD, app_needs, "$ORIGIN/../lib/app", 4000);
	fx_elf(fx, "/usr/bin/sh", LD, c_only, NULL, 0);
	fx_elf(fx, "/usr/bin/env", LD, c_only, NULL, 0);
	fx_elf(fx, "/usr/bin/python3.11", LD, py_needs, NULL, 0);
	fx_link(fx, "/usr/bin/python3", "python3.11");
	/* earlier in the default PATH, but not executable */
	fx_text(fx, "/usr/local/bin/app", 0644, "not a program\n");
	fx_link(fx, "/usr/local/bin/tool", "/app/run.sh");
	fx_text(fx, "/app/run.sh", 0755, "#!/bin/sh\nexec app \"$@\"\n");
	fx_text(fx, "/app/main.py", 0755,
		"#!/usr/bin/env python3\nprint('hi')\n");
	fx_text(fx, "/app/opts.py", 0755,
		"#!/usr/bin/env -S LANG=C python3 -u\nprint('hi')\n");
	fx_text(fx, "/app/conf.yaml", 0644, "port: 80\n");
	/* larger than STARTSET_ARG_MAX_BYTES: no data, never read */
	fx_file(fx, "/app/huge.dat", 0644, NULL, STARTSET_ARG_MAX_BYTES + 1);
	/* ELF magic, an unknown class */
	memset(bad, 'x', sizeof(bad));
	memcpy(bad, "\177ELF\007\001\001", 7);
	p = lp_xmalloc(sizeof(bad));
	memcpy(p, bad, sizeof(bad));
	fx_file(fx, "/app/bad.so", 0755, p, sizeof(bad));
	fx_elf(fx, "/app/static", NULL, NULL, NULL, 0);
	/* reads of it fail */
	fx_file(fx, "/app/unreadable", 0755, NULL, 100);
	/* a library chain deeper than the levels startset_run fetches */
	fx_elf(fx, "/app/chain", LD, chain0, NULL, 0);
	for (int i = 1; i <= 10; i++) {
		const char *needs[] = { next, NULL };

		snprintf(path, sizeof(path), "/usr/local/lib/libchain%d.so", i);
		snprintf(next, sizeof(next), "libchain%d.so", i + 1);
		fx_elf(fx, path, NULL, i < 10 ? needs : NULL, NULL, 0);
	}
	/* loops, a file, a long chain of links */
	fx_link(fx, "/loop/a", "b");
	fx_link(fx, "/loop/b", "a");
	fx_link(fx, "/loop/self", "/loop/self");
	fx_text(fx, "/data/f", 0644, "data\n");
	for (int i = 0; i <= 40; i++) {
		snprintf(path, sizeof(path), "/chain/l%d", i);
		snprintf(next, sizeof(next), "l%d", i + 1);
		fx_link(fx, path, i < 40 ? next : "/data/f");
	}
	fx_finish(fx);
}

/* ---- the cases ----------------------------------------------------------- */

static void test_resolve(struct fx *fx)
{
	const struct model *m = fx->m;
	uint32_t usr = ino_of(fx, "/usr"), usrlib = ino_of(fx, "/usr/lib");
	uint32_t f = ino_of(fx, "/data/f");

	CHECK(startset_resolve(m, "/", 0) == MODEL_ROOT_INO, "root");
	CHECK(startset_resolve(m, "/..", 0) == MODEL_ROOT_INO, "/..");
	CHECK(startset_resolve(m, "/../usr/./lib/", 0) == usrlib,
	      "/../usr/./lib/");
	CHECK(startset_resolve(m, "/usr/bin/../lib/app/libfoo.so.1", 0) ==
		      ino_of(fx, "/usr/lib/app/libfoo.so.1"),
	      "..");
	/* relative symlinks: into /usr, and one in the same directory */
	CHECK(startset_resolve(m, "/lib/x86_64-linux-gnu/libc.so.6", 0) ==
		      ino_of(fx, TRIPLET_DIR "/libc.so.6"),
	      "/lib -> usr/lib");
	CHECK(startset_resolve(m, LD, 0) ==
		      ino_of(fx, "/usr/lib64/ld-linux-x86-64.so.2"),
	      "/lib64 -> usr/lib64");
	CHECK(startset_resolve(m, "/usr/bin/python3", 0) ==
		      ino_of(fx, "/usr/bin/python3.11"),
	      "python3 -> python3.11");
	CHECK(startset_resolve(m, "/bin/python3", 0) ==
		      ino_of(fx, "/usr/bin/python3.11"),
	      "two links");
	/* an absolute symlink */
	CHECK(startset_resolve(m, "/usr/local/bin/tool", 0) ==
		      ino_of(fx, "/app/run.sh"),
	      "tool -> /app/run.sh");
	/* ".." after a symlinked directory is the target's parent */
	CHECK(startset_resolve(m, "/lib/../bin/sh", 0) ==
		      ino_of(fx, "/usr/bin/sh"),
	      "/lib/../bin/sh");
	/* relative to a directory, and to a bad one (the root then) */
	CHECK(startset_resolve(m, "lib/app/libfoo.so.1", usr) ==
		      ino_of(fx, "/usr/lib/app/libfoo.so.1"),
	      "relative");
	CHECK(startset_resolve(m, "../bin/sh", usrlib) ==
		      ino_of(fx, "/usr/bin/sh"),
	      "relative ..");
	CHECK(startset_resolve(m, "/usr/bin/sh", usrlib) ==
		      ino_of(fx, "/usr/bin/sh"),
	      "absolute ignores cwd");
	CHECK(startset_resolve(m, "usr", 0) == usr, "cwd 0 is the root");
	CHECK(startset_resolve(m, "usr", m->n_inodes + 5) == usr,
	      "a cwd out of range is the root");
	/* loops and too many links */
	CHECK(startset_resolve(m, "/loop/a", 0) == 0, "loop");
	CHECK(startset_resolve(m, "/loop/b/x", 0) == 0, "loop in the middle");
	CHECK(startset_resolve(m, "/loop/self", 0) == 0, "self loop");
	CHECK(startset_resolve(m, "/chain/l1", 0) == f, "40 links");
	CHECK(startset_resolve(m, "/chain/l0", 0) == 0, "41 links");
	/* a file used as a directory, missing names */
	CHECK(startset_resolve(m, "/data/f/x", 0) == 0, "file as directory");
	CHECK(startset_resolve(m, "/data/f/", 0) == 0, "file with a slash");
	CHECK(startset_resolve(m, "/data/f/..", 0) == 0, "file/..");
	CHECK(startset_resolve(m, "/usr/bin/nothing", 0) == 0, "missing");
	CHECK(startset_resolve(m, "/nothing/sh", 0) == 0, "missing dir");
	{
		char longname[NAME_MAX + 8];

		memset(longname, 'a', sizeof(longname) - 1);
		longname[0] = '/';
		longname[sizeof(longname) - 1] = '\0';
		CHECK(startset_resolve(m, longname, 0) == 0, "long name");
	}
}

/* argv[0] through PATH: the ELF, its loader and libraries a level later,
 * their libraries the level after */
static void test_path(struct fx *fx)
{
	const char *const argv[] = { "app", "--flag", "nonexistent.txt", NULL };
	struct run_opts ro = { .argv = argv };
	const struct startset_stats *st;
	struct startset *s;
	struct rec r;

	s = run(fx, &r, &ro);
	if (!s)
		return;
	st = startset_stats(s);
	CHECK(STREQ(st->program, "/usr/bin/app"), "program %s", st->program);
	CHECK(lvl(&r, "/usr/bin/app") == 1, "app %u",
	      lvl(&r, "/usr/bin/app"));
	CHECK(lvl(&r, "/usr/local/bin/app") == 0, "a file not executable");
	CHECK(lvl(&r, "/usr/lib64/ld-linux-x86-64.so.2") == 2, "loader %u",
	      lvl(&r, "/usr/lib64/ld-linux-x86-64.so.2"));
	CHECK(lvl(&r, "/usr/lib/app/libfoo.so.1") == 2,
	      "libfoo through $ORIGIN/../lib/app: %u",
	      lvl(&r, "/usr/lib/app/libfoo.so.1"));
	CHECK(lvl(&r, TRIPLET_DIR "/libfoo.so.1") == 0,
	      "the run path comes first");
	CHECK(lvl(&r, TRIPLET_DIR "/libc.so.6") == 2, "libc %u",
	      lvl(&r, TRIPLET_DIR "/libc.so.6"));
	CHECK(lvl(&r, "/etc/ld.so.cache") == 2, "ld.so.cache %u",
	      lvl(&r, "/etc/ld.so.cache"));
	CHECK(lvl(&r, "/usr/local/lib/libbar.so.2") == 3, "libbar %u",
	      lvl(&r, "/usr/local/lib/libbar.so.2"));
	CHECK(r.calls == 3 && r.call_n[0] == 1 && r.call_n[1] == 4 &&
		      r.call_n[2] == 1,
	      "%u calls of %u, %u, %u", r.calls, r.call_n[0], r.call_n[1],
	      r.call_n[2]);
	/* libmissing.so.9 is just left out */
	CHECK(rec_fetched(&r) == 6 && st->files == 6, "%u fetched, %u files",
	      rec_fetched(&r), st->files);
	CHECK(st->levels == 3 && st->skipped == 0 && st->bad == 0 &&
		      st->opened == 0,
	      "levels %u skipped %u bad %u", st->levels, st->skipped,
	      st->bad);
	CHECK(st->bytes == stored(fx, "/usr/bin/app") +
				   stored(fx, LD_FILE) +
				   stored(fx, "/usr/lib/app/libfoo.so.1") +
				   stored(fx, TRIPLET_DIR "/libc.so.6") +
				   stored(fx, "/etc/ld.so.cache") +
				   stored(fx, "/usr/local/lib/libbar.so.2"),
	      "bytes %llu", (unsigned long long)st->bytes);
	CHECK(startset_predicted(s, ino_of(fx, TRIPLET_DIR "/libc.so.6")) &&
		      !startset_predicted(s, ino_of(fx, "/data/f")) &&
		      !startset_predicted(s, fx->m->n_inodes + 1),
	      "predicted");

	/* a module opened later (dlopen): what it needs, not itself */
	{
		uint32_t plugin = ino_of(fx, TRIPLET_DIR "/libplugin.so");
		uint32_t calls = r.calls;

		r.strict = false; /* its bytes are being read: no fetch first */
		startset_opened(s, plugin, NULL);
		CHECK(r.level[plugin] == 0, "the opened file is not fetched");
		CHECK(!(r.mark[plugin / 8] & (1u << (plugin % 8))),
		      "nor marked");
		CHECK(startset_predicted(s, plugin), "but examined");
		CHECK(lvl(&r, TRIPLET_DIR "/libextra.so.1") == calls + 1,
		      "libextra %u", lvl(&r, TRIPLET_DIR "/libextra.so.1"));
		CHECK(lvl(&r, TRIPLET_DIR "/libextra2.so.1") == calls + 2,
		      "libextra2 (what libextra needs) %u",
		      lvl(&r, TRIPLET_DIR "/libextra2.so.1"));
		CHECK(r.calls == calls + 2 && r.call_n[calls] == 1 &&
			      r.call_n[calls + 1] == 1,
		      "%u calls", r.calls);
		CHECK(r.dup == 0, "libbar and libc are not fetched again");
		CHECK(rec_marks_match(&r), "marks after opened");
		CHECK(st->opened == 1 && st->files == 8, "opened %u files %u",
		      st->opened, st->files);
		/* again; a file of the set; a directory; no inode */
		calls = r.calls;
		startset_opened(s, plugin, NULL);
		startset_opened(s, ino_of(fx, TRIPLET_DIR "/libc.so.6"), NULL);
		startset_opened(s, ino_of(fx, "/usr"), NULL);
		startset_opened(s, 0, NULL);
		startset_opened(s, fx->m->n_inodes, NULL);
		CHECK(r.calls == calls && st->opened == 1,
		      "nothing more: %u calls, opened %u", r.calls,
		      st->opened);
		/* a script opened: its interpreter (sh is new here) */
		startset_opened(s, ino_of(fx, "/app/run.sh"), NULL);
		CHECK(lvl(&r, "/usr/bin/sh") == calls + 1 && st->opened == 2,
		      "sh %u", lvl(&r, "/usr/bin/sh"));
	}
	startset_free(s);
	rec_release(&r);
}

/* a relative program under WorkingDir, its argument files, a script's
 * interpreter behind /bin */
static void test_workdir(struct fx *fx)
{
	const char *const argv[] = { "./run.sh", "conf.yaml", "missing.txt",
				     "-v", "huge.dat", "", "/usr", NULL };
	const char *const env[] = { "HOME=/root", "PATH=/usr/bin", NULL };
	struct run_opts ro = { .argv = argv, .env = env, .workdir = "/app" };
	const struct startset_stats *st;
	struct startset *s;
	struct rec r;

	s = run(fx, &r, &ro);
	if (!s)
		return;
	st = startset_stats(s);
	CHECK(STREQ(st->program, "/app/run.sh"), "program %s", st->program);
	CHECK(lvl(&r, "/app/run.sh") == 1, "run.sh %u",
	      lvl(&r, "/app/run.sh"));
	CHECK(lvl(&r, "/app/conf.yaml") == 1, "an argument's file %u",
	      lvl(&r, "/app/conf.yaml"));
	CHECK(lvl(&r, "/app/huge.dat") == 0, "an argument's huge file");
	CHECK(lvl(&r, "/usr/bin/sh") == 2, "#!/bin/sh %u",
	      lvl(&r, "/usr/bin/sh"));
	CHECK(lvl(&r, TRIPLET_DIR "/libc.so.6") == 3 &&
		      lvl(&r, LD_FILE) == 3 && lvl(&r, "/etc/ld.so.cache") == 3,
	      "sh's loader and libc");
	CHECK(lvl(&r, "/usr/bin/app") == 0, "what the script runs is not "
	      "looked for");
	CHECK(rec_fetched(&r) == 6 && st->files == 6 && st->levels == 3,
	      "%u fetched, %u levels", rec_fetched(&r), st->levels);
	startset_free(s);
	rec_release(&r);

	/* without the WorkingDir, or with a file as one, ./run.sh is not
	 * found from the root: nothing at all */
	for (int i = 0; i < 3; i++) {
		static const char *const wd[] = { NULL, "/data/f", "/none" };

		ro.workdir = wd[i];
		s = run(fx, &r, &ro);
		if (!s)
			return;
		st = startset_stats(s);
		CHECK(r.calls == 0 && st->files == 0 && !st->program[0],
		      "workdir %s: %u calls, program %s", wd[i], r.calls,
		      st->program);
		startset_free(s);
		rec_release(&r);
	}

	/* a WorkingDir that is not a directory is the root */
	for (int i = 0; i < 2; i++) {
		static const char *const wd[] = { "/data/f", "/none" };
		const char *const a2[] = { "app/run.sh", NULL };
		struct run_opts r2 = { .argv = a2, .workdir = wd[i] };

		s = run(fx, &r, &r2);
		if (!s)
			return;
		CHECK(lvl(&r, "/app/run.sh") == 1, "app/run.sh in %s", wd[i]);
		startset_free(s);
		rec_release(&r);
	}

	/* PATH of the config: run.sh in /app, past a directory without it */
	{
		const char *const a2[] = { "run.sh", NULL };
		const char *const e2[] = { "PATH=/usr/lib:/app", NULL };
		struct run_opts r2 = { .argv = a2, .env = e2 };

		s = run(fx, &r, &r2);
		if (!s)
			return;
		CHECK(STREQ(startset_stats(s)->program, "/app/run.sh") &&
			      lvl(&r, "/app/run.sh") == 1,
		      "PATH=/usr/lib:/app: %s", startset_stats(s)->program);
		startset_free(s);
		rec_release(&r);
	}
}

/* symlinked programs, env and its target, a script argument */
static void test_scripts(struct fx *fx)
{
	struct startset *s;
	struct rec r;

	{
		const char *const argv[] = { "/usr/local/bin/tool", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(STREQ(startset_stats(s)->program, "/app/run.sh"),
		      "tool: %s", startset_stats(s)->program);
		CHECK(lvl(&r, "/app/run.sh") == 1 &&
			      lvl(&r, "/usr/bin/sh") == 2,
		      "tool -> run.sh -> sh");
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const argv[] = { "/app/main.py", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(lvl(&r, "/app/main.py") == 1, "main.py");
		CHECK(lvl(&r, "/usr/bin/env") == 2, "env %u",
		      lvl(&r, "/usr/bin/env"));
		CHECK(lvl(&r, "/usr/bin/python3.11") == 2,
		      "env's python3 (a symlink in PATH) %u",
		      lvl(&r, "/usr/bin/python3.11"));
		CHECK(lvl(&r, TRIPLET_DIR "/libpy.so.1") == 3 &&
			      lvl(&r, TRIPLET_DIR "/libc.so.6") == 3 &&
			      lvl(&r, LD_FILE) == 3,
		      "python's libraries");
		CHECK(rec_fetched(&r) == 7, "%u fetched", rec_fetched(&r));
		startset_free(s);
		rec_release(&r);
	}
	{
		/* env's options and assignments are not the program */
		const char *const argv[] = { "/app/opts.py", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(lvl(&r, "/usr/bin/env") == 2 &&
			      lvl(&r, "/usr/bin/python3.11") == 2,
		      "env -S LANG=C python3");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* env finds its program through the config's PATH */
		const char *const argv[] = { "/app/main.py", NULL };
		const char *const env[] = { "PATH=/app", NULL };
		struct run_opts ro = { .argv = argv, .env = env };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(lvl(&r, "/usr/bin/env") == 2 &&
			      lvl(&r, "/usr/bin/python3.11") == 0,
		      "no python3 in PATH=/app");
		startset_free(s);
		rec_release(&r);
	}
	{
		/* an interpreter's script argument, read for its own #! */
		const char *const argv[] = { "python3", "-u", "/app/main.py",
					     NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(STREQ(startset_stats(s)->program,
			    "/usr/bin/python3.11"),
		      "program %s", startset_stats(s)->program);
		CHECK(lvl(&r, "/usr/bin/python3.11") == 1 &&
			      lvl(&r, "/app/main.py") == 1,
		      "python3 and its script");
		CHECK(lvl(&r, "/usr/bin/env") == 2 &&
			      lvl(&r, TRIPLET_DIR "/libpy.so.1") == 2,
		      "the script's env, python's libraries");
		startset_free(s);
		rec_release(&r);
	}
}

/* the budget of stored bytes */
static void test_budget(struct fx *fx)
{
	const char *const argv[] = { "app", NULL };
	uint64_t want = stored(fx, "/usr/bin/app") + stored(fx, LD_FILE) +
			stored(fx, "/etc/ld.so.cache") +
			stored(fx, "/usr/lib/app/libfoo.so.1") +
			stored(fx, "/usr/local/lib/libbar.so.2");
	struct run_opts ro = { .argv = argv, .max_bytes = want };
	const struct startset_stats *st;
	struct startset *s;
	struct rec r;

	/* libc (the largest, 2 chunks) does not fit, the others do */
	CHECK(stored(fx, TRIPLET_DIR "/libc.so.6") > CHUNK, "libc size");
	s = run(fx, &r, &ro);
	if (!s)
		return;
	st = startset_stats(s);
	CHECK(lvl(&r, TRIPLET_DIR "/libc.so.6") == 0, "libc over budget");
	CHECK(lvl(&r, "/usr/local/lib/libbar.so.2") == 3,
	      "libbar after it still fits");
	CHECK(st->skipped == 1 && st->files == 5 && st->bytes == want,
	      "skipped %u files %u bytes %llu of %llu", st->skipped,
	      st->files, (unsigned long long)st->bytes,
	      (unsigned long long)want);
	CHECK(rec_fetched(&r) == 5, "%u fetched", rec_fetched(&r));
	startset_free(s);
	rec_release(&r);

	/* one byte less: libbar (the last) is left out too */
	ro.max_bytes = want - 1;
	s = run(fx, &r, &ro);
	if (!s)
		return;
	st = startset_stats(s);
	CHECK(st->skipped == 2 && st->files == 4 &&
		      lvl(&r, "/usr/local/lib/libbar.so.2") == 0,
	      "skipped %u files %u", st->skipped, st->files);
	startset_free(s);
	rec_release(&r);

	/* not even the program */
	ro.max_bytes = 100;
	s = run(fx, &r, &ro);
	if (!s)
		return;
	st = startset_stats(s);
	CHECK(r.calls == 0 && st->files == 0 && st->skipped == 1 &&
		      st->levels == 0,
	      "calls %u files %u skipped %u", r.calls, st->files,
	      st->skipped);
	startset_free(s);
	rec_release(&r);
}

/* bad and static ELF files, the level limit, stop, no program */
static void test_edges(struct fx *fx)
{
	struct startset *s;
	struct rec r;

	{
		const char *const argv[] = { "/app/bad.so", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(startset_stats(s)->bad == 1 && r.calls == 1 &&
			      lvl(&r, "/app/bad.so") == 1,
		      "bad ELF: bad %u calls %u", startset_stats(s)->bad,
		      r.calls);
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const argv[] = { "/app/static", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(r.calls == 1 && lvl(&r, "/etc/ld.so.cache") == 0,
		      "static: %u calls, no ld.so.cache", r.calls);
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const argv[] = { "/app/unreadable", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(r.calls == 1 && startset_stats(s)->files == 1 &&
			      startset_stats(s)->bad == 0 && r.reads == 1,
		      "unreadable: %u calls %u reads", r.calls, r.reads);
		startset_free(s);
		rec_release(&r);
	}
	{
		/* chain -> libchain1 -> ... -> libchain10: 8 fetch levels */
		const char *const argv[] = { "/app/chain", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(r.calls == 8 && startset_stats(s)->levels == 8,
		      "chain: %u calls", r.calls);
		CHECK(lvl(&r, "/usr/local/lib/libchain7.so") == 8 &&
			      lvl(&r, "/usr/local/lib/libchain8.so") == 0,
		      "the 8th level is the last");
		/* what was found but not fetched is not counted, marked
		 * (run() checks) nor predicted */
		CHECK(startset_stats(s)->files == 10 && rec_fetched(&r) == 10,
		      "chain: %u files, %u fetched", startset_stats(s)->files,
		      rec_fetched(&r));
		CHECK(!startset_predicted(s, ino_of(fx, "/usr/local/lib/"
						    "libchain8.so")),
		      "libchain8 is not predicted");
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const argv[] = { "app", NULL };
		bool stop = true;
		struct run_opts ro = { .argv = argv, .stop = &stop };

		s = run(fx, &r, &ro);
		if (!s)
			return;
		/* nothing fetched, so nothing counted or marked */
		CHECK(r.calls == 0 && startset_stats(s)->levels == 0 &&
			      startset_stats(s)->files == 0,
		      "stopped: %u calls, %u files", r.calls,
		      startset_stats(s)->files);
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const argv[] = { "nosuchprogram", "/app/conf.yaml",
					     NULL };
		struct run_opts ro = { .argv = argv };

		/* the program is not found: its argument's file still is */
		s = run(fx, &r, &ro);
		if (!s)
			return;
		CHECK(!startset_stats(s)->program[0] && r.calls == 1 &&
			      lvl(&r, "/app/conf.yaml") == 1,
		      "no program: %u calls", r.calls);
		startset_free(s);
		rec_release(&r);
	}
	{
		const char *const empty[] = { "", NULL };
		struct startset_opts o = { .argv = empty, .argc = 0 };
		struct startset_io io = { .read = rec_read,
					  .fetch = rec_fetch };
		struct startset *bad = NULL;
		struct lp_err err = { 0 };

		CHECK(startset_new(fx->m, &o, &io, &bad, &err) == -EINVAL &&
			      err.msg[0] && !bad,
		      "no argv");
		o.argc = 1;
		lp_err_clear(&err);
		CHECK(startset_new(fx->m, &o, &io, &bad, &err) == -EINVAL &&
			      err.msg[0] && !bad,
		      "empty argv[0]");
		startset_free(NULL);
	}
}

/* STARTSET_MAX_FILES: a program needing 128 libraries that need one
 * each, 257 files */
static void test_max_files(void)
{
	static char names[2 * ELF_MAX_NEEDED][32];
	const char *needed[ELF_MAX_NEEDED + 1] = { 0 };
	char path[64];
	struct fx fx;
	struct rec r;
	struct startset *s;

	fx_init(&fx);
	for (int i = 0; i < ELF_MAX_NEEDED; i++) {
		const char *one[] = { names[ELF_MAX_NEEDED + i], NULL };

		snprintf(names[i], sizeof(names[i]), "liba%d.so", i);
		snprintf(names[ELF_MAX_NEEDED + i], sizeof(names[0]),
			 "libb%d.so", i);
		needed[i] = names[i];
		snprintf(path, sizeof(path), "/usr/lib/%s", names[i]);
		fx_elf(&fx, path, NULL, one, NULL, 0);
		snprintf(path, sizeof(path), "/usr/lib/%s",
			 names[ELF_MAX_NEEDED + i]);
		fx_elf(&fx, path, NULL, NULL, NULL, 0);
	}
	fx_elf(&fx, "/usr/bin/many", NULL, needed, NULL, 0);
	fx_finish(&fx);
	if (fx.m) {
		const char *const argv[] = { "many", NULL };
		struct run_opts ro = { .argv = argv };

		s = run(&fx, &r, &ro);
		if (s) {
			const struct startset_stats *st = startset_stats(s);

			CHECK(st->files == STARTSET_MAX_FILES &&
				      st->skipped == 1 &&
				      rec_fetched(&r) == STARTSET_MAX_FILES,
			      "%u files, %u skipped, %u fetched", st->files,
			      st->skipped, rec_fetched(&r));
			CHECK(lvl(&r, "/usr/lib/libb126.so") == 3 &&
				      lvl(&r, "/usr/lib/libb127.so") == 0,
			      "the last one is left out");
			startset_free(s);
			rec_release(&r);
		}
	}
	fx_release(&fx);
}

/* ---- this host's programs and libraries ---------------------------------- */


/* snprintf that says when the path did not fit (a test failure) */
static void pathf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	CHECK(n >= 0 && (size_t)n < size, "path %s too long", buf);
}

/* where the host keeps library name: a path or "" */
static void host_lib(const char *triplet, const char *name, char *out,
		     size_t size)
{
	const char *const dirs[] = { "/lib/", "/usr/lib/", "/lib64/",
				     "/usr/lib64/", "/lib/", "/usr/lib/" };
	struct stat st;

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		pathf(out, size, "%s%s%s%s", dirs[i], i < 2 ? triplet : "",
			 i < 2 ? "/" : "", name);
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
			return;
	}
	out[0] = '\0';
}

struct hostlib {
	char name[256];
	uint32_t depth; /* 1: needed by the program */
};

/*
 * Program prog of this host at /usr/bin/<name> of a merged-usr model, its
 * loader, every library it loads (by DT_NEEDED, through the host's
 * directories) at /usr/lib/<triplet>/<name> except the one named drop,
 * and /etc/ld.so.cache.  Returns false (skip) when the host has no such
 * dynamic program.
 */
static bool host_case(const char *prog, const char *drop)
{
	static struct hostlib libs[128];
	unsigned n_libs = 0;
	char real[PATH_MAX], path[PATH_MAX + 300], ldpath[PATH_MAX];
	char dropped[256] = "";
	struct elf_deps d = { 0 };
	struct lp_err err = { 0 };
	const char *triplet, *base;
	uint8_t *data;
	size_t len;
	struct fx fx;
	struct rec r;
	struct startset *s;

	if (!realpath(prog, real) || !(data = check_slurp(real, &len)))
		return false;
	if (elf_deps_parse(data, len, &d, &err) < 0 || !d.interp ||
	    !d.n_needed || !(triplet = elf_machine_triplet(d.machine)) ||
	    strncmp(d.interp, "/lib", 4)) {
		elf_deps_release(&d);
		free(data);
		return false;
	}
	fx_init(&fx);
	fx_link(&fx, "/bin", "usr/bin");
	fx_link(&fx, "/lib", "usr/lib");
	fx_link(&fx, "/lib64", "usr/lib64");
	base = strrchr(real, '/') + 1;
	pathf(path, sizeof(path), "/usr/bin/%s", base);
	fx_file(&fx, path, 0755, data, len);
	/* the loader in the triplet directory, its PT_INTERP name a link
	 * to it (as Debian has it) */
	pathf(ldpath, sizeof(ldpath), "/usr/lib/%s/%s", triplet,
		 strrchr(d.interp, '/') + 1);
	data = check_slurp(d.interp, &len);
	if (!data) {
		elf_deps_release(&d);
		fx_release(&fx);
		return false;
	}
	fx_file(&fx, ldpath, 0755, data, len);
	pathf(path, sizeof(path), "/usr%s", d.interp);
	if (strcmp(path, ldpath))
		fx_link(&fx, path, ldpath);
	/* the libraries, breadth first */
	for (uint32_t i = 0; i < d.n_needed && n_libs < ARRAY_SIZE(libs); i++)
		if (!drop || strncmp(d.needed[i], drop, strlen(drop))) {
			snprintf(libs[n_libs].name, sizeof(libs[0].name), "%s",
				 d.needed[i]);
			libs[n_libs++].depth = 1;
		} else if (!dropped[0]) {
			snprintf(dropped, sizeof(dropped), "%s", d.needed[i]);
		}
	for (unsigned k = 0; k < n_libs; k++) {
		char host[PATH_MAX];
		struct elf_deps ld = { 0 };

		if (!strcmp(libs[k].name, strrchr(ldpath, '/') + 1))
			continue; /* the loader, there already */
		host_lib(triplet, libs[k].name, host, sizeof(host));
		if (!host[0] || !(data = check_slurp(host, &len)))
			continue;
		if (elf_deps_parse(data, len, &ld, &err) == 0) {
			for (uint32_t i = 0; i < ld.n_needed; i++) {
				bool have = !strcmp(ld.needed[i], dropped);

				for (unsigned j = 0; j < n_libs && !have; j++)
					have = !strcmp(libs[j].name,
						       ld.needed[i]);
				if (!have && n_libs < ARRAY_SIZE(libs)) {
					snprintf(libs[n_libs].name,
						 sizeof(libs[0].name), "%s",
						 ld.needed[i]);
					libs[n_libs++].depth =
						libs[k].depth + 1;
				}
			}
			elf_deps_release(&ld);
		}
		pathf(path, sizeof(path), "/usr/lib/%s/%s", triplet,
			 libs[k].name);
		fx_file(&fx, path, 0755, data, len);
	}
	fx_text(&fx, "/etc/ld.so.cache", 0644, "glibc-ld.so.cache1.1");
	fx_finish(&fx);

	{
		const char *const argv[] = { base, "--version", NULL };
		struct run_opts ro = { .argv = argv };
		uint32_t expect = 3; /* program, loader, ld.so.cache */

		s = run(&fx, &r, &ro);
		if (!s)
			goto out;
		pathf(path, sizeof(path), "/usr/bin/%s", base);
		CHECK(!strcmp(startset_stats(s)->program, path), "%s: %s", prog,
		      startset_stats(s)->program);
		CHECK(lvl(&r, path) == 1, "%s: level %u", path, lvl(&r, path));
		CHECK(lvl(&r, ldpath) == 2, "%s: loader %s level %u", prog,
		      ldpath, lvl(&r, ldpath));
		CHECK(lvl(&r, "/etc/ld.so.cache") == 2, "%s: ld.so.cache",
		      prog);
		for (unsigned k = 0; k < n_libs; k++) {
			uint32_t ino, l;

			pathf(path, sizeof(path), "/usr/lib/%s/%s",
				 triplet, libs[k].name);
			ino = model_lookup_path(fx.m, path);
			if (!ino || !strcmp(path, ldpath))
				continue; /* not on the host; the loader */
			expect++;
			l = r.level[ino];
			/* needed by the program: the level after it; by a
			 * library only: later */
			CHECK(libs[k].depth == 1 ? l == 2 : l > 2,
			      "%s: %s (depth %u) at level %u", prog,
			      libs[k].name, libs[k].depth, l);
		}
		if (dropped[0]) {
			pathf(path, sizeof(path), "/usr/lib/%s/%s", triplet,
				 dropped);
			CHECK(!model_lookup_path(fx.m, path),
			      "%s not in the model", dropped);
		}
		CHECK(rec_fetched(&r) == expect &&
			      startset_stats(s)->files == expect &&
			      startset_stats(s)->bad == 0,
		      "%s: %u fetched of %u", prog, rec_fetched(&r), expect);
		printf("%s: %u start files in %u levels%s%s\n", prog, expect,
		       r.calls, dropped[0] ? ", left out " : "", dropped);
		startset_free(s);
		rec_release(&r);
	}
out:
	elf_deps_release(&d);
	fx_release(&fx);
	return true;
}

int main(void)
{
	struct fx fx;
	unsigned host = 0;

	build_tree(&fx);
	if (fx.m) {
		test_resolve(&fx);
		test_path(&fx);
		test_workdir(&fx);
		test_scripts(&fx);
		test_budget(&fx);
		test_edges(&fx);
	}
	fx_release(&fx);
	test_max_files();
	host += host_case("/bin/ls", NULL);
	/* python3 without one of its libraries (not libc): just skipped */
	host += host_case("/usr/bin/python3", "libz.so");
	if (!host)
		printf("no dynamic /bin/ls or python3 on this host\n");
	if (failures) {
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("ok (%d checks)\n", checks);
	return 0;
}
