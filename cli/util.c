/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

char cli_last_error[512];

void cli_error(const char *fmt, ...)
{
	va_list ap;

	cli_progress_hide();
	va_start(ap, fmt);
	vsnprintf(cli_last_error, sizeof(cli_last_error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "lazypull: %s\n", cli_last_error);
}

void cli_layer_opts_init(struct cli_layer_opts *o)
{
	memset(o, 0, sizeof(*o));
	cli_remote_opts_init(&o->ro);
}

void cli_layer_opts_release(struct cli_layer_opts *o)
{
	cli_remote_close(o->remote);
	o->remote = NULL;
}

int cli_layer_opt(struct cli_layer_opts *o, int c, char *arg)
{
	int r = cli_remote_opt(&o->ro, c, arg);

	if (r)
		return r;
	switch (c) {
	case OPT_FORMAT:
		o->format = arg;
		return 1;
	case OPT_BLOB_DIR:
		o->blob_dir = arg;
		return 1;
	case OPT_TOC_DIGEST:
		o->toc_digest = arg;
		return 1;
	case OPT_MEDIA_TYPE:
		o->media_type = arg;
		return 1;
	case OPT_INDEX:
		o->index = arg;
		return 1;
	case OPT_PROGRESS:
		cli_progress_mode = CLI_PROGRESS_ON;
		return 1;
	case OPT_NO_PROGRESS:
		cli_progress_mode = CLI_PROGRESS_OFF;
		return 1;
	}
	return 0;
}

/*
 * No layer picked in a multi-layer image: every layer, merged with OCI
 * whiteouts applied, as the container sees it.
 */
static int open_remote_merged(const char *ref, struct cli_layer_opts *o,
			      const struct engine_opts *eo_in,
			      struct engine_layer **ret)
{
	size_t n = o->remote->manifest->n_layers;
	struct engine_layer **layers = lp_xcalloc(n, sizeof(*layers));
	struct lp_err err = { 0 };
	size_t opened = 0;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		struct engine_opts eo = *eo_in;
		struct format_hints h;

		cli_remote_hints(o->remote, i, &h);
		if (o->media_type)
			h.media_type = o->media_type;
		eo.hints = &h;
		r = cli_remote_open_layer(o->remote, i, &o->ro, &eo,
					  &layers[i], &err);
		if (r < 0) {
			cli_error("%s: layer %zu: %s", ref, i,
				  err.msg[0] ? err.msg : strerror(-r));
			break;
		}
		opened++;
	}
	if (r == 0) {
		r = engine_merge(layers, (uint32_t)n, ref, ret, &err);
		if (r < 0)
			cli_error("%s: %s", ref, err.msg);
	} else {
		for (size_t i = 0; i < opened; i++)
			engine_close(layers[i]);
	}
	free(layers);
	return r;
}

int cli_open(const char *path, struct cli_layer_opts *o,
	     struct engine_layer **ret)
{
	struct format_hints h = { 0 };
	struct engine_opts eo = { 0 };
	struct lp_err err = { 0 };
	uint8_t d[32];
	int r;

	if (o->toc_digest &&
	    lp_parse_sha256_digest(o->toc_digest, strlen(o->toc_digest), d)) {
		cli_error("--toc-digest %s: not a sha256:<64 hex> digest",
			  o->toc_digest);
		return -EINVAL;
	}
	h.toc_digest = o->toc_digest;
	h.media_type = o->media_type;
	eo.hints = &h;
	eo.format = o->format;
	eo.blob_dir = o->blob_dir;
	eo.zran_index = o->index;
	if (cli_is_remote(path)) {
		size_t i;

		r = cli_remote_open(path, &o->ro, &o->remote);
		if (r < 0)
			return r;
		if (o->ro.layer < 0 && !o->ro.layer_digest &&
		    o->remote->manifest->n_layers > 1 &&
		    cli_remote_bootstrap(o->remote) < 0)
			return open_remote_merged(path, o, &eo, ret);
		r = cli_remote_pick(o->remote, &o->ro, &i);
		if (r < 0)
			return r;
		cli_remote_hints(o->remote, i, &h);
		if (!h.toc_digest)
			h.toc_digest = o->toc_digest;
		if (o->media_type)
			h.media_type = o->media_type;
		r = cli_remote_open_layer(o->remote, i, &o->ro, &eo, ret, &err);
	} else {
		r = engine_open_path(path, &eo, ret, &err);
	}
	if (r < 0)
		cli_error("%s", err.msg[0] ? err.msg : strerror(-r));
	return r;
}

void json_put_str(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

int cli_log_level(const char *arg)
{
	if (lp_log_parse_level(arg, &lp_log_max) < 0) {
		cli_error("--log-level %s: error, warn, info or debug", arg);
		return -EINVAL;
	}
	return 0;
}
