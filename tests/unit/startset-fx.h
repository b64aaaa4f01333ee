/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixture of the fs/startset tests (test-startset.c, test-startset-py.c):
 * a model built with the builder from files held in memory (fx_*), and an
 * io whose read() copies from memory and whose fetch() records the fetch
 * call (level) of each inode, checks each was marked before, and, strict,
 * counts reads of a file before its fetch returned.  The io is thread-safe:
 * a Python program's files are fetched from several threads at once.
 * Include after check.h (CHECK_WITH_MESSAGE) and elfgen.h.
 */
#ifndef LP_TEST_STARTSET_FX_H
#define LP_TEST_STARTSET_FX_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/startset.h"

#define STREQ(a, b) ((a) && (b) && !strcmp((a), (b)))
#define CHUNK (64u << 10)
#define MAX_FILES 2048

/* ---- the model ----------------------------------------------------------- */

struct file {
	char *path;
	uint8_t *data; /* NULL: reads fail (a file that must not be read) */
	size_t len;
};

struct fx {
	struct model_builder *b;
	struct model *m;
	uint32_t blob;
	uint64_t comp; /* next stored offset */
	struct file files[MAX_FILES];
	unsigned n_files;
	struct file **by_ino; /* after fx_finish */
};

static inline void fx_init(struct fx *fx)
{
	struct lp_err err = { 0 };

	memset(fx, 0, sizeof(*fx));
	fx->b = model_builder_new(0);
	CHECK(model_builder_add_blob(fx->b, "sha256:startset", NULL, 0,
				     &fx->blob, &err) == 0,
	      "blob: %s", err.msg);
}

static inline void fx_release(struct fx *fx)
{
	model_builder_free(fx->b);
	model_free(fx->m);
	for (unsigned i = 0; i < fx->n_files; i++) {
		free(fx->files[i].path);
		free(fx->files[i].data);
	}
	free(fx->by_ino);
	memset(fx, 0, sizeof(*fx));
}

static inline void fx_add(struct fx *fx, const char *path, enum model_type t,
		   uint32_t mode, uint64_t size, const char *link,
		   uint32_t *ret_id)
{
	struct model_entry e = { .path = path, .path_len = strlen(path),
				 .type = t, .mode = mode, .size = size };
	struct lp_err err = { 0 };

	if (link) {
		e.link = link;
		e.link_len = strlen(link);
	}
	CHECK(model_builder_add(fx->b, &e, ret_id, &err) == 0, "add %s: %s",
	      path, err.msg);
}

static inline void fx_dir(struct fx *fx, const char *path)
{
	fx_add(fx, path, MODEL_DIR, 0755, 0, NULL, NULL);
}

static inline void fx_link(struct fx *fx, const char *path, const char *target)
{
	fx_add(fx, path, MODEL_SYMLINK, 0777, strlen(target), target, NULL);
}

/* a regular file of len bytes (data, owned, may be NULL) in CHUNK chunks
 * stored as they are */
static inline void fx_file(struct fx *fx, const char *path, uint32_t mode,
		    uint8_t *data, size_t len)
{
	struct lp_err err = { 0 };
	uint32_t id = 0;

	fx_add(fx, path, MODEL_REG, mode, len, NULL, &id);
	for (uint64_t off = 0; off < len; off += CHUNK) {
		struct model_chunk c = { .file_off = off,
					 .len = len - off < CHUNK ? len - off
								  : CHUNK,
					 .blob = fx->blob };

		c.comp_off = fx->comp;
		c.comp_len = c.len;
		fx->comp += c.len;
		CHECK(model_builder_add_chunk(fx->b, id, &c, &err) == 0,
		      "chunk of %s: %s", path, err.msg);
	}
	if (fx->n_files == MAX_FILES) {
		failures++;
		free(data);
		return;
	}
	fx->files[fx->n_files].path = lp_xstrdup(path);
	fx->files[fx->n_files].data = data;
	fx->files[fx->n_files++].len = len;
}

static inline void fx_text(struct fx *fx, const char *path, uint32_t mode,
		    const char *text)
{
	fx_file(fx, path, mode, (uint8_t *)lp_xstrdup(text), strlen(text));
}

/* a synthetic x86_64 ELF: interp may be NULL, needed NULL-terminated */
static inline void fx_elf(struct fx *fx, const char *path, const char *interp,
		   const char *const *needed, const char *runpath,
		   size_t min_size)
{
	struct elfgen g = { .elf64 = true, .machine = 62, .interp = interp,
			    .needed = needed, .runpath = runpath,
			    .min_size = min_size };
	struct elfgen_out o;

	while (needed && needed[g.n_needed])
		g.n_needed++;
	elfgen_build(&g, &o);
	fx_file(fx, path, 0755, o.data, o.len);
}

static inline void fx_finish(struct fx *fx)
{
	struct lp_err err = { 0 };

	CHECK(model_builder_finish(fx->b, &fx->m, &err) == 0, "finish: %s",
	      err.msg);
	fx->b = NULL;
	if (!fx->m)
		return;
	fx->by_ino = lp_xcalloc(fx->m->n_inodes, sizeof(*fx->by_ino));
	for (unsigned i = 0; i < fx->n_files; i++) {
		uint32_t ino = model_lookup_path(fx->m, fx->files[i].path);

		CHECK(ino && S_ISREG(fx->m->inodes[ino].mode), "%s",
		      fx->files[i].path);
		if (ino)
			fx->by_ino[ino] = &fx->files[i];
	}
}

/* the inode at path, no symlink followed */
static inline uint32_t ino_of(const struct fx *fx, const char *path)
{
	uint32_t ino = model_lookup_path(fx->m, path);

	CHECK(ino, "no %s in the model", path);
	return ino;
}

/* ---- the recording io ---------------------------------------------------- */

struct rec {
	struct fx *fx;
	pthread_mutex_t lock; /* fetch() runs on several threads */
	uint32_t *level;  /* per inode: the fetch call that had it, 0 none;
			   * set when that call returns */
	uint8_t *busy;	  /* per inode: a fetch call has it */
	uint32_t calls;	  /* fetch calls */
	uint32_t call_n[32]; /* files per call */
	uint32_t dup;	  /* an inode fetched twice */
	uint32_t unmarked; /* fetched without its mark bit */
	uint32_t early;	  /* reads of a file before its fetch (strict) */
	uint32_t reads;
	uint32_t inflight, max_inflight; /* fetch calls at once */
	unsigned delay_us; /* each fetch call takes this long */
	/* a call with a file whose path holds slow[i].part takes
	 * slow[i].us instead (the first that matches) */
	struct rec_slow {
		const char *part;
		unsigned us;
	} slow[2];
	bool *stop;	  /* set when fetch call stop_after starts */
	uint32_t stop_after;
	bool strict;
	uint8_t *mark;
};

static inline int64_t rec_read(void *arg, uint32_t ino, uint64_t off, void *buf,
			size_t len)
{
	struct rec *r = arg;
	const struct file *f = ino < r->fx->m->n_inodes ? r->fx->by_ino[ino]
							: NULL;

	pthread_mutex_lock(&r->lock);
	r->reads++;
	if (r->strict && (ino >= r->fx->m->n_inodes || !r->level[ino]))
		r->early++;
	pthread_mutex_unlock(&r->lock);
	if (!f || !f->data)
		return -EIO;
	if (off >= f->len)
		return 0;
	if (len > f->len - off)
		len = f->len - off;
	memcpy(buf, f->data + off, len);
	return (int64_t)len;
}

static inline void rec_fetch(void *arg, const uint32_t *ino, uint32_t n)
{
	struct rec *r = arg;
	unsigned delay = r->delay_us;
	uint32_t call;

	for (uint32_t i = 0; r->slow[0].part && i < n; i++) {
		char path[PATH_MAX];

		if (model_path(r->fx->m, ino[i], path, sizeof(path)) < 0)
			continue;
		for (unsigned k = 0; k < ARRAY_SIZE(r->slow); k++)
			if (r->slow[k].part && strstr(path, r->slow[k].part)) {
				delay = r->slow[k].us;
				break;
			}
	}
	pthread_mutex_lock(&r->lock);
	call = ++r->calls;
	if (call <= ARRAY_SIZE(r->call_n))
		r->call_n[call - 1] = n;
	if (++r->inflight > r->max_inflight)
		r->max_inflight = r->inflight;
	for (uint32_t i = 0; i < n; i++) {
		if (ino[i] >= r->fx->m->n_inodes) {
			failures++;
			continue;
		}
		if (r->level[ino[i]] || r->busy[ino[i]])
			r->dup++;
		r->busy[ino[i]] = 1;
		if (!(__atomic_load_n(&r->mark[ino[i] / 8], __ATOMIC_RELAXED) &
		      (1u << (ino[i] % 8))))
			r->unmarked++;
	}
	if (r->stop && call >= r->stop_after)
		__atomic_store_n(r->stop, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&r->lock);
	/* the bytes coming in: a read of these files now is too early */
	if (delay)
		usleep(delay);
	else
		sched_yield();
	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < n; i++)
		if (ino[i] < r->fx->m->n_inodes)
			r->level[ino[i]] = call;
	r->inflight--;
	pthread_mutex_unlock(&r->lock);
}

static inline void rec_init(struct rec *r, struct fx *fx)
{
	memset(r, 0, sizeof(*r));
	r->fx = fx;
	pthread_mutex_init(&r->lock, NULL);
	r->level = lp_xcalloc(fx->m->n_inodes, sizeof(*r->level));
	r->busy = lp_xcalloc(fx->m->n_inodes, 1);
	r->mark = lp_xcalloc(fx->m->n_inodes / 8 + 1, 1);
	r->strict = true;
}

static inline void rec_release(struct rec *r)
{
	pthread_mutex_destroy(&r->lock);
	free(r->busy);
	free(r->level);
	free(r->mark);
}

static inline uint32_t rec_fetched(const struct rec *r)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->fx->m->n_inodes; i++)
		n += r->level[i] != 0;
	return n;
}

/* the mark bitmap holds exactly the fetched inodes */
static inline bool rec_marks_match(const struct rec *r)
{
	for (uint32_t i = 0; i < r->fx->m->n_inodes; i++)
		if (!!(r->mark[i / 8] & (1u << (i % 8))) != !!r->level[i])
			return false;
	return true;
}

static inline uint32_t lvl(const struct rec *r, const char *path)
{
	uint32_t ino = ino_of(r->fx, path);

	return ino ? r->level[ino] : UINT32_MAX;
}

static inline uint64_t stored(const struct fx *fx, const char *path)
{
	return model_file_stored(fx->m, ino_of(fx, path));
}

struct run_opts {
	const char *const *argv;
	const char *const *env;
	const char *workdir;
	uint64_t max_bytes;
	const bool *stop;
	unsigned delay_us; /* of each fetch call */
	struct rec_slow slow[2]; /* see struct rec */
	bool *stop_at;	   /* set by fetch call stop_after */
	uint32_t stop_after;
};

/* a start set of fx for o, run; the caller frees it */
static struct startset *run(struct fx *fx, struct rec *r,
			    const struct run_opts *ro)
{
	struct startset_opts o = { .argv = ro->argv, .env = ro->env,
				   .workdir = ro->workdir,
				   .max_bytes = ro->max_bytes };
	struct startset_io io = { .read = rec_read, .fetch = rec_fetch };
	struct startset *s = NULL;
	struct lp_err err = { 0 };

	rec_init(r, fx);
	r->delay_us = ro->delay_us;
	memcpy(r->slow, ro->slow, sizeof(r->slow));
	r->stop = ro->stop_at;
	r->stop_after = ro->stop_after;
	io.arg = r;
	io.mark = r->mark;
	while (o.argv[o.argc])
		o.argc++;
	while (o.env && o.env[o.n_env])
		o.n_env++;
	if (startset_new(fx->m, &o, &io, &s, &err) < 0) {
		fprintf(stderr, "startset_new: %s\n", err.msg);
		failures++;
		return NULL;
	}
	startset_run(s, ro->stop);
	/* every fetched file was marked first, once */
	CHECK(r->dup == 0, "%u fetched twice", r->dup);
	CHECK(r->unmarked == 0, "%u fetched unmarked", r->unmarked);
	CHECK(rec_marks_match(r), "marks are not the fetched files");
	CHECK(r->early == 0, "%u reads before the fetch", r->early);
	return s;
}

#endif
