/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/decoded: the on-disk store of decoded, verified chunks, so a warm
 * read is a pread from a local file instead of decode + verify.
 *
 * One segment per blob (named by the blob's sha256): DIR/<hex>.data holds
 * chunks appended at 4 KiB-aligned offsets, DIR/<hex>.idx an append-only
 * list of records, one per chunk: its digest and length (the chunk's
 * identity: lookups are by content, so a segment can never answer for a
 * chunk whose digest differs), where its bytes are, and the CRC32C of
 * every 16 KiB block of them.
 *
 * What may be served:
 *   - a chunk goes in only after it verified against its digest, from the
 *     very buffer that verified;
 *   - its record reaches the index only after its bytes were fdatasync'ed
 *     (dstore_flush), and records carry their own CRC32C, so a crash or a
 *     torn append loses chunks but never makes one look present that is
 *     not: a load stops at the first bad record and truncates there;
 *   - every read checks the CRC32C of each block it returns, so bytes
 *     changed on disk later (bit rot, a torn or lost write, truncation,
 *     someone writing to the file) are -EBADMSG, never served: the entry is
 *     dropped and the caller decodes the chunk again.  CRC32C is checked
 *     instead of the chunk digest because a read may touch 4 KiB of a
 *     4 MiB chunk, and at several GB/s (four blocks at a time); it catches every burst of up to 32 bits and other
 *     random damage with probability 1 - 2^-32 per block.  It is no
 *     defence against someone who can write the store on purpose (they can
 *     write the blob cache's index and the binary as well).
 *
 * Bounded: when the store's files would exceed max_bytes, whole segments
 * no process has open are removed, least recently opened first; if that
 * is not enough, dstore_put refuses (-ENOSPC) and reads decode as before.
 * A process holds an exclusive flock on each segment it opens; a segment
 * another process holds is not used (-EBUSY).  Thread-safe.
 */
#ifndef LP_FS_DECODED_H
#define LP_FS_DECODED_H

#include "fs/model.h"

#define DSTORE_BLOCK (16u << 10)
#define DSTORE_DEFAULT_MAX (2ull << 30)

struct dstore_opts {
	const char *dir;    /* created if missing (one level) */
	uint64_t max_bytes; /* 0 = DSTORE_DEFAULT_MAX */
	/* records are made durable by a background thread within about
	 * this many ms of the put; 0 = 1000.  dstore_close() flushes. */
	unsigned flush_ms;
};

struct dstore_stats {
	uint64_t hits, misses, puts, put_bytes, bad_blocks, refused;
	uint64_t bytes; /* approximate size of the store's files */
};

struct dstore;
struct dstore_seg;

int dstore_open(const struct dstore_opts *o, struct dstore **ret,
		struct lp_err *err);
/* Flushes, closes every segment and frees; accepts NULL. */
void dstore_close(struct dstore *d);

/*
 * The segment of a blob, opened (and loaded) on first use and owned by the
 * store.  key: "sha256:<64 hex>" or "<64 hex>"; -EINVAL for anything else,
 * -EBUSY when another process has it open.
 */
int dstore_segment(struct dstore *d, const char *key, struct dstore_seg **ret,
		   struct lp_err *err);

/* Whether the segment holds chunk c (same digest and length). */
bool dstore_has(struct dstore_seg *g, const struct model_chunk *c);

/*
 * Reads [off, off + len) of chunk c into buf, checking the CRC32C of every
 * block touched.  0; -ENOENT if not stored; -EBADMSG if a block does not
 * match (the entry is dropped); -EIO (or -errno) if the read failed.
 */
int dstore_read(struct dstore_seg *g, const struct model_chunk *c,
		uint64_t off, void *buf, size_t len, struct lp_err *err);

/*
 * Checks the blocks of chunk c that [off, off + len) touches, for a reply
 * that sends the bytes straight from the file (splice): 0 and where they
 * are (*ret_fd stays open while the store is), or an error as dstore_read.
 * Bytes changed between the check and the send are not caught; the send
 * follows at once.
 */
int dstore_check(struct dstore_seg *g, const struct model_chunk *c,
		 uint64_t off, uint64_t len, int *ret_fd, uint64_t *ret_pos,
		 struct lp_err *err);

/*
 * Stores chunk c's decoded bytes (c->len of them, verified by the caller
 * against c's digest).  Readable in this process at once, durable after
 * the next flush.  0; -ENODATA if c has no digest; -ENOSPC if the store is
 * full; -errno.
 */
int dstore_put(struct dstore_seg *g, const struct model_chunk *c,
	       const void *data, struct lp_err *err);

/* Makes every stored chunk durable: fdatasync, then the index records. */
int dstore_flush(struct dstore *d);

/*
 * Removes least recently used segments no process holds until the store's
 * files take at most target bytes.  Returns the bytes left or -errno.
 */
int64_t dstore_gc(struct dstore *d, uint64_t target);

void dstore_get_stats(struct dstore *d, struct dstore_stats *ret);

#endif
