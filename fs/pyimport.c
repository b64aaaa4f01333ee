// SPDX-License-Identifier: Apache-2.0
/*
 * A Python module's imports: see pyimport.h.
 *
 * A .pyc is a 16-byte header (magic, flags, source mtime and size or
 * hash) and one marshalled code object.  Marshal is a tagged, recursive
 * format: a type byte (bit 7: "remember this object", for a later 'r'
 * reference by index), then the payload.  The objects are read into a
 * flat table (strings stay in the buffer), then the module's code object
 * is walked: for 3.8-3.12 an instruction is two bytes (opcode, argument;
 * EXTENDED_ARG prefixes widen the argument), and an import statement
 * compiles to LOAD_CONST level, LOAD_CONST from-list, IMPORT_NAME name.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LP_MODNAME "pyimport"
#include "fs/pyimport.h"

#define PYC_HEADER 16
#define MAX_DEPTH 64	   /* marshal nesting */
#define MAX_CODE_DEPTH 16  /* class bodies within class bodies */
#define MAX_LEVEL 64	   /* dots of a relative import */
#define MAX_FROM 256	   /* names of one from-list kept */
#define SRC_MAX_LINE 8192  /* a logical source line kept */
#define SRC_MAX_DEFS 128   /* nested def blocks followed */
#define CO_NEWLOCALS 0x0002 /* a function's code, not module or class */
#define OP_CACHE 0
#define OP_LOAD_CONST 100
#define OP_IMPORT_NAME 108
#define OP_EXTENDED_ARG 144

enum { MO_NONE, MO_INT, MO_STR, MO_SEQ, MO_CODE, MO_OTHER };

/* 20 bytes: a large module has a few hundred thousand objects */
struct mo {
	uint8_t t;
	uint8_t scanned; /* MO_CODE: walked already */
	union {
		int32_t v;		/* MO_INT (a level: small) */
		struct {
			uint32_t off, len; /* MO_STR: bytes of the
					    * buffer; MO_SEQ: kids */
		};
		struct {
			uint32_t flags; /* co_flags */
			uint32_t code, consts, names; /* object indexes */
		};
	};
};

struct mr {
	const uint8_t *b;
	size_t len, pos;
	struct mo *o;
	uint32_t n_o, cap_o;
	uint32_t *kids;
	uint32_t n_k, cap_k;
	uint32_t *refs;
	uint32_t n_r, cap_r;
	uint32_t *stk; /* items of the sequences being read */
	uint32_t n_s, cap_s;
	bool layout311; /* 3.11+: 5 leading longs, qualname, exception table */
	struct lp_err *err;
};

#define MR_NULL (-2) /* the '0' type: ends a dict */

static void grow(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t c = *cap ? *cap : 64;

	if (need <= *cap)
		return;
	while (c < need)
		c *= 2;
	*v = lp_xrealloc(*v, (size_t)c * elem);
	*cap = c;
}

static int32_t mr_fail(struct mr *r, const char *what)
{
	lp_err_set(r->err, EBADMSG, "pyc: %s at byte %zu", what, r->pos);
	return -1;
}

static bool mr_take(struct mr *r, size_t n, const uint8_t **p)
{
	if (n > r->len - r->pos)
		return false;
	if (p)
		*p = r->b + r->pos;
	r->pos += n;
	return true;
}

static bool mr_i32(struct mr *r, int32_t *v)
{
	const uint8_t *p;

	if (!mr_take(r, 4, &p))
		return false;
	*v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
		       (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
	return true;
}

static uint32_t mr_new(struct mr *r, uint8_t t)
{
	grow((void **)&r->o, &r->cap_o, r->n_o + 1, sizeof(*r->o));
	memset(&r->o[r->n_o], 0, sizeof(*r->o));
	r->o[r->n_o].t = t;
	return r->n_o++;
}

static int32_t mr_obj(struct mr *r, int depth);

/* n objects into a new sequence object */
static int32_t mr_seq(struct mr *r, int64_t n, int depth)
{
	uint32_t idx, base, sbase = r->n_s;

	/* every item takes a byte at least: nothing is reserved ahead of
	 * the items actually read */
	if (n < 0 || (uint64_t)n > r->len - r->pos)
		return mr_fail(r, "bad item count");
	idx = mr_new(r, MO_SEQ);
	for (int64_t i = 0; i < n; i++) {
		int32_t k = mr_obj(r, depth + 1);

		if (k < 0)
			return k == MR_NULL ? mr_fail(r, "NULL item") : -1;
		grow((void **)&r->stk, &r->cap_s, r->n_s + 1,
		     sizeof(*r->stk));
		r->stk[r->n_s++] = (uint32_t)k;
	}
	base = r->n_k;
	grow((void **)&r->kids, &r->cap_k, base + (uint32_t)n,
	     sizeof(*r->kids));
	if (n)
		memcpy(r->kids + base, r->stk + sbase,
		       (size_t)n * sizeof(*r->kids));
	r->n_k += (uint32_t)n;
	r->n_s = sbase;
	r->o[idx].off = base;
	r->o[idx].len = (uint32_t)n;
	return (int32_t)idx;
}

/* n objects read and dropped */
static int mr_skip_objs(struct mr *r, int n, int depth)
{
	for (int i = 0; i < n; i++) {
		int32_t k = mr_obj(r, depth + 1);

		if (k < 0)
			return k == MR_NULL ? mr_fail(r, "NULL field") : -1;
	}
	return 0;
}

static int32_t mr_code(struct mr *r, int depth)
{
	int32_t longs[6], code, consts, names, line;
	int nl = r->layout311 ? 5 : 6;
	uint32_t idx;

	for (int i = 0; i < nl; i++)
		if (!mr_i32(r, &longs[i]))
			return mr_fail(r, "truncated code object");
	code = mr_obj(r, depth + 1);
	consts = code < 0 ? code : mr_obj(r, depth + 1);
	names = consts < 0 ? consts : mr_obj(r, depth + 1);
	if (names < 0)
		return names == MR_NULL ? mr_fail(r, "NULL field") : -1;
	if (r->o[code].t != MO_STR || r->o[consts].t != MO_SEQ ||
	    r->o[names].t != MO_SEQ)
		return mr_fail(r, "code object of the wrong shape");
	/* 3.8-3.10: varnames, freevars, cellvars, filename, name;
	 * 3.11+: localsplusnames, localspluskinds, filename, name, qualname */
	if (mr_skip_objs(r, 5, depth) < 0)
		return -1;
	if (!mr_i32(r, &line))
		return mr_fail(r, "truncated code object");
	/* the line table (and the exception table) */
	if (mr_skip_objs(r, r->layout311 ? 2 : 1, depth) < 0)
		return -1;
	idx = mr_new(r, MO_CODE);
	r->o[idx].flags = (uint32_t)longs[nl - 1];
	r->o[idx].code = (uint32_t)code;
	r->o[idx].consts = (uint32_t)consts;
	r->o[idx].names = (uint32_t)names;
	return (int32_t)idx;
}

static int32_t mr_str(struct mr *r, size_t n)
{
	size_t at = r->pos;
	uint32_t idx;

	if (!mr_take(r, n, NULL))
		return mr_fail(r, "truncated string");
	idx = mr_new(r, MO_STR);
	r->o[idx].off = (uint32_t)at;
	r->o[idx].len = (uint32_t)n;
	return (int32_t)idx;
}

static int32_t mr_payload(struct mr *r, uint8_t type, int depth)
{
	const uint8_t *p;
	int32_t n;
	uint32_t idx;

	switch (type) {
	case '0':
		return MR_NULL;
	case 'N':
		return (int32_t)mr_new(r, MO_NONE);
	case 'F': case 'T': case 'S': case '.':
		return (int32_t)mr_new(r, MO_OTHER);
	case 'i':
		if (!mr_i32(r, &n))
			return mr_fail(r, "truncated int");
		idx = mr_new(r, MO_INT);
		r->o[idx].v = n;
		return (int32_t)idx;
	case 'I': case 'g':
		return mr_take(r, 8, NULL) ? (int32_t)mr_new(r, MO_OTHER)
					   : mr_fail(r, "truncated number");
	case 'y':
		return mr_take(r, 16, NULL) ? (int32_t)mr_new(r, MO_OTHER)
					    : mr_fail(r, "truncated number");
	case 'l':
		/* at least 2^30 (smaller ints are 'i'): no import level */
		if (!mr_i32(r, &n) || n == INT32_MIN)
			return mr_fail(r, "bad long");
		if (!mr_take(r, (size_t)llabs(n) * 2, &p))
			return mr_fail(r, "truncated long");
		return (int32_t)mr_new(r, MO_OTHER);
	case 'f': case 'x':
		for (int k = 0; k < (type == 'x' ? 2 : 1); k++)
			if (!mr_take(r, 1, &p) || !mr_take(r, *p, NULL))
				return mr_fail(r, "truncated number");
		return (int32_t)mr_new(r, MO_OTHER);
	case 's': case 't': case 'u': case 'a': case 'A':
		if (!mr_i32(r, &n) || n < 0)
			return mr_fail(r, "bad string length");
		return mr_str(r, (size_t)n);
	case 'z': case 'Z':
		if (!mr_take(r, 1, &p))
			return mr_fail(r, "truncated string");
		return mr_str(r, *p);
	case ')':
		if (!mr_take(r, 1, &p))
			return mr_fail(r, "truncated tuple");
		return mr_seq(r, *p, depth);
	case '(': case '[': case '<': case '>':
		if (!mr_i32(r, &n))
			return mr_fail(r, "truncated sequence");
		return mr_seq(r, n, depth);
	case '{':
		for (;;) {
			int32_t k = mr_obj(r, depth + 1);

			if (k == MR_NULL)
				return (int32_t)mr_new(r, MO_OTHER);
			if (k < 0 || (k = mr_obj(r, depth + 1)) < 0)
				return k == MR_NULL ? mr_fail(r, "NULL value")
						    : -1;
		}
	case 'c':
		return mr_code(r, depth);
	default:
		return mr_fail(r, "unknown object type");
	}
}

static int32_t mr_obj(struct mr *r, int depth)
{
	const uint8_t *p;
	uint8_t type;
	uint32_t slot = 0;
	bool ref;
	int32_t idx;

	if (depth > MAX_DEPTH)
		return mr_fail(r, "nested too deep");
	if (!mr_take(r, 1, &p))
		return mr_fail(r, "truncated");
	type = *p & 0x7f;
	ref = *p & 0x80;
	if (type == 'r') {
		int32_t i;

		if (!mr_i32(r, &i) || i < 0 || (uint32_t)i >= r->n_r ||
		    r->refs[i] == UINT32_MAX)
			return mr_fail(r, "bad reference");
		return (int32_t)r->refs[i];
	}
	if (ref) {
		if (type == '0')
			return mr_fail(r, "remembered NULL");
		grow((void **)&r->refs, &r->cap_r, r->n_r + 1,
		     sizeof(*r->refs));
		slot = r->n_r++;
		r->refs[slot] = UINT32_MAX; /* not complete: no reference */
	}
	idx = mr_payload(r, type, depth);
	if (ref && idx >= 0)
		r->refs[slot] = (uint32_t)idx;
	return idx;
}

static bool name_ok(const char *s, size_t n, bool dotted)
{
	if (!n || n >= PY_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(c >= 0x80 || c == '_' || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (dotted && c == '.' && i && i + 1 < n && s[i - 1] != '.')))
			return false;
	}
	return true;
}

static struct py_import *imp_add(struct py_imports *out, const char *name,
				 size_t len, uint32_t level)
{
	struct py_import *im;

	if (out->n >= PY_MAX_IMPORTS || level > MAX_LEVEL ||
	    (len && !name_ok(name, len, true)) || (!len && !level))
		return NULL;
	grow((void **)&out->v, &out->cap, out->n + 1, sizeof(*out->v));
	im = &out->v[out->n++];
	memset(im, 0, sizeof(*im));
	im->name = lp_xmalloc(len + 1);
	memcpy(im->name, name, len);
	im->name[len] = '\0';
	im->level = level;
	return im;
}

static void imp_from(struct py_import *im, const char *name, size_t len)
{
	uint32_t cap;

	if (!im || im->n_from >= MAX_FROM || !name_ok(name, len, false))
		return;
	cap = im->n_from; /* grown one at a time: from-lists are short */
	im->from = lp_xrealloc(im->from, (cap + 1) * sizeof(*im->from));
	im->from[im->n_from] = lp_xmalloc(len + 1);
	memcpy(im->from[im->n_from], name, len);
	im->from[im->n_from++][len] = '\0';
}

static const struct mo *mr_item(const struct mr *r, const struct mo *seq,
				int64_t i)
{
	if (i < 0 || i >= seq->len)
		return NULL;
	return &r->o[r->kids[seq->off + i]];
}

static void mr_import(const struct mr *r, const struct mo *c, uint32_t arg,
		      int64_t lvl, int64_t fl, struct py_imports *out)
{
	const struct mo *name = mr_item(r, &r->o[c->names], arg);
	const struct mo *consts = &r->o[c->consts];
	const struct mo *level = mr_item(r, consts, lvl);
	const struct mo *from = mr_item(r, consts, fl);
	struct py_import *im;

	if (!name || name->t != MO_STR)
		return;
	im = imp_add(out, (const char *)r->b + name->off, name->len,
		     level && level->t == MO_INT && level->v >= 0 &&
				     level->v <= MAX_LEVEL
			     ? (uint32_t)level->v
			     : 0);
	if (!im || !from || from->t != MO_SEQ)
		return;
	for (uint32_t i = 0; i < from->len; i++) {
		const struct mo *f = mr_item(r, from, i);

		if (f->t == MO_STR)
			imp_from(im, (const char *)r->b + f->off, f->len);
	}
}

/* the imports of code object idx, then of the class bodies it holds */
static void mr_scan(struct mr *r, uint32_t idx, int depth,
		    struct py_imports *out)
{
	const struct mo *c = &r->o[idx], *bc = &r->o[c->code];
	const struct mo *consts = &r->o[c->consts];
	const uint8_t *ins = r->b + bc->off;
	int64_t c1 = -1, c2 = -1;
	uint32_t ext = 0;

	r->o[idx].scanned = 1;
	for (uint32_t i = 0; i + 1 < bc->len; i += 2) {
		uint8_t op = ins[i];
		uint32_t arg = (ext << 8 | ins[i + 1]) & 0x7fffffffu;

		if (op == OP_EXTENDED_ARG) {
			ext = arg;
			continue;
		}
		ext = 0;
		if (op == OP_LOAD_CONST) {
			c2 = c1;
			c1 = arg;
		} else if (op == OP_IMPORT_NAME) {
			mr_import(r, c, arg, c2, c1, out);
			c1 = c2 = -1;
		} else if (op != OP_CACHE) {
			c1 = c2 = -1;
		}
	}
	if (depth >= MAX_CODE_DEPTH)
		return;
	for (uint32_t i = 0; i < consts->len; i++) {
		uint32_t k = r->kids[consts->off + i];

		if (r->o[k].t == MO_CODE && !r->o[k].scanned &&
		    !(r->o[k].flags & CO_NEWLOCALS))
			mr_scan(r, k, depth + 1, out);
	}
}

int py_pyc_imports(const void *data, size_t len, struct py_imports *ret,
		   struct lp_err *err)
{
	const uint8_t *b = data;
	struct mr r = { .b = b, .len = len, .err = err };
	uint16_t magic;
	int32_t top;
	int rc = 0;

	memset(ret, 0, sizeof(*ret));
	if (len < 4 || b[2] != '\r' || b[3] != '\n')
		return -ENOEXEC;
	magic = (uint16_t)(b[0] | b[1] << 8);
	if (magic < 3400 || magic >= 3550)
		return -ENOEXEC; /* before 3.8 or after 3.12 */
	if (len > UINT32_MAX)
		return lp_err_set(err, EFBIG, "pyc: %zu bytes", len);
	if (len < PYC_HEADER)
		return lp_err_set(err, EBADMSG, "pyc: truncated header");
	r.layout311 = magic >= 3450;
	r.pos = PYC_HEADER;
	top = mr_obj(&r, 0);
	if (top == MR_NULL || (top >= 0 && r.o[top].t != MO_CODE))
		top = mr_fail(&r, "not a code object");
	if (top < 0)
		rc = -EBADMSG;
	else
		mr_scan(&r, (uint32_t)top, 0, ret);
	free(r.o);
	free(r.kids);
	free(r.refs);
	free(r.stk);
	if (rc < 0)
		py_imports_release(ret);
	return rc;
}

void py_imports_release(struct py_imports *p)
{
	for (uint32_t i = 0; i < p->n; i++) {
		for (uint32_t k = 0; k < p->v[i].n_from; k++)
			free(p->v[i].from[k]);
		free(p->v[i].from);
		free(p->v[i].name);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}

/* ---- source text ---- */

struct src {
	char line[SRC_MAX_LINE];
	size_t n;
	bool long_line;
	int indent; /* of the logical line, -1 before its first token */
	int defs[SRC_MAX_DEFS];
	int n_defs;
};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

static bool word_at(const char *p, const char *end, const char *w)
{
	size_t n = strlen(w);

	return (size_t)(end - p) > n && !memcmp(p, w, n) &&
	       (p[n] == ' ' || p[n] == '\t' || p[n] == '(' ||
		(p[n] == '.' && !strcmp(w, "from")));
}

static const char *name_end(const char *p, const char *end, bool dotted)
{
	while (p < end && (*p == '_' || (unsigned char)*p >= 0x80 ||
			   (*p >= 'a' && *p <= 'z') ||
			   (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || (dotted && *p == '.')))
		p++;
	return p;
}

/*
 * A compound statement's header ("if x:", "else:", "class C(B):"): where
 * the simple statements that follow its colon on the same line start
 * (the end if none do); NULL if the line is not one.  Strings are blanked
 * already, so the first colon outside brackets ends the header (":=" is
 * not a colon).
 */
static const char *compound_body(const char *p, const char *end)
{
	static const char *const kw[] = { "if", "elif", "else", "try",
					  "except", "finally", "with", "for",
					  "while", "class" };
	const char *e = name_end(p, end, false);
	size_t n = (size_t)(e - p);
	bool is = false;
	int depth = 0;

	for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]) && !is; i++)
		is = strlen(kw[i]) == n && !memcmp(p, kw[i], n);
	if (!is)
		return NULL;
	for (; e < end; e++) {
		if (*e == '(' || *e == '[' || *e == '{')
			depth++;
		else if ((*e == ')' || *e == ']' || *e == '}') && depth)
			depth--;
		else if (*e == ':' && !depth && (e + 1 == end || e[1] != '='))
			return e + 1;
	}
	return NULL;
}

/* one simple statement */
static void src_stmt(const char *p, const char *end, struct py_imports *out)
{
	p = skip_ws(p, end);
	if (word_at(p, end, "import")) {
		p += 6;
		while (p < end) {
			const char *e;

			p = skip_ws(p, end);
			e = name_end(p, end, true);
			if (e > p)
				imp_add(out, p, (size_t)(e - p), 0);
			p = memchr(e, ',', (size_t)(end - e));
			if (!p)
				break;
			p++;
		}
	} else if (word_at(p, end, "from")) {
		struct py_import *im;
		uint32_t level = 0;
		const char *e;

		p = skip_ws(p + 4, end);
		while (p < end && *p == '.') {
			level++;
			p++;
		}
		e = name_end(p, end, true);
		if (level && word_at(p, end, "import"))
			e = p; /* "from .import x" */
		im = imp_add(out, p, (size_t)(e - p), level);
		p = skip_ws(e, end);
		if (!im || !word_at(p, end, "import"))
			return;
		p += 6;
		while (p < end) {
			p = skip_ws(p, end);
			if (p < end && *p == '(')
				p = skip_ws(p + 1, end);
			e = name_end(p, end, false);
			if (e > p)
				imp_from(im, p, (size_t)(e - p));
			p = memchr(e, ',', (size_t)(end - e));
			if (!p)
				break;
			p++;
		}
	}
}

static void src_line(struct src *s, struct py_imports *out)
{
	const char *p = s->line, *end = s->line + s->n;

	if (s->indent < 0 || s->long_line)
		goto done;
	while (s->n_defs && s->indent <= s->defs[s->n_defs - 1])
		s->n_defs--;
	p = skip_ws(p, end);
	if (word_at(p, end, "def") || word_at(p, end, "async")) {
		if (s->n_defs < SRC_MAX_DEFS)
			s->defs[s->n_defs++] = s->indent;
		goto done;
	}
	if (s->n_defs)
		goto done;
	/* "if x: import y", "class C: import y": the statements after the
	 * header run where the header does */
	{
		const char *body = compound_body(p, end);

		if (body)
			p = body;
	}
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));

		src_stmt(p, semi ? semi : end, out);
		p = semi ? semi + 1 : end;
	}
done:
	s->n = 0;
	s->long_line = false;
	s->indent = -1;
}

static void src_put(struct src *s, char c)
{
	if (s->n < sizeof(s->line))
		s->line[s->n++] = c;
	else
		s->long_line = true;
}

int py_source_imports(const char *t, size_t len, struct py_imports *ret)
{
	struct src *s = lp_xcalloc(1, sizeof(*s));
	const char *p = t, *end = t + len;
	int paren = 0;

	memset(ret, 0, sizeof(*ret));
	s->indent = -1;
	if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
		p += 3; /* a UTF-8 byte order mark */
	while (p < end) {
		char c = *p;

		if (s->indent < 0 && !paren) {
			int ind = 0;

			while (p < end && (*p == ' ' || *p == '\t' ||
					   *p == '\f')) {
				ind = *p == '\t' ? (ind / 8 + 1) * 8 : ind + 1;
				p++;
			}
			if (p == end)
				break;
			if (*p == '\n' || *p == '\r' || *p == '#') {
				while (p < end && *p != '\n')
					p++;
				p += p < end;
				continue;
			}
			s->indent = ind;
			c = *p;
		}
		if (c == '#') {
			while (p < end && *p != '\n')
				p++;
		} else if (c == '"' || c == '\'') {
			bool triple = end - p >= 3 && p[1] == c && p[2] == c;

			p += triple ? 3 : 1;
			while (p < end) {
				if (*p == '\\') {
					p += end - p >= 2 ? 2 : 1;
				} else if (*p == c && (!triple ||
						       (end - p >= 3 &&
							p[1] == c && p[2] == c))) {
					p += triple ? 3 : 1;
					break;
				} else if (*p == '\n' && !triple) {
					break; /* unterminated: the line ends */
				} else {
					p++;
				}
			}
			src_put(s, '"');
			src_put(s, '"');
		} else if (c == '\\' && end - p >= 2 && p[1] == '\n') {
			p += 2;
		} else if (c == '\\' && end - p >= 3 && p[1] == '\r' &&
			   p[2] == '\n') {
			p += 3; /* CRLF line ends */
		} else if (c == '\n') {
			if (paren)
				src_put(s, ' ');
			else
				src_line(s, ret);
			p++;
		} else {
			if (c == '(' || c == '[' || c == '{')
				paren++;
			else if ((c == ')' || c == ']' || c == '}') && paren)
				paren--;
			src_put(s, c == '\r' ? ' ' : c);
			p++;
		}
	}
	src_line(s, ret);
	free(s);
	return 0;
}
