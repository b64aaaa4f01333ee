/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small TOML 1.0 reader: one pass over the bytes, building a value tree.
 * Written from the TOML 1.0.0 specification (toml.io/en/v1.0.0).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/toml.h"

/* value->flags */
#define T_HEADER 0x1  /* table defined by a [header] (or the root) */
#define T_IMPLICIT 0x2 /* table created as a parent in a [a.b] header */
#define T_DOTTED 0x4  /* table created by a dotted key */
#define T_SEALED 0x8  /* inline table, or an array written as a value */
#define T_AOT 0x10    /* array created by [[header]] */

#define MAX_DEPTH 64

struct parser {
	const char *p, *end;
	const char *line_start;
	unsigned int line;
	int depth;
	struct lp_err *err;
};

static int perr(struct parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "'x'" for printable ASCII, else "byte 0xNN", for messages */
static const char *charname(int c, char buf[16])
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else
		snprintf(buf, 16, "byte 0x%02x", c & 0xff);
	return buf;
}

static int perr(struct parser *ps, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lp_err_set(ps->err, -EINVAL, "line %u, column %zu: %s", ps->line,
			  (size_t)(ps->p - ps->line_start) + 1, msg);
}

const char *lp_toml_type_name(enum lp_toml_type t)
{
	switch (t) {
	case LP_TOML_STRING:
		return "a string";
	case LP_TOML_INT:
		return "an integer";
	case LP_TOML_FLOAT:
		return "a float";
	case LP_TOML_BOOL:
		return "a boolean";
	case LP_TOML_DATETIME:
		return "a date-time";
	case LP_TOML_ARRAY:
		return "an array";
	case LP_TOML_TABLE:
		return "a table";
	}
	return "a value";
}

/* ---- tree ----------------------------------------------------------- */

static struct lp_toml_value *val_new(enum lp_toml_type t, unsigned int line)
{
	struct lp_toml_value *v = lp_xcalloc(1, sizeof(*v));

	v->type = t;
	v->line = line;
	return v;
}

void lp_toml_free(struct lp_toml_value *v)
{
	if (!v)
		return;
	switch (v->type) {
	case LP_TOML_STRING:
	case LP_TOML_DATETIME:
		free(v->s);
		break;
	case LP_TOML_ARRAY:
		for (size_t i = 0; i < v->arr.n; i++)
			lp_toml_free(v->arr.items[i]);
		free(v->arr.items);
		break;
	case LP_TOML_TABLE:
		for (size_t i = 0; i < v->tab.n; i++) {
			free(v->tab.kv[i].key);
			lp_toml_free(v->tab.kv[i].val);
		}
		free(v->tab.kv);
		break;
	default:
		break;
	}
	free(v);
}

const struct lp_toml_value *lp_toml_table_get(const struct lp_toml_value *tab,
					      const char *key)
{
	if (!tab || tab->type != LP_TOML_TABLE)
		return NULL;
	for (size_t i = 0; i < tab->tab.n; i++)
		if (!strcmp(tab->tab.kv[i].key, key))
			return tab->tab.kv[i].val;
	return NULL;
}

static struct lp_toml_value *tab_get(struct lp_toml_value *tab, const char *key)
{
	return (struct lp_toml_value *)lp_toml_table_get(tab, key);
}

/* Takes ownership of key and val. */
static void tab_put(struct lp_toml_value *tab, char *key,
		    struct lp_toml_value *val)
{
	lp_grow((void **)&tab->tab.kv, sizeof(*tab->tab.kv), &tab->tab.cap,
		tab->tab.n + 1);
	tab->tab.kv[tab->tab.n].key = key;
	tab->tab.kv[tab->tab.n].val = val;
	tab->tab.n++;
}

static void arr_push(struct lp_toml_value *arr, struct lp_toml_value *v)
{
	lp_grow((void **)&arr->arr.items, sizeof(*arr->arr.items),
		&arr->arr.cap, arr->arr.n + 1);
	arr->arr.items[arr->arr.n++] = v;
}

static void seal(struct lp_toml_value *v)
{
	v->flags |= T_SEALED;
	if (v->type == LP_TOML_TABLE)
		for (size_t i = 0; i < v->tab.n; i++)
			seal(v->tab.kv[i].val);
	else if (v->type == LP_TOML_ARRAY)
		for (size_t i = 0; i < v->arr.n; i++)
			seal(v->arr.items[i]);
}

/* ---- a growable byte buffer for strings and keys ----------------------- */

struct sbuf {
	char *s;
	size_t n, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	lp_grow((void **)&b->s, 1, &b->cap, b->n + n + 1);
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void sb_addc(struct sbuf *b, char c)
{
	sb_add(b, &c, 1);
}

static char *sb_take(struct sbuf *b)
{
	if (!b->s)
		return lp_xstrdup("");
	b->n = b->cap = 0;
	return TAKE_PTR(b->s);
}

static void sb_utf8(struct sbuf *b, uint32_t cp)
{
	char o[4];
	size_t n;

	if (cp < 0x80) {
		o[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		o[0] = (char)(0xf0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	sb_add(b, o, n);
}

/*
 * Length of the UTF-8 sequence at p (1..4), or 0 if it is invalid
 * (overlong, surrogate, above U+10FFFF, truncated).
 */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* ---- lexing helpers ------------------------------------------------- */

static bool at_end(struct parser *ps)
{
	return ps->p >= ps->end;
}

static int peek(struct parser *ps)
{
	return at_end(ps) ? -1 : (unsigned char)*ps->p;
}

static int peek_at(struct parser *ps, size_t k)
{
	return (size_t)(ps->end - ps->p) > k ? (unsigned char)ps->p[k] : -1;
}

static void skip_ws(struct parser *ps)
{
	while (!at_end(ps) && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

static bool is_newline(struct parser *ps)
{
	return peek(ps) == '\n' || (peek(ps) == '\r' && peek_at(ps, 1) == '\n');
}

static void eat_newline(struct parser *ps)
{
	if (peek(ps) == '\r')
		ps->p++;
	ps->p++;
	ps->line++;
	ps->line_start = ps->p;
}

/* Control characters other than tab are not allowed in comments/strings. */
static bool is_bad_ctl(int c)
{
	return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

/* Skips a comment, if any.  The newline is left in place. */
static int skip_comment(struct parser *ps)
{
	if (peek(ps) != '#')
		return 0;
	while (!at_end(ps) && !is_newline(ps)) {
		int c = peek(ps);
		size_t n;

		if (is_bad_ctl(c))
			return perr(ps, "control character 0x%02x in a comment",
				    c);
		n = utf8_len((const unsigned char *)ps->p,
			     (const unsigned char *)ps->end);
		if (!n)
			return perr(ps, "invalid UTF-8 in a comment");
		ps->p += n;
	}
	return 0;
}

/* Skips whitespace, comments and newlines (inside arrays). */
static int skip_ws_nl(struct parser *ps)
{
	for (;;) {
		int r;

		skip_ws(ps);
		r = skip_comment(ps);
		if (r < 0)
			return r;
		if (!is_newline(ps))
			return 0;
		eat_newline(ps);
	}
}

/* After a key/value pair or a header: only a comment, then end of line. */
static int expect_eol(struct parser *ps)
{
	int r;

	skip_ws(ps);
	r = skip_comment(ps);
	if (r < 0)
		return r;
	if (at_end(ps))
		return 0;
	if (!is_newline(ps)) {
		char cb[16];

		return perr(ps, "expected the end of the line, found %s",
			    charname(peek(ps), cb));
	}
	eat_newline(ps);
	return 0;
}

/* ---- strings -------------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_escape(struct parser *ps, struct sbuf *b)
{
	int c = peek(ps);
	int digits;
	uint32_t cp = 0;

	ps->p++;
	switch (c) {
	case 'b':
		sb_addc(b, '\b');
		return 0;
	case 't':
		sb_addc(b, '\t');
		return 0;
	case 'n':
		sb_addc(b, '\n');
		return 0;
	case 'f':
		sb_addc(b, '\f');
		return 0;
	case 'r':
		sb_addc(b, '\r');
		return 0;
	case '"':
		sb_addc(b, '"');
		return 0;
	case '\\':
		sb_addc(b, '\\');
		return 0;
	case 'u':
		digits = 4;
		break;
	case 'U':
		digits = 8;
		break;
	default:
		ps->p--;
		return perr(ps, "invalid escape sequence");
	}
	for (int i = 0; i < digits; i++) {
		int h = hexval(peek(ps));

		if (h < 0)
			return perr(ps, "\\%c needs %d hex digits", c, digits);
		cp = (cp << 4) | (uint32_t)h;
		ps->p++;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return perr(ps, "escape is not a Unicode scalar value");
	if (cp == 0) /* values are C strings */
		return perr(ps, "\\u0000 is not supported");
	sb_utf8(b, cp);
	return 0;
}

/* Adds one (validated) UTF-8 character of string content. */
static int string_char(struct parser *ps, struct sbuf *b)
{
	size_t n;

	if (is_bad_ctl(peek(ps)))
		return perr(ps, "control character 0x%02x in a string",
			    peek(ps));
	n = utf8_len((const unsigned char *)ps->p,
		     (const unsigned char *)ps->end);
	if (!n)
		return perr(ps, "invalid UTF-8 in a string");
	sb_add(b, ps->p, n);
	ps->p += n;
	return 0;
}

/* At the opening quote(s).  Returns a malloc'd string in *ret. */
static int parse_string(struct parser *ps, char **ret)
{
	char q = *ps->p;
	bool multi = peek_at(ps, 1) == q && peek_at(ps, 2) == q;
	bool literal = q == '\'';
	struct sbuf b = { 0 };
	int r = 0;

	ps->p += multi ? 3 : 1;
	if (multi && is_newline(ps))
		eat_newline(ps);
	for (;;) {
		int c = peek(ps);

		if (c < 0) {
			r = perr(ps, "unterminated string");
			break;
		}
		if (c == q) {
			if (!multi) {
				ps->p++;
				break;
			}
			if (peek_at(ps, 1) == q && peek_at(ps, 2) == q) {
				/* up to two more quotes belong to the string */
				size_t extra = 0;

				while (extra < 2 && peek_at(ps, 3 + extra) == q)
					extra++;
				sb_add(&b, ps->p, extra);
				ps->p += 3 + extra;
				break;
			}
			sb_addc(&b, q);
			ps->p++;
			continue;
		}
		if (is_newline(ps)) {
			if (!multi) {
				r = perr(ps, "newline in a single-line string");
				break;
			}
			eat_newline(ps);
			sb_addc(&b, '\n');
			continue;
		}
		if (c == '\\' && !literal) {
			ps->p++;
			if (multi) {
				/* line-ending backslash: trim up to the next
				 * non-whitespace character */
				const char *save = ps->p;

				skip_ws(ps);
				if (is_newline(ps)) {
					while (is_newline(ps) ||
					       peek(ps) == ' ' ||
					       peek(ps) == '\t') {
						if (is_newline(ps))
							eat_newline(ps);
						else
							ps->p++;
					}
					continue;
				}
				ps->p = save;
			}
			r = parse_escape(ps, &b);
			if (r < 0)
				break;
			continue;
		}
		r = string_char(ps, &b);
		if (r < 0)
			break;
	}
	if (r < 0) {
		free(b.s);
		return r;
	}
	*ret = sb_take(&b);
	return 0;
}

/* ---- keys ----------------------------------------------------------- */

static bool is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

struct keypath {
	char **parts;
	size_t n, cap;
};

static void keypath_release(struct keypath *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->parts[i]);
	free(k->parts);
	k->parts = NULL;
	k->n = k->cap = 0;
}

static int parse_key_part(struct parser *ps, char **ret)
{
	int c = peek(ps);

	if (c == '"' || c == '\'') {
		if (peek_at(ps, 1) == c && peek_at(ps, 2) == c)
			return perr(ps, "multi-line strings cannot be keys");
		return parse_string(ps, ret);
	}
	if (!is_bare(c)) {
		char cb[16];

		return c < 0 || c == '\n' || c == '\r' ?
			       perr(ps, "expected a key") :
			       perr(ps, "unexpected %s where a key was "
					"expected", charname(c, cb));
	}
	const char *s = ps->p;

	while (is_bare(peek(ps)))
		ps->p++;
	*ret = strndup(s, (size_t)(ps->p - s));
	if (!*ret)
		abort();
	return 0;
}

/* key ( '.' key )*, with whitespace allowed around the dots */
static int parse_key(struct parser *ps, struct keypath *k)
{
	for (;;) {
		char *part;
		int r;

		skip_ws(ps);
		r = parse_key_part(ps, &part);
		if (r < 0)
			return r;
		if (k->n >= 64) {
			free(part);
			return perr(ps, "too many dotted key parts");
		}
		lp_grow((void **)&k->parts, sizeof(*k->parts), &k->cap,
			k->n + 1);
		k->parts[k->n++] = part;
		skip_ws(ps);
		if (peek(ps) != '.')
			return 0;
		ps->p++;
	}
}

/* ---- numbers, booleans, date-times ----------------------------------- */

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* Digits with single underscores between them, in base; into buf. */
static bool copy_digits(const char **s, const char *e, int base, char *buf,
			size_t *bn, size_t cap)
{
	bool need_digit = true;

	if (*bn >= cap)
		return false; /* no room even for the terminator */
	while (*s < e) {
		int c = (unsigned char)**s;
		int v = hexval(c);

		if (c == '_') {
			if (need_digit)
				return false;
			need_digit = true;
			(*s)++;
			continue;
		}
		if (v < 0 || v >= base)
			break;
		if (*bn + 1 >= cap)
			return false;
		buf[(*bn)++] = (char)c;
		need_digit = false;
		(*s)++;
	}
	buf[*bn] = '\0';
	return !need_digit;
}

static bool dt_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return true;
}

static int dt_num(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* HH:MM:SS(.frac)? at s; returns the length consumed or 0. */
static size_t dt_time(const char *s, size_t n)
{
	size_t k = 8;

	if (n < 8 || !dt_digits(s, 2) || s[2] != ':' || !dt_digits(s + 3, 2) ||
	    s[5] != ':' || !dt_digits(s + 6, 2))
		return 0;
	if (dt_num(s, 2) > 23 || dt_num(s + 3, 2) > 59 || dt_num(s + 6, 2) > 60)
		return 0;
	if (k < n && s[k] == '.') {
		size_t d = ++k;

		while (k < n && is_digit((unsigned char)s[k]))
			k++;
		if (k == d)
			return 0;
	}
	return k;
}

/* Validates a whole date-time token (RFC 3339 forms TOML allows). */
static bool dt_valid(const char *s, size_t n)
{
	size_t k;

	if (n >= 3 && s[2] == ':')
		return dt_time(s, n) == n;
	if (n < 10 || !dt_digits(s, 4) || s[4] != '-' || !dt_digits(s + 5, 2) ||
	    s[7] != '-' || !dt_digits(s + 8, 2))
		return false;
	if (dt_num(s + 5, 2) < 1 || dt_num(s + 5, 2) > 12 ||
	    dt_num(s + 8, 2) < 1 || dt_num(s + 8, 2) > 31)
		return false;
	if (n == 10)
		return true;
	if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
		return false;
	k = dt_time(s + 11, n - 11);
	if (!k)
		return false;
	k += 11;
	if (k == n)
		return true;
	if ((s[k] == 'Z' || s[k] == 'z') && k + 1 == n)
		return true;
	if ((s[k] == '+' || s[k] == '-') && n - k == 6 &&
	    dt_digits(s + k + 1, 2) && s[k + 3] == ':' &&
	    dt_digits(s + k + 4, 2))
		return dt_num(s + k + 1, 2) <= 23 && dt_num(s + k + 4, 2) <= 59;
	return false;
}

static bool is_value_end(int c)
{
	return c < 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == ',' || c == ']' || c == '}' || c == '#';
}

static int parse_scalar(struct parser *ps, struct lp_toml_value **ret)
{
	const char *s = ps->p, *e;
	unsigned int line = ps->line;
	char buf[128];
	size_t tn, bn = 0;
	bool neg = false;

	while (!is_value_end(peek(ps)))
		ps->p++;
	/* "1979-05-27 07:32:00": a date, a space, then a time */
	if (ps->p - s == 10 && peek(ps) == ' ' && dt_valid(s, 10) &&
	    ps->end - ps->p > 3 && is_digit(peek_at(ps, 1)) &&
	    is_digit(peek_at(ps, 2)) && peek_at(ps, 3) == ':') {
		ps->p++;
		while (!is_value_end(peek(ps)))
			ps->p++;
	}
	e = ps->p;
	tn = (size_t)(e - s);
	if (tn == 0) {
		char cb[16];

		return peek(ps) < 0 || is_newline(ps) ?
			       perr(ps, "expected a value") :
			       perr(ps, "unexpected %s where a value was "
					"expected", charname(peek(ps), cb));
	}
	if ((tn == 4 && !memcmp(s, "true", 4)) ||
	    (tn == 5 && !memcmp(s, "false", 5))) {
		*ret = val_new(LP_TOML_BOOL, line);
		(*ret)->b = tn == 4;
		return 0;
	}
	/* date-times: NNNN-… or NN:… */
	if ((tn >= 10 && dt_digits(s, 4) && s[4] == '-') ||
	    (tn >= 8 && dt_digits(s, 2) && s[2] == ':')) {
		if (!dt_valid(s, tn)) {
			ps->p = s;
			return perr(ps, "invalid date-time '%.*s'",
				    (int)(tn > 40 ? 40 : tn), s);
		}
		*ret = val_new(LP_TOML_DATETIME, line);
		(*ret)->s = strndup(s, tn);
		if (!(*ret)->s)
			abort();
		return 0;
	}

	const char *q = s;

	if (*q == '+' || *q == '-') {
		neg = *q == '-';
		buf[bn++] = *q++;
	}
	if (e - q == 3 && (!memcmp(q, "inf", 3) || !memcmp(q, "nan", 3))) {
		*ret = val_new(LP_TOML_FLOAT, line);
		(*ret)->f = q[0] == 'i' ? (neg ? -INFINITY : INFINITY) : NAN;
		return 0;
	}
	if (q == s && e - q > 2 && q[0] == '0' &&
	    (q[1] == 'x' || q[1] == 'o' || q[1] == 'b')) {
		int base = q[1] == 'x' ? 16 : q[1] == 'o' ? 8 : 2;
		uint64_t v = 0;

		q += 2;
		if (!copy_digits(&q, e, base, buf, &bn, sizeof(buf)) || q != e)
			goto bad;
		for (size_t i = 0; i < bn; i++) {
			if (v > (UINT64_MAX >> 4))
				goto range;
			v = v * (uint64_t)base + (uint64_t)hexval(buf[i]);
		}
		if (v > INT64_MAX)
			goto range;
		*ret = val_new(LP_TOML_INT, line);
		(*ret)->i = (int64_t)v;
		return 0;
	}
	/* decimal integer part: no leading zeros */
	{
		size_t d0 = bn;
		bool is_float = false;

		if (!copy_digits(&q, e, 10, buf, &bn, sizeof(buf)))
			goto bad;
		if (bn - d0 > 1 && buf[d0] == '0')
			goto bad;
		if (q < e && *q == '.') {
			if (bn + 2 >= sizeof(buf))
				goto bad;
			buf[bn++] = *q++;
			if (!copy_digits(&q, e, 10, buf, &bn, sizeof(buf)))
				goto bad;
			is_float = true;
		}
		if (q < e && (*q == 'e' || *q == 'E')) {
			if (bn + 2 >= sizeof(buf))
				goto bad;
			buf[bn++] = *q++;
			if (q < e && (*q == '+' || *q == '-'))
				buf[bn++] = *q++;
			if (!copy_digits(&q, e, 10, buf, &bn, sizeof(buf)))
				goto bad;
			is_float = true;
		}
		if (q != e)
			goto bad;
		if (is_float) {
			*ret = val_new(LP_TOML_FLOAT, line);
			(*ret)->f = strtod(buf, NULL);
			return 0;
		}
		errno = 0;
		long long v = strtoll(buf, NULL, 10);

		if (errno == ERANGE)
			goto range;
		*ret = val_new(LP_TOML_INT, line);
		(*ret)->i = v;
		return 0;
	}
bad:
	ps->p = s;
	return perr(ps, "invalid value '%.*s'", (int)(tn > 40 ? 40 : tn), s);
range:
	ps->p = s;
	return perr(ps, "integer '%.*s' out of range", (int)(tn > 40 ? 40 : tn),
		    s);
}

/* ---- values --------------------------------------------------------- */

static int parse_value(struct parser *ps, struct lp_toml_value **ret);
static int set_dotted(struct parser *ps, struct lp_toml_value *tab,
		      struct keypath *k, struct lp_toml_value *val);

static int parse_array(struct parser *ps, struct lp_toml_value **ret)
{
	struct lp_toml_value *arr = val_new(LP_TOML_ARRAY, ps->line);
	int r;

	ps->p++; /* '[' */
	for (;;) {
		struct lp_toml_value *v;

		r = skip_ws_nl(ps);
		if (r < 0)
			goto fail;
		if (peek(ps) == ']') {
			ps->p++;
			break;
		}
		r = parse_value(ps, &v);
		if (r < 0)
			goto fail;
		arr_push(arr, v);
		r = skip_ws_nl(ps);
		if (r < 0)
			goto fail;
		if (peek(ps) == ',') {
			ps->p++;
			continue;
		}
		if (peek(ps) == ']') {
			ps->p++;
			break;
		}
		r = peek(ps) < 0 ? perr(ps, "unterminated array") :
				   perr(ps, "expected ',' or ']' in an array");
		goto fail;
	}
	*ret = arr;
	return 0;
fail:
	lp_toml_free(arr);
	return r;
}

static int parse_inline_table(struct parser *ps, struct lp_toml_value **ret)
{
	struct lp_toml_value *tab = val_new(LP_TOML_TABLE, ps->line);
	int r;

	ps->p++; /* '{' */
	skip_ws(ps);
	if (peek(ps) == '}') {
		ps->p++;
		goto done;
	}
	for (;;) {
		struct keypath k = { 0 };
		struct lp_toml_value *v;

		r = parse_key(ps, &k);
		if (r < 0) {
			keypath_release(&k);
			goto fail;
		}
		if (peek(ps) != '=') {
			keypath_release(&k);
			r = perr(ps, "expected '=' after a key");
			goto fail;
		}
		ps->p++;
		skip_ws(ps);
		r = parse_value(ps, &v);
		if (r < 0) {
			keypath_release(&k);
			goto fail;
		}
		r = set_dotted(ps, tab, &k, v);
		keypath_release(&k);
		if (r < 0)
			goto fail;
		skip_ws(ps);
		if (peek(ps) == ',') {
			ps->p++;
			continue;
		}
		if (peek(ps) == '}') {
			ps->p++;
			break;
		}
		r = perr(ps, "expected ',' or '}' in an inline table");
		goto fail;
	}
done:
	seal(tab);
	*ret = tab;
	return 0;
fail:
	lp_toml_free(tab);
	return r;
}

static int parse_value(struct parser *ps, struct lp_toml_value **ret)
{
	int c = peek(ps), r;

	if (ps->depth >= MAX_DEPTH)
		return perr(ps, "values nested too deeply");
	ps->depth++;
	if (c == '"' || c == '\'') {
		unsigned int line = ps->line;
		char *s;

		r = parse_string(ps, &s);
		if (r == 0) {
			*ret = val_new(LP_TOML_STRING, line);
			(*ret)->s = s;
		}
	} else if (c == '[') {
		r = parse_array(ps, ret);
		if (r == 0)
			(*ret)->flags |= T_SEALED;
	} else if (c == '{') {
		r = parse_inline_table(ps, ret);
	} else {
		r = parse_scalar(ps, ret);
	}
	ps->depth--;
	return r;
}

/* ---- tables --------------------------------------------------------- */

/* Sets tab[k...] = val through dotted-key tables.  Owns val. */
static int set_dotted(struct parser *ps, struct lp_toml_value *tab,
		      struct keypath *k, struct lp_toml_value *val)
{
	for (size_t i = 0; i + 1 < k->n; i++) {
		struct lp_toml_value *sub = tab_get(tab, k->parts[i]);

		if (!sub) {
			sub = val_new(LP_TOML_TABLE, ps->line);
			sub->flags |= T_DOTTED;
			tab_put(tab, lp_xstrdup(k->parts[i]), sub);
		} else if (sub->type != LP_TOML_TABLE ||
			   !(sub->flags & T_DOTTED) ||
			   (sub->flags & T_SEALED)) {
			lp_toml_free(val);
			return perr(ps, "key '%s' (line %u) cannot be extended "
					"with a dotted key",
				    k->parts[i], sub->line);
		}
		tab = sub;
	}
	struct lp_toml_value *old = tab_get(tab, k->parts[k->n - 1]);

	if (old) {
		lp_toml_free(val);
		return perr(ps, "duplicate key '%s' (first defined on line %u)",
			    k->parts[k->n - 1], old->line);
	}
	tab_put(tab, lp_xstrdup(k->parts[k->n - 1]), val);
	return 0;
}

/* [a.b.c] or [[a.b.c]]: returns the table that key/values now go into. */
static int open_header(struct parser *ps, struct lp_toml_value *root,
		       struct keypath *k, bool aot,
		       struct lp_toml_value **ret)
{
	struct lp_toml_value *tab = root;

	for (size_t i = 0; i + 1 < k->n; i++) {
		struct lp_toml_value *sub = tab_get(tab, k->parts[i]);

		if (!sub) {
			sub = val_new(LP_TOML_TABLE, ps->line);
			sub->flags |= T_IMPLICIT;
			tab_put(tab, lp_xstrdup(k->parts[i]), sub);
		} else if (sub->type == LP_TOML_ARRAY &&
			   (sub->flags & T_AOT) && sub->arr.n) {
			sub = sub->arr.items[sub->arr.n - 1];
		} else if (sub->type != LP_TOML_TABLE ||
			   (sub->flags & T_SEALED)) {
			return perr(ps, "key '%s' (line %u) is %s, not a table",
				    k->parts[i], sub->line,
				    lp_toml_type_name(sub->type));
		}
		tab = sub;
	}

	const char *last = k->parts[k->n - 1];
	struct lp_toml_value *cur = tab_get(tab, last);

	if (aot) {
		struct lp_toml_value *t = val_new(LP_TOML_TABLE, ps->line);

		t->flags |= T_HEADER;
		if (!cur) {
			cur = val_new(LP_TOML_ARRAY, ps->line);
			cur->flags |= T_AOT;
			tab_put(tab, lp_xstrdup(last), cur);
		} else if (cur->type != LP_TOML_ARRAY ||
			   !(cur->flags & T_AOT)) {
			lp_toml_free(t);
			return perr(ps, "key '%s' (line %u) is %s, not an "
					"array of tables",
				    last, cur->line,
				    lp_toml_type_name(cur->type));
		}
		arr_push(cur, t);
		*ret = t;
		return 0;
	}
	if (!cur) {
		cur = val_new(LP_TOML_TABLE, ps->line);
		cur->flags |= T_HEADER;
		tab_put(tab, lp_xstrdup(last), cur);
	} else if (cur->type != LP_TOML_TABLE) {
		return perr(ps, "key '%s' (line %u) is %s, not a table", last,
			    cur->line, lp_toml_type_name(cur->type));
	} else if (cur->flags & (T_HEADER | T_DOTTED | T_SEALED)) {
		return perr(ps, "table '%s' is already defined (line %u)",
			    last, cur->line);
	} else {
		cur->flags |= T_HEADER;
		cur->line = ps->line;
	}
	*ret = cur;
	return 0;
}

static int parse_header(struct parser *ps, struct lp_toml_value *root,
			struct lp_toml_value **cur)
{
	struct keypath k = { 0 };
	bool aot = peek_at(ps, 1) == '[';
	int r;

	ps->p += aot ? 2 : 1;
	r = parse_key(ps, &k);
	if (r < 0)
		goto out;
	if (peek(ps) != ']' || (aot && peek_at(ps, 1) != ']')) {
		r = perr(ps, aot ? "expected ']]' after a table name" :
				   "expected ']' after a table name");
		goto out;
	}
	ps->p += aot ? 2 : 1;
	r = open_header(ps, root, &k, aot, cur);
	if (r == 0)
		r = expect_eol(ps);
out:
	keypath_release(&k);
	return r;
}

int lp_toml_parse(const char *data, size_t len, struct lp_toml_value **ret_root,
		  struct lp_err *err)
{
	struct parser ps = {
		.p = data, .end = data + len, .line_start = data, .line = 1,
		.err = err,
	};
	struct lp_toml_value *root, *cur;
	int r = 0;

	if (len > LP_TOML_MAX_SIZE)
		return lp_err_set(err, -EFBIG, "document larger than %u bytes",
				  LP_TOML_MAX_SIZE);
	/* a UTF-8 byte order mark is allowed */
	if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3))
		ps.p += 3;
	root = cur = val_new(LP_TOML_TABLE, 1);
	root->flags |= T_HEADER;
	while (!at_end(&ps)) {
		skip_ws(&ps);
		r = skip_comment(&ps);
		if (r < 0)
			break;
		if (at_end(&ps))
			break;
		if (is_newline(&ps)) {
			eat_newline(&ps);
			continue;
		}
		if (peek(&ps) == '[') {
			r = parse_header(&ps, root, &cur);
			if (r < 0)
				break;
			continue;
		}

		struct keypath k = { 0 };
		struct lp_toml_value *v;

		r = parse_key(&ps, &k);
		if (r == 0 && peek(&ps) != '=')
			r = perr(&ps, "expected '=' after a key");
		if (r == 0) {
			ps.p++;
			skip_ws(&ps);
			r = parse_value(&ps, &v);
			if (r == 0)
				r = set_dotted(&ps, cur, &k, v);
		}
		keypath_release(&k);
		if (r == 0)
			r = expect_eol(&ps);
		if (r < 0)
			break;
	}
	if (r < 0) {
		lp_toml_free(root);
		return r;
	}
	*ret_root = root;
	return 0;
}

int lp_toml_parse_file(const char *path, struct lp_toml_value **ret_root,
		       struct lp_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t done = 0;
	int r;

	if (fd < 0 || fstat(fd, &st) < 0)
		return lp_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return lp_err_set(err, -EINVAL, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > LP_TOML_MAX_SIZE)
		return lp_err_set(err, -EFBIG, "%s: larger than %u bytes", path,
				  LP_TOML_MAX_SIZE);
	buf = lp_xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return lp_err_set(err, -errno, "%s: %s", path,
					  strerror(errno));
		if (n == 0)
			break;
		done += (size_t)n;
	}
	r = lp_toml_parse(buf, done, ret_root, err);
	if (r < 0)
		lp_err_wrap(err, "%s", path);
	return r;
}

/* ---- lookups -------------------------------------------------------- */

const struct lp_toml_value *lp_toml_get(const struct lp_toml_value *root,
					const char *path)
{
	const struct lp_toml_value *v = root;
	const char *p = path;

	while (v) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		char key[256];

		if (n >= sizeof(key) || v->type != LP_TOML_TABLE)
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		v = lp_toml_table_get(v, key);
		if (!dot)
			return v;
		p = dot + 1;
	}
	return NULL;
}

static int typed(const struct lp_toml_value *root, const char *path,
		 enum lp_toml_type want, const struct lp_toml_value **ret,
		 struct lp_err *err)
{
	const struct lp_toml_value *v = lp_toml_get(root, path);

	if (!v)
		return -ENOENT;
	if (v->type != want)
		return lp_err_set(err, -EINVAL,
				  "line %u: key '%s': expected %s, got %s",
				  v->line, path, lp_toml_type_name(want),
				  lp_toml_type_name(v->type));
	*ret = v;
	return 0;
}

int lp_toml_get_string(const struct lp_toml_value *root, const char *path,
		       const char **ret, struct lp_err *err)
{
	const struct lp_toml_value *v = NULL;
	int r = typed(root, path, LP_TOML_STRING, &v, err);

	if (r == 0)
		*ret = v->s;
	return r;
}

int lp_toml_get_int(const struct lp_toml_value *root, const char *path,
		    int64_t *ret, struct lp_err *err)
{
	const struct lp_toml_value *v = NULL;
	int r = typed(root, path, LP_TOML_INT, &v, err);

	if (r == 0)
		*ret = v->i;
	return r;
}

int lp_toml_get_bool(const struct lp_toml_value *root, const char *path,
		     bool *ret, struct lp_err *err)
{
	const struct lp_toml_value *v = NULL;
	int r = typed(root, path, LP_TOML_BOOL, &v, err);

	if (r == 0)
		*ret = v->b;
	return r;
}

int lp_toml_get_strings(const struct lp_toml_value *root, const char *path,
			const char ***ret, size_t *ret_n, struct lp_err *err)
{
	const struct lp_toml_value *v = NULL;
	const char **out;
	int r = typed(root, path, LP_TOML_ARRAY, &v, err);

	if (r < 0)
		return r;
	for (size_t i = 0; i < v->arr.n; i++)
		if (v->arr.items[i]->type != LP_TOML_STRING)
			return lp_err_set(err, -EINVAL,
					  "line %u: key '%s': expected an "
					  "array of strings, item %zu is %s",
					  v->arr.items[i]->line, path, i,
					  lp_toml_type_name(
						  v->arr.items[i]->type));
	out = lp_xcalloc(v->arr.n + 1, sizeof(*out));
	for (size_t i = 0; i < v->arr.n; i++)
		out[i] = v->arr.items[i]->s;
	*ret = out;
	*ret_n = v->arr.n;
	return 0;
}
