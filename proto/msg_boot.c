/*
 * proto/msg_boot.c - GuestBootstrap payload codec (spec 3.6).
 *
 * Every struct is decoded by one table-driven loop (boot_map_decode): its
 * keys are listed in a names table, in wire order; a bit per key catches
 * duplicates and missing required fields.  The internally tagged maps
 * (block_root, upper) are read in two passes: the first finds "kind"
 * wherever it is (serde buffers the map the same way), the second decodes
 * the variant's fields from the start of the map.
 */
#include <stdint.h>
#include <string.h>

#include "proto/error.h"
#include "proto/msg_boot.h"

#define BOOT_BIT(i) (1u << (i))
#define BOOT_NKEYS(t) ((unsigned)(sizeof(t) / sizeof((t)[0])))
#define BOOT_ALL(n) ((uint32_t)((1ull << (n)) - 1))

static const char *const boot_root_kinds[] = {"disk-image", "oci-erofs"};
static const char *const boot_upper_kinds[] = {"device", "tmpfs"};
static const char *const boot_security_names[] = {"default", "restricted"};

/* ---- decoding helpers ---- */

/* Index of <s> in <names> (<n> entries), or -1. */
static int boot_lookup(struct proto_str s, const char *const *names, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (proto_str_eq(s, names[i]))
			return (int)i;
	return -1;
}

typedef int (*boot_field_fn)(struct cbr *r, void *obj, unsigned field);

/*
 * Decode the map at <r>: a key found in <names> (<n> <= 32 entries) whose
 * bit is in <allowed> goes to <fn> with its index; other keys are skipped.
 * Returns 0, PROTO_E_DUP_FIELD, PROTO_E_MISSING_FIELD when a bit of
 * <required> was not seen, or the first error of the reader or <fn>.
 */
static int boot_map_decode(struct cbr *r, const char *const *names, unsigned n, uint32_t allowed,
	uint32_t required, boot_field_fn fn, void *obj)
{
	struct cbr_agg m;
	struct proto_str key;
	uint32_t seen = 0;
	int rc, idx;

	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		rc = cbr_key(r, &key);
		if (rc < 0)
			return rc;
		idx = boot_lookup(key, names, n);
		if (idx < 0 || !(allowed & BOOT_BIT(idx)))
			rc = cbr_skip(r);
		else if (seen & BOOT_BIT(idx))
			rc = PROTO_E_DUP_FIELD;
		else {
			seen |= BOOT_BIT(idx);
			rc = fn(r, obj, (unsigned)idx);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	return (seen & required) == required ? 0 : PROTO_E_MISSING_FIELD;
}

typedef int (*boot_elem_fn)(struct cbr *r, void *elem);

/*
 * Decode an array of <size>-byte elements with <fn> into one zeroed block
 * of r->arena.  A definite array's count comes from its head (the reader
 * refuses a count larger than the bytes left); an indefinite one is
 * counted by a skipping pass first.  An empty array gives NULL, 0.
 */
static int boot_list_decode(struct cbr *r, size_t size, boot_elem_fn fn, void **out, size_t *count)
{
	struct cbr_agg a, a0;
	struct cbr r0;
	uint8_t *v = NULL;
	size_t n = 0, i = 0;
	int rc;

	rc = cbr_enter_array(r, &a);
	if (rc < 0)
		return rc;
	if (a.indef) {
		r0 = *r;
		a0 = a;
		while ((rc = cbr_agg_next(r, &a)) > 0) {
			rc = cbr_skip(r);
			if (rc < 0)
				return rc;
			n++;
		}
		if (rc < 0)
			return rc;
		*r = r0;
		a = a0;
	} else {
		n = (size_t)a.left; /* cbr_enter_array bounded it by the bytes left */
	}
	if (n) {
		v = r->arena ? proto_arena_alloc(r->arena, n * size) : NULL;
		if (!v)
			return PROTO_E_NOSPACE;
		memset(v, 0, n * size);
	}
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		rc = fn(r, v + size * i++);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	*out = v;
	*count = n;
	return 0;
}

static int boot_opt_u32(struct cbr *r, struct proto_opt_u32 *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_u32(r, &o->v) : 0;
}

static int boot_opt_str(struct cbr *r, struct proto_opt_str *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_text(r, &o->v) : 0;
}

/* A text enum: its index in <names>, or PROTO_E_BAD_VALUE. */
static int boot_name_decode(struct cbr *r, const char *const *names, unsigned n, int *k)
{
	struct proto_str s;
	int rc = cbr_text(r, &s);

	if (rc < 0)
		return rc;
	*k = boot_lookup(s, names, n);
	return *k < 0 ? PROTO_E_BAD_VALUE : 0;
}

/*
 * Find the "kind" of the internally tagged map at <r> (any position) and
 * return its index in <names> through <kind>; <r> is left on the map.
 */
static int boot_tag_find(struct cbr *r, const char *const *names, unsigned n, int *kind)
{
	struct cbr save = *r;
	struct cbr_agg m;
	struct proto_str key;
	bool seen = false;
	int rc;

	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		rc = cbr_key(r, &key);
		if (rc < 0)
			return rc;
		if (!proto_str_eq(key, "kind"))
			rc = cbr_skip(r);
		else if (seen)
			rc = PROTO_E_DUP_FIELD;
		else {
			seen = true;
			rc = boot_name_decode(r, names, n, kind);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (!seen)
		return PROTO_E_MISSING_FIELD;
	*r = save;
	return 0;
}

/*
 * Octets (MAC, IP address): an array of exactly <n> uints 0..255, or a
 * byte string of <n> bytes (spec 2.2 reader rule 6).  Tags are skipped.
 */
static int boot_octets_decode(struct cbr *r, uint8_t *out, size_t n)
{
	struct cbr_item it;
	struct cbr_agg a;
	const uint8_t *p;
	size_t len, i = 0;
	int rc;

	for (;;) {
		rc = cbr_peek(r, &it);
		if (rc < 0)
			return rc;
		if (it.kind != CBR_TAG)
			break;
		rc = cbr_next(r, &it);
		if (rc < 0)
			return rc;
	}
	if (it.kind == CBR_ARRAY || it.kind == CBR_ARRAY_INDEF) {
		rc = cbr_enter_array(r, &a);
		if (rc < 0)
			return rc;
		while ((rc = cbr_agg_next(r, &a)) > 0) {
			if (i == n)
				return PROTO_E_BAD_VALUE;
			rc = cbr_u8(r, &out[i++]);
			if (rc < 0)
				return rc;
		}
		if (rc < 0)
			return rc;
		return i == n ? 0 : PROTO_E_BAD_VALUE;
	}
	rc = cbr_bytes(r, &p, &len);
	if (rc < 0)
		return rc;
	if (len != n)
		return PROTO_E_BAD_VALUE;
	memcpy(out, p, n);
	return 0;
}

/* ---- encoding helpers ---- */

static void boot_put_str(struct cbw *w, struct proto_str s)
{
	cbw_text(w, s.ptr, s.len);
}

static void boot_put_octets(struct cbw *w, const uint8_t *p, size_t n)
{
	size_t i;

	cbw_array(w, n);
	for (i = 0; i < n; i++)
		cbw_uint(w, p[i]);
}

/* ---- MountFlags ---- */

static const char *const boot_flags_keys[] = {"readonly", "noexec", "nosuid", "nodev"};

static void boot_flags_encode(struct cbw *w, const struct proto_boot_mount_flags *f)
{
	cbw_key(w, "flags");
	cbw_map(w, 4);
	cbw_key(w, "readonly");
	cbw_bool(w, f->readonly);
	cbw_key(w, "noexec");
	cbw_bool(w, f->noexec);
	cbw_key(w, "nosuid");
	cbw_bool(w, f->nosuid);
	cbw_key(w, "nodev");
	cbw_bool(w, f->nodev);
}

static int boot_flags_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_mount_flags *f = obj;
	bool *const v[4] = {&f->readonly, &f->noexec, &f->nosuid, &f->nodev};

	return cbr_bool(r, v[field]);
}

static int boot_flags_decode(struct cbr *r, struct proto_boot_mount_flags *f)
{
	return boot_map_decode(r, boot_flags_keys, 4, BOOT_ALL(4), 0, boot_flags_field, f);
}

/* ---- mounts ---- */

static const char *const boot_dir_keys[] = {"tag", "guest_path", "flags"};

static int boot_dir_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_dir_mount *d = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &d->tag);
	case 1:
		return cbr_text(r, &d->guest_path);
	default:
		return boot_flags_decode(r, &d->flags);
	}
}

static int boot_dir_decode(struct cbr *r, void *elem)
{
	return boot_map_decode(r, boot_dir_keys, 3, BOOT_ALL(3), BOOT_ALL(2), boot_dir_field, elem);
}

static const char *const boot_file_keys[] = {"tag", "filename", "guest_path", "flags"};

static int boot_file_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_file_mount *f = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &f->tag);
	case 1:
		return cbr_text(r, &f->filename);
	case 2:
		return cbr_text(r, &f->guest_path);
	default:
		return boot_flags_decode(r, &f->flags);
	}
}

static int boot_file_decode(struct cbr *r, void *elem)
{
	return boot_map_decode(
		r, boot_file_keys, 4, BOOT_ALL(4), BOOT_ALL(3), boot_file_field, elem);
}

static const char *const boot_disk_keys[] = {"id", "guest_path", "fstype", "flags"};

static int boot_disk_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_disk_mount *d = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &d->id);
	case 1:
		return cbr_text(r, &d->guest_path);
	case 2:
		return boot_opt_str(r, &d->fstype);
	default:
		return boot_flags_decode(r, &d->flags);
	}
}

static int boot_disk_decode(struct cbr *r, void *elem)
{
	return boot_map_decode(
		r, boot_disk_keys, 4, BOOT_ALL(4), BOOT_ALL(2), boot_disk_field, elem);
}

static const char *const boot_tmpfs_keys[] = {"path", "size_mib", "mode", "flags"};

static int boot_tmpfs_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_tmpfs_mount *t = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &t->path);
	case 1:
		return boot_opt_u32(r, &t->size_mib);
	case 2:
		return boot_opt_u32(r, &t->mode);
	default:
		return boot_flags_decode(r, &t->flags);
	}
}

static int boot_tmpfs_decode(struct cbr *r, void *elem)
{
	return boot_map_decode(
		r, boot_tmpfs_keys, 4, BOOT_ALL(4), BOOT_BIT(0), boot_tmpfs_field, elem);
}

static void boot_mounts_encode(struct cbw *w, const struct proto_bootstrap *m)
{
	size_t i;

	if (m->n_dir_mounts) {
		cbw_key(w, "dir_mounts");
		cbw_array(w, m->n_dir_mounts);
		for (i = 0; i < m->n_dir_mounts; i++) {
			const struct proto_boot_dir_mount *d = &m->dir_mounts[i];

			cbw_map(w, 3);
			cbw_key(w, "tag");
			boot_put_str(w, d->tag);
			cbw_key(w, "guest_path");
			boot_put_str(w, d->guest_path);
			boot_flags_encode(w, &d->flags);
		}
	}
	if (m->n_file_mounts) {
		cbw_key(w, "file_mounts");
		cbw_array(w, m->n_file_mounts);
		for (i = 0; i < m->n_file_mounts; i++) {
			const struct proto_boot_file_mount *f = &m->file_mounts[i];

			cbw_map(w, 4);
			cbw_key(w, "tag");
			boot_put_str(w, f->tag);
			cbw_key(w, "filename");
			boot_put_str(w, f->filename);
			cbw_key(w, "guest_path");
			boot_put_str(w, f->guest_path);
			boot_flags_encode(w, &f->flags);
		}
	}
	if (m->n_disk_mounts) {
		cbw_key(w, "disk_mounts");
		cbw_array(w, m->n_disk_mounts);
		for (i = 0; i < m->n_disk_mounts; i++) {
			const struct proto_boot_disk_mount *d = &m->disk_mounts[i];

			cbw_map(w, 3 + d->fstype.set);
			cbw_key(w, "id");
			boot_put_str(w, d->id);
			cbw_key(w, "guest_path");
			boot_put_str(w, d->guest_path);
			if (d->fstype.set) {
				cbw_key(w, "fstype");
				boot_put_str(w, d->fstype.v);
			}
			boot_flags_encode(w, &d->flags);
		}
	}
	if (m->n_tmpfs_mounts) {
		cbw_key(w, "tmpfs_mounts");
		cbw_array(w, m->n_tmpfs_mounts);
		for (i = 0; i < m->n_tmpfs_mounts; i++) {
			const struct proto_boot_tmpfs_mount *t = &m->tmpfs_mounts[i];

			cbw_map(w, 2 + t->size_mib.set + t->mode.set);
			cbw_key(w, "path");
			boot_put_str(w, t->path);
			if (t->size_mib.set) {
				cbw_key(w, "size_mib");
				cbw_uint(w, t->size_mib.v);
			}
			if (t->mode.set) {
				cbw_key(w, "mode");
				cbw_uint(w, t->mode.v);
			}
			boot_flags_encode(w, &t->flags);
		}
	}
}

/* ---- block_root and its upper (internally tagged) ---- */

/* Keys of both variants; bit 0 ("kind") is read by boot_tag_find only. */
static const char *const boot_upper_keys[] = {"kind", "device", "fstype", "size_mib"};

static int boot_upper_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_upper *u = obj;

	switch (field) {
	case 1:
		return cbr_text(r, &u->device);
	case 2:
		return cbr_text(r, &u->fstype);
	default: /* 3 */
		return boot_opt_u32(r, &u->size_mib);
	}
}

static int boot_upper_decode(struct cbr *r, struct proto_boot_upper *u)
{
	const uint32_t device = BOOT_BIT(1) | BOOT_BIT(2);
	int rc, k;

	rc = boot_tag_find(r, boot_upper_kinds, BOOT_NKEYS(boot_upper_kinds), &k);
	if (rc < 0)
		return rc;
	u->kind = (enum proto_boot_upper_kind)k;
	if (u->kind == PROTO_BOOT_UPPER_DEVICE)
		return boot_map_decode(r, boot_upper_keys, 4, device, device, boot_upper_field, u);
	return boot_map_decode(r, boot_upper_keys, 4, BOOT_BIT(3), 0, boot_upper_field, u);
}

static const char *const boot_root_keys[] = {"kind", "device", "fstype", "lower", "upper"};

static int boot_root_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_block_root *b = obj;

	switch (field) {
	case 1:
		return cbr_text(r, &b->device);
	case 2:
		return boot_opt_str(r, &b->fstype);
	case 3:
		return cbr_text(r, &b->lower);
	default: /* 4 */
		return boot_upper_decode(r, &b->upper);
	}
}

static int boot_root_decode(struct cbr *r, struct proto_boot_block_root *b)
{
	const uint32_t disk = BOOT_BIT(1) | BOOT_BIT(2);
	const uint32_t erofs = BOOT_BIT(3) | BOOT_BIT(4);
	int rc, k;

	rc = cbr_absent(r);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* null: kind stays NONE */
	rc = boot_tag_find(r, boot_root_kinds, BOOT_NKEYS(boot_root_kinds), &k);
	if (rc < 0)
		return rc;
	b->kind = (enum proto_boot_root_kind)(k + 1);
	if (b->kind == PROTO_BOOT_ROOT_DISK_IMAGE)
		return boot_map_decode(r, boot_root_keys, 5, disk, BOOT_BIT(1), boot_root_field, b);
	return boot_map_decode(r, boot_root_keys, 5, erofs, erofs, boot_root_field, b);
}

static int boot_root_encode(struct cbw *w, const struct proto_boot_block_root *b)
{
	const struct proto_boot_upper *u = &b->upper;

	cbw_key(w, "block_root");
	switch (b->kind) {
	case PROTO_BOOT_ROOT_DISK_IMAGE:
		cbw_map(w, 2 + b->fstype.set);
		cbw_key(w, "kind");
		cbw_cstr(w, "disk-image");
		cbw_key(w, "device");
		boot_put_str(w, b->device);
		if (b->fstype.set) {
			cbw_key(w, "fstype");
			boot_put_str(w, b->fstype.v);
		}
		return 0;
	case PROTO_BOOT_ROOT_OCI_EROFS:
		cbw_map(w, 3);
		cbw_key(w, "kind");
		cbw_cstr(w, "oci-erofs");
		cbw_key(w, "lower");
		boot_put_str(w, b->lower);
		cbw_key(w, "upper");
		break;
	default:
		return PROTO_E_BAD_VALUE;
	}
	switch (u->kind) {
	case PROTO_BOOT_UPPER_DEVICE:
		cbw_map(w, 3);
		cbw_key(w, "kind");
		cbw_cstr(w, "device");
		cbw_key(w, "device");
		boot_put_str(w, u->device);
		cbw_key(w, "fstype");
		boot_put_str(w, u->fstype);
		return 0;
	case PROTO_BOOT_UPPER_TMPFS:
		cbw_map(w, 1 + u->size_mib.set);
		cbw_key(w, "kind");
		cbw_cstr(w, "tmpfs");
		if (u->size_mib.set) {
			cbw_key(w, "size_mib");
			cbw_uint(w, u->size_mib.v);
		}
		return 0;
	default:
		return PROTO_E_BAD_VALUE;
	}
}

/* ---- network ---- */

static const char *const boot_ip_keys[] = {"address", "prefix_len", "gateway", "dns"};

/* Where one IP block (v4 or v6) is decoded to. */
struct boot_ip_dst {
	size_t alen; /* address length: 4 or 16 */
	uint8_t *address;
	uint8_t *prefix_len;
	uint8_t *gateway;
	bool *has_dns;
	uint8_t *dns;
};

static int boot_ip_field(struct cbr *r, void *obj, unsigned field)
{
	struct boot_ip_dst *d = obj;
	int rc;

	switch (field) {
	case 0:
		return boot_octets_decode(r, d->address, d->alen);
	case 1:
		return cbr_u8(r, d->prefix_len);
	case 2:
		return boot_octets_decode(r, d->gateway, d->alen);
	default:
		rc = cbr_absent(r);
		if (rc != 0)
			return rc < 0 ? rc : 0;
		*d->has_dns = true;
		return boot_octets_decode(r, d->dns, d->alen);
	}
}

/* An Option IP block: null leaves <*set> false. */
static int boot_ip_decode(struct cbr *r, bool *set, struct boot_ip_dst *d)
{
	int rc = cbr_absent(r);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	*set = true;
	return boot_map_decode(r, boot_ip_keys, 4, BOOT_ALL(4), BOOT_ALL(3), boot_ip_field, d);
}

static void boot_ip_encode(struct cbw *w, const char *key, const uint8_t *address,
	uint8_t prefix_len, const uint8_t *gateway, const uint8_t *dns, size_t alen)
{
	cbw_key(w, key);
	cbw_map(w, 3 + (dns != NULL));
	cbw_key(w, "address");
	boot_put_octets(w, address, alen);
	cbw_key(w, "prefix_len");
	cbw_uint(w, prefix_len);
	cbw_key(w, "gateway");
	boot_put_octets(w, gateway, alen);
	if (dns) {
		cbw_key(w, "dns");
		boot_put_octets(w, dns, alen);
	}
}

static const char *const boot_net_keys[] = {"interface", "mac", "mtu", "ipv4", "ipv6"};

static int boot_net_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_network *n = obj;
	struct boot_ip_dst v4 = {
		4,
		n->ipv4.address,
		&n->ipv4.prefix_len,
		n->ipv4.gateway,
		&n->ipv4.has_dns,
		n->ipv4.dns,
	};
	struct boot_ip_dst v6 = {
		16,
		n->ipv6.address,
		&n->ipv6.prefix_len,
		n->ipv6.gateway,
		&n->ipv6.has_dns,
		n->ipv6.dns,
	};

	switch (field) {
	case 0:
		return cbr_text(r, &n->interface);
	case 1:
		return boot_octets_decode(r, n->mac, sizeof(n->mac));
	case 2:
		return cbr_u16(r, &n->mtu);
	case 3:
		return boot_ip_decode(r, &n->ipv4.set, &v4);
	default:
		return boot_ip_decode(r, &n->ipv6.set, &v6);
	}
}

static int boot_net_decode(struct cbr *r, struct proto_boot_network *n)
{
	int rc = cbr_absent(r);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	n->set = true;
	return boot_map_decode(r, boot_net_keys, 5, BOOT_ALL(5), BOOT_ALL(3), boot_net_field, n);
}

static void boot_net_encode(struct cbw *w, const struct proto_boot_network *n)
{
	const struct proto_boot_ipv4 *v4 = &n->ipv4;
	const struct proto_boot_ipv6 *v6 = &n->ipv6;

	cbw_key(w, "network");
	cbw_map(w, 3 + v4->set + v6->set);
	cbw_key(w, "interface");
	boot_put_str(w, n->interface);
	cbw_key(w, "mac");
	boot_put_octets(w, n->mac, sizeof(n->mac));
	cbw_key(w, "mtu");
	cbw_uint(w, n->mtu);
	if (v4->set)
		boot_ip_encode(w, "ipv4", v4->address, v4->prefix_len, v4->gateway,
			v4->has_dns ? v4->dns : NULL, 4);
	if (v6->set)
		boot_ip_encode(w, "ipv6", v6->address, v6->prefix_len, v6->gateway,
			v6->has_dns ? v6->dns : NULL, 16);
}

/* ---- environment, handoff, sandwire extension ---- */

static const char *const boot_env_keys[] = {"key", "value"};

static int boot_env_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_env *e = obj;

	return cbr_text(r, field == 0 ? &e->key : &e->value);
}

static int boot_env_decode(struct cbr *r, void *elem)
{
	return boot_map_decode(r, boot_env_keys, 2, BOOT_ALL(2), BOOT_ALL(2), boot_env_field, elem);
}

static int boot_envs_decode(struct cbr *r, struct proto_boot_env **env, size_t *n)
{
	void *v = NULL;
	int rc = boot_list_decode(r, sizeof(**env), boot_env_decode, &v, n);

	*env = v;
	return rc;
}

static void boot_envs_encode(
	struct cbw *w, const char *key, const struct proto_boot_env *env, size_t n)
{
	size_t i;

	cbw_key(w, key);
	cbw_array(w, n);
	for (i = 0; i < n; i++) {
		cbw_map(w, 2);
		cbw_key(w, "key");
		boot_put_str(w, env[i].key);
		cbw_key(w, "value");
		boot_put_str(w, env[i].value);
	}
}

static const char *const boot_handoff_keys[] = {"cmd", "args", "cwd", "env"};

static int boot_handoff_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_handoff *h = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &h->cmd);
	case 1:
		return proto_strs_decode(r, &h->args, &h->n_args);
	case 2:
		return boot_opt_str(r, &h->cwd);
	default:
		return boot_envs_decode(r, &h->env, &h->n_env);
	}
}

static int boot_handoff_decode(struct cbr *r, struct proto_boot_handoff *h)
{
	int rc = cbr_absent(r);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	h->set = true;
	return boot_map_decode(
		r, boot_handoff_keys, 4, BOOT_ALL(4), BOOT_BIT(0), boot_handoff_field, h);
}

static void boot_handoff_encode(struct cbw *w, const struct proto_boot_handoff *h)
{
	cbw_key(w, "handoff_init");
	cbw_map(w, 1 + (h->n_args != 0) + h->cwd.set + (h->n_env != 0));
	cbw_key(w, "cmd");
	boot_put_str(w, h->cmd);
	if (h->n_args) {
		cbw_key(w, "args");
		proto_strs_encode(w, h->args, h->n_args);
	}
	if (h->cwd.set) {
		cbw_key(w, "cwd");
		boot_put_str(w, h->cwd.v);
	}
	if (h->n_env)
		boot_envs_encode(w, "env", h->env, h->n_env);
}

static const char *const boot_ext_keys[] = {"ext"};

static int boot_ext_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_bootstrap *m = obj;

	(void)field; /* "ext" is the only key */
	return proto_strs_decode(r, &m->ext, &m->n_ext);
}

/* {"ext": [names...]}; null or a missing "ext" mean no extension. */
static int boot_ext_decode(struct cbr *r, struct proto_bootstrap *m)
{
	int rc = cbr_absent(r);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	return boot_map_decode(r, boot_ext_keys, 1, 1, 0, boot_ext_field, m);
}

/* ---- GuestBootstrap ---- */

enum boot_key {
	K_BLOCK_ROOT,
	K_DIR_MOUNTS,
	K_FILE_MOUNTS,
	K_DISK_MOUNTS,
	K_TMPFS_MOUNTS,
	K_HOSTNAME,
	K_HOST_ALIAS,
	K_NETWORK,
	K_RLIMITS,
	K_USER,
	K_DEFAULT_CWD,
	K_DEFAULT_ENV,
	K_SECURITY_PROFILE,
	K_HANDOFF_INIT,
	K_SANDWIRE,
	K_COUNT
};

static const char *const boot_keys[K_COUNT] = {
	[K_BLOCK_ROOT] = "block_root",
	[K_DIR_MOUNTS] = "dir_mounts",
	[K_FILE_MOUNTS] = "file_mounts",
	[K_DISK_MOUNTS] = "disk_mounts",
	[K_TMPFS_MOUNTS] = "tmpfs_mounts",
	[K_HOSTNAME] = "hostname",
	[K_HOST_ALIAS] = "host_alias",
	[K_NETWORK] = "network",
	[K_RLIMITS] = "rlimits",
	[K_USER] = "user",
	[K_DEFAULT_CWD] = "default_cwd",
	[K_DEFAULT_ENV] = "default_env",
	[K_SECURITY_PROFILE] = "security_profile",
	[K_HANDOFF_INIT] = "handoff_init",
	[K_SANDWIRE] = "sandwire",
};

static int boot_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_bootstrap *m = obj;
	void *v = NULL;
	int rc, k;

	switch (field) {
	case K_BLOCK_ROOT:
		return boot_root_decode(r, &m->block_root);
	case K_DIR_MOUNTS:
		rc = boot_list_decode(
			r, sizeof(*m->dir_mounts), boot_dir_decode, &v, &m->n_dir_mounts);
		m->dir_mounts = v;
		return rc;
	case K_FILE_MOUNTS:
		rc = boot_list_decode(
			r, sizeof(*m->file_mounts), boot_file_decode, &v, &m->n_file_mounts);
		m->file_mounts = v;
		return rc;
	case K_DISK_MOUNTS:
		rc = boot_list_decode(
			r, sizeof(*m->disk_mounts), boot_disk_decode, &v, &m->n_disk_mounts);
		m->disk_mounts = v;
		return rc;
	case K_TMPFS_MOUNTS:
		rc = boot_list_decode(
			r, sizeof(*m->tmpfs_mounts), boot_tmpfs_decode, &v, &m->n_tmpfs_mounts);
		m->tmpfs_mounts = v;
		return rc;
	case K_HOSTNAME:
		return boot_opt_str(r, &m->hostname);
	case K_HOST_ALIAS:
		return boot_opt_str(r, &m->host_alias);
	case K_NETWORK:
		return boot_net_decode(r, &m->network);
	case K_RLIMITS:
		return proto_rlimits_decode(r, &m->rlimits, &m->n_rlimits);
	case K_USER:
		return boot_opt_str(r, &m->user);
	case K_DEFAULT_CWD:
		return boot_opt_str(r, &m->default_cwd);
	case K_DEFAULT_ENV:
		return boot_envs_decode(r, &m->default_env, &m->n_default_env);
	case K_SECURITY_PROFILE:
		rc = boot_name_decode(r, boot_security_names, BOOT_NKEYS(boot_security_names), &k);
		if (rc < 0)
			return rc;
		m->security_profile = (enum proto_boot_security)k;
		return 0;
	case K_HANDOFF_INIT:
		return boot_handoff_decode(r, &m->handoff_init);
	default: /* K_SANDWIRE */
		return boot_ext_decode(r, m);
	}
}

int proto_bootstrap_decode(struct cbr *r, struct proto_bootstrap *m)
{
	memset(m, 0, sizeof(*m));
	return boot_map_decode(r, boot_keys, K_COUNT, BOOT_ALL(K_COUNT), 0, boot_field, m);
}

int proto_bootstrap_encode(struct cbw *w, const struct proto_bootstrap *m)
{
	size_t n = 1; /* security_profile is always written */
	int rc;

	if ((unsigned)m->security_profile >= BOOT_NKEYS(boot_security_names))
		return PROTO_E_BAD_VALUE;
	n += m->block_root.kind != PROTO_BOOT_ROOT_NONE;
	n += (m->n_dir_mounts != 0) + (m->n_file_mounts != 0);
	n += (m->n_disk_mounts != 0) + (m->n_tmpfs_mounts != 0);
	n += m->hostname.set + m->host_alias.set + m->network.set;
	n += (m->n_rlimits != 0) + m->user.set + m->default_cwd.set;
	n += (m->n_default_env != 0) + m->handoff_init.set + (m->n_ext != 0);

	cbw_map(w, n);
	if (m->block_root.kind != PROTO_BOOT_ROOT_NONE) {
		rc = boot_root_encode(w, &m->block_root);
		if (rc < 0)
			return rc;
	}
	boot_mounts_encode(w, m);
	if (m->hostname.set) {
		cbw_key(w, "hostname");
		boot_put_str(w, m->hostname.v);
	}
	if (m->host_alias.set) {
		cbw_key(w, "host_alias");
		boot_put_str(w, m->host_alias.v);
	}
	if (m->network.set)
		boot_net_encode(w, &m->network);
	if (m->n_rlimits) {
		cbw_key(w, "rlimits");
		rc = proto_rlimits_encode(w, m->rlimits, m->n_rlimits);
		if (rc < 0)
			return rc;
	}
	if (m->user.set) {
		cbw_key(w, "user");
		boot_put_str(w, m->user.v);
	}
	if (m->default_cwd.set) {
		cbw_key(w, "default_cwd");
		boot_put_str(w, m->default_cwd.v);
	}
	if (m->n_default_env)
		boot_envs_encode(w, "default_env", m->default_env, m->n_default_env);
	cbw_key(w, "security_profile");
	cbw_cstr(w, boot_security_names[m->security_profile]);
	if (m->handoff_init.set)
		boot_handoff_encode(w, &m->handoff_init);
	if (m->n_ext) {
		cbw_key(w, "sandwire");
		cbw_map(w, 1);
		cbw_key(w, "ext");
		proto_strs_encode(w, m->ext, m->n_ext);
	}
	return w->err;
}
