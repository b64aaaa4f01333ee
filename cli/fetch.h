/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli/fetch: opening layers of an image in a registry for the inspect, ls,
 * cat and check commands, and the `lazypull manifest` debug command.
 *
 * Typical use in a command:
 *
 *	struct cli_remote_opts ro;              // cli_remote_opts_init(),
 *						// getopt: cli_remote_opt()
 *	struct cli_remote *rem = NULL;
 *	struct format_hints h;
 *	struct lp_source *src;
 *
 *	if (cli_is_remote(arg)) {
 *		if (cli_open_remote(arg, &ro, &rem, &h, &src) < 0)
 *			return 1;                // message already printed
 *		eo.hints = &h;
 *		engine_open(src, &eo, &layer, &err);   // takes src
 *	}
 *	...
 *	engine_close(layer);
 *	cli_remote_close(rem);                  // after the layer; -v summary
 */
#ifndef LP_CLI_FETCH_H
#define LP_CLI_FETCH_H

#include <getopt.h>
#include <stdbool.h>

#include "fetcher/fetcher.h"
#include "fs/model.h"

struct engine_layer;
struct engine_opts;

struct cli_remote_opts {
	const char *root;     /* state dir: NULL = $LAZYPULL_ROOT or
				 /var/lib/lazypull */
	const char *cache_dir; /* blob cache, saved models, decoded store:
				  NULL = ROOT/cache (cli_cache_dir) */
	const char *platform; /* os/arch[/variant]; NULL = the host's */
	const char *user;     /* USER[:PASSWORD] */
	bool plain_http;      /* http:// instead of https:// */
	bool insecure;	      /* https without certificate checks */
	int layer;	      /* --layer N (0-based); -1 = not given */
	const char *layer_digest;
	uint64_t cache_max;   /* bytes, 0 = unbounded */
	int64_t tag_ttl;      /* reuse a tag's resolution this many seconds
				 (0 = ask the registry, --refresh) */
	bool verbose;	      /* each request on stderr, totals at close */
	const char *hosts_dir;	   /* containerd certs.d dir (mirrors) */
	const char *nydusd_config; /* nydusd JSON: its backend mirrors */
	uint64_t fetch_window;	   /* grow a cache miss to this many bytes
				      of the blob (read-ahead), 0 = off */
	unsigned timeout_s;	   /* per request and stall; 0 = defaults */
	int retries;		   /* retries after a failure; -1 = default */
	unsigned max_ranges;	   /* ranges per request; 0 = default */
	/* an fs daemon started with the pull's probes: before a layer's
	 * metadata (a TOC) is loaded, wait up to this long for the probes
	 * to have read it into the cache; a plain gzip layer's stream does
	 * not wait.  0 = no wait */
	unsigned probes_wait_ms;
};

/* getopt_long ids (clear of cli.h's 0x100 range) */
enum {
	OPT_PLAIN_HTTP = 0x200,
	OPT_INSECURE,
	OPT_PLATFORM,
	OPT_ROOT,
	OPT_USER,
	OPT_LAYER,
	OPT_LAYER_DIGEST,
	OPT_CACHE_MAX,
	OPT_REFRESH,
	OPT_HOSTS_DIR,
	OPT_NYDUSD_CONFIG,
	OPT_FETCH_WINDOW,
	OPT_TIMEOUT,
	OPT_RETRIES,
	OPT_CACHE_DIR,
	OPT_MAX_RANGES,
};

#define CLI_REMOTE_LONGOPTS                                                    \
	{ "plain-http", no_argument, NULL, OPT_PLAIN_HTTP },                   \
		{ "insecure", no_argument, NULL, OPT_INSECURE },               \
		{ "platform", required_argument, NULL, OPT_PLATFORM },         \
		{ "root", required_argument, NULL, OPT_ROOT },                 \
		{ "user", required_argument, NULL, OPT_USER },                 \
		{ "layer", required_argument, NULL, OPT_LAYER },               \
		{ "layer-digest", required_argument, NULL, OPT_LAYER_DIGEST }, \
		{ "cache-max", required_argument, NULL, OPT_CACHE_MAX },       \
		{ "cache-dir", required_argument, NULL, OPT_CACHE_DIR },       \
		{ "refresh", no_argument, NULL, OPT_REFRESH },                 \
		{ "hosts-dir", required_argument, NULL, OPT_HOSTS_DIR },       \
		{ "nydusd-config", required_argument, NULL, OPT_NYDUSD_CONFIG }, \
		{ "fetch-window", required_argument, NULL, OPT_FETCH_WINDOW }, \
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },           \
		{ "retries", required_argument, NULL, OPT_RETRIES },           \
		{ "max-ranges", required_argument, NULL, OPT_MAX_RANGES }

#define CLI_REMOTE_HELP                                                        \
	"Registry references ([REGISTRY/]REPO[:TAG|@DIGEST]):\n"               \
	"  --plain-http        talk http, not https, to the registry\n"        \
	"  --insecure          https without certificate verification\n"      \
	"  --platform P        os/arch[/variant] in a multi-platform image\n"  \
	"  --layer N           the N-th layer (0-based) of the image\n"        \
	"  --layer-digest D    the layer with digest D\n"                      \
	"  --user U[:P]        registry credentials (else IMAGE_PULL_AUTH,\n"  \
	"                      then ~/.docker/config.json)\n"                  \
	"  --root DIR          state: blob cache and parsed TOCs in DIR/cache\n" \
	"                      (default $LAZYPULL_ROOT or /var/lib/lazypull)\n" \
	"  --cache-dir DIR     the blob cache and parsed TOCs in DIR instead\n" \
	"                      of ROOT/cache\n"                                 \
	"  --cache-max BYTES   bound the blob cache (LRU eviction)\n"          \
	"  --refresh           resolve the tag again (else reused for 5 min)\n" \
	"  --hosts-dir DIR     mirrors from DIR/<registry>/hosts.toml\n"       \
	"                      (containerd's certs.d layout, with _default)\n" \
	"  --nydusd-config F   mirrors from a nydusd JSON backend config\n"    \
	"  --fetch-window KiB  fetch at least this much of a blob on a cache\n" \
	"                      miss (read-ahead of neighbouring files; default\n"\
	"                      " CLI_FETCH_WINDOW_DEFAULT_STR ", 0: only the granules read)\n" \
	"  --timeout S         give up on a request after S s (and on a stalled\n" \
	"                      transfer after S s without data; default 60/10)\n" \
	"  --retries N         retries after a failed request (default 3;\n"  \
	"                      once one failed them all, one try each for\n"  \
	"                      30 s or until the registry answers)\n"      \
	CLI_MAX_RANGES_HELP

/* in lazypull mount's help too */
#define CLI_MAX_RANGES_HELP                                                    \
	"  --max-ranges N      ask for up to N short ranges of a blob in one\n" \
	"                      request (a multipart answer; default 16, 1 to\n" \
	"                      64; 1: one range per request).  A registry\n"   \
	"                      that does not answer so gets one per request\n"

#define CLI_TAG_TTL_DEFAULT 300
/* read-ahead window on a cache miss, KiB (bench/coldstart measures it) */
#define CLI_FETCH_WINDOW_DEFAULT 64
#define CLI_FETCH_WINDOW_DEFAULT_STR "64"

/* Sets o to "nothing given" (layer -1, tag TTL 5 minutes). */
void cli_remote_opts_init(struct cli_remote_opts *o);
/*
 * Handles a CLI_REMOTE_LONGOPTS option: 1 if it was one, 0 if not, -1 on
 * a bad value (message printed).  arg is optarg: the password of --user is
 * copied and then blanked in argv.
 */
int cli_remote_opt(struct cli_remote_opts *o, int c, char *arg);

/* The state directory: o->root, else $LAZYPULL_ROOT, else
 * /var/lib/lazypull. */
const char *cli_remote_root(const struct cli_remote_opts *o);
/* The cache directory (blob cache, saved models, decoded store, the
 * probes' lock): o->cache_dir, else ROOT/cache.  Free it. */
char *cli_cache_dir(const struct cli_remote_opts *o);
/* Makes the directories above path (mode 0700); 0 or -errno. */
int cli_mkdir_parents(const char *path);
/*
 * CACHE/probing.lock: `lazypull probe` holds it shared while it reads
 * a layer's TOC.  cli_probes_wait waits (at most ro->probes_wait_ms; 0:
 * not at all) until no probe does, so what they fetched is in the cache
 * for us.
 */
int cli_probing_open(const struct cli_remote_opts *ro);
void cli_probes_wait(const struct cli_remote_opts *ro);

/*
 * Opens a layer of a registry (blob digest, source src, taken) with the
 * model saved for it under the root when there is one (the snapshotter's
 * probe saves it), else by engine_open(); an eStargz-family layer's model
 * is then saved (its TOC is slow to parse; a failure to save is logged).
 */
int cli_open_toc_layer(const struct cli_remote_opts *o, const char *digest,
		       struct lp_source *src, const struct engine_opts *eo,
		       struct engine_layer **ret, struct lp_err *err);

/* An argument is a registry reference when no such file exists and it
 * parses as a reference. */
bool cli_is_remote(const char *arg);

struct cli_remote {
	struct fetch_ref ref;
	struct fetch_client *client;
	struct fetch_cache *cache;
	struct fetch_manifest *manifest; /* the image manifest */
	struct fetch_manifest *index;	 /* the index it came from, or NULL */
	const char ***annotations; /* per layer: key, value, ..., NULL */
	bool verbose;
	uint64_t fetch_window; /* bytes, see cli_remote_opts */
	uint64_t max_gap;      /* merge ranges at most this far apart into
				  one request (0: the fetcher's 128 KiB) */
	uint32_t tail;	       /* a blob of unknown size: its size and last
				  bytes in one GET (0: a HEAD) */
};

/*
 * Resolves ref to an image manifest (through an index by platform) and
 * sets up the client and the blob cache.  Manifests are kept in the cache
 * (fetch_get_image_cached), so with a warm cache a digest reference, or a
 * tag within o->tag_ttl, costs no request.  Prints a one-line error.
 */
int cli_remote_open(const char *ref, const struct cli_remote_opts *o,
		    struct cli_remote **ret);
/* The same without the manifest (r->manifest NULL): blobs by digest
 * only (cli_remote_blob with their size, or 0 for a HEAD). */
int cli_remote_connect(const char *ref, const struct cli_remote_opts *o,
		       struct cli_remote **ret);
/* Then the manifest after all, as cli_remote_open gets it (a no-op if r
 * has it).  Prints a one-line error. */
int cli_remote_resolve(struct cli_remote *r, const struct cli_remote_opts *o);
/* With -v prints "fetched: N requests, B bytes".  Accepts NULL. */
void cli_remote_close(struct cli_remote *r);
static inline void cli_remote_closep(struct cli_remote **r)
{
	cli_remote_close(*r);
}

/* Opens layer i (manifest order) as a cached, lazily fetched source. */
int cli_remote_layer(struct cli_remote *r, size_t i, struct lp_source **ret);
/* Engine hints for layer i: media type, TOC digest, annotations (valid
 * while r lives). */
void cli_remote_hints(const struct cli_remote *r, size_t i,
		      struct format_hints *ret);
/* Any blob of the repository (e.g. a RAFS data blob); size 0 = HEAD. */
int cli_remote_blob(struct cli_remote *r, const char *digest, uint64_t size,
		    struct lp_source **ret);
/* The layer marked containerd.io/snapshot/nydus-bootstrap=true, or -1. */
int cli_remote_bootstrap(const struct cli_remote *r);
/*
 * The layer o picks: --layer N, --layer-digest D, else the nydus
 * bootstrap layer if there is one, else the only layer.  -EINVAL with a
 * message when the image has several layers and none was picked.
 */
int cli_remote_pick(const struct cli_remote *r,
		    const struct cli_remote_opts *o, size_t *ret);

/*
 * All of the above for the common case: opens ref and the layer o picks.
 * *ret_hints stays valid while *ret_remote lives.
 */
int cli_open_remote(const char *ref, const struct cli_remote_opts *o,
		    struct cli_remote **ret_remote,
		    struct format_hints *ret_hints, struct lp_source **ret);

/* `lazypull manifest [OPTIONS] REF`: prints the manifest JSON. */
int cmd_manifest(int argc, char **argv);

#endif
