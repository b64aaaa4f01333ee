// SPDX-License-Identifier: Apache-2.0
/*
 * A model saved to a file and loaded back (see modelfile.h).
 */
#define LP_MODNAME "modelfile"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/modelfile.h"

#define MF_MAGIC "LPMODEL\n"
/* the layout of the file; the records' sizes and the producer (the
 * caller's version) are checked too */
#define MF_LAYOUT 1u

struct mf_header {
	char magic[8];
	uint32_t layout;
	uint32_t rec_size[5]; /* inode, dirent, xattr, chunk, blob */
	char producer[32];    /* NUL-padded */
	uint32_t n_inodes, n_dirents, n_xattrs, n_chunks, n_blobs;
	uint32_t n_layers;
	uint64_t arena_len;
	char format[24];
	char toc_digest[72];
	uint64_t blob_size, toc_offset, toc_comp_len, toc_len;
	uint64_t prefetch_offset;
	int32_t landmark;
	uint32_t pad;
};

static void mf_sizes(uint32_t out[5])
{
	out[0] = sizeof(struct model_inode);
	out[1] = sizeof(struct model_dirent);
	out[2] = sizeof(struct model_xattr);
	out[3] = sizeof(struct model_chunk);
	out[4] = sizeof(struct model_blob);
}

/* the arrays in file order: base pointer, count, record size */
struct mf_part {
	void *p;
	uint64_t n, size;
};

static void mf_parts(const struct model *m, struct mf_part out[6])
{
	out[0] = (struct mf_part){ m->inodes, m->n_inodes, sizeof(*m->inodes) };
	out[1] = (struct mf_part){ m->dirents, m->n_dirents,
				   sizeof(*m->dirents) };
	out[2] = (struct mf_part){ m->xattrs, m->n_xattrs, sizeof(*m->xattrs) };
	out[3] = (struct mf_part){ m->chunks, m->n_chunks, sizeof(*m->chunks) };
	out[4] = (struct mf_part){ m->blobs, m->n_blobs, sizeof(*m->blobs) };
	out[5] = (struct mf_part){ m->arena, m->arena_len, 1 };
}

int model_file_save(const struct model *m, const struct model_file_meta *meta,
		    const char *producer, const char *path,
		    struct lp_err *err)
{
	_cleanup_free_ char *tmp = lp_xmalloc(strlen(path) + 48);
	struct mf_header h;
	struct mf_part parts[6];
	struct lp_sha256_ctx *sc;
	uint64_t at;
	uint8_t dig[32];
	int fd, r = 0;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MF_MAGIC, sizeof(h.magic));
	h.layout = MF_LAYOUT;
	mf_sizes(h.rec_size);
	snprintf(h.producer, sizeof(h.producer), "%s", producer);
	h.n_inodes = m->n_inodes;
	h.n_dirents = m->n_dirents;
	h.n_xattrs = m->n_xattrs;
	h.n_chunks = m->n_chunks;
	h.n_blobs = m->n_blobs;
	h.n_layers = m->n_layers;
	h.arena_len = m->arena_len;
	snprintf(h.format, sizeof(h.format), "%s", meta->format);
	memcpy(h.toc_digest, meta->info.toc_digest, sizeof(h.toc_digest));
	h.toc_digest[sizeof(h.toc_digest) - 1] = '\0';
	h.blob_size = meta->info.blob_size;
	h.toc_offset = meta->info.toc_offset;
	h.toc_comp_len = meta->info.toc_comp_len;
	h.toc_len = meta->info.toc_len;
	h.prefetch_offset = meta->info.prefetch_offset;
	h.landmark = meta->info.landmark;

	/* a name of our own: the probes of two images sharing a layer may
	 * save it at once */
	sprintf(tmp, "%s.%d.%d.new", path, (int)getpid(), (int)gettid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", tmp, strerror(errno));
	sc = lp_sha256_new();
	lp_sha256_update(sc, &h, sizeof(h));
	r = lp_pwrite_all(fd, &h, sizeof(h), 0);
	at = sizeof(h);
	mf_parts(m, parts);
	for (unsigned i = 0; i < 6 && r == 0; i++) {
		size_t n = (size_t)(parts[i].n * parts[i].size);

		if (!n)
			continue;
		lp_sha256_update(sc, parts[i].p, n);
		r = lp_pwrite_all(fd, parts[i].p, n, at);
		at += n;
	}
	lp_sha256_final(sc, dig);
	if (r == 0)
		r = lp_pwrite_all(fd, dig, sizeof(dig), at);
	/* no fsync: a torn file fails its digest and is parsed again */
	return lp_file_commit(fd, tmp, path, r, false, err);
}

static bool arena_str_ok(const struct model *m, uint32_t off)
{
	return off < m->arena_len;
}

/* ino's chunks cover [0, size) in order, in blobs that exist */
static int check_chunks(const struct model *m, uint32_t ino,
			const struct model_inode *in, struct lp_err *err)
{
	uint64_t at = 0;

	if (in->first > m->n_chunks || in->count > m->n_chunks - in->first)
		return lp_err_set(err, EBADMSG, "inode %u: chunks %u+%u of %u",
				  ino, in->first, in->count, m->n_chunks);
	for (uint32_t i = in->first; i < in->first + in->count; i++) {
		const struct model_chunk *c = &m->chunks[i];

		if (c->file_off != at || c->len == 0 || c->len > in->size - at)
			return lp_err_set(err, EBADMSG,
					  "inode %u: chunk %u at %llu+%llu "
					  "does not follow %llu",
					  ino, i,
					  (unsigned long long)c->file_off,
					  (unsigned long long)c->len,
					  (unsigned long long)at);
		if (c->blob >= m->n_blobs || c->codec > MODEL_CODEC_RAFS_GZIP ||
		    c->digest_alg > MODEL_DIGEST_BLAKE3)
			return lp_err_set(err, EBADMSG,
					  "inode %u: chunk %u: blob %u, codec "
					  "%u, digest %u", ino, i, c->blob,
					  c->codec, c->digest_alg);
		at += c->len;
	}
	if (at != in->size)
		return lp_err_set(err, EBADMSG,
				  "inode %u: chunks cover %llu of %llu bytes",
				  ino, (unsigned long long)at,
				  (unsigned long long)in->size);
	return 0;
}

/* d's entries: names in bounds, sorted, distinct; children that exist; a
 * child directory is named once, here, under its own parent */
static int check_dir(const struct model *m, uint32_t d,
		     const struct model_inode *in, uint8_t *dir_named,
		     struct lp_err *err)
{
	if (in->first > m->n_dirents || in->count > m->n_dirents - in->first)
		return lp_err_set(err, EBADMSG, "directory %u: entries %u+%u "
				  "of %u", d, in->first, in->count,
				  m->n_dirents);
	for (uint32_t i = in->first; i < in->first + in->count; i++) {
		const struct model_dirent *e = &m->dirents[i];
		const struct model_inode *c;

		if (!arena_str_ok(m, e->name) || !e->ino ||
		    e->ino >= m->n_inodes || e->ino == MODEL_ROOT_INO)
			return lp_err_set(err, EBADMSG, "directory %u: entry "
					  "%u: name %u, inode %u", d, i,
					  e->name, e->ino);
		if (i > in->first &&
		    strcmp(model_str(m, m->dirents[i - 1].name),
			   model_str(m, e->name)) >= 0)
			return lp_err_set(err, EBADMSG, "directory %u: entry "
					  "%u out of order", d, i);
		c = &m->inodes[e->ino];
		if (S_ISDIR(c->mode)) {
			if (c->parent != d || dir_named[e->ino])
				return lp_err_set(err, EBADMSG,
						  "directory %u named again "
						  "in %u", e->ino, d);
			dir_named[e->ino] = 1;
		}
	}
	return 0;
}

/* every parent chain ends at the root: state 1 on the way, 2 done */
static int check_parents(const struct model *m, uint8_t *state,
			 uint32_t *path, struct lp_err *err)
{
	state[MODEL_ROOT_INO] = 2;
	for (uint32_t i = MODEL_ROOT_INO + 1; i < m->n_inodes; i++) {
		uint32_t n = 0, p = i;

		while (state[p] == 0) {
			state[p] = 1;
			path[n++] = p;
			p = m->inodes[p].parent;
		}
		if (state[p] == 1)
			return lp_err_set(err, EBADMSG, "inode %u: its "
					  "parents loop", i);
		while (n)
			state[path[--n]] = 2;
	}
	return 0;
}

int model_check(const struct model *m, struct lp_err *err)
{
	_cleanup_free_ uint8_t *state = NULL;
	_cleanup_free_ uint32_t *path = NULL;
	int r;

	if (m->n_inodes <= MODEL_ROOT_INO ||
	    !S_ISDIR(m->inodes[MODEL_ROOT_INO].mode) ||
	    m->inodes[MODEL_ROOT_INO].parent != MODEL_ROOT_INO)
		return lp_err_set(err, EBADMSG, "no root directory");
	if (!m->arena_len || m->arena[m->arena_len - 1] != '\0' ||
	    m->arena_len > UINT32_MAX)
		return lp_err_set(err, EBADMSG, "string arena of %llu bytes "
				  "is not terminated",
				  (unsigned long long)m->arena_len);
	for (uint32_t i = 0; i < m->n_xattrs; i++) {
		const struct model_xattr *x = &m->xattrs[i];

		if (!arena_str_ok(m, x->name) || x->value > m->arena_len ||
		    x->value_len > m->arena_len - x->value)
			return lp_err_set(err, EBADMSG, "xattr %u out of the "
					  "arena", i);
	}
	for (uint32_t i = 0; i < m->n_blobs; i++)
		if (!arena_str_ok(m, m->blobs[i].id) ||
		    !arena_str_ok(m, m->blobs[i].media_type))
			return lp_err_set(err, EBADMSG, "blob %u out of the "
					  "arena", i);
	state = lp_xcalloc(m->n_inodes, 1);
	for (uint32_t i = MODEL_ROOT_INO; i < m->n_inodes; i++) {
		const struct model_inode *in = &m->inodes[i];
		enum model_type t;

		if (model_type_from_mode(in->mode, &t) < 0 || !in->parent ||
		    in->parent >= m->n_inodes ||
		    !S_ISDIR(m->inodes[in->parent].mode) ||
		    !arena_str_ok(m, in->name) || !arena_str_ok(m, in->link) ||
		    in->xattr_first > m->n_xattrs ||
		    in->xattr_count > m->n_xattrs - in->xattr_first)
			return lp_err_set(err, EBADMSG, "inode %u: mode %o, "
					  "parent %u, names or xattrs out of "
					  "bounds", i, in->mode, in->parent);
		/* readers copy size bytes of a link's target */
		if (S_ISLNK(in->mode) &&
		    in->size != strlen(model_str(m, in->link)))
			return lp_err_set(err, EBADMSG, "symlink %u: target of "
					  "%llu bytes, %zu in the arena", i,
					  (unsigned long long)in->size,
					  strlen(model_str(m, in->link)));
		if (S_ISREG(in->mode))
			r = check_chunks(m, i, in, err);
		else if (S_ISDIR(in->mode))
			r = check_dir(m, i, in, state, err);
		else
			r = 0;
		if (r < 0)
			return r;
	}
	/* every directory but the root is named (state: named once) */
	for (uint32_t i = MODEL_ROOT_INO + 1; i < m->n_inodes; i++)
		if (S_ISDIR(m->inodes[i].mode) && !state[i])
			return lp_err_set(err, EBADMSG, "directory %u is in no "
					  "directory", i);
	memset(state, 0, m->n_inodes);
	path = lp_xcalloc(m->n_inodes, sizeof(*path));
	return check_parents(m, state, path, err);
}

/* takes n records of size from *p (bounded by end) into a new array */
static void *take(const uint8_t **p, uint64_t n, uint64_t size)
{
	void *out;

	if (!n)
		return NULL;
	out = lp_xmalloc(n * size);
	memcpy(out, *p, n * size);
	*p += n * size;
	return out;
}

int model_file_parse(const void *buf, size_t len, const char *producer,
		     struct model **ret, struct model_file_meta *meta,
		     struct lp_err *err)
{
	_cleanup_(model_freep) struct model *m = NULL;
	const uint8_t *p = buf;
	struct mf_header h;
	uint32_t sizes[5];
	uint64_t need;
	uint8_t dig[32];
	char want[32];
	int r;

	if (len < sizeof(h) + sizeof(dig))
		return lp_err_set(err, EBADMSG, "model file of %zu bytes",
				  len);
	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, MF_MAGIC, sizeof(h.magic)) != 0)
		return lp_err_set(err, EBADMSG, "not a model file");
	mf_sizes(sizes);
	memset(want, 0, sizeof(want));
	snprintf(want, sizeof(want), "%s", producer);
	if (h.layout != MF_LAYOUT || memcmp(h.rec_size, sizes, sizeof(sizes)) ||
	    memcmp(h.producer, want, sizeof(want)))
		return lp_err_set(err, ESTALE, "model file of another build "
				  "(%.32s, layout %u)", h.producer, h.layout);
	lp_sha256(buf, len - sizeof(dig), dig);
	if (memcmp(dig, p + len - sizeof(dig), sizeof(dig)) != 0)
		return lp_err_set(err, EBADMSG, "model file: digest mismatch");
	need = sizeof(h) + sizeof(dig) + h.arena_len +
	       (uint64_t)h.n_inodes * sizes[0] +
	       (uint64_t)h.n_dirents * sizes[1] +
	       (uint64_t)h.n_xattrs * sizes[2] +
	       (uint64_t)h.n_chunks * sizes[3] + (uint64_t)h.n_blobs * sizes[4];
	if (h.arena_len > UINT32_MAX || need != len)
		return lp_err_set(err, EBADMSG, "model file of %zu bytes, its "
				  "header says %llu", len,
				  (unsigned long long)need);
	if (!memchr(h.format, '\0', sizeof(h.format)) ||
	    !memchr(h.toc_digest, '\0', sizeof(h.toc_digest)))
		return lp_err_set(err, EBADMSG, "model file: bad header");
	m = lp_xcalloc(1, sizeof(*m));
	p += sizeof(h);
	m->n_inodes = h.n_inodes;
	m->inodes = take(&p, h.n_inodes, sizes[0]);
	m->n_dirents = h.n_dirents;
	m->dirents = take(&p, h.n_dirents, sizes[1]);
	m->n_xattrs = h.n_xattrs;
	m->xattrs = take(&p, h.n_xattrs, sizes[2]);
	m->n_chunks = h.n_chunks;
	m->chunks = take(&p, h.n_chunks, sizes[3]);
	m->n_blobs = h.n_blobs;
	m->blobs = take(&p, h.n_blobs, sizes[4]);
	m->arena_len = h.arena_len;
	m->arena = take(&p, h.arena_len, 1);
	m->n_layers = h.n_layers;
	r = model_check(m, err);
	if (r < 0) {
		lp_err_wrap(err, "model file");
		return r;
	}
	memset(meta, 0, sizeof(*meta));
	memcpy(meta->format, h.format, sizeof(meta->format));
	memcpy(meta->info.toc_digest, h.toc_digest,
	       sizeof(meta->info.toc_digest));
	meta->info.blob_size = h.blob_size;
	meta->info.toc_offset = h.toc_offset;
	meta->info.toc_comp_len = h.toc_comp_len;
	meta->info.toc_len = h.toc_len;
	meta->info.prefetch_offset = h.prefetch_offset;
	meta->info.landmark = h.landmark;
	*ret = TAKE_PTR(m);
	return 0;
}

int model_file_load(const char *path, const char *producer,
		    struct model **ret, struct model_file_meta *meta,
		    struct lp_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_size < 0 ||
	    (uint64_t)st.st_size > MODEL_FILE_MAX) {
		r = lp_err_set(err, EFBIG, "%s: not a model file of at most "
			       "%llu bytes", path, MODEL_FILE_MAX);
		close(fd);
		return r;
	}
	buf = lp_xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EBADMSG;
			close(fd);
			return lp_err_set(err, r, "%s: short read", path);
		}
		got += (size_t)n;
	}
	close(fd);
	r = model_file_parse(buf, got, producer, ret, meta, err);
	if (r < 0)
		lp_err_wrap(err, "%s", path);
	return r;
}
