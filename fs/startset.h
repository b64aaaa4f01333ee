/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An image's start files: what a container of it reads before its first
 * instruction runs, found from the image config alone.  The entrypoint's
 * program (argv[0] through the config's PATH and WorkingDir, symlinks
 * followed), the files its arguments name (a script, a config file), a
 * script's "#!" interpreter (also behind /usr/bin/env), and for each ELF
 * program or library its dynamic loader, its DT_NEEDED libraries (through
 * its run path and the usual library directories) and /etc/ld.so.cache.
 *
 * Also /etc/passwd and /etc/group (the runtime reads them), and for a
 * dynamic program the C library's time zone and locale files.
 *
 * The set is found level by level: a level's files are fetched together
 * (io->fetch, one batch of merged requests), then read to find the next
 * level (the libraries an ELF needs are known only once its dynamic
 * section is there).  An image without a landmark or an access trace
 * thus has its program and libraries fetched while the container is
 * being created, instead of one library after another as the loader
 * opens them.
 *
 * A Python program (the program or a script's interpreter is CPython 3.8
 * or later with its stdlib in the image) also gets the modules it imports
 * (fs/pyimport.h): its script's (-c's, -m's) and the start-up modules',
 * found along its sys.path, then theirs.  Its files go through one queue
 * instead of levels: a few threads fetch batches of it (io->fetch is then
 * called from several threads at once) in the order the program meets
 * them: the interpreter, its loader and libraries, then the modules as
 * Python imports them (depth first, in statement order; an extension
 * module's libraries where it is imported); each batch is read for more
 * as soon as it is in.
 */
#ifndef LAZYPULL_FS_STARTSET_H
#define LAZYPULL_FS_STARTSET_H

#include <stdint.h>

#include "common/common.h"
#include "fs/model.h"

#define STARTSET_DEFAULT_MAX_BYTES (64ull << 20) /* stored bytes */
#define STARTSET_MAX_FILES 256	  /* program, libraries, scripts */
#define STARTSET_PY_MAX_FILES 1024 /* a Python program's imports */
#define STARTSET_PY_FETCHERS 6 /* batches of them in flight */
/* files whose stored bytes are this close go in one batch: the io's fetch
 * merges their ranges into one request */
#define STARTSET_NEAR_GAP (32u << 10)
#define STARTSET_ARG_MAX_BYTES (1u << 20) /* a file an argument names */
#define STARTSET_DEFAULT_PATH                                                 \
	"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct startset_io {
	/* Reads up to len bytes of regular file ino at off: the count, or
	 * -errno. */
	int64_t (*read)(void *arg, uint32_t ino, uint64_t off, void *buf,
			size_t len);
	/* Fetches the files' bytes; returns when they are in or failed. */
	void (*fetch)(void *arg, const uint32_t *ino, uint32_t n);
	void *arg;
	/* optional, a bit per inode of the model: set (atomically) for each
	 * file of the set before it is fetched, so the caller can tell the
	 * opens it predicted from the others */
	uint8_t *mark;
};

struct startset_opts {
	const char *const *argv; /* the config's Entrypoint then Cmd */
	uint32_t argc;
	const char *const *env; /* "NAME=value" (PATH is used) */
	uint32_t n_env;
	const char *workdir;	/* NULL = "/" */
	uint64_t max_bytes;	/* stored bytes; 0 = the default */
};

struct startset_stats {
	uint32_t files;	 /* fetched */
	uint64_t bytes;	 /* their stored bytes */
	uint32_t levels; /* fetch steps */
	uint32_t skipped; /* found but over the budget */
	uint32_t bad;	  /* ELF files that did not parse */
	uint32_t opened;  /* opened files examined (startset_opened) */
	uint32_t modules; /* Python modules found */
	char program[256]; /* argv[0] as resolved, "" if not found */
};

struct startset;

/* A start set of m for o (copied); io's callbacks are used from the
 * calling thread of startset_run() and startset_opened() only.  -EINVAL
 * without a program. */
int startset_new(const struct model *m, const struct startset_opts *o,
		 const struct startset_io *io, struct startset **ret,
		 struct lp_err *err);
void startset_free(struct startset *s);

/* Finds and fetches the start files.  Stops early when *stop becomes
 * true (may be NULL). */
void startset_run(struct startset *s, const bool *stop);

/*
 * A program opened file ino: if it is an ELF file not in the set (a
 * module an interpreter loads with dlopen), fetch the libraries it needs
 * that are not fetched yet, and theirs, before the loader asks.
 */
void startset_opened(struct startset *s, uint32_t ino, const bool *stop);

/* ino is in the set (fetched or being fetched) or was examined. */
bool startset_predicted(const struct startset *s, uint32_t ino);
const struct startset_stats *startset_stats(const struct startset *s);

/*
 * The inode of path in m, every symlink followed (the last one too),
 * relative paths from directory cwd (0 = the root).  0 when not found or
 * when the symlinks loop or nest too deep.
 */
uint32_t startset_resolve(const struct model *m, const char *path,
			  uint32_t cwd);

#endif
