// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: a Python module's imports (fs/pyimport.h), the input read
 * both as a .pyc (py_pyc_imports) and as source text (py_source_imports);
 * what was found is looked at (every string terminated, within the
 * limits) and released.
 */
#include <string.h>

#include "fs/pyimport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink; /* the strings are read, not optimised out */

static void look(const struct py_imports *imps)
{
	size_t sum = 0;

	if (imps->n > PY_MAX_IMPORTS)
		__builtin_trap();
	for (uint32_t i = 0; i < imps->n; i++) {
		const struct py_import *im = &imps->v[i];
		size_t nl = strlen(im->name);

		/* a name, or "" for "from . import x" */
		if (nl >= PY_MAX_NAME || (!nl && !im->level))
			__builtin_trap();
		sum += nl + im->level;
		for (uint32_t k = 0; k < im->n_from; k++) {
			size_t fl = strlen(im->from[k]);

			if (!fl || fl >= PY_MAX_NAME ||
			    !strcmp(im->from[k], "*"))
				__builtin_trap();
			sum += fl;
		}
	}
	sink = sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct py_imports imps;
	struct lp_err err = { 0 };
	int r;

	r = py_pyc_imports(data, size, &imps, &err);
	if (r < 0) {
		/* malformed says why; not a known .pyc says nothing; nothing
		 * is left to release */
		if ((r != -ENOEXEC && !err.msg[0]) || imps.n || imps.v)
			__builtin_trap();
	} else {
		look(&imps);
		py_imports_release(&imps);
	}
	if (py_source_imports((const char *)data, size, &imps) != 0)
		__builtin_trap();
	look(&imps);
	py_imports_release(&imps);
	return 0;
}
