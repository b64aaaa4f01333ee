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
	/* or one built in memory: taken by engine_open (freed on failure
	 * too) */
	struct zran_index *zran_built;
	/*
	 * Opens a model blob other than the layer itself (a RAFS data blob)
	 * by its id as the model names it (64 hex digits or "sha256:…"),
	 * e.g. from the registry; tried before blob_dir.  Called at most
	 * once per blob at a time, from any thread, when a chunk of the blob
	 * is first needed; a failure is retried on the next read.
	 */
	int (*open_blob)(void *arg, const char *id, struct lp_source **ret,
			 struct lp_err *err);
	void *open_blob_arg;
};

struct engine_layer {
	struct lp_source *src; /* the layer / bootstrap itself (blob 0) */
	struct lp_source **blob_src; /* per model blob, opened lazily */
	const struct format_ops *ops;
	struct format_ctx *ctx;
	struct model *model;
	struct format_info info;
	char *blob_dir;
	int (*open_blob)(void *arg, const char *id, struct lp_source **ret,
			 struct lp_err *err);
	void *open_blob_arg;
	/* the last decoded chunk, so sequential reads decode once */
	void *last_buf;	    /* protected by last_lock */
	int64_t last_idx;   /* protected by last_lock; -1 = none */
	void *last_lock;    /* pthread_mutex_t */
	/* the last chunk whose stored bytes could not be read (protected by
	 * last_lock): read again within ENGINE_FAIL_HOLD_MS, it fails at
	 * once with the same error */
	uint64_t fail_at_ns; /* 0 = none */
	uint32_t fail_blob;
	uint64_t fail_off;
	struct lp_err fail_err;
	/* a merged image (engine_merge): chunk reads go to these layers */
	struct engine_layer **sub;
	uint32_t n_sub;
	uint32_t *sub_blob_base; /* first merged blob index of each layer */
	/* statistics, updated by reads */
	uint64_t stored_bytes_read;
	uint64_t chunks_decoded;
};

/* Picks the reader for src: 0 and *ret, or -EPROTONOSUPPORT. */
/* Is format a reader of the eStargz family (a TOC: estargz, stargz,
 * zstd:chunked)? */
bool engine_stargz_family(const char *format);

int engine_detect(struct lp_source *src, const struct format_hints *h,
		  const struct format_ops **ret, struct lp_err *err);

/* Opens a layer; takes ownership of src (freed on failure too). */
int engine_open(struct lp_source *src, const struct engine_opts *o,
		struct engine_layer **ret, struct lp_err *err);
/*
 * Saves the model of layer l (opened by engine_open, not merged) for
 * engine_open_saved() (fs/modelfile.h); producer names this build.
 * -EOPNOTSUPP for a reader whose models are not saved (only the eStargz
 * family's are: they come from a TOC that is slow to parse).
 */
int engine_save_model(const struct engine_layer *l, const char *producer,
		      const char *path, struct lp_err *err);
/*
 * Opens src with the model saved at path instead of loading it from src:
 * the reader, the blob size and o->hints' TOC digest must match.  Takes
 * src on success only: on failure (-ENOENT: no such file; -ESTALE: saved
 * by another build or for another blob; -EBADMSG: a corrupt file) the
 * caller still owns it and can engine_open() it.
 */
int engine_open_saved(struct lp_source *src, const struct engine_opts *o,
		      const char *producer, const char *path,
		      struct engine_layer **ret, struct lp_err *err);
/* Opens a local file. */
int engine_open_path(const char *path, const struct engine_opts *o,
		     struct engine_layer **ret, struct lp_err *err);
void engine_close(struct engine_layer *l);
static inline void engine_closep(struct engine_layer **l)
{
	engine_close(*l);
}

/*
 * The source of model blob idx (blob 0 is the layer unless the model names
 * other blobs), opened on first use; thread-safe.  The source stays owned
 * by the layer.
 */
int engine_blob_source(struct engine_layer *l, uint32_t idx,
		       struct lp_source **ret, struct lp_err *err);

/*
 * Merges opened layers (layers[0] lowest) into one image view: the model is
 * model_merge() of theirs (OCI whiteouts applied), and every chunk read is
 * served by the layer it came from.  Takes ownership of the layers (freed
 * on failure too); name is used in messages.
 */
int engine_merge(struct engine_layer **layers, uint32_t n, const char *name,
		 struct engine_layer **ret, struct lp_err *err);

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

/* ---- background prefetch (fs/prefetch.c) ------------------------------- */

/*
 * A prefetcher brings chunks of a set of open layers into their sources'
 * caches on one background thread, and decodes and verifies each chunk on
 * the way (a chunk whose cached bytes fail is fetched once more, as for
 * any read), so later reads find verified bytes on local disk.
 *
 * Order: first the chunks the image marks as wanted at start, per layer —
 * eStargz/zstd:chunked files before the .prefetch.landmark (the stored
 * range [0, info.prefetch_offset) is fetched as one range first), the
 * files and directories of a RAFS prefetch table —, then, with opts.all,
 * every other chunk of every layer in blob order.
 *
 * It always yields to on-demand reads: callers bracket each read that
 * goes to a source with engine_prefetch_demand_begin/end, and the
 * prefetcher starts no fetch and no decode while any is in flight or
 * until idle_ms after the last one ended.  Fetches are cut into batches of
 * at most batch_bytes, and the thread runs at a lower CPU priority.
 */
struct engine_prefetch_opts {
	bool all;	      /* then every other chunk (--prefetch-all) */
	uint64_t batch_bytes; /* stored bytes per fetch; 0 = 2 MiB */
	unsigned idle_ms;     /* quiet time after on-demand reads; 0 = 5 */
	int nice;	      /* thread niceness; 0 = 10, < 0 = unchanged */
	const char *name;     /* image named in log lines; may be NULL */
	/* an access trace (fs/trace.h): absolute paths of the merged tree,
	 * prefetched as priority files after the landmarks, each from the
	 * topmost of layers (bottom first) that has it; copied */
	const char *const *trace;
	uint32_t n_trace;
};

struct engine_prefetch_stats {
	uint64_t chunks_planned;  /* distinct chunks in the plan */
	uint64_t chunks_priority; /* of which landmark / RAFS table */
	uint64_t chunks_done;	  /* fetched and verified (or no digest) */
	uint64_t chunks_failed;
	uint64_t bytes_stored;	  /* stored bytes of the chunks done */
	uint64_t yields;	  /* waits for on-demand reads */
	bool priority_done;	  /* the priority part is finished */
	bool finished;		  /* the whole plan is finished */
	double seconds;		  /* from start to finished (or now) */
};

struct engine_prefetch;

/*
 * Starts the prefetcher over layers[0..n) (borrowed: they must stay open
 * until engine_prefetch_stop).  When nothing is to be fetched (no landmark,
 * no table, !all) *ret is set to NULL and 0 returned.
 */
int engine_prefetch_start(struct engine_layer *const *layers, uint32_t n,
			  const struct engine_prefetch_opts *o,
			  struct engine_prefetch **ret, struct lp_err *err);
/* Stops the thread (at the next chunk), joins it and frees; accepts NULL. */
void engine_prefetch_stop(struct engine_prefetch *p);

/*
 * Warming (`lazypull probe --warm`): fetches, without decoding, what a
 * prefetcher of l would fetch first — its landmark range, the files of
 * the access trace that l holds — into its source's cache, on the
 * calling thread, one request batch of at most o->step bytes at a time
 * (o->busy_step while o->busy()).  Another process's prefetcher
 * of the same blob waits for it meanwhile (lp_source_warming).  -EIO if
 * a fetch failed (logged; the daemon's reads fetch it again).
 */
struct engine_warm_stats {
	uint64_t range;	       /* landmark range [0, range) */
	uint32_t chunks;       /* chunks planned (landmark + trace) */
	uint32_t trace_chunks; /* of which for the trace's files */
	uint64_t bytes;	       /* stored bytes planned */
	uint32_t failed;       /* fetches that failed */
};
struct engine_warm_opts {
	const char *const *trace; /* access trace paths, or NULL */
	uint32_t n_trace;
	uint64_t step;		  /* bytes per request batch; 0 = 8 MiB */
	uint64_t busy_step;	  /* ... while busy() says so; 0 = 256 KiB */
	/* asked before each batch: are more urgent fetches under way? */
	bool (*busy)(void *arg);
	void *arg;
};
int engine_warm(struct engine_layer *l, const struct engine_warm_opts *o,
		struct engine_warm_stats *ret);
/* On-demand reads in flight: cheap (atomics); accept NULL. */
void engine_prefetch_demand_begin(struct engine_prefetch *p);
void engine_prefetch_demand_end(struct engine_prefetch *p);
void engine_prefetch_get_stats(struct engine_prefetch *p,
			       struct engine_prefetch_stats *ret);

/*
 * The priority chunks of layer l alone, as indices into l->model->chunks
 * in fetch order (deduplicated), and the stored range [0, *ret_range) of
 * blob 0 to fetch first (0 = none).  *ret is malloc'ed (NULL when empty).
 */
int engine_prefetch_plan(const struct engine_layer *l, uint32_t **ret,
			 uint32_t *ret_n, uint64_t *ret_range);

#endif
