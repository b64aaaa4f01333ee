// SPDX-License-Identifier: Apache-2.0
/*
 * What a native RAFS data blob carries besides chunks (spec §2.11, §2.12):
 * the ToC at its end, and the blob meta — the compression-context (CI)
 * table with its 4096-byte header — that nydusd uses as the v6 source of
 * truth for chunk locations.
 */
#define LP_MODNAME "rafs"
#include <zstd.h>
#ifdef LP_HAVE_LZ4
#include <lz4.h>
#endif

#include "formats/rafs/rafs-int.h"

#define CI_MAGIC 0xB10BB10Bu
#define CI_HEADER_SIZE 4096u
#define TOC_ENTRY_SIZE 128u
#define TAR_BLOCK 512u
#define CI_MAX_BYTES (64u << 20) /* 2^24 chunks x 24 bytes, plus zran */

int rafs_ci_header_parse(const void *hdr, size_t len, struct rafs_ci_header *h,
			 struct lp_err *err)
{
	const uint8_t *d = hdr;

	if (len < CI_HEADER_SIZE || rafs_le32(d) != CI_MAGIC ||
	    rafs_le32(d + CI_HEADER_SIZE - 4) != CI_MAGIC)
		return lp_err_set(err, EINVAL, "blob meta: bad header magic");
	h->features = rafs_le32(d + 4);
	h->compressor = rafs_le32(d + 8);
	h->entries = rafs_le32(d + 12);
	h->ci_offset = rafs_le64(d + 16);
	h->ci_comp_size = rafs_le64(d + 24);
	h->ci_uncomp_size = rafs_le64(d + 32);
	h->zran_offset = rafs_le64(d + 40);
	h->zran_size = rafs_le64(d + 48);
	h->zran_count = rafs_le32(d + 56);
	if (h->entries > RAFS_BLOB_MAX_CHUNKS || h->compressor > RAFS_COMP_ZSTD)
		return lp_err_set(err, EINVAL,
				  "blob meta: %u entries, compressor %u",
				  h->entries, h->compressor);
	if (h->ci_uncomp_size > CI_MAX_BYTES || h->ci_comp_size > CI_MAX_BYTES)
		return lp_err_set(err, EINVAL, "blob meta: CI area too big");
	if (h->ci_uncomp_size <
	    (uint64_t)h->entries *
		    (h->features & RAFS_BLOB_CHUNK_INFO_V2 ? 24 : 16))
		return lp_err_set(
			err, EINVAL, "blob meta: %llu bytes for %u CI entries",
			(unsigned long long)h->ci_uncomp_size, h->entries);
	return 0;
}

int rafs_ci_decode(const void *ci, size_t len, uint32_t n, bool v2,
		   struct rafs_ci *out, struct lp_err *err)
{
	const uint8_t *d = ci;
	size_t esz = v2 ? 24 : 16;

	if (len / esz < n)
		return lp_err_set(err, EINVAL,
				  "blob meta: %zu bytes for %u CI entries", len,
				  n);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = d + (size_t)i * esz;
		uint64_t u = rafs_le64(e), c = rafs_le64(e + 8);
		struct rafs_ci *o = &out[i];

		if (v2) {
			o->uncomp_off = (u & 0xffffffffull) << 12;
			o->uncomp_size = (uint32_t)((u >> 32) & 0xffffff) + 1;
			o->flags = (uint32_t)(u >> 56);
			o->comp_off = c & 0xffffffffffull;
			o->comp_size = (uint32_t)(c >> 40);
			o->data = rafs_le64(e + 16);
		} else {
			/* size - 1 is split 20 + 4 bits, in odd places */
			o->uncomp_off = u & 0xffffffff000ull; /* bits 12..43 */
			o->uncomp_size =
				(uint32_t)((u >> 44) | ((u >> 8) & 0xf) << 20) +
				1;
			o->comp_off = c & 0xffffffffffull;
			o->comp_size = (uint32_t)((c >> 44) | ((c >> 40) & 0xf)
								      << 20) +
				       1;
			o->flags = o->comp_size != o->uncomp_size
					   ? RAFS_CI_COMPRESSED
					   : 0;
			o->data = 0;
		}
	}
	return 0;
}

static int ci_entries(const uint8_t *ci, size_t len,
		      const struct rafs_ci_header *h, struct rafs_ci **ret,
		      struct lp_err *err)
{
	struct rafs_ci *out =
		lp_xcalloc(h->entries ? h->entries : 1, sizeof(*out));
	int r = rafs_ci_decode(ci, len, h->entries,
			       h->features & RAFS_BLOB_CHUNK_INFO_V2, out, err);

	if (r < 0) {
		free(out);
		return r;
	}
	*ret = out;
	return 0;
}

int rafs_blob_meta_parse(const void *data, size_t len, struct rafs_ci_header *h,
			 struct rafs_ci **ret, struct lp_err *err)
{
	uint64_t area;
	int r;

	if (len < CI_HEADER_SIZE)
		return lp_err_set(err, EINVAL, "blob meta: %zu bytes", len);
	r = rafs_ci_header_parse((const uint8_t *)data + len - CI_HEADER_SIZE,
				 CI_HEADER_SIZE, h, err);
	if (r < 0)
		return r;
	area = (h->ci_uncomp_size + 4095) & ~4095ull;
	if (area + CI_HEADER_SIZE != len)
		return lp_err_set(err, EINVAL,
				  "blob meta: %zu bytes, expected %llu", len,
				  (unsigned long long)(area + CI_HEADER_SIZE));
	return ci_entries(data, (size_t)h->ci_uncomp_size, h, ret, err);
}

/* ---- the ToC ------------------------------------------------------------- */

int rafs_blob_toc_find(struct lp_source *blob, const char *name,
		       struct rafs_toc_entry *ret, struct lp_err *err)
{
	uint8_t hdr[TAR_BLOCK];
	_cleanup_free_ uint8_t *ents = NULL;
	uint64_t size = 0;
	int r;

	if (blob->size < TAR_BLOCK)
		return lp_err_set(err, ENOENT, "%s: no ToC", blob->name);
	r = lp_source_read_full(blob, hdr, TAR_BLOCK, blob->size - TAR_BLOCK,
				err);
	if (r < 0)
		return r;
	if (strncmp((const char *)hdr, "rafs.blob.toc", 100))
		return lp_err_set(err, ENOENT, "%s: no ToC", blob->name);
	for (int i = 124; i < 136 && hdr[i] >= '0' && hdr[i] <= '7'; i++)
		size = size << 3 | (uint64_t)(hdr[i] - '0');
	if (size % TOC_ENTRY_SIZE || size > 1u << 20 ||
	    size > blob->size - TAR_BLOCK)
		return lp_err_set(err, EINVAL, "%s: bad ToC size %llu",
				  blob->name, (unsigned long long)size);
	ents = lp_xmalloc(size ? (size_t)size : 1);
	r = lp_source_read_full(blob, ents, (size_t)size,
				blob->size - TAR_BLOCK - size, err);
	if (r < 0)
		return r;
	for (uint64_t o = 0; o < size; o += TOC_ENTRY_SIZE) {
		const uint8_t *e = ents + o;

		if (strncmp((const char *)e + 8, name, 16) ||
		    strnlen(name, 17) > 16)
			continue;
		memset(ret, 0, sizeof(*ret));
		ret->flags = rafs_le32(e);
		memcpy(ret->name, e + 8, 16);
		memcpy(ret->sha256, e + 24, 32);
		ret->comp_off = rafs_le64(e + 56);
		ret->comp_size = rafs_le64(e + 64);
		ret->uncomp_size = rafs_le64(e + 72);
		return 0;
	}
	return lp_err_set(err, ENOENT, "%s: no \"%s\" in the ToC", blob->name,
			  name);
}

/* Decompresses a whole (small) section: none, zstd or lz4_block. */
static int decompress(int comp, const uint8_t *in, size_t in_len, uint8_t *out,
		      size_t out_len, struct lp_err *err)
{
	switch (comp) {
	case RAFS_COMP_NONE:
		if (in_len != out_len)
			break;
		memcpy(out, in, in_len);
		return 0;
	case RAFS_COMP_ZSTD: {
		size_t n = ZSTD_decompress(out, out_len, in, in_len);

		if (ZSTD_isError(n) || n != out_len)
			break;
		return 0;
	}
	case RAFS_COMP_LZ4:
#ifdef LP_HAVE_LZ4
		if (in_len > INT32_MAX || out_len > INT32_MAX ||
		    LZ4_decompress_safe((const char *)in, (char *)out,
					(int)in_len,
					(int)out_len) != (int)out_len)
			break;
		return 0;
#else
		return lp_err_set(err, EOPNOTSUPP, "built without liblz4");
#endif
	default:
		return lp_err_set(err, EOPNOTSUPP, "compressor %d", comp);
	}
	return lp_err_set(err, EBADMSG, "corrupt compressed section");
}

int rafs_blob_toc_read(struct lp_source *blob, const struct rafs_toc_entry *e,
		       void **ret, size_t *ret_len, struct lp_err *err)
{
	_cleanup_free_ uint8_t *in = NULL;
	uint8_t *out, dg[32];
	static const uint8_t zero[32];
	int comp, r;

	if (e->flags & 0x1)
		comp = RAFS_COMP_NONE;
	else if (e->flags & 0x2)
		comp = RAFS_COMP_ZSTD;
	else if (e->flags & 0x4)
		comp = RAFS_COMP_LZ4;
	else
		return lp_err_set(err, EOPNOTSUPP, "ToC entry %s: flags 0x%x",
				  e->name, e->flags);
	if (e->uncomp_size > RAFS_BOOTSTRAP_MAX ||
	    e->comp_size > RAFS_BOOTSTRAP_MAX)
		return lp_err_set(err, EFBIG, "ToC entry %s: too big", e->name);
	if (!rafs_in(blob->size, e->comp_off, e->comp_size))
		return lp_err_set(err, EINVAL,
				  "%s: ToC entry %s is outside the blob",
				  blob->name, e->name);
	in = lp_xmalloc(e->comp_size ? (size_t)e->comp_size : 1);
	r = lp_source_read_full(blob, in, (size_t)e->comp_size, e->comp_off,
				err);
	if (r < 0)
		return r;
	out = lp_xmalloc(e->uncomp_size ? (size_t)e->uncomp_size : 1);
	r = decompress(comp, in, (size_t)e->comp_size, out,
		       (size_t)e->uncomp_size, err);
	if (r == 0 && memcmp(e->sha256, zero, 32)) {
		lp_sha256(out, (size_t)e->uncomp_size, dg);
		if (memcmp(dg, e->sha256, 32))
			r = lp_err_set(err, EBADMSG,
				       "ToC entry %s: sha256 mismatch",
				       e->name);
	}
	if (r < 0) {
		free(out);
		return lp_err_wrap(err, "%s: ToC entry %s", blob->name,
				   e->name);
	}
	*ret = out;
	*ret_len = (size_t)e->uncomp_size;
	return 0;
}

/* ---- the blob meta of a data blob ---------------------------------------- */

int rafs_blob_read_ci(struct lp_source *blob, struct rafs_ci_header *h,
		      struct rafs_ci **ret, struct lp_err *err)
{
	struct rafs_toc_entry te;
	uint8_t hdr[CI_HEADER_SIZE];
	uint64_t hoff, end;
	_cleanup_free_ uint8_t *in = NULL, *ci = NULL;
	int r;

	/* Since 2.2 the ToC names the header; before, it ends the blob. */
	r = rafs_blob_toc_find(blob, "blob.meta.header", &te, NULL);
	if (r == 0 && te.comp_size == CI_HEADER_SIZE)
		hoff = te.comp_off;
	else if (blob->size >= CI_HEADER_SIZE)
		hoff = blob->size - CI_HEADER_SIZE;
	else
		return lp_err_set(err, EINVAL, "%s: no blob meta", blob->name);
	r = lp_source_read_full(blob, hdr, sizeof(hdr), hoff, err);
	if (r < 0)
		return r;
	r = rafs_ci_header_parse(hdr, sizeof(hdr), h, err);
	if (r < 0)
		return lp_err_wrap(err, "%s", blob->name);
	if (lp_add_overflow(h->ci_offset, h->ci_comp_size, &end) || end > hoff)
		return lp_err_set(
			err, EINVAL,
			"%s: blob meta CI area [%llu, +%llu) overlaps "
			"its header",
			blob->name, (unsigned long long)h->ci_offset,
			(unsigned long long)h->ci_comp_size);
	in = lp_xmalloc(h->ci_comp_size ? (size_t)h->ci_comp_size : 1);
	r = lp_source_read_full(blob, in, (size_t)h->ci_comp_size, h->ci_offset,
				err);
	if (r < 0)
		return r;
	ci = lp_xmalloc(h->ci_uncomp_size ? (size_t)h->ci_uncomp_size : 1);
	r = decompress((int)h->compressor, in, (size_t)h->ci_comp_size, ci,
		       (size_t)h->ci_uncomp_size, err);
	if (r < 0)
		return lp_err_wrap(err, "%s: blob meta", blob->name);
	return ci_entries(ci, (size_t)h->ci_uncomp_size, h, ret, err);
}
