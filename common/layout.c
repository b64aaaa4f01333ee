/* SPDX-License-Identifier: Apache-2.0 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/layout.h"

static const struct {
	const char *dir, *ext;
	bool algo_dir; /* entries sit in a subdirectory named by the algorithm */
} layout[LP_FILE_N] = {
	[LP_FILE_BLOB_DATA] = { "blobs", ".data", true },
	[LP_FILE_BLOB_MAP] = { "blobs", ".map", true },
	[LP_FILE_DECODED_DATA] = { "decoded", ".data", false },
	[LP_FILE_DECODED_IDX] = { "decoded", ".idx", false },
	[LP_FILE_MODEL] = { "models", ".model", true },
	[LP_FILE_ZRAN] = { "indexes", ".zran", true },
};

char *lp_layout_dir(const char *base, enum lp_layer_file f)
{
	return lp_xasprintf("%s/%s", base, layout[f].dir);
}

char *lp_layout_entry(const char *dir, enum lp_layer_file f,
		      const char *digest)
{
	const char *colon = strchr(digest, ':');
	const char *hex = colon ? colon + 1 : digest;
	int alen = colon ? (int)(colon - digest) : 6;

	if (!layout[f].algo_dir)
		return lp_xasprintf("%s/%s%s", dir, hex, layout[f].ext);
	return lp_xasprintf("%s/%.*s/%s%s", dir, alen,
			    colon ? digest : "sha256", hex, layout[f].ext);
}

char *lp_layout_file(const char *base, enum lp_layer_file f,
		     const char *digest)
{
	char *dir = lp_layout_dir(base, f);
	char *p = lp_layout_entry(dir, f, digest);

	free(dir);
	return p;
}

const char *lp_layout_ext(enum lp_layer_file f)
{
	return layout[f].ext;
}
