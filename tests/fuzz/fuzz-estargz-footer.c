// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the input is a whole blob.  Every footer kind is probed and
 * loaded (footer, TOC decompression, TOC parsing, model building), and the
 * first chunks of a loaded model are decoded and verified.
 */
#include <string.h>

#include "formats/estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_load(const struct format_ops *ops, const uint8_t *data,
		      size_t size)
{
	struct lp_source *src = lp_source_new_mem(data, size, "fuzz");
	struct format_info info = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	uint32_t tried = 0;

	if (ops->probe(src, NULL, &err) != 1 ||
	    ops->load(src, NULL, &m, &ctx, &info, &err) < 0) {
		lp_source_free(src);
		return;
	}
	for (uint32_t i = 0; i < m->n_chunks && tried < 16; i++) {
		const struct model_chunk *c = &m->chunks[i];
		uint8_t *out;

		/* a TOC may claim any chunk size; keep the fuzzer's RSS sane */
		if (c->len > (1u << 20) || c->comp_off > size ||
		    c->comp_len > size - c->comp_off)
			continue;
		out = malloc(c->len ? c->len : 1);
		if (!out)
			break;
		if (ops->decode_chunk(ctx, c, data + c->comp_off, c->comp_len,
				      out, NULL) == 0)
			model_chunk_verify(c, out, NULL);
		free(out);
		tried++;
	}
	model_free(m);
	ops->destroy(ctx);
	lp_source_free(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct estargz_footer f;

	for (int k = ESTARGZ_KIND_ESTARGZ; k <= ESTARGZ_KIND_ZSTD; k++)
		estargz_parse_footer(data, size, size, k, &f, NULL);
	fuzz_load(&estargz_ops, data, size);
	fuzz_load(&stargz_legacy_ops, data, size);
	fuzz_load(&zstdchunked_ops, data, size);
	return 0;
}
