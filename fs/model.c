/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "fs/model.h"
#include "common/blake3.h"

const char *model_type_name(enum model_type t)
{
	switch (t) {
	case MODEL_DIR:
		return "dir";
	case MODEL_REG:
		return "reg";
	case MODEL_SYMLINK:
		return "symlink";
	case MODEL_CHAR:
		return "char";
	case MODEL_BLOCK:
		return "block";
	case MODEL_FIFO:
		return "fifo";
	case MODEL_SOCK:
		return "socket";
	case MODEL_HARDLINK:
		return "hardlink";
	}
	return "unknown";
}

int model_type_from_mode(uint32_t mode, enum model_type *ret)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		*ret = MODEL_DIR;
		return 0;
	case S_IFREG:
		*ret = MODEL_REG;
		return 0;
	case S_IFLNK:
		*ret = MODEL_SYMLINK;
		return 0;
	case S_IFCHR:
		*ret = MODEL_CHAR;
		return 0;
	case S_IFBLK:
		*ret = MODEL_BLOCK;
		return 0;
	case S_IFIFO:
		*ret = MODEL_FIFO;
		return 0;
	case S_IFSOCK:
		*ret = MODEL_SOCK;
		return 0;
	}
	return -EINVAL;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	free(m->inodes);
	free(m->dirents);
	free(m->xattrs);
	free(m->chunks);
	free(m->blobs);
	free(m->arena);
	free(m);
}

uint32_t model_lookup(const struct model *m, uint32_t dir, const char *name)
{
	const struct model_inode *d = model_inode(m, dir);
	uint32_t lo, hi;

	if (!d || !S_ISDIR(d->mode))
		return 0;
	lo = d->first;
	hi = d->first + d->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, model_str(m, m->dirents[mid].name));

		if (c == 0)
			return m->dirents[mid].ino;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

uint32_t model_lookup_path(const struct model *m, const char *path)
{
	uint32_t ino = MODEL_ROOT_INO;
	char comp[256];

	if (m->n_inodes <= MODEL_ROOT_INO)
		return 0;
	while (*path) {
		const char *end;
		size_t len;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		end = strchrnul(path, '/');
		len = (size_t)(end - path);
		if (len >= sizeof(comp))
			return 0;
		memcpy(comp, path, len);
		comp[len] = '\0';
		path = end;
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			ino = m->inodes[ino].parent;
			continue;
		}
		ino = model_lookup(m, ino, comp);
		if (!ino)
			return 0;
	}
	return ino;
}

uint64_t model_file_stored(const struct model *m, uint32_t ino)
{
	const struct model_inode *in = model_inode(m, ino);
	uint64_t bytes = 0;

	if (!in || !S_ISREG(in->mode))
		return 0;
	for (uint32_t c = in->first; c < in->first + in->count &&
				     c < m->n_chunks; c++)
		bytes += m->chunks[c].comp_len;
	return bytes;
}

int model_path(const struct model *m, uint32_t ino, char *buf, size_t size)
{
	uint32_t stack[4096];
	size_t depth = 0, len = 0;

	if (!model_inode(m, ino) || size < 2)
		return -EINVAL;
	while (ino != MODEL_ROOT_INO) {
		if (depth == ARRAY_SIZE(stack))
			return -ENAMETOOLONG;
		stack[depth++] = ino;
		ino = m->inodes[ino].parent;
	}
	if (!depth) {
		strcpy(buf, "/");
		return 1;
	}
	while (depth--) {
		const char *n = model_str(m, m->inodes[stack[depth]].name);
		size_t nl = strlen(n);

		if (len + 1 + nl + 1 > size)
			return -ENAMETOOLONG;
		buf[len++] = '/';
		memcpy(buf + len, n, nl);
		len += nl;
	}
	buf[len] = '\0';
	return (int)len;
}

int64_t model_chunk_at(const struct model *m, uint32_t ino, uint64_t off)
{
	const struct model_inode *in = model_inode(m, ino);
	uint32_t lo, hi;

	if (!in || !S_ISREG(in->mode) || off >= in->size)
		return -1;
	lo = in->first;
	hi = in->first + in->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct model_chunk *c = &m->chunks[mid];

		if (off < c->file_off)
			hi = mid;
		else if (off >= c->file_off + c->len)
			lo = mid + 1;
		else
			return mid;
	}
	return -1;
}

uint64_t model_mem_bytes(const struct model *m)
{
	return sizeof(*m) + (uint64_t)m->n_inodes * sizeof(*m->inodes) +
	       (uint64_t)m->n_dirents * sizeof(*m->dirents) +
	       (uint64_t)m->n_xattrs * sizeof(*m->xattrs) +
	       (uint64_t)m->n_chunks * sizeof(*m->chunks) +
	       (uint64_t)m->n_blobs * sizeof(*m->blobs) + m->arena_len;
}

struct walk_state {
	model_walk_cb cb;
	void *data;
	char path[8192];
};

static int walk_dir(const struct model *m, struct walk_state *w, uint32_t dir,
		    size_t plen, unsigned depth)
{
	const struct model_inode *d = &m->inodes[dir];

	if (depth > 4096)
		return -ELOOP;
	for (uint32_t i = d->first; i < d->first + d->count; i++) {
		const struct model_dirent *de = &m->dirents[i];
		const struct model_inode *in = &m->inodes[de->ino];
		const char *name = model_str(m, de->name);
		size_t nl = strlen(name);
		bool primary;
		int r;

		if (plen + 1 + nl + 1 > sizeof(w->path))
			return -ENAMETOOLONG;
		w->path[plen] = '/';
		memcpy(w->path + plen + 1, name, nl + 1);
		primary = in->parent == dir && in->name == de->name;
		r = w->cb(m, w->path, de->ino, primary, w->data);
		if (r)
			return r;
		if (S_ISDIR(in->mode) && primary) {
			r = walk_dir(m, w, de->ino, plen + 1 + nl, depth + 1);
			if (r)
				return r;
		}
	}
	return 0;
}

int model_walk(const struct model *m, model_walk_cb cb, void *data)
{
	struct walk_state *w;
	int r;

	if (m->n_inodes <= MODEL_ROOT_INO)
		return 0;
	w = lp_xmalloc(sizeof(*w));
	w->cb = cb;
	w->data = data;
	strcpy(w->path, "/");
	r = cb(m, w->path, MODEL_ROOT_INO, true, data);
	if (!r)
		r = walk_dir(m, w, MODEL_ROOT_INO, 0, 0);
	free(w);
	return r;
}

int model_chunk_verify(const struct model_chunk *c, const void *data,
		       struct lp_err *err)
{
	uint8_t got[32];
	char want_hex[65], got_hex[65];

	switch (c->digest_alg) {
	case MODEL_DIGEST_SHA256:
		lp_sha256(data, (size_t)c->len, got);
		break;
	case MODEL_DIGEST_BLAKE3:
		lp_blake3(data, (size_t)c->len, got);
		break;
	default:
		return lp_err_set(err, ENODATA,
				  "chunk at file offset %llu has no digest",
				  (unsigned long long)c->file_off);
	}
	if (!memcmp(got, c->digest, 32))
		return 0;
	lp_hex(c->digest, 32, want_hex);
	lp_hex(got, 32, got_hex);
	return lp_err_set(err, EBADMSG,
			  "chunk at file offset %llu (blob offset %llu): "
			  "digest mismatch: want %s:%s, got %s",
			  (unsigned long long)c->file_off,
			  (unsigned long long)c->comp_off,
			  c->digest_alg == MODEL_DIGEST_SHA256 ? "sha256"
							       : "blake3",
			  want_hex, got_hex);
}

int model_chunk_cmp_stored(const void *a, const void *b, void *arg)
{
	const struct model *m = arg;
	const struct model_chunk *x = &m->chunks[*(const uint32_t *)a];
	const struct model_chunk *y = &m->chunks[*(const uint32_t *)b];

	if (x->blob != y->blob)
		return x->blob < y->blob ? -1 : 1;
	if (x->comp_off != y->comp_off)
		return x->comp_off < y->comp_off ? -1 : 1;
	if (x->aux_off != y->aux_off)
		return x->aux_off < y->aux_off ? -1 : 1;
	return 0;
}
