/*
 * fuzz_seal.c -- libFuzzer target for proto/pc_seal, and for the gossip
 * decoder as a node reaches it: after a seal is opened.
 *
 * One input, four uses:
 *   1. A sealed message. pc_seal_open with a fixed keyring must answer 0,
 *      PC_EPROTO, PC_ENOKEY or PC_EAUTH, and what opens goes on to the
 *      gossip decoders. Random bytes almost never open, so also:
 *   2. A plaintext. Sealed with the fixed keys (pc_seal, and pc_seal_frame
 *      behind other bytes), opened again: kind, key id, stream, seq, ts and
 *      every byte must come back, the bytes before the frame untouched.
 *      The opened payload then goes to the gossip decoders (packet and
 *      state), so the decoder is fuzzed through the same path as on a
 *      node; the plain gossip seeds in the corpus steer it there.
 *   3. Key-file text: pc_keyring_parse answers 0 or PC_EINVAL, and a ring
 *      it returns holds 1..PC_KEYRING_MAX keys.
 *   4. A script for the replay filter, checked step by step against a
 *      model that remembers every accepted seq exactly.
 * Any violated property calls abort(), which libFuzzer reports as a crash.
 *
 * Compiled with -DFUZZ_SEAL_CORPUS, this file is instead a program:
 *   fuzz_seal_corpus DIR            writes the seed corpus into DIR, the
 *                                   same bytes every time (libsodium's
 *                                   random numbers come from a fixed seed)
 *   fuzz_seal_corpus --replay DIR   runs every file in DIR through the
 *                                   target: the committed corpus is
 *                                   checked by every build, with or
 *                                   without libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pc_gossip.h"
#include "pc_proto.h"
#include "pc_seal.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed keys: ring [K1, K2] seals with K1; ring [K2, K1] with K2. */
#define K1 "6b1e0c9a4f2d8e7b3a5c1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100"
#define K2 "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
#define K3 "deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

#define NOW_MS 1700000000000ull

typedef struct fuzz_state {
    pc_keyring_t *ring12;
    pc_keyring_t *ring21;
    pc_gossip_decoder_t *gossip;
    unsigned opened;  /* inputs that opened as sealed messages */
    unsigned decoded; /* opened payloads the gossip decoder accepted */
} fuzz_state_t;

static pc_keyring_t *must_parse(const char *text)
{
    pc_keyring_t *kr = NULL;
    CHECK(pc_keyring_parse(text, strlen(text), &kr, NULL, 0) == 0);
    return kr;
}

/* libFuzzer has no setup hook that runs before the first input in every
 * mode, so the state is made on first use and lives for the process. */
static fuzz_state_t *state(void)
{
    static fuzz_state_t st;

    if (st.ring12 == NULL) {
        CHECK(pc_seal_init() == 0);
        st.ring12 = must_parse(K1 "\n" K2 "\n");
        st.ring21 = must_parse(K2 "\n" K1 "\n");
        CHECK(pc_gossip_decoder_new(&st.gossip) == 0);
    }
    return &st;
}

/* What a node does with an opened gossip payload. */
static void decode_gossip(fuzz_state_t *fs, const uint8_t *p, size_t len)
{
    pc_gossip_packet_t pkt;
    pc_gossip_state_t gst;
    int rc = pc_gossip_decode_packet(fs->gossip, p, len, &pkt);

    CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
    fs->decoded += rc == 0;
    if (rc == 0) {
        CHECK(pkt.nmsgs <= PC_GOSSIP_MAX_MSGS && pkt.sender.len >= 1);
        for (uint32_t i = 0; i < pkt.nmsgs; i++)
            CHECK(pkt.msgs[i].type >= 1 && pkt.msgs[i].type <= PC_GOSSIP_TYPE_MAX);
    }
    rc = pc_gossip_decode_state(fs->gossip, p, len, &gst);
    CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
    fs->decoded += rc == 0;
    if (rc == 0)
        CHECK(gst.nnodes <= PC_GOSSIP_MAX_NODES && gst.sender.len >= 1);
}

/* 1: the input as a message off the wire. */
static void open_input(fuzz_state_t *fs, const uint8_t *data, size_t size)
{
    uint8_t *msg = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    pc_seal_opened_t o;

    CHECK(msg != NULL);
    if (size > 0)
        memcpy(msg, data, size);
    int rc = pc_seal_open(fs->ring12, msg, size, &o);
    CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_ENOKEY || rc == PC_EAUTH);
    CHECK(pc_seal_is_sealed(data, size) == (size > 0 && data[0] == PC_SEAL_MAGIC));
    if (rc == 0) {
        fs->opened++;
        CHECK(o.len == size - PC_SEAL_OVERHEAD && o.payload == msg + PC_SEAL_OVERHEAD - 16);
        decode_gossip(fs, o.payload, o.len);
    } else {
        CHECK(o.payload == NULL && o.len == 0);
    }
    free(msg);
}

static void check_opened(const pc_seal_opened_t *o, uint8_t kind, uint32_t key_id,
                         const pc_seal_stream_t *st, uint64_t ts, const uint8_t *data,
                         size_t size)
{
    CHECK(o->kind == kind && o->key_id == key_id);
    CHECK(o->stream == st->id && o->seq == st->seq && o->ts_ms == ts);
    CHECK(o->len == size);
    CHECK(size == 0 || memcmp(o->payload, data, size) == 0);
}

/* 2: the input as a plaintext, sealed two ways and opened again. */
static void roundtrip(fuzz_state_t *fs, const uint8_t *data, size_t size)
{
    uint8_t kind = size > 0 ? (uint8_t)(data[0] % 3 + 1) : PC_SEAL_GOSSIP;
    const pc_keyring_t *sealer = size % 2 ? fs->ring21 : fs->ring12;
    uint64_t ts = NOW_MS + size;
    pc_seal_stream_t st;
    pc_seal_opened_t o;
    pc_buf_t b;

    pc_seal_stream_init(&st);
    CHECK(st.id != 0 && st.seq == 0);

    /* pc_seal, appended after a byte that must stay */
    pc_buf_init(&b, 0);
    CHECK(pc_buf_append(&b, "x", 1) == 0);
    CHECK(pc_seal(sealer, &st, kind, ts, data, size, &b) == 0);
    CHECK(b.len == 1 + PC_SEAL_OVERHEAD + size && b.data[0] == 'x' && st.seq == 1);
    CHECK(pc_seal_is_sealed(b.data + 1, b.len - 1));
    CHECK(pc_seal_open(fs->ring12, b.data + 1, b.len - 1, &o) == 0);
    check_opened(&o, kind, pc_keyring_id(sealer, 0), &st, ts, data, size);
    decode_gossip(fs, o.payload, o.len);

    /* pc_seal_frame, in place, behind up to 7 bytes of other frames */
    size_t pre = size < 7 ? size : 7;
    uint8_t len4[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                       (uint8_t)size};
    pc_buf_reset(&b);
    CHECK(pc_buf_append(&b, data, pre) == 0);
    CHECK(pc_buf_append(&b, len4, 4) == 0);
    CHECK(pc_buf_append(&b, data, size) == 0);
    CHECK(pc_seal_frame(sealer, &st, kind, ts, &b, pre) == 0);
    CHECK(b.len == pre + 4 + size + PC_SEAL_OVERHEAD && st.seq == 2);
    CHECK(pre == 0 || memcmp(b.data, data, pre) == 0);
    uint32_t body = (uint32_t)b.data[pre] << 24 | (uint32_t)b.data[pre + 1] << 16 |
                    (uint32_t)b.data[pre + 2] << 8 | b.data[pre + 3];
    CHECK(body == size + PC_SEAL_OVERHEAD);
    CHECK(pc_seal_open(fs->ring21, b.data + pre + 4, body, &o) == 0);
    check_opened(&o, kind, pc_keyring_id(sealer, 0), &st, ts, data, size);
    /* not one whole frame: refused */
    CHECK(pc_seal_frame(sealer, &st, kind, ts, &b, pre + 1) == PC_EINVAL);
    pc_buf_free(&b);
}

/* 3: the input as a key file. */
static void parse_text(const uint8_t *data, size_t size)
{
    pc_keyring_t *kr = NULL;
    char err[256];
    int rc = pc_keyring_parse((const char *)data, size, &kr, err, sizeof(err));

    CHECK(rc == 0 || rc == PC_EINVAL);
    if (rc == 0) {
        size_t n = pc_keyring_count(kr);
        CHECK(n >= 1 && n <= PC_KEYRING_MAX);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < i; j++)
                CHECK(pc_keyring_id(kr, i) != pc_keyring_id(kr, j));
        CHECK(pc_keyring_id(kr, n) == 0);
    } else {
        CHECK(kr == NULL && strlen(err) > 0);
    }
    pc_keyring_free(&kr);
}

/* 4: every 4 input bytes are one message for the replay filter: stream
 * (3 of them), a seq step around the highest (crossing the bitmap's end),
 * a ts around now (crossing the window), and time passing. */
#define RP_STREAMS 3
#define RP_SEQS 8192
#define RP_WINDOW 1000

typedef struct model_stream {
    int live;
    uint64_t top, keep_until;
    uint8_t seen[RP_SEQS];
} model_stream_t;

static void replay_script(const uint8_t *data, size_t size)
{
    static model_stream_t m[RP_STREAMS];
    pc_replay_t *r = NULL;
    uint64_t now = NOW_MS;

    memset(m, 0, sizeof(m));
    CHECK(pc_replay_new(RP_WINDOW, RP_STREAMS + 1, &r) == 0);
    for (size_t i = 0; i + 4 <= size; i += 4) {
        model_stream_t *s = &m[data[i] % RP_STREAMS];
        int64_t q = (int64_t)s->top + (int8_t)data[i + 1] * 9;
        uint64_t seq = q >= 0 && q < RP_SEQS ? (uint64_t)q : (uint64_t)data[i + 1] * 32;
        uint64_t ts = now + (uint64_t)data[i + 2] * 10 - 1280;
        int want;

        now += (uint64_t)data[i + 3] * 8;
        if (seq == 0 || (ts < now ? now - ts : ts - now) > RP_WINDOW)
            want = PC_ESTALE;
        else if (!s->live || now > s->keep_until || seq > s->top)
            want = 0;
        else if (s->top - seq > PC_REPLAY_BITS)
            want = PC_ESTALE;
        else if (s->seen[seq])
            want = PC_EREPLAY;
        else
            want = 0;

        int got = pc_replay_check(r, 0x5eed0000u + data[i] % RP_STREAMS, seq, ts, now);
        if (got != want) {
            fprintf(stderr, "replay step %zu: seq %llu top %llu: got %d, model %d\n", i / 4,
                    (unsigned long long)seq, (unsigned long long)s->top, got, want);
            abort();
        }
        if (want == 0) {
            if (!s->live || now > s->keep_until) {
                memset(s->seen, 0, sizeof(s->seen));
                s->live = 1;
                s->top = seq;
                s->keep_until = 0;
            }
            s->seen[seq] = 1;
            if (seq > s->top)
                s->top = seq;
            if (ts + RP_WINDOW > s->keep_until)
                s->keep_until = ts + RP_WINDOW;
        }
        CHECK(pc_replay_streams(r) <= RP_STREAMS);
    }
    pc_replay_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_state_t *fs = state();

    open_input(fs, data, size);
    roundtrip(fs, data, size);
    parse_text(data, size);
    replay_script(data, size);
    return 0;
}

#ifdef FUZZ_SEAL_CORPUS
/* ---- the corpus writer and replayer ------------------------------------- */

/* A seeded stand-in for libsodium's generator (randombytes_set_implementation
 * is libsodium's documented hook for this), so nonces, stream ids and keys
 * in the corpus are the same on every run. */
static uint64_t det_counter;

static void det_buf(void *buf, size_t size)
{
    uint8_t seed[randombytes_SEEDBYTES] = "fuzz_seal corpus seed";

    memcpy(seed + 24, &det_counter, sizeof(det_counter));
    det_counter++;
    randombytes_buf_deterministic(buf, size, seed);
}

static uint32_t det_random(void)
{
    uint32_t v;
    det_buf(&v, sizeof(v));
    return v;
}

static const char *det_name(void)
{
    return "fuzz_seal deterministic";
}

static struct randombytes_implementation det_impl = {
    .implementation_name = det_name,
    .random = det_random,
    .buf = det_buf,
};

static void put(const char *dir, const char *name, const void *p, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(len == 0 || fwrite(p, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* Writes pc_seal(kr, kind, payload) as the file `name`. */
static void put_sealed(const char *dir, const char *name, const pc_keyring_t *kr, uint8_t kind,
                       const void *payload, size_t len)
{
    pc_seal_stream_t st;
    pc_buf_t b;

    pc_seal_stream_init(&st);
    pc_buf_init(&b, 0);
    CHECK(pc_seal(kr, &st, kind, NOW_MS, payload, len, &b) == 0);
    put(dir, name, b.data, b.len);
    pc_buf_free(&b);
}

static pc_bytes_t bytes(const char *s)
{
    return (pc_bytes_t){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static int write_corpus(const char *dir)
{
    fuzz_state_t *fs = state();
    pc_keyring_t *other = must_parse(K3 "\n");
    pc_gossip_writer_t w;
    pc_buf_t packet, st, req;

    /* a gossip packet: PING and ALIVE */
    pc_buf_init(&packet, 0);
    CHECK(pc_gossip_writer_begin(&w, &packet, bytes("node1"), 0) == 0);
    pc_gossip_msg_t ping = {.type = PC_GOSSIP_PING, .seq = 7, .name = bytes("node2")};
    pc_gossip_msg_t alive = {.type = PC_GOSSIP_ALIVE,
                             .incarnation = 3,
                             .weight = 100,
                             .name = bytes("node1"),
                             .addr = bytes("127.0.0.1:7400"),
                             .gossip = bytes("127.0.0.1:7400")};
    pc_gossip_msg_t suspect = {.type = PC_GOSSIP_SUSPECT,
                               .incarnation = 2,
                               .name = bytes("node3"),
                               .from = bytes("node1")};
    CHECK(pc_gossip_writer_add(&w, &ping) == 0);
    CHECK(pc_gossip_writer_add(&w, &alive) == 0);
    CHECK(pc_gossip_writer_add(&w, &suspect) == 0);
    pc_gossip_writer_end(&w);

    /* a full state of two nodes */
    pc_gossip_node_t nodes[2] = {
        {bytes("node1"), bytes("127.0.0.1:7400"), bytes("127.0.0.1:7400"), 100,
         PC_GOSSIP_ST_ALIVE, 3},
        {bytes("node2"), bytes("127.0.0.1:7401"), bytes("127.0.0.1:7401"), 50,
         PC_GOSSIP_ST_SUSPECT, 9},
    };
    pc_buf_init(&st, 0);
    CHECK(pc_gossip_encode_state(&st, bytes("node1"), nodes, 2) == 0);

    /* a peer request frame's body */
    pc_request_t get = {.op = PC_OP_GET, .id = 1, .key = bytes("user:1")};
    pc_buf_init(&req, 0);
    CHECK(pc_proto_encode_request(&req, &get) == 0);

    /* plain: steer the round trip (use 2) into the gossip decoder */
    put(dir, "plain_gossip_packet", packet.data, packet.len);
    put(dir, "plain_gossip_state", st.data, st.len);
    /* sealed with the fixed keys: they open (use 1) */
    put_sealed(dir, "sealed_gossip_packet", fs->ring12, PC_SEAL_GOSSIP, packet.data, packet.len);
    put_sealed(dir, "sealed_gossip_state_k2", fs->ring21, PC_SEAL_PEER_RESP, st.data, st.len);
    put_sealed(dir, "sealed_peer_req", fs->ring12, PC_SEAL_PEER_REQ, req.data + 4, req.len - 4);
    put_sealed(dir, "sealed_empty", fs->ring12, PC_SEAL_GOSSIP, "", 0);
    /* sealed with a key the ring lacks, and a version the code lacks */
    put_sealed(dir, "sealed_unknown_key", other, PC_SEAL_GOSSIP, packet.data, packet.len);
    uint8_t v2[PC_SEAL_OVERHEAD] = {PC_SEAL_MAGIC, 2, PC_SEAL_GOSSIP};
    put(dir, "sealed_version2", v2, sizeof(v2));
    /* key files (use 3) */
    static const char keys[] = "# cluster key\n" K1 "\n\n  " K2 "  \r\n";
    put(dir, "keyfile_two", keys, strlen(keys));
    static const char bad[] = "# cluster key\n" K1 "\nnot a key\n";
    put(dir, "keyfile_bad_line", bad, strlen(bad));
    /* a replay script (use 4): forward, back, duplicates, time passing */
    static const uint8_t script[] = {0, 1,   128, 0, 0, 1,   128, 0, 0, 0xf0, 128, 1,
                                     1, 5,   128, 0, 0, 120, 128, 0, 0, 0x80, 128, 0,
                                     2, 3,   250, 0, 2, 3,   5,   0, 1, 5,   128, 255};
    put(dir, "replay_script", script, sizeof(script));

    pc_buf_free(&packet);
    pc_buf_free(&st);
    pc_buf_free(&req);
    pc_keyring_free(&other);
    return 0;
}

/* Every regular file in dir through the target. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        uint8_t *buf = malloc(1 << 20);
        size_t len;
        FILE *f;

        CHECK(buf != NULL);
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || (f = fopen(path, "rb")) == NULL) {
            free(buf);
            continue;
        }
        len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        n++;
    }
    closedir(d);
    printf("%d inputs from %s: ok; %u opened, %u gossip payloads decoded\n", n, dir,
           state()->opened, state()->decoded);
    return n > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--replay") == 0)
        return replay_dir(argv[2]);
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s DIR | --replay DIR\n", argv[0]);
        return 2;
    }
    CHECK(randombytes_set_implementation(&det_impl) == 0);
    return write_corpus(argv[1]);
}
#endif
