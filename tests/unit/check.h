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

#include <stdio.h>

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

#endif
