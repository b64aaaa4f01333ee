// SPDX-License-Identifier: Apache-2.0
/*
 * Footers and TOC decompression for eStargz, legacy stargz and zstd:chunked.
 */
#define LP_MODNAME "estargz"

#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "formats/estargz/estargz-int.h"

uint32_t estargz_footer_size(enum estargz_kind kind)
{
	switch (kind) {
	case ESTARGZ_KIND_ESTARGZ:
		return ESTARGZ_FOOTER_SIZE;
	case ESTARGZ_KIND_LEGACY:
		return ESTARGZ_LEGACY_FOOTER_SIZE;
	case ESTARGZ_KIND_ZSTD:
		return ESTARGZ_ZSTD_FOOTER_SIZE;
	}
	return 0;
}

const char *estargz_kind_name(enum estargz_kind kind)
{
	switch (kind) {
	case ESTARGZ_KIND_ESTARGZ:
		return "estargz";
	case ESTARGZ_KIND_LEGACY:
		return "stargz";
	case ESTARGZ_KIND_ZSTD:
		return "zstd:chunked";
	}
	return "?";
}

static uint64_t estargz_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * The writer uses %016x; Go reads it back with strconv.ParseInt(s, 16, 64),
 * so upper case is accepted and values above INT64_MAX are not.
 */
static int estargz_parse_hex16(const uint8_t *p, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		uint8_t c = p[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EINVAL;
		v = (v << 4) | d;
	}
	if (v > INT64_MAX)
		return -EINVAL;
	*ret = v;
	return 0;
}

/*
 * Only the gzip header of the footer member is looked at (as the reference
 * does): magic, deflate, FEXTRA, and the extra field layout.  The empty
 * deflate block and CRC after it are not checked.
 */
static int estargz_parse_gzip_footer(const uint8_t *p, enum estargz_kind kind,
				     uint64_t *ret_off, struct lp_err *err)
{
	const uint8_t *digits;
	unsigned xlen;

	if (p[0] != 0x1f || p[1] != 0x8b || p[2] != 8)
		return lp_err_set(err, EINVAL,
				  "footer: the last %u bytes are not a gzip member",
				  estargz_footer_size(kind));
	if (!(p[3] & 0x04) || (p[3] & 0xe0))
		return lp_err_set(err, EINVAL,
				  "footer: gzip flags 0x%02x lack FEXTRA", p[3]);
	xlen = p[10] | (unsigned)p[11] << 8;
	if (kind == ESTARGZ_KIND_ESTARGZ) {
		if (xlen != 26)
			return lp_err_set(err, EINVAL,
					  "footer: extra field length %u, want 26",
					  xlen);
		if (p[12] != 'S' || p[13] != 'G')
			return lp_err_set(err, EINVAL,
					  "footer: extra subfield is not SG");
		if ((p[14] | (unsigned)p[15] << 8) != 22)
			return lp_err_set(err, EINVAL,
					  "footer: SG subfield length %u, want 22",
					  p[14] | (unsigned)p[15] << 8);
		digits = p + 16;
	} else {
		if (xlen != 22)
			return lp_err_set(err, EINVAL,
					  "footer: extra field length %u, want 22",
					  xlen);
		digits = p + 12;
	}
	if (memcmp(digits + 16, "STARGZ", 6) != 0)
		return lp_err_set(err, EINVAL,
				  "footer: extra field does not end in STARGZ");
	if (estargz_parse_hex16(digits, ret_off) < 0)
		return lp_err_set(err, EINVAL, "footer: bad TOC offset \"%.16s\"",
				  (const char *)digits);
	return 0;
}

int estargz_parse_footer(const uint8_t *tail, size_t tail_len,
			 uint64_t blob_size, enum estargz_kind kind,
			 struct estargz_footer *ret, struct lp_err *err)
{
	struct estargz_footer f = { .kind = kind, .blob_size = blob_size };
	uint32_t fsz = estargz_footer_size(kind);
	const uint8_t *p;
	uint64_t limit, end;
	int r;

	if (!fsz)
		return lp_err_set(err, EINVAL, "footer: unknown kind %d", kind);
	if (blob_size < fsz || tail_len < fsz)
		return lp_err_set(err, EINVAL,
				  "footer: blob of %llu bytes is shorter than the %u-byte %s footer",
				  (unsigned long long)blob_size, fsz,
				  estargz_kind_name(kind));
	if (tail_len > blob_size)
		return lp_err_set(err, EINVAL,
				  "footer: %zu tail bytes of a %llu-byte blob",
				  tail_len, (unsigned long long)blob_size);
	p = tail + tail_len - fsz;
	f.footer_size = fsz;
	limit = blob_size - fsz;

	if (kind == ESTARGZ_KIND_ZSTD) {
		/*
		 * The reference checks only the trailing magic; the skippable
		 * frame header, JSON length and manifest type are ignored.
		 */
		if (memcmp(p + 40, "GnUlInUx", 8) != 0)
			return lp_err_set(err, EINVAL,
					  "footer: no zstd:chunked magic GnUlInUx at the end");
		f.toc_offset = estargz_le64(p + 8);
		f.toc_comp_len = estargz_le64(p + 16);
		f.toc_len_hint = estargz_le64(p + 24);
		if (f.toc_offset > INT64_MAX || f.toc_comp_len > INT64_MAX)
			return lp_err_set(err, EINVAL,
					  "footer: TOC offset %llu or length %llu is negative",
					  (unsigned long long)f.toc_offset,
					  (unsigned long long)f.toc_comp_len);
		if (f.toc_offset < 8)
			return lp_err_set(err, EINVAL,
					  "footer: TOC offset %llu leaves no room for its skippable frame header",
					  (unsigned long long)f.toc_offset);
		if (lp_add_overflow(f.toc_offset, f.toc_comp_len, &end) ||
		    end > limit)
			return lp_err_set(err, EINVAL,
					  "footer: TOC [%llu, +%llu) runs past the footer at %llu",
					  (unsigned long long)f.toc_offset,
					  (unsigned long long)f.toc_comp_len,
					  (unsigned long long)limit);
		if (f.toc_comp_len == 0)
			return lp_err_set(err, EINVAL, "footer: empty TOC");
		f.data_end = f.toc_offset - 8;
	} else {
		r = estargz_parse_gzip_footer(p, kind, &f.toc_offset, err);
		if (r < 0)
			return r;
		if (f.toc_offset >= limit)
			return lp_err_set(err, EINVAL,
					  "footer: TOC offset %llu is not before the footer at %llu",
					  (unsigned long long)f.toc_offset,
					  (unsigned long long)limit);
		f.toc_comp_len = limit - f.toc_offset;
		f.data_end = f.toc_offset;
	}
	*ret = f;
	return 0;
}

/* ---- TOC decompression ------------------------------------------------ */

/*
 * A tar numeric field: octal (NUL/space padded) or GNU base-256.  Values
 * above max are rejected, which also bounds the base-256 loop.
 */
static int estargz_tar_num(const uint8_t *p, size_t n, uint64_t max,
			   uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (p[0] & 0x80) {
		if (p[0] & 0x40)
			return -EINVAL; /* negative */
		v = p[0] & 0x3f;
		for (i = 1; i < n; i++) {
			if (v > (max >> 8))
				return -EFBIG;
			v = (v << 8) | p[i];
		}
		if (v > max)
			return -EFBIG;
		*ret = v;
		return 0;
	}
	while (i < n && (p[i] == ' ' || p[i] == 0))
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v > (max >> 3))
			return -EFBIG;
		v = (v << 3) | (uint64_t)(p[i] - '0');
	}
	for (; i < n; i++)
		if (p[i] != ' ' && p[i] != 0)
			return -EINVAL;
	if (v > max)
		return -EFBIG;
	*ret = v;
	return 0;
}

/* Go's archive/tar accepts either the unsigned or the signed header sum. */
static bool estargz_tar_checksum_ok(const uint8_t *h)
{
	uint64_t want;
	int64_t s = 0;
	uint64_t u = 0;

	if (estargz_tar_num(h + 148, 8, UINT32_MAX, &want) < 0)
		return false;
	for (int i = 0; i < 512; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];

		u += c;
		s += (int8_t)c;
	}
	return want == u || (int64_t)want == s;
}

/* Checks the TOC tar header; returns the JSON payload size. */
static int estargz_check_toc_header(const uint8_t *h, uint64_t *ret_size,
				    struct lp_err *err)
{
	static const char name[] = ESTARGZ_TOC_TAR_NAME;
	uint64_t size;
	int r;

	if (!estargz_tar_checksum_ok(h))
		return lp_err_set(err, EBADMSG, "toc: bad tar header checksum");
	/* raw compare, as the reference does: "./stargz.index.json" fails */
	if (memcmp(h, name, sizeof(name)) != 0 ||
	    (memcmp(h + 257, "ustar", 5) == 0 && h[345] != 0))
		return lp_err_set(err, EBADMSG,
				  "toc: first tar entry is not %s", name);
	if (h[156] != '0' && h[156] != 0)
		return lp_err_set(err, EBADMSG,
				  "toc: %s has tar type '%c', want a regular file",
				  name, h[156] >= 0x20 && h[156] < 0x7f ? h[156] : '?');
	r = estargz_tar_num(h + 124, 12, ESTARGZ_TOC_MAX_JSON, &size);
	if (r == -EFBIG)
		return lp_err_set(err, EFBIG,
				  "toc: JSON is larger than the %llu-byte cap",
				  ESTARGZ_TOC_MAX_JSON);
	if (r < 0)
		return lp_err_set(err, EBADMSG, "toc: bad tar size field");
	*ret_size = size;
	return 0;
}

/* A TOC buffer starts at most this big and doubles as data arrives, so a
 * header or footer claiming a huge TOC costs nothing until it is real. */
#define ESTARGZ_TOC_INITIAL (1u << 20)

/*
 * Inflates only the first gzip member: the TOC member holds the tar header,
 * the JSON and the end-of-archive blocks; we stop once the JSON is out.
 */
static int estargz_inflate_toc(const void *comp, size_t comp_len,
			       char **ret_json, size_t *ret_len,
			       struct lp_err *err)
{
	_cleanup_free_ char *json = NULL;
	uint8_t hdr[512];
	uint64_t size = 0, cap = 0;
	z_stream z = { 0 };
	bool got_hdr = false;
	int r = 0, zr;

	if (inflateInit2(&z, 16 + 15) != Z_OK)
		return lp_err_set(err, ENOMEM, "toc: inflateInit2 failed");
	z.next_in = (Bytef *)comp;
	z.avail_in = comp_len > UINT32_MAX ? UINT32_MAX : (uInt)comp_len;
	z.next_out = hdr;
	z.avail_out = sizeof(hdr);

	for (;;) {
		zr = inflate(&z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			r = lp_err_set(err, EBADMSG, "toc: inflate: %s",
				       z.msg ? z.msg : "corrupt data");
			goto out;
		}
		if (z.avail_out == 0 && !got_hdr) {
			r = estargz_check_toc_header(hdr, &size, err);
			if (r < 0)
				goto out;
			got_hdr = true;
			cap = size < ESTARGZ_TOC_INITIAL ? size :
							   ESTARGZ_TOC_INITIAL;
			json = lp_xmalloc(cap + 1);
			z.next_out = (Bytef *)json;
			z.avail_out = (uInt)cap;
		} else if (got_hdr && z.avail_out == 0 && cap < size) {
			uint64_t have = cap;

			cap = cap * 2 < size ? cap * 2 : size;
			json = lp_xrealloc(json, cap + 1);
			z.next_out = (Bytef *)json + have;
			z.avail_out = (uInt)(cap - have);
			/* a full buffer is not the end of the stream */
			if (zr != Z_STREAM_END)
				continue;
		}
		if (got_hdr && z.avail_out == 0)
			break;
		if (zr == Z_STREAM_END || zr == Z_BUF_ERROR) {
			r = lp_err_set(err, EBADMSG,
				       "toc: member ends before the %s",
				       got_hdr ? "end of the JSON" :
						 "end of its tar header");
			goto out;
		}
	}
	json[size] = 0;
	*ret_json = TAKE_PTR(json);
	*ret_len = size;
out:
	inflateEnd(&z);
	return r;
}

static int estargz_unzstd_toc(const void *comp, size_t comp_len,
			      uint64_t hint, char **ret_json, size_t *ret_len,
			      struct lp_err *err)
{
	_cleanup_free_ char *json = NULL;
	ZSTD_inBuffer in = { comp, comp_len, 0 };
	size_t cap, pos = 0, zr;
	ZSTD_DCtx *d;
	int r = 0;

	/* the footer's JSON length is unchecked upstream: only a hint */
	cap = hint && hint <= ESTARGZ_TOC_INITIAL ? hint : ESTARGZ_TOC_INITIAL;
	d = ZSTD_createDCtx();
	if (!d)
		return lp_err_set(err, ENOMEM, "toc: ZSTD_createDCtx failed");
	json = lp_xmalloc(cap + 1);

	/* Concatenated frames decode as one stream, as in the reference. */
	for (;;) {
		ZSTD_outBuffer out;

		if (pos == cap) {
			if (cap >= ESTARGZ_TOC_MAX_JSON) {
				r = lp_err_set(err, EFBIG,
					       "toc: JSON is larger than the %llu-byte cap",
					       ESTARGZ_TOC_MAX_JSON);
				goto out;
			}
			cap = cap * 2 > ESTARGZ_TOC_MAX_JSON ?
				      ESTARGZ_TOC_MAX_JSON : cap * 2;
			json = lp_xrealloc(json, cap + 1);
		}
		out = (ZSTD_outBuffer){ json, cap, pos };
		zr = ZSTD_decompressStream(d, &out, &in);
		if (ZSTD_isError(zr)) {
			r = lp_err_set(err, EBADMSG, "toc: zstd: %s",
				       ZSTD_getErrorName(zr));
			goto out;
		}
		pos = out.pos;
		if (in.pos == in.size && zr == 0)
			break;
		if (in.pos < in.size || pos == cap)
			continue;
		/* input used up, room left, and the frame is not done */
		r = lp_err_set(err, EBADMSG, "toc: zstd frame is truncated");
		goto out;
	}
	json[pos] = 0;
	*ret_json = TAKE_PTR(json);
	*ret_len = pos;
out:
	ZSTD_freeDCtx(d);
	return r;
}

int estargz_decompress_toc(const struct estargz_footer *f, const void *comp,
			   size_t comp_len, char **ret_json, size_t *ret_len,
			   struct lp_err *err)
{
	if (comp_len > ESTARGZ_TOC_MAX_COMPRESSED)
		return lp_err_set(err, EFBIG,
				  "toc: %zu compressed bytes exceed the %llu-byte cap",
				  comp_len, ESTARGZ_TOC_MAX_COMPRESSED);
	if (f->kind == ESTARGZ_KIND_ZSTD)
		return estargz_unzstd_toc(comp, comp_len, f->toc_len_hint,
					  ret_json, ret_len, err);
	return estargz_inflate_toc(comp, comp_len, ret_json, ret_len, err);
}
