/* SPDX-License-Identifier: Apache-2.0 */
/* Registry references in the CLI, and `lazypull manifest`. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/fetch.h"
#include "common/layout.h"
#ifdef LP_HAVE_ZRAN
#include "formats/zran/zran.h"
#endif

#define DEFAULT_ROOT "/var/lib/lazypull"
#define NYDUS_BOOTSTRAP "containerd.io/snapshot/nydus-bootstrap"
#define STARGZ_TOC "containerd.io/snapshot/stargz/toc.digest"

static char *user_copy; /* --user, reachable until exit */

void cli_remote_opts_init(struct cli_remote_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->layer = -1;
	o->tag_ttl = CLI_TAG_TTL_DEFAULT;
	o->fetch_window = (uint64_t)CLI_FETCH_WINDOW_DEFAULT << 10;
	o->retries = -1;
}

/* A decimal number from lo to hi, nothing else. */
static bool uint_arg(const char *arg, unsigned long lo, unsigned long hi,
		     unsigned long *ret)
{
	char *end;

	*ret = strtoul(arg, &end, 10);
	return !*end && end != arg && arg[0] != '-' && *ret >= lo &&
	       *ret <= hi;
}

int cli_remote_opt(struct cli_remote_opts *o, int c, char *arg)
{
	unsigned long v;
	char *end;

	switch (c) {
	case OPT_PLAIN_HTTP:
		o->plain_http = true;
		return 1;
	case OPT_INSECURE:
		o->insecure = true;
		return 1;
	case OPT_PLATFORM:
		o->platform = arg;
		return 1;
	case OPT_ROOT:
		o->root = arg;
		return 1;
	case OPT_USER: {
		/* keep a copy and blank the password in argv, so it does not
		 * linger in /proc/PID/cmdline */
		char *colon = strchr(arg, ':');

		free(user_copy);
		user_copy = lp_xstrdup(arg);
		o->user = user_copy;
		if (colon)
			memset(colon + 1, 'x', strlen(colon + 1));
		return 1;
	}
	case OPT_LAYER: {
		long v = strtol(arg, &end, 10);

		if (*end || end == arg || v < 0 || v > 100000) {
			cli_error("--layer %s: not a layer number", arg);
			return -1;
		}
		o->layer = (int)v;
		return 1;
	}
	case OPT_LAYER_DIGEST:
		if (fetch_digest_check(arg, strlen(arg)) < 0) {
			cli_error("--layer-digest %s: not a sha256:<64 hex> "
				  "digest",
				  arg);
			return -1;
		}
		o->layer_digest = arg;
		return 1;
	case OPT_REFRESH:
		o->tag_ttl = 0;
		return 1;
	case OPT_HOSTS_DIR:
		o->hosts_dir = arg;
		return 1;
	case OPT_NYDUSD_CONFIG:
		o->nydusd_config = arg;
		return 1;
	case OPT_FETCH_WINDOW: {
		unsigned long long v = strtoull(arg, &end, 10);

		if (*end || end == arg || arg[0] == '-' || v > (1u << 20)) {
			cli_error("--fetch-window %s: KiB, 0 to 1048576", arg);
			return -1;
		}
		o->fetch_window = (uint64_t)v << 10;
		return 1;
	}
	case OPT_TIMEOUT:
		if (!uint_arg(arg, 1, 3600, &v)) {
			cli_error("--timeout %s: seconds, 1 to 3600", arg);
			return -1;
		}
		o->timeout_s = (unsigned)v;
		return 1;
	case OPT_RETRIES:
		if (!uint_arg(arg, 0, 20, &v)) {
			cli_error("--retries %s: 0 to 20", arg);
			return -1;
		}
		o->retries = (int)v;
		return 1;
	case OPT_MAX_RANGES:
		if (!uint_arg(arg, 1, 64, &v)) {
			cli_error("--max-ranges %s: 1 to 64", arg);
			return -1;
		}
		o->max_ranges = (unsigned)v;
		return 1;
	case OPT_CACHE_DIR:
		o->cache_dir = arg;
		return 1;
	case OPT_CACHE_MAX:
		o->cache_max = strtoull(arg, &end, 10);
		if (*end || end == arg) {
			cli_error("--cache-max %s: not a number of bytes", arg);
			return -1;
		}
		return 1;
	}
	return 0;
}

const char *cli_remote_root(const struct cli_remote_opts *o)
{
	const char *root = o->root ? o->root : getenv("LAZYPULL_ROOT");

	return root && root[0] ? root : DEFAULT_ROOT;
}

char *cli_cache_dir(const struct cli_remote_opts *o)
{
	const char *root;
	char *p;

	if (o->cache_dir && o->cache_dir[0])
		return lp_xstrdup(o->cache_dir);
	root = cli_remote_root(o);
	p = lp_xmalloc(strlen(root) + 8);
	sprintf(p, "%s/cache", root);
	return p;
}

bool cli_is_remote(const char *arg)
{
	struct fetch_ref r;
	struct stat st;

	if (stat(arg, &st) == 0)
		return false;
	if (fetch_ref_parse(arg, strlen(arg), &r, NULL) < 0)
		return false;
	fetch_ref_release(&r);
	return true;
}

static void trace_line(const struct fetch_trace *t, void *data)
{
	const char *slash = strrchr(t->url, '/');

	(void)data;
	cli_progress_hide();
	/* in a log file, stamped like the log lines around it */
	if (!isatty(STDERR_FILENO)) {
		char ts[32];

		lp_log_stamp(ts, sizeof(ts));
		fprintf(stderr, "%s ", ts);
	}
	/* "GET .../blobs/sha256:0123456789ab bytes=A-B -> 206 (N B)" */
	fprintf(stderr, "%s %.*s%.19s", t->method,
		slash ? (int)(slash + 1 - t->url) : 0, t->url,
		slash ? slash + 1 : t->url);
	if (slash && strlen(slash + 1) > 19)
		fputs("…", stderr);
	if (t->has_range) {
		if (t->suffix)
			fprintf(stderr, " bytes=-%llu",
				(unsigned long long)t->range_len);
		else if (t->range_len)
			fprintf(stderr, " bytes=%llu-%llu",
				(unsigned long long)t->range_off,
				(unsigned long long)(t->range_off +
						     t->range_len - 1));
		else
			fprintf(stderr, " bytes=%llu-",
				(unsigned long long)t->range_off);
		if (t->ranges > 1)
			fprintf(stderr, " in %u ranges", t->ranges);
	}
	if (t->status)
		fprintf(stderr, " -> %ld", t->status);
	fprintf(stderr, " (%llu B, %.3f s%s%s%s)\n",
		(unsigned long long)t->bytes, t->seconds,
		t->attempt ? ", retry" : "", t->error ? ": " : "",
		t->error ? t->error : "");
}

void cli_remote_close(struct cli_remote *r)
{
	if (!r)
		return;
	if (r->verbose && r->client) {
		struct fetch_stats st;

		fetch_client_stats(r->client, &st);
		fprintf(stderr, "fetched: %llu requests, %llu bytes\n",
			(unsigned long long)st.requests,
			(unsigned long long)st.bytes);
	}
	if (r->annotations && r->manifest) {
		for (size_t i = 0; i < r->manifest->n_layers; i++)
			free((void *)r->annotations[i]);
	}
	free(r->annotations);
	fetch_manifest_free(r->manifest);
	fetch_manifest_free(r->index);
	fetch_cache_unref(r->cache);
	fetch_client_unref(r->client);
	fetch_ref_release(&r->ref);
	free(r);
}

/* key, value, ..., NULL pointing into the descriptor */
static const char **flat_annotations(const struct fetch_desc *d)
{
	const char **a = lp_xcalloc(2 * d->n_annotations + 1, sizeof(*a));

	for (size_t k = 0; k < d->n_annotations; k++) {
		a[2 * k] = d->annotations[k].key;
		a[2 * k + 1] = d->annotations[k].value;
	}
	return a;
}

/* The image's manifest (through the cache, which keeps it by tag for
 * o->tag_ttl) and its layers' annotations. */
static int get_manifest(struct cli_remote *r, const struct cli_remote_opts *o,
			const struct fetch_platform *plat, struct lp_err *err)
{
	int rc = fetch_get_image_cached(r->client, r->cache, &r->ref,
					o->platform ? plat : NULL, o->tag_ttl,
					&r->manifest, &r->index, err);

	if (rc < 0)
		return rc;
	r->annotations =
		lp_xcalloc(r->manifest->n_layers + 1, sizeof(*r->annotations));
	for (size_t i = 0; i < r->manifest->n_layers; i++)
		r->annotations[i] = flat_annotations(&r->manifest->layers[i]);
	return 0;
}

static int remote_open(const char *arg, const struct cli_remote_opts *o,
		       bool manifest, struct cli_remote **ret)
{
	_cleanup_(cli_remote_closep) struct cli_remote *r = NULL;
	struct fetch_platform plat = { 0 };
	struct fetch_cache_opts co = { 0 };
	struct lp_err err = { 0 };
	struct fetch_opts fo;
	_cleanup_(fetch_hosts_freep) struct fetch_hosts *nydusd = NULL;
	const struct fetch_hosts *hl[1];
	_cleanup_free_ char *user = NULL, *cache_dir = NULL;
	int rc;

	r = lp_xcalloc(1, sizeof(*r));
	r->verbose = o->verbose;
	r->fetch_window = o->fetch_window;
	rc = fetch_ref_parse(arg, strlen(arg), &r->ref, &err);
	if (rc < 0)
		goto fail;
	if (o->platform) {
		rc = fetch_platform_parse(o->platform, &plat, &err);
		if (rc < 0)
			goto fail;
	}
	fetch_opts_init(&fo);
	fo.hosts_dir = o->hosts_dir;
	if (o->nydusd_config) {
		rc = fetch_hosts_load_nydusd(o->nydusd_config, &nydusd, &err);
		if (rc < 0)
			goto fail;
		hl[0] = nydusd;
		fo.hosts = hl;
		fo.n_hosts = 1;
	}
	fo.plain_http = o->plain_http;
	fo.skip_verify = o->insecure;
	/* a bearer token as it is (the snapshotter passes the nydusd
	 * backend's registry_token this way, never on a command line) */
	fo.registry_token = getenv("LAZYPULL_REGISTRY_TOKEN");
	if (o->timeout_s) {
		fo.timeout_ms = o->timeout_s * 1000;
		fo.stall_timeout_s = o->timeout_s < 10 ? o->timeout_s : 10;
		if (fo.connect_timeout_ms > fo.timeout_ms)
			fo.connect_timeout_ms = fo.timeout_ms;
	}
	if (o->retries >= 0)
		fo.retry_limit = (unsigned)o->retries;
	fo.max_ranges = o->max_ranges;
	if (o->user) {
		char *colon;

		user = lp_xstrdup(o->user);
		colon = strchr(user, ':');
		if (colon) {
			*colon = '\0';
			fo.password = colon + 1;
		}
		fo.username = user;
	}
	if (o->verbose)
		fo.trace = trace_line;
	rc = fetch_client_new(&fo, &r->client, &err);
	if (user)
		explicit_bzero(user, strlen(o->user));
	if (rc < 0)
		goto fail;

	cache_dir = cli_cache_dir(o);
	co.root = cache_dir;
	co.max_bytes = o->cache_max;
	rc = fetch_cache_open(&co, &r->cache, &err);
	if (rc < 0)
		goto fail;

	if (manifest) {
		rc = get_manifest(r, o, &plat, &err);
		if (rc < 0)
			goto fail;
	}
	fetch_platform_release(&plat);
	*ret = TAKE_PTR(r);
	return 0;
fail:
	fetch_platform_release(&plat);
	cli_error("%s", err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

int cli_remote_open(const char *arg, const struct cli_remote_opts *o,
		    struct cli_remote **ret)
{
	return remote_open(arg, o, true, ret);
}

int cli_remote_connect(const char *arg, const struct cli_remote_opts *o,
		       struct cli_remote **ret)
{
	return remote_open(arg, o, false, ret);
}

int cli_remote_resolve(struct cli_remote *r, const struct cli_remote_opts *o)
{
	struct fetch_platform plat = { 0 };
	struct lp_err err = { 0 };
	int rc = 0;

	if (r->manifest)
		return 0;
	if (o->platform)
		rc = fetch_platform_parse(o->platform, &plat, &err);
	if (rc == 0)
		rc = get_manifest(r, o, &plat, &err);
	fetch_platform_release(&plat);
	if (rc < 0)
		cli_error("%s", err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

/* The planner's defaults with the read-ahead window and r's gap, or NULL
 * for the defaults alone. */
static const struct fetch_source_opts *source_opts(const struct cli_remote *r,
						   struct fetch_source_opts *so)
{
	if (!r->fetch_window && !r->max_gap && !r->tail)
		return NULL;
	memset(so, 0, sizeof(*so));
	so->plan.max_gap = r->max_gap ? r->max_gap : 128u << 10;
	so->plan.max_size = 8u << 20;
	so->plan.min_size = r->fetch_window;
	so->tail = r->tail;
	return so;
}

int cli_remote_layer(struct cli_remote *r, size_t i, struct lp_source **ret)
{
	struct fetch_source_opts so;
	const struct fetch_desc *d;
	struct lp_err err = { 0 };
	int rc;

	if (i >= r->manifest->n_layers) {
		cli_error("%s: layer %zu: the image has %zu layers",
			  r->ref.repo, i, r->manifest->n_layers);
		return -EINVAL;
	}
	d = &r->manifest->layers[i];
	rc = fetch_blob_source_open(r->client, r->cache, &r->ref, d->digest,
				    d->size, source_opts(r, &so), ret, &err);
	if (rc < 0)
		cli_error("%s", err.msg);
	return rc;
}

void cli_remote_hints(const struct cli_remote *r, size_t i,
		      struct format_hints *ret)
{
	const struct fetch_desc *d = &r->manifest->layers[i];

	memset(ret, 0, sizeof(*ret));
	ret->media_type = d->media_type[0] ? d->media_type : NULL;
	ret->toc_digest = fetch_desc_annotation(d, STARGZ_TOC);
	ret->blob_digest = d->digest;
	ret->annotations = (const char *const *)r->annotations[i];
}

int cli_remote_blob(struct cli_remote *r, const char *digest, uint64_t size,
		    struct lp_source **ret)
{
	struct fetch_source_opts so;
	struct lp_err err = { 0 };
	int rc;

	if (!size && r->manifest) {
		for (size_t i = 0; i < r->manifest->n_layers; i++)
			if (!strcmp(r->manifest->layers[i].digest, digest))
				size = r->manifest->layers[i].size;
	}
	rc = fetch_blob_source_open(r->client, r->cache, &r->ref, digest, size,
				    source_opts(r, &so), ret, &err);
	if (rc < 0)
		cli_error("%s", err.msg);
	return rc;
}

int cli_remote_bootstrap(const struct cli_remote *r)
{
	const struct fetch_manifest *m = r->manifest;

	for (size_t i = 0; i < m->n_layers; i++) {
		const char *v =
			fetch_desc_annotation(&m->layers[i], NYDUS_BOOTSTRAP);

		if (v && !strcmp(v, "true"))
			return (int)i;
	}
	return -1;
}

int cli_remote_pick(const struct cli_remote *r, const struct cli_remote_opts *o,
		    size_t *ret)
{
	const struct fetch_manifest *m = r->manifest;

	if (o->layer >= 0) {
		if ((size_t)o->layer >= m->n_layers) {
			cli_error("--layer %d: the image has %zu layers",
				  o->layer, m->n_layers);
			return -EINVAL;
		}
		*ret = (size_t)o->layer;
		return 0;
	}
	if (o->layer_digest) {
		for (size_t i = 0; i < m->n_layers; i++) {
			if (!strcmp(m->layers[i].digest, o->layer_digest)) {
				*ret = i;
				return 0;
			}
		}
		cli_error("--layer-digest %s: not a layer of the image",
			  o->layer_digest);
		return -ENOENT;
	}
	for (size_t i = 0; i < m->n_layers; i++) {
		const char *v =
			fetch_desc_annotation(&m->layers[i], NYDUS_BOOTSTRAP);

		if (v && !strcmp(v, "true")) {
			*ret = i;
			return 0;
		}
	}
	if (m->n_layers == 1) {
		*ret = 0;
		return 0;
	}
	cli_error("the image has %zu layers: pick one with --layer N or "
		  "--layer-digest D",
		  m->n_layers);
	return -EINVAL;
}

int cli_open_remote(const char *ref, const struct cli_remote_opts *o,
		    struct cli_remote **ret_remote,
		    struct format_hints *ret_hints, struct lp_source **ret)
{
	_cleanup_(cli_remote_closep) struct cli_remote *r = NULL;
	size_t i;
	int rc;

	rc = cli_remote_open(ref, o, &r);
	if (rc < 0)
		return rc;
	rc = cli_remote_pick(r, o, &i);
	if (rc < 0)
		return rc;
	rc = cli_remote_layer(r, i, ret);
	if (rc < 0)
		return rc;
	if (ret_hints)
		cli_remote_hints(r, i, ret_hints);
	*ret_remote = TAKE_PTR(r);
	return 0;
}

/* ---- the zran index store ---------------------------------------------- */

void cli_short_digest(const char *digest, char *buf, size_t size)
{
	const char *colon = strchr(digest, ':');
	size_t n = (colon ? (size_t)(colon + 1 - digest) : 0) + 12;

	if (strlen(digest) > n)
		snprintf(buf, size, "%.*s…", (int)n, digest);
	else
		snprintf(buf, size, "%s", digest);
}

#ifdef LP_HAVE_ZRAN
static void zran_progress(uint64_t done, uint64_t total, void *data)
{
	cli_progress_update(data, done, total);
}

/*
 * The index build reads the layer front to back, 1 MiB at a time: from a
 * registry, one request after another, each paying a round trip.  A
 * thread of its own streams the whole blob into the cache meanwhile, in
 * one request whose bytes become visible every MiB, so the link stays
 * full and the build's reads follow the stream (a registry that cannot
 * stream: large parallel requests, STREAM_STEP at a time).
 */
#define STREAM_STEP (16u << 20) /* per call: bounds the buffers in flight */

struct stream_job {
	struct lp_source *src;
	/* stop: the build is over (it failed early, say); claimed: the
	 * build may start, its reads wait for the stream */
	struct fetch_fill_ctl ctl;
};

static void *stream_blob(void *arg)
{
	struct stream_job *j = arg;
	struct lp_source *src = j->src;
	struct lp_err err = { 0 };
	int r = fetch_source_fill(src, &j->ctl, &err);

	if (r == 0)
		return NULL;
	lp_debug("%s: streaming ahead of the index build: %s", src->name,
		 err.msg);
	if (r != -EINVAL && r != -EOPNOTSUPP)
		return NULL; /* the build fetches what it still reads */
	lp_err_clear(&err);
	for (uint64_t off = 0; off < src->size &&
			       !__atomic_load_n(&j->ctl.stop, __ATOMIC_ACQUIRE);
	     off += STREAM_STEP) {
		struct lp_range r = { off, src->size - off < STREAM_STEP
						   ? src->size - off
						   : STREAM_STEP };

		if (lp_source_prefetch(src, &r, 1, &err) < 0) {
			lp_debug("%s: fetching ahead of the index build: %s "
				 "(the build fetches what it reads)",
				 src->name, err.msg);
			break;
		}
	}
	return NULL;
}

/*
 * The build's bytes came from the registry in pieces (or from a stream
 * whose verdict may come after the build read them): the digest of the
 * gzip stream it inflated must be the layer's, or nothing it read is
 * trusted, in the index or in the blob cache.
 */
static int check_layer_digest(struct lp_source *src, const char *digest,
			      const struct zran_index *idx, struct lp_err *err)
{
	struct zran_index_stats st;
	char got[7 + 65];

	if (!digest || strncmp(digest, "sha256:", 7))
		return 0;
	zran_index_stats(idx, &st);
	memcpy(got, "sha256:", 7);
	lp_hex(st.gzip_sha256, 32, got + 7);
	if (!strcmp(got, digest))
		return 0;
	fetch_source_invalidate(src, 0, src->size);
	return lp_err_set(err, EBADMSG, "the registry's bytes for layer %s "
			  "have the digest %s: not indexed, dropped from the "
			  "cache", digest, got);
}

static int zran_build_shown(struct lp_source *src, const char *digest,
			    const char *what, uint32_t span,
			    struct zran_index **ret, struct lp_err *err)
{
	struct zran_build_opts bo = { .span = span };
	struct cli_progress *p = cli_progress_begin(what, src->size);
	struct stream_job job = { .src = src };
	pthread_t th;
	bool ahead = false;
	int r;

	if (src->ops->prefetch && src->size > (4u << 20))
		ahead = pthread_create(&th, NULL, stream_blob, &job) == 0;
	/* the stream brings the blob's first bytes too: a read of them
	 * before its claim would fetch them a second time */
	for (int ms = 0; ahead && ms < 500 &&
			 !__atomic_load_n(&job.ctl.claimed, __ATOMIC_ACQUIRE);
	     ms++)
		usleep(1000);
	bo.progress = zran_progress;
	bo.progress_data = p;
	r = zran_index_build(src, &bo, ret, err);
	if (ahead) {
		__atomic_store_n(&job.ctl.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
	}
	cli_progress_end(p);
	if (r == 0) {
		r = check_layer_digest(src, digest, *ret, err);
		if (r < 0) {
			zran_index_free(*ret);
			*ret = NULL;
		}
	}
	return r;
}

static int zran_save_atomic(const struct zran_index *idx, const char *path,
			    struct lp_err *err)
{
	_cleanup_free_ char *tmp = lp_xmalloc(strlen(path) + 48);
	int r;

	/* a name of our own: threads opening an image that lists one layer
	 * twice may index the same blob at once */
	sprintf(tmp, "%s.%d.%d.new", path, (int)getpid(), (int)gettid());
	r = zran_index_save(idx, tmp, err);
	if (r == 0 && rename(tmp, path) < 0) {
		r = lp_err_set(err, errno, "%s: %s", path, strerror(errno));
		unlink(tmp);
	}
	return r;
}
#endif

int cli_zran_build(struct lp_source *src, const char *digest,
		   const char *what, uint32_t span, const char *path,
		   struct lp_err *err)
{
#ifdef LP_HAVE_ZRAN
	_cleanup_(zran_index_freep) struct zran_index *idx = NULL;
	int r = zran_build_shown(src, digest, what, span, &idx, err);

	return r < 0 ? r : zran_save_atomic(idx, path, err);
#else
	(void)src;
	(void)digest;
	(void)what;
	(void)span;
	(void)path;
	return lp_err_set(err, EOPNOTSUPP, "built without zran support");
#endif
}

static int layer_source(struct cli_remote *r, size_t i, struct lp_source **ret,
			struct lp_err *err)
{
	const struct fetch_desc *d = &r->manifest->layers[i];
	struct fetch_source_opts so;

	return fetch_blob_source_open(r->client, r->cache, &r->ref, d->digest,
				      d->size, source_opts(r, &so), ret, err);
}

int cli_mkdir_parents(const char *path)
{
	_cleanup_free_ char *tmp = lp_xstrdup(path);

	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* the model a layer's TOC gave, saved (NULL for a digest that is not
 * one: a probe's comes from its command line) */
static char *model_store_path(const struct cli_remote_opts *o,
			      const char *digest)
{
	_cleanup_free_ char *cache = NULL;

	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return NULL;
	cache = cli_cache_dir(o);
	return lp_layout_file(cache, LP_FILE_MODEL, digest);
}

#define CLI_PRODUCER "lazypull " LP_VERSION

int cli_open_toc_layer(const struct cli_remote_opts *o, const char *digest,
		       struct lp_source *src, const struct engine_opts *eo,
		       struct engine_layer **ret, struct lp_err *err)
{
	_cleanup_free_ char *path = model_store_path(o, digest);
	struct lp_err serr = { 0 };
	uint64_t t0 = lp_now_ns();
	int rc;

	if (path) {
		rc = engine_open_saved(src, eo, CLI_PRODUCER, path, ret, &serr);
		if (rc == 0) {
			lp_log(LP_LOG_INFO, "layer %s: its saved model, in "
			       "%.1f ms", digest, lp_ms_since(t0));
			return 0;
		}
		if (rc != -ENOENT)
			lp_log(LP_LOG_INFO, "layer %s: not the saved model: %s",
			       digest, serr.msg);
	}
	rc = engine_open(src, eo, ret, err);
	if (rc < 0 || !path || !engine_stargz_family((*ret)->info.format))
		return rc;
	lp_debug("layer %s: TOC parsed in %.1f ms", digest, lp_ms_since(t0));
	lp_err_clear(&serr);
	rc = cli_mkdir_parents(path);
	if (rc < 0)
		lp_err_set(&serr, rc, "%s: %s", path, strerror(-rc));
	else
		rc = engine_save_model(*ret, CLI_PRODUCER, path, &serr);
	if (rc < 0)
		lp_log(LP_LOG_INFO, "layer %s: model not saved: %s", digest,
		       serr.msg);
	return 0;
}

#ifdef LP_HAVE_ZRAN
static char *index_store_path(const struct cli_remote_opts *o,
			      const char *digest)
{
	return lp_layout_file(cli_remote_root(o), LP_FILE_ZRAN, digest);
}
#endif

int cli_remote_open_layer(struct cli_remote *r, size_t i,
			  const struct cli_remote_opts *o,
			  const struct engine_opts *eo_in,
			  struct engine_layer **ret, struct lp_err *err)
{
	struct engine_opts eo = *eo_in;
	struct lp_source *src;
	int rc;

	if (i >= r->manifest->n_layers)
		return lp_err_set(err, EINVAL, "layer %zu: the image has %zu "
				  "layers", i, r->manifest->n_layers);
	rc = layer_source(r, i, &src, err);
	if (rc < 0)
		return rc;
#ifdef LP_HAVE_ZRAN
	if (!eo.format && !eo.zran_index) {
		const char *digest = r->manifest->layers[i].digest;
		_cleanup_free_ char *idx = index_store_path(o, digest);
		_cleanup_(zran_index_freep) struct zran_index *zi = NULL;
		const struct format_ops *ops;
		char what[128], sd[96];

		if (access(idx, F_OK) == 0) {
			/* only a layer that probed as plain gzip has one */
			eo.zran_index = idx;
			rc = engine_open(src, &eo, ret, err); /* takes src */
			if (rc == 0)
				return 0;
			lp_log(LP_LOG_WARN, "stored zran index %s: %s; "
			       "rebuilding it", idx, err->msg);
			lp_err_clear(err);
			eo.zran_index = NULL;
			rc = layer_source(r, i, &src, err);
			if (rc < 0)
				return rc;
		}
		rc = engine_detect(src, eo.hints, &ops, err);
		if (rc < 0) {
			lp_source_free(src);
			return rc;
		}
		if (strcmp(ops->name, "zran")) {
			cli_probes_wait(o);
			return cli_open_toc_layer(o, digest, src, &eo, ret,
						  err);
		}

		cli_short_digest(digest, sd, sizeof(sd));
		snprintf(what, sizeof(what), "indexing layer %s", sd);
		rc = zran_build_shown(src, digest, what, 0, &zi, err);
		if (rc < 0) {
			lp_err_wrap(err, "%s", src->name);
			lp_source_free(src);
			return rc;
		}
		/* saved for the next mount; this one serves from the index
		 * built (its windows then read from the file saved, as a
		 * loaded index's are: no loading it back) */
		rc = cli_mkdir_parents(idx);
		if (rc < 0)
			lp_err_set(err, rc, "%s: %s", idx, strerror(-rc));
		else
			rc = zran_index_save_keep(zi, idx, err);
		if (rc < 0) {
			/* served all the same, its windows in memory */
			lp_log(LP_LOG_WARN, "cannot store the zran index: %s",
			       err->msg);
			lp_err_clear(err);
		}
		eo.zran_built = TAKE_PTR(zi);
		return engine_open(src, &eo, ret, err);
	}
#endif
	cli_probes_wait(o);
	return cli_open_toc_layer(o, r->manifest->layers[i].digest, src, &eo,
				  ret, err);
}

/* ---- lazypull manifest -------------------------------------------------- */

static void manifest_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull manifest [OPTIONS] REF\n\n"
		   "Prints the image manifest of REF (resolved through an "
		   "index for the\nplatform) as served, or with --index the "
		   "index itself.\n\n"
		   "  --index             the index (or the manifest if there "
		   "is none)\n"
		   "  --layers            one line per layer: digest size "
		   "media type\n"
		   "  -v, --verbose       print each request on stderr\n"
		   "  -h, --help          this help\n" CLI_REMOTE_HELP);
}

int cmd_manifest(int argc, char **argv)
{
	enum { OPT_INDEX = 0x300, OPT_LAYERS };
	static const struct option longopts[] = {
		{ "index", no_argument, NULL, OPT_INDEX },
		{ "layers", no_argument, NULL, OPT_LAYERS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_remote_closep) struct cli_remote *r = NULL;
	struct cli_remote_opts ro;
	bool index = false, layers = false;
	const struct fetch_manifest *m;
	int c, h;

	cli_remote_opts_init(&ro);
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		h = cli_remote_opt(&ro, c, optarg);
		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case OPT_INDEX:
			index = true;
			break;
		case OPT_LAYERS:
			layers = true;
			break;
		case 'v':
			ro.verbose = true;
			break;
		case 'h':
			manifest_usage(stdout);
			return 0;
		default:
			manifest_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		manifest_usage(stderr);
		return EXIT_USAGE;
	}
	if (cli_remote_open(argv[optind], &ro, &r) < 0)
		return 1;
	m = index && r->index ? r->index : r->manifest;
	if (layers) {
		for (size_t i = 0; i < r->manifest->n_layers; i++) {
			const struct fetch_desc *d = &r->manifest->layers[i];

			printf("%s %llu %s\n", d->digest,
			       (unsigned long long)d->size, d->media_type);
		}
	} else {
		fwrite(m->raw, 1, m->raw_len, stdout);
		if (m->raw_len && m->raw[m->raw_len - 1] != '\n')
			putchar('\n');
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

int cli_probing_open(const struct cli_remote_opts *ro)
{
	_cleanup_free_ char *cache = cli_cache_dir(ro);
	char path[4096];

	snprintf(path, sizeof(path), "%s/probing.lock", cache);
	return open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

void cli_probes_wait(const struct cli_remote_opts *ro)
{
	struct timespec nap = { 0, 10 * 1000000L };
	int fd;

	if (!ro->probes_wait_ms)
		return;
	fd = cli_probing_open(ro);
	if (fd < 0)
		return;
	for (unsigned t = 0; t < ro->probes_wait_ms; t += 10) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		nanosleep(&nap, NULL);
	}
	close(fd); /* drops the lock if we got it */
}
