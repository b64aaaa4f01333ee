/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A streaming tar parser: ustar, GNU long names/links, PAX x/g records.
 *
 * Semantics follow what containerd (Go archive/tar) does when it unpacks a
 * layer, so a lazily served layer looks exactly like an unpacked one:
 * header-only types carry no data whatever their size field says, a GNU
 * long name wins over a PAX path, '\0' entries named "x/" are
 * directories, and a zero block must be followed by another zero block or
 * the end of the stream.
 */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <string.h>

#include "formats/zran/zran.h"

#define TAR_BLOCK 512
/* Cap for one PAX or GNU long-name payload (Go uses the same). */
#define TAR_META_MAX (1u << 20)
#define NAME_SHOWN 120

enum tar_state {
	ST_HEADER,
	ST_META, /* reading a PAX / long-name payload */
	ST_DATA,
	ST_PAD,
	ST_ZERO, /* saw one zero block */
	ST_END,
	ST_ERROR,
};

struct tar_xattr {
	char *name;
	uint8_t *value;
	size_t len;
};

/* Values from PAX records (owned copies). */
struct pax_set {
	char *path, *linkpath;
	size_t path_len, linkpath_len;
	bool has_path, has_linkpath, has_size, has_uid, has_gid, has_mtime;
	bool sparse; /* GNU.sparse.* records */
	uint64_t size;
	uint32_t uid, gid;
	int64_t mtime;
	struct tar_xattr *xattrs;
	size_t n_xattrs, cap_xattrs;
};

struct zran_tar {
	const struct zran_tar_ops *ops;
	void *data;
	enum tar_state st;
	uint64_t off; /* bytes consumed */
	uint8_t hdr[TAR_BLOCK];
	size_t hdr_fill;

	char meta_type;
	uint8_t *meta;
	size_t meta_len, meta_fill;
	uint64_t remain, pad;

	/* the entry being assembled from extension headers */
	uint64_t entry_start; /* UINT64_MAX: none pending */
	char *long_name, *long_link;
	size_t long_name_len, long_link_len;
	bool has_long_name, has_long_link;
	struct pax_set local, global;

	/* the entry whose data is being read, for messages */
	char cur_name[NAME_SHOWN + 1];
	uint64_t cur_off;
};

static void pax_release(struct pax_set *p)
{
	free(p->path);
	free(p->linkpath);
	for (size_t i = 0; i < p->n_xattrs; i++) {
		free(p->xattrs[i].name);
		free(p->xattrs[i].value);
	}
	free(p->xattrs);
	memset(p, 0, sizeof(*p));
}

static void tar_reset_pending(struct zran_tar *t)
{
	free(t->long_name);
	free(t->long_link);
	t->long_name = t->long_link = NULL;
	t->has_long_name = t->has_long_link = false;
	t->long_name_len = t->long_link_len = 0;
	pax_release(&t->local);
	t->entry_start = UINT64_MAX;
}

struct zran_tar *zran_tar_new(const struct zran_tar_ops *ops, void *data)
{
	struct zran_tar *t = lp_xcalloc(1, sizeof(*t));

	t->ops = ops;
	t->data = data;
	t->entry_start = UINT64_MAX;
	return t;
}

void zran_tar_free(struct zran_tar *t)
{
	if (!t)
		return;
	tar_reset_pending(t);
	pax_release(&t->global);
	free(t->meta);
	free(t);
}

uint64_t zran_tar_offset(const struct zran_tar *t)
{
	return t->off;
}

/* Copies a possibly unterminated name into a printable, bounded buffer. */
static void show_name(char *dst, const char *src, size_t len)
{
	size_t n = len < NAME_SHOWN ? len : NAME_SHOWN;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = src[i];
		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[n] = '\0';
}

/* Records the error and poisons the parser. */
#define FAIL(t, err, code, ...)                                                \
	((t)->st = ST_ERROR, lp_err_set((err), (code), __VA_ARGS__))

/* ---- numeric fields --------------------------------------------------- */

/* Octal with leading/trailing spaces and NULs, or GNU base-256. */
static int parse_numeric(const uint8_t *b, size_t n, int64_t *ret)
{
	if (n && (b[0] & 0x80)) {
		uint8_t inv = (b[0] & 0x40) ? 0xff : 0;
		uint64_t x = 0;

		for (size_t i = 0; i < n; i++) {
			uint8_t c = b[i] ^ inv;

			if (i == 0)
				c &= 0x7f;
			if (x >> 56)
				return -ERANGE;
			x = x << 8 | c;
		}
		if (x >> 63)
			return -ERANGE;
		*ret = inv ? (int64_t)~x : (int64_t)x;
		return 0;
	}
	size_t i = 0, e = n;

	while (i < e && (b[i] == ' ' || b[i] == '\0'))
		i++;
	while (e > i && (b[e - 1] == ' ' || b[e - 1] == '\0'))
		e--;
	uint64_t x = 0;

	for (; i < e; i++) {
		if (b[i] < '0' || b[i] > '7')
			return -EINVAL;
		if (x >> 60)
			return -ERANGE;
		x = x << 3 | (uint64_t)(b[i] - '0');
	}
	if (x >> 63)
		return -ERANGE;
	*ret = (int64_t)x;
	return 0;
}

static bool block_is_zero(const uint8_t *b)
{
	for (size_t i = 0; i < TAR_BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

/* Both the unsigned and the historic signed sum are accepted. */
static bool checksum_ok(const uint8_t *h)
{
	int64_t want;
	uint64_t us = 0;
	int64_t ss = 0;

	if (parse_numeric(h + 148, 8, &want) < 0)
		return false;
	for (size_t i = 0; i < TAR_BLOCK; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];

		us += c;
		ss += (int8_t)c;
	}
	return want == (int64_t)us || want == ss;
}

static size_t field_len(const uint8_t *f, size_t n)
{
	const uint8_t *z = memchr(f, 0, n);

	return z ? (size_t)(z - f) : n;
}

/* ---- PAX -------------------------------------------------------------- */

static int pax_set_str(char **dst, size_t *dst_len, const char *v, size_t n)
{
	free(*dst);
	*dst = lp_xmalloc(n + 1);
	memcpy(*dst, v, n);
	(*dst)[n] = '\0';
	*dst_len = n;
	return 0;
}

static int parse_dec_u64(const char *v, size_t n, uint64_t *ret)
{
	uint64_t x = 0;

	if (!n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		if (lp_mul_overflow(x, 10, &x) ||
		    lp_add_overflow(x, (uint64_t)(v[i] - '0'), &x))
			return -ERANGE;
	}
	*ret = x;
	return 0;
}

/* "[-]sec[.frac]", floored to whole seconds. */
static int parse_pax_time(const char *v, size_t n, int64_t *ret)
{
	bool neg = false, frac_nonzero = false;
	size_t i = 0, dot;
	uint64_t s;

	if (n && v[0] == '-') {
		neg = true;
		i = 1;
	}
	for (dot = i; dot < n && v[dot] != '.'; dot++)
		;
	if (parse_dec_u64(v + i, dot - i, &s) < 0 || s > INT64_MAX)
		return -EINVAL;
	if (dot < n) {
		if (dot + 1 == n)
			return -EINVAL;
		for (size_t j = dot + 1; j < n; j++) {
			if (v[j] < '0' || v[j] > '9')
				return -EINVAL;
			if (v[j] != '0')
				frac_nonzero = true;
		}
	}
	if (neg) {
		if (frac_nonzero && s == INT64_MAX)
			return -ERANGE;
		*ret = -(int64_t)s - (frac_nonzero ? 1 : 0);
	} else {
		*ret = (int64_t)s;
	}
	return 0;
}

static void pax_add_xattr(struct pax_set *p, const char *name, size_t nlen,
			  const uint8_t *v, size_t vlen)
{
	struct tar_xattr *x = NULL;

	for (size_t i = 0; i < p->n_xattrs; i++)
		if (strlen(p->xattrs[i].name) == nlen &&
		    !memcmp(p->xattrs[i].name, name, nlen))
			x = &p->xattrs[i];
	if (!x) {
		lp_grow((void **)&p->xattrs, sizeof(*p->xattrs), &p->cap_xattrs,
			p->n_xattrs + 1);
		x = &p->xattrs[p->n_xattrs++];
		x->name = lp_xmalloc(nlen + 1);
		memcpy(x->name, name, nlen);
		x->name[nlen] = '\0';
	} else {
		free(x->value);
	}
	x->value = lp_xmalloc(vlen ? vlen : 1);
	memcpy(x->value, v, vlen);
	x->len = vlen;
}

#define XATTR_PREFIX "SCHILY.xattr."
#define SPARSE_PREFIX "GNU.sparse."

static bool key_is(const char *k, size_t klen, const char *s)
{
	return klen == strlen(s) && !memcmp(k, s, klen);
}

static int pax_parse(struct zran_tar *t, struct pax_set *p, bool global,
		     const uint8_t *buf, size_t len, struct lp_err *err)
{
	const char *s = (const char *)buf;
	size_t pos = 0;
	uint64_t at = t->entry_start;

	while (pos < len) {
		size_t i = pos, rlen = 0;

		while (i < len && s[i] >= '0' && s[i] <= '9' && i - pos < 10) {
			rlen = rlen * 10 + (size_t)(s[i] - '0');
			i++;
		}
		if (i == pos || i >= len || s[i] != ' ' || rlen <= i - pos + 1 ||
		    rlen > len - pos || s[pos + rlen - 1] != '\n')
			return FAIL(t, err, EINVAL,
				    "tar: malformed PAX record at offset %" PRIu64
				    " (+%zu)",
				    at, pos);
		const char *k = s + i + 1;
		const char *end = s + pos + rlen - 1; /* the '\n' */
		const char *eq = memchr(k, '=', (size_t)(end - k));

		if (!eq || eq == k)
			return FAIL(t, err, EINVAL,
				    "tar: malformed PAX record at offset %" PRIu64
				    " (+%zu)",
				    at, pos);
		size_t klen = (size_t)(eq - k);
		const char *v = eq + 1;
		size_t vlen = (size_t)(end - v);

		pos += rlen;
		if (memchr(k, '\0', klen))
			return FAIL(t, err, EINVAL,
				    "tar: PAX key with NUL at offset %" PRIu64,
				    at);
		if (klen > strlen(SPARSE_PREFIX) &&
		    !memcmp(k, SPARSE_PREFIX, strlen(SPARSE_PREFIX))) {
			/* rejected once the entry's name is known */
			if (!global) {
				p->sparse = true;
				continue;
			}
			return FAIL(t, err, EOPNOTSUPP,
				    "tar: global PAX header at offset %" PRIu64
				    ": GNU sparse files are not supported",
				    at);
		}
		if (key_is(k, klen, "path") || key_is(k, klen, "linkpath")) {
			bool path = klen == 4;

			if (memchr(v, '\0', vlen))
				return FAIL(t, err, EINVAL,
					    "tar: PAX %s with NUL at offset "
					    "%" PRIu64,
					    path ? "path" : "linkpath", at);
			/* A global path would rename every entry: ignored. */
			if (global)
				continue;
			if (path) {
				pax_set_str(&p->path, &p->path_len, v, vlen);
				p->has_path = true;
			} else {
				pax_set_str(&p->linkpath, &p->linkpath_len, v,
					    vlen);
				p->has_linkpath = true;
			}
		} else if (key_is(k, klen, "size")) {
			uint64_t x;

			if (parse_dec_u64(v, vlen, &x) < 0 || x > INT64_MAX)
				return FAIL(t, err, EINVAL,
					    "tar: bad PAX size '%.*s' at "
					    "offset %" PRIu64,
					    (int)(vlen > 30 ? 30 : vlen), v, at);
			if (!global) {
				p->size = x;
				p->has_size = true;
			}
		} else if (key_is(k, klen, "uid") || key_is(k, klen, "gid")) {
			uint64_t x;
			bool uid = k[0] == 'u';

			if (parse_dec_u64(v, vlen, &x) < 0 || x > UINT32_MAX)
				return FAIL(t, err, EINVAL,
					    "tar: bad PAX %s '%.*s' at offset "
					    "%" PRIu64,
					    uid ? "uid" : "gid",
					    (int)(vlen > 30 ? 30 : vlen), v, at);
			if (uid) {
				p->uid = (uint32_t)x;
				p->has_uid = true;
			} else {
				p->gid = (uint32_t)x;
				p->has_gid = true;
			}
		} else if (key_is(k, klen, "mtime")) {
			if (parse_pax_time(v, vlen, &p->mtime) < 0)
				return FAIL(t, err, EINVAL,
					    "tar: bad PAX mtime '%.*s' at "
					    "offset %" PRIu64,
					    (int)(vlen > 30 ? 30 : vlen), v, at);
			p->has_mtime = true;
		} else if (klen > strlen(XATTR_PREFIX) &&
			   !memcmp(k, XATTR_PREFIX, strlen(XATTR_PREFIX))) {
			pax_add_xattr(p, k + strlen(XATTR_PREFIX),
				      klen - strlen(XATTR_PREFIX),
				      (const uint8_t *)v, vlen);
		} else if (key_is(k, klen, XATTR_PREFIX)) {
			return FAIL(t, err, EINVAL,
				    "tar: PAX xattr without a name at offset "
				    "%" PRIu64,
				    at);
		}
		/* Anything else (atime, uname, LIBARCHIVE.*, comment, ...)
		 * does not change what containerd unpacks: ignored. */
	}
	return 0;
}

/* ---- headers ---------------------------------------------------------- */

static int emit_entry(struct zran_tar *t, const uint8_t *h, struct lp_err *err)
{
	char typeflag = (char)h[156];
	bool ustar = !memcmp(h + 257, "ustar\0" "00", 8);
	char namebuf[256 + 2], linkcopy[101];
	const char *path, *link;
	size_t path_len, link_len;
	struct zran_tar_entry e = {0};
	int64_t mode, uid, gid, size, mtime, dmaj = 0, dmin = 0;
	struct zran_tar_xattr *xs = NULL;
	size_t nx = 0;
	int r = 0;

	/* name */
	if (t->has_long_name) {
		path = t->long_name;
		path_len = t->long_name_len;
	} else if (t->local.has_path) {
		path = t->local.path;
		path_len = t->local.path_len;
	} else {
		size_t nl = field_len(h, 100), pl = 0;

		if (ustar)
			pl = field_len(h + 345, 155);
		if (pl) {
			memcpy(namebuf, h + 345, pl);
			namebuf[pl] = '/';
			memcpy(namebuf + pl + 1, h, nl);
			path_len = pl + 1 + nl;
		} else {
			memcpy(namebuf, h, nl);
			path_len = nl;
		}
		namebuf[path_len] = '\0';
		path = namebuf;
	}
	show_name(t->cur_name, path, path_len);
	t->cur_off = t->entry_start;
	if (t->local.sparse)
		return FAIL(t, err, EOPNOTSUPP,
			    "tar: entry '%s' at offset %" PRIu64
			    ": GNU sparse files are not supported (PAX "
			    "GNU.sparse.*)",
			    t->cur_name, t->cur_off);

	if (t->has_long_link) {
		link = t->long_link;
		link_len = t->long_link_len;
	} else if (t->local.has_linkpath) {
		link = t->local.linkpath;
		link_len = t->local.linkpath_len;
	} else {
		link_len = field_len(h + 157, 100);
		memcpy(linkcopy, h + 157, link_len);
		linkcopy[link_len] = '\0';
		link = linkcopy;
	}

	if (parse_numeric(h + 100, 8, &mode) < 0 ||
	    parse_numeric(h + 108, 8, &uid) < 0 ||
	    parse_numeric(h + 116, 8, &gid) < 0 ||
	    parse_numeric(h + 124, 12, &size) < 0 ||
	    parse_numeric(h + 136, 12, &mtime) < 0)
		return FAIL(t, err, EINVAL,
			    "tar: entry '%s' at offset %" PRIu64
			    ": bad numeric field",
			    t->cur_name, t->cur_off);
	if (typeflag == '3' || typeflag == '4') {
		if (parse_numeric(h + 329, 8, &dmaj) < 0 ||
		    parse_numeric(h + 337, 8, &dmin) < 0 || dmaj < 0 ||
		    dmin < 0 || dmaj > UINT32_MAX || dmin > UINT32_MAX)
			return FAIL(t, err, EINVAL,
				    "tar: entry '%s' at offset %" PRIu64
				    ": bad device numbers",
				    t->cur_name, t->cur_off);
	}
	if (t->local.has_size)
		size = (int64_t)t->local.size;
	if (size < 0)
		return FAIL(t, err, EINVAL,
			    "tar: entry '%s' at offset %" PRIu64
			    ": negative size",
			    t->cur_name, t->cur_off);
	if (t->local.has_uid)
		uid = t->local.uid;
	else if (t->global.has_uid)
		uid = t->global.uid;
	if (t->local.has_gid)
		gid = t->local.gid;
	else if (t->global.has_gid)
		gid = t->global.gid;
	if (t->local.has_mtime)
		mtime = t->local.mtime;
	else if (t->global.has_mtime)
		mtime = t->global.mtime;
	if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
		return FAIL(t, err, EINVAL,
			    "tar: entry '%s' at offset %" PRIu64
			    ": uid/gid out of range",
			    t->cur_name, t->cur_off);

	switch (typeflag) {
	case '\0':
		e.type = path_len && path[path_len - 1] == '/' ? MODEL_DIR
							       : MODEL_REG;
		break;
	case '0':
	case '7':
		e.type = MODEL_REG;
		break;
	case '1':
		e.type = MODEL_HARDLINK;
		break;
	case '2':
		e.type = MODEL_SYMLINK;
		break;
	case '3':
		e.type = MODEL_CHAR;
		break;
	case '4':
		e.type = MODEL_BLOCK;
		break;
	case '5':
		e.type = MODEL_DIR;
		break;
	case '6':
		e.type = MODEL_FIFO;
		break;
	case 'S':
		return FAIL(t, err, EOPNOTSUPP,
			    "tar: entry '%s' at offset %" PRIu64
			    ": GNU sparse files are not supported",
			    t->cur_name, t->cur_off);
	default:
		if (typeflag >= 0x20 && typeflag < 0x7f)
			return FAIL(t, err, EOPNOTSUPP,
				    "tar: entry '%s' at offset %" PRIu64
				    ": unsupported entry type '%c'",
				    t->cur_name, t->cur_off, typeflag);
		return FAIL(t, err, EOPNOTSUPP,
			    "tar: entry '%s' at offset %" PRIu64
			    ": unsupported entry type 0x%02x",
			    t->cur_name, t->cur_off, (unsigned)(uint8_t)typeflag);
	}

	/* xattrs: global ones, overridden by the entry's own */
	size_t ng = t->global.n_xattrs, nl = t->local.n_xattrs;

	if (ng + nl) {
		xs = lp_xcalloc(ng + nl, sizeof(*xs));
		for (size_t i = 0; i < nl; i++) {
			struct tar_xattr *x = &t->local.xattrs[i];

			xs[nx++] = (struct zran_tar_xattr){ x->name, x->value,
							    x->len };
		}
		for (size_t i = 0; i < ng; i++) {
			struct tar_xattr *x = &t->global.xattrs[i];
			bool dup = false;

			for (size_t j = 0; j < nl; j++)
				if (!strcmp(x->name, xs[j].name))
					dup = true;
			if (!dup)
				xs[nx++] = (struct zran_tar_xattr){
					x->name, x->value, x->len
				};
		}
	}

	e.path = path;
	e.path_len = path_len;
	e.link = link;
	e.link_len = link_len;
	e.mode = (uint32_t)mode & 07777;
	e.uid = (uint32_t)uid;
	e.gid = (uint32_t)gid;
	e.size = e.type == MODEL_REG ? (uint64_t)size : 0;
	e.mtime = mtime;
	e.dev_major = (uint32_t)dmaj;
	e.dev_minor = (uint32_t)dmin;
	e.xattrs = xs;
	e.n_xattrs = nx;
	e.hdr_off = t->entry_start;
	e.data_off = t->off;

	if (t->ops && t->ops->entry)
		r = t->ops->entry(t->data, &e, err);
	free(xs);
	if (r < 0) {
		t->st = ST_ERROR;
		return lp_err_wrap(err, "tar: entry '%s' at offset %" PRIu64,
				   t->cur_name, t->cur_off);
	}
	tar_reset_pending(t);
	if (e.size) {
		t->remain = e.size;
		t->pad = (TAR_BLOCK - e.size % TAR_BLOCK) % TAR_BLOCK;
		t->st = ST_DATA;
	} else {
		t->st = ST_HEADER;
	}
	return 0;
}

static int process_header(struct zran_tar *t, struct lp_err *err)
{
	const uint8_t *h = t->hdr;
	uint64_t at = t->off - TAR_BLOCK;
	char typeflag = (char)h[156];
	int64_t size;

	if (block_is_zero(h)) {
		if (t->entry_start != UINT64_MAX)
			return FAIL(t, err, EINVAL,
				    "tar: end-of-archive marker at offset "
				    "%" PRIu64 " right after extension headers",
				    at);
		t->st = ST_ZERO;
		return 0;
	}
	if (!checksum_ok(h))
		return FAIL(t, err, EINVAL,
			    "tar: bad header checksum at offset %" PRIu64, at);
	if (t->entry_start == UINT64_MAX)
		t->entry_start = at;

	switch (typeflag) {
	case 'L':
	case 'K':
	case 'x':
	case 'g':
		if (parse_numeric(h + 124, 12, &size) < 0 || size < 0)
			return FAIL(t, err, EINVAL,
				    "tar: bad size in extension header at "
				    "offset %" PRIu64,
				    at);
		if ((uint64_t)size > TAR_META_MAX)
			return FAIL(t, err, E2BIG,
				    "tar: %s header at offset %" PRIu64
				    " too large (%" PRId64 " bytes)",
				    typeflag == 'x' || typeflag == 'g'
					    ? "PAX"
					    : "GNU long name",
				    at, size);
		t->meta_type = typeflag;
		t->meta_len = (size_t)size;
		t->meta_fill = 0;
		free(t->meta);
		t->meta = lp_xmalloc(t->meta_len ? t->meta_len : 1);
		t->remain = (uint64_t)size;
		t->pad = (TAR_BLOCK - (uint64_t)size % TAR_BLOCK) % TAR_BLOCK;
		t->st = ST_META;
		return 0;
	default:
		return emit_entry(t, h, err);
	}
}

static int process_meta(struct zran_tar *t, struct lp_err *err)
{
	const uint8_t *m = t->meta;
	size_t n = t->meta_len;
	int r;

	switch (t->meta_type) {
	case 'L':
	case 'K': {
		size_t l = field_len(m, n);
		char *s;

		/* an empty long name leaves the header's name alone (Go) */
		if (!l)
			break;
		s = lp_xmalloc(l + 1);
		memcpy(s, m, l);
		s[l] = '\0';
		if (t->meta_type == 'L') {
			free(t->long_name);
			t->long_name = s;
			t->long_name_len = l;
			t->has_long_name = true;
		} else {
			free(t->long_link);
			t->long_link = s;
			t->long_link_len = l;
			t->has_long_link = true;
		}
		break;
	}
	case 'x':
		r = pax_parse(t, &t->local, false, m, n, err);
		if (r < 0)
			return r;
		break;
	case 'g':
		r = pax_parse(t, &t->global, true, m, n, err);
		if (r < 0)
			return r;
		/* A global header is an entry of its own, not a prefix of
		 * the next one. */
		t->entry_start = UINT64_MAX;
		break;
	}
	free(t->meta);
	t->meta = NULL;
	return 0;
}

int zran_tar_feed(struct zran_tar *t, const void *buf, size_t len,
		  struct lp_err *err)
{
	const uint8_t *p = buf;
	int r;

	if (t->st == ST_ERROR)
		return lp_err_set(err, EINVAL, "tar: parser already failed");
	while (len) {
		size_t n;

		switch (t->st) {
		case ST_HEADER:
		case ST_ZERO:
			n = TAR_BLOCK - t->hdr_fill;
			if (n > len)
				n = len;
			memcpy(t->hdr + t->hdr_fill, p, n);
			t->hdr_fill += n;
			t->off += n;
			p += n;
			len -= n;
			if (t->hdr_fill < TAR_BLOCK)
				break;
			t->hdr_fill = 0;
			if (t->st == ST_ZERO) {
				if (!block_is_zero(t->hdr))
					return FAIL(t, err, EINVAL,
						    "tar: lone zero block at "
						    "offset %" PRIu64
						    " followed by data",
						    t->off - 2 * TAR_BLOCK);
				t->st = ST_END;
				break;
			}
			r = process_header(t, err);
			if (r < 0)
				return r;
			break;
		case ST_META:
			if (t->remain) {
				n = t->remain < len ? (size_t)t->remain : len;
				memcpy(t->meta + t->meta_fill, p, n);
				t->meta_fill += n;
				t->remain -= n;
				t->off += n;
				p += n;
				len -= n;
			}
			if (t->remain)
				break;
			r = process_meta(t, err);
			if (r < 0)
				return r;
			t->st = t->pad ? ST_PAD : ST_HEADER;
			break;
		case ST_DATA:
			n = t->remain < len ? (size_t)t->remain : len;
			if (t->ops && t->ops->file_data) {
				r = t->ops->file_data(t->data, p, n, t->off,
						      err);
				if (r < 0) {
					t->st = ST_ERROR;
					return lp_err_wrap(
						err,
						"tar: entry '%s' at offset "
						"%" PRIu64,
						t->cur_name, t->cur_off);
				}
			}
			t->remain -= n;
			t->off += n;
			p += n;
			len -= n;
			if (!t->remain)
				t->st = t->pad ? ST_PAD : ST_HEADER;
			break;
		case ST_PAD:
			n = t->pad < len ? (size_t)t->pad : len;
			t->pad -= n;
			t->off += n;
			p += n;
			len -= n;
			if (!t->pad)
				t->st = ST_HEADER;
			break;
		case ST_END:
			/* Record padding after the end marker. */
			t->off += len;
			len = 0;
			break;
		case ST_ERROR:
			return lp_err_set(err, EINVAL,
					  "tar: parser already failed");
		}
	}
	return 0;
}

int zran_tar_finish(struct zran_tar *t, struct lp_err *err)
{
	switch (t->st) {
	case ST_END:
	case ST_ZERO:
		if (t->st == ST_ZERO && t->hdr_fill)
			break;
		return 0;
	case ST_HEADER:
		if (t->hdr_fill || t->entry_start != UINT64_MAX)
			break;
		return 0;
	case ST_ERROR:
		return lp_err_set(err, EINVAL, "tar: parser already failed");
	case ST_DATA:
	case ST_PAD:
		return FAIL(t, err, EINVAL,
			    "tar: truncated in entry '%s' (offset %" PRIu64
			    ") at %" PRIu64,
			    t->cur_name, t->cur_off, t->off);
	case ST_META:
		break;
	}
	return FAIL(t, err, EINVAL, "tar: truncated header at offset %" PRIu64,
		    t->off);
}

int zran_tar_parse(const void *data, size_t size,
		   const struct zran_tar_ops *ops, void *cbdata,
		   struct lp_err *err)
{
	struct zran_tar *t = zran_tar_new(ops, cbdata);
	int r = zran_tar_feed(t, data, size, err);

	if (r >= 0)
		r = zran_tar_finish(t, err);
	zran_tar_free(t);
	return r;
}
