// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: an image config (fetch_config_parse): the argv, env and
 * working directory of what parsed are walked and freed.
 */
#include <string.h>

#include "fetcher/fetcher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink; /* the strings are read, not optimised out */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_image_config *c = NULL;
	struct lp_err err = { 0 };
	size_t sum = 0;

	if (fetch_config_parse(data, size, &c, &err) < 0) {
		if (!err.msg[0])
			__builtin_trap();
		return 0;
	}
	for (uint32_t i = 0; i < c->argc; i++)
		sum += strlen(c->argv[i]);
	if (c->argv && c->argv[c->argc])
		__builtin_trap(); /* NULL-terminated */
	for (uint32_t i = 0; i < c->n_env; i++)
		sum += strlen(c->env[i]);
	if (c->env && c->env[c->n_env])
		__builtin_trap();
	if (c->workdir)
		sum += strlen(c->workdir);
	fetch_image_config_free(c);
	sink = sum;
	return 0;
}
