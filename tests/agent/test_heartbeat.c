/*
 * tests/agent/test_heartbeat.c - heartbeat JSON and file handling (spec 3.5, 4.8).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/heartbeat.h"

Test(agent_heartbeat, formats_times_like_chrono)
{
	char buf[64];
	struct timespec t = {.tv_sec = 1787500000, .tv_nsec = 0};

	agent_rfc3339(t, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2026-08-23T15:46:40Z");
	t.tv_nsec = 123000000;
	agent_rfc3339(t, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2026-08-23T15:46:40.123Z");
	t.tv_nsec = 123456000;
	agent_rfc3339(t, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2026-08-23T15:46:40.123456Z");
	t.tv_nsec = 123456789;
	agent_rfc3339(t, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2026-08-23T15:46:40.123456789Z");
}

Test(agent_heartbeat, record_has_the_spec_fields_in_order)
{
	struct agent_heartbeat hb;
	struct agent_activity a = {
		.activity_seq = 17, .active_exec_sessions = 1, .host_messages = 9,
		.guest_messages = 8, .exec_output_bytes = 1234,
	};
	struct timespec start = {1787500000, 100000001}, now = {1787500002, 123456789};
	char buf[640];

	agent_heartbeat_init(&hb, "/nonexistent", start);
	hb.seq = 3;
	cr_assert_gt(agent_heartbeat_format(&hb, &a, now, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf,
		"{\"heartbeat_seq\":3,\"activity_seq\":17,"
		"\"timestamp\":\"2026-08-23T15:46:42.123456789Z\","
		"\"last_activity\":\"2026-08-23T15:46:40.100000001Z\",\"active_exec_sessions\":1,"
		"\"active_fs_streams\":0,\"active_tcp_streams\":0,\"activity_counters\":"
		"{\"host_messages\":9,\"guest_messages\":8,\"exec_output_bytes\":1234,"
		"\"fs_bytes\":0,\"tcp_bytes\":0}}");
	cr_assert_eq(agent_heartbeat_format(&hb, &a, now, buf, 40), -ENOSPC);
}

static void read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	cr_assert_not_null(f, "%s missing", path);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
}

Test(agent_heartbeat, writes_the_file_and_tracks_activity_changes)
{
	char dir[] = "/tmp/sw-hb-XXXXXX", path[128], buf[640];
	struct agent_heartbeat hb;
	struct agent_activity a = {.activity_seq = 0};
	struct timespec t0 = {1000, 0}, t1 = {1001, 0}, t2 = {1002, 0};

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/heartbeat.json", dir);
	agent_heartbeat_init(&hb, dir, t0);

	cr_assert_eq(agent_heartbeat_tick(&hb, &a, t1), 1);
	read_file(path, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "\"heartbeat_seq\":1,"));
	cr_assert_not_null(strstr(buf, "\"last_activity\":\"1970-01-01T00:16:40Z\""));

	a.activity_seq = 5; /* activity seen at the next write moves last_activity to that write */
	cr_assert_eq(agent_heartbeat_tick(&hb, &a, t2), 1);
	read_file(path, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "\"heartbeat_seq\":2,\"activity_seq\":5,"));
	cr_assert_not_null(strstr(buf, "\"last_activity\":\"1970-01-01T00:16:42Z\""));

	snprintf(path, sizeof(path), "%s/heartbeat.tmp", dir);
	cr_assert_eq(access(path, F_OK), -1, "the temporary file is renamed away");
	snprintf(path, sizeof(path), "%s/heartbeat.json", dir);
	unlink(path);
	rmdir(dir);
}

Test(agent_heartbeat, skips_when_the_directory_is_missing)
{
	struct agent_heartbeat hb;
	struct agent_activity a = {0};
	struct timespec t = {1, 0};

	agent_heartbeat_init(&hb, "/nonexistent-sw-dir", t);
	cr_assert_eq(agent_heartbeat_tick(&hb, &a, t), 0);
	cr_assert_eq(hb.seq, 0);
}
