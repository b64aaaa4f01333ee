/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82f63b78): the SSE4.2 crc32
 * instruction where the CPU has it, slicing-by-8 tables elsewhere.  Both
 * give the same values; on-disk checksums depend on that.
 */
#include <pthread.h>
#include <string.h>

#include "common/common.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC_HAVE_X86 1
#endif

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_have_hw;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (uint32_t i = 0; i < 256; i++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^
					crc_tab[0][crc_tab[t - 1][i] & 0xff];
#ifdef CRC_HAVE_X86
	__builtin_cpu_init();
	crc_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				   (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
			      (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;

		c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		    crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
		    crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
		    crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#ifdef CRC_HAVE_X86
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c,
							 const uint8_t *p,
							 size_t n)
{
	uint64_t c64;

	while (n && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi(c, *p++);
		n--;
	}
	c64 = c;
	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

/* Four whole blocks at once (block a multiple of 8): the crc32
 * instruction's latency is hidden by the independent streams. */
__attribute__((target("sse4.2"))) static void crc4_hw(const uint8_t *p,
						      size_t block,
						      uint32_t out[4])
{
	uint64_t c0 = 0xffffffffu, c1 = c0, c2 = c0, c3 = c0;

	for (size_t i = 0; i < block; i += 8) {
		uint64_t v0, v1, v2, v3;

		memcpy(&v0, p + i, 8);
		memcpy(&v1, p + block + i, 8);
		memcpy(&v2, p + 2 * block + i, 8);
		memcpy(&v3, p + 3 * block + i, 8);
		c0 = __builtin_ia32_crc32di(c0, v0);
		c1 = __builtin_ia32_crc32di(c1, v1);
		c2 = __builtin_ia32_crc32di(c2, v2);
		c3 = __builtin_ia32_crc32di(c3, v3);
	}
	out[0] = ~(uint32_t)c0;
	out[1] = ~(uint32_t)c1;
	out[2] = ~(uint32_t)c2;
	out[3] = ~(uint32_t)c3;
}
#endif

uint32_t lp_crc32c(uint32_t crc, const void *data, size_t len)
{
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_init);
#ifdef CRC_HAVE_X86
	if (crc_have_hw)
		return ~crc_hw(c, data, len);
#endif
	return ~crc_sw(c, data, len);
}

void lp_crc32c_blocks(const void *data, uint64_t len, size_t block,
		      uint32_t *out)
{
	const uint8_t *p = data;
	uint64_t done = 0;

	pthread_once(&crc_once, crc_init);
#ifdef CRC_HAVE_X86
	if (crc_have_hw && block % 8 == 0)
		for (; len - done >= 4ull * block;
		     done += 4ull * block, out += 4)
			crc4_hw(p + done, block, out);
#endif
	for (; done < len; done += block, out++)
		*out = lp_crc32c(0, p + done,
				 (size_t)(len - done < block ? len - done
							     : block));
}
