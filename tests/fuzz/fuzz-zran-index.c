// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the input is a zran index file.  Its payload checksum is
 * recomputed first (otherwise the fuzzer never gets past it).  A loaded
 * index must build a model, serialize back to the same bytes, and decode
 * its first chunks from a zero-filled range without crashing.
 */
#include <string.h>

#include "formats/zran/zran.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zran_index *idx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	uint8_t *copy = malloc(size ? size : 1), *ser = NULL;
	size_t ser_len = 0;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (size >= 64 && !memcmp(copy, ZRAN_INDEX_MAGIC, 8))
		lp_sha256(copy + 64, size - 64, copy + 24);
	if (zran_index_parse(copy, size, &idx, &err) < 0) {
		if (!err.msg[0])
			__builtin_trap();
		free(copy);
		return 0;
	}
	if (zran_index_serialize(idx, &ser, &ser_len, &err) == 0) {
		struct zran_index *idx2 = NULL;

		/* the windows are kept as stored: the same bytes come back */
		if (ser_len != size || memcmp(ser, copy, size))
			__builtin_trap();
		if (zran_index_parse(ser, ser_len, &idx2, &err) < 0)
			__builtin_trap();
		zran_index_free(idx2);
		free(ser);
	}
	if (zran_index_model(idx, &m, &err) == 0) {
		for (uint32_t i = 0; i < m->n_chunks && i < 4; i++) {
			const struct model_chunk *c = &m->chunks[i];
			size_t n = c->comp_len < 4096 ? (size_t)c->comp_len
						      : 4096;
			uint8_t *in = calloc(1, n ? n : 1);
			uint8_t *out = c->len <= (1u << 20) ? malloc(c->len)
							   : NULL;

			if (in && out)
				zran_index_decode(idx, c, in, n, out, &err);
			free(in);
			free(out);
		}
		model_free(m);
	}
	zran_index_free(idx);
	free(copy);
	return 0;
}
