/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Access traces: the files a mount's first run opened, in order, kept per
 * image (or layer) so later mounts of the same image can prefetch them
 * before they are asked for.  An image without a .prefetch.landmark then
 * starts like one that has it, from its second run on.
 *
 * The file is text: a "lazypull-trace 1" line, then one absolute path per
 * line (paths holding a newline are not recorded).  It is replaced
 * atomically (write, fsync, rename), so a reader sees an old or a new
 * trace, never a torn one.
 */
#ifndef LAZYPULL_FS_TRACE_H
#define LAZYPULL_FS_TRACE_H

#include <stdint.h>

#include "common/common.h"
#include "fs/model.h"

#define TRACE_MAX_ENTRIES 20000
#define TRACE_DEFAULT_WINDOW_S 30

struct trace;

/*
 * Starts recording opens of files of served (borrowed: must outlive the
 * recorder) into file path.  Only the first window_s seconds after the
 * first recorded open count (0 = TRACE_DEFAULT_WINDOW_S): a container's
 * start, not what it does for days after.  A background thread writes the
 * file when the window closes; trace_free() writes it too if the window is
 * still open.  Nothing is written when nothing was opened.
 */
int trace_new(const struct model *served, const char *path, unsigned window_s,
	      struct trace **ret, struct lp_err *err);
/* Notes an open of ino: cheap after the first call per inode;
 * thread-safe; accepts NULL. */
void trace_note(struct trace *t, uint32_t ino);
/* Stops recording, writes the file if anything is unwritten, frees.
 * Accepts NULL. */
void trace_free(struct trace *t);
/* Entries recorded so far. */
uint32_t trace_count(struct trace *t);

/*
 * Loads a trace file: *ret is an array of *ret_n paths (one allocation:
 * free(*ret) frees all).  A missing file is -ENOENT without a message; a
 * malformed one is -EINVAL with one.
 */
int trace_load(const char *path, char ***ret, uint32_t *ret_n,
	       struct lp_err *err);

/* trace_load() of bytes in memory; name is for messages. */
int trace_parse(const char *data, size_t len, const char *name, char ***ret,
		uint32_t *ret_n, struct lp_err *err);

#endif
