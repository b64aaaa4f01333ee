/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fetch-tool: drives the fetcher API from the integration tests
 * (tests/fetcher/run.py).  Not installed.
 *
 *   fetch-tool [OPTIONS] manifest REF            summary of the manifest
 *   fetch-tool [OPTIONS] image REF               resolved through an index
 *                        (manifests cached with --cache, --tag-ttl S)
 *   fetch-tool [OPTIONS] head REF DIGEST         blob size
 *   fetch-tool [OPTIONS] tail REF DIGEST LEN     the last LEN bytes (and
 *                        "tail: size=N got=M" on stderr)
 *   fetch-tool [OPTIONS] read REF DIGEST OFF:LEN...   direct range reads
 *                                    (--pause-ms N between them)
 *   fetch-tool [OPTIONS] cat REF DIGEST OFF:LEN...    through the cache
 *                        (--tail N: the size from a GET of the last N
 *                        bytes, kept, instead of a HEAD)
 *   fetch-tool [OPTIONS] stream REF DIGEST       whole blob, verified
 *   fetch-tool [OPTIONS] fill REF DIGEST         whole blob into the cache
 *   fetch-tool [OPTIONS] stress REF DIGEST THREADS READS
 *                        threads reading random ranges through the cache
 *                        and directly, compared with the streamed blob
 *   fetch-tool [OPTIONS] many REF DIGEST OFF:LEN...   fetch_blob_read_many
 *   fetch-tool [OPTIONS] prefetch REF DIGEST OFF:LEN...  through the cache:
 *                        one fetch_source_prefetch, then the bytes
 *   fetch-tool [OPTIONS] session REF DIGEST   one client, commands on stdin,
 *                        one answer line each on stdout:
 *                          read OFF:LEN...  -> "ok SHA256HEX requests=N"
 *                          manifest         -> "ok DIGEST requests=N"
 *                          (N: requests this command made), or
 *                          "error MSG (errno N) requests=N"
 *
 * Mirrors: --hosts-dir DIR (containerd certs.d), --nydusd-config FILE,
 * --mirror-failure-limit N, --mirror-health-s S; --max-concurrent N;
 * --max-ranges N; --repeat N (many: the same reads N times, one client).
 *
 * Bytes go to stdout; one "stats: requests=N bytes=B retries=R" line and
 * any error ("error: MSG (errno N)") go to stderr.  Exit 0 or 1.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher.h"

static void on_trace(const struct fetch_trace *t, void *data)
{
	(void)data;
	fprintf(stderr, "trace: %s %s", t->method, t->url);
	if (t->has_range)
		fprintf(stderr, " range=%llu+%llu",
			(unsigned long long)t->range_off,
			(unsigned long long)t->range_len);
	if (t->ranges > 1)
		fprintf(stderr, " ranges=%u", t->ranges);
	fprintf(stderr, " status=%ld bytes=%llu attempt=%u http=%d conns=%u%s%s\n",
		t->status, (unsigned long long)t->bytes, t->attempt,
		t->http_version, t->new_connections, t->error ? " error=" : "",
		t->error ? t->error : "");
}

static void put_desc(const char *what, const struct fetch_desc *d)
{
	printf("%s %s %llu %s", what, d->digest, (unsigned long long)d->size,
	       d->media_type);
	if (d->platform.os) {
		char p[96];

		fetch_platform_format(&d->platform, p, sizeof(p));
		printf(" %s", p);
	}
	putchar('\n');
}

static void put_manifest(const struct fetch_manifest *m)
{
	printf("kind %s\nmediaType %s\ndigest %s\n",
	       m->kind == FETCH_MANIFEST_INDEX ? "index" : "image",
	       m->media_type, m->digest);
	if (m->kind == FETCH_MANIFEST_IMAGE) {
		put_desc("config", &m->config);
		for (size_t i = 0; i < m->n_layers; i++)
			put_desc("layer", &m->layers[i]);
	} else {
		for (size_t i = 0; i < m->n_manifests; i++)
			put_desc("manifest", &m->manifests[i]);
	}
}

static int parse_range(const char *s, uint64_t *off, uint64_t *len)
{
	char *end;

	*off = strtoull(s, &end, 10);
	if (*end != ':')
		return -1;
	*len = strtoull(end + 1, &end, 10);
	return *end ? -1 : 0;
}

static int write_cb(const void *data, size_t len, void *arg)
{
	(void)arg;
	return fwrite(data, 1, len, stdout) == len ? 0 : -EIO;
}

struct membuf {
	uint8_t *data;
	size_t len, cap;
};

static int mem_cb(const void *data, size_t len, void *arg)
{
	struct membuf *m = arg;

	lp_grow((void **)&m->data, 1, &m->cap, m->len + len);
	memcpy(m->data + m->len, data, len);
	m->len += len;
	return 0;
}

struct stress {
	struct fetch_client *c;
	const struct fetch_ref *ref;
	const char *digest;
	struct lp_source *src;
	const struct membuf *blob;
	unsigned reads, seed;
	unsigned bad;
};

static void *stress_thread(void *arg)
{
	struct stress *t = arg;
	uint8_t *buf = malloc(256 << 10);

	for (unsigned i = 0; i < t->reads; i++) {
		uint64_t off = (uint64_t)rand_r(&t->seed) % t->blob->len;
		size_t len = 1 + (size_t)rand_r(&t->seed) % (256 << 10);
		struct lp_err err = { 0 };

		if (len > t->blob->len - off)
			len = t->blob->len - off;
		if (i % 4 == 3) {
			if (fetch_blob_read(t->c, t->ref, t->digest,
					    t->blob->len, buf, len, off,
					    &err) < 0 ||
			    memcmp(buf, t->blob->data + off, len)) {
				fprintf(stderr, "direct %llu+%zu: %s\n",
					(unsigned long long)off, len, err.msg);
				t->bad++;
			}
			continue;
		}
		if (lp_source_read_full(t->src, buf, len, off, &err) < 0 ||
		    memcmp(buf, t->blob->data + off, len)) {
			fprintf(stderr, "cached %llu+%zu: %s\n",
				(unsigned long long)off, len, err.msg);
			t->bad++;
		}
	}
	free(buf);
	return NULL;
}

static uint64_t n_requests(struct fetch_client *c)
{
	struct fetch_stats st;

	fetch_client_stats(c, &st);
	return st.requests;
}

/* Commands on stdin, one answer line each (see the top of the file). */
static int session(struct fetch_client *c, const struct fetch_ref *ref,
		   const char *digest)
{
	char line[4096];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		uint64_t r0 = n_requests(c);
		struct lp_err err = { 0 };
		char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
		char out[100] = "";
		int r = 0;

		if (!w)
			continue;
		if (!strcmp(w, "quit"))
			break;
		if (!strcmp(w, "read")) {
			struct lp_sha256_ctx *h = lp_sha256_new();
			uint8_t sum[32];

			while (r == 0 && (w = strtok_r(NULL, " \t\r\n",
						       &save))) {
				uint64_t off, len;
				void *buf;

				if (parse_range(w, &off, &len) < 0) {
					r = lp_err_set(&err, EINVAL,
						       "bad range %s", w);
					break;
				}
				buf = malloc(len ? len : 1);
				r = fetch_blob_read(c, ref, digest, 0, buf, len,
						    off, &err);
				if (r == 0)
					lp_sha256_update(h, buf, len);
				free(buf);
			}
			lp_sha256_final(h, sum);
			lp_hex(sum, 32, out);
		} else if (!strcmp(w, "manifest")) {
			struct fetch_manifest *m = NULL;

			r = fetch_get_manifest(c, ref, NULL, &m, &err);
			if (r == 0)
				snprintf(out, sizeof(out), "%s", m->digest);
			fetch_manifest_free(m);
		} else {
			r = lp_err_set(&err, EINVAL, "unknown command %s", w);
		}
		if (r < 0)
			printf("error %s (errno %d) requests=%llu\n", err.msg,
			       -r, (unsigned long long)(n_requests(c) - r0));
		else
			printf("ok %s requests=%llu\n", out,
			       (unsigned long long)(n_requests(c) - r0));
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "plain-http", no_argument, NULL, 'H' },
		{ "insecure", no_argument, NULL, 'K' },
		{ "user", required_argument, NULL, 'u' },
		{ "auth", required_argument, NULL, 'a' },
		{ "token", required_argument, NULL, 'T' },
		{ "docker-config", required_argument, NULL, 'D' },
		{ "no-env-auth", no_argument, NULL, 'E' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "connect-timeout-ms", required_argument, NULL, 'c' },
		{ "stall-s", required_argument, NULL, 's' },
		{ "retries", required_argument, NULL, 'r' },
		{ "retry-base-ms", required_argument, NULL, 'b' },
		{ "retry-max-ms", required_argument, NULL, 'm' },
		{ "cache", required_argument, NULL, 'C' },
		{ "cache-max", required_argument, NULL, 'M' },
		{ "platform", required_argument, NULL, 'p' },
		{ "gap", required_argument, NULL, 'g' },
		{ "tail", required_argument, NULL, 'X' },
		{ "pause-ms", required_argument, NULL, 'P' },
		{ "tag-ttl", required_argument, NULL, 'L' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "hosts-dir", required_argument, NULL, 'O' },
		{ "nydusd-config", required_argument, NULL, 'N' },
		{ "mirror-failure-limit", required_argument, NULL, 'F' },
		{ "mirror-health-s", required_argument, NULL, 'I' },
		{ "max-concurrent", required_argument, NULL, 'J' },
		{ "max-ranges", required_argument, NULL, 'R' },
		{ "repeat", required_argument, NULL, 'Q' },
		{ 0 }
	};
	struct fetch_opts o;
	struct fetch_cache_opts co = { 0 };
	struct fetch_source_opts so = { 0 };
	struct fetch_platform plat = { 0 };
	bool have_plat = false;
	struct fetch_client *c = NULL;
	struct fetch_cache *cache = NULL;
	struct fetch_ref ref = { 0 };
	struct lp_err err = { 0 };
	struct fetch_stats st;
	struct fetch_hosts *nydus = NULL;
	char *user = NULL;
	unsigned pause_ms = 0, repeat = 1;
	int64_t tag_ttl = 0;
	const char *cmd;
	int opt, r = 0;

	fetch_opts_init(&o);
	while ((opt = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			o.plain_http = true;
			break;
		case 'K':
			o.skip_verify = true;
			break;
		case 'u':
			user = strdup(optarg);
			if (strchr(user, ':')) {
				*strchr(user, ':') = '\0';
				o.password = user + strlen(user) + 1;
			}
			o.username = user;
			break;
		case 'a':
			o.auth = optarg;
			break;
		case 'T':
			o.registry_token = optarg;
			break;
		case 'D':
			o.docker_config = optarg;
			break;
		case 'E':
			o.no_env_auth = true;
			break;
		case 't':
			o.timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'c':
			o.connect_timeout_ms = (unsigned)atoi(optarg);
			break;
		case 's':
			o.stall_timeout_s = (unsigned)atoi(optarg);
			break;
		case 'r':
			o.retry_limit = (unsigned)atoi(optarg);
			break;
		case 'b':
			o.retry_base_ms = (unsigned)atoi(optarg);
			break;
		case 'm':
			o.retry_max_ms = (unsigned)atoi(optarg);
			break;
		case 'C':
			co.root = optarg;
			break;
		case 'M':
			co.max_bytes = strtoull(optarg, NULL, 10);
			break;
		case 'p':
			if (fetch_platform_parse(optarg, &plat, &err) < 0) {
				fprintf(stderr, "error: %s\n", err.msg);
				return 2;
			}
			have_plat = true;
			break;
		case 'g':
			so.plan.max_gap = strtoull(optarg, NULL, 10);
			so.plan.max_size = 8u << 20;
			break;
		case 'X':
			so.tail = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'L':
			tag_ttl = atoll(optarg);
			break;
		case 'P':
			pause_ms = (unsigned)atoi(optarg);
			break;
		case 'R':
			o.max_ranges = (unsigned)atoi(optarg);
			break;
		case 'Q':
			repeat = (unsigned)atoi(optarg);
			break;
		case 'v':
			o.trace = on_trace;
			lp_log_max = LP_LOG_DEBUG;
			break;
		case 'O':
			o.hosts_dir = optarg;
			break;
		case 'N':
			fetch_hosts_free(nydus);
			nydus = NULL;
			if (fetch_hosts_load_nydusd(optarg, &nydus, &err) < 0) {
				fprintf(stderr, "error: %s\n", err.msg);
				return 2;
			}
			break;
		case 'F':
			o.mirror_failure_limit = (unsigned)atoi(optarg);
			break;
		case 'I':
			o.mirror_health_interval_s = (unsigned)atoi(optarg);
			break;
		case 'J':
			o.max_concurrent = (unsigned)atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (optind + 2 > argc) {
		fprintf(stderr,
			"usage: fetch-tool [OPTIONS] COMMAND REF ...\n");
		return 2;
	}
	cmd = argv[optind];
	if (fetch_ref_parse(argv[optind + 1], strlen(argv[optind + 1]), &ref,
			    &err) < 0)
		goto fail;
	if (nydus) {
		const struct fetch_hosts *hl[1] = { nydus };

		o.hosts = hl;
		o.n_hosts = 1;
		r = fetch_client_new(&o, &c, &err);
		o.hosts = NULL;
		o.n_hosts = 0;
		if (r < 0)
			goto fail;
	} else if (fetch_client_new(&o, &c, &err) < 0) {
		goto fail;
	}

	if (!strcmp(cmd, "manifest") || !strcmp(cmd, "image")) {
		struct fetch_manifest *m = NULL, *idx = NULL;

		if (!strcmp(cmd, "manifest"))
			r = fetch_get_manifest(c, &ref, NULL, &m, &err);
		else if (co.root)
			r = fetch_cache_open(&co, &cache, &err) < 0 ?
				    err.code :
				    fetch_get_image_cached(
					    c, cache, &ref,
					    have_plat ? &plat : NULL, tag_ttl,
					    &m, &idx, &err);
		else
			r = fetch_get_image(c, &ref, have_plat ? &plat : NULL,
					    &m, &idx, &err);
		if (r < 0)
			goto fail;
		if (idx)
			printf("index %s\n", idx->digest);
		put_manifest(m);
		fetch_manifest_free(m);
		fetch_manifest_free(idx);
	} else if (optind + 3 > argc) {
		fprintf(stderr, "error: %s needs a DIGEST\n", cmd);
		r = -EINVAL;
	} else if (!strcmp(cmd, "head")) {
		uint64_t size;

		r = fetch_blob_head(c, &ref, argv[optind + 2], &size, &err);
		if (r < 0)
			goto fail;
		printf("%llu\n", (unsigned long long)size);
	} else if (!strcmp(cmd, "tail")) {
		size_t want = optind + 3 < argc ?
				      (size_t)strtoull(argv[optind + 3], NULL,
						       10) :
				      4096;
		uint8_t *buf = malloc(want ? want : 1);
		uint64_t size = 0;
		size_t got = 0;

		r = fetch_blob_tail(c, &ref, argv[optind + 2], buf, want,
				    &size, &got, &err);
		if (r == 0) {
			fwrite(buf, 1, got, stdout);
			fprintf(stderr, "tail: size=%llu got=%zu\n",
				(unsigned long long)size, got);
		}
		free(buf);
		if (r < 0)
			goto fail;
	} else if (!strcmp(cmd, "read")) {
		for (int i = optind + 3; i < argc; i++) {
			uint64_t off, len;
			void *buf;

			if (parse_range(argv[i], &off, &len) < 0) {
				fprintf(stderr, "error: bad range %s\n",
					argv[i]);
				r = -EINVAL;
				break;
			}
			if (pause_ms && i > optind + 3)
				usleep(pause_ms * 1000);
			buf = malloc(len ? len : 1);
			r = fetch_blob_read(c, &ref, argv[optind + 2], 0, buf,
					    len, off, &err);
			if (r == 0)
				fwrite(buf, 1, len, stdout);
			free(buf);
			if (r < 0)
				goto fail;
		}
	} else if (!strcmp(cmd, "many")) {
		size_t n = (size_t)(argc - optind - 3);
		struct fetch_read *rd = calloc(n ? n : 1, sizeof(*rd));

		for (size_t i = 0; r == 0 && i < n; i++) {
			uint64_t off, len;

			if (parse_range(argv[optind + 3 + (int)i], &off,
					&len) < 0) {
				fprintf(stderr, "error: bad range\n");
				r = -EINVAL;
				break;
			}
			rd[i].off = off;
			rd[i].len = (size_t)len;
			rd[i].buf = malloc(len ? len : 1);
		}
		for (unsigned k = 0; r == 0 && k < repeat; k++)
			r = fetch_blob_read_many(c, &ref, argv[optind + 2], 0,
						 rd, n, &err);
		for (size_t i = 0; i < n; i++) {
			if (r == 0)
				fwrite(rd[i].buf, 1, rd[i].len, stdout);
			free(rd[i].buf);
		}
		free(rd);
		if (r < 0)
			goto fail;
	} else if (!strcmp(cmd, "session")) {
		r = session(c, &ref, argv[optind + 2]);
	} else if (!strcmp(cmd, "stream")) {
		r = fetch_blob_stream(c, &ref, argv[optind + 2], write_cb, NULL,
				      &err);
		if (r < 0)
			goto fail;
	} else if (!strcmp(cmd, "stress")) {
		struct membuf blob = { 0 };
		struct lp_source *s = NULL;
		unsigned n = optind + 4 < argc ?
				     (unsigned)atoi(argv[optind + 3]) :
				     4;
		unsigned reads = optind + 4 < argc ?
					 (unsigned)atoi(argv[optind + 4]) :
					 50;
		struct stress t[64];
		pthread_t th[64];
		unsigned bad = 0;

		if (n > 64)
			n = 64;
		if (!co.root) {
			fprintf(stderr, "error: stress needs --cache\n");
			r = -EINVAL;
			goto out;
		}
		r = fetch_blob_stream(c, &ref, argv[optind + 2], mem_cb, &blob,
				      &err);
		if (r == 0 && !blob.len)
			r = -EINVAL;
		if (r == 0)
			r = fetch_cache_open(&co, &cache, &err);
		if (r == 0)
			r = fetch_blob_source_open(c, cache, &ref,
						   argv[optind + 2], blob.len,
						   &so, &s, &err);
		if (r < 0) {
			free(blob.data);
			goto fail;
		}
		for (unsigned i = 0; i < n; i++) {
			t[i] = (struct stress){ .c = c,
						.ref = &ref,
						.digest = argv[optind + 2],
						.src = s,
						.blob = &blob,
						.reads = reads,
						.seed = i + 1 };
			pthread_create(&th[i], NULL, stress_thread, &t[i]);
		}
		for (unsigned i = 0; i < n; i++) {
			pthread_join(th[i], NULL);
			bad += t[i].bad;
		}
		printf("stress %s: %u threads x %u reads, %u bad, %llu bytes "
		       "cached\n",
		       bad ? "FAILED" : "ok", n, reads, bad,
		       (unsigned long long)fetch_source_cached_bytes(s));
		lp_source_free(s);
		free(blob.data);
		if (bad)
			r = -EIO;
	} else if (!strcmp(cmd, "cat") || !strcmp(cmd, "fill") ||
		   !strcmp(cmd, "prefetch")) {
		struct lp_source *s = NULL;

		if (!co.root) {
			fprintf(stderr, "error: %s needs --cache\n", cmd);
			r = -EINVAL;
			goto out;
		}
		if (fetch_cache_open(&co, &cache, &err) < 0 ||
		    fetch_blob_source_open(c, cache, &ref, argv[optind + 2], 0,
					   &so, &s, &err) < 0) {
			r = err.code;
			goto fail;
		}
		if (!strcmp(cmd, "fill")) {
			r = fetch_source_fill(s, NULL, &err);
			printf("cached %llu of %llu\n",
			       (unsigned long long)fetch_source_cached_bytes(s),
			       (unsigned long long)s->size);
		}
		if (!strcmp(cmd, "prefetch")) {
			size_t n = (size_t)(argc - optind - 3), k = 0;
			struct fetch_range *fr =
				calloc(n ? n : 1, sizeof(*fr));

			for (int i = optind + 3; i < argc; i++, k++)
				if (parse_range(argv[i], &fr[k].off,
						&fr[k].len) < 0)
					r = -EINVAL;
			if (r == 0)
				r = fetch_source_prefetch(s, fr, n, &err);
			free(fr);
		}
		for (int i = optind + 3; r == 0 && i < argc; i++) {
			uint64_t off, len;
			void *buf;

			if (parse_range(argv[i], &off, &len) < 0) {
				fprintf(stderr, "error: bad range %s\n",
					argv[i]);
				r = -EINVAL;
				break;
			}
			buf = malloc(len ? len : 1);
			r = lp_source_read_full(s, buf, len, off, &err);
			if (r == 0)
				fwrite(buf, 1, len, stdout);
			else
				fetch_source_last_error(s, &err);
			free(buf);
		}
		lp_source_free(s);
		if (r < 0)
			goto fail;
	} else {
		fprintf(stderr, "error: unknown command %s\n", cmd);
		r = -EINVAL;
	}
	goto out;
fail:
	if (!r)
		r = err.code ? err.code : -EIO;
	fprintf(stderr, "error: %s (errno %d)\n",
		err.msg[0] ? err.msg : strerror(-r), -r);
out:
	fflush(stdout);
	if (c) {
		fetch_client_stats(c, &st);
		fprintf(stderr,
			"stats: requests=%llu bytes=%llu retries=%llu\n",
			(unsigned long long)st.requests,
			(unsigned long long)st.bytes,
			(unsigned long long)st.retries);
	}
	fetch_cache_unref(cache);
	fetch_client_unref(c);
	fetch_ref_release(&ref);
	fetch_platform_release(&plat);
	fetch_hosts_free(nydus);
	free(user);
	return r < 0 ? 1 : 0;
}
