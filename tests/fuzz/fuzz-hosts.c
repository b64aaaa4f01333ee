// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: registry hosts configs.  The first byte picks the parser:
 * even a containerd hosts.toml, odd a nydusd JSON config; whatever parsed
 * is copied and freed.
 */
#include <string.h>

#include "fetcher/fetcher-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_hosts *h = NULL, *d;
	int r;

	if (!size)
		return 0;
	if (data[0] % 2)
		r = fetch_hosts_parse_nydusd((const char *)data + 1, size - 1,
					     "fuzz.json", &h, NULL);
	else
		r = fetch_hosts_parse_toml((const char *)data + 1, size - 1,
					   "/x/hosts.toml", "docker.io", &h,
					   NULL);
	if (r < 0)
		return 0;
	d = fetch_hosts_dup(h);
	for (size_t i = 0; i < d->n_mirrors; i++)
		(void)fetch_hosts_match(d->registry, "docker.io",
					d->mirrors[i].host);
	fetch_hosts_free(d);
	fetch_hosts_free(h);
	return 0;
}
