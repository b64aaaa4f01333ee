// SPDX-License-Identifier: Apache-2.0
/*
 * The format_ops tables: probe, load, decode_chunk, destroy.
 */
#define LP_MODNAME "estargz"

#include <libdeflate.h>
#include <string.h>
#include <zlib.h>
/* the buffer-less decoder (ZSTD_decompressContinue): in zstd's advanced
 * API, exported by libzstd and unchanged since 1.0 */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "formats/estargz/estargz-int.h"

static int estargz_read_footer(struct lp_source *src, enum estargz_kind kind,
			       struct estargz_footer *ret, struct lp_err *err)
{
	uint32_t fsz = estargz_footer_size(kind);
	uint8_t tail[ESTARGZ_MAX_FOOTER_SIZE];
	int r;

	if (src->size < fsz)
		return lp_err_set(err, EINVAL,
				  "footer: blob of %llu bytes is shorter than the %u-byte %s footer",
				  (unsigned long long)src->size, fsz,
				  estargz_kind_name(kind));
	r = lp_source_read_full(src, tail, fsz, src->size - fsz, err);
	if (r < 0)
		return r;
	return estargz_parse_footer(tail, fsz, src->size, kind, ret, err);
}

static int estargz_probe_kind(struct lp_source *src, enum estargz_kind kind,
			      struct lp_err *err)
{
	struct estargz_footer f;
	struct lp_err perr = { 0 };
	int r;

	if (src->size < estargz_footer_size(kind))
		return 0;
	r = estargz_read_footer(src, kind, &f, &perr);
	if (r == -EINVAL)
		return 0; /* not this format (or a footer that cannot work) */
	if (r < 0) {
		if (err && !err->code)
			*err = perr;
		return r;
	}
	return 1;
}

static int estargz_load_kind(struct lp_source *src,
			     const struct format_hints *h,
			     enum estargz_kind kind, struct model **ret_model,
			     struct format_ctx **ret_ctx,
			     struct format_info *info, struct lp_err *err)
{
	_cleanup_(model_builder_freep) struct model_builder *b = NULL;
	_cleanup_free_ uint8_t *comp = NULL;
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ struct format_ctx *ctx = NULL;
	struct format_info inf = { .format = estargz_kind_name(kind) };
	struct estargz_footer f;
	uint8_t dig[32], want[32];
	size_t json_len;
	uint32_t blob;
	int r;

	r = estargz_read_footer(src, kind, &f, err);
	if (r < 0)
		return r;
	if (f.toc_comp_len > ESTARGZ_TOC_MAX_COMPRESSED)
		return lp_err_set(err, EFBIG,
				  "toc: %llu compressed bytes exceed the %llu-byte cap",
				  (unsigned long long)f.toc_comp_len,
				  ESTARGZ_TOC_MAX_COMPRESSED);
	comp = lp_xmalloc(f.toc_comp_len);
	r = lp_source_read_full(src, comp, f.toc_comp_len, f.toc_offset, err);
	if (r < 0) {
		lp_err_wrap(err, "toc");
		return r;
	}
	r = estargz_decompress_toc(&f, comp, f.toc_comp_len, &json, &json_len,
				   err);
	if (r < 0)
		return r;

	/* the digest covers the JSON exactly as stored, not re-encoded */
	lp_sha256(json, json_len, dig);
	memcpy(inf.toc_digest, "sha256:", 7);
	lp_hex(dig, sizeof(dig), inf.toc_digest + 7);
	if (h && h->toc_digest) {
		if (lp_parse_sha256_digest(h->toc_digest,
					   strlen(h->toc_digest), want) < 0)
			return lp_err_set(err, EINVAL,
					  "toc: expected digest \"%.80s\" is not sha256:<hex>",
					  h->toc_digest);
		if (memcmp(want, dig, sizeof(dig)) != 0)
			return lp_err_set(err, EBADMSG,
					  "toc: digest %s does not match the expected %.80s",
					  inf.toc_digest, h->toc_digest);
	}

	inf.blob_size = f.blob_size;
	inf.toc_offset = f.toc_offset;
	inf.toc_comp_len = f.toc_comp_len;
	inf.toc_len = json_len;

	b = model_builder_new(0);
	r = model_builder_add_blob(b, h && h->blob_digest ? h->blob_digest :
				   src->name ? src->name : "",
				   h && h->media_type ? h->media_type :
				   kind == ESTARGZ_KIND_ZSTD ?
					"application/vnd.oci.image.layer.v1.tar+zstd" :
					"application/vnd.oci.image.layer.v1.tar+gzip",
				   src->size, &blob, err);
	if (r < 0)
		return r;
	if (blob != 0)
		return lp_err_set(err, EINVAL, "blob index %u, want 0", blob);
	r = estargz_parse_toc(json, json_len, &f, b, &inf, err);
	if (r < 0)
		return r;
	r = model_builder_finish(TAKE_PTR(b), ret_model, err);
	if (r < 0) {
		lp_err_wrap(err, "toc");
		return r;
	}

	ctx = lp_xcalloc(1, sizeof(*ctx));
	ctx->kind = kind;
	ctx->footer = f;
	if (ret_ctx)
		*ret_ctx = TAKE_PTR(ctx);
	if (info)
		*info = inf;
	return 0;
}

/*
 * libdeflate inflates a whole member at once, two to three times faster
 * than zlib, but needs room for all of it, and a file's last member goes
 * on past the chunk with the tar padding and the next headers.  The gzip
 * trailer's size field (stored's last four bytes, when stored ends where
 * the member does) says how far: a member that is exactly the chunk
 * inflates in place, a small one with a tail through a scratch buffer.
 * When the field does not fit (stored holds another member after this
 * one, as after a big file's last chunk), the scratch buffer gets the
 * chunk and FAST_TAIL_MAX.  A longer tail, a tail behind a chunk over
 * FAST_SCRATCH_MAX, a size field that lies or a damaged member return
 * false and are left to zlib, which stops at c->len and words the error.
 */
#define FAST_TAIL_MAX (64u << 10)
/* a second buffer as large as a big chunk would raise the fs daemon's peak
 * memory by the chunk size for each decode in flight */
#define FAST_SCRATCH_MAX (256u << 10)

uint64_t estargz_gzip_fast_decodes;

static bool estargz_decode_gzip_fast(const struct model_chunk *c,
				     const uint8_t *stored, size_t stored_len,
				     void *out)
{
	struct libdeflate_decompressor *d;
	enum libdeflate_result res;
	size_t in_used = 0, out_len = 0;
	uint32_t isize, tail;
	void *buf = out;
	bool ok;

	/* a gzip member is at least a 10-byte header and an 8-byte trailer */
	if (stored_len < 18 || c->len > UINT32_MAX - FAST_TAIL_MAX)
		return false;
	isize = (uint32_t)stored[stored_len - 4] |
		(uint32_t)stored[stored_len - 3] << 8 |
		(uint32_t)stored[stored_len - 2] << 16 |
		(uint32_t)stored[stored_len - 1] << 24;
	tail = isize - (uint32_t)c->len; /* wraps when isize < len */
	if (tail > FAST_TAIL_MAX)
		tail = FAST_TAIL_MAX;
	if (tail && c->len + tail > FAST_SCRATCH_MAX)
		return false;
	if (tail)
		buf = lp_xmalloc((size_t)c->len + tail);
	d = libdeflate_alloc_decompressor();
	res = d ? libdeflate_gzip_decompress_ex(d, stored, stored_len, buf,
						(size_t)c->len + tail,
						&in_used, &out_len) :
		  LIBDEFLATE_BAD_DATA;
	libdeflate_free_decompressor(d);
	ok = res == LIBDEFLATE_SUCCESS && out_len >= c->len;
	if (ok && buf != out)
		memcpy(out, buf, (size_t)c->len);
	if (buf != out)
		free(buf);
	if (ok)
		__atomic_add_fetch(&estargz_gzip_fast_decodes, 1,
				   __ATOMIC_RELAXED);
	return ok;
}

/*
 * A chunk's data is the start of exactly one gzip member (the writer
 * restarts its compressor per chunk), so inflate from the start of stored
 * and stop as soon as c->len bytes are out; the member may go on with tar
 * padding and the next headers.
 */
static int estargz_decode_gzip(const struct model_chunk *c, const void *stored,
			       size_t stored_len, void *out,
			       struct lp_err *err)
{
	uint64_t left_in = stored_len, left_out = c->len;
	z_stream z = { 0 };
	int r = 0, zr;

	if (estargz_decode_gzip_fast(c, stored, stored_len, out))
		return 0;
	if (inflateInit2(&z, 16 + 15) != Z_OK)
		return lp_err_set(err, ENOMEM, "inflateInit2 failed");
	z.next_in = (Bytef *)stored;
	z.next_out = out;
	while (left_out) {
		uInt in_chunk = left_in > UINT32_MAX ? UINT32_MAX :
						       (uInt)left_in;
		uInt out_chunk = left_out > UINT32_MAX ? UINT32_MAX :
							 (uInt)left_out;

		z.avail_in = in_chunk;
		z.avail_out = out_chunk;
		zr = inflate(&z, Z_NO_FLUSH);
		left_in -= in_chunk - z.avail_in;
		left_out -= out_chunk - z.avail_out;
		if (!left_out)
			break;
		if (zr == Z_STREAM_END) {
			r = lp_err_set(err, EBADMSG,
				       "chunk at %llu: gzip member ends after %llu of %llu bytes",
				       (unsigned long long)c->comp_off,
				       (unsigned long long)(c->len - left_out),
				       (unsigned long long)c->len);
			break;
		}
		if (zr == Z_BUF_ERROR && left_in == 0) {
			r = lp_err_set(err, EBADMSG,
				       "chunk at %llu: gzip member truncated after %llu of %llu bytes",
				       (unsigned long long)c->comp_off,
				       (unsigned long long)(c->len - left_out),
				       (unsigned long long)c->len);
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			r = lp_err_set(err, EBADMSG, "chunk at %llu: inflate: %s",
				       (unsigned long long)c->comp_off,
				       z.msg ? z.msg : "corrupt data");
			break;
		}
	}
	inflateEnd(&z);
	return r;
}

/*
 * The same for a zstd frame: one whose header gives its size, ending at
 * most FAST_TAIL_MAX past the chunk, is decoded in one call, straight into
 * out (or, for a small chunk, a scratch buffer for the tail); the
 * streaming decoder would first allocate a window buffer as large as the
 * frame's window (up to the chunk size) and copy through it.  Anything
 * else goes to the streaming decoder below, which stops at c->len and
 * words the error.
 */
uint64_t estargz_zstd_fast_decodes;

static bool estargz_decode_zstd_fast(ZSTD_DCtx *d, const struct model_chunk *c,
				     const void *stored, size_t stored_len,
				     void *out)
{
	unsigned long long size = ZSTD_getFrameContentSize(stored, stored_len);
	size_t frame = ZSTD_findFrameCompressedSize(stored, stored_len), zr;
	void *buf = out;

	if (size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size == ZSTD_CONTENTSIZE_ERROR || ZSTD_isError(frame) ||
	    size < c->len || size - c->len > FAST_TAIL_MAX ||
	    (size > c->len && size > FAST_SCRATCH_MAX))
		return false;
	if (size > c->len)
		buf = lp_xmalloc((size_t)size);
	zr = ZSTD_decompressDCtx(d, buf, (size_t)size, stored, frame);
	if (!ZSTD_isError(zr) && zr == size && buf != out)
		memcpy(out, buf, (size_t)c->len);
	if (buf != out)
		free(buf);
	if (ZSTD_isError(zr) || zr != size)
		return false;
	__atomic_add_fetch(&estargz_zstd_fast_decodes, 1, __ATOMIC_RELAXED);
	return true;
}

/*
 * A frame the one call cannot take (no size in its header: the Go writer
 * streams chunks over 128 KiB so; or a tail past the bounds), block by
 * block with the buffer-less decoder, straight into out: the output is the
 * window, where the streaming decoder would allocate one as large as the
 * frame's (8 MiB for those chunks) and copy through it.  The blocks that
 * may cross the chunk's end go to a scratch buffer, and decoding stops
 * once the chunk is whole (the rest of the frame is tar padding and
 * headers; the chunk's digest is checked by the caller), or at the frame's
 * checksum right after it.  False on any error: the streaming decoder then
 * words it.
 */
uint64_t estargz_zstd_blockwise_decodes;

#define ZSTD_SCRATCH (2 * ZSTD_BLOCKSIZE_MAX)

static bool estargz_decode_zstd_blockwise(ZSTD_DCtx *d,
					  const struct model_chunk *c,
					  const uint8_t *stored,
					  size_t stored_len, uint8_t *out)
{
	size_t in = 0, pos = 0, spos = 0, len = (size_t)c->len;
	unsigned long long total = 0; /* decoded from the frame */
	uint8_t *scratch = NULL;
	ZSTD_frameHeader h;
	bool ok = false;

	/* what the streaming decoder refuses from the header alone, refused
	 * here too: not a data frame, a dictionary, a window over its
	 * limit, a size that cannot hold the chunk */
	if (ZSTD_getFrameHeader(&h, stored, stored_len) != 0 ||
	    h.frameType != ZSTD_frame || h.dictID ||
	    h.windowSize > (1ull << ZSTD_WINDOWLOG_LIMIT_DEFAULT) ||
	    (h.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN &&
	     h.frameContentSize < len) ||
	    ZSTD_isError(ZSTD_decompressBegin(d)))
		return false;
	while (pos < len) {
		size_t need = ZSTD_nextSrcSizeToDecompress(d), got;
		uint8_t *dst;
		size_t cap;

		if (need == 0 || need > stored_len - in)
			break; /* the frame ends short, or is cut */
		/* a block is at most ZSTD_BLOCKSIZE_MAX: it fits in out
		 * until the last ones, which the scratch takes (contiguous
		 * there; out's bytes stay as the decoder's history) */
		if (len - pos >= ZSTD_BLOCKSIZE_MAX) {
			dst = out + pos;
			cap = len - pos;
		} else {
			if (!scratch)
				scratch = lp_xmalloc(ZSTD_SCRATCH);
			dst = scratch + spos;
			cap = ZSTD_SCRATCH - spos;
		}
		got = ZSTD_decompressContinue(d, dst, cap, stored + in, need);
		if (ZSTD_isError(got))
			break;
		/* no block larger than the header allows, and no more in
		 * all than it says */
		total += got;
		if (got > h.blockSizeMax ||
		    (h.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN &&
		     total > h.frameContentSize))
			break;
		in += need;
		if (dst == out + pos) {
			pos += got;
		} else {
			size_t take = got < len - pos ? got : len - pos;

			memcpy(out + pos, dst, take);
			pos += take;
			spos += got;
		}
		ok = pos == len;
	}
	/* a frame that ends with the chunk: its checksum, if it has one, is
	 * checked, as the streaming decoder does (with a tail, the checksum
	 * is past bytes not decoded: the chunk digest stands for it) */
	if (ok && ZSTD_nextInputType(d) == ZSTDnit_checksum) {
		size_t need = ZSTD_nextSrcSizeToDecompress(d);

		ok = need <= stored_len - in &&
		     !ZSTD_isError(ZSTD_decompressContinue(d, out + len, 0,
							   stored + in, need));
	}
	free(scratch);
	if (ok)
		__atomic_add_fetch(&estargz_zstd_blockwise_decodes, 1,
				   __ATOMIC_RELAXED);
	return ok;
}

static int estargz_decode_zstd(const struct model_chunk *c, const void *stored,
			       size_t stored_len, void *out,
			       struct lp_err *err)
{
	ZSTD_inBuffer in = { stored, stored_len, 0 };
	ZSTD_outBuffer o = { out, c->len, 0 };
	ZSTD_DCtx *d;
	size_t zr;
	int r = 0;

	/*
	 * One context per call: decode_chunk runs on many FUSE workers at
	 * once and a shared context would need a lock.
	 */
	d = ZSTD_createDCtx();
	if (!d)
		return lp_err_set(err, ENOMEM, "ZSTD_createDCtx failed");
	if (estargz_decode_zstd_fast(d, c, stored, stored_len, out) ||
	    estargz_decode_zstd_blockwise(d, c, stored, stored_len, out)) {
		ZSTD_freeDCtx(d);
		return 0;
	}
	/* a failed one-shot or buffer-less call leaves the context to be
	 * reset */
	ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
	while (o.pos < o.size) {
		size_t in_before = in.pos, out_before = o.pos;

		zr = ZSTD_decompressStream(d, &o, &in);
		if (ZSTD_isError(zr)) {
			r = lp_err_set(err, EBADMSG, "chunk at %llu: zstd: %s",
				       (unsigned long long)c->comp_off,
				       ZSTD_getErrorName(zr));
			break;
		}
		if (o.pos == o.size)
			break;
		if (zr == 0) {
			r = lp_err_set(err, EBADMSG,
				       "chunk at %llu: zstd frame ends after %zu of %llu bytes",
				       (unsigned long long)c->comp_off, o.pos,
				       (unsigned long long)c->len);
			break;
		}
		if (in.pos == in.size && in.pos == in_before &&
		    o.pos == out_before) {
			r = lp_err_set(err, EBADMSG,
				       "chunk at %llu: zstd frame truncated after %zu of %llu bytes",
				       (unsigned long long)c->comp_off, o.pos,
				       (unsigned long long)c->len);
			break;
		}
	}
	ZSTD_freeDCtx(d);
	return r;
}

static int estargz_decode_chunk(struct format_ctx *ctx,
				const struct model_chunk *c,
				const void *stored, size_t stored_len,
				void *out, struct lp_err *err)
{
	(void)ctx;
	if (c->len == 0)
		return 0;
	if (c->len > SIZE_MAX)
		return lp_err_set(err, EFBIG, "chunk of %llu bytes",
				  (unsigned long long)c->len);
	switch (c->codec) {
	case MODEL_CODEC_GZIP_MEMBER:
		return estargz_decode_gzip(c, stored, stored_len, out, err);
	case MODEL_CODEC_ZSTD_FRAME:
		return estargz_decode_zstd(c, stored, stored_len, out, err);
	}
	return lp_err_set(err, EINVAL, "chunk codec %u is not eStargz's",
			  c->codec);
}

static void estargz_destroy(struct format_ctx *ctx)
{
	free(ctx);
}

/* the context of a saved model: what the footer said, from its info */
static int estargz_restore_kind(enum estargz_kind kind,
				const struct format_info *info,
				struct format_ctx **ret_ctx,
				struct lp_err *err)
{
	struct format_ctx *ctx;
	uint32_t fsz = estargz_footer_size(kind);

	if (info->blob_size < fsz || info->toc_offset > info->blob_size - fsz ||
	    info->toc_comp_len > info->blob_size - fsz - info->toc_offset ||
	    (kind == ESTARGZ_KIND_ZSTD && info->toc_offset < 8))
		return lp_err_set(err, EBADMSG, "saved %s TOC at %llu+%llu of "
				  "a %llu-byte blob", estargz_kind_name(kind),
				  (unsigned long long)info->toc_offset,
				  (unsigned long long)info->toc_comp_len,
				  (unsigned long long)info->blob_size);
	ctx = lp_xcalloc(1, sizeof(*ctx));
	ctx->kind = kind;
	ctx->footer.kind = kind;
	ctx->footer.footer_size = fsz;
	ctx->footer.blob_size = info->blob_size;
	ctx->footer.toc_offset = info->toc_offset;
	ctx->footer.toc_comp_len = info->toc_comp_len;
	if (kind == ESTARGZ_KIND_ZSTD) {
		ctx->footer.toc_len_hint = info->toc_len;
		ctx->footer.data_end = info->toc_offset - 8;
	} else {
		ctx->footer.data_end = info->toc_offset;
	}
	*ret_ctx = ctx;
	return 0;
}

#define ESTARGZ_OPS(sym, kind, label)                                          \
	static int sym##_probe(struct lp_source *src,                          \
			       const struct format_hints *h,                   \
			       struct lp_err *err)                             \
	{                                                                      \
		(void)h;                                                       \
		return estargz_probe_kind(src, kind, err);                     \
	}                                                                      \
	static int sym##_load(struct lp_source *src,                           \
			      const struct format_hints *h,                    \
			      struct model **ret_model,                        \
			      struct format_ctx **ret_ctx,                     \
			      struct format_info *info, struct lp_err *err)    \
	{                                                                      \
		return estargz_load_kind(src, h, kind, ret_model, ret_ctx,     \
					 info, err);                           \
	}                                                                      \
	static int sym##_restore(const struct format_info *info,               \
				 struct format_ctx **ret_ctx,                  \
				 struct lp_err *err)                           \
	{                                                                      \
		return estargz_restore_kind(kind, info, ret_ctx, err);         \
	}                                                                      \
	const struct format_ops sym = {                                        \
		.name = label,                                                 \
		.probe = sym##_probe,                                          \
		.load = sym##_load,                                            \
		.decode_chunk = estargz_decode_chunk,                          \
		.destroy = estargz_destroy,                                    \
		.restore = sym##_restore,                                      \
	}

ESTARGZ_OPS(estargz_ops, ESTARGZ_KIND_ESTARGZ, "estargz");
ESTARGZ_OPS(stargz_legacy_ops, ESTARGZ_KIND_LEGACY, "stargz");
ESTARGZ_OPS(zstdchunked_ops, ESTARGZ_KIND_ZSTD, "zstd:chunked");
