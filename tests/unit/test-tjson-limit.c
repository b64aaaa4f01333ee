// SPDX-License-Identifier: Apache-2.0
/*
 * tjson's bound on the values of one document, built here with
 * TJ_MAX_NODES 100: a document of up to 100 values parses, one more is
 * refused with a message, wherever the 101st value starts (a scalar, a
 * string, a container, a key).
 */
#include <stdio.h>
#include <string.h>

#include "formats/estargz/estargz-int.h"
#include "check.h"


/* "[" + n values + "]" (the array is one more value), each made by mk */
static char *doc(unsigned n, const char *val)
{
	size_t cap = 16 + (size_t)n * (strlen(val) + 1);
	char *s = lp_xmalloc(cap), *o = s;

	*o++ = '[';
	for (unsigned i = 0; i < n; i++)
		o += sprintf(o, "%s%s", i ? "," : "", val);
	*o++ = ']';
	*o = 0;
	return s;
}

static void one(int line, const char *text, bool want_ok)
{
	struct tj_doc d;
	struct lp_err err = { 0 };
	int r = tj_parse(text, strlen(text), &d, &err);

	checks++;
	if ((r == 0) != want_ok ||
	    (!want_ok && (r != -EINVAL || !strstr(err.msg, "too many values")))) {
		fprintf(stderr, "line %d: r %d (%s), want %s\n", line, r,
			err.msg, want_ok ? "ok" : "too many values");
		failures++;
	}
	if (r == 0) {
		checks++;
		if (d.count > 100) {
			fprintf(stderr, "line %d: %u nodes\n", line, d.count);
			failures++;
		}
		tj_free(&d);
	}
}

int main(void)
{
	static const char *const vals[] = { "0", "\"s\"", "true", "null",
					    "1.5", "[]", "{}" };

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char *a = doc(99, vals[i]), *b = doc(100, vals[i]);

		one(__LINE__, a, true);
		one(__LINE__, b, false);
		free(a);
		free(b);
	}
	/* the 101st value is a key: {"k":0} is three values */
	{
		char *s = lp_xmalloc(2048), *o = s;

		*o++ = '[';
		for (int i = 0; i < 32; i++)
			o += sprintf(o, "%s{\"k\":0}", i ? "," : "");
		strcpy(o, ",{\"k\":0,\"x\":1}]");
		one(__LINE__, s, false);
		free(s);
	}
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("ok: %d checks\n", checks);
	return 0;
}
