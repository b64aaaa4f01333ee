// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the input is a RAFS bootstrap (v5 or v6).  It is loaded into
 * a model (superblocks, tables, the tree walk, chunk records), its blob ids
 * are listed, and, when the input is gzip, it is also walked as a bootstrap
 * layer (the tar.gz extraction).  The same bytes are also read as a data
 * blob (ToC, blob meta) and as a blob.meta file.
 */
#include <string.h>

#include "formats/rafs/rafs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rafs_meta meta = { 0 };
	struct model *m = NULL;
	char **ids = NULL;
	uint32_t n = 0;

	if (rafs_bootstrap_load(data, size, &m, &meta, NULL) == 0) {
		/* touch what a server would read */
		for (uint32_t i = 0; i < meta.n_prefetch; i++)
			(void)model_inode(m, meta.prefetch[i]);
		model_free(m);
		rafs_meta_release(&meta);
	}
	if (rafs_blob_ids(data, size, &ids, &n, NULL) == 0)
		rafs_blob_ids_free(ids, n);
	{
		struct lp_source *src = lp_source_new_mem(data, size, "fuzz");
		struct rafs_toc_entry te;
		struct rafs_ci_header h;
		struct rafs_ci *ci = NULL;
		void *boot = NULL;
		size_t len;

		if (rafs_blob_toc_find(src, "image.boot", &te, NULL) == 0 &&
		    te.uncomp_size < (1u << 20) &&
		    rafs_blob_toc_read(src, &te, &boot, &len, NULL) == 0)
			free(boot);
		if (rafs_blob_read_ci(src, &h, &ci, NULL) == 0)
			free(ci);
		ci = NULL;
		if (rafs_blob_meta_parse(data, size, &h, &ci, NULL) == 0)
			free(ci);
		lp_source_free(src);
	}
	if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
		struct lp_source *src = lp_source_new_mem(data, size, "fuzz");
		void *boot = NULL;
		size_t len;

		if (rafs_layer_extract_bootstrap(src, &boot, &len, NULL) == 0) {
			if (rafs_bootstrap_load(boot, len, &m, NULL, NULL) == 0)
				model_free(m);
			free(boot);
		}
		lp_source_free(src);
	}
	return 0;
}
