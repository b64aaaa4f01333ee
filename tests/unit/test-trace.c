/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the access trace recorder and reader (fs/trace.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/model.h"
#include "fs/trace.h"

#include "check.h"

static struct model *tree(void)
{
	static const char *const files[] = { "usr/bin/python3", "etc/hosts",
					     "usr/lib/a.py", "usr/lib/b.py",
					     "weird\nname" };
	struct model_builder *b = model_builder_new(0);
	struct lp_err err = { 0 };
	struct model *m = NULL;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct model_entry e = { .path = files[i],
					 .path_len = strlen(files[i]),
					 .type = MODEL_REG, .mode = 0644 };
		uint32_t id;

		CHECK(model_builder_add(b, &e, &id, &err) == 0);
	}
	CHECK(model_builder_finish(b, &m, &err) == 0);
	return m;
}

static void write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs(s, f);
	fclose(f);
}

static int load_err(const char *path, const char *s, char *msg, size_t size)
{
	struct lp_err err = { 0 };
	char **v = NULL;
	uint32_t n = 0;
	int r;

	write_str(path, s);
	r = trace_load(path, &v, &n, &err);
	free(v);
	snprintf(msg, size, "%s", err.msg);
	return r;
}

static void test_record_load(const char *dir)
{
	struct model *m = tree();
	struct trace *t = NULL;
	struct lp_err err = { 0 };
	char path[512], **v = NULL;
	uint32_t n = 0, py, hosts, a, weird;

	if (!m)
		return;
	py = model_lookup_path(m, "/usr/bin/python3");
	hosts = model_lookup_path(m, "/etc/hosts");
	a = model_lookup_path(m, "/usr/lib/a.py");
	weird = model_lookup_path(m, "/weird\nname");
	CHECK(py && hosts && a && weird);
	snprintf(path, sizeof(path), "%s/t1", dir);

	/* nothing opened: nothing written */
	CHECK(trace_new(m, path, 0, &t, &err) == 0);
	trace_free(t);
	CHECK(access(path, F_OK) < 0 && errno == ENOENT);

	/* first opens in order, repeats and bad inodes ignored */
	CHECK(trace_new(m, path, 0, &t, &err) == 0);
	trace_note(t, py);
	trace_note(t, hosts);
	trace_note(t, py);
	trace_note(t, weird); /* not recordable in the text form */
	trace_note(t, a);
	trace_note(t, m->n_inodes + 5);
	trace_note(NULL, a);
	CHECK(trace_count(t) == 4);
	trace_free(t);
	CHECK(trace_load(path, &v, &n, &err) == 0);
	CHECK(n == 3);
	if (n == 3) {
		CHECK(!strcmp(v[0], "/usr/bin/python3"));
		CHECK(!strcmp(v[1], "/etc/hosts"));
		CHECK(!strcmp(v[2], "/usr/lib/a.py"));
	}
	free(v);

	/* the window: written when it closes, later opens not recorded */
	snprintf(path, sizeof(path), "%s/t2", dir);
	CHECK(trace_new(m, path, 1, &t, &err) == 0);
	trace_note(t, hosts);
	for (int i = 0; i < 40 && access(path, F_OK) < 0; i++)
		usleep(100000);
	CHECK(access(path, F_OK) == 0);
	trace_note(t, a);
	CHECK(trace_count(t) == 1);
	trace_free(t);
	CHECK(trace_load(path, &v, &n, &err) == 0 && n == 1);
	free(v);

	/* an unwritable place: a warning, no crash */
	snprintf(path, sizeof(path), "%s/no/such/dir/t3", dir);
	CHECK(trace_new(m, path, 0, &t, &err) == 0);
	trace_note(t, a);
	trace_free(t);
	model_free(m);
}

static void test_bad_files(const char *dir)
{
	char path[512], msg[sizeof(((struct lp_err *)0)->msg)];
	struct lp_err err = { 0 };
	char **v = NULL;
	uint32_t n = 7;

	snprintf(path, sizeof(path), "%s/missing", dir);
	CHECK(trace_load(path, &v, &n, &err) == -ENOENT && !v && n == 0 &&
	      !err.msg[0]);
	snprintf(path, sizeof(path), "%s/bad", dir);
	CHECK(load_err(path, "", msg, sizeof(msg)) == -EINVAL &&
	      strstr(msg, "not a lazypull trace"));
	CHECK(load_err(path, "lazypull-trace 2\n/a\n", msg, sizeof(msg)) ==
	      -EINVAL);
	CHECK(load_err(path, "lazypull-trace 1\n/a\n/b", msg, sizeof(msg)) ==
		      -EINVAL &&
	      strstr(msg, "truncated"));
	CHECK(load_err(path, "lazypull-trace 1\n/a\nrelative\n", msg,
		       sizeof(msg)) == -EINVAL &&
	      strstr(msg, "entry 2"));
	CHECK(load_err(path, "lazypull-trace 1\n/a\n\n", msg, sizeof(msg)) ==
	      -EINVAL);
	CHECK(load_err(path, "lazypull-trace 1\n", msg, sizeof(msg)) == 0);
	/* a directory is no trace */
	CHECK(trace_load(dir, &v, &n, &err) == -EINVAL);
	/* from memory: a NUL inside */
	lp_err_clear(&err);
	CHECK(trace_parse("lazypull-trace 1\n/a\0b\n", 21, "mem", &v, &n,
			  &err) == -EINVAL);
}

int main(void)
{
	char dir[] = "/tmp/test-trace.XXXXXX";
	char cmd[64];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_record_load(dir);
	test_bad_files(dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
