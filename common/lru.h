/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/lru: least-recently-used eviction of file pairs in a directory, as
 * the blob cache (fetcher/cache.c) and the decoded-chunk store (fs/decoded.c)
 * keep them.
 *
 * An entry is a data file NAME<data_suffix> with a side file
 * NAME<side_suffix> next to it (a map, an index) that may be missing.  Its
 * last use is the side file's mtime, else the data file's.  Whoever uses an
 * entry holds a flock on its data file; an eviction takes LOCK_EX without
 * blocking, so an entry in use is skipped, and removes the side file first.
 */
#ifndef LP_LRU_H
#define LP_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_lru {
	const char *dir;
	bool nested; /* entries sit in dir's subdirectories, not in dir */
	const char *data_suffix, *side_suffix;
	/* a data file's exact name length, suffix included; 0: any name
	 * longer than the suffix */
	size_t name_len;
	bool count_side; /* the side file's size counts toward an entry's */
	/* each eviction logs "<log_prefix>evicted PATH (N bytes)" at debug
	 * under module log_mod */
	const char *log_mod, *log_prefix;
};

/*
 * Evicts entries, least recently used first, while the total exceeds target.
 * An entry's bytes are its data file's allocated blocks, plus its side file's
 * size with count_side.  Returns the bytes of the entries left, or -errno if
 * dir cannot be opened.  Callers serialise passes over one directory.
 */
int64_t lp_lru_evict(const struct lp_lru *o, uint64_t target);

/*
 * Removes the one entry data_path, side file side_path, the way an
 * eviction does: not while anyone holds it.  True when both are gone (a
 * side file without its data file goes too), false when it is in use.
 */
bool lp_lru_remove(const char *data_path, const char *side_path);

#endif
