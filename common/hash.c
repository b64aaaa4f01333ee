/* SPDX-License-Identifier: Apache-2.0 */
#include <openssl/evp.h>
#include <string.h>

#include "common/common.h"

void lp_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
		abort();
}

struct lp_sha256_ctx {
	EVP_MD_CTX *md;
};

struct lp_sha256_ctx *lp_sha256_new(void)
{
	struct lp_sha256_ctx *c = lp_xmalloc(sizeof(*c));

	c->md = EVP_MD_CTX_new();
	if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL))
		abort();
	return c;
}

void lp_sha256_update(struct lp_sha256_ctx *c, const void *data, size_t len)
{
	EVP_DigestUpdate(c->md, data, len);
}

void lp_sha256_final(struct lp_sha256_ctx *c, uint8_t out[32])
{
	unsigned int n = 32;

	EVP_DigestFinal_ex(c->md, out, &n);
	EVP_MD_CTX_free(c->md);
	free(c);
}

void lp_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int lp_parse_sha256_digest(const char *s, size_t len, uint8_t out[32])
{
	if (len != 7 + 64 || memcmp(s, "sha256:", 7))
		return -EINVAL;
	s += 7;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
