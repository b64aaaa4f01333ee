/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/modelfile: a layer's model saved to a file and loaded back without
 * its reader.  The snapshotter's probe of an eStargz-family layer parses
 * the TOC (2 MB of JSON for a Debian base layer: 100-200 ms of CPU while a
 * container waits to start); it saves the model, and the mount that
 * follows loads it in a few milliseconds instead of parsing the TOC again.
 *
 * The file: a header (magic, the producer's version, the sizes of the
 * model's records, the counts, the format and its format_info), the
 * model's arrays as they are in memory, then the SHA-256 of everything
 * before it.  A file from another build or version, a torn or corrupt one
 * is refused (-ESTALE for another producer, -EBADMSG for the rest) and the
 * caller parses the layer again.  A loaded model is checked as if it were
 * untrusted (model_check): every index, string, chunk run and parent chain,
 * so a file that passes the digest yet lies cannot make a reader go out of
 * bounds or loop.
 */
#ifndef LP_FS_MODELFILE_H
#define LP_FS_MODELFILE_H

#include "fs/model.h"

#define MODEL_FILE_MAX (1ull << 30) /* bytes: larger files are refused */

/* what a saved model carries besides the model */
struct model_file_meta {
	char format[24];	 /* the reader: "estargz", "zstd:chunked", ... */
	struct format_info info; /* info.format is not saved (NULL on load) */
};

/*
 * Writes m and meta to path atomically (a temporary file in the same
 * directory, renamed over path).  producer names the build that wrote it
 * (at most 31 bytes count): a load by any other is refused.  0 or -errno
 * with err set.
 */
int model_file_save(const struct model *m, const struct model_file_meta *meta,
		    const char *producer, const char *path,
		    struct lp_err *err);

/* The model in buf (len bytes, a whole file) saved by producer: 0 and
 * *ret, or -ESTALE (another producer or layout) / -EBADMSG with err set. */
int model_file_parse(const void *buf, size_t len, const char *producer,
		     struct model **ret, struct model_file_meta *meta,
		     struct lp_err *err);

/* model_file_parse() of the file at path; -ENOENT if there is none. */
int model_file_load(const char *path, const char *producer,
		    struct model **ret, struct model_file_meta *meta,
		    struct lp_err *err);

/*
 * Checks what the readers of a model rely on: the root is a directory;
 * every string offset, index and range is in bounds; a directory's
 * entries are sorted and name each child directory once, under its
 * parent; parent chains end at the root; a symlink's size is its
 * target's length; a regular file's chunks cover [0, size) in order.  0,
 * or -EBADMSG with err set.
 */
int model_check(const struct model *m, struct lp_err *err);

#endif
