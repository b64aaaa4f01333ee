/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli/progress: one progress line on stderr for long work, e.g.
 *
 *	indexing layer sha256:0123456789ab… 12.3/50.1 MB 11.2 MB/s 0:03
 *
 * fed with byte counts by whoever moves the bytes.  Nothing is drawn for
 * work that ends within PROGRESS_DELAY, nor when stderr is not a terminal
 * (unless --progress); the line redraws at most four times a second and is
 * cleared when the last task ends.  Several tasks at once (layers opened
 * in parallel) share the line: their sums, labelled by the oldest one.
 *
 *	struct cli_progress *p = cli_progress_begin("reading /x", size);
 *	while (...)
 *		cli_progress_update(p, done, 0);
 *	cli_progress_end(p);
 *
 * Every function accepts NULL (the meter is off) and is thread-safe.
 */
#ifndef LP_CLI_PROGRESS_H
#define LP_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

enum cli_progress_mode {
	CLI_PROGRESS_AUTO, /* when stderr is a terminal */
	CLI_PROGRESS_ON,   /* --progress */
	CLI_PROGRESS_OFF,  /* --no-progress, -q */
};

/* Set by the option parsers; read when a task begins. */
extern enum cli_progress_mode cli_progress_mode;

/* Would cli_progress_begin() start a meter now? */
bool cli_progress_enabled(void);

struct cli_progress;

/*
 * Starts a task of total bytes (0 = unknown yet).  what (copied) says what
 * it does.  NULL when the meter is off.
 */
struct cli_progress *cli_progress_begin(const char *what, uint64_t total);
/* Bytes done so far (not a delta); total 0 keeps the current total. */
void cli_progress_update(struct cli_progress *p, uint64_t done,
			 uint64_t total);
/* A second count shown beside the bytes, e.g. 120/4000 chunks; it gives
 * the ETA when the byte total is unknown.  unit must outlive the task. */
void cli_progress_items(struct cli_progress *p, uint64_t done, uint64_t total,
			const char *unit);
/* Ends the task; the last one draws a final frame (if anything was drawn)
 * and clears the line. */
void cli_progress_end(struct cli_progress *p);
static inline void cli_progress_endp(struct cli_progress **p)
{
	cli_progress_end(*p);
}

/* Clears the line before other output on stderr; the next update draws
 * it again. */
void cli_progress_hide(void);

/*
 * A task fed by polling: fn is called on a thread about four times a
 * second to update p, until it returns false or poll_stop() is called.
 * NULL (and no thread) when the meter is off.
 */
typedef bool (*cli_progress_poll_fn)(void *arg, struct cli_progress *p);
struct cli_progress_poll;
struct cli_progress_poll *cli_progress_poll_start(const char *what,
						  cli_progress_poll_fn fn,
						  void *arg);
/* Stops and joins the thread, ends its task; accepts NULL. */
void cli_progress_poll_stop(struct cli_progress_poll *pp);

#endif
