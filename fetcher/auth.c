/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry credentials and WWW-Authenticate challenges.  Secrets live only
 * in struct fetch_cred and the client's token cache; they are wiped before
 * being freed and never formatted into messages.
 */
#define LP_MODNAME "fetcher"
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "fetcher/fetcher-int.h"

#define DOCKER_CONFIG_MAX (4u << 20)

void fetch_free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void fetch_cred_release(struct fetch_cred *c)
{
	if (!c)
		return;
	fetch_free_secret(c->user);
	fetch_free_secret(c->pass);
	c->user = c->pass = NULL;
}

static void cred_set(struct fetch_cred *c, const char *user, size_t ulen,
		     const char *pass, size_t plen)
{
	c->user = lp_xmalloc(ulen + 1);
	memcpy(c->user, user, ulen);
	c->user[ulen] = '\0';
	c->pass = lp_xmalloc(plen + 1);
	memcpy(c->pass, pass, plen);
	c->pass[plen] = '\0';
}

int fetch_cred_from_b64(const char *b64, size_t len, struct fetch_cred *ret)
{
	uint8_t *buf;
	const char *colon;
	int64_t n;

	while (len && isspace((unsigned char)b64[len - 1]))
		len--;
	buf = lp_xmalloc(len / 4 * 3 + 4);
	n = lp_base64_decode(b64, len, buf);
	if (n <= 0) {
		free(buf);
		return -EINVAL;
	}
	colon = memchr(buf, ':', (size_t)n);
	if (!colon || colon == (const char *)buf ||
	    memchr(buf, '\0', (size_t)n)) {
		explicit_bzero(buf, (size_t)n);
		free(buf);
		return -EINVAL;
	}
	cred_set(ret, (const char *)buf, (size_t)(colon - (const char *)buf),
		 colon + 1,
		 (size_t)n - (size_t)(colon - (const char *)buf) - 1);
	explicit_bzero(buf, (size_t)n);
	free(buf);
	return 0;
}

/* "https://index.docker.io/v1/" -> "index.docker.io", then aliases. */
static void norm_registry(const char *in, char *out, size_t size)
{
	const char *p = in, *end;
	size_t n;

	if (!strncasecmp(p, "https://", 8))
		p += 8;
	else if (!strncasecmp(p, "http://", 7))
		p += 7;
	end = strchr(p, '/');
	n = end ? (size_t)(end - p) : strlen(p);
	if (n >= size)
		n = size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)p[i]);
	out[n] = '\0';
	if (!strcmp(out, "index.docker.io") ||
	    !strcmp(out, "registry-1.docker.io"))
		snprintf(out, size, "docker.io");
}

int fetch_cred_from_docker_config(const char *data, size_t len,
				  const char *registry, struct fetch_cred *ret,
				  struct lp_err *err)
{
	json_error_t jerr;
	json_t *root, *auths, *v;
	const char *key;
	char want[256], have[256];
	int r = 0;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lp_err_set(err, EINVAL,
				  "docker config: bad JSON at line %d",
				  jerr.line);
	norm_registry(registry, want, sizeof(want));
	auths = json_object_get(root, "auths");
	if (!json_is_object(auths))
		goto out;
	json_object_foreach (auths, key, v) {
		json_t *a, *u, *p;

		norm_registry(key, have, sizeof(have));
		if (strcmp(have, want) || !json_is_object(v))
			continue;
		a = json_object_get(v, "auth");
		u = json_object_get(v, "username");
		p = json_object_get(v, "password");
		if (json_is_string(a) && json_string_length(a)) {
			if (fetch_cred_from_b64(json_string_value(a),
						json_string_length(a),
						ret) < 0) {
				r = lp_err_set(err, EINVAL,
					       "docker config: entry for %s: "
					       "malformed \"auth\"",
					       want);
				goto out;
			}
			r = 1;
			goto out;
		}
		if (json_is_string(u) && json_is_string(p) &&
		    json_string_length(u)) {
			cred_set(ret, json_string_value(u),
				 json_string_length(u), json_string_value(p),
				 json_string_length(p));
			r = 1;
			goto out;
		}
		/* partial entries (identitytoken, helpers) are ignored */
	}
out:
	json_decref(root);
	return r;
}

static int read_small_file(const char *path, char **ret, size_t *ret_len,
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
	if (st.st_size > DOCKER_CONFIG_MAX)
		return lp_err_set(err, EFBIG, "%s: too large", path);
	buf = lp_xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	buf[done] = '\0';
	*ret = buf;
	*ret_len = done;
	return 1;
}

int fetch_cred_resolve(const struct fetch_opts *o, const char *registry,
		       struct fetch_cred *ret, struct lp_err *err)
{
	const char *env = o->no_env_auth ? NULL : getenv("IMAGE_PULL_AUTH");
	char path[4096];
	char *data = NULL;
	size_t len = 0;
	int r;

	if (o->username && o->username[0]) {
		cred_set(ret, o->username, strlen(o->username),
			 o->password ? o->password : "",
			 o->password ? strlen(o->password) : 0);
		return 1;
	}
	if (env && env[0]) {
		if (fetch_cred_from_b64(env, strlen(env), ret) < 0)
			return lp_err_set(err, EINVAL,
					  "IMAGE_PULL_AUTH: not base64 of "
					  "user:password");
		return 1;
	}
	if (o->auth && o->auth[0]) {
		if (fetch_cred_from_b64(o->auth, strlen(o->auth), ret) < 0)
			return lp_err_set(err, EINVAL,
					  "auth: not base64 of user:password");
		return 1;
	}
	if (o->docker_config) {
		if (!o->docker_config[0])
			return 0;
		snprintf(path, sizeof(path), "%s", o->docker_config);
	} else if (getenv("DOCKER_CONFIG") && getenv("DOCKER_CONFIG")[0]) {
		snprintf(path, sizeof(path), "%s/config.json",
			 getenv("DOCKER_CONFIG"));
	} else if (getenv("HOME") && getenv("HOME")[0]) {
		snprintf(path, sizeof(path), "%s/.docker/config.json",
			 getenv("HOME"));
	} else {
		return 0;
	}
	r = read_small_file(path, &data, &len, err);
	if (r <= 0)
		return r;
	r = fetch_cred_from_docker_config(data, len, registry, ret, err);
	explicit_bzero(data, len);
	free(data);
	if (r < 0)
		return fetch_wrap(r, err, "%s", path);
	return r;
}

/* ---- WWW-Authenticate ---------------------------------------------------- */

static bool is_token_char(char c)
{
	return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c);
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * Reads a token or quoted-string at p into out (cut to size); returns the
 * position after it.
 */
static const char *read_value(const char *p, char *out, size_t size)
{
	size_t n = 0;

	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 < size)
				out[n++] = *p;
			p++;
		}
		if (*p == '"')
			p++;
	} else {
		while (*p && is_token_char(*p)) {
			if (n + 1 < size)
				out[n++] = *p;
			p++;
		}
	}
	out[n] = '\0';
	return p;
}

int fetch_challenge_parse(const char *v, struct fetch_challenge *ret)
{
	struct fetch_challenge best = { .scheme = CHAL_NONE };
	const char *p = v;

	while (*p) {
		struct fetch_challenge cur = { .scheme = CHAL_NONE };
		const char *s;
		size_t slen;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		s = p;
		while (*p && is_token_char(*p))
			p++;
		slen = (size_t)(p - s);
		if (!slen) {
			if (*p)
				p++;
			continue;
		}
		if (slen == 6 && !strncasecmp(s, "bearer", 6))
			cur.scheme = CHAL_BEARER;
		else if (slen == 5 && !strncasecmp(s, "basic", 5))
			cur.scheme = CHAL_BASIC;
		/* auth-params until the next scheme */
		for (;;) {
			const char *k, *save;
			char val[1024];
			size_t klen;

			save = p;
			p = skip_ws(p);
			k = p;
			while (*p && is_token_char(*p))
				p++;
			klen = (size_t)(p - k);
			p = skip_ws(p);
			if (!klen || *p != '=') {
				p = klen ? save : p;
				break;
			}
			p = skip_ws(p + 1);
			p = read_value(p, val, sizeof(val));
			if (klen == 5 && !strncasecmp(k, "realm", 5))
				fetch_strlcpy(cur.realm, sizeof(cur.realm),
					      val);
			else if (klen == 7 && !strncasecmp(k, "service", 7))
				fetch_strlcpy(cur.service, sizeof(cur.service),
					      val);
			else if (klen == 5 && !strncasecmp(k, "scope", 5))
				fetch_strlcpy(cur.scope, sizeof(cur.scope),
					      val);
			p = skip_ws(p);
			if (*p != ',')
				break;
			p++;
		}
		if (cur.scheme == CHAL_BEARER && best.scheme != CHAL_BEARER)
			best = cur;
		else if (cur.scheme == CHAL_BASIC && best.scheme == CHAL_NONE)
			best = cur;
	}
	*ret = best;
	return best.scheme == CHAL_NONE ? -ENOENT : 0;
}
