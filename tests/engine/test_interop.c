/*
 * tests/engine/test_interop.c - sandwired hosting microsandbox's real
 * agentd (../shared/peers/agentd, fetched from npm by its build.sh) in
 * place of sandwire-agent, and sandwire-agent through the same daemon code
 * path (--agent) and the same scenario: exec through an attached client,
 * and a published port carrying 48 MiB to a guest server that reads
 * nothing for 3 s: more than agentd 0.7.2's initial input window (32 MiB,
 * 256 data frames) piles up, so the engine must hold frames until
 * core.workload.transport.credit grants them, or agentd exits
 * (protocol-gen9.md G6).  Then a reconnecting client must get slot 0
 * again: with 0.7.2 only after the agent acknowledged the departed
 * client's lease (G7.1).  The agentd cases are skipped, saying why, where
 * the peer cannot be fetched or run; the sandwire-agent case needs no
 * download and always runs.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/daemon_harness.h"

#define PEERS SW_SOURCE_DIR "/../shared/peers/agentd"
#define PORT_BYTES (48ull << 20) /* over the 32 MiB initial data window of agentd 0.7.2 */

/* Fetch and build agentd <version>; returns the wrapper script path or NULL (why in <why>). */
static const char *peer_prepare(
	const char *version, char *script, size_t cap, char *why, size_t whycap)
{
	char cmd[1024];
	FILE *f;

	if (geteuid() != 0) {
		snprintf(why, whycap, "agentd's launcher needs root (namespaces, mounts)");
		return NULL;
	}
	if (access(PEERS "/build.sh", R_OK) != 0) {
		snprintf(why, whycap, "%s/build.sh is not here", PEERS);
		return NULL;
	}
	snprintf(cmd, sizeof(cmd),
		"AGENTD_VERSION=%s SW_AGENTD_CACHE=/tmp/sw-agentd-%s sh %s/build.sh "
		">/tmp/sw-agentd-%s.log 2>&1",
		version, version, PEERS, version);
	if (system(cmd) != 0) {
		snprintf(why, whycap, "fetching agentd %s failed (see /tmp/sw-agentd-%s.log)",
			version, version);
		return NULL;
	}
	snprintf(script, cap, "/tmp/sw-agentd-%s/agent-for-sandwired.sh", version);
	f = fopen(script, "w");
	cr_assert_not_null(f);
	fprintf(f,
		"#!/bin/sh\nexport AGENTD_VERSION=%s SW_AGENTD_CACHE=/tmp/sw-agentd-%s\n"
		"exec %s/agentd-fd3.sh \"$@\"\n",
		version, version, PEERS);
	fclose(f);
	chmod(script, 0755);
	return script;
}

/*
 * The guest-side server: accepts one connection, does not read it for
 * 3 s (so agentd's queue toward it fills and only its input credit stops
 * the host), then reads to EOF checking the bytes.
 */
struct slow_sink {
	int lfd;
	uint16_t port;
	pthread_t thr;
	uint64_t got;
	bool bad;
};

static void *slow_sink_run(void *arg)
{
	struct slow_sink *k = arg;
	uint8_t *buf = malloc(1u << 20), *want = malloc(1u << 20);
	int fd = accept(k->lfd, NULL, NULL);
	ssize_t n;

	sleep(3);
	while (fd >= 0 && buf && want && (n = read(fd, buf, 1u << 20)) > 0) {
		dh_pattern(want, (size_t)n, 11, k->got);
		k->bad |= memcmp(buf, want, (size_t)n) != 0;
		k->got += (uint64_t)n;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	free(want);
	return NULL;
}

static void slow_sink_start(struct slow_sink *k)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);

	k->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(k->lfd >= 0 && bind(k->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  listen(k->lfd, 4) == 0 && getsockname(k->lfd, (struct sockaddr *)&a, &sl) == 0);
	k->port = ntohs(a.sin_port);
	k->got = 0;
	k->bad = false;
	cr_assert_eq(pthread_create(&k->thr, NULL, slow_sink_run, k), 0);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		cr_assert(
			w > 0 || errno == EINTR, "send to the published port: %s", strerror(errno));
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
}

/* The agent behind the daemon, and what its core.ready must say. */
struct peer {
	const char *label;   /* for messages */
	const char *agent;   /* the --agent program */
	const char *version; /* agent_version: exactly, or its prefix when <version_prefix> */
	bool version_prefix;
	unsigned generation;
};

/* The scenario, the same for every agent: exec, the published-port transfer, a reconnect. */
static void run_scenario(const struct peer *pr)
{
	char tail[2000];
	const char *echo[] = {"/bin/echo", "hello through the relay", NULL};
	const char *extra[] = {"--agent", pr->agent, "--boot-timeout", "30000", NULL};
	struct engine_port p[2] = {{.host_ip = "127.0.0.1"}, {.host_ip = "127.0.0.1"}};
	struct engine_shard_stats st[DH_SHARDS_MAX];
	struct engine_info in;
	struct agent_client ac;
	struct slow_sink sink;
	struct dh_tcpsrv src;
	struct dh_exec x;
	struct timeval tv = {.tv_sec = 30};
	uint32_t lo, hi;
	uint8_t *buf;
	uint64_t sent = 0;
	struct dh d;
	int fd;

	slow_sink_start(&sink);
	dh_tcpsrv_start(&src, DH_SOURCE, 12, PORT_BYTES);
	p[0].guest_port = sink.port;
	p[1].guest_port = src.port;
	dh_start(&d, 2, extra);
	dh_create(&d, "peer", p, 2, &in);
	if (pr->version_prefix)
		cr_assert(strncmp(in.agent_version, pr->version, strlen(pr->version)) == 0,
			"%s: ready says %s", pr->label, in.agent_version);
	else
		cr_assert_str_eq(in.agent_version, pr->version, "ready says %s", in.agent_version);
	cr_assert_eq(in.generation, pr->generation, "%s: generation %u", pr->label, in.generation);

	dh_attach(&d, "peer", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, echo, &x);
	cr_assert(x.exited && x.code == 0, "echo through %s: %s; log:\n%s", pr->label, x.text,
		dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert_str_eq(x.out, "hello through the relay\n");
	dh_exec_free(&x);

	buf = malloc(1u << 20);
	cr_assert_not_null(buf);
	fd = dh_tcp_connect(in.ports[0].port.host_port, false);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (; sent < PORT_BYTES; sent += 1u << 20) {
		dh_pattern(buf, 1u << 20, 11, sent);
		send_all(fd, buf, 1u << 20);
	}
	shutdown(fd, SHUT_WR);
	pthread_join(sink.thr, NULL);
	close(sink.lfd);
	cr_assert_eq(sink.got, PORT_BYTES, "%s: the guest side got %lu of %llu bytes; log:\n%s",
		pr->label, (unsigned long)sink.got, PORT_BYTES,
		dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert(!sink.bad, "the guest side received different bytes");
	close(fd);

	/* Guest -> host through the second port: every byte, in order. */
	fd = dh_tcp_connect(in.ports[1].port.host_port, false);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (sent = 0;;) {
		ssize_t r = read(fd, buf, 1u << 20);

		cr_assert_geq(r, 0, "%s: guest->host read failed after %lu bytes; log:\n%s", pr->label,
			(unsigned long)sent, dh_log_tail(&d, tail, sizeof(tail)));
		if (r == 0)
			break;
		cr_assert(dh_pattern_check(buf, (size_t)r, src.seed, sent),
			"%s: guest->host bytes differ at %lu", pr->label, (unsigned long)sent);
		sent += (uint64_t)r;
	}
	cr_assert_eq(sent, PORT_BYTES, "%s: guest->host got %lu bytes", pr->label,
		(unsigned long)sent);
	close(fd);
	free(buf);
	/* Both streams moved as raw bulk records with a gen-9 agent, as tcp.data with gen 7. */
	dh_stats(&d, st);
	cr_assert_eq(dh_stats_sum(st, 2, offsetof(struct engine_shard_stats, bulk_streams)),
		pr->generation >= 8 ? 2u : 0u, "%s: bulk streams", pr->label);

	/* The agent is still there: a second command runs. */
	dh_exec_run(&ac, lo + 1, echo, &x);
	cr_assert(x.exited && x.code == 0, "%s gone after the transfer; log:\n%s", pr->label,
		dh_log_tail(&d, tail, sizeof(tail)));
	dh_exec_free(&x);
	agent_client_close(&ac, 0);

	/*
	 * The slot is reused once the agent is done with the departed client: at
	 * once for 0.6.18 and sandwire-agent; for 0.7.2 after its MSBL
	 * acknowledgement of the disconnect (relay leases, G7.1), which the
	 * engine waits for.
	 */
	dh_sleep_ms(500);
	dh_attach(&d, "peer", &ac, &lo, &hi);
	cr_assert_eq(lo, 1u, "%s: a new client got ids from %u, not slot 0's; log:\n%s", pr->label,
		lo, dh_log_tail(&d, tail, sizeof(tail)));
	dh_exec_run(&ac, lo, echo, &x);
	cr_assert(x.exited && x.code == 0, "%s: exec after a reconnect", pr->label);
	dh_exec_free(&x);
	agent_client_close(&ac, 0);
	cr_assert(!dh_log_contains(&d, "unexpected lease record"), "a lease record was refused");
	dh_stop(&d);
	dh_tcpsrv_stop(&src);
}

/* The scenario against agentd <version>; skipped, saying why, when it cannot be had. */
static void run_peer(const char *version, unsigned generation)
{
	char script[256], why[256], label[64];
	const char *agent = peer_prepare(version, script, sizeof(script), why, sizeof(why));
	struct peer pr = {
		.label = label, .agent = agent, .version = version, .generation = generation};

	if (!agent)
		cr_skip_test("agentd %s: %s", version, why);
	snprintf(label, sizeof(label), "agentd %s", version);
	run_scenario(&pr);
}

Test(interop, agentd_0_6_18_generation_7, .timeout = 300)
{
	run_peer("0.6.18", 7);
}

Test(interop, agentd_0_7_2_generation_9_input_window, .timeout = 300)
{
	run_peer("0.7.2", 9);
}

Test(interop, sandwire_agent_same_scenario_as_agentd, .timeout = 300)
{
	const struct peer pr = {.label = "sandwire-agent",
		.agent = SW_AGENT_BIN,
		.version = "sandwire/",
		.version_prefix = true,
		.generation = 9};

	run_scenario(&pr);
}
