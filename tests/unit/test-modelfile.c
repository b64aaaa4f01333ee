/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/modelfile and the engine's saved models: a model saved and loaded
 * back is the same, array by array; a file of another producer is stale; a
 * flipped byte or a truncation is refused; a model that lies (saved with a
 * good digest) is refused by model_check for every kind of lie; and the
 * reference eStargz and zstd:chunked blobs opened through their saved
 * model read the same bytes as through their TOC, while a saved model for
 * another blob size, TOC digest or reader is not used.
 *
 * Argument: testdata/reference/estargz.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/engine.h"
#include "fs/modelfile.h"

#define CHECK_WITH_MESSAGE
#include "check.h"

static char dir[] = "/tmp/lp-modelfile-XXXXXX";

static const char *tmp_path(const char *name)
{
	static char buf[2][256];
	static unsigned next;
	char *p = buf[next++ % 2];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

/* a model with every kind of record */
static struct model *build(void)
{
	struct model_builder *b = model_builder_new(0);
	struct lp_err err = { 0 };
	struct model *m = NULL;
	const char *dirs[] = { "etc", "usr", "usr/lib", "usr/lib/x" };
	uint32_t id, blob;

	CHECK(model_builder_add_blob(b, "sha256:abc", "application/x", 99,
				     &blob, &err) == 0, "%s", err.msg);

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		struct model_entry e = { .path = dirs[i],
					 .path_len = strlen(dirs[i]),
					 .type = MODEL_DIR, .mode = 0755 };

		CHECK(model_builder_add(b, &e, &id, &err) == 0, "%s", err.msg);
	}
	for (int i = 0; i < 20; i++) {
		char path[64];
		struct model_entry e = { .type = MODEL_REG, .mode = 0644,
					 .size = (uint64_t)i * 1000 };

		snprintf(path, sizeof(path), "usr/lib/x/f%02d", i);
		e.path = path;
		e.path_len = strlen(path);
		CHECK(model_builder_add(b, &e, &id, &err) == 0, "%s", err.msg);
		if (i == 3)
			CHECK(model_builder_add_xattr(b, id, "user.a", "va", 2,
						      &err) == 0, "%s",
			      err.msg);
		for (uint64_t off = 0; off < e.size; off += 4096) {
			struct model_chunk c = {
				.file_off = off,
				.len = e.size - off < 4096 ? e.size - off : 4096,
				.comp_off = off * 7, .comp_len = 100,
				.codec = MODEL_CODEC_GZIP_MEMBER,
				.digest_alg = MODEL_DIGEST_SHA256,
				.blob = blob,
			};

			c.digest[0] = (uint8_t)i;
			CHECK(model_builder_add_chunk(b, id, &c, &err) == 0,
			      "%s", err.msg);
		}
	}
	{
		struct model_entry s = { .path = "etc/link", .path_len = 8,
					 .type = MODEL_SYMLINK, .mode = 0777,
					 .link = "../usr/lib", .link_len = 10 };
		struct model_entry h = { .path = "etc/hard", .path_len = 8,
					 .type = MODEL_HARDLINK,
					 .link = "usr/lib/x/f05",
					 .link_len = 13 };

		CHECK(model_builder_add(b, &s, &id, &err) == 0, "%s", err.msg);
		CHECK(model_builder_add(b, &h, &id, &err) == 0, "%s", err.msg);
	}
	CHECK(model_builder_finish(b, &m, &err) == 0, "%s", err.msg);
	return m;
}

static bool same_model(const struct model *a, const struct model *b)
{
	return a->n_inodes == b->n_inodes && a->n_dirents == b->n_dirents &&
	       a->n_xattrs == b->n_xattrs && a->n_chunks == b->n_chunks &&
	       a->n_blobs == b->n_blobs && a->arena_len == b->arena_len &&
	       a->n_layers == b->n_layers &&
	       !memcmp(a->inodes, b->inodes,
		       a->n_inodes * sizeof(*a->inodes)) &&
	       !memcmp(a->dirents, b->dirents,
		       a->n_dirents * sizeof(*a->dirents)) &&
	       (!a->n_xattrs || !memcmp(a->xattrs, b->xattrs,
					a->n_xattrs * sizeof(*a->xattrs))) &&
	       (!a->n_chunks || !memcmp(a->chunks, b->chunks,
					a->n_chunks * sizeof(*a->chunks))) &&
	       (!a->n_blobs || !memcmp(a->blobs, b->blobs,
				       a->n_blobs * sizeof(*a->blobs))) &&
	       !memcmp(a->arena, b->arena, a->arena_len);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	buf = lp_xmalloc((size_t)st.st_size + 1);
	*len = (size_t)read(fd, buf, (size_t)st.st_size);
	close(fd);
	return buf;
}

static void test_round_trip(const struct model *m)
{
	struct model_file_meta meta = { .format = "estargz" }, got;
	struct model *back = NULL;
	struct lp_err err = { 0 };
	uint8_t *buf;
	size_t len = 0;
	unsigned refused = 0, tried = 0;

	snprintf(meta.info.toc_digest, sizeof(meta.info.toc_digest),
		 "sha256:%064d", 7);
	meta.info.blob_size = 123456;
	meta.info.toc_offset = 1000;
	meta.info.toc_comp_len = 99;
	meta.info.toc_len = 400;
	meta.info.prefetch_offset = 512;
	meta.info.landmark = 1;
	CHECK(model_check(m, &err) == 0, "the builder's model: %s", err.msg);
	CHECK(model_file_save(m, &meta, "test 1", tmp_path("a.model"),
			      &err) == 0, "save: %s", err.msg);
	CHECK(model_file_load(tmp_path("a.model"), "test 1", &back, &got,
			      &err) == 0, "load: %s", err.msg);
	if (back) {
		CHECK(same_model(m, back), "the model loaded differs");
		CHECK(!strcmp(got.format, "estargz") &&
			      !strcmp(got.info.toc_digest,
				      meta.info.toc_digest) &&
			      got.info.blob_size == 123456 &&
			      got.info.toc_offset == 1000 &&
			      got.info.toc_comp_len == 99 &&
			      got.info.toc_len == 400 &&
			      got.info.prefetch_offset == 512 &&
			      got.info.landmark == 1 && !got.info.format,
		      "the meta loaded differs");
		model_free(back);
		back = NULL;
	}
	lp_err_clear(&err);
	CHECK(model_file_load(tmp_path("a.model"), "test 2", &back, &got,
			      &err) == -ESTALE && !back,
	      "another producer's file is stale");
	lp_err_clear(&err);
	CHECK(model_file_load(tmp_path("none.model"), "test 1", &back, &got,
			      &err) == -ENOENT, "no file: -ENOENT");
	/* every flipped byte and every truncation is refused */
	buf = slurp(tmp_path("a.model"), &len);
	CHECK(buf && len > 100, "the saved file");
	for (size_t i = 0; buf && i < len; i += 1 + i / 64) {
		lp_err_clear(&err);
		buf[i] ^= 0x20;
		tried++;
		if (model_file_parse(buf, len, "test 1", &back, &got, &err) <
			    0 &&
		    err.msg[0] && !back)
			refused++;
		model_free(back);
		back = NULL;
		buf[i] ^= 0x20;
	}
	CHECK(refused == tried, "%u of %u flipped bytes refused", refused,
	      tried);
	refused = tried = 0;
	for (size_t l = 0; buf && l < len; l += 1 + l / 16) {
		tried++;
		lp_err_clear(&err);
		if (model_file_parse(buf, l, "test 1", &back, &got, &err) < 0 &&
		    !back)
			refused++;
		model_free(back);
		back = NULL;
	}
	CHECK(refused == tried, "%u of %u truncations refused", refused,
	      tried);
	free(buf);
}

/* a copy of m to lie with */
static struct model *copy(const struct model *m)
{
	struct model *c = lp_xcalloc(1, sizeof(*c));

	*c = *m;
	c->inodes = lp_xmalloc(m->n_inodes * sizeof(*m->inodes));
	memcpy(c->inodes, m->inodes, m->n_inodes * sizeof(*m->inodes));
	c->dirents = lp_xmalloc(m->n_dirents * sizeof(*m->dirents));
	memcpy(c->dirents, m->dirents, m->n_dirents * sizeof(*m->dirents));
	c->xattrs = lp_xmalloc(m->n_xattrs * sizeof(*m->xattrs) + 1);
	memcpy(c->xattrs, m->xattrs, m->n_xattrs * sizeof(*m->xattrs));
	c->chunks = lp_xmalloc(m->n_chunks * sizeof(*m->chunks) + 1);
	memcpy(c->chunks, m->chunks, m->n_chunks * sizeof(*m->chunks));
	c->blobs = lp_xmalloc(m->n_blobs * sizeof(*m->blobs) + 1);
	memcpy(c->blobs, m->blobs, m->n_blobs * sizeof(*m->blobs));
	c->arena = lp_xmalloc(m->arena_len);
	memcpy(c->arena, m->arena, m->arena_len);
	return c;
}

static uint32_t ino_of(const struct model *m, const char *path)
{
	uint32_t ino = model_lookup_path(m, path);

	CHECK(ino, "%s is not in the model", path);
	return ino;
}

/* one lie: refused by model_check, and by a load of a file saved with it
 * (its digest good) */
static void lie(const struct model *m, const char *what,
		void (*fn)(struct model *c, const struct model *m))
{
	struct model_file_meta meta = { .format = "estargz" }, got;
	struct model *c = copy(m), *back = NULL;
	struct lp_err err = { 0 };

	fn(c, m);
	CHECK(model_check(c, &err) == -EBADMSG && err.msg[0],
	      "%s: not refused", what);
	lp_err_clear(&err);
	CHECK(model_file_save(c, &meta, "t", tmp_path("lie.model"), &err) == 0,
	      "%s: save: %s", what, err.msg);
	lp_err_clear(&err);
	CHECK(model_file_load(tmp_path("lie.model"), "t", &back, &got, &err) ==
			      -EBADMSG && !back,
	      "%s: loaded", what);
	model_free(back);
	model_free(c);
}

static void l_root(struct model *c, const struct model *m)
{
	(void)m;
	c->inodes[MODEL_ROOT_INO].mode = S_IFREG | 0644;
}
static void l_parent(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].parent = c->n_inodes;
}
static void l_parent_file(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].parent = ino_of(m, "/etc/hard");
}
static void l_loop(struct model *c, const struct model *m)
{
	uint32_t a = ino_of(m, "/usr/lib"), b = ino_of(m, "/usr/lib/x");

	c->inodes[a].parent = b;
}
static void l_cycle(struct model *c, const struct model *m)
{
	/* /usr/lib and /usr/lib/x name each other, and nothing else names
	 * /usr/lib: each directory is named once, under its parent */
	uint32_t a = ino_of(m, "/usr/lib"), b = ino_of(m, "/usr/lib/x");

	c->inodes[a].parent = b;
	c->dirents[c->inodes[b].first].ino = a;
	c->inodes[ino_of(m, "/usr")].count = 0;
}
static void l_name(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].name = (uint32_t)m->arena_len;
}
static void l_link(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].link = (uint32_t)m->arena_len + 9;
}
static void l_link_size(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].size = 4096;
}
static void l_mode(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/etc/link")].mode = 0777;
}
static void l_xattrs(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/usr/lib/x/f03")].xattr_count = m->n_xattrs + 1;
}
static void l_xattr_value(struct model *c, const struct model *m)
{
	c->xattrs[0].value_len = (uint32_t)m->arena_len;
}
static void l_dirents(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/usr/lib/x")].count = m->n_dirents;
}
static void l_dirent_ino(struct model *c, const struct model *m)
{
	struct model_inode *d = &c->inodes[ino_of(m, "/usr/lib/x")];

	c->dirents[d->first + 1].ino = m->n_inodes + 5;
}
static void l_order(struct model *c, const struct model *m)
{
	struct model_inode *d = &c->inodes[ino_of(m, "/usr/lib/x")];
	struct model_dirent t = c->dirents[d->first];

	c->dirents[d->first] = c->dirents[d->first + 1];
	c->dirents[d->first + 1] = t;
}
static void l_dir_twice(struct model *c, const struct model *m)
{
	/* /etc's entry "hard" names /usr/lib instead: a directory named
	 * outside its parent, and /etc's entries stay sorted */
	struct model_inode *d = &c->inodes[ino_of(m, "/etc")];

	for (uint32_t i = d->first; i < d->first + d->count; i++)
		if (!strcmp(model_str(m, m->dirents[i].name), "hard"))
			c->dirents[i].ino = ino_of(m, "/usr/lib");
}
static void l_dir_unnamed(struct model *c, const struct model *m)
{
	/* /usr lists nothing: /usr/lib is in no directory */
	c->inodes[ino_of(m, "/usr")].count = 0;
}
static void l_chunks(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/usr/lib/x/f09")].first = m->n_chunks;
}
static void l_chunk_gap(struct model *c, const struct model *m)
{
	c->chunks[c->inodes[ino_of(m, "/usr/lib/x/f09")].first + 1].file_off +=
		1;
}
static void l_chunk_short(struct model *c, const struct model *m)
{
	c->inodes[ino_of(m, "/usr/lib/x/f09")].size += 1;
}
static void l_chunk_blob(struct model *c, const struct model *m)
{
	c->chunks[c->inodes[ino_of(m, "/usr/lib/x/f09")].first].blob =
		m->n_blobs;
}
static void l_codec(struct model *c, const struct model *m)
{
	c->chunks[c->inodes[ino_of(m, "/usr/lib/x/f09")].first].codec = 200;
}
static void l_arena(struct model *c, const struct model *m)
{
	c->arena[m->arena_len - 1] = 'x';
}
static void l_blob_id(struct model *c, const struct model *m)
{
	c->blobs[0].id = (uint32_t)m->arena_len;
}
static void l_no_inodes(struct model *c, const struct model *m)
{
	(void)m;
	c->n_inodes = 1;
}

static void test_lies(const struct model *m)
{
	static const struct {
		const char *what;
		void (*fn)(struct model *c, const struct model *m);
	} lies[] = {
		{ "root not a directory", l_root },
		{ "parent out of range", l_parent },
		{ "parent a file", l_parent_file },
		{ "parents loop", l_loop },
		{ "directories name each other", l_cycle },
		{ "name out of the arena", l_name },
		{ "link out of the arena", l_link },
		{ "link longer than its target", l_link_size },
		{ "no file type", l_mode },
		{ "xattrs out of range", l_xattrs },
		{ "xattr value out of the arena", l_xattr_value },
		{ "dirents out of range", l_dirents },
		{ "dirent inode out of range", l_dirent_ino },
		{ "dirents out of order", l_order },
		{ "a directory named twice", l_dir_twice },
		{ "a directory named nowhere", l_dir_unnamed },
		{ "chunks out of range", l_chunks },
		{ "a gap between chunks", l_chunk_gap },
		{ "chunks short of the size", l_chunk_short },
		{ "chunk blob out of range", l_chunk_blob },
		{ "chunk codec unknown", l_codec },
		{ "arena not terminated", l_arena },
		{ "blob id out of the arena", l_blob_id },
		{ "no root", l_no_inodes },
	};

	CHECK(m->n_blobs >= 1 && m->n_xattrs >= 1, "the model has a blob "
	      "(%u) and an xattr (%u)", m->n_blobs, m->n_xattrs);
	for (size_t i = 0; i < ARRAY_SIZE(lies); i++)
		lie(m, lies[i].what, lies[i].fn);
}

/* every regular file's bytes through a and b */
static void same_bytes(struct engine_layer *a, struct engine_layer *b,
		       const char *what)
{
	unsigned files = 0;

	for (uint32_t i = MODEL_ROOT_INO; i < a->model->n_inodes; i++) {
		const struct model_inode *in = &a->model->inodes[i];
		uint8_t *x, *y;
		int64_t rx, ry;

		if (!S_ISREG(in->mode))
			continue;
		x = lp_xmalloc(in->size + 1);
		y = lp_xmalloc(in->size + 1);
		rx = engine_read(a, i, x, in->size, 0, NULL);
		ry = engine_read(b, i, y, in->size, 0, NULL);
		CHECK(rx == (int64_t)in->size && ry == rx &&
			      !memcmp(x, y, in->size),
		      "%s: inode %u reads differ (%lld, %lld)", what, i,
		      (long long)rx, (long long)ry);
		free(x);
		free(y);
		files++;
	}
	CHECK(files > 3, "%s: %u files read", what, files);
}

static void test_engine(const char *refdir, const char *blob)
{
	char path[4096];
	struct engine_layer *a = NULL, *b = NULL, *c = NULL;
	struct lp_source *src = NULL;
	struct format_hints h = { 0 };
	struct engine_opts eo = { .hints = &h };
	struct lp_err err = { 0 };
	const char *saved = tmp_path("layer.model");
	char digest[80];
	int r;

	snprintf(path, sizeof(path), "%s/%s", refdir, blob);
	if (engine_open_path(path, NULL, &a, &err) < 0) {
		CHECK(false, "%s: %s", path, err.msg);
		return;
	}
	CHECK(engine_save_model(a, "t", saved, &err) == 0, "%s: save: %s",
	      blob, err.msg);
	CHECK(lp_source_open_file(path, &src, &err) == 0, "%s", err.msg);
	r = engine_open_saved(src, NULL, "t", saved, &b, &err);
	CHECK(r == 0, "%s: open saved: %s", blob, err.msg);
	if (r < 0) {
		lp_source_free(src);
		engine_close(a);
		return;
	}
	CHECK(same_model(a->model, b->model) &&
		      !strcmp(a->info.format, b->info.format) &&
		      !strcmp(a->info.toc_digest, b->info.toc_digest) &&
		      a->info.toc_offset == b->info.toc_offset &&
		      a->info.blob_size == b->info.blob_size,
	      "%s: the saved layer differs", blob);
	same_bytes(a, b, blob);
	/* the expected TOC digest: used when it matches, not when not */
	snprintf(digest, sizeof(digest), "%s", a->info.toc_digest);
	h.toc_digest = digest;
	CHECK(lp_source_open_file(path, &src, &err) == 0, "%s", err.msg);
	CHECK(engine_open_saved(src, &eo, "t", saved, &c, &err) == 0,
	      "%s: with its TOC digest: %s", blob, err.msg);
	engine_close(c);
	c = NULL;
	digest[strlen(digest) - 1] ^= 1;
	CHECK(lp_source_open_file(path, &src, &err) == 0, "%s", err.msg);
	lp_err_clear(&err);
	CHECK(engine_open_saved(src, &eo, "t", saved, &c, &err) == -ESTALE &&
		      !c,
	      "%s: another TOC digest", blob);
	/* another reader forced */
	h.toc_digest = NULL;
	eo.format = "zran";
	lp_err_clear(&err);
	CHECK(engine_open_saved(src, &eo, "t", saved, &c, &err) == -ESTALE &&
		      !c,
	      "%s: another reader", blob);
	eo.format = NULL;
	/* another blob (its size differs) */
	lp_source_free(src);
	snprintf(path, sizeof(path), "%s/%s", refdir,
		 strstr(blob, "zstd") ? "links-esgz-c64k.tar.gz"
				      : "links-zstdchunked-c64k.tar.zst");
	CHECK(lp_source_open_file(path, &src, &err) == 0, "%s", err.msg);
	lp_err_clear(&err);
	CHECK(engine_open_saved(src, &eo, "t", saved, &c, &err) == -ESTALE &&
		      !c,
	      "%s: saved for another blob", blob);
	lp_source_free(src);
	engine_close(a);
	engine_close(b);
}

int main(int argc, char **argv)
{
	struct model *m;
	char cmd[128];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	m = build();
	if (m) {
		test_round_trip(m);
		test_lies(m);
		model_free(m);
	}
	if (argc > 1) {
		test_engine(argv[1], "links-esgz-c64k.tar.gz");
		test_engine(argv[1], "links-zstdchunked-c64k.tar.zst");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	if (failures) {
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("ok (%d checks)\n", checks);
	return 0;
}
