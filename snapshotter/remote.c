/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote layers: the per-layer decision on Prepare, the lower directories
 * of mounts over remote layers, and their fs daemons (daemon.c).  See
 * snapshotter.h for the rules.
 *
 * Prepare only reads what deciding needs: a HEAD for the size, the footer
 * and the TOC (eStargz, zstd:chunked), whose digest is checked against
 * the label.  A `lazypull probe` process does that (the snapshotter never
 * parses a TOC nor holds a registry client), through the blob cache the
 * daemons share, so the daemon that later serves the layer finds the TOC
 * on disk.  With warming (default) the probe then goes on fetching the
 * layer's landmark range and the image's access-trace files into that
 * cache while the pull continues, and the image's daemon is started on
 * its top layer's Prepare, so both overlap the pull.  A plain gzip layer
 * (zran) is only probed; its daemon builds the index when first mounted
 * and keeps it under the root (indexes/sha256/<hex>.zran) for the next
 * one.  A nydus data blob layer needs nothing at all: the daemon of the
 * bootstrap layer above it, which containerd unpacks, serves the image.
 */
#define LP_MODNAME "snapshotter"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/layout.h"
#include "common/lru.h"
#include "fetcher/fetcher.h"
#include "fs/engine.h"
#include "snapshotter/snapshotter-int.h"

/* how many later layers one Prepare probes ahead, and how many it
 * remembers so the next Prepares do not start them again */
#define AHEAD_MAX 8
#define AHEAD_RING 64

struct snap_remote {
	struct snap_store *st;
	char *root;
	char *cache_dir; /* the probes' and fs daemons' --cache-dir */
	bool stargz, zran;
	bool warm; /* probes warm the blob cache (c->warm) */
	/* layers probed ahead (recent ones, a ring) */
	pthread_mutex_t ahead_lock;
	char ahead[AHEAD_RING][80];
	unsigned ahead_next;
	bool early; /* start fs daemons on Prepare (c->early_mount) */
	bool merge; /* one merged mount per image (!c->no_merged_mounts) */
	struct snap_daemons *daemons;
	/* fs daemons started early, on the layer's Prepare (in flight) */
	pthread_mutex_t early_lock;
	pthread_cond_t early_cond;
	unsigned early_running;
};

static const char *find_label(const struct snap_label *l, size_t n,
			      const char *key)
{
	for (size_t i = n; i-- > 0;) /* the last of equal keys wins */
		if (!strcmp(l[i].key, key))
			return l[i].value[0] ? l[i].value : NULL;
	return NULL;
}

/*
 * The image reference and layer digest in a layer's labels (ctr-remote's,
 * else the CRI plugin's), checked so they can go on a command line.
 */
static bool layer_source(const struct snap_label *l, size_t n,
			 const char **ret_image, const char **ret_digest)
{
	const char *img = find_label(l, n, SNAP_LABEL_STARGZ_REF);
	const char *dg = find_label(l, n, SNAP_LABEL_STARGZ_DIGEST);
	struct fetch_ref ref;

	if (!img)
		img = find_label(l, n, SNAP_LABEL_CRI_REF);
	if (!dg)
		dg = find_label(l, n, SNAP_LABEL_CRI_DIGEST);
	if (!img || !dg || img[0] == '-' ||
	    fetch_digest_check(dg, strlen(dg)) < 0 ||
	    fetch_ref_parse(img, strlen(img), &ref, NULL) < 0)
		return false;
	fetch_ref_release(&ref);
	*ret_image = img;
	*ret_digest = dg;
	return true;
}

/* The format label of a remote layer: a nydus data blob has no daemon. */
#define FORMAT_NYDUS_BLOB "nydus-blob"

/*
 * What serves a committed layer: SERVED_LAYER, a daemon of its own for
 * the layer (`--layer-digest`); SERVED_IMAGE, a nydus bootstrap layer
 * (unpacked by containerd) whose daemon serves the image's RAFS tree in
 * place of its own fs; SERVED_NONE, its own fs (an ordinary layer, or a
 * nydus data blob, empty: its bytes are read through the bootstrap).
 */
enum served { SERVED_NONE, SERVED_LAYER, SERVED_IMAGE };

static enum served served_by(const struct snap_info *i)
{
	const char *fmt;

	if (i->kind != SNAP_KIND_COMMITTED)
		return SERVED_NONE;
	if (snap_labels_get(i->labels, i->n_labels,
			    SNAP_LABEL_NYDUS_BOOTSTRAP))
		return SERVED_IMAGE;
	if (!snap_labels_get(i->labels, i->n_labels, SNAP_LABEL_REMOTE))
		return SERVED_NONE;
	fmt = snap_labels_get(i->labels, i->n_labels, SNAP_LABEL_FORMAT);
	return fmt && !strcmp(fmt, FORMAT_NYDUS_BLOB) ? SERVED_NONE
						      : SERVED_LAYER;
}

/*
 * The daemon of a served layer: image and, for SERVED_LAYER, the layer
 * digest (NULL for SERVED_IMAGE: the whole nydus image).  False when the
 * labels do not say.
 */
static bool daemon_source(const struct snap_info *i, enum served how,
			  const char **ret_image, const char **ret_digest)
{
	const char *image, *digest;

	if (how == SERVED_NONE ||
	    !layer_source(i->labels, i->n_labels, &image, &digest))
		return false;
	*ret_image = image;
	*ret_digest = how == SERVED_LAYER ? digest : NULL;
	return true;
}

/* The layer-list label (this layer's digest, then those above it):
 * ctr-remote's, else the CRI plugin's; NULL if neither is set. */
static const char *layer_list(const struct snap_label *l, size_t n)
{
	const char *layers = find_label(l, n, SNAP_LABEL_STARGZ_LAYERS);

	return layers ? layers : find_label(l, n, SNAP_LABEL_CRI_LAYERS);
}

/* The image's top layer by the labels (the last of the layer list from
 * this one up), or NULL. */
static char *top_of(const struct snap_label *l, size_t n)
{
	const char *layers = layer_list(l, n), *last;

	if (!layers)
		return NULL;
	last = strrchr(layers, ',');
	last = last ? last + 1 : layers;
	if (fetch_digest_check(last, strlen(last)) < 0)
		return NULL;
	return lp_xstrdup(last);
}

/*
 * The access trace a probe warms with: the image's (the daemon that
 * serves it merged records it under its top layer's digest, the last of
 * the layer-list label), else this layer's own (per-layer daemons).
 */
static char *trace_for(struct snap_remote *r, const struct snap_label *l,
		       size_t n, const char *digest)
{
	_cleanup_free_ char *top = top_of(l, n);
	const char *cand[2] = { top, digest };

	for (size_t i = 0; i < ARRAY_SIZE(cand); i++) {
		const char *hex = cand[i] ? strchr(cand[i], ':') : NULL;
		char *path;

		if (!hex || !hex[1] ||
		    fetch_digest_check(cand[i], strlen(cand[i])) < 0)
			continue;
		if (asprintf(&path, "%s/traces/%s", r->root, hex + 1) < 0)
			abort();
		if (access(path, R_OK) == 0)
			return path;
		free(path);
	}
	return NULL;
}

/*
 * Can layer digest of image be served lazily?  1 with its format in fmt,
 * 0 no (an ordinary snapshot), -errno when it could not be found out (the
 * registry, a TOC that fails its digest).  `lazypull probe` finds out.
 */
static int probe_layer(struct snap_remote *r, const struct snap_label *l,
		       size_t n, const char *image, const char *digest,
		       bool resolve, char *fmt, size_t fmt_size,
		       struct lp_err *err)
{
	_cleanup_free_ char *trace = r->stargz ? trace_for(r, l, n, digest)
					       : NULL;
	struct snap_probe q = {
		.image = image,
		.digest = digest,
		.toc_digest = find_label(l, n, SNAP_LABEL_TOC),
		.no_toc = !r->stargz,
		.warm = r->stargz && r->warm,
		.trace = trace,
		.resolve = resolve,
	};
	int rc = snap_daemons_probe(r->daemons, &q, fmt, fmt_size, err);

	if (rc <= 0)
		return rc;
	if ((engine_stargz_family(fmt) && r->stargz) ||
	    (!strcmp(fmt, "zran") && r->zran))
		return 1;
	lp_debug("layer %s of %s: %s, not served lazily", digest, image, fmt);
	return 0;
}

/*
 * Is a layer of parent's chain a nydus bootstrap?  The fs daemons serve a
 * nydus image as its bootstrap's tree, never one of its other layers, so
 * a layer above one is left to containerd.
 */
static bool over_nydus(struct snap_remote *r, const char *parent)
{
	_cleanup_free_ char *cur = lp_xstrdup(parent);
	bool found = false;

	while (cur[0] && !found) {
		struct snap_info info = { 0 };

		if (snap_store_stat(r->st, cur, &info, NULL) < 0)
			break;
		found = served_by(&info) == SERVED_IMAGE;
		free(cur);
		cur = info.parent ? TAKE_PTR(info.parent) : lp_xstrdup("");
		snap_info_release(&info);
	}
	return found;
}

/*
 * Early start: the fs daemon of a layer committed as remote is started in
 * the background right away, so the mount (manifest, TOC, model) and the
 * prefetch of its landmark or access-trace files overlap the rest of the
 * pull and the container's creation instead of following the first
 * Mounts.  Mounts then finds it running (snap_daemon_ensure serializes on
 * the layer); if the early start failed, Mounts tries again and reports.
 */
static bool covering_self(struct snap_remote *r, const struct snap_info *i);

struct early_job {
	struct snap_remote *r;
	uint64_t id;
	char *image, *digest;
	bool merged;
};

static void *early_main(void *arg)
{
	struct early_job *j = arg;
	struct lp_err err = { 0 };

	if (snap_daemon_ensure(j->r->daemons, j->id, j->image, j->digest,
			       j->merged, &err) < 0)
		lp_log(LP_LOG_WARN, "early start of the fs daemon of layer %s: "
		       "%s (the first mount tries again)", j->digest, err.msg);
	pthread_mutex_lock(&j->r->early_lock);
	j->r->early_running--;
	pthread_cond_broadcast(&j->r->early_cond);
	pthread_mutex_unlock(&j->r->early_lock);
	free(j->image);
	free(j->digest);
	free(j);
	return NULL;
}

/*
 * With warming, the first Prepare of a pull starts probes of the layers
 * after it (the layer-list label: this one and those above), so their
 * TOCs come in together instead of one Prepare after another.  Its own
 * layer's probe goes first, with the manifest for the fs daemon
 * (--resolve): the Prepare waits for that one alone, and spawning the
 * others and the fs daemon must not delay it.
 */
static unsigned probe_ahead(struct snap_remote *r, const char *image,
			    const char *digest, const struct snap_label *l,
			    size_t n)
{
	const char *layers = layer_list(l, n);
	_cleanup_free_ char *copy = NULL;
	char *save = NULL, *d, *later[AHEAD_MAX];
	unsigned started = 0;

	if (!r->warm || !r->stargz)
		return 0;
	if (!layers || !strchr(layers, ','))
		return 0;
	copy = lp_xstrdup(layers);
	for (d = strtok_r(copy, ",", &save); d && started < AHEAD_MAX;
	     d = strtok_r(NULL, ",", &save)) {
		bool seen = false;

		if (!strcmp(d, digest) || strlen(d) >= sizeof(r->ahead[0]) ||
		    fetch_digest_check(d, strlen(d)) < 0)
			continue;
		pthread_mutex_lock(&r->ahead_lock);
		for (unsigned i = 0; i < AHEAD_RING && !seen; i++)
			seen = !strcmp(r->ahead[i], d);
		if (!seen) {
			snprintf(r->ahead[r->ahead_next % AHEAD_RING],
				 sizeof(r->ahead[0]), "%s", d);
			r->ahead_next++;
		}
		pthread_mutex_unlock(&r->ahead_lock);
		if (!seen)
			later[started++] = d;
	}
	if (!started)
		return 0;
	{
		_cleanup_free_ char *trace = trace_for(r, l, n, digest);
		struct snap_probe q = { .image = image,
					.digest = digest,
					.warm = true,
					.trace = trace,
					.resolve = true };

		snap_daemons_probe_ahead(r->daemons, &q);
	}
	for (unsigned i = 0; i < started; i++) {
		_cleanup_free_ char *trace = trace_for(r, l, n, later[i]);
		struct snap_probe q = { .image = image,
					.digest = later[i],
					.warm = true,
					.trace = trace };

		snap_daemons_probe_ahead(r->daemons, &q);
	}
	lp_debug("layer %s of %s: probing it and %u later layers ahead",
		 digest, image, started);
	return started;
}

/* Do the labels say this is the image's top layer (the layer list from
 * it up holds only itself)? */
static bool top_layer(const struct snap_label *l, size_t n)
{
	const char *layers = layer_list(l, n);

	return layers && layers[0] && !strchr(layers, ',');
}

static void early_start(struct snap_remote *r, const char *target,
			const char *image, const char *digest,
			const struct snap_label *l, size_t n)
{
	struct snap_info info = { 0 };
	struct early_job *j;
	pthread_attr_t attr;
	pthread_t th;
	bool merged;
	int rc;

	if (!image || !digest ||
	    snap_store_stat(r->st, target, &info, NULL) < 0)
		return;
	merged = r->merge && covering_self(r, &info);
	/* with warming, the image's own daemon starts on the Prepare of
	 * its top layer: it is the one the container's mount will use */
	if (!r->early && !(r->warm && merged && top_layer(l, n))) {
		snap_info_release(&info);
		return;
	}
	j = lp_xcalloc(1, sizeof(*j));
	j->r = r;
	j->id = info.id;
	j->image = lp_xstrdup(image);
	j->digest = lp_xstrdup(digest);
	j->merged = merged;
	snap_info_release(&info);
	pthread_mutex_lock(&r->early_lock);
	r->early_running++;
	pthread_mutex_unlock(&r->early_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &attr, early_main, j);
	pthread_attr_destroy(&attr);
	if (rc) {
		pthread_mutex_lock(&r->early_lock);
		r->early_running--;
		pthread_mutex_unlock(&r->early_lock);
		free(j->image);
		free(j->digest);
		free(j);
	}
}

static int exists(struct lp_err *err, const char *target)
{
	lp_err_set(err, -EEXIST, "target snapshot \"%.200s\": already exists",
		   target);
	return 1;
}

static int rp_prepare(void *ctx, const char *key, const char *parent,
		      const struct snap_label *l, size_t n, struct lp_err *err)
{
	struct snap_remote *r = ctx;
	const char *target = find_label(l, n, SNAP_LABEL_REF);
	const char *image, *digest;
	struct snap_info info = { 0 };
	struct snap_label *nl;
	uint64_t t0;
	_cleanup_free_ char *top = NULL;
	char fmt[32] = "";
	bool first;
	int rc;

	if (!target || find_label(l, n, SNAP_LABEL_NYDUS_BOOTSTRAP))
		return 0;
	parent = parent ? parent : "";
	/* already here: pulled before, or in another namespace */
	if (snap_store_stat(r->st, target, &info, NULL) == 0) {
		bool same = info.kind == SNAP_KIND_COMMITTED &&
			    !strcmp(info.parent, parent);

		snap_info_release(&info);
		return same ? exists(err, target) : 0;
	}
	if (find_label(l, n, SNAP_LABEL_NYDUS_BLOB)) {
		/* read through the bootstrap above it: nothing to check */
		snprintf(fmt, sizeof(fmt), FORMAT_NYDUS_BLOB);
		t0 = lp_now_ns();
		if (!layer_source(l, n, &image, &digest)) /* for the log */
			image = digest = NULL;
		goto commit;
	}
	if (!r->stargz && !r->zran)
		return 0;
	if (over_nydus(r, parent)) {
		lp_debug("prepare %s: above a nydus bootstrap layer: an "
			 "ordinary snapshot", key);
		return 0;
	}
	if (!layer_source(l, n, &image, &digest)) {
		lp_debug("prepare %s: no usable image reference and layer "
			 "digest labels: an ordinary snapshot", key);
		return 0;
	}
	t0 = lp_now_ns();
	/* the first Prepare of a pull (it probes the later layers ahead)
	 * also brings the manifest the image's fs daemon will want, and
	 * starts that daemon, which opens the image meanwhile */
	first = probe_ahead(r, image, digest, l, n) > 0;
	top = first && r->merge ? top_of(l, n) : NULL;
	if (top)
		snap_daemons_prestart(r->daemons, image, top);
	rc = probe_layer(r, l, n, image, digest, first, fmt, sizeof(fmt), err);
	if (rc <= 0 && top)
		snap_daemons_prestart_cancel(r->daemons, image, top);
	if (rc <= 0) {
		if (rc < 0)
			lp_log(LP_LOG_WARN, "layer %s of %s: %s; containerd "
			       "pulls it", digest, image, err->msg);
		lp_err_clear(err);
		return 0;
	}

commit:
	nl = lp_xcalloc(n + 2, sizeof(*nl));
	memcpy(nl, l, n * sizeof(*nl));
	nl[n].key = SNAP_LABEL_REMOTE;
	nl[n].value = SNAP_REMOTE_VALUE;
	nl[n + 1].key = SNAP_LABEL_FORMAT;
	nl[n + 1].value = fmt;
	rc = snap_store_add_committed(r->st, target, parent, nl, n + 2, err);
	free(nl);
	if (rc == -EEXIST) {
		lp_err_clear(err);
		return exists(err, target);
	}
	if (rc < 0)
		return rc;
	lp_log(LP_LOG_INFO, "layer %s of %s: remote (%s), committed as %s "
	       "in %.0f ms", digest ? digest : "?", image ? image : "?", fmt,
	       target, lp_ms_since(t0));
	if (strcmp(fmt, FORMAT_NYDUS_BLOB) != 0)
		early_start(r, target, image, digest, l, n);
	return exists(err, target);
}

struct remote_layer {
	uint64_t id;
	char *image, *digest; /* digest NULL: a nydus image's tree */
	bool merged;	      /* the image's layers up to digest, merged */
	char *key;	      /* recover(): the snapshot's name */
};

/*
 * One daemon per image: a remote layer whose ancestors are all remote
 * layers too is served as the merged tree of the image's layers from the
 * bottom up to it (`--up-to-layer-digest`), and that one mount is the
 * whole lowerdir of a snapshot on it (the store drops the ancestors,
 * rp_lower's covers).  Elsewhere in a chain a layer keeps its own mount.
 */
static bool covering_self(struct snap_remote *r, const struct snap_info *i)
{
	_cleanup_free_ char *cur = NULL;
	size_t n = 1;
	bool all = true;

	if (served_by(i) != SERVED_LAYER)
		return false;
	cur = lp_xstrdup(i->parent ? i->parent : "");
	while (cur[0] && all) {
		struct snap_info a = { 0 };

		if (snap_store_stat(r->st, cur, &a, NULL) < 0)
			return false;
		all = served_by(&a) == SERVED_LAYER;
		n++;
		free(cur);
		cur = a.parent ? TAKE_PTR(a.parent) : lp_xstrdup("");
		snap_info_release(&a);
	}
	return all && n >= 2;
}

/* Frees the strings of v[from..n), keeps the array. */
static void remote_layers_free_tail(struct remote_layer *v, size_t from,
				    size_t n)
{
	for (size_t i = from; i < n; i++) {
		free(v[i].image);
		free(v[i].digest);
		free(v[i].key);
		v[i].image = v[i].digest = v[i].key = NULL;
	}
}

static void remote_layers_free(struct remote_layer *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].image);
		free(v[i].key);
		free(v[i].digest);
	}
	free(v);
}

/* Daemons of one chain start on up to this many threads at once. */
#define ENSURE_THREADS 8

struct ensure_job {
	struct snap_remote *r;
	const struct remote_layer *v;
	size_t n;
	size_t next;		/* atomic: the next layer to take */
	struct lp_err *errs;	/* per layer */
	int *rcs;
};

static void *ensure_worker(void *arg)
{
	struct ensure_job *j = arg;

	for (;;) {
		size_t k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);

		if (k >= j->n)
			break;
		j->rcs[k] = snap_daemon_ensure(j->r->daemons, j->v[k].id,
					       j->v[k].image, j->v[k].digest,
					       j->v[k].merged, &j->errs[k]);
	}
	return NULL;
}

static int rp_ensure(void *ctx, const char *parent, struct lp_err *err)
{
	struct snap_remote *r = ctx;
	_cleanup_free_ char *cur = lp_xstrdup(parent ? parent : "");
	struct remote_layer *v = NULL;
	_cleanup_free_ bool *covers = NULL;
	_cleanup_free_ size_t *pos = NULL;
	size_t n = 0, cap = 0, nc = 0, ccap = 0, pcap = 0, k;
	int rc = 0;

	/* the served layers of the chain, nearest first */
	while (cur[0] && rc == 0) {
		struct snap_info info = { 0 };
		const char *image, *digest;
		enum served how;

		rc = snap_store_stat(r->st, cur, &info, err);
		if (rc < 0)
			break;
		how = served_by(&info);
		lp_grow((void **)&covers, sizeof(*covers), &ccap, nc + 1);
		covers[nc++] = r->merge && how == SERVED_LAYER;
		if (how != SERVED_NONE) {
			if (!daemon_source(&info, how, &image, &digest)) {
				rc = lp_err_set(err, -EIO, "%s layer %.200s "
						"has no image reference and "
						"layer digest labels",
						how == SERVED_IMAGE
							? "nydus bootstrap"
							: "remote", cur);
			} else {
				lp_grow((void **)&v, sizeof(*v), &cap, n + 1);
				v[n].id = info.id;
				v[n].image = lp_xstrdup(image);
				v[n].digest = digest ? lp_xstrdup(digest)
						     : NULL;
				v[n].merged = false;
				v[n].key = NULL;
				lp_grow((void **)&pos, sizeof(*pos), &pcap,
					n + 1);
				pos[n] = nc - 1;
				n++;
			}
		}
		free(cur);
		cur = TAKE_PTR(info.parent);
		snap_info_release(&info);
		if (!cur)
			cur = lp_xstrdup("");
	}
	/* a merged mount stands for the covering layer and those below */
	k = rc == 0 ? snap_chain_covering(covers, nc) : nc;
	if (k < nc) {
		size_t keep = 0;

		while (keep < n && pos[keep] < k)
			keep++;
		/* v[keep] is at chain position k: served merged */
		v[keep].merged = true;
		remote_layers_free_tail(v, keep + 1, n);
		n = keep + 1;
	}
	if (rc == 0 && n == 1) {
		rc = snap_daemon_ensure(r->daemons, v[0].id, v[0].image,
					v[0].digest, v[0].merged, err);
	} else if (rc == 0 && n > 1) {
		/* the first Mounts of an image starts all its daemons: each
		 * mostly waits for the registry (or indexes a gzip layer) */
		struct ensure_job j = { .r = r, .v = v, .n = n };
		pthread_t th[ENSURE_THREADS];
		size_t nt = n < ENSURE_THREADS ? n : ENSURE_THREADS;
		size_t started = 0;

		j.errs = lp_xcalloc(n, sizeof(*j.errs));
		j.rcs = lp_xcalloc(n, sizeof(*j.rcs));
		for (size_t t = 1; t < nt; t++) {
			if (pthread_create(&th[t], NULL, ensure_worker, &j))
				break;
			started++;
		}
		ensure_worker(&j);
		for (size_t t = 1; t <= started; t++)
			pthread_join(th[t], NULL);
		for (size_t k = 0; k < n && rc == 0; k++) {
			rc = j.rcs[k];
			if (rc < 0 && err)
				*err = j.errs[k];
		}
		free(j.errs);
		free(j.rcs);
	}
	remote_layers_free(v, n);
	return rc;
}

struct layer_use {
	const char *digest;
	bool used;
};

static int layer_used(const struct snap_info *i, void *data)
{
	struct layer_use *u = data;
	const char *image, *digest;

	if (layer_source(i->labels, i->n_labels, &image, &digest) &&
	    !strcmp(digest, u->digest))
		u->used = true;
	return 0;
}

/* unlinks path if it is there; adds its size to *bytes */
static void drop_file(const char *path, unsigned *files, uint64_t *bytes)
{
	struct stat st;

	if (lstat(path, &st) < 0 || unlink(path) < 0)
		return;
	(*files)++;
	*bytes += (uint64_t)st.st_blocks * 512;
}

/* drop_file() of an entry of the blob cache or the decoded store, not
 * while a process holds it */
static void drop_entry(const char *data, const char *side, unsigned *files,
		       uint64_t *bytes)
{
	struct stat a, b;
	bool had_a = lstat(data, &a) == 0, had_b = lstat(side, &b) == 0;

	if (!had_a && !had_b)
		return;
	if (!lp_lru_remove(data, side)) {
		lp_log(LP_LOG_INFO, "%s is in use: left", data);
		return;
	}
	*files += had_a + had_b;
	*bytes += (had_a ? (uint64_t)a.st_blocks * 512 : 0) +
		  (had_b ? (uint64_t)b.st_blocks * 512 : 0);
}

/*
 * A layer no snapshot names any more leaves the disk: its fetched ranges
 * (the blob cache), decoded chunks, saved model and zran index.
 * nydus-snapshotter's cache manager removes the blobs of removed images
 * every gc_period; here it is done when the last snapshot of the layer
 * goes.  An entry a process still holds stays (the eviction's lock).  The
 * access traces stay: a few KB each, they make a later pull of the image
 * fast again.
 */
static void collect_layer(struct snap_remote *r, const char *digest)
{
	struct layer_use u = { .digest = digest };
	struct snap_cursor cur = { 0 };
	static const enum lp_layer_file pairs[][2] = {
		{ LP_FILE_BLOB_DATA, LP_FILE_BLOB_MAP },
		{ LP_FILE_DECODED_DATA, LP_FILE_DECODED_IDX },
	};
	struct lp_err err = { 0 };
	unsigned files = 0;
	uint64_t bytes = 0;
	char *p[2];
	bool done = false;

	if (strncmp(digest, "sha256:", 7) ||
	    fetch_digest_check(digest, strlen(digest)) < 0)
		return;
	while (!done && !u.used) {
		if (snap_store_walk(r->st, &cur, NULL, 256, layer_used, &u,
				    &done, &err) < 0) {
			lp_log(LP_LOG_WARN, "layer %s: its cache is kept: %s",
			       digest, err.msg);
			return;
		}
	}
	if (u.used)
		return;
	/* the stores' data files with their side files, then the lone ones */
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		p[0] = lp_layout_file(r->cache_dir, pairs[i][0], digest);
		p[1] = lp_layout_file(r->cache_dir, pairs[i][1], digest);
		drop_entry(p[0], p[1], &files, &bytes);
		free(p[0]);
		free(p[1]);
	}
	p[0] = lp_layout_file(r->cache_dir, LP_FILE_MODEL, digest);
	p[1] = lp_layout_file(r->root, LP_FILE_ZRAN, digest);
	drop_file(p[0], &files, &bytes);
	drop_file(p[1], &files, &bytes);
	free(p[0]);
	free(p[1]);
	if (files)
		lp_log(LP_LOG_INFO, "layer %s: no snapshot uses it: %u cache "
		       "files removed (%llu KiB)", digest, files,
		       (unsigned long long)(bytes >> 10));
}

static void rp_removed(void *ctx, const struct snap_info *info)
{
	struct snap_remote *r = ctx;
	const char *image, *digest;
	enum served how = served_by(info);

	if (how == SERVED_NONE)
		return;
	/* its daemon first: the cache entries it holds are free then */
	snap_daemon_stop(r->daemons, info->id);
	if (daemon_source(info, how, &image, &digest) && digest)
		collect_layer(r, digest);
}

const struct snap_remote_ops snap_remote_ops = {
	.prepare = rp_prepare,
	.ensure = rp_ensure,
	.removed = rp_removed,
};

/* The lower directory of a remote layer is its daemon's mount. */
static char *rp_lower(void *arg, const struct snap_info *i,
		      bool *ret_covers)
{
	struct snap_remote *r = arg;
	enum served how = served_by(i);

	*ret_covers = how == SERVED_LAYER && r->merge;
	return how != SERVED_NONE ? snap_daemon_mountpoint(r->daemons, i->id)
				  : NULL;
}

/* ---- start-up ------------------------------------------------------------ */

struct collect {
	struct remote_layer *v;
	size_t n, cap;
};

static int collect_remote(const struct snap_info *i, void *data)
{
	struct collect *c = data;
	const char *image, *digest;

	if (!daemon_source(i, served_by(i), &image, &digest))
		return 0;
	lp_grow((void **)&c->v, sizeof(*c->v), &c->cap, c->n + 1);
	c->v[c->n].id = i->id;
	c->v[c->n].image = lp_xstrdup(image);
	c->v[c->n].digest = digest ? lp_xstrdup(digest) : NULL;
	c->v[c->n].merged = false; /* decided after the walk */
	c->v[c->n].key = lp_xstrdup(i->name);
	c->n++;
	return 0;
}

/*
 * Re-attaches to the daemons a previous run left (their pid files),
 * restarting dead ones; stops those whose layer is gone.
 */
static void recover(struct snap_remote *r)
{
	struct collect c = { 0 };
	struct snap_cursor cur = { 0 };
	struct lp_err err = { 0 };
	uint64_t *ids = NULL;
	size_t n = 0;
	bool done = false;

	while (!done) {
		if (snap_store_walk(r->st, &cur, NULL, 256, collect_remote, &c,
				    &done, &err) < 0) {
			lp_log(LP_LOG_ERROR, "recovering fs daemons: %s",
			       err.msg);
			goto out;
		}
	}
	for (size_t i = 0; i < c.n; i++) {
		struct snap_info info = { 0 };

		if (!r->merge ||
		    snap_store_stat(r->st, c.v[i].key, &info, NULL) < 0)
			continue;
		c.v[i].merged = covering_self(r, &info);
		snap_info_release(&info);
	}
	if (snap_daemons_list(r->daemons, &ids, &n) < 0)
		goto out;
	for (size_t k = 0; k < n; k++) {
		struct remote_layer *rl = NULL;

		for (size_t i = 0; i < c.n && !rl; i++)
			if (c.v[i].id == ids[k])
				rl = &c.v[i];
		if (!rl) {
			lp_log(LP_LOG_INFO, "fs daemon of snapshot %llu: its "
			       "layer is gone, stopping it",
			       (unsigned long long)ids[k]);
			snap_daemon_stop(r->daemons, ids[k]);
			continue;
		}
		lp_err_clear(&err);
		if (snap_daemon_ensure(r->daemons, rl->id, rl->image,
				       rl->digest, rl->merged, &err) < 0)
			lp_log(LP_LOG_ERROR, "recovering fs daemon of snapshot "
			       "%llu: %s", (unsigned long long)rl->id,
			       err.msg);
		else
			lp_log(LP_LOG_INFO, "fs daemon of snapshot %llu (%s "
			       "%s) serves", (unsigned long long)rl->id,
			       rl->digest ? "layer" : "nydus image",
			       rl->digest ? rl->digest : rl->image);
	}
out:
	remote_layers_free(c.v, c.n);
	free(ids);
}

/* --lazypull-path, else next to this binary (installed or in the build
 * tree), else $PATH. */
static char *find_lazypull(const struct snap_config *c)
{
	static const char *const rel[] = { "lazypull", "../cli/lazypull" };
	char self[4096], *slash;
	ssize_t n;

	if (c->lazypull_path)
		return lp_xstrdup(c->lazypull_path);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash)
			slash[1] = '\0';
		for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
			char *p;

			if (asprintf(&p, "%s%s", self, rel[i]) < 0)
				abort();
			if (access(p, X_OK) == 0)
				return p;
			free(p);
		}
	}
	return lp_xstrdup("lazypull");
}

int snap_remote_new(const struct snap_config *c, struct snap_store *st,
		    struct snap_remote **ret, struct lp_err *err)
{
	struct snap_remote *r = lp_xcalloc(1, sizeof(*r));
	const struct snap_backend *be = &c->backend;
	struct snap_daemons_opts dopts = { 0 };
	_cleanup_free_ char *lazypull = find_lazypull(c);
	const char *args[20];
	char window[24], tmo[16], retries[16], cmax[24];
	bool plain_http = be->scheme && !strcmp(be->scheme, "http");
	size_t na = 0;
	int rc;

	r->st = st;
	r->root = lp_xstrdup(c->root);
	r->cache_dir = lp_xstrdup(c->cache_dir);
	pthread_mutex_init(&r->early_lock, NULL);
	pthread_cond_init(&r->early_cond, NULL);
	pthread_mutex_init(&r->ahead_lock, NULL);
	r->early = c->early_mount;
	r->merge = !c->no_merged_mounts;
	r->stargz = c->enable_stargz;
	r->zran = c->enable_zran;
	r->warm = !c->no_warm;

	/* the registry settings of probes and fs daemons alike, and the
	 * cache directory ([cache_manager] cache_dir, else the nydusd
	 * JSON's work_dir, else <root>/cache) */
	args[na++] = "--cache-dir";
	args[na++] = c->cache_dir;
	if (c->cache_max) {
		snprintf(cmax, sizeof(cmax), "%llu",
			 (unsigned long long)c->cache_max);
		args[na++] = "--cache-max";
		args[na++] = cmax;
	}
	if (plain_http)
		args[na++] = "--plain-http";
	if (be->skip_verify)
		args[na++] = "--insecure";
	if (c->mirrors_dir) {
		args[na++] = "--hosts-dir";
		args[na++] = c->mirrors_dir;
	}
	if (be->n_mirrors && c->nydusd_config) {
		args[na++] = "--nydusd-config";
		args[na++] = c->nydusd_config;
	}
	if (c->amplify_io >= 0) { /* nydusd's read amplification */
		snprintf(window, sizeof(window), "%lld",
			 (long long)(c->amplify_io + 1023) / 1024);
		args[na++] = "--fetch-window";
		args[na++] = window;
	}
	/* the nydusd JSON's backend timeout and retry_limit bound every
	 * request (a stalled registry is then an error in bounded time, not
	 * minutes of retries) */
	if (be->timeout_s > 0 && be->timeout_s <= 3600) {
		snprintf(tmo, sizeof(tmo), "%u", (unsigned)be->timeout_s);
		args[na++] = "--timeout";
		args[na++] = tmo;
	}
	if (be->retry_limit > 0 && be->retry_limit <= 20) {
		snprintf(retries, sizeof(retries), "%u",
			 (unsigned)be->retry_limit);
		args[na++] = "--retries";
		args[na++] = retries;
	}
	args[na++] = "--"; /* REF (and MOUNTPOINT) follow */
	args[na] = NULL;
	dopts.root = c->root;
	dopts.lazypull = lazypull;
	dopts.args = args;
	dopts.auth = be->auth && be->auth[0] ? be->auth : NULL;
	dopts.token = be->registry_token && be->registry_token[0]
			      ? be->registry_token : NULL;
	dopts.monitor_s = 2;
	rc = snap_daemons_new(&dopts, &r->daemons, err);
	if (rc < 0)
		goto fail;
	lp_log(LP_LOG_INFO, "remote layers: stargz %s, zran %s, probes and "
	       "fs daemons by %s%s", r->stargz ? "on" : "off",
	       r->zran ? "on" : "off", lazypull,
	       plain_http ? " (plain http)" : "");

	snap_store_set_lower(st, rp_lower, r);
	recover(r);
	snap_daemons_start_monitor(r->daemons);
	*ret = r;
	return 0;
fail:
	snap_remote_free(r);
	return lp_err_wrap(err, "remote layers");
}

void snap_remote_free(struct snap_remote *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->early_lock);
	while (r->early_running)
		pthread_cond_wait(&r->early_cond, &r->early_lock);
	pthread_mutex_unlock(&r->early_lock);
	snap_store_set_lower(r->st, NULL, NULL);
	snap_daemons_free(r->daemons);
	pthread_cond_destroy(&r->early_cond);
	pthread_mutex_destroy(&r->early_lock);
	pthread_mutex_destroy(&r->ahead_lock);
	free(r->root);
	free(r->cache_dir);
	free(r);
}
