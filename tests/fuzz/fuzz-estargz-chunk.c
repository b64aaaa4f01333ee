// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target, differential: the eStargz chunk decoders (a gzip member
 * through libdeflate or zlib; a zstd frame in one call, block by block, or
 * streamed) against a plain streaming decode of the same bytes.  A chunk
 * the decoder gives must be the first len bytes the plain decode gives; a
 * decoder that gives bytes the plain decode cannot is a failure.
 *
 * Input: one byte (its low bit: 0 gzip, 1 zstd), three bytes of the
 * chunk's length (little-endian, at most 1 MiB is tried), then the stored
 * bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "formats/estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LEN (1u << 20)

/* the first len bytes the member or frame decodes to, or false */
static bool plain_gzip(const uint8_t *in, size_t in_len, uint8_t *out,
		       size_t len)
{
	z_stream z = { 0 };
	bool ok;

	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return false;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)len;
	while (z.avail_out) {
		int r = inflate(&z, Z_NO_FLUSH);

		if (r != Z_OK)
			break;
	}
	ok = z.avail_out == 0;
	inflateEnd(&z);
	return ok;
}

static bool plain_zstd(const uint8_t *in, size_t in_len, uint8_t *out,
		       size_t len)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	ZSTD_inBuffer i = { in, in_len, 0 };
	ZSTD_outBuffer o = { out, len, 0 };

	while (d && o.pos < o.size) {
		size_t before = i.pos, out_before = o.pos;
		size_t r = ZSTD_decompressStream(d, &o, &i);

		if (ZSTD_isError(r) || r == 0 ||
		    (i.pos == before && o.pos == out_before))
			break;
	}
	ZSTD_freeDCtx(d);
	return o.pos == o.size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_chunk c = { 0 };
	uint8_t *out, *want;
	bool zstd, have;
	int r;

	if (size < 4)
		return 0;
	zstd = data[0] & 1;
	c.len = (uint64_t)data[1] | (uint64_t)data[2] << 8 |
		(uint64_t)data[3] << 16;
	if (c.len == 0 || c.len > MAX_LEN)
		return 0;
	c.codec = zstd ? MODEL_CODEC_ZSTD_FRAME : MODEL_CODEC_GZIP_MEMBER;
	data += 4;
	size -= 4;
	out = malloc((size_t)c.len);
	want = malloc((size_t)c.len);
	if (!out || !want)
		abort();
	r = estargz_ops.decode_chunk(NULL, &c, data, size, out, NULL);
	have = zstd ? plain_zstd(data, size, want, (size_t)c.len)
		    : plain_gzip(data, size, want, (size_t)c.len);
	if (r == 0 && (!have || memcmp(out, want, (size_t)c.len))) {
		fprintf(stderr, "%s chunk of %llu bytes: the decoder gave %s\n",
			zstd ? "zstd" : "gzip", (unsigned long long)c.len,
			have ? "other bytes" : "bytes the plain decode has not");
		abort();
	}
	free(out);
	free(want);
	return 0;
}
