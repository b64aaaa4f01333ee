/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client: HTTP with libcurl, authentication, retries.
 *
 * Every call takes a curl multi handle from the client's pool, runs its
 * transfers on easy handles from another pool, and gives both back, so a
 * handle (and the idle keep-alive connections in a multi handle's cache)
 * is reused but never used by two threads at once.  Only the DNS cache and
 * TLS sessions are shared between handles, through a locked CURLSH;
 * libcurl does not support sharing a connection pool between threads.
 *
 * Why multi and not a pool of threads: several ranges of one read go out
 * at once from the calling thread, and over HTTP/2 they become streams of
 * one connection, which only a multi handle can do.  Retries, the auth
 * dance and the fall-through from mirror to mirror to upstream are a small
 * state machine per request (struct rq) that the multi loop drives.
 */
#define LP_MODNAME "fetcher"
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fetcher/fetcher-int.h"

#define TOKEN_MAX (1u << 20)
#define ERRBODY_MAX 512
#define POOL_MAX 64

/* A cached bearer token for one repository of a host. */
struct token {
	struct token *next;
	char *repo;
	char *token;		 /* secret */
	struct timespec expires; /* CLOCK_MONOTONIC */
};

/*
 * What the client knows about one host it talks to: a registry's own API
 * host, a hosts.toml server, or a mirror.  Every field after key is
 * protected by c->lock once the host is on c->hosts.
 */
struct host {
	struct host *next;
	char *key;	/* lookup key: the API host, or "m|REG|URL" ... */
	char *host;	/* host[:port] to connect to */
	char *registry; /* whose credentials it may get; NULL = none */
	/* its configuration (owned by the client or a route); NULL = a
	 * registry's own host with the client's settings */
	const struct fetch_endpoint *ep;
	bool mirror;   /* failures fall through to the next host */
	bool use_http; /* skip_verify fell back to http */
	bool basic;    /* the registry asked for basic auth */
	int cred_state; /* 0 unresolved, 1 have cred, -1 none */
	struct fetch_cred cred;
	struct token *tokens;
	/* mirror health */
	unsigned fails; /* in a row */
	bool down;	/* skipped until retry_at */
	bool probing;	/* one thread is pinging it */
	double retry_at;
	/* the registry itself: a request spent every try on faults of the
	 * registry or the link; until this time (or an answer) a request
	 * gets one try, so an outage costs each reader one wait, not
	 * 1 + retry_limit of them */
	double failing_until;
};

/* How long a registry that failed a request's every try is tried once. */
#define FAILING_S 30.0

/* The hosts to try for one registry, in order: mirrors, then upstream. */
struct route {
	struct route *next;
	char *registry;
	struct fetch_hosts *cfg; /* a loaded hosts.toml (owned), or NULL */
	struct host **hops;
	size_t n_hops;
	/* a host answered several ranges in one request wrongly or not at
	 * all: one range per request (protected by the client's lock) */
	bool no_multi;
};

struct fetch_client {
	int refs;	     /* atomic */
	struct fetch_opts o; /* strings owned; o.hosts is NULL (see cfgs) */
	struct fetch_hosts **cfgs; /* copies of o.hosts */
	size_t n_cfgs;
	pthread_mutex_t lock;
	struct host *hosts;	  /* protected by lock */
	struct route *routes;	  /* protected by lock */
	CURL **pool;		  /* protected by lock */
	size_t n_pool, cap_pool;  /* protected by lock */
	CURLM **mpool;		  /* protected by lock */
	size_t n_mpool, cap_mpool; /* protected by lock */
	struct fetch_stats stats; /* protected by lock */
	CURLM **live;		  /* multi handles in drive(): lock */
	size_t n_live, cap_live;  /* protected by lock */
	int cancelled;		  /* atomic: fetch_client_cancel() */
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
};

enum sink_kind { SINK_DISCARD, SINK_DYN, SINK_RANGE, SINK_STREAM, SINK_MULTI };
enum xfer_fail {
	F_NONE,
	F_TOO_LONG,
	F_BAD_RANGE,
	F_PAST_END,
	F_TOO_BIG,
	F_CB,
	F_DONE,
	F_NOMULTI, /* no usable answer to several ranges: ask one by one */
	F_STALL,   /* no byte for stall_s: a timeout */
};

struct xfer {
	/* the request */
	const char *method; /* "GET" or "HEAD" */
	const char *accept;
	bool has_range;
	uint64_t off, len;  /* len 0 = to the end */
	bool suffix;	    /* has_range: the last len bytes ("bytes=-len");
			       the answer sets off and total */
	uint64_t total;
	uint64_t blob_size; /* 0 = unknown */
	bool stream;	    /* no total timeout */
	const char *bearer;
	const struct fetch_cred *basic;
	enum sink_kind sink;
	/* SINK_DYN */
	uint8_t *dyn;
	size_t dyn_len, dyn_cap, dyn_max;
	/* SINK_RANGE */
	uint8_t *buf;
	uint64_t got;
	struct fetch_read *rd; /* fetch_blob_read_many(): progress */
	/* SINK_MULTI: several ranges in one request, sorted by offset and
	 * apart; mgot[i]: the bytes of mr[i] filled from its start */
	struct fetch_read **mr;
	size_t nmr, mi; /* mi: the first read the answer has not passed */
	uint64_t *mgot;
	uint64_t mpos, mpart_end; /* where the current part is, ends */
	uint64_t mend;		  /* where the last part ended */
	bool mp_on;		  /* a multipart body (else one part) */
	bool multi_off;		  /* the host does not do several ranges */
	struct fetch_mp mp;
	/* SINK_STREAM */
	int (*cb)(const void *data, size_t len, void *arg);
	void *cbarg;
	struct lp_sha256_ctx *hash;
	uint64_t delivered;
	int cb_err;
	/* the response (of the last hop) */
	long status;
	char content_type[128];
	char content_range[128];
	char www_auth[2048];
	char docker_digest[160];
	int64_t content_length;
	int64_t retry_after_ms;
	bool body_started;
	bool full_body; /* a 200 to a range request */
	uint64_t skip;
	uint64_t body_bytes;
	char errbody[ERRBODY_MAX];
	size_t errbody_len;
	enum xfer_fail fail;
	char fail_msg[160];
	int http_version;
	unsigned new_conns;
	/* the stall watch: when a byte last came (headers count), and how
	 * long to wait for the next */
	double last_rx;
	curl_off_t last_dlnow;
	unsigned stall_s;
	CURLcode cc;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- helpers ------------------------------------------------------------- */

static void mono_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static double mono_sec(void)
{
	struct timespec ts;

	mono_now(&ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned jitter_rand(void)
{
	static __thread unsigned seed;

	if (!seed) {
		struct timespec ts;

		mono_now(&ts);
		seed = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)&seed;
		if (!seed)
			seed = 1;
	}
	return (unsigned)rand_r(&seed);
}

void fetch_redact_url(const char *url, char *out, size_t size)
{
	const char *p = strstr(url, "://"), *host, *at, *slash, *q;
	size_t n;

	if (!p) {
		q = strpbrk(url, "?#");
		n = q ? (size_t)(q - url) : strlen(url);
		snprintf(out, size, "%.*s", (int)n, url);
		return;
	}
	host = p + 3;
	slash = strpbrk(host, "/?#");
	at = memchr(host, '@', slash ? (size_t)(slash - host) : strlen(host));
	q = strpbrk(host, "?#");
	n = q ? (size_t)(q - url) : strlen(url);
	if (at)
		snprintf(out, size, "%.*s%.*s", (int)(host - url), url,
			 (int)(n - (size_t)(at + 1 - url)), at + 1);
	else
		snprintf(out, size, "%.*s", (int)n, url);
}

void fetch_opts_init(struct fetch_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 5000;
	o->timeout_ms = 60000;
	o->stall_timeout_s = 10;
	o->retry_limit = 3;
	o->retry_base_ms = 200;
	o->retry_max_ms = 10000;
}

static char *dup_or_null(const char *s)
{
	return s ? lp_xstrdup(s) : NULL;
}

/* ---- curl setup ---------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *arg)
{
	struct fetch_client *c = arg;

	(void)h;
	(void)a;
	pthread_mutex_lock(&c->share_lock[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *arg)
{
	struct fetch_client *c = arg;

	(void)h;
	pthread_mutex_unlock(&c->share_lock[d]);
}

int fetch_client_new(const struct fetch_opts *o, struct fetch_client **ret,
		     struct lp_err *err)
{
	struct fetch_client *c;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return lp_err_set(err, EIO, "libcurl init: %s",
				  curl_easy_strerror(curl_init_rc));
	c = lp_xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->o = *o;
	c->o.ca_file = dup_or_null(o->ca_file);
	c->o.username = dup_or_null(o->username);
	c->o.password = dup_or_null(o->password);
	c->o.auth = dup_or_null(o->auth);
	c->o.registry_token = dup_or_null(o->registry_token);
	c->o.docker_config = dup_or_null(o->docker_config);
	c->o.hosts_dir = dup_or_null(o->hosts_dir);
	c->o.hosts = NULL;
	c->o.n_hosts = 0;
	if (o->n_hosts) {
		c->cfgs = lp_xcalloc(o->n_hosts, sizeof(*c->cfgs));
		for (size_t i = 0; i < o->n_hosts; i++)
			if (o->hosts[i])
				c->cfgs[c->n_cfgs++] =
					fetch_hosts_dup(o->hosts[i]);
	}
	if (!c->o.mirror_failure_limit)
		c->o.mirror_failure_limit = 5;
	if (!c->o.mirror_health_interval_s)
		c->o.mirror_health_interval_s = 5;
	if (!c->o.max_concurrent)
		c->o.max_concurrent = 8;
	if (c->o.max_concurrent > 64)
		c->o.max_concurrent = 64;
	if (!c->o.max_ranges)
		c->o.max_ranges = 16;
	if (c->o.max_ranges > 64)
		c->o.max_ranges = 64;
	c->o.user_agent =
		lp_xstrdup(o->user_agent ? o->user_agent : "lazypull");
	if (!c->o.connect_timeout_ms)
		c->o.connect_timeout_ms = 5000;
	if (!c->o.stall_timeout_s)
		c->o.stall_timeout_s = 10;
	if (!c->o.retry_base_ms)
		c->o.retry_base_ms = 1;
	if (c->o.retry_max_ms < c->o.retry_base_ms)
		c->o.retry_max_ms = c->o.retry_base_ms;
	pthread_mutex_init(&c->lock, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(c->share_lock); i++)
		pthread_mutex_init(&c->share_lock[i], NULL);
	c->share = curl_share_init();
	if (!c->share) {
		fetch_client_unref(c);
		return lp_err_set(err, ENOMEM, "libcurl: no share handle");
	}
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);
	*ret = c;
	return 0;
}

struct fetch_client *fetch_client_ref(struct fetch_client *c)
{
	if (c)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

static void tokens_free(struct token *t)
{
	while (t) {
		struct token *n = t->next;

		free(t->repo);
		fetch_free_secret(t->token);
		free(t);
		t = n;
	}
}

void fetch_client_unref(struct fetch_client *c)
{
	if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < c->n_mpool; i++)
		curl_multi_cleanup(c->mpool[i]);
	free(c->mpool);
	free(c->live);
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	if (c->share)
		curl_share_cleanup(c->share);
	while (c->routes) {
		struct route *rt = c->routes;

		c->routes = rt->next;
		free(rt->registry);
		free(rt->hops);
		fetch_hosts_free(rt->cfg);
		free(rt);
	}
	for (size_t i = 0; i < c->n_cfgs; i++)
		fetch_hosts_free(c->cfgs[i]);
	free(c->cfgs);
	while (c->hosts) {
		struct host *h = c->hosts;

		c->hosts = h->next;
		free(h->key);
		free(h->host);
		free(h->registry);
		fetch_cred_release(&h->cred);
		tokens_free(h->tokens);
		free(h);
	}
	for (size_t i = 0; i < ARRAY_SIZE(c->share_lock); i++)
		pthread_mutex_destroy(&c->share_lock[i]);
	pthread_mutex_destroy(&c->lock);
	free((char *)c->o.ca_file);
	free((char *)c->o.username);
	fetch_free_secret((char *)c->o.password);
	fetch_free_secret((char *)c->o.auth);
	fetch_free_secret((char *)c->o.registry_token);
	free((char *)c->o.docker_config);
	free((char *)c->o.hosts_dir);
	free((char *)c->o.user_agent);
	free(c);
}

void fetch_client_stats(struct fetch_client *c, struct fetch_stats *ret)
{
	pthread_mutex_lock(&c->lock);
	*ret = c->stats;
	pthread_mutex_unlock(&c->lock);
}

static CURL *pool_get(struct fetch_client *c)
{
	CURL *e = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_pool)
		e = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->lock);
	if (!e)
		e = curl_easy_init();
	else
		curl_easy_reset(e); /* keeps its idle connections */
	return e;
}

static void pool_put(struct fetch_client *c, CURL *e)
{
	pthread_mutex_lock(&c->lock);
	if (c->n_pool < POOL_MAX) {
		lp_grow((void **)&c->pool, sizeof(*c->pool), &c->cap_pool,
			c->n_pool + 1);
		c->pool[c->n_pool++] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (e)
		curl_easy_cleanup(e);
}

/*
 * Multi handles, like easy handles, are used by one thread at a time and
 * pooled: the connections a transfer leaves behind stay in its multi
 * handle's connection cache for the next request.
 */
static CURLM *multi_get(struct fetch_client *c)
{
	CURLM *m = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_mpool)
		m = c->mpool[--c->n_mpool];
	pthread_mutex_unlock(&c->lock);
	if (m)
		return m;
	m = curl_multi_init();
	if (!m)
		return NULL;
	curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* keep a connection for each transfer that may run at once */
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS,
			  (long)c->o.max_concurrent + 4);
	return m;
}

static void multi_put(struct fetch_client *c, CURLM *m)
{
	pthread_mutex_lock(&c->lock);
	if (c->n_mpool < POOL_MAX) {
		lp_grow((void **)&c->mpool, sizeof(*c->mpool), &c->cap_mpool,
			c->n_mpool + 1);
		c->mpool[c->n_mpool++] = m;
		m = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (m)
		curl_multi_cleanup(m);
}

/* drive()'s multi handles, for fetch_client_cancel() to wake */
static void live_add(struct fetch_client *c, CURLM *m)
{
	pthread_mutex_lock(&c->lock);
	lp_grow((void **)&c->live, sizeof(*c->live), &c->cap_live,
		c->n_live + 1);
	c->live[c->n_live++] = m;
	pthread_mutex_unlock(&c->lock);
}

static void live_remove(struct fetch_client *c, CURLM *m)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_live; i++)
		if (c->live[i] == m) {
			c->live[i] = c->live[--c->n_live];
			break;
		}
	pthread_mutex_unlock(&c->lock);
}

/* ---- response parsing ---------------------------------------------------- */

static void xfer_reset_response(struct xfer *x)
{
	x->status = 0;
	x->content_type[0] = x->content_range[0] = x->www_auth[0] = '\0';
	x->docker_digest[0] = '\0';
	x->content_length = -1;
	x->retry_after_ms = -1;
	x->body_started = false;
	x->full_body = false;
	x->skip = 0;
	x->errbody_len = 0;
	x->errbody[0] = '\0';
}

static void copy_value(char *dst, size_t size, const char *v, size_t n)
{
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	while (n && (*v == ' ' || *v == '\t'))
		v++, n--;
	if (n >= size)
		n = size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int64_t parse_u64(const char *s, bool *ok)
{
	uint64_t v = 0;

	*ok = false;
	if (!isdigit((unsigned char)*s))
		return 0;
	while (isdigit((unsigned char)*s)) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	*ok = v <= INT64_MAX;
	return (int64_t)v;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
	struct xfer *x = arg;
	size_t n = sz * nm;
	const char *colon;
	char v[2048];

	x->last_rx = mono_sec();
	if (n >= 5 && !memcmp(p, "HTTP/", 5)) {
		const char *sp = memchr(p, ' ', n);

		xfer_reset_response(x);
		if (sp && (size_t)(sp - p) + 4 <= n)
			x->status = strtol(sp + 1, NULL, 10);
		return n;
	}
	colon = memchr(p, ':', n);
	if (!colon)
		return n;
#define HDR_IS(name)                                                           \
	((size_t)(colon - p) == sizeof(name) - 1 &&                            \
	 !strncasecmp(p, name, sizeof(name) - 1))
	copy_value(v, sizeof(v), colon + 1, n - (size_t)(colon + 1 - p));
	if (HDR_IS("content-type")) {
		fetch_strlcpy(x->content_type, sizeof(x->content_type), v);
	} else if (HDR_IS("content-range")) {
		fetch_strlcpy(x->content_range, sizeof(x->content_range), v);
	} else if (HDR_IS("content-length")) {
		bool ok;
		int64_t l = parse_u64(v, &ok);

		x->content_length = ok ? l : -1;
	} else if (HDR_IS("docker-content-digest")) {
		fetch_strlcpy(x->docker_digest, sizeof(x->docker_digest), v);
	} else if (HDR_IS("www-authenticate")) {
		/* keep a Bearer challenge over an earlier Basic one */
		if (!x->www_auth[0] || !strncasecmp(v, "bearer", 6))
			fetch_strlcpy(x->www_auth, sizeof(x->www_auth), v);
	} else if (HDR_IS("retry-after")) {
		bool ok;
		int64_t s = parse_u64(v, &ok);

		if (ok) {
			x->retry_after_ms =
				s > INT64_MAX / 1000 ? INT64_MAX : s * 1000;
		} else {
			time_t t = curl_getdate(v, NULL);
			time_t now = time(NULL);

			if (t != (time_t)-1)
				x->retry_after_ms =
					t > now ? (int64_t)(t - now) * 1000 : 0;
		}
	}
#undef HDR_IS
	return n;
}

static size_t xfer_fail(struct xfer *x, enum xfer_fail f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static size_t xfer_fail(struct xfer *x, enum xfer_fail f, const char *fmt, ...)
{
	va_list ap;

	x->fail = f;
	va_start(ap, fmt);
	vsnprintf(x->fail_msg, sizeof(x->fail_msg), fmt, ap);
	va_end(ap);
	return 0; /* makes curl stop with CURLE_WRITE_ERROR */
}

/* The answer to a suffix range ("bytes=-len"): the blob's last bytes and
 * its size, or, from a registry that ignores ranges, the whole blob (when
 * it fits in len; else only its size, from Content-Length). */
static size_t suffix_start(struct xfer *x)
{
	uint64_t a, b;
	int64_t total;

	if (x->status == 200) {
		if (x->content_length < 0)
			return xfer_fail(x, F_BAD_RANGE,
					 "200 without Content-Length to a "
					 "suffix range");
		x->total = (uint64_t)x->content_length;
		x->off = 0;
		if (x->total > x->len) /* the size is all we wanted */
			return xfer_fail(x, F_DONE, "done");
		return 1;
	}
	if (!fetch_content_range_parse(x->content_range, &a, &b, &total) ||
	    total < 0 || b + 1 != (uint64_t)total ||
	    b - a + 1 != (x->len < (uint64_t)total ? x->len : (uint64_t)total))
		return xfer_fail(x, F_BAD_RANGE,
				 "Content-Range \"%.60s\" is not the last "
				 "%llu bytes of a blob",
				 x->content_range, (unsigned long long)x->len);
	x->total = (uint64_t)total;
	x->off = a;
	return 1;
}

/* The body a complete SINK_RANGE answer brings: len bytes; for a suffix,
 * as many as the blob has, none when only its size was wanted from a 200
 * (suffix_start). */
static uint64_t range_want(const struct xfer *x)
{
	if (!x->suffix)
		return x->len;
	if (x->status == 200 && x->total > x->len)
		return 0;
	return x->total < x->len ? x->total : x->len;
}

/* Checks a 206 or 200 answer to a range request before its first byte. */
static size_t range_start(struct xfer *x)
{
	uint64_t a, b;
	int64_t total;

	x->body_started = true;
	if (x->suffix)
		return suffix_start(x);
	if (x->status == 200) {
		/* Range ignored: the whole blob follows */
		if (x->content_length >= 0 && x->blob_size &&
		    (uint64_t)x->content_length != x->blob_size)
			return xfer_fail(x, F_BAD_RANGE,
					 "200 with %lld bytes for a blob of "
					 "%llu",
					 (long long)x->content_length,
					 (unsigned long long)x->blob_size);
		x->full_body = true;
		x->skip = x->off;
		return 1;
	}
	if (!fetch_content_range_parse(x->content_range, &a, &b, &total))
		return xfer_fail(x, F_BAD_RANGE,
				 "206 without a valid "
				 "Content-Range (\"%.60s\")",
				 x->content_range);
	/* servers clip a range that runs past the end: no retry helps */
	if (total >= 0 && x->len && x->off + x->len > (uint64_t)total)
		return xfer_fail(x, F_PAST_END,
				 "range %llu+%llu is past the end of the "
				 "blob (%lld bytes)",
				 (unsigned long long)x->off,
				 (unsigned long long)x->len, (long long)total);
	if (a != x->off || (x->len && b != x->off + x->len - 1) ||
	    (total >= 0 && x->blob_size && (uint64_t)total != x->blob_size) ||
	    (!x->len && total >= 0 && b + 1 != (uint64_t)total))
		return xfer_fail(
			x, F_BAD_RANGE,
			"Content-Range \"%.60s\" does not match the "
			"requested bytes %llu-%llu",
			x->content_range, (unsigned long long)x->off,
			(unsigned long long)(x->len ? x->off + x->len - 1 : 0));
	return 1;
}

/* ---- several ranges in one request ---------------------------------------- */

static uint64_t read_end(const struct fetch_read *r)
{
	return r->off + r->len;
}

/* A part of the answer begins: bytes a..b of a blob of total. */
static int multi_part(void *arg, uint64_t a, uint64_t b, int64_t total)
{
	struct xfer *x = arg;

	if ((total >= 0 && x->blob_size && (uint64_t)total != x->blob_size) ||
	    (x->blob_size && b >= x->blob_size)) {
		xfer_fail(x, F_BAD_RANGE,
			  "a part of bytes %llu-%llu/%lld of a blob of %llu",
			  (unsigned long long)a, (unsigned long long)b,
			  (long long)total, (unsigned long long)x->blob_size);
		return -EBADMSG;
	}
	if (a < x->mend) {
		xfer_fail(x, F_NOMULTI, "the answer's parts are out of order");
		return -EBADMSG;
	}
	x->mpos = a;
	x->mpart_end = x->mend = b + 1;
	return 0;
}

/*
 * n bytes of the answer at blob offset pos: copied into the reads they
 * continue.  Bytes no read wants are dropped; a read whose start the
 * answer skipped stays short (and is asked for alone afterwards).
 */
static int multi_data(void *arg, uint64_t pos, const void *data, size_t n)
{
	struct xfer *x = arg;
	const uint8_t *p = data;

	while (n) {
		struct fetch_read *r;
		uint64_t at;
		size_t k;

		while (x->mi < x->nmr && read_end(x->mr[x->mi]) <= pos)
			x->mi++;
		if (x->mi == x->nmr)
			break;
		r = x->mr[x->mi];
		if (pos + n <= r->off)
			break;
		if (pos < r->off) {
			k = (size_t)(r->off - pos);
			pos += k;
			p += k;
			n -= k;
		}
		at = pos - r->off;
		k = r->len - at < n ? (size_t)(r->len - at) : n;
		if (at == x->mgot[x->mi]) {
			memcpy((uint8_t *)r->buf + at, p, k);
			x->mgot[x->mi] += k;
			x->got += k;
			if (r->progress)
				r->progress(r, (size_t)x->mgot[x->mi],
					    r->progress_arg);
		}
		pos += k;
		p += k;
		n -= k;
	}
	return 0;
}

static const struct fetch_mp_ops multi_ops = { .part = multi_part,
					       .data = multi_data };

/* The body of the answer to several ranges. */
static size_t multi_body(struct xfer *x, const char *p, size_t n)
{
	int r;

	if (!x->body_started) {
		uint64_t a, b;
		int64_t total;

		x->body_started = true;
		if (x->status != 206)
			return xfer_fail(x, F_NOMULTI,
					 "HTTP %ld to a request for %zu "
					 "ranges",
					 x->status, x->nmr);
		if (!strncasecmp(x->content_type, "multipart/", 10)) {
			if (fetch_mp_init(&x->mp, x->content_type) < 0)
				return xfer_fail(x, F_NOMULTI,
						 "a multipart answer without "
						 "a usable boundary");
			x->mp_on = true;
		} else if (!fetch_content_range_parse(x->content_range, &a,
						      &b, &total)) {
			return xfer_fail(x, F_BAD_RANGE,
					 "206 without a valid Content-Range "
					 "(\"%.60s\")",
					 x->content_range);
		} else if (multi_part(x, a, b, total) < 0) {
			return 0;
		}
	}
	if (x->mp_on) {
		r = fetch_mp_feed(&x->mp, p, n, &multi_ops, x);
		if (r < 0 && x->fail == F_NONE)
			xfer_fail(x, F_NOMULTI, "a malformed multipart answer: %s",
				  x->mp.why ? x->mp.why : "?");
		return r < 0 ? 0 : n;
	}
	if (n > x->mpart_end - x->mpos)
		return xfer_fail(x, F_TOO_LONG,
				 "body longer than its Content-Range");
	multi_data(x, x->mpos, p, n);
	x->mpos += n;
	return n;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct xfer *x = arg;
	size_t n = sz * nm;

	x->body_bytes += n;
	if (x->status < 200 || x->status > 299) {
		size_t room = sizeof(x->errbody) - 1 - x->errbody_len;

		if (n < room)
			room = n;
		memcpy(x->errbody + x->errbody_len, p, room);
		x->errbody_len += room;
		x->errbody[x->errbody_len] = '\0';
		return n;
	}
	switch (x->sink) {
	case SINK_DISCARD:
		return n;
	case SINK_DYN:
		if (n > x->dyn_max - x->dyn_len)
			return xfer_fail(x, F_TOO_BIG,
					 "body larger than %zu bytes",
					 x->dyn_max);
		lp_grow((void **)&x->dyn, 1, &x->dyn_cap, x->dyn_len + n + 1);
		memcpy(x->dyn + x->dyn_len, p, n);
		x->dyn_len += n;
		x->dyn[x->dyn_len] = '\0';
		return n;
	case SINK_MULTI:
		return multi_body(x, p, n);
	case SINK_RANGE:
	case SINK_STREAM:
		break;
	}
	if (x->has_range && !x->body_started && !range_start(x))
		return 0;
	x->body_started = true;
	if (x->full_body && x->skip) {
		size_t k = n < x->skip ? n : (size_t)x->skip;

		x->skip -= k;
		p += k;
		n -= k;
		if (!n)
			return sz * nm;
	}
	if (x->sink == SINK_RANGE) {
		uint64_t room = x->len - x->got;

		if (n > room) {
			if (!x->full_body)
				return xfer_fail(x, F_TOO_LONG,
						 "body longer than the %llu "
						 "bytes asked for",
						 (unsigned long long)x->len);
			n = (size_t)room;
		}
		memcpy(x->buf + x->got, p, n);
		x->got += n;
		if (x->rd && x->rd->progress)
			x->rd->progress(x->rd, (size_t)x->got,
					x->rd->progress_arg);
		if (x->full_body && x->got == x->len)
			return xfer_fail(x, F_DONE, "done");
		return sz * nm;
	}
	/* SINK_STREAM */
	if (x->blob_size && n > x->blob_size - x->delivered)
		return xfer_fail(x, F_TOO_LONG, "body longer than the blob");
	lp_sha256_update(x->hash, p, n);
	x->cb_err = x->cb(p, n, x->cbarg);
	x->delivered += n;
	if (x->cb_err < 0)
		return xfer_fail(x, F_CB, "stopped by the consumer");
	return sz * nm;
}

/* ---- one exchange -------------------------------------------------------- */

static bool host_http(const struct fetch_client *c, const struct host *h)
{
	if (h->ep && h->ep->host)
		return h->ep->plain_http || h->use_http;
	return c->o.plain_http || h->use_http;
}

static const char *host_root(const struct host *h)
{
	return h->ep && h->ep->host && h->ep->root ? h->ep->root : "/v2";
}

/*
 * curl's own low-speed limit averages: 10 bytes and then nothing passed a
 * 2 s limit after 8 s.  This watch ends a transfer stall_s after its last
 * byte (header or body), as --timeout promises.
 */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;
	double now = mono_sec();

	(void)dltotal;
	(void)ultotal;
	(void)ulnow;
	if (dlnow != x->last_dlnow) {
		x->last_dlnow = dlnow;
		x->last_rx = now;
	} else if (x->stall_s && now - x->last_rx >= x->stall_s) {
		xfer_fail(x, F_STALL, "no data for %u s", x->stall_s);
		return 1;
	}
	return 0;
}

/*
 * Sets e up for x against url.  h (NULL for a token request) brings its
 * TLS, proxy, connect timeout and header settings.  Returns the header
 * list, for xfer_finish().
 */
static struct curl_slist *xfer_setup(struct fetch_client *c, CURL *e,
				     struct xfer *x, const char *url,
				     const struct host *h)
{
	const struct fetch_endpoint *ep = h ? h->ep : NULL;
	struct curl_slist *hdrs = NULL;
	char range[64], line[4096];
	bool skip_verify = c->o.skip_verify;
	const char *ca = c->o.ca_file;
	unsigned cto = c->o.connect_timeout_ms;

	if (ep) {
		/* --insecure is about the registry, not its mirrors */
		skip_verify = ep->skip_verify ||
			      (!h->mirror && c->o.skip_verify);
		if (ep->ca_file)
			ca = ep->ca_file;
		if (ep->connect_timeout_ms)
			cto = ep->connect_timeout_ms;
	}
	xfer_reset_response(x);
	x->fail = F_NONE;
	x->fail_msg[0] = '\0';
	x->errbuf[0] = '\0';
	x->body_bytes = 0;
	x->got = 0;
	x->dyn_len = 0;
	x->last_rx = mono_sec();
	x->last_dlnow = 0;
	x->stall_s = c->o.stall_timeout_s;
	if (x->sink == SINK_MULTI) {
		memset(x->mgot, 0, x->nmr * sizeof(*x->mgot));
		x->mi = 0;
		x->mend = x->mpos = x->mpart_end = 0;
		x->mp_on = false;
	}

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_SHARE, c->share);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->o.user_agent);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* blob GETs are redirected to storage hosts; libcurl (>= 7.58)
	 * drops Authorization there as UNRESTRICTED_AUTH stays off */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 8L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cto);
	if (!x->stream && c->o.timeout_ms)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)c->o.stall_timeout_s);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/* concurrent https transfers wait for a connection that may turn
	 * out to multiplex (HTTP/2) rather than each opening another one;
	 * plain http is HTTP/1.1 here, so they need their own */
	if (!strncasecmp(url, "https://", 8))
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	if (skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (ca)
		curl_easy_setopt(e, CURLOPT_CAINFO, ca);
	if (ep && ep->client_cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, ep->client_cert);
	if (ep && ep->client_key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, ep->client_key);
	if (ep && ep->proxy)
		curl_easy_setopt(e, CURLOPT_PROXY, ep->proxy);
	/* bulk bodies in fewer, larger write callbacks (curl's own tool
	 * does the same) */
	if (x->sink == SINK_RANGE || x->sink == SINK_STREAM ||
	    x->sink == SINK_MULTI)
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L << 10);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	if (!strcmp(x->method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (x->has_range) {
		if (x->suffix)
			snprintf(range, sizeof(range), "-%llu",
				 (unsigned long long)x->len);
		else if (x->len)
			snprintf(range, sizeof(range), "%llu-%llu",
				 (unsigned long long)x->off,
				 (unsigned long long)(x->off + x->len - 1));
		else
			snprintf(range, sizeof(range), "%llu-",
				 (unsigned long long)x->off);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	} else if (x->sink == SINK_MULTI) {
		char *ranges = lp_xmalloc(x->nmr * 42 + 1), *w = ranges;

		for (size_t i = 0; i < x->nmr; i++)
			w += sprintf(w, "%s%llu-%llu", i ? "," : "",
				     (unsigned long long)x->mr[i]->off,
				     (unsigned long long)(read_end(x->mr[i]) -
							  1));
		curl_easy_setopt(e, CURLOPT_RANGE, ranges); /* copied */
		free(ranges);
	}
	if (x->accept) {
		snprintf(line, sizeof(line), "Accept: %s", x->accept);
		hdrs = curl_slist_append(hdrs, line);
	}
	for (size_t i = 0; ep && i < ep->n_headers; i++) {
		size_t n = strlen(ep->headers[i].key) +
			   strlen(ep->headers[i].value) + 4;
		char *hl = lp_xmalloc(n);

		snprintf(hl, n, "%s: %s", ep->headers[i].key,
			 ep->headers[i].value);
		hdrs = curl_slist_append(hdrs, hl);
		fetch_free_secret(hl);
	}
	if (x->bearer) {
		size_t n = strlen(x->bearer) + 32;
		char *hl = lp_xmalloc(n);

		snprintf(hl, n, "Authorization: Bearer %s", x->bearer);
		hdrs = curl_slist_append(hdrs, hl);
		fetch_free_secret(hl);
	} else if (x->basic) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERNAME, x->basic->user);
		curl_easy_setopt(e, CURLOPT_PASSWORD, x->basic->pass);
	}
	if (hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	return hdrs;
}

/* Records how the exchange ended and forgets its secrets. */
static void xfer_finish(CURL *e, struct xfer *x, struct curl_slist *hdrs,
			CURLcode cc)
{
	long v = 0, nc = 0;

	x->cc = cc;
	if (x->cc == CURLE_WRITE_ERROR && x->fail == F_DONE)
		x->cc = CURLE_OK;
	if (x->cc == CURLE_ABORTED_BY_CALLBACK && x->fail == F_STALL) {
		x->cc = CURLE_OPERATION_TIMEDOUT; /* retried like one */
		snprintf(x->errbuf, sizeof(x->errbuf), "%s", x->fail_msg);
		x->fail = F_NONE;
	}
	curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &v);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc);
	x->http_version = v == CURL_HTTP_VERSION_1_0 ? 10 :
			  v == CURL_HTTP_VERSION_1_1 ? 11 :
			  v == CURL_HTTP_VERSION_2_0 ? 20 :
			  v == CURL_HTTP_VERSION_3   ? 30 :
						       0;
	x->new_conns = nc > 0 ? (unsigned)nc : 0;
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	for (struct curl_slist *l = hdrs; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(hdrs);
	/* the password lives in the handle until reset; reset now */
	if (x->basic)
		curl_easy_reset(e);
}

/* ---- hosts, routes and mirror health ------------------------------------- */

/* Finds or adds a host; caller holds c->lock. */
static struct host *host_get_locked(struct fetch_client *c, const char *key,
				    const char *hostname, const char *registry,
				    const struct fetch_endpoint *ep,
				    bool mirror)
{
	struct host *h;

	for (h = c->hosts; h; h = h->next)
		if (!strcmp(h->key, key))
			return h;
	h = lp_xcalloc(1, sizeof(*h));
	h->key = lp_xstrdup(key);
	h->host = lp_xstrdup(hostname);
	h->registry = registry ? lp_xstrdup(registry) : NULL;
	h->ep = ep;
	h->mirror = mirror;
	h->next = c->hosts;
	c->hosts = h;
	return h;
}

static struct route *route_find_locked(struct fetch_client *c,
				       const char *registry)
{
	for (struct route *rt = c->routes; rt; rt = rt->next)
		if (!strcmp(rt->registry, registry))
			return rt;
	return NULL;
}

/* Builds the route of ref's registry from cfg (may be NULL). */
static struct route *route_add_locked(struct fetch_client *c,
				      const struct fetch_ref *ref,
				      const struct fetch_hosts *cfg)
{
	const struct fetch_endpoint *srv = cfg ? cfg->server : NULL;
	struct route *rt = lp_xcalloc(1, sizeof(*rt));
	size_t nm = cfg ? cfg->n_mirrors : 0;
	char key[4400];

	rt->registry = lp_xstrdup(ref->registry);
	rt->hops = lp_xcalloc(nm + 1, sizeof(*rt->hops));
	for (size_t i = 0; i < nm; i++) {
		const struct fetch_endpoint *ep = &cfg->mirrors[i];

		/* per registry: health, tokens and credentials too */
		snprintf(key, sizeof(key), "m|%s|%s|%s", ref->registry,
			 ep->plain_http ? "http" : "https", ep->url);
		rt->hops[rt->n_hops++] = host_get_locked(
			c, key, ep->host,
			ep->auth_through ? ref->registry : NULL, ep, true);
	}
	if (srv && srv->host) {
		/* "docker.io" is not an API host */
		const char *hn = strcmp(srv->host, "docker.io") ?
					 srv->host :
					 "registry-1.docker.io";

		snprintf(key, sizeof(key), "s|%s|%s", ref->registry, srv->url);
		rt->hops[rt->n_hops++] =
			host_get_locked(c, key, hn, ref->registry, srv, false);
	} else {
		rt->hops[rt->n_hops++] = host_get_locked(
			c, ref->host, ref->host, ref->registry, srv, false);
	}
	rt->next = c->routes;
	c->routes = rt;
	return rt;
}

/*
 * The hosts to try for ref: its registry's config from o.hosts, else a
 * hosts.toml under o.hosts_dir (read once), else just its API host.
 */
static struct route *route_get(struct fetch_client *c,
			       const struct fetch_ref *ref, struct lp_err *err)
{
	const struct fetch_hosts *cfg = NULL;
	struct fetch_hosts *loaded = NULL;
	struct route *rt;

	pthread_mutex_lock(&c->lock);
	rt = route_find_locked(c, ref->registry);
	pthread_mutex_unlock(&c->lock);
	if (rt)
		return rt;
	for (size_t i = 0; i < c->n_cfgs && !cfg; i++)
		if (fetch_hosts_match(c->cfgs[i]->registry, ref->registry,
				      ref->host))
			cfg = c->cfgs[i];
	/* a broken file fails every request until it is fixed */
	if (!cfg && c->o.hosts_dir) {
		if (fetch_hosts_load_dir(c->o.hosts_dir, ref->registry, &loaded,
					 err) < 0)
			return NULL;
		cfg = loaded;
	}
	pthread_mutex_lock(&c->lock);
	rt = route_find_locked(c, ref->registry);
	if (!rt) {
		rt = route_add_locked(c, ref, cfg);
		rt->cfg = TAKE_PTR(loaded);
	}
	pthread_mutex_unlock(&c->lock);
	fetch_hosts_free(loaded);
	return rt;
}

enum { MIRROR_USE, MIRROR_SKIP, MIRROR_PROBE };

static unsigned mirror_limit(const struct fetch_client *c,
			     const struct host *h)
{
	return h->ep->failure_limit ? h->ep->failure_limit :
				      c->o.mirror_failure_limit;
}

static unsigned mirror_interval(const struct fetch_client *c,
				const struct host *h)
{
	return h->ep->health_interval_s ? h->ep->health_interval_s :
					  c->o.mirror_health_interval_s;
}

/* May a request go to mirror h now?  PROBE: the caller pings it first. */
static int mirror_check(struct fetch_client *c, struct host *h)
{
	int r = MIRROR_USE;

	pthread_mutex_lock(&c->lock);
	if (h->down) {
		if (h->probing || mono_sec() < h->retry_at) {
			r = MIRROR_SKIP;
		} else {
			h->probing = true;
			r = MIRROR_PROBE;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void mirror_result(struct fetch_client *c, struct host *h, bool ok,
			  bool probe)
{
	pthread_mutex_lock(&c->lock);
	if (probe)
		h->probing = false;
	if (ok) {
		if (h->down)
			lp_debug("mirror %s: healthy again", h->ep->url);
		h->down = false;
		h->fails = 0;
	} else {
		h->fails++;
		if (probe || (!h->down && h->fails >= mirror_limit(c, h))) {
			if (!h->down)
				lp_debug("mirror %s: %u failures in a row, "
					 "skipped for %u s",
					 h->ep->url, h->fails,
					 mirror_interval(c, h));
			h->down = true;
			h->retry_at = mono_sec() + mirror_interval(c, h);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* The outcome of a request to a registry (not a mirror): see failing_until */
static void upstream_result(struct fetch_client *c, struct host *h, bool ok,
			    unsigned tries)
{
	double now = mono_sec();

	pthread_mutex_lock(&c->lock);
	if (ok) {
		if (h->failing_until > now)
			lp_log(LP_LOG_INFO, "registry %s answers again",
			       h->host);
		h->failing_until = 0;
	} else if (c->o.retry_limit) { /* else one try is all there is */
		if (h->failing_until <= now)
			lp_log(LP_LOG_WARN, "registry %s: a request failed "
			       "%u tr%s; one try each for %.0f s, or until "
			       "it answers", h->host, tries,
			       tries == 1 ? "y" : "ies", FAILING_S);
		h->failing_until = now + FAILING_S;
	}
	pthread_mutex_unlock(&c->lock);
}

static bool upstream_failing(struct fetch_client *c, struct host *h)
{
	bool r;

	pthread_mutex_lock(&c->lock);
	r = h->failing_until > mono_sec();
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void trace(struct fetch_client *c, const struct xfer *x, const char *url,
		  unsigned attempt, double secs);

/* GETs the mirror's ping URL: any answer but a 5xx means it is back. */
static bool mirror_ping(struct fetch_client *c, struct host *h)
{
	struct xfer x = { .method = "GET", .sink = SINK_DISCARD };
	struct curl_slist *hdrs;
	char url[4096];
	CURL *e = pool_get(c);
	unsigned cto = h->ep->connect_timeout_ms ? h->ep->connect_timeout_ms :
						   c->o.connect_timeout_ms;
	double t0 = mono_sec();
	bool http, ok;

	if (!e)
		return false;
	pthread_mutex_lock(&c->lock);
	http = host_http(c, h);
	pthread_mutex_unlock(&c->lock);
	if (h->ep->ping_url)
		snprintf(url, sizeof(url), "%s", h->ep->ping_url);
	else
		snprintf(url, sizeof(url), "%s://%s%s/", http ? "http" : "https",
			 h->host, host_root(h));
	hdrs = xfer_setup(c, e, &x, url, h);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cto * 2);
	xfer_finish(e, &x, hdrs, curl_easy_perform(e));
	trace(c, &x, url, 0, mono_sec() - t0);
	ok = x.cc == CURLE_OK && x.status >= 200 && x.status < 500;
	lp_debug("mirror %s: ping %s", h->ep->url, ok ? "ok" : "failed");
	pool_put(c, e);
	return ok;
}

/* ---- helpers for requests ------------------------------------------------ */

/* Resolves the host's credentials once; caller holds c->lock. */
static int host_cred(struct fetch_client *c, struct host *h, struct lp_err *err)
{
	int r;

	if (h->cred_state)
		return h->cred_state > 0;
	if (!h->registry) {
		/* a mirror without auth_through never gets credentials */
		h->cred_state = -1;
		return 0;
	}
	r = fetch_cred_resolve(&c->o, h->registry, &h->cred, err);
	if (r < 0)
		return r;
	h->cred_state = r ? 1 : -1;
	return r;
}
static struct token *token_find(struct host *h, const char *repo)
{
	for (struct token *t = h->tokens; t; t = t->next)
		if (!strcmp(t->repo, repo))
			return t;
	return NULL;
}

static bool token_valid(const struct token *t)
{
	struct timespec now;

	mono_now(&now);
	return now.tv_sec < t->expires.tv_sec ||
	       (now.tv_sec == t->expires.tv_sec &&
		now.tv_nsec < t->expires.tv_nsec);
}

static void token_drop(struct fetch_client *c, struct host *h, const char *repo)
{
	pthread_mutex_lock(&c->lock);
	for (struct token **pp = &h->tokens; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->repo, repo)) {
			struct token *t = *pp;

			*pp = t->next;
			t->next = NULL;
			tokens_free(t);
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

static void url_append_escaped(char *out, size_t size, const char *s)
{
	size_t n = strlen(out);

	for (; *s && n + 4 < size; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || strchr("-._~", ch)) {
			out[n++] = (char)ch;
		} else {
			snprintf(out + n, size - n, "%%%02X", ch);
			n += 3;
		}
	}
	out[n] = '\0';
}

/* A short summary of a registry error body: codes and messages only. */
static void errbody_summary(const struct xfer *x, char *out, size_t size)
{
	json_t *root, *errs;
	size_t used = 0;

	out[0] = '\0';
	if (!x->errbody_len)
		return;
	root = json_loadb(x->errbody, x->errbody_len, 0, NULL);
	errs = root ? json_object_get(root, "errors") : NULL;
	if (json_is_array(errs)) {
		for (size_t i = 0; i < json_array_size(errs) && i < 2; i++) {
			json_t *e = json_array_get(errs, i);
			json_t *code = json_object_get(e, "code");
			json_t *msg = json_object_get(e, "message");
			int k;

			k = snprintf(
				out + used, size - used, " (%.40s%s%.80s)",
				json_is_string(code) ? json_string_value(code) :
						       "?",
				json_is_string(msg) ? ": " : "",
				json_is_string(msg) ? json_string_value(msg) :
						      "");
			if (k < 0 || (size_t)k >= size - used)
				break;
			used += (size_t)k;
		}
	}
	json_decref(root);
}

static int cc_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		return EPROTO;
	case CURLE_TOO_MANY_REDIRECTS:
		return ELOOP;
	default:
		return EIO;
	}
}

static bool cc_retriable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static bool status_retriable(long s)
{
	return s == 429 || s == 408 ||
	       (s >= 500 && s <= 599 && s != 501 && s != 505);
}

static int status_errno(long s)
{
	switch (s) {
	case 404:
		return ENOENT;
	case 401:
	case 403:
		return EACCES;
	case 416:
		return ERANGE;
	default:
		return EIO;
	}
}

static void trace(struct fetch_client *c, const struct xfer *x, const char *url,
		  unsigned attempt, double secs)
{
	struct fetch_trace t = { 0 };
	char shown[1024];

	pthread_mutex_lock(&c->lock);
	c->stats.requests++;
	c->stats.bytes += x->body_bytes;
	if (attempt)
		c->stats.retries++;
	pthread_mutex_unlock(&c->lock);
	if (!c->o.trace)
		return;
	fetch_redact_url(url, shown, sizeof(shown));
	t.method = x->method;
	t.url = shown;
	t.has_range = x->has_range || x->sink == SINK_MULTI;
	t.ranges = x->sink == SINK_MULTI ? (unsigned)x->nmr : 1;
	t.suffix = x->suffix;
	t.range_off = x->off;
	t.range_len = x->len;
	t.status = x->cc == CURLE_OK || x->fail ? x->status : 0;
	t.bytes = x->body_bytes;
	t.attempt = attempt;
	t.seconds = secs;
	t.http_version = x->http_version;
	t.new_connections = x->new_conns;
	if (x->fail && x->fail != F_DONE)
		t.error = x->fail_msg;
	else if (x->cc != CURLE_OK)
		t.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->cc);
	c->o.trace(&t, c->o.trace_data);
}

static uint64_t backoff_ms(const struct fetch_client *c, unsigned attempt,
			   int64_t retry_after_ms)
{
	uint64_t d = c->o.retry_base_ms;

	for (unsigned i = 0; i < attempt && d < c->o.retry_max_ms; i++)
		d *= 2;
	if (d > c->o.retry_max_ms)
		d = c->o.retry_max_ms;
	/* "equal jitter": half fixed, half random */
	d = d / 2 + jitter_rand() % (d / 2 + 1);
	if (retry_after_ms >= 0 && (uint64_t)retry_after_ms > d)
		d = (uint64_t)retry_after_ms;
	if (d > c->o.retry_max_ms)
		d = c->o.retry_max_ms;
	return d;
}


static int get_token(struct fetch_client *c, struct host *h,
		     const struct fetch_ref *ref,
		     const struct fetch_challenge *ch, char **ret_token,
		     struct lp_err *err);

/* ---- requests: hosts in order, retries, authentication ------------------- */

/*
 * One logical request.  A registry request (route set) goes to the
 * route's hosts in order; a token request goes to a full URL.  It is a
 * small state machine so that many can share one curl multi handle: every
 * exchange ends in rq_done(), which finishes the request, schedules a
 * retry, or moves on to the next host.
 */
struct rq {
	struct xfer *x;
	const struct fetch_ref *ref;
	const char *path; /* below the API root ("/REPO/blobs/D"), or a URL */
	unsigned cap;	  /* FETCH_CAP_* the request needs */
	struct route *route;
	size_t hop;	 /* index into route->hops */
	struct host *h;	 /* the current host; NULL for a URL */
	unsigned attempt, auth_round;
	bool sent_token, sent_basic;
	bool started; /* on the multi handle */
	bool done;
	bool upstream_only; /* skip the mirrors */
	char *fresh; /* a token just fetched: used even if short-lived */
	char *bearer;
	struct fetch_cred basic;
	struct curl_slist *hdrs;
	CURL *e;
	double due, t0;
	int r;
	struct lp_err err;  /* this request's failure */
	struct lp_err merr; /* the last mirror's, if nothing else is left */
	char url[4096];
};

static void rq_release(struct rq *q)
{
	fetch_free_secret(q->fresh);
	q->fresh = NULL;
}

/* Moves q to the next host it may use (from q->hop on): 0 or -errno. */
static int rq_pick(struct fetch_client *c, struct rq *q)
{
	struct route *rt = q->route;

	for (; q->hop < rt->n_hops; q->hop++) {
		struct host *h = rt->hops[q->hop];
		unsigned caps = h->ep ? h->ep->caps : FETCH_CAP_ALL;

		if (!(caps & q->cap) || (h->mirror && q->upstream_only))
			continue;
		if (h->mirror) {
			int st = mirror_check(c, h);

			if (st == MIRROR_SKIP)
				continue;
			if (st == MIRROR_PROBE) {
				bool ok = mirror_ping(c, h);

				mirror_result(c, h, ok, true);
				if (!ok)
					continue;
			}
		}
		q->h = h;
		return 0;
	}
	if (q->merr.code) {
		q->err = q->merr;
		return q->err.code;
	}
	return lp_err_set(&q->err, EHOSTUNREACH,
			  "%s: no usable host may %s (see its capabilities)",
			  q->ref->registry,
			  q->cap == FETCH_CAP_RESOLVE ? "resolve tags" : "pull");
}

/* Gives up on a mirror: the next host starts afresh. */
static void rq_next_hop(struct rq *q)
{
	q->merr = q->err;
	lp_err_wrap(&q->merr, "mirror %s", q->h->ep->url);
	lp_err_clear(&q->err);
	rq_release(q);
	q->attempt = q->auth_round = 0;
	q->h = NULL;
	q->hop++;
	q->due = 0;
}

static void rq_fail(struct rq *q, int code)
{
	q->r = q->err.code ? q->err.code : code;
	q->done = true;
}

/* Starts the next exchange of q on m: 1, or 0 when q ended instead. */
static int rq_start(struct fetch_client *c, struct rq *q, CURLM *m)
{
	struct xfer *x = q->x;
	struct host *h;

	if (q->route && !q->h && rq_pick(c, q) < 0) {
		rq_fail(q, -EHOSTUNREACH);
		return 0;
	}
	h = q->h;
	q->bearer = NULL;
	if (h) {
		bool may_auth = !h->mirror || h->ep->auth_through;
		struct token *t;
		size_t n;

		pthread_mutex_lock(&c->lock);
		n = (size_t)snprintf(q->url, sizeof(q->url), "%s://%s%s%s",
				     host_http(c, h) ? "http" : "https",
				     h->host, host_root(h), q->path);
		if (h->mirror && h->ep->add_ns && n < sizeof(q->url)) {
			strncat(q->url, "?ns=", sizeof(q->url) - n - 1);
			url_append_escaped(q->url, sizeof(q->url),
					   q->ref->registry);
		}
		t = token_find(h, q->ref->repo);
		q->sent_token = q->sent_basic = false;
		if (q->fresh) {
			q->bearer = TAKE_PTR(q->fresh);
		} else if (t && token_valid(t)) {
			q->bearer = lp_xstrdup(t->token);
		} else if (may_auth && c->o.registry_token &&
			   c->o.registry_token[0] && q->auth_round == 0) {
			q->bearer = lp_xstrdup(c->o.registry_token);
		} else if (h->basic && h->cred_state > 0) {
			q->basic.user = lp_xstrdup(h->cred.user);
			q->basic.pass = lp_xstrdup(h->cred.pass);
		}
		pthread_mutex_unlock(&c->lock);
		q->sent_token = q->bearer != NULL;
		q->sent_basic = q->basic.user != NULL;
		x->basic = q->sent_basic ? &q->basic : NULL;
	} else {
		snprintf(q->url, sizeof(q->url), "%s", q->path);
	}
	x->bearer = q->bearer;
	if (x->sink == SINK_STREAM && x->delivered) {
		/* resume after what the consumer already has */
		x->has_range = true;
		x->off = x->delivered;
		x->len = 0;
	}
	q->e = pool_get(c);
	if (q->e) {
		q->hdrs = xfer_setup(c, q->e, x, q->url, h);
		curl_easy_setopt(q->e, CURLOPT_PRIVATE, (void *)q);
		if (curl_multi_add_handle(m, q->e) == CURLM_OK) {
			q->t0 = mono_sec();
			q->started = true;
			return 1;
		}
		xfer_finish(q->e, x, q->hdrs, CURLE_FAILED_INIT);
		pool_put(c, q->e);
		q->e = NULL;
	}
	fetch_free_secret(q->bearer);
	q->bearer = NULL;
	x->bearer = NULL;
	if (h) {
		fetch_cred_release(&q->basic);
		x->basic = NULL;
	}
	lp_err_set(&q->err, ENOMEM, "libcurl: cannot start a transfer");
	rq_fail(q, -ENOMEM);
	return 0;
}

/* What an exchange's outcome means for its request. */
enum verdict { V_DONE, V_AGAIN, V_FAIL, V_FATAL };

static enum verdict rq_verdict(struct fetch_client *c, struct rq *q,
			       uint64_t *delay, bool *sick)
{
	struct xfer *x = q->x;
	struct host *h = q->h;
	unsigned limit = h && h->mirror ? 0 : c->o.retry_limit;
	char shown[1024];

	if (h && !h->mirror && limit && upstream_failing(c, h))
		limit = 0;

	*delay = 0;
	*sick = false;
	fetch_redact_url(q->url, shown, sizeof(shown));
	if (x->sink == SINK_MULTI &&
	    (x->fail == F_NOMULTI || x->status == 400 || x->status == 416 ||
	     x->status == 501)) {
		/* what came is kept; the rest is asked for range by range */
		if (x->fail != F_NOMULTI)
			snprintf(x->fail_msg, sizeof(x->fail_msg),
				 "HTTP %ld to a request for %zu ranges",
				 x->status, x->nmr);
		x->multi_off = true;
		return V_DONE;
	}
	if (x->cc != CURLE_OK) {
		bool body_fault =
			x->fail == F_TOO_LONG || x->fail == F_BAD_RANGE;

		if (x->fail == F_CB) {
			lp_err_set(&q->err, x->cb_err, "%s %s: %s", x->method,
				   shown, strerror(-x->cb_err));
			return V_FATAL;
		}
		if (x->fail == F_PAST_END) {
			lp_err_set(&q->err, ERANGE, "%s %s: %s", x->method,
				   shown, x->fail_msg);
			return V_FAIL;
		}
		if (x->fail == F_TOO_BIG) {
			lp_err_set(&q->err, EFBIG, "%s %s: %s", x->method,
				   shown, x->fail_msg);
			return V_FAIL;
		}
		/* nydusd's rule for a registry configured skip_verify */
		if (h && !h->mirror && !(h->ep && h->ep->host) &&
		    !c->o.plain_http && c->o.skip_verify &&
		    (x->cc == CURLE_SSL_CONNECT_ERROR ||
		     x->cc == CURLE_COULDNT_CONNECT)) {
			bool was;

			pthread_mutex_lock(&c->lock);
			was = h->use_http;
			h->use_http = true;
			pthread_mutex_unlock(&c->lock);
			if (!was) {
				lp_debug("%s: TLS failed, trying http",
					 h->host);
				return V_AGAIN;
			}
		}
		*sick = body_fault || cc_retriable(x->cc) ||
			x->cc == CURLE_COULDNT_RESOLVE_HOST ||
			x->cc == CURLE_COULDNT_RESOLVE_PROXY;
		if ((body_fault || cc_retriable(x->cc)) && q->attempt < limit) {
			*delay = backoff_ms(c, q->attempt, -1);
			q->attempt++;
			return V_AGAIN;
		}
		if (body_fault)
			lp_err_set(&q->err, EIO, "%s %s: HTTP %ld: %s",
				   x->method, shown, x->status, x->fail_msg);
		else
			lp_err_set(&q->err, cc_errno(x->cc), "%s %s: %s",
				   x->method, shown,
				   x->errbuf[0] ? x->errbuf :
						  curl_easy_strerror(x->cc));
		if (q->attempt)
			lp_err_wrap(&q->err, "after %u retries", q->attempt);
		return V_FAIL;
	}

	if (x->status == 401 && h && q->auth_round < 2) {
		struct fetch_challenge ch;
		int have;

		if (fetch_challenge_parse(x->www_auth, &ch) < 0) {
			lp_err_set(&q->err, EACCES,
				   "%s %s: HTTP 401 without a usable "
				   "challenge",
				   x->method, shown);
			return V_FAIL;
		}
		pthread_mutex_lock(&c->lock);
		have = host_cred(c, h, &q->err);
		pthread_mutex_unlock(&c->lock);
		if (have < 0)
			return V_FAIL;
		q->auth_round++;
		if (ch.scheme == CHAL_BASIC) {
			if (!have || q->sent_basic) {
				lp_err_set(&q->err, EACCES, "%s %s: %s",
					   x->method, shown,
					   have ? "credentials rejected" :
						  "authentication required "
						  "(no credentials)");
				return V_FAIL;
			}
			pthread_mutex_lock(&c->lock);
			h->basic = true;
			pthread_mutex_unlock(&c->lock);
			return V_AGAIN;
		}
		if (q->sent_token)
			token_drop(c, h, q->ref->repo);
		if (get_token(c, h, q->ref, &ch, &q->fresh, &q->err) < 0)
			return V_FAIL;
		return V_AGAIN;
	}
	if (x->status == 401 && h) {
		lp_err_set(&q->err, EACCES,
			   "%s %s: access denied (HTTP 401 with fresh "
			   "credentials)",
			   x->method, shown);
		return V_FAIL;
	}
	if (status_retriable(x->status)) {
		*sick = true;
		if (q->attempt < limit) {
			*delay = backoff_ms(c, q->attempt, x->retry_after_ms);
			lp_debug("%s %s: HTTP %ld, retrying in %llu ms",
				 x->method, shown, x->status,
				 (unsigned long long)*delay);
			q->attempt++;
			return V_AGAIN;
		}
	}
	if (x->status < 200 || x->status > 299) {
		char sum[300];

		errbody_summary(x, sum, sizeof(sum));
		lp_err_set(&q->err, status_errno(x->status), "%s %s: HTTP %ld%s",
			   x->method, shown, x->status, sum);
		if (q->attempt)
			lp_err_wrap(&q->err, "after %u retries", q->attempt);
		return V_FAIL;
	}
	/* a complete answer to several ranges that left some out: those are
	 * asked for alone */
	if (x->sink == SINK_MULTI) {
		for (size_t k = 0; k < x->nmr; k++)
			if (x->mgot[k] != x->mr[k]->len) {
				snprintf(x->fail_msg, sizeof(x->fail_msg),
					 "its answer left out %s",
					 x->mp_on ? "some of them" :
						    "all but one part");
				x->multi_off = true;
				break;
			}
		return V_DONE;
	}
	/* a complete 2xx: is the body what was asked for? */
	if ((x->sink == SINK_RANGE && x->got != range_want(x)) ||
	    (x->sink == SINK_STREAM && x->blob_size &&
	     x->delivered != x->blob_size)) {
		*sick = true;
		if (q->attempt < limit) {
			*delay = backoff_ms(c, q->attempt, -1);
			q->attempt++;
			return V_AGAIN;
		}
		lp_err_set(&q->err, EIO, "%s %s: short body: %llu of %llu bytes",
			   x->method, shown,
			   (unsigned long long)(x->sink == SINK_RANGE ?
							x->got :
							x->delivered),
			   (unsigned long long)(x->sink == SINK_RANGE ?
							range_want(x) :
							x->blob_size));
		if (q->attempt)
			lp_err_wrap(&q->err, "after %u retries", q->attempt);
		return V_FAIL;
	}
	return V_DONE;
}

/* Takes q's exchange off m, ended with cc, and forgets its secrets. */
static void rq_detach(struct fetch_client *c, struct rq *q, CURLM *m,
		      CURLcode cc)
{
	struct xfer *x = q->x;

	curl_multi_remove_handle(m, q->e);
	xfer_finish(q->e, x, q->hdrs, cc);
	q->hdrs = NULL;
	pool_put(c, q->e);
	q->e = NULL;
	q->started = false;
	fetch_free_secret(q->bearer);
	q->bearer = NULL;
	x->bearer = NULL;
	if (q->h) {
		fetch_cred_release(&q->basic);
		x->basic = NULL;
	}
}

/* The client is cancelled: every request on m not done fails now, without
 * counting against its host. */
static void cancel_all(struct fetch_client *c, struct rq *qs, size_t n,
		       CURLM *m)
{
	for (size_t i = 0; i < n; i++) {
		struct rq *q = &qs[i];

		if (q->done)
			continue;
		if (q->started)
			rq_detach(c, q, m, CURLE_ABORTED_BY_CALLBACK);
		lp_err_clear(&q->err);
		lp_err_set(&q->err, ECANCELED, "%s: cancelled: the client is "
			   "closing", q->ref ? q->ref->registry : "registry");
		rq_fail(q, -ECANCELED);
	}
}

/* The exchange of q on m finished with cc. */
static void rq_done(struct fetch_client *c, struct rq *q, CURLM *m,
		    CURLcode cc)
{
	struct xfer *x = q->x;
	enum verdict v;
	uint64_t delay;
	bool sick;

	rq_detach(c, q, m, cc);
	trace(c, x, q->url, q->attempt, mono_sec() - q->t0);

	v = rq_verdict(c, q, &delay, &sick);
	if (q->h && q->h->mirror && v != V_AGAIN) {
		if (v == V_DONE) {
			mirror_result(c, q->h, true, false);
		} else if (v == V_FAIL) {
			if (sick)
				mirror_result(c, q->h, false, false);
			lp_debug("mirror %s: %s; trying the next host",
				 q->h->ep->url, q->err.msg);
			rq_next_hop(q);
			return;
		}
	}
	if (q->h && !q->h->mirror && (v == V_DONE || (v == V_FAIL && sick)))
		upstream_result(c, q->h, v == V_DONE, q->attempt + 1);
	if (x->multi_off && q->route) {
		bool was;

		pthread_mutex_lock(&c->lock);
		was = q->route->no_multi;
		q->route->no_multi = true;
		pthread_mutex_unlock(&c->lock);
		if (!was)
			lp_log(LP_LOG_INFO,
			       "%s: %s does not answer a request for several "
			       "ranges (%s); one range per request from now "
			       "on",
			       q->route->registry,
			       q->h ? q->h->host : "a host", x->fail_msg);
	}
	switch (v) {
	case V_AGAIN:
		q->due = mono_sec() + (double)delay / 1000.0;
		return;
	case V_DONE:
		q->r = 0;
		q->done = true;
		return;
	case V_FAIL:
	case V_FATAL:
		rq_fail(q, -EIO);
		return;
	}
}

/*
 * Runs requests to their end on one multi handle, at most max_concurrent
 * exchanges at a time; one waiting for its retry holds up no other.
 */
static void drive(struct fetch_client *c, struct rq *qs, size_t n)
{
	CURLM *m = multi_get(c);
	size_t left = 0, running = 0;

	if (m)
		live_add(c, m);

	for (size_t i = 0; i < n; i++)
		if (!qs[i].done)
			left++;
	if (!m) {
		for (size_t i = 0; i < n; i++) {
			if (qs[i].done)
				continue;
			lp_err_set(&qs[i].err, ENOMEM, "libcurl: no multi "
						       "handle");
			rq_fail(&qs[i], -ENOMEM);
		}
		return;
	}
	while (left) {
		double now = mono_sec(), next = now + 1.0;
		int still = 0, k;
		CURLMsg *msg;

		if (__atomic_load_n(&c->cancelled, __ATOMIC_ACQUIRE)) {
			cancel_all(c, qs, n, m);
			break;
		}
		for (size_t i = 0; i < n && running < c->o.max_concurrent;
		     i++) {
			struct rq *q = &qs[i];

			if (q->done || q->started || q->due > now)
				continue;
			if (rq_start(c, q, m))
				running++;
			else
				left--;
		}
		if (running)
			curl_multi_perform(m, &still);
		while ((msg = curl_multi_info_read(m, &k))) {
			struct rq *q = NULL;
			CURLcode cc = msg->data.result;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&q);
			running--;
			rq_done(c, q, m, cc);
			if (q->done)
				left--;
		}
		if (!left)
			break;
		/* sleep until a transfer has news or a retry is due */
		if (running < c->o.max_concurrent)
			for (size_t i = 0; i < n; i++)
				if (!qs[i].done && !qs[i].started &&
				    qs[i].due < next)
					next = qs[i].due;
		now = mono_sec();
		if (next <= now)
			continue;
		/* with no transfer too: fetch_client_cancel() wakes it */
		curl_multi_poll(m, NULL, 0, (int)((next - now) * 1000) + 1,
				NULL);
	}
	live_remove(c, m);
	multi_put(c, m);
}

void fetch_client_cancel(struct fetch_client *c)
{
	__atomic_store_n(&c->cancelled, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_live; i++)
		curl_multi_wakeup(c->live[i]);
	pthread_mutex_unlock(&c->lock);
}

/* Copies a request's failure into the caller's err. */
static int rq_result(struct rq *q, struct lp_err *err)
{
	if (q->r < 0)
		lp_err_set(err, q->r, "%s", q->err.msg[0] ? q->err.msg :
							    strerror(-q->r));
	return q->r;
}

/*
 * x against path below the API root of ref's registry (cap: what for);
 * upstream_only skips the mirrors.  *ret_mirror (may be NULL) says whether
 * a mirror answered.
 */
static int request_via(struct fetch_client *c, const struct fetch_ref *ref,
		       unsigned cap, const char *path, struct xfer *x,
		       bool upstream_only, bool *ret_mirror,
		       struct lp_err *err)
{
	struct rq *q = lp_xcalloc(1, sizeof(*q));
	struct lp_err rerr = { 0 };
	int r;

	q->route = route_get(c, ref, &rerr);
	if (!q->route) {
		free(q);
		return lp_err_set(err, rerr.code, "%s", rerr.msg);
	}
	q->x = x;
	q->ref = ref;
	q->cap = cap;
	q->path = path;
	q->upstream_only = upstream_only;
	drive(c, q, 1);
	r = rq_result(q, err);
	if (ret_mirror)
		*ret_mirror = r == 0 && q->h && q->h->mirror;
	rq_release(q);
	free(q);
	return r;
}

static int request(struct fetch_client *c, const struct fetch_ref *ref,
		   unsigned cap, const char *path, struct xfer *x,
		   struct lp_err *err)
{
	return request_via(c, ref, cap, path, x, false, NULL, err);
}

/* x against a full URL (the token server): retries, no auth. */
static int request_url(struct fetch_client *c, const char *url,
		       struct xfer *x, struct lp_err *err)
{
	struct rq *q = lp_xcalloc(1, sizeof(*q));
	int r;

	q->x = x;
	q->path = url;
	drive(c, q, 1);
	r = rq_result(q, err);
	rq_release(q);
	free(q);
	return r;
}

static int get_token(struct fetch_client *c, struct host *h,
		     const struct fetch_ref *ref,
		     const struct fetch_challenge *ch, char **ret_token,
		     struct lp_err *err)
{
	struct xfer x = { .method = "GET",
			  .sink = SINK_DYN,
			  .dyn_max = TOKEN_MAX };
	struct fetch_cred cred = { 0 };
	char url[4096], scope[600];
	json_t *root = NULL, *tok, *exp;
	struct token *t;
	int64_t ttl = 60;
	int r;

	if (strncasecmp(ch->realm, "https://", 8) &&
	    strncasecmp(ch->realm, "http://", 7))
		return lp_err_set(err, EACCES,
				  "token realm is not an "
				  "http(s) URL");
	if (ch->scope[0])
		snprintf(scope, sizeof(scope), "%s", ch->scope);
	else
		snprintf(scope, sizeof(scope), "repository:%s:pull", ref->repo);
	snprintf(url, sizeof(url), "%s%c", ch->realm,
		 strchr(ch->realm, '?') ? '&' : '?');
	if (ch->service[0]) {
		strncat(url, "service=", sizeof(url) - strlen(url) - 1);
		url_append_escaped(url, sizeof(url), ch->service);
		strncat(url, "&", sizeof(url) - strlen(url) - 1);
	}
	strncat(url, "scope=", sizeof(url) - strlen(url) - 1);
	url_append_escaped(url, sizeof(url), scope);

	pthread_mutex_lock(&c->lock);
	if (h->cred_state > 0) {
		cred.user = lp_xstrdup(h->cred.user);
		cred.pass = lp_xstrdup(h->cred.pass);
	}
	pthread_mutex_unlock(&c->lock);
	x.basic = cred.user ? &cred : NULL;
	r = request_url(c, url, &x, err);
	fetch_cred_release(&cred);
	if (r < 0) {
		free(x.dyn);
		return fetch_wrap(r, err, "token for %s", ref->repo);
	}
	root = x.dyn ? json_loadb((char *)x.dyn, x.dyn_len, 0, NULL) : NULL;
	if (x.dyn) {
		explicit_bzero(x.dyn, x.dyn_len);
		free(x.dyn);
	}
	tok = json_object_get(root, "token");
	if (!json_is_string(tok) || !json_string_length(tok))
		tok = json_object_get(root, "access_token");
	if (!json_is_string(tok) || !json_string_length(tok)) {
		json_decref(root);
		return lp_err_set(err, EACCES,
				  "token for %s: the token "
				  "server answered without a token",
				  ref->repo);
	}
	exp = json_object_get(root, "expires_in");
	if (json_is_integer(exp) && json_integer_value(exp) > 0)
		ttl = json_integer_value(exp);
	if (ttl > 86400)
		ttl = 86400;

	t = lp_xcalloc(1, sizeof(*t));
	t->repo = lp_xstrdup(ref->repo);
	t->token = lp_xstrdup(json_string_value(tok));
	json_decref(root);
	mono_now(&t->expires);
	/* refresh a little early so a request does not race the expiry */
	{
		int64_t ms = ttl * 1000 - (ttl > 40 ? 10000 : ttl * 250);

		t->expires.tv_sec += (time_t)(ms / 1000);
		t->expires.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (t->expires.tv_nsec >= 1000000000L) {
			t->expires.tv_sec++;
			t->expires.tv_nsec -= 1000000000L;
		}
	}
	*ret_token = lp_xstrdup(t->token);
	pthread_mutex_lock(&c->lock);
	for (struct token **pp = &h->tokens; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->repo, t->repo)) {
			struct token *old = *pp;

			*pp = old->next;
			old->next = NULL;
			tokens_free(old);
			break;
		}
	}
	t->next = h->tokens;
	h->tokens = t;
	pthread_mutex_unlock(&c->lock);
	lp_debug("%s: got a token for %s (%lld s)", h->host, ref->repo,
		 (long long)ttl);
	return 0;
}

/* ---- the public calls ---------------------------------------------------- */

static const char accept_manifests[] =
	FETCH_MT_OCI_INDEX ", " FETCH_MT_OCI_MANIFEST ", " FETCH_MT_DOCKER_LIST
			   ", " FETCH_MT_DOCKER_MANIFEST;

int fetch_get_manifest(struct fetch_client *c, const struct fetch_ref *ref,
		       const char *reference, struct fetch_manifest **ret,
		       struct lp_err *err)
{
	struct xfer x = { .method = "GET",
			  .accept = accept_manifests,
			  .sink = SINK_DYN,
			  .dyn_max = FETCH_MANIFEST_MAX };
	struct fetch_manifest *m = NULL;
	bool by_digest, mirror = false, upstream_only = false;
	char path[1024];
	int r;

	if (!reference)
		reference = fetch_ref_reference(ref);
	by_digest = fetch_digest_check(reference, strlen(reference)) == 0;
	snprintf(path, sizeof(path), "/%s/manifests/%s", ref->repo,
		 reference);
again:
	r = request_via(c, ref, by_digest ? FETCH_CAP_PULL : FETCH_CAP_RESOLVE,
			path, &x, upstream_only, &mirror, err);
	if (r < 0) {
		free(x.dyn);
		return fetch_wrap(r, err, "manifest %s/%s:%s", ref->registry,
				  ref->repo, reference);
	}
	r = fetch_manifest_parse(x.dyn ? x.dyn : (uint8_t *)"", x.dyn_len,
				 x.content_type, &m, mirror ? NULL : err);
	free(x.dyn);
	x.dyn = NULL;
	x.dyn_len = x.dyn_cap = 0;
	if (r == 0 && by_digest && !strncmp(reference, "sha256:", 7) &&
	    strcmp(m->digest, reference)) {
		fetch_manifest_free(m);
		m = NULL;
		r = -EBADMSG;
		if (!mirror)
			return lp_err_set(err, EBADMSG,
					  "manifest %s/%s@%s: content does "
					  "not match its digest",
					  ref->registry, ref->repo, reference);
	}
	if (r < 0 && mirror) {
		/* a mirror's bad copy is no reason to fail */
		lp_debug("manifest %s from a mirror is unusable (%s); asking "
			 "the upstream",
			 reference, strerror(-r));
		upstream_only = true;
		goto again;
	}
	if (r < 0)
		return fetch_wrap(r, err, "%s/%s:%s", ref->registry, ref->repo,
				  reference);
	*ret = m;
	return 0;
}

int fetch_get_image(struct fetch_client *c, const struct fetch_ref *ref,
		    const struct fetch_platform *p, struct fetch_manifest **ret,
		    struct fetch_manifest **ret_index, struct lp_err *err)
{
	struct fetch_manifest *m = NULL, *index = NULL;
	int r;

	r = fetch_get_manifest(c, ref, NULL, &m, err);
	if (r < 0)
		return r;
	/* an index may point at another index; two levels is plenty */
	for (int depth = 0; m->kind == FETCH_MANIFEST_INDEX; depth++) {
		const struct fetch_desc *d;
		struct fetch_manifest *next = NULL;

		if (depth == 2) {
			r = lp_err_set(err, ELOOP,
				       "%s/%s: indexes nested "
				       "too deeply",
				       ref->registry, ref->repo);
			goto fail;
		}
		r = fetch_index_select(m, p, &d, err);
		if (r < 0) {
			lp_err_wrap(err, "%s/%s", ref->registry, ref->repo);
			goto fail;
		}
		r = fetch_get_manifest(c, ref, d->digest, &next, err);
		if (r < 0)
			goto fail;
		if (index)
			fetch_manifest_free(m);
		else
			index = m;
		m = next;
	}
	*ret = m;
	if (ret_index)
		*ret_index = index;
	else
		fetch_manifest_free(index);
	return 0;
fail:
	if (m != index)
		fetch_manifest_free(m);
	fetch_manifest_free(index);
	return r;
}

int fetch_blob_head(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, uint64_t *ret_size, struct lp_err *err)
{
	struct xfer x = { .method = "HEAD", .sink = SINK_DISCARD };
	char path[1024];
	int r;

	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	snprintf(path, sizeof(path), "/%s/blobs/%s", ref->repo, digest);
	r = request(c, ref, FETCH_CAP_PULL, path, &x, err);
	if (r < 0)
		return fetch_wrap(r, err, "blob %s", digest);
	if (x.content_length < 0)
		return lp_err_set(err, EIO, "HEAD blob %s: no Content-Length",
				  digest);
	if (x.docker_digest[0] && strcmp(x.docker_digest, digest))
		return lp_err_set(err, EIO,
				  "HEAD blob %s: the registry "
				  "answered for another digest",
				  digest);
	*ret_size = (uint64_t)x.content_length;
	return 0;
}

int fetch_blob_tail(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, void *buf, size_t len,
		    uint64_t *ret_size, size_t *ret_len, struct lp_err *err)
{
	struct xfer x = { .method = "GET",
			  .sink = SINK_RANGE,
			  .has_range = true,
			  .suffix = true,
			  .len = len,
			  .buf = buf };
	char path[1024];
	int r;

	if (!len)
		return lp_err_set(err, EINVAL, "a tail of 0 bytes");
	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	snprintf(path, sizeof(path), "/%s/blobs/%s", ref->repo, digest);
	r = request(c, ref, FETCH_CAP_PULL, path, &x, err);
	if (r < 0)
		return fetch_wrap(r, err, "blob %.19s", digest);
	if (x.docker_digest[0] && strcmp(x.docker_digest, digest))
		return lp_err_set(err, EIO,
				  "GET blob %s: the registry answered for "
				  "another digest",
				  digest);
	/* got 0: a whole blob larger than len, only its size is known */
	if (!x.body_started ||
	    (x.got ? x.off + x.got != x.total : x.total <= len))
		return lp_err_set(err, EIO,
				  "GET blob %.19s: a tail of %llu bytes at "
				  "%llu of %llu",
				  digest, (unsigned long long)x.got,
				  (unsigned long long)x.off,
				  (unsigned long long)x.total);
	*ret_size = x.total;
	*ret_len = (size_t)x.got;
	return 0;
}

int fetch_blob_read(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, uint64_t blob_size, void *buf,
		    size_t len, uint64_t off, struct lp_err *err)
{
	struct xfer x = { .method = "GET",
			  .sink = SINK_RANGE,
			  .has_range = true,
			  .off = off,
			  .len = len,
			  .blob_size = blob_size,
			  .buf = buf };
	char path[1024];
	int r;

	if (!len)
		return 0;
	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	if (off + len < off || (blob_size && off + len > blob_size))
		return lp_err_set(err, EINVAL,
				  "blob %s: range %llu+%zu out "
				  "of bounds",
				  digest, (unsigned long long)off, len);
	snprintf(path, sizeof(path), "/%s/blobs/%s", ref->repo, digest);
	r = request(c, ref, FETCH_CAP_PULL, path, &x, err);
	if (r < 0)
		return fetch_wrap(r, err, "blob %.19s", digest);
	return 0;
}

/* Reads longer than this go alone; a request for several ranges asks for
 * at most MULTI_BYTES in all. */
#define MULTI_READ_MAX (256u << 10)
#define MULTI_BYTES (1u << 20)

static int read_cmp(const void *a, const void *b)
{
	const struct fetch_read *x = *(struct fetch_read *const *)a;
	const struct fetch_read *y = *(struct fetch_read *const *)b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* A request for one read. */
static struct xfer read_xfer(struct fetch_read *rd, uint64_t blob_size)
{
	return (struct xfer){ .method = "GET",
			      .sink = SINK_RANGE,
			      .has_range = true,
			      .off = rd->off,
			      .len = rd->len,
			      .blob_size = blob_size,
			      .buf = rd->buf,
			      .rd = rd };
}

/* Runs the requests xs[0..n) to their end; the first failure goes to
 * *rc and err. */
static void read_xfers(struct fetch_client *c, const struct fetch_ref *ref,
		       struct route *rt, const char *path, struct xfer *xs,
		       struct rq *qs, size_t n, int *rc, struct lp_err *err)
{
	for (size_t i = 0; i < n; i++) {
		qs[i].x = &xs[i];
		qs[i].ref = ref;
		qs[i].cap = FETCH_CAP_PULL;
		qs[i].path = path;
		qs[i].route = rt;
	}
	drive(c, qs, n);
	for (size_t i = 0; i < n; i++) {
		struct xfer *x = &xs[i];

		if (x->sink == SINK_MULTI)
			for (size_t k = 0; k < x->nmr; k++)
				x->mr[k]->result = qs[i].r;
		else
			x->rd->result = qs[i].r;
		if (qs[i].r < 0 && !*rc)
			*rc = rq_result(&qs[i], err);
		rq_release(&qs[i]);
	}
}

int fetch_blob_read_many(struct fetch_client *c, const struct fetch_ref *ref,
			 const char *digest, uint64_t blob_size,
			 struct fetch_read *r, size_t n, struct lp_err *err)
{
	struct lp_err rerr = { 0 };
	struct fetch_read **ord;
	struct route *rt;
	struct xfer *xs;
	struct rq *qs;
	uint64_t *mgot;
	char path[1024];
	size_t m = 0, ng = 0, nredo = 0;
	unsigned max_ranges;
	int rc = 0;

	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	for (size_t i = 0; i < n; i++) {
		r[i].result = 0;
		if (r[i].off + r[i].len < r[i].off ||
		    (blob_size && r[i].off + r[i].len > blob_size))
			return lp_err_set(err, EINVAL,
					  "blob %s: range %llu+%zu out of "
					  "bounds",
					  digest, (unsigned long long)r[i].off,
					  r[i].len);
	}
	rt = route_get(c, ref, &rerr);
	if (!rt)
		return lp_err_set(err, rerr.code, "%s", rerr.msg);
	pthread_mutex_lock(&c->lock);
	max_ranges = rt->no_multi ? 1 : c->o.max_ranges;
	pthread_mutex_unlock(&c->lock);
	snprintf(path, sizeof(path), "/%s/blobs/%s", ref->repo, digest);
	ord = lp_xcalloc(n ? n : 1, sizeof(*ord));
	mgot = lp_xcalloc(n ? n : 1, sizeof(*mgot));
	for (size_t i = 0; i < n; i++)
		if (r[i].len)
			ord[m++] = &r[i];
	qsort(ord, m, sizeof(*ord), read_cmp);
	/* the groups (at most m), then a request per read they left short */
	xs = lp_xcalloc(m ? 2 * m : 1, sizeof(*xs));
	qs = lp_xcalloc(m ? 2 * m : 1, sizeof(*qs));

	/* the short reads first, each part in offset order */
	if (max_ranges > 1) {
		struct fetch_read **tmp = lp_xcalloc(m ? m : 1, sizeof(*tmp));
		size_t ns = 0, nl = 0;

		for (size_t i = 0; i < m; i++)
			if (ord[i]->len <= MULTI_READ_MAX)
				ord[ns++] = ord[i];
			else
				tmp[nl++] = ord[i];
		memcpy(ord + ns, tmp, nl * sizeof(*tmp));
		free(tmp);
	}
	/* short reads next to each other share a request */
	for (size_t i = 0; i < m;) {
		uint64_t bytes = ord[i]->len;
		size_t j = i + 1;

		if (max_ranges > 1 && ord[i]->len <= MULTI_READ_MAX)
			while (j < m && j - i < max_ranges &&
			       ord[j]->len <= MULTI_READ_MAX &&
			       ord[j]->off >= read_end(ord[j - 1]) &&
			       bytes + ord[j]->len <= MULTI_BYTES)
				bytes += ord[j++]->len;
		if (j - i == 1)
			xs[ng] = read_xfer(ord[i], blob_size);
		else
			xs[ng] = (struct xfer){
				.method = "GET",
				.sink = SINK_MULTI,
				.off = ord[i]->off,
				.len = read_end(ord[j - 1]) - ord[i]->off,
				.blob_size = blob_size,
				.mr = ord + i,
				.nmr = j - i,
				.mgot = mgot + i,
			};
		ng++;
		i = j;
	}
	read_xfers(c, ref, rt, path, xs, qs, ng, &rc, err);

	/* what an answer to several ranges left short, range by range */
	for (size_t g = 0; g < ng; g++)
		for (size_t k = 0; xs[g].sink == SINK_MULTI && k < xs[g].nmr;
		     k++)
			if (!xs[g].mr[k]->result &&
			    xs[g].mgot[k] != xs[g].mr[k]->len)
				xs[ng + nredo++] =
					read_xfer(xs[g].mr[k], blob_size);
	if (nredo)
		read_xfers(c, ref, rt, path, xs + ng, qs + ng, nredo, &rc, err);
	if (rc < 0)
		lp_err_wrap(err, "blob %.19s", digest);
	free(qs);
	free(xs);
	free(mgot);
	free(ord);
	return rc;
}

int fetch_blob_stream(struct fetch_client *c, const struct fetch_ref *ref,
		      const char *digest,
		      int (*cb)(const void *data, size_t len, void *arg),
		      void *arg, struct lp_err *err)
{
	struct xfer x = { .method = "GET",
			  .sink = SINK_STREAM,
			  .cb = cb,
			  .cbarg = arg,
			  .stream = true };
	char path[1024], hex[72];
	uint8_t sum[32];
	int r;

	if (strncmp(digest, "sha256:", 7) ||
	    fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL,
				  "blob %s: only sha256 blobs "
				  "can be verified",
				  digest);
	snprintf(path, sizeof(path), "/%s/blobs/%s", ref->repo, digest);
	x.hash = lp_sha256_new();
	r = request(c, ref, FETCH_CAP_PULL, path, &x, err);
	lp_sha256_final(x.hash, sum);
	if (r < 0)
		return fetch_wrap(r, err, "blob %.19s", digest);
	lp_hex(sum, 32, hex);
	if (strcmp(hex, digest + 7))
		return lp_err_set(err, EBADMSG,
				  "blob %s: content does not "
				  "match its digest",
				  digest);
	return 0;
}
