/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/model: the unified read-only inode/chunk model every format reader
 * fills and the FUSE server serves.
 *
 * A model is immutable once built: flat arrays (inodes, dirents, xattrs,
 * chunks, blobs) plus one string arena, indexed by 32-bit ids, never
 * pointers, so it can be read lock-free from many threads.
 *
 * Readers do not build the arrays themselves.  They feed a model_builder
 * with entries named by path, in any order (a tar/TOC order); the builder
 * cleans names, lets the last duplicate win, synthesises missing parent
 * directories, resolves hardlinks (chains, to symlinks, forward references),
 * sorts directory children and computes nlink.
 */
#ifndef LP_FS_MODEL_H
#define LP_FS_MODEL_H

#include "common/common.h"

#define MODEL_ROOT_INO 1u /* inode ids start at 1; 0 means "none" */
#define MODEL_NONE 0u

enum model_type {
	MODEL_DIR = 1,
	MODEL_REG,
	MODEL_SYMLINK,
	MODEL_CHAR,
	MODEL_BLOCK,
	MODEL_FIFO,
	MODEL_SOCK,
	MODEL_HARDLINK, /* builder input only: a name for another entry */
};
const char *model_type_name(enum model_type t); /* "dir", "reg", ... */
/* The type of st_mode-style bits: 0, or -EINVAL for no known type. */
int model_type_from_mode(uint32_t mode, enum model_type *ret);

/* How a chunk's stored bytes turn into its uncompressed bytes. */
enum model_codec {
	MODEL_CODEC_NONE = 0,	  /* stored bytes are the data */
	MODEL_CODEC_GZIP_MEMBER, /* eStargz: a gzip member starting at comp_off */
	MODEL_CODEC_ZSTD_FRAME,  /* zstd:chunked: a zstd frame at comp_off */
	MODEL_CODEC_ZRAN,	  /* gzip span: aux = checkpoint, aux_off = skip */
	MODEL_CODEC_RAFS_ZSTD,	  /* RAFS native chunk, zstd */
	MODEL_CODEC_RAFS_LZ4,	  /* RAFS native chunk, lz4_block */
	MODEL_CODEC_RAFS_GZIP,	  /* RAFS native chunk, gzip */
};

enum model_digest_alg {
	MODEL_DIGEST_NONE = 0,
	MODEL_DIGEST_SHA256,
	MODEL_DIGEST_BLAKE3,
};

/*
 * One piece of a regular file's data.  Chunks of a file are contiguous in
 * model.chunks, sorted by file_off, and cover [0, size) without gaps.
 */
struct model_chunk {
	uint64_t file_off; /* offset of this chunk in the file */
	uint64_t len;	   /* uncompressed length */
	uint64_t comp_off; /* blob offset of the stored bytes */
	uint64_t comp_len; /* stored length (an upper bound for GZIP_MEMBER) */
	uint64_t aux_off;  /* codec-specific: zran skip into the span output;
			      RAFS uncompressed offset in the blob */
	uint32_t aux;	   /* codec-specific: zran checkpoint index; RAFS chunk
			      index in its blob */
	uint32_t blob;	   /* index into model.blobs */
	uint8_t codec;	   /* enum model_codec */
	uint8_t digest_alg; /* enum model_digest_alg; NONE = unverifiable */
	uint16_t flags;
	uint8_t digest[32]; /* of the uncompressed bytes */
};

/* A blob holding chunk bytes: a layer, a RAFS data blob. */
struct model_blob {
	uint32_t id;	     /* arena: digest "sha256:..." or RAFS blob id */
	uint32_t media_type; /* arena offset, 0 = unknown */
	uint64_t size;	     /* bytes, 0 = unknown */
	uint32_t layer;	     /* which layer of a merged model it came from */
	uint32_t flags;
};

struct model_xattr {
	uint32_t name;	/* arena, NUL-terminated */
	uint32_t value; /* arena (raw bytes) */
	uint32_t value_len;
};

struct model_dirent {
	uint32_t name; /* arena, NUL-terminated */
	uint32_t ino;
};

/*
 * An inode.  Hardlinked names are one inode with nlink > 1; (parent, name)
 * is its primary name (the entry that was not a hardlink).
 */
struct model_inode {
	uint64_t size;	/* reg: bytes; symlink: target length */
	int64_t mtime;	/* seconds since the epoch */
	uint32_t mode;	/* S_IFMT | 07777 */
	uint32_t uid, gid;
	uint32_t nlink;
	uint32_t rdev_major, rdev_minor;
	uint32_t parent; /* primary parent dir ino (root: itself) */
	uint32_t name;	 /* arena: primary name ("" for root) */
	uint32_t link;	 /* arena: symlink target */
	uint32_t xattr_first, xattr_count;
	uint32_t first; /* dir: first dirent; reg: first chunk */
	uint32_t count; /* dir: dirent count; reg: chunk count */
	uint16_t layer; /* source layer index in a merged model */
	uint16_t flags; /* MODEL_INODE_* */
};

/* A directory no entry declared: the builder made it for a child. */
#define MODEL_INODE_SYNTH 0x1

struct model {
	struct model_inode *inodes; /* [0] unused; [1] = root */
	uint32_t n_inodes;	    /* including the unused slot 0 */
	struct model_dirent *dirents;
	uint32_t n_dirents;
	struct model_xattr *xattrs;
	uint32_t n_xattrs;
	struct model_chunk *chunks;
	uint32_t n_chunks;
	struct model_blob *blobs;
	uint32_t n_blobs;
	char *arena;
	uint64_t arena_len;
	uint32_t n_layers;
};

void model_free(struct model *m);
static inline void model_freep(struct model **m) { model_free(*m); }

static inline const char *model_str(const struct model *m, uint32_t off)
{
	return m->arena + off;
}
static inline const struct model_inode *model_inode(const struct model *m,
						    uint32_t ino)
{
	return ino && ino < m->n_inodes ? &m->inodes[ino] : NULL;
}

/* Finds name in directory dir (binary search); returns ino or 0. */
uint32_t model_lookup(const struct model *m, uint32_t dir, const char *name);
/* Resolves an absolute or relative path (cleaned) from the root; no symlink
 * following.  Returns ino or 0. */
uint32_t model_lookup_path(const struct model *m, const char *path);
/* Writes the primary absolute path of ino ("/" for root); returns length or
 * -ENAMETOOLONG. */
int model_path(const struct model *m, uint32_t ino, char *buf, size_t size);
/* The stored (compressed) bytes of regular file ino's chunks; 0 for
 * anything else. */
uint64_t model_file_stored(const struct model *m, uint32_t ino);
/* Index of the chunk of reg inode ino covering offset off, or -1. */
int64_t model_chunk_at(const struct model *m, uint32_t ino, uint64_t off);
/* qsort_r() order of chunk indices into model arg: by blob, by stored
 * offset, then by aux_off (zran chunks sharing a checkpoint). */
int model_chunk_cmp_stored(const void *a, const void *b, void *arg);
/* Bytes used by the model's arrays and arena. */
uint64_t model_mem_bytes(const struct model *m);

/*
 * Iterates every name in the tree, depth first, children in sorted order.
 * cb gets the absolute path, the dirent's ino and whether this name is the
 * inode's primary name (false for hardlink names).  A non-zero return stops
 * the walk and is returned.
 */
typedef int (*model_walk_cb)(const struct model *m, const char *path,
			     uint32_t ino, bool primary, void *data);
int model_walk(const struct model *m, model_walk_cb cb, void *data);

/* ---- building --------------------------------------------------------- */

/* Builder input: one tar/TOC/bootstrap entry. */
struct model_entry {
	const char *path; /* raw name as stored; cleaned by the builder */
	size_t path_len;
	enum model_type type;
	uint32_t mode; /* 07777 bits; type bits are ignored */
	uint32_t uid, gid;
	uint64_t size;
	int64_t mtime;
	const char *link; /* symlink target, or hardlink target path */
	size_t link_len;
	uint32_t link_id; /* hardlink by builder entry id (if link == NULL) */
	uint32_t rdev_major, rdev_minor;
	uint32_t layer;
};

struct model_builder;

enum {
	/* Reject instead of clean: names with "..", duplicate entries. */
	MODEL_BUILD_STRICT = 1u << 0,
};

struct model_builder *model_builder_new(unsigned flags);
void model_builder_free(struct model_builder *b);
/*
 * Makes room ahead for about n entries, n_chunks chunks and arena bytes of
 * paths and link targets, when the caller knows the sizes (a merge of
 * built layers): the builder then does not grow and copy step by step.
 * A hint only: more may be added after.
 */
void model_builder_reserve(struct model_builder *b, size_t n,
			   size_t n_chunks, size_t arena);
static inline void model_builder_freep(struct model_builder **b)
{
	model_builder_free(*b);
}

/*
 * Adds an entry; *ret_id (optional) names it for xattrs, chunks and
 * hardlinks.  Names are cleaned like path.Clean("/"+name); a name that
 * escapes the root ("../x", "/../x") is rejected (-EINVAL), as are empty
 * names other than the root and names with NUL bytes or components longer
 * than 255 bytes.  A later entry with the same cleaned name replaces the
 * earlier one (directories keep their children).
 */
int model_builder_add(struct model_builder *b, const struct model_entry *e,
		      uint32_t *ret_id, struct lp_err *err);
int model_builder_add_xattr(struct model_builder *b, uint32_t id,
			    const char *name, const void *value, size_t len,
			    struct lp_err *err);
/*
 * Appends a chunk to regular-file entry id.  Chunks may arrive in any order;
 * model_builder_finish() sorts them and checks they tile [0, size).
 */
int model_builder_add_chunk(struct model_builder *b, uint32_t id,
			    const struct model_chunk *c, struct lp_err *err);
/* Adds a blob; returns its index in *ret_idx. */
int model_builder_add_blob(struct model_builder *b, const char *id,
			   const char *media_type, uint64_t size,
			   uint32_t *ret_idx, struct lp_err *err);
/* Looks up an entry id by (cleaned) path; 0 when absent. */
uint32_t model_builder_find(struct model_builder *b, const char *path,
			    size_t len);

/*
 * Resolves and freezes the tree.  Errors (-EINVAL with a message): a
 * hardlink to a missing name, a hardlink cycle, a hardlink to a directory,
 * chunks that overlap, leave gaps or run past the file size, a child under a
 * non-directory.  The builder is consumed (freed) either way.
 */
int model_builder_finish(struct model_builder *b, struct model **ret,
			 struct lp_err *err);

/* ---- layers ----------------------------------------------------------- */

/*
 * Merges layer models (layers[0] lowest) into one tree, applying OCI
 * whiteouts: ".wh.NAME" hides NAME of lower layers, ".wh..wh..opq" hides
 * every lower entry of its directory.  Whiteout names never appear in the
 * result.  Chunk blob indices are rebased; inode.layer and blob.layer tell
 * where each came from.
 */
int model_merge(struct model *const *layers, uint32_t n, struct model **ret,
		struct lp_err *err);

/*
 * Rewrites a single layer into overlayfs form: ".wh.NAME" becomes a char
 * device 0:0 named NAME, and a directory holding ".wh..wh..opq" gets
 * trusted.overlay.opaque = "y" (the marker itself disappears).
 */
int model_to_overlay(const struct model *layer, struct model **ret,
		     struct lp_err *err);

/* ---- format readers --------------------------------------------------- */

struct format_hints {
	const char *media_type;	    /* may be NULL */
	const char *toc_digest;	    /* expected "sha256:…", may be NULL */
	const char *blob_digest;    /* the layer's own digest, may be NULL */
	const char *const *annotations; /* key, value, ..., NULL; may be NULL */
};

/* Information a reader reports about the layer it loaded. */
struct format_info {
	const char *format;	/* "estargz", "stargz", "zstd:chunked", ... */
	char toc_digest[72];	/* "sha256:…" of the index as stored, or "" */
	uint64_t blob_size;
	uint64_t toc_offset, toc_comp_len, toc_len;
	uint64_t prefetch_offset; /* landmark: bytes [0, off) hold prefetch
				     data; 0 = none */
	int landmark;		  /* 0 none, 1 .prefetch.landmark,
				     2 .no.prefetch.landmark */
};

struct format_ctx; /* reader-private state (TOC offsets, zran index, ...) */

/*
 * One table per format; format detection is a loop over these.  probe says
 * whether the source looks like this format (1 yes, 0 no, -errno on I/O
 * error); load builds the model (one blob, index 0 = the source itself,
 * unless the format names others) and the private context decode_chunk
 * needs.  decode_chunk gets the stored bytes of chunk c (comp_off,
 * comp_len) and writes exactly c->len bytes to out; it does NOT verify —
 * model_chunk_verify() does.
 */
struct format_ops {
	const char *name;
	int (*probe)(struct lp_source *src, const struct format_hints *h,
		     struct lp_err *err);
	int (*load)(struct lp_source *src, const struct format_hints *h,
		    struct model **ret_model, struct format_ctx **ret_ctx,
		    struct format_info *info, struct lp_err *err);
	int (*decode_chunk)(struct format_ctx *ctx,
			    const struct model_chunk *c, const void *stored,
			    size_t stored_len, void *out, struct lp_err *err);
	void (*destroy)(struct format_ctx *ctx);
	/* optional: the context of a saved model (fs/modelfile.h) from its
	 * info alone; NULL: this reader's models are not saved */
	int (*restore)(const struct format_info *info,
		       struct format_ctx **ret_ctx, struct lp_err *err);
};

/* Verifies out (c->len bytes) against c's digest: 0, -EBADMSG, or -ENODATA
 * if the chunk carries no digest. */
int model_chunk_verify(const struct model_chunk *c, const void *data,
		       struct lp_err *err);

#endif
