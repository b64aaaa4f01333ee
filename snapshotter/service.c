/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.services.snapshots.v1.Snapshots: protobuf-c messages in and
 * out of the store.  Each handler runs on a worker thread (grpc.c); the
 * store is thread-safe.
 */
#define LP_MODNAME "snapshotter"

#include <stdio.h>
#include <string.h>

#include "snapshotter/proto/mount.pb-c.h"
#include "snapshotter/proto/snapshots.pb-c.h"
#include "snapshotter/snapshotter-int.h"

typedef Containerd__Services__Snapshots__V1__Info PbInfo;
typedef Containerd__Services__Snapshots__V1__Info__LabelsEntry PbLabel;
typedef Containerd__Types__Mount PbMount;
typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest PrepareReq;
typedef Containerd__Services__Snapshots__V1__PrepareSnapshotResponse PrepareResp;
typedef Containerd__Services__Snapshots__V1__MountsRequest MountsReq;
typedef Containerd__Services__Snapshots__V1__MountsResponse MountsResp;
typedef Containerd__Services__Snapshots__V1__CommitSnapshotRequest CommitReq;
typedef Containerd__Services__Snapshots__V1__RemoveSnapshotRequest RemoveReq;
typedef Containerd__Services__Snapshots__V1__StatSnapshotRequest StatReq;
typedef Containerd__Services__Snapshots__V1__StatSnapshotResponse StatResp;
typedef Containerd__Services__Snapshots__V1__UpdateSnapshotRequest UpdateReq;
typedef Containerd__Services__Snapshots__V1__UsageRequest UsageReq;
typedef Containerd__Services__Snapshots__V1__UsageResponse UsageResp;
typedef Containerd__Services__Snapshots__V1__ListSnapshotsRequest ListReq;
typedef Containerd__Services__Snapshots__V1__ListSnapshotsResponse ListResp;

/* generated names are long: the descriptor and initializer of a message */
#define DESC(x) (&containerd__services__snapshots__v1__##x##__descriptor)
#define PB_INIT(T, x)                                                          \
	({                                                                     \
		T _m;                                                          \
		protobuf_c_message_init(DESC(x), &_m);                         \
		_m;                                                            \
	})

const char snap_service_name[] = "containerd.services.snapshots.v1.Snapshots";

#define LIST_BATCH 100		/* infos per ListSnapshotsResponse */
#define LIST_MSG_BYTES (1u << 20) /* and at most about this many bytes */
#define LIST_ROUND_BYTES (256u << 10) /* per handler invocation */

static struct snap_store *store_of(void *ctx)
{
	return ((struct snap_service *)ctx)->store;
}

static bool has_label(const struct snap_label *l, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i].key, key) && l[i].value[0])
			return true;
	return false;
}

/* Remote parents must be served before a snapshot over them is mounted. */
static int ensure_lowers(void *ctx, const char *parent, struct lp_err *err)
{
	struct snap_service *svc = ctx;

	if (!svc->remote || !parent || !parent[0])
		return 0;
	return svc->remote->ensure(svc->remote_ctx, parent, err);
}

/* Decodes the request; on failure the call is finished with Internal. */
static ProtobufCMessage *unpack(struct snap_call *c,
				const ProtobufCMessageDescriptor *d)
{
	size_t len;
	const uint8_t *req = snap_call_request(c, &len);
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, req);

	if (!m)
		snap_call_finish(c, SNAP_GRPC_INTERNAL,
				 "grpc: error unmarshalling request: invalid "
				 "protobuf");
	return m;
}

static void send_msg(struct snap_call *c, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = lp_xmalloc(n ? n : 1);

	protobuf_c_message_pack(m, buf);
	snap_call_send(c, buf, n);
	free(buf);
}

static void fail(struct snap_call *c, const char *method, int r,
		 struct lp_err *err)
{
	enum snap_grpc_code code = snap_grpc_code(r);
	const char *msg = err->msg[0] ? err->msg : strerror(-r);

	/* expected answers at debug; real failures are worth a line */
	if (code == SNAP_GRPC_UNKNOWN || code == SNAP_GRPC_RESOURCE_EXHAUSTED ||
	    code == SNAP_GRPC_PERMISSION_DENIED)
		lp_log(LP_LOG_WARN, "%s: %s", method, msg);
	else
		lp_debug("%s: %s", method, msg);
	snap_call_finish(c, code, msg);
}

/* map<string,string> entries -> borrowed labels */
static struct snap_label *labels_in(PbLabel **e, size_t n)
{
	struct snap_label *l = lp_xcalloc(n + 1, sizeof(*l));

	for (size_t i = 0; i < n; i++) {
		l[i].key = e[i]->key ? e[i]->key : "";
		l[i].value = e[i]->value ? e[i]->value : "";
	}
	return l;
}

/* ---- message builders (all storage on the heap, freed by *_free) -------- */

struct pb_info {
	PbInfo info;
	Google__Protobuf__Timestamp created, updated;
	PbLabel *entries;
	PbLabel **labels;
};

static void ts_set(Google__Protobuf__Timestamp *t, int64_t ns)
{
	google__protobuf__timestamp__init(t);
	t->seconds = ns / 1000000000;
	t->nanos = (int32_t)(ns % 1000000000);
	if (t->nanos < 0) {
		t->nanos += 1000000000;
		t->seconds--;
	}
}

/* Borrows the strings of i. */
static void pb_info_fill(struct pb_info *p, const struct snap_info *i)
{
	containerd__services__snapshots__v1__info__init(&p->info);
	p->info.name = i->name;
	p->info.parent = i->parent ? i->parent : "";
	p->info.kind = (Containerd__Services__Snapshots__V1__Kind)i->kind;
	ts_set(&p->created, i->created_ns);
	ts_set(&p->updated, i->updated_ns);
	p->info.created_at = &p->created;
	p->info.updated_at = &p->updated;
	p->entries = lp_xcalloc(i->n_labels + 1, sizeof(*p->entries));
	p->labels = lp_xcalloc(i->n_labels + 1, sizeof(*p->labels));
	for (size_t k = 0; k < i->n_labels; k++) {
		containerd__services__snapshots__v1__info__labels_entry__init(
			&p->entries[k]);
		p->entries[k].key = i->labels[k].key;
		p->entries[k].value = i->labels[k].value;
		p->labels[k] = &p->entries[k];
	}
	p->info.n_labels = i->n_labels;
	p->info.labels = p->labels;
}

static void pb_info_release(struct pb_info *p)
{
	free(p->entries);
	free(p->labels);
}

struct pb_mounts {
	PbMount *m;
	PbMount **ptrs;
	size_t n;
};

static void pb_mounts_fill(struct pb_mounts *p, const struct snap_mounts *m)
{
	p->n = m->n;
	p->m = lp_xcalloc(m->n + 1, sizeof(*p->m));
	p->ptrs = lp_xcalloc(m->n + 1, sizeof(*p->ptrs));
	for (size_t i = 0; i < m->n; i++) {
		containerd__types__mount__init(&p->m[i]);
		p->m[i].type = m->m[i].type;
		p->m[i].source = m->m[i].source;
		p->m[i].n_options = m->m[i].n_options;
		p->m[i].options = m->m[i].options;
		p->ptrs[i] = &p->m[i];
	}
}

static void pb_mounts_release(struct pb_mounts *p)
{
	free(p->m);
	free(p->ptrs);
}

/* ---- handlers ------------------------------------------------------------ */

static enum snap_call_ret create(struct snap_call *c, void *ctx,
				 enum snap_kind kind)
{
	const ProtobufCMessageDescriptor *d =
		kind == SNAP_KIND_ACTIVE ? DESC(prepare_snapshot_request) :
					   DESC(view_snapshot_request);
	/* Prepare and View requests have the same fields and numbers */
	PrepareReq *req = (void *)unpack(c, d);
	PrepareResp resp = PB_INIT(PrepareResp, prepare_snapshot_response);
	struct snap_service *svc = ctx;
	struct snap_mounts m = { 0 };
	struct pb_mounts pm = { 0 };
	struct lp_err err = { 0 };
	struct snap_label *l;
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	l = labels_in((PbLabel **)req->labels, req->n_labels);
	r = 0;
	if (svc->remote && kind == SNAP_KIND_ACTIVE &&
	    has_label(l, req->n_labels, SNAP_LABEL_REF)) {
		/* a layer: maybe a remote one (then AlreadyExists) */
		r = svc->remote->prepare(svc->remote_ctx, req->key,
					 req->parent, l, req->n_labels, &err);
		if (r > 0)
			r = -EEXIST;
	}
	if (r == 0)
		r = ensure_lowers(ctx, req->parent, &err);
	if (r == 0)
		r = snap_store_create(store_of(ctx), kind, req->key,
				      req->parent, l, req->n_labels, &m, &err);
	free(l);
	if (r < 0) {
		fail(c, kind == SNAP_KIND_ACTIVE ? "prepare" : "view", r, &err);
	} else {
		lp_debug("%s key=%s parent=%s",
			 kind == SNAP_KIND_ACTIVE ? "prepare" : "view",
			 req->key, req->parent);
		pb_mounts_fill(&pm, &m);
		resp.n_mounts = pm.n;
		resp.mounts = pm.ptrs;
		/* View's response has the same shape */
		send_msg(c, &resp.base);
		pb_mounts_release(&pm);
		snap_mounts_release(&m);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret h_prepare(struct snap_call *c, void *ctx)
{
	return create(c, ctx, SNAP_KIND_ACTIVE);
}

static enum snap_call_ret h_view(struct snap_call *c, void *ctx)
{
	return create(c, ctx, SNAP_KIND_VIEW);
}

static enum snap_call_ret h_mounts(struct snap_call *c, void *ctx)
{
	MountsReq *req = (void *)unpack(c, DESC(mounts_request));
	MountsResp resp = PB_INIT(MountsResp, mounts_response);
	struct snap_mounts m = { 0 };
	struct pb_mounts pm = { 0 };
	struct lp_err err = { 0 };
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	r = 0;
	if (((struct snap_service *)ctx)->remote) {
		struct snap_info info = { 0 };

		r = snap_store_stat(store_of(ctx), req->key, &info, &err);
		if (r == 0 && info.kind != SNAP_KIND_COMMITTED)
			r = ensure_lowers(ctx, info.parent, &err);
		snap_info_release(&info);
	}
	if (r == 0)
		r = snap_store_mounts(store_of(ctx), req->key, &m, &err);
	if (r < 0) {
		fail(c, "mounts", r, &err);
	} else {
		pb_mounts_fill(&pm, &m);
		resp.n_mounts = pm.n;
		resp.mounts = pm.ptrs;
		send_msg(c, &resp.base);
		pb_mounts_release(&pm);
		snap_mounts_release(&m);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static void send_empty(struct snap_call *c)
{
	snap_call_send(c, "", 0);
}

static enum snap_call_ret h_commit(struct snap_call *c, void *ctx)
{
	CommitReq *req = (void *)unpack(c, DESC(commit_snapshot_request));
	struct lp_err err = { 0 };
	struct snap_label *l;
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	l = labels_in((PbLabel **)req->labels, req->n_labels);
	r = snap_store_commit(store_of(ctx), req->name, req->key, l,
			      req->n_labels, &err);
	free(l);
	if (r < 0) {
		fail(c, "commit", r, &err);
	} else {
		lp_debug("commit key=%s name=%s", req->key, req->name);
		send_empty(c);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret h_remove(struct snap_call *c, void *ctx)
{
	RemoveReq *req = (void *)unpack(c, DESC(remove_snapshot_request));
	struct snap_service *svc = ctx;
	struct snap_info info = { 0 };
	bool have_info = false;
	struct lp_err err = { 0 };
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	if (svc->remote)
		have_info = snap_store_stat(store_of(ctx), req->key, &info,
					    NULL) == 0;
	r = snap_store_remove(store_of(ctx), req->key, &err);
	if (r < 0) {
		fail(c, "remove", r, &err);
	} else {
		lp_debug("remove key=%s", req->key);
		if (have_info)
			svc->remote->removed(svc->remote_ctx, &info);
		send_empty(c);
	}
	snap_info_release(&info);
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static void send_info(struct snap_call *c, const struct snap_info *i)
{
	/* Stat and Update responses are both `Info info = 1` */
	StatResp resp = PB_INIT(StatResp, stat_snapshot_response);
	struct pb_info p;

	pb_info_fill(&p, i);
	resp.info = &p.info;
	send_msg(c, &resp.base);
	pb_info_release(&p);
}

static enum snap_call_ret h_stat(struct snap_call *c, void *ctx)
{
	StatReq *req = (void *)unpack(c, DESC(stat_snapshot_request));
	struct snap_info info = { 0 };
	struct lp_err err = { 0 };
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	r = snap_store_stat(store_of(ctx), req->key, &info, &err);
	if (r < 0) {
		fail(c, "stat", r, &err);
	} else {
		send_info(c, &info);
		snap_info_release(&info);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret h_update(struct snap_call *c, void *ctx)
{
	UpdateReq *req = (void *)unpack(c, DESC(update_snapshot_request));
	struct snap_info in = { 0 }, out = { 0 };
	struct lp_err err = { 0 };
	size_t np = 0;
	char **paths = NULL;
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	if (req->info) {
		in.name = req->info->name;
		in.labels = labels_in((PbLabel **)req->info->labels,
				      req->info->n_labels);
		in.n_labels = req->info->n_labels;
	} else {
		in.name = "";
	}
	if (req->update_mask) {
		np = req->update_mask->n_paths;
		paths = req->update_mask->paths;
	}
	r = snap_store_update(store_of(ctx), &in, (const char *const *)paths,
			      np, &out, &err);
	free(in.labels);
	if (r < 0) {
		fail(c, "update", r, &err);
	} else {
		send_info(c, &out);
		snap_info_release(&out);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret h_usage(struct snap_call *c, void *ctx)
{
	UsageReq *req = (void *)unpack(c, DESC(usage_request));
	UsageResp resp = PB_INIT(UsageResp, usage_response);
	struct snap_usage u = { 0 };
	struct lp_err err = { 0 };
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	r = snap_store_usage(store_of(ctx), req->key, &u, &err);
	if (r < 0) {
		fail(c, "usage", r, &err);
	} else {
		resp.size = u.size;
		resp.inodes = u.inodes;
		send_msg(c, &resp.base);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret h_cleanup(struct snap_call *c, void *ctx)
{
	ProtobufCMessage *req = unpack(c, DESC(cleanup_request));
	struct lp_err err = { 0 };
	int r;

	if (!req)
		return SNAP_CALL_DONE;
	r = snap_store_cleanup(store_of(ctx), &err);
	if (r < 0)
		fail(c, "cleanup", r, &err);
	else
		send_empty(c);
	protobuf_c_message_free_unpacked(req, NULL);
	return SNAP_CALL_DONE;
}

/* ---- List: server streaming, paced by the client ----------------------- */

struct list_state {
	struct snap_filter *f;
	struct snap_cursor cur;
};

static void list_state_free(void *p)
{
	struct list_state *s = p;

	snap_filter_free(s->f);
	free(s);
}

struct batch {
	struct pb_info infos[LIST_BATCH];
	struct snap_info copies[LIST_BATCH]; /* what infos[] point into */
	size_t n;
	size_t bytes;
};

static int batch_add(const struct snap_info *i, void *data)
{
	struct batch *b = data;
	struct snap_info *copy = &b->copies[b->n];

	/* the store frees i after this call: keep a copy for packing */
	copy->name = lp_xstrdup(i->name);
	copy->parent = lp_xstrdup(i->parent ? i->parent : "");
	copy->kind = i->kind;
	copy->created_ns = i->created_ns;
	copy->updated_ns = i->updated_ns;
	copy->n_labels = i->n_labels;
	copy->labels = lp_xcalloc(i->n_labels + 1, sizeof(*copy->labels));
	for (size_t k = 0; k < i->n_labels; k++) {
		copy->labels[k].key = lp_xstrdup(i->labels[k].key);
		copy->labels[k].value = lp_xstrdup(i->labels[k].value);
	}
	pb_info_fill(&b->infos[b->n], copy);
	b->bytes += protobuf_c_message_get_packed_size(
			    &b->infos[b->n].info.base) + 8;
	b->n++;
	return b->bytes >= LIST_MSG_BYTES ? 1 : 0;
}

static void batch_release(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		pb_info_release(&b->infos[i]);
		snap_info_release(&b->copies[i]);
	}
	b->n = 0;
	b->bytes = 0;
}

static enum snap_call_ret h_list(struct snap_call *c, void *ctx)
{
	struct list_state **sp = (struct list_state **)snap_call_state(c);
	struct lp_err err = { 0 };
	struct batch *b;
	size_t round = 0;
	bool done = false;
	int r;

	if (!*sp) {
		ListReq *req = (void *)unpack(c, DESC(list_snapshots_request));
		struct list_state *s;

		if (!req)
			return SNAP_CALL_DONE;
		s = lp_xcalloc(1, sizeof(*s));
		r = snap_filter_parse((const char *const *)req->filters,
				      req->n_filters, &s->f, &err);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (r < 0) {
			free(s);
			fail(c, "list", r, &err);
			return SNAP_CALL_DONE;
		}
		*sp = s;
		snap_call_set_state_free(c, list_state_free);
	}
	b = lp_xcalloc(1, sizeof(*b));
	while (!done && round < LIST_ROUND_BYTES && !snap_call_cancelled(c)) {
		ListResp resp = PB_INIT(ListResp, list_snapshots_response);
		PbInfo *ptrs[LIST_BATCH];

		r = snap_store_walk(store_of(ctx), &(*sp)->cur, (*sp)->f,
				    LIST_BATCH, batch_add, b, &done, &err);
		if (r < 0) {
			batch_release(b);
			free(b);
			fail(c, "list", r, &err);
			return SNAP_CALL_DONE;
		}
		if (b->n == 0)
			break;
		for (size_t i = 0; i < b->n; i++)
			ptrs[i] = &b->infos[i].info;
		resp.n_info = b->n;
		resp.info = ptrs;
		send_msg(c, &resp.base);
		round += b->bytes;
		batch_release(b);
	}
	free(b);
	if (snap_call_cancelled(c)) {
		snap_call_finish(c, SNAP_GRPC_CANCELLED, "context canceled");
		return SNAP_CALL_DONE;
	}
	return done ? SNAP_CALL_DONE : SNAP_CALL_MORE;
}

const struct snap_method snap_methods[] = {
	{ "Prepare", SNAP_POOL_SLOW, false, h_prepare },
	{ "View", SNAP_POOL_SLOW, false, h_view },
	/* may start the fs daemons of remote parents */
	{ "Mounts", SNAP_POOL_SLOW, false, h_mounts },
	{ "Commit", SNAP_POOL_SLOW, false, h_commit },
	{ "Remove", SNAP_POOL_SLOW, false, h_remove },
	{ "Stat", SNAP_POOL_INLINE, false, h_stat },
	{ "Update", SNAP_POOL_FAST, false, h_update },
	{ "List", SNAP_POOL_FAST, true, h_list },
	{ "Usage", SNAP_POOL_SLOW, false, h_usage },
	{ "Cleanup", SNAP_POOL_SLOW, false, h_cleanup },
};
const size_t snap_n_methods = ARRAY_SIZE(snap_methods);
