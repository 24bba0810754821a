/*
 * pc_ring.c -- key placement: a slot table filled by weighted rendezvous
 * hashing.
 *
 * Every definition that fixes placement -- the key hash, the per-slot
 * draw, the score and its tie-breaks, the fingerprint encoding -- is
 * written out in docs/RING.md precisely enough to reimplement it in another
 * language, and pinned by golden vectors in tests/unit/test_ring.c. Any
 * change here that moves a single slot must bump PC_RING_SCHEME.
 *
 * Placement is integer arithmetic only. The textbook weighted score is
 * w / -ln(u) in doubles, but libm's log() is not correctly rounded and
 * differs in the last bit between C libraries, and compilers may fuse
 * multiply-adds on some targets; either would let a client and a node on
 * different platforms disagree about a slot. So -log2(u) is computed in
 * fixed point from two tables (below) and scores are compared by
 * cross-multiplication, which is exact.
 */
#include "pc_ring.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_MASK (PC_RING_SLOTS - 1u)

_Static_assert((PC_RING_SLOTS & SLOT_MASK) == 0, "PC_RING_SLOTS must be a power of two");
_Static_assert(PC_RING_MAX_MEMBERS <= 65536u, "member indexes are stored as uint16_t");
_Static_assert(PC_RING_MAX_WEIGHT < 1024u, "scores times weights must fit in 64 bits");

/*
 * Odd 64-bit constants: the first 64 fractional bits of the square roots
 * of 2, 3, 5 and 7 (the last bit forced to 1). Nothing-up-my-sleeve
 * numbers; a multiplier only needs to be odd and have its bits well mixed.
 */
#define K0 0x6a09e667f3bcc909ull
#define K1 0xbb67ae8584caa73bull
#define K2 0x3c6ef372fe94f82bull
#define K3 0xa54ff53a5f1d36f1ull

struct member {
    const char *name; /* points into pc_ring.names */
    uint32_t weight;
    uint64_t hash; /* pc_ring_hash(name) */
};

struct pc_ring {
    _Atomic unsigned refs; /* pc_ring_ref / pc_ring_free */
    size_t n;
    unsigned replicas; /* min(requested, n) */
    uint64_t fingerprint;
    struct member *m; /* n, in name order */
    uint32_t *owned;  /* n: slots owned per member */
    /*
     * replicas planes of PC_RING_SLOTS entries: plane k holds the k-th
     * placement of every slot (k = 0 is the owner). Plane 0 alone is what
     * pc_ring_owner() reads, 128 KiB, so the hot lookup keeps a small
     * working set whatever the replica count.
     */
    uint16_t *place;
    char *names;
};

/* ------------------------------------------------------------------ */
/* The key hash                                                        */
/* ------------------------------------------------------------------ */

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64u - r));
}

/* Bytes read explicitly little-endian, so every host computes the same. */
static inline uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t w = 0;

    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8u * i);
    return w;
}

static inline uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/*
 * The finalizer: xor-shifts fold the high bits down, the multiplies spread
 * every bit upward. Two rounds give full avalanche (every input bit flips
 * every output bit with probability 1/2 within measurement noise; RING.md
 * has the figures), which matters most for the low 16 bits: they pick the
 * slot.
 */
static inline uint64_t fin64(uint64_t z)
{
    z ^= z >> 32;
    z *= K1;
    z ^= z >> 29;
    z *= K2;
    z ^= z >> 32;
    return z;
}

/*
 * One 8-byte word into the state. The word is scrambled on its own
 * (multiply, rotate, multiply: off the state's dependency chain, so it
 * overlaps with the previous step) before it is xored in; the state step
 * (rotate, multiply, add) is a bijection, so two inputs of one length that
 * differ in a single word always reach different states.
 */
static inline uint64_t absorb(uint64_t h, uint64_t w)
{
    h ^= rotl64(w * K1, 29) * K2;
    return rotl64(h, 27) * K3 + K0;
}

uint64_t pc_ring_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    /* The length goes in first, so a zero-padded tail cannot collide
     * with a longer input that ends in zero bytes. */
    uint64_t h = K0 ^ ((uint64_t)len * K3);

    for (; len >= 8; p += 8, len -= 8)
        h = absorb(h, load_le64(p));
    if (len > 0)
        h = absorb(h, load_le(p, len));
    return fin64(h);
}

uint32_t pc_ring_slot(const void *key, size_t len)
{
    return (uint32_t)(pc_ring_hash(key, len) & SLOT_MASK);
}

/* ------------------------------------------------------------------ */
/* Scores                                                              */
/* ------------------------------------------------------------------ */

/* The slot's half of every draw: the hash of its number as 4 LE bytes. */
static uint64_t slot_key(uint32_t slot)
{
    uint8_t b[4] = {(uint8_t)slot, (uint8_t)(slot >> 8), (uint8_t)(slot >> 16),
                    (uint8_t)(slot >> 24)};
    return pc_ring_hash(b, sizeof b);
}

/* Member's draw for a slot: a uniform 64-bit value, u = x / 2^64. */
static inline uint64_t draw(uint64_t member_hash, uint64_t skey)
{
    return fin64(member_hash ^ skey);
}

uint64_t pc_ring_draw(uint64_t name_hash, uint32_t slot)
{
    return draw(name_hash, slot_key(slot));
}

static inline unsigned clz64(uint64_t x) /* x != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_clzll(x);
#else
    unsigned n = 0;

    while (!(x & (1ull << 63))) {
        x <<= 1;
        n++;
    }
    return n;
#endif
}

/*
 * log2_tab[j] = round(2^48 * log2(1 + j/256)), j = 0..256.
 * g_tab[j]    = round(2^31 * g(j/512)), j = 0..256, where
 *               g(e) = -log2(1 - e) / e and g(0) = 1/ln 2.
 * Both computed to 80 digits and rounded to nearest (the generator is in
 * docs/RING.md); no entry is near a rounding tie.
 */
static const uint64_t log2_tab[257] = {
    0x0000000000000, 0x001709c46d7ab, 0x002dfca16dde1, 0x0044d8c45ea5f,
    0x005b9e5a170b5, 0x00724d8eea144, 0x0088e68ea899a, 0x009f6984a342d,
    0x00b5d69bac77f, 0x00cc2dfe1a4a9, 0x00e26fd5c8556, 0x00f89c4c1992a,
    0x010eb389fa2a0, 0x0124b5b7e135a, 0x013aa2fdd27f2, 0x01507b836033c,
    0x01663f6fac913, 0x017beee96b8a3, 0x01918a16e4633, 0x01a7111df3485,
    0x01bc84240adac, 0x01d1e34e35b83, 0x01e72ec117fa6, 0x01fc66a0f0b01,
    0x02118b119b4f4, 0x02269c369120c, 0x023b9a32eaa57, 0x0250852960f4c,
    0x02655d3c4f15c, 0x027a228db3515, 0x028ed53f307ef, 0x02a375720f4b9,
    0x02b803473f7ad, 0x02cc7edf59226, 0x02e0e85a9de05, 0x02f53fd8fa0bc,
    0x0309857a05e07, 0x031db95d06a57, 0x0331dba0efce2, 0x0345ec6464171,
    0x0359ebc5b69d9, 0x036dd9e2ebf2c, 0x0381b6d9bb29c, 0x039582c78ee1c,
    0x03a93dc9864b3, 0x03bce7fc76290, 0x03d0817ce9cd5, 0x03e40a672411e,
    0x03f782d7204d0, 0x040aeae89341a, 0x041e42b6ec0c0, 0x04318a5d550aa,
    0x0444c1f6b4c2e, 0x0457e99daec24, 0x046b016ca47c2, 0x047e097db6238,
    0x049101eac381d, 0x04a3eacd6cc9a, 0x04b6c43f1366b, 0x04c98e58daca1,
    0x04dc4933a9338, 0x04eef4e828774, 0x0501918ec6c11, 0x05141f3fb753f,
    0x05269e12f346e, 0x05390e203a3ee, 0x054b6f7f1325b, 0x055dc246ccde3,
    0x0570068e7ef5a, 0x05823c6d0a523, 0x059463f919def, 0x05a67d4923353,
    0x05b8887367433, 0x05ca858df2f06, 0x05dc74ae9fbed, 0x05ee55eb146ab,
    0x06002958c5871, 0x0611ef0cf6186, 0x0623a71cb82c9, 0x0635519ced70e,
    0x0646eea247c5c, 0x06587e4149d02, 0x066a008e4788d, 0x067b759d66c97,
    0x068cdd829fd81, 0x069e3851bdefc, 0x06af861e5fc7d, 0x06c0c6fbf8191,
    0x06d1fafdce20b, 0x06e32236fe21a, 0x06f43cba79e41, 0x07054a9b0932c,
    0x07164beb4a56d, 0x072740bdb291f, 0x073829248e962, 0x0749053202fca,
    0x0759d4f80cba8, 0x076a98888193f, 0x077b4ff5108d9, 0x078bfb4f425ca,
    0x079c9aa879d53, 0x07ad2e11f456f, 0x07bdb59cca389, 0x07ce3159ef315,
    0x07dea15a32c1b, 0x07ef05ae409a0, 0x07ff5e66a0ffe, 0x080fab93b9327,
    0x081fed45cbccc, 0x0830238cf9276, 0x08404e793fb82, 0x08506e1a7c710,
    0x086082806b1d5, 0x08708bbaa6be1, 0x088089d8a9e47, 0x08907ce9cf0c0,
    0x08a064fd50f2a, 0x08b042224af00, 0x08c01467b94bb, 0x08cfdbdc79921,
    0x08df988f4ae80, 0x08ef4a8ece5dd, 0x08fef1e987409, 0x090e8eaddb6ad,
    0x091e20ea1393e, 0x092da8ac5b9e8, 0x093d2602c2e60, 0x094c98fb3c8ab,
    0x095c01a39fbd7, 0x096b6009a809c, 0x097ab43af59f9, 0x0989fe450d9b8,
    0x09993e355a4e5, 0x09a874192b83f, 0x09b79ffdb6c8b, 0x09c6c1f017ae8,
    0x09d5d9fd5010b, 0x09e4e83248571, 0x09f3ec9bcfb81, 0x0a02e7469c7a6,
    0x0a11d83f4c355, 0x0a20bf926410b, 0x0a2f9d4c5103a, 0x0a3e71796812c,
    0x0a4d3c25e68dc, 0x0a5bfd5df24bd, 0x0a6ab52d99e76, 0x0a7963a0d4f9a,
    0x0a8808c384548, 0x0a96a4a1723c8, 0x0aa5374652a1c, 0x0ab3c0bdc3581,
    0x0ac241134c4ea, 0x0ad0b8525fc6b, 0x0adf26865a8a2, 0x0aed8bba8420a,
    0x0afbe7fa0f04d, 0x0b0a3b5018d88, 0x0b1885c7aa982, 0x0b26c76bb8cdf,
    0x0b35004723c46, 0x0b433064b7b7c, 0x0b5157cf2d078, 0x0b5f76912866d,
    0x0b6d8cb53b0ca, 0x0b7b9a45e2e31, 0x0b899f4d8ab64, 0x0b979bd68a62d,
    0x0ba58feb2703b, 0x0bb37b95931ef, 0x0bc15edfeed33, 0x0bcf39d448031,
    0x0bdd0c7c9a817, 0x0bead6e2d03c5, 0x0bf89910c1679, 0x0c06531034a70,
    0x0c1404eadf384, 0x0c21aeaa651bc, 0x0c2f5058593d9, 0x0c3ce9fe3d9dc,
    0x0c4a7ba58377c, 0x0c5805578b6a5, 0x0c65871da59de, 0x0c73010111eb3,
    0x0c80730b00016, 0x0c8ddd448f8b8, 0x0c9b3fb6d0559, 0x0ca89a6ac2717,
    0x0cb5ed69565b0, 0x0cc338bb6d1c1, 0x0cd07c69d8702, 0x0cddb87d5ae72,
    0x0ceaecfea8086, 0x0cf819f66474b, 0x0d053f6d26089, 0x0d125d6b73fdc,
    0x0d1f73f9c70c1, 0x0d2c8320898ab, 0x0d398ae817906, 0x0d468b58bf13a,
    0x0d53847ac00a7, 0x0d6076564c89a, 0x0d6d60f388e42, 0x0d7a445a8bc97,
    0x0d8720935e643, 0x0d93f5a5fc784, 0x0da0c39a54804, 0x0dad8a7847cb3,
    0x0dba4a47aa997, 0x0dc7031044398, 0x0dd3b4d9cf24b, 0x0de05fabf91b0,
    0x0ded038e633f3, 0x0df9a088a2325, 0x0e0636a23e2ef, 0x0e12c5e2b3241,
    0x0e1f4e5170d03, 0x0e2bcff5dadb3, 0x0e384ad748f0e, 0x0e44befd06dac,
    0x0e512c6e54999, 0x0e5d9332667e8, 0x0e69f35065448, 0x0e764ccf6e290,
    0x0e829fb693045, 0x0e8eec0cda620, 0x0e9b31d93f98f, 0x0ea77122b2e31,
    0x0eb3a9f019750, 0x0ebfdc484d953, 0x0ecc08321eb31, 0x0ed82db4517db,
    0x0ee44cd59ffab, 0x0ef0659cb99c5, 0x0efc781043579, 0x0f088436d7ba5,
    0x0f148a170700a, 0x0f2089b7572aa, 0x0f2c831e44116, 0x0f3876523f7c3,
    0x0f446359b1354, 0x0f504a3af71e2, 0x0f5c2afc65448, 0x0f6805a445f61,
    0x0f73da38d9d4b, 0x0f7fa8c057e9f, 0x0f8b7140edbb2, 0x0f9733c0bf5c2,
    0x0fa2f045e7833, 0x0faea6d6779b6, 0x0fba577877d7d, 0x0fc60231e7463,
    0x0fd1a708bbe12, 0x0fdd4602e2a27, 0x0fe8df263f958, 0x0ff47278ade8d,
    0x1000000000000,
};

static const uint64_t g_tab[257] = {
    0x0b8aa3b29, 0x0b8d87521, 0x0b906ce03, 0x0b93545f2,
    0x0b963dd10, 0x0b9929382, 0x0b9c1696b, 0x0b9f05eef,
    0x0ba1f7431, 0x0ba4ea956, 0x0ba7dfe84, 0x0baad73dd,
    0x0badd0988, 0x0bb0cbfaa, 0x0bb3c9668, 0x0bb6c8de7,
    0x0bb9ca64f, 0x0bbccdfc4, 0x0bbfd3a6e, 0x0bc2db673,
    0x0bc5e53fa, 0x0bc8f132b, 0x0bcbff42c, 0x0bcf0f726,
    0x0bd221c40, 0x0bd5363a3, 0x0bd84cd77, 0x0bdb659e5,
    0x0bde80916, 0x0be19db33, 0x0be4bd067, 0x0be7de8da,
    0x0beb024b6, 0x0bee28428, 0x0bf150758, 0x0bf47ae72,
    0x0bf7a79a2, 0x0bfad6912, 0x0bfe07cef, 0x0c013b565,
    0x0c04712a0, 0x0c07a94cd, 0x0c0ae3c19, 0x0c0e208b2,
    0x0c115fac5, 0x0c14a1280, 0x0c17e5011, 0x0c1b2b3a7,
    0x0c1e73d72, 0x0c21bed9f, 0x0c250c460, 0x0c285c1e3,
    0x0c2bae659, 0x0c2f031f3, 0x0c325a4e1, 0x0c35b3f55,
    0x0c3910180, 0x0c3c6eb94, 0x0c3fcfdc5, 0x0c4333843,
    0x0c4699b42, 0x0c4a026f7, 0x0c4d6db93, 0x0c50db94c,
    0x0c544c056, 0x0c57bf0e6, 0x0c5b34b30, 0x0c5eacf6c,
    0x0c6227dce, 0x0c65a568c, 0x0c69259df, 0x0c6ca87fc,
    0x0c702e11c, 0x0c73b6577, 0x0c7741544, 0x0c7acf0bd,
    0x0c7e5f81a, 0x0c81f2b96, 0x0c8588b6a, 0x0c89217d2,
    0x0c8cbd107, 0x0c905b745, 0x0c93fcac8, 0x0c97a0bcc,
    0x0c9b47a8d, 0x0c9ef174a, 0x0ca29e23f, 0x0ca64dbaa,
    0x0caa003ca, 0x0cadb5ade, 0x0cb16e126, 0x0cb5296e1,
    0x0cb8e7c4f, 0x0cbca91b1, 0x0cc06d74a, 0x0cc434d5a,
    0x0cc7ff425, 0x0ccbccbec, 0x0ccf9d4f4, 0x0cd370f80,
    0x0cd747bd5, 0x0cdb21a37, 0x0cdefeaed, 0x0ce2dee3c,
    0x0ce6c246a, 0x0ceaa8dc0, 0x0cee92a84, 0x0cf27fb00,
    0x0cf66ff7b, 0x0cfa6383f, 0x0cfe5a596, 0x0d02547cb,
    0x0d0651f28, 0x0d0a52bfa, 0x0d0e56e8d, 0x0d125e72e,
    0x0d166962a, 0x0d1a77bd0, 0x0d1e8986f, 0x0d229ec55,
    0x0d26b77d3, 0x0d2ad3b3a, 0x0d2ef36db, 0x0d3316b09,
    0x0d373d815, 0x0d3b67e54, 0x0d3f95e1a, 0x0d43c77ba,
    0x0d47fcb8c, 0x0d4c359e5, 0x0d507231b, 0x0d54b2787,
    0x0d58f6782, 0x0d5d3e363, 0x0d6189b85, 0x0d65d9043,
    0x0d6a2c1f7, 0x0d6e830ff, 0x0d72dddb7, 0x0d773c87c,
    0x0d7b9f1ae, 0x0d80059ab, 0x0d84700d4, 0x0d88de789,
    0x0d8d50e2d, 0x0d91c7522, 0x0d9641ccb, 0x0d9ac058e,
    0x0d9f42fce, 0x0da3c9bf3, 0x0da854a63, 0x0dace3b86,
    0x0db176fc5, 0x0db60e789, 0x0dbaaa33e, 0x0dbf4a34f,
    0x0dc3ee828, 0x0dc897237, 0x0dcd441eb, 0x0dd1f57b3,
    0x0dd6ab3ff, 0x0ddb65741, 0x0de0241ec, 0x0de4e7472,
    0x0de9aef4a, 0x0dee7b2e8, 0x0df34bfc3, 0x0df821653,
    0x0dfcfb711, 0x0e01da277, 0x0e06bd900, 0x0e0ba5b29,
    0x0e109296e, 0x0e158444f, 0x0e1a7ac4c, 0x0e1f761e5,
    0x0e247659c, 0x0e297b7f6, 0x0e2e85977, 0x0e3394aa4,
    0x0e38a8c05, 0x0e3dc1e23, 0x0e42e0187, 0x0e48036bd,
    0x0e4d2be50, 0x0e52598cf, 0x0e578c6c9, 0x0e5cc48cf,
    0x0e6201f72, 0x0e6744b47, 0x0e6c8cce1, 0x0e71da4d7,
    0x0e772d3c1, 0x0e7c85a38, 0x0e81e38d8, 0x0e874703c,
    0x0e8cb0102, 0x0e921ebca, 0x0e9793135, 0x0e9d0d1e5,
    0x0ea28ce80, 0x0ea8127aa, 0x0ead9de0c, 0x0eb32f250,
    0x0eb8c651f, 0x0ebe63728, 0x0ec406918, 0x0ec9afba1,
    0x0ecf5ef74, 0x0ed514546, 0x0edacfdcc, 0x0ee0919bf,
    0x0ee6599d9, 0x0eec27ed5, 0x0ef1fc971, 0x0ef7d7a6d,
    0x0efdb928a, 0x0f03a128d, 0x0f098fb3c, 0x0f0f84d5e,
    0x0f15809be, 0x0f1b83129, 0x0f218c46d, 0x0f279c45a,
    0x0f2db31c5, 0x0f33d0d82, 0x0f39f5869, 0x0f4021355,
    0x0f4653f23, 0x0f4c8dcb1, 0x0f52cece0, 0x0f5917096,
    0x0f5f668b7, 0x0f65bd62f, 0x0f6c1b9e8, 0x0f72814d2,
    0x0f78ee7dd, 0x0f7f633fd, 0x0f85dfa29, 0x0f8c63b5a,
    0x0f92ef88e, 0x0f99832c3, 0x0fa01eafd, 0x0fa6c223f,
    0x0fad6d993, 0x0fb421205, 0x0fbadcca2, 0x0fc1a0a7d,
    0x0fc86ccab, 0x0fcf41444, 0x0fd61e264, 0x0fdd0382a,
    0x0fe3f16b9, 0x0feae7f38, 0x0ff1e72cf, 0x0ff8ef2ac,
    0x100000000,
};

/*
 * Relative error under 2e-6 (measured against long double log2l over
 * 2e7 draws), and -- what placement relies on -- non-increasing in x, so
 * with equal weights the order of scores is exactly the order of draws
 * (RING.md gives the argument; a test checks it over the boundaries).
 *
 * Below 1/2 it is the integer part from the leading zeros plus a linear
 * interpolation of log2 of the mantissa. Above 1/2 the result is small
 * and must keep its relative precision (the winners of a slot live
 * there), so it is computed from e = 1 - u as e * g(e), with e kept as a
 * normalised 32-bit mantissa. The lower half never returns less than
 * 2^48 (= 1.0), the upper half never more, so the whole is monotone.
 */
uint64_t pc_ring_neglog2(uint64_t x)
{
    if (x < (1ull << 63)) {
        if (x == 0)
            x = 1;
        unsigned e = 63u - clz64(x);
        uint64_t f = (x << (63u - e)) & ((1ull << 63) - 1);
        unsigned i = (unsigned)(f >> 55);
        uint64_t r = (f >> 39) & 0xffffu;
        uint64_t lg = log2_tab[i] + (((log2_tab[i + 1] - log2_tab[i]) * r) >> 16);

        return ((uint64_t)(64u - e) << 48) - lg;
    }

    uint64_t d = ~x + 1; /* 2^64 - x, in [1, 2^63] */
    unsigned j = (unsigned)(d >> 55);
    uint64_t r = (d >> 39) & 0xffffu;
    uint64_t g = j == 256 ? g_tab[256] : g_tab[j] + (((g_tab[j + 1] - g_tab[j]) * r) >> 16);
    unsigned s = clz64(d);
    uint64_t t = (d << s) >> 32;
    unsigned sh = 15u + s;

    return sh >= 64 ? 0 : (t * g) >> sh;
}

/*
 * A candidate for one slot. Member a ranks above member b when
 *     L_a / w_a < L_b / w_b        (the weighted score w / -ln u is higher)
 * compared exactly as L_a * w_b < L_b * w_a (under 2^54 * 1000 < 2^64),
 * then by the larger draw, then by name order (smaller index).
 */
struct cand {
    uint64_t x;
    uint64_t l;
    uint32_t w;
    uint32_t i;
};

static inline int ranks_above(const struct cand *a, const struct cand *b)
{
    uint64_t lhs = a->l * b->w, rhs = b->l * a->w;

    if (lhs != rhs)
        return lhs < rhs;
    if (a->x != b->x)
        return a->x > b->x;
    return a->i < b->i;
}

/*
 * Top-R selection per slot by insertion into a sorted array of R: members
 * come in index order, so a newcomer that ties loses, as name order says.
 *
 * All weights equal: the score order is the draw order (pc_ring_neglog2
 * does not increase), so the log is skipped. This is a speed path only; it gives
 * exactly the placement of the general rule, and a test checks it.
 */
static void fill_equal(pc_ring_t *r)
{
    const unsigned R = r->replicas;

    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        uint64_t sk = slot_key(s), bx[PC_RING_MAX_REPLICAS];
        uint16_t bi[PC_RING_MAX_REPLICAS];
        unsigned cnt = 0;

        for (size_t i = 0; i < r->n; i++) {
            uint64_t x = draw(r->m[i].hash, sk);

            if (cnt == R && x <= bx[R - 1])
                continue;
            unsigned p = cnt < R ? cnt++ : R - 1;
            for (; p > 0 && x > bx[p - 1]; p--) {
                bx[p] = bx[p - 1];
                bi[p] = bi[p - 1];
            }
            bx[p] = x;
            bi[p] = (uint16_t)i;
        }
        for (unsigned k = 0; k < R; k++)
            r->place[(size_t)k * PC_RING_SLOTS + s] = bi[k];
    }
}

static void fill_weighted(pc_ring_t *r)
{
    const unsigned R = r->replicas;

    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        uint64_t sk = slot_key(s);
        struct cand best[PC_RING_MAX_REPLICAS];
        unsigned cnt = 0;

        for (size_t i = 0; i < r->n; i++) {
            const struct cand *last = &best[R - 1];
            struct cand c;

            c.x = draw(r->m[i].hash, sk);
            c.w = r->m[i].weight;
            c.i = (uint32_t)i;
            /*
             * -log2(1 - e) >= e / ln 2 >= e, so (2^64 - x) >> 16 is a lower
             * bound of pc_ring_neglog2(x) that costs a negation. A member
             * whose bound already loses to the last kept one is skipped
             * without taking the log: exact, and most members of a large
             * ring leave here.
             */
            if (cnt == R && ((0 - c.x) >> 16) * last->w > last->l * c.w)
                continue;
            c.l = pc_ring_neglog2(c.x);
            if (cnt == R && !ranks_above(&c, last))
                continue;
            unsigned p = cnt < R ? cnt++ : R - 1;
            for (; p > 0 && ranks_above(&c, &best[p - 1]); p--)
                best[p] = best[p - 1];
            best[p] = c;
        }
        for (unsigned k = 0; k < R; k++)
            r->place[(size_t)k * PC_RING_SLOTS + s] = (uint16_t)best[k].i;
    }
}

/* ------------------------------------------------------------------ */
/* Building                                                            */
/* ------------------------------------------------------------------ */

static int cmp_member_ptr(const void *a, const void *b)
{
    const pc_ring_member_t *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8u * i));
}

/*
 * The hash of a canonical encoding of everything placement depends on:
 *   LE32 scheme | LE32 replicas (as built) | LE32 n |
 *   n x (LE32 name length | name bytes | LE32 weight), in name order.
 * 0 is mapped to 1 so that callers may use 0 as "no ring". `name(i)` and
 * `weight(i)` of member i in name order come through an accessor, so that
 * a built ring and a member list to be sorted share the encoding.
 */
typedef struct fp_src {
    const void *base;
    const char *(*name)(const void *base, size_t i);
    uint32_t (*weight)(const void *base, size_t i);
} fp_src_t;

static int fingerprint_of(const fp_src_t *src, size_t n, unsigned replicas, uint64_t *out)
{
    size_t len = 12;

    for (size_t i = 0; i < n; i++)
        len += 8 + strlen(src->name(src->base, i));

    uint8_t *buf = malloc(len), *p = buf;
    if (!buf)
        return PC_ENOMEM;
    put_le32(p, PC_RING_SCHEME);
    put_le32(p + 4, replicas);
    put_le32(p + 8, (uint32_t)n);
    p += 12;
    for (size_t i = 0; i < n; i++) {
        const char *nm = src->name(src->base, i);
        size_t nl = strlen(nm);

        put_le32(p, (uint32_t)nl);
        memcpy(p + 4, nm, nl);
        put_le32(p + 4 + nl, src->weight(src->base, i));
        p += 8 + nl;
    }
    *out = pc_ring_hash(buf, len);
    if (*out == 0)
        *out = 1;
    free(buf);
    return PC_OK;
}

static const char *ring_name(const void *base, size_t i)
{
    return ((const pc_ring_t *)base)->m[i].name;
}

static uint32_t ring_weight(const void *base, size_t i)
{
    return ((const pc_ring_t *)base)->m[i].weight;
}

static const char *sorted_name(const void *base, size_t i)
{
    return ((const pc_ring_member_t *const *)base)[i]->name;
}

static uint32_t sorted_weight(const void *base, size_t i)
{
    return ((const pc_ring_member_t *const *)base)[i]->weight;
}

static int fingerprint(pc_ring_t *r)
{
    fp_src_t src = {r, ring_name, ring_weight};
    return fingerprint_of(&src, r->n, r->replicas, &r->fingerprint);
}

static int check_args(const pc_ring_member_t *members, size_t n, unsigned replicas)
{
    if (n > 0 && !members)
        return PC_EINVAL;
    if (n > PC_RING_MAX_MEMBERS || replicas == 0 || replicas > PC_RING_MAX_REPLICAS)
        return PC_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const char *nm = members[i].name;

        if (!nm || nm[0] == '\0' || strnlen(nm, PC_RING_MAX_NAME + 1) > PC_RING_MAX_NAME)
            return PC_EINVAL;
        if (members[i].weight == 0 || members[i].weight > PC_RING_MAX_WEIGHT)
            return PC_EINVAL;
    }
    return PC_OK;
}

/* Copies the members in name order; PC_EINVAL on a duplicate name. */
static int copy_members(pc_ring_t *r, const pc_ring_member_t *members)
{
    const pc_ring_member_t **sorted = malloc(r->n * sizeof *sorted);
    size_t total = 0;
    int rc = PC_OK;

    if (!sorted)
        return PC_ENOMEM;
    for (size_t i = 0; i < r->n; i++) {
        sorted[i] = &members[i];
        total += strlen(members[i].name) + 1;
    }
    qsort(sorted, r->n, sizeof *sorted, cmp_member_ptr);
    for (size_t i = 1; i < r->n; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            rc = PC_EINVAL;
            goto out;
        }
    }

    r->m = malloc(r->n * sizeof *r->m);
    r->names = malloc(total);
    if (!r->m || !r->names) {
        rc = PC_ENOMEM;
        goto out;
    }
    char *p = r->names;
    for (size_t i = 0; i < r->n; i++) {
        size_t nl = strlen(sorted[i]->name);

        memcpy(p, sorted[i]->name, nl + 1);
        r->m[i].name = p;
        r->m[i].weight = sorted[i]->weight;
        r->m[i].hash = pc_ring_hash(p, nl);
        p += nl + 1;
    }
out:
    free(sorted);
    return rc;
}

int pc_ring_new(const pc_ring_member_t *members, size_t n, unsigned replicas, pc_ring_t **out)
{
    pc_ring_t *r;
    int rc;

    if (!out)
        return PC_EINVAL;
    *out = NULL;
    rc = check_args(members, n, replicas);
    if (rc != PC_OK)
        return rc;
    r = calloc(1, sizeof *r);
    if (r != NULL)
        atomic_init(&r->refs, 1);
    if (!r)
        return PC_ENOMEM;
    r->n = n;
    r->replicas = n < replicas ? (unsigned)n : replicas;
    if (n > 0) {
        rc = copy_members(r, members);
        if (rc != PC_OK)
            goto fail;
        r->place = malloc((size_t)r->replicas * PC_RING_SLOTS * sizeof *r->place);
        r->owned = calloc(n, sizeof *r->owned);
        if (!r->place || !r->owned) {
            rc = PC_ENOMEM;
            goto fail;
        }

        int equal = 1;
        for (size_t i = 1; i < n; i++)
            equal &= r->m[i].weight == r->m[0].weight;
        /* A ring of one -- every node's first ring, built at start -- places
         * every slot on its only member: no draws needed (index 0, and
         * replicas is 1). Scoring 65,536 slots would cost the start-up about
         * half a millisecond for nothing. */
        if (n == 1) {
            memset(r->place, 0, PC_RING_SLOTS * sizeof *r->place);
            r->owned[0] = PC_RING_SLOTS;
        } else {
            if (equal)
                fill_equal(r);
            else
                fill_weighted(r);
            for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
                r->owned[r->place[s]]++;
        }
    }
    rc = fingerprint(r);
    if (rc != PC_OK)
        goto fail;
    *out = r;
    return PC_OK;

fail:
    pc_ring_free(&r);
    return rc;
}

uint64_t pc_ring_fingerprint_of(const pc_ring_member_t *members, size_t n, unsigned replicas)
{
    if (check_args(members, n, replicas) != PC_OK)
        return 0;
    const pc_ring_member_t **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return 0;
    for (size_t i = 0; i < n; i++)
        sorted[i] = &members[i];
    qsort(sorted, n, sizeof *sorted, cmp_member_ptr);
    uint64_t fp = 0;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            goto out; /* a duplicate: pc_ring_new would refuse it */
    }
    fp_src_t src = {sorted, sorted_name, sorted_weight};
    if (fingerprint_of(&src, n, n < replicas ? (unsigned)n : replicas, &fp) != PC_OK)
        fp = 0;
out:
    free(sorted);
    return fp;
}

pc_ring_t *pc_ring_ref(const pc_ring_t *r)
{
    pc_ring_t *m = (pc_ring_t *)(uintptr_t)r; /* the count is not the ring */
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void pc_ring_free(pc_ring_t **rp)
{
    pc_ring_t *r;

    if (!rp || !*rp)
        return;
    r = *rp;
    *rp = NULL;
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(r->m);
    free(r->names);
    free(r->owned);
    free(r->place);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

size_t pc_ring_size(const pc_ring_t *r)
{
    return r ? r->n : 0;
}

unsigned pc_ring_replicas(const pc_ring_t *r)
{
    return r ? r->replicas : 0;
}

const char *pc_ring_name(const pc_ring_t *r, size_t i)
{
    return r && i < r->n ? r->m[i].name : NULL;
}

uint32_t pc_ring_weight(const pc_ring_t *r, size_t i)
{
    return r && i < r->n ? r->m[i].weight : 0;
}

long pc_ring_find(const pc_ring_t *r, const char *name)
{
    size_t lo = 0, hi;

    if (!r || !name)
        return -1;
    hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->m[mid].name);

        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

size_t pc_ring_slot_members(const pc_ring_t *r, uint32_t slot, uint32_t *out, size_t max)
{
    size_t k;

    if (!r || slot >= PC_RING_SLOTS || !out)
        return 0;
    for (k = 0; k < max && k < r->replicas; k++)
        out[k] = r->place[k * PC_RING_SLOTS + slot];
    return k;
}

void pc_ring_roles(const pc_ring_t *r, long self, uint8_t *roles)
{
    memset(roles, PC_RING_ROLE_NONE, PC_RING_SLOTS);
    if (!r || self < 0 || (size_t)self >= r->n)
        return;
    const uint16_t me = (uint16_t)self; /* self < n <= PC_RING_MAX_MEMBERS */
    /* A member holds at most one placement of a slot: the replicas' rows
     * first, so that the owner's row has the last word anyway. */
    for (unsigned k = r->replicas; k-- > 1;) {
        const uint16_t *row = r->place + (size_t)k * PC_RING_SLOTS;
        for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
            if (row[s] == me)
                roles[s] = PC_RING_ROLE_REPLICA;
    }
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        if (r->place[s] == me)
            roles[s] = PC_RING_ROLE_OWNER;
}

long pc_ring_slot_owner(const pc_ring_t *r, uint32_t slot)
{
    if (!r || r->n == 0 || slot >= PC_RING_SLOTS)
        return -1;
    return r->place[slot];
}

long pc_ring_owner(const pc_ring_t *r, const void *key, size_t len)
{
    if (!r || r->n == 0)
        return -1;
    return r->place[pc_ring_hash(key, len) & SLOT_MASK];
}

uint64_t pc_ring_fingerprint(const pc_ring_t *r)
{
    return r ? r->fingerprint : 0;
}

uint32_t pc_ring_owned_slots(const pc_ring_t *r, size_t i)
{
    return r && i < r->n ? r->owned[i] : 0;
}

/* ------------------------------------------------------------------ */
/* Diff                                                                */
/* ------------------------------------------------------------------ */

/*
 * Indexes differ between rings, so lists are compared through a map from
 * a's indexes to b's (NOT_IN_B where the name is not in b), built by one
 * merge of the two name-sorted member lists. 8 KiB of stack at most, so
 * the diff cannot fail for lack of memory.
 */
#define NOT_IN_B UINT16_MAX

long pc_ring_diff(const pc_ring_t *a, const pc_ring_t *b, pc_ring_move_fn fn, void *arg)
{
    uint16_t map[PC_RING_MAX_MEMBERS];
    uint32_t from[PC_RING_MAX_REPLICAS], to[PC_RING_MAX_REPLICAS];
    size_t i = 0, j = 0;
    long count = 0;

    if (!a || !b)
        return PC_EINVAL;
    while (i < a->n) {
        int c = j < b->n ? strcmp(a->m[i].name, b->m[j].name) : -1;

        if (c < 0)
            map[i++] = NOT_IN_B;
        else if (c > 0)
            j++;
        else
            map[i++] = (uint16_t)j++;
    }

    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        size_t na = pc_ring_slot_members(a, s, from, PC_RING_MAX_REPLICAS);
        size_t nb = pc_ring_slot_members(b, s, to, PC_RING_MAX_REPLICAS);
        int same = na == nb;

        for (size_t k = 0; same && k < na; k++)
            same = map[from[k]] == to[k];
        if (same)
            continue;
        count++;
        if (fn) {
            int rc = fn(arg, s, from, na, to, nb);
            if (rc != 0)
                return rc;
        }
    }
    return count;
}
