/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nydus-snapshotter surface: containerd-nydus-grpc's command line, its
 * config.toml (the keys that apply to lazypull) and the nydusd JSON config
 * (registry backend, cache directory, prefetch).  Precedence: a flag given
 * on the command line, then config.toml, then the defaults.
 */
#define LP_MODNAME "snapshotter"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/toml.h"
#include "snapshotter/snapshotter.h"

#ifndef LP_VERSION
#define LP_VERSION "unknown"
#endif

static void note(struct snap_config *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note(struct snap_config *c, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	c->notes = lp_xrealloc(c->notes, (c->n_notes + 1) * sizeof(char *));
	c->notes[c->n_notes++] = s;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = lp_xstrdup(v);
}

void snap_config_release(struct snap_config *c)
{
	if (!c)
		return;
	free(c->root);
	free(c->address);
	free(c->config_path);
	free(c->nydusd_config);
	free(c->log_dir);
	free(c->cache_dir);
	free(c->mirrors_dir);
	free(c->lazypull_path);
	free(c->cache_type);
	free(c->backend.type);
	free(c->backend.scheme);
	free(c->backend.host);
	free(c->backend.repo);
	free(c->backend.auth);
	free(c->backend.registry_token);
	for (size_t i = 0; i < c->backend.n_mirrors; i++)
		free(c->backend.mirrors[i]);
	free(c->backend.mirrors);
	for (size_t i = 0; i < c->n_notes; i++)
		free(c->notes[i]);
	free(c->notes);
	memset(c, 0, sizeof(*c));
}

/* Go's strconv.ParseBool */
static int parse_bool(const char *s, bool *ret)
{
	static const char *const t[] = { "1", "t", "T", "true", "TRUE",
					 "True" };
	static const char *const f[] = { "0", "f", "F", "false", "FALSE",
					 "False" };

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		if (!strcmp(s, t[i])) {
			*ret = true;
			return 0;
		}
		if (!strcmp(s, f[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_level(const char *s, enum lp_log_level *ret)
{
	/* logrus names; fatal and panic log only errors */
	if (!strcasecmp(s, "fatal") || !strcasecmp(s, "panic")) {
		*ret = LP_LOG_ERROR;
		return 0;
	}
	return lp_log_parse_level(s, ret);
}

static int parse_mode(const char *s, enum snap_daemon_mode *ret,
		      struct lp_err *err)
{
	if (!strcmp(s, "dedicated") || !strcmp(s, "multiple")) {
		*ret = SNAP_DAEMON_DEDICATED;
		return 0;
	}
	if (!strcmp(s, "shared")) {
		*ret = SNAP_DAEMON_SHARED;
		return 0;
	}
	if (!strcmp(s, "none"))
		return lp_err_set(err, -EINVAL, "daemon mode \"none\" is not "
				  "supported: lazypull serves images itself "
				  "(use dedicated or shared)");
	return lp_err_set(err, -EINVAL, "invalid daemon mode \"%s\" (want "
			  "dedicated, shared or multiple)", s);
}

static int check_driver(const char *s, struct lp_err *err)
{
	if (!strcmp(s, "fusedev"))
		return 0;
	if (!strcmp(s, "fscache") || !strcmp(s, "blockdev") ||
	    !strcmp(s, "proxy") || !strcmp(s, "nodev"))
		return lp_err_set(err, -EINVAL, "fs driver \"%s\" is not "
				  "supported: lazypull serves images through "
				  "FUSE, use --fs-driver fusedev", s);
	return lp_err_set(err, -EINVAL, "invalid fs driver \"%s\" (lazypull "
			  "supports fusedev)", s);
}

/* ---- nydusd JSON --------------------------------------------------------- */

static int j_str(json_t *o, const char *key, const char *where, char **dst,
		 struct lp_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return lp_err_set(err, -EINVAL, "%s.%s: expected a string",
				  where, key);
	set_str(dst, json_string_value(v));
	return 0;
}

static int j_int(json_t *o, const char *key, const char *where, int64_t *dst,
		 struct lp_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return lp_err_set(err, -EINVAL, "%s.%s: expected an integer",
				  where, key);
	*dst = json_integer_value(v);
	return 0;
}

static int j_bool(json_t *o, const char *key, const char *where, bool *dst,
		  struct lp_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return lp_err_set(err, -EINVAL, "%s.%s: expected true or false",
				  where, key);
	*dst = json_is_true(v);
	return 0;
}

static json_t *j_obj(json_t *o, const char *key)
{
	json_t *v = o ? json_object_get(o, key) : NULL;

	return json_is_object(v) ? v : NULL;
}

static int load_backend(struct snap_config *c, json_t *b, const char *where,
			struct lp_err *err)
{
	struct snap_backend *be = &c->backend;
	json_t *m;
	int r = 0;

	if (!b)
		return 0;
	if ((r = j_str(b, "scheme", where, &be->scheme, err)) < 0 ||
	    (r = j_str(b, "host", where, &be->host, err)) < 0 ||
	    (r = j_str(b, "repo", where, &be->repo, err)) < 0 ||
	    (r = j_str(b, "auth", where, &be->auth, err)) < 0 ||
	    (r = j_str(b, "registry_token", where, &be->registry_token,
		       err)) < 0 ||
	    (r = j_bool(b, "skip_verify", where, &be->skip_verify, err)) < 0 ||
	    (r = j_int(b, "timeout", where, &be->timeout_s, err)) < 0 ||
	    (r = j_int(b, "connect_timeout", where, &be->connect_timeout_s,
		       err)) < 0 ||
	    (r = j_int(b, "retry_limit", where, &be->retry_limit, err)) < 0)
		return r;
	m = json_object_get(b, "mirrors");
	if (json_is_array(m)) {
		size_t i;
		json_t *e;

		json_array_foreach(m, i, e) {
			json_t *h = json_object_get(e, "host");

			if (!json_is_string(h))
				continue;
			be->mirrors = lp_xrealloc(be->mirrors,
						  (be->n_mirrors + 1) *
							  sizeof(char *));
			be->mirrors[be->n_mirrors++] =
				lp_xstrdup(json_string_value(h));
		}
	}
	return 0;
}

static int load_prefetch(struct snap_config *c, json_t *p, const char *where,
			 struct lp_err *err)
{
	int r;

	if (!p)
		return 0;
	if ((r = j_bool(p, "enable", where, &c->prefetch.enable, err)) < 0 ||
	    (r = j_int(p, "threads_count", where, &c->prefetch.threads,
		       err)) < 0 ||
	    (r = j_bool(p, "prefetch_all", where, &c->prefetch.prefetch_all,
			err)) < 0 ||
	    (r = j_int(p, "bandwidth_rate", where, &c->prefetch.bandwidth_rate,
		       err)) < 0)
		return r;
	return 0;
}

int snap_config_load_nydusd(struct snap_config *c, const char *path,
			    struct lp_err *err)
{
	json_error_t je;
	json_t *root, *dev, *cfg;
	char *cache_dir = NULL;
	struct stat st;
	int r = 0;

	if (stat(path, &st) < 0)
		return lp_err_set(err, -errno, "nydusd config %s: %s", path,
				  strerror(errno));
	root = json_load_file(path, 0, &je);
	if (!root) {
		if (je.line < 1)
			return lp_err_set(err, -EIO, "nydusd config %s: %s",
					  path, je.text);
		return lp_err_set(err, -EINVAL, "nydusd config %s: line %d: %s",
				  path, je.line, je.text);
	}
	if (!json_is_object(root)) {
		r = lp_err_set(err, -EINVAL, "nydusd config %s: not a JSON "
			       "object", path);
		goto out;
	}
	/* the default (fusedev) layout: {"device": {"backend", "cache"}} */
	dev = j_obj(root, "device");
	if (dev) {
		json_t *be = j_obj(dev, "backend"), *ca = j_obj(dev, "cache");

		if ((r = j_str(be, "type", "device.backend", &c->backend.type,
			       err)) < 0 ||
		    (r = load_backend(c, j_obj(be, "config"),
				      "device.backend.config", err)) < 0 ||
		    (r = j_str(ca, "type", "device.cache", &c->cache_type,
			       err)) < 0 ||
		    (r = j_str(j_obj(ca, "config"), "work_dir",
			       "device.cache.config", &cache_dir, err)) < 0)
			goto wrap;
	}
	if ((r = load_prefetch(c, j_obj(root, "fs_prefetch"), "fs_prefetch",
			       err)) < 0 ||
	    (r = j_int(root, "amplify_io", "rafs", &c->amplify_io, err)) < 0)
		goto wrap;
	if (c->amplify_io < -1 || c->amplify_io > (1 << 30)) {
		r = lp_err_set(err, -EINVAL, "amplify_io %lld: 0 to 1 GiB",
			       (long long)c->amplify_io);
		goto wrap;
	}
	/* the fscache layout: {"type": "bootstrap", "config": {…}} */
	cfg = j_obj(root, "config");
	if (cfg) {
		if ((r = j_str(cfg, "backend_type", "config",
			       &c->backend.type, err)) < 0 ||
		    (r = load_backend(c, j_obj(cfg, "backend_config"),
				      "config.backend_config", err)) < 0 ||
		    (r = j_str(cfg, "cache_type", "config", &c->cache_type,
			       err)) < 0 ||
		    (r = j_str(j_obj(cfg, "cache_config"), "work_dir",
			       "config.cache_config", &cache_dir, err)) < 0 ||
		    (r = load_prefetch(c, j_obj(cfg, "prefetch_config"),
				       "config.prefetch_config", err)) < 0)
			goto wrap;
	}
	/* config.toml's cache_dir wins over the JSON's work_dir */
	if (cache_dir && cache_dir[0] && !c->cache_dir)
		c->cache_dir = TAKE_PTR(cache_dir);
	goto out;
wrap:
	lp_err_wrap(err, "nydusd config %s", path);
out:
	free(cache_dir);
	json_decref(root);
	return r;
}

/* ---- config.toml --------------------------------------------------------- */

/* which settings the command line gave (those win over the file) */
struct given {
	bool root, address, nydusd_config, stargz, level, stdout_, mode,
		driver, zran, lazypull, early, merged, warm, cache_max;
};

static int load_toml(struct snap_config *c, const struct given *g,
		     struct lp_err *err)
{
	_cleanup_(lp_toml_freep) struct lp_toml_value *t = NULL;
	const char *s;
	int64_t ver;
	bool b;
	int r;

	r = lp_toml_parse_file(c->config_path, &t, err);
	if (r < 0)
		return r;
#define STR(path, code)                                                        \
	do {                                                                   \
		r = lp_toml_get_string(t, path, &s, err);                      \
		if (r == 0) {                                                  \
			code;                                                  \
		} else if (r != -ENOENT) {                                     \
			return r;                                              \
		}                                                              \
	} while (0)
#define BOOL(path, code)                                                       \
	do {                                                                   \
		r = lp_toml_get_bool(t, path, &b, err);                        \
		if (r == 0) {                                                  \
			code;                                                  \
		} else if (r != -ENOENT) {                                     \
			return r;                                              \
		}                                                              \
	} while (0)

	r = lp_toml_get_int(t, "version", &ver, err);
	if (r == 0 && ver != 1)
		return lp_err_set(err, -EINVAL, "unsupported config version "
				  "%lld (want 1)", (long long)ver);
	if (r < 0 && r != -ENOENT)
		return r;
	STR("root", if (!g->root && s[0]) set_str(&c->root, s));
	STR("address", if (!g->address && s[0]) set_str(&c->address, s));
	STR("daemon_mode", if (!g->mode && s[0]) {
		r = parse_mode(s, &c->daemon_mode, err);
		if (r < 0)
			return r;
	});
	STR("daemon.nydusd_config", if (!g->nydusd_config && s[0]) {
		set_str(&c->nydusd_config, s);
		c->nydusd_config_explicit = true;
	});
	STR("daemon.fs_driver", if (!g->driver && s[0]) {
		r = check_driver(s, err);
		if (r < 0)
			return r;
	});
	STR("daemon.nydusd_path",
	    note(c, "config: daemon.nydusd_path = \"%s\" is ignored: "
		    "lazypull needs no nydusd", s));
	STR("daemon.nydusimage_path",
	    note(c, "config: daemon.nydusimage_path = \"%s\" is ignored: "
		    "lazypull needs no nydus-image", s));
	STR("log.level", if (!g->level && s[0]) {
		if (parse_level(s, &c->log_level) < 0)
			return lp_err_set(err, -EINVAL, "log.level: invalid "
					  "level \"%s\"", s);
	});
	BOOL("log.log_to_stdout", if (!g->stdout_) c->log_to_stdout = b);
	STR("log.dir", if (s[0]) set_str(&c->log_dir, s));
	BOOL("experimental.enable_stargz",
	     if (!g->stargz) c->enable_stargz = b);
	BOOL("experimental.enable_zran", if (!g->zran) c->enable_zran = b);
	BOOL("experimental.early_mount", if (!g->early) c->early_mount = b);
	BOOL("experimental.merged_mounts",
	     if (!g->merged) c->no_merged_mounts = !b);
	BOOL("experimental.warm", if (!g->warm) c->no_warm = !b);
	STR("daemon.lazypull_path",
	    if (!g->lazypull && s[0]) set_str(&c->lazypull_path, s));
	STR("cache_manager.cache_dir", if (s[0]) set_str(&c->cache_dir, s));
	/* nydus-snapshotter removes the cache of blobs no image uses every
	 * gc_period; lazypull removes a layer's as its last snapshot goes
	 * (remote.c): say so rather than nothing */
	STR("cache_manager.gc_period",
	    note(c, "config: cache_manager.gc_period = \"%s\" is ignored: "
		    "lazypull removes a layer's cache when the last snapshot "
		    "of the layer is removed; bound the blob cache with "
		    "[cache_manager] max_bytes (--cache-max)", s));
	{ /* lazypull's own key: the blob cache's bound */
		int64_t v;

		r = lp_toml_get_int(t, "cache_manager.max_bytes", &v, err);
		if (r == 0 && v < 0)
			return lp_err_set(err, -EINVAL, "cache_manager."
					  "max_bytes %lld: a number of bytes, "
					  "0 = no bound", (long long)v);
		if (r == 0 && !g->cache_max)
			c->cache_max = (uint64_t)v;
		else if (r < 0 && r != -ENOENT)
			return r;
	}
	STR("remote.mirrors_config.dir",
	    if (s[0]) set_str(&c->mirrors_dir, s));
#undef STR
#undef BOOL
	return 0;
}

/* ---- command line -------------------------------------------------------- */

enum {
	O_ROOT = 256, O_ADDRESS, O_CONFIG, O_NYDUSD_CONFIG, O_STARGZ, O_LEVEL,
	O_STDOUT, O_VERSION, O_HELP, O_IGNORED, O_MODE, O_DRIVER, O_ZRAN,
	O_LAZYPULL, O_EARLY, O_MERGED, O_WARM, O_CACHE_MAX,
};

static const struct option options[] = {
	{ "root", required_argument, NULL, O_ROOT },
	{ "address", required_argument, NULL, O_ADDRESS },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "nydusd-config", required_argument, NULL, O_NYDUSD_CONFIG },
	{ "config-path", required_argument, NULL, O_NYDUSD_CONFIG },
	{ "enable-stargz", optional_argument, NULL, O_STARGZ },
	{ "enable-zran", optional_argument, NULL, O_ZRAN },
	{ "lazypull-path", required_argument, NULL, O_LAZYPULL },
	{ "early-mount", optional_argument, NULL, O_EARLY },
	{ "merged-mounts", optional_argument, NULL, O_MERGED },
	{ "warm", optional_argument, NULL, O_WARM },
	{ "cache-max", required_argument, NULL, O_CACHE_MAX },
	{ "log-level", required_argument, NULL, O_LEVEL },
	{ "log-to-stdout", optional_argument, NULL, O_STDOUT },
	{ "version", no_argument, NULL, O_VERSION },
	{ "help", no_argument, NULL, O_HELP },
	{ "daemon-mode", required_argument, NULL, O_MODE },
	{ "fs-driver", required_argument, NULL, O_DRIVER },
	/* nydus binaries and helpers lazypull does not use */
	{ "nydusd-path", required_argument, NULL, O_IGNORED },
	{ "nydusimg-path", required_argument, NULL, O_IGNORED },
	{ "nydus-image", required_argument, NULL, O_IGNORED },
	{ "nydusd", required_argument, NULL, O_IGNORED },
	{ "nydus-overlayfs-path", required_argument, NULL, O_IGNORED },
	{ NULL, 0, NULL, 0 },
};

static void usage(const char *prog)
{
	printf("Usage: %s [flags]\n"
	       "lazypull's containerd snapshotter (a drop-in for "
	       "containerd-nydus-grpc)\n\n"
	       "  --root DIR             state directory (default %s)\n"
	       "  --address PATH         gRPC socket (default %s)\n"
	       "  --config FILE          nydus-snapshotter config.toml\n"
	       "  --nydusd-config FILE   nydusd JSON: registry backend, "
	       "cache, prefetch\n"
	       "                         (alias --config-path; default %s)\n"
	       "  --enable-stargz        serve eStargz and zstd:chunked layers "
	       "lazily\n"
	       "  --enable-zran          serve plain gzip layers lazily (zran "
	       "index)\n"
	       "  --early-mount[=BOOL]   start a remote layer's fs daemon on "
	       "its Prepare, so\n"
	       "                         its prefetch overlaps the pull "
	       "(default false;\n"
	       "                         [experimental] early_mount)\n"
	       "  --merged-mounts[=BOOL] one fs daemon and mount per image "
	       "(the merged tree\n"
	       "                         of its remote layers) instead of "
	       "one per layer\n"
	       "                         (default true; [experimental] "
	       "merged_mounts)\n"
	       "  --warm[=BOOL]          on a layer's Prepare, start fetching "
	       "what its fs\n"
	       "                         daemon will prefetch first (landmark "
	       "files, the\n"
	       "                         image's access trace), so it "
	       "overlaps the pull\n"
	       "                         (default true; [experimental] warm)\n"
	       "  --cache-max BYTES      bound the blob cache in the cache "
	       "directory: the\n"
	       "                         blobs used least recently and by "
	       "no fs daemon go\n"
	       "                         first (default 0, no bound; "
	       "[cache_manager]\n"
	       "                         max_bytes)\n"
	       "  --lazypull-path FILE   the lazypull binary that serves "
	       "layers (default:\n"
	       "                         next to this one, else $PATH)\n"
	       "  --log-level LEVEL      trace, debug, info, warn, error "
	       "(default info)\n"
	       "  --log-to-stdout        log to stdout instead of "
	       "<root>/logs\n"
	       "  --daemon-mode MODE     dedicated, shared or multiple\n"
	       "  --fs-driver DRIVER     fusedev\n"
	       "  --version              print the version\n"
	       "Accepted and ignored: --nydusd-path, --nydusimg-path, "
	       "--nydus-image, --nydusd, --nydus-overlayfs-path.\n",
	       prog, SNAP_DEFAULT_ROOT, SNAP_DEFAULT_ADDRESS,
	       SNAP_DEFAULT_NYDUSD_CONFIG);
}

static int bool_arg(const char *name, bool *dst, struct lp_err *err)
{
	if (!optarg) {
		*dst = true;
		return 0;
	}
	if (parse_bool(optarg, dst) < 0)
		return lp_err_set(err, -EINVAL, "invalid value \"%s\" for "
				  "flag --%s: want true or false", optarg,
				  name);
	return 0;
}

int snap_config_load(struct snap_config *c, int argc, char **argv,
		     struct lp_err *err)
{
	struct given g = { 0 };
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 :
						   argv[0];
	int opt, idx, r;

	memset(c, 0, sizeof(*c));
	c->amplify_io = -1;
	c->log_level = LP_LOG_INFO;
	c->daemon_mode = SNAP_DAEMON_DEDICATED;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long_only(argc, argv, ":", options, &idx)) != -1) {
		switch (opt) {
		case O_ROOT:
			set_str(&c->root, optarg);
			g.root = true;
			break;
		case O_ADDRESS:
			set_str(&c->address, optarg);
			g.address = true;
			break;
		case O_CONFIG:
			set_str(&c->config_path, optarg);
			break;
		case O_NYDUSD_CONFIG:
			set_str(&c->nydusd_config, optarg);
			c->nydusd_config_explicit = true;
			g.nydusd_config = true;
			break;
		case O_STARGZ:
			r = bool_arg("enable-stargz", &c->enable_stargz, err);
			if (r < 0)
				return r;
			g.stargz = true;
			break;
		case O_ZRAN:
			r = bool_arg("enable-zran", &c->enable_zran, err);
			if (r < 0)
				return r;
			g.zran = true;
			break;
		case O_EARLY:
			r = bool_arg("early-mount", &c->early_mount, err);
			if (r < 0)
				return r;
			g.early = true;
			break;
		case O_MERGED: {
			bool b = true;

			r = bool_arg("merged-mounts", &b, err);
			if (r < 0)
				return r;
			c->no_merged_mounts = !b;
			g.merged = true;
			break;
		}
		case O_WARM: {
			bool b = true;

			r = bool_arg("warm", &b, err);
			if (r < 0)
				return r;
			c->no_warm = !b;
			g.warm = true;
			break;
		}
		case O_LAZYPULL:
			set_str(&c->lazypull_path, optarg);
			g.lazypull = true;
			break;
		case O_CACHE_MAX: {
			char *end;

			errno = 0;
			c->cache_max = strtoull(optarg, &end, 10);
			if (*end || end == optarg || optarg[0] == '-' || errno)
				return lp_err_set(err, -EINVAL, "--cache-max "
						  "%s: a number of bytes, 0 = "
						  "no bound", optarg);
			g.cache_max = true;
			break;
		}
		case O_LEVEL:
			if (parse_level(optarg, &c->log_level) < 0)
				return lp_err_set(err, -EINVAL, "invalid log "
						  "level \"%s\"", optarg);
			g.level = true;
			break;
		case O_STDOUT:
			r = bool_arg("log-to-stdout", &c->log_to_stdout, err);
			if (r < 0)
				return r;
			g.stdout_ = true;
			break;
		case O_VERSION:
			printf("%s version %s (lazypull)\n", prog, LP_VERSION);
			return 1;
		case O_HELP:
			usage(prog);
			return 1;
		case O_MODE:
			r = parse_mode(optarg, &c->daemon_mode, err);
			if (r < 0)
				return r;
			g.mode = true;
			break;
		case O_DRIVER:
			r = check_driver(optarg, err);
			if (r < 0)
				return r;
			g.driver = true;
			break;
		case O_IGNORED:
			note(c, "flag --%s %s is ignored: lazypull needs no "
				"nydusd or nydus-image", options[idx].name,
			     optarg);
			break;
		case ':':
			return lp_err_set(err, -EINVAL, "flag needs an "
					  "argument: %s", argv[optind - 1]);
		default:
			return lp_err_set(err, -EINVAL, "flag provided but not "
					  "defined: %s (see --help)",
					  argv[optind - 1]);
		}
	}
	if (optind < argc)
		return lp_err_set(err, -EINVAL, "unexpected argument \"%s\"",
				  argv[optind]);
	if (c->config_path) {
		r = load_toml(c, &g, err);
		/* a parse error already starts with the path */
		if (r < 0 && err && !strncmp(err->msg, c->config_path,
					     strlen(c->config_path)))
			return lp_err_wrap(err, "config");
		if (r < 0)
			return lp_err_wrap(err, "config %s", c->config_path);
	}
	if (!c->root)
		c->root = lp_xstrdup(SNAP_DEFAULT_ROOT);
	if (!c->address)
		c->address = lp_xstrdup(SNAP_DEFAULT_ADDRESS);
	if (c->root[0] != '/')
		return lp_err_set(err, -EINVAL, "--root must be an absolute "
				  "path, not \"%s\"", c->root);
	if (!c->nydusd_config)
		c->nydusd_config = lp_xstrdup(SNAP_DEFAULT_NYDUSD_CONFIG);
	r = snap_config_load_nydusd(c, c->nydusd_config, err);
	if (r == -ENOENT && !c->nydusd_config_explicit) {
		lp_err_clear(err);
		note(c, "no nydusd config at %s: registry defaults apply",
		     c->nydusd_config);
	} else if (r < 0) {
		return r;
	}
	if (!c->log_dir && asprintf(&c->log_dir, "%s/logs", c->root) < 0)
		abort();
	if (!c->cache_dir && asprintf(&c->cache_dir, "%s/cache", c->root) < 0)
		abort();
	if (c->threads <= 0)
		c->threads = 4;
	return 0;
}
