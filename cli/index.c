/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"

static void index_usage(FILE *f)
{
	fprintf(f,
		"Usage: lazypull index build [OPTIONS] LAYER.tar.gz -o IDX\n"
		"       lazypull index build [OPTIONS] REF [-o IDX]\n\n"
		"Streams a plain gzip layer once and writes a zran checkpoint "
		"index (plus the\n"
		"tar listing), so later reads with --index IDX inflate only "
		"from the nearest\n"
		"checkpoint.  A layer of image REF in a registry (--layer N if "
		"it has several)\n"
		"is fetched through the blob cache; without -o its index goes "
		"to the index\n"
		"store (ROOT/indexes/sha256/<hex>.zran) that ls, cat and mount "
		"use.\n\n"
		"  -o, --output IDX    where to write the index (written "
		"atomically)\n"
		"  --span KIB          uncompressed bytes between checkpoints "
		"(default 256)\n"
		"  -q, --quiet         no progress and no summary on stderr\n"
		CLI_PROGRESS_HELP
		"  -h, --help          this help\n\n" CLI_REMOTE_HELP);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The store path of a registry layer, with its parent directories. */
static char *store_path(const struct cli_remote_opts *o, const char *digest)
{
	const char *root = cli_remote_root(o);
	const char *colon = strchr(digest, ':');
	const char *hex = colon ? colon + 1 : digest;
	char *p = lp_xmalloc(strlen(root) + strlen(hex) + 32);

	sprintf(p, "%s/indexes", root);
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return p; /* the save reports it */
	strcat(p, "/sha256");
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return p;
	sprintf(p, "%s/indexes/sha256/%s.zran", root, hex);
	return p;
}

int cmd_index(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "span", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_remote_closep) struct cli_remote *rem = NULL;
	size_t pick = 0;
	_cleanup_free_ char *stored = NULL;
	struct cli_remote_opts ro;
	struct lp_source *src = NULL;
	struct lp_err err = { 0 };
	const char *out = NULL, *layer;
	char what[300], sd[96];
	unsigned long span_kib = 0;
	bool quiet = false;
	double start;
	int c, h, r;

	cli_remote_opts_init(&ro);
	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
		h = cli_remote_opt(&ro, c, optarg);
		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 's': {
			char *end;

			span_kib = strtoul(optarg, &end, 10);
			if (*end || span_kib < 64 || span_kib > 65536) {
				cli_error("--span %s: want 64..65536 KiB",
					  optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'q':
			quiet = true;
			break;
		case OPT_PROGRESS:
			cli_progress_mode = CLI_PROGRESS_ON;
			break;
		case OPT_NO_PROGRESS:
			cli_progress_mode = CLI_PROGRESS_OFF;
			break;
		case 'h':
			index_usage(stdout);
			return 0;
		default:
			index_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2 || strcmp(argv[optind], "build")) {
		index_usage(stderr);
		return EXIT_USAGE;
	}
	layer = argv[optind + 1];
	if (quiet && cli_progress_mode == CLI_PROGRESS_AUTO)
		cli_progress_mode = CLI_PROGRESS_OFF;
	start = mono();
	if (cli_is_remote(layer)) {
		size_t i;

		if (cli_remote_open(layer, &ro, &rem) < 0 ||
		    cli_remote_pick(rem, &ro, &i) < 0 ||
		    cli_remote_layer(rem, i, &src) < 0)
			return 1;
		pick = i;
		if (!out) {
			stored = store_path(&ro,
					    rem->manifest->layers[i].digest);
			out = stored;
		}
		cli_short_digest(rem->manifest->layers[i].digest, sd,
				 sizeof(sd));
		snprintf(what, sizeof(what), "indexing layer %s", sd);
	} else {
		if (!out) {
			index_usage(stderr);
			return EXIT_USAGE;
		}
		if (lp_source_open_file(layer, &src, &err) < 0) {
			cli_error("%s", err.msg);
			return 1;
		}
		snprintf(what, sizeof(what), "indexing %s", layer);
	}
	r = cli_zran_build(src, rem ? rem->manifest->layers[pick].digest : NULL,
			   what, (uint32_t)(span_kib * 1024), out, &err);
	lp_source_free(src);
	if (r < 0) {
		cli_error("%s: %s", layer, err.msg);
		return 1;
	}
	if (!quiet)
		fprintf(stderr, "indexed %s in %.1f s -> %s\n", layer,
			mono() - start, out);
	return 0;
}
