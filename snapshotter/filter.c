/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd's filter language for List (github.com/containerd/containerd
 * filters package, as documented there):
 *
 *   filter    := selector ( ',' selector )*          (AND)
 *   selector  := fieldpath [ op value ]               (no op: "present")
 *   fieldpath := field ( '.' field )*
 *   field     := [A-Za-z0-9_]+ | quoted
 *   op        := '==' | '!=' | '~='                   (~= regular expression)
 *   value     := quoted | run of non-space, non-',' characters
 *   quoted    := "…" with Go escapes; with ~= also /…/ or |…|
 *
 * Several filters are ORed.  Snapshot fields: name, parent, kind (active,
 * view, committed), labels.<key>.
 */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "snapshotter/snapshotter-int.h"

enum op { OP_PRESENT, OP_EQ, OP_NE, OP_MATCH };

struct selector {
	char **path;
	size_t n_path;
	enum op op;
	char *value;
	regex_t re;
	bool re_ok;
};

struct conj {
	struct selector *sel;
	size_t n;
};

struct snap_filter {
	struct conj *any;
	size_t n;
};

struct scan {
	const char *in, *p;
	int idx; /* which filter, for messages */
	struct lp_err *err;
};

static int serr(struct scan *s, const char *what)
{
	return lp_err_set(s->err, -EINVAL, "filters: parse error in filter %d "
			  "at position %zu: %s: invalid argument", s->idx,
			  (size_t)(s->p - s->in), what);
}

static void skip_space(struct scan *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' ||
	       *s->p == '\r' || *s->p == '\v' || *s->p == '\f')
		s->p++;
}

static bool is_field(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_';
}

static int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void put_utf8(char **o, uint32_t cp)
{
	unsigned char *u = (unsigned char *)*o;

	if (cp < 0x80) {
		*u++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*u++ = (unsigned char)(0xc0 | (cp >> 6));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*u++ = (unsigned char)(0xe0 | (cp >> 12));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else {
		*u++ = (unsigned char)(0xf0 | (cp >> 18));
		*u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*u++ = (unsigned char)(0x80 | (cp & 0x3f));
	}
	*o = (char *)u;
}

/* At a quote character; the result never grows past the input. */
static int quoted(struct scan *s, bool alt, char **ret)
{
	char q = *s->p;
	char *out, *o;

	if (!alt && q != '"')
		return serr(s, "invalid quote encountered");
	s->p++;
	out = o = lp_xmalloc(strlen(s->p) + 8);
	for (;;) {
		char c = *s->p;

		if (c == '\0' || c == '\n') {
			free(out);
			return serr(s, "quoted literal not terminated");
		}
		s->p++;
		if (c == q)
			break;
		if (c != '\\') {
			*o++ = c;
			continue;
		}
		c = *s->p++;
		int digits = 0, base = 16;
		uint32_t v = 0;

		switch (c) {
		case 'a': *o++ = '\a'; continue;
		case 'b': *o++ = '\b'; continue;
		case 'f': *o++ = '\f'; continue;
		case 'n': *o++ = '\n'; continue;
		case 'r': *o++ = '\r'; continue;
		case 't': *o++ = '\t'; continue;
		case 'v': *o++ = '\v'; continue;
		case '\\': *o++ = '\\'; continue;
		case 'x': digits = 2; break;
		case 'u': digits = 4; break;
		case 'U': digits = 8; break;
		default:
			if (c == q) {
				*o++ = c;
				continue;
			}
			if (c >= '0' && c <= '7') {
				s->p--;
				digits = 3;
				base = 8;
				break;
			}
			free(out);
			s->p--;
			return serr(s, "illegal escape sequence");
		}
		for (int i = 0; i < digits; i++) {
			int h = hexv(*s->p);

			if (h < 0 || h >= base) {
				free(out);
				return serr(s, "illegal numeric escape "
					       "sequence");
			}
			v = v * (uint32_t)base + (uint32_t)h;
			s->p++;
		}
		if (c == 'x' || base == 8) {
			if (v > 255 || v == 0) {
				free(out);
				return serr(s, "illegal escape value");
			}
			*o++ = (char)v;
		} else {
			if (v == 0 || v > 0x10ffff ||
			    (v >= 0xd800 && v <= 0xdfff)) {
				free(out);
				return serr(s, "illegal escape value");
			}
			put_utf8(&o, v);
		}
	}
	*o = '\0';
	*ret = out;
	return 0;
}

static int field(struct scan *s, char **ret)
{
	const char *b;

	skip_space(s);
	if (*s->p == '"' || *s->p == '/' || *s->p == '|')
		return quoted(s, false, ret);
	b = s->p;
	while (is_field(*s->p))
		s->p++;
	if (s->p == b)
		return serr(s, "expected field or quoted");
	*ret = strndup(b, (size_t)(s->p - b));
	if (!*ret)
		abort();
	return 0;
}

static void selector_release(struct selector *sel)
{
	for (size_t i = 0; i < sel->n_path; i++)
		free(sel->path[i]);
	free(sel->path);
	free(sel->value);
	if (sel->re_ok)
		regfree(&sel->re);
}

static int selector(struct scan *s, struct selector *sel)
{
	char *f;
	int r;

	memset(sel, 0, sizeof(*sel));
	for (;;) {
		r = field(s, &f);
		if (r < 0)
			return r;
		sel->path = lp_xrealloc(sel->path,
					(sel->n_path + 1) * sizeof(char *));
		sel->path[sel->n_path++] = f;
		skip_space(s);
		if (*s->p != '.')
			break;
		s->p++;
	}
	if (*s->p == ',' || *s->p == '\0') {
		sel->op = OP_PRESENT;
		return 0;
	}
	if (!strncmp(s->p, "==", 2))
		sel->op = OP_EQ;
	else if (!strncmp(s->p, "!=", 2))
		sel->op = OP_NE;
	else if (!strncmp(s->p, "~=", 2))
		sel->op = OP_MATCH;
	else
		return serr(s, "expected an operator (\"==\"|\"!=\"|\"~=\")");
	s->p += 2;
	if (*s->p == '=' || *s->p == '!' || *s->p == '~')
		return serr(s, "unsupported operator");
	skip_space(s);
	if (*s->p == '"' || *s->p == '/' || *s->p == '|') {
		r = quoted(s, sel->op == OP_MATCH, &sel->value);
		if (r < 0)
			return r;
	} else {
		const char *b = s->p;

		if (*s->p == ',' || *s->p == '.' || *s->p == '\0')
			return serr(s, "expected value or quoted");
		while (*s->p && *s->p != ',' && *s->p != ' ' &&
		       *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
			s->p++;
		sel->value = strndup(b, (size_t)(s->p - b));
		if (!sel->value)
			abort();
	}
	if (sel->op == OP_MATCH)
		sel->re_ok = regcomp(&sel->re, sel->value,
				     REG_EXTENDED | REG_NOSUB) == 0;
	return 0;
}

void snap_filter_free(struct snap_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		for (size_t k = 0; k < f->any[i].n; k++)
			selector_release(&f->any[i].sel[k]);
		free(f->any[i].sel);
	}
	free(f->any);
	free(f);
}

int snap_filter_parse(const char *const *filters, size_t n,
		      struct snap_filter **ret, struct lp_err *err)
{
	struct snap_filter *f = lp_xcalloc(1, sizeof(*f));

	for (size_t i = 0; i < n; i++) {
		struct scan s = { filters[i], filters[i], (int)i, err };
		struct conj c = { 0 };

		if (!filters[i][0]) {
			/* "" matches everything: the whole filter does */
			snap_filter_free(f);
			*ret = NULL;
			return 0;
		}
		for (;;) {
			struct selector sel;
			int r = selector(&s, &sel);

			if (r < 0) {
				selector_release(&sel);
				for (size_t k = 0; k < c.n; k++)
					selector_release(&c.sel[k]);
				free(c.sel);
				snap_filter_free(f);
				return r;
			}
			c.sel = lp_xrealloc(c.sel, (c.n + 1) * sizeof(sel));
			c.sel[c.n++] = sel;
			skip_space(&s);
			if (*s.p == '\0')
				break;
			if (*s.p != ',') {
				for (size_t k = 0; k < c.n; k++)
					selector_release(&c.sel[k]);
				free(c.sel);
				snap_filter_free(f);
				return serr(&s, "unexpected input");
			}
			s.p++;
		}
		f->any = lp_xrealloc(f->any, (f->n + 1) * sizeof(c));
		f->any[f->n++] = c;
	}
	if (f->n == 0) {
		snap_filter_free(f);
		f = NULL;
	}
	*ret = f;
	return 0;
}

/* The field a path names, as containerd's adaptSnapshot resolves it. */
static const char *lookup(const struct snap_info *i, const struct selector *s,
			  char *buf, size_t cap)
{
	const char *f = s->path[0];

	if (!strcmp(f, "kind")) {
		switch (i->kind) {
		case SNAP_KIND_ACTIVE:
			return "active";
		case SNAP_KIND_VIEW:
			return "view";
		case SNAP_KIND_COMMITTED:
			return "committed";
		default:
			return NULL;
		}
	}
	if (!strcmp(f, "name"))
		return i->name;
	if (!strcmp(f, "parent"))
		return i->parent ? i->parent : "";
	if (!strcmp(f, "labels")) {
		size_t len = 0;

		if (i->n_labels == 0)
			return NULL;
		buf[0] = '\0';
		for (size_t k = 1; k < s->n_path; k++) {
			size_t l = strlen(s->path[k]);

			if (len + l + 2 > cap)
				return NULL;
			if (k > 1)
				buf[len++] = '.';
			memcpy(buf + len, s->path[k], l + 1);
			len += l;
		}
		return snap_labels_get(i->labels, i->n_labels, buf);
	}
	return NULL;
}

bool snap_filter_match(const struct snap_filter *f, const struct snap_info *i)
{
	char buf[SNAP_LABEL_MAX + 8];

	if (!f)
		return true;
	for (size_t a = 0; a < f->n; a++) {
		bool all = true;

		for (size_t k = 0; k < f->any[a].n && all; k++) {
			const struct selector *s = &f->any[a].sel[k];
			const char *v = lookup(i, s, buf, sizeof(buf));

			switch (s->op) {
			case OP_PRESENT:
				all = v != NULL;
				break;
			case OP_EQ:
				all = v && !strcmp(v, s->value);
				break;
			case OP_NE:
				all = strcmp(v ? v : "", s->value) != 0;
				break;
			case OP_MATCH:
				all = s->re_ok &&
				      regexec(&s->re, v ? v : "", 0, NULL,
					      0) == 0;
				break;
			}
		}
		if (all)
			return true;
	}
	return false;
}
