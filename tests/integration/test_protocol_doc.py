#!/usr/bin/env python3
"""test_protocol_doc.py -- a client written from docs/PROTOCOL.md alone.

An outside team's view of the wire protocol: the frames, the msgpack
subset and every client op are encoded and decoded here by hand, from the
document only (no source of the node, the proto library or the C client
was read to write it), and every promise the document makes that a client
can observe is checked against running nodes:

  A. the document itself: the worked examples of §11 encoded here byte
     for byte (and by python3-msgpack), the numbers of §8 recomputed;
  B. one node, --insecure, with a redis-server of its own behind it:
     HELLO/PING/GET/MGET/SET/DEL/TOUCH/STATS/CLUSTER and their shapes,
     conditions, CAS, TTLs, flags, deadlines, every limit of §8 at its
     default, the malformed streams of §7.1 and the BAD_REQUESTs of §7.2,
     the budget of §3, §11's bytes sent to the live node and its answers
     compared as §11.4 describes, pipelining (§9), read-through and
     write-through against Redis (redis-cli);
  C. a second node with --token-file: §5.1's AUTH_REQUIRED rules, the
     bad-token delays and close, the hello timeout;
  B2. the first node with its Redis stalled (SIGSTOP), then stopped:
     BACKEND_UNAVAILABLE (§7);
  D. a third node with small limits (--max-key 1kb --max-value 4kb
     --max-frame 5632, --redis none): the max_frame rule at start, the
     frame and idle timeouts of §7.3, the per-address connection limit,
     SET's conditions without Redis (§5.5);
  E. a fourth node with a cluster key: peer ops in plain frames, sealed
     bodies that do not open (§2.1);
  F. a node alone named 127.0.0.1:39695, whose fingerprint §11.4 gives.

Where the document leaves something unsaid, the test prints what the node
did as a NOTE and does not judge it.

Each check prints PASS or FAIL as it goes; a failing check does not stop
the others. Exit status 0 = every check passed, 1 = a check failed.

Usage: test_protocol_doc.py PEERCACHED
"""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # nothing written into the source tree
from pc_procs import HOST, Failure, Proc, free_ports, need_module, poll  # noqa: E402

msgpack = need_module("msgpack", "python3-msgpack", "test_protocol_doc")

# ---- numbers from the document ------------------------------------------------------

MAX_FRAME = 1_179_648            # §2, §8: 1 MiB + 128 KiB
MAX_KEY = 65_536                 # §4, §8
MAX_VALUE = 1_048_576            # §4, §8
MAX_MGET_KEYS = 1_024            # §5.4, §8
LARGEST_TTL = 2 ** 62            # §8
U32 = 2 ** 32 - 1
U64 = 2 ** 64 - 1

# ops (§4)
HELLO, PING, GET, MGET, SET, DEL, TOUCH, STATS, CLUSTER = 1, 2, 3, 4, 5, 6, 7, 8, 9
FORWARD, SYNC, REPLICATE = 10, 11, 12
# statuses (§7)
OK, NOT_FOUND, EXISTS, NOT_STORED, BAD_REQUEST, TOO_LARGE = 0, 1, 2, 3, 4, 5
BACKEND_UNAVAILABLE, BUSY, INTERNAL, AUTH_REQUIRED, RETRY = 6, 7, 8, 9, 10
STATUS_NAMES = {0: "OK", 1: "NOT_FOUND", 2: "EXISTS", 3: "NOT_STORED", 4: "BAD_REQUEST",
                5: "TOO_LARGE", 6: "BACKEND_UNAVAILABLE", 7: "BUSY", 8: "INTERNAL",
                9: "AUTH_REQUIRED", 10: "RETRY"}


def hx(s):
    """The document's hex notation ("00 00 00 16 95 ...") as bytes."""
    return bytes.fromhex(s.replace(" ", "").replace("\n", ""))


def shex(b, limit=80):
    """Bytes as the document writes them (cut after `limit` bytes)."""
    s = " ".join(f"{x:02x}" for x in b[:limit])
    return s + (f" ... ({len(b)} bytes)" if len(b) > limit else "")


# ---- msgpack, the subset of §3, by hand -----------------------------------------------


class Raw:
    """Bytes put into a body as they are: a pre-encoded msgpack value (to
    send a format the encoder would not choose), or deliberate garbage."""

    def __init__(self, b):
        self.b = bytes(b)

    def __repr__(self):
        return f"Raw({shex(self.b, 16)})"


class Ext:
    def __init__(self, type_, data):
        self.type, self.data = type_, data

    def __eq__(self, o):
        return isinstance(o, Ext) and (o.type, o.data) == (self.type, self.data)

    def __repr__(self):
        return f"Ext({self.type}, {self.data!r})"


def pk(o):
    """Encodes o as a sender does (§3): the smallest int form (uint forms
    for non-negative values), bin for bytes, str for str."""
    if isinstance(o, Raw):
        return o.b
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if o >= 0:
            if o < 0x80:
                return bytes([o])
            if o <= 0xFF:
                return b"\xcc" + struct.pack(">B", o)
            if o <= 0xFFFF:
                return b"\xcd" + struct.pack(">H", o)
            if o <= 0xFFFFFFFF:
                return b"\xce" + struct.pack(">I", o)
            if o <= U64:
                return b"\xcf" + struct.pack(">Q", o)
            raise ValueError(f"{o} does not fit in msgpack")
        if o >= -32:
            return struct.pack(">b", o)
        if o >= -0x80:
            return b"\xd0" + struct.pack(">b", o)
        if o >= -0x8000:
            return b"\xd1" + struct.pack(">h", o)
        if o >= -0x80000000:
            return b"\xd2" + struct.pack(">i", o)
        if o >= -2 ** 63:
            return b"\xd3" + struct.pack(">q", o)
        raise ValueError(f"{o} does not fit in msgpack")
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n <= 0xFF:
            h = b"\xc4" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            h = b"\xc5" + struct.pack(">H", n)
        else:
            h = b"\xc6" + struct.pack(">I", n)
        return h + bytes(o)
    if isinstance(o, str):
        b = o.encode("utf-8", "surrogateescape")
        n = len(b)
        if n < 32:
            h = bytes([0xA0 | n])
        elif n <= 0xFF:
            h = b"\xd9" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            h = b"\xda" + struct.pack(">H", n)
        else:
            h = b"\xdb" + struct.pack(">I", n)
        return h + b
    if isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            h = bytes([0x90 | n])
        elif n <= 0xFFFF:
            h = b"\xdc" + struct.pack(">H", n)
        else:
            h = b"\xdd" + struct.pack(">I", n)
        return h + b"".join(pk(x) for x in o)
    if isinstance(o, dict):
        n = len(o)
        if n < 16:
            h = bytes([0x80 | n])
        elif n <= 0xFFFF:
            h = b"\xde" + struct.pack(">H", n)
        else:
            h = b"\xdf" + struct.pack(">I", n)
        return h + b"".join(pk(k) + pk(v) for k, v in o.items())
    if isinstance(o, Ext):
        if len(o.data) == 1:
            return b"\xd4" + struct.pack(">b", o.type) + o.data
        return b"\xc7" + struct.pack(">Bb", len(o.data), o.type) + o.data
    raise TypeError(f"cannot encode {type(o)}")


# Ints in a format of the caller's choice (§3: a receiver accepts any int
# format whose value fits the field).
def u8(v): return Raw(b"\xcc" + struct.pack(">B", v))
def u16(v): return Raw(b"\xcd" + struct.pack(">H", v))
def u32(v): return Raw(b"\xce" + struct.pack(">I", v))
def u64(v): return Raw(b"\xcf" + struct.pack(">Q", v))
def i8(v): return Raw(b"\xd0" + struct.pack(">b", v))
def i16(v): return Raw(b"\xd1" + struct.pack(">h", v))
def i32(v): return Raw(b"\xd2" + struct.pack(">i", v))
def i64(v): return Raw(b"\xd3" + struct.pack(">q", v))
def str8(b): return Raw(b"\xd9" + struct.pack(">B", len(b)) + b)
def str16(b): return Raw(b"\xda" + struct.pack(">H", len(b)) + b)
def bin32(b): return Raw(b"\xc6" + struct.pack(">I", len(b)) + b)


def frame(body):
    """§2: a 4-byte big-endian length, then the body."""
    return struct.pack(">I", len(body)) + body


def fr(msg):
    return frame(pk(msg))


class Malformed(Exception):
    pass


class Decoder:
    """A strict decoder for what a node sends. Besides the value it notes
    every place the sender did not use the form §3 says a sender uses
    (the smallest int form, uint forms for a non-negative value)."""

    def __init__(self, b, max_depth=4):
        self.b, self.i, self.max_depth = b, 0, max_depth
        self.issues = []

    def take(self, n):
        if n > len(self.b) - self.i:
            raise Malformed(f"{n} bytes claimed at offset {self.i}, {len(self.b) - self.i} left")
        s = self.b[self.i:self.i + n]
        self.i += n
        return s

    def _int(self, at, fmt, v):
        # The smallest form for this value, per §3.
        smallest = pk(v)[0]
        if smallest != fmt and not (0 <= v < 0x80 and fmt < 0x80) and not (-32 <= v < 0 and fmt >= 0xE0):
            self.issues.append(f"int {v} at offset {at} sent as 0x{fmt:02x}, "
                               f"smallest form is 0x{smallest:02x}")
        return v

    def value(self, depth=0):
        at = self.i
        c = self.take(1)[0]
        if c <= 0x7F:
            return c
        if c >= 0xE0:
            return c - 0x100
        if 0x80 <= c <= 0x8F:
            return self._map(c & 0x0F, depth)
        if 0x90 <= c <= 0x9F:
            return self._array(c & 0x0F, depth)
        if 0xA0 <= c <= 0xBF:
            return self.take(c & 0x1F).decode("utf-8", "surrogateescape")
        if c == 0xC0:
            return None
        if c == 0xC1:
            raise Malformed(f"0xc1 at offset {at}")
        if c == 0xC2:
            return False
        if c == 0xC3:
            return True
        if c in (0xC4, 0xC5, 0xC6):
            n = struct.unpack(">" + "BHI"[c - 0xC4], self.take(1 << (c - 0xC4)))[0]
            return bytes(self.take(n))
        if c in (0xC7, 0xC8, 0xC9):
            n = struct.unpack(">" + "BHI"[c - 0xC7], self.take(1 << (c - 0xC7)))[0]
            t = struct.unpack(">b", self.take(1))[0]
            return Ext(t, bytes(self.take(n)))
        if c == 0xCA:
            return struct.unpack(">f", self.take(4))[0]
        if c == 0xCB:
            return struct.unpack(">d", self.take(8))[0]
        if 0xCC <= c <= 0xCF:
            n = 1 << (c - 0xCC)
            return self._int(at, c, int.from_bytes(self.take(n), "big"))
        if 0xD0 <= c <= 0xD3:
            n = 1 << (c - 0xD0)
            return self._int(at, c, int.from_bytes(self.take(n), "big", signed=True))
        if 0xD4 <= c <= 0xD8:
            n = 1 << (c - 0xD4)
            t = struct.unpack(">b", self.take(1))[0]
            return Ext(t, bytes(self.take(n)))
        if c in (0xD9, 0xDA, 0xDB):
            n = struct.unpack(">" + "BHI"[c - 0xD9], self.take(1 << (c - 0xD9)))[0]
            return self.take(n).decode("utf-8", "surrogateescape")
        if c in (0xDC, 0xDD):
            n = struct.unpack(">" + "HI"[c - 0xDC], self.take(2 << (c - 0xDC)))[0]
            return self._array(n, depth)
        if c in (0xDE, 0xDF):
            n = struct.unpack(">" + "HI"[c - 0xDE], self.take(2 << (c - 0xDE)))[0]
            return self._map(n, depth)
        raise Malformed(f"byte 0x{c:02x} at offset {at}")  # not reached

    def _array(self, n, depth):
        if depth + 1 > self.max_depth:
            raise Malformed(f"nesting deeper than {self.max_depth}")
        if n > len(self.b) - self.i:
            raise Malformed(f"array of {n} in {len(self.b) - self.i} bytes")
        return [self.value(depth + 1) for _ in range(n)]

    def _map(self, n, depth):
        if depth + 1 > self.max_depth:
            raise Malformed(f"nesting deeper than {self.max_depth}")
        if 2 * n > len(self.b) - self.i:
            raise Malformed(f"map of {n} in {len(self.b) - self.i} bytes")
        out = {}
        for _ in range(n):
            k = self.value(depth + 1)
            out[k] = self.value(depth + 1)
        return out


def unpack_body(body):
    """Decodes a body that must hold exactly one value (§2): returns
    (value, format issues)."""
    d = Decoder(body)
    v = d.value()
    if d.i != len(body):
        raise Malformed(f"{len(body) - d.i} bytes after the value")
    return v, d.issues


def mp_reference(body):
    """The same body through python3-msgpack (bin -> bytes, str -> str), to
    cross-check the hand-written decoder."""
    def conv(o):
        if isinstance(o, msgpack.ExtType):
            return Ext(o.code, o.data)
        if isinstance(o, list):
            return [conv(x) for x in o]
        if isinstance(o, dict):
            return {conv(k): conv(v) for k, v in o.items()}
        return o
    return conv(msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True,
                                unicode_errors="surrogateescape"))


# ---- checks and their report ----------------------------------------------------------


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


# Added to a time limit's upper bound: the node's own bound plus this, for a
# loaded 2-core CI machine (the suite also runs against an ASan build). The
# lower bounds are exact.
SLACK = 1.0

RESULTS = []        # (name, passed, detail)
FORMAT_ISSUES = []  # (where, issue): a node's response not in the forms of §3
MISMATCHES = []     # decoder vs python3-msgpack


def run_check(name, fn, *args):
    t0 = time.monotonic()
    try:
        fn(*args)
        RESULTS.append((name, True, ""))
        print(f"PASS  {name}  ({time.monotonic() - t0:.2f} s)", flush=True)
    except Failure as e:
        RESULTS.append((name, False, str(e)))
        print(f"FAIL  {name}: {e}", flush=True)
    except Exception as e:
        RESULTS.append((name, False, f"unexpected {e!r}"))
        print(f"FAIL  {name}: unexpected exception", flush=True)
        traceback.print_exc(file=sys.stdout)


def note(msg):
    """Something the document leaves unsaid: what the node did, printed."""
    print(f"NOTE  {msg}", flush=True)


# ---- a connection ----------------------------------------------------------------------


class Closed(Exception):
    pass


class Conn:
    """One TCP connection to a node: frames out, frames in."""

    def __init__(self, port, timeout=10, source=None):
        self.port = port
        self.s = socket.create_connection((HOST, port), timeout=timeout,
                                          source_address=(source, 0) if source else None)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.last_raw = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, msg):
        self.s.sendall(fr(msg))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"{len(self.buf)} of {n} bytes")
            self.s.settimeout(left)
            try:
                d = self.s.recv(max(65536, n - len(self.buf)))
            except ConnectionResetError:
                d = b""
            if not d:
                raise Closed(f"closed after {len(self.buf)} of {n} bytes"
                             + (f": {shex(self.buf)}" if self.buf else ""))
            self.buf += d

    def recv_frame(self, timeout=10):
        """The next frame's raw bytes (prefix included)."""
        deadline = time.monotonic() + timeout
        self._fill(4, deadline)
        n = struct.unpack(">I", self.buf[:4])[0]
        check(1 <= n <= MAX_FRAME, f"the node sent a frame of L = {n} (§2: 1 <= L <= max_frame)")
        self._fill(4 + n, deadline)
        raw, self.buf = self.buf[:4 + n], self.buf[4 + n:]
        self.last_raw = raw
        return raw

    def recv(self, timeout=10):
        """The next response, decoded and checked against §3 and §6's
        general rules (an array starting with uint op, uint id, uint status)."""
        raw = self.recv_frame(timeout)
        return decode_response(raw[4:])

    def call(self, msg, timeout=10):
        self.send(msg)
        return self.recv(timeout)

    def expect_eof(self, timeout=5):
        """The node closes the connection, sending nothing more."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                raise Failure(f"expected the close, got more bytes: {shex(self.buf)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"the connection is still open {timeout} s later")
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                continue
            if not d:
                return
            self.buf += d


def decode_response(body):
    try:
        v, issues = unpack_body(body)
    except Malformed as e:
        raise Failure(f"the node sent a malformed body ({e}): {shex(body)}")
    try:
        ref = mp_reference(body)
        if ref != v:
            MISMATCHES.append(f"{shex(body)}: mine {v!r}, msgpack's {ref!r}")
    except Exception as e:
        MISMATCHES.append(f"{shex(body)}: python3-msgpack failed: {e!r}")
    check(isinstance(v, list) and len(v) >= 3,
          f"a response that is not an array of at least 3: {v!r} ({shex(body)})")
    for i, what in enumerate(("op", "id", "status")):
        check(isinstance(v[i], int) and not isinstance(v[i], bool) and v[i] >= 0,
              f"response {what} is not a uint: {v!r}")
    for s in issues:
        FORMAT_ISSUES.append((shex(body, 40), s))
    return v


def sname(st):
    return STATUS_NAMES.get(st, str(st))


# ---- processes -------------------------------------------------------------------------


class Ctx:
    pass


CTX = Ctx()


def rcli(*args, input=None):
    """redis-cli against our redis-server; its output without the last newline."""
    r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(CTX.redis_port)] + [a if isinstance(a, bytes) else str(a) for a in args],
                       input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check(r.returncode == 0, f"redis-cli {args[0]}: exit {r.returncode}: {r.stderr!r}")
    out = r.stdout
    return out[:-1] if out.endswith(b"\n") else out


# ======================================================================================
# A. The document itself: §11's bytes and §8's numbers
# ======================================================================================

DOC_SET_REQ = "00 00 00 16 95 05 07 c4 07 75 73 65 72 3a 34 32 c4 05 68 65 6c 6c 6f cd ea 60"
DOC_SET_RESP = "00 00 00 0d 94 05 07 00 cf 00 00 00 1a 21 a2 78 be"
DOC_GET_REQ = "00 00 00 0c 93 03 08 c4 07 75 73 65 72 3a 34 32"
DOC_GET_HERE_REQ = "00 00 00 0d 94 03 08 c4 07 75 73 65 72 3a 34 32 01"
DOC_GET_HIT = ("00 00 00 18 97 03 08 00 c4 05 68 65 6c 6c 6f 00 cf 00 00 00 1a 21 a2 78 be "
               "cd e9 e2")
DOC_GET_MISS = "00 00 00 12 94 03 09 01 ad 6b 65 79 20 6e 6f 74 20 66 6f 75 6e 64"
DOC_PING_REQ = "00 00 00 03 92 02 01"
DOC_PING_RESP = "00 00 00 04 93 02 01 00"
DOC_FP = 0xa9bd5e6c66331fa8
DOC_LIVE = {
    "set": "00 00 00 16 95 05 07 00 cf 00 00 00 1a 21 a2 78 be cf a9 bd 5e 6c 66 33 1f a8",
    "hit": ("00 00 00 21 98 03 08 00 c4 05 68 65 6c 6c 6f 00 cf 00 00 00 1a 21 a2 78 be cd e9 e2 "
            "cf a9 bd 5e 6c 66 33 1f a8"),
    "miss": ("00 00 00 1b 95 03 09 01 ad 6b 65 79 20 6e 6f 74 20 66 6f 75 6e 64 "
             "cf a9 bd 5e 6c 66 33 1f a8"),
    "ping": "00 00 00 0d 94 02 01 00 cf a9 bd 5e 6c 66 33 1f a8",
}
DOC_VERSION = 112233445566
KEY42 = b"user:42"


def a_examples_encode():
    eq(0x1a21a278be, DOC_VERSION, "§11.1 0x1a21a278be")
    cases = [
        ("§11.1 SET request", [SET, 7, KEY42, b"hello", 60000], DOC_SET_REQ),
        ("§11.1 SET response", [SET, 7, OK, DOC_VERSION], DOC_SET_RESP),
        ("§11.2 GET request", [GET, 8, KEY42], DOC_GET_REQ),
        ("§11.2 hedged GET request", [GET, 8, KEY42, 1], DOC_GET_HERE_REQ),
        ("§11.2 GET hit", [GET, 8, OK, b"hello", 0, DOC_VERSION, 59874], DOC_GET_HIT),
        ("§11.2 GET miss", [GET, 9, NOT_FOUND, "key not found"], DOC_GET_MISS),
        ("§11.3 PING request", [PING, 1], DOC_PING_REQ),
        ("§11.3 PING answer", [PING, 1, OK], DOC_PING_RESP),
        ("§11.4 SET", [SET, 7, OK, DOC_VERSION, DOC_FP], DOC_LIVE["set"]),
        ("§11.4 GET hit", [GET, 8, OK, b"hello", 0, DOC_VERSION, 59874, DOC_FP], DOC_LIVE["hit"]),
        ("§11.4 GET miss", [GET, 9, NOT_FOUND, "key not found", DOC_FP], DOC_LIVE["miss"]),
        ("§11.4 PING", [PING, 1, OK, DOC_FP], DOC_LIVE["ping"]),
    ]
    for what, msg, doc in cases:
        mine = fr(msg)
        eq(shex(mine, 10 ** 6), shex(hx(doc), 10 ** 6), f"{what}: my encoding vs the document")
        lib = frame(msgpack.packb(msg, use_bin_type=True))
        eq(shex(lib, 10 ** 6), shex(hx(doc), 10 ** 6), f"{what}: python3-msgpack vs the document")
        v, issues = unpack_body(hx(doc)[4:])
        eq(v, msg, f"{what}: the document's bytes decoded")
        eq(issues, [], f"{what}: the document's bytes use the smallest forms")
    # The tables' own statements.
    eq(len(hx(DOC_SET_REQ)), 26, "§11.1 'Request, 26 bytes'")
    eq(len(hx(DOC_SET_RESP)), 17, "§11.1 'Response ... 17 bytes'")
    eq(len(hx(DOC_GET_REQ)), 16, "§11.2 'Request, 16 bytes'")
    eq(len(hx(DOC_GET_HERE_REQ)), 17, "§11.2 hedged '17 bytes'")
    eq(len(hx(DOC_GET_HIT)), 28, "§11.2 hit '28 bytes'")
    eq(len(hx(DOC_GET_MISS)), 22, "§11.2 miss '22 bytes'")
    eq(hx("cd e9 e2"), pk(59874), "§11.2 'cd e9 e2 = 59874'")
    for k in ("set", "hit", "miss", "ping"):
        short = {"set": DOC_SET_RESP, "hit": DOC_GET_HIT, "miss": DOC_GET_MISS,
                 "ping": DOC_PING_RESP}[k]
        eq(len(hx(DOC_LIVE[k])) - len(hx(short)), 9, f"§11.4 {k}: 'L is 9 more'")


def a_limits_arithmetic():
    eq(MAX_FRAME, 1024 * 1024 + 128 * 1024, "§2 max_frame = 1 MiB + 128 KiB")
    eq(LARGEST_TTL, 4_611_686_018_427_387_904, "§8 2^62")
    check(MAX_KEY + MAX_VALUE + 512 <= MAX_FRAME, "§8 the defaults break max_key + max_value + 512")
    # §8: "The largest legal SET at default limits (65,536-byte key, 1 MiB value,
    # ttl_ms at the largest TTL, flags 2^32-1, cond 2, cas 2^64-1) is 1,114,157
    # body bytes". The id is not given: at its widest (uint 64) the sum matches.
    body = pk([SET, U64, b"k" * MAX_KEY, b"v" * MAX_VALUE, LARGEST_TTL, U32, 2, U64])
    eq(len(body), 1_114_157, "§8 largest legal SET (id 2^64-1, no deadline_ms), body bytes")
    # §8: a GET response is at most the value + 49 bytes (53 with the prefix).
    for vlen in (65_536, MAX_VALUE):
        resp = pk([GET, U64, OK, b"x" * vlen, U32, U64, -2 ** 63, U64])
        eq(len(resp) - vlen, 49, f"§8 widest GET response overhead (value {vlen} bytes)")
        eq(len(frame(resp)) - vlen, 53, "§8 '53 on the wire'")
    # §8 per-op table: requests' values are their elements + 1 (the array);
    # the OK responses as §6 defines them plus the ring fingerprint.
    table = {  # op: (req elems, req values, resp elems, resp values)
        "HELLO": (4, 5, 8, 9), "PING": (2, 3, 4, 5), "GET": (4, 5, 8, 9), "SET": (9, 10, 5, 6),
        "DEL": (4, 5, 4, 5), "TOUCH": (5, 6, 4, 5), "STATS": (2, 3, 5, None),
        "CLUSTER": (2, 3, 6, None), "FORWARD": (5, 6, 5, 6), "SYNC": (3, 4, 5, 6),
    }
    defined_req = {"HELLO": 2, "PING": 0, "GET": 2, "SET": 7, "DEL": 2, "TOUCH": 3, "STATS": 0,
                   "CLUSTER": 0, "FORWARD": 3, "SYNC": 1}
    # §6's OK responses after op and id, status included (HELLO's now_ms too;
    # CLUSTER's fingerprint is one of its own fields).
    defined_resp = {"HELLO": 5, "PING": 1, "GET": 5, "SET": 2, "DEL": 1, "TOUCH": 1, "STATS": 2,
                    "CLUSTER": 4, "FORWARD": 2, "SYNC": 2}
    for op, (re, rv, se, sv) in table.items():
        eq(re, 2 + defined_req[op], f"§8 {op} request elements vs §4")
        eq(rv, re + 1, f"§8 {op} request values")
        fp = 0 if op == "CLUSTER" else 1
        eq(se, 2 + defined_resp[op] + fp, f"§8 {op} OK response elements vs §6")
        if sv is not None:
            eq(sv, se + 1, f"§8 {op} OK response values")
    eq(6 + 8 * MAX_MGET_KEYS + 16, 8_214, "§8 'no request ... with more than 8,214 values'")
    eq((4 + 8, 5 + 16), (12, 21), "§8 'a GET may carry up to 12 elements and 21 values'")


def a_only_mget_replicate_over_26():
    # §8: "At default limits no request is accepted with more than 8,214 values
    # (a REPLICATE of 1,024 entries), and only MGET and REPLICATE with more
    # than 26 (a SET's 10 and 16 more)." From the same section's table, each
    # op's largest request is its own values + 16.
    own = {"HELLO": 5, "PING": 3, "GET": 5, "SET": 10, "DEL": 5, "TOUCH": 6, "STATS": 3,
           "CLUSTER": 3, "FORWARD": 6, "SYNC": 4, "unknown op": 3}
    over = {op: v + 16 for op, v in own.items() if v + 16 > 26}
    check(not over, "§8 says only MGET and REPLICATE accept more than 26 values, but the "
          f"same section's table gives {over}")
    eq(max(v + 16 for v in own.values()), 26, "§8: the largest request of another op (SET)")


# ======================================================================================
# Helpers over a live node
# ======================================================================================


class Node:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc
        self.fp = None        # its ring fingerprint, from HELLO (§5.1, §6)

    def conn(self, timeout=10, source=None):
        return Conn(self.port, timeout, source)


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def fp_ok(node, r, what):
    check(is_uint(r[-1]) and r[-1] == node.fp,
          f"{what}: last element {r[-1]!r} is not the ring fingerprint {node.fp} (§6, §11)")


def expect_ok(node, r, op, id_, nfields, what):
    """r is [op, id, 0, nfields fields..., ring_fp] (§6; a live node always
    adds its fingerprint, §11)."""
    check(r[0] == op and r[1] == id_, f"{what}: op/id {r[:2]}, want [{op}, {id_}] ({r!r})")
    check(r[2] == OK, f"{what}: status {sname(r[2])}, want OK ({r!r})")
    eq(len(r), 3 + nfields + 1, f"{what}: elements in {r!r}")
    fp_ok(node, r, what)
    return r[3:3 + nfields]


def expect_err(node, r, op, id_, status, what, contains=None):
    """r is [op, id, status, message: text, ring_fp] (§6)."""
    check(r[0] == op and r[1] == id_, f"{what}: op/id {r[:2]}, want [{op}, {id_}] ({r!r})")
    check(r[2] == status, f"{what}: status {sname(r[2])} ({r!r}), want {sname(status)}")
    eq(len(r), 5, f"{what}: elements of the error response {r!r}")
    check(isinstance(r[3], str), f"{what}: message {r[3]!r} is not text")
    fp_ok(node, r, what)
    if contains is not None:
        check(contains in r[3], f"{what}: message {r[3]!r} does not say {contains!r}")
    return r[3]


def expect_conn_error(c, status, what, message=None, timeout=5):
    """§7.1: one frame [0, 0, status, message] (no ring fingerprint, §11),
    then the close."""
    try:
        r = c.recv(timeout)
    except Closed as e:
        raise Failure(f"{what}: closed without the connection-level error frame ({e})")
    except socket.timeout:
        raise Failure(f"{what}: no answer within {timeout} s")
    raw = c.last_raw
    check(r[0] == 0 and r[1] == 0, f"{what}: want a frame with op 0, id 0, got {r!r} ({shex(raw)})")
    check(r[2] == status, f"{what}: status {sname(r[2])} ({r!r}), want {sname(status)}")
    check(len(r) == 4 and isinstance(r[3], str),
          f"{what}: want [0, 0, {status}, message] (4 elements, no fingerprint), got {r!r}")
    if message is not None:
        eq(shex(raw, 10 ** 6), shex(fr([0, 0, status, message]), 10 ** 6),
           f"{what}: the frame (§7: {message!r})")
    c.expect_eof()
    return r[3]


def get(c, node, key, id_=None, what="GET"):
    """GET key: (value, flags, version, ttl_ms) for a hit, None for NOT_FOUND."""
    id_ = random.randrange(1, 1 << 30) if id_ is None else id_
    r = c.call([GET, id_, key])
    if r[2] == NOT_FOUND:
        expect_err(node, r, GET, id_, NOT_FOUND, what)
        return None
    v = expect_ok(node, r, GET, id_, 4, what)
    check(isinstance(v[0], bytes), f"{what}: value {v[0]!r} is not bin (§3 bytes)")
    check(is_uint(v[1]) and v[1] <= U32, f"{what}: flags {v[1]!r}")
    check(is_uint(v[2]) and v[2] > 0, f"{what}: version {v[2]!r} (§5.5: 0 is never valid)")
    check(is_int(v[3]) and v[3] >= -1, f"{what}: ttl_ms {v[3]!r}")
    return tuple(v)


def setk(c, node, key, value, *opt, id_=None, status=OK, what="SET"):
    """SET with optional args; returns the version (OK) or the message."""
    id_ = random.randrange(1, 1 << 30) if id_ is None else id_
    r = c.call([SET, id_, key, value] + list(opt))
    if status == OK:
        v = expect_ok(node, r, SET, id_, 1, what)
        check(is_uint(v[0]) and v[0] > 0, f"{what}: version {v[0]!r}")
        return v[0]
    return expect_err(node, r, SET, id_, status, what)


def simple(c, node, msg, status, what, contains=None, nfields=0):
    r = c.call(msg)
    if status == OK:
        return expect_ok(node, r, msg[0], msg[1], nfields, what)
    return expect_err(node, r, msg[0], msg[1], status, what, contains)


def alive(c, node, what):
    """The connection still serves (§7.2: connection kept)."""
    id_ = random.randrange(1, 1 << 30)
    try:
        r = c.call([PING, id_])
    except (Closed, OSError) as e:
        raise Failure(f"{what}: the connection was closed ({e}); §7.2 keeps it")
    expect_ok(node, r, PING, id_, 0, f"{what}: PING after")


def redis_pttl(key):
    return int(rcli("PTTL", key))


def stats(node):
    with node.conn() as c:
        r = c.call([STATS, 1])
        v = expect_ok(node, r, STATS, 1, 1, "STATS")
        check(isinstance(v[0], dict), f"STATS: {v[0]!r} is not a map")
        return v[0]


K = None  # the key prefix of this run (bytes)


def key(name):
    return K + name.encode() if isinstance(name, str) else K + name


# ======================================================================================
# B. One node, --insecure, with Redis behind it
# ======================================================================================


def b_hello(N):
    with N.conn() as c:
        t0 = time.time() * 1000
        r = c.call([HELLO, 5, 1])
        t1 = time.time() * 1000
        # §6: [1, id, 0, proto_version, node_name, server_version], then the
        # ring fingerprint, then now_ms.
        check(r[:3] == [HELLO, 5, OK], f"HELLO 1: {r!r}")
        eq(len(r), 8, f"HELLO answer elements ({r!r})")
        eq(r[3], 1, "HELLO proto_version")
        check(isinstance(r[4], str), f"node_name {r[4]!r} is not text")
        eq(r[4], N.name, "HELLO node_name (--name)")
        check(isinstance(r[5], str) and r[5], f"server_version {r[5]!r} is not text")
        check(is_uint(r[6]), f"ring fingerprint {r[6]!r} is not a uint64")
        check(is_uint(r[7]), f"now_ms {r[7]!r} is not a uint64")
        check(abs(r[7] - (t0 + t1) / 2) < 5000, f"now_ms {r[7]} is not the wall clock ({t0:.0f})")
        N.fp = r[6]
        # Every response carries the same fingerprint (§6).
        alive(c, N, "HELLO")


def b_hello_versions(N):
    with N.conn() as c:
        for v in (2, 3, U32, u64(2), i8(1)):
            r = c.call([HELLO, 6, v])
            check(r[:4] == [HELLO, 6, OK, 1], f"HELLO {v}: want [1, 6, 0, 1, ...], got {r!r}")
            eq(len(r), 8, f"HELLO {v}: elements")
        # §5.1: version 0 is BAD_REQUEST ("unsupported protocol version"), kept.
        for v in (0, u32(0)):
            r = c.call([HELLO, 7, v])
            expect_err(N, r, HELLO, 7, BAD_REQUEST, f"HELLO {v}", "unsupported protocol version")
        alive(c, N, "HELLO 0")
        # Out of the uint32 field, wrong types, missing: BAD_REQUEST (§3, §7.2).
        for what, msg in [("version 2^32", [HELLO, 8, 2 ** 32]), ("version -1", [HELLO, 8, -1]),
                          ("version nil", [HELLO, 8, None]), ("no version", [HELLO, 8]),
                          ("version text", [HELLO, 8, "1"]), ("version float", [HELLO, 8, 1.0]),
                          ("version bool", [HELLO, 8, True]),
                          ("token an int", [HELLO, 8, 1, 5])]:
            expect_err(N, c.call(msg), HELLO, 8, BAD_REQUEST, f"HELLO {what}")
        alive(c, N, "bad HELLOs")


def b_hello_optional(N):
    # §5.1: HELLO is optional on a node without a token.
    with N.conn() as c:
        expect_err(N, c.call([GET, 3, key("never-set-" + str(random.random()))]), GET, 3,
                   NOT_FOUND, "GET as the first request")
    with N.conn() as c:
        # §5.1: "A node without a token answers a HELLO that carries one as
        # any other (OK; the token is not looked at)."
        r = c.call([HELLO, 4, 1, b"some-token"])
        check(r[:4] == [HELLO, 4, OK, 1], f"HELLO with a token to a node that requires none: {r!r}")


def b_cluster(N):
    with N.conn() as c:
        r = c.call([CLUSTER, 9])
        # §6: [9, id, 0, fingerprint, replicas, [[name, addr, state, inc, weight]]];
        # a successful CLUSTER reply carries no trailing fingerprint.
        check(r[:3] == [CLUSTER, 9, OK], f"CLUSTER: {r!r}")
        eq(len(r), 6, f"CLUSTER answer elements ({r!r}; no trailing fingerprint, §6)")
        eq(r[3], N.fp, "CLUSTER fingerprint vs HELLO's")
        check(is_uint(r[4]) and r[4] >= 1, f"replicas {r[4]!r}")
        eq(r[4], 2, "CLUSTER replicas (--replicas default 2)")
        check(isinstance(r[5], list) and len(r[5]) == 1, f"members {r[5]!r}")
        m = r[5][0]
        check(isinstance(m, list) and len(m) == 5, f"member {m!r}")
        check(isinstance(m[0], str) and isinstance(m[1], str), f"member name/addr not text {m!r}")
        eq(m[0], N.name, "member name")
        eq(m[1], f"{HOST}:{N.port}", "member addr")
        eq(m[2], 0, "member state (0 alive)")
        check(is_uint(m[3]), f"incarnation {m[3]!r}")
        eq(m[4], 1, "member weight (--weight default 1)")


def b_ping(N):
    with N.conn() as c:
        for id_ in (0, 1, 127, 128, 255, 256, 65535, 65536, U32, 2 ** 32, U64):
            r = c.call([PING, id_])
            expect_ok(N, r, PING, id_, 0, f"PING id {id_}")
            eq(shex(c.last_raw), shex(fr([PING, id_, OK, N.fp])), f"PING id {id_} bytes")


def b_int_formats(N):
    # §3: a receiver accepts any int format whose value fits the field.
    with N.conn() as c:
        for f in (u8, u16, u32, u64, i8, i16, i32, i64):
            c.send_raw(frame(pk([f(PING), f(9)])))
            r = c.recv()
            expect_ok(N, r, PING, 9, 0, f"PING as {f.__name__}")
            eq(shex(c.last_raw), shex(fr([PING, 9, OK, N.fp])), f"answer to PING as {f.__name__}")
        k = key("intfmt")
        v = setk(c, N, k, b"x", u64(0), i32(77), u16(0), u8(0), i64(0))
        g = get(c, N, k)
        eq((g[0], g[1], g[2], g[3]), (b"x", 77, v, -1), "SET with ints in odd formats, then GET")


def b_live_examples(N):
    """§11.1-§11.3's request bytes sent as they are; the answers as §11.4
    shows them, with this node's version, ttl_ms and fingerprint."""
    rcli("DEL", KEY42, "user:43")
    with N.conn() as c:
        # §11.1 SET user:42 = hello, TTL 60 s, id 7.
        c.send_raw(hx(DOC_SET_REQ))
        r = c.recv()
        v = expect_ok(N, r, SET, 7, 1, "§11.1 SET sent to the node")[0]
        want = hx(DOC_LIVE["set"]).replace(pk(DOC_VERSION), pk(v)).replace(pk(DOC_FP), pk(N.fp))
        want = frame(want[4:])  # L again if the version took another form
        eq(shex(c.last_raw, 10 ** 6), shex(want, 10 ** 6), "§11.4 SET answer")
        # §11.2 GET user:42, id 8, and the hedged one.
        for doc in (DOC_GET_REQ, DOC_GET_HERE_REQ):
            c.send_raw(hx(doc))
            r = c.recv()
            g = expect_ok(N, r, GET, 8, 4, "§11.2 GET sent to the node")
            eq((g[0], g[1], g[2]), (b"hello", 0, v), "§11.2 GET: value, flags, version")
            check(0 < g[3] <= 60000, f"§11.2 GET: ttl_ms {g[3]} not in (0, 60000]")
            want = (hx(DOC_LIVE["hit"]).replace(pk(59874), pk(g[3]))
                    .replace(pk(DOC_VERSION), pk(v)).replace(pk(DOC_FP), pk(N.fp)))
            want = frame(want[4:])  # L again if ttl_ms took another form
            eq(shex(c.last_raw, 10 ** 6), shex(want, 10 ** 6), "§11.4 GET hit answer")
        # The miss (GET id 9) of a key that is absent.
        c.send([GET, 9, b"user:43"])
        c.recv()
        want = frame(hx(DOC_LIVE["miss"]).replace(pk(DOC_FP), pk(N.fp))[4:])
        eq(shex(c.last_raw, 10 ** 6), shex(want, 10 ** 6), "§11.4 GET miss answer")
        # §11.3 PING, id 1.
        c.send_raw(hx(DOC_PING_REQ))
        c.recv()
        want = frame(hx(DOC_LIVE["ping"]).replace(pk(DOC_FP), pk(N.fp))[4:])
        eq(shex(c.last_raw, 10 ** 6), shex(want, 10 ** 6), "§11.4 PING answer")
    # Write-through: §11.1's SET is in Redis with its TTL.
    eq(rcli("GET", KEY42), b"hello", "Redis GET user:42 after §11.1's SET")
    p = redis_pttl(KEY42)
    check(0 < p <= 60000, f"Redis PTTL user:42 is {p}")


def b_set_get_basics(N):
    with N.conn() as c:
        k = key(b"bin\x00\xff\x80key")
        val = bytes(range(256)) * 3
        v1 = setk(c, N, k, val, 0, U32)
        g = get(c, N, k)
        eq(g, (val, U32, v1, -1), "GET after SET (binary key and value, flags 2^32-1, no TTL)")
        # ttl_ms -1 for no expiry is the negative fixint 0xff (§3 int).
        check(c.last_raw.endswith(b"\xff" + pk(N.fp)), f"ttl_ms -1 not sent as ff: {shex(c.last_raw)}")
        v2 = setk(c, N, k, b"second")
        check(v2 != v1, f"a second SET kept the version {v1}")
        eq(get(c, N, k)[:3], (b"second", 0, v2), "GET after a second SET (flags back to 0)")
        # §5.5: an empty value is a value.
        ke = key("empty")
        ve = setk(c, N, ke, b"")
        eq(get(c, N, ke), (b"", 0, ve, -1), "GET of an empty value")
        eq(rcli("EXISTS", ke), b"1", "Redis EXISTS of the empty value")
        # §3: keys and values may come as str; the bytes are used as they are.
        ks = "strkey-" + K.decode()
        vs = setk(c, N, ks, "strvalue")
        eq(get(c, N, ks.encode()), (b"strvalue", 0, vs, -1), "a str key and value, read as bin")
        eq(get(c, N, str8(ks.encode()))[0], b"strvalue", "the key as str 8")
        eq(get(c, N, str16(ks.encode()))[0], b"strvalue", "the key as str 16")
        eq(get(c, N, bin32(ks.encode()))[0], b"strvalue", "the key as bin 32")
        # Optional arguments as nil are their defaults (§4).
        kn = key("nils")
        vn = setk(c, N, kn, b"n", None, None, None, None, None)
        eq(get(c, N, kn), (b"n", 0, vn, -1), "SET with every optional argument nil")
        # A TTL.
        kt = key("ttl")
        setk(c, N, kt, b"t", 60000, 5)
        g = get(c, N, kt)
        check(50000 < g[3] <= 60000 and g[1] == 5, f"GET after SET ttl 60000 flags 5: {g!r}")


def b_write_through(N):
    with N.conn() as c:
        k = key("wt")
        setk(c, N, k, b"written", 45000)
        eq(rcli("GET", k), b"written", "Redis GET after SET")
        p = redis_pttl(k)
        check(40000 < p <= 45000, f"Redis PTTL after SET ttl 45000: {p}")
        setk(c, N, k, b"forever")
        eq(rcli("GET", k), b"forever", "Redis GET after a SET without TTL")
        eq(redis_pttl(k), -1, "Redis PTTL after a SET without TTL")
        simple(c, N, [TOUCH, 2, k, 30000], OK, "TOUCH 30000")
        p = redis_pttl(k)
        check(25000 < p <= 30000, f"Redis PTTL after TOUCH 30000: {p}")
        g = get(c, N, k)
        check(25000 < g[3] <= 30000, f"GET ttl_ms after TOUCH 30000: {g[3]}")
        simple(c, N, [TOUCH, 3, k, 0], OK, "TOUCH 0")
        eq(redis_pttl(k), -1, "Redis PTTL after TOUCH 0 (§5.7: 0 removes the expiry)")
        eq(get(c, N, k)[3], -1, "GET ttl_ms after TOUCH 0")
        simple(c, N, [DEL, 4, k], OK, "DEL")
        eq(rcli("EXISTS", k), b"0", "Redis EXISTS after DEL")


def b_read_through(N):
    k1, k2 = key("rt1"), key("rt2")
    rcli("SET", k1, "from-redis", "PX", 50000)
    rcli("SET", k2, "no-ttl")
    with N.conn() as c:
        g = get(c, N, k1)
        check(g is not None, "GET of a key written with redis-cli: NOT_FOUND")
        eq((g[0], g[1]), (b"from-redis", 0), "GET of a key written with redis-cli")
        check(40000 < g[3] <= 50000, f"its ttl_ms {g[3]}: not Redis' (PX 50000)")
        g = get(c, N, k2)
        eq((g[0], g[1], g[3]), (b"no-ttl", 0, -1), "GET of a key without TTL in Redis")
        k3 = key("rt3")
        rcli("SET", k3, "mget-me")
        r = c.call([MGET, 5, [k3, key("rt-none")]])
        e = expect_ok(N, r, MGET, 5, 1, "MGET of a key only Redis has")[0]
        check(len(e) == 2 and e[0][:2] == [OK, b"mget-me"] and e[1] == [NOT_FOUND],
              f"MGET entries {e!r}")
        # DEL of a key only Redis has deletes it there.
        k4 = key("rt4")
        rcli("SET", k4, "x")
        simple(c, N, [DEL, 6, k4], OK, "DEL of a key only Redis has")
        eq(rcli("EXISTS", k4), b"0", "Redis EXISTS after that DEL")
        simple(c, N, [DEL, 7, k4], NOT_FOUND, "DEL again")


def b_conditions(N):
    with N.conn() as c:
        k = key("nx")
        setk(c, N, k, b"1", 0, 0, 1)
        setk(c, N, k, b"2", 0, 0, 1, status=EXISTS, what="SET NX of a present key")
        eq(get(c, N, k)[0], b"1", "value after a refused NX")
        kx = key("xx")
        setk(c, N, kx, b"1", 0, 0, 2, status=NOT_STORED, what="SET XX of an absent key")
        check(get(c, N, kx) is None, "SET XX of an absent key stored it")
        eq(rcli("EXISTS", kx), b"0", "SET XX of an absent key reached Redis")
        setk(c, N, k, b"3", 0, 0, 2, what="SET XX of a present key")
        eq(get(c, N, k)[0], b"3", "value after XX")
        # §5.5: with Redis, NX and XX are decided by Redis.
        kr = key("nx-redis")
        rcli("SET", kr, "in-redis")
        setk(c, N, kr, b"n", 0, 0, 1, status=EXISTS, what="SET NX of a key only Redis has")
        eq(rcli("GET", kr), b"in-redis", "Redis value after that NX")
        kr2 = key("xx-redis")
        rcli("SET", kr2, "in-redis")
        setk(c, N, kr2, b"x", 0, 0, 2, what="SET XX of a key only Redis has")
        eq(rcli("GET", kr2), b"x", "Redis value after that XX")
        # cond not 0, 1 or 2 (§5.5, §7.2).
        kb = key("cond-bad")
        for cond in (3, 255, U32, 2 ** 32, -1):
            setk(c, N, kb, b"v", 0, 0, cond, status=BAD_REQUEST, what=f"SET cond {cond}")
        check(get(c, N, kb) is None, "a SET with a bad cond stored")
        alive(c, N, "bad conds")


def b_cas(N):
    with N.conn() as c:
        k = key("cas")
        v1 = setk(c, N, k, b"1")
        v2 = setk(c, N, k, b"2", 0, 0, 0, v1, status=OK, what="CAS with the current version")
        check(v2 != v1, "a CAS kept the version")
        setk(c, N, k, b"3", 0, 0, 0, v1, status=EXISTS, what="CAS with an old version")
        eq(get(c, N, k)[:3], (b"2", 0, v2), "value after a refused CAS")
        # §5.5: a CAS on a key the node holds no copy of: NOT_FOUND; read it
        # (which caches it) and retry.
        kr = key("cas-redis")
        rcli("SET", kr, "r")
        setk(c, N, kr, b"c", 0, 0, 0, 12345, status=NOT_FOUND, what="CAS of a key only Redis has")
        eq(rcli("GET", kr), b"r", "Redis value after that CAS")
        g = get(c, N, kr)
        setk(c, N, kr, b"c", 0, 0, 0, g[2], what="CAS with the version the GET returned")
        eq(rcli("GET", kr), b"c", "Redis value after the CAS")
        ka = key("cas-absent")
        setk(c, N, ka, b"c", 0, 0, 0, 12345, status=NOT_FOUND, what="CAS of an absent key")
        # §5.5: CAS + NX is BAD_REQUEST, key present or not; nothing applied.
        for kk in (k, ka):
            m = setk(c, N, kk, b"nx", 0, 0, 1, v2, status=BAD_REQUEST, what="CAS with NX")
            check("compare-and-set cannot be combined with NX" in m, f"CAS+NX message {m!r}")
        eq(get(c, N, k)[0], b"2", "value after CAS+NX")
        eq(rcli("EXISTS", ka), b"0", "CAS+NX of an absent key reached Redis")
        # CAS + XX, with Redis (§5.5).
        kx = key("casxx")
        vx = setk(c, N, kx, b"1")
        vx2 = setk(c, N, kx, b"2", 0, 0, 2, vx, what="CAS+XX with the current version")
        setk(c, N, kx, b"3", 0, 0, 2, vx, status=EXISTS, what="CAS+XX with an old version")
        kxr = key("casxx-redis")
        rcli("SET", kxr, "r")
        setk(c, N, kxr, b"3", 0, 0, 2, 999, status=NOT_FOUND,
             what="CAS+XX of a key the node holds no copy of")
        setk(c, N, ka, b"3", 0, 0, 2, 999, status=NOT_FOUND, what="CAS+XX of an absent key")
        # Redis lost the key (another program deleted it): XX answers NOT_STORED.
        rcli("DEL", kx)
        setk(c, N, kx, b"4", 0, 0, 2, vx2, status=NOT_STORED,
             what="CAS+XX with the current version, the key deleted in Redis")
        eq(rcli("EXISTS", kx), b"0", "Redis EXISTS after that CAS+XX")
        # Without XX, a CAS that passes stores even if Redis lost the key.
        kl = key("cas-lost")
        vl = setk(c, N, kl, b"1")
        rcli("DEL", kl)
        setk(c, N, kl, b"5", 0, 0, 0, vl, what="CAS with the current version, key deleted in Redis")
        eq(rcli("GET", kl), b"5", "Redis value after that CAS")
        # CAS out of its uint64 field (2^64 does not fit in msgpack at all).
        setk(c, N, k, b"x", 0, 0, 0, -1, status=BAD_REQUEST, what="CAS -1")


def b_ttl_limits(N):
    with N.conn() as c:
        k = key("bigttl")
        setk(c, N, k, b"v", LARGEST_TTL, what="SET ttl_ms 2^62 (the largest TTL)")
        g = get(c, N, k)
        check(LARGEST_TTL - 60000 < g[3] <= LARGEST_TTL, f"GET ttl_ms after 2^62: {g[3]}")
        p = redis_pttl(k)
        check(LARGEST_TTL - 60000 < p <= LARGEST_TTL, f"Redis PTTL after 2^62: {p}")
        k2 = key("ttl-over")
        v = setk(c, N, k2, b"before")
        for ttl in (LARGEST_TTL + 1, 2 ** 63, U64):
            m = setk(c, N, k2, b"after", ttl, status=BAD_REQUEST, what=f"SET ttl_ms {ttl}")
            check("over the largest TTL, 4611686018427387904 ms" in m and m.startswith("SET"),
                  f"SET ttl_ms {ttl}: message {m!r} (§7.2: \"SET: ttl_ms ... over the largest "
                  "TTL, 4611686018427387904 ms\")")
        eq(get(c, N, k2), (b"before", 0, v, -1), "after refused TTLs (§8: nothing is changed)")
        eq(rcli("GET", k2), b"before", "Redis after refused TTLs")
        setk(c, N, k2, b"after", -1, status=BAD_REQUEST, what="SET ttl_ms -1")
        for ttl in (LARGEST_TTL + 1, U64):
            m = simple(c, N, [TOUCH, 3, k2, ttl], BAD_REQUEST, f"TOUCH ttl_ms {ttl}")
            check("over the largest TTL, 4611686018427387904 ms" in m,
                  f"TOUCH ttl_ms {ttl}: message {m!r}")
        eq(get(c, N, k2)[3], -1, "GET ttl_ms after refused TOUCHes (§8: nothing is changed)")
        eq(redis_pttl(k2), -1, "Redis PTTL after refused TOUCHes")
        simple(c, N, [TOUCH, 3, k2, LARGEST_TTL], OK, "TOUCH ttl_ms 2^62")
        simple(c, N, [TOUCH, 4, k2, 0], OK, "TOUCH ttl_ms 0")
        eq(get(c, N, k2)[3], -1, "GET ttl_ms after TOUCH 0")
        # flags: uint32.
        for fl in (2 ** 32, -1, 1.5):
            setk(c, N, k2, b"f", 0, fl, status=BAD_REQUEST, what=f"SET flags {fl}")
        eq(get(c, N, k2)[0], b"before", "value after refused flags")


def b_del_touch(N):
    with N.conn() as c:
        k = key("dt")
        setk(c, N, k, b"v")
        simple(c, N, [TOUCH, 10, k, 20000], OK, "TOUCH a present key")
        check(15000 < get(c, N, k)[3] <= 20000, "ttl after TOUCH")
        simple(c, N, [DEL, 11, k], OK, "DEL a present key")
        simple(c, N, [DEL, 12, k], NOT_FOUND, "DEL an absent key")
        simple(c, N, [TOUCH, 13, k, 1000], NOT_FOUND, "TOUCH an absent key")
        check(get(c, N, k) is None, "GET after DEL")
        for what, msg in [("TOUCH without ttl_ms", [TOUCH, 14, k]),
                          ("TOUCH ttl_ms nil", [TOUCH, 14, k, None]),
                          ("TOUCH ttl_ms float", [TOUCH, 14, k, 1.0]),
                          ("TOUCH ttl_ms -5", [TOUCH, 14, k, -5]),
                          ("TOUCH empty key", [TOUCH, 14, b"", 5]),
                          ("DEL without key", [DEL, 14]),
                          ("DEL empty key", [DEL, 14, b""]),
                          ("DEL key nil", [DEL, 14, None]),
                          ("DEL deadline -1", [DEL, 14, k, -1])]:
            simple(c, N, msg, BAD_REQUEST, what)
        alive(c, N, "bad DEL/TOUCH")


def b_deadlines(N):
    with N.conn() as c:
        # §5.5: off = now_ms - the middle of HELLO's round trip, unc = half of it.
        t0 = time.time() * 1000
        r = c.call([HELLO, 1, 1])
        t1 = time.time() * 1000
        off, unc = r[7] - (t0 + t1) / 2, (t1 - t0) / 2
        dl = lambda ms_from_now: int(time.time() * 1000 + ms_from_now + off - unc)
        late0 = stats(N).get("writes_late")
        check(is_int(late0), f"STATS has no writes_late ({late0!r})")
        k = key("dl")
        v = setk(c, N, k, b"before", 0, 0, 0, 0, dl(30000), what="SET with a deadline 30 s ahead")
        m = setk(c, N, k, b"late", 0, 0, 0, 0, dl(-2000), status=RETRY,
                 what="SET with a deadline 2 s ago")
        check("the write arrived after its deadline" in m, f"late SET message {m!r}")
        m = simple(c, N, [DEL, 3, k, dl(-2000)], RETRY, "DEL with a deadline 2 s ago")
        check("the write arrived after its deadline" in m, f"late DEL message {m!r}")
        m = simple(c, N, [TOUCH, 4, k, 5000, dl(-2000)], RETRY, "TOUCH with a deadline 2 s ago")
        check("the write arrived after its deadline" in m, f"late TOUCH message {m!r}")
        eq(get(c, N, k), (b"before", 0, v, -1), "GET after the late writes (nothing applied)")
        eq(rcli("GET", k), b"before", "Redis after the late writes")
        eq(redis_pttl(k), -1, "Redis PTTL after the late TOUCH")
        late1 = stats(N)["writes_late"]
        eq(late1 - late0, 3, "STATS writes_late after 3 late writes")
        simple(c, N, [TOUCH, 5, k, 5000, dl(30000)], OK, "TOUCH with a deadline ahead")
        simple(c, N, [DEL, 6, k, dl(30000)], OK, "DEL with a deadline ahead")


def b_get_here(N):
    with N.conn() as c:
        k = key("here")
        v = setk(c, N, k, b"h")
        for here in (1, 0, None, u8(1)):
            r = c.call([GET, 20, k, here])
            g = expect_ok(N, r, GET, 20, 4, f"GET here={here}")
            eq(g[:3], [b"h", 0, v], f"GET here={here}")
        for here in (2, 255, -1, True, False, 1.0, "1", b"\x01", [1]):
            simple(c, N, [GET, 21, k, here], BAD_REQUEST, f"GET here={here!r}")
        r = c.call([MGET, 22, [k], 1])
        eq(expect_ok(N, r, MGET, 22, 1, "MGET here=1")[0][0][:3], [OK, b"h", 0], "MGET here=1")
        for here in (2, True, "1"):
            simple(c, N, [MGET, 23, [k], here], BAD_REQUEST, f"MGET here={here!r}")
        alive(c, N, "bad here")


def b_key_errors(N):
    with N.conn() as c:
        for what, msg in [("GET without key", [GET, 30]),
                          ("GET key nil", [GET, 30, None]),
                          ("GET empty key", [GET, 30, b""]),
                          ("GET empty str key", [GET, 30, ""]),
                          ("GET key an int", [GET, 30, 5]),
                          ("GET key a float", [GET, 30, 1.5]),
                          ("GET key a bool", [GET, 30, True]),
                          ("GET key an ext", [GET, 30, Ext(1, b"k")]),
                          ("GET key an array", [GET, 30, [b"k"]]),
                          ("GET key a map", [GET, 30, {b"k": 1}]),
                          ("SET without value", [SET, 30, key("x")]),
                          ("SET value nil", [SET, 30, key("x"), None]),
                          ("SET value an int", [SET, 30, key("x"), 5]),
                          ("SET empty key", [SET, 30, b"", b"v"]),
                          ("SET ttl_ms float", [SET, 30, key("x"), b"v", 1.0]),
                          ("SET ttl_ms text", [SET, 30, key("x"), b"v", "5"]),
                          ("SET deadline_ms -1", [SET, 30, key("x"), b"v", 0, 0, 0, 0, -1]),
                          ("MGET keys nil", [MGET, 30, None])]:
            simple(c, N, msg, BAD_REQUEST, what)
        check(get(c, N, key("x")) is None, "a refused SET stored")
        alive(c, N, "wrong types")


def b_unknown_ops(N):
    with N.conn() as c:
        for op in (0, 13, 14, 100, 65535, U32, u64(13)):
            opv = op if isinstance(op, int) else 13
            r = c.call([op, 77])
            expect_err(N, r, opv, 77, BAD_REQUEST, f"unknown op {opv}")
            r = c.call([op, 78, b"arg", 1, None])
            expect_err(N, r, opv, 78, BAD_REQUEST, f"unknown op {opv} with arguments")
        alive(c, N, "unknown ops")


def b_key_value_limits(N):
    with N.conn() as c:
        kmax = K + b"k" * (MAX_KEY - len(K))
        v = setk(c, N, kmax, b"v", what="SET with a 65,536-byte key")
        eq(get(c, N, kmax)[:3], (b"v", 0, v), "GET with a 65,536-byte key")
        kover = kmax + b"k"
        for what, msg in [("SET", [SET, 40, kover, b"v"]), ("GET", [GET, 40, kover]),
                          ("DEL", [DEL, 40, kover]), ("TOUCH", [TOUCH, 40, kover, 5]),
                          ("MGET", [MGET, 40, [kover]])]:
            simple(c, N, msg, TOO_LARGE, f"{what} with a 65,537-byte key")
        alive(c, N, "65,537-byte keys")
        kv = key("maxvalue")
        big = bytes(random.getrandbits(8) for _ in range(256)) * (MAX_VALUE // 256)
        v = setk(c, N, kv, big, what="SET of a 1 MiB value")
        g = get(c, N, kv)
        check(g[0] == big and g[2] == v, "GET of the 1 MiB value differs")
        eq(rcli("STRLEN", kv), str(MAX_VALUE).encode(), "Redis STRLEN of the 1 MiB value")
        setk(c, N, kv, big + b"x", status=TOO_LARGE, what="SET of 1 MiB + 1")
        eq(get(c, N, kv)[2], v, "the 1 MiB value after a refused 1 MiB + 1")
        alive(c, N, "1 MiB + 1 value")


def b_largest_set(N):
    # §8: the largest legal SET at default limits, 1,114,157 body bytes.
    with N.conn() as c:
        k = K + b"L" * (MAX_KEY - len(K))
        body = pk([SET, U64, k, b"v" * MAX_VALUE, LARGEST_TTL, U32, 2, U64])
        eq(len(body), 1_114_157, "body bytes")
        c.send_raw(frame(body))
        r = c.recv()
        # The key is not cached: the CAS (checked first) answers NOT_FOUND (§5.5).
        expect_err(N, r, SET, U64, NOT_FOUND, "the largest legal SET (CAS+XX, key not cached)")
        alive(c, N, "the largest legal SET")


def b_max_frame(N):
    # §2: 1 <= L <= max_frame. A body of exactly max_frame bytes is a frame:
    # a SET padded with one trailing element (ignored, §4).
    with N.conn() as c:
        k = key("maxframe")
        base = [SET, 50, k, b"v" * MAX_VALUE, 0, 0, 0, 0, 0]
        body = pk(base + [bin32(b"p" * (MAX_FRAME - len(pk(base + [bin32(b"")]))))])
        eq(len(body), MAX_FRAME, "padded body length")
        c.send_raw(frame(body))
        expect_ok(N, c.recv(), SET, 50, 1, "a SET in a body of exactly max_frame bytes")
    # L = max_frame + 1: decided from the prefix alone (§2), error frame
    # TOO_LARGE, then the close (§7.1).
    with N.conn() as c:
        c.send_raw(struct.pack(">I", MAX_FRAME + 1))
        expect_conn_error(c, TOO_LARGE, "L = max_frame + 1, prefix only",
                          "frame length over max-frame")
    with N.conn() as c:
        c.send_raw(struct.pack(">I", 0xFFFFFFFF))
        expect_conn_error(c, TOO_LARGE, "L = 2^32 - 1, prefix only")


MALFORMED = [
    ("L = 0", b"\x00\x00\x00\x00"),
    ("a truncated array (92 02)", frame(b"\x92\x02")),
    ("a byte after the value (92 02 01 c0)", frame(b"\x92\x02\x01\xc0")),
    ("two values (92 02 01 92 02 02)", frame(b"\x92\x02\x01\x92\x02\x02")),
    ("0xc1 inside (93 02 01 c1)", frame(b"\x93\x02\x01\xc1")),
    ("a uint, not an array", frame(b"\x02")),
    ("a map, not an array", frame(pk({2: 1}))),
    ("a str, not an array", frame(pk("ping"))),
    ("nil, not an array", frame(b"\xc0")),
    ("an empty array", frame(pk([]))),
    ("[op] without id", frame(pk([PING]))),
    ("op -1", frame(pk([-1, 1]))),
    ("op 2^32", frame(pk([2 ** 32, 1]))),
    ("op a str", frame(pk(["2", 1]))),
    ("op a float", frame(pk([2.0, 1]))),
    ("op nil", frame(pk([None, 1]))),
    ("op true", frame(pk([True, 1]))),
    ("op bin", frame(pk([b"\x02", 1]))),
    ("id -1", frame(pk([PING, -1]))),
    ("id a str", frame(pk([PING, "1"]))),
    ("id nil", frame(pk([PING, None]))),
    ("id a float", frame(pk([PING, 1.0]))),
    ("id an array", frame(pk([PING, [1]]))),
    ("depth 5 in a trailing element", frame(pk([PING, 1, [[[[]]]]]))),
    ("depth 5 through a map", frame(pk([PING, 1, {1: [[[]]]}]))),
    ("array 32 claiming 2^32-1 elements in a 10-byte body",
     frame(b"\xdd\xff\xff\xff\xff\x02\x01\xc0\xc0\xc0")),
    ("bin 8 claiming 255 bytes, 2 left", frame(b"\x93\x03\x01\xc4\xff\x61\x62")),
    ("bin 32 claiming 2^32-1 bytes", frame(b"\x93\x02\x01\xc6\xff\xff\xff\xff")),
    ("str 16 claiming more than is left", frame(b"\x93\x02\x01\xda\x00\x10abc")),
    ("map 16 claiming 1000 pairs", frame(b"\x93\x02\x01\xde\x03\xe8\x01\x01")),
    ("ext 8 claiming more than is left", frame(b"\x93\x02\x01\xc7\x20\x01ab")),
]


def b_malformed(N):
    """§7.1: one connection-level error frame, BAD_REQUEST, then the close."""
    bad = []
    for what, data in MALFORMED:
        try:
            with N.conn() as c:
                c.send_raw(data)
                expect_conn_error(c, BAD_REQUEST, what)
        except Failure as e:
            bad.append(str(e))
    check(not bad, f"{len(bad)} of {len(MALFORMED)} malformed streams: " + "; ".join(bad))


def b_malformed_after_good(N):
    # Requests before a malformed frame may or may not be answered (§7.1);
    # every one that is must be answered in order before the error frame.
    with N.conn() as c:
        c.send_raw(fr([PING, 1]) + fr([PING, 2]) + frame(b"\x92\x02"))
        got = []
        while True:
            r = c.recv()
            if r[:2] == [0, 0]:
                eq(r[2], BAD_REQUEST, "the error frame's status")
                break
            got.append(r[1])
        check(got in ([], [1], [1, 2]), f"answers before the error frame: ids {got}")
        c.expect_eof()


def b_depth4_ok(N):
    with N.conn() as c:
        for what, msg in [("depth 4 in a trailing element", [PING, 1, [[[]]]]),
                          ("depth 4 through a map", [PING, 1, {1: [[]]}]),
                          ("a trailing ext", [PING, 1, Ext(5, b"x")]),
                          ("a trailing float", [PING, 1, 2.5]),
                          ("a trailing bool", [PING, 1, False]),
                          ("a trailing str 32", [PING, 1, Raw(b"\xdb\x00\x00\x00\x02ab")])]:
            expect_ok(N, c.call(msg), PING, 1, 0, what)


def b_sealed_on_insecure(N):
    # §2.1: a node without a key answers a sealed body with the malformed-stream
    # error (BAD_REQUEST "sealed frame, but this node runs without a cluster key").
    with N.conn() as c:
        c.send_raw(frame(b"\xc1" + os.urandom(100)))
        expect_conn_error(c, BAD_REQUEST, "a sealed body",
                          "sealed frame, but this node runs without a cluster key")


def b_budget(N):
    """§3 'Budget', §4, §8: an op's own elements + 8, its own values + 16."""
    with N.conn() as c:
        k = key("budget")
        setk(c, N, k, b"b")
        # PING: 2 elements + 8, 3 values + 16.
        expect_ok(N, c.call([PING, 1] + [None] * 8), PING, 1, 0, "PING + 8 trailing nils")
        expect_err(N, c.call([PING, 1] + [None] * 9), PING, 1, BAD_REQUEST, "PING + 9 trailing nils")
        expect_ok(N, c.call([PING, 2, [None] * 15]), PING, 2, 0, "PING + [15 nils] (19 values)")
        expect_err(N, c.call([PING, 2, [None] * 16]), PING, 2, BAD_REQUEST, "PING + [16 nils]")
        # GET (§8's example): [3, id, key, here] + 8 nils is decoded, a ninth is not.
        g = expect_ok(N, c.call([GET, 3, k, 0] + [None] * 8), GET, 3, 4, "GET + 8 trailing nils")
        eq(g[0], b"b", "GET + 8 trailing nils: value")
        expect_err(N, c.call([GET, 3, k, 0] + [None] * 9), GET, 3, BAD_REQUEST,
                   "GET + 9 trailing nils")
        expect_ok(N, c.call([GET, 4, k, 0, [None] * 15]), GET, 4, 4, "GET + [15 nils]")
        expect_err(N, c.call([GET, 4, k, 0, [None] * 16]), GET, 4, BAD_REQUEST, "GET + [16 nils]")
        # Over budget stops the walk: what follows may break §3's rules and the
        # answer is still BAD_REQUEST, connection kept.
        body = b"\x95" + pk(GET) + pk(5) + pk(k) + pk(0) + b"\xdc\x00\x11" + b"\xc0" * 16 + b"\xc1"
        c.send_raw(frame(body))
        expect_err(N, c.recv(), GET, 5, BAD_REQUEST, "GET + [16 nils, then 0xc1]")
        body = (b"\x95" + pk(GET) + pk(6) + pk(k) + pk(0) + b"\xdc\x00\x15" + b"\xc0" * 20
                + pk([[[[]]]]))
        c.send_raw(frame(body))
        expect_err(N, c.recv(), GET, 6, BAD_REQUEST, "GET + [20 nils, then depth 6]")
        # "a key that is an array of a million nils, refused before any field is read"
        body = b"\x93" + pk(GET) + pk(7) + b"\xdd" + struct.pack(">I", 1_000_000) + b"\xc0" * 1_000_000
        c.send_raw(frame(body))
        expect_err(N, c.recv(), GET, 7, BAD_REQUEST, "GET whose key is an array of 1,000,000 nils")
        alive(c, N, "over-budget GETs")
        # SET: 9 elements + 8 = 17 decoded; values 10 + 16 = 26.
        setk(c, N, k, b"s", 0, 0, 0, 0, 0, *([None] * 8), what="SET + 8 trailing nils (17 elements)")
        setk(c, N, k, b"s", 0, 0, 0, 0, 0, *([None] * 9), status=BAD_REQUEST,
             what="SET + 9 trailing nils")
        setk(c, N, k, b"s", 0, 0, 0, 0, 0, [None] * 15,
             what="budget: SET with 26 values ([15 nils] after its 9 elements)")
        setk(c, N, k, b"s", 0, 0, 0, 0, 0, [None] * 16, status=BAD_REQUEST,
             what="SET with 27 values")
        # MGET: 5 + n values + 16, n the keys it holds (§8).
        r = c.call([MGET, 8, [k], 0, [None] * 15])
        check(r[2] == OK, f"MGET of 1 key + [15 nils] (22 values): {r!r}")
        expect_err(N, c.call([MGET, 8, [k], 0, [None] * 16]), MGET, 8, BAD_REQUEST,
                   "MGET of 1 key + [16 nils] (23 values)")
        r = c.call([MGET, 9, [k] * MAX_MGET_KEYS, 0, [None] * 15])
        check(r[2] == OK, f"MGET of 1,024 keys + [15 nils] (1,045 values): {r[:3]!r}")
        expect_err(N, c.call([MGET, 9, [k] * MAX_MGET_KEYS, 0, [None] * 16]), MGET, 9, BAD_REQUEST,
                   "MGET of 1,024 keys + [16 nils]")
        # HELLO: 5 values + 16.
        r = c.call([HELLO, 10, 1, b"t", [None] * 15])
        check(r[:3] == [HELLO, 10, OK], f"HELLO + [15 nils] (21 values): {r!r}")
        expect_err(N, c.call([HELLO, 10, 1, b"t", [None] * 16]), HELLO, 10, BAD_REQUEST,
                   "HELLO + [16 nils]")
        # MGET whose array header claims 2^32-1 keys in a short body: §3, "a
        # header claiming 2^32 - 1 elements ... in a 10-byte body is
        # malformed" -- checked before any field, so before the list limit.
        with N.conn() as c2:
            c2.send_raw(frame(b"\x93\x04\x01\xdd\xff\xff\xff\xff\xc4\x01k"))
            expect_conn_error(c2, BAD_REQUEST, "MGET claiming 2^32-1 keys in an 11-byte body")
        alive(c, N, "budget")


def mget_entries(N, r, id_, what):
    e = expect_ok(N, r, MGET, id_, 1, what)[0]
    check(isinstance(e, list), f"{what}: entries {e!r} not an array")
    for x in e:
        check(isinstance(x, list) and x and is_uint(x[0]), f"{what}: entry {x!r}")
        if x[0] == OK:
            check(len(x) == 5 and isinstance(x[1], bytes) and is_uint(x[2]) and is_uint(x[3])
                  and x[3] > 0 and is_int(x[4]) and x[4] >= -1,
                  f"{what}: a hit entry {x!r} is not [0, value, flags, version, ttl_ms]")
        else:
            eq(len(x), 1, f"{what}: a non-hit entry {x!r} is [status]")
    return e


def b_mget(N):
    with N.conn() as c:
        a, b_, m = key("mg-a"), key("mg-b"), key("mg-missing")
        va = setk(c, N, a, b"A", 0, 3)
        vb = setk(c, N, b_, b"B", 60000)
        e = mget_entries(N, c.call([MGET, 60, [a, m, b_, a, "mg-str-" + K.decode()]]), 60,
                         "MGET")
        eq(len(e), 5, "MGET entries")
        eq(e[0], [OK, b"A", 3, va, -1], "MGET entry 1")
        eq(e[1], [NOT_FOUND], "MGET entry 2 (missing)")
        eq(e[2][:4], [OK, b"B", 0, vb], "MGET entry 3")
        check(50000 < e[2][4] <= 60000, f"MGET entry 3 ttl_ms {e[2][4]}")
        eq(e[3], [OK, b"A", 3, va, -1], "MGET entry 4 (a duplicate)")
        eq(e[4], [NOT_FOUND], "MGET entry 5")
        # 1,024 keys: one entry each, in order.
        keys = [a if i % 2 == 0 else m for i in range(MAX_MGET_KEYS)]
        e = mget_entries(N, c.call([MGET, 61, keys]), 61, "MGET of 1,024 keys")
        eq(len(e), MAX_MGET_KEYS, "MGET of 1,024 keys: entries")
        check(all(x[0] == (OK if i % 2 == 0 else NOT_FOUND) for i, x in enumerate(e)),
              "MGET of 1,024 keys: entries out of order")
        # Whole-request failures (§5.4): one error response, no entries.
        kover = b"k" * (MAX_KEY + 1)
        for what, msg, st in [
                ("MGET of 1,025 keys", [MGET, 62, [a] * (MAX_MGET_KEYS + 1)], TOO_LARGE),
                ("MGET without keys", [MGET, 62], BAD_REQUEST),
                ("MGET keys not an array (bin)", [MGET, 62, a], BAD_REQUEST),
                ("MGET keys a map", [MGET, 62, {a: 1}], BAD_REQUEST),
                ("MGET of no keys", [MGET, 62, []], BAD_REQUEST),
                ("MGET with an empty key", [MGET, 62, [a, b""]], BAD_REQUEST),
                ("MGET with a nil key", [MGET, 62, [a, None]], BAD_REQUEST),
                ("MGET with an int key", [MGET, 62, [a, 7]], BAD_REQUEST),
                ("MGET with a 65,537-byte key", [MGET, 62, [a, kover]], TOO_LARGE),
                ("MGET: an empty key, then a too long one", [MGET, 62, [b"", kover]], BAD_REQUEST),
                ("MGET: a too long key, then an empty one", [MGET, 62, [kover, b""]], TOO_LARGE),
                ("MGET: 1,025 keys, the first empty", [MGET, 62, [b""] * (MAX_MGET_KEYS + 1)],
                 TOO_LARGE)]:
            expect_err(N, c.call(msg), MGET, 62, st, what)
        # §3: a list whose header claims more items than its limit is
        # TOO_LARGE, connection kept, even if the body would break a rule further on.
        body = b"\x93" + pk(MGET) + pk(63) + b"\xdc" + struct.pack(">H", MAX_MGET_KEYS + 1) \
            + pk(a) * (MAX_MGET_KEYS + 1) + b""
        c.send_raw(frame(body))
        expect_err(N, c.recv(), MGET, 63, TOO_LARGE, "MGET array 16 of 1,025 keys")
        body = b"\x93" + pk(MGET) + pk(64) + b"\xdc" + struct.pack(">H", MAX_MGET_KEYS + 1) \
            + pk(a) * MAX_MGET_KEYS + b"\xc1"
        c.send_raw(frame(body))
        expect_err(N, c.recv(), MGET, 64, TOO_LARGE,
                   "MGET array 16 of 1,025 items, the last one 0xc1 (the walk stops first)")
        alive(c, N, "bad MGETs")


def b_mget_budget(N):
    # §8: an entry whose value would push the response past max_frame comes
    # back as [5] on its own; the others are answered normally.
    with N.conn() as c:
        k1, k2, k3 = key("mgb1"), key("mgb2"), key("mgb3")
        v1 = bytes([1]) * MAX_VALUE
        v2 = bytes([2]) * MAX_VALUE
        setk(c, N, k1, v1)
        setk(c, N, k2, v2)
        setk(c, N, k3, b"small")
        e = mget_entries(N, c.call([MGET, 70, [k1, k2, k3]]), 70, "MGET of 1 MiB, 1 MiB, small")
        check(len(c.last_raw) - 4 <= MAX_FRAME, f"MGET response of {len(c.last_raw) - 4} bytes")
        eq([x[0] for x in e], [OK, TOO_LARGE, OK], "MGET entries' statuses")
        eq(e[1], [TOO_LARGE], "the entry that does not fit")
        check(e[0][1] == v1 and e[2][1] == b"small", "the other entries' values")
        g = get(c, N, k2)
        check(g is not None and g[0] == v2, "GET of the key whose MGET entry was [5]")


def b_over_max_value_in_redis(N):
    # §5.3: a value over max_value in Redis is TOO_LARGE ("too large: over a
    # size limit"), each time; in an MGET its entry is [5].
    k = key("huge")
    rcli("-x", "SET", k, input=b"h" * (MAX_VALUE + 1))
    eq(rcli("STRLEN", k), str(MAX_VALUE + 1).encode(), "Redis STRLEN of the value")
    with N.conn() as c:
        for i in range(2):
            r = c.call([GET, 80 + i, k])
            expect_err(N, r, GET, 80 + i, TOO_LARGE, f"GET #{i + 1} of a 1 MiB + 1 value in Redis",
                       "too large: over a size limit")
        e = mget_entries(N, c.call([MGET, 82, [k, key("huge-none")]]), 82, "MGET of it")
        eq(e, [[TOO_LARGE], [NOT_FOUND]], "MGET entries")
        # Far over max_frame too.
        k2 = key("huger")
        rcli("-x", "SET", k2, input=b"H" * (MAX_FRAME + 10))
        expect_err(N, c.call([GET, 83, k2]), GET, 83, TOO_LARGE, "GET of a value over max_frame",
                   "too large: over a size limit")
        alive(c, N, "values over max_value in Redis")


def b_get_overhead(N):
    # §8: a GET response is at most the value + 49 bytes; exactly that with
    # every field at its widest (value of 65,536+ bytes, flags and version,
    # ttl_ms and fingerprint over 32 bits, id over 32 bits).
    with N.conn() as c:
        for vlen in (70_000, MAX_VALUE):
            k = key(f"ovh{vlen}")
            ver = setk(c, N, k, b"o" * vlen, LARGEST_TTL, U32)
            r = c.call([GET, U64, k])
            g = expect_ok(N, r, GET, U64, 4, "GET of the widest answer")
            body = len(c.last_raw) - 4
            check(body <= vlen + 49, f"a GET answer of {body} bytes for a value of {vlen} "
                  f"(§8: at most value + 49)")
            widest = ver > U32 and g[3] > U32 and N.fp > U32
            if widest:
                eq(body - vlen, 49, "GET answer overhead with every field at its widest")
            else:
                note(f"GET overhead {body - vlen} (not every field was wide: version {ver}, "
                     f"fp {N.fp})")


def b_stats(N):
    with N.conn() as c:
        r = c.call([STATS, 90])
        m = expect_ok(N, r, STATS, 90, 1, "STATS")[0]
        check(isinstance(m, dict), f"STATS: {m!r} is not a map")
        check(len(m) <= 4096, f"STATS: {len(m)} pairs (§8: at most 4,096)")
        for name, v in m.items():
            check(isinstance(name, str), f"STATS name {name!r} is not text")
            check(is_int(v) and -2 ** 63 <= v < 2 ** 63, f"STATS {name} = {v!r} is not an int64")
        for name in ("hits", "misses", "items", "here_reads", "not_owner_reads", "writes_late",
                     "auth_failures"):
            check(name in m, f"STATS has no {name!r} (named by PROTOCOL.md)")
        # A request with trailing elements is still STATS (§4).
        expect_ok(N, c.call([STATS, 91, None, 1]), STATS, 91, 1, "STATS + trailing")
        r = c.call([CLUSTER, 92, b"x"])
        check(r[:3] == [CLUSTER, 92, OK] and len(r) == 6, f"CLUSTER + trailing: {r!r}")


def b_pipeline(N):
    """§9: many requests in one write; every one answered exactly once, in
    order, whatever completes first (Redis reads, BAD_REQUESTs, hits). 3,000
    of them: more than --max-inflight (1,024), which §8 says makes the node
    stop reading for a while, never drop a request."""
    rkeys = [key(f"pl-redis-{i}") for i in range(20)]
    for i, k in enumerate(rkeys):
        rcli("SET", k, f"r{i}")
    reqs, want = [], []
    for i in range(3000):
        kind = i % 6
        k = key(f"pl-{i // 6}")
        id_ = 10_000 + i
        if kind == 0:
            reqs.append([SET, id_, k, f"v{i}".encode()])
            want.append((SET, id_, OK, None))
        elif kind == 1:
            reqs.append([GET, id_, k])
            want.append((GET, id_, OK, f"v{i - 1}".encode()))
        elif kind == 2:
            rk = rkeys[(i // 6) % len(rkeys)]
            reqs.append([GET, id_, rk])
            want.append((GET, id_, OK, f"r{(i // 6) % len(rkeys)}".encode()))
        elif kind == 3:
            reqs.append([GET, id_, b""])
            want.append((GET, id_, BAD_REQUEST, None))
        elif kind == 4:
            reqs.append([MGET, id_, [k, key("pl-none")]])
            want.append((MGET, id_, OK, None))
        else:
            reqs.append([DEL, id_, k] if i % 12 == 5 else [PING, id_])
            want.append((reqs[-1][0], id_, OK, None))
    with N.conn() as c:
        c.send_raw(b"".join(fr(m) for m in reqs))
        for (op, id_, st, val), m in zip(want, reqs):
            r = c.recv()
            check(r[0] == op and r[1] == id_, f"pipelined answer {r[:3]} where [{op}, {id_}] was due")
            check(r[2] == st, f"pipelined {m[:3]!r}: {r!r}, want {sname(st)}")
            if val is not None:
                eq(r[3], val, f"pipelined GET {id_}")
        # Exactly once: nothing more comes.
        c.s.settimeout(0.3)
        try:
            extra = c.s.recv(100)
        except socket.timeout:
            extra = b""
        eq(extra, b"", "bytes after the 3,000 answers")


def b_peer_ops_insecure(N):
    # §1: only with a cluster key are peer ops limited to sealed connections.
    with N.conn() as c:
        k = key("fwd")
        v = setk(c, N, k, b"f")
        # The answer is the relayed request's own response (its op and id).
        r = c.call([FORWARD, 1, 1, pk([GET, 99, k])])
        eq(expect_ok(N, r, GET, 99, 4, "FORWARD of a GET")[:3], [b"f", 0, v], "FORWARD of a GET")
        # A FORWARD whose body is not a key request, or a FORWARD in a FORWARD:
        # BAD_REQUEST with op 10.
        expect_err(N, c.call([FORWARD, 2, 1, pk([PING, 98])]), FORWARD, 2, BAD_REQUEST,
                   "FORWARD of a PING")
        expect_err(N, c.call([FORWARD, 3, 1, pk([FORWARD, 97, 1, pk([GET, 96, k])])]), FORWARD, 3,
                   BAD_REQUEST, "FORWARD in a FORWARD")
        # §5.10: "hops (>= 1) ... (0 or missing: BAD_REQUEST)"
        expect_err(N, c.call([FORWARD, 4, 0, pk([GET, 95, k])]), FORWARD, 4, BAD_REQUEST,
                   "FORWARD with hops 0")
        # §5.12: at most max_mget_keys entries, else TOO_LARGE.
        entry = [k, b"x", 0, 1, -1]
        expect_err(N, c.call([REPLICATE, 5, 0, "someone", [entry] * (MAX_MGET_KEYS + 1)]),
                   REPLICATE, 5, TOO_LARGE, "REPLICATE of 1,025 entries")
        alive(c, N, "peer ops")


def b_here_stats(N):
    with N.conn() as c:
        k = key("here-stats")
        setk(c, N, k, b"h")
        s0 = stats(N)
        for _ in range(3):
            c.call([GET, 1, k, 1])
        c.call([MGET, 2, [k, k], 1])
        s1 = stats(N)
        d = {n: s1[n] - s0[n] for n in ("here_reads", "not_owner_reads")}
        # §5.3, §5.4: a non-owner counts here = 1 reads in here_reads and
        # not_owner_reads; "the owner counts them as any other read".
        eq(d, {"here_reads": 0, "not_owner_reads": 0},
           "STATS after 3 GETs and an MGET of 2 keys with here = 1 on the key's owner")


def b_redis_stalled(N, redis_proc):
    """§7 BACKEND_UNAVAILABLE: a write that was sent and timed out ("the
    write may not have been applied") "may have been applied before the node
    answered, but not after (each write carries a deadline that Redis
    checks) ..., and the node drops its cached copy of the key, so the next
    read returns whatever Redis holds". Redis is stopped (SIGSTOP) under a
    SET, past --redis-timeout (1 s), then resumed."""
    with N.conn() as c:
        k = key("stall")
        setk(c, N, k, b"old")
        eq(get(c, N, k)[0], b"old", "GET before the stall")
        os.kill(redis_proc.p.pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            setk(c, N, k, b"new", status=BACKEND_UNAVAILABLE, what="SET while Redis is stopped")
            dt = time.monotonic() - t
        finally:
            os.kill(redis_proc.p.pid, signal.SIGCONT)
        print(f"      SET answered BACKEND_UNAVAILABLE after {dt:.2f} s")
        poll(lambda: subprocess.run(["redis-cli", "-h", HOST, "-p", str(CTX.redis_port), "PING"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    timeout=5).stdout == b"PONG\n", 10, "Redis answering again")
        eq(rcli("GET", k), b"old", "Redis after the timed-out SET (not applied after the answer)")
        g = poll(lambda: (lambda r: r if r[2] != BACKEND_UNAVAILABLE else None)(c.call([GET, 2, k])),
                 10, "GET not BACKEND_UNAVAILABLE once Redis is back")
        eq(expect_ok(N, g, GET, 2, 4, "GET after the timed-out SET")[0], b"old",
           "GET after the timed-out SET (the cached copy dropped, Redis' value read)")


def b_redis_down(N, redis_proc):
    """Redis stopped: BACKEND_UNAVAILABLE (§7) per request and per MGET key
    (§5.4); a write the node could not send ("redis unavailable") changed
    nothing, the cached copy included (§7, status 6); README: cached keys are
    still served."""
    with N.conn() as c:
        kc, kw = key("down-cached"), key("down-written")
        vc = setk(c, N, kc, b"cached")
        setk(c, N, kw, b"old")
        loops = stats(N)["backend_connections"]
        lost0 = N.proc.output().count("connection lost")
        redis_proc.stop()

        # Every loop's Redis connection must be seen gone (one log line
        # each), not just the one that answers first: a write homed on a
        # loop that has not noticed yet would be sent, and fail otherwise.
        def down():
            return N.proc.output().count("connection lost") - lost0 >= loops
        poll(down, 10, f"the node logging 'connection lost' for its {loops} Redis connections")
        expect_err(N, c.call([GET, 2, key("down-uncached")]), GET, 2, BACKEND_UNAVAILABLE,
                   "GET of an uncached key, Redis down")
        eq(get(c, N, kc), (b"cached", 0, vc, -1), "GET of a cached key, Redis down (README)")
        e = mget_entries(N, c.call([MGET, 3, [kc, key("down-uncached")]]), 3, "MGET, Redis down")
        eq(e, [[OK, b"cached", 0, vc, -1], [BACKEND_UNAVAILABLE]], "MGET entries, Redis down")
        r = c.call([SET, 7, kw, b"new"])
        msg = expect_err(N, r, SET, 7, BACKEND_UNAVAILABLE, "SET, Redis down")
        eq(msg, "redis unavailable", "SET, Redis down: the message (§7: not sent)")
        eq(get(c, N, kw)[0], b"old",
           "GET after a SET that could not be sent (§7: nothing changed, the copy included)")
        expect_err(N, c.call([DEL, 5, kc]), DEL, 5, BACKEND_UNAVAILABLE, "DEL, Redis down")
        expect_err(N, c.call([TOUCH, 6, key("down-uncached"), 5]), TOUCH, 6, BACKEND_UNAVAILABLE,
                   "TOUCH, Redis down")
        alive(c, N, "Redis down")


def b_format_rules():
    """§3: a sender uses the smallest int form; bytes are bin, text is str."""
    check(not FORMAT_ISSUES, f"{len(FORMAT_ISSUES)} values in the node's responses not in the "
          "form §3 says a sender uses, e.g. " + "; ".join(f"{i} in {w}" for w, i in FORMAT_ISSUES[:5]))
    check(not MISMATCHES, f"my decoder and python3-msgpack disagree: {MISMATCHES[:3]}")


# ======================================================================================
# C. A node with a client token (§5.1)
# ======================================================================================

TOKEN = b"s3cret-token-" + bytes(random.choice(b"abcdefghijklmnop") for _ in range(16))


def auth_failures(A):
    with A.conn() as c:
        r = c.call([HELLO, 1, 1, TOKEN])
        check(r[2] == OK, f"HELLO with the token: {r!r}")
        s = c.call([STATS, 2])
        return s[3]["auth_failures"]


def c_before_hello(A):
    with A.conn() as c:
        expect_ok(A, c.call([PING, 1]), PING, 1, 0, "PING before HELLO")
        k = key("auth")
        for what, msg in [("GET", [GET, 2, k]), ("SET", [SET, 2, k, b"v"]),
                          ("MGET", [MGET, 2, [k]]), ("DEL", [DEL, 2, k]),
                          ("TOUCH", [TOUCH, 2, k, 5]), ("STATS", [STATS, 2]),
                          ("CLUSTER", [CLUSTER, 2]),
                          ("an unknown op", [99, 2]), ("op 0", [0, 2]),
                          ("GET without key", [GET, 2]), ("GET empty key", [GET, 2, b""]),
                          ("SET ttl over 2^62", [SET, 2, k, b"v", LARGEST_TTL + 1]),
                          ("MGET of no keys", [MGET, 2, []]),
                          ("GET + 9 trailing nils", [GET, 2, k, 0] + [None] * 9),
                          ("SYNC", [SYNC, 2, b"x"]), ("FORWARD", [FORWARD, 2, 1, pk([GET, 3, k])])]:
            r = c.call(msg)
            expect_err(A, r, msg[0], 2, AUTH_REQUIRED, f"{what} before HELLO",
                       "send HELLO with the token first")
        expect_ok(A, c.call([PING, 3]), PING, 3, 0, "PING after the refusals")
        # A malformed HELLO is still BAD_REQUEST.
        for what, msg in [("HELLO without version", [HELLO, 4]),
                          ("HELLO version text", [HELLO, 4, "1"]),
                          ("HELLO version 2^32", [HELLO, 4, 2 ** 32])]:
            expect_err(A, c.call(msg), HELLO, 4, BAD_REQUEST, what)
        # Then the right token.
        r = c.call([HELLO, 5, 1, TOKEN])
        check(r[:4] == [HELLO, 5, OK, 1] and len(r) == 8, f"HELLO with the token: {r!r}")
        setk(c, A, k, b"authed", what="SET after a good HELLO")
        eq(get(c, A, k)[0], b"authed", "GET after a good HELLO")
        expect_ok(A, c.call([STATS, 6]), STATS, 6, 1, "STATS after a good HELLO")
        # ...and unknown ops are BAD_REQUEST again.
        expect_err(A, c.call([99, 7]), 99, 7, BAD_REQUEST, "an unknown op after a good HELLO")


def c_hello_variants(A):
    with A.conn() as c:
        r = c.call([HELLO, 1, 2, TOKEN.decode()])
        check(r[:4] == [HELLO, 1, OK, 1], f"HELLO 2 with the token as str: {r!r}")
        expect_ok(A, c.call([STATS, 2]), STATS, 2, 1, "STATS after it")
        # A good HELLO holds for the life of the connection: another HELLO,
        # even a bad one, is another matter -- not tested; the connection
        # keeps serving.
        for i in range(5):
            expect_ok(A, c.call([PING, 10 + i]), PING, 10 + i, 0, "PING")
        check(get(c, A, key("auth-none")) is None, "GET later on the connection")
        # §5.1: "a later HELLO on it is answered OK whatever token it carries"
        r = c.call([HELLO, 20, 1, b"wrong"])
        check(r[:4] == [HELLO, 20, OK, 1], f"a bad HELLO after a good one: {r!r}")
        check(get(c, A, key("auth-none")) is None, "GET after it (still authenticated)")


def c_hello_v0(A):
    before = auth_failures(A)
    with A.conn() as c:
        t = time.monotonic()
        r = c.call([HELLO, 1, 0, TOKEN])
        dt = time.monotonic() - t
        expect_err(A, r, HELLO, 1, BAD_REQUEST, "HELLO 0 with the right token",
                   "unsupported protocol version")
        # Not a bad token: not counted (below), so not delayed like one --
        # the time is printed, not judged (a loaded machine answers late).
        print(f"      HELLO 0 answered after {dt * 1000:.0f} ms")
        r = c.call([GET, 2, key("x")])
        expect_err(A, r, GET, 2, AUTH_REQUIRED, "GET after HELLO 0 with the right token")
    eq(auth_failures(A) - before, 0, "auth_failures after HELLO 0 (not a bad token)")


def c_not_a_request(A):
    # §5.1: before a good HELLO, "a frame that is not a request at all (§7.1)"
    # gets "a connection-level AUTH_REQUIRED error and a close" -- §7.1's list
    # includes a length prefix of 0 or over max_frame.
    bad = []
    for what, data in [("a truncated array", frame(b"\x92\x02")),
                       ("id -1", frame(pk([PING, -1]))),
                       ("a body that is not an array", frame(pk(5))),
                       ("L = 0", b"\x00\x00\x00\x00"),
                       ("L = max_frame + 1", struct.pack(">I", MAX_FRAME + 1))]:
        try:
            with A.conn() as c:
                c.send_raw(data)
                expect_conn_error(c, AUTH_REQUIRED, f"{what} before HELLO")
        except Failure as e:
            bad.append(str(e))
    # After a good HELLO, the usual BAD_REQUEST.
    try:
        with A.conn() as c:
            expect_ok(A, c.call([PING, 1]), PING, 1, 0, "PING")
            c.call([HELLO, 2, 1, TOKEN])
            c.send_raw(frame(b"\x92\x02"))
            expect_conn_error(c, BAD_REQUEST, "a truncated array after a good HELLO")
    except Failure as e:
        bad.append(str(e))
    # §2.1: a node without a key answers a sealed body with BAD_REQUEST
    # "sealed frame, ..." and closes, "before a good HELLO on a node that
    # requires a token too".
    try:
        with A.conn() as c:
            c.send_raw(frame(b"\xc1" + os.urandom(80)))
            expect_conn_error(c, BAD_REQUEST, "a sealed body before HELLO on a keyless node",
                              "sealed frame, but this node runs without a cluster key")
    except Failure as e:
        bad.append(str(e))
    check(not bad, "; ".join(bad))


def c_bad_tokens(A):
    """Five bad HELLOs on one connection: AUTH_REQUIRED ("bad token") after
    100, 200, 400, 800, 1600 ms; after the fifth, a connection-level
    AUTH_REQUIRED error and the close. From an address of its own
    (127.0.0.21), so that no other check's failures count against it."""
    before = auth_failures(A)
    delays = []
    with A.conn(source="127.0.0.21") as c:
        tokens = [None, b"wrong", TOKEN + b"x", TOKEN[:-1], b""]
        for i, tok in enumerate(tokens):
            msg = [HELLO, 20 + i, 1] + ([] if tok is None else [tok])
            t = time.monotonic()
            c.send(msg)
            r = c.recv(timeout=5)
            delays.append(time.monotonic() - t)
            if r[:2] == [0, 0]:
                raise Failure(f"bad HELLO #{i + 1}: a connection-level frame {r!r} instead of "
                              f"an answer (delays so far {fmt_ms(delays)})")
            expect_err(A, r, HELLO, 20 + i, AUTH_REQUIRED, f"bad HELLO #{i + 1}", "bad token")
        # The connection-level error, then the close.
        expect_conn_error(c, AUTH_REQUIRED, "after the fifth bad HELLO")
    print(f"      bad-token answer delays: {fmt_ms(delays)}")
    # The doubling: each at least its delay, and on the node's 100 ms tick
    # after it (SLACK more for a loaded machine); how exact the first delay
    # is, is c_first_bad_token's.
    for i, (d, want) in enumerate(zip(delays, (0.1, 0.2, 0.4, 0.8, 1.6))):
        check(want - 0.005 <= d <= want + 0.1 + SLACK,
              f"bad HELLO #{i + 1} answered after {d * 1000:.0f} ms, want {want * 1000:.0f} ms "
              f"(all: {fmt_ms(delays)})")
    eq(auth_failures(A) - before, 5, "auth_failures after five bad HELLOs")


def c_first_bad_token(A):
    """§5.1: a bad HELLO is answered 'after a delay -- 100 ms' (the first on a
    connection), a minimum: 'the answer goes out on the node's first 100 ms
    tick after it, so the first comes 100-200 ms after the HELLO'. Three
    fresh connections, each from an address of its own, their bad HELLOs
    sent 33 ms apart: each answer at least 100 ms later, and not much more
    than 200 (SLACK above, for a loaded machine)."""
    conns = [A.conn(source=f"127.0.0.{22 + i}") for i in range(3)]
    delays = [None] * 3
    errors = []

    def one(i):
        try:
            time.sleep(0.033 * i)
            t = time.monotonic()
            conns[i].send([HELLO, 1, 1, b"wrong"])
            r = conns[i].recv(timeout=5)
            delays[i] = time.monotonic() - t
            if r[2] != AUTH_REQUIRED:
                errors.append(f"bad HELLO: {r!r}")
        except Exception as e:
            errors.append(repr(e))
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        for c in conns:
            c.close()
    check(not errors and None not in delays, f"bad HELLOs: {errors} {delays}")
    print(f"      first bad HELLO answered after: {fmt_ms(delays)}")
    check(all(0.095 <= d <= 0.2 + SLACK for d in delays),
          f"first bad HELLOs on 3 connections answered after {fmt_ms(delays)}; §5.1: "
          "'the first comes 100-200 ms after the HELLO'")


def c_bad_token_rate(A):
    """§5.1: a bad HELLO is answered after 100 ms (the first on a connection),
    "2 s while the node ... sees over 100 failures a second, and for an
    address that makes over 10 a second". Address X (127.0.0.25) sends 12 bad
    HELLOs at once, one per connection, then address Y (127.0.0.26) 3: X's
    first 10 and Y's 3 are answered after the first delay, X's 11th and 12th
    after 2 s (the node sees 15 failures, Y makes 3). The counts are per
    whole second of the node's monotonic clock (§5.1), which is this host's
    CLOCK_MONOTONIC: the burst is sent early in such a second, so that all
    of it falls in one (one that straddled two was counted 1 + 11, and only
    the 12th waited 2 s)."""
    before = auth_failures(A)
    spec = [("127.0.0.25", 12), ("127.0.0.26", 3)]
    conns = {a: [A.conn(source=a) for _ in range(n)] for a, n in spec}
    delays = {a: [None] * n for a, n in spec}
    answers = {a: [None] * n for a, n in spec}
    errors = []

    # Each answer is waited for on its own thread: which two of X's
    # connections the node counts 11th and 12th is up to the node, so
    # reading them in turn would charge a later one the wait of an earlier.
    def one(a, i, t):
        try:
            answers[a][i] = conns[a][i].recv(timeout=5)
            delays[a][i] = time.monotonic() - t
        except Exception as e:
            errors.append(f"{a} #{i + 1}: {e!r}")
    try:
        while not 0.05 <= time.clock_gettime(time.CLOCK_MONOTONIC) % 1 < 0.5:
            time.sleep(0.01)  # pacing ourselves to the clock, not waiting on the node
        t = time.monotonic()
        for a, _ in spec:
            for i, c in enumerate(conns[a]):
                c.send([HELLO, 100 + i, 1, b"wrong"])
        threads = [threading.Thread(target=one, args=(a, i, t))
                   for a, n in spec for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        check(not errors, f"bad HELLOs: {errors}")
        for a, n in spec:
            for i in range(n):
                expect_err(A, answers[a][i], HELLO, 100 + i, AUTH_REQUIRED,
                           f"bad HELLO {i + 1} from {a}", "bad token")
    finally:
        for cs in conns.values():
            for c in cs:
                c.close()
    bad = []
    for (a, n), want_fast in zip(spec, (10, 3)):
        ds = sorted(delays[a])
        print(f"      {n} bad HELLOs at once from {a}, answered after: {fmt_ms(ds)}")
        fast = [d for d in ds if d < 1.5]
        slow = [d for d in ds if d >= 1.5]
        if len(fast) != want_fast or not all(1.95 <= d <= 2.1 + SLACK for d in slow):
            bad.append(f"{a} ({n} failures): {len(fast)} answered within 1.5 s, {len(slow)} after "
                       f"2 s, want {want_fast} and {n - want_fast}")
    check(not bad, "; ".join(bad))
    eq(auth_failures(A) - before, 15, "auth_failures after 15 bad HELLOs")


def fmt_ms(ds):
    return ", ".join(f"{d * 1000:.0f} ms" for d in ds)


def c_token_too_long(A):
    with A.conn() as c:
        r = c.call([HELLO, 1, 1, b"t" * (MAX_KEY + 1)], timeout=5)
        expect_err(A, r, HELLO, 1, TOO_LARGE, "HELLO with a 65,537-byte token (§7: TOO_LARGE "
                   "for a token over a limit)")
        r = c.call([HELLO, 2, 1, TOKEN], timeout=5)
        check(r[2] == OK, f"HELLO with the token after it: {r!r}")


def c_hello_timeout(A, hello_timeout):
    exact = "no HELLO with the token within the hello timeout"
    with A.conn() as c:
        t = time.monotonic()
        expect_ok(A, c.call([PING, 1]), PING, 1, 0, "PING")   # PING does not authenticate
        expect_conn_error(c, AUTH_REQUIRED, "no HELLO", exact, timeout=hello_timeout + 3)
        dt = time.monotonic() - t
    check(hello_timeout - 0.05 <= dt <= hello_timeout + 0.1 + SLACK,
          f"closed {dt:.2f} s after opening, --hello-timeout is {hello_timeout} s "
          "(§7.3: checked every 100 ms)")
    # The clock restarts at the answer to a bad HELLO.
    with A.conn() as c:
        c.send([HELLO, 2, 1, b"bad"])
        r = c.recv()
        t = time.monotonic()
        expect_err(A, r, HELLO, 2, AUTH_REQUIRED, "a bad HELLO")
        expect_conn_error(c, AUTH_REQUIRED, "no good HELLO after a bad one", exact,
                          timeout=hello_timeout + 3)
        dt = time.monotonic() - t
    check(hello_timeout - 0.05 <= dt <= hello_timeout + 0.1 + SLACK,
          f"closed {dt:.2f} s after the bad HELLO's answer, --hello-timeout is {hello_timeout} s")


# ======================================================================================
# D. A node with small limits and short timeouts (--redis none)
# ======================================================================================

S_KEY, S_VALUE = 1024, 4096
S_FRAME = S_KEY + S_VALUE + 512     # §8: the least max_frame a node starts with


def d_limits(S):
    with S.conn() as c:
        c.call([HELLO, 1, 1])
        k = b"k" * S_KEY
        v = setk(c, S, k, b"v" * S_VALUE, LARGEST_TTL, U32, what="SET at max_key and max_value")
        setk(c, S, k + b"k", b"v", status=TOO_LARGE, what="SET with a key over max_key")
        setk(c, S, b"k2", b"v" * (S_VALUE + 1), status=TOO_LARGE,
             what="SET with a value over max_value")
        r = c.call([GET, U64, k])
        g = expect_ok(S, r, GET, U64, 4, "GET at max_value")
        eq((g[0], g[2]), (b"v" * S_VALUE, v), "GET at max_value: value, version")
        body = len(c.last_raw) - 4
        check(body <= S_VALUE + 49 and body <= S_FRAME,
              f"a GET answer of {body} bytes (value {S_VALUE}, max_frame {S_FRAME})")
        # MGET budgets its response: the second max_value entry would not fit.
        setk(c, S, b"k3", b"w" * S_VALUE)
        e = mget_entries(S, c.call([MGET, 2, [k, b"k3", b"k4"]]), 2, "MGET of two max_value values")
        check(len(c.last_raw) - 4 <= S_FRAME, f"MGET answer of {len(c.last_raw) - 4} bytes "
              f"over max_frame {S_FRAME}")
        eq([x[0] for x in e], [OK, TOO_LARGE, NOT_FOUND], "MGET entries' statuses")
        eq(e[1], [TOO_LARGE], "the entry that does not fit")
        eq(get(c, S, b"k3")[0], b"w" * S_VALUE, "GET of that key")
        # A body of exactly max_frame is a frame; one byte more is not.
        base = [PING, 3]
        body = pk(base + [bin32(b"p" * (S_FRAME - len(pk(base + [bin32(b"")]))))])
        eq(len(body), S_FRAME, "padded PING")
        c.send_raw(frame(body))
        expect_ok(S, c.recv(), PING, 3, 0, f"a PING of exactly max_frame ({S_FRAME}) bytes")
    with S.conn() as c:
        c.send_raw(struct.pack(">I", S_FRAME + 1))
        expect_conn_error(c, TOO_LARGE, f"L = {S_FRAME + 1} (max_frame + 1)",
                          "frame length over max-frame")


def d_max_frame_at_start(peercached, workdir):
    # §8: a node refuses to start unless max_frame holds max_key + max_value + 512.
    port, = free_ports(1, udp_too=True)
    p = Proc("refused", [peercached, "--insecure", "--redis", "none", "--listen", f"{HOST}:{port}",
                         "--max-key", "1kb", "--max-value", "4kb", "--max-frame",
                         str(S_FRAME - 1)], workdir)
    try:
        poll(lambda: not p.alive(), 10, "peercached with max_frame = max_key + max_value + 511 exiting")
        check(p.p.returncode != 0, f"it exited with status 0:\n{p.tail()}")
        print(f"      refused with exit {p.p.returncode}: {p.output().strip().splitlines()[-1:]}")
    finally:
        p.stop()


def d_frame_timeout(S, frame_timeout):
    with S.conn() as c:
        expect_ok(S, c.call([PING, 1]), PING, 1, 0, "PING")
        t = time.monotonic()
        c.send_raw(fr([PING, 2])[:3])     # a frame begun, never finished
        expect_conn_error(c, BAD_REQUEST, "a frame not complete",
                          "frame not complete within the frame timeout", timeout=frame_timeout + 3)
        dt = time.monotonic() - t
    check(frame_timeout - 0.05 <= dt <= frame_timeout + 0.1 + SLACK,
          f"closed {dt:.2f} s after the frame began (--frame-timeout {frame_timeout} s)")


def d_idle_timeout(S, idle_timeout):
    with S.conn() as c:
        expect_ok(S, c.call([PING, 1]), PING, 1, 0, "PING")
        t = time.monotonic()
        try:
            c.expect_eof(timeout=idle_timeout + 3)
        except Failure as e:
            raise Failure(f"idle connection: {e} (§7.3: the close alone, no frame)")
        dt = time.monotonic() - t
    check(idle_timeout - 0.05 <= dt <= idle_timeout + 0.1 + SLACK,
          f"closed {dt:.2f} s after the last reply (--idle-timeout {idle_timeout} s)")


def d_per_source(S, limit):
    # §7.1: a connection refused at accept time gets [0, 0, 7, "too many
    # connections from this address"] and the close.
    def conns_now():
        with S.conn() as c:
            return c.call([STATS, 1])[3]["connections"] == 1
    poll(conns_now, 10, "STATS connections down to the one asking")
    held = []
    try:
        for i in range(limit):
            c = S.conn()
            held.append(c)
            expect_ok(S, c.call([PING, i]), PING, i, 0, f"connection {i + 1} of {limit}")
        with S.conn() as c:
            expect_conn_error(c, BUSY, f"connection {limit + 1}",
                              "too many connections from this address")
    finally:
        for c in held:
            c.close()


def d_no_redis_conditions(S):
    # §5.5 without Redis: the store decides; CAS+XX of an absent key is
    # NOT_STORED (not NOT_FOUND, which a CAS without XX answers).
    with S.conn() as c:
        k, a = b"cond", b"cond-absent"
        v = setk(c, S, k, b"1")
        setk(c, S, k, b"2", 0, 0, 1, status=EXISTS, what="NX of a present key")
        setk(c, S, a, b"2", 0, 0, 2, status=NOT_STORED, what="XX of an absent key")
        v2 = setk(c, S, k, b"3", 0, 0, 2, v, what="CAS+XX with the current version")
        setk(c, S, k, b"4", 0, 0, 2, v, status=EXISTS, what="CAS+XX with an old version")
        setk(c, S, a, b"4", 0, 0, 2, 777, status=NOT_STORED, what="CAS+XX of an absent key")
        setk(c, S, a, b"4", 0, 0, 0, 777, status=NOT_FOUND, what="CAS of an absent key")
        setk(c, S, a, b"4", 0, 0, 1, 777, status=BAD_REQUEST, what="CAS+NX of an absent key")
        setk(c, S, k, b"4", 0, 0, 1, v2, status=BAD_REQUEST, what="CAS+NX of a present key")
        eq(get(c, S, k)[:3], (b"3", 0, v2), "value after all that")
        check(get(c, S, a) is None, "the absent key was stored")


# ======================================================================================
# E. A node with a cluster key (§2.1)
# ======================================================================================


def e_keyed(E):
    with E.conn() as c:
        # Client traffic is never sealed, and needs no token here.
        expect_ok(E, c.call([PING, 1]), PING, 1, 0, "PING")
        v = setk(c, E, b"sealed-node-key", b"v")
        eq(get(c, E, b"sealed-node-key")[:3], (b"v", 0, v), "GET")
        # Peer ops in plain frames: AUTH_REQUIRED, connection kept (§2.1, §7).
        for what, msg in [("FORWARD", [FORWARD, 2, 1, pk([GET, 3, b"sealed-node-key"])]),
                          ("SYNC", [SYNC, 2, b"state"]),
                          ("REPLICATE", [REPLICATE, 2, 0, "x", [[b"k", b"v", 0, 1, -1]]])]:
            expect_err(E, c.call(msg), msg[0], 2, AUTH_REQUIRED, f"{what} in a plain frame")
        alive(c, E, "plain peer ops")
    # A sealed body that does not open: the close, without an answer; STATS
    # counts why.
    before = {k: v for k, v in stats(E).items() if k.startswith("seal_")}
    for what, body in [
            ("unknown key id", b"\xc1\x01\x02" + b"\xde\xad\xbe\xef" + os.urandom(24 + 24 + 40 + 16)),
            ("our key id, a bad tag", b"\xc1\x01\x02" + key_id(E.key_hex)
             + os.urandom(24 + 24 + 40 + 16))]:
        with E.conn() as c:
            c.send_raw(frame(body))
            try:
                c.expect_eof(timeout=5)
            except Failure as e:
                raise Failure(f"a sealed body with {what}: {e} (§2.1: close without an answer)")
    after = {k: v for k, v in stats(E).items() if k.startswith("seal_")}
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    print(f"      seal_* counters that moved: {grew}")
    # docs/SECURITY.md names the counters: seal_unknown_key, seal_bad.
    eq((grew.get("seal_unknown_key", 0), grew.get("seal_bad", 0)), (1, 1),
       f"STATS (seal_unknown_key, seal_bad) after an unknown key id and a bad tag ({grew})")


def key_id(key_hex):
    """docs/SECURITY.md: the first 4 bytes of BLAKE2b-256 over 'peercache key
    id' and the 32 key bytes."""
    import hashlib
    return hashlib.blake2b(b"peercache key id" + bytes.fromhex(key_hex), digest_size=32).digest()[:4]


# ======================================================================================
# F. §11.4's fingerprint: "a node alone on 127.0.0.1:39695"
# ======================================================================================


def f_doc_fingerprint(peercached, workdir):
    # §11.4: "a node alone whose name is 127.0.0.1:39695" -- the name, not
    # the port it listens on (a free one here: 39695 may be taken).
    addr = "127.0.0.1:39695"
    n = start_node(addr, peercached, workdir, ["--redis", "none"])
    try:
        learn(n)
        eq(hex(n.fp), hex(DOC_FP), "the ring fingerprint of a node alone named 127.0.0.1:39695")
        with n.conn() as c:
            c.send_raw(hx(DOC_PING_REQ))
            c.recv()
            eq(shex(c.last_raw), DOC_LIVE["ping"], "§11.4's PING answer, byte for byte")
    finally:
        n.proc.stop()


# ======================================================================================
# main
# ======================================================================================


def start_node(name, peercached, workdir, extra, insecure=True):
    port = free_ports(1, udp_too=True)[0]
    argv = ([peercached, "--name", name, "--listen", f"{HOST}:{port}"]
            + (["--insecure"] if insecure else []) + extra)
    p = Proc(name, argv, workdir)
    n = Node(name, port, p)

    def up():
        check(p.alive(), f"{name} exited with {p.p.returncode}:\n{p.tail()}")
        with n.conn(2) as c:
            r = c.call([PING, 1], timeout=2)
            return r[:3] == [PING, 1, OK]
    poll(up, 15, f"{name} answering PING")
    return n


def learn(n, token=None):
    """HELLO: the node's ring fingerprint (§5.1, §6)."""
    with n.conn() as c:
        t0 = time.time() * 1000
        r = c.call([HELLO, 1, 1] + ([token] if token else []))
        t1 = time.time() * 1000
        check(r[2] == OK and len(r) >= 8, f"{n.name}: HELLO {r!r}")
        check(abs(r[7] - (t0 + t1) / 2) < 5000, f"{n.name}: now_ms {r[7]} is not the wall clock")
        n.fp = r[6]


def main():
    global K
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    peercached = os.path.abspath(sys.argv[1])
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"test_protocol_doc: {tool} is not installed (deploy/install-deps.sh)",
                  file=sys.stderr)
            return 1
    start = time.monotonic()
    K = f"pd{random.randrange(1 << 30)}:".encode()
    workdir = tempfile.mkdtemp(prefix="pc-protocol-doc-")
    procs = []
    fatal = None
    try:
        print("# A. the document's own bytes and numbers")
        run_check("§11 worked examples encoded byte for byte (mine and python3-msgpack)",
                  a_examples_encode)
        run_check("§8 numbers recomputed (1,114,157; 49/53; per-op table; 8,214; 12/21)",
                  a_limits_arithmetic)
        run_check("§8 'only MGET and REPLICATE [accept] more than 26 [values]' vs §8's table",
                  a_only_mget_replicate_over_26)

        redis_port, = free_ports(1, udp_too=True)
        CTX.redis_port = redis_port
        procs.append(Proc("redis", ["redis-server", "--port", str(redis_port), "--bind", HOST,
                                    "--save", "", "--appendonly", "no", "--dir", workdir],
                          workdir))
        poll(lambda: subprocess.run(["redis-cli", "-h", HOST, "-p", str(redis_port), "PING"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    timeout=5).stdout == b"PONG\n",
             15, "redis-server answering PING")
        N = start_node("pn1", peercached, workdir, ["--redis", f"{HOST}:{redis_port}"])
        procs.append(N.proc)
        learn(N)
        with N.conn() as c:
            poll(lambda: c.call([STATS, 1])[3].get("backend_up") == 1, 15,
                 "pn1's STATS saying backend_up 1")

        print(f"# B. one node (pn1 :{N.port}, --insecure, redis :{redis_port})")
        B = [
            ("HELLO 1: [1, id, 0, 1, name, version, ring_fp, now_ms]", b_hello),
            ("HELLO versions: 2 and 2^32-1 answered 1, 0 BAD_REQUEST, bad fields", b_hello_versions),
            ("HELLO is optional without a token", b_hello_optional),
            ("CLUSTER shape, fingerprint = HELLO's, one member", b_cluster),
            ("PING, ids echoed in their smallest form", b_ping),
            ("any int format accepted (§3)", b_int_formats),
            ("§11's requests sent to the node, answers as §11.4", b_live_examples),
            ("SET/GET: binary, flags, versions, empty value, str keys, nil optionals, TTL",
             b_set_get_basics),
            ("write-through: SET/TOUCH/DEL visible in Redis", b_write_through),
            ("read-through: keys written with redis-cli (GET, MGET, DEL)", b_read_through),
            ("SET cond NX/XX (also decided by Redis), bad cond", b_conditions),
            ("SET cas, cas+NX, cas+XX (§5.5)", b_cas),
            ("largest TTL 2^62, over it BAD_REQUEST and nothing changed; flags range",
             b_ttl_limits),
            ("DEL and TOUCH", b_del_touch),
            ("deadline_ms: late writes RETRY, nothing applied, writes_late", b_deadlines),
            ("GET/MGET here", b_get_here),
            ("wrong types and missing fields: BAD_REQUEST, connection kept", b_key_errors),
            ("unknown ops: BAD_REQUEST echoing op and id", b_unknown_ops),
            ("max_key and max_value at and over the limit", b_key_value_limits),
            ("the largest legal SET (1,114,157 bytes) is served", b_largest_set),
            ("L = max_frame served; L = max_frame + 1 from the prefix alone", b_max_frame),
            ("malformed streams: [0, 0, 4, msg] then the close", b_malformed),
            ("answers before a malformed frame come first", b_malformed_after_good),
            ("depth 4 and trailing float/bool/ext are fine", b_depth4_ok),
            ("a sealed body on a node without a key", b_sealed_on_insecure),
            ("budget: elements + 8, values + 16, the walk stops there", b_budget),
            ("MGET: order, duplicates, 1,024 keys, whole-request failures", b_mget),
            ("MGET answer budgeted: an entry that does not fit is [5]", b_mget_budget),
            ("a value over max_value in Redis: TOO_LARGE each time, [5] in MGET",
             b_over_max_value_in_redis),
            ("a GET answer is at most value + 49 bytes", b_get_overhead),
            ("STATS map; trailing elements on STATS and CLUSTER", b_stats),
            ("pipelining: 3,000 mixed requests answered once, in order", b_pipeline),
            ("FORWARD and REPLICATE from a client on an --insecure node (§5.10, §5.12)",
             b_peer_ops_insecure),
            ("GET/MGET here=1 on the owner: STATS here_reads", b_here_stats),
        ]
        for name, fn in B:
            run_check(name, fn, N)

        print("# C. a node with --token-file")
        tokfile = os.path.join(workdir, "token")
        with open(tokfile, "wb") as f:
            f.write(TOKEN + b"\n")
        os.chmod(tokfile, 0o600)
        hello_timeout = 1.0
        A = start_node("pn-auth", peercached, workdir,
                       ["--redis", f"{HOST}:{redis_port}", "--token-file", tokfile,
                        "--hello-timeout", f"{int(hello_timeout * 1000)}ms"])
        procs.append(A.proc)
        learn(A, TOKEN)
        for name, fn, *args in [
                ("before HELLO: PING served, the rest AUTH_REQUIRED; then the token",
                 c_before_hello),
                ("HELLO 2 with the token as str", c_hello_variants),
                ("HELLO 0 with the right token: BAD_REQUEST, not authenticated, not a failure",
                 c_hello_v0),
                ("not a request before HELLO: [0, 0, 9, msg] and the close", c_not_a_request),
                ("five bad tokens: 100..1600 ms delays, then [0, 0, 9, msg] and the close",
                 c_bad_tokens),
                ("the first bad token's delay is 100 ms", c_first_bad_token),
                ("a token over max_key", c_token_too_long),
                ("hello timeout: [0, 0, 6, ...] exactly, clock restarted by a bad HELLO",
                 c_hello_timeout, hello_timeout),
                ("12 bad HELLOs from one address, 3 from another: only the 11th and 12th 2 s",
                 c_bad_token_rate)]:
            run_check(name, fn, A, *args)

        print("# B2. pn1 with its Redis stalled, then stopped")
        run_check("Redis stalled under a SET: BACKEND_UNAVAILABLE, the write not applied after",
                  b_redis_stalled, N, procs[0])
        run_check("Redis down: BACKEND_UNAVAILABLE, per MGET key; cached keys served",
                  b_redis_down, N, procs[0])

        print("# D. a node with small limits and short timeouts")
        frame_timeout, idle_timeout, per_source = 0.3, 1.0, 4
        run_check("a node refuses max_frame < max_key + max_value + 512",
                  d_max_frame_at_start, peercached, workdir)
        S = start_node("pn-small", peercached, workdir,
                       ["--redis", "none", "--max-key", "1kb", "--max-value", "4kb",
                        "--max-frame", str(S_FRAME), "--frame-timeout", "300ms",
                        "--idle-timeout", "1s", "--max-conns-per-source", str(per_source)])
        procs.append(S.proc)
        learn(S)
        run_check(f"limits at max_key {S_KEY}, max_value {S_VALUE}, max_frame {S_FRAME}",
                  d_limits, S)
        run_check("frame timeout: [0, 0, 4, ...] exactly, then the close", d_frame_timeout, S,
                  frame_timeout)
        run_check("idle timeout: the close alone", d_idle_timeout, S, idle_timeout)
        run_check("per-address limit: [0, 0, 7, ...] at accept", d_per_source, S, per_source)
        run_check("without Redis: NX, XX, CAS, CAS+XX NOT_STORED (§5.5)", d_no_redis_conditions, S)

        print("# E. a node with a cluster key")
        keyfile = os.path.join(workdir, "cluster.key")
        key_hex = os.urandom(32).hex()
        with open(keyfile, "w") as f:
            f.write(key_hex + "\n")
        os.chmod(keyfile, 0o600)
        E = start_node("pn-keyed", peercached, workdir,
                       ["--redis", "none", "--cluster-key", keyfile], insecure=False)
        E.key_hex = key_hex
        procs.append(E.proc)
        learn(E)
        run_check("plain peer ops AUTH_REQUIRED; sealed bodies that do not open: close, no answer",
                  e_keyed, E)

        print("# F. §11.4's node")
        run_check("§11.4: a node alone on 127.0.0.1:39695 has ring fingerprint 0xa9bd5e6c66331fa8",
                  f_doc_fingerprint, peercached, workdir)

        print("# every response seen")
        run_check("responses use §3's sender forms (smallest ints); decoders agree",
                  b_format_rules)
        for p in procs:
            if not p.alive() and p.name != "redis":   # redis: stopped by b_redis_down
                RESULTS.append((f"{p.name} still running", False, f"exited:\n{p.tail()}"))
                print(f"FAIL  {p.name} exited during the test:\n{p.tail()}")
    except Failure as e:
        fatal = str(e)
        print(f"FAIL (setup): {e}")
    except Exception:
        fatal = "unexpected exception"
        print("FAIL (setup): unexpected exception:")
        traceback.print_exc(file=sys.stdout)
    finally:
        for p in reversed(procs):
            p.stop()
        if fatal:
            for p in procs:
                print(f"# last lines of {p.name}'s output:\n{p.tail()}")
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in RESULTS if not r[1]]
    print(f"# {len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed")
    for name, _, detail in failed:
        print(f"#   FAILED {name}: {detail}")
    ok = not failed and not fatal
    print(f"{'PASSED' if ok else 'FAILED'} in {time.monotonic() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
