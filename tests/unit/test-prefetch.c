/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/prefetch without formats or network: a hand-built layer (chunks
 * stored raw, sha256 digests) over a memory source whose prefetch op
 * records what it is asked for.  Checks the plan (landmark range first,
 * then the files below the landmark, then the rest with opts.all), that
 * nothing is fetched while an on-demand read is in flight, that a chunk
 * failing its digest is counted and the rest done, and that stop is prompt.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs/engine.h"

#define CHECK_WITH_MESSAGE
#include "check.h"

#define CHUNK 1000u
#define BLOB_SIZE 20000u

static uint8_t blob[BLOB_SIZE];

/* The recording source: preads from blob, logs prefetch calls. */
struct rec {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate; /* the first prefetch call waits until this is cleared */
	struct lp_range calls[256];
	unsigned n_calls;
	uint64_t first_range_len; /* of the first call's first range */
	unsigned first_range_n;
	/* rec_warm_ops: another process "warms" the blob; [0, arrived) of
	 * it is in the cache */
	bool warming;
	uint64_t arrived;
	unsigned early_reads; /* preads past arrived while warming */
	bool fail;	      /* preads fail (a registry that is down) */
	unsigned preads;
};

static int64_t rec_pread(struct lp_source *s, void *buf, size_t len,
			 uint64_t off)
{
	struct rec *rc = s->priv;

	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	pthread_mutex_lock(&rc->lock);
	if (rc->warming && off + len > rc->arrived)
		rc->early_reads++;
	rc->preads++;
	if (rc->fail) {
		pthread_mutex_unlock(&rc->lock);
		return -ETIMEDOUT;
	}
	pthread_mutex_unlock(&rc->lock);
	memcpy(buf, blob + off, len);
	return (int64_t)len;
}

static int rec_prefetch(struct lp_source *s, const struct lp_range *r,
			size_t n, struct lp_err *err)
{
	struct rec *rc = s->priv;

	(void)err;
	pthread_mutex_lock(&rc->lock);
	if (rc->n_calls == 0) {
		rc->first_range_len = n ? r[0].off + r[0].len : 0;
		rc->first_range_n = (unsigned)n;
	}
	for (size_t i = 0; i < n && rc->n_calls < 256; i++)
		rc->calls[rc->n_calls++] = r[i];
	while (rc->gate)
		pthread_cond_wait(&rc->cond, &rc->lock);
	pthread_mutex_unlock(&rc->lock);
	return 0;
}

static void rec_close(struct lp_source *s)
{
	(void)s;
}

static const struct lp_source_ops rec_ops = {
	.pread = rec_pread,
	.close = rec_close,
	.prefetch = rec_prefetch,
};

static bool rec_warming(struct lp_source *s)
{
	struct rec *rc = s->priv;
	bool w;

	pthread_mutex_lock(&rc->lock);
	w = rc->warming;
	pthread_mutex_unlock(&rc->lock);
	return w;
}

static bool rec_cached(struct lp_source *s, uint64_t off, uint64_t len)
{
	struct rec *rc = s->priv;
	bool c;

	pthread_mutex_lock(&rc->lock);
	c = off + len <= rc->arrived;
	pthread_mutex_unlock(&rc->lock);
	return c;
}

static const struct lp_source_ops rec_warm_ops = {
	.pread = rec_pread,
	.close = rec_close,
	.prefetch = rec_prefetch,
	.warming = rec_warming,
	.cached = rec_cached,
};

static void rec_set(struct rec *rc, bool warming, uint64_t arrived)
{
	pthread_mutex_lock(&rc->lock);
	rc->warming = warming;
	rc->arrived = arrived;
	pthread_mutex_unlock(&rc->lock);
}

/* one of rc's counters, read under its lock */
static unsigned rec_get(struct rec *rc, const unsigned *counter)
{
	unsigned n;

	pthread_mutex_lock(&rc->lock);
	n = *counter;
	pthread_mutex_unlock(&rc->lock);
	return n;
}

static int raw_decode(struct format_ctx *ctx, const struct model_chunk *c,
		      const void *stored, size_t stored_len, void *out,
		      struct lp_err *err)
{
	(void)ctx;
	if (stored_len < c->len)
		return lp_err_set(err, EIO, "short");
	memcpy(out, stored, (size_t)c->len);
	return 0;
}

static const struct format_ops raw_ops = {
	.name = "raw",
	.decode_chunk = raw_decode,
};

/*
 * Files /a (3 chunks, below the landmark), /b (2), /c (2), stored in that
 * order from blob offset 0; corrupt = a chunk index of /c given a wrong
 * digest (-1 none).
 */
static struct engine_layer *make_layer(struct rec *rc, int corrupt)
{
	static const char *const names[] = { "a", "b", "c" };
	static const uint32_t nchunks[] = { 3, 2, 2 };
	struct model_builder *b = model_builder_new(0);
	struct engine_layer *l = lp_xcalloc(1, sizeof(*l));
	struct lp_source *src = lp_xcalloc(1, sizeof(*src));
	struct lp_err err = { 0 };
	uint64_t off = 0;
	uint32_t blob_idx, k = 0;
	int r;

	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 131 + (i >> 8));
	model_builder_add_blob(b, "sha256:test", NULL, BLOB_SIZE, &blob_idx,
			       &err);
	for (int f = 0; f < 3; f++) {
		struct model_entry e = { 0 };
		uint32_t id;

		e.path = names[f];
		e.path_len = 1;
		e.type = MODEL_REG;
		e.mode = 0644;
		e.size = (uint64_t)nchunks[f] * CHUNK;
		r = model_builder_add(b, &e, &id, &err);
		CHECK(r == 0, "add %s: %s", names[f], err.msg);
		for (uint32_t c = 0; c < nchunks[f]; c++, k++) {
			struct model_chunk ch = { 0 };

			ch.file_off = (uint64_t)c * CHUNK;
			ch.len = CHUNK;
			ch.comp_off = off;
			ch.comp_len = CHUNK;
			ch.blob = blob_idx;
			ch.codec = MODEL_CODEC_NONE;
			ch.digest_alg = MODEL_DIGEST_SHA256;
			lp_sha256(blob + off, CHUNK, ch.digest);
			if (f == 2 && (int)c == corrupt)
				ch.digest[0] ^= 1;
			off += CHUNK;
			r = model_builder_add_chunk(b, id, &ch, &err);
			CHECK(r == 0, "chunk: %s", err.msg);
		}
	}
	r = model_builder_finish(b, &l->model, &err);
	CHECK(r == 0, "finish: %s", err.msg);
	src->ops = &rec_ops;
	src->size = BLOB_SIZE;
	src->name = lp_xstrdup("sha256:test");
	src->priv = rc;
	l->src = src;
	l->ops = &raw_ops;
	l->last_idx = -1;
	l->last_lock = lp_xmalloc(sizeof(pthread_mutex_t));
	pthread_mutex_init(l->last_lock, NULL);
	l->blob_src = lp_xcalloc(l->model->n_blobs, sizeof(*l->blob_src));
	l->info.format = "raw";
	l->info.landmark = 1;
	l->info.prefetch_offset = 3 * CHUNK; /* /a is below the landmark */
	return l;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static bool wait_finished(struct engine_prefetch *p, unsigned ms)
{
	struct engine_prefetch_stats st;

	for (unsigned t = 0; t < ms; t += 5) {
		engine_prefetch_get_stats(p, &st);
		if (st.finished)
			return true;
		sleep_ms(5);
	}
	return false;
}

static void rec_init(struct rec *rc)
{
	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	pthread_cond_init(&rc->cond, NULL);
}

static void rec_open_gate(struct rec *rc)
{
	pthread_mutex_lock(&rc->lock);
	rc->gate = false;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
}

static void test_plan(void)
{
	struct rec rc;
	struct engine_layer *l;
	uint32_t *v = NULL, n = 0;
	uint64_t range = 0;

	rec_init(&rc);
	l = make_layer(&rc, -1);
	engine_prefetch_plan(l, &v, &n, &range);
	CHECK(range == 3 * CHUNK, "range %llu", (unsigned long long)range);
	CHECK(n == 3, "%u priority chunks, want /a's 3", n);
	for (uint32_t i = 0; i < n && i < 3; i++)
		CHECK(l->model->chunks[v[i]].comp_off == i * CHUNK,
		      "chunk %u at %llu", i,
		      (unsigned long long)l->model->chunks[v[i]].comp_off);
	free(v);
	/* no landmark: nothing to do, no thread */
	l->info.landmark = 0;
	{
		struct engine_prefetch *p = (void *)1;
		struct engine_layer *ls[1] = { l };

		CHECK(engine_prefetch_start(ls, 1, NULL, &p, NULL) == 0 && !p,
		      "a prefetcher without work");
	}
	engine_close(l);
}

static void test_priority_then_all(bool all)
{
	struct engine_prefetch_opts o = { .all = all };
	struct engine_prefetch_stats st;
	struct engine_prefetch *p = NULL;
	struct engine_layer *l, *ls[1];
	struct rec rc;
	int r;

	rec_init(&rc);
	l = make_layer(&rc, -1);
	ls[0] = l;
	r = engine_prefetch_start(ls, 1, &o, &p, NULL);
	CHECK(r == 0 && p, "start: %d", r);
	CHECK(wait_finished(p, 5000), "never finished");
	engine_prefetch_get_stats(p, &st);
	CHECK(st.priority_done, "priority part not done");
	CHECK(st.chunks_priority == 3, "%llu priority chunks",
	      (unsigned long long)st.chunks_priority);
	CHECK(st.chunks_done == (all ? 7u : 3u) && st.chunks_failed == 0,
	      "all=%d: %llu done, %llu failed", all,
	      (unsigned long long)st.chunks_done,
	      (unsigned long long)st.chunks_failed);
	/* the landmark range comes first, in one range */
	CHECK(rc.first_range_n == 1 && rc.first_range_len == 3 * CHUNK,
	      "first prefetch: %u ranges ending at %llu", rc.first_range_n,
	      (unsigned long long)rc.first_range_len);
	engine_prefetch_stop(p);
	engine_close(l);
}

static void test_yields(void)
{
	struct engine_prefetch_opts o = { .all = true, .idle_ms = 20 };
	struct engine_prefetch_stats st;
	struct engine_prefetch *p = NULL;
	struct engine_layer *l, *ls[1];
	struct rec rc;
	int r;

	rec_init(&rc);
	rc.gate = true; /* the landmark range fetch waits for us */
	l = make_layer(&rc, -1);
	ls[0] = l;
	r = engine_prefetch_start(ls, 1, &o, &p, NULL);
	CHECK(r == 0 && p, "start: %d", r);
	while (!rec_get(&rc, &rc.n_calls))
		sleep_ms(1);
	/* a read starts while the landmark range is on the wire: the
	 * priority files are still fetched and decoded (the workload is
	 * about to read them), but nothing else is fetched or decoded until
	 * the read ends */
	engine_prefetch_demand_begin(p);
	rec_open_gate(&rc);
	sleep_ms(300);
	engine_prefetch_get_stats(p, &st);
	pthread_mutex_lock(&rc.lock);
	for (unsigned i = 0; i < rc.n_calls; i++)
		CHECK(rc.calls[i].off + rc.calls[i].len <= 3 * CHUNK,
		      "while a read was in flight: fetched [%llu, +%llu), "
		      "past the priority files",
		      (unsigned long long)rc.calls[i].off,
		      (unsigned long long)rc.calls[i].len);
	pthread_mutex_unlock(&rc.lock);
	CHECK(rec_get(&rc, &rc.n_calls) >= 1 && st.chunks_done == 3,
	      "while a read was in flight: %u fetch ranges, %llu chunks",
	      rec_get(&rc, &rc.n_calls), (unsigned long long)st.chunks_done);
	CHECK(!st.finished, "finished during an on-demand read");
	engine_prefetch_demand_end(p);
	CHECK(wait_finished(p, 5000), "never finished after the read");
	engine_prefetch_get_stats(p, &st);
	CHECK(st.chunks_done == 7 && st.yields >= 1,
	      "%llu done, %llu yields", (unsigned long long)st.chunks_done,
	      (unsigned long long)st.yields);
	engine_prefetch_stop(p);
	engine_close(l);

	/* stop while blocked behind a read is prompt */
	rec_init(&rc);
	l = make_layer(&rc, -1);
	ls[0] = l;
	r = engine_prefetch_start(ls, 1, &o, &p, NULL);
	CHECK(r == 0 && p, "start: %d", r);
	engine_prefetch_demand_begin(p);
	{
		struct timespec a, b;

		sleep_ms(50);
		clock_gettime(CLOCK_MONOTONIC, &a);
		engine_prefetch_stop(p);
		clock_gettime(CLOCK_MONOTONIC, &b);
		CHECK((b.tv_sec - a.tv_sec) * 1000 +
				      (b.tv_nsec - a.tv_nsec) / 1000000 <
			      500,
		      "stop took too long");
	}
	engine_close(l);
}

static uint64_t done_after(struct engine_prefetch *p, uint64_t want,
			   unsigned ms)
{
	struct engine_prefetch_stats st;

	for (unsigned t = 0;; t += 5) {
		engine_prefetch_get_stats(p, &st);
		if (st.chunks_done >= want || t >= ms)
			return st.chunks_done;
		sleep_ms(5);
	}
}

/* While another process warms the blob, the priority chunks are decoded
 * one by one as their bytes arrive, never before; the rest once it is
 * done. */
static void test_arrival(void)
{
	struct engine_prefetch_stats st;
	struct engine_prefetch *p = NULL;
	struct engine_layer *l, *ls[1];
	struct rec rc;
	uint64_t n;

	rec_init(&rc);
	rec_set(&rc, true, 0);
	l = make_layer(&rc, -1);
	l->src->ops = &rec_warm_ops;
	ls[0] = l;
	CHECK(engine_prefetch_start(ls, 1, NULL, &p, NULL) == 0 && p, "start");
	sleep_ms(60);
	engine_prefetch_get_stats(p, &st);
	CHECK(st.chunks_done == 0 && rec_get(&rc, &rc.n_calls) == 0,
	      "nothing arrived: %llu decoded, %u fetches",
	      (unsigned long long)st.chunks_done, rec_get(&rc, &rc.n_calls));
	rec_set(&rc, true, CHUNK);
	n = done_after(p, 1, 2000);
	CHECK(n == 1, "the first chunk arrived: %llu decoded",
	      (unsigned long long)n);
	rec_set(&rc, true, 2 * CHUNK + CHUNK / 2);
	n = done_after(p, 2, 2000);
	sleep_ms(30);
	engine_prefetch_get_stats(p, &st);
	CHECK(n == 2 && st.chunks_done == 2 && !st.finished,
	      "two and a half chunks arrived: %llu decoded",
	      (unsigned long long)st.chunks_done);
	/* the warmer is done: the job fetches the rest itself */
	rec_set(&rc, false, 2 * CHUNK + CHUNK / 2);
	CHECK(wait_finished(p, 5000), "never finished");
	engine_prefetch_get_stats(p, &st);
	CHECK(st.chunks_done == 3 && st.chunks_failed == 0 && rc.early_reads == 0,
	      "%llu decoded, %llu failed, %u reads before their bytes arrived",
	      (unsigned long long)st.chunks_done,
	      (unsigned long long)st.chunks_failed, rc.early_reads);
	CHECK(rec_get(&rc, &rc.n_calls) >= 1, "the job fetched nothing after the warmer");
	engine_prefetch_stop(p);
	engine_close(l);
}

static void test_bad_chunk(void)
{
	struct engine_prefetch_opts o = { .all = true };
	struct engine_prefetch_stats st;
	struct engine_prefetch *p = NULL;
	struct engine_layer *l, *ls[1];
	struct rec rc;

	rec_init(&rc);
	l = make_layer(&rc, 1);
	ls[0] = l;
	CHECK(engine_prefetch_start(ls, 1, &o, &p, NULL) == 0 && p, "start");
	CHECK(wait_finished(p, 5000), "never finished");
	engine_prefetch_get_stats(p, &st);
	CHECK(st.chunks_done == 6 && st.chunks_failed == 1,
	      "%llu done, %llu failed", (unsigned long long)st.chunks_done,
	      (unsigned long long)st.chunks_failed);
	engine_prefetch_stop(p);
	engine_close(l);
}

/*
 * A chunk whose read failed fails at once when read again within the hold
 * (the kernel's read of a page right after its read-ahead failed), without
 * asking the source; another chunk, and the same one after the hold, are
 * read.  Bytes that came but did not verify are not held.
 */
static void test_held_failure(void)
{
	uint8_t out[CHUNK];
	struct lp_err err = { 0 };
	struct engine_layer *l;
	struct rec rc;
	unsigned n;
	int r;

	rec_init(&rc);
	l = make_layer(&rc, 1);
	rc.fail = true;
	r = engine_read_chunk(l, 0, out, &err);
	n = rec_get(&rc, &rc.preads);
	CHECK(r == -ETIMEDOUT && n >= 1, "down: %d, %u reads", r, n);
	lp_err_clear(&err);
	r = engine_read_chunk(l, 0, out, &err);
	CHECK(r == -ETIMEDOUT && rec_get(&rc, &rc.preads) == n &&
	      strstr(err.msg, "not asked again"),
	      "again at once: %d, %u reads (was %u): %s", r, rec_get(&rc, &rc.preads),
	      n, err.msg);
	lp_err_clear(&err);
	r = engine_read_chunk(l, 1, out, &err);
	CHECK(r == -ETIMEDOUT && rec_get(&rc, &rc.preads) > n,
	      "another chunk: %d, %u reads", r, rec_get(&rc, &rc.preads));
	rc.fail = false;
	sleep_ms(250);
	lp_err_clear(&err);
	r = engine_read_chunk(l, 0, out, &err);
	CHECK(r == 0 && !memcmp(out, blob, CHUNK), "after the hold: %d: %s",
	      r, err.msg);
	/* /c's chunk 1 (chunk 6) does not verify: read each time */
	n = rec_get(&rc, &rc.preads);
	lp_err_clear(&err);
	r = engine_read_chunk(l, 6, out, &err);
	lp_err_clear(&err);
	CHECK(r < 0 && engine_read_chunk(l, 6, out, &err) < 0 &&
	      rec_get(&rc, &rc.preads) >= n + 2, "bad bytes: %u reads (was %u)",
	      rec_get(&rc, &rc.preads), n);
	engine_close(l);
}

int main(void)
{
	lp_log_max = LP_LOG_ERROR;
	test_plan();
	test_priority_then_all(false);
	test_priority_then_all(true);
	test_yields();
	test_arrival();
	test_bad_chunk();
	test_held_failure();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("prefetch: all tests passed\n");
	return 0;
}
