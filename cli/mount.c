/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazypull mount / umount: serve local layer blobs through FUSE.
 *
 * The chunk source maps a chunk of the served model back to the layer it
 * came from: model_merge() rebases chunk.blob onto one blob table for all
 * layers and records each blob's layer, so the layer is
 * blobs[chunk.blob].layer and the layer-local blob index is chunk.blob
 * minus the index of that layer's first blob.
 */
#define LP_MODNAME "mount"
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/cli.h"
#include "fs/fuse.h"

struct mount_src {
	struct engine_layer **layers;
	uint32_t n_layers;
	const struct model *m; /* the served model */
	uint32_t *blob_base;   /* per layer: its first blob in m->blobs */
};

static int src_read_chunk(void *priv, uint32_t idx, void *out,
			  struct lp_err *err)
{
	struct mount_src *ms = priv;
	struct model_chunk c;
	struct engine_layer *l;
	uint32_t lay;

	if (idx >= ms->m->n_chunks)
		return lp_err_set(err, EINVAL, "no chunk %u", idx);
	c = ms->m->chunks[idx];
	if (c.blob >= ms->m->n_blobs)
		return lp_err_set(err, EINVAL, "chunk %u names blob %u of %u",
				  idx, c.blob, ms->m->n_blobs);
	lay = ms->m->blobs[c.blob].layer;
	if (lay >= ms->n_layers)
		return lp_err_set(err, EINVAL, "blob %u names layer %u of %u",
				  c.blob, lay, ms->n_layers);
	l = ms->layers[lay];
	c.blob -= ms->blob_base[lay];
	if (c.blob >= l->model->n_blobs)
		return lp_err_set(err, EINVAL,
				  "chunk %u: blob %u is not in layer %u", idx,
				  c.blob, lay);
	return engine_read_chunk_rec(l, &c, out, err);
}

static const struct fsrv_source_ops src_ops = {
	.read_chunk = src_read_chunk,
};

static void mount_src_init(struct mount_src *ms, const struct model *m,
			   struct engine_layer **layers, uint32_t n)
{
	ms->layers = layers;
	ms->n_layers = n;
	ms->m = m;
	ms->blob_base = lp_xcalloc(n, sizeof(*ms->blob_base));
	for (uint32_t l = 0; l < n; l++)
		ms->blob_base[l] = UINT32_MAX;
	for (uint32_t i = 0; i < m->n_blobs; i++) {
		uint32_t l = m->blobs[i].layer;

		if (l < n && ms->blob_base[l] == UINT32_MAX)
			ms->blob_base[l] = i;
	}
	for (uint32_t l = 0; l < n; l++)
		if (ms->blob_base[l] == UINT32_MAX)
			ms->blob_base[l] = 0; /* no chunks of it either */
}

static void mount_usage(FILE *f)
{
	fprintf(f,
		"Usage: lazypull mount [OPTIONS] BLOB... MOUNTPOINT\n\n"
		"Mounts local layer blobs read-only through FUSE.  The BLOBs "
		"are layers from\nthe bottom up; the mount shows their merged "
		"tree (OCI whiteouts applied), or\nwith --layer one layer in "
		"overlayfs form (whiteouts as char 0:0 devices,\nopaque "
		"directories with trusted.overlay.opaque=y) for use as an "
		"overlay\nlowerdir.  File data is decoded and verified chunk "
		"by chunk when read.\n\n"
		"Runs as a daemon once the mount is up (the command returns 0 "
		"then) unless\n--foreground; SIGTERM or SIGINT, or 'lazypull "
		"umount', unmount it.\n\n"
		"  --layer N           serve only BLOB number N (0 = the "
		"first, the bottom)\n"
		"  -f, --foreground    do not daemonize\n"
		"  --pid-file FILE     write the serving process id to FILE\n"
		"  --log-file FILE     append log lines to FILE (otherwise "
		"stderr in the\n"
		"                      foreground, nowhere as a daemon)\n"
		"  --log-level L       error, warn (default), info, debug\n"
		"  -o OPT[,OPT...]     allow_other, debug (trace every FUSE "
		"request)\n"
		"  --cache-size MiB    decoded-chunk cache (default 32)\n"
		"  --threads N         idle worker threads kept (default 10)\n"
		CLI_LAYER_HELP);
}

static void umount_usage(FILE *f)
{
	fprintf(f, "Usage: lazypull umount [-l|--lazy] MOUNTPOINT\n\n"
		   "Unmounts a lazypull FUSE mount; its daemon then exits.  "
		   "As root a busy\nmount is detached (like umount -l); "
		   "otherwise fusermount3 -u does it.\n\n"
		   "  -l, --lazy          detach even if busy\n"
		   "  --force             also for mounts that are not "
		   "lazypull's\n"
		   "  -h, --help          this help\n");
}

enum {
	OPT_MOUNT_LAYER = 0x300,
	OPT_PID_FILE,
	OPT_LOG_FILE,
	OPT_LOG_LEVEL,
	OPT_CACHE_SIZE,
	OPT_THREADS,
	OPT_FORCE,
};

static int parse_u32(const char *s, uint32_t max, uint32_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_mount_opts(const char *arg, struct fsrv_opts *fo)
{
	_cleanup_free_ char *copy = lp_xstrdup(arg);
	char *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "allow_other")) {
			fo->allow_other = true;
		} else if (!strcmp(t, "debug")) {
			fo->debug = true;
		} else if (!strcmp(t, "ro")) {
			/* always */
		} else {
			cli_error("-o %s: unknown mount option (allow_other, "
				  "debug)", t);
			return -EINVAL;
		}
	}
	return 0;
}

/* Makes path absolute (the daemon changes to /). */
static char *abs_path(const char *path)
{
	char cwd[PATH_MAX];
	char *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return lp_xstrdup(path);
	out = lp_xmalloc(strlen(cwd) + strlen(path) + 2);
	sprintf(out, "%s/%s", cwd, path);
	return out;
}

static int write_pid_file(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		int r = errno ? -errno : -EIO;

		close(fd);
		return r;
	}
	return close(fd) < 0 ? -errno : 0;
}

/*
 * Forks; the parent waits until the child reports that it serves (one
 * byte on the pipe) and exits 0, or 1 if the child died first.  Returns
 * in the child only.
 */
static int daemonize(int *ret_ready_fd)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return r;
	}
	if (pid > 0) {
		ssize_t n;
		int st;

		close(pfd[1]);
		do
			n = read(pfd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1)
			_exit(0);
		/* the child said why on stderr */
		waitpid(pid, &st, 0);
		_exit(1);
	}
	close(pfd[0]);
	if (setsid() < 0)
		lp_log(LP_LOG_WARN, "setsid: %s", strerror(errno));
	*ret_ready_fd = pfd[1];
	return 0;
}

/* Points stdin/stdout at /dev/null and stderr at the log (or /dev/null). */
static void detach_stdio(int log_fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (log_fd < 0)
			dup2(null, STDERR_FILENO);
		close(null);
	}
	if (log_fd >= 0)
		dup2(log_fd, STDERR_FILENO);
}

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "layer", required_argument, NULL, OPT_MOUNT_LAYER },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pid-file", required_argument, NULL, OPT_PID_FILE },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
		{ "threads", required_argument, NULL, OPT_THREADS },
		CLI_LAYER_LONGOPTS,
		{ 0 },
	};
	struct cli_layer_opts lo;
	struct fsrv_opts fo = { 0 };
	struct lp_err err = { 0 };
	struct mount_src ms = { 0 };
	_cleanup_free_ char *pid_file = NULL, *blob_dir = NULL;
	_cleanup_free_ struct engine_layer **layers = NULL;
	_cleanup_close_ int log_fd = -1;
	struct model *served = NULL;
	struct fsrv *s = NULL;
	const char *mountpoint, *log_file = NULL;
	char name[512];
	bool foreground = false, have_layer = false;
	uint32_t layer = 0, n_blobs, n_open = 0, v;
	int ready_fd = -1, c, r, ret = 1;
	struct stat st;

	cli_layer_opts_init(&lo);
	while ((c = getopt_long(argc, argv, "fho:", longopts, NULL)) != -1) {
		if (cli_layer_opt(&lo, c, optarg))
			continue;
		switch (c) {
		case OPT_MOUNT_LAYER:
			if (parse_u32(optarg, UINT32_MAX - 1, &layer) < 0) {
				cli_error("--layer %s: not a layer number",
					  optarg);
				return EXIT_USAGE;
			}
			have_layer = true;
			break;
		case 'f':
			foreground = true;
			break;
		case OPT_PID_FILE:
			free(pid_file);
			pid_file = abs_path(optarg);
			break;
		case OPT_LOG_FILE:
			log_file = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (lp_log_parse_level(optarg, &lp_log_max) < 0) {
				cli_error("--log-level %s: error, warn, info "
					  "or debug", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_CACHE_SIZE:
			if (parse_u32(optarg, 1u << 20, &v) < 0 || !v) {
				cli_error("--cache-size %s: MiB, 1 to 1048576",
					  optarg);
				return EXIT_USAGE;
			}
			fo.cache_bytes = (uint64_t)v << 20;
			break;
		case OPT_THREADS:
			if (parse_u32(optarg, 1024, &v) < 0 || !v) {
				cli_error("--threads %s: 1 to 1024", optarg);
				return EXIT_USAGE;
			}
			fo.max_idle_threads = v;
			break;
		case 'o':
			if (parse_mount_opts(optarg, &fo) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			mount_usage(stdout);
			return 0;
		default:
			mount_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 2) {
		mount_usage(stderr);
		return EXIT_USAGE;
	}
	n_blobs = (uint32_t)(argc - optind - 1);
	mountpoint = argv[argc - 1];
	if (have_layer && layer >= n_blobs) {
		cli_error("--layer %u: there %s only %u blob%s (0 to %u)",
			  layer, n_blobs == 1 ? "is" : "are", n_blobs,
			  n_blobs == 1 ? "" : "s", n_blobs - 1);
		return EXIT_USAGE;
	}
	/* data blobs open lazily, after the daemon moved to / */
	if (lo.blob_dir) {
		blob_dir = abs_path(lo.blob_dir);
		lo.blob_dir = blob_dir;
	}
	if (lo.toc_digest && n_blobs > 1 && !have_layer) {
		cli_error("--toc-digest applies to one blob; use --layer");
		return EXIT_USAGE;
	}
	if (stat(mountpoint, &st) < 0) {
		cli_error("%s: %s%s", mountpoint, strerror(errno),
			  errno == ENOTCONN ? " (the FUSE daemon of a mount "
					      "there died: lazypull umount it)"
					    : "");
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error("%s: not a directory", mountpoint);
		return 1;
	}
	if (log_file) {
		log_fd = open(log_file,
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			cli_error("--log-file %s: %s", log_file,
				  strerror(errno));
			return 1;
		}
	}

	/* open the layers, bottom to top */
	layers = lp_xcalloc(n_blobs, sizeof(*layers));
	for (uint32_t i = 0; i < n_blobs; i++) {
		if (have_layer && i != layer)
			continue;
		if (cli_open(argv[optind + i], &lo, &layers[n_open]) < 0)
			goto out;
		n_open++;
	}
	if (have_layer) {
		r = model_to_overlay(layers[0]->model, &served, &err);
		snprintf(name, sizeof(name), "%s", argv[optind + layer]);
	} else {
		_cleanup_free_ struct model **models =
			lp_xcalloc(n_open, sizeof(*models));

		for (uint32_t i = 0; i < n_open; i++)
			models[i] = layers[i]->model;
		r = model_merge(models, n_open, &served, &err);
		if (n_open == 1)
			snprintf(name, sizeof(name), "%s", argv[optind]);
		else
			snprintf(name, sizeof(name), "%s (+%u layers)",
				 argv[argc - 2], n_open - 1);
	}
	if (r < 0) {
		cli_error("%s: %s", have_layer ? "overlay form" : "merge",
			  err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	mount_src_init(&ms, served, layers, n_open);
	fo.name = name;
	r = fsrv_new(served, &src_ops, &ms, &fo, &s, &err);
	if (r == 0)
		r = fsrv_mount(s, mountpoint, &err);
	if (r < 0) {
		cli_error("mount %s: %s", mountpoint,
			  err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}

	if (!foreground) {
		r = daemonize(&ready_fd);
		if (r < 0) {
			cli_error("fork: %s", strerror(-r));
			goto out;
		}
	}
	/* from here on the mount is up: errors must unmount (fsrv_free) */
	if (pid_file) {
		r = write_pid_file(pid_file);
		if (r < 0) {
			cli_error("--pid-file %s: %s", pid_file, strerror(-r));
			free(TAKE_PTR(pid_file));
			goto out;
		}
	}
	if (!foreground) {
		if (chdir("/") < 0)
			lp_log(LP_LOG_WARN, "chdir /: %s", strerror(errno));
		detach_stdio(log_fd);
		if (write(ready_fd, "", 1) != 1)
			lp_log(LP_LOG_WARN, "telling the parent: %s",
			       strerror(errno));
		close(ready_fd);
		ready_fd = -1;
	} else if (log_fd >= 0) {
		dup2(log_fd, STDERR_FILENO);
	}
	lp_log(LP_LOG_INFO, "serving %s on %s: %u inodes, %u chunks%s",
	       name, mountpoint, served->n_inodes - 1, served->n_chunks,
	       have_layer ? " (overlay form)" : "");

	r = fsrv_run(s, FSRV_RUN_SIGNALS);
	if (r < 0) {
		lp_log(LP_LOG_ERROR, "%s: serving failed: %s", mountpoint,
		       strerror(-r));
	} else {
		struct fsrv_stats fst;

		fsrv_get_stats(s, &fst);
		lp_log(LP_LOG_INFO,
		       "%s: unmounting: %llu reads (%llu bytes, %llu failed), "
		       "chunks %llu decoded, %llu cache hits",
		       mountpoint, (unsigned long long)fst.reads,
		       (unsigned long long)fst.read_bytes,
		       (unsigned long long)fst.read_errors,
		       (unsigned long long)fst.chunk_misses,
		       (unsigned long long)fst.chunk_hits);
		ret = 0;
	}
out:
	fsrv_free(s); /* unmounts */
	if (pid_file)
		unlink(pid_file);
	free(ms.blob_base);
	model_free(served);
	for (uint32_t i = 0; i < n_open; i++)
		engine_close(layers[i]);
	if (ready_fd >= 0)
		close(ready_fd);
	return ret;
}

/* ---- umount ------------------------------------------------------------ */

/* Undoes the octal escapes of /proc/self/mountinfo (\040 = space). */
static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Finds the topmost mount at path: 1 and its fs type in ret_type, 0 if
 * nothing is mounted there, -errno.
 */
static int find_mount(const char *path, char *ret_type, size_t type_size)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *mp = NULL, *type = NULL, *t;
		int field = 0;
		bool after_sep = false;

		for (t = strtok_r(line, " \n", &save); t;
		     t = strtok_r(NULL, " \n", &save), field++) {
			if (field == 4)
				mp = t;
			else if (after_sep) {
				type = t;
				break;
			} else if (field > 5 && !strcmp(t, "-"))
				after_sep = true;
		}
		if (!mp || !type)
			continue;
		unescape_mountinfo(mp);
		if (!strcmp(mp, path)) {
			snprintf(ret_type, type_size, "%s", type);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

static int run_fusermount(const char *mp, bool lazy)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", "--",
			       mp, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", "--", mp,
			       (char *)NULL);
		fprintf(stderr, "lazypull: fusermount3: %s\n",
			strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int cmd_umount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "lazy", no_argument, NULL, 'l' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char path[PATH_MAX], type[256];
	bool lazy = false, force = false;
	const char *arg;
	int c, r;

	while ((c = getopt_long(argc, argv, "lh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			lazy = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'h':
			umount_usage(stdout);
			return 0;
		default:
			umount_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		umount_usage(stderr);
		return EXIT_USAGE;
	}
	arg = argv[optind];
	/* a dead daemon's mount fails stat with ENOTCONN: use the path */
	if (!realpath(arg, path)) {
		_cleanup_free_ char *a = abs_path(arg);

		snprintf(path, sizeof(path), "%s", a);
	}
	r = find_mount(path, type, sizeof(type));
	if (r < 0) {
		cli_error("/proc/self/mountinfo: %s", strerror(-r));
		return 1;
	}
	if (r == 0) {
		cli_error("%s: not mounted", arg);
		return 1;
	}
	if (strcmp(type, "fuse.lazypull") && !force) {
		cli_error("%s: a %s mount, not lazypull's (--force to unmount "
			  "anyway)", arg, type);
		return 1;
	}
	if (geteuid() != 0)
		return run_fusermount(path, lazy) < 0 ? 1 : 0;
	if (umount2(path, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (errno == EBUSY && !lazy) {
		fprintf(stderr, "lazypull: %s: busy, detaching it (it goes "
			"away when no longer used)\n", arg);
		if (umount2(path, MNT_DETACH) == 0)
			return 0;
	}
	cli_error("umount %s: %s", arg, strerror(errno));
	return 1;
}
