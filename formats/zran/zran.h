/* SPDX-License-Identifier: Apache-2.0 */
/*
 * formats/zran: plain gzip layers ("zran").
 *
 * A plain OCI gzip layer has no index, so one streaming pass builds one:
 * checkpoints at deflate block boundaries (input position, pending bits, the
 * byte holding them and the 32 KiB window), plus the tar listing with each
 * regular file cut into chunks that each decode from exactly one
 * checkpoint.  Any chunk is then read by restoring its checkpoint and
 * inflating a short span, never from the start of the stream.  The index
 * can be saved to a versioned, checksummed file and loaded back without
 * touching the layer.
 *
 * The module also parses tar streams (zran_tar_*) and nydus' zran blob-meta
 * layout (zran_nydus_*).
 */
#ifndef LP_FORMATS_ZRAN_H
#define LP_FORMATS_ZRAN_H

#include "common/common.h"
#include "fs/model.h"

/* ---- tar -------------------------------------------------------------- */

struct zran_tar_xattr {
	const char *name;	/* NUL-terminated, without "SCHILY.xattr." */
	const uint8_t *value;
	size_t value_len;
};

/*
 * One tar entry after merging GNU long names and PAX records.  Pointers are
 * valid only during the callback.  type is never MODEL_SOCK; hardlinks are
 * MODEL_HARDLINK with link = the target name.
 */
struct zran_tar_entry {
	const char *path; /* as stored, NUL-terminated, not cleaned */
	size_t path_len;
	const char *link; /* symlink target or hardlink target; "" if none */
	size_t link_len;
	enum model_type type;
	uint32_t mode; /* 07777 bits */
	uint32_t uid, gid;
	uint64_t size; /* data bytes that follow (regular files only) */
	int64_t mtime;
	uint32_t dev_major, dev_minor;
	const struct zran_tar_xattr *xattrs;
	size_t n_xattrs;
	uint64_t hdr_off;  /* tar offset of the entry's first header block
			      (including its PAX / long-name headers) */
	uint64_t data_off; /* tar offset of the first data byte */
};

struct zran_tar_ops {
	/* Called once per entry, before its data. */
	int (*entry)(void *data, const struct zran_tar_entry *e,
		     struct lp_err *err);
	/* Regular file data, in order; tar_off is the tar offset of buf[0].
	 * Optional. */
	int (*file_data)(void *data, const void *buf, size_t len,
			 uint64_t tar_off, struct lp_err *err);
};

struct zran_tar;

/* A streaming tar parser: feed it the uncompressed tar bytes in pieces of
 * any size. */
struct zran_tar *zran_tar_new(const struct zran_tar_ops *ops, void *data);
/*
 * Consumes len bytes.  Errors (-EINVAL, -EOPNOTSUPP for GNU sparse and
 * other unsupported entries, -E2BIG for oversized metadata) name the entry
 * and its tar offset.  After an error the parser refuses more input.
 */
int zran_tar_feed(struct zran_tar *t, const void *buf, size_t len,
		  struct lp_err *err);
/* Checks the stream ended at an entry boundary (an end-of-archive marker
 * is optional). */
int zran_tar_finish(struct zran_tar *t, struct lp_err *err);
/* Bytes consumed so far. */
uint64_t zran_tar_offset(const struct zran_tar *t);
void zran_tar_free(struct zran_tar *t);

/* Parses a whole tar in memory: feed + finish.  For tests and fuzzers. */
int zran_tar_parse(const void *data, size_t size,
		   const struct zran_tar_ops *ops, void *cbdata,
		   struct lp_err *err);

/* ---- the checkpoint index --------------------------------------------- */

#define ZRAN_WINDOW_SIZE 32768u
/* Default distance between checkpoints, in uncompressed bytes (see the
 * measurements in index.c). */
#define ZRAN_DEFAULT_SPAN (256u << 10)
#define ZRAN_MIN_SPAN (64u << 10)
#define ZRAN_MAX_SPAN (64u << 20)
/* Default largest chunk; chunks are also cut at every checkpoint. */
#define ZRAN_DEFAULT_CHUNK (1u << 20)
#define ZRAN_MIN_CHUNK 4096u
#define ZRAN_MAX_CHUNK (16u << 20)

struct zran_index;

/* Progress: bytes of the gzip stream read so far, of total. */
typedef void (*zran_progress_fn)(uint64_t done, uint64_t total, void *data);

struct zran_build_opts {
	uint32_t span;	    /* 0 = ZRAN_DEFAULT_SPAN */
	uint32_t chunk_max; /* 0 = ZRAN_DEFAULT_CHUNK */
	zran_progress_fn progress; /* may be NULL; called about every MiB */
	void *progress_data;
};

/*
 * One streaming pass over a gzip stream (single or multi-member): inflates
 * it, records checkpoints, parses the tar and cuts regular files into
 * chunks with sha256 digests of their uncompressed bytes.  opts may be
 * NULL.  Errors name the gzip or tar offset.
 */
int zran_index_build(struct lp_source *src, const struct zran_build_opts *opts,
		     struct zran_index **ret, struct lp_err *err);

void zran_index_free(struct zran_index *idx);
static inline void zran_index_freep(struct zran_index **p)
{
	zran_index_free(*p);
}

struct zran_index_stats {
	uint64_t gzip_size;  /* bytes of the gzip stream */
	uint64_t tar_size;   /* uncompressed bytes */
	uint32_t span, chunk_max;
	uint32_t n_checkpoints, n_entries, n_chunks, n_members;
	uint8_t gzip_sha256[32]; /* digest of the gzip stream (the layer) */
};
void zran_index_stats(const struct zran_index *idx,
		      struct zran_index_stats *ret);

/*
 * The index file: "LPZRAN01", a version, the sha256 of the payload, then
 * the payload (checkpoints with deflated windows, the tar listing with
 * xattrs, the chunk table).  serialize returns a malloc'd buffer.
 */
#define ZRAN_INDEX_MAGIC "LPZRAN01"
#define ZRAN_INDEX_VERSION 1u
int zran_index_serialize(const struct zran_index *idx, uint8_t **ret_buf,
			 size_t *ret_len, struct lp_err *err);
int zran_index_save(const struct zran_index *idx, const char *path,
		    struct lp_err *err);
/*
 * Saves a built index (its windows in memory) to path like
 * zran_index_save, then leaves its windows there: idx reads them from the
 * file it wrote, as a loaded index does, and frees its copy.  Spares
 * loading the file back (which checks that every window inflates).
 */
int zran_index_save_keep(struct zran_index *idx, const char *path,
			 struct lp_err *err);
/*
 * Parses and validates an index file image: magic, version, checksum,
 * counts, monotonic offsets, window sizes, bit counts, chunk ranges.  A
 * corrupt index is -EBADMSG (-EPROTONOSUPPORT for another version) with a
 * message saying what is wrong.
 */
int zran_index_parse(const void *data, size_t size, struct zran_index **ret,
		     struct lp_err *err);
int zran_index_load(const char *path, struct zran_index **ret,
		    struct lp_err *err);

/*
 * Builds the model from the index alone (no decompression): one blob,
 * "sha256:<digest of the gzip stream>", whose chunks are MODEL_CODEC_ZRAN.
 */
int zran_index_model(const struct zran_index *idx, struct model **ret,
		     struct lp_err *err);

/*
 * Random access: stored holds the gzip stream bytes [c->comp_off,
 * c->comp_off + stored_len) (stored_len may be less than c->comp_len only
 * at the end of the stream).  Restores checkpoint c->aux, skips c->aux_off
 * bytes and writes exactly c->len bytes to out.  Does not verify.  The
 * checkpoint's window is inflated for the restore from its stored form
 * (read from the index file if the index was loaded from one): one that
 * no longer reads back intact is -EIO.
 * Thread-safe: the index is read-only except for a small locked cache of
 * live inflate streams, so chunks of one span read in order (small files,
 * a prefetch) continue where the previous one stopped instead of
 * inflating the span's head again.
 */
int zran_index_decode(const struct zran_index *idx, const struct model_chunk *c,
		      const void *stored, size_t stored_len, void *out,
		      struct lp_err *err);

/* Reads uncompressed bytes [off, off + len) of the tar stream from the
 * gzip source, through the nearest checkpoint.  For tests and tools. */
int zran_index_read(const struct zran_index *idx, struct lp_source *src,
		    uint64_t off, void *buf, size_t len, struct lp_err *err);

/* ---- format_ops ------------------------------------------------------- */

/*
 * name "zran".  probe: gzip magic 1f 8b 08 at offset 0 (the engine tries the
 * eStargz readers first).  load: zran_index_build over the source with the
 * default options.  The context is the index.
 */
extern const struct format_ops zran_ops;

/* Wraps an index as a zran_ops context (takes ownership) and back. */
struct format_ctx *zran_ctx_from_index(struct zran_index *idx);
const struct zran_index *zran_ctx_index(const struct format_ctx *ctx);

/*
 * `--index IDX`: loads an index file and its model without reading the
 * layer.  If src is not NULL its size must match the index.  ret_ctx works
 * with zran_ops.decode_chunk / destroy; like every context the loads
 * return, it keeps only the checkpoints (the listing is in the model), and
 * their windows stay in the file, read when a decode starts from one.
 */
int zran_load_index_file(const char *path, struct lp_source *src,
			 struct model **ret_model, struct format_ctx **ret_ctx,
			 struct format_info *info, struct lp_err *err);

/* Like zran_load_index_file for an index built in memory (taken, freed on
 * failure too). */
int zran_load_built(struct zran_index *idx, struct lp_source *src,
		    struct model **ret_model, struct format_ctx **ret_ctx,
		    struct format_info *info, struct lp_err *err);

/* Like zran_ops.load with explicit options and progress (for the CLI). */
int zran_load_with(struct lp_source *src, const struct zran_build_opts *opts,
		   struct model **ret_model, struct format_ctx **ret_ctx,
		   struct format_info *info, struct lp_err *err);

/* ---- nydus zran blob-meta --------------------------------------------- */

/* A ZranInflateContext (rafs-nydus-spec §3.3). */
struct zran_nydus_ctx {
	uint64_t in_off, out_off, dict_off;
	uint32_t in_len, out_len, dict_size;
	uint8_t ctx_byte, ctx_bits;
};

/* A v2 CI entry with the ZRAN flag. */
struct zran_nydus_chunk {
	uint64_t comp_off;   /* where its bytes were consumed (informative) */
	uint32_t comp_size;
	uint64_t uncomp_off; /* slot in the 4K-aligned view */
	uint32_t uncomp_size;
	uint8_t flags;
	uint32_t ctx;	     /* zran context index */
	uint32_t ctx_off;    /* offset in the context's output */
};

struct zran_nydus_meta {
	uint32_t features;
	uint32_t n_chunks, n_ctx;
	struct zran_nydus_chunk *chunks;
	struct zran_nydus_ctx *ctx;
	uint8_t *dict; /* the dictionary table */
	uint64_t dict_len;
};

#define ZRAN_NYDUS_META_MAGIC 0xB10BB10Bu
/*
 * Parses a `<blob_id>.blob.meta` cache file (uncompressed CI area, padded
 * to 4 KiB, then the 4096-byte header) with v2 CI entries and zran
 * contexts.  Everything is bounds-checked; -EBADMSG on a corrupt file,
 * -EOPNOTSUPP for a compressed CI or non-zran chunks.
 */
int zran_nydus_meta_parse(const void *data, size_t size,
			  struct zran_nydus_meta **ret, struct lp_err *err);
void zran_nydus_meta_free(struct zran_nydus_meta *m);
/*
 * Decodes chunk i: stored holds the gzip stream bytes [ctx.in_off,
 * ctx.in_off + stored_len) of its context (stored_len ≤ ctx.in_len).
 * Writes uncomp_size bytes to out.
 */
int zran_nydus_decode(const struct zran_nydus_meta *m, uint32_t i,
		      const void *stored, size_t stored_len, void *out,
		      struct lp_err *err);

#endif
