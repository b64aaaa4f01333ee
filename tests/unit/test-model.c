/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the model builder, merge and overlay form. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/model.h"

#include "check.h"

static uint32_t add(struct model_builder *b, const char *path,
		    enum model_type t, uint32_t mode, const char *link)
{
	struct model_entry e = { .path = path, .path_len = strlen(path),
				 .type = t, .mode = mode };
	struct lp_err err = { 0 };
	uint32_t id = 0;

	if (link) {
		e.link = link;
		e.link_len = strlen(link);
	}
	if (model_builder_add(b, &e, &id, &err) < 0) {
		fprintf(stderr, "add %s: %s\n", path, err.msg);
		failures++;
	}
	return id;
}

static void add_file(struct model_builder *b, const char *path, uint64_t size,
		     uint64_t chunk)
{
	struct model_entry e = { .path = path, .path_len = strlen(path),
				 .type = MODEL_REG, .mode = 0644,
				 .size = size };
	struct lp_err err = { 0 };
	uint32_t id;

	CHECK(model_builder_add(b, &e, &id, &err) == 0);
	for (uint64_t off = 0; off < size; off += chunk) {
		struct model_chunk c = { .file_off = off,
					 .len = size - off < chunk ? size - off
								   : chunk,
					 .comp_off = off };
		CHECK(model_builder_add_chunk(b, id, &c, &err) == 0);
	}
}

static struct model *finish(struct model_builder *b)
{
	struct model *m = NULL;
	struct lp_err err = { 0 };

	if (model_builder_finish(b, &m, &err) < 0) {
		fprintf(stderr, "finish: %s\n", err.msg);
		failures++;
	}
	return m;
}

static int finish_err(struct model_builder *b, char *msg)
{
	struct model *m = NULL;
	struct lp_err err = { 0 };
	int r = model_builder_finish(b, &m, &err);

	model_free(m);
	if (msg)
		strcpy(msg, err.msg);
	return r;
}

static void test_tree(void)
{
	struct model_builder *b = model_builder_new(0);
	struct lp_err err = { 0 };
	struct model *m;
	char path[256];
	uint32_t ino, id;

	model_builder_add_blob(b, "sha256:x", NULL, 100, NULL, &err);
	add(b, "./", MODEL_DIR, 0700, NULL);
	add_file(b, "./usr/lib/deep/file", 10, 4); /* missing parents */
	add(b, "bin/", MODEL_DIR, 0755, NULL);
	add_file(b, "bin/busybox", 9, 4);
	add(b, "bin/sh", MODEL_HARDLINK, 0, "bin/busybox");
	add(b, "bin/chain", MODEL_HARDLINK, 0, "./bin/sh"); /* chain */
	add(b, "bin/fwd", MODEL_HARDLINK, 0, "bin/later"); /* forward */
	add(b, "bin/later", MODEL_SYMLINK, 0777, "busybox");
	add(b, "/abs/x", MODEL_FIFO, 0600, NULL);
	add(b, "dup", MODEL_REG, 0600, NULL);
	id = add(b, "dup", MODEL_REG, 04755, NULL); /* last wins */
	CHECK(model_builder_add_xattr(b, id, "user.a", "v1", 2, &err) == 0);
	CHECK(model_builder_add_xattr(b, id, "user.a", "v2", 2, &err) == 0);
	CHECK(model_builder_add_xattr(b, id, "user.b", "", 0, &err) == 0);
	add(b, "dir//./sub/../x", MODEL_DIR, 0750, NULL); /* -> dir/x */
	m = finish(b);
	if (!m)
		return;
	CHECK((m->inodes[MODEL_ROOT_INO].mode & 07777) == 0700);
	ino = model_lookup_path(m, "/usr/lib/deep/file");
	CHECK(ino && m->inodes[ino].size == 10 && m->inodes[ino].count == 3);
	ino = model_lookup_path(m, "usr/lib");
	CHECK(ino && m->inodes[ino].mode == (S_IFDIR | 0755));
	ino = model_lookup_path(m, "/bin/busybox");
	CHECK(ino && m->inodes[ino].nlink == 3);
	CHECK(model_lookup_path(m, "/bin/sh") == ino);
	CHECK(model_lookup_path(m, "/bin/chain") == ino);
	CHECK(model_path(m, model_lookup_path(m, "/bin/chain"), path,
			 sizeof(path)) > 0 &&
	      !strcmp(path, "/bin/busybox"));
	ino = model_lookup_path(m, "/bin/fwd");
	CHECK(ino && S_ISLNK(m->inodes[ino].mode) && m->inodes[ino].nlink == 2);
	CHECK(model_lookup_path(m, "/abs/x") != 0);
	ino = model_lookup_path(m, "/dup");
	CHECK(ino && (m->inodes[ino].mode & 07777) == 04755);
	CHECK(ino && m->inodes[ino].xattr_count == 2);
	if (ino && m->inodes[ino].xattr_count == 2) {
		const struct model_xattr *x =
			&m->xattrs[m->inodes[ino].xattr_first];
		CHECK(!strcmp(model_str(m, x->name), "user.a") &&
		      !memcmp(model_str(m, x->value), "v2", 2));
	}
	CHECK(model_lookup_path(m, "/dir/x") != 0);
	CHECK(model_lookup_path(m, "/dir/sub") == 0);
	/* root nlink: 2 + subdirs (usr, bin, abs, dir) */
	CHECK(m->inodes[MODEL_ROOT_INO].nlink == 6);
	/* memory target: <= 100 bytes per inode plus names */
	CHECK(sizeof(struct model_inode) + sizeof(struct model_dirent) <= 100);
	model_free(m);
}

static void test_errors(void)
{
	struct model_builder *b;
	struct lp_err err = { 0 };
	struct model_entry e = { .type = MODEL_REG };
	char msg[256];

	b = model_builder_new(0);
	e.path = "../etc/passwd";
	e.path_len = strlen(e.path);
	CHECK(model_builder_add(b, &e, NULL, &err) == -EINVAL);
	CHECK(strstr(err.msg, "escapes") != NULL);
	lp_err_clear(&err);
	e.path = "a/../../x";
	e.path_len = strlen(e.path);
	CHECK(model_builder_add(b, &e, NULL, &err) == -EINVAL);
	model_builder_free(b);

	b = model_builder_new(0);
	add(b, "a", MODEL_HARDLINK, 0, "missing");
	CHECK(finish_err(b, msg) == -EINVAL && strstr(msg, "missing"));

	b = model_builder_new(0);
	add(b, "a", MODEL_HARDLINK, 0, "b");
	add(b, "b", MODEL_HARDLINK, 0, "a");
	CHECK(finish_err(b, msg) == -ELOOP);

	b = model_builder_new(0);
	add(b, "d", MODEL_DIR, 0755, NULL);
	add(b, "a", MODEL_HARDLINK, 0, "d");
	CHECK(finish_err(b, msg) == -EINVAL);

	b = model_builder_new(0);
	add(b, "f", MODEL_REG, 0644, NULL);
	add(b, "f/child", MODEL_REG, 0644, NULL);
	CHECK(finish_err(b, msg) == -ENOTDIR);

	/* overlapping chunks */
	b = model_builder_new(0);
	model_builder_add_blob(b, "x", NULL, 0, NULL, &err);
	{
		struct model_entry f = { .path = "f", .path_len = 1,
					 .type = MODEL_REG, .size = 10 };
		struct model_chunk c1 = { .file_off = 0, .len = 6 };
		struct model_chunk c2 = { .file_off = 4, .len = 6 };
		uint32_t id;

		model_builder_add(b, &f, &id, &err);
		model_builder_add_chunk(b, id, &c1, &err);
		model_builder_add_chunk(b, id, &c2, &err);
	}
	CHECK(finish_err(b, msg) == -EINVAL && strstr(msg, "overlaps"));

	/* chunk past the end, huge sizes */
	b = model_builder_new(0);
	model_builder_add_blob(b, "x", NULL, 0, NULL, &err);
	{
		struct model_entry f = { .path = "f", .path_len = 1,
					 .type = MODEL_REG, .size = 10 };
		struct model_chunk c1 = { .file_off = 0, .len = UINT64_MAX };
		uint32_t id;

		model_builder_add(b, &f, &id, &err);
		model_builder_add_chunk(b, id, &c1, &err);
	}
	CHECK(finish_err(b, msg) == -EINVAL && strstr(msg, "past"));

	/* file with data but no chunks */
	b = model_builder_new(0);
	{
		struct model_entry f = { .path = "f", .path_len = 1,
					 .type = MODEL_REG, .size = 10 };
		model_builder_add(b, &f, NULL, &err);
	}
	CHECK(finish_err(b, msg) == -EINVAL && strstr(msg, "no data"));

	/* strict mode rejects duplicates */
	b = model_builder_new(MODEL_BUILD_STRICT);
	add(b, "x", MODEL_DIR, 0755, NULL);
	e.path = "x";
	e.path_len = 1;
	CHECK(model_builder_add(b, &e, NULL, &err) == -EEXIST);
	model_builder_free(b);

	/* the empty layer is a root alone */
	b = model_builder_new(0);
	{
		struct model *m = finish(b);

		CHECK(m && m->n_inodes == 2 && m->n_dirents == 0);
		model_free(m);
	}
}

static struct model *layer(const char *const *spec)
{
	struct model_builder *b = model_builder_new(0);
	struct lp_err err = { 0 };

	model_builder_add_blob(b, "blob", NULL, 0, NULL, &err);
	for (; *spec; spec++) {
		const char *s = *spec;

		if (s[strlen(s) - 1] == '/')
			add(b, s, MODEL_DIR, 0755, NULL);
		else
			add_file(b, s, 3, 4);
	}
	return finish(b);
}

static int collect(const struct model *m, const char *path, uint32_t ino,
		   bool primary, void *data)
{
	char *out = data;
	(void)m;
	(void)ino;
	(void)primary;
	strcat(out, path);
	strcat(out, S_ISCHR(m->inodes[ino].mode) ? "(c) " : " ");
	return 0;
}

static void test_merge(void)
{
	static const char *const l0[] = { "a/", "a/x", "a/y", "b/", "b/z",
					  "c", "keep", NULL };
	static const char *const l1[] = { "a/.wh.x", "b/",
					  "b/.wh..wh..opq", "b/new",
					  ".wh.c", "c2", NULL };
	static const char *const l2[] = { "a", NULL }; /* file over dir */
	struct model *layers[3] = { layer(l0), layer(l1), layer(l2) };
	struct model *m = NULL, *ov = NULL;
	struct lp_err err = { 0 };
	char out[1024] = "";

	CHECK(model_merge(layers, 2, &m, &err) == 0);
	if (m) {
		model_walk(m, collect, out);
		CHECK(!strcmp(out, "/ /a /a/y /b /b/new /c2 /keep "));
		if (strcmp(out, "/ /a /a/y /b /b/new /c2 /keep "))
			fprintf(stderr, "merge: %s\n", out);
		CHECK(m->n_blobs == 2);
		uint32_t ino = model_lookup_path(m, "/b/new");
		CHECK(ino && m->chunks[m->inodes[ino].first].blob == 1);
		model_free(m);
	}
	CHECK(model_merge(layers, 3, &m, &err) == 0);
	if (m) {
		out[0] = '\0';
		model_walk(m, collect, out);
		CHECK(!strcmp(out, "/ /a /b /b/new /c2 /keep "));
		model_free(m);
	}
	CHECK(model_to_overlay(layers[1], &ov, &err) == 0);
	if (ov) {
		uint32_t b;

		out[0] = '\0';
		model_walk(ov, collect, out);
		CHECK(!strcmp(out, "/ /a /a/x(c) /b /b/new /c(c) /c2 "));
		if (strcmp(out, "/ /a /a/x(c) /b /b/new /c(c) /c2 "))
			fprintf(stderr, "overlay: %s\n", out);
		b = model_lookup_path(ov, "/b");
		CHECK(b && ov->inodes[b].xattr_count == 1);
		model_free(ov);
	}
	for (int i = 0; i < 3; i++)
		model_free(layers[i]);
}

/* Builders run in parallel, one per layer (mount opens layers on 8 threads):
 * finishing must share no state between them. Each thread builds trees of
 * many entries with xattrs and checks the sort it got. */
static void *build_many(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	long bad = 0;

	for (int round = 0; round < 40; round++) {
		struct model_builder *b = model_builder_new(0);
		struct lp_err err = { 0 };
		struct model *m = NULL;
		char path[64], name[32];

		for (int i = 0; i < 300; i++) {
			struct model_entry e = { .type = MODEL_REG,
						 .mode = 0644 };
			uint32_t id;
			int k = (int)((seed * 7919u + (unsigned)i * 104729u) %
				      100000u);

			snprintf(path, sizeof(path), "d%d/f%05d", k % 7, k);
			e.path = path;
			e.path_len = strlen(path);
			if (model_builder_add(b, &e, &id, &err) < 0)
				bad++;
			for (int x = 3; x > 0; x--) {
				snprintf(name, sizeof(name), "user.x%d", x);
				if (model_builder_add_xattr(b, id, name, path,
							    strlen(path),
							    &err) < 0)
					bad++;
			}
		}
		if (model_builder_finish(b, &m, &err) < 0 || !m) {
			bad++;
			continue;
		}
		for (uint32_t d = 0; d < m->n_inodes; d++) {
			const struct model_inode *in = &m->inodes[d];

			for (uint32_t j = 1; S_ISDIR(in->mode) && j < in->count;
			     j++)
				if (strcmp(model_str(m,
					m->dirents[in->first + j - 1].name),
					   model_str(m,
					m->dirents[in->first + j].name)) >= 0)
					bad++;
			for (uint32_t j = 1; j < in->xattr_count; j++)
				if (strcmp(model_str(m,
					m->xattrs[in->xattr_first + j - 1].name),
					   model_str(m,
					m->xattrs[in->xattr_first + j].name)) >=
				    0)
					bad++;
		}
		model_free(m);
	}
	return (void *)bad;
}

static void test_parallel_builders(void)
{
	pthread_t t[8];

	for (uintptr_t i = 0; i < 8; i++)
		CHECK(pthread_create(&t[i], NULL, build_many,
				     (void *)(i + 1)) == 0);
	for (int i = 0; i < 8; i++) {
		void *bad = NULL;

		pthread_join(t[i], &bad);
		CHECK(bad == NULL);
	}
}

int main(void)
{
	test_tree();
	test_errors();
	test_merge();
	test_parallel_builders();
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
