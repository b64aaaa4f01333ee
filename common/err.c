/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"

int lp_err_set(struct lp_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (code > 0)
		code = -code;
	if (code == 0)
		code = -EIO;
	if (!err || err->code)
		return err && err->code ? err->code : code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int lp_err_wrap(struct lp_err *err, const char *fmt, ...)
{
	char ctx[256], old[sizeof(err->msg)], both[sizeof(ctx) + sizeof(old) + 4];
	va_list ap;

	if (!err)
		return -EIO;
	if (!err->code)
		err->code = -EIO;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(both, sizeof(both), "%s: %s", ctx,
		 old[0] ? old : strerror(-err->code));
	/* a message too long for the buffer loses its end */
	memcpy(err->msg, both, sizeof(err->msg) - 1);
	err->msg[sizeof(err->msg) - 1] = '\0';
	return err->code;
}

void lp_err_clear(struct lp_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
