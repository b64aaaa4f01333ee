/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A registry blob as an lp_source: reads are served from the blob cache;
 * missing granules are claimed (single flight), fetched in as few range
 * requests as the planner allows, written to the cache and then read back.
 */
#define LP_MODNAME "fetcher"
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher-int.h"

/* a read that keeps finding its granules gone gives up after this */
#define MAX_ROUNDS 4

struct bsrc {
	struct fetch_cache *cache;
	struct fetch_cache_blob *blob;
	struct fetch_backend be;
	void *arg;
	struct fetch_plan_opts plan;
	pthread_mutex_t err_lock;
	struct lp_err last_err; /* protected by err_lock */
	bool said_full;	 /* the cache's disk is full: logged once */
};

static const struct lp_source_ops bsrc_ops;

static struct bsrc *bsrc_of(struct lp_source *s)
{
	return s && s->ops == &bsrc_ops ? s->priv : NULL;
}

bool fetch_source_is(const struct lp_source *s)
{
	return s && s->ops == &bsrc_ops;
}

static void remember_err(struct bsrc *b, const struct lp_err *e)
{
	pthread_mutex_lock(&b->err_lock);
	b->last_err = *e;
	pthread_mutex_unlock(&b->err_lock);
}

static uint64_t run_end(const struct fetch_range *r)
{
	return r->off + r->len;
}

/* bytes of pieces fetched (and held in memory) at once */
#define BATCH_BYTES (64u << 20)

/* Fills the runs overlapping bytes [from, to) of piece p (offsets within
 * p) from it, or unclaims them if p failed or an earlier fill did (*r). */
static void fill_part(struct bsrc *b, const struct fetch_range *runs,
		      size_t n, const struct fetch_read *p, uint64_t from,
		      uint64_t to, int *r, struct lp_err *err)
{
	uint64_t lo = p->off + from, hi = p->off + to;

	for (size_t k = 0; k < n; k++) {
		uint64_t a = runs[k].off > lo ? runs[k].off : lo;
		uint64_t e = run_end(&runs[k]) < hi ? run_end(&runs[k]) : hi;
		int rf;

		if (a >= e)
			continue;
		if (p->result < 0 || *r < 0) {
			fetch_cache_blob_unclaim(b->blob, a, e - a);
			continue;
		}
		rf = fetch_cache_blob_fill(b->blob, a,
					   (const uint8_t *)p->buf +
						   (a - p->off),
					   e - a, err);
		if (rf < 0)
			*r = rf;
	}
}

/* A piece on its way: what of it is in the cache already. */
struct piece_fill {
	struct bsrc *b;
	const struct fetch_range *runs;
	size_t n;
	uint64_t done; /* bytes from the piece's start, granule-aligned */
	int r;
	struct lp_err err;
};

/* bytes of a piece that arrive before they are made visible in the cache
 * (readers of other processes see them then; each step costs a sync) */
#define FILL_STEP (1u << 20)

/* fetch_read progress: commits whole granules every FILL_STEP, so a read
 * of the start of a long range need not wait for its end. */
static void piece_progress(struct fetch_read *p, size_t got, void *arg)
{
	struct piece_fill *f = arg;
	uint32_t g = fetch_cache_granule(f->b->blob);
	uint64_t upto = got / g * g;

	if (f->r < 0 || upto >= p->len || upto < f->done + FILL_STEP)
		return; /* the end is filled with the rest */
	fill_part(f->b, f->runs, f->n, p, f->done, upto, &f->r, &f->err);
	if (f->r == 0)
		f->done = upto;
}

/*
 * Fetches claimed runs: merges them into requests, splits requests larger
 * than max_size at granule boundaries, fetches the pieces (several at once
 * when the backend can) and fills each run from the response.  Every run
 * is either filled or unclaimed on return.
 */
static int fetch_runs(struct bsrc *b, struct fetch_range *runs, size_t n,
		      uint64_t max_gap, struct lp_err *err)
{
	struct fetch_plan_opts po = b->plan;
	struct fetch_range *req;
	struct fetch_read *pc = NULL;
	struct piece_fill *pf;
	uint32_t g = fetch_cache_granule(b->blob);
	uint64_t size = fetch_cache_blob_size(b->blob);
	uint64_t piece_max;
	size_t nreq, np = 0, cap = 0;
	int r = 0;

	piece_max = po.max_size ? po.max_size / g * g : 0;
	if (po.max_size && piece_max < g)
		piece_max = g;
	po.min_size = 0; /* read-ahead is decided at claim time */
	if (max_gap < po.max_gap)
		po.max_gap = max_gap;
	req = lp_xmalloc(n * sizeof(*req));
	memcpy(req, runs, n * sizeof(*req));
	nreq = fetch_plan(req, n, &po, size);
	for (size_t i = 0; i < nreq; i++) {
		uint64_t pos = req[i].off, end = run_end(&req[i]);

		while (pos < end) {
			uint64_t plen = end - pos;

			if (piece_max && plen > piece_max)
				plen = piece_max;
			lp_grow((void **)&pc, sizeof(*pc), &cap, np + 1);
			pc[np++] = (struct fetch_read){ .off = pos,
							.len = (size_t)plen };
			pos += plen;
		}
	}
	free(req);
	pf = lp_xcalloc(np ? np : 1, sizeof(*pf));

	for (size_t i = 0; i < np;) {
		uint64_t bytes = 0;
		size_t j = i;

		while (j < np && (j == i || bytes + pc[j].len <= BATCH_BYTES))
			bytes += pc[j++].len;
		for (size_t k = i; k < j; k++) {
			pc[k].result = r;
			pc[k].buf = r < 0 ? NULL : lp_xmalloc(pc[k].len);
			pf[k] = (struct piece_fill){ .b = b, .runs = runs,
						     .n = n };
			pc[k].progress = piece_progress;
			pc[k].progress_arg = &pf[k];
		}
		if (r == 0 && b->be.read_many) {
			r = b->be.read_many(b->arg, pc + i, j - i, err);
		} else {
			for (size_t k = i; k < j; k++) {
				if (r == 0)
					r = b->be.read(b->arg, pc[k].buf,
						       pc[k].len, pc[k].off,
						       err);
				pc[k].result = r;
			}
		}
		/* a failed piece does not spoil the good ones */
		for (size_t k = i; k < j; k++) {
			int rf = pf[k].r;

			if (rf < 0 && r == 0 && err) /* a failed early fill */
				*err = pf[k].err;
			fill_part(b, runs, n, &pc[k], pf[k].done, pc[k].len,
				  &rf, err);
			if (rf < 0 && r == 0)
				r = rf;
			free(pc[k].buf);
		}
		i = j;
	}
	free(pc);
	free(pf);
	return r;
}

/*
 * Claims what [off, off+len) is missing; if anything was, also what the
 * read-ahead (min_size) adds, so cache hits never wait for read-ahead.
 */
static void claim_range(struct bsrc *b, uint64_t off, uint64_t len,
			bool exact, struct fetch_range **all, size_t *n,
			size_t *cap)
{
	for (int pass = 0; pass < 2; pass++) {
		struct fetch_range *runs = NULL;
		size_t k = 0;

		if (pass == 1) {
			if (exact || !b->plan.min_size ||
			    len >= b->plan.min_size)
				break;
			len = b->plan.min_size;
		}
		fetch_cache_blob_claim(b->blob, off, len, &runs, &k);
		if (k) {
			lp_grow((void **)all, sizeof(**all), cap, *n + k);
			memcpy(*all + *n, runs, k * sizeof(*runs));
			*n += k;
		}
		free(runs);
		if (!k)
			break;
	}
}

/*
 * Requests that merge runs across a gap download the gap too: claim the
 * gap's missing granules so those bytes are kept rather than dropped.
 */
static void claim_gaps(struct bsrc *b, struct fetch_range **runs, size_t *n,
		       size_t *cap, uint64_t max_gap)
{
	struct fetch_plan_opts po = b->plan;
	struct fetch_range *req;
	size_t nreq, n0 = *n;

	po.min_size = 0;
	if (max_gap < po.max_gap)
		po.max_gap = max_gap;
	req = lp_xmalloc(n0 * sizeof(*req));
	memcpy(req, *runs, n0 * sizeof(*req));
	nreq = fetch_plan(req, n0, &po, fetch_cache_blob_size(b->blob));
	for (size_t i = 0; i < nreq; i++) {
		struct fetch_range *more = NULL;
		size_t k = 0;

		fetch_cache_blob_claim(b->blob, req[i].off, req[i].len, &more,
				       &k);
		if (k) {
			lp_grow((void **)runs, sizeof(**runs), cap, *n + k);
			memcpy(*runs + *n, more, k * sizeof(*more));
			*n += k;
		}
		free(more);
	}
	free(req);
}

/*
 * Makes every range present (waiting for other fetchers when wait).
 * max_gap: requests merge across at most this many missing bytes
 * (UINT64_MAX: the source's plan); when below the plan's, the ranges are
 * also taken exactly, without the read-ahead window.
 */
static int ensure(struct bsrc *b, const struct fetch_range *want, size_t n,
		  bool wait, uint64_t max_gap, struct lp_err *err)
{
	bool exact = max_gap < b->plan.max_gap;

	for (int round = 0; round < MAX_ROUNDS; round++) {
		struct fetch_range *runs = NULL;
		size_t nruns = 0, cap = 0;
		bool done = true;
		int r = 0;

		for (size_t i = 0; i < n; i++)
			claim_range(b, want[i].off, want[i].len, exact, &runs,
				    &nruns, &cap);
		if (nruns > 1)
			claim_gaps(b, &runs, &nruns, &cap, max_gap);
		if (nruns)
			r = fetch_runs(b, runs, nruns, max_gap, err);
		free(runs);
		if (r < 0)
			return r;
		if (!wait)
			return 0;
		for (size_t i = 0; i < n; i++) {
			fetch_cache_blob_wait(b->blob, want[i].off,
					      want[i].len);
			if (!fetch_cache_blob_has(b->blob, want[i].off,
						  want[i].len))
				done = false;
		}
		if (done)
			return 0;
		/* another reader's fetch failed: try ourselves */
	}
	return lp_err_set(err, EIO,
			  "concurrent fetches of the range keep "
			  "failing");
}

static int64_t bsrc_pread(struct lp_source *s, void *buf, size_t len,
			  uint64_t off)
{
	struct bsrc *b = s->priv;
	struct lp_err err = { 0 };
	struct fetch_range want;
	int r;

	if (off >= s->size || !len)
		return 0;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	want.off = off;
	want.len = len;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		r = ensure(b, &want, 1, true, UINT64_MAX, &err);
		if (r < 0)
			break;
		r = fetch_cache_blob_read(b->blob, buf, len, off);
		if (r == 1)
			return (int64_t)len;
		if (r < 0) {
			lp_err_set(&err, r, "blob cache read: %s",
				   strerror(-r));
			break;
		}
		/* invalidated between ensure and read */
	}
	/* the cache's disk is full: the bytes still come, straight from the
	 * backend into buf, uncached (the caller verifies them as ever) */
	if ((r == -ENOSPC || r == -EDQUOT) && b->be.read) {
		struct lp_err e2 = { 0 };

		if (!__atomic_exchange_n(&b->said_full, true, __ATOMIC_RELAXED))
			lp_log(LP_LOG_WARN, "%s: %s; reading past the blob "
			       "cache", s->name, err.msg);
		if (b->be.read(b->arg, buf, len, off, &e2) == 0)
			return (int64_t)len;
		lp_err_clear(&err);
		err = e2;
		r = err.code ? err.code : -EIO;
	}
	if (r >= 0)
		r = lp_err_set(&err, EIO, "range keeps disappearing");
	lp_err_wrap(&err, "%s at %llu+%zu", s->name, (unsigned long long)off,
		    len);
	lp_debug("%s", err.msg);
	remember_err(b, &err);
	return r;
}

static void bsrc_close(struct lp_source *s)
{
	struct bsrc *b = s->priv;

	if (!b)
		return;
	fetch_cache_blob_close(b->blob);
	fetch_cache_unref(b->cache);
	if (b->be.free)
		b->be.free(b->arg);
	pthread_mutex_destroy(&b->err_lock);
	free(b);
}

static int bsrc_prefetch_gap(struct lp_source *s, const struct lp_range *r,
			     size_t n, uint64_t max_gap, struct lp_err *err)
{
	struct bsrc *b = s->priv;
	struct fetch_range *fr = lp_xcalloc(n, sizeof(*fr));
	int rc;

	for (size_t i = 0; i < n; i++) {
		fr[i].off = r[i].off;
		fr[i].len = r[i].len;
	}
	rc = ensure(b, fr, n, true, max_gap, err);
	free(fr);
	if (rc < 0)
		return fetch_wrap(rc, err, "%s: prefetch", s->name);
	return 0;
}

static int bsrc_prefetch(struct lp_source *s, const struct lp_range *r,
			 size_t n, struct lp_err *err)
{
	return bsrc_prefetch_gap(s, r, n, UINT64_MAX, err);
}

static int bsrc_invalidate(struct lp_source *s, uint64_t off, uint64_t len)
{
	return fetch_source_invalidate(s, off, len);
}

static bool bsrc_cached(struct lp_source *s, uint64_t off, uint64_t len)
{
	struct bsrc *b = bsrc_of(s);

	if (!b || off >= s->size || !len)
		return true;
	if (len > s->size - off)
		len = s->size - off;
	return fetch_cache_blob_has(b->blob, off, len);
}

static bool bsrc_warming(struct lp_source *s)
{
	struct bsrc *b = s->priv;

	return fetch_cache_blob_warming(b->blob);
}

static const struct lp_source_ops bsrc_ops = {
	.pread = bsrc_pread,
	.close = bsrc_close,
	.prefetch = bsrc_prefetch,
	.prefetch_exact = bsrc_prefetch_gap,
	.invalidate = bsrc_invalidate,
	.warming = bsrc_warming,
	.cached = bsrc_cached,
};

int fetch_blob_source_open_backend(struct fetch_cache *cache,
				   const char *digest, uint64_t size,
				   const struct fetch_source_opts *o,
				   const struct fetch_backend *be, void *arg,
				   struct lp_source **ret, struct lp_err *err)
{
	struct lp_source *s;
	struct bsrc *b;
	int r;

	b = lp_xcalloc(1, sizeof(*b));
	b->be = *be;
	b->arg = arg;
	pthread_mutex_init(&b->err_lock, NULL);
	if (o)
		b->plan = o->plan;
	if (!b->plan.max_gap && !b->plan.min_size && !b->plan.max_size) {
		b->plan.max_gap = 128u << 10;
		b->plan.max_size = 8u << 20;
	}
	r = fetch_cache_blob_open(cache, digest, size, &b->blob, err);
	if (r < 0) {
		if (be->free)
			be->free(arg);
		pthread_mutex_destroy(&b->err_lock);
		free(b);
		return r;
	}
	b->cache = fetch_cache_ref(cache);
	s = lp_xcalloc(1, sizeof(*s));
	s->ops = &bsrc_ops;
	s->size = size;
	s->name = lp_xstrdup(digest);
	s->priv = b;
	*ret = s;
	return 0;
}

int fetch_source_prefetch(struct lp_source *s, const struct fetch_range *r,
			  size_t n, struct lp_err *err)
{
	struct bsrc *b = bsrc_of(s);
	int rc;

	if (!b)
		return lp_err_set(err, EINVAL, "not a fetcher blob source");
	rc = ensure(b, r, n, true, UINT64_MAX, err);
	if (rc < 0)
		return fetch_wrap(rc, err, "%s: prefetch", s->name);
	return 0;
}

int fetch_source_invalidate(struct lp_source *s, uint64_t off, uint64_t len)
{
	struct bsrc *b = bsrc_of(s);

	if (!b)
		return -EINVAL;
	return fetch_cache_blob_invalidate(b->blob, off, len);
}

int fetch_source_warm_begin(struct lp_source *s)
{
	struct bsrc *b = bsrc_of(s);

	return b ? fetch_cache_blob_warm_begin(b->blob) : -EINVAL;
}

uint64_t fetch_source_cached_bytes(struct lp_source *s)
{
	struct bsrc *b = bsrc_of(s);

	return b ? fetch_cache_blob_present_bytes(b->blob) : 0;
}

int fetch_source_last_error(struct lp_source *s, struct lp_err *ret)
{
	struct bsrc *b = bsrc_of(s);

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->err_lock);
	*ret = b->last_err;
	pthread_mutex_unlock(&b->err_lock);
	return ret->code;
}

/* ---- whole-blob fill ----------------------------------------------------- */

struct fill_state {
	struct bsrc *b;
	struct fetch_range *runs;
	size_t n;
	uint64_t pos;
	uint64_t done; /* granule-aligned: [0, done) of the runs committed */
	const int *stop; /* atomic, may be NULL: give up when set */
	int werr;
	struct lp_err err;
};

/* Commits (ok) or unclaims the runs' parts in [f->done, upto). */
static int fill_settle(struct fill_state *f, uint64_t upto, bool ok)
{
	int r = 0;

	for (size_t k = 0; k < f->n; k++) {
		uint64_t a = f->runs[k].off > f->done ? f->runs[k].off
						      : f->done;
		uint64_t e = run_end(&f->runs[k]) < upto ? run_end(&f->runs[k])
							 : upto;

		if (a >= e)
			continue;
		if (!ok || r < 0)
			fetch_cache_blob_unclaim(f->b->blob, a, e - a);
		else
			r = fetch_cache_blob_commit(f->b->blob, a, e - a,
						    &f->err);
	}
	f->done = upto;
	return r;
}

static int fill_cb(const void *data, size_t len, void *arg)
{
	struct fill_state *f = arg;
	const uint8_t *p = data;
	uint32_t g = fetch_cache_granule(f->b->blob);
	uint64_t upto;

	if (f->stop && __atomic_load_n(f->stop, __ATOMIC_ACQUIRE)) {
		f->werr = -ECANCELED;
		return f->werr;
	}
	for (size_t k = 0; k < f->n; k++) {
		uint64_t a = f->runs[k].off > f->pos ? f->runs[k].off : f->pos;
		uint64_t e = run_end(&f->runs[k]);
		int r;

		if (e > f->pos + len)
			e = f->pos + len;
		if (a >= e)
			continue;
		r = fetch_cache_blob_write_raw(f->b->blob, a, p + (a - f->pos),
					       (size_t)(e - a));
		if (r < 0) {
			f->werr = r;
			return r;
		}
	}
	f->pos += len;
	/* every FILL_STEP, what arrived is made visible: a reader of the
	 * blob's start need not wait for its end */
	upto = f->pos / g * g;
	if (upto >= f->done + FILL_STEP) {
		int r = fill_settle(f, upto, true);

		if (r < 0) {
			f->werr = r;
			return r;
		}
	}
	return 0;
}

static void fill_claimed(struct fetch_fill_ctl *ctl)
{
	if (ctl)
		__atomic_store_n(&ctl->claimed, 1, __ATOMIC_RELEASE);
}

/*
 * Streams the whole blob into the cache in one request, committing what
 * arrived every FILL_STEP, so readers follow the stream closely.
 */
int fetch_source_fill(struct lp_source *s, struct fetch_fill_ctl *ctl,
		      struct lp_err *err)
{
	struct bsrc *b = bsrc_of(s);
	struct fill_state f = { 0 };
	int r;

	if (!b || !b->be.stream) {
		fill_claimed(ctl);
		return b ? lp_err_set(err, EOPNOTSUPP,
				      "%s: no streaming backend", s->name)
			 : lp_err_set(err, EINVAL,
				      "not a fetcher blob source");
	}
	f.b = b;
	f.stop = ctl ? &ctl->stop : NULL;
	fetch_cache_blob_claim(b->blob, 0, s->size, &f.runs, &f.n);
	fill_claimed(ctl);
	if (f.n) {
		r = b->be.stream(b->arg, fill_cb, &f, err);
		if (r == 0 && f.pos != s->size)
			r = lp_err_set(err, EIO,
				       "%s: stream ended at %llu of "
				       "%llu bytes",
				       s->name, (unsigned long long)f.pos,
				       (unsigned long long)s->size);
		if (r < 0 && f.werr < 0 && f.err.code && err)
			*err = f.err;
		if (r < 0) {
			fill_settle(&f, s->size, false);
			/* what was shown of a blob that is not the digest's */
			if (r == -EBADMSG)
				fetch_cache_blob_invalidate(b->blob, 0, s->size);
		} else {
			r = fill_settle(&f, s->size, true);
			if (r < 0 && err)
				*err = f.err;
		}
		free(f.runs);
		if (f.werr == -ECANCELED)
			return lp_err_set(err, ECANCELED, "%s: fill stopped",
					  s->name);
		if (r < 0)
			return fetch_wrap(r, err, "%s: fill", s->name);
	}
	/* granules others were fetching: wait for them (or fetch them) */
	{
		struct fetch_range all = { 0, s->size };

		r = ensure(b, &all, 1, true, UINT64_MAX, err);
	}
	return r;
}

/* ---- the registry backend ------------------------------------------------ */

struct reg_backend {
	struct fetch_client *client;
	struct fetch_ref ref;
	char *digest;
	uint64_t size;
};

static int reg_read(void *arg, void *buf, size_t len, uint64_t off,
		    struct lp_err *err)
{
	struct reg_backend *rb = arg;

	return fetch_blob_read(rb->client, &rb->ref, rb->digest, rb->size, buf,
			       len, off, err);
}

static int reg_read_many(void *arg, struct fetch_read *r, size_t n,
			 struct lp_err *err)
{
	struct reg_backend *rb = arg;

	return fetch_blob_read_many(rb->client, &rb->ref, rb->digest, rb->size,
				    r, n, err);
}

static int reg_stream(void *arg,
		      int (*cb)(const void *data, size_t len, void *cbarg),
		      void *cbarg, struct lp_err *err)
{
	struct reg_backend *rb = arg;

	return fetch_blob_stream(rb->client, &rb->ref, rb->digest, cb, cbarg,
				 err);
}

static void reg_free(void *arg)
{
	struct reg_backend *rb = arg;

	fetch_client_unref(rb->client);
	fetch_ref_release(&rb->ref);
	free(rb->digest);
	free(rb);
}

static const struct fetch_backend reg_backend_ops = {
	.read = reg_read,
	.read_many = reg_read_many,
	.stream = reg_stream,
	.free = reg_free,
};

/* Puts the whole granules of bytes [off, off+len) of the blob, which end
 * at its end, into the cache (missing ones only; a failure is no error:
 * they are fetched when read). */
static void keep_tail(struct bsrc *b, const uint8_t *data, uint64_t off,
		      size_t len)
{
	uint32_t g = fetch_cache_granule(b->blob);
	uint64_t a = (off + g - 1) / g * g, end = off + len;
	struct fetch_range *runs = NULL;
	struct lp_err err = { 0 };
	size_t n = 0;

	if (a >= end ||
	    fetch_cache_blob_claim(b->blob, a, end - a, &runs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (fetch_cache_blob_fill(b->blob, runs[i].off,
					  data + (runs[i].off - off),
					  runs[i].len, &err) < 0)
			lp_debug("keeping the tail of a blob: %s", err.msg);
	free(runs);
}

int fetch_blob_source_open(struct fetch_client *c, struct fetch_cache *cache,
			   const struct fetch_ref *ref, const char *digest,
			   uint64_t size, const struct fetch_source_opts *o,
			   struct lp_source **ret, struct lp_err *err)
{
	_cleanup_free_ uint8_t *tail = NULL;
	struct reg_backend *rb;
	size_t tail_len = 0;
	int r;

	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	/* asked for a tail (a probe, which must learn that the registry
	 * serves the blob): the registry; else a blob the cache has seen
	 * has its size there */
	if (!size && o && o->tail) {
		tail = lp_xmalloc(o->tail);
		r = fetch_blob_tail(c, ref, digest, tail, o->tail, &size,
				    &tail_len, err);
		if (r < 0) { /* a registry with no suffix ranges: HEAD */
			lp_debug("%s; asking with a HEAD", err->msg);
			lp_err_clear(err);
			size = 0;
			tail_len = 0;
		}
	} else if (!size &&
		   fetch_cache_blob_known_size(cache, digest, &size) < 0) {
		size = 0;
	}
	if (!size) {
		r = fetch_blob_head(c, ref, digest, &size, err);
		if (r < 0)
			return r;
	}
	rb = lp_xcalloc(1, sizeof(*rb));
	rb->client = fetch_client_ref(c);
	rb->ref.registry = lp_xstrdup(ref->registry);
	rb->ref.host = lp_xstrdup(ref->host);
	rb->ref.repo = lp_xstrdup(ref->repo);
	rb->ref.tag = ref->tag ? lp_xstrdup(ref->tag) : NULL;
	rb->ref.digest = ref->digest ? lp_xstrdup(ref->digest) : NULL;
	rb->digest = lp_xstrdup(digest);
	rb->size = size;
	r = fetch_blob_source_open_backend(cache, digest, size, o,
					   &reg_backend_ops, rb, ret, err);
	if (r == 0 && tail_len)
		keep_tail(bsrc_of(*ret), tail, size - tail_len, tail_len);
	return r;
}
