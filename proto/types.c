/*
 * proto/types.c - the table of message types (generations 7 to 9, then
 * sandwire's extension types) and the wire-name lookup.
 */
#include <string.h>

#include "proto/frame.h"
#include "proto/types.h"

#define T_ PROTO_FLAG_TERMINAL
#define S_ PROTO_FLAG_SESSION_START
#define X_ PROTO_FLAG_SHUTDOWN
#define H2G PROTO_DIR_H2G
#define G2H PROTO_DIR_G2H
#define BOTH PROTO_DIR_BOTH
#define IN_DATA PROTO_TA_INPUT_DATA
#define TYPE(e, n, g, f, d, a) [e] = {n, sizeof(n) - 1, g, f, d, a}

const struct proto_type_info proto_type_table[PROTO_T__END] = {
	TYPE(PROTO_T_BOOTSTRAP, "core.bootstrap", 7, 0, H2G, PROTO_TA_CONTROL),
	TYPE(PROTO_T_INIT_RESOLVED, "core.init.resolved", 1, 0, G2H, PROTO_TA_CONTROL),
	TYPE(PROTO_T_INIT_ACK, "core.init.ack", 1, 0, H2G, PROTO_TA_CONTROL | PROTO_TA_EMPTY),
	TYPE(PROTO_T_READY, "core.ready", 1, 0, G2H, PROTO_TA_CONTROL),
	TYPE(PROTO_T_SHUTDOWN, "core.shutdown", 1, X_, H2G, PROTO_TA_CONTROL),
	TYPE(PROTO_T_RELAY_CLIENT_DISCONNECTED, "core.relay.client.disconnected", 1, 0, H2G,
		PROTO_TA_CONTROL),
	TYPE(PROTO_T_CLOCK_SYNC, "core.clock.sync", 1, 0, H2G, PROTO_TA_CONTROL),
	TYPE(PROTO_T_PING, "core.ping", 6, 0, H2G, PROTO_TA_EMPTY),
	TYPE(PROTO_T_PONG, "core.pong", 6, T_, G2H, PROTO_TA_EMPTY),
	TYPE(PROTO_T_TOUCH, "core.touch", 6, 0, H2G, PROTO_TA_EMPTY),
	TYPE(PROTO_T_TOUCHED, "core.touched", 6, T_, G2H, 0),
	TYPE(PROTO_T_ERROR, "core.error", 5, T_, G2H, 0),
	TYPE(PROTO_T_EXEC_REQUEST, "core.exec.request", 1, S_, H2G, 0),
	TYPE(PROTO_T_EXEC_STARTED, "core.exec.started", 1, 0, G2H, 0),
	TYPE(PROTO_T_EXEC_STDIN, "core.exec.stdin", 1, 0, H2G, PROTO_TA_DATA | IN_DATA),
	TYPE(PROTO_T_EXEC_STDIN_ERROR, "core.exec.stdin.error", 1, 0, G2H, 0),
	TYPE(PROTO_T_EXEC_STDOUT, "core.exec.stdout", 1, 0, G2H, PROTO_TA_DATA),
	TYPE(PROTO_T_EXEC_STDERR, "core.exec.stderr", 1, 0, G2H, PROTO_TA_DATA),
	TYPE(PROTO_T_EXEC_EXITED, "core.exec.exited", 1, T_, G2H, 0),
	TYPE(PROTO_T_EXEC_FAILED, "core.exec.failed", 1, T_, G2H, 0),
	TYPE(PROTO_T_EXEC_RESIZE, "core.exec.resize", 1, 0, H2G, 0),
	TYPE(PROTO_T_EXEC_SIGNAL, "core.exec.signal", 1, 0, H2G, 0),
	TYPE(PROTO_T_FS_REQUEST, "core.fs.request", 2, S_, H2G, 0),
	TYPE(PROTO_T_FS_RESPONSE, "core.fs.response", 2, T_, G2H, 0),
	TYPE(PROTO_T_FS_DATA, "core.fs.data", 2, 0, BOTH, PROTO_TA_DATA | IN_DATA),
	TYPE(PROTO_T_TCP_CONNECT, "core.tcp.connect", 4, S_, H2G, 0),
	TYPE(PROTO_T_TCP_CONNECTED, "core.tcp.connected", 4, 0, G2H, PROTO_TA_EMPTY),
	TYPE(PROTO_T_TCP_DATA, "core.tcp.data", 4, 0, BOTH, PROTO_TA_DATA | IN_DATA),
	TYPE(PROTO_T_TCP_EOF, "core.tcp.eof", 4, 0, BOTH, PROTO_TA_EMPTY | IN_DATA),
	TYPE(PROTO_T_TCP_CLOSE, "core.tcp.close", 4, 0, H2G, PROTO_TA_EMPTY),
	TYPE(PROTO_T_TCP_CLOSED, "core.tcp.closed", 4, T_, G2H, PROTO_TA_EMPTY),
	TYPE(PROTO_T_TCP_FAILED, "core.tcp.failed", 4, T_, G2H, 0),
	TYPE(PROTO_T_BULK_ACCEPTED, "core.bulk.accepted", 8, 0, G2H, 0),
	TYPE(PROTO_T_BULK_CREDIT, "core.bulk.credit", 8, 0, BOTH, 0),
	TYPE(PROTO_T_BULK_FINISH, "core.bulk.finish", 8, 0, BOTH, 0),
	TYPE(PROTO_T_BULK_CANCEL, "core.bulk.cancel", 8, 0, BOTH, 0),
	TYPE(PROTO_T_WORKLOAD_FREEZE, "core.workload.freeze", 9, 0, H2G, PROTO_TA_CONTROL),
	TYPE(PROTO_T_WORKLOAD_FROZEN, "core.workload.frozen", 9, 0, G2H, PROTO_TA_CONTROL),
	TYPE(PROTO_T_WORKLOAD_THAW, "core.workload.thaw", 9, 0, H2G, PROTO_TA_CONTROL),
	TYPE(PROTO_T_WORKLOAD_THAWED, "core.workload.thawed", 9, 0, G2H, PROTO_TA_CONTROL),
	/* sent on id 0xFFFFFFFF (PROTO_WORKLOAD_CREDIT_ID), not on the control id */
	TYPE(PROTO_T_WORKLOAD_TRANSPORT_CREDIT, "core.workload.transport.credit", 9, 0, G2H, 0),
	TYPE(PROTO_T_ROOT_DISK_PREPARE, "core.root_disk.prepare", 9, 0, H2G, 0),
	TYPE(PROTO_T_ROOT_DISK_GROW, "core.root_disk.grow", 9, 0, H2G, 0),
	TYPE(PROTO_T_ROOT_DISK_STATE, "core.root_disk.state", 9, 0, G2H, 0),
	/* extensions: v = 7 on the wire, gated by the peer's announcement (types.h) */
	TYPE(PROTO_T_SANDWIRE_CREDIT, "sandwire.credit", 7, 0, BOTH, 0),
};

/*
 * Candidate check: the last byte first (names of one length mostly differ
 * there), then the whole name.  <len> equals the candidate's length.
 */
#define CAND(t)                                                                                    \
	do {                                                                                       \
		if (name[len - 1] == proto_type_table[t].name[len - 1] &&                          \
			memcmp(name, proto_type_table[t].name, len) == 0)                          \
			return t;                                                                  \
	} while (0)

enum proto_type proto_type_lookup(const char *name, size_t len)
{
	switch (len) {
	case 9:
		CAND(PROTO_T_PING);
		CAND(PROTO_T_PONG);
		break;
	case 10:
		CAND(PROTO_T_TOUCH);
		CAND(PROTO_T_READY);
		CAND(PROTO_T_ERROR);
		break;
	case 12:
		CAND(PROTO_T_TOUCHED);
		CAND(PROTO_T_TCP_EOF);
		CAND(PROTO_T_FS_DATA);
		break;
	case 13:
		CAND(PROTO_T_INIT_ACK);
		CAND(PROTO_T_SHUTDOWN);
		CAND(PROTO_T_TCP_DATA);
		break;
	case 14:
		CAND(PROTO_T_BOOTSTRAP);
		CAND(PROTO_T_TCP_CLOSE);
		break;
	case 15:
		CAND(PROTO_T_EXEC_STDIN);
		CAND(PROTO_T_CLOCK_SYNC);
		CAND(PROTO_T_FS_REQUEST);
		CAND(PROTO_T_TCP_CLOSED);
		CAND(PROTO_T_TCP_FAILED);
		CAND(PROTO_T_SANDWIRE_CREDIT);
		break;
	case 16:
		CAND(PROTO_T_EXEC_STDOUT);
		CAND(PROTO_T_EXEC_STDERR);
		CAND(PROTO_T_EXEC_EXITED);
		CAND(PROTO_T_EXEC_FAILED);
		CAND(PROTO_T_EXEC_RESIZE);
		CAND(PROTO_T_EXEC_SIGNAL);
		CAND(PROTO_T_FS_RESPONSE);
		CAND(PROTO_T_TCP_CONNECT);
		CAND(PROTO_T_BULK_CREDIT);
		CAND(PROTO_T_BULK_FINISH);
		CAND(PROTO_T_BULK_CANCEL);
		break;
	case 17:
		CAND(PROTO_T_EXEC_REQUEST);
		CAND(PROTO_T_EXEC_STARTED);
		break;
	case 18:
		CAND(PROTO_T_INIT_RESOLVED);
		CAND(PROTO_T_TCP_CONNECTED);
		CAND(PROTO_T_BULK_ACCEPTED);
		CAND(PROTO_T_WORKLOAD_THAW);
		break;
	case 19:
		CAND(PROTO_T_ROOT_DISK_GROW);
		break;
	case 20:
		CAND(PROTO_T_WORKLOAD_FREEZE);
		CAND(PROTO_T_WORKLOAD_FROZEN);
		CAND(PROTO_T_WORKLOAD_THAWED);
		CAND(PROTO_T_ROOT_DISK_STATE);
		break;
	case 21:
		CAND(PROTO_T_EXEC_STDIN_ERROR);
		break;
	case 22:
		CAND(PROTO_T_ROOT_DISK_PREPARE);
		break;
	case 30:
		CAND(PROTO_T_RELAY_CLIENT_DISCONNECTED);
		CAND(PROTO_T_WORKLOAD_TRANSPORT_CREDIT);
		break;
	default:
		break;
	}
	return PROTO_T_UNKNOWN;
}
