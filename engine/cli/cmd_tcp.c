/*
 * engine/cli/cmd_tcp.c - `sandwire tcp NAME HOST:PORT`: stdin and stdout
 * joined to a TCP stream the agent opens inside the sandbox (spec 4.6).
 *
 *   tcp.connect {host, port} -> tcp.connected | tcp.failed
 *   stdin -> tcp.data; stdin EOF -> tcp.eof (the agent shuts down its write side)
 *   tcp.data -> stdout; tcp.eof -> stdout closed (the reader sees EOF)
 *   both directions done -> tcp.close, exit 0
 *
 * Nothing is read from stdin before tcp.connected, so the agent never has
 * to hold more than it was designed to queue for a stream still connecting.
 * This makes it a drop-in ssh ProxyCommand.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

struct tcp {
	struct wire w;
	const char *sandbox, *target;
	uint32_t id;
	bool connected;
	bool in_done;  /* stdin ended: tcp.eof sent */
	bool out_done; /* the destination finished sending (or our stdout left) */
	int result;    /* -1 while running */
};

static int tcp_send_empty(struct tcp *t, enum proto_type type)
{
	struct proto_msg m = {.type = type};

	return wire_send(&t->w, t->id, &m);
}

static int tcp_stdin(struct tcp *t)
{
	uint8_t buf[CLI_STDIN_CHUNK];
	ssize_t n = read(0, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		t->in_done = true;
		return tcp_send_empty(t, PROTO_T_TCP_EOF);
	}
	return wire_send_data(&t->w, PROTO_T_TCP_DATA, t->id, buf, (size_t)n);
}

static void tcp_frame(struct tcp *t)
{
	const struct proto_msg *m = &t->w.msg;

	if (t->w.frame.id != t->id)
		return;
	switch (m->type) {
	case PROTO_T_TCP_CONNECTED:
		t->connected = true;
		break;
	case PROTO_T_TCP_DATA:
		if (!t->out_done && cli_write_all(1, m->u.data.ptr, m->u.data.len) < 0)
			t->out_done = t->in_done = true; /* our reader left: nothing more to do */
		break;
	case PROTO_T_TCP_EOF:
		t->out_done = true;
		close(1);
		break;
	case PROTO_T_TCP_FAILED:
		t->result = cli_fail("tcp %s: %s%.*s", t->sandbox,
			t->connected ? "" : "cannot connect from inside the sandbox: ",
			(int)m->u.tcp_failed.error.len, m->u.tcp_failed.error.ptr);
		break;
	case PROTO_T_TCP_CLOSED:
		t->result = 0;
		break;
	case PROTO_T_ERROR:
		t->result = cli_fail("tcp %s: %.*s", t->sandbox, (int)m->u.error.message.len,
			m->u.error.message.ptr);
		break;
	default:
		break;
	}
}

static int tcp_run(struct tcp *t)
{
	struct pollfd p[2];
	int rc, n;

	while (t->result < 0) {
		if (t->in_done && t->out_done) {
			if (tcp_send_empty(t, PROTO_T_TCP_CLOSE) == 0)
				wire_drain(&t->w, 0);
			return 0;
		}
		p[0] = (struct pollfd){.fd = t->w.fd, .events = wire_events(&t->w)};
		p[1] = (struct pollfd){.fd = -1};
		if (t->connected && !t->in_done && wire_pending(&t->w) < CLI_OUT_HIGH)
			p[1] = (struct pollfd){.fd = 0, .events = POLLIN};
		n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR)
			return cli_fail("poll: %s", strerror(errno));
		rc = 0;
		if (n > 0 && p[1].revents)
			rc = tcp_stdin(t);
		if (rc == 0 && n > 0)
			rc = wire_io(&t->w, p[0].revents);
		while (rc == 0 && t->result < 0 && (n = wire_next(&t->w)) != 0) {
			if (n == -EPROTO)
				break;
			if (n > 0)
				tcp_frame(t);
		}
		if (t->result < 0 && (rc < 0 || t->w.eof))
			return cli_fail("tcp %s: the daemon closed the connection (did the sandbox "
					"stop? see `sandwire inspect %s`)",
				t->sandbox, t->sandbox);
	}
	return t->result;
}

int cmd_tcp(struct cli *cli, int argc, char **argv)
{
	struct tcp t = {.result = -1};
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	char host[256];
	uint16_t port;
	int rc;

	if ((rc = cli_plain_opts(cli, argc, argv, "tcp", NULL)) >= 0)
		return rc;
	if (argc - optind != 2)
		return cli_usage("tcp", "sandwire tcp NAME HOST:PORT");
	t.sandbox = argv[optind];
	t.target = argv[optind + 1];
	if (cli_parse_hostport(t.target, host, sizeof(host), &port) < 0)
		return cli_usage("tcp", "\"%s\" is not HOST:PORT (IPv6: [::1]:22)", t.target);
	signal(SIGPIPE, SIG_IGN);
	if ((rc = cli_attach(cli, NULL, t.sandbox, &t.w)))
		return rc;
	t.id = wire_new_id(&t.w);
	m.u.tcp_connect.host = (struct proto_str){host, strlen(host)};
	m.u.tcp_connect.port = port;
	rc = wire_send(&t.w, t.id, &m);
	rc = rc < 0 ? cli_fail("tcp: cannot encode the request: %s", proto_strerror(rc))
		    : tcp_run(&t);
	wire_destroy(&t.w);
	return rc;
}
