/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model builder: entries by path in, a frozen tree out.
 */
#define LP_MODNAME "model"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/model.h"

#define PATH_MAX_LEN 4095
#define NAME_MAX_LEN 255

struct bentry {
	uint32_t path; /* arena: cleaned path, no leading '/', "" = root */
	uint32_t path_len;
	uint32_t base; /* offset of the last component inside the path */
	uint32_t hash, phash; /* of the path, of its parent's (the map's) */
	uint32_t link; /* arena: symlink target / cleaned hardlink path */
	uint32_t link_len;
	uint32_t link_id;
	uint32_t mode, uid, gid;
	uint32_t rdev_major, rdev_minor, layer;
	uint64_t size;
	int64_t mtime;
	uint8_t type;
	bool dead;    /* replaced by a later entry of the same name */
	bool synth;   /* a synthesised parent directory */
	uint32_t src; /* finish: the entry a hardlink resolves to */
	uint32_t ino; /* finish: assigned inode */
	uint32_t parent; /* finish: parent entry id */
};

struct bxattr {
	uint32_t owner;
	uint32_t name, value, value_len;
};

struct bchunk {
	uint32_t owner;
	uint32_t seq;
	struct model_chunk c;
};

struct model_builder {
	unsigned flags;
	struct bentry *e; /* [0] unused */
	size_t n_e, cap_e;
	struct bxattr *x;
	size_t n_x, cap_x;
	struct bchunk *c;
	size_t n_c, cap_c;
	struct model_blob *blobs;
	size_t n_blobs, cap_blobs;
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *map; /* open addressing: entry ids by path, 0 = free */
	size_t map_cap, map_used;
	struct lp_err *err;
};

static uint32_t arena_add(struct model_builder *b, const void *s, size_t len)
{
	uint32_t off;

	if (b->arena_len + len + 1 > UINT32_MAX) {
		fputs("lazypull: model string arena over 4 GiB\n", stderr);
		abort();
	}
	lp_grow((void **)&b->arena, 1, &b->arena_cap, b->arena_len + len + 1);
	off = (uint32_t)b->arena_len;
	if (len)
		memcpy(b->arena + off, s, len);
	b->arena[off + len] = '\0';
	b->arena_len += len + 1;
	return off;
}

/*
 * FNV-1a of a path; *ret_parent (when not NULL) gets the hash of the
 * path's parent, the part before its last '/' ("" without one), which
 * the same pass passes through.
 */
static uint32_t hash_path(const char *s, size_t len, uint32_t *ret_parent)
{
	uint64_t h = 1469598103934665603ull, parent = h;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '/')
			parent = h;
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	if (ret_parent)
		*ret_parent = (uint32_t)(parent ^ (parent >> 32));
	return (uint32_t)(h ^ (h >> 32));
}

/* The slot of path p (hash h) in the map: its entry's, or a free one. */
static size_t map_slot(const struct model_builder *b, const char *p,
		       size_t len, uint32_t h)
{
	size_t mask = b->map_cap - 1, i = h & mask;

	for (;;) {
		uint32_t id = b->map[i];

		if (!id)
			return i;
		if (b->e[id].hash == h && b->e[id].path_len == len &&
		    !memcmp(b->arena + b->e[id].path, p, len))
			return i;
		i = (i + 1) & mask;
	}
}

static void map_grow(struct model_builder *b)
{
	uint32_t *old = b->map;
	size_t old_cap = b->map_cap;

	b->map_cap = old_cap ? old_cap * 2 : 1024;
	b->map = lp_xcalloc(b->map_cap, sizeof(*b->map));
	/* the paths in the map are distinct: each takes the first free
	 * slot from its hash on, no comparing */
	for (size_t i = 0; i < old_cap; i++) {
		uint32_t id = old[i];
		size_t k;

		if (!id)
			continue;
		for (k = b->e[id].hash & (b->map_cap - 1); b->map[k];
		     k = (k + 1) & (b->map_cap - 1))
			;
		b->map[k] = id;
	}
	free(old);
}

/* The live entry of path (hash h), or 0. */
static uint32_t find_hashed(const struct model_builder *b, const char *path,
			    size_t len, uint32_t h)
{
	if (!b->map_cap)
		return 0;
	return b->map[map_slot(b, path, len, h)];
}

/* The entry of e's parent directory, or 0. */
static uint32_t find_parent(const struct model_builder *b,
			    const struct bentry *e)
{
	return find_hashed(b, b->arena + e->path, e->base ? e->base - 1 : 0,
			   e->phash);
}

uint32_t model_builder_find(struct model_builder *b, const char *path,
			    size_t len)
{
	return find_hashed(b, path, len, hash_path(path, len, NULL));
}

struct model_builder *model_builder_new(unsigned flags)
{
	struct model_builder *b = lp_xcalloc(1, sizeof(*b));

	b->flags = flags;
	lp_grow((void **)&b->e, sizeof(*b->e), &b->cap_e, 64);
	b->n_e = 1;
	arena_add(b, "", 0); /* offset 0 is the empty string */
	map_grow(b);
	return b;
}

void model_builder_reserve(struct model_builder *b, size_t n,
			   size_t n_chunks, size_t arena)
{
	lp_grow((void **)&b->e, sizeof(*b->e), &b->cap_e, b->n_e + n);
	lp_grow((void **)&b->c, sizeof(*b->c), &b->cap_c, b->n_c + n_chunks);
	lp_grow((void **)&b->arena, 1, &b->arena_cap, b->arena_len + arena);
	/* add_raw grows the map past three quarters full */
	while ((b->map_used + n) * 4 > b->map_cap * 3)
		map_grow(b);
}

void model_builder_free(struct model_builder *b)
{
	if (!b)
		return;
	free(b->e);
	free(b->x);
	free(b->c);
	free(b->blobs);
	free(b->arena);
	free(b->map);
	free(b);
}

/*
 * Cleans a raw tar/TOC name like Go's path.Clean("/"+name), minus the
 * leading slash, into out (at least len+1 bytes).  ".." that would climb
 * above the root is an error: such a name is an attack, not a layout.
 */
static int clean_path(const char *in, size_t len, char *out, size_t *ret_len,
		      struct lp_err *err)
{
	size_t o = 0, i = 0;

	if (memchr(in, '\0', len))
		return lp_err_set(err, EINVAL, "name contains a NUL byte");
	while (i < len) {
		size_t start, clen;

		while (i < len && in[i] == '/')
			i++;
		start = i;
		while (i < len && in[i] != '/')
			i++;
		clen = i - start;
		if (clen == 0 || (clen == 1 && in[start] == '.'))
			continue;
		if (clen == 2 && in[start] == '.' && in[start + 1] == '.') {
			if (o == 0)
				return lp_err_set(err, EINVAL,
						  "name \"%.*s\" escapes the "
						  "root with \"..\"",
						  (int)(len > 200 ? 200 : len),
						  in);
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		if (clen > NAME_MAX_LEN)
			return lp_err_set(err, ENAMETOOLONG,
					  "name \"%.*s...\": a component is "
					  "longer than %d bytes",
					  60, in, NAME_MAX_LEN);
		if (o)
			out[o++] = '/';
		memcpy(out + o, in + start, clen);
		o += clen;
	}
	if (o > PATH_MAX_LEN)
		return lp_err_set(err, ENAMETOOLONG,
				  "name \"%.*s...\" is longer than %d bytes",
				  60, in, PATH_MAX_LEN);
	out[o] = '\0';
	*ret_len = o;
	return 0;
}

static uint32_t add_raw(struct model_builder *b, const char *path, size_t len)
{
	struct bentry *e;
	const char *slash;
	uint32_t id;
	size_t slot;

	if ((b->map_used + 1) * 4 > b->map_cap * 3)
		map_grow(b);
	if (b->n_e >= UINT32_MAX - 1) {
		fputs("lazypull: more than 2^32 model entries\n", stderr);
		abort();
	}
	lp_grow((void **)&b->e, sizeof(*b->e), &b->cap_e, b->n_e + 1);
	id = (uint32_t)b->n_e++;
	e = &b->e[id];
	memset(e, 0, sizeof(*e));
	e->path = arena_add(b, path, len);
	e->path_len = (uint32_t)len;
	slash = memrchr(b->arena + e->path, '/', len);
	e->base = slash ? (uint32_t)(slash - (b->arena + e->path) + 1) : 0;
	e->hash = hash_path(b->arena + e->path, len, &e->phash);
	slot = map_slot(b, b->arena + e->path, len, e->hash);
	if (b->map[slot])
		b->e[b->map[slot]].dead = true;
	else
		b->map_used++;
	b->map[slot] = id;
	return id;
}

int model_builder_add(struct model_builder *b, const struct model_entry *in,
		      uint32_t *ret_id, struct lp_err *err)
{
	char *clean;
	size_t clen;
	struct bentry *e;
	uint32_t id;
	int r;

	if (in->type < MODEL_DIR || in->type > MODEL_HARDLINK)
		return lp_err_set(err, EINVAL, "entry \"%.*s\": bad type %d",
				  (int)(in->path_len > 200 ? 200 : in->path_len),
				  in->path, (int)in->type);
	clean = lp_xmalloc(in->path_len + 1);
	r = clean_path(in->path, in->path_len, clean, &clen, err);
	if (r < 0) {
		free(clean);
		return r;
	}
	if (clen == 0 && in->type != MODEL_DIR) {
		free(clean);
		return lp_err_set(err, EINVAL,
				  "entry \"%.*s\" names the root but is a %s",
				  (int)(in->path_len > 200 ? 200 : in->path_len),
				  in->path, model_type_name(in->type));
	}
	if ((b->flags & MODEL_BUILD_STRICT) &&
	    model_builder_find(b, clean, clen)) {
		lp_err_set(err, EEXIST, "duplicate entry \"%s\"", clean);
		free(clean);
		return -EEXIST;
	}
	id = add_raw(b, clean, clen);
	free(clean);
	e = &b->e[id];
	e->type = (uint8_t)in->type;
	/* a symlink's permissions mean nothing on Linux: always 0777 */
	e->mode = in->type == MODEL_SYMLINK ? 0777 : in->mode & 07777;
	e->uid = in->uid;
	e->gid = in->gid;
	e->size = in->type == MODEL_REG ? in->size : 0;
	e->mtime = in->mtime;
	e->rdev_major = in->rdev_major;
	e->rdev_minor = in->rdev_minor;
	e->layer = in->layer;
	if (in->type == MODEL_SYMLINK) {
		if (in->link_len > PATH_MAX_LEN ||
		    (in->link && memchr(in->link, '\0', in->link_len)))
			return lp_err_set(err, EINVAL,
					  "symlink \"%s\": bad target",
					  b->arena + e->path);
		e->link = arena_add(b, in->link, in->link ? in->link_len : 0);
		e->link_len = (uint32_t)in->link_len;
	} else if (in->type == MODEL_HARDLINK) {
		if (in->link) {
			char *lc = lp_xmalloc(in->link_len + 1);
			size_t ll;

			r = clean_path(in->link, in->link_len, lc, &ll, err);
			if (r < 0) {
				free(lc);
				return lp_err_wrap(err, "hardlink \"%s\"",
						   b->arena + b->e[id].path);
			}
			e = &b->e[id];
			e->link = arena_add(b, lc, ll);
			e = &b->e[id];
			e->link_len = (uint32_t)ll;
			free(lc);
		} else {
			if (!in->link_id || in->link_id >= id)
				return lp_err_set(err, EINVAL,
						  "hardlink \"%s\": bad target id",
						  b->arena + e->path);
			e->link_id = in->link_id;
		}
	}
	if (ret_id)
		*ret_id = id;
	return 0;
}

int model_builder_add_xattr(struct model_builder *b, uint32_t id,
			    const char *name, const void *value, size_t len,
			    struct lp_err *err)
{
	struct bxattr *x;
	size_t nl = strlen(name);

	if (!id || id >= b->n_e)
		return lp_err_set(err, EINVAL, "xattr %s: bad entry id", name);
	if (nl == 0 || nl > 255 || len > 65536)
		return lp_err_set(err, EINVAL,
				  "entry \"%s\": xattr \"%.60s\" too long or "
				  "empty",
				  b->arena + b->e[id].path, name);
	/*
	 * Linux serves only namespaced names; others (macOS tars carry bare
	 * names) cannot be set by an extraction either, so they are dropped.
	 */
	if (strncmp(name, "user.", 5) && strncmp(name, "trusted.", 8) &&
	    strncmp(name, "security.", 9) && strncmp(name, "system.", 7)) {
		lp_debug("entry \"%s\": dropping xattr \"%.60s\" (no Linux "
			 "namespace)", b->arena + b->e[id].path, name);
		return 0;
	}
	lp_grow((void **)&b->x, sizeof(*b->x), &b->cap_x, b->n_x + 1);
	x = &b->x[b->n_x++];
	x->owner = id;
	x->name = arena_add(b, name, nl);
	x->value = arena_add(b, value, len);
	x->value_len = (uint32_t)len;
	return 0;
}

int model_builder_add_chunk(struct model_builder *b, uint32_t id,
			    const struct model_chunk *c, struct lp_err *err)
{
	struct bchunk *bc;

	if (!id || id >= b->n_e)
		return lp_err_set(err, EINVAL, "chunk: bad entry id");
	if (b->n_c >= UINT32_MAX - 1)
		return lp_err_set(err, E2BIG, "too many chunks");
	lp_grow((void **)&b->c, sizeof(*b->c), &b->cap_c, b->n_c + 1);
	bc = &b->c[b->n_c];
	bc->owner = id;
	bc->seq = (uint32_t)b->n_c;
	bc->c = *c;
	b->n_c++;
	return 0;
}

int model_builder_add_blob(struct model_builder *b, const char *id,
			   const char *media_type, uint64_t size,
			   uint32_t *ret_idx, struct lp_err *err)
{
	struct model_blob *bl;

	if (b->n_blobs >= 1u << 24)
		return lp_err_set(err, E2BIG, "too many blobs");
	lp_grow((void **)&b->blobs, sizeof(*b->blobs), &b->cap_blobs,
		b->n_blobs + 1);
	bl = &b->blobs[b->n_blobs];
	memset(bl, 0, sizeof(*bl));
	bl->id = arena_add(b, id ? id : "", id ? strlen(id) : 0);
	bl->media_type = media_type ? arena_add(b, media_type,
						strlen(media_type))
				    : 0;
	bl->size = size;
	if (ret_idx)
		*ret_idx = (uint32_t)b->n_blobs;
	b->n_blobs++;
	return 0;
}

/* ---- finish ----------------------------------------------------------- */

static const char *epath(const struct model_builder *b, uint32_t id)
{
	return b->arena + b->e[id].path;
}

/* Adds synthesised parents for every live entry (mode 0755, root-owned). */
static void synth_parents(struct model_builder *b)
{
	if (!model_builder_find(b, "", 0)) {
		uint32_t id = add_raw(b, "", 0);

		b->e[id].type = MODEL_DIR;
		b->e[id].mode = 0755;
		b->e[id].synth = true;
	}
	for (size_t i = 1; i < b->n_e; i++) {
		struct bentry *e = &b->e[i];
		uint32_t plen;

		if (e->dead || e->path_len == 0)
			continue;
		if (find_parent(b, e))
			continue;
		plen = e->base ? e->base - 1 : 0;
		/* copy: add_raw may move the arena */
		char *p = lp_xmalloc(plen + 1);
		memcpy(p, b->arena + e->path, plen);
		uint32_t id = add_raw(b, p, plen);
		free(p);
		b->e[id].type = MODEL_DIR;
		b->e[id].mode = 0755;
		b->e[id].synth = true;
		b->e[id].layer = b->e[i].layer;
	}
}

static int resolve_hardlinks(struct model_builder *b, struct lp_err *err)
{
	for (size_t i = 1; i < b->n_e; i++) {
		struct bentry *e = &b->e[i];
		uint32_t cur = (uint32_t)i;
		size_t steps = 0;

		e->src = (uint32_t)i;
		if (e->dead || e->type != MODEL_HARDLINK)
			continue;
		while (b->e[cur].type == MODEL_HARDLINK) {
			const struct bentry *c = &b->e[cur];
			uint32_t next;

			if (c->link_id)
				next = c->link_id;
			else
				next = model_builder_find(
					b, b->arena + c->link, c->link_len);
			if (!next || b->e[next].dead)
				return lp_err_set(
					err, EINVAL,
					"hardlink \"%s\": target \"%s\" does "
					"not exist",
					epath(b, (uint32_t)i),
					c->link_id ? epath(b, c->link_id)
						   : b->arena + c->link);
			if (++steps > b->n_e || next == i)
				return lp_err_set(err, ELOOP,
						  "hardlink \"%s\": cycle",
						  epath(b, (uint32_t)i));
			cur = next;
		}
		if (b->e[cur].type == MODEL_DIR)
			return lp_err_set(err, EINVAL,
					  "hardlink \"%s\": target \"%s\" is "
					  "a directory",
					  epath(b, (uint32_t)i), epath(b, cur));
		e->src = cur;
	}
	return 0;
}

struct child {
	uint32_t parent; /* entry id */
	uint32_t id;
};

/* comparators take the builder as qsort_r's argument: builders run in
 * parallel (one per layer) so there is no shared sort state */
static int child_cmp(const void *pa, const void *pb, void *arg)
{
	const struct model_builder *sort_b = arg;
	const struct child *a = pa, *c = pb;

	if (a->parent != c->parent)
		return a->parent < c->parent ? -1 : 1;
	const struct bentry *x = &sort_b->e[a->id], *y = &sort_b->e[c->id];
	return strcmp(sort_b->arena + x->path + x->base,
		      sort_b->arena + y->path + y->base);
}

static int chunk_cmp(const void *pa, const void *pb)
{
	const struct bchunk *a = pa, *c = pb;

	if (a->owner != c->owner)
		return a->owner < c->owner ? -1 : 1;
	if (a->c.file_off != c->c.file_off)
		return a->c.file_off < c->c.file_off ? -1 : 1;
	return a->seq < c->seq ? -1 : a->seq > c->seq;
}

static int xattr_cmp(const void *pa, const void *pb, void *arg)
{
	const struct model_builder *sort_b = arg;
	const struct bxattr *a = pa, *c = pb;
	int r;

	if (a->owner != c->owner)
		return a->owner < c->owner ? -1 : 1;
	r = strcmp(sort_b->arena + a->name, sort_b->arena + c->name);
	if (r)
		return r;
	/* keep the last one first so duplicates resolve to it */
	return a->value > c->value ? -1 : a->value < c->value;
}

static uint32_t type_bits(uint8_t t)
{
	switch (t) {
	case MODEL_DIR:
		return S_IFDIR;
	case MODEL_SYMLINK:
		return S_IFLNK;
	case MODEL_CHAR:
		return S_IFCHR;
	case MODEL_BLOCK:
		return S_IFBLK;
	case MODEL_FIFO:
		return S_IFIFO;
	case MODEL_SOCK:
		return S_IFSOCK;
	default:
		return S_IFREG;
	}
}

/* Final arena: interns strings from the builder arena. */
struct out_arena {
	char *s;
	size_t len, cap;
};

static uint32_t out_add(struct out_arena *a, const char *s, size_t len)
{
	uint32_t off;

	lp_grow((void **)&a->s, 1, &a->cap, a->len + len + 1);
	off = (uint32_t)a->len;
	memcpy(a->s + off, s, len);
	a->s[off + len] = '\0';
	a->len += len + 1;
	return off;
}

static void out_arena_release(struct out_arena *a)
{
	free(a->s);
}

int model_builder_finish(struct model_builder *b, struct model **ret,
			 struct lp_err *err)
{
	_cleanup_(model_builder_freep) __attribute__((unused)) struct model_builder *bb = b;
	_cleanup_(model_freep) struct model *m = NULL;
	_cleanup_free_ struct child *kids = NULL;
	_cleanup_free_ uint32_t *kid_first = NULL, *kid_count = NULL;
	_cleanup_free_ uint32_t *queue = NULL;
	_cleanup_(out_arena_release) struct out_arena oa = { 0 };
	size_t n_kids = 0, qh = 0, qt = 0;
	uint32_t root, next_ino;
	int r;

	synth_parents(b);
	r = resolve_hardlinks(b, err);
	if (r < 0)
		return r;
	root = model_builder_find(b, "", 0);
	if (b->e[root].type != MODEL_DIR)
		return lp_err_set(err, EINVAL, "root is not a directory");

	/* parent links and children lists */
	kids = lp_xcalloc(b->n_e, sizeof(*kids));
	for (size_t i = 1; i < b->n_e; i++) {
		struct bentry *e = &b->e[i];
		uint32_t p, ps;

		if (e->dead || i == root)
			continue;
		p = find_parent(b, e);
		ps = b->e[p].src ? b->e[p].src : p;
		if (b->e[ps].type != MODEL_DIR)
			return lp_err_set(err, ENOTDIR,
					  "entry \"%s\": parent \"%s\" is a %s, "
					  "not a directory",
					  epath(b, (uint32_t)i), epath(b, p),
					  model_type_name(b->e[ps].type));
		if (ps != p)
			return lp_err_set(err, ENOTDIR,
					  "entry \"%s\": parent is a hardlink",
					  epath(b, (uint32_t)i));
		e->parent = p;
		kids[n_kids].parent = p;
		kids[n_kids].id = (uint32_t)i;
		n_kids++;
	}
	qsort_r(kids, n_kids, sizeof(*kids), child_cmp, b);
	kid_first = lp_xcalloc(b->n_e, sizeof(uint32_t));
	kid_count = lp_xcalloc(b->n_e, sizeof(uint32_t));
	for (size_t i = 0; i < n_kids; i++) {
		if (!kid_count[kids[i].parent])
			kid_first[kids[i].parent] = (uint32_t)i;
		kid_count[kids[i].parent]++;
	}

	/* inode numbers in breadth-first order: siblings sit together */
	queue = lp_xmalloc(b->n_e * sizeof(uint32_t));
	b->e[root].ino = MODEL_ROOT_INO;
	next_ino = MODEL_ROOT_INO + 1;
	queue[qt++] = root;
	while (qh < qt) {
		uint32_t d = queue[qh++];

		for (uint32_t k = 0; k < kid_count[d]; k++) {
			uint32_t c = kids[kid_first[d] + k].id;

			if (b->e[c].type == MODEL_HARDLINK)
				continue;
			b->e[c].ino = next_ino++;
			if (b->e[c].type == MODEL_DIR)
				queue[qt++] = c;
		}
	}

	m = lp_xcalloc(1, sizeof(*m));
	m->n_inodes = next_ino;
	m->inodes = lp_xcalloc(next_ino, sizeof(*m->inodes));
	m->n_dirents = (uint32_t)n_kids;
	m->dirents = lp_xcalloc(n_kids ? n_kids : 1, sizeof(*m->dirents));
	m->n_layers = 1;
	out_add(&oa, "", 0);

	/* inodes of non-hardlink entries; names interned once */
	for (size_t i = 1; i < b->n_e; i++) {
		struct bentry *e = &b->e[i];
		struct model_inode *in;

		if (e->dead || e->type == MODEL_HARDLINK)
			continue;
		in = &m->inodes[e->ino];
		in->mode = type_bits(e->type) | e->mode;
		in->uid = e->uid;
		in->gid = e->gid;
		in->mtime = e->mtime;
		in->size = e->type == MODEL_REG ? e->size : 0;
		in->rdev_major = e->rdev_major;
		in->rdev_minor = e->rdev_minor;
		in->layer = (uint16_t)e->layer;
		in->flags = e->synth ? MODEL_INODE_SYNTH : 0;
		in->nlink = e->type == MODEL_DIR ? 2 : 1;
		in->parent = i == root ? MODEL_ROOT_INO : b->e[e->parent].ino;
		in->name = i == root ? 0
				     : out_add(&oa, b->arena + e->path + e->base,
					       e->path_len - e->base);
		if (e->type == MODEL_SYMLINK) {
			in->link = out_add(&oa, b->arena + e->link,
					   e->link_len);
			in->size = e->link_len;
		}
	}
	/* dirents, nlink */
	for (size_t i = 0; i < n_kids; i++) {
		struct bentry *c = &b->e[kids[i].id];
		struct bentry *p = &b->e[kids[i].parent];
		struct model_dirent *de = &m->dirents[i];
		struct model_inode *pin = &m->inodes[p->ino];
		uint32_t ino = c->type == MODEL_HARDLINK ? b->e[c->src].ino
							 : c->ino;

		if (i == 0 || kids[i - 1].parent != kids[i].parent)
			pin->first = (uint32_t)i;
		pin->count++;
		de->ino = ino;
		if (c->type == MODEL_HARDLINK) {
			de->name = out_add(&oa, b->arena + c->path + c->base,
					   c->path_len - c->base);
			m->inodes[ino].nlink++;
		} else {
			de->name = m->inodes[ino].name;
			if (c->type == MODEL_DIR)
				pin->nlink++;
		}
	}

	/* xattrs, sorted per owner, last duplicate wins */
	if (b->n_x) {
		qsort_r(b->x, b->n_x, sizeof(*b->x), xattr_cmp, b);
		m->xattrs = lp_xcalloc(b->n_x, sizeof(*m->xattrs));
		for (size_t i = 0; i < b->n_x; i++) {
			struct bxattr *x = &b->x[i];
			struct bentry *e = &b->e[x->owner];
			struct model_inode *in;

			if (e->dead || e->type == MODEL_HARDLINK)
				continue;
			if (i && b->x[i - 1].owner == x->owner &&
			    !strcmp(b->arena + b->x[i - 1].name,
				    b->arena + x->name))
				continue;
			in = &m->inodes[e->ino];
			if (!in->xattr_count)
				in->xattr_first = m->n_xattrs;
			in->xattr_count++;
			m->xattrs[m->n_xattrs].name =
				out_add(&oa, b->arena + x->name,
					strlen(b->arena + x->name));
			m->xattrs[m->n_xattrs].value =
				out_add(&oa, b->arena + x->value, x->value_len);
			m->xattrs[m->n_xattrs].value_len = x->value_len;
			m->n_xattrs++;
		}
	}

	/* chunks: grouped by owner, sorted by offset, must tile the file */
	if (b->n_c)
		qsort(b->c, b->n_c, sizeof(*b->c), chunk_cmp);
	m->chunks = lp_xcalloc(b->n_c ? b->n_c : 1, sizeof(*m->chunks));
	for (size_t i = 0; i < b->n_c;) {
		uint32_t owner = b->c[i].owner;
		struct bentry *e = &b->e[owner];
		size_t j = i;
		uint64_t pos = 0;

		while (j < b->n_c && b->c[j].owner == owner)
			j++;
		if (e->dead) {
			i = j;
			continue;
		}
		if (e->type != MODEL_REG)
			return lp_err_set(err, EINVAL,
					  "entry \"%s\": data chunks on a %s",
					  epath(b, owner),
					  model_type_name(e->type));
		struct model_inode *in = &m->inodes[e->ino];

		in->first = m->n_chunks;
		for (size_t k = i; k < j; k++) {
			const struct model_chunk *c = &b->c[k].c;
			uint64_t end;

			if (c->len == 0)
				continue;
			if (c->file_off != pos)
				return lp_err_set(
					err, EINVAL,
					"file \"%s\": chunk at offset %llu %s "
					"(expected offset %llu)",
					epath(b, owner),
					(unsigned long long)c->file_off,
					c->file_off < pos ? "overlaps the "
							    "previous one"
							  : "leaves a gap",
					(unsigned long long)pos);
			if (lp_add_overflow(c->file_off, c->len, &end) ||
			    end > e->size)
				return lp_err_set(
					err, EINVAL,
					"file \"%s\": chunk at offset %llu + "
					"%llu runs past the file size %llu",
					epath(b, owner),
					(unsigned long long)c->file_off,
					(unsigned long long)c->len,
					(unsigned long long)e->size);
			if (c->blob >= b->n_blobs)
				return lp_err_set(err, EINVAL,
						  "file \"%s\": chunk names "
						  "blob %u of %zu",
						  epath(b, owner), c->blob,
						  b->n_blobs);
			m->chunks[m->n_chunks++] = *c;
			pos = end;
		}
		in->count = m->n_chunks - in->first;
		if (pos != e->size)
			return lp_err_set(err, EINVAL,
					  "file \"%s\": chunks cover %llu of "
					  "%llu bytes",
					  epath(b, owner),
					  (unsigned long long)pos,
					  (unsigned long long)e->size);
		i = j;
	}
	/* regular files with data but no chunks at all */
	for (size_t i = 1; i < b->n_e; i++) {
		struct bentry *e = &b->e[i];

		if (!e->dead && e->type == MODEL_REG && e->size &&
		    !m->inodes[e->ino].count)
			return lp_err_set(err, EINVAL,
					  "file \"%s\": %llu bytes but no data "
					  "chunks",
					  epath(b, (uint32_t)i),
					  (unsigned long long)e->size);
	}
	/* directories with no children must still have sane ranges */
	m->n_blobs = (uint32_t)b->n_blobs;
	m->blobs = lp_xcalloc(b->n_blobs ? b->n_blobs : 1, sizeof(*m->blobs));
	for (size_t i = 0; i < b->n_blobs; i++) {
		m->blobs[i] = b->blobs[i];
		m->blobs[i].id = out_add(&oa, b->arena + b->blobs[i].id,
					 strlen(b->arena + b->blobs[i].id));
		if (b->blobs[i].media_type)
			m->blobs[i].media_type = out_add(
				&oa, b->arena + b->blobs[i].media_type,
				strlen(b->arena + b->blobs[i].media_type));
	}
	m->arena = TAKE_PTR(oa.s);
	m->arena_len = oa.len;
	*ret = TAKE_PTR(m);
	return 0;
}
