/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI image manifests and indexes, Docker v2 schema 2 manifests and manifest
 * lists, and platform selection.
 */
#define LP_MODNAME "fetcher"
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "fetcher/fetcher-int.h"

#define MAX_DESCRIPTORS 100000
#define MAX_ANNOTATIONS 4096

static char *jstrdup(json_t *v)
{
	return lp_xstrdup(json_is_string(v) ? json_string_value(v) : "");
}

static void kv_free(struct fetch_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

void fetch_platform_release(struct fetch_platform *p)
{
	if (!p)
		return;
	free(p->os);
	free(p->arch);
	free(p->variant);
	p->os = p->arch = p->variant = NULL;
}

static void desc_release(struct fetch_desc *d)
{
	free(d->media_type);
	free(d->digest);
	kv_free(d->annotations, d->n_annotations);
	fetch_platform_release(&d->platform);
	memset(d, 0, sizeof(*d));
}

void fetch_manifest_free(struct fetch_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	free(m->raw);
	desc_release(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		desc_release(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->n_manifests; i++)
		desc_release(&m->manifests[i]);
	free(m->manifests);
	kv_free(m->annotations, m->n_annotations);
	free(m);
}

const char *fetch_desc_annotation(const struct fetch_desc *d, const char *key)
{
	for (size_t i = 0; i < d->n_annotations; i++)
		if (!strcmp(d->annotations[i].key, key))
			return d->annotations[i].value;
	return NULL;
}

static int parse_annotations(json_t *obj, struct fetch_kv **ret, size_t *ret_n,
			     struct lp_err *err)
{
	const char *key;
	json_t *v;
	size_t n = 0;
	struct fetch_kv *kv;

	if (!obj)
		return 0;
	if (!json_is_object(obj))
		return lp_err_set(err, EINVAL, "annotations: not an object");
	if (json_object_size(obj) > MAX_ANNOTATIONS)
		return lp_err_set(err, EINVAL, "annotations: too many");
	kv = lp_xcalloc(json_object_size(obj) ? json_object_size(obj) : 1,
			sizeof(*kv));
	json_object_foreach (obj, key, v) {
		if (!json_is_string(v)) {
			kv_free(kv, n);
			return lp_err_set(err, EINVAL,
					  "annotation %.64s: not a string",
					  key);
		}
		kv[n].key = lp_xstrdup(key);
		kv[n].value = lp_xstrdup(json_string_value(v));
		n++;
	}
	*ret = kv;
	*ret_n = n;
	return 0;
}

static int parse_desc(json_t *o, struct fetch_desc *d, bool want_platform,
		      struct lp_err *err)
{
	json_t *mt, *dg, *sz, *pl;
	int r;

	if (!json_is_object(o))
		return lp_err_set(err, EINVAL, "descriptor: not an object");
	mt = json_object_get(o, "mediaType");
	dg = json_object_get(o, "digest");
	sz = json_object_get(o, "size");
	if (mt && !json_is_string(mt))
		return lp_err_set(err, EINVAL, "descriptor: bad mediaType");
	if (!json_is_string(dg) ||
	    fetch_digest_check(json_string_value(dg), json_string_length(dg)) <
		    0)
		return lp_err_set(err, EINVAL, "descriptor: bad digest");
	if (!json_is_integer(sz) || json_integer_value(sz) < 0)
		return lp_err_set(err, EINVAL, "descriptor %s: bad size",
				  json_string_value(dg));
	d->media_type = jstrdup(mt);
	d->digest = jstrdup(dg);
	d->size = (uint64_t)json_integer_value(sz);
	r = parse_annotations(json_object_get(o, "annotations"),
			      &d->annotations, &d->n_annotations, err);
	if (r < 0)
		return r;
	pl = json_object_get(o, "platform");
	if (want_platform && json_is_object(pl)) {
		json_t *os = json_object_get(pl, "os");
		json_t *arch = json_object_get(pl, "architecture");
		json_t *var = json_object_get(pl, "variant");

		if (!json_is_string(os) || !json_is_string(arch))
			return lp_err_set(err, EINVAL,
					  "descriptor %s: platform without "
					  "os/architecture",
					  d->digest);
		d->platform.os = jstrdup(os);
		d->platform.arch = jstrdup(arch);
		if (json_is_string(var) && json_string_length(var))
			d->platform.variant = jstrdup(var);
	}
	return 0;
}

static int parse_desc_array(json_t *a, const char *what,
			    struct fetch_desc **ret, size_t *ret_n,
			    bool want_platform, struct lp_err *err)
{
	struct fetch_desc *d;
	size_t n;

	if (!json_is_array(a))
		return lp_err_set(err, EINVAL, "%s: missing or not an array",
				  what);
	n = json_array_size(a);
	if (n > MAX_DESCRIPTORS)
		return lp_err_set(err, EINVAL, "%s: too many entries", what);
	d = lp_xcalloc(n ? n : 1, sizeof(*d));
	*ret = d;
	for (size_t i = 0; i < n; i++) {
		int r = parse_desc(json_array_get(a, i), &d[i], want_platform,
				   err);

		*ret_n = i + 1;
		if (r < 0)
			return fetch_wrap(r, err, "%s[%zu]", what, i);
	}
	*ret_n = n;
	return 0;
}

/* "application/json; charset=utf-8" -> "application/json" */
static void media_type_base(const char *ct, char *out, size_t size)
{
	size_t n = 0;

	if (!ct) {
		out[0] = '\0';
		return;
	}
	while (*ct == ' ')
		ct++;
	while (ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < size) {
		out[n] = (char)tolower((unsigned char)ct[n]);
		n++;
	}
	out[n] = '\0';
}

int fetch_manifest_parse(const void *data, size_t len, const char *content_type,
			 struct fetch_manifest **ret, struct lp_err *err)
{
	_cleanup_(fetch_manifest_freep) struct fetch_manifest *m = NULL;
	json_error_t jerr;
	json_t *root, *mt, *sv;
	char ct[128];
	const char *type;
	uint8_t sum[32];
	int r = 0;

	if (len > FETCH_MANIFEST_MAX)
		return lp_err_set(err, EFBIG,
				  "manifest: %zu bytes, larger "
				  "than %u",
				  len, FETCH_MANIFEST_MAX);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lp_err_set(err, EINVAL,
				  "manifest: bad JSON at line %d: %.80s",
				  jerr.line, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return lp_err_set(err, EINVAL, "manifest: not a JSON object");
	}
	m = lp_xcalloc(1, sizeof(*m));
	mt = json_object_get(root, "mediaType");
	sv = json_object_get(root, "schemaVersion");
	media_type_base(content_type, ct, sizeof(ct));
	if (mt && !json_is_string(mt)) {
		r = lp_err_set(err, EINVAL, "manifest: bad mediaType");
		goto out;
	}
	if (json_is_integer(sv) && json_integer_value(sv) == 1) {
		r = lp_err_set(err, EPROTONOSUPPORT,
			       "manifest: Docker schema 1 is not supported");
		goto out;
	}
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		r = lp_err_set(err, EINVAL, "manifest: schemaVersion is not 2");
		goto out;
	}
	type = mt ? json_string_value(mt) : ct;
	/*
	 * OCI makes mediaType optional: an index has "manifests", an image
	 * manifest has "config" and "layers".
	 */
	if (!type[0] || !strcmp(type, "application/json") ||
	    !strcmp(type, "application/octet-stream")) {
		if (json_object_get(root, "manifests"))
			type = FETCH_MT_OCI_INDEX;
		else if (json_object_get(root, "config"))
			type = FETCH_MT_OCI_MANIFEST;
	}
	if (!strcmp(type, FETCH_MT_OCI_MANIFEST) ||
	    !strcmp(type, FETCH_MT_DOCKER_MANIFEST)) {
		m->kind = FETCH_MANIFEST_IMAGE;
		r = parse_desc(json_object_get(root, "config"), &m->config,
			       false, err);
		if (r < 0) {
			lp_err_wrap(err, "manifest: config");
			goto out;
		}
		r = parse_desc_array(json_object_get(root, "layers"), "layers",
				     &m->layers, &m->n_layers, false, err);
	} else if (!strcmp(type, FETCH_MT_OCI_INDEX) ||
		   !strcmp(type, FETCH_MT_DOCKER_LIST)) {
		m->kind = FETCH_MANIFEST_INDEX;
		r = parse_desc_array(json_object_get(root, "manifests"),
				     "manifests", &m->manifests,
				     &m->n_manifests, true, err);
	} else {
		r = lp_err_set(err, EPROTONOSUPPORT,
			       "manifest: unsupported media type \"%.100s\"",
			       type);
		goto out;
	}
	if (r < 0) {
		lp_err_wrap(err, "manifest");
		goto out;
	}
	r = parse_annotations(json_object_get(root, "annotations"),
			      &m->annotations, &m->n_annotations, err);
	if (r < 0) {
		lp_err_wrap(err, "manifest");
		goto out;
	}
	m->media_type = lp_xstrdup(type);
	m->raw = lp_xmalloc(len ? len : 1);
	memcpy(m->raw, data, len);
	m->raw_len = len;
	lp_sha256(data, len, sum);
	memcpy(m->digest, "sha256:", 7);
	lp_hex(sum, 32, m->digest + 7);
	*ret = TAKE_PTR(m);
out:
	json_decref(root);
	return r;
}

/* ---- platforms ----------------------------------------------------------- */

static void set_str(char **dst, const char *s, size_t n)
{
	free(*dst);
	*dst = lp_xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		(*dst)[i] = (char)tolower((unsigned char)s[i]);
	(*dst)[n] = '\0';
}

/* architecture aliases as containerd's platforms package normalizes them */
static void platform_normalize(struct fetch_platform *p)
{
	static const struct {
		const char *from, *arch, *variant;
	} alias[] = {
		{ "x86_64", "amd64", NULL },  { "x86-64", "amd64", NULL },
		{ "aarch64", "arm64", NULL }, { "armhf", "arm", "v7" },
		{ "armel", "arm", "v6" },     { "i386", "386", NULL },
		{ "i686", "386", NULL },
	};

	if (!p->arch)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(alias); i++) {
		if (strcmp(p->arch, alias[i].from))
			continue;
		set_str(&p->arch, alias[i].arch, strlen(alias[i].arch));
		if (alias[i].variant && !p->variant)
			set_str(&p->variant, alias[i].variant,
				strlen(alias[i].variant));
		break;
	}
	if (!strcmp(p->arch, "arm64") && p->variant && !strcmp(p->variant, "8"))
		set_str(&p->variant, "v8", 2);
	if (!strcmp(p->arch, "arm") && p->variant && p->variant[0] >= '5' &&
	    p->variant[0] <= '8' && !p->variant[1]) {
		char v[3] = { 'v', p->variant[0], 0 };

		set_str(&p->variant, v, 2);
	}
}

int fetch_platform_parse(const char *s, struct fetch_platform *ret,
			 struct lp_err *err)
{
	struct fetch_platform p = { 0 };
	const char *parts[3];
	size_t lens[3], n = 0;
	const char *q = s;

	for (;;) {
		const char *slash = strchr(q, '/');
		size_t l = slash ? (size_t)(slash - q) : strlen(q);

		if (n == 3 || !l || l > 64)
			return lp_err_set(err, EINVAL,
					  "platform \"%.80s\": want "
					  "os/arch[/variant]",
					  s);
		for (size_t i = 0; i < l; i++)
			if (!isalnum((unsigned char)q[i]) && q[i] != '_' &&
			    q[i] != '-' && q[i] != '.')
				return lp_err_set(err, EINVAL,
						  "platform \"%.80s\": bad "
						  "character",
						  s);
		parts[n] = q;
		lens[n++] = l;
		if (!slash)
			break;
		q = slash + 1;
	}
	if (n < 2)
		return lp_err_set(err, EINVAL,
				  "platform \"%.80s\": want os/arch[/variant]",
				  s);
	set_str(&p.os, parts[0], lens[0]);
	set_str(&p.arch, parts[1], lens[1]);
	if (n == 3)
		set_str(&p.variant, parts[2], lens[2]);
	platform_normalize(&p);
	*ret = p;
	return 0;
}

void fetch_platform_host(struct fetch_platform *ret)
{
	const char *arch = "amd64", *variant = NULL;

#if defined(__x86_64__)
	arch = "amd64";
#elif defined(__aarch64__)
	arch = "arm64";
#elif defined(__arm__)
	arch = "arm";
	variant = "v7";
#elif defined(__i386__)
	arch = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	arch = "ppc64le";
#elif defined(__s390x__)
	arch = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
	arch = "riscv64";
#endif
	memset(ret, 0, sizeof(*ret));
	ret->os = lp_xstrdup("linux");
	ret->arch = lp_xstrdup(arch);
	ret->variant = variant ? lp_xstrdup(variant) : NULL;
}

void fetch_platform_format(const struct fetch_platform *p, char *buf,
			   size_t size)
{
	snprintf(buf, size, "%s/%s%s%s", p->os ? p->os : "?",
		 p->arch ? p->arch : "?", p->variant ? "/" : "",
		 p->variant ? p->variant : "");
}

static bool variant_eq(const char *arch, const char *a, const char *b)
{
	/* arm64 images usually omit "v8" */
	if (!strcmp(arch, "arm64")) {
		a = a ? a : "v8";
		b = b ? b : "v8";
	}
	if (!a || !b)
		return !a && !b;
	return !strcmp(a, b);
}

int fetch_index_select(const struct fetch_manifest *idx,
		       const struct fetch_platform *want,
		       const struct fetch_desc **ret, struct lp_err *err)
{
	struct fetch_platform host = { 0 };
	const struct fetch_desc *best = NULL;
	char avail[200] = "", wbuf[96];
	size_t used = 0;
	int best_score = -1;

	if (idx->kind != FETCH_MANIFEST_INDEX)
		return lp_err_set(err, EINVAL, "not an index");
	if (!want) {
		fetch_platform_host(&host);
		want = &host;
	}
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const struct fetch_desc *d = &idx->manifests[i];
		struct fetch_platform p = { 0 };
		int score;

		if (!d->platform.os)
			continue;
		p.os = lp_xstrdup(d->platform.os);
		p.arch = lp_xstrdup(d->platform.arch);
		p.variant = d->platform.variant ?
				    lp_xstrdup(d->platform.variant) :
				    NULL;
		for (char *c = p.os; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		for (char *c = p.arch; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		platform_normalize(&p);
		if (!strcmp(p.os, "unknown")) {
			fetch_platform_release(&p);
			continue;
		}
		if (used < sizeof(avail) - 1) {
			char b[96];
			int n;

			fetch_platform_format(&p, b, sizeof(b));
			n = snprintf(avail + used, sizeof(avail) - used, "%s%s",
				     used ? ", " : "", b);
			if (n > 0)
				used += (size_t)n;
			if (used >= sizeof(avail))
				used = sizeof(avail) - 1;
		}
		score = -1;
		if (!strcmp(p.os, want->os) && !strcmp(p.arch, want->arch)) {
			if (want->variant)
				score = variant_eq(p.arch, p.variant,
						   want->variant) ?
						2 :
						-1;
			else
				score = variant_eq(p.arch, p.variant, NULL) ?
						2 :
						1;
		}
		if (score > best_score) {
			best_score = score;
			best = d;
		}
		fetch_platform_release(&p);
	}
	fetch_platform_format(want, wbuf, sizeof(wbuf));
	fetch_platform_release(&host);
	if (!best || best_score < 0)
		return lp_err_set(err, ENOENT,
				  "no manifest for platform %s (available: "
				  "%s)",
				  wbuf, used ? avail : "none");
	*ret = best;
	return 0;
}

/* ---- image config: what a container of the image runs ------------------ */

void fetch_image_config_free(struct fetch_image_config *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	for (uint32_t i = 0; i < c->n_env; i++)
		free(c->env[i]);
	free(c->env);
	free(c->workdir);
	free(c);
}

/* appends the strings of JSON array a (null: nothing) to *v */
static int config_strings(json_t *a, const char *what, uint32_t max,
			  char ***v, uint32_t *n, struct lp_err *err)
{
	size_t i;
	json_t *s;

	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return lp_err_set(err, EINVAL, "config: %s is not an array",
				  what);
	if (json_array_size(a) > max - *n)
		return lp_err_set(err, EINVAL, "config: more than %u %s "
				  "strings", max, what);
	*v = lp_xrealloc(*v, (*n + json_array_size(a) + 1) * sizeof(**v));
	json_array_foreach(a, i, s) {
		if (!json_is_string(s))
			return lp_err_set(err, EINVAL, "config: %s[%zu] is "
					  "not a string", what, i);
		(*v)[(*n)++] = lp_xstrdup(json_string_value(s));
	}
	(*v)[*n] = NULL;
	return 0;
}

int fetch_config_parse(const void *data, size_t len,
		       struct fetch_image_config **ret, struct lp_err *err)
{
	struct fetch_image_config *c;
	json_error_t jerr;
	json_t *root, *cfg;
	int r = 0;

	if (len > FETCH_CONFIG_MAX)
		return lp_err_set(err, EINVAL, "config: %zu bytes, more than "
				  "%u", len, FETCH_CONFIG_MAX);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lp_err_set(err, EINVAL, "config: bad JSON: %s (line %d)",
				  jerr.text, jerr.line);
	if (!json_is_object(root)) {
		json_decref(root);
		return lp_err_set(err, EINVAL, "config: not a JSON object");
	}
	c = lp_xcalloc(1, sizeof(*c));
	cfg = json_object_get(root, "config");
	if (cfg && !json_is_null(cfg) && !json_is_object(cfg)) {
		r = lp_err_set(err, EINVAL, "config: \"config\" is not an "
			       "object");
	} else if (cfg && json_is_object(cfg)) {
		json_t *wd = json_object_get(cfg, "WorkingDir");

		r = config_strings(json_object_get(cfg, "Entrypoint"),
				   "Entrypoint", FETCH_CONFIG_MAX_ARGS,
				   &c->argv, &c->argc, err);
		if (r == 0)
			r = config_strings(json_object_get(cfg, "Cmd"), "Cmd",
					   FETCH_CONFIG_MAX_ARGS, &c->argv,
					   &c->argc, err);
		if (r == 0)
			r = config_strings(json_object_get(cfg, "Env"), "Env",
					   FETCH_CONFIG_MAX_ENV, &c->env,
					   &c->n_env, err);
		if (r == 0 && wd && !json_is_null(wd) && !json_is_string(wd))
			r = lp_err_set(err, EINVAL, "config: WorkingDir is "
				       "not a string");
		if (r == 0 && json_is_string(wd))
			c->workdir = lp_xstrdup(json_string_value(wd));
	}
	json_decref(root);
	if (r < 0) {
		fetch_image_config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}
