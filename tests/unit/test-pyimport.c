/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/pyimport: the imports of this host's Python stdlib (every compiled
 * module of the host python3's cache tag, and a sample of the sources)
 * against what python3 itself finds in the same files
 * (tests/unit/pyimport-ref.py: the IMPORT_NAME instructions of the
 * module's and the class bodies' code); synthetic sources (import forms,
 * relative imports, def/class/async def, if/try, strings and comments,
 * continuations, ';', tabs, one-line compound statements, CRLF, a BOM)
 * through both the source reader and the .pyc python3 compiles from them;
 * hand-marshalled .pyc files (both code layouts, every object type,
 * EXTENDED_ARG, class bodies and functions, references) and malformed ones
 * (wrong magic, every truncation, bad references, a reference to an
 * object not complete yet, huge counts, nesting past the limit, every
 * type byte); the limits.
 *
 * Argument: the path of pyimport-ref.py.  Without a usable python3 the
 * host and compiled parts are skipped (said so, not counted).
 */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/pyimport.h"

#define CHECK_WITH_MESSAGE
#include "check.h"
#include "pyhost.h"

static struct pyhost host;
static bool have_host;

/* ---- helpers ------------------------------------------------------------- */

/* parses a copy of exactly len bytes, so ASan sees a read past the end */
static int pyc(const void *data, size_t len, struct py_imports *imps,
	       struct lp_err *err)
{
	void *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, data, len);
	lp_err_clear(err);
	r = py_pyc_imports(copy, len, imps, err);
	free(copy);
	return r;
}

static int src(const char *text, size_t len, struct py_imports *imps)
{
	void *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, text, len);
	r = py_source_imports(copy, len, imps);
	free(copy);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* lines "name|level|from,from" sorted and joined by '\n' (malloc'd) */
static char *join_sorted(char **lines, size_t n)
{
	size_t len = 1;
	char *out, *p;

	qsort(lines, n, sizeof(*lines), cmp_str);
	for (size_t i = 0; i < n; i++)
		len += strlen(lines[i]) + 1;
	p = out = lp_xmalloc(len);
	*p = '\0';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%s", i ? "\n" : "", lines[i]);
	return out;
}

static char *imp_line(const struct py_import *im)
{
	size_t len = strlen(im->name) + 16;
	char *s, *p;

	for (uint32_t k = 0; k < im->n_from; k++)
		len += strlen(im->from[k]) + 1;
	p = s = lp_xmalloc(len);
	p += sprintf(p, "%s|%u|", im->name, im->level);
	for (uint32_t k = 0; k < im->n_from; k++)
		p += sprintf(p, "%s%s", k ? "," : "", im->from[k]);
	return s;
}

/* the imports as join_sorted() text */
static char *imps_text(const struct py_imports *imps)
{
	char **lines = lp_xcalloc(imps->n + 1, sizeof(*lines));
	char *out;

	for (uint32_t i = 0; i < imps->n; i++)
		lines[i] = imp_line(&imps->v[i]);
	out = join_sorted(lines, imps->n);
	for (uint32_t i = 0; i < imps->n; i++)
		free(lines[i]);
	free(lines);
	return out;
}

/* a NULL-terminated list of lines as join_sorted() text */
static char *want_text(const char *const *want)
{
	size_t n = 0;
	char **lines, *out;

	while (want[n])
		n++;
	lines = lp_xcalloc(n + 1, sizeof(*lines));
	for (size_t i = 0; i < n; i++)
		lines[i] = (char *)want[i];
	out = join_sorted(lines, n);
	free(lines);
	return out;
}

/* every string of imps is terminated, within the limits */
static bool imps_sane(const struct py_imports *imps)
{
	if (imps->n > PY_MAX_IMPORTS || (imps->n && !imps->v))
		return false;
	for (uint32_t i = 0; i < imps->n; i++) {
		const struct py_import *im = &imps->v[i];

		if (!im->name || strlen(im->name) >= PY_MAX_NAME ||
		    (!im->name[0] && !im->level) || im->level > 64)
			return false;
		for (uint32_t k = 0; k < im->n_from; k++)
			if (!im->from[k] || !im->from[k][0] ||
			    !strcmp(im->from[k], "*"))
				return false;
	}
	return true;
}

/* a list of malloc'd lines */
struct lines {
	char **v;
	size_t n, cap;
};

static void lines_add(struct lines *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap * 2 + 64;
		l->v = lp_xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = s;
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* pyimport-ref.py MODE over paths (a list file in dir): its lines,
 * "path<TAB>name<TAB>level<TAB>from" or "path<TAB>ERR ..." */
static bool ref_run(const char *mode, char *const *paths, size_t n,
		    const char *dir, struct lines *out)
{
	char list[PATH_MAX], cmd[3 * PATH_MAX], *line = NULL;
	size_t cap = 0;
	ssize_t got;
	FILE *f;

	snprintf(list, sizeof(list), "%s/list-%s", dir, mode);
	f = fopen(list, "w");
	if (!f)
		return false;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\n", paths[i]);
	if (fclose(f) != 0 || !pyhost_quotable(list))
		return false;
	snprintf(cmd, sizeof(cmd), "python3 '%s' %s '%s'", host.ref, mode,
		 list);
	f = popen(cmd, "r");
	if (!f)
		return false;
	while ((got = getline(&line, &cap, f)) > 0) {
		if (line[got - 1] == '\n')
			line[got - 1] = '\0';
		lines_add(out, lp_xstrdup(line));
	}
	free(line);
	unlink(list);
	return pclose(f) == 0;
}

/* ---- a marshal writer ---------------------------------------------------- */

#define M311 3495 /* 3.11's magic */
#define M312 3531
#define M38 3413

#define OP_NOP 9
#define OP_RETURN_VALUE 83
#define OP_STORE_NAME 90
#define OP_LOAD_CONST 100
#define OP_IMPORT_NAME 108
#define OP_EXTENDED_ARG 144

struct mb {
	uint8_t *b;
	size_t n, cap;
};

static void mb_put(struct mb *m, const void *p, size_t n)
{
	if (m->n + n > m->cap) {
		m->cap = (m->n + n) * 2 + 64;
		m->b = lp_xrealloc(m->b, m->cap);
	}
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void mb_u8(struct mb *m, uint8_t v)
{
	mb_put(m, &v, 1);
}

static void mb_i32(struct mb *m, int32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	mb_put(m, b, 4);
}

static void mb_hdr(struct mb *m, uint16_t magic)
{
	static const uint8_t zero[12];

	m->n = 0;
	mb_u8(m, (uint8_t)magic);
	mb_u8(m, (uint8_t)(magic >> 8));
	mb_put(m, "\r\n", 2);
	mb_put(m, zero, sizeof(zero));
}

/* a short ASCII string ('z') */
static void mb_str(struct mb *m, const char *s)
{
	mb_u8(m, 'z');
	mb_u8(m, (uint8_t)strlen(s));
	mb_put(m, s, strlen(s));
}

static void mb_bytes(struct mb *m, const void *p, size_t n)
{
	mb_u8(m, 's');
	mb_i32(m, (int32_t)n);
	mb_put(m, p, n);
}

static void mb_int(struct mb *m, int32_t v)
{
	mb_u8(m, 'i');
	mb_i32(m, v);
}

static void mb_tuple(struct mb *m, uint32_t n)
{
	if (n < 256) {
		mb_u8(m, ')');
		mb_u8(m, (uint8_t)n);
	} else {
		mb_u8(m, '(');
		mb_i32(m, (int32_t)n);
	}
}

static bool layout311(uint16_t magic)
{
	return magic >= 3450;
}

/* 'c', the leading longs and the bytecode; then the caller writes
 * co_consts and co_names, then mb_code_end */
static void mb_code_begin(struct mb *m, uint16_t magic, uint32_t flags,
			  const uint8_t *ins, size_t n)
{
	mb_u8(m, 'c');
	for (int i = 0; i < (layout311(magic) ? 4 : 5); i++)
		mb_i32(m, 0);
	mb_i32(m, (int32_t)flags);
	mb_bytes(m, ins, n);
}

static void mb_code_end(struct mb *m, uint16_t magic)
{
	if (layout311(magic)) {
		mb_tuple(m, 0);	    /* localsplusnames */
		mb_bytes(m, "", 0); /* localspluskinds */
		mb_str(m, "f.py");
		mb_str(m, "<module>");
		mb_str(m, "<module>"); /* qualname */
		mb_i32(m, 1);
		mb_bytes(m, "", 0); /* linetable */
		mb_bytes(m, "", 0); /* exception table */
	} else {
		mb_tuple(m, 0); /* varnames */
		mb_tuple(m, 0); /* freevars */
		mb_tuple(m, 0); /* cellvars */
		mb_str(m, "f.py");
		mb_str(m, "<module>");
		mb_i32(m, 1);
		mb_bytes(m, "", 0); /* lnotab */
	}
}

/* bytecode: one instruction, EXTENDED_ARG prefixes as needed */
static void ins_put(struct mb *c, uint8_t op, uint32_t arg)
{
	for (int shift = 24; shift > 0; shift -= 8)
		if (arg >> shift) {
			mb_u8(c, OP_EXTENDED_ARG);
			mb_u8(c, (uint8_t)(arg >> shift));
		}
	mb_u8(c, op);
	mb_u8(c, (uint8_t)arg);
}

/* "import <names[i]>" for each name: co_consts (0, None), level 0, no
 * from-list */
static void ins_imports(struct mb *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		ins_put(c, OP_LOAD_CONST, 0);
		ins_put(c, OP_LOAD_CONST, 1);
		ins_put(c, OP_IMPORT_NAME, i);
		ins_put(c, OP_STORE_NAME, i);
	}
	ins_put(c, OP_LOAD_CONST, 1);
	ins_put(c, OP_RETURN_VALUE, 0);
}

/* a module whose code imports m0 .. m<n-1>, flags given */
static void mb_simple_code(struct mb *m, uint16_t magic, uint32_t flags,
			   const char *prefix, unsigned n)
{
	struct mb c = { 0 };
	char name[32];

	ins_imports(&c, n);
	mb_code_begin(m, magic, flags, c.b, c.n);
	mb_tuple(m, 2);
	mb_int(m, 0);
	mb_u8(m, 'N');
	mb_tuple(m, n);
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%u", prefix, i);
		mb_str(m, name);
	}
	mb_code_end(m, magic);
	free(c.b);
}

static void mb_simple(struct mb *m, uint16_t magic, unsigned n)
{
	mb_hdr(m, magic);
	mb_simple_code(m, magic, 0, "m", n);
}

/* the imports of m as text, or "ERR <rc>" */
static char *mb_text(const struct mb *m)
{
	struct py_imports imps;
	struct lp_err err = { 0 };
	char *out;
	int r = pyc(m->b, m->n, &imps, &err);

	if (r < 0) {
		out = lp_xmalloc(sizeof(err.msg) + 32);
		snprintf(out, sizeof(err.msg) + 32, "ERR %d %s", r, err.msg);
		return out;
	}
	out = imps_text(&imps);
	py_imports_release(&imps);
	return out;
}

/* the imports of m are the lines of want, in any order */
static void check_mb(const struct mb *m, const char *const *want,
		     const char *what)
{
	char *got = mb_text(m), *w = want_text(want);

	CHECK(!strcmp(got, w), "%s: got [%s] want [%s]", what, got, w);
	free(got);
	free(w);
}

#define LINES(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* m must be malformed: -EBADMSG with a message */
static void check_bad(const struct mb *m, const char *what)
{
	struct py_imports imps;
	struct lp_err err = { 0 };
	int r = pyc(m->b, m->n, &imps, &err);

	CHECK(r == -EBADMSG && err.msg[0] && !imps.n && !imps.v,
	      "%s: %d (%s)", what, r, err.msg);
	if (r == 0)
		py_imports_release(&imps);
}

/* every proper prefix of data fails: -ENOEXEC under 4 bytes, -EBADMSG
 * from there (step: every step-th length, and the last 64 all) */
static unsigned check_truncations(const uint8_t *data, size_t len,
				  size_t step, const char *what)
{
	unsigned bad = 0;

	for (size_t n = 0; n < len; n += (len - n <= 64 ? 1 : step)) {
		struct py_imports imps;
		struct lp_err err = { 0 };
		int r = pyc(data, n, &imps, &err);
		int want = n < 4 ? -ENOEXEC : -EBADMSG;

		if (r != want || (r == -EBADMSG && !err.msg[0]) || imps.n) {
			if (!bad++)
				fprintf(stderr, "%s cut at %zu: %d (%s)\n",
					what, n, r, err.msg);
			if (r == 0)
				py_imports_release(&imps);
		}
	}
	CHECK(!bad, "%s: %u truncations did not fail", what, bad);
	return bad;
}

/* ---- hand-marshalled .pyc files ------------------------------------------ */

static void test_marshal_valid(void)
{
	struct mb m = { 0 };
	const uint16_t magics[] = { 3400, M38, 3449, 3450, M311, M312, 3549 };

	/* both code layouts, the edges of the known range */
	for (size_t i = 0; i < ARRAY_SIZE(magics); i++) {
		char what[32];

		snprintf(what, sizeof(what), "magic %u", magics[i]);
		mb_simple(&m, magics[i], 2);
		check_mb(&m, LINES("m0|0|", "m1|0|"), what);
	}
	/* no imports at all */
	mb_simple(&m, M311, 0);
	check_mb(&m, (const char *const[]){ NULL }, "no imports");

	/* the level and from-list loaded before IMPORT_NAME, through
	 * EXTENDED_ARG: name 299, level at const 300, from-list at 1 */
	{
		struct mb c = { 0 };
		char name[16];

		ins_put(&c, OP_LOAD_CONST, 300);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_IMPORT_NAME, 299);
		/* a CACHE entry between is skipped (3.11+) */
		ins_put(&c, OP_LOAD_CONST, 300);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, 0, 0);
		ins_put(&c, OP_IMPORT_NAME, 1);
		/* another instruction between: no level nor from-list */
		ins_put(&c, OP_LOAD_CONST, 300);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_NOP, 0);
		ins_put(&c, OP_IMPORT_NAME, 2);
		/* level: None, a negative int, a string; from-list: a
		 * string; a name index out of range */
		ins_put(&c, OP_LOAD_CONST, 0);
		ins_put(&c, OP_LOAD_CONST, 301);
		ins_put(&c, OP_IMPORT_NAME, 3);
		ins_put(&c, OP_LOAD_CONST, 302);
		ins_put(&c, OP_LOAD_CONST, 303);
		ins_put(&c, OP_IMPORT_NAME, 4);
		ins_put(&c, OP_LOAD_CONST, 303);
		ins_put(&c, OP_LOAD_CONST, 9999);
		ins_put(&c, OP_IMPORT_NAME, 5);
		ins_put(&c, OP_IMPORT_NAME, 100000);
		/* names that are not module names; "" with a level */
		ins_put(&c, OP_LOAD_CONST, 304);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_IMPORT_NAME, 6);
		ins_put(&c, OP_IMPORT_NAME, 7);
		ins_put(&c, OP_IMPORT_NAME, 8);
		ins_put(&c, OP_LOAD_CONST, 300);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_IMPORT_NAME, 9);
		/* a level of 64 is kept, more is not a level */
		ins_put(&c, OP_LOAD_CONST, 305);
		ins_put(&c, OP_LOAD_CONST, 0);
		ins_put(&c, OP_IMPORT_NAME, 10);
		ins_put(&c, OP_LOAD_CONST, 306);
		ins_put(&c, OP_LOAD_CONST, 0);
		ins_put(&c, OP_IMPORT_NAME, 11);
		ins_put(&c, OP_RETURN_VALUE, 0);
		mb_hdr(&m, M311);
		mb_code_begin(&m, M311, 0, c.b, c.n);
		mb_tuple(&m, 307);
		mb_u8(&m, 'N');
		/* ("a", 7, "*", "b", "a.b") */
		mb_tuple(&m, 5);
		mb_str(&m, "a");
		mb_int(&m, 7);
		mb_str(&m, "*");
		mb_str(&m, "b");
		mb_str(&m, "a.b");
		for (int i = 2; i < 300; i++)
			mb_u8(&m, 'N');
		mb_int(&m, 2);	   /* 300 */
		mb_int(&m, -1);	   /* 301 */
		mb_str(&m, "x");   /* 302 */
		mb_str(&m, "y");   /* 303 */
		mb_int(&m, 0);	   /* 304 */
		mb_int(&m, 64);	   /* 305 */
		mb_int(&m, 65);	   /* 306 */
		mb_tuple(&m, 300);
		for (int i = 0; i < 300; i++) {
			static const char *const odd[] = { "a..b", ".a",
							   "a b" };

			if (i >= 6 && i <= 8) {
				mb_str(&m, odd[i - 6]);
				continue;
			}
			if (i == 9) {
				mb_str(&m, "");
				continue;
			}
			snprintf(name, sizeof(name), "n%d", i);
			mb_str(&m, name);
		}
		mb_code_end(&m, M311);
		check_mb(&m,
			 LINES("|2|a,b", "n1|2|a,b", "n10|64|", "n11|0|",
			       "n2|0|", "n299|2|a,b", "n3|0|", "n4|0|",
			       "n5|0|"),
			 "EXTENDED_ARG, CACHE, odd consts");
		free(c.b);
	}

	/* a class body (flags 0) is walked, nested too; a function
	 * (CO_NEWLOCALS) is not, nor a class body within it */
	{
		struct mb c = { 0 }, f = { 0 };

		ins_imports(&c, 1);
		mb_hdr(&m, M311);
		mb_code_begin(&m, M311, 0, c.b, c.n);
		mb_tuple(&m, 4);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		/* a class body holding a class body */
		mb_code_begin(&m, M311, 0, c.b, c.n);
		mb_tuple(&m, 3);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		mb_simple_code(&m, M311, 0, "inner", 1);
		mb_tuple(&m, 1);
		mb_str(&m, "cls");
		mb_code_end(&m, M311);
		/* a function holding a class body */
		mb_code_begin(&m, M311, 0x3, c.b, c.n);
		mb_tuple(&m, 3);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		mb_simple_code(&m, M311, 0, "fnclass", 1);
		mb_tuple(&m, 1);
		mb_str(&m, "fn");
		mb_code_end(&m, M311);
		mb_tuple(&m, 1);
		mb_str(&m, "top");
		mb_code_end(&m, M311);
		check_mb(&m, LINES("cls|0|", "inner0|0|", "top|0|"),
			 "class and function");
		free(c.b);
		free(f.b);
	}

	/* every object type in co_consts; references to remembered
	 * objects (a name, the from-list, a code object twice) */
	{
		struct mb c = { 0 };
		static const uint8_t sixteen[16];

		ins_put(&c, OP_LOAD_CONST, 0);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_IMPORT_NAME, 0);
		ins_put(&c, OP_LOAD_CONST, 0);
		ins_put(&c, OP_LOAD_CONST, 1);
		ins_put(&c, OP_IMPORT_NAME, 1);
		ins_put(&c, OP_RETURN_VALUE, 0);
		mb_hdr(&m, M311);
		mb_code_begin(&m, M311, 0, c.b, c.n);
		mb_tuple(&m, 26);
		mb_int(&m, 0);
		mb_u8(&m, ')' | 0x80); /* ref 0: ("sub",) */
		mb_u8(&m, 1);
		mb_u8(&m, 'z' | 0x80); /* ref 1: "sub" */
		mb_u8(&m, 3);
		mb_put(&m, "sub", 3);
		mb_u8(&m, 'F');
		mb_u8(&m, 'T');
		mb_u8(&m, 'S');
		mb_u8(&m, '.');
		mb_u8(&m, 'I');
		mb_put(&m, sixteen, 8);
		mb_u8(&m, 'g');
		mb_put(&m, sixteen, 8);
		mb_u8(&m, 'y');
		mb_put(&m, sixteen, 16);
		mb_u8(&m, 'f');
		mb_u8(&m, 3);
		mb_put(&m, "1.5", 3);
		mb_u8(&m, 'x');
		mb_u8(&m, 1);
		mb_put(&m, "1", 1);
		mb_u8(&m, 1);
		mb_put(&m, "2", 1);
		mb_u8(&m, 'l'); /* a long of 3 digits */
		mb_i32(&m, -3);
		mb_put(&m, sixteen, 6);
		mb_u8(&m, 'l'); /* of 6: not a small int */
		mb_i32(&m, 6);
		mb_put(&m, sixteen, 12);
		mb_u8(&m, 't');
		mb_i32(&m, 2);
		mb_put(&m, "ab", 2);
		mb_u8(&m, 'u');
		mb_i32(&m, 2);
		mb_put(&m, "\xc3\xa9", 2);
		mb_u8(&m, 'a');
		mb_i32(&m, 0);
		mb_u8(&m, 'A');
		mb_i32(&m, 1);
		mb_put(&m, "q", 1);
		mb_u8(&m, 'Z');
		mb_u8(&m, 0);
		mb_u8(&m, '[');
		mb_i32(&m, 1);
		mb_u8(&m, 'N');
		mb_u8(&m, '<');
		mb_i32(&m, 0);
		mb_u8(&m, '>');
		mb_i32(&m, 2);
		mb_int(&m, 1);
		mb_int(&m, 2);
		mb_u8(&m, '{'); /* {"k": ("sub",), 1: None} */
		mb_str(&m, "k");
		mb_u8(&m, 'r');
		mb_i32(&m, 0);
		mb_int(&m, 1);
		mb_u8(&m, 'N');
		mb_u8(&m, '0');
		mb_u8(&m, 0x80 | 'c'); /* ref 2: a class body, twice */
		for (int i = 0; i < 4; i++)
			mb_i32(&m, 0);
		mb_i32(&m, 0);
		{
			struct mb c2 = { 0 };

			ins_imports(&c2, 1);
			mb_bytes(&m, c2.b, c2.n);
			free(c2.b);
		}
		mb_tuple(&m, 2);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		mb_tuple(&m, 1);
		mb_str(&m, "once");
		mb_code_end(&m, M311);
		mb_u8(&m, 'r');
		mb_i32(&m, 2);
		mb_u8(&m, 'N');
		mb_u8(&m, 'N');
		/* co_names: ("pkg", "sub" by reference) */
		mb_tuple(&m, 2);
		mb_str(&m, "pkg");
		mb_u8(&m, 'r');
		mb_i32(&m, 1);
		mb_code_end(&m, M311);
		check_mb(&m, LINES("once|0|", "pkg|0|sub", "sub|0|sub"),
			 "every type, references");
		check_truncations(m.b, m.n, 1, "every type");
		free(c.b);
	}
	free(m.b);
}

static void test_marshal_bad(void)
{
	struct mb m = { 0 };
	struct py_imports imps;
	struct lp_err err = { 0 };

	/* not a known .pyc: -ENOEXEC, no message needed */
	{
		const uint16_t magics[] = { 0, 3399, 3550, 3571, 0xffff };

		for (size_t i = 0; i < ARRAY_SIZE(magics); i++) {
			mb_simple(&m, magics[i], 1);
			CHECK(pyc(m.b, m.n, &imps, &err) == -ENOEXEC,
			      "magic %u", magics[i]);
		}
		mb_simple(&m, M311, 1);
		m.b[2] = '\n';
		m.b[3] = '\r';
		CHECK(pyc(m.b, m.n, &imps, &err) == -ENOEXEC, "\\n\\r");
		CHECK(pyc("#!/usr/bin/python3\n", 19, &imps, &err) ==
			      -ENOEXEC,
		      "text");
		CHECK(pyc("", 0, &imps, &err) == -ENOEXEC && !imps.n,
		      "empty");
	}
	/* the header alone, a byte short of it */
	mb_simple(&m, M311, 1);
	m.n = 16;
	check_bad(&m, "header only");
	m.n = 15;
	check_bad(&m, "cut header");

	/* the top object is not a code object; a code object of the wrong
	 * shape */
	mb_hdr(&m, M311);
	mb_u8(&m, 'N');
	check_bad(&m, "None");
	mb_hdr(&m, M311);
	mb_tuple(&m, 0);
	check_bad(&m, "a tuple");
	for (int field = 0; field < 3; field++) {
		struct mb c = { 0 };

		ins_imports(&c, 0);
		mb_hdr(&m, M311);
		mb_code_begin(&m, M311, 0, c.b, c.n);
		if (field == 0)
			m.b[m.n - c.n - 5] = 'N'; /* the code string's type */
		mb_tuple(&m, 2);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		if (field == 1)
			m.n -= 9, mb_str(&m, "x"); /* consts: a string */
		if (field == 2)
			mb_int(&m, 3); /* names: an int */
		else
			mb_tuple(&m, 0);
		mb_code_end(&m, M311);
		if (field == 0) {
			/* the bytes after the 'N' are read as objects */
			CHECK(pyc(m.b, m.n, &imps, &err) == -EBADMSG,
			      "code not a string");
		} else {
			check_bad(&m, field == 1 ? "consts not a tuple"
						 : "names not a tuple");
		}
		free(c.b);
	}

	/* every type byte as the top object, zeros after it */
	{
		unsigned bad = 0;

		for (int t = 0; t < 256; t++) {
			mb_hdr(&m, M311);
			mb_u8(&m, (uint8_t)t);
			for (int i = 0; i < 40; i++)
				mb_u8(&m, 0);
			if (pyc(m.b, m.n, &imps, &err) != -EBADMSG ||
			    !err.msg[0])
				bad++;
		}
		CHECK(!bad, "%u type bytes did not fail", bad);
		/* an unknown type inside co_consts */
		mb_simple(&m, M311, 1);
		m.b[m.n - 1] = 'N';
		mb_hdr(&m, M311);
		mb_simple_code(&m, M311, 0, "m", 1);
		{
			/* co_consts's first item ('i') replaced */
			uint8_t *p = memchr(m.b + 16 + 30, 'i', m.n - 46);

			if (p)
				*p = 'Q';
			CHECK(p != NULL, "no 'i'");
			check_bad(&m, "unknown type 'Q'");
		}
	}

	/* references: out of range, negative, none remembered yet, to an
	 * object that is not complete (a tuple holding itself) */
	{
		const int32_t idx[] = { 5, -1, INT32_MIN, 1 };

		for (size_t i = 0; i < ARRAY_SIZE(idx); i++) {
			mb_hdr(&m, M311);
			mb_u8(&m, 'c' | 0x80); /* ref 0, incomplete */
			for (int k = 0; k < 5; k++)
				mb_i32(&m, 0);
			mb_u8(&m, 'r');
			mb_i32(&m, idx[i]);
			check_bad(&m, "bad reference");
		}
		mb_hdr(&m, M311);
		mb_u8(&m, 'c');
		for (int k = 0; k < 5; k++)
			mb_i32(&m, 0);
		mb_bytes(&m, "", 0);
		mb_u8(&m, ')' | 0x80); /* ref 0 */
		mb_u8(&m, 1);
		mb_u8(&m, 'r');
		mb_i32(&m, 0);
		check_bad(&m, "a tuple holding itself");
		/* a reference to the code object being read as its consts */
		mb_hdr(&m, M311);
		mb_u8(&m, 'c' | 0x80);
		for (int k = 0; k < 5; k++)
			mb_i32(&m, 0);
		mb_bytes(&m, "", 0);
		mb_u8(&m, 'r');
		mb_i32(&m, 0);
		check_bad(&m, "a code object holding itself");
		/* a remembered NULL; NULL as an item, a field, a dict value */
		for (int k = 0; k < 4; k++) {
			mb_hdr(&m, M311);
			mb_u8(&m, 'c');
			for (int i = 0; i < 5; i++)
				mb_i32(&m, 0);
			mb_bytes(&m, "", 0);
			if (k == 0) {
				mb_u8(&m, '0' | 0x80);
			} else if (k == 1) {
				mb_tuple(&m, 1);
				mb_u8(&m, '0');
			} else if (k == 2) {
				mb_u8(&m, '0');
			} else {
				mb_u8(&m, '{');
				mb_str(&m, "k");
				mb_u8(&m, '0');
			}
			mb_tuple(&m, 0);
			mb_code_end(&m, M311);
			check_bad(&m, "NULL");
		}
	}

	/* huge counts and lengths: no allocation ahead of the bytes */
	{
		const struct {
			uint8_t type;
			int32_t n;
		} huge[] = {
			{ '(', INT32_MAX }, { '(', -1 }, { '[', 0x10000000 },
			{ '<', INT32_MIN }, { 's', INT32_MAX }, { 's', -5 },
			{ 'u', 0x7ffffff0 }, { 'a', -1 }, { 'l', INT32_MIN },
			{ 'l', 0x40000000 }, { 'l', -0x40000000 },
		};

		for (size_t i = 0; i < ARRAY_SIZE(huge); i++) {
			mb_hdr(&m, M311);
			mb_u8(&m, 'c');
			for (int k = 0; k < 5; k++)
				mb_i32(&m, 0);
			mb_bytes(&m, "", 0);
			mb_u8(&m, huge[i].type);
			mb_i32(&m, huge[i].n);
			for (int k = 0; k < 64; k++)
				mb_u8(&m, 'N');
			check_bad(&m, "huge count");
		}
		/* a short string longer than what is left; a small tuple of
		 * 255 items with 3 there */
		mb_hdr(&m, M311);
		mb_u8(&m, 'z');
		mb_u8(&m, 200);
		check_bad(&m, "short string cut");
		mb_hdr(&m, M311);
		mb_u8(&m, ')');
		mb_u8(&m, 255);
		mb_put(&m, "NNN", 3);
		check_bad(&m, "small tuple cut");
	}

	/* nesting: 50 tuples in co_consts are fine, 70 are not */
	for (int depth = 50; depth <= 70; depth += 20) {
		struct mb c = { 0 };

		ins_imports(&c, 1);
		mb_hdr(&m, M311);
		mb_code_begin(&m, M311, 0, c.b, c.n);
		mb_tuple(&m, 3);
		mb_int(&m, 0);
		mb_u8(&m, 'N');
		for (int i = 0; i < depth; i++)
			mb_tuple(&m, 1);
		mb_u8(&m, 'N');
		mb_tuple(&m, 1);
		mb_str(&m, "deep");
		mb_code_end(&m, M311);
		if (depth == 50)
			check_mb(&m, LINES("deep|0|"), "50 deep");
		else
			check_bad(&m, "70 deep");
		free(c.b);
	}
	/* deep everywhere: 100000 nested lists (no stack overflow) */
	mb_hdr(&m, M311);
	for (int i = 0; i < 100000; i++) {
		mb_u8(&m, '[');
		mb_i32(&m, 1);
	}
	check_bad(&m, "100000 deep");
	free(m.b);
}

/* the limits: imports per module, class bodies nested */
static void test_marshal_limits(void)
{
	struct mb m = { 0 };
	struct py_imports imps;
	struct lp_err err = { 0 };

	mb_simple(&m, M311, PY_MAX_IMPORTS + 10);
	CHECK(pyc(m.b, m.n, &imps, &err) == 0 && imps.n == PY_MAX_IMPORTS &&
		      imps_sane(&imps),
	      "%u imports", imps.n);
	if (imps.n == PY_MAX_IMPORTS)
		CHECK(!strcmp(imps.v[PY_MAX_IMPORTS - 1].name, "m4095"),
		      "the last one kept: %s",
		      imps.v[PY_MAX_IMPORTS - 1].name);
	py_imports_release(&imps);
	CHECK(!imps.n && !imps.v, "released");
	py_imports_release(&imps);

	/* class bodies nested 20 deep: the first 16 levels are walked */
	{
		struct mb c = { 0 };
		char name[16];

		ins_imports(&c, 1);
		mb_hdr(&m, M311);
		for (int i = 0; i < 20; i++) {
			mb_code_begin(&m, M311, 0, c.b, c.n);
			mb_tuple(&m, 3);
			mb_int(&m, 0);
			mb_u8(&m, 'N');
		}
		mb_u8(&m, 'N');
		for (int i = 19; i >= 0; i--) {
			mb_tuple(&m, 1);
			snprintf(name, sizeof(name), "c%d", i);
			mb_str(&m, name);
			mb_code_end(&m, M311);
		}
		CHECK(pyc(m.b, m.n, &imps, &err) == 0 && imps.n == 17 &&
			      !strcmp(imps.v[16].name, "c16"),
		      "nested class bodies: %u (%s)", imps.n, err.msg);
		py_imports_release(&imps);
		free(c.b);
	}
	free(m.b);
}

/* ---- synthetic sources --------------------------------------------------- */

struct srccase {
	const char *name;
	const char *text;
	const char *want[24]; /* "name|level|from,from" */
};

static const struct srccase srccases[] = {
	{ "forms",
	  "from __future__ import annotations\n"
	  "import a.b as c, d\n"
	  "import e.f.g\n"
	  "import h as i\n"
	  "from ..x import (y,\n"
	  "    z)  # the list goes on\n"
	  "from . import m\n"
	  "from .sib import *\n"
	  "from ... import up as u, down\n"
	  "from p.q import (r as s,\n"
	  "                 t,)\n",
	  { "a.b|0|", "d|0|", "e.f.g|0|", "h|0|", "x|2|y,z", "|1|m",
	    "sib|1|", "|3|up,down", "__future__|0|annotations",
	    "p.q|0|r,t" } },
	{ "def-class",
	  "import top\n"
	  "def f():\n"
	  "    import in_def\n"
	  "    class Inner:\n"
	  "        import in_class_in_def\n"
	  "    import in_def_again\n"
	  "class C:\n"
	  "    import in_class\n"
	  "    def m(self):\n"
	  "        import in_method\n"
	  "    from cls_from import name\n"
	  "    class D(object):\n"
	  "        import nested_class\n"
	  "        @staticmethod\n"
	  "        def g():\n"
	  "            return 1\n"
	  "        import after_method\n"
	  "async def g():\n"
	  "    import in_async\n"
	  "    async with x:\n"
	  "        import in_async_with\n"
	  "def h(a,\n"
	  "      b=(1,\n"
	  "2)):\n"
	  "    import in_h\n"
	  "lam = lambda: __import__('nope')\n"
	  "import after\n",
	  { "top|0|", "in_class|0|", "cls_from|0|name", "nested_class|0|",
	    "after_method|0|", "after|0|" } },
	{ "control",
	  "import sys\n"
	  "if sys.version_info > (3,):\n"
	  "    import if_a\n"
	  "elif sys:\n"
	  "    import if_b\n"
	  "else:\n"
	  "    from if_c import x\n"
	  "try:\n"
	  "    import try_a\n"
	  "except ImportError:\n"
	  "    from try_b import x as y\n"
	  "while sys.argv:\n"
	  "    import wh\n"
	  "for _ in ():\n"
	  "    import fo\n"
	  "with open(__file__):\n"
	  "    import wi\n",
	  { "sys|0|", "if_a|0|", "if_b|0|", "if_c|0|x", "try_a|0|",
	    "try_b|0|x", "wh|0|", "fo|0|", "wi|0|" } },
	{ "strings",
	  "\"\"\"Docstring\n"
	  "import not_this\n"
	  "\"\"\"\n"
	  "# import nor_this\n"
	  "x = 'import no'; y = \"from no import x\"\n"
	  "z = '''\n"
	  "from also_not import y\n"
	  "'''\n"
	  "w = \"\"\"\\\"\"\"\nimport still_string\"\"\"\n"
	  "r = r\"\\\" import q\"\n"
	  "import real  # import fake\n"
	  "b = b'import nope'\n"
	  "f = f\"{'import nope2'}\"\n"
	  "s = 'a \\\n"
	  "import cont'\n"
	  "e = ''; import after_empty\n"
	  "import last\n",
	  { "real|0|", "after_empty|0|", "last|0|" } },
	{ "continuation",
	  "import a, \\\n"
	  "    b\n"
	  "from c import \\\n"
	  "    d\n"
	  "import e; import f; x = 1; from g import h\n"
	  "if True:\n"
	  "\timport tab_a\n"
	  "\tif True:\n"
	  "\t\timport tab_b\n"
	  "def f():\n"
	  "\timport no_tab\n"
	  "\n"
	  "   \n"
	  "\t# a comment line\n"
	  "import back ;\n",
	  { "a|0|", "b|0|", "c|0|d", "e|0|", "f|0|", "g|0|h",
	    "tab_a|0|", "tab_b|0|", "back|0|" } },
	{ "one-line",
	  "if True: import ol_if\n"
	  "try: import ol_try\n"
	  "except ImportError: import ol_except\n"
	  "else: import ol_else; import ol_else2\n"
	  "class K(dict): import ol_class\n"
	  "def f(): import ol_def\n"
	  "with open(__file__) as fh: import ol_with\n"
	  "for k in {1: 2}: import ol_for\n"
	  "while [][0:]: from ol_while import w\n"
	  "if (n := 1): import ol_walrus\n"
	  "if True:pass\n",
	  { "ol_if|0|", "ol_try|0|", "ol_except|0|", "ol_else|0|",
	    "ol_else2|0|", "ol_class|0|", "ol_with|0|", "ol_for|0|",
	    "ol_while|0|w", "ol_walrus|0|" } },
	{ "crlf-bom",
	  "\xef\xbb\xbfimport bom_first\r\n"
	  "import a, \\\r\n"
	  "    b\r\n"
	  "def f():\r\n"
	  "    import no\r\n"
	  "from.rel import x\r\n"
	  "from .import y\r\n",
	  { "bom_first|0|", "a|0|", "b|0|", "rel|1|x", "|1|y" } },
};

/* a source case through py_source_imports, and, with python3, through
 * python3 itself (the expectation is right) and its .pyc */
static void test_sources(void)
{
	char dir[] = "/tmp/lp-pyimport-XXXXXX", path[PATH_MAX];
	bool compiled = false;

	if (have_host && mkdtemp(dir)) {
		for (size_t i = 0; i < ARRAY_SIZE(srccases); i++) {
			FILE *f;

			snprintf(path, sizeof(path), "%s/%s.py", dir,
				 srccases[i].name);
			f = fopen(path, "wb");
			if (f) {
				fputs(srccases[i].text, f);
				fclose(f);
			}
		}
		compiled = pyhost_compile(&host, dir);
		CHECK(compiled, "python3 did not compile the sources");
	}
	for (size_t i = 0; i < ARRAY_SIZE(srccases); i++) {
		const struct srccase *c = &srccases[i];
		struct py_imports imps;
		char *want = want_text(c->want), *got;

		CHECK(src(c->text, strlen(c->text), &imps) == 0, "%s",
		      c->name);
		CHECK(imps_sane(&imps), "%s: sane", c->name);
		got = imps_text(&imps);
		CHECK(!strcmp(got, want), "source %s:\ngot:\n%s\nwant:\n%s",
		      c->name, got, want);
		free(got);
		py_imports_release(&imps);
		if (compiled) {
			struct lp_err err = { 0 };
			uint8_t *data;
			size_t len;

			snprintf(path, sizeof(path), "%s/%s.pyc", dir,
				 c->name);
			data = check_slurp(path, &len);
			CHECK(data && pyc(data, len, &imps, &err) == 0,
			      "pyc %s: %s", c->name, err.msg);
			if (data) {
				got = imps_text(&imps);
				CHECK(!strcmp(got, want),
				      ".pyc %s:\ngot:\n%s\nwant:\n%s",
				      c->name, got, want);
				free(got);
				py_imports_release(&imps);
				check_truncations(data, len, 1, c->name);
			}
			free(data);
		}
		free(want);
	}
	/* python3's own reading of the sources is the expectation */
	if (compiled) {
		char *paths[ARRAY_SIZE(srccases)];
		struct lines ref = { 0 };

		for (size_t i = 0; i < ARRAY_SIZE(srccases); i++) {
			snprintf(path, sizeof(path), "%s/%s.py", dir,
				 srccases[i].name);
			paths[i] = lp_xstrdup(path);
		}
		CHECK(ref_run("py", paths, ARRAY_SIZE(srccases), dir, &ref),
		      "python3 failed on the sources");
		for (size_t i = 0; i < ARRAY_SIZE(srccases); i++) {
			const struct srccase *c = &srccases[i];
			char *want = want_text(c->want), *got;
			size_t pl = strlen(paths[i]);
			struct lines mine = { 0 };

			for (size_t k = 0; k < ref.n; k++) {
				char *t;

				if (strncmp(ref.v[k], paths[i], pl) ||
				    ref.v[k][pl] != '\t')
					continue;
				t = lp_xstrdup(ref.v[k] + pl + 1);
				for (char *p = t; *p; p++)
					if (*p == '\t')
						*p = '|';
				lines_add(&mine, t);
			}
			got = join_sorted(mine.v, mine.n);
			CHECK(!strcmp(got, want),
			      "python3 on %s:\ngot:\n%s\nwant:\n%s", c->name,
			      got, want);
			free(got);
			free(want);
			lines_free(&mine);
			free(paths[i]);
		}
		lines_free(&ref);
	}
	if (compiled) {
		snprintf(path, sizeof(path), "rm -rf '%s'", dir);
		if (system(path) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

/* ---- this host's stdlib against python3 --------------------------------- */

static struct lines walk_pyc, walk_py;
static bool walk_all; /* LP_PYIMPORT_ALL: the test and site directories too */

static int walk_one(const char *path, const struct stat *st, int type,
		    struct FTW *ftw)
{
	const char *name = path + ftw->base;
	size_t nl = strlen(name), tl = strlen(host.tag);

	(void)st;
	if (type == FTW_D && !walk_all &&
	    (!strcmp(name, "site-packages") || !strcmp(name, "dist-packages") ||
	     !strcmp(name, "test") || !strcmp(name, "tests") ||
	     !strcmp(name, "idle_test")))
		return FTW_SKIP_SUBTREE;
	if (type != FTW_F || strpbrk(path, "\t\n'"))
		return 0;
	/* __pycache__/NAME.<tag>.pyc (not the .opt-N ones) */
	if (ftw->base >= 12 &&
	    !strncmp(path + ftw->base - 12, "__pycache__/", 12) &&
	    nl > tl + 6 && !strcmp(name + nl - 4, ".pyc") &&
	    name[nl - tl - 5] == '.' &&
	    !strncmp(name + nl - tl - 4, host.tag, tl))
		lines_add(&walk_pyc, lp_xstrdup(path));
	else if (nl > 3 && !strcmp(name + nl - 3, ".py"))
		lines_add(&walk_py, lp_xstrdup(path));
	return 0;
}

/* our imports of each file as ref_run() lines */
static void our_lines(const char *mode, char *const *paths, size_t n,
		      struct lines *out, unsigned *errors)
{
	for (size_t i = 0; i < n; i++) {
		struct py_imports imps;
		struct lp_err err = { 0 };
		size_t len;
		uint8_t *data = check_slurp(paths[i], &len);
		int r;

		if (!data) {
			(*errors)++;
			continue;
		}
		r = !strcmp(mode, "pyc")
			    ? pyc(data, len, &imps, &err)
			    : src((const char *)data, len, &imps);
		free(data);
		if (r < 0) {
			char *l = lp_xmalloc(strlen(paths[i]) + 300);

			sprintf(l, "%s\tERR %d %s", paths[i], r, err.msg);
			lines_add(out, l);
			(*errors)++;
			continue;
		}
		CHECK(imps_sane(&imps), "%s", paths[i]);
		for (uint32_t k = 0; k < imps.n; k++) {
			char *t = imp_line(&imps.v[k]), *l;

			for (char *p = t; *p; p++)
				if (*p == '|')
					*p = '\t';
			l = lp_xmalloc(strlen(paths[i]) + strlen(t) + 2);
			sprintf(l, "%s\t%s", paths[i], t);
			lines_add(out, l);
			free(t);
		}
		py_imports_release(&imps);
	}
}

/* the lines of files python3 could not load are left out of both */
static void drop_failed(struct lines *ref, struct lines *ours,
			unsigned *failed)
{
	struct lines bad = { 0 };

	for (size_t i = 0; i < ref->n; i++) {
		char *t = strstr(ref->v[i], "\tERR ");

		if (t)
			{
			size_t n = (size_t)(t - ref->v[i]) + 1;
			char *p = lp_xmalloc(n + 1);

			memcpy(p, ref->v[i], n);
			p[n] = '\0';
			lines_add(&bad, p);
		}
	}
	*failed = (unsigned)bad.n;
	for (int side = 0; side < 2 && bad.n; side++) {
		struct lines *l = side ? ours : ref;
		size_t keep = 0;

		for (size_t i = 0; i < l->n; i++) {
			bool drop = false;

			for (size_t k = 0; k < bad.n && !drop; k++)
				drop = !strncmp(l->v[i], bad.v[k],
						strlen(bad.v[k]));
			if (drop)
				free(l->v[i]);
			else
				l->v[keep++] = l->v[i];
		}
		l->n = keep;
	}
	lines_free(&bad);
}

/* sorted line sets compared; the differences printed (20 at most) */
static unsigned diff_lines(struct lines *ref, struct lines *ours,
			   const char *what)
{
	unsigned diffs = 0;
	size_t i = 0, k = 0;

	qsort(ref->v, ref->n, sizeof(*ref->v), cmp_str);
	qsort(ours->v, ours->n, sizeof(*ours->v), cmp_str);
	while (i < ref->n || k < ours->n) {
		int c = i == ref->n ? 1
			: k == ours->n ? -1
				       : strcmp(ref->v[i], ours->v[k]);

		if (!c) {
			i++, k++;
			continue;
		}
		if (diffs++ < 20)
			fprintf(stderr, "%s: %s %s\n", what,
				c < 0 ? "python3 only:" : "ours only:",
				c < 0 ? ref->v[i] : ours->v[k]);
		if (c < 0)
			i++;
		else
			k++;
	}
	return diffs;
}

static void test_host(void)
{
	char dir[] = "/tmp/lp-pyimport-XXXXXX", cmd[PATH_MAX + 16];
	const char *all = getenv("LP_PYIMPORT_ALL");
	struct lines sample = { 0 };
	unsigned step;

	if (!have_host)
		return;
	walk_all = all && *all;
	step = walk_all ? 1 : 3;
	if (nftw(host.stdlib, walk_one, 32, FTW_PHYS | FTW_ACTIONRETVAL) != 0 ||
	    !walk_pyc.n ||
	    !mkdtemp(dir)) {
		printf("host: no compiled modules (%s) in %s: skipped\n",
		       host.tag, host.stdlib);
		lines_free(&walk_pyc);
		lines_free(&walk_py);
		return;
	}
	qsort(walk_py.v, walk_py.n, sizeof(*walk_py.v), cmp_str);
	/* every compiled module; every step-th source (python3 compiling
	 * them all takes a while); the test suite and the site directories
	 * are left out.  LP_PYIMPORT_ALL=1: everything */
	for (size_t i = 0; i < walk_py.n; i += step)
		lines_add(&sample, lp_xstrdup(walk_py.v[i]));
	for (int mode = 0; mode < 2; mode++) {
		const char *m = mode ? "py" : "pyc";
		struct lines *files = mode ? &sample : &walk_pyc;
		struct lines ref = { 0 }, ours = { 0 };
		unsigned errors = 0, failed = 0, diffs;
		size_t n;

		CHECK(ref_run(m, files->v, files->n, dir, &ref),
		      "python3 failed (%s)", m);
		our_lines(m, files->v, files->n, &ours, &errors);
		drop_failed(&ref, &ours, &failed);
		n = ref.n;
		diffs = diff_lines(&ref, &ours, m);
		CHECK(diffs == 0, "%s: %u differences", m, diffs);
		if (mode == 0)
			CHECK(errors == 0, "%u of the host's .pyc did not "
			      "parse", errors);
		printf("host %s: %zu %s files, %zu imports, %u differences, "
		       "%u python3 could not load\n", host.stdlib, files->n,
		       m, n, diffs, failed);
		lines_free(&ref);
		lines_free(&ours);
	}
	/* some large compiled modules, cut every few bytes */
	for (size_t i = 0, done = 0; i < walk_pyc.n && done < 3; i++) {
		size_t len;
		uint8_t *data = check_slurp(walk_pyc.v[i], &len);

		if (data && len > 20000) {
			check_truncations(data, len, 97, walk_pyc.v[i]);
			done++;
		}
		free(data);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	lines_free(&sample);
	lines_free(&walk_pyc);
	lines_free(&walk_py);
}

int main(int argc, char **argv)
{
	have_host = pyhost_info(argc > 1 ? argv[1] : NULL, &host);
	test_marshal_valid();
	test_marshal_bad();
	test_marshal_limits();
	test_sources();
	if (have_host)
		test_host();
	else
		printf("no python3 3.8-3.12: the host and compiled parts "
		       "skipped\n");
	if (failures) {
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("ok (%d checks)\n", checks);
	return 0;
}
