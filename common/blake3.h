/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/blake3: BLAKE3 hashing (unkeyed mode, 32-byte output), portable C.
 *
 * Written from the BLAKE3 specification; no SIMD.  Used to verify RAFS
 * chunks built with the blake3 digester.
 *
 *	struct lp_blake3 h;
 *	lp_blake3_init(&h);
 *	lp_blake3_update(&h, buf, len);	// any number of times
 *	lp_blake3_final(&h, out);	// out: 32 bytes
 *
 * The state lives on the caller's stack (no allocation); final does not
 * modify it, so more input may follow and final be called again.
 */
#ifndef LP_BLAKE3_H
#define LP_BLAKE3_H

#include <stddef.h>
#include <stdint.h>

#define LP_BLAKE3_OUT_LEN 32
#define LP_BLAKE3_BLOCK_LEN 64
#define LP_BLAKE3_CHUNK_LEN 1024
/* 2^54 chunks = 2^64 bytes: the stack never needs more than 54 entries. */
#define LP_BLAKE3_MAX_DEPTH 54

struct lp_blake3 {
	uint32_t cv[8];		/* chaining value of the current chunk */
	uint64_t chunk_counter; /* index of the current chunk */
	uint8_t block[LP_BLAKE3_BLOCK_LEN]; /* pending (not yet compressed) */
	uint8_t block_len;		    /* bytes in block */
	uint8_t blocks_compressed; /* full blocks of this chunk already done */
	uint8_t stack_len;	   /* subtree chaining values on the stack */
	uint32_t stack[LP_BLAKE3_MAX_DEPTH][8];
};

void lp_blake3_init(struct lp_blake3 *h);
void lp_blake3_update(struct lp_blake3 *h, const void *data, size_t len);
void lp_blake3_final(const struct lp_blake3 *h, uint8_t out[LP_BLAKE3_OUT_LEN]);
/* One-shot: out = BLAKE3(data). */
void lp_blake3(const void *data, size_t len, uint8_t out[LP_BLAKE3_OUT_LEN]);

#endif
