/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image resolution with the manifests kept in the blob cache.
 *
 * Documents: "manifest:<digest>" holds "<content-type>\n<raw bytes>";
 * "tag:<registry>/<repo>:<tag>" holds the digest the tag resolved to.
 */
#define LP_MODNAME "fetcher"
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher-int.h"

static void manifest_key(const char *digest, char *out, size_t size)
{
	snprintf(out, size, "manifest:%s", digest);
}

/* A manifest from the cache, re-verified against its digest; -ENOENT. */
static int load_manifest(struct fetch_cache *cache, const char *digest,
			 struct fetch_manifest **ret)
{
	char key[200];
	uint8_t *doc = NULL;
	size_t len = 0;
	const uint8_t *nl;
	int r;

	manifest_key(digest, key, sizeof(key));
	r = fetch_cache_doc_get(cache, key, -1, &doc, &len);
	if (r < 0)
		return r;
	nl = memchr(doc, '\n', len);
	r = -ENOENT;
	if (nl) {
		size_t hl = (size_t)(nl - doc);
		struct fetch_manifest *m = NULL;

		doc[hl] = '\0';
		if (fetch_manifest_parse(nl + 1, len - hl - 1, (char *)doc, &m,
					 NULL) == 0 &&
		    !strcmp(m->digest, digest)) {
			*ret = m;
			r = 0;
		} else {
			fetch_manifest_free(m);
		}
	}
	free(doc);
	return r;
}

static void store_manifest(struct fetch_cache *cache,
			   const struct fetch_manifest *m)
{
	char key[200];
	size_t hl = strlen(m->media_type);
	uint8_t *doc = lp_xmalloc(hl + 1 + m->raw_len);

	manifest_key(m->digest, key, sizeof(key));
	memcpy(doc, m->media_type, hl);
	doc[hl] = '\n';
	memcpy(doc + hl + 1, m->raw, m->raw_len);
	/* a cache that cannot be written only costs requests */
	fetch_cache_doc_put(cache, key, doc, hl + 1 + m->raw_len, NULL);
	free(doc);
}

static int get_by_digest(struct fetch_client *c, struct fetch_cache *cache,
			 const struct fetch_ref *ref, const char *digest,
			 struct fetch_manifest **ret, struct lp_err *err)
{
	int r;

	/* only sha256 can be re-verified on load */
	if (!strncmp(digest, "sha256:", 7) &&
	    load_manifest(cache, digest, ret) == 0)
		return 0;
	r = fetch_get_manifest(c, ref, digest, ret, err);
	if (r == 0 && !strncmp(digest, "sha256:", 7))
		store_manifest(cache, *ret);
	return r;
}

int fetch_get_image_cached(struct fetch_client *c, struct fetch_cache *cache,
			   const struct fetch_ref *ref,
			   const struct fetch_platform *p, int64_t tag_ttl_s,
			   struct fetch_manifest **ret,
			   struct fetch_manifest **ret_index,
			   struct lp_err *err)
{
	struct fetch_manifest *m = NULL, *index = NULL;
	char tagkey[600];
	uint8_t *doc = NULL;
	size_t len;
	int r;

	if (ref->digest) {
		r = get_by_digest(c, cache, ref, ref->digest, &m, err);
	} else {
		snprintf(tagkey, sizeof(tagkey), "tag:%s/%s:%s", ref->registry,
			 ref->repo, ref->tag);
		r = -ENOENT;
		if (tag_ttl_s != 0 &&
		    fetch_cache_doc_get(cache, tagkey, tag_ttl_s, &doc, &len) ==
			    0 &&
		    fetch_digest_check((char *)doc, len) == 0 &&
		    !strncmp((char *)doc, "sha256:", 7))
			r = load_manifest(cache, (char *)doc, &m);
		free(doc);
		if (r < 0) {
			r = fetch_get_manifest(c, ref, NULL, &m, err);
			if (r == 0) {
				store_manifest(cache, m);
				fetch_cache_doc_put(cache, tagkey, m->digest,
						    strlen(m->digest), NULL);
			}
		}
	}
	if (r < 0)
		return r;
	for (int depth = 0; m->kind == FETCH_MANIFEST_INDEX; depth++) {
		const struct fetch_desc *d;
		struct fetch_manifest *next = NULL;

		if (depth == 2) {
			r = lp_err_set(err, ELOOP,
				       "%s/%s: indexes nested too deeply",
				       ref->registry, ref->repo);
			goto fail;
		}
		r = fetch_index_select(m, p, &d, err);
		if (r < 0) {
			lp_err_wrap(err, "%s/%s", ref->registry, ref->repo);
			goto fail;
		}
		r = get_by_digest(c, cache, ref, d->digest, &next, err);
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

/* The config's bytes against its digest (sha256 only). */
static bool config_matches(const uint8_t *data, size_t len,
			   const char *digest)
{
	uint8_t sum[32], want[32];

	if (strncmp(digest, "sha256:", 7) ||
	    lp_parse_sha256_digest(digest, strlen(digest), want) < 0)
		return false;
	lp_sha256(data, len, sum);
	return !memcmp(sum, want, sizeof(sum));
}

int fetch_get_config_cached(struct fetch_client *c, struct fetch_cache *cache,
			    const struct fetch_ref *ref,
			    const struct fetch_manifest *m,
			    struct fetch_image_config **ret,
			    struct lp_err *err)
{
	const struct fetch_desc *d = &m->config;
	_cleanup_free_ uint8_t *data = NULL;
	char key[200];
	size_t len = 0;
	int r;

	if (m->kind != FETCH_MANIFEST_IMAGE || !d->digest || !d->digest[0])
		return lp_err_set(err, EINVAL, "the manifest has no config");
	if (d->size > FETCH_CONFIG_MAX)
		return lp_err_set(err, EINVAL, "config %s: %llu bytes, more "
				  "than %u", d->digest,
				  (unsigned long long)d->size,
				  FETCH_CONFIG_MAX);
	snprintf(key, sizeof(key), "config:%s", d->digest);
	if (cache && fetch_cache_doc_get(cache, key, -1, &data, &len) == 0 &&
	    config_matches(data, len, d->digest))
		return fetch_config_parse(data, len, ret, err);
	free(data);
	len = (size_t)d->size;
	data = lp_xmalloc(len ? len : 1);
	r = fetch_blob_read(c, ref, d->digest, d->size, data, len, 0, err);
	if (r < 0)
		return lp_err_wrap(err, "config %s", d->digest);
	if (!config_matches(data, len, d->digest))
		return lp_err_set(err, EBADMSG, "config %s: the registry's "
				  "bytes do not match the digest", d->digest);
	if (cache)
		fetch_cache_doc_put(cache, key, data, len, NULL);
	r = fetch_config_parse(data, len, ret, err);
	if (r < 0)
		lp_err_wrap(err, "config %s", d->digest);
	return r;
}
