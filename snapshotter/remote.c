/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote layers: the per-layer decision on Prepare, the lower directories
 * of mounts over remote layers, and their fs daemons (daemon.c).  See
 * snapshotter.h for the rules.
 *
 * Prepare only reads what deciding needs: a HEAD for the size, the footer
 * and the TOC (eStargz, zstd:chunked), whose digest is checked against
 * the label; all through the blob cache the daemons share, so the daemon
 * that later serves the layer finds the TOC on disk.  A plain gzip layer
 * (zran) is only probed; its daemon builds the index when first mounted.
 */
#define LP_MODNAME "snapshotter"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetcher/fetcher.h"
#include "fs/engine.h"
#include "snapshotter/snapshotter-int.h"

struct snap_remote {
	struct snap_store *st;
	bool stargz, zran;
	struct fetch_client *client;
	struct fetch_cache *cache;
	struct fetch_hosts *hosts;
	struct snap_daemons *daemons;
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

/* A layer committed as remote and served by a daemon of its own. */
static bool is_remote_layer(const struct snap_info *i)
{
	return i->kind == SNAP_KIND_COMMITTED &&
	       snap_labels_get(i->labels, i->n_labels, SNAP_LABEL_REMOTE);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static bool is_stargz_family(const char *fmt)
{
	return !strcmp(fmt, "estargz") || !strcmp(fmt, "stargz") ||
	       !strcmp(fmt, "zstd:chunked");
}

/*
 * Can layer digest of image be served lazily?  1 with its format in fmt,
 * 0 no (an ordinary snapshot), -errno when it could not be found out (the
 * registry, a TOC that fails its digest).
 */
static int probe_layer(struct snap_remote *r, const char *image,
		       const char *digest, const char *toc, char *fmt,
		       size_t fmt_size, struct lp_err *err)
{
	struct format_hints h = { .toc_digest = toc, .blob_digest = digest };
	const struct format_ops *ops = NULL;
	struct engine_opts eo = { .hints = &h };
	struct engine_layer *l = NULL;
	struct lp_source *src = NULL;
	struct fetch_ref ref;
	int rc;

	rc = fetch_ref_parse(image, strlen(image), &ref, err);
	if (rc < 0)
		return rc;
	rc = fetch_blob_source_open(r->client, r->cache, &ref, digest, 0,
				    NULL, &src, err);
	fetch_ref_release(&ref);
	if (rc < 0)
		return rc;
	rc = engine_detect(src, &h, &ops, err);
	if (rc == -EPROTONOSUPPORT) {
		lp_err_clear(err);
		rc = 0;
	} else if (rc == 0 && is_stargz_family(ops->name) && r->stargz) {
		/* loads the TOC and checks it against the label */
		eo.format = ops->name;
		rc = engine_open(TAKE_PTR(src), &eo, &l, err);
		if (rc == 0) {
			snprintf(fmt, fmt_size, "%s", l->info.format);
			engine_close(l);
			rc = 1;
		}
	} else if (rc == 0 && !strcmp(ops->name, "zran") && r->zran) {
		snprintf(fmt, fmt_size, "zran");
		rc = 1;
	} else if (rc == 0) {
		lp_debug("layer %s of %s: %s, not served lazily", digest,
			 image, ops->name);
	}
	lp_source_free(src);
	return rc;
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
	const char *image, *digest, *toc;
	struct snap_info info = { 0 };
	struct snap_label *nl;
	struct timespec t0;
	char fmt[32] = "";
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
	if (!r->stargz && !r->zran)
		return 0;
	if (!layer_source(l, n, &image, &digest)) {
		lp_debug("prepare %s: no usable image reference and layer "
			 "digest labels: an ordinary snapshot", key);
		return 0;
	}
	toc = find_label(l, n, SNAP_LABEL_TOC);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = probe_layer(r, image, digest, toc, fmt, sizeof(fmt), err);
	if (rc <= 0) {
		if (rc < 0)
			lp_log(LP_LOG_WARN, "layer %s of %s: %s; containerd "
			       "pulls it", digest, image, err->msg);
		lp_err_clear(err);
		return 0;
	}

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
	       "in %.0f ms", digest, image, fmt, target, ms_since(&t0));
	return exists(err, target);
}

static int rp_ensure(void *ctx, const char *parent, struct lp_err *err)
{
	struct snap_remote *r = ctx;
	_cleanup_free_ char *cur = lp_xstrdup(parent ? parent : "");
	int rc = 0;

	while (cur[0] && rc == 0) {
		struct snap_info info = { 0 };
		const char *image, *digest;

		rc = snap_store_stat(r->st, cur, &info, err);
		if (rc < 0)
			break;
		if (is_remote_layer(&info)) {
			if (!layer_source(info.labels, info.n_labels, &image,
					  &digest))
				rc = lp_err_set(err, -EIO, "remote layer "
						"%.200s has no image "
						"reference labels", cur);
			else
				rc = snap_daemon_ensure(r->daemons, info.id,
							image, digest, err);
		}
		free(cur);
		cur = TAKE_PTR(info.parent);
		snap_info_release(&info);
		if (!cur)
			cur = lp_xstrdup("");
	}
	return rc;
}

static void rp_removed(void *ctx, const struct snap_info *info)
{
	struct snap_remote *r = ctx;

	if (is_remote_layer(info))
		snap_daemon_stop(r->daemons, info->id);
}

const struct snap_remote_ops snap_remote_ops = {
	.prepare = rp_prepare,
	.ensure = rp_ensure,
	.removed = rp_removed,
};

/* The lower directory of a remote layer is its daemon's mount. */
static char *rp_lower(void *arg, const struct snap_info *i)
{
	struct snap_remote *r = arg;

	return is_remote_layer(i) ? snap_daemon_mountpoint(r->daemons, i->id)
				  : NULL;
}

/* ---- start-up ------------------------------------------------------------ */

struct remote_layer {
	uint64_t id;
	char *image, *digest;
};

struct collect {
	struct remote_layer *v;
	size_t n, cap;
};

static int collect_remote(const struct snap_info *i, void *data)
{
	struct collect *c = data;
	const char *image, *digest;

	if (!is_remote_layer(i) ||
	    !layer_source(i->labels, i->n_labels, &image, &digest))
		return 0;
	lp_grow((void **)&c->v, sizeof(*c->v), &c->cap, c->n + 1);
	c->v[c->n].id = i->id;
	c->v[c->n].image = lp_xstrdup(image);
	c->v[c->n].digest = lp_xstrdup(digest);
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
				       rl->digest, &err) < 0)
			lp_log(LP_LOG_ERROR, "recovering fs daemon of snapshot "
			       "%llu: %s", (unsigned long long)rl->id,
			       err.msg);
		else
			lp_log(LP_LOG_INFO, "fs daemon of snapshot %llu (layer "
			       "%s) serves", (unsigned long long)rl->id,
			       rl->digest);
	}
out:
	for (size_t i = 0; i < c.n; i++) {
		free(c.v[i].image);
		free(c.v[i].digest);
	}
	free(c.v);
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
	const struct fetch_hosts *hl[1];
	struct fetch_cache_opts co = { .root = c->cache_dir };
	struct snap_daemons_opts dopts = { 0 };
	_cleanup_free_ char *lazypull = find_lazypull(c);
	const char *args[4];
	struct fetch_opts fo;
	size_t na = 0;
	int rc;

	r->st = st;
	r->stargz = c->enable_stargz;
	r->zran = c->enable_zran;

	/* Prepare's own client: the nydusd backend settings, short waits */
	fetch_opts_init(&fo);
	fo.plain_http = be->scheme && !strcmp(be->scheme, "http");
	fo.skip_verify = be->skip_verify;
	fo.auth = be->auth && be->auth[0] ? be->auth : NULL;
	fo.registry_token = be->registry_token && be->registry_token[0]
				    ? be->registry_token : NULL;
	if (be->connect_timeout_s > 0 && be->connect_timeout_s < 600)
		fo.connect_timeout_ms = (unsigned)be->connect_timeout_s * 1000;
	fo.timeout_ms = be->timeout_s > 0 && be->timeout_s < 600
				? (unsigned)be->timeout_s * 1000 : 30000;
	fo.retry_limit = be->retry_limit > 0 && be->retry_limit < 10
				 ? (unsigned)be->retry_limit : 1;
	fo.hosts_dir = c->mirrors_dir;
	if (be->n_mirrors && c->nydusd_config) {
		rc = fetch_hosts_load_nydusd(c->nydusd_config, &r->hosts, err);
		if (rc < 0)
			goto fail;
		hl[0] = r->hosts;
		fo.hosts = hl;
		fo.n_hosts = 1;
	}
	rc = fetch_client_new(&fo, &r->client, err);
	if (rc < 0)
		goto fail;
	rc = fetch_cache_open(&co, &r->cache, err);
	if (rc < 0)
		goto fail;

	if (fo.plain_http)
		args[na++] = "--plain-http";
	if (fo.skip_verify)
		args[na++] = "--insecure";
	args[na++] = "--"; /* REF and MOUNTPOINT follow */
	args[na] = NULL;
	dopts.root = c->root;
	dopts.lazypull = lazypull;
	dopts.args = args;
	dopts.auth = fo.auth;
	dopts.monitor_s = 2;
	rc = snap_daemons_new(&dopts, &r->daemons, err);
	if (rc < 0)
		goto fail;
	lp_log(LP_LOG_INFO, "remote layers: stargz %s, zran %s, fs daemons "
	       "by %s%s", r->stargz ? "on" : "off", r->zran ? "on" : "off",
	       lazypull, fo.plain_http ? " (plain http)" : "");
	if (be->registry_token && be->registry_token[0])
		lp_log(LP_LOG_WARN, "the nydusd registry_token is used by "
		       "Prepare only: fs daemons take credentials from auth "
		       "or the docker config");
	if (be->n_mirrors || c->mirrors_dir)
		lp_log(LP_LOG_WARN, "mirrors are used by Prepare only: fs "
		       "daemons talk to the registry directly");

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
	snap_store_set_lower(r->st, NULL, NULL);
	snap_daemons_free(r->daemons);
	fetch_cache_unref(r->cache);
	fetch_client_unref(r->client);
	fetch_hosts_free(r->hosts);
	free(r);
}
