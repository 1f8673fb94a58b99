/*
 * proto/msg.c - whole-frame encode and decode over every message type, and
 * the recognition of the frames that are not CBOR (raw bulk, MSBL).
 */
#include <errno.h>
#include <string.h>

#include "proto/msg.h"

static int proto_msg_payload_encode(struct cbw *w, const struct proto_msg *m)
{
	switch (m->type) {
	case PROTO_T_BOOTSTRAP:
		return proto_bootstrap_encode(w, &m->u.bootstrap);
	case PROTO_T_FS_REQUEST:
		return proto_fs_request_encode(w, &m->u.fs_request);
	case PROTO_T_FS_RESPONSE:
		return proto_fs_response_encode(w, &m->u.fs_response);
	default:
		break;
	}
	if (proto_type_is_data(m->type))
		return proto_data_payload_encode(w, m->u.data.ptr, m->u.data.len);
	return proto_core_encode(w, m->type, &m->u);
}

uint8_t proto_msg_min_gen(const struct proto_msg *m)
{
	uint8_t gen = proto_type_valid(m->type) ? proto_type_table[m->type].gen : 0;

	switch (m->type) {
	case PROTO_T_TCP_CONNECT:
		return m->u.tcp_connect.bulk.set ? PROTO_GEN_BULK : gen;
	case PROTO_T_FS_REQUEST:
		return m->u.fs_request.bulk.set ? PROTO_GEN_BULK : gen;
	case PROTO_T_READY: {
		const struct proto_ready *r = &m->u.ready;

		return r->bulk_transport.set || r->relay_lease.set || r->local_transport.set ||
				       r->workload_transport_barrier_version.set
			       ? PROTO_GEN_WORKLOAD
			       : gen;
	}
	case PROTO_T_ERROR:
		return m->u.error.workload_failure.set ||
				       m->u.error.kind == PROTO_ERROR_CAPABILITY_UNAVAILABLE
			       ? PROTO_GEN_WORKLOAD
			       : gen;
	case PROTO_T_RELAY_CLIENT_DISCONNECTED:
		return m->u.relay_client_disconnected.incarnation.set ? PROTO_GEN_WORKLOAD : gen;
	default:
		return gen;
	}
}

long proto_frame_encode(void *buf, size_t cap, uint32_t id, const struct proto_msg *m)
{
	struct proto_env_wr e;
	size_t hint = 0;
	uint8_t v = m->v;
	int rc;

	if (!proto_type_valid(m->type))
		return -EINVAL;
	if (v == 0)
		v = proto_msg_min_gen(m) > PROTO_VERSION ? PROTO_VERSION_MAX : PROTO_VERSION;
	if (proto_type_is_data(m->type)) {
		if (m->u.data.len > PROTO_MAX_FRAME_LEN)
			return PROTO_E_OVERSIZE;
		hint = proto_data_payload_size(m->u.data.len); /* exact: no payload move */
	}
	proto_env_begin(&e, buf, cap, m->type, v, hint);
	rc = proto_msg_payload_encode(&e.w, m);
	if (rc < 0)
		return rc;
	return proto_env_end(&e, id);
}

static int proto_msg_payload_decode(struct cbr *r, struct proto_msg *m, struct proto_errinfo *ei)
{
	switch (m->type) {
	case PROTO_T_BOOTSTRAP:
		return proto_bootstrap_decode(r, &m->u.bootstrap);
	case PROTO_T_FS_REQUEST:
		return proto_fs_request_decode(r, &m->u.fs_request);
	case PROTO_T_FS_RESPONSE:
		return proto_fs_response_decode(r, &m->u.fs_response);
	default:
		break;
	}
	if (proto_type_is_data(m->type))
		return proto_data_payload_decode(r, &m->u.data.ptr, &m->u.data.len);
	return proto_core_decode(r, m->type, &m->u, ei);
}

/* Offset in the frame of the byte a raw-record or lease error is about. */
static size_t proto_not_cbor_offset(int code)
{
	switch (code) {
	case PROTO_E_BULK_FLAGS:
		return PROTO_HDR_SIZE - 1;
	case PROTO_E_BULK_KIND:
		return PROTO_HDR_SIZE;
	case PROTO_E_BULK_FLOW:
		return PROTO_HDR_SIZE + 1;
	case PROTO_E_BULK_RESERVED:
		return PROTO_HDR_SIZE + 2;
	case PROTO_E_BULK_OVERFLOW:
		return PROTO_HDR_SIZE + 4;
	default:
		return 0; /* the length, or the record as a whole */
	}
}

/*
 * The frames that are not CBOR messages (G1.4, F38): the code to return,
 * or 0 for a CBOR frame.
 */
static int proto_not_cbor(const struct proto_frame *f)
{
	struct proto_bulk_rec rec;
	struct proto_lease lease;
	int rc;

	if (f->flags & PROTO_FLAG_BULK) {
		rc = proto_bulk_frame_parse(f, &rec, NULL);
		return rc < 0 ? rc : PROTO_E_BULK_RECORD;
	}
	if (proto_frame_is_lease(f)) {
		rc = proto_lease_parse(f->wire, f->wire_len, &lease);
		return rc < 0 ? PROTO_E_LEASE : PROTO_E_LEASE_RECORD;
	}
	return 0;
}

int proto_frame_decode(const struct proto_frame *f, struct proto_msg *m, struct proto_arena *a,
	struct proto_errinfo *ei)
{
	struct proto_errinfo local = {0};
	struct proto_env e;
	struct cbr r;
	size_t base;
	int rc;

	m->type = PROTO_T_UNKNOWN;
	m->v = 0;
	m->tname = (struct proto_str){NULL, 0};
	rc = proto_not_cbor(f);
	if (rc < 0) {
		local.offset = proto_not_cbor_offset(rc);
		goto fail;
	}
	rc = proto_env_decode(f->body, f->body_len, a, &e, &local);
	if (rc == 0 || rc == PROTO_E_UNKNOWN_TYPE) {
		m->type = e.type;
		m->v = e.v;
		m->tname = e.t;
	}
	if (rc < 0) {
		local.offset += PROTO_HDR_SIZE;
		goto fail;
	}
	local.type = proto_type_table[m->type].name;
	if ((f->flags & PROTO_FLAGS_CONTROL) != proto_type_flags(m->type)) {
		rc = PROTO_E_FLAGS;
		local.offset = PROTO_HDR_SIZE - 1; /* the flags byte */
		local.field = NULL;
		goto fail;
	}
	cbr_init(&r, e.p, e.p_len, a);
	local.field = NULL;
	rc = proto_msg_payload_decode(&r, m, &local);
	if (rc < 0) {
		/* proto_core_decode() located the item; the others stop on it */
		if (!proto_core_handles(m->type))
			local.offset = cbr_offset(&r);
		base = e.p_off == SIZE_MAX ? 0 : PROTO_HDR_SIZE + e.p_off;
		local.offset += base;
		local.type = proto_type_table[m->type].name;
		goto fail;
	}
	return 0;
fail:
	local.code = rc;
	if (ei)
		*ei = local;
	return rc;
}
