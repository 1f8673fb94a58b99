/*
 * tests/engine/test_interop.c - sandwired hosting microsandbox's real
 * agentd (../shared/peers/agentd, fetched from npm by its build.sh) in
 * place of sandwire-agent: exec through an attached client, and a published
 * port carrying 48 MiB to a guest server that reads nothing for 3 s: more
 * than agentd 0.7.2's initial input window (32 MiB, 256 data frames) piles
 * up, so the engine must hold frames until core.workload.transport.credit
 * grants them, or agentd exits (protocol-gen9.md G6).  Then a reconnecting
 * client must get slot 0 again: with 0.7.2 only after the agent acknowledged
 * the departed client's lease (G7.1).  Skipped, saying why, where
 * the peer cannot be fetched or run.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
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
static const char *peer_prepare(const char *version, char *script, size_t cap, char *why,
	size_t whycap)
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
		"AGENTD_VERSION=%s SW_AGENTD_CACHE=/tmp/sw-agentd-%s sh %s/build.sh >/tmp/sw-agentd-%s.log "
		"2>&1",
		version, version, PEERS, version);
	if (system(cmd) != 0) {
		snprintf(why, whycap, "fetching agentd %s failed (see /tmp/sw-agentd-%s.log)", version,
			version);
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

		cr_assert(w > 0 || errno == EINTR, "send to the published port: %s", strerror(errno));
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
}

static void run_peer(const char *version, unsigned generation)
{
	char script[256], why[256], tail[2000];
	const char *agent = peer_prepare(version, script, sizeof(script), why, sizeof(why));
	const char *echo[] = {"/bin/echo", "hello from agentd", NULL};
	struct engine_port p = {.host_ip = "127.0.0.1"};
	struct engine_info in;
	struct agent_client ac;
	struct slow_sink sink;
	struct dh_exec x;
	struct timeval tv = {.tv_sec = 30};
	uint32_t lo, hi;
	uint8_t *buf;
	uint64_t sent = 0;
	struct dh d;
	int fd;

	if (!agent)
		cr_skip_test("agentd %s: %s", version, why);
	slow_sink_start(&sink);
	p.guest_port = sink.port;
	{
		const char *extra[] = {"--agent", agent, "--boot-timeout", "30000", NULL};

		dh_start(&d, 2, extra);
	}
	dh_create(&d, "peer", &p, 1, &in);
	cr_assert_str_eq(in.agent_version, version, "ready says %s", in.agent_version);
	cr_assert_eq(in.generation, generation);

	dh_attach(&d, "peer", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, echo, &x);
	cr_assert(x.exited && x.code == 0, "echo through agentd %s: %s; log:\n%s", version, x.text,
		dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert_str_eq(x.out, "hello from agentd\n");
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
	cr_assert_eq(sink.got, PORT_BYTES, "agentd %s: the guest side got %lu of %llu bytes; log:\n%s",
		version, (unsigned long)sink.got, PORT_BYTES, dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert(!sink.bad, "the guest side received different bytes");
	close(fd);
	free(buf);

	/* agentd is still there: a second command runs. */
	dh_exec_run(&ac, lo + 1, echo, &x);
	cr_assert(x.exited && x.code == 0, "agentd %s gone after the transfer; log:\n%s", version,
		dh_log_tail(&d, tail, sizeof(tail)));
	dh_exec_free(&x);
	agent_client_close(&ac, 0);

	/*
	 * The slot is reused once the agent is done with the departed client: at
	 * once for 0.6.18; for 0.7.2 after its MSBL acknowledgement of the
	 * disconnect (relay leases, G7.1), which the engine waits for.
	 */
	dh_sleep_ms(500);
	dh_attach(&d, "peer", &ac, &lo, &hi);
	cr_assert_eq(lo, 1u, "agentd %s: a new client got ids from %u, not slot 0's; log:\n%s", version,
		lo, dh_log_tail(&d, tail, sizeof(tail)));
	dh_exec_run(&ac, lo, echo, &x);
	cr_assert(x.exited && x.code == 0, "agentd %s: exec after a reconnect", version);
	dh_exec_free(&x);
	agent_client_close(&ac, 0);
	cr_assert(!dh_log_contains(&d, "unexpected lease record"), "a lease record was refused");
	dh_stop(&d);
}

Test(interop, agentd_0_6_18_generation_7, .timeout = 300)
{
	run_peer("0.6.18", 7);
}

Test(interop, agentd_0_7_2_generation_9_input_window, .timeout = 300)
{
	run_peer("0.7.2", 9);
}
