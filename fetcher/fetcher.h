/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fetcher: the registry client and the on-disk blob cache.
 *
 * Knows nothing of image formats: it turns an image reference into
 * manifests and blob descriptors, reads byte ranges of blobs over HTTP
 * (libcurl), keeps the fetched ranges in a shared on-disk cache and offers
 * a blob as a plain struct lp_source, so format readers use it unchanged.
 *
 * Threads: a fetch_client, a fetch_cache and a blob source may be used by
 * any number of threads at once.  Every transfer runs on a CURL easy handle
 * taken from the client's pool, driven by a curl multi handle also taken
 * from a pool for the duration of one call, so no CURL or CURLM handle is
 * ever used by two threads at the same time.
 *
 * Errors: functions return 0 (or a count) or -errno, and explain why in the
 * optional struct lp_err.  Credentials, tokens and signed URL query strings
 * never appear in messages or logs.
 */
#ifndef LP_FETCHER_H
#define LP_FETCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- references ------------------------------------------------------- */

/*
 * A parsed image reference "[registry/]repo[:tag][@digest]".
 *
 * Docker Hub names are normalized: "ubuntu" is registry "docker.io", repo
 * "library/ubuntu", tag "latest"; its API host is "registry-1.docker.io".
 * The first path component is a registry when it contains '.' or ':', is
 * "localhost", or has an upper-case letter (as docker does).
 */
struct fetch_ref {
	char *registry; /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char *host;	/* the API host[:port]: "registry-1.docker.io" */
	char *repo;	/* "library/ubuntu" */
	char *tag;	/* NULL only if a digest is given */
	char *digest;	/* "sha256:<64 hex>" or NULL */
};

/*
 * Parses s[0..len) (no NUL needed).  Tags default to "latest" when neither
 * tag nor digest is given.  -EINVAL with a message for anything docker
 * would refuse (upper-case repo, bad tag, malformed digest, name > 255).
 */
int fetch_ref_parse(const char *s, size_t len, struct fetch_ref *ret,
		    struct lp_err *err);
void fetch_ref_release(struct fetch_ref *r);
/* The canonical form "registry/repo[:tag][@digest]", malloc'd. */
char *fetch_ref_string(const struct fetch_ref *r);
/* The tag or digest to ask the registry for (digest wins). */
const char *fetch_ref_reference(const struct fetch_ref *r);
/*
 * Checks a content digest: "sha256:" + 64 or "sha512:" + 128 lower-case hex
 * digits.  0 or -EINVAL.
 */
int fetch_digest_check(const char *s, size_t len);

/* ---- manifests and indexes ------------------------------------------- */

#define FETCH_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define FETCH_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define FETCH_MT_DOCKER_MANIFEST                                               \
	"application/vnd.docker.distribution.manifest.v2+json"
#define FETCH_MT_DOCKER_LIST                                                   \
	"application/vnd.docker.distribution.manifest.list.v2+json"

struct fetch_kv {
	char *key, *value;
};

/* os/architecture[/variant]; fields are NULL when absent. */
struct fetch_platform {
	char *os, *arch, *variant;
};

/* A content descriptor (a config, a layer or an index entry). */
struct fetch_desc {
	char *media_type; /* "" when the JSON has none */
	char *digest;	  /* validated with fetch_digest_check() */
	uint64_t size;
	struct fetch_kv *annotations;
	size_t n_annotations;
	struct fetch_platform platform; /* index entries only */
};

enum fetch_manifest_kind {
	FETCH_MANIFEST_IMAGE, /* OCI image manifest or Docker v2 schema 2 */
	FETCH_MANIFEST_INDEX, /* OCI image index or Docker manifest list */
};

struct fetch_manifest {
	enum fetch_manifest_kind kind;
	char *media_type; /* from the JSON, else from Content-Type */
	char digest[72];  /* "sha256:" + hex of the raw bytes */
	uint8_t *raw;	  /* the bytes as served (hashing needs them) */
	size_t raw_len;
	struct fetch_desc config; /* image manifests */
	struct fetch_desc *layers;
	size_t n_layers;
	struct fetch_desc *manifests; /* indexes */
	size_t n_manifests;
	struct fetch_kv *annotations;
	size_t n_annotations;
};

/* Largest manifest or index accepted (what registries enforce too). */
#define FETCH_MANIFEST_MAX (4u << 20)

/*
 * Parses a manifest or index from data[0..len).  content_type (may be NULL)
 * is the HTTP Content-Type, used when the JSON has no mediaType.  Docker
 * schema 1 and unknown types are -EPROTONOSUPPORT; bad JSON, digests or
 * sizes -EINVAL.  The bytes are copied into ret->raw.
 */
int fetch_manifest_parse(const void *data, size_t len, const char *content_type,
			 struct fetch_manifest **ret, struct lp_err *err);
void fetch_manifest_free(struct fetch_manifest *m);
static inline void fetch_manifest_freep(struct fetch_manifest **m)
{
	fetch_manifest_free(*m);
}
/* An annotation's value or NULL. */
const char *fetch_desc_annotation(const struct fetch_desc *d, const char *key);

/* What a container of an image runs, from its config blob. */
struct fetch_image_config {
	char **argv; /* Entrypoint then Cmd, NULL-terminated */
	uint32_t argc;
	char **env; /* "NAME=value", NULL-terminated (or NULL) */
	uint32_t n_env;
	char *workdir; /* or NULL */
};

#define FETCH_CONFIG_MAX (4u << 20)
#define FETCH_CONFIG_MAX_ARGS 4096
#define FETCH_CONFIG_MAX_ENV 4096

/* Parses an OCI / Docker image config from data[0..len): bad JSON or a
 * field of the wrong type is -EINVAL; missing fields are empty. */
int fetch_config_parse(const void *data, size_t len,
		       struct fetch_image_config **ret, struct lp_err *err);
void fetch_image_config_free(struct fetch_image_config *c);
static inline void fetch_image_config_freep(struct fetch_image_config **c)
{
	fetch_image_config_free(*c);
}

/*
 * Parses "os/arch[/variant]" and normalizes architecture aliases
 * (x86_64 -> amd64, aarch64 -> arm64, armhf -> arm/v7, ...).
 */
int fetch_platform_parse(const char *s, struct fetch_platform *ret,
			 struct lp_err *err);
/* The platform this binary was built for, e.g. linux/amd64. */
void fetch_platform_host(struct fetch_platform *ret);
void fetch_platform_release(struct fetch_platform *p);
/* "os/arch[/variant]" into buf (always NUL-terminated). */
void fetch_platform_format(const struct fetch_platform *p, char *buf,
			   size_t size);

/*
 * Picks the index entry for platform p (NULL = the host's).  os and arch
 * must match; a requested variant must match (arm64 treats absent and "v8"
 * as equal); without a requested variant the entry without variant, else
 * the first, wins.  Entries for "unknown/unknown" (attestations) never
 * match.  -ENOENT, with the available platforms in the message.
 */
int fetch_index_select(const struct fetch_manifest *idx,
		       const struct fetch_platform *p,
		       const struct fetch_desc **ret, struct lp_err *err);

/* ---- registry hosts: mirrors and upstream servers ---------------------- */

/*
 * What a host may be asked for (containerd's capabilities).  A request
 * goes to the first healthy host with the capability it needs: blobs and
 * manifests by digest need PULL, manifests by tag RESOLVE.
 */
#define FETCH_CAP_PULL 0x1u
#define FETCH_CAP_RESOLVE 0x2u
#define FETCH_CAP_PUSH 0x4u /* parsed; this client never pushes */
#define FETCH_CAP_ALL 0x7u

/*
 * One host to send registry requests to: a mirror, or the server that
 * replaces a registry's own API host.
 */
struct fetch_endpoint {
	char *url;	 /* as configured, for messages */
	char *host;	 /* host[:port]; NULL = the registry's own API host
			    (a server entry that only sets TLS options) */
	bool plain_http; /* the URL said http:// */
	/* the API root: the URL path with "/v2" appended unless it already
	 * ends in /v2, or the path as written with override_path */
	char *root;
	unsigned caps; /* FETCH_CAP_*; all unless configured */
	bool skip_verify;
	char *ca_file;
	char *client_cert, *client_key; /* TLS client certificate */
	char *proxy;			/* an HTTP(S)/SOCKS proxy URL */
	unsigned connect_timeout_ms;	/* 0 = the client's */
	/* extra request headers, sent as given (a repeated key is a
	 * repeated header); values may be secrets and are never logged */
	struct fetch_kv *headers;
	size_t n_headers;
	/* nydusd: send the registry's credentials to this mirror too;
	 * otherwise a mirror never sees them */
	bool auth_through;
	bool add_ns; /* append ?ns=<registry> to the URL (containerd) */
	/* a mirror failing this many requests in a row is skipped until
	 * health_interval_s has passed and a GET of ping_url (default: the
	 * API root + "/") gets an answer that is not a 5xx; 0 = the client's
	 * mirror_failure_limit and mirror_health_interval_s */
	unsigned failure_limit;
	unsigned health_interval_s;
	char *ping_url;
};

/* The hosts of one registry (a hosts.toml or a nydusd backend config). */
struct fetch_hosts {
	char *registry; /* "docker.io", "127.0.0.1:5000"; NULL = any */
	char *source;	/* the file it came from, for messages, or NULL */
	struct fetch_endpoint *mirrors; /* tried in order */
	size_t n_mirrors;
	/* the upstream tried after the mirrors; NULL = the registry's own
	 * API host with the client's settings */
	struct fetch_endpoint *server;
};

void fetch_hosts_free(struct fetch_hosts *h);
static inline void fetch_hosts_freep(struct fetch_hosts **h)
{
	fetch_hosts_free(*h);
}

/*
 * Parses a containerd hosts.toml from data[0..len): `server`, the
 * top-level host keys (which configure the server) and `[host."URL"]`
 * tables with capabilities, skip_verify, ca, client, header,
 * override_path, dial_timeout and proxy.  Host tables keep their order.
 * path names the file in messages and anchors relative ca/client paths
 * (may be NULL).  Unknown keys are ignored; a value of the wrong type or
 * a bad URL, capability or duration is -EINVAL with "PATH: line N: ...".
 * Mirrors get add_ns.  registry (may be NULL) is stored in the result.
 */
int fetch_hosts_parse_toml(const char *data, size_t len, const char *path,
			   const char *registry, struct fetch_hosts **ret,
			   struct lp_err *err);

/*
 * Finds the hosts.toml for registry under dir as containerd does:
 * dir/HOST_PORT_/ and dir/HOST:PORT/ for a registry with a port, else
 * dir/REGISTRY/, then dir/_default/.  The first of these directories that
 * exists is used: its hosts.toml, or without one docker's certificate
 * files (*.crt a CA, *.cert with *.key a client certificate) for the
 * registry's own host.  Returns 1 and *ret, 0 when nothing applies, or
 * -errno (a broken file: "PATH: line N: ...").
 */
int fetch_hosts_load_dir(const char *dir, const char *registry,
			 struct fetch_hosts **ret, struct lp_err *err);

/*
 * Reads the mirrors of a nydusd JSON config from data[0..len): a whole
 * config (device.backend.config), a backend config object, or a bare
 * array of mirrors.  Each mirror has host (a URL), headers, auth_through,
 * health_check_interval (s, default 5), failure_limit (default 5) and
 * ping_url (default the host's /v2/).  A `proxy` {url, fallback, ping_url,
 * check_interval} becomes a mirror, or with fallback false the server.
 * Mirrors get FETCH_CAP_PULL only: nydusd never resolves tags through
 * them.  registry is the backend's `host` if set (docker aliases
 * normalized to docker.io), else NULL.  Errors name path and, for syntax
 * errors, line and column; for bad values the JSON path
 * ("mirrors[1].failure_limit").
 */
int fetch_hosts_parse_nydusd(const char *data, size_t len, const char *path,
			     struct fetch_hosts **ret, struct lp_err *err);
/* Reads and parses a nydusd config file. */
int fetch_hosts_load_nydusd(const char *path, struct fetch_hosts **ret,
			    struct lp_err *err);

/* ---- the registry client --------------------------------------------- */

/* One finished HTTP exchange, for -v style tracing. */
struct fetch_trace {
	const char *method; /* "GET" or "HEAD" */
	const char *url;    /* without user info and query string */
	bool has_range;
	unsigned ranges; /* how many ranges the request asked for: several
			    span range_off..range_off+range_len */
	bool suffix; /* the last range_len bytes (range_off: where they
			started, once answered) */
	uint64_t range_off, range_len;
	long status;	  /* 0 if no HTTP answer (connection error) */
	uint64_t bytes;	  /* body bytes received */
	unsigned attempt; /* 0 for the first try */
	double seconds;
	const char *error; /* a transport error, or NULL */
	int http_version;  /* 10, 11, 20 (HTTP/2), 30; 0 if none */
	unsigned new_connections; /* opened for this exchange (0: reused,
				     or a stream of a multiplexed one) */
};
typedef void (*fetch_trace_fn)(const struct fetch_trace *t, void *data);

struct fetch_opts {
	/* scheme: https unless plain_http; skip_verify turns off TLS checks
	 * and, like nydusd, falls back to http when TLS fails to connect */
	bool plain_http;
	bool skip_verify;
	const char *ca_file;

	/*
	 * Credentials, first found wins: username+password; then the env
	 * IMAGE_PULL_AUTH (base64 "user:pass"); then auth (base64
	 * "user:pass", nydusd's backend "auth"); then the docker config.
	 * registry_token is sent as a bearer token as it is.
	 */
	const char *username, *password;
	const char *auth;
	const char *registry_token;
	/* path of a docker config.json; NULL = $DOCKER_CONFIG/config.json or
	 * $HOME/.docker/config.json; "" = none */
	const char *docker_config;
	bool no_env_auth; /* ignore IMAGE_PULL_AUTH */

	unsigned connect_timeout_ms; /* default 5000 */
	unsigned timeout_ms;	     /* a whole request; default 60000 */
	/* abort a transfer that receives nothing for this long (whole-blob
	 * streams have no total timeout); default 10 */
	unsigned stall_timeout_s;
	/* retries after the first try, for connection errors, timeouts,
	 * truncated or over-long bodies, 5xx and 429; default 3 */
	unsigned retry_limit;
	unsigned retry_base_ms; /* first backoff; doubles, jittered; 200 */
	unsigned retry_max_ms;	/* cap of one wait, Retry-After too; 10000 */

	/*
	 * Mirrors.  hosts (n_hosts entries, copied) are used first: the
	 * first whose registry matches (NULL matches any); else a hosts.toml
	 * found under hosts_dir (containerd's certs.d layout, NULL = none),
	 * read once per registry.  Requests go to the first usable mirror
	 * with the needed capability; a connection error, timeout, 5xx,
	 * 429 or bad body falls through to the next host at once (no retry
	 * on a mirror), a 4xx too (without counting as a failure), and the
	 * upstream gets the retries.  Credentials and registry_token only go
	 * to the upstream and to auth_through mirrors.
	 */
	const struct fetch_hosts *const *hosts;
	size_t n_hosts;
	const char *hosts_dir;
	unsigned mirror_failure_limit;	   /* default 5 */
	unsigned mirror_health_interval_s; /* default 5 */

	/* transfers at once in fetch_blob_read_many(); default 8 */
	unsigned max_concurrent;
	/* ranges one request of fetch_blob_read_many() may ask for together
	 * (short reads near each other; the registry answers with a
	 * multipart body); 1 = one range per request; default 16, at most
	 * 64.  A host that answers such a request with anything else than
	 * the ranges gets one range per request from then on. */
	unsigned max_ranges;

	const char *user_agent; /* NULL = "lazypull/<version>" */
	fetch_trace_fn trace;	/* called after every HTTP exchange */
	void *trace_data;
};

/* Fills in the defaults above (everything else zero). */
void fetch_opts_init(struct fetch_opts *o);

struct fetch_stats {
	uint64_t requests; /* HTTP exchanges, token requests included */
	uint64_t bytes;	   /* body bytes received */
	uint64_t retries;
};

struct fetch_client;

/* The strings in o are copied.  The client is reference counted. */
int fetch_client_new(const struct fetch_opts *o, struct fetch_client **ret,
		     struct lp_err *err);
struct fetch_client *fetch_client_ref(struct fetch_client *c);
void fetch_client_unref(struct fetch_client *c);
static inline void fetch_client_unrefp(struct fetch_client **c)
{
	fetch_client_unref(*c);
}
void fetch_client_stats(struct fetch_client *c, struct fetch_stats *ret);
/*
 * Ends every request of c now and for good, from any thread: each running
 * or waiting one fails with -ECANCELED (its host's health untouched), and
 * so does every later one.  For a mount going away: its reads and
 * prefetches stop waiting on a slow registry.
 */
void fetch_client_cancel(struct fetch_client *c);

/*
 * GETs the manifest or index named by reference (a tag or digest; NULL =
 * fetch_ref_reference(ref)), accepting OCI and Docker v2 manifests and
 * indexes.  When fetched by digest the bytes must hash to it (-EBADMSG).
 * HTTP errors map to -ENOENT (404), -EACCES (401/403), -EIO.
 */
int fetch_get_manifest(struct fetch_client *c, const struct fetch_ref *ref,
		       const char *reference, struct fetch_manifest **ret,
		       struct lp_err *err);

/*
 * Resolves ref to an image manifest: an index is narrowed to platform p
 * (NULL = host) and that manifest fetched.  *ret_index (may be NULL) gets
 * the index if there was one, else NULL.
 */
int fetch_get_image(struct fetch_client *c, const struct fetch_ref *ref,
		    const struct fetch_platform *p, struct fetch_manifest **ret,
		    struct fetch_manifest **ret_index, struct lp_err *err);

/* HEADs a blob: its size from Content-Length. */
int fetch_blob_head(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, uint64_t *ret_size, struct lp_err *err);

/*
 * A blob's size and its last bytes in one request (a suffix range,
 * "bytes=-len"), where a HEAD would give the size alone: the size in
 * *ret_size and the last *ret_len bytes (at most len) at the start of
 * buf.  *ret_len is 0 when a registry that ignores ranges answers with a
 * whole blob larger than len (the transfer stops after the headers).
 */
int fetch_blob_tail(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, void *buf, size_t len,
		    uint64_t *ret_size, size_t *ret_len, struct lp_err *err);

/*
 * Reads exactly len bytes of a blob at off with one Range request (retried
 * as configured).  A 206 must carry a matching Content-Range (and a total
 * equal to blob_size when blob_size is not 0).  A server that ignores
 * Range and answers 200 with the whole blob is accepted: the bytes before
 * off are discarded and the transfer is cut after off+len (the body length
 * must equal blob_size when known).  A body shorter or longer than asked is
 * -EIO, never data.  Returns 0.
 */
int fetch_blob_read(struct fetch_client *c, const struct fetch_ref *ref,
		    const char *digest, uint64_t blob_size, void *buf,
		    size_t len, uint64_t off, struct lp_err *err);

/* One range of fetch_blob_read_many(). */
struct fetch_read {
	uint64_t off;
	size_t len;
	void *buf;  /* len bytes */
	int result; /* set: 0 or -errno */
	/* Optional: called as the body arrives, with how many bytes of buf
	 * are filled so far (from off on).  A retried transfer starts again,
	 * so got can go back; the bytes are the same blob's. */
	void (*progress)(struct fetch_read *r, size_t got, void *arg);
	void *progress_arg;
};

/*
 * fetch_blob_read() of n ranges at once: up to max_concurrent transfers
 * run together on one curl multi handle (several connections over
 * HTTP/1.1, streams of one connection where the server offers HTTP/2),
 * each with the same checks, retries and mirror fall-through as a single
 * read.  Short ranges next to each other in the blob (up to max_ranges,
 * 1 MiB in all) go in one request; a part of its answer counts only
 * where its Content-Range puts it, and a range the answer did not bring
 * whole is asked for alone.  Returns 0 when every range was read, else the first failure's
 * code with its message in err; r[i].result says which ranges failed.
 */
int fetch_blob_read_many(struct fetch_client *c, const struct fetch_ref *ref,
			 const char *digest, uint64_t blob_size,
			 struct fetch_read *r, size_t n, struct lp_err *err);

/*
 * Streams a whole blob to cb (which returns 0 or -errno to stop) and checks
 * it against its digest (-EBADMSG).  Only the stall timeout applies.  A
 * failed attempt is not retried once bytes were handed to cb.
 */
int fetch_blob_stream(struct fetch_client *c, const struct fetch_ref *ref,
		      const char *digest,
		      int (*cb)(const void *data, size_t len, void *arg),
		      void *arg, struct lp_err *err);

/* ---- range planning --------------------------------------------------- */

struct fetch_range {
	uint64_t off, len;
};

struct fetch_plan_opts {
	uint64_t max_gap;  /* merge ranges at most this far apart */
	uint64_t min_size; /* grow smaller requests to this (read-ahead) */
	uint64_t max_size; /* never merge beyond this (0 = unlimited) */
};

/*
 * Sorts r[0..n), drops empty ranges, clamps to [0, limit) (limit 0 = no
 * limit), merges overlapping ranges and ranges at most max_gap apart (while
 * the merged range stays within max_size), then grows each range shorter
 * than min_size forward (backward at the limit) and merges again.  Works
 * in place; returns the new count.  A single range longer than max_size is
 * kept whole (splitting is the caller's business).
 */
size_t fetch_plan(struct fetch_range *r, size_t n,
		  const struct fetch_plan_opts *o, uint64_t limit);

/* ---- the blob cache ---------------------------------------------------- */

/*
 * Layout under root: blobs/<algo>/<hex>.data, a sparse file of the blob's
 * size, and blobs/<algo>/<hex>.map, which says which granules of the data
 * file hold fetched bytes: a checksummed bitmap snapshot followed by
 * checksummed append-only records.  Data is written and fdatasync'ed before
 * its record is appended, and a torn or bad record ends the replay, so a
 * crash can lose a range but never marks one present that is not.
 *
 * Blobs are keyed by digest only, so every image using a blob shares it.
 * An open blob holds a shared flock on its data file; eviction (LRU by the
 * map file's mtime, touched on every open) only removes blobs it can lock
 * exclusively, in any process.  max_bytes is the bound on the allocated
 * size of all data files; blobs in use are never evicted, so the bound is
 * soft while they exceed it.
 */
struct fetch_cache_opts {
	const char *root;   /* created if missing */
	uint64_t max_bytes; /* 0 = unbounded */
	uint32_t granule;   /* power of two, 4 KiB..16 MiB; default 16 KiB */
};

/* small: a granule is what a read of a few bytes brings over the link */
#define FETCH_GRANULE_DEFAULT (16u << 10)

struct fetch_cache;

int fetch_cache_open(const struct fetch_cache_opts *o, struct fetch_cache **ret,
		     struct lp_err *err);
struct fetch_cache *fetch_cache_ref(struct fetch_cache *c);
void fetch_cache_unref(struct fetch_cache *c);
static inline void fetch_cache_unrefp(struct fetch_cache **c)
{
	fetch_cache_unref(*c);
}
/*
 * Evicts least recently used blobs that nobody uses until the cache holds
 * at most target bytes.  Returns the number of bytes now held.
 */
int64_t fetch_cache_gc(struct fetch_cache *c, uint64_t target,
		       struct lp_err *err);

/*
 * Small documents (manifests, tag resolutions) kept beside the blobs, under
 * root/docs/<sha256 of key>, written atomically (temporary file + rename).
 * get returns -ENOENT when absent or older than max_age_s (< 0 = any age);
 * *ret is malloc'd and NUL-terminated.
 */
int fetch_cache_doc_put(struct fetch_cache *c, const char *key,
			const void *data, size_t len, struct lp_err *err);
int fetch_cache_doc_get(struct fetch_cache *c, const char *key,
			int64_t max_age_s, uint8_t **ret, size_t *ret_len);

/*
 * fetch_get_image() with the manifests kept in the cache: manifests are
 * content-addressed and reused forever (re-verified on load); a tag's
 * resolution is reused while younger than tag_ttl_s (0 = always ask the
 * registry, < 0 = forever).  So a warm cache resolves a digest reference,
 * or a tag within its TTL, without any request.
 */
int fetch_get_image_cached(struct fetch_client *c, struct fetch_cache *cache,
			   const struct fetch_ref *ref,
			   const struct fetch_platform *p, int64_t tag_ttl_s,
			   struct fetch_manifest **ret,
			   struct fetch_manifest **ret_index,
			   struct lp_err *err);

/*
 * The config blob of image manifest m, parsed: from the cache (document
 * "config:<digest>"), else fetched and kept there.  Its sha256 must be the
 * descriptor's digest (else -EBADMSG).
 */
int fetch_get_config_cached(struct fetch_client *c, struct fetch_cache *cache,
			    const struct fetch_ref *ref,
			    const struct fetch_manifest *m,
			    struct fetch_image_config **ret,
			    struct lp_err *err);

/* ---- a blob as a byte source ------------------------------------------ */

struct fetch_source_opts {
	struct fetch_plan_opts plan; /* zero = defaults: gap 128 KiB, min 0,
					max 8 MiB */
	/* size unknown: learn it with a GET of the blob's last tail bytes,
	 * kept in the cache (an eStargz footer and TOC are there), instead
	 * of a HEAD; 0: from the cache's entry for the blob if it has one,
	 * else a HEAD */
	uint32_t tail;
};

/*
 * Opens blob digest of ref's repository as an lp_source: pread serves
 * bytes from the cache and fetches the missing granules (merged by the
 * planner; concurrent reads of the same granules share one transfer).
 * size 0 means "ask the registry first" (o->tail).  The source holds references on c
 * and cache; free it with lp_source_free().  pread is thread-safe.
 */
int fetch_blob_source_open(struct fetch_client *c, struct fetch_cache *cache,
			   const struct fetch_ref *ref, const char *digest,
			   uint64_t size, const struct fetch_source_opts *o,
			   struct lp_source **ret, struct lp_err *err);
/* True if s came from fetch_blob_source_open(). */
bool fetch_source_is(const struct lp_source *s);
/*
 * Makes sure the given ranges are cached, fetching what is missing with as
 * few requests as the planner allows; requests for ranges the planner did
 * not merge run concurrently (fetch_blob_read_many, at most 64 MiB held at
 * once).  Engines call this with every chunk a read needs before decoding
 * them.
 */
int fetch_source_prefetch(struct lp_source *s, const struct fetch_range *r,
			  size_t n, struct lp_err *err);
/*
 * Forgets the cached granules overlapping [off, off+len), e.g. after a
 * chunk failed its digest, so the next read fetches them again.
 */
int fetch_source_invalidate(struct lp_source *s, uint64_t off, uint64_t len);
/*
 * Fetches the whole blob in one streamed GET.  What arrives is marked
 * present every MiB, before the blob's digest is known (a reader verifies
 * what it reads: chunk digests, or the zran build's digest of the whole
 * stream); at the end the digest is checked: -EBADMSG when it does not
 * match, and then the blob's bytes are dropped from the cache.  ctl (may
 * be NULL) is shared with another thread (atomics): ctl->stop set, the
 * stream is abandoned (-ECANCELED); the fill sets ctl->claimed once the
 * granules it will bring are claimed (reads of them then wait for the
 * stream instead of fetching them too), or when it gives up before.
 */
struct fetch_fill_ctl {
	int stop;
	int claimed;
};
int fetch_source_fill(struct lp_source *s, struct fetch_fill_ctl *ctl,
		      struct lp_err *err);
/*
 * pread has no room for a message: the last failure of a read is kept
 * here.  Returns its code (0 if none).
 */
int fetch_source_last_error(struct lp_source *s, struct lp_err *ret);
/* Bytes of the blob present in the cache. */
uint64_t fetch_source_cached_bytes(struct lp_source *s);
/*
 * Marks s's blob as warmed by this process until s (and every other open
 * of the blob here) is closed: other processes' lp_source_warming() of
 * the blob is true meanwhile, and their prefetchers wait for it instead
 * of fetching the same ranges.  -EBUSY if another process warms it.
 */
int fetch_source_warm_begin(struct lp_source *s);

#endif
