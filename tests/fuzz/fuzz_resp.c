/*
 * fuzz_resp.c -- libFuzzer target for the Redis protocol command parser
 * (proto/pc_resp), under small limits so that they are met often.
 *
 * The input is what a client sent, parsed command by command as a
 * connection would. What parses must hold to the contract in pc_resp.h:
 * `used` is within the input and non-zero, every argument lies inside the
 * command's bytes, no more arguments or bytes than the limits allow; an
 * incomplete command consumes nothing and becomes whole when nothing is
 * missing; and every command survives a round trip: written again as a
 * multibulk (pc_resp_array + pc_resp_bulk), it parses to the same
 * arguments in exactly that many bytes. Errors leave a reason that
 * starts "Protocol error: ". Any violated property calls abort().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_resp.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const pc_resp_limits_t lim = {.max_args = 8, .max_bulk = 64, .max_inline = 128};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pc_resp_parser_t p, q;
    pc_resp_parser_init(&p, &lim);
    pc_resp_parser_init(&q, &lim);
    pc_buf_t again;
    pc_buf_init(&again, 0);
    size_t at = 0;
    while (at < size) {
        pc_resp_cmd_t c;
        size_t used = 12345;
        int rc = pc_resp_parse(&p, data + at, size - at, &c, &used);
        if (rc == 0) {
            CHECK(used == 0);
            break; /* not whole: a connection would wait */
        }
        if (rc < 0) {
            CHECK(rc == PC_EPROTO || rc == PC_ETOOBIG);
            CHECK(used == 0);
            CHECK(strncmp(pc_resp_why(&p), "Protocol error: ", 16) == 0);
            break; /* a connection would answer the error and close */
        }
        CHECK(rc == 1);
        CHECK(used > 0 && used <= size - at);
        CHECK(c.argc <= lim.max_args);
        pc_buf_reset(&again);
        CHECK(pc_resp_array(&again, c.argc) == 0);
        for (uint32_t i = 0; i < c.argc; i++) {
            const uint8_t *a = c.argv[i].ptr;
            CHECK(c.argv[i].len <= lim.max_bulk && c.argv[i].len <= lim.max_inline);
            CHECK(c.argv[i].len == 0 || (a >= data + at && a + c.argv[i].len <= data + at + used));
            CHECK(pc_resp_bulk(&again, a, c.argv[i].len) == 0);
        }
        /* The round trip: the same arguments, from exactly those bytes,
         * and nothing before the end is whole. */
        pc_resp_cmd_t d;
        size_t used2;
        CHECK(pc_resp_parse(&q, again.data, again.len, &d, &used2) == 1);
        CHECK(used2 == again.len && d.argc == c.argc);
        for (uint32_t i = 0; i < c.argc; i++)
            CHECK(d.argv[i].len == c.argv[i].len &&
                  (d.argv[i].len == 0 || memcmp(d.argv[i].ptr, c.argv[i].ptr, d.argv[i].len) == 0));
        if (again.len > 1)
            CHECK(pc_resp_parse(&q, again.data, again.len - 1, &d, &used2) == 0);
        at += used;
    }
    pc_buf_free(&again);
    pc_resp_parser_free(&p);
    pc_resp_parser_free(&q);
    return 0;
}
