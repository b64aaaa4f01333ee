/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/elf: the dependencies of the ELF files of this host (the test's own
 * loaded objects, ls, sh, python3) against what readelf prints; synthetic
 * files of each class and byte order (tests/unit/elfgen.h); one malformed
 * field at a time, each an error with a message; every truncation of a
 * valid file; a failing or short read callback; text that is not ELF.
 */
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fs/elf.h"

#define CHECK_WITH_MESSAGE
#include "check.h"
#include "elfgen.h"

#define STREQ(a, b) ((a) && (b) && !strcmp((a), (b)))

/* parses a copy of exactly len bytes, so ASan sees a read past the end */
static int parse(const void *data, size_t len, struct elf_deps *d,
		 struct lp_err *err)
{
	void *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, data, len);
	memset(d, 0, sizeof(*d));
	r = elf_deps_parse(copy, len, d, err);
	free(copy);
	return r;
}

/* ---- synthetic files ----------------------------------------------------- */

static void test_synthetic(void)
{
	static const char *const need[] = { "libfoo.so.1", "libc.so.6" };

	for (int v = 0; v < 8; v++) {
		struct elfgen g = { .elf64 = v & 1, .be = v & 2,
				    .at_zero = v & 4,
				    .machine = (v & 2) ? 20 : 62,
				    .interp = "/lib/ld.so.1",
				    .needed = need, .n_needed = 2,
				    .runpath = "$ORIGIN/../lib:/opt/lib",
				    .rpath = v & 4 };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };
		int r;

		elfgen_build(&g, &o);
		r = parse(o.data, o.len, &d, &err);
		CHECK(r == 0, "variant %d: %d %s", v, r, err.msg);
		CHECK(STREQ(d.interp, "/lib/ld.so.1"), "variant %d: %s", v,
		      d.interp);
		CHECK(d.n_needed == 2, "variant %d: %u", v, d.n_needed);
		if (d.n_needed == 2) {
			CHECK(STREQ(d.needed[0], "libfoo.so.1"), "%s",
			      d.needed[0]);
			CHECK(STREQ(d.needed[1], "libc.so.6"), "%s",
			      d.needed[1]);
		}
		CHECK(STREQ(d.runpath, "$ORIGIN/../lib:/opt/lib"),
		      "variant %d: %s", v, d.runpath);
		CHECK(d.machine == g.machine, "variant %d: %u", v, d.machine);
		CHECK(d.elf64 == g.elf64, "variant %d", v);
		elf_deps_release(&d);
		CHECK(!d.interp && !d.needed && !d.n_needed && !d.runpath,
		      "release clears");
		elf_deps_release(&d); /* twice is harmless */
		free(o.data);
	}
	elf_deps_release(NULL);

	/* what follows DT_NULL is not read */
	{
		static const char *const n1[] = { "libone.so", NULL };
		struct elfgen g = { .elf64 = true, .machine = 62,
				    .needed = n1, .n_needed = 1,
				    .trailing = 3 };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };

		elfgen_build(&g, &o);
		CHECK(elfgen_dyn_val(&g, &o, ELFGEN_DT_NEEDED, 3), "trailing");
		CHECK(parse(o.data, o.len, &d, &err) == 0, "%s", err.msg);
		CHECK(d.n_needed == 1, "%u needed past DT_NULL", d.n_needed);
		elf_deps_release(&d);
		free(o.data);
	}

	/* DT_RUNPATH wins over DT_RPATH, whichever comes first */
	{
		static const char *const n2[] = { "libx.so", "/run/path" };
		struct elfgen g = { .elf64 = true, .machine = 62,
				    .needed = n2, .n_needed = 2,
				    .runpath = "/r/path", .rpath = true };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };
		size_t at;

		elfgen_build(&g, &o);
		/* the second DT_NEEDED becomes a DT_RUNPATH */
		at = elfgen_dyn_val(&g, &o, ELFGEN_DT_NEEDED, 1);
		CHECK(at, "second DT_NEEDED");
		elfgen_put(o.data + at - 8, ELFGEN_DT_RUNPATH, 8, false);
		CHECK(parse(o.data, o.len, &d, &err) == 0, "%s", err.msg);
		CHECK(d.n_needed == 1 && STREQ(d.needed[0], "libx.so"),
		      "%u", d.n_needed);
		CHECK(STREQ(d.runpath, "/run/path"), "%s", d.runpath);
		CHECK(!d.interp, "no PT_INTERP");
		elf_deps_release(&d);
		free(o.data);
	}

	/* a library with nothing needed; a static file (no PT_DYNAMIC); no
	 * program headers at all */
	{
		struct elfgen g = { .elf64 = true, .machine = 183 };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };
		size_t at;

		elfgen_build(&g, &o);
		CHECK(parse(o.data, o.len, &d, &err) == 0, "%s", err.msg);
		CHECK(!d.interp && !d.n_needed && !d.runpath && d.elf64 &&
			      d.machine == 183,
		      "empty library");
		elf_deps_release(&d);
		/* nothing needed: no string table needed either */
		at = elfgen_dyn_val(&g, &o, ELFGEN_DT_STRTAB, 0);
		elfgen_put(o.data + at - 8, 0x6ffffeff, 8, false);
		elfgen_dyn_set(&g, &o, ELFGEN_DT_STRSZ, 0, 0);
		CHECK(parse(o.data, o.len, &d, &err) == 0, "no strtab: %s",
		      err.msg);
		elf_deps_release(&d);
		/* PT_DYNAMIC becomes PT_NOTE */
		elfgen_put(o.data + o.phoff + o.phentsize, 4, 4, false);
		CHECK(parse(o.data, o.len, &d, &err) == 0, "%s", err.msg);
		CHECK(!d.n_needed && !d.runpath, "static");
		elf_deps_release(&d);
		elfgen_put(o.data + 56, 0, 2, false); /* e_phnum = 0 */
		CHECK(parse(o.data, o.len, &d, &err) == 0, "%s", err.msg);
		CHECK(!d.interp && !d.n_needed && d.machine == 183, "no phdrs");
		elf_deps_release(&d);
		free(o.data);
	}
}

/* ---- malformed files ----------------------------------------------------- */

enum corrupt {
	C_TRUNC_EHDR64,	  /* 64-bit header cut at 60 bytes */
	C_TRUNC_SHORT,	  /* cut at 40 bytes, the magic intact */
	C_BAD_CLASS,
	C_BAD_DATA,
	C_PHDR_PAST_EOF,
	C_PHDR_OVERFLOW,
	C_HUGE_PHNUM,
	C_SMALL_PHENT,
	C_INTERP_NO_NUL,
	C_INTERP_PAST_EOF,
	C_INTERP_EMPTY,
	C_INTERP_OVERFLOW,
	C_NEEDED_OUTSIDE,
	C_NEEDED_HUGE,
	C_NEEDED_EMPTY,
	C_NEEDED_UNTERMINATED,
	C_STRTAB_UNLOADED,
	C_STRTAB_LOAD_SHORT,
	C_STRSZ_ZERO,
	C_NO_STRTAB,
	C_DYN_PAST_EOF,
	C_RUNPATH_OUTSIDE,
	C_COUNT
};

static const char *const corrupt_names[C_COUNT] = {
	"truncated 64-bit header", "header cut at 40 bytes",
	"unknown class", "unknown byte order",
	"program headers past EOF", "program headers offset overflows",
	"huge phnum", "phentsize too small",
	"PT_INTERP without NUL", "PT_INTERP past EOF",
	"PT_INTERP empty", "PT_INTERP offset overflows",
	"DT_NEEDED outside the string table", "DT_NEEDED offset huge",
	"DT_NEEDED names an empty string", "DT_NEEDED name not terminated",
	"STRTAB address in no PT_LOAD", "PT_LOAD ends before STRTAB",
	"DT_STRSZ zero", "no DT_STRTAB", "PT_DYNAMIC past EOF",
	"run path outside the string table",
};

/* the offset of field at byte off of program header i */
static size_t ph_at(const struct elfgen_out *o, size_t i, size_t off)
{
	return o->phoff + i * o->phentsize + off;
}

static void corrupt(const struct elfgen *g, struct elfgen_out *o,
		    enum corrupt c)
{
	bool be = g->be, e64 = g->elf64;
	unsigned w = e64 ? 8 : 4;
	/* phdr 0 is PT_INTERP, 1 PT_LOAD, 2 PT_DYNAMIC */
	size_t p_off = e64 ? 8 : 4, p_vaddr = e64 ? 16 : 8,
	       p_filesz = e64 ? 32 : 16;
	size_t e_phoff = e64 ? 32 : 28, e_phentsize = e64 ? 54 : 42,
	       e_phnum = e64 ? 56 : 44;

	switch (c) {
	case C_TRUNC_EHDR64:
		o->len = 60;
		break;
	case C_TRUNC_SHORT:
		o->len = 40;
		break;
	case C_BAD_CLASS:
		o->data[4] = 3;
		break;
	case C_BAD_DATA:
		o->data[5] = 0;
		break;
	case C_PHDR_PAST_EOF:
		elfgen_put(o->data + e_phoff, o->len - 8, w, be);
		break;
	case C_PHDR_OVERFLOW:
		elfgen_put(o->data + e_phoff,
			   e64 ? UINT64_MAX - 16 : UINT32_MAX - 16, w, be);
		break;
	case C_HUGE_PHNUM:
		elfgen_put(o->data + e_phnum, 0xffff, 2, be);
		break;
	case C_SMALL_PHENT:
		elfgen_put(o->data + e_phentsize, 8, 2, be);
		break;
	case C_INTERP_NO_NUL:
		o->data[o->interp_off + o->interp_len - 1] = 'x';
		break;
	case C_INTERP_PAST_EOF:
		elfgen_put(o->data + ph_at(o, 0, p_off), o->len + 100, w, be);
		break;
	case C_INTERP_EMPTY:
		elfgen_put(o->data + ph_at(o, 0, p_filesz), 0, w, be);
		break;
	case C_INTERP_OVERFLOW:
		elfgen_put(o->data + ph_at(o, 0, p_filesz),
			   e64 ? UINT64_MAX : UINT32_MAX, w, be);
		if (!e64) /* no 32-bit sum overflows 64 bits: past EOF then */
			elfgen_put(o->data + ph_at(o, 0, p_off), UINT32_MAX,
				   w, be);
		break;
	case C_NEEDED_OUTSIDE:
		elfgen_dyn_set(g, o, ELFGEN_DT_NEEDED, 0, o->str_len + 3);
		break;
	case C_NEEDED_HUGE:
		/* 64-bit: the table's offset plus this wraps around to the
		 * interpreter's path, a good string */
		elfgen_dyn_set(g, o, ELFGEN_DT_NEEDED, 1,
			       e64 ? 0 - (uint64_t)o->str_off + o->interp_off
				   : UINT32_MAX);
		break;
	case C_NEEDED_EMPTY:
		elfgen_dyn_set(g, o, ELFGEN_DT_NEEDED, 0, 0);
		break;
	case C_NEEDED_UNTERMINATED:
		/* the table ends inside the first name */
		elfgen_dyn_set(g, o, ELFGEN_DT_STRSZ, 0, 4);
		break;
	case C_STRTAB_UNLOADED:
		elfgen_dyn_set(g, o, ELFGEN_DT_STRTAB, 0,
			       elfgen_vbase(g) + o->len + 0x1000);
		break;
	case C_STRTAB_LOAD_SHORT:
		elfgen_put(o->data + ph_at(o, 1, p_filesz), o->str_off, w, be);
		break;
	case C_STRSZ_ZERO:
		elfgen_dyn_set(g, o, ELFGEN_DT_STRSZ, 0, 0);
		break;
	case C_NO_STRTAB: {
		size_t at = elfgen_dyn_val(g, o, ELFGEN_DT_STRTAB, 0);

		elfgen_put(o->data + at - w, 0x6ffffeff, w, be);
		/* names at 1: "ELF..." if the table were taken to be at 0 */
		elfgen_dyn_set(g, o, ELFGEN_DT_NEEDED, 0, 1);
		elfgen_dyn_set(g, o, ELFGEN_DT_NEEDED, 1, 1);
		elfgen_dyn_set(g, o, ELFGEN_DT_RUNPATH, 0, 1);
		break;
	}
	case C_DYN_PAST_EOF:
		elfgen_put(o->data + ph_at(o, 2, p_off), o->len, w, be);
		(void)p_vaddr;
		break;
	case C_RUNPATH_OUTSIDE:
		elfgen_dyn_set(g, o, ELFGEN_DT_RUNPATH, 0, o->str_len);
		break;
	case C_COUNT:
		break;
	}
}

static void test_malformed(void)
{
	static const char *const need[] = { "libfoo.so.1", "libc.so.6" };

	for (int v = 0; v < 8; v++) {
		for (int c = 0; c < C_COUNT; c++) {
			struct elfgen g = { .elf64 = v & 1, .be = v & 2,
					    .at_zero = v & 4, .machine = 62,
					    .interp = "/lib/ld.so",
					    .needed = need, .n_needed = 2,
					    .runpath = "/opt/lib" };
			struct elfgen_out o;
			struct elf_deps d;
			struct lp_err err = { 0 };
			int r;

			if (c == C_TRUNC_EHDR64 && !g.elf64)
				continue;
			elfgen_build(&g, &o);
			corrupt(&g, &o, (enum corrupt)c);
			r = parse(o.data, o.len, &d, &err);
			CHECK(r < 0 && r != -ENOEXEC,
			      "%s (%d-bit %s%s): %d", corrupt_names[c],
			      g.elf64 ? 64 : 32, g.be ? "BE" : "LE",
			      g.at_zero ? " at 0" : "", r);
			CHECK(err.code == r && err.msg[0],
			      "%s: code %d, message \"%s\"", corrupt_names[c],
			      err.code, err.msg);
			if (r == 0)
				elf_deps_release(&d);
			free(o.data);
		}
	}

	/* more than ELF_MAX_NEEDED libraries */
	{
		static char names[ELF_MAX_NEEDED + 1][16];
		const char *ptrs[ELF_MAX_NEEDED + 1];
		struct elfgen g = { .elf64 = true, .machine = 62,
				    .needed = ptrs };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };
		int r;

		for (int i = 0; i <= ELF_MAX_NEEDED; i++) {
			snprintf(names[i], sizeof(names[i]), "lib%d.so", i);
			ptrs[i] = names[i];
		}
		g.n_needed = ELF_MAX_NEEDED;
		elfgen_build(&g, &o);
		r = parse(o.data, o.len, &d, &err);
		CHECK(r == 0 && d.n_needed == ELF_MAX_NEEDED &&
			      STREQ(d.needed[ELF_MAX_NEEDED - 1], "lib127.so"),
		      "%d needed: %d %s", ELF_MAX_NEEDED, r, err.msg);
		if (r == 0)
			elf_deps_release(&d);
		free(o.data);
		g.n_needed = ELF_MAX_NEEDED + 1;
		elfgen_build(&g, &o);
		r = parse(o.data, o.len, &d, &err);
		CHECK(r == -EINVAL && err.msg[0], "%d needed: %d",
		      ELF_MAX_NEEDED + 1, r);
		free(o.data);
	}

	/* a name longer than ELF_MAX_NAME */
	{
		char *longname = malloc(ELF_MAX_NAME + 2);
		const char *ptrs[1] = { longname };
		struct elfgen g = { .elf64 = true, .machine = 62,
				    .needed = ptrs, .n_needed = 1 };
		struct elfgen_out o;
		struct elf_deps d;
		struct lp_err err = { 0 };
		int r;

		memset(longname, 'a', ELF_MAX_NAME + 1);
		longname[ELF_MAX_NAME + 1] = '\0';
		elfgen_build(&g, &o);
		r = parse(o.data, o.len, &d, &err);
		CHECK(r == -EINVAL && err.msg[0], "long name: %d", r);
		free(o.data);
		longname[ELF_MAX_NAME] = '\0'; /* exactly the limit */
		elfgen_build(&g, &o);
		r = parse(o.data, o.len, &d, &err);
		CHECK(r == 0 && d.n_needed == 1 &&
			      strlen(d.needed[0]) == ELF_MAX_NAME,
		      "name of %d bytes: %d", ELF_MAX_NAME, r);
		if (r == 0)
			elf_deps_release(&d);
		free(o.data);
		free(longname);
	}
}

/* every prefix of a valid file: an error with a message, or a result
 * that is a prefix of the whole one; never a crash or an overread */
static void test_truncations(void)
{
	static const char *const need[] = { "libfoo.so.1", "libc.so.6" };

	for (int v = 0; v < 4; v++) {
		struct elfgen g = { .elf64 = v & 1, .be = v & 2,
				    .machine = 62, .interp = "/lib/ld.so",
				    .needed = need, .n_needed = 2,
				    .runpath = "/opt/lib" };
		struct elfgen_out o;
		unsigned ok = 0, bad = 0;

		elfgen_build(&g, &o);
		for (size_t len = 0; len <= o.len; len++) {
			struct elf_deps d;
			struct lp_err err = { 0 };
			int r = parse(o.data, len, &d, &err);

			if (len < 4) {
				CHECK(r == -ENOEXEC && !err.msg[0],
				      "%zu bytes: %d", len, r);
				continue;
			}
			if (r == 0) {
				ok++;
				elf_deps_release(&d);
				continue;
			}
			bad++;
			CHECK(r != -ENOEXEC && err.code == r && err.msg[0],
			      "%d-bit %s cut at %zu: %d \"%s\"",
			      g.elf64 ? 64 : 32, g.be ? "BE" : "LE", len, r,
			      err.msg);
		}
		/* only the whole file parses: the dynamic section is last */
		CHECK(ok == 1 && bad == o.len - 4, "variant %d: %u ok %u bad",
		      v, ok, bad);
		free(o.data);
	}
}

/* ---- the read callback --------------------------------------------------- */

struct cb {
	const uint8_t *data;
	size_t len;
	unsigned calls, fail_at; /* fail_at: the call that fails (1-based) */
	int fail_rc;		 /* 0: a short read instead */
	uint64_t bytes;
	size_t max_len;
};

static int64_t cb_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct cb *c = arg;

	c->calls++;
	if (len > c->max_len)
		c->max_len = len;
	if (c->calls == c->fail_at) {
		if (c->fail_rc)
			return c->fail_rc;
		len = len > 1 ? len / 2 : 0;
	}
	if (off >= c->len)
		return 0;
	if (len > c->len - off)
		len = c->len - off;
	memcpy(buf, c->data + off, len);
	c->bytes += len;
	return (int64_t)len;
}

static void test_callback(void)
{
	static const char *const need[] = { "libfoo.so.1", "libc.so.6" };
	struct elfgen g = { .elf64 = true, .machine = 62,
			    .interp = "/lib/ld.so", .needed = need,
			    .n_needed = 2, .runpath = "/opt/lib" };
	struct elfgen_out o;
	unsigned calls;

	elfgen_build(&g, &o);
	{
		struct cb c = { .data = o.data, .len = o.len };
		struct elf_deps d = { 0 };
		struct lp_err err = { 0 };

		CHECK(elf_deps_read(cb_read, &c, o.len, &d, &err) == 0, "%s",
		      err.msg);
		CHECK(d.n_needed == 2, "%u", d.n_needed);
		elf_deps_release(&d);
		calls = c.calls;
		/* header, phdrs, interp, dynamic, 2 names, run path */
		CHECK(calls == 7, "%u reads", calls);
	}
	/* each read in turn fails (-EIO, then -ENOMEM) or comes back short */
	for (unsigned k = 1; k <= calls; k++) {
		for (int mode = 0; mode < 3; mode++) {
			struct cb c = { .data = o.data, .len = o.len,
					.fail_at = k,
					.fail_rc = mode == 0 ? -EIO :
						   mode == 1 ? -ENOMEM : 0 };
			struct elf_deps d = { 0 };
			struct lp_err err = { 0 };
			int r = elf_deps_read(cb_read, &c, o.len, &d, &err);

			if (mode == 2 && k >= 3 && k != 4) {
				/* a string read short: still terminated in
				 * what came, or not */
				CHECK(r == 0 || (r == -EINVAL && err.msg[0]),
				      "short read %u: %d", k, r);
			} else if (mode == 2) {
				CHECK(r == -EIO && err.msg[0],
				      "short read %u: %d %s", k, r, err.msg);
			} else {
				CHECK(r == c.fail_rc && err.code == r &&
					      err.msg[0],
				      "read %u failing %d: %d %s", k,
				      c.fail_rc, r, err.msg);
			}
			if (r == 0)
				elf_deps_release(&d);
		}
	}
	free(o.data);
}

/* ---- not ELF ------------------------------------------------------------- */

static void test_not_elf(void)
{
	static const char *const inputs[] = {
		"", "\177EL", "#!/bin/sh\necho hello, world\n",
		("\177ELX this is not an ELF file but long enough to be "
		 "one, really, more than 64 bytes long."),
		("MZ\x90\x00 a PE file......................................."
		 "......."),
	};

	for (size_t i = 0; i < ARRAY_SIZE(inputs); i++) {
		struct elf_deps d;
		struct lp_err err = { 0 };
		int r = parse(inputs[i], strlen(inputs[i]), &d, &err);

		CHECK(r == -ENOEXEC && err.code == 0 && !err.msg[0],
		      "input %zu: %d \"%s\"", i, r, err.msg);
	}
}

static void test_triplets(void)
{
	CHECK(STREQ(elf_machine_triplet(62), "x86_64-linux-gnu"), "x86_64");
	CHECK(STREQ(elf_machine_triplet(183), "aarch64-linux-gnu"), "arm64");
	CHECK(STREQ(elf_machine_triplet(3), "i386-linux-gnu"), "i386");
	CHECK(STREQ(elf_machine_triplet(40), "arm-linux-gnueabihf"), "arm");
	CHECK(elf_machine_triplet(0) == NULL, "none");
	CHECK(elf_machine_triplet(0xffff) == NULL, "unknown");
}

/* ---- the files of this host against readelf ------------------------------ */

struct expect {
	char interp[PATH_MAX];
	char needed[ELF_MAX_NEEDED][256];
	unsigned n_needed;
	char runpath[4096], rpath[4096];
};

/* the text between "[" and "]" after key in line, into out */
static bool bracket(const char *line, const char *key, char *out, size_t size)
{
	const char *p = strstr(line, key), *e;

	if (!p || !(p = strchr(p, '[')) || !(e = strrchr(p, ']')))
		return false;
	p++;
	if ((size_t)(e - p) >= size)
		return false;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

static int readelf(const char *path, struct expect *x)
{
	char cmd[PATH_MAX + 64], line[8192];
	FILE *f;

	memset(x, 0, sizeof(*x));
	snprintf(cmd, sizeof(cmd), "LC_ALL=C readelf -ldW '%s' 2>/dev/null",
		 path);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "Requesting program interpreter: ")) {
			/* "[Requesting program interpreter: PATH]" */
			const char *p = strstr(line, "interpreter: ") + 13;
			const char *e = strrchr(p, ']');

			if (e && (size_t)(e - p) < sizeof(x->interp)) {
				memcpy(x->interp, p, (size_t)(e - p));
				x->interp[e - p] = '\0';
			}
		} else if (strstr(line, "(NEEDED)") &&
			 x->n_needed < ELF_MAX_NEEDED)
			bracket(line, "Shared library",
				x->needed[x->n_needed++],
				sizeof(x->needed[0]));
		else if (strstr(line, "(RUNPATH)"))
			bracket(line, "runpath", x->runpath,
				sizeof(x->runpath));
		else if (strstr(line, "(RPATH)"))
			bracket(line, "rpath", x->rpath, sizeof(x->rpath));
	}
	return pclose(f) == 0 ? 0 : -1;
}


struct hostfiles {
	char paths[32][PATH_MAX];
	unsigned n;
};

static void host_add(struct hostfiles *h, const char *path)
{
	char real[PATH_MAX];
	struct stat st;

	if (!path || !*path || !realpath(path, real) || strchr(real, '\'') ||
	    stat(real, &st) < 0 || !S_ISREG(st.st_mode) || h->n == 32)
		return;
	for (unsigned i = 0; i < h->n; i++)
		if (!strcmp(h->paths[i], real))
			return;
	strcpy(h->paths[h->n++], real);
}

static int host_obj(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (info->dlpi_name && info->dlpi_name[0] == '/')
		host_add(data, info->dlpi_name);
	return 0;
}

static void test_host(void)
{
	struct hostfiles h = { 0 };
	unsigned compared = 0, with_needed = 0, with_interp = 0;
	FILE *v = popen("readelf --version >/dev/null 2>&1", "r");

	if (!v || pclose(v) != 0) {
		printf("readelf missing: host files not compared\n");
		return;
	}
	host_add(&h, "/proc/self/exe");
	dl_iterate_phdr(host_obj, &h);
	host_add(&h, "/bin/ls");
	host_add(&h, "/bin/sh");
	host_add(&h, "/usr/bin/python3");
	for (unsigned i = 0; i < h.n; i++) {
		const char *path = h.paths[i];
		struct expect x;
		struct elf_deps d = { 0 };
		struct lp_err err = { 0 };
		size_t len = 0;
		uint8_t *data = check_slurp(path, &len);
		const char *want_run;
		int r;

		if (!data || readelf(path, &x) < 0) {
			free(data);
			continue;
		}
		compared++;
		/* through the callback, counting what it reads */
		{
			struct cb c = { .data = data, .len = len };

			r = elf_deps_read(cb_read, &c, len, &d, &err);
			CHECK(r == 0, "%s: %d %s", path, r, err.msg);
			/* a few small reads, not the whole file */
			CHECK(c.calls <= 4 + d.n_needed + 1 &&
				      c.max_len <= 64 * 1024 &&
				      c.bytes <= 64 * 1024 +
						   (d.n_needed + 2) *
							   (ELF_MAX_NAME + 1) +
						   64 + 512 * 64,
			      "%s: %u reads, %llu bytes", path, c.calls,
			      (unsigned long long)c.bytes);
		}
		if (r < 0) {
			free(data);
			continue;
		}
		CHECK(x.interp[0] ? STREQ(d.interp, x.interp) : !d.interp,
		      "%s: interpreter %s, readelf %s", path, d.interp,
		      x.interp);
		CHECK(d.n_needed == x.n_needed, "%s: %u needed, readelf %u",
		      path, d.n_needed, x.n_needed);
		for (unsigned k = 0; k < d.n_needed && k < x.n_needed; k++)
			CHECK(STREQ(d.needed[k], x.needed[k]),
			      "%s: needed[%u] %s, readelf %s", path, k,
			      d.needed[k], x.needed[k]);
		want_run = x.runpath[0] ? x.runpath : x.rpath;
		CHECK(want_run[0] ? STREQ(d.runpath, want_run) : !d.runpath,
		      "%s: run path %s, readelf %s", path, d.runpath,
		      want_run);
		CHECK(d.elf64 == (data[4] == 2), "%s: class", path);
		CHECK(d.machine == elfgen_get(data + 18, 2, data[5] == 2),
		      "%s: machine %u", path, d.machine);
		with_needed += d.n_needed > 0;
		with_interp += d.interp != NULL;
		/* the same through elf_deps_parse */
		{
			struct elf_deps d2;

			CHECK(parse(data, len, &d2, &err) == 0 &&
				      d2.n_needed == d.n_needed,
			      "%s: parse", path);
			elf_deps_release(&d2);
		}
		elf_deps_release(&d);
		free(data);
	}
	/* the test itself is a dynamic program needing libc */
	CHECK(compared >= 2 && with_needed >= 1 && with_interp >= 1,
	      "%u host files compared, %u with DT_NEEDED, %u with PT_INTERP",
	      compared, with_needed, with_interp);
	printf("%u host ELF files compared with readelf\n", compared);
}

int main(void)
{
	test_synthetic();
	test_malformed();
	test_truncations();
	test_callback();
	test_not_elf();
	test_triplets();
	test_host();
	if (failures) {
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("ok (%d checks)\n", checks);
	return 0;
}
