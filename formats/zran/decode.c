/* SPDX-License-Identifier: Apache-2.0 */
/* Random access: inflating a span from a checkpoint. */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <zlib.h>

#include "formats/zran/zran-int.h"

#define SKIP_BUF (64u << 10)

int64_t zran_gzip_header_len(const uint8_t *p, size_t len)
{
	static const uint8_t magic[3] = { 0x1f, 0x8b, 0x08 };
	size_t pos = 10;
	uint8_t flg;

	for (size_t i = 0; i < 3 && i < len; i++)
		if (p[i] != magic[i])
			return -EBADMSG;
	if (len < 10)
		return 0;
	flg = p[3];
	if (flg & 0xe0)
		return -EBADMSG;
	if (flg & 0x04) { /* FEXTRA */
		if (len < pos + 2)
			return 0;
		pos += 2 + (size_t)(p[pos] | p[pos + 1] << 8);
		if (pos > len)
			return 0;
	}
	for (uint8_t f = 0x08; f <= 0x10; f <<= 1) { /* FNAME, FCOMMENT */
		if (!(flg & f))
			continue;
		const uint8_t *z = memchr(p + pos, 0, len - pos);

		if (!z)
			return 0;
		pos = (size_t)(z - p) + 1;
	}
	if (flg & 0x02) { /* FHCRC */
		pos += 2;
		if (pos > len)
			return 0;
	}
	return (int64_t)pos;
}

/*
 * Runs a raw inflate stream over in[*pos, in_len): discards `skip` bytes,
 * then writes out_len bytes.  Gzip member ends are crossed.  On success
 * *pos is the next unconsumed input byte, so the stream can go on later
 * with more of the same input.
 */
static int span_run(z_stream *zs, const uint8_t *in, size_t in_len,
		    size_t *pos, uint64_t skip, uint8_t *out, size_t out_len,
		    struct lp_err *err)
{
	_cleanup_free_ uint8_t *scratch = NULL;
	size_t done = 0;

	if (in_len > UINT_MAX || *pos > in_len)
		return lp_err_set(err, EFBIG, "zran: compressed range too large");
	if (skip)
		scratch = lp_xmalloc(SKIP_BUF);
	zs->next_in = (Bytef *)in + *pos;
	zs->avail_in = (uInt)(in_len - *pos);

	while (skip || done < out_len) {
		if (skip) {
			zs->next_out = scratch;
			zs->avail_out = skip < SKIP_BUF ? (uInt)skip : SKIP_BUF;
		} else {
			size_t n = out_len - done;

			zs->next_out = out + done;
			zs->avail_out = n < UINT_MAX ? (uInt)n : UINT_MAX;
		}
		uInt before = zs->avail_out;
		int zr = inflate(zs, Z_NO_FLUSH);
		size_t produced = before - zs->avail_out;

		if (skip)
			skip -= produced;
		else
			done += produced;
		if (zr == Z_STREAM_END) {
			/* A member ends inside the span: skip its trailer
			 * and the next member's header, start afresh (the
			 * next member never refers back). */
			size_t p = (size_t)((const uint8_t *)zs->next_in - in);
			int64_t hl;

			if (!skip && done == out_len)
				break;
			if (in_len - p < 8)
				goto short_input;
			p += 8;
			hl = zran_gzip_header_len(in + p, in_len - p);
			if (hl == 0)
				goto short_input;
			if (hl < 0)
				return lp_err_set(err, EBADMSG,
						  "zran: bad gzip header at "
						  "span offset %zu",
						  p);
			p += (size_t)hl;
			if (inflateReset2(zs, -15) != Z_OK)
				return lp_err_set(err, EIO,
						  "zran: inflateReset2 failed");
			zs->next_in = (Bytef *)in + p;
			zs->avail_in = (uInt)(in_len - p);
			continue;
		}
		if (zr == Z_BUF_ERROR || (zr == Z_OK && !produced &&
					  !zs->avail_in)) {
			if (!zs->avail_in)
				goto short_input;
			continue;
		}
		if (zr != Z_OK)
			return lp_err_set(err, EBADMSG,
					  "zran: corrupt deflate data: %s",
					  zs->msg ? zs->msg : "inflate error");
	}
	*pos = (size_t)((const uint8_t *)zs->next_in - in);
	return 0;
short_input:
	return lp_err_set(err, EIO,
			  "zran: compressed range too short (%zu bytes) for "
			  "the requested data",
			  in_len);
}

/* A raw inflate stream positioned at a restore point. */
static int span_start(z_stream *zs, uint8_t bits, uint8_t prev,
		      const uint8_t *window, uint32_t window_len,
		      struct lp_err *err)
{
	if (bits > 7 || window_len > ZRAN_WINDOW_SIZE)
		return lp_err_set(err, EINVAL, "zran: bad restore point");
	memset(zs, 0, sizeof(*zs));
	if (inflateInit2(zs, -15) != Z_OK)
		return lp_err_set(err, ENOMEM, "zran: inflateInit2 failed");
	if ((bits && inflatePrime(zs, bits, prev >> (8 - bits)) != Z_OK) ||
	    (window_len &&
	     inflateSetDictionary(zs, window, window_len) != Z_OK)) {
		inflateEnd(zs);
		return lp_err_set(err, EIO, "zran: cannot restore the "
					    "checkpoint");
	}
	return 0;
}

/* A raw inflate stream positioned at checkpoint i of idx.  The window is
 * inflated into a buffer of this call only: zlib keeps its own copy. */
static int point_start(const struct zran_index *idx, uint32_t i, z_stream *zs,
		       struct lp_err *err)
{
	const struct zran_point *pt = &idx->points[i];
	_cleanup_free_ uint8_t *win = NULL;
	int r;

	if (pt->window_len) {
		win = lp_xmalloc(pt->window_len);
		r = zran_point_window(idx, i, win, err);
		if (r < 0)
			return r;
	}
	return span_start(zs, pt->bits, pt->prev, win, pt->window_len, err);
}

int zran_inflate_span(uint8_t bits, uint8_t prev, const uint8_t *window,
		      uint32_t window_len, const uint8_t *in, size_t in_len,
		      uint64_t skip, uint8_t *out, size_t out_len,
		      struct lp_err *err)
{
	z_stream zs;
	size_t pos = 0;
	int r;

	r = span_start(&zs, bits, prev, window, window_len, err);
	if (r < 0)
		return r;
	r = span_run(&zs, in, in_len, &pos, skip, out, out_len, err);
	inflateEnd(&zs);
	return r;
}

/* ---- the resume cache --------------------------------------------------- */

/*
 * Reading the chunks of one span in order (small files, a `check`, a
 * prefetch) would inflate the span's head again for every chunk.  So a
 * finished decode parks its live inflate stream here, and a later chunk
 * of the same checkpoint further on picks it up.  A stream is owned by
 * one decode at a time: it leaves the cache while in use.
 */
struct zran_resume {
	z_stream *zs; /* heap: zlib ties its state to this address */
	uint32_t point;
	uint64_t out;	/* tar offset of the next output byte */
	uint64_t in;	/* gzip offset of the next input byte */
	uint64_t stamp; /* for LRU */
	bool live;
};

struct zran_cache {
	pthread_mutex_t lock;
	uint64_t clock;			       /* protected by lock */
	struct zran_resume slot[ZRAN_CACHE_SLOTS]; /* protected by lock */
};

struct zran_cache *zran_cache_new(void)
{
	struct zran_cache *c = lp_xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void zran_cache_free(struct zran_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ZRAN_CACHE_SLOTS; i++)
		if (c->slot[i].live) {
			inflateEnd(c->slot[i].zs);
			free(c->slot[i].zs);
		}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Takes a stream for `point` that has not passed tar offset `start` and
 * whose input position lies inside [in_lo, in_hi]. */
static bool cache_take(struct zran_cache *c, uint32_t point, uint64_t start,
		       uint64_t in_lo, uint64_t in_hi, struct zran_resume *ret)
{
	struct zran_resume *best = NULL;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < ZRAN_CACHE_SLOTS; i++) {
		struct zran_resume *s = &c->slot[i];

		if (s->live && s->point == point && s->out <= start &&
		    s->in >= in_lo && s->in <= in_hi &&
		    (!best || s->out > best->out))
			best = s;
	}
	if (best) {
		*ret = *best;
		best->live = false;
	}
	pthread_mutex_unlock(&c->lock);
	return best != NULL;
}

static void cache_put(struct zran_cache *c, struct zran_resume *r)
{
	struct zran_resume *victim = NULL;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < ZRAN_CACHE_SLOTS; i++) {
		struct zran_resume *s = &c->slot[i];

		if (!s->live) {
			victim = s;
			break;
		}
		if (!victim || s->stamp < victim->stamp)
			victim = s;
	}
	if (victim->live) {
		inflateEnd(victim->zs);
		free(victim->zs);
	}
	r->stamp = ++c->clock;
	r->live = true;
	*victim = *r;
	pthread_mutex_unlock(&c->lock);
}

int zran_index_decode(const struct zran_index *idx, const struct model_chunk *c,
		      const void *stored, size_t stored_len, void *out,
		      struct lp_err *err)
{
	const struct zran_point *pt;

	if (c->codec != MODEL_CODEC_ZRAN)
		return lp_err_set(err, EINVAL, "zran: chunk codec %u is not zran",
				  c->codec);
	if (c->aux >= idx->n_points)
		return lp_err_set(err, EINVAL,
				  "zran: chunk names checkpoint %u of %u", c->aux,
				  idx->n_points);
	pt = &idx->points[c->aux];
	if (c->comp_off != pt->in_pos)
		return lp_err_set(err, EINVAL,
				  "zran: chunk at gzip offset %" PRIu64
				  " does not start at checkpoint %u (%" PRIu64
				  ")",
				  c->comp_off, c->aux, pt->in_pos);
	if (c->len > SIZE_MAX || stored_len > c->comp_len ||
	    c->aux_off > UINT64_MAX - pt->out_pos - c->len)
		return lp_err_set(err, EINVAL, "zran: bad chunk lengths");

	uint64_t start = pt->out_pos + c->aux_off;
	struct zran_resume rs;
	size_t pos;
	int r;

	if (idx->cache && cache_take(idx->cache, c->aux, start, c->comp_off,
				     c->comp_off + stored_len, &rs)) {
		pos = (size_t)(rs.in - c->comp_off);
		r = span_run(rs.zs, stored, stored_len, &pos, start - rs.out,
			     out, (size_t)c->len, err);
	} else {
		rs.zs = lp_xmalloc(sizeof(*rs.zs));
		r = point_start(idx, c->aux, rs.zs, err);
		if (r < 0) {
			free(rs.zs);
			return r;
		}
		rs.point = c->aux;
		pos = 0;
		r = span_run(rs.zs, stored, stored_len, &pos, c->aux_off, out,
			     (size_t)c->len, err);
	}
	if (r < 0 || !idx->cache) {
		inflateEnd(rs.zs);
		free(rs.zs);
		return r;
	}
	rs.out = start + c->len;
	rs.in = c->comp_off + pos;
	cache_put(idx->cache, &rs);
	return 0;
}

int zran_index_read(const struct zran_index *idx, struct lp_source *src,
		    uint64_t off, void *buf, size_t len, struct lp_err *err)
{
	uint32_t lo = 0, hi;
	uint64_t end, in_end;
	_cleanup_free_ uint8_t *stored = NULL;
	int r;

	if (lp_add_overflow(off, (uint64_t)len, &end) || end > idx->tar_size)
		return lp_err_set(err, EINVAL,
				  "zran: range %" PRIu64 "+%zu past the end "
				  "(%" PRIu64 ")",
				  off, len, idx->tar_size);
	if (!len)
		return 0;
	if (!idx->n_points)
		return lp_err_set(err, EINVAL, "zran: index has no checkpoints");
	/* the last point at or before off */
	hi = idx->n_points;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (idx->points[mid].out_pos <= off)
			lo = mid;
		else
			hi = mid;
	}
	/* everything before a later point's out_pos comes from input before
	 * its in_pos */
	in_end = idx->gzip_size;
	for (uint32_t i = lo + 1; i < idx->n_points; i++) {
		if (idx->points[i].out_pos >= end) {
			in_end = idx->points[i].in_pos + 1;
			break;
		}
	}
	if (in_end > idx->gzip_size)
		in_end = idx->gzip_size;
	const struct zran_point *pt = &idx->points[lo];
	uint64_t n = in_end - pt->in_pos;
	z_stream zs;
	size_t pos = 0;

	if (n > SIZE_MAX)
		return lp_err_set(err, EFBIG, "zran: span too large");
	stored = lp_xmalloc(n ? (size_t)n : 1);
	r = lp_source_read_full(src, stored, (size_t)n, pt->in_pos, err);
	if (r < 0)
		return r;
	r = point_start(idx, lo, &zs, err);
	if (r < 0)
		return r;
	r = span_run(&zs, stored, (size_t)n, &pos, off - pt->out_pos, buf, len,
		     err);
	inflateEnd(&zs);
	return r;
}
