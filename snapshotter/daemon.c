/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fs daemons of remote layers: one `lazypull mount` process per layer,
 * FUSE-mounted at <root>/mnt/<id>, its pid in <root>/daemons/<id>.pid and
 * its log in <root>/daemons/<id>.log.
 *
 * A daemon is alive when the process named in its pid file is a lazypull
 * serving that mountpoint and a fuse.lazypull mount sits there (read from
 * /proc/self/mountinfo: asking the mount itself could hang on a stuck
 * daemon).  Anything else is repaired by starting it again: a dead mount
 * is lazily unmounted first (whatever still uses it keeps its reference;
 * new users get the new mount), a process that lost its mount is stopped.
 *
 * Daemons are separate sessions (lazypull mount daemonizes), so they
 * outlive the snapshotter; the pid files are how the next one finds them.
 */
#define LP_MODNAME "snapshotter"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snapshotter/snapshotter-int.h"

extern char **environ;

#define START_TIMEOUT_MS 120000 /* a zran layer is indexed before mounting */
/* `lazypull probe`: its own requests are bounded (PROBE_TIMEOUT_S each,
 * PROBE_RETRIES retries unless the nydusd JSON says); this bounds all */
#define PROBE_ANSWER_MS 150000
#define PROBE_TIMEOUT_S "30"
#define PROBE_RETRIES "1"
#define STOP_TIMEOUT_MS 5000

struct daemon {
	uint64_t id;
	char *image, *digest;	/* what it serves (for restarts); digest
				 * NULL: a nydus image's RAFS tree */
	bool merged;		/* layers up to digest, merged */
	int fuse_fd;		/* protected by lock: a copy of the daemon's
				 * /dev/fuse descriptor, -1 = none: if the
				 * daemon dies, the next one takes the
				 * connection over and the mount lives on */
	bool wanted;		/* protected by lock: keep it running */
	pthread_mutex_t lock;	/* serializes start/stop of this one */
	struct daemon *next;	/* protected by snap_daemons.lock */
};

/* An fs daemon started ahead of its snapshot (`lazypull mount
 * --wait-mountpoint`): it opens the image while the pull goes on and
 * mounts once start() writes the mount point to in_fd (pid 0: free). */
#define PRESTART_SLOTS 4
#define PRESTART_MAX_S 120
struct prestart {
	char *image, *digest; /* the image's layers up to digest, merged */
	pid_t pid;
	int in_fd;
	time_t started;
};

/* A probe started ahead: its answer waits in the pipe fd (-1: free). */
#define AHEAD_SLOTS 16
struct ahead_probe {
	char *image, *digest;
	int fd;
};

struct snap_daemons {
	char *root, *mntdir, *piddir;
	char *lazypull;
	char **args;		/* extra `lazypull mount` arguments */
	size_t n_args;
	char *auth;
	char *token;		/* LAZYPULL_REGISTRY_TOKEN, or NULL */
	pthread_mutex_t lock;
	struct daemon *list;	/* protected by lock; never shrinks */
	pid_t *warmers;		/* protected by lock: probes still warming */
	size_t n_warmers;
	pthread_t monitor;
	bool have_monitor;
	pthread_cond_t cond;	/* signals stop to the monitor */
	bool stop;		/* protected by lock */
	unsigned monitor_s;
	/* probes started ahead of their layer's Prepare (a ring; protected
	 * by lock) */
	struct ahead_probe ahead[AHEAD_SLOTS];
	unsigned ahead_next;
	struct prestart pre[PRESTART_SLOTS]; /* protected by lock */
	unsigned pre_next;
};

char *snap_daemon_mountpoint(const struct snap_daemons *d, uint64_t id)
{
	return lp_xasprintf("%s/%llu", d->mntdir, (unsigned long long)id);
}

static char *pid_path(const struct snap_daemons *d, uint64_t id)
{
	return lp_xasprintf("%s/%llu.pid", d->piddir, (unsigned long long)id);
}

static char *log_path(const struct snap_daemons *d, uint64_t id)
{
	return lp_xasprintf("%s/%llu.log", d->piddir, (unsigned long long)id);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Up to size - 1 bytes of a small file (one read), NUL-terminated after
 * them; the count, or <= 0 when there is nothing. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* 0 when the file holds no pid */
static pid_t read_pid(const char *path)
{
	char buf[32];
	long v;

	if (read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	v = strtol(buf, NULL, 10);
	return v > 1 && v < (1L << 30) ? (pid_t)v : 0;
}

/*
 * Is pid a `lazypull mount` serving mp?  Its command line ends in the
 * mountpoint, which also guards against a recycled pid.  One started
 * ahead (--wait-mountpoint) ends in "-" and was told mp on its stdin:
 * then the pid file of mp, where the caller read pid, is the tie.
 */
static bool pid_serves(pid_t pid, const char *mp)
{
	char path[64], buf[8192];
	ssize_t n, i;
	bool waited = false;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	n = read_small(path, buf, sizeof(buf));
	if (n <= 0 || buf[n - 1] != '\0')
		return false;
	/* argv[0] NUL "mount" NUL ... NUL mountpoint NUL */
	i = (ssize_t)strlen(buf) + 1;
	if (i >= n || strcmp(buf + i, "mount"))
		return false;
	for (; i < n; i += (ssize_t)strlen(buf + i) + 1)
		waited |= !strcmp(buf + i, "--wait-mountpoint");
	for (i = n - 1; i > 0 && buf[i - 1] != '\0'; i--)
		;
	return !strcmp(buf + i, mp) || (waited && !strcmp(buf + i, "-"));
}

/*
 * What a live daemon serves, from its command line: 'L' a layer alone
 * (--layer-digest), 'M' the layers up to one merged (--up-to-layer-digest),
 * 'I' a whole nydus image (neither), 0 unknown.
 */
static char pid_mode(pid_t pid)
{
	char path[64], buf[8192];
	ssize_t n;
	char mode = 'I';

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	n = read_small(path, buf, sizeof(buf));
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		if (!strcmp(buf + i, "--"))
			break; /* REF and MOUNTPOINT follow */
		if (!strcmp(buf + i, "--layer-digest"))
			mode = 'L';
		else if (!strcmp(buf + i, "--up-to-layer-digest"))
			mode = 'M';
	}
	return mode;
}

/* mountinfo's octal escapes of a mountpoint */
static void escape_path(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (; *in && o + 5 < size; in++) {
		if (*in == ' ' || *in == '\t' || *in == '\n' || *in == '\\')
			o += (size_t)snprintf(out + o, size - o, "\\%03o",
					      (unsigned char)*in);
		else
			out[o++] = *in;
	}
	out[o] = '\0';
}

/*
 * The fs type of the topmost mount at mp into type ("" if none).
 * -errno if mountinfo cannot be read.
 */
static int mount_type(const char *mp, char *type, size_t size)
{
	char want[8192];
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	type[0] = '\0';
	if (!f)
		return -errno;
	escape_path(mp, want, sizeof(want));
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *t, *mpt = NULL, *fst = NULL;
		int field = 0;
		bool sep = false;

		for (t = strtok_r(line, " \n", &save); t;
		     t = strtok_r(NULL, " \n", &save), field++) {
			if (field == 4) {
				mpt = t;
			} else if (sep) {
				fst = t;
				break;
			} else if (field > 5 && !strcmp(t, "-")) {
				sep = true;
			}
		}
		if (mpt && fst && !strcmp(mpt, want))
			snprintf(type, size, "%s", fst); /* the last wins */
	}
	free(line);
	fclose(f);
	return 0;
}

static bool is_mounted(const char *mp)
{
	char type[128];

	return mount_type(mp, type, sizeof(type)) == 0 && type[0];
}

static bool alive(struct snap_daemons *d, uint64_t id, pid_t *ret_pid)
{
	_cleanup_free_ char *mp = snap_daemon_mountpoint(d, id);
	_cleanup_free_ char *pf = pid_path(d, id);
	pid_t pid = read_pid(pf);
	char type[128];

	if (ret_pid)
		*ret_pid = pid;
	if (!pid_serves(pid, mp))
		return false;
	return mount_type(mp, type, sizeof(type)) == 0 &&
	       !strcmp(type, "fuse.lazypull");
}

static bool wait_gone(pid_t pid, const char *mp, unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 20) {
		if (!pid_serves(pid, mp))
			return true;
		sleep_ms(20);
	}
	return !pid_serves(pid, mp);
}

static struct daemon *get(struct snap_daemons *d, uint64_t id, bool create);

/* Takes whatever is at mp down: the mount (lazily) and the process. */
static void teardown(struct snap_daemons *d, uint64_t id, bool lazy)
{
	_cleanup_free_ char *mp = snap_daemon_mountpoint(d, id);
	_cleanup_free_ char *pf = pid_path(d, id);
	pid_t pid = read_pid(pf);

	struct daemon *dm = get(d, id, false);

	/* unmounting ends a live daemon's loop; it removes its pid file */
	for (int i = 0; i < 8 && is_mounted(mp); i++) {
		if (umount2(mp, lazy ? MNT_DETACH : 0) == 0)
			continue;
		if (errno == EBUSY && !lazy) {
			lazy = true;
			continue;
		}
		if (errno != EINVAL && errno != ENOENT)
			lp_log(LP_LOG_WARN, "unmounting %s: %s", mp,
			       strerror(errno));
		break;
	}
	if (pid_serves(pid, mp) && !wait_gone(pid, mp, STOP_TIMEOUT_MS)) {
		kill(pid, SIGTERM);
		if (!wait_gone(pid, mp, STOP_TIMEOUT_MS)) {
			lp_log(LP_LOG_WARN, "fs daemon %ld of %s ignores "
			       "SIGTERM: killing it", (long)pid, mp);
			kill(pid, SIGKILL);
			wait_gone(pid, mp, 1000);
		}
	}
	unlink(pf);
	if (dm && dm->fuse_fd >= 0) { /* callers hold dm->lock */
		close(dm->fuse_fd);
		dm->fuse_fd = -1;
	}
}

/*
 * Keeps a copy of a serving daemon's /dev/fuse descriptor (pidfd_getfd,
 * root): while we hold it, the FUSE connection outlives the daemon, and a
 * new daemon started with it (`lazypull mount --fuse-fd`) serves the same
 * mount, so containers running on it never see ENOTCONN.
 */
static void hold_fuse(struct daemon *dm, pid_t pid)
{
	char dir[64], link[128], target[32];
	struct dirent *de;
	DIR *fds;
	int pfd;

	if (dm->fuse_fd >= 0 || pid <= 0)
		return;
	snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
	fds = opendir(dir);
	if (!fds)
		return;
	while ((de = readdir(fds))) {
		ssize_t n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(link, sizeof(link), "%s/%.20s", dir, de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, "/dev/fuse"))
			continue;
		pfd = pidfd_open(pid, 0);
		if (pfd >= 0) {
			dm->fuse_fd = pidfd_getfd(pfd, atoi(de->d_name), 0);
			close(pfd);
		}
		if (dm->fuse_fd < 0)
			lp_debug("fs daemon %ld: no copy of its FUSE "
				 "descriptor: %s (a crash of it ends its "
				 "mount)", (long)pid, strerror(errno));
		break;
	}
	closedir(fds);
}

/* The last non-empty line of the daemon's log, for an error message. */
static void log_tail(const char *path, char *out, size_t size)
{
	char buf[1024];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end;
	char *p;

	out[0] = '\0';
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > (off_t)sizeof(buf) - 1)
		lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	p = strrchr(buf, '\n');
	p = p ? p + 1 : buf;
	n = (ssize_t)strlen(p);
	if ((size_t)n >= size)
		n = (ssize_t)size - 1;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
}

#define ENV_AUTH "IMAGE_PULL_AUTH="
#define ENV_TOKEN "LAZYPULL_REGISTRY_TOKEN="

static bool secret_var(const char *v)
{
	return !strncmp(v, ENV_AUTH, strlen(ENV_AUTH)) ||
	       !strncmp(v, ENV_TOKEN, strlen(ENV_TOKEN));
}

/* The environment of a daemon or probe: ours, with the registry secrets
 * of the configuration (not on a command line: ps shows those). */
static char **daemon_env(const struct snap_daemons *d)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = lp_xcalloc(n + 3, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		if (!secret_var(environ[i]))
			env[k++] = environ[i];
	if (d->auth)
		env[k++] = lp_xasprintf("%s%s", ENV_AUTH, d->auth);
	if (d->token)
		env[k++] = lp_xasprintf("%s%s", ENV_TOKEN, d->token);
	return env;
}

/* Frees what daemon_env added. */
static void daemon_env_free(char **env)
{
	for (size_t i = 0; env[i]; i++)
		if (secret_var(env[i])) {
			explicit_bzero(env[i], strlen(env[i]));
			free(env[i]);
		}
	free(env);
}

/*
 * Starts `lazypull argv[1] ...` with no inherited descriptors but
 * stdin in_fd (or /dev/null), stdout out_fd (or the file out_path, appended) and
 * stderr the same; fuse_fd, if >= 0, as descriptor 3; default signal
 * dispositions, nothing blocked.  0 or the posix_spawn error.
 */
static int spawn_lazypull(const struct snap_daemons *d, char **argv,
			  int in_fd, int out_fd, const char *out_path,
			  const char *err_path, int fuse_fd, pid_t *ret)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, defs;
	char **env;
	int r;

	posix_spawn_file_actions_init(&fa);
	if (in_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
						 0);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, out_path,
						 O_WRONLY | O_CREAT | O_APPEND,
						 0640);
	if (err_path)
		posix_spawn_file_actions_addopen(&fa, 2, err_path,
						 O_WRONLY | O_CREAT | O_APPEND,
						 0640);
	else
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (fuse_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, fuse_fd, 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, fuse_fd >= 0 ? 4 : 3);
	posix_spawnattr_init(&sa);
	sigemptyset(&none);
	sigfillset(&defs);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &defs);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	env = daemon_env(d);
	r = posix_spawnp(ret, d->lazypull, &fa, &sa, argv, env);
	daemon_env_free(env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&sa);
	return r;
}

/* What a daemon serves, for messages. */
static const char *what(const struct daemon *dm)
{
	return dm->digest ? dm->digest : "the nydus RAFS tree";
}

/*
 * `lazypull mount` of image: layer digest, or with merged the layers up to
 * it (digest NULL: a nydus image's tree), at mp with pid file pf; with
 * takeover on descriptor 3; pf NULL: --wait-mountpoint (mp is "-").
 * NULL-terminated, strings borrowed.
 */
static char **mount_argv(const struct snap_daemons *d, const char *image,
			 const char *digest, bool merged, bool takeover,
			 const char *pf, const char *lf, const char *mp)
{
	char **argv = lp_xcalloc(d->n_args + 24, sizeof(*argv));
	size_t n = 0;

	argv[n++] = d->lazypull;
	argv[n++] = "mount";
	if (takeover) { /* the held descriptor is 3 in the child */
		argv[n++] = "--fuse-fd";
		argv[n++] = "3";
	}
	if (digest) { /* else a nydus image: its bootstrap's tree */
		argv[n++] = merged ? "--up-to-layer-digest" : "--layer-digest";
		argv[n++] = (char *)digest;
	}
	argv[n++] = "--root";
	argv[n++] = d->root;
	if (pf) {
		argv[n++] = "--pid-file";
		argv[n++] = (char *)pf;
	} else {
		argv[n++] = "--wait-mountpoint";
	}
	argv[n++] = "--log-file";
	argv[n++] = (char *)lf;
	argv[n++] = "--log-level";
	argv[n++] = "info";
	argv[n++] = "-o";
	argv[n++] = "allow_other";
	for (size_t i = 0; i < d->n_args; i++)
		argv[n++] = d->args[i];
	argv[n++] = (char *)image;
	argv[n++] = (char *)mp;
	argv[n] = NULL;
	return argv;
}

static char *prestart_log(const struct snap_daemons *d, unsigned slot)
{
	return lp_xasprintf("%s/prestart-%u.log", d->piddir, slot);
}

/* The slot of the daemon started ahead for image up to digest, or -1;
 * the caller holds d->lock. */
static int prestart_find(const struct snap_daemons *d, const char *image,
			 const char *digest)
{
	for (unsigned i = 0; i < PRESTART_SLOTS; i++)
		if (d->pre[i].pid && !strcmp(d->pre[i].image, image) &&
		    !strcmp(d->pre[i].digest, digest))
			return (int)i;
	return -1;
}

/* Frees a slot (its strings, if own; not its descriptor or process). */
static void prestart_clear(struct prestart *ps, bool own)
{
	if (own) {
		free(ps->image);
		free(ps->digest);
	}
	memset(ps, 0, sizeof(*ps));
	ps->in_fd = -1;
}

/* Lets a started-ahead daemon go (EOF on its stdin: it exits once its
 * image is open); the caller holds d->lock.  The monitor reaps it. */
static void prestart_drop(struct snap_daemons *d, unsigned slot)
{
	struct prestart *ps = &d->pre[slot];

	if (!ps->pid)
		return;
	close(ps->in_fd);
	d->warmers = lp_xrealloc(d->warmers,
				 (d->n_warmers + 1) * sizeof(*d->warmers));
	d->warmers[d->n_warmers++] = ps->pid;
	prestart_clear(ps, true);
}

/* Drops started-ahead daemons nobody took within PRESTART_MAX_S; the
 * caller holds d->lock. */
static void prestart_expire(struct snap_daemons *d)
{
	time_t now = time(NULL);

	for (unsigned i = 0; i < PRESTART_SLOTS; i++)
		if (d->pre[i].pid && now - d->pre[i].started > PRESTART_MAX_S)
			prestart_drop(d, i);
}

void snap_daemons_prestart(struct snap_daemons *d, const char *image,
			   const char *digest)
{
	_cleanup_free_ char **argv = NULL;
	_cleanup_free_ char *lf = NULL;
	struct prestart *ps;
	unsigned slot;
	pid_t pid;
	int p[2];

	pthread_mutex_lock(&d->lock);
	prestart_expire(d);
	if (prestart_find(d, image, digest) >= 0) {
		pthread_mutex_unlock(&d->lock);
		return; /* on its way already */
	}
	slot = d->pre_next++ % PRESTART_SLOTS;
	prestart_drop(d, slot);
	lf = prestart_log(d, slot);
	unlink(lf);
	argv = mount_argv(d, image, digest, true, false, NULL, lf, "-");
	if (pipe2(p, O_CLOEXEC) < 0) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (spawn_lazypull(d, argv, p[0], -1, lf, NULL, -1, &pid) != 0) {
		close(p[0]);
		close(p[1]);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	close(p[0]);
	ps = &d->pre[slot];
	ps->image = lp_xstrdup(image);
	ps->digest = lp_xstrdup(digest);
	ps->pid = pid;
	ps->in_fd = p[1];
	ps->started = time(NULL);
	pthread_mutex_unlock(&d->lock);
	lp_debug("fs daemon for %s of %s: started ahead (pid %ld)", digest,
		 image, (long)pid);
}

void snap_daemons_prestart_cancel(struct snap_daemons *d, const char *image,
				  const char *digest)
{
	int slot;

	pthread_mutex_lock(&d->lock);
	slot = prestart_find(d, image, digest);
	if (slot >= 0)
		prestart_drop(d, (unsigned)slot);
	pthread_mutex_unlock(&d->lock);
}

/*
 * The daemon started ahead for dm, told to mount at mp (pid file pf; its
 * log moves to lf): its pid, or 0 if there is none (or it died: then
 * start() runs one).
 */
static pid_t prestart_take(struct snap_daemons *d, const struct daemon *dm,
			   const char *mp, const char *pf, const char *lf)
{
	_cleanup_free_ char *line = NULL, *plf = NULL;
	struct prestart ps;
	ssize_t len;
	int slot;

	if (!dm->merged || !dm->digest || dm->fuse_fd >= 0)
		return 0;
	pthread_mutex_lock(&d->lock);
	prestart_expire(d);
	slot = prestart_find(d, dm->image, dm->digest);
	if (slot >= 0) {
		ps = d->pre[slot];
		prestart_clear(&d->pre[slot], false); /* ps owns them now */
	}
	pthread_mutex_unlock(&d->lock);
	if (slot < 0)
		return 0;
	plf = prestart_log(d, (unsigned)slot);
	free(ps.image);
	free(ps.digest);
	if (waitpid(ps.pid, NULL, WNOHANG) != 0) { /* it gave up */
		close(ps.in_fd);
		lp_log(LP_LOG_INFO, "fs daemon started ahead for %s of %s "
		       "ended; starting one now", dm->digest, dm->image);
		return 0;
	}
	rename(plf, lf);
	line = lp_xasprintf("%s\n%s\n", mp, pf);
	len = (ssize_t)strlen(line);
	if (write(ps.in_fd, line, (size_t)len) != len) {
		close(ps.in_fd);
		kill(ps.pid, SIGTERM);
		waitpid(ps.pid, NULL, 0);
		return 0;
	}
	close(ps.in_fd);
	lp_debug("fs daemon for %s of %s: the one started ahead (pid %ld) "
		 "mounts it", dm->digest, dm->image, (long)ps.pid);
	return ps.pid;
}

/* Runs `lazypull mount` for id and waits until it serves (or failed). */
static int start(struct snap_daemons *d, struct daemon *dm, bool takeover,
		 struct lp_err *err)
{
	_cleanup_free_ char *mp = snap_daemon_mountpoint(d, dm->id);
	_cleanup_free_ char *pf = pid_path(d, dm->id);
	_cleanup_free_ char *lf = log_path(d, dm->id);
	_cleanup_free_ char **argv = NULL;
	pid_t pid;
	int r, st = 0;
	unsigned waited = 0;

	takeover = takeover && dm->fuse_fd >= 0 && is_mounted(mp);
	if (!takeover) {
		teardown(d, dm->id, true);
		if (mkdir(mp, 0755) < 0 && errno != EEXIST)
			return lp_err_set(err, -EIO, "mkdir %s: %s", mp,
					  strerror(errno));
	} else {
		unlink(pf); /* the dead one's */
	}

	pid = prestart_take(d, dm, mp, pf, lf);
	if (pid <= 0) {
		argv = mount_argv(d, dm->image, dm->digest, dm->merged,
				  takeover, pf, lf, mp);
		/* stdout/stderr go to the log until it detaches */
		r = spawn_lazypull(d, argv, -1, -1, lf, NULL,
				   takeover ? dm->fuse_fd : -1, &pid);
		if (r)
			return lp_err_set(err, -EIO, "starting %s: %s",
					  d->lazypull, strerror(r));
	}

	/* it forks the daemon and exits 0 once the mount is up */
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return lp_err_set(err, -EIO, "waiting for %s: %s",
					  d->lazypull, strerror(errno));
		if (waited >= START_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			teardown(d, dm->id, true);
			return lp_err_set(err, -ETIMEDOUT, "fs daemon for "
					  "%s of %s: not serving after "
					  "%u s", what(dm), dm->image,
					  START_TIMEOUT_MS / 1000);
		}
		sleep_ms(waited < 200 ? 5 : 20);
		waited += waited < 200 ? 5 : 20;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char tail[200];

		log_tail(lf, tail, sizeof(tail));
		return lp_err_set(err, -EIO, "fs daemon for %s of %s "
				  "failed: %s", what(dm), dm->image,
				  tail[0] ? tail : "no message");
	}
	if (!alive(d, dm->id, &pid)) {
		teardown(d, dm->id, true);
		return lp_err_set(err, -EIO, "fs daemon for %s of %s "
				  "reported success, but %s is not served",
				  what(dm), dm->image, mp);
	}
	lp_log(LP_LOG_INFO, "fs daemon %ld serves %s of %s at %s%s",
	       (long)pid, what(dm), dm->image, mp,
	       takeover ? " (took the mount over)" : "");
	hold_fuse(dm, pid);
	return 0;
}

/* ---- probes --------------------------------------------------------------- */

/* Reaps warming probes that ended; with kill_them, ends them first. */
static void reap_warmers(struct snap_daemons *d, bool kill_them)
{
	size_t k = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n_warmers; i++) {
		pid_t pid = d->warmers[i];

		if (kill_them) {
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
		} else if (waitpid(pid, NULL, WNOHANG) == 0) {
			d->warmers[k++] = pid; /* still warming */
		}
	}
	d->n_warmers = k;
	pthread_mutex_unlock(&d->lock);
}

/* Reads the probe's answer (up to EOF of its stdout) within the bound. */
static int read_answer(int fd, char *buf, size_t size)
{
	struct timespec t0, t;
	size_t n = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left;
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = PROBE_ANSWER_MS -
		       ((t.tv_sec - t0.tv_sec) * 1000 +
			(t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == size - 1)
			break;
	}
	buf[n] = '\0';
	return 0;
}

/* `lazypull probe ...` for q, NULL-terminated (strings borrowed). */
static char **probe_argv(const struct snap_daemons *d,
			 const struct snap_probe *q)
{
	char **argv = lp_xcalloc(d->n_args + 24, sizeof(*argv));
	size_t n = 0;

	argv[n++] = d->lazypull;
	argv[n++] = "probe";
	argv[n++] = "--root";
	argv[n++] = d->root;
	argv[n++] = "--log-level";
	argv[n++] = "info";
	/* Prepare's bounds: the configuration's (in args) win */
	argv[n++] = "--timeout";
	argv[n++] = PROBE_TIMEOUT_S;
	argv[n++] = "--retries";
	argv[n++] = PROBE_RETRIES;
	argv[n++] = "--layer-digest";
	argv[n++] = (char *)q->digest;
	if (q->toc_digest) {
		argv[n++] = "--toc-digest";
		argv[n++] = (char *)q->toc_digest;
	}
	if (q->no_toc)
		argv[n++] = "--no-toc";
	if (q->tell_toc)
		argv[n++] = "--tell-toc-digest";
	if (q->resolve)
		argv[n++] = "--resolve";
	if (q->warm) {
		argv[n++] = "--warm";
		if (q->trace) {
			argv[n++] = "--trace";
			argv[n++] = (char *)q->trace;
		}
	}
	for (size_t i = 0; i < d->n_args; i++)
		argv[n++] = d->args[i];
	argv[n++] = (char *)q->image;
	argv[n] = NULL;
	return argv;
}

/* A probe that goes on after answering: the monitor reaps it. */
static void add_warmer(struct snap_daemons *d, pid_t pid)
{
	pthread_mutex_lock(&d->lock);
	d->warmers = lp_xrealloc(d->warmers,
				 (d->n_warmers + 1) * sizeof(*d->warmers));
	d->warmers[d->n_warmers++] = pid;
	pthread_mutex_unlock(&d->lock);
}

static void ahead_clear(struct ahead_probe *a)
{
	if (a->fd >= 0)
		close(a->fd);
	free(a->image);
	free(a->digest);
	a->image = a->digest = NULL;
	a->fd = -1;
}

/* The answer pipe of the probe started ahead for q's layer, or -1. */
static int ahead_take(struct snap_daemons *d, const struct snap_probe *q)
{
	int fd = -1;

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < AHEAD_SLOTS && fd < 0; i++) {
		struct ahead_probe *a = &d->ahead[i];

		if (a->fd >= 0 && !strcmp(a->digest, q->digest) &&
		    !strcmp(a->image, q->image)) {
			fd = a->fd;
			a->fd = -1;
			ahead_clear(a);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return fd;
}

/*
 * A probe's "format NAME[ TOC]" line: NAME (ans is cut up in place) and
 * the TOC digest or NULL in *toc; NULL if ans is no such line.
 */
static const char *format_answer(char *ans, char **toc)
{
	char *nl = strchr(ans, '\n'), *sp;

	if (nl)
		*nl = '\0';
	*toc = NULL;
	if (strncmp(ans, "format ", 7) || !ans[7])
		return NULL;
	sp = strchr(ans + 7, ' ');
	if (sp) {
		*sp = '\0';
		*toc = sp + 1;
	}
	return ans + 7;
}

/*
 * Takes the answer of the probe started ahead for q's layer: 1 with the
 * format, 0 for none, -errno with a message (a TOC that is not the one
 * the label names); 2 if there is no usable answer (no such probe, or it
 * failed: a probe of Prepare's own tries again).
 */
static int ahead_answer(struct snap_daemons *d, const struct snap_probe *q,
			char *fmt, size_t fmt_size, struct lp_err *err)
{
	char ans[1024], *toc;
	const char *name;
	int fd = ahead_take(d, q), r;

	if (fd < 0)
		return 2;
	r = read_answer(fd, ans, sizeof(ans));
	close(fd);
	name = r < 0 ? NULL : format_answer(ans, &toc);
	if (!name)
		return 2;
	lp_debug("layer %s of %s: answered by the probe started ahead: %s%s%s",
		 q->digest, q->image, name, toc ? ", TOC " : "",
		 toc ? toc : "");
	if (!strcmp(name, "none"))
		return 0;
	if (q->toc_digest && toc && strcmp(toc, q->toc_digest) != 0)
		return lp_err_set(err, -EBADMSG, "toc: digest %.80s does not "
				  "match the expected %.80s", toc,
				  q->toc_digest);
	snprintf(fmt, fmt_size, "%s", name);
	return 1;
}

int snap_daemons_probe(struct snap_daemons *d, const struct snap_probe *q,
		       char *fmt, size_t fmt_size, struct lp_err *err)
{
	_cleanup_free_ char *logf = lp_xasprintf("%s/probes.log", d->piddir);
	_cleanup_free_ char **argv = NULL;
	char ans[1024], *toc;
	const char *name;
	pid_t pid, w;
	int p[2], r, st = 0;

	reap_warmers(d, false);
	r = ahead_answer(d, q, fmt, fmt_size, err);
	if (r != 2)
		return r;
	argv = probe_argv(d, q);
	if (pipe2(p, O_CLOEXEC) < 0)
		return lp_err_set(err, -EIO, "pipe: %s", strerror(errno));
	r = spawn_lazypull(d, argv, -1, p[1], NULL, logf, -1, &pid);
	close(p[1]);
	if (r) {
		close(p[0]);
		return lp_err_set(err, -EIO, "starting %s probe: %s",
				  d->lazypull, strerror(r));
	}
	r = read_answer(p[0], ans, sizeof(ans));
	close(p[0]);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return lp_err_set(err, r, "lazypull probe of layer %s: no "
				  "answer in %u s", q->digest,
				  PROBE_ANSWER_MS / 1000);
	}
	/* answered: it exits now, or warms the cache for a while */
	do
		w = waitpid(pid, &st, WNOHANG);
	while (w < 0 && errno == EINTR);
	if (w == 0)
		add_warmer(d, pid);
	name = format_answer(ans, &toc);
	if (name) {
		if (!strcmp(name, "none"))
			return 0;
		snprintf(fmt, fmt_size, "%s", name);
		return 1;
	}
	if (!strncmp(ans, "error ", 6))
		return lp_err_set(err, -EIO, "%s", ans + 6);
	return lp_err_set(err, -EIO, "lazypull probe of layer %s: no answer "
			  "(%s %d; see %s)", q->digest,
			  w == pid && WIFSIGNALED(st) ? "signal" : "exit",
			  w == pid && WIFSIGNALED(st) ? WTERMSIG(st)
						      : WEXITSTATUS(st),
			  logf);
}

void snap_daemons_probe_ahead(struct snap_daemons *d,
			      const struct snap_probe *q)
{
	_cleanup_free_ char *logf = lp_xasprintf("%s/probes.log", d->piddir);
	struct snap_probe aq = *q;
	_cleanup_free_ char **argv = NULL;
	struct ahead_probe *a;
	pid_t pid;
	int p[2];

	aq.toc_digest = NULL; /* checked when its Prepare takes the answer */
	aq.tell_toc = true;
	argv = probe_argv(d, &aq);
	reap_warmers(d, false);
	/* only a head start: a failure is the business of its Prepare */
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	if (spawn_lazypull(d, argv, -1, p[1], NULL, logf, -1, &pid) != 0) {
		close(p[0]);
		close(p[1]);
		return;
	}
	close(p[1]);
	add_warmer(d, pid);
	pthread_mutex_lock(&d->lock);
	a = &d->ahead[d->ahead_next++ % AHEAD_SLOTS];
	ahead_clear(a); /* one never taken: its layer was here already */
	a->image = lp_xstrdup(q->image);
	a->digest = lp_xstrdup(q->digest);
	a->fd = p[0];
	pthread_mutex_unlock(&d->lock);
}

static struct daemon *get(struct snap_daemons *d, uint64_t id, bool create)
{
	struct daemon *dm;

	pthread_mutex_lock(&d->lock);
	for (dm = d->list; dm; dm = dm->next)
		if (dm->id == id)
			break;
	if (!dm && create) {
		dm = lp_xcalloc(1, sizeof(*dm));
		dm->id = id;
		dm->fuse_fd = -1;
		pthread_mutex_init(&dm->lock, NULL);
		dm->next = d->list;
		d->list = dm;
	}
	pthread_mutex_unlock(&d->lock);
	return dm;
}

int snap_daemon_ensure(struct snap_daemons *d, uint64_t id, const char *image,
		       const char *digest, bool merged, struct lp_err *err)
{
	struct daemon *dm = get(d, id, true);
	int r = 0;

	pthread_mutex_lock(&dm->lock);
	dm->merged = merged && digest;
	if (!dm->image || strcmp(dm->image, image)) {
		free(dm->image);
		dm->image = lp_xstrdup(image);
	}
	if (!dm->digest || !digest || strcmp(dm->digest, digest)) {
		free(dm->digest);
		dm->digest = digest ? lp_xstrdup(digest) : NULL;
	}
	pid_t pid = 0;
	bool up = alive(d, id, &pid);
	char want = !dm->digest ? 'I' : dm->merged ? 'M' : 'L', have;

	/* a daemon left by a run with other settings (--merged-mounts)
	 * serves another tree: never reuse it */
	if (up && (have = pid_mode(pid)) && have != want) {
		lp_log(LP_LOG_WARN, "fs daemon %ld of snapshot %llu serves %s, "
		       "this snapshotter wants %s: restarting it", (long)pid,
		       (unsigned long long)id,
		       have == 'M' ? "merged layers" : have == 'L'
				   ? "one layer" : "an image",
		       want == 'M' ? "merged layers" : want == 'L'
				   ? "one layer" : "an image");
		teardown(d, id, true);
		up = false;
	}
	if (!up)
		r = start(d, dm, false, err);
	else
		hold_fuse(dm, pid);
	dm->wanted = r == 0;
	pthread_mutex_unlock(&dm->lock);
	return r;
}

void snap_daemon_stop(struct snap_daemons *d, uint64_t id)
{
	struct daemon *dm = get(d, id, true);
	_cleanup_free_ char *mp = snap_daemon_mountpoint(d, id);
	_cleanup_free_ char *lf = log_path(d, id);

	pthread_mutex_lock(&dm->lock);
	dm->wanted = false;
	teardown(d, id, false);
	if (rmdir(mp) < 0 && errno != ENOENT)
		lp_log(LP_LOG_WARN, "removing %s: %s", mp, strerror(errno));
	unlink(lf);
	pthread_mutex_unlock(&dm->lock);
	lp_debug("fs daemon of snapshot %llu stopped", (unsigned long long)id);
}

int snap_daemons_list(const struct snap_daemons *d, uint64_t **ret,
		      size_t *ret_n)
{
	DIR *dir = opendir(d->piddir);
	struct dirent *de;
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;

	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		char *end;
		unsigned long long v;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		errno = 0;
		v = strtoull(de->d_name, &end, 10);
		if (errno || strcmp(end, ".pid"))
			continue;
		lp_grow((void **)&ids, sizeof(*ids), &cap, n + 1);
		ids[n++] = v;
	}
	closedir(dir);
	*ret = ids;
	*ret_n = n;
	return 0;
}

/* Restarts wanted daemons that died, every monitor_s seconds. */
static void *monitor(void *arg)
{
	struct snap_daemons *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += d->monitor_s;
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		if (d->stop)
			break;
		prestart_expire(d);
		pthread_mutex_unlock(&d->lock);
		reap_warmers(d, false);
		pthread_mutex_lock(&d->lock);
		for (struct daemon *dm = d->list; dm; dm = dm->next) {
			struct lp_err err = { 0 };
			pid_t pid;

			/* busy ones are being started or stopped */
			if (pthread_mutex_trylock(&dm->lock))
				continue;
			pthread_mutex_unlock(&d->lock);
			if (dm->wanted && !alive(d, dm->id, &pid)) {
				lp_log(LP_LOG_WARN, "fs daemon %ld of snapshot "
				       "%llu is gone: restarting it",
				       (long)pid, (unsigned long long)dm->id);
				/* the mount lives on if we hold its FUSE
				 * connection: a new daemon takes it over */
				if (start(d, dm, true, &err) < 0) {
					lp_log(LP_LOG_WARN, "%s; mounting anew",
					       err.msg);
					lp_err_clear(&err);
					if (start(d, dm, false, &err) < 0)
						lp_log(LP_LOG_ERROR, "%s",
						       err.msg);
				}
			}
			pthread_mutex_unlock(&dm->lock);
			pthread_mutex_lock(&d->lock);
			if (d->stop)
				break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = lp_xstrdup(path);

	for (char *q = p + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(p, 0711) < 0 && errno != EEXIST)
			return -errno;
		*q = '/';
	}
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int snap_daemons_new(const struct snap_daemons_opts *o,
		     struct snap_daemons **ret, struct lp_err *err)
{
	struct snap_daemons *d = lp_xcalloc(1, sizeof(*d));

	for (unsigned i = 0; i < AHEAD_SLOTS; i++)
		d->ahead[i].fd = -1;
	for (unsigned i = 0; i < PRESTART_SLOTS; i++)
		d->pre[i].in_fd = -1;
	pthread_condattr_t ca;
	int r;

	d->root = lp_xstrdup(o->root);
	d->mntdir = lp_xasprintf("%s/mnt", o->root);
	d->piddir = lp_xasprintf("%s/daemons", o->root);
	d->lazypull = lp_xstrdup(o->lazypull);
	d->auth = o->auth ? lp_xstrdup(o->auth) : NULL;
	d->token = o->token ? lp_xstrdup(o->token) : NULL;
	for (size_t i = 0; o->args && o->args[i]; i++) {
		d->args = lp_xrealloc(d->args, (i + 1) * sizeof(*d->args));
		d->args[i] = lp_xstrdup(o->args[i]);
		d->n_args = i + 1;
	}
	d->monitor_s = o->monitor_s;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = mkdir_p(d->mntdir, 0755)) < 0 ||
	    (r = mkdir_p(d->piddir, 0700)) < 0) {
		snap_daemons_free(d);
		return lp_err_set(err, -EIO, "creating %s/{mnt,daemons}: %s",
				  o->root, strerror(-r));
	}
	*ret = d;
	return 0;
}

void snap_daemons_start_monitor(struct snap_daemons *d)
{
	if (!d->monitor_s || d->have_monitor)
		return;
	if (pthread_create(&d->monitor, NULL, monitor, d) == 0)
		d->have_monitor = true;
	else
		lp_log(LP_LOG_WARN, "no fs daemon monitor: %s",
		       strerror(errno));
}

void snap_daemons_free(struct snap_daemons *d)
{
	if (!d)
		return;
	if (d->have_monitor) {
		pthread_mutex_lock(&d->lock);
		d->stop = true;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->monitor, NULL);
	}
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < PRESTART_SLOTS; i++)
		prestart_drop(d, i);
	pthread_mutex_unlock(&d->lock);
	reap_warmers(d, true);
	free(d->warmers);
	for (unsigned i = 0; i < AHEAD_SLOTS; i++)
		ahead_clear(&d->ahead[i]);
	while (d->list) {
		struct daemon *dm = d->list;

		d->list = dm->next;
		pthread_mutex_destroy(&dm->lock);
		if (dm->fuse_fd >= 0)
			close(dm->fuse_fd);
		free(dm->image);
		free(dm->digest);
		free(dm);
	}
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	for (size_t i = 0; i < d->n_args; i++)
		free(d->args[i]);
	free(d->args);
	if (d->auth)
		explicit_bzero(d->auth, strlen(d->auth));
	free(d->auth);
	if (d->token)
		explicit_bzero(d->token, strlen(d->token));
	free(d->token);
	free(d->lazypull);
	free(d->root);
	free(d->mntdir);
	free(d->piddir);
	free(d);
}
