/* SPDX-License-Identifier: Apache-2.0 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"
#include "common/common.h"

/* seconds of work before the first frame: short work prints nothing */
#define PROGRESS_DELAY 0.5
/* seconds between frames */
#define PROGRESS_INTERVAL 0.25
/* clears the line: back to its start, erase to its end */
#define CLEAR "\r\033[K"

enum cli_progress_mode cli_progress_mode = CLI_PROGRESS_AUTO;

struct cli_progress {
	/* all protected by meter.lock */
	struct cli_progress *next;
	char what[192];
	double start;
	uint64_t done, total;
	uint64_t idone, itotal;
	const char *iunit;
};

static struct {
	pthread_mutex_t lock;
	struct cli_progress *tasks; /* oldest first */
	uint64_t ended_done;	    /* bytes of ended tasks (for the rate) */
	double rate_t;		    /* when rate was last sampled */
	uint64_t rate_done;	    /* bytes done at rate_t */
	double rate;		    /* bytes per second, smoothed */
	double last_draw;
	bool drawn; /* a frame was drawn since the tasks began */
	bool shown; /* a frame is on the screen now */
} meter = { .lock = PTHREAD_MUTEX_INITIALIZER };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool cli_progress_enabled(void)
{
	const char *term;

	switch (cli_progress_mode) {
	case CLI_PROGRESS_ON:
		return true;
	case CLI_PROGRESS_OFF:
		return false;
	default:
		term = getenv("TERM");
		return isatty(STDERR_FILENO) &&
		       !(term && !strcmp(term, "dumb"));
	}
}

static void put(const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(STDERR_FILENO, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a meter is not worth an error */
		s += n;
		len -= (size_t)n;
	}
}

/* Caller holds meter.lock. */
static void clear_locked(void)
{
	if (meter.shown)
		put(CLEAR, strlen(CLEAR));
	meter.shown = false;
}

/* ---- formatting ------------------------------------------------------- */

static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };

static unsigned unit_of(double v)
{
	unsigned u = 0;

	while (v >= 1000 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1000;
		u++;
	}
	return u;
}

static double scale(double v, unsigned u)
{
	while (u--)
		v /= 1000;
	return v;
}

/* "12.3/50.1 MB" (both in the unit of the larger), or "12.3 MB" */
static void fmt_bytes(char *buf, size_t size, uint64_t done, uint64_t total)
{
	unsigned u = unit_of((double)(total > done ? total : done));

	if (!u && total)
		snprintf(buf, size, "%llu/%llu B", (unsigned long long)done,
			 (unsigned long long)total);
	else if (!u)
		snprintf(buf, size, "%llu B", (unsigned long long)done);
	else if (total)
		snprintf(buf, size, "%.1f/%.1f %s", scale((double)done, u),
			 scale((double)total, u), units[u]);
	else
		snprintf(buf, size, "%.1f %s", scale((double)done, u),
			 units[u]);
}

static void fmt_time(char *buf, size_t size, double s)
{
	unsigned long t = s < 0 ? 0 : s > 359999 ? 359999 : (unsigned long)s;

	if (t >= 3600)
		snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60,
			 t % 60);
	else
		snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

/* Columns of UTF-8 text: bytes that do not continue a character. */
static size_t columns(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* The byte length of the longest prefix of s within cols columns. */
static size_t cut(const char *s, size_t cols)
{
	size_t i = 0, n = 0;

	while (s[i]) {
		if (((unsigned char)s[i] & 0xc0) != 0x80 && n++ == cols)
			break;
		i++;
	}
	return i;
}

static unsigned term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Draws a frame when due (or always when force).  Holds meter.lock. */
static void draw_locked(bool force)
{
	const struct cli_progress *head = meter.tasks;
	uint64_t done = 0, total = 0, cum;
	bool total_known = true;
	unsigned n = 0, width;
	char label[256], tail[160], b[64], r[32], eta[32] = "";
	char line[512];
	size_t lab_len, tail_cols, keep;
	double t = now();

	if (!head)
		return;
	if (!force) {
		if (t - head->start < PROGRESS_DELAY)
			return;
		if (meter.shown && t - meter.last_draw < PROGRESS_INTERVAL)
			return;
	}
	for (const struct cli_progress *p = head; p; p = p->next) {
		done += p->done;
		total += p->total;
		if (!p->total)
			total_known = false;
		n++;
	}
	cum = meter.ended_done + done;
	if (t - meter.rate_t >= PROGRESS_INTERVAL && cum >= meter.rate_done) {
		double inst = (double)(cum - meter.rate_done) /
			      (t - meter.rate_t);

		meter.rate = meter.rate > 0 ? 0.6 * meter.rate + 0.4 * inst
					    : inst;
		meter.rate_t = t;
		meter.rate_done = cum;
	}

	fmt_bytes(b, sizeof(b), done, total_known ? total : 0);
	fmt_bytes(r, sizeof(r), (uint64_t)meter.rate, 0);
	if (total_known && total >= done && meter.rate > 0) {
		eta[0] = ' ';
		fmt_time(eta + 1, sizeof(eta) - 1,
			 (double)(total - done) / meter.rate);
	} else if (head->iunit && head->idone && head->itotal >= head->idone) {
		eta[0] = ' ';
		fmt_time(eta + 1, sizeof(eta) - 1,
			 (t - head->start) *
				 (double)(head->itotal - head->idone) /
				 (double)head->idone);
	}
	if (head->iunit)
		snprintf(tail, sizeof(tail), " %s %llu/%llu %s %s/s%s", b,
			 (unsigned long long)head->idone,
			 (unsigned long long)head->itotal, head->iunit, r, eta);
	else
		snprintf(tail, sizeof(tail), " %s %s/s%s", b, r, eta);
	if (n > 1)
		snprintf(label, sizeof(label), "%s (+%u more)", head->what,
			 n - 1);
	else
		snprintf(label, sizeof(label), "%s", head->what);

	/* keep the line one column short of the width: no wrapping */
	width = term_width() - 1;
	tail_cols = columns(tail, strlen(tail));
	lab_len = strlen(label);
	if (tail_cols + columns(label, lab_len) > width) {
		keep = tail_cols + 1 < width ? width - tail_cols - 1 : 0;
		lab_len = cut(label, keep);
		snprintf(line, sizeof(line), "\r%.*s…%s\033[K", (int)lab_len,
			 label, tail);
	} else {
		snprintf(line, sizeof(line), "\r%s%s\033[K", label, tail);
	}
	put(line, strlen(line));
	meter.shown = meter.drawn = true;
	meter.last_draw = t;
}

/* ---- log lines while the meter is up ---------------------------------- */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* lp_log's own format, after clearing the meter off the line */
static void log_sink(enum lp_log_level lvl, const char *mod, const char *msg,
		     void *data)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[32];

	(void)data;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&meter.lock);
	clear_locked();
	fprintf(stderr, "%s.%03ldZ %s %s: %s\n", tbuf, ts.tv_nsec / 1000000,
		(unsigned)lvl < ARRAY_SIZE(level_names) ? level_names[lvl]
							: "?",
		mod, msg);
	pthread_mutex_unlock(&meter.lock);
}

/* ---- tasks ------------------------------------------------------------ */

struct cli_progress *cli_progress_begin(const char *what, uint64_t total)
{
	struct cli_progress *p, **pp;

	if (!cli_progress_enabled())
		return NULL;
	p = lp_xcalloc(1, sizeof(*p));
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->total = total;
	p->start = now();
	pthread_mutex_lock(&meter.lock);
	if (!meter.tasks) {
		meter.rate_t = p->start;
		meter.rate_done = meter.ended_done;
		meter.rate = 0;
		meter.drawn = false;
		lp_log_set_sink(log_sink, NULL);
	}
	for (pp = &meter.tasks; *pp; pp = &(*pp)->next)
		;
	*pp = p;
	pthread_mutex_unlock(&meter.lock);
	return p;
}

void cli_progress_update(struct cli_progress *p, uint64_t done,
			 uint64_t total)
{
	if (!p)
		return;
	pthread_mutex_lock(&meter.lock);
	p->done = done;
	if (total)
		p->total = total;
	draw_locked(false);
	pthread_mutex_unlock(&meter.lock);
}

void cli_progress_items(struct cli_progress *p, uint64_t done, uint64_t total,
			const char *unit)
{
	if (!p)
		return;
	pthread_mutex_lock(&meter.lock);
	p->idone = done;
	p->itotal = total;
	p->iunit = unit;
	draw_locked(false);
	pthread_mutex_unlock(&meter.lock);
}

void cli_progress_end(struct cli_progress *p)
{
	struct cli_progress **pp;

	if (!p)
		return;
	pthread_mutex_lock(&meter.lock);
	if (meter.tasks == p && !p->next) {
		/* the last one: show where it ended, then clear the line */
		if (meter.drawn)
			draw_locked(true);
		clear_locked();
		lp_log_set_sink(NULL, NULL);
	}
	for (pp = &meter.tasks; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	meter.ended_done += p->done;
	pthread_mutex_unlock(&meter.lock);
	free(p);
}

void cli_progress_hide(void)
{
	pthread_mutex_lock(&meter.lock);
	clear_locked();
	pthread_mutex_unlock(&meter.lock);
}

/* ---- polled tasks ----------------------------------------------------- */

struct cli_progress_poll {
	pthread_t th;
	struct cli_progress *p;
	cli_progress_poll_fn fn;
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop; /* protected by lock */
};

static void *poll_thread(void *arg)
{
	struct cli_progress_poll *pp = arg;
	struct timespec ts;
	bool stop = false;

	while (!stop && pp->fn(pp->arg, pp->p)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(PROGRESS_INTERVAL * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&pp->lock);
		while (!pp->stop &&
		       pthread_cond_timedwait(&pp->cond, &pp->lock, &ts) == 0)
			;
		stop = pp->stop;
		pthread_mutex_unlock(&pp->lock);
	}
	cli_progress_end(pp->p);
	pp->p = NULL;
	return NULL;
}

struct cli_progress_poll *cli_progress_poll_start(const char *what,
						  cli_progress_poll_fn fn,
						  void *arg)
{
	struct cli_progress_poll *pp;
	pthread_condattr_t ca;

	if (!cli_progress_enabled())
		return NULL;
	pp = lp_xcalloc(1, sizeof(*pp));
	pp->fn = fn;
	pp->arg = arg;
	pthread_mutex_init(&pp->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pp->cond, &ca);
	pthread_condattr_destroy(&ca);
	pp->p = cli_progress_begin(what, 0);
	if (!pp->p || pthread_create(&pp->th, NULL, poll_thread, pp)) {
		cli_progress_end(pp->p);
		pthread_cond_destroy(&pp->cond);
		pthread_mutex_destroy(&pp->lock);
		free(pp);
		return NULL;
	}
	return pp;
}

void cli_progress_poll_stop(struct cli_progress_poll *pp)
{
	if (!pp)
		return;
	pthread_mutex_lock(&pp->lock);
	pp->stop = true;
	pthread_cond_signal(&pp->cond);
	pthread_mutex_unlock(&pp->lock);
	pthread_join(pp->th, NULL);
	pthread_cond_destroy(&pp->cond);
	pthread_mutex_destroy(&pp->lock);
	free(pp);
}
