/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshotter: lazypull's containerd proxy snapshotter (`lazypull-snapshotter`,
 * also installable as `containerd-nydus-grpc`).
 *
 * Three layers, each usable on its own (tests drive each directly):
 *
 *   config  - the nydus-snapshotter command line, config.toml and nydusd
 *             JSON, merged into one struct snap_config (flags win).
 *   store   - snapshot metadata in LMDB (<root>/metadata.mdb) plus the
 *             directories <root>/snapshots/<id>/{fs,work}; containerd's
 *             snapshotter semantics and error classes, overlayfs-style
 *             mounts.  Thread-safe.
 *   server  - the containerd.services.snapshots.v1.Snapshots gRPC service
 *             on a unix socket: HTTP/2 by libnghttp2 on one event-loop
 *             thread, messages by protobuf-c, handlers on worker pools.
 *
 * Errors are negative errnos with the why in a struct lp_err; the server
 * maps them to gRPC codes once (snap_grpc_code()):
 *   -ENOENT NotFound, -EEXIST AlreadyExists, -EINVAL InvalidArgument,
 *   -EBUSY FailedPrecondition, -EOPNOTSUPP Unimplemented, -ECANCELED
 *   Canceled, -ETIMEDOUT DeadlineExceeded, -EAGAIN Unavailable, -ENOSPC
 *   ResourceExhausted, -EPERM/-EACCES PermissionDenied, else Unknown.
 * Store functions never return those errnos for an unrelated system error
 * (a failed mkdir is -EIO with the strerror in the message), so a code
 * always means what containerd's errdefs says it means.
 */
#ifndef LP_SNAPSHOTTER_H
#define LP_SNAPSHOTTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- config ------------------------------------------------------------ */

#define SNAP_DEFAULT_ROOT "/var/lib/containerd-nydus"
#define SNAP_DEFAULT_ADDRESS "/run/containerd-nydus/containerd-nydus-grpc.sock"
#define SNAP_DEFAULT_NYDUSD_CONFIG "/etc/nydus/nydusd-config.json"

/* nydusd JSON device.backend.config: what a registry backend needs */
struct snap_backend {
	char *type;	      /* "registry", "localfs", … ("" = unset) */
	char *scheme;	      /* "http" selects plain HTTP, else https */
	char *host, *repo;    /* usually filled per image from its ref */
	char *auth;	      /* base64("user:pass"); secret, never logged */
	char *registry_token; /* secret, never logged */
	bool skip_verify;
	int64_t timeout_s, connect_timeout_s, retry_limit;
	char **mirrors;	      /* legacy mirrors[].host */
	size_t n_mirrors;
};

struct snap_prefetch {
	bool enable;
	int64_t threads;
	bool prefetch_all;
	int64_t bandwidth_rate; /* bytes/s, 0 = unlimited */
};

enum snap_daemon_mode {
	SNAP_DAEMON_DEDICATED, /* also "multiple" */
	SNAP_DAEMON_SHARED,
};

struct snap_config {
	char *root;
	char *address;
	char *config_path;   /* --config: nydus-snapshotter config.toml */
	char *nydusd_config; /* --nydusd-config / --config-path (JSON) */
	bool nydusd_config_explicit; /* missing file is an error only then */
	bool enable_stargz;
	bool enable_zran;    /* plain gzip layers lazily, through zran */
	bool early_mount;    /* fs daemons on Prepare, not the first Mounts */
	bool no_merged_mounts; /* a mount per remote layer, not per image */
	bool no_warm;	     /* Prepare's probe does not warm the cache */
	char *lazypull_path; /* the lazypull binary (fs daemons); NULL =
			      * next to this one, else $PATH */
	enum lp_log_level log_level;
	bool log_to_stdout;
	char *log_dir;	     /* [log] dir; default <root>/logs */
	char *cache_dir;     /* [cache_manager] cache_dir or nydusd JSON
			      * work_dir; default <root>/cache */
	char *mirrors_dir;   /* [remote.mirrors_config] dir */
	enum snap_daemon_mode daemon_mode;
	int threads;	     /* slow-pool workers (blocking handlers) */
	/* from the nydusd JSON */
	struct snap_backend backend;
	struct snap_prefetch prefetch;
	char *cache_type;    /* device.cache.type */
	int64_t amplify_io;  /* bytes fetched at least on a cache miss (the
			      * fs daemons' --fetch-window); -1 = default */
	uint64_t cache_max;  /* --cache-max, [cache_manager] max_bytes: the
			      * blob cache's bound (LRU); 0 = none */
	/* lines for the log once it is set up (ignored flags, defaults) */
	char **notes;
	size_t n_notes;
};

/*
 * Parses the command line (nydus-snapshotter's flags; single-dash long
 * flags and --flag=value work as with Go's flag package), then config.toml
 * (--config) for every setting no flag gave, then the nydusd JSON.
 * Returns 0 to run, 1 when --version or --help was printed (exit 0), or
 * -EINVAL with a message for the user (exit non-zero).  Ignored nydus
 * flags are logged once at info level.
 */
int snap_config_load(struct snap_config *c, int argc, char **argv,
		     struct lp_err *err);
/* Reads the nydusd JSON at path into c (backend, cache, prefetch). */
int snap_config_load_nydusd(struct snap_config *c, const char *path,
			    struct lp_err *err);
void snap_config_release(struct snap_config *c);

/* ---- store ------------------------------------------------------------- */

/* Same values as containerd.services.snapshots.v1.Kind. */
enum snap_kind {
	SNAP_KIND_UNKNOWN = 0,
	SNAP_KIND_VIEW = 1,
	SNAP_KIND_ACTIVE = 2,
	SNAP_KIND_COMMITTED = 3,
};

struct snap_label {
	char *key, *value;
};

struct snap_info {
	char *name;
	char *parent; /* "" when none */
	enum snap_kind kind;
	int64_t created_ns, updated_ns; /* UTC, since the epoch */
	struct snap_label *labels;	/* sorted by key, no empty values */
	size_t n_labels;
	uint64_t id; /* the store's id (<root>/snapshots/<id>); never reused */
};
void snap_info_release(struct snap_info *i);

struct snap_mount {
	char *type, *source;
	char **options;
	size_t n_options;
};
struct snap_mounts {
	struct snap_mount *m;
	size_t n;
};
void snap_mounts_release(struct snap_mounts *m);

struct snap_usage {
	int64_t size;	/* allocated bytes (st_blocks * 512), links once */
	int64_t inodes;
};

/* Largest key + value of one label, as containerd's labels.Validate. */
#define SNAP_LABEL_MAX 4096

struct snap_store;

/*
 * Opens (creating) <root>, <root>/snapshots and <root>/metadata.mdb.
 * Leftover temporary directories of an interrupted call are removed.
 */
int snap_store_open(const char *root, struct snap_store **ret,
		    struct lp_err *err);
void snap_store_close(struct snap_store *s);
const char *snap_store_root(const struct snap_store *s);

/*
 * Creates an active (kind ACTIVE, Prepare) or view (kind VIEW, View)
 * snapshot.  -EEXIST key exists; -ENOENT parent missing; -EINVAL parent not
 * committed, empty key, or a label too large.
 */
int snap_store_create(struct snap_store *s, enum snap_kind kind,
		      const char *key, const char *parent,
		      const struct snap_label *labels, size_t n_labels,
		      struct snap_mounts *ret, struct lp_err *err);
/*
 * Creates committed snapshot `name` directly, with an empty fs: a layer
 * whose contents are served from elsewhere (a remote layer).  -EEXIST name
 * exists; -ENOENT parent missing; -EINVAL parent not committed.
 */
int snap_store_add_committed(struct snap_store *s, const char *name,
			     const char *parent,
			     const struct snap_label *labels, size_t n_labels,
			     struct lp_err *err);
/*
 * Where the layer of committed snapshot `info` is to be found when it is
 * a parent in mounts: a malloc'd directory, or NULL for its own fs.  Called
 * inside store transactions, so it must be quick and must not call the
 * store.  *ret_covers (false on entry) set true says the directory can
 * also stand for all of info's ancestors, provided each of them says so
 * too: the nearest parent of a chain whose ancestors all cover is then
 * the chain's only lowerdir (one merged mount for the image's layers up
 * to it; snap_chain_covering() finds it).
 */
typedef char *(*snap_lower_fn)(void *arg, const struct snap_info *info,
			       bool *ret_covers);
/*
 * Given covers[0..n) of a parent chain (nearest first), the index of the
 * parent that stands for itself and every one below it, or n when none
 * does (fewer than two covering parents at the bottom of the chain).
 */
size_t snap_chain_covering(const bool *covers, size_t n);
/* Sets the lower hook; call before the store is shared between threads. */
void snap_store_set_lower(struct snap_store *s, snap_lower_fn fn, void *arg);
/* -ENOENT missing; -EBUSY when key is committed. */
int snap_store_mounts(struct snap_store *s, const char *key,
		      struct snap_mounts *ret, struct lp_err *err);
/*
 * Commits active `key` as `name` with these labels (not inherited).
 * -EEXIST name exists; -ENOENT key missing; -EBUSY key not active.
 */
int snap_store_commit(struct snap_store *s, const char *name, const char *key,
		      const struct snap_label *labels, size_t n_labels,
		      struct lp_err *err);
/* -ENOENT missing; -EBUSY it has children. */
int snap_store_remove(struct snap_store *s, const char *key,
		      struct lp_err *err);
int snap_store_stat(struct snap_store *s, const char *key,
		    struct snap_info *ret, struct lp_err *err);
/*
 * Updates the labels of info->name: with no paths all labels are replaced;
 * "labels" replaces all, "labels.<k>" sets or (empty value) deletes one;
 * any other path is -EINVAL.  *ret is the updated info.
 */
int snap_store_update(struct snap_store *s, const struct snap_info *info,
		      const char *const *paths, size_t n_paths,
		      struct snap_info *ret, struct lp_err *err);
/* Active snapshots are measured now; others report what Commit measured. */
int snap_store_usage(struct snap_store *s, const char *key,
		     struct snap_usage *ret, struct lp_err *err);
/* Removes directories under <root>/snapshots no snapshot owns. */
int snap_store_cleanup(struct snap_store *s, struct lp_err *err);

/*
 * Calls fn for up to `max` snapshots matching filter f (NULL = all), in
 * storage order, starting after the position in *cursor (empty = start).
 * *cursor is updated so the next call resumes; *ret_done tells whether the
 * end was reached.  Each call is its own read transaction, so a List that
 * is paced by the client never pins the database.  fn returns 0 to go on,
 * > 0 to stop after this snapshot, or a negative errno to fail.
 */
struct snap_filter;
struct snap_cursor {
	uint8_t key[512];
	size_t len;
};
int snap_store_walk(struct snap_store *s, struct snap_cursor *cursor,
		    const struct snap_filter *f, size_t max,
		    int (*fn)(const struct snap_info *i, void *data),
		    void *data, bool *ret_done, struct lp_err *err);

/*
 * containerd filter syntax (containerd/filters): the filters are ORed, each
 * a comma-separated AND of `fieldpath`, `fieldpath==value`, `!=` or `~=`
 * (regular expression); fields are name, parent, kind (active, view,
 * committed) and labels.<key> (quote keys with dots: labels."a.b").
 * -EINVAL with the position of a syntax error.
 */
int snap_filter_parse(const char *const *filters, size_t n,
		      struct snap_filter **ret, struct lp_err *err);
bool snap_filter_match(const struct snap_filter *f,
		       const struct snap_info *i);
void snap_filter_free(struct snap_filter *f);

/* ---- server ------------------------------------------------------------ */

/* gRPC status codes (google.rpc.Code) */
enum snap_grpc_code {
	SNAP_GRPC_OK = 0,
	SNAP_GRPC_CANCELLED = 1,
	SNAP_GRPC_UNKNOWN = 2,
	SNAP_GRPC_INVALID_ARGUMENT = 3,
	SNAP_GRPC_DEADLINE_EXCEEDED = 4,
	SNAP_GRPC_NOT_FOUND = 5,
	SNAP_GRPC_ALREADY_EXISTS = 6,
	SNAP_GRPC_PERMISSION_DENIED = 7,
	SNAP_GRPC_RESOURCE_EXHAUSTED = 8,
	SNAP_GRPC_FAILED_PRECONDITION = 9,
	SNAP_GRPC_ABORTED = 10,
	SNAP_GRPC_UNIMPLEMENTED = 12,
	SNAP_GRPC_INTERNAL = 13,
	SNAP_GRPC_UNAVAILABLE = 14,
};
/* The one errno -> gRPC code table (see the top of this file). */
enum snap_grpc_code snap_grpc_code(int neg_errno);

struct snap_server_opts {
	const char *address;	/* unix socket path */
	int fast_threads;	/* metadata-only calls (Stat, List, …) */
	int slow_threads;	/* calls that touch the filesystem; grows on
				 * demand up to 8x this */
	uint32_t max_msg;	/* request size cap; 0 = 16 MiB */
	/* remote layers (snap_remote_ops, a struct snap_remote); NULL =
	 * an ordinary snapshotter */
	const struct snap_remote_ops *remote;
	void *remote_ctx;
};

struct snap_remote_ops;
struct snap_server;
/*
 * Binds the socket (umask 077: mode 0600, parent directories 0700 when
 * created; a stale socket is replaced, a live one is -EADDRINUSE) and starts
 * the worker pools.  The store is borrowed.
 */
int snap_server_new(const struct snap_server_opts *o, struct snap_store *st,
		    struct snap_server **ret, struct lp_err *err);
/*
 * Runs the event loop until SIGTERM/SIGINT (the caller blocks them in every
 * thread before snap_server_new) or snap_server_stop().  On stop it sends
 * GOAWAY, lets in-flight calls finish (up to 10 s) and removes the socket.
 */
int snap_server_run(struct snap_server *srv, struct lp_err *err);
void snap_server_stop(struct snap_server *srv); /* async-signal-safe */
void snap_server_free(struct snap_server *srv);

/* ---- remote layers (remote.c, daemon.c) --------------------------------- */

/*
 * Lazily pulled layers.  On Prepare of a layer (containerd.io/snapshot.ref
 * set) the snapshotter decides, per layer, as nydus-snapshotter does:
 *   - nydus-bootstrap: an ordinary snapshot containerd unpacks;
 *   - nydus-blob: remote, with no registry access (it is read through the
 *     bootstrap above it);
 *   - a layer above a nydus bootstrap: an ordinary snapshot;
 *   - with stargz on: an eStargz / zstd:chunked layer (the toc.digest label
 *     or a footer probe) whose TOC verifies against the label -> remote;
 *   - with zran on: a plain gzip layer -> remote (indexed by its daemon);
 *   - anything else, or any failure: an ordinary snapshot.
 * A remote layer is committed under the ref with the labels plus
 * containerd.io/snapshot/remote, and the call answers AlreadyExists, so
 * containerd never fetches the blob.  The image reference and layer digest
 * come from the ctr-remote labels (…/remote/stargz.reference, .digest) or
 * the CRI ones (…/cri.image-ref, .layer-digest).
 *
 * A remote layer is served by its own fs daemon, `lazypull mount REF
 * --layer-digest D` in overlay form, mounted at <root>/mnt/<id> with
 * <root>/daemons/<id>.pid and .log; started when a snapshot above it is
 * first prepared or mounted, and put in that snapshot's lowerdir in its
 * place in the chain.  A nydus image is served by one daemon, `lazypull
 * mount REF` (its bootstrap's RAFS tree), whose mount replaces the
 * bootstrap layer's fs in the chain; its data blob layers are empty.  The
 * daemons of one chain start in parallel.  Daemons outlive the
 * snapshotter: at start it re-attaches to them by their pid files, and
 * restarts (after a lazy unmount of the dead mount) any that died, also
 * while it runs.  Removing the layer unmounts and stops its daemon.
 */
struct snap_remote;
/* Sets the store's lower hook; recovers the daemons.  st is borrowed. */
int snap_remote_new(const struct snap_config *c, struct snap_store *st,
		    struct snap_remote **ret, struct lp_err *err);
/* Stops the supervision; the daemons keep serving.  Accepts NULL. */
void snap_remote_free(struct snap_remote *r);
extern const struct snap_remote_ops snap_remote_ops;

#endif
