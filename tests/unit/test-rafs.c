/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of formats/rafs over the upstream nydus vectors
 * (testdata/reference/rafs, see its README) and small synthetic bootstraps.
 *
 *   test-rafs REFDIR [GOLDENDIR]
 *
 * - the v5 "repeatable" bootstraps print exactly their .result files (the
 *   `tree -J` listing plus `md5sum` of every file), with every file read
 *   back from the blob, chunk by chunk, each chunk verified;
 * - the v6 bootstraps (2.2 vector, the blob with an inlined bootstrap) decode
 *   to the stated sizes, digests verified;
 * - the nydus-snapshotter bootstrap layers list their full trees (golden
 *   listings in GOLDENDIR; the v5 and v6 layers are the same rootfs and must
 *   agree entry for entry, chunk digests included);
 * - invalid inputs fail with clear errors; truncated and corrupted
 *   bootstraps never crash.
 *
 * UPDATE_GOLDEN=1 rewrites the golden listings.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>
#if __has_include(<lz4.h>)
#include <lz4.h>
#define TEST_LZ4 1
#endif

#include "formats/rafs/rafs.h"

#include "check.h"

static const char *refdir, *golddir;

/* ---- small helpers ------------------------------------------------------- */

struct buf {
	char *s;
	size_t len, cap;
};

static void __attribute__((format(printf, 2, 3)))
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	lp_grow((void **)&b->s, 1, &b->cap, b->len + (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *d;
	long n;

	if (!f) {
		perror(path);
		failures++;
		*len = 0;
		return lp_xmalloc(1);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	d = lp_xmalloc(n ? (size_t)n : 1);
	if (fread(d, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		failures++;
	}
	fclose(f);
	*len = (size_t)n;
	return d;
}

static char *ref(const char *name)
{
	static char path[8][4096];
	static int k;

	k = (k + 1) % 8;
	snprintf(path[k], sizeof(path[k]), "%s/%s", refdir, name);
	return path[k];
}

static struct model *load(const void *d, size_t len, struct rafs_meta *meta)
{
	struct lp_err err = { 0 };
	struct model *m = NULL;

	if (rafs_bootstrap_load(d, len, &m, meta, &err) < 0) {
		fprintf(stderr, "load: %s\n", err.msg);
		failures++;
		return NULL;
	}
	return m;
}

static uint8_t *extract_layer(const char *path, size_t *len,
			      struct lp_err *err)
{
	struct lp_source *src = NULL;
	void *d = NULL;

	if (lp_source_open_file(path, &src, err) < 0)
		return NULL;
	if (rafs_layer_extract_bootstrap(src, &d, len, err) < 0)
		d = NULL;
	lp_source_free(src);
	return d;
}

/*
 * Reads a whole regular file through its chunks: stored bytes from the
 * blob file, decoded, verified.  blob_path(i) names blob i's file.
 */
struct reader {
	const struct model *m;
	char paths[4][4096]; /* per model blob */
	unsigned verified, failed;
};

static uint8_t *read_content(struct reader *r, uint32_t ino)
{
	const struct model_inode *in = model_inode(r->m, ino);
	uint8_t *out = lp_xmalloc(in->size ? in->size : 1);

	for (uint32_t i = 0; i < in->count; i++) {
		const struct model_chunk *c = &r->m->chunks[in->first + i];
		struct lp_err err = { 0 };
		uint8_t *stored = lp_xmalloc(c->comp_len ? c->comp_len : 1);
		int fd = c->blob < 4 ? open(r->paths[c->blob], O_RDONLY) : -1;

		if (fd < 0 ||
		    pread(fd, stored, c->comp_len, (off_t)c->comp_off) !=
			    (ssize_t)c->comp_len) {
			fprintf(stderr, "blob %u: cannot read %s\n", c->blob,
				c->blob < 4 ? r->paths[c->blob] : "?");
			r->failed++;
		} else if (rafs_decode_chunk(c, stored, c->comp_len,
					     out + c->file_off, &err) < 0 ||
			   model_chunk_verify(c, out + c->file_off, &err) < 0) {
			fprintf(stderr, "chunk %u of ino %u: %s\n", i, ino,
				err.msg);
			r->failed++;
		} else {
			r->verified++;
		}
		if (fd >= 0)
			close(fd);
		free(stored);
	}
	return out;
}

/* ---- `tree -J` + `md5sum` dump (the .result format) ---------------------- */

static uint32_t resolve(const struct model *m, uint32_t dir, const char *t,
			int depth);

/* Follows a symlink the way tree(1) did on the vectors: relative to its
 * directory, absolute targets from the image root. */
static uint32_t resolve(const struct model *m, uint32_t dir, const char *t,
			int depth)
{
	uint32_t cur = t[0] == '/' ? MODEL_ROOT_INO : dir;
	char comp[256];

	if (depth > 40)
		return 0;
	while (*t) {
		size_t n = strcspn(t, "/");
		uint32_t child;

		if (n >= sizeof(comp))
			return 0;
		memcpy(comp, t, n);
		comp[n] = '\0';
		t += n;
		while (*t == '/')
			t++;
		if (n == 0 || !strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			cur = m->inodes[cur].parent;
			continue;
		}
		if (!S_ISDIR(m->inodes[cur].mode))
			return 0;
		child = model_lookup(m, cur, comp);
		if (!child)
			return 0;
		if (S_ISLNK(m->inodes[child].mode)) {
			child = resolve(m, cur,
					model_str(m, m->inodes[child].link),
					depth + 1);
			if (!child)
				return 0;
		}
		cur = child;
	}
	return cur;
}

static void json_str(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			bprintf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			bprintf(b, "\\u%04x", *s);
		else
			bprintf(b, "%c", *s);
	}
}

static void tree_dir(const struct model *m, struct buf *b, uint32_t dir,
		     const char *name, int indent, unsigned *dirs,
		     unsigned *files)
{
	const struct model_inode *in = &m->inodes[dir];

	bprintf(b, "%*s{\"type\":\"directory\",\"name\":\"", indent, "");
	json_str(b, name);
	bprintf(b, "\",\"contents\":[\n");
	for (uint32_t i = 0; i < in->count; i++) {
		const struct model_dirent *de = &m->dirents[in->first + i];
		const struct model_inode *c = &m->inodes[de->ino];
		const char *cn = model_str(m, de->name);
		const char *sep = i + 1 < in->count ? "," : "";

		if (S_ISDIR(c->mode)) {
			(*dirs)++;
			tree_dir(m, b, de->ino, cn, indent + 2, dirs, files);
			bprintf(b, "%s\n", sep);
			continue;
		}
		bprintf(b, "%*s{\"type\":\"", indent + 2, "");
		if (S_ISLNK(c->mode)) {
			uint32_t t = resolve(m, dir, model_str(m, c->link), 0);

			if (t && S_ISDIR(m->inodes[t].mode))
				(*dirs)++;
			else
				(*files)++;
			bprintf(b, "link\",\"name\":\"");
			json_str(b, cn);
			bprintf(b, "\",\"target\":\"");
			json_str(b, model_str(m, c->link));
			bprintf(b, "\",\"contents\":[]}%s\n", sep);
			continue;
		}
		(*files)++;
		bprintf(b, "%s\",\"name\":\"",
			S_ISREG(c->mode)    ? "file"
			: S_ISCHR(c->mode)  ? "char"
			: S_ISBLK(c->mode)  ? "block"
			: S_ISFIFO(c->mode) ? "fifo"
					    : "socket");
		json_str(b, cn);
		bprintf(b, "\"}%s\n", sep);
	}
	bprintf(b, "%*s]}", indent, "");
}

struct md5_walk {
	struct reader *r;
	char **lines;
	size_t n;
};

static int md5_cb(const struct model *m, const char *path, uint32_t ino,
		  bool primary, void *data)
{
	struct md5_walk *w = data;
	const struct model_inode *in = &m->inodes[ino];
	unsigned char md[16];
	unsigned int mdlen = 16;
	char hex[33], line[4200];
	uint8_t *content;

	(void)primary;
	if (!S_ISREG(in->mode))
		return 0;
	content = read_content(w->r, ino);
	EVP_Digest(content, in->size, md, &mdlen, EVP_md5(), NULL);
	free(content);
	lp_hex(md, 16, hex);
	snprintf(line, sizeof(line), "%s  %s", hex, path);
	w->lines = lp_xrealloc(w->lines, (w->n + 1) * sizeof(char *));
	w->lines[w->n++] = lp_xstrdup(line);
	return 0;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void result_dump(struct reader *r, struct buf *b)
{
	struct md5_walk w = { .r = r };
	unsigned dirs = 0, files = 0;

	bprintf(b, "[\n");
	tree_dir(r->m, b, MODEL_ROOT_INO, "", 2, &dirs, &files);
	bprintf(b, ",\n  {\"type\":\"report\",\"directories\":%u,\"files\":%u}"
		   "\n]\n",
		dirs, files);
	model_walk(r->m, md5_cb, &w);
	qsort(w.lines, w.n, sizeof(char *), strp_cmp);
	for (size_t i = 0; i < w.n; i++) {
		bprintf(b, "%s\n", w.lines[i]);
		free(w.lines[i]);
	}
	free(w.lines);
}

static void test_repeatable(const char *name, uint8_t digest_alg,
			    uint64_t flags)
{
	char rname[256];
	size_t len, rlen;
	uint8_t *boot = read_all(ref(name), &len), *want;
	struct rafs_meta meta = { 0 };
	struct model *m = load(boot, len, &meta);
	struct reader r = { 0 };
	struct buf got = { 0 };

	snprintf(rname, sizeof(rname), "%s.result", name);
	want = read_all(ref(rname), &rlen);
	CHECK(m != NULL);
	if (!m)
		goto out;
	CHECK(meta.version == 5);
	CHECK(meta.flags == flags);
	CHECK(meta.chunk_size == 1u << 20);
	CHECK(meta.n_blobs == 1 && m->n_blobs == 1);
	CHECK(!strcmp(model_str(m, m->blobs[0].id),
		      "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0"
		      "419a538e00"));
	CHECK(m->blobs[0].size == 3508766);
	CHECK(m->n_chunks == 27); /* 23 distinct, some shared */
	for (uint32_t i = 0; i < m->n_chunks; i++) {
		CHECK(m->chunks[i].digest_alg == digest_alg);
		CHECK(m->chunks[i].codec == MODEL_CODEC_NONE);
	}
	/* the hardlinked trio is one inode */
	uint32_t a = model_lookup_path(m, "/hardlink-test/foo");
	CHECK(a && a == model_lookup_path(m, "/hardlink-test/test.sh"));
	CHECK(a && a == model_lookup_path(m, "/normal-file-test/test.sh"));
	CHECK(a && m->inodes[a].nlink == 3 && m->inodes[a].size == 944);
	CHECK(m->inodes[MODEL_ROOT_INO].mtime == 0);

	r.m = m;
	snprintf(r.paths[0], sizeof(r.paths[0]), "%s/blobs/%s", refdir,
		 model_str(m, m->blobs[0].id));
	result_dump(&r, &got);
	CHECK(got.len == rlen && !memcmp(got.s, want, rlen));
	if (got.len != rlen || memcmp(got.s, want, rlen)) {
		fprintf(stderr, "%s: dump differs; got:\n%.*s\n", name,
			(int)got.len, got.s);
	}
	CHECK(r.failed == 0);
	CHECK(r.verified == 27 + 2); /* + the two extra hardlink names */
	printf("%s: tree and md5 of %s match, %u chunks verified\n", name,
	       rname, r.verified);
out:
	free(got.s);
	free(want);
	rafs_meta_release(&meta);
	model_free(m);
	free(boot);
}

/* ---- v6 ------------------------------------------------------------------ */

static void check_ci(const struct model *m, const char *blob_path,
		     uint32_t want_entries);

static void test_v6_22(void)
{
	size_t len;
	uint8_t *boot = read_all(ref("rafs-v6-2.2.boot"), &len);
	struct rafs_meta meta = { 0 };
	struct model *m = load(boot, len, &meta);
	struct reader r = { 0 };
	uint32_t lib, sync;

	CHECK(m != NULL);
	if (!m)
		goto out;
	CHECK(meta.version == 6);
	CHECK(meta.flags == 0x194);
	CHECK(m->n_blobs == 1);
	CHECK(!strcmp(model_str(m, m->blobs[0].id),
		      "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d5432"
		      "5f0d5fef"));
	CHECK(m->blobs[0].size == 14554);
	CHECK(!strcmp(model_str(m, m->blobs[0].media_type),
		      RAFS_BLOB_MEDIA_TYPE));
	CHECK(m->n_inodes == 4 && m->n_chunks == 2);
	lib = model_lookup_path(m, "/lib.rs");
	sync = model_lookup_path(m, "/sync_io.rs");
	CHECK(lib && m->inodes[lib].size == 16931);
	CHECK(sync && m->inodes[sync].size == 13400);
	CHECK(lib && m->inodes[lib].mtime == 1676819553);
	CHECK(lib && m->inodes[lib].mode == (S_IFREG | 0644));
	if (lib && sync && m->inodes[lib].count == 1 &&
	    m->inodes[sync].count == 1) {
		const struct model_chunk *c = &m->chunks[m->inodes[lib].first];
		const struct model_chunk *d = &m->chunks[m->inodes[sync].first];

		/* spec §2.17 */
		CHECK(c->comp_off == 0 && c->comp_len == 4828 &&
		      c->aux_off == 0 && c->len == 16931 && c->aux == 0);
		CHECK(d->comp_off == 4828 && d->comp_len == 2974 &&
		      d->aux_off == 20480 && d->len == 13400 && d->aux == 1);
		CHECK(c->codec == MODEL_CODEC_RAFS_ZSTD &&
		      c->digest_alg == MODEL_DIGEST_BLAKE3);
		r.m = m;
		snprintf(r.paths[0], sizeof(r.paths[0]), "%s/blobs/%s",
			 refdir, model_str(m, m->blobs[0].id));
		free(read_content(&r, lib));
		free(read_content(&r, sync));
		CHECK(r.verified == 2 && r.failed == 0);
		check_ci(m, r.paths[0], 2);
	} else {
		CHECK(!"one chunk each");
	}
out:
	rafs_meta_release(&meta);
	model_free(m);
	free(boot);
}

/* The blob meta (CI table) of a native blob must agree with the chunks
 * the bootstrap's chunk table gave the model. */
static void check_ci(const struct model *m, const char *blob_path,
		     uint32_t want_entries)
{
	struct lp_source *src = NULL;
	struct lp_err err = { 0 };
	struct rafs_ci_header h;
	struct rafs_ci *ci = NULL;

	CHECK(lp_source_open_file(blob_path, &src, &err) == 0);
	if (!src)
		return;
	CHECK(rafs_blob_read_ci(src, &h, &ci, &err) == 0);
	if (!ci) {
		fprintf(stderr, "%s: %s\n", blob_path, err.msg);
		goto out;
	}
	CHECK(h.entries == want_entries);
	for (uint32_t i = 0; i < m->n_chunks; i++) {
		const struct model_chunk *c = &m->chunks[i];
		const struct rafs_ci *e = &ci[c->aux];

		CHECK(c->aux < h.entries);
		if (c->aux >= h.entries)
			continue;
		CHECK(e->comp_off == c->comp_off && e->comp_size == c->comp_len &&
		      e->uncomp_off == c->aux_off && e->uncomp_size == c->len);
		CHECK(!!(e->flags & RAFS_CI_COMPRESSED) ==
		      (c->codec != MODEL_CODEC_NONE));
	}
out:
	free(ci);
	lp_source_free(src);
}

/* A native blob with its bootstrap inlined: find image.boot through the
 * blob's ToC (spec §2.12), then read the files from the same blob. */
static void test_toc_blob(void)
{
	const char *path = ref("toc/2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aa"
			       "a8bd80e5dc292690a4dca");
	struct lp_source *src = NULL;
	struct lp_err err = { 0 };
	struct rafs_toc_entry te;
	void *boot = NULL;
	size_t boot_len = 0;
	struct model *m = NULL;
	struct reader r = { 0 };

	CHECK(lp_source_open_file(path, &src, &err) == 0);
	if (!src)
		return;
	CHECK(rafs_blob_toc_find(src, "image.boot", &te, &err) == 0);
	CHECK(te.flags == 2 && te.comp_off == 7997 && te.comp_size == 501 &&
	      te.uncomp_size == 20480);
	CHECK(rafs_blob_toc_read(src, &te, &boot, &boot_len, &err) == 0);
	CHECK(rafs_blob_toc_find(src, "nope", &te, &err) == -ENOENT);
	if (!boot) {
		fprintf(stderr, "toc: %s\n", err.msg);
		goto out;
	}
	m = load(boot, boot_len, NULL);
	CHECK(m != NULL);
	if (!m)
		goto out;
	CHECK(m->n_blobs == 1 && m->n_chunks == 3 && m->n_inodes == 5);
	CHECK(!strcmp(model_str(m, m->blobs[0].id),
		      "d788a0eac4ff9779bc2eae3842117a918d847d90fddbea1503f7c529"
		      "6a4a7de3"));
	r.m = m;
	snprintf(r.paths[0], sizeof(r.paths[0]), "%s", path);
	static const struct {
		const char *name;
		uint64_t size;
	} files[] = { { "/error.rs", 2816 }, { "/lib.rs", 678 },
		      { "/logger.rs", 3115 } };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		uint32_t ino = model_lookup_path(m, files[i].name);

		CHECK(ino && m->inodes[ino].size == files[i].size);
		if (ino)
			free(read_content(&r, ino));
	}
	CHECK(r.verified == 3 && r.failed == 0);
	check_ci(m, path, 3);
out:
	model_free(m);
	free(boot);
	lp_source_free(src);
}

/* The blob.meta file format (cache / bootstrap layer), built here from a
 * blob's CI area, and CI v2 decoding. */
static void test_blob_meta(void)
{
	uint8_t file[8192] = { 0 };
	struct rafs_ci_header h;
	struct rafs_ci *ci = NULL, v2[2];
	struct lp_err err = { 0 };
	size_t len;
	uint8_t *blob = read_all(ref("blobs/be7d77eeb719f70884758d1aa800ed0fb0"
				     "9d701aaec469964e9d54325f0d5fef"),
				 &len);

	CHECK(len == 14554);
	if (len != 14554)
		goto out;
	memcpy(file, blob + 8314, 32);		 /* CI area (uncompressed) */
	memcpy(file + 4096, blob + 8346, 4096); /* its header */
	CHECK(rafs_blob_meta_parse(file, sizeof(file), &h, &ci, &err) == 0);
	CHECK(h.entries == 2 && h.ci_offset == 8314 && h.compressor == 0 &&
	      h.features == 0x70000021);
	CHECK(ci && ci[0].comp_off == 0 && ci[0].comp_size == 4828 &&
	      ci[0].uncomp_off == 0 && ci[0].uncomp_size == 16931 &&
	      ci[0].flags == RAFS_CI_COMPRESSED);
	CHECK(ci && ci[1].comp_off == 4828 && ci[1].comp_size == 2974 &&
	      ci[1].uncomp_off == 20480 && ci[1].uncomp_size == 13400);
	free(ci);
	ci = NULL;
	CHECK(rafs_blob_meta_parse(file, sizeof(file) - 1, &h, &ci, &err) ==
	      -EINVAL);
	file[4096] ^= 1;
	CHECK(rafs_blob_meta_parse(file, sizeof(file), &h, &ci, &err) ==
	      -EINVAL);

	/* v2: offset >> 12 | (size - 1) << 32 | flags << 56; coff | csize << 40 */
	uint8_t e[48] = { 0 };
	uint64_t u = 5ull | (12345ull - 1) << 32 | 0x13ull << 56;
	uint64_t c = 777ull | 4000ull << 40;
	memcpy(e, &u, 8);
	memcpy(e + 8, &c, 8);
	memset(e + 16, 0xab, 8);
	CHECK(rafs_ci_decode(e, sizeof(e), 2, true, v2, &err) == 0);
	CHECK(v2[0].uncomp_off == 5 * 4096 && v2[0].uncomp_size == 12345 &&
	      v2[0].flags == 0x13 && v2[0].comp_off == 777 &&
	      v2[0].comp_size == 4000 && v2[0].data == 0xababababababababull);
	CHECK(rafs_ci_decode(e, sizeof(e), 3, true, v2, &err) == -EINVAL);
out:
	free(blob);
}

/* ---- the nydus-snapshotter bootstrap layers ------------------------------ */

static void chunk_sum(const struct model *m, const struct model_inode *in,
		      char *out /* 17 */)
{
	uint8_t d[32];
	struct lp_sha256_ctx *c = lp_sha256_new();

	for (uint32_t i = 0; i < in->count; i++)
		lp_sha256_update(c, m->chunks[in->first + i].digest, 32);
	lp_sha256_final(c, d);
	lp_hex(d, 8, out);
}

static int list_cb(const struct model *m, const char *path, uint32_t ino,
		   bool primary, void *data)
{
	struct buf *b = data;
	const struct model_inode *in = &m->inodes[ino];
	char sum[17];

	bprintf(b, "%s %s %04o %u:%u", path,
		S_ISDIR(in->mode)    ? "dir"
		: S_ISREG(in->mode)  ? "reg"
		: S_ISLNK(in->mode)  ? "symlink"
		: S_ISCHR(in->mode)  ? "char"
		: S_ISBLK(in->mode)  ? "block"
		: S_ISFIFO(in->mode) ? "fifo"
				     : "sock",
		in->mode & 07777, in->uid, in->gid);
	if (!primary) {
		char p[4096];

		model_path(m, ino, p, sizeof(p));
		bprintf(b, " hardlink=%s\n", p);
		return 0;
	}
	bprintf(b, " mtime=%lld nlink=%u", (long long)in->mtime, in->nlink);
	if (S_ISREG(in->mode)) {
		chunk_sum(m, in, sum);
		bprintf(b, " size=%llu chunks=%u:%s",
			(unsigned long long)in->size, in->count, sum);
	}
	if (S_ISLNK(in->mode))
		bprintf(b, " -> %s", model_str(m, in->link));
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
		bprintf(b, " rdev=%u,%u", in->rdev_major, in->rdev_minor);
	for (uint32_t i = 0; i < in->xattr_count; i++) {
		const struct model_xattr *x = &m->xattrs[in->xattr_first + i];
		char hex[2 * 256 + 1];
		uint32_t n = x->value_len > 256 ? 256 : x->value_len;

		lp_hex((const uint8_t *)model_str(m, x->value), n, hex);
		bprintf(b, " xattr:%s=%s", model_str(m, x->name), hex);
	}
	bprintf(b, "\n");
	return 0;
}

/* Golden listings are stored gzip-compressed. */
static void golden(const char *name, const struct buf *got)
{
	char path[4096];
	struct buf want = { 0 };
	gzFile gz;

	if (!golddir)
		return;
	snprintf(path, sizeof(path), "%s/%s.gz", golddir, name);
	if (getenv("UPDATE_GOLDEN")) {
		gz = gzopen(path, "wb9");
		CHECK(gz && gzwrite(gz, got->s, (unsigned)got->len) ==
				    (int)got->len);
		if (gz)
			CHECK(gzclose(gz) == Z_OK);
		return;
	}
	gz = gzopen(path, "rb");
	CHECK(gz != NULL);
	if (!gz) {
		perror(path);
		return;
	}
	for (;;) {
		int n;

		lp_grow((void **)&want.s, 1, &want.cap, want.len + 65536);
		n = gzread(gz, want.s + want.len, 65536);
		if (n <= 0)
			break;
		want.len += (size_t)n;
	}
	gzclose(gz);
	CHECK(want.len == got->len && !memcmp(want.s, got->s, want.len));
	if (want.len != got->len || memcmp(want.s, got->s, want.len))
		fprintf(stderr, "%s: listing differs (UPDATE_GOLDEN=1 to "
				"rewrite)\n",
			path);
	free(want.s);
}

/* The v5 and v6 layers hold the same rootfs: their listings (chunk digests
 * included) must be identical, and equal the golden one. */
static void test_layers(void)
{
	struct lp_err err = { 0 };
	size_t l5 = 0, l6 = 0;
	uint8_t *b5 = extract_layer(
		ref("layers/v5-bootstrap-file-size-736032.tar.gz"), &l5, &err);
	uint8_t *b6 = extract_layer(
		ref("layers/v6-bootstrap-chunk-pos-438272.tar.gz"), &l6, &err);
	struct rafs_meta m5i = { 0 }, m6i = { 0 };
	struct model *m5 = NULL, *m6 = NULL;
	struct buf d5 = { 0 }, d6 = { 0 };
	char **ids = NULL;
	uint32_t n_ids = 0;

	if (!b5 || !b6)
		fprintf(stderr, "extract: %s\n", err.msg);
	CHECK(b5 && l5 == 736032);
	CHECK(b6 && l6 == 643072);
	if (!b5 || !b6)
		goto out;
	m5 = load(b5, l5, &m5i);
	m6 = load(b6, l6, &m6i);
	CHECK(m5 && m6);
	if (!m5 || !m6)
		goto out;
	CHECK(m5i.version == 5 && m6i.version == 6);
	CHECK(m5i.flags == 0x16 && m6i.flags == 0x6);
	CHECK(m5->n_inodes == 3515 + 1);
	CHECK(m6->n_inodes == 3515 + 1); /* hardlinks as in v5 */
	/* prefetch: v5 names the root (everything), v6 names /bin */
	CHECK(m5i.prefetch_all && m5i.n_prefetch == 1);
	CHECK(!m6i.prefetch_all && m6i.n_prefetch == 1 &&
	      m6i.prefetch[0] == model_lookup_path(m6, "/bin"));
	model_walk(m5, list_cb, &d5);
	model_walk(m6, list_cb, &d6);
	CHECK(d5.len == d6.len && !memcmp(d5.s, d6.s, d5.len));
	golden("snapshotter-layer.list", &d5);

	/* the shapes a rootfs has */
	uint32_t perl = model_lookup_path(m6, "/usr/bin/perl");
	CHECK(perl && perl == model_lookup_path(m6, "/usr/bin/perl5.34.0"));
	CHECK(perl && m6->inodes[perl].nlink == 2 &&
	      m6->inodes[perl].size == 3806264 && m6->inodes[perl].count == 4);
	uint32_t bin = model_lookup_path(m6, "/bin");
	CHECK(bin && S_ISLNK(m6->inodes[bin].mode) &&
	      !strcmp(model_str(m6, m6->inodes[bin].link), "usr/bin"));
	for (uint32_t i = 0; i < m6->n_chunks; i++)
		CHECK(m6->chunks[i].codec == MODEL_CODEC_RAFS_LZ4 ||
		      m6->chunks[i].codec == MODEL_CODEC_NONE);
	CHECK(m6->n_blobs == 1 && m6->blobs[0].size == 43090887);

	CHECK(rafs_blob_ids(b6, l6, &ids, &n_ids, &err) == 0);
	CHECK(n_ids == 1 && ids &&
	      !strcmp(ids[0], "cdde6f5645daea414d60bc75611102a8bc8dae6198f087"
			      "366365d6ff85bf5726"));
	rafs_blob_ids_free(ids, n_ids);
	CHECK(rafs_blob_ids(b5, l5, &ids, &n_ids, &err) == 0);
	CHECK(n_ids == 1 && ids &&
	      !strcmp(ids[0], "02fef4a13a311de4adc5b34ca152d3a87c9371c76a5f72"
			      "0451c8b9602859b780"));
	rafs_blob_ids_free(ids, n_ids);
	printf("snapshotter layers: v5 and v6 list the same %u inodes\n",
	       m6->n_inodes - 1);
out:
	free(d5.s);
	free(d6.s);
	rafs_meta_release(&m5i);
	rafs_meta_release(&m6i);
	model_free(m5);
	model_free(m6);
	free(b5);
	free(b6);
}

/* ---- the format ops ------------------------------------------------------ */

static void test_ops(void)
{
	static const char *const ann[] = {
		"containerd.io/snapshot/nydus-bootstrap", "true", NULL
	};
	struct format_hints hints = { .annotations = ann };
	const char *layers[] = { "layers/v5-bootstrap-file-size-736032.tar.gz",
				 "layers/v6-bootstrap-chunk-pos-438272.tar.gz",
				 "rafs-v6-2.2.boot",
				 "sha256-nocompress-repeatable" };
	const char *formats[] = { "rafs-v5", "rafs-v6", "rafs-v6", "rafs-v5" };

	for (size_t i = 0; i < ARRAY_SIZE(layers); i++) {
		struct lp_source *src = NULL;
		struct lp_err err = { 0 };
		struct format_info info;
		struct format_ctx *ctx = NULL;
		struct model *m = NULL;

		CHECK(lp_source_open_file(ref(layers[i]), &src, &err) == 0);
		if (!src)
			continue;
		CHECK(rafs_ops.probe(src, NULL, &err) == 1);
		CHECK(rafs_ops.load(src, &hints, &m, &ctx, &info, &err) == 0);
		if (m) {
			CHECK(!strcmp(info.format, formats[i]));
			CHECK(!strncmp(info.toc_digest, "sha256:", 7) &&
			      strlen(info.toc_digest) == 71);
			CHECK(rafs_ctx_meta(ctx) &&
			      rafs_ctx_meta(ctx)->n_blobs == m->n_blobs);
		} else {
			fprintf(stderr, "%s: %s\n", layers[i], err.msg);
		}
		model_free(m);
		rafs_ops.destroy(ctx);
		lp_source_free(src);
	}
	/* ordinary gzip layers and other files are not RAFS */
	const char *nots[] = { "layers/invalid.tar.gz",
			       "sha256-nocompress-repeatable.result",
			       ("toc/2fa78cad554b75ac91a4a125ed148d0ddeb25efa"
				"4aaa8bd80e5dc292690a4dca") };
	for (size_t i = 0; i < ARRAY_SIZE(nots); i++) {
		struct lp_source *src = NULL;
		struct lp_err err = { 0 };

		CHECK(lp_source_open_file(ref(nots[i]), &src, &err) == 0);
		if (src)
			CHECK(rafs_ops.probe(src, NULL, &err) == 0);
		lp_source_free(src);
	}
	/* the annotation alone makes a gzip layer a candidate */
	{
		struct lp_source *src = NULL;
		struct lp_err err = { 0 };

		lp_source_open_file(ref("layers/invalid.tar.gz"), &src, &err);
		if (src)
			CHECK(rafs_ops.probe(src, &hints, &err) == 1);
		lp_source_free(src);
	}
}

/* ---- invalid inputs ------------------------------------------------------ */

static void expect_fail(const void *d, size_t len, int code, const char *msg)
{
	struct lp_err err = { 0 };
	struct model *m = NULL;
	int r = rafs_bootstrap_load(d, len, &m, NULL, &err);

	CHECK(r == -code && m == NULL);
	CHECK(err.code == -code && strstr(err.msg, msg));
	if (r != -code || !strstr(err.msg, msg))
		fprintf(stderr, "  want %d \"%s\", got %d \"%s\"\n", -code, msg,
			r, err.msg);
	model_free(m);
}

static void test_invalid(void)
{
	struct lp_err err = { 0 };
	size_t len = 0;
	uint8_t *d;

	/* a bootstrap layer whose image.boot is not a bootstrap */
	d = extract_layer(ref("layers/invalid-bootstrap-file-size-133513.tar.gz"),
			  &len, &err);
	CHECK(d && len == 133513);
	if (d)
		expect_fail(d, len, EINVAL, "not a RAFS bootstrap");
	free(d);
	/* a tar.gz without a bootstrap */
	lp_err_clear(&err);
	d = extract_layer(ref("layers/invalid.tar.gz"), &len, &err);
	CHECK(!d && err.code == -ENOENT &&
	      strstr(err.msg, "no image/image.boot"));
	free(d);
	/* not even gzip */
	{
		struct lp_source *src = lp_source_new_mem("hello", 5, "mem");

		lp_err_clear(&err);
		d = NULL;
		CHECK(rafs_layer_extract_bootstrap(src, (void **)&d, &len,
						   &err) < 0);
		CHECK(strstr(err.msg, "gzip") != NULL);
		free(d);
		lp_source_free(src);
	}
	expect_fail("", 0, EINVAL, "not a RAFS bootstrap");
	expect_fail("RAFS", 4, EINVAL, "not a RAFS bootstrap");

	uint8_t sb[8192] = { 0x53, 0x46, 0x41, 0x52, 0x00, 0x05 };
	expect_fail(sb, 100, EINVAL, "truncated");
	expect_fail(sb, sizeof(sb), EINVAL, "bad superblock size");
	uint8_t v6[4096] = { 0 };
	memcpy(v6 + 1024, "\xe2\xe1\xf5\xe0", 4);
	expect_fail(v6, 1100, EINVAL, "truncated");
	expect_fail(v6, sizeof(v6), EINVAL, "not RAFS v6");
}

/* Truncated and corrupted bootstraps: errors, never crashes (ASan/UBSan
 * builds check the "never"). */
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void try_load(const uint8_t *d, size_t len, unsigned *ok,
		     unsigned *bad)
{
	struct lp_err err = { 0 };
	struct rafs_meta meta = { 0 };
	struct model *m = NULL;
	char **ids = NULL;
	uint32_t n = 0;

	if (rafs_bootstrap_load(d, len, &m, &meta, &err) == 0) {
		(*ok)++;
		model_free(m);
		rafs_meta_release(&meta);
	} else {
		(*bad)++;
		CHECK(err.code < 0 && err.msg[0]);
	}
	if (rafs_blob_ids(d, len, &ids, &n, NULL) == 0)
		rafs_blob_ids_free(ids, n);
}

static void test_robust(const char *name, const uint8_t *boot, size_t len,
			size_t head_step, size_t strides, unsigned flips)
{
	unsigned ok = 0, bad = 0;
	uint8_t *copy;

	/* prefixes: densely near the start, then a stride */
	for (size_t l = 0; l < len;
	     l += l < 2048 ? head_step : 1 + len / strides) {
		copy = lp_xmalloc(l ? l : 1); /* exact size for ASan */
		memcpy(copy, boot, l);
		try_load(copy, l, &ok, &bad);
		free(copy);
	}
	copy = lp_xmalloc(len);
	for (unsigned i = 0; i < flips; i++) {
		unsigned n = 1 + next_rand() % 4;

		memcpy(copy, boot, len);
		for (unsigned k = 0; k < n; k++) {
			size_t at = next_rand() % len;

			/* bias toward the superblocks and tables */
			if (k == 0 && (next_rand() & 1))
				at = next_rand() % (len < 20480 ? len : 20480);
			copy[at] = (uint8_t)next_rand();
		}
		try_load(copy, len, &ok, &bad);
	}
	free(copy);
	printf("%s: %u truncated/corrupted variants loaded, %u rejected\n",
	       name, ok, bad);
}

static void test_robustness(void)
{
	const char *names[] = { "sha256-nocompress-repeatable",
				"blake3-lz4_block-non_repeatable",
				"rafs-v6-2.2.boot" };
	struct lp_err err = { 0 };
	size_t len;
	uint8_t *d;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		d = read_all(ref(names[i]), &len);
		test_robust(names[i], d, len, 1, 1500, 2000);
		free(d);
	}
	d = extract_layer(ref("layers/v6-bootstrap-chunk-pos-438272.tar.gz"),
			  &len, &err);
	if (d)
		test_robust("v6 layer", d, len, 16, 150, 150);
	free(d);
	d = extract_layer(ref("layers/v5-bootstrap-file-size-736032.tar.gz"),
			  &len, &err);
	if (d)
		test_robust("v5 layer", d, len, 16, 150, 150);
	free(d);
}

/* ---- chunk decoding ------------------------------------------------------ */

static void test_decode(void)
{
	uint8_t data[10000], comp[12000], out[10000];
	struct model_chunk c = { .len = sizeof(data) };
	struct lp_err err = { 0 };
	size_t n;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 / 13);
	lp_sha256(data, sizeof(data), c.digest);
	c.digest_alg = MODEL_DIGEST_SHA256;

	c.codec = MODEL_CODEC_NONE;
	CHECK(rafs_decode_chunk(&c, data, sizeof(data), out, &err) == 0 &&
	      !memcmp(out, data, sizeof(data)));
	CHECK(rafs_decode_chunk(&c, data, 100, out, &err) == -EBADMSG);

	c.codec = MODEL_CODEC_RAFS_ZSTD;
	n = ZSTD_compress(comp, sizeof(comp), data, sizeof(data), 3);
	CHECK(!ZSTD_isError(n));
	memset(out, 0, sizeof(out));
	CHECK(rafs_decode_chunk(&c, comp, n, out, NULL) == 0 &&
	      model_chunk_verify(&c, out, NULL) == 0);
	comp[n / 2] ^= 0x55;
	lp_err_clear(&err);
	CHECK(rafs_decode_chunk(&c, comp, n, out, &err) < 0 ||
	      model_chunk_verify(&c, out, &err) == -EBADMSG);
	c.len = sizeof(data) - 1; /* frame longer than the chunk */
	comp[n / 2] ^= 0x55;
	CHECK(rafs_decode_chunk(&c, comp, n, out, &err) == -EBADMSG);
	c.len = sizeof(data);

#ifdef TEST_LZ4
	c.codec = MODEL_CODEC_RAFS_LZ4;
	n = (size_t)LZ4_compress_default((const char *)data, (char *)comp,
					 sizeof(data), sizeof(comp));
	memset(out, 0, sizeof(out));
	CHECK(rafs_decode_chunk(&c, comp, n, out, NULL) == 0 &&
	      model_chunk_verify(&c, out, NULL) == 0);
	c.len = sizeof(data) + 1;
	lp_err_clear(&err);
	CHECK(rafs_decode_chunk(&c, comp, n, out, &err) == -EBADMSG);
	c.len = sizeof(data);
	CHECK(rafs_decode_chunk(&c, comp, n / 2, out, &err) == -EBADMSG);
#endif

	c.codec = MODEL_CODEC_RAFS_GZIP;
	{
		z_stream zs = { 0 };

		CHECK(deflateInit2(&zs, 6, Z_DEFLATED, 31, 8,
				   Z_DEFAULT_STRATEGY) == Z_OK);
		zs.next_in = data;
		zs.avail_in = sizeof(data);
		zs.next_out = comp;
		zs.avail_out = sizeof(comp);
		CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
		n = zs.total_out;
		deflateEnd(&zs);
	}
	memset(out, 0, sizeof(out));
	CHECK(rafs_decode_chunk(&c, comp, n, out, NULL) == 0 &&
	      model_chunk_verify(&c, out, NULL) == 0);
	CHECK(rafs_decode_chunk(&c, comp, n - 9, out, NULL) == -EBADMSG);

	c.codec = MODEL_CODEC_GZIP_MEMBER;
	CHECK(rafs_decode_chunk(&c, comp, n, out, NULL) == -EINVAL);
}

/* ---- synthetic v5 bootstraps ---------------------------------------------
 *
 * A minimal v5 writer for what the vectors lack: xattrs, devices, fifos,
 * sockets, and malformed trees.  Index 1 is the root; its children are
 * 2..n (one directory level is enough here).
 */

struct snode {
	const char *name;
	uint32_t mode;
	uint64_t ino; /* 0: its index */
	uint64_t size;
	const char *target;
	uint32_t rdev;
	const char *xattrs; /* "name\0value\0" pairs, "\0" ends */
	uint32_t nchunks;
	uint32_t chunk_flags;
	uint64_t chunk_off[3]; /* file offsets; sizes fill to the next */
	uint32_t gap;	       /* the first chunk is this much shorter */
	uint32_t child_index, child_count; /* dirs; root: 0 = 2..n */
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static size_t a8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static uint8_t *v5_build(const struct snode *nodes, uint32_t n,
			 const char *blob_id, size_t *ret_len)
{
	size_t cap = 1 << 20, pos;
	uint8_t *d = lp_xcalloc(1, cap);
	size_t bt_len = 8 + strlen(blob_id);

	put32(d, 0x52414653);
	put32(d + 4, 0x500);
	put32(d + 8, 8192);
	put32(d + 12, 1 << 20);
	put64(d + 16, 0x1 | 0x8 | 0x10 | 0x20); /* none, sha256, uid, xattr */
	put64(d + 24, n);
	put64(d + 32, 8192);
	put32(d + 56, n);
	pos = 8192 + a8(4 * n);
	put64(d + 40, pos); /* prefetch: none */
	put64(d + 48, pos);
	put32(d + 64, (uint32_t)bt_len);
	memcpy(d + pos + 8, blob_id, strlen(blob_id));
	pos += a8(bt_len);
	put32(d + 68, 1);
	put64(d + 72, pos);
	put32(d + pos, 8);		/* chunk count */
	put64(d + pos + 16, 1 << 20);	/* compressed size */
	pos += 64;
	for (uint32_t i = 0; i < n; i++) {
		const struct snode *s = &nodes[i];
		uint8_t *r = d + pos;
		size_t nl = strlen(s->name);
		uint64_t flags = 0;

		put32(d + 8192 + 4 * i, (uint32_t)(pos >> 3));
		put64(r + 32, i ? 1 : 0);
		put64(r + 40, s->ino ? s->ino : i + 1);
		put32(r + 48, 1000);
		put32(r + 52, 100);
		put32(r + 60, s->mode);
		put64(r + 64, s->target ? strlen(s->target) : s->size);
		put32(r + 88, 1);
		if (i == 0) {
			put32(r + 92, s->child_index ? s->child_index : 2);
			put32(r + 96, s->child_count ? s->child_count : n - 1);
		} else if (S_ISDIR(s->mode)) {
			put32(r + 92, s->child_index);
			put32(r + 96, s->child_count);
		} else if (S_ISREG(s->mode)) {
			put32(r + 96, s->nchunks);
		}
		r[100] = (uint8_t)nl;
		if (s->target)
			r[102] = (uint8_t)strlen(s->target);
		put32(r + 104, s->rdev);
		put64(r + 112, 1600000000 + i);
		pos += 128;
		memcpy(d + pos, s->name, nl);
		pos += a8(nl);
		if (s->target) {
			flags |= 0x1;
			memcpy(d + pos, s->target, strlen(s->target));
			pos += a8(strlen(s->target));
		}
		if (s->xattrs) {
			size_t xs = 0, start = pos + 8;

			flags |= 0x4;
			for (const char *x = s->xattrs; *x;) {
				size_t kl = strlen(x), vl = strlen(x + kl + 1);

				put32(d + start + xs, (uint32_t)(kl + 1 + vl));
				memcpy(d + start + xs + 4, x, kl + 1 + vl);
				xs += 4 + kl + 1 + vl;
				x += kl + 1 + vl + 1;
			}
			put64(d + pos, xs);
			pos += 8 + a8(xs);
		}
		for (uint32_t k = 0; k < s->nchunks; k++) {
			uint8_t *c = d + pos;
			uint64_t end = k + 1 < s->nchunks ? s->chunk_off[k + 1]
							  : s->size;
			uint32_t sz = (uint32_t)(end - s->chunk_off[k]) -
				      (k ? 0 : s->gap);

			memset(c, 0xa0 + k, 32);
			put32(c + 36, s->chunk_flags);
			put32(c + 40, sz);
			put32(c + 44, sz);
			put64(c + 48, 4096 * k);
			put64(c + 56, 4096 * k);
			put64(c + 64, s->chunk_off[k]);
			put32(c + 72, k);
			pos += 80;
		}
		put64(r + 80, flags);
	}
	*ret_len = pos;
	return d;
}

static const struct snode base_tree[] = {
	{ .name = "/", .mode = S_IFDIR | 0755 },
	{ .name = "dev-b", .mode = S_IFBLK | 0600, .rdev = 0x10082c },
	{ .name = "dev-c", .mode = S_IFCHR | 0666, .rdev = 0x103 },
	{ .name = "fifo", .mode = S_IFIFO | 0644 },
	{ .name = "file", .mode = S_IFREG | 0640, .size = 5000,
	  .xattrs = "user.a\0" "1\0" "security.capability\0" "cap\0",
	  .nchunks = 2, .chunk_off = { 0, 4096 } },
	{ .name = "hard", .mode = S_IFREG | 0640, .ino = 5, .size = 5000,
	  .nchunks = 2, .chunk_off = { 0, 4096 } },
	{ .name = "sock", .mode = S_IFSOCK | 0755 },
	{ .name = "sym", .mode = S_IFLNK | 0777, .target = "file" },
	{ .name = "sub", .mode = S_IFDIR | 0700 },
};

static void synth_fail(struct snode *t, uint32_t n, const char *blob_id,
		       int code, const char *msg)
{
	size_t len;
	uint8_t *d = v5_build(t, n, blob_id, &len);

	expect_fail(d, len, code, msg);
	free(d);
}

static void test_synthetic(void)
{
	struct snode t[ARRAY_SIZE(base_tree)];
	const uint32_t n = ARRAY_SIZE(base_tree);
	struct buf got = { 0 };
	struct model *m;
	size_t len;
	uint8_t *d;

	memcpy(t, base_tree, sizeof(t));
	d = v5_build(t, n, "0123abcd", &len);
	m = load(d, len, NULL);
	free(d);
	CHECK(m != NULL);
	if (m) {
		model_walk(m, list_cb, &got);
		static const char want[] =
			"/ dir 0755 1000:100 mtime=1600000000 nlink=3\n"
			"/dev-b block 0600 1000:100 mtime=1600000001 nlink=1 "
			"rdev=8,300\n"
			"/dev-c char 0666 1000:100 mtime=1600000002 nlink=1 "
			"rdev=1,3\n"
			"/fifo fifo 0644 1000:100 mtime=1600000003 nlink=1\n"
			"/file reg 0640 1000:100 mtime=1600000004 nlink=2 "
			"size=5000 chunks=2:e994bf6f751510a2 "
			"xattr:security.capability=636170 xattr:user.a=31\n"
			"/hard reg 0640 1000:100 hardlink=/file\n"
			"/sock sock 0755 1000:100 mtime=1600000006 nlink=1\n"
			"/sub dir 0700 1000:100 mtime=1600000008 nlink=2\n"
			"/sym symlink 0777 1000:100 mtime=1600000007 nlink=1 "
			"-> file\n";
		CHECK(got.len == strlen(want) && !strcmp(got.s, want));
		if (strcmp(got.s, want))
			fprintf(stderr, "synthetic:\n%s", got.s);
		free(got.s);
		uint32_t f = model_lookup_path(m, "/file");
		CHECK(f && m->inodes[f].count == 2 &&
		      m->chunks[m->inodes[f].first + 1].file_off == 4096 &&
		      m->chunks[m->inodes[f].first + 1].len == 904);
		model_free(m);
	}

	/* unsafe blob ids never reach a --blob-dir path */
	synth_fail(t, n, "../../etc/passwd", EINVAL, "bad byte 0x2f");
	synth_fail(t, n, "..", EINVAL, "blob id \"..\"");
	/* names */
	t[2].name = "a/b";
	synth_fail(t, n, "b", EINVAL, "bad child name \"a/b\"");
	t[2].name = "..";
	synth_fail(t, n, "b", EINVAL, "bad child name \"..\"");
	memcpy(t, base_tree, sizeof(t));
	/* a directory whose children point back up */
	t[8].child_index = 2;
	t[8].child_count = 1;
	synth_fail(t, n, "b", EINVAL, "children [2, 3) outside (9, 9]");
	memcpy(t, base_tree, sizeof(t));
	/* a hole (v5 HAS_HOLE): not representable in the model yet */
	t[4].gap = 100;
	synth_fail(t, n, "b", EINVAL, "leaves a gap");
	memcpy(t, base_tree, sizeof(t));
	/* compressed chunk in a blob without compressor */
	t[4].chunk_flags = 0x1;
	synth_fail(t, n, "b", EINVAL, "its blob has no compressor");
	t[4].chunk_flags = 0x4;
	synth_fail(t, n, "b", EOPNOTSUPP, "encrypted chunks");
	t[4].chunk_flags = 0x8;
	synth_fail(t, n, "b", EOPNOTSUPP, "batch chunks");
	memcpy(t, base_tree, sizeof(t));
	/* a hardlinked directory */
	t[8].ino = 1;
	synth_fail(t, n, "b", EINVAL, "directory inode 1 appears twice");
	memcpy(t, base_tree, sizeof(t));
	/* a symlink without a target */
	t[7].target = NULL;
	synth_fail(t, n, "b", EINVAL, "symlink without a target");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s REFDIR [GOLDENDIR]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "--write-seed") && argc > 2) {
		/* the synthetic bootstrap, as a fuzzing seed */
		size_t len;
		uint8_t *d = v5_build(base_tree, ARRAY_SIZE(base_tree),
				      "0123abcd", &len);
		FILE *f = fopen(argv[2], "wb");

		if (!f || fwrite(d, 1, len, f) != len || fclose(f))
			return 1;
		free(d);
		return 0;
	}
	refdir = argv[1];
	golddir = argc > 2 ? argv[2] : NULL;
	test_repeatable("sha256-nocompress-repeatable", MODEL_DIGEST_SHA256,
			0x9);
	test_repeatable("blake3-lz4_block-non_repeatable", MODEL_DIGEST_BLAKE3,
			0x5);
	test_v6_22();
	test_toc_blob();
	test_blob_meta();
	test_layers();
	test_ops();
	test_invalid();
	test_decode();
	test_synthetic();
	test_robustness();
	printf("%d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
