/* SPDX-License-Identifier: Apache-2.0 */
/*
 * formats/rafs: nydus RAFS v5 and v6 bootstraps (metadata blobs) and native
 * RAFS data-blob chunks.
 *
 * A RAFS image is one bootstrap (the merged metadata: superblock, inodes,
 * directories, chunk records, a table of data blobs) plus N data blobs that
 * hold the file chunks.  A bootstrap is loaded into one model with one model
 * blob per RAFS blob, in blob-table order, each named by its RAFS blob id
 * (normally 64 lowercase hex digits: the sha256 of the blob as stored in
 * the registry).  Chunks carry:
 *
 *	codec	   MODEL_CODEC_RAFS_ZSTD / RAFS_LZ4 / RAFS_GZIP for chunks
 *		   stored compressed, MODEL_CODEC_NONE for chunks stored raw
 *		   (the builder keeps a chunk raw whenever compression does
 *		   not shrink it, whatever the blob's compressor)
 *	comp_off, comp_len  where the stored bytes are in the blob
 *	aux	   the chunk's index in its blob
 *	aux_off	   its offset in the blob's uncompressed view
 *	digest	   sha256 or blake3 of the uncompressed bytes (per blob);
 *		   none for tarfs blobs
 *
 * Layout facts: shared/research/rafs-nydus-spec.md.  Everything here reads
 * bytes already in memory or an lp_source; nothing touches the network.
 */
#ifndef LP_FORMATS_RAFS_H
#define LP_FORMATS_RAFS_H

#include "fs/model.h"

/* Media type given to the model blobs of a RAFS image. */
#define RAFS_BLOB_MEDIA_TYPE "application/vnd.oci.image.layer.nydus.blob.v1"

/* Upper bound for a bootstrap (in memory, or extracted from a layer). */
#define RAFS_BOOTSTRAP_MAX (1ull << 30)

/* Superblock flags (v5 s_flags, v6 extended superblock s_flags). */
enum {
	RAFS_SB_COMPRESSION_NONE = 0x1,
	RAFS_SB_COMPRESSION_LZ4 = 0x2,
	RAFS_SB_HASH_BLAKE3 = 0x4,
	RAFS_SB_HASH_SHA256 = 0x8,
	RAFS_SB_EXPLICIT_UID_GID = 0x10,
	RAFS_SB_HAS_XATTR = 0x20,
	RAFS_SB_COMPRESSION_GZIP = 0x40,
	RAFS_SB_COMPRESSION_ZSTD = 0x80,
	RAFS_SB_INLINED_CHUNK_DIGEST = 0x100,
	RAFS_SB_TARFS_MODE = 0x200,
	RAFS_SB_ENCRYPTION_NONE = 0x01000000,
	RAFS_SB_ENCRYPTION_AES_128_XTS = 0x02000000,
};

/* What the bootstrap says besides the tree. */
struct rafs_meta {
	int version;	     /* 5 or 6 */
	uint64_t flags;	     /* superblock flags (RAFS_SB_*) */
	uint32_t chunk_size; /* bytes */
	uint32_t n_blobs;    /* = model n_blobs */
	/*
	 * The prefetch table: files the image author wants fetched first,
	 * as model inode numbers, in table order.  prefetch_all is set when
	 * the table names the root ("prefetch everything").
	 */
	bool prefetch_all;
	uint32_t n_prefetch;
	uint32_t *prefetch;
};
void rafs_meta_release(struct rafs_meta *meta);

/*
 * Returns 5 or 6 when data looks like a RAFS v5 / v6 bootstrap (magics
 * only, see spec §0), else 0.  Needs at least the first 1028 bytes for v6.
 */
int rafs_detect(const void *data, size_t size);

/*
 * Parses a whole bootstrap held in memory (data, size) into a model (blobs
 * in blob-table order).  ret_meta (optional) receives the superblock facts and
 * the prefetch list; release it with rafs_meta_release().  Any malformed
 * input fails with -EINVAL (or -EOPNOTSUPP for valid but unsupported
 * features: encryption, batch chunks, zran blobs, holes) and a message;
 * never reads outside [data, data + size).
 */
int rafs_bootstrap_load(const void *data, size_t size, struct model **ret,
			struct rafs_meta *ret_meta, struct lp_err *err);

/*
 * Lists the blob ids of a bootstrap, in blob-table order, without building
 * the tree: *ret_ids is a malloc'ed array of *ret_n malloc'ed strings (free
 * with rafs_blob_ids_free).  Ids are checked to be safe file names
 * ([A-Za-z0-9._:-], not "." or ".."), so `DIR/<id>` stays inside DIR.
 */
int rafs_blob_ids(const void *data, size_t size, char ***ret_ids,
		  uint32_t *ret_n, struct lp_err *err);
void rafs_blob_ids_free(char **ids, uint32_t n);

/*
 * Extracts the bootstrap from a nydus bootstrap layer (a tar.gz holding
 * image/image.boot, or image.boot at the top level for older images), up to
 * RAFS_BOOTSTRAP_MAX bytes.  *ret_data is malloc'ed.  -ENOENT when the
 * layer holds no bootstrap.
 */
int rafs_layer_extract_bootstrap(struct lp_source *layer, void **ret_data,
				 size_t *ret_len, struct lp_err *err);

/*
 * Reads a bootstrap from src: a raw bootstrap, or a gzip bootstrap layer
 * (extracted as above).  *ret_data is malloc'ed.
 */
int rafs_read_bootstrap(struct lp_source *src, void **ret_data, size_t *ret_len,
			struct lp_err *err);

/*
 * Decodes the stored bytes of a RAFS chunk (codec NONE, RAFS_ZSTD,
 * RAFS_LZ4 — a raw lz4 block —, RAFS_GZIP) into exactly c->len bytes at
 * out.  Does not verify the digest (model_chunk_verify does).
 */
int rafs_decode_chunk(const struct model_chunk *c, const void *stored,
		      size_t stored_len, void *out, struct lp_err *err);

/* ---- data blobs: ToC and blob meta (spec §2.11, §2.12) ------------------ */

/* A ToC entry at the end of a native blob (nydus-image >= 2.2). */
struct rafs_toc_entry {
	uint32_t flags; /* 0x1 none, 0x2 zstd, 0x4 lz4_block */
	/* "image.blob", "blob.meta", "blob.meta.header", "blob.digest",
	 * "image.boot" */
	char name[17];
	uint8_t sha256[32]; /* of the uncompressed bytes; zero = unknown */
	uint64_t comp_off, comp_size, uncomp_size;
};

/* Finds entry name in blob's ToC; -ENOENT without a ToC or entry. */
int rafs_blob_toc_find(struct lp_source *blob, const char *name,
		       struct rafs_toc_entry *ret, struct lp_err *err);
/*
 * Reads and decompresses a ToC entry (checked against its sha256 when the
 * ToC has one), e.g. the "image.boot" a blob built with
 * --blob-inline-meta carries.  *ret is malloc'ed.
 */
int rafs_blob_toc_read(struct lp_source *blob, const struct rafs_toc_entry *e,
		       void **ret, size_t *ret_len, struct lp_err *err);

/* The 4096-byte blob-meta (compression-context) header. */
struct rafs_ci_header {
	uint32_t features;   /* BlobFeatures; 0x4 = CI v2 entries */
	uint32_t compressor; /* of the CI area: 0 none, 1 lz4, 2 gzip, 3 zstd */
	uint32_t entries;    /* = the blob's chunk count */
	uint64_t ci_offset, ci_comp_size, ci_uncomp_size;
	uint64_t zran_offset, zran_size;
	uint32_t zran_count;
};

/* One chunk of a blob, by chunk index (CI v1 or v2, decoded). */
enum {
	RAFS_CI_COMPRESSED = 0x1,
	RAFS_CI_ZRAN = 0x2,
	RAFS_CI_BATCH = 0x4,
	RAFS_CI_ENCRYPTED = 0x8,
	RAFS_CI_HAS_CRC32 = 0x10,
};
struct rafs_ci {
	uint64_t comp_off, uncomp_off;
	uint32_t comp_size, uncomp_size;
	uint32_t flags; /* RAFS_CI_*; v1: COMPRESSED iff the sizes differ */
	uint64_t data;	/* v2: zran/batch context, or crc32 */
};

int rafs_ci_header_parse(const void *hdr, size_t len, struct rafs_ci_header *h,
			 struct lp_err *err);
/* Decodes n CI entries (16 bytes each for v1, 24 for v2) into out[n]. */
int rafs_ci_decode(const void *ci, size_t len, uint32_t n, bool v2,
		   struct rafs_ci *out, struct lp_err *err);
/*
 * Parses a `<blob_id>.blob.meta` file (the uncompressed CI area padded to
 * 4 KiB, then the header), as nydusd caches it and as bootstrap layers ship
 * it (image/<digest>.blob.meta).  *ret gets h->entries entries (malloc'ed).
 */
int rafs_blob_meta_parse(const void *data, size_t len, struct rafs_ci_header *h,
			 struct rafs_ci **ret, struct lp_err *err);
/* Reads the blob meta from a native data blob itself (header located by
 * the ToC, or at the end of a pre-2.2 blob). */
int rafs_blob_read_ci(struct lp_source *blob, struct rafs_ci_header *h,
		      struct rafs_ci **ret, struct lp_err *err);

/*
 * The reader ops.  probe: 1 for a raw v5/v6 bootstrap, or for a gzip layer
 * whose first tar entries are image/ or image/image.boot (or when
 * h->annotations marks the layer containerd.io/snapshot/nydus-bootstrap).
 * load: rafs_read_bootstrap + rafs_bootstrap_load; info->format is "rafs-v5"
 * or "rafs-v6", info->toc_digest the sha256 of the bootstrap bytes.  The
 * context gives access to the rafs_meta (rafs_ctx_meta).
 */
extern const struct format_ops rafs_ops;
const struct rafs_meta *rafs_ctx_meta(const struct format_ctx *ctx);

#endif
