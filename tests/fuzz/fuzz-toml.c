// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the TOML reader (common/toml.c).  Any input either parses
 * into a well-formed tree or fails with a "line N, column M: …" message.
 */
#include <stdio.h>
#include <string.h>

#include "common/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct lp_toml_value *v, int depth)
{
	if (depth > 200)
		abort();
	switch (v->type) {
	case LP_TOML_STRING:
	case LP_TOML_DATETIME:
		if (!v->s)
			abort();
		(void)strlen(v->s);
		break;
	case LP_TOML_ARRAY:
		for (size_t i = 0; i < v->arr.n; i++)
			walk(v->arr.items[i], depth + 1);
		break;
	case LP_TOML_TABLE:
		for (size_t i = 0; i < v->tab.n; i++) {
			if (!v->tab.kv[i].key)
				abort();
			/* keys are unique within a table */
			if (lp_toml_table_get(v, v->tab.kv[i].key) !=
			    v->tab.kv[i].val)
				abort();
			walk(v->tab.kv[i].val, depth + 1);
		}
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lp_toml_value *root = NULL;
	struct lp_err err = { 0 };
	const char *s;
	int64_t i;

	if (lp_toml_parse((const char *)data, size, &root, &err) < 0) {
		if (strncmp(err.msg, "line ", 5) && err.code != -EFBIG)
			abort();
		return 0;
	}
	if (!root || root->type != LP_TOML_TABLE)
		abort();
	walk(root, 0);
	/* the typed getters on whatever is there */
	lp_err_clear(&err);
	lp_toml_get_string(root, "daemon.fs_driver", &s, &err);
	lp_toml_get_int(root, "version", &i, &err);
	lp_toml_free(root);
	return 0;
}
