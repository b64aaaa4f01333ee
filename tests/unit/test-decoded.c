/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs/decoded: the on-disk store of decoded chunks — reads back exactly,
 * survives a reopen, never serves damaged bytes (flipped, truncated, torn
 * index), stays within its bound, one writer per segment; and the FUSE
 * read path on top of it (fsrv_read with a fake source).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/decoded.h"
#include "fs/fuse.h"

#define CHECK_WITH_MESSAGE
#include "check.h"

#define KEY_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define KEY_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static char dir[256];

static uint8_t byte_at(uint64_t seed, uint64_t off)
{
	uint64_t x = (off + seed * 7919) * 0x9E3779B97F4A7C15ull;

	return (uint8_t)(x >> 56);
}

/* A chunk of len bytes made from seed, with its sha256. */
static uint8_t *make_chunk(uint64_t seed, uint64_t len, struct model_chunk *c)
{
	uint8_t *d = malloc(len);

	for (uint64_t i = 0; i < len; i++)
		d[i] = byte_at(seed, i);
	memset(c, 0, sizeof(*c));
	c->len = len;
	c->digest_alg = MODEL_DIGEST_SHA256;
	lp_sha256(d, len, c->digest);
	return d;
}

static struct dstore *open_store(uint64_t max)
{
	struct dstore_opts o = { .dir = dir, .max_bytes = max,
				 .flush_ms = 10 };
	struct dstore *d = NULL;
	struct lp_err err = { 0 };

	if (dstore_open(&o, &d, &err) < 0) {
		fprintf(stderr, "dstore_open: %s\n", err.msg);
		exit(1);
	}
	return d;
}

static struct dstore_seg *seg(struct dstore *d, const char *key)
{
	struct dstore_seg *g = NULL;
	struct lp_err err = { 0 };

	CHECK(dstore_segment(d, key, &g, &err) == 0, "%s", err.msg);
	return g;
}

static bool read_ok(struct dstore_seg *g, const struct model_chunk *c,
		    const uint8_t *want, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	struct lp_err err = { 0 };
	int r = dstore_read(g, c, off, buf, len, &err);
	bool ok = r == 0 && !memcmp(buf, want + off, len);

	if (!ok)
		fprintf(stderr, "read %llu+%zu: %d %s\n",
			(unsigned long long)off, len, r, err.msg);
	free(buf);
	return ok;
}

static void path_of(char *out, size_t size, const char *hex, const char *ext)
{
	snprintf(out, size, "%s/%s.%s", dir, hex, ext);
}

static void test_roundtrip(void)
{
	struct model_chunk c1, c2, c3;
	uint8_t *d1 = make_chunk(1, 200000, &c1); /* 4 blocks, last partial */
	uint8_t *d2 = make_chunk(2, 100, &c2);
	uint8_t *d3 = make_chunk(3, 12u * DSTORE_BLOCK + 5, &c3);
	struct dstore *d = open_store(0);
	struct dstore_seg *g = seg(d, KEY_A);
	struct lp_err err = { 0 };
	uint8_t x;

	CHECK(!dstore_has(g, &c1), "empty store has a chunk");
	CHECK(dstore_read(g, &c1, 0, &x, 1, NULL) == -ENOENT, "read absent");
	CHECK(dstore_put(g, &c1, d1, &err) == 0, "%s", err.msg);
	CHECK(dstore_put(g, &c2, d2, &err) == 0, "%s", err.msg);
	CHECK(dstore_put(g, &c3, d3, &err) == 0, "%s", err.msg);
	CHECK(dstore_has(g, &c1) && dstore_has(g, &c2) && dstore_has(g, &c3),
	      "put chunks missing");
	/* same digest, other length: another chunk */
	c2.len = 99;
	CHECK(!dstore_has(g, &c2), "length ignored");
	c2.len = 100;
	for (uint64_t off = 0; off < c1.len; off += 12345)
		for (size_t len = 1; off + len <= c1.len; len = len * 3 + 1000)
			CHECK(read_ok(g, &c1, d1, off, len), "c1");
	CHECK(read_ok(g, &c1, d1, 0, 200000), "c1 whole");
	CHECK(read_ok(g, &c1, d1, 65536, 131072), "c1 two blocks");
	CHECK(read_ok(g, &c2, d2, 0, 100), "c2");
	CHECK(read_ok(g, &c2, d2, 99, 1), "c2 last byte");
	CHECK(read_ok(g, &c3, d3, 0, c3.len), "c3");
	CHECK(dstore_read(g, &c1, 199999, &x, 2, NULL) == -EINVAL,
	      "read past the chunk");
	dstore_close(d);

	/* a new process: the records are back */
	d = open_store(0);
	g = seg(d, KEY_A);
	CHECK(dstore_has(g, &c1) && dstore_has(g, &c2) && dstore_has(g, &c3),
	      "chunks lost over a reopen");
	CHECK(read_ok(g, &c1, d1, 1000, 150000), "c1 after reopen");
	CHECK(read_ok(g, &c3, d3, 70000, 70000), "c3 after reopen");
	dstore_close(d);
	free(d1);
	free(d2);
	free(d3);
}

/* Flips one byte of the data file at off. */
static void flip(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b = 0;

	CHECK(fd >= 0, "%s", path);
	CHECK(pread(fd, &b, 1, (off_t)off) == 1, "pread");
	b ^= 0x5a;
	CHECK(pwrite(fd, &b, 1, (off_t)off) == 1, "pwrite");
	close(fd);
}

static void test_corrupt(void)
{
	struct model_chunk c1, c2;
	uint8_t *d1 = make_chunk(11, 300000, &c1);
	uint8_t *d2 = make_chunk(12, 5000, &c2);
	const char *hex = KEY_B;
	char data[512], idx[512];
	struct dstore *d = open_store(0);
	struct dstore_seg *g = seg(d, KEY_B);
	struct dstore_stats st;
	struct lp_err err = { 0 };
	uint8_t *buf = malloc(c1.len);
	struct stat sb;
	int fd;

	path_of(data, sizeof(data), hex, "data");
	path_of(idx, sizeof(idx), hex, "idx");
	CHECK(dstore_put(g, &c1, d1, &err) == 0, "%s", err.msg);
	CHECK(dstore_put(g, &c2, d2, &err) == 0, "%s", err.msg);
	dstore_close(d);

	/* a flipped byte in block 2 of c1: reads of block 2 fail and drop
	 * the entry; other chunks are untouched */
	flip(data, 2 * DSTORE_BLOCK + 17);
	d = open_store(0);
	g = seg(d, KEY_B);
	CHECK(read_ok(g, &c1, d1, 0, DSTORE_BLOCK), "block 0 still fine");
	CHECK(dstore_read(g, &c1, 2 * DSTORE_BLOCK + 10, buf, 100, &err) ==
		      -EBADMSG,
	      "flipped byte served");
	CHECK(strstr(err.msg, "checksum"), "message: %s", err.msg);
	CHECK(!dstore_has(g, &c1), "bad entry kept");
	CHECK(dstore_read(g, &c1, 0, buf, 10, NULL) == -ENOENT,
	      "bad entry still read");
	CHECK(read_ok(g, &c2, d2, 0, c2.len), "c2 after c1 went bad");
	dstore_get_stats(d, &st);
	CHECK(st.bad_blocks == 1, "bad %llu", (unsigned long long)st.bad_blocks);
	/* storing it again (a fresh decode) replaces the bad copy */
	CHECK(dstore_put(g, &c1, d1, &err) == 0, "%s", err.msg);
	CHECK(read_ok(g, &c1, d1, 0, c1.len), "c1 stored again");
	dstore_close(d);
	d = open_store(0);
	g = seg(d, KEY_B);
	CHECK(read_ok(g, &c1, d1, 0, c1.len), "the newer copy wins");
	dstore_close(d);

	/* the data file cut short: records past its end are not loaded,
	 * and what remains of a cut chunk does not verify */
	CHECK(stat(data, &sb) == 0, "stat");
	CHECK(truncate(data, sb.st_size - 5000) == 0, "truncate");
	d = open_store(0);
	g = seg(d, KEY_B);
	/* the newer copy of c1 is cut, the older one is the flipped one */
	CHECK(dstore_read(g, &c1, 0, buf, c1.len, NULL) < 0,
	      "a cut or damaged chunk served");
	CHECK(read_ok(g, &c2, d2, 0, c2.len), "c2 after the cut");
	dstore_close(d);

	/* a torn index record: the good prefix stays, the file is cut */
	CHECK(stat(idx, &sb) == 0, "stat");
	fd = open(idx, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "LPDR\x01\0\0\0garbage", 15) == 15,
	      "append");
	close(fd);
	d = open_store(0);
	g = seg(d, KEY_B);
	CHECK(read_ok(g, &c2, d2, 0, c2.len), "c2 after a torn record");
	dstore_close(d);
	{
		struct stat sa;

		CHECK(stat(idx, &sa) == 0 && sa.st_size == sb.st_size,
		      "torn tail not cut: %lld vs %lld",
		      (long long)sa.st_size, (long long)sb.st_size);
	}

	/* a bad index header: the segment starts over, empty */
	flip(idx, 3);
	d = open_store(0);
	g = seg(d, KEY_B);
	CHECK(!dstore_has(g, &c2), "chunk of a bad index served");
	CHECK(stat(data, &sb) == 0 && sb.st_size == 0, "data not emptied");
	dstore_close(d);
	free(buf);
	free(d1);
	free(d2);
}

static void test_busy_and_bound(void)
{
	struct model_chunk c1, c2;
	uint8_t *d1 = make_chunk(21, 1u << 20, &c1);
	uint8_t *d2 = make_chunk(22, 1u << 20, &c2);
	struct dstore *d = open_store(0), *d2s;
	struct dstore_seg *g = seg(d, KEY_C), *g2 = NULL;
	struct lp_err err = { 0 };
	int64_t left;

	CHECK(dstore_put(g, &c1, d1, &err) == 0, "%s", err.msg);
	/* another process (another open file) cannot have it */
	d2s = open_store(0);
	CHECK(dstore_segment(d2s, KEY_C, &g2, &err) == -EBUSY, "%s", err.msg);
	CHECK(dstore_segment(d2s, "sha256:xyz", &g2, NULL) == -EINVAL,
	      "bad key");
	/* a gc cannot remove a segment in use */
	left = dstore_gc(d2s, 0);
	CHECK(left >= (int64_t)c1.len, "in-use segment evicted (%lld)",
	      (long long)left);
	dstore_close(d2s);
	dstore_close(d);

	/* bounded: 1.5 MiB holds one chunk; A and B are not in use, so the
	 * first put evicts them; a second chunk in the same (in-use)
	 * segment does not fit */
	d = open_store(3u << 19);
	g = seg(d, KEY_C);
	CHECK(dstore_has(g, &c1), "c1 lost");
	lp_err_clear(&err);
	left = dstore_put(g, &c2, d2, &err);
	CHECK(left == -ENOSPC, "over the bound: %lld %s", (long long)left,
	      err.msg);
	dstore_close(d);
	{
		char p[512];
		struct stat sb;

		path_of(p, sizeof(p), &KEY_A[7], "data");
		CHECK(stat(p, &sb) < 0, "unused segment A not evicted");
	}
	free(d1);
	free(d2);
}

/* ---- through the FUSE read path ---------------------------------------- */

struct fake {
	const struct model *m;
	uint8_t *bytes; /* the file */
	uint32_t calls; /* atomic */
};

static int fake_read_chunk(void *priv, uint32_t idx, void *out,
			   struct lp_err *err)
{
	struct fake *f = priv;
	const struct model_chunk *c = &f->m->chunks[idx];

	(void)err;
	__atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
	memcpy(out, f->bytes + c->file_off, c->len);
	return 0;
}

static const struct fsrv_source_ops fake_ops = {
	.read_chunk = fake_read_chunk,
};

static struct model *make_model(uint8_t **ret_bytes, uint64_t size,
				uint64_t chunk)
{
	struct model_builder *b = model_builder_new(0);
	struct model_entry e = { 0 };
	struct lp_err err = { 0 };
	struct model *m = NULL;
	uint8_t *bytes = malloc(size);
	uint32_t id, blob;

	for (uint64_t i = 0; i < size; i++)
		bytes[i] = byte_at(99, i);
	if (model_builder_add_blob(b, "sha256:dddddddddddddddddddddddddddddddd"
				      "dddddddddddddddddddddddddddddddd",
				   NULL, 0, &blob, &err) < 0)
		goto fail;
	e.path = "f";
	e.path_len = 1;
	e.type = MODEL_REG;
	e.mode = 0644;
	e.size = size;
	if (model_builder_add(b, &e, &id, &err) < 0)
		goto fail;
	for (uint64_t off = 0; off < size; off += chunk) {
		struct model_chunk c = { 0 };

		c.file_off = off;
		c.len = size - off < chunk ? size - off : chunk;
		c.blob = blob;
		c.digest_alg = MODEL_DIGEST_SHA256;
		lp_sha256(bytes + off, c.len, c.digest);
		if (model_builder_add_chunk(b, id, &c, &err) < 0)
			goto fail;
	}
	if (model_builder_finish(b, &m, &err) < 0)
		goto fail;
	*ret_bytes = bytes;
	return m;
fail:
	fprintf(stderr, "builder: %s\n", err.msg);
	exit(1);
}

static bool fsrv_reads_ok(struct fsrv *s, uint32_t ino, const uint8_t *want,
			  uint64_t size)
{
	uint8_t *buf = malloc(size);
	bool ok = true;

	/* whole, then odd pieces */
	ok &= fsrv_read(s, ino, buf, size, 0, NULL) == (int64_t)size &&
	      !memcmp(buf, want, size);
	for (uint64_t off = 0; ok && off < size; off += 77777) {
		size_t len = 100000;

		if (len > size - off)
			len = (size_t)(size - off);
		ok &= fsrv_read(s, ino, buf, len, off, NULL) == (int64_t)len &&
		      !memcmp(buf, want + off, len);
	}
	free(buf);
	return ok;
}

static void test_fsrv(void)
{
	const uint64_t size = 1000000, chunk = 300000;
	uint8_t *bytes = NULL;
	struct model *m = make_model(&bytes, size, chunk);
	struct fake f = { .m = m, .bytes = bytes };
	struct fsrv_opts o = { .decoded_dir = dir };
	uint32_t ino = model_lookup_path(m, "/f");
	struct fsrv *s = NULL;
	struct fsrv_stats st;
	struct lp_err err = { 0 };
	char data[512];

	CHECK(fsrv_new(m, &fake_ops, &f, &o, &s, &err) == 0, "%s", err.msg);
	CHECK(fsrv_reads_ok(s, ino, bytes, size), "first mount");
	CHECK(f.calls == 4, "decoded %u chunks", f.calls);
	fsrv_get_stats(s, &st);
	CHECK(st.store_puts == 4, "stored %llu",
	      (unsigned long long)st.store_puts);
	CHECK(st.cache_entries == 0, "stored chunks kept in memory: %llu",
	      (unsigned long long)st.cache_entries);
	fsrv_free(s);

	/* the next server reads everything from the store */
	f.calls = 0;
	CHECK(fsrv_new(m, &fake_ops, &f, &o, &s, &err) == 0, "%s", err.msg);
	CHECK(fsrv_reads_ok(s, ino, bytes, size), "second mount");
	CHECK(f.calls == 0, "decoded %u chunks with a warm store", f.calls);
	fsrv_free(s);

	/* damage chunk 1 on disk: the next server decodes it again and
	 * serves the right bytes */
	path_of(data, sizeof(data), "dddddddddddddddddddddddddddddddd"
		"dddddddddddddddddddddddddddddddd", "data");
	flip(data, 303104 + 1000); /* chunk 1: 300000 rounded up to 4 KiB */
	f.calls = 0;
	CHECK(fsrv_new(m, &fake_ops, &f, &o, &s, &err) == 0, "%s", err.msg);
	CHECK(fsrv_reads_ok(s, ino, bytes, size), "after damage");
	CHECK(f.calls == 1, "decoded %u chunks after damaging one", f.calls);
	fsrv_get_stats(s, &st);
	CHECK(st.store_bad == 1, "bad %llu", (unsigned long long)st.store_bad);
	fsrv_free(s);
	model_free(m);
	free(bytes);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test-decoded.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_roundtrip();
	test_corrupt();
	test_busy_and_bound();
	test_fsrv();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
