/*
 * perf/demo.c - sw-demo, what `make run` shows: a real sandwired (its own
 * socket in a temp directory), one sandbox on the process backend with a
 * published port, then through the daemon: one exec session, one TCP
 * stream the agent dials inside the sandbox, and one connection to the
 * published port; each checked and printed.
 *
 * Usage: sw-demo [--shards N]
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

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "engine/swclient.h"
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

static int run_exec(struct agent_client *c, uint32_t id)
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
	if ((rc = (int)agent_client_send(c, id, &m)) < 0)
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

static int run_tcp(struct agent_client *c, uint32_t id, int lfd, uint16_t port)
{
	static const char hello[] = "ping through the sandbox";
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	char echoed[64] = "";
	size_t got = 0;
	pthread_t t;
	int rc;

	pthread_create(&t, NULL, echo_once, &lfd);
	printf("tcp: the agent dials 127.0.0.1:%u (an echo server) inside the sandbox\n", port);
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	if ((rc = (int)agent_client_send(c, id, &m)) < 0)
		return fail("send tcp.connect", rc);
	while (got < sizeof(hello) - 1) {
		if ((rc = agent_client_recv(c, 10000)) <= 0)
			return fail("tcp", rc == 0 ? -ETIMEDOUT : rc);
		if (c->msg.type == PROTO_T_TCP_CONNECTED) {
			printf("  connected; sending \"%s\"\n", hello);
			m = (struct proto_msg){.type = PROTO_T_TCP_DATA};
			m.u.data = (struct proto_data){(const uint8_t *)hello, sizeof(hello) - 1};
			agent_client_send(c, id, &m);
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
	agent_client_send(c, id, &m); /* the echo server sees EOF and closes */
	pthread_join(t, NULL);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	agent_client_send(c, id, &m);
	return strcmp(echoed, hello) == 0 ? 0 : fail("tcp echo", -EPROTO);
}

/* A connection to the published port: the daemon relays it to the echo server. */
static int run_port(int lfd, uint16_t host_port)
{
	static const char hello[] = "hello through a published port";
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(host_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char echoed[64] = "";
	size_t got = 0;
	pthread_t t;
	ssize_t n;
	int fd;

	pthread_create(&t, NULL, echo_once, &lfd);
	printf("port: 127.0.0.1:%u on the host -> port published into the sandbox\n", host_port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail("connect to the published port", -errno);
	if (send(fd, hello, sizeof(hello) - 1, MSG_NOSIGNAL) < 0)
		return fail("send", -errno);
	shutdown(fd, SHUT_WR);
	while (got < sizeof(echoed) - 1 && (n = recv(fd, echoed + got, sizeof(echoed) - 1 - got, 0)) > 0)
		got += (size_t)n;
	close(fd);
	pthread_join(t, NULL);
	printf("  echoed back: \"%s\"\n", echoed);
	return strcmp(echoed, hello) == 0 ? 0 : fail("port echo", -EPROTO);
}

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
		getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Start sandwired on <sock>; returns its pid once the socket answers. */
static pid_t start_daemon(const char *sock, const char *shards)
{
	pid_t pid = fork();

	if (pid == 0) {
		execl(SW_SANDWIRED_BIN, "sandwired", "--shards", shards, "--socket", sock,
			"--no-agent-sock", "-q", (char *)NULL);
		_exit(127);
	}
	return pid > 0 && swc_wait_ready(sock, 5000) == 0 ? pid : -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"shards", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *shards = "2";
	char dir[] = "/tmp/sw-demo.XXXXXX", sock[128], err[512];
	struct engine_create cr = {0};
	struct swc swc;
	struct swc_result res;
	struct agent_client c;
	uint8_t buf[2048], *ready = NULL;
	uint32_t lo, hi, id;
	uint16_t tcp_port, pub_port = 0;
	int opt, rc, st, lfd_tcp, lfd_pub;
	long n;
	pid_t pid;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 's') {
			shards = optarg;
			continue;
		}
		printf("usage: sw-demo [--shards N]\n"
		       "Starts sandwired, creates a process sandbox with a published port, and runs one\n"
		       "command, one TCP stream and one published-port connection through it.\n");
		return opt == 'h' ? 0 : 2;
	}
	signal(SIGPIPE, SIG_IGN);
	lfd_tcp = listen_loopback(&tcp_port);
	lfd_pub = listen_loopback(&pub_port);
	if (lfd_tcp < 0 || lfd_pub < 0 || !mkdtemp(dir))
		return fail("set up", -errno);
	snprintf(sock, sizeof(sock), "%s/sandwired.sock", dir);
	pid = start_daemon(sock, shards);
	if (pid < 0)
		return fail("start sandwired (" SW_SANDWIRED_BIN ")", -ECONNREFUSED);
	printf("daemon: sandwired --shards %s --socket %s (pid %d)\n", shards, sock, (int)pid);
	cr.name = (struct proto_str){"demo", 4};
	snprintf(cr.ports[0].host_ip, sizeof(cr.ports[0].host_ip), "127.0.0.1");
	cr.ports[0].guest_port = pub_port;
	cr.nports = 1;
	rc = swc_connect(&swc, sock, err, sizeof(err));
	id = swc.next_id++;
	if (rc == 0 && (n = engine_req_create(buf, sizeof(buf), id, &cr)) > 0)
		rc = swc_call(&swc, buf, (size_t)n, id, &res, err, sizeof(err));
	if (rc < 0 || !res.ok) {
		fprintf(stderr, "sw-demo: create: %s\n", err);
		goto out;
	}
	{
		struct engine_info in;
		struct cbr r;

		cbr_init(&r, res.data, res.data_len, NULL);
		if (engine_decode_info(&r, &in) == 0 && in.nports == 1)
			pub_port = in.ports[0].port.host_port;
		printf("sandbox: %s, %s backend, agent pid %lld, home shard %u, agent %s\n", in.name,
			in.backend, (long long)in.pid, in.shard, in.agent_version);
	}
	rc = swc_attach(&swc, "demo", &lo, &hi, &ready, (size_t *)&n, err, sizeof(err));
	free(ready);
	if (rc < 0) {
		fprintf(stderr, "sw-demo: attach: %s\n", err);
		goto out;
	}
	printf("attached: ids %u..%u of the sandbox's console are this client's\n\n", lo, hi - 1);
	agent_client_attach(&c, swc.fd, -1);
	swc.fd = -1;
	rc = run_exec(&c, lo);
	if (rc == 0) {
		printf("\n");
		rc = run_tcp(&c, lo + 1, lfd_tcp, tcp_port);
	}
	if (rc == 0) {
		printf("\n");
		rc = run_port(lfd_pub, pub_port);
	}
	agent_client_close(&c, 0);
out:
	swc_close(&swc);
	fflush(stdout);
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	rmdir(dir);
	if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
		return fail("sandwired exit", -EPROTO);
	printf(rc == 0 ? "\nok: exec, a TCP stream and a published port went through sandwired\n"
		       : "\nfailed\n");
	return rc ? 1 : 0;
}
