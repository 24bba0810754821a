/*
 * pc_loop.c -- the common parts of a loop's context.
 */
#include "pc_loop.h"

int pc_loop_init(pc_loop_t *l)
{
    pc_buf_init(&l->scratch, 0);
    pc_buf_init(&l->fbuf, 0);
    if (pc_proto_decoder_new(&l->set.conn.proto, &l->dec) < 0 ||
        pc_proto_decoder_new(&l->set.conn.proto, &l->pdec) < 0 ||
        pc_proto_decoder_new(&l->set.conn.proto, &l->fdec) < 0 ||
        pc_proto_decoder_new(&l->set.conn.proto, &l->rdec) < 0)
        return PC_ENOMEM;
    l->start_ms = pc_loop_now(l);
    return 0;
}

void pc_loop_free(pc_loop_t *l)
{
    pc_proto_decoder_free(&l->dec);
    pc_proto_decoder_free(&l->pdec);
    pc_proto_decoder_free(&l->fdec);
    pc_proto_decoder_free(&l->rdec);
    pc_buf_free(&l->scratch);
    pc_buf_free(&l->fbuf);
}
