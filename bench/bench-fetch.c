/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-fetch: ranged-read throughput of a registry blob through the
 * fetcher against the curl command line tool fetching the same ranges
 * from the same registry, in one run.
 *
 *   bench-fetch [--ranges N] [--range-len BYTES] [--rounds R]
 *               [--concurrency C] REGISTRY REPO DIGEST
 *
 * REGISTRY is host:port of a plain-http registry on loopback (see
 * bench/fetch-bench.py, which starts one and pushes a blob).  N ranges of
 * BYTES each are spread evenly over the blob.  Each way of fetching them
 * runs R times (the best round counts; every fetcher round makes a new
 * client, like every curl round starts a new process):
 *
 *   fetcher seq     fetch_blob_read per range, one after the other
 *   curl seq        one curl process, the ranges as URLs joined by --next
 *   fetcher multi   fetch_blob_read_many: C transfers at once
 *   curl parallel   the same curl command with --parallel-max C
 *   fetcher stream  fetch_blob_stream of the whole blob (digest checked)
 *   curl stream     curl -o /dev/null of the whole blob
 *
 * and the ratio of each fetcher line to its curl line (> 1: faster).
 */
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "fetcher/fetcher.h"

extern char **environ;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct bench {
	const char *registry, *repo, *digest;
	struct fetch_ref ref;
	uint64_t size;
	struct fetch_read *r;
	size_t n;
	unsigned conc;
};

static struct fetch_client *client(const struct bench *b)
{
	struct fetch_opts o;
	struct fetch_client *c = NULL;
	struct lp_err err = { 0 };

	fetch_opts_init(&o);
	o.plain_http = true;
	o.max_concurrent = b->conc;
	o.docker_config = "";
	o.no_env_auth = true;
	if (fetch_client_new(&o, &c, &err) < 0) {
		fprintf(stderr, "client: %s\n", err.msg);
		exit(1);
	}
	return c;
}

static int fetcher_seq(struct bench *b)
{
	struct fetch_client *c = client(b);
	struct lp_err err = { 0 };
	int r = 0;

	for (size_t i = 0; r == 0 && i < b->n; i++)
		r = fetch_blob_read(c, &b->ref, b->digest, b->size, b->r[i].buf,
				    b->r[i].len, b->r[i].off, &err);
	if (r < 0)
		fprintf(stderr, "fetcher: %s\n", err.msg);
	fetch_client_unref(c);
	return r;
}

static int fetcher_multi(struct bench *b)
{
	struct fetch_client *c = client(b);
	struct lp_err err = { 0 };
	int r = fetch_blob_read_many(c, &b->ref, b->digest, b->size, b->r, b->n,
				     &err);

	if (r < 0)
		fprintf(stderr, "fetcher: %s\n", err.msg);
	fetch_client_unref(c);
	return r;
}

static int discard(const void *data, size_t len, void *arg)
{
	(void)data;
	*(uint64_t *)arg += len;
	return 0;
}

static int fetcher_stream(struct bench *b)
{
	struct fetch_client *c = client(b);
	struct lp_err err = { 0 };
	uint64_t got = 0;
	int r = fetch_blob_stream(c, &b->ref, b->digest, discard, &got, &err);

	if (r == 0 && got != b->size)
		r = lp_err_set(&err, EIO, "streamed %llu of %llu bytes",
			       (unsigned long long)got,
			       (unsigned long long)b->size);
	if (r < 0)
		fprintf(stderr, "fetcher: %s\n", err.msg);
	fetch_client_unref(c);
	return r;
}

/* Runs curl with the ranges (n 0 = the whole blob); 0 or -1. */
static int run_curl(struct bench *b, size_t n, unsigned parallel)
{
	char url[1024], conc[16];
	char **argv = calloc(n * 12 + 20, sizeof(*argv));
	char **ranges = calloc(n + 1, sizeof(*ranges));
	size_t k = 0;
	pid_t pid;
	int st, r = -1;

	snprintf(url, sizeof(url), "http://%s/v2/%s/blobs/%s", b->registry,
		 b->repo, b->digest);
	snprintf(conc, sizeof(conc), "%u", parallel);
	argv[k++] = "curl";
	argv[k++] = "--no-progress-meter";
	if (parallel) {
		argv[k++] = "--parallel";
		argv[k++] = "--parallel-max";
		argv[k++] = conc;
	}
	for (size_t i = 0; i < (n ? n : 1); i++) {
		if (i)
			argv[k++] = "--next";
		argv[k++] = "-sS";
		argv[k++] = "--fail";
		argv[k++] = "--noproxy";
		argv[k++] = "*";
		argv[k++] = "-o";
		argv[k++] = "/dev/null";
		if (n) {
			ranges[i] = malloc(48);
			snprintf(ranges[i], 48, "%llu-%llu",
				 (unsigned long long)b->r[i].off,
				 (unsigned long long)(b->r[i].off +
						      b->r[i].len - 1));
			argv[k++] = "-r";
			argv[k++] = ranges[i];
		}
		argv[k++] = url;
	}
	argv[k] = NULL;
	if (posix_spawnp(&pid, "curl", NULL, NULL, argv, environ) == 0 &&
	    waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0)
		r = 0;
	else
		fprintf(stderr, "curl failed\n");
	for (size_t i = 0; i < n; i++)
		free(ranges[i]);
	free(ranges);
	free(argv);
	return r;
}

static int curl_seq(struct bench *b)
{
	return run_curl(b, b->n, 0);
}

static int curl_parallel(struct bench *b)
{
	return run_curl(b, b->n, b->conc);
}

static int curl_stream(struct bench *b)
{
	return run_curl(b, 0, 0);
}

/* The best of rounds runs, in seconds (< 0 on failure). */
static double best(struct bench *b, int (*fn)(struct bench *),
		   unsigned rounds)
{
	double t = 1e9;

	for (unsigned i = 0; i < rounds; i++) {
		double t0 = now();

		if (fn(b) < 0)
			return -1;
		if (now() - t0 < t)
			t = now() - t0;
	}
	return t;
}

static void line(const char *what, uint64_t bytes, double t)
{
	printf("  %-16s %8.1f MB in %7.2f ms  %8.1f MB/s\n", what,
	       (double)bytes / 1e6, t * 1e3, (double)bytes / 1e6 / t);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ranges", required_argument, NULL, 'n' },
		{ "range-len", required_argument, NULL, 'l' },
		{ "rounds", required_argument, NULL, 'R' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ 0 },
	};
	struct bench b = { .n = 32, .conc = 8 };
	uint64_t range_len = 1u << 20, bytes = 0;
	unsigned rounds = 5;
	struct lp_err err = { 0 };
	struct fetch_client *c;
	char refs[1024];
	double ts, tcs, tm, tcp, tst, tcst;
	uint8_t *check;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			b.n = strtoul(optarg, NULL, 10);
			break;
		case 'l':
			range_len = strtoull(optarg, NULL, 10);
			break;
		case 'R':
			rounds = (unsigned)atoi(optarg);
			break;
		case 'c':
			b.conc = (unsigned)atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (optind + 3 != argc || !b.n || !range_len || !rounds || !b.conc) {
		fprintf(stderr, "usage: bench-fetch [--ranges N] [--range-len "
				"B] [--rounds R] [--concurrency C] REGISTRY "
				"REPO DIGEST\n");
		return 2;
	}
	b.registry = argv[optind];
	b.repo = argv[optind + 1];
	b.digest = argv[optind + 2];
	snprintf(refs, sizeof(refs), "%s/%s:bench", b.registry, b.repo);
	if (fetch_ref_parse(refs, strlen(refs), &b.ref, &err) < 0) {
		fprintf(stderr, "%s: %s\n", refs, err.msg);
		return 2;
	}
	c = client(&b);
	if (fetch_blob_head(c, &b.ref, b.digest, &b.size, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	fetch_client_unref(c);
	if (range_len * b.n > b.size) {
		fprintf(stderr, "%zu ranges of %llu bytes do not fit in %llu\n",
			b.n, (unsigned long long)range_len,
			(unsigned long long)b.size);
		return 2;
	}
	/* evenly spread, gaps between them, so nothing merges */
	b.r = calloc(b.n, sizeof(*b.r));
	for (size_t i = 0; i < b.n; i++) {
		b.r[i].off = b.size / b.n * i;
		b.r[i].len = (size_t)range_len;
		b.r[i].buf = malloc(range_len);
		bytes += range_len;
	}

	/* warm the registry's page cache, and check the two ways agree */
	if (fetcher_multi(&b) < 0 || curl_seq(&b) < 0)
		return 1;
	check = malloc((size_t)bytes);
	for (size_t i = 0; i < b.n; i++)
		memcpy(check + i * range_len, b.r[i].buf, range_len);
	if (fetcher_seq(&b) < 0)
		return 1;
	for (size_t i = 0; i < b.n; i++)
		if (memcmp(check + i * range_len, b.r[i].buf, range_len)) {
			fprintf(stderr, "range %zu differs\n", i);
			return 1;
		}
	free(check);

	ts = best(&b, fetcher_seq, rounds);
	tcs = best(&b, curl_seq, rounds);
	tm = best(&b, fetcher_multi, rounds);
	tcp = best(&b, curl_parallel, rounds);
	tst = best(&b, fetcher_stream, rounds);
	tcst = best(&b, curl_stream, rounds);
	if (ts < 0 || tcs < 0 || tm < 0 || tcp < 0 || tst < 0 || tcst < 0)
		return 1;

	printf("blob %s, %.1f MB; %zu ranges of %llu KiB; best of %u\n",
	       b.digest, (double)b.size / 1e6, b.n,
	       (unsigned long long)(range_len >> 10), rounds);
	line("fetcher seq", bytes, ts);
	line("curl seq", bytes, tcs);
	line("fetcher multi", bytes, tm);
	line("curl parallel", bytes, tcp);
	line("fetcher stream", b.size, tst);
	line("curl stream", b.size, tcst);
	printf("ratio fetcher/curl (throughput, > 1 is faster):\n"
	       "  ranges, one at a time:   %.2fx\n"
	       "  ranges, %u at once:       %.2fx\n"
	       "  whole blob:              %.2fx\n"
	       "  multi vs seq (fetcher):  %.2fx\n",
	       tcs / ts, b.conc, tcp / tm, tcst / tst, ts / tm);
	for (size_t i = 0; i < b.n; i++)
		free(b.r[i].buf);
	free(b.r);
	fetch_ref_release(&b.ref);
	return 0;
}
