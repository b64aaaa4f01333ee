/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references, with the grammar and Docker Hub normalization of the
 * distribution "reference" package.
 */
#define LP_MODNAME "fetcher"
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher-int.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex_lower(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int fetch_digest_check(const char *s, size_t len)
{
	size_t hexlen;

	if (len > 7 && !memcmp(s, "sha256:", 7))
		hexlen = 64, s += 7, len -= 7;
	else if (len > 7 && !memcmp(s, "sha512:", 7))
		hexlen = 128, s += 7, len -= 7;
	else
		return -EINVAL;
	if (len != hexlen)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!is_hex_lower(s[i]))
			return -EINVAL;
	return 0;
}

/*
 * path-component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
 */
static bool path_component_ok(const char *s, size_t len)
{
	size_t i = 0;

	if (!len || !is_lower_alnum(s[0]))
		return false;
	while (i < len) {
		while (i < len && is_lower_alnum(s[i]))
			i++;
		if (i == len)
			return true;
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < len && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < len && s[i] == '-')
				i++;
		} else {
			return false;
		}
		/* a separator must be followed by an alphanumeric */
		if (i == len || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool port_ok(const char *s, size_t len)
{
	unsigned v = 0;

	if (!len || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v <= 65535;
}

/*
 * host: domain components [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? joined by
 * dots, or a bracketed IPv6 address; then an optional :port.
 */
static bool domain_ok(const char *s, size_t len)
{
	size_t i = 0;

	if (!len)
		return false;
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);
		size_t n;

		if (!close)
			return false;
		n = (size_t)(close - s) - 1;
		if (n < 2)
			return false;
		for (size_t k = 1; k <= n; k++)
			if (!is_hex_lower(s[k]) &&
			    !(s[k] >= 'A' && s[k] <= 'F') && s[k] != ':' &&
			    s[k] != '.')
				return false;
		i = n + 2;
	} else {
		for (;;) {
			if (i >= len || !is_alnum(s[i]))
				return false;
			while (i < len && (is_alnum(s[i]) || s[i] == '-'))
				i++;
			if (s[i - 1] == '-')
				return false;
			if (i < len && s[i] == '.') {
				i++;
				continue;
			}
			break;
		}
	}
	if (i == len)
		return true;
	if (s[i] != ':')
		return false;
	return port_ok(s + i + 1, len - i - 1);
}

static bool tag_ok(const char *s, size_t len)
{
	if (!len || len > TAG_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (is_alnum(c) || c == '_')
			continue;
		if (i > 0 && (c == '.' || c == '-'))
			continue;
		return false;
	}
	return true;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = lp_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void fetch_ref_release(struct fetch_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->host);
	free(r->repo);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

/* Shown in messages: the input, cut and with controls masked. */
static void quote_input(const char *s, size_t len, char *out, size_t size)
{
	size_t n = len < size - 1 ? len : size - 1;

	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	out[n] = '\0';
}

int fetch_ref_parse(const char *s, size_t len, struct fetch_ref *ret,
		    struct lp_err *err)
{
	struct fetch_ref r = { 0 };
	const char *at, *name, *slash, *colon = NULL;
	size_t name_len, dom_len = 0;
	char shown[96];
	bool has_domain = false;

	quote_input(s, len, shown, sizeof(shown));
	if (!len)
		return lp_err_set(err, EINVAL, "empty image reference");
	if (memchr(s, '\0', len))
		return lp_err_set(err, EINVAL,
				  "image reference \"%s\": "
				  "contains NUL",
				  shown);

	at = memchr(s, '@', len);
	name_len = at ? (size_t)(at - s) : len;
	if (at) {
		size_t dlen = len - name_len - 1;

		if (fetch_digest_check(at + 1, dlen) < 0)
			return lp_err_set(err, EINVAL,
					  "image reference \"%s\": bad digest "
					  "(want sha256:<64 hex>)",
					  shown);
		r.digest = xstrndup(at + 1, dlen);
	}

	/* a tag is after the last ':' that follows the last '/' */
	for (size_t i = name_len; i > 0; i--) {
		if (s[i - 1] == '/')
			break;
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	}
	/* "host:port" alone (no '/') is a name with a tag, as docker says */
	if (colon) {
		size_t tlen = name_len - (size_t)(colon - s) - 1;

		if (!tag_ok(colon + 1, tlen)) {
			fetch_ref_release(&r);
			return lp_err_set(err, EINVAL,
					  "image reference \"%s\": bad tag",
					  shown);
		}
		r.tag = xstrndup(colon + 1, tlen);
		name_len = (size_t)(colon - s);
	}

	name = s;
	if (!name_len) {
		fetch_ref_release(&r);
		return lp_err_set(err, EINVAL,
				  "image reference \"%s\": no repository",
				  shown);
	}

	slash = memchr(name, '/', name_len);
	if (slash) {
		size_t first = (size_t)(slash - name);
		bool upper = false;

		for (size_t i = 0; i < first; i++)
			upper |= name[i] >= 'A' && name[i] <= 'Z';
		if (memchr(name, '.', first) || memchr(name, ':', first) ||
		    (first == 9 && !memcmp(name, "localhost", 9)) || upper) {
			has_domain = true;
			dom_len = first;
		}
	}
	if (has_domain) {
		if (!domain_ok(name, dom_len)) {
			fetch_ref_release(&r);
			return lp_err_set(err, EINVAL,
					  "image reference \"%s\": bad "
					  "registry host",
					  shown);
		}
		r.registry = xstrndup(name, dom_len);
		name += dom_len + 1;
		name_len -= dom_len + 1;
	} else {
		r.registry = lp_xstrdup("docker.io");
	}

	/* the repository path */
	for (size_t i = 0, start = 0; i <= name_len; i++) {
		if (i < name_len && name[i] != '/')
			continue;
		if (!path_component_ok(name + start, i - start)) {
			fetch_ref_release(&r);
			return lp_err_set(err, EINVAL,
					  "image reference \"%s\": bad "
					  "repository name (lower-case "
					  "letters, digits and separators)",
					  shown);
		}
		start = i + 1;
	}

	if (!strcmp(r.registry, "index.docker.io") ||
	    !strcmp(r.registry, "registry-1.docker.io")) {
		free(r.registry);
		r.registry = lp_xstrdup("docker.io");
	}
	if (!strcmp(r.registry, "docker.io")) {
		if (!memchr(name, '/', name_len)) {
			r.repo = lp_xmalloc(name_len + 9);
			memcpy(r.repo, "library/", 8);
			memcpy(r.repo + 8, name, name_len);
			r.repo[name_len + 8] = '\0';
		} else {
			r.repo = xstrndup(name, name_len);
		}
		r.host = lp_xstrdup("registry-1.docker.io");
	} else {
		r.repo = xstrndup(name, name_len);
		r.host = lp_xstrdup(r.registry);
	}
	/* docker counts the normalized name: "docker.io/library/x" */
	if (strlen(r.registry) + 1 + strlen(r.repo) > NAME_MAX_LEN) {
		fetch_ref_release(&r);
		return lp_err_set(err, EINVAL,
				  "image reference \"%s\": name longer than "
				  "%d characters",
				  shown, NAME_MAX_LEN);
	}
	if (!r.tag && !r.digest)
		r.tag = lp_xstrdup("latest");
	*ret = r;
	return 0;
}

char *fetch_ref_string(const struct fetch_ref *r)
{
	size_t n = strlen(r->registry) + strlen(r->repo) + 4 +
		   (r->tag ? strlen(r->tag) : 0) +
		   (r->digest ? strlen(r->digest) : 0);
	char *s = lp_xmalloc(n);

	snprintf(s, n, "%s/%s%s%s%s%s", r->registry, r->repo, r->tag ? ":" : "",
		 r->tag ? r->tag : "", r->digest ? "@" : "",
		 r->digest ? r->digest : "");
	return s;
}

const char *fetch_ref_reference(const struct fetch_ref *r)
{
	return r->digest ? r->digest : r->tag;
}
