// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the input is TOC JSON, or a compressed TOC (a gzip member
 * holding the stargz.index.json tar entry, or a zstd frame), which is
 * decompressed first.  The TOC is parsed into a model builder and the
 * model finished and freed; nothing may leak.
 */
#include <string.h>

#include "formats/estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_parse(const char *json, size_t len, enum estargz_kind kind)
{
	struct estargz_footer f = { .kind = kind, .data_end = 1u << 30 };
	struct format_info info = { 0 };
	struct model_builder *b = model_builder_new(0);
	struct model *m = NULL;

	if (model_builder_add_blob(b, "fuzz", NULL, 1u << 30, NULL, NULL) < 0 ||
	    estargz_parse_toc(json, len, &f, b, &info, NULL) < 0) {
		model_builder_free(b);
		return;
	}
	if (model_builder_finish(b, &m, NULL) == 0)
		model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct estargz_footer f = { 0 };
	char *json = NULL;
	size_t len;

	if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)
		f.kind = ESTARGZ_KIND_ESTARGZ;
	else if (size >= 4 && !memcmp(data, "\x28\xb5\x2f\xfd", 4))
		f.kind = ESTARGZ_KIND_ZSTD;
	else {
		fuzz_parse((const char *)data, size, ESTARGZ_KIND_ESTARGZ);
		return 0;
	}
	if (estargz_decompress_toc(&f, data, size, &json, &len, NULL) == 0) {
		fuzz_parse(json, len, f.kind);
		free(json);
	}
	return 0;
}
