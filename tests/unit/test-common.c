/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of common/crc32c.c and common/endian.h: the standard CRC-32C
 * check value, incremental updates from every alignment, the per-block
 * helper, a bit-at-a-time reference, and the little-endian byte order the
 * on-disk formats rely on.  common/sha256.c: the FIPS 180-4 examples and
 * libcrypto's digest (lp_sha256) of every length around the block edges.
 * common/layout.c: each store's file names, as the README documents them.
 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "common/endian.h"
#include "common/layout.h"

#define CHECK_WITH_MESSAGE
#include "check.h"

/* One bit at a time, straight from the definition. */
static uint32_t crc_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

static void test_crc(void)
{
	static const char v[] = "123456789";
	static uint8_t big[5000];

	CHECK(lp_crc32c(0, v, 9) == 0xe3069283u, "crc32c %08x",
	      lp_crc32c(0, v, 9));
	CHECK(lp_crc32c(0, v, 0) == 0, "empty %08x", lp_crc32c(0, v, 0));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	/* incremental == one go, from every alignment */
	for (size_t k = 0; k < 17; k++)
		CHECK(lp_crc32c(lp_crc32c(0, big, k), big + k,
				sizeof(big) - k) ==
			      lp_crc32c(0, big, sizeof(big)),
		      "split at %zu", k);
	CHECK(lp_crc32c(0, big, sizeof(big)) == crc_ref(big, sizeof(big)),
	      "reference, %zu bytes", sizeof(big));
	for (size_t n = 0; n < 70; n++)
		CHECK(lp_crc32c(0, big + 3, n) == crc_ref(big + 3, n),
		      "reference, %zu bytes", n);
}

static void test_crc_blocks(void)
{
	static uint8_t buf[9 * 512 + 100];
	static const size_t blocks[] = { 512, 100, 7 };

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 11);
	for (size_t b = 0; b < ARRAY_SIZE(blocks); b++) {
		size_t bs = blocks[b], n = (sizeof(buf) + bs - 1) / bs;
		uint32_t *out = lp_xcalloc(n + 1, sizeof(*out));

		out[n] = 0xdeadbeefu;
		lp_crc32c_blocks(buf, sizeof(buf), bs, out);
		for (size_t j = 0; j < n; j++) {
			size_t len = sizeof(buf) - j * bs < bs
					     ? sizeof(buf) - j * bs
					     : bs;

			CHECK(out[j] == crc_ref(buf + j * bs, len),
			      "block %zu of %zu bytes", j, bs);
		}
		CHECK(out[n] == 0xdeadbeefu, "wrote past %zu blocks", n);
		free(out);
	}
}

static void test_endian(void)
{
	uint8_t b[8];

	lp_put_le32(b, 0x04030201u);
	CHECK(!memcmp(b, "\x01\x02\x03\x04", 4), "le32 bytes");
	CHECK(lp_get_le32(b) == 0x04030201u, "le32 %08x", lp_get_le32(b));
	lp_put_le64(b, 0x0807060504030201ull);
	CHECK(!memcmp(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8), "le64 bytes");
	CHECK(lp_get_le64(b) == 0x0807060504030201ull, "le64");
	lp_put_le64(b, UINT64_MAX);
	CHECK(lp_get_le64(b) == UINT64_MAX, "le64 max");
}

static void hex32(const uint8_t *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_plain(void)
{
	static const struct {
		const char *in, *want;
	} vec[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
		      "7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
			 "61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db"
		  "06c1" },
	};
	static uint8_t buf[4200];
	uint8_t a[32], b[32];
	char hex[65];

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		lp_sha256_plain(vec[i].in, strlen(vec[i].in), a);
		hex32(a, hex);
		CHECK(!strcmp(hex, vec[i].want), "sha256(\"%s\") = %s",
		      vec[i].in, hex);
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 5));
	for (size_t n = 0; n <= sizeof(buf); n += n < 200 ? 1 : 97) {
		lp_sha256_plain(buf, n, a);
		lp_sha256(buf, n, b);
		CHECK(!memcmp(a, b, 32), "sha256 of %zu bytes differs from "
		      "libcrypto's", n);
	}
}

/* the layout the stores and the snapshotter's removal share */
static void test_layout(void)
{
	static const struct {
		enum lp_layer_file f;
		const char *want;
	} cases[] = {
		{ LP_FILE_BLOB_DATA, "/c/blobs/sha256/%s.data" },
		{ LP_FILE_BLOB_MAP, "/c/blobs/sha256/%s.map" },
		{ LP_FILE_DECODED_DATA, "/c/decoded/%s.data" },
		{ LP_FILE_DECODED_IDX, "/c/decoded/%s.idx" },
		{ LP_FILE_MODEL, "/c/models/sha256/%s.model" },
		{ LP_FILE_ZRAN, "/c/indexes/sha256/%s.zran" },
	};
	const char *hex = "0123456789abcdef0123456789abcdef"
			  "0123456789abcdef0123456789abcdef";
	char digest[80], want[160];

	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = lp_layout_file("/c", cases[i].f, digest);
		char *q = lp_layout_file("/c", cases[i].f, hex);
		char *d = lp_layout_dir("/c", cases[i].f);

		snprintf(want, sizeof(want), cases[i].want, hex);
		CHECK(!strcmp(p, want), "%s, not %s", p, want);
		/* a bare hex is a sha256 */
		CHECK(!strcmp(q, want), "%s, not %s", q, want);
		CHECK(!strncmp(want, d, strlen(d)) && want[strlen(d)] == '/',
		      "%s is not under %s", want, d);
		free(p);
		free(q);
		free(d);
	}
	/* another algorithm gets its own directory */
	{
		char *p = lp_layout_file("/c", LP_FILE_BLOB_DATA, "sha512:ab");

		CHECK(!strcmp(p, "/c/blobs/sha512/ab.data"), "%s", p);
		free(p);
	}
}

int main(void)
{
	test_layout();
	test_sha256_plain();
	test_crc();
	test_crc_blocks();
	test_endian();
	if (failures)
		fprintf(stderr, "%d of %d checks failed\n", failures, checks);
	return failures ? 1 : 0;
}
