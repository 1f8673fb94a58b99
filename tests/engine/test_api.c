/*
 * tests/engine/test_api.c - the management protocol (engine/api.h) and its
 * blocking client (engine/swclient.h): every request and result both ways,
 * hostile and cut payloads, the name and port checks, and swclient against
 * a fake daemon on a socketpair (a thread answering from a script).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/api.h"
#include "engine/swclient.h"
#include "proto/envelope.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/msg.h"

#define STR(lit) ((struct proto_str){(lit), sizeof(lit) - 1})

static uint8_t buf[ENGINE_REQ_MAX];
static uint8_t arena_mem[4096];
static struct proto_arena arena;
static char why[256];

/* The envelope of frame <f> (<n> bytes): checks id, flags, v and t; returns the payload. */
static struct proto_env open_frame(
	const uint8_t *f, long n, uint32_t id, uint8_t flags, const char *t)
{
	struct proto_frame fr;
	struct proto_env e;
	int rc;

	cr_assert(n > 0, "encode failed: %s", proto_strerror((int)n));
	cr_assert_eq(proto_frame_parse(f, (size_t)n, &fr), n, "not one whole frame");
	cr_assert_eq(fr.id, id);
	cr_assert_eq(fr.flags, flags);
	rc = proto_env_decode(fr.body, fr.body_len, NULL, &e, NULL);
	cr_assert_eq(rc, PROTO_E_UNKNOWN_TYPE, "engine types are not agent types: %d", rc);
	cr_assert_eq(e.v, 7);
	cr_assert(proto_str_eq(e.t, t), "t is %.*s, want %s", (int)e.t.len, e.t.ptr, t);
	return e;
}

static bool str_is(struct proto_str s, const char *lit)
{
	return proto_str_eq(s, lit);
}

/* A create request with every field set. */
static void full_create(struct engine_create *c)
{
	memset(c, 0, sizeof(*c));
	c->name = STR("web-1.test_a");
	c->backend = STR("process");
	c->agent[0] = STR("/usr/bin/sandwire-agent");
	c->agent[1] = STR("--verbose");
	c->agent[2] = STR("");
	c->nagent = 3;
	c->ns = STR("user,pid,mount");
	c->root = STR("/srv/roots/web");
	strcpy(c->rlimits[0].name, "nofile");
	c->rlimits[0].soft = 1024;
	c->rlimits[0].hard = 4096;
	strcpy(c->rlimits[1].name, "as");
	c->rlimits[1].soft = UINT64_MAX;
	c->rlimits[1].hard = UINT64_MAX;
	c->nrlimits = 2;
	strcpy(c->ports[0].host_ip, "0.0.0.0");
	c->ports[0].host_port = 8080;
	c->ports[0].guest_port = 80;
	c->ports[0].limit = 10;
	strcpy(c->ports[1].host_ip, "::1");
	c->ports[1].host_port = 0;
	c->ports[1].guest_port = 65535;
	c->nports = 2;
	c->boot_timeout_ms = 12345;
}

static void setup(void)
{
	proto_arena_init(&arena, arena_mem, sizeof(arena_mem));
	why[0] = '\0';
}

TestSuite(engine_api, .init = setup);

Test(engine_api, verbs_name_and_look_up_both_ways)
{
	for (int v = 0; v < ENGINE_V__COUNT; v++) {
		const char *n = engine_verb_name((enum engine_verb)v);

		cr_assert(n && strncmp(n, ENGINE_API_PREFIX, strlen(ENGINE_API_PREFIX)) == 0);
		cr_assert_eq(engine_verb_lookup(n, strlen(n)), v);
	}
	cr_assert_str_eq(engine_verb_name(ENGINE_V_ATTACH), "sandwire.engine.attach");
	cr_assert_null(engine_verb_name(ENGINE_V_UNKNOWN));
	cr_assert_null(engine_verb_name(ENGINE_V__COUNT));
	cr_assert_eq(
		engine_verb_lookup(ENGINE_API_RESULT, strlen(ENGINE_API_RESULT)), ENGINE_V_UNKNOWN);
	cr_assert_eq(engine_verb_lookup("sandwire.engine.lis", 19), ENGINE_V_UNKNOWN);
	cr_assert_eq(engine_verb_lookup("sandwire.engine.list", 20), ENGINE_V_LIST);
}

Test(engine_api, create_round_trips_every_field)
{
	struct engine_create c, d;
	struct proto_env e;
	long n;

	full_create(&c);
	n = engine_req_create(buf, sizeof(buf), 42, &c);
	e = open_frame(buf, n, 42, PROTO_FLAG_SESSION_START, "sandwire.engine.create");
	cr_assert_eq(
		engine_decode_create(e.p, e.p_len, &arena, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert(str_is(d.name, "web-1.test_a"));
	cr_assert(str_is(d.backend, "process"));
	cr_assert_eq(d.nagent, 3);
	cr_assert(str_is(d.agent[0], "/usr/bin/sandwire-agent"));
	cr_assert(str_is(d.agent[1], "--verbose"));
	cr_assert(str_is(d.agent[2], ""));
	cr_assert(str_is(d.ns, "user,pid,mount"));
	cr_assert(str_is(d.root, "/srv/roots/web"));
	cr_assert_eq(d.nrlimits, 2);
	cr_assert_str_eq(d.rlimits[0].name, "nofile");
	cr_assert_eq(d.rlimits[0].soft, 1024);
	cr_assert_eq(d.rlimits[0].hard, 4096);
	cr_assert_str_eq(d.rlimits[1].name, "as");
	cr_assert_eq(d.rlimits[1].soft, UINT64_MAX);
	cr_assert_eq(d.rlimits[1].hard, UINT64_MAX);
	cr_assert_eq(d.nports, 2);
	cr_assert_str_eq(d.ports[0].host_ip, "0.0.0.0");
	cr_assert_eq(d.ports[0].host_port, 8080);
	cr_assert_eq(d.ports[0].guest_port, 80);
	cr_assert_eq(d.ports[0].limit, 10);
	cr_assert_str_eq(d.ports[1].host_ip, "::1");
	cr_assert_eq(d.ports[1].host_port, 0);
	cr_assert_eq(d.ports[1].guest_port, 65535);
	cr_assert_eq(d.ports[1].limit, 0);
	cr_assert_eq(d.boot_timeout_ms, 12345);
	/* a buffer of exactly the frame's size is enough, one byte less is not */
	cr_assert_eq(engine_req_create(buf, (size_t)n, 42, &c), n);
	cr_assert_eq(engine_req_create(buf, (size_t)n - 1, 42, &c), PROTO_E_NOSPACE);
}

Test(engine_api, create_omits_empty_fields_and_defaults_them)
{
	static const uint8_t want[] = {0xa1, 0x64, 'n', 'a', 'm', 'e', 0x61, 'x'};
	struct engine_create c = {.name = STR("x")}, d;
	struct proto_env e;

	e = open_frame(buf, engine_req_create(buf, sizeof(buf), 1, &c), 1, PROTO_FLAG_SESSION_START,
		"sandwire.engine.create");
	cr_assert_eq(e.p_len, sizeof(want));
	cr_assert_arr_eq(e.p, want, sizeof(want));
	memset(&d, 0xa5, sizeof(d));
	cr_assert_eq(engine_decode_create(e.p, e.p_len, &arena, &d, why, sizeof(why)), 0);
	cr_assert(str_is(d.name, "x"));
	cr_assert_eq(d.backend.len + d.ns.len + d.root.len, 0);
	cr_assert_eq(d.nagent + d.nrlimits + d.nports + d.boot_timeout_ms, 0);
}

Test(engine_api, create_refuses_more_than_the_bounds_on_encode)
{
	struct engine_create c = {.name = STR("x"), .nports = ENGINE_PORTS_MAX + 1};

	cr_assert_eq(engine_req_create(buf, sizeof(buf), 1, &c), PROTO_E_RANGE);
	c.nports = 0;
	c.nagent = ENGINE_ARGV_MAX + 1;
	cr_assert_eq(engine_req_create(buf, sizeof(buf), 1, &c), PROTO_E_RANGE);
}

Test(engine_api, simple_requests_round_trip)
{
	static const enum engine_verb named[] = {
		ENGINE_V_INSPECT, ENGINE_V_STOP, ENGINE_V_START, ENGINE_V_REMOVE, ENGINE_V_ATTACH};
	static const enum engine_verb bare[] = {ENGINE_V_LIST, ENGINE_V_STATS};
	struct proto_str name;
	struct proto_env e;

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		e = open_frame(buf, engine_req_simple(buf, sizeof(buf), 7, named[i], "box.1"), 7,
			PROTO_FLAG_SESSION_START, engine_verb_name(named[i]));
		cr_assert_eq(engine_decode_name(e.p, e.p_len, &name), 0);
		cr_assert(str_is(name, "box.1"));
		cr_assert_eq(engine_req_simple(buf, sizeof(buf), 7, named[i], NULL),
			PROTO_E_MISSING_FIELD);
	}
	for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++) {
		e = open_frame(buf, engine_req_simple(buf, sizeof(buf), 9, bare[i], NULL), 9,
			PROTO_FLAG_SESSION_START, engine_verb_name(bare[i]));
		cr_assert_eq(e.p_len, 1);
		cr_assert_eq(e.p[0], 0xa0, "an empty map");
	}
	cr_assert_eq(
		engine_req_simple(buf, sizeof(buf), 1, ENGINE_V_CREATE, "x"), PROTO_E_BAD_VALUE);
	cr_assert_eq(
		engine_req_simple(buf, sizeof(buf), 1, ENGINE_V_PUBLISH, "x"), PROTO_E_BAD_VALUE);
	cr_assert_eq(engine_req_simple(buf, 8, 1, ENGINE_V_LIST, NULL), PROTO_E_NOSPACE);
}

Test(engine_api, publish_round_trips_and_defaults_the_host_ip)
{
	struct engine_port ports[2] = {{.guest_port = 22, .host_port = 2222},
		{.host_ip = "192.168.1.9", .guest_port = 443, .limit = 3}};
	struct engine_port got[ENGINE_PORTS_MAX];
	struct proto_str name;
	struct proto_env e;
	size_t n;

	e = open_frame(buf, engine_req_publish(buf, sizeof(buf), 5, "db", ports, 2), 5,
		PROTO_FLAG_SESSION_START, "sandwire.engine.publish");
	cr_assert_eq(engine_decode_publish(e.p, e.p_len, &name, got, &n, why, sizeof(why)), 0, "%s",
		why);
	cr_assert(str_is(name, "db"));
	cr_assert_eq(n, 2);
	cr_assert_str_eq(got[0].host_ip, "127.0.0.1");
	cr_assert_eq(got[0].host_port, 2222);
	cr_assert_eq(got[0].guest_port, 22);
	cr_assert_eq(got[0].limit, 0);
	cr_assert_str_eq(got[1].host_ip, "192.168.1.9");
	cr_assert_eq(got[1].guest_port, 443);
	cr_assert_eq(got[1].limit, 3);

	e = open_frame(buf, engine_req_publish(buf, sizeof(buf), 5, "db", ports, 0), 5,
		PROTO_FLAG_SESSION_START, "sandwire.engine.publish");
	cr_assert_eq(engine_decode_publish(e.p, e.p_len, &name, got, &n, why, sizeof(why)),
		PROTO_E_BAD_VALUE);
	cr_assert(strstr(why, "no port"), "%s", why);
	cr_assert_eq(
		engine_req_publish(buf, sizeof(buf), 5, NULL, ports, 1), PROTO_E_MISSING_FIELD);
	cr_assert_eq(engine_req_publish(buf, sizeof(buf), 5, "db", ports, ENGINE_PORTS_MAX + 1),
		PROTO_E_RANGE);
}

/* ---- results ---- */

static void sample_info(struct engine_info *in, int k)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->name, sizeof(in->name), "box-%d", k);
	strcpy(in->state, k == 2 ? "failed" : "running");
	strcpy(in->backend, "process");
	strcpy(in->agent_version, "sandwire-agent 0.1.0");
	if (k == 2)
		strcpy(in->error, "agent exited with status 1 before ready: “no root”");
	in->pid = k == 2 ? 0 : 1000 + k;
	in->shard = (uint32_t)k;
	in->clients = 3;
	in->generation = 7;
	in->boot_ms = 42;
	in->frames_in = 1;
	in->frames_out = 2;
	in->bytes_in = UINT64_MAX;
	in->bytes_out = 4;
	in->nports = (size_t)k;
	for (int i = 0; i < k; i++) {
		struct engine_port_info *pi = &in->ports[i];

		strcpy(pi->port.host_ip, i ? "::" : "127.0.0.1");
		pi->port.host_port = (uint16_t)(8000 + i);
		pi->port.guest_port = (uint16_t)(80 + i);
		pi->port.limit = ENGINE_PORT_LIMIT_DEF;
		pi->accepted = 100;
		pi->refused = 5;
		pi->active = 2;
	}
}

static void assert_info_eq(const struct engine_info *a, const struct engine_info *b)
{
	cr_assert_str_eq(a->name, b->name);
	cr_assert_str_eq(a->state, b->state);
	cr_assert_str_eq(a->backend, b->backend);
	cr_assert_str_eq(a->agent_version, b->agent_version);
	cr_assert_str_eq(a->error, b->error);
	cr_assert_eq(a->pid, b->pid);
	cr_assert_eq(a->shard, b->shard);
	cr_assert_eq(a->clients, b->clients);
	cr_assert_eq(a->generation, b->generation);
	cr_assert_eq(a->boot_ms, b->boot_ms);
	cr_assert_eq(a->frames_in, b->frames_in);
	cr_assert_eq(a->frames_out, b->frames_out);
	cr_assert_eq(a->bytes_in, b->bytes_in);
	cr_assert_eq(a->bytes_out, b->bytes_out);
	cr_assert_eq(a->nports, b->nports);
	for (size_t i = 0; i < a->nports; i++) {
		cr_assert_str_eq(a->ports[i].port.host_ip, b->ports[i].port.host_ip);
		cr_assert_eq(a->ports[i].port.host_port, b->ports[i].port.host_port);
		cr_assert_eq(a->ports[i].port.guest_port, b->ports[i].port.guest_port);
		cr_assert_eq(a->ports[i].port.limit, b->ports[i].port.limit);
		cr_assert_eq(a->ports[i].accepted, b->ports[i].accepted);
		cr_assert_eq(a->ports[i].refused, b->ports[i].refused);
		cr_assert_eq(a->ports[i].active, b->ports[i].active);
	}
}

static void write_info(struct cbw *w, const void *ctx)
{
	engine_info_write(w, ctx);
}

/* A result frame's payload decoded: ok, the error text and the data item. */
struct decoded {
	bool ok;
	char err[256];
	const uint8_t *data;
	size_t data_len;
};

static struct decoded open_result(long n, uint32_t id)
{
	struct proto_env e = open_frame(buf, n, id, PROTO_FLAG_TERMINAL, ENGINE_API_RESULT);
	struct decoded d;

	cr_assert_eq(engine_decode_result(
			     e.p, e.p_len, &d.ok, d.err, sizeof(d.err), &d.data, &d.data_len),
		0);
	return d;
}

Test(engine_api, info_result_round_trips_with_ports)
{
	struct engine_info in, out;
	uint8_t alone[4096];
	struct decoded d;
	struct cbw w;
	struct cbr r;

	sample_info(&in, 3);
	d = open_result(engine_result(buf, sizeof(buf), 77, NULL, write_info, &in), 77);
	cr_assert(d.ok);
	cr_assert_str_eq(d.err, "");
	/* data spans exactly the info map's bytes */
	cbw_init(&w, alone, sizeof(alone));
	engine_info_write(&w, &in);
	cr_assert_eq(d.data_len, (size_t)cbw_finish(&w));
	cr_assert_arr_eq(d.data, alone, d.data_len);
	cbr_init(&r, d.data, d.data_len, NULL);
	cr_assert_eq(engine_decode_info(&r, &out), 0);
	assert_info_eq(&out, &in);
	cr_assert_eq(cbr_offset(&r), d.data_len);
}

struct sandboxes {
	struct engine_info v[3];
	size_t n;
};

static void write_list(struct cbw *w, const void *ctx)
{
	const struct sandboxes *s = ctx;

	cbw_map(w, 1);
	cbw_key(w, "sandboxes");
	cbw_array(w, s->n);
	for (size_t i = 0; i < s->n; i++)
		engine_info_write(w, &s->v[i]);
}

static void collect_info(const struct engine_info *in, void *ctx)
{
	struct sandboxes *s = ctx;

	cr_assert_lt(s->n, 3);
	s->v[s->n++] = *in;
}

Test(engine_api, list_of_three_round_trips)
{
	struct sandboxes want = {.n = 3}, got = {0};
	struct decoded d;

	for (int k = 0; k < 3; k++)
		sample_info(&want.v[k], k);
	d = open_result(engine_result(buf, sizeof(buf), 3, NULL, write_list, &want), 3);
	cr_assert(d.ok);
	cr_assert_eq(engine_decode_list(d.data, d.data_len, collect_info, &got), 0);
	cr_assert_eq(got.n, 3);
	for (int k = 0; k < 3; k++)
		assert_info_eq(&got.v[k], &want.v[k]);
	cr_assert_str_eq(got.v[2].error, want.v[2].error, "UTF-8 text survives");
}

struct shards {
	struct engine_shard_stats v[2];
	size_t n;
};

static void write_stats(struct cbw *w, const void *ctx)
{
	const struct shards *s = ctx;

	cbw_map(w, 1);
	cbw_key(w, "shards");
	cbw_array(w, s->n);
	for (size_t i = 0; i < s->n; i++)
		engine_stats_write(w, &s->v[i]);
}

static void collect_stats(const struct engine_shard_stats *st, void *ctx)
{
	struct shards *s = ctx;

	cr_assert_lt(s->n, 2);
	s->v[s->n++] = *st;
}

Test(engine_api, stats_of_two_shards_round_trip)
{
	struct shards want = {.n = 2}, got = {0};
	struct decoded d;

	memset(want.v, 0, sizeof(want.v));
	for (int k = 0; k < 2; k++) {
		struct engine_shard_stats *st = &want.v[k];
		uint64_t b = (uint64_t)k << 40;

		st->shard = (uint32_t)k;
		st->clients = b + 1;
		st->consoles = b + 2;
		st->port_conns = b + 3;
		st->frames_in = b + 4;
		st->frames_out = b + 5;
		st->bytes_in = b + 6;
		st->bytes_out = b + 7;
		st->calls_sent = b + 8;
		st->calls_run = b + 9;
		st->inbox_depth = UINT32_MAX - (uint32_t)k;
		st->copies = b + 10;
		st->copy_bytes = b + 11;
		st->drops = b + 12;
		st->refused = b + 13;
		st->stalls = b + 14;
		st->bulk_streams = b + 16;
		st->pool_in_use = b + 15;
		st->pool_total = UINT64_MAX - (uint64_t)k;
	}
	d = open_result(engine_result(buf, sizeof(buf), 4, NULL, write_stats, &want), 4);
	cr_assert(d.ok);
	cr_assert_eq(engine_decode_stats(d.data, d.data_len, collect_stats, &got), 0);
	cr_assert_eq(got.n, 2);
	cr_assert_arr_eq(got.v, want.v, sizeof(want.v), "every counter, by its field name");
}

Test(engine_api, error_and_null_results)
{
	struct engine_info in;
	struct decoded d;

	sample_info(&in, 0);
	d = open_result(engine_result(buf, sizeof(buf), 9,
				"no sandbox named `x`: see sandwire list", write_info, &in),
		9);
	cr_assert_not(d.ok);
	cr_assert_str_eq(d.err, "no sandbox named `x`: see sandwire list");
	cr_assert_eq(d.data_len, 1);
	cr_assert_eq(d.data[0], 0xf6, "data null on an error");

	d = open_result(engine_result(buf, sizeof(buf), 10, NULL, NULL, NULL), 10);
	cr_assert(d.ok);
	cr_assert_eq(d.data_len, 1);
	cr_assert_eq(d.data[0], 0xf6);
	cr_assert_eq(engine_result(buf, 20, 10, "x", NULL, NULL), PROTO_E_NOSPACE);
}

Test(engine_api, result_error_text_is_cut_to_the_buffer_at_a_character)
{
	struct proto_env e;
	const uint8_t *data;
	size_t dlen;
	char err[6];
	bool ok;

	/* "abcd" then a 2-byte character: 5 bytes of room cut before it, not inside */
	e = open_frame(buf, engine_result(buf, sizeof(buf), 1, "abcdé", NULL, NULL), 1,
		PROTO_FLAG_TERMINAL, ENGINE_API_RESULT);
	cr_assert_eq(engine_decode_result(e.p, e.p_len, &ok, err, 5, &data, &dlen), 0);
	cr_assert_str_eq(err, "abcd");
	cr_assert_eq(engine_decode_result(e.p, e.p_len, &ok, err, 6, &data, &dlen), 0);
	cr_assert_str_eq(err, "abcd");
	cr_assert_eq(engine_decode_result(e.p, e.p_len, &ok, NULL, 0, &data, &dlen), 0);
	cr_assert_not(ok);
}

/* ---- hostile payloads ---- */

Test(engine_api, create_cut_at_every_offset_fails_cleanly)
{
	struct engine_create c, d;
	struct proto_env e;
	uint8_t p[2048];

	full_create(&c);
	e = open_frame(buf, engine_req_create(buf, sizeof(buf), 1, &c), 1, PROTO_FLAG_SESSION_START,
		"sandwire.engine.create");
	cr_assert_leq(e.p_len, sizeof(p));
	for (size_t k = 0; k < e.p_len; k++) {
		int rc;

		/* a copy of exactly k bytes, so ASan sees any read past the cut */
		uint8_t *cut = malloc(k ? k : 1);

		memcpy(cut, e.p, k);
		why[0] = '\0';
		rc = engine_decode_create(cut, k, &arena, &d, why, sizeof(why));
		free(cut);
		cr_assert_eq(
			rc, PROTO_E_TRUNCATED, "cut at %zu: %s (%s)", k, proto_strerror(rc), why);
		cr_assert(strncmp(why, "create: ", 8) == 0, "cut at %zu: no sentence: %s", k, why);
	}
	memcpy(p, e.p, e.p_len);
	cr_assert_eq(engine_decode_create(p, e.p_len, &arena, &d, why, sizeof(why)), 0);
}

static void count_info(const struct engine_info *in, void *ctx)
{
	(*(int *)ctx)++;
}

Test(engine_api, results_cut_or_mangled_never_crash)
{
	struct sandboxes want = {.n = 3};
	struct proto_env e;
	const uint8_t *data;
	uint8_t p[8192];
	size_t dlen;
	char err[64];
	int calls;
	bool ok;

	for (int k = 0; k < 3; k++)
		sample_info(&want.v[k], k);
	e = open_frame(buf, engine_result(buf, sizeof(buf), 3, NULL, write_list, &want), 3,
		PROTO_FLAG_TERMINAL, ENGINE_API_RESULT);
	cr_assert_leq(e.p_len, sizeof(p));
	for (size_t k = 0; k < e.p_len; k++) {
		cr_assert_eq(engine_decode_result(e.p, k, &ok, err, sizeof(err), &data, &dlen),
			PROTO_E_TRUNCATED, "cut at %zu", k);
	}
	/* every byte replaced by a few hostile values: any answer but a crash */
	for (size_t k = 0; k < e.p_len; k++) {
		static const uint8_t vals[] = {0x00, 0x1b, 0x5b, 0x7f, 0x9f, 0xbf, 0xff};

		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(p, e.p, e.p_len);
			p[k] = vals[v];
			if (engine_decode_result(p, e.p_len, &ok, err, sizeof(err), &data, &dlen) <
				0)
				continue;
			cr_assert((data >= p && data + dlen <= p + e.p_len) ||
					  (dlen == 1 && data[0] == 0xf6),
				"data inside the payload, or null when absent");
			calls = 0;
			engine_decode_list(data, dlen, count_info, &calls);
			cr_assert_leq(calls, 3 + 1);
		}
	}
}

Test(engine_api, create_mangled_never_crashes)
{
	static const uint8_t vals[] = {0x00, 0x18, 0x1b, 0x3f, 0x5f, 0x7b, 0x9f, 0xbf, 0xf6, 0xff};
	struct engine_create c, d;
	struct proto_env e;
	uint8_t p[2048];

	full_create(&c);
	e = open_frame(buf, engine_req_create(buf, sizeof(buf), 1, &c), 1, PROTO_FLAG_SESSION_START,
		"sandwire.engine.create");
	for (size_t k = 0; k < e.p_len; k++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(p, e.p, e.p_len);
			p[k] = vals[v];
			proto_arena_init(&arena, arena_mem, sizeof(arena_mem));
			if (engine_decode_create(p, e.p_len, &arena, &d, why, sizeof(why)) < 0)
				cr_assert(why[0], "byte %zu = %#x: failed without a sentence", k,
					vals[v]);
			else
				cr_assert(d.nagent <= ENGINE_ARGV_MAX &&
					  d.nports <= ENGINE_PORTS_MAX &&
					  d.nrlimits <= ENGINE_RLIMITS_MAX);
		}
	}
}

/* Payload builder: a writer over <p>, finished by pdone(). */
static uint8_t pbuf[16384];

static struct cbw pbegin(void)
{
	struct cbw w;

	cbw_init(&w, pbuf, sizeof(pbuf));
	return w;
}

static size_t pdone(struct cbw *w)
{
	cr_assert_gt(cbw_finish(w), 0);
	return (size_t)cbw_finish(w);
}

/* decode_create of the payload in <w>: the code, with <why> holding the sentence. */
static int create_of(struct cbw *w)
{
	struct engine_create d;
	size_t n = pdone(w);

	why[0] = '\0';
	return engine_decode_create(pbuf, n, &arena, &d, why, sizeof(why));
}

#define assert_refused(w, code, word)                                                              \
	do {                                                                                       \
		int rc_ = create_of(&(w));                                                         \
		cr_assert_eq(rc_, (code), "got %s (%s)", proto_strerror(rc_), why);                \
		cr_assert(strstr(why, (word)), "`%s` not in: %s", (word), why);                    \
	} while (0)

/* Start {name: "ok", <key>: ...}: the value is written next. */
static struct cbw named_with(const char *key)
{
	struct cbw w = pbegin();

	cbw_map(&w, 2);
	cbw_key(&w, "name");
	cbw_cstr(&w, "ok");
	cbw_key(&w, key);
	return w;
}

/* Start {name: "ok", ports: [{guest_port: 80, <key>: ...}]}: the value is written next. */
static struct cbw port_with(const char *key)
{
	struct cbw w = named_with("ports");

	cbw_array(&w, 1);
	cbw_map(&w, 2);
	cbw_key(&w, "guest_port");
	cbw_uint(&w, 80);
	cbw_key(&w, key);
	return w;
}

Test(engine_api, create_refuses_wrong_types_with_a_sentence)
{
	struct cbw w;

	w = pbegin();
	cbw_array(&w, 0);
	assert_refused(w, PROTO_E_WRONG_TYPE, "create");
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_uint(&w, 5);
	assert_refused(w, PROTO_E_WRONG_TYPE, "name");
	w = named_with("agent");
	cbw_cstr(&w, "/bin/sh");
	assert_refused(w, PROTO_E_WRONG_TYPE, "agent");
	w = named_with("agent");
	cbw_array(&w, 2);
	cbw_cstr(&w, "/bin/sh");
	cbw_bool(&w, true);
	assert_refused(w, PROTO_E_WRONG_TYPE, "agent[1]");
	w = named_with("boot_timeout_ms");
	cbw_int(&w, -1);
	assert_refused(w, PROTO_E_RANGE, "boot_timeout_ms");
	w = named_with("ports");
	cbw_array(&w, 1);
	cbw_uint(&w, 8080);
	assert_refused(w, PROTO_E_WRONG_TYPE, "ports[0]");
	w = port_with("host_port");
	cbw_cstr(&w, "8080");
	assert_refused(w, PROTO_E_WRONG_TYPE, "ports[0].host_port");
	w = port_with("host_port");
	cbw_uint(&w, 70000);
	assert_refused(w, PROTO_E_RANGE, "host_port");
	w = named_with("rlimits");
	cbw_map(&w, 0);
	assert_refused(w, PROTO_E_WRONG_TYPE, "rlimits");
	w = named_with("root");
	cbw_bytes(&w, "/x", 2);
	assert_refused(w, PROTO_E_WRONG_TYPE, "root");
}

Test(engine_api, create_refuses_bad_values_with_a_sentence)
{
	struct cbw w;

	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "backend");
	cbw_cstr(&w, "process");
	assert_refused(w, PROTO_E_MISSING_FIELD, "name");
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, "bad name");
	assert_refused(w, PROTO_E_BAD_VALUE, "invalid character ' '");
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, "");
	assert_refused(w, PROTO_E_BAD_VALUE, "empty");
	w = pbegin();
	cbw_map(&w, 2);
	cbw_key(&w, "name");
	cbw_cstr(&w, "a");
	cbw_key(&w, "name");
	cbw_cstr(&w, "b");
	assert_refused(w, PROTO_E_DUP_FIELD, "name");
	w = named_with("root");
	cbw_text(&w, "/srv\0/etc", 9);
	assert_refused(w, PROTO_E_BAD_VALUE, "NUL");
	w = port_with("limit");
	cbw_uint(&w, 1);
	cr_assert_eq(create_of(&w), 0, "%s", why);
	w = named_with("ports");
	cbw_array(&w, 1);
	cbw_map(&w, 1);
	cbw_key(&w, "host_port");
	cbw_uint(&w, 80);
	assert_refused(w, PROTO_E_MISSING_FIELD, "ports[0].guest_port");
	w = named_with("ports");
	cbw_array(&w, 1);
	cbw_map(&w, 1);
	cbw_key(&w, "guest_port");
	cbw_uint(&w, 0);
	assert_refused(w, PROTO_E_BAD_VALUE, "1-65535");
	w = port_with("host_ip");
	cbw_cstr(&w, "localhost");
	assert_refused(w, PROTO_E_BAD_VALUE, "numeric");
	w = named_with("rlimits");
	cbw_array(&w, 1);
	cbw_map(&w, 3);
	cbw_key(&w, "name");
	cbw_cstr(&w, "files");
	cbw_key(&w, "soft");
	cbw_uint(&w, 1);
	cbw_key(&w, "hard");
	cbw_uint(&w, 1);
	assert_refused(w, PROTO_E_BAD_VALUE, "unknown rlimit `files`");
	w = named_with("rlimits");
	cbw_array(&w, 1);
	cbw_map(&w, 3);
	cbw_key(&w, "hard");
	cbw_uint(&w, 1);
	cbw_key(&w, "soft");
	cbw_uint(&w, 2);
	cbw_key(&w, "name");
	cbw_cstr(&w, "NOFILE");
	assert_refused(w, PROTO_E_BAD_VALUE, "above the hard limit");
}

Test(engine_api, create_refuses_more_than_the_bounds)
{
	char longname[ENGINE_NAME_MAX + 2];
	struct cbw w;

	w = named_with("agent");
	cbw_array(&w, ENGINE_ARGV_MAX + 1);
	for (unsigned i = 0; i < ENGINE_ARGV_MAX + 1; i++)
		cbw_cstr(&w, "w");
	assert_refused(w, PROTO_E_RANGE, "agent: more than 64");
	w = named_with("ports");
	cbw_array(&w, ENGINE_PORTS_MAX + 1);
	for (unsigned i = 0; i < ENGINE_PORTS_MAX + 1; i++) {
		cbw_map(&w, 1);
		cbw_key(&w, "guest_port");
		cbw_uint(&w, 80);
	}
	assert_refused(w, PROTO_E_RANGE, "ports: more than 32");
	w = named_with("rlimits");
	cbw_array(&w, ENGINE_RLIMITS_MAX + 1);
	for (unsigned i = 0; i < ENGINE_RLIMITS_MAX + 1; i++) {
		cbw_map(&w, 3);
		cbw_key(&w, "name");
		cbw_cstr(&w, "nofile");
		cbw_key(&w, "soft");
		cbw_uint(&w, 1);
		cbw_key(&w, "hard");
		cbw_uint(&w, 1);
	}
	assert_refused(w, PROTO_E_RANGE, "rlimits: more than 16");
	w = named_with("rlimits");
	cbw_array(&w, 1);
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, "nofile-but-much-longer");
	assert_refused(w, PROTO_E_RANGE, "rlimits[0].name");
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, longname);
	assert_refused(w, PROTO_E_RANGE, "at most 63");
	/* an indefinite array past the bound is refused the same way */
	w = named_with("agent");
	cr_assert_lt(w.p, w.end);
	*w.p++ = 0x9f;
	for (unsigned i = 0; i < ENGINE_ARGV_MAX + 1; i++)
		cbw_cstr(&w, "w");
	*w.p++ = 0xff;
	assert_refused(w, PROTO_E_RANGE, "more than 64");
}

Test(engine_api, create_accepts_any_key_order_unknown_keys_and_indefinite_forms)
{
	struct engine_create d;
	struct cbw w = pbegin();

	cbw_map(&w, 4);
	cbw_key(&w, "future");
	cbw_map(&w, 1);
	cbw_key(&w, "deep");
	cbw_array(&w, 2);
	cbw_null(&w);
	cbw_bytes(&w, "xy", 2);
	cbw_key(&w, "boot_timeout_ms");
	cbw_uint(&w, 5);
	cbw_key(&w, "agent");
	*w.p++ = 0x9f; /* indefinite array of one indefinite text "ab" */
	*w.p++ = 0x7f;
	cbw_cstr(&w, "a");
	cbw_cstr(&w, "b");
	*w.p++ = 0xff;
	*w.p++ = 0xff;
	cbw_key(&w, "name");
	*w.p++ = 0xc0 | 24; /* a tag before the item is skipped */
	*w.p++ = 32;
	cbw_cstr(&w, "n1");
	cr_assert_eq(
		engine_decode_create(pbuf, pdone(&w), &arena, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert(str_is(d.name, "n1"));
	cr_assert_eq(d.boot_timeout_ms, 5);
	cr_assert_eq(d.nagent, 1);
	cr_assert(str_is(d.agent[0], "ab"));
}

Test(engine_api, result_list_and_info_refuse_wrong_types)
{
	const uint8_t *data;
	size_t dlen;
	char err[64];
	int calls = 0;
	struct cbw w;
	bool ok;

	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "ok");
	cbw_uint(&w, 1);
	cr_assert_eq(engine_decode_result(pbuf, pdone(&w), &ok, err, sizeof(err), &data, &dlen),
		PROTO_E_WRONG_TYPE);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "error");
	cbw_cstr(&w, "x");
	cr_assert_eq(engine_decode_result(pbuf, pdone(&w), &ok, err, sizeof(err), &data, &dlen),
		PROTO_E_MISSING_FIELD);
	w = pbegin();
	cbw_map(&w, 2);
	cbw_key(&w, "ok");
	cbw_bool(&w, false);
	cbw_key(&w, "error");
	cbw_uint(&w, 3);
	cr_assert_eq(engine_decode_result(pbuf, pdone(&w), &ok, err, sizeof(err), &data, &dlen),
		PROTO_E_WRONG_TYPE);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "ok");
	cbw_bool(&w, false);
	cr_assert_eq(engine_decode_result(pbuf, pdone(&w), &ok, err, sizeof(err), &data, &dlen), 0);
	cr_assert_not(ok);
	cr_assert(strstr(err, "without saying why"), "%s", err);
	cr_assert_eq(dlen, 1);

	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "sandboxes");
	cbw_map(&w, 0);
	cr_assert_eq(engine_decode_list(pbuf, pdone(&w), count_info, &calls), PROTO_E_WRONG_TYPE);
	w = pbegin();
	cbw_map(&w, 0);
	cr_assert_eq(
		engine_decode_list(pbuf, pdone(&w), count_info, &calls), PROTO_E_MISSING_FIELD);
	w = pbegin();
	cbw_null(&w);
	cr_assert_eq(engine_decode_list(pbuf, pdone(&w), count_info, &calls), PROTO_E_WRONG_TYPE);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "sandboxes");
	cbw_array(&w, 1);
	cbw_map(&w, 2);
	cbw_key(&w, "name");
	cbw_cstr(&w, "a");
	cbw_key(&w, "pid");
	cbw_cstr(&w, "12");
	cr_assert_eq(engine_decode_list(pbuf, pdone(&w), count_info, &calls), PROTO_E_WRONG_TYPE);
	cr_assert_eq(calls, 0);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "shards");
	cbw_array(&w, 1);
	cbw_map(&w, 1);
	cbw_key(&w, "inbox_depth");
	cbw_uint(&w, 1ull << 32);
	cr_assert_eq(engine_decode_stats(pbuf, pdone(&w), NULL, NULL), PROTO_E_RANGE);
}

Test(engine_api, name_and_publish_decoders_refuse_bad_input)
{
	struct engine_port ports[ENGINE_PORTS_MAX];
	struct proto_str name;
	struct cbw w;
	size_t n;

	w = pbegin();
	cbw_map(&w, 0);
	cr_assert_eq(engine_decode_name(pbuf, pdone(&w), &name), PROTO_E_MISSING_FIELD);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, "-x");
	cr_assert_eq(engine_decode_name(pbuf, pdone(&w), &name), PROTO_E_BAD_VALUE);
	cr_assert(str_is(name, "-x"), "the name is kept for the daemon's reply");
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_bool(&w, true);
	cr_assert_eq(engine_decode_name(pbuf, pdone(&w), &name), PROTO_E_WRONG_TYPE);
	w = pbegin();
	cbw_map(&w, 1);
	cbw_key(&w, "name");
	cbw_cstr(&w, "x");
	cr_assert_eq(engine_decode_publish(pbuf, pdone(&w), &name, ports, &n, why, sizeof(why)),
		PROTO_E_MISSING_FIELD);
	cr_assert(strstr(why, "ports"), "%s", why);
}

/* ---- name and port checks ---- */

Test(engine_api, name_check_table)
{
	static const char *const good[] = {"a", "A.b-c_d", "0", "_x", "box.1",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 63 */};
	static const struct {
		const char *name;
		const char *word;
	} bad[] = {
		{"", "empty"},
		{".hidden", "starts with '.'"},
		{"-flag", "starts with '-'"},
		{"a b", "invalid character ' '"},
		{"a/b", "'/'"},
		{"tab\tname", "0x09"},
		{"caf\xc3\xa9", "0xc3"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 64 */,
			"at most 63"},
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(engine_name_check(good[i], strlen(good[i]), why, sizeof(why)), 0,
			"%s: %s", good[i], why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		cr_assert_eq(engine_name_check(bad[i].name, strlen(bad[i].name), why, sizeof(why)),
			-EINVAL, "%s", bad[i].name);
		cr_assert(strstr(why, bad[i].word), "`%s` not in: %s", bad[i].word, why);
	}
	cr_assert_eq(engine_name_check("a\0b", 3, NULL, 0), -EINVAL, "NUL inside, no why buffer");
}

Test(engine_api, port_parse_table)
{
	static const struct {
		const char *spec;
		const char *ip;
		uint16_t host, guest;
	} good[] = {
		{"8080:80", "127.0.0.1", 8080, 80},
		{"0:22", "127.0.0.1", 0, 22},
		{"0.0.0.0:8080:80", "0.0.0.0", 8080, 80},
		{"[::1]:8080:80", "::1", 8080, 80},
		{"[fe80::1:2]:65535:65535", "fe80::1:2", 65535, 65535},
		{"10.1.2.3:00443:0443", "10.1.2.3", 443, 443},
	};
	static const struct {
		const char *spec;
		const char *word;
	} bad[] = {
		{"8080:70000", "guest port 70000 out of range 1-65535 in 8080:70000"},
		{"70000:80", "host port 70000 out of range 0-65535"},
		{"8080:0", "out of range 1-65535"},
		{"99999999999999999999:80", "out of range"},
		{"80", "expected [IP:]HOST_PORT:GUEST_PORT"},
		{"", "expected"},
		{"a:80", "`a` is not a number"},
		{"80:-1", "not a number"},
		{":80", "host port missing"},
		{"80:", "guest port missing"},
		{"localhost:80:80", "not a numeric IPv4"},
		{"1.2.3:80:80", "not a numeric IPv4"},
		{"::1:8080:80", "brackets"},
		{"[::1]8080:80", "brackets"},
		{"[::1:8080:80", "brackets"},
		{"[1.2.3.4]:80:80", "not a numeric IPv6"},
		{"[::1]:80", "expected"},
	};
	struct engine_port p;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_eq(engine_port_parse(good[i].spec, &p, why, sizeof(why)), 0, "%s: %s",
			good[i].spec, why);
		cr_assert_str_eq(p.host_ip, good[i].ip, "%s", good[i].spec);
		cr_assert_eq(p.host_port, good[i].host, "%s", good[i].spec);
		cr_assert_eq(p.guest_port, good[i].guest, "%s", good[i].spec);
		cr_assert_eq(p.limit, 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		cr_assert_eq(engine_port_parse(bad[i].spec, &p, why, sizeof(why)), -EINVAL, "%s",
			bad[i].spec);
		cr_assert(strstr(why, bad[i].word), "%s: `%s` not in: %s", bad[i].spec, bad[i].word,
			why);
	}
}

/* ---- swclient against a fake daemon ---- */

/* One fake daemon: a thread serving one end of a socketpair with <fn>. */
struct fake {
	int fd;	    /* the daemon's end */
	int client; /* the client's end */
	pthread_t thread;
	void (*fn)(struct fake *f);
	uint8_t *req; /* the last request read */
	size_t req_cap;
	char seen_t[64]; /* its type */
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	f->fn(f);
	return NULL;
}

static void fake_start(struct fake *f, void (*fn)(struct fake *f))
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->client = sv[0];
	f->fd = sv[1];
	f->fn = fn;
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->fd);
	free(f->req);
}

/* The daemon side: read one request; returns its id and keeps its type in f->seen_t. */
static uint32_t fake_read_request(struct fake *f, struct proto_env *e)
{
	struct proto_frame fr;
	long n = swc_read_frame(f->fd, &f->req, &f->req_cap, 5000);

	cr_assert_gt(n, 0);
	proto_frame_parse(f->req, (size_t)n, &fr);
	cr_assert_eq(fr.flags, PROTO_FLAG_SESSION_START);
	cr_assert_eq(proto_env_decode(fr.body, fr.body_len, NULL, e, NULL), PROTO_E_UNKNOWN_TYPE);
	snprintf(f->seen_t, sizeof(f->seen_t), "%.*s", (int)e->t.len, e->t.ptr);
	return fr.id;
}

static void send_result(struct fake *f, uint32_t id, const char *err,
	void (*data_fn)(struct cbw *w, const void *ctx), const void *ctx)
{
	uint8_t out[8192];
	long n = engine_result(out, sizeof(out), id, err, data_fn, ctx);

	cr_assert_gt(n, 0);
	cr_assert_eq(swc_write_all(f->fd, out, (size_t)n), 0);
}

static struct swc client_of(struct fake *f)
{
	struct swc c = {.fd = f->client, .next_id = 1, .timeout_ms = 5000};

	return c;
}

/* Answers a list request: first on another id (to be skipped), then on its own. */
static void serve_list_out_of_order(struct fake *f)
{
	struct sandboxes s = {.n = 2};
	struct proto_env e;
	uint32_t id = fake_read_request(f, &e);

	sample_info(&s.v[0], 1);
	sample_info(&s.v[1], 2);
	send_result(f, id + 1000, "not for you", NULL, NULL);
	send_result(f, 0, "nor this", NULL, NULL);
	send_result(f, id, NULL, write_list, &s);
}

Test(engine_api, swc_call_takes_the_answer_of_its_id)
{
	struct sandboxes got = {0};
	struct swc_result res;
	struct fake f;
	struct swc c;
	char err[256];

	fake_start(&f, serve_list_out_of_order);
	c = client_of(&f);
	cr_assert_eq(
		swc_call_simple(&c, ENGINE_V_LIST, NULL, &res, err, sizeof(err)), 0, "%s", err);
	fake_join(&f);
	cr_assert_str_eq(f.seen_t, "sandwire.engine.list");
	cr_assert(res.ok);
	cr_assert_str_eq(err, "");
	cr_assert_eq(engine_decode_list(res.data, res.data_len, collect_info, &got), 0);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.v[0].name, "box-1");
	cr_assert_str_eq(got.v[1].name, "box-2");
	cr_assert_eq(c.next_id, 2);
	swc_close(&c);
	swc_close(&c); /* idempotent */
	cr_assert_eq(c.fd, -1);
}

static void serve_refusal(struct fake *f)
{
	struct proto_env e;
	struct proto_str name;
	uint32_t id = fake_read_request(f, &e);

	cr_assert_eq(engine_decode_name(e.p, e.p_len, &name), 0);
	send_result(f, id, "no sandbox named `ghost`: see `sandwire list`", NULL, NULL);
}

Test(engine_api, swc_call_reports_the_daemons_refusal)
{
	struct swc_result res;
	struct fake f;
	struct swc c;
	char err[256];

	fake_start(&f, serve_refusal);
	c = client_of(&f);
	cr_assert_eq(swc_call_simple(&c, ENGINE_V_INSPECT, "ghost", &res, err, sizeof(err)), 0);
	fake_join(&f);
	cr_assert_str_eq(f.seen_t, "sandwire.engine.inspect");
	cr_assert_not(res.ok);
	cr_assert_str_eq(err, "no sandbox named `ghost`: see `sandwire list`");
	swc_close(&c);
}

/* A whole core.ready frame on id 0 into <out>; returns its size. */
static size_t ready_frame(uint8_t *out, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_READY};
	long n;

	m.u.ready.boot_time_ns = 1;
	m.u.ready.init_time_ns = 2;
	m.u.ready.ready_time_ns = 3;
	m.u.ready.agent_version = STR("sandwire-agent 0.1.0");
	n = proto_frame_encode(out, cap, 0, &m);
	cr_assert_gt(n, 0);
	return (size_t)n;
}

static const uint8_t after_handshake[] = "NEXT-FRAME-BYTES";

/* The 8 handshake bytes [id_start u32 BE][id_end u32 BE] at <out>. */
static void put_range(uint8_t *out, uint32_t start, uint32_t end)
{
	for (int i = 0; i < 4; i++) {
		out[i] = (uint8_t)(start >> (24 - 8 * i));
		out[4 + i] = (uint8_t)(end >> (24 - 8 * i));
	}
}

/* Answers an attach: the result, the id range, the ready frame and more, in one write. */
static void serve_attach(struct fake *f)
{
	uint8_t out[4096];
	struct proto_env e;
	struct proto_str name;
	uint32_t id = fake_read_request(f, &e);
	long n;
	size_t r;

	cr_assert_eq(engine_decode_name(e.p, e.p_len, &name), 0);
	cr_assert(str_is(name, "web"));
	n = engine_result(out, sizeof(out), id, NULL, NULL, NULL);
	cr_assert_gt(n, 0);
	put_range(out + n, 33554432, 67108862); /* slot 1 */
	r = ready_frame(out + n + 8, sizeof(out) - (size_t)n - 8);
	memcpy(out + n + 8 + r, after_handshake, sizeof(after_handshake));
	cr_assert_eq(swc_write_all(f->fd, out, (size_t)n + 8 + r + sizeof(after_handshake)), 0);
}

Test(engine_api, swc_attach_reads_the_handshake_and_nothing_more)
{
	uint8_t want[512], *ready = NULL, rest[64];
	uint32_t start, end;
	size_t ready_len;
	struct fake f;
	struct swc c;
	char err[256];
	ssize_t got;

	fake_start(&f, serve_attach);
	c = client_of(&f);
	cr_assert_eq(swc_attach(&c, "web", &start, &end, &ready, &ready_len, err, sizeof(err)), 0,
		"%s", err);
	fake_join(&f);
	cr_assert_str_eq(f.seen_t, "sandwire.engine.attach");
	cr_assert_eq(start, 33554432);
	cr_assert_eq(end, 67108862);
	cr_assert_eq(ready_len, ready_frame(want, sizeof(want)));
	cr_assert_arr_eq(ready, want, ready_len);
	free(ready);
	/* the relay stream that follows is still on the descriptor, whole */
	got = recv(c.fd, rest, sizeof(rest), MSG_DONTWAIT);
	cr_assert_eq(got, (ssize_t)sizeof(after_handshake));
	cr_assert_arr_eq(rest, after_handshake, sizeof(after_handshake));
	swc_close(&c);
}

Test(engine_api, swc_attach_refused_gives_the_daemons_text)
{
	uint8_t *ready = NULL;
	uint32_t start, end;
	size_t ready_len;
	struct fake f;
	struct swc c;
	char err[256];

	fake_start(&f, serve_refusal);
	c = client_of(&f);
	cr_assert_lt(
		swc_attach(&c, "ghost", &start, &end, &ready, &ready_len, err, sizeof(err)), 0);
	fake_join(&f);
	cr_assert(strstr(err, "no sandbox named `ghost`"), "%s", err);
	cr_assert_null(ready);
	swc_close(&c);
}

/* Sends a result, then a range of no ids and a ready frame. */
static void serve_bad_range(struct fake *f)
{
	struct proto_env e;
	uint8_t range[8];

	send_result(f, fake_read_request(f, &e), NULL, NULL, NULL);
	put_range(range, 5, 5);
	cr_assert_eq(swc_write_all(f->fd, range, 8), 0);
}

Test(engine_api, swc_attach_refuses_an_empty_id_range)
{
	uint8_t *ready = NULL;
	uint32_t start, end;
	size_t ready_len;
	struct fake f;
	struct swc c;
	char err[256];

	fake_start(&f, serve_bad_range);
	c = client_of(&f);
	cr_assert_eq(swc_attach(&c, "web", &start, &end, &ready, &ready_len, err, sizeof(err)),
		PROTO_E_BAD_VALUE);
	fake_join(&f);
	cr_assert(strstr(err, "id range"), "%s", err);
	swc_close(&c);
}

static void serve_silence(struct fake *f)
{
	struct proto_env e;

	fake_read_request(f, &e);
}

static void serve_hang_up(struct fake *f)
{
	struct proto_env e;

	fake_read_request(f, &e);
	shutdown(f->fd, SHUT_RDWR);
}

Test(engine_api, swc_call_times_out_and_sees_the_daemon_leave)
{
	struct swc_result res;
	struct fake f;
	struct swc c;
	char err[256];

	fake_start(&f, serve_silence);
	c = client_of(&f);
	c.timeout_ms = 100;
	cr_assert_eq(swc_call_simple(&c, ENGINE_V_STATS, NULL, &res, err, sizeof(err)), -ETIMEDOUT);
	cr_assert(strstr(err, "no answer"), "%s", err);
	fake_join(&f);
	swc_close(&c);

	fake_start(&f, serve_hang_up);
	c = client_of(&f);
	cr_assert_eq(swc_call_simple(&c, ENGINE_V_STATS, NULL, &res, err, sizeof(err)), -EPIPE);
	cr_assert(strstr(err, "closed the connection"), "%s", err);
	fake_join(&f);
	swc_close(&c);
}

Test(engine_api, swc_refuses_a_bad_name_before_sending)
{
	struct swc_result res;
	struct swc c = {.fd = -1, .next_id = 1};
	char err[256];

	cr_assert_eq(swc_call_simple(&c, ENGINE_V_STOP, "../etc", &res, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "starts with '.'"), "%s", err);
}

Test(engine_api, swc_read_frame_checks_the_length_first)
{
	static const uint8_t huge[] = {0x00, 0x40, 0x00, 0x01}, tiny[] = {0, 0, 0, 4};
	uint8_t *fb = NULL;
	size_t cap = 0;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(swc_write_all(sv[1], huge, sizeof(huge)), 0);
	cr_assert_eq(swc_read_frame(sv[0], &fb, &cap, 1000), PROTO_E_OVERSIZE);
	cr_assert_eq(swc_write_all(sv[1], tiny, sizeof(tiny)), 0);
	cr_assert_eq(swc_read_frame(sv[0], &fb, &cap, 1000), PROTO_E_UNDERSIZE);
	cr_assert_eq(swc_read_frame(sv[0], &fb, &cap, 50), 0, "timeout");
	cr_assert_eq(swc_write_all(sv[1], tiny, 2), 0);
	close(sv[1]);
	cr_assert_eq(swc_read_frame(sv[0], &fb, &cap, 1000), -EPIPE, "EOF inside the length");
	cr_assert_null(fb, "nothing allocated for refused frames");
	close(sv[0]);
}

Test(engine_api, swc_connect_explains_a_missing_daemon)
{
	char dir[] = "/tmp/swc-test-XXXXXX", path[128], err[512];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct swc c;
	int l;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sandwired.sock", dir);
	cr_assert_eq(swc_connect(&c, path, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "sandwire serve"), "%s", err);
	cr_assert(strstr(err, path), "%s", err);
	cr_assert_eq(c.fd, -1);
	swc_close(&c);

	/* a listening socket: connected */
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(l, 0);
	strcpy(sa.sun_path, path);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(swc_connect(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(c.fd, 0);
	cr_assert_eq(c.timeout_ms, SWC_TIMEOUT_MS_DEF);
	cr_assert_eq(c.next_id, 1);
	swc_close(&c);

	/* a socket nobody listens on any more: refused, same advice */
	close(l);
	cr_assert_eq(swc_connect(&c, path, err, sizeof(err)), -ECONNREFUSED);
	cr_assert(strstr(err, "sandwire serve"), "%s", err);
	unlink(path);
	rmdir(dir);
}

Test(engine_api, swc_socket_path_precedence)
{
	char p[256];

	cr_assert_str_eq(swc_socket_path("/x.sock", p, sizeof(p)), "/x.sock");
	setenv("SANDWIRE_SOCKET", "/env.sock", 1);
	cr_assert_str_eq(swc_socket_path("/x.sock", p, sizeof(p)), "/x.sock");
	cr_assert_str_eq(swc_socket_path(NULL, p, sizeof(p)), "/env.sock");
	unsetenv("SANDWIRE_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	cr_assert_str_eq(
		swc_socket_path(NULL, p, sizeof(p)), "/run/user/1000/sandwire/sandwired.sock");
	unsetenv("XDG_RUNTIME_DIR");
	cr_assert_str_eq(swc_socket_path(NULL, p, sizeof(p)), "/run/sandwire/sandwired.sock");
}
