// SPDX-License-Identifier: Apache-2.0
/*
 * lazypull mount's read-aheads for an image with nothing to prefetch (no
 * landmark, no access trace): see mount-int.h.
 */
#define LP_MODNAME "mount"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/mount-int.h"

/* ino is small, and so are dir's small files together */
static bool small_dir(const struct model *m, uint32_t dir, uint32_t ino)
{
	const struct model_inode *din = &m->inodes[dir];
	uint64_t bytes = 0;

	if (model_file_stored(m, ino) > DIRAHEAD_FILE_MAX)
		return false;
	for (uint32_t k = 0; k < din->count; k++) {
		uint32_t de = din->first + k;
		uint64_t fb;

		if (de >= m->n_dirents)
			break;
		fb = model_file_stored(m, m->dirents[de].ino);
		if (fb <= DIRAHEAD_FILE_MAX)
			bytes += fb;
		if (bytes > DIRAHEAD_SMALL_DIR)
			return false;
	}
	return true;
}

/* caller holds d->lock; false if the queue is full */
static bool dirahead_push_job(struct dirahead *d, struct dirahead_job j)
{
	if (d->n == DIRAHEAD_QUEUE)
		return false;
	d->q[(d->head + d->n) % DIRAHEAD_QUEUE] = j;
	d->n++;
	pthread_cond_signal(&d->cond);
	return true;
}

/* caller holds d->lock */
static void dirahead_push(struct dirahead *d, uint32_t dir, uint32_t kind)
{
	dirahead_push_job(d, (struct dirahead_job){ .dir = dir, .kind = kind });
}

/*
 * A file's kind: "so" for a shared library (libc.so.6, x.cpython-311.so),
 * else its name's extension if that holds a letter (pyc, js, rb), as a
 * nonzero hash; 0: none (no extension, a version number).
 */
static uint32_t kind_hash(const char *ext)
{
	uint32_t h = 2166136261u;
	bool alpha = false;

	for (const char *p = ext; *p && *p != '.'; p++) {
		alpha |= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
		h = (h ^ (uint8_t)*p) * 16777619u;
	}
	return alpha ? (h ? h : 1) : 0;
}

static uint32_t file_kind(const char *name)
{
	const char *dot = strrchr(name, '.'), *so = strstr(name, ".so");

	if (so && (so[3] == '\0' || so[3] == '.'))
		dot = so;
	if (!dot || dot == name || !dot[1])
		return 0;
	return kind_hash(dot + 1);
}

/* the depth of directory ino (the root: 0), at most limit */
static unsigned dir_depth(const struct model *m, uint32_t ino, unsigned limit)
{
	unsigned depth = 0;

	while (ino != MODEL_ROOT_INO && ino < m->n_inodes && depth < limit) {
		ino = m->inodes[ino].parent;
		depth++;
	}
	return depth;
}

/* Notes file ino (of kind) under each ancestor; a tree with opens in
 * enough of its subdirectories is queued for a sweep.  Holds d->lock. */
static void fan_note(struct dirahead *d, uint32_t ino, uint32_t kind)
{
	const struct model *m = d->ms->m;
	uint32_t child = m->inodes[ino].parent, dir;
	unsigned depth = dir_depth(m, child, 4096);

	for (; child != MODEL_ROOT_INO && depth > DIRAHEAD_FAN_MIN_DEPTH;
	     child = dir, depth--) {
		struct fan_slot *sl = NULL;
		uint32_t h;

		dir = m->inodes[child].parent;
		if (dir >= m->n_inodes)
			return;
		h = (dir * 2654435761u) ^ kind;
		for (uint32_t k = 0; k < 16; k++) {
			struct fan_slot *t =
				&d->fan[(h + k) % DIRAHEAD_FAN_SLOTS];

			if (!t->dir || (t->dir == dir && t->kind == kind)) {
				sl = t;
				break;
			}
		}
		if (!sl)
			continue; /* full around there: not tracked */
		if (!sl->dir) {
			sl->dir = dir;
			sl->kind = kind;
		}
		if (sl->n >= DIRAHEAD_FAN_CHILDREN)
			continue; /* swept already */
		bool known = false;

		for (uint8_t i = 0; i < sl->n; i++)
			known |= sl->child[i] == child;
		if (known)
			continue;
		if (sl->n < DIRAHEAD_FAN_CHILDREN - 1) {
			sl->child[sl->n++] = child;
			continue;
		}
		sl->n = DIRAHEAD_FAN_CHILDREN;
		if (d->fan_bytes < DIRAHEAD_FAN_TOTAL)
			dirahead_push(d, dir, kind);
	}
}

void dirahead_note(struct dirahead *d, uint32_t ino)
{
	const struct model *m;
	uint32_t dir, n, kind;
	uint8_t bit;
	bool sweep;

	if (!d || !d->started)
		return;
	m = d->ms->m;
	if (ino >= m->n_inodes)
		return;
	dir = m->inodes[ino].parent;
	if (dir >= m->n_inodes)
		return;
	bit = (uint8_t)(1u << (ino % 8));
	if (__atomic_fetch_or(&d->seen[ino / 8], bit, __ATOMIC_RELAXED) & bit)
		return;
	if (d->predicted &&
	    __atomic_load_n(&d->predicted[ino / 8], __ATOMIC_RELAXED) & bit)
		return;
	kind = S_ISREG(m->inodes[ino].mode) &&
			       model_file_stored(m, ino) <= DIRAHEAD_FILE_MAX
		       ? file_kind(model_str(m, m->inodes[ino].name))
		       : 0;
	n = __atomic_add_fetch(&d->opens[dir], 1, __ATOMIC_RELAXED);
	sweep = n == DIRAHEAD_OPENS ||
		(n < DIRAHEAD_OPENS && small_dir(m, dir, ino));
	bit = (uint8_t)(1u << (dir % 8));
	if (sweep && __atomic_fetch_or(&d->queued[dir / 8], bit,
				       __ATOMIC_RELAXED) & bit)
		sweep = false;
	if (!sweep && !kind)
		return;
	pthread_mutex_lock(&d->lock);
	if (sweep)
		dirahead_push(d, dir, 0);
	if (kind)
		fan_note(d, ino, kind);
	pthread_mutex_unlock(&d->lock);
}

/* adds regular file ino's chunks to *v */
static uint64_t add_chunks(const struct model *m, uint32_t ino, uint32_t **v,
			   size_t *cap, uint32_t *n)
{
	const struct model_inode *in = &m->inodes[ino];

	for (uint32_t c = in->first; c < in->first + in->count &&
				     c < m->n_chunks; c++) {
		lp_grow((void **)v, sizeof(**v), cap, (size_t)*n + 1);
		(*v)[(*n)++] = c;
	}
	return model_file_stored(m, ino);
}

/*
 * Fetches chunks v[0..n) (files no read asked for yet) in blob order:
 * neighbours merge into few requests, across gaps of at most
 * AHEAD_MAX_GAP (the bytes between small files are mostly other files
 * nobody asked for).
 */
#define AHEAD_MAX_GAP STARTSET_NEAR_GAP /* 32 KiB: the start files' batches
						* count on it */

static void fetch_chunks(struct mount_src *ms, uint32_t *v, uint32_t n)
{
	if (!n)
		return;
	qsort_r(v, n, sizeof(*v), model_chunk_cmp_stored, (void *)ms->m);
	mount_src_prefetch_gap(ms, v, n, AHEAD_MAX_GAP);
}

/* fetch_chunks() of a sweep's chunks, in batches (DIRAHEAD_BATCH) */
static void dirahead_fetch(struct dirahead *d, uint32_t *v, uint32_t n)
{
	const struct model *m = d->ms->m;
	uint32_t first = n, rest = n; /* v[0..first), v[rest..n): here */
	uint64_t bytes = 0;

	if (!n)
		return;
	qsort_r(v, n, sizeof(*v), model_chunk_cmp_stored, (void *)m);
	for (uint32_t i = 0; i < n; i++) {
		bytes += m->chunks[v[i]].comp_len;
		if (bytes >= DIRAHEAD_BATCH) {
			first = i + 1;
			break;
		}
	}
	pthread_mutex_lock(&d->lock);
	for (uint32_t i = first; i < n;) {
		struct dirahead_job j = { 0 };
		uint32_t k = i;

		for (bytes = 0; k < n && bytes < DIRAHEAD_BATCH; k++)
			bytes += m->chunks[v[k]].comp_len;
		j.n_chunks = k - i;
		j.chunks = lp_xmalloc(j.n_chunks * sizeof(*j.chunks));
		memcpy(j.chunks, v + i, j.n_chunks * sizeof(*j.chunks));
		if (!dirahead_push_job(d, j)) {
			free(j.chunks); /* full: this worker takes the rest */
			rest = i;
			break;
		}
		i = k;
	}
	pthread_mutex_unlock(&d->lock);
	mount_src_prefetch_gap(d->ms, v, first, AHEAD_MAX_GAP);
	if (rest < n)
		mount_src_prefetch_gap(d->ms, v + rest, n - rest, AHEAD_MAX_GAP);
}

static void dirahead_dir(struct dirahead *d, uint32_t dir, uint32_t **v,
			 size_t *cap)
{
	const struct model *m = d->ms->m;
	const struct model_inode *din = &m->inodes[dir];
	uint64_t bytes = 0;
	uint32_t n = 0;

	for (uint32_t k = 0; k < din->count && bytes < d->cap; k++) {
		uint32_t de = din->first + k, ino;
		uint64_t fb;

		if (de >= m->n_dirents)
			break;
		ino = m->dirents[de].ino;
		fb = model_file_stored(m, ino);
		if (!fb || fb > DIRAHEAD_FILE_MAX || bytes + fb > d->cap)
			continue;
		bytes += add_chunks(m, ino, v, cap, &n);
	}
	lp_debug("directory read-ahead: inode %u: %u chunks, %llu bytes", dir,
		 n, (unsigned long long)bytes);
	dirahead_fetch(d, *v, n);
}

/* The tree sweep of dir for files of kind (see DIRAHEAD_FAN_CHILDREN). */
static void dirahead_tree(struct dirahead *d, uint32_t dir, uint32_t kind,
			  uint32_t **v, size_t *cap)
{
	const struct model *m = d->ms->m;
	_cleanup_free_ uint32_t *stack = NULL;
	size_t scap = 0, sn = 0;
	uint64_t bytes = 0, budget;
	uint32_t n = 0, looked = 0;
	char path[512];

	pthread_mutex_lock(&d->lock);
	budget = DIRAHEAD_FAN_TOTAL - d->fan_bytes;
	pthread_mutex_unlock(&d->lock);
	if (budget > DIRAHEAD_FAN_MAX)
		budget = DIRAHEAD_FAN_MAX;
	lp_grow((void **)&stack, sizeof(*stack), &scap, 1);
	stack[sn++] = dir;
	while (sn && bytes <= budget && looked < DIRAHEAD_FAN_WALK) {
		uint32_t cur = stack[--sn];
		const struct model_inode *din = &m->inodes[cur];

		for (uint32_t k = 0; k < din->count && bytes <= budget; k++) {
			uint32_t de = din->first + k, ino;
			const struct model_inode *in;
			uint64_t fb;

			if (de >= m->n_dirents)
				break;
			looked++;
			ino = m->dirents[de].ino;
			in = model_inode(m, ino);
			if (!in)
				continue;
			if (S_ISDIR(in->mode)) {
				if (in->parent == cur) { /* not "..": a tree */
					lp_grow((void **)&stack,
						sizeof(*stack), &scap, sn + 1);
					stack[sn++] = ino;
				}
				continue;
			}
			fb = model_file_stored(m, ino);
			if (!fb || fb > DIRAHEAD_FILE_MAX ||
			    file_kind(model_str(m, m->dirents[de].name)) != kind)
				continue;
			bytes += add_chunks(m, ino, v, cap, &n);
		}
	}
	if (model_path(m, dir, path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "inode %u", dir);
	if (bytes > budget || looked >= DIRAHEAD_FAN_WALK) {
		lp_log(LP_LOG_INFO, "tree read-ahead: %s: more than %llu KiB "
		       "of such files (or entries): not swept", path,
		       (unsigned long long)(budget >> 10));
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->fan_bytes += bytes;
	pthread_mutex_unlock(&d->lock);
	lp_log(LP_LOG_INFO, "tree read-ahead: %s: %u chunks, %llu KiB of "
	       "small files like the ones opened in %u of its subdirectories",
	       path, n, (unsigned long long)(bytes >> 10),
	       DIRAHEAD_FAN_CHILDREN);
	dirahead_fetch(d, *v, n);
}

static void *dirahead_main(void *arg)
{
	struct dirahead *d = arg;
	uint32_t *v = NULL;
	size_t cap = 0;

	pthread_mutex_lock(&d->lock);
	for (;;) {
		struct dirahead_job j;

		while (!d->n && !d->stop)
			pthread_cond_wait(&d->cond, &d->lock);
		if (d->stop)
			break;
		j = d->q[d->head];
		d->head = (d->head + 1) % DIRAHEAD_QUEUE;
		d->n--;
		pthread_mutex_unlock(&d->lock);
		if (j.chunks) {
			mount_src_prefetch_gap(d->ms, j.chunks, j.n_chunks,
					 AHEAD_MAX_GAP);
			free(j.chunks);
		} else if (j.kind) {
			dirahead_tree(d, j.dir, j.kind, &v, &cap);
		} else {
			dirahead_dir(d, j.dir, &v, &cap);
		}
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	free(v);
	return NULL;
}

void dirahead_start(struct dirahead *d, struct mount_src *ms,
			   uint64_t cap)
{
	d->ms = ms;
	d->cap = cap;
	d->seen = lp_xcalloc(ms->m->n_inodes / 8 + 1, 1);
	d->fan = lp_xcalloc(DIRAHEAD_FAN_SLOTS, sizeof(*d->fan));
	d->queued = lp_xcalloc(ms->m->n_inodes / 8 + 1, 1);
	d->opens = lp_xcalloc(ms->m->n_inodes + 1, sizeof(*d->opens));
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	while (d->started < DIRAHEAD_THREADS &&
	       lp_thread_create(&d->thread[d->started], NULL, dirahead_main,
				d) == 0)
		d->started++;
}

/* through the FUSE server's chunk cache and decoded store: a chunk read
 * here is not decoded again when the program reads it */
static int64_t sf_read(void *arg, uint32_t ino, uint64_t off, void *buf,
		       size_t len)
{
	struct startfiles *sf = arg;

	return fsrv_read(sf->fs, ino, buf, len, off, NULL);
}

static void sf_fetch(void *arg, const uint32_t *ino, uint32_t n)
{
	struct startfiles *sf = arg;
	const struct model *m = sf->ms->m;
	_cleanup_free_ uint32_t *v = NULL;
	size_t cap = 0;
	uint32_t nv = 0;

	for (uint32_t i = 0; i < n; i++)
		add_chunks(m, ino[i], &v, &cap, &nv);
	fetch_chunks(sf->ms, v, nv);
}

bool startfiles_predicted(const struct startfiles *sf, uint32_t ino)
{
	return sf && sf->predicted &&
	       (__atomic_load_n(&sf->predicted[ino / 8], __ATOMIC_RELAXED) &
		(1u << (ino % 8)));
}

static bool is_library(const struct model *m, uint32_t ino)
{
	return file_kind(model_str(m, m->inodes[ino].name)) ==
	       kind_hash("so");
}

/*
 * An open: true if the start files' thread takes it, false if the caller
 * hands it to the directory read-ahead itself.  Taken: a shared library
 * (*.so*), to fetch what it needs; and while the start files are still
 * being found, any file not predicted yet (a program runs ahead of the
 * levels: an open the start files reach later is not a directory walk).
 * A taken open goes on to the read-ahead unless it turned out predicted.
 * In one queue, in the order of the opens, so the libraries a module
 * needs are marked predicted before their own opens are looked at.
 */
bool startfiles_note(struct startfiles *sf, uint32_t ino)
{
	const struct model *m;
	bool taken = false;

	if (!sf || !__atomic_load_n(&sf->running, __ATOMIC_ACQUIRE))
		return false;
	m = sf->ms->m;
	if (ino >= m->n_inodes || !S_ISREG(m->inodes[ino].mode))
		return false;
	if (!is_library(m, ino) &&
	    (!__atomic_load_n(&sf->in_run, __ATOMIC_ACQUIRE) ||
	     startfiles_predicted(sf, ino)))
		return false;
	pthread_mutex_lock(&sf->lock);
	if (sf->n < START_FILES_QUEUE) {
		sf->q[(sf->head + sf->n) % START_FILES_QUEUE] = ino;
		sf->n++;
		pthread_cond_signal(&sf->cond);
		taken = true;
	}
	pthread_mutex_unlock(&sf->lock);
	return taken;
}

/* the opens taken, until stopped */
static void startfiles_opens(struct startfiles *sf, struct startset *ss)
{
	pthread_mutex_lock(&sf->lock);
	for (;;) {
		uint32_t ino;

		while (!sf->n && !__atomic_load_n(&sf->stop, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&sf->cond, &sf->lock);
		if (__atomic_load_n(&sf->stop, __ATOMIC_ACQUIRE))
			break;
		ino = sf->q[sf->head];
		sf->head = (sf->head + 1) % START_FILES_QUEUE;
		sf->n--;
		pthread_mutex_unlock(&sf->lock);
		if (!startfiles_predicted(sf, ino)) {
			if (is_library(sf->ms->m, ino))
				startset_opened(ss, ino, &sf->stop);
			dirahead_note(sf->da, ino);
		}
		pthread_mutex_lock(&sf->lock);
	}
	pthread_mutex_unlock(&sf->lock);
}

static void *startfiles_main(void *arg)
{
	struct startfiles *sf = arg;
	const struct fetch_image_config *cfg = sf->config;
	struct startset_io io = { .read = sf_read, .fetch = sf_fetch,
				  .arg = sf, .mark = sf->predicted };
	const struct startset_stats *st;
	struct startset *ss = NULL;
	struct lp_err err = { 0 };
	uint64_t t0 = lp_now_ns();

	struct startset_opts o = {
		.argv = (const char *const *)cfg->argv, .argc = cfg->argc,
		.env = (const char *const *)cfg->env, .n_env = cfg->n_env,
		.workdir = cfg->workdir, .max_bytes = sf->max,
	};
	if (startset_new(sf->ms->m, &o, &io, &ss, &err) < 0) {
		lp_log(LP_LOG_INFO, "%s: no start files: %s", sf->name,
		       err.msg);
		return NULL;
	}
	__atomic_store_n(&sf->in_run, true, __ATOMIC_RELEASE);
	__atomic_store_n(&sf->running, true, __ATOMIC_RELEASE);
	startset_run(ss, &sf->stop);
	__atomic_store_n(&sf->in_run, false, __ATOMIC_RELEASE);
	st = startset_stats(ss);
	if (!st->program[0])
		lp_log(LP_LOG_INFO, "%s: no start files: %s is not in the "
		       "image", sf->name, cfg->argv[0]);
	else
		lp_log(LP_LOG_INFO, "%s: start files of %s: %u files, %llu "
		       "KiB, fetched in %u steps in %.0f ms%s", sf->name,
		       st->program, st->files,
		       (unsigned long long)(st->bytes >> 10), st->levels,
		       lp_ms_since(t0),
		       st->skipped ? " (some over the budget left out)" : "");
	startfiles_opens(sf, ss);
	__atomic_store_n(&sf->running, false, __ATOMIC_RELEASE);
	st = startset_stats(ss);
	lp_log(LP_LOG_INFO, "%s: start files: %u libraries looked at when "
	       "opened; %u files, %llu KiB fetched in all", sf->name,
	       st->opened, st->files, (unsigned long long)(st->bytes >> 10));
	startset_free(ss);
	return NULL;
}

void startfiles_start(struct startfiles *sf, struct mount_src *ms,
		      struct fsrv *fs, const struct fetch_image_config *config,
		      struct dirahead *da, const char *name, uint64_t max)
{
	sf->ms = ms;
	sf->fs = fs;
	sf->config = config;
	sf->da = da;
	sf->name = name;
	sf->max = max;
	pthread_mutex_init(&sf->lock, NULL);
	pthread_cond_init(&sf->cond, NULL);
	sf->started = lp_thread_create(&sf->thread, NULL, startfiles_main,
				       sf) == 0;
	if (!sf->started) {
		pthread_cond_destroy(&sf->cond);
		pthread_mutex_destroy(&sf->lock);
	}
}

static void startfiles_stop(struct startfiles *sf)
{
	pthread_mutex_lock(&sf->lock);
	__atomic_store_n(&sf->stop, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&sf->cond);
	pthread_mutex_unlock(&sf->lock);
	pthread_join(sf->thread, NULL);
}

void startfiles_release(struct startfiles *sf)
{
	if (sf->started) {
		startfiles_stop(sf);
		pthread_cond_destroy(&sf->cond);
		pthread_mutex_destroy(&sf->lock);
	}
	free(sf->predicted);
	sf->predicted = NULL;
}

void dirahead_stop(struct dirahead *d)
{
	if (!d->seen)
		return;
	if (d->started) {
		pthread_mutex_lock(&d->lock);
		d->stop = true;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
		for (unsigned t = 0; t < d->started; t++)
			pthread_join(d->thread[t], NULL);
	}
	for (; d->n; d->n--, d->head = (d->head + 1) % DIRAHEAD_QUEUE)
		free(d->q[d->head].chunks);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d->seen);
	free(d->queued);
	free(d->opens);
	free(d->fan);
	d->fan = NULL;
	d->seen = NULL;
	d->queued = NULL;
	d->opens = NULL;
}

