/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bump allocator for jansson while a TOC is parsed.
 *
 * A TOC of 10,000 entries is some 150,000 small JSON values, allocated one
 * by one and all freed together when the model is built.  With glibc's
 * malloc that was a third of the parse time (and, with several layers
 * parsed at once in the two arenas the daemon allows, lock waits).  Here a
 * parse takes its values from large blocks of its own thread and frees
 * the blocks at the end; a free of one value is a no-op.
 *
 * jansson has one set of allocation functions per process, so they are
 * set before main() runs (nothing is allocated with the old ones and freed
 * with ours): every allocation carries a header that says whether it came
 * from an arena or from malloc.
 */
#include <jansson.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "formats/estargz/estargz-int.h"

#define HDR 16 /* keeps max_align_t alignment */
#define FROM_HEAP 0x68656170u
#define FROM_ARENA 0x6172656eu
#define BLOCK_SIZE (4u << 20)

struct jblock {
	struct jblock *next;
	size_t used, cap;
	alignas(16) unsigned char data[];
};

static __thread struct jarena *cur;

static void *ja_malloc(size_t n)
{
	struct jarena *a = cur;
	unsigned char *p;
	size_t need;

	if (n > SIZE_MAX - 2 * HDR)
		return NULL;
	need = (n + HDR + 15) & ~(size_t)15;
	if (!a) {
		p = malloc(n + HDR);
		if (!p)
			return NULL;
		*(uint32_t *)p = FROM_HEAP;
		return p + HDR;
	}
	if (!a->head || a->head->cap - a->head->used < need) {
		size_t cap = need > BLOCK_SIZE ? need : BLOCK_SIZE;
		/* populated at once: one fault per page costs more */
		struct jblock *b = mmap(NULL, sizeof(*b) + cap,
					PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS |
						MAP_POPULATE,
					-1, 0);

		if (b == MAP_FAILED)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	p = a->head->data + a->head->used;
	a->head->used += need;
	*(uint32_t *)p = FROM_ARENA;
	return p + HDR;
}

static void ja_free(void *ptr)
{
	unsigned char *p = ptr;

	if (p && *(uint32_t *)(p - HDR) == FROM_HEAP)
		free(p - HDR);
	/* FROM_ARENA: freed with its block */
}

__attribute__((constructor)) static void ja_install(void)
{
	json_set_alloc_funcs(ja_malloc, ja_free);
}

/* Under AddressSanitizer every value stays a malloc of its own, so an
 * overrun of one is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define JARENA_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JARENA_OFF 1
#endif
#endif

void estargz_jarena_begin(struct jarena *a)
{
	a->head = NULL;
	a->prev = cur;
#ifndef JARENA_OFF
	cur = a;
#endif
}

void estargz_jarena_end(struct jarena *a)
{
	struct jblock *b = a->head;

	while (b) {
		struct jblock *next = b->next;

		munmap(b, sizeof(*b) + b->cap);
		b = next;
	}
	a->head = NULL;
	cur = a->prev;
}
