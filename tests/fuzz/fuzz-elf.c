// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the ELF dependency reader (fs/elf.h) on the input as a
 * whole file, through elf_deps_parse; what parsed is looked at (every
 * string must be terminated) and released.
 */
#include <string.h>

#include "fs/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink; /* the strings are read, not optimised out */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_deps d = { 0 };
	struct lp_err err = { 0 };
	size_t sum = 0;
	int r;

	r = elf_deps_parse(data, size, &d, &err);
	if (r < 0) {
		/* malformed ELF says why; not ELF says nothing */
		if (r != -ENOEXEC && !err.msg[0])
			__builtin_trap();
		return 0;
	}
	if (d.interp)
		sum += strlen(d.interp);
	for (uint32_t i = 0; i < d.n_needed; i++)
		sum += strlen(d.needed[i]);
	if (d.runpath)
		sum += strlen(d.runpath);
	(void)elf_machine_triplet(d.machine);
	elf_deps_release(&d);
	sink = sum;
	return 0;
}
