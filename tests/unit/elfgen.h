/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal ELF writer for the tests of fs/elf and fs/startset: an ELF
 * header, three program headers (PT_INTERP when there is an interpreter,
 * one PT_LOAD covering the whole file, PT_DYNAMIC), the interpreter path,
 * a string table and a dynamic section with DT_NEEDED, DT_STRTAB,
 * DT_STRSZ, DT_RUNPATH (or DT_RPATH) and DT_NULL.  32- or 64-bit, either
 * byte order.  The offsets of each part are returned, so a test can
 * corrupt one field at a time.
 */
#ifndef LP_TEST_ELFGEN_H
#define LP_TEST_ELFGEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ELFGEN_VBASE 0x400000u
#define ELFGEN_DT_NULL 0
#define ELFGEN_DT_NEEDED 1
#define ELFGEN_DT_STRTAB 5
#define ELFGEN_DT_STRSZ 10
#define ELFGEN_DT_RPATH 15
#define ELFGEN_DT_RUNPATH 29

struct elfgen {
	bool elf64, be;
	uint16_t machine; /* 62 = x86_64 */
	const char *interp; /* NULL: no PT_INTERP */
	const char *const *needed;
	uint32_t n_needed;
	const char *runpath; /* NULL: none */
	bool rpath;	     /* tag the run path DT_RPATH, not DT_RUNPATH */
	size_t min_size;     /* zero padding up to this size */
	unsigned trailing;   /* DT_NEEDED entries after DT_NULL (ignored) */
	bool at_zero;	     /* loaded at address 0 (a shared library) */
};

static inline uint64_t elfgen_vbase(const struct elfgen *g)
{
	return g->at_zero ? 0 : ELFGEN_VBASE;
}

struct elfgen_out {
	uint8_t *data; /* malloc'd */
	size_t len;
	size_t phoff, phentsize, phnum;
	size_t interp_off, interp_len; /* with its NUL */
	size_t str_off, str_len;
	size_t dyn_off, dyn_len, dyn_esz;
};

static inline void elfgen_put(uint8_t *p, uint64_t v, unsigned n, bool be)
{
	for (unsigned i = 0; i < n; i++)
		p[be ? n - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t elfgen_get(const uint8_t *p, unsigned n, bool be)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[be ? n - 1 - i : i] << (8 * i);
	return v;
}

static inline size_t elfgen_align(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

static inline void elfgen_phdr(const struct elfgen *g, uint8_t *p,
			       uint32_t type, uint64_t off, uint64_t filesz)
{
	bool be = g->be;

	elfgen_put(p, type, 4, be);
	if (g->elf64) {
		elfgen_put(p + 4, 4, 4, be); /* p_flags: R */
		elfgen_put(p + 8, off, 8, be);
		elfgen_put(p + 16, elfgen_vbase(g) + off, 8, be);
		elfgen_put(p + 24, elfgen_vbase(g) + off, 8, be);
		elfgen_put(p + 32, filesz, 8, be);
		elfgen_put(p + 40, filesz, 8, be);
		elfgen_put(p + 48, type == 1 ? 0x1000 : 8, 8, be);
	} else {
		elfgen_put(p + 4, off, 4, be);
		elfgen_put(p + 8, elfgen_vbase(g) + off, 4, be);
		elfgen_put(p + 12, elfgen_vbase(g) + off, 4, be);
		elfgen_put(p + 16, filesz, 4, be);
		elfgen_put(p + 20, filesz, 4, be);
		elfgen_put(p + 24, 4, 4, be);
		elfgen_put(p + 28, type == 1 ? 0x1000 : 4, 4, be);
	}
}

static inline void elfgen_build(const struct elfgen *g, struct elfgen_out *o)
{
	size_t ehsize = g->elf64 ? 64 : 52, esz = g->elf64 ? 16 : 8, off,
	       n_dyn, k = 0, sp;
	unsigned w = g->elf64 ? 8 : 4;
	uint32_t *name_off = calloc(g->n_needed + 1, sizeof(*name_off));
	uint32_t run_off = 0;
	uint8_t *p;
	bool be = g->be;

	memset(o, 0, sizeof(*o));
	o->phoff = ehsize;
	o->phentsize = g->elf64 ? 56 : 32;
	o->phnum = g->interp ? 3 : 2;
	off = o->phoff + o->phnum * o->phentsize;
	if (g->interp) {
		o->interp_off = off;
		o->interp_len = strlen(g->interp) + 1;
		off += o->interp_len;
	}
	o->str_off = off;
	o->str_len = 1;
	for (uint32_t i = 0; i < g->n_needed; i++) {
		name_off[i] = (uint32_t)o->str_len;
		o->str_len += strlen(g->needed[i]) + 1;
	}
	if (g->runpath) {
		run_off = (uint32_t)o->str_len;
		o->str_len += strlen(g->runpath) + 1;
	}
	off = elfgen_align(o->str_off + o->str_len, 8);
	o->dyn_off = off;
	o->dyn_esz = esz;
	n_dyn = g->n_needed + 2 + (g->runpath ? 1 : 0) + 1 + g->trailing;
	o->dyn_len = n_dyn * esz;
	o->len = o->dyn_off + o->dyn_len;
	if (o->len < g->min_size)
		o->len = g->min_size;
	p = o->data = calloc(1, o->len);

	memcpy(p, "\177ELF", 4);
	p[4] = g->elf64 ? 2 : 1;
	p[5] = be ? 2 : 1;
	p[6] = 1; /* EV_CURRENT */
	elfgen_put(p + 16, g->interp ? 2 : 3, 2, be); /* ET_EXEC / ET_DYN */
	elfgen_put(p + 18, g->machine, 2, be);
	elfgen_put(p + 20, 1, 4, be);
	if (g->elf64) {
		elfgen_put(p + 32, o->phoff, 8, be);
		elfgen_put(p + 52, ehsize, 2, be);
		elfgen_put(p + 54, o->phentsize, 2, be);
		elfgen_put(p + 56, o->phnum, 2, be);
		elfgen_put(p + 58, 64, 2, be); /* e_shentsize, no sections */
	} else {
		elfgen_put(p + 28, o->phoff, 4, be);
		elfgen_put(p + 40, ehsize, 2, be);
		elfgen_put(p + 42, o->phentsize, 2, be);
		elfgen_put(p + 44, o->phnum, 2, be);
		elfgen_put(p + 46, 40, 2, be);
	}
	sp = o->phoff;
	if (g->interp) {
		elfgen_phdr(g, p + sp, 3, o->interp_off, o->interp_len);
		sp += o->phentsize;
		memcpy(p + o->interp_off, g->interp, o->interp_len);
	}
	elfgen_phdr(g, p + sp, 1, 0, o->len); /* PT_LOAD */
	sp += o->phentsize;
	elfgen_phdr(g, p + sp, 2, o->dyn_off, o->dyn_len); /* PT_DYNAMIC */

	for (uint32_t i = 0; i < g->n_needed; i++)
		memcpy(p + o->str_off + name_off[i], g->needed[i],
		       strlen(g->needed[i]) + 1);
	if (g->runpath)
		memcpy(p + o->str_off + run_off, g->runpath,
		       strlen(g->runpath) + 1);

#define DYN(tag, val)                                                          \
	do {                                                                   \
		elfgen_put(p + o->dyn_off + k * esz, (tag), w, be);            \
		elfgen_put(p + o->dyn_off + k * esz + w, (val), w, be);        \
		k++;                                                           \
	} while (0)
	for (uint32_t i = 0; i < g->n_needed; i++)
		DYN(ELFGEN_DT_NEEDED, name_off[i]);
	DYN(ELFGEN_DT_STRTAB, elfgen_vbase(g) + o->str_off);
	DYN(ELFGEN_DT_STRSZ, o->str_len);
	if (g->runpath)
		DYN(g->rpath ? ELFGEN_DT_RPATH : ELFGEN_DT_RUNPATH, run_off);
	DYN(ELFGEN_DT_NULL, 0);
	for (unsigned i = 0; i < g->trailing; i++)
		DYN(ELFGEN_DT_NEEDED, 1);
#undef DYN
	free(name_off);
}

/* The offset of the value of the nth (from 0) dynamic entry tagged tag,
 * or 0. */
static inline size_t elfgen_dyn_val(const struct elfgen *g,
				    const struct elfgen_out *o, uint64_t tag,
				    unsigned nth)
{
	unsigned w = g->elf64 ? 8 : 4;

	for (size_t k = 0; k < o->dyn_len; k += o->dyn_esz)
		if (elfgen_get(o->data + o->dyn_off + k, w, g->be) == tag &&
		    !nth--)
			return o->dyn_off + k + w;
	return 0;
}

/* Sets the value of that entry. */
static inline void elfgen_dyn_set(const struct elfgen *g,
				  struct elfgen_out *o, uint64_t tag,
				  unsigned nth, uint64_t v)
{
	size_t at = elfgen_dyn_val(g, o, tag, nth);

	if (at)
		elfgen_put(o->data + at, v, g->elf64 ? 8 : 4, g->be);
}

#endif
