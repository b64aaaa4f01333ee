/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

struct ls_item {
	char *path;
	uint32_t ino;
	bool primary;
};

struct ls_state {
	struct ls_item *items;
	size_t n_items, cap_items;
	struct engine_layer *l;
	bool json, digest;
	int failed;
	uint8_t *buf;
};

#define LS_BUF (1u << 20)

static int file_sha256(struct ls_state *s, uint32_t ino, const char *path,
		       char hex[65])
{
	const struct model_inode *in = &s->l->model->inodes[ino];
	struct lp_sha256_ctx *h = lp_sha256_new();
	uint64_t off = 0;
	uint8_t d[32];

	while (off < in->size) {
		struct lp_err err = { 0 };
		int64_t n = engine_read(s->l, ino, s->buf, LS_BUF, off, &err);

		if (n <= 0) {
			lp_sha256_final(h, d);
			cli_error("%s: %s: %s", s->l->src->name, path,
				  n < 0 ? err.msg : "short read");
			return -EIO;
		}
		lp_sha256_update(h, s->buf, (size_t)n);
		off += (uint64_t)n;
	}
	lp_sha256_final(h, d);
	lp_hex(d, 32, hex);
	return 0;
}

static const char *inode_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "dir";
	case S_IFLNK:
		return "symlink";
	case S_IFCHR:
		return "char";
	case S_IFBLK:
		return "block";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	default:
		return "reg";
	}
}

static int ls_print(const struct model *m, const char *path, uint32_t ino,
		    bool primary, struct ls_state *s)
{
	const struct model_inode *in = &m->inodes[ino];
	char target[8192];
	char hex[65] = "";

	if (!primary) {
		if (model_path(m, ino, target, sizeof(target)) < 0)
			return -ENAMETOOLONG;
		if (s->json) {
			fputs("{\"path\":", stdout);
			json_put_str(stdout, path, strlen(path));
			fputs(",\"type\":\"hardlink\",\"link\":", stdout);
			json_put_str(stdout, target, strlen(target));
			fputs("}\n", stdout);
		} else {
			printf("h---------  %s link to %s\n", path, target);
		}
		return 0;
	}
	if (S_ISREG(in->mode) && s->digest &&
	    file_sha256(s, ino, path, hex) < 0) {
		s->failed = 1;
		hex[0] = '\0';
	}
	if (!s->json) {
		printf("%-7s %5o %6u %6u %12llu  %s", inode_type(in->mode),
		       in->mode & 07777, in->uid, in->gid,
		       (unsigned long long)(S_ISREG(in->mode) ? in->size : 0),
		       path);
		if (S_ISLNK(in->mode))
			printf(" -> %s", model_str(m, in->link));
		if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
			printf(" [%u,%u]", in->rdev_major, in->rdev_minor);
		if (hex[0])
			printf("  sha256:%s", hex);
		putchar('\n');
		return 0;
	}
	fputs("{\"path\":", stdout);
	json_put_str(stdout, path, strlen(path));
	printf(",\"type\":\"%s\",\"mode\":\"%o\",\"uid\":%u,\"gid\":%u",
	       inode_type(in->mode), in->mode & 07777, in->uid, in->gid);
	if (S_ISREG(in->mode))
		printf(",\"size\":%llu", (unsigned long long)in->size);
	if (S_ISLNK(in->mode)) {
		fputs(",\"link\":", stdout);
		json_put_str(stdout, model_str(m, in->link), in->size);
	}
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
		printf(",\"rdev\":[%u,%u]", in->rdev_major, in->rdev_minor);
	if (in->xattr_count) {
		fputs(",\"xattrs\":{", stdout);
		for (uint32_t i = 0; i < in->xattr_count; i++) {
			const struct model_xattr *x =
				&m->xattrs[in->xattr_first + i];
			const char *name = model_str(m, x->name);
			char *b64 = lp_xmalloc(
				lp_base64_encoded_len(x->value_len) + 1);

			lp_base64_encode((const uint8_t *)model_str(m,
								    x->value),
					 x->value_len, b64);
			if (i)
				putchar(',');
			json_put_str(stdout, name, strlen(name));
			putchar(':');
			json_put_str(stdout, b64, strlen(b64));
			free(b64);
		}
		putchar('}');
	}
	if (hex[0])
		printf(",\"sha256\":\"%s\"", hex);
	fputs("}\n", stdout);
	return 0;
}

static int ls_collect(const struct model *m, const char *path, uint32_t ino,
		      bool primary, void *data)
{
	struct ls_state *s = data;
	(void)m;

	lp_grow((void **)&s->items, sizeof(*s->items), &s->cap_items,
		s->n_items + 1);
	s->items[s->n_items].path = lp_xstrdup(path);
	s->items[s->n_items].ino = ino;
	s->items[s->n_items].primary = primary;
	s->n_items++;
	return 0;
}

/* Byte order of the whole path ("a-b" < "a.b" < "a/b"), like LC_ALL=C sort,
 * not tree order. */
static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ls_item *)a)->path,
		      ((const struct ls_item *)b)->path);
}

static void ls_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull ls [OPTIONS] BLOB|REF\n\n"
		   "Lists the layer's entries as stored (whiteouts under their "
		   ".wh. names),\nsorted by path.  For an image REF without "
		   "--layer: the merged tree of all its\nlayers, whiteouts "
		   "applied.\n\n"
		   "  --json              one JSON object per line: path, type, "
		   "mode, uid, gid,\n"
		   "                      size, link, rdev, xattrs (base64), "
		   "sha256\n"
		   "  --digest            also hash every regular file "
		   "(decodes and verifies it)\n" CLI_LAYER_HELP CLI_REMOTE_HELP);
}

int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "digest", no_argument, NULL, OPT_DIGEST },
		CLI_LAYER_LONGOPTS,
		CLI_REMOTE_LONGOPTS,
		{ 0 },
	};
	_cleanup_(cli_layer_opts_release) struct cli_layer_opts lo;
	_cleanup_(engine_closep) struct engine_layer *l = NULL;
	struct ls_state s = { 0 };
	int c, r;

	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		int h = cli_layer_opt(&lo, c, optarg);

		if (h < 0)
			return EXIT_USAGE;
		if (h)
			continue;
		switch (c) {
		case OPT_JSON:
			s.json = true;
			break;
		case OPT_DIGEST:
			s.digest = true;
			break;
		case 'h':
			ls_usage(stdout);
			return 0;
		default:
			ls_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		ls_usage(stderr);
		return EXIT_USAGE;
	}
	if (cli_open(argv[optind], &lo, &l) < 0)
		return 1;
	s.l = l;
	s.buf = lp_xmalloc(LS_BUF);
	r = model_walk(l->model, ls_collect, &s);
	if (r == 0)
		qsort(s.items, s.n_items, sizeof(*s.items), item_cmp);
	for (size_t i = 0; i < s.n_items; i++) {
		if (r == 0)
			r = ls_print(l->model, s.items[i].path, s.items[i].ino,
				     s.items[i].primary, &s);
		free(s.items[i].path);
	}
	free(s.items);
	free(s.buf);
	if (fflush(stdout) != 0 || r < 0) {
		cli_error("%s: listing failed", argv[optind]);
		return 1;
	}
	return s.failed ? 1 : 0;
}
