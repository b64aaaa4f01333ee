// SPDX-License-Identifier: Apache-2.0
/*
 * formats/zran: the tar parser, index build over one- and multi-member
 * gzip streams made here with zlib, random access against a full gunzip,
 * index save/load and corruption, the reference vectors (argv[1] =
 * testdata/reference) and nydus' zran blob-meta.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "formats/zran/zran-int.h"

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

#define CHECK_OK(expr, errp)                                                   \
	do {                                                                   \
		int _r = (expr);                                               \
		checks++;                                                      \
		if (_r < 0) {                                                  \
			fprintf(stderr, "%s:%d: %s = %d (%s)\n", __FILE__,     \
				__LINE__, #expr, _r, (errp)->msg);             \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_MSG(err, sub)                                                    \
	do {                                                                   \
		checks++;                                                      \
		if (!strstr((err)->msg, (sub))) {                              \
			fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n",  \
				__FILE__, __LINE__, (err)->msg, (sub));        \
			failures++;                                            \
		}                                                              \
	} while (0)

static const char *refdir = "testdata/reference";

/* ---- small buffers ------------------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *d, size_t n)
{
	lp_grow((void **)&b->p, 1, &b->cap, b->len + n + 1);
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void buf_zero(struct buf *b, size_t n)
{
	lp_grow((void **)&b->p, 1, &b->cap, b->len + n + 1);
	memset(b->p + b->len, 0, n);
	b->len += n;
}

static int read_file(const char *path, struct buf *out)
{
	int fd = open(path, O_RDONLY);
	uint8_t tmp[65536];
	ssize_t n;

	if (fd < 0) {
		perror(path);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_add(out, tmp, (size_t)n);
	close(fd);
	return 0;
}

/* ---- a tar writer --------------------------------------------------------- */

struct hdr_opts {
	const char *name;
	char type;
	uint64_t size;
	const char *link;
	uint32_t mode, uid, gid;
	int64_t mtime;
	uint32_t dmaj, dmin;
	bool b256_size; /* write size in base-256 */
	bool gnu_magic;
	const char *prefix;
};

static void octal(uint8_t *f, size_t n, uint64_t v)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "%0*llo", (int)n - 1, (unsigned long long)v);
	memcpy(f, tmp, n - 1);
	f[n - 1] = 0;
}

static void tw_header(struct buf *w, const struct hdr_opts *o)
{
	uint8_t h[512] = { 0 };
	unsigned sum = 0;

	strncpy((char *)h, o->name, 100);
	octal(h + 100, 8, o->mode ? o->mode : 0644);
	octal(h + 108, 8, o->uid);
	octal(h + 116, 8, o->gid);
	if (o->b256_size) {
		h[124] = 0x80;
		for (int i = 0; i < 8; i++)
			h[135 - i] = (uint8_t)(o->size >> (8 * i));
	} else {
		octal(h + 124, 12, o->size);
	}
	octal(h + 136, 12, (uint64_t)o->mtime);
	h[156] = (uint8_t)o->type;
	if (o->link)
		strncpy((char *)h + 157, o->link, 100);
	if (o->gnu_magic)
		memcpy(h + 257, "ustar  \0", 8);
	else
		memcpy(h + 257, "ustar\0" "00", 8);
	octal(h + 329, 8, o->dmaj);
	octal(h + 337, 8, o->dmin);
	if (o->prefix)
		strncpy((char *)h + 345, o->prefix, 155);
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	buf_add(w, h, 512);
}

static void tw_data(struct buf *w, const void *d, size_t n)
{
	buf_add(w, d, n);
	if (n % 512)
		buf_zero(w, 512 - n % 512);
}

static void tw_file(struct buf *w, const char *name, const void *d, size_t n)
{
	tw_header(w, &(struct hdr_opts){ .name = name, .type = '0', .size = n });
	tw_data(w, d, n);
}

static void tw_simple(struct buf *w, const char *name, char type,
		      const char *link)
{
	tw_header(w, &(struct hdr_opts){ .name = name, .type = type,
					 .link = link, .mode = 0755 });
}

/* one PAX extended header from "key=value" pairs (values may hold NULs:
 * pass lengths) */
static void tw_pax(struct buf *w, char type, const char *const *kv,
		   const size_t *vlen, size_t n)
{
	struct buf d = { 0 };

	for (size_t i = 0; i < n; i++) {
		const char *k = kv[2 * i], *v = kv[2 * i + 1];
		size_t vl = vlen ? vlen[i] : strlen(v);
		size_t body = strlen(k) + 1 + vl + 1 + 1, len = body + 1, l;
		char num[24];

		/* the length counts its own digits */
		for (;;) {
			l = (size_t)snprintf(num, sizeof(num), "%zu", len);
			if (body + l == len)
				break;
			len = body + l;
		}
		buf_add(&d, num, l);
		buf_add(&d, " ", 1);
		buf_add(&d, k, strlen(k));
		buf_add(&d, "=", 1);
		buf_add(&d, v, vl);
		buf_add(&d, "\n", 1);
	}
	tw_header(w, &(struct hdr_opts){ .name = "PaxHeader", .type = type,
					 .size = d.len });
	tw_data(w, d.p, d.len);
	free(d.p);
}

static void tw_gnu_long(struct buf *w, char type, const char *s)
{
	tw_header(w, &(struct hdr_opts){ .name = "././@LongLink",
					 .type = type, .size = strlen(s) + 1,
					 .gnu_magic = true });
	tw_data(w, s, strlen(s) + 1);
}

static void tw_end(struct buf *w)
{
	buf_zero(w, 1024);
}

/* ---- gzip ----------------------------------------------------------------- */

/* Appends one gzip member holding d[0, n); name != NULL adds FNAME, FEXTRA
 * and FCOMMENT fields to exercise header parsing. */
static void gz_member(struct buf *out, const uint8_t *d, size_t n, int level,
		      const char *name)
{
	z_stream zs = { 0 };
	gz_header gh = { 0 };
	uint8_t tmp[65536];
	int r;

	deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	if (name) {
		gh.name = (Bytef *)name;
		gh.comment = (Bytef *)"a comment";
		gh.extra = (Bytef *)"XYZW";
		gh.extra_len = 4;
		gh.hcrc = 1;
		deflateSetHeader(&zs, &gh);
	}
	zs.next_in = (Bytef *)d;
	zs.avail_in = (uInt)n;
	do {
		zs.next_out = tmp;
		zs.avail_out = sizeof(tmp);
		r = deflate(&zs, Z_FINISH);
		buf_add(out, tmp, sizeof(tmp) - zs.avail_out);
	} while (r == Z_OK);
	deflateEnd(&zs);
}

static int gunzip_all(const uint8_t *d, size_t n, struct buf *out)
{
	z_stream zs = { 0 };
	uint8_t tmp[65536];
	int r = Z_OK;

	inflateInit2(&zs, 31);
	zs.next_in = (Bytef *)d;
	zs.avail_in = (uInt)n;
	while (zs.avail_in) {
		zs.next_out = tmp;
		zs.avail_out = sizeof(tmp);
		r = inflate(&zs, Z_NO_FLUSH);
		buf_add(out, tmp, sizeof(tmp) - zs.avail_out);
		if (r == Z_STREAM_END)
			inflateReset(&zs);
		else if (r != Z_OK)
			break;
	}
	inflateEnd(&zs);
	return r == Z_STREAM_END || r == Z_OK ? 0 : -1;
}

/* ---- tar parser checks ---------------------------------------------------- */

struct seen {
	int n;
	char path[16][400];
	char link[16][400];
	enum model_type type[16];
	uint64_t size[16];
	uint32_t uid[16], gid[16], mode[16], dmaj[16], dmin[16];
	int64_t mtime[16];
	int nx[16];
	char xname[16][4][64];
	uint8_t xval[16][4][64];
	size_t xlen[16][4];
	uint64_t data_bytes;
};

static int seen_entry(void *data, const struct zran_tar_entry *e,
		      struct lp_err *err)
{
	struct seen *s = data;
	int i = s->n;

	(void)err;
	if (i >= 16)
		return 0;
	snprintf(s->path[i], sizeof(s->path[i]), "%.*s", (int)e->path_len,
		 e->path);
	snprintf(s->link[i], sizeof(s->link[i]), "%.*s", (int)e->link_len,
		 e->link);
	s->type[i] = e->type;
	s->size[i] = e->size;
	s->uid[i] = e->uid;
	s->gid[i] = e->gid;
	s->mode[i] = e->mode;
	s->mtime[i] = e->mtime;
	s->dmaj[i] = e->dev_major;
	s->dmin[i] = e->dev_minor;
	s->nx[i] = (int)e->n_xattrs;
	for (size_t j = 0; j < e->n_xattrs && j < 4; j++) {
		snprintf(s->xname[i][j], 64, "%s", e->xattrs[j].name);
		memcpy(s->xval[i][j], e->xattrs[j].value,
		       e->xattrs[j].value_len < 64 ? e->xattrs[j].value_len
						   : 64);
		s->xlen[i][j] = e->xattrs[j].value_len;
	}
	s->n++;
	return 0;
}

static int seen_data(void *data, const void *buf, size_t len, uint64_t off,
		     struct lp_err *err)
{
	struct seen *s = data;

	(void)buf;
	(void)off;
	(void)err;
	s->data_bytes += len;
	return 0;
}

static const struct zran_tar_ops seen_ops = { seen_entry, seen_data };

/* Parses w in one piece and byte by byte; both must agree. */
static int parse_both(const struct buf *w, struct seen *s, struct lp_err *err)
{
	struct seen s2 = { 0 };
	struct lp_err e2 = { 0 };
	struct zran_tar *t;
	int r1, r2 = 0;

	memset(s, 0, sizeof(*s));
	r1 = zran_tar_parse(w->p, w->len, &seen_ops, s, err);
	t = zran_tar_new(&seen_ops, &s2);
	for (size_t i = 0; i < w->len && r2 >= 0; i++)
		r2 = zran_tar_feed(t, w->p + i, 1, &e2);
	if (r2 >= 0)
		r2 = zran_tar_finish(t, &e2);
	zran_tar_free(t);
	CHECK_U64(r1, r2);
	CHECK_U64(s->n, s2.n);
	CHECK_U64(s->data_bytes, s2.data_bytes);
	if (r1 < 0)
		CHECK(!strcmp(err->msg, e2.msg));
	return r1;
}

static void test_tar_basic(void)
{
	struct buf w = { 0 };
	struct seen s;
	struct lp_err err = { 0 };
	char longname[300], longlink[250];
	const char *pax1[] = { "path", "pax/very/long/path/name.txt",
			       "SCHILY.xattr.user.foo", "bar",
			       "SCHILY.xattr.security.capability", "\x01\x00\x02",
			       "uid", "70000", "gid", "4294967295",
			       "mtime", "1700000000.75", "atime", "123",
			       "LIBARCHIVE.xattr.user.x", "eQ==" };
	const size_t pax1_len[] = { 27, 3, 3, 5, 10, 13, 3, 4 };
	const char *paxg[] = { "comment", "global", "SCHILY.xattr.user.g",
			       "gv", "mtime", "-5.5" };
	const char *paxsize[] = { "size", "5" };

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	memcpy(longname, "dir/", 4);
	memset(longlink, 'l', sizeof(longlink) - 1);
	longlink[sizeof(longlink) - 1] = 0;

	tw_simple(&w, "dir/", '5', NULL);
	tw_file(&w, "dir/a.txt", "hello", 5);
	tw_gnu_long(&w, 'L', longname);
	tw_gnu_long(&w, 'K', longlink);
	tw_simple(&w, "short-ignored", '2', "short-link");
	tw_pax(&w, 'x', pax1, pax1_len, 8);
	tw_file(&w, "ignored-name", "x", 1);
	tw_header(&w, &(struct hdr_opts){ .name = "dev/null", .type = '3',
					  .dmaj = 1, .dmin = 3, .mode = 0666 });
	tw_header(&w, &(struct hdr_opts){ .name = "dev/sda", .type = '4',
					  .dmaj = 8, .dmin = 0 });
	tw_simple(&w, "fifo", '6', NULL);
	tw_simple(&w, "hard", '1', "dir/a.txt");
	tw_header(&w, &(struct hdr_opts){ .name = "name.txt",
					  .prefix = "some/prefix",
					  .type = '\0', .size = 3 });
	tw_data(&w, "abc", 3);
	tw_header(&w, &(struct hdr_opts){ .name = "v7dir/", .type = '\0' });
	tw_header(&w, &(struct hdr_opts){ .name = "big", .type = '7',
					  .size = 600, .b256_size = true });
	{
		uint8_t d[600];

		memset(d, 'B', sizeof(d));
		tw_data(&w, d, sizeof(d));
	}
	tw_pax(&w, 'g', paxg, NULL, 3);
	tw_pax(&w, 'x', paxsize, NULL, 1);
	tw_header(&w, &(struct hdr_opts){ .name = "paxsize", .type = '0',
					  .size = 0777 });
	tw_data(&w, "12345", 5);
	tw_end(&w);
	buf_zero(&w, 8192); /* record padding */

	CHECK_OK(parse_both(&w, &s, &err), &err);
	CHECK_U64(s.n, 12);
	CHECK(!strcmp(s.path[0], "dir/") && s.type[0] == MODEL_DIR);
	CHECK(!strcmp(s.path[1], "dir/a.txt") && s.size[1] == 5);
	CHECK(!strcmp(s.path[2], longname) && s.type[2] == MODEL_SYMLINK);
	CHECK(!strcmp(s.link[2], longlink));
	CHECK(!strcmp(s.path[3], "pax/very/long/path/name.txt"));
	CHECK_U64(s.uid[3], 70000);
	CHECK_U64(s.gid[3], 4294967295u);
	CHECK_U64(s.mtime[3], 1700000000);
	CHECK_U64(s.nx[3], 2);
	CHECK(!strcmp(s.xname[3][0], "user.foo") && s.xlen[3][0] == 3 &&
	      !memcmp(s.xval[3][0], "bar", 3));
	CHECK(!strcmp(s.xname[3][1], "security.capability") &&
	      s.xlen[3][1] == 3 && !memcmp(s.xval[3][1], "\x01\x00\x02", 3));
	CHECK(s.type[4] == MODEL_CHAR && s.dmaj[4] == 1 && s.dmin[4] == 3 &&
	      s.mode[4] == 0666);
	CHECK(s.type[5] == MODEL_BLOCK && s.dmaj[5] == 8);
	CHECK(s.type[6] == MODEL_FIFO);
	CHECK(s.type[7] == MODEL_HARDLINK && !strcmp(s.link[7], "dir/a.txt"));
	CHECK(!strcmp(s.path[8], "some/prefix/name.txt") &&
	      s.type[8] == MODEL_REG && s.size[8] == 3);
	CHECK(!strcmp(s.path[9], "v7dir/") && s.type[9] == MODEL_DIR);
	CHECK(s.type[10] == MODEL_REG && s.size[10] == 600);
	/* the 'g' header is not an entry; its values apply afterwards */
	CHECK(!strcmp(s.path[11], "paxsize") && s.size[11] == 5);
	CHECK_U64(s.mtime[11], (uint64_t)-6);
	CHECK(s.nx[11] == 1 && !strcmp(s.xname[11][0], "user.g"));
	CHECK_U64(s.data_bytes, 5 + 1 + 3 + 600 + 5);
	free(w.p);
}

static void expect_fail(const struct buf *w, int code, const char *m1,
			const char *m2)
{
	struct seen s;
	struct lp_err err = { 0 };
	int r = parse_both(w, &s, &err);

	CHECK_U64(r, code);
	CHECK_MSG(&err, m1);
	if (m2)
		CHECK_MSG(&err, m2);
}

static void test_tar_errors(void)
{
	struct buf w = { 0 };
	const char *sparse[] = { "GNU.sparse.major", "1", "GNU.sparse.minor",
				 "0" };
	const char *badsize[] = { "size", "12x" };

	/* GNU sparse, old style */
	tw_file(&w, "ok", "1", 1);
	tw_header(&w, &(struct hdr_opts){ .name = "holes.img", .type = 'S',
					  .size = 0, .gnu_magic = true });
	expect_fail(&w, -EOPNOTSUPP, "holes.img", "offset 1024");
	w.len = 0;

	/* GNU sparse, PAX 1.0 */
	tw_pax(&w, 'x', sparse, NULL, 2);
	tw_file(&w, "GNUSparseFile.0/x", "", 0);
	expect_fail(&w, -EOPNOTSUPP, "GNU sparse", "'GNUSparseFile.0/x' at offset 0");
	w.len = 0;

	/* bad checksum */
	tw_file(&w, "a", "1", 1);
	tw_file(&w, "b", "1", 1);
	w.p[1024 + 150] ^= 1;
	expect_fail(&w, -EINVAL, "checksum", "offset 1024");
	w.len = 0;

	/* unsupported type */
	tw_simple(&w, "vol", 'V', NULL);
	expect_fail(&w, -EOPNOTSUPP, "'vol'", "type 'V'");
	w.len = 0;

	/* truncated data */
	tw_file(&w, "trunc", "0123456789", 10);
	w.len = 512 + 5;
	expect_fail(&w, -EINVAL, "truncated", "'trunc'");
	w.len = 0;

	/* truncated header and dangling extension header */
	tw_file(&w, "a", "1", 1);
	w.len = 1024 + 100;
	expect_fail(&w, -EINVAL, "truncated header", NULL);
	w.len = 0;
	tw_gnu_long(&w, 'L', "name");
	expect_fail(&w, -EINVAL, "truncated header", NULL);
	w.len = 0;

	/* bad PAX */
	tw_pax(&w, 'x', badsize, NULL, 1);
	tw_file(&w, "x", "", 0);
	expect_fail(&w, -EINVAL, "PAX size", NULL);
	w.len = 0;
	{
		static const char rec[] = "99 path=x\n";

		tw_header(&w, &(struct hdr_opts){ .name = "p", .type = 'x',
						  .size = sizeof(rec) - 1 });
		tw_data(&w, rec, sizeof(rec) - 1);
		tw_file(&w, "x", "", 0);
		expect_fail(&w, -EINVAL, "malformed PAX", NULL);
		w.len = 0;
	}

	/* oversized long name */
	tw_header(&w, &(struct hdr_opts){ .name = "././@LongLink", .type = 'L',
					  .size = 2u << 20 });
	expect_fail(&w, -E2BIG, "too large", NULL);
	w.len = 0;

	/* a lone zero block followed by data */
	buf_zero(&w, 512);
	tw_file(&w, "after", "1", 1);
	expect_fail(&w, -EINVAL, "lone zero block", NULL);
	w.len = 0;

	/* an empty stream and a bare end marker are fine */
	{
		struct seen s;
		struct lp_err err = { 0 };

		CHECK_OK(parse_both(&w, &s, &err), &err);
		tw_end(&w);
		CHECK_OK(parse_both(&w, &s, &err), &err);
		CHECK_U64(s.n, 0);
	}
	free(w.p);
}

/* ---- index over generated layers ---------------------------------------- */

struct gen_file {
	char name[64];
	size_t off, size; /* of the data in the tar */
};

/* A layer with small and big files; content mixes text (compressible)
 * and noise (stored blocks). */
static size_t gen_layer(struct buf *w, struct gen_file *files, size_t max,
			uint32_t seed)
{
	size_t n = 0;
	uint32_t x = seed;
	static const size_t sizes[] = { 0,	1,	 511,	  512,
					513,	4096,	 70000,	  1 << 20,
					3000000, 123457, 2 << 20, 17,
					900000,	5 };

	tw_simple(w, "d/", '5', NULL);
	for (size_t i = 0; i < ARRAY_SIZE(sizes) && n < max; i++) {
		size_t sz = sizes[i];
		uint8_t *d = lp_xmalloc(sz + 1);

		for (size_t j = 0; j < sz; j++) {
			x = x * 1103515245u + 12345u;
			if ((j / 4096) % 3 == 2)
				d[j] = (uint8_t)(x >> 16); /* noise */
			else
				d[j] = "the quick brown fox jumps\n"[(j + (x >> 28)) % 26];
		}
		snprintf(files[n].name, sizeof(files[n].name), "d/f%zu", i);
		tw_header(w, &(struct hdr_opts){ .name = files[n].name,
						 .type = '0', .size = sz });
		files[n].off = w->len;
		files[n].size = sz;
		tw_data(w, d, sz);
		free(d);
		n++;
	}
	tw_simple(w, "d/link", '2', "f1");
	tw_simple(w, "d/hard", '1', "d/f3");
	tw_end(w);
	return n;
}

/* Every chunk of every file decodes from its own compressed range, verifies,
 * and matches the tar. */
static void check_model(const struct model *m, struct format_ctx *ctx,
			const struct buf *gz, const struct buf *tar,
			const struct gen_file *files, size_t nfiles)
{
	for (size_t i = 0; i < nfiles; i++) {
		char path[80];
		uint32_t ino;
		const struct model_inode *in;
		uint64_t covered = 0;

		snprintf(path, sizeof(path), "/%s", files[i].name);
		ino = model_lookup_path(m, path);
		CHECK(ino != 0);
		in = model_inode(m, ino);
		if (!in)
			continue;
		CHECK_U64(in->size, files[i].size);
		for (uint32_t j = 0; j < in->count; j++) {
			const struct model_chunk *c = &m->chunks[in->first + j];
			struct lp_err err = { 0 };
			uint8_t *out = lp_xmalloc(c->len + 1);
			uint64_t avail = c->comp_len;

			CHECK(c->codec == MODEL_CODEC_ZRAN);
			CHECK(c->comp_off + c->comp_len <= gz->len);
			if (c->comp_off + avail > gz->len)
				avail = gz->len - c->comp_off;
			CHECK_OK(zran_ops.decode_chunk(ctx, c, gz->p + c->comp_off,
						       (size_t)avail, out, &err),
				 &err);
			CHECK_OK(model_chunk_verify(c, out, &err), &err);
			CHECK(!memcmp(out, tar->p + files[i].off + c->file_off,
				      c->len));
			covered += c->len;
			free(out);
		}
		CHECK_U64(covered, files[i].size);
	}
}

static void check_random_reads(const struct zran_index *idx,
			       struct lp_source *src, const struct buf *tar,
			       uint32_t seed)
{
	uint32_t x = seed;
	uint8_t *out = lp_xmalloc(300000);

	for (int i = 0; i < 200; i++) {
		struct lp_err err = { 0 };
		size_t len, off;

		x = x * 1664525u + 1013904223u;
		off = (size_t)((uint64_t)x * tar->len >> 32);
		x = x * 1664525u + 1013904223u;
		len = (i % 4 == 0) ? 4096 : (x >> 8) % 300000;
		if (off + len > tar->len)
			len = tar->len - off;
		CHECK_OK(zran_index_read(idx, src, off, out, len, &err), &err);
		CHECK(!memcmp(out, tar->p + off, len));
	}
	/* the very end and the very start */
	{
		struct lp_err err = { 0 };

		CHECK_OK(zran_index_read(idx, src, tar->len - 1, out, 1, &err),
			 &err);
		CHECK(out[0] == tar->p[tar->len - 1]);
		CHECK_OK(zran_index_read(idx, src, 0, out, 1000, &err), &err);
		CHECK(!memcmp(out, tar->p, 1000));
		CHECK(zran_index_read(idx, src, tar->len, out, 1, &err) < 0);
	}
	free(out);
}

struct dump {
	struct buf b;
};

static int dump_cb(const struct model *m, const char *path, uint32_t ino,
		   bool primary, void *data)
{
	struct dump *d = data;
	const struct model_inode *in = model_inode(m, ino);
	char line[600];
	int n = snprintf(line, sizeof(line), "%s %d %o %u %u %llu %lld %u\n",
			 path, primary, in->mode, in->uid, in->gid,
			 (unsigned long long)in->size, (long long)in->mtime,
			 in->count);

	buf_add(&d->b, line, (size_t)n);
	for (uint32_t j = 0; j < in->xattr_count; j++) {
		const struct model_xattr *x = &m->xattrs[in->xattr_first + j];

		buf_add(&d->b, model_str(m, x->name), strlen(model_str(m, x->name)));
		buf_add(&d->b, model_str(m, x->value), x->value_len);
	}
	for (uint32_t j = 0; (in->mode & S_IFMT) == S_IFREG && primary &&
			     j < in->count;
	     j++) {
		const struct model_chunk *c = &m->chunks[in->first + j];

		n = snprintf(line, sizeof(line),
			     "%llu %llu %llu %llu %llu %u %u %u %u\n",
			     (unsigned long long)c->file_off,
			     (unsigned long long)c->len,
			     (unsigned long long)c->comp_off,
			     (unsigned long long)c->comp_len,
			     (unsigned long long)c->aux_off, c->aux, c->blob,
			     c->codec, c->digest_alg);
		buf_add(&d->b, line, (size_t)n);
		buf_add(&d->b, c->digest, 32);
	}
	return 0;
}

static void model_dump(const struct model *m, struct buf *out)
{
	struct dump d = { { 0 } };

	model_walk(m, dump_cb, &d);
	*out = d.b;
}

static void roundtrip(struct zran_index *idx, const struct model *m1,
		      const struct buf *gz, const struct buf *tar,
		      const struct gen_file *files, size_t nfiles)
{
	struct lp_err err = { 0 };
	uint8_t *ser = NULL, *ser2 = NULL;
	size_t len = 0, len2 = 0;
	struct zran_index *idx2 = NULL;
	struct model *m2 = NULL;
	struct buf d1, d2;

	CHECK_OK(zran_index_serialize(idx, &ser, &len, &err), &err);
	CHECK_OK(zran_index_parse(ser, len, &idx2, &err), &err);
	if (!idx2)
		goto out;
	CHECK_OK(zran_index_serialize(idx2, &ser2, &len2, &err), &err);
	CHECK(len == len2 && !memcmp(ser, ser2, len));
	CHECK_OK(zran_index_model(idx2, &m2, &err), &err);
	if (!m2)
		goto out;
	model_dump(m1, &d1);
	model_dump(m2, &d2);
	CHECK(d1.len == d2.len && !memcmp(d1.p, d2.p, d1.len));
	free(d1.p);
	free(d2.p);
	check_model(m2, zran_ctx_from_index(idx2), gz, tar, files, nfiles);
out:
	model_free(m2);
	zran_index_free(idx2);
	free(ser);
	free(ser2);
}

static void test_generated(int members, int level, uint32_t span,
			   uint32_t chunk_max)
{
	struct buf tar = { 0 }, gz = { 0 }, plain = { 0 };
	struct gen_file files[32];
	size_t nfiles = gen_layer(&tar, files, 32, (uint32_t)members * 7 + span);
	struct lp_source *src;
	struct zran_build_opts o = { .span = span, .chunk_max = chunk_max };
	struct zran_index *idx = NULL;
	struct zran_index_stats st;
	struct model *m = NULL;
	struct lp_err err = { 0 };

	/* split the tar at uneven places, inside files */
	for (int i = 0; i < members; i++) {
		size_t a = tar.len * (size_t)i / (size_t)members + (i ? 777 : 0);
		size_t b = i == members - 1
				   ? tar.len
				   : tar.len * (size_t)(i + 1) / (size_t)members + 777;

		gz_member(&gz, tar.p + a, b - a, level, i == 1 ? "part2" : NULL);
	}
	CHECK(gunzip_all(gz.p, gz.len, &plain) == 0);
	CHECK(plain.len == tar.len && !memcmp(plain.p, tar.p, tar.len));

	src = lp_source_new_mem(gz.p, gz.len, "generated");
	CHECK_OK(zran_index_build(src, &o, &idx, &err), &err);
	if (!idx)
		goto out;
	zran_index_stats(idx, &st);
	CHECK_U64(st.n_members, members);
	CHECK_U64(st.tar_size, tar.len);
	CHECK_U64(st.gzip_size, gz.len);
	{
		uint8_t d[32];

		lp_sha256(gz.p, gz.len, d);
		CHECK(!memcmp(d, st.gzip_sha256, 32));
	}
	CHECK(st.n_checkpoints >= tar.len / (span + (256u << 10)));
	CHECK_OK(zran_index_model(idx, &m, &err), &err);
	if (!m)
		goto out;
	check_model(m, zran_ctx_from_index(idx), &gz, &tar, files, nfiles);
	check_random_reads(idx, src, &tar, span ^ (uint32_t)members);
	/* hardlink and symlink made it */
	CHECK(model_lookup_path(m, "/d/link") != 0);
	CHECK(model_lookup_path(m, "/d/hard") == model_lookup_path(m, "/d/f3"));
	roundtrip(idx, m, &gz, &tar, files, nfiles);
out:
	model_free(m);
	zran_index_free(idx);
	lp_source_free(src);
	free(tar.p);
	free(gz.p);
	free(plain.p);
}

/* ---- concurrent decodes through the resume cache ------------------------- */

struct worker {
	const struct model *m;
	struct format_ctx *ctx;
	const struct buf *gz;
	uint32_t seed;
	int bad;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint32_t x = w->seed;

	for (int i = 0; i < 300; i++) {
		struct lp_err err = { 0 };
		const struct model_chunk *c;
		uint8_t *out;

		x = x * 1664525u + 1013904223u;
		c = &w->m->chunks[(x >> 8) % w->m->n_chunks];
		/* mostly walk forward through one span, sometimes jump */
		out = lp_xmalloc(c->len + 1);
		if (zran_ops.decode_chunk(w->ctx, c, w->gz->p + c->comp_off,
					  (size_t)c->comp_len, out, &err) < 0 ||
		    model_chunk_verify(c, out, &err) < 0)
			w->bad++;
		free(out);
		if (i % 3 == 0) {
			/* the next chunks in file order reuse the stream */
			for (const struct model_chunk *d = c + 1;
			     d < w->m->chunks + w->m->n_chunks && d < c + 4;
			     d++) {
				out = lp_xmalloc(d->len + 1);
				if (zran_ops.decode_chunk(
					    w->ctx, d, w->gz->p + d->comp_off,
					    (size_t)d->comp_len, out, &err) < 0 ||
				    model_chunk_verify(d, out, &err) < 0)
					w->bad++;
				free(out);
			}
		}
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct buf tar = { 0 }, gz = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct model *m = NULL;
	struct format_ctx *ctx = NULL;
	struct lp_err err = { 0 };
	struct zran_build_opts o = { .span = 64 << 10, .chunk_max = 8192 };
	pthread_t th[4];
	struct worker w[4];

	size_t nfiles = gen_layer(&tar, files, 32, 11);

	gz_member(&gz, tar.p, tar.len / 3, 6, NULL);
	gz_member(&gz, tar.p + tar.len / 3, tar.len - tar.len / 3, 6, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "mt");
	CHECK_OK(zran_load_with(src, &o, &m, &ctx, NULL, &err), &err);
	if (!m)
		goto out;
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ m, ctx, &gz, (uint32_t)i * 77 + 1, 0 };
		pthread_create(&th[i], NULL, worker_run, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_U64(w[i].bad, 0);
	}
	/* every chunk in layer order, twice: the second pass starts over */
	for (int pass = 0; pass < 2; pass++)
		check_model(m, ctx, &gz, &tar, files, nfiles);
out:
	model_free(m);
	if (ctx)
		zran_ops.destroy(ctx);
	lp_source_free(src);
	free(tar.p);
	free(gz.p);
}

/* ---- corrupt indexes -------------------------------------------------------- */

static void put32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *p, size_t len)
{
	lp_sha256(p + 64, len - 64, p + 24);
}

static void test_corrupt_index(void)
{
	struct buf tar = { 0 }, gz = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct zran_index *idx = NULL, *bad = NULL;
	struct zran_build_opts o = { .span = 64 << 10 };
	struct lp_err err = { 0 };
	uint8_t *ser = NULL, *copy;
	size_t len = 0;
	char path[] = "/tmp/test-zran-XXXXXX";
	int fd;

	gen_layer(&tar, files, 32, 99);
	gz_member(&gz, tar.p, tar.len, 6, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "corrupt");
	CHECK_OK(zran_index_build(src, &o, &idx, &err), &err);
	if (!idx)
		goto out;
	CHECK_OK(zran_index_serialize(idx, &ser, &len, &err), &err);
	copy = lp_xmalloc(len);

	/* every single-byte flip in the header, and a sample elsewhere */
	for (size_t i = 0; i < len; i += (i < 160 ? 1 : len / 64 + 1)) {
		memcpy(copy, ser, len);
		copy[i] ^= 0x40;
		memset(&err, 0, sizeof(err));
		CHECK(zran_index_parse(copy, len, &bad, &err) < 0);
		CHECK(err.msg[0] != '\0');
	}
	/* truncated */
	memset(&err, 0, sizeof(err));
	CHECK(zran_index_parse(ser, len - 1, &bad, &err) == -EBADMSG);
	CHECK_MSG(&err, "payload length");
	/* wrong version */
	memcpy(copy, ser, len);
	put32le(copy + 8, 2);
	memset(&err, 0, sizeof(err));
	CHECK(zran_index_parse(copy, len, &bad, &err) == -EPROTONOSUPPORT);
	/* checksum says which */
	memcpy(copy, ser, len);
	copy[len - 1] ^= 1;
	memset(&err, 0, sizeof(err));
	CHECK(zran_index_parse(copy, len, &bad, &err) == -EBADMSG);
	CHECK_MSG(&err, "checksum");

	/* semantic damage behind a valid checksum */
	{
		size_t pt0 = 64 + 80; /* first checkpoint record */
		size_t pt1 = pt0 + 32;
		uint32_t np = 0;

		for (int i = 0; i < 4; i++)
			np |= (uint32_t)ser[64 + 28 + i] << (8 * i);
		CHECK(np >= 3);
		struct {
			size_t off;
			uint32_t val;
			const char *msg;
		} cases[] = {
			{ pt1 + 24, 9, "pending bits" },
			{ pt1 + 16, 40000, "window of 40000" },
			{ pt1, 0, "not increasing" },
			{ 64 + 16, 1000, "span" },
			{ 64 + 28, 0x7fffffff, "counts need" },
			{ pt0 + 32 * np + 84, 77, "bad type" },
			{ pt0 + 32 * np + 88 + 36, 0xffffff, "bad name" },
		};
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
			memcpy(copy, ser, len);
			if (cases[i].off == pt1 + 24 ||
			    cases[i].off == pt0 + 32 * np + 84)
				copy[cases[i].off] = (uint8_t)cases[i].val;
			else if (cases[i].off == pt1)
				memset(copy + pt1, 0, 8);
			else
				put32le(copy + cases[i].off, cases[i].val);
			reseal(copy, len);
			memset(&err, 0, sizeof(err));
			CHECK(zran_index_parse(copy, len, &bad, &err) ==
			      -EBADMSG);
			CHECK_MSG(&err, cases[i].msg);
		}
	}

	/* save / load through a file, and a corrupt file on disk */
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK_OK(zran_index_save(idx, path, &err), &err);
	{
		struct model *m = NULL;
		struct format_ctx *ctx = NULL;
		struct format_info info;
		struct lp_source *small = lp_source_new_mem(gz.p, gz.len - 1, "x");

		CHECK_OK(zran_load_index_file(path, src, &m, &ctx, &info, &err),
			 &err);
		CHECK(info.format && !strcmp(info.format, "zran"));
		CHECK(m && ctx);
		if (m && ctx)
			check_model(m, ctx, &gz, &tar, files, 6);
		model_free(m);
		zran_ops.destroy(ctx);
		memset(&err, 0, sizeof(err));
		CHECK(zran_load_index_file(path, small, &m, &ctx, &info, &err) <
		      0);
		CHECK_MSG(&err, "index is for");
		lp_source_free(small);
	}
	fd = open(path, O_WRONLY);
	CHECK(pwrite(fd, "X", 1, 200) == 1);
	close(fd);
	memset(&err, 0, sizeof(err));
	CHECK(zran_index_load(path, &bad, &err) == -EBADMSG);
	CHECK_MSG(&err, path);
	CHECK_MSG(&err, "checksum");
	unlink(path);
	free(copy);
out:
	free(ser);
	zran_index_free(idx);
	lp_source_free(src);
	free(tar.p);
	free(gz.p);
}

/*
 * Windows are kept as stored, never inflated in the index: in memory
 * after a build or a parse, in the file after a load (read when a decode
 * starts from their point).  The file is the same bytes either way, and a
 * window damaged in the file after the load is -EIO at decode time.
 */
static void test_windows_stored(void)
{
	struct buf tar = { 0 }, gz = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct zran_index *idx = NULL, *mem = NULL, *fil = NULL, *late = NULL;
	struct zran_build_opts o = { .span = 64 << 10 };
	struct lp_err err = { 0 };
	struct model *m = NULL;
	uint8_t *ser = NULL, *ser2 = NULL, *copy = NULL;
	uint8_t w1[ZRAN_WINDOW_SIZE], w2[ZRAN_WINDOW_SIZE];
	size_t len = 0, len2 = 0, nfiles;
	uint64_t raw = 0;
	uint32_t zp = 0;
	char path[] = "/tmp/test-zran-XXXXXX";
	int fd;

	nfiles = gen_layer(&tar, files, 32, 41);
	gz_member(&gz, tar.p, tar.len, 6, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "stored");
	CHECK_OK(zran_index_build(src, &o, &idx, &err), &err);
	if (!idx)
		goto out;
	CHECK(idx->n_points >= 3 && idx->wins && idx->wfd < 0);
	for (uint32_t i = 0; i < idx->n_points; i++) {
		raw += idx->points[i].window_len;
		if (!zp && idx->points[i].wenc == ZRAN_WIN_ZLIB)
			zp = i;
	}
	CHECK(zp > 0);
	CHECK(idx->wins_len < raw); /* compressed as it is built */
	CHECK_OK(zran_index_serialize(idx, &ser, &len, &err), &err);
	CHECK_OK(zran_index_parse(ser, len, &mem, &err), &err);

	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK_OK(zran_index_save(idx, path, &err), &err);
	CHECK_OK(zran_index_load(path, &fil, &err), &err);
	CHECK_OK(zran_index_load(path, &late, &err), &err);
	if (!mem || !fil || !late)
		goto out_file;
	CHECK(mem->wins && mem->wfd < 0);
	CHECK(!fil->wins && fil->wfd >= 0);
	/* every window reads back the same from the three */
	for (uint32_t i = 0; i < idx->n_points; i++) {
		uint32_t wl = idx->points[i].window_len;

		CHECK_OK(zran_point_window(idx, i, w1, &err), &err);
		CHECK_OK(zran_point_window(mem, i, w2, &err), &err);
		CHECK(!memcmp(w1, w2, wl));
		memset(w2, 0, sizeof(w2));
		CHECK_OK(zran_point_window(fil, i, w2, &err), &err);
		CHECK(!memcmp(w1, w2, wl));
	}
	/* the loaded index saves the same bytes and decodes every chunk */
	CHECK_OK(zran_index_serialize(fil, &ser2, &len2, &err), &err);
	CHECK(len2 == len && ser2 && !memcmp(ser, ser2, len));
	CHECK_OK(zran_index_model(fil, &m, &err), &err);
	if (m)
		check_model(m, zran_ctx_from_index(fil), &gz, &tar, files,
			    nfiles);
	/* a load's context keeps the checkpoints only: the model has the
	 * listing */
	{
		struct model *m2 = NULL, *m3 = NULL;
		struct format_ctx *ctx = NULL;
		uint8_t *x = NULL;
		size_t xl = 0;

		CHECK_OK(zran_load_index_file(path, src, &m2, &ctx, NULL, &err),
			 &err);
		if (ctx && m2) {
			const struct zran_index *ci = zran_ctx_index(ctx);

			CHECK(ci->no_listing && !ci->entries && !ci->chunks &&
			      !ci->strtab && !ci->wins && ci->wfd >= 0);
			CHECK_U64(ci->n_points, idx->n_points);
			CHECK(zran_index_serialize(ci, &x, &xl, &err) == -EINVAL);
			CHECK(zran_index_model(ci, &m3, &err) == -EINVAL);
			check_model(m2, ctx, &gz, &tar, files, nfiles);
		}
		model_free(m2);
		if (ctx)
			zran_ops.destroy(ctx);
	}

	/* damage a compressed window in the file behind `late`'s back */
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	{
		const struct zran_point *pt = &late->points[zp];
		uint8_t junk[8] = { 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3 };
		struct model_chunk c = { 0 };
		uint8_t out[16];

		CHECK(pwrite(fd, junk, sizeof(junk),
			     (off_t)(late->wins_off + pt->woff +
				     pt->wstored / 2)) == (ssize_t)sizeof(junk));
		memset(&err, 0, sizeof(err));
		CHECK(zran_point_window(late, zp, w1, &err) == -EIO);
		CHECK_MSG(&err, "corrupt window");
		/* a decode from that point fails cleanly */
		c.codec = MODEL_CODEC_ZRAN;
		c.aux = zp;
		c.comp_off = pt->in_pos;
		c.comp_len = gz.len - pt->in_pos;
		c.len = sizeof(out);
		memset(&err, 0, sizeof(err));
		CHECK(zran_index_decode(late, &c, gz.p + c.comp_off,
					(size_t)c.comp_len, out, &err) == -EIO);
		CHECK_MSG(&err, "corrupt window");
		/* cut short: the window is gone */
		CHECK(ftruncate(fd, (off_t)late->wins_off) == 0);
		memset(&err, 0, sizeof(err));
		CHECK(zran_point_window(late, zp, w1, &err) == -EIO);
		CHECK_MSG(&err, "shorter");
	}
	close(fd);

	/* a damaged window behind a valid checksum does not parse */
	copy = lp_xmalloc(len);
	memcpy(copy, ser, len);
	copy[mem->wins_off + mem->points[zp].woff + mem->points[zp].wstored / 2] ^=
		0x55;
	reseal(copy, len);
	{
		struct zran_index *bad = NULL;

		memset(&err, 0, sizeof(err));
		CHECK(zran_index_parse(copy, len, &bad, &err) == -EBADMSG);
		CHECK_MSG(&err, "corrupt window");
		zran_index_free(bad);
	}
out_file:
	unlink(path);
out:
	model_free(m);
	zran_index_free(idx);
	zran_index_free(mem);
	zran_index_free(fil);
	zran_index_free(late);
	lp_source_free(src);
	free(ser);
	free(ser2);
	free(copy);
	free(tar.p);
	free(gz.p);
}

/*
 * A built index saved with zran_index_save_keep reads its windows from the
 * file it wrote (through its own descriptor, even once path names another
 * file), the file loads, and the index opened as built decodes every chunk.
 */
static void test_save_keep(void)
{
	struct buf tar = { 0 }, gz = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct zran_index *idx = NULL, *mem = NULL, *fil = NULL;
	struct zran_build_opts o = { .span = 64 << 10 };
	struct lp_err err = { 0 };
	struct format_ctx *ctx = NULL;
	struct model *m = NULL;
	uint8_t *ser = NULL, *ser2 = NULL;
	uint8_t w1[ZRAN_WINDOW_SIZE], w2[ZRAN_WINDOW_SIZE];
	size_t len = 0, len2 = 0, nfiles;
	char path[] = "/tmp/test-zran-keep-XXXXXX";
	int fd;

	nfiles = gen_layer(&tar, files, 32, 43);
	gz_member(&gz, tar.p, tar.len, 6, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "keep");
	CHECK_OK(zran_index_build(src, &o, &idx, &err), &err);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	if (!idx)
		goto out;
	CHECK(idx->n_points >= 3 && idx->wins && idx->wfd < 0);
	CHECK_OK(zran_index_serialize(idx, &ser, &len, &err), &err);
	CHECK_OK(zran_index_parse(ser, len, &mem, &err), &err);
	CHECK_OK(zran_index_save_keep(idx, path, &err), &err);
	CHECK(!idx->wins && idx->wfd >= 0 && idx->wins_len &&
	      idx->wins_off + idx->wins_len == len);
	/* the file is what the index serializes to, and loads */
	CHECK_OK(zran_index_load(path, &fil, &err), &err);
	if (fil) {
		CHECK_OK(zran_index_serialize(fil, &ser2, &len2, &err), &err);
		CHECK(len2 == len && ser2 && !memcmp(ser, ser2, len));
	}
	/* another file takes the name: the index keeps reading its own */
	{
		char tmp[64];

		snprintf(tmp, sizeof(tmp), "%s.other", path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, "junk", 4) == 4);
		if (fd >= 0)
			close(fd);
		CHECK(rename(tmp, path) == 0);
	}
	for (uint32_t i = 0; mem && i < idx->n_points; i++) {
		uint32_t wl = idx->points[i].window_len;

		CHECK_OK(zran_point_window(mem, i, w1, &err), &err);
		memset(w2, 0, sizeof(w2));
		CHECK_OK(zran_point_window(idx, i, w2, &err), &err);
		CHECK(!memcmp(w1, w2, wl));
	}
	/* opened as built: the model, every chunk decoded and checked */
	CHECK_OK(zran_load_built(TAKE_PTR(idx), src, &m, &ctx, NULL, &err),
		 &err);
	if (m && ctx)
		check_model(m, ctx, &gz, &tar, files, nfiles);
	/* a built index for another layer is refused (and freed) */
	{
		struct lp_source *other = lp_source_new_mem(gz.p, gz.len - 1,
							    "other");
		struct zran_index *i2 = NULL;
		struct model *m2 = NULL;
		struct format_ctx *c2 = NULL;

		CHECK_OK(zran_index_build(src, &o, &i2, &err), &err);
		memset(&err, 0, sizeof(err));
		CHECK(zran_load_built(i2, other, &m2, &c2, NULL, &err) ==
		      -EINVAL && !m2 && !c2);
		CHECK_MSG(&err, "index is for a");
		lp_source_free(other);
	}
out:
	unlink(path);
	model_free(m);
	if (ctx)
		zran_ops.destroy(ctx);
	zran_index_free(idx);
	zran_index_free(mem);
	zran_index_free(fil);
	lp_source_free(src);
	free(ser);
	free(ser2);
	free(tar.p);
	free(gz.p);
}

static void test_bad_gzip(void)
{
	struct buf tar = { 0 }, gz = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct zran_index *idx = NULL;
	struct lp_err err = { 0 };

	gen_layer(&tar, files, 4, 5);
	gz_member(&gz, tar.p, tar.len, 6, NULL);

	/* truncated */
	src = lp_source_new_mem(gz.p, gz.len - 3, "t");
	CHECK(zran_index_build(src, NULL, &idx, &err) < 0);
	CHECK_MSG(&err, "truncated");
	lp_source_free(src);

	/* garbage after the member */
	buf_add(&gz, "garbage!", 8);
	memset(&err, 0, sizeof(err));
	src = lp_source_new_mem(gz.p, gz.len, "g");
	CHECK(zran_index_build(src, NULL, &idx, &err) < 0);
	CHECK_MSG(&err, "garbage after member 1");
	lp_source_free(src);

	/* corrupt deflate data */
	gz.len -= 8;
	gz.p[gz.len / 2] ^= 0xff;
	gz.p[gz.len / 2 + 1] ^= 0x55;
	memset(&err, 0, sizeof(err));
	src = lp_source_new_mem(gz.p, gz.len, "c");
	CHECK(zran_index_build(src, NULL, &idx, &err) < 0);
	CHECK(err.msg[0] != 0);
	lp_source_free(src);

	/* a gzip that is not a tar */
	gz.len = 0;
	gz_member(&gz, (const uint8_t *)"hello world, not a tar", 22, 6, NULL);
	memset(&err, 0, sizeof(err));
	src = lp_source_new_mem(gz.p, gz.len, "n");
	CHECK(zran_index_build(src, NULL, &idx, &err) < 0);
	CHECK_MSG(&err, "tar");
	lp_source_free(src);
	CHECK(idx == NULL);

	/* probe */
	src = lp_source_new_mem(gz.p, gz.len, "p");
	CHECK(zran_ops.probe(src, NULL, &err) == 1);
	lp_source_free(src);
	src = lp_source_new_mem(tar.p, tar.len, "p");
	CHECK(zran_ops.probe(src, NULL, &err) == 0);
	lp_source_free(src);

	/* bad options */
	src = lp_source_new_mem(gz.p, gz.len, "o");
	CHECK(zran_index_build(src, &(struct zran_build_opts){ .span = 10 },
			       &idx, &err) == -EINVAL);
	lp_source_free(src);
	free(tar.p);
	free(gz.p);
}

/* ---- reference vectors ------------------------------------------------------ */

static int load_ref(const char *rel, struct buf *b)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", refdir, rel);
	return read_file(path, b);
}

/* Loads a .tar.gz through zran_ops and compares every file with a gunzip
 * parsed by the tar parser. */
struct reffile {
	char path[256];
	uint64_t off, size;
};
struct refset {
	int n;
	struct reffile f[64];
};

static int ref_entry(void *data, const struct zran_tar_entry *e,
		     struct lp_err *err)
{
	struct refset *s = data;

	(void)err;
	if (e->type == MODEL_REG && s->n < 64) {
		snprintf(s->f[s->n].path, 256, "/%.*s", (int)e->path_len,
			 e->path);
		s->f[s->n].off = e->data_off;
		s->f[s->n].size = e->size;
		s->n++;
	}
	return 0;
}

static void test_ref_targz(const char *rel, uint32_t want_members,
			   int want_files)
{
	struct buf gz = { 0 }, tar = { 0 };
	struct refset s = { 0 };
	struct lp_source *src;
	struct model *m = NULL;
	struct format_ctx *ctx = NULL;
	struct format_info info;
	struct lp_err err = { 0 };
	static const struct zran_tar_ops ops = { ref_entry, NULL };

	if (load_ref(rel, &gz) < 0) {
		failures++;
		return;
	}
	CHECK(gunzip_all(gz.p, gz.len, &tar) == 0);
	CHECK_OK(zran_tar_parse(tar.p, tar.len, &ops, &s, &err), &err);
	CHECK_U64(s.n, want_files);
	src = lp_source_new_mem(gz.p, gz.len, rel);
	CHECK(zran_ops.probe(src, NULL, &err) == 1);
	CHECK_OK(zran_ops.load(src, NULL, &m, &ctx, &info, &err), &err);
	if (!m)
		goto out;
	CHECK_U64(zran_ctx_index(ctx)->n_members, want_members);
	for (int i = 0; i < s.n; i++) {
		uint32_t ino = model_lookup_path(m, s.f[i].path);
		const struct model_inode *in = model_inode(m, ino);

		CHECK(in != NULL);
		if (!in)
			continue;
		CHECK_U64(in->size, s.f[i].size);
		for (uint32_t j = 0; j < in->count; j++) {
			const struct model_chunk *c = &m->chunks[in->first + j];
			uint8_t *out = lp_xmalloc(c->len + 1);

			CHECK_OK(zran_ops.decode_chunk(ctx, c, gz.p + c->comp_off,
						       c->comp_len, out, &err),
				 &err);
			CHECK_OK(model_chunk_verify(c, out, &err), &err);
			CHECK(!memcmp(out, tar.p + s.f[i].off + c->file_off,
				      c->len));
			free(out);
		}
	}
out:
	model_free(m);
	if (ctx)
		zran_ops.destroy(ctx);
	lp_source_free(src);
	free(gz.p);
	free(tar.p);
}

static void test_ref_tar(void)
{
	struct buf t = { 0 }, gz = { 0 };
	struct seen s;
	struct lp_err err = { 0 };
	struct lp_source *src;
	struct model *m = NULL;
	struct format_ctx *ctx = NULL;
	uint32_t h1, h2, h3, h4;

	if (load_ref("tar/all-entry-type.tar", &t) < 0) {
		failures++;
		return;
	}
	CHECK_OK(parse_both(&t, &s, &err), &err);
	CHECK_U64(s.n, 9);
	CHECK(!strcmp(s.path[0], "tar/") && s.type[0] == MODEL_DIR);
	CHECK(!strcmp(s.path[3], "tar/dir1/dir3/hardlink1.txt") &&
	      s.type[3] == MODEL_REG && s.size[3] == 15);
	CHECK(s.type[4] == MODEL_HARDLINK &&
	      !strcmp(s.link[4], "tar/dir1/dir3/hardlink1.txt"));
	CHECK(s.type[8] == MODEL_SYMLINK &&
	      !strcmp(s.link[8], "../dir1/dir3/file1.txt"));

	/* through gzip and the model */
	gz_member(&gz, t.p, t.len, 9, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "all-entry-type");
	CHECK_OK(zran_ops.load(src, NULL, &m, &ctx, NULL, &err), &err);
	if (m) {
		h1 = model_lookup_path(m, "/tar/dir1/dir3/hardlink1.txt");
		h2 = model_lookup_path(m, "/tar/dir1/dir3/xfile.txt");
		h3 = model_lookup_path(m, "/tar/dir1/hardlink2.txt");
		h4 = model_lookup_path(m, "/tar/dir2/hardlink3.txt");
		CHECK(h1 && h1 == h2 && h1 == h3 && h1 == h4);
		CHECK_U64(model_inode(m, h1)->nlink, 4);
		CHECK(model_lookup_path(m, "/tar/dir2/symlink1.txt") != 0);
	}
	model_free(m);
	if (ctx)
		zran_ops.destroy(ctx);
	lp_source_free(src);
	free(t.p);
	free(gz.p);

	/* bsdtar: LIBARCHIVE.xattr.* records are ignored like Go does, the
	 * long name comes from PAX */
	if (load_ref("tar/all-entry-type-macos.tar", &t) < 0) {
		failures++;
		return;
	}
	CHECK_OK(parse_both(&t, &s, &err), &err);
	CHECK_U64(s.n, 16);
	free(t.p);
	t.p = NULL;
	if (load_ref("tar/empty.tar", &t) == 0) {
		CHECK_OK(parse_both(&t, &s, &err), &err);
		CHECK_U64(s.n, 0);
		free(t.p);
	}
}

static void test_nydus_meta(void)
{
	struct buf b = { 0 };
	struct zran_nydus_meta *m = NULL;
	struct lp_err err = { 0 };

	if (load_ref("zran/233c72f2b6b698c07021c4da367cfe2dff4f049efbaa885ca0ff76"
		     "0ea297865a.blob.meta",
		     &b) < 0) {
		failures++;
		return;
	}
	CHECK_OK(zran_nydus_meta_parse(b.p, b.len, &m, &err), &err);
	if (m) {
		CHECK_U64(m->features, 0xf);
		CHECK_U64(m->n_chunks, 163);
		CHECK_U64(m->n_ctx, 21);
		CHECK_U64(m->dict_len, 20 * 32768);
		CHECK_U64(m->ctx[0].in_off, 10);
		CHECK_U64(m->ctx[0].in_len, 200380);
		CHECK_U64(m->ctx[0].out_off, 0);
		CHECK_U64(m->ctx[0].out_len, 1052790);
		CHECK_U64(m->ctx[0].dict_size, 0);
		CHECK_U64(m->ctx[1].in_off, 187761);
		CHECK_U64(m->ctx[1].dict_size, 32768);
		CHECK_U64(m->ctx[1].ctx_byte, 0x67);
		CHECK_U64(m->ctx[1].ctx_bits, 5);
		CHECK_U64(m->chunks[0].comp_off, 184);
		CHECK_U64(m->chunks[0].comp_size, 649);
		CHECK_U64(m->chunks[0].uncomp_off, 0);
		CHECK_U64(m->chunks[0].uncomp_size, 1404);
		CHECK_U64(m->chunks[0].ctx, 0);
		CHECK_U64(m->chunks[0].ctx_off, 1024);
		CHECK_U64(m->chunks[0].flags, 0x03);
		for (uint32_t i = 1; i < m->n_ctx; i++) {
			CHECK(m->ctx[i].dict_size == 32768);
			CHECK(m->ctx[i].in_off >= m->ctx[i - 1].in_off);
		}
		/* a decode needs the gzip layer, which is not shipped: a
		 * short range is reported, not a crash */
		uint8_t out[1404];

		memset(&err, 0, sizeof(err));
		CHECK(zran_nydus_decode(m, 0, "", 0, out, &err) < 0);
	}
	zran_nydus_meta_free(m);
	/* corruptions */
	memset(&err, 0, sizeof(err));
	CHECK(zran_nydus_meta_parse(b.p, b.len - 1, &m, &err) == -EBADMSG);
	b.p[b.len - 4096 + 12] ^= 1; /* s_ci_entries */
	memset(&err, 0, sizeof(err));
	CHECK(zran_nydus_meta_parse(b.p, b.len, &m, &err) == -EBADMSG);
	b.p[b.len - 4096 + 12] ^= 1;
	b.p[b.len - 4096 + 4] = 0x3; /* not zran */
	memset(&err, 0, sizeof(err));
	CHECK(zran_nydus_meta_parse(b.p, b.len, &m, &err) == -EOPNOTSUPP);
	free(b.p);
}

static void put64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * A blob.meta written from our own index (one zran context per checkpoint)
 * parses and decodes to the same bytes: the restore protocol of §3.4
 * (prime with prev >> (8 - bits), then the dictionary) is ours too.
 */
static void test_nydus_selfmade(void)
{
	struct buf tar = { 0 }, gz = { 0 }, meta = { 0 };
	struct gen_file files[32];
	struct lp_source *src;
	struct zran_index *idx = NULL;
	struct zran_nydus_meta *nm = NULL;
	struct lp_err err = { 0 };
	struct zran_build_opts o = { .span = 64 << 10, .chunk_max = 50000 };
	uint64_t dict_off = 0, uoff = 0, ci_size, hdr_at;

	gen_layer(&tar, files, 32, 3);
	gz_member(&gz, tar.p, tar.len / 2, 6, NULL);
	gz_member(&gz, tar.p + tar.len / 2, tar.len - tar.len / 2, 6, NULL);
	src = lp_source_new_mem(gz.p, gz.len, "n");
	CHECK_OK(zran_index_build(src, &o, &idx, &err), &err);
	if (!idx)
		goto out;
	/* CI entries */
	for (uint32_t i = 0; i < idx->n_chunks; i++) {
		const struct zran_ichunk *c = &idx->chunks[i];
		const struct zran_point *pt = &idx->points[c->point];
		uint8_t e[24];

		put64le(e, (uoff >> 12) | (uint64_t)(c->len - 1) << 32 |
				   (uint64_t)0x03 << 56);
		put64le(e + 8, c->comp_off | (c->comp_len & 0xffffff) << 40);
		put64le(e + 16, (uint64_t)c->point << 32 |
					(c->tar_off - pt->out_pos));
		buf_add(&meta, e, 24);
		uoff += (c->len + 4095) & ~4095u;
	}
	/* contexts: each covers its chunks */
	for (uint32_t p = 0; p < idx->n_points; p++) {
		const struct zran_point *pt = &idx->points[p];
		uint64_t in_end = pt->in_pos + 1, out_end = pt->out_pos + 1;
		uint8_t x[40] = { 0 };

		for (uint32_t i = 0; i < idx->n_chunks; i++) {
			const struct zran_ichunk *c = &idx->chunks[i];

			if (c->point != p)
				continue;
			if (c->comp_off + c->comp_len > in_end)
				in_end = c->comp_off + c->comp_len;
			if (c->tar_off + c->len > out_end)
				out_end = c->tar_off + c->len;
		}
		put64le(x, pt->in_pos);
		put64le(x + 8, pt->out_pos);
		put64le(x + 16, dict_off);
		put32le(x + 24, (uint32_t)(in_end - pt->in_pos));
		put32le(x + 28, (uint32_t)(out_end - pt->out_pos));
		put32le(x + 32, pt->window_len);
		x[36] = pt->prev;
		x[37] = pt->bits;
		buf_add(&meta, x, 40);
		dict_off += pt->window_len;
	}
	for (uint32_t p = 0; p < idx->n_points; p++) {
		uint8_t win[ZRAN_WINDOW_SIZE];

		CHECK_OK(zran_point_window(idx, p, win, &err), &err);
		buf_add(&meta, win, idx->points[p].window_len);
	}
	ci_size = meta.len;
	buf_zero(&meta, (4096 - meta.len % 4096) % 4096);
	hdr_at = meta.len;
	buf_zero(&meta, 4096);
	put32le(meta.p + hdr_at, ZRAN_NYDUS_META_MAGIC);
	put32le(meta.p + hdr_at + 4, 0xf);
	put32le(meta.p + hdr_at + 12, idx->n_chunks);
	put64le(meta.p + hdr_at + 32, ci_size);
	put64le(meta.p + hdr_at + 40, (uint64_t)idx->n_chunks * 24);
	put64le(meta.p + hdr_at + 48, ci_size - (uint64_t)idx->n_chunks * 24);
	put32le(meta.p + hdr_at + 56, idx->n_points);
	put32le(meta.p + hdr_at + 4092, ZRAN_NYDUS_META_MAGIC);

	CHECK_OK(zran_nydus_meta_parse(meta.p, meta.len, &nm, &err), &err);
	if (!nm)
		goto out;
	CHECK_U64(nm->n_chunks, idx->n_chunks);
	for (uint32_t i = 0; i < nm->n_chunks; i++) {
		const struct zran_nydus_chunk *c = &nm->chunks[i];
		const struct zran_nydus_ctx *x = &nm->ctx[c->ctx];
		uint8_t *out = lp_xmalloc(c->uncomp_size);

		CHECK_OK(zran_nydus_decode(nm, i, gz.p + x->in_off, x->in_len,
					   out, &err),
			 &err);
		CHECK(!memcmp(out, tar.p + x->out_off + c->ctx_off,
			      c->uncomp_size));
		free(out);
	}
out:
	zran_nydus_meta_free(nm);
	zran_index_free(idx);
	lp_source_free(src);
	free(tar.p);
	free(gz.p);
	free(meta.p);
}

#include <time.h>
/* Runs one test and says how long it took. */
#define T(call)                                                                \
	do {                                                                   \
		struct timespec _a, _b;                                        \
		clock_gettime(CLOCK_MONOTONIC, &_a);                           \
		call;                                                          \
		clock_gettime(CLOCK_MONOTONIC, &_b);                           \
		printf("%-60s %.3f s\n", #call,                                \
		       (double)(_b.tv_sec - _a.tv_sec) +                       \
			       (double)(_b.tv_nsec - _a.tv_nsec) / 1e9);       \
	} while (0)

int main(int argc, char **argv)
{
	if (argc > 1)
		refdir = argv[1];

	T(test_tar_basic());
	T(test_tar_errors());
	T(test_generated(1, 6, 64 << 10, 16 << 10));
	T(test_generated(1, 6, ZRAN_DEFAULT_SPAN, ZRAN_DEFAULT_CHUNK));
	T(test_generated(2, 6, 128 << 10, 1 << 20));
	T(test_generated(3, 1, 64 << 10, 100000));
	T(test_generated(2, 9, 128 << 10, 4096));
	T(test_concurrent());
	T(test_corrupt_index());
	T(test_windows_stored());
	T(test_save_keep());
	T(test_bad_gzip());
	T(test_ref_targz("zran/zran-single-stream.tar.gz", 1, 3));
	T(test_ref_targz("zran/zran-two-streams.tar.gz", 2, 3));
	T(test_ref_targz("zran/zran-zero-file.tar.gz", 1, 1));
	T(test_ref_tar());
	T(test_nydus_meta());
	T(test_nydus_selfmade());
	printf("%d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
