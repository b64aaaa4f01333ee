/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazypull-snapshotter (also installed as containerd-nydus-grpc): the
 * containerd proxy snapshotter daemon.
 */
#define LP_MODNAME "snapshotter"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshotter/snapshotter.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* logrus-like text lines, to stdout or <log dir>/lazypull-snapshotter.log */
static void log_sink(enum lp_log_level lvl, const char *mod, const char *msg,
		     void *data)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	FILE *f = data;
	struct timespec ts;
	struct tm tm;
	char tbuf[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&lock);
	fprintf(f, "time=\"%s.%06ldZ\" level=%s module=%s msg=\"%s\"\n", tbuf,
		ts.tv_nsec / 1000, level_names[lvl], mod, msg);
	fflush(f);
	pthread_mutex_unlock(&lock);
}

static int mkdir_p(const char *path)
{
	char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		mkdir(p, 0711);
		*s = '/';
	}
	free(p);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup_log(const struct snap_config *c, FILE **ret)
{
	char path[4096];
	FILE *f;
	int r;

	lp_log_max = c->log_level;
	if (c->log_to_stdout) {
		lp_log_set_sink(log_sink, stdout);
		*ret = NULL;
		return 0;
	}
	r = mkdir_p(c->log_dir);
	if (r < 0) {
		fprintf(stderr, "lazypull-snapshotter: log directory %s: %s\n",
			c->log_dir, strerror(-r));
		return r;
	}
	snprintf(path, sizeof(path), "%s/lazypull-snapshotter.log",
		 c->log_dir);
	f = fopen(path, "ae");
	if (!f) {
		fprintf(stderr, "lazypull-snapshotter: %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	lp_log_set_sink(log_sink, f);
	*ret = f;
	return 0;
}

int main(int argc, char **argv)
{
	struct snap_config cfg;
	struct snap_store *store = NULL;
	struct snap_server *srv = NULL;
	struct snap_remote *remote = NULL;
	struct lp_err err = { 0 };
	FILE *logf = NULL;
	sigset_t mask;
	int r;

#ifdef __GLIBC__
	/*
	 * Prepare probes parse whole TOCs (MBs of JSON) on worker threads and
	 * free them: few arenas and a fixed mmap threshold keep that memory
	 * from staying with the process (remote.c also trims after probes).
	 */
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
	mallopt(M_ARENA_MAX, 2);
#endif
	r = snap_config_load(&cfg, argc, argv, &err);
	if (r != 0) {
		if (r < 0)
			fprintf(stderr, "lazypull-snapshotter: %s\n", err.msg);
		snap_config_release(&cfg);
		return r < 0 ? 1 : 0;
	}
	if (setup_log(&cfg, &logf) < 0) {
		snap_config_release(&cfg);
		return 1;
	}
	lp_log(LP_LOG_INFO, "lazypull-snapshotter %s starting: root=%s "
	       "address=%s stargz=%s zran=%s daemon-mode=%s", LP_VERSION,
	       cfg.root, cfg.address, cfg.enable_stargz ? "on" : "off",
	       cfg.enable_zran ? "on" : "off",
	       cfg.daemon_mode == SNAP_DAEMON_SHARED ? "shared" : "dedicated");
	for (size_t i = 0; i < cfg.n_notes; i++)
		lp_log(LP_LOG_INFO, "%s", cfg.notes[i]);
	if (cfg.backend.type && cfg.backend.type[0])
		lp_log(LP_LOG_INFO, "nydusd config %s: backend %s, cache %s",
		       cfg.nydusd_config, cfg.backend.type, cfg.cache_dir);

	/* signals go to the server's signalfd, in every thread */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = snap_store_open(cfg.root, &store, &err);
	if (r == 0)
		r = snap_remote_new(&cfg, store, &remote, &err);
	if (r == 0) {
		struct snap_server_opts o = {
			.address = cfg.address,
			.fast_threads = 2,
			.slow_threads = cfg.threads,
			.remote = &snap_remote_ops,
			.remote_ctx = remote,
		};

		r = snap_server_new(&o, store, &srv, &err);
	}
	if (r == 0)
		r = snap_server_run(srv, &err);
	if (r < 0) {
		lp_log(LP_LOG_ERROR, "%s", err.msg);
		if (logf)
			fprintf(stderr, "lazypull-snapshotter: %s\n", err.msg);
	}
	snap_server_free(srv);
	snap_remote_free(remote);
	snap_store_close(store);
	if (r == 0)
		lp_log(LP_LOG_INFO, "stopped");
	lp_log_set_sink(NULL, NULL);
	if (logf)
		fclose(logf);
	snap_config_release(&cfg);
	return r < 0 ? 1 : 0;
}
