/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine_stargz_family, alone in its object: the snapshotter needs this
 * one answer from the engine, and linking engine.c for it brought the
 * whole engine (and libcrypto) into its process.
 */
#include <string.h>

#include "fs/engine.h"

bool engine_stargz_family(const char *format)
{
	return !strcmp(format, "estargz") || !strcmp(format, "stargz") ||
	       !strcmp(format, "zstd:chunked");
}
