/* SPDX-License-Identifier: Apache-2.0 */
/* Random access: inflating a span from a checkpoint. */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <limits.h>
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

static void feed(z_stream *zs, const uint8_t **in, size_t *left)
{
	size_t n = *left < UINT_MAX ? *left : UINT_MAX;

	zs->next_in = (Bytef *)*in;
	zs->avail_in = (uInt)n;
	*in += n;
	*left -= n;
}

int zran_inflate_span(uint8_t bits, uint8_t prev, const uint8_t *window,
		      uint32_t window_len, const uint8_t *in, size_t in_len,
		      uint64_t skip, uint8_t *out, size_t out_len,
		      struct lp_err *err)
{
	_cleanup_free_ uint8_t *scratch = NULL;
	const uint8_t *next = in;
	size_t left = in_len, done = 0;
	z_stream zs;
	int r = 0;

	if (bits > 7 || window_len > ZRAN_WINDOW_SIZE)
		return lp_err_set(err, EINVAL, "zran: bad restore point");
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -15) != Z_OK)
		return lp_err_set(err, ENOMEM, "zran: inflateInit2 failed");
	if (bits && inflatePrime(&zs, bits, prev >> (8 - bits)) != Z_OK) {
		r = lp_err_set(err, EIO, "zran: inflatePrime failed");
		goto out;
	}
	if (window_len &&
	    inflateSetDictionary(&zs, window, window_len) != Z_OK) {
		r = lp_err_set(err, EIO, "zran: inflateSetDictionary failed");
		goto out;
	}
	if (skip)
		scratch = lp_xmalloc(SKIP_BUF);
	feed(&zs, &next, &left);

	while (skip || done < out_len) {
		if (skip) {
			zs.next_out = scratch;
			zs.avail_out = skip < SKIP_BUF ? (uInt)skip : SKIP_BUF;
		} else {
			size_t n = out_len - done;

			zs.next_out = out + done;
			zs.avail_out = n < UINT_MAX ? (uInt)n : UINT_MAX;
		}
		uInt before = zs.avail_out;

		if (!zs.avail_in && left)
			feed(&zs, &next, &left);
		int zr = inflate(&zs, Z_NO_FLUSH);
		size_t produced = before - zs.avail_out;

		if (skip)
			skip -= produced;
		else
			done += produced;
		if (zr == Z_STREAM_END) {
			/* A member ends inside the span: skip its trailer
			 * and the next member's header, start afresh (the
			 * next member never refers back). */
			size_t pos = (size_t)((const uint8_t *)zs.next_in - in);
			int64_t hl;

			if (!skip && done == out_len)
				break;
			if (in_len - pos < 8)
				goto short_input;
			pos += 8;
			hl = zran_gzip_header_len(in + pos, in_len - pos);
			if (hl == 0)
				goto short_input;
			if (hl < 0) {
				r = lp_err_set(err, EBADMSG,
					       "zran: bad gzip header at span "
					       "offset %zu",
					       pos);
				goto out;
			}
			pos += (size_t)hl;
			if (inflateReset2(&zs, -15) != Z_OK) {
				r = lp_err_set(err, EIO,
					       "zran: inflateReset2 failed");
				goto out;
			}
			next = in + pos;
			left = in_len - pos;
			feed(&zs, &next, &left);
			continue;
		}
		if (zr == Z_BUF_ERROR || (zr == Z_OK && !produced &&
					  !zs.avail_in && !left)) {
			if (!zs.avail_in && !left)
				goto short_input;
			continue;
		}
		if (zr != Z_OK) {
			r = lp_err_set(err, EBADMSG,
				       "zran: corrupt deflate data: %s",
				       zs.msg ? zs.msg : "inflate error");
			goto out;
		}
	}
	r = 0;
	goto out;
short_input:
	r = lp_err_set(err, EIO,
		       "zran: compressed range too short (%zu bytes) for the "
		       "requested data",
		       in_len);
out:
	inflateEnd(&zs);
	return r;
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
	if (c->len > SIZE_MAX || stored_len > c->comp_len)
		return lp_err_set(err, EINVAL, "zran: bad chunk lengths");
	return zran_inflate_span(pt->bits, pt->prev, pt->window,
				 pt->window_len, stored, stored_len, c->aux_off,
				 out, (size_t)c->len, err);
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

	if (n > SIZE_MAX)
		return lp_err_set(err, EFBIG, "zran: span too large");
	stored = lp_xmalloc(n ? (size_t)n : 1);
	r = lp_source_read_full(src, stored, (size_t)n, pt->in_pos, err);
	if (r < 0)
		return r;
	return zran_inflate_span(pt->bits, pt->prev, pt->window,
				 pt->window_len, stored, (size_t)n,
				 off - pt->out_pos, buf, len, err);
}
