/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's python3 for the tests of fs/pyimport and fs/startset, through
 * tests/unit/pyimport-ref.py: its version, cache tag and stdlib directory,
 * and .pyc files compiled by it from sources a test writes.
 */
#ifndef LP_TEST_PYHOST_H
#define LP_TEST_PYHOST_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pyhost {
	const char *ref; /* pyimport-ref.py */
	unsigned major, minor;
	char tag[32];	      /* "cpython-311" */
	char stdlib[PATH_MAX]; /* "/usr/lib/python3.11" */
};

/* a path that can go between single quotes in a shell command */
static inline bool pyhost_quotable(const char *s)
{
	return !strchr(s, '\'') && !strchr(s, '\n');
}

/* python3's version: false (with the reason printed) if there is no
 * python3 or it is not a CPython 3.8-3.12 */
static inline bool pyhost_info(const char *ref, struct pyhost *h)
{
	char cmd[PATH_MAX + 64], fmt[64];
	FILE *f;
	int n;

	memset(h, 0, sizeof(*h));
	h->ref = ref;
	if (!ref || !pyhost_quotable(ref)) {
		printf("python3: no reference script\n");
		return false;
	}
	snprintf(cmd, sizeof(cmd), "python3 '%s' info 2>/dev/null", ref);
	f = popen(cmd, "r");
	if (!f) {
		printf("python3: cannot run\n");
		return false;
	}
	snprintf(fmt, sizeof(fmt), "%%u %%u %%31s %%%ds", PATH_MAX - 1);
	n = fscanf(f, fmt, &h->major, &h->minor, h->tag, h->stdlib);
	if (pclose(f) != 0 || n != 4) {
		printf("python3: not found or it failed\n");
		return false;
	}
	if (h->major != 3 || h->minor < 8 || h->minor > 12 ||
	    strncmp(h->tag, "cpython-", 8)) {
		printf("python3: %u.%u (%s), not a CPython 3.8-3.12\n",
		       h->major, h->minor, h->tag);
		return false;
	}
	return true;
}

/* every dir/NAME.py compiled to dir/NAME.pyc by python3 */
static inline bool pyhost_compile(const struct pyhost *h, const char *dir)
{
	char cmd[2 * PATH_MAX + 64];

	if (!pyhost_quotable(dir))
		return false;
	snprintf(cmd, sizeof(cmd), "python3 '%s' compile '%s'", h->ref, dir);
	return system(cmd) == 0;
}

#endif
