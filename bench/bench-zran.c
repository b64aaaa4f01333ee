// SPDX-License-Identifier: Apache-2.0
/*
 * bench-zran LAYER.tar.gz [SPAN_KIB...]
 *
 * Prints, for one plain gzip layer: the time of `gzip -dc` and of a plain
 * in-process zlib inflate, then for each span (default 256 KiB) the index
 * build time (and its ratio to both), the index size, and the latency of
 * random 4 KiB reads deep inside the layer through the index (the whole
 * chunk is inflated from its checkpoint and verified, as the FUSE read
 * path does).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "formats/zran/zran.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double plain_inflate(const uint8_t *gz, size_t n)
{
	z_stream zs = { 0 };
	static uint8_t out[1 << 20];
	double t = now();

	inflateInit2(&zs, 31);
	zs.next_in = (Bytef *)gz;
	zs.avail_in = (uInt)n;
	while (zs.avail_in) {
		zs.next_out = out;
		zs.avail_out = sizeof(out);
		int r = inflate(&zs, Z_NO_FLUSH);

		if (r == Z_STREAM_END)
			inflateReset(&zs);
		else if (r != Z_OK)
			break;
	}
	inflateEnd(&zs);
	return now() - t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static const struct model *sort_m;

static int cmp_chunk(const void *a, const void *b)
{
	const struct model_chunk *x = &sort_m->chunks[*(const uint32_t *)a];
	const struct model_chunk *y = &sort_m->chunks[*(const uint32_t *)b];

	if (x->aux != y->aux)
		return x->aux < y->aux ? -1 : 1;
	return x->aux_off < y->aux_off ? -1 : x->aux_off > y->aux_off;
}

/* Every chunk in layer order, as a whole-layer prefetch would read them. */
static double read_all(const struct zran_index *idx, const struct model *m,
		       const uint8_t *gz, size_t n)
{
	uint32_t *order = malloc(m->n_chunks * sizeof(*order) + 1);
	struct lp_err err = { 0 };
	double t;

	for (uint32_t i = 0; i < m->n_chunks; i++)
		order[i] = i;
	sort_m = m;
	qsort(order, m->n_chunks, sizeof(*order), cmp_chunk);
	t = now();
	for (uint32_t i = 0; i < m->n_chunks; i++) {
		const struct model_chunk *c = &m->chunks[order[i]];
		uint8_t *out = malloc(c->len);
		uint64_t avail = c->comp_off + c->comp_len <= n
					 ? c->comp_len
					 : n - c->comp_off;

		if (zran_index_decode(idx, c, gz + c->comp_off, avail, out,
				      &err) < 0 ||
		    model_chunk_verify(c, out, &err) < 0) {
			fprintf(stderr, "read: %s\n", err.msg);
			exit(1);
		}
		free(out);
	}
	free(order);
	return now() - t;
}

static void bench_span(const char *path, const uint8_t *gz, size_t n,
		       uint32_t span, double t_gzip, double t_zlib)
{
	struct lp_source *src = lp_source_new_mem(gz, n, path);
	struct zran_build_opts o = { .span = span };
	struct zran_index *idx = NULL;
	struct zran_index_stats st;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	uint8_t *ser = NULL;
	size_t ser_len = 0;
	double t, lat[400];
	int nlat = 0;
	uint32_t x = 12345;

	t = now();
	if (zran_index_build(src, &o, &idx, &err) < 0 ||
	    zran_index_model(idx, &m, &err) < 0) {
		fprintf(stderr, "%s: %s\n", path, err.msg);
		exit(1);
	}
	t = now() - t;
	zran_index_stats(idx, &st);
	zran_index_serialize(idx, &ser, &ser_len, &err);
	uint64_t fetch = 0;

	for (uint32_t i = 0; i < m->n_chunks; i++)
		fetch += m->chunks[i].comp_len;
	printf("span %5u KiB: build %.2f s (%.0f MB/s of tar, %.2fx gzip -dc, "
	       "%.2fx zlib), %u checkpoints, %u chunks, index %.2f MB "
	       "(%.1f%% of the layer)\n",
	       span >> 10, t, (double)st.tar_size / t / 1e6, t / t_gzip,
	       t / t_zlib, st.n_checkpoints, st.n_chunks,
	       (double)ser_len / 1e6, 100.0 * (double)ser_len / (double)n);

	/* random 4 KiB reads in files of the second half of the layer */
	while (nlat < 400) {
		x = x * 1664525u + 1013904223u;
		uint32_t ino = 1 + x % (m->n_inodes - 1);
		const struct model_inode *in = model_inode(m, ino);

		if (!in || (in->mode & 0170000) != 0100000 || in->size < 8192)
			continue;
		x = x * 1664525u + 1013904223u;
		uint64_t off = (uint64_t)x % (in->size - 4096);
		int64_t ci = model_chunk_at(m, ino, off);
		const struct model_chunk *c = &m->chunks[ci];

		if (c->comp_off < n / 2)
			continue;
		uint8_t *out = malloc(c->len);
		uint64_t avail = c->comp_off + c->comp_len <= n
					 ? c->comp_len
					 : n - c->comp_off;

		t = now();
		if (zran_index_decode(idx, c, gz + c->comp_off, avail, out,
				      &err) < 0 ||
		    model_chunk_verify(c, out, &err) < 0) {
			fprintf(stderr, "read: %s\n", err.msg);
			exit(1);
		}
		lat[nlat++] = now() - t;
		free(out);
	}
	qsort(lat, (size_t)nlat, sizeof(lat[0]), cmp_double);
	printf("               4 KiB random read (decode + verify one chunk): "
	       "median %.2f ms, p90 %.2f ms, max %.2f ms; mean fetch per "
	       "chunk %.0f KiB\n",
	       lat[nlat / 2] * 1e3, lat[nlat * 9 / 10] * 1e3,
	       lat[nlat - 1] * 1e3,
	       (double)fetch / (m->n_chunks ? m->n_chunks : 1) / 1024);
	printf("               every chunk in layer order: %.2f s\n",
	       read_all(idx, m, gz, n));
	free(ser);
	model_free(m);
	zran_index_free(idx);
	lp_source_free(src);
}

int main(int argc, char **argv)
{
	struct stat st;
	uint8_t *gz;
	size_t got = 0;
	char cmd[4200];
	double t_gzip, t_zlib;
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-zran LAYER.tar.gz [SPAN_KIB...]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	gz = malloc((size_t)st.st_size);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, gz + got, (size_t)st.st_size - got);

		if (r <= 0)
			return 1;
		got += (size_t)r;
	}
	close(fd);

	snprintf(cmd, sizeof(cmd), "gzip -dc '%s' > /dev/null", argv[1]);
	t_gzip = now();
	if (system(cmd) != 0)
		return 1;
	t_gzip = now() - t_gzip;
	t_zlib = plain_inflate(gz, got);
	printf("%s: %zu bytes; gzip -dc %.2f s, zlib inflate %.2f s\n", argv[1],
	       got, t_gzip, t_zlib);
	if (argc == 2)
		bench_span(argv[1], gz, got, ZRAN_DEFAULT_SPAN, t_gzip, t_zlib);
	for (int i = 2; i < argc; i++)
		bench_span(argv[1], gz, got, (uint32_t)atoi(argv[i]) << 10,
			   t_gzip, t_zlib);
	free(gz);
	return 0;
}
