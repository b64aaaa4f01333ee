/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of common/toml: valid documents, lookups, and clear errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/toml.h"

#include "check.h"

static struct lp_toml_value *parse_ok(const char *doc, int line)
{
	struct lp_toml_value *root = NULL;
	struct lp_err err = { 0 };

	if (lp_toml_parse(doc, strlen(doc), &root, &err) < 0) {
		fprintf(stderr, "%s:%d: parse failed: %s\n", __FILE__, line,
			err.msg);
		failures++;
		return NULL;
	}
	return root;
}
#define PARSE_OK(doc) parse_ok(doc, __LINE__)

/* The document must fail with a message that contains want. */
static void parse_bad(const char *doc, const char *want, int line)
{
	struct lp_toml_value *root = NULL;
	struct lp_err err = { 0 };

	if (lp_toml_parse(doc, strlen(doc), &root, &err) == 0) {
		fprintf(stderr, "%s:%d: parse of bad document succeeded\n",
			__FILE__, line);
		failures++;
		lp_toml_free(root);
		return;
	}
	if (err.code != -EINVAL || !strstr(err.msg, want)) {
		fprintf(stderr, "%s:%d: error '%s' does not contain '%s'\n",
			__FILE__, line, err.msg, want);
		failures++;
	}
}
#define PARSE_BAD(doc, want) parse_bad(doc, want, __LINE__)

static const char *str(const struct lp_toml_value *root, const char *path)
{
	const char *s = NULL;

	if (lp_toml_get_string(root, path, &s, NULL) < 0)
		return "<missing>";
	return s;
}

static int64_t num(const struct lp_toml_value *root, const char *path)
{
	int64_t v = -424242;

	lp_toml_get_int(root, path, &v, NULL);
	return v;
}

/* nydus-snapshotter's misc/snapshotter/config.toml, in its shape */
static const char nydus_config[] =
	"version = 1\n"
	"# Snapshotter's own home directory where it stores and creates "
	"necessary resources\n"
	"root = \"/var/lib/containerd-nydus\"\n"
	"# The snapshotter's GRPC server socket, containerd will connect to "
	"plugin on this socket\n"
	"address = \"/run/containerd-nydus/containerd-nydus-grpc.sock\"\n"
	"daemon_mode = \"dedicated\"\n"
	"cleanup_on_close = false\n"
	"\n"
	"[system]\n"
	"enable = true\n"
	"address = \"/run/containerd-nydus/system.sock\"\n"
	"\n"
	"[system.debug]\n"
	"daemon_cpu_profile_duration_secs = 5\n"
	"pprof_address = \"\"\n"
	"\n"
	"[daemon]\n"
	"nydusd_config = \"/etc/nydus/nydusd-config.fusedev.json\"\n"
	"nydusd_path = \"/usr/local/bin/nydusd\"\n"
	"nydusimage_path = \"/usr/local/bin/nydus-image\"\n"
	"fs_driver = \"fusedev\"\n"
	"recover_policy = \"restart\"\n"
	"threads_number = 4\n"
	"log_rotation_size = 100\n"
	"\n"
	"[cgroup]\n"
	"enable = true\n"
	"memory_limit = \"\"\n"
	"\n"
	"[log]\n"
	"log_to_stdout = false\n"
	"level = \"info\"\n"
	"log_rotation_compress = true\n"
	"log_rotation_local_time = true\n"
	"log_rotation_max_age = 7\n"
	"log_rotation_max_backups = 5\n"
	"log_rotation_max_size = 100\n"
	"\n"
	"[metrics]\n"
	"address = \":9110\"\n"
	"\n"
	"[remote]\n"
	"convert_vpc_registry = false\n"
	"\n"
	"[remote.mirrors_config]\n"
	"dir = \"/etc/nydus/certs.d\"\n"
	"\n"
	"[remote.auth]\n"
	"enable_kubeconfig_keychain = false\n"
	"kubeconfig_path = \"\"\n"
	"enable_cri_keychain = false\n"
	"image_service_address = \"\"\n"
	"\n"
	"[snapshot]\n"
	"enable_nydus_overlayfs = false\n"
	"sync_remove = false\n"
	"\n"
	"[cache_manager]\n"
	"disable = false\n"
	"gc_period = \"24h\"\n"
	"cache_dir = \"\"\n"
	"\n"
	"[image]\n"
	"public_key_file = \"\"\n"
	"validate_signature = false\n"
	"\n"
	"[experimental]\n"
	"enable_stargz = false\n"
	"enable_referrer_detect = false\n"
	"[experimental.tarfs]\n"
	"enable_tarfs = false\n"
	"export_mode = \"\"\n";

static void test_nydus_config(void)
{
	struct lp_toml_value *r = PARSE_OK(nydus_config);
	bool b = true;
	struct lp_err err = { 0 };
	const char *s;

	if (!r)
		return;
	CHECK(num(r, "version") == 1);
	CHECK(!strcmp(str(r, "root"), "/var/lib/containerd-nydus"));
	CHECK(!strcmp(str(r, "daemon.fs_driver"), "fusedev"));
	CHECK(num(r, "daemon.threads_number") == 4);
	CHECK(!strcmp(str(r, "remote.mirrors_config.dir"),
		      "/etc/nydus/certs.d"));
	CHECK(lp_toml_get_bool(r, "experimental.enable_stargz", &b, NULL) ==
	      0);
	CHECK(!b);
	CHECK(lp_toml_get_bool(r, "experimental.tarfs.enable_tarfs", &b,
			       NULL) == 0);
	CHECK(lp_toml_get_string(r, "nosuch.key", &s, NULL) == -ENOENT);
	CHECK(lp_toml_get_string(r, "daemon.nosuch", &s, NULL) == -ENOENT);
	/* wrong type: clear message with the line */
	CHECK(lp_toml_get_string(r, "daemon.threads_number", &s, &err) ==
	      -EINVAL);
	CHECK(strstr(err.msg, "line 23") != NULL);
	CHECK(strstr(err.msg, "expected a string, got an integer") != NULL);
	lp_toml_free(r);
}

static void test_strings(void)
{
	struct lp_toml_value *r;

	PARSE_BAD("\xc3\xbc = 3\n", "byte 0xc3 where a key was expected");
	r = PARSE_OK("a = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n"
		     "b = 'C:\\Users\\x'\n"
		     "c = \"\"\"\nline1\nline2\"\"\"\n"
		     "d = \"\"\"one \\\n     two\"\"\"\n"
		     "e = '''\nraw \\n text'''\n"
		     "f = \"\"\"a\"\"\"\"\n"
		     "g = ''''quoted' '''\n"
		     "h = \"\"\n"
		     "\"quoted key\" = 1\n"
		     "'lit.key' = 2\n"
		     "\"ü\" = 3\r\n");
	if (!r)
		return;
	CHECK(!strcmp(str(r, "a"),
		      "tab\there \"q\" \\ \xc3\xa9 \xf0\x9f\x98\x80"));
	CHECK(!strcmp(str(r, "b"), "C:\\Users\\x"));
	CHECK(!strcmp(str(r, "c"), "line1\nline2"));
	CHECK(!strcmp(str(r, "d"), "one two"));
	CHECK(!strcmp(str(r, "e"), "raw \\n text"));
	CHECK(!strcmp(str(r, "f"), "a\""));
	CHECK(!strcmp(str(r, "g"), "'quoted' "));
	CHECK(!strcmp(str(r, "h"), ""));
	CHECK(lp_toml_table_get(r, "quoted key")->i == 1);
	CHECK(lp_toml_table_get(r, "lit.key")->i == 2);
	CHECK(lp_toml_get(r, "lit.key") == NULL); /* a path, not a key */
	CHECK(lp_toml_table_get(r, "\xc3\xbc")->i == 3);
	lp_toml_free(r);
}

static void test_numbers(void)
{
	struct lp_toml_value *r = PARSE_OK(
		"a = +99\nb = -17\nc = 0\nd = 1_000_000\n"
		"e = 0xDEAD_beef\nf = 0o755\ng = 0b1101\n"
		"h = 9223372036854775807\ni = -9223372036854775808\n"
		"j = 3.14\nk = -1e-3\nl = 6.626e+34\nm = inf\nn = -nan\n"
		"o = true\np = false\n"
		"q = 1979-05-27T07:32:00Z\nr = 1979-05-27 07:32:00.999-07:00\n"
		"s = 1979-05-27\nt = 07:32:00\n");
	const struct lp_toml_value *v;

	if (!r)
		return;
	CHECK(num(r, "a") == 99);
	CHECK(num(r, "b") == -17);
	CHECK(num(r, "c") == 0);
	CHECK(num(r, "d") == 1000000);
	CHECK(num(r, "e") == 0xdeadbeef);
	CHECK(num(r, "f") == 0755);
	CHECK(num(r, "g") == 13);
	CHECK(num(r, "h") == INT64_MAX);
	CHECK(num(r, "i") == INT64_MIN);
	v = lp_toml_get(r, "j");
	CHECK(v && v->type == LP_TOML_FLOAT && fabs(v->f - 3.14) < 1e-12);
	v = lp_toml_get(r, "k");
	CHECK(v && v->type == LP_TOML_FLOAT && fabs(v->f + 0.001) < 1e-12);
	v = lp_toml_get(r, "m");
	CHECK(v && v->type == LP_TOML_FLOAT && isinf(v->f));
	v = lp_toml_get(r, "n");
	CHECK(v && v->type == LP_TOML_FLOAT && isnan(v->f));
	v = lp_toml_get(r, "o");
	CHECK(v && v->type == LP_TOML_BOOL && v->b);
	v = lp_toml_get(r, "r");
	CHECK(v && v->type == LP_TOML_DATETIME &&
	      !strcmp(v->s, "1979-05-27 07:32:00.999-07:00"));
	v = lp_toml_get(r, "t");
	CHECK(v && v->type == LP_TOML_DATETIME);
	lp_toml_free(r);
}

static void test_tables_arrays(void)
{
	struct lp_toml_value *r = PARSE_OK(
		"# comment\n"
		"[a.b.c]   # implicit a and a.b\n"
		"x = 1\n"
		"[a]\n"
		"y.z = 2   # dotted key table\n"
		"[a.y.w]   # sub-table of a dotted table\n"
		"v = 3\n"
		"[ \"quoted\" . 'k' ]\n"
		"list = [ \"one\", 'two',\n  # comment inside\n  \"three\", ]\n"
		"empty = []\n"
		"mixed = [1, \"s\", [true], {k = 1}]\n"
		"inl = { name = \"n\", sub.deep = 4 }\n"
		"[[bin]]\nname = \"a\"\n[[bin]]\nname = \"b\"\n"
		"[bin.opts]\nfast = true\n");
	const char **list = NULL;
	size_t n = 0;
	const struct lp_toml_value *bin;
	struct lp_err err = { 0 };

	if (!r)
		return;
	CHECK(num(r, "a.b.c.x") == 1);
	CHECK(num(r, "a.y.z") == 2);
	CHECK(num(r, "a.y.w.v") == 3);
	CHECK(lp_toml_get_strings(r, "quoted.k.list", &list, &n, NULL) == 0);
	CHECK(n == 3 && !strcmp(list[0], "one") && !strcmp(list[2], "three"));
	free(list);
	CHECK(lp_toml_get_strings(r, "quoted.k.empty", &list, &n, NULL) == 0);
	CHECK(n == 0);
	free(list);
	CHECK(lp_toml_get_strings(r, "quoted.k.mixed", &list, &n, &err) ==
	      -EINVAL);
	CHECK(strstr(err.msg, "item 0 is an integer") != NULL);
	CHECK(!strcmp(str(r, "quoted.k.inl.name"), "n"));
	CHECK(num(r, "quoted.k.inl.sub.deep") == 4);
	bin = lp_toml_get(r, "bin");
	CHECK(bin && bin->type == LP_TOML_ARRAY && bin->arr.n == 2);
	if (bin && bin->arr.n == 2) {
		CHECK(!strcmp(str(bin->arr.items[1], "name"), "b"));
		const struct lp_toml_value *f =
			lp_toml_get(bin->arr.items[1], "opts.fast");
		CHECK(f && f->type == LP_TOML_BOOL && f->b);
	}
	lp_toml_free(r);

	/* an empty document and a BOM */
	r = PARSE_OK("");
	CHECK(r && r->type == LP_TOML_TABLE && r->tab.n == 0);
	lp_toml_free(r);
	r = PARSE_OK("\xef\xbb\xbf" "a = 1");
	CHECK(r && num(r, "a") == 1);
	lp_toml_free(r);
}

static void test_errors(void)
{
	PARSE_BAD("a = 1\na = 2\n", "line 2, column 6: duplicate key 'a'");
	PARSE_BAD("a = \n", "line 1, column 5: expected a value");
	PARSE_BAD("a = \"unterminated\n", "newline in a single-line string");
	PARSE_BAD("a = \"x", "unterminated string");
	PARSE_BAD("a = \"\\q\"", "invalid escape sequence");
	PARSE_BAD("a = \"\\u12\"", "needs 4 hex digits");
	PARSE_BAD("a = \"\\uD800\"", "not a Unicode scalar");
	PARSE_BAD("a = \"\\u0000\"", "not supported");
	PARSE_BAD("a = \"\xff\"", "invalid UTF-8");
	PARSE_BAD("a = 1 2\n", "expected the end of the line");
	PARSE_BAD("a = 01\n", "invalid value '01'");
	PARSE_BAD("a = 1__0\n", "invalid value");
	PARSE_BAD("a = 9223372036854775808\n", "out of range");
	PARSE_BAD("a = 0x\n", "invalid value");
	/* a number as long as the parse buffer, then '.', 'e', more digits
	 * (fuzz-toml found the first overflowing it) */
	{
		char doc[512];

		for (int tail = 0; tail < 4; tail++) {
			static const char *const tails[] = { ".opts", ".5",
							     "e5", "" };
			int n = snprintf(doc, sizeof(doc), "a = 1");

			for (int i = 0; i < 126; i++)
				doc[n++] = '6';
			snprintf(doc + n, sizeof(doc) - (size_t)n, "%s\n",
				 tails[tail]);
			/* 127 digits fit the buffer: too big for an int */
			PARSE_BAD(doc, tails[tail][0] ? "invalid value"
						      : "out of range");
		}
	}
	PARSE_BAD("a = tru\n", "invalid value 'tru'");
	PARSE_BAD("a = 1979-13-01\n", "invalid date-time");
	PARSE_BAD("a = [1, 2\n", "unterminated array");
	PARSE_BAD("a = [1 2]\n", "expected ',' or ']'");
	PARSE_BAD("a = {b = 1,}\n", "unexpected '}' where a key");
	PARSE_BAD("a = {b = 1\n", "expected ',' or '}'");
	PARSE_BAD("[a]\n[a]\n", "line 2, column 4: table 'a' is already");
	PARSE_BAD("[a]\nb = 1\n[a.b]\n", "is an integer, not a table");
	PARSE_BAD("[a\n", "expected ']'");
	PARSE_BAD("[[a]\n", "expected ']]'");
	PARSE_BAD("a = [1]\n[[a]]\n", "not an array of tables");
	PARSE_BAD("a = {b = 1}\n[a]\n", "already defined");
	PARSE_BAD("a = {b = 1}\na.c = 2\n", "cannot be extended");
	PARSE_BAD("[a.b]\nx = 1\n[a]\nb.y = 2\n", "cannot be extended");
	PARSE_BAD("[x]\ny.z = 1\n[x.y]\n", "already defined");
	PARSE_BAD("= 1\n", "unexpected '='");
	PARSE_BAD("a\n", "expected '=' after a key");
	PARSE_BAD("a = 1 # bad \x01 comment\n", "control character 0x01");
	PARSE_BAD("'''k''' = 1\n", "multi-line strings cannot be keys");

	/* nesting is capped, not a stack overflow */
	char deep[400];

	memset(deep, '[', sizeof(deep));
	memcpy(deep, "a = ", 4);
	deep[sizeof(deep) - 1] = '\0';
	PARSE_BAD(deep, "nested too deeply");
}

static void test_file(const char *dir)
{
	char path[4096];
	struct lp_toml_value *r = NULL;
	struct lp_err err = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/test-toml.toml", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("[daemon]\nfs_driver = 7\n", f);
	fclose(f);
	CHECK(lp_toml_parse_file(path, &r, &err) == 0);
	CHECK(lp_toml_get_string(r, "daemon.fs_driver", &(const char *){ 0 },
				 &err) == -EINVAL);
	CHECK(strstr(err.msg, "line 2: key 'daemon.fs_driver'") != NULL);
	lp_toml_free(r);
	unlink(path);

	lp_err_clear(&err);
	CHECK(lp_toml_parse_file(path, &r, &err) == -ENOENT);
	CHECK(strstr(err.msg, "test-toml.toml") != NULL);
}

int main(int argc, char **argv)
{
	test_nydus_config();
	test_strings();
	test_numbers();
	test_tables_arrays();
	test_errors();
	test_file(argc > 1 ? argv[1] : "/tmp");
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("toml: all tests passed\n");
	return 0;
}
