/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/fuse: the FUSE low-level server.  It serves one immutable model
 * (a merged image tree or one layer in overlayfs form) read-only through
 * libfuse3 and reads file data only through a chunk source: it knows
 * neither formats nor the network.
 *
 * Inode numbers are model inode ids (the root is 1, FUSE_ROOT_ID).
 * Decoded chunks are kept in a bounded LRU shared by the worker threads,
 * and optionally on disk (fs/decoded.h); concurrent reads of one chunk
 * wait for a single call of the source.
 *
 * This header does not include libfuse headers.
 */
#ifndef LP_FS_FUSE_H
#define LP_FS_FUSE_H

#include "fs/model.h"

/*
 * Where file data comes from.  read_chunk decodes and verifies chunk idx of
 * the served model (model.chunks[idx]) into out, exactly chunks[idx].len
 * bytes, and returns 0 or -errno (with the why in err, which may be NULL).
 * It is called from many worker threads at once, never twice at the same
 * time for one idx.  A failure fails only the read that needed the chunk
 * (EIO to the caller); the next read of the chunk calls read_chunk again.
 */
struct fsrv_source_ops {
	int (*read_chunk)(void *priv, uint32_t idx, void *out,
			  struct lp_err *err);
	/*
	 * Optional: a read needs chunks idx[0..n) (of one file, in order),
	 * none of them decoded yet; bring in what they need in as few
	 * transfers as possible before read_chunk is called for each.  Best
	 * effort: read_chunk reports any error.
	 */
	void (*prefetch)(void *priv, const uint32_t *idx, uint32_t n);
};

struct fsrv_opts {
	const char *fsname;  /* mount source shown in mountinfo; "lazypull" */
	const char *subtype; /* "fuse.<subtype>" fs type; "lazypull" */
	const char *name;    /* image / layer named in log lines; may be NULL */
	bool allow_other;    /* -o allow_other */
	bool debug;	     /* libfuse request tracing (-d) */
	unsigned max_idle_threads; /* 0 = 10; libfuse >= 3.12 runs at most
				      10 workers for FUSE_USE_VERSION 35 */
	uint64_t cache_bytes;	   /* decoded-chunk cache; 0 = 32 MiB */
	double timeout;		   /* entry/attr seconds; 0 = one day */
	bool no_readahead;	   /* do not decode the next chunk of a file
				      read sequentially ahead of time */
	/* the kernel's read-ahead for the mount (root only: sysfs), so
	 * sequential reads keep several requests in flight; 0 = 4096 KiB,
	 * FSRV_READ_AHEAD_KERNEL = leave the kernel's default (128) */
	uint32_t read_ahead_kb;
	/*
	 * Decoded chunks kept on disk (fs/decoded.h) in this directory, for
	 * chunks with a digest of blobs named by a sha256: a warm read is
	 * then a pread, and decoded chunks leave memory once stored (so the
	 * default cache_bytes is 8 MiB).  NULL = none.
	 */
	const char *decoded_dir;
	uint64_t decoded_max;	   /* bytes; 0 = DSTORE_DEFAULT_MAX */
	/* called on each open of a regular file (an access trace records
	 * them, fs/trace.h); must be quick and thread-safe; may be NULL */
	void (*on_open)(void *arg, uint32_t ino);
	void *on_open_arg;
	/* called once when the session is to end (a signal, fsrv_exit(),
	 * the file system gone), while reads may still wait in the source,
	 * so it can make them give up; and after fsrv_run() if not before;
	 * may be NULL */
	void (*on_exit)(void *arg);
	void *on_exit_arg;
};

#define FSRV_READ_AHEAD_KERNEL UINT32_MAX

/* Counters, read with fsrv_get_stats() (approximate while serving). */
struct fsrv_stats {
	uint64_t reads, read_bytes, read_errors;
	uint64_t chunk_hits, chunk_misses, chunk_waits;
	uint64_t cache_bytes, cache_entries; /* current */
	uint64_t lookups;		     /* outstanding kernel lookups */
	uint64_t readahead;		     /* chunks decoded ahead */
	/* the decoded store (0 without one) */
	uint64_t store_hits, store_puts, store_bad, store_bytes;
};

struct fsrv;

/*
 * Creates a server for model m.  m, ops and priv are borrowed and must stay
 * valid (and m unchanged) until fsrv_free().  o may be NULL.
 */
int fsrv_new(const struct model *m, const struct fsrv_source_ops *ops,
	     void *priv, const struct fsrv_opts *o, struct fsrv **ret,
	     struct lp_err *err);

/*
 * Mounts read-only at mountpoint (as root directly, otherwise through
 * fusermount3).  The kernel queues requests until fsrv_run() serves them.
 */
int fsrv_mount(struct fsrv *s, const char *mountpoint, struct lp_err *err);
/*
 * Serves the FUSE connection of an existing mount at mountpoint through
 * fd, a /dev/fuse descriptor of it (kept open by whoever started us):
 * the daemon that served it died and this one takes over, without a new
 * mount, so running users of the mount keep it.  Unmounting (at exit) is
 * umount2(mountpoint, MNT_DETACH).
 */
int fsrv_takeover(struct fsrv *s, const char *mountpoint, int fd,
		  struct lp_err *err);

enum {
	/* SIGTERM, SIGINT and SIGHUP end fsrv_run() while it runs. */
	FSRV_RUN_SIGNALS = 1u << 0,
};

/*
 * Serves requests on a multi-threaded session until the file system is
 * unmounted, fsrv_exit() is called or (FSRV_RUN_SIGNALS) a signal arrives.
 * Returns 0 or -errno.  Call fsrv_unmount() afterwards.
 */
int fsrv_run(struct fsrv *s, unsigned flags);

/*
 * Asks fsrv_run() to return.  Async-signal-safe; from a signal handler on
 * the thread in fsrv_run() it takes effect at once, otherwise when the
 * next request arrives (libfuse's loop only then looks at the flag).
 */
void fsrv_exit(struct fsrv *s);

/* Unmounts if still mounted; safe to call twice. */
void fsrv_unmount(struct fsrv *s);

/* Unmounts if needed and frees; accepts NULL. */
void fsrv_free(struct fsrv *s);
static inline void fsrv_freep(struct fsrv **s) { fsrv_free(*s); }

void fsrv_get_stats(struct fsrv *s, struct fsrv_stats *ret);

/*
 * The read path without the kernel, for tests and tools: reads up to len
 * bytes of regular file ino at off through the chunk cache.  Returns bytes
 * (short only at end of file) or -errno.
 */
int64_t fsrv_read(struct fsrv *s, uint32_t ino, void *buf, size_t len,
		  uint64_t off, struct lp_err *err);

#endif
