// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the input is an uncompressed tar stream.  It is parsed in
 * one piece and again split at a point taken from the input; both runs
 * must agree.  Every field of every entry is read so bad pointers show up.
 */
#include <string.h>

#include "formats/zran/zran.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
	uint64_t sum;
	uint32_t entries;
};

static int on_entry(void *data, const struct zran_tar_entry *e,
		    struct lp_err *err)
{
	struct acc *a = data;

	(void)err;
	for (size_t i = 0; i < e->path_len; i++)
		a->sum += (uint8_t)e->path[i];
	for (size_t i = 0; i < e->link_len; i++)
		a->sum += (uint8_t)e->link[i];
	if (e->path[e->path_len] || e->link[e->link_len])
		__builtin_trap();
	for (size_t i = 0; i < e->n_xattrs; i++) {
		a->sum += strlen(e->xattrs[i].name);
		for (size_t j = 0; j < e->xattrs[i].value_len; j++)
			a->sum += e->xattrs[i].value[j];
	}
	if (e->type == MODEL_SOCK || e->mode > 07777 ||
	    (e->type != MODEL_REG && e->size) || e->data_off < e->hdr_off)
		__builtin_trap();
	a->sum += e->size + e->uid + e->gid + (uint64_t)e->mtime;
	a->entries++;
	return 0;
}

static int on_data(void *data, const void *buf, size_t len, uint64_t off,
		   struct lp_err *err)
{
	struct acc *a = data;

	(void)err;
	/* split-invariant: every byte, weighted by its tar offset */
	for (size_t i = 0; i < len; i++)
		a->sum += ((const uint8_t *)buf)[i] * (off + i + 1);
	return 0;
}

static const struct zran_tar_ops ops = { on_entry, on_data };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acc a = { 0 }, b = { 0 };
	struct lp_err e1 = { 0 }, e2 = { 0 };
	struct zran_tar *t;
	size_t split = size ? (size_t)data[0] * 37 % (size + 1) : 0;
	int r1, r2;

	r1 = zran_tar_parse(data, size, &ops, &a, &e1);
	t = zran_tar_new(&ops, &b);
	r2 = zran_tar_feed(t, data, split, &e2);
	if (r2 >= 0)
		r2 = zran_tar_feed(t, data + split, size - split, &e2);
	if (r2 >= 0)
		r2 = zran_tar_finish(t, &e2);
	zran_tar_free(t);
	if (r1 != r2 || a.sum != b.sum || a.entries != b.entries ||
	    (r1 < 0 && (!e1.msg[0] || strcmp(e1.msg, e2.msg))))
		__builtin_trap();
	return 0;
}
