/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static void cat_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull cat [OPTIONS] BLOB|REF PATH\n\n"
		   "Writes the file PATH of the layer to stdout, decoding and "
		   "verifying only\nthe chunks it needs.  No byte is written "
		   "before its chunk verified.\n\n"
		   "  -v, --verbose       report chunks and compressed bytes "
		   "read on stderr\n" CLI_LAYER_HELP CLI_REMOTE_HELP);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The size of the blobs l's chunks came from (a RAFS bootstrap's data
 * blobs, not the bootstrap), else of the layer. */
static uint64_t blobs_size(const struct engine_layer *l)
{
	uint64_t n = 0;

	for (uint32_t i = 0; l->blob_src && i < l->model->n_blobs; i++) {
		bool seen = false;

		if (!l->blob_src[i])
			continue;
		for (uint32_t k = 0; k < i && !seen; k++)
			seen = l->blob_src[k] == l->blob_src[i];
		if (!seen)
			n += l->blob_src[i]->size;
	}
	return n ? n : l->src->size;
}

int cmd_cat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "verbose", no_argument, NULL, 'v' },
		CLI_LAYER_LONGOPTS,
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_layer_opts_release) struct cli_layer_opts lo;
	_cleanup_(engine_closep) struct engine_layer *l = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	const struct model_inode *in;
	_cleanup_(cli_progress_endp) struct cli_progress *meter = NULL;
	bool verbose = false;
	uint64_t off = 0;
	uint32_t ino;
	int c;

	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		int h = cli_layer_opt(&lo, c, optarg);

		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case 'v':
			verbose = true;
			lo.ro.verbose = true;
			break;
		case 'h':
			cat_usage(stdout);
			return 0;
		default:
			cat_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		cat_usage(stderr);
		return EXIT_USAGE;
	}
	if (cli_open(argv[optind], &lo, &l) < 0)
		return 1;
	ino = model_lookup_path(l->model, argv[optind + 1]);
	in = model_inode(l->model, ino);
	if (!in) {
		cli_error("%s: %s: no such file in the layer", argv[optind],
			  argv[optind + 1]);
		return 1;
	}
	if (!S_ISREG(in->mode)) {
		cli_error("%s: %s: not a regular file (%s)", argv[optind],
			  argv[optind + 1],
			  S_ISDIR(in->mode) ? "a directory"
			  : S_ISLNK(in->mode) ? "a symlink"
					      : "a special file");
		return 1;
	}
	/* the file may go to this very terminal: no meter across it */
	if (cli_progress_mode == CLI_PROGRESS_ON || !isatty(STDOUT_FILENO)) {
		char what[300];

		snprintf(what, sizeof(what), "reading %s", argv[optind + 1]);
		meter = cli_progress_begin(what, in->size);
	}
	buf = lp_xmalloc(1u << 20);
	while (off < in->size) {
		struct lp_err err = { 0 };
		int64_t n = engine_read(l, ino, buf, 1u << 20, off, &err);

		if (n <= 0) {
			cli_error("%s: %s: %s", argv[optind],
				  argv[optind + 1],
				  n < 0 ? err.msg : "short read");
			return 1;
		}
		if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
			cli_error("writing stdout: %s", strerror(errno));
			return 1;
		}
		off += (uint64_t)n;
		cli_progress_update(meter, off, 0);
	}
	cli_progress_end(TAKE_PTR(meter));
	if (verbose) {
		uint64_t chunks = l->chunks_decoded, bytes = l->stored_bytes_read;
		uint64_t blob = blobs_size(l);

		for (uint32_t i = 0; i < l->n_sub; i++) {
			chunks += l->sub[i]->chunks_decoded;
			bytes += l->sub[i]->stored_bytes_read;
			blob += blobs_size(l->sub[i]);
		}
		fprintf(stderr,
			"lazypull: %s: %llu bytes from %llu chunks, %llu "
			"compressed bytes read of %llu in the blob\n",
			argv[optind + 1], (unsigned long long)in->size,
			(unsigned long long)chunks, (unsigned long long)bytes,
			(unsigned long long)blob);
	}
	return 0;
}
