/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dynamic-linking facts of an ELF file that say which other files a
 * program loads before its first instruction: the interpreter (PT_INTERP,
 * the dynamic loader), the DT_NEEDED libraries and the DT_RUNPATH /
 * DT_RPATH search path.  32- and 64-bit, either byte order.  The file is
 * read through a callback (a few small reads: the header, the program
 * headers, the dynamic segment and the needed names), so a lazily fetched
 * file needs only the chunks that hold them.
 *
 * Used to prefetch an image's start files (fs/startset.h).  A file that
 * is not ELF is -ENOEXEC without a message; a malformed one is -EINVAL
 * with one.  Nothing read from the file is trusted: every offset, count
 * and string is bounded.
 */
#ifndef LAZYPULL_FS_ELF_H
#define LAZYPULL_FS_ELF_H

#include <stdint.h>

#include "common/common.h"

#define ELF_MAX_NEEDED 128
#define ELF_MAX_NAME 1024 /* interpreter, library name, run path */

struct elf_deps {
	char *interp;	/* PT_INTERP path, or NULL (static, or a library) */
	char **needed;	/* DT_NEEDED names, in order */
	uint32_t n_needed;
	char *runpath;	/* DT_RUNPATH, else DT_RPATH, or NULL */
	uint16_t machine; /* e_machine */
	uint8_t elf64;	/* ELFCLASS64 */
};

/* Reads up to len bytes at off; returns the count (short at the end of
 * the file) or -errno. */
typedef int64_t (*elf_read_fn)(void *arg, uint64_t off, void *buf,
			       size_t len);

/* Reads the dependencies of the ELF file of size bytes behind read. */
int elf_deps_read(elf_read_fn read, void *arg, uint64_t size,
		  struct elf_deps *ret, struct lp_err *err);
/* elf_deps_read() of data[0..len). */
int elf_deps_parse(const void *data, size_t len, struct elf_deps *ret,
		   struct lp_err *err);
void elf_deps_release(struct elf_deps *d);

/* The multiarch directory name of machine ("x86_64-linux-gnu"), or NULL. */
const char *elf_machine_triplet(uint16_t machine);

#endif
