/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#ifdef LP_HAVE_ZRAN
#include "formats/zran/zran.h"
#endif

static void index_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull index build [OPTIONS] LAYER.tar.gz -o IDX\n\n"
		   "Streams a plain gzip layer once and writes a zran checkpoint "
		   "index (plus the\ntar listing), so later reads with --index "
		   "IDX inflate only from the nearest\ncheckpoint.\n\n"
		   "  -o, --output IDX    where to write the index (written "
		   "atomically)\n"
		   "  --span KIB          uncompressed bytes between "
		   "checkpoints (default 1024)\n"
		   "  -q, --quiet         no progress on stderr\n"
		   "  -h, --help          this help\n");
}

#ifdef LP_HAVE_ZRAN
struct progress {
	double start, last;
	bool on;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_cb(uint64_t done, uint64_t total, void *data)
{
	struct progress *p = data;
	double t = mono();

	if (!p->on || t - p->last < 0.5)
		return;
	p->last = t;
	fprintf(stderr, "\rindexing: %llu / %llu MB (%.0f%%) %.1f s",
		(unsigned long long)(done >> 20),
		(unsigned long long)(total >> 20),
		total ? 100.0 * (double)done / (double)total : 0.0,
		t - p->start);
}
#endif

int cmd_index(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "span", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL;
	unsigned long span_kib = 0;
	bool quiet = false;
	int c;

	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
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
		case 'h':
			index_usage(stdout);
			return 0;
		default:
			index_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2 || strcmp(argv[optind], "build") || !out) {
		index_usage(stderr);
		return EXIT_USAGE;
	}
#ifdef LP_HAVE_ZRAN
	{
		const char *layer = argv[optind + 1];
		struct lp_source *src = NULL;
		struct zran_index *idx = NULL;
		struct zran_build_opts bo = { 0 };
		struct progress p = { 0 };
		struct lp_err err = { 0 };
		int r;

		if (lp_source_open_file(layer, &src, &err) < 0) {
			cli_error("%s", err.msg);
			return 1;
		}
		p.start = p.last = mono();
		p.on = !quiet && isatty(STDERR_FILENO);
		bo.span = (uint32_t)(span_kib * 1024);
		bo.progress = progress_cb;
		bo.progress_data = &p;
		r = zran_index_build(src, &bo, &idx, &err);
		if (p.on)
			fputc('\n', stderr);
		if (r == 0)
			r = zran_index_save(idx, out, &err);
		if (r < 0)
			cli_error("%s: %s", layer, err.msg);
		else if (!quiet)
			fprintf(stderr, "indexed %s in %.1f s -> %s\n", layer,
				mono() - p.start, out);
		zran_index_free(idx);
		lp_source_free(src);
		return r < 0 ? 1 : 0;
	}
#else
	cli_error("built without zran support");
	return 1;
#endif
}
