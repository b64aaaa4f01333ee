/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE low-level server: an immutable model served read-only.
 *
 * Threading: libfuse runs the handlers on up to ten worker threads.  The
 * model is never written after fsrv_new(), so the tree ops read it without
 * a lock.  The only shared mutable state is the decoded-chunk cache (one
 * mutex, one condvar) and a few statistics counters (atomics).
 */
#define LP_MODNAME "fuse"
#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>

#include "fs/decoded.h"
#include "fs/fuse.h"

#define FSRV_MAX_READ (1u << 20)
#define FSRV_SPLICE_READ 1015808 /* 1 MiB - 32 KiB */
#define FSRV_STR2(x) #x
#define FSRV_STR(x) FSRV_STR2(x)
#define FSRV_DEFAULT_CACHE (32ull << 20)
/* with a decoded store, stored chunks leave memory at once */
#define FSRV_DEFAULT_CACHE_STORE (8ull << 20)
#define FSRV_DEFAULT_TIMEOUT 86400.0
#define FSRV_BLOCK 4096
#define FSRV_LOG_BURST 20
/* Largest chunk decoded into memory (the engine's limit too). */
#define FSRV_MAX_CHUNK (256ull << 20)
/* Chunks queued for read-ahead at most (more are dropped). */
#define FSRV_RA_QUEUE 8

enum cent_state { CENT_LOADING, CENT_READY, CENT_FAILED };

/* One decoded chunk, or one being decoded. */
struct cent {
	uint32_t idx;
	uint8_t state;	 /* protected by cache.lock */
	bool in_table;	 /* protected by cache.lock */
	int error;	 /* CENT_FAILED: -errno */
	uint32_t refs;	 /* protected by cache.lock */
	uint8_t *data;	 /* CENT_READY: len bytes, immutable */
	uint64_t len;
	char *why;	 /* CENT_FAILED: the source's message */
	bool ra_mark;	 /* read ahead, not yet read: reading it reads
			    ahead again; protected by cache.lock */
	bool stored;	 /* in the decoded store: free when unused;
			    protected by cache.lock */
	struct cent *hnext;	     /* hash chain; protected by cache.lock */
	struct cent *lprev, *lnext; /* LRU (READY entries in the table) */
};

struct chunk_cache {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* an entry left CENT_LOADING */
	struct cent **buckets; /* protected by lock */
	size_t n_buckets;      /* a power of two */
	struct cent lru;       /* sentinel: lru.lnext is the most recent */
	uint64_t bytes;	       /* READY bytes in the table; protected by lock */
	uint64_t entries;      /* protected by lock */
	uint64_t cap;
};

struct fsrv {
	const struct model *m;
	const struct fsrv_source_ops *ops;
	void *priv;
	char *name;
	char *fsname, *subtype;
	bool allow_other, debug;
	void (*on_open)(void *arg, uint32_t ino);
	void *on_open_arg;
	void (*on_exit)(void *arg);
	void *on_exit_arg;
	int exit_called;     /* atomic: on_exit ran */
	int run_done;	     /* atomic: fsrv_run's loop returned */
	unsigned max_idle_threads;
	double timeout;
	uint64_t total_blocks; /* statfs: sum of file blocks */
	struct chunk_cache cache;
	struct fuse_session *se;
	bool mounted;
	char *taken_mp; /* fsrv_takeover: the mountpoint we did not mount */
	uint32_t read_ahead_kb;
	char *bdi_ra_path; /* sysfs read_ahead_kb of the mount, or NULL */
	int ra_tuned;	   /* atomic: bdi_ra_path written */
	/* read-error log lines: at most FSRV_LOG_BURST per second */
	pthread_mutex_t log_lock;
	int64_t log_sec;	/* protected by log_lock */
	uint32_t log_count;	/* protected by log_lock */
	uint64_t log_dropped;	/* protected by log_lock */
	/* statistics: atomics */
	uint64_t n_reads, n_read_bytes, n_read_errors;
	uint64_t n_hits, n_misses, n_waits;
	uint64_t n_lookups;
	uint64_t n_readahead;
	uint64_t n_store_hits;
	/* read-ahead: one thread decoding the next chunk of files read
	 * sequentially, started by fsrv_run */
	pthread_t ra_thread;
	bool ra_started;
	bool ra_enabled;
	pthread_mutex_t ra_lock;
	pthread_cond_t ra_cond;
	uint32_t ra_q[FSRV_RA_QUEUE]; /* protected by ra_lock */
	uint32_t ra_head, ra_n;	      /* protected by ra_lock */
	bool ra_stop;		      /* protected by ra_lock */
	/* the decoded store: one segment per model blob, opened on first
	 * use; seg_state: 0 not yet, 1 open, -1 not usable (atomics) */
	struct dstore *store;
	struct dstore_seg **segs;
	int8_t *seg_state;
	pthread_mutex_t seg_lock;
	uint64_t n_store_warn; /* atomic: store read failures logged */
};

#define STAT_ADD(s, field, v)                                                  \
	__atomic_add_fetch(&(s)->field, (v), __ATOMIC_RELAXED)
#define STAT_SUB(s, field, v)                                                  \
	__atomic_sub_fetch(&(s)->field, (v), __ATOMIC_RELAXED)
#define STAT_GET(s, field) __atomic_load_n(&(s)->field, __ATOMIC_RELAXED)

/* ---- decoded-chunk cache ------------------------------------------------ */

static void cache_init(struct chunk_cache *c, uint64_t cap, uint32_t n_chunks)
{
	size_t n = 64;

	/* about one bucket per chunk that fits, bounded */
	while (n < n_chunks && n < (1u << 16))
		n <<= 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->n_buckets = n;
	c->buckets = lp_xcalloc(n, sizeof(*c->buckets));
	c->lru.lnext = c->lru.lprev = &c->lru;
	c->cap = cap;
}

static void cent_free(struct cent *e)
{
	free(e->data);
	free(e->why);
	free(e);
}

static void cache_release(struct chunk_cache *c)
{
	if (!c->buckets)
		return;
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct cent *e = c->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			cent_free(e);
		}
	}
	free(c->buckets);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
}

static struct cent **cache_slot(struct chunk_cache *c, uint32_t idx)
{
	uint32_t h = idx * 2654435761u;

	return &c->buckets[(h ^ (h >> 16)) & (c->n_buckets - 1)];
}

static void lru_unlink(struct cent *e)
{
	e->lprev->lnext = e->lnext;
	e->lnext->lprev = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push_front(struct chunk_cache *c, struct cent *e)
{
	e->lnext = c->lru.lnext;
	e->lprev = &c->lru;
	c->lru.lnext->lprev = e;
	c->lru.lnext = e;
}

/* Takes e out of the hash table (and the LRU); caller holds the lock. */
static void cache_unhash(struct chunk_cache *c, struct cent *e)
{
	struct cent **p = cache_slot(c, e->idx);

	while (*p != e)
		p = &(*p)->hnext;
	*p = e->hnext;
	e->hnext = NULL;
	e->in_table = false;
	if (e->lnext) {
		lru_unlink(e);
		c->bytes -= e->len;
		c->entries--;
	}
}

/*
 * Drops least recently used, unreferenced entries until under the cap.  The
 * most recent entry stays even if it alone is over the cap, so 4 KiB reads
 * of a chunk larger than the cache do not decode it every time.
 */
static void cache_evict(struct chunk_cache *c)
{
	struct cent *e = c->lru.lprev;

	while (c->bytes > c->cap && e != &c->lru && e != c->lru.lnext) {
		struct cent *prev = e->lprev;

		if (e->refs == 0) {
			cache_unhash(c, e);
			cent_free(e);
		}
		e = prev;
	}
}

static void cache_put(struct chunk_cache *c, struct cent *e)
{
	pthread_mutex_lock(&c->lock);
	if (--e->refs == 0) {
		if (!e->in_table) {
			cent_free(e);
		} else if (e->stored) {
			/* the store (and the page cache) serve it now */
			cache_unhash(c, e);
			cent_free(e);
		} else if (c->bytes > c->cap) {
			cache_evict(c);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* A decoded chunk in the cache, with a reference, or NULL. */
static struct cent *cache_peek(struct fsrv *s, uint32_t idx)
{
	struct chunk_cache *c = &s->cache;
	struct cent *e;

	pthread_mutex_lock(&c->lock);
	for (e = *cache_slot(c, idx); e && e->idx != idx; e = e->hnext)
		;
	if (e && e->state == CENT_READY) {
		e->refs++;
		lru_unlink(e);
		lru_push_front(c, e);
	} else {
		e = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (e)
		STAT_ADD(s, n_hits, 1);
	return e;
}

/* ---- the decoded store --------------------------------------------------- */

/* The store segment for chunk idx, or NULL (no store, no digest, ...). */
static struct dstore_seg *chunk_seg(struct fsrv *s, uint32_t idx)
{
	const struct model_chunk *c = &s->m->chunks[idx];
	struct lp_err err = { 0 };
	struct dstore_seg *g = NULL;
	uint32_t b = c->blob;
	int8_t st;

	if (!s->store || c->digest_alg == MODEL_DIGEST_NONE ||
	    b >= s->m->n_blobs)
		return NULL;
	st = __atomic_load_n(&s->seg_state[b], __ATOMIC_ACQUIRE);
	if (st)
		return st > 0 ? s->segs[b] : NULL;
	pthread_mutex_lock(&s->seg_lock);
	st = s->seg_state[b];
	if (!st) {
		const char *id = model_str(s->m, s->m->blobs[b].id);

		if (dstore_segment(s->store, id, &g, &err) == 0) {
			s->segs[b] = g;
			st = 1;
		} else {
			/* a local file's blob has no digest: quietly none */
			if (err.code != -EINVAL)
				lp_log(LP_LOG_WARN, "%s%s%s (not kept decoded)",
				       s->name ? s->name : "",
				       s->name ? ": " : "", err.msg);
			st = -1;
		}
		__atomic_store_n(&s->seg_state[b], st, __ATOMIC_RELEASE);
	}
	g = st > 0 ? s->segs[b] : NULL;
	pthread_mutex_unlock(&s->seg_lock);
	return g;
}

static bool store_has(struct fsrv *s, uint32_t idx)
{
	struct dstore_seg *g = chunk_seg(s, idx);

	return g && dstore_has(g, &s->m->chunks[idx]);
}

/*
 * Reads part of chunk idx from the store: 0, or < 0 when it is not there
 * or did not check out (then the caller decodes it again).
 */
static int store_read(struct fsrv *s, uint32_t idx, uint64_t skip,
		      uint8_t *out, size_t n)
{
	struct dstore_seg *g = chunk_seg(s, idx);
	struct lp_err err = { 0 };
	int r;

	if (!g)
		return -ENOENT;
	r = dstore_read(g, &s->m->chunks[idx], skip, out, n, &err);
	if (r < 0 && r != -ENOENT &&
	    __atomic_add_fetch(&s->n_store_warn, 1, __ATOMIC_RELAXED) <= 100)
		lp_log(LP_LOG_WARN, "%s%s%s; decoding the chunk again",
		       s->name ? s->name : "", s->name ? ": " : "", err.msg);
	return r;
}

/* Keeps a chunk that just verified; true if the store has it now. */
static bool store_put(struct fsrv *s, uint32_t idx, const void *data)
{
	struct dstore_seg *g = chunk_seg(s, idx);
	struct lp_err err = { 0 };

	if (!g)
		return false;
	if (dstore_put(g, &s->m->chunks[idx], data, &err) == 0)
		return true;
	if (err.code != -ENOSPC)
		lp_debug("chunk %u: %s", idx, err.msg);
	return false;
}

/*
 * Returns chunk idx decoded, with a reference the caller drops with
 * cache_put().  One caller decodes; callers that want the same chunk
 * meanwhile wait for it.  On failure returns -errno and, if why is given,
 * copies the source's message.
 */
static int cache_get(struct fsrv *s, uint32_t idx, bool ra,
		     struct cent **ret, bool *ret_loaded, char *why,
		     size_t why_size)
{
	struct chunk_cache *c = &s->cache;
	const struct model_chunk *ch = &s->m->chunks[idx];
	struct lp_err err = { 0 };
	struct cent *e, **slot;
	char ebuf[128];
	uint8_t *buf;
	int r, st;

	if (ret_loaded)
		*ret_loaded = false;
	pthread_mutex_lock(&c->lock);
	slot = cache_slot(c, idx);
	for (e = *slot; e && e->idx != idx; e = e->hnext)
		;
	if (e) {
		e->refs++;
		if (e->state == CENT_READY) {
			lru_unlink(e);
			lru_push_front(c, e);
			pthread_mutex_unlock(&c->lock);
			STAT_ADD(s, n_hits, 1);
			*ret = e;
			return 0;
		}
		STAT_ADD(s, n_waits, 1);
		while (e->state == CENT_LOADING)
			pthread_cond_wait(&c->cond, &c->lock);
		st = e->state; /* final: READY or FAILED */
		pthread_mutex_unlock(&c->lock);
		if (st == CENT_READY) {
			*ret = e;
			return 0;
		}
		r = e->error;
		if (why)
			snprintf(why, why_size, "%s", e->why ? e->why : "");
		cache_put(c, e);
		return r;
	}
	e = lp_xcalloc(1, sizeof(*e));
	e->idx = idx;
	e->len = ch->len;
	e->state = CENT_LOADING;
	e->refs = 1;
	e->in_table = true;
	e->ra_mark = ra;
	e->hnext = *slot;
	*slot = e;
	pthread_mutex_unlock(&c->lock);
	STAT_ADD(s, n_misses, 1);

	if (ch->len > FSRV_MAX_CHUNK) {
		buf = NULL;
		r = lp_err_set(&err, EFBIG, "chunk of %llu bytes is over the "
			       "%llu limit", (unsigned long long)ch->len,
			       (unsigned long long)FSRV_MAX_CHUNK);
	} else {
		buf = lp_xmalloc(ch->len ? (size_t)ch->len : 1);
		r = s->ops->read_chunk(s->priv, idx, buf, &err);
	}

	pthread_mutex_lock(&c->lock);
	if (r < 0) {
		free(buf);
		e->state = CENT_FAILED;
		e->error = r;
		e->why = lp_xstrdup(err.msg[0] ? err.msg
					       : strerror_r(-r, ebuf,
							    sizeof(ebuf)));
		/* failures are not cached: the next read tries again */
		cache_unhash(c, e);
		if (why)
			snprintf(why, why_size, "%s", e->why);
	} else {
		e->data = buf;
		e->state = CENT_READY;
		lru_push_front(c, e);
		c->bytes += e->len;
		c->entries++;
		cache_evict(c);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		cache_put(c, e);
		return r;
	}
	/* verified: keep it on disk (waiters already have it) */
	if (store_put(s, idx, e->data)) {
		pthread_mutex_lock(&c->lock);
		e->stored = true;
		pthread_mutex_unlock(&c->lock);
	}
	if (ret_loaded)
		*ret_loaded = true;
	*ret = e;
	return 0;
}

/* ---- read-ahead ---------------------------------------------------------- */

/* Queues chunk idx for decoding ahead of the reads that will want it. */
static void ra_enqueue(struct fsrv *s, uint32_t idx)
{
	pthread_mutex_lock(&s->ra_lock);
	if (s->ra_n < FSRV_RA_QUEUE && !s->ra_stop) {
		s->ra_q[(s->ra_head + s->ra_n) % FSRV_RA_QUEUE] = idx;
		s->ra_n++;
		pthread_cond_signal(&s->ra_cond);
	}
	pthread_mutex_unlock(&s->ra_lock);
}

static void *ra_main(void *arg)
{
	struct fsrv *s = arg;

	pthread_mutex_lock(&s->ra_lock);
	for (;;) {
		struct cent *e;
		uint32_t idx;

		while (!s->ra_n && !s->ra_stop)
			pthread_cond_wait(&s->ra_cond, &s->ra_lock);
		if (s->ra_stop)
			break;
		idx = s->ra_q[s->ra_head];
		s->ra_head = (s->ra_head + 1) % FSRV_RA_QUEUE;
		s->ra_n--;
		pthread_mutex_unlock(&s->ra_lock);
		/* a failure is the business of the read that needs it */
		if (!store_has(s, idx) &&
		    cache_get(s, idx, true, &e, NULL, NULL, 0) == 0) {
			STAT_ADD(s, n_readahead, 1);
			cache_put(&s->cache, e);
		}
		pthread_mutex_lock(&s->ra_lock);
	}
	pthread_mutex_unlock(&s->ra_lock);
	return NULL;
}

static void ra_start(struct fsrv *s)
{
	if (!s->ra_enabled || s->ra_started)
		return;
	s->ra_stop = false;
	s->ra_head = s->ra_n = 0;
	/* signals are for the session loop */
	s->ra_started = lp_thread_create(&s->ra_thread, NULL, ra_main, s) == 0;
}

static void ra_stop(struct fsrv *s)
{
	if (!s->ra_started)
		return;
	pthread_mutex_lock(&s->ra_lock);
	s->ra_stop = true;
	pthread_cond_broadcast(&s->ra_cond);
	pthread_mutex_unlock(&s->ra_lock);
	pthread_join(s->ra_thread, NULL);
	s->ra_started = false;
}

/*
 * Sequential reading: a read that covers the first byte of the chunk it
 * ends in, when that chunk was decoded for it or came from the store, or
 * the first read of a chunk read ahead, queues the file's next chunk — if
 * it is neither stored nor cached, and (without a store) when the cache
 * holds a few such chunks, so read-ahead cannot evict what is being read.
 */
static void ra_maybe(struct fsrv *s, uint32_t ino, uint32_t last, bool go)
{
	const struct model_inode *in = &s->m->inodes[ino];
	uint32_t next = last + 1;

	if (!go || !s->ra_started || next >= in->first + in->count)
		return;
	if (!s->store && 3 * s->m->chunks[next].len > s->cache.cap)
		return;
	if (store_has(s, next))
		return;
	ra_enqueue(s, next);
}

/* ---- the read path ------------------------------------------------------- */

static void log_read_error(struct fsrv *s, uint32_t ino, uint64_t off,
			   uint32_t idx, int r, const char *why)
{
	const struct model_chunk *c = &s->m->chunks[idx];
	char path[4096], ebuf[128];
	struct timespec now;
	uint64_t dropped = 0;

	/* a reader retrying a bad file must not fill the disk with logs */
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&s->log_lock);
	if (now.tv_sec != s->log_sec) {
		s->log_sec = now.tv_sec;
		s->log_count = 0;
		dropped = s->log_dropped;
		s->log_dropped = 0;
	}
	if (s->log_count >= FSRV_LOG_BURST) {
		s->log_dropped++;
		pthread_mutex_unlock(&s->log_lock);
		return;
	}
	s->log_count++;
	pthread_mutex_unlock(&s->log_lock);
	if (dropped)
		lp_log(LP_LOG_ERROR, "%s%s%llu more read errors not logged",
		       s->name ? s->name : "", s->name ? ": " : "",
		       (unsigned long long)dropped);
	if (model_path(s->m, ino, path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "inode %u", ino);
	/* a read the mount's end cancelled is no fault of the image */
	lp_log(r == -ECANCELED ? LP_LOG_INFO : LP_LOG_ERROR,
	       "%s%s%s: read at offset %llu: chunk %u (file offset %llu, "
	       "%llu bytes, blob offset %llu): %s",
	       s->name ? s->name : "", s->name ? ": " : "", path,
	       (unsigned long long)off, idx, (unsigned long long)c->file_off,
	       (unsigned long long)c->len, (unsigned long long)c->comp_off,
	       why && why[0] ? why : strerror_r(-r, ebuf, sizeof(ebuf)));
}

/*
 * A read of several chunks: lets the source fetch the stored bytes of those
 * not decoded, stored nor being decoded in one go rather than one by one.
 */
static void span_prefetch(struct fsrv *s, uint32_t first, uint32_t n)
{
	struct chunk_cache *c = &s->cache;
	uint32_t fixed[16], *miss = fixed, k = 0;

	if (n > ARRAY_SIZE(fixed))
		miss = lp_xcalloc(n, sizeof(*miss));
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < n; i++) {
		struct cent *e = *cache_slot(c, first + i);

		while (e && e->idx != first + i)
			e = e->hnext;
		if (!e)
			miss[k++] = first + i;
	}
	pthread_mutex_unlock(&c->lock);
	if (s->store) {
		uint32_t j = 0;

		for (uint32_t i = 0; i < k; i++)
			if (!store_has(s, miss[i]))
				miss[j++] = miss[i];
		k = j;
	}
	if (k > 1)
		s->ops->prefetch(s->priv, miss, k);
	if (miss != fixed)
		free(miss);
}

enum part_from { PART_HIT, PART_STORE, PART_LOADED, PART_WAITED };

/*
 * Copies [skip, skip + n) of chunk idx to out: from the cache, else the
 * decoded store, else decoded now (or by the read already decoding it).
 * *ret_from says which; *ret_mark whether it had been read ahead.
 */
static int read_part(struct fsrv *s, uint32_t idx, uint64_t skip, size_t n,
		     uint8_t *out, enum part_from *ret_from, bool *ret_mark,
		     char *why, size_t why_size)
{
	struct cent *e = cache_peek(s, idx);
	bool loaded = false;
	int r;

	*ret_mark = false;
	if (!e && store_read(s, idx, skip, out, n) == 0) {
		STAT_ADD(s, n_store_hits, 1);
		*ret_from = PART_STORE;
		return 0;
	}
	if (e) {
		*ret_from = PART_HIT;
	} else {
		r = cache_get(s, idx, false, &e, &loaded, why, why_size);
		if (r < 0)
			return r;
		*ret_from = loaded ? PART_LOADED : PART_WAITED;
	}
	memcpy(out, e->data + skip, n);
	pthread_mutex_lock(&s->cache.lock);
	*ret_mark = e->ra_mark;
	e->ra_mark = false;
	pthread_mutex_unlock(&s->cache.lock);
	cache_put(&s->cache, e);
	return 0;
}

/*
 * Reads [off, off + len) of regular file ino into buf, len already clipped
 * to the file size.
 */
static int read_range(struct fsrv *s, uint32_t ino, uint64_t off, size_t len,
		      bool ra, uint8_t *buf, struct lp_err *err)
{
	const struct model_inode *in = &s->m->inodes[ino];
	int64_t first = model_chunk_at(s->m, ino, off);
	uint64_t end = off + len;
	size_t done = 0;
	bool go = false;
	uint32_t last, n;

	if (len == 0)
		return 0;
	if (first < 0)
		return lp_err_set(err, EIO, "no chunk at offset %llu",
				  (unsigned long long)off);
	last = (uint32_t)first;
	while (last + 1 < in->first + in->count &&
	       s->m->chunks[last + 1].file_off < end)
		last++;
	n = last - (uint32_t)first + 1;
	if (n > 1 && s->ops->prefetch)
		span_prefetch(s, (uint32_t)first, n);
	for (uint32_t idx = (uint32_t)first; idx <= last; idx++) {
		const struct model_chunk *c = &s->m->chunks[idx];
		uint64_t skip = off + done - c->file_off;
		size_t cnt = (size_t)(c->len - skip);
		enum part_from from;
		char why[256] = "";
		bool mark;
		int r;

		if (cnt > len - done)
			cnt = len - done;
		r = read_part(s, idx, skip, cnt, buf + done, &from, &mark, why,
			      sizeof(why));
		if (r < 0) {
			log_read_error(s, ino, off + done, idx, r, why);
			return lp_err_set(err, r, "chunk %u: %s", idx, why);
		}
		done += cnt;
		if (idx == last)
			go = mark || (skip == 0 && (from == PART_LOADED ||
						    from == PART_STORE));
	}
	if (ra)
		ra_maybe(s, ino, last, go);
	return 0;
}

int64_t fsrv_read(struct fsrv *s, uint32_t ino, void *buf, size_t len,
		  uint64_t off, struct lp_err *err)
{
	const struct model_inode *in = model_inode(s->m, ino);
	int r;

	if (!in)
		return lp_err_set(err, ENOENT, "no inode %u", ino);
	if (!S_ISREG(in->mode))
		return lp_err_set(err, EISDIR, "inode %u is not a regular file",
				  ino);
	if (off >= in->size)
		return 0;
	if (len > in->size - off)
		len = (size_t)(in->size - off);
	r = read_range(s, ino, off, len, false, buf, err);
	return r < 0 ? r : (int64_t)len;
}

/* ---- attributes ---------------------------------------------------------- */

static void fill_stat(const struct fsrv *s, uint32_t ino, struct stat *st)
{
	const struct model_inode *in = &s->m->inodes[ino];

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = in->mode;
	st->st_nlink = in->nlink ? in->nlink : 1;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_size = (off_t)in->size;
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
		st->st_rdev = makedev(in->rdev_major, in->rdev_minor);
	st->st_blksize = FSRV_BLOCK;
	st->st_blocks = (blkcnt_t)((in->size + 511) / 512);
	st->st_mtim.tv_sec = in->mtime;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static void fill_entry(const struct fsrv *s, uint32_t ino,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = s->timeout;
	e->entry_timeout = s->timeout;
	if (ino)
		fill_stat(s, ino, &e->attr);
}

/* The inode the kernel names, or NULL (then it has been replied to). */
static const struct model_inode *req_inode(fuse_req_t req, fuse_ino_t ino)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in =
		ino <= UINT32_MAX ? model_inode(s->m, (uint32_t)ino) : NULL;

	if (!in)
		fuse_reply_err(req, ENOENT);
	return in;
}

/* ---- kernel read-ahead --------------------------------------------------- */

/* Undoes the octal escapes of /proc/self/mountinfo (\040 = space). */
static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * The "major:minor" of the topmost FUSE mount at path, from mountinfo: a
 * stat of the mount would wait for this very server.
 */
static int mount_dev(const char *path, char *ret, size_t size)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *dev = NULL, *mp = NULL, *t;
		bool fuse = false, sep = false;
		int field = 0;

		for (t = strtok_r(line, " \n", &save); t;
		     t = strtok_r(NULL, " \n", &save), field++) {
			if (field == 2)
				dev = t;
			else if (field == 4)
				mp = t;
			else if (sep) {
				fuse = !strncmp(t, "fuse", 4);
				break;
			} else if (field > 5 && !strcmp(t, "-"))
				sep = true;
		}
		if (!dev || !mp || !fuse)
			continue;
		unescape_mountinfo(mp);
		if (!strcmp(mp, path) && !strchr(dev, '/')) {
			snprintf(ret, size, "%s", dev);
			found = 1;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * The kernel agrees on read-ahead in FUSE_INIT (at most its default, 128
 * KiB) and applies it when the INIT reply arrives, so the larger window
 * goes to sysfs with the first request after INIT.
 */
static void tune_read_ahead(struct fsrv *s)
{
	char val[16];
	int fd, n;

	if (!s->bdi_ra_path ||
	    __atomic_exchange_n(&s->ra_tuned, 1, __ATOMIC_ACQ_REL))
		return;
	fd = open(s->bdi_ra_path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		lp_debug("%s: %s", s->bdi_ra_path, strerror(errno));
		return;
	}
	n = snprintf(val, sizeof(val), "%u", s->read_ahead_kb);
	if (write(fd, val, (size_t)n) != n)
		lp_debug("%s: %s", s->bdi_ra_path, strerror(errno));
	close(fd);
}

/* ---- operations ---------------------------------------------------------- */

static void fsrv_op_init(void *data, struct fuse_conn_info *conn)
{
	struct fsrv *s = data;

	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* stored chunks go from the store's page cache to the kernel by
	 * splice: no copy through (and no buffer in) this process */
	if (s->store && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (s->store)
		conn->max_read = FSRV_SPLICE_READ; /* as in the mount options */
	/* nothing ever changes: never drop cached pages on getattr */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void fsrv_op_lookup(fuse_req_t req, fuse_ino_t parent,
			   const char *name)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *dir = req_inode(req, parent);
	struct fuse_entry_param e;
	uint32_t ino;

	tune_read_ahead(s);
	if (!dir)
		return;
	if (!S_ISDIR(dir->mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	ino = model_lookup(s->m, (uint32_t)parent, name);
	/* ino 0 with a timeout is a cached negative entry */
	fill_entry(s, ino, &e);
	if (ino)
		STAT_ADD(s, n_lookups, 1);
	if (fuse_reply_entry(req, &e) < 0 && ino)
		STAT_SUB(s, n_lookups, 1);
}

static void fsrv_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fsrv *s = fuse_req_userdata(req);

	(void)ino;
	STAT_SUB(s, n_lookups, nlookup);
	fuse_reply_none(req);
}

static void fsrv_op_forget_multi(fuse_req_t req, size_t count,
				 struct fuse_forget_data *forgets)
{
	struct fsrv *s = fuse_req_userdata(req);
	uint64_t n = 0;

	for (size_t i = 0; i < count; i++)
		n += forgets[i].nlookup;
	STAT_SUB(s, n_lookups, n);
	fuse_reply_none(req);
}

static void fsrv_op_getattr(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	struct fsrv *s = fuse_req_userdata(req);
	struct stat st;

	(void)fi;
	tune_read_ahead(s);
	if (!req_inode(req, ino))
		return;
	fill_stat(s, (uint32_t)ino, &st);
	fuse_reply_attr(req, &st, s->timeout);
}

static void fsrv_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);

	if (!in)
		return;
	if (!S_ISLNK(in->mode)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_readlink(req, model_str(s->m, in->link));
}

static void fsrv_op_opendir(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	const struct model_inode *in = req_inode(req, ino);

	if (!in)
		return;
	if (!S_ISDIR(in->mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

/*
 * Directory offsets: 0 is the start, entry k ("." = 0, ".." = 1, then the
 * sorted children) is followed by offset k + 1.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, bool plus)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	size_t used = 0;
	uint64_t pos, n;

	if (!in)
		return;
	if (!S_ISDIR(in->mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > FSRV_MAX_READ)
		size = FSRV_MAX_READ;
	buf = lp_xmalloc(size ? size : 1);
	n = (uint64_t)in->count + 2;
	for (pos = (uint64_t)off; pos < n; pos++) {
		const char *name;
		uint32_t eino;
		size_t want;

		if (pos == 0) {
			name = ".";
			eino = (uint32_t)ino;
		} else if (pos == 1) {
			name = "..";
			eino = in->parent ? in->parent : MODEL_ROOT_INO;
		} else {
			const struct model_dirent *d =
				&s->m->dirents[in->first + pos - 2];

			name = model_str(s->m, d->name);
			eino = d->ino;
		}
		if (plus) {
			struct fuse_entry_param e;

			fill_entry(s, eino, &e);
			want = fuse_add_direntry_plus(req, buf + used,
						      size - used, name, &e,
						      (off_t)(pos + 1));
		} else {
			struct stat st;

			fill_stat(s, eino, &st);
			want = fuse_add_direntry(req, buf + used, size - used,
						 name, &st, (off_t)(pos + 1));
		}
		if (want > size - used)
			break;
		used += want;
		/* the kernel takes a lookup reference for every entry but
		 * "." and ".." of a readdirplus reply */
		if (plus && pos >= 2)
			STAT_ADD(s, n_lookups, 1);
	}
	fuse_reply_buf(req, buf, used);
}

static void fsrv_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void fsrv_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
				off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void fsrv_op_releasedir(fuse_req_t req, fuse_ino_t ino,
			       struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void fsrv_op_open(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_file_info *fi)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);

	if (!in)
		return;
	if (S_ISDIR(in->mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fi->fh = 0;
	/* req is gone after the reply */
	if (S_ISREG(in->mode) && s->on_open)
		s->on_open(s->on_open_arg, (uint32_t)ino);
	fuse_reply_open(req, fi);
}

/* Most chunks one read spans when it is answered from the store. */
#define FSRV_STORE_PIECES 16

/*
 * Answers a read whose chunks are all in the decoded store with the
 * store's file as the source, after checking the blocks it sends; false
 * (nothing sent) when one is not stored or does not check out.
 */
static bool reply_from_store(struct fsrv *s, fuse_req_t req, uint32_t ino,
			     uint64_t off, size_t len)
{
	const struct model_inode *in = &s->m->inodes[ino];
	int64_t first = model_chunk_at(s->m, ino, off);
	struct {
		struct fuse_bufvec bv;
		struct fuse_buf more[FSRV_STORE_PIECES - 1];
	} v;
	size_t done = 0;
	uint32_t idx;
	bool go = false;

	if (first < 0)
		return false;
	memset(&v, 0, sizeof(v));
	for (idx = (uint32_t)first; done < len; idx++) {
		const struct model_chunk *c = &s->m->chunks[idx];
		uint64_t skip = off + done - c->file_off;
		uint64_t cnt = c->len - skip;
		struct dstore_seg *g;
		struct lp_err err = { 0 };
		struct fuse_buf *b;
		uint64_t pos;
		int fd, r;

		if (idx >= in->first + in->count ||
		    v.bv.count == FSRV_STORE_PIECES)
			return false;
		g = chunk_seg(s, idx);
		if (!g)
			return false;
		if (cnt > len - done)
			cnt = len - done;
		r = dstore_check(g, c, skip, cnt, &fd, &pos, &err);
		if (r < 0) {
			if (r != -ENOENT &&
			    __atomic_add_fetch(&s->n_store_warn, 1,
					       __ATOMIC_RELAXED) <= 100)
				lp_log(LP_LOG_WARN, "%s%s%s; decoding the chunk "
				       "again", s->name ? s->name : "",
				       s->name ? ": " : "", err.msg);
			return false;
		}
		b = &v.bv.buf[v.bv.count++];
		b->size = (size_t)cnt;
		b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
		b->fd = fd;
		b->pos = (off_t)pos;
		done += (size_t)cnt;
		go = skip == 0;
	}
	STAT_ADD(s, n_store_hits, v.bv.count);
	STAT_ADD(s, n_read_bytes, len);
	/* an error here is the kernel's: the request is answered either way */
	fuse_reply_data(req, &v.bv, 0);
	ra_maybe(s, ino, idx - 1, go);
	return true;
}

static void fsrv_op_read(fuse_req_t req, fuse_ino_t ino, size_t size,
			 off_t off, struct fuse_file_info *fi)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);
	uint8_t *buf;
	size_t len;
	int r;

	(void)fi;
	if (!in)
		return;
	if (!S_ISREG(in->mode)) {
		fuse_reply_err(req, S_ISDIR(in->mode) ? EISDIR : EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	STAT_ADD(s, n_reads, 1);
	if ((uint64_t)off >= in->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = size < FSRV_MAX_READ ? size : FSRV_MAX_READ;
	if (len > in->size - (uint64_t)off)
		len = (size_t)(in->size - (uint64_t)off);
	if (s->store && reply_from_store(s, req, (uint32_t)ino, (uint64_t)off,
					 len))
		return;
	buf = lp_xmalloc(len);
	r = read_range(s, (uint32_t)ino, (uint64_t)off, len, true, buf, NULL);
	if (r < 0) {
		/* logged by read_range; the mount stays up */
		STAT_ADD(s, n_read_errors, 1);
		fuse_reply_err(req, EIO);
	} else {
		STAT_ADD(s, n_read_bytes, len);
		fuse_reply_buf(req, (const char *)buf, len);
	}
	free(buf);
}

static void fsrv_op_release(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void fsrv_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fsrv *s = fuse_req_userdata(req);
	struct statvfs sv;

	(void)ino;
	tune_read_ahead(s);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = FSRV_BLOCK;
	sv.f_frsize = FSRV_BLOCK;
	sv.f_blocks = s->total_blocks;
	sv.f_files = s->m->n_inodes ? s->m->n_inodes - 1 : 0;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static const struct model_xattr *find_xattr(const struct model *m,
					    const struct model_inode *in,
					    const char *name)
{
	for (uint32_t i = 0; i < in->xattr_count; i++) {
		const struct model_xattr *x = &m->xattrs[in->xattr_first + i];

		if (!strcmp(model_str(m, x->name), name))
			return x;
	}
	return NULL;
}

static void fsrv_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			     size_t size)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);
	const struct model_xattr *x;

	if (!in)
		return;
	x = find_xattr(s->m, in, name);
	if (!x)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, x->value_len);
	else if (size < x->value_len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, model_str(s->m, x->value), x->value_len);
}

static void fsrv_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fsrv *s = fuse_req_userdata(req);
	const struct model_inode *in = req_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	size_t total = 0, pos = 0;

	if (!in)
		return;
	for (uint32_t i = 0; i < in->xattr_count; i++) {
		const struct model_xattr *x =
			&s->m->xattrs[in->xattr_first + i];

		total += strlen(model_str(s->m, x->name)) + 1;
	}
	if (size == 0) {
		fuse_reply_xattr(req, total);
		return;
	}
	if (size < total) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	buf = lp_xmalloc(total ? total : 1);
	for (uint32_t i = 0; i < in->xattr_count; i++) {
		const char *nm = model_str(
			s->m, s->m->xattrs[in->xattr_first + i].name);
		size_t l = strlen(nm) + 1;

		memcpy(buf + pos, nm, l);
		pos += l;
	}
	fuse_reply_buf(req, buf, total);
}

static void fsrv_op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct model_inode *in = req_inode(req, ino);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint32_t bits;

	if (!in)
		return;
	if (mask & W_OK) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (mask == F_OK) {
		fuse_reply_err(req, 0);
		return;
	}
	if (ctx->uid == 0) {
		/* root may execute only what someone may execute */
		bool ok = !(mask & X_OK) || S_ISDIR(in->mode) ||
			  (in->mode & 0111);

		fuse_reply_err(req, ok ? 0 : EACCES);
		return;
	}
	if (ctx->uid == in->uid)
		bits = (in->mode >> 6) & 7;
	else if (ctx->gid == in->gid)
		bits = (in->mode >> 3) & 7;
	else
		bits = in->mode & 7;
	fuse_reply_err(req, ((uint32_t)mask & 7 & ~bits) ? EACCES : 0);
}

static const struct fuse_lowlevel_ops fsrv_ops = {
	.init = fsrv_op_init,
	.lookup = fsrv_op_lookup,
	.forget = fsrv_op_forget,
	.forget_multi = fsrv_op_forget_multi,
	.getattr = fsrv_op_getattr,
	.readlink = fsrv_op_readlink,
	.opendir = fsrv_op_opendir,
	.readdir = fsrv_op_readdir,
	.readdirplus = fsrv_op_readdirplus,
	.releasedir = fsrv_op_releasedir,
	.open = fsrv_op_open,
	.read = fsrv_op_read,
	.release = fsrv_op_release,
	.statfs = fsrv_op_statfs,
	.getxattr = fsrv_op_getxattr,
	.listxattr = fsrv_op_listxattr,
	.access = fsrv_op_access,
};

/* ---- lifecycle ----------------------------------------------------------- */

static void fsrv_fuse_log(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	enum lp_log_level l = level <= FUSE_LOG_ERR	  ? LP_LOG_ERROR
			      : level == FUSE_LOG_WARNING ? LP_LOG_WARN
			      : level < FUSE_LOG_DEBUG	  ? LP_LOG_INFO
							  : LP_LOG_DEBUG;
	char msg[1024];
	size_t n;

	if (l > lp_log_max)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	lp_log_impl(l, "libfuse", "%s", msg);
}

static bool bad_opt_value(const char *v)
{
	return !v || !v[0] || strpbrk(v, ",\\ \t\n=");
}

int fsrv_new(const struct model *m, const struct fsrv_source_ops *ops,
	     void *priv, const struct fsrv_opts *o, struct fsrv **ret,
	     struct lp_err *err)
{
	static const struct fsrv_opts none = { 0 };
	struct fsrv *s;

	if (!o)
		o = &none;
	if (!m || m->n_inodes <= MODEL_ROOT_INO ||
	    !S_ISDIR(m->inodes[MODEL_ROOT_INO].mode))
		return lp_err_set(err, EINVAL,
				  "the model has no root directory");
	if (!ops || !ops->read_chunk)
		return lp_err_set(err, EINVAL, "no chunk source");
	if (o->fsname && bad_opt_value(o->fsname))
		return lp_err_set(err, EINVAL, "bad fsname \"%s\"", o->fsname);
	if (o->subtype && bad_opt_value(o->subtype))
		return lp_err_set(err, EINVAL, "bad subtype \"%s\"",
				  o->subtype);
	s = lp_xcalloc(1, sizeof(*s));
	s->m = m;
	s->ops = ops;
	s->priv = priv;
	s->name = o->name ? lp_xstrdup(o->name) : NULL;
	s->fsname = lp_xstrdup(o->fsname ? o->fsname : "lazypull");
	s->subtype = lp_xstrdup(o->subtype ? o->subtype : "lazypull");
	s->allow_other = o->allow_other;
	s->debug = o->debug;
	s->on_open = o->on_open;
	s->on_open_arg = o->on_open_arg;
	s->on_exit = o->on_exit;
	s->on_exit_arg = o->on_exit_arg;
	s->max_idle_threads = o->max_idle_threads;
	s->timeout = o->timeout > 0 ? o->timeout : FSRV_DEFAULT_TIMEOUT;
	for (uint32_t i = MODEL_ROOT_INO; i < m->n_inodes; i++)
		if (S_ISREG(m->inodes[i].mode))
			s->total_blocks +=
				(m->inodes[i].size + FSRV_BLOCK - 1) /
				FSRV_BLOCK;
	pthread_mutex_init(&s->log_lock, NULL);
	pthread_mutex_init(&s->ra_lock, NULL);
	pthread_cond_init(&s->ra_cond, NULL);
	s->ra_enabled = !o->no_readahead;
	s->read_ahead_kb = o->read_ahead_kb ? o->read_ahead_kb : 4096;
	pthread_mutex_init(&s->seg_lock, NULL);
	if (o->decoded_dir) {
		struct dstore_opts dso = { .dir = o->decoded_dir,
					   .max_bytes = o->decoded_max };
		struct lp_err derr = { 0 };

		if (dstore_open(&dso, &s->store, &derr) < 0)
			lp_log(LP_LOG_WARN, "%s (decoded chunks are not "
			       "kept)", derr.msg);
		s->segs = lp_xcalloc(m->n_blobs ? m->n_blobs : 1,
				     sizeof(*s->segs));
		s->seg_state = lp_xcalloc(m->n_blobs ? m->n_blobs : 1,
					  sizeof(*s->seg_state));
	}
	cache_init(&s->cache, o->cache_bytes ? o->cache_bytes
			      : s->store ? FSRV_DEFAULT_CACHE_STORE
					 : FSRV_DEFAULT_CACHE,
		   m->n_chunks);
	fuse_set_log_func(fsrv_fuse_log);
	*ret = s;
	return 0;
}

/* The session with our mount options (also the kernel's, for takeover). */
static int new_session(struct fsrv *s, struct lp_err *err)
{
	char opts[512];
	char *argv[4];
	struct fuse_args args;
	int argc = 0;

	if (s->se)
		return lp_err_set(err, EBUSY, "already mounted");
	snprintf(opts, sizeof(opts),
		 "ro,default_permissions,fsname=%s,subtype=%s%s%s", s->fsname,
		 s->subtype, s->allow_other ? ",allow_other" : "",
		 s->store ? ",max_read=" FSRV_STR(FSRV_SPLICE_READ) : "");
	argv[argc++] = (char *)"lazypull";
	argv[argc++] = (char *)"-o";
	argv[argc++] = opts;
	if (s->debug)
		argv[argc++] = (char *)"-d";
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	s->se = fuse_session_new(&args, &fsrv_ops, sizeof(fsrv_ops), s);
	fuse_opt_free_args(&args);
	if (!s->se)
		return lp_err_set(err, EINVAL,
				  "cannot create the FUSE session (see the "
				  "libfuse message above)");
	return 0;
}

/*
 * The kernel sent FUSE_INIT to the daemon that died; libfuse answers
 * nothing but INIT until it saw one, so this session is handed one like
 * it.  Its reply goes to a request id the kernel does not know and is
 * dropped (ENOENT, which libfuse does not report); the kernel keeps what
 * it negotiated with the first daemon, which ran this same code.
 */
static void replay_init(struct fsrv *s)
{
	struct {
		struct fuse_in_header h;
		struct fuse_init_in i;
	} msg;
	struct fuse_buf fb = { 0 };

	memset(&msg, 0, sizeof(msg));
	msg.h.len = sizeof(msg);
	msg.h.opcode = FUSE_INIT;
	msg.h.unique = 0x7fffffff00000001ull;
	msg.i.major = FUSE_KERNEL_VERSION;
	msg.i.minor = FUSE_KERNEL_MINOR_VERSION;
	msg.i.max_readahead = 128u << 10;
	msg.i.flags = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
		      FUSE_DONT_MASK | FUSE_SPLICE_WRITE | FUSE_SPLICE_MOVE |
		      FUSE_SPLICE_READ | FUSE_AUTO_INVAL_DATA |
		      FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
		      FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
		      FUSE_CACHE_SYMLINKS;
	fb.mem = &msg;
	fb.size = sizeof(msg);
	fuse_session_process_buf(s->se, &fb);
}

/* FUSE_NOTIFY_RESEND (Linux 6.9): requests the dead daemon had read and
 * not answered go to the queue again, so their callers do not hang. */
#define FSRV_NOTIFY_RESEND 7

int fsrv_takeover(struct fsrv *s, const char *mountpoint, int fd,
		  struct lp_err *err)
{
	struct fuse_out_header oh = { .len = sizeof(oh),
				      .error = FSRV_NOTIFY_RESEND };
	char dev[32];
	int r;

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return lp_err_set(err, EBADF, "--fuse-fd %d: not open", fd);
	r = new_session(s, err);
	if (r < 0)
		return r;
	snprintf(dev, sizeof(dev), "/dev/fd/%d", fd);
	if (fuse_session_mount(s->se, dev) != 0) {
		fuse_session_destroy(s->se);
		s->se = NULL;
		return lp_err_set(err, EIO, "cannot serve FUSE device fd %d "
				  "(see the libfuse message above)", fd);
	}
	replay_init(s);
	if (write(fd, &oh, sizeof(oh)) < 0)
		lp_debug("FUSE_NOTIFY_RESEND: %s (requests the last daemon "
			 "had taken are not sent again)", strerror(errno));
	s->mounted = true;
	s->taken_mp = lp_xstrdup(mountpoint);
	return 0;
}

int fsrv_mount(struct fsrv *s, const char *mountpoint, struct lp_err *err)
{
	char dev[32];
	char *real;
	int r;

	r = new_session(s, err);
	if (r < 0)
		return r;
	real = realpath(mountpoint, NULL); /* before it is a FUSE mount */
	if (fuse_session_mount(s->se, mountpoint) != 0) {
		free(real);
		fuse_session_destroy(s->se);
		s->se = NULL;
		return lp_err_set(err, EIO, "cannot mount on %s (see the "
				  "libfuse message above)", mountpoint);
	}
	s->mounted = true;
	free(s->bdi_ra_path);
	s->bdi_ra_path = NULL;
	if (real && s->read_ahead_kb != FSRV_READ_AHEAD_KERNEL &&
	    mount_dev(real, dev, sizeof(dev)) == 1) {
		s->bdi_ra_path = lp_xmalloc(strlen(dev) + 40);
		sprintf(s->bdi_ra_path, "/sys/class/bdi/%s/read_ahead_kb", dev);
	}
	free(real);
	return 0;
}

static void call_on_exit(struct fsrv *s)
{
	if (s->on_exit && !__atomic_exchange_n(&s->exit_called, 1,
					       __ATOMIC_ACQ_REL))
		s->on_exit(s->on_exit_arg);
}

/* Watches for the session's end while the loop runs: libfuse's loop
 * waits for its workers, and a worker may wait on the source. */
static void *exit_watch(void *arg)
{
	struct fsrv *s = arg;
	const struct timespec tick = { .tv_nsec = 100 * 1000000L };

	while (!__atomic_load_n(&s->run_done, __ATOMIC_ACQUIRE)) {
		if (fuse_session_exited(s->se)) {
			call_on_exit(s);
			break;
		}
		nanosleep(&tick, NULL);
	}
	return NULL;
}

int fsrv_run(struct fsrv *s, unsigned flags)
{
	struct fuse_loop_config cfg = { 0 };
	pthread_t watch;
	bool watching = false;
	int r;

	if (!s->se || !s->mounted)
		return -ENOTCONN;
	cfg.clone_fd = 0;
	cfg.max_idle_threads = s->max_idle_threads ? s->max_idle_threads : 10;
	if ((flags & FSRV_RUN_SIGNALS) && fuse_set_signal_handlers(s->se) < 0)
		return -EIO;
	ra_start(s);
	__atomic_store_n(&s->run_done, 0, __ATOMIC_RELEASE);
	if (s->on_exit)
		watching = lp_thread_create(&watch, NULL, exit_watch, s) == 0;
	r = fuse_session_loop_mt(s->se, &cfg);
	__atomic_store_n(&s->run_done, 1, __ATOMIC_RELEASE);
	if (watching)
		pthread_join(watch, NULL);
	call_on_exit(s);
	ra_stop(s);
	if (flags & FSRV_RUN_SIGNALS)
		fuse_remove_signal_handlers(s->se);
	/* a positive value is the signal that ended the loop */
	return r < 0 ? r : 0;
}

void fsrv_exit(struct fsrv *s)
{
	if (s && s->se)
		fuse_session_exit(s->se);
}

void fsrv_unmount(struct fsrv *s)
{
	if (!s || !s->se || !s->mounted)
		return;
	if (s->taken_mp) {
		/* libfuse did not mount it, so it does not unmount it */
		if (umount2(s->taken_mp, MNT_DETACH) < 0 && errno != EINVAL &&
		    errno != ENOENT)
			lp_log(LP_LOG_WARN, "unmounting %s: %s", s->taken_mp,
			       strerror(errno));
	} else {
		fuse_session_unmount(s->se);
	}
	s->mounted = false;
}

void fsrv_free(struct fsrv *s)
{
	if (!s)
		return;
	fsrv_unmount(s);
	if (s->se)
		fuse_session_destroy(s->se);
	ra_stop(s);
	cache_release(&s->cache);
	dstore_close(s->store);
	free(s->segs);
	free(s->seg_state);
	pthread_mutex_destroy(&s->seg_lock);
	pthread_cond_destroy(&s->ra_cond);
	pthread_mutex_destroy(&s->ra_lock);
	pthread_mutex_destroy(&s->log_lock);
	free(s->bdi_ra_path);
	free(s->taken_mp);
	free(s->name);
	free(s->fsname);
	free(s->subtype);
	free(s);
}

void fsrv_get_stats(struct fsrv *s, struct fsrv_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->reads = STAT_GET(s, n_reads);
	ret->read_bytes = STAT_GET(s, n_read_bytes);
	ret->read_errors = STAT_GET(s, n_read_errors);
	ret->chunk_hits = STAT_GET(s, n_hits);
	ret->chunk_misses = STAT_GET(s, n_misses);
	ret->chunk_waits = STAT_GET(s, n_waits);
	ret->lookups = STAT_GET(s, n_lookups);
	ret->readahead = STAT_GET(s, n_readahead);
	if (s->store) {
		struct dstore_stats ds;

		dstore_get_stats(s->store, &ds);
		ret->store_hits = STAT_GET(s, n_store_hits);
		ret->store_puts = ds.puts;
		ret->store_bad = ds.bad_blocks;
		ret->store_bytes = ds.bytes;
	}
	pthread_mutex_lock(&s->cache.lock);
	ret->cache_bytes = s->cache.bytes;
	ret->cache_entries = s->cache.entries;
	pthread_mutex_unlock(&s->cache.lock);
}
