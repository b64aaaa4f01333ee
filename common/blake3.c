// SPDX-License-Identifier: Apache-2.0
/*
 * BLAKE3, unkeyed hash mode, 32-byte output.  Written from the BLAKE3
 * paper (sections 2.1-2.6): a 7-round ChaCha-like compression function,
 * 1 KiB chunks of 64-byte blocks, and a binary tree of parent nodes whose
 * left subtree is always the largest power-of-two number of chunks.
 *
 * The incremental tree keeps one chaining value per complete subtree on a
 * stack.  A chunk (and a block inside a chunk) is only compressed once we
 * know more input follows, because the very last block of the message is
 * compressed differently (CHUNK_END, and ROOT when it is the root node).
 */
#include <string.h>

#include "common/blake3.h"

enum {
	B3_CHUNK_START = 1 << 0,
	B3_CHUNK_END = 1 << 1,
	B3_PARENT = 1 << 2,
	B3_ROOT = 1 << 3,
};

static const uint32_t b3_iv[8] = {
	0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
	0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};

/* Message word order for each of the 7 rounds (the permutation applied
 * round after round, precomputed). */
static const uint8_t b3_sched[7][16] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8 },
	{ 3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1 },
	{ 10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6 },
	{ 12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4 },
	{ 9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7 },
	{ 11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13 },
};

static inline uint32_t rotr32(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static inline uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void store32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

#define G(a, b, c, d, x, y)                                                    \
	do {                                                                   \
		v[a] = v[a] + v[b] + (x);                                      \
		v[d] = rotr32(v[d] ^ v[a], 16);                                \
		v[c] = v[c] + v[d];                                            \
		v[b] = rotr32(v[b] ^ v[c], 12);                                \
		v[a] = v[a] + v[b] + (y);                                      \
		v[d] = rotr32(v[d] ^ v[a], 8);                                 \
		v[c] = v[c] + v[d];                                            \
		v[b] = rotr32(v[b] ^ v[c], 7);                                 \
	} while (0)

/* The compression function; writes the first 8 output words (all a 32-byte
 * hash or a chaining value ever needs). */
static void b3_compress(const uint32_t cv[8], const uint8_t block[64],
			uint8_t block_len, uint64_t counter, uint8_t flags,
			uint32_t out[8])
{
	uint32_t m[16], v[16];

	for (int i = 0; i < 16; i++)
		m[i] = load32(block + 4 * i);
	for (int i = 0; i < 8; i++)
		v[i] = cv[i];
	v[8] = b3_iv[0];
	v[9] = b3_iv[1];
	v[10] = b3_iv[2];
	v[11] = b3_iv[3];
	v[12] = (uint32_t)counter;
	v[13] = (uint32_t)(counter >> 32);
	v[14] = block_len;
	v[15] = flags;

	for (int r = 0; r < 7; r++) {
		const uint8_t *s = b3_sched[r];

		G(0, 4, 8, 12, m[s[0]], m[s[1]]);
		G(1, 5, 9, 13, m[s[2]], m[s[3]]);
		G(2, 6, 10, 14, m[s[4]], m[s[5]]);
		G(3, 7, 11, 15, m[s[6]], m[s[7]]);
		G(0, 5, 10, 15, m[s[8]], m[s[9]]);
		G(1, 6, 11, 12, m[s[10]], m[s[11]]);
		G(2, 7, 8, 13, m[s[12]], m[s[13]]);
		G(3, 4, 9, 14, m[s[14]], m[s[15]]);
	}
	for (int i = 0; i < 8; i++)
		out[i] = v[i] ^ v[i + 8];
}

static void b3_parent_cv(const uint32_t left[8], const uint32_t right[8],
			 uint8_t flags, uint32_t out[8])
{
	uint8_t block[64];

	for (int i = 0; i < 8; i++) {
		store32(block + 4 * i, left[i]);
		store32(block + 32 + 4 * i, right[i]);
	}
	b3_compress(b3_iv, block, 64, 0, B3_PARENT | flags, out);
}

static uint8_t b3_chunk_start_flag(const struct lp_blake3 *h)
{
	return h->blocks_compressed == 0 ? B3_CHUNK_START : 0;
}

/*
 * Pushes the chaining value of a finished (non-final) chunk; total is the
 * number of chunks hashed so far.  Each trailing zero bit of total means a
 * left sibling on the stack is now complete: merge them into a parent.
 */
static void b3_push_chunk_cv(struct lp_blake3 *h, uint32_t cv[8],
			     uint64_t total)
{
	while ((total & 1) == 0) {
		h->stack_len--;
		b3_parent_cv(h->stack[h->stack_len], cv, 0, cv);
		total >>= 1;
	}
	memcpy(h->stack[h->stack_len], cv, 32);
	h->stack_len++;
}

void lp_blake3_init(struct lp_blake3 *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->cv, b3_iv, sizeof(h->cv));
}

void lp_blake3_update(struct lp_blake3 *h, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		size_t take;

		/* The chunk is full and input continues: it is not the last
		 * chunk, so close it and start the next one. */
		if (h->blocks_compressed ==
			    LP_BLAKE3_CHUNK_LEN / LP_BLAKE3_BLOCK_LEN - 1 &&
		    h->block_len == LP_BLAKE3_BLOCK_LEN) {
			uint32_t cv[8];

			b3_compress(h->cv, h->block, LP_BLAKE3_BLOCK_LEN,
				    h->chunk_counter, B3_CHUNK_END, cv);
			b3_push_chunk_cv(h, cv, h->chunk_counter + 1);
			h->chunk_counter++;
			memcpy(h->cv, b3_iv, sizeof(h->cv));
			h->blocks_compressed = 0;
			h->block_len = 0;
		}
		/* A full pending block with more input behind it. */
		if (h->block_len == LP_BLAKE3_BLOCK_LEN) {
			b3_compress(h->cv, h->block, LP_BLAKE3_BLOCK_LEN,
				    h->chunk_counter, b3_chunk_start_flag(h),
				    h->cv);
			h->blocks_compressed++;
			h->block_len = 0;
		}
		take = LP_BLAKE3_BLOCK_LEN - h->block_len;
		if (take > len)
			take = len;
		memcpy(h->block + h->block_len, p, take);
		h->block_len += take;
		p += take;
		len -= take;
	}
}

void lp_blake3_final(const struct lp_blake3 *h, uint8_t out[LP_BLAKE3_OUT_LEN])
{
	uint8_t block[64] = { 0 };
	uint32_t cv[8], res[8];
	int i = h->stack_len;

	memcpy(block, h->block, h->block_len);
	if (i == 0) {
		/* The only chunk is the root. */
		b3_compress(h->cv, block, h->block_len, h->chunk_counter,
			    b3_chunk_start_flag(h) | B3_CHUNK_END | B3_ROOT,
			    res);
	} else {
		b3_compress(h->cv, block, h->block_len, h->chunk_counter,
			    b3_chunk_start_flag(h) | B3_CHUNK_END, cv);
		/* Fold the stack right to left; the last parent is the root. */
		while (--i > 0)
			b3_parent_cv(h->stack[i], cv, 0, cv);
		b3_parent_cv(h->stack[0], cv, B3_ROOT, res);
	}
	for (int k = 0; k < 8; k++)
		store32(out + 4 * k, res[k]);
}

void lp_blake3(const void *data, size_t len, uint8_t out[LP_BLAKE3_OUT_LEN])
{
	struct lp_blake3 h;

	lp_blake3_init(&h);
	lp_blake3_update(&h, data, len);
	lp_blake3_final(&h, out);
}
