/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TOC parse time and model bytes per inode for a large eStargz TOC.
 *
 * Generates a TOC shaped like a real layer (directories of ~30 entries:
 * files with digests, some chunked, symlinks, hardlinks), then times, in
 * the same run, the baseline (jansson parsing the JSON and freeing it) and
 * the full load (parse + model build).  Prints the ratio and the model's
 * bytes per inode.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "formats/estargz/estargz.h"
#include "fs/model.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct buf {
	char *s;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if ((size_t)n < b->cap - b->len)
			break;
		b->cap = b->cap * 2 + (size_t)n + 1;
		b->s = lp_xrealloc(b->s, b->cap);
	}
	b->len += (size_t)n;
}

static const char dig[] =
	"sha256:0000000000000000000000000000000000000000000000000000000000000000";

static void make_toc(struct buf *b, unsigned n, uint64_t *ret_data_end)
{
	uint64_t off = 512;
	unsigned made = 0, dir = 0;

	put(b, "{\n\t\"version\": 1,\n\t\"entries\": [\n");
	while (made < n) {
		put(b, "\t\t{\"name\": \"usr/lib/pkg%05u/\", \"type\": \"dir\", "
		       "\"mode\": 493, \"modtime\": \"2024-01-02T03:04:05Z\"},\n",
		    dir);
		made++;
		for (unsigned i = 0; i < 30 && made < n; i++, made++) {
			if (i % 10 == 9) {
				put(b, "\t\t{\"name\": \"usr/lib/pkg%05u/"
				       "link%u\", \"type\": \"symlink\", "
				       "\"linkName\": \"file%u.py\"},\n",
				    dir, i, i - 1);
				continue;
			}
			if (i % 10 == 8) {
				put(b, "\t\t{\"name\": \"usr/lib/pkg%05u/"
				       "hard%u\", \"type\": \"hardlink\", "
				       "\"linkName\": \"usr/lib/pkg%05u/"
				       "file%u.py\"},\n",
				    dir, i, dir, i - 1);
				continue;
			}
			uint64_t size = 1000 + (i * 7919u + dir * 104729u) %
						       20000;
			put(b, "\t\t{\"name\": \"usr/lib/pkg%05u/file%u.py\", "
			       "\"type\": \"reg\", \"size\": %llu, "
			       "\"modtime\": \"2024-01-02T03:04:05Z\", "
			       "\"mode\": 420, \"uid\": 0, \"gid\": 0, "
			       "\"offset\": %llu, \"digest\": \"%s\", "
			       "\"chunkDigest\": \"%s\"},\n",
			    dir, i, (unsigned long long)size,
			    (unsigned long long)off, dig, dig);
			off += size / 3 + 100;
		}
		dir++;
	}
	b->len -= 2; /* drop the last ",\n" */
	put(b, "\n\t]\n}\n");
	*ret_data_end = off;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	struct buf b = { 0 };
	struct estargz_footer f = { 0 };
	double best_base = 1e9, best_full = 1e9;
	uint64_t mem = 0, arena = 0;
	uint32_t inodes = 0, dirents = 0, chunks = 0;

	b.cap = 1 << 20;
	b.s = lp_xmalloc(b.cap);
	make_toc(&b, n, &f.data_end);
	f.kind = ESTARGZ_KIND_ESTARGZ;
	f.blob_size = f.data_end + 51;

	for (int r = 0; r < rounds; r++) {
		json_error_t jerr;
		double t0 = now();
		json_t *j = json_loadb(b.s, b.len, 0, &jerr);

		if (!j) {
			fprintf(stderr, "baseline parse: %s\n", jerr.text);
			return 1;
		}
		json_decref(j);
		double t1 = now();

		struct model_builder *mb = model_builder_new(0);
		struct model *m = NULL;
		struct lp_err err = { 0 };

		model_builder_add_blob(mb, "sha256:layer", NULL, f.blob_size,
				       NULL, &err);
		if (estargz_parse_toc(b.s, b.len, &f, mb, NULL, &err) < 0 ||
		    model_builder_finish(TAKE_PTR(mb), &m, &err) < 0) {
			fprintf(stderr, "parse: %s\n", err.msg);
			model_builder_free(mb);
			return 1;
		}
		double t2 = now();

		if (t1 - t0 < best_base)
			best_base = t1 - t0;
		if (t2 - t1 < best_full)
			best_full = t2 - t1;
		mem = model_mem_bytes(m);
		arena = m->arena_len;
		inodes = m->n_inodes - 1;
		dirents = m->n_dirents;
		chunks = m->n_chunks;
		model_free(m);
	}
	printf("bench-toc: %u TOC entries, %.1f MB of JSON, best of %d\n", n,
	       (double)b.len / 1e6, rounds);
	printf("  baseline  jansson parse+free      %8.1f ms\n",
	       best_base * 1e3);
	printf("  lazypull  TOC -> model             %8.1f ms  (%.2fx "
	       "baseline; target: well under 1 s)\n",
	       best_full * 1e3, best_full / best_base);
	uint64_t tree = (uint64_t)inodes * sizeof(struct model_inode) +
			(uint64_t)dirents * sizeof(struct model_dirent);
	printf("  model     %u inodes, %u names, %u chunks: %llu bytes in "
	       "all\n", inodes, dirents, chunks, (unsigned long long)mem);
	printf("            tree (inodes+dirents) %.1f bytes/inode + names "
	       "(target <= 100)\n", (double)tree / inodes);
	printf("            with chunk records     %.1f bytes/inode + names "
	       "(%zu bytes/chunk)\n", (double)(mem - arena) / inodes,
	       sizeof(struct model_chunk));
	printf("            names arena            %.1f bytes/inode\n",
	       (double)arena / inodes);
	free(b.s);
	return 0;
}
