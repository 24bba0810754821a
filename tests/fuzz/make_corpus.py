#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

Usage: python3 tests/fuzz/make_corpus.py [TARGET [OUTDIR]]

TARGET is decoder, gossip or config (default: all three, each into
corpus/TARGET/). OUTDIR overrides the directory of one target.

The frames and packets are built with a minimal msgpack encoder written
here from the spec, independent of msgpack-c and of pc_proto.c /
pc_gossip.c, so the corpus doubles as a check that another
implementation's bytes decode (the fuzz smoke tests run it). Some seeds
use non-canonical int forms and str keys on purpose, as a client in
another language might. The config seeds take the option names and
defaults from node/pc_config.c and the example config from deploy/, so
they follow the option table. No dependencies beyond Python 3.

File names are stable, so rerunning it only rewrites the same files;
regression inputs found by the fuzzer are added to the directories by
hand (under names that say what they exercise) and are not touched by
this script.
"""
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Bin(bytes):
    """bytes packed as msgpack bin (plain bytes are packed as str)."""


class Raw(bytes):
    """bytes inserted as they are: for deliberately odd encodings."""


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, Raw):
        return bytes(v)
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v <= 0xFF:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v:
            return b"\xcf" + struct.pack(">Q", v)
        if v >= -0x80:
            return b"\xd0" + struct.pack(">b", v)
        if v >= -0x8000:
            return b"\xd1" + struct.pack(">h", v)
        if v >= -0x80000000:
            return b"\xd2" + struct.pack(">i", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, Bin):
        n = len(v)
        if n <= 0xFF:
            return b"\xc4" + bytes([n]) + v
        if n <= 0xFFFF:
            return b"\xc5" + struct.pack(">H", n) + v
        return b"\xc6" + struct.pack(">I", n) + v
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        n = len(b)
        if n < 32:
            return bytes([0xA0 | n]) + b
        if n <= 0xFF:
            return b"\xd9" + bytes([n]) + b
        if n <= 0xFFFF:
            return b"\xda" + struct.pack(">H", n) + b
        return b"\xdb" + struct.pack(">I", n) + b
    if isinstance(v, list):
        n = len(v)
        if n < 16:
            head = bytes([0x90 | n])
        elif n <= 0xFFFF:
            head = b"\xdc" + struct.pack(">H", n)
        else:
            head = b"\xdd" + struct.pack(">I", n)
        return head + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(type(v))


def frame(body):
    return struct.pack(">I", len(body)) + body


def msg(*fields):
    return frame(pack(list(fields)))


HELLO, PING, GET, MGET, SET, DEL, TOUCH, STATS, CLUSTER, FORWARD, SYNC, REPLICATE = range(1, 13)
(OK, NOT_FOUND, EXISTS, NOT_STORED, BAD_REQUEST, TOO_LARGE, BACKEND, BUSY, INTERNAL, AUTH,
 RETRY) = range(11)
REPL_WRITE, REPL_HANDOFF = range(2)

K = Bin(b"user:42")
V = Bin(b"hello world")

SEEDS = {
    # Requests, every op and every optional-arg shape.
    "req_hello": msg(HELLO, 1, 1),
    "req_hello_token": msg(HELLO, 2, 1, Bin(b"s3cret")),
    "req_hello_nil_token": msg(HELLO, 3, 1, None),
    "req_ping": msg(PING, 4),
    "req_get": msg(GET, 5, K),
    "req_get_str_key": msg(GET, 6, "user:42"),
    "req_get_here": msg(GET, 6, K, 1),
    "req_get_here_nil": msg(GET, 6, K, None, "future"),
    "req_mget": msg(MGET, 7, [K, Bin(b"b"), "c", Bin(b"\x00\xff")]),
    "req_set": msg(SET, 8, K, V),
    "req_set_ttl": msg(SET, 9, K, V, 60000),
    "req_set_full": msg(SET, 10, K, V, 60000, 7, 1, 123456789012),
    "req_set_nils": msg(SET, 11, K, Bin(b""), None, None, 2, None),
    "req_set_extra": msg(SET, 12, K, V, 0, 0, 0, 0, "future", [1, 2]),
    "req_del": msg(DEL, 13, K),
    "req_touch": msg(TOUCH, 14, K, 0),
    "req_stats": msg(STATS, 2**64 - 1),
    # Non-canonical ints: int8 op, int64 id, uint64 ttl.
    "req_touch_wide_ints": frame(
        b"\x94" + Raw(b"\xd0\x07") + Raw(b"\xd3" + struct.pack(">q", 15)) + pack(K)
        + Raw(b"\xcf" + struct.pack(">Q", 5))),
    # Well-formed frames that are bad requests (answered, connection kept).
    "bad_unknown_op": msg(42, 16, K),
    "bad_empty_key": msg(GET, 17, Bin(b"")),
    "bad_key_type": msg(GET, 18, 5),
    "bad_cond": msg(SET, 19, K, V, 0, 0, 3),
    "bad_get_here_bool": msg(GET, 19, K, True),
    "bad_get_here_2": msg(GET, 19, K, 2),
    "bad_mget_empty": msg(MGET, 20, []),
    "long_key_bin16": msg(GET, 21, Bin(b"k" * 300)),
    # Short keys, so the fuzzer's tiny-limit decoder (max_key 4, max_value
    # 8, max_mget_keys 2) reaches its value/token/count checks.
    "tiny_set_big_value": msg(SET, 22, Bin(b"k"), Bin(b"0123456789"), 5, 1, 1, 9),
    "tiny_hello_long_token": msg(HELLO, 23, 1, Bin(b"abcdefgh")),
    "tiny_mget_three": msg(MGET, 24, [Bin(b"a"), Bin(b"b"), Bin(b"c")]),
    "tiny_touch": msg(TOUCH, 25, Bin(b"t"), 1000),
    # Responses, every op, hits and misses.
    "resp_hello": msg(HELLO, 1, OK, 1, "node-a", "0.1.0"),
    "resp_ping": msg(PING, 4, OK),
    "resp_get": msg(GET, 5, OK, V, 7, 2**40 + 5, -1),
    "resp_get_ttl": msg(GET, 5, OK, Bin(b""), 0, 1, 59000),
    "resp_mget": msg(MGET, 7, OK, [[OK, V, 1, 2, -1], [NOT_FOUND], [BACKEND],
                                   [TOO_LARGE], [OK, Bin(b""), 0, 9, 100]]),
    "resp_set": msg(SET, 8, OK, 2**48 + 1),
    "resp_del": msg(DEL, 13, OK),
    "resp_touch": msg(TOUCH, 14, OK),
    "resp_stats": msg(STATS, 15, OK, {"gets": 10, "hits": 7, "skew_ms": -3, "bytes": 2**40}),
    "resp_not_found": msg(GET, 5, NOT_FOUND, "key not found"),
    "resp_exists": msg(SET, 10, EXISTS, "key exists or its version differs"),
    "resp_bad_request": msg(42, 16, BAD_REQUEST, "unknown op 42"),
    "resp_busy_no_msg": msg(GET, 5, BUSY),
    "resp_extra": msg(GET, 5, OK, V, 0, 1, -1, "future"),
    "resp_mget_short_hit": msg(MGET, 7, OK, [[OK, V, 1]]),
    "resp_mget_three": msg(MGET, 7, OK, [[NOT_FOUND], [OK, Bin(b"v"), 0, 1, -1], [BUSY]]),
    "resp_stats_bad_value": msg(STATS, 15, OK, {"gets": "ten"}),
    "resp_hello_bad": msg(HELLO, 1, OK, 1, 5, "0.1.0"),
    # Peer operations: CLUSTER, FORWARD (a relayed body), SYNC (a gossip
    # state), REPLICATE (values and deletes), and the ring fingerprint that
    # may trail any reply but CLUSTER's.
    "req_cluster": msg(CLUSTER, 30),
    "req_forward": msg(FORWARD, 31, 1, Bin(pack([GET, 5, K]))),
    "req_sync": msg(SYNC, 32, Bin(pack([1, "node1", [["a", "h:1", "h:2", 1, 3, 0]]]))),
    "req_replicate_write": msg(REPLICATE, 33, REPL_WRITE, "node1",
                               [[K, V, 7, 2**40, -1], [Bin(b"gone"), None, 0, 2**40 + 1, -1]]),
    "req_replicate_handoff": msg(REPLICATE, 34, REPL_HANDOFF, Bin(b"node2"),
                                 [[K, Bin(b""), 0, 1, 5000]]),
    "req_replicate_empty": msg(REPLICATE, 35, REPL_WRITE, "node1", []),
    "bad_forward_hops_0": msg(FORWARD, 36, 0, Bin(pack([PING, 1]))),
    "bad_forward_empty_body": msg(FORWARD, 37, 2, Bin(b"")),
    "bad_replicate_mode": msg(REPLICATE, 38, 2, "node1", [[K, V, 0, 1, -1]]),
    "bad_replicate_ttl": msg(REPLICATE, 39, REPL_WRITE, "node1", [[K, V, 0, 1, -2]]),
    "bad_replicate_no_from": msg(REPLICATE, 40, REPL_WRITE, "", [[K, V, 0, 1, -1]]),
    "tiny_replicate_three": msg(REPLICATE, 41, REPL_WRITE, "n", [[Bin(b"a"), V, 0, 1, -1],
                                                                [Bin(b"b"), None, 0, 2, -1],
                                                                [Bin(b"c"), Bin(b"v"), 0, 3, 9]]),
    "resp_cluster": msg(CLUSTER, 30, OK, 0x0123456789ABCDEF, 2,
                        [["node1", "127.0.0.1:7400", 0, 5, 1],
                         [Bin(b"node2"), "127.0.0.1:7401", 1, 2**63, 1000],
                         ["node3", "[::1]:7402", 3, 0, 1]]),
    "resp_cluster_empty": msg(CLUSTER, 30, OK, 0, 1, []),
    "resp_forward": msg(FORWARD, 31, OK, Bin(pack([GET, 5, OK, V, 0, 1, -1])), 2**63),
    "resp_sync": msg(SYNC, 32, OK, Bin(pack([1, "node2", []])), 77),
    "resp_replicate": msg(REPLICATE, 33, OK, 2, 99),
    "resp_retry": msg(GET, 5, RETRY, "the ring is changing", 0xFEEDFACE),
    "resp_get_fp": msg(GET, 5, OK, V, 7, 9, -1, 2**64 - 1),
    "resp_set_fp_nil": msg(SET, 8, OK, 2, None),
    "resp_cluster_bad_member": msg(CLUSTER, 30, OK, 1, 2, [["node1", "h:1", 0, 5]]),
    # Several frames back to back, as a pipelining client sends them.
    "pipeline_requests": msg(PING, 1) + msg(SET, 2, K, V) + msg(GET, 3, K) + msg(DEL, 4, K),
    "pipeline_responses": msg(PING, 1, OK) + msg(SET, 2, OK, 77) + msg(GET, 3, OK, V, 0, 77, -1),
    # Malformed: the connection is closed.
    "mal_len_huge": b"\xff\xff\xff\xff" + pack([PING, 1]),
    "mal_len_over_max": struct.pack(">I", 1179649) + pack([PING, 1]),
    "mal_len_zero": b"\x00\x00\x00\x00" + msg(PING, 1),
    "mal_array_2_28": frame(b"\xdd\x10\x00\x00\x00\x01\x02"),
    "mal_array_2_32": frame(b"\x93\x04\x01\xdd\xff\xff\xff\xff\xc4\x01k"),
    "mal_map_huge": frame(b"\x94\x08\x01\x00\xdf\xff\xff\xff\xff"),
    "mal_str_past_end": frame(b"\x93\x03\x01\xdb\x00\x01\x00\x00k"),
    "mal_deep": frame(b"\x91" * 200 + b"\x01"),
    "mal_trailing": frame(pack([PING, 1]) + b"\xc0"),
    "mal_truncated": frame(pack([SET, 8, K, V])[:-3]),
    "mal_not_array": frame(pack({"op": 3})),
    "mal_op_str": msg("GET", 5, K),
}



# ---- gossip (fuzz_gossip): UDP packets and push/pull states --------------
#
# packet = [version, sender, [msg...]], state = [version, sender, [node...]]
# (docs/MEMBERSHIP.md section 6, proto/pc_gossip.h).

G_PING, G_PING_REQ, G_ACK, G_NACK, G_ALIVE, G_SUSPECT, G_DEAD, G_LEFT = range(1, 9)
ST_ALIVE, ST_SUSPECT, ST_DEAD, ST_LEFT = range(4)


def packet(*msgs, version=1, sender="node1"):
    return pack([version, sender, list(msgs)])


def state(*nodes, version=1, sender="node1"):
    return pack([version, sender, list(nodes)])


def node(name, st=ST_ALIVE, inc=1, weight=1):
    return [name, "127.0.0.1:7401", "127.0.0.1:7401", weight, inc, st]


def array32(items):
    return Raw(b"\xdd" + struct.pack(">I", len(items)) + b"".join(pack(x) for x in items))


def array16(items):
    return Raw(b"\xdc" + struct.pack(">H", len(items)) + b"".join(pack(x) for x in items))


PING_ = [G_PING, 7, "node2"]
PING_REQ_ = [G_PING_REQ, 8, "node3", "127.0.0.1:7403", 400]
ACK_ = [G_ACK, 7]
NACK_ = [G_NACK, 8]
ALIVE_ = [G_ALIVE, "node4", 3, "127.0.0.1:7404", "127.0.0.1:7404", 1]
SUSPECT_ = [G_SUSPECT, "node2", 5, "node1"]
DEAD_ = [G_DEAD, "node3", 2**64 - 1, "node1"]
LEFT_ = [G_LEFT, "node5", 9]
ALL_MSGS = [PING_, PING_REQ_, ACK_, NACK_, ALIVE_, SUSPECT_, DEAD_, LEFT_]

GOSSIP_SEEDS = {
    # Every message type alone, then all of them in one packet.
    "pkt_ping": packet(PING_),
    "pkt_ping_req": packet(PING_REQ_),
    "pkt_ack": packet(ACK_),
    "pkt_nack": packet(NACK_),
    "pkt_alive": packet(ALIVE_),
    "pkt_suspect": packet(SUSPECT_),
    "pkt_dead": packet(DEAD_),
    "pkt_left": packet(LEFT_),
    "pkt_all_types": packet(*ALL_MSGS),
    "pkt_empty": packet(),
    # As the C writer lays it out: the list is always an array 16.
    "pkt_writer_layout": pack([1, "node1", array16([PING_, ALIVE_, SUSPECT_])]),
    "pkt_list_array32": pack([1, "node1", array32([ACK_, LEFT_])]),
    # Forward compatibility: later versions, extra fields at every level,
    # unknown message types (skipped), text as bin.
    "pkt_version_9": packet(ACK_, version=9),
    "pkt_extra_fields": pack([2, "node1", [PING_ + ["future", 1], ACK_ + [None, 2.5]], "extra", 5]),
    "pkt_unknown_types": packet([9, "x"], ACK_, [200], [2**32 - 1, 1, 2]),
    "pkt_bin_text": packet([G_ALIVE, Bin(b"node4"), 3, Bin(b"h:1"), Bin(b"h:2"), 7],
                           sender=Bin(b"node1")),
    "pkt_long_names": packet([G_SUSPECT, "n" * 255, 1, "f" * 255], sender="s" * 255),
    "pkt_wide_ints": pack([Raw(b"\xcf" + struct.pack(">Q", 1)), "node1",
                           [[Raw(b"\xd0\x03"), Raw(b"\xce" + struct.pack(">I", 7))]]]),
    "pkt_max_values": packet([G_PING_REQ, 2**32 - 1, "t", "h:1", 2**32 - 1],
                             [G_ALIVE, "a", 2**64 - 1, "h:1", "h:2", 2**32 - 1]),
    # Fields of one message filled to the 16-field limit, and one over.
    "pkt_16_fields": packet(ACK_ + [0] * 14),
    "bad_17_fields": packet(ACK_ + [0] * 15),
    # Well-formed msgpack, wrong fields: each must be PC_EPROTO.
    "bad_version_0": packet(ACK_, version=0),
    "bad_version_neg": packet(ACK_, version=-1),
    "bad_sender_empty": packet(ACK_, sender=""),
    "bad_sender_nul": packet(ACK_, sender="no\0de"),
    "bad_sender_256": packet(ACK_, sender="s" * 256),
    "bad_sender_int": packet(ACK_, sender=5),
    "bad_top_short": pack([1, "node1"]),
    "bad_top_map": pack({"v": 1}),
    "bad_list_not_array": pack([1, "node1", 5]),
    "bad_msg_not_array": packet(5),
    "bad_msg_empty": packet([]),
    "bad_type_str": packet(["ACK", 1]),
    "bad_type_neg": packet([-3, 1]),
    "bad_ping_no_target": packet([G_PING, 7]),
    "bad_seq_too_big": packet([G_ACK, 2**32]),
    "bad_alive_nul_addr": packet([G_ALIVE, "n", 1, "h\0:1", "h:2", 1]),
    "bad_alive_long_addr": packet([G_ALIVE, "n", 1, "h" * 256, "h:2", 1]),
    "bad_left_inc_str": packet([G_LEFT, "n", "1"]),
    "bad_msg_map": packet({"type": 3}),
    # Limits: one message over PC_GOSSIP_MAX_MSGS (PC_ETOOBIG).
    "big_257_msgs": packet(*([ACK_] * 257)),
    "big_256_msgs": packet(*([ACK_] * 256)),
    # Lying sizes: counts far beyond the bytes that follow.
    "mal_list_count_2_32": b"\x93\x01\xa5node1\xdd\xff\xff\xff\xff" + pack(ACK_),
    "mal_top_count_2_32": b"\xdd\xff\xff\xff\xff\x01\xa5node1\x90",
    "mal_map_count_2_32": b"\x93\x01\xa5node1\x91\xdf\xff\xff\xff\xff",
    "mal_str_past_end": b"\x93\x01\xdb\x00\x01\x00\x00node1\x90",
    "mal_bin_past_end": b"\x93\x01\xa5node1\x91\x93\x01\x07\xc6\x7f\xff\xff\xffab",
    # Nesting: one level too deep, and far too deep.
    "mal_depth_4": packet([G_ACK, [1]]),
    "mal_deep_200": b"\x93\x01\xa5node1" + b"\x91" * 200 + b"\x01",
    # Not one value: trailing bytes, truncations at several points.
    "mal_trailing": packet(ACK_) + b"\xc0",
    "mal_trunc_head": packet(*ALL_MSGS)[:3],
    "mal_trunc_mid": packet(*ALL_MSGS)[:40],
    "mal_trunc_last": packet(*ALL_MSGS)[:-1],
    "mal_reserved_c1": b"\x93\x01\xa5node1\x91\x92\x03\xc1",
    # Push/pull states.
    "state_one": state(node("node1")),
    "state_all_states": state(node("a", ST_ALIVE), node("b", ST_SUSPECT, 4),
                              node("c", ST_DEAD, 2**64 - 1, 1000), node("d", ST_LEFT, 0)),
    "state_empty": state(),
    "state_future_state": state(node("a"), node("b", 7), version=3),
    "state_extra_fields": pack([1, "node1", [node("a") + ["zone-a", 5]], "extra"]),
    "state_bin_text": state([Bin(b"a"), Bin(b"h:1"), Bin(b"h:2"), 1, 1, 0]),
    "state_list_array32": pack([1, "node1", array32([node("a"), node("b")])]),
    "bad_state_short_node": state(["a", "h:1", "h:2", 1, 1]),
    "bad_state_neg_state": state(["a", "h:1", "h:2", 1, 1, -1]),
    "bad_state_weight_big": state(["a", "h:1", "h:2", 2**32, 1, 0]),
    "bad_state_empty_name": state(["", "h:1", "h:2", 1, 1, 0]),
    "mal_state_count_2_32": b"\x93\x01\xa5node1\xdd\xff\xff\xff\xff" + pack(node("a")),
    "mal_state_trunc": state(node("a"), node("b"))[:-4],
}


# ---- config (fuzz_config): a config file, argv and the environment -------
#
# Input layout (tests/fuzz/fuzz_config.c): FILE \0 ARG \0 ARG ... \0\0
# ENV \0 ENV ... -- the file's text, then the flags up to an empty one,
# then environment entries, each given "PEERCACHE_" in front. The value of
# --config / --config= / CONFIG= names the file whatever it says.


def config_input(file_text="", args=(), env=()):
    parts = [file_text.encode()] + [a.encode() for a in args]
    out = b"\0".join(parts) + b"\0\0" + b"\0".join(e.encode() for e in env)
    return out


def option_table():
    """(name, default or None, flag allowed, file allowed) per row of
    options[] in node/pc_config.c."""
    src = open(os.path.join(ROOT, "node", "pc_config.c")).read()
    table = src[src.index("static const opt_t options[]"):]
    table = table[:table.index("\n};")]
    rows = []
    for row in table.split("{.name = ")[1:]:
        name = re.match(r'"([^"]+)"', row).group(1)
        d = re.search(r'\.def = "([^"]*)"', row)
        rows.append((name, d.group(1) if d else None, ".not_flag = true" not in row,
                     ".not_in_file = true" not in row))
    return rows


def env_name(name):
    return name.upper().replace("-", "_")


def config_seeds():
    opts = option_table()
    example = open(os.path.join(ROOT, "deploy", "peercached.conf.example")).read()
    # Every option at its default, from each source in turn. The defaults
    # leave insecure off, so each turns it on where it wins: last in a
    # file and in argv, first in the environment.
    file_all = "".join("%s = %s\n" % (n, d) for n, d, _, f in opts if d is not None and f)
    file_all += "insecure = yes\n"
    flags_all = ["--%s=%s" % (n, d) for n, d, fl, _ in opts
                 if d is not None and fl and n != "insecure"]
    env_all = ["%s=%s" % (env_name(n), d) for n, d, _, _ in opts if d is not None]
    return {
        "example_by_flag": config_input(example, ["--config", "f", "--insecure"]),
        "example_by_env": config_input(example, ["--insecure"], ["CONFIG=f"]),
        "example_keyed": config_input(example, ["--config=f"],
                                      ["CLUSTER_KEY=/etc/peercache/cluster.key"]),
        "defaults_file": config_input(file_all, ["--config", "f"]),
        "defaults_flags": config_input("", ["--insecure"] + flags_all),
        "defaults_env": config_input("", [], ["INSECURE=true"] + env_all),
        "precedence": config_input("memory = 1g\ninsecure = 1\nname = from-file\n",
                                   ["--memory", "2g", "--config=f"],
                                   ["MEMORY=3g", "NAME=from-env", "NODES=ignored"]),
        "flags_minimal": config_input("", ["--insecure"]),
        "flags_cluster": config_input("", ["--insecure", "--listen", "[::1]:7500", "--join",
                                           " 127.0.0.1:7401 , host-b:7402", "--replicas", "3",
                                           "--weight", "1000", "--advertise", "10.0.0.1:7500",
                                           "--gossip", "0.0.0.0:7600"]),
        "sizes": config_input("", ["--insecure", "--max-key=1K", "--max-value", "4MB",
                                   "--max-frame", "5m", "--max-output=1G", "--memory=1048576b",
                                   "--handoff-rate", "0"]),
        "durations": config_input("", ["--insecure", "--redis-timeout=2S", "--idle-timeout",
                                       "1H", "--probe-interval=1m", "--probe-timeout", "59s",
                                       "--replay-window", "3600000ms"]),
        "bools": config_input("insecure = off\n", ["--config", "f", "--insecure=ON"],
                              ["INSECURE=no"]),
        "secrets": config_input("token = from-file\n", ["--config", "f", "--insecure",
                                                        "--token-file", "/t"],
                                ["TOKEN=s3cret"]),
        "help": config_input("", ["--memory", "x", "--help"]),
        "version": config_input("", ["--version"]),
        "config_off": config_input("memory = x\n", ["--config=", "--insecure"], ["CONFIG=f"]),
        # Errors, one per kind.
        "err_no_key": config_input("", ["--listen", "127.0.0.1:1"]),
        "err_key_and_insecure": config_input("", ["--insecure", "--cluster-key", "/k"]),
        "err_probe": config_input("", ["--insecure", "--probe-timeout", "1s"]),
        "err_frame": config_input("", ["--insecure", "--max-frame", "1k"]),
        "err_output": config_input("", ["--insecure", "--max-output", "1k"]),
        "err_token_flag": config_input("", ["--insecure", "--token", "x"]),
        "err_missing_value": config_input("", ["--insecure", "--memory"]),
        "err_unknown_flag": config_input("", ["-x", "--nope", "stray"]),
        "err_range": config_input("", ["--insecure", "--replicas", "9", "--memory",
                                       "99999999999999999999g"]),
        "err_long_name": config_input("", ["--insecure", "--name", "n" * 256]),
        "err_file_line": config_input("# comment\n\n  listen = 127.0.0.1:7400  \nno equals\n",
                                      ["--config", "f"]),
        "err_file_config": config_input("config = other\n", ["--config", "f"]),
        "err_file_unknown": config_input(" = x\nnope = 1\n", ["--config", "f"]),
        "err_env": config_input("", ["--insecure"], ["MEMORY=lots", "LISTEN=nowhere"]),
        "err_enum": config_input("", ["--insecure", "--eviction", "LRU", "--log-level", "loud"]),
    }


TARGETS = {
    "decoder": lambda: SEEDS,
    "gossip": lambda: GOSSIP_SEEDS,
    "config": config_seeds,
}


def write(target, out):
    seeds = TARGETS[target]()
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    if len(args) > 2 or (args and args[0] not in TARGETS):
        sys.exit("usage: make_corpus.py [%s [OUTDIR]]" % "|".join(TARGETS))
    for target in args[:1] or list(TARGETS):
        out = args[1] if len(args) > 1 else os.path.join(here, "corpus", target)
        write(target, out)


if __name__ == "__main__":
    main()
