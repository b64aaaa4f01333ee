/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer merge with OCI whiteouts, and the overlayfs form of one layer.
 * Both rebuild through the builder so the result is an ordinary model.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/model.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* a model inode always has a known type; anything else reads as a file */
static enum model_type mode_type(uint32_t mode)
{
	enum model_type t;

	return model_type_from_mode(mode, &t) == 0 ? t : MODEL_REG;
}

struct copier {
	struct model_builder *b;
	uint32_t **ids;	     /* per layer: source ino -> builder entry id */
	uint32_t *blob_base; /* per layer */
	struct lp_err *err;
};

/*
 * Adds one name of inode ino of layer l at path.  A second name of an inode
 * already copied becomes a hardlink to the first copy.
 */
static int copy_inode(struct copier *cp, const struct model *m, uint32_t l,
		      uint32_t ino, const char *path, uint32_t *ret_id)
{
	const struct model_inode *in = &m->inodes[ino];
	struct model_entry e = { 0 };
	uint32_t id;
	int r;

	e.path = path;
	e.path_len = strlen(path);
	e.layer = in->layer;
	if (cp->ids[l][ino]) {
		e.type = MODEL_HARDLINK;
		e.link_id = cp->ids[l][ino];
		return model_builder_add(cp->b, &e, ret_id, cp->err);
	}
	e.type = mode_type(in->mode);
	e.mode = in->mode & 07777;
	e.uid = in->uid;
	e.gid = in->gid;
	e.size = in->size;
	e.mtime = in->mtime;
	e.rdev_major = in->rdev_major;
	e.rdev_minor = in->rdev_minor;
	if (e.type == MODEL_SYMLINK) {
		e.link = model_str(m, in->link);
		e.link_len = in->size;
	}
	r = model_builder_add(cp->b, &e, &id, cp->err);
	if (r < 0)
		return r;
	if (e.type != MODEL_DIR)
		cp->ids[l][ino] = id;
	for (uint32_t i = 0; i < in->xattr_count; i++) {
		const struct model_xattr *x = &m->xattrs[in->xattr_first + i];

		r = model_builder_add_xattr(cp->b, id, model_str(m, x->name),
					    model_str(m, x->value),
					    x->value_len, cp->err);
		if (r < 0)
			return r;
	}
	if (e.type == MODEL_REG) {
		for (uint32_t i = 0; i < in->count; i++) {
			struct model_chunk c = m->chunks[in->first + i];

			c.blob += cp->blob_base[l];
			r = model_builder_add_chunk(cp->b, id, &c, cp->err);
			if (r < 0)
				return r;
		}
	}
	if (ret_id)
		*ret_id = id;
	return 0;
}

struct layer_dir {
	uint32_t layer;
	uint32_t ino;
};

static bool is_opaque(const struct model *m, uint32_t dir)
{
	return model_lookup(m, dir, WH_OPAQUE) != 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int merge_dir(struct copier *cp, struct model *const *layers,
		     const struct layer_dir *dirs, uint32_t n_dirs,
		     char *path, size_t plen, unsigned depth)
{
	_cleanup_free_ const char **names = NULL;
	_cleanup_free_ struct layer_dir *sub = NULL;
	size_t n_names = 0;
	int r = 0;

	if (depth > 4096)
		return lp_err_set(cp->err, ELOOP, "tree too deep");
	for (uint32_t k = 0; k < n_dirs; k++)
		n_names += layers[dirs[k].layer]->inodes[dirs[k].ino].count;
	names = lp_xcalloc(n_names ? n_names : 1, sizeof(*names));
	n_names = 0;
	for (uint32_t k = 0; k < n_dirs; k++) {
		const struct model *m = layers[dirs[k].layer];
		const struct model_inode *d = &m->inodes[dirs[k].ino];

		for (uint32_t i = d->first; i < d->first + d->count; i++) {
			const char *nm = model_str(m, m->dirents[i].name);

			if (!strncmp(nm, WH_PREFIX, strlen(WH_PREFIX)))
				continue;
			names[n_names++] = nm;
		}
	}
	qsort(names, n_names, sizeof(*names), name_cmp);
	sub = lp_xcalloc(n_dirs ? n_dirs : 1, sizeof(*sub));

	for (size_t i = 0; i < n_names; i++) {
		const char *nm = names[i];
		size_t nl = strlen(nm);
		uint32_t n_sub = 0, top_layer = 0, top_ino = 0;
		char wh[300];

		if (i && !strcmp(nm, names[i - 1]))
			continue;
		snprintf(wh, sizeof(wh), WH_PREFIX "%s", nm);
		/* dirs[] runs from the top layer down */
		for (uint32_t k = 0; k < n_dirs; k++) {
			const struct model *m = layers[dirs[k].layer];
			uint32_t ino = model_lookup(m, dirs[k].ino, nm);
			bool whiteout = model_lookup(m, dirs[k].ino, wh) != 0;

			if (ino) {
				bool isdir = S_ISDIR(m->inodes[ino].mode);

				if (!top_ino) {
					top_layer = dirs[k].layer;
					top_ino = ino;
				} else if (!isdir) {
					break;
				}
				if (!isdir)
					break;
				sub[n_sub].layer = dirs[k].layer;
				sub[n_sub].ino = ino;
				n_sub++;
				if (is_opaque(m, ino))
					break;
			}
			/* a whiteout hides the name in every lower layer */
			if (whiteout)
				break;
		}
		if (!top_ino)
			continue;
		if (plen + 1 + nl + 1 > 8192)
			return lp_err_set(cp->err, ENAMETOOLONG,
					  "path too long under %s", path);
		path[plen] = '/';
		memcpy(path + plen + 1, nm, nl + 1);
		/*
		 * A directory a layer only implied (a child without its parent
		 * entry) takes its attributes from the topmost layer that
		 * declared it, as extracting the layers in order would.
		 */
		for (uint32_t k = 0; k < n_sub; k++) {
			const struct model *sm = layers[sub[k].layer];

			if (!(sm->inodes[sub[k].ino].flags & MODEL_INODE_SYNTH)) {
				top_layer = sub[k].layer;
				top_ino = sub[k].ino;
				break;
			}
		}
		r = copy_inode(cp, layers[top_layer], top_layer, top_ino, path,
			       NULL);
		if (r < 0)
			return r;
		if (n_sub) {
			r = merge_dir(cp, layers, sub, n_sub, path,
				      plen + 1 + nl, depth + 1);
			if (r < 0)
				return r;
		}
		path[plen] = '\0';
	}
	return 0;
}

static struct copier *copier_new(struct model *const *layers, uint32_t n,
				 struct lp_err *err, int *ret)
{
	struct copier *cp = lp_xcalloc(1, sizeof(*cp));
	uint32_t blobs = 0;
	int r;

	cp->b = model_builder_new(0);
	cp->err = err;
	{
		/* at most every layer's names and chunks; a path is longer
		 * than its name, a few times over */
		size_t names = 0, chunks = 0, arena = 0;

		for (uint32_t l = 0; l < n; l++) {
			names += layers[l]->n_dirents + 1;
			chunks += layers[l]->n_chunks;
			arena += layers[l]->arena_len;
		}
		model_builder_reserve(cp->b, names, chunks, 4 * arena);
	}
	cp->ids = lp_xcalloc(n, sizeof(*cp->ids));
	cp->blob_base = lp_xcalloc(n, sizeof(*cp->blob_base));
	*ret = 0;
	for (uint32_t l = 0; l < n; l++) {
		cp->ids[l] = lp_xcalloc(layers[l]->n_inodes,
					sizeof(*cp->ids[l]));
		cp->blob_base[l] = blobs;
		for (uint32_t i = 0; i < layers[l]->n_blobs; i++) {
			const struct model_blob *bl = &layers[l]->blobs[i];
			uint32_t idx;

			r = model_builder_add_blob(
				cp->b, model_str(layers[l], bl->id),
				bl->media_type ? model_str(layers[l],
							   bl->media_type)
					       : NULL,
				bl->size, &idx, err);
			if (r < 0) {
				*ret = r;
				return cp;
			}
			blobs++;
		}
	}
	return cp;
}

static void copier_free(struct copier *cp, uint32_t n)
{
	if (!cp)
		return;
	for (uint32_t l = 0; l < n; l++)
		free(cp->ids[l]);
	free(cp->ids);
	free(cp->blob_base);
	model_builder_free(cp->b);
	free(cp);
}

int model_merge(struct model *const *layers, uint32_t n, struct model **ret,
		struct lp_err *err)
{
	struct copier *cp;
	struct layer_dir *roots;
	struct model *out = NULL;
	uint32_t n_roots = 0, blob = 0;
	char *path;
	int r;

	if (n == 0)
		return lp_err_set(err, EINVAL, "no layers to merge");
	cp = copier_new(layers, n, err, &r);
	if (r < 0) {
		copier_free(cp, n);
		return r;
	}
	roots = lp_xcalloc(n, sizeof(*roots));
	for (uint32_t k = n; k-- > 0;) {
		if (layers[k]->n_inodes <= MODEL_ROOT_INO)
			continue;
		roots[n_roots].layer = k;
		roots[n_roots].ino = MODEL_ROOT_INO;
		n_roots++;
		if (is_opaque(layers[k], MODEL_ROOT_INO))
			break;
	}
	path = lp_xcalloc(1, 8192);
	if (n_roots) {
		struct model_entry root = { .path = "/", .path_len = 1,
					    .type = MODEL_DIR };
		uint32_t rl = roots[0].layer, id;
		const struct model_inode *ri;

		for (uint32_t k = 0; k < n_roots; k++) {
			if (!(layers[roots[k].layer]->inodes[MODEL_ROOT_INO]
				      .flags & MODEL_INODE_SYNTH)) {
				rl = roots[k].layer;
				break;
			}
		}
		ri = &layers[rl]->inodes[MODEL_ROOT_INO];
		root.mode = ri->mode & 07777;
		root.uid = ri->uid;
		root.gid = ri->gid;
		root.mtime = ri->mtime;
		root.layer = rl;
		r = model_builder_add(cp->b, &root, &id, err);
		for (uint32_t i = 0; r == 0 && i < ri->xattr_count; i++) {
			const struct model *m = layers[rl];
			const struct model_xattr *x =
				&m->xattrs[ri->xattr_first + i];

			r = model_builder_add_xattr(
				cp->b, id, model_str(m, x->name),
				model_str(m, x->value), x->value_len, err);
		}
		if (r == 0)
			r = merge_dir(cp, layers, roots, n_roots, path, 0, 0);
	}
	free(path);
	free(roots);
	if (r == 0) {
		r = model_builder_finish(TAKE_PTR(cp->b), &out, err);
		if (r == 0) {
			for (uint32_t l = 0; l < n; l++)
				for (uint32_t i = 0; i < layers[l]->n_blobs;
				     i++)
					out->blobs[blob++].layer = l;
			out->n_layers = n;
			*ret = out;
		}
	}
	copier_free(cp, n);
	return r;
}

struct overlay_ctx {
	struct copier *cp;
	const struct model *m;
	uint32_t *dir_ids; /* dir ino -> builder id */
	int r;
};

static int overlay_cb(const struct model *m, const char *path, uint32_t ino,
		      bool primary, void *data)
{
	struct overlay_ctx *o = data;
	const struct model_inode *in = &m->inodes[ino];
	const char *base = strrchr(path, '/') + 1;
	char pbuf[8192];
	uint32_t id, parent;
	(void)primary;

	if (ino == MODEL_ROOT_INO)
		return 0;
	/* the parent is the dir we are walking: find it by path */
	snprintf(pbuf, sizeof(pbuf), "%.*s", (int)(base - path - 1), path);
	parent = model_lookup_path(m, pbuf[0] ? pbuf : "/");
	if (!strcmp(base, WH_OPAQUE)) {
		return model_builder_add_xattr(o->cp->b, o->dir_ids[parent],
					       "trusted.overlay.opaque", "y",
					       1, o->cp->err);
	}
	if (!strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) &&
	    base[strlen(WH_PREFIX)]) {
		struct model_entry e = { 0 };

		if (model_lookup(m, parent, base + strlen(WH_PREFIX)))
			return 0;
		snprintf(pbuf, sizeof(pbuf), "%.*s%s", (int)(base - path),
			 path, base + strlen(WH_PREFIX));
		e.path = pbuf;
		e.path_len = strlen(pbuf);
		e.type = MODEL_CHAR;
		e.mtime = in->mtime;
		return model_builder_add(o->cp->b, &e, NULL, o->cp->err);
	}
	int r = copy_inode(o->cp, m, 0, ino, path, &id);
	if (r < 0)
		return r;
	if (S_ISDIR(in->mode))
		o->dir_ids[ino] = id;
	return 0;
}

int model_to_overlay(const struct model *layer, struct model **ret,
		     struct lp_err *err)
{
	struct model *const layers[1] = { (struct model *)layer };
	struct overlay_ctx o = { 0 };
	int r;

	o.cp = copier_new(layers, 1, err, &r);
	if (r < 0) {
		copier_free(o.cp, 1);
		return r;
	}
	o.m = layer;
	o.dir_ids = lp_xcalloc(layer->n_inodes, sizeof(uint32_t));
	if (layer->n_inodes > MODEL_ROOT_INO) {
		const struct model_inode *ri = &layer->inodes[MODEL_ROOT_INO];
		struct model_entry root = { .path = "/", .path_len = 1,
					    .type = MODEL_DIR };

		root.mode = ri->mode & 07777;
		root.uid = ri->uid;
		root.gid = ri->gid;
		root.mtime = ri->mtime;
		r = model_builder_add(o.cp->b, &root,
				      &o.dir_ids[MODEL_ROOT_INO], err);
		for (uint32_t i = 0; r == 0 && i < ri->xattr_count; i++) {
			const struct model_xattr *x =
				&layer->xattrs[ri->xattr_first + i];

			r = model_builder_add_xattr(
				o.cp->b, o.dir_ids[MODEL_ROOT_INO],
				model_str(layer, x->name),
				model_str(layer, x->value), x->value_len, err);
		}
		if (r == 0)
			r = model_walk(layer, overlay_cb, &o);
	}
	free(o.dir_ids);
	if (r == 0)
		r = model_builder_finish(TAKE_PTR(o.cp->b), ret, err);
	copier_free(o.cp, 1);
	return r;
}
