/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/toml: a small TOML 1.0 reader (Debian 12 ships no C TOML library).
 *
 * Parses a whole document into a tree of values: tables (headers, dotted
 * keys, inline tables, arrays of tables), strings (basic, literal, both
 * multi-line forms), integers (decimal, 0x, 0o, 0b), floats, booleans,
 * arrays, and date-times (kept as their text).  Every value remembers the
 * line it was written on, so a caller can report "line N" for a value of
 * the wrong type.  Errors are "line N, column M: what" in the lp_err.
 *
 * Input is untrusted: every size is bounded and nesting is capped, so
 * lp_toml_parse() never crashes on any bytes (tests/fuzz/fuzz-toml.c).
 */
#ifndef LP_TOML_H
#define LP_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

enum lp_toml_type {
	LP_TOML_STRING,
	LP_TOML_INT,
	LP_TOML_FLOAT,
	LP_TOML_BOOL,
	LP_TOML_DATETIME, /* text kept as written, in v.s */
	LP_TOML_ARRAY,
	LP_TOML_TABLE,
};

struct lp_toml_value;

struct lp_toml_kv {
	char *key;
	struct lp_toml_value *val;
};

struct lp_toml_value {
	enum lp_toml_type type;
	unsigned int line;	/* 1-based line where the value starts */
	unsigned int flags;	/* parser bookkeeping (toml.c) */
	union {
		char *s;	/* STRING (NUL-terminated, valid UTF-8) */
		int64_t i;
		double f;
		bool b;
		struct {
			struct lp_toml_value **items;
			size_t n, cap;
		} arr;
		struct {
			struct lp_toml_kv *kv; /* in document order */
			size_t n, cap;
		} tab;
	};
};

/* Largest document accepted (a config file, not a data set). */
#define LP_TOML_MAX_SIZE (16u << 20)

/*
 * Parses data[0..len) into a root table.  Returns 0 and *ret_root, or
 * -EINVAL with "line N, column M: …" in err (-EFBIG above LP_TOML_MAX_SIZE).
 */
int lp_toml_parse(const char *data, size_t len, struct lp_toml_value **ret_root,
		  struct lp_err *err);
/* Reads and parses a file; the message is prefixed with the path. */
int lp_toml_parse_file(const char *path, struct lp_toml_value **ret_root,
		       struct lp_err *err);
void lp_toml_free(struct lp_toml_value *v);
static inline void lp_toml_freep(struct lp_toml_value **v)
{
	lp_toml_free(*v);
}

/* The value stored under the exact key in a table, or NULL. */
const struct lp_toml_value *lp_toml_table_get(const struct lp_toml_value *tab,
					      const char *key);
/*
 * Looks up a dotted path of plain keys ("daemon.fs_driver"), descending
 * through tables.  NULL when any part is absent or not a table.
 */
const struct lp_toml_value *lp_toml_get(const struct lp_toml_value *root,
					const char *path);

/*
 * Typed getters by dotted path.  Return 0 and set *ret when present with the
 * right type; -ENOENT (ret untouched, err untouched) when absent; -EINVAL
 * with "line N: key 'path': expected a string, got an integer" otherwise.
 * lp_toml_get_strings() returns a borrowed array of *ret_n strings, which
 * the caller frees with free() (the strings themselves stay in the tree).
 */
int lp_toml_get_string(const struct lp_toml_value *root, const char *path,
		       const char **ret, struct lp_err *err);
int lp_toml_get_int(const struct lp_toml_value *root, const char *path,
		    int64_t *ret, struct lp_err *err);
int lp_toml_get_bool(const struct lp_toml_value *root, const char *path,
		     bool *ret, struct lp_err *err);
int lp_toml_get_strings(const struct lp_toml_value *root, const char *path,
			const char ***ret, size_t *ret_n, struct lp_err *err);

/* "string", "integer", … for messages. */
const char *lp_toml_type_name(enum lp_toml_type t);

#endif
