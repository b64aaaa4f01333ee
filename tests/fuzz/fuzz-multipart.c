// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the answer to a multi-range request.  The input is a
 * Content-Type value, a newline, then the body; the first byte says how
 * the body is cut into pieces (as curl hands it over).  The parts' data
 * must stay within their Content-Range and arrive in order.
 */
#include <stdlib.h>
#include <string.h>

#include "fetcher/fetcher-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	uint64_t a, b, pos;
	bool in;
};

static int part(void *arg, uint64_t a, uint64_t b, int64_t total)
{
	struct seen *s = arg;

	if (b < a || (total >= 0 && (uint64_t)total <= b))
		abort();
	s->a = a;
	s->b = b;
	s->pos = a;
	s->in = true;
	return 0;
}

static int got(void *arg, uint64_t pos, const void *p, size_t n)
{
	struct seen *s = arg;

	(void)p;
	if (!s->in || pos != s->pos || !n || n - 1 > s->b - pos)
		abort();
	s->pos += n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct fetch_mp_ops ops = { .part = part, .data = got };
	struct seen s = { 0 };
	struct fetch_mp m;
	const uint8_t *nl;
	char ct[256];
	size_t step, ctlen;

	if (size < 2)
		return 0;
	step = (size_t)data[0] + 1;
	data++;
	size--;
	nl = memchr(data, '\n', size < sizeof(ct) ? size : sizeof(ct));
	if (!nl)
		return 0;
	ctlen = (size_t)(nl - data);
	memcpy(ct, data, ctlen);
	ct[ctlen] = '\0';
	data = nl + 1;
	size -= ctlen + 1;
	if (fetch_mp_init(&m, ct) < 0)
		return 0;
	for (size_t i = 0; i < size; i += step)
		if (fetch_mp_feed(&m, data + i, size - i < step ? size - i : step,
				  &ops, &s) < 0)
			break;
	(void)fetch_mp_done(&m);
	return 0;
}
