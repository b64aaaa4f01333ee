/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The modules a Python module imports while it is being imported: the
 * import statements of its module-level code and of its class bodies
 * (executed at import), not those inside functions (executed, if ever,
 * when called).  Read from a compiled module (.pyc of CPython 3.8-3.12:
 * the marshalled code objects, their IMPORT_NAME instructions with the
 * level and from-list loaded before them) or from source text (the
 * statements outside any def, strings and comments skipped).
 *
 * Used to prefetch a Python program's imports (fs/startset.h).  Nothing
 * read from the file is trusted: every count, length, reference and
 * nesting level is bounded; a .pyc of an unknown version is -ENOEXEC, a
 * malformed one -EBADMSG with a message.
 */
#ifndef LAZYPULL_FS_PYIMPORT_H
#define LAZYPULL_FS_PYIMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define PY_MAX_IMPORTS 4096 /* per module */
#define PY_MAX_NAME 256	    /* a dotted module name */

struct py_import {
	char *name;	 /* dotted; "" for "from . import x" */
	uint32_t level;	 /* 0: absolute; n: relative, n dots */
	char **from;	 /* "from name import a, b": a, b ("*" left out) */
	uint32_t n_from;
};

struct py_imports {
	struct py_import *v;
	uint32_t n, cap;
};

/* The imports of a compiled module (the whole .pyc file). */
int py_pyc_imports(const void *data, size_t len, struct py_imports *ret,
		   struct lp_err *err);
/* The imports of source text (never fails on odd text: it finds less). */
int py_source_imports(const char *text, size_t len, struct py_imports *ret);
void py_imports_release(struct py_imports *p);

#endif
