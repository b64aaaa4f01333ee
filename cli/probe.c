/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `lazypull probe`: can a registry layer be served lazily?  What
 * lazypull-snapshotter runs on a layer's Prepare, so the snapshotter never
 * parses a TOC (untrusted input) nor holds an HTTP client itself.
 *
 * It answers one line on stdout:
 *   format NAME    the detected format (estargz, stargz, zstd:chunked,
 *                  zran, rafs, ...); an eStargz-family TOC was loaded and
 *                  checked against --toc-digest (unless --no-toc)
 *   format none    no format lazypull reads
 *   error MESSAGE  the registry, or a TOC that fails its checks
 * and exits 0 (1 with "error").  With --warm it then keeps running,
 * stdout closed: it fetches the layer's wanted-first bytes (landmark
 * range, the files of --trace) into the blob cache the fs daemon will use,
 * which waits for it instead of fetching them twice.
 */
#define LP_MODNAME "probe"
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fs/trace.h"

static void probe_usage(FILE *f)
{
	fprintf(f,
		"Usage: lazypull probe [OPTIONS] --layer-digest D REF\n\n"
		"Tells whether layer D of image REF can be served lazily: "
		"prints\n\"format NAME\", \"format none\" or \"error "
		"MESSAGE\" on one line.\nNo manifest is fetched: the layer "
		"is read by its digest.\n\n"
		"  --toc-digest D      expected TOC digest (eStargz, "
		"zstd:chunked)\n"
		"  --resolve           after answering, fetch REF's manifest "
		"into the cache\n"
		"                      (the fs daemon that mounts REF then "
		"finds it there)\n"
		"  --tell-toc-digest   answer \"format NAME DIGEST\" with the "
		"digest of the\n"
		"                      TOC it loaded (for a caller that checks "
		"it later)\n"
		"  --no-toc            detect only: do not load the TOC\n"
		"  --warm              then fetch the layer's landmark range "
		"(and the files\n"
		"                      of --trace it holds) into the blob "
		"cache, for the\n"
		"                      fs daemon that will serve it\n"
		"  --trace FILE        an access trace (lazypull mount "
		"records them)\n"
		"  --log-level L       error, warn (default), info, debug "
		"(on stderr)\n"
		"  --tail KiB          the blob's size comes with its last KiB in\n"
		"                      one request (default 64; the TOC of an\n"
		"                      eStargz layer is there; 0: a HEAD)\n"
		"  -v, --verbose       each registry request on stderr\n"
		"  -h, --help          this help\n\n" CLI_REMOTE_HELP);
}

/* The one answer line; then stdout is /dev/null (the reader sees EOF). */
static void answer(const char *word, const char *what)
{
	int fd;

	printf("%s %s\n", word, what);
	fflush(stdout);
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
}

/*
 * Probes hold CACHE/probing.lock (CACHE: ROOT/cache by default) shared
 * while they decide (see cli_probing_open): a warming probe sends small
 * requests meanwhile, so the TOCs the pull waits for get most of the link,
 * yet the link is never idle.
 */

static bool probes_busy(void *arg)
{
	int fd = *(int *)arg;

	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
		return fd >= 0;
	flock(fd, LOCK_UN);
	return false;
}

static void warm(struct engine_layer *l, const char *trace_path, int plock)
{
	_cleanup_free_ char *arena = NULL;
	char **paths = NULL;
	uint32_t n_paths = 0;
	struct engine_warm_stats st;
	struct engine_warm_opts wo = { .busy = probes_busy, .arg = &plock };
	struct lp_err err = { 0 };
	uint64_t t0;

	if (trace_path) {
		if (trace_load(trace_path, &paths, &n_paths, &err) < 0) {
			lp_log(LP_LOG_WARN, "%s: ignoring the access trace: %s",
			       l->src->name, err.msg);
			paths = NULL;
			n_paths = 0;
		}
		arena = (char *)paths;
	}
	t0 = lp_now_ns();
	wo.trace = (const char *const *)paths;
	wo.n_trace = n_paths;
	engine_warm(l, &wo, &st);
	lp_log(LP_LOG_INFO, "%s: warmed: landmark range %llu bytes, %u chunks "
	       "(%u for files of the %u in the access trace), %llu stored "
	       "bytes in %.2f s%s",
	       l->src->name, (unsigned long long)st.range, st.chunks,
	       st.trace_chunks, n_paths, (unsigned long long)st.bytes,
	       lp_ms_since(t0) / 1e3,
	       st.failed ? " (some fetches failed)" : "");
}

/* --resolve: the manifest into the cache, where the fs daemon about to
 * mount the image looks first.  Only a head start: a failure is logged. */
static void resolve_for_daemon(struct cli_remote *rem,
			       const struct cli_remote_opts *ro)
{
	if (cli_remote_resolve(rem, ro) < 0)
		lp_log(LP_LOG_INFO, "--resolve: %s", cli_last_error);
}

#define PROBE_WARM_GAP (32u << 10)
#define PROBE_TAIL_MAX_KIB (16u << 10)

enum {
	OPT_NO_TOC = 0x300,
	OPT_WARM,
	OPT_TRACE,
	OPT_PLOG_LEVEL,
	OPT_TELL_TOC,
	OPT_RESOLVE,
	OPT_TAIL,
};

int cmd_probe(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "toc-digest", required_argument, NULL, OPT_TOC_DIGEST },
		{ "no-toc", no_argument, NULL, OPT_NO_TOC },
		{ "tell-toc-digest", no_argument, NULL, OPT_TELL_TOC },
		{ "resolve", no_argument, NULL, OPT_RESOLVE },
		{ "tail", required_argument, NULL, OPT_TAIL },
		{ "warm", no_argument, NULL, OPT_WARM },
		{ "trace", required_argument, NULL, OPT_TRACE },
		{ "log-level", required_argument, NULL, OPT_PLOG_LEVEL },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_remote_closep) struct cli_remote *rem = NULL;
	struct cli_remote_opts ro;
	struct format_hints h = { 0 };
	struct engine_opts eo = { .hints = &h };
	const struct format_ops *ops = NULL;
	struct engine_layer *l = NULL;
	struct lp_source *src = NULL;
	struct lp_err err = { 0 };
	const char *trace_path = NULL;
	bool no_toc = false, do_warm = false, warming = false, tell = false;
	bool resolve = false;
	unsigned long long tail_kib = 64;
	int c, rc, plock;

	cli_remote_opts_init(&ro);
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		int r = cli_remote_opt(&ro, c, optarg);

		if (r < 0)
			return EXIT_USAGE;
		if (r)
			continue;
		switch (c) {
		case OPT_TOC_DIGEST:
			h.toc_digest = optarg;
			break;
		case OPT_NO_TOC:
			no_toc = true;
			break;
		case OPT_TELL_TOC:
			tell = true;
			break;
		case OPT_RESOLVE:
			resolve = true;
			break;
		case OPT_TAIL: {
			char *end;

			tail_kib = strtoull(optarg, &end, 10);
			if (*end || end == optarg || optarg[0] == '-' ||
			    tail_kib > PROBE_TAIL_MAX_KIB) {
				cli_error("--tail %s: KiB, 0 to %u", optarg,
					  PROBE_TAIL_MAX_KIB);
				return EXIT_USAGE;
			}
			break;
		}
		case OPT_WARM:
			do_warm = true;
			break;
		case OPT_TRACE:
			trace_path = optarg;
			break;
		case OPT_PLOG_LEVEL:
			if (cli_log_level(optarg) < 0)
				return EXIT_USAGE;
			break;
		case 'v':
			ro.verbose = true;
			break;
		case 'h':
			probe_usage(stdout);
			return 0;
		default:
			probe_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !ro.layer_digest) {
		probe_usage(stderr);
		return EXIT_USAGE;
	}
	h.blob_digest = ro.layer_digest;

	/* errors from here on go out as the answer line too */
	if (cli_remote_connect(argv[optind], &ro, &rem) < 0) {
		answer("error", cli_last_error);
		return 1;
	}
	plock = cli_probing_open(&ro);
	if (plock >= 0)
		flock(plock, LOCK_SH);
	/* warming fetches the files of a trace: gaps between them (and
	 * read-ahead past them) cost the link more than separate requests,
	 * which go out in parallel */
	rem->max_gap = PROBE_WARM_GAP;
	rem->fetch_window = 0;
	rem->tail = (uint32_t)(tail_kib << 10);
	if (cli_remote_blob(rem, ro.layer_digest, 0, &src) < 0) {
		answer("error", cli_last_error);
		return 1;
	}
	rc = engine_detect(src, &h, &ops, &err);
	if (rc == -EPROTONOSUPPORT) {
		lp_source_free(src);
		answer("format", "none");
		return 0;
	}
	if (rc < 0) {
		lp_source_free(src);
		answer("error", err.msg);
		return 1;
	}
	if (!engine_stargz_family(ops->name) || no_toc) {
		lp_source_free(src);
		answer("format", ops->name);
		if (resolve)
			resolve_for_daemon(rem, &ro);
		return 0;
	}
	/* loads the TOC and checks it against the label (and saves the
	 * model for the fs daemon, which then need not parse it again) */
	eo.format = ops->name;
	rc = cli_open_toc_layer(&ro, ro.layer_digest, TAKE_PTR(src), &eo, &l,
				&err);
	if (rc < 0) {
		answer("error", err.msg);
		return 1;
	}
	/* marked before answering: the snapshotter may start the fs daemon
	 * right after, and it must see the mark */
	if (do_warm) {
		rc = fetch_source_warm_begin(l->src);
		warming = rc == 0;
		if (rc < 0)
			lp_debug("%s: not warming: %s", l->src->name,
				 rc == -EBUSY ? "another process does"
					      : strerror(-rc));
	}
	if (tell && l->info.toc_digest[0]) {
		char fmt[128];

		snprintf(fmt, sizeof(fmt), "%s %s", l->info.format,
			 l->info.toc_digest);
		answer("format", fmt);
	} else {
		answer("format", l->info.format);
	}
	if (plock >= 0)
		flock(plock, LOCK_UN);
	if (resolve)
		resolve_for_daemon(rem, &ro);
	if (warming)
		warm(l, trace_path, plock);
	engine_close(l);
	if (plock >= 0)
		close(plock);
	return 0;
}
