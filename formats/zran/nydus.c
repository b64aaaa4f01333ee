/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nydus' zran blob-meta cache file (rafs-nydus-spec §2.11, §3.3): the
 * uncompressed CI area (v2 CI entries, ZranInflateContext table,
 * dictionaries) padded to 4 KiB, then the 4096-byte header.
 */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <string.h>

#include "common/endian.h"
#include "formats/zran/zran-int.h"

#define META_HDR 4096u
#define CI_V2_LEN 24u
#define CTX_LEN 40u

#define FEAT_CHUNK_INFO_V2 0x4u
#define FEAT_ZRAN 0x8u
#define FEAT_ENCRYPTED 0x100u

#define CI_FLAG_ZRAN 0x02u

#define BAD(...) lp_err_set(err, EBADMSG, "nydus blob.meta: " __VA_ARGS__)

void zran_nydus_meta_free(struct zran_nydus_meta *m)
{
	if (!m)
		return;
	free(m->chunks);
	free(m->ctx);
	free(m->dict);
	free(m);
}

int zran_nydus_meta_parse(const void *data, size_t size,
			  struct zran_nydus_meta **ret, struct lp_err *err)
{
	const uint8_t *d = data, *h;
	struct zran_nydus_meta *m;
	uint64_t ci_size, zran_off, zran_size, aligned, ctx_end;
	uint32_t entries, nctx;

	if (size < META_HDR)
		return BAD("%zu bytes, shorter than the header", size);
	h = d + size - META_HDR;
	if (lp_get_le32(h) != ZRAN_NYDUS_META_MAGIC ||
	    lp_get_le32(h + 4092) != ZRAN_NYDUS_META_MAGIC)
		return BAD("bad header magic");
	uint32_t features = lp_get_le32(h + 4);

	entries = lp_get_le32(h + 12);
	ci_size = lp_get_le64(h + 32);
	zran_off = lp_get_le64(h + 40);
	zran_size = lp_get_le64(h + 48);
	nctx = lp_get_le32(h + 56);
	if (features & FEAT_ENCRYPTED)
		return lp_err_set(err, EOPNOTSUPP,
				  "nydus blob.meta: encrypted blobs are not "
				  "supported");
	if ((features & (FEAT_CHUNK_INFO_V2 | FEAT_ZRAN)) !=
	    (FEAT_CHUNK_INFO_V2 | FEAT_ZRAN))
		return lp_err_set(err, EOPNOTSUPP,
				  "nydus blob.meta: features 0x%x are not "
				  "zran with v2 chunk info",
				  features);
	if (ci_size > size || (aligned = (ci_size + 4095) & ~4095ull) >
				      size - META_HDR ||
	    aligned + META_HDR != size)
		return BAD("file is %zu bytes, CI area %" PRIu64, size,
			   ci_size);
	if (zran_off != (uint64_t)entries * CI_V2_LEN)
		return BAD("zran table at %" PRIu64 ", want %" PRIu64, zran_off,
			   (uint64_t)entries * CI_V2_LEN);
	if (zran_size > ci_size || zran_off > ci_size - zran_size ||
	    (uint64_t)nctx * CTX_LEN > zran_size)
		return BAD("zran table (%" PRIu64 "+%" PRIu64
			   ", %u contexts) outside the CI area (%" PRIu64 ")",
			   zran_off, zran_size, nctx, ci_size);
	ctx_end = zran_off + (uint64_t)nctx * CTX_LEN;

	m = lp_xcalloc(1, sizeof(*m));
	m->features = features;
	m->n_chunks = entries;
	m->n_ctx = nctx;
	m->dict_len = zran_off + zran_size - ctx_end;
	m->chunks = lp_xcalloc(entries ? entries : 1, sizeof(*m->chunks));
	m->ctx = lp_xcalloc(nctx ? nctx : 1, sizeof(*m->ctx));
	m->dict = lp_xmalloc(m->dict_len ? m->dict_len : 1);
	memcpy(m->dict, d + ctx_end, m->dict_len);

	for (uint32_t i = 0; i < nctx; i++) {
		const uint8_t *p = d + zran_off + (uint64_t)i * CTX_LEN;
		struct zran_nydus_ctx *c = &m->ctx[i];

		c->in_off = lp_get_le64(p);
		c->out_off = lp_get_le64(p + 8);
		c->dict_off = lp_get_le64(p + 16);
		c->in_len = lp_get_le32(p + 24);
		c->out_len = lp_get_le32(p + 28);
		c->dict_size = lp_get_le32(p + 32);
		c->ctx_byte = p[36];
		c->ctx_bits = p[37];
		if (c->ctx_bits > 7 || c->dict_size > ZRAN_WINDOW_SIZE ||
		    c->dict_off > m->dict_len ||
		    c->dict_size > m->dict_len - c->dict_off || !c->in_len) {
			zran_nydus_meta_free(m);
			return BAD("context %u is invalid", i);
		}
	}
	for (uint32_t i = 0; i < entries; i++) {
		const uint8_t *p = d + (uint64_t)i * CI_V2_LEN;
		struct zran_nydus_chunk *c = &m->chunks[i];
		uint64_t u = lp_get_le64(p), cinfo = lp_get_le64(p + 8),
			 x = lp_get_le64(p + 16);

		c->uncomp_off = (u & 0xffffffffu) << 12;
		c->uncomp_size = (uint32_t)((u >> 32) & 0xffffff) + 1;
		c->flags = (uint8_t)(u >> 56);
		c->comp_off = cinfo & 0xffffffffffull;
		c->comp_size = (uint32_t)(cinfo >> 40);
		c->ctx = (uint32_t)(x >> 32);
		c->ctx_off = (uint32_t)x;
		if (!(c->flags & CI_FLAG_ZRAN)) {
			zran_nydus_meta_free(m);
			return lp_err_set(err, EOPNOTSUPP,
					  "nydus blob.meta: chunk %u is not a "
					  "zran chunk (flags 0x%x)",
					  i, c->flags);
		}
		if (c->ctx >= nctx ||
		    (uint64_t)c->ctx_off + c->uncomp_size >
			    m->ctx[c->ctx].out_len ||
		    (i && c->uncomp_off < m->chunks[i - 1].uncomp_off)) {
			zran_nydus_meta_free(m);
			return BAD("chunk %u is invalid", i);
		}
	}
	*ret = m;
	return 0;
}

int zran_nydus_decode(const struct zran_nydus_meta *m, uint32_t i,
		      const void *stored, size_t stored_len, void *out,
		      struct lp_err *err)
{
	const struct zran_nydus_chunk *c;
	const struct zran_nydus_ctx *x;

	if (i >= m->n_chunks)
		return lp_err_set(err, EINVAL, "nydus blob.meta: no chunk %u",
				  i);
	c = &m->chunks[i];
	x = &m->ctx[c->ctx];
	if (stored_len > x->in_len)
		stored_len = x->in_len;
	return zran_inflate_span(x->ctx_bits, x->ctx_byte,
				 m->dict + x->dict_off, x->dict_size, stored,
				 stored_len, c->ctx_off, out, c->uncomp_size,
				 err);
}
