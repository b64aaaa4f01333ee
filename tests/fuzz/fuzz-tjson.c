// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target, differential: the TOC's JSON reader (formats/estargz/
 * tjson.c) against jansson, which read TOCs before it.  Both must accept
 * or both refuse the input, and an accepted one must give the same values:
 * types, integers, string bytes, array elements in order, and for each
 * object the same keys, each with the value of its last occurrence.
 *
 * Known, wanted differences are not failures: a real number too large for
 * a double (jansson refuses it; a TOC reader never needs its value),
 * nesting deeper than tjson's 512 levels (jansson allows 2048), and a NUL
 * byte between tokens, which jansson skips in places and tjson (like Go)
 * refuses.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/estargz/estargz-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void differ(const char *what)
{
	fprintf(stderr, "tjson and jansson differ: %s\n", what);
	abort();
}

static void same(const struct tj_doc *d, uint32_t i, json_t *j)
{
	const struct tj_node *n = &d->n[i];

	switch (n->type) {
	case TJ_NULL:
		if (!json_is_null(j))
			differ("null");
		break;
	case TJ_TRUE:
		if (!json_is_true(j))
			differ("true");
		break;
	case TJ_FALSE:
		if (!json_is_false(j))
			differ("false");
		break;
	case TJ_INT:
		if (!json_is_integer(j) || json_integer_value(j) != n->v.i)
			differ("integer");
		break;
	case TJ_REAL:
		if (!json_is_real(j))
			differ("real");
		break;
	case TJ_STR:
		if (!json_is_string(j) || json_string_length(j) != n->len ||
		    memcmp(json_string_value(j), n->v.s, n->len))
			differ("string");
		break;
	case TJ_ARR: {
		uint32_t c = i + 1;

		if (!json_is_array(j) || json_array_size(j) != n->len)
			differ("array");
		for (size_t k = 0; k < n->len; k++, c = d->n[c].next)
			same(d, c, json_array_get(j, k));
		if (c != n->next)
			differ("array end");
		break;
	}
	case TJ_OBJ: {
		size_t distinct = 0;

		if (!json_is_object(j))
			differ("object");
		for (uint32_t k = i + 1; k < n->next; k = d->n[k + 1].next) {
			const struct tj_node *key = &d->n[k];
			char *name = strndup(key->v.s, key->len);
			uint32_t last = k;
			json_t *v;

			if (!name || memchr(key->v.s, 0, key->len))
				differ("key");
			for (uint32_t m = k; m < n->next; m = d->n[m + 1].next)
				if (d->n[m].len == key->len &&
				    !memcmp(d->n[m].v.s, key->v.s, key->len))
					last = m;
			if (last == k) {
				/* its last occurrence: compare the value */
				distinct++;
				v = json_object_get(j, name);
				if (!v)
					differ("missing key");
				same(d, k + 1, v);
			}
			free(name);
		}
		if (json_object_size(j) != distinct)
			differ("object size");
		break;
	}
	default:
		differ("node type");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tj_doc d;
	struct lp_err err = { 0 };
	json_error_t jerr;
	json_t *j = json_loadb((const char *)data, size, 0, &jerr);
	int r = tj_parse((const char *)data, size, &d, &err);

	if (r == 0 && j)
		same(&d, 0, j);
	else if (r == 0 && !strstr(jerr.text, "real number overflow"))
		differ(jerr.text);
	else if (r < 0 && j && !strstr(err.msg, "too deeply nested") &&
		 !memchr(data, 0, size))
		differ(err.msg);
	if (r == 0)
		tj_free(&d);
	json_decref(j);
	return 0;
}
