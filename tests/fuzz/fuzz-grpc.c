// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: the snapshotter's gRPC-over-HTTP/2 input path (nghttp2
 * session, request assembly, message framing, dispatch, responses and
 * streaming) on an in-memory connection, with a small method table instead
 * of the store: Echo (unary), Fail (an error with awkward bytes), Stream
 * (server streaming over several handler rounds) and Stat (decodes a real
 * StatSnapshotRequest with protobuf-c).
 *
 * Input: byte 0 picks how the rest is cut into reads (0 = one read, else
 * chunks of 1..64 bytes); unless the rest starts with "PRI", the client
 * preface and an empty SETTINGS frame are put in front.
 */
#include <string.h>

#include "snapshotter/proto/snapshots.pb-c.h"
#include "snapshotter/snapshotter-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum snap_call_ret echo(struct snap_call *c, void *ctx)
{
	size_t n;
	const uint8_t *req = snap_call_request(c, &n);

	(void)ctx;
	snap_call_send(c, req, n);
	return SNAP_CALL_DONE;
}

static enum snap_call_ret failing(struct snap_call *c, void *ctx)
{
	(void)ctx;
	snap_call_finish(c, SNAP_GRPC_NOT_FOUND,
			 "snapshot \xff%\n\"x\": not found");
	return SNAP_CALL_DONE;
}

static void free_counter(void *p)
{
	free(p);
}

static enum snap_call_ret stream(struct snap_call *c, void *ctx)
{
	int **st = (int **)snap_call_state(c);
	uint8_t msg[300];

	(void)ctx;
	if (!*st) {
		*st = calloc(1, sizeof(int));
		if (!*st)
			abort();
		snap_call_set_state_free(c, free_counter);
	}
	memset(msg, 'a' + **st, sizeof(msg));
	snap_call_send(c, msg, sizeof(msg));
	return ++**st < 3 ? SNAP_CALL_MORE : SNAP_CALL_DONE;
}

static enum snap_call_ret stat(struct snap_call *c, void *ctx)
{
	size_t n;
	const uint8_t *req = snap_call_request(c, &n);
	ProtobufCMessage *m = protobuf_c_message_unpack(
		&containerd__services__snapshots__v1__stat_snapshot_request__descriptor,
		NULL, n, req);

	(void)ctx;
	if (!m) {
		snap_call_finish(c, SNAP_GRPC_INTERNAL, "bad request");
		return SNAP_CALL_DONE;
	}
	const char *key =
		((Containerd__Services__Snapshots__V1__StatSnapshotRequest *)m)
			->key;

	snap_call_send(c, key, strlen(key));
	protobuf_c_message_free_unpacked(m, NULL);
	return SNAP_CALL_DONE;
}

static const struct snap_method methods[] = {
	{ "Echo", SNAP_POOL_FAST, false, echo },
	{ "Fail", SNAP_POOL_FAST, false, failing },
	{ "Stream", SNAP_POOL_FAST, true, stream },
	{ "Stat", SNAP_POOL_SLOW, false, stat },
};

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_memconn *m;
	size_t chunk, off = 0;
	uint8_t *buf;

	if (size < 1)
		return 0;
	chunk = data[0] ? (size_t)(data[0] % 64) + 1 : size;
	data++;
	size--;
	m = snap_memconn_new(methods, ARRAY_SIZE(methods), NULL);
	if (size < 3 || memcmp(data, "PRI", 3)) {
		buf = malloc(sizeof(preface) - 1 + size);
		if (!buf)
			abort();
		memcpy(buf, preface, sizeof(preface) - 1);
		memcpy(buf + sizeof(preface) - 1, data, size);
		data = buf;
		size += sizeof(preface) - 1;
	} else {
		buf = NULL;
	}
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		size_t olen;

		if (snap_memconn_feed(m, data + off, n) < 0)
			break;
		snap_memconn_output(m, &olen);
		off += n;
	}
	snap_memconn_free(m);
	free(buf);
	return 0;
}
