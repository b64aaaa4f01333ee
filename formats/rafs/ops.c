// SPDX-License-Identifier: Apache-2.0
/* The RAFS format_ops: a bootstrap (or bootstrap layer) in, a model out. */
#define LP_MODNAME "rafs"
#include <stdio.h>

#include "formats/rafs/rafs-int.h"

#define NYDUS_BOOTSTRAP_ANNOTATION "containerd.io/snapshot/nydus-bootstrap"

struct format_ctx {
	struct rafs_meta meta;
};

const struct rafs_meta *rafs_ctx_meta(const struct format_ctx *ctx)
{
	return ctx ? &ctx->meta : NULL;
}

static bool hinted_bootstrap(const struct format_hints *h)
{
	if (!h || !h->annotations)
		return false;
	for (const char *const *a = h->annotations; a[0] && a[1]; a += 2)
		if (!strcmp(a[0], NYDUS_BOOTSTRAP_ANNOTATION) &&
		    !strcmp(a[1], "true"))
			return true;
	return false;
}

static int rafs_probe(struct lp_source *src, const struct format_hints *h,
		      struct lp_err *err)
{
	uint8_t head[RAFS_V6_SB_OFF + 4];
	size_t n = src->size < sizeof(head) ? (size_t)src->size : sizeof(head);
	int r;

	r = lp_source_read_full(src, head, n, 0, err);
	if (r < 0)
		return r;
	if (rafs_detect(head, n))
		return 1;
	if (n < 2 || head[0] != 0x1f || head[1] != 0x8b)
		return 0;
	if (hinted_bootstrap(h))
		return 1;
	return rafs_layer_probe(src, err);
}

static int rafs_load(struct lp_source *src, const struct format_hints *h,
		     struct model **ret_model, struct format_ctx **ret_ctx,
		     struct format_info *info, struct lp_err *err)
{
	_cleanup_free_ void *data = NULL;
	struct format_ctx *ctx;
	struct model *m;
	uint8_t dg[32];
	size_t len;
	int r;

	(void)h;
	r = rafs_read_bootstrap(src, &data, &len, err);
	if (r < 0)
		return r;
	ctx = lp_xcalloc(1, sizeof(*ctx));
	r = rafs_bootstrap_load(data, len, &m, &ctx->meta, err);
	if (r < 0) {
		free(ctx);
		return lp_err_wrap(err, "%s", src->name);
	}
	if (info) {
		memset(info, 0, sizeof(*info));
		info->format = ctx->meta.version == 5 ? "rafs-v5" : "rafs-v6";
		lp_sha256(data, len, dg);
		memcpy(info->toc_digest, "sha256:", 7);
		lp_hex(dg, 32, info->toc_digest + 7);
		info->blob_size = src->size;
		info->toc_comp_len = src->size;
		info->toc_len = len;
	}
	*ret_model = m;
	if (ret_ctx)
		*ret_ctx = ctx;
	else
		rafs_ops.destroy(ctx);
	return 0;
}

static int rafs_ops_decode(struct format_ctx *ctx, const struct model_chunk *c,
			   const void *stored, size_t stored_len, void *out,
			   struct lp_err *err)
{
	(void)ctx;
	return rafs_decode_chunk(c, stored, stored_len, out, err);
}

static void rafs_destroy(struct format_ctx *ctx)
{
	if (!ctx)
		return;
	rafs_meta_release(&ctx->meta);
	free(ctx);
}

const struct format_ops rafs_ops = {
	.name = "rafs",
	.probe = rafs_probe,
	.load = rafs_load,
	.decode_chunk = rafs_ops_decode,
	.destroy = rafs_destroy,
};
