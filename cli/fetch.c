/* SPDX-License-Identifier: Apache-2.0 */
/* Registry references in the CLI, and `lazypull manifest`. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/fetch.h"

#define DEFAULT_ROOT "/var/lib/lazypull"
#define NYDUS_BOOTSTRAP "containerd.io/snapshot/nydus-bootstrap"
#define STARGZ_TOC "containerd.io/snapshot/stargz/toc.digest"

static char *user_copy; /* --user, reachable until exit */

void cli_remote_opts_init(struct cli_remote_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->layer = -1;
	o->tag_ttl = CLI_TAG_TTL_DEFAULT;
}

int cli_remote_opt(struct cli_remote_opts *o, int c, char *arg)
{
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
	/* "GET .../blobs/sha256:0123456789ab bytes=A-B -> 206 (N B)" */
	fprintf(stderr, "%s %.*s%.19s", t->method,
		slash ? (int)(slash + 1 - t->url) : 0, t->url,
		slash ? slash + 1 : t->url);
	if (slash && strlen(slash + 1) > 19)
		fputs("…", stderr);
	if (t->has_range) {
		if (t->range_len)
			fprintf(stderr, " bytes=%llu-%llu",
				(unsigned long long)t->range_off,
				(unsigned long long)(t->range_off +
						     t->range_len - 1));
		else
			fprintf(stderr, " bytes=%llu-",
				(unsigned long long)t->range_off);
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

int cli_remote_open(const char *arg, const struct cli_remote_opts *o,
		    struct cli_remote **ret)
{
	_cleanup_(cli_remote_closep) struct cli_remote *r = NULL;
	struct fetch_platform plat = { 0 };
	struct fetch_cache_opts co = { 0 };
	struct lp_err err = { 0 };
	struct fetch_opts fo;
	_cleanup_(fetch_hosts_freep) struct fetch_hosts *nydusd = NULL;
	const struct fetch_hosts *hl[1];
	_cleanup_free_ char *user = NULL, *cache_dir = NULL;
	const char *root;
	int rc;

	r = lp_xcalloc(1, sizeof(*r));
	r->verbose = o->verbose;
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

	root = cli_remote_root(o);
	cache_dir = lp_xmalloc(strlen(root) + 8);
	sprintf(cache_dir, "%s/cache", root);
	co.root = cache_dir;
	co.max_bytes = o->cache_max;
	rc = fetch_cache_open(&co, &r->cache, &err);
	if (rc < 0)
		goto fail;

	rc = fetch_get_image_cached(r->client, r->cache, &r->ref,
				    o->platform ? &plat : NULL, o->tag_ttl,
				    &r->manifest, &r->index, &err);
	if (rc < 0)
		goto fail;
	r->annotations =
		lp_xcalloc(r->manifest->n_layers + 1, sizeof(*r->annotations));
	for (size_t i = 0; i < r->manifest->n_layers; i++)
		r->annotations[i] = flat_annotations(&r->manifest->layers[i]);
	fetch_platform_release(&plat);
	*ret = TAKE_PTR(r);
	return 0;
fail:
	fetch_platform_release(&plat);
	cli_error("%s", err.msg[0] ? err.msg : strerror(-rc));
	return rc;
}

int cli_remote_layer(struct cli_remote *r, size_t i, struct lp_source **ret)
{
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
				    d->size, NULL, ret, &err);
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
	struct lp_err err = { 0 };
	int rc;

	if (!size) {
		for (size_t i = 0; i < r->manifest->n_layers; i++)
			if (!strcmp(r->manifest->layers[i].digest, digest))
				size = r->manifest->layers[i].size;
	}
	rc = fetch_blob_source_open(r->client, r->cache, &r->ref, digest, size,
				    NULL, ret, &err);
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
