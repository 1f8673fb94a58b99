/*
 * tests/proto/test_msg_boot.c - GuestBootstrap payload codec.
 *
 * Vector payloads are read from SW_VECTORS_DIR/vectors-gen7.txt by id, so
 * the tests follow the spec file.  Hand-made inputs are written with the
 * project's own CBOR writer.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proto/error.h"
#include "proto/msg_boot.h"
#include "tests/proto/proto_test.h"

/* ---- helpers ---- */

#define OS(lit) ((struct proto_opt_str){true, S(lit)})

static void assert_ostr_eq(struct proto_opt_str a, struct proto_opt_str b, const char *what)
{
	cr_assert_eq(a.set, b.set, "%s set", what);
	if (a.set)
		cr_assert(str_same(a.v, b.v), "%s", what);
}

static void assert_flags_eq(
	const struct proto_boot_mount_flags *a, const struct proto_boot_mount_flags *b)
{
	cr_assert_eq(a->readonly, b->readonly);
	cr_assert_eq(a->noexec, b->noexec);
	cr_assert_eq(a->nosuid, b->nosuid);
	cr_assert_eq(a->nodev, b->nodev);
}

static void assert_env_eq(
	const struct proto_boot_env *a, size_t an, const struct proto_boot_env *b, size_t bn)
{
	size_t i;

	cr_assert_eq(an, bn);
	for (i = 0; i < an; i++) {
		cr_assert(str_same(a[i].key, b[i].key), "env key %zu", i);
		cr_assert(str_same(a[i].value, b[i].value), "env value %zu", i);
	}
}

static void assert_strs_eq(
	const struct proto_str *a, size_t an, const struct proto_str *b, size_t bn)
{
	size_t i;

	cr_assert_eq(an, bn);
	for (i = 0; i < an; i++)
		cr_assert(str_same(a[i], b[i]), "string %zu", i);
}

/* Two IP blocks (both struct proto_boot_ipv4 or both ipv6, by pointer) are equal. */
#define assert_ip_eq(a, b)                                                                         \
	do {                                                                                       \
		cr_assert_eq((a)->set, (b)->set);                                                  \
		if (!(a)->set)                                                                     \
			break;                                                                     \
		cr_assert(memcmp((a)->address, (b)->address, sizeof((a)->address)) == 0);          \
		cr_assert_eq((a)->prefix_len, (b)->prefix_len);                                    \
		cr_assert(memcmp((a)->gateway, (b)->gateway, sizeof((a)->gateway)) == 0);          \
		cr_assert_eq((a)->has_dns, (b)->has_dns);                                          \
		if ((a)->has_dns)                                                                  \
			cr_assert(memcmp((a)->dns, (b)->dns, sizeof((a)->dns)) == 0);              \
	} while (0)

static void assert_boot_eq(const struct proto_bootstrap *a, const struct proto_bootstrap *b)
{
	const struct proto_boot_block_root *ra = &a->block_root, *rb = &b->block_root;
	size_t i;

	cr_assert_eq(ra->kind, rb->kind, "block_root kind");
	if (ra->kind == PROTO_BOOT_ROOT_DISK_IMAGE) {
		cr_assert(str_same(ra->device, rb->device));
		assert_ostr_eq(ra->fstype, rb->fstype, "root fstype");
	} else if (ra->kind == PROTO_BOOT_ROOT_OCI_EROFS) {
		cr_assert(str_same(ra->lower, rb->lower));
		cr_assert_eq(ra->upper.kind, rb->upper.kind);
		if (ra->upper.kind == PROTO_BOOT_UPPER_DEVICE) {
			cr_assert(str_same(ra->upper.device, rb->upper.device));
			cr_assert(str_same(ra->upper.fstype, rb->upper.fstype));
		} else {
			cr_assert(OPT_EQ(ra->upper.size_mib, rb->upper.size_mib));
		}
	}
	cr_assert_eq(a->n_dir_mounts, b->n_dir_mounts);
	for (i = 0; i < a->n_dir_mounts; i++) {
		cr_assert(str_same(a->dir_mounts[i].tag, b->dir_mounts[i].tag));
		cr_assert(str_same(a->dir_mounts[i].guest_path, b->dir_mounts[i].guest_path));
		assert_flags_eq(&a->dir_mounts[i].flags, &b->dir_mounts[i].flags);
	}
	cr_assert_eq(a->n_file_mounts, b->n_file_mounts);
	for (i = 0; i < a->n_file_mounts; i++) {
		cr_assert(str_same(a->file_mounts[i].tag, b->file_mounts[i].tag));
		cr_assert(str_same(a->file_mounts[i].filename, b->file_mounts[i].filename));
		cr_assert(str_same(a->file_mounts[i].guest_path, b->file_mounts[i].guest_path));
		assert_flags_eq(&a->file_mounts[i].flags, &b->file_mounts[i].flags);
	}
	cr_assert_eq(a->n_disk_mounts, b->n_disk_mounts);
	for (i = 0; i < a->n_disk_mounts; i++) {
		cr_assert(str_same(a->disk_mounts[i].id, b->disk_mounts[i].id));
		cr_assert(str_same(a->disk_mounts[i].guest_path, b->disk_mounts[i].guest_path));
		assert_ostr_eq(a->disk_mounts[i].fstype, b->disk_mounts[i].fstype, "disk fstype");
		assert_flags_eq(&a->disk_mounts[i].flags, &b->disk_mounts[i].flags);
	}
	cr_assert_eq(a->n_tmpfs_mounts, b->n_tmpfs_mounts);
	for (i = 0; i < a->n_tmpfs_mounts; i++) {
		cr_assert(str_same(a->tmpfs_mounts[i].path, b->tmpfs_mounts[i].path));
		cr_assert(OPT_EQ(a->tmpfs_mounts[i].size_mib, b->tmpfs_mounts[i].size_mib));
		cr_assert(OPT_EQ(a->tmpfs_mounts[i].mode, b->tmpfs_mounts[i].mode));
		assert_flags_eq(&a->tmpfs_mounts[i].flags, &b->tmpfs_mounts[i].flags);
	}
	assert_ostr_eq(a->hostname, b->hostname, "hostname");
	assert_ostr_eq(a->host_alias, b->host_alias, "host_alias");
	cr_assert_eq(a->network.set, b->network.set);
	if (a->network.set) {
		cr_assert(str_same(a->network.interface, b->network.interface));
		cr_assert(memcmp(a->network.mac, b->network.mac, 6) == 0);
		cr_assert_eq(a->network.mtu, b->network.mtu);
		assert_ip_eq(&a->network.ipv4, &b->network.ipv4);
		assert_ip_eq(&a->network.ipv6, &b->network.ipv6);
	}
	cr_assert_eq(a->n_rlimits, b->n_rlimits);
	for (i = 0; i < a->n_rlimits; i++) {
		cr_assert(str_same(a->rlimits[i].resource, b->rlimits[i].resource));
		cr_assert_eq(a->rlimits[i].soft, b->rlimits[i].soft);
		cr_assert_eq(a->rlimits[i].hard, b->rlimits[i].hard);
	}
	assert_ostr_eq(a->user, b->user, "user");
	assert_ostr_eq(a->default_cwd, b->default_cwd, "default_cwd");
	assert_env_eq(a->default_env, a->n_default_env, b->default_env, b->n_default_env);
	cr_assert_eq(a->security_profile, b->security_profile);
	cr_assert_eq(a->handoff_init.set, b->handoff_init.set);
	if (a->handoff_init.set) {
		const struct proto_boot_handoff *ha = &a->handoff_init, *hb = &b->handoff_init;

		cr_assert(str_same(ha->cmd, hb->cmd));
		assert_strs_eq(ha->args, ha->n_args, hb->args, hb->n_args);
		assert_ostr_eq(ha->cwd, hb->cwd, "handoff cwd");
		assert_env_eq(ha->env, ha->n_env, hb->env, hb->n_env);
	}
	assert_strs_eq(a->ext, a->n_ext, b->ext, b->n_ext);
}

PROTO_TEST_CODEC(boot, struct proto_bootstrap, proto_bootstrap_encode, proto_bootstrap_decode,
	assert_boot_eq)

/* ---- vectors ---- */

Test(msg_boot, v01_default_bootstrap_matches_vector_both_ways)
{
	struct proto_bootstrap m;

	memset(&m, 0, sizeof(m));
	boot_check_vector("V01", &m);
}

static struct proto_rlimit v44_rlimits[] = {{LIT("nofile"), 65535, 65535}};
static struct proto_boot_env v44_env[] = {{LIT("APP"), LIT("1")}};
static struct proto_boot_tmpfs_mount v44_tmpfs[] = {
	{LIT("/tmp"), {true, 64}, {true, 01777}, {false, false, false, false}},
};

static struct proto_bootstrap v44(void)
{
	struct proto_bootstrap m = {
		.block_root =
			{
				.kind = PROTO_BOOT_ROOT_OCI_EROFS,
				.lower = S("/dev/vda"),
				.upper = {.kind = PROTO_BOOT_UPPER_TMPFS, .size_mib = {true, 512}},
			},
		.tmpfs_mounts = v44_tmpfs,
		.n_tmpfs_mounts = 1,
		.hostname = OS("worker-01"),
		.host_alias = OS("host.microsandbox.internal"),
		.network =
			{
				.set = true,
				.interface = S("eth0"),
				.mac = {2, 0, 0, 0, 0, 2},
				.mtu = 1500,
				.ipv4 =
					{
						.set = true,
						.address = {172, 16, 0, 2},
						.prefix_len = 30,
						.gateway = {172, 16, 0, 1},
						.has_dns = true,
						.dns = {172, 16, 0, 1},
					},
			},
		.rlimits = v44_rlimits,
		.n_rlimits = 1,
		.user = OS("1000:1000"),
		.default_cwd = OS("/workspace"),
		.default_env = v44_env,
		.n_default_env = 1,
		.security_profile = PROTO_BOOT_SECURITY_RESTRICTED,
	};
	return m;
}

Test(msg_boot, v44_rich_bootstrap_matches_vector_both_ways)
{
	struct proto_bootstrap m = v44();

	boot_check_vector("V44", &m);
}

/* ---- round trips ---- */

static struct proto_boot_dir_mount full_dirs[] = {
	{LIT("workspace"), LIT("/workspace:with separators"), {false, true, false, false}},
	{LIT("t2"), LIT("/b"), {true, true, true, true}},
};
static struct proto_boot_file_mount full_files[] = {
	{LIT("config"), LIT("app.json"), LIT("/etc/app.json"), {true, false, false, false}},
};
static struct proto_boot_disk_mount full_disks[] = {
	{LIT("data"), LIT("/data"), {true, LIT("ext4")}, {false, false, true, true}},
	{LIT("scratch"), LIT("/scratch"), {false, {NULL, 0}}, {false, false, false, false}},
};
static struct proto_boot_tmpfs_mount full_tmpfs[] = {
	{LIT("/tmp"), {true, 64}, {true, 01777}, {false, true, true, false}},
	{LIT("/run"), {false, 0}, {false, 0}, {false, false, false, true}},
	{LIT("/dev/shm"), {true, UINT32_MAX}, {false, 0}, {false, false, false, false}},
};
static struct proto_rlimit full_rlimits[] = {
	{LIT("nofile"), 1024, 4096},
	{LIT("AS"), UINT64_MAX, UINT64_MAX},
};
static struct proto_boot_env full_env[] = {
	{LIT("APP_CONFIG"), LIT("{\"message\":\"hello\"}")},
	{LIT("UNICODE"), LIT("snowman: \xe2\x98\x83\nnext\tcolumn")},
	{LIT("EMPTY"), LIT("")},
};
static struct proto_str full_args[] = {LIT("--unit=multi user.target"), LIT("-v")};
static struct proto_boot_env full_handoff_env[] = {{LIT("HANDOFF_JSON"), LIT("{}")}};
static struct proto_str full_ext[] = {LIT("credit"), LIT("bulk-lease")};

/* Every field present, every list non-empty. */
static struct proto_bootstrap full(void)
{
	struct proto_bootstrap m =
		{
			.block_root =
				{
					.kind = PROTO_BOOT_ROOT_DISK_IMAGE,
					.device = S("/dev/vda"),
					.fstype = OS("ext4"),
				},
			.dir_mounts = full_dirs,
			.n_dir_mounts = 2,
			.file_mounts = full_files,
			.n_file_mounts = 1,
			.disk_mounts = full_disks,
			.n_disk_mounts = 2,
			.tmpfs_mounts = full_tmpfs,
			.n_tmpfs_mounts = 3,
			.hostname = OS("quoted-env-test"),
			.host_alias = OS("host.microsandbox.internal"),
			.network =
				{
					.set = true,
					.interface = S("eth0"),
					.mac = {0x02, 0xff, 0x00, 0x80, 0x7f, 0x02},
					.mtu = 65535,
					.ipv4 = {true, {172, 16, 0, 2}, 30, {172, 16, 0, 1}, true,
						{255, 255, 255, 255}},
					.ipv6 = {true,
						{0xfd, 0x42, 0x6d, 0x73, 0, 0x62, 0, 0, 0, 0, 0, 0,
							0, 0, 0, 2},
						64,
						{0xfd, 0x42, 0x6d, 0x73, 0, 0x62, 0, 0, 0, 0, 0, 0,
							0, 0, 0, 1},
						true,
						{0xfd, 0x42, 0x6d, 0x73, 0, 0x62, 0, 0, 0, 0, 0, 0,
							0, 0, 0, 1}},
				},
			.rlimits = full_rlimits,
			.n_rlimits = 2,
			.user = OS("1000:1000"),
			.default_cwd = OS("/workspace with spaces"),
			.default_env = full_env,
			.n_default_env = 3,
			.security_profile = PROTO_BOOT_SECURITY_RESTRICTED,
			.handoff_init =
				{
					.set = true,
					.cmd = S("/sbin/init"),
					.args = full_args,
					.n_args = 2,
					.cwd = OS("/"),
					.env = full_handoff_env,
					.n_env = 1,
				},
			.ext = full_ext,
			.n_ext = 2,
		};
	return m;
}

static void round_trip(const struct proto_bootstrap *m, const char *what)
{
	static uint8_t buf[65536];
	long n = boot_encode(m, buf, sizeof(buf));

	cr_assert(n > 0, "%s: encode %ld", what, n);
	boot_check_both_ways(m, buf, (size_t)n, what);
}

Test(msg_boot, every_field_round_trips)
{
	struct proto_bootstrap m = full();

	round_trip(&m, "full");
}

Test(msg_boot, each_variant_and_optional_part_round_trips)
{
	struct proto_bootstrap m = full();

	m.block_root.fstype.set = false;
	m.handoff_init.n_args = 0;
	m.handoff_init.n_env = 0;
	m.handoff_init.cwd.set = false;
	m.network.ipv4.has_dns = false;
	m.network.ipv6.set = false;
	m.security_profile = PROTO_BOOT_SECURITY_DEFAULT;
	round_trip(&m, "disk-image without fstype, bare handoff");

	m = full();
	m.block_root = (struct proto_boot_block_root){
		.kind = PROTO_BOOT_ROOT_OCI_EROFS,
		.lower = S("/dev/vda"),
		.upper = {.kind = PROTO_BOOT_UPPER_DEVICE,
			.device = S("/dev/vdb"),
			.fstype = S("xfs")},
	};
	m.network.ipv4.set = false;
	m.network.ipv6.has_dns = false;
	round_trip(&m, "oci-erofs on a device upper, ipv6 only");

	m.block_root.upper = (struct proto_boot_upper){.kind = PROTO_BOOT_UPPER_TMPFS};
	m.network.ipv6.set = false;
	m.n_ext = 0;
	round_trip(&m, "tmpfs upper without size, no ip blocks, no ext");
}

Test(msg_boot, omitted_parts_leave_no_key)
{
	static const struct proto_boot_disk_mount disk = {
		LIT("d"), LIT("/d"), {false, {0}}, {false, false, false, false}};
	struct proto_bootstrap m;
	uint8_t want[512], got[512];
	struct cbw w;
	size_t n;

	memset(&m, 0, sizeof(m));
	m.block_root.kind = PROTO_BOOT_ROOT_DISK_IMAGE;
	m.block_root.device = S("/dev/vda");
	m.disk_mounts = (struct proto_boot_disk_mount *)&disk;
	m.n_disk_mounts = 1;
	m.network.set = true;
	m.network.interface = S("eth0");
	m.network.mtu = 1500;
	m.handoff_init.set = true;
	m.handoff_init.cmd = S("auto");

	cbw_init(&w, want, sizeof(want));
	cbw_map(&w, 5);
	cbw_key(&w, "block_root");
	cbw_map(&w, 2);
	cbw_key(&w, "kind");
	cbw_cstr(&w, "disk-image");
	cbw_key(&w, "device");
	cbw_cstr(&w, "/dev/vda");
	cbw_key(&w, "disk_mounts");
	cbw_array(&w, 1);
	cbw_map(&w, 3);
	cbw_key(&w, "id");
	cbw_cstr(&w, "d");
	cbw_key(&w, "guest_path");
	cbw_cstr(&w, "/d");
	cbw_key(&w, "flags");
	cbw_map(&w, 4);
	cbw_key(&w, "readonly");
	cbw_bool(&w, false);
	cbw_key(&w, "noexec");
	cbw_bool(&w, false);
	cbw_key(&w, "nosuid");
	cbw_bool(&w, false);
	cbw_key(&w, "nodev");
	cbw_bool(&w, false);
	cbw_key(&w, "network");
	cbw_map(&w, 3);
	cbw_key(&w, "interface");
	cbw_cstr(&w, "eth0");
	cbw_key(&w, "mac");
	cbw_array(&w, 6);
	for (int i = 0; i < 6; i++)
		cbw_uint(&w, 0);
	cbw_key(&w, "mtu");
	cbw_uint(&w, 1500);
	cbw_key(&w, "security_profile");
	cbw_cstr(&w, "default");
	cbw_key(&w, "handoff_init");
	cbw_map(&w, 1);
	cbw_key(&w, "cmd");
	cbw_cstr(&w, "auto");
	n = wr_done(&w);
	assert_bytes(got, boot_encode(&m, got, sizeof(got)), want, n, "omitted parts");
}

Test(msg_boot, extension_key_goes_last_and_decodes)
{
	static const uint8_t tail[] = {0x68, 's', 'a', 'n', 'd', 'w', 'i', 'r', 'e', 0xa1, 0x63,
		'e', 'x', 't', 0x81, 0x66, 'c', 'r', 'e', 'd', 'i', 't'};
	struct proto_str ext[] = {LIT("credit")};
	struct proto_bootstrap m, d;
	uint8_t buf[128];
	long n;

	memset(&m, 0, sizeof(m));
	m.ext = ext;
	m.n_ext = 1;
	n = boot_encode(&m, buf, sizeof(buf));
	cr_assert(n > (long)sizeof(tail));
	cr_assert_eq(buf[0], 0xa2);
	cr_assert(memcmp(buf + n - sizeof(tail), tail, sizeof(tail)) == 0);
	cr_assert_eq(boot_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.n_ext, 1);
	cr_assert(str_same(d.ext[0], S("credit")));
}

Test(msg_boot, extension_map_is_lenient)
{
	uint8_t buf[128];
	struct proto_bootstrap d;
	struct cbw w;
	int i;

	/* {"sandwire": {"future": 1, "ext": ["a", "b"]}} */
	wr_begin(&w, buf, sizeof(buf), "sandwire");
	cbw_map(&w, 2);
	cbw_key(&w, "future");
	cbw_uint(&w, 1);
	cbw_key(&w, "ext");
	cbw_array(&w, 2);
	cbw_cstr(&w, "a");
	cbw_cstr(&w, "b");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
	cr_assert_eq(d.n_ext, 2);
	cr_assert(str_same(d.ext[1], S("b")));

	/* {"sandwire": null} and {"sandwire": {}} name nothing */
	for (i = 0; i < 2; i++) {
		wr_begin(&w, buf, sizeof(buf), "sandwire");
		if (i == 0)
			cbw_null(&w);
		else
			cbw_map(&w, 0);
		cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
		cr_assert_eq(d.n_ext, 0);
	}
}

/* ---- lenient reading ---- */

Test(msg_boot, empty_map_and_null_options_decode_to_the_default)
{
	static const uint8_t empty[] = {0xa0};
	uint8_t buf[256];
	struct proto_bootstrap d, def;
	struct cbw w;
	static const char *const opts[] = {"block_root", "hostname", "host_alias", "network",
		"user", "default_cwd", "handoff_init"};
	unsigned i;

	memset(&def, 0, sizeof(def));
	cr_assert_eq(boot_decode(empty, 1, &d), 0);
	assert_boot_eq(&d, &def);

	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 7);
	for (i = 0; i < 7; i++) {
		cbw_key(&w, opts[i]);
		cbw_null(&w);
	}
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
	assert_boot_eq(&d, &def);
}

Test(msg_boot, unknown_keys_are_skipped_at_every_level)
{
	uint8_t buf[512];
	struct proto_bootstrap d;
	struct cbw w;

	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 3);
	cbw_key(&w, "future_field");
	cbw_map(&w, 1);
	cbw_key(&w, "x");
	cbw_array(&w, 0);
	cbw_key(&w, "network");
	cbw_map(&w, 4);
	cbw_key(&w, "interface");
	cbw_cstr(&w, "eth1");
	cbw_key(&w, "mac");
	cbw_bytes(&w, "\x02\x00\x00\x00\x00\x09", 6); /* a byte string is accepted too */
	cbw_key(&w, "offload");
	cbw_bool(&w, true);
	cbw_key(&w, "mtu");
	cbw_uint(&w, 9000);
	cbw_key(&w, "dir_mounts");
	cbw_array(&w, 1);
	cbw_map(&w, 3);
	cbw_key(&w, "tag");
	cbw_cstr(&w, "t");
	cbw_key(&w, "cache");
	cbw_cstr(&w, "always");
	cbw_key(&w, "guest_path");
	cbw_cstr(&w, "/t");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
	cr_assert(d.network.set);
	cr_assert_eq(d.network.mac[5], 9);
	cr_assert_eq(d.network.mtu, 9000);
	cr_assert_eq(d.n_dir_mounts, 1);
	cr_assert(str_same(d.dir_mounts[0].guest_path, S("/t")));
}

Test(msg_boot, kind_may_come_anywhere_in_tagged_maps)
{
	uint8_t buf[256];
	struct proto_bootstrap d;
	struct cbw w;

	wr_begin(&w, buf, sizeof(buf), "block_root");
	cbw_map(&w, 3);
	cbw_key(&w, "lower");
	cbw_cstr(&w, "/dev/vda");
	cbw_key(&w, "upper");
	cbw_map(&w, 3);
	cbw_key(&w, "fstype");
	cbw_cstr(&w, "ext4");
	cbw_key(&w, "device");
	cbw_cstr(&w, "/dev/vdb");
	cbw_key(&w, "kind");
	cbw_cstr(&w, "device");
	cbw_key(&w, "kind");
	cbw_cstr(&w, "oci-erofs");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
	cr_assert_eq(d.block_root.kind, PROTO_BOOT_ROOT_OCI_EROFS);
	cr_assert(str_same(d.block_root.lower, S("/dev/vda")));
	cr_assert_eq(d.block_root.upper.kind, PROTO_BOOT_UPPER_DEVICE);
	cr_assert(str_same(d.block_root.upper.device, S("/dev/vdb")));
	cr_assert(str_same(d.block_root.upper.fstype, S("ext4")));
}

Test(msg_boot, mount_flags_default_to_false_one_by_one)
{
	uint8_t buf[256];
	struct proto_bootstrap d;
	struct cbw w;

	wr_begin(&w, buf, sizeof(buf), "dir_mounts");
	cbw_array(&w, 2);
	cbw_map(&w, 2); /* no flags at all */
	cbw_key(&w, "tag");
	cbw_cstr(&w, "a");
	cbw_key(&w, "guest_path");
	cbw_cstr(&w, "/a");
	cbw_map(&w, 3);
	cbw_key(&w, "tag");
	cbw_cstr(&w, "b");
	cbw_key(&w, "guest_path");
	cbw_cstr(&w, "/b");
	cbw_key(&w, "flags");
	cbw_map(&w, 1);
	cbw_key(&w, "nosuid");
	cbw_bool(&w, true);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), 0);
	cr_assert_eq(d.n_dir_mounts, 2);
	cr_assert(!d.dir_mounts[0].flags.readonly && !d.dir_mounts[0].flags.noexec &&
		  !d.dir_mounts[0].flags.nosuid && !d.dir_mounts[0].flags.nodev);
	cr_assert(!d.dir_mounts[1].flags.readonly && !d.dir_mounts[1].flags.noexec &&
		  d.dir_mounts[1].flags.nosuid && !d.dir_mounts[1].flags.nodev);
}

/* ---- bad input ---- */

/* A text field written by wr_nested; <name> ("dir.tag", ...) is what a test may skip. */
struct wr_text {
	const char *name; /* NULL: never skipped */
	const char *key;
	const char *value;
};

/* A map of the fields <f> (<n>) but the one named <skip>, and <extra> entries to follow. */
static void wr_texts(
	struct cbw *w, const char *skip, const struct wr_text *f, size_t n, size_t extra)
{
	size_t i;

	for (i = 0; i < n; i++)
		extra += !f[i].name || strcmp(f[i].name, skip) != 0;
	cbw_map(w, extra);
	for (i = 0; i < n; i++) {
		if (f[i].name && strcmp(f[i].name, skip) == 0)
			continue;
		cbw_key(w, f[i].key);
		cbw_cstr(w, f[i].value);
	}
}

/* A list of one struct of text fields, under <key>. */
struct wr_list {
	const char *key;
	struct wr_text f[3];
	size_t n;
};

static void wr_list1(struct cbw *w, const char *skip, const struct wr_list *l)
{
	cbw_key(w, l->key);
	cbw_array(w, 1);
	wr_texts(w, skip, l->f, l->n, 0);
}

/*
 * A bootstrap exercising every nested struct, written by hand with the
 * nested field named <skip> ("network.mac", "dir.tag", ...) left out.
 */
static size_t wr_nested(uint8_t *buf, size_t cap, const char *skip)
{
	static const struct wr_text root[] = {
		{"root.kind", "kind", "oci-erofs"},
		{"root.lower", "lower", "/dev/vda"},
	};
	static const struct wr_text upper[] = {
		{NULL, "kind", "device"},
		{"upper.device", "device", "/dev/vdb"},
		{"upper.fstype", "fstype", "ext4"},
	};
	static const struct wr_list mounts[] = {
		{"dir_mounts", {{"dir.tag", "tag", "t"}, {"dir.guest_path", "guest_path", "/t"}},
			2},
		{"file_mounts",
			{{"file.tag", "tag", "t"}, {"file.filename", "filename", "f"},
				{"file.guest_path", "guest_path", "/f"}},
			3},
		{"disk_mounts", {{"disk.id", "id", "d"}, {"disk.guest_path", "guest_path", "/d"}},
			2},
		{"tmpfs_mounts", {{"tmpfs.path", "path", "/tmp"}}, 1},
	};
	static const struct wr_list env = {
		"default_env", {{"env.key", "key", "K"}, {"env.value", "value", ""}}, 2};
	static const struct wr_text handoff[] = {{"handoff.cmd", "cmd", "auto"}};
	struct cbw w;
	int i;

#define HAS(name) (strcmp(skip, name) != 0)
	cbw_init(&w, buf, cap);
	cbw_map(&w, 8);

	cbw_key(&w, "block_root");
	wr_texts(&w, skip, root, 2, HAS("root.upper"));
	if (HAS("root.upper")) {
		cbw_key(&w, "upper");
		wr_texts(&w, skip, upper, 3, 0);
	}
	for (i = 0; i < 4; i++)
		wr_list1(&w, skip, &mounts[i]);

	cbw_key(&w, "network");
	cbw_map(&w, HAS("network.interface") + HAS("network.mac") + HAS("network.mtu") + 2);
	if (HAS("network.interface")) {
		cbw_key(&w, "interface");
		cbw_cstr(&w, "eth0");
	}
	if (HAS("network.mac")) {
		cbw_key(&w, "mac");
		cbw_array(&w, 6);
		for (i = 0; i < 6; i++)
			cbw_uint(&w, (uint64_t)i);
	}
	if (HAS("network.mtu")) {
		cbw_key(&w, "mtu");
		cbw_uint(&w, 1500);
	}
	for (i = 0; i < 2; i++) {
		const char *fam = i ? "ipv6" : "ipv4";
		size_t alen = i ? 16 : 4;
		char k[32];
		int j;

		cbw_key(&w, fam);
		snprintf(k, sizeof(k), "%s.address", fam);
		bool has_addr = HAS(k);
		snprintf(k, sizeof(k), "%s.prefix_len", fam);
		bool has_prefix = HAS(k);
		snprintf(k, sizeof(k), "%s.gateway", fam);
		bool has_gw = HAS(k);

		cbw_map(&w, has_addr + has_prefix + has_gw);
		if (has_addr) {
			cbw_key(&w, "address");
			cbw_array(&w, alen);
			for (j = 0; j < (int)alen; j++)
				cbw_uint(&w, 10);
		}
		if (has_prefix) {
			cbw_key(&w, "prefix_len");
			cbw_uint(&w, 8);
		}
		if (has_gw) {
			cbw_key(&w, "gateway");
			cbw_array(&w, alen);
			for (j = 0; j < (int)alen; j++)
				cbw_uint(&w, 1);
		}
	}

	wr_list1(&w, skip, &env);
	cbw_key(&w, "handoff_init");
	wr_texts(&w, skip, handoff, 1, 0);
#undef HAS
	return wr_done(&w);
}

Test(msg_boot, each_required_nested_field_missing_is_missing_field)
{
	static const char *const required[] = {
		"root.kind",
		"root.lower",
		"root.upper",
		"upper.device",
		"upper.fstype",
		"dir.tag",
		"dir.guest_path",
		"file.tag",
		"file.filename",
		"file.guest_path",
		"disk.id",
		"disk.guest_path",
		"tmpfs.path",
		"network.interface",
		"network.mac",
		"network.mtu",
		"ipv4.address",
		"ipv4.prefix_len",
		"ipv4.gateway",
		"ipv6.address",
		"ipv6.prefix_len",
		"ipv6.gateway",
		"env.key",
		"env.value",
		"handoff.cmd",
	};
	uint8_t buf[1024];
	struct proto_bootstrap d;
	unsigned i;
	int rc;

	cr_assert_eq(boot_decode(buf, wr_nested(buf, sizeof(buf), ""), &d), 0);
	cr_assert(d.network.ipv6.set && !d.network.ipv6.has_dns);
	cr_assert_eq(d.network.ipv6.gateway[15], 1);
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		rc = boot_decode(buf, wr_nested(buf, sizeof(buf), required[i]), &d);
		cr_assert_eq(rc, PROTO_E_MISSING_FIELD, "without %s: %d", required[i], rc);
	}
}

Test(msg_boot, disk_image_without_device_is_missing_field)
{
	uint8_t buf[128];
	struct proto_bootstrap d;
	struct cbw w;

	wr_begin(&w, buf, sizeof(buf), "block_root");
	cbw_map(&w, 2);
	cbw_key(&w, "kind");
	cbw_cstr(&w, "disk-image");
	cbw_key(&w, "fstype");
	cbw_cstr(&w, "ext4");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_MISSING_FIELD);
}

/* {"block_root": {"kind": <kind0>, ["kind": <kind1>,] "device": "/d"}} */
static size_t wr_root_kind(uint8_t *buf, size_t cap, const char *kind0, const char *kind1)
{
	struct cbw w;

	wr_begin(&w, buf, cap, "block_root");
	cbw_map(&w, kind1 ? 3 : 2);
	cbw_key(&w, "kind");
	if (kind0)
		cbw_cstr(&w, kind0);
	else
		cbw_uint(&w, 1);
	if (kind1) {
		cbw_key(&w, "kind");
		cbw_cstr(&w, kind1);
	}
	cbw_key(&w, "device");
	cbw_cstr(&w, "/d");
	return wr_done(&w);
}

Test(msg_boot, bad_tags_of_internally_tagged_maps_are_refused)
{
	static const struct {
		const char *kind0, *kind1; /* wr_root_kind's */
		int rc;
	} cases[] = {
		{"disk-image", NULL, 0},
		{"read-only-virtiofs", NULL, PROTO_E_BAD_VALUE},
		{"DiskImage", NULL, PROTO_E_BAD_VALUE},
		{NULL, NULL, PROTO_E_WRONG_TYPE},
		{"disk-image", "disk-image", PROTO_E_DUP_FIELD},
	};
	uint8_t buf[256];
	struct proto_bootstrap d;
	struct cbw w;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(
			boot_decode(buf,
				wr_root_kind(buf, sizeof(buf), cases[i].kind0, cases[i].kind1), &d),
			cases[i].rc, "case %zu", i);

	/* unknown upper kind */
	wr_begin(&w, buf, sizeof(buf), "block_root");
	cbw_map(&w, 3);
	cbw_key(&w, "kind");
	cbw_cstr(&w, "oci-erofs");
	cbw_key(&w, "lower");
	cbw_cstr(&w, "/a");
	cbw_key(&w, "upper");
	cbw_map(&w, 1);
	cbw_key(&w, "kind");
	cbw_cstr(&w, "overlay");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_BAD_VALUE);

	/* block_root as text */
	wr_begin(&w, buf, sizeof(buf), "block_root");
	cbw_cstr(&w, "disk-image");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_WRONG_TYPE);
}

/* An octet field as wr_net writes it. */
struct wr_octets {
	enum { OCT_UINTS, OCT_NEG, OCT_TEXT, OCT_BYTES } form;
	size_t n;      /* OCT_UINTS: an array of <n> uints 0, 1, ... */
	uint64_t last; /* OCT_UINTS: ... the last of which is <last> */
};

static void wr_octets(struct cbw *w, const struct wr_octets *o)
{
	size_t i;

	switch (o->form) {
	case OCT_UINTS:
		cbw_array(w, o->n);
		for (i = 0; i < o->n; i++)
			cbw_uint(w, i + 1 == o->n ? o->last : i);
		break;
	case OCT_NEG: /* [0, 0, 0, 0, 0, -1] */
		cbw_array(w, 6);
		for (i = 0; i < 5; i++)
			cbw_uint(w, 0);
		cbw_int(w, -1);
		break;
	case OCT_TEXT:
		cbw_cstr(w, "02:00:00:00:00:01");
		break;
	default: /* OCT_BYTES: 7 bytes */
		cbw_bytes(w, "1234567", 7);
		break;
	}
}

/* {"network": {"interface": "e", "mac": <mac>, "mtu": 1, ["ipv4": {address: <v4>, ...}]}} */
static size_t wr_net(
	uint8_t *buf, size_t cap, const struct wr_octets *mac, const struct wr_octets *v4)
{
	struct cbw w;

	wr_begin(&w, buf, cap, "network");
	cbw_map(&w, v4 ? 4 : 3);
	cbw_key(&w, "interface");
	cbw_cstr(&w, "e");
	cbw_key(&w, "mac");
	wr_octets(&w, mac);
	cbw_key(&w, "mtu");
	cbw_uint(&w, 1);
	if (v4) {
		cbw_key(&w, "ipv4");
		cbw_map(&w, 3);
		cbw_key(&w, "address");
		wr_octets(&w, v4);
		cbw_key(&w, "prefix_len");
		cbw_uint(&w, 24);
		cbw_key(&w, "gateway");
		cbw_array(&w, 4);
		for (int i = 0; i < 4; i++)
			cbw_uint(&w, 1);
	}
	return wr_done(&w);
}

Test(msg_boot, octet_arrays_of_the_wrong_size_or_range_are_refused)
{
	static const struct wr_octets mac_ok = {OCT_UINTS, 6, 255}, v4_ok = {OCT_UINTS, 4, 9};
	static const struct wr_octets v4_16 = {OCT_UINTS, 16, 1}, mac_neg = {OCT_NEG, 0, 0};
	static const struct {
		struct wr_octets mac;
		const struct wr_octets *v4; /* NULL: no ipv4 block */
		int rc;
	} bad[] = {
		{{OCT_UINTS, 7, 1}, NULL, PROTO_E_BAD_VALUE},
		{{OCT_UINTS, 5, 1}, NULL, PROTO_E_BAD_VALUE},
		{{OCT_UINTS, 6, 256}, NULL, PROTO_E_RANGE},
		{{OCT_TEXT, 0, 0}, NULL, PROTO_E_WRONG_TYPE},
		{{OCT_BYTES, 0, 0}, NULL, PROTO_E_BAD_VALUE},
		{{OCT_UINTS, 6, 255}, &v4_16, PROTO_E_BAD_VALUE},
	};
	uint8_t buf[256];
	struct proto_bootstrap d;
	uint8_t indef[256];
	size_t i, n;

	cr_assert_eq(boot_decode(buf, wr_net(buf, sizeof(buf), &mac_ok, &v4_ok), &d), 0);
	cr_assert_eq(d.network.mac[5], 255);
	cr_assert_eq(d.network.ipv4.address[3], 9);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(boot_decode(buf, wr_net(buf, sizeof(buf), &bad[i].mac, bad[i].v4), &d),
			bad[i].rc, "case %zu", i);
	cr_assert(boot_decode(buf, wr_net(buf, sizeof(buf), &mac_neg, NULL), &d) < 0);

	/* an indefinite array of 6 is fine: 86 -> 9f ... ff */
	n = wr_net(buf, sizeof(buf), &mac_ok, NULL);
	for (i = 0; i + 4 < n; i++) {
		if (memcmp(buf + i, "\x63mac\x86", 5) == 0) {
			memcpy(indef, buf, i + 4);
			indef[i + 4] = 0x9f;
			memcpy(indef + i + 5, buf + i + 5, 7); /* 0 1 2 3 4 18 ff */
			indef[i + 12] = 0xff;
			memcpy(indef + i + 13, buf + i + 12, n - (i + 12));
			cr_assert_eq(boot_decode(indef, n + 1, &d), 0);
			cr_assert_eq(d.network.mac[5], 255);
			return;
		}
	}
	cr_assert_fail("mac not found");
}

Test(msg_boot, wrong_types_and_ranges_are_refused)
{
	uint8_t buf[128];
	struct proto_bootstrap d;
	struct cbw w;

#define ONE_FIELD(key, write, expect)                                                              \
	do {                                                                                       \
		wr_begin(&w, buf, sizeof(buf), key);                                               \
		write;                                                                             \
		cr_assert_eq(boot_decode(buf, wr_done(&w), &d), expect, key);                      \
	} while (0)

	ONE_FIELD("security_profile", cbw_cstr(&w, "restricted"), 0);
	cr_assert_eq(d.security_profile, PROTO_BOOT_SECURITY_RESTRICTED);
	ONE_FIELD("security_profile", cbw_cstr(&w, "paranoid"), PROTO_E_BAD_VALUE);
	ONE_FIELD("security_profile", cbw_uint(&w, 1), PROTO_E_WRONG_TYPE);
	ONE_FIELD("security_profile", cbw_null(&w), PROTO_E_WRONG_TYPE);
	ONE_FIELD("hostname", cbw_uint(&w, 5), PROTO_E_WRONG_TYPE);
	ONE_FIELD("dir_mounts", cbw_map(&w, 0), PROTO_E_WRONG_TYPE);
	ONE_FIELD("dir_mounts", cbw_null(&w), PROTO_E_WRONG_TYPE);
	ONE_FIELD("default_env", cbw_array(&w, 1); cbw_cstr(&w, "A=1"), PROTO_E_WRONG_TYPE);
	ONE_FIELD("rlimits", cbw_array(&w, 1); cbw_map(&w, 1); cbw_key(&w, "resource");
		  cbw_cstr(&w, "nofile"), PROTO_E_MISSING_FIELD);
	ONE_FIELD("network", cbw_map(&w, 3); cbw_key(&w, "interface"); cbw_cstr(&w, "e");
		  cbw_key(&w, "mac"); cbw_bytes(&w, "123456", 6); cbw_key(&w, "mtu");
		  cbw_uint(&w, 70000), PROTO_E_RANGE);
	ONE_FIELD("tmpfs_mounts", cbw_array(&w, 1); cbw_map(&w, 2); cbw_key(&w, "path");
		  cbw_cstr(&w, "/t"); cbw_key(&w, "size_mib");
		  cbw_uint(&w, 1ull << 32), PROTO_E_RANGE);
	ONE_FIELD("handoff_init", cbw_map(&w, 2); cbw_key(&w, "cmd"); cbw_cstr(&w, "auto");
		  cbw_key(&w, "args"); cbw_cstr(&w, "-v"), PROTO_E_WRONG_TYPE);
	ONE_FIELD("dir_mounts", cbw_array(&w, 1); cbw_map(&w, 3); cbw_key(&w, "tag");
		  cbw_cstr(&w, "t"); cbw_key(&w, "guest_path"); cbw_cstr(&w, "/t");
		  cbw_key(&w, "flags"); cbw_map(&w, 1); cbw_key(&w, "readonly");
		  cbw_uint(&w, 1), PROTO_E_WRONG_TYPE);
#undef ONE_FIELD

	/* the payload itself must be a map */
	cbw_init(&w, buf, sizeof(buf));
	cbw_array(&w, 0);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_WRONG_TYPE);
}

Test(msg_boot, prefix_len_over_255_is_range)
{
	uint8_t buf[256];
	struct proto_bootstrap d;
	struct cbw w;

	wr_begin(&w, buf, sizeof(buf), "network");
	cbw_map(&w, 4);
	cbw_key(&w, "interface");
	cbw_cstr(&w, "e");
	cbw_key(&w, "mac");
	cbw_bytes(&w, "123456", 6);
	cbw_key(&w, "mtu");
	cbw_uint(&w, 1500);
	cbw_key(&w, "ipv6");
	cbw_map(&w, 3);
	cbw_key(&w, "address");
	cbw_bytes(&w, "0123456789abcdef", 16);
	cbw_key(&w, "prefix_len");
	cbw_uint(&w, 256);
	cbw_key(&w, "gateway");
	cbw_bytes(&w, "0123456789abcdef", 16);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_RANGE);
}

Test(msg_boot, duplicate_keys_are_dup_field)
{
	uint8_t buf[256];
	struct proto_bootstrap d;
	struct cbw w;

	/* top level, even with a null first value */
	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 2);
	cbw_key(&w, "hostname");
	cbw_null(&w);
	cbw_key(&w, "hostname");
	cbw_cstr(&w, "h");
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);

	/* inside mount flags */
	wr_begin(&w, buf, sizeof(buf), "tmpfs_mounts");
	cbw_array(&w, 1);
	cbw_map(&w, 2);
	cbw_key(&w, "path");
	cbw_cstr(&w, "/t");
	cbw_key(&w, "flags");
	cbw_map(&w, 2);
	cbw_key(&w, "nodev");
	cbw_bool(&w, true);
	cbw_key(&w, "nodev");
	cbw_bool(&w, true);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);

	/* inside the network block */
	wr_begin(&w, buf, sizeof(buf), "network");
	cbw_map(&w, 4);
	cbw_key(&w, "interface");
	cbw_cstr(&w, "e");
	cbw_key(&w, "mtu");
	cbw_uint(&w, 1);
	cbw_key(&w, "mac");
	cbw_bytes(&w, "123456", 6);
	cbw_key(&w, "mtu");
	cbw_uint(&w, 2);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);

	/* the extension key */
	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 2);
	cbw_key(&w, "sandwire");
	cbw_map(&w, 0);
	cbw_key(&w, "sandwire");
	cbw_map(&w, 0);
	cr_assert_eq(boot_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);
}

Test(msg_boot, truncation_at_every_offset_is_truncated)
{
	static uint8_t buf[4096];
	struct proto_bootstrap m = full();
	long n;

	boot_check_truncation(buf, vec_payload("V01", buf, sizeof(buf)));
	boot_check_truncation(buf, vec_payload("V44", buf, sizeof(buf)));
	n = boot_encode(&m, buf, sizeof(buf));
	cr_assert(n > 0);
	boot_check_truncation(buf, (size_t)n);
}

Test(msg_boot, many_mounts_exhausting_the_arena_are_nospace)
{
	static struct proto_boot_dir_mount dirs[50];
	static uint8_t buf[8192];
	struct proto_bootstrap m, d;
	struct proto_arena a;
	uint8_t small[512];
	unsigned i;
	long n;

	for (i = 0; i < 50; i++)
		dirs[i] = (struct proto_boot_dir_mount){S("tag"), S("/m"), {i % 2, 0, 0, 1}};
	memset(&m, 0, sizeof(m));
	m.dir_mounts = dirs;
	m.n_dir_mounts = 50;
	n = boot_encode(&m, buf, sizeof(buf));
	cr_assert(n > 0);
	proto_arena_init(&a, small, sizeof(small));
	cr_assert_eq(boot_decode_arena(buf, (size_t)n, &d, &a), PROTO_E_NOSPACE);
	cr_assert_eq(boot_decode_arena(buf, (size_t)n, &d, NULL), PROTO_E_NOSPACE);
	cr_assert_eq(boot_decode(buf, (size_t)n, &d), 0);
	assert_boot_eq(&d, &m);

	/* the default bootstrap needs no arena */
	n = vec_payload("V01", buf, sizeof(buf));
	cr_assert_eq(boot_decode_arena(buf, (size_t)n, &d, NULL), 0);
}

Test(msg_boot, encoder_reports_nospace_at_every_short_capacity)
{
	struct proto_bootstrap m = full();

	boot_check_nospace(&m);
}

Test(msg_boot, encoder_rejects_out_of_range_enums)
{
	uint8_t buf[256];
	struct proto_bootstrap m;

	memset(&m, 0, sizeof(m));
	m.security_profile = (enum proto_boot_security)2;
	cr_assert_eq(boot_encode(&m, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
	memset(&m, 0, sizeof(m));
	m.block_root.kind = (enum proto_boot_root_kind)3;
	cr_assert_eq(boot_encode(&m, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
	m.block_root.kind = PROTO_BOOT_ROOT_OCI_EROFS;
	m.block_root.upper.kind = (enum proto_boot_upper_kind)2;
	cr_assert_eq(boot_encode(&m, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
}
