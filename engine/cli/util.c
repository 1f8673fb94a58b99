/*
 * engine/cli/util.c - messages and the small parsers every command uses.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void cli_verr(const char *fmt, va_list ap)
{
	char buf[2048];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, "sandwire: %s\n", buf);
}

void cli_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verr(fmt, ap);
	va_end(ap);
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verr(fmt, ap);
	va_end(ap);
	return CLI_EXIT_ERR;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sandwire %s: %s\n(see `sandwire %s --help`)\n", cmd, buf, cmd);
	return CLI_EXIT_ERR;
}

int cli_bad_option(const char *cmd)
{
	fprintf(stderr, "(see `sandwire %s --help`)\n", cmd);
	return CLI_EXIT_ERR;
}

int cli_plain_opts(struct cli *cli, int argc, char **argv, const char *cmd, bool *quiet)
{
	static const struct option plain[] = {CLI_LONG_COMMON, {0}};
	static const struct option with_quiet[] = {
		{"quiet", no_argument, NULL, 'q'}, CLI_LONG_COMMON, {0}};
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, quiet ? "+qh" : "+h", quiet ? with_quiet : plain,
			NULL)) != -1) {
		if (ch == 'q')
			*quiet = true;
		else if (ch == CLI_OPT_SOCKET)
			cli->socket = optarg;
		else if (ch == 'h')
			return cli_help(cmd);
		else
			return cli_bad_option(cmd);
	}
	return -1;
}

int cli_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *suffix;
		double ms;
	} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	char *end;
	double v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix))
			continue;
		v *= units[i].ms;
		if (v > (double)INT64_MAX / 2)
			return -EINVAL;
		*ms = (int64_t)llround(v);
		return 0;
	}
	return -EINVAL;
}

/* One rlimit value: a number or "unlimited"/"infinity". */
static int rlimit_value(const char *s, size_t n, uint64_t *v)
{
	char buf[32];

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (!strcmp(buf, "unlimited") || !strcmp(buf, "infinity")) {
		*v = UINT64_MAX;
		return 0;
	}
	return cli_parse_uint(buf, UINT64_MAX, v);
}

int cli_parse_rlimit(
	const char *spec, char name[16], uint64_t *soft, uint64_t *hard, char *why, size_t cap)
{
	const char *eq = strchr(spec, '='), *colon;
	size_t n = eq ? (size_t)(eq - spec) : 0;

	if (!eq || n == 0 || n >= 16) {
		snprintf(why, cap,
			"--rlimit wants NAME=SOFT[:HARD] (e.g. nofile=1024:4096), not \"%s\"",
			spec);
		return -EINVAL;
	}
	memcpy(name, spec, n);
	name[n] = '\0';
	if (proto_rlimit_resource((struct proto_str){name, n}) < 0) {
		snprintf(why, cap,
			"--rlimit: unknown resource \"%s\" (one of cpu, fsize, data, stack, core, "
			"rss, "
			"nproc, nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio, "
			"rttime)",
			name);
		return -EINVAL;
	}
	colon = strchr(eq + 1, ':');
	if (rlimit_value(eq + 1, colon ? (size_t)(colon - eq - 1) : strlen(eq + 1), soft) < 0 ||
		(colon && rlimit_value(colon + 1, strlen(colon + 1), hard) < 0)) {
		snprintf(why, cap, "--rlimit %s: values are numbers or \"unlimited\", not \"%s\"",
			name, eq + 1);
		return -EINVAL;
	}
	if (!colon)
		*hard = *soft;
	if (*soft > *hard) {
		snprintf(why, cap, "--rlimit %s: the soft limit is above the hard one", name);
		return -EINVAL;
	}
	return 0;
}

int cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *colon;
	uint64_t v;
	size_t n;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		n = (size_t)(close - s - 1);
		s++;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= cap || cli_parse_uint(colon + 1, 65535, &v) < 0 || v == 0)
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	*port = (uint16_t)v;
	return 0;
}

void cli_random_name(char *buf, size_t cap)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint32_t)getpid() * 2654435761u ^ (uint32_t)time(NULL);
	snprintf(buf, cap, "run-%08" PRIx32, r);
}

const char *cli_fmt_bytes(double n, char *buf, size_t cap)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	size_t u = 0;

	while (n >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		n /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", n, units[u]);
	return buf;
}

int64_t cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *at = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, at, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		at += w;
		n -= (size_t)w;
	}
	return 0;
}
