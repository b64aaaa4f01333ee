/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/engine: opens a layer — detects its format by probing every reader in
 * turn, loads the model — and reads file data through it: stored bytes ->
 * decode -> verify, never returning a byte that did not verify.
 */
#ifndef LP_FS_ENGINE_H
#define LP_FS_ENGINE_H

#include "fs/model.h"

/* Every reader built in, in probe order (NULL-terminated). */
extern const struct format_ops *const engine_formats[];

struct engine_opts {
	const struct format_hints *hints; /* may be NULL */
	const char *format;   /* force a reader by name; NULL = probe */
	const char *blob_dir; /* where blobs other than the layer live */
	const char *zran_index; /* a saved zran index for a plain gzip layer */
};

struct engine_layer {
	struct lp_source *src; /* the layer / bootstrap itself (blob 0) */
	struct lp_source **blob_src; /* per model blob, opened lazily */
	const struct format_ops *ops;
	struct format_ctx *ctx;
	struct model *model;
	struct format_info info;
	char *blob_dir;
	/* the last decoded chunk, so sequential reads decode once */
	void *last_buf;	    /* protected by last_lock */
	int64_t last_idx;   /* protected by last_lock; -1 = none */
	void *last_lock;    /* pthread_mutex_t */
	/* statistics, updated by reads */
	uint64_t stored_bytes_read;
	uint64_t chunks_decoded;
};

/* Picks the reader for src: 0 and *ret, or -EPROTONOSUPPORT. */
int engine_detect(struct lp_source *src, const struct format_hints *h,
		  const struct format_ops **ret, struct lp_err *err);

/* Opens a layer; takes ownership of src (freed on failure too). */
int engine_open(struct lp_source *src, const struct engine_opts *o,
		struct engine_layer **ret, struct lp_err *err);
/* Opens a local file. */
int engine_open_path(const char *path, const struct engine_opts *o,
		     struct engine_layer **ret, struct lp_err *err);
void engine_close(struct engine_layer *l);
static inline void engine_closep(struct engine_layer **l)
{
	engine_close(*l);
}

/* Largest chunk the engine decodes (it is held in memory to verify). */
#define ENGINE_MAX_CHUNK (256ull << 20)

/*
 * Reads, decodes and verifies chunk idx of the model into out (exactly
 * chunks[idx].len bytes).  -EBADMSG on a digest mismatch or corrupt data,
 * -ENODATA if the chunk has no digest to verify against.
 */
int engine_read_chunk(struct engine_layer *l, uint32_t idx, void *out,
		      struct lp_err *err);

/*
 * The same for a chunk record that need not be in l->model (a merged
 * model's chunk, with c->blob rebased to an index into l->model->blobs).
 * Safe to call from many threads at once.
 */
int engine_read_chunk_rec(struct engine_layer *l, const struct model_chunk *c,
			  void *out, struct lp_err *err);

/*
 * Fetches the stored bytes of every chunk of [off, off+len) of file ino
 * ahead of time, in as few requests as the source can (a registry blob
 * merges them); best effort, no-op for local files.
 */
void engine_prefetch_range(struct engine_layer *l, uint32_t ino, uint64_t off,
			   uint64_t len);

/* Reads up to len bytes of regular file ino at off; returns bytes or
 * -errno.  Only chunks that overlap the range are decoded. */
int64_t engine_read(struct engine_layer *l, uint32_t ino, void *buf,
		    size_t len, uint64_t off, struct lp_err *err);

#endif
