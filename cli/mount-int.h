/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazypull mount's private parts: the served layers as a chunk source
 * (mount.c) and the read-aheads of an image with nothing to prefetch
 * (mount-ahead.c): the directory and tree read-ahead, and the start files.
 */
#ifndef LAZYPULL_CLI_MOUNT_INT_H
#define LAZYPULL_CLI_MOUNT_INT_H

#include <pthread.h>

#include "fs/engine.h"
#include "fs/fuse.h"
#include "fs/startset.h"
#include "fetcher/fetcher.h"

struct mount_src {
	struct engine_layer **layers;
	uint32_t n_layers;
	const struct model *m; /* the served model */
	uint32_t *blob_base;   /* per layer: its first blob in m->blobs */
	struct engine_prefetch *pf; /* set before serving; may be NULL */
};

/* Fetches (no decode) the served chunks idx[0..n), sorted by blob: one
 * prefetch per blob, the blobs at once; max_gap as
 * lp_source_prefetch_exact(), UINT64_MAX: the source's own plan. */
void mount_src_prefetch_gap(struct mount_src *ms, const uint32_t *idx,
			    uint32_t n, uint64_t max_gap);

/*
 * Directory read-ahead: the second distinct file opened in a directory
 * fetches (no decode) the directory's other small files, in blob order, up
 * to cap stored bytes, on background threads: files of one directory sit
 * next to each other in a layer, and a program that opens two of them (a
 * Python import) tends to open more.  One open alone (a library, a locale
 * file) does not: such directories are large and mostly unread; but in a
 * directory whose small files hold at most DIRAHEAD_SMALL_DIR, the first
 * open of a small file does (the sweep costs little).  Files above
 * DIRAHEAD_FILE_MAX stored bytes are left to the reads that want them.
 * Two workers, so one large directory does not hold up the next.
 */
#define DIRAHEAD_QUEUE 256
#define DIRAHEAD_THREADS 2
#define DIRAHEAD_OPENS 2
#define DIRAHEAD_FILE_MAX (64u << 10)
#define DIRAHEAD_SMALL_DIR (1u << 20)
/* the default cap, when the image has nothing to prefetch (no landmark,
 * no access trace): see bench/README.md, "Directory read-ahead" */
#define DIRAHEAD_DEFAULT_KIB 4096
#define DIR_AHEAD_AUTO (-1)

/*
 * The tree sweep: opens of one kind of file (the same name extension:
 * .pyc, .so, .js) in DIRAHEAD_FAN_CHILDREN different subdirectories of a
 * directory at least two levels down (usr/lib/python3.11, app/node_modules)
 * mean a program is walking that tree (an interpreter importing its
 * library); the small files of that kind in the whole tree are then
 * fetched, if they hold at most DIRAHEAD_FAN_MAX stored bytes, and at most
 * DIRAHEAD_FAN_TOTAL for all sweeps of a mount.
 */
#define DIRAHEAD_FAN_CHILDREN 3
#define DIRAHEAD_FAN_MIN_DEPTH 2
#define DIRAHEAD_FAN_MAX (8u << 20)
#define DIRAHEAD_FAN_TOTAL (16u << 20)
#define DIRAHEAD_FAN_SLOTS 4096
#define DIRAHEAD_FAN_WALK 200000 /* entries looked at per sweep */

struct fan_slot {
	uint32_t dir, kind;	/* 0: free */
	uint32_t child[DIRAHEAD_FAN_CHILDREN - 1];
	uint8_t n;		/* children seen, up to DIRAHEAD_FAN_CHILDREN */
};

struct dirahead_job {
	uint32_t dir;
	uint32_t kind; /* 0: the directory's small files; else a tree sweep
			  of that kind */
	uint32_t *chunks; /* else: a batch of a sweep (dir, kind unused) */
	uint32_t n_chunks;
};

/*
 * A sweep is fetched in batches of about DIRAHEAD_BATCH stored bytes, the
 * later ones queued for the other worker: each claims its granules only
 * when it starts, so a read of a file in a later batch fetches it at once
 * instead of waiting behind the whole sweep.
 */
#define DIRAHEAD_BATCH (512u << 10)

struct dirahead {
	struct mount_src *ms;
	uint64_t cap;
	uint8_t *seen;	   /* bit per served inode: opened (atomic) */
	const uint8_t *predicted; /* bit per inode: a start file (atomic; the
				     loader's opens are no directory walk) */
	uint8_t *queued;   /* bit per directory inode: swept (atomic) */
	uint32_t *opens;   /* per directory inode: files opened (atomic) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct dirahead_job q[DIRAHEAD_QUEUE]; /* protected by lock */
	uint32_t head, n;
	struct fan_slot *fan;	/* [DIRAHEAD_FAN_SLOTS], protected by lock */
	uint64_t fan_bytes;	/* swept by tree sweeps, protected by lock */
	bool stop;
	pthread_t thread[DIRAHEAD_THREADS];
	unsigned started;
};

/* Starts the read-ahead's workers (d zeroed, d->predicted set or NULL). */
void dirahead_start(struct dirahead *d, struct mount_src *ms, uint64_t cap);
/* A file was opened (thread-safe; d may be NULL or not started). */
void dirahead_note(struct dirahead *d, uint32_t ino);
void dirahead_stop(struct dirahead *d);

/*
 * The start files (fs/startset.h): from the image config, on a thread of
 * their own, once the mount is up.  Reads go through the FUSE server's
 * chunk cache and decoded store (a chunk decoded to read an ELF header or
 * a module's imports is not decoded again when the program reads it);
 * fetches are one src_prefetch per batch, in blob order.
 */
#define START_FILES_DEFAULT_MIB 64
#define START_FILES_AUTO (-1)

#define START_FILES_QUEUE 256

struct startfiles {
	struct mount_src *ms;
	struct fsrv *fs; /* reads go through its chunk cache */
	const struct fetch_image_config *config;
	struct dirahead *da; /* opens handed on once looked at, or NULL */
	uint8_t *predicted; /* bit per inode, see struct dirahead */
	const char *name;
	uint64_t max;
	pthread_t thread;
	bool started;
	bool stop;    /* atomic */
	bool running; /* taking opens (atomic) */
	bool in_run;  /* startset_run() going on: every open is held back
		       * until it is over (atomic) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t q[START_FILES_QUEUE]; /* opened files, protected by lock */
	uint32_t head, n;
};

/*
 * Starts the start files' thread for config (borrowed, must outlive it);
 * sf->predicted must be allocated (a bit per served inode).  Opens it
 * looked at go on to da (may be NULL).
 */
void startfiles_start(struct startfiles *sf, struct mount_src *ms,
		      struct fsrv *fs, const struct fetch_image_config *config,
		      struct dirahead *da, const char *name, uint64_t max);
/* ino is in the start files (sf may be NULL). */
bool startfiles_predicted(const struct startfiles *sf, uint32_t ino);
/* An open: true if the start files' thread takes it (see mount-ahead.c). */
bool startfiles_note(struct startfiles *sf, uint32_t ino);
/* Stops the thread and frees sf->predicted. */
void startfiles_release(struct startfiles *sf);

#endif
