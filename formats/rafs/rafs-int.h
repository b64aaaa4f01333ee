/* SPDX-License-Identifier: Apache-2.0 */
/* formats/rafs private declarations shared by the v5 and v6 parsers. */
#ifndef LP_FORMATS_RAFS_INT_H
#define LP_FORMATS_RAFS_INT_H

#include <string.h>

#include "formats/rafs/rafs.h"

#define RAFS_V5_MAGIC 0x52414653u
#define RAFS_V5_VERSION 0x500u
#define RAFS_V5_SB_SIZE 8192u
#define RAFS_V6_SB_OFF 1024u
#define RAFS_V6_MAGIC 0xE0F5E1E2u
#define RAFS_V6_EXT_SB_OFF 1152u

#define RAFS_CHUNK_MIN 4096u
#define RAFS_CHUNK_MAX (16u << 20)
#define RAFS_BLOB_MAX_CHUNKS (1u << 24)
#define RAFS_PATH_MAX 4095u
#define RAFS_NAME_MAX 255u
#define RAFS_BLOB_ID_MAX 255u

/* Chunk-info flags (80-byte v5/v6 chunk records). */
enum {
	RAFS_CHUNK_COMPRESSED = 0x1,
	RAFS_CHUNK_HOLE = 0x2,
	RAFS_CHUNK_ENCRYPTED = 0x4,
	RAFS_CHUNK_BATCH = 0x8,
	RAFS_CHUNK_HAS_CRC32 = 0x10,
};

/* BlobFeatures (spec §2.13). */
enum {
	RAFS_BLOB_ALIGNED = 0x1,
	RAFS_BLOB_INLINED_FS_META = 0x2,
	RAFS_BLOB_CHUNK_INFO_V2 = 0x4,
	RAFS_BLOB_ZRAN = 0x8,
	RAFS_BLOB_SEPARATE = 0x10,
	RAFS_BLOB_INLINED_CHUNK_DIGEST = 0x20,
	RAFS_BLOB_TARFS = 0x40,
	RAFS_BLOB_BATCH = 0x80,
	RAFS_BLOB_ENCRYPTED = 0x100,
	RAFS_BLOB_V5_NO_EXT = 0x80000000u,
};

/* Compressor ids (v6 blob table) and digester ids. */
enum {
	RAFS_COMP_NONE,
	RAFS_COMP_LZ4,
	RAFS_COMP_GZIP,
	RAFS_COMP_ZSTD
};
enum {
	RAFS_DIGEST_BLAKE3,
	RAFS_DIGEST_SHA256
};

static inline uint16_t rafs_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t rafs_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t rafs_le64(const uint8_t *p)
{
	return (uint64_t)rafs_le32(p) | (uint64_t)rafs_le32(p + 4) << 32;
}

/* True when [off, off + len) lies inside a buffer of size bytes. */
static inline bool rafs_in(uint64_t size, uint64_t off, uint64_t len)
{
	return off <= size && len <= size - off;
}

/* u64 -> u32 open-addressing map (inode numbers / nids -> entry ids). */
struct rafs_map {
	uint64_t *keys;
	uint32_t *vals; /* 0 = free slot */
	size_t cap, used;
};
void rafs_map_release(struct rafs_map *m);
uint32_t rafs_map_get(const struct rafs_map *m, uint64_t key);
void rafs_map_put(struct rafs_map *m, uint64_t key, uint32_t val);

struct rafs_blob {
	char id[RAFS_BLOB_ID_MAX + 1];
	uint8_t codec;	    /* enum model_codec for COMPRESSED chunks */
	uint8_t digest_alg; /* enum model_digest_alg */
	uint32_t features;
	uint32_t chunk_count;
	uint64_t comp_size, uncomp_size;
};

/* State of one bootstrap parse. */
struct rafs_parse {
	const uint8_t *d;
	size_t size;
	struct lp_err *err;
	struct model_builder *b;
	struct rafs_meta meta;
	struct rafs_blob *blobs;
	uint32_t n_blobs;
	struct rafs_map ids; /* v5 i_ino / v6 nid -> builder entry id */
	char path[RAFS_PATH_MAX + 2];
	char link[RAFS_PATH_MAX + 1]; /* scratch: a symlink target */
	size_t path_len;
	uint32_t depth;
	/* The prefetch table: keys (v5 i_ino / v6 nid) in table order, the
	 * path each was found at, and key -> slot + 1. */
	uint64_t *pf_keys;
	char **pf_paths;
	uint32_t n_pf;
	struct rafs_map pf_map;
};

static inline const char *rafs_cur_path(const struct rafs_parse *p)
{
	return p->path_len ? p->path : "/";
}

/* Validates a blob id (safe as a file name) and copies it to blob->id. */
int rafs_blob_set_id(struct rafs_parse *p, struct rafs_blob *blob,
		     const uint8_t *id, size_t len);
/* Maps the single compression / hash bit of sb flags (v5) to model enums. */
int rafs_flags_codec(struct rafs_parse *p, uint64_t flags, uint8_t *codec,
		     uint8_t *digest_alg);
/* Registers p->blobs with the builder (one model blob each, same order). */
int rafs_add_blobs(struct rafs_parse *p);
/* Appends "/name" to p->path; returns the old length (for truncating back). */
int rafs_path_push(struct rafs_parse *p, const uint8_t *name, size_t len,
		   size_t *old_len);
/* Adds p->path as an entry; *ret_id gets the builder id. */
int rafs_add_entry(struct rafs_parse *p, struct model_entry *e,
		   uint32_t *ret_id);
/* Checks and adds a chunk record (80-byte layout) to entry id. */
int rafs_add_chunk_record(struct rafs_parse *p, uint32_t id, const uint8_t *rec,
			  uint64_t file_off);

/* Records the prefetch table (keys in table order, zero ends it). */
void rafs_prefetch_add(struct rafs_parse *p, uint64_t key);
/* Notes that the entry at p->path has key (if the table names it). */
void rafs_prefetch_note(struct rafs_parse *p, uint64_t key);

/* Decodes st_rdev as stored (Linux new_encode_dev form). */
static inline void rafs_rdev(uint32_t dev, uint32_t *major, uint32_t *minor)
{
	*major = (dev & 0xfff00) >> 8;
	*minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
}

/* 1 when a gzip layer starts like a nydus bootstrap layer, else 0. */
int rafs_layer_probe(struct lp_source *layer, struct lp_err *err);

int rafs_v5_load(struct rafs_parse *p);
int rafs_v6_load(struct rafs_parse *p);
int rafs_v5_blobs(struct rafs_parse *p);
int rafs_v6_blobs(struct rafs_parse *p);

#endif
