// SPDX-License-Identifier: Apache-2.0
/*
 * formats/estargz: footers, TOC parsing, chunk decoding, on the two
 * reference blobs written by the upstream library (testdata/reference/
 * estargz, directory given as argv[1]) and on in-memory bad inputs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include "formats/estargz/estargz.h"

static int failures, checks;

#define CHECK(cond)                                                            \
	do {                                                                   \
		checks++;                                                      \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n",           \
				__FILE__, __LINE__, #cond);                    \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_U64(a, b)                                                        \
	do {                                                                   \
		unsigned long long _a = (a), _b = (b);                         \
		checks++;                                                      \
		if (_a != _b) {                                                \
			fprintf(stderr, "%s:%d: %s = %llu, want %llu\n",       \
				__FILE__, __LINE__, #a, _a, _b);               \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *_a = (a), *_b = (b);                               \
		checks++;                                                      \
		if (!_a || strcmp(_a, _b)) {                                   \
			fprintf(stderr, "%s:%d: %s = \"%s\", want \"%s\"\n",   \
				__FILE__, __LINE__, #a, _a ? _a : "(null)",    \
				_b);                                           \
			failures++;                                            \
		}                                                              \
	} while (0)

#define ESGZ_TOC_DIGEST                                                        \
	"sha256:66f88caa8434e0b84f6c4051bde6e5dbed7a84aee96bc11233b01cc2213eaf04"
#define ZSTD_TOC_DIGEST                                                        \
	"sha256:031c6a21adcbae374dc728344e60ca46ffd22f0e6b38f332bf8b0107df9409b1"
#define BUSYBOX_DIGEST                                                         \
	"2cf9ef8515b8bfee79f3c5ed9db421a532bb6a3d1c00148c05dcebc8c88bf794"

struct blob {
	uint8_t *data;
	size_t size;
};

static struct blob read_blob(const char *dir, const char *name)
{
	char path[4096];
	struct blob b = { 0 };
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "cannot open %s\n", path);
		exit(1);
	}
	b.size = (size_t)st.st_size;
	b.data = lp_xmalloc(b.size ? b.size : 1);
	if (read(fd, b.data, b.size) != (ssize_t)b.size) {
		fprintf(stderr, "short read of %s\n", path);
		exit(1);
	}
	close(fd);
	return b;
}

/* Loads data with ops; returns the load result. */
static int load_mem(const struct format_ops *ops, const void *data,
		    size_t size, const char *toc_digest, struct model **ret,
		    struct format_ctx **ret_ctx, struct format_info *info,
		    struct lp_err *err)
{
	struct lp_source *src = lp_source_new_mem(data, size, "mem");
	struct format_hints h = { .toc_digest = toc_digest };
	int r;

	r = ops->load(src, &h, ret, ret_ctx, info, err);
	lp_source_free(src);
	return r;
}

static int probe_mem(const struct format_ops *ops, const void *data,
		     size_t size)
{
	struct lp_source *src = lp_source_new_mem(data, size, "mem");
	int r = ops->probe(src, NULL, NULL);

	lp_source_free(src);
	return r;
}

static int decode(const struct format_ops *ops, struct format_ctx *ctx,
		  const struct blob *b, const struct model_chunk *c,
		  uint8_t **ret, struct lp_err *err)
{
	uint8_t *out = lp_xmalloc(c->len ? c->len : 1);
	int r;

	if (c->comp_off > b->size || c->comp_len > b->size - c->comp_off) {
		free(out);
		return lp_err_set(err, EINVAL, "chunk outside the blob");
	}
	r = ops->decode_chunk(ctx, c, b->data + c->comp_off, c->comp_len, out,
			      err);
	if (r < 0) {
		free(out);
		return r;
	}
	*ret = out;
	return 0;
}

/* Decodes and verifies every chunk of every file; returns chunks seen. */
static unsigned verify_all(const struct format_ops *ops,
			   struct format_ctx *ctx, const struct model *m,
			   const struct blob *b)
{
	unsigned n = 0;

	for (uint32_t ino = 1; ino < m->n_inodes; ino++) {
		const struct model_inode *in = &m->inodes[ino];

		if ((in->mode & S_IFMT) != S_IFREG)
			continue;
		for (uint32_t k = in->first; k < in->first + in->count; k++) {
			const struct model_chunk *c = &m->chunks[k];
			struct lp_err err = { 0 };
			uint8_t *out = NULL;
			int r;

			CHECK(c->digest_alg == MODEL_DIGEST_SHA256);
			r = decode(ops, ctx, b, c, &out, &err);
			if (r < 0) {
				fprintf(stderr, "decode ino %u chunk %u: %s\n",
					ino, k, err.msg);
				failures++;
				continue;
			}
			r = model_chunk_verify(c, out, &err);
			if (r < 0) {
				fprintf(stderr, "verify ino %u chunk %u: %s\n",
					ino, k, err.msg);
				failures++;
			}
			free(out);
			n++;
		}
	}
	return n;
}

/* sha256 of a whole file, assembled from its chunks. */
static void file_digest(const struct format_ops *ops, struct format_ctx *ctx,
			const struct model *m, const struct blob *b,
			uint32_t ino, char hex[65])
{
	const struct model_inode *in = model_inode(m, ino);
	struct lp_sha256_ctx *h = lp_sha256_new();
	uint8_t dig[32];

	for (uint32_t k = in->first; k < in->first + in->count; k++) {
		uint8_t *out = NULL;

		if (decode(ops, ctx, b, &m->chunks[k], &out, NULL) == 0) {
			lp_sha256_update(h, out, m->chunks[k].len);
			free(out);
		}
	}
	lp_sha256_final(h, dig);
	lp_hex(dig, 32, hex);
}

/* Tree checks shared by every format of the reference layer. */
static void check_links_tree(const struct model *m)
{
	const struct model_inode *in;
	uint32_t bb, ino;

	bb = model_lookup_path(m, "bin/busybox");
	CHECK(bb != 0);
	in = model_inode(m, bb);
	if (!in)
		return;
	CHECK_U64(in->mode & S_IFMT, S_IFREG);
	CHECK_U64(in->mode & 07777, 0755);
	CHECK_U64(in->size, 70000);
	CHECK_U64(in->nlink, 6);
	CHECK_U64(in->mtime, 1622548800);
	CHECK_U64(in->count, 2);
	CHECK_U64(m->chunks[in->first].file_off, 0);
	CHECK_U64(m->chunks[in->first].len, 65536);
	CHECK_U64(m->chunks[in->first + 1].file_off, 65536);
	CHECK_U64(m->chunks[in->first + 1].len, 4464);

	/* hardlinks, chains and "./" targets are one inode */
	CHECK_U64(model_lookup_path(m, "bin/sh"), bb);
	CHECK_U64(model_lookup_path(m, "bin/ls"), bb);
	CHECK_U64(model_lookup_path(m, "bin/chain2"), bb);
	CHECK_U64(model_lookup_path(m, "bin/dotlink"), bb);
	CHECK_U64(model_lookup_path(m, "sbin/init"), bb);

	ino = model_lookup_path(m, "lib/libbig.so");
	in = model_inode(m, ino);
	CHECK(in != NULL);
	if (in) {
		CHECK_U64(in->size, 300000);
		CHECK_U64(in->count, 5);
		CHECK_U64(in->nlink, 2);
		CHECK_U64(m->chunks[in->first + 4].len, 300000 - 262144);
	}
	in = model_inode(m, model_lookup_path(m, "lib64"));
	CHECK(in != NULL);
	if (in) {
		CHECK_U64(in->mode & S_IFMT, S_IFLNK);
		CHECK_STR(model_str(m, in->link), "lib");
	}
	/* a hardlink to a symlink is that symlink */
	in = model_inode(m, model_lookup_path(m, "etc/hl-to-symlink"));
	CHECK(in != NULL);
	if (in) {
		CHECK_U64(in->mode & S_IFMT, S_IFLNK);
		CHECK_STR(model_str(m, in->link), "../bin/busybox");
	}
	in = model_inode(m, model_lookup_path(m, "etc/empty"));
	CHECK(in != NULL);
	if (in) {
		CHECK_U64(in->size, 0);
		CHECK_U64(in->count, 0);
		CHECK_U64(in->nlink, 2);
	}
	/* landmarks are not layer content; sbin/ was synthesised */
	CHECK_U64(model_lookup_path(m, ESTARGZ_NO_PREFETCH_LANDMARK), 0);
	in = model_inode(m, model_lookup_path(m, "sbin"));
	CHECK(in != NULL);
	if (in)
		CHECK_U64(in->mode, S_IFDIR | 0755);
	CHECK_U64(m->n_blobs, 1);
}

static void test_reference_esgz(const char *dir)
{
	struct blob b = read_blob(dir, "links-esgz-c64k.tar.gz");
	struct format_info info = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	const struct model_inode *in;
	char hex[65];
	int r;

	CHECK_U64(b.size, 372728);
	CHECK(probe_mem(&estargz_ops, b.data, b.size) == 1);
	CHECK(probe_mem(&stargz_legacy_ops, b.data, b.size) == 0);
	CHECK(probe_mem(&zstdchunked_ops, b.data, b.size) == 0);

	r = load_mem(&estargz_ops, b.data, b.size, ESGZ_TOC_DIGEST, &m, &ctx,
		     &info, &err);
	if (r < 0) {
		fprintf(stderr, "load esgz: %s\n", err.msg);
		failures++;
		goto out;
	}
	CHECK_STR(info.format, "estargz");
	CHECK_STR(info.toc_digest, ESGZ_TOC_DIGEST);
	CHECK_U64(info.blob_size, 372728);
	CHECK_U64(info.toc_offset, 0x5ab42);
	CHECK_U64(info.toc_comp_len, 1155);
	CHECK_U64(info.toc_len, 5254);
	CHECK_U64(info.landmark, 2);
	CHECK_U64(info.prefetch_offset, 0);
	check_links_tree(m);

	/* extents: up to the next data offset, the last one up to the TOC */
	in = model_inode(m, model_lookup_path(m, "bin/busybox"));
	CHECK_U64(m->chunks[in->first].comp_off, 202);
	CHECK_U64(m->chunks[in->first].comp_len, 65579);
	CHECK_U64(m->chunks[in->first].codec, MODEL_CODEC_GZIP_MEMBER);
	CHECK_U64(m->chunks[in->first + 1].comp_off, 65781);
	CHECK_U64(m->chunks[in->first + 1].comp_len, 4776);
	in = model_inode(m, model_lookup_path(m, "etc/passwd"));
	CHECK_U64(m->chunks[in->first].comp_off, 371099);
	CHECK_U64(m->chunks[in->first].comp_len, 0x5ab42 - 371099);

	{
		uint64_t fast = estargz_gzip_fast_decodes;

		CHECK_U64(verify_all(&estargz_ops, ctx, m, &b), 2 + 5 + 1);
		/* the Go writer's members end where the next one starts,
		 * with at most a few tar headers past the chunk: every one
		 * is inflated whole */
		CHECK_U64(estargz_gzip_fast_decodes - fast, 2 + 5 + 1);
	}
	file_digest(&estargz_ops, ctx, m, &b,
		    model_lookup_path(m, "bin/busybox"), hex);
	CHECK_STR(hex, BUSYBOX_DIGEST);
	model_free(m);
	estargz_ops.destroy(ctx);
	m = NULL;
	ctx = NULL;

	/* a wrong expected TOC digest */
	lp_err_clear(&err);
	r = load_mem(&estargz_ops, b.data, b.size,
		     "sha256:0000000000000000000000000000000000000000000000000000000000000000",
		     &m, &ctx, &info, &err);
	CHECK(r == -EBADMSG);
	CHECK(strstr(err.msg, "digest") != NULL);
	lp_err_clear(&err);
	r = load_mem(&estargz_ops, b.data, b.size, "md5:abc", &m, &ctx, &info,
		     &err);
	CHECK(r == -EINVAL);
out:
	free(b.data);
}

static void test_reference_zstd(const char *dir)
{
	struct blob b = read_blob(dir, "links-zstdchunked-c64k.tar.zst");
	struct format_info info = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	const struct model_inode *in;
	char hex[65];
	int r;

	CHECK_U64(b.size, 372546);
	CHECK(probe_mem(&zstdchunked_ops, b.data, b.size) == 1);
	CHECK(probe_mem(&estargz_ops, b.data, b.size) == 0);
	CHECK(probe_mem(&stargz_legacy_ops, b.data, b.size) == 0);

	r = load_mem(&zstdchunked_ops, b.data, b.size, ZSTD_TOC_DIGEST, &m,
		     &ctx, &info, &err);
	if (r < 0) {
		fprintf(stderr, "load zstd: %s\n", err.msg);
		failures++;
		goto out;
	}
	CHECK_STR(info.format, "zstd:chunked");
	CHECK_STR(info.toc_digest, ZSTD_TOC_DIGEST);
	CHECK_U64(info.toc_offset, 371346);
	CHECK_U64(info.toc_comp_len, 1152);
	CHECK_U64(info.toc_len, 5254);
	CHECK_U64(info.landmark, 2);
	check_links_tree(m);

	in = model_inode(m, model_lookup_path(m, "bin/busybox"));
	CHECK_U64(m->chunks[in->first].comp_off, 215);
	CHECK_U64(m->chunks[in->first].comp_len, 65550);
	CHECK_U64(m->chunks[in->first].codec, MODEL_CODEC_ZSTD_FRAME);
	CHECK_U64(m->chunks[in->first + 1].comp_off, 65765);
	CHECK_U64(m->chunks[in->first + 1].comp_len, 70517 - 65765);
	/* the last data frame ends at the TOC's skippable frame header */
	in = model_inode(m, model_lookup_path(m, "etc/passwd"));
	CHECK_U64(m->chunks[in->first].comp_off +
			  m->chunks[in->first].comp_len,
		  371346 - 8);

	{
		uint64_t fast = estargz_zstd_fast_decodes;

		CHECK_U64(verify_all(&zstdchunked_ops, ctx, m, &b), 2 + 5 + 1);
		/* the writer's frames give their size: one call each */
		CHECK_U64(estargz_zstd_fast_decodes - fast, 2 + 5 + 1);
	}
	file_digest(&zstdchunked_ops, ctx, m, &b,
		    model_lookup_path(m, "bin/busybox"), hex);
	CHECK_STR(hex, BUSYBOX_DIGEST);

	/* a flipped byte: the decoder or the digest must catch it */
	{
		in = model_inode(m, model_lookup_path(m, "bin/busybox"));
		const struct model_chunk *c = &m->chunks[in->first];
		uint8_t *out = NULL;

		b.data[c->comp_off + 1000] ^= 0x40;
		lp_err_clear(&err);
		r = decode(&zstdchunked_ops, ctx, &b, c, &out, &err);
		if (r == 0) {
			r = model_chunk_verify(c, out, &err);
			free(out);
		}
		CHECK(r == -EBADMSG);
		b.data[c->comp_off + 1000] ^= 0x40;

		/* truncated frame */
		struct model_chunk t = *c;
		t.comp_len = 1000;
		lp_err_clear(&err);
		CHECK(decode(&zstdchunked_ops, ctx, &b, &t, &out, &err) ==
		      -EBADMSG);
		/* a frame that ends before len */
		t = *c;
		t.len = 70000;
		lp_err_clear(&err);
		CHECK(decode(&zstdchunked_ops, ctx, &b, &t, &out, &err) ==
		      -EBADMSG);
		CHECK(strstr(err.msg, "ends after 65536") != NULL);
	}
	model_free(m);
	zstdchunked_ops.destroy(ctx);
out:
	free(b.data);
}

/* The eStargz blob with a legacy 47-byte footer is a legacy stargz blob. */
static void test_legacy(const char *dir)
{
	struct blob b = read_blob(dir, "links-esgz-c64k.tar.gz");
	static const uint8_t legacy[47] = {
		0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0,
		'0', '0', '0', '0', '0', '0', '0', '0',
		'0', '0', '0', '5', 'a', 'b', '4', '2',
		'S', 'T', 'A', 'R', 'G', 'Z',
		0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	size_t size = b.size - 51 + 47;
	struct format_info info = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	int r;

	memcpy(b.data + b.size - 51, legacy, sizeof(legacy));
	CHECK(probe_mem(&stargz_legacy_ops, b.data, size) == 1);
	CHECK(probe_mem(&estargz_ops, b.data, size) == 0);
	r = load_mem(&stargz_legacy_ops, b.data, size, NULL, &m, &ctx, &info,
		     &err);
	if (r < 0) {
		fprintf(stderr, "load legacy: %s\n", err.msg);
		failures++;
		free(b.data);
		return;
	}
	CHECK_STR(info.format, "stargz");
	CHECK_STR(info.toc_digest, ESGZ_TOC_DIGEST);
	CHECK_U64(info.toc_offset, 0x5ab42);
	CHECK_U64(info.toc_comp_len, 1155);
	check_links_tree(m);
	b.size = size;
	CHECK_U64(verify_all(&stargz_legacy_ops, ctx, m, &b), 8);
	model_free(m);
	stargz_legacy_ops.destroy(ctx);
	free(b.data);
}

static void test_bad_blobs(const char *dir)
{
	struct blob b = read_blob(dir, "links-esgz-c64k.tar.gz");
	struct format_info info = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	struct lp_err err = { 0 };
	uint8_t *copy = lp_xmalloc(b.size);
	uint8_t *foot = copy + b.size - 51;
	int r;

#define RESET() memcpy(copy, b.data, b.size)

	/* corrupted magic */
	RESET();
	foot[32] = 'X';
	CHECK(probe_mem(&estargz_ops, copy, b.size) == 0);
	r = load_mem(&estargz_ops, copy, b.size, NULL, &m, &ctx, &info, &err);
	CHECK(r == -EINVAL);
	CHECK(strstr(err.msg, "STARGZ") != NULL);

	/* TOC offset past the end, and at the footer */
	RESET();
	memcpy(foot + 16, "00000000ffffffff", 16);
	lp_err_clear(&err);
	CHECK(load_mem(&estargz_ops, copy, b.size, NULL, &m, &ctx, &info,
		       &err) == -EINVAL);
	RESET();
	memcpy(foot + 16, "000000000005afc5", 16); /* = S - 51 */
	lp_err_clear(&err);
	CHECK(load_mem(&estargz_ops, copy, b.size, NULL, &m, &ctx, &info,
		       &err) == -EINVAL);
	/* an offset above INT64_MAX, and one with a non-hex digit */
	RESET();
	memcpy(foot + 16, "8000000000000000", 16);
	CHECK(probe_mem(&estargz_ops, copy, b.size) == 0);
	RESET();
	memcpy(foot + 16, "00000000000-5ab4", 16);
	CHECK(probe_mem(&estargz_ops, copy, b.size) == 0);
	/* the TOC offset moved into a data member: not a TOC header */
	RESET();
	memcpy(foot + 16, "00000000000000ca", 16);
	lp_err_clear(&err);
	r = load_mem(&estargz_ops, copy, b.size, NULL, &m, &ctx, &info, &err);
	CHECK(r == -EBADMSG);

	/* truncated blob: no footer at the end any more */
	CHECK(probe_mem(&estargz_ops, b.data, b.size - 10) == 0);
	CHECK(probe_mem(&estargz_ops, b.data, 20) == 0);
	CHECK(probe_mem(&zstdchunked_ops, b.data, 20) == 0);
	lp_err_clear(&err);
	CHECK(load_mem(&estargz_ops, b.data, 20, NULL, &m, &ctx, &info,
		       &err) == -EINVAL);
	CHECK(load_mem(&estargz_ops, b.data, 0, NULL, &m, &ctx, &info,
		       NULL) == -EINVAL);
	/* truncated TOC member: keep 500 of its bytes, then the footer */
	{
		size_t cut = 0x5ab42 + 500;

		RESET();
		memcpy(copy + cut, b.data + b.size - 51, 51);
		lp_err_clear(&err);
		r = load_mem(&estargz_ops, copy, cut + 51, NULL, &m, &ctx,
			     &info, &err);
		CHECK(r == -EBADMSG);
	}

	/* a flipped byte in busybox chunk 0 (stored deflate blocks) */
	r = load_mem(&estargz_ops, b.data, b.size, NULL, &m, &ctx, &info,
		     &err);
	CHECK(r == 0);
	if (r == 0) {
		const struct model_inode *in =
			model_inode(m, model_lookup_path(m, "bin/busybox"));
		const struct model_chunk *c = &m->chunks[in->first];
		struct blob cb = { copy, b.size };
		struct model_chunk t;
		uint8_t *out = NULL;

		RESET();
		copy[c->comp_off + 1000] ^= 0x01;
		lp_err_clear(&err);
		r = decode(&estargz_ops, ctx, &cb, c, &out, &err);
		CHECK(r == 0);
		if (r == 0) {
			lp_err_clear(&err);
			CHECK(model_chunk_verify(c, out, &err) == -EBADMSG);
			free(out);
		}
		/* the member ends before len; the member is cut short */
		RESET();
		t = *c;
		t.len = 65537;
		lp_err_clear(&err);
		CHECK(decode(&estargz_ops, ctx, &cb, &t, &out, &err) ==
		      -EBADMSG);
		t = *c;
		t.comp_len = 30000;
		lp_err_clear(&err);
		CHECK(decode(&estargz_ops, ctx, &cb, &t, &out, &err) ==
		      -EBADMSG);
		/* not a gzip member at all */
		t = *c;
		t.comp_off += 1;
		lp_err_clear(&err);
		CHECK(decode(&estargz_ops, ctx, &cb, &t, &out, &err) ==
		      -EBADMSG);
		model_free(m);
		estargz_ops.destroy(ctx);
	}
#undef RESET
	free(copy);
	free(b.data);
}

static void test_footers(void)
{
	uint8_t z[48] = { 0x50, 0x2a, 0x4d, 0x18, 40, 0, 0, 0 };
	struct estargz_footer f;

	memcpy(z + 40, "GnUlInUx", 8);
	/* TOC at 100, 20 bytes, blob of 200 */
	z[8] = 100;
	z[16] = 20;
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      0);
	CHECK_U64(f.toc_offset, 100);
	CHECK_U64(f.toc_comp_len, 20);
	CHECK_U64(f.data_end, 92);
	/* ends exactly at the footer, then one byte past it */
	CHECK(estargz_parse_footer(z, 48, 168, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      0);
	CHECK(estargz_parse_footer(z, 48, 167, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	/* offset + length wraps */
	memset(z + 16, 0xff, 7);
	z[23] = 0x7f;
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	memset(z + 16, 0, 8);
	z[16] = 20;
	/* no room for the skippable header, empty TOC, negative offset */
	z[8] = 4;
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	z[8] = 100;
	z[16] = 0;
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	z[16] = 20;
	z[15] = 0x80;
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	z[15] = 0;
	/* shorter than a footer */
	CHECK(estargz_parse_footer(z, 48, 47, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	CHECK(estargz_parse_footer(z, 47, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	/* a longer tail is fine: only its end counts */
	{
		uint8_t t[60] = { 0 };

		memcpy(t + 12, z, 48);
		CHECK(estargz_parse_footer(t, 60, 200, ESTARGZ_KIND_ZSTD, &f,
					   NULL) == 0);
	}
	z[47] = 'y';
	CHECK(estargz_parse_footer(z, 48, 200, ESTARGZ_KIND_ZSTD, &f, NULL) ==
	      -EINVAL);
	CHECK(estargz_parse_footer(z, 48, 200, 7, &f, NULL) == -EINVAL);
}

/* ---- TOC JSON --------------------------------------------------------- */

static const struct estargz_footer toc_gzip = {
	.kind = ESTARGZ_KIND_ESTARGZ, .data_end = 1000,
};
static const struct estargz_footer toc_zstd = {
	.kind = ESTARGZ_KIND_ZSTD, .data_end = 1000,
};

/* Parses json into a model; returns the first error. */
static int toc(const char *json, const struct estargz_footer *f,
	       struct model **ret, struct format_info *info,
	       struct lp_err *err)
{
	struct model_builder *b = model_builder_new(0);
	int r;

	lp_err_clear(err);
	r = model_builder_add_blob(b, "test", NULL, 1000, NULL, err);
	if (r == 0)
		r = estargz_parse_toc(json, strlen(json), f, b, info, err);
	if (r < 0) {
		model_builder_free(b);
		return r;
	}
	return model_builder_finish(b, ret, err);
}

/* Expects json to fail with code and a message containing msg. */
static void toc_fails(int line, const char *json, int code, const char *msg)
{
	struct lp_err err = { 0 };
	struct model *m = NULL;
	int r = toc(json, &toc_gzip, &m, NULL, &err);

	checks++;
	if (getenv("ESTARGZ_TEST_VERBOSE"))
		printf("%d: %s\n", r, err.msg);
	if (r != code || (msg && !strstr(err.msg, msg))) {
		fprintf(stderr,
			"%s:%d: toc: got %d \"%s\", want %d \"%s\"\n  %s\n",
			__FILE__, line, r, err.msg, code, msg ? msg : "",
			json);
		failures++;
	}
	model_free(m);
}
#define TOC_FAILS(json, code, msg) toc_fails(__LINE__, json, code, msg)

#define E(...) "{\"version\":1,\"entries\":[" __VA_ARGS__ "]}"
#define D16 "sha256:0000000000000000000000000000000000000000000000000000000000000000"

static void test_toc_errors(void)
{
	TOC_FAILS("", -EINVAL, "bad JSON");
	TOC_FAILS("[]", -EINVAL, "not a JSON object");
	TOC_FAILS("{\"entries\":{}}", -EINVAL, "not an array");
	TOC_FAILS("{\"version\":1}", -EINVAL, "no \"entries\" key");
	TOC_FAILS(E("1"), -EINVAL, "#0 is not an object");
	TOC_FAILS(E("{\"type\":\"dir\"}"), -EINVAL, "#0: no name");
	TOC_FAILS(E("{\"name\":\"a\"}"), -EINVAL, "\"a\": no type");
	TOC_FAILS(E("{\"name\":7,\"type\":\"dir\"}"), -EINVAL,
		  "name is not a string");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"socket\"}"), -EINVAL,
		  "unknown type \"socket\"");
	/* the message from the brief, word for word */
	TOC_FAILS(E("{\"name\":\"bin/sh\",\"type\":\"reg\",\"size\":10,"
		    "\"offset\":5,\"chunkOffset\":5,\"chunkSize\":9}"),
		  -EINVAL,
		  "toc entry \"bin/sh\": chunkOffset 5 + chunkSize 9 overflows file size 10");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":9223372036854775807,"
		    "\"offset\":5,\"chunkSize\":9223372036854775807},"
		    "{\"name\":\"a\",\"type\":\"chunk\",\"offset\":6,"
		    "\"chunkOffset\":9223372036854775807,"
		    "\"chunkSize\":9223372036854775807}"),
		  -EINVAL, "overflows file size");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":18446744073709551615}"),
		  -EINVAL, "bad JSON");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":-1}"), -EINVAL,
		  "\"a\": size -1 is negative");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":1.0}"), -EINVAL,
		  "\"a\": size is not an integer (fraction or exponent)");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":1e3}"), -EINVAL,
		  "fraction or exponent");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":\"1\"}"), -EINVAL,
		  "size is not a number");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"uid\":4294967296}"),
		  -EINVAL, "uid 4294967296 is larger than 4294967295");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"gid\":-1}"), -EINVAL,
		  "gid -1 is negative");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"block\",\"devMajor\":4294967296}"),
		  -EINVAL, "devMajor");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"mode\":-493}"), -EINVAL,
		  "mode");
	/* data at or after the TOC */
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":3,\"offset\":1000}"),
		  -EINVAL, "offset 1000 is not before the TOC at 1000");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":3,"
		    "\"offset\":10,\"chunkSize\":1},"
		    "{\"name\":\"a\",\"type\":\"chunk\",\"offset\":5000,"
		    "\"chunkOffset\":1}"),
		  -EINVAL, "offset 5000 is not before the TOC");
	/* chunks without a file */
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"chunk\",\"offset\":5}"), -EINVAL,
		  "chunk does not follow a regular file");
	TOC_FAILS(E("{\"name\":\"d\",\"type\":\"dir\"},"
		    "{\"name\":\"d\",\"type\":\"chunk\",\"offset\":5}"),
		  -EINVAL, "chunk does not follow a regular file");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":3,"
		    "\"offset\":10,\"chunkSize\":1},"
		    "{\"name\":\"a\",\"type\":\"chunk\",\"offset\":20,"
		    "\"chunkOffset\":4}"),
		  -EINVAL, "chunkOffset 4 is past file size 3");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":3,"
		    "\"offset\":10,\"chunkOffset\":4}"),
		  -EINVAL, "chunkOffset 4 is past file size 3");
	/* overlapping and missing chunks: the builder's tiling check */
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":10,"
		    "\"offset\":10,\"chunkSize\":6},"
		    "{\"name\":\"a\",\"type\":\"chunk\",\"offset\":20,"
		    "\"chunkOffset\":4}"),
		  -EINVAL, "overlaps");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":10,"
		    "\"offset\":10,\"chunkSize\":6}"),
		  -EINVAL, "cover 6 of 10");
	/* xattrs and digests */
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":{\"user.x\":\"!!!!\"}}"),
		  -EINVAL, "xattr user.x is not base64");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":{\"user.x\":1}}"),
		  -EINVAL, "xattr user.x is not a string");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":[]}"), -EINVAL,
		  "xattrs is not an object");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"offset\":5,"
		    "\"chunkDigest\":\"sha256:xyz\"}"),
		  -EINVAL, "bad chunkDigest \"sha256:xyz\"");
	TOC_FAILS(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"offset\":5,"
		    "\"innerOffset\":7}"),
		  -EOPNOTSUPP, "innerOffset");
	/* hardlinks: the builder resolves, and rejects a missing target */
	TOC_FAILS(E("{\"name\":\"h\",\"type\":\"hardlink\"}"), -EINVAL,
		  "hardlink without linkName");
	TOC_FAILS(E("{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"nope\"}"),
		  -EINVAL, NULL);
	/* a name escaping the root: the builder decides */
	TOC_FAILS(E("{\"name\":\"../x\",\"type\":\"dir\"}"), -EINVAL, NULL);
	/* a NUL inside a name is not even valid for jansson */
	TOC_FAILS(E("{\"name\":\"a\\u0000b\",\"type\":\"dir\"}"), -EINVAL,
		  "bad JSON");
	/* a long name is cut in the message */
	TOC_FAILS(E("{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaa\",\"type\":\"reg\",\"size\":-1}"),
		  -EINVAL, "aaa...\": size -1");
}

static void test_toc_ok(void)
{
	struct format_info info = { 0 };
	struct lp_err err = { 0 };
	struct model *m = NULL;
	const struct model_inode *in;
	uint32_t ino;
	int r;

	/* chunk fill-in, extents, digests, key case, duplicates */
	r = toc(E("{\"name\":\"./\",\"type\":\"dir\",\"mode\":16877,\"uid\":4294967295},"
		  "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
		  "\"chunkSize\":4,\"digest\":\"" D16 "\","
		  "\"modtime\":\"2021-06-01T12:00:00Z\",\"mode\":33261},"
		  "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":4,"
		  "\"chunkDigest\":\"" D16 "\"},"
		  "{\"NAME\":\"g\",\"Type\":\"reg\",\"SIZE\":5,\"Offset\":300,"
		  "\"digest\":\"" D16 "\",\"modtime\":\"garbage\"},"
		  "{\"name\":\"h\",\"type\":\"reg\",\"size\":5,\"offset\":400,"
		  "\"name\":\"dup-key\",\"unknown\":{\"x\":[1,2]}},"
		  "{\"name\":\"/abs/./x/../y\",\"type\":\"fifo\",\"userName\":\"u\"},"
		  "{\"name\":\"caf\\u00e9\\ud83d\\ude00\",\"type\":\"char\","
		  "\"devMajor\":1,\"devMinor\":3,\"uid\":null},"
		  "{\"name\":\"x\",\"type\":\"dir\",\"xattrs\":{\"user.a\":\"aGVsbG8=\","
		  "\"user.e\":\"\"}},"
		  "{\"name\":\"x\",\"type\":\"symlink\",\"linkName\":\"f\"},"
		  "{\"name\":\"fl\",\"type\":\"hardlink\",\"linkName\":\"./later\"},"
		  "{\"name\":\"later\",\"type\":\"reg\",\"size\":1,\"offset\":500,"
		  "\"chunkDigest\":\"" D16 "\"}"),
		&toc_zstd, &m, &info, &err);
	if (r < 0) {
		fprintf(stderr, "toc ok: %s\n", err.msg);
		failures++;
		return;
	}
	CHECK_U64(info.landmark, 0);
	in = model_inode(m, MODEL_ROOT_INO);
	CHECK_U64(in->mode, S_IFDIR | 0755);
	CHECK_U64(in->uid, 4294967295u);

	ino = model_lookup_path(m, "f");
	in = model_inode(m, ino);
	CHECK(in != NULL);
	if (in) {
		const struct model_chunk *c = &m->chunks[in->first];

		CHECK_U64(in->mode, S_IFREG | 0755);
		CHECK_U64(in->mtime, 1622548800);
		CHECK_U64(in->count, 2);
		CHECK_U64(c[0].len, 4);
		CHECK_U64(c[0].comp_off, 100);
		CHECK_U64(c[0].comp_len, 100);
		CHECK_U64(c[0].codec, MODEL_CODEC_ZSTD_FRAME);
		/* digest is the whole file's: not usable for chunk 0 */
		CHECK_U64(c[0].digest_alg, MODEL_DIGEST_NONE);
		CHECK_U64(c[1].file_off, 4);
		CHECK_U64(c[1].len, 6);
		CHECK_U64(c[1].comp_len, 100);
		CHECK_U64(c[1].digest_alg, MODEL_DIGEST_SHA256);
	}
	in = model_inode(m, model_lookup_path(m, "g"));
	CHECK(in != NULL);
	if (in) {
		const struct model_chunk *c = &m->chunks[in->first];

		CHECK_U64(in->mtime, 0);
		CHECK_U64(in->count, 1);
		/* single-chunk file: digest stands in for chunkDigest */
		CHECK_U64(c->digest_alg, MODEL_DIGEST_SHA256);
		CHECK_U64(c->comp_len, 100);
	}
	/* the last "name" key wins */
	CHECK_U64(model_lookup_path(m, "h"), 0);
	in = model_inode(m, model_lookup_path(m, "dup-key"));
	CHECK(in != NULL);
	if (in)
		CHECK_U64(m->chunks[in->first].digest_alg, MODEL_DIGEST_NONE);
	in = model_inode(m, model_lookup_path(m, "abs/y"));
	CHECK(in != NULL);
	if (in)
		CHECK_U64(in->mode & S_IFMT, S_IFIFO);
	in = model_inode(m, model_lookup_path(m, "caf\xc3\xa9\xf0\x9f\x98\x80"));
	CHECK(in != NULL);
	if (in) {
		CHECK_U64(in->mode & S_IFMT, S_IFCHR);
		CHECK_U64(in->rdev_major, 1);
		CHECK_U64(in->rdev_minor, 3);
	}
	/* the later "x" (a symlink) replaced the directory */
	in = model_inode(m, model_lookup_path(m, "x"));
	CHECK(in != NULL);
	if (in)
		CHECK_U64(in->mode & S_IFMT, S_IFLNK);
	/* a forward hardlink */
	CHECK(model_lookup_path(m, "fl") != 0);
	CHECK_U64(model_lookup_path(m, "fl"), model_lookup_path(m, "later"));
	in = model_inode(m, model_lookup_path(m, "later"));
	if (in) {
		CHECK_U64(in->nlink, 2);
		/* the last data entry runs to the end of the data area */
		CHECK_U64(m->chunks[in->first].comp_len, 1000 - 500);
	}
	model_free(m);
	m = NULL;

	/* xattrs: base64 decoded, empty values kept */
	r = toc(E("{\"name\":\"x\",\"type\":\"dir\",\"xattrs\":{\"user.a\":\"aGVsbG8=\","
		  "\"user.e\":\"\"}}"),
		&toc_gzip, &m, &info, &err);
	CHECK(r == 0);
	if (r == 0) {
		in = model_inode(m, model_lookup_path(m, "x"));
		CHECK(in != NULL);
		CHECK_U64(in->xattr_count, 2);
		for (uint32_t i = 0; in && i < in->xattr_count; i++) {
			const struct model_xattr *x =
				&m->xattrs[in->xattr_first + i];

			if (!strcmp(model_str(m, x->name), "user.a")) {
				CHECK_U64(x->value_len, 5);
				CHECK(!memcmp(model_str(m, x->value), "hello",
					      5));
			} else {
				CHECK_STR(model_str(m, x->name), "user.e");
				CHECK_U64(x->value_len, 0);
			}
		}
		model_free(m);
		m = NULL;
	}

	/* landmarks: recorded, not in the tree; their chunks skipped */
	r = toc(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":2,\"offset\":10},"
		  "{\"name\":\"./.prefetch.landmark\",\"type\":\"reg\",\"size\":1,"
		  "\"offset\":50},"
		  "{\"name\":\".prefetch.landmark\",\"type\":\"chunk\",\"offset\":60,"
		  "\"chunkOffset\":0},"
		  "{\"name\":\"d/.prefetch.landmark\",\"type\":\"reg\"},"
		  "{\"name\":\"b\",\"type\":\"reg\",\"size\":2,\"offset\":70}"),
		&toc_gzip, &m, &info, &err);
	CHECK(r == 0);
	if (r == 0) {
		CHECK_U64(info.landmark, 1);
		CHECK_U64(info.prefetch_offset, 50);
		CHECK_U64(model_lookup_path(m, ".prefetch.landmark"), 0);
		/* only at the root */
		CHECK(model_lookup_path(m, "d/.prefetch.landmark") != 0);
		in = model_inode(m, model_lookup_path(m, "a"));
		CHECK_U64(m->chunks[in->first].comp_len, 40);
		CHECK_U64(m->chunks[in->first].codec, MODEL_CODEC_GZIP_MEMBER);
		model_free(m);
		m = NULL;
	}
	/* .no.prefetch.landmark wins over .prefetch.landmark */
	r = toc(E("{\"name\":\".prefetch.landmark\",\"type\":\"reg\",\"size\":1,"
		  "\"offset\":50},"
		  "{\"name\":\".no.prefetch.landmark\",\"type\":\"reg\",\"size\":1,"
		  "\"offset\":10},"
		  "{\"name\":\".wh.gone\",\"type\":\"reg\"}"),
		&toc_gzip, &m, &info, &err);
	CHECK(r == 0);
	if (r == 0) {
		CHECK_U64(info.landmark, 2);
		CHECK_U64(info.prefetch_offset, 0);
		/* whiteouts are plain files at this level */
		CHECK(model_lookup_path(m, ".wh.gone") != 0);
		model_free(m);
		m = NULL;
	}
}

/* A ustar header for the TOC entry claiming size bytes. */
static void toc_tar_header(uint8_t h[512], const char *name, uint64_t size)
{
	unsigned sum = 0;

	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000000", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	memcpy(h + 136, "00000000000", 12);
	h[156] = '0';
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

static uint8_t *gzip_mem(const void *a, size_t alen, const void *b,
			 size_t blen, size_t *ret_len)
{
	size_t cap = compressBound(alen + blen) + 64;
	uint8_t *out = lp_xmalloc(cap);
	z_stream z = { 0 };

	deflateInit2(&z, 6, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	z.next_in = (Bytef *)a;
	z.avail_in = (uInt)alen;
	deflate(&z, Z_NO_FLUSH);
	z.next_in = (Bytef *)b;
	z.avail_in = (uInt)blen;
	CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
	*ret_len = z.total_out;
	deflateEnd(&z);
	return out;
}

/* TOCs above the initial buffer size, in both codecs, and lying sizes. */
static void test_big_toc(void)
{
	struct estargz_footer gf = { .kind = ESTARGZ_KIND_ESTARGZ };
	struct estargz_footer zf = { .kind = ESTARGZ_KIND_ZSTD };
	size_t n = 100000, cap = 64 * n + 64, len = 0, clen, jlen;
	char *json = lp_xmalloc(cap), *out = NULL;
	struct lp_err err = { 0 };
	struct model *m = NULL;
	uint8_t hdr[512], *comp;
	int r;

	len += (size_t)snprintf(json + len, cap - len, "{\"entries\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(json + len, cap - len,
					"%s{\"name\":\"d/%06zu\",\"type\":\"dir\"}",
					i ? "," : "", i);
	len += (size_t)snprintf(json + len, cap - len, "]}");
	CHECK(len > (2u << 20));

	toc_tar_header(hdr, ESTARGZ_TOC_TAR_NAME, len);
	comp = gzip_mem(hdr, 512, json, len, &clen);
	r = estargz_decompress_toc(&gf, comp, clen, &out, &jlen, &err);
	CHECK(r == 0);
	if (r == 0) {
		CHECK_U64(jlen, len);
		CHECK(!memcmp(out, json, len));
		CHECK(toc(out, &toc_gzip, &m, NULL, &err) == 0);
		if (m)
			CHECK_U64(m->n_inodes, 1 + 2 + n);
		model_free(m);
		free(out);
		out = NULL;
	}
	/* the member ends early: cut its compressed bytes in half */
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&gf, comp, clen / 2, &out, &jlen, &err) ==
	      -EBADMSG);
	free(comp);

	/* a header claiming 200 MiB, with 5 bytes behind it */
	toc_tar_header(hdr, ESTARGZ_TOC_TAR_NAME, 200u << 20);
	comp = gzip_mem(hdr, 512, "{}   ", 5, &clen);
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&gf, comp, clen, &out, &jlen, &err) ==
	      -EBADMSG);
	free(comp);
	/* over the cap, or the wrong name */
	toc_tar_header(hdr, ESTARGZ_TOC_TAR_NAME, ESTARGZ_TOC_MAX_JSON + 1);
	comp = gzip_mem(hdr, 512, "{}", 2, &clen);
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&gf, comp, clen, &out, &jlen, &err) ==
	      -EFBIG);
	free(comp);
	toc_tar_header(hdr, "./" ESTARGZ_TOC_TAR_NAME, 2);
	comp = gzip_mem(hdr, 512, "{}", 2, &clen);
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&gf, comp, clen, &out, &jlen, &err) ==
	      -EBADMSG);
	hdr[200] ^= 1; /* checksum */
	free(comp);
	comp = gzip_mem(hdr, 512, "{}", 2, &clen);
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&gf, comp, clen, &out, &jlen, &err) ==
	      -EBADMSG);
	CHECK(strstr(err.msg, "checksum") != NULL);
	free(comp);

	/* zstd: no usable length hint, and a lying one */
	comp = lp_xmalloc(ZSTD_compressBound(len));
	clen = ZSTD_compress(comp, ZSTD_compressBound(len), json, len, 3);
	CHECK(!ZSTD_isError(clen));
	for (int k = 0; k < 3; k++) {
		zf.toc_len_hint = k == 0 ? 0 : k == 1 ? 7 : (1ull << 40);
		lp_err_clear(&err);
		r = estargz_decompress_toc(&zf, comp, clen, &out, &jlen, &err);
		CHECK(r == 0);
		if (r == 0) {
			CHECK_U64(jlen, len);
			CHECK(!memcmp(out, json, len));
			free(out);
			out = NULL;
		}
	}
	lp_err_clear(&err);
	CHECK(estargz_decompress_toc(&zf, comp, clen - 1, &out, &jlen, &err) ==
	      -EBADMSG);
	CHECK(estargz_decompress_toc(&zf, comp, 0, &out, &jlen, NULL) ==
	      -EBADMSG);
	free(comp);
	free(json);
}

static void test_time(void)
{
	int64_t t = -1;

	CHECK(estargz_parse_time("1970-01-01T00:00:00Z", 20, &t) == 0);
	CHECK_U64(t, 0);
	CHECK(estargz_parse_time("2021-06-01T12:00:00Z", 20, &t) == 0);
	CHECK_U64(t, 1622548800);
	CHECK(estargz_parse_time("2021-06-01T14:00:00.123+02:00", 29, &t) ==
	      0);
	CHECK_U64(t, 1622548800);
	CHECK(estargz_parse_time("2000-02-29T00:00:00Z", 20, &t) == 0);
	CHECK_U64(t, 951782400);
	CHECK(estargz_parse_time("1969-12-31T23:59:59Z", 20, &t) == 0);
	CHECK(t == -1);
	CHECK(estargz_parse_time("0001-01-01T00:00:00Z", 20, &t) == 0);
	CHECK(t == -62135596800ll);
	CHECK(estargz_parse_time("2001-02-29T00:00:00Z", 20, &t) < 0);
	CHECK(estargz_parse_time("2021-06-01 12:00:00Z", 20, &t) < 0);
	CHECK(estargz_parse_time("2021-06-01T12:00:00", 19, &t) < 0);
	CHECK(estargz_parse_time("2021-06-01T12:00:00Zjunk", 24, &t) < 0);
	CHECK(estargz_parse_time("2021-06-01T12:00:00.Z", 21, &t) < 0);
	CHECK(estargz_parse_time("2021-13-01T12:00:00Z", 20, &t) < 0);
	CHECK(estargz_parse_time("2021-06-01T12:00:00+0200", 24, &t) < 0);
}

/*
 * gzip chunks: libdeflate inflates a member whole when it ends at most
 * 64 KiB past the chunk and its trailer's size, when stored ends with it,
 * does not lie; every other member goes through zlib.  Both must give the
 * chunk's bytes, whichever is taken.
 */
static size_t gz_member(const uint8_t *data, size_t len, uint8_t *out,
			size_t cap)
{
	z_stream z = { 0 };
	size_t n;

	deflateInit2(&z, 6, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
	n = z.total_out;
	deflateEnd(&z);
	return n;
}

/* Decodes stored as a chunk of len bytes of codec: the bytes must be
 * plain's, and the fast path (counted by *fast) taken when want_fast. */
static void decode_case(int line, enum model_codec codec, const uint8_t *stored,
			size_t stored_len, const uint8_t *plain, size_t len,
			const uint64_t *fast, bool want_fast)
{
	struct model_chunk c = { .len = len, .codec = codec };
	uint8_t *out = lp_xmalloc(len);
	struct lp_err err = { 0 };
	uint64_t before = *fast;
	int r;

	memset(out, 0xee, len);
	r = estargz_ops.decode_chunk(NULL, &c, stored, stored_len, out, &err);
	if (r < 0 || memcmp(out, plain, len) || (*fast > before) != want_fast) {
		fprintf(stderr, "line %d: len %zu, %zu stored: r %d (%s), "
			"bytes %s, fast %d\n", line, len, stored_len, r,
			err.msg, memcmp(out, plain, len) ? "differ" : "same",
			*fast > before);
		failures++;
	}
	checks++;
	free(out);
}

/* a gzip member of len + tail bytes, with junk after it */
static void gz_case(int line, const uint8_t *plain, size_t len, size_t tail,
		    size_t junk, int lie, bool want_fast)
{
	size_t cap = len + tail + 65536 + junk;
	uint8_t *stored = lp_xmalloc(cap);
	size_t n = gz_member(plain, len + tail, stored, cap);

	if (lie) /* the trailer's size says there is no tail */
		memcpy(stored + n - 4, &(uint32_t){ (uint32_t)len }, 4);
	memset(stored + n, 0x1f, junk); /* stored runs past the member */
	decode_case(line, MODEL_CODEC_GZIP_MEMBER, stored, n + junk, plain,
		    len, &estargz_gzip_fast_decodes, want_fast);
	free(stored);
}

/* which decoder gives a good frame's chunk (the streaming one is left
 * for errors: zst_bad) */
enum zst_path { ZST_ONE_CALL, ZST_BLOCKWISE };

/* a zstd frame of len + tail bytes, its size in its header or not; its
 * length (0 if it could not be made) */
static size_t zst_frame(const uint8_t *plain, size_t len, size_t tail,
			bool size_in_header, uint8_t *stored, size_t cap)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t n;

	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, size_in_header);
	n = ZSTD_compress2(z, stored, cap, plain, len + tail);
	ZSTD_freeCCtx(z);
	CHECK(!ZSTD_isError(n));
	return ZSTD_isError(n) ? 0 : n;
}

/* zst_frame() with junk after it, decoded by the path named */
static void zst_case(int line, const uint8_t *plain, size_t len, size_t tail,
		     size_t junk, bool size_in_header, enum zst_path path)
{
	size_t cap = ZSTD_compressBound(len + tail) + junk;
	uint8_t *stored = lp_xmalloc(cap);
	size_t n = zst_frame(plain, len, tail, size_in_header, stored, cap);
	uint64_t blockwise = estargz_zstd_blockwise_decodes;

	memset(stored + n, 0x28, junk); /* stored runs past the frame */
	decode_case(line, MODEL_CODEC_ZSTD_FRAME, stored, n + junk, plain,
		    len, &estargz_zstd_fast_decodes, path == ZST_ONE_CALL);
	if ((estargz_zstd_blockwise_decodes > blockwise) !=
	    (path == ZST_BLOCKWISE)) {
		fprintf(stderr, "line %d: blockwise %d, want %d\n", line,
			estargz_zstd_blockwise_decodes > blockwise,
			path == ZST_BLOCKWISE);
		failures++;
	}
	checks++;
	free(stored);
}

/* a frame without its size, cut or damaged: no path gives bytes */
static void zst_bad(const uint8_t *plain, size_t len)
{
	size_t cap = ZSTD_compressBound(len + 1024);
	uint8_t *stored = lp_xmalloc(cap), *out = lp_xmalloc(len);
	size_t n = zst_frame(plain, len, 0, false, stored, cap);
	struct model_chunk c = { .len = len, .codec = MODEL_CODEC_ZSTD_FRAME };
	struct lp_err err = { 0 };

	/* cut in its last block, and in its first */
	CHECK(estargz_ops.decode_chunk(NULL, &c, stored, n - 100, out,
				       &err) < 0);
	CHECK(strstr(err.msg, "truncated") != NULL);
	lp_err_clear(&err);
	CHECK(estargz_ops.decode_chunk(NULL, &c, stored, 40, out, &err) < 0);
	lp_err_clear(&err);
	/* a block's bytes damaged: the decoder fails or gives other bytes
	 * (the chunk digest, checked by the engine, catches those) */
	stored[n / 2] ^= 0x55;
	if (estargz_ops.decode_chunk(NULL, &c, stored, n, out, &err) == 0)
		CHECK(memcmp(out, plain, len) != 0);
	lp_err_clear(&err);
	/* the chunk is the whole frame, whose checksum is wrong */
	{
		ZSTD_CCtx *z = ZSTD_createCCtx();
		size_t k;

		ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0);
		ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
		k = ZSTD_compress2(z, stored, cap, plain, len);
		ZSTD_freeCCtx(z);
		CHECK(!ZSTD_isError(k) && k > 4);
		CHECK(estargz_ops.decode_chunk(NULL, &c, stored, k, out,
					       &err) == 0);
		stored[k - 1] ^= 0x5a;
		CHECK(estargz_ops.decode_chunk(NULL, &c, stored, k, out,
					       &err) < 0);
		lp_err_clear(&err);
		n = zst_frame(plain, len, 0, false, stored, cap);
	}
	/* the header's size is one byte short of the chunk, the frame
	 * running on past it (a tail): refused (the seed
	 * zstd-size-too-small of fuzz-estargz-chunk is the case only the
	 * blockwise path's own size checks catch) */
	{
		ZSTD_CCtx *z = ZSTD_createCCtx();
		size_t k, at;
		uint8_t fhd;

		ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 1);
		/* a window under the size: not a single segment, so the
		 * size is not the window too */
		ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, 17);
		k = ZSTD_compress2(z, stored, cap, plain, len + 1024);
		ZSTD_freeCCtx(z);
		fhd = stored[4];
		CHECK(!(fhd & 0x20));
		/* magic, descriptor, window (not single-segment), dict id */
		at = 5 + !(fhd & 0x20) + (size_t[]){ 0, 1, 2, 4 }[fhd & 3];
		CHECK(!ZSTD_isError(k) && (fhd >> 6) == 2);
		memcpy(stored + at, &(uint32_t){ (uint32_t)len - 1 }, 4);
		CHECK(ZSTD_getFrameContentSize(stored, k) == len - 1);
		CHECK(estargz_ops.decode_chunk(NULL, &c, stored, k, out,
					       &err) < 0);
		lp_err_clear(&err);
		n = zst_frame(plain, len, 0, false, stored, cap);
	}
	/* the frame ends before the chunk does */
	c.len = len + 1;
	free(out);
	out = lp_xmalloc(len + 1);
	stored[n / 2] ^= 0x55;
	CHECK(estargz_ops.decode_chunk(NULL, &c, stored, n, out, &err) < 0);
	CHECK(strstr(err.msg, "ends after") != NULL);
	free(out);
	free(stored);
}

/* gzip members and zstd frames, whichever path decodes them */
static void test_gzip_chunks(void)
{
	/* big is over the 256 KiB scratch bound, mid under it */
	size_t big = 300000, mid = 100000, n = big + 70000;
	uint8_t *plain = lp_xmalloc(n);
	uint32_t x = 12345;

	/* compressible but not trivial: text-like bytes */
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		plain[i] = (uint8_t)("abcdefgh \n"[(x >> 16) % 10]);
	}
	/* tail (padding, headers) and junk (a following member) */
	gz_case(__LINE__, plain, big, 0, 0, 0, true);
	gz_case(__LINE__, plain, 1000, 0, 0, 0, true);
	gz_case(__LINE__, plain, mid, 1024, 0, 0, true);
	gz_case(__LINE__, plain, 1, 65536, 0, 0, true);
	gz_case(__LINE__, plain, big, 0, 100, 0, false);
	gz_case(__LINE__, plain, mid, 0, 100, 0, true);
	gz_case(__LINE__, plain, 1000, 512, 3, 0, true);
	gz_case(__LINE__, plain, 1000, 65537, 0, 0, false);
	gz_case(__LINE__, plain, mid, 70000, 0, 0, false);
	gz_case(__LINE__, plain, mid, 60000, 20, 0, true);
	gz_case(__LINE__, plain, mid, 70000, 20, 0, false);
	/* no second buffer as large as a big chunk: zlib */
	gz_case(__LINE__, plain, big, 1024, 0, 0, false);
	/* the trailer says the member is the chunk: it is not */
	gz_case(__LINE__, plain, big, 1024, 0, 1, false);
	gz_case(__LINE__, plain, mid, 1024, 0, 1, false);

	/* zstd frames: one call when the header gives a size that fits;
	 * else block by block into the chunk */
	zst_case(__LINE__, plain, big, 0, 0, true, ZST_ONE_CALL);
	zst_case(__LINE__, plain, 1000, 1024, 0, true, ZST_ONE_CALL);
	zst_case(__LINE__, plain, mid, 1024, 0, true, ZST_ONE_CALL);
	zst_case(__LINE__, plain, big, 1024, 0, true, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, big, 0, 100, true, ZST_ONE_CALL);
	zst_case(__LINE__, plain, mid, 70000, 0, true, ZST_BLOCKWISE);
	/* no size in the header (the Go writer's chunks over 128 KiB):
	 * the chunk ends in the last block, mid-block, or at a block's
	 * end, with or without a tail or junk after the frame */
	zst_case(__LINE__, plain, big, 0, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, big, 1024, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, big, 70000, 33, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, 1 << 17, 0, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, 2 << 17, 500, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, (1 << 17) + 1, 0, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, 1000, 0, 0, false, ZST_BLOCKWISE);
	zst_case(__LINE__, plain, 1, 0, 9, false, ZST_BLOCKWISE);
	zst_bad(plain, big);
	free(plain);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : getenv("ESTARGZ_TESTDATA");

	if (!dir) {
		fprintf(stderr, "usage: %s TESTDATA-DIR\n", argv[0]);
		return 2;
	}
	test_footers();
	test_time();
	test_toc_errors();
	test_toc_ok();
	test_big_toc();
	test_gzip_chunks();
	test_reference_esgz(dir);
	test_reference_zstd(dir);
	test_legacy(dir);
	test_bad_blobs(dir);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("ok: %d checks\n", checks);
	return 0;
}
