/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the snapshotter module without containerd or root:
 * config (flags, config.toml, nydusd JSON, precedence), the filter
 * language, label rules, the store's semantics and persistence, and a
 * gRPC call end to end on an in-memory HTTP/2 connection.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshotter/proto/snapshots.pb-c.h"
#include "snapshotter/snapshotter-int.h"
#include "tests/unit/check.h"

static char tmp[4096];

static void write_file(const char *name, const char *text)
{
	char p[4200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", tmp, name);
	f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static int load(struct snap_config *c, struct lp_err *err, ...)
{
	char *argv[32] = { "containerd-nydus-grpc" };
	int argc = 1;
	va_list ap;
	char *a;

	va_start(ap, err);
	while ((a = va_arg(ap, char *)) && argc < 31)
		argv[argc++] = a;
	va_end(ap);
	lp_err_clear(err);
	return snap_config_load(c, argc, argv, err);
}

static bool has_note(const struct snap_config *c, const char *s)
{
	for (size_t i = 0; i < c->n_notes; i++)
		if (strstr(c->notes[i], s))
			return true;
	return false;
}

/* The nearest parent whose whole ancestry is covering (two or more). */
static void test_covering(void)
{
	const bool all[4] = { true, true, true, true };
	const bool top_unpacked[4] = { false, true, true, true };
	const bool mid_unpacked[4] = { true, false, true, true };
	const bool base_unpacked[4] = { true, true, true, false };
	const bool one[1] = { true };

	CHECK(snap_chain_covering(all, 4) == 0);
	CHECK(snap_chain_covering(top_unpacked, 4) == 1);
	CHECK(snap_chain_covering(mid_unpacked, 4) == 2);
	CHECK(snap_chain_covering(base_unpacked, 4) == 4);
	CHECK(snap_chain_covering(one, 1) == 1); /* alone: its own mount */
	CHECK(snap_chain_covering(all, 0) == 0);
}

static void test_config(void)
{
	struct snap_config c;
	struct lp_err err = { 0 };
	char p1[4200], p2[4200], p3[4200];

	/* defaults */
	CHECK(load(&c, &err, "--nydusd-config", "/dev/null/x", NULL) < 0);
	snap_config_release(&c);
	CHECK(load(&c, &err, NULL) == 0);
	CHECK(!strcmp(c.root, SNAP_DEFAULT_ROOT));
	CHECK(!strcmp(c.address, SNAP_DEFAULT_ADDRESS));
	CHECK(!strcmp(c.log_dir, SNAP_DEFAULT_ROOT "/logs"));
	CHECK(!c.enable_stargz && c.log_level == LP_LOG_INFO);
	snap_config_release(&c);

	/* Go-style flags: single dash, =value, bool forms */
	CHECK(load(&c, &err, "-root", "/r", "--address=/a.sock",
		   "--enable-stargz", "--log-to-stdout=true", "-log-level",
		   "trace", "--daemon-mode", "multiple", "--nydusd", "/x/nydusd",
		   NULL) == 0);
	CHECK(!strcmp(c.root, "/r") && !strcmp(c.address, "/a.sock"));
	CHECK(c.enable_stargz && c.log_to_stdout);
	CHECK(c.log_level == LP_LOG_DEBUG);
	CHECK(c.daemon_mode == SNAP_DAEMON_DEDICATED);
	CHECK(has_note(&c, "--nydusd /x/nydusd is ignored"));
	snap_config_release(&c);
	CHECK(load(&c, &err, "--enable-stargz=0", NULL) == 0 &&
	      !c.enable_stargz);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--fs-driver", "fscache", NULL) == -EINVAL);
	CHECK(strstr(err.msg, "fscache") && strstr(err.msg, "fusedev"));
	snap_config_release(&c);
	CHECK(load(&c, &err, "--root", "relative", NULL) == -EINVAL);
	snap_config_release(&c);
	CHECK(load(&c, &err, "extra-arg", NULL) == -EINVAL);
	snap_config_release(&c);
	/* defaults: merged mounts on, early mount off, no amplify_io, the
	 * blob cache unbounded */
	CHECK(load(&c, &err, NULL) == 0);
	CHECK(!c.early_mount && !c.no_merged_mounts && c.amplify_io == -1);
	CHECK(c.cache_max == 0);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--cache-max", "1GiB", NULL) == -EINVAL);
	CHECK(strstr(err.msg, "--cache-max 1GiB") != NULL);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--cache-max", "-1", NULL) == -EINVAL);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--early-mount", "--merged-mounts=false",
		   NULL) == 0);
	CHECK(c.early_mount && c.no_merged_mounts);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--merged-mounts=maybe", NULL) == -EINVAL);
	snap_config_release(&c);

	/* config.toml, then flags over it */
	snprintf(p1, sizeof(p1), "%s/nydusd.json", tmp);
	write_file("nydusd.json",
		   "{\"device\":{\"backend\":{\"type\":\"registry\",\"config\":"
		   "{\"scheme\":\"http\",\"auth\":\"c2VjcmV0\",\"timeout\":7,"
		   "\"mirrors\":[{\"host\":\"m1:5000\"}]}},\"cache\":{\"type\":"
		   "\"blobcache\",\"config\":{\"work_dir\":\"/wd\"}}},"
		   "\"fs_prefetch\":{\"enable\":true,\"threads_count\":3},"
		   "\"amplify_io\":1048576}");
	snprintf(p2, sizeof(p2), "%s/config.toml", tmp);
	{
		char toml[8192];

		snprintf(toml, sizeof(toml),
			 "version = 1\nroot = \"/from-toml\"\n"
			 "address = \"/toml.sock\"\ndaemon_mode = \"shared\"\n"
			 "[daemon]\nnydusd_config = \"%s\"\n"
			 "nydusd_path = \"/usr/bin/nydusd\"\n"
			 "[log]\nlevel = \"warn\"\nlog_to_stdout = true\n"
			 "[experimental]\nenable_stargz = true\n"
			 "early_mount = true\nmerged_mounts = false\n"
			 "[remote.mirrors_config]\ndir = \"/etc/nydus/certs.d\"\n"
			 "[cache_manager]\ngc_period = \"24h\"\n"
			 "max_bytes = 1073741824\n",
			 p1);
		write_file("config.toml", toml);
	}
	CHECK(load(&c, &err, "--config", p2, NULL) == 0);
	CHECK(!strcmp(c.root, "/from-toml") && !strcmp(c.address, "/toml.sock"));
	CHECK(c.daemon_mode == SNAP_DAEMON_SHARED && c.enable_stargz);
	CHECK(c.log_level == LP_LOG_WARN && c.log_to_stdout);
	CHECK(!strcmp(c.backend.type, "registry") &&
	      !strcmp(c.backend.scheme, "http") &&
	      !strcmp(c.backend.auth, "c2VjcmV0") && c.backend.timeout_s == 7);
	CHECK(c.backend.n_mirrors == 1 && !strcmp(c.backend.mirrors[0], "m1:5000"));
	CHECK(c.amplify_io == 1048576);
	CHECK(c.early_mount && c.no_merged_mounts);
	CHECK(!strcmp(c.cache_dir, "/wd") && c.prefetch.enable &&
	      c.prefetch.threads == 3);
	CHECK(!strcmp(c.mirrors_dir, "/etc/nydus/certs.d"));
	CHECK(has_note(&c, "daemon.nydusd_path"));
	CHECK(has_note(&c, "cache_manager.gc_period = \"24h\" is ignored"));
	CHECK(c.cache_max == 1073741824);
	snap_config_release(&c);
	CHECK(load(&c, &err, "--config", p2, "--root", "/flag",
		   "--enable-stargz=false", "--daemon-mode", "dedicated",
		   "--log-level", "error", "--cache-max", "5", NULL) == 0);
	CHECK(!strcmp(c.root, "/flag") && !strcmp(c.address, "/toml.sock"));
	CHECK(c.cache_max == 5); /* the flag wins */
	CHECK(!c.enable_stargz && c.daemon_mode == SNAP_DAEMON_DEDICATED);
	CHECK(c.log_level == LP_LOG_ERROR);
	snap_config_release(&c);

	/* errors name the file and line */
	snprintf(p3, sizeof(p3), "%s/bad.toml", tmp);
	write_file("bad.toml", "version = 1\n[experimental]\nenable_stargz = "
			       "\"yes\"\n");
	CHECK(load(&c, &err, "--config", p3, NULL) == -EINVAL);
	CHECK(strstr(err.msg, "line 3") && strstr(err.msg, "expected a boolean"));
	snap_config_release(&c);
	write_file("bad.toml", "root = \"x\"\nroot = \"y\"\n");
	CHECK(load(&c, &err, "--config", p3, NULL) == -EINVAL);
	CHECK(strstr(err.msg, "line 2") && strstr(err.msg, "duplicate key"));
	snap_config_release(&c);
}

static struct snap_info info(const char *name, const char *parent,
			     enum snap_kind kind, struct snap_label *l,
			     size_t n)
{
	struct snap_info i = { .name = (char *)name, .parent = (char *)parent,
			       .kind = kind, .labels = l, .n_labels = n };
	return i;
}

static bool fmatch(const char *f, const struct snap_info *i)
{
	struct snap_filter *flt = NULL;
	struct lp_err err = { 0 };
	bool m;

	if (snap_filter_parse(&f, 1, &flt, &err) < 0) {
		fprintf(stderr, "filter %s: %s\n", f, err.msg);
		failures++;
		return false;
	}
	m = snap_filter_match(flt, i);
	snap_filter_free(flt);
	return m;
}

static void test_filters(void)
{
	struct snap_label l[] = { { "a.b", "1" },
				  { "containerd.io/snapshot.ref", "sha256:x" } };
	struct snap_info i = info("n1", "p1", SNAP_KIND_COMMITTED, l, 2);
	struct snap_info j = info("n2", "", SNAP_KIND_ACTIVE, NULL, 0);
	const char *bad[] = { "name==", "==x", "name=x", "name~~x", "name===x",
			      "labels.\"unterminated", "name==a b", ",",
			      "name==\"\\q\"", "name==/x/" };
	const char *two[] = { "name==zz", "kind==active" };
	struct snap_filter *f;
	struct lp_err err = { 0 };

	CHECK(fmatch("name==n1", &i) && !fmatch("name==n1", &j));
	CHECK(fmatch("kind==committed", &i) && fmatch("kind==active", &j));
	CHECK(fmatch("labels.\"a.b\"==1", &i) && fmatch("labels.a.b", &i));
	CHECK(!fmatch("labels.a.b", &j));
	CHECK(fmatch("labels.\"containerd.io/snapshot.ref\"==sha256:x,"
		     "parent==p1", &i));
	CHECK(!fmatch("labels.\"containerd.io/snapshot.ref\"==sha256:x,"
		      "parent==p2", &i));
	CHECK(fmatch("parent==\"\"", &j) && !fmatch("parent==\"\"", &i));
	CHECK(fmatch("parent!=p2", &i) && fmatch("labels.nope!=x", &i));
	CHECK(fmatch("name~=^n[0-9]$", &i) && fmatch("name~=/^n1$/", &i));
	CHECK(fmatch("name~=|n.|", &j) && !fmatch("name~=^x", &i));
	CHECK(fmatch("  name == n1 , kind == committed ", &i));
	CHECK(fmatch("name==\"n\\x31\"", &i));
	CHECK(fmatch("", &i)); /* an empty filter matches all */
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		lp_err_clear(&err);
		f = NULL;
		CHECK(snap_filter_parse(&bad[k], 1, &f, &err) == -EINVAL);
		CHECK(strstr(err.msg, "invalid argument") != NULL);
	}
	CHECK(snap_filter_parse(two, 2, &f, &err) == 0);
	CHECK(snap_filter_match(f, &j) && !snap_filter_match(f, &i));
	snap_filter_free(f);
}

static void test_labels(void)
{
	char big[SNAP_LABEL_MAX + 2];
	struct snap_label in[] = { { "b", "1" }, { "a", "x" }, { "b", "2" },
				   { "e", "" } };
	struct snap_label *out;
	struct lp_err err = { 0 };
	size_t n;

	CHECK(snap_labels_normalize(in, 4, &out, &n, &err) == 0);
	CHECK(n == 2 && !strcmp(out[0].key, "a") && !strcmp(out[1].value, "2"));
	CHECK(!strcmp(snap_labels_get(out, n, "b"), "2"));
	CHECK(!snap_labels_get(out, n, "e"));
	snap_labels_free(out, n);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	in[0].value = big;
	CHECK(snap_labels_normalize(in, 1, &out, &n, &err) == -EINVAL);
}

static int count(const struct snap_info *i, void *data)
{
	(void)i;
	(*(int *)data)++;
	return 0;
}

static void test_store(void)
{
	char root[4200], path[4400];
	struct snap_store *s;
	struct snap_mounts m = { 0 };
	struct snap_info i = { 0 };
	struct snap_usage u;
	struct lp_err err = { 0 };
	struct snap_label l = { "k", "v" };
	struct snap_cursor cur = { .len = 0 };
	char longkey[1000];
	bool done;
	int n = 0;

	snprintf(root, sizeof(root), "%s/store", tmp);
	CHECK(snap_store_open(root, &s, &err) == 0);
	CHECK(snap_store_create(s, SNAP_KIND_ACTIVE, "a", "", &l, 1, &m,
				&err) == 0);
	CHECK(m.n == 1 && !strcmp(m.m[0].type, "bind"));
	snap_mounts_release(&m);
	/* a long key is stored under a hash and still works */
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	CHECK(snap_store_create(s, SNAP_KIND_ACTIVE, longkey, "", NULL, 0, &m,
				&err) == 0);
	snap_mounts_release(&m);
	CHECK(snap_store_commit(s, "c", "a", NULL, 0, &err) == 0);
	CHECK(snap_store_stat(s, longkey, &i, &err) == 0 &&
	      !strcmp(i.name, longkey));
	snap_info_release(&i);
	CHECK(snap_store_commit(s, "c2", longkey, NULL, 0, &err) == 0);
	CHECK(snap_store_create(s, SNAP_KIND_VIEW, "v", "c", NULL, 0, &m,
				&err) == 0);
	CHECK(m.n == 1 && !strcmp(m.m[0].type, "bind") &&
	      !strcmp(m.m[0].options[0], "ro"));
	snap_mounts_release(&m);
	CHECK(snap_store_stat(s, "c", &i, &err) == 0);
	CHECK(i.kind == SNAP_KIND_COMMITTED && i.n_labels == 0);
	snap_info_release(&i);
	CHECK(snap_store_usage(s, "c", &u, &err) == 0 && u.inodes == 1);
	CHECK(snap_store_walk(s, &cur, NULL, 100, count, &n, &done, &err) == 0);
	CHECK(n == 3 && done);
	lp_err_clear(&err);
	CHECK(snap_store_remove(s, "c", &err) == -EBUSY);
	CHECK(snap_grpc_code(-EBUSY) == SNAP_GRPC_FAILED_PRECONDITION);
	snap_store_close(s);

	/* reopened: all there; a stray directory is swept */
	snprintf(path, sizeof(path), "%s/snapshots/new-crash", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/snapshots/999", root);
	mkdir(path, 0700);
	CHECK(snap_store_open(root, &s, &err) == 0);
	CHECK(access(path, F_OK) < 0);
	CHECK(snap_store_stat(s, "v", &i, &err) == 0 &&
	      !strcmp(i.parent, "c"));
	snap_info_release(&i);
	CHECK(snap_store_remove(s, "v", &err) == 0);
	CHECK(snap_store_remove(s, "c", &err) == 0);
	CHECK(snap_store_cleanup(s, &err) == 0);
	snap_store_close(s);
}

/* Prepare through HTTP/2 frames in memory, with the real service. */
static void test_memconn(void)
{
	static const uint8_t pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				     "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	const char *path = "/containerd.services.snapshots.v1.Snapshots/Prepare";
	uint8_t buf[1024], *p = buf;
	struct snap_service svc = { 0 };
	struct snap_memconn *m;
	struct lp_err err = { 0 };
	char root[4200];
	const uint8_t *out;
	size_t olen, hl;

	snprintf(root, sizeof(root), "%s/mem", tmp);
	CHECK(snap_store_open(root, &svc.store, &err) == 0);
	m = snap_memconn_new(NULL, 0, &svc);
	memcpy(p, pre, sizeof(pre) - 1);
	p += sizeof(pre) - 1;
	/* HEADERS: literal fields, no Huffman */
	uint8_t *h = p + 9;
	const char *hdr[][2] = { { ":method", "POST" },
				 { ":scheme", "http" },
				 { ":path", path },
				 { "content-type", "application/grpc" } };
	uint8_t *q = h;

	for (size_t i = 0; i < ARRAY_SIZE(hdr); i++) {
		*q++ = 0;
		*q++ = (uint8_t)strlen(hdr[i][0]);
		memcpy(q, hdr[i][0], strlen(hdr[i][0]));
		q += strlen(hdr[i][0]);
		*q++ = (uint8_t)strlen(hdr[i][1]);
		memcpy(q, hdr[i][1], strlen(hdr[i][1]));
		q += strlen(hdr[i][1]);
	}
	hl = (size_t)(q - h);
	memcpy(p, (uint8_t[]){ 0, 0, (uint8_t)hl, 1, 4, 0, 0, 0, 1 }, 9);
	p = q;
	/* DATA: PrepareSnapshotRequest{key: "k1"} */
	memcpy(p, (uint8_t[]){ 0, 0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 4, 0x12,
			       2, 'k', '1' },
	       18);
	p += 18;
	CHECK(snap_memconn_feed(m, buf, (size_t)(p - buf)) == 0);
	out = snap_memconn_output(m, &olen);
	/* the response carries the bind mount of snapshot 1 */
	CHECK(olen > 0 && memmem(out, olen, "/snapshots/1/fs", 15) != NULL);
	CHECK(memmem(out, olen, "rbind", 5) != NULL);
	snap_memconn_free(m);
	struct snap_info i;

	CHECK(snap_store_stat(svc.store, "k1", &i, &err) == 0);
	snap_info_release(&i);
	snap_store_close(svc.store);
}

int main(int argc, char **argv)
{
	snprintf(tmp, sizeof(tmp), "%s/test-snapshotter-XXXXXX",
		 argc > 1 ? argv[1] : "/tmp");
	if (!mkdtemp(tmp)) {
		perror(tmp);
		return 1;
	}
	lp_log_max = LP_LOG_ERROR;
	test_config();
	test_covering();
	test_filters();
	test_labels();
	test_store();
	test_memconn();
	if (failures) {
		fprintf(stderr, "%d failure(s); files in %s\n", failures, tmp);
		return 1;
	}
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	printf("snapshotter: all unit tests passed\n");
	return 0;
}
