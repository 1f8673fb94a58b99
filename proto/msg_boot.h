/*
 * proto/msg_boot.h - the GuestBootstrap payload of core.bootstrap (spec
 * protocol.md 3.6), plus sandwire's extension announcement (wire.md "Boot
 * and announcement").
 *
 * The zero struct is GuestBootstrap::default(): it encodes as
 * {"security_profile": "default"} (V01).  Encoding follows the reference
 * exactly: fields in declaration order, Option fields omitted when unset,
 * lists omitted when empty, security_profile always written; block_root and
 * its upper are internally tagged maps whose first entry is "kind".  The
 * sandwire extension key {"sandwire": {"ext": [names...]}} goes last and is
 * omitted when <n_ext> is 0; reference decoders skip it as an unknown key.
 *
 * Decoding is lenient the reference way: every top-level field is optional
 * and takes its default when missing; inside nested structs the non-Option
 * fields are required (PROTO_E_MISSING_FIELD), except mount flags, which
 * default to false one by one.  Internally tagged maps may carry "kind"
 * anywhere.  Lists, and octet arrays sent as byte strings, are placed in the
 * cbr arena.  Follows the conventions of proto/msg_common.h.
 */
#ifndef SW_PROTO_MSG_BOOT_H
#define SW_PROTO_MSG_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/msg_common.h"

/* BlockRootUpper, internally tagged ("kind": "device" | "tmpfs"). */
enum proto_boot_upper_kind {
	PROTO_BOOT_UPPER_DEVICE,
	PROTO_BOOT_UPPER_TMPFS,
};

struct proto_boot_upper {
	enum proto_boot_upper_kind kind;
	struct proto_str device;       /* DEVICE: guest block-device path */
	struct proto_str fstype;       /* DEVICE: filesystem type (required) */
	struct proto_opt_u32 size_mib; /* TMPFS: MiB, omitted if none */
};

/* BlockRoot, internally tagged; NONE means the field is absent. */
enum proto_boot_root_kind {
	PROTO_BOOT_ROOT_NONE,
	PROTO_BOOT_ROOT_DISK_IMAGE, /* "disk-image" */
	PROTO_BOOT_ROOT_OCI_EROFS,  /* "oci-erofs" */
};

struct proto_boot_block_root {
	enum proto_boot_root_kind kind;
	struct proto_str device;       /* DISK_IMAGE: guest block-device path */
	struct proto_opt_str fstype;   /* DISK_IMAGE: omitted if none (probe) */
	struct proto_str lower;	       /* OCI_EROFS: EROFS block-device path */
	struct proto_boot_upper upper; /* OCI_EROFS */
};

/* MountFlags: all four always written; each defaults to false on decode. */
struct proto_boot_mount_flags {
	bool readonly;
	bool noexec;
	bool nosuid;
	bool nodev;
};

struct proto_boot_dir_mount {
	struct proto_str tag; /* virtiofs tag */
	struct proto_str guest_path;
	struct proto_boot_mount_flags flags;
};

struct proto_boot_file_mount {
	struct proto_str tag;	   /* virtiofs tag */
	struct proto_str filename; /* file inside the staged directory */
	struct proto_str guest_path;
	struct proto_boot_mount_flags flags;
};

struct proto_boot_disk_mount {
	struct proto_str id; /* virtio block-device id */
	struct proto_str guest_path;
	struct proto_opt_str fstype; /* omitted if none (probe) */
	struct proto_boot_mount_flags flags;
};

struct proto_boot_tmpfs_mount {
	struct proto_str path;
	struct proto_opt_u32 size_mib; /* MiB, omitted if none */
	struct proto_opt_u32 mode;     /* mode of the tmpfs root, omitted if none */
	struct proto_boot_mount_flags flags;
};

/* IPv4 block; addresses are arrays of 4 small uints on the wire. */
struct proto_boot_ipv4 {
	bool set; /* false: the block is omitted */
	uint8_t address[4];
	uint8_t prefix_len; /* CIDR prefix, bits */
	uint8_t gateway[4];
	bool has_dns; /* false: dns omitted */
	uint8_t dns[4];
};

/* IPv6 block; addresses are arrays of 16 small uints on the wire. */
struct proto_boot_ipv6 {
	bool set;
	uint8_t address[16];
	uint8_t prefix_len;
	uint8_t gateway[16];
	bool has_dns;
	uint8_t dns[16];
};

struct proto_boot_network {
	bool set; /* false: the whole "network" key is omitted */
	struct proto_str interface;
	uint8_t mac[6]; /* array of 6 uints on the wire */
	uint16_t mtu;	/* bytes */
	struct proto_boot_ipv4 ipv4;
	struct proto_boot_ipv6 ipv6;
};

/* One environment entry: {key, value}. */
struct proto_boot_env {
	struct proto_str key;
	struct proto_str value;
};

enum proto_boot_security {
	PROTO_BOOT_SECURITY_DEFAULT,	/* "default" */
	PROTO_BOOT_SECURITY_RESTRICTED, /* "restricted" */
};

/* PID 1 handoff after agent init. */
struct proto_boot_handoff {
	bool set;		/* false: "handoff_init" omitted */
	struct proto_str cmd;	/* absolute init path, or "auto" */
	struct proto_str *args; /* after argv[0]; omitted if empty */
	size_t n_args;
	struct proto_opt_str cwd;   /* omitted if none */
	struct proto_boot_env *env; /* omitted if empty */
	size_t n_env;
};

/* GuestBootstrap, field order = wire order; lists are pointer + count. */
struct proto_bootstrap {
	struct proto_boot_block_root block_root;
	struct proto_boot_dir_mount *dir_mounts;
	size_t n_dir_mounts;
	struct proto_boot_file_mount *file_mounts;
	size_t n_file_mounts;
	struct proto_boot_disk_mount *disk_mounts;
	size_t n_disk_mounts;
	struct proto_boot_tmpfs_mount *tmpfs_mounts;
	size_t n_tmpfs_mounts;
	struct proto_opt_str hostname;
	struct proto_opt_str host_alias; /* "host.microsandbox.internal" from microsandbox */
	struct proto_boot_network network;
	struct proto_rlimit *rlimits; /* sandbox-wide baseline */
	size_t n_rlimits;
	struct proto_opt_str user; /* default exec user spec */
	struct proto_opt_str default_cwd;
	struct proto_boot_env *default_env;
	size_t n_default_env;
	enum proto_boot_security security_profile;
	struct proto_boot_handoff handoff_init;
	struct proto_str *ext; /* sandwire extensions named by the engine */
	size_t n_ext;
};

/* Name of the extension that gives exec streams credit (wire.md "Flow control"). */
#define PROTO_EXT_CREDIT "credit"

/*
 * The sandwire announcement, shared by core.bootstrap and core.ready: the
 * value of the key "sandwire", the map {"ext": [names...]} (callers leave
 * key and value out when there is no name).  On decode null, a missing
 * "ext" and unknown keys name nothing more; the list goes to r->arena.
 * Returns 0 or a negative proto code (encode: the writer's sticky error).
 * Any thread.
 */
int proto_ext_encode(struct cbw *w, const struct proto_str *ext, size_t n);
int proto_ext_decode(struct cbr *r, struct proto_str **ext, size_t *n);

/* True when the announcement <ext> of <n> names holds extension <name>. */
bool proto_ext_named(const struct proto_str *ext, size_t n, const char *name);

/*
 * Encode <m> as one GuestBootstrap payload item into <w>.
 * Returns 0, PROTO_E_BAD_VALUE for an enum out of range, or the writer's
 * sticky error (PROTO_E_NOSPACE).  Any thread; <w> is the caller's.
 */
int proto_bootstrap_encode(struct cbw *w, const struct proto_bootstrap *m);

/*
 * Decode one GuestBootstrap payload item from <r> into <m> (zeroed first,
 * so missing fields take their defaults).  Lists go to r->arena
 * (PROTO_E_NOSPACE when it is missing or too small).  Unknown enum names
 * (kind, security_profile) are PROTO_E_BAD_VALUE; an address array of the
 * wrong length is PROTO_E_BAD_VALUE, an element over 255 PROTO_E_RANGE.
 * Returns 0 or a negative proto code.  Any thread.
 */
int proto_bootstrap_decode(struct cbr *r, struct proto_bootstrap *m);

#endif /* SW_PROTO_MSG_BOOT_H */
