/*
 * engine/cli/tty.c - the local terminal in raw mode, and every way back.
 *
 * The settings saved by tty_raw() are put back by whichever comes first:
 * tty_restore() on the normal path, the atexit handler on any exit(), or
 * the handler of a fatal signal (which restores, then lets the signal kill
 * the process as it would have).  Terminating signals the command handles
 * itself (SIGINT, SIGTERM, SIGHUP, SIGWINCH) arrive through a signalfd in
 * exec_io.c and end through exit(), hence through atexit.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

static struct termios tty_saved;
static int tty_fd = -1;
static volatile sig_atomic_t tty_is_raw;

void tty_restore(void)
{
	if (!tty_is_raw)
		return;
	tty_is_raw = 0;
	tcsetattr(tty_fd, TCSADRAIN, &tty_saved);
}

/* Fatal signal: the terminal back first, then the default action. */
static void tty_on_fatal(int sig)
{
	tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int tty_raw(int fd)
{
	static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP};
	static bool hooked;
	struct sigaction sa;
	struct termios raw;

	if (!isatty(fd))
		return -ENOTTY;
	if (tcgetattr(fd, &tty_saved) < 0)
		return -errno;
	if (!hooked) {
		hooked = true;
		atexit(tty_restore);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = tty_on_fatal;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = SA_RESETHAND;
		for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
			sigaction(fatal[i], &sa, NULL);
	}
	raw = tty_saved;
	cfmakeraw(&raw); /* no echo, no line editing, no ISIG, no output processing */
	tty_fd = fd;
	tty_is_raw = 1;
	if (tcsetattr(fd, TCSADRAIN, &raw) < 0) {
		tty_is_raw = 0;
		return -errno;
	}
	return 0;
}

void tty_size(uint16_t *rows, uint16_t *cols)
{
	struct winsize ws;

	*rows = PROTO_EXEC_ROWS_DEFAULT;
	*cols = PROTO_EXEC_COLS_DEFAULT;
	for (int fd = 0; fd <= 1; fd++) {
		if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			*rows = ws.ws_row;
			*cols = ws.ws_col;
			return;
		}
	}
}
