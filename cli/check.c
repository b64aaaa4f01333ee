/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static void check_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull check [OPTIONS] BLOB\n\n"
		   "Decodes and verifies every chunk against its digest, and "
		   "the TOC against\n--toc-digest when given.  Exit 0 only if "
		   "everything holds; each failure is\nreported with its file "
		   "and chunk.\n\n"
		   "  -q, --quiet         only the exit status and failures "
		   "(no progress)\n"
		   CLI_LAYER_HELP CLI_REMOTE_HELP);
}

struct check_state {
	struct engine_layer *l;
	struct cli_progress *meter;
	uint64_t bytes, done; /* of the file chunks, uncompressed */
	uint64_t chunks, bad, files;
	uint8_t *buf;
	size_t buf_len;
};

static int sum_cb(const struct model *m, const char *path, uint32_t ino,
		  bool primary, void *data)
{
	struct check_state *s = data;
	const struct model_inode *in = &m->inodes[ino];
	(void)path;

	if (primary && S_ISREG(in->mode))
		for (uint32_t i = in->first; i < in->first + in->count; i++)
			s->bytes += m->chunks[i].len;
	return 0;
}

static int check_cb(const struct model *m, const char *path, uint32_t ino,
		    bool primary, void *data)
{
	struct check_state *s = data;
	const struct model_inode *in = &m->inodes[ino];

	if (!primary || !S_ISREG(in->mode))
		return 0;
	s->files++;
	for (uint32_t i = in->first; i < in->first + in->count; i++) {
		const struct model_chunk *c = &m->chunks[i];
		struct lp_err err = { 0 };

		if (c->len > ENGINE_MAX_CHUNK) {
			s->bad++;
			cli_error("%s: %s: chunk %u (file offset %llu): %llu "
				  "bytes is over the %llu-byte chunk limit",
				  s->l->src->name, path, i - in->first,
				  (unsigned long long)c->file_off,
				  (unsigned long long)c->len,
				  (unsigned long long)ENGINE_MAX_CHUNK);
			continue;
		}
		if (c->len > s->buf_len) {
			free(s->buf);
			s->buf_len = (size_t)c->len;
			s->buf = lp_xmalloc(s->buf_len);
		}
		s->chunks++;
		if (engine_read_chunk(s->l, i, s->buf, &err) < 0) {
			s->bad++;
			cli_error("%s: %s: chunk %u (file offset %llu, %llu "
				  "bytes): %s",
				  s->l->src->name, path, i - in->first,
				  (unsigned long long)c->file_off,
				  (unsigned long long)c->len, err.msg);
		}
		s->done += c->len;
		cli_progress_update(s->meter, s->done, 0);
	}
	return 0;
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		CLI_LAYER_LONGOPTS,
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_layer_opts_release) struct cli_layer_opts lo;
	_cleanup_(engine_closep) struct engine_layer *l = NULL;
	struct check_state s = { 0 };
	bool quiet = false;
	int c;

	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		int h = cli_layer_opt(&lo, c, optarg);

		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			check_usage(stdout);
			return 0;
		default:
			check_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		check_usage(stderr);
		return EXIT_USAGE;
	}
	if (quiet && cli_progress_mode == CLI_PROGRESS_AUTO)
		cli_progress_mode = CLI_PROGRESS_OFF;
	/* a TOC digest mismatch fails the open itself */
	if (cli_open(argv[optind], &lo, &l) < 0)
		return 1;
	s.l = l;
	model_walk(l->model, sum_cb, &s);
	if (s.bytes) {
		char what[300];

		snprintf(what, sizeof(what), "checking %s", argv[optind]);
		s.meter = cli_progress_begin(what, s.bytes);
	}
	model_walk(l->model, check_cb, &s);
	cli_progress_end(s.meter);
	free(s.buf);
	if (!quiet)
		printf("%s: %s, toc %s%s: %llu files, %llu chunks, %llu bad\n",
		       argv[optind], l->info.format,
		       l->info.toc_digest[0] ? l->info.toc_digest : "(none)",
		       lo.toc_digest ? " (verified)" : "",
		       (unsigned long long)s.files,
		       (unsigned long long)s.chunks,
		       (unsigned long long)s.bad);
	return s.bad ? 1 : 0;
}
