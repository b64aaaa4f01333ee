/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The answer to a request for several ranges: "206 multipart/byteranges"
 * (RFC 9110 14.6, RFC 2046 5.1.1), read as it streams in.  Each part's
 * length comes from its Content-Range, so its data is never searched for
 * the boundary: after the data the next bytes must be the delimiter, or
 * the body is malformed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fetcher/fetcher-int.h"

enum {
	MP_PREAMBLE, /* looking for the first delimiter */
	MP_AFTER,    /* after a delimiter: "--", or padding and CRLF */
	MP_AFTER_CR, /* ... the CR seen */
	MP_AFTER_DASH,
	MP_HEADERS,
	MP_DATA,
	MP_NEXT, /* after a part's data: the delimiter, nothing else */
	MP_END,	 /* the closing delimiter seen: the rest is epilogue */
	MP_BAD,
};

#define MP_PREAMBLE_MAX 4096
#define MP_PADDING_MAX 64
#define MP_HEADER_LINES_MAX 32

static uint64_t parse_digits(const char **s, bool *ok)
{
	uint64_t v = 0;

	*ok = isdigit((unsigned char)**s);
	while (isdigit((unsigned char)**s)) {
		if (v > (UINT64_MAX - 9) / 10) {
			*ok = false;
			return 0;
		}
		v = v * 10 + (uint64_t)(*(*s)++ - '0');
	}
	return v;
}

bool fetch_content_range_parse(const char *s, uint64_t *a, uint64_t *b,
			       int64_t *total)
{
	uint64_t t;
	bool ok;

	if (strncasecmp(s, "bytes ", 6))
		return false;
	s += 6;
	while (*s == ' ')
		s++;
	*a = parse_digits(&s, &ok);
	if (!ok || *s++ != '-')
		return false;
	*b = parse_digits(&s, &ok);
	if (!ok || *b < *a || *s++ != '/')
		return false;
	if (*s == '*') {
		*total = -1;
		return s[1] == '\0';
	}
	t = parse_digits(&s, &ok);
	if (!ok || *s || t > INT64_MAX || t <= *b)
		return false;
	*total = (int64_t)t;
	return true;
}

/* The boundary parameter of a Content-Type value, quoted or not. */
static int boundary_of(const char *ct, char *out, size_t size)
{
	const char *p = ct;
	size_t n = 0;

	while (*p == ' ')
		p++;
	if (strncasecmp(p, "multipart/byteranges", 20))
		return -EPROTO;
	p += 20;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != ';')
			return -EPROTO;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncasecmp(p, "boundary=", 9)) {
			p += 9;
			break;
		}
		p = strchr(p, ';');
		if (!p)
			return -EPROTO;
	}
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (n + 1 >= size)
				return -EPROTO;
			out[n++] = *p;
		}
		if (*p != '"')
			return -EPROTO;
	} else {
		for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
			if (n + 1 >= size)
				return -EPROTO;
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	/* RFC 2046: 1 to 70 characters, none a control character */
	if (!n || n > 70)
		return -EPROTO;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			return -EPROTO;
	return 0;
}

int fetch_mp_init(struct fetch_mp *m, const char *content_type)
{
	char b[sizeof(m->delim)];
	int r;

	memset(m, 0, sizeof(*m));
	r = boundary_of(content_type, b, sizeof(b) - 4);
	if (r < 0) {
		m->state = MP_BAD;
		return r;
	}
	m->dlen = (size_t)snprintf(m->delim, sizeof(m->delim), "\r\n--%s", b);
	/* the first delimiter may open the body without its CRLF */
	m->state = MP_PREAMBLE;
	m->match = 2;
	return 0;
}

static int bad(struct fetch_mp *m, const char *why)
{
	m->state = MP_BAD;
	m->why = why;
	return -EBADMSG;
}

/* One header line of a part (without its line end). */
static int header_line(struct fetch_mp *m)
{
	char *l = m->line;
	char *colon = strchr(l, ':');
	char *v;

	if (++m->nlines > MP_HEADER_LINES_MAX)
		return bad(m, "too many header lines in a part");
	if (!colon)
		return bad(m, "a part's header line without a colon");
	if ((size_t)(colon - l) != 13 || strncasecmp(l, "content-range", 13))
		return 0;
	if (m->have_range)
		return bad(m, "a part with two Content-Range headers");
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	for (size_t n = strlen(v); n && (v[n - 1] == ' ' || v[n - 1] == '\t');)
		v[--n] = '\0';
	if (!fetch_content_range_parse(v, &m->a, &m->b, &m->total))
		return bad(m, "a part's Content-Range is not \"bytes A-B/T\"");
	m->have_range = true;
	return 0;
}

int fetch_mp_feed(struct fetch_mp *m, const void *data, size_t n,
		  const struct fetch_mp_ops *ops, void *arg)
{
	const char *p = data;

	while (n) {
		char c = *p;
		int r;

		switch (m->state) {
		case MP_PREAMBLE:
		case MP_NEXT:
			if (c == m->delim[m->match]) {
				if (++m->match == m->dlen) {
					m->state = MP_AFTER;
					m->match = 0;
					m->pad = 0;
				}
			} else if (m->state == MP_NEXT) {
				return bad(m, "a part's data is not followed "
					      "by the boundary");
			} else {
				/* the boundary holds no CR: a new match can
				 * only begin at this byte */
				m->match = c == '\r' ? 1 : 0;
				if (++m->skipped > MP_PREAMBLE_MAX)
					return bad(m, "no boundary in the "
						      "body's first bytes");
			}
			break;
		case MP_AFTER:
			if (c == '-') {
				m->state = MP_AFTER_DASH;
			} else if (c == '\r') {
				m->state = MP_AFTER_CR;
			} else if (c == ' ' || c == '\t') {
				if (++m->pad > MP_PADDING_MAX)
					return bad(m, "a boundary line too "
						      "long");
			} else {
				return bad(m, "a boundary line with stray "
					      "bytes");
			}
			break;
		case MP_AFTER_DASH:
			if (c != '-')
				return bad(m, "a boundary line with stray "
					      "bytes");
			m->state = MP_END;
			if (!m->parts)
				return bad(m, "a multipart body without parts");
			break;
		case MP_AFTER_CR:
			if (c != '\n')
				return bad(m, "a boundary line with stray "
					      "bytes");
			m->state = MP_HEADERS;
			m->line_len = 0;
			m->nlines = 0;
			m->have_range = false;
			break;
		case MP_HEADERS:
			if (c != '\n') {
				if (m->line_len + 1 >= sizeof(m->line))
					return bad(m, "a part's header line is "
						      "too long");
				m->line[m->line_len++] = c;
				break;
			}
			if (m->line_len && m->line[m->line_len - 1] == '\r')
				m->line_len--;
			m->line[m->line_len] = '\0';
			if (m->line_len) {
				m->line_len = 0;
				r = header_line(m);
				if (r < 0)
					return r;
				break;
			}
			if (!m->have_range)
				return bad(m, "a part without Content-Range");
			m->parts++;
			m->pos = m->a;
			m->left = m->b - m->a + 1;
			m->state = MP_DATA;
			r = ops->part(arg, m->a, m->b, m->total);
			if (r < 0) {
				m->state = MP_BAD;
				return r;
			}
			break;
		case MP_DATA: {
			size_t k = n < m->left ? n : (size_t)m->left;

			r = ops->data(arg, m->pos, p, k);
			if (r < 0) {
				m->state = MP_BAD;
				return r;
			}
			m->pos += k;
			m->left -= k;
			p += k;
			n -= k;
			if (!m->left) {
				m->state = MP_NEXT;
				m->match = 0;
			}
			continue;
		}
		case MP_END:
			return 0; /* the epilogue is ignored */
		default:
			return -EBADMSG;
		}
		p++;
		n--;
	}
	return 0;
}

bool fetch_mp_done(const struct fetch_mp *m)
{
	return m->state == MP_END;
}
