/*
 * tests/engine/test_daemon_mt.c - sandwired's cross-shard paths under load
 * from several threads at once, against the real daemon binary (2 shards)
 * and real sandwire-agent sandboxes.  Carries the CTest label "threads": in
 * ThreadSanitizer builds the daemon and the agent are instrumented and this
 * file is built against the in-process Criterion stand-in
 * (tests/support/tsan/), so it is self-contained: no daemon harness, no
 * agent client, only engine/swclient.h and proto/msg.h.
 *
 * While one sandbox is shared, concurrently:
 *   - two relay clients (on the two shards) each run a big exec;
 *   - 200 connections to its published port echo 64 KiB each through an
 *     echo server of this process (the guest side: the process backend
 *     shares the host network), half-closed, checksummed;
 *   - three more clients in turn attach, stream `yes` and close their socket
 *     mid-stream (the daemon must end `yes`);
 *   - the test's main thread asks for stats and inspect in a loop.
 * Then SIGTERM with clients still attached: exit status 0 and a log (the
 * daemon's and its agents' stderr) free of sanitizer reports.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/api.h"
#include "engine/swclient.h"
#include "proto/cbor_rd.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/msg.h"

#define MT_SHARDS "2"
#define MT_GRACE_MS "500" /* --grace: SIGHUP -> SIGKILL for a departed client */
#define MT_SANDBOX "mt"
#define MT_WAIT_MS 45000	     /* deadline of each concurrent job (TSan is ~10x slower) */
#define MT_START_MS 20000	     /* the daemon's socket must accept within this */
#define MT_STOP_MS 30000	     /* SIGTERM -> exit */
#define MT_SEQ_N 50000		     /* client A: seq 1 MT_SEQ_N */
#define MT_A_BYTES 2000000	     /* client B: this many 'a' */
#define MT_B_CODE 3		     /* ... and this exit code */
#define MT_KILL_AFTER (256u * 1024u) /* `yes` bytes a doomed client reads before closing */
#define MT_KILL_ROUNDS 3	     /* doomed clients, one after the other */
#define MT_CONNS 200		     /* concurrent published-port connections */
#define MT_CONN_THREADS 4	     /* ... driven from this many threads */
#define MT_CONN_BYTES (64u * 1024u)  /* ... each echoing this much */
#define MT_ECHO_BUF 16384u
#define MT_ERR 512

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const mt_reports[] = {
	"WARNING: ThreadSanitizer",
	"ERROR: AddressSanitizer",
	"ERROR: LeakSanitizer",
	"runtime error:",
};

/* Jobs of the concurrent phase still running. */
static atomic_uint mt_running;

/* Milliseconds of CLOCK_MONOTONIC. */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Whether process <pid> exists and is not a zombie. */
static bool pid_alive(pid_t pid)
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

/* ---- the daemon ----------------------------------------------------------------------- */

struct mt_daemon {
	pid_t pid; /* sandwired, -1 once reaped */
	char dir[64];
	char sock[128];
	char log[128];
	struct swc ctl; /* management connection */
};

/* The whole log (malloc'd, NUL-terminated; "" when unreadable). */
static char *log_read(const struct mt_daemon *d, size_t *len)
{
	FILE *f = fopen(d->log, "r");
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap + 1);

	*len = 0;
	if (!buf) {
		if (f)
			fclose(f);
		return NULL;
	}
	while (f && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	if (f)
		fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Up to <cap>-1 bytes of the log from the first <needle> (or its end when NULL / absent). */
static const char *log_excerpt(const struct mt_daemon *d, const char *needle, char *out, size_t cap)
{
	size_t n;
	char *all = log_read(d, &n);
	const char *at = NULL;

	out[0] = '\0';
	if (!all)
		return out;
	if (needle)
		at = strstr(all, needle);
	if (!at)
		at = all + (n > cap - 1 ? n - (cap - 1) : 0);
	snprintf(out, cap, "%s", at);
	free(all);
	return out;
}

/* The child: log as stdout and stderr, die with the test, run sandwired. */
static void exec_daemon(const struct mt_daemon *d, const char *const *argv, pid_t parent)
{
	sigset_t none;
	int fd;

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

/* Start sandwired in a new temporary directory; returns once d->ctl is connected. */
static void daemon_start(struct mt_daemon *d)
{
	char msb_home[128], err[MT_ERR], tail[2048];
	const char *argv[] = {SW_SANDWIRED_BIN, "--shards", MT_SHARDS, "--socket", d->sock,
		"--msb-home", msb_home, "--agent", SW_AGENT_BIN, "--grace", MT_GRACE_MS, NULL};
	pid_t parent = getpid();
	int64_t deadline;
	int st;

	memset(d, 0, sizeof(*d));
	d->pid = -1;
	d->ctl.fd = -1;
	snprintf(d->dir, sizeof(d->dir), "/tmp/sw-mt-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
	snprintf(d->sock, sizeof(d->sock), "%s/sandwired.sock", d->dir);
	snprintf(msb_home, sizeof(msb_home), "%s/msb", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/sandwired.log", d->dir);
	cr_assert_eq(
		access(SW_SANDWIRED_BIN, X_OK), 0, "sandwired not found at %s", SW_SANDWIRED_BIN);
	d->pid = fork();
	cr_assert_geq(d->pid, 0, "fork: %s", strerror(errno));
	if (d->pid == 0)
		exec_daemon(d, argv, parent);
	deadline = now_ms() + MT_START_MS;
	while (swc_connect(&d->ctl, d->sock, err, sizeof(err)) < 0) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = -1;
			cr_assert_fail("sandwired exited at start (status 0x%x); log %s:\n%s", st,
				d->log, log_excerpt(d, NULL, tail, sizeof(tail)));
		}
		cr_assert_lt(now_ms(), deadline, "sandwired's socket did not accept in %d ms: %s",
			MT_START_MS, err);
		sleep_ms(20);
	}
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/*
 * SIGTERM, wait for the exit, require a log without sanitizer reports and
 * exit status 0 (1 is a chunk leak at stop, 66 a TSan report); removes the
 * directory when all is well.
 */
static void daemon_stop(struct mt_daemon *d)
{
	static char report[16384];
	int64_t deadline;
	int st = 0;

	swc_close(&d->ctl);
	cr_assert_eq(kill(d->pid, SIGTERM), 0, "kill sandwired: %s", strerror(errno));
	deadline = now_ms() + MT_STOP_MS;
	while (waitpid(d->pid, &st, WNOHANG) != d->pid) {
		if (now_ms() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			d->pid = -1;
			cr_assert_fail(
				"sandwired did not stop within %d ms of SIGTERM; log %s:\n%s",
				MT_STOP_MS, d->log, log_excerpt(d, NULL, report, sizeof(report)));
		}
		sleep_ms(20);
	}
	d->pid = -1;
	for (size_t i = 0; i < sizeof(mt_reports) / sizeof(mt_reports[0]); i++) {
		size_t n;
		char *all = log_read(d, &n);
		bool found = all && strstr(all, mt_reports[i]);

		free(all);
		cr_assert(!found, "the log %s has a sanitizer report (\"%s\"); the first:\n%s",
			d->log, mt_reports[i],
			log_excerpt(d, mt_reports[i], report, sizeof(report)));
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"sandwired ended with status 0x%x; log %s:\n%s", st, d->log,
		log_excerpt(d, NULL, report, sizeof(report)));
	nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Fail the test for the management call <what> that failed with <rc> / <err>. */
static void call_failed(struct mt_daemon *d, const char *what, int rc, const char *err)
{
	char tail[2048];

	cr_assert_fail("%s: %s (%s); log %s:\n%s", what, err, proto_strerror(rc), d->log,
		log_excerpt(d, NULL, tail, sizeof(tail)));
}

/* create MT_SANDBOX publishing 127.0.0.1:0 -> <guest_port>; its info into <in>. */
static void create_sandbox(struct mt_daemon *d, uint16_t guest_port, struct engine_info *in)
{
	static uint8_t buf[ENGINE_REQ_MAX];
	struct engine_create c = {0};
	struct swc_result res;
	char err[MT_ERR];
	uint32_t id = d->ctl.next_id++;
	struct cbr r;
	long n;
	int rc;

	c.name = (struct proto_str){MT_SANDBOX, strlen(MT_SANDBOX)};
	c.ports[0] = (struct engine_port){.host_ip = "127.0.0.1", .guest_port = guest_port};
	c.nports = 1;
	n = engine_req_create(buf, sizeof(buf), id, &c);
	cr_assert_gt(n, 0, "encode create: %s", proto_strerror((int)n));
	rc = swc_call(&d->ctl, buf, (size_t)n, id, &res, err, sizeof(err));
	if (rc < 0)
		call_failed(d, "create", rc, err);
	cr_assert(res.ok, "create: %s", err);
	cbr_init(&r, res.data, res.data_len, NULL);
	cr_assert_eq(engine_decode_info(&r, in), 0, "undecodable info in create's result");
}

/* inspect MT_SANDBOX into <in>. */
static void inspect(struct mt_daemon *d, struct engine_info *in)
{
	struct swc_result res;
	char err[MT_ERR];
	struct cbr r;
	int rc = swc_call_simple(&d->ctl, ENGINE_V_INSPECT, MT_SANDBOX, &res, err, sizeof(err));

	if (rc < 0)
		call_failed(d, "inspect", rc, err);
	cr_assert(res.ok, "inspect: %s", err);
	cbr_init(&r, res.data, res.data_len, NULL);
	cr_assert_eq(engine_decode_info(&r, in), 0, "undecodable info in inspect's result");
}

struct shards {
	struct engine_shard_stats st[2];
	unsigned n;
};

static void stats_one(const struct engine_shard_stats *st, void *ctx)
{
	struct shards *s = ctx;

	if (s->n < 2)
		s->st[s->n] = *st;
	s->n++;
}

/* stats: the counters of both shards. */
static struct shards stats(struct mt_daemon *d)
{
	struct shards s = {.n = 0};
	struct swc_result res;
	char err[MT_ERR];
	int rc = swc_call_simple(&d->ctl, ENGINE_V_STATS, NULL, &res, err, sizeof(err));

	if (rc < 0)
		call_failed(d, "stats", rc, err);
	cr_assert(res.ok, "stats: %s", err);
	cr_assert_eq(engine_decode_stats(res.data, res.data_len, stats_one, &s), 0,
		"undecodable stats result");
	cr_assert_eq(s.n, 2u, "stats for %u shards, the daemon runs 2", s.n);
	return s;
}

/* The shard that gained exactly one client from <a> to <b> (the other unchanged), or -1. */
static int shard_gained(const struct shards *a, const struct shards *b)
{
	int which = -1;

	for (int i = 0; i < 2; i++) {
		if (b->st[i].clients == a->st[i].clients)
			continue;
		if (b->st[i].clients != a->st[i].clients + 1 || which >= 0)
			return -1;
		which = i;
	}
	return which;
}

/* ---- relay clients --------------------------------------------------------------------- */

/* One attached connection, read frame by frame; one thread at a time. */
struct relay {
	int fd;
	uint32_t lo, hi; /* its id range */
	uint8_t *buf;	 /* the last frame, whole */
	size_t cap;
	struct proto_frame f;
	struct proto_msg m; /* ... decoded */
	struct proto_arena arena;
	uint8_t arena_mem[4096];
};

/*
 * Connect to <sock> and attach to MT_SANDBOX.  Returns 0, or < 0 with <err>
 * set.  Thread-safe, never asserts.
 */
static int relay_attach(const char *sock, struct relay *r, char *err, size_t cap)
{
	struct swc c = {.fd = -1};
	uint8_t *ready = NULL;
	size_t rl = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	rc = swc_connect(&c, sock, err, cap);
	if (rc < 0)
		return rc;
	rc = swc_attach(&c, MT_SANDBOX, &r->lo, &r->hi, &ready, &rl, err, cap);
	free(ready);
	if (rc == 0) {
		r->fd = c.fd; /* the relay owns the descriptor now */
		c.fd = -1;
	}
	swc_close(&c);
	return rc;
}

static void relay_close(struct relay *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
}

/* Send a pipe-mode exec of `/bin/sh -c <script>` on <id>.  Returns 0 or < 0. */
static int relay_exec(struct relay *r, uint32_t id, const char *script)
{
	struct proto_str args[2] = {{"-c", 2}, {script, strlen(script)}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	uint8_t frame[4096];
	long n;

	m.u.exec_request.cmd = (struct proto_str){"/bin/sh", 7};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	n = proto_frame_encode(frame, sizeof(frame), id, &m);
	if (n < 0)
		return (int)n;
	return swc_write_all(r->fd, frame, (size_t)n);
}

/*
 * Read and decode the next frame into r->f / r->m.  Returns 1, 0 on
 * timeout, -EPIPE on EOF, or a negative code for a bad frame.
 */
static int relay_recv(struct relay *r, int timeout_ms)
{
	long n = swc_read_frame(r->fd, &r->buf, &r->cap, timeout_ms);
	int rc;

	if (n <= 0)
		return n == -ECONNRESET ? -EPIPE : (int)n;
	rc = proto_frame_parse(r->buf, (size_t)n, &r->f);
	if (rc != n)
		return rc < 0 ? rc : PROTO_E_UNDERSIZE;
	proto_arena_init(&r->arena, r->arena_mem, sizeof(r->arena_mem));
	rc = proto_frame_decode(&r->f, &r->m, &r->arena, NULL);
	return rc < 0 ? rc : 1;
}

/* Read frames (whatever they say) until EOF: returns -EPIPE, or 0 after 5 s, or a bad-frame code.
 */
static int relay_until_eof(struct relay *r)
{
	int64_t deadline = now_ms() + 5000;
	int rc = 1;

	while (rc == 1 && now_ms() < deadline)
		rc = relay_recv(r, (int)(deadline - now_ms()));
	return rc == 1 ? 0 : rc;
}

/* ---- job: one exec on an attached client ------------------------------------------------ */

struct exec_job {
	struct relay *r;
	const char *script;
	uint32_t pid; /* from exec.started */
	uint8_t *out; /* stdout */
	size_t out_len, out_cap;
	size_t err_len; /* stderr bytes */
	bool exited;
	int code;
	char err[MT_ERR]; /* why the job failed; "" when it did not */
};

/* Append <n> bytes of stdout; false when out of memory. */
static bool out_append(struct exec_job *j, const uint8_t *p, size_t n)
{
	if (j->out_len + n > j->out_cap) {
		size_t want = j->out_cap ? j->out_cap : 65536;
		uint8_t *nb;

		while (want < j->out_len + n)
			want *= 2;
		nb = realloc(j->out, want);
		if (!nb)
			return false;
		j->out = nb;
		j->out_cap = want;
	}
	memcpy(j->out + j->out_len, p, n);
	j->out_len += n;
	return true;
}

/* Run j->script on the client's first id and collect it to its terminal frame. */
static void exec_job_run(struct exec_job *j)
{
	struct relay *r = j->r;
	const struct proto_msg *m = &r->m;
	uint32_t id = r->lo;
	int64_t deadline = now_ms() + MT_WAIT_MS;
	int rc = relay_exec(r, id, j->script);

	if (rc < 0) {
		snprintf(j->err, sizeof(j->err), "send exec.request: %s", proto_strerror(rc));
		return;
	}
	for (;;) {
		int left = (int)(deadline - now_ms());

		rc = left > 0 ? relay_recv(r, left) : 0;
		if (rc <= 0) {
			snprintf(j->err, sizeof(j->err), "%s after %zu bytes of stdout",
				rc == 0 ? "no terminal frame in time" : proto_strerror(rc),
				j->out_len);
			return;
		}
		if (r->f.id != id) {
			snprintf(j->err, sizeof(j->err), "%s on id %u, not ours (%u)",
				proto_type_name(m->type), r->f.id, id);
			return;
		}
		switch (m->type) {
		case PROTO_T_EXEC_STARTED:
			j->pid = m->u.exec_started.pid;
			break;
		case PROTO_T_EXEC_STDOUT:
			if (!out_append(j, m->u.data.ptr, m->u.data.len)) {
				snprintf(j->err, sizeof(j->err), "out of memory");
				return;
			}
			break;
		case PROTO_T_EXEC_STDERR:
			j->err_len += m->u.data.len;
			break;
		case PROTO_T_EXEC_EXITED:
			j->exited = true;
			j->code = m->u.exec_exited.code;
			if (!(r->f.flags & PROTO_FLAG_TERMINAL))
				snprintf(j->err, sizeof(j->err), "exec.exited without TERMINAL");
			return;
		case PROTO_T_EXEC_FAILED:
			snprintf(j->err, sizeof(j->err), "exec.failed: %s",
				proto_exec_fail_kind_name(m->u.exec_failed.kind));
			return;
		case PROTO_T_ERROR:
			snprintf(j->err, sizeof(j->err), "core.error %s: %.*s",
				proto_error_kind_name(m->u.error.kind), (int)m->u.error.message.len,
				m->u.error.message.ptr);
			return;
		default:
			snprintf(j->err, sizeof(j->err), "unexpected %s", proto_type_name(m->type));
			return;
		}
	}
}

/* Thread: exec_job_run, then leave mt_running. */
static void *exec_job_main(void *arg)
{
	exec_job_run(arg);
	atomic_fetch_sub(&mt_running, 1);
	return NULL;
}

/* ---- job: clients that go away mid-stream --------------------------------------------- */

struct kill_job {
	const char *sock;
	unsigned rounds; /* clients that attached, streamed and closed */
	size_t got;	 /* stdout bytes read before the closes, in all */
	int64_t gone_ms; /* the longest close -> `yes` gone */
	char err[MT_ERR];
};

/*
 * One round: attach, start `yes`, read MT_KILL_AFTER bytes of it, close the
 * socket while it streams, and wait until the daemon ended `yes` (SIGHUP,
 * SIGKILL after the grace).  Returns false with k->err set.
 */
static bool kill_round(struct kill_job *k, int64_t deadline)
{
	struct relay r;
	uint32_t pid = 0;
	size_t got = 0;
	int64_t closed;
	int rc = relay_attach(k->sock, &r, k->err, sizeof(k->err));

	if (rc < 0)
		return false;
	rc = relay_exec(&r, r.lo, "exec yes");
	while (rc >= 0 && (got < MT_KILL_AFTER || !pid)) {
		int left = (int)(deadline - now_ms());

		rc = left > 0 ? relay_recv(&r, left) : 0;
		if (rc == 0)
			rc = -ETIMEDOUT;
		if (rc < 0)
			break;
		if (r.f.id != r.lo ||
			(r.m.type != PROTO_T_EXEC_STARTED && r.m.type != PROTO_T_EXEC_STDOUT)) {
			snprintf(k->err, sizeof(k->err), "%s on id %u while `yes` streams on %u",
				proto_type_name(r.m.type), r.f.id, r.lo);
			relay_close(&r);
			return false;
		}
		if (r.m.type == PROTO_T_EXEC_STARTED)
			pid = r.m.u.exec_started.pid;
		else
			got += r.m.u.data.len;
	}
	relay_close(&r);
	k->got += got;
	if (rc < 0) {
		snprintf(k->err, sizeof(k->err), "round %u: streaming `yes`: %s after %zu bytes",
			k->rounds, proto_strerror(rc), got);
		return false;
	}
	closed = now_ms();
	while (pid_alive((pid_t)pid)) {
		if (now_ms() > deadline) {
			snprintf(k->err, sizeof(k->err),
				"round %u: `yes` (pid %u) still runs %ld ms after its client "
				"closed",
				k->rounds, pid, (long)(now_ms() - closed));
			return false;
		}
		sleep_ms(20);
	}
	if (now_ms() - closed > k->gone_ms)
		k->gone_ms = now_ms() - closed;
	k->rounds++;
	return true;
}

/* Thread: MT_KILL_ROUNDS clients, one after the other, each closed mid-stream; then leave
 * mt_running. */
static void *kill_job_main(void *arg)
{
	struct kill_job *k = arg;
	int64_t deadline = now_ms() + MT_WAIT_MS;

	while (k->rounds < MT_KILL_ROUNDS && kill_round(k, deadline))
		;
	atomic_fetch_sub(&mt_running, 1);
	return NULL;
}

/* ---- the guest's echo server ---------------------------------------------------------- */

struct echo_conn {
	int fd;
	uint8_t buf[MT_ECHO_BUF];
	size_t head, len; /* bytes still to write back: buf[head, len) */
	bool eof;	  /* the peer's EOF was read */
	struct echo_conn *next;
};

/* Listens on 127.0.0.1 (a kernel-picked port); one thread serves all connections with epoll. */
struct echo_srv {
	uint16_t port;
	int lfd, efd, wake;
	pthread_t thr;
	_Atomic uint64_t accepted, closed, errors;
};

static void echo_close(struct echo_srv *s, struct echo_conn *c, bool failed)
{
	epoll_ctl(s->efd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	atomic_fetch_add(&s->closed, 1);
	if (failed)
		atomic_fetch_add(&s->errors, 1);
}

/* Echo what can be echoed now; close after the peer's EOF once everything went back. */
static void echo_serve(struct echo_srv *s, struct echo_conn *c)
{
	struct epoll_event ev = {.data.ptr = c};

	for (;;) {
		ssize_t n;

		if (c->head < c->len) {
			n = send(c->fd, c->buf + c->head, c->len - c->head, MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN) {
				ev.events = EPOLLOUT;
				epoll_ctl(s->efd, EPOLL_CTL_MOD, c->fd, &ev);
				return;
			}
			if (n < 0 && errno != EINTR)
				goto fail;
			c->head += n > 0 ? (size_t)n : 0;
			continue;
		}
		if (c->eof) {
			echo_close(s, c, false);
			return;
		}
		n = read(c->fd, c->buf, sizeof(c->buf));
		if (n < 0 && errno == EAGAIN) {
			ev.events = EPOLLIN;
			epoll_ctl(s->efd, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		if (n < 0 && errno != EINTR)
			goto fail;
		c->eof = n == 0;
		c->head = 0;
		c->len = n > 0 ? (size_t)n : 0;
	}
fail:
	echo_close(s, c, true);
}

static void echo_accept(struct echo_srv *s, struct echo_conn **all)
{
	int fd;

	while ((fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct echo_conn *c = calloc(1, sizeof(*c));
		struct epoll_event ev = {.events = EPOLLIN};

		if (!c) {
			close(fd);
			atomic_fetch_add(&s->errors, 1);
			continue;
		}
		c->fd = fd;
		c->next = *all;
		*all = c;
		ev.data.ptr = c;
		epoll_ctl(s->efd, EPOLL_CTL_ADD, fd, &ev);
		atomic_fetch_add(&s->accepted, 1);
	}
}

static void *echo_main(void *arg)
{
	struct echo_srv *s = arg;
	struct echo_conn *all = NULL;
	struct epoll_event evs[64];
	bool run = true;

	while (run) {
		int n = epoll_wait(s->efd, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			struct echo_conn *c = evs[i].data.ptr;

			if (evs[i].data.ptr == &s->lfd)
				echo_accept(s, &all);
			else if (evs[i].data.ptr == &s->wake)
				run = false;
			else if (c->fd >= 0)
				echo_serve(s, c);
		}
	}
	while (all) {
		struct echo_conn *c = all;

		all = c->next;
		if (c->fd >= 0)
			echo_close(s, c, false);
		free(c);
	}
	return NULL;
}

static void echo_start(struct echo_srv *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct epoll_event ev = {.events = EPOLLIN};
	int rc;

	memset(s, 0, sizeof(*s));
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->lfd, 0, "socket: %s", strerror(errno));
	cr_assert_eq(
		bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(s->lfd, 1024), 0, "listen: %s", strerror(errno));
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0, "getsockname failed");
	s->port = ntohs(sa.sin_port);
	s->efd = epoll_create1(EPOLL_CLOEXEC);
	s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert(s->efd >= 0 && s->wake >= 0, "epoll/eventfd: %s", strerror(errno));
	ev.data.ptr = &s->lfd;
	cr_assert_eq(epoll_ctl(s->efd, EPOLL_CTL_ADD, s->lfd, &ev), 0, "epoll_ctl failed");
	ev.data.ptr = &s->wake;
	cr_assert_eq(epoll_ctl(s->efd, EPOLL_CTL_ADD, s->wake, &ev), 0, "epoll_ctl failed");
	rc = pthread_create(&s->thr, NULL, echo_main, s);
	cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
}

static void echo_stop(struct echo_srv *s)
{
	uint64_t one = 1;

	cr_assert_eq(write(s->wake, &one, sizeof(one)), (ssize_t)sizeof(one), "eventfd write");
	pthread_join(s->thr, NULL);
	close(s->lfd);
	close(s->efd);
	close(s->wake);
}

/* ---- job: published-port connections --------------------------------------------------- */

/* Byte <off> onward of connection <seed>'s stream, <n> bytes into <buf>. */
static void stream_fill(uint8_t *buf, size_t n, uint64_t seed, size_t off)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = (seed << 32 | (off + i) / 8) * 0x9e3779b97f4a7c15ull;

		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ull;
		x ^= x >> 32;
		buf[i] = (uint8_t)(x >> (8 * ((off + i) % 8)));
	}
}

/* FNV-1a, continued from <h>. */
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

struct port_conn {
	int fd;
	size_t sent, rcvd;
	uint64_t want, got; /* checksums of what was sent and what came back */
	bool shut, eof;
};

struct port_job {
	uint16_t port;
	unsigned first, n; /* connections [first, first+n) of MT_CONNS */
	unsigned done;	   /* ... that got their bytes back, then EOF */
	char err[MT_ERR];
};

/* Send what the socket takes; after the last byte, shut the write side. */
static int port_send(struct port_conn *c, uint64_t seed, uint8_t *buf)
{
	while (c->sent < MT_CONN_BYTES) {
		size_t n = MT_CONN_BYTES - c->sent;
		ssize_t w;

		stream_fill(buf, n, seed, c->sent);
		w = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		c->sent += (size_t)w;
	}
	if (!c->shut && shutdown(c->fd, SHUT_WR) < 0)
		return -errno;
	c->shut = true;
	return 0;
}

/* Read what is there; returns 0 or -errno (-EPROTO: more bytes than were sent). */
static int port_recv(struct port_conn *c, uint8_t *buf)
{
	for (;;) {
		ssize_t r = recv(c->fd, buf, MT_CONN_BYTES, MSG_DONTWAIT);

		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		if (r == 0) {
			c->eof = true;
			return 0;
		}
		if (c->rcvd + (size_t)r > MT_CONN_BYTES)
			return -EPROTO;
		c->got = fnv1a(c->got, buf, (size_t)r);
		c->rcvd += (size_t)r;
	}
}

/*
 * Open connections [first, first+n) at once; each sends its 64 KiB stream,
 * half-closes and reads the echo to EOF; the echo must be the stream, byte
 * count and checksum.
 */
static void port_job_run(struct port_job *p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
		.sin_port = htons(p->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct port_conn *c = calloc(p->n, sizeof(*c));
	uint8_t *buf = malloc(MT_CONN_BYTES);
	struct epoll_event evs[64];
	int64_t deadline = now_ms() + MT_WAIT_MS;
	int efd = epoll_create1(EPOLL_CLOEXEC);

	if (!c || !buf || efd < 0) {
		snprintf(p->err, sizeof(p->err), "setup: %s", strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < p->n; i++)
		c[i].fd = -1;
	for (unsigned i = 0; i < p->n; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};

		stream_fill(buf, MT_CONN_BYTES, p->first + i, 0);
		c[i].want = fnv1a(FNV_INIT, buf, MT_CONN_BYTES);
		c[i].got = FNV_INIT;
		c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c[i].fd < 0 ||
			(connect(c[i].fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
				errno != EINPROGRESS) ||
			epoll_ctl(efd, EPOLL_CTL_ADD, c[i].fd, &ev) < 0) {
			snprintf(p->err, sizeof(p->err), "conn %u: connect: %s", p->first + i,
				strerror(errno));
			goto out;
		}
	}
	while (p->done < p->n) {
		int n = epoll_wait(efd, evs, 64, 500);

		if (now_ms() > deadline) {
			snprintf(p->err, sizeof(p->err), "%u of %u connections done in %d ms",
				p->done, p->n, MT_WAIT_MS);
			goto out;
		}
		for (int k = 0; k < n; k++) {
			unsigned i = evs[k].data.u32;
			struct port_conn *ci = &c[i];
			int rc = 0;

			if ((evs[k].events & EPOLLOUT) && !ci->shut) {
				rc = port_send(ci, p->first + i, buf);
				if (rc == 0 && ci->shut) {
					struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

					epoll_ctl(efd, EPOLL_CTL_MOD, ci->fd, &ev);
				}
			}
			if (rc == 0 && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				rc = port_recv(ci, buf);
			if (rc < 0) {
				snprintf(p->err, sizeof(p->err),
					"conn %u: %s after %zu bytes sent, %zu back", p->first + i,
					strerror(-rc), ci->sent, ci->rcvd);
				goto out;
			}
			if (!ci->eof)
				continue;
			if (!ci->shut || ci->rcvd != MT_CONN_BYTES || ci->got != ci->want) {
				snprintf(p->err, sizeof(p->err),
					"conn %u: EOF after %zu of %u bytes back (%zu sent)%s",
					p->first + i, ci->rcvd, MT_CONN_BYTES, ci->sent,
					ci->rcvd == MT_CONN_BYTES ? ", checksum differs" : "");
				goto out;
			}
			epoll_ctl(efd, EPOLL_CTL_DEL, ci->fd, NULL);
			close(ci->fd);
			ci->fd = -1;
			p->done++;
		}
	}
out:
	for (unsigned i = 0; c && i < p->n; i++)
		if (c[i].fd >= 0)
			close(c[i].fd);
	if (efd >= 0)
		close(efd);
	free(c);
	free(buf);
}

/* Thread: port_job_run, then leave mt_running. */
static void *port_job_main(void *arg)
{
	port_job_run(arg);
	atomic_fetch_sub(&mt_running, 1);
	return NULL;
}

/* ---- the test ----------------------------------------------------------------------------- */

/* seq 1 MT_SEQ_N, as text (malloc'd); its length into *<len>. */
static char *seq_text(size_t *len)
{
	size_t cap = (size_t)MT_SEQ_N * 7 + 1, n = 0;
	char *s = malloc(cap);

	cr_assert_not_null(s, "out of memory");
	for (int i = 1; i <= MT_SEQ_N; i++)
		n += (size_t)snprintf(s + n, cap - n, "%d\n", i);
	*len = n;
	return s;
}

/* Whether <p> holds <n> bytes of 'a'. */
static bool all_a(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 'a')
			return false;
	return true;
}

Test(daemon_mt, cross_shard_paths_under_concurrency, .timeout = 300)
{
	struct mt_daemon d;
	struct echo_srv echo;
	struct engine_info in;
	struct shards s0, s1, s2, now;
	struct relay a, b;
	struct exec_job ja = {0}, jb = {0};
	struct kill_job kj = {0};
	struct port_job pj[MT_CONN_THREADS] = {0};
	pthread_t ta, tb, tk, tp[MT_CONN_THREADS];
	char err[MT_ERR], tail[2048], *want;
	unsigned polls = 0;
	int sha, shb, rc;
	size_t want_len;
	int64_t t0;

	signal(SIGPIPE, SIG_IGN);
	daemon_start(&d);
	echo_start(&echo);
	create_sandbox(&d, echo.port, &in);
	cr_assert_str_eq(in.state, "running", "the new sandbox is %s", in.state);
	cr_assert_eq(in.nports, 1u, "create reports %zu ports", in.nports);
	cr_assert_neq(in.ports[0].port.host_port, 0, "the bound host port is not reported");

	/* Two clients, round robin onto the two shards (one of them is the console's). */
	s0 = stats(&d);
	rc = relay_attach(d.sock, &a, err, sizeof(err));
	cr_assert_eq(rc, 0, "attach a: %s", err);
	s1 = stats(&d);
	rc = relay_attach(d.sock, &b, err, sizeof(err));
	cr_assert_eq(rc, 0, "attach b: %s", err);
	s2 = stats(&d);
	sha = shard_gained(&s0, &s1);
	shb = shard_gained(&s1, &s2);
	cr_assert(sha >= 0 && shb >= 0, "each attach must add one client to one shard");
	cr_assert_neq(sha, shb, "both clients landed on shard %d", sha);
	cr_assert(a.hi <= b.lo || b.hi <= a.lo, "ranges [%u,%u) and [%u,%u) overlap", a.lo, a.hi,
		b.lo, b.hi);
	cr_log_info("clients on shards %d and %d, the console on shard %u", sha, shb, in.shard);

	/* Everything at once, while this thread keeps asking for stats and inspect. */
	t0 = now_ms();
	ja = (struct exec_job){.r = &a, .script = "seq 1 " STR(MT_SEQ_N)};
	jb = (struct exec_job){.r = &b,
		.script =
			"head -c " STR(MT_A_BYTES) " /dev/zero | tr '\\0' a; exit " STR(MT_B_CODE)};
	kj = (struct kill_job){.sock = d.sock};
	atomic_store(&mt_running, 3 + MT_CONN_THREADS);
	cr_assert_eq(pthread_create(&ta, NULL, exec_job_main, &ja), 0, "pthread_create");
	cr_assert_eq(pthread_create(&tb, NULL, exec_job_main, &jb), 0, "pthread_create");
	cr_assert_eq(pthread_create(&tk, NULL, kill_job_main, &kj), 0, "pthread_create");
	for (unsigned i = 0; i < MT_CONN_THREADS; i++) {
		pj[i] = (struct port_job){.port = in.ports[0].port.host_port,
			.first = i * (MT_CONNS / MT_CONN_THREADS),
			.n = MT_CONNS / MT_CONN_THREADS};
		cr_assert_eq(
			pthread_create(&tp[i], NULL, port_job_main, &pj[i]), 0, "pthread_create");
	}
	while (atomic_load(&mt_running) > 0) {
		now = stats(&d);
		inspect(&d, &in);
		cr_assert_str_eq(
			in.state, "running", "the sandbox is %s during the jobs", in.state);
		polls++;
		sleep_ms(10);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_join(tk, NULL);
	for (unsigned i = 0; i < MT_CONN_THREADS; i++)
		pthread_join(tp[i], NULL);
	cr_log_info("concurrent phase: %ld ms, %u stats+inspect meanwhile; `yes` gone at most "
		    "%ld ms after its client closed",
		(long)(now_ms() - t0), polls, (long)kj.gone_ms);

	cr_assert(!ja.err[0], "client a (seq): %s; log:\n%s", ja.err,
		log_excerpt(&d, NULL, tail, sizeof(tail)));
	cr_assert(!jb.err[0], "client b (head | tr): %s; log:\n%s", jb.err,
		log_excerpt(&d, NULL, tail, sizeof(tail)));
	cr_assert(!kj.err[0], "the clients closed mid-stream: %s; log:\n%s", kj.err,
		log_excerpt(&d, NULL, tail, sizeof(tail)));
	for (unsigned i = 0; i < MT_CONN_THREADS; i++)
		cr_assert(!pj[i].err[0], "published port, thread %u: %s; log:\n%s", i, pj[i].err,
			log_excerpt(&d, NULL, tail, sizeof(tail)));

	want = seq_text(&want_len);
	cr_assert(ja.exited && ja.code == 0, "seq exited %d with code %d", ja.exited, ja.code);
	cr_assert_eq(ja.out_len, want_len, "seq wrote %zu bytes, want %zu", ja.out_len, want_len);
	cr_assert(!memcmp(ja.out, want, want_len), "seq's output differs");
	cr_assert_eq(ja.err_len, 0u, "seq wrote %zu bytes to stderr", ja.err_len);
	cr_assert(jb.exited && jb.code == MT_B_CODE, "head | tr exited %d with code %d", jb.exited,
		jb.code);
	cr_assert_eq(jb.out_len, (size_t)MT_A_BYTES, "head | tr wrote %zu bytes, want %d",
		jb.out_len, MT_A_BYTES);
	cr_assert(all_a(jb.out, jb.out_len), "head | tr's output is not all 'a'");
	cr_assert_eq(kj.rounds, MT_KILL_ROUNDS, "%u of %u doomed clients done", kj.rounds,
		MT_KILL_ROUNDS);
	cr_assert_geq(kj.got, (size_t)MT_KILL_ROUNDS * MT_KILL_AFTER,
		"the doomed clients read %zu bytes", kj.got);
	cr_assert_eq(atomic_load(&echo.accepted), (uint64_t)MT_CONNS,
		"the echo server accepted %lu connections",
		(unsigned long)atomic_load(&echo.accepted));
	cr_assert_eq(atomic_load(&echo.errors), 0u, "the echo server saw %lu socket errors",
		(unsigned long)atomic_load(&echo.errors));
	free(want);
	free(ja.out);
	free(jb.out);

	/* Settled: the departed client and every port connection are gone, nothing refused. */
	t0 = now_ms();
	for (;;) {
		now = stats(&d);
		if (now.st[0].port_conns + now.st[1].port_conns == 0 &&
			now.st[0].clients + now.st[1].clients ==
				s2.st[0].clients + s2.st[1].clients)
			break;
		cr_assert_lt(now_ms() - t0, 10000,
			"10 s after the jobs: %lu port connections, %lu clients (want %lu)",
			(unsigned long)(now.st[0].port_conns + now.st[1].port_conns),
			(unsigned long)(now.st[0].clients + now.st[1].clients),
			(unsigned long)(s2.st[0].clients + s2.st[1].clients));
		sleep_ms(50);
	}
	cr_assert_eq(now.st[0].refused + now.st[1].refused, 0u, "the daemon refused %lu frames",
		(unsigned long)(now.st[0].refused + now.st[1].refused));
	inspect(&d, &in);
	cr_assert_eq(in.clients, 2u, "the sandbox has %u clients, want a and b", in.clients);
	cr_assert_eq(in.ports[0].accepted, (uint64_t)MT_CONNS, "the port accepted %lu",
		(unsigned long)in.ports[0].accepted);
	cr_assert_eq(in.ports[0].refused, 0u, "the port refused %lu",
		(unsigned long)in.ports[0].refused);
	cr_assert_eq(in.ports[0].active, 0u, "the port has %lu active connections",
		(unsigned long)in.ports[0].active);
	cr_assert(atomic_load(&echo.closed) == MT_CONNS, "the echo server closed %lu of %d",
		(unsigned long)atomic_load(&echo.closed), MT_CONNS);

	/* Stop with a and b still attached: both see EOF, the daemon exits 0, the log is clean. */
	daemon_stop(&d);
	rc = relay_until_eof(&a);
	cr_assert_eq(rc, -EPIPE, "client a after the daemon stopped: %s", proto_strerror(rc));
	rc = relay_until_eof(&b);
	cr_assert_eq(rc, -EPIPE, "client b after the daemon stopped: %s", proto_strerror(rc));
	relay_close(&a);
	relay_close(&b);
	echo_stop(&echo);
}
