#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_decoder into tests/fuzz/corpus/decoder/.

Usage: python3 tests/fuzz/make_corpus.py [outdir]

The frames are built with a minimal msgpack encoder written here from the
spec, independent of msgpack-c and of pc_proto.c, so the corpus doubles as
a check that another implementation's bytes decode (the fuzz smoke test
runs it). Some seeds use non-canonical int forms and str keys on purpose,
as a client in another language might. No dependencies beyond Python 3.

File names are stable, so rerunning it only rewrites the same files;
crashers found by the fuzzer are added to the directory by hand
(crash-<sha1> files) and are not touched by this script.
"""
import os
import struct
import sys


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


HELLO, PING, GET, MGET, SET, DEL, TOUCH, STATS = range(1, 9)
OK, NOT_FOUND, EXISTS, NOT_STORED, BAD_REQUEST, TOO_LARGE, BACKEND, BUSY, INTERNAL, AUTH = range(10)

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


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "decoder")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
