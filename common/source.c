/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"

int lp_source_read_full(struct lp_source *s, void *buf, size_t len,
			uint64_t off, struct lp_err *err)
{
	uint64_t end;
	size_t done = 0;

	if (lp_add_overflow(off, (uint64_t)len, &end) || end > s->size)
		return lp_err_set(err, EIO,
				  "%s: read of %zu bytes at offset %llu is past "
				  "the end (size %llu)",
				  s->name, len, (unsigned long long)off,
				  (unsigned long long)s->size);
	while (done < len) {
		int64_t n = s->ops->pread(s, (char *)buf + done, len - done,
					  off + done);
		if (n < 0)
			return lp_err_set(err, (int)n, "%s: read at %llu: %s",
					  s->name,
					  (unsigned long long)(off + done),
					  strerror((int)-n));
		if (n == 0)
			return lp_err_set(err, EIO,
					  "%s: unexpected end of data at "
					  "offset %llu",
					  s->name,
					  (unsigned long long)(off + done));
		done += (size_t)n;
	}
	return 0;
}

int lp_source_prefetch(struct lp_source *s, const struct lp_range *r,
		       size_t n, struct lp_err *err)
{
	if (!s->ops->prefetch || n == 0)
		return 0;
	return s->ops->prefetch(s, r, n, err);
}

int lp_source_prefetch_exact(struct lp_source *s, const struct lp_range *r,
			     size_t n, uint64_t max_gap, struct lp_err *err)
{
	if (!s->ops->prefetch_exact)
		return lp_source_prefetch(s, r, n, err);
	if (n == 0)
		return 0;
	return s->ops->prefetch_exact(s, r, n, max_gap, err);
}

int lp_source_invalidate(struct lp_source *s, uint64_t off, uint64_t len)
{
	if (!s->ops->invalidate)
		return 0;
	return s->ops->invalidate(s, off, len);
}

bool lp_source_warming(struct lp_source *s)
{
	return s->ops->warming && s->ops->warming(s);
}

bool lp_source_cached(struct lp_source *s, uint64_t off, uint64_t len)
{
	return !s->ops->cached || s->ops->cached(s, off, len);
}

struct file_priv {
	int fd;
};

static int64_t file_pread(struct lp_source *s, void *buf, size_t len,
			  uint64_t off)
{
	struct file_priv *p = s->priv;
	ssize_t n;

	do {
		n = pread(p->fd, buf, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static void file_close(struct lp_source *s)
{
	struct file_priv *p = s->priv;

	if (p && p->fd >= 0)
		close(p->fd);
	free(p);
}

static const struct lp_source_ops file_ops = {
	.pread = file_pread,
	.close = file_close,
};

int lp_source_open_file(const char *path, struct lp_source **ret,
			struct lp_err *err)
{
	struct lp_source *s;
	struct file_priv *p;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return lp_err_set(err, e, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return lp_err_set(err, EINVAL, "%s: not a regular file", path);
	}
	p = lp_xmalloc(sizeof(*p));
	p->fd = fd;
	s = lp_xcalloc(1, sizeof(*s));
	s->ops = &file_ops;
	s->size = (uint64_t)st.st_size;
	s->name = lp_xstrdup(path);
	s->priv = p;
	*ret = s;
	return 0;
}

struct mem_priv {
	const uint8_t *data;
};

static int64_t mem_pread(struct lp_source *s, void *buf, size_t len,
			 uint64_t off)
{
	struct mem_priv *p = s->priv;

	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	memcpy(buf, p->data + off, len);
	return (int64_t)len;
}

static void mem_close(struct lp_source *s)
{
	free(s->priv);
}

static const struct lp_source_ops mem_ops = {
	.pread = mem_pread,
	.close = mem_close,
};

struct lp_source *lp_source_new_mem(const void *data, size_t len,
				    const char *name)
{
	struct lp_source *s = lp_xcalloc(1, sizeof(*s));
	struct mem_priv *p = lp_xmalloc(sizeof(*p));

	p->data = data;
	s->ops = &mem_ops;
	s->size = len;
	s->name = lp_xstrdup(name ? name : "memory");
	s->priv = p;
	return s;
}

void lp_source_free(struct lp_source *s)
{
	if (!s)
		return;
	if (s->ops && s->ops->close)
		s->ops->close(s);
	free(s->name);
	free(s);
}
