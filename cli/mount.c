/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazypull mount / umount: serve local layer blobs through FUSE.
 *
 * The chunk source maps a chunk of the served model back to the layer it
 * came from: model_merge() rebases chunk.blob onto one blob table for all
 * layers and records each blob's layer, so the layer is
 * blobs[chunk.blob].layer and the layer-local blob index is chunk.blob
 * minus the index of that layer's first blob.
 */
#define LP_MODNAME "mount"
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/cli.h"
#include "cli/mount-int.h"
#include "common/layout.h"
#include "fs/decoded.h"
#include "fs/fuse.h"
#include "fs/trace.h"
#ifdef LP_HAVE_ZRAN
#include "formats/zran/zran.h"
#endif

/* The layer of served blob b and b's index in that layer's model. */
static int map_blob(const struct mount_src *ms, uint32_t b,
		    struct engine_layer **ret, uint32_t *ret_blob,
		    struct lp_err *err)
{
	uint32_t lay;

	if (b >= ms->m->n_blobs)
		return lp_err_set(err, EINVAL, "blob %u of %u", b,
				  ms->m->n_blobs);
	lay = ms->m->blobs[b].layer;
	if (lay >= ms->n_layers)
		return lp_err_set(err, EINVAL, "blob %u names layer %u of %u",
				  b, lay, ms->n_layers);
	if (b - ms->blob_base[lay] >= ms->layers[lay]->model->n_blobs)
		return lp_err_set(err, EINVAL, "blob %u is not in layer %u",
				  b, lay);
	*ret = ms->layers[lay];
	*ret_blob = b - ms->blob_base[lay];
	return 0;
}

static int mount_src_read_chunk(void *priv, uint32_t idx, void *out,
				struct lp_err *err)
{
	struct mount_src *ms = priv;
	struct model_chunk c;
	struct engine_layer *l;
	int r;

	if (idx >= ms->m->n_chunks)
		return lp_err_set(err, EINVAL, "no chunk %u", idx);
	c = ms->m->chunks[idx];
	r = map_blob(ms, c.blob, &l, &c.blob, err);
	if (r < 0)
		return lp_err_wrap(err, "chunk %u", idx);
	/* the background prefetcher holds off while this runs */
	engine_prefetch_demand_begin(ms->pf);
	r = engine_read_chunk_rec(l, &c, out, err);
	engine_prefetch_demand_end(ms->pf);
	return r;
}

/* A read of several chunks: one fetch per blob for all of them (a
 * directory or tree read-ahead passes hundreds: one call, so the fetcher
 * plans and runs their requests together). */
struct blob_fetch {
	struct lp_source *src;
	struct lp_range *r;
	uint32_t n;
	uint64_t max_gap;
	pthread_t thread;
};

static void *blob_fetch_run(void *arg)
{
	struct blob_fetch *b = arg;

	if (b->max_gap == UINT64_MAX)
		lp_source_prefetch(b->src, b->r, b->n, NULL);
	else
		lp_source_prefetch_exact(b->src, b->r, b->n, b->max_gap, NULL);
	return NULL;
}

#define BLOB_FETCH_THREADS 8

/* The chunks idx[0..n) (sorted by blob): each blob's in one prefetch, the
 * blobs (layers) at once, on threads of their own. */
void mount_src_prefetch_gap(struct mount_src *ms, const uint32_t *idx,
			     uint32_t n, uint64_t max_gap)
{
	struct lp_range *r = lp_xmalloc((n ? n : 1) * sizeof(*r));
	struct blob_fetch bf[BLOB_FETCH_THREADS + 1];
	uint32_t i = 0, nb = 0;

	engine_prefetch_demand_begin(ms->pf);
	while (i < n) {
		uint32_t blob = ms->m->chunks[idx[i]].blob, lb, k = 0, at = i;
		struct lp_source *src = NULL;
		struct engine_layer *l;
		struct blob_fetch *b;

		for (; i < n; i++, k++) {
			const struct model_chunk *c = &ms->m->chunks[idx[i]];

			if (c->blob != blob)
				break;
			r[at + k].off = c->comp_off;
			r[at + k].len = c->comp_len;
		}
		if (map_blob(ms, blob, &l, &lb, NULL) < 0 ||
		    engine_blob_source(l, lb, &src, NULL) < 0 ||
		    !src->ops->prefetch)
			continue;
		for (uint32_t q = at; q < at + k; q++) {
			if (r[q].off >= src->size)
				r[q].len = 0;
			else if (r[q].len > src->size - r[q].off)
				r[q].len = src->size - r[q].off;
		}
		b = &bf[nb];
		*b = (struct blob_fetch){ .src = src, .r = r + at, .n = k,
					  .max_gap = max_gap };
		/* the last blob, or too many: here */
		if (i < n && nb < BLOB_FETCH_THREADS &&
		    lp_thread_create(&b->thread, NULL, blob_fetch_run, b) == 0) {
			nb++;
		} else {
			blob_fetch_run(b);
		}
	}
	for (uint32_t k = 0; k < nb; k++)
		pthread_join(bf[k].thread, NULL);
	engine_prefetch_demand_end(ms->pf);
	free(r);
}

static void src_prefetch(void *priv, const uint32_t *idx, uint32_t n)
{
	mount_src_prefetch_gap(priv, idx, n, UINT64_MAX);
}

static const struct fsrv_source_ops src_ops = {
	.read_chunk = mount_src_read_chunk,
	.prefetch = src_prefetch,
};

static void mount_src_init(struct mount_src *ms, const struct model *m,
			   struct engine_layer **layers, uint32_t n)
{
	ms->layers = layers;
	ms->n_layers = n;
	ms->m = m;
	ms->blob_base = lp_xcalloc(n, sizeof(*ms->blob_base));
	for (uint32_t l = 0; l < n; l++)
		ms->blob_base[l] = UINT32_MAX;
	for (uint32_t i = 0; i < m->n_blobs; i++) {
		uint32_t l = m->blobs[i].layer;

		if (l < n && ms->blob_base[l] == UINT32_MAX)
			ms->blob_base[l] = i;
	}
	for (uint32_t l = 0; l < n; l++)
		if (ms->blob_base[l] == UINT32_MAX)
			ms->blob_base[l] = 0; /* no chunks of it either */
}

/* ---- layers of an image in a registry --------------------------------- */

struct remote_open {
	struct cli_remote *rem;
	const size_t *which;	    /* manifest layer indices */
	struct engine_layer **out;  /* one per which[] */
	uint32_t n;
	uint32_t next;		    /* atomic: the next which[] to open */
	int failed;		    /* atomic */
	const struct cli_remote_opts *o; /* the zran index store's root */
};

/* RAFS data blobs: named by their sha256 in the bootstrap's blob table. */
static int remote_open_blob(void *arg, const char *id, struct lp_source **ret,
			    struct lp_err *err)
{
	struct cli_remote *rem = arg;
	char digest[80];
	int r;

	if (strchr(id, ':'))
		snprintf(digest, sizeof(digest), "%s", id);
	else
		snprintf(digest, sizeof(digest), "sha256:%s", id);
	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "blob id \"%s\" is not a "
				  "registry digest", id);
	r = cli_remote_blob(rem, digest, 0, ret);
	if (r < 0)
		return lp_err_set(err, r, "opening blob %s in the registry",
				  digest);
	return 0;
}

/* Plain gzip layers go through the index store shared with ls/cat
 * (cli_remote_open_layer). */
static int open_remote_one(struct remote_open *ro, uint32_t k)
{
	size_t i = ro->which[k];
	const struct fetch_desc *d = &ro->rem->manifest->layers[i];
	struct engine_opts eo = { 0 };
	struct format_hints h;
	struct lp_err err = { 0 };
	int r;

	cli_remote_hints(ro->rem, i, &h);
	eo.hints = &h;
	eo.open_blob = remote_open_blob;
	eo.open_blob_arg = ro->rem;
	r = cli_remote_open_layer(ro->rem, i, ro->o, &eo, &ro->out[k], &err);
	if (r < 0)
		cli_error("layer %zu (%s): %s", i, d->digest,
			  err.msg[0] ? err.msg : strerror(-r));
	return r;
}

static void *open_worker(void *arg)
{
	struct remote_open *ro = arg;

	for (;;) {
		uint32_t k = __atomic_fetch_add(&ro->next, 1, __ATOMIC_RELAXED);

		if (k >= ro->n ||
		    __atomic_load_n(&ro->failed, __ATOMIC_RELAXED))
			break;
		if (open_remote_one(ro, k) < 0)
			__atomic_store_n(&ro->failed, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Layers open on up to this many threads (each is mostly waiting for the
 * registry, or inflating a plain gzip layer once to index it). */
#define OPEN_THREADS 8

/*
 * Opens layers which[0..n) of the image in parallel into out[].  0, or -1
 * with every opened layer closed again (messages printed).
 */
static int open_remote_layers(struct cli_remote *rem,
			      const struct cli_remote_opts *o,
			      const size_t *which, uint32_t n,
			      struct engine_layer **out)
{
	struct remote_open ro = { .rem = rem, .which = which, .out = out,
				  .n = n, .o = o };
	pthread_t th[OPEN_THREADS];
	uint32_t nt = n < OPEN_THREADS ? n : OPEN_THREADS, started = 0;

	for (uint32_t t = 1; t < nt; t++) {
		if (pthread_create(&th[t], NULL, open_worker, &ro))
			break;
		started++;
	}
	open_worker(&ro);
	for (uint32_t t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
	if (!ro.failed)
		return 0;
	for (uint32_t k = 0; k < n; k++) {
		engine_close(out[k]);
		out[k] = NULL;
	}
	return -1;
}

static void mount_usage(FILE *f)
{
	fprintf(f,
		"Usage: lazypull mount [OPTIONS] BLOB... MOUNTPOINT\n"
		"       lazypull mount [OPTIONS] REF MOUNTPOINT\n\n"
		"Mounts an image read-only through FUSE: local layer blobs "
		"(bottom up), or\nthe layers of image REF in a registry, "
		"fetched lazily through the blob cache\n(a nydus image: its "
		"RAFS bootstrap and data blobs).  The mount shows the\nmerged "
		"tree (OCI whiteouts applied), or with --layer one layer in "
		"overlayfs\nform (whiteouts as char 0:0 devices, opaque "
		"directories with\ntrusted.overlay.opaque=y) for use as an "
		"overlay lowerdir.  File data is\nfetched, decoded and "
		"verified chunk by chunk when read.\n\n"
		"Files an image marks for prefetch (eStargz/zstd:chunked "
		"entries before the\n.prefetch.landmark, RAFS prefetch tables) "
		"are fetched in the background at\nonce, always behind "
		"on-demand reads.\n\n"
		"Runs as a daemon once the mount is up (the command returns 0 "
		"then) unless\n--foreground; SIGTERM or SIGINT, or 'lazypull "
		"umount', unmount it.\n\n"
		"  --layer N           serve only layer N (0 = the bottom "
		"one)\n"
		"  --layer-digest D    REF: serve only the layer with digest "
		"D\n"
		"  --up-to-layer-digest D\n"
		"                      REF: serve the merged tree of the "
		"layers from the\n"
		"                      bottom one up to the one with digest D "
		"(one overlay\n"
		"                      lowerdir for that part of the image)\n"
		"  --prefetch-all      after the priority files, fetch the "
		"whole image in the\n"
		"                      background\n"
		"  --no-prefetch       no background fetching at all\n"
		"  --trace-dir DIR     REF: record the files the first run "
		"opens (the first\n"
		"                      30 s) in DIR, and prefetch them on later "
		"mounts of\n"
		"                      the same image or layer (default "
		"ROOT/traces)\n"
		"  --no-trace          neither record nor use access traces\n"
		"  --wait-mountpoint   REF: open the image first, then read "
		"the mount point\n"
		"                      and the --pid-file path from standard "
		"input, a line\n"
		"                      each, and mount there (a start ahead of "
		"time; EOF:\n"
		"                      exit 0).  MOUNTPOINT is then -\n"
		"  --fuse-fd N         take over the FUSE connection of the "
		"mount at\n"
		"                      MOUNTPOINT through open descriptor N "
		"(its daemon\n"
		"                      died; the snapshotter kept the "
		"descriptor)\n"
		"  --dir-ahead KiB     on the second file opened in a directory "
		"(the first in\n"
		"                      a directory of small files), fetch up to "
		"KiB of its\n"
		"                      small files in the background (0: off;\n"
		"                      default: 4096 for a registry image with "
		"nothing to\n"
		"                      prefetch: no landmark, no access trace; "
		"else off).  Also,\n"
		"                      once files of one kind (.pyc, .so) are "
		"opened in three\n"
		"                      subdirectories of a tree (usr/lib/"
		"python3.11), that\n"
		"                      tree's small files of that kind (up to "
		"8 MiB)\n"
		"  --start-files MiB   REF: fetch the image's start files at "
		"once: the program\n"
		"                      its config runs (Entrypoint, Cmd, "
		"through PATH), the\n"
		"                      files its arguments name, a script's "
		"interpreter, the\n"
		"                      ELF loader and libraries they need, "
		"/etc/passwd and\n"
		"                      the C library's locale and time zone; "
		"for a Python\n"
		"                      program the modules it imports (its "
		"script's, -c's,\n"
		"                      -m's, read from their .pyc files as "
		"they arrive); at\n"
		"                      most MiB\n"
		"                      (0: off; default: 64 when the directory "
		"read-ahead\n"
		"                      is on by default, for a whole image)\n"
		"  --read-ahead KiB    kernel read-ahead of the mount "
		"(default 4096, 0 = the\n"
		"                      kernel's 128)\n"
		"  -f, --foreground    do not daemonize\n"
		"  -v, --verbose       each registry request on stderr (or the "
		"log file)\n"
		"  --pid-file FILE     write the serving process id to FILE\n"
		"  --log-file FILE     append log lines to FILE (otherwise "
		"stderr in the\n"
		"                      foreground, nowhere as a daemon)\n"
		"  --log-level L       error, warn (default), info, debug\n"
		"  -o OPT[,OPT...]     allow_other, debug (trace every FUSE "
		"request),\n"
		"                      no_readahead (do not decode the next "
		"chunk of a file\n"
		"                      read sequentially ahead of the reads)\n"
		"  --cache-size MiB    in-memory decoded-chunk cache (default "
		"8 with the\n"
		"                      decoded store, else 32)\n"
		"  --decoded-max BYTES keep decoded, verified chunks on disk "
		"in\n"
		"                      CACHE/decoded, at most BYTES "
		"(default 2 GiB;\n"
		"                      0 = off); warm reads are then a "
		"pread.  Local\n"
		"                      blobs use it only with --root\n"
		"  --threads N         idle worker threads kept (default 10)\n"
		CLI_LAYER_HELP
		"\nRegistry references ([REGISTRY/]REPO[:TAG|@DIGEST]):\n"
		"  --plain-http        talk http, not https, to the registry\n"
		"  --insecure          https without certificate "
		"verification\n"
		"  --platform P        os/arch[/variant] in a multi-platform "
		"image\n"
		"  --user U[:P]        registry credentials (else "
		"IMAGE_PULL_AUTH,\n"
		"                      then ~/.docker/config.json)\n"
		"  --root DIR          state: blob cache and parsed TOCs in "
		"DIR/cache,\n"
		"                      zran indexes in DIR/indexes (default\n"
		"                      $LAZYPULL_ROOT or /var/lib/lazypull)\n"
		"  --cache-dir DIR     the blob cache, parsed TOCs and decoded "
		"chunks in DIR\n"
		"                      instead of ROOT/cache\n"
		"  --cache-max BYTES   bound the blob cache (LRU eviction)\n"
		"  --refresh           resolve the tag again (else reused for "
		"5 min)\n"
		"  --hosts-dir DIR     mirrors from DIR/<registry>/hosts.toml\n"
		"  --nydusd-config F   mirrors from a nydusd JSON backend "
		"config\n"
		"  --fetch-window KiB  fetch at least this much of a blob on a "
		"cache miss\n"
		"                      (read-ahead of neighbouring files; "
		"default " CLI_FETCH_WINDOW_DEFAULT_STR ")\n"
		"  --timeout S         give up on a request after S s, on a "
		"stalled transfer\n"
		"                      after min(S, 10) s (default 60 and 10)\n"
		"  --retries N         retries after a failed request "
		"(default 3;\n"
		"                      once one failed them all, one try each "
		"for 30 s\n"
		"                      or until the registry answers)\n"
		CLI_MAX_RANGES_HELP);
}

static void umount_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull umount [-l|--lazy] MOUNTPOINT\n\n"
		   "Unmounts a lazypull FUSE mount; its daemon then exits.  "
		   "As root a busy\nmount is detached (like umount -l); "
		   "otherwise fusermount3 -u does it.\n\n"
		   "  -l, --lazy          detach even if busy\n"
		   "  --force             also for mounts that are not "
		   "lazypull's\n"
		   "  -h, --help          this help\n");
}

enum {
	OPT_MOUNT_LAYER = 0x300,
	OPT_PID_FILE,
	OPT_LOG_FILE,
	OPT_LOG_LEVEL,
	OPT_CACHE_SIZE,
	OPT_THREADS,
	OPT_FORCE,
	OPT_PREFETCH_ALL,
	OPT_NO_PREFETCH,
	OPT_TRACE_DIR,
	OPT_NO_TRACE,
	OPT_UPTO,
	OPT_FUSE_FD,
	OPT_WAIT_MP,
	OPT_DIR_AHEAD,
	OPT_START_FILES,
	OPT_READ_AHEAD,
	OPT_DECODED_MAX,
};

/* Every layer's blob is whole in the cache. */
static bool all_cached(struct engine_layer *const *layers, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct lp_source *src = layers[i]->src;

		if (!lp_source_cached(src, 0, src->size))
			return false;
	}
	return true;
}

/*
 * Idle trimming: a burst of reads leaves freed decode buffers in malloc's
 * arenas (the FUSE threads' own ones), and fetches their request buffers;
 * once reads and fetches pause (TRIM_IDLE_MS), give those pages back, so a
 * daemon that waits for days holds what it keeps, not what it once
 * decoded or fetched (background fetches, a directory read-ahead, may end
 * after the last read).
 */
#define TRIM_IDLE_MS 100

struct trimmer {
	struct fsrv *s;
	struct fetch_client *client; /* may be NULL (local blobs) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
	pthread_t thread;
};

static void *trimmer_main(void *arg)
{
	struct trimmer *t = arg;
	uint64_t last = 0, trimmed = 0, now;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		struct fsrv_stats st;
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TRIM_IDLE_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
		if (t->stop)
			break;
		fsrv_get_stats(t->s, &st);
		now = st.reads;
		if (t->client) {
			struct fetch_stats fs;

			fetch_client_stats(t->client, &fs);
			now += fs.bytes;
		}
		/* reads or fetches happened, and none since the last look */
		if (now == last && last != trimmed) {
#ifdef __GLIBC__
			malloc_trim(0);
#endif
			trimmed = last;
		}
		last = now;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void cancel_fetches(void *client)
{
	lp_log(LP_LOG_DEBUG, "the mount is ending: its requests are "
	       "cancelled");
	fetch_client_cancel(client);
}

static void trimmer_start(struct trimmer *t, struct fsrv *s,
			  struct fetch_client *client)
{
	t->s = s;
	t->client = client;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->started = lp_thread_create(&t->thread, NULL, trimmer_main, t) == 0;
}

static void trimmer_stop(struct trimmer *t)
{
	if (!t->s)
		return;
	if (t->started) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->thread, NULL);
	}
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	t->s = NULL;
}

/* What an open of a regular file sets off: set once the daemon's threads
 * may start (the access trace recorder, directory read-ahead). */
struct open_hooks {
	const struct model *m; /* for the debug log */
	struct trace *t;
	struct dirahead *da;
	struct startfiles *sf;
};

static void open_hook(void *arg, uint32_t ino)
{
	struct open_hooks *h = arg;

	if (LP_LOG_DEBUG <= lp_log_max && h->m) {
		char path[PATH_MAX];

		if (model_path(h->m, ino, path, sizeof(path)) >= 0)
			lp_debug("open %s%s", path,
				 startfiles_predicted(__atomic_load_n(
							      &h->sf,
							      __ATOMIC_ACQUIRE),
						      ino)
					 ? " (predicted)"
					 : "");
	}
	trace_note(__atomic_load_n(&h->t, __ATOMIC_ACQUIRE), ino);
	if (!startfiles_note(__atomic_load_n(&h->sf, __ATOMIC_ACQUIRE), ino))
		dirahead_note(__atomic_load_n(&h->da, __ATOMIC_ACQUIRE), ino);
}

/*
 * DIR/<hex>: the trace of a layer (--layer, --layer-digest: what the
 * snapshotter mounts) by its digest, of a merged image by its manifest's.
 * DIR is --trace-dir, else ROOT/traces.  NULL (logged) if unusable.
 */
static char *trace_file(const struct cli_remote_opts *ro, const char *dir,
			const struct cli_remote *rem, bool have_layer,
			uint32_t layer)
{
	const char *digest = rem->manifest->digest, *hex;
	_cleanup_free_ char *def = NULL;
	char *path;

	if (have_layer && layer < rem->manifest->n_layers)
		digest = rem->manifest->layers[layer].digest;
	hex = strchr(digest, ':');
	if (!hex || !hex[1])
		return NULL;
	if (!dir) {
		const char *root = cli_remote_root(ro);

		def = lp_xmalloc(strlen(root) + 8);
		sprintf(def, "%s/traces", root);
		dir = def;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		lp_log(LP_LOG_WARN, "access traces: %s: %s", dir,
		       strerror(errno));
		return NULL;
	}
	path = lp_xmalloc(strlen(dir) + strlen(hex + 1) + 2);
	sprintf(path, "%s/%s", dir, hex + 1);
	return path;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_mount_opts(const char *arg, struct fsrv_opts *fo)
{
	_cleanup_free_ char *copy = lp_xstrdup(arg);
	char *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "allow_other")) {
			fo->allow_other = true;
		} else if (!strcmp(t, "debug")) {
			fo->debug = true;
		} else if (!strcmp(t, "no_readahead")) {
			fo->no_readahead = true;
		} else if (!strcmp(t, "ro")) {
			/* always */
		} else {
			cli_error("-o %s: unknown mount option (allow_other, "
				  "debug, no_readahead)", t);
			return -EINVAL;
		}
	}
	return 0;
}

/* Makes path absolute (the daemon changes to /). */
static char *abs_path(const char *path)
{
	char cwd[PATH_MAX];
	char *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return lp_xstrdup(path);
	out = lp_xmalloc(strlen(cwd) + strlen(path) + 2);
	sprintf(out, "%s/%s", cwd, path);
	return out;
}

static int write_pid_file(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		int r = errno ? -errno : -EIO;

		close(fd);
		return r;
	}
	return close(fd) < 0 ? -errno : 0;
}

/*
 * Forks; the parent waits until the child reports that it serves (one
 * byte on the pipe) and exits 0, or 1 if the child died first.  Returns
 * in the child only.
 */
static int daemonize(int *ret_ready_fd)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return r;
	}
	if (pid > 0) {
		ssize_t n;
		int st;

		close(pfd[1]);
		do
			n = read(pfd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1)
			_exit(0);
		/* the child said why on stderr */
		waitpid(pid, &st, 0);
		_exit(1);
	}
	close(pfd[0]);
	if (setsid() < 0)
		lp_log(LP_LOG_WARN, "setsid: %s", strerror(errno));
	*ret_ready_fd = pfd[1];
	return 0;
}

/* Points stdin/stdout at /dev/null and stderr at the log (or /dev/null). */
static void detach_stdio(int log_fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (log_fd < 0)
			dup2(null, STDERR_FILENO);
		close(null);
	}
	if (log_fd >= 0)
		dup2(log_fd, STDERR_FILENO);
}

/* Opens the BLOB arguments (local files), bottom to top. */
static int open_local_layers(char **args, uint32_t n, bool have_layer,
			     uint32_t layer, struct cli_layer_opts *lo,
			     struct engine_layer **layers, uint32_t *ret_n)
{
	uint32_t n_open = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (have_layer && i != layer)
			continue;
		if (cli_open(args[i], lo, &layers[n_open]) < 0) {
			for (uint32_t k = 0; k < n_open; k++)
				engine_close(layers[k]);
			return -1;
		}
		n_open++;
	}
	*ret_n = n_open;
	return 0;
}

/*
 * The image's config: the command it runs, for its start files.  Read
 * before the layers (one small request, kept in the cache), while the
 * probes still parse their TOCs, so a mount whose image names none makes
 * no request once it serves.
 */
static void open_config(const char *ref, struct cli_remote *rem,
			struct fetch_image_config **config)
{
	struct lp_err err = { 0 };

	if (fetch_get_config_cached(rem->client, rem->cache, &rem->ref,
				    rem->manifest, config, &err) < 0) {
		lp_log(LP_LOG_WARN, "%s: no start files: %s", ref, err.msg);
		lp_err_clear(&err);
	}
}

/*
 * Opens the layers of image ref: all of them (merged view), layer
 * *layer alone (have_layer), or for a nydus image its RAFS bootstrap,
 * whose data blobs open from the registry when first read.  config: the
 * image config is read into it first, NULL: not.
 */
static int open_image(const char *ref, struct cli_layer_opts *lo,
		      const char *upto, bool *have_layer, uint32_t *layer,
		      struct engine_layer ***ret_layers, uint32_t *ret_n,
		      struct cli_remote **ret_rem, uint64_t *t_image,
		      struct fetch_image_config **config)
{
	_cleanup_(cli_remote_closep) struct cli_remote *rem = NULL;
	_cleanup_free_ size_t *which = NULL;
	struct engine_layer **layers;
	const struct fetch_manifest *m;
	uint32_t n = 0;
	int boot;

	if (cli_remote_open(ref, &lo->ro, &rem) < 0)
		return -1;
	*t_image = lp_now_ns();
	m = rem->manifest;
	if (!m->n_layers) {
		cli_error("%s: the image has no layers", ref);
		return -1;
	}
	if (lo->ro.layer_digest) {
		size_t i;

		for (i = 0; i < m->n_layers; i++)
			if (!strcmp(m->layers[i].digest, lo->ro.layer_digest))
				break;
		if (i == m->n_layers) {
			cli_error("--layer-digest %s: not a layer of %s",
				  lo->ro.layer_digest, ref);
			return -1;
		}
		*have_layer = true;
		*layer = (uint32_t)i;
	}
	if (upto) { /* layers 0..i merged: *layer = i, *have_layer false */
		size_t i;

		for (i = 0; i < m->n_layers; i++)
			if (!strcmp(m->layers[i].digest, upto))
				break;
		if (i == m->n_layers) {
			cli_error("--up-to-layer-digest %s: not a layer of %s",
				  upto, ref);
			return -1;
		}
		*layer = (uint32_t)i;
	}
	which = lp_xcalloc(m->n_layers, sizeof(*which));
	boot = cli_remote_bootstrap(rem);
	if (boot >= 0) {
		if (*have_layer) {
			cli_error("%s is a nydus (RAFS) image: its "
				  "bootstrap is one merged tree, --layer does "
				  "not apply", ref);
			return -1;
		}
		which[n++] = (size_t)boot;
	} else if (*have_layer) {
		if (*layer >= m->n_layers) {
			cli_error("--layer %u: %s has %zu layer%s (0 to %zu)",
				  *layer, ref, m->n_layers,
				  m->n_layers == 1 ? "" : "s",
				  m->n_layers - 1);
			return -1;
		}
		which[n++] = *layer;
	} else {
		size_t top = upto ? *layer + 1 : m->n_layers;

		for (size_t i = 0; i < top; i++)
			which[n++] = i;
	}
	if (config && !*have_layer)
		open_config(ref, rem, config);
	layers = lp_xcalloc(n, sizeof(*layers));
	if (open_remote_layers(rem, &lo->ro, which, n, layers) < 0) {
		free(layers);
		return -1;
	}
	*ret_layers = layers;
	*ret_n = n;
	*ret_rem = TAKE_PTR(rem);
	return 0;
}

/* --prefetch-all in the foreground on a terminal: how far it got */
static bool prefetch_progress(void *arg, struct cli_progress *p)
{
	struct engine_prefetch_stats st;

	engine_prefetch_get_stats(arg, &st);
	cli_progress_update(p, st.bytes_stored, 0);
	cli_progress_items(p, st.chunks_done + st.chunks_failed,
			   st.chunks_planned, "chunks");
	return !st.finished;
}

/*
 * --wait-mountpoint: reads the mount point and the pid file path (a line
 * each) from stdin.  1 with both (*pid_file replaced), 0 at EOF before
 * the first line, -1 (an error printed) for anything else.
 */
static int await_mountpoint(char **mp, char **pid_file)
{
	char *a = NULL, *b = NULL;
	size_t ca = 0, cb = 0;
	struct stat st;

	if (getline(&a, &ca, stdin) <= 0) {
		free(a);
		return 0;
	}
	if (getline(&b, &cb, stdin) <= 0) {
		cli_error("--wait-mountpoint: no pid file line after the mount "
			  "point");
		free(a);
		free(b);
		return -1;
	}
	a[strcspn(a, "\n")] = '\0';
	b[strcspn(b, "\n")] = '\0';
	if (a[0] != '/' || b[0] != '/' || stat(a, &st) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		cli_error("--wait-mountpoint: mount point %s, pid file %s: "
			  "an absolute directory and an absolute path, please",
			  a, b);
		free(a);
		free(b);
		return -1;
	}
	*mp = a;
	free(*pid_file);
	*pid_file = b;
	return 1;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "layer", required_argument, NULL, OPT_MOUNT_LAYER },
		{ "foreground", no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "pid-file", required_argument, NULL, OPT_PID_FILE },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "prefetch-all", no_argument, NULL, OPT_PREFETCH_ALL },
		{ "read-ahead", required_argument, NULL, OPT_READ_AHEAD },
		{ "decoded-max", required_argument, NULL, OPT_DECODED_MAX },
		{ "no-prefetch", no_argument, NULL, OPT_NO_PREFETCH },
		{ "plain-http", no_argument, NULL, OPT_PLAIN_HTTP },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "root", required_argument, NULL, OPT_ROOT },
		{ "user", required_argument, NULL, OPT_USER },
		{ "layer-digest", required_argument, NULL, OPT_LAYER_DIGEST },
		{ "cache-max", required_argument, NULL, OPT_CACHE_MAX },
		{ "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
		{ "refresh", no_argument, NULL, OPT_REFRESH },
		{ "hosts-dir", required_argument, NULL, OPT_HOSTS_DIR },
		{ "nydusd-config", required_argument, NULL, OPT_NYDUSD_CONFIG },
		{ "fetch-window", required_argument, NULL, OPT_FETCH_WINDOW },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "retries", required_argument, NULL, OPT_RETRIES },
		{ "max-ranges", required_argument, NULL, OPT_MAX_RANGES },
		{ "trace-dir", required_argument, NULL, OPT_TRACE_DIR },
		{ "no-trace", no_argument, NULL, OPT_NO_TRACE },
		{ "up-to-layer-digest", required_argument, NULL, OPT_UPTO },
		{ "fuse-fd", required_argument, NULL, OPT_FUSE_FD },
		{ "wait-mountpoint", no_argument, NULL, OPT_WAIT_MP },
		{ "dir-ahead", required_argument, NULL, OPT_DIR_AHEAD },
		{ "start-files", required_argument, NULL, OPT_START_FILES },
		CLI_LAYER_LONGOPTS,
		{ 0 },
	};
	struct cli_layer_opts lo;
	struct fsrv_opts fo = { 0 };
	struct engine_prefetch_opts po = { 0 };
	struct lp_err err = { 0 };
	struct mount_src ms = { 0 };
	struct cli_progress_poll *meter = NULL;
	_cleanup_free_ char *pid_file = NULL, *blob_dir = NULL, *root = NULL;
	_cleanup_free_ char *decoded_dir = NULL;
	uint64_t decoded_max = DSTORE_DEFAULT_MAX;
	struct engine_layer **layers = NULL;
	struct cli_remote *rem = NULL;
	_cleanup_close_ int log_fd = -1;
	struct model *served = NULL;
	struct fsrv *s = NULL;
	const char *mountpoint, *log_file = NULL;
	char name[512];
	bool foreground = false, have_layer = false, remote = false;
	bool no_prefetch = false, no_trace = false, nothing_planned;
	const char *trace_dir = NULL;
	_cleanup_free_ char *trace_path = NULL, *trace_arena = NULL;
	struct open_hooks th = { 0 };
	struct dirahead da = { 0 };
	struct startfiles sf = { 0 };
	_cleanup_(fetch_image_config_freep) struct fetch_image_config *config =
		NULL;
	struct trimmer trim = { 0 };
	int64_t dir_ahead = DIR_AHEAD_AUTO, start_files = START_FILES_AUTO;
	uint64_t t_open = 0, t_image = 0, t_opened = 0, t_up;
	bool wait_mp = false;
	_cleanup_free_ char *wait_line = NULL;
	const char *upto = NULL;
	int fuse_fd = -1;
	uint32_t layer = 0, n_blobs, n_open = 0, v;
	int ready_fd = -1, c, h, r, ret = 1;
	struct stat st;

#ifdef __GLIBC__
	/*
	 * The daemon runs for days: decoded chunks (up to MiBs each) come and
	 * go on many threads.  A fixed mmap threshold keeps glibc from raising
	 * it after the first free of such a buffer, and fewer arenas keep the
	 * heaps from holding freed chunks per thread, so RSS follows the
	 * bounded caches instead of the peak.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
	mallopt(M_ARENA_MAX, 2);
#endif
	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "fhvo:", longopts, NULL)) != -1) {
		h = cli_layer_opt(&lo, c, optarg);
		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case OPT_MOUNT_LAYER:
			if (parse_u32(optarg, UINT32_MAX - 1, &layer) < 0) {
				cli_error("--layer %s: not a layer number",
					  optarg);
				return EXIT_USAGE;
			}
			have_layer = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'v':
			lo.ro.verbose = true;
			break;
		case OPT_PID_FILE:
			free(pid_file);
			pid_file = abs_path(optarg);
			break;
		case OPT_LOG_FILE:
			log_file = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (cli_log_level(optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_CACHE_SIZE:
			if (parse_u32(optarg, 1u << 20, &v) < 0 || !v) {
				cli_error("--cache-size %s: MiB, 1 to 1048576",
					  optarg);
				return EXIT_USAGE;
			}
			fo.cache_bytes = (uint64_t)v << 20;
			break;
		case OPT_THREADS:
			if (parse_u32(optarg, 1024, &v) < 0 || !v) {
				cli_error("--threads %s: 1 to 1024", optarg);
				return EXIT_USAGE;
			}
			fo.max_idle_threads = v;
			break;
		case OPT_PREFETCH_ALL:
			po.all = true;
			break;
		case OPT_NO_PREFETCH:
			no_prefetch = true;
			break;
		case OPT_TRACE_DIR:
			trace_dir = optarg;
			break;
		case OPT_NO_TRACE:
			no_trace = true;
			break;
		case OPT_WAIT_MP:
			wait_mp = true;
			break;
		case OPT_FUSE_FD:
			if (parse_u32(optarg, 65535, &v) < 0 || v < 3) {
				cli_error("--fuse-fd %s: a descriptor number, 3 "
					  "or more", optarg);
				return EXIT_USAGE;
			}
			fuse_fd = (int)v;
			break;
		case OPT_UPTO:
			if (fetch_digest_check(optarg, strlen(optarg)) < 0) {
				cli_error("--up-to-layer-digest %s: not a "
					  "sha256:<64 hex> digest", optarg);
				return EXIT_USAGE;
			}
			upto = optarg;
			break;
		case OPT_DIR_AHEAD:
			if (parse_u32(optarg, 1u << 20, &v) < 0) {
				cli_error("--dir-ahead %s: KiB, 0 to 1048576",
					  optarg);
				return EXIT_USAGE;
			}
			dir_ahead = (int64_t)v << 10;
			break;
		case OPT_START_FILES:
			if (parse_u32(optarg, 1u << 16, &v) < 0) {
				cli_error("--start-files %s: MiB, 0 to 65536",
					  optarg);
				return EXIT_USAGE;
			}
			start_files = (int64_t)v << 20;
			break;
		case OPT_DECODED_MAX: {
			char *end;

			errno = 0;
			decoded_max = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end ||
			    optarg[0] == '-') {
				cli_error("--decoded-max %s: not a number of "
					  "bytes", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case OPT_READ_AHEAD:
			if (parse_u32(optarg, 1u << 20, &v) < 0) {
				cli_error("--read-ahead %s: KiB, 0 to 1048576",
					  optarg);
				return EXIT_USAGE;
			}
			fo.read_ahead_kb = v ? v : FSRV_READ_AHEAD_KERNEL;
			break;
		case 'o':
			if (parse_mount_opts(optarg, &fo) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			mount_usage(stdout);
			return 0;
		default:
			mount_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 2) {
		mount_usage(stderr);
		return EXIT_USAGE;
	}
	n_blobs = (uint32_t)(argc - optind - 1);
	mountpoint = argv[argc - 1];
	for (uint32_t i = 0; i < n_blobs; i++) {
		if (!cli_is_remote(argv[optind + i]))
			continue;
		if (n_blobs > 1) {
			cli_error("%s: an image reference is mounted alone, "
				  "not with other blobs", argv[optind + i]);
			return EXIT_USAGE;
		}
		remote = true;
	}
	if (!remote && have_layer && layer >= n_blobs) {
		cli_error("--layer %u: there %s only %u blob%s (0 to %u)",
			  layer, n_blobs == 1 ? "is" : "are", n_blobs,
			  n_blobs == 1 ? "" : "s", n_blobs - 1);
		return EXIT_USAGE;
	}
	if (!remote && (lo.ro.layer_digest || upto)) {
		cli_error("--%slayer-digest applies to an image reference",
			  upto ? "up-to-" : "");
		return EXIT_USAGE;
	}
	if (upto && (have_layer || lo.ro.layer_digest)) {
		cli_error("--up-to-layer-digest and --layer/--layer-digest "
			  "exclude each other");
		return EXIT_USAGE;
	}
	/* data blobs open lazily, after the daemon moved to / */
	if (lo.blob_dir) {
		blob_dir = abs_path(lo.blob_dir);
		lo.blob_dir = blob_dir;
	}
	if (lo.ro.root) {
		root = abs_path(lo.ro.root);
		lo.ro.root = root;
	}
	if (lo.toc_digest && n_blobs > 1 && !have_layer) {
		cli_error("--toc-digest applies to one blob; use --layer");
		return EXIT_USAGE;
	}
	if (wait_mp && (!remote || fuse_fd >= 0 || strcmp(mountpoint, "-"))) {
		cli_error("--wait-mountpoint: an image reference, no --fuse-fd, "
			  "and - for MOUNTPOINT");
		return EXIT_USAGE;
	}
	/* a taken-over mount has no server until we serve it: do not touch
	 * it before (a stat would wait for the answer we are to give) */
	if (fuse_fd < 0 && !wait_mp && stat(mountpoint, &st) < 0) {
		cli_error("%s: %s%s", mountpoint, strerror(errno),
			  errno == ENOTCONN ? " (the FUSE daemon of a mount "
					      "there died: lazypull umount it)"
					    : "");
		return 1;
	}
	if (fuse_fd < 0 && !wait_mp && !S_ISDIR(st.st_mode)) {
		cli_error("%s: not a directory", mountpoint);
		return 1;
	}
	if (log_file) {
		log_fd = open(log_file,
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			cli_error("--log-file %s: %s", log_file,
				  strerror(errno));
			return 1;
		}
	}

	t_up = t_open = t_image = lp_now_ns();
	if (wait_mp) {
		/* started with the pull's probes: let them read the TOCs
		 * (they take the lock as they start), then find them in the
		 * cache rather than fetching each twice; a plain gzip layer
		 * starts streaming at once */
		struct timespec head = { 0, 50 * 1000000L };

		nanosleep(&head, NULL);
		lo.ro.probes_wait_ms = 5000;
	}
	if (remote) {
		if (open_image(argv[optind], &lo, upto, &have_layer, &layer,
			       &layers, &n_open, &rem, &t_image,
			       start_files != 0 ? &config : NULL) < 0)
			goto out;
	} else {
		layers = lp_xcalloc(n_blobs, sizeof(*layers));
		if (open_local_layers(argv + optind, n_blobs, have_layer,
				      layer, &lo, layers, &n_open) < 0)
			goto out;
	}
	t_opened = lp_now_ns();
	if (have_layer) {
		r = model_to_overlay(layers[0]->model, &served, &err);
		if (remote)
			snprintf(name, sizeof(name), "%s layer %u",
				 argv[optind], layer);
		else
			snprintf(name, sizeof(name), "%s",
				 argv[optind + layer]);
	} else {
		_cleanup_free_ struct model **models =
			lp_xcalloc(n_open, sizeof(*models));

		for (uint32_t i = 0; i < n_open; i++)
			models[i] = layers[i]->model;
		r = model_merge(models, n_open, &served, &err);
		if (upto)
			snprintf(name, sizeof(name), "%s layers 0-%u",
				 argv[optind], layer);
		else if (n_open == 1 || remote)
			snprintf(name, sizeof(name), "%s", argv[optind]);
		else
			snprintf(name, sizeof(name), "%s (+%u layers)",
				 argv[argc - 2], n_open - 1);
	}
	if (r < 0) {
		cli_error("%s: %s", have_layer ? "overlay form" : "merge",
			  err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	if (wait_mp) {
		r = await_mountpoint(&wait_line, &pid_file);
		if (r <= 0) {
			if (r == 0)
				lp_log(LP_LOG_INFO, "%s: no mount point came: "
				       "not needed", name);
			ret = r == 0 ? 0 : 1;
			goto out;
		}
		mountpoint = wait_line;
		lp_log(LP_LOG_INFO, "%s: opened ahead in %.0f ms; mounting on "
		       "%s", name, lp_ms_since(t_open), mountpoint);
		t_up = lp_now_ns(); /* "up in" counts from here */
	}
	mount_src_init(&ms, served, layers, n_open);
#ifdef __GLIBC__
	/* the TOCs' parse trees are gone: give that memory back (a daemon
	 * runs for days; its RSS should be what it serves) */
	malloc_trim(0);
#endif
	fo.name = name;
	/* decoded chunks next to the blob cache (rm -rf of the cache clears
	 * both); local blobs only with an explicit --root or --cache-dir */
	if (decoded_max && (remote || lo.ro.root || lo.ro.cache_dir)) {
		_cleanup_free_ char *cache = cli_cache_dir(&lo.ro);
		int mr;

		decoded_dir = lp_layout_dir(cache, LP_FILE_DECODED_DATA);
		/* the cache directory and those above it; the store makes
		 * decoded/ */
		mr = cli_mkdir_parents(decoded_dir);
		if (mr < 0)
			lp_debug("%s: %s", cache, strerror(-mr));
		fo.decoded_dir = decoded_dir;
		fo.decoded_max = decoded_max;
	}
	if (remote && !no_trace)
		trace_path = trace_file(&lo.ro, trace_dir, rem,
					have_layer || upto, layer);
	if (trace_path || dir_ahead != 0) {
		fo.on_open = open_hook;
		fo.on_open_arg = &th;
		th.m = served;
	}
	if (rem) {
		/* reads and prefetches waiting on a slow registry give up
		 * when the mount is to end, not after their tries */
		fo.on_exit = cancel_fetches;
		fo.on_exit_arg = rem->client;
	}
	r = fsrv_new(served, &src_ops, &ms, &fo, &s, &err);
	if (r == 0)
		r = fuse_fd >= 0 ? fsrv_takeover(s, mountpoint, fuse_fd, &err)
				 : fsrv_mount(s, mountpoint, &err);
	if (r < 0) {
		cli_error("mount %s: %s", mountpoint,
			  err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}

	if (!foreground) {
		r = daemonize(&ready_fd);
		if (r < 0) {
			cli_error("fork: %s", strerror(-r));
			goto out;
		}
	}
	/* from here on the mount is up: errors must unmount (fsrv_free) */
	if (pid_file) {
		r = write_pid_file(pid_file);
		if (r < 0) {
			cli_error("--pid-file %s: %s", pid_file, strerror(-r));
			free(TAKE_PTR(pid_file));
			goto out;
		}
	}
	if (!foreground) {
		if (chdir("/") < 0)
			lp_log(LP_LOG_WARN, "chdir /: %s", strerror(errno));
		detach_stdio(log_fd);
		if (write(ready_fd, "", 1) != 1)
			lp_log(LP_LOG_WARN, "telling the parent: %s",
			       strerror(errno));
		close(ready_fd);
		ready_fd = -1;
	} else if (log_fd >= 0) {
		dup2(log_fd, STDERR_FILENO);
	}
	lp_log(LP_LOG_INFO, "serving %s on %s: %u inodes, %u chunks%s; "
	       "up in %.0f ms (image %.0f ms, layers %.0f ms)", name,
	       mountpoint, served->n_inodes - 1, served->n_chunks,
	       have_layer ? " (overlay form)" : "", lp_ms_since(t_up),
	       (double)(t_image - t_open) / 1e6,
	       (double)(t_opened - t_image) / 1e6);

	/* threads start only now: the daemon forked with one thread */
	if (trace_path) {
		char **paths = NULL;
		uint32_t n_paths = 0;
		struct trace *t = NULL;

		r = trace_load(trace_path, &paths, &n_paths, &err);
		if (r == 0 && n_paths) {
			lp_log(LP_LOG_INFO, "%s: access trace %s: prefetching "
			       "%u files an earlier run opened first", name,
			       trace_path, n_paths);
			po.trace = (const char *const *)paths;
			po.n_trace = n_paths;
		} else if (r < 0 && r != -ENOENT) {
			lp_log(LP_LOG_WARN, "%s: ignoring the access trace: %s",
			       name, err.msg);
			lp_err_clear(&err);
		}
		trace_arena = (char *)paths;
		if (trace_new(served, trace_path, 0, &t, &err) < 0) {
			lp_log(LP_LOG_WARN, "%s: no access trace: %s", name,
			       err.msg);
			lp_err_clear(&err);
		}
		__atomic_store_n(&th.t, t, __ATOMIC_RELEASE);
	}
	if (!no_prefetch) {
		po.name = name;
		r = engine_prefetch_start(layers, n_open, &po, &ms.pf, &err);
		if (r < 0)
			lp_log(LP_LOG_WARN, "%s: no prefetch: %s", name,
			       err.msg);
		else if (ms.pf)
			lp_log(LP_LOG_INFO, "%s: prefetching %s", name,
			       po.all ? "the priority files, then everything"
				      : "the priority files");
	}
	/* auto: for a remote image with nothing to prefetch (no landmark, no
	 * access trace), where every first read waits for the link (not
	 * when every blob is in the cache already: a zran layer streamed for
	 * its index) */
	nothing_planned = remote && !ms.pf && !all_cached(layers, n_open);
	if (dir_ahead == DIR_AHEAD_AUTO)
		dir_ahead = nothing_planned ? (int64_t)DIRAHEAD_DEFAULT_KIB << 10
					    : 0;
	/* the same auto rule, for a whole image's tree (a layer alone may
	 * hold the program but not its libraries) */
	if (start_files == START_FILES_AUTO)
		start_files = nothing_planned && !have_layer
				      ? (int64_t)START_FILES_DEFAULT_MIB << 20
				      : 0;
	if (start_files > 0 && config && !config->argc) {
		lp_log(LP_LOG_INFO, "%s: no start files: the image config "
		       "names no entrypoint or command", name);
		start_files = 0;
	}
	if (start_files > 0 && config)
		sf.predicted = lp_xcalloc(served->n_inodes / 8 + 1, 1);
	if (dir_ahead > 0) {
		da.predicted = sf.predicted;
		dirahead_start(&da, &ms, (uint64_t)dir_ahead);
		__atomic_store_n(&th.da, &da, __ATOMIC_RELEASE);
		lp_log(LP_LOG_INFO, "%s: directory read-ahead: up to %lld KiB "
		       "of a directory's small files on its second open", name,
		       (long long)(dir_ahead >> 10));
	}
	if (sf.predicted) {
		startfiles_start(&sf, &ms, s, config, dir_ahead > 0 ? &da : NULL,
				 name, (uint64_t)start_files);
		__atomic_store_n(&th.sf, &sf, __ATOMIC_RELEASE);
	}
	if (ms.pf && po.all && foreground) {
		char what[600];

		snprintf(what, sizeof(what), "prefetching %s", name);
		meter = cli_progress_poll_start(what, prefetch_progress, ms.pf);
	}

	trimmer_start(&trim, s, rem ? rem->client : NULL);
	r = fsrv_run(s, FSRV_RUN_SIGNALS);
	trimmer_stop(&trim);
	lp_log(LP_LOG_INFO, "%s: the FUSE session ended", mountpoint);
	/* unmount first: the prefetcher may take a moment to stop */
	fsrv_unmount(s);
	if (r < 0) {
		lp_log(LP_LOG_ERROR, "%s: serving failed: %s", mountpoint,
		       strerror(-r));
	} else {
		struct fsrv_stats fst;
		struct engine_prefetch_stats pst;

		fsrv_get_stats(s, &fst);
		engine_prefetch_get_stats(ms.pf, &pst);
		lp_log(LP_LOG_INFO,
		       "%s: unmounting: %llu reads (%llu bytes, %llu failed), "
		       "chunks %llu decoded (%llu read ahead), %llu cache "
		       "hits; prefetched %llu of %llu chunks",
		       mountpoint, (unsigned long long)fst.reads,
		       (unsigned long long)fst.read_bytes,
		       (unsigned long long)fst.read_errors,
		       (unsigned long long)fst.chunk_misses,
		       (unsigned long long)fst.readahead,
		       (unsigned long long)fst.chunk_hits,
		       (unsigned long long)pst.chunks_done,
		       (unsigned long long)pst.chunks_planned);
		if (fo.decoded_dir)
			lp_log(LP_LOG_INFO, "%s: decoded store: %llu reads "
			       "served, %llu chunks added, %llu bad, %llu "
			       "bytes", mountpoint,
			       (unsigned long long)fst.store_hits,
			       (unsigned long long)fst.store_puts,
			       (unsigned long long)fst.store_bad,
			       (unsigned long long)fst.store_bytes);
		if (rem) {
			struct fetch_stats fs;

			fetch_client_stats(rem->client, &fs);
			lp_log(LP_LOG_INFO, "%s: fetched: %llu requests, %llu "
			       "bytes, %llu retries", mountpoint,
			       (unsigned long long)fs.requests,
			       (unsigned long long)fs.bytes,
			       (unsigned long long)fs.retries);
		}
		ret = 0;
	}
out:
	cli_progress_poll_stop(meter);
	engine_prefetch_stop(ms.pf);
	fsrv_free(s); /* unmounts */
	trace_free(th.t); /* after the last open */
	startfiles_release(&sf); /* before the read-ahead it hands opens to */
	dirahead_stop(&da);
	if (pid_file)
		unlink(pid_file);
	free(ms.blob_base);
	model_free(served);
	for (uint32_t i = 0; i < n_open; i++)
		engine_close(layers[i]);
	free(layers);
	cli_remote_close(rem);
	if (ready_fd >= 0)
		close(ready_fd);
	if (!ret)
		lp_log(LP_LOG_INFO, "%s: done", mountpoint);
	return ret;
}

/* ---- umount ------------------------------------------------------------ */

/* Undoes the octal escapes of /proc/self/mountinfo (\040 = space). */
static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Finds the topmost mount at path: 1 and its fs type in ret_type, 0 if
 * nothing is mounted there, -errno.
 */
static int find_mount(const char *path, char *ret_type, size_t type_size)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *mp = NULL, *type = NULL, *t;
		int field = 0;
		bool after_sep = false;

		for (t = strtok_r(line, " \n", &save); t;
		     t = strtok_r(NULL, " \n", &save), field++) {
			if (field == 4)
				mp = t;
			else if (after_sep) {
				type = t;
				break;
			} else if (field > 5 && !strcmp(t, "-"))
				after_sep = true;
		}
		if (!mp || !type)
			continue;
		unescape_mountinfo(mp);
		if (!strcmp(mp, path)) {
			snprintf(ret_type, type_size, "%s", type);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

static int run_fusermount(const char *mp, bool lazy)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", "--",
			       mp, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", "--", mp,
			       (char *)NULL);
		fprintf(stderr, "lazypull: fusermount3: %s\n",
			strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int cmd_umount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "lazy", no_argument, NULL, 'l' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char path[PATH_MAX], type[256];
	bool lazy = false, force = false;
	const char *arg;
	int c, r;

	while ((c = getopt_long(argc, argv, "lh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			lazy = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'h':
			umount_usage(stdout);
			return 0;
		default:
			umount_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		umount_usage(stderr);
		return EXIT_USAGE;
	}
	arg = argv[optind];
	/* a dead daemon's mount fails stat with ENOTCONN: use the path */
	if (!realpath(arg, path)) {
		_cleanup_free_ char *a = abs_path(arg);

		snprintf(path, sizeof(path), "%s", a);
	}
	r = find_mount(path, type, sizeof(type));
	if (r < 0) {
		cli_error("/proc/self/mountinfo: %s", strerror(-r));
		return 1;
	}
	if (r == 0) {
		cli_error("%s: not mounted", arg);
		return 1;
	}
	if (strcmp(type, "fuse.lazypull") && !force) {
		cli_error("%s: a %s mount, not lazypull's (--force to unmount "
			  "anyway)", arg, type);
		return 1;
	}
	if (geteuid() != 0)
		return run_fusermount(path, lazy) < 0 ? 1 : 0;
	if (umount2(path, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (errno == EBUSY && !lazy) {
		fprintf(stderr, "lazypull: %s: busy, detaching it (it goes "
			"away when no longer used)\n", arg);
		if (umount2(path, MNT_DETACH) == 0)
			return 0;
	}
	cli_error("umount %s: %s", arg, strerror(errno));
	return 1;
}
