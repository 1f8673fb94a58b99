/*
 * engine/control.c - the control thread: the sandbox registry, the
 * management verbs of engine/api.h, sandbox lifecycles (backend calls,
 * boot, stop, remove) and the daemon's orderly stop.
 *
 * owner: everything here runs on the control thread (the thread that
 * called engine_start and runs engine_run), except control_post and
 * control_console_up/down, which any thread calls to queue work for it.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/internal.h"

#define CONTROL_TICK_MS 50	    /* stop deadlines and reaping */
#define STOP_GRACE_MS 3000	    /* core.shutdown -> SIGTERM/SIGKILL by the backend */
#define DAEMON_STOP_WAIT_MS 2500    /* at daemon stop: wait this long for agents to exit */

/* A console came up or went down (home shard -> control thread). */
struct cevent {
	struct cevent *next;
	struct sandbox *sb; /* a reference */
	bool up;
	char why[256];
};

/* ---- sandboxes ------------------------------------------------------------------- */

const char *sandbox_state_name(enum sandbox_state st)
{
	static const char *const names[] = {"booting", "running", "stopping", "stopped", "failed"};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

void sandbox_get(struct sandbox *sb)
{
	atomic_fetch_add_explicit(&sb->refs, 1, memory_order_relaxed);
}

void sandbox_put(struct sandbox *sb)
{
	if (!sb || atomic_fetch_sub_explicit(&sb->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(sb->argv_mem);
	free(sb->root);
	free(sb->msb_dir);
	free(sb->msb_sock);
	free(sb->msb_link);
	free(sb);
}

void sandbox_info(const struct sandbox *sb, struct engine_info *in)
{
	*in = (struct engine_info){0};
	snprintf(in->name, sizeof(in->name), "%s", sb->name);
	snprintf(in->state, sizeof(in->state), "%s", sandbox_state_name(sb->state));
	snprintf(in->backend, sizeof(in->backend), "%s", sb->backend_name);
	if (sb->state == SB_RUNNING || sb->state == SB_STOPPING)
		snprintf(in->agent_version, sizeof(in->agent_version), "%s", sb->agent_version);
	snprintf(in->error, sizeof(in->error), "%s", sb->error);
	in->pid = sb->vm_live ? sb->vm.pid : 0;
	in->shard = shard_id(sb->home);
	in->clients = atomic_load(&sb->clients);
	in->generation = atomic_load(&sb->generation);
	in->boot_ms = atomic_load(&sb->boot_ms);
	in->frames_in = atomic_load(&sb->frames_in);
	in->frames_out = atomic_load(&sb->frames_out);
	in->bytes_in = atomic_load(&sb->bytes_in);
	in->bytes_out = atomic_load(&sb->bytes_out);
	for (size_t i = 0; i < sb->nports; i++)
		port_info(sb->ports[i], &in->ports[in->nports++]);
}

static struct sandbox *registry_find(struct engine *e, const char *name, size_t n)
{
	for (size_t i = 0; i < e->nsbs; i++)
		if (strlen(e->sbs[i]->name) == n && !memcmp(e->sbs[i]->name, name, n))
			return e->sbs[i];
	return NULL;
}

static int registry_add(struct engine *e, struct sandbox *sb)
{
	if (e->nsbs == e->capsbs) {
		size_t cap = e->capsbs ? e->capsbs * 2 : 16;
		struct sandbox **v = realloc(e->sbs, sizeof(*v) * cap);

		if (!v)
			return -ENOMEM;
		e->sbs = v;
		e->capsbs = cap;
	}
	e->sbs[e->nsbs++] = sb;
	return 0;
}

static void registry_remove(struct engine *e, struct sandbox *sb)
{
	for (size_t i = 0; i < e->nsbs; i++)
		if (e->sbs[i] == sb) {
			e->sbs[i] = e->sbs[--e->nsbs];
			return;
		}
}

/* ---- requests -------------------------------------------------------------------------- */

void mreq_free(struct mreq *m)
{
	if (!m)
		return;
	free(m->payload);
	free(m->reply);
	if (m->sb)
		sandbox_put(m->sb);
	free(m);
}

void mreq_reply(struct mreq *m, const char *err, void (*data_fn)(struct cbw *w, const void *ctx),
	const void *ctx)
{
	size_t cap = 4096;

	for (int tries = 0; tries < 12; tries++, cap *= 2) {
		uint8_t *buf = malloc(cap);
		long n;

		if (!buf)
			return;
		n = engine_result(buf, cap, m->id, err, data_fn, ctx);
		if (n > 0) {
			free(m->reply);
			m->reply = buf;
			m->reply_len = (size_t)n;
			return;
		}
		free(buf);
	}
}

void mreq_finish(struct mreq *m)
{
	int rc;

	if (!m->e->g) { /* the shards are gone, and the client with them */
		mreq_free(m);
		return;
	}
	while ((rc = shard_call(m->shard, client_mreq_done, m)) == -EAGAIN)
		sleep_ms(1);
	if (rc < 0)
		mreq_free(m); /* stopping: the client goes too */
}

static void reply_err(struct mreq *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply_err(struct mreq *m, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mreq_reply(m, msg, NULL, NULL);
	mreq_finish(m);
}

static void info_data(struct cbw *w, const void *ctx)
{
	engine_info_write(w, ctx);
}

static void reply_info(struct mreq *m, const struct sandbox *sb)
{
	struct engine_info *in = malloc(sizeof(*in));

	if (in) {
		sandbox_info(sb, in);
		mreq_reply(m, NULL, info_data, in);
		free(in);
	}
	mreq_finish(m);
}

/* "no sandbox named X; known: a, b" */
static void reply_unknown(struct engine *e, struct mreq *m, const struct proto_str *name)
{
	char known[400] = "";
	size_t off = 0;

	for (size_t i = 0; i < e->nsbs && off < sizeof(known) - 70; i++)
		off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s", i ? ", " : "",
			e->sbs[i]->name);
	reply_err(m, "no sandbox named \"%.*s\"; %s%s (see `sandwire ls`)", (int)name->len, name->ptr,
		e->nsbs ? "known: " : "there are none yet", known);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void waiters_answer(struct sandbox *sb, const char *err)
{
	struct mreq *m;

	while ((m = sb->waiters)) {
		sb->waiters = m->next;
		m->next = NULL;
		if (err)
			reply_err(m, "%s", err);
		else if (m->verb == ENGINE_V_REMOVE) {
			mreq_reply(m, NULL, NULL, NULL);
			mreq_finish(m);
		} else
			reply_info(m, sb);
	}
}

static void wait_on(struct sandbox *sb, struct mreq *m)
{
	m->next = sb->waiters;
	sb->waiters = m;
}

/* Start the agent and hand the console to the home shard. */
static int sandbox_boot(struct engine *e, struct sandbox *sb, char *err, size_t cap)
{
	const struct vmm_backend *b = vmm_backend_find(sb->backend_name);
	struct vmm_spec spec = {
		.name = sb->name,
		.agent_argv = sb->argv,
		.ns = sb->ns,
		.root = sb->root,
		.rlimits = sb->rlimits,
		.nrlimits = sb->nrlimits,
	};
	struct sw_err se = {0};
	int rc;

	sb->error[0] = '\0';
	atomic_store(&sb->generation, 0);
	sb->t_start = shard_now_ns();
	if (b->start(&spec, &sb->vm, &se) < 0) {
		snprintf(err, cap, "sandbox %s: %s", sb->name, se.msg);
		return se.status ? se.status : -EIO;
	}
	sb->vm_live = true;
	sb->state = SB_BOOTING;
	sandbox_get(sb);
	while ((rc = shard_call(sb->home, console_start_on_home, sb)) == -EAGAIN)
		sleep_ms(1);
	if (rc < 0) {
		sandbox_put(sb);
		b->stop(&sb->vm, 0);
		sb->vm_live = false;
		snprintf(err, cap, "sandbox %s: the daemon is stopping", sb->name);
		return rc;
	}
	engine_log(e, SHARD_LOG_INFO, "sandbox %s: agent started (pid %d, home shard %u)", sb->name,
		(int)sb->vm.pid, shard_id(sb->home));
	return 0;
}

/* Reap the backend and describe how the agent ended into sb->error (if empty). */
static void sandbox_reap(struct sandbox *sb, int grace_ms)
{
	const struct vmm_backend *b = vmm_backend_find(sb->backend_name);
	char how[80] = "";

	if (!sb->vm_live)
		return;
	b->stop(&sb->vm, grace_ms);
	sb->vm_live = false;
	if (sb->vm.exited) {
		if (WIFEXITED(sb->vm.wstatus))
			snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(sb->vm.wstatus));
		else if (WIFSIGNALED(sb->vm.wstatus))
			snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(sb->vm.wstatus));
	}
	if (how[0] && sb->state != SB_STOPPING) {
		size_t n = strlen(sb->error);

		snprintf(sb->error + n, sizeof(sb->error) - n, "%sagent %s", n ? "; " : "", how);
	}
}

static void sandbox_stop_begin(struct sandbox *sb)
{
	int rc;

	sb->state = SB_STOPPING;
	sb->t_start = shard_now_ns();
	sandbox_get(sb);
	while ((rc = shard_call(sb->home, console_shutdown_on_home, sb)) == -EAGAIN)
		sleep_ms(1);
	if (rc < 0)
		sandbox_put(sb);
}

/* Stop listening for <sb> (agent.sock, published ports); needs live shards. */
static void sandbox_unlisten(struct engine *e, struct sandbox *sb)
{
	msb_unpublish(e, sb);
	for (size_t i = 0; i < sb->nports; i++)
		port_close(e, sb->ports[i]);
	sb->nports = 0;
}

static void sandbox_destroy(struct engine *e, struct sandbox *sb)
{
	if (e->g)
		sandbox_unlisten(e, sb);
	registry_remove(e, sb);
	engine_log(e, SHARD_LOG_INFO, "sandbox %s: removed", sb->name);
	sandbox_put(sb);
}

static void on_console_up(struct engine *e, struct sandbox *sb)
{
	int rc;

	if (sb->state != SB_BOOTING)
		return;
	sb->state = SB_RUNNING;
	if (e->cfg.msb_sockets && (rc = msb_publish(e, sb)) < 0)
		engine_log(e, SHARD_LOG_WARN, "sandbox %s: no agent.sock under %s: %s", sb->name,
			e->cfg.msb_home, strerror(-rc));
	waiters_answer(sb, NULL);
}

static void on_console_down(struct engine *e, struct sandbox *sb, const char *why)
{
	char err[600];
	bool booting = sb->state == SB_BOOTING, stopping = sb->state == SB_STOPPING;

	if (!stopping)
		snprintf(sb->error, sizeof(sb->error), "%s", why);
	sandbox_reap(sb, stopping ? STOP_GRACE_MS : 200);
	sb->state = stopping ? SB_STOPPED : SB_FAILED;
	engine_log(e, stopping ? SHARD_LOG_INFO : SHARD_LOG_WARN, "sandbox %s: %s%s%s", sb->name,
		stopping ? "stopped" : "failed: ", stopping ? "" : sb->error, "");
	if (booting) {
		snprintf(err, sizeof(err),
			"sandbox %s did not boot: %s (the agent's own messages are in the daemon's log)",
			sb->name, sb->error);
		waiters_answer(sb, err);
		return;
	}
	/* Waiters are stop/remove requests. */
	for (struct mreq *m = sb->waiters; m; m = m->next)
		if (m->verb == ENGINE_V_REMOVE) {
			struct mreq *all = sb->waiters;

			sb->waiters = NULL;
			sandbox_get(sb);
			sandbox_destroy(e, sb);
			while ((m = all)) {
				all = m->next;
				if (m->verb == ENGINE_V_REMOVE) {
					mreq_reply(m, NULL, NULL, NULL);
					mreq_finish(m);
				} else
					reply_info(m, sb);
			}
			sandbox_put(sb);
			return;
		}
	waiters_answer(sb, NULL);
}

/* ---- verbs ------------------------------------------------------------------------------------ */

static int rlimit_lookup(const char *name)
{
	static const struct {
		const char *name;
		int res;
	} t[] = {
		{"as", RLIMIT_AS}, {"core", RLIMIT_CORE}, {"cpu", RLIMIT_CPU}, {"data", RLIMIT_DATA},
		{"fsize", RLIMIT_FSIZE}, {"locks", RLIMIT_LOCKS}, {"memlock", RLIMIT_MEMLOCK},
		{"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE}, {"nofile", RLIMIT_NOFILE},
		{"nproc", RLIMIT_NPROC}, {"rss", RLIMIT_RSS}, {"rtprio", RLIMIT_RTPRIO},
		{"rttime", RLIMIT_RTTIME}, {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(t[i].name, name))
			return t[i].res;
	return -1;
}

static char *strndup_str(const struct proto_str *s)
{
	return s->len ? strndup(s->ptr, s->len) : NULL;
}

/* Fill a new sandbox from a create request; <err> says what is wrong. */
static struct sandbox *sandbox_from_request(struct engine *e, const struct engine_create *c,
	char *err, size_t cap)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	struct sw_err se = {0};
	size_t need = 0;
	char *p;

	if (!sb) {
		snprintf(err, cap, "out of memory");
		return NULL;
	}
	atomic_init(&sb->refs, 1);
	sb->e = e;
	memcpy(sb->name, c->name.ptr, c->name.len);
	sb->name[c->name.len] = '\0';
	sb->home = engine_home_for(e, sb->name);
	sb->state = SB_STOPPED;
	sb->boot_timeout_ms = c->boot_timeout_ms ? c->boot_timeout_ms : e->cfg.boot_timeout_ms;
	if (c->backend.len && !(c->backend.len == 7 && !memcmp(c->backend.ptr, "process", 7))) {
		snprintf(err, cap, "unknown backend \"%.*s\": this daemon has \"process\"",
			(int)(c->backend.len > 32 ? 32 : c->backend.len), c->backend.ptr);
		goto fail;
	}
	snprintf(sb->backend_name, sizeof(sb->backend_name), "process");
	/* Agent command: given words, or the daemon's sandwire-agent. */
	for (size_t i = 0; i < c->nagent; i++)
		need += c->agent[i].len + 1;
	need += strlen(e->cfg.agent_path) + 1;
	p = sb->argv_mem = malloc(need);
	if (!p) {
		snprintf(err, cap, "out of memory");
		goto fail;
	}
	if (!c->nagent) {
		strcpy(p, e->cfg.agent_path);
		sb->argv[0] = p;
	}
	for (size_t i = 0; i < c->nagent; i++) {
		memcpy(p, c->agent[i].ptr, c->agent[i].len);
		p[c->agent[i].len] = '\0';
		sb->argv[i] = p;
		p += c->agent[i].len + 1;
	}
	if (c->ns.len) {
		char *ns = strndup_str(&c->ns);

		if (!ns || vmm_parse_namespaces(ns, &sb->ns, &se) < 0) {
			snprintf(err, cap, "%s", ns ? se.msg : "out of memory");
			free(ns);
			goto fail;
		}
		free(ns);
	}
	sb->root = strndup_str(&c->root);
	if (sb->root && !(sb->ns & VMM_NS_MOUNT)) /* a root needs a mount namespace */
		sb->ns |= VMM_NS_MOUNT;
	for (size_t i = 0; i < c->nrlimits; i++) {
		int res = rlimit_lookup(c->rlimits[i].name);

		if (res < 0) {
			snprintf(err, cap,
				"unknown rlimit \"%s\" (known: as core cpu data fsize locks memlock msgqueue "
				"nice nofile nproc rss rtprio rttime sigpending stack)",
				c->rlimits[i].name);
			goto fail;
		}
		sb->rlimits[sb->nrlimits++] = (struct vmm_rlimit){res, c->rlimits[i].soft, c->rlimits[i].hard};
	}
	return sb;
fail:
	sandbox_put(sb);
	return NULL;
}

static int sandbox_add_ports(struct engine *e, struct sandbox *sb, const struct engine_port *ports,
	size_t n, char *err, size_t cap)
{
	if (sb->nports + n > ENGINE_PORTS_MAX) {
		snprintf(err, cap, "at most %u published ports per sandbox", ENGINE_PORTS_MAX);
		return -E2BIG;
	}
	for (size_t i = 0; i < n; i++) {
		struct port *p;
		char why[300];
		int rc = port_open(e, sb, &ports[i], &p, why, sizeof(why));

		if (rc < 0) {
			snprintf(err, cap, "sandbox %s: publish %u:%u: %s", sb->name, ports[i].host_port,
				ports[i].guest_port, why);
			return rc;
		}
		sb->ports[sb->nports++] = p;
		engine_log(e, SHARD_LOG_INFO, "sandbox %s: published %s:%u -> guest port %u (limit %u)",
			sb->name, p->spec.host_ip, p->spec.host_port, p->spec.guest_port, p->spec.limit);
	}
	return 0;
}

static void verb_create(struct engine *e, struct mreq *m)
{
	uint8_t arena_mem[8192];
	struct proto_arena a;
	struct engine_create *c = calloc(1, sizeof(*c));
	struct sandbox *sb = NULL;
	char err[600];

	proto_arena_init(&a, arena_mem, sizeof(arena_mem));
	if (!c) {
		reply_err(m, "out of memory");
		return;
	}
	if (engine_decode_create(m->payload, m->payload_len, &a, c, err, sizeof(err)) < 0 ||
		engine_name_check(c->name.ptr, c->name.len, err, sizeof(err)) < 0)
		goto bad;
	if (registry_find(e, c->name.ptr, c->name.len)) {
		snprintf(err, sizeof(err),
			"a sandbox named \"%.*s\" exists already (remove it with `sandwire rm %.*s`, or "
			"pick another --name)",
			(int)c->name.len, c->name.ptr, (int)c->name.len, c->name.ptr);
		goto bad;
	}
	sb = sandbox_from_request(e, c, err, sizeof(err));
	if (!sb)
		goto bad;
	if (sandbox_add_ports(e, sb, c->ports, c->nports, err, sizeof(err)) < 0)
		goto bad;
	if (sandbox_boot(e, sb, err, sizeof(err)) < 0)
		goto bad;
	if (registry_add(e, sb) < 0) { /* cannot happen without memory: stop the agent again */
		snprintf(err, sizeof(err), "out of memory");
		sandbox_stop_begin(sb);
		goto bad;
	}
	wait_on(sb, m);
	free(c);
	return;
bad:
	if (sb) {
		for (size_t i = 0; i < sb->nports; i++)
			port_close(e, sb->ports[i]);
		sandbox_put(sb);
	}
	free(c);
	reply_err(m, "%s", err);
}

static void list_data(struct cbw *w, const void *ctx)
{
	const struct engine *e = ctx;
	struct engine_info *in = malloc(sizeof(*in));

	cbw_map(w, 1);
	cbw_key(w, "sandboxes");
	cbw_array(w, in ? e->nsbs : 0);
	for (size_t i = 0; in && i < e->nsbs; i++) {
		sandbox_info(e->sbs[i], in);
		engine_info_write(w, in);
	}
	free(in);
}

static void stats_data(struct cbw *w, const void *ctx)
{
	struct engine *e = (struct engine *)ctx;

	cbw_map(w, 1);
	cbw_key(w, "shards");
	cbw_array(w, e->nshards);
	for (unsigned i = 0; i < e->nshards; i++) {
		struct engine_shard_stats st;

		engine_read_shard_stats(e, i, &st);
		engine_stats_write(w, &st);
	}
}

static void verb_named(struct engine *e, struct mreq *m)
{
	struct proto_str name = {0};
	struct sandbox *sb;
	char err[600];

	if (engine_decode_name(m->payload, m->payload_len, &name) < 0 || !name.len) {
		reply_err(m, "the request needs a sandbox name: {name: text}");
		return;
	}
	sb = registry_find(e, name.ptr, name.len);
	if (!sb) {
		reply_unknown(e, m, &name);
		return;
	}
	switch (m->verb) {
	case ENGINE_V_INSPECT:
		reply_info(m, sb);
		return;
	case ENGINE_V_ATTACH:
		if (sb->state != SB_RUNNING) {
			reply_err(m, "sandbox %s is %s%s%s (start it with `sandwire start %s`)", sb->name,
				sandbox_state_name(sb->state), sb->error[0] ? ": " : "", sb->error, sb->name);
			return;
		}
		sandbox_get(sb);
		m->sb = sb;
		mreq_finish(m);
		return;
	case ENGINE_V_STOP:
		if (sb->state == SB_STOPPED || sb->state == SB_FAILED) {
			reply_info(m, sb);
			return;
		}
		wait_on(sb, m);
		if (sb->state != SB_STOPPING)
			sandbox_stop_begin(sb);
		return;
	case ENGINE_V_START:
		if (sb->state == SB_RUNNING) {
			reply_info(m, sb);
			return;
		}
		if (sb->state != SB_STOPPED && sb->state != SB_FAILED) {
			reply_err(m, "sandbox %s is %s; try again when it is stopped", sb->name,
				sandbox_state_name(sb->state));
			return;
		}
		if (sandbox_boot(e, sb, err, sizeof(err)) < 0) {
			sb->state = SB_FAILED;
			snprintf(sb->error, sizeof(sb->error), "%.255s", err);
			reply_err(m, "%s", err);
			return;
		}
		wait_on(sb, m);
		return;
	case ENGINE_V_REMOVE:
		if (sb->state == SB_STOPPED || sb->state == SB_FAILED) {
			sandbox_destroy(e, sb);
			mreq_reply(m, NULL, NULL, NULL);
			mreq_finish(m);
			return;
		}
		wait_on(sb, m);
		if (sb->state != SB_STOPPING)
			sandbox_stop_begin(sb);
		return;
	default:
		reply_err(m, "internal: verb %d", (int)m->verb);
		return;
	}
}

static void verb_publish(struct engine *e, struct mreq *m)
{
	struct engine_port ports[ENGINE_PORTS_MAX];
	struct proto_str name = {0};
	struct sandbox *sb;
	size_t n = 0;
	char err[600];

	if (engine_decode_publish(m->payload, m->payload_len, &name, ports, &n, err, sizeof(err)) < 0) {
		reply_err(m, "%s", err);
		return;
	}
	sb = registry_find(e, name.ptr, name.len);
	if (!sb) {
		reply_unknown(e, m, &name);
		return;
	}
	if (sandbox_add_ports(e, sb, ports, n, err, sizeof(err)) < 0) {
		reply_err(m, "%s", err);
		return;
	}
	reply_info(m, sb);
}

static void control_run_mreq(struct engine *e, struct mreq *m)
{
	switch (m->verb) {
	case ENGINE_V_CREATE:
		verb_create(e, m);
		break;
	case ENGINE_V_LIST:
		mreq_reply(m, NULL, list_data, e);
		mreq_finish(m);
		break;
	case ENGINE_V_STATS:
		mreq_reply(m, NULL, stats_data, e);
		mreq_finish(m);
		break;
	case ENGINE_V_PUBLISH:
		verb_publish(e, m);
		break;
	default:
		verb_named(e, m);
		break;
	}
}

/* ---- the queue ------------------------------------------------------------------------------- */

static void control_wake(struct engine *e)
{
	uint64_t one = 1;

	if (write(e->q_fd, &one, sizeof(one)) < 0) {
		/* saturated: a wake is pending */
	}
}

void control_post(struct engine *e, struct mreq *m)
{
	m->next = NULL;
	m->e = e;
	pthread_mutex_lock(&e->q_mu);
	if (e->q_tail)
		e->q_tail->next = m;
	else
		e->q_head = m;
	e->q_tail = m;
	pthread_mutex_unlock(&e->q_mu);
	control_wake(e);
}

static void control_event(struct engine *e, struct sandbox *sb, bool up, const char *why)
{
	struct cevent *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		engine_log(e, SHARD_LOG_ERR, "sandbox %s: out of memory reporting its console", sb->name);
		return;
	}
	sandbox_get(sb);
	ev->sb = sb;
	ev->up = up;
	snprintf(ev->why, sizeof(ev->why), "%s", why ? why : "");
	pthread_mutex_lock(&e->q_mu);
	if (e->ev_tail)
		e->ev_tail->next = ev;
	else
		e->ev_head = ev;
	e->ev_tail = ev;
	pthread_mutex_unlock(&e->q_mu);
	control_wake(e);
}

void control_console_up(struct engine *e, struct sandbox *sb)
{
	control_event(e, sb, true, NULL);
}

void control_console_down(struct engine *e, struct sandbox *sb, const char *why)
{
	control_event(e, sb, false, why);
}

/* Run everything queued; returns how many items ran. */
static unsigned control_drain(struct engine *e, bool run_requests)
{
	struct mreq *m;
	struct cevent *ev;
	unsigned n = 0;
	uint64_t v;

	if (read(e->q_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	pthread_mutex_lock(&e->q_mu);
	m = e->q_head;
	ev = e->ev_head;
	e->q_head = e->q_tail = NULL;
	e->ev_head = e->ev_tail = NULL;
	pthread_mutex_unlock(&e->q_mu);
	for (struct cevent *next; ev; ev = next, n++) {
		next = ev->next;
		if (ev->up)
			on_console_up(e, ev->sb);
		else
			on_console_down(e, ev->sb, ev->why);
		sandbox_put(ev->sb);
		free(ev);
	}
	for (struct mreq *next; m; m = next, n++) {
		next = m->next;
		m->next = NULL;
		if (run_requests)
			control_run_mreq(e, m);
		else
			reply_err(m, "the daemon is stopping");
	}
	return n;
}

/* Stopping sandboxes whose agent did not exit after core.shutdown: the backend forces it. */
static void control_tick(struct engine *e)
{
	uint64_t now = shard_now_ns();

	for (size_t i = 0; i < e->nsbs; i++) {
		struct sandbox *sb = e->sbs[i];

		if (sb->state == SB_STOPPING && sb->vm_live &&
			now - sb->t_start > (uint64_t)STOP_GRACE_MS * 1000000ull) {
			engine_log(e, SHARD_LOG_WARN,
				"sandbox %s: agent still running %d ms after core.shutdown: terminating it",
				sb->name, STOP_GRACE_MS);
			sandbox_reap(sb, 1000); /* the console then sees EOF */
		}
	}
}

static bool control_read_signal(struct engine *e, int sigfd)
{
	struct signalfd_siginfo si;

	while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			engine_log(e, SHARD_LOG_INFO, "sandwired: %s from pid %u: stopping",
				si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", si.ssi_pid);
			return true;
		}
	}
	return false;
}

static void control_stop_all(struct engine *e)
{
	uint64_t deadline;
	bool any = false;

	for (size_t i = 0; i < e->nsbs; i++)
		if (e->sbs[i]->state == SB_RUNNING || e->sbs[i]->state == SB_BOOTING) {
			sandbox_stop_begin(e->sbs[i]);
			any = true;
		}
	deadline = shard_now_ns() + (uint64_t)DAEMON_STOP_WAIT_MS * 1000000ull;
	while (any && shard_now_ns() < deadline) {
		struct pollfd pfd = {.fd = e->q_fd, .events = POLLIN};

		any = false;
		poll(&pfd, 1, CONTROL_TICK_MS);
		control_drain(e, false);
		for (size_t i = 0; i < e->nsbs; i++)
			any |= e->sbs[i]->state == SB_STOPPING;
	}
	for (size_t i = 0; i < e->nsbs; i++)
		sandbox_reap(e->sbs[i], 500);
}

int engine_run(struct engine *e, int sigfd)
{
	int rc;

	while (!atomic_load(&e->stop)) {
		struct pollfd pfd[2] = {{.fd = e->q_fd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};

		if (poll(pfd, sigfd >= 0 ? 2 : 1, CONTROL_TICK_MS) < 0 && errno != EINTR)
			break;
		if (sigfd >= 0 && (pfd[1].revents & POLLIN) && control_read_signal(e, sigfd))
			break;
		control_drain(e, true);
		control_tick(e);
	}
	control_stop_all(e);
	for (size_t i = 0; i < e->nsbs; i++)
		sandbox_unlisten(e, e->sbs[i]);
	shard_group_request_stop(e->g);
	/* Requests still coming from shards while they stop are answered "stopping". */
	rc = shard_group_stop(e->g);
	e->g = NULL;
	control_drain(e, false);
	while (e->nsbs)
		sandbox_destroy(e, e->sbs[e->nsbs - 1]);
	if (rc < 0)
		engine_log(e, SHARD_LOG_ERR, "sandwired: a shard still had chunks out at stop (leak)");
	engine_log(e, SHARD_LOG_INFO, "sandwired: stopped");
	return rc;
}
