/* SPDX-License-Identifier: Apache-2.0 */
#ifndef LP_CLI_H
#define LP_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "cli/fetch.h"
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
};

#define CLI_LAYER_LONGOPTS                                                     \
	{ "format", required_argument, NULL, OPT_FORMAT },                     \
		{ "blob-dir", required_argument, NULL, OPT_BLOB_DIR },         \
		{ "toc-digest", required_argument, NULL, OPT_TOC_DIGEST },     \
		{ "media-type", required_argument, NULL, OPT_MEDIA_TYPE },     \
		{ "index", required_argument, NULL, OPT_INDEX },               \
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
	"  -h, --help          this help\n"

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

/* JSON string output (UTF-8 passed through, controls escaped). */
void json_put_str(FILE *f, const char *s, size_t len);

int cmd_inspect(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);

#endif
