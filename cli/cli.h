/* SPDX-License-Identifier: Apache-2.0 */
#ifndef LP_CLI_H
#define LP_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "cli/fetch.h"
#include "cli/progress.h"
#include "fs/engine.h"

#define EXIT_USAGE 2

/* Options every subcommand that opens a layer accepts. */
struct cli_layer_opts {
	const char *format;
	const char *blob_dir;
	const char *toc_digest;
	const char *media_type;
	const char *index;
	struct cli_remote_opts ro; /* for registry references */
	struct cli_remote *remote; /* set by cli_open for a reference */
};

/* Sets defaults; pair with cli_layer_opts_release (after the layer). */
void cli_layer_opts_init(struct cli_layer_opts *o);
void cli_layer_opts_release(struct cli_layer_opts *o);

/* getopt_long ids for the shared options */
enum {
	OPT_FORMAT = 0x100,
	OPT_BLOB_DIR,
	OPT_TOC_DIGEST,
	OPT_MEDIA_TYPE,
	OPT_JSON,
	OPT_DIGEST,
	OPT_HELP,
	OPT_INDEX,
	OPT_PROGRESS,
	OPT_NO_PROGRESS,
};

#define CLI_LAYER_LONGOPTS                                                     \
	{ "format", required_argument, NULL, OPT_FORMAT },                     \
		{ "blob-dir", required_argument, NULL, OPT_BLOB_DIR },         \
		{ "toc-digest", required_argument, NULL, OPT_TOC_DIGEST },     \
		{ "media-type", required_argument, NULL, OPT_MEDIA_TYPE },     \
		{ "index", required_argument, NULL, OPT_INDEX },               \
		{ "progress", no_argument, NULL, OPT_PROGRESS },               \
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },         \
		{ "help", no_argument, NULL, 'h' }

#define CLI_LAYER_HELP                                                         \
	"  --format NAME       skip detection: estargz, stargz, zstd:chunked, "  \
	"rafs, zran\n"                                                         \
	"  --toc-digest D      expected TOC digest (sha256:...); a mismatch "    \
	"is an error\n"                                                        \
	"  --blob-dir DIR      directory holding data blobs named by digest\n" \
	"  --media-type T      layer media type hint\n"                          \
	"  --index IDX         plain gzip layer: use this saved zran index "     \
	"(lazypull\n"                                                          \
	"                      index build) instead of streaming the layer\n"   \
	CLI_PROGRESS_HELP                                                      \
	"  -h, --help          this help\n"

#define CLI_PROGRESS_HELP                                                      \
	"  --progress          a progress line on stderr for long work "       \
	"(indexing\n"                                                          \
	"                      a gzip layer, cat of a big file, check, mount\n" \
	"                      --prefetch-all -f), also when stderr is not "   \
	"a\n"                                                                  \
	"                      terminal (default: only on one, after 0.5 "    \
	"s)\n"                                                                 \
	"  --no-progress       never show it\n"

/* Handles a shared option (CLI_LAYER_LONGOPTS or CLI_REMOTE_LONGOPTS):
 * 1 if it was one, 0 if not, -1 on a bad value (message printed). */
int cli_layer_opt(struct cli_layer_opts *o, int c, char *arg);
/*
 * Opens the layer: a local file, or a registry reference (the layer the
 * options pick, fetched lazily through the blob cache).  Prints a one-line
 * error on failure (returns -errno).
 */
int cli_open(const char *path, struct cli_layer_opts *o,
	     struct engine_layer **ret);
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last cli_error() message, for an answer that must carry it. */
extern char cli_last_error[512];
/* --log-level L: sets the level, or prints what is accepted and fails. */
int cli_log_level(const char *arg);

/*
 * Opens layer i of image r with eo (hints, open_blob, ...).  A plain gzip
 * layer goes through the zran index store, ROOT/indexes/sha256/<hex>.zran
 * (ROOT from o): its index is loaded from there, or built by streaming the
 * layer once (with a progress line) and stored there.  A stored index that
 * does not load (truncated, corrupt) is reported with a warning naming the
 * file, rebuilt and replaced atomically.  eo->format or eo->zran_index (the
 * user's choice) bypass the store.  Safe to call for different layers on
 * several threads.  Prints nothing on failure: err says why.
 */
int cli_remote_open_layer(struct cli_remote *r, size_t i,
			  const struct cli_remote_opts *o,
			  const struct engine_opts *eo,
			  struct engine_layer **ret, struct lp_err *err);
/*
 * Streams src once into a zran index (span bytes between checkpoints, 0 =
 * the default), with a progress line saying what, and writes it to path
 * (temporary name, then rename).  With digest (a registry layer's), the
 * gzip stream must have it: else -EBADMSG and src's cached bytes are
 * dropped.  -EOPNOTSUPP when built without zran.
 */
int cli_zran_build(struct lp_source *src, const char *digest,
		   const char *what, uint32_t span, const char *path,
		   struct lp_err *err);
/* "sha256:0123456789ab…" for progress lines */
void cli_short_digest(const char *digest, char *buf, size_t size);

/* JSON string output (UTF-8 passed through, controls escaped). */
void json_put_str(FILE *f, const char *s, size_t len);

int cmd_inspect(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_probe(int argc, char **argv);

#endif
