/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry hosts: containerd's hosts.toml (certs.d directories) and the
 * mirrors of a nydusd JSON backend config, both turned into a struct
 * fetch_hosts.  Written from containerd's docs/hosts.md and nydusd's
 * docs/nydusd.md; the client (client.c) decides how the hosts are used.
 */
#define LP_MODNAME "fetcher"
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/toml.h"
#include "fetcher/fetcher-int.h"

#define HOSTS_FILE_MAX (1u << 20)
#define URL_MAX 2048
#define MAX_MIRRORS 64
#define MAX_HEADERS 64
#define NYDUS_DEFAULT_INTERVAL 5
#define NYDUS_DEFAULT_LIMIT 5

/* ---- small helpers ------------------------------------------------------- */

int fetch_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
		    struct lp_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char *buf;
	size_t done = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) < 0)
		return lp_err_set(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return lp_err_set(err, EINVAL, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > max)
		return lp_err_set(err, EFBIG, "%s: larger than %zu bytes", path,
				  max);
	buf = lp_xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			free(buf);
			return lp_err_set(err, e, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	buf[done] = '\0';
	*ret = buf;
	*ret_len = done;
	return 1;
}

static char *dup_or_null(const char *s)
{
	return s ? lp_xstrdup(s) : NULL;
}

/* "index.docker.io", "registry-1.docker.io" -> "docker.io" */
static const char *docker_alias(const char *s)
{
	if (s && (!strcasecmp(s, "index.docker.io") ||
		  !strcasecmp(s, "registry-1.docker.io")))
		return "docker.io";
	return s;
}

bool fetch_hosts_match(const char *cfg_registry, const char *registry,
		       const char *host)
{
	const char *want;

	if (!cfg_registry)
		return true;
	want = docker_alias(cfg_registry);
	return (registry && !strcasecmp(want, docker_alias(registry))) ||
	       (host && !strcasecmp(want, docker_alias(host)));
}

int fetch_duration_ms(const char *s, uint64_t *ret)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = {
		/* "ms" before "m" so it is not read as minutes */
		{ "ns", 1e-6 }, { "us", 1e-3 }, { "\xc2\xb5s", 1e-3 },
		{ "ms", 1.0 },	{ "s", 1e3 },	{ "m", 60e3 },
		{ "h", 3600e3 },
	};
	double total = 0;

	if (!s || !*s)
		return -EINVAL;
	if (!strcmp(s, "0")) {
		*ret = 0;
		return 0;
	}
	while (*s) {
		double v = 0, scale = 1;
		bool digits = false, found = false;

		while (isdigit((unsigned char)*s)) {
			v = v * 10 + (*s++ - '0');
			digits = true;
			if (v > 1e12)
				return -EINVAL;
		}
		if (*s == '.') {
			s++;
			while (isdigit((unsigned char)*s)) {
				scale /= 10;
				v += (*s++ - '0') * scale;
				digits = true;
			}
		}
		if (!digits)
			return -EINVAL;
		for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
			size_t n = strlen(units[i].unit);

			if (!strncmp(s, units[i].unit, n)) {
				total += v * units[i].ms;
				s += n;
				found = true;
				break;
			}
		}
		if (!found || total > 86400e3)
			return -EINVAL;
	}
	*ret = (uint64_t)total + ((double)(uint64_t)total < total);
	return 0;
}

/* ---- endpoints ----------------------------------------------------------- */

static void endpoint_release(struct fetch_endpoint *e)
{
	free(e->url);
	free(e->host);
	free(e->root);
	free(e->ca_file);
	free(e->client_cert);
	free(e->client_key);
	free(e->proxy);
	free(e->ping_url);
	for (size_t i = 0; i < e->n_headers; i++) {
		free(e->headers[i].key);
		fetch_free_secret(e->headers[i].value);
	}
	free(e->headers);
	memset(e, 0, sizeof(*e));
}

void fetch_hosts_free(struct fetch_hosts *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n_mirrors; i++)
		endpoint_release(&h->mirrors[i]);
	free(h->mirrors);
	if (h->server) {
		endpoint_release(h->server);
		free(h->server);
	}
	free(h->registry);
	free(h->source);
	free(h);
}

static void endpoint_copy(struct fetch_endpoint *d,
			  const struct fetch_endpoint *s)
{
	*d = *s;
	d->url = dup_or_null(s->url);
	d->host = dup_or_null(s->host);
	d->root = dup_or_null(s->root);
	d->ca_file = dup_or_null(s->ca_file);
	d->client_cert = dup_or_null(s->client_cert);
	d->client_key = dup_or_null(s->client_key);
	d->proxy = dup_or_null(s->proxy);
	d->ping_url = dup_or_null(s->ping_url);
	d->headers = s->n_headers ? lp_xcalloc(s->n_headers,
					       sizeof(*d->headers)) :
				    NULL;
	for (size_t i = 0; i < s->n_headers; i++) {
		d->headers[i].key = lp_xstrdup(s->headers[i].key);
		d->headers[i].value = lp_xstrdup(s->headers[i].value);
	}
}

struct fetch_hosts *fetch_hosts_dup(const struct fetch_hosts *h)
{
	struct fetch_hosts *d;

	if (!h)
		return NULL;
	d = lp_xcalloc(1, sizeof(*d));
	d->registry = dup_or_null(h->registry);
	d->source = dup_or_null(h->source);
	if (h->n_mirrors) {
		d->mirrors = lp_xcalloc(h->n_mirrors, sizeof(*d->mirrors));
		for (size_t i = 0; i < h->n_mirrors; i++)
			endpoint_copy(&d->mirrors[i], &h->mirrors[i]);
		d->n_mirrors = h->n_mirrors;
	}
	if (h->server) {
		d->server = lp_xcalloc(1, sizeof(*d->server));
		endpoint_copy(d->server, h->server);
	}
	return d;
}

static bool host_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* Checks "name[:port]" or "[v6][:port]". */
static bool valid_host(const char *s, size_t n)
{
	size_t i = 0;

	if (!n)
		return false;
	if (s[0] == '[') {
		for (i = 1; i < n && s[i] != ']'; i++)
			if (!isxdigit((unsigned char)s[i]) && s[i] != ':' &&
			    s[i] != '.')
				return false;
		if (i >= n || i == 1)
			return false;
		i++;
	} else {
		for (; i < n && s[i] != ':'; i++)
			if (!host_char(s[i]))
				return false;
		if (!i)
			return false;
	}
	if (i == n)
		return true;
	if (s[i] != ':' || i + 1 == n || n - i - 1 > 5)
		return false;
	for (i++; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * Sets host, plain_http, root (and url) of e from "[scheme://]host[/path]";
 * *why says what is wrong on -EINVAL.
 */
static int endpoint_set_url(struct fetch_endpoint *e, const char *url,
			    bool override_path, const char **why)
{
	const char *p = url, *slash;
	char path[URL_MAX + 8];
	size_t n = 0;

	*why = NULL;
	if (strlen(url) >= URL_MAX)
		return *why = "URL too long", -EINVAL;
	for (const char *q = url; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return *why = "space or control character in the URL",
			       -EINVAL;
	e->plain_http = false;
	if (!strncasecmp(p, "https://", 8)) {
		p += 8;
	} else if (!strncasecmp(p, "http://", 7)) {
		p += 7;
		e->plain_http = true;
	} else if (strstr(p, "://")) {
		return *why = "scheme must be http or https", -EINVAL;
	}
	if (strpbrk(p, "?#"))
		return *why = "query or fragment in the URL", -EINVAL;
	slash = strchr(p, '/');
	if (memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p)))
		return *why = "credentials in the URL (use auth)", -EINVAL;
	if (!valid_host(p, slash ? (size_t)(slash - p) : strlen(p)))
		return *why = "not a host[:port]", -EINVAL;
	free(e->host);
	e->host = slash ? strndup(p, (size_t)(slash - p)) : lp_xstrdup(p);
	if (!e->host)
		abort();
	/* a clean path: no empty, "." or ".." segments, no trailing '/' */
	while (slash && *slash) {
		const char *seg = slash + 1, *end = strchr(seg, '/');
		size_t l = end ? (size_t)(end - seg) : strlen(seg);

		slash = end;
		if (!l || (l == 1 && seg[0] == '.'))
			continue;
		if (l == 2 && seg[0] == '.' && seg[1] == '.')
			return *why = "\"..\" in the URL path", -EINVAL;
		path[n++] = '/';
		memcpy(path + n, seg, l);
		n += l;
	}
	path[n] = '\0';
	if (!n)
		snprintf(path, sizeof(path), "/v2");
	else if (!override_path &&
		 (n < 3 || strcmp(path + n - 3, "/v2")))
		snprintf(path + n, sizeof(path) - n, "/v2");
	free(e->root);
	e->root = lp_xstrdup(path);
	free(e->url);
	e->url = lp_xstrdup(url);
	return 0;
}

static void header_add(struct fetch_endpoint *e, const char *k, const char *v)
{
	e->headers = lp_xrealloc(e->headers,
				 (e->n_headers + 1) * sizeof(*e->headers));
	e->headers[e->n_headers].key = lp_xstrdup(k);
	e->headers[e->n_headers].value = lp_xstrdup(v);
	e->n_headers++;
}

/* Header names are tokens; values must not break the request. */
static bool valid_header(const char *k, const char *v)
{
	if (!*k)
		return false;
	for (; *k; k++)
		if (!isalnum((unsigned char)*k) && !strchr("!#$%&'*+-.^_`|~", *k))
			return false;
	for (; *v; v++)
		if (*v == '\r' || *v == '\n')
			return false;
	return true;
}

/* ---- hosts.toml ---------------------------------------------------------- */

struct tctx {
	const char *file; /* for messages */
	const char *dir;  /* relative paths start here, or NULL */
	struct lp_err *err;
};

static int terr(struct tctx *t, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int terr(struct tctx *t, unsigned line, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lp_err_set(t->err, EINVAL, "%s: line %u: %s", t->file, line,
			  msg);
}

static const char *tname(const struct lp_toml_value *v)
{
	return lp_toml_type_name(v->type);
}

static char *abs_path(struct tctx *t, const char *p)
{
	char *out;
	size_t n;

	if (p[0] == '/' || !t->dir)
		return lp_xstrdup(p);
	n = strlen(t->dir) + strlen(p) + 2;
	out = lp_xmalloc(n);
	snprintf(out, n, "%s/%s", t->dir, p);
	return out;
}

/* A string or an array of strings: the first one ("" if empty). */
static int first_path(struct tctx *t, const char *where, const char *key,
		      const struct lp_toml_value *v, char **ret)
{
	if (v->type == LP_TOML_ARRAY) {
		for (size_t i = 0; i < v->arr.n; i++)
			if (v->arr.items[i]->type != LP_TOML_STRING)
				return terr(t, v->arr.items[i]->line,
					    "%s: %s: expected strings, got %s",
					    where, key, tname(v->arr.items[i]));
		if (v->arr.n > 1)
			lp_debug("%s: %s: %s: only the first of %zu files is "
				 "used",
				 t->file, where, key, v->arr.n);
		*ret = v->arr.n && v->arr.items[0]->s[0] ?
			       abs_path(t, v->arr.items[0]->s) :
			       NULL;
		return 0;
	}
	if (v->type != LP_TOML_STRING)
		return terr(t, v->line,
			    "%s: %s: expected a path or an array of "
			    "paths, got %s",
			    where, key, tname(v));
	*ret = v->s[0] ? abs_path(t, v->s) : NULL;
	return 0;
}

/* client = "c.pem" | ["c.pem", ...] | [["c.cert", "c.key"], ...] */
static int parse_client(struct tctx *t, const char *where,
			const struct lp_toml_value *v, struct fetch_endpoint *e)
{
	const struct lp_toml_value *first = v;

	if (v->type == LP_TOML_ARRAY) {
		if (!v->arr.n)
			return 0;
		first = v->arr.items[0];
	}
	if (first->type == LP_TOML_STRING) {
		free(e->client_cert);
		e->client_cert = first->s[0] ? abs_path(t, first->s) : NULL;
		return 0;
	}
	if (first->type == LP_TOML_ARRAY && first->arr.n >= 1 &&
	    first->arr.n <= 2 && first->arr.items[0]->type == LP_TOML_STRING &&
	    (first->arr.n == 1 ||
	     first->arr.items[1]->type == LP_TOML_STRING)) {
		const char *cert = first->arr.items[0]->s;
		const char *key = first->arr.n == 2 ? first->arr.items[1]->s :
						      "";

		free(e->client_cert);
		free(e->client_key);
		e->client_cert = cert[0] ? abs_path(t, cert) : NULL;
		e->client_key = key[0] ? abs_path(t, key) : NULL;
		return 0;
	}
	return terr(t, first->line,
		    "%s: client: expected a path, an array of paths or of "
		    "[cert, key] pairs",
		    where);
}

static int parse_caps(struct tctx *t, const char *where,
		      const struct lp_toml_value *v, unsigned *ret)
{
	unsigned caps = 0;

	if (v->type != LP_TOML_ARRAY)
		return terr(t, v->line,
			    "%s: capabilities: expected an array of "
			    "strings, got %s",
			    where, tname(v));
	for (size_t i = 0; i < v->arr.n; i++) {
		const struct lp_toml_value *c = v->arr.items[i];

		if (c->type != LP_TOML_STRING)
			return terr(t, c->line,
				    "%s: capabilities: expected strings, "
				    "got %s",
				    where, tname(c));
		if (!strcmp(c->s, "pull"))
			caps |= FETCH_CAP_PULL;
		else if (!strcmp(c->s, "resolve"))
			caps |= FETCH_CAP_RESOLVE;
		else if (!strcmp(c->s, "push"))
			caps |= FETCH_CAP_PUSH;
		else
			return terr(t, c->line,
				    "%s: capabilities: unknown capability "
				    "\"%.40s\" (pull, resolve or push)",
				    where, c->s);
	}
	*ret = caps;
	return 0;
}

static int parse_headers(struct tctx *t, const char *where,
			 const struct lp_toml_value *v,
			 struct fetch_endpoint *e)
{
	if (v->type != LP_TOML_TABLE)
		return terr(t, v->line, "%s: header: expected a table, got %s",
			    where, tname(v));
	for (size_t i = 0; i < v->tab.n; i++) {
		const char *k = v->tab.kv[i].key;
		const struct lp_toml_value *hv = v->tab.kv[i].val;
		size_t n = hv->type == LP_TOML_ARRAY ? hv->arr.n : 1;

		for (size_t j = 0; j < n; j++) {
			const struct lp_toml_value *s =
				hv->type == LP_TOML_ARRAY ? hv->arr.items[j] :
							    hv;

			if (s->type != LP_TOML_STRING)
				return terr(t, s->line,
					    "%s: header \"%.60s\": expected a "
					    "string or an array of strings, "
					    "got %s",
					    where, k, tname(s));
			if (!valid_header(k, s->s))
				return terr(t, s->line,
					    "%s: header \"%.60s\": bad name "
					    "or a line break in the value",
					    where, k);
			if (e->n_headers >= MAX_HEADERS)
				return terr(t, s->line,
					    "%s: more than %d headers", where,
					    MAX_HEADERS);
			header_add(e, k, s->s);
		}
	}
	return 0;
}

static int want_type(struct tctx *t, const char *where, const char *key,
		     const struct lp_toml_value *v, enum lp_toml_type type)
{
	if (v->type == type)
		return 0;
	return terr(t, v->line, "%s: %s: expected %s, got %s", where, key,
		    lp_toml_type_name(type), tname(v));
}

/*
 * The host keys of a table (the root for the server, or a [host."…"]
 * table) into e.  url_key/url_line: the URL to set (NULL = none).
 */
static int parse_host_table(struct tctx *t, const char *where,
			    const struct lp_toml_value *tab, const char *url,
			    unsigned url_line, struct fetch_endpoint *e)
{
	bool override_path = false;
	const char *why;
	int r;

	e->caps = FETCH_CAP_ALL;
	for (size_t i = 0; i < tab->tab.n; i++) {
		const char *k = tab->tab.kv[i].key;
		const struct lp_toml_value *v = tab->tab.kv[i].val;

		if (!strcmp(k, "capabilities")) {
			r = parse_caps(t, where, v, &e->caps);
		} else if (!strcmp(k, "skip_verify")) {
			r = want_type(t, where, k, v, LP_TOML_BOOL);
			if (!r)
				e->skip_verify = v->b;
		} else if (!strcmp(k, "override_path")) {
			r = want_type(t, where, k, v, LP_TOML_BOOL);
			if (!r)
				override_path = v->b;
		} else if (!strcmp(k, "ca")) {
			free(e->ca_file);
			e->ca_file = NULL;
			r = first_path(t, where, k, v, &e->ca_file);
		} else if (!strcmp(k, "client")) {
			r = parse_client(t, where, v, e);
		} else if (!strcmp(k, "header")) {
			r = parse_headers(t, where, v, e);
		} else if (!strcmp(k, "dial_timeout")) {
			uint64_t ms = 0;

			r = want_type(t, where, k, v, LP_TOML_STRING);
			if (!r && (fetch_duration_ms(v->s, &ms) < 0 || !ms))
				r = terr(t, v->line,
					 "%s: dial_timeout: \"%.40s\" is not a "
					 "duration such as \"1s\" or "
					 "\"500ms\"",
					 where, v->s);
			if (!r)
				e->connect_timeout_ms = (unsigned)ms;
		} else if (!strcmp(k, "proxy")) {
			r = want_type(t, where, k, v, LP_TOML_STRING);
			if (!r && !strstr(v->s, "://"))
				r = terr(t, v->line,
					 "%s: proxy: \"%.60s\" is not an "
					 "absolute URL",
					 where, v->s);
			if (!r) {
				free(e->proxy);
				e->proxy = lp_xstrdup(v->s);
			}
		} else {
			/* server, host, and keys of newer containerd
			 * versions: not ours to judge */
			r = 0;
		}
		if (r < 0)
			return r;
	}
	if (url && endpoint_set_url(e, url, override_path, &why) < 0)
		return terr(t, url_line, "%s: \"%.80s\": %s", where, url, why);
	if (!url && override_path)
		lp_debug("%s: override_path without server is ignored",
			 t->file);
	return 0;
}

static bool has_host_keys(const struct lp_toml_value *root)
{
	static const char *const keys[] = { "server",	   "capabilities",
					    "skip_verify", "override_path",
					    "ca",	   "client",
					    "header",	   "dial_timeout",
					    "proxy" };

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (lp_toml_table_get(root, keys[i]))
			return true;
	return false;
}

int fetch_hosts_parse_toml(const char *data, size_t len, const char *path,
			   const char *registry, struct fetch_hosts **ret,
			   struct lp_err *err)
{
	_cleanup_(lp_toml_freep) struct lp_toml_value *root = NULL;
	_cleanup_(fetch_hosts_freep) struct fetch_hosts *h = NULL;
	_cleanup_free_ char *dir = NULL;
	const struct lp_toml_value *server, *hosts;
	struct tctx t = { .file = path ? path : "hosts.toml", .err = err };
	int r;

	if (path && strchr(path, '/')) {
		dir = lp_xstrdup(path);
		*strrchr(dir, '/') = '\0';
		if (!dir[0]) {
			free(dir);
			dir = lp_xstrdup("/");
		}
		t.dir = dir;
	}
	r = lp_toml_parse(data, len, &root, err);
	if (r < 0)
		return fetch_wrap(r, err, "%s", t.file);
	h = lp_xcalloc(1, sizeof(*h));
	h->registry = dup_or_null(registry);
	h->source = dup_or_null(path);

	server = lp_toml_table_get(root, "server");
	if (server && server->type != LP_TOML_STRING)
		return terr(&t, server->line,
			    "server: expected a URL string, got %s",
			    tname(server));
	if (has_host_keys(root)) {
		h->server = lp_xcalloc(1, sizeof(*h->server));
		r = parse_host_table(&t, "server", root,
				     server ? server->s : NULL,
				     server ? server->line : 0, h->server);
		if (r < 0)
			return r;
	}

	hosts = lp_toml_table_get(root, "host");
	if (hosts && hosts->type != LP_TOML_TABLE)
		return terr(&t, hosts->line,
			    "host: expected tables [host.\"URL\"], got %s",
			    tname(hosts));
	for (size_t i = 0; hosts && i < hosts->tab.n; i++) {
		const char *url = hosts->tab.kv[i].key;
		const struct lp_toml_value *v = hosts->tab.kv[i].val;
		char where[128];

		snprintf(where, sizeof(where), "host \"%.90s\"", url);
		if (v->type != LP_TOML_TABLE)
			return terr(&t, v->line, "%s: expected a table, got %s",
				    where, tname(v));
		if (h->n_mirrors >= MAX_MIRRORS)
			return terr(&t, v->line, "more than %d hosts",
				    MAX_MIRRORS);
		h->mirrors = lp_xrealloc(h->mirrors, (h->n_mirrors + 1) *
							     sizeof(*h->mirrors));
		memset(&h->mirrors[h->n_mirrors], 0, sizeof(*h->mirrors));
		h->n_mirrors++;
		r = parse_host_table(&t, where, v, url, v->line,
				     &h->mirrors[h->n_mirrors - 1]);
		if (r < 0)
			return r;
		h->mirrors[h->n_mirrors - 1].add_ns = true;
	}
	*ret = TAKE_PTR(h);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && !strcmp(s + n - k, suffix);
}

/*
 * docker's certs.d pattern: NAME.crt are CAs, NAME.cert with NAME.key a
 * client certificate.  Returns 1 with a server entry, 0 if none.
 */
static int load_cert_dir(const char *dir, const char *registry,
			 struct fetch_hosts **ret)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct fetch_endpoint e = { .caps = FETCH_CAP_ALL };
	struct fetch_hosts *h;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		lp_grow((void **)&names, sizeof(*names), &cap, n + 1);
		names[n++] = lp_xstrdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[4096];

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
				     names[i]) >= sizeof(path))
			continue;
		if (ends_with(names[i], ".crt") && !e.ca_file) {
			e.ca_file = lp_xstrdup(path);
		} else if (ends_with(names[i], ".cert") && !e.client_cert) {
			char key[4096];
			struct stat st;

			snprintf(key, sizeof(key), "%.*s.key",
				 (int)(strlen(path) - 5), path);
			if (stat(key, &st) == 0) {
				e.client_cert = lp_xstrdup(path);
				e.client_key = lp_xstrdup(key);
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (!e.ca_file && !e.client_cert)
		return 0;
	h = lp_xcalloc(1, sizeof(*h));
	h->registry = dup_or_null(registry);
	h->source = lp_xstrdup(dir);
	h->server = lp_xcalloc(1, sizeof(*h->server));
	*h->server = e;
	*ret = h;
	return 1;
}

int fetch_hosts_load_dir(const char *dir, const char *registry,
			 struct fetch_hosts **ret, struct lp_err *err)
{
	char cands[3][300];
	size_t nc = 0;
	const char *rb = strrchr(registry, ']');
	const char *colon = strrchr(registry, ':');

	if (!registry[0] || strchr(registry, '/') || registry[0] == '.' ||
	    strlen(registry) > 255)
		return lp_err_set(err, EINVAL,
				  "registry \"%.60s\": not a host name",
				  registry);
	if (colon && (!rb || colon > rb)) {
		snprintf(cands[nc++], sizeof(cands[0]), "%.*s_%s_",
			 (int)(colon - registry), registry, colon + 1);
		snprintf(cands[nc++], sizeof(cands[0]), "%s", registry);
	} else {
		snprintf(cands[nc++], sizeof(cands[0]), "%s", registry);
	}
	snprintf(cands[nc++], sizeof(cands[0]), "_default");

	for (size_t i = 0; i < nc; i++) {
		char path[4096], file[4200];
		struct stat st;
		char *data = NULL;
		size_t len = 0;
		int r;

		snprintf(path, sizeof(path), "%s/%s", dir, cands[i]);
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(file, sizeof(file), "%s/hosts.toml", path);
		r = fetch_read_file(file, HOSTS_FILE_MAX, &data, &len, err);
		if (r < 0)
			return r;
		if (r == 0)
			return load_cert_dir(path, registry, ret);
		r = fetch_hosts_parse_toml(data, len, file, registry, ret, err);
		free(data);
		if (r < 0)
			return r;
		lp_debug("%s: hosts from %s", registry, file);
		return 1;
	}
	return 0;
}

/* ---- nydusd JSON --------------------------------------------------------- */

static int jerr_type(struct lp_err *err, const char *file, const char *where,
		     const char *want)
{
	return lp_err_set(err, EINVAL, "%s: %s: expected %s", file, where,
			  want);
}

static int j_uint(json_t *o, const char *key, const char *file,
		  const char *where, unsigned max, unsigned *ret,
		  struct lp_err *err)
{
	json_t *v = json_object_get(o, key);
	char w[160];

	if (!v || json_is_null(v))
		return 0;
	snprintf(w, sizeof(w), "%s.%s", where, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)max)
		return lp_err_set(err, EINVAL,
				  "%s: %s: expected an integer from 0 to %u",
				  file, w, max);
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int j_bool(json_t *o, const char *key, const char *file,
		  const char *where, bool *ret, struct lp_err *err)
{
	json_t *v = json_object_get(o, key);
	char w[160];

	if (!v || json_is_null(v))
		return 0;
	snprintf(w, sizeof(w), "%s.%s", where, key);
	if (!json_is_boolean(v))
		return jerr_type(err, file, w, "true or false");
	*ret = json_is_true(v);
	return 0;
}

static int j_url(json_t *o, const char *key, const char *file,
		 const char *where, bool required, const char **ret,
		 struct lp_err *err)
{
	json_t *v = json_object_get(o, key);
	char w[160];

	snprintf(w, sizeof(w), "%s.%s", where, key);
	if (!v || json_is_null(v) ||
	    (json_is_string(v) && !json_string_length(v))) {
		if (required)
			return lp_err_set(err, EINVAL, "%s: %s: missing", file,
					  w);
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return jerr_type(err, file, w, "a URL string");
	*ret = json_string_value(v);
	return 0;
}

/* One entry of "mirrors" (or the "proxy" object) into e. */
static int nydus_mirror(json_t *m, const char *file, const char *where,
			bool proxy, struct fetch_endpoint *e,
			struct lp_err *err)
{
	const char *url = NULL, *ping = NULL, *why;
	json_t *hdrs;
	char w[160];
	int r;

	if (!json_is_object(m))
		return jerr_type(err, file, where, "an object");
	e->caps = FETCH_CAP_PULL;
	e->failure_limit = NYDUS_DEFAULT_LIMIT;
	e->health_interval_s = NYDUS_DEFAULT_INTERVAL;
	r = j_url(m, proxy ? "url" : "host", file, where, true, &url, err);
	if (r < 0)
		return r;
	if (endpoint_set_url(e, url, false, &why) < 0)
		return lp_err_set(err, EINVAL, "%s: %s.%s: \"%.80s\": %s", file,
				  where, proxy ? "url" : "host", url, why);
	if ((r = j_url(m, "ping_url", file, where, false, &ping, err)) < 0)
		return r;
	if (ping) {
		if (strncasecmp(ping, "http://", 7) &&
		    strncasecmp(ping, "https://", 8))
			return lp_err_set(err, EINVAL,
					  "%s: %s.ping_url: \"%.80s\" is not "
					  "an http(s) URL",
					  file, where, ping);
		e->ping_url = lp_xstrdup(ping);
	}
	if ((r = j_uint(m, proxy ? "check_interval" : "health_check_interval",
			file, where, 86400, &e->health_interval_s, err)) < 0 ||
	    (r = j_uint(m, "failure_limit", file, where, 1000000,
			&e->failure_limit, err)) < 0 ||
	    (r = j_bool(m, "auth_through", file, where, &e->auth_through,
			err)) < 0)
		return r;
	if (!e->health_interval_s)
		e->health_interval_s = NYDUS_DEFAULT_INTERVAL;
	if (!e->failure_limit)
		e->failure_limit = NYDUS_DEFAULT_LIMIT;
	if (proxy)
		e->failure_limit = 1; /* nydusd: one failed ping disables it */
	hdrs = json_object_get(m, "headers");
	snprintf(w, sizeof(w), "%s.headers", where);
	if (hdrs && !json_is_null(hdrs)) {
		const char *k;
		json_t *v;

		if (!json_is_object(hdrs))
			return jerr_type(err, file, w, "an object of strings");
		json_object_foreach (hdrs, k, v) {
			if (!json_is_string(v))
				return lp_err_set(err, EINVAL,
						  "%s: %s.%s: expected a "
						  "string",
						  file, w, k);
			if (!valid_header(k, json_string_value(v)))
				return lp_err_set(err, EINVAL,
						  "%s: %s.%.60s: bad name or "
						  "a line break in the value",
						  file, w, k);
			if (e->n_headers >= MAX_HEADERS)
				return lp_err_set(err, EINVAL,
						  "%s: %s: more than %d", file,
						  w, MAX_HEADERS);
			header_add(e, k, json_string_value(v));
		}
	}
	return 0;
}

int fetch_hosts_parse_nydusd(const char *data, size_t len, const char *path,
			     struct fetch_hosts **ret, struct lp_err *err)
{
	_cleanup_(fetch_hosts_freep) struct fetch_hosts *h = NULL;
	const char *file = path ? path : "nydusd config";
	json_t *root, *cfg = NULL, *mirrors = NULL, *proxy = NULL, *v;
	json_error_t jerr;
	const char *prefix = "mirrors";
	int r = 0;

	root = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
	if (!root)
		return lp_err_set(err, EINVAL, "%s: line %d, column %d: %s",
				  file, jerr.line, jerr.column, jerr.text);
	h = lp_xcalloc(1, sizeof(*h));
	h->source = dup_or_null(path);
	if (json_is_array(root)) {
		mirrors = root;
	} else if (json_is_object(root)) {
		json_t *dev = json_object_get(root, "device");

		cfg = root;
		if (json_is_object(dev)) {
			json_t *be = json_object_get(dev, "backend");

			cfg = json_is_object(be) ?
				      json_object_get(be, "config") :
				      NULL;
			if (cfg && !json_is_object(cfg)) {
				r = jerr_type(err, file,
					      "device.backend.config",
					      "an object");
				goto out;
			}
			prefix = "device.backend.config.mirrors";
		}
		if (cfg) {
			mirrors = json_object_get(cfg, "mirrors");
			proxy = json_object_get(cfg, "proxy");
			v = json_object_get(cfg, "host");
			if (json_is_string(v) && json_string_length(v))
				h->registry = lp_xstrdup(
					docker_alias(json_string_value(v)));
		}
	} else {
		r = jerr_type(err, file, "(top level)",
			      "a config object or an array of mirrors");
		goto out;
	}
	if (mirrors && !json_is_null(mirrors) && !json_is_array(mirrors)) {
		r = jerr_type(err, file, prefix, "an array");
		goto out;
	}
	if (json_is_array(mirrors)) {
		size_t n = json_array_size(mirrors);

		if (n > MAX_MIRRORS) {
			r = lp_err_set(err, EINVAL, "%s: %s: more than %d",
				       file, prefix, MAX_MIRRORS);
			goto out;
		}
		h->mirrors = n ? lp_xcalloc(n, sizeof(*h->mirrors)) : NULL;
		for (size_t i = 0; i < n; i++) {
			char where[80];

			snprintf(where, sizeof(where), "%s[%zu]", prefix, i);
			h->n_mirrors = i + 1;
			r = nydus_mirror(json_array_get(mirrors, i), file,
					 where, false, &h->mirrors[i], err);
			if (r < 0)
				goto out;
		}
	}
	if (proxy && json_is_object(proxy) &&
	    json_is_string(json_object_get(proxy, "url")) &&
	    json_string_length(json_object_get(proxy, "url"))) {
		struct fetch_endpoint e = { 0 };
		bool fallback = true;

		r = j_bool(proxy, "fallback", file, "proxy", &fallback, err);
		if (r == 0)
			r = nydus_mirror(proxy, file, "proxy", true, &e, err);
		if (r < 0) {
			endpoint_release(&e);
			goto out;
		}
		if (fallback) {
			/* nydusd tries the proxy before any mirror */
			h->mirrors = lp_xrealloc(h->mirrors,
						 (h->n_mirrors + 1) *
							 sizeof(*h->mirrors));
			memmove(h->mirrors + 1, h->mirrors,
				h->n_mirrors * sizeof(*h->mirrors));
			h->mirrors[0] = e;
			h->n_mirrors++;
		} else {
			e.caps = FETCH_CAP_ALL;
			e.auth_through = true; /* it is the only way */
			h->server = lp_xcalloc(1, sizeof(*h->server));
			*h->server = e;
		}
	}
	*ret = TAKE_PTR(h);
out:
	json_decref(root);
	return r;
}

int fetch_hosts_load_nydusd(const char *path, struct fetch_hosts **ret,
			    struct lp_err *err)
{
	char *data = NULL;
	size_t len = 0;
	int r;

	r = fetch_read_file(path, HOSTS_FILE_MAX * 4, &data, &len, err);
	if (r == 0)
		return lp_err_set(err, ENOENT, "%s: no such file", path);
	if (r < 0)
		return r;
	r = fetch_hosts_parse_nydusd(data, len, path, ret, err);
	/* the config may hold an auth secret */
	explicit_bzero(data, len);
	free(data);
	return r;
}
