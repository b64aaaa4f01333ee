/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/common.h"

enum lp_log_level lp_log_max = LP_LOG_WARN;
static lp_log_sink log_sink;
static void *log_sink_data;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void lp_log_set_sink(lp_log_sink sink, void *data)
{
	log_sink = sink;
	log_sink_data = data;
}

int lp_log_parse_level(const char *s, enum lp_log_level *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (!strcasecmp(s, level_names[i])) {
			*ret = (enum lp_log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*ret = LP_LOG_WARN;
		return 0;
	}
	if (!strcasecmp(s, "trace")) {
		*ret = LP_LOG_DEBUG;
		return 0;
	}
	return -EINVAL;
}

void lp_log_impl(enum lp_log_level lvl, const char *mod, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_sink) {
		log_sink(lvl, mod, msg, log_sink_data);
		return;
	}
	char tbuf[32];

	lp_log_stamp(tbuf, sizeof(tbuf));
	fprintf(stderr, "%s %s %s: %s\n", tbuf, level_names[lvl], mod, msg);
}

void lp_log_stamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char s[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ", s, ts.tv_nsec / 1000000);
}
