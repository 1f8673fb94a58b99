/*
 * engine/cli/main.c - sandwire: global options, the command table with
 * every command's --help, dispatch.
 *
 *	sandwire [--socket PATH] [-v] COMMAND [OPTIONS] [ARGS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SANDWIRE_VERSION "0.1.0"

static const char help_serve[] =
	"usage: sandwire serve [--shards N] [--pin none|auto|LIST] [--socket PATH]\n"
	"                      [--metrics ADDR] [options]\n"
	"\n"
	"Run the sandwire daemon in the foreground (the same engine as `sandwired`).\n"
	"SIGTERM or SIGINT (Ctrl-C) stops it: every sandbox is shut down first.\n"
	"\n"
	"options:\n"
	"  --shards N            shard threads (default: online CPUs)\n"
	"  --pin none|auto|LIST  pin shard i to a CPU (LIST e.g. 0-3,8; default none)\n"
	"  --socket PATH         client socket (default $SANDWIRE_SOCKET, else\n"
	"                        $XDG_RUNTIME_DIR/sandwire/sandwired.sock, else\n"
	"                        /run/sandwire/sandwired.sock)\n"
	"  --metrics ADDR        serve Prometheus metrics over HTTP on ADDR ([IP:]PORT;\n"
	"                        IP defaults to 127.0.0.1), any path: GET /metrics\n"
	"  --agent PATH          agent program for sandboxes (default: sandwire-agent\n"
	"                        beside this binary)\n"
	"  --msb-home DIR        root of the microsandbox-style agent.sock layout\n"
	"  --no-agent-sock       do not publish per-sandbox agent.sock files\n"
	"  --boot-timeout MS     agent start to ready (default 10000)\n"
	"  --grace MS            SIGHUP to SIGKILL for a departed client's commands\n"
	"                        (default 2000)\n"
	"  --pool-chunks N       64 KiB buffers per shard (default 2048)\n"
	"  --ready-fd N          write one byte to descriptor N, then close it, once\n"
	"                        clients may connect (for supervisors and scripts)\n"
	"  -v, --verbose         debug logging;  -q, --quiet: warnings and errors only\n"
	"\n"
	"examples:\n"
	"  sandwire serve\n"
	"  sandwire serve --shards 4 --pin auto --metrics 127.0.0.1:9464\n"
	"  sandwire serve --socket /tmp/sw.sock &\n"
	"  SANDWIRE_SOCKET=/tmp/sw.sock sandwire ls\n";

static const char help_run[] =
	"usage: sandwire run [options] [ROOT --] CMD [ARGS...]\n"
	"\n"
	"Create a sandbox, run CMD in it with its input and output attached, and exit\n"
	"with CMD's exit code.  When no daemon answers on the socket, sandwire starts a\n"
	"private one for the duration of the command (and the sandbox goes with it).\n"
	"ROOT, the sandbox's root directory, must be followed by `--`; without it the\n"
	"sandbox sees the host's filesystem.\n"
	"\n"
	"options:\n"
	"  --name NAME               sandbox name (default: a generated run-XXXXXXXX)\n"
	"  -p, --publish [IP:]HOST:GUEST\n"
	"                            publish a TCP port (repeatable); HOST 0 picks one\n"
	"  -e, --env KEY=VALUE       environment variable for CMD (repeatable)\n"
	"  -w, --workdir DIR         working directory of CMD\n"
	"  -u, --user USER[:GROUP]   run CMD as this user\n"
	"  --rlimit NAME=SOFT[:HARD] resource limit of CMD, e.g. nofile=1024 (repeatable)\n"
	"  --timeout DUR             SIGTERM CMD after DUR (e.g. 30s, 5m), SIGKILL 2 s\n"
	"                            later; sandwire then exits with 124\n"
	"  -t, --tty                 give CMD a terminal (implies -i); Ctrl-P Ctrl-Q\n"
	"                            leaves the session\n"
	"  -i, --interactive         forward stdin to CMD (else CMD's stdin is empty)\n"
	"  --rm                      remove the sandbox afterwards (always, with a\n"
	"                            private daemon)\n"
	"  --backend NAME            sandbox backend (the daemon has \"process\")\n"
	"  --ns LIST                 the sandbox's namespaces: user,pid,mount,... or all\n"
	"  --socket PATH             the daemon's socket (also SANDWIRE_SOCKET)\n"
	"\n"
	"exit codes: CMD's own; 125 sandwire failed; 126 CMD cannot run; 127 CMD not\n"
	"found; 128+N CMD killed by signal N; 124 --timeout expired.\n"
	"\n"
	"examples:\n"
	"  sandwire run -- uname -a\n"
	"  sandwire run -it -- sh\n"
	"  sandwire run --name web -p 8080:80 -e PORT=80 -- python3 -m http.server 80\n"
	"  sandwire run --timeout 10s --rlimit nofile=256 /srv/rootfs -- /bin/sh -c date\n";

static const char help_exec[] =
	"usage: sandwire exec [options] NAME [--] CMD [ARGS...]\n"
	"\n"
	"Run CMD in the running sandbox NAME with its input and output attached; exit\n"
	"with CMD's exit code.  Without -t, SIGINT, SIGTERM, SIGQUIT and SIGHUP are\n"
	"passed on to CMD (a third Ctrl-C gives up waiting).  With -t the local\n"
	"terminal is in raw mode until CMD ends, window size changes follow, and\n"
	"Ctrl-P Ctrl-Q leaves the session.  Leaving, or losing the connection, makes\n"
	"the daemon hang up CMD (SIGHUP, then SIGKILL) as a closed terminal would: use\n"
	"-d for commands that must keep running.\n"
	"\n"
	"options:\n"
	"  -t, --tty                 give CMD a terminal (implies -i)\n"
	"  -i, --interactive         forward stdin to CMD, EOF included\n"
	"  -d, --detach              start CMD in the background and print its pid; CMD\n"
	"                            runs under `setsid nohup`, its output goes to\n"
	"                            ${TMPDIR:-/tmp}/sandwire-detached-<n>.log inside the\n"
	"                            sandbox (needs sh there)\n"
	"  -e, --env KEY=VALUE       environment variable (repeatable)\n"
	"  -w, --workdir DIR         working directory\n"
	"  -u, --user USER[:GROUP]   run as this user\n"
	"  --rlimit NAME=SOFT[:HARD] resource limit (repeatable)\n"
	"  --timeout DUR             SIGTERM CMD after DUR, SIGKILL 2 s later (exit 124)\n"
	"  --socket PATH             the daemon's socket (also SANDWIRE_SOCKET)\n"
	"\n"
	"exit codes: as for `sandwire run`.\n"
	"\n"
	"examples:\n"
	"  sandwire exec web -- ls -l /srv\n"
	"  sandwire exec -it web -- bash\n"
	"  tar c src | sandwire exec -i web -- tar x -C /srv\n"
	"  sandwire exec -d web -- python3 -m http.server 8000\n";

static const char help_create[] =
	"usage: sandwire create --name NAME [options] [ROOT]\n"
	"\n"
	"Create a sandbox and boot it; returns once its agent is ready.  ROOT is its\n"
	"root directory (default: the host's filesystem).  Prints the name.\n"
	"\n"
	"options:\n"
	"  --name NAME               sandbox name: 1-63 of A-Z a-z 0-9 _ . -\n"
	"  -p, --publish [IP:]HOST:GUEST  publish a TCP port (repeatable; IP defaults\n"
	"                            to 127.0.0.1, HOST 0 lets the kernel pick)\n"
	"  --rlimit NAME=SOFT[:HARD] resource limit of the sandbox (repeatable)\n"
	"  --backend NAME            sandbox backend (the daemon has \"process\")\n"
	"  --ns LIST                 namespaces: user,pid,mount,... or all\n"
	"  --boot-timeout DUR        how long the agent may take to be ready\n"
	"  --socket PATH             the daemon's socket (also SANDWIRE_SOCKET)\n"
	"\n"
	"examples:\n"
	"  sandwire create --name web -p 8080:80\n"
	"  sandwire create --name box --ns all /srv/rootfs\n";

static const char help_start[] =
	"usage: sandwire start NAME...\n"
	"\n"
	"Boot stopped sandboxes again; returns once their agents are ready.\n"
	"\n"
	"example:\n"
	"  sandwire start web\n";

static const char help_stop[] =
	"usage: sandwire stop NAME...\n"
	"\n"
	"Shut sandboxes down (their commands get SIGTERM, then SIGKILL).  They keep\n"
	"their names and ports; `sandwire start` boots them again.\n"
	"\n"
	"example:\n"
	"  sandwire stop web\n";

static const char help_rm[] = "usage: sandwire rm NAME...\n"
			      "\n"
			      "Remove sandboxes, stopping them first when they run.\n"
			      "\n"
			      "example:\n"
			      "  sandwire rm web db\n";

static const char help_inspect[] =
	"usage: sandwire inspect NAME...\n"
	"\n"
	"Print what the daemon knows of sandboxes, as a JSON array: state, agent pid\n"
	"and version, home shard, attached clients, console traffic, published ports.\n"
	"\n"
	"example:\n"
	"  sandwire inspect web\n";

static const char help_ls[] = "usage: sandwire ls [-q]\n"
			      "\n"
			      "List sandboxes: NAME STATE PID SHARD CLIENTS PORTS AGENT.\n"
			      "\n"
			      "options:\n"
			      "  -q, --quiet   names only\n"
			      "\n"
			      "examples:\n"
			      "  sandwire ls\n"
			      "  sandwire ls -q | xargs sandwire rm\n";

static const char help_publish[] =
	"usage: sandwire publish NAME -p [IP:]HOST:GUEST...\n"
	"\n"
	"Publish more TCP ports of a sandbox: connections to IP:HOST on the host reach\n"
	"127.0.0.1:GUEST inside it.\n"
	"\n"
	"example:\n"
	"  sandwire publish web -p 8443:443 -p 0.0.0.0:2222:22\n";

static const char help_stats[] =
	"usage: sandwire stats [--watch] [--interval DUR]\n"
	"\n"
	"Per-shard counters of the daemon: live client connections, consoles and port\n"
	"connections; frames/s and bytes/s routed to and from sandboxes; cross-shard\n"
	"messages/s; inbox depth; payload copies; dropped and refused frames; stalls;\n"
	"buffer pool use.  Rates are measured over the interval (default 1s).\n"
	"\n"
	"options:\n"
	"  -w, --watch           refresh every interval until interrupted\n"
	"  --interval DUR        measuring interval (e.g. 500ms, 2s)\n"
	"\n"
	"examples:\n"
	"  sandwire stats\n"
	"  sandwire stats --watch --interval 2s\n";

static const char help_cp[] =
	"usage: sandwire cp [NAME:]SRC [NAME:]DST\n"
	"\n"
	"Copy files and directories (recursively) between the host and a sandbox, in\n"
	"either direction.  As with cp(1), when DST is an existing directory SRC goes\n"
	"inside it.  Permission bits and modification times are kept, symbolic links\n"
	"are copied as links, and each file's size is checked once it arrived.  A\n"
	"progress bar shows on a terminal for large files.  A local path with a colon\n"
	"in its first component needs a ./ in front.\n"
	"\n"
	"examples:\n"
	"  sandwire cp ./site web:/srv/www\n"
	"  sandwire cp web:/var/log/app.log .\n";

static const char help_tcp[] =
	"usage: sandwire tcp NAME HOST:PORT\n"
	"\n"
	"Join stdin and stdout to a TCP connection opened from inside sandbox NAME\n"
	"(HOST is resolved there).  End of input half-closes the connection; the\n"
	"command ends when both directions are finished.  Works as an ssh ProxyCommand.\n"
	"\n"
	"examples:\n"
	"  ssh -o ProxyCommand='sandwire tcp web 127.0.0.1:22' user@web\n"
	"  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sandwire tcp web 127.0.0.1:80\n";

static const char help_main[] =
	"usage: sandwire [--socket PATH] [-v] COMMAND [OPTIONS] [ARGS]\n"
	"\n"
	"Sandboxes with their commands, files and TCP connections relayed by sandwired.\n"
	"\n"
	"commands:\n"
	"  serve      run the daemon in the foreground\n"
	"  run        create a sandbox and run a command in it (starts a private daemon\n"
	"             when none runs)\n"
	"  exec       run a command in a sandbox\n"
	"  create     create and boot a sandbox\n"
	"  start      boot a stopped sandbox\n"
	"  stop       shut a sandbox down\n"
	"  rm         remove a sandbox\n"
	"  ls         list sandboxes\n"
	"  inspect    show a sandbox's details (JSON)\n"
	"  publish    publish TCP ports of a sandbox\n"
	"  cp         copy files between the host and a sandbox\n"
	"  tcp        join stdio to a TCP connection from inside a sandbox\n"
	"  stats      the daemon's per-shard counters\n"
	"\n"
	"global options (also accepted after the command name):\n"
	"  --socket PATH   the daemon's socket (default $SANDWIRE_SOCKET, else\n"
	"                  $XDG_RUNTIME_DIR/sandwire/sandwired.sock, else\n"
	"                  /run/sandwire/sandwired.sock)\n"
	"  -v, --verbose   say more about what sandwire does\n"
	"  -h, --help      this text; `sandwire COMMAND --help` for a command's\n"
	"  --version       the version\n"
	"\n"
	"examples:\n"
	"  sandwire run -- echo hello                 # no daemon needed\n"
	"  sandwire serve &\n"
	"  sandwire create --name web -p 8080:80 && sandwire exec -it web -- sh\n";

struct cli_cmd {
	const char *name;
	cli_cmd_fn fn;
	const char *help;
};

static const struct cli_cmd cli_cmds[] = {
	{"serve", cmd_serve, help_serve},
	{"run", cmd_run, help_run},
	{"exec", cmd_exec, help_exec},
	{"create", cmd_create, help_create},
	{"start", cmd_named, help_start},
	{"stop", cmd_named, help_stop},
	{"rm", cmd_named, help_rm},
	{"inspect", cmd_named, help_inspect},
	{"ls", cmd_ls, help_ls},
	{"publish", cmd_publish, help_publish},
	{"stats", cmd_stats, help_stats},
	{"cp", cmd_cp, help_cp},
	{"tcp", cmd_tcp, help_tcp},
};

static const struct cli_cmd *cli_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		if (!strcmp(cli_cmds[i].name, name))
			return &cli_cmds[i];
	return NULL;
}

/* The --help text of command <name>, or NULL. */
static const char *cli_help_text(const char *name)
{
	const struct cli_cmd *c = cli_cmd_find(name);

	return c ? c->help : NULL;
}

int cli_help(const char *cmd)
{
	fputs(cli_help_text(cmd) ? cli_help_text(cmd) : help_main, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct cli_cmd *cmd;
	char label[64];
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--socket")) {
			if (i + 1 == argc) {
				fprintf(stderr,
					"sandwire: --socket needs the daemon's socket path\n");
				return CLI_EXIT_ERR;
			}
			cli.socket = argv[++i];
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			cli.socket = argv[i] + 9;
		} else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			cli.verbose++;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help_main, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("sandwire %s\n", SANDWIRE_VERSION);
			return 0;
		} else {
			fprintf(stderr,
				"sandwire: unknown global option \"%s\" (see `sandwire --help`)\n",
				argv[i]);
			return CLI_EXIT_ERR;
		}
	}
	if (i == argc) {
		fputs(help_main, stderr);
		return CLI_EXIT_ERR;
	}
	if (!strcmp(argv[i], "help"))
		return cli_help(i + 1 < argc ? argv[i + 1] : "");
	if (!strcmp(argv[i], "version")) {
		printf("sandwire %s\n", SANDWIRE_VERSION);
		return 0;
	}
	cmd = cli_cmd_find(argv[i]);
	if (!cmd) {
		fprintf(stderr, "sandwire: unknown command \"%s\" (see `sandwire --help`)\n",
			argv[i]);
		return CLI_EXIT_ERR;
	}
	/* getopt's own messages then read "sandwire run: unrecognized option ..." */
	snprintf(label, sizeof(label), "sandwire %s", cmd->name);
	argv[i] = label;
	return cmd->fn(&cli, argc - i, argv + i);
}
