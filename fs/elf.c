// SPDX-License-Identifier: Apache-2.0
/*
 * ELF dependencies: see elf.h.  The layout facts used here (e_ident,
 * program headers, PT_INTERP, PT_DYNAMIC, DT_NEEDED/STRTAB/STRSZ/RPATH/
 * RUNPATH) are the System V ABI's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/elf.h"

#define PT_LOAD 1
#define PT_DYNAMIC 2
#define PT_INTERP 3
#define DT_NULL 0
#define DT_NEEDED 1
#define DT_STRTAB 5
#define DT_STRSZ 10
#define DT_RPATH 15
#define DT_RUNPATH 29

#define MAX_PHNUM 512
#define MAX_DYN (64u << 10) /* bytes of the dynamic segment read */

struct elf_rd {
	elf_read_fn read;
	void *arg;
	uint64_t size;
	bool elf64, be;
	struct lp_err *err;
};

static uint64_t get(const struct elf_rd *r, const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[r->be ? n - 1 - i : i] << (8 * i);
	return v;
}

/* exactly len bytes at off, inside the file */
static int rd(const struct elf_rd *r, uint64_t off, void *buf, size_t len,
	      const char *what)
{
	int64_t got;

	if (off > r->size || len > r->size - off)
		return lp_err_set(r->err, EINVAL,
				  "%s (offset %llu, %zu bytes) is past the "
				  "end of the file (%llu bytes)", what,
				  (unsigned long long)off, len,
				  (unsigned long long)r->size);
	got = r->read(r->arg, off, buf, len);
	if (got < 0)
		return lp_err_set(r->err, (int)-got, "reading the %s: %s", what,
				  strerror((int)-got));
	if ((uint64_t)got != len)
		return lp_err_set(r->err, EIO, "reading the %s: short read",
				  what);
	return 0;
}

/* A NUL-terminated string of at most ELF_MAX_NAME bytes at off, which
 * must end before limit (the end of its table). */
static int rd_str(const struct elf_rd *r, uint64_t off, uint64_t limit,
		  const char *what, char **ret)
{
	char buf[ELF_MAX_NAME + 1];
	size_t len = ELF_MAX_NAME + 1;
	int64_t got;
	char *nul;

	if (limit > r->size)
		limit = r->size;
	if (off >= limit)
		return lp_err_set(r->err, EINVAL, "%s at %llu is outside its "
				  "table", what, (unsigned long long)off);
	if (len > limit - off)
		len = (size_t)(limit - off);
	got = r->read(r->arg, off, buf, len);
	if (got < 0)
		return lp_err_set(r->err, (int)-got, "reading the %s: %s", what,
				  strerror((int)-got));
	nul = memchr(buf, '\0', (size_t)got);
	if (!nul || nul == buf)
		return lp_err_set(r->err, EINVAL, "the %s at %llu is %s", what,
				  (unsigned long long)off,
				  nul ? "empty" : "not terminated");
	*ret = lp_xstrdup(buf);
	return 0;
}

struct phdr {
	uint32_t type;
	uint64_t off, vaddr, filesz;
};

static void phdr_get(const struct elf_rd *r, const uint8_t *p,
		     struct phdr *ph)
{
	ph->type = (uint32_t)get(r, p, 4);
	if (r->elf64) {
		ph->off = get(r, p + 8, 8);
		ph->vaddr = get(r, p + 16, 8);
		ph->filesz = get(r, p + 32, 8);
	} else {
		ph->off = get(r, p + 4, 4);
		ph->vaddr = get(r, p + 8, 4);
		ph->filesz = get(r, p + 16, 4);
	}
}

/* The file offset of address v, through the PT_LOAD segments. */
static bool vaddr_to_off(const struct phdr *ph, uint32_t n, uint64_t v,
			 uint64_t *ret)
{
	for (uint32_t i = 0; i < n; i++)
		if (ph[i].type == PT_LOAD && v >= ph[i].vaddr &&
		    v - ph[i].vaddr < ph[i].filesz) {
			if (lp_add_overflow(ph[i].off, v - ph[i].vaddr, ret))
				return false;
			return true;
		}
	return false;
}

static int read_dynamic(const struct elf_rd *r, const struct phdr *ph,
			uint32_t n, const struct phdr *dyn,
			struct elf_deps *d)
{
	size_t esz = r->elf64 ? 16 : 8, len;
	uint64_t strtab = 0, strsz = 0, rpath = UINT64_MAX,
		 runpath = UINT64_MAX, stroff, limit;
	uint64_t need[ELF_MAX_NEEDED];
	uint32_t n_need = 0;
	_cleanup_free_ uint8_t *buf = NULL;
	bool have_strtab = false;
	int rc;

	len = dyn->filesz > MAX_DYN ? MAX_DYN : (size_t)dyn->filesz;
	len -= len % esz;
	if (!len)
		return 0;
	buf = lp_xmalloc(len);
	rc = rd(r, dyn->off, buf, len, "dynamic segment");
	if (rc < 0)
		return rc;
	for (size_t k = 0; k + esz <= len; k += esz) {
		uint64_t tag = get(r, buf + k, (unsigned)esz / 2),
			 val = get(r, buf + k + esz / 2, (unsigned)esz / 2);

		if (tag == DT_NULL)
			break;
		switch (tag) {
		case DT_NEEDED:
			if (n_need == ELF_MAX_NEEDED)
				return lp_err_set(r->err, EINVAL,
						  "more than %u DT_NEEDED "
						  "entries", ELF_MAX_NEEDED);
			need[n_need++] = val;
			break;
		case DT_STRTAB:
			strtab = val;
			have_strtab = true;
			break;
		case DT_STRSZ:
			strsz = val;
			break;
		case DT_RPATH:
			rpath = val;
			break;
		case DT_RUNPATH:
			runpath = val;
			break;
		default:
			break;
		}
	}
	if (!n_need && rpath == UINT64_MAX && runpath == UINT64_MAX)
		return 0;
	if (!have_strtab || !strsz)
		return lp_err_set(r->err, EINVAL,
				  "DT_NEEDED without a string table");
	if (!vaddr_to_off(ph, n, strtab, &stroff))
		return lp_err_set(r->err, EINVAL, "the string table's address "
				  "%#llx is in no loaded segment",
				  (unsigned long long)strtab);
	if (lp_add_overflow(stroff, strsz, &limit))
		return lp_err_set(r->err, EINVAL, "string table size overflows");
	d->needed = lp_xcalloc(n_need ? n_need : 1, sizeof(*d->needed));
	for (uint32_t i = 0; i < n_need; i++) {
		if (need[i] >= strsz)
			return lp_err_set(r->err, EINVAL, "DT_NEEDED %u is "
					  "outside the string table", i);
		rc = rd_str(r, stroff + need[i], limit, "needed name",
			    &d->needed[i]);
		if (rc < 0)
			return rc;
		d->n_needed = i + 1;
	}
	if (runpath != UINT64_MAX || rpath != UINT64_MAX) {
		uint64_t v = runpath != UINT64_MAX ? runpath : rpath;

		if (v >= strsz)
			return lp_err_set(r->err, EINVAL, "the run path is "
					  "outside the string table");
		rc = rd_str(r, stroff + v, limit, "run path", &d->runpath);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int elf_deps_read(elf_read_fn read, void *arg, uint64_t size,
		  struct elf_deps *ret, struct lp_err *err)
{
	struct elf_rd r = { .read = read, .arg = arg, .size = size,
			    .err = err };
	struct elf_deps d = { 0 };
	_cleanup_free_ uint8_t *praw = NULL;
	_cleanup_free_ struct phdr *ph = NULL;
	const struct phdr *dyn = NULL;
	uint8_t h[64];
	uint64_t phoff;
	uint32_t phentsize, phnum;
	int rc;

	if (size < 52) {
		/* too short for a header: malformed if the magic is there */
		if (size < 4)
			return -ENOEXEC;
		rc = rd(&r, 0, h, 4, "ELF magic");
		if (rc < 0)
			return rc;
		if (memcmp(h, "\177ELF", 4))
			return -ENOEXEC;
		return lp_err_set(err, EINVAL, "truncated ELF header (%llu "
				  "bytes)", (unsigned long long)size);
	}
	rc = rd(&r, 0, h, size < 64 ? 52 : 64, "ELF header");
	if (rc < 0)
		return rc;
	if (memcmp(h, "\177ELF", 4))
		return -ENOEXEC;
	if ((h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2))
		return lp_err_set(err, EINVAL, "unknown ELF class %u or byte "
				  "order %u", h[4], h[5]);
	r.elf64 = h[4] == 2;
	r.be = h[5] == 2;
	if (r.elf64 && size < 64)
		return lp_err_set(err, EINVAL, "truncated ELF header");
	d.elf64 = r.elf64;
	d.machine = (uint16_t)get(&r, h + 18, 2);
	if (r.elf64) {
		phoff = get(&r, h + 32, 8);
		phentsize = (uint32_t)get(&r, h + 54, 2);
		phnum = (uint32_t)get(&r, h + 56, 2);
	} else {
		phoff = get(&r, h + 28, 4);
		phentsize = (uint32_t)get(&r, h + 42, 2);
		phnum = (uint32_t)get(&r, h + 44, 2);
	}
	if (!phnum) {
		*ret = d; /* no program headers: nothing is loaded with it */
		return 0;
	}
	if (phnum > MAX_PHNUM || phentsize < (r.elf64 ? 56u : 32u))
		return lp_err_set(err, EINVAL, "%u program headers of %u bytes",
				  phnum, phentsize);
	praw = lp_xmalloc((size_t)phnum * phentsize);
	rc = rd(&r, phoff, praw, (size_t)phnum * phentsize,
		"program headers");
	if (rc < 0)
		return rc;
	ph = lp_xcalloc(phnum, sizeof(*ph));
	for (uint32_t i = 0; i < phnum; i++) {
		phdr_get(&r, praw + (size_t)i * phentsize, &ph[i]);
		if (ph[i].type == PT_DYNAMIC && !dyn)
			dyn = &ph[i];
	}
	for (uint32_t i = 0; i < phnum; i++) {
		uint64_t end;

		if (ph[i].type != PT_INTERP || d.interp)
			continue;
		if (lp_add_overflow(ph[i].off, ph[i].filesz, &end)) {
			rc = lp_err_set(err, EINVAL, "PT_INTERP overflows");
			goto fail;
		}
		rc = rd_str(&r, ph[i].off, end, "interpreter", &d.interp);
		if (rc < 0)
			goto fail;
	}
	if (dyn) {
		rc = read_dynamic(&r, ph, phnum, dyn, &d);
		if (rc < 0)
			goto fail;
	}
	*ret = d;
	return 0;
fail:
	elf_deps_release(&d);
	return rc;
}

struct mem {
	const uint8_t *p;
	size_t len;
};

static int64_t mem_read(void *arg, uint64_t off, void *buf, size_t len)
{
	const struct mem *m = arg;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = (size_t)(m->len - off);
	memcpy(buf, m->p + off, len);
	return (int64_t)len;
}

int elf_deps_parse(const void *data, size_t len, struct elf_deps *ret,
		   struct lp_err *err)
{
	struct mem m = { .p = data, .len = len };

	return elf_deps_read(mem_read, &m, len, ret, err);
}

void elf_deps_release(struct elf_deps *d)
{
	if (!d)
		return;
	free(d->interp);
	for (uint32_t i = 0; i < d->n_needed; i++)
		free(d->needed[i]);
	free(d->needed);
	free(d->runpath);
	memset(d, 0, sizeof(*d));
}

const char *elf_machine_triplet(uint16_t machine)
{
	switch (machine) {
	case 3:
		return "i386-linux-gnu";
	case 8:
		return "mips64el-linux-gnuabi64";
	case 20:
		return "powerpc-linux-gnu";
	case 21:
		return "powerpc64le-linux-gnu";
	case 22:
		return "s390x-linux-gnu";
	case 40:
		return "arm-linux-gnueabihf";
	case 62:
		return "x86_64-linux-gnu";
	case 183:
		return "aarch64-linux-gnu";
	case 243:
		return "riscv64-linux-gnu";
	default:
		return NULL;
	}
}
