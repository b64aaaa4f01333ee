/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/layout: where a layer's files live on disk.  Each store builds its
 * paths here, and the snapshotter removes a layer's files by the same names,
 * so a store and the removal cannot drift apart.
 *
 *   CACHE/blobs/ALGO/HEX.data, .map   the blob cache (fetcher/cache.c)
 *   CACHE/decoded/HEX.data, .idx      decoded chunks (fs/decoded.c)
 *   CACHE/models/ALGO/HEX.model       parsed TOCs (cli/fetch.c)
 *   ROOT/indexes/ALGO/HEX.zran        zran indexes (cli/fetch.c)
 *
 * CACHE is the --cache-dir (ROOT/cache unless given), ROOT the --root.
 */
#ifndef LP_LAYOUT_H
#define LP_LAYOUT_H

enum lp_layer_file {
	LP_FILE_BLOB_DATA,
	LP_FILE_BLOB_MAP,
	LP_FILE_DECODED_DATA,
	LP_FILE_DECODED_IDX,
	LP_FILE_MODEL,
	LP_FILE_ZRAN, /* under ROOT, not CACHE */
	LP_FILE_N
};

/* The store's directory under base: "BASE/blobs", "BASE/decoded", ... */
char *lp_layout_dir(const char *base, enum lp_layer_file f);
/*
 * The file f of digest ("ALGO:HEX", or a bare HEX taken as sha256) in the
 * store directory dir (what lp_layout_dir gave): "DIR/ALGO/HEX.EXT", or
 * "DIR/HEX.EXT" for the decoded store.
 */
char *lp_layout_entry(const char *dir, enum lp_layer_file f,
		      const char *digest);
/* lp_layout_entry(lp_layout_dir(base, f), f, digest) */
char *lp_layout_file(const char *base, enum lp_layer_file f,
		     const char *digest);
/* ".data", ".map", ... */
const char *lp_layout_ext(enum lp_layer_file f);

#endif
