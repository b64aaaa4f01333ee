/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The unit tests' CHECK.  A check that fails prints where and what, and
 * counts in failures; a test's main returns non-zero if any failed.  checks
 * counts every check, for tests that report it.
 *
 * CHECK(cond) by default.  A test whose checks explain themselves defines
 * CHECK_WITH_MESSAGE before including this, for CHECK(cond, fmt, ...).
 */
#ifndef LP_TEST_CHECK_H
#define LP_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static int checks __attribute__((unused));

#ifdef CHECK_WITH_MESSAGE
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		checks++;                                                      \
		if (!(cond)) {                                                 \
			failures++;                                            \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__,     \
				#cond);                                        \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)
#else
#define CHECK(cond)                                                            \
	do {                                                                   \
		checks++;                                                      \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)
#endif

/* A whole file, malloc'd (NULL if unreadable); for tests that use host
 * files. */
static inline uint8_t *check_slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL, *nb;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	for (;;) {
		if (cap - len < 65536) {
			cap = cap * 2 + 65536;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		if (!n)
			break;
		len += n;
	}
	fclose(f);
	*ret_len = len;
	return buf;
}

#endif
