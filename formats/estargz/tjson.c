/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A JSON reader for TOCs: one pass over the text into a flat array of
 * nodes, in document order, each saying where its subtree ends.
 *
 * jansson built a hash table per entry object and a value per field, and
 * was two thirds of a TOC's load (the Debian base layer's 2 MB TOC: about
 * 60 ms alone, 180 ms while the other layers parse too, on the pull's
 * critical path).  A TOC is read once, front to back, so a tape does:
 * strings without escapes point into the text, the others are decoded
 * into one buffer of the text's size; numbers are parsed as they are met.
 *
 * What it accepts is what jansson accepted (RFC 8259, an object or an
 * array at the top, UTF-8 checked, no \u0000), so a TOC that loaded before
 * loads now: test-estargz and fuzz-tjson compare the two.
 */
#include <string.h>

#include "formats/estargz/estargz-int.h"

#define TJ_MAX_DEPTH 512
/*
 * A real TOC takes some 12 bytes of JSON per value, so the largest one
 * allowed (ESTARGZ_TOC_MAX_JSON, 256 MiB) has about 22 M values; a crafted
 * "[0,0,...]" could ask for one per two bytes.  This bounds the tape at
 * 768 MiB.
 */
#ifndef TJ_MAX_NODES /* the tests build with a small one */
#define TJ_MAX_NODES (32u << 20)
#endif

struct tj_parser {
	const char *start, *p, *end;
	struct tj_doc *d;
	char *esc_out; /* next free byte of d->esc */
	const char *err_at, *err_msg;
};

static bool tj_fail(struct tj_parser *ps, const char *at, const char *msg)
{
	if (!ps->err_msg) {
		ps->err_at = at;
		ps->err_msg = msg;
	}
	return false;
}

static void tj_ws(struct tj_parser *ps)
{
	const char *p = ps->p;

	while (p < ps->end &&
	       (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	ps->p = p;
}

static struct tj_node *tj_push(struct tj_parser *ps, enum tj_type type)
{
	struct tj_doc *d = ps->d;
	struct tj_node *n;

	if (d->count == TJ_MAX_NODES) {
		tj_fail(ps, ps->p, "too many values");
		return NULL;
	}
	if (d->count == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 64;
		d->n = lp_xrealloc(d->n, d->cap * sizeof(*d->n));
	}
	n = &d->n[d->count];
	*n = (struct tj_node){ .type = type, .next = d->count + 1 };
	d->count++;
	return n;
}

/* The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t tj_utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static int tj_hex4(const char *p, const char *end)
{
	int v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static char *tj_put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* An escape at p (after the backslash) into o; the new p, or NULL. */
static const char *tj_escape(struct tj_parser *ps, const char *p, char **o)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *k;
	int cp, lo;

	if (p == ps->end)
		return tj_fail(ps, p, "premature end of input"), NULL;
	if (*p != 'u') {
		k = strchr(from, *p);
		if (!k || !*p)
			return tj_fail(ps, p - 1, "invalid escape"), NULL;
		*(*o)++ = to[k - from];
		return p + 1;
	}
	cp = tj_hex4(p + 1, ps->end);
	if (cp < 0)
		return tj_fail(ps, p - 1, "invalid escape"), NULL;
	p += 5;
	if (cp == 0)
		return tj_fail(ps, p - 6, "\\u0000 is not allowed"), NULL;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return tj_fail(ps, p - 6, "invalid Unicode escape"), NULL;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
		    (lo = tj_hex4(p + 2, ps->end)) < 0xdc00 || lo > 0xdfff)
			return tj_fail(ps, p - 6, "invalid Unicode escape"),
			       NULL;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		p += 6;
	}
	*o = tj_put_utf8(*o, (uint32_t)cp);
	return p;
}

/* A string at ps->p (its opening quote) into n. */
static bool tj_string(struct tj_parser *ps, struct tj_node *n)
{
	const char *s = ps->p + 1, *p = s, *end = ps->end;
	char *o = NULL;

	/* the common case: plain ASCII, no escape */
	while (p < end && (unsigned char)*p >= 0x20 &&
	       (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
		p++;
	while (p < end && *p != '"') {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20)
			return tj_fail(ps, p, "control character in string");
		if (c == '\\') {
			if (!o) {
				/* decoded strings are never longer than their
				 * text: one buffer of the text's size holds
				 * all of them */
				if (!ps->d->esc) {
					ps->d->esc = lp_xmalloc(
						(size_t)(end - ps->start));
					ps->esc_out = ps->d->esc;
				}
				o = ps->esc_out;
				memcpy(o, s, (size_t)(p - s));
				o += p - s;
			}
			p = tj_escape(ps, p + 1, &o);
			if (!p)
				return false;
			continue;
		}
		if (c < 0x80) {
			if (o)
				*o++ = (char)c;
			p++;
			continue;
		}
		{
			size_t k = tj_utf8((const unsigned char *)p,
					   (const unsigned char *)end);

			if (!k)
				return tj_fail(ps, p, "invalid UTF-8 in string");
			if (o) {
				memcpy(o, p, k);
				o += k;
			}
			p += k;
		}
	}
	if (p == end)
		return tj_fail(ps, ps->p, "unterminated string");
	if (o) {
		n->v.s = ps->esc_out;
		n->len = (uint32_t)(o - ps->esc_out);
		ps->esc_out = o;
	} else {
		n->v.s = s;
		n->len = (uint32_t)(p - s);
	}
	ps->p = p + 1;
	return true;
}

static bool tj_digit(const char *p, const char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

static bool tj_number(struct tj_parser *ps)
{
	const char *p = ps->p, *end = ps->end, *start = p;
	bool neg = false, real = false, big = false;
	uint64_t v = 0;
	struct tj_node *n;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!tj_digit(p, end))
		return tj_fail(ps, start, "invalid token");
	if (*p == '0') {
		p++;
	} else {
		while (tj_digit(p, end)) {
			unsigned dg = (unsigned)(*p++ - '0');

			if (v > (UINT64_MAX - dg) / 10)
				big = true;
			else
				v = v * 10 + dg;
		}
	}
	if (p < end && *p == '.') {
		real = true;
		p++;
		if (!tj_digit(p, end))
			return tj_fail(ps, start, "invalid number");
		while (tj_digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		real = true;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!tj_digit(p, end))
			return tj_fail(ps, start, "invalid number");
		while (tj_digit(p, end))
			p++;
	}
	if (!real && (big || v > (uint64_t)INT64_MAX + neg))
		return tj_fail(ps, start, "too big integer");
	n = tj_push(ps, real ? TJ_REAL : TJ_INT);
	if (!n)
		return false;
	if (!real)
		n->v.i = neg ? (int64_t)(0 - v) : (int64_t)v;
	ps->p = p;
	return true;
}

static bool tj_literal(struct tj_parser *ps)
{
	static const struct {
		const char *word;
		enum tj_type type;
	} lit[] = { { "true", TJ_TRUE }, { "false", TJ_FALSE },
		    { "null", TJ_NULL } };

	for (size_t i = 0; i < ARRAY_SIZE(lit); i++) {
		size_t k = strlen(lit[i].word);

		if ((size_t)(ps->end - ps->p) >= k &&
		    !memcmp(ps->p, lit[i].word, k)) {
			if (!tj_push(ps, lit[i].type))
				return false;
			ps->p += k;
			return true;
		}
	}
	return tj_fail(ps, ps->p, "invalid token");
}

static bool tj_run(struct tj_parser *ps)
{
	uint32_t stack[TJ_MAX_DEPTH];
	unsigned depth = 0;
	struct tj_doc *d = ps->d;

	tj_ws(ps);
	if (ps->p == ps->end || (*ps->p != '{' && *ps->p != '['))
		return tj_fail(ps, ps->p, "'[' or '{' expected");
	for (;;) {
		struct tj_node *n;
		uint32_t top;
		char close;

		/* a value */
		tj_ws(ps);
		if (ps->p == ps->end)
			return tj_fail(ps, ps->p, "premature end of input");
		switch (*ps->p) {
		case '{':
		case '[': {
			bool obj = *ps->p == '{';

			if (depth == TJ_MAX_DEPTH)
				return tj_fail(ps, ps->p, "too deeply nested");
			if (!tj_push(ps, obj ? TJ_OBJ : TJ_ARR))
				return false;
			stack[depth++] = d->count - 1;
			ps->p++;
			tj_ws(ps);
			if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
				ps->p++;
				depth--;
				break;
			}
			if (obj)
				goto key;
			continue;
		}
		case '"':
			n = tj_push(ps, TJ_STR);
			if (!n || !tj_string(ps, n))
				return false;
			break;
		case 't':
		case 'f':
		case 'n':
			if (!tj_literal(ps))
				return false;
			break;
		default:
			if (!tj_number(ps))
				return false;
			break;
		}

		/* after a value: the next one, or the end of containers */
		for (;;) {
			if (depth == 0) {
				tj_ws(ps);
				if (ps->p != ps->end)
					return tj_fail(ps, ps->p,
						       "end of input expected");
				return true;
			}
			top = stack[depth - 1];
			d->n[top].len++;
			close = d->n[top].type == TJ_OBJ ? '}' : ']';
			tj_ws(ps);
			if (ps->p < ps->end && *ps->p == close) {
				ps->p++;
				d->n[top].next = d->count;
				depth--;
				continue;
			}
			if (ps->p < ps->end && *ps->p == ',') {
				ps->p++;
				break;
			}
			return tj_fail(ps, ps->p,
				       close == '}' ? "',' or '}' expected" :
						      "',' or ']' expected");
		}
		if (d->n[stack[depth - 1]].type == TJ_ARR)
			continue;
key:
		tj_ws(ps);
		if (ps->p == ps->end || *ps->p != '"')
			return tj_fail(ps, ps->p, "string expected as key");
		n = tj_push(ps, TJ_STR);
		if (!n || !tj_string(ps, n))
			return false;
		tj_ws(ps);
		if (ps->p == ps->end || *ps->p != ':')
			return tj_fail(ps, ps->p, "':' expected");
		ps->p++;
	}
}

int tj_parse(const char *text, size_t len, struct tj_doc *d,
	     struct lp_err *err)
{
	struct tj_parser ps = { .start = text, .p = text, .end = text + len,
				.d = d };
	int line = 1, col = 1;

	*d = (struct tj_doc){ 0 };
	if (len >= UINT32_MAX)
		return lp_err_set(err, EFBIG, "toc: %zu bytes of JSON", len);
	/* a TOC entry takes some 300 bytes and 25 values */
	d->cap = len / 12 + 16;
	d->n = lp_xmalloc(d->cap * sizeof(*d->n));
	if (tj_run(&ps))
		return 0;
	for (const char *p = text; p < ps.err_at; p++) {
		if (*p == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	tj_free(d);
	return lp_err_set(err, EINVAL, "toc: bad JSON at %d:%d: %s", line, col,
			  ps.err_msg);
}

void tj_free(struct tj_doc *d)
{
	free(d->n);
	free(d->esc);
	*d = (struct tj_doc){ 0 };
}
