/*
 * perf/bench/proto_kern.c - benchmark kernels for the wire codec
 * (proto_kern.h).
 */
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "perf/bench/alloc_count.h"
#include "perf/bench/proto_kern.h"
#include "proto/msg.h"
#include "ring/chunk.h"

#define PROTO_KERN_ID 0x02000001u /* a relay slot-1 id, as a client would use */

struct proto_kern {
	size_t data_len;     /* payload bytes of the data frame */
	struct chunk *chunk; /* payload at CHUNK_HEADROOM, frame prefix in front */
	uint8_t *data;	     /* the payload, for the copying paths */
	uint8_t *frame;	     /* the data frame as sandwire encodes it */
	size_t frame_len;
	uint8_t *out;		/* output buffer for the copying encodes */
	uint8_t *pbuf;		/* libcbor baseline: the serialized payload */
	uint8_t arena_mem[256]; /* decode arena (control frames need none) */
	struct proto_arena arena;
	uint8_t exited[64]; /* encoded control frames */
	size_t exited_len;
	uint8_t resize[64];
	size_t resize_len;
};

long proto_kern_allocs(void)
{
	return alloc_count();
}

void proto_kern_free(struct proto_kern *k)
{
	if (!k)
		return;
	free(k->chunk);
	free(k->data);
	free(k->frame);
	free(k->out);
	free(k->pbuf);
	free(k);
}

struct proto_kern *proto_kern_new(size_t data_len)
{
	struct proto_kern *k = calloc(1, sizeof(*k));
	size_t i;
	long n;

	alloc_count_init();
	if (!k)
		return NULL;
	k->data_len = data_len;
	k->chunk = calloc(1, sizeof(*k->chunk) + CHUNK_HEADROOM + data_len);
	k->data = malloc(data_len);
	k->frame = malloc(data_len + CHUNK_HEADROOM);
	k->out = malloc(data_len + CHUNK_HEADROOM);
	k->pbuf = malloc(data_len + CHUNK_HEADROOM);
	if (!k->chunk || !k->data || !k->frame || !k->out || !k->pbuf)
		goto err;
	for (i = 0; i < data_len; i++)
		k->data[i] = (uint8_t)(i * 131 + 7);
	k->chunk->cap = (uint32_t)(CHUNK_HEADROOM + data_len);
	chunk_reset(k->chunk);
	memcpy(chunk_ptr(k->chunk), k->data, data_len); /* as if read there */
	n = proto_kern_data_encode(k);
	if (n <= 0)
		goto err;
	k->frame_len = (size_t)n;
	memcpy(k->frame, chunk_ptr(k->chunk), k->frame_len);
	proto_arena_init(&k->arena, k->arena_mem, sizeof(k->arena_mem));

	/* the baselines must produce the same bytes, or it is not the same work */
	n = proto_kern_data_encode_libcbor(k);
	if (n != (long)k->frame_len || memcmp(k->out, k->frame, k->frame_len) != 0)
		goto err;
	memset(k->out, 0, k->frame_len);
	n = proto_kern_data_encode_libcbor_prealloc(k);
	if (n != (long)k->frame_len || memcmp(k->out, k->frame, k->frame_len) != 0)
		goto err;
	memset(k->out, 0, k->frame_len);
	if (proto_kern_data_encode_copy(k) != (long)k->frame_len ||
		memcmp(k->out, k->frame, k->frame_len) != 0)
		goto err;
	if (proto_kern_data_decode(k) != (long)data_len ||
		proto_kern_data_decode_libcbor(k) != (long)data_len)
		goto err;
	n = proto_kern_exited_encode(k);
	if (n <= 0)
		goto err;
	memcpy(k->exited, k->out, (size_t)n);
	k->exited_len = (size_t)n;
	n = proto_kern_resize_encode(k);
	if (n <= 0)
		goto err;
	memcpy(k->resize, k->out, (size_t)n);
	k->resize_len = (size_t)n;
	if (proto_kern_exited_decode(k) < 0 || proto_kern_resize_decode(k) < 0)
		goto err;
	return k;
err:
	proto_kern_free(k);
	return NULL;
}

long proto_kern_data_encode(struct proto_kern *k)
{
	struct chunk *c = k->chunk;
	int rc;

	/* the payload stays where it was read; only the prefix is (re)written */
	chunk_reset(c);
	c->len = (uint32_t)k->data_len;
	rc = proto_data_frame_prepend(c, PROTO_T_EXEC_STDOUT, PROTO_KERN_ID);
	return rc < 0 ? rc : (long)c->len;
}

long proto_kern_data_encode_copy(struct proto_kern *k)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_STDOUT, .u.data = {k->data, k->data_len}};

	return proto_frame_encode(k->out, k->data_len + CHUNK_HEADROOM, PROTO_KERN_ID, &m);
}

long proto_kern_data_decode(struct proto_kern *k)
{
	struct proto_frame f;
	struct proto_msg m;
	int rc;

	rc = proto_frame_parse(k->frame, k->frame_len, &f);
	if (rc <= 0)
		return rc < 0 ? rc : -1;
	rc = proto_frame_decode(&f, &m, NULL, NULL);
	if (rc < 0)
		return rc;
	return (long)m.u.data.len;
}

/* Add key <k> (text) -> <v> to map <map>, dropping our references. */
static int proto_kern_map_put(cbor_item_t *map, const char *key, cbor_item_t *v)
{
	cbor_item_t *kt = cbor_build_string(key);
	bool ok = kt && v && cbor_map_add(map, (struct cbor_pair){.key = kt, .value = v});

	if (kt)
		cbor_decref(&kt);
	if (v)
		cbor_decref(&v);
	return ok ? 0 : -1;
}

/*
 * Build the envelope as libcbor items and serialize it: with
 * cbor_serialize_alloc() (libcbor's own sizing: it retries with a doubled
 * buffer until the item fits), or with cbor_serialize() into buffers we
 * sized (<prealloc>).  Either way the items copy the payload.
 */
static long proto_kern_libcbor_encode(struct proto_kern *k, bool prealloc)
{
	size_t cap = k->data_len + CHUNK_HEADROOM;
	cbor_item_t *inner = NULL, *env = NULL;
	unsigned char *p = NULL, *body = NULL;
	size_t p_len, body_len, p_cap, body_cap;
	long ret = -1;

	inner = cbor_new_definite_map(1);
	if (!inner ||
		proto_kern_map_put(inner, "data", cbor_build_bytestring(k->data, k->data_len)) < 0)
		goto out;
	if (prealloc)
		p_len = cbor_serialize(inner, k->pbuf, cap);
	else
		p_len = cbor_serialize_alloc(inner, &p, &p_cap);
	if (!p_len)
		goto out;
	env = cbor_new_definite_map(3);
	if (!env || proto_kern_map_put(env, "v", cbor_build_uint8(PROTO_VERSION)) < 0 ||
		proto_kern_map_put(env, "t", cbor_build_string("core.exec.stdout")) < 0 ||
		proto_kern_map_put(env, "p", cbor_build_bytestring(prealloc ? k->pbuf : p, p_len)) <
			0)
		goto out;
	if (prealloc) {
		body_len = cbor_serialize(env, k->out + PROTO_HDR_SIZE, cap - PROTO_HDR_SIZE);
	} else {
		body_len = cbor_serialize_alloc(env, &body, &body_cap);
		if (body_len)
			memcpy(k->out + PROTO_HDR_SIZE, body, body_len);
	}
	if (!body_len)
		goto out;
	/* the 9-byte header in front of the body: the same frame as the zero-copy path */
	proto_frame_header_write(
		k->out, (uint32_t)(PROTO_FRAME_HEADER_SIZE + body_len), PROTO_KERN_ID, 0);
	ret = (long)(PROTO_HDR_SIZE + body_len);
out:
	free(body);
	free(p);
	if (env)
		cbor_decref(&env);
	if (inner)
		cbor_decref(&inner);
	return ret;
}

long proto_kern_data_encode_libcbor(struct proto_kern *k)
{
	return proto_kern_libcbor_encode(k, false);
}

long proto_kern_data_encode_libcbor_prealloc(struct proto_kern *k)
{
	return proto_kern_libcbor_encode(k, true);
}

/* Value of text key <key> in map item <map>, or NULL. */
static cbor_item_t *proto_kern_map_get(cbor_item_t *map, const char *key)
{
	struct cbor_pair *pairs;
	size_t i, n, kl = strlen(key);

	if (!cbor_isa_map(map))
		return NULL;
	pairs = cbor_map_handle(map);
	n = cbor_map_size(map);
	for (i = 0; i < n; i++) {
		if (cbor_isa_string(pairs[i].key) && cbor_string_length(pairs[i].key) == kl &&
			memcmp(cbor_string_handle(pairs[i].key), key, kl) == 0)
			return pairs[i].value;
	}
	return NULL;
}

long proto_kern_data_decode_libcbor(struct proto_kern *k)
{
	struct cbor_load_result res;
	cbor_item_t *env, *payload = NULL, *p, *data;
	long ret = -1;

	env = cbor_load(k->frame + PROTO_HDR_SIZE, k->frame_len - PROTO_HDR_SIZE, &res);
	if (!env)
		return -1;
	p = proto_kern_map_get(env, "p");
	if (!p || !cbor_isa_bytestring(p) || !cbor_bytestring_is_definite(p))
		goto out;
	payload = cbor_load(cbor_bytestring_handle(p), cbor_bytestring_length(p), &res);
	data = payload ? proto_kern_map_get(payload, "data") : NULL;
	if (data && cbor_isa_bytestring(data) && cbor_bytestring_is_definite(data))
		ret = (long)cbor_bytestring_length(data);
out:
	if (payload)
		cbor_decref(&payload);
	cbor_decref(&env);
	return ret;
}

long proto_kern_exited_encode(struct proto_kern *k)
{
	struct proto_msg m = {
		.type = PROTO_T_EXEC_EXITED, .u.exec_exited = {.code = 137, .signal = {true, 9}}};

	return proto_frame_encode(k->out, 64, PROTO_KERN_ID, &m);
}

long proto_kern_resize_encode(struct proto_kern *k)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_RESIZE, .u.exec_resize = {50, 132}};

	return proto_frame_encode(k->out, 64, PROTO_KERN_ID, &m);
}

/* Decode a small control frame; returns its size. */
static long proto_kern_control_decode(struct proto_kern *k, const uint8_t *buf, size_t len)
{
	struct proto_frame f;
	struct proto_msg m;
	int rc;

	rc = proto_frame_parse(buf, len, &f);
	if (rc <= 0)
		return rc < 0 ? rc : -1;
	k->arena.used = 0;
	rc = proto_frame_decode(&f, &m, &k->arena, NULL);
	return rc < 0 ? rc : (long)len;
}

long proto_kern_exited_decode(struct proto_kern *k)
{
	return proto_kern_control_decode(k, k->exited, k->exited_len);
}

long proto_kern_resize_decode(struct proto_kern *k)
{
	return proto_kern_control_decode(k, k->resize, k->resize_len);
}
