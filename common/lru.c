/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "common/common.h"
#include "common/lru.h"

struct lru_ent {
	char *data_path, *side_path;
	uint64_t bytes;
	struct timespec used;
};

struct lru_scan {
	const struct lp_lru *o;
	struct lru_ent *ents;
	size_t n, cap;
	uint64_t total;
};

static int lru_cmp(const void *a, const void *b)
{
	const struct lru_ent *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return 0;
}

/* Removes an entry nobody holds; false if it is in use. */
static bool lru_try_evict(const struct lru_ent *e)
{
	struct stat a, b;
	int fd = open(e->data_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	bool done = false;

	if (fd < 0)
		return errno == ENOENT;
	/* still the file at that path, not one recreated after an eviction
	 * that ran between our open and our lock */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 &&
	    stat(e->data_path, &b) == 0 && a.st_ino == b.st_ino &&
	    a.st_dev == b.st_dev) {
		/* the side file first: a data file without one is just empty */
		unlink(e->side_path);
		unlink(e->data_path);
		done = true;
	}
	close(fd);
	return done;
}

bool lp_lru_remove(const char *data_path, const char *side_path)
{
	const struct lru_ent e = { .data_path = (char *)data_path,
				   .side_path = (char *)side_path };

	if (!lru_try_evict(&e))
		return false;
	/* a side file whose data file was not there: nobody holds it */
	unlink(side_path);
	return true;
}

static bool lru_name_matches(const struct lp_lru *o, const char *name)
{
	size_t l = strlen(name), sl = strlen(o->data_suffix);

	if (o->name_len ? l != o->name_len : l <= sl)
		return false;
	return l >= sl && !strcmp(name + l - sl, o->data_suffix);
}

/* Adds the entries among the files of dir (open as d). */
static void lru_scan_dir(struct lru_scan *s, const char *dir, DIR *d)
{
	const struct lp_lru *o = s->o;
	size_t dl = strlen(dir), sl = strlen(o->data_suffix);
	struct dirent *de;

	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		struct stat ds, ss;
		struct lru_ent e;

		if (!lru_name_matches(o, de->d_name))
			continue;
		e.data_path = lp_xmalloc(dl + l + 2);
		sprintf(e.data_path, "%s/%s", dir, de->d_name);
		e.side_path = lp_xmalloc(dl + l - sl + strlen(o->side_suffix) +
					 2);
		sprintf(e.side_path, "%s/%.*s%s", dir, (int)(l - sl),
			de->d_name, o->side_suffix);
		if (stat(e.data_path, &ds) < 0) {
			free(e.data_path);
			free(e.side_path);
			continue;
		}
		e.bytes = (uint64_t)ds.st_blocks * 512;
		e.used = ds.st_mtim;
		if (stat(e.side_path, &ss) == 0) {
			if (o->count_side)
				e.bytes += (uint64_t)ss.st_size;
			e.used = ss.st_mtim;
		}
		lp_grow((void **)&s->ents, sizeof(*s->ents), &s->cap, s->n + 1);
		s->ents[s->n++] = e;
		s->total += e.bytes;
	}
}

static void lru_scan_nested(struct lru_scan *s, DIR *top)
{
	const char *dir = s->o->dir;
	struct dirent *de;

	while ((de = readdir(top))) {
		_cleanup_free_ char *sub = NULL;
		DIR *d;

		if (de->d_name[0] == '.')
			continue;
		sub = lp_xmalloc(strlen(dir) + strlen(de->d_name) + 2);
		sprintf(sub, "%s/%s", dir, de->d_name);
		d = opendir(sub);
		if (!d)
			continue;
		lru_scan_dir(s, sub, d);
		closedir(d);
	}
}

int64_t lp_lru_evict(const struct lp_lru *o, uint64_t target)
{
	struct lru_scan s = { .o = o };
	DIR *top = opendir(o->dir);

	if (!top)
		return -errno;
	if (o->nested)
		lru_scan_nested(&s, top);
	else
		lru_scan_dir(&s, o->dir, top);
	closedir(top);
	if (s.total > target && s.n)
		qsort(s.ents, s.n, sizeof(*s.ents), lru_cmp);
	for (size_t i = 0; i < s.n; i++) {
		struct lru_ent *e = &s.ents[i];

		if (s.total > target && lru_try_evict(e)) {
			if (LP_LOG_DEBUG <= lp_log_max)
				lp_log_impl(LP_LOG_DEBUG, o->log_mod,
					    "%sevicted %s (%llu bytes)",
					    o->log_prefix, e->data_path,
					    (unsigned long long)e->bytes);
			s.total -= e->bytes;
		}
		free(e->data_path);
		free(e->side_path);
	}
	free(s.ents);
	return (int64_t)s.total;
}
