/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the blob cache and the blob source (no network): a fake
 * backend serves a random blob and counts requests.  Covers cache hits,
 * persistence across reopen, single flight under concurrent readers,
 * failed fetches, invalidation, torn map records, request merging,
 * concurrent batches, LRU eviction, whole-blob fill and the warm mark
 * (an OFD lock another process sees).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fetcher/fetcher-int.h"

#include "check.h"

#define G 4096u

struct fake {
	const uint8_t *data;
	uint64_t size;
	pthread_mutex_t lock;
	unsigned requests;  /* protected by lock */
	uint64_t bytes;	    /* protected by lock */
	unsigned fail_next; /* protected by lock */
	unsigned delay_ms;
	bool corrupt; /* flip a byte of every answer */
};

static int fake_read(void *arg, void *buf, size_t len, uint64_t off,
		     struct lp_err *err)
{
	struct fake *f = arg;
	bool fail;

	if (off > f->size || len > f->size - off)
		return lp_err_set(err, EINVAL, "fake: out of range");
	pthread_mutex_lock(&f->lock);
	f->requests++;
	f->bytes += len;
	fail = f->fail_next > 0;
	if (fail)
		f->fail_next--;
	pthread_mutex_unlock(&f->lock);
	if (f->delay_ms) {
		struct timespec ts = { 0, (long)f->delay_ms * 1000000L };

		nanosleep(&ts, NULL);
	}
	if (fail)
		return lp_err_set(err, EIO, "fake: injected failure");
	memcpy(buf, f->data + off, len);
	if (f->corrupt && len)
		((uint8_t *)buf)[len / 2] ^= 0x55;
	return 0;
}

static int fake_stream(void *arg, int (*cb)(const void *, size_t, void *),
		       void *cbarg, struct lp_err *err)
{
	struct fake *f = arg;

	(void)err;
	pthread_mutex_lock(&f->lock);
	f->requests++;
	f->bytes += f->size;
	pthread_mutex_unlock(&f->lock);
	for (uint64_t off = 0; off < f->size; off += 7000) {
		size_t n =
			f->size - off < 7000 ? (size_t)(f->size - off) : 7000;
		int r = cb(f->data + off, n, cbarg);

		if (r < 0)
			return r;
	}
	return 0;
}

static const struct fetch_backend fake_be = {
	.read = fake_read,
	.stream = fake_stream,
};

/* a backend that takes several ranges at once; records the batches */
static unsigned many_calls, many_pieces;

static int fake_read_many(void *arg, struct fetch_read *r, size_t n,
			  struct lp_err *err)
{
	int rc = 0;

	many_calls++;
	many_pieces += (unsigned)n;
	for (size_t i = 0; i < n; i++) {
		r[i].result = fake_read(arg, r[i].buf, r[i].len, r[i].off,
					NULL);
		if (r[i].result < 0 && !rc)
			rc = lp_err_set(err, r[i].result, "fake: piece %zu",
					i);
	}
	return rc;
}

static const struct fetch_backend fake_be_many = {
	.read = fake_read,
	.read_many = fake_read_many,
	.stream = fake_stream,
};

static unsigned requests(struct fake *f)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->requests;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static char root[256];

static struct fetch_cache *cache_open(uint64_t max)
{
	struct fetch_cache_opts co = { .root = root,
				       .granule = G,
				       .max_bytes = max };
	struct fetch_cache *c = NULL;
	struct lp_err err = { 0 };

	if (fetch_cache_open(&co, &c, &err) < 0) {
		fprintf(stderr, "cache: %s\n", err.msg);
		exit(1);
	}
	return c;
}

static struct lp_source *src_open(struct fetch_cache *c, const char *digest,
				  struct fake *f,
				  const struct fetch_source_opts *o)
{
	struct lp_source *s = NULL;
	struct lp_err err = { 0 };

	if (fetch_blob_source_open_backend(c, digest, f->size, o, &fake_be, f,
					   &s, &err) < 0) {
		fprintf(stderr, "source: %s\n", err.msg);
		exit(1);
	}
	return s;
}

static bool read_eq(struct lp_source *s, const struct fake *f, uint64_t off,
		    size_t len)
{
	uint8_t *buf = lp_xmalloc(len ? len : 1);
	int64_t n = s->ops->pread(s, buf, len, off);
	size_t want =
		off >= f->size ?
			0 :
			(len > f->size - off ? (size_t)(f->size - off) : len);
	bool ok = n == (int64_t)want && !memcmp(buf, f->data + off, want);

	if (!ok)
		fprintf(stderr, "read %llu+%zu: got %lld\n",
			(unsigned long long)off, len, (long long)n);
	free(buf);
	return ok;
}

static char *digest_of(int i)
{
	char *d = lp_xmalloc(72);

	snprintf(d, 72, "sha256:%064x", i);
	return d;
}

static void test_basic(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(1);
	struct fetch_cache *c = cache_open(0);
	struct lp_source *s = src_open(c, d, f, NULL);
	struct lp_err err = { 0 };
	unsigned r0;
	FILE *fp;
	char path[512];

	CHECK(fetch_source_is(s));
	CHECK(read_eq(s, f, 0, 100));
	CHECK(requests(f) == 1);
	CHECK(read_eq(s, f, 10, 50)); /* same granule: a hit */
	CHECK(requests(f) == 1);
	CHECK(read_eq(s, f, G - 10, 20)); /* spans into granule 1 */
	CHECK(requests(f) == 2);
	CHECK(read_eq(s, f, f->size - 5, 100)); /* the short tail */
	CHECK(read_eq(s, f, f->size, 10));	/* EOF */
	CHECK(read_eq(s, f, 5 * G + 1, 3 * G));
	CHECK(fetch_source_cached_bytes(s) > 0);
	r0 = requests(f);
	lp_source_free(s);
	fetch_cache_unref(c);

	/* after a "restart" everything fetched is still there */
	c = cache_open(0);
	s = src_open(c, d, f, NULL);
	CHECK(read_eq(s, f, 0, 2 * G));
	CHECK(read_eq(s, f, 5 * G + 1, 3 * G));
	CHECK(read_eq(s, f, f->size - 5, 5));
	CHECK(requests(f) == r0);

	/* invalidate drops a range; it is fetched again, also after reopen */
	CHECK(fetch_source_invalidate(s, 1, 1) == 0);
	CHECK(read_eq(s, f, 0, 10));
	CHECK(requests(f) == r0 + 1);
	CHECK(fetch_source_invalidate(s, G, 1) == 0);
	lp_source_free(s);
	fetch_cache_unref(c);
	c = cache_open(0);
	s = src_open(c, d, f, NULL);
	CHECK(read_eq(s, f, 0, 10));
	CHECK(requests(f) == r0 + 1);
	CHECK(read_eq(s, f, G, 10));
	CHECK(requests(f) == r0 + 2);
	lp_source_free(s);

	/* a torn record at the tail is ignored, the earlier ones kept */
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s.map", root, d + 7);
	fp = fopen(path, "a");
	CHECK(fp && fwrite("LPRCxxxxxxxxxxx", 1, 15, fp) == 15);
	if (fp)
		fclose(fp);
	s = src_open(c, d, f, NULL);
	r0 = requests(f);
	CHECK(read_eq(s, f, 0, 2 * G));
	CHECK(requests(f) == r0);
	/* ... and records appended after reopening are replayed */
	CHECK(read_eq(s, f, 20 * G, 10));
	lp_source_free(s);
	s = src_open(c, d, f, NULL);
	r0 = requests(f);
	CHECK(read_eq(s, f, 20 * G, 10));
	CHECK(requests(f) == r0);
	lp_source_free(s);

	/* a corrupt snapshot means "nothing present", never garbage */
	fp = fopen(path, "r+");
	if (fp) {
		fseek(fp, 64, SEEK_SET);
		fputc(0xff, fp);
		fclose(fp);
	}
	s = src_open(c, d, f, NULL);
	CHECK(fetch_source_cached_bytes(s) <= 2 * G);
	r0 = requests(f);
	CHECK(read_eq(s, f, 0, 10));
	lp_source_free(s);

	/* opening a digest with another size fails while it is open */
	s = src_open(c, d, f, NULL);
	{
		struct fetch_cache_blob *b = NULL;

		CHECK(fetch_cache_blob_open(c, d, f->size + 1, &b, &err) ==
		      -EINVAL);
	}
	lp_source_free(s);
	fetch_cache_unref(c);
}

static void test_failure(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(2);
	struct fetch_cache *c = cache_open(0);
	struct lp_source *s = src_open(c, d, f, NULL);
	uint8_t buf[100];
	struct lp_err e = { 0 };

	pthread_mutex_lock(&f->lock);
	f->fail_next = 1;
	pthread_mutex_unlock(&f->lock);
	CHECK(s->ops->pread(s, buf, sizeof(buf), 3 * G) == -EIO);
	CHECK(fetch_source_last_error(s, &e) == -EIO);
	CHECK(strstr(e.msg, "injected failure") != NULL);
	CHECK(fetch_source_cached_bytes(s) == 0);
	CHECK(read_eq(s, f, 3 * G, sizeof(buf)));
	lp_source_free(s);
	fetch_cache_unref(c);
}

struct thr {
	struct lp_source *s;
	struct fake *f;
	uint64_t off;
	size_t len;
	bool ok;
};

static void *reader(void *arg)
{
	struct thr *t = arg;

	t->ok = read_eq(t->s, t->f, t->off, t->len);
	return NULL;
}

static void test_single_flight(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(3);
	struct fetch_cache *c = cache_open(0);
	struct lp_source *s = src_open(c, d, f, NULL);
	pthread_t th[8];
	struct thr t[8];
	unsigned r0 = requests(f);

	f->delay_ms = 100;
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){
			.s = s, .f = f, .off = 40 * G + 7, .len = 2 * G
		};
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].ok);
	}
	CHECK(requests(f) == r0 + 1);

	/* overlapping reads share the common granules */
	r0 = requests(f);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){
			.s = s, .f = f, .off = 60 * G + i * G, .len = 2 * G
		};
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].ok);
	}
	CHECK(requests(f) - r0 <= 4);
	CHECK(fetch_source_cached_bytes(s) == 8 * G);

	/* a failing fetch does not leave waiters hanging */
	pthread_mutex_lock(&f->lock);
	f->fail_next = 1;
	pthread_mutex_unlock(&f->lock);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ .s = s, .f = f, .off = 80 * G, .len = 10 };
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	{
		int ok = 0;

		for (int i = 0; i < 4; i++)
			ok += t[i].ok;
		CHECK(ok >= 3); /* only the reader that fetched failed */
	}
	f->delay_ms = 0;
	lp_source_free(s);
	fetch_cache_unref(c);
}

static void test_merge(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(4);
	struct fetch_cache *c = cache_open(0);
	struct fetch_source_opts o = { .plan = { .max_gap = 2 * G,
						 .max_size = 8 * G } };
	struct lp_source *s = src_open(c, d, f, &o);
	struct fetch_range want[] = {
		{ 0, 10 },
		{ 2 * G, 10 },
		{ 4 * G + 5, 10 },
		{ 100 * G, 1 },
	};
	struct lp_err err = { 0 };
	unsigned r0 = requests(f);

	CHECK(fetch_source_prefetch(s, want, ARRAY_SIZE(want), &err) == 0);
	CHECK(requests(f) == r0 + 2);
	r0 = requests(f);
	CHECK(read_eq(s, f, 0, 5 * G)); /* the gaps came along */
	CHECK(read_eq(s, f, 100 * G, 10));
	CHECK(requests(f) == r0);
	/* a long read is split at max_size */
	CHECK(read_eq(s, f, 200 * G, 20 * G));
	CHECK(requests(f) == r0 + 3);
	lp_source_free(s);

	/* min_size reads ahead */
	o.plan.min_size = 16 * G;
	s = src_open(c, d, f, &o);
	r0 = requests(f);
	CHECK(read_eq(s, f, 150 * G, 10));
	CHECK(read_eq(s, f, 160 * G, 10));
	CHECK(requests(f) == r0 + 2); /* 16 granules, max_size 8 */
	lp_source_free(s);
	fetch_cache_unref(c);
}

/* independent ranges of one prefetch go to the backend in one batch; a
 * failed piece does not keep the others out of the cache */
static void test_read_many(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(7);
	struct fetch_cache *c = cache_open(0);
	struct fetch_source_opts o = { .plan = { .max_gap = G,
						 .max_size = 4 * G } };
	struct fetch_range want[] = {
		{ 10 * G, 100 },
		{ 50 * G, 100 },
		{ 90 * G, 6 * G }, /* two pieces: max_size */
		{ 200 * G, 1 },
	};
	struct lp_source *s = NULL;
	struct lp_err err = { 0 };
	unsigned r0;

	CHECK(fetch_blob_source_open_backend(c, d, f->size, &o, &fake_be_many,
					     f, &s, &err) == 0);
	many_calls = many_pieces = 0;
	r0 = requests(f);
	CHECK(fetch_source_prefetch(s, want, ARRAY_SIZE(want), &err) == 0);
	CHECK(many_calls == 1 && many_pieces == 5);
	CHECK(requests(f) == r0 + 5);
	r0 = requests(f);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		CHECK(read_eq(s, f, want[i].off, want[i].len));
	CHECK(requests(f) == r0);

	/* the first piece of the next batch fails: the rest is cached */
	{
		struct fetch_range more[] = {
			{ 20 * G, 10 },
			{ 60 * G, 10 },
			{ 120 * G, 10 },
		};

		pthread_mutex_lock(&f->lock);
		f->fail_next = 1;
		pthread_mutex_unlock(&f->lock);
		lp_err_clear(&err);
		CHECK(fetch_source_prefetch(s, more, 3, &err) == -EIO);
		r0 = requests(f);
		CHECK(read_eq(s, f, 60 * G, 10));
		CHECK(read_eq(s, f, 120 * G, 10));
		CHECK(requests(f) == r0);
		CHECK(read_eq(s, f, 20 * G, 10)); /* fetched now */
		CHECK(requests(f) == r0 + 1);
	}
	lp_source_free(s);
	fetch_cache_unref(c);
}

static void test_fill(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(5);
	struct fetch_cache *c = cache_open(0);
	struct lp_source *s = src_open(c, d, f, NULL);
	struct lp_err err = { 0 };
	unsigned r0;

	CHECK(read_eq(s, f, 3 * G, 10));
	CHECK(fetch_source_fill(s, NULL, &err) == 0);
	CHECK(fetch_source_cached_bytes(s) == f->size);
	r0 = requests(f);
	CHECK(read_eq(s, f, 0, (size_t)f->size));
	CHECK(requests(f) == r0);
	lp_source_free(s);
	fetch_cache_unref(c);
}

static uint64_t dir_count(const char *sub)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	uint64_t n = 0;

	snprintf(path, sizeof(path), "%s/blobs/%s", root, sub);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".data") != NULL;
	closedir(d);
	return n;
}

static void test_evict(struct fake *f)
{
	struct fetch_cache *c;
	struct lp_source *keep, *s;
	_cleanup_free_ char *d0 = digest_of(100);
	struct lp_err err = { 0 };
	int64_t n;

	/* start from an empty cache */
	c = cache_open(1);
	fetch_cache_unref(c);
	CHECK(dir_count("sha256") == 0);

	c = cache_open(0);
	keep = src_open(c, d0, f, NULL);
	CHECK(read_eq(keep, f, 0, 64 * G));
	for (int i = 0; i < 4; i++) {
		_cleanup_free_ char *d = digest_of(101 + i);
		struct timespec ts = { 0, 20 * 1000000L };

		s = src_open(c, d, f, NULL);
		CHECK(read_eq(s, f, 0, 64 * G));
		lp_source_free(s);
		nanosleep(&ts, NULL); /* distinct mtimes */
	}
	CHECK(dir_count("sha256") == 5);
	/* room for about two blobs: the oldest unused ones go, the open
	 * one stays although it is the oldest */
	n = fetch_cache_gc(c, 2 * 64 * G + 2 * G, &err);
	CHECK(n >= 0 && (uint64_t)n <= 2 * 64 * G + 2 * G);
	CHECK(dir_count("sha256") == 2);
	CHECK(read_eq(keep, f, 0, 64 * G));
	lp_source_free(keep);
	{
		char path[512];
		struct stat st;

		snprintf(path, sizeof(path), "%s/blobs/sha256/%s.data", root,
			 d0 + 7);
		CHECK(stat(path, &st) == 0);
	}
	/* a bounded cache evicts by itself as it fills */
	fetch_cache_unref(c);
	c = cache_open(3 * 64 * G);
	for (int i = 0; i < 6; i++) {
		_cleanup_free_ char *d = digest_of(200 + i);

		s = src_open(c, d, f, NULL);
		CHECK(read_eq(s, f, 0, 64 * G));
		lp_source_free(s);
	}
	CHECK(dir_count("sha256") <= 4);
	fetch_cache_unref(c);
}

/*
 * The warm mark (`lazypull probe --warm`): an OFD lock on the blob's data
 * file.  The warming process does not see its own mark, another process
 * does (and cannot take it) until the last open of the blob in the
 * warming process is closed; then it can warm the blob itself.  Parent
 * and child step through this over two pipes; the child forks before the
 * parent opens the blob (an inherited descriptor would share the lock).
 */
static void step_signal(int fd)
{
	char c = 's';

	CHECK(write(fd, &c, 1) == 1);
}

/* false if the other side is gone (it closed its end or died) */
static bool step_wait(int fd)
{
	char c;
	ssize_t n;

	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1;
}

static void warm_child(struct fake *f, const char *d, int rd, int wr)
{
	struct fetch_cache *c;
	struct fetch_cache_blob *b = NULL;
	struct lp_source *s;
	struct lp_err err = { 0 };

	if (!step_wait(rd))
		_exit(3);
	/* (2) the parent warms: seen through the blob and through a source */
	c = cache_open(0);
	CHECK(fetch_cache_blob_open(c, d, f->size, &b, &err) == 0);
	if (!b)
		_exit(3);
	s = src_open(c, d, f, NULL);
	CHECK(fetch_cache_blob_warming(b));
	CHECK(lp_source_warming(s));
	CHECK(fetch_cache_blob_warm_begin(b) == -EBUSY);
	CHECK(fetch_source_warm_begin(s) == -EBUSY);
	CHECK(fetch_cache_blob_warming(b)); /* the failed attempts took nothing */
	step_signal(wr);
	/* (4) the parent closed all but one open of the blob: still warming */
	if (!step_wait(rd))
		_exit(3);
	CHECK(fetch_cache_blob_warming(b));
	CHECK(fetch_cache_blob_warm_begin(b) == -EBUSY);
	step_signal(wr);
	/* (6) the parent closed the last one: the mark is gone, ours to take */
	if (!step_wait(rd))
		_exit(3);
	CHECK(!fetch_cache_blob_warming(b));
	CHECK(!lp_source_warming(s));
	CHECK(fetch_source_warm_begin(s) == 0);
	CHECK(!fetch_cache_blob_warming(b)); /* not for ourselves */
	step_signal(wr);
	/* (8) the parent saw it; exiting drops it */
	if (!step_wait(rd))
		_exit(3);
	lp_source_free(s);
	fetch_cache_blob_close(b);
	fetch_cache_unref(c);
	fflush(stderr);
	_exit(failures ? 1 : 0);
}

static void test_warm(struct fake *f)
{
	_cleanup_free_ char *d = digest_of(300);
	struct fetch_cache *c;
	struct fetch_cache_blob *b = NULL, *b2 = NULL;
	struct lp_source *s;
	struct lp_err err = { 0 };
	int p2c[2], c2p[2], st = 0;
	pid_t pid;

	CHECK(pipe(p2c) == 0 && pipe(c2p) == 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECK(pid >= 0);
	if (pid < 0)
		return;
	if (pid == 0) {
		close(p2c[1]);
		close(c2p[0]);
		warm_child(f, d, p2c[0], c2p[1]);
	}
	close(p2c[0]);
	close(c2p[1]);

	/* (1) warm the blob; this process does not see its own mark */
	c = cache_open(0);
	CHECK(fetch_cache_blob_open(c, d, f->size, &b, &err) == 0);
	if (!b) {
		close(p2c[1]);
		waitpid(pid, NULL, 0);
		return;
	}
	CHECK(!fetch_cache_blob_warming(b));
	CHECK(fetch_cache_blob_warm_begin(b) == 0);
	CHECK(!fetch_cache_blob_warming(b));
	CHECK(fetch_cache_blob_warm_begin(b) == 0); /* ours already */
	/* a second open here is the same blob: not "another process" */
	CHECK(fetch_cache_blob_open(c, d, f->size, &b2, &err) == 0 && b2 == b);
	s = src_open(c, d, f, NULL);
	CHECK(!lp_source_warming(s));
	CHECK(!fetch_cache_blob_warming(b2));
	step_signal(p2c[1]);
	CHECK(step_wait(c2p[0]));
	/* (3) close all opens but one */
	lp_source_free(s);
	if (b2)
		fetch_cache_blob_close(b2);
	step_signal(p2c[1]);
	CHECK(step_wait(c2p[0]));
	/* (5) the last close drops the mark */
	fetch_cache_blob_close(b);
	b = NULL;
	step_signal(p2c[1]);
	CHECK(step_wait(c2p[0]));
	/* (7) now the child warms: we see it and cannot take it */
	CHECK(fetch_cache_blob_open(c, d, f->size, &b, &err) == 0);
	if (b) {
		CHECK(fetch_cache_blob_warming(b));
		CHECK(fetch_cache_blob_warm_begin(b) == -EBUSY);
	}
	step_signal(p2c[1]);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "warm: the child failed (status 0x%x)\n", st);
	/* (9) the child exited: the mark went with it */
	if (b) {
		CHECK(!fetch_cache_blob_warming(b));
		CHECK(fetch_cache_blob_warm_begin(b) == 0);
		fetch_cache_blob_close(b);
	}
	close(p2c[1]);
	close(c2p[0]);
	fetch_cache_unref(c);
}

static void test_docs(void)
{
	struct fetch_cache *c = cache_open(0);
	uint8_t *d = NULL;
	size_t n = 0;

	CHECK(fetch_cache_doc_get(c, "k", -1, &d, &n) == -ENOENT);
	CHECK(fetch_cache_doc_put(c, "k", "hello", 5, NULL) == 0);
	CHECK(fetch_cache_doc_get(c, "k", -1, &d, &n) == 0 && n == 5 &&
	      !memcmp(d, "hello", 5) && d[5] == '\0');
	free(d);
	CHECK(fetch_cache_doc_put(c, "k", "bye", 3, NULL) == 0);
	CHECK(fetch_cache_doc_get(c, "k", 100, &d, &n) == 0 && n == 3);
	free(d);
	{
		/* an old document is "absent" for a bounded age */
		char path[512];
		struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };
		uint8_t sum[32];
		char hex[65];

		lp_sha256("k", 1, sum);
		lp_hex(sum, 32, hex);
		snprintf(path, sizeof(path), "%s/docs/%s", root, hex);
		CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
	}
	CHECK(fetch_cache_doc_get(c, "k", 100, &d, &n) == -ENOENT);
	CHECK(fetch_cache_doc_get(c, "k", -1, &d, &n) == 0);
	free(d);
	fetch_cache_unref(c);
}

int main(void)
{
	struct fake f = { 0 };
	uint8_t *data;
	uint64_t x = 88172645463325252ull;

	snprintf(root, sizeof(root), "/tmp/test-fetcher-cache.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	f.size = 300 * G + 123;
	data = lp_xmalloc((size_t)f.size);
	for (uint64_t i = 0; i < f.size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	f.data = data;
	pthread_mutex_init(&f.lock, NULL);

	test_basic(&f);
	test_failure(&f);
	test_single_flight(&f);
	test_merge(&f);
	test_read_many(&f);
	test_fill(&f);
	test_evict(&f);
	test_warm(&f);
	test_docs();

	free(data);
	if (!failures) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", root);
	}
	if (failures) {
		fprintf(stderr, "%d failure(s); cache left in %s\n", failures,
			root);
		return 1;
	}
	printf("ok\n");
	return 0;
}
