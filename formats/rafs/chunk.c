// SPDX-License-Identifier: Apache-2.0
/*
 * Native RAFS chunk decoding: raw, zstd frame, raw lz4 block, gzip member.
 * The decompressed size always comes from the metadata; anything that does
 * not decode to exactly that many bytes is corrupt.
 */
#define LP_MODNAME "rafs"
#include <limits.h>
#include <pthread.h>
#include <zlib.h>
#include <zstd.h>
#ifdef LP_HAVE_LZ4
#include <lz4.h>
#endif

#include "formats/rafs/rafs-int.h"

/* One zstd context per thread: FUSE workers decode concurrently, and a
 * context per call would cost an allocation of ~100 KiB each time. */
static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;

static void zstd_key_free(void *p)
{
	ZSTD_freeDCtx(p);
}

static void zstd_key_init(void)
{
	if (pthread_key_create(&zstd_key, zstd_key_free))
		abort();
}

static ZSTD_DCtx *zstd_dctx(void)
{
	ZSTD_DCtx *z;

	pthread_once(&zstd_once, zstd_key_init);
	z = pthread_getspecific(zstd_key);
	if (!z) {
		z = ZSTD_createDCtx();
		if (!z)
			abort();
		pthread_setspecific(zstd_key, z);
	}
	return z;
}

static int decode_zstd(const struct model_chunk *c, const void *stored,
		       size_t stored_len, void *out, struct lp_err *err)
{
	size_t n = ZSTD_decompressDCtx(zstd_dctx(), out, (size_t)c->len, stored,
				       stored_len);

	if (ZSTD_isError(n))
		return lp_err_set(err, EBADMSG, "zstd chunk: %s",
				  ZSTD_getErrorName(n));
	if (n != c->len)
		return lp_err_set(err, EBADMSG,
				  "zstd chunk: %zu bytes, expected %llu", n,
				  (unsigned long long)c->len);
	return 0;
}

static int decode_lz4(const struct model_chunk *c, const void *stored,
		      size_t stored_len, void *out, struct lp_err *err)
{
#ifdef LP_HAVE_LZ4
	int n;

	if (stored_len > INT_MAX || c->len > INT_MAX)
		return lp_err_set(err, EINVAL, "lz4 chunk too big");
	n = LZ4_decompress_safe(stored, out, (int)stored_len, (int)c->len);
	if (n < 0)
		return lp_err_set(err, EBADMSG, "lz4 chunk: corrupt block");
	if ((uint64_t)n != c->len)
		return lp_err_set(err, EBADMSG,
				  "lz4 chunk: %d bytes, expected %llu", n,
				  (unsigned long long)c->len);
	return 0;
#else
	(void)c;
	(void)stored;
	(void)stored_len;
	(void)out;
	return lp_err_set(err, EOPNOTSUPP, "lz4 chunk: built without liblz4");
#endif
}

static int decode_gzip(const struct model_chunk *c, const void *stored,
		       size_t stored_len, void *out, struct lp_err *err)
{
	z_stream zs = { 0 };
	int zr;

	if (stored_len > UINT_MAX || c->len > UINT_MAX)
		return lp_err_set(err, EINVAL, "gzip chunk too big");
	if (inflateInit2(&zs, 15 + 32) != Z_OK)
		return lp_err_set(err, ENOMEM,
				  "gzip chunk: inflateInit failed");
	zs.next_in = (Bytef *)stored;
	zs.avail_in = (uInt)stored_len;
	zs.next_out = out;
	zs.avail_out = (uInt)c->len;
	zr = inflate(&zs, Z_FINISH);
	if (zr != Z_STREAM_END) {
		lp_err_set(err, EBADMSG, "gzip chunk: %s",
			   zr == Z_BUF_ERROR ? "longer than expected or "
					       "truncated"
			   : zs.msg	     ? zs.msg
					     : "corrupt");
		inflateEnd(&zs);
		return -EBADMSG;
	}
	inflateEnd(&zs);
	if (zs.total_out != c->len)
		return lp_err_set(err, EBADMSG,
				  "gzip chunk: %lu bytes, expected %llu",
				  zs.total_out, (unsigned long long)c->len);
	return 0;
}

int rafs_decode_chunk(const struct model_chunk *c, const void *stored,
		      size_t stored_len, void *out, struct lp_err *err)
{
	switch (c->codec) {
	case MODEL_CODEC_NONE:
		if (stored_len < c->len)
			return lp_err_set(
				err, EBADMSG,
				"raw chunk: %zu stored bytes for %llu",
				stored_len, (unsigned long long)c->len);
		memcpy(out, stored, (size_t)c->len);
		return 0;
	case MODEL_CODEC_RAFS_ZSTD:
		return decode_zstd(c, stored, stored_len, out, err);
	case MODEL_CODEC_RAFS_LZ4:
		return decode_lz4(c, stored, stored_len, out, err);
	case MODEL_CODEC_RAFS_GZIP:
		return decode_gzip(c, stored, stored_len, out, err);
	}
	return lp_err_set(err, EINVAL, "not a RAFS chunk (codec %u)", c->codec);
}
