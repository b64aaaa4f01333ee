/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the fetcher's parsers (no network): references, digests,
 * manifests and indexes, platform selection, WWW-Authenticate challenges,
 * credentials, URL redaction, range planning, image configs, answers to
 * multi-range requests.
 */
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher-int.h"

#include "check.h"

#define STREQ(a, b) ((a) && (b) && !strcmp((a), (b)))

static const char D1[] = "sha256:"
			 "0123456789abcdef0123456789abcdef"
			 "0123456789abcdef0123456789abcdef";

static void ref_ok(const char *in, const char *registry, const char *host,
		   const char *repo, const char *tag, const char *digest)
{
	struct fetch_ref r;
	struct lp_err err = { 0 };

	if (fetch_ref_parse(in, strlen(in), &r, &err) < 0) {
		fprintf(stderr, "ref %s: %s\n", in, err.msg);
		failures++;
		return;
	}
	CHECK(STREQ(r.registry, registry));
	CHECK(STREQ(r.host, host));
	CHECK(STREQ(r.repo, repo));
	if (tag)
		CHECK(STREQ(r.tag, tag));
	else
		CHECK(!r.tag);
	if (digest)
		CHECK(STREQ(r.digest, digest));
	else
		CHECK(!r.digest);
	if (failures)
		fprintf(stderr, "  (%s -> %s %s %s %s %s)\n", in, r.registry,
			r.host, r.repo, r.tag ? r.tag : "-",
			r.digest ? r.digest : "-");
	fetch_ref_release(&r);
}

static void ref_bad(const char *in)
{
	struct fetch_ref r;
	struct lp_err err = { 0 };

	if (fetch_ref_parse(in, strlen(in), &r, &err) == 0) {
		fprintf(stderr, "ref %s: accepted\n", in);
		failures++;
		fetch_ref_release(&r);
		return;
	}
	CHECK(err.code == -EINVAL && err.msg[0]);
}

static void test_refs(void)
{
	char buf[512];
	struct fetch_ref r;

	ref_ok("ubuntu", "docker.io", "registry-1.docker.io", "library/ubuntu",
	       "latest", NULL);
	ref_ok("ubuntu:22.04", "docker.io", "registry-1.docker.io",
	       "library/ubuntu", "22.04", NULL);
	ref_ok("docker.io/ubuntu", "docker.io", "registry-1.docker.io",
	       "library/ubuntu", "latest", NULL);
	ref_ok("index.docker.io/library/ubuntu:x", "docker.io",
	       "registry-1.docker.io", "library/ubuntu", "x", NULL);
	ref_ok("someone/app", "docker.io", "registry-1.docker.io",
	       "someone/app", "latest", NULL);
	ref_ok("localhost/app", "localhost", "localhost", "app", "latest",
	       NULL);
	ref_ok("localhost:5000/a/b/c:v1", "localhost:5000", "localhost:5000",
	       "a/b/c", "v1", NULL);
	ref_ok("127.0.0.1:5000/busybox:org", "127.0.0.1:5000", "127.0.0.1:5000",
	       "busybox", "org", NULL);
	ref_ok("ghcr.io/stargz-containers/python:3.9-esgz", "ghcr.io",
	       "ghcr.io", "stargz-containers/python", "3.9-esgz", NULL);
	snprintf(buf, sizeof(buf), "quay.io/a/b@%s", D1);
	ref_ok(buf, "quay.io", "quay.io", "a/b", NULL, D1);
	snprintf(buf, sizeof(buf), "quay.io/a/b:t@%s", D1);
	ref_ok(buf, "quay.io", "quay.io", "a/b", "t", D1);
	ref_ok("[::1]:5000/x", "[::1]:5000", "[::1]:5000", "x", "latest", NULL);
	ref_ok("Registry/x", "Registry", "Registry", "x", "latest", NULL);
	ref_ok("a__b/c-d.e--f_g", "docker.io", "registry-1.docker.io",
	       "a__b/c-d.e--f_g", "latest", NULL);

	ref_bad("");
	ref_bad("UPPER");
	ref_bad("a//b");
	ref_bad("/a");
	ref_bad("a/");
	ref_bad("a:");
	ref_bad("a:-x");
	ref_bad("a@sha256:abc");
	ref_bad("a@md5:0123456789abcdef0123456789abcdef");
	ref_bad("host:99999/a");
	ref_bad("-host.io/a");
	ref_bad("a_-b");
	ref_bad("a___b");
	ref_bad("a/.b");
	ref_bad("quay.io/a b");
	memset(buf, 'a', 300);
	buf[300] = '\0';
	ref_bad(buf);
	/* tags are at most 128 characters */
	snprintf(buf, sizeof(buf), "a:");
	memset(buf + 2, 't', 129);
	buf[131] = '\0';
	ref_bad(buf);

	/* the length argument bounds the parse */
	CHECK(fetch_ref_parse("ubuntu:22.04", 6, &r, NULL) == 0);
	CHECK(STREQ(r.tag, "latest"));
	{
		char *s = fetch_ref_string(&r);

		CHECK(STREQ(s, "docker.io/library/ubuntu:latest"));
		free(s);
	}
	CHECK(STREQ(fetch_ref_reference(&r), "latest"));
	fetch_ref_release(&r);

	CHECK(fetch_digest_check(D1, strlen(D1)) == 0);
	CHECK(fetch_digest_check(D1, strlen(D1) - 1) < 0);
	CHECK(fetch_digest_check("sha256:0123456789ABCDEF0123456789abcdef"
				 "0123456789abcdef0123456789abcdef",
				 71) < 0);
}

static const char oci_manifest[] =
	"{\"schemaVersion\":2,"
	"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+"
	"json\",\"digest\":\"sha256:"
	"1111111111111111111111111111111111111111111111111111111111111111\","
	"\"size\":7023},"
	"\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+"
	"gzip\",\"digest\":\"sha256:"
	"2222222222222222222222222222222222222222222222222222222222222222\","
	"\"size\":32654,\"annotations\":{\"containerd.io/snapshot/stargz/"
	"toc.digest\":\"sha256:"
	"3333333333333333333333333333333333333333333333333333333333333333\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
	"\"digest\":\"sha256:"
	"4444444444444444444444444444444444444444444444444444444444444444\","
	"\"size\":16724}]}";

static const char docker_list[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker."
	"distribution.manifest.list.v2+json\",\"manifests\":["
	"{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+"
	"json\",\"digest\":\"sha256:"
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
	"\"size\":1,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\","
	"\"variant\":\"v7\"}},"
	"{\"mediaType\":\"x\",\"digest\":\"sha256:"
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\","
	"\"size\":2,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\","
	"\"variant\":\"v8\"}},"
	"{\"mediaType\":\"x\",\"digest\":\"sha256:"
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\","
	"\"size\":3,\"platform\":{\"architecture\":\"unknown\",\"os\":"
	"\"unknown\"}},"
	"{\"mediaType\":\"x\",\"digest\":\"sha256:"
	"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\","
	"\"size\":4,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}"
	"}]}";

static void test_manifests(void)
{
	struct fetch_manifest *m = NULL;
	const struct fetch_desc *d = NULL;
	struct fetch_platform p = { 0 };
	struct lp_err err = { 0 };
	uint8_t sum[32];
	char hex[65];

	CHECK(fetch_manifest_parse(oci_manifest, strlen(oci_manifest), NULL, &m,
				   &err) == 0);
	if (!m) {
		fprintf(stderr, "manifest: %s\n", err.msg);
		failures++;
		return;
	}
	CHECK(m->kind == FETCH_MANIFEST_IMAGE);
	CHECK(STREQ(m->media_type, FETCH_MT_OCI_MANIFEST));
	CHECK(m->config.size == 7023);
	CHECK(m->n_layers == 2);
	CHECK(m->layers[0].size == 32654);
	CHECK(STREQ(
		fetch_desc_annotation(&m->layers[0],
				      "containerd.io/snapshot/stargz/"
				      "toc.digest"),
		"sha256:3333333333333333333333333333333333333333333333333333"
		"333333333333"));
	CHECK(!fetch_desc_annotation(&m->layers[1], "x"));
	CHECK(STREQ(m->layers[1].media_type,
		    "application/vnd.oci.image.layer.v1.tar+zstd"));
	lp_sha256(oci_manifest, strlen(oci_manifest), sum);
	lp_hex(sum, 32, hex);
	CHECK(!strcmp(m->digest + 7, hex));
	CHECK(m->raw_len == strlen(oci_manifest));
	fetch_manifest_free(m);
	m = NULL;

	CHECK(fetch_manifest_parse(docker_list, strlen(docker_list),
				   "application/json", &m, &err) == 0);
	if (!m) {
		fprintf(stderr, "list: %s\n", err.msg);
		failures++;
		return;
	}
	CHECK(m->kind == FETCH_MANIFEST_INDEX);
	CHECK(m->n_manifests == 4);
	CHECK(fetch_platform_parse("linux/amd64", &p, &err) == 0);
	CHECK(fetch_index_select(m, &p, &d, &err) == 0 && d && d->size == 4);
	fetch_platform_release(&p);
	CHECK(fetch_platform_parse("linux/aarch64", &p, &err) == 0);
	CHECK(STREQ(p.arch, "arm64"));
	CHECK(fetch_index_select(m, &p, &d, &err) == 0 && d && d->size == 2);
	fetch_platform_release(&p);
	CHECK(fetch_platform_parse("linux/arm64/v8", &p, &err) == 0);
	CHECK(fetch_index_select(m, &p, &d, &err) == 0 && d->size == 2);
	fetch_platform_release(&p);
	CHECK(fetch_platform_parse("linux/armhf", &p, &err) == 0);
	CHECK(STREQ(p.arch, "arm") && STREQ(p.variant, "v7"));
	CHECK(fetch_index_select(m, &p, &d, &err) == 0 && d->size == 1);
	fetch_platform_release(&p);
	CHECK(fetch_platform_parse("linux/arm/v6", &p, &err) == 0);
	lp_err_clear(&err);
	CHECK(fetch_index_select(m, &p, &d, &err) == -ENOENT);
	CHECK(strstr(err.msg, "linux/amd64") && !strstr(err.msg, "unknown"));
	fetch_platform_release(&p);
	CHECK(fetch_platform_parse("windows/amd64", &p, &err) == 0);
	CHECK(fetch_index_select(m, &p, &d, &err) == -ENOENT);
	fetch_platform_release(&p);
#if defined(__x86_64__)
	CHECK(fetch_index_select(m, NULL, &d, &err) == 0 && d->size == 4);
#endif
	fetch_manifest_free(m);

	CHECK(fetch_platform_parse("linux", &p, NULL) < 0);
	CHECK(fetch_platform_parse("linux/", &p, NULL) < 0);
	CHECK(fetch_platform_parse("a/b/c/d", &p, NULL) < 0);

	/* rejections */
	lp_err_clear(&err);
	CHECK(fetch_manifest_parse("{\"schemaVersion\":1}", 19, NULL, &m,
				   &err) == -EPROTONOSUPPORT);
	CHECK(fetch_manifest_parse("[]", 2, NULL, &m, NULL) == -EINVAL);
	CHECK(fetch_manifest_parse("{", 1, NULL, &m, NULL) == -EINVAL);
	{
		const char *t = "{\"schemaVersion\":2,\"mediaType\":"
				"\"text/plain\"}";

		CHECK(fetch_manifest_parse(t, strlen(t), NULL, &m, NULL) ==
		      -EPROTONOSUPPORT);
	}
	{
		const char *bad = "{\"schemaVersion\":2,\"config\":{\"digest\":"
				  "\"sha256:12\",\"size\":1},\"layers\":[]}";

		CHECK(fetch_manifest_parse(bad, strlen(bad), NULL, &m, NULL) ==
		      -EINVAL);
	}
	{
		const char *bad =
			"{\"schemaVersion\":2,\"manifests\":[{\"digest\""
			":\"sha256:dddddddddddddddddddddddddddddddddd"
			"dddddddddddddddddddddddddddddd\",\"size\":"
			"-1}]}";

		CHECK(fetch_manifest_parse(bad, strlen(bad), NULL, &m, NULL) ==
		      -EINVAL);
	}
}

static void test_challenges(void)
{
	struct fetch_challenge ch;

	CHECK(fetch_challenge_parse("Bearer realm=\"https://auth.docker.io/"
				    "token\",service=\"registry.docker.io\","
				    "scope=\"repository:library/ubuntu:pull\"",
				    &ch) == 0);
	CHECK(ch.scheme == CHAL_BEARER);
	CHECK(!strcmp(ch.realm, "https://auth.docker.io/token"));
	CHECK(!strcmp(ch.service, "registry.docker.io"));
	CHECK(!strcmp(ch.scope, "repository:library/ubuntu:pull"));

	CHECK(fetch_challenge_parse("Basic realm=\"Registry Realm\"", &ch) ==
	      0);
	CHECK(ch.scheme == CHAL_BASIC && !strcmp(ch.realm, "Registry Realm"));

	CHECK(fetch_challenge_parse("Basic realm=\"x\", Bearer realm=\"http://"
				    "t/tok\", service=svc",
				    &ch) == 0);
	CHECK(ch.scheme == CHAL_BEARER && !strcmp(ch.realm, "http://t/tok") &&
	      !strcmp(ch.service, "svc"));
	CHECK(fetch_challenge_parse("bearer REALM=\"a\\\"b\"", &ch) == 0);
	CHECK(!strcmp(ch.realm, "a\"b"));
	CHECK(fetch_challenge_parse("Negotiate abc==", &ch) == -ENOENT);
	CHECK(fetch_challenge_parse("", &ch) == -ENOENT);
	CHECK(fetch_challenge_parse(",,= ,\"", &ch) == -ENOENT);
}

static void test_creds(void)
{
	struct fetch_cred c = { 0 };
	struct lp_err err = { 0 };
	const char *cfg =
		"{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":"
		"\"aHViOnNlY3JldA==\"},\"127.0.0.1:5000\":{\"auth\":"
		"\"bG9jYWw6cHc6d2l0aDpjb2xvbnM=\"},\"http://example.com/v2/\":"
		"{\"username\":\"u\",\"password\":\"p\"},\"partial.io\":{"
		"\"identitytoken\":\"x\"}}}";
	struct fetch_opts o;

	CHECK(fetch_cred_from_b64("dXNlcjpwYXNz", 12, &c) == 0);
	CHECK(STREQ(c.user, "user") && STREQ(c.pass, "pass"));
	fetch_cred_release(&c);
	CHECK(fetch_cred_from_b64("dXNlcg==", 8, &c) == -EINVAL); /* "user" */
	CHECK(fetch_cred_from_b64("!!!", 3, &c) == -EINVAL);

	CHECK(fetch_cred_from_docker_config(cfg, strlen(cfg), "docker.io", &c,
					    &err) == 1);
	CHECK(STREQ(c.user, "hub") && STREQ(c.pass, "secret"));
	fetch_cred_release(&c);
	CHECK(fetch_cred_from_docker_config(cfg, strlen(cfg), "127.0.0.1:5000",
					    &c, &err) == 1);
	CHECK(STREQ(c.user, "local") && STREQ(c.pass, "pw:with:colons"));
	fetch_cred_release(&c);
	CHECK(fetch_cred_from_docker_config(cfg, strlen(cfg), "example.com", &c,
					    &err) == 1);
	CHECK(STREQ(c.user, "u") && STREQ(c.pass, "p"));
	fetch_cred_release(&c);
	CHECK(fetch_cred_from_docker_config(cfg, strlen(cfg), "partial.io", &c,
					    &err) == 0);
	CHECK(fetch_cred_from_docker_config(cfg, strlen(cfg), "other.io", &c,
					    &err) == 0);
	CHECK(fetch_cred_from_docker_config("{", 1, "x", &c, &err) == -EINVAL);

	/* order: explicit, IMAGE_PULL_AUTH, auth, docker config */
	fetch_opts_init(&o);
	o.docker_config = "";
	setenv("IMAGE_PULL_AUTH", "ZW52OmVudnB3", 1); /* env:envpw */
	o.auth = "Y2ZnOmNmZ3B3";		      /* cfg:cfgpw */
	CHECK(fetch_cred_resolve(&o, "x.io", &c, NULL) == 1);
	CHECK(STREQ(c.user, "env"));
	fetch_cred_release(&c);
	o.username = "me";
	o.password = "pw";
	CHECK(fetch_cred_resolve(&o, "x.io", &c, NULL) == 1);
	CHECK(STREQ(c.user, "me") && STREQ(c.pass, "pw"));
	fetch_cred_release(&c);
	o.username = o.password = NULL;
	o.no_env_auth = true;
	CHECK(fetch_cred_resolve(&o, "x.io", &c, NULL) == 1);
	CHECK(STREQ(c.user, "cfg"));
	fetch_cred_release(&c);
	o.auth = NULL;
	CHECK(fetch_cred_resolve(&o, "x.io", &c, NULL) == 0);
	unsetenv("IMAGE_PULL_AUTH");
	o.no_env_auth = false;
	setenv("IMAGE_PULL_AUTH", "bad", 1);
	lp_err_clear(&err);
	CHECK(fetch_cred_resolve(&o, "x.io", &c, &err) == -EINVAL);
	CHECK(!strstr(err.msg, "bad"));
	unsetenv("IMAGE_PULL_AUTH");
}

static void test_redact(void)
{
	char out[256];

	fetch_redact_url("https://user:pw@host:1/v2/x?X-Amz-Signature=s#f", out,
			 sizeof(out));
	CHECK(!strcmp(out, "https://host:1/v2/x"));
	fetch_redact_url("http://h/p", out, sizeof(out));
	CHECK(!strcmp(out, "http://h/p"));
	fetch_redact_url("http://h?q@x", out, sizeof(out));
	CHECK(!strcmp(out, "http://h"));
}

static size_t plan(struct fetch_range *r, size_t n, uint64_t gap, uint64_t min,
		   uint64_t max, uint64_t limit)
{
	struct fetch_plan_opts o = { .max_gap = gap,
				     .min_size = min,
				     .max_size = max };

	return fetch_plan(r, n, &o, limit);
}

static void test_plan(void)
{
	struct fetch_range r[8];
	size_t n;

	/* adjacent and overlapping merge; far apart stays */
	r[0] = (struct fetch_range){ 100, 10 };
	r[1] = (struct fetch_range){ 0, 50 };
	r[2] = (struct fetch_range){ 50, 10 };
	r[3] = (struct fetch_range){ 55, 30 };
	r[4] = (struct fetch_range){ 1000, 0 };
	n = plan(r, 5, 0, 0, 0, 0);
	CHECK(n == 2);
	CHECK(r[0].off == 0 && r[0].len == 85);
	CHECK(r[1].off == 100 && r[1].len == 10);

	/* a gap of 15 merges with max_gap 15, not 14 */
	r[0] = (struct fetch_range){ 0, 85 };
	r[1] = (struct fetch_range){ 100, 10 };
	CHECK(plan(r, 2, 14, 0, 0, 0) == 2);
	CHECK(plan(r, 2, 15, 0, 0, 0) == 1 && r[0].len == 110);

	/* max_size stops merging of separate ranges */
	r[0] = (struct fetch_range){ 0, 60 };
	r[1] = (struct fetch_range){ 70, 60 };
	r[2] = (struct fetch_range){ 140, 10 };
	n = plan(r, 3, 100, 0, 130, 0);
	CHECK(n == 2 && r[0].len == 130 && r[1].off == 140);

	/* min_size grows forward, backward at the limit, then re-merges */
	r[0] = (struct fetch_range){ 10, 5 };
	r[1] = (struct fetch_range){ 990, 5 };
	n = plan(r, 2, 0, 100, 0, 1000);
	CHECK(n == 2);
	CHECK(r[0].off == 10 && r[0].len == 100);
	CHECK(r[1].off == 900 && r[1].len == 100);
	r[0] = (struct fetch_range){ 10, 5 };
	r[1] = (struct fetch_range){ 60, 5 };
	n = plan(r, 2, 0, 100, 0, 1000);
	CHECK(n == 1 && r[0].off == 10 && r[0].len == 150);

	/* clamping to the limit and dropping what lies beyond */
	r[0] = (struct fetch_range){ 990, 50 };
	r[1] = (struct fetch_range){ 2000, 5 };
	n = plan(r, 2, 0, 0, 0, 1000);
	CHECK(n == 1 && r[0].off == 990 && r[0].len == 10);
	/* overflowing ranges are cut at 2^64 */
	r[0] = (struct fetch_range){ UINT64_MAX - 5, 100 };
	n = plan(r, 1, 0, 0, 0, 0);
	CHECK(n == 1 && r[0].len == 5);
	CHECK(plan(r, 0, 0, 0, 0, 0) == 0);
}

/* ---- image configs ------------------------------------------------------- */

static struct fetch_image_config *config_ok(const char *json)
{
	struct fetch_image_config *c = NULL;
	struct lp_err err = { 0 };

	if (fetch_config_parse(json, strlen(json), &c, &err) < 0 || !c) {
		fprintf(stderr, "config %s: %s\n", json, err.msg);
		failures++;
		return NULL;
	}
	/* both lists NULL-terminated when there */
	CHECK(!c->argv ? c->argc == 0 : c->argv[c->argc] == NULL);
	CHECK(!c->env ? c->n_env == 0 : c->env[c->n_env] == NULL);
	return c;
}

/* -EINVAL with a message; *ret untouched */
static void config_bad(const char *json, size_t len)
{
	struct fetch_image_config *c = (struct fetch_image_config *)&c;
	struct lp_err err = { 0 };
	int r = fetch_config_parse(json, len, &c, &err);

	if (r != -EINVAL || !err.msg[0] || c != (void *)&c) {
		fprintf(stderr, "config %.60s: %d \"%s\"\n", json, r, err.msg);
		failures++;
		if (r == 0 && c != (void *)&c)
			fetch_image_config_free(c);
	}
	checks++;
}

static void test_config(void)
{
	struct fetch_image_config *c;

	/* Entrypoint first, then Cmd; Env and WorkingDir; the rest ignored */
	c = config_ok("{\"architecture\":\"amd64\",\"config\":{"
		      "\"Cmd\":[\"app.py\",\"--port\",\"80\"],"
		      "\"Entrypoint\":[\"/usr/bin/env\",\"python3\"],"
		      "\"Env\":[\"PATH=/usr/bin:/bin\",\"LANG=C.UTF-8\"],"
		      "\"WorkingDir\":\"/srv/app\",\"User\":\"1000\","
		      "\"Labels\":{\"a\":\"b\"}},\"rootfs\":{}}");
	if (c) {
		CHECK(c->argc == 5);
		if (c->argc == 5) {
			CHECK(STREQ(c->argv[0], "/usr/bin/env"));
			CHECK(STREQ(c->argv[1], "python3"));
			CHECK(STREQ(c->argv[2], "app.py"));
			CHECK(STREQ(c->argv[3], "--port"));
			CHECK(STREQ(c->argv[4], "80"));
		}
		CHECK(c->n_env == 2 && STREQ(c->env[0], "PATH=/usr/bin:/bin") &&
		      STREQ(c->env[1], "LANG=C.UTF-8"));
		CHECK(STREQ(c->workdir, "/srv/app"));
		fetch_image_config_free(c);
	}
	/* Cmd alone; escapes decoded */
	c = config_ok("{\"config\":{\"Cmd\":[\"sh\",\"-c\",\"echo \\\"hi\\\" "
		      "\\u00e9\"]}}");
	if (c) {
		CHECK(c->argc == 3 && STREQ(c->argv[0], "sh") &&
		      STREQ(c->argv[2], "echo \"hi\" \xc3\xa9"));
		CHECK(!c->env && c->n_env == 0 && !c->workdir);
		fetch_image_config_free(c);
	}
	/* null Cmd, null Env, null WorkingDir */
	c = config_ok("{\"config\":{\"Entrypoint\":[\"/docker-entrypoint.sh\"],"
		      "\"Cmd\":null,\"Env\":null,\"WorkingDir\":null}}");
	if (c) {
		CHECK(c->argc == 1 &&
		      STREQ(c->argv[0], "/docker-entrypoint.sh"));
		CHECK(!c->env && !c->workdir);
		fetch_image_config_free(c);
	}
	/* empty lists and an empty WorkingDir */
	c = config_ok("{\"config\":{\"Entrypoint\":[],\"Cmd\":[],\"Env\":[],"
		      "\"WorkingDir\":\"\"}}");
	if (c) {
		CHECK(c->argc == 0 && c->n_env == 0);
		CHECK(STREQ(c->workdir, ""));
		fetch_image_config_free(c);
	}
	/* no config, a null one, an empty one: all empty */
	static const char *const empty[] = {
		"{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}",
		"{\"config\":null}", "{\"config\":{}}", "{}",
	};
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		c = config_ok(empty[i]);
		if (c) {
			CHECK(c->argc == 0 && !c->argv && c->n_env == 0 &&
			      !c->env && !c->workdir);
			fetch_image_config_free(c);
		}
	}
	/* only the len bytes given are parsed */
	{
		static const char buf[] =
			"{\"config\":{\"Cmd\":[\"x\"]}}garbage";
		struct lp_err err = { 0 };

		c = NULL;
		CHECK(fetch_config_parse(buf, sizeof(buf) - 1 - 7, &c, &err) ==
		      0);
		CHECK(c && c->argc == 1 && STREQ(c->argv[0], "x"));
		fetch_image_config_free(c);
		config_bad(buf, sizeof(buf) - 1);
	}

	/* wrong types */
	static const char *const bad[] = {
		"{\"config\":{\"Cmd\":\"sh -c true\"}}",
		"{\"config\":{\"Entrypoint\":{\"a\":1}}}",
		"{\"config\":{\"Entrypoint\":[\"/bin/sh\",7]}}",
		"{\"config\":{\"Cmd\":[\"a\",null]}}",
		"{\"config\":{\"Cmd\":[\"a\"],\"Env\":[1,2]}}",
		"{\"config\":{\"Env\":\"PATH=/bin\"}}",
		"{\"config\":{\"WorkingDir\":5}}",
		"{\"config\":{\"WorkingDir\":[\"/\"]}}",
		"{\"config\":[]}",
		"{\"config\":\"x\"}",
		"[]",
		"\"config\"",
		"null",
		/* bad JSON */
		"",
		"{",
		"{\"config\":{\"Cmd\":[\"sh\",",
		"not json",
		"{\"config\":{},\"config\":{}}",
		"{\"config\":{\"Cmd\":[\"a\\u0000b\"]}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		config_bad(bad[i], strlen(bad[i]));

	/* sizes: the whole document, the number of arguments */
	{
		char *big = calloc(1, FETCH_CONFIG_MAX + 1);
		size_t len = 0, cap = 16 * (FETCH_CONFIG_MAX_ARGS + 2) + 64;
		char *args = malloc(cap);

		memset(big, ' ', FETCH_CONFIG_MAX);
		big[0] = '{';
		big[FETCH_CONFIG_MAX - 1] = '}';
		c = NULL;
		{
			struct lp_err err = { 0 };

			CHECK(fetch_config_parse(big, FETCH_CONFIG_MAX, &c,
						 &err) == 0 && c &&
			      c->argc == 0);
			fetch_image_config_free(c);
		}
		config_bad(big, FETCH_CONFIG_MAX + 1);
		free(big);

		/* FETCH_CONFIG_MAX_ARGS in all is fine, one more is not */
		for (int extra = 0; extra < 2; extra++) {
			len = (size_t)snprintf(args, cap,
					       "{\"config\":{\"Entrypoint\":[");
			for (unsigned i = 0; i < FETCH_CONFIG_MAX_ARGS - 10;
			     i++)
				len += (size_t)snprintf(args + len, cap - len,
							"%s\"a\"",
							i ? "," : "");
			len += (size_t)snprintf(args + len, cap - len,
						"],\"Cmd\":[");
			for (int i = 0; i < 10 + extra; i++)
				len += (size_t)snprintf(args + len, cap - len,
							"%s\"c\"",
							i ? "," : "");
			len += (size_t)snprintf(args + len, cap - len, "]}}");
			if (!extra) {
				c = config_ok(args);
				CHECK(c && c->argc == FETCH_CONFIG_MAX_ARGS &&
				      STREQ(c->argv[FETCH_CONFIG_MAX_ARGS - 1],
					    "c"));
				fetch_image_config_free(c);
			} else {
				config_bad(args, len);
			}
		}
		free(args);
	}
	fetch_image_config_free(NULL);
}

/* ---- multipart/byteranges ------------------------------------------------ */

struct mp_log {
	char text[512];
	size_t len;
	int stop_at_part; /* return -EINTR from this part on (0 = never) */
	int parts;
};

static void mp_logf(struct mp_log *l, const char *s, size_t n)
{
	if (n > sizeof(l->text) - 1 - l->len)
		n = sizeof(l->text) - 1 - l->len;
	memcpy(l->text + l->len, s, n);
	l->len += n;
	l->text[l->len] = '\0';
}

static int mp_part(void *arg, uint64_t a, uint64_t b, int64_t total)
{
	struct mp_log *l = arg;
	char s[80];

	if (l->stop_at_part && ++l->parts >= l->stop_at_part)
		return -EINTR;
	snprintf(s, sizeof(s), "[%llu-%llu/%lld]", (unsigned long long)a,
		 (unsigned long long)b, (long long)total);
	mp_logf(l, s, strlen(s));
	return 0;
}

static int mp_data(void *arg, uint64_t pos, const void *p, size_t n)
{
	(void)pos;
	mp_logf(arg, p, n);
	return 0;
}

static const struct fetch_mp_ops mp_ops = { .part = mp_part,
					    .data = mp_data };

/* Feeds body in pieces of step bytes: the feed's result; *done. */
static int mp_run(const char *ct, const char *body, size_t step,
		  struct mp_log *l, bool *done)
{
	struct fetch_mp m;
	size_t len = strlen(body);
	int r = fetch_mp_init(&m, ct);

	*done = false;
	if (r < 0)
		return r;
	for (size_t i = 0; i < len && r == 0; i += step)
		r = fetch_mp_feed(&m, body + i, len - i < step ? len - i : step,
				  &mp_ops, l);
	*done = fetch_mp_done(&m);
	return r;
}

/* The body parses to want (and the closing delimiter is seen), whichever
 * way it is cut. */
static void mp_ok(const char *ct, const char *body, const char *want)
{
	for (size_t step = 1; step <= strlen(body); step++) {
		struct mp_log l = { 0 };
		bool done;
		int r = mp_run(ct, body, step, &l, &done);

		CHECK(r == 0 && done && !strcmp(l.text, want));
		if (r || !done || strcmp(l.text, want)) {
			fprintf(stderr, "step %zu: %d %d \"%s\"\n", step, r,
				done, l.text);
			return;
		}
	}
}

static void mp_bad(const char *ct, const char *body)
{
	for (size_t step = 1; step <= strlen(body); step++) {
		struct mp_log l = { 0 };
		bool done;
		int r = mp_run(ct, body, step, &l, &done);

		CHECK(r == -EBADMSG);
		if (r != -EBADMSG) {
			fprintf(stderr, "step %zu: %d \"%s\"\n", step, r,
				body);
			return;
		}
	}
}

static void test_multipart(void)
{
	const char *ct = "multipart/byteranges; boundary=XyZ";
	char big[6000];
	struct fetch_mp m;
	struct mp_log l = { .stop_at_part = 2 };
	uint64_t a, b;
	int64_t t;
	bool done;

	/* Content-Range values */
	CHECK(fetch_content_range_parse("bytes 0-0/1", &a, &b, &t) && a == 0 &&
	      b == 0 && t == 1);
	CHECK(fetch_content_range_parse("bytes 5-9/*", &a, &b, &t) && t == -1);
	CHECK(fetch_content_range_parse("BYTES 1-2/3", &a, &b, &t));
	CHECK(!fetch_content_range_parse("bytes 3-2/9", &a, &b, &t));
	CHECK(!fetch_content_range_parse("bytes 0-9/9", &a, &b, &t));
	CHECK(!fetch_content_range_parse("bytes 0-1/* ", &a, &b, &t));
	CHECK(!fetch_content_range_parse("bytes 0-1", &a, &b, &t));
	CHECK(!fetch_content_range_parse("bytes -1/9", &a, &b, &t));
	CHECK(!fetch_content_range_parse("items 0-1/9", &a, &b, &t));
	CHECK(!fetch_content_range_parse(
		"bytes 0-1/99999999999999999999999", &a, &b, &t));

	/* Content-Type values */
	CHECK(fetch_mp_init(&m, "application/octet-stream") == -EPROTO);
	CHECK(fetch_mp_init(&m, "multipart/byteranges") == -EPROTO);
	CHECK(fetch_mp_init(&m, "multipart/byteranges; boundary=") == -EPROTO);
	CHECK(fetch_mp_init(&m, "multipart/byteranges; boundary=\"ab") ==
	      -EPROTO);
	CHECK(fetch_mp_init(&m, "multipart/byteranges; boundary="
				"0123456789012345678901234567890123456789"
				"012345678901234567890123456789x") == -EPROTO);
	CHECK(fetch_mp_init(&m, "multipart/byteranges; boundary=a\x01") ==
	      -EPROTO);
	CHECK(fetch_mp_init(&m, "Multipart/ByteRanges;charset=x; "
				"Boundary=\"a b\"") == 0 &&
	      !strcmp(m.delim, "\r\n--a b"));

	/* Go's net/http: the first delimiter opens the body */
	mp_ok(ct,
	      "--XyZ\r\nContent-Range: bytes 0-3/100\r\n"
	      "Content-Type: application/octet-stream\r\n\r\nABCD\r\n"
	      "--XyZ\r\nContent-Range: bytes 10-11/100\r\n\r\nEF\r\n--XyZ--\r\n",
	      "[0-3/100]ABCD[10-11/100]EF");
	/* a preamble, CRLF before the first delimiter, padding after one,
	 * a quoted boundary, data holding the delimiter, an epilogue */
	mp_ok("multipart/byteranges; boundary=\"XyZ\"",
	      "junk\r\n\r\n--XyZ \t\r\ncontent-range:bytes 7-15/*\r\n\r\n"
	      "\r\n--XyZ--\r\n--XyZ--\r\nepilogue",
	      "[7-15/-1]\r\n--XyZ--");
	/* bare LF line ends in the part headers */
	mp_ok(ct, "--XyZ\r\nContent-Range: bytes 0-0/1\n\nA\r\n--XyZ--",
	      "[0-0/1]A");

	/* malformed */
	mp_bad(ct, "--XyZ\r\nContent-Range: bytes 0-3/100\r\n\r\nABCDE\r\n"
		   "--XyZ--");		     /* data longer than said */
	mp_bad(ct, "--XyZ\r\nContent-Type: x\r\n\r\nAB\r\n--XyZ--");
	mp_bad(ct, "--XyZ\r\nContent-Range: bytes 3-0/100\r\n\r\nAB");
	mp_bad(ct, "--XyZ\r\nContent-Range: bytes 0-0/9\r\n"
		   "Content-Range: bytes 0-0/9\r\n\r\nA\r\n--XyZ--");
	mp_bad(ct, "--XyZ\r\nno colon\r\n\r\nA\r\n--XyZ--");
	mp_bad(ct, "--XyZ--\r\n");		     /* no part */
	mp_bad(ct, "--XyZx\r\nContent-Range: bytes 0-0/1\r\n\r\nA"); /* stray */
	mp_bad(ct, "--XyZ-x");
	mp_bad(ct, "--XyZ\rx");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	mp_bad(ct, big); /* no boundary in the first 4 KiB */
	snprintf(big, sizeof(big), "--XyZ\r\nX-Long: %0600d\r\n\r\n", 0);
	mp_bad(ct, big); /* a header line too long */
	strcpy(big, "--XyZ\r\n");
	for (int i = 0; i < 40; i++)
		strcat(big, "X-A: b\r\n");
	mp_bad(ct, big); /* too many header lines */
	snprintf(big, sizeof(big), "--XyZ%0100d\r\n", 0);
	mp_bad(ct, big); /* stray bytes after the delimiter */
	memset(big, ' ', 100);
	memcpy(big, "--XyZ", 5);
	strcpy(big + 100, "\r\n");
	mp_bad(ct, big); /* padding too long */

	/* a callback's error stops the parse with it */
	CHECK(mp_run(ct,
		     "--XyZ\r\nContent-Range: bytes 0-0/2\r\n\r\nA\r\n"
		     "--XyZ\r\nContent-Range: bytes 1-1/2\r\n\r\nB\r\n--XyZ--",
		     7, &l, &done) == -EINTR &&
	      !done && l.parts == 2);
}

int main(void)
{
	test_refs();
	test_manifests();
	test_challenges();
	test_creds();
	test_redact();
	test_plan();
	test_config();
	test_multipart();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
