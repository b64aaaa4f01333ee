/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Background prefetch: one low-priority thread that walks a plan of chunks
 * (the image's "wanted first" files, then optionally everything), fetches
 * them into the sources' caches in batches and decodes + verifies each.
 *
 * Yielding is cooperative: on-demand reads bump an in-flight counter and
 * stamp the time they ended; before every fetch and every decode the
 * thread waits until no read is in flight and none ended in the last
 * idle_ms.  So an on-demand read competes at most with one batch already on
 * the wire (batch_bytes) or one decode already running.
 */
#define LP_MODNAME "prefetch"
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "fs/engine.h"
#ifdef LP_HAVE_RAFS
#include "formats/rafs/rafs.h"
#endif

#define PF_DEFAULT_BATCH (2ull << 20)
#define PF_DEFAULT_IDLE_MS 5
#define PF_DEFAULT_NICE 10
#define PF_MAX_RANGES 256
#define PF_FETCH_TRIES 3
#define PF_LOG_BURST 10
/* how long a priority fetch waits for another process that warms the
 * same blob (the snapshotter, since the layer's Prepare) */
#define PF_WARM_WAIT_NS (60ull * 1000000000ull)
/* a warm batch: its ranges go out together (the source plans parallel
 * requests), so scattered trace files do not cost a round trip each */
#define PF_WARM_STEP (8ull << 20)
/* how often the priority decode looks for newly arrived chunks */
#define PF_ARRIVAL_POLL_NS 10000000ull

/* decode buffers larger than this are freed after each batch */
#define PF_KEEP_BUF (256u << 10)

struct engine_prefetch {
	struct engine_layer **layers;
	uint32_t n_layers;
	bool all;
	uint64_t batch;
	uint64_t idle_ns;
	int nice;
	char *name;
	pthread_t thread;
	bool started;
	/* shared with readers and the stopper: atomics */
	int stop;
	int64_t demand;
	uint64_t last_demand_end; /* monotonic ns */
	/* statistics: atomics */
	uint64_t planned, priority, done, failed, bytes, yields;
	int priority_done, finished;
	uint64_t t_start, t_end; /* monotonic ns */
	uint32_t logged;	 /* failure log lines so far (atomic) */
	uint8_t *buf;		 /* decode buffer (thread only) */
	size_t buf_cap;
	char **trace; /* access trace paths (one allocation each) */
	uint32_t n_trace;
};


static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool stopped(struct engine_prefetch *p)
{
	return __atomic_load_n(&p->stop, __ATOMIC_ACQUIRE);
}

/* Sleeps up to ns in small steps; false if asked to stop meanwhile. */
static bool nap(struct engine_prefetch *p, uint64_t ns)
{
	while (ns && !stopped(p)) {
		uint64_t step = ns < 50000000ull ? ns : 50000000ull;

		sleep_ns(step);
		ns -= step;
	}
	return !stopped(p);
}

void engine_prefetch_demand_begin(struct engine_prefetch *p)
{
	if (p)
		__atomic_add_fetch(&p->demand, 1, __ATOMIC_ACQ_REL);
}

void engine_prefetch_demand_end(struct engine_prefetch *p)
{
	if (!p)
		return;
	__atomic_store_n(&p->last_demand_end, lp_now_ns(), __ATOMIC_RELEASE);
	__atomic_sub_fetch(&p->demand, 1, __ATOMIC_ACQ_REL);
}

/*
 * Waits until no on-demand read is in flight and the last one ended
 * idle_ns ago.  Returns false when the prefetcher is being stopped.
 */
static bool wait_idle(struct engine_prefetch *p)
{
	bool counted = false;

	for (;;) {
		uint64_t last, now;

		if (stopped(p))
			return false;
		if (__atomic_load_n(&p->demand, __ATOMIC_ACQUIRE) > 0) {
			if (!counted) {
				__atomic_add_fetch(&p->yields, 1,
						   __ATOMIC_RELAXED);
				counted = true;
			}
			sleep_ns(1000000);
			continue;
		}
		last = __atomic_load_n(&p->last_demand_end, __ATOMIC_ACQUIRE);
		now = lp_now_ns();
		if (!last || now - last >= p->idle_ns || now < last)
			return true;
		if (!counted) {
			__atomic_add_fetch(&p->yields, 1, __ATOMIC_RELAXED);
			counted = true;
		}
		sleep_ns(p->idle_ns - (now - last));
	}
}

/* ---- plans ------------------------------------------------------------ */

struct chunk_list {
	uint32_t *v;
	uint32_t n;
	size_t cap;
	uint8_t *seen; /* bitmap over the layer's chunks */
};

static void list_add_file(struct chunk_list *cl, const struct model *m,
			  uint32_t ino)
{
	const struct model_inode *in = model_inode(m, ino);

	if (!in || !S_ISREG(in->mode))
		return;
	for (uint32_t i = in->first; i < in->first + in->count; i++) {
		if (i >= m->n_chunks || (cl->seen[i / 8] & (1u << (i % 8))))
			continue;
		cl->seen[i / 8] |= (uint8_t)(1u << (i % 8));
		lp_grow((void **)&cl->v, sizeof(*cl->v), &cl->cap, cl->n + 1);
		cl->v[cl->n++] = i;
	}
}

#ifdef LP_HAVE_RAFS
/* Every regular file at or under ino (a prefetch table names directories
 * for "everything below"), depth first. */
static void list_add_tree(struct chunk_list *cl, const struct model *m,
			  uint32_t ino)
{
	uint32_t *stack = NULL;
	size_t n = 0, cap = 0;
	uint8_t *visited = lp_xcalloc(m->n_inodes / 8 + 1, 1);

	lp_grow((void **)&stack, sizeof(*stack), &cap, 1);
	stack[n++] = ino;
	while (n) {
		uint32_t cur = stack[--n];
		const struct model_inode *in = model_inode(m, cur);

		if (!in || (visited[cur / 8] & (1u << (cur % 8))))
			continue;
		visited[cur / 8] |= (uint8_t)(1u << (cur % 8));
		if (S_ISREG(in->mode)) {
			list_add_file(cl, m, cur);
			continue;
		}
		if (!S_ISDIR(in->mode))
			continue;
		/* push in reverse so children come out in name order */
		for (uint32_t k = in->count; k-- > 0;) {
			uint32_t d = in->first + k;

			if (d >= m->n_dirents)
				continue;
			lp_grow((void **)&stack, sizeof(*stack), &cap, n + 1);
			stack[n++] = m->dirents[d].ino;
		}
	}
	free(stack);
	free(visited);
}
#endif

/* Sorts chunk indices by (blob, stored offset) and drops records that
 * point at the same stored bytes (RAFS deduplicates chunks that way). */
static uint32_t sort_dedup(const struct model *m, uint32_t *v, uint32_t n)
{
	uint32_t out = 0;

	qsort_r(v, n, sizeof(*v), model_chunk_cmp_stored, (void *)m);
	for (uint32_t i = 0; i < n; i++) {
		const struct model_chunk *c = &m->chunks[v[i]];

		if (out) {
			const struct model_chunk *q = &m->chunks[v[out - 1]];

			if (q->blob == c->blob && q->comp_off == c->comp_off &&
			    q->comp_len == c->comp_len && q->len == c->len &&
			    q->aux_off == c->aux_off && q->aux == c->aux &&
			    q->codec == c->codec)
				continue;
		}
		v[out++] = v[i];
	}
	return out;
}

/* Fills cl->seen too, so the "all" pass can skip what this plan has. */
static void plan_into(const struct engine_layer *l, struct chunk_list *cl,
		      uint64_t *ret_range)
{
	const struct model *m = l->model;

	*ret_range = 0;
	if (l->info.landmark == 1 && l->info.prefetch_offset) {
		uint64_t end = l->info.prefetch_offset;
		uint32_t n0 = cl->n;

		if (end > l->src->size)
			end = l->src->size;
		*ret_range = end;
		for (uint32_t i = 0; i < m->n_chunks; i++) {
			const struct model_chunk *c = &m->chunks[i];

			if (c->blob != 0 || c->comp_off >= end ||
			    (cl->seen[i / 8] & (1u << (i % 8))))
				continue;
			cl->seen[i / 8] |= (uint8_t)(1u << (i % 8));
			lp_grow((void **)&cl->v, sizeof(*cl->v), &cl->cap,
				cl->n + 1);
			cl->v[cl->n++] = i;
		}
		if (cl->n > n0) /* else v may be NULL */
			cl->n = n0 + sort_dedup(m, cl->v + n0, cl->n - n0);
	}
#ifdef LP_HAVE_RAFS
	if (l->ops == &rafs_ops) {
		const struct rafs_meta *meta = rafs_ctx_meta(l->ctx);

		if (meta && meta->prefetch_all) {
			list_add_tree(cl, m, MODEL_ROOT_INO);
		} else if (meta) {
			for (uint32_t i = 0; i < meta->n_prefetch; i++)
				list_add_tree(cl, m, meta->prefetch[i]);
		}
	}
#else
	(void)list_add_file;
#endif
}

/* The trace's files that layers[li] serves (the topmost layer with the
 * path wins), in blob order. */
static void plan_trace(const struct engine_prefetch *p, uint32_t li,
		       struct chunk_list *cl)
{
	const struct model *m = p->layers[li]->model;
	uint32_t n0 = cl->n;

	for (uint32_t t = 0; t < p->n_trace; t++) {
		uint32_t ino = model_lookup_path(m, p->trace[t]);
		bool above = false;

		if (!ino)
			continue;
		for (uint32_t up = li + 1; up < p->n_layers && !above; up++)
			above = model_lookup_path(p->layers[up]->model,
						  p->trace[t]) != 0;
		if (!above)
			list_add_file(cl, m, ino);
	}
	if (cl->n > n0) /* else v may be NULL */
		cl->n = n0 + sort_dedup(m, cl->v + n0, cl->n - n0);
}

int engine_prefetch_plan(const struct engine_layer *l, uint32_t **ret,
			 uint32_t *ret_n, uint64_t *ret_range)
{
	struct chunk_list cl = { 0 };

	cl.seen = lp_xcalloc(l->model->n_chunks / 8 + 1, 1);
	plan_into(l, &cl, ret_range);
	free(cl.seen);
	*ret = cl.v;
	*ret_n = cl.n;
	return 0;
}

/* ---- the thread ------------------------------------------------------- */

static void note_failure(struct engine_prefetch *p, struct engine_layer *l,
			 const char *what, const struct lp_err *e, int r)
{
	char ebuf[128];

	/* atomic: the layers' priority fetches run on threads of their own */
	uint32_t n = __atomic_fetch_add(&p->logged, 1, __ATOMIC_RELAXED);

	if (n >= PF_LOG_BURST) {
		if (n == PF_LOG_BURST)
			lp_log(LP_LOG_WARN, "%s: further prefetch failures "
			       "are not logged", p->name);
		return;
	}
	lp_log(LP_LOG_WARN, "%s: prefetch of %s: %s: %s (reads will fetch "
	       "it again)", p->name, l->src->name, what,
	       e->msg[0] ? e->msg : strerror_r(-r, ebuf, sizeof(ebuf)));
}

/* Fetches stored ranges, retrying a few times with backoff. */
static int fetch_ranges(struct engine_prefetch *p, struct engine_layer *l,
			struct lp_source *src, struct lp_range *r, size_t n)
{
	struct lp_err err = { 0 };
	int rc = 0;

	if (!src->ops->prefetch)
		return 0; /* a local file: the decode reads it */
	for (int t = 0; t < PF_FETCH_TRIES; t++) {
		if (!wait_idle(p))
			return -ECANCELED;
		lp_err_clear(&err);
		rc = lp_source_prefetch(src, r, n, &err);
		if (rc == 0 || stopped(p))
			return rc;
		if (t + 1 < PF_FETCH_TRIES &&
		    !nap(p, 500000000ull << t))
			return -ECANCELED;
	}
	note_failure(p, l, "fetch", &err, rc);
	return rc;
}

static int decode_one(struct engine_prefetch *p, struct engine_layer *l,
		      const struct model_chunk *c)
{
	struct lp_err err = { 0 };
	int r;

	if (c->len > ENGINE_MAX_CHUNK)
		return -EFBIG;
	if (c->len > p->buf_cap) {
		free(p->buf);
		p->buf_cap = (size_t)c->len;
		p->buf = lp_xmalloc(p->buf_cap ? p->buf_cap : 1);
	}
	r = engine_read_chunk_rec(l, c, p->buf ? p->buf : (uint8_t *)"", &err);
	if (r == -ENODATA)
		r = 0; /* fetched; nothing to verify against */
	if (r < 0) {
		char what[96];

		snprintf(what, sizeof(what), "chunk at blob offset %llu",
			 (unsigned long long)c->comp_off);
		note_failure(p, l, what, &err, r);
	}
	return r;
}

static void decode_counted(struct engine_prefetch *p, struct engine_layer *l,
			   const struct model_chunk *c)
{
	if (decode_one(p, l, c) < 0) {
		__atomic_add_fetch(&p->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_add_fetch(&p->done, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&p->bytes, c->comp_len, __ATOMIC_RELAXED);
}

/* A big decode buffer is mmap'd: given back between batches, so an idle
 * daemon's RSS is not the largest chunk. */
static void drop_big_buf(struct engine_prefetch *p)
{
	if (p->buf_cap > PF_KEEP_BUF) {
		free(p->buf);
		p->buf = NULL;
		p->buf_cap = 0;
	}
}

/*
 * Works through chunk indices v[0..n) of layer l, in order: a batch of
 * neighbours in one blob is fetched in one go, then decoded one by one.
 */
static void run_list(struct engine_prefetch *p, struct engine_layer *l,
		     const uint32_t *v, uint32_t n)
{
	const struct model *m = l->model;
	struct lp_range *ranges = lp_xcalloc(PF_MAX_RANGES, sizeof(*ranges));
	uint32_t i = 0;

	while (i < n && !stopped(p)) {
		const struct model_chunk *c0 = &m->chunks[v[i]];
		struct lp_source *src = NULL;
		struct lp_err err = { 0 };
		uint64_t lo = c0->comp_off, hi = c0->comp_off;
		uint32_t j = i, k = 0;
		int rc;

		while (j < n && k < PF_MAX_RANGES) {
			const struct model_chunk *c = &m->chunks[v[j]];
			uint64_t end = c->comp_off + c->comp_len;

			if (c->blob != c0->blob)
				break;
			if (j > i && ((end > hi ? end : hi) -
				      (c->comp_off < lo ? c->comp_off : lo)) >
					     p->batch)
				break;
			if (c->comp_off < lo)
				lo = c->comp_off;
			if (end > hi)
				hi = end;
			ranges[k].off = c->comp_off;
			ranges[k].len = c->comp_len;
			k++;
			j++;
		}
		rc = engine_blob_source(l, c0->blob, &src, &err);
		if (rc == 0) {
			/* comp_len of a gzip member is an upper bound */
			for (uint32_t q = 0; q < k; q++) {
				if (ranges[q].off >= src->size)
					ranges[q].len = 0;
				else if (ranges[q].len >
					 src->size - ranges[q].off)
					ranges[q].len =
						src->size - ranges[q].off;
			}
			rc = fetch_ranges(p, l, src, ranges, k);
		} else {
			note_failure(p, l, "opening the blob", &err, rc);
		}
		for (uint32_t q = i; q < j && rc >= 0; q++) {
			if (!wait_idle(p))
				break;
			decode_counted(p, l, &m->chunks[v[q]]);
		}
		drop_big_buf(p);
		if (rc < 0 && rc != -ECANCELED)
			__atomic_add_fetch(&p->failed, j - i,
					   __ATOMIC_RELAXED);
		i = j;
	}
	free(ranges);
}

/*
 * Fetches every chunk of v[0..n) of layer l at once, without yielding to
 * on-demand reads: the priority files are what the workload reads next,
 * so they go out at the link's full rate, merged and in parallel (the
 * source plans the requests).  run_list then finds them cached.
 */
static void fetch_now(struct engine_prefetch *p, struct engine_layer *l,
		      const uint32_t *v, uint32_t n)
{
	const struct model *m = l->model;
	struct lp_range *r = lp_xcalloc(n ? n : 1, sizeof(*r));
	uint32_t i = 0;

	while (i < n && !stopped(p)) {
		uint32_t blob = m->chunks[v[i]].blob, j = i, k = 0;
		struct lp_source *src = NULL;
		struct lp_err err = { 0 };
		int rc;

		while (j < n && m->chunks[v[j]].blob == blob)
			j++;
		rc = engine_blob_source(l, blob, &src, &err);
		if (rc < 0) {
			note_failure(p, l, "opening the blob", &err, rc);
			i = j;
			continue;
		}
		for (uint32_t q = i; src->ops->prefetch && q < j; q++) {
			const struct model_chunk *c = &m->chunks[v[q]];

			if (c->comp_off >= src->size)
				continue;
			r[k].off = c->comp_off;
			r[k].len = c->comp_len < src->size - c->comp_off
					   ? c->comp_len
					   : src->size - c->comp_off;
			k++;
		}
		if (k) {
			rc = lp_source_prefetch(src, r, k, &err);
			if (rc < 0)
				note_failure(p, l, "fetch", &err, rc);
		}
		i = j;
	}
	free(r);
}

/* One layer's priority fetch: its landmark range, then its files. */
struct urgent_job {
	struct engine_prefetch *p;
	struct engine_layer *l;
	struct chunk_list *list;
	uint64_t range;
	pthread_t thread;
	bool started;
	int done; /* atomic: the fetch is over (whatever came of it) */
};

/*
 * Waits while another process warms l's blob: what it fetches lands in
 * the cache we share, so fetching it here too would only halve the rate
 * of both.  On-demand reads do not wait.
 */
static void wait_warmer(struct engine_prefetch *p, struct engine_layer *l)
{
	uint64_t t0 = lp_now_ns(), waited = 0;

	if (!lp_source_warming(l->src))
		return;
	lp_debug("%s: %s is being fetched by another process: waiting",
		 p->name, l->src->name);
	while (waited < PF_WARM_WAIT_NS && nap(p, 20000000ull) &&
	       lp_source_warming(l->src))
		waited = lp_now_ns() - t0;
	lp_debug("%s: %s: waited %.2f s for the other process", p->name,
		 l->src->name, lp_ms_since(t0) / 1e3);
}

static void *urgent_main(void *arg)
{
	struct urgent_job *j = arg;
	struct engine_layer *l = j->l;

	if (j->range || j->list->n)
		wait_warmer(j->p, l);
	if (j->range && l->src->ops->prefetch && !stopped(j->p)) {
		struct lp_range r = { 0, j->range };
		struct lp_err err = { 0 };
		int rc;

		lp_debug("%s: prefetching [0, %llu) of %s", j->p->name,
			 (unsigned long long)j->range, l->src->name);
		rc = lp_source_prefetch(l->src, &r, 1, &err);
		if (rc < 0)
			note_failure(j->p, l, "fetch", &err, rc);
	}
	fetch_now(j->p, l, j->list->v, j->list->n);
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* True once chunk c's stored bytes are in the cache (or local). */
static bool chunk_arrived(struct engine_layer *l, const struct model_chunk *c)
{
	struct lp_source *src = NULL;
	struct lp_err err = { 0 };

	if (engine_blob_source(l, c->blob, &src, &err) < 0)
		return true; /* the decode will say why */
	return lp_source_cached(src, c->comp_off, c->comp_len);
}

/*
 * Decodes the layers' priority chunks as their stored bytes arrive, while
 * the layers' jobs (or the process that warms a blob) fetch them: a chunk
 * is taken once its range is in the cache, every chunk of a layer once
 * its job is over.  So decoding runs alongside the transfer rather than
 * after it.  The workload reads these files next: no yielding.
 */
static void decode_arrived(struct engine_prefetch *p, struct urgent_job *jobs,
			   uint32_t nj)
{
	/* per layer, how many of its list are decoded: the list is in blob
	 * order, the order the bytes come in, so they are taken in order */
	uint32_t *next = lp_xcalloc(nj ? nj : 1, sizeof(*next));

	while (!stopped(p)) {
		bool progress = false, left = false;

		for (uint32_t li = 0; li < nj && !stopped(p); li++) {
			struct engine_layer *l = jobs[li].l;
			const struct chunk_list *cl = jobs[li].list;
			bool over = __atomic_load_n(&jobs[li].done,
						    __ATOMIC_ACQUIRE);

			for (; next[li] < cl->n && !stopped(p); next[li]++) {
				const struct model_chunk *c =
					&l->model->chunks[cl->v[next[li]]];

				if (!over && !chunk_arrived(l, c)) {
					left = true;
					break;
				}
				progress = true;
				decode_counted(p, l, c);
			}
		}
		if (!left)
			break;
		if (!progress)
			nap(p, PF_ARRIVAL_POLL_NS);
	}
	drop_big_buf(p);
	free(next);
}

/* The size of the next warm batch: small while others are busy. */
static uint64_t warm_step(const struct engine_warm_opts *o)
{
	uint64_t step = o && o->step ? o->step : PF_WARM_STEP;
	uint64_t small = o && o->busy_step ? o->busy_step : 256u << 10;

	if (o && o->busy && o->busy(o->arg) && small < step)
		return small;
	return step;
}

/* Sends one warm batch; counts a failure (logged) in *failed. */
static void warm_batch(struct engine_prefetch *p, struct engine_layer *l,
		       const struct lp_range *r, size_t n, uint32_t *failed)
{
	struct lp_err err = { 0 };
	int rc;

	if (!n)
		return;
	rc = lp_source_prefetch(l->src, r, n, &err);
	if (rc < 0) {
		note_failure(p, l, "fetch", &err, rc);
		(*failed)++;
	}
}

/*
 * A warm in batches taken in order by WARM_THREADS workers: while one
 * batch's last bytes arrive the next one's requests are out, so the link
 * does not idle between batches.
 */
#define WARM_THREADS 2

struct warm_run {
	struct engine_prefetch *p;
	struct engine_layer *l;
	const struct engine_warm_opts *o;
	const struct chunk_list *cl;
	uint64_t range; /* the landmark range [0, range) */
	pthread_mutex_t lock;
	uint64_t off;	/* next landmark byte (lock) */
	uint32_t i;	/* next chunk of cl (lock) */
	uint64_t bytes; /* (lock) */
	uint32_t failed; /* (lock) */
};

/* The next batch into r: a step of the landmark range, else the next
 * trace chunks of the blob within a step.  0 when none is left. */
static size_t warm_take(struct warm_run *w, struct lp_range *r)
{
	const struct model *m = w->l->model;
	uint64_t size = w->l->src->size, step, lo = 0;
	size_t n = 0;

	pthread_mutex_lock(&w->lock);
	step = warm_step(w->o);
	if (w->off < w->range) {
		r[0].off = w->off;
		r[0].len = w->range - w->off < step ? w->range - w->off : step;
		w->off += r[0].len;
		w->bytes += r[0].len;
		pthread_mutex_unlock(&w->lock);
		return 1;
	}
	for (; w->i < w->cl->n; w->i++) {
		const struct model_chunk *c = &m->chunks[w->cl->v[w->i]];
		uint64_t len = c->comp_len;

		if (c->blob != 0 || c->comp_off < w->range ||
		    c->comp_off >= size)
			continue;
		if (len > size - c->comp_off)
			len = size - c->comp_off;
		if (n && (n == PF_MAX_RANGES || c->comp_off + len - lo > step))
			break;
		if (!n)
			lo = c->comp_off;
		r[n].off = c->comp_off;
		r[n].len = len;
		n++;
		w->bytes += len;
	}
	pthread_mutex_unlock(&w->lock);
	return n;
}

static void *warm_worker(void *arg)
{
	struct warm_run *w = arg;
	struct lp_range *r = lp_xcalloc(PF_MAX_RANGES, sizeof(*r));
	size_t n;

	while ((n = warm_take(w, r))) {
		uint32_t failed = 0;

		warm_batch(w->p, w->l, r, n, &failed);
		if (failed) {
			pthread_mutex_lock(&w->lock);
			w->failed += failed;
			pthread_mutex_unlock(&w->lock);
		}
	}
	free(r);
	return NULL;
}

int engine_warm(struct engine_layer *l, const struct engine_warm_opts *o,
		struct engine_warm_stats *ret)
{
	struct engine_layer *ls[1] = { l };
	struct engine_prefetch p = { 0 };
	struct chunk_list cl = { 0 };
	struct engine_warm_stats st = { 0 };
	struct warm_run w = { 0 };
	pthread_t th[WARM_THREADS - 1];
	unsigned started = 0;
	uint32_t n_land;

	p.layers = ls;
	p.n_layers = 1;
	p.name = l->src->name;
	p.trace = o ? (char **)o->trace : NULL;
	p.n_trace = o ? o->n_trace : 0;
	cl.seen = lp_xcalloc(l->model->n_chunks / 8 + 1, 1);
	plan_into(l, &cl, &st.range);
	n_land = cl.n;
	plan_trace(&p, 0, &cl);
	st.chunks = cl.n;
	st.trace_chunks = cl.n - n_land;
	if (!l->src->ops->prefetch)
		goto out; /* a local file */
	if (st.range > l->src->size)
		st.range = l->src->size;
	/* the landmark range in steps (small ones while o->busy says more
	 * urgent fetches, a probe reading a TOC, share the link), then the
	 * trace's files of this blob, neighbours batched */
	w.p = &p;
	w.l = l;
	w.o = o;
	w.cl = &cl;
	w.range = st.range;
	pthread_mutex_init(&w.lock, NULL);
	while (started < WARM_THREADS - 1 &&
	       lp_thread_create(&th[started], NULL, warm_worker, &w) == 0)
		started++;
	warm_worker(&w);
	for (unsigned t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&w.lock);
	st.bytes = w.bytes;
	st.failed = w.failed;
out:
	free(cl.v);
	free(cl.seen);
	if (ret)
		*ret = st;
	return st.failed ? -EIO : 0;
}


static void *prefetch_main(void *arg)
{
	struct engine_prefetch *p = arg;
	struct chunk_list *lists;
	uint64_t planned = 0, prio = 0;

	if (p->nice > 0 &&
	    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), p->nice) < 0)
		lp_debug("setpriority: %s", strerror(errno));
#ifdef SYS_ioprio_set
	/* best-effort class, lowest level, for the blob cache's disk I/O */
	syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */,
		(int)syscall(SYS_gettid), (2 << 13) | 7);
#endif

	lists = lp_xcalloc(p->n_layers, sizeof(*lists));
	/*
	 * Priority part: landmark ranges, prefetch tables and the access
	 * trace.  Fetched for every layer at once and decoded and verified
	 * as the bytes arrive, without yielding (the workload is about to
	 * read them).
	 */
	{
		struct urgent_job *jobs = lp_xcalloc(p->n_layers ? p->n_layers
								 : 1,
						     sizeof(*jobs));
		uint32_t nj = 0;

		for (uint32_t li = 0; li < p->n_layers && !stopped(p); li++) {
			struct engine_layer *l = p->layers[li];

			lists[li].seen =
				lp_xcalloc(l->model->n_chunks / 8 + 1, 1);
			plan_into(l, &lists[li], &jobs[li].range);
			plan_trace(p, li, &lists[li]);
			prio += lists[li].n;
			jobs[li].p = p;
			jobs[li].l = l;
			jobs[li].list = &lists[li];
			nj = li + 1;
		}
		__atomic_store_n(&p->priority, prio, __ATOMIC_RELAXED);
		__atomic_store_n(&p->planned, prio, __ATOMIC_RELAXED);
		/* the layers' priority fetches go out together, a thread
		 * each; this one decodes what they bring meanwhile */
		for (uint32_t li = 0; li < nj; li++) {
			jobs[li].started = pthread_create(&jobs[li].thread,
							  NULL, urgent_main,
							  &jobs[li]) == 0;
			if (!jobs[li].started)
				urgent_main(&jobs[li]);
		}
		decode_arrived(p, jobs, nj);
		for (uint32_t li = 0; li < nj; li++)
			if (jobs[li].started)
				pthread_join(jobs[li].thread, NULL);
		free(jobs);
	}
	planned = prio;
	if (!stopped(p)) {
		__atomic_store_n(&p->priority_done, 1, __ATOMIC_RELEASE);
		if (prio)
			lp_log(LP_LOG_INFO, "%s: prefetched the priority files:"
			       " %llu chunks in %.2f s", p->name,
			       (unsigned long long)prio,
			       lp_ms_since(p->t_start) / 1e3);
	}
	/* everything else, layer by layer, in blob order */
	for (uint32_t li = 0; p->all && li < p->n_layers && !stopped(p);
	     li++) {
		struct engine_layer *l = p->layers[li];
		const struct model *m = l->model;
		uint32_t *v = lp_xcalloc(m->n_chunks ? m->n_chunks : 1,
					 sizeof(*v));
		uint32_t n = 0;

		for (uint32_t i = 0; i < m->n_chunks; i++)
			if (!(lists[li].seen[i / 8] & (1u << (i % 8))))
				v[n++] = i;
		n = sort_dedup(m, v, n);
		planned += n;
		__atomic_store_n(&p->planned, planned, __ATOMIC_RELAXED);
		run_list(p, l, v, n);
		free(v);
	}
	for (uint32_t li = 0; li < p->n_layers; li++) {
		free(lists[li].v);
		free(lists[li].seen);
	}
	free(lists);
	free(p->buf);
	p->buf = NULL;
	p->buf_cap = 0;
#ifdef __GLIBC__
	/* the decode buffers and plans are gone: give the pages back (the
	 * daemon lives on; its RSS should be what it keeps) */
	malloc_trim(0);
#endif
	__atomic_store_n(&p->t_end, lp_now_ns(), __ATOMIC_RELEASE);
	if (!stopped(p)) {
		__atomic_store_n(&p->finished, 1, __ATOMIC_RELEASE);
		lp_log(LP_LOG_INFO,
		       "%s: prefetch done: %llu chunks (%llu stored bytes) in "
		       "%.2f s, %llu failed, yielded %llu times", p->name,
		       (unsigned long long)p->done,
		       (unsigned long long)p->bytes,
		       (double)(p->t_end - p->t_start) / 1e9,
		       (unsigned long long)p->failed,
		       (unsigned long long)p->yields);
	}
	return NULL;
}

static bool layer_has_priority(const struct engine_layer *l)
{
	if (l->info.landmark == 1 && l->info.prefetch_offset)
		return true;
#ifdef LP_HAVE_RAFS
	if (l->ops == &rafs_ops) {
		const struct rafs_meta *meta = rafs_ctx_meta(l->ctx);

		return meta && (meta->prefetch_all || meta->n_prefetch);
	}
#endif
	return false;
}

int engine_prefetch_start(struct engine_layer *const *layers, uint32_t n,
			  const struct engine_prefetch_opts *o,
			  struct engine_prefetch **ret, struct lp_err *err)
{
	static const struct engine_prefetch_opts none = { 0 };
	struct engine_prefetch *p;
	bool any = false;
	int r;

	if (!o)
		o = &none;
	for (uint32_t i = 0; i < n; i++)
		any |= layer_has_priority(layers[i]);
	if (!any && !o->all && !o->n_trace) {
		*ret = NULL;
		return 0;
	}
	p = lp_xcalloc(1, sizeof(*p));
	p->layers = lp_xcalloc(n ? n : 1, sizeof(*p->layers));
	memcpy(p->layers, layers, n * sizeof(*layers));
	p->n_layers = n;
	p->all = o->all;
	p->batch = o->batch_bytes ? o->batch_bytes : PF_DEFAULT_BATCH;
	p->idle_ns = (uint64_t)(o->idle_ms ? o->idle_ms : PF_DEFAULT_IDLE_MS) *
		     1000000ull;
	p->nice = o->nice == 0 ? PF_DEFAULT_NICE : o->nice;
	p->name = lp_xstrdup(o->name ? o->name : "image");
	if (o->n_trace) {
		p->trace = lp_xcalloc(o->n_trace, sizeof(*p->trace));
		for (uint32_t i = 0; i < o->n_trace; i++)
			p->trace[i] = lp_xstrdup(o->trace[i]);
		p->n_trace = o->n_trace;
	}
	p->t_start = lp_now_ns();
	/* the thread takes no signals: SIGTERM must reach the FUSE loop */
	r = lp_thread_create(&p->thread, NULL, prefetch_main, p);
	if (r) {
		for (uint32_t i = 0; i < p->n_trace; i++)
			free(p->trace[i]);
		free(p->trace);
		free(p->layers);
		free(p->name);
		free(p);
		return lp_err_set(err, r, "starting the prefetch thread: %s",
				  strerror(r));
	}
	p->started = true;
	*ret = p;
	return 0;
}

void engine_prefetch_stop(struct engine_prefetch *p)
{
	if (!p)
		return;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	if (p->started)
		pthread_join(p->thread, NULL);
	free(p->layers);
	free(p->name);
	free(p->buf);
	for (uint32_t i = 0; i < p->n_trace; i++)
		free(p->trace[i]);
	free(p->trace);
	free(p);
}

void engine_prefetch_get_stats(struct engine_prefetch *p,
			       struct engine_prefetch_stats *ret)
{
	uint64_t end;

	memset(ret, 0, sizeof(*ret));
	if (!p)
		return;
	ret->chunks_planned = __atomic_load_n(&p->planned, __ATOMIC_RELAXED);
	ret->chunks_priority = __atomic_load_n(&p->priority, __ATOMIC_RELAXED);
	ret->chunks_done = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
	ret->chunks_failed = __atomic_load_n(&p->failed, __ATOMIC_RELAXED);
	ret->bytes_stored = __atomic_load_n(&p->bytes, __ATOMIC_RELAXED);
	ret->yields = __atomic_load_n(&p->yields, __ATOMIC_RELAXED);
	ret->priority_done =
		__atomic_load_n(&p->priority_done, __ATOMIC_ACQUIRE);
	ret->finished = __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE);
	end = __atomic_load_n(&p->t_end, __ATOMIC_ACQUIRE);
	ret->seconds = (double)((end ? end : lp_now_ns()) - p->t_start) / 1e9;
}
