/* SPDX-License-Identifier: Apache-2.0 */
/* zran_ops: plain gzip layers in the engine's format loop. */
#define LP_MODNAME "zran"
#include <inttypes.h>
#include <string.h>

#include "formats/zran/zran-int.h"

/* header (10) + the shortest deflate stream (2) + trailer (8) */
#define GZIP_MIN_SIZE 20

/* The context handed to the engine is the index itself. */
struct format_ctx *zran_ctx_from_index(struct zran_index *idx)
{
	return (struct format_ctx *)idx;
}

const struct zran_index *zran_ctx_index(const struct format_ctx *ctx)
{
	return (const struct zran_index *)ctx;
}

static int zran_probe(struct lp_source *src, const struct format_hints *h,
		      struct lp_err *err)
{
	uint8_t m[3];
	int r;

	if (h && h->media_type && strstr(h->media_type, "zstd"))
		return 0;
	if (src->size < GZIP_MIN_SIZE)
		return 0;
	r = lp_source_read_full(src, m, sizeof(m), 0, err);
	if (r < 0)
		return r;
	return m[0] == 0x1f && m[1] == 0x8b && m[2] == 0x08;
}

static void fill_info(const struct zran_index *idx, struct format_info *info)
{
	if (!info)
		return;
	memset(info, 0, sizeof(*info));
	info->format = "zran";
	info->blob_size = idx->gzip_size;
}

static int finish_load(struct zran_index *idx, struct model **ret_model,
		       struct format_ctx **ret_ctx, struct format_info *info,
		       struct lp_err *err)
{
	struct model *m = NULL;
	int r;

	r = zran_index_model(idx, &m, err);
	if (r < 0) {
		zran_index_free(idx);
		return r;
	}
	fill_info(idx, info);
	*ret_model = m;
	if (ret_ctx) {
		/* the model has the listing now; decodes need the points */
		zran_index_drop_listing(idx);
		*ret_ctx = zran_ctx_from_index(idx);
	} else {
		zran_index_free(idx);
	}
	return 0;
}

int zran_load_with(struct lp_source *src, const struct zran_build_opts *opts,
		   struct model **ret_model, struct format_ctx **ret_ctx,
		   struct format_info *info, struct lp_err *err)
{
	struct zran_index *idx = NULL;
	int r;

	r = zran_index_build(src, opts, &idx, err);
	if (r < 0)
		return r;
	return finish_load(idx, ret_model, ret_ctx, info, err);
}

static int zran_load(struct lp_source *src, const struct format_hints *h,
		     struct model **ret_model, struct format_ctx **ret_ctx,
		     struct format_info *info, struct lp_err *err)
{
	(void)h;
	return zran_load_with(src, NULL, ret_model, ret_ctx, info, err);
}

/* idx (taken) for src, from what (a file, or "the index built") */
static int load_for(struct zran_index *idx, const char *what,
		    struct lp_source *src, struct model **ret_model,
		    struct format_ctx **ret_ctx, struct format_info *info,
		    struct lp_err *err)
{
	int r;

	if (src && src->size != idx->gzip_size) {
		r = lp_err_set(err, EINVAL,
			       "%s: index is for a %" PRIu64
			       "-byte layer, %s has %" PRIu64 " bytes",
			       what, idx->gzip_size,
			       src->name ? src->name : "the source",
			       src->size);
		zran_index_free(idx);
		return r;
	}
	return finish_load(idx, ret_model, ret_ctx, info, err);
}

int zran_load_index_file(const char *path, struct lp_source *src,
			 struct model **ret_model, struct format_ctx **ret_ctx,
			 struct format_info *info, struct lp_err *err)
{
	struct zran_index *idx = NULL;
	int r;

	r = zran_index_load(path, &idx, err);
	if (r < 0)
		return r;
	return load_for(idx, path, src, ret_model, ret_ctx, info, err);
}

int zran_load_built(struct zran_index *idx, struct lp_source *src,
		    struct model **ret_model, struct format_ctx **ret_ctx,
		    struct format_info *info, struct lp_err *err)
{
	return load_for(idx, "the index built", src, ret_model, ret_ctx, info,
			err);
}

static int zran_decode_chunk(struct format_ctx *ctx,
			     const struct model_chunk *c, const void *stored,
			     size_t stored_len, void *out, struct lp_err *err)
{
	return zran_index_decode(zran_ctx_index(ctx), c, stored, stored_len,
				 out, err);
}

static void zran_destroy(struct format_ctx *ctx)
{
	zran_index_free((struct zran_index *)ctx);
}

const struct format_ops zran_ops = {
	.name = "zran",
	.probe = zran_probe,
	.load = zran_load,
	.decode_chunk = zran_decode_chunk,
	.destroy = zran_destroy,
};
