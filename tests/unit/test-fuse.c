/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/fuse without the kernel: the read path and the decoded-chunk cache
 * through fsrv_read(), with a fake chunk source.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs/fuse.h"

#define CHECK_WITH_MESSAGE
#include "check.h"

/* The file's byte at offset off. */
static uint8_t byte_at(uint64_t off)
{
	uint64_t x = off * 0x9E3779B97F4A7C15ull;

	return (uint8_t)(x >> 56);
}

struct fake {
	const struct model *m;
	uint32_t calls[4096]; /* atomics, per chunk */
	int fail_idx;	      /* -1 = none */
	unsigned delay_ms;
};

static int fake_read_chunk(void *priv, uint32_t idx, void *out,
			   struct lp_err *err)
{
	struct fake *f = priv;
	const struct model_chunk *c = &f->m->chunks[idx];
	uint8_t *o = out;

	__atomic_add_fetch(&f->calls[idx], 1, __ATOMIC_RELAXED);
	if (f->delay_ms) {
		struct timespec ts = { 0, (long)f->delay_ms * 1000000L };

		nanosleep(&ts, NULL);
	}
	if ((int)idx == f->fail_idx)
		return lp_err_set(err, EBADMSG, "fake digest mismatch");
	for (uint64_t i = 0; i < c->len; i++)
		o[i] = byte_at(c->file_off + i);
	return 0;
}

static const struct fsrv_source_ops fake_ops = {
	.read_chunk = fake_read_chunk,
};

/* /f: chunks of the given sizes; /empty; /dir/ */
static struct model *make_model(const uint64_t *sizes, size_t n)
{
	struct model_builder *b = model_builder_new(0);
	struct model_entry e = { 0 };
	struct lp_err err = { 0 };
	struct model *m = NULL;
	uint64_t total = 0, off = 0;
	uint32_t id, blob;

	for (size_t i = 0; i < n; i++)
		total += sizes[i];
	if (model_builder_add_blob(b, "sha256:00", NULL, 0, &blob, &err) < 0)
		goto fail;
	e.path = "f";
	e.path_len = 1;
	e.type = MODEL_REG;
	e.mode = 0644;
	e.size = total;
	if (model_builder_add(b, &e, &id, &err) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		struct model_chunk c = { 0 };

		c.file_off = off;
		c.len = sizes[i];
		c.blob = blob;
		off += sizes[i];
		if (model_builder_add_chunk(b, id, &c, &err) < 0)
			goto fail;
	}
	e.path = "empty";
	e.path_len = 5;
	e.size = 0;
	if (model_builder_add(b, &e, NULL, &err) < 0)
		goto fail;
	e.path = "dir";
	e.path_len = 3;
	e.type = MODEL_DIR;
	e.mode = 0755;
	if (model_builder_add(b, &e, NULL, &err) < 0)
		goto fail;
	if (model_builder_finish(b, &m, &err) < 0) {
		fprintf(stderr, "finish: %s\n", err.msg);
		exit(1);
	}
	return m;
fail:
	fprintf(stderr, "builder: %s\n", err.msg);
	exit(1);
}

static bool range_ok(const uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != byte_at(off + i))
			return false;
	return true;
}

static void test_basic(void)
{
	static const uint64_t sizes[] = { 65536, 1, 4096, 100000, 65536, 7 };
	struct model *m = make_model(sizes, ARRAY_SIZE(sizes));
	struct fake f = { .m = m, .fail_idx = -1 };
	struct fsrv *s = NULL;
	struct fsrv_stats st;
	uint32_t ino = model_lookup_path(m, "/f");
	uint64_t size = m->inodes[ino].size;
	uint8_t *buf = malloc(size + 100);
	struct lp_err err = { 0 };
	unsigned seed = 1;

	CHECK(fsrv_new(m, &fake_ops, &f, NULL, &s, &err) == 0, "%s",
	      err.msg);
	/* whole file, then every (off, len) pair of a coarse grid */
	CHECK(fsrv_read(s, ino, buf, size + 100, 0, NULL) == (int64_t)size,
	      "whole read");
	CHECK(range_ok(buf, 0, size), "whole read bytes");
	for (int i = 0; i < 3000; i++) {
		uint64_t off = (uint64_t)rand_r(&seed) % (size + 10);
		size_t len = (size_t)rand_r(&seed) % 140000;
		int64_t want = off >= size ? 0
			       : (int64_t)(len < size - off ? len : size - off);
		int64_t n = fsrv_read(s, ino, buf, len, off, NULL);

		CHECK(n == want, "read %llu+%zu: %lld, want %lld",
		      (unsigned long long)off, len, (long long)n,
		      (long long)want);
		if (n > 0)
			CHECK(range_ok(buf, off, (size_t)n), "bytes %llu+%zu",
			      (unsigned long long)off, len);
	}
	/* every chunk decoded exactly once: the cache holds them all */
	for (uint32_t i = 0; i < m->n_chunks; i++)
		CHECK(f.calls[i] == 1, "chunk %u decoded %u times", i,
		      f.calls[i]);
	fsrv_get_stats(s, &st);
	CHECK(st.chunk_misses == m->n_chunks, "misses %llu",
	      (unsigned long long)st.chunk_misses);
	CHECK(st.cache_entries == m->n_chunks, "entries %llu",
	      (unsigned long long)st.cache_entries);
	/* not regular files */
	CHECK(fsrv_read(s, model_lookup_path(m, "/empty"), buf, 10, 0,
			NULL) == 0, "empty file");
	CHECK(fsrv_read(s, model_lookup_path(m, "/dir"), buf, 10, 0, NULL) ==
		      -EISDIR, "dir");
	CHECK(fsrv_read(s, 9999, buf, 10, 0, NULL) == -ENOENT, "no inode");
	fsrv_free(s);
	model_free(m);
	free(buf);
}

static void test_evict(void)
{
	uint64_t sizes[64];
	struct model *m;
	struct fake f = { .fail_idx = -1 };
	struct fsrv_opts o = { .cache_bytes = 4 * 65536 };
	struct fsrv *s = NULL;
	struct fsrv_stats st;
	uint8_t *buf = malloc(1 << 20);
	uint32_t ino;

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
		sizes[i] = 65536;
	sizes[10] = 1 << 20; /* bigger than the whole cache */
	m = make_model(sizes, ARRAY_SIZE(sizes));
	f.m = m;
	ino = model_lookup_path(m, "/f");
	CHECK(fsrv_new(m, &fake_ops, &f, &o, &s, NULL) == 0, "new");
	for (uint64_t off = 0; off < m->inodes[ino].size; off += 4096) {
		int64_t n = fsrv_read(s, ino, buf, 4096, off, NULL);

		CHECK(n == 4096 && range_ok(buf, off, 4096), "read %llu",
		      (unsigned long long)off);
		fsrv_get_stats(s, &st);
		/* over the cap only with the one big chunk */
		CHECK(st.cache_bytes <= o.cache_bytes ||
			      st.cache_entries == 1,
		      "cache holds %llu bytes, cap %llu",
		      (unsigned long long)st.cache_bytes,
		      (unsigned long long)o.cache_bytes);
	}
	/* sequential 4 KiB reads: one decode per chunk, the big one too */
	for (uint32_t i = 0; i < m->n_chunks; i++)
		CHECK(f.calls[i] == 1, "chunk %u decoded %u times", i,
		      f.calls[i]);
	/* the first chunks were evicted: reading them decodes again */
	CHECK(fsrv_read(s, ino, buf, 10, 0, NULL) == 10, "reread");
	CHECK(f.calls[0] == 2, "chunk 0 decoded %u times", f.calls[0]);
	fsrv_free(s);
	model_free(m);
	free(buf);
}

static void quiet(enum lp_log_level lvl, const char *mod, const char *msg,
		  void *data)
{
	(void)lvl;
	(void)mod;
	(void)msg;
	(void)data;
}

static void test_fail(void)
{
	static const uint64_t sizes[] = { 1000, 1000, 1000 };
	struct model *m = make_model(sizes, ARRAY_SIZE(sizes));
	struct fake f = { .m = m, .fail_idx = 1 };
	struct fsrv *s = NULL;
	struct lp_err err = { 0 };
	uint8_t buf[3000];
	uint32_t ino = model_lookup_path(m, "/f");
	int64_t n;

	lp_log_set_sink(quiet, NULL); /* the read errors are expected */
	CHECK(fsrv_new(m, &fake_ops, &f, NULL, &s, NULL) == 0, "new");
	n = fsrv_read(s, ino, buf, 3000, 0, &err);
	CHECK(n == -EBADMSG, "read over a bad chunk: %lld", (long long)n);
	CHECK(strstr(err.msg, "fake digest mismatch"), "message: %s",
	      err.msg);
	/* failures are not cached */
	CHECK(fsrv_read(s, ino, buf, 10, 1500, NULL) == -EBADMSG, "again");
	CHECK(f.calls[1] == 2, "bad chunk tried %u times", f.calls[1]);
	/* the good chunks still read */
	CHECK(fsrv_read(s, ino, buf, 1000, 0, NULL) == 1000 &&
		      range_ok(buf, 0, 1000),
	      "chunk 0");
	CHECK(fsrv_read(s, ino, buf, 1000, 2000, NULL) == 1000 &&
		      range_ok(buf, 2000, 1000),
	      "chunk 2");
	f.fail_idx = -1;
	CHECK(fsrv_read(s, ino, buf, 3000, 0, NULL) == 3000 &&
		      range_ok(buf, 0, 3000),
	      "after the source recovered");
	lp_log_set_sink(NULL, NULL);
	fsrv_free(s);
	model_free(m);
}

struct thr {
	struct fsrv *s;
	uint32_t ino;
	uint64_t size;
	unsigned seed;
	int bad;
};

static void *reader(void *p)
{
	struct thr *t = p;
	uint8_t *buf = malloc(300000);

	for (int i = 0; i < 400; i++) {
		uint64_t off = (uint64_t)rand_r(&t->seed) % t->size;
		size_t len = (size_t)rand_r(&t->seed) % 300000 + 1;
		int64_t n = fsrv_read(t->s, t->ino, buf, len, off, NULL);
		size_t want = len < t->size - off ? len : t->size - off;

		if (n != (int64_t)want || !range_ok(buf, off, want))
			t->bad++;
	}
	free(buf);
	return NULL;
}

static void test_threads(void)
{
	uint64_t sizes[200];
	struct model *m;
	struct fake f = { .fail_idx = -1, .delay_ms = 1 };
	struct fsrv_opts o = { .cache_bytes = 1 << 20 };
	struct fsrv *s = NULL;
	struct fsrv_stats st;
	struct thr t[16];
	pthread_t th[16];

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
		sizes[i] = 1000 + (i * 7919) % 70000;
	m = make_model(sizes, ARRAY_SIZE(sizes));
	f.m = m;
	CHECK(fsrv_new(m, &fake_ops, &f, &o, &s, NULL) == 0, "new");
	for (int i = 0; i < 16; i++) {
		t[i] = (struct thr){ s, model_lookup_path(m, "/f"), 0,
				     (unsigned)i + 1, 0 };
		t[i].size = m->inodes[t[i].ino].size;
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 16; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].bad == 0, "thread %d: %d bad reads", i, t[i].bad);
	}
	fsrv_get_stats(s, &st);
	CHECK(st.cache_bytes <= o.cache_bytes, "cache %llu bytes",
	      (unsigned long long)st.cache_bytes);
	fsrv_free(s);
	model_free(m);
}

/* Many threads want one slow chunk at once: it is decoded once. */
static void test_single_flight(void)
{
	static const uint64_t sizes[] = { 65536 };
	struct model *m = make_model(sizes, 1);
	struct fake f = { .m = m, .fail_idx = -1, .delay_ms = 200 };
	struct fsrv *s = NULL;
	struct fsrv_stats st;
	struct thr t[8];
	pthread_t th[8];

	CHECK(fsrv_new(m, &fake_ops, &f, NULL, &s, NULL) == 0, "new");
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){ s, model_lookup_path(m, "/f"), 65536,
				     (unsigned)i + 1, 0 };
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].bad == 0, "thread %d: %d bad reads", i, t[i].bad);
	}
	CHECK(f.calls[0] == 1, "decoded %u times", f.calls[0]);
	fsrv_get_stats(s, &st);
	CHECK(st.chunk_waits > 0, "no reader waited");
	fsrv_free(s);
	model_free(m);
}

int main(void)
{
	struct lp_err err = { 0 };
	struct fsrv *s = NULL;
	static const uint64_t one[] = { 10 };
	struct model *m = make_model(one, 1);

	CHECK(fsrv_new(m, NULL, NULL, NULL, &s, &err) == -EINVAL,
	      "no source accepted");
	CHECK(fsrv_new(m, &fake_ops, NULL,
		       &(struct fsrv_opts){ .fsname = "a,b" }, &s,
		       NULL) == -EINVAL,
	      "fsname with a comma accepted");
	model_free(m);
	test_basic();
	test_evict();
	test_fail();
	test_threads();
	test_single_flight();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
