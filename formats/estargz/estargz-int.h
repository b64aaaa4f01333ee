/* SPDX-License-Identifier: Apache-2.0 */
/* formats/estargz private declarations shared by its .c files. */
#ifndef LP_FORMATS_ESTARGZ_INT_H
#define LP_FORMATS_ESTARGZ_INT_H

#include "formats/estargz/estargz.h"

/* load()'s private context: decode_chunk dispatches on c->codec, so all it
 * needs to remember is which kind of blob it came from. */
struct format_ctx {
	enum estargz_kind kind;
	struct estargz_footer footer;
};

/*
 * jarena.c: between begin and end, this thread's jansson allocations come
 * from blocks freed all at once by end (a TOC's values live exactly that
 * long).  Nests; a begin without its end leaks the blocks.
 */
struct jblock;
struct jarena {
	struct jblock *head;
	struct jarena *prev;
};
void estargz_jarena_begin(struct jarena *a);
void estargz_jarena_end(struct jarena *a);

#endif
