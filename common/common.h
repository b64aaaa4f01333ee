/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common: small shared pieces used by every module — error reporting,
 * logging, scoped cleanup, byte sources, hashing, base64.
 */
#ifndef LP_COMMON_H
#define LP_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- errors ----------------------------------------------------------- */

/*
 * Why something failed: a negative errno plus a bounded message.  The first
 * failure wins (lp_err_set does nothing if a message is already set);
 * callers add context while unwinding with lp_err_wrap().  May be NULL.
 */
struct lp_err {
	int code;	/* negative errno, 0 = no error recorded */
	char msg[512]; /* room for a path and two digests */
};

/* Records -code (code is a positive or negative errno) and returns -|code|. */
int lp_err_set(struct lp_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepends "context: " to the recorded message; returns err->code or -EIO. */
int lp_err_wrap(struct lp_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void lp_err_clear(struct lp_err *err);

/* ---- logging ---------------------------------------------------------- */

enum lp_log_level { LP_LOG_ERROR, LP_LOG_WARN, LP_LOG_INFO, LP_LOG_DEBUG };
typedef void (*lp_log_sink)(enum lp_log_level lvl, const char *mod,
			    const char *msg, void *data);
extern enum lp_log_level lp_log_max;
void lp_log_set_sink(lp_log_sink sink, void *data);
/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC), the stamp of every log line */
void lp_log_stamp(char *buf, size_t size);
void lp_log_impl(enum lp_log_level lvl, const char *mod, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int lp_log_parse_level(const char *s, enum lp_log_level *ret);

#ifndef LP_MODNAME
#define LP_MODNAME "lazypull"
#endif
#define lp_log(lvl, ...)                                                       \
	do {                                                                   \
		if ((lvl) <= lp_log_max)                                       \
			lp_log_impl((lvl), LP_MODNAME, __VA_ARGS__);           \
	} while (0)
#define lp_debug(...) lp_log(LP_LOG_DEBUG, __VA_ARGS__)

/* ---- cleanup ---------------------------------------------------------- */

#define _cleanup_(f) __attribute__((cleanup(f)))
static inline void lp_freep(void *p) { free(*(void **)p); }
static inline void lp_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_free_ _cleanup_(lp_freep)
#define _cleanup_close_ _cleanup_(lp_closep)
#define TAKE_PTR(p)                                                            \
	({                                                                     \
		__typeof__(p) _p = (p);                                        \
		(p) = NULL;                                                    \
		_p;                                                            \
	})
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Overflow-checked helpers: return true on overflow. */
#define lp_add_overflow(a, b, r) __builtin_add_overflow((a), (b), (r))
#define lp_mul_overflow(a, b, r) __builtin_mul_overflow((a), (b), (r))

/* malloc wrappers that abort on OOM (a model never half-allocates). */
/* All of buf at off (retrying short writes and EINTR): 0 or -errno. */
int lp_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* Bytes read at off (short only at end of file) or -errno. */
int64_t lp_pread_all(int fd, void *buf, size_t len, uint64_t off);
/*
 * Ends the write of temporary file tmp (open as fd; r: 0, or the -errno
 * the writing failed with): fsync when sync, close, rename over path; on
 * any failure tmp is removed.  0, or -errno with err set (naming path).
 */
int lp_file_commit(int fd, const char *tmp, const char *path, int r,
		   bool sync, struct lp_err *err);
void *lp_xmalloc(size_t n);
void *lp_xcalloc(size_t n, size_t m);
void *lp_xrealloc(void *p, size_t n);
char *lp_xstrdup(const char *s);
/* A string printf formats, allocated (aborts when out of memory). */
char *lp_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Grows *arr (element size esz) so that it holds at least need elements. */
void lp_grow(void **arr, size_t esz, size_t *cap, size_t need);

/* ---- byte sources ----------------------------------------------------- */

/*
 * A random-access, read-only byte source (a local file, memory, a registry
 * blob through the fetcher).  pread returns the number of bytes read (short
 * only at end of source) or -errno.
 */
struct lp_source;
struct lp_range {
	uint64_t off, len;
};
struct lp_source_ops {
	int64_t (*pread)(struct lp_source *s, void *buf, size_t len,
			 uint64_t off);
	void (*close)(struct lp_source *s);
	/* Optional: bring these ranges in ahead of the preads that need
	 * them, in as few transfers as possible. */
	int (*prefetch)(struct lp_source *s, const struct lp_range *r,
			size_t n, struct lp_err *err);
	/* Optional: the same for bytes a read may never want (a read-ahead
	 * of files not opened yet): each range exactly (no read-ahead
	 * window), requests merged across at most max_gap missing bytes. */
	int (*prefetch_exact)(struct lp_source *s, const struct lp_range *r,
			      size_t n, uint64_t max_gap, struct lp_err *err);
	/* Optional: forget any cached copy of [off, off+len), e.g. bytes
	 * that failed a digest, so the next pread fetches them again. */
	int (*invalidate)(struct lp_source *s, uint64_t off, uint64_t len);
	/* Optional: true while another process is bringing this source's
	 * bytes into the cache it shares with us (the snapshotter warming a
	 * layer it just pulled): a prefetch of ours would fetch them twice. */
	bool (*warming)(struct lp_source *s);
	/* Optional: true if [off, off+len) can be read now without a
	 * transfer (another process may have just brought it in). */
	bool (*cached)(struct lp_source *s, uint64_t off, uint64_t len);
};
struct lp_source {
	const struct lp_source_ops *ops;
	uint64_t size;
	char *name; /* for messages: a path or a digest */
	void *priv;
};

/*
 * pthread_create with every signal blocked in the new thread (it inherits
 * the mask): signals stay for the thread that waits for them (the FUSE
 * loop, the gRPC loop).  attr may be NULL.  0 or the pthread_create error.
 */
int lp_thread_create(pthread_t *t, const pthread_attr_t *attr,
		     void *(*fn)(void *), void *arg);

/* CLOCK_MONOTONIC in ns, and milliseconds since such a time. */
uint64_t lp_now_ns(void);
double lp_ms_since(uint64_t t0_ns);

/* Reads exactly len bytes at off; short reads become -EIO with a message. */
int lp_source_read_full(struct lp_source *s, void *buf, size_t len,
			uint64_t off, struct lp_err *err);
/* No-ops (0) for sources without the optional op. */
int lp_source_prefetch(struct lp_source *s, const struct lp_range *r,
		       size_t n, struct lp_err *err);
/* prefetch_exact, else prefetch */
int lp_source_prefetch_exact(struct lp_source *s, const struct lp_range *r,
			     size_t n, uint64_t max_gap, struct lp_err *err);
int lp_source_invalidate(struct lp_source *s, uint64_t off, uint64_t len);
/* False for sources without the optional op. */
bool lp_source_warming(struct lp_source *s);
/* True for sources without the optional op (their bytes are local). */
bool lp_source_cached(struct lp_source *s, uint64_t off, uint64_t len);
int lp_source_open_file(const char *path, struct lp_source **ret,
			struct lp_err *err);
/* Borrows data (not copied); data must outlive the source. */
struct lp_source *lp_source_new_mem(const void *data, size_t len,
				    const char *name);
void lp_source_free(struct lp_source *s);
static inline void lp_source_freep(struct lp_source **s)
{
	lp_source_free(*s);
}

/* ---- hashing ---------------------------------------------------------- */

void lp_sha256(const void *data, size_t len, uint8_t out[32]);
/* The same digest in plain C (sha256.c), for processes that hash only a
 * few short strings and need not load libcrypto for it. */
void lp_sha256_plain(const void *data, size_t len, uint8_t out[32]);
struct lp_sha256_ctx;
struct lp_sha256_ctx *lp_sha256_new(void);
void lp_sha256_update(struct lp_sha256_ctx *c, const void *data, size_t len);
void lp_sha256_final(struct lp_sha256_ctx *c, uint8_t out[32]); /* frees c */
void lp_hex(const uint8_t *in, size_t n, char *out /* 2n+1 */);
/* Parses "sha256:<64 hex>"; returns 0 or -EINVAL. */
int lp_parse_sha256_digest(const char *s, size_t len, uint8_t out[32]);

/*
 * CRC32C (Castagnoli), hardware-assisted where the CPU has it.  Start with
 * crc 0; pass the previous result to continue over more data.
 */
uint32_t lp_crc32c(uint32_t crc, const void *data, size_t len);
/*
 * The CRC32C of each block-byte piece of data[0, len) (the last one may be
 * short) into out[0, ceil(len / block)).  Fastest when block is a multiple
 * of 8.
 */
void lp_crc32c_blocks(const void *data, uint64_t len, size_t block,
		      uint32_t *out);

/* ---- base64 ----------------------------------------------------------- */

/* Standard padded base64.  decode returns length or -EINVAL. */
size_t lp_base64_encoded_len(size_t n);
void lp_base64_encode(const uint8_t *in, size_t n, char *out /* +1 NUL */);
int64_t lp_base64_decode(const char *in, size_t n, uint8_t *out /* n*3/4 */);

#endif
