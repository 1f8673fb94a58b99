/*
 * engine/engine.c - starting and stopping sandwired: configuration, the
 * shards' per-shard state, the daemon socket (accepted on shard 0 and
 * spread over the shards), logging and per-shard counters.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"
#include "ring/chunk_pool.h"

#define ENGINE_TICK_NS (200ull * 1000000ull) /* counters snapshot period */

void engine_config_init(struct engine_config *cfg)
{
	*cfg = (struct engine_config){
		.msb_sockets = 1,
		.log_level = SHARD_LOG_INFO,
		.boot_timeout_ms = 10000,
		.disconnect_grace_ms = 2000,
		.pool_chunks = 2048,
	};
}

static const char *level_name(int level)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	return level >= 0 && level <= SHARD_LOG_DEBUG ? names[level] : "?";
}

/* One line on stderr with time and level; one write(2), so lines never mix. */
static void log_line(const struct engine *e, int level, const char *msg)
{
	char line[1200];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > e->cfg.log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, level_name(level), msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* stderr gone: nothing better to do */
	}
}

static void shard_log_sink(void *ctx, int level, const char *msg)
{
	log_line(ctx, level, msg);
}

void engine_log(struct engine *e, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(e, level, msg);
}

struct shard *engine_home_for(struct engine *e, const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return shard_group_get(e->g, h % e->nshards);
}

struct shard *engine_pick_shard(struct engine *e, struct shard *from)
{
	/* The group of <from>: e->g is not set yet while shard_group_start runs. */
	return shard_group_get(shard_get_group(from),
		atomic_fetch_add(&e->next_client_shard, 1) % e->nshards);
}

void engine_read_shard_stats(struct engine *e, unsigned i, struct engine_shard_stats *o)
{
	const struct eshard_stats *st = &e->es[i]->st;

	*o = (struct engine_shard_stats){
		.shard = i,
		.clients = atomic_load(&st->clients),
		.consoles = atomic_load(&st->consoles),
		.port_conns = atomic_load(&st->port_conns),
		.frames_in = atomic_load(&st->frames_in),
		.frames_out = atomic_load(&st->frames_out),
		.bytes_in = atomic_load(&st->bytes_in),
		.bytes_out = atomic_load(&st->bytes_out),
		.calls_sent = atomic_load(&st->calls_sent),
		.calls_run = atomic_load(&st->calls_run),
		.inbox_depth = atomic_load(&st->inbox_depth),
		.copies = atomic_load(&st->copies),
		.copy_bytes = atomic_load(&st->copy_bytes),
		.drops = atomic_load(&st->drops),
		.refused = atomic_load(&st->refused),
		.stalls = atomic_load(&st->stalls),
		.bulk_streams = atomic_load(&st->bulk_streams),
		.pool_in_use = atomic_load(&st->pool_in_use),
		.pool_total = atomic_load(&st->pool_total),
	};
}

/* ---- shards ------------------------------------------------------------------ */

static void eshard_tick(struct shard *s, struct shard_timer *t)
{
	struct eshard *es = eshard_of(s);
	struct chunk_pool_stats ps;
	struct shard_stats ss;

	chunk_pool_reclaim(shard_pool(s));
	chunk_pool_read_stats(shard_pool(s), &ps);
	shard_read_stats(s, &ss);
	atomic_store_explicit(&es->st.pool_in_use, ps.in_use, memory_order_relaxed);
	atomic_store_explicit(&es->st.pool_total, ps.total, memory_order_relaxed);
	atomic_store_explicit(&es->st.inbox_depth, ss.inbox_depth, memory_order_relaxed);
	shard_timer_arm(s, t, shard_now_ns() + ENGINE_TICK_NS);
}

static void adopt_on_shard(struct shard *s, void *arg)
{
	client_adopt(s, (int)(intptr_t)arg);
}

static void drop_fd(void *arg)
{
	close((int)(intptr_t)arg);
}

static void api_accept(struct shard *s, struct shard_accept *a, int res)
{
	struct eshard *es = eshard_of(s);
	struct shard *to;

	(void)a;
	if (res < 0) {
		if (res != -ECANCELED && !shard_stopping(s)) {
			shard_log(s, SHARD_LOG_WARN, "daemon socket: accept: %s; listening again",
				strerror(-res));
			shard_accept_start(s, &es->api_accept, es->e->api_fd, api_accept);
		}
		return;
	}
	to = engine_pick_shard(es->e, s);
	if (to == s)
		client_adopt(s, res);
	else if (eshard_send(es, to, adopt_on_shard, drop_fd, (void *)(intptr_t)res) < 0)
		close(res);
}

static int eshard_start(struct shard *s, void *user)
{
	struct engine *e = user;
	struct eshard *es = e->es[shard_id(s)];

	es->e = e;
	es->s = s;
	eshard_init_flush(es);
	shard_set_data(s, es);
	shard_timer_init(&es->tick, eshard_tick);
	eshard_tick(s, &es->tick);
	if (shard_id(s) == 0)
		return shard_accept_start(s, &es->api_accept, e->api_fd, api_accept);
	return 0;
}

static void eshard_stop(struct shard *s, void *user)
{
	struct eshard *es = eshard_of(s);

	(void)user;
	es->stopping = true;
	shard_timer_cancel(s, &es->tick);
	msb_close_all_on_shard(es);
	port_close_all_on_shard(es);
	console_close_all(es);
	client_close_all(es);
}

/* ---- the daemon socket -------------------------------------------------------------- */

static int default_socket(char *out, size_t cap)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg && *xdg)
		n = snprintf(out, cap, "%s/sandwire/sandwired.sock", xdg);
	else
		n = snprintf(out, cap, "/run/sandwire/sandwired.sock");
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Bind the daemon socket: refuses to steal one a live daemon answers on. */
static int api_listen(const char *path, struct sw_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return sw_err_set(err, -ENAMETOOLONG, "socket path %s is too long (max %zu bytes)", path,
			sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	snprintf(dir, sizeof(dir), "%s", path);
	if (strrchr(dir, '/') && strrchr(dir, '/') != dir) {
		*strrchr(dir, '/') = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return sw_err_sys(err, -errno, "create the socket directory %s (choose another with "
					       "--socket, or run as a user who may write there)",
				dir);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sw_err_sys(err, -errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return sw_err_set(err, -EADDRINUSE,
			"a daemon is already running on %s (stop it first, or pass another --socket)",
			path);
	}
	unlink(path); /* stale */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
		listen(fd, 1024) < 0) {
		int rc = sw_err_sys(err, -errno, "listen on %s", path);

		close(fd);
		return rc;
	}
	return fd;
}

static void find_agent(struct engine_config *cfg)
{
	char self[3072];
	ssize_t n;

	if (cfg->agent_path[0])
		return;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if (strrchr(self, '/'))
			*strrchr(self, '/') = '\0';
		snprintf(cfg->agent_path, sizeof(cfg->agent_path), "%s/sandwire-agent", self);
		if (access(cfg->agent_path, X_OK) == 0)
			return;
		/* the build tree: build/engine/sandwired beside build/agent/sandwire-agent */
		snprintf(cfg->agent_path, sizeof(cfg->agent_path), "%s/../agent/sandwire-agent", self);
		if (access(cfg->agent_path, X_OK) == 0)
			return;
	}
	snprintf(cfg->agent_path, sizeof(cfg->agent_path), "sandwire-agent");
}

static void find_msb_home(struct engine_config *cfg)
{
	const char *env = getenv("MSB_HOME"), *home = getenv("HOME");

	if (cfg->msb_home[0])
		return;
	if (env && *env)
		snprintf(cfg->msb_home, sizeof(cfg->msb_home), "%s", env);
	else
		snprintf(cfg->msb_home, sizeof(cfg->msb_home), "%s/.microsandbox",
			home && *home ? home : "/root");
}

struct engine *engine_start(const struct engine_config *cfg, struct sw_err *err)
{
	struct engine *e = calloc(1, sizeof(*e));
	struct shard_config sc;
	long ncpu;
	int rc;

	if (!e) {
		sw_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	e->api_fd = -1;
	e->q_fd = -1;
	pthread_mutex_init(&e->q_mu, NULL);
	if (!e->cfg.socket_path[0] && default_socket(e->cfg.socket_path, sizeof(e->cfg.socket_path)) < 0) {
		sw_err_set(err, -ENAMETOOLONG, "default socket path too long: pass --socket");
		goto fail;
	}
	find_agent(&e->cfg);
	find_msb_home(&e->cfg);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	e->nshards = e->cfg.shards ? e->cfg.shards : (unsigned)(ncpu > 0 ? ncpu : 1);
	if (e->nshards > SHARD_MAX) {
		sw_err_set(err, -EINVAL, "--shards %u is over the maximum of %u", e->nshards, SHARD_MAX);
		goto fail;
	}
	e->q_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->q_fd < 0) {
		sw_err_sys(err, -errno, "eventfd");
		goto fail;
	}
	e->es = calloc(e->nshards, sizeof(*e->es));
	for (unsigned i = 0; e->es && i < e->nshards; i++)
		if (!(e->es[i] = calloc(1, sizeof(**e->es)))) {
			sw_err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
	if (!e->es) {
		sw_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = api_listen(e->cfg.socket_path, err)) < 0)
		goto fail;
	e->api_fd = rc;
	shard_config_init(&sc, e->nshards);
	sc.pin = e->cfg.pin;
	sc.pool_chunks = e->cfg.pool_chunks;
	sc.buf_entries = 256;
	sc.buf_reserve = 256;
	while (sc.buf_entries > sc.pool_chunks / 2 && sc.buf_entries > 2)
		sc.buf_entries /= 2;
	if (sc.buf_reserve >= sc.pool_chunks)
		sc.buf_reserve = sc.pool_chunks / 4;
	sc.log = shard_log_sink;
	sc.log_ctx = e;
	sc.on_start = eshard_start;
	sc.on_stop = eshard_stop;
	sc.user = e;
	e->g = shard_group_start(&sc, &rc);
	if (!e->g) {
		sw_err_set(err, rc, "starting %u shards: %s", e->nshards, strerror(-rc));
		goto fail;
	}
	engine_log(e, SHARD_LOG_INFO, "sandwired: %u shard(s), socket %s, agent %s", e->nshards,
		e->cfg.socket_path, e->cfg.agent_path);
	return e;
fail:
	engine_destroy(e);
	return NULL;
}

int engine_signalfd(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

const char *engine_socket_path(const struct engine *e)
{
	return e->cfg.socket_path;
}

void engine_request_stop(struct engine *e)
{
	uint64_t one = 1;

	atomic_store(&e->stop, true);
	if (write(e->q_fd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: a wake is pending anyway */
	}
}

void engine_destroy(struct engine *e)
{
	if (!e)
		return;
	if (e->api_fd >= 0) {
		close(e->api_fd);
		unlink(e->cfg.socket_path);
	}
	if (e->q_fd >= 0)
		close(e->q_fd);
	for (unsigned i = 0; e->es && i < e->nshards; i++)
		free(e->es[i]);
	free(e->es);
	free(e->sbs);
	pthread_mutex_destroy(&e->q_mu);
	free(e);
}
