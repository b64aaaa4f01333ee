/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "cli/cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "inspect", cmd_inspect, "show a layer's format, TOC and sizes" },
	{ "ls", cmd_ls, "list a layer's entries" },
	{ "cat", cmd_cat, "write a file of a layer to stdout" },
	{ "check", cmd_check, "verify every chunk and the TOC of a layer" },
	{ "manifest", cmd_manifest, "print an image's manifest from a registry" },
	{ "index", cmd_index, "build a zran index of a plain gzip layer" },
	{ "mount", cmd_mount, "serve layers read-only through FUSE" },
	{ "umount", cmd_umount, "unmount a lazypull mount" },
	{ "probe", cmd_probe, "can a registry layer be served lazily? "
			      "(the snapshotter's Prepare)" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: lazypull COMMAND [OPTIONS] ...\n\n"
		   "lazypull reads container image layers lazily: eStargz, "
		   "legacy stargz,\nzstd:chunked, plain gzip (zran) and nydus "
		   "RAFS, all through one model.\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\nRun 'lazypull COMMAND --help' for a command's options.\n"
		   "Global: --version, --help, LAZYPULL_LOG=debug|info|warn.\n"
		   "Long work (indexing a gzip layer, cat of a big file, check, "
		   "mount\n--prefetch-all -f) shows a progress line when stderr "
		   "is a terminal;\n--progress / --no-progress force it on or "
		   "off.\n");
}

int main(int argc, char **argv)
{
	const char *lvl = getenv("LAZYPULL_LOG");

	if (lvl)
		lp_log_parse_level(lvl, &lp_log_max);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("lazypull %s\n", LP_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_error("unknown command \"%s\" (see lazypull --help)", argv[1]);
	return EXIT_USAGE;
}
