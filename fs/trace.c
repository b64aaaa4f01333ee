/* SPDX-License-Identifier: Apache-2.0 */
/* Access traces: record the files a mount opens first, load them back. */
#include "fs/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TRACE_MAGIC "lazypull-trace 1\n"
#define TRACE_MAX_FILE (16u << 20)

struct trace {
	const struct model *m;
	char *path;
	unsigned window_s;
	_Atomic uint8_t *seen; /* bit per inode: noted already */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t *ino; /* in order of first open; protected by lock */
	uint32_t n;
	size_t cap;
	bool started;	/* first note seen: the window runs */
	bool closed;	/* window over: no more notes */
	bool written;	/* the file holds every entry */
	bool stop;
	pthread_t thread;
	bool have_thread;
};

static int write_file(struct trace *t, const uint32_t *ino, uint32_t n)
{
	size_t len = strlen(t->path);
	_cleanup_free_ char *tmp = lp_xmalloc(len + 16);
	char buf[4096 + 2];
	FILE *f;
	int fd, r = 0;

	snprintf(tmp, len + 16, "%s.tmp.%d", t->path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		lp_log(LP_LOG_WARN, "trace: %s: %s", tmp, strerror(errno));
		return -errno;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return -ENOMEM;
	}
	fputs(TRACE_MAGIC, f);
	for (uint32_t i = 0; i < n; i++) {
		int k = model_path(t->m, ino[i], buf, sizeof(buf) - 1);

		if (k <= 0 || strchr(buf, '\n'))
			continue;
		fputs(buf, f);
		fputc('\n', f);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		r = -errno;
	if (fclose(f) != 0 && !r)
		r = -errno;
	if (!r && rename(tmp, t->path) < 0)
		r = -errno;
	if (r) {
		lp_log(LP_LOG_WARN, "trace: writing %s: %s", t->path,
		       strerror(-r));
		unlink(tmp);
		return r;
	}
	lp_log(LP_LOG_INFO, "trace: %u files opened first written to %s", n,
	       t->path);
	return 0;
}

/* Writes what is recorded and not yet written (lock held on entry and
 * exit; the file is written without it). */
static void flush_locked(struct trace *t)
{
	uint32_t *copy, n = t->n;

	if (t->written || !n)
		return;
	copy = lp_xmalloc((size_t)n * sizeof(*copy));
	memcpy(copy, t->ino, (size_t)n * sizeof(*copy));
	t->written = true;
	pthread_mutex_unlock(&t->lock);
	write_file(t, copy, n);
	free(copy);
	pthread_mutex_lock(&t->lock);
}

static void *trace_main(void *arg)
{
	struct trace *t = arg;
	struct timespec end;

	pthread_mutex_lock(&t->lock);
	while (!t->started && !t->stop)
		pthread_cond_wait(&t->cond, &t->lock);
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += t->window_s;
	while (!t->stop &&
	       pthread_cond_timedwait(&t->cond, &t->lock, &end) != ETIMEDOUT)
		;
	t->closed = true;
	flush_locked(t);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int trace_new(const struct model *served, const char *path, unsigned window_s,
	      struct trace **ret, struct lp_err *err)
{
	struct trace *t;

	*ret = NULL;
	if (!served || !path || !path[0])
		return lp_err_set(err, EINVAL, "trace: no model or path");
	t = lp_xcalloc(1, sizeof(*t));
	t->m = served;
	t->path = lp_xstrdup(path);
	t->window_s = window_s ? window_s : TRACE_DEFAULT_WINDOW_S;
	t->seen = lp_xcalloc(served->n_inodes / 8 + 1, 1);
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	if (pthread_create(&t->thread, NULL, trace_main, t) != 0) {
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
		free(t->seen);
		free(t->path);
		free(t);
		return lp_err_set(err, EAGAIN, "trace: no thread");
	}
	t->have_thread = true;
	*ret = t;
	return 0;
}

void trace_note(struct trace *t, uint32_t ino)
{
	uint8_t bit, old;

	if (!t || ino >= t->m->n_inodes)
		return;
	bit = (uint8_t)(1u << (ino % 8));
	old = atomic_fetch_or(&t->seen[ino / 8], bit);
	if (old & bit)
		return;
	pthread_mutex_lock(&t->lock);
	if (!t->closed && t->n < TRACE_MAX_ENTRIES) {
		lp_grow((void **)&t->ino, sizeof(*t->ino), &t->cap, t->n + 1);
		t->ino[t->n++] = ino;
		t->written = false;
		if (!t->started) {
			t->started = true;
			pthread_cond_broadcast(&t->cond);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

uint32_t trace_count(struct trace *t)
{
	uint32_t n;

	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void trace_free(struct trace *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (t->have_thread)
		pthread_join(t->thread, NULL);
	pthread_mutex_lock(&t->lock);
	t->closed = true;
	flush_locked(t);
	pthread_mutex_unlock(&t->lock);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t->ino);
	free((void *)t->seen);
	free(t->path);
	free(t);
}

int trace_parse(const char *data, size_t len, const char *name, char ***ret,
		uint32_t *ret_n, struct lp_err *err)
{
	size_t n = 0, magic = strlen(TRACE_MAGIC);
	char **v, *arena, *p, *end;

	*ret = NULL;
	*ret_n = 0;
	if (len > TRACE_MAX_FILE)
		return lp_err_set(err, EFBIG, "trace %s: %zu bytes, more than "
				  "%u", name, len, TRACE_MAX_FILE);
	if (len < magic || memcmp(data, TRACE_MAGIC, magic) != 0)
		return lp_err_set(err, EINVAL, "trace %s: not a lazypull trace "
				  "(no \"lazypull-trace 1\" line)", name);
	if (data[len - 1] != '\n')
		return lp_err_set(err, EINVAL, "trace %s: truncated (no final "
				  "newline)", name);
	if (memchr(data, '\0', len))
		return lp_err_set(err, EINVAL, "trace %s: a NUL byte", name);
	for (size_t i = magic; i < len; i++)
		if (data[i] == '\n')
			n++;
	if (n > TRACE_MAX_ENTRIES)
		return lp_err_set(err, EINVAL, "trace %s: %zu entries, more "
				  "than %u", name, n, TRACE_MAX_ENTRIES);
	/* one block: the pointers, then the strings */
	v = lp_xmalloc(n * sizeof(*v) + (len - magic) + 1);
	arena = (char *)(v + n);
	memcpy(arena, data + magic, len - magic);
	arena[len - magic] = '\0';
	n = 0;
	for (p = arena, end = arena + (len - magic); p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		*nl = '\0';
		if (p[0] != '/') {
			free(v);
			return lp_err_set(err, EINVAL, "trace %s: entry %zu is "
					  "not an absolute path", name, n + 1);
		}
		v[n++] = p;
		p = nl + 1;
	}
	*ret = v;
	*ret_n = (uint32_t)n;
	return 0;
}

int trace_load(const char *path, char ***ret, uint32_t *ret_n,
	       struct lp_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	struct stat st;
	size_t len = 0;

	*ret = NULL;
	*ret_n = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT
			       ? -ENOENT
			       : lp_err_set(err, errno, "trace %s: %s", path,
					    strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return lp_err_set(err, EINVAL, "trace %s: not a file", path);
	if ((uint64_t)st.st_size > TRACE_MAX_FILE)
		return lp_err_set(err, EFBIG, "trace %s: %lld bytes, more than "
				  "%u", path, (long long)st.st_size,
				  TRACE_MAX_FILE);
	data = lp_xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t k = read(fd, data + len, (size_t)st.st_size - len);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	return trace_parse(data, len, path, ret, ret_n, err);
}
