/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index file.  All integers little-endian.
 *
 *   header (64 bytes)
 *     0  "LPZRAN01"
 *     8  u32 version (1)
 *    12  u32 header length (64)
 *    16  u64 payload length
 *    24  sha256 of the payload
 *    56  u64 reserved (0)
 *   payload
 *     params (80 bytes): u64 gzip_size, u64 tar_size, u32 span,
 *       u32 chunk_max, u32 n_members, u32 n_points, u32 n_entries,
 *       u32 n_xattrs, u32 n_chunks, u32 strtab_len, sha256 of the gzip
 *     points[n_points] (32 bytes): u64 in_pos, u64 out_pos,
 *       u32 window_len, u32 stored window length, u8 bits, u8 prev,
 *       u8 window encoding (0 raw, 1 zlib), u8 0, u32 0
 *     entries[n_entries] (88 bytes): u64 size, i64 mtime, u64 hdr_off,
 *       u64 data_off, u32 path, path_len, link, link_len, mode, uid, gid,
 *       dev_major, dev_minor, xattr_first, n_xattrs, chunk_first,
 *       n_chunks, u8 type, u8[3] 0
 *     xattrs[n_xattrs] (16 bytes): u32 name, name_len, value, value_len
 *     chunks[n_chunks] (64 bytes): u64 tar_off, comp_off, comp_len,
 *       u32 len, u32 point, sha256 of the uncompressed bytes
 *     strtab[strtab_len] (starts with a NUL; every string NUL-terminated)
 *     windows, in point order, as stored
 *
 * Windows are zlib-compressed when that is smaller: they are most of the
 * index and typically shrink 2-4x.  An index keeps the window area in this
 * form (in memory, or left in the file it was loaded from) and inflates a
 * window only to restore its checkpoint.
 */
#define LP_MODNAME "zran"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/endian.h"
#include "formats/zran/zran-int.h"

#define HDR_LEN 64u
#define PARAMS_LEN 80u
#define POINT_LEN 32u
#define ENTRY_LEN 88u
#define XATTR_LEN 16u
#define CHUNK_LEN 64u
/* An index file larger than this is not ours. */
#define INDEX_MAX (4ull << 30)

/* ---- writing ---------------------------------------------------------- */

/* Reads [off, off + len) of the window area from the index file. */
static int read_wins(const struct zran_index *idx, uint64_t off, void *buf,
		     size_t len, struct lp_err *err)
{
	int64_t n;

	if (idx->wfd < 0)
		return lp_err_set(err, EIO, "zran: the index has no windows");
	n = lp_pread_all(idx->wfd, buf, len, idx->wins_off + off);
	if (n < 0)
		return lp_err_set(err, EIO, "zran: reading the index file: %s",
				  strerror((int)-n));
	if ((uint64_t)n != len)
		return lp_err_set(err, EIO, "zran: the index file is shorter "
				  "than when it was loaded");
	return 0;
}

int zran_point_window(const struct zran_index *idx, uint32_t i, uint8_t *win,
		      struct lp_err *err)
{
	const struct zran_point *pt = &idx->points[i];
	_cleanup_free_ uint8_t *tmp = NULL;
	const uint8_t *stored;
	uLongf dl = pt->window_len;
	int r;

	if (!pt->window_len)
		return 0;
	if (idx->wins) {
		stored = idx->wins + pt->woff;
	} else if (pt->wenc == ZRAN_WIN_RAW) {
		return read_wins(idx, pt->woff, win, pt->window_len, err);
	} else {
		tmp = lp_xmalloc(pt->wstored);
		r = read_wins(idx, pt->woff, tmp, pt->wstored, err);
		if (r < 0)
			return r;
		stored = tmp;
	}
	if (pt->wenc == ZRAN_WIN_RAW) {
		memcpy(win, stored, pt->window_len);
		return 0;
	}
	if (uncompress(win, &dl, stored, pt->wstored) != Z_OK ||
	    dl != pt->window_len)
		return lp_err_set(err, EIO, "zran: checkpoint %u: corrupt "
				  "window",
				  i);
	return 0;
}

int zran_index_serialize(const struct zran_index *idx, uint8_t **ret_buf,
			 size_t *ret_len, struct lp_err *err)
{
	uint64_t len;
	uint8_t *buf, *p;
	int r;

	if (idx->no_listing)
		return lp_err_set(err, EINVAL,
				  "zran: the index kept only its checkpoints");
	len = HDR_LEN + PARAMS_LEN + (uint64_t)idx->n_points * POINT_LEN +
	      (uint64_t)idx->n_entries * ENTRY_LEN +
	      (uint64_t)idx->n_xattrs * XATTR_LEN +
	      (uint64_t)idx->n_chunks * CHUNK_LEN + idx->strtab_len +
	      idx->wins_len;
	if (len > INDEX_MAX || len > SIZE_MAX)
		return lp_err_set(err, E2BIG, "zran: index too large (%" PRIu64
					      " bytes)",
				  len);
	buf = lp_xcalloc(1, (size_t)len);
	p = buf + HDR_LEN;

	lp_put_le64(p, idx->gzip_size);
	lp_put_le64(p + 8, idx->tar_size);
	lp_put_le32(p + 16, idx->span);
	lp_put_le32(p + 20, idx->chunk_max);
	lp_put_le32(p + 24, idx->n_members);
	lp_put_le32(p + 28, idx->n_points);
	lp_put_le32(p + 32, idx->n_entries);
	lp_put_le32(p + 36, idx->n_xattrs);
	lp_put_le32(p + 40, idx->n_chunks);
	lp_put_le32(p + 44, idx->strtab_len);
	memcpy(p + 48, idx->gzip_sha256, 32);
	p += PARAMS_LEN;
	for (uint32_t i = 0; i < idx->n_points; i++, p += POINT_LEN) {
		const struct zran_point *pt = &idx->points[i];

		lp_put_le64(p, pt->in_pos);
		lp_put_le64(p + 8, pt->out_pos);
		lp_put_le32(p + 16, pt->window_len);
		lp_put_le32(p + 20, pt->wstored);
		p[24] = pt->bits;
		p[25] = pt->prev;
		p[26] = pt->wenc;
	}
	for (uint32_t i = 0; i < idx->n_entries; i++, p += ENTRY_LEN) {
		const struct zran_ientry *e = &idx->entries[i];
		const uint32_t v[13] = { e->path,      e->path_len,
					 e->link,      e->link_len,
					 e->mode,      e->uid,
					 e->gid,       e->dev_major,
					 e->dev_minor, e->xattr_first,
					 e->n_xattrs,  e->chunk_first,
					 e->n_chunks };

		lp_put_le64(p, e->size);
		lp_put_le64(p + 8, (uint64_t)e->mtime);
		lp_put_le64(p + 16, e->hdr_off);
		lp_put_le64(p + 24, e->data_off);
		for (int j = 0; j < 13; j++)
			lp_put_le32(p + 32 + 4 * j, v[j]);
		p[84] = e->type;
	}
	for (uint32_t i = 0; i < idx->n_xattrs; i++, p += XATTR_LEN) {
		const struct zran_ixattr *x = &idx->xattrs[i];

		lp_put_le32(p, x->name);
		lp_put_le32(p + 4, x->name_len);
		lp_put_le32(p + 8, x->value);
		lp_put_le32(p + 12, x->value_len);
	}
	for (uint32_t i = 0; i < idx->n_chunks; i++, p += CHUNK_LEN) {
		const struct zran_ichunk *c = &idx->chunks[i];

		lp_put_le64(p, c->tar_off);
		lp_put_le64(p + 8, c->comp_off);
		lp_put_le64(p + 16, c->comp_len);
		lp_put_le32(p + 24, c->len);
		lp_put_le32(p + 28, c->point);
		memcpy(p + 32, c->digest, 32);
	}
	memcpy(p, idx->strtab, idx->strtab_len);
	p += idx->strtab_len;
	/* the window area as it is: in point order, already encoded */
	if (idx->wins) {
		memcpy(p, idx->wins, (size_t)idx->wins_len);
	} else if (idx->wins_len) {
		r = read_wins(idx, 0, p, (size_t)idx->wins_len, err);
		if (r < 0) {
			free(buf);
			return r;
		}
	}

	memcpy(buf, ZRAN_INDEX_MAGIC, 8);
	lp_put_le32(buf + 8, ZRAN_INDEX_VERSION);
	lp_put_le32(buf + 12, HDR_LEN);
	lp_put_le64(buf + 16, len - HDR_LEN);
	lp_sha256(buf + HDR_LEN, (size_t)(len - HDR_LEN), buf + 24);
	*ret_buf = buf;
	*ret_len = (size_t)len;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Writes idx to path: a temporary name renamed over it, so readers never
 * see half an index; fsync first when sync.  ret_fd: a descriptor of the
 * file written, to read it back whatever later replaces path.
 */
static int save(const struct zran_index *idx, const char *path, bool sync,
		int *ret_fd, size_t *ret_len, struct lp_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ char *tmp = NULL;
	size_t len;
	int fd, r;

	r = zran_index_serialize(idx, &buf, &len, err);
	if (r < 0)
		return r;
	if (asprintf(&tmp, "%s.tmp.%d.%d", path, (int)getpid(),
		     (int)gettid()) < 0) {
		tmp = NULL;
		return lp_err_set(err, ENOMEM, "zran: out of memory");
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", tmp, strerror(errno));
	r = write_all(fd, buf, len);
	if (r == 0 && ret_fd) {
		*ret_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (*ret_fd < 0)
			r = -errno;
	}
	r = lp_file_commit(fd, tmp, path, r, sync, err);
	if (r < 0 && ret_fd && *ret_fd >= 0) {
		close(*ret_fd);
		*ret_fd = -1;
	}
	*ret_len = len;
	return r;
}

int zran_index_save(const struct zran_index *idx, const char *path,
		    struct lp_err *err)
{
	size_t len;

	return save(idx, path, true, NULL, &len, err);
}

int zran_index_save_keep(struct zran_index *idx, const char *path,
			 struct lp_err *err)
{
	size_t len;
	int fd = -1, r;

	if (!idx->wins && idx->wins_len)
		return lp_err_set(err, EINVAL, "zran: the index's windows are "
				  "in a file already");
	/* no fsync: a torn file fails its checksum when loaded, and is
	 * indexed again */
	r = save(idx, path, false, &fd, &len, err);
	if (r < 0)
		return r;
	/* the window area ends the file */
	free(idx->wins);
	idx->wins = NULL;
	idx->cap_wins = 0;
	idx->wins_off = len - idx->wins_len;
	if (idx->wfd >= 0)
		close(idx->wfd);
	idx->wfd = fd;
	return 0;
}

/* ---- reading ---------------------------------------------------------- */

#define BAD(...) lp_err_set(err, EBADMSG, "zran index: " __VA_ARGS__)

/* A string reference: in range, NUL-terminated, no NUL inside. */
static bool str_ok(const struct zran_index *idx, uint32_t off, uint32_t len)
{
	if (!len)
		return true;
	if (!off || off >= idx->strtab_len || len >= idx->strtab_len - off)
		return false;
	return idx->strtab[off + len] == '\0';
}

static bool type_ok(uint8_t t)
{
	switch (t) {
	case MODEL_DIR:
	case MODEL_REG:
	case MODEL_SYMLINK:
	case MODEL_CHAR:
	case MODEL_BLOCK:
	case MODEL_FIFO:
	case MODEL_HARDLINK:
		return true;
	default:
		return false;
	}
}

/*
 * The point records, and every window checked to inflate to its length
 * (into one scratch buffer: the index keeps them as stored).
 */
static int parse_points(struct zran_index *idx, const uint8_t *p,
			const uint8_t *wins, uint64_t wins_len,
			struct lp_err *err)
{
	_cleanup_free_ uint8_t *scratch = NULL;
	uint64_t wpos = 0;

	for (uint32_t i = 0; i < idx->n_points; i++, p += POINT_LEN) {
		struct zran_point *pt = &idx->points[i];
		uint32_t slen = lp_get_le32(p + 20);
		uint8_t enc = p[26];

		pt->in_pos = lp_get_le64(p);
		pt->out_pos = lp_get_le64(p + 8);
		pt->window_len = lp_get_le32(p + 16);
		pt->bits = p[24];
		pt->prev = p[25];
		if (pt->bits > 7)
			return BAD("checkpoint %u: %u pending bits", i,
				   pt->bits);
		if (!pt->bits && pt->prev)
			return BAD("checkpoint %u: stray previous byte", i);
		if (p[27] || lp_get_le32(p + 28))
			return BAD("checkpoint %u: reserved bytes set", i);
		if (pt->window_len > ZRAN_WINDOW_SIZE)
			return BAD("checkpoint %u: window of %u bytes", i,
				   pt->window_len);
		if (pt->window_len > pt->out_pos)
			return BAD("checkpoint %u: window longer than the "
				   "output before it",
				   i);
		if (pt->in_pos > idx->gzip_size || pt->out_pos > idx->tar_size)
			return BAD("checkpoint %u: position past the end", i);
		if (i == 0 && pt->out_pos != 0)
			return BAD("checkpoint 0 does not start the output");
		if (i && (pt->in_pos <= pt[-1].in_pos ||
			  pt->out_pos <= pt[-1].out_pos))
			return BAD("checkpoint %u: offsets not increasing", i);
		if (enc > 1 || (enc == 0 && slen != pt->window_len) ||
		    (enc == 1 && (!slen || !pt->window_len)))
			return BAD("checkpoint %u: bad window encoding", i);
		if (slen > wins_len - wpos)
			return BAD("checkpoint %u: window past the end", i);
		pt->woff = wpos;
		pt->wstored = slen;
		pt->wenc = enc;
		if (enc == ZRAN_WIN_ZLIB) {
			uLongf dl = pt->window_len;

			if (!scratch)
				scratch = lp_xmalloc(ZRAN_WINDOW_SIZE);
			if (uncompress(scratch, &dl, wins + wpos, slen) !=
				    Z_OK ||
			    dl != pt->window_len)
				return BAD("checkpoint %u: corrupt window", i);
		}
		wpos += slen;
	}
	if (wpos != wins_len)
		return BAD("%" PRIu64 " stray bytes after the windows",
			   wins_len - wpos);
	return 0;
}

static int parse_entries(struct zran_index *idx, const uint8_t *p,
			 struct lp_err *err)
{
	uint64_t tar_pos = 0;
	uint32_t nx = 0, nc = 0;

	for (uint32_t i = 0; i < idx->n_entries; i++, p += ENTRY_LEN) {
		struct zran_ientry *e = &idx->entries[i];
		uint64_t end;

		e->size = lp_get_le64(p);
		e->mtime = (int64_t)lp_get_le64(p + 8);
		e->hdr_off = lp_get_le64(p + 16);
		e->data_off = lp_get_le64(p + 24);
		e->path = lp_get_le32(p + 32);
		e->path_len = lp_get_le32(p + 36);
		e->link = lp_get_le32(p + 40);
		e->link_len = lp_get_le32(p + 44);
		e->mode = lp_get_le32(p + 48);
		e->uid = lp_get_le32(p + 52);
		e->gid = lp_get_le32(p + 56);
		e->dev_major = lp_get_le32(p + 60);
		e->dev_minor = lp_get_le32(p + 64);
		e->xattr_first = lp_get_le32(p + 68);
		e->n_xattrs = lp_get_le32(p + 72);
		e->chunk_first = lp_get_le32(p + 76);
		e->n_chunks = lp_get_le32(p + 80);
		e->type = p[84];
		if (p[85] || p[86] || p[87])
			return BAD("entry %u: reserved bytes set", i);
		if (!type_ok(e->type))
			return BAD("entry %u: bad type %u", i, e->type);
		if (e->mode & ~07777u)
			return BAD("entry %u: bad mode %o", i, e->mode);
		if (!str_ok(idx, e->path, e->path_len) ||
		    !str_ok(idx, e->link, e->link_len))
			return BAD("entry %u: bad name reference", i);
		/* tar order: each entry starts after the previous data */
		if (e->hdr_off < tar_pos || e->data_off < e->hdr_off ||
		    e->data_off - e->hdr_off < 512 ||
		    lp_add_overflow(e->data_off, e->size, &end) ||
		    end > idx->tar_size)
			return BAD("entry %u: tar offsets out of order", i);
		tar_pos = end;
		if (e->type != MODEL_REG && e->size)
			return BAD("entry %u: data on a non-regular file", i);
		if (e->xattr_first != nx || e->n_xattrs > idx->n_xattrs - nx)
			return BAD("entry %u: bad xattr range", i);
		nx += e->n_xattrs;
		if (e->chunk_first != nc || e->n_chunks > idx->n_chunks - nc)
			return BAD("entry %u: bad chunk range", i);
		/* chunks tile the data exactly */
		uint64_t off = e->data_off;

		for (uint32_t j = 0; j < e->n_chunks; j++) {
			const struct zran_ichunk *c = &idx->chunks[nc + j];

			if (c->tar_off != off)
				return BAD("entry %u: chunk %u not contiguous",
					   i, nc + j);
			off += c->len;
		}
		if (off != end)
			return BAD("entry %u: chunks do not cover its data", i);
		nc += e->n_chunks;
	}
	if (nx != idx->n_xattrs || nc != idx->n_chunks)
		return BAD("xattrs or chunks not owned by entries");
	return 0;
}

/*
 * wfd < 0: the window area is copied into the index.  Otherwise data is
 * the image of that file, and the index leaves the windows there and
 * keeps wfd (its own on success).
 */
static int parse(const void *data, size_t size, int wfd,
		 struct zran_index **ret, struct lp_err *err)
{
	const uint8_t *d = data, *p;
	_cleanup_(zran_index_freep) struct zran_index *idx = NULL;
	uint8_t sum[32];
	uint64_t plen, need, wins_len;
	uint32_t version;
	int r;

	if (size < HDR_LEN + PARAMS_LEN || memcmp(d, ZRAN_INDEX_MAGIC, 8))
		return BAD("not an index file (bad magic or too short)");
	version = lp_get_le32(d + 8);
	if (version != ZRAN_INDEX_VERSION)
		return lp_err_set(err, EPROTONOSUPPORT,
				  "zran index: version %u not supported "
				  "(want %u)",
				  version, ZRAN_INDEX_VERSION);
	if (lp_get_le32(d + 12) != HDR_LEN || lp_get_le64(d + 56))
		return BAD("bad header");
	plen = lp_get_le64(d + 16);
	if (plen != size - HDR_LEN)
		return BAD("payload length %" PRIu64 " but %zu bytes follow",
			   plen, size - HDR_LEN);
	lp_sha256(d + HDR_LEN, (size_t)plen, sum);
	if (memcmp(sum, d + 24, 32))
		return BAD("checksum mismatch (corrupt file)");

	idx = zran_index_new();
	p = d + HDR_LEN;
	idx->gzip_size = lp_get_le64(p);
	idx->tar_size = lp_get_le64(p + 8);
	idx->span = lp_get_le32(p + 16);
	idx->chunk_max = lp_get_le32(p + 20);
	idx->n_members = lp_get_le32(p + 24);
	idx->n_points = lp_get_le32(p + 28);
	idx->n_entries = lp_get_le32(p + 32);
	idx->n_xattrs = lp_get_le32(p + 36);
	idx->n_chunks = lp_get_le32(p + 40);
	uint32_t strtab_len = lp_get_le32(p + 44);

	memcpy(idx->gzip_sha256, p + 48, 32);
	p += PARAMS_LEN;
	if (idx->span < ZRAN_MIN_SPAN || idx->span > ZRAN_MAX_SPAN ||
	    idx->chunk_max < ZRAN_MIN_CHUNK || idx->chunk_max > ZRAN_MAX_CHUNK)
		return BAD("span %u or chunk size %u out of range", idx->span,
			   idx->chunk_max);
	if (!idx->gzip_size || !idx->n_points || !idx->n_members)
		return BAD("empty stream or no checkpoints");
	need = PARAMS_LEN + (uint64_t)idx->n_points * POINT_LEN +
	       (uint64_t)idx->n_entries * ENTRY_LEN +
	       (uint64_t)idx->n_xattrs * XATTR_LEN +
	       (uint64_t)idx->n_chunks * CHUNK_LEN + strtab_len;
	if (need > plen)
		return BAD("counts need %" PRIu64 " bytes, payload has %" PRIu64,
			   need, plen);
	wins_len = plen - need;
	if (wins_len > (uint64_t)idx->n_points * ZRAN_WINDOW_SIZE * 2)
		return BAD("window area too large");
	if (!strtab_len || d[HDR_LEN + need - strtab_len] != '\0' ||
	    d[HDR_LEN + need - 1] != '\0')
		return BAD("bad string table");

	/* copy the tables; the counts are bounded by the file size */
	idx->points = lp_xcalloc(idx->n_points, sizeof(*idx->points));
	idx->cap_points = idx->n_points;
	if (idx->n_entries) {
		idx->entries = lp_xcalloc(idx->n_entries, sizeof(*idx->entries));
		idx->cap_entries = idx->n_entries;
	}
	if (idx->n_xattrs) {
		idx->xattrs = lp_xcalloc(idx->n_xattrs, sizeof(*idx->xattrs));
		idx->cap_xattrs = idx->n_xattrs;
	}
	if (idx->n_chunks) {
		idx->chunks = lp_xcalloc(idx->n_chunks, sizeof(*idx->chunks));
		idx->cap_chunks = idx->n_chunks;
	}
	free(idx->strtab);
	idx->strtab = lp_xmalloc(strtab_len);
	memcpy(idx->strtab, d + HDR_LEN + need - strtab_len, strtab_len);
	idx->strtab_len = strtab_len;
	idx->cap_strtab = strtab_len;

	const uint8_t *pp = p;
	const uint8_t *pe = pp + (uint64_t)idx->n_points * POINT_LEN;
	const uint8_t *px = pe + (uint64_t)idx->n_entries * ENTRY_LEN;
	const uint8_t *pc = px + (uint64_t)idx->n_xattrs * XATTR_LEN;

	r = parse_points(idx, pp, d + HDR_LEN + need, wins_len, err);
	if (r < 0)
		return r;
	idx->wins_len = wins_len;
	idx->wins_off = HDR_LEN + need;
	if (wfd < 0 && wins_len) {
		idx->wins = lp_xmalloc((size_t)wins_len);
		memcpy(idx->wins, d + HDR_LEN + need, (size_t)wins_len);
		idx->cap_wins = (size_t)wins_len;
	}
	for (uint32_t i = 0; i < idx->n_xattrs; i++, px += XATTR_LEN) {
		struct zran_ixattr *x = &idx->xattrs[i];

		x->name = lp_get_le32(px);
		x->name_len = lp_get_le32(px + 4);
		x->value = lp_get_le32(px + 8);
		x->value_len = lp_get_le32(px + 12);
		if (!x->name_len || !str_ok(idx, x->name, x->name_len) ||
		    (x->value_len &&
		     (!x->value || x->value >= strtab_len ||
		      x->value_len >= strtab_len - x->value)))
			return BAD("xattr %u: bad reference", i);
	}
	for (uint32_t i = 0; i < idx->n_chunks; i++, pc += CHUNK_LEN) {
		struct zran_ichunk *c = &idx->chunks[i];
		const struct zran_point *pt;
		uint64_t end;

		c->tar_off = lp_get_le64(pc);
		c->comp_off = lp_get_le64(pc + 8);
		c->comp_len = lp_get_le64(pc + 16);
		c->len = lp_get_le32(pc + 24);
		c->point = lp_get_le32(pc + 28);
		memcpy(c->digest, pc + 32, 32);
		if (!c->len || c->len > idx->chunk_max)
			return BAD("chunk %u: length %u", i, c->len);
		if (c->point >= idx->n_points)
			return BAD("chunk %u: checkpoint %u of %u", i, c->point,
				   idx->n_points);
		pt = &idx->points[c->point];
		if (c->comp_off != pt->in_pos || !c->comp_len ||
		    lp_add_overflow(c->comp_off, c->comp_len, &end) ||
		    end > idx->gzip_size)
			return BAD("chunk %u: bad compressed range", i);
		/* a chunk lies between its checkpoint and the next one */
		if (c->tar_off < pt->out_pos ||
		    lp_add_overflow(c->tar_off, (uint64_t)c->len, &end) ||
		    end > idx->tar_size ||
		    (c->point + 1 < idx->n_points && end > pt[1].out_pos))
			return BAD("chunk %u: not inside checkpoint %u's span",
				   i, c->point);
	}
	r = parse_entries(idx, pe, err);
	if (r < 0)
		return r;
	if (wins_len)
		idx->wfd = wfd;
	*ret = TAKE_PTR(idx);
	return 0;
}

int zran_index_parse(const void *data, size_t size, struct zran_index **ret,
		     struct lp_err *err)
{
	return parse(data, size, -1, ret, err);
}

int zran_index_load(const char *path, struct zran_index **ret,
		    struct lp_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	size_t got = 0;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > INDEX_MAX)
		return lp_err_set(err, EBADMSG,
				  "%s: not a regular file or too large", path);
	buf = lp_xmalloc(st.st_size ? (size_t)st.st_size : 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return lp_err_set(err, errno, "%s: %s", path,
					  strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	/* the windows stay in the file: a decode reads the one it needs */
	r = parse(buf, got, fd, ret, err);
	if (r < 0)
		return lp_err_wrap(err, "%s", path);
	if ((*ret)->wfd == fd)
		fd = -1; /* the index's now */
	return 0;
}
