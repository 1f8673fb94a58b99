/*
 * tests/support/daemon_harness.c - see daemon_harness.h.
 */
#include "tests/support/daemon_harness.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/cbor_rd.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "tests/support/agent_harness.h"

#define DH_START_WAIT_MS 10000 /* the daemon's socket must accept within this */
#define DH_STOP_WAIT_MS 20000  /* SIGTERM -> exit */
#define DH_SRV_BUF (64u * 1024u)

/* ---- the daemon process -------------------------------------------------------------- */

const char *dh_sandwired_path(void)
{
	static char path[4096];
	const char *env = getenv("SW_SANDWIRED_BIN");
	const char *agent = ah_agent_path();
	const char *tail = "agent/sandwire-agent";
	size_t n = strlen(agent), t = strlen(tail);

	if (env && env[0])
		return env;
	cr_assert(n >= t && !strcmp(agent + n - t, tail),
		"cannot derive sandwired from the agent path %s: set SW_SANDWIRED_BIN", agent);
	snprintf(path, sizeof(path), "%.*sengine/sandwired", (int)(n - t), agent);
	return path;
}

int64_t dh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dh_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The whole file (malloc'd, NUL-terminated), or NULL. */
static char *file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (!f)
		return NULL;
	do {
		if (cap - n < 65536) {
			char *nb = realloc(buf, cap + 65536 + 1);

			if (!nb)
				break;
			buf = nb;
			cap += 65536;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

const char *dh_log_tail(const struct dh *d, char *buf, size_t cap)
{
	size_t n = 0;
	char *all = file_read(d->log, &n);

	buf[0] = '\0';
	if (all) {
		size_t from = n > cap - 1 ? n - (cap - 1) : 0;

		snprintf(buf, cap, "%s", all + from);
		free(all);
	}
	return buf;
}

bool dh_file_contains(const char *path, const char *needle)
{
	size_t n = 0;
	char *all = file_read(path, &n);
	bool found = all && memmem(all, n, needle, strlen(needle));

	free(all);
	return found;
}

bool dh_log_contains(const struct dh *d, const char *needle)
{
	return dh_file_contains(d->log, needle);
}

static void exec_daemon(const struct dh *d, const char *const *argv, pid_t parent)
{
	sigset_t none;
	int fd;

	/* Die with the test process, whatever way it ends. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(125);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || dup2(fd, 0) < 0)
		_exit(125);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

void dh_start(struct dh *d, unsigned nshards, const char *const *extra)
{
	const char *argv[64];
	char shards[16], tail[2048], err[512];
	pid_t parent = getpid();
	int64_t deadline;
	size_t n = 0;
	int st;

	memset(d, 0, sizeof(*d));
	d->pid = -1;
	d->ctl.fd = -1;
	d->nshards = nshards;
	snprintf(d->dir, sizeof(d->dir), "/tmp/sw-dh-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
	snprintf(d->sock, sizeof(d->sock), "%s/sandwired.sock", d->dir);
	snprintf(d->msb_home, sizeof(d->msb_home), "%s/msb", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/sandwired.log", d->dir);
	snprintf(shards, sizeof(shards), "%u", nshards);
	argv[n++] = dh_sandwired_path();
	argv[n++] = "--shards";
	argv[n++] = shards;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--msb-home";
	argv[n++] = d->msb_home;
	argv[n++] = "--agent";
	argv[n++] = ah_agent_path();
	for (; extra && *extra && n < 63; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	cr_assert_eq(access(argv[0], X_OK), 0, "sandwired not found at %s", argv[0]);
	d->pid = fork();
	cr_assert_geq(d->pid, 0, "fork: %s", strerror(errno));
	if (d->pid == 0)
		exec_daemon(d, argv, parent);
	deadline = dh_now_ms() + DH_START_WAIT_MS;
	for (;;) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = -1;
			cr_assert_fail("sandwired exited at start (status 0x%x); its log:\n%s", st,
				dh_log_tail(d, tail, sizeof(tail)));
		}
		if (swc_connect(&d->ctl, d->sock, err, sizeof(err)) == 0)
			break;
		cr_assert_lt(dh_now_ms(), deadline,
			"sandwired's socket did not accept in %d ms: %s\n%s", DH_START_WAIT_MS, err,
			dh_log_tail(d, tail, sizeof(tail)));
		dh_sleep_ms(10);
	}
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void dh_stop(struct dh *d)
{
	static const char *const reports[] = {
		"ERROR: AddressSanitizer",
		"ERROR: LeakSanitizer",
		"runtime error:",
		"WARNING: ThreadSanitizer",
	};
	char tail[4096];
	int64_t deadline;
	int st = 0;

	swc_close(&d->ctl);
	if (d->pid <= 0)
		return;
	cr_assert_eq(kill(d->pid, SIGTERM), 0, "kill sandwired: %s", strerror(errno));
	deadline = dh_now_ms() + DH_STOP_WAIT_MS;
	while (waitpid(d->pid, &st, WNOHANG) != d->pid) {
		if (dh_now_ms() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			d->pid = -1;
			cr_assert_fail("sandwired did not stop within %d ms of SIGTERM; log:\n%s",
				DH_STOP_WAIT_MS, dh_log_tail(d, tail, sizeof(tail)));
		}
		dh_sleep_ms(10);
	}
	d->pid = -1;
	for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++)
		cr_assert(!dh_log_contains(d, reports[i]),
			"sandwired's log (%s) has a sanitizer report (\"%s\"):\n%s", d->log,
			reports[i], dh_log_tail(d, tail, sizeof(tail)));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"sandwired ended with status 0x%x (exit 1: chunk leak at stop); log %s:\n%s", st,
		d->log, dh_log_tail(d, tail, sizeof(tail)));
	nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- management ---------------------------------------------------------------------- */

void dh_connect(struct dh *d, struct swc *c)
{
	char err[512];
	int rc = swc_connect(c, d->sock, err, sizeof(err));

	cr_assert_eq(rc, 0, "connect: %s", err);
}

/* Fail the test for a transport error of a call, saying whether the daemon died. */
static void call_failed(struct dh *d, const char *what, int rc, const char *err)
{
	char tail[2048], state[96] = "still running";
	int st;

	if (d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == d->pid) {
		d->pid = -1;
		if (WIFSIGNALED(st))
			snprintf(state, sizeof(state), "killed by signal %d", WTERMSIG(st));
		else
			snprintf(state, sizeof(state), "exited with status %d", WEXITSTATUS(st));
	}
	cr_assert_fail("%s: %s (%s); sandwired %s; its log:\n%s", what, err, proto_strerror(rc),
		state, dh_log_tail(d, tail, sizeof(tail)));
}

static void decode_info(const struct swc_result *res, struct engine_info *info)
{
	struct cbr r;

	cbr_init(&r, res->data, res->data_len, NULL);
	cr_assert_eq(engine_decode_info(&r, info), 0, "undecodable info in the result");
}

bool dh_create_try(struct dh *d, const char *name, const struct engine_port *ports, size_t nports,
	struct engine_info *info, char *err, size_t cap)
{
	static uint8_t buf[ENGINE_REQ_MAX];
	struct engine_create c = {0};
	struct swc_result res;
	uint32_t id = d->ctl.next_id++;
	long n;
	int rc;

	c.name = (struct proto_str){name, strlen(name)};
	cr_assert_leq(nports, ENGINE_PORTS_MAX);
	for (size_t i = 0; i < nports; i++)
		c.ports[i] = ports[i];
	c.nports = nports;
	n = engine_req_create(buf, sizeof(buf), id, &c);
	cr_assert_gt(n, 0, "encode create: %s", proto_strerror((int)n));
	rc = swc_call(&d->ctl, buf, (size_t)n, id, &res, err, cap);
	if (rc < 0)
		call_failed(d, "create", rc, err);
	if (res.ok && info)
		decode_info(&res, info);
	return res.ok;
}

void dh_create(struct dh *d, const char *name, const struct engine_port *ports, size_t nports,
	struct engine_info *info)
{
	char err[600], tail[2048];

	cr_assert(dh_create_try(d, name, ports, nports, info, err, sizeof(err)),
		"create %s: %s; daemon log:\n%s", name, err, dh_log_tail(d, tail, sizeof(tail)));
}

bool dh_call(struct dh *d, enum engine_verb v, const char *name, struct engine_info *info,
	char *err, size_t cap)
{
	struct swc_result res;
	int rc = swc_call_simple(&d->ctl, v, name, &res, err, cap);

	if (rc < 0)
		call_failed(d, engine_verb_name(v), rc, err);
	if (res.ok && info && res.data_len && res.data[0] != 0xf6) /* not CBOR null */
		decode_info(&res, info);
	return res.ok;
}

struct infos {
	struct engine_info *v;
	size_t cap, n;
};

static void list_one(const struct engine_info *in, void *ctx)
{
	struct infos *l = ctx;

	if (l->n < l->cap)
		l->v[l->n] = *in;
	l->n++;
}

size_t dh_list(struct dh *d, struct engine_info *out, size_t cap)
{
	struct infos l = {out, cap, 0};
	struct swc_result res;
	char err[512];
	int rc = swc_call_simple(&d->ctl, ENGINE_V_LIST, NULL, &res, err, sizeof(err));

	if (rc < 0)
		call_failed(d, "list", rc, err);
	cr_assert(res.ok, "list: %s", err);
	cr_assert_eq(engine_decode_list(res.data, res.data_len, list_one, &l), 0,
		"undecodable list result");
	return l.n;
}

struct shards {
	struct engine_shard_stats *v;
	unsigned n;
};

static void stats_one(const struct engine_shard_stats *st, void *ctx)
{
	struct shards *s = ctx;

	if (s->n < DH_SHARDS_MAX)
		s->v[s->n] = *st;
	s->n++;
}

unsigned dh_stats(struct dh *d, struct engine_shard_stats *out)
{
	struct shards s = {out, 0};
	struct swc_result res;
	char err[512];
	int rc = swc_call_simple(&d->ctl, ENGINE_V_STATS, NULL, &res, err, sizeof(err));

	if (rc < 0)
		call_failed(d, "stats", rc, err);
	cr_assert(res.ok, "stats: %s", err);
	cr_assert_eq(engine_decode_stats(res.data, res.data_len, stats_one, &s), 0,
		"undecodable stats result");
	cr_assert_eq(s.n, d->nshards, "stats for %u shards, the daemon runs %u", s.n, d->nshards);
	for (unsigned i = 0; i < s.n; i++)
		cr_assert_eq(out[i].shard, i, "stats entry %u is shard %u", i, out[i].shard);
	return s.n;
}

uint64_t dh_stats_sum(const struct engine_shard_stats *st, unsigned n, size_t offset)
{
	uint64_t sum = 0, v;

	for (unsigned i = 0; i < n; i++) {
		memcpy(&v, (const char *)&st[i] + offset, sizeof(v));
		sum += v;
	}
	return sum;
}

void dh_attach(struct dh *d, const char *name, struct agent_client *ac, uint32_t *lo, uint32_t *hi)
{
	struct swc c;
	uint8_t *ready = NULL;
	size_t rl = 0;
	char err[600];
	int rc, fd;

	dh_connect(d, &c);
	rc = swc_attach(&c, name, lo, hi, &ready, &rl, err, sizeof(err));
	cr_assert_eq(rc, 0, "attach %s: %s", name, err);
	free(ready);
	fd = c.fd;
	c.fd = -1; /* the agent client owns it now */
	swc_close(&c);
	rc = agent_client_attach(ac, fd, -1);
	cr_assert_eq(rc, 0, "agent_client_attach: %s", strerror(-rc));
}

/* Read exactly <n> bytes within <timeout_ms>; fails the test otherwise. */
static void read_exact(int fd, void *p, size_t n, int timeout_ms)
{
	uint8_t *at = p;
	int64_t deadline = dh_now_ms() + timeout_ms;

	while (n > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - dh_now_ms();
		ssize_t got;

		cr_assert_gt(left, 0, "%zu bytes still missing after %d ms", n, timeout_ms);
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		got = read(fd, at, n);
		cr_assert(got > 0 || (got < 0 && errno == EINTR), "read: %s",
			got == 0 ? "EOF" : strerror(errno));
		if (got > 0) {
			at += got;
			n -= (size_t)got;
		}
	}
}

void dh_attach_path(const char *path, struct agent_client *ac, uint32_t *lo, uint32_t *hi)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint8_t range[8], *buf = NULL, arena_mem[4096];
	struct proto_arena a;
	struct proto_frame f;
	struct proto_msg m;
	size_t cap = 0;
	long n;
	int fd, rc;

	cr_assert_lt(strlen(path), sizeof(sa.sun_path), "socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		strerror(errno));
	/* Spec 5.2: nothing to send; the range and core.ready come on their own. */
	read_exact(fd, range, sizeof(range), 10000);
	*lo = proto_be32(range);
	*hi = proto_be32(range + 4);
	cr_assert_lt(*lo, *hi, "handshake range [%u, %u) is empty", *lo, *hi);
	n = swc_read_frame(fd, &buf, &cap, 10000);
	cr_assert_gt(n, 0, "no core.ready after the range: %s", proto_strerror((int)n));
	cr_assert_eq(proto_frame_parse(buf, (size_t)n, &f), n);
	proto_arena_init(&a, arena_mem, sizeof(arena_mem));
	rc = proto_frame_decode(&f, &m, &a, NULL);
	cr_assert_eq(rc, 0, "undecodable ready frame: %s", proto_strerror(rc));
	cr_assert_eq(m.type, PROTO_T_READY, "the handshake frame is %s, not core.ready",
		proto_type_name(m.type));
	cr_assert_eq(f.id, 0);
	/* the daemon bootstraps with v = 9, so sandwire-agent announces generation 9 */
	cr_assert_eq(m.v, 9, "ready replayed with v = %u", m.v);
	cr_assert(m.u.ready.agent_version.len > 9 &&
			  !memcmp(m.u.ready.agent_version.ptr, "sandwire/", 9),
		"ready's agent_version is \"%.*s\"", (int)m.u.ready.agent_version.len,
		m.u.ready.agent_version.ptr);
	free(buf);
	rc = agent_client_attach(ac, fd, -1);
	cr_assert_eq(rc, 0, "agent_client_attach: %s", strerror(-rc));
}

/* ---- processes ----------------------------------------------------------------------- */

int dh_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	cr_assert_not_null(dir, "%s: %s", path, strerror(errno));
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

bool dh_pid_alive(pid_t pid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

/* ---- exec ------------------------------------------------------------------------------ */

long dh_exec_request(struct agent_client *ac, uint32_t id, const char *const *argv)
{
	struct proto_str args[64];
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	size_t n = 0;

	for (const char *const *a = argv + 1; *a && n < 64; a++)
		args[n++] = (struct proto_str){*a, strlen(*a)};
	m.u.exec_request.cmd = (struct proto_str){argv[0], strlen(argv[0])};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = n;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	return agent_client_send(ac, id, &m);
}

void dh_exec_send(struct agent_client *ac, uint32_t id, const char *const *argv)
{
	long rc = dh_exec_request(ac, id, argv);

	cr_assert_gt(rc, 0, "send exec.request on id %u: %s", id, proto_strerror((int)rc));
}

void dh_exec_init(struct dh_exec *x, uint32_t id)
{
	memset(x, 0, sizeof(*x));
	x->id = id;
	x->out = calloc(1, 1);
	x->err = calloc(1, 1);
	cr_assert(x->out && x->err);
}

int dh_recv(struct agent_client *ac, int timeout_ms)
{
	char why[256];
	int rc = agent_client_recv(ac, timeout_ms);

	if (rc >= 0)
		return rc;
	if (rc == -EPIPE || rc == -ECONNRESET)
		return -EPIPE;
	proto_errinfo_format(&ac->ei, why, sizeof(why));
	cr_assert_fail("bad frame from the daemon: %s (%s)", proto_strerror(rc), why);
	return rc;
}

/* Append with geometric growth. */
static void append(char **buf, size_t *len, const uint8_t *p, size_t n)
{
	size_t cap = malloc_usable_size(*buf);

	if (*len + n + 1 > cap) {
		size_t want = cap > 4096 ? cap : 4096;

		while (want < *len + n + 1)
			want *= 2;
		*buf = realloc(*buf, want);
		cr_assert_not_null(*buf);
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

bool dh_exec_take(struct dh_exec *x, const struct agent_client *ac)
{
	const struct proto_msg *m = &ac->msg;

	cr_assert_eq(ac->frame.id, x->id, "%s for id %u while collecting %u",
		proto_type_name(m->type), ac->frame.id, x->id);
	cr_assert(
		!x->done, "%s on id %u after its terminal frame", proto_type_name(m->type), x->id);
	switch (m->type) {
	case PROTO_T_EXEC_STARTED:
		cr_assert(!x->started, "two exec.started on id %u", x->id);
		x->started = true;
		x->pid = m->u.exec_started.pid;
		break;
	case PROTO_T_EXEC_STDOUT:
		cr_assert(x->started, "stdout before exec.started on id %u", x->id);
		append(&x->out, &x->out_len, m->u.data.ptr, m->u.data.len);
		break;
	case PROTO_T_EXEC_STDERR:
		append(&x->err, &x->err_len, m->u.data.ptr, m->u.data.len);
		break;
	case PROTO_T_EXEC_STDIN_ERROR:
		break;
	case PROTO_T_EXEC_EXITED:
		x->done = x->exited = true;
		x->code = m->u.exec_exited.code;
		break;
	case PROTO_T_EXEC_FAILED:
		x->done = x->failed = true;
		snprintf(x->text, sizeof(x->text), "%s",
			proto_exec_fail_kind_name(m->u.exec_failed.kind));
		break;
	case PROTO_T_ERROR:
		x->done = x->error = true;
		x->error_kind = m->u.error.kind;
		snprintf(x->text, sizeof(x->text), "%.*s", (int)m->u.error.message.len,
			m->u.error.message.ptr);
		break;
	default:
		cr_assert_fail("unexpected %s on exec id %u", proto_type_name(m->type), x->id);
	}
	return x->done;
}

void dh_exec_wait(struct agent_client *ac, struct dh_exec *x, int timeout_ms)
{
	for (;;) {
		int rc = dh_recv(ac, timeout_ms);

		cr_assert_eq(rc, 1, "exec id %u: %s after %zu bytes of stdout", x->id,
			rc == 0 ? "no frame within the timeout"
				: "the daemon closed the connection",
			x->out_len);
		if (dh_exec_take(x, ac))
			return;
	}
}

void dh_exec_run(struct agent_client *ac, uint32_t id, const char *const *argv, struct dh_exec *x)
{
	dh_exec_send(ac, id, argv);
	dh_exec_init(x, id);
	dh_exec_wait(ac, x, 30000);
}

void dh_exec_free(struct dh_exec *x)
{
	free(x->out);
	free(x->err);
	x->out = x->err = NULL;
}

/* ---- test data ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void dh_pattern(void *buf, size_t n, uint64_t seed, uint64_t off)
{
	uint8_t *p = buf;

	while (n > 0) {
		uint64_t w = mix64((seed << 40) ^ (off / 8));
		size_t k = off % 8, take = 8 - k < n ? 8 - k : n;

		memcpy(p, (const uint8_t *)&w + k, take);
		p += take;
		off += take;
		n -= take;
	}
}

bool dh_pattern_check(const void *buf, size_t n, uint64_t seed, uint64_t off)
{
	const uint8_t *p = buf;
	uint8_t want[4096];

	while (n > 0) {
		size_t take = n < sizeof(want) ? n : sizeof(want);

		dh_pattern(want, take, seed, off);
		if (memcmp(p, want, take))
			return false;
		p += take;
		off += take;
		n -= take;
	}
	return true;
}

/* ---- the stand-in guest service ------------------------------------------------------------ */

struct srv_conn {
	struct srv_conn *next;
	int fd;
	uint64_t in, out; /* bytes read from / written to the peer */
	uint8_t *buf;
	size_t head, len; /* pending bytes to write: buf[head, len) */
	bool bad;
};

static void srv_close(struct dh_tcpsrv *t, struct srv_conn *c)
{
	epoll_ctl(t->efd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	atomic_fetch_add(&t->closed, 1);
}

static void srv_want(struct dh_tcpsrv *t, struct srv_conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	epoll_ctl(t->efd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; false when the connection failed. */
static bool srv_flush(struct dh_tcpsrv *t, struct srv_conn *c)
{
	while (c->head < c->len) {
		ssize_t w = send(c->fd, c->buf + c->head, c->len - c->head, MSG_NOSIGNAL);

		if (w < 0)
			return errno == EAGAIN || errno == EINTR;
		c->head += (size_t)w;
		c->out += (uint64_t)w;
		atomic_fetch_add(&t->bytes_out, (uint64_t)w);
	}
	c->head = c->len = 0;
	return true;
}

static void srv_echo(struct dh_tcpsrv *t, struct srv_conn *c)
{
	for (;;) {
		ssize_t r;

		if (!srv_flush(t, c))
			goto fail;
		if (c->len) {
			srv_want(t, c, EPOLLOUT);
			return;
		}
		r = read(c->fd, c->buf, DH_SRV_BUF);
		if (r == 0) { /* the peer's EOF, everything echoed: close */
			srv_close(t, c);
			return;
		}
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				srv_want(t, c, EPOLLIN);
				return;
			}
			goto fail;
		}
		c->in += (uint64_t)r;
		atomic_fetch_add(&t->bytes_in, (uint64_t)r);
		c->head = 0;
		c->len = (size_t)r;
	}
fail:
	atomic_fetch_add(&t->errors, 1);
	srv_close(t, c);
}

static void srv_sink(struct dh_tcpsrv *t, struct srv_conn *c)
{
	for (;;) {
		ssize_t r = read(c->fd, c->buf, DH_SRV_BUF);

		if (r == 0) {
			if (c->bad)
				atomic_fetch_add(&t->bad, 1);
			atomic_fetch_add(&t->sunk, 1);
			srv_close(t, c);
			return;
		}
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			atomic_fetch_add(&t->errors, 1);
			srv_close(t, c);
			return;
		}
		if (!c->bad && !dh_pattern_check(c->buf, (size_t)r, t->seed, c->in))
			c->bad = true;
		c->in += (uint64_t)r;
		atomic_fetch_add(&t->bytes_in, (uint64_t)r);
	}
}

static void srv_source(struct dh_tcpsrv *t, struct srv_conn *c)
{
	for (;;) {
		size_t take;

		if (!srv_flush(t, c)) {
			atomic_fetch_add(&t->errors, 1);
			srv_close(t, c);
			return;
		}
		if (c->len)
			return; /* EPOLLOUT will call again */
		if (c->out == t->bytes) {
			srv_close(t, c);
			return;
		}
		take = t->bytes - c->out < DH_SRV_BUF ? (size_t)(t->bytes - c->out) : DH_SRV_BUF;
		dh_pattern(c->buf, take, t->seed, c->out);
		c->head = 0;
		c->len = take;
	}
}

static void srv_accept(struct dh_tcpsrv *t, struct srv_conn **all)
{
	for (;;) {
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct srv_conn *c;
		struct epoll_event ev;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (c)
			c->buf = malloc(DH_SRV_BUF);
		if (!c || !c->buf) {
			free(c);
			close(fd);
			atomic_fetch_add(&t->errors, 1);
			continue;
		}
		c->fd = fd;
		c->next = *all;
		*all = c;
		atomic_fetch_add(&t->accepted, 1);
		ev.events = t->mode == DH_SOURCE ? EPOLLOUT : EPOLLIN;
		ev.data.ptr = c;
		epoll_ctl(t->efd, EPOLL_CTL_ADD, fd, &ev);
	}
}

static void *srv_main(void *arg)
{
	struct dh_tcpsrv *t = arg;
	struct srv_conn *all = NULL;
	struct epoll_event evs[128];
	bool run = true;

	while (run) {
		int n = epoll_wait(t->efd, evs, 128, -1);

		for (int i = 0; i < n; i++) {
			struct srv_conn *c = evs[i].data.ptr;

			if (evs[i].data.ptr == &t->lfd) {
				srv_accept(t, &all);
				continue;
			}
			if (evs[i].data.ptr == &t->wake) {
				run = false;
				continue;
			}
			if (c->fd < 0)
				continue;
			if (t->mode == DH_ECHO)
				srv_echo(t, c);
			else if (t->mode == DH_SINK)
				srv_sink(t, c);
			else
				srv_source(t, c);
		}
	}
	while (all) {
		struct srv_conn *c = all;

		all = c->next;
		if (c->fd >= 0)
			srv_close(t, c);
		free(c);
	}
	return NULL;
}

void dh_tcpsrv_start(struct dh_tcpsrv *t, enum dh_tcpsrv_mode mode, uint64_t seed, uint64_t bytes)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct epoll_event ev;
	int rc;

	memset(t, 0, sizeof(*t));
	t->mode = mode;
	t->seed = seed;
	t->bytes = bytes;
	t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_geq(t->lfd, 0, "socket: %s", strerror(errno));
	cr_assert_eq(
		bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(t->lfd, 4096), 0, "listen: %s", strerror(errno));
	cr_assert_eq(getsockname(t->lfd, (struct sockaddr *)&sa, &sl), 0);
	t->port = ntohs(sa.sin_port);
	t->efd = epoll_create1(EPOLL_CLOEXEC);
	t->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert(t->efd >= 0 && t->wake >= 0);
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &t->lfd};
	cr_assert_eq(epoll_ctl(t->efd, EPOLL_CTL_ADD, t->lfd, &ev), 0);
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &t->wake};
	cr_assert_eq(epoll_ctl(t->efd, EPOLL_CTL_ADD, t->wake, &ev), 0);
	rc = pthread_create(&t->thr, NULL, srv_main, t);
	cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
}

void dh_tcpsrv_stop(struct dh_tcpsrv *t)
{
	uint64_t one = 1;

	cr_assert_eq(write(t->wake, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(t->thr, NULL);
	close(t->lfd);
	close(t->efd);
	close(t->wake);
}

int dh_tcp_connect(uint16_t port, bool nonblock)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		cr_assert(nonblock && errno == EINPROGRESS, "connect 127.0.0.1:%u: %s", port,
			strerror(errno));
	return fd;
}
