/* SPDX-License-Identifier: Apache-2.0 */
/* Range planning: many wanted ranges -> few HTTP range requests. */
#include <stdlib.h>

#include "fetcher/fetcher-int.h"

static int range_cmp(const void *a, const void *b)
{
	const struct fetch_range *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return 0;
}

static uint64_t range_end(const struct fetch_range *r)
{
	return r->off + r->len;
}

/* Merges sorted ranges in place; returns the count. */
static size_t merge(struct fetch_range *r, size_t n, uint64_t max_gap,
		    uint64_t max_size)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		if (out) {
			struct fetch_range *last = &r[out - 1];
			uint64_t lend = range_end(last), end = range_end(&r[i]);
			uint64_t nend = end > lend ? end : lend;
			bool overlap = r[i].off <= lend;
			bool near = !overlap && r[i].off - lend <= max_gap;
			bool fits = !max_size || nend - last->off <= max_size;

			/* overlapping ranges always merge: fetching the same
			 * bytes twice is never cheaper */
			if (overlap || (near && fits)) {
				last->len = nend - last->off;
				continue;
			}
		}
		r[out++] = r[i];
	}
	return out;
}

size_t fetch_plan(struct fetch_range *r, size_t n,
		  const struct fetch_plan_opts *o, uint64_t limit)
{
	struct fetch_plan_opts def = { 0 };
	size_t k = 0;

	if (!o)
		o = &def;
	/* clamp, drop empties, guard against off+len overflow */
	for (size_t i = 0; i < n; i++) {
		struct fetch_range x = r[i];

		if (x.len > UINT64_MAX - x.off)
			x.len = UINT64_MAX - x.off;
		if (limit) {
			if (x.off >= limit)
				continue;
			if (x.len > limit - x.off)
				x.len = limit - x.off;
		}
		if (!x.len)
			continue;
		r[k++] = x;
	}
	n = k;
	if (!n)
		return 0;
	qsort(r, n, sizeof(*r), range_cmp);
	n = merge(r, n, o->max_gap, o->max_size);
	if (!o->min_size)
		return n;
	for (size_t i = 0; i < n; i++) {
		uint64_t want = o->min_size;

		if (r[i].len >= want)
			continue;
		if (limit && want > limit)
			want = limit;
		if (limit && r[i].off + want > limit)
			r[i].off = limit - want;
		else if (!limit && r[i].off > UINT64_MAX - want)
			r[i].off = UINT64_MAX - want;
		r[i].len = want;
	}
	/* growing may have created overlaps (and backward growth at the
	 * limit may have broken the order) */
	qsort(r, n, sizeof(*r), range_cmp);
	return merge(r, n, o->max_gap, o->max_size);
}
