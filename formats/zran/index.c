/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building the checkpoint index in one streaming pass.
 *
 * The gzip stream is inflated with Z_BLOCK so every call stops at a deflate
 * block boundary; the output goes straight into the tar parser, which
 * hands regular-file bytes to the chunker.  A checkpoint is recorded at the
 * first block boundary at least `span` bytes after the previous one, and
 * the chunk being filled is cut there, so a file's chunks start at
 * checkpoints (aux_off 0) once the file is larger than a span; a small file
 * is one chunk decoded from the checkpoint before it.  A chunk is never
 * longer than chunk_max.
 *
 * Span trade-off, measured with bench/bench-zran.c on a 159 MB gzip -6
 * layer (393 MB of tar: /usr/lib/gcc, /usr/share/doc, /usr/share/perl;
 * 9984 files) on an idle 2-core VM.  A read inflates its whole chunk from
 * the checkpoint (it must verify the digest), so its cost and its fetch
 * grow with the span, while the index shrinks with 1/span:
 *
 *   span     checkpoints  index file     4 KiB read         mean fetch
 *                         (% of layer)   median / p90       per chunk
 *   256 KiB  1220         21.5 MB (13%)  0.42 / 0.80 ms     83 KiB
 *   1 MiB     351          7.5 MB (4.7%) 1.06 / 2.85 ms    254 KiB
 *   4 MiB      93          3.6 MB (2.2%) 4.1 / 10.8 ms    1074 KiB
 *
 * The build itself costs the same for every span: 1.6 s, 0.78x `gzip -dc`
 * and 1.37x a bare zlib inflate of the same layer (sha256 of every chunk
 * and of the stream, the tar parse and the Z_BLOCK stops are the rest).
 * The default is 256 KiB: windows stay deflated in the index file and are
 * read back only when a decode starts from them, so a larger index costs
 * disk, not memory, and the first run of a container (a Python start
 * reads ~180 files, each inflated from its checkpoint) inflates a quarter
 * as much: python:org on the shaped link (bench/coldstart, lazy:org) went
 * 8.40 -> 8.29 s median of 3 interleaved pairs, RSS unchanged.
 */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <string.h>
#include <zlib.h>

#include "formats/zran/zran-int.h"

#define READ_BLOCK (1u << 20)
#define OUT_BLOCK (64u << 10)
/* Extra compressed bytes after a chunk's end; decode stops after len
 * bytes anyway. */
#define COMP_MARGIN 64u

struct zran_index *zran_index_new(void)
{
	struct zran_index *idx = lp_xcalloc(1, sizeof(*idx));

	/* offset 0 of the string table is the empty string */
	idx->cap_strtab = 4096;
	idx->strtab = lp_xmalloc(idx->cap_strtab);
	idx->strtab[0] = '\0';
	idx->strtab_len = 1;
	idx->wfd = -1;
	idx->cache = zran_cache_new();
	return idx;
}

void zran_index_free(struct zran_index *idx)
{
	if (!idx)
		return;
	zran_cache_free(idx->cache);
	if (idx->wfd >= 0)
		close(idx->wfd);
	free(idx->wins);
	free(idx->points);
	free(idx->entries);
	free(idx->xattrs);
	free(idx->chunks);
	free(idx->strtab);
	free(idx);
}

void zran_index_drop_listing(struct zran_index *idx)
{
	free(idx->entries);
	free(idx->xattrs);
	free(idx->chunks);
	free(idx->strtab);
	idx->entries = NULL;
	idx->xattrs = NULL;
	idx->chunks = NULL;
	idx->strtab = NULL;
	idx->cap_entries = idx->cap_xattrs = idx->cap_chunks = 0;
	idx->cap_strtab = 0;
	idx->no_listing = true;
}

int zran_index_add_str(struct zran_index *idx, const void *s, size_t len,
		       uint32_t *ret_off, struct lp_err *err)
{
	if (!len) {
		*ret_off = 0;
		return 0;
	}
	if (len >= UINT32_MAX - 1 ||
	    (uint64_t)idx->strtab_len + len + 1 > UINT32_MAX)
		return lp_err_set(err, E2BIG, "zran: string table over 4 GiB");
	lp_grow((void **)&idx->strtab, 1, &idx->cap_strtab,
		(size_t)idx->strtab_len + len + 1);
	memcpy(idx->strtab + idx->strtab_len, s, len);
	idx->strtab[idx->strtab_len + len] = '\0';
	*ret_off = idx->strtab_len;
	idx->strtab_len += (uint32_t)(len + 1);
	return 0;
}

void zran_index_stats(const struct zran_index *idx,
		      struct zran_index_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->gzip_size = idx->gzip_size;
	ret->tar_size = idx->tar_size;
	ret->span = idx->span;
	ret->chunk_max = idx->chunk_max;
	ret->n_checkpoints = idx->n_points;
	ret->n_entries = idx->n_entries;
	ret->n_chunks = idx->n_chunks;
	ret->n_members = idx->n_members;
	memcpy(ret->gzip_sha256, idx->gzip_sha256, 32);
}

/* ---- the streaming pass ----------------------------------------------- */

struct zran_build {
	struct zran_index *idx;
	uint64_t src_size;
	uint64_t in_now; /* gzip offset consumed after the current call */

	/* the regular file being read */
	uint32_t cur_entry;
	uint64_t file_end; /* tar offset after its data */
	/* the chunk being filled */
	bool open;
	struct zran_ichunk cur;
	struct lp_sha256_ctx *sha;
	/* compresses the windows as the index file stores them */
	z_stream def;
	bool def_live;
};

static int close_chunk(struct zran_build *b, struct lp_err *err)
{
	struct zran_index *idx = b->idx;
	struct zran_ichunk *c = &b->cur;
	uint64_t end = b->in_now + COMP_MARGIN;

	if (end > b->src_size)
		end = b->src_size;
	c->comp_off = idx->points[c->point].in_pos;
	c->comp_len = end - c->comp_off;
	lp_sha256_final(b->sha, c->digest);
	b->sha = NULL;
	b->open = false;
	if (idx->n_chunks == UINT32_MAX)
		return lp_err_set(err, E2BIG, "zran: too many chunks");
	lp_grow((void **)&idx->chunks, sizeof(*idx->chunks), &idx->cap_chunks,
		(size_t)idx->n_chunks + 1);
	idx->chunks[idx->n_chunks++] = *c;
	idx->entries[b->cur_entry].n_chunks++;
	return 0;
}

static int b_entry(void *data, const struct zran_tar_entry *e,
		   struct lp_err *err)
{
	struct zran_build *b = data;
	struct zran_index *idx = b->idx;
	struct zran_ientry *ie;
	int r;

	if (idx->n_entries >= UINT32_MAX - 1)
		return lp_err_set(err, E2BIG, "zran: too many entries");
	lp_grow((void **)&idx->entries, sizeof(*idx->entries),
		&idx->cap_entries, (size_t)idx->n_entries + 1);
	ie = &idx->entries[idx->n_entries];
	memset(ie, 0, sizeof(*ie));
	ie->type = (uint8_t)e->type;
	ie->mode = e->mode;
	ie->uid = e->uid;
	ie->gid = e->gid;
	ie->size = e->size;
	ie->mtime = e->mtime;
	ie->dev_major = e->dev_major;
	ie->dev_minor = e->dev_minor;
	ie->hdr_off = e->hdr_off;
	ie->data_off = e->data_off;
	r = zran_index_add_str(idx, e->path, e->path_len, &ie->path, err);
	if (r < 0)
		return r;
	ie->path_len = (uint32_t)e->path_len;
	r = zran_index_add_str(idx, e->link, e->link_len, &ie->link, err);
	if (r < 0)
		return r;
	ie->link_len = (uint32_t)e->link_len;
	ie->xattr_first = idx->n_xattrs;
	if ((uint64_t)idx->n_xattrs + e->n_xattrs >= UINT32_MAX)
		return lp_err_set(err, E2BIG, "zran: too many xattrs");
	for (size_t i = 0; i < e->n_xattrs; i++) {
		const struct zran_tar_xattr *x = &e->xattrs[i];
		struct zran_ixattr ix;
		size_t nl = strlen(x->name);

		r = zran_index_add_str(idx, x->name, nl, &ix.name, err);
		if (r < 0)
			return r;
		ix.name_len = (uint32_t)nl;
		r = zran_index_add_str(idx, x->value, x->value_len, &ix.value,
				       err);
		if (r < 0)
			return r;
		ix.value_len = (uint32_t)x->value_len;
		lp_grow((void **)&idx->xattrs, sizeof(*idx->xattrs),
			&idx->cap_xattrs, (size_t)idx->n_xattrs + 1);
		idx->xattrs[idx->n_xattrs++] = ix;
	}
	ie->n_xattrs = (uint32_t)e->n_xattrs;
	ie->chunk_first = idx->n_chunks;
	b->cur_entry = idx->n_entries++;
	b->file_end = e->data_off + e->size;
	return 0;
}

static int b_data(void *data, const void *buf, size_t len, uint64_t tar_off,
		  struct lp_err *err)
{
	struct zran_build *b = data;
	struct zran_index *idx = b->idx;
	const uint8_t *p = buf;
	int r;

	while (len) {
		if (!b->open) {
			if (!idx->n_points)
				return lp_err_set(err, EINVAL,
						  "zran: data before the first "
						  "checkpoint");
			memset(&b->cur, 0, sizeof(b->cur));
			b->cur.tar_off = tar_off;
			b->cur.point = idx->n_points - 1;
			b->sha = lp_sha256_new();
			b->open = true;
		}
		size_t n = idx->chunk_max - b->cur.len;

		if (n > len)
			n = len;
		lp_sha256_update(b->sha, p, n);
		b->cur.len += (uint32_t)n;
		tar_off += n;
		p += n;
		len -= n;
		if (b->cur.len == idx->chunk_max || tar_off == b->file_end) {
			r = close_chunk(b, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static const struct zran_tar_ops build_tar_ops = {
	.entry = b_entry,
	.file_data = b_data,
};

/*
 * Appends a point's window to the window area in its stored form: deflated
 * at level 1 (what compress2() would write) when that is smaller, else
 * raw.  The index never holds it inflated, and saving it copies it as is.
 */
static int store_window(struct zran_build *b, struct zran_point *pt,
			const uint8_t *win, uint32_t wlen, struct lp_err *err)
{
	struct zran_index *idx = b->idx;
	uLong bound;
	int zr;

	if (!b->def_live) {
		memset(&b->def, 0, sizeof(b->def));
		if (deflateInit(&b->def, 1) != Z_OK)
			return lp_err_set(err, ENOMEM,
					  "zran: deflateInit failed");
		b->def_live = true;
	} else if (deflateReset(&b->def) != Z_OK) {
		return lp_err_set(err, EIO, "zran: deflateReset failed");
	}
	bound = deflateBound(&b->def, wlen);
	if (bound < wlen)
		bound = wlen;
	lp_grow((void **)&idx->wins, 1, &idx->cap_wins,
		(size_t)idx->wins_len + bound);
	pt->woff = idx->wins_len;
	b->def.next_in = (Bytef *)win;
	b->def.avail_in = wlen;
	b->def.next_out = idx->wins + idx->wins_len;
	b->def.avail_out = (uInt)bound;
	zr = deflate(&b->def, Z_FINISH);
	if (zr == Z_STREAM_END && b->def.total_out < wlen) {
		pt->wenc = ZRAN_WIN_ZLIB;
		pt->wstored = (uint32_t)b->def.total_out;
	} else {
		pt->wenc = ZRAN_WIN_RAW;
		pt->wstored = wlen;
		memcpy(idx->wins + idx->wins_len, win, wlen);
	}
	idx->wins_len += pt->wstored;
	return 0;
}

static int add_point(struct zran_build *b, z_stream *zs, uint64_t out_pos,
		     uint8_t prev, struct lp_err *err)
{
	struct zran_index *idx = b->idx;
	struct zran_point *pt;
	uint8_t win[ZRAN_WINDOW_SIZE];
	uInt wlen = 0;
	int r;

	if (idx->n_points == UINT32_MAX)
		return lp_err_set(err, E2BIG, "zran: too many checkpoints");
	if (inflateGetDictionary(zs, win, &wlen) != Z_OK ||
	    wlen > ZRAN_WINDOW_SIZE)
		return lp_err_set(err, EIO, "zran: cannot read the window");
	/* The chunk being filled ends here; the next one starts at this
	 * checkpoint with nothing to skip. */
	if (b->open) {
		r = close_chunk(b, err);
		if (r < 0)
			return r;
	}
	lp_grow((void **)&idx->points, sizeof(*idx->points), &idx->cap_points,
		(size_t)idx->n_points + 1);
	pt = &idx->points[idx->n_points++];
	pt->in_pos = b->in_now;
	pt->out_pos = out_pos;
	pt->bits = (uint8_t)(zs->data_type & 7);
	pt->prev = pt->bits ? prev : 0;
	pt->window_len = wlen;
	pt->woff = idx->wins_len;
	pt->wstored = 0;
	pt->wenc = ZRAN_WIN_RAW;
	return wlen ? store_window(b, pt, win, wlen, err) : 0;
}

int zran_index_build(struct lp_source *src, const struct zran_build_opts *opts,
		     struct zran_index **ret, struct lp_err *err)
{
	struct zran_build_opts o = { 0 };
	struct zran_build b = { 0 };
	_cleanup_(zran_index_freep) struct zran_index *idx = NULL;
	_cleanup_free_ uint8_t *inbuf = NULL, *outbuf = NULL;
	struct zran_tar *tar = NULL;
	struct lp_sha256_ctx *gsha = NULL;
	z_stream zs;
	bool zs_live = false, member_end = false, member_start = true;
	uint64_t rd = 0, in_base = 0, out_abs = 0;
	uint8_t last_byte = 0;
	size_t in_len = 0;
	int r = 0;

	if (opts)
		o = *opts;
	if (!o.span)
		o.span = ZRAN_DEFAULT_SPAN;
	if (!o.chunk_max)
		o.chunk_max = ZRAN_DEFAULT_CHUNK;
	if (o.span < ZRAN_MIN_SPAN || o.span > ZRAN_MAX_SPAN)
		return lp_err_set(err, EINVAL,
				  "zran: span %u out of range [%u, %u]", o.span,
				  ZRAN_MIN_SPAN, ZRAN_MAX_SPAN);
	if (o.chunk_max < ZRAN_MIN_CHUNK || o.chunk_max > ZRAN_MAX_CHUNK)
		return lp_err_set(err, EINVAL,
				  "zran: chunk size %u out of range [%u, %u]",
				  o.chunk_max, ZRAN_MIN_CHUNK, ZRAN_MAX_CHUNK);
	if (!src->size)
		return lp_err_set(err, EINVAL, "zran: empty gzip stream");

	idx = zran_index_new();
	idx->span = o.span;
	idx->chunk_max = o.chunk_max;
	idx->gzip_size = src->size;
	b.idx = idx;
	b.src_size = src->size;
	inbuf = lp_xmalloc(READ_BLOCK);
	outbuf = lp_xmalloc(OUT_BLOCK);
	tar = zran_tar_new(&build_tar_ops, &b);
	gsha = lp_sha256_new();

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 15 + 16) != Z_OK) {
		r = lp_err_set(err, ENOMEM, "zran: inflateInit2 failed");
		goto out;
	}
	zs_live = true;

	for (;;) {
		if (zs.avail_in == 0 && rd < src->size) {
			size_t n = src->size - rd < READ_BLOCK
					   ? (size_t)(src->size - rd)
					   : READ_BLOCK;

			if (rd)
				last_byte = inbuf[in_len - 1];
			r = lp_source_read_full(src, inbuf, n, rd, err);
			if (r < 0)
				goto out;
			lp_sha256_update(gsha, inbuf, n);
			in_base = rd;
			in_len = n;
			rd += n;
			zs.next_in = inbuf;
			zs.avail_in = (uInt)n;
			if (o.progress)
				o.progress(rd, src->size, o.progress_data);
		}
		if (member_end) {
			if (zs.avail_in == 0)
				break; /* the end of the stream */
			if (inflateReset(&zs) != Z_OK) {
				r = lp_err_set(err, EIO,
					       "zran: inflateReset failed");
				goto out;
			}
			member_end = false;
			member_start = true;
		}
		if (zs.avail_in == 0) {
			r = lp_err_set(err, EINVAL,
				       "gzip: truncated stream (member %u, "
				       "%" PRIu64 " bytes)",
				       idx->n_members + 1, src->size);
			goto out;
		}
		zs.next_out = outbuf;
		zs.avail_out = OUT_BLOCK;
		int zr = inflate(&zs, Z_BLOCK);

		b.in_now = in_base + (uint64_t)(zs.next_in - inbuf);
		if (zr != Z_OK && zr != Z_STREAM_END) {
			if (member_start && idx->n_members)
				r = lp_err_set(err, EINVAL,
					       "gzip: garbage after member %u "
					       "at offset %" PRIu64 " (%s)",
					       idx->n_members, b.in_now,
					       zs.msg ? zs.msg : "bad header");
			else
				r = lp_err_set(err, EINVAL,
					       "gzip: corrupt data near offset "
					       "%" PRIu64 ": %s",
					       b.in_now,
					       zs.msg ? zs.msg : "inflate error");
			goto out;
		}
		size_t produced = OUT_BLOCK - zs.avail_out;

		if (produced) {
			r = zran_tar_feed(tar, outbuf, produced, err);
			if (r < 0)
				goto out;
			out_abs += produced;
		}
		if (zr == Z_STREAM_END) {
			idx->n_members++;
			member_end = true;
			continue;
		}
		if ((zs.data_type & 128) && !(zs.data_type & 64)) {
			member_start = false;
			if (!idx->n_points ||
			    out_abs - idx->points[idx->n_points - 1].out_pos >=
				    idx->span) {
				uint8_t prev = zs.next_in > inbuf
						       ? zs.next_in[-1]
						       : last_byte;

				r = add_point(&b, &zs, out_abs, prev, err);
				if (r < 0)
					goto out;
			}
		}
	}
	r = zran_tar_finish(tar, err);
	if (r < 0)
		goto out;
	if (b.open) {
		/* only when the tar ended inside a file: finish rejects it */
		r = lp_err_set(err, EINVAL, "zran: unfinished chunk");
		goto out;
	}
	idx->tar_size = out_abs;
	if (idx->wins_len && idx->wins_len < idx->cap_wins) {
		/* the area grew by doubling: keep only what it holds */
		idx->wins = lp_xrealloc(idx->wins, (size_t)idx->wins_len);
		idx->cap_wins = (size_t)idx->wins_len;
	}
	lp_sha256_final(gsha, idx->gzip_sha256);
	gsha = NULL;
	*ret = TAKE_PTR(idx);
	r = 0;
out:
	if (zs_live)
		inflateEnd(&zs);
	if (b.def_live)
		deflateEnd(&b.def);
	if (gsha) {
		uint8_t dummy[32];

		lp_sha256_final(gsha, dummy);
	}
	if (b.sha) {
		uint8_t dummy[32];

		lp_sha256_final(b.sha, dummy);
	}
	zran_tar_free(tar);
	return r;
}

/* ---- the model -------------------------------------------------------- */

int zran_index_model(const struct zran_index *idx, struct model **ret,
		     struct lp_err *err)
{
	struct model_builder *b = model_builder_new(0);
	char blob_id[7 + 65];
	uint32_t blob;
	int r;

	if (idx->no_listing) {
		model_builder_free(b);
		return lp_err_set(err, EINVAL,
				  "zran: the index kept only its checkpoints");
	}
	memcpy(blob_id, "sha256:", 7);
	lp_hex(idx->gzip_sha256, 32, blob_id + 7);
	r = model_builder_add_blob(b, blob_id,
				   "application/vnd.oci.image.layer.v1.tar+gzip",
				   idx->gzip_size, &blob, err);
	if (r < 0)
		goto fail;
	for (uint32_t i = 0; i < idx->n_entries; i++) {
		const struct zran_ientry *ie = &idx->entries[i];
		struct model_entry me = { 0 };
		uint32_t id;

		me.path = idx->strtab + ie->path;
		me.path_len = ie->path_len;
		me.type = (enum model_type)ie->type;
		me.mode = ie->mode;
		me.uid = ie->uid;
		me.gid = ie->gid;
		me.size = ie->size;
		me.mtime = ie->mtime;
		if (me.type == MODEL_SYMLINK || me.type == MODEL_HARDLINK) {
			me.link = idx->strtab + ie->link;
			me.link_len = ie->link_len;
		}
		me.rdev_major = ie->dev_major;
		me.rdev_minor = ie->dev_minor;
		r = model_builder_add(b, &me, &id, err);
		if (r < 0) {
			lp_err_wrap(err, "tar offset %" PRIu64, ie->hdr_off);
			goto fail;
		}
		for (uint32_t j = 0; j < ie->n_xattrs; j++) {
			const struct zran_ixattr *x =
				&idx->xattrs[ie->xattr_first + j];

			r = model_builder_add_xattr(b, id,
						    idx->strtab + x->name,
						    idx->strtab + x->value,
						    x->value_len, err);
			if (r < 0)
				goto fail;
		}
		for (uint32_t j = 0; j < ie->n_chunks; j++) {
			const struct zran_ichunk *c =
				&idx->chunks[ie->chunk_first + j];
			struct model_chunk mc = { 0 };

			mc.file_off = c->tar_off - ie->data_off;
			mc.len = c->len;
			mc.comp_off = c->comp_off;
			mc.comp_len = c->comp_len;
			mc.aux = c->point;
			mc.aux_off = c->tar_off - idx->points[c->point].out_pos;
			mc.blob = blob;
			mc.codec = MODEL_CODEC_ZRAN;
			mc.digest_alg = MODEL_DIGEST_SHA256;
			memcpy(mc.digest, c->digest, 32);
			r = model_builder_add_chunk(b, id, &mc, err);
			if (r < 0)
				goto fail;
		}
	}
	return model_builder_finish(b, ret, err);
fail:
	model_builder_free(b);
	return r;
}
