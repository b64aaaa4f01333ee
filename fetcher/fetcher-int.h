/* SPDX-License-Identifier: Apache-2.0 */
/* fetcher internals shared between its .c files. */
#ifndef LP_FETCHER_INT_H
#define LP_FETCHER_INT_H

#include <pthread.h>
#include <string.h>

#include "fetcher/fetcher.h"

/* ---- credentials (auth.c) --------------------------------------------- */

struct fetch_cred {
	char *user;
	char *pass;
};

/*
 * Resolves the credentials for registry (a normalized registry name such
 * as "docker.io" or "127.0.0.1:5000") in the order fetch_opts documents.
 * Returns 1 and fills *ret, 0 if there are none, or -errno for a broken
 * source (bad base64, unreadable config).
 */
int fetch_cred_resolve(const struct fetch_opts *o, const char *registry,
		       struct fetch_cred *ret, struct lp_err *err);
/* Wipes and frees. */
void fetch_cred_release(struct fetch_cred *c);
/* Splits base64("user:pass"); -EINVAL if malformed. */
int fetch_cred_from_b64(const char *b64, size_t len, struct fetch_cred *ret);
/* Reads the auths of a docker config.json (data[0..len)) for registry. */
int fetch_cred_from_docker_config(const char *data, size_t len,
				  const char *registry, struct fetch_cred *ret,
				  struct lp_err *err);

/* A parsed WWW-Authenticate challenge. */
struct fetch_challenge {
	enum { CHAL_NONE, CHAL_BASIC, CHAL_BEARER } scheme;
	char realm[1024];
	char service[256];
	char scope[512];
};

/* Parses the first Basic or Bearer challenge of a header value. */
int fetch_challenge_parse(const char *v, struct fetch_challenge *ret);

/* Copies src into dst[size], cutting it if needed; always terminates. */
static inline void fetch_strlcpy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* lp_err_wrap() that keeps the code r (lp_err_wrap(NULL) says -EIO). */
#define fetch_wrap(r, err, ...) (lp_err_wrap((err), __VA_ARGS__), (r))

/* Wipes a secret string before freeing it. */
void fetch_free_secret(char *s);

/* ---- answers to multi-range requests (multipart.c) --------------------- */

/* "bytes A-B/T" (T may be "*": *total -1). */
bool fetch_content_range_parse(const char *s, uint64_t *a, uint64_t *b,
			       int64_t *total);

/* A "multipart/byteranges" body, parsed as it streams in. */
struct fetch_mp {
	char delim[80]; /* CRLF "--" boundary */
	size_t dlen, match;
	int state;
	unsigned pad, nlines, parts;
	size_t skipped; /* preamble bytes */
	char line[512];
	size_t line_len;
	bool have_range;
	uint64_t a, b;
	int64_t total;
	uint64_t pos, left;
	const char *why; /* what was malformed */
};

struct fetch_mp_ops {
	/* a part of bytes a..b (inclusive) of a blob of total bytes (-1:
	 * not said) begins; a negative return stops the parse with it */
	int (*part)(void *arg, uint64_t a, uint64_t b, int64_t total);
	/* n bytes of the current part, the first at blob offset pos */
	int (*data)(void *arg, uint64_t pos, const void *p, size_t n);
};

/* Takes the boundary from a Content-Type value: 0, or -EPROTO when it is
 * not multipart/byteranges with a valid boundary. */
int fetch_mp_init(struct fetch_mp *m, const char *content_type);
/* Feeds the next n body bytes: 0, -EBADMSG when the body is malformed
 * (m->why says how), or a callback's negative return. */
int fetch_mp_feed(struct fetch_mp *m, const void *data, size_t n,
		  const struct fetch_mp_ops *ops, void *arg);
/* True once the closing delimiter came. */
bool fetch_mp_done(const struct fetch_mp *m);

/* ---- registry hosts (hosts.c) ------------------------------------------ */

/* A deep copy (for the client, which outlives the caller's config). */
struct fetch_hosts *fetch_hosts_dup(const struct fetch_hosts *h);
/*
 * True if a config for cfg_registry (NULL = any) applies to a reference
 * with this registry and API host; docker.io aliases are equal.
 */
bool fetch_hosts_match(const char *cfg_registry, const char *registry,
		       const char *host);
/*
 * A Go duration ("1s", "500ms", "1m30s", "1.5s") in milliseconds, rounded
 * up; -EINVAL if malformed or above a day.
 */
int fetch_duration_ms(const char *s, uint64_t *ret);
/*
 * Reads a whole file of at most max bytes (NUL-terminated): 1, 0 if it
 * does not exist, or -errno with "PATH: why".
 */
int fetch_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
		    struct lp_err *err);

/* ---- misc -------------------------------------------------------------- */

/* Copies url without user info and query string into out. */
void fetch_redact_url(const char *url, char *out, size_t size);

/* ---- the blob cache (cache.c) ----------------------------------------- */

struct fetch_cache_blob;

/* Opens (creating if needed) the cache entry of a blob of size bytes;
 * shared: a second open of the same digest returns the same object. */
int fetch_cache_blob_open(struct fetch_cache *c, const char *digest,
			  uint64_t size, struct fetch_cache_blob **ret,
			  struct lp_err *err);
void fetch_cache_blob_close(struct fetch_cache_blob *b);
/* The size of a blob the cache has an entry for (its map's header, whose
 * checksum holds): 0, or -errno (-ENOENT: none). */
int fetch_cache_blob_known_size(struct fetch_cache *c, const char *digest,
				uint64_t *ret);
uint32_t fetch_cache_granule(const struct fetch_cache_blob *b);
uint64_t fetch_cache_blob_size(const struct fetch_cache_blob *b);

/*
 * Reads [off, off+len) from the cache if every granule is present: 1 and
 * the bytes, 0 if some granule is missing, or -errno.
 */
int fetch_cache_blob_read(struct fetch_cache_blob *b, void *buf, size_t len,
			  uint64_t off);

/*
 * The single-flight protocol.  Granules of [off, off+len) are present, in
 * flight (claimed by some fetcher) or missing.
 *
 * fetch_cache_blob_claim() marks every missing granule of the range as in
 * flight for the caller and returns the claimed runs in *ret (malloc'd,
 * granule-aligned, clipped to the blob size) and their count.  Before it
 * reports a granule missing it re-reads the map records other processes
 * may have appended.  The claimer then either writes the data with
 * fetch_cache_blob_fill() or gives the claim up with
 * fetch_cache_blob_unclaim(); both wake the waiters.
 *
 * fetch_cache_blob_wait() sleeps until no granule of the range is in flight.
 */
int fetch_cache_blob_claim(struct fetch_cache_blob *b, uint64_t off,
			   uint64_t len, struct fetch_range **ret,
			   size_t *ret_n);
/* True if every granule of the range is present (the map is read again
 * for what other processes added when not). */
bool fetch_cache_blob_has(struct fetch_cache_blob *b, uint64_t off,
			  uint64_t len);
void fetch_cache_blob_wait(struct fetch_cache_blob *b, uint64_t off,
			   uint64_t len);
/*
 * Writes data for the claimed run [off, off+len) (granule-aligned), makes
 * it durable, then marks it present; the claim is released either way.
 */
int fetch_cache_blob_fill(struct fetch_cache_blob *b, uint64_t off,
			  const void *data, uint64_t len, struct lp_err *err);
void fetch_cache_blob_unclaim(struct fetch_cache_blob *b, uint64_t off,
			      uint64_t len);
/* Writes claimed data without marking it present (fetch_source_fill). */
int fetch_cache_blob_write_raw(struct fetch_cache_blob *b, uint64_t off,
			       const void *data, size_t len);
/* fdatasync, then marks the claimed run present (releasing the claim). */
int fetch_cache_blob_commit(struct fetch_cache_blob *b, uint64_t off,
			    uint64_t len, struct lp_err *err);
int fetch_cache_blob_invalidate(struct fetch_cache_blob *b, uint64_t off,
				uint64_t len);
uint64_t fetch_cache_blob_present_bytes(struct fetch_cache_blob *b);
/*
 * Warming: a process that fetches a blob's wanted-first ranges ahead of
 * the fs daemon that will serve it (`lazypull probe --warm`) marks the
 * blob with an open-file-description lock on its data file, which goes
 * with the last close of the blob in that process.  0, or -EBUSY when
 * another process warms it already.
 */
int fetch_cache_blob_warm_begin(struct fetch_cache_blob *b);
/* True while another process (not this one) warms b. */
bool fetch_cache_blob_warming(struct fetch_cache_blob *b);

/* ---- blob source internals (source.c) --------------------------------- */

/*
 * Where a blob source gets bytes: the registry in production, a counting
 * fake in the unit tests.  stream may be NULL (no fetch_source_fill).
 */
struct fetch_backend {
	int (*read)(void *arg, void *buf, size_t len, uint64_t off,
		    struct lp_err *err);
	/* optional: several ranges at once (fetch_blob_read_many) */
	int (*read_many)(void *arg, struct fetch_read *r, size_t n,
			 struct lp_err *err);
	int (*stream)(void *arg,
		      int (*cb)(const void *data, size_t len, void *cbarg),
		      void *cbarg, struct lp_err *err);
	void (*free)(void *arg);
};

/* Takes ownership of arg (freed with be->free, also on failure). */
int fetch_blob_source_open_backend(struct fetch_cache *cache,
				   const char *digest, uint64_t size,
				   const struct fetch_source_opts *o,
				   const struct fetch_backend *be, void *arg,
				   struct lp_source **ret, struct lp_err *err);

#endif
