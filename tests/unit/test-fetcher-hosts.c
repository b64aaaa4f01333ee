/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the registry hosts parsers (no network): containerd
 * hosts.toml (files and certs.d directories, including bad files with
 * their line numbers), nydusd JSON mirrors, Go durations and registry
 * matching.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fetcher/fetcher-int.h"

#include "check.h"

static bool STREQ(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static struct fetch_hosts *toml_ok(const char *text, const char *path)
{
	struct fetch_hosts *h = NULL;
	struct lp_err err = { 0 };

	if (fetch_hosts_parse_toml(text, strlen(text), path, "docker.io", &h,
				   &err) < 0) {
		fprintf(stderr, "hosts.toml rejected: %s\n", err.msg);
		failures++;
		return NULL;
	}
	return h;
}

/* A bad file: -EINVAL and a message containing want. */
static void toml_bad(const char *text, const char *want)
{
	struct fetch_hosts *h = NULL;
	struct lp_err err = { 0 };
	int r = fetch_hosts_parse_toml(text, strlen(text),
				       "/etc/certs.d/x/hosts.toml", "x", &h,
				       &err);

	if (r != -EINVAL || !strstr(err.msg, want)) {
		fprintf(stderr, "bad hosts.toml: r=%d msg \"%s\", want \"%s\"\n",
			r, err.msg, want);
		failures++;
	}
	fetch_hosts_free(h);
}

static const char example[] =
	"# a mirror setup\n"
	"server = \"https://registry-1.docker.io\"\n"
	"capabilities = [\"pull\", \"resolve\"]\n"
	"\n"
	"[host.\"https://public-mirror.example.com\"]\n"
	"  capabilities = [\"pull\"]\n"
	"[host.\"http://docker-mirror.internal:5000\"]\n"
	"  capabilities = [\"pull\", \"resolve\"]\n"
	"  ca = \"docker-mirror.crt\"\n"
	"  skip_verify = true\n"
	"  client = [[\"/etc/certs/c.cert\", \"c.key\"]]\n"
	"  dial_timeout = \"1.5s\"\n"
	"  [host.\"http://docker-mirror.internal:5000\".header]\n"
	"    x-custom = [\"a\", \"b\"]\n"
	"    X-Dragonfly-Registry = \"https://index.docker.io\"\n"
	"[host.\"https://mirror-bak.registry/us/\"]\n"
	"  proxy = \"http://proxy:8080\"\n"
	"[host.\"https://non-compliant.registry/v2/upstream\"]\n"
	"  override_path = true\n"
	"[host.\"mirror.example:443\"]\n"
	"  client = \"client.pem\"\n";

static void test_toml(void)
{
	struct fetch_hosts *h = toml_ok(example, "/etc/certs.d/docker.io/"
						 "hosts.toml");
	const struct fetch_endpoint *m;

	if (!h)
		return;
	CHECK(STREQ(h->registry, "docker.io"));
	CHECK(h->server && STREQ(h->server->host, "registry-1.docker.io") &&
	      !h->server->plain_http && STREQ(h->server->root, "/v2") &&
	      h->server->caps == (FETCH_CAP_PULL | FETCH_CAP_RESOLVE) &&
	      !h->server->add_ns);
	CHECK(h->n_mirrors == 5);
	if (h->n_mirrors != 5)
		goto out;
	m = &h->mirrors[0];
	CHECK(STREQ(m->host, "public-mirror.example.com") && !m->plain_http &&
	      m->caps == FETCH_CAP_PULL && STREQ(m->root, "/v2") &&
	      m->add_ns && !m->skip_verify && !m->auth_through &&
	      !m->failure_limit);
	m = &h->mirrors[1];
	CHECK(STREQ(m->host, "docker-mirror.internal:5000") && m->plain_http);
	CHECK(m->caps == (FETCH_CAP_PULL | FETCH_CAP_RESOLVE));
	CHECK(STREQ(m->ca_file, "/etc/certs.d/docker.io/docker-mirror.crt"));
	CHECK(STREQ(m->client_cert, "/etc/certs/c.cert") &&
	      STREQ(m->client_key, "/etc/certs.d/docker.io/c.key"));
	CHECK(m->skip_verify && m->connect_timeout_ms == 1500);
	CHECK(m->n_headers == 3 && STREQ(m->headers[0].key, "x-custom") &&
	      STREQ(m->headers[0].value, "a") &&
	      STREQ(m->headers[1].value, "b") &&
	      STREQ(m->headers[2].key, "X-Dragonfly-Registry"));
	m = &h->mirrors[2];
	CHECK(STREQ(m->host, "mirror-bak.registry") &&
	      STREQ(m->root, "/us/v2") && STREQ(m->proxy, "http://proxy:8080") &&
	      m->caps == FETCH_CAP_ALL);
	m = &h->mirrors[3];
	CHECK(STREQ(m->root, "/v2/upstream"));
	m = &h->mirrors[4];
	CHECK(STREQ(m->host, "mirror.example:443") && !m->plain_http &&
	      STREQ(m->client_cert, "/etc/certs.d/docker.io/client.pem") &&
	      !m->client_key);

	/* a deep copy is equal and independent */
	{
		struct fetch_hosts *d = fetch_hosts_dup(h);

		CHECK(d && d->n_mirrors == 5 && d->mirrors != h->mirrors &&
		      STREQ(d->mirrors[1].headers[2].value,
			    "https://index.docker.io") &&
		      d->mirrors[1].headers[2].value !=
			      h->mirrors[1].headers[2].value &&
		      STREQ(d->server->host, "registry-1.docker.io"));
		fetch_hosts_free(d);
	}
out:
	fetch_hosts_free(h);

	/* no server: hosts only; root keys without server keep the
	 * registry's own host */
	h = toml_ok("[host.\"http://127.0.0.1:5001\"]\n", NULL);
	CHECK(h && !h->server && h->n_mirrors == 1 &&
	      h->mirrors[0].caps == FETCH_CAP_ALL);
	fetch_hosts_free(h);
	h = toml_ok("skip_verify = true\nca = [\"/a.pem\", \"/b.pem\"]\n",
		    NULL);
	CHECK(h && h->server && !h->server->host && h->server->skip_verify &&
	      STREQ(h->server->ca_file, "/a.pem") && !h->n_mirrors);
	fetch_hosts_free(h);
	/* an empty file is no configuration at all */
	h = toml_ok("", NULL);
	CHECK(h && !h->server && !h->n_mirrors);
	fetch_hosts_free(h);
	/* unknown keys (newer containerd) are ignored */
	h = toml_ok("[host.\"https://m\"]\n  future_key = 3\n", NULL);
	CHECK(h && h->n_mirrors == 1);
	fetch_hosts_free(h);
}

static void test_toml_bad(void)
{
	toml_bad("server = \"https://r\"\n\n[host.\"https://m\"]\n"
		 "  capabilities = [\"pull\", \"fetch\"]\n",
		 "hosts.toml: line 4: host \"https://m\": capabilities: "
		 "unknown capability \"fetch\"");
	toml_bad("[host.\"https://m\"]\nskip_verify = \"yes\"\n",
		 "hosts.toml: line 2: host \"https://m\": skip_verify: "
		 "expected a boolean, got a string");
	toml_bad("server = 5\n", "hosts.toml: line 1: server: expected a URL");
	toml_bad("\n\nhost = \"https://m\"\n",
		 "hosts.toml: line 3: host: expected tables");
	toml_bad("[host]\n\"https://m\" = 1\n",
		 "hosts.toml: line 2: host \"https://m\": expected a table");
	toml_bad("[host.\"ftp://m\"]\n",
		 "hosts.toml: line 1: host \"ftp://m\": \"ftp://m\": scheme "
		 "must be http or https");
	toml_bad("[host.\"https://user:pw@m\"]\n", "credentials in the URL");
	toml_bad("[host.\"https://m/a/../b\"]\n", "\"..\" in the URL path");
	toml_bad("[host.\"https://bad host\"]\n", "space or control");
	toml_bad("[host.\"https://m:99999999\"]\n", "not a host[:port]");
	toml_bad("[host.\"https://m\"]\n  dial_timeout = \"5 seconds\"\n",
		 "line 2: host \"https://m\": dial_timeout: \"5 seconds\" is "
		 "not a duration");
	toml_bad("[host.\"https://m\"]\n  [host.\"https://m\".header]\n"
		 "  x = 1\n",
		 "line 3: host \"https://m\": header \"x\": expected a string");
	toml_bad("[host.\"https://m\".header]\n  \"a b\" = \"v\"\n",
		 "line 2: host \"https://m\": header \"a b\": bad name");
	toml_bad("[host.\"https://m\"]\n  client = 3\n",
		 "line 2: host \"https://m\": client: expected a path");
	toml_bad("[host.\"https://m\"]\n  ca = [\"/a\", 2]\n",
		 "line 2: host \"https://m\": ca: expected strings");
	toml_bad("[host.\"https://m\"]\n  proxy = \"proxy:3128\"\n",
		 "line 2: host \"https://m\": proxy: \"proxy:3128\" is not "
		 "an absolute URL");
	/* TOML syntax errors carry line and column */
	toml_bad("server = \"https://r\"\n[host.\"https://m\"\n",
		 "/etc/certs.d/x/hosts.toml: line 2, column");
	toml_bad("a = 1\na = 2\n", "/etc/certs.d/x/hosts.toml: line 2");
}

static char tmp[256];

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static void dir(const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	if (mkdir(path, 0755) < 0) {
		perror(path);
		exit(1);
	}
}

static int load(const char *registry, struct fetch_hosts **h,
		struct lp_err *err)
{
	*h = NULL;
	lp_err_clear(err);
	return fetch_hosts_load_dir(tmp, registry, h, err);
}

static void test_dir(void)
{
	struct fetch_hosts *h = NULL;
	struct lp_err err = { 0 };
	char want[600];

	snprintf(tmp, sizeof(tmp), "/tmp/test-fetcher-hosts.XXXXXX");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		exit(1);
	}
	/* nothing configured */
	CHECK(load("docker.io", &h, &err) == 0 && !h);

	dir("docker.io");
	put("docker.io/hosts.toml", "[host.\"https://d-mirror\"]\n");
	dir("127.0.0.1:5000");
	put("127.0.0.1:5000/hosts.toml", "[host.\"http://colon\"]\n");
	dir("_default");
	put("_default/hosts.toml", "[host.\"http://default-mirror\"]\n");

	CHECK(load("docker.io", &h, &err) == 1 && h && h->n_mirrors == 1 &&
	      STREQ(h->mirrors[0].host, "d-mirror") &&
	      STREQ(h->registry, "docker.io"));
	snprintf(want, sizeof(want), "%s/docker.io/hosts.toml", tmp);
	CHECK(h && STREQ(h->source, want));
	fetch_hosts_free(h);
	CHECK(load("127.0.0.1:5000", &h, &err) == 1 && h &&
	      STREQ(h->mirrors[0].host, "colon"));
	fetch_hosts_free(h);
	/* HOST_PORT_ comes first */
	dir("127.0.0.1_5000_");
	put("127.0.0.1_5000_/hosts.toml", "[host.\"http://underscore\"]\n");
	CHECK(load("127.0.0.1:5000", &h, &err) == 1 && h &&
	      STREQ(h->mirrors[0].host, "underscore"));
	fetch_hosts_free(h);
	/* no directory of its own: _default */
	CHECK(load("quay.io", &h, &err) == 1 && h &&
	      STREQ(h->mirrors[0].host, "default-mirror") &&
	      STREQ(h->registry, "quay.io"));
	fetch_hosts_free(h);
	CHECK(load("[::1]:5000", &h, &err) == 1 && h &&
	      STREQ(h->mirrors[0].host, "default-mirror"));
	fetch_hosts_free(h);
	/* docker's certificate files without a hosts.toml */
	dir("ghcr.io");
	put("ghcr.io/ca.crt", "x");
	put("ghcr.io/client.cert", "x");
	put("ghcr.io/client.key", "x");
	CHECK(load("ghcr.io", &h, &err) == 1 && h && h->server &&
	      !h->server->host && !h->n_mirrors);
	snprintf(want, sizeof(want), "%s/ghcr.io/ca.crt", tmp);
	CHECK(h && h->server && STREQ(h->server->ca_file, want));
	snprintf(want, sizeof(want), "%s/ghcr.io/client.key", tmp);
	CHECK(h && h->server && STREQ(h->server->client_key, want));
	fetch_hosts_free(h);
	/* an empty directory of its own stops the search */
	dir("empty.io");
	CHECK(load("empty.io", &h, &err) == 0 && !h);
	/* a broken file: its path and the line */
	dir("broken.io");
	put("broken.io/hosts.toml",
	    "server = \"https://broken.io\"\n\n[host.\"https://m\"]\n"
	    "  capabilities = \"pull\"\n");
	CHECK(load("broken.io", &h, &err) == -EINVAL && !h);
	snprintf(want, sizeof(want),
		 "%s/broken.io/hosts.toml: line 4: host \"https://m\": "
		 "capabilities: expected an array",
		 tmp);
	CHECK(strstr(err.msg, want) != NULL);
	if (!strstr(err.msg, want))
		fprintf(stderr, "  got: %s\n", err.msg);
	/* names that are not host names */
	CHECK(load("../etc", &h, &err) == -EINVAL);
	CHECK(load("a/b", &h, &err) == -EINVAL);

	if (!failures) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmp);
	}
}

static struct fetch_hosts *json_ok(const char *text)
{
	struct fetch_hosts *h = NULL;
	struct lp_err err = { 0 };

	if (fetch_hosts_parse_nydusd(text, strlen(text), "nydusd.json", &h,
				     &err) < 0) {
		fprintf(stderr, "nydusd config rejected: %s\n", err.msg);
		failures++;
		return NULL;
	}
	return h;
}

static void json_bad(const char *text, const char *want)
{
	struct fetch_hosts *h = NULL;
	struct lp_err err = { 0 };
	int r = fetch_hosts_parse_nydusd(text, strlen(text), "nydusd.json", &h,
					 &err);

	if (r != -EINVAL || !strstr(err.msg, want)) {
		fprintf(stderr, "bad nydusd config: r=%d msg \"%s\", want "
				"\"%s\"\n",
			r, err.msg, want);
		failures++;
	}
	fetch_hosts_free(h);
}

static void test_nydusd(void)
{
	struct fetch_hosts *h;

	h = json_ok(
		"{\"device\": {\"backend\": {\"type\": \"registry\",\n"
		" \"config\": {\"host\": \"index.docker.io\", \"repo\": \"x\",\n"
		"  \"auth\": \"c2VjcmV0\",\n"
		"  \"mirrors\": [\n"
		"   {\"host\": \"http://dragonfly1.io:65001\",\n"
		"    \"headers\": {\"X-Dragonfly-Registry\": "
		"\"https://index.docker.io\"},\n"
		"    \"ping_url\": \"http://127.0.0.1:40901/server/ping\",\n"
		"    \"health_check_interval\": 7, \"failure_limit\": 2,\n"
		"    \"auth_through\": true},\n"
		"   {\"host\": \"https://dragonfly2.io\"}]}},\n"
		" \"cache\": {\"type\": \"blobcache\"}}, \"mode\": \"direct\"}");
	if (h) {
		CHECK(STREQ(h->registry, "docker.io") && !h->server);
		CHECK(h->n_mirrors == 2);
		CHECK(STREQ(h->mirrors[0].host, "dragonfly1.io:65001") &&
		      h->mirrors[0].plain_http &&
		      STREQ(h->mirrors[0].root, "/v2") &&
		      h->mirrors[0].caps == FETCH_CAP_PULL &&
		      h->mirrors[0].auth_through && !h->mirrors[0].add_ns &&
		      h->mirrors[0].health_interval_s == 7 &&
		      h->mirrors[0].failure_limit == 2 &&
		      STREQ(h->mirrors[0].ping_url,
			    "http://127.0.0.1:40901/server/ping") &&
		      h->mirrors[0].n_headers == 1 &&
		      STREQ(h->mirrors[0].headers[0].key,
			    "X-Dragonfly-Registry"));
		CHECK(h->n_mirrors == 2 && !h->mirrors[1].plain_http &&
		      !h->mirrors[1].auth_through &&
		      h->mirrors[1].health_interval_s == 5 &&
		      h->mirrors[1].failure_limit == 5 &&
		      !h->mirrors[1].ping_url);
	}
	fetch_hosts_free(h);

	/* a backend config object, and a bare array */
	h = json_ok("{\"mirrors\": [{\"host\": \"http://m:1\"}]}");
	CHECK(h && !h->registry && h->n_mirrors == 1);
	fetch_hosts_free(h);
	h = json_ok("[{\"host\": \"http://m:1\", \"failure_limit\": 0}]");
	CHECK(h && h->n_mirrors == 1 && h->mirrors[0].failure_limit == 5);
	fetch_hosts_free(h);
	/* no mirrors is fine */
	h = json_ok("{\"device\": {\"backend\": {\"type\": \"registry\", "
		    "\"config\": {\"host\": \"ghcr.io\"}}}}");
	CHECK(h && !h->n_mirrors && STREQ(h->registry, "ghcr.io"));
	fetch_hosts_free(h);
	/* the P2P proxy: a mirror in front, or the only server */
	h = json_ok("{\"mirrors\": [{\"host\": \"http://m\"}], \"proxy\": "
		    "{\"url\": \"http://p2p:65001\", \"check_interval\": 3}}");
	CHECK(h && h->n_mirrors == 2 && STREQ(h->mirrors[0].host, "p2p:65001") &&
	      h->mirrors[0].health_interval_s == 3 &&
	      h->mirrors[0].failure_limit == 1 &&
	      STREQ(h->mirrors[1].host, "m"));
	fetch_hosts_free(h);
	h = json_ok("{\"proxy\": {\"url\": \"http://p2p:65001\", "
		    "\"fallback\": false}}");
	CHECK(h && !h->n_mirrors && h->server &&
	      STREQ(h->server->host, "p2p:65001") && h->server->auth_through);
	fetch_hosts_free(h);

	json_bad("{\"mirrors\": [\n{\"host\": \"http://m\",}\n]}",
		 "nydusd.json: line 2, column");
	json_bad("{\"mirrors\": [{\"headers\": {}}]}",
		 "nydusd.json: mirrors[0].host: missing");
	json_bad("{\"mirrors\": [{\"host\": 1}]}",
		 "nydusd.json: mirrors[0].host: expected a URL string");
	json_bad("{\"device\": {\"backend\": {\"config\": {\"mirrors\": "
		 "[{\"host\": \"http://a\"}, {\"host\": \"http://b\", "
		 "\"failure_limit\": -1}]}}}}",
		 "nydusd.json: device.backend.config.mirrors[1].failure_limit: "
		 "expected an integer");
	json_bad("{\"mirrors\": [{\"host\": \"http://m\", \"headers\": "
		 "[\"x\"]}]}",
		 "mirrors[0].headers: expected an object of strings");
	json_bad("{\"mirrors\": [{\"host\": \"http://m\", \"headers\": "
		 "{\"X\": \"a\\r\\nInjected: 1\"}}]}",
		 "mirrors[0].headers.X: bad name or a line break");
	json_bad("{\"mirrors\": [{\"host\": \"http://m\", \"auth_through\": "
		 "\"yes\"}]}",
		 "mirrors[0].auth_through: expected true or false");
	json_bad("{\"mirrors\": [{\"host\": \"gopher://m\"}]}",
		 "mirrors[0].host: \"gopher://m\": scheme must be http");
	json_bad("{\"mirrors\": {\"host\": \"http://m\"}}",
		 "mirrors: expected an array");
	json_bad("[{\"host\": \"http://m\", \"ping_url\": \"/ping\"}]",
		 "mirrors[0].ping_url: \"/ping\" is not an http(s) URL");
	json_bad("\"x\"", "expected a config object or an array of mirrors");
}

static void test_duration(void)
{
	uint64_t ms = 0;

	CHECK(fetch_duration_ms("1s", &ms) == 0 && ms == 1000);
	CHECK(fetch_duration_ms("500ms", &ms) == 0 && ms == 500);
	CHECK(fetch_duration_ms("1m30s", &ms) == 0 && ms == 90000);
	CHECK(fetch_duration_ms("1.5s", &ms) == 0 && ms == 1500);
	CHECK(fetch_duration_ms("2h", &ms) == 0 && ms == 7200000);
	CHECK(fetch_duration_ms("10us", &ms) == 0 && ms == 1);
	CHECK(fetch_duration_ms("0", &ms) == 0 && ms == 0);
	CHECK(fetch_duration_ms("", &ms) == -EINVAL);
	CHECK(fetch_duration_ms("5", &ms) == -EINVAL);
	CHECK(fetch_duration_ms("s", &ms) == -EINVAL);
	CHECK(fetch_duration_ms("1d", &ms) == -EINVAL);
	CHECK(fetch_duration_ms("25h", &ms) == -EINVAL);
	CHECK(fetch_duration_ms("-1s", &ms) == -EINVAL);
}

static void test_match(void)
{
	CHECK(fetch_hosts_match(NULL, "quay.io", "quay.io"));
	CHECK(fetch_hosts_match("docker.io", "docker.io",
				"registry-1.docker.io"));
	CHECK(fetch_hosts_match("index.docker.io", "docker.io",
				"registry-1.docker.io"));
	CHECK(fetch_hosts_match("registry-1.docker.io", "docker.io", NULL));
	CHECK(fetch_hosts_match("127.0.0.1:5000", "127.0.0.1:5000",
				"127.0.0.1:5000"));
	CHECK(!fetch_hosts_match("127.0.0.1:5000", "127.0.0.1:5001",
				 "127.0.0.1:5001"));
	CHECK(!fetch_hosts_match("ghcr.io", "docker.io",
				 "registry-1.docker.io"));
}

int main(void)
{
	test_toml();
	test_toml_bad();
	test_dir();
	test_nydusd();
	test_duration();
	test_match();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
