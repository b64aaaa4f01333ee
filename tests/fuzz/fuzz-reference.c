// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: image reference parsing.  A parsed reference must print
 * back to a string that parses to the same reference.
 */
#include <stdio.h>
#include <string.h>

#include "fetcher/fetcher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_ref r, r2;
	struct lp_err err = { 0 };
	char *s;

	if (fetch_ref_parse((const char *)data, size, &r, &err) < 0) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	s = fetch_ref_string(&r);
	if (fetch_ref_parse(s, strlen(s), &r2, NULL) < 0)
		abort();
	if (!same(r.registry, r2.registry) || !same(r.host, r2.host) ||
	    !same(r.repo, r2.repo) || !same(r.tag, r2.tag) ||
	    !same(r.digest, r2.digest))
		abort();
	fetch_ref_release(&r2);
	fetch_ref_release(&r);
	free(s);
	return 0;
}
