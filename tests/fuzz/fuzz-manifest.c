// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: manifest and index parsing, then platform selection and
 * annotation lookups on whatever parsed.  The first byte picks the
 * Content-Type hint.
 */
#include <string.h>

#include "fetcher/fetcher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = {
		NULL,
		"application/json",
		FETCH_MT_OCI_MANIFEST,
		FETCH_MT_OCI_INDEX,
		FETCH_MT_DOCKER_MANIFEST,
		FETCH_MT_DOCKER_LIST,
	};
	struct fetch_manifest *m = NULL;
	struct fetch_platform p = { 0 };
	const struct fetch_desc *d;
	const char *ct;

	if (!size)
		return 0;
	ct = types[data[0] % (sizeof(types) / sizeof(types[0]))];
	if (fetch_manifest_parse(data + 1, size - 1, ct, &m, NULL) < 0)
		return 0;
	for (size_t i = 0; i < m->n_layers; i++)
		(void)fetch_desc_annotation(&m->layers[i], "a");
	if (m->kind == FETCH_MANIFEST_INDEX) {
		(void)fetch_index_select(m, NULL, &d, NULL);
		if (fetch_platform_parse("linux/arm64", &p, NULL) == 0) {
			(void)fetch_index_select(m, &p, &d, NULL);
			fetch_platform_release(&p);
		}
	}
	fetch_manifest_free(m);
	return 0;
}
