/*
 * proto/data.c - zero-copy data frames (data.h).
 */
#include "proto/data.h"
#include "proto/frame.h"
#include "proto/internal.h"
#include "ring/chunk.h"

/* a1 64 "data": the payload map head and its only key. */
#define PROTO_DATA_KEY_SIZE 6
/* a3, 61 76 <v>, 61 74, 61 70: envelope bytes around the type name and "p" head (v < 24). */
#define PROTO_DATA_ENV_FIXED 8

size_t proto_data_payload_size(size_t n)
{
	return PROTO_DATA_KEY_SIZE + cbw_head_size(n) + n;
}

size_t proto_data_prefix_size(enum proto_type t, size_t payload_len)
{
	const struct proto_type_info *ti;

	if (!proto_type_is_data(t))
		return 0;
	ti = &proto_type_table[t];
	return PROTO_HDR_SIZE + PROTO_DATA_ENV_FIXED + cbw_head_size(ti->name_len) + ti->name_len +
	       cbw_head_size(proto_data_payload_size(payload_len)) + PROTO_DATA_KEY_SIZE +
	       cbw_head_size(payload_len);
}

long proto_data_prefix_write(
	uint8_t *dst, size_t cap, enum proto_type t, uint32_t id, size_t payload_len)
{
	size_t prefix = proto_data_prefix_size(t, payload_len);
	const struct proto_type_info *ti;
	struct cbw w;

	if (prefix == 0)
		return PROTO_E_BAD_VALUE;
	if (payload_len > PROTO_MAX_FRAME_LEN ||
		prefix + payload_len - PROTO_LEN_SIZE > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (cap < prefix)
		return PROTO_E_NOSPACE;
	ti = &proto_type_table[t];
	proto_frame_header_write(
		dst, (uint32_t)(prefix + payload_len - PROTO_LEN_SIZE), id, ti->flags);
	cbw_init(&w, dst + PROTO_HDR_SIZE, prefix - PROTO_HDR_SIZE);
	cbw_map(&w, 3);
	cbw_key(&w, "v");
	cbw_uint(&w, PROTO_VERSION);
	cbw_key(&w, "t");
	cbw_text(&w, ti->name, ti->name_len);
	cbw_key(&w, "p");
	cbw_bytes_head(&w, proto_data_payload_size(payload_len));
	cbw_map(&w, 1);
	cbw_key(&w, "data");
	cbw_bytes_head(&w, payload_len);
	return (long)prefix;
}

int proto_data_frame_prepend(struct chunk *c, enum proto_type t, uint32_t id)
{
	size_t prefix = proto_data_prefix_size(t, c->len);
	uint8_t *dst;
	long rc;

	if (prefix == 0)
		return PROTO_E_BAD_VALUE;
	if (prefix + c->len - PROTO_LEN_SIZE > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (prefix > chunk_headroom(c))
		return PROTO_E_NOSPACE;
	dst = chunk_ptr(c) - prefix;
	rc = proto_data_prefix_write(dst, prefix, t, id, c->len);
	if (rc < 0)
		return (int)rc;
	chunk_push_front(c, (uint32_t)prefix);
	return 0;
}

int proto_data_payload_encode(struct cbw *w, const uint8_t *data, size_t len)
{
	cbw_map(w, 1);
	cbw_key(w, "data");
	cbw_bytes(w, data, len);
	return w->err;
}

/* Where proto_data_payload_decode puts the bytes: the caller's pointers. */
struct proto_data_dst {
	const uint8_t **data;
	size_t *len;
};

static int proto_data_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_data_dst *d = obj;

	(void)field; /* "data" is the only key */
	return cbr_bytes(r, d->data, d->len);
}

int proto_data_payload_decode(struct cbr *r, const uint8_t **data, size_t *len)
{
	static const char *const keys[] = {"data"};
	struct proto_data_dst d = {data, len};

	return proto_map_decode(r, keys, 1, 1, 1, proto_data_field, &d);
}

int proto_data_decode(
	const struct proto_env *e, struct proto_arena *a, const uint8_t **data, size_t *len)
{
	struct cbr r;

	cbr_init(&r, e->p, e->p_len, a);
	return proto_data_payload_decode(&r, data, len);
}
