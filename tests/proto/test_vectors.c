/*
 * tests/proto/test_vectors.c - every gen-7 vector of the spec, both ways,
 * and round trips of every message type with optional fields set and unset.
 *
 * For each vector: the message built from a C literal encodes to exactly
 * the vector's bytes; the vector's frame parses to the right id, flags and
 * type; it decodes to the expected values; and the decoded message encodes
 * back to the same bytes (so every decoded field is checked).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/msg.h"
#include "tests/proto/proto_test.h"

static struct vec_set *vs;
static uint8_t arena_mem[64 * 1024];
static struct proto_arena arena;
static struct proto_msg dec;

static void setup(void)
{
	vs = vec_load();
	proto_arena_init(&arena, arena_mem, sizeof(arena_mem));
}

static void teardown(void)
{
	free(vs);
}

TestSuite(vectors, .init = setup, .fini = teardown);

/*
 * Check vector <name> against message <m> both ways; leaves the decoded
 * message in <dec> for value checks.
 */
static void check_vector(const char *name, const struct proto_msg *m)
{
	const struct vec *v = vec_find(vs, name);
	static uint8_t buf[4096];
	struct proto_errinfo ei = {0};
	struct proto_frame f;
	struct proto_env e;
	long n;
	int rc;

	n = proto_frame_encode(buf, sizeof(buf), v->id, m);
	cr_assert_eq(n, (long)v->frame_len, "%s: encoded %ld bytes, vector has %zu", name, n,
		v->frame_len);
	cr_assert_arr_eq(buf, v->frame, v->frame_len, "%s: encoded bytes differ", name);

	f = tparse(v->frame, v->frame_len);
	cr_assert_eq(f.id, v->id);
	cr_assert_eq(f.flags, v->flags);
	cr_assert_eq(proto_env_decode(f.body, f.body_len, NULL, &e, NULL), 0);
	cr_assert_eq(e.p_len, v->p_len, "%s: p length", name);
	cr_assert_arr_eq(e.p, v->p, v->p_len, "%s: p bytes", name);

	memset(&dec, 0xa5, sizeof(dec)); /* decode must set every field it reports */
	rc = proto_frame_decode(&f, &dec, &arena, &ei);
	cr_assert_eq(rc, 0, "%s: decode: %s (field %s, offset %zu)", name, proto_strerror(rc),
		ei.field ? ei.field : "-", ei.offset);
	cr_assert_eq(dec.type, m->type);
	cr_assert_str_eq(proto_type_name(dec.type), v->type);
	cr_assert_eq(dec.v, PROTO_VERSION);
	cr_assert(dec.tname.len == strlen(v->type) &&
		  memcmp(dec.tname.ptr, v->type, dec.tname.len) == 0);

	n = proto_frame_encode(buf, sizeof(buf), v->id, &dec);
	cr_assert_eq(n, (long)v->frame_len, "%s: re-encoded size", name);
	cr_assert_arr_eq(buf, v->frame, v->frame_len, "%s: re-encoded bytes differ", name);
}

/* Messages with no payload struct. */
static void check_plain(const char *name, enum proto_type t)
{
	struct proto_msg m = {.type = t};

	check_vector(name, &m);
}

Test(vectors, v01_bootstrap_default)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP};

	check_vector("V01", &m);
	cr_assert_eq(dec.u.bootstrap.security_profile, PROTO_BOOT_SECURITY_DEFAULT);
	cr_assert_eq(dec.u.bootstrap.block_root.kind, PROTO_BOOT_ROOT_NONE);
	cr_assert_not(dec.u.bootstrap.hostname.set);
}

Test(vectors, v02_init_resolved)
{
	struct proto_msg m = {.type = PROTO_T_INIT_RESOLVED,
		.u.init_resolved.default_user = {.uid = 1000, .gid = 1000}};

	check_vector("V02", &m);
	cr_assert_eq(dec.u.init_resolved.default_user.uid, 1000);
	cr_assert_eq(dec.u.init_resolved.default_user.gid, 1000);
}

Test(vectors, v03_init_ack)
{
	check_plain("V03", PROTO_T_INIT_ACK);
}

Test(vectors, v04_ready_with_agent_version)
{
	struct proto_msg m = {.type = PROTO_T_READY,
		.u.ready = {.boot_time_ns = 812345678,
			.init_time_ns = 123456789,
			.ready_time_ns = 1012345678,
			.agent_version = S("0.6.14")}};

	check_vector("V04", &m);
	cr_assert_eq(dec.u.ready.boot_time_ns, 812345678);
	cr_assert_eq(dec.u.ready.init_time_ns, 123456789);
	cr_assert_eq(dec.u.ready.ready_time_ns, 1012345678);
	cr_assert_str_is(dec.u.ready.agent_version, "0.6.14");
}

Test(vectors, v05_ready_without_agent_version)
{
	struct proto_msg m = {.type = PROTO_T_READY,
		.u.ready = {
			.boot_time_ns = 1500000, .init_time_ns = 250000, .ready_time_ns = 2000000}};

	check_vector("V05", &m);
	cr_assert_eq(dec.u.ready.ready_time_ns, 2000000);
	cr_assert_eq(dec.u.ready.agent_version.len, 0);
}

Test(vectors, v06_clock_sync_u64)
{
	struct proto_msg m = {
		.type = PROTO_T_CLOCK_SYNC, .u.clock_sync.unix_time_nanos = 1787500000000000000ull};

	check_vector("V06", &m);
	cr_assert_eq(dec.u.clock_sync.unix_time_nanos, 1787500000000000000ull);
}

Test(vectors, v07_to_v09_ping_pong_touch)
{
	check_plain("V07", PROTO_T_PING);
	check_plain("V08", PROTO_T_PONG);
	check_plain("V09", PROTO_T_TOUCH);
}

Test(vectors, v10_touched)
{
	struct proto_msg m = {.type = PROTO_T_TOUCHED, .u.touched.activity_seq = 42};

	check_vector("V10", &m);
	cr_assert_eq(dec.u.touched.activity_seq, 42);
}

Test(vectors, v11_exec_request_pty)
{
	static const struct proto_str args[] = {S("-l"), S("-c"), S("top")};
	static const struct proto_str env[] = {S("TERM=xterm-256color"), S("LANG=C.UTF-8")};
	static const struct proto_rlimit rl[] = {
		{S("nofile"), 1024, 4096},
		{S("nproc"), 512, 512},
	};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST,
		.u.exec_request = {.cmd = S("/bin/bash"),
			.args = args,
			.nargs = 3,
			.env = env,
			.nenv = 2,
			.cwd = {true, S("/root")},
			.tty = true,
			.rows = 40,
			.cols = 120,
			.rlimits = rl,
			.nrlimits = 2}};
	const struct proto_exec_request *q = &dec.u.exec_request;

	check_vector("V11", &m);
	cr_assert_str_is(q->cmd, "/bin/bash");
	cr_assert_eq(q->nargs, 3);
	cr_assert_str_is(q->args[2], "top");
	cr_assert_eq(q->nenv, 2);
	cr_assert_str_is(q->env[0], "TERM=xterm-256color");
	cr_assert(q->cwd.set);
	cr_assert_str_is(q->cwd.v, "/root");
	cr_assert_not(q->user.set);
	cr_assert(q->tty);
	cr_assert_eq(q->rows, 40);
	cr_assert_eq(q->cols, 120);
	cr_assert_eq(q->nrlimits, 2);
	cr_assert_str_is(q->rlimits[1].resource, "nproc");
	cr_assert_eq(q->rlimits[0].hard, 4096);
	cr_assert_eq(proto_rlimit_resource(q->rlimits[0].resource), 7); /* RLIMIT_NOFILE */
}

Test(vectors, v12_exec_request_pipe_rlim_infinity)
{
	static const struct proto_str args[] = {S("-c"), S("cat; echo done >&2")};
	static const struct proto_rlimit rl[] = {{S("as"), UINT64_MAX, UINT64_MAX}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST,
		.u.exec_request = {.cmd = S("sh"),
			.args = args,
			.nargs = 2,
			.user = {true, S("1000:1000")},
			.rows = 24,
			.cols = 80,
			.rlimits = rl,
			.nrlimits = 1}};
	const struct proto_exec_request *q = &dec.u.exec_request;

	check_vector("V12", &m);
	cr_assert_eq(q->nenv, 0);
	cr_assert_not(q->cwd.set);
	cr_assert_str_is(q->user.v, "1000:1000");
	cr_assert_not(q->tty);
	cr_assert_eq(q->rlimits[0].soft, UINT64_MAX);
	cr_assert_eq(proto_rlimit_resource(q->rlimits[0].resource), 9); /* RLIMIT_AS */
}

Test(vectors, v13_exec_started)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_STARTED, .u.exec_started.pid = 42};

	check_vector("V13", &m);
	cr_assert_eq(dec.u.exec_started.pid, 42);
}

/* Data vectors: payload bytes into the frame. */
static void check_data(const char *name, enum proto_type t, const char *data, size_t len)
{
	struct proto_msg m = {.type = t, .u.data = {(const uint8_t *)data, len}};
	const struct vec *v = vec_find(vs, name);

	check_vector(name, &m);
	cr_assert_eq(dec.u.data.len, len);
	cr_assert_arr_eq(dec.u.data.ptr, data, len);
	/* zero copy: the data lies inside the vector's frame */
	cr_assert(dec.u.data.ptr >= v->frame && dec.u.data.ptr + len <= v->frame + v->frame_len);
}

Test(vectors, v14_to_v17_exec_data)
{
	check_data("V14", PROTO_T_EXEC_STDIN, "hello\n", 6);
	check_data("V15", PROTO_T_EXEC_STDIN, "", 0);
	check_data("V16", PROTO_T_EXEC_STDOUT, "hello\r\n", 7);
	check_data("V17", PROTO_T_EXEC_STDERR, "done\n", 5);
}

Test(vectors, v18_exec_stdin_error)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_STDIN_ERROR,
		.u.exec_stdin_error = {.err_no = {true, 32},
			.errno_name = {true, S("EPIPE")},
			.message = S("io error: Broken pipe (os error 32)")}};

	check_vector("V18", &m);
	cr_assert(dec.u.exec_stdin_error.err_no.set);
	cr_assert_eq(dec.u.exec_stdin_error.err_no.v, 32);
	cr_assert_str_is(dec.u.exec_stdin_error.errno_name.v, "EPIPE");
}

Test(vectors, v19_exec_resize)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_RESIZE, .u.exec_resize = {50, 132}};

	check_vector("V19", &m);
	cr_assert_eq(dec.u.exec_resize.rows, 50);
	cr_assert_eq(dec.u.exec_resize.cols, 132);
}

Test(vectors, v20_exec_signal)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_SIGNAL, .u.exec_signal.signal = 15};

	check_vector("V20", &m);
	cr_assert_eq(dec.u.exec_signal.signal, 15);
}

Test(vectors, v21_v22_exec_exited)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_EXITED, .u.exec_exited.code = 0};

	check_vector("V21", &m);
	cr_assert_eq(dec.u.exec_exited.code, 0);
	cr_assert_not(dec.u.exec_exited.signal.set);
	m.u.exec_exited.code = -1;
	check_vector("V22", &m);
	cr_assert_eq(dec.u.exec_exited.code, -1);
}

Test(vectors, v23_exec_failed)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_FAILED,
		.u.exec_failed = {.kind = PROTO_EXEC_FAIL_NOT_FOUND,
			.err_no = {true, 2},
			.errno_name = {true, S("ENOENT")},
			.message = S("spawn \"/nope\": No such file or directory (os error 2)"),
			.stage = {true, S("Command::spawn")}}};

	check_vector("V23", &m);
	cr_assert_eq(dec.u.exec_failed.kind, PROTO_EXEC_FAIL_NOT_FOUND);
	cr_assert_eq(dec.u.exec_failed.err_no.v, 2);
	cr_assert_str_is(dec.u.exec_failed.stage.v, "Command::spawn");
}

Test(vectors, v24_fs_request_stat)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {.kind = PROTO_FS_OP_STAT,
			.path = S("/etc/hostname"),
			.follow_symlink = true}};

	check_vector("V24", &m);
	cr_assert_eq(dec.u.fs_request.kind, PROTO_FS_OP_STAT);
	cr_assert_str_is(dec.u.fs_request.path, "/etc/hostname");
	cr_assert(dec.u.fs_request.follow_symlink);
}

Test(vectors, v25_fs_response_stat)
{
	struct proto_msg m = {.type = PROTO_T_FS_RESPONSE,
		.u.fs_response = {.ok = true,
			.data = {.kind = PROTO_FS_DATA_STAT,
				.stat = {.path = S("/etc/hostname"),
					.kind = PROTO_FS_KIND_FILE,
					.size = 13,
					.mode = 33188,
					.modified = {true, 1787500000},
					.atime = {true, 1787500000},
					.mtime = {true, 1787500000}}}}};

	check_vector("V25", &m);
	cr_assert(dec.u.fs_response.ok);
	cr_assert_eq(dec.u.fs_response.data.kind, PROTO_FS_DATA_STAT);
	cr_assert_eq(dec.u.fs_response.data.stat.mode, 33188);
}

Test(vectors, v26_fs_request_open_file)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {.kind = PROTO_FS_OP_OPEN_FILE,
			.path = S("/tmp/out.txt"),
			.options = {.write = true,
				.create = true,
				.truncate = true,
				.mode = {true, 420}}}};

	check_vector("V26", &m);
	cr_assert(dec.u.fs_request.options.truncate);
	cr_assert_eq(dec.u.fs_request.options.mode.v, 420);
}

Test(vectors, v27_fs_response_handle)
{
	struct proto_msg m = {.type = PROTO_T_FS_RESPONSE,
		.u.fs_response = {.ok = true, .data = {.kind = PROTO_FS_DATA_HANDLE, .handle = 1}}};

	check_vector("V27", &m);
	cr_assert_eq(dec.u.fs_response.data.handle, 1);
}

Test(vectors, v28_fs_request_write)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {
			.kind = PROTO_FS_OP_WRITE, .handle = 1, .offset = 0, .len = {true, 5}}};

	check_vector("V28", &m);
	cr_assert_eq(dec.u.fs_request.len.v, 5);
}

Test(vectors, v29_v30_fs_data)
{
	check_data("V29", PROTO_T_FS_DATA, "hello", 5);
	check_data("V30", PROTO_T_FS_DATA, "", 0);
}

Test(vectors, v31_fs_response_ok)
{
	struct proto_msg m = {.type = PROTO_T_FS_RESPONSE, .u.fs_response = {.ok = true}};

	check_vector("V31", &m);
	cr_assert_eq(dec.u.fs_response.data.kind, PROTO_FS_DATA_NONE);
	cr_assert_not(dec.u.fs_response.error.set);
}

Test(vectors, v32_fs_request_read_to_eof)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {.kind = PROTO_FS_OP_READ, .handle = 1}};

	check_vector("V32", &m);
	cr_assert_not(dec.u.fs_request.len.set);
}

Test(vectors, v33_fs_request_mkdir)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {.kind = PROTO_FS_OP_MKDIR, .path = S("/data/a/b")}};

	check_vector("V33", &m);
	cr_assert_not(dec.u.fs_request.mode.set);
}

Test(vectors, v34_fs_response_error)
{
	struct proto_msg m = {.type = PROTO_T_FS_RESPONSE,
		.u.fs_response = {.ok = false,
			.error = {true, S("stat: No such file or directory (os error 2)")}}};

	check_vector("V34", &m);
	cr_assert_not(dec.u.fs_response.ok);
	cr_assert(dec.u.fs_response.error.set);
}

Test(vectors, v35_tcp_connect)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT,
		.u.tcp_connect = {.host = S("127.0.0.1"), .port = 8080}};

	check_vector("V35", &m);
	cr_assert_str_is(dec.u.tcp_connect.host, "127.0.0.1");
	cr_assert_eq(dec.u.tcp_connect.port, 8080);
}

Test(vectors, v36_to_v40_tcp)
{
	check_plain("V36", PROTO_T_TCP_CONNECTED);
	check_data("V37", PROTO_T_TCP_DATA, "GET / HTTP/1.0\r\n\r\n", 18);
	check_plain("V38", PROTO_T_TCP_EOF);
	check_plain("V39", PROTO_T_TCP_CLOSE);
	check_plain("V40", PROTO_T_TCP_CLOSED);
}

Test(vectors, v41_tcp_failed)
{
	struct proto_msg m = {.type = PROTO_T_TCP_FAILED,
		.u.tcp_failed.error = S("connect 127.0.0.1:1: Connection refused (os error 111)")};

	check_vector("V41", &m);
	cr_assert_str_is(
		dec.u.tcp_failed.error, "connect 127.0.0.1:1: Connection refused (os error 111)");
}

Test(vectors, v42_core_error)
{
	struct proto_msg m = {.type = PROTO_T_ERROR,
		.u.error = {.kind = PROTO_ERROR_INVALID_PAYLOAD,
			.message = S("decode payload for core.exec.resize: cbor decode error: "
				     "Semantic(None, \"missing field `cols`\")"),
			.offending_type = {true, S("core.exec.resize")}}};

	check_vector("V42", &m);
	cr_assert_eq(dec.u.error.kind, PROTO_ERROR_INVALID_PAYLOAD);
	cr_assert_str_is(dec.u.error.offending_type.v, "core.exec.resize");
	cr_assert_str_eq(proto_error_kind_name(dec.u.error.kind), "invalid_payload");
}

Test(vectors, v43_relay_client_disconnected)
{
	struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED,
		.u.relay_client_disconnected = {.id_start = 1, .id_end_exclusive = 33554431}};

	check_vector("V43", &m);
	cr_assert_eq(dec.u.relay_client_disconnected.id_end_exclusive, 33554431);
}

Test(vectors, v44_bootstrap_rich)
{
	static struct proto_boot_tmpfs_mount tmpfs[] = {
		{.path = S("/tmp"), .size_mib = {true, 64}, .mode = {true, 1023}},
	};
	static struct proto_rlimit rl[] = {{S("nofile"), 65535, 65535}};
	static struct proto_boot_env env[] = {{S("APP"), S("1")}};
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP,
		.u.bootstrap = {
			.block_root = {.kind = PROTO_BOOT_ROOT_OCI_EROFS,
				.lower = S("/dev/vda"),
				.upper = {.kind = PROTO_BOOT_UPPER_TMPFS, .size_mib = {true, 512}}},
			.tmpfs_mounts = tmpfs,
			.n_tmpfs_mounts = 1,
			.hostname = {true, S("worker-01")},
			.host_alias = {true, S("host.microsandbox.internal")},
			.network = {.set = true,
				.interface = S("eth0"),
				.mac = {2, 0, 0, 0, 0, 2},
				.mtu = 1500,
				.ipv4 = {.set = true,
					.address = {172, 16, 0, 2},
					.prefix_len = 30,
					.gateway = {172, 16, 0, 1},
					.has_dns = true,
					.dns = {172, 16, 0, 1}}},
			.rlimits = rl,
			.n_rlimits = 1,
			.user = {true, S("1000:1000")},
			.default_cwd = {true, S("/workspace")},
			.default_env = env,
			.n_default_env = 1,
			.security_profile = PROTO_BOOT_SECURITY_RESTRICTED,
		}};

	check_vector("V44", &m);
	cr_assert_eq(dec.u.bootstrap.network.mtu, 1500);
	cr_assert_eq(dec.u.bootstrap.security_profile, PROTO_BOOT_SECURITY_RESTRICTED);
}

Test(vectors, v45_shutdown)
{
	check_plain("V45", PROTO_T_SHUTDOWN);
}

Test(vectors, all_45_vectors_are_in_the_file)
{
	size_t i, nv = 0;

	for (i = 0; i < vs->n; i++)
		nv += vs->v[i].name[0] == 'V';
	cr_assert_eq(nv, 45);
}

/* H1/H2: 8-byte handshake = id_start BE32 + id_end_exclusive BE32, then the ready frame. */
Test(vectors, h1_h2_relay_handshake)
{
	const struct vec *h1 = vec_find(vs, "H1"), *h2 = vec_find(vs, "H2");
	const struct vec *v04 = vec_find(vs, "V04");
	struct proto_frame f;

	cr_assert_eq(h1->frame_len, 8 + v04->frame_len);
	cr_assert_eq(proto_be32(h1->frame), 1);
	cr_assert_eq(proto_be32(h1->frame + 4), 33554431);
	cr_assert_arr_eq(h1->frame + 8, v04->frame, v04->frame_len);
	f = tparse(h1->frame + 8, h1->frame_len - 8);
	cr_assert_eq(proto_frame_decode(&f, &dec, &arena, NULL), 0);
	cr_assert_eq(dec.type, PROTO_T_READY);

	cr_assert_eq(h2->frame_len, 8);
	cr_assert_eq(proto_be32(h2->frame), 33554432);
	cr_assert_eq(proto_be32(h2->frame + 4), 67108862);
}

Test(vectors, every_type_name_looks_up_to_itself)
{
	enum proto_type p;
	char name[64];
	int t;

	for (t = 0; t < PROTO_T__COUNT; t++) {
		const struct proto_type_info *ti = &proto_type_table[t];

		cr_assert_eq(strlen(ti->name), ti->name_len);
		cr_assert_eq(proto_type_lookup(ti->name, ti->name_len), t, "%s", ti->name);
		/* a prefix matches only a type of exactly that name (tcp.close of tcp.closed) */
		p = proto_type_lookup(ti->name, ti->name_len - 1);
		cr_assert(
			p == PROTO_T_UNKNOWN ||
			(proto_type_table[p].name_len == ti->name_len - 1 &&
				memcmp(proto_type_table[p].name, ti->name, ti->name_len - 1) == 0));
		/* a one-letter change never matches */
		memcpy(name, ti->name, ti->name_len);
		name[ti->name_len / 2] ^= 0x20;
		cr_assert_eq(proto_type_lookup(name, ti->name_len), PROTO_T_UNKNOWN);
	}
	cr_assert_eq(proto_type_lookup("core.pinG", 9), PROTO_T_UNKNOWN);
	cr_assert_eq(proto_type_lookup("kore.ping", 9), PROTO_T_UNKNOWN);
	cr_assert_eq(proto_type_lookup("", 0), PROTO_T_UNKNOWN);
	cr_assert_eq(proto_type_flags(PROTO_T_SHUTDOWN), PROTO_FLAG_SHUTDOWN);
	cr_assert_eq(proto_type_flags(PROTO_T_FS_REQUEST), PROTO_FLAG_SESSION_START);
	cr_assert_eq(proto_type_flags(PROTO_T_TCP_FAILED), PROTO_FLAG_TERMINAL);
	cr_assert_str_eq(proto_type_name(PROTO_T_UNKNOWN), "?");
}

/* Spec section 3 table and 2.4 (the gen-7 types): generation, direction, the id-0 control types. */
Test(vectors, type_table_matches_the_spec)
{
	static const enum proto_type control[] = {PROTO_T_BOOTSTRAP, PROTO_T_INIT_RESOLVED,
		PROTO_T_INIT_ACK, PROTO_T_READY, PROTO_T_CLOCK_SYNC, PROTO_T_SHUTDOWN,
		PROTO_T_RELAY_CLIENT_DISCONNECTED};
	size_t i, n7 = 0, ncontrol = 0, ndata = 0, nflagged = 0;
	int t;

	for (t = 0; t < PROTO_T__COUNT; t++) {
		if (proto_type_table[t].gen > PROTO_VERSION)
			continue; /* generations 8 and 9: test_vectors_gen9.c */
		n7++;
		ncontrol += !!(proto_type_table[t].attrs & PROTO_TA_CONTROL);
		ndata += proto_type_is_data(t);
		nflagged += proto_type_table[t].flags != 0;
	}
	cr_assert_eq(n7, 32);
	for (i = 0; i < sizeof(control) / sizeof(control[0]); i++)
		cr_assert(proto_type_table[control[i]].attrs & PROTO_TA_CONTROL);
	cr_assert_eq(ncontrol, 7);
	cr_assert_eq(ndata, 5);
	cr_assert_eq(nflagged, 8 + 3 + 1); /* TERMINAL, SESSION_START, SHUTDOWN */
	cr_assert_eq(proto_type_table[PROTO_T_BOOTSTRAP].gen, 7);
	cr_assert_eq(proto_type_table[PROTO_T_PING].gen, 6);
	cr_assert_eq(proto_type_table[PROTO_T_ERROR].gen, 5);
	cr_assert_eq(proto_type_table[PROTO_T_TCP_DATA].gen, 4);
	cr_assert_eq(proto_type_table[PROTO_T_FS_DATA].gen, 2);
	cr_assert_eq(proto_type_table[PROTO_T_FS_DATA].dir, PROTO_DIR_BOTH);
	cr_assert_eq(proto_type_table[PROTO_T_EXEC_STDIN].dir, PROTO_DIR_H2G);
	cr_assert_eq(proto_type_table[PROTO_T_EXEC_STDOUT].dir, PROTO_DIR_G2H);
}

/* --- round trips ---------------------------------------------------------- */

/* Encode <m>, decode it into <out>, and check that <out> encodes identically. */
static void round_trip(const struct proto_msg *m, struct proto_msg *out)
{
	static uint8_t a[8192], b[8192];
	struct proto_errinfo ei = {0};
	struct proto_frame f;
	long n, n2;
	int rc;

	n = proto_frame_encode(a, sizeof(a), 77, m);
	cr_assert_gt(n, 0, "%s: encode: %s", proto_type_name(m->type), proto_strerror((int)n));
	f = tparse(a, (size_t)n);
	cr_assert_eq(f.flags, proto_type_flags(m->type));
	rc = proto_frame_decode(&f, out, &arena, &ei);
	cr_assert_eq(rc, 0, "%s: decode: %s", proto_type_name(m->type), proto_strerror(rc));
	cr_assert_eq(out->type, m->type);
	n2 = proto_frame_encode(b, sizeof(b), 77, out);
	cr_assert_eq(n2, n);
	cr_assert_arr_eq(a, b, (size_t)n);
}

Test(vectors, round_trip_of_every_type_with_options_set)
{
	static const struct proto_str strs[] = {S("a"), S("bc")};
	static const struct proto_rlimit rl[] = {{S("core"), 0, 1}};
	struct proto_msg m[PROTO_T__COUNT], out;
	int t;

	memset(m, 0, sizeof(m));
	for (t = 0; t < PROTO_T__COUNT; t++)
		m[t].type = t;
	m[PROTO_T_INIT_RESOLVED].u.init_resolved.default_user = (struct proto_default_user){1, 2};
	m[PROTO_T_READY].u.ready = (struct proto_ready){.boot_time_ns = 1,
		.init_time_ns = 2,
		.ready_time_ns = UINT64_MAX,
		.agent_version = S("sandwire/0.1")};
	m[PROTO_T_RELAY_CLIENT_DISCONNECTED].u.relay_client_disconnected =
		(struct proto_relay_client_disconnected){
			.id_start = 5, .id_end_exclusive = UINT32_MAX};
	m[PROTO_T_CLOCK_SYNC].u.clock_sync.unix_time_nanos = 1;
	m[PROTO_T_TOUCHED].u.touched.activity_seq = 1ull << 40;
	m[PROTO_T_ERROR].u.error = (struct proto_core_error){.kind = PROTO_ERROR_INVALID_SESSION,
		.message = S("live"),
		.offending_type = {true, S("core.tcp.connect")}};
	m[PROTO_T_EXEC_REQUEST].u.exec_request = (struct proto_exec_request){S("x"), strs, 2, strs,
		1, {true, S("/")}, {true, S("0:0")}, true, 1, UINT16_MAX, rl, 1, {true, 1u << 20}};
	m[PROTO_T_EXEC_STARTED].u.exec_started.pid = UINT32_MAX;
	m[PROTO_T_EXEC_STDIN_ERROR].u.exec_stdin_error =
		(struct proto_exec_stdin_error){{true, INT32_MIN}, {true, S("EIO")}, S("m")};
	m[PROTO_T_EXEC_EXITED].u.exec_exited = (struct proto_exec_exited){-1, {true, 9}};
	m[PROTO_T_EXEC_FAILED].u.exec_failed = (struct proto_exec_failed){
		PROTO_EXEC_FAIL_OTHER, {true, 22}, {true, S("EINVAL")}, S("m"), {true, S("fork")}};
	m[PROTO_T_EXEC_RESIZE].u.exec_resize = (struct proto_exec_resize){0, UINT16_MAX};
	m[PROTO_T_EXEC_SIGNAL].u.exec_signal.signal = INT32_MAX;
	m[PROTO_T_FS_REQUEST].u.fs_request = (struct proto_fs_request){
		.kind = PROTO_FS_OP_READ_DIR, .handle = 3, .limit = {true, 10}};
	m[PROTO_T_FS_RESPONSE].u.fs_response = (struct proto_fs_response){
		.ok = true, .data = {.kind = PROTO_FS_DATA_PATH, .path = S("/x")}};
	m[PROTO_T_TCP_CONNECT].u.tcp_connect =
		(struct proto_tcp_connect){.host = S("::1"), .port = 1};
	m[PROTO_T_TCP_FAILED].u.tcp_failed.error = S("e");
	m[PROTO_T_EXEC_STDIN].u.data = (struct proto_data){(const uint8_t *)"x", 1};
	m[PROTO_T_EXEC_STDOUT].u.data = (struct proto_data){(const uint8_t *)"yy", 2};
	m[PROTO_T_BOOTSTRAP].u.bootstrap.hostname = (struct proto_opt_str){true, S("h")};

	for (t = 0; t < PROTO_T__COUNT; t++) {
		if (proto_type_table[t].gen <= PROTO_VERSION) /* gen 8/9: test_vectors_gen9.c */
			round_trip(&m[t], &out);
	}

	round_trip(&m[PROTO_T_EXEC_EXITED], &out);
	cr_assert(out.u.exec_exited.signal.set);
	cr_assert_eq(out.u.exec_exited.signal.v, 9);
	round_trip(&m[PROTO_T_ERROR], &out);
	cr_assert_str_is(out.u.error.offending_type.v, "core.tcp.connect");
	round_trip(&m[PROTO_T_EXEC_REQUEST], &out);
	cr_assert_str_is(out.u.exec_request.user.v, "0:0");
	cr_assert_eq(out.u.exec_request.cols, UINT16_MAX);
	round_trip(&m[PROTO_T_EXEC_STDIN_ERROR], &out);
	cr_assert_eq(out.u.exec_stdin_error.err_no.v, INT32_MIN);
	round_trip(&m[PROTO_T_EXEC_FAILED], &out);
	cr_assert_str_is(out.u.exec_failed.stage.v, "fork");
	round_trip(&m[PROTO_T_READY], &out);
	cr_assert_str_is(out.u.ready.agent_version, "sandwire/0.1");
}

Test(vectors, round_trip_with_options_unset)
{
	struct proto_msg m = {0}, out;
	uint8_t buf[256];
	long n;

	m.type = PROTO_T_EXEC_EXITED; /* signal omitted: same bytes as V21 */
	round_trip(&m, &out);
	cr_assert_not(out.u.exec_exited.signal.set);
	n = proto_frame_encode(buf, sizeof(buf), 1, &m);
	cr_assert_arr_eq(buf, vec_find(vs, "V21")->frame, (size_t)n);

	m.type = PROTO_T_ERROR; /* offending_type omitted: two keys */
	m.u.error = (struct proto_core_error){
		.kind = PROTO_ERROR_MALFORMED_MESSAGE, .message = S("bad")};
	round_trip(&m, &out);
	cr_assert_not(out.u.error.offending_type.set);

	m.type = PROTO_T_EXEC_STDIN_ERROR; /* errno and errno_name written as null */
	m.u.exec_stdin_error = (struct proto_exec_stdin_error){.message = S("x")};
	round_trip(&m, &out);
	cr_assert_not(out.u.exec_stdin_error.err_no.set);
	cr_assert_not(out.u.exec_stdin_error.errno_name.set);

	m.type = PROTO_T_EXEC_FAILED;
	m.u.exec_failed =
		(struct proto_exec_failed){.kind = PROTO_EXEC_FAIL_BAD_CWD, .message = S("x")};
	round_trip(&m, &out);
	cr_assert_not(out.u.exec_failed.err_no.set);
	cr_assert_not(out.u.exec_failed.errno_name.set);
	cr_assert_not(out.u.exec_failed.stage.set);
	cr_assert_eq(out.u.exec_failed.kind, PROTO_EXEC_FAIL_BAD_CWD);

	m.type = PROTO_T_EXEC_REQUEST; /* nine keys even when empty */
	m.u.exec_request = (struct proto_exec_request){.cmd = S("true"), .rows = 24, .cols = 80};
	round_trip(&m, &out);
	cr_assert_eq(out.u.exec_request.nargs, 0);
	cr_assert_null(out.u.exec_request.args);
	cr_assert_not(out.u.exec_request.cwd.set);
	cr_assert_not(out.u.exec_request.user.set);

	m.type = PROTO_T_READY;
	m.u.ready = (struct proto_ready){.boot_time_ns = 1, .init_time_ns = 2, .ready_time_ns = 3};
	round_trip(&m, &out);
	cr_assert_eq(out.u.ready.agent_version.len, 0);

	m.type = PROTO_T_FS_RESPONSE;
	m.u.fs_response = (struct proto_fs_response){.ok = false};
	round_trip(&m, &out);
	cr_assert_not(out.u.fs_response.error.set);
}

/* The Rust host always writes every exec.request key; a minimal one gets the defaults. */
Test(vectors, exec_request_defaults_apply_to_missing_keys)
{
	uint8_t p[64], body[128], fr[160];
	struct proto_msg out;
	struct proto_frame f;
	struct cbw w;
	size_t n;

	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 1);
	cbw_key(&w, "cmd");
	cbw_cstr(&w, "ls");
	n = tbody(body, sizeof(body), 7, "core.exec.request", p, (size_t)cbw_finish(&w));
	f = tparse(fr, tframe(fr, sizeof(fr), 3, PROTO_FLAG_SESSION_START, body, n));
	cr_assert_eq(proto_frame_decode(&f, &out, NULL, NULL), 0);
	cr_assert_str_is(out.u.exec_request.cmd, "ls");
	cr_assert_eq(out.u.exec_request.nargs, 0);
	cr_assert_eq(out.u.exec_request.nenv, 0);
	cr_assert_eq(out.u.exec_request.nrlimits, 0);
	cr_assert_not(out.u.exec_request.tty);
	cr_assert_eq(out.u.exec_request.rows, 24);
	cr_assert_eq(out.u.exec_request.cols, 80);
	cr_assert_not(out.u.exec_request.cwd.set);
}

Test(vectors, version_field_is_written_as_given)
{
	struct proto_msg m = {.type = PROTO_T_PING, .v = 9}, out;
	struct proto_frame f;
	uint8_t buf[64];
	long n;

	n = proto_frame_encode(buf, sizeof(buf), 1, &m);
	cr_assert_gt(n, 0);
	cr_assert_eq(buf[PROTO_HDR_SIZE + 3], 9); /* a3 61 76 <v> */
	f = tparse(buf, (size_t)n);
	cr_assert_eq(proto_frame_decode(&f, &out, NULL, NULL), 0);
	cr_assert_eq(out.v, 9);
}
