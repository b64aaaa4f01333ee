/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC over HTTP/2 (libnghttp2) on a unix socket.
 *
 * One event-loop thread owns every socket and every nghttp2 session
 * (nghttp2 is not thread-safe).  A complete request becomes a struct
 * snap_call that is handed to a worker pool; the worker runs the handler
 * and hands the call back through a done queue plus an eventfd.  Between
 * the two, the call is owned by exactly one side: the loop never touches a
 * call that is in a pool, the worker never touches a stream.
 *
 * The protocol pieces we own (HTTP/2 itself is nghttp2's): the 5-byte
 * message prefix, :path dispatch, content-type and grpc-encoding checks,
 * grpc-timeout, trailers with grpc-status and a percent-encoded
 * grpc-message, trailers-only error responses, and flow-controlled
 * server streaming (a data provider that defers while the handler is still
 * producing, and asks the handler for more only once the client has taken
 * most of what was queued).
 */
#define LP_MODNAME "grpc"

#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "snapshotter/snapshotter-int.h"

#define DEFAULT_MAX_MSG (16u << 20)
#define MAX_CONNS 4096
#define MAX_STREAMS 256
#define CONN_BUFFER_CAP (64u << 20) /* request bytes buffered per conn */
#define LOW_WATER (128u << 10)	    /* ask a streaming handler for more */
#define STOP_GRACE_NS (10ll * 1000000000)

/* ---- small pieces -------------------------------------------------------- */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

enum snap_grpc_code snap_grpc_code(int e)
{
	switch (-e) {
	case 0:
		return SNAP_GRPC_OK;
	case ENOENT:
		return SNAP_GRPC_NOT_FOUND;
	case EEXIST:
		return SNAP_GRPC_ALREADY_EXISTS;
	case EINVAL:
		return SNAP_GRPC_INVALID_ARGUMENT;
	case EBUSY:
		return SNAP_GRPC_FAILED_PRECONDITION;
	case EOPNOTSUPP:
	case ENOSYS:
		return SNAP_GRPC_UNIMPLEMENTED;
	case ECANCELED:
		return SNAP_GRPC_CANCELLED;
	case ETIMEDOUT:
		return SNAP_GRPC_DEADLINE_EXCEEDED;
	case EAGAIN:
		return SNAP_GRPC_UNAVAILABLE;
	case ENOSPC:
	case EMSGSIZE:
		return SNAP_GRPC_RESOURCE_EXHAUSTED;
	case EPERM:
	case EACCES:
		return SNAP_GRPC_PERMISSION_DENIED;
	default:
		return SNAP_GRPC_UNKNOWN;
	}
}

char *snap_grpc_percent_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(msg);
	char *out = lp_xmalloc(n * 3 + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

struct outbuf {
	struct outbuf *next;
	size_t len, off;
	uint8_t data[];
};

/* ---- calls --------------------------------------------------------------- */

struct stream;
struct snap_server;

struct snap_call {
	struct snap_call *next; /* pool queue or done queue */
	const struct snap_method *m;
	void *ctx;
	uint8_t *req;
	size_t req_len;
	int64_t deadline_ns; /* CLOCK_MONOTONIC, 0 = none */
	atomic_bool cancelled;

	/* written by the worker, read by the loop after hand-back */
	struct outbuf *out_head, *out_tail;
	size_t out_bytes;
	bool finished;
	enum snap_grpc_code code;
	char *msg;
	enum snap_call_ret ret;
	void *state;
	void (*state_free)(void *);

	/* loop-owned */
	struct stream *st; /* NULL once the stream is gone */
	bool in_pool;
	bool counted; /* in srv->inflight */
};

const uint8_t *snap_call_request(struct snap_call *c, size_t *len)
{
	*len = c->req_len;
	return c->req;
}

void snap_call_send(struct snap_call *c, const void *msg, size_t len)
{
	struct outbuf *b = lp_xmalloc(sizeof(*b) + len + 5);

	b->next = NULL;
	b->len = len + 5;
	b->off = 0;
	b->data[0] = 0; /* not compressed */
	b->data[1] = (uint8_t)(len >> 24);
	b->data[2] = (uint8_t)(len >> 16);
	b->data[3] = (uint8_t)(len >> 8);
	b->data[4] = (uint8_t)len;
	if (len)
		memcpy(b->data + 5, msg, len);
	if (c->out_tail)
		c->out_tail->next = b;
	else
		c->out_head = b;
	c->out_tail = b;
	c->out_bytes += b->len;
}

void snap_call_finish(struct snap_call *c, enum snap_grpc_code code,
		      const char *msg)
{
	if (c->finished)
		return;
	c->finished = true;
	c->code = code;
	c->msg = msg && msg[0] ? lp_xstrdup(msg) : NULL;
}

void **snap_call_state(struct snap_call *c)
{
	return &c->state;
}

void snap_call_set_state_free(struct snap_call *c, void (*fn)(void *))
{
	c->state_free = fn;
}

bool snap_call_cancelled(struct snap_call *c)
{
	return atomic_load(&c->cancelled) ||
	       (c->deadline_ns && mono_ns() > c->deadline_ns);
}

static void outbufs_free(struct outbuf *b)
{
	while (b) {
		struct outbuf *n = b->next;

		free(b);
		b = n;
	}
}

static void call_free(struct snap_call *c)
{
	if (!c)
		return;
	if (c->state_free && c->state)
		c->state_free(c->state);
	outbufs_free(c->out_head);
	free(c->req);
	free(c->msg);
	free(c);
}

/* Runs the handler once, on whatever thread this is. */
static void call_run(struct snap_call *c)
{
	c->ret = SNAP_CALL_DONE;
	if (atomic_load(&c->cancelled)) {
		snap_call_finish(c, SNAP_GRPC_CANCELLED, "context canceled");
		return;
	}
	if (c->deadline_ns && mono_ns() > c->deadline_ns) {
		snap_call_finish(c, SNAP_GRPC_DEADLINE_EXCEEDED,
				 "context deadline exceeded");
		return;
	}
	c->ret = c->m->fn(c, c->ctx);
	if (c->ret == SNAP_CALL_DONE && !c->finished)
		snap_call_finish(c, SNAP_GRPC_OK, NULL);
	if (c->finished)
		c->ret = SNAP_CALL_DONE;
}

/* ---- worker pools -------------------------------------------------------- */

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct snap_call *head, *tail; /* protected by lock */
	int idle, nthreads, max;       /* protected by lock */
	bool stop;		       /* protected by lock */
	pthread_t *threads;
	struct snap_server *srv;
	const char *name;
};

struct snap_server {
	int lfd, efd, sfd;
	char *address;
	uint32_t max_msg;
	const struct snap_method *methods;
	size_t n_methods;
	void *ctx;
	struct snap_service svc;
	bool sync; /* memconn: handlers run inline */

	struct pool pools[2];
	pthread_mutex_t done_lock;
	struct snap_call *done_head, *done_tail; /* protected by done_lock */

	struct conn *conns;
	size_t n_conns;
	uint64_t inflight; /* calls handed to pools, loop-owned */
	atomic_bool stop_req;
	bool stopping;
	int64_t stop_deadline;
};

static void done_push(struct snap_server *srv, struct snap_call *c)
{
	uint64_t one = 1;

	pthread_mutex_lock(&srv->done_lock);
	c->next = NULL;
	if (srv->done_tail)
		srv->done_tail->next = c;
	else
		srv->done_head = c;
	srv->done_tail = c;
	pthread_mutex_unlock(&srv->done_lock);
	if (write(srv->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		lp_log(LP_LOG_WARN, "eventfd: %s", strerror(errno));
}

static void *pool_main(void *arg)
{
	struct pool *p = arg;
	sigset_t all;

	/* signals belong to the loop's signalfd */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct snap_call *c;

		while (!p->head && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (p->stop)
			break;
		c = p->head;
		p->head = c->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		call_run(c);
		done_push(p->srv, c);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Caller holds p->lock. */
static int pool_spawn(struct pool *p)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, pool_main, p);

	if (r)
		return -r;
	p->threads[p->nthreads++] = t;
	return 0;
}

static int pool_init(struct pool *p, struct snap_server *srv,
		     const char *name, int n, int max)
{
	int r = 0;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->srv = srv;
	p->name = name;
	p->max = max < n ? n : max;
	p->threads = lp_xcalloc((size_t)p->max, sizeof(pthread_t));
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < n && r == 0; i++)
		r = pool_spawn(p);
	pthread_mutex_unlock(&p->lock);
	return r;
}

static void pool_push(struct pool *p, struct snap_call *c)
{
	pthread_mutex_lock(&p->lock);
	c->next = NULL;
	if (p->tail)
		p->tail->next = c;
	else
		p->head = c;
	p->tail = c;
	/* every worker is busy (e.g. walking a big tree): add one */
	if (p->idle == 0 && p->nthreads < p->max && pool_spawn(p) == 0)
		lp_debug("%s pool: %d threads", p->name, p->nthreads);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void pool_stop(struct pool *p)
{
	if (!p->threads)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	while (p->head) {
		struct snap_call *c = p->head;

		p->head = c->next;
		call_free(c);
	}
	free(p->threads);
	p->threads = NULL;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
}

/* ---- connections and streams --------------------------------------------- */

struct conn {
	struct conn *next, *prev;
	struct snap_server *srv;
	int fd; /* -1 for a memconn */
	nghttp2_session *sess;
	uint8_t *wbuf;
	size_t wlen, woff, wcap; /* pending output (memconn: all output) */
	struct stream *streams;
	size_t buffered; /* request bytes held by its streams */
	bool dead;
};

struct stream {
	struct stream *next, *prev;
	struct conn *conn;
	int32_t id;
	/* request */
	char path[256];
	bool path_long, is_post, ct_grpc, ct_seen, enc_other, headers_done;
	int64_t deadline_ns;
	bool deadline_bad;
	uint8_t *body;
	size_t body_len, body_cap;
	bool too_big, dispatched;
	uint32_t declared; /* length prefix of the first message */
	/* response */
	struct snap_call *call;	 /* NULL when not producing */
	struct outbuf *q_head, *q_tail;
	size_t q_bytes;
	bool headers_sent, final, deferred;
	enum snap_grpc_code code;
	char *msg;
};

static void stream_free(struct stream *st)
{
	struct conn *cn = st->conn;

	if (st->prev)
		st->prev->next = st->next;
	else
		cn->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	cn->buffered -= st->body_cap;
	if (st->call) {
		if (st->call->in_pool) {
			/* the worker still has it: it comes back to the
			 * done queue, is seen detached and freed there */
			atomic_store(&st->call->cancelled, true);
			st->call->st = NULL;
		} else {
			call_free(st->call);
		}
	}
	outbufs_free(st->q_head);
	free(st->body);
	free(st->msg);
	free(st);
}

static void conn_free(struct conn *cn)
{
	struct snap_server *srv = cn->srv;

	while (cn->streams)
		stream_free(cn->streams);
	nghttp2_session_del(cn->sess);
	if (cn->fd >= 0)
		close(cn->fd);
	if (cn->prev)
		cn->prev->next = cn->next;
	else if (srv->conns == cn)
		srv->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	if (cn->fd >= 0)
		srv->n_conns--;
	free(cn->wbuf);
	free(cn);
}

/* ---- responses ----------------------------------------------------------- */

#define NV(n, v)                                                               \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),            \
	  NGHTTP2_NV_FLAG_NO_COPY_NAME }

static void dispatch(struct stream *st);

/* Hands the call back to its pool for more (List), unless it is there. */
static void maybe_more(struct stream *st)
{
	struct snap_call *c = st->call;

	if (!c || c->in_pool || st->final || st->q_bytes >= LOW_WATER ||
	    st->conn->srv->sync || c->m->pool == SNAP_POOL_INLINE)
		return;
	dispatch(st);
}

static ssize_t data_read(nghttp2_session *sess, int32_t id, uint8_t *buf,
			 size_t len, uint32_t *flags, nghttp2_data_source *src,
			 void *user)
{
	struct stream *st = src->ptr;
	size_t n = 0;

	(void)user;
	while (n < len && st->q_head) {
		struct outbuf *b = st->q_head;
		size_t k = b->len - b->off;

		if (k > len - n)
			k = len - n;
		memcpy(buf + n, b->data + b->off, k);
		b->off += k;
		n += k;
		st->q_bytes -= k;
		if (b->off == b->len) {
			st->q_head = b->next;
			if (!st->q_head)
				st->q_tail = NULL;
			free(b);
		}
	}
	if (!st->q_head && st->final) {
		char code[16];
		char *msg = snap_grpc_percent_encode(st->msg ? st->msg : "");

		snprintf(code, sizeof(code), "%d", st->code);
		nghttp2_nv tr[] = { NV("grpc-status", code),
				    NV("grpc-message", msg) };

		if (nghttp2_submit_trailer(sess, id, tr,
					   st->msg ? 2 : 1) != 0)
			lp_debug("stream %d: trailers not submitted", id);
		free(msg);
		*flags |= NGHTTP2_DATA_FLAG_EOF |
			  NGHTTP2_DATA_FLAG_NO_END_STREAM;
		return (ssize_t)n;
	}
	maybe_more(st);
	if (n == 0) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* A response with no messages: one HEADERS frame with END_STREAM. */
static void respond_trailers_only(struct stream *st, enum snap_grpc_code code,
				  const char *msg)
{
	char cs[16];
	char *enc = snap_grpc_percent_encode(msg ? msg : "");

	snprintf(cs, sizeof(cs), "%d", code);
	nghttp2_nv nv[] = { NV(":status", "200"),
			    NV("content-type", "application/grpc"),
			    NV("grpc-status", cs), NV("grpc-message", enc) };

	st->headers_sent = true;
	st->final = true;
	if (nghttp2_submit_response(st->conn->sess, st->id, nv,
				    msg && msg[0] ? 4 : 3, NULL) != 0)
		lp_debug("stream %d: response not submitted", st->id);
	free(enc);
}

static void respond_http(struct stream *st, const char *status)
{
	nghttp2_nv nv[] = { NV(":status", status),
			    NV("content-type", "text/plain") };

	st->headers_sent = true;
	st->final = true;
	nghttp2_submit_response(st->conn->sess, st->id, nv, 2, NULL);
}

/* The loop got a call back from a worker (or ran it inline). */
static void call_done(struct snap_server *srv, struct snap_call *c)
{
	struct stream *st = c->st;

	c->in_pool = false;
	if (c->counted)
		srv->inflight--;
	c->counted = false;
	if (!st) {
		call_free(c);
		return;
	}
	if (c->out_head) {
		if (st->q_tail)
			st->q_tail->next = c->out_head;
		else
			st->q_head = c->out_head;
		st->q_tail = c->out_tail;
		st->q_bytes += c->out_bytes;
		c->out_head = c->out_tail = NULL;
		c->out_bytes = 0;
	}
	if (c->ret == SNAP_CALL_DONE) {
		st->final = true;
		st->code = c->code;
		st->msg = TAKE_PTR(c->msg);
		st->call = NULL;
		call_free(c);
	}
	if (!st->headers_sent) {
		if (st->final && !st->q_head) {
			respond_trailers_only(st, st->code, st->msg);
			return;
		}
		nghttp2_nv nv[] = { NV(":status", "200"),
				    NV("content-type", "application/grpc") };
		nghttp2_data_provider dp = { .source.ptr = st,
					     .read_callback = data_read };

		st->headers_sent = true;
		if (nghttp2_submit_response(st->conn->sess, st->id, nv, 2,
					    &dp) != 0)
			lp_debug("stream %d: response not submitted", st->id);
	} else if (st->deferred) {
		st->deferred = false;
		nghttp2_session_resume_data(st->conn->sess, st->id);
	}
	if (!st->final)
		maybe_more(st);
}

static void dispatch(struct stream *st)
{
	struct snap_call *c = st->call;
	struct snap_server *srv = st->conn->srv;

	if (srv->sync || c->m->pool == SNAP_POOL_INLINE) {
		/* memconn: run to completion here, no back-pressure;
		 * inline methods never return MORE */
		for (;;) {
			bool more;

			call_run(c);
			more = c->ret == SNAP_CALL_MORE;
			call_done(srv, c); /* frees c when done */
			if (!more)
				return;
		}
	}
	c->in_pool = true;
	c->counted = true;
	srv->inflight++;
	pool_push(&srv->pools[c->m->pool == SNAP_POOL_SLOW ? 1 : 0], c);
}

/* grpc-timeout: 1-8 digits and a unit (H M S m u n). */
static int64_t parse_timeout(const uint8_t *v, size_t n, bool *bad)
{
	int64_t x = 0, mul;

	if (n < 2 || n > 9) {
		*bad = true;
		return 0;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		if (v[i] < '0' || v[i] > '9') {
			*bad = true;
			return 0;
		}
		x = x * 10 + (v[i] - '0');
	}
	switch (v[n - 1]) {
	case 'H': mul = 3600000000000ll; break;
	case 'M': mul = 60000000000ll; break;
	case 'S': mul = 1000000000ll; break;
	case 'm': mul = 1000000ll; break;
	case 'u': mul = 1000ll; break;
	case 'n': mul = 1; break;
	default:
		*bad = true;
		return 0;
	}
	if (x > INT64_MAX / mul / 2)
		return INT64_MAX / 2;
	return x * mul;
}

static const struct snap_method *find_method(struct snap_server *srv,
					     const char *path,
					     const char **ret_why)
{
	size_t sl = strlen(snap_service_name);
	const char *name;

	*ret_why = "unknown service";
	if (path[0] != '/' || strncmp(path + 1, snap_service_name, sl) ||
	    path[1 + sl] != '/')
		return NULL;
	*ret_why = "unknown method";
	name = path + sl + 2;
	for (size_t i = 0; i < srv->n_methods; i++)
		if (!strcmp(srv->methods[i].name, name))
			return &srv->methods[i];
	return NULL;
}

/* END_STREAM seen: the whole request is here. */
static void request_done(struct stream *st)
{
	struct snap_server *srv = st->conn->srv;
	const struct snap_method *m;
	const char *why;
	char msg[400];
	uint32_t len;

	if (st->dispatched)
		return;
	st->dispatched = true;
	if (!st->is_post) {
		respond_http(st, "405");
		return;
	}
	if (!st->ct_grpc) {
		respond_http(st, "415");
		return;
	}
	m = st->path_long ? NULL : find_method(srv, st->path, &why);
	if (!m) {
		const char *slash = strrchr(st->path, '/');

		if (!strcmp(why, "unknown service") || !slash)
			snprintf(msg, sizeof(msg), "unknown service %.*s",
				 slash && slash > st->path ?
					 (int)(slash - st->path - 1) : 200,
				 st->path + (st->path[0] == '/'));
		else
			snprintf(msg, sizeof(msg), "unknown method %.100s for "
				 "service %.100s", slash + 1,
				 snap_service_name);
		respond_trailers_only(st, SNAP_GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (st->deadline_bad) {
		respond_trailers_only(st, SNAP_GRPC_INTERNAL,
				      "malformed grpc-timeout");
		return;
	}
	if (st->too_big) {
		snprintf(msg, sizeof(msg), "grpc: received message larger "
			 "than max (%zu vs. %u)",
			 st->declared ? (size_t)st->declared :
					st->body_len - 5,
			 srv->max_msg);
		respond_trailers_only(st, SNAP_GRPC_RESOURCE_EXHAUSTED, msg);
		return;
	}
	if (st->body_len < 5) {
		respond_trailers_only(st, SNAP_GRPC_INTERNAL,
				      st->body_len ?
					      "grpc: error while receiving "
					      "request: unexpected EOF" :
					      "grpc: no request message");
		return;
	}
	len = (uint32_t)st->body[1] << 24 | (uint32_t)st->body[2] << 16 |
	      (uint32_t)st->body[3] << 8 | st->body[4];
	if (st->body[0] == 1) {
		respond_trailers_only(st, st->enc_other ?
					      SNAP_GRPC_UNIMPLEMENTED :
					      SNAP_GRPC_INTERNAL,
				      st->enc_other ?
					      "grpc: decompressor is not "
					      "installed for grpc-encoding" :
					      "grpc: compressed flag set with "
					      "identity or empty encoding");
		return;
	}
	if (st->body[0] != 0) {
		respond_trailers_only(st, SNAP_GRPC_INTERNAL,
				      "grpc: invalid message flag");
		return;
	}
	if ((size_t)len + 5 != st->body_len) {
		respond_trailers_only(st, SNAP_GRPC_INTERNAL,
				      (size_t)len + 5 > st->body_len ?
					      "grpc: error while receiving "
					      "request: unexpected EOF" :
					      "grpc: more than one request "
					      "message in a unary call");
		return;
	}
	if (st->deadline_ns && st->deadline_ns <= mono_ns()) {
		respond_trailers_only(st, SNAP_GRPC_DEADLINE_EXCEEDED,
				      "context deadline exceeded");
		return;
	}

	struct snap_call *c = lp_xcalloc(1, sizeof(*c));

	c->m = m;
	c->ctx = srv->ctx;
	c->req_len = len;
	c->req = lp_xmalloc(len ? len : 1);
	memcpy(c->req, st->body + 5, len);
	c->deadline_ns = st->deadline_ns;
	c->st = st;
	st->call = c;
	st->conn->buffered -= st->body_cap;
	free(st->body);
	st->body = NULL;
	st->body_len = st->body_cap = 0;
	dispatch(st);
}

/* ---- nghttp2 callbacks --------------------------------------------------- */

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *f,
			    void *user)
{
	struct conn *cn = user;
	struct stream *st;

	if (f->hd.type != NGHTTP2_HEADERS ||
	    f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = lp_xcalloc(1, sizeof(*st));
	st->conn = cn;
	st->id = f->hd.stream_id;
	st->next = cn->streams;
	if (cn->streams)
		cn->streams->prev = st;
	cn->streams = st;
	nghttp2_session_set_stream_user_data(sess, st->id, st);
	return 0;
}

static bool hdr_is(const uint8_t *n, size_t nl, const char *s)
{
	return nl == strlen(s) && !memcmp(n, s, nl);
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *f,
		     const uint8_t *name, size_t nl, const uint8_t *value,
		     size_t vl, uint8_t flags, void *user)
{
	struct stream *st;

	(void)flags;
	(void)user;
	if (f->hd.type != NGHTTP2_HEADERS ||
	    f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* client trailers carry nothing we use */
	st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
	if (!st)
		return 0;
	if (hdr_is(name, nl, ":path")) {
		if (vl >= sizeof(st->path)) {
			st->path_long = true;
			vl = sizeof(st->path) - 1;
		}
		memcpy(st->path, value, vl);
		st->path[vl] = '\0';
	} else if (hdr_is(name, nl, ":method")) {
		st->is_post = vl == 4 && !memcmp(value, "POST", 4);
	} else if (hdr_is(name, nl, "content-type")) {
		st->ct_seen = true;
		st->ct_grpc = vl >= 16 &&
			      !memcmp(value, "application/grpc", 16) &&
			      (vl == 16 || value[16] == '+' ||
			       value[16] == ';');
	} else if (hdr_is(name, nl, "grpc-encoding")) {
		st->enc_other = !(vl == 8 && !memcmp(value, "identity", 8));
	} else if (hdr_is(name, nl, "grpc-timeout")) {
		int64_t t = parse_timeout(value, vl, &st->deadline_bad);

		if (!st->deadline_bad)
			st->deadline_ns = mono_ns() + t;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id,
			 const uint8_t *data, size_t len, void *user)
{
	struct conn *cn = user;
	struct stream *st = nghttp2_session_get_stream_user_data(sess, id);
	size_t cap;

	(void)flags;
	if (!st || st->dispatched || st->too_big)
		return 0;
	cap = (size_t)cn->srv->max_msg + 5;
	if (st->body_len + len > cap) {
		/* keep reading (flow control goes on) but drop the bytes */
		st->too_big = true;
		st->body_len += len;
		cn->buffered -= st->body_cap;
		free(st->body);
		st->body = NULL;
		st->body_cap = 0;
		return 0;
	}
	if (st->body_len + len > st->body_cap) {
		size_t old = st->body_cap, want = old ? old : 4096;

		while (want < st->body_len + len)
			want *= 2;
		if (want > cap)
			want = cap;
		if (cn->buffered - old + want > CONN_BUFFER_CAP) {
			nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, id,
						  NGHTTP2_ENHANCE_YOUR_CALM);
			st->dispatched = true;
			return 0;
		}
		st->body = lp_xrealloc(st->body, want);
		st->body_cap = want;
		cn->buffered = cn->buffered - old + want;
	}
	memcpy(st->body + st->body_len, data, len);
	st->body_len += len;
	if (st->body_len >= 5 && !st->declared) {
		st->declared = (uint32_t)st->body[1] << 24 |
			       (uint32_t)st->body[2] << 16 |
			       (uint32_t)st->body[3] << 8 | st->body[4];
		if (st->declared > cn->srv->max_msg) {
			/* say so now, without buffering what follows */
			st->too_big = true;
			cn->buffered -= st->body_cap;
			free(st->body);
			st->body = NULL;
			st->body_cap = 0;
		}
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *f,
			 void *user)
{
	struct stream *st;

	(void)user;
	if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
	if (st)
		request_done(st);
	return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code,
			   void *user)
{
	struct stream *st = nghttp2_session_get_stream_user_data(sess, id);

	(void)user;
	if (!st)
		return 0;
	if (code != NGHTTP2_NO_ERROR)
		lp_debug("stream %d closed with error %u", id, code);
	nghttp2_session_set_stream_user_data(sess, id, NULL);
	stream_free(st);
	return 0;
}

static nghttp2_session_callbacks *cbs;

static void init_callbacks(void)
{
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		abort();
	nghttp2_session_callbacks_set_on_begin_headers_callback(
		cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
		cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
							     on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(
		cbs, on_stream_close);
}

static nghttp2_session_callbacks *callbacks(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, init_callbacks);
	return cbs;
}

/*
 * No HTTP messaging checks: grpc-go sends the dial target as :authority,
 * which for a unix socket is a path ("/run/…/x.sock") that RFC 3986 does
 * not allow there.  gRPC servers accept it; request_done() checks what
 * gRPC needs (:method, :path, content-type).
 */
static nghttp2_option *opts;

static void init_option(void)
{
	if (nghttp2_option_new(&opts) != 0)
		abort();
	nghttp2_option_set_no_http_messaging(opts, 1);
}

static nghttp2_option *session_option(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, init_option);
	return opts;
}

static struct conn *conn_new(struct snap_server *srv, int fd)
{
	struct conn *cn = lp_xcalloc(1, sizeof(*cn));
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20 },
	};

	cn->srv = srv;
	cn->fd = fd;
	if (nghttp2_session_server_new2(&cn->sess, callbacks(), cn,
					session_option()) != 0)
		abort();
	nghttp2_submit_settings(cn->sess, NGHTTP2_FLAG_NONE, set,
				ARRAY_SIZE(set));
	nghttp2_session_set_local_window_size(cn->sess, NGHTTP2_FLAG_NONE, 0,
					      4 << 20);
	cn->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = cn;
	srv->conns = cn;
	return cn;
}

/* bytes of frames gathered before one send */
#define FLUSH_GATHER (256u << 10)

/*
 * Moves nghttp2's output to the socket until it would block.  The frames
 * of a response (HEADERS, DATA, trailers) go out in one send: the client
 * wakes once per response, not once per frame.
 */
static int conn_flush(struct conn *cn)
{
	for (;;) {
		ssize_t n;

		while (cn->wlen - cn->woff < FLUSH_GATHER) {
			const uint8_t *data;

			n = nghttp2_session_mem_send(cn->sess, &data);
			if (n < 0)
				return -EPROTO;
			if (n == 0)
				break;
			lp_grow((void **)&cn->wbuf, 1, &cn->wcap,
				cn->wlen + (size_t)n);
			memcpy(cn->wbuf + cn->wlen, data, (size_t)n);
			cn->wlen += (size_t)n;
		}
		if (cn->fd < 0 || cn->woff == cn->wlen)
			return 0;
		n = send(cn->fd, cn->wbuf + cn->woff, cn->wlen - cn->woff,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -errno;
		cn->woff += (size_t)n;
		if (cn->woff == cn->wlen)
			cn->woff = cn->wlen = 0;
	}
}

static bool conn_done(struct conn *cn)
{
	return !nghttp2_session_want_read(cn->sess) &&
	       !nghttp2_session_want_write(cn->sess) && cn->woff == cn->wlen;
}

static void conn_input(struct conn *cn)
{
	uint8_t buf[65536];
	ssize_t n = recv(cn->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		cn->dead = true;
		return;
	}
	if (nghttp2_session_mem_recv(cn->sess, buf, (size_t)n) < 0) {
		lp_debug("connection %d: not HTTP/2 or protocol error", cn->fd);
		conn_flush(cn); /* a GOAWAY, if nghttp2 queued one */
		cn->dead = true;
	}
}

/* ---- the server ---------------------------------------------------------- */

static int make_parent_dirs(const char *path)
{
	char *p = lp_xstrdup(path), *s;

	for (s = p + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int e = errno;

			free(p);
			return -e;
		}
		*s = '/';
	}
	free(p);
	return 0;
}

static int bind_socket(const char *path, int *ret, struct lp_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return lp_err_set(err, -ENAMETOOLONG, "socket path %s: longer "
				  "than %zu bytes", path,
				  sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	r = make_parent_dirs(path);
	if (r < 0)
		return lp_err_set(err, r, "creating the directory of %s: %s",
				  path, strerror(-r));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return lp_err_set(err, -EEXIST, "%s exists and is not "
					  "a socket", path);
		/* a live server answers; a stale socket file is replaced */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa,
				       sizeof(sa)) == 0) {
			close(fd);
			return lp_err_set(err, -EADDRINUSE, "%s: another "
					  "server is listening there", path);
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return lp_err_set(err, -errno, "socket: %s", strerror(errno));
	old = umask(0077);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 512) < 0) {
		r = -errno;
		close(fd);
		return lp_err_set(err, r, "listen on %s: %s", path,
				  strerror(-r));
	}
	*ret = fd;
	return 0;
}

int snap_server_new(const struct snap_server_opts *o, struct snap_store *st,
		    struct snap_server **ret, struct lp_err *err)
{
	struct snap_server *srv = lp_xcalloc(1, sizeof(*srv));
	sigset_t mask;
	int r;

	srv->lfd = srv->efd = srv->sfd = -1;
	pthread_mutex_init(&srv->done_lock, NULL);
	srv->max_msg = o->max_msg ? o->max_msg : DEFAULT_MAX_MSG;
	srv->methods = snap_methods;
	srv->n_methods = snap_n_methods;
	srv->svc.store = st;
	srv->svc.remote = o->remote;
	srv->svc.remote_ctx = o->remote_ctx;
	srv->ctx = &srv->svc;
	srv->address = lp_xstrdup(o->address);
	srv->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	srv->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv->efd < 0 || srv->sfd < 0) {
		r = lp_err_set(err, -errno, "eventfd/signalfd: %s",
			       strerror(errno));
		goto fail;
	}
	r = bind_socket(o->address, &srv->lfd, err);
	if (r < 0)
		goto fail;
	r = pool_init(&srv->pools[0], srv, "fast",
		      o->fast_threads > 0 ? o->fast_threads : 2,
		      o->fast_threads > 0 ? o->fast_threads : 2);
	if (r == 0) {
		int n = o->slow_threads > 0 ? o->slow_threads : 4;

		r = pool_init(&srv->pools[1], srv, "slow", n, n * 8);
	}
	if (r < 0) {
		r = lp_err_set(err, r, "worker threads: %s", strerror(-r));
		goto fail;
	}
	*ret = srv;
	return 0;
fail:
	snap_server_free(srv);
	return r;
}

void snap_server_stop(struct snap_server *srv)
{
	uint64_t one = 1;

	atomic_store(&srv->stop_req, true);
	if (write(srv->efd, &one, sizeof(one)) < 0) {
		/* the loop also polls stop_req on its timeout */
	}
}

static void begin_stop(struct snap_server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	srv->stop_deadline = mono_ns() + STOP_GRACE_NS;
	lp_log(LP_LOG_INFO, "stopping: no new connections; %llu call(s) in "
	       "flight", (unsigned long long)srv->inflight);
	if (srv->lfd >= 0) {
		close(srv->lfd);
		srv->lfd = -1;
		unlink(srv->address);
	}
	for (struct conn *cn = srv->conns; cn; cn = cn->next)
		nghttp2_submit_goaway(
			cn->sess, NGHTTP2_FLAG_NONE,
			nghttp2_session_get_last_proc_stream_id(cn->sess),
			NGHTTP2_NO_ERROR, NULL, 0);
}

static void drain_done(struct snap_server *srv)
{
	struct snap_call *c;
	uint64_t v;

	if (read(srv->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		lp_log(LP_LOG_WARN, "eventfd: %s", strerror(errno));
	pthread_mutex_lock(&srv->done_lock);
	c = srv->done_head;
	srv->done_head = srv->done_tail = NULL;
	pthread_mutex_unlock(&srv->done_lock);
	while (c) {
		struct snap_call *n = c->next;

		call_done(srv, c);
		c = n;
	}
}

static void accept_all(struct snap_server *srv)
{
	for (;;) {
		int fd = accept4(srv->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				lp_log(LP_LOG_WARN, "accept: %s",
				       strerror(errno));
			return;
		}
		if (srv->n_conns >= MAX_CONNS) {
			lp_log(LP_LOG_WARN, "too many connections (%d): "
			       "refusing one", MAX_CONNS);
			close(fd);
			continue;
		}
		conn_new(srv, fd);
		srv->n_conns++;
	}
}

int snap_server_run(struct snap_server *srv, struct lp_err *err)
{
	struct pollfd *pfd = NULL;
	struct conn **pconn = NULL;
	size_t cap = 0;

	(void)err;
	lp_log(LP_LOG_INFO, "serving %s on %s", snap_service_name,
	       srv->address);
	for (;;) {
		size_t n = 0;
		int timeout = -1;

		/* flush everything, close what is finished */
		for (struct conn *cn = srv->conns, *next; cn; cn = next) {
			next = cn->next;
			if (!cn->dead && conn_flush(cn) < 0)
				cn->dead = true;
			/* after a GOAWAY nghttp2 wants nothing more once
			 * the last stream is closed */
			if (cn->dead || conn_done(cn))
				conn_free(cn);
		}
		if (atomic_load(&srv->stop_req))
			begin_stop(srv);
		if (srv->stopping) {
			if (!srv->conns && srv->inflight == 0)
				break;
			if (mono_ns() > srv->stop_deadline) {
				lp_log(LP_LOG_WARN, "stopping: %llu call(s) "
				       "still running after the grace period",
				       (unsigned long long)srv->inflight);
				break;
			}
			timeout = 100;
		}

		lp_grow((void **)&pfd, sizeof(*pfd), &cap, srv->n_conns + 3);
		pconn = lp_xrealloc(pconn, cap * sizeof(*pconn));
		pfd[n++] = (struct pollfd){ srv->efd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ srv->sfd, POLLIN, 0 };
		if (srv->lfd >= 0)
			pfd[n++] = (struct pollfd){ srv->lfd, POLLIN, 0 };
		for (struct conn *cn = srv->conns; cn; cn = cn->next) {
			short ev = 0;

			if (nghttp2_session_want_read(cn->sess))
				ev |= POLLIN;
			if (cn->woff < cn->wlen)
				ev |= POLLOUT;
			pconn[n] = cn;
			pfd[n++] = (struct pollfd){ cn->fd, ev, 0 };
		}
		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			lp_log(LP_LOG_ERROR, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(srv->sfd, &si, sizeof(si)) == sizeof(si))
				lp_log(LP_LOG_INFO, "signal %u",
				       si.ssi_signo);
			atomic_store(&srv->stop_req, true);
		}
		if (srv->lfd >= 0 && (pfd[2].revents & POLLIN))
			accept_all(srv);
		for (size_t i = srv->lfd >= 0 ? 3 : 2; i < n; i++) {
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				conn_input(pconn[i]);
		}
		/* after input, so a RST_STREAM read in this round cancels a
		 * call that finished in the meantime before it is sent */
		if (pfd[0].revents & POLLIN)
			drain_done(srv);
	}
	free(pfd);
	free(pconn);
	return 0;
}

void snap_server_free(struct snap_server *srv)
{
	if (!srv)
		return;
	pool_stop(&srv->pools[0]);
	pool_stop(&srv->pools[1]);
	/* calls workers finished: their streams may still be here */
	while (srv->done_head) {
		struct snap_call *c = srv->done_head;

		srv->done_head = c->next;
		c->in_pool = false;
		if (c->st)
			c->st->call = NULL;
		call_free(c);
	}
	while (srv->conns)
		conn_free(srv->conns);
	if (srv->lfd >= 0) {
		close(srv->lfd);
		unlink(srv->address);
	}
	if (srv->efd >= 0)
		close(srv->efd);
	if (srv->sfd >= 0)
		close(srv->sfd);
	pthread_mutex_destroy(&srv->done_lock);
	free(srv->address);
	free(srv);
}

/* ---- in-memory connections (fuzzing, tests) ------------------------------ */

struct snap_memconn {
	struct snap_server srv;
	struct conn *cn;
};

struct snap_memconn *snap_memconn_new(const struct snap_method *methods,
				      size_t n_methods, void *ctx)
{
	struct snap_memconn *m = lp_xcalloc(1, sizeof(*m));

	m->srv.lfd = m->srv.efd = m->srv.sfd = -1;
	m->srv.sync = true;
	m->srv.max_msg = 1u << 20;
	m->srv.methods = methods ? methods : snap_methods;
	m->srv.n_methods = methods ? n_methods : snap_n_methods;
	m->srv.ctx = ctx;
	m->cn = conn_new(&m->srv, -1);
	return m;
}

int snap_memconn_feed(struct snap_memconn *m, const uint8_t *data, size_t len)
{
	m->cn->wlen = 0;
	if (m->cn->dead)
		return -EPROTO;
	if (nghttp2_session_mem_recv(m->cn->sess, data, len) < 0)
		m->cn->dead = true;
	if (conn_flush(m->cn) < 0)
		m->cn->dead = true;
	return m->cn->dead || conn_done(m->cn) ? -EPROTO : 0;
}

const uint8_t *snap_memconn_output(struct snap_memconn *m, size_t *len)
{
	*len = m->cn->wlen;
	return m->cn->wbuf;
}

void snap_memconn_free(struct snap_memconn *m)
{
	if (!m)
		return;
	conn_free(m->cn);
	free(m);
}
