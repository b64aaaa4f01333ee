/* SPDX-License-Identifier: Apache-2.0 */
/* formats/zran private structures shared by its .c files. */
#ifndef LP_FORMATS_ZRAN_INT_H
#define LP_FORMATS_ZRAN_INT_H

#include "formats/zran/zran.h"

/*
 * A place in the gzip stream where inflate can resume: the end of a deflate
 * block.  Bytes before in_pos are fully consumed except for `bits` unused
 * high bits of byte in_pos - 1, kept here as `prev` so a reader fetches
 * from in_pos onwards.
 *
 * Its window (the last window_len bytes of output) is kept as the index
 * file stores it, raw or zlib-compressed, at woff in the index's window
 * area; zran_point_window() gives it back inflated.
 */
#define ZRAN_WIN_RAW 0
#define ZRAN_WIN_ZLIB 1
struct zran_point {
	uint64_t in_pos;
	uint64_t out_pos;
	uint64_t woff;	     /* the stored window, in the window area */
	uint32_t window_len; /* 0..ZRAN_WINDOW_SIZE */
	uint32_t wstored;    /* its stored length */
	uint8_t wenc;	     /* ZRAN_WIN_RAW or ZRAN_WIN_ZLIB */
	uint8_t bits;	     /* 0..7 */
	uint8_t prev;
};

/* A tar entry as kept in the index (strings live in idx->strtab). */
struct zran_ientry {
	uint64_t size;
	int64_t mtime;
	uint64_t hdr_off, data_off;
	uint32_t path, path_len;
	uint32_t link, link_len;
	uint32_t mode, uid, gid, dev_major, dev_minor;
	uint32_t xattr_first, n_xattrs;
	uint32_t chunk_first, n_chunks;
	uint8_t type; /* enum model_type */
};

struct zran_ixattr {
	uint32_t name, name_len;
	uint32_t value, value_len;
};

/* A chunk of a regular file: tar bytes [tar_off, tar_off + len), decoded
 * from point `point`; the gzip bytes needed are [comp_off, + comp_len). */
struct zran_ichunk {
	uint64_t tar_off;
	uint64_t comp_off, comp_len;
	uint32_t len;
	uint32_t point;
	uint8_t digest[32];
};

/* Live inflate streams parked after a decode (decode.c). */
#define ZRAN_CACHE_SLOTS 16
struct zran_cache;
struct zran_cache *zran_cache_new(void);
void zran_cache_free(struct zran_cache *c);

struct zran_index {
	struct zran_cache *cache; /* NULL: decodes always restart */
	uint64_t gzip_size, tar_size;
	uint32_t span, chunk_max, n_members;
	uint8_t gzip_sha256[32];

	struct zran_point *points;
	uint32_t n_points;
	size_t cap_points;
	/*
	 * The window area: the points' stored windows back to back, in
	 * point order, exactly as in the index file.  In memory (wins) for a
	 * built or parsed index; for one loaded from a file it stays there
	 * (wins NULL, read from wfd at wins_off + woff when a decode starts
	 * from that point).  Thirty-two KiB a point kept inflated would be
	 * most of a daemon's memory.
	 */
	uint8_t *wins;
	uint64_t wins_len;
	size_t cap_wins;
	int wfd;	   /* -1: none */
	uint64_t wins_off; /* where the area starts in the index file */
	struct zran_ientry *entries;
	uint32_t n_entries;
	size_t cap_entries;
	struct zran_ixattr *xattrs;
	uint32_t n_xattrs;
	size_t cap_xattrs;
	struct zran_ichunk *chunks;
	uint32_t n_chunks;
	size_t cap_chunks;
	char *strtab;
	uint32_t strtab_len;
	size_t cap_strtab;
	/* entries, xattrs, chunks and strtab freed (their counts kept):
	 * a decode context, see zran_index_drop_listing() */
	bool no_listing;
};

struct zran_index *zran_index_new(void);
/*
 * Frees the tar listing once the model is built from it: decoding needs
 * only the checkpoints.  The index then no longer serializes or builds a
 * model (-EINVAL).
 */
void zran_index_drop_listing(struct zran_index *idx);
/* Appends len bytes plus a NUL to the string table; returns -E2BIG when it
 * would pass 4 GiB. */
int zran_index_add_str(struct zran_index *idx, const void *s, size_t len,
		       uint32_t *ret_off, struct lp_err *err);

/*
 * Writes point i's window (window_len bytes) to win: copied or inflated
 * from the window area, read from the index file if it is there.  A window
 * that does not read back or inflate to its length is -EIO.
 */
int zran_point_window(const struct zran_index *idx, uint32_t i, uint8_t *win,
		      struct lp_err *err);

/*
 * Inflates raw deflate data starting at a restore point (bits/prev/window),
 * discards `skip` bytes of output and writes exactly out_len bytes.  A gzip
 * member end inside the span is crossed (trailer skipped, next header
 * parsed).  -EBADMSG on corrupt data, -EIO when `in` runs out first.
 */
int zran_inflate_span(uint8_t bits, uint8_t prev, const uint8_t *window,
		      uint32_t window_len, const uint8_t *in, size_t in_len,
		      uint64_t skip, uint8_t *out, size_t out_len,
		      struct lp_err *err);

/* Length of the gzip member header at p (> 0), 0 if more bytes are needed,
 * or -EBADMSG. */
int64_t zran_gzip_header_len(const uint8_t *p, size_t len);

#endif
