/* SPDX-License-Identifier: Apache-2.0 */
/* formats/estargz private declarations shared by its .c files. */
#ifndef LP_FORMATS_ESTARGZ_INT_H
#define LP_FORMATS_ESTARGZ_INT_H

#include <string.h>
#include <strings.h>

#include "formats/estargz/estargz.h"

/* load()'s private context: decode_chunk dispatches on c->codec, so all it
 * needs to remember is which kind of blob it came from. */
struct format_ctx {
	enum estargz_kind kind;
	struct estargz_footer footer;
};

/*
 * tjson.c: a TOC's JSON as a tape of nodes in document order.  An array's
 * elements follow it, each ending where .next says; an object's members
 * are a key (a TJ_STR) followed by its value.  Strings point into the text
 * or into the document's buffer of decoded strings, with a length, and are
 * not NUL-terminated.
 */
enum tj_type { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_INT, TJ_REAL, TJ_STR, TJ_ARR,
	       TJ_OBJ };

struct tj_node {
	uint8_t type;  /* enum tj_type */
	uint32_t next; /* the index just past this value and its children */
	uint32_t len;  /* string: bytes; array: elements; object: members */
	union {
		int64_t i;     /* TJ_INT */
		const char *s; /* TJ_STR */
	} v;
};

struct tj_doc {
	struct tj_node *n; /* n[0] is the top-level object or array */
	uint32_t count, cap;
	char *esc; /* decoded strings */
};

/* Parses text; 0, or -EINVAL with "toc: bad JSON at LINE:COL: why". */
int tj_parse(const char *text, size_t len, struct tj_doc *d,
	     struct lp_err *err);
void tj_free(struct tj_doc *d);
/* Does an object key equal want, ASCII case folded (as Go matches)?
 * Inline: called with literals for every key of a TOC, so the length is
 * folded. */
static inline bool tj_key_is(const struct tj_node *key, const char *want)
{
	size_t n = strlen(want);

	return key->len == n && !strncasecmp(key->v.s, want, n);
}

#endif
