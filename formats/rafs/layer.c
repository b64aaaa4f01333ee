// SPDX-License-Identifier: Apache-2.0
/*
 * nydus bootstrap layers: a tar.gz holding image/image.boot (spec §4.2).
 *
 * This is a deliberately small tar walk (ustar/GNU names, GNU long names,
 * PAX path records, octal and base-256 sizes) over a streaming gunzip; it
 * only has to find one file.  TODO: use the shared tar parser once one
 * exists below formats/ (formats may not depend on each other).
 */
#define LP_MODNAME "rafs"
#include <zlib.h>

#include "formats/rafs/rafs-int.h"

#define GZ_IN_SIZE (64u * 1024)
#define TAR_BLOCK 512u
#define TAR_NAME_MAX 4096u

struct gz {
	struct lp_source *src;
	uint64_t off; /* next compressed byte to read */
	z_stream zs;
	bool init, end;
	uint8_t in[GZ_IN_SIZE];
	struct lp_err *err;
};

static int gz_open(struct gz *g, struct lp_source *src, struct lp_err *err)
{
	memset(&g->zs, 0, sizeof(g->zs));
	g->src = src;
	g->off = 0;
	g->end = false;
	g->err = err;
	if (inflateInit2(&g->zs, 15 + 16) != Z_OK)
		return lp_err_set(err, ENOMEM, "inflateInit failed");
	g->init = true;
	return 0;
}

static void gz_close(struct gz *g)
{
	if (g->init)
		inflateEnd(&g->zs);
	g->init = false;
}

/* Fills len bytes; returns bytes read (< len only at the end of the
 * stream) or -errno. */
static int64_t gz_read(struct gz *g, void *buf, size_t len)
{
	g->zs.next_out = buf;
	g->zs.avail_out = (uInt)len;
	while (g->zs.avail_out && !g->end) {
		int zr;

		if (!g->zs.avail_in) {
			uint64_t left = g->src->size - g->off;
			size_t n =
				left < GZ_IN_SIZE ? (size_t)left : GZ_IN_SIZE;
			int r;

			if (n == 0)
				return lp_err_set(g->err, EINVAL,
						  "%s: truncated gzip stream",
						  g->src->name);
			r = lp_source_read_full(g->src, g->in, n, g->off,
						g->err);
			if (r < 0)
				return r;
			g->off += n;
			g->zs.next_in = g->in;
			g->zs.avail_in = (uInt)n;
		}
		zr = inflate(&g->zs, Z_NO_FLUSH);
		if (zr == Z_STREAM_END) {
			/* Another gzip member may follow. */
			if (g->zs.avail_in == 0 && g->off == g->src->size) {
				g->end = true;
			} else {
				uint8_t m[2];

				if (g->zs.avail_in == 0) {
					int r = lp_source_read_full(
						g->src, g->in, 1, g->off,
						g->err);
					if (r < 0)
						return r;
					g->off++;
					g->zs.next_in = g->in;
					g->zs.avail_in = 1;
				}
				m[0] = g->zs.next_in[0];
				if (m[0] != 0x1f)
					g->end = true; /* trailing garbage */
				else
					inflateReset(&g->zs);
			}
		} else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			return lp_err_set(g->err, EINVAL, "%s: gzip: %s",
					  g->src->name,
					  g->zs.msg ? g->zs.msg : "corrupt");
		}
	}
	return (int64_t)(len - g->zs.avail_out);
}

static int gz_skip(struct gz *g, uint64_t n)
{
	uint8_t buf[8192];

	while (n) {
		size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);
		int64_t r = gz_read(g, buf, k);

		if (r < 0)
			return (int)r;
		if ((size_t)r != k)
			return lp_err_set(g->err, EINVAL,
					  "%s: tar entry truncated",
					  g->src->name);
		n -= k;
	}
	return 0;
}

static int tar_number(const uint8_t *f, size_t len, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) { /* base-256 */
		if (f[0] != 0x80)
			return -EINVAL;
		for (i = 1; i < len; i++) {
			if (v >> 56)
				return -EINVAL;
			v = v << 8 | f[i];
		}
		*ret = v;
		return 0;
	}
	while (i < len && f[i] == ' ')
		i++;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -EINVAL;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	if (i < len && f[i] != ' ' && f[i] != '\0')
		return -EINVAL;
	*ret = v;
	return 0;
}

static bool tar_checksum_ok(const uint8_t *h)
{
	uint64_t want, sum = 0;

	if (tar_number(h + 148, 8, &want) < 0)
		return false;
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return sum == want;
}

/* Which bootstrap name is this?  2: image/image.boot, 1: image.boot. */
static int boot_name(const char *name)
{
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	while (name[0] == '/')
		name++;
	if (!strcmp(name, "image/image.boot"))
		return 2;
	if (!strcmp(name, "image.boot"))
		return 1;
	return 0;
}

/* PAX extended header: "<len> key=value\n" records; we want path. */
static void pax_path(const char *d, size_t n, char *name)
{
	size_t pos = 0;

	while (pos < n) {
		uint64_t rl = 0;
		size_t i = pos;
		const char *kv, *eq;

		while (i < n && d[i] >= '0' && d[i] <= '9' && rl < n)
			rl = rl * 10 + (uint64_t)(d[i++] - '0');
		if (i >= n || d[i] != ' ' || rl <= i - pos + 1 || rl > n - pos)
			return;
		kv = d + i + 1;
		eq = memchr(kv, '=', d + pos + rl - kv);
		if (eq && eq - kv == 4 && !memcmp(kv, "path", 4)) {
			size_t vl = (size_t)(d + pos + rl - 1 - (eq + 1));

			if (vl < TAR_NAME_MAX) {
				memcpy(name, eq + 1, vl);
				name[vl] = '\0';
			}
		}
		pos += rl;
	}
}

/* Reads a tar entry's data; the buffer grows as data arrives, so a lying
 * size field cannot make us allocate more than the stream holds. */
static int read_entry(struct gz *g, uint64_t size, void **ret)
{
	uint8_t *buf = NULL;
	size_t cap = 0, done = 0;

	if (size > RAFS_BOOTSTRAP_MAX)
		return lp_err_set(g->err, EFBIG,
				  "%s: bootstrap of %llu bytes is too big",
				  g->src->name, (unsigned long long)size);
	while (done < size || !buf) {
		size_t want = size - done > (1u << 20) ? (1u << 20)
						       : (size_t)(size - done);
		int64_t n;

		lp_grow((void **)&buf, 1, &cap, done + want + 1);
		n = gz_read(g, buf + done, want);
		if (n < 0 || (size_t)n != want) {
			free(buf);
			return n < 0 ? (int)n
				     : lp_err_set(g->err, EINVAL,
						  "%s: tar entry truncated",
						  g->src->name);
		}
		done += want;
	}
	*ret = buf;
	return 0;
}

static int walk_layer(struct gz *g, void **ret_data, size_t *ret_len)
{
	uint8_t h[TAR_BLOCK];
	char name[TAR_NAME_MAX + 1], long_name[TAR_NAME_MAX + 1];
	bool have_long = false;
	void *fallback = NULL;
	uint64_t fallback_len = 0;
	int r;

	for (;;) {
		uint64_t size, padded;
		int64_t n = gz_read(g, h, TAR_BLOCK);
		int which;
		char type;

		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if (n == 0 || (n == TAR_BLOCK && !h[0] &&
			       !memcmp(h, h + 1, TAR_BLOCK - 1)))
			break; /* end of archive */
		if (n != TAR_BLOCK || !tar_checksum_ok(h) ||
		    tar_number(h + 124, 12, &size) < 0) {
			r = lp_err_set(g->err, EINVAL,
				       "%s: not a tar archive (bad header)",
				       g->src->name);
			goto out;
		}
		type = (char)h[156];
		padded = (size + TAR_BLOCK - 1) & ~(uint64_t)(TAR_BLOCK - 1);
		if (type == 'L' || type == 'x') {
			char *d;

			if (size > TAR_NAME_MAX * 4) {
				r = lp_err_set(g->err, EINVAL,
					       "%s: oversized tar header entry",
					       g->src->name);
				goto out;
			}
			r = read_entry(g, size, (void **)&d);
			if (r < 0)
				goto out;
			if (type == 'L') {
				size_t l = strnlen(d, size);

				if (l <= TAR_NAME_MAX) {
					memcpy(long_name, d, l);
					long_name[l] = '\0';
					have_long = true;
				}
			} else {
				long_name[0] = '\0';
				pax_path(d, size, long_name);
				have_long = long_name[0] != '\0';
			}
			free(d);
			r = gz_skip(g, padded - size);
			if (r < 0)
				goto out;
			continue;
		}
		if (have_long) {
			memcpy(name, long_name, sizeof(name));
			have_long = false;
		} else {
			size_t nl = strnlen((const char *)h, 100), pl = 0;

			/* POSIX ustar has a prefix field; GNU does not. */
			if (!memcmp(h + 257, "ustar\0", 6))
				pl = strnlen((const char *)h + 345, 155);
			if (pl) {
				memcpy(name, h + 345, pl);
				name[pl] = '/';
				memcpy(name + pl + 1, h, nl);
				name[pl + 1 + nl] = '\0';
			} else {
				memcpy(name, h, nl);
				name[nl] = '\0';
			}
		}
		which = (type == '0' || type == '\0' || type == '7')
				? boot_name(name)
				: 0;
		if (which == 2 || (which == 1 && !fallback)) {
			void *data;

			r = read_entry(g, size, &data);
			if (r < 0)
				goto out;
			if (which == 2) {
				free(fallback);
				*ret_data = data;
				*ret_len = (size_t)size;
				return 0;
			}
			fallback = data;
			fallback_len = size;
			r = gz_skip(g, padded - size);
		} else {
			r = gz_skip(g, padded);
		}
		if (r < 0)
			goto out;
	}
	if (fallback) {
		*ret_data = fallback;
		*ret_len = (size_t)fallback_len;
		return 0;
	}
	return lp_err_set(g->err, ENOENT,
			  "%s: no image/image.boot in the bootstrap layer",
			  g->src->name);
out:
	free(fallback);
	return r;
}

int rafs_layer_extract_bootstrap(struct lp_source *layer, void **ret_data,
				 size_t *ret_len, struct lp_err *err)
{
	struct gz *g = lp_xmalloc(sizeof(*g));
	int r;

	g->init = false;
	r = gz_open(g, layer, err);
	if (r == 0)
		r = walk_layer(g, ret_data, ret_len);
	gz_close(g);
	free(g);
	return r;
}

/* The first tar entry of a gzip layer, for probing: 1 when it is part of
 * a nydus bootstrap layer ("image/", "image/image.boot", "image.boot"). */
int rafs_layer_probe(struct lp_source *layer, struct lp_err *err)
{
	struct gz *g = lp_xmalloc(sizeof(*g));
	uint8_t h[TAR_BLOCK];
	char name[101];
	int64_t n;
	int r = 0;

	g->init = false;
	if (gz_open(g, layer, NULL) < 0)
		goto out;
	n = gz_read(g, h, TAR_BLOCK);
	if (n != TAR_BLOCK || !tar_checksum_ok(h))
		goto out;
	memcpy(name, h, 100);
	name[100] = '\0';
	r = boot_name(name) ||
	    !strcmp(name[0] == '.' && name[1] == '/' ? name + 2 : name,
		    "image/");
out:
	(void)err;
	gz_close(g);
	free(g);
	return r;
}

int rafs_read_bootstrap(struct lp_source *src, void **ret_data, size_t *ret_len,
			struct lp_err *err)
{
	uint8_t magic[2];
	void *buf;
	int r;

	if (src->size >= 2) {
		r = lp_source_read_full(src, magic, 2, 0, err);
		if (r < 0)
			return r;
		if (magic[0] == 0x1f && magic[1] == 0x8b)
			return rafs_layer_extract_bootstrap(src, ret_data,
							    ret_len, err);
	}
	if (src->size > RAFS_BOOTSTRAP_MAX)
		return lp_err_set(err, EFBIG,
				  "%s: bootstrap of %llu bytes is too big",
				  src->name, (unsigned long long)src->size);
	buf = lp_xmalloc(src->size ? (size_t)src->size : 1);
	r = lp_source_read_full(src, buf, (size_t)src->size, 0, err);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret_data = buf;
	*ret_len = (size_t)src->size;
	return 0;
}
