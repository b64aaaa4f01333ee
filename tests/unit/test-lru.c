// SPDX-License-Identifier: Apache-2.0
/*
 * Unit test of lp_lru_remove() (common/lru.c): one entry of the blob cache
 * or the decoded store removed the way an eviction removes it, never while
 * a process holds it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "common/lru.h"

#include "check.h"

static char dir[] = "/tmp/lp-test-lru-XXXXXX";

static char *path(const char *name)
{
	return lp_xasprintf("%s/%s", dir, name);
}

static void put(const char *p)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	if (fd >= 0)
		close(fd);
}

static bool there(const char *p)
{
	return access(p, F_OK) == 0;
}

int main(void)
{
	char *data, *side;
	int fd;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	data = path("e.data");
	side = path("e.map");

	/* both, nobody holds them: gone */
	put(data);
	put(side);
	CHECK(lp_lru_remove(data, side));
	CHECK(!there(data) && !there(side));

	/* held (a reader's shared lock): both stay */
	put(data);
	put(side);
	fd = open(data, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && flock(fd, LOCK_SH) == 0);
	CHECK(!lp_lru_remove(data, side));
	CHECK(there(data) && there(side));
	close(fd);
	CHECK(lp_lru_remove(data, side));
	CHECK(!there(data) && !there(side));

	/* a side file without its data file goes too; nothing at all is
	 * gone already */
	put(side);
	CHECK(lp_lru_remove(data, side));
	CHECK(!there(side));
	CHECK(lp_lru_remove(data, side));

	rmdir(dir);
	free(data);
	free(side);
	if (failures)
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
	else
		printf("ok (%d checks)\n", checks);
	return failures != 0;
}
