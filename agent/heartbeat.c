/*
 * agent/heartbeat.c - heartbeat record and file (see heartbeat.h).
 */
#include "agent/heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void agent_heartbeat_init(struct agent_heartbeat *hb, const char *dir, struct timespec now)
{
	memset(hb, 0, sizeof(*hb));
	snprintf(hb->dir, sizeof(hb->dir), "%s", dir);
	hb->last_activity = now;
}

int agent_rfc3339(struct timespec t, char *buf, size_t cap)
{
	struct tm tm;
	char frac[16] = "";
	unsigned ns = (unsigned)t.tv_nsec % 1000000000u;
	int n;

	gmtime_r(&t.tv_sec, &tm);
	/* Fewest of 0/3/6/9 digits that show the value exactly, like chrono's AutoSi. */
	if (ns == 0)
		frac[0] = '\0';
	else if (ns % 1000000 == 0)
		snprintf(frac, sizeof(frac), ".%03u", ns / 1000000);
	else if (ns % 1000 == 0)
		snprintf(frac, sizeof(frac), ".%06u", ns / 1000);
	else
		snprintf(frac, sizeof(frac), ".%09u", ns);
	n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int agent_heartbeat_format(const struct agent_heartbeat *hb, const struct agent_activity *a,
	struct timespec now, char *buf, size_t cap)
{
	char ts[48], last[48];
	int n;

	if (agent_rfc3339(now, ts, sizeof(ts)) < 0 ||
		agent_rfc3339(hb->last_activity, last, sizeof(last)) < 0)
		return -ENOSPC;
	n = snprintf(buf, cap,
		"{\"heartbeat_seq\":%" PRIu64 ",\"activity_seq\":%" PRIu64 ",\"timestamp\":\"%s\","
		"\"last_activity\":\"%s\",\"active_exec_sessions\":%" PRIu32
		",\"active_fs_streams\":%" PRIu32 ",\"active_tcp_streams\":%" PRIu32
		",\"activity_counters\":{\"host_messages\":%" PRIu64 ",\"guest_messages\":%" PRIu64
		",\"exec_output_bytes\":%" PRIu64 ",\"fs_bytes\":%" PRIu64 ",\"tcp_bytes\":%" PRIu64 "}}",
		hb->seq, a->activity_seq, ts, last, a->active_exec_sessions, a->active_fs_streams,
		a->active_tcp_streams, a->host_messages, a->guest_messages, a->exec_output_bytes,
		a->fs_bytes, a->tcp_bytes);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int agent_heartbeat_tick(struct agent_heartbeat *hb, const struct agent_activity *a,
	struct timespec now)
{
	char tmp[300], final[300], rec[640];
	struct stat st;
	ssize_t w;
	int fd, n, rc = 1;

	if (stat(hb->dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	hb->seq++;
	if (a->activity_seq != hb->seen_activity_seq) {
		hb->seen_activity_seq = a->activity_seq;
		hb->last_activity = now;
	}
	n = agent_heartbeat_format(hb, a, now, rec, sizeof(rec));
	if (n < 0)
		return n;
	snprintf(tmp, sizeof(tmp), "%s/heartbeat.tmp", hb->dir);
	snprintf(final, sizeof(final), "%s/heartbeat.json", hb->dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	w = write(fd, rec, (size_t)n); /* one small regular-file write: complete or an error */
	if (w != n)
		rc = w < 0 ? -errno : -EIO;
	close(fd);
	if (rc > 0 && rename(tmp, final) < 0)
		rc = -errno;
	return rc;
}
