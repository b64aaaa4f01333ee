/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static void inspect_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull inspect [OPTIONS] BLOB\n\n"
		   "Shows the layer's format, TOC digest and location, entry "
		   "and chunk counts,\nsizes and prefetch landmarks.\n\n"
		   "  --json              one JSON object\n" CLI_LAYER_HELP CLI_REMOTE_HELP);
}

struct counts {
	uint64_t dirs, regs, symlinks, devices, fifos, other, hardlinks;
	uint64_t file_bytes, max_chunk;
};

static int count_cb(const struct model *m, const char *path, uint32_t ino,
		    bool primary, void *data)
{
	struct counts *c = data;
	uint32_t mode = m->inodes[ino].mode;
	(void)path;

	if (!primary) {
		c->hardlinks++;
		return 0;
	}
	if (S_ISDIR(mode))
		c->dirs++;
	else if (S_ISREG(mode)) {
		c->regs++;
		c->file_bytes += m->inodes[ino].size;
	} else if (S_ISLNK(mode))
		c->symlinks++;
	else if (S_ISCHR(mode) || S_ISBLK(mode))
		c->devices++;
	else if (S_ISFIFO(mode))
		c->fifos++;
	else
		c->other++;
	return 0;
}

static const char *landmark_name(int l)
{
	return l == 1 ? ".prefetch.landmark"
	       : l == 2 ? ".no.prefetch.landmark"
			: "none";
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		CLI_LAYER_LONGOPTS,
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_layer_opts_release) struct cli_layer_opts lo;
	_cleanup_(engine_closep) struct engine_layer *l = NULL;
	struct counts cnt = { 0 };
	const struct format_info *fi;
	const struct model *m;
	bool json = false;
	int c;

	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		int h = cli_layer_opt(&lo, c, optarg);

		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case 'h':
			inspect_usage(stdout);
			return 0;
		default:
			inspect_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		inspect_usage(stderr);
		return EXIT_USAGE;
	}
	if (cli_open(argv[optind], &lo, &l) < 0)
		return 1;
	m = l->model;
	fi = &l->info;
	model_walk(m, count_cb, &cnt);
	for (uint32_t i = 0; i < m->n_chunks; i++)
		if (m->chunks[i].len > cnt.max_chunk)
			cnt.max_chunk = m->chunks[i].len;
	if (json) {
		printf("{\"format\":\"%s\",\"toc_digest\":", fi->format);
		json_put_str(stdout, fi->toc_digest, strlen(fi->toc_digest));
		printf(",\"blob_size\":%llu,\"toc_offset\":%llu,"
		       "\"toc_compressed_size\":%llu,\"toc_size\":%llu,"
		       "\"inodes\":%u,\"entries\":%u,\"dirs\":%llu,"
		       "\"files\":%llu,\"symlinks\":%llu,\"hardlinks\":%llu,"
		       "\"devices\":%llu,\"fifos\":%llu,\"chunks\":%u,"
		       "\"max_chunk\":%llu,\"file_bytes\":%llu,\"blobs\":%u,"
		       "\"landmark\":\"%s\",\"prefetch_bytes\":%llu,"
		       "\"model_bytes\":%llu}\n",
		       (unsigned long long)fi->blob_size,
		       (unsigned long long)fi->toc_offset,
		       (unsigned long long)fi->toc_comp_len,
		       (unsigned long long)fi->toc_len, m->n_inodes - 1,
		       m->n_dirents + 1, (unsigned long long)cnt.dirs,
		       (unsigned long long)cnt.regs,
		       (unsigned long long)cnt.symlinks,
		       (unsigned long long)cnt.hardlinks,
		       (unsigned long long)cnt.devices,
		       (unsigned long long)cnt.fifos, m->n_chunks,
		       (unsigned long long)cnt.max_chunk,
		       (unsigned long long)cnt.file_bytes, m->n_blobs,
		       landmark_name(fi->landmark),
		       (unsigned long long)fi->prefetch_offset,
		       (unsigned long long)model_mem_bytes(m));
		return 0;
	}
	printf("blob:         %s (%llu bytes)\n", argv[optind],
	       (unsigned long long)fi->blob_size);
	printf("format:       %s\n", fi->format);
	if (fi->toc_digest[0])
		printf("toc digest:   %s\n", fi->toc_digest);
	if (fi->toc_comp_len)
		printf("toc:          offset %llu, %llu bytes stored, %llu "
		       "bytes\n",
		       (unsigned long long)fi->toc_offset,
		       (unsigned long long)fi->toc_comp_len,
		       (unsigned long long)fi->toc_len);
	printf("entries:      %u names, %u inodes: %llu dirs, %llu files, "
	       "%llu symlinks,\n              %llu hardlinks, %llu devices, "
	       "%llu fifos\n",
	       m->n_dirents + 1, m->n_inodes - 1, (unsigned long long)cnt.dirs,
	       (unsigned long long)cnt.regs, (unsigned long long)cnt.symlinks,
	       (unsigned long long)cnt.hardlinks,
	       (unsigned long long)cnt.devices, (unsigned long long)cnt.fifos);
	printf("file data:    %llu bytes in %u chunks (largest %llu)\n",
	       (unsigned long long)cnt.file_bytes, m->n_chunks,
	       (unsigned long long)cnt.max_chunk);
	printf("blobs:        %u\n", m->n_blobs);
	for (uint32_t i = 0; i < m->n_blobs && i < 64; i++)
		printf("  [%u] %s\n", i,
		       m->blobs[i].id ? model_str(m, m->blobs[i].id)
				      : "(this file)");
	printf("landmark:     %s", landmark_name(fi->landmark));
	if (fi->landmark == 1)
		printf(" (prefetch bytes [0, %llu))",
		       (unsigned long long)fi->prefetch_offset);
	printf("\nmodel memory: %llu bytes\n",
	       (unsigned long long)model_mem_bytes(m));
	return 0;
}
