/*
 * pc_peerops.c -- SYNC and CLUSTER (pc_peerops.h).
 */
#include "pc_peerops.h"

#include "pc_loop.h"

void pc_peerops_sync(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (l->cluster == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "this node is not in a cluster");
        return;
    }
    pc_buf_t reply;
    pc_buf_init(&reply, 0);
    int rc = pc_cluster_sync(l->cluster, rq->body.ptr, rq->body.len, &reply);
    if (rc < 0) {
        pc_conn_answer_error(c, rq->op, rq->id, rc == PC_ENOMEM ? PC_ST_BUSY : PC_ST_BAD_REQUEST,
                             rc == PC_ENOMEM ? "out of memory" : "not a membership state");
    } else {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK,
                              .body = {reply.data, (uint32_t)reply.len}};
        pc_conn_answer(c, &resp);
    }
    pc_buf_free(&reply);
}

void pc_peerops_cluster(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (l->cluster == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "this node is not in a cluster");
        return;
    }
    const pc_cluster_member_t *ms;
    size_t n = pc_cluster_members(l->cluster, &ms);
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK,
                          .fingerprint = pc_cluster_fingerprint(l->cluster),
                          .replicas = pc_cluster_replicas(l->cluster),
                          .nmembers = (uint32_t)n, .members = ms};
    pc_conn_answer(c, &resp);
}
