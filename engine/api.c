/*
 * engine/api.c - sandwired's management protocol (api.h): verb names, the
 * name and port checks, the request and result encoders, and the decoders
 * of both sides.
 *
 * Frames are built like proto_env_begin()/proto_env_end() build agent
 * frames, but with a free "t" (the engine's types are not agent types):
 * room for the 9-byte header, {v: 7, t: <type>, p: <bytes>} with one byte
 * left for the head of "p", the payload encoded in place, then the head
 * fixed up (moving the payload forward by up to 4 bytes) and the header
 * written.  A buffer of exactly the frame's size is enough.
 *
 * Decoders follow the reader rules of the agent protocol (spec 2.2): keys
 * in any order, unknown keys skipped, a known key twice is an error, tags
 * and any head width accepted.  Request decoders (daemon side) bound every
 * list and string and write a sentence saying what was wrong into <why>.
 * Any thread; nothing allocates.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/api.h"
#include "proto/envelope.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/msg_common.h"
#include "proto/types.h"

static const char *const api_verb_names[ENGINE_V__COUNT] = {
	[ENGINE_V_CREATE] = ENGINE_API_PREFIX "create",
	[ENGINE_V_LIST] = ENGINE_API_PREFIX "list",
	[ENGINE_V_INSPECT] = ENGINE_API_PREFIX "inspect",
	[ENGINE_V_STOP] = ENGINE_API_PREFIX "stop",
	[ENGINE_V_START] = ENGINE_API_PREFIX "start",
	[ENGINE_V_REMOVE] = ENGINE_API_PREFIX "remove",
	[ENGINE_V_PUBLISH] = ENGINE_API_PREFIX "publish",
	[ENGINE_V_STATS] = ENGINE_API_PREFIX "stats",
	[ENGINE_V_ATTACH] = ENGINE_API_PREFIX "attach",
};

/* The CBOR null item: the data of a result that has none. */
static const uint8_t api_null_item[1] = {0xf6};

const char *engine_verb_name(enum engine_verb v)
{
	if (v < 0 || v >= ENGINE_V__COUNT)
		return NULL;
	return api_verb_names[v];
}

enum engine_verb engine_verb_lookup(const char *t, size_t n)
{
	for (int v = 0; v < ENGINE_V__COUNT; v++) {
		if (strlen(api_verb_names[v]) == n && memcmp(api_verb_names[v], t, n) == 0)
			return (enum engine_verb)v;
	}
	return ENGINE_V_UNKNOWN;
}

/* Format a sentence into <why> (may be NULL) and return <rc>. */
__attribute__((format(printf, 4, 5))) static int api_why(
	char *why, size_t cap, int rc, const char *fmt, ...)
{
	va_list ap;

	if (why && cap) {
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/*
 * Copy <n> bytes of <s> into <out> (<cap> bytes) for a message: printable
 * ASCII as is, anything else as '?', cut to fit.  Returns <out>.
 */
static const char *api_show(const char *s, size_t n, char *out, size_t cap)
{
	size_t i;

	for (i = 0; i < n && i + 1 < cap; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	out[i] = '\0';
	return out;
}

static bool api_name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-';
}

int engine_name_check(const char *name, size_t n, char *why, size_t cap)
{
	char shown[ENGINE_NAME_MAX + 1];
	size_t i;

	if (n == 0)
		return api_why(why, cap, -EINVAL,
			"the sandbox name is empty: give 1 to %u letters, digits, '_', '.' or '-'",
			ENGINE_NAME_MAX);
	if (n > ENGINE_NAME_MAX)
		return api_why(why, cap, -EINVAL,
			"the sandbox name is too long (%zu bytes): at most %u bytes", n,
			ENGINE_NAME_MAX);
	api_show(name, n, shown, sizeof(shown));
	if (name[0] == '.' || name[0] == '-')
		return api_why(why, cap, -EINVAL,
			"sandbox name `%s` starts with '%c': "
			"start it with a letter, a digit or '_'",
			shown, name[0]);
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (api_name_char(name[i]))
			continue;
		if (ch >= 0x20 && ch < 0x7f)
			return api_why(why, cap, -EINVAL,
				"sandbox name `%s` has the invalid character '%c' at byte %zu: use "
				"only letters, digits, '_', '.' and '-'",
				shown, ch, i);
		return api_why(why, cap, -EINVAL,
			"sandbox name `%s` has the invalid byte 0x%02x at byte %zu: use only "
			"letters, digits, '_', '.' and '-'",
			shown, ch, i);
	}
	return 0;
}

/*
 * Parse the port number <s> of <n> bytes, <what> ("host" / "guest") in
 * <spec>, into <out>: decimal digits only, value <min>..65535.
 */
static int api_port_num(const char *s, size_t n, const char *what, unsigned min, const char *spec,
	uint16_t *out, char *why, size_t cap)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0)
		return api_why(why, cap, -EINVAL,
			"%s port missing in %s: expected [IP:]HOST_PORT:GUEST_PORT, as in 8080:80",
			what, spec);
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return api_why(why, cap, -EINVAL, "%s port `%.*s` is not a number in %s",
				what, (int)n, s, spec);
		if (v <= 65535)
			v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < min || v > 65535)
		return api_why(why, cap, -EINVAL, "%s port %.*s out of range %u-65535 in %s", what,
			(int)n, s, min, spec);
	*out = (uint16_t)v;
	return 0;
}

int engine_port_parse(const char *spec, struct engine_port *p, char *why, size_t cap)
{
	unsigned char addr[sizeof(struct in6_addr)];
	const char *ports = spec, *ip = NULL, *colon, *end;
	int family = AF_INET, rc;
	size_t iplen = 0, ncolons = 0;

	memset(p, 0, sizeof(*p));
	for (end = spec; *end; end++)
		ncolons += *end == ':';
	if (spec[0] == '[') {
		end = strchr(spec, ']');
		if (!end || end[1] != ':')
			return api_why(why, cap, -EINVAL,
				"port `%s`: an IPv6 address in brackets is followed by "
				":HOST_PORT:GUEST_PORT, as in [::1]:8080:80",
				spec);
		ip = spec + 1;
		iplen = (size_t)(end - ip);
		family = AF_INET6;
		ports = end + 2;
	} else if (ncolons == 2) {
		ip = spec;
		iplen = (size_t)(strchr(spec, ':') - spec);
		ports = spec + iplen + 1;
	} else if (ncolons > 2) {
		return api_why(why, cap, -EINVAL,
			"port `%s`: put an IPv6 address in brackets, as in [::1]:8080:80", spec);
	}
	colon = strchr(ports, ':');
	if (!colon || strchr(colon + 1, ':'))
		return api_why(why, cap, -EINVAL,
			"port `%s`: expected [IP:]HOST_PORT:GUEST_PORT, as in 8080:80 or "
			"0.0.0.0:8080:80",
			spec);
	if (ip) {
		if (iplen == 0 || iplen >= sizeof(p->host_ip))
			return api_why(why, cap, -EINVAL,
				"port `%s`: `%.*s` is not a numeric IP address", spec, (int)iplen,
				ip);
		memcpy(p->host_ip, ip, iplen);
		p->host_ip[iplen] = '\0';
		if (inet_pton(family, p->host_ip, addr) != 1)
			return api_why(why, cap, -EINVAL,
				"port `%s`: `%s` is not a numeric %s address", spec, p->host_ip,
				family == AF_INET ? "IPv4" : "IPv6");
	} else {
		strcpy(p->host_ip, "127.0.0.1");
	}
	rc = api_port_num(ports, (size_t)(colon - ports), "host", 0, spec, &p->host_port, why, cap);
	if (rc < 0)
		return rc;
	return api_port_num(
		colon + 1, strlen(colon + 1), "guest", 1, spec, &p->guest_port, why, cap);
}

/* ---- encoding ---- */

/* A frame being written: the envelope up to "p", then the payload through <w>. */
struct api_frame {
	struct cbw w;
	size_t head_off;    /* where the head of "p" goes */
	size_t payload_off; /* first payload byte */
};

/* Start a frame of type <type> in <buf>; encode the payload into f->w next. */
static void api_frame_begin(struct api_frame *f, void *buf, size_t cap, const char *type)
{
	struct cbw *w = &f->w;

	cbw_init(w, buf, cap);
	f->head_off = 0;
	f->payload_off = 0;
	if (cap < PROTO_HDR_SIZE) {
		w->err = PROTO_E_NOSPACE;
		return;
	}
	w->p += PROTO_HDR_SIZE; /* header written by api_frame_end() */
	cbw_map(w, 3);
	cbw_key(w, "v");
	cbw_uint(w, PROTO_VERSION);
	cbw_key(w, "t");
	cbw_cstr(w, type);
	cbw_key(w, "p");
	if (w->err)
		return;
	if ((size_t)(w->end - w->p) < PROTO_ENV_P_RESERVE) {
		w->err = PROTO_E_NOSPACE;
		return;
	}
	f->head_off = (size_t)(w->p - w->start);
	w->p += PROTO_ENV_P_RESERVE;
	f->payload_off = (size_t)(w->p - w->start);
}

/*
 * Finish the frame: head of "p", header with <id> and <flags>.  Returns the
 * frame's size, the writer's sticky error, PROTO_E_NOSPACE or
 * PROTO_E_OVERSIZE.
 */
static long api_frame_end(struct api_frame *f, uint32_t id, uint8_t flags)
{
	struct cbw *w = &f->w, head;
	uint8_t *payload = w->start + f->payload_off;
	size_t plen, hs, total;

	if (w->err)
		return w->err;
	plen = (size_t)(w->p - payload);
	hs = cbw_head_size(plen);
	if (hs > PROTO_ENV_P_RESERVE && (size_t)(w->end - w->p) < hs - PROTO_ENV_P_RESERVE)
		return PROTO_E_NOSPACE;
	total = f->head_off + hs + plen;
	if (total - PROTO_LEN_SIZE > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (hs != PROTO_ENV_P_RESERVE)
		memmove(w->start + f->head_off + hs, payload, plen);
	cbw_init(&head, w->start + f->head_off, hs);
	cbw_bytes_head(&head, plen);
	proto_frame_header_write(w->start, (uint32_t)(total - PROTO_LEN_SIZE), id, flags);
	return (long)total;
}

/* Finish a request frame (SESSION_START). */
static long api_req_end(struct api_frame *f, uint32_t id)
{
	return api_frame_end(f, id, PROTO_FLAG_SESSION_START);
}

static void api_put_str(struct cbw *w, struct proto_str s)
{
	cbw_text(w, s.ptr, s.len);
}

/* A NUL-terminated char array field of <cap> bytes (written up to its NUL). */
static void api_put_chars(struct cbw *w, const char *s, size_t cap)
{
	cbw_text(w, s, strnlen(s, cap));
}

/* Write a request's port map: host_ip, host_port and limit only when set. */
static void api_port_write(struct cbw *w, const struct engine_port *p)
{
	bool ip = p->host_ip[0] != '\0';

	cbw_map(w, 1 + ip + (p->host_port != 0) + (p->limit != 0));
	if (ip) {
		cbw_key(w, "host_ip");
		api_put_chars(w, p->host_ip, sizeof(p->host_ip));
	}
	if (p->host_port) {
		cbw_key(w, "host_port");
		cbw_uint(w, p->host_port);
	}
	cbw_key(w, "guest_port");
	cbw_uint(w, p->guest_port);
	if (p->limit) {
		cbw_key(w, "limit");
		cbw_uint(w, p->limit);
	}
}

static void api_ports_write(struct cbw *w, const struct engine_port *ports, size_t n)
{
	cbw_array(w, n);
	for (size_t i = 0; i < n; i++)
		api_port_write(w, &ports[i]);
}

/* Write key <k> and text <s> when <s> is not empty. */
static void api_put_opt_str(struct cbw *w, const char *k, struct proto_str s)
{
	if (s.len == 0)
		return;
	cbw_key(w, k);
	api_put_str(w, s);
}

long engine_req_create(void *buf, size_t cap, uint32_t id, const struct engine_create *c)
{
	struct api_frame f;
	struct cbw *w = &f.w;
	size_t i, n;

	if (c->nagent > ENGINE_ARGV_MAX || c->nrlimits > ENGINE_RLIMITS_MAX ||
		c->nports > ENGINE_PORTS_MAX)
		return PROTO_E_RANGE;
	n = (c->name.len > 0) + (c->backend.len > 0) + (c->nagent > 0) + (c->ns.len > 0) +
	    (c->root.len > 0) + (c->nrlimits > 0) + (c->nports > 0) + (c->boot_timeout_ms > 0);
	api_frame_begin(&f, buf, cap, api_verb_names[ENGINE_V_CREATE]);
	cbw_map(w, n);
	api_put_opt_str(w, "name", c->name);
	api_put_opt_str(w, "backend", c->backend);
	if (c->nagent) {
		cbw_key(w, "agent");
		cbw_array(w, c->nagent);
		for (i = 0; i < c->nagent; i++)
			api_put_str(w, c->agent[i]);
	}
	api_put_opt_str(w, "ns", c->ns);
	api_put_opt_str(w, "root", c->root);
	if (c->nrlimits) {
		cbw_key(w, "rlimits");
		cbw_array(w, c->nrlimits);
		for (i = 0; i < c->nrlimits; i++) {
			cbw_map(w, 3);
			cbw_key(w, "name");
			api_put_chars(w, c->rlimits[i].name, sizeof(c->rlimits[i].name));
			cbw_key(w, "soft");
			cbw_uint(w, c->rlimits[i].soft);
			cbw_key(w, "hard");
			cbw_uint(w, c->rlimits[i].hard);
		}
	}
	if (c->nports) {
		cbw_key(w, "ports");
		api_ports_write(w, c->ports, c->nports);
	}
	if (c->boot_timeout_ms) {
		cbw_key(w, "boot_timeout_ms");
		cbw_uint(w, c->boot_timeout_ms);
	}
	return api_req_end(&f, id);
}

long engine_req_simple(void *buf, size_t cap, uint32_t id, enum engine_verb v, const char *name)
{
	struct api_frame f;

	switch (v) {
	case ENGINE_V_LIST:
	case ENGINE_V_STATS:
		api_frame_begin(&f, buf, cap, api_verb_names[v]);
		cbw_map(&f.w, 0);
		break;
	case ENGINE_V_INSPECT:
	case ENGINE_V_STOP:
	case ENGINE_V_START:
	case ENGINE_V_REMOVE:
	case ENGINE_V_ATTACH:
		if (!name)
			return PROTO_E_MISSING_FIELD;
		api_frame_begin(&f, buf, cap, api_verb_names[v]);
		cbw_map(&f.w, 1);
		cbw_key(&f.w, "name");
		cbw_cstr(&f.w, name);
		break;
	default:
		return PROTO_E_BAD_VALUE; /* create and publish have their own helpers */
	}
	return api_req_end(&f, id);
}

long engine_req_publish(void *buf, size_t cap, uint32_t id, const char *name,
	const struct engine_port *ports, size_t n)
{
	struct api_frame f;

	if (!name)
		return PROTO_E_MISSING_FIELD;
	if (n > ENGINE_PORTS_MAX)
		return PROTO_E_RANGE;
	api_frame_begin(&f, buf, cap, api_verb_names[ENGINE_V_PUBLISH]);
	cbw_map(&f.w, 2);
	cbw_key(&f.w, "name");
	cbw_cstr(&f.w, name);
	cbw_key(&f.w, "ports");
	api_ports_write(&f.w, ports, n);
	return api_req_end(&f, id);
}

long engine_result(void *buf, size_t cap, uint32_t id, const char *err,
	void (*data_fn)(struct cbw *w, const void *ctx), const void *ctx)
{
	struct api_frame f;
	struct cbw *w = &f.w;

	api_frame_begin(&f, buf, cap, ENGINE_API_RESULT);
	cbw_map(w, 3);
	cbw_key(w, "ok");
	cbw_bool(w, err == NULL);
	cbw_key(w, "error");
	if (err)
		cbw_cstr(w, err);
	else
		cbw_null(w);
	cbw_key(w, "data");
	if (!err && data_fn)
		data_fn(w, ctx);
	else
		cbw_null(w);
	return api_frame_end(&f, id, PROTO_FLAG_TERMINAL);
}

/*
 * The shard stats counters, in wire order: each key is the field's name.
 * X(field, bytes) for the u32 and u64 fields of struct engine_shard_stats.
 */
#define API_STATS_FIELDS(X)                                                                        \
	X(shard, 4)                                                                                \
	X(clients, 8)                                                                              \
	X(consoles, 8)                                                                             \
	X(port_conns, 8)                                                                           \
	X(frames_in, 8)                                                                            \
	X(frames_out, 8)                                                                           \
	X(bytes_in, 8)                                                                             \
	X(bytes_out, 8)                                                                            \
	X(calls_sent, 8)                                                                           \
	X(calls_run, 8)                                                                            \
	X(inbox_depth, 4)                                                                          \
	X(copies, 8)                                                                               \
	X(copy_bytes, 8)                                                                           \
	X(drops, 8)                                                                                \
	X(refused, 8)                                                                              \
	X(stalls, 8)                                                                               \
	X(bulk_streams, 8)                                                                         \
	X(pool_in_use, 8)                                                                          \
	X(pool_total, 8)

#define API_STATS_KEY(f, size) #f,
static const char *const api_stats_keys[] = {API_STATS_FIELDS(API_STATS_KEY)};

/* Where each counter lives in struct engine_shard_stats, and its width. */
static const struct {
	size_t off;
	size_t size;
} api_stats_at[] = {
#define API_STATS_AT(f, sz) {offsetof(struct engine_shard_stats, f), sz},
	API_STATS_FIELDS(API_STATS_AT)
#undef API_STATS_AT
};

#define API_STATS_SIZE_CHECK(f, sz)                                                                \
	_Static_assert(sizeof(((struct engine_shard_stats *)0)->f) == sz, #f " width");
API_STATS_FIELDS(API_STATS_SIZE_CHECK)
#undef API_STATS_SIZE_CHECK
#undef API_STATS_KEY

#define API_NSTATS (sizeof(api_stats_keys) / sizeof(api_stats_keys[0]))

void engine_stats_write(struct cbw *w, const struct engine_shard_stats *st)
{
	const uint8_t *base = (const uint8_t *)st;
	uint32_t v32;
	uint64_t v64;

	cbw_map(w, API_NSTATS);
	for (size_t i = 0; i < API_NSTATS; i++) {
		cbw_key(w, api_stats_keys[i]);
		if (api_stats_at[i].size == 4) {
			memcpy(&v32, base + api_stats_at[i].off, 4);
			cbw_uint(w, v32);
		} else {
			memcpy(&v64, base + api_stats_at[i].off, 8);
			cbw_uint(w, v64);
		}
	}
}

void engine_info_write(struct cbw *w, const struct engine_info *in)
{
	size_t nports = in->nports < ENGINE_PORTS_MAX ? in->nports : ENGINE_PORTS_MAX;

	cbw_map(w, 15);
	cbw_key(w, "name");
	api_put_chars(w, in->name, sizeof(in->name));
	cbw_key(w, "state");
	api_put_chars(w, in->state, sizeof(in->state));
	cbw_key(w, "backend");
	api_put_chars(w, in->backend, sizeof(in->backend));
	cbw_key(w, "agent_version");
	api_put_chars(w, in->agent_version, sizeof(in->agent_version));
	cbw_key(w, "error");
	api_put_chars(w, in->error, sizeof(in->error));
	cbw_key(w, "pid");
	cbw_int(w, in->pid);
	cbw_key(w, "shard");
	cbw_uint(w, in->shard);
	cbw_key(w, "clients");
	cbw_uint(w, in->clients);
	cbw_key(w, "generation");
	cbw_uint(w, in->generation);
	cbw_key(w, "boot_ms");
	cbw_uint(w, in->boot_ms);
	cbw_key(w, "frames_in");
	cbw_uint(w, in->frames_in);
	cbw_key(w, "frames_out");
	cbw_uint(w, in->frames_out);
	cbw_key(w, "bytes_in");
	cbw_uint(w, in->bytes_in);
	cbw_key(w, "bytes_out");
	cbw_uint(w, in->bytes_out);
	cbw_key(w, "ports");
	cbw_array(w, nports);
	for (size_t i = 0; i < nports; i++) {
		const struct engine_port_info *pi = &in->ports[i];

		cbw_map(w, 7);
		cbw_key(w, "host_ip");
		api_put_chars(w, pi->port.host_ip, sizeof(pi->port.host_ip));
		cbw_key(w, "host_port");
		cbw_uint(w, pi->port.host_port);
		cbw_key(w, "guest_port");
		cbw_uint(w, pi->port.guest_port);
		cbw_key(w, "limit");
		cbw_uint(w, pi->port.limit);
		cbw_key(w, "accepted");
		cbw_uint(w, pi->accepted);
		cbw_key(w, "refused");
		cbw_uint(w, pi->refused);
		cbw_key(w, "active");
		cbw_uint(w, pi->active);
	}
}

/* ---- decoding ---- */

/*
 * Where a decoder is, for the sentence of an error reply:
 * "<verb>: <list>[<index>].<field>: <what went wrong>".
 */
struct api_dec {
	const char *verb;  /* "create", "publish", "info" ... */
	const char *list;  /* array being decoded ("ports"), or NULL */
	size_t index;	   /* element of <list> */
	const char *field; /* key being decoded, or NULL */
	char *why;	   /* sentence out, may be NULL */
	size_t cap;
	bool said; /* <why> already holds a specific sentence */
};

static void api_dec_init(struct api_dec *d, const char *verb, char *why, size_t cap)
{
	memset(d, 0, sizeof(*d));
	d->verb = verb;
	d->why = why;
	d->cap = cap;
	if (why && cap)
		why[0] = '\0';
}

/* Write "<verb>: <where>: " into <buf>; returns the bytes written (cut to <cap>). */
static size_t api_dec_where(const struct api_dec *d, char *buf, size_t cap)
{
	int n;

	if (d->list && d->field)
		n = snprintf(buf, cap, "%s: %s[%zu].%s: ", d->verb, d->list, d->index, d->field);
	else if (d->list)
		n = snprintf(buf, cap, "%s: %s[%zu]: ", d->verb, d->list, d->index);
	else if (d->field)
		n = snprintf(buf, cap, "%s: %s: ", d->verb, d->field);
	else
		n = snprintf(buf, cap, "%s: ", d->verb);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* A specific sentence for error <rc> at the decoder's place; returns <rc>. */
__attribute__((format(printf, 3, 4))) static int api_say(
	struct api_dec *d, int rc, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!d->why || !d->cap)
		return rc;
	n = api_dec_where(d, d->why, d->cap);
	va_start(ap, fmt);
	vsnprintf(d->why + n, d->cap - n, fmt, ap);
	va_end(ap);
	d->said = true;
	return rc;
}

/* The generic sentence for <rc> when no specific one was said; returns <rc>. */
static int api_dec_fail(struct api_dec *d, int rc)
{
	if (rc < 0 && !d->said)
		api_say(d, rc, "%s", proto_strerror(rc));
	return rc;
}

/* Decoder of the value of key <field> (index in the key table) into <obj>. */
typedef int (*api_field_fn)(struct cbr *r, struct api_dec *d, void *obj, unsigned field);

/*
 * Decode the map at <r>: keys found among the first <n> (<= 32) of <keys> go to
 * <fn> with their index, others are skipped.  Returns 0,
 * PROTO_E_DUP_FIELD, PROTO_E_MISSING_FIELD (a key of <required> absent,
 * named in d->field) or the first error of the reader or <fn>.
 */
static int api_map(struct cbr *r, struct api_dec *d, const char *const *keys, unsigned n,
	uint32_t required, api_field_fn fn, void *obj)
{
	const char *field = d->field;
	struct proto_str key;
	struct cbr_agg m;
	uint32_t seen = 0;
	unsigned i;
	int rc;

	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		d->field = field; /* an error in a key or a skipped value is the map's */
		rc = cbr_key(r, &key);
		if (rc < 0)
			return rc;
		for (i = 0; i < n && !proto_str_eq(key, keys[i]); i++)
			;
		if (i == n) {
			rc = cbr_skip(r);
		} else {
			d->field = keys[i];
			if (seen & (1u << i))
				return PROTO_E_DUP_FIELD;
			seen |= 1u << i;
			rc = fn(r, d, obj, i);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if ((required & (1u << i)) && !(seen & (1u << i))) {
			d->field = keys[i];
			return PROTO_E_MISSING_FIELD;
		}
	}
	d->field = field;
	return 0;
}

/* Decoder of element <i> of an array into the <base> of the caller's list. */
typedef int (*api_elem_fn)(struct cbr *r, struct api_dec *d, void *base, size_t i);

/*
 * Decode the array at <r> (the value of key d->field), at most <max>
 * elements, each by <fn>; *<n> gets the count.  Returns 0, PROTO_E_RANGE
 * past <max>, or the first error of the reader or <fn>.
 */
static int api_array(
	struct cbr *r, struct api_dec *d, size_t max, api_elem_fn fn, void *base, size_t *n)
{
	const char *list = d->field;
	struct cbr_agg a;
	int rc;

	*n = 0;
	rc = cbr_enter_array(r, &a);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		if (*n == max) {
			d->list = NULL;
			d->field = list;
			return api_say(d, PROTO_E_RANGE, "more than %zu entries", max);
		}
		d->list = list;
		d->index = *n;
		d->field = NULL;
		rc = fn(r, d, base, *n);
		if (rc < 0)
			return rc;
		(*n)++;
	}
	if (rc < 0)
		return rc;
	d->list = NULL;
	d->field = list;
	return 0;
}

/* A request's text field: no NUL byte (it becomes a C string, a path, an argv word). */
static int api_text(struct cbr *r, struct api_dec *d, struct proto_str *s)
{
	int rc = cbr_text(r, s);

	if (rc < 0)
		return rc;
	if (memchr(s->ptr, '\0', s->len))
		return api_say(d, PROTO_E_BAD_VALUE, "text contains a NUL byte");
	return 0;
}

/* A text into the char array <out> of <cap> bytes; longer is PROTO_E_RANGE. */
static int api_chars(struct cbr *r, struct api_dec *d, char *out, size_t cap)
{
	struct proto_str s;
	int rc = api_text(r, d, &s);

	if (rc < 0)
		return rc;
	if (s.len >= cap)
		return api_say(d, PROTO_E_RANGE, "%zu bytes, at most %zu", s.len, cap - 1);
	memcpy(out, s.ptr, s.len);
	out[s.len] = '\0';
	return 0;
}

/* Copy <s> into <out> of <cap> (> 0) bytes, cut to fit at a UTF-8 character boundary. */
static void api_copy_cut(struct proto_str s, char *out, size_t cap)
{
	size_t n = s.len;

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)s.ptr[n] & 0xc0) == 0x80)
			n--; /* s.ptr[n] would continue a character: cut before its lead byte */
	}
	memcpy(out, s.ptr, n);
	out[n] = '\0';
}

/* A text shown to users into <out> of <cap> bytes: cut to fit rather than refused. */
static int api_chars_cut(struct cbr *r, char *out, size_t cap)
{
	struct proto_str s;
	int rc = cbr_text(r, &s);

	if (rc < 0)
		return rc;
	api_copy_cut(s, out, cap);
	return 0;
}

/* A sandbox name in a request: bounded, then checked (engine_name_check). */
static int api_name(struct cbr *r, struct api_dec *d, struct proto_str *name)
{
	int rc = api_text(r, d, name);

	if (rc < 0)
		return rc;
	if (name->len > ENGINE_NAME_MAX)
		return api_say(
			d, PROTO_E_RANGE, "%zu bytes, at most %u", name->len, ENGINE_NAME_MAX);
	if (engine_name_check(name->ptr, name->len, d->why, d->cap) < 0) {
		d->said = d->why && d->cap;
		return PROTO_E_BAD_VALUE;
	}
	return 0;
}

/* A port number: an unsigned integer that fits 16 bits. */
static int api_port_number(struct cbr *r, struct api_dec *d, uint16_t *port)
{
	int rc = cbr_u16(r, port);

	if (rc == PROTO_E_RANGE)
		return api_say(d, rc, "not a port number (0-65535)");
	return rc;
}

/* Port map keys; requests know the first four, info adds the counters. */
static const char *const api_port_keys[] = {
	"host_ip", "host_port", "guest_port", "limit", "accepted", "refused", "active"};
#define API_REQ_PORT_KEYS 4u

static int api_port_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct engine_port_info *pi = obj;

	switch (field) {
	case 0:
		return api_chars(r, d, pi->port.host_ip, sizeof(pi->port.host_ip));
	case 1:
		return api_port_number(r, d, &pi->port.host_port);
	case 2:
		return api_port_number(r, d, &pi->port.guest_port);
	case 3:
		return cbr_u32(r, &pi->port.limit);
	case 4:
		return cbr_u64(r, &pi->accepted);
	case 5:
		return cbr_u64(r, &pi->refused);
	default:
		return cbr_u64(r, &pi->active);
	}
}

/* One port map of a request into ports[i]: guest_port required, host_ip numeric. */
static int api_req_port(struct cbr *r, struct api_dec *d, void *base, size_t i)
{
	struct engine_port *p = (struct engine_port *)base + i;
	unsigned char addr[sizeof(struct in6_addr)];
	struct engine_port_info pi;
	int rc;

	memset(&pi, 0, sizeof(pi));
	rc = api_map(r, d, api_port_keys, API_REQ_PORT_KEYS, 1u << 2, api_port_field, &pi);
	if (rc < 0)
		return rc;
	*p = pi.port;
	if (p->guest_port == 0) {
		d->field = "guest_port";
		return api_say(d, PROTO_E_BAD_VALUE, "0 is not a port: use 1-65535");
	}
	if (p->host_ip[0] == '\0') {
		strcpy(p->host_ip, "127.0.0.1");
	} else if (inet_pton(AF_INET, p->host_ip, addr) != 1 &&
		   inet_pton(AF_INET6, p->host_ip, addr) != 1) {
		d->field = "host_ip";
		return api_say(d, PROTO_E_BAD_VALUE, "`%s` is not a numeric IPv4 or IPv6 address",
			p->host_ip);
	}
	d->field = NULL;
	return 0;
}

static const char *const api_rlimit_keys[] = {"name", "soft", "hard"};

static int api_rlimit_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct engine_rlimit *rl = obj;

	switch (field) {
	case 0:
		return api_chars(r, d, rl->name, sizeof(rl->name));
	case 1:
		return cbr_u64(r, &rl->soft);
	default:
		return cbr_u64(r, &rl->hard);
	}
}

/* One rlimit map into rlimits[i]: a known name (spec 3.2), soft <= hard. */
static int api_rlimit(struct cbr *r, struct api_dec *d, void *base, size_t i)
{
	struct engine_rlimit *rl = (struct engine_rlimit *)base + i;
	struct proto_str name;
	int rc;

	rc = api_map(r, d, api_rlimit_keys, 3, 7, api_rlimit_field, rl);
	if (rc < 0)
		return rc;
	name.ptr = rl->name;
	name.len = strlen(rl->name);
	d->field = "name";
	if (proto_rlimit_resource(name) < 0)
		return api_say(d, PROTO_E_BAD_VALUE,
			"unknown rlimit `%s`: use cpu, fsize, data, stack, core, rss, nproc, "
			"nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio or rttime",
			rl->name);
	if (rl->soft > rl->hard) {
		d->field = "soft";
		return api_say(d, PROTO_E_BAD_VALUE, "soft limit %llu above the hard limit %llu",
			(unsigned long long)rl->soft, (unsigned long long)rl->hard);
	}
	d->field = NULL;
	return 0;
}

static int api_agent_word(struct cbr *r, struct api_dec *d, void *base, size_t i)
{
	return api_text(r, d, (struct proto_str *)base + i);
}

static const char *const api_create_keys[] = {
	"name", "backend", "agent", "ns", "root", "rlimits", "ports", "boot_timeout_ms"};

static int api_create_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct engine_create *c = obj;

	switch (field) {
	case 0:
		return api_name(r, d, &c->name);
	case 1:
		return api_text(r, d, &c->backend);
	case 2:
		return api_array(r, d, ENGINE_ARGV_MAX, api_agent_word, c->agent, &c->nagent);
	case 3:
		return api_text(r, d, &c->ns);
	case 4:
		return api_text(r, d, &c->root);
	case 5:
		return api_array(r, d, ENGINE_RLIMITS_MAX, api_rlimit, c->rlimits, &c->nrlimits);
	case 6:
		return api_array(r, d, ENGINE_PORTS_MAX, api_req_port, c->ports, &c->nports);
	default:
		return cbr_u32(r, &c->boot_timeout_ms);
	}
}

int engine_decode_create(const uint8_t *p, size_t n, struct proto_arena *a, struct engine_create *c,
	char *why, size_t cap)
{
	struct api_dec d;
	struct cbr r;

	memset(c, 0, sizeof(*c));
	api_dec_init(&d, "create", why, cap);
	cbr_init(&r, p, n, a);
	return api_dec_fail(&d, api_map(&r, &d, api_create_keys, 8, 1, api_create_field, c));
}

static const char *const api_name_keys[] = {"name", "ports"};

/* The fields of a {name} or {name, ports} request (struct api_named). */
struct api_named {
	struct proto_str *name;
	struct engine_port *ports;
	size_t *nports;
};

static int api_named_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct api_named *nm = obj;

	if (field == 0)
		return api_name(r, d, nm->name);
	return api_array(r, d, ENGINE_PORTS_MAX, api_req_port, nm->ports, nm->nports);
}

int engine_decode_name(const uint8_t *p, size_t n, struct proto_str *name)
{
	struct api_named nm = {.name = name};
	struct api_dec d;
	struct cbr r;

	memset(name, 0, sizeof(*name));
	api_dec_init(&d, "request", NULL, 0);
	cbr_init(&r, p, n, NULL);
	return api_map(&r, &d, api_name_keys, 1, 1, api_named_field, &nm);
}

int engine_decode_publish(const uint8_t *p, size_t n, struct proto_str *name,
	struct engine_port *ports, size_t *nports, char *why, size_t cap)
{
	struct api_named nm = {.name = name, .ports = ports, .nports = nports};
	struct api_dec d;
	struct cbr r;
	int rc;

	memset(name, 0, sizeof(*name));
	*nports = 0;
	api_dec_init(&d, "publish", why, cap);
	cbr_init(&r, p, n, NULL);
	rc = api_map(&r, &d, api_name_keys, 2, 3, api_named_field, &nm);
	if (rc == 0 && *nports == 0)
		rc = api_say(&d, PROTO_E_BAD_VALUE, "no port given");
	return api_dec_fail(&d, rc);
}

/* ---- results (client side) ---- */

/* A decoded result payload. */
struct api_result {
	bool ok;
	char *err;
	size_t cap;
	const uint8_t *data;
	size_t data_len;
};

static const char *const api_result_keys[] = {"ok", "error", "data"};

static int api_result_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct api_result *res = obj;
	struct proto_str s;
	size_t start;
	int rc;

	switch (field) {
	case 0:
		return cbr_bool(r, &res->ok);
	case 1:
		rc = cbr_absent(r);
		if (rc != 0)
			return rc < 0 ? rc : 0; /* null: no error text */
		rc = cbr_text(r, &s);
		if (rc == 0 && res->cap)
			api_copy_cut(s, res->err, res->cap);
		return rc;
	default:
		start = cbr_offset(r);
		rc = cbr_skip(r);
		if (rc < 0)
			return rc;
		res->data = r->start + start;
		res->data_len = cbr_offset(r) - start;
		return 0;
	}
}

int engine_decode_result(const uint8_t *p, size_t n, bool *ok, char *err, size_t cap,
	const uint8_t **data, size_t *data_len)
{
	struct api_result res = {.err = err, .cap = cap, .data = api_null_item, .data_len = 1};
	struct api_dec d;
	struct cbr r;
	int rc;

	if (err && cap)
		err[0] = '\0';
	else
		res.cap = 0;
	api_dec_init(&d, "result", NULL, 0);
	cbr_init(&r, p, n, NULL);
	rc = api_map(&r, &d, api_result_keys, 3, 1, api_result_field, &res);
	if (rc < 0)
		return rc;
	if (res.ok && res.cap)
		err[0] = '\0';
	else if (!res.ok && res.cap && err[0] == '\0')
		snprintf(err, cap, "sandwired refused the request without saying why");
	*ok = res.ok;
	*data = res.data;
	*data_len = res.data_len;
	return 0;
}

static int api_info_port(struct cbr *r, struct api_dec *d, void *base, size_t i)
{
	struct engine_port_info *pi = (struct engine_port_info *)base + i;

	return api_map(r, d, api_port_keys, 7, 0, api_port_field, pi);
}

static const char *const api_info_keys[] = {"name", "state", "backend", "agent_version", "error",
	"pid", "shard", "clients", "generation", "boot_ms", "frames_in", "frames_out", "bytes_in",
	"bytes_out", "ports"};

static int api_info_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	struct engine_info *in = obj;

	switch (field) {
	case 0:
		return api_chars(r, d, in->name, sizeof(in->name));
	case 1:
		return api_chars_cut(r, in->state, sizeof(in->state));
	case 2:
		return api_chars_cut(r, in->backend, sizeof(in->backend));
	case 3:
		return api_chars_cut(r, in->agent_version, sizeof(in->agent_version));
	case 4:
		return api_chars_cut(r, in->error, sizeof(in->error));
	case 5:
		return cbr_i64(r, &in->pid);
	case 6:
		return cbr_u32(r, &in->shard);
	case 7:
		return cbr_u32(r, &in->clients);
	case 8:
		return cbr_u32(r, &in->generation);
	case 9:
		return cbr_u64(r, &in->boot_ms);
	case 10:
		return cbr_u64(r, &in->frames_in);
	case 11:
		return cbr_u64(r, &in->frames_out);
	case 12:
		return cbr_u64(r, &in->bytes_in);
	case 13:
		return cbr_u64(r, &in->bytes_out);
	default:
		return api_array(r, d, ENGINE_PORTS_MAX, api_info_port, in->ports, &in->nports);
	}
}

int engine_decode_info(struct cbr *r, struct engine_info *in)
{
	struct api_dec d;

	memset(in, 0, sizeof(*in));
	api_dec_init(&d, "info", NULL, 0);
	return api_map(r, &d, api_info_keys, 15, 1, api_info_field, in);
}

static int api_stats_field(struct cbr *r, struct api_dec *d, void *obj, unsigned field)
{
	uint8_t *at = (uint8_t *)obj + api_stats_at[field].off;
	uint32_t v32;
	uint64_t v64;
	int rc;

	if (api_stats_at[field].size == 4) {
		rc = cbr_u32(r, &v32);
		memcpy(at, &v32, sizeof(v32));
	} else {
		rc = cbr_u64(r, &v64);
		memcpy(at, &v64, sizeof(v64));
	}
	return rc;
}

/* A list of data maps: {<key>: [item...]}, each item decoded and handed to a callback. */
struct api_each {
	const char *key;				      /* "sandboxes", "shards" */
	int (*item)(struct cbr *r, const struct api_each *e); /* decode one, call back */
	void (*info_fn)(const struct engine_info *in, void *ctx);
	void (*stats_fn)(const struct engine_shard_stats *st, void *ctx);
	void *ctx;
};

static int api_each_info(struct cbr *r, const struct api_each *e)
{
	struct engine_info in;
	int rc = engine_decode_info(r, &in);

	if (rc == 0)
		e->info_fn(&in, e->ctx);
	return rc;
}

static int api_each_stats(struct cbr *r, const struct api_each *e)
{
	struct engine_shard_stats st;
	struct api_dec d;
	int rc;

	memset(&st, 0, sizeof(st));
	api_dec_init(&d, "stats", NULL, 0);
	rc = api_map(r, &d, api_stats_keys, API_NSTATS, 0, api_stats_field, &st);
	if (rc == 0)
		e->stats_fn(&st, e->ctx);
	return rc;
}

/* Decode {<e->key>: [...]} at <data>, one callback per item; the key is required. */
static int api_each(const uint8_t *data, size_t n, const struct api_each *e)
{
	struct proto_str key;
	struct cbr_agg m, a;
	bool seen = false;
	struct cbr r;
	int rc;

	cbr_init(&r, data, n, NULL);
	rc = cbr_enter_map(&r, &m);
	while (rc == 0 && (rc = cbr_agg_next(&r, &m)) > 0) {
		rc = cbr_key(&r, &key);
		if (rc < 0)
			break;
		if (!proto_str_eq(key, e->key)) {
			rc = cbr_skip(&r);
			continue;
		}
		if (seen)
			return PROTO_E_DUP_FIELD;
		seen = true;
		rc = cbr_enter_array(&r, &a);
		while (rc == 0 && (rc = cbr_agg_next(&r, &a)) > 0)
			rc = e->item(&r, e);
	}
	if (rc < 0)
		return rc;
	return seen ? 0 : PROTO_E_MISSING_FIELD;
}

int engine_decode_list(const uint8_t *data, size_t n,
	void (*fn)(const struct engine_info *in, void *ctx), void *ctx)
{
	struct api_each e = {.key = "sandboxes", .item = api_each_info, .info_fn = fn, .ctx = ctx};

	return api_each(data, n, &e);
}

int engine_decode_stats(const uint8_t *data, size_t n,
	void (*fn)(const struct engine_shard_stats *st, void *ctx), void *ctx)
{
	struct api_each e = {.key = "shards", .item = api_each_stats, .stats_fn = fn, .ctx = ctx};

	return api_each(data, n, &e);
}
