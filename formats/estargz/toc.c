// SPDX-License-Identifier: Apache-2.0
/*
 * TOC (stargz.index.json) → model_builder entries and chunks.
 *
 * Go's encoding/json semantics are kept where they change what a layer
 * contains: keys match case-insensitively, the last duplicate key wins,
 * unknown keys are ignored, null leaves a field at its zero value, and a
 * fraction or exponent in an integer field fails the whole TOC.
 */
#define LP_MODNAME "estargz"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "formats/estargz/estargz-int.h"

enum estargz_etype {
	ESTARGZ_E_NONE = 0,
	ESTARGZ_E_DIR,
	ESTARGZ_E_REG,
	ESTARGZ_E_SYMLINK,
	ESTARGZ_E_HARDLINK,
	ESTARGZ_E_CHAR,
	ESTARGZ_E_BLOCK,
	ESTARGZ_E_FIFO,
	ESTARGZ_E_CHUNK,
};

static const struct {
	const char *name;
	enum estargz_etype type;
	enum model_type mtype;
} estargz_types[] = {
	{ "dir", ESTARGZ_E_DIR, MODEL_DIR },
	{ "reg", ESTARGZ_E_REG, MODEL_REG },
	{ "symlink", ESTARGZ_E_SYMLINK, MODEL_SYMLINK },
	{ "hardlink", ESTARGZ_E_HARDLINK, MODEL_HARDLINK },
	{ "char", ESTARGZ_E_CHAR, MODEL_CHAR },
	{ "block", ESTARGZ_E_BLOCK, MODEL_BLOCK },
	{ "fifo", ESTARGZ_E_FIFO, MODEL_FIFO },
	{ "chunk", ESTARGZ_E_CHUNK, 0 },
};

/* One TOC entry; strings point into the JSON tape. */
struct estargz_ent {
	size_t idx;
	const char *name;
	size_t name_len;
	enum estargz_etype type;
	const char *link;
	size_t link_len;
	int64_t size, offset, chunk_off, chunk_size, inner_off;
	int64_t mode, uid, gid, dev_major, dev_minor;
	int64_t mtime;
	const struct tj_node *xattrs; /* an object, or NULL */
	const char *digest, *chunk_digest;
	size_t digest_len, chunk_digest_len;
};

/* ---- messages --------------------------------------------------------- */

/* A name fit for an error message: bounded, control bytes replaced. */
static void estargz_printable(const char *s, size_t n, char *out, size_t size)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static int estargz_ent_err(struct lp_err *err, int code,
			   const struct estargz_ent *e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int estargz_ent_err(struct lp_err *err, int code,
			   const struct estargz_ent *e, const char *fmt, ...)
{
	char detail[200], name[100];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (!e->name)
		return lp_err_set(err, code, "toc entry #%zu: %s", e->idx,
				  detail);
	estargz_printable(e->name, e->name_len, name, sizeof(name));
	return lp_err_set(err, code, "toc entry \"%s\": %s", name, detail);
}

/* Adds the entry to a callee's message; returns r (wrap gives -EIO
 * without an err). */
static int estargz_ent_wrap(struct lp_err *err, const struct estargz_ent *e,
			    int r)
{
	char name[100];

	if (!e->name) {
		lp_err_wrap(err, "toc entry #%zu", e->idx);
		return r;
	}
	estargz_printable(e->name, e->name_len, name, sizeof(name));
	lp_err_wrap(err, "toc entry \"%s\"", name);
	return r;
}

/* ---- RFC 3339 --------------------------------------------------------- */

static int estargz_digits(const char *s, size_t n, int *ret)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*ret = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t estargz_days(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool estargz_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int estargz_parse_time(const char *s, size_t len, int64_t *ret)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	int Y, M, D, h, m, sec, tzh = 0, tzm = 0;
	int64_t t;
	size_t i = 19;

	/* 2006-01-02T15:04:05 */
	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	if (estargz_digits(s, 4, &Y) || estargz_digits(s + 5, 2, &M) ||
	    estargz_digits(s + 8, 2, &D) || estargz_digits(s + 11, 2, &h) ||
	    estargz_digits(s + 14, 2, &m) || estargz_digits(s + 17, 2, &sec))
		return -EINVAL;
	if (M < 1 || M > 12 || D < 1 ||
	    D > mdays[M - 1] + (M == 2 && estargz_leap(Y)) || h > 23 ||
	    m > 59 || sec > 59)
		return -EINVAL;
	/* fractional seconds: TOCs are rounded to seconds, so drop them */
	if (s[i] == '.') {
		size_t j = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == j)
			return -EINVAL;
	}
	if (i < len && s[i] == 'Z') {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		if (len - i < 6 || s[i + 3] != ':' ||
		    estargz_digits(s + i + 1, 2, &tzh) ||
		    estargz_digits(s + i + 4, 2, &tzm) || tzh > 23 || tzm > 59)
			return -EINVAL;
		if (s[i] == '-') {
			tzh = -tzh;
			tzm = -tzm;
		}
		i += 6;
	} else {
		return -EINVAL;
	}
	if (i != len)
		return -EINVAL;
	t = estargz_days(Y, M, D) * 86400 + h * 3600 + m * 60 + sec;
	*ret = t - (tzh * 3600 + tzm * 60);
	return 0;
}

/* ---- one entry -------------------------------------------------------- */

static int estargz_get_int(const struct tj_node *v, const char *field,
			   const struct estargz_ent *e, int64_t *out,
			   struct lp_err *err)
{
	if (v->type == TJ_NULL)
		return 0;
	if (v->type == TJ_REAL)
		return estargz_ent_err(err, EINVAL, e,
				       "%s is not an integer (fraction or exponent)",
				       field);
	if (v->type != TJ_INT)
		return estargz_ent_err(err, EINVAL, e, "%s is not a number",
				       field);
	*out = v->v.i;
	if (*out < 0)
		return estargz_ent_err(err, EINVAL, e, "%s %lld is negative",
				       field, (long long)*out);
	return 0;
}

static int estargz_get_str(const struct tj_node *v, const char *field,
			   const struct estargz_ent *e, const char **out,
			   size_t *out_len, struct lp_err *err)
{
	if (v->type == TJ_NULL)
		return 0;
	if (v->type != TJ_STR)
		return estargz_ent_err(err, EINVAL, e, "%s is not a string",
				       field);
	*out = v->v.s;
	*out_len = v->len;
	return 0;
}

static int estargz_check_u32(const struct estargz_ent *e, const char *field,
			     int64_t v, struct lp_err *err)
{
	if (v > UINT32_MAX)
		return estargz_ent_err(err, EINVAL, e,
				       "%s %lld is larger than %u", field,
				       (long long)v, UINT32_MAX);
	return 0;
}

/* An object's members: key k, value k + 1, the next key where the value
 * ends. */
#define tj_foreach_member(d, obj, k)                                        \
	for (uint32_t k = (obj) + 1; k < (d)->n[obj].next;                  \
	     k = (d)->n[k + 1].next)

static int estargz_read_entry(const struct tj_doc *d, uint32_t obj,
			      size_t idx, struct estargz_ent *e,
			      struct lp_err *err)
{
	const char *type = NULL, *mtime = NULL;
	size_t type_len = 0, mtime_len = 0;
	int r = 0;

	*e = (struct estargz_ent){ .idx = idx };
	if (d->n[obj].type != TJ_OBJ)
		return lp_err_set(err, EINVAL, "toc entry #%zu is not an object",
				  idx);

	/* the name first, so every later message can carry it */
	tj_foreach_member(d, obj, k) {
		const struct tj_node *v = &d->n[k + 1];

		if (!tj_key_is(&d->n[k], "name"))
			continue;
		if (v->type == TJ_NULL) {
			e->name = NULL;
			continue;
		}
		if (v->type != TJ_STR)
			return estargz_ent_err(err, EINVAL, e,
					       "name is not a string");
		e->name = v->v.s;
		e->name_len = v->len;
	}

	tj_foreach_member(d, obj, k) {
		const struct tj_node *key = &d->n[k], *v = &d->n[k + 1];

		if (tj_key_is(key, "type"))
			r = estargz_get_str(v, "type", e, &type, &type_len,
					    err);
		else if (tj_key_is(key, "size"))
			r = estargz_get_int(v, "size", e, &e->size, err);
		else if (tj_key_is(key, "modtime"))
			r = estargz_get_str(v, "modtime", e, &mtime,
					    &mtime_len, err);
		else if (tj_key_is(key, "linkName"))
			r = estargz_get_str(v, "linkName", e, &e->link,
					    &e->link_len, err);
		else if (tj_key_is(key, "mode"))
			r = estargz_get_int(v, "mode", e, &e->mode, err);
		else if (tj_key_is(key, "uid"))
			r = estargz_get_int(v, "uid", e, &e->uid, err);
		else if (tj_key_is(key, "gid"))
			r = estargz_get_int(v, "gid", e, &e->gid, err);
		else if (tj_key_is(key, "offset"))
			r = estargz_get_int(v, "offset", e, &e->offset, err);
		else if (tj_key_is(key, "devMajor"))
			r = estargz_get_int(v, "devMajor", e, &e->dev_major,
					    err);
		else if (tj_key_is(key, "devMinor"))
			r = estargz_get_int(v, "devMinor", e, &e->dev_minor,
					    err);
		else if (tj_key_is(key, "chunkOffset"))
			r = estargz_get_int(v, "chunkOffset", e, &e->chunk_off,
					    err);
		else if (tj_key_is(key, "chunkSize"))
			r = estargz_get_int(v, "chunkSize", e, &e->chunk_size,
					    err);
		else if (tj_key_is(key, "innerOffset"))
			r = estargz_get_int(v, "innerOffset", e, &e->inner_off,
					    err);
		else if (tj_key_is(key, "digest"))
			r = estargz_get_str(v, "digest", e, &e->digest,
					    &e->digest_len, err);
		else if (tj_key_is(key, "chunkDigest"))
			r = estargz_get_str(v, "chunkDigest", e,
					    &e->chunk_digest,
					    &e->chunk_digest_len, err);
		else if (tj_key_is(key, "xattrs")) {
			if (v->type == TJ_NULL)
				e->xattrs = NULL;
			else if (v->type == TJ_OBJ)
				e->xattrs = v;
			else
				r = estargz_ent_err(err, EINVAL, e,
						    "xattrs is not an object");
		}
		/* userName, groupName and unknown keys do not matter */
		if (r < 0)
			return r;
	}

	if (!e->name)
		return estargz_ent_err(err, EINVAL, e, "no name");
	if (!type)
		return estargz_ent_err(err, EINVAL, e, "no type");
	for (size_t i = 0; i < ARRAY_SIZE(estargz_types); i++)
		if (strlen(estargz_types[i].name) == type_len &&
		    !memcmp(estargz_types[i].name, type, type_len))
			e->type = estargz_types[i].type;
	if (e->type == ESTARGZ_E_NONE) {
		char t[40];

		estargz_printable(type, type_len, t, sizeof(t));
		return estargz_ent_err(err, EINVAL, e, "unknown type \"%s\"",
				       t);
	}
	if ((r = estargz_check_u32(e, "uid", e->uid, err)) < 0 ||
	    (r = estargz_check_u32(e, "gid", e->gid, err)) < 0 ||
	    (r = estargz_check_u32(e, "devMajor", e->dev_major, err)) < 0 ||
	    (r = estargz_check_u32(e, "devMinor", e->dev_minor, err)) < 0)
		return r;
	/* several chunks per member came after 0.12; a skip we cannot do */
	if (e->inner_off)
		return estargz_ent_err(err, EOPNOTSUPP, e,
				       "innerOffset %lld is not supported",
				       (long long)e->inner_off);
	/* an unparsable time is the zero time upstream, not an error */
	if (mtime && estargz_parse_time(mtime, mtime_len, &e->mtime) < 0)
		e->mtime = 0;
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/*
 * path.Clean("/" + name) without the leading "/", into out (at least n + 1
 * bytes).  Only used to recognise the landmarks; the builder does the real
 * cleaning.
 */
static size_t estargz_clean(const char *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && in[j] != '/')
			j++;
		if (j - i == 0 || (j - i == 1 && in[i] == '.')) {
			/* empty or "." */
		} else if (j - i == 2 && in[i] == '.' && in[i + 1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			if (o > 0)
				out[o++] = '/';
			memcpy(out + o, in + i, j - i);
			o += j - i;
		}
		i = j + 1;
	}
	out[o] = 0;
	return o;
}

/* 0 none, 1 .prefetch.landmark, 2 .no.prefetch.landmark */
static int estargz_landmark(const struct estargz_ent *e)
{
	_cleanup_free_ char *c = NULL;

	if (e->type != ESTARGZ_E_REG ||
	    !memmem(e->name, e->name_len, "landmark", 8))
		return 0;
	c = lp_xmalloc(e->name_len + 1);
	estargz_clean(e->name, e->name_len, c);
	if (!strcmp(c, ESTARGZ_PREFETCH_LANDMARK))
		return 1;
	if (!strcmp(c, ESTARGZ_NO_PREFETCH_LANDMARK))
		return 2;
	return 0;
}

static int estargz_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Smallest recorded data offset above off, clamped at end. */
static uint64_t estargz_next_offset(const uint64_t *offs, size_t n,
				    uint64_t off, uint64_t end)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (offs[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && offs[lo] < end ? offs[lo] : end;
}

static int estargz_parse_digest(const struct estargz_ent *e, const char *what,
				const char *s, size_t len, uint8_t out[32],
				struct lp_err *err)
{
	char d[80];

	if (lp_parse_sha256_digest(s, len, out) == 0)
		return 0;
	estargz_printable(s, len, d, sizeof(d));
	return estargz_ent_err(err, EINVAL, e, "bad %s \"%s\"", what, d);
}

/* ---- the whole TOC ---------------------------------------------------- */

struct estargz_toc_state {
	const struct tj_doc *doc;
	const struct estargz_footer *f;
	struct model_builder *b;
	const uint64_t *offs;
	size_t n_offs;
	/* the most recent non-chunk entry, which owns following chunks */
	enum { OWNER_NONE, OWNER_REG, OWNER_SKIP, OWNER_OTHER } owner;
	uint32_t owner_id;
	uint64_t owner_size;
};

static int estargz_add_chunk(struct estargz_toc_state *st,
			     const struct estargz_ent *e, uint64_t file_size,
			     uint64_t chunk_len, struct lp_err *err)
{
	struct model_chunk c = {
		.file_off = (uint64_t)e->chunk_off,
		.len = chunk_len,
		.comp_off = (uint64_t)e->offset,
		.blob = 0,
		.codec = st->f->kind == ESTARGZ_KIND_ZSTD ?
				 MODEL_CODEC_ZSTD_FRAME :
				 MODEL_CODEC_GZIP_MEMBER,
	};
	uint64_t end;
	int r;

	if (lp_add_overflow(c.file_off, c.len, &end) || end > file_size)
		return estargz_ent_err(err, EINVAL, e,
				       "chunkOffset %llu + chunkSize %llu overflows file size %llu",
				       (unsigned long long)c.file_off,
				       (unsigned long long)c.len,
				       (unsigned long long)file_size);
	if (c.len == 0)
		return 0;
	if (c.comp_off >= st->f->data_end)
		return estargz_ent_err(err, EINVAL, e,
				       "offset %llu is not before the TOC at %llu",
				       (unsigned long long)c.comp_off,
				       (unsigned long long)st->f->data_end);
	c.comp_len = estargz_next_offset(st->offs, st->n_offs, c.comp_off,
					 st->f->data_end) -
		     c.comp_off;

	/* the whole-file digest stands in only when the chunk is the file */
	if (e->chunk_digest && e->chunk_digest_len) {
		r = estargz_parse_digest(e, "chunkDigest", e->chunk_digest,
					 e->chunk_digest_len, c.digest, err);
		if (r < 0)
			return r;
		c.digest_alg = MODEL_DIGEST_SHA256;
	} else if (e->digest && e->digest_len && c.file_off == 0 &&
		   c.len == file_size) {
		r = estargz_parse_digest(e, "digest", e->digest, e->digest_len,
					 c.digest, err);
		if (r < 0)
			return r;
		c.digest_alg = MODEL_DIGEST_SHA256;
	}

	r = model_builder_add_chunk(st->b, st->owner_id, &c, err);
	if (r < 0)
		return estargz_ent_wrap(err, e, r);
	return 0;
}

static int estargz_add_xattrs(struct estargz_toc_state *st, uint32_t id,
			      const struct estargz_ent *e, struct lp_err *err)
{
	const struct tj_doc *d = st->doc;
	uint32_t obj = (uint32_t)(e->xattrs - d->n);

	tj_foreach_member(d, obj, k) {
		_cleanup_free_ uint8_t *val = NULL;
		_cleanup_free_ char *key = NULL;
		const struct tj_node *v = &d->n[k + 1];
		int64_t len;
		int r;

		key = lp_xmalloc(d->n[k].len + 1);
		memcpy(key, d->n[k].v.s, d->n[k].len);
		key[d->n[k].len] = 0;
		if (v->type != TJ_STR)
			return estargz_ent_err(err, EINVAL, e,
					       "xattr %.60s is not a string",
					       key);
		val = lp_xmalloc(v->len / 4 * 3 + 3);
		len = lp_base64_decode(v->v.s, v->len, val);
		if (len < 0)
			return estargz_ent_err(err, EINVAL, e,
					       "xattr %.60s is not base64", key);
		r = model_builder_add_xattr(st->b, id, key, val, (size_t)len,
					    err);
		if (r < 0)
			return estargz_ent_wrap(err, e, r);
	}
	return 0;
}

static int estargz_add_entry(struct estargz_toc_state *st,
			     const struct estargz_ent *e,
			     struct format_info *info, struct lp_err *err)
{
	struct model_entry me = { 0 };
	uint64_t chunk_len;
	uint32_t id;
	int lm, r;

	if (e->type == ESTARGZ_E_CHUNK) {
		if (st->owner == OWNER_SKIP)
			return 0;
		if (st->owner != OWNER_REG)
			return estargz_ent_err(err, EINVAL, e,
					       "chunk does not follow a regular file");
		if ((uint64_t)e->chunk_off > st->owner_size)
			return estargz_ent_err(err, EINVAL, e,
					       "chunkOffset %llu is past file size %llu",
					       (unsigned long long)e->chunk_off,
					       (unsigned long long)st->owner_size);
		chunk_len = e->chunk_size ? (uint64_t)e->chunk_size :
					    st->owner_size - (uint64_t)e->chunk_off;
		return estargz_add_chunk(st, e, st->owner_size, chunk_len, err);
	}

	st->owner = OWNER_OTHER;
	lm = estargz_landmark(e);
	if (lm) {
		/* not layer content: only where prefetch data ends */
		st->owner = OWNER_SKIP;
		if (info && lm == 2) {
			info->landmark = 2;
			info->prefetch_offset = 0;
		} else if (info && info->landmark != 2) {
			info->landmark = 1;
			/* a lying offset must not widen the prefetch range */
			info->prefetch_offset =
				(uint64_t)e->offset < st->f->data_end ?
					(uint64_t)e->offset :
					st->f->data_end;
		}
		return 0;
	}

	for (size_t i = 0; i < ARRAY_SIZE(estargz_types); i++)
		if (estargz_types[i].type == e->type)
			me.type = estargz_types[i].mtype;
	me.path = e->name;
	me.path_len = e->name_len;
	me.mode = (uint32_t)e->mode & 07777;
	me.uid = (uint32_t)e->uid;
	me.gid = (uint32_t)e->gid;
	me.mtime = e->mtime;
	if (e->type == ESTARGZ_E_REG)
		me.size = (uint64_t)e->size;
	if (e->type == ESTARGZ_E_SYMLINK || e->type == ESTARGZ_E_HARDLINK) {
		me.link = e->link ? e->link : "";
		me.link_len = e->link_len;
	}
	if (e->type == ESTARGZ_E_HARDLINK && !e->link_len)
		return estargz_ent_err(err, EINVAL, e,
				       "hardlink without linkName");
	if (e->type == ESTARGZ_E_CHAR || e->type == ESTARGZ_E_BLOCK) {
		me.rdev_major = (uint32_t)e->dev_major;
		me.rdev_minor = (uint32_t)e->dev_minor;
	}

	r = model_builder_add(st->b, &me, &id, err);
	if (r < 0)
		return estargz_ent_wrap(err, e, r);

	/* a hardlink's own attributes are ignored upstream, xattrs too */
	if (e->type != ESTARGZ_E_HARDLINK && e->xattrs) {
		r = estargz_add_xattrs(st, id, e, err);
		if (r < 0)
			return r;
	}
	if (e->type != ESTARGZ_E_REG)
		return 0;

	st->owner = OWNER_REG;
	st->owner_id = id;
	st->owner_size = me.size;
	if ((uint64_t)e->chunk_off > me.size)
		return estargz_ent_err(err, EINVAL, e,
				       "chunkOffset %llu is past file size %llu",
				       (unsigned long long)e->chunk_off,
				       (unsigned long long)me.size);
	/* chunkSize 0 means "the rest of the file" */
	chunk_len = e->chunk_size ? (uint64_t)e->chunk_size :
				    me.size - (uint64_t)e->chunk_off;
	return estargz_add_chunk(st, e, me.size, chunk_len, err);
}

/* The offset of a reg or chunk entry, if it has a usable one. */
static bool estargz_scan_offset(const struct tj_doc *d, uint32_t obj,
				uint64_t *ret)
{
	const struct tj_node *type = NULL, *off = NULL;

	if (d->n[obj].type != TJ_OBJ)
		return false;
	tj_foreach_member(d, obj, k) {
		if (tj_key_is(&d->n[k], "type"))
			type = &d->n[k + 1];
		else if (tj_key_is(&d->n[k], "offset"))
			off = &d->n[k + 1];
	}
	if (!off || off->type != TJ_INT || off->v.i <= 0 || !type ||
	    type->type != TJ_STR)
		return false;
	if (!((type->len == 3 && !memcmp(type->v.s, "reg", 3)) ||
	      (type->len == 5 && !memcmp(type->v.s, "chunk", 5))))
		return false;
	*ret = (uint64_t)off->v.i;
	return true;
}

/* The value of an object's key (the last one, as in Go), or 0. */
static uint32_t estargz_get_key(const struct tj_doc *d, uint32_t obj,
				const char *want)
{
	uint32_t found = 0;

	tj_foreach_member(d, obj, k)
		if (tj_key_is(&d->n[k], want))
			found = k + 1;
	return found;
}

static void estargz_tj_free(struct tj_doc *d)
{
	tj_free(d);
}

int estargz_parse_toc(const char *json, size_t len,
		      const struct estargz_footer *f, struct model_builder *b,
		      struct format_info *info, struct lp_err *err)
{
	_cleanup_(estargz_tj_free) struct tj_doc d = { 0 };
	_cleanup_free_ uint64_t *offs = NULL;
	struct estargz_toc_state st = { .doc = &d, .f = f, .b = b };
	struct estargz_ent e;
	uint32_t entries;
	size_t n, n_offs = 0, i;
	int r;

	/* duplicate keys are allowed: the last one wins, as in Go */
	r = tj_parse(json, len, &d, err);
	if (r < 0)
		return r;
	if (d.n[0].type != TJ_OBJ)
		return lp_err_set(err, EINVAL, "toc: not a JSON object");
	entries = estargz_get_key(&d, 0, "entries");
	if (!entries)
		return lp_err_set(err, EINVAL, "toc: no \"entries\" key");
	if (d.n[entries].type != TJ_NULL && d.n[entries].type != TJ_ARR)
		return lp_err_set(err, EINVAL, "toc: entries is not an array");
	n = d.n[entries].type == TJ_ARR ? d.n[entries].len : 0;
	/*
	 * The streaming writer gives an empty tar "entries": null.  Upstream
	 * refuses such a layer (no root node); an empty layer is a legal
	 * layer, so we serve it as an empty root, which the builder makes.
	 */
	if (n == 0)
		return 0;

	/*
	 * Pass 1 collects the data offsets: a chunk's member ends at the
	 * latest where the next one starts.  Bad entries are left for pass 2
	 * to report.
	 */
	offs = lp_xmalloc(n * sizeof(*offs));
	for (uint32_t c = entries + 1; c < d.n[entries].next; c = d.n[c].next) {
		uint64_t off;

		if (estargz_scan_offset(&d, c, &off))
			offs[n_offs++] = off;
	}
	qsort(offs, n_offs, sizeof(*offs), estargz_cmp_u64);
	/* an entry with data is a chunk; the paths are a fraction of the
	 * JSON.  (Names are not reserved: a TOC of mostly chunk entries
	 * would reserve far more than it needs.) */
	model_builder_reserve(b, 0, n_offs, len / 8);
	st.offs = offs;
	st.n_offs = n_offs;

	if (info) {
		info->landmark = 0;
		info->prefetch_offset = 0;
	}
	i = 0;
	for (uint32_t c = entries + 1; c < d.n[entries].next;
	     c = d.n[c].next, i++) {
		r = estargz_read_entry(&d, c, i, &e, err);
		if (r < 0)
			return r;
		r = estargz_add_entry(&st, &e, info, err);
		if (r < 0)
			return r;
	}
	return 0;
}
