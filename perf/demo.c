/*
 * perf/demo.c - sw-demo, what `make run` shows until sandwired lands:
 * a process sandbox (sandwire-agent on a socketpair, as the process backend
 * will start it), the protocol's boot sequence, one exec session and one
 * TCP stream through the agent, each checked and printed.
 *
 * Usage: sw-demo [--agent PATH]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "perf/client/agent_client.h"

static int fail(const char *what, int rc)
{
	fprintf(stderr, "sw-demo: %s: %s\n", what, rc <= -1000 ? proto_strerror(rc) : strerror(-rc));
	return 1;
}

/* One-connection echo server on loopback: the TCP stream's far end. */
static void *echo_once(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char buf[4096];
	ssize_t n;

	while (fd >= 0 && (n = recv(fd, buf, sizeof(buf), 0)) > 0)
		send(fd, buf, (size_t)n, MSG_NOSIGNAL);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int run_exec(struct agent_client *c)
{
	static const char script[] = "echo \"hello from a sandwire sandbox: pid $$, $(uname -sr)\"; "
				     "echo 'and this goes to stderr' >&2; exit 7";
	struct proto_str args[] = {{"-c", 2}, {script, sizeof(script) - 1}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	int rc;

	m.u.exec_request.cmd = (struct proto_str){"sh", 2};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	printf("exec: sh -c '%s'\n", script);
	if ((rc = (int)agent_client_send(c, 1, &m)) < 0)
		return fail("send exec.request", rc);
	for (;;) {
		if ((rc = agent_client_recv(c, 10000)) <= 0)
			return fail("exec", rc == 0 ? -ETIMEDOUT : rc);
		switch (c->msg.type) {
		case PROTO_T_EXEC_STARTED:
			printf("  started, guest pid %u\n", c->msg.u.exec_started.pid);
			break;
		case PROTO_T_EXEC_STDOUT:
		case PROTO_T_EXEC_STDERR:
			printf("  %s: %.*s", c->msg.type == PROTO_T_EXEC_STDOUT ? "stdout" : "stderr",
				(int)c->msg.u.data.len, (const char *)c->msg.u.data.ptr);
			break;
		case PROTO_T_EXEC_EXITED:
			printf("  exited with code %d\n", c->msg.u.exec_exited.code);
			return c->msg.u.exec_exited.code == 7 ? 0 : fail("exec", -EPROTO);
		default:
			printf("  unexpected %s\n", proto_type_name(c->msg.type));
			return 1;
		}
	}
}

static int run_tcp(struct agent_client *c)
{
	static const char hello[] = "ping through the sandbox";
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	char echoed[64] = "";
	size_t got = 0;
	pthread_t t;
	int lfd, rc;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
		getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
		return fail("loopback listener", -errno);
	pthread_create(&t, NULL, echo_once, &lfd);
	printf("tcp: the agent dials 127.0.0.1:%u (an echo server) for the host\n",
		ntohs(sa.sin_port));
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = ntohs(sa.sin_port);
	if ((rc = (int)agent_client_send(c, 2, &m)) < 0)
		return fail("send tcp.connect", rc);
	while (got < sizeof(hello) - 1) {
		if ((rc = agent_client_recv(c, 10000)) <= 0)
			return fail("tcp", rc == 0 ? -ETIMEDOUT : rc);
		if (c->msg.type == PROTO_T_TCP_CONNECTED) {
			printf("  connected; sending \"%s\"\n", hello);
			m = (struct proto_msg){.type = PROTO_T_TCP_DATA};
			m.u.data = (struct proto_data){(const uint8_t *)hello, sizeof(hello) - 1};
			agent_client_send(c, 2, &m);
		} else if (c->msg.type == PROTO_T_TCP_DATA && got + c->msg.u.data.len < sizeof(echoed)) {
			memcpy(echoed + got, c->msg.u.data.ptr, c->msg.u.data.len);
			got += c->msg.u.data.len;
		} else {
			printf("  unexpected %s\n", proto_type_name(c->msg.type));
			return 1;
		}
	}
	printf("  echoed back: \"%s\"\n", echoed);
	m = (struct proto_msg){.type = PROTO_T_TCP_EOF};
	agent_client_send(c, 2, &m); /* the echo server sees EOF and closes */
	pthread_join(t, NULL);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	agent_client_send(c, 2, &m);
	close(lfd);
	return strcmp(echoed, hello) == 0 ? 0 : fail("tcp echo", -EPROTO);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"agent", required_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *agent = SW_AGENT_BIN;
	struct agent_client c;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'a') {
			agent = optarg;
			continue;
		}
		printf("usage: sw-demo [--agent PATH]\n"
		       "Starts a process sandbox (the agent on a socketpair), boots it, runs one\n"
		       "command and one TCP stream through it.\n");
		return opt == 'h' ? 0 : 2;
	}
	const char *args[] = {agent, "--fd", "3", "--heartbeat-dir", "/nonexistent", NULL};

	printf("sandbox: %s --fd 3\n", agent);
	if ((rc = agent_client_spawn(&c, args)) < 0)
		return fail("start the agent", rc);
	if ((rc = agent_client_boot(&c, 10000)) < 0)
		return fail("boot (bootstrap -> init.resolved -> init.ack -> ready)", rc);
	printf("ready: agent %.*s, generation %u, init took %.3f ms\n\n",
		(int)c.msg.u.ready.agent_version.len, c.msg.u.ready.agent_version.ptr, c.msg.v,
		(double)c.msg.u.ready.init_time_ns / 1e6);
	rc = run_exec(&c);
	if (rc == 0) {
		printf("\n");
		rc = run_tcp(&c);
	}
	if (agent_client_close(&c, 5000) != 0 && rc == 0)
		return fail("agent exit", -EPROTO);
	printf(rc == 0 ? "\nok: exec and a TCP stream went through the sandbox\n" : "\nfailed\n");
	return rc;
}
