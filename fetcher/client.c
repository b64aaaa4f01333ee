/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client: HTTP with libcurl, authentication, retries.
 *
 * Every transfer takes a CURL easy handle from the client's pool and gives
 * it back afterwards, so a handle (and its idle keep-alive connections)
 * is reused but never used by two threads at once.  Only the DNS cache and
 * TLS sessions are shared between handles, through a locked CURLSH;
 * libcurl does not support sharing a connection pool between threads.
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

/* What the client knows about one API host. */
struct host {
	struct host *next;
	char *host;
	char *registry;
	bool use_http;	/* skip_verify fell back to http */
	bool basic;	/* the registry asked for basic auth */
	int cred_state; /* 0 unresolved, 1 have cred, -1 none */
	struct fetch_cred cred;
	struct token *tokens;
};

struct fetch_client {
	int refs;	     /* atomic */
	struct fetch_opts o; /* strings owned */
	pthread_mutex_t lock;
	struct host *hosts;	  /* protected by lock */
	CURL **pool;		  /* protected by lock */
	size_t n_pool, cap_pool;  /* protected by lock */
	struct fetch_stats stats; /* protected by lock */
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
};

enum sink_kind { SINK_DISCARD, SINK_DYN, SINK_RANGE, SINK_STREAM };
enum xfer_fail {
	F_NONE,
	F_TOO_LONG,
	F_BAD_RANGE,
	F_PAST_END,
	F_TOO_BIG,
	F_CB,
	F_DONE,
};

struct xfer {
	/* the request */
	const char *method; /* "GET" or "HEAD" */
	const char *accept;
	bool has_range;
	uint64_t off, len;  /* len 0 = to the end */
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

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
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
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	if (c->share)
		curl_share_cleanup(c->share);
	while (c->hosts) {
		struct host *h = c->hosts;

		c->hosts = h->next;
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

/* "bytes A-B/T" (T may be "*"); total -1 when unknown. */
static bool parse_content_range(const char *s, uint64_t *a, uint64_t *b,
				int64_t *total)
{
	bool ok;

	if (strncasecmp(s, "bytes ", 6))
		return false;
	s += 6;
	while (*s == ' ')
		s++;
	*a = (uint64_t)parse_u64(s, &ok);
	if (!ok)
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	if (*s++ != '-')
		return false;
	*b = (uint64_t)parse_u64(s, &ok);
	if (!ok || *b < *a)
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	if (*s++ != '/')
		return false;
	if (*s == '*') {
		*total = -1;
		return s[1] == '\0';
	}
	*total = parse_u64(s, &ok);
	if (!ok)
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	return *s == '\0' && (uint64_t)*total > *b;
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

/* Checks a 206 or 200 answer to a range request before its first byte. */
static size_t range_start(struct xfer *x)
{
	uint64_t a, b;
	int64_t total;

	x->body_started = true;
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
	if (!parse_content_range(x->content_range, &a, &b, &total))
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

static void xfer_perform(struct fetch_client *c, CURL *e, struct xfer *x,
			 const char *url)
{
	struct curl_slist *hdrs = NULL;
	char range[64], line[4096];

	xfer_reset_response(x);
	x->fail = F_NONE;
	x->fail_msg[0] = '\0';
	x->errbuf[0] = '\0';
	x->body_bytes = 0;
	x->got = 0;
	x->dyn_len = 0;

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
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)c->o.connect_timeout_ms);
	if (!x->stream && c->o.timeout_ms)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)c->o.stall_timeout_s);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (c->o.skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->o.ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->o.ca_file);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	if (!strcmp(x->method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (x->has_range) {
		if (x->len)
			snprintf(range, sizeof(range), "%llu-%llu",
				 (unsigned long long)x->off,
				 (unsigned long long)(x->off + x->len - 1));
		else
			snprintf(range, sizeof(range), "%llu-",
				 (unsigned long long)x->off);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
	if (x->accept) {
		snprintf(line, sizeof(line), "Accept: %s", x->accept);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (x->bearer) {
		size_t n = strlen(x->bearer) + 32;
		char *h = lp_xmalloc(n);

		snprintf(h, n, "Authorization: Bearer %s", x->bearer);
		hdrs = curl_slist_append(hdrs, h);
		fetch_free_secret(h);
	} else if (x->basic) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERNAME, x->basic->user);
		curl_easy_setopt(e, CURLOPT_PASSWORD, x->basic->pass);
	}
	if (hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);

	x->cc = curl_easy_perform(e);
	if (x->cc == CURLE_WRITE_ERROR && x->fail == F_DONE)
		x->cc = CURLE_OK;
	/* a failed cut short still counts what arrived */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	/* the password lives in the handle until reset; reset now */
	if (x->basic)
		curl_easy_reset(e);
}

/* ---- requests with auth and retries -------------------------------------- */

static struct host *host_get(struct fetch_client *c,
			     const struct fetch_ref *ref)
{
	struct host *h;

	pthread_mutex_lock(&c->lock);
	for (h = c->hosts; h; h = h->next)
		if (!strcmp(h->host, ref->host))
			break;
	if (!h) {
		h = lp_xcalloc(1, sizeof(*h));
		h->host = lp_xstrdup(ref->host);
		h->registry = lp_xstrdup(ref->registry);
		h->next = c->hosts;
		c->hosts = h;
	}
	pthread_mutex_unlock(&c->lock);
	return h;
}

/* Resolves the host's credentials once; caller holds c->lock. */
static int host_cred(struct fetch_client *c, struct host *h, struct lp_err *err)
{
	int r;

	if (h->cred_state)
		return h->cred_state > 0;
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
	t.has_range = x->has_range;
	t.range_off = x->off;
	t.range_len = x->len;
	t.status = x->cc == CURLE_OK || x->fail ? x->status : 0;
	t.bytes = x->body_bytes;
	t.attempt = attempt;
	t.seconds = secs;
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

/*
 * Performs x against url (a registry path when h is set, else a full URL)
 * with retries and, for registry requests, authentication.  On success the
 * status is 2xx and x holds the response.
 */
static int request(struct fetch_client *c, struct host *h,
		   const struct fetch_ref *ref, const char *path,
		   struct xfer *x, struct lp_err *err)
{
	unsigned attempt = 0, auth_round = 0;
	bool sent_token = false, sent_basic = false;
	char *fresh = NULL; /* a token just fetched: used even if short-lived */
	char url[4096], shown[1024];
	CURL *e = pool_get(c);
	int r = 0;

	if (!e)
		return lp_err_set(err, ENOMEM, "libcurl: no easy handle");
	for (;;) {
		char *bearer = NULL;
		struct fetch_cred basic = { 0 };
		double t0;

		if (h) {
			bool http;

			pthread_mutex_lock(&c->lock);
			http = c->o.plain_http || h->use_http;
			snprintf(url, sizeof(url), "%s://%s%s",
				 http ? "http" : "https", h->host, path);
			struct token *t = token_find(h, ref->repo);

			sent_token = sent_basic = false;
			if (fresh) {
				bearer = TAKE_PTR(fresh);
			} else if (t && token_valid(t)) {
				bearer = lp_xstrdup(t->token);
			} else if (c->o.registry_token &&
				   c->o.registry_token[0] && auth_round == 0) {
				bearer = lp_xstrdup(c->o.registry_token);
			} else if (h->basic && h->cred_state > 0) {
				basic.user = lp_xstrdup(h->cred.user);
				basic.pass = lp_xstrdup(h->cred.pass);
			}
			pthread_mutex_unlock(&c->lock);
			sent_token = bearer != NULL;
			sent_basic = basic.user != NULL;
		} else {
			snprintf(url, sizeof(url), "%s", path);
		}
		fetch_redact_url(url, shown, sizeof(shown));
		x->bearer = bearer;
		if (h)
			x->basic = sent_basic ? &basic : NULL;
		if (x->sink == SINK_STREAM && x->delivered) {
			/* resume after what the consumer already has */
			x->has_range = true;
			x->off = x->delivered;
			x->len = 0;
		}
		t0 = mono_sec();
		xfer_perform(c, e, x, url);
		fetch_free_secret(bearer);
		x->bearer = NULL;
		fetch_cred_release(&basic);
		if (h)
			x->basic = NULL;
		trace(c, x, url, attempt, mono_sec() - t0);

		if (x->cc != CURLE_OK) {
			bool body_fault =
				x->fail == F_TOO_LONG || x->fail == F_BAD_RANGE;

			if (x->fail == F_CB) {
				r = lp_err_set(err, x->cb_err, "%s %s: %s",
					       x->method, shown,
					       strerror(-x->cb_err));
				break;
			}
			if (x->fail == F_PAST_END) {
				r = lp_err_set(err, ERANGE, "%s %s: %s",
					       x->method, shown, x->fail_msg);
				break;
			}
			if (x->fail == F_TOO_BIG) {
				r = lp_err_set(err, EFBIG, "%s %s: %s",
					       x->method, shown, x->fail_msg);
				break;
			}
			if (h && !c->o.plain_http && c->o.skip_verify &&
			    !h->use_http &&
			    (x->cc == CURLE_SSL_CONNECT_ERROR ||
			     x->cc == CURLE_COULDNT_CONNECT)) {
				lp_debug("%s: TLS failed, trying http",
					 h->host);
				pthread_mutex_lock(&c->lock);
				h->use_http = true;
				pthread_mutex_unlock(&c->lock);
				continue;
			}
			if ((body_fault || cc_retriable(x->cc)) &&
			    attempt < c->o.retry_limit) {
				sleep_ms(backoff_ms(c, attempt, -1));
				attempt++;
				continue;
			}
			if (body_fault)
				r = lp_err_set(err, EIO, "%s %s: HTTP %ld: %s",
					       x->method, shown, x->status,
					       x->fail_msg);
			else
				r = lp_err_set(
					err, cc_errno(x->cc), "%s %s: %s",
					x->method, shown,
					x->errbuf[0] ?
						x->errbuf :
						curl_easy_strerror(x->cc));
			if (attempt)
				lp_err_wrap(err, "after %u retries", attempt);
			break;
		}

		if (x->status == 401 && h && auth_round < 2) {
			struct fetch_challenge ch;
			int have;

			if (fetch_challenge_parse(x->www_auth, &ch) < 0) {
				r = lp_err_set(err, EACCES,
					       "%s %s: HTTP 401 without a "
					       "usable challenge",
					       x->method, shown);
				break;
			}
			pthread_mutex_lock(&c->lock);
			have = host_cred(c, h, err);
			pthread_mutex_unlock(&c->lock);
			if (have < 0) {
				r = have;
				break;
			}
			auth_round++;
			if (ch.scheme == CHAL_BASIC) {
				if (!have || sent_basic) {
					r = lp_err_set(err, EACCES, "%s %s: %s",
						       x->method, shown,
						       have ? "credentials "
							      "rejected" :
							      "authentication "
							      "required (no "
							      "credentials)");
					break;
				}
				pthread_mutex_lock(&c->lock);
				h->basic = true;
				pthread_mutex_unlock(&c->lock);
				continue;
			}
			if (sent_token)
				token_drop(c, h, ref->repo);
			r = get_token(c, h, ref, &ch, &fresh, err);
			if (r < 0)
				break;
			continue;
		}
		if (x->status == 401 && h) {
			r = lp_err_set(err, EACCES,
				       "%s %s: access denied "
				       "(HTTP 401 with fresh credentials)",
				       x->method, shown);
			break;
		}
		if (status_retriable(x->status) && attempt < c->o.retry_limit) {
			uint64_t d = backoff_ms(c, attempt, x->retry_after_ms);

			lp_debug("%s %s: HTTP %ld, retrying in %llu ms",
				 x->method, shown, x->status,
				 (unsigned long long)d);
			sleep_ms(d);
			attempt++;
			continue;
		}
		if (x->status < 200 || x->status > 299) {
			char sum[300];

			errbody_summary(x, sum, sizeof(sum));
			r = lp_err_set(err, status_errno(x->status),
				       "%s %s: HTTP %ld%s", x->method, shown,
				       x->status, sum);
			if (attempt)
				lp_err_wrap(err, "after %u retries", attempt);
			break;
		}
		/* a complete 2xx: is the body what was asked for? */
		if (x->sink == SINK_RANGE && x->got != x->len) {
			if (attempt < c->o.retry_limit) {
				sleep_ms(backoff_ms(c, attempt, -1));
				attempt++;
				continue;
			}
			r = lp_err_set(err, EIO,
				       "%s %s: short body: %llu of "
				       "%llu bytes",
				       x->method, shown,
				       (unsigned long long)x->got,
				       (unsigned long long)x->len);
			if (attempt)
				lp_err_wrap(err, "after %u retries", attempt);
			break;
		}
		if (x->sink == SINK_STREAM && x->blob_size &&
		    x->delivered != x->blob_size) {
			if (attempt < c->o.retry_limit) {
				sleep_ms(backoff_ms(c, attempt, -1));
				attempt++;
				continue;
			}
			r = lp_err_set(err, EIO,
				       "%s %s: short body: %llu of "
				       "%llu bytes",
				       x->method, shown,
				       (unsigned long long)x->delivered,
				       (unsigned long long)x->blob_size);
			break;
		}
		r = 0;
		break;
	}
	fetch_free_secret(fresh);
	pool_put(c, e);
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
	r = request(c, NULL, NULL, url, &x, err);
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
	struct host *h = host_get(c, ref);
	bool by_digest;
	char path[1024];
	int r;

	if (!reference)
		reference = fetch_ref_reference(ref);
	by_digest = fetch_digest_check(reference, strlen(reference)) == 0;
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", ref->repo,
		 reference);
	r = request(c, h, ref, path, &x, err);
	if (r < 0) {
		free(x.dyn);
		return fetch_wrap(r, err, "manifest %s/%s:%s", ref->registry,
				  ref->repo, reference);
	}
	r = fetch_manifest_parse(x.dyn ? x.dyn : (uint8_t *)"", x.dyn_len,
				 x.content_type, &m, err);
	free(x.dyn);
	if (r < 0)
		return fetch_wrap(r, err, "%s/%s:%s", ref->registry, ref->repo,
				  reference);
	if (by_digest && !strncmp(reference, "sha256:", 7) &&
	    strcmp(m->digest, reference)) {
		fetch_manifest_free(m);
		return lp_err_set(err, EBADMSG,
				  "manifest %s/%s@%s: content "
				  "does not match its digest",
				  ref->registry, ref->repo, reference);
	}
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
	struct host *h = host_get(c, ref);
	char path[1024];
	int r;

	if (fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL, "bad blob digest");
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->repo, digest);
	r = request(c, h, ref, path, &x, err);
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
	struct host *h = host_get(c, ref);
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
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->repo, digest);
	r = request(c, h, ref, path, &x, err);
	if (r < 0)
		return fetch_wrap(r, err, "blob %.19s", digest);
	return 0;
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
	struct host *h = host_get(c, ref);
	char path[1024], hex[72];
	uint8_t sum[32];
	int r;

	if (strncmp(digest, "sha256:", 7) ||
	    fetch_digest_check(digest, strlen(digest)) < 0)
		return lp_err_set(err, EINVAL,
				  "blob %s: only sha256 blobs "
				  "can be verified",
				  digest);
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->repo, digest);
	x.hash = lp_sha256_new();
	r = request(c, h, ref, path, &x, err);
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
