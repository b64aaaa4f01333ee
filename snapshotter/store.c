/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot store: metadata in LMDB, one directory per snapshot.
 *
 * Databases in <root>/metadata.mdb:
 *   snapshots  dbkey(name) -> record (below)
 *   ids        u64 id (big-endian) -> dbkey(name)
 *   children   u64 parent id ‖ u64 child id (big-endian) -> ""
 *   meta       "version" -> u32, "next_id" -> u64
 * dbkey(name) is the name itself, or for names longer than DBKEY_MAX bytes
 * "\0h" + sha256(name) (names are C strings, so no clash); the record always
 * holds the full name.
 *
 * Crash safety follows containerd's overlayfs snapshotter: a new snapshot's
 * directory is built under a temporary name and renamed to <id> inside the
 * write transaction, a removed one is renamed to rm-<id> before the commit;
 * whatever a crash leaves behind is not owned by any id and goes at the
 * next open or Cleanup.
 */
#define LP_MODNAME "snapshotter"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshotter/snapshotter-int.h"

#define DB_VERSION 1
#define REC_VERSION 1
#define DBKEY_MAX 400
#define MAX_CHAIN 4096
#define MAP_SIZE ((size_t)4 << 30)

struct snap_store {
	char *root;
	char *snapdir;
	MDB_env *env;
	MDB_dbi db_snap, db_ids, db_children, db_meta;
	/*
	 * Taken shared by calls that create or remove snapshot directories,
	 * exclusive by Cleanup, so Cleanup never sees a half-made one.
	 */
	pthread_rwlock_t dirlock;
	bool index_off; /* the kernel's overlay knows index=off */
	snap_lower_fn lower_fn; /* set before serving, then read-only */
	void *lower_arg;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * A system call failed: keep the errno only where it cannot be mistaken for
 * one of the snapshotter's answers (see snapshotter.h).
 */
static int sys_err(struct lp_err *err, int e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sys_err(struct lp_err *err, int e, const char *fmt, ...)
{
	char ctx[200];
	va_list ap;
	int code = e;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	if (e == EDQUOT)
		code = ENOSPC;
	else if (e != ENOSPC && e != EACCES && e != EPERM)
		code = EIO;
	return lp_err_set(err, -code, "%s: %s", ctx, strerror(e));
}

static int mdb_err(struct lp_err *err, int rc, const char *what)
{
	return lp_err_set(err, rc == MDB_MAP_FULL ? -ENOSPC : -EIO,
			  "metadata %s: %s", what, mdb_strerror(rc));
}

static void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

struct dbkey {
	uint8_t b[DBKEY_MAX + 1];
	size_t len;
};

static void dbkey_of(const char *name, struct dbkey *k)
{
	size_t n = strlen(name);

	if (n <= DBKEY_MAX) {
		memcpy(k->b, name, n);
		k->len = n;
		return;
	}
	k->b[0] = 0;
	k->b[1] = 'h';
	lp_sha256_plain(name, n, k->b + 2);
	k->len = 34;
}

/* ---- labels ----------------------------------------------------------- */

void snap_labels_free(struct snap_label *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct snap_label *)a)->key,
		      ((const struct snap_label *)b)->key);
}

int snap_labels_normalize(const struct snap_label *in, size_t n,
			  struct snap_label **ret, size_t *ret_n,
			  struct lp_err *err)
{
	struct snap_label *out = lp_xcalloc(n + 1, sizeof(*out));
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(in[i].key), vl = strlen(in[i].value);

		if (kl == 0) {
			snap_labels_free(out, k);
			return lp_err_set(err, -EINVAL,
					  "empty label key: invalid argument");
		}
		if (kl + vl > SNAP_LABEL_MAX) {
			snap_labels_free(out, k);
			return lp_err_set(err, -EINVAL,
					  "label key and value greater than "
					  "maximum size (%d bytes), key: "
					  "%.64s: invalid argument",
					  SNAP_LABEL_MAX, in[i].key);
		}
	}
	/* last one of equal keys wins: walk backwards, keep first seen */
	for (size_t i = n; i-- > 0;) {
		bool dup = false;

		for (size_t j = i + 1; j < n && !dup; j++)
			dup = !strcmp(in[i].key, in[j].key);
		if (dup || !in[i].value[0])
			continue;
		out[k].key = lp_xstrdup(in[i].key);
		out[k].value = lp_xstrdup(in[i].value);
		k++;
	}
	qsort(out, k, sizeof(*out), label_cmp);
	*ret = out;
	*ret_n = k;
	return 0;
}

const char *snap_labels_get(const struct snap_label *l, size_t n,
			    const char *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l[mid].key, key);

		if (c == 0)
			return l[mid].value;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void snap_info_release(struct snap_info *i)
{
	if (!i)
		return;
	free(i->name);
	free(i->parent);
	snap_labels_free(i->labels, i->n_labels);
	memset(i, 0, sizeof(*i));
}

void snap_mounts_release(struct snap_mounts *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->m[i].type);
		free(m->m[i].source);
		for (size_t k = 0; k < m->m[i].n_options; k++)
			free(m->m[i].options[k]);
		free(m->m[i].options);
	}
	free(m->m);
	memset(m, 0, sizeof(*m));
}

/* ---- records ---------------------------------------------------------- */

struct rec {
	uint64_t id;
	struct snap_info info;
	struct snap_usage usage;
};

static void rec_release(struct rec *r)
{
	snap_info_release(&r->info);
}

struct wbuf {
	uint8_t *b;
	size_t n, cap;
};

static void wb_add(struct wbuf *w, const void *p, size_t n)
{
	lp_grow((void **)&w->b, 1, &w->cap, w->n + n);
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void wb_u64(struct wbuf *w, uint64_t v)
{
	v = htole64(v);
	wb_add(w, &v, 8);
}

static void wb_str(struct wbuf *w, const char *s)
{
	uint32_t n = htole32((uint32_t)strlen(s));

	wb_add(w, &n, 4);
	wb_add(w, s, strlen(s));
}

/*
 * version u8, kind u8, id u64, created i64, updated i64, size i64,
 * inodes i64, name str, parent str, n_labels u32, (key str, value str)*;
 * integers little-endian, str = u32 length + bytes.
 */
static void rec_encode(const struct rec *r, struct wbuf *w)
{
	uint8_t hdr[2] = { REC_VERSION, (uint8_t)r->info.kind };
	uint32_t nl = htole32((uint32_t)r->info.n_labels);

	wb_add(w, hdr, 2);
	wb_u64(w, r->id);
	wb_u64(w, (uint64_t)r->info.created_ns);
	wb_u64(w, (uint64_t)r->info.updated_ns);
	wb_u64(w, (uint64_t)r->usage.size);
	wb_u64(w, (uint64_t)r->usage.inodes);
	wb_str(w, r->info.name);
	wb_str(w, r->info.parent ? r->info.parent : "");
	wb_add(w, &nl, 4);
	for (size_t i = 0; i < r->info.n_labels; i++) {
		wb_str(w, r->info.labels[i].key);
		wb_str(w, r->info.labels[i].value);
	}
}

struct rbuf {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t rb_u64(struct rbuf *r)
{
	uint64_t v = 0;

	if (r->end - r->p < 8) {
		r->bad = true;
		return 0;
	}
	memcpy(&v, r->p, 8);
	r->p += 8;
	return le64toh(v);
}

static uint32_t rb_u32(struct rbuf *r)
{
	uint32_t v = 0;

	if (r->end - r->p < 4) {
		r->bad = true;
		return 0;
	}
	memcpy(&v, r->p, 4);
	r->p += 4;
	return le32toh(v);
}

static char *rb_str(struct rbuf *r)
{
	uint32_t n = rb_u32(r);
	char *s;

	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return lp_xstrdup("");
	}
	s = lp_xmalloc((size_t)n + 1);
	memcpy(s, r->p, n);
	s[n] = '\0';
	r->p += n;
	return s;
}

static int rec_decode(const MDB_val *v, struct rec *out, struct lp_err *err)
{
	struct rbuf r = { v->mv_data, (const uint8_t *)v->mv_data + v->mv_size,
			  false };
	uint32_t nl;

	memset(out, 0, sizeof(*out));
	if (v->mv_size < 2 || r.p[0] != REC_VERSION)
		return lp_err_set(err, -EIO, "metadata: bad record version");
	out->info.kind = r.p[1];
	r.p += 2;
	out->id = rb_u64(&r);
	out->info.id = out->id;
	out->info.created_ns = (int64_t)rb_u64(&r);
	out->info.updated_ns = (int64_t)rb_u64(&r);
	out->usage.size = (int64_t)rb_u64(&r);
	out->usage.inodes = (int64_t)rb_u64(&r);
	out->info.name = rb_str(&r);
	out->info.parent = rb_str(&r);
	nl = rb_u32(&r);
	if (!r.bad && nl > (size_t)(r.end - r.p) / 8)
		r.bad = true;
	if (!r.bad) {
		out->info.labels =
			lp_xcalloc(nl + 1, sizeof(struct snap_label));
		for (uint32_t i = 0; i < nl && !r.bad; i++) {
			out->info.labels[i].key = rb_str(&r);
			out->info.labels[i].value = rb_str(&r);
			out->info.n_labels = i + 1;
		}
	}
	if (r.bad || out->info.kind < SNAP_KIND_VIEW ||
	    out->info.kind > SNAP_KIND_COMMITTED) {
		rec_release(out);
		return lp_err_set(err, -EIO, "metadata: corrupt record");
	}
	return 0;
}

/* -ENOENT (no message) when absent. */
static int rec_get(struct snap_store *s, MDB_txn *txn, const char *name,
		   struct rec *out, struct lp_err *err)
{
	struct dbkey k;
	MDB_val key, val;
	int rc;

	dbkey_of(name, &k);
	key.mv_data = k.b;
	key.mv_size = k.len;
	rc = mdb_get(txn, s->db_snap, &key, &val);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return mdb_err(err, rc, "read");
	return rec_decode(&val, out, err);
}

static int rec_put(struct snap_store *s, MDB_txn *txn, const struct rec *r,
		   struct lp_err *err)
{
	struct wbuf w = { 0 };
	struct dbkey k;
	uint8_t idk[8];
	MDB_val key, val;
	int rc;

	rec_encode(r, &w);
	dbkey_of(r->info.name, &k);
	key.mv_data = k.b;
	key.mv_size = k.len;
	val.mv_data = w.b;
	val.mv_size = w.n;
	rc = mdb_put(txn, s->db_snap, &key, &val, 0);
	free(w.b);
	if (rc)
		return mdb_err(err, rc, "write");
	put_be64(idk, r->id);
	key.mv_data = idk;
	key.mv_size = 8;
	val.mv_data = k.b;
	val.mv_size = k.len;
	rc = mdb_put(txn, s->db_ids, &key, &val, 0);
	if (rc)
		return mdb_err(err, rc, "write");
	return 0;
}

static int rec_del(struct snap_store *s, MDB_txn *txn, const char *name,
		   struct lp_err *err)
{
	struct dbkey k;
	MDB_val key;
	int rc;

	dbkey_of(name, &k);
	key.mv_data = k.b;
	key.mv_size = k.len;
	rc = mdb_del(txn, s->db_snap, &key, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return mdb_err(err, rc, "delete");
	return 0;
}

static int child_link(struct snap_store *s, MDB_txn *txn, uint64_t parent,
		      uint64_t child, bool add, struct lp_err *err)
{
	uint8_t kb[16];
	MDB_val key = { 16, kb }, val = { 0, "" };
	int rc;

	put_be64(kb, parent);
	put_be64(kb + 8, child);
	rc = add ? mdb_put(txn, s->db_children, &key, &val, 0) :
		   mdb_del(txn, s->db_children, &key, NULL);
	if (rc && !(rc == MDB_NOTFOUND && !add))
		return mdb_err(err, rc, "parent link");
	return 0;
}

static int has_children(struct snap_store *s, MDB_txn *txn, uint64_t id,
			bool *ret, struct lp_err *err)
{
	uint8_t kb[16] = { 0 };
	MDB_val key = { 16, kb }, val;
	MDB_cursor *cur;
	int rc;

	put_be64(kb, id);
	rc = mdb_cursor_open(txn, s->db_children, &cur);
	if (rc)
		return mdb_err(err, rc, "cursor");
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	*ret = rc == 0 && key.mv_size == 16 && get_be64(key.mv_data) == id;
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return mdb_err(err, rc, "cursor");
	return 0;
}

static int next_id(struct snap_store *s, MDB_txn *txn, uint64_t *ret,
		   struct lp_err *err)
{
	MDB_val key = { 7, "next_id" }, val;
	uint64_t id = 1;
	int rc;

	rc = mdb_get(txn, s->db_meta, &key, &val);
	if (rc == 0 && val.mv_size == 8) {
		memcpy(&id, val.mv_data, 8);
		id = le64toh(id);
	} else if (rc && rc != MDB_NOTFOUND) {
		return mdb_err(err, rc, "read");
	}
	*ret = id;
	id = htole64(id + 1);
	val.mv_data = &id;
	val.mv_size = 8;
	rc = mdb_put(txn, s->db_meta, &key, &val, 0);
	if (rc)
		return mdb_err(err, rc, "write");
	return 0;
}

/* The parent chain, nearest first. */
struct chain {
	uint64_t *ids;
	char **lower; /* per parent: where its lower layer is (the lower
		       * hook's answer), or NULL for its own fs */
	size_t n;
};

static void chain_release(struct chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->lower[i]);
	free(c->ids);
	free(c->lower);
	memset(c, 0, sizeof(*c));
}

size_t snap_chain_covering(const bool *covers, size_t n)
{
	size_t k = n;

	while (k > 0 && covers[k - 1])
		k--;
	return n - k >= 2 ? k : n;
}

static int parent_chain(struct snap_store *s, MDB_txn *txn,
			const char *parent, struct chain *ret,
			struct lp_err *err)
{
	struct chain c = { 0 };
	_cleanup_free_ bool *covers = NULL;
	size_t cap = 0, lcap = 0, ccap = 0, k;
	char *cur = lp_xstrdup(parent ? parent : "");
	int r = 0;

	while (cur[0]) {
		struct rec pr;

		if (c.n >= MAX_CHAIN) {
			r = lp_err_set(err, -EIO, "metadata: parent chain "
						  "longer than %d", MAX_CHAIN);
			break;
		}
		r = rec_get(s, txn, cur, &pr, err);
		if (r == -ENOENT)
			r = lp_err_set(err, -EIO, "metadata: missing parent "
						  "%.200s", cur);
		if (r < 0)
			break;
		lp_grow((void **)&c.ids, sizeof(*c.ids), &cap, c.n + 1);
		lp_grow((void **)&c.lower, sizeof(*c.lower), &lcap, c.n + 1);
		lp_grow((void **)&covers, sizeof(*covers), &ccap, c.n + 1);
		c.ids[c.n] = pr.id;
		covers[c.n] = false;
		c.lower[c.n] = s->lower_fn ? s->lower_fn(s->lower_arg,
							 &pr.info,
							 &covers[c.n])
					   : NULL;
		c.n++;
		free(cur);
		cur = TAKE_PTR(pr.info.parent);
		rec_release(&pr);
	}
	free(cur);
	if (r < 0) {
		chain_release(&c);
		return r;
	}
	/* one merged mount stands for the covering parent and those below */
	k = snap_chain_covering(covers, c.n);
	if (k < c.n) {
		for (size_t i = k + 1; i < c.n; i++)
			free(c.lower[i]);
		c.n = k + 1;
	}
	*ret = c;
	return 0;
}

/* ---- directories ------------------------------------------------------ */

static char *snap_path(struct snap_store *s, uint64_t id, const char *sub)
{
	char *p;

	if (asprintf(&p, "%s/%llu%s%s", s->snapdir, (unsigned long long)id,
		     sub ? "/" : "", sub ? sub : "") < 0)
		abort();
	return p;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR) {
		if (rmdir(path) < 0 && errno != ENOENT)
			return -1;
	} else if (unlink(path) < 0 && errno != ENOENT) {
		return -1;
	}
	return 0;
}

/* rm -rf that stays on one filesystem and never follows symlinks */
static int remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	if (nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
		return errno ? -errno : -EIO;
	return 0;
}

/* du: blocks * 512 of every inode once (hardlinks), and the inode count */
struct inoset {
	struct ino_slot {
		dev_t dev;
		ino_t ino;
		bool used;
	} *slots;
	size_t cap, n;
};

static bool inoset_add(struct inoset *s, dev_t dev, ino_t ino)
{
	if ((s->n + 1) * 2 > s->cap) {
		struct inoset ns = { .cap = s->cap ? s->cap * 2 : 1024 };

		ns.slots = lp_xcalloc(ns.cap, sizeof(*ns.slots));
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i].used)
				inoset_add(&ns, s->slots[i].dev,
					   s->slots[i].ino);
		free(s->slots);
		*s = ns;
	}
	size_t h = (size_t)((uint64_t)ino * 0x9e3779b97f4a7c15ull ^
			    (uint64_t)dev) & (s->cap - 1);

	while (s->slots[h].used) {
		if (s->slots[h].dev == dev && s->slots[h].ino == ino)
			return false;
		h = (h + 1) & (s->cap - 1);
	}
	s->slots[h] = (struct ino_slot){ dev, ino, true };
	s->n++;
	return true;
}

static __thread struct du_state {
	struct inoset set;
	int64_t size;
} *du_cur;

static int du_cb(const char *path, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_NS)
		return 0;
	if (inoset_add(&du_cur->set, st->st_dev, st->st_ino))
		du_cur->size += (int64_t)st->st_blocks * 512;
	return 0;
}

static int disk_usage(const char *path, struct snap_usage *ret,
		      struct lp_err *err)
{
	struct du_state st = { 0 };
	int r = 0;

	du_cur = &st;
	if (nftw(path, du_cb, 32, FTW_PHYS | FTW_MOUNT) != 0)
		r = sys_err(err, errno ? errno : EIO, "usage of %s", path);
	du_cur = NULL;
	if (r == 0) {
		ret->size = st.size;
		ret->inodes = (int64_t)st.set.n;
	}
	free(st.set.slots);
	return r;
}

static void add_mount(struct snap_mounts *m, const char *type,
		      const char *source, char **opts, size_t n)
{
	m->m = lp_xrealloc(m->m, (m->n + 1) * sizeof(*m->m));
	m->m[m->n].type = lp_xstrdup(type);
	m->m[m->n].source = lp_xstrdup(source);
	m->m[m->n].options = opts;
	m->m[m->n].n_options = n;
	m->n++;
}

/* Where parent i of the chain is mounted from: a lower hook's path or its fs. */
static char *lower_path(struct snap_store *s, const struct chain *c, size_t i)
{
	return c->lower[i] ? lp_xstrdup(c->lower[i])
			   : snap_path(s, c->ids[i], "fs");
}

/*
 * Mounts as containerd's overlayfs snapshotter returns them: a bind of the
 * snapshot's own fs without parents, a read-only bind of the parent for a
 * view of one layer, otherwise overlay (upper/work for active snapshots).
 * A parent whose layer is served elsewhere (a remote layer's FUSE mount)
 * is that directory in the lowerdir list, in its place in the chain.
 */
static void build_mounts(struct snap_store *s, enum snap_kind kind,
			 uint64_t id, const struct chain *c,
			 struct snap_mounts *ret)
{
	char **o;
	size_t n = 0;
	char *p;

	memset(ret, 0, sizeof(*ret));
	if (c->n == 0 || (kind == SNAP_KIND_VIEW && c->n == 1)) {
		o = lp_xcalloc(2, sizeof(*o));
		o[0] = lp_xstrdup(kind == SNAP_KIND_VIEW ? "ro" : "rw");
		o[1] = lp_xstrdup("rbind");
		p = c->n ? lower_path(s, c, 0) : snap_path(s, id, "fs");
		add_mount(ret, "bind", p, o, 2);
		free(p);
		return;
	}
	o = lp_xcalloc(4, sizeof(*o));
	if (s->index_off)
		o[n++] = lp_xstrdup("index=off");
	if (kind == SNAP_KIND_ACTIVE) {
		p = snap_path(s, id, "work");
		o[n++] = lp_xasprintf("workdir=%s", p);
		free(p);
		p = snap_path(s, id, "fs");
		o[n++] = lp_xasprintf("upperdir=%s", p);
		free(p);
	}
	struct wbuf lower = { 0 };

	wb_add(&lower, "lowerdir=", 9);
	for (size_t i = 0; i < c->n; i++) {
		p = lower_path(s, c, i);
		if (i)
			wb_add(&lower, ":", 1);
		wb_add(&lower, p, strlen(p));
		free(p);
	}
	wb_add(&lower, "", 1);
	o[n++] = (char *)lower.b;
	add_mount(ret, "overlay", "overlay", o, n);
}

/* ---- open / close ------------------------------------------------------- */

static int open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi,
		    struct lp_err *err)
{
	int rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);

	return rc ? mdb_err(err, rc, "open") : 0;
}

/* Removes what no id owns (temporary dirs of interrupted calls, …). */
static int sweep_dirs(struct snap_store *s, struct lp_err *err)
{
	MDB_txn *txn;
	DIR *d;
	struct dirent *de;
	int rc;

	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(err, rc, "begin");
	d = opendir(s->snapdir);
	if (!d) {
		mdb_txn_abort(txn);
		return sys_err(err, errno, "open %s", s->snapdir);
	}
	while ((de = readdir(d))) {
		char *end, *path;
		unsigned long long id;
		uint8_t kb[8];
		MDB_val key = { 8, kb }, val;
		int r;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		errno = 0;
		id = strtoull(de->d_name, &end, 10);
		if (!errno && !*end && de->d_name[0] >= '1' &&
		    de->d_name[0] <= '9') {
			put_be64(kb, id);
			if (mdb_get(txn, s->db_ids, &key, &val) == 0)
				continue;
		}
		path = lp_xasprintf("%s/%s", s->snapdir, de->d_name);
		r = remove_tree(path);
		if (r < 0)
			lp_log(LP_LOG_WARN, "cleanup: removing %s: %s", path,
			       strerror(-r));
		else
			lp_debug("cleanup: removed %s", path);
		free(path);
	}
	closedir(d);
	mdb_txn_abort(txn);
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = lp_xstrdup(path);

	for (char *q = p + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(p, 0711) < 0 && errno != EEXIST) {
			int e = errno;

			free(p);
			return -e;
		}
		*q = '/';
	}
	free(p);
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int snap_store_open(const char *root, struct snap_store **ret,
		    struct lp_err *err)
{
	struct snap_store *s = lp_xcalloc(1, sizeof(*s));
	MDB_txn *txn = NULL;
	char *dbpath;
	int rc, r;

	pthread_rwlock_init(&s->dirlock, NULL);
	s->root = lp_xstrdup(root);
	s->snapdir = lp_xasprintf("%s/snapshots", root);
	r = mkdir_p(root, 0700);
	if (r == 0)
		r = mkdir_p(s->snapdir, 0700);
	if (r < 0) {
		r = sys_err(err, -r, "create %s", s->snapdir);
		goto fail;
	}
	s->index_off =
		access("/sys/module/overlay/parameters/index", F_OK) == 0;

	rc = mdb_env_create(&s->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(s->env, 8);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, MAP_SIZE);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(s->env, 512);
	if (rc) {
		r = mdb_err(err, rc, "environment");
		goto fail;
	}
	dbpath = lp_xasprintf("%s/metadata.mdb", root);
	rc = mdb_env_open(s->env, dbpath, MDB_NOSUBDIR, 0600);
	free(dbpath);
	if (rc) {
		r = mdb_err(err, rc, "open");
		goto fail;
	}
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc) {
		r = mdb_err(err, rc, "begin");
		goto fail;
	}
	if ((r = open_dbi(txn, "snapshots", &s->db_snap, err)) < 0 ||
	    (r = open_dbi(txn, "ids", &s->db_ids, err)) < 0 ||
	    (r = open_dbi(txn, "children", &s->db_children, err)) < 0 ||
	    (r = open_dbi(txn, "meta", &s->db_meta, err)) < 0)
		goto fail;

	MDB_val key = { 7, "version" }, val;
	uint32_t ver = htole32(DB_VERSION);

	rc = mdb_get(txn, s->db_meta, &key, &val);
	if (rc == MDB_NOTFOUND) {
		val.mv_data = &ver;
		val.mv_size = 4;
		rc = mdb_put(txn, s->db_meta, &key, &val, 0);
	} else if (rc == 0) {
		uint32_t have = 0;

		if (val.mv_size == 4)
			memcpy(&have, val.mv_data, 4);
		if (le32toh(have) != DB_VERSION) {
			r = lp_err_set(err, -EIO,
				       "metadata version %u, expected %u",
				       le32toh(have), DB_VERSION);
			goto fail;
		}
	}
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	txn = NULL;
	if (rc) {
		r = mdb_err(err, rc, "commit");
		goto fail;
	}
	r = sweep_dirs(s, err);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	snap_store_close(s);
	return lp_err_wrap(err, "store %s", root);
}

void snap_store_close(struct snap_store *s)
{
	if (!s)
		return;
	if (s->env)
		mdb_env_close(s->env);
	pthread_rwlock_destroy(&s->dirlock);
	free(s->root);
	free(s->snapdir);
	free(s);
}

const char *snap_store_root(const struct snap_store *s)
{
	return s->root;
}

/* ---- operations ------------------------------------------------------- */

static int txn_begin(struct snap_store *s, bool write, MDB_txn **txn,
		     struct lp_err *err)
{
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);

	return rc ? mdb_err(err, rc, "begin") : 0;
}

static int txn_commit(MDB_txn *txn, struct lp_err *err)
{
	int rc = mdb_txn_commit(txn);

	return rc ? mdb_err(err, rc, "commit") : 0;
}

static int check_key(const char *what, const char *key, struct lp_err *err)
{
	if (!key || !key[0])
		return lp_err_set(err, -EINVAL, "%s must not be empty: "
						"invalid argument", what);
	return 0;
}

/* Builds new-XXXXXX/{fs[,work]} for a snapshot of this kind. */
static int make_tmpdir(struct snap_store *s, enum snap_kind kind,
		       char **ret, struct lp_err *err)
{
	char *td = lp_xasprintf("%s/new-XXXXXX", s->snapdir), *p;

	if (!mkdtemp(td)) {
		int e = errno;

		free(td);
		return sys_err(err, e, "create snapshot directory");
	}
	p = lp_xasprintf("%s/fs", td);
	if (mkdir(p, 0755) < 0)
		goto fail;
	free(p);
	p = NULL;
	if (kind == SNAP_KIND_ACTIVE) {
		p = lp_xasprintf("%s/work", td);
		if (mkdir(p, 0711) < 0)
			goto fail;
		free(p);
	}
	*ret = td;
	return 0;
fail:;
	int e = errno;

	free(p);
	remove_tree(td);
	free(td);
	return sys_err(err, e, "create snapshot directory");
}

/* Active, view, or (snap_store_add_committed) committed: mounts only for
 * the first two. */
static int create_snapshot(struct snap_store *s, enum snap_kind kind,
			   const char *key, const char *parent,
			   const struct snap_label *labels, size_t n_labels,
			   struct snap_mounts *ret, struct lp_err *err)
{
	struct rec r = { 0 }, pr = { 0 };
	struct snap_label *nl = NULL;
	size_t nn = 0;
	struct chain chain = { 0 };
	char *td = NULL, *dst = NULL;
	MDB_txn *txn = NULL;
	int res;

	res = check_key(kind == SNAP_KIND_COMMITTED ? "snapshot name"
						    : "snapshot key", key, err);
	if (res < 0)
		return res;
	res = snap_labels_normalize(labels, n_labels, &nl, &nn, err);
	if (res < 0)
		return res;
	parent = parent ? parent : "";

	pthread_rwlock_rdlock(&s->dirlock);
	res = make_tmpdir(s, kind, &td, err);
	if (res < 0)
		goto out;
	res = txn_begin(s, true, &txn, err);
	if (res < 0)
		goto out;
	if (parent[0]) {
		res = rec_get(s, txn, parent, &pr, err);
		if (res == -ENOENT) {
			res = lp_err_set(err, -ENOENT, "missing parent "
					 "\"%.200s\": not found", parent);
			goto out;
		}
		if (res < 0)
			goto out;
		if (pr.info.kind != SNAP_KIND_COMMITTED) {
			res = lp_err_set(err, -EINVAL, "parent \"%.200s\" is "
					 "not committed snapshot: invalid "
					 "argument", parent);
			goto out;
		}
	}
	res = rec_get(s, txn, key, &r, err);
	if (res == 0) {
		rec_release(&r);
		res = lp_err_set(err, -EEXIST,
				 "snapshot %.200s: already exists", key);
		goto out;
	}
	if (res != -ENOENT)
		goto out;
	memset(&r, 0, sizeof(r));
	res = next_id(s, txn, &r.id, err);
	if (res < 0)
		goto out;
	r.info.name = (char *)key;
	r.info.parent = (char *)parent;
	r.info.kind = kind;
	r.info.created_ns = r.info.updated_ns = now_ns();
	r.info.labels = nl;
	r.info.n_labels = nn;
	res = rec_put(s, txn, &r, err);
	if (res < 0)
		goto out;
	if (parent[0]) {
		res = child_link(s, txn, pr.id, r.id, true, err);
		if (res < 0)
			goto out;
		if (kind != SNAP_KIND_COMMITTED) {
			res = parent_chain(s, txn, parent, &chain, err);
			if (res < 0)
				goto out;
		}

		/* the new upper dir takes the owner of the parent's */
		struct stat st;
		char *pfs = snap_path(s, pr.id, "fs"), *fs;

		fs = lp_xasprintf("%s/fs", td);
		if (stat(pfs, &st) < 0 ||
		    lchown(fs, st.st_uid, st.st_gid) < 0) {
			res = sys_err(err, errno, "owner of parent %s", pfs);
			free(pfs);
			free(fs);
			goto out;
		}
		free(pfs);
		free(fs);
	}
	dst = snap_path(s, r.id, NULL);
	if (rename(td, dst) < 0) {
		/* a directory left by a crash between rename and commit */
		if ((errno == EEXIST || errno == ENOTEMPTY) &&
		    remove_tree(dst) == 0 && rename(td, dst) == 0)
			goto renamed;
		res = sys_err(err, errno, "rename to %s", dst);
		goto out;
	}
renamed:
	free(td);
	td = NULL;
	res = txn_commit(txn, err);
	txn = NULL;
	if (res < 0) {
		remove_tree(dst);
		goto out;
	}
	if (kind != SNAP_KIND_COMMITTED)
		build_mounts(s, kind, r.id, &chain, ret);
	res = 0;
out:
	if (txn)
		mdb_txn_abort(txn);
	if (td) {
		remove_tree(td);
		free(td);
	}
	pthread_rwlock_unlock(&s->dirlock);
	free(dst);
	chain_release(&chain);
	rec_release(&pr);
	snap_labels_free(nl, nn);
	return res;
}

int snap_store_create(struct snap_store *s, enum snap_kind kind,
		      const char *key, const char *parent,
		      const struct snap_label *labels, size_t n_labels,
		      struct snap_mounts *ret, struct lp_err *err)
{
	if (kind != SNAP_KIND_ACTIVE && kind != SNAP_KIND_VIEW)
		return lp_err_set(err, -EINVAL, "snapshot type %d invalid; "
				  "only snapshots of type Active or View can "
				  "be created: invalid argument", kind);
	return create_snapshot(s, kind, key, parent, labels, n_labels, ret,
			       err);
}

int snap_store_add_committed(struct snap_store *s, const char *name,
			     const char *parent,
			     const struct snap_label *labels, size_t n_labels,
			     struct lp_err *err)
{
	return create_snapshot(s, SNAP_KIND_COMMITTED, name, parent, labels,
			       n_labels, NULL, err);
}

void snap_store_set_lower(struct snap_store *s, snap_lower_fn fn, void *arg)
{
	s->lower_fn = fn;
	s->lower_arg = arg;
}

int snap_store_mounts(struct snap_store *s, const char *key,
		      struct snap_mounts *ret, struct lp_err *err)
{
	MDB_txn *txn;
	struct rec r;
	struct chain chain = { 0 };
	int res;

	res = txn_begin(s, false, &txn, err);
	if (res < 0)
		return res;
	res = rec_get(s, txn, key, &r, err);
	if (res == -ENOENT) {
		mdb_txn_abort(txn);
		return lp_err_set(err, -ENOENT, "snapshot %.200s: not found",
				  key);
	}
	if (res < 0) {
		mdb_txn_abort(txn);
		return res;
	}
	if (r.info.kind != SNAP_KIND_ACTIVE && r.info.kind != SNAP_KIND_VIEW) {
		res = lp_err_set(err, -EBUSY, "requested snapshot %.200s not "
				 "active or view: failed precondition", key);
	} else {
		res = parent_chain(s, txn, r.info.parent, &chain, err);
		if (res == 0)
			build_mounts(s, r.info.kind, r.id, &chain, ret);
	}
	mdb_txn_abort(txn);
	chain_release(&chain);
	rec_release(&r);
	return res;
}

int snap_store_commit(struct snap_store *s, const char *name, const char *key,
		      const struct snap_label *labels, size_t n_labels,
		      struct lp_err *err)
{
	struct snap_label *nl = NULL;
	struct snap_usage usage = { 0 };
	bool have_usage = false;
	struct rec r = { 0 }, nr = { 0 };
	MDB_txn *txn = NULL;
	size_t nn = 0;
	int res;

	res = check_key("snapshot name", name, err);
	if (res < 0)
		return res;
	res = snap_labels_normalize(labels, n_labels, &nl, &nn, err);
	if (res < 0)
		return res;

	/* measure outside the write transaction: it can take a while */
	res = txn_begin(s, false, &txn, err);
	if (res < 0)
		goto out;
	res = rec_get(s, txn, key ? key : "", &r, err);
	mdb_txn_abort(txn);
	txn = NULL;
	if (res == 0 && r.info.kind == SNAP_KIND_ACTIVE) {
		char *fs = snap_path(s, r.id, "fs");

		res = disk_usage(fs, &usage, err);
		free(fs);
		if (res < 0)
			goto out;
		have_usage = true;
	} else if (res < 0 && res != -ENOENT) {
		goto out;
	}
	rec_release(&r);

	res = txn_begin(s, true, &txn, err);
	if (res < 0)
		goto out;
	res = rec_get(s, txn, name, &nr, err);
	if (res == 0) {
		res = lp_err_set(err, -EEXIST, "committed snapshot %.200s: "
				 "already exists", name);
		goto out;
	}
	if (res != -ENOENT)
		goto out;
	res = rec_get(s, txn, key ? key : "", &r, err);
	if (res == -ENOENT) {
		res = lp_err_set(err, -ENOENT, "failed to get active snapshot "
				 "\"%.200s\": not found", key ? key : "");
		goto out;
	}
	if (res < 0)
		goto out;
	if (r.info.kind != SNAP_KIND_ACTIVE) {
		res = lp_err_set(err, -EBUSY, "snapshot \"%.200s\" is not "
				 "active: failed precondition", key);
		goto out;
	}
	if (!have_usage) {
		/* it became active in between: measure now */
		char *fs = snap_path(s, r.id, "fs");

		res = disk_usage(fs, &usage, err);
		free(fs);
		if (res < 0)
			goto out;
	}
	res = rec_del(s, txn, key, err);
	if (res < 0)
		goto out;
	memset(&nr, 0, sizeof(nr));
	nr.id = r.id;
	nr.info.name = (char *)name;
	nr.info.parent = r.info.parent;
	nr.info.kind = SNAP_KIND_COMMITTED;
	nr.info.created_ns = nr.info.updated_ns = now_ns();
	nr.info.labels = nl;
	nr.info.n_labels = nn;
	nr.usage = usage;
	res = rec_put(s, txn, &nr, err);
	memset(&nr, 0, sizeof(nr));
	if (res < 0)
		goto out;
	res = txn_commit(txn, err);
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	rec_release(&r);
	rec_release(&nr);
	snap_labels_free(nl, nn);
	return res;
}

int snap_store_remove(struct snap_store *s, const char *key,
		      struct lp_err *err)
{
	MDB_txn *txn = NULL;
	struct rec r = { 0 }, pr = { 0 };
	char *dir = NULL, *rm = NULL;
	bool kids, moved = false;
	uint8_t idk[8];
	MDB_val k = { 8, idk };
	int res, rc;

	pthread_rwlock_rdlock(&s->dirlock);
	res = txn_begin(s, true, &txn, err);
	if (res < 0)
		goto out;
	res = rec_get(s, txn, key, &r, err);
	if (res == -ENOENT) {
		res = lp_err_set(err, -ENOENT, "snapshot %.200s: not found",
				 key);
		goto out;
	}
	if (res < 0)
		goto out;
	res = has_children(s, txn, r.id, &kids, err);
	if (res < 0)
		goto out;
	if (kids) {
		res = lp_err_set(err, -EBUSY, "cannot remove snapshot with "
				 "child: failed precondition");
		goto out;
	}
	if (r.info.parent[0]) {
		res = rec_get(s, txn, r.info.parent, &pr, err);
		if (res == 0)
			res = child_link(s, txn, pr.id, r.id, false, err);
		else if (res == -ENOENT)
			res = 0; /* nothing to unlink */
		if (res < 0)
			goto out;
	}
	res = rec_del(s, txn, key, err);
	if (res < 0)
		goto out;
	put_be64(idk, r.id);
	rc = mdb_del(txn, s->db_ids, &k, NULL);
	if (rc && rc != MDB_NOTFOUND) {
		res = mdb_err(err, rc, "delete");
		goto out;
	}
	dir = snap_path(s, r.id, NULL);
	rm = lp_xasprintf("%s/rm-%llu", s->snapdir, (unsigned long long)r.id);
	if (rename(dir, rm) == 0)
		moved = true;
	else if (errno != ENOENT) {
		res = sys_err(err, errno, "rename %s", dir);
		goto out;
	}
	res = txn_commit(txn, err);
	txn = NULL;
	if (res < 0) {
		if (moved && rename(rm, dir) < 0)
			lp_log(LP_LOG_WARN, "restoring %s: %s", dir,
			       strerror(errno));
		goto out;
	}
	if (moved) {
		int rr = remove_tree(rm);

		/* committed: a leftover is for Cleanup, not an error */
		if (rr < 0)
			lp_log(LP_LOG_WARN, "removing %s: %s", rm,
			       strerror(-rr));
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->dirlock);
	rec_release(&r);
	rec_release(&pr);
	free(dir);
	free(rm);
	return res;
}

int snap_store_stat(struct snap_store *s, const char *key,
		    struct snap_info *ret, struct lp_err *err)
{
	MDB_txn *txn;
	struct rec r;
	int res;

	res = txn_begin(s, false, &txn, err);
	if (res < 0)
		return res;
	res = rec_get(s, txn, key, &r, err);
	mdb_txn_abort(txn);
	if (res == -ENOENT)
		return lp_err_set(err, -ENOENT, "snapshot %.200s: not found",
				  key);
	if (res < 0)
		return res;
	*ret = r.info;
	return 0;
}

int snap_store_update(struct snap_store *s, const struct snap_info *info,
		      const char *const *paths, size_t n_paths,
		      struct snap_info *ret, struct lp_err *err)
{
	struct snap_label *in = NULL, *tmp = NULL;
	size_t nin = 0, ntmp = 0;
	MDB_txn *txn = NULL;
	struct rec r = { 0 };
	int res;

	for (size_t i = 0; i < n_paths; i++)
		if (strcmp(paths[i], "labels") &&
		    strncmp(paths[i], "labels.", 7))
			return lp_err_set(err, -EINVAL, "cannot update %.100s "
					  "field on snapshot %.100s: invalid "
					  "argument", paths[i], info->name);
	res = txn_begin(s, true, &txn, err);
	if (res < 0)
		return res;
	res = rec_get(s, txn, info->name ? info->name : "", &r, err);
	if (res == -ENOENT) {
		res = lp_err_set(err, -ENOENT, "snapshot %.200s: not found",
				 info->name ? info->name : "");
		goto out;
	}
	if (res < 0)
		goto out;

	bool all = n_paths == 0;

	for (size_t i = 0; i < n_paths; i++)
		all |= !strcmp(paths[i], "labels");
	if (all) {
		/* replace everything, then apply any labels.<k> on top: the
		 * result is the same as bolt's in-order application */
		nin = info->n_labels;
		in = lp_xcalloc(nin + 1, sizeof(*in));
		for (size_t i = 0; i < nin; i++)
			in[i] = info->labels[i];
	} else {
		nin = r.info.n_labels;
		in = lp_xcalloc(nin + n_paths + 1, sizeof(*in));
		for (size_t i = 0; i < nin; i++)
			in[i] = r.info.labels[i];
		for (size_t i = 0; i < n_paths; i++) {
			const char *k = paths[i] + 7;
			const char *v = NULL;

			for (size_t j = 0; j < info->n_labels; j++)
				if (!strcmp(info->labels[j].key, k))
					v = info->labels[j].value;
			in[nin].key = (char *)k;
			in[nin].value = (char *)(v ? v : "");
			nin++;
		}
	}
	res = snap_labels_normalize(in, nin, &tmp, &ntmp, err);
	if (res < 0)
		goto out;
	snap_labels_free(r.info.labels, r.info.n_labels);
	r.info.labels = TAKE_PTR(tmp);
	r.info.n_labels = ntmp;
	r.info.updated_ns = now_ns();
	res = rec_put(s, txn, &r, err);
	if (res < 0)
		goto out;
	res = txn_commit(txn, err);
	txn = NULL;
	if (res == 0) {
		*ret = r.info;
		memset(&r.info, 0, sizeof(r.info));
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	free(in);
	rec_release(&r);
	return res;
}

int snap_store_usage(struct snap_store *s, const char *key,
		     struct snap_usage *ret, struct lp_err *err)
{
	MDB_txn *txn;
	struct rec r;
	int res;

	res = txn_begin(s, false, &txn, err);
	if (res < 0)
		return res;
	res = rec_get(s, txn, key, &r, err);
	mdb_txn_abort(txn);
	if (res == -ENOENT)
		return lp_err_set(err, -ENOENT, "snapshot %.200s: not found",
				  key);
	if (res < 0)
		return res;
	if (r.info.kind == SNAP_KIND_ACTIVE) {
		char *fs = snap_path(s, r.id, "fs");

		res = disk_usage(fs, ret, err);
		free(fs);
	} else {
		*ret = r.usage;
	}
	rec_release(&r);
	return res;
}

int snap_store_cleanup(struct snap_store *s, struct lp_err *err)
{
	int r;

	pthread_rwlock_wrlock(&s->dirlock);
	r = sweep_dirs(s, err);
	pthread_rwlock_unlock(&s->dirlock);
	return r;
}

int snap_store_walk(struct snap_store *s, struct snap_cursor *cursor,
		    const struct snap_filter *f, size_t max,
		    int (*fn)(const struct snap_info *i, void *data),
		    void *data, bool *ret_done, struct lp_err *err)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val key, val;
	size_t sent = 0;
	int res, rc;

	res = txn_begin(s, false, &txn, err);
	if (res < 0)
		return res;
	rc = mdb_cursor_open(txn, s->db_snap, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_err(err, rc, "cursor");
	}
	if (cursor->len) {
		key.mv_data = cursor->key;
		key.mv_size = cursor->len;
		rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		if (rc == 0 && key.mv_size == cursor->len &&
		    !memcmp(key.mv_data, cursor->key, cursor->len))
			rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	} else {
		rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
	}
	while (rc == 0 && sent < max) {
		struct rec r;

		if (key.mv_size > sizeof(cursor->key)) {
			res = lp_err_set(err, -EIO, "metadata: key too long");
			break;
		}
		memcpy(cursor->key, key.mv_data, key.mv_size);
		cursor->len = key.mv_size;
		res = rec_decode(&val, &r, err);
		if (res < 0)
			break;
		if (!f || snap_filter_match(f, &r.info)) {
			res = fn(&r.info, data);
			sent++;
		}
		rec_release(&r);
		if (res < 0)
			break;
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		if (res > 0)
			break;
	}
	if (res >= 0 && rc && rc != MDB_NOTFOUND)
		res = mdb_err(err, rc, "cursor");
	if (res >= 0) {
		*ret_done = rc == MDB_NOTFOUND;
		res = 0;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return res;
}
