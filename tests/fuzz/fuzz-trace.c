// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the access trace reader (fs/trace.c).  Any input either
 * parses into absolute paths without newlines or fails with a message.
 */
#include <stdlib.h>
#include <string.h>

#include "fs/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lp_err err = { 0 };
	char **v = NULL;
	uint32_t n = 0;
	int r = trace_parse((const char *)data, size, "fuzz", &v, &n, &err);

	if (r < 0) {
		if (!err.msg[0] || v || n)
			abort();
		return 0;
	}
	if (n > TRACE_MAX_ENTRIES)
		abort();
	for (uint32_t i = 0; i < n; i++)
		if (v[i][0] != '/' || strchr(v[i], '\n'))
			abort();
	free(v);
	return 0;
}
