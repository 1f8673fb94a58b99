#!/usr/bin/python3
"""A hostile generation-9 agent on fd 3, for the engine's bulk tests.

It boots like an agent (init.resolved, then ready with v = 9), accepts the
bulk offer of every core.tcp.connect, and then answers with a raw record
that breaks the flow: MODE "gap" starts at offset 5 instead of 0, MODE
"overrun" sends 64 MiB of "y" records without waiting for credit, so one
of them ends past the host's grant once the host peer stops reading.  Every
frame the host sends afterwards is appended to LOG as "<type or raw>
<id>", so a test can see the engine's core.bulk.cancel.

    hostile_bulk_agent.py MODE LOG
"""
import os
import struct
import sys

import cbor2

MODE, LOG = sys.argv[1], sys.argv[2]
FD = 3


def read_exact(n):
    buf = b""
    while len(buf) < n:
        got = os.read(FD, n - len(buf))
        if not got:
            sys.exit(0)
        buf += got
    return buf


def read_frame():
    (length,) = struct.unpack(">I", read_exact(4))
    rest = read_exact(length)
    ident, flags = struct.unpack(">IB", rest[:5])
    return ident, flags, rest[5:]


def send(ident, t, payload, flags=0):
    body = cbor2.dumps({"v": 9, "t": t, "p": cbor2.dumps(payload)})
    os.write(FD, struct.pack(">IIB", 5 + len(body), ident, flags) + body)


def send_record(ident, offset, data):
    body = struct.pack(">BBHQ", 2, 2, 0, offset) + data  # kind TCP, flow guest->host
    os.write(FD, struct.pack(">IIB", 5 + len(body), ident, 0x08) + body)


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


read_frame()  # core.bootstrap
send(0, "core.init.resolved", {"default_user": {"uid": 0, "gid": 0}})
read_frame()  # core.init.ack
send(0, "core.ready", {"boot_time_ns": 1, "init_time_ns": 1, "ready_time_ns": 2,
                       "agent_version": "hostile/1"})
while True:
    ident, flags, body = read_frame()
    if flags == 0x08:
        log("raw %d" % ident)
        continue
    env = cbor2.loads(body)
    log("%s %d" % (env["t"], ident))
    if env["t"] != "core.tcp.connect":
        continue
    offer = cbor2.loads(env["p"])["bulk"]
    send(ident, "core.tcp.connected", {})
    send(ident, "core.bulk.accepted", {
        "kind": 2, "flows": 3, "format": 1, "max_record_payload": offer["max_record_payload"],
        "host_to_guest_credit_limit": 1 << 20,
        "guest_to_host_credit_limit": offer["guest_to_host_credit_limit"]})
    if MODE == "gap":
        send_record(ident, 5, b"x" * 16)
    else:
        step = offer["max_record_payload"]
        for off in range(0, 64 << 20, step):
            send_record(ident, off, b"y" * step)
