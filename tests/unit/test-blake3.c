/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of common/blake3: known vectors (the official test-vector input
 * pattern, hashes computed with b3sum 1.2.0), incremental updates split at
 * every awkward boundary, and — when b3sum is installed — random inputs of
 * many sizes compared with `b3sum` itself.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/blake3.h"
#include "common/common.h"

#include "check.h"

/* Input byte i is i % 251 (the official BLAKE3 test-vector pattern). */
static const struct {
	size_t len;
	const char *hex;
} vectors[] = {
	{ 0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" },
	{ 1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213" },
	{ 63, "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b" },
	{ 64, "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98" },
	{ 65, "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee" },
	{ 127, "d81293fda863f008c09e92fc382a81f5a0b4a1251cba1634016a0f86a6bd640d" },
	{ 128, "f17e570564b26578c33bb7f44643f539624b05df1a76c81f30acd548c44b45ef" },
	{ 129, "683aaae9f3c5ba37eaaf072aed0f9e30bac0865137bae68b1fde4ca2aebdcb12" },
	{ 1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11" },
	{ 1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7" },
	{ 1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444" },
	{ 2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a" },
	{ 2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030" },
	{ 3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2" },
	{ 3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3" },
	{ 4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969" },
	{ 4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995" },
	{ 5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833" },
	{ 5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff" },
	{ 6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205" },
	{ 6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f" },
	{ 7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a" },
	{ 7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817" },
	{ 8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63" },
	{ 8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b" },
	{ 16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4" },
	{ 31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47" },
	{ 65536, "68d647e619a930e7b1082f74f334b0c65a315725569bdc123f0ee11881717bfe" },
	{ 102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085" },
	{ 1048583, "89541f1047f7a56806fe16efda4c2cdc45f141c838e413019f0124189fa55232" },
};

static void hex32(const uint8_t *d, char *out)
{
	lp_hex(d, 32, out);
}

static uint8_t *pattern(size_t len)
{
	uint8_t *b = lp_xmalloc(len ? len : 1);

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i % 251);
	return b;
}

/* Hashes buf in pieces of `step` bytes (0: growing odd steps). */
static void hash_split(const uint8_t *buf, size_t len, size_t step,
		       uint8_t out[32])
{
	struct lp_blake3 h;
	size_t pos = 0, k = 1;

	lp_blake3_init(&h);
	while (pos < len) {
		size_t n = step ? step : k;

		if (n > len - pos)
			n = len - pos;
		lp_blake3_update(&h, buf + pos, n);
		pos += n;
		k = k * 3 + 1;
		if (k > 5000)
			k = 1;
	}
	lp_blake3_final(&h, out);
}

static void test_vectors(void)
{
	static const size_t steps[] = { 1, 7, 63, 64, 65, 1023, 1024, 1025,
					4096, 0 };

	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
		uint8_t *buf = pattern(vectors[i].len);
		uint8_t out[32];
		char hex[65];

		lp_blake3(buf, vectors[i].len, out);
		hex32(out, hex);
		if (strcmp(hex, vectors[i].hex))
			fprintf(stderr, "len %zu: got %s\n", vectors[i].len,
				hex);
		CHECK(!strcmp(hex, vectors[i].hex));
		for (size_t s = 0; s < ARRAY_SIZE(steps); s++) {
			if (steps[s] == 1 && vectors[i].len > 70000)
				continue;
			hash_split(buf, vectors[i].len, steps[s], out);
			hex32(out, hex);
			CHECK(!strcmp(hex, vectors[i].hex));
		}
		free(buf);
	}
}

/* final() does not consume the state: hashing may continue after it. */
static void test_final_is_pure(void)
{
	uint8_t *buf = pattern(3000), a[32], b[32], c[32];
	struct lp_blake3 h;

	lp_blake3_init(&h);
	lp_blake3_update(&h, buf, 1500);
	lp_blake3_final(&h, a);
	lp_blake3_final(&h, b);
	CHECK(!memcmp(a, b, 32));
	lp_blake3_update(&h, buf + 1500, 1500);
	lp_blake3_final(&h, b);
	lp_blake3(buf, 3000, c);
	CHECK(!memcmp(b, c, 32));
	free(buf);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Compares with b3sum on random data; returns false when b3sum is absent. */
static bool b3sum_check(const uint8_t *buf, size_t len, const char *dir)
{
	char path[4096], cmd[4200], line[256];
	uint8_t out[32];
	char hex[65];
	FILE *f, *p;
	bool ok;

	snprintf(path, sizeof(path), "%s/b3-input", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "cannot write %s\n", path);
		failures++;
		return true;
	}
	snprintf(cmd, sizeof(cmd), "b3sum --no-names '%s'", path);
	p = popen(cmd, "r");
	ok = p && fgets(line, sizeof(line), p);
	if (p && pclose(p) != 0)
		ok = false;
	unlink(path);
	if (!ok)
		return false;
	lp_blake3(buf, len, out);
	hex32(out, hex);
	if (strncmp(hex, line, 64))
		fprintf(stderr, "len %zu: b3sum %.64s, ours %s\n", len, line,
			hex);
	CHECK(!strncmp(hex, line, 64));
	return true;
}

static void test_b3sum(void)
{
	static const size_t sizes[] = {
		0,    1,    2,	  31,	32,    33,    63,	64,   65,
		127,  128,  129,  1000, 1023,  1024,  1025,	2047, 2048,
		2049, 3072, 3073, 4095, 4096,  4097,  8191,	8192, 8193,
		9999, 16385, 65535, 65536, 65537, 100000, (1 << 20) + 7,
		(3 << 20) + 1234,
	};
	char dir[] = "/tmp/test-blake3-XXXXXX";
	unsigned done = 0;

	rng ^= (uint64_t)getpid() << 20 ^ (uint64_t)time(NULL);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		failures++;
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(sizes) + 20; i++) {
		size_t len = i < ARRAY_SIZE(sizes) ? sizes[i]
						   : next_rand() % 300000;
		uint8_t *buf = lp_xmalloc(len ? len : 1);

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)next_rand();
		if (!b3sum_check(buf, len, dir)) {
			free(buf);
			break;
		}
		done++;
		free(buf);
	}
	rmdir(dir);
	if (done)
		printf("blake3: %u random inputs agree with b3sum\n", done);
	else
		printf("blake3: b3sum not found, known vectors only\n");
}

int main(void)
{
	test_vectors();
	test_final_is_pure();
	test_b3sum();
	printf("%d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
