/* SPDX-License-Identifier: Apache-2.0 */
#define LP_MODNAME "engine"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/engine.h"
#include "fs/modelfile.h"
#ifdef LP_HAVE_ESTARGZ
#include "formats/estargz/estargz.h"
#endif
#ifdef LP_HAVE_RAFS
#include "formats/rafs/rafs.h"
#endif
#ifdef LP_HAVE_ZRAN
#include "formats/zran/zran.h"
#endif

/* Footer formats first: an eStargz blob is also a valid plain gzip. */
const struct format_ops *const engine_formats[] = {
#ifdef LP_HAVE_ESTARGZ
	&estargz_ops,
	&stargz_legacy_ops,
	&zstdchunked_ops,
#endif
#ifdef LP_HAVE_RAFS
	&rafs_ops,
#endif
#ifdef LP_HAVE_ZRAN
	&zran_ops,
#endif
	NULL,
};


int engine_detect(struct lp_source *src, const struct format_hints *h,
		  const struct format_ops **ret, struct lp_err *err)
{
	for (size_t i = 0; engine_formats[i]; i++) {
		struct lp_err perr = { 0 };
		int r = engine_formats[i]->probe(src, h, &perr);

		if (r > 0) {
			*ret = engine_formats[i];
			return 0;
		}
		if (r < 0 && r != -EINVAL && r != -EPROTONOSUPPORT &&
		    r != -EBADMSG) {
			lp_err_set(err, r, "%s", perr.msg);
			return lp_err_wrap(err, "%s: probing %s", src->name,
					   engine_formats[i]->name);
		}
	}
	return lp_err_set(err, EPROTONOSUPPORT,
			  "%s: not a supported layer (no eStargz, stargz or "
			  "zstd:chunked footer, no RAFS superblock, not gzip)",
			  src->name);
}

static struct engine_layer *layer_new(struct lp_source *src,
				      const struct format_ops *ops,
				      const struct engine_opts *o)
{
	struct engine_layer *l = lp_xcalloc(1, sizeof(*l));

	l->src = src;
	l->ops = ops;
	l->blob_dir = o->blob_dir ? lp_xstrdup(o->blob_dir) : NULL;
	l->open_blob = o->open_blob;
	l->open_blob_arg = o->open_blob_arg;
	l->last_idx = -1;
	l->last_lock = lp_xmalloc(sizeof(pthread_mutex_t));
	pthread_mutex_init(l->last_lock, NULL);
	l->info.blob_size = src->size;
	return l;
}

int engine_open(struct lp_source *src, const struct engine_opts *o,
		struct engine_layer **ret, struct lp_err *err)
{
	static const struct engine_opts none = { 0 };
	const struct format_ops *ops = NULL;
	struct engine_layer *l;
	int r;

	if (!o)
		o = &none;
	if (o->zran_index || o->zran_built) {
#ifdef LP_HAVE_ZRAN
		ops = &zran_ops;
#else
		r = lp_err_set(err, EOPNOTSUPP, "built without zran support");
		lp_source_free(src);
		return r;
#endif
	} else if (o->format) {
		for (size_t i = 0; engine_formats[i]; i++)
			if (!strcmp(engine_formats[i]->name, o->format))
				ops = engine_formats[i];
		if (!ops) {
			r = lp_err_set(err, EINVAL, "unknown format \"%s\"",
				       o->format);
			lp_source_free(src);
			return r;
		}
	} else {
		r = engine_detect(src, o->hints, &ops, err);
		if (r < 0) {
			lp_source_free(src);
			return r;
		}
	}
	l = layer_new(src, ops, o);
#ifdef LP_HAVE_ZRAN
	if (o->zran_built)
		r = zran_load_built(o->zran_built, src, &l->model, &l->ctx,
				    &l->info, err);
	else if (o->zran_index)
		r = zran_load_index_file(o->zran_index, src, &l->model,
					 &l->ctx, &l->info, err);
	else
#endif
		r = ops->load(src, o->hints, &l->model, &l->ctx, &l->info,
			      err);
	if (r < 0) {
		lp_err_wrap(err, "%s (%s)", src->name, ops->name);
		engine_close(l);
		return r;
	}
	if (!l->info.format)
		l->info.format = ops->name;
	l->blob_src = lp_xcalloc(l->model->n_blobs ? l->model->n_blobs : 1,
				 sizeof(*l->blob_src));
	*ret = l;
	return 0;
}

int engine_save_model(const struct engine_layer *l, const char *producer,
		      const char *path, struct lp_err *err)
{
	struct model_file_meta meta = { .info = l->info };

	if (l->n_sub || !l->ops || !l->ops->restore)
		return lp_err_set(err, EOPNOTSUPP, "%s models are not saved",
				  l->ops ? l->ops->name : "merged");
	snprintf(meta.format, sizeof(meta.format), "%s", l->ops->name);
	meta.info.format = NULL;
	return model_file_save(l->model, &meta, producer, path, err);
}

int engine_open_saved(struct lp_source *src, const struct engine_opts *o,
		      const char *producer, const char *path,
		      struct engine_layer **ret, struct lp_err *err)
{
	static const struct engine_opts none = { 0 };
	_cleanup_(model_freep) struct model *m = NULL;
	const struct format_ops *ops = NULL;
	struct format_ctx *ctx = NULL;
	struct model_file_meta meta;
	struct engine_layer *l;
	uint8_t want[32], have[32];
	int r;

	if (!o)
		o = &none;
	r = model_file_load(path, producer, &m, &meta, err);
	if (r < 0)
		return r;
	for (size_t i = 0; engine_formats[i]; i++)
		if (engine_formats[i]->restore &&
		    !strcmp(engine_formats[i]->name, meta.format))
			ops = engine_formats[i];
	if (!ops || (o->format && strcmp(o->format, ops->name)))
		return lp_err_set(err, ESTALE, "%s: a saved %s model", path,
				  meta.format);
	if (meta.info.blob_size != src->size)
		return lp_err_set(err, ESTALE, "%s: saved for a blob of %llu "
				  "bytes, not %llu", path,
				  (unsigned long long)meta.info.blob_size,
				  (unsigned long long)src->size);
	/* the digest the caller expects, as a load checks it */
	if (o->hints && o->hints->toc_digest &&
	    (lp_parse_sha256_digest(o->hints->toc_digest,
				    strlen(o->hints->toc_digest), want) < 0 ||
	     lp_parse_sha256_digest(meta.info.toc_digest,
				    strlen(meta.info.toc_digest), have) < 0 ||
	     memcmp(want, have, sizeof(want))))
		return lp_err_set(err, ESTALE, "%s: TOC digest %s, not the "
				  "expected %.80s", path, meta.info.toc_digest,
				  o->hints->toc_digest);
	r = ops->restore(&meta.info, &ctx, err);
	if (r < 0) {
		lp_err_wrap(err, "%s", path);
		return r;
	}
	l = layer_new(src, ops, o);
	l->ctx = ctx;
	l->model = TAKE_PTR(m);
	l->info = meta.info;
	l->info.format = ops->name;
	l->blob_src = lp_xcalloc(l->model->n_blobs ? l->model->n_blobs : 1,
				 sizeof(*l->blob_src));
	*ret = l;
	return 0;
}

int engine_open_path(const char *path, const struct engine_opts *o,
		     struct engine_layer **ret, struct lp_err *err)
{
	struct lp_source *src;
	int r = lp_source_open_file(path, &src, err);

	if (r < 0)
		return r;
	return engine_open(src, o, ret, err);
}

void engine_close(struct engine_layer *l)
{
	if (!l)
		return;
	for (uint32_t i = 0; i < l->n_sub; i++)
		engine_close(l->sub[i]);
	free(l->sub);
	free(l->sub_blob_base);
	if (l->ops && l->ops->destroy && l->ctx)
		l->ops->destroy(l->ctx);
	if (l->blob_src && l->model) {
		for (uint32_t i = 0; i < l->model->n_blobs; i++)
			if (l->blob_src[i] != l->src)
				lp_source_free(l->blob_src[i]);
	}
	free(l->blob_src);
	if (l->last_lock) {
		pthread_mutex_destroy(l->last_lock);
		free(l->last_lock);
	}
	free(l->last_buf);
	model_free(l->model);
	lp_source_free(l->src);
	free(l->blob_dir);
	free(l);
}

/* Whether blob id names the layer source itself (by its digest). */
static bool blob_is_layer(const struct engine_layer *l, const char *id)
{
	const char *name = l->src->name ? l->src->name : "";
	const char *hex = strchr(id, ':') ? strchr(id, ':') + 1 : id;
	const char *nhex = strchr(name, ':') ? strchr(name, ':') + 1 : name;

	return !strcmp(hex, nhex);
}

/*
 * Blob 0 is the layer itself unless the model names a blob that the layer
 * is not (RAFS bootstraps point at data blobs): those are looked up by id
 * in blob_dir.
 */
static int blob_source(struct engine_layer *l, uint32_t idx,
		       struct lp_source **ret, struct lp_err *err)
{
	const struct model_blob *b;
	char path[4096];
	const char *id;
	int r;

	if (idx >= l->model->n_blobs)
		return lp_err_set(err, EINVAL, "chunk names blob %u of %u",
				  idx, l->model->n_blobs);
	if (l->blob_src[idx]) {
		*ret = l->blob_src[idx];
		return 0;
	}
	b = &l->model->blobs[idx];
	id = model_str(l->model, b->id);
	if (l->open_blob && id[0] && (idx != 0 || l->model->n_blobs > 1 ||
				      !blob_is_layer(l, id))) {
		r = l->open_blob(l->open_blob_arg, id, &l->blob_src[idx], err);
		if (r < 0)
			return lp_err_wrap(err, "blob %u (%s)", idx, id);
		*ret = l->blob_src[idx];
		return 0;
	}
	if (!l->blob_dir || !id[0]) {
		if (idx != 0)
			return lp_err_set(err, ENOENT,
					  "blob %u (%s) is not the layer and "
					  "no blob directory was given",
					  idx, id);
		l->blob_src[idx] = l->src;
		*ret = l->src;
		return 0;
	}
	if (strchr(id, '/'))
		id = strchr(id, ':') ? strchr(id, ':') + 1 : id;
	if (strchr(id, '/') || !strcmp(id, "..") || !strcmp(id, "."))
		return lp_err_set(err, EINVAL, "bad blob id \"%s\"", id);
	snprintf(path, sizeof(path), "%s/%s", l->blob_dir, id);
	r = lp_source_open_file(path, &l->blob_src[idx], err);
	if (r < 0 && strchr(id, ':')) {
		lp_err_clear(err);
		snprintf(path, sizeof(path), "%s/%s", l->blob_dir,
			 strchr(id, ':') + 1);
		r = lp_source_open_file(path, &l->blob_src[idx], err);
	}
	if (r < 0)
		return r;
	*ret = l->blob_src[idx];
	return 0;
}

int engine_blob_source(struct engine_layer *l, uint32_t idx,
		       struct lp_source **ret, struct lp_err *err)
{
	int r;

	pthread_mutex_lock(l->last_lock);
	r = blob_source(l, idx, ret, err);
	pthread_mutex_unlock(l->last_lock);
	return r;
}

int engine_read_chunk(struct engine_layer *l, uint32_t idx, void *out,
		      struct lp_err *err)
{
	if (idx >= l->model->n_chunks)
		return lp_err_set(err, EINVAL, "no chunk %u", idx);
	return engine_read_chunk_rec(l, &l->model->chunks[idx], out, err);
}

static int merged_read_chunk(struct engine_layer *l,
			     const struct model_chunk *c, void *out,
			     struct lp_err *err)
{
	struct model_chunk lc = *c;
	uint32_t li;

	if (c->blob >= l->model->n_blobs)
		return lp_err_set(err, EINVAL, "chunk names blob %u of %u",
				  c->blob, l->model->n_blobs);
	li = l->model->blobs[c->blob].layer;
	if (li >= l->n_sub || c->blob < l->sub_blob_base[li])
		return lp_err_set(err, EINVAL, "chunk of an unknown layer");
	lc.blob = c->blob - l->sub_blob_base[li];
	return engine_read_chunk_rec(l->sub[li], &lc, out, err);
}

int engine_merge(struct engine_layer **layers, uint32_t n, const char *name,
		 struct engine_layer **ret, struct lp_err *err)
{
	_cleanup_free_ struct model **models = NULL;
	struct engine_layer *m;
	uint32_t base = 0;
	int r;

	models = lp_xcalloc(n ? n : 1, sizeof(*models));
	for (uint32_t i = 0; i < n; i++)
		models[i] = layers[i]->model;
	m = lp_xcalloc(1, sizeof(*m));
	m->sub = lp_xcalloc(n ? n : 1, sizeof(*m->sub));
	m->sub_blob_base = lp_xcalloc(n ? n : 1, sizeof(uint32_t));
	for (uint32_t i = 0; i < n; i++) {
		m->sub[i] = layers[i];
		m->sub_blob_base[i] = base;
		base += layers[i]->model->n_blobs;
	}
	m->n_sub = n;
	m->last_idx = -1;
	m->last_lock = lp_xmalloc(sizeof(pthread_mutex_t));
	pthread_mutex_init(m->last_lock, NULL);
	m->src = lp_source_new_mem("", 0, name);
	r = model_merge(models, n, &m->model, err);
	if (r < 0) {
		engine_close(m);
		return r;
	}
	m->blob_src = lp_xcalloc(m->model->n_blobs ? m->model->n_blobs : 1,
				 sizeof(*m->blob_src));
	m->info.format = "merged";
	for (uint32_t i = 0; i < n; i++)
		m->info.blob_size += layers[i]->info.blob_size;
	*ret = m;
	return 0;
}

/*
 * A chunk whose read failed fails again at once for this long.  The kernel
 * reads a page again as soon as the read-ahead holding it failed, and the
 * fetcher has spent its tries on it just now: against a stalled registry
 * that second read would hold the reader as long again (a minute with the
 * defaults).
 */
#define ENGINE_FAIL_HOLD_MS 200

/* The failure the read of c just had, if it is held: -errno, else 0.
 * The caller holds last_lock. */
static int held_failure(const struct engine_layer *l,
			const struct model_chunk *c, struct lp_err *err)
{
	uint64_t now, at = l->fail_at_ns;

	if (!at || l->fail_blob != c->blob || l->fail_off != c->comp_off)
		return 0;
	now = lp_now_ns();
	if (now - at >= (uint64_t)ENGINE_FAIL_HOLD_MS * 1000000u)
		return 0;
	return lp_err_set(err, l->fail_err.code, "%s (%.0f ms ago; not "
			  "asked again yet)", l->fail_err.msg,
			  (double)(now - at) / 1e6);
}

/* Holds r, the failure e of the read of c (e's code, if it has one). */
static void hold_failure(struct engine_layer *l, const struct model_chunk *c,
			 int r, const struct lp_err *e)
{
	pthread_mutex_lock(l->last_lock);
	l->fail_err = *e;
	if (!e->code)
		l->fail_err.code = r < 0 ? r : -EIO;
	l->fail_blob = c->blob;
	l->fail_off = c->comp_off;
	l->fail_at_ns = lp_now_ns();
	pthread_mutex_unlock(l->last_lock);
}

int engine_read_chunk_rec(struct engine_layer *l, const struct model_chunk *c,
			  void *out, struct lp_err *err)
{
	struct lp_source *src;
	_cleanup_free_ void *stored = NULL;
	uint64_t len;
	int r;

	if (l->n_sub)
		return merged_read_chunk(l, c, out, err);

	if (c->len > ENGINE_MAX_CHUNK)
		return lp_err_set(err, EFBIG,
				  "chunk at file offset %llu: %llu bytes is "
				  "over the %llu limit",
				  (unsigned long long)c->file_off,
				  (unsigned long long)c->len,
				  (unsigned long long)ENGINE_MAX_CHUNK);
	/* blob sources open lazily; FUSE workers call this concurrently */
	pthread_mutex_lock(l->last_lock);
	r = blob_source(l, c->blob, &src, err);
	if (r == 0)
		r = held_failure(l, c, err);
	pthread_mutex_unlock(l->last_lock);
	if (r < 0)
		return r;
	if (c->comp_off > src->size)
		return lp_err_set(err, EIO,
				  "chunk at file offset %llu: blob offset %llu "
				  "is past the end of %s (%llu bytes)",
				  (unsigned long long)c->file_off,
				  (unsigned long long)c->comp_off, src->name,
				  (unsigned long long)src->size);
	len = c->comp_len;
	/* comp_len of a gzip member is an upper bound: clamp to the blob */
	if (len > src->size - c->comp_off)
		len = src->size - c->comp_off;
	if (len > ENGINE_MAX_CHUNK + (1u << 20))
		return lp_err_set(err, EFBIG,
				  "chunk at file offset %llu: %llu stored "
				  "bytes is over the limit",
				  (unsigned long long)c->file_off,
				  (unsigned long long)len);
	stored = lp_xmalloc(len ? (size_t)len : 1);
	/*
	 * A cached copy that fails to decode or verify may have been damaged
	 * in transit: forget it and fetch once more before giving up.  Local
	 * files have nothing to forget, so they fail at once.  A read that
	 * failed is not tried again here: the fetcher's retries are spent
	 * (a stalled registry would cost the reader two rounds of them).
	 */
	for (int attempt = 0;; attempt++) {
		struct lp_err e2 = { 0 };
		bool read_ok;

		r = lp_source_read_full(src, stored, (size_t)len, c->comp_off,
					&e2);
		read_ok = r == 0;
		if (read_ok) {
			__atomic_add_fetch(&l->stored_bytes_read, len,
					   __ATOMIC_RELAXED);
			__atomic_add_fetch(&l->chunks_decoded, 1,
					   __ATOMIC_RELAXED);
			r = l->ops->decode_chunk(l->ctx, c, stored,
						 (size_t)len, out, &e2);
			if (r == 0)
				r = model_chunk_verify(c, out, &e2);
			if (r == 0)
				return 0;
		}
		if (!read_ok)
			hold_failure(l, c, r, &e2);
		if (!read_ok || r == -ENODATA || attempt > 0 ||
		    !src->ops->invalidate ||
		    lp_source_invalidate(src, c->comp_off, len) < 0) {
			const char *id = model_str(l->model,
						   l->model->blobs[c->blob].id);

			/* a data blob named in the model, read from the
			 * layer file itself for want of a blob directory */
			if (src == l->src && !l->blob_dir && !l->open_blob &&
			    id[0] && !blob_is_layer(l, id))
				lp_err_set(err, e2.code, "%s (the chunk is in "
					   "blob %s, read here from %s: give "
					   "its directory with --blob-dir)",
					   e2.msg, id, src->name);
			else
				lp_err_set(err, e2.code, "%s", e2.msg);
			return r;
		}
		lp_log(LP_LOG_WARN, "%s: chunk at blob offset %llu: %s; "
		       "fetching it again", src->name,
		       (unsigned long long)c->comp_off, e2.msg);
	}
}

void engine_prefetch_range(struct engine_layer *l, uint32_t ino, uint64_t off,
			   uint64_t len)
{
	const struct model_inode *in = model_inode(l->model, ino);
	struct lp_range r[64];
	struct lp_source *src = NULL;
	uint32_t blob = UINT32_MAX;
	size_t n = 0;
	int64_t first;

	if (!in || !S_ISREG(in->mode) || !len)
		return;
	first = model_chunk_at(l->model, ino, off);
	if (first < 0)
		return;
	for (uint32_t i = (uint32_t)first;
	     i < in->first + in->count && n < ARRAY_SIZE(r); i++) {
		const struct model_chunk *c = &l->model->chunks[i];

		if (c->file_off >= off + len)
			break;
		if (blob == UINT32_MAX)
			blob = c->blob;
		else if (c->blob != blob)
			break;
		r[n].off = c->comp_off;
		r[n].len = c->comp_len;
		n++;
	}
	/* one chunk is read by the pread itself: nothing to merge */
	if (n < 2)
		return;
	pthread_mutex_lock(l->last_lock);
	if (blob_source(l, blob, &src, NULL) < 0)
		src = NULL;
	pthread_mutex_unlock(l->last_lock);
	if (!src || !src->ops->prefetch)
		return;
	for (size_t i = 0; i < n; i++) {
		if (r[i].off >= src->size)
			return;
		if (r[i].len > src->size - r[i].off)
			r[i].len = src->size - r[i].off;
	}
	/* best effort: the reads that follow report any error */
	lp_source_prefetch(src, r, n, NULL);
}

int64_t engine_read(struct engine_layer *l, uint32_t ino, void *buf,
		    size_t len, uint64_t off, struct lp_err *err)
{
	const struct model_inode *in = model_inode(l->model, ino);
	size_t done = 0;

	if (!in)
		return lp_err_set(err, ENOENT, "no inode %u", ino);
	if (!S_ISREG(in->mode))
		return lp_err_set(err, EISDIR, "inode %u is not a regular file",
				  ino);
	if (off >= in->size)
		return 0;
	if (len > in->size - off)
		len = (size_t)(in->size - off);
	engine_prefetch_range(l, ino, off, len);
	while (done < len) {
		int64_t ci = model_chunk_at(l->model, ino, off + done);
		const struct model_chunk *c;
		_cleanup_free_ uint8_t *tmp = NULL;
		uint64_t skip, n;
		int r;

		if (ci < 0)
			return lp_err_set(err, EIO, "no chunk at offset %llu",
					  (unsigned long long)(off + done));
		c = &l->model->chunks[ci];
		if (c->len > ENGINE_MAX_CHUNK)
			return lp_err_set(err, EFBIG,
					  "chunk at file offset %llu: %llu "
					  "bytes is over the %llu limit",
					  (unsigned long long)c->file_off,
					  (unsigned long long)c->len,
					  (unsigned long long)ENGINE_MAX_CHUNK);
		skip = off + done - c->file_off;
		n = c->len - skip;
		if (n > len - done)
			n = len - done;
		pthread_mutex_lock(l->last_lock);
		if (l->last_idx == ci) {
			memcpy((uint8_t *)buf + done,
			       (uint8_t *)l->last_buf + skip, (size_t)n);
			pthread_mutex_unlock(l->last_lock);
			done += (size_t)n;
			continue;
		}
		pthread_mutex_unlock(l->last_lock);
		tmp = lp_xmalloc(c->len ? (size_t)c->len : 1);
		r = engine_read_chunk(l, (uint32_t)ci, tmp, err);
		if (r < 0)
			return r;
		memcpy((uint8_t *)buf + done, tmp + skip, (size_t)n);
		done += (size_t)n;
		if (skip + n < c->len) {
			/* a later read will want the rest of this chunk */
			pthread_mutex_lock(l->last_lock);
			free(l->last_buf);
			l->last_buf = TAKE_PTR(tmp);
			l->last_idx = ci;
			pthread_mutex_unlock(l->last_lock);
		}
	}
	return (int64_t)done;
}
