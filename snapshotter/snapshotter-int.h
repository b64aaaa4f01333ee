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

/* ---- label keys ------------------------------------------------------------ */

/* set by containerd's unpacker: the chain id the layer is committed as */
#define SNAP_LABEL_REF "containerd.io/snapshot.ref"
/* layer annotations containerd passes on (prefix containerd.io/snapshot/) */
#define SNAP_LABEL_TOC "containerd.io/snapshot/stargz/toc.digest"
#define SNAP_LABEL_NYDUS_BOOTSTRAP "containerd.io/snapshot/nydus-bootstrap"
#define SNAP_LABEL_NYDUS_BLOB "containerd.io/snapshot/nydus-blob"
/* ctr-remote / nerdctl (source.AppendDefaultLabelsHandlerWrapper) */
#define SNAP_LABEL_STARGZ_REF "containerd.io/snapshot/remote/stargz.reference"
#define SNAP_LABEL_STARGZ_DIGEST "containerd.io/snapshot/remote/stargz.digest"
/* this layer's digest and those of the layers above it, comma-separated */
#define SNAP_LABEL_STARGZ_LAYERS "containerd.io/snapshot/remote/stargz.layers"
/* the CRI plugin */
#define SNAP_LABEL_CRI_REF "containerd.io/snapshot/cri.image-ref"
#define SNAP_LABEL_CRI_DIGEST "containerd.io/snapshot/cri.layer-digest"
#define SNAP_LABEL_CRI_LAYERS "containerd.io/snapshot/cri.image-layers"
/* ours, on a layer committed as remote (the first as stargz's) */
#define SNAP_LABEL_REMOTE "containerd.io/snapshot/remote"
#define SNAP_REMOTE_VALUE "remote snapshot"
#define SNAP_LABEL_FORMAT "containerd.io/snapshot/lazypull.format"

/* ---- remote layers, as the service calls them (remote.c) ----------------- */

struct snap_remote_ops {
	/*
	 * Prepare of a layer (labels[0..n) hold containerd.io/snapshot.ref,
	 * unsorted): 1 when it is, or now was, committed as a remote layer
	 * under that ref, answered AlreadyExists with err's message; 0 to go
	 * on with an ordinary snapshot; -errno to fail the call.
	 */
	int (*prepare)(void *ctx, const char *key, const char *parent,
		       const struct snap_label *labels, size_t n,
		       struct lp_err *err);
	/*
	 * parent (and its ancestors) are about to be mounted as lower
	 * layers: starts the fs daemons of the remote ones that do not run.
	 * -errno fails the call.
	 */
	int (*ensure)(void *ctx, const char *parent, struct lp_err *err);
	/* info was removed from the store: stops what served it. */
	void (*removed)(void *ctx, const struct snap_info *info);
};

/* ---- fs daemons of remote layers (daemon.c) ------------------------------ */

struct snap_daemons;
struct snap_daemons_opts {
	const char *root;     /* <root>/mnt/<id>, <root>/daemons/<id>.{pid,log};
			       * also the daemons' --root (blob cache) */
	const char *lazypull; /* the binary (a path, or a name for $PATH) */
	const char *const *args; /* more `lazypull mount` arguments, NULL-
				  * terminated (registry settings) */
	const char *auth;     /* IMAGE_PULL_AUTH for the daemons, or NULL */
	const char *token;    /* a registry bearer token for them, or NULL */
	unsigned monitor_s;   /* restart dead daemons this often; 0 = never */
};
int snap_daemons_new(const struct snap_daemons_opts *o,
		     struct snap_daemons **ret, struct lp_err *err);
/* Starts the thread that restarts wanted daemons that died. */
void snap_daemons_start_monitor(struct snap_daemons *d);
/* Stops the monitor; the daemons keep running.  Accepts NULL. */
void snap_daemons_free(struct snap_daemons *d);
/* <root>/mnt/<id>, malloc'd */
char *snap_daemon_mountpoint(const struct snap_daemons *d, uint64_t id);
/*
 * Makes sure layer digest of image (digest NULL: the RAFS tree of a nydus
 * image, `lazypull mount REF`) is served at the mountpoint of id:
 * re-attaches to a live daemon, else (re)starts one and waits until it
 * serves.  From then on the monitor keeps it running.
 */
int snap_daemon_ensure(struct snap_daemons *d, uint64_t id, const char *image,
		       const char *digest, bool merged, struct lp_err *err);
/*
 * `lazypull probe` of a layer (Prepare): the TOC is read and checked by
 * that process, not by the snapshotter, and lands in the blob cache the
 * daemons share.  With warm, the probe goes on fetching the layer's
 * landmark range and the files of trace it holds into that cache after
 * answering (reaped by the monitor; ended by snap_daemons_free), and
 * the layer's daemon waits for it rather than fetching them twice.
 */
struct snap_probe {
	const char *image, *digest;
	const char *toc_digest; /* expected, or NULL */
	bool no_toc;		/* detect only (eStargz disabled) */
	bool tell_toc;		/* answer with the TOC's digest too */
	bool resolve;		/* then the image's manifest into the cache */
	bool warm;
	const char *trace;	/* an access trace file, or NULL */
};
/* 1 with the detected format in fmt, 0 for none lazypull reads, -errno
 * with a message (the registry, a TOC failing its checks). */
int snap_daemons_probe(struct snap_daemons *d, const struct snap_probe *q,
		       char *fmt, size_t fmt_size, struct lp_err *err);
/*
 * Starts the probe of a layer the pull will Prepare later (the layer-list
 * label names them) now, in the background.  Its layer's TOC digest label
 * is not known yet (q->toc_digest is ignored): the probe tells the digest
 * of the TOC it loaded, and snap_daemons_probe() of that layer takes the
 * answer and checks it against the label instead of starting a probe of
 * its own.  Reaped like warming probes.
 */
void snap_daemons_probe_ahead(struct snap_daemons *d,
			      const struct snap_probe *q);
/*
 * Starts the fs daemon of image's layers up to digest, merged, ahead of
 * the snapshot it will serve (the pull's first Prepare knows the image's
 * top layer): it opens the image meanwhile and mounts as soon as that
 * snapshot's daemon is asked for (snap_daemon_ensure).  One nobody asks
 * for within 2 minutes is let go.  _cancel lets it go now.
 */
void snap_daemons_prestart(struct snap_daemons *d, const char *image,
			   const char *digest);
void snap_daemons_prestart_cancel(struct snap_daemons *d, const char *image,
				  const char *digest);
/* Unmounts and stops the daemon of id, removes its files. */
void snap_daemon_stop(struct snap_daemons *d, uint64_t id);
/* The ids that have a pid file (a daemon running, or one that died). */
int snap_daemons_list(const struct snap_daemons *d, uint64_t **ret,
		      size_t *ret_n);

/* ---- service (service.c) ------------------------------------------------- */

/* The handlers' context: the store, and the remote layers (may be NULL). */
struct snap_service {
	struct snap_store *store;
	const struct snap_remote_ops *remote;
	void *remote_ctx;
};

/* Percent-encodes a grpc-message (RFC: bytes outside 0x20-0x7e and '%'). */
char *snap_grpc_percent_encode(const char *msg);

#endif
