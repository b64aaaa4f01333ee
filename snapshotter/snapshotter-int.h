/* SPDX-License-Identifier: Apache-2.0 */
/* snapshotter: private declarations shared by the module's files. */
#ifndef LP_SNAPSHOTTER_INT_H
#define LP_SNAPSHOTTER_INT_H

#include <stdatomic.h>

#include "snapshotter/snapshotter.h"

/* ---- labels (store.c) ---------------------------------------------------- */

/*
 * Copies n labels into a sorted array without duplicates (the last of equal
 * keys wins, as in a protobuf map) and without empty values.  -EINVAL when
 * a key is empty or key + value is larger than SNAP_LABEL_MAX.
 */
int snap_labels_normalize(const struct snap_label *in, size_t n,
			  struct snap_label **ret, size_t *ret_n,
			  struct lp_err *err);
void snap_labels_free(struct snap_label *l, size_t n);
/* Value of key in a sorted label array, or NULL. */
const char *snap_labels_get(const struct snap_label *l, size_t n,
			    const char *key);

/* ---- one gRPC call, as a handler sees it (grpc.c) ------------------------ */

struct snap_call;

enum snap_pool {
	SNAP_POOL_INLINE, /* lock-free reads of a few µs: run on the loop */
	SNAP_POOL_FAST,	  /* metadata, maybe an fsync: never long */
	SNAP_POOL_SLOW,	  /* filesystem walks, (later) network */
};

/*
 * A handler runs on a worker thread.  It reads the request, queues response
 * messages with snap_call_send() and finishes with snap_call_finish().  A
 * server-streaming handler may instead return SNAP_CALL_MORE after queuing
 * some messages: it is called again (with the same *state) once the client
 * has taken most of them, which is how List applies back-pressure.
 */
enum snap_call_ret { SNAP_CALL_DONE, SNAP_CALL_MORE };

struct snap_method {
	const char *name; /* "Stat": the path is /<service>/<name> */
	enum snap_pool pool;
	bool streaming;
	enum snap_call_ret (*fn)(struct snap_call *c, void *ctx);
};

const uint8_t *snap_call_request(struct snap_call *c, size_t *len);
/* Queues one encoded response message (copied). */
void snap_call_send(struct snap_call *c, const void *msg, size_t len);
/* Sets the final status; the message is sent as grpc-message. */
void snap_call_finish(struct snap_call *c, enum snap_grpc_code code,
		      const char *msg);
/* Per-call state kept across invocations of a streaming handler. */
void **snap_call_state(struct snap_call *c);
void snap_call_set_state_free(struct snap_call *c, void (*fn)(void *));
/* The client has gone (RST_STREAM, connection closed, deadline). */
bool snap_call_cancelled(struct snap_call *c);

/* ---- the gRPC server core without sockets (grpc.c) ----------------------- */

/*
 * The service table the server dispatches to: path prefix
 * "/containerd.services.snapshots.v1.Snapshots/".
 */
extern const char snap_service_name[];
extern const struct snap_method snap_methods[];
extern const size_t snap_n_methods;

/*
 * An in-memory connection for the fuzz target and tests: feed it client
 * bytes, run every call synchronously, and collect what the server wrote.
 * methods/ctx replace the service table (NULL = snap_methods + store).
 */
struct snap_memconn;
struct snap_memconn *snap_memconn_new(const struct snap_method *methods,
				      size_t n_methods, void *ctx);
/* Returns 0, or -EPROTO when the server closed the connection. */
int snap_memconn_feed(struct snap_memconn *m, const uint8_t *data, size_t len);
/* Bytes the server has written so far (borrowed; reset by the next feed). */
const uint8_t *snap_memconn_output(struct snap_memconn *m, size_t *len);
void snap_memconn_free(struct snap_memconn *m);

/* ---- service (service.c) ------------------------------------------------- */

/* The handlers' context: the store. */
struct snap_service {
	struct snap_store *store;
};

/* Percent-encodes a grpc-message (RFC: bytes outside 0x20-0x7e and '%'). */
char *snap_grpc_percent_encode(const char *msg);

#endif
