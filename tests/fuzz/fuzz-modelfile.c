// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the saved-model loader (fs/modelfile.c).  Any input either
 * loads into a model that model_check() accepts, whose every string and
 * chunk run can be walked, or fails with a message.  The loader checks a
 * SHA-256 over the file first, so an input that is not a file the fuzzer
 * found whole is refused there; the seeds are whole files, and the target
 * also checks the input's body with its digest recomputed, which reaches
 * model_check() with every mutation.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/modelfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const uint8_t *data, size_t size)
{
	struct model_file_meta meta;
	struct lp_err err = { 0 };
	struct model *m = NULL;

	if (model_file_parse(data, size, "fuzz", &m, &meta, &err) < 0) {
		if (!err.msg[0] || m)
			abort();
		return;
	}
	for (uint32_t i = MODEL_ROOT_INO; i < m->n_inodes; i++) {
		const struct model_inode *in = &m->inodes[i];
		char path[4096];
		int r;

		if (strlen(model_str(m, in->name)) >= m->arena_len)
			abort();
		r = model_path(m, i, path, sizeof(path));
		if (r < 0 && r != -ENAMETOOLONG)
			abort();
		if (S_ISREG(in->mode) && in->size &&
		    model_chunk_at(m, i, in->size - 1) < 0)
			abort();
	}
	model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	one(data, size);
	/* the same body with a good digest */
	if (size < 32)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	lp_sha256(copy, size - 32, copy + size - 32);
	one(copy, size);
	free(copy);
	return 0;
}
