/* SPDX-License-Identifier: Apache-2.0 */
/*
 * formats/estargz: eStargz (51-byte gzip footer), legacy CRFS stargz
 * (47-byte gzip footer) and zstd:chunked (48-byte skippable-frame footer).
 *
 * All three carry a JSON table of contents (TOC, "stargz.index.json") near
 * the end of the blob that lists every tar entry and, for regular files,
 * where each chunk's compressed member/frame starts.  The reader turns the
 * TOC into a model (fs/model.h) whose chunks point into the layer blob
 * itself (blob index 0).  Byte-level facts: shared/research/estargz-format.md.
 *
 * Readers never touch the network: load() reads the footer and the TOC
 * through a struct lp_source; decode_chunk() works on bytes the caller
 * fetched.  The parse functions below take (data, size) so tests and
 * fuzzers can call them without a source.
 */
#ifndef LP_FORMATS_ESTARGZ_H
#define LP_FORMATS_ESTARGZ_H

#include "common/common.h"
#include "fs/model.h"

/*
 * Format tables.  probe() only parses the footer (one read of the last
 * bytes); load() also reads, decompresses and parses the TOC, checks it
 * against hints->toc_digest when given (-EBADMSG on mismatch) and fills
 * info.  Detection order should be estargz, stargz_legacy, zstdchunked.
 *
 * decode_chunk() may be called concurrently from several threads on one
 * context: it keeps no shared state.  It expects stored/stored_len to be
 * the bytes [c->comp_off, c->comp_off + c->comp_len) of the blob (fewer is
 * fine as long as the member/frame producing c->len bytes is complete) and
 * writes exactly c->len bytes, or fails (-EBADMSG) when the member/frame
 * is corrupt or ends early.
 */
extern const struct format_ops estargz_ops;	  /* "estargz" */
extern const struct format_ops stargz_legacy_ops; /* "stargz" */
extern const struct format_ops zstdchunked_ops;	  /* "zstd:chunked" */

/* Limits on what a TOC may cost us before parsing even starts. */
#define ESTARGZ_TOC_MAX_COMPRESSED (64ull << 20)
#define ESTARGZ_TOC_MAX_JSON (256ull << 20)

enum estargz_kind {
	ESTARGZ_KIND_ESTARGZ = 0, /* gzip, 51-byte footer */
	ESTARGZ_KIND_LEGACY,	  /* gzip, 47-byte footer (CRFS) */
	ESTARGZ_KIND_ZSTD,	  /* zstd:chunked, 48-byte footer */
};

#define ESTARGZ_FOOTER_SIZE 51
#define ESTARGZ_LEGACY_FOOTER_SIZE 47
#define ESTARGZ_ZSTD_FOOTER_SIZE 48
#define ESTARGZ_MAX_FOOTER_SIZE 51

/* Name of the TOC tar entry inside the eStargz/legacy TOC member. */
#define ESTARGZ_TOC_TAR_NAME "stargz.index.json"
#define ESTARGZ_PREFETCH_LANDMARK ".prefetch.landmark"
#define ESTARGZ_NO_PREFETCH_LANDMARK ".no.prefetch.landmark"

/* What a footer says, already bounds-checked against the blob size. */
struct estargz_footer {
	enum estargz_kind kind;
	uint32_t footer_size;
	uint64_t blob_size;
	/* eStargz/legacy: the TOC gzip member; zstd: the TOC zstd frame
	 * (its skippable frame header sits 8 bytes before). */
	uint64_t toc_offset;
	uint64_t toc_comp_len;
	/* zstd only: the JSON length the footer claims (a hint); 0 for gzip */
	uint64_t toc_len_hint;
	/* chunk data lives in [0, data_end): the TOC member (gzip) or the
	 * TOC's skippable frame header (zstd) starts there */
	uint64_t data_end;
};

/* Returns the footer size of kind, 0 for an unknown kind. */
uint32_t estargz_footer_size(enum estargz_kind kind);
/* "estargz", "stargz", "zstd:chunked" */
const char *estargz_kind_name(enum estargz_kind kind);

/*
 * Parses the footer of a blob of blob_size bytes.  tail holds the LAST
 * tail_len bytes of the blob (tail_len may exceed the footer size; only the
 * last footer-size bytes are looked at).  Checks: blob_size >= footer,
 * magic/subfields, TOC offset >= 0 and the TOC inside
 * [0, blob_size - footer).  Returns 0, or -EINVAL (not this format, or
 * bad offsets) with a message.
 */
int estargz_parse_footer(const uint8_t *tail, size_t tail_len,
			 uint64_t blob_size, enum estargz_kind kind,
			 struct estargz_footer *ret, struct lp_err *err);

/*
 * Decompresses the TOC given its compressed bytes (exactly
 * [f->toc_offset, f->toc_offset + f->toc_comp_len) of the blob).
 * eStargz/legacy: inflates the first gzip member, whose first tar entry
 * must be "stargz.index.json", and returns that entry's payload.  zstd:
 * decodes the frame(s).  *ret_json is malloc'ed, NUL-terminated (not
 * counted in *ret_len), at most ESTARGZ_TOC_MAX_JSON bytes.  Returns 0,
 * -EBADMSG (corrupt), -EFBIG (over the cap), -EINVAL.
 */
int estargz_decompress_toc(const struct estargz_footer *f, const void *comp,
			   size_t comp_len, char **ret_json, size_t *ret_len,
			   struct lp_err *err);

/*
 * Parses TOC JSON (len bytes, need not be NUL-terminated) and feeds every
 * entry into b, except the two root landmarks, which are only recorded in
 * info->landmark / info->prefetch_offset (info may be NULL).  Chunks get
 * blob index 0, codec from f->kind (GZIP_MEMBER or ZSTD_FRAME) and
 * comp_len up to the next data offset (or f->data_end); every chunk offset
 * must lie in [0, f->data_end).  Only f->kind and f->data_end are used.
 * The caller adds blob 0 first and calls model_builder_finish() on
 * success; on failure b is partially filled and the caller frees it.
 * Returns 0 or -EINVAL with a message naming the entry and field.
 */
int estargz_parse_toc(const char *json, size_t len,
		      const struct estargz_footer *f, struct model_builder *b,
		      struct format_info *info, struct lp_err *err);

/*
 * Parses an RFC 3339 time ("2021-06-01T12:00:00Z", fractions and numeric
 * offsets allowed) into seconds since the epoch.  Returns 0 or -EINVAL.
 */
int estargz_parse_time(const char *s, size_t len, int64_t *ret);

/*
 * gzip chunks inflated whole by libdeflate (the others go through zlib),
 * zstd chunks decoded in one call, or else block by block into the chunk
 * (the others stream), counted for the tests.
 */
extern uint64_t estargz_gzip_fast_decodes, estargz_zstd_fast_decodes,
	estargz_zstd_blockwise_decodes;

#endif
