/*
 * pc_route.c -- placement on the ring (pc_route.h).
 */
#include "pc_route.h"

void pc_route_place(const pc_ring_t *ring, long self, uint32_t slot, pc_route_t *rt)
{
    rt->slot = slot;
    rt->role = PC_ROLE_OWNER;
    rt->n = 0;
    if (ring == NULL)
        return;
    rt->n = pc_ring_slot_members(ring, slot, rt->at, PC_RING_MAX_REPLICAS);
    rt->role = rt->n == 0 ? PC_ROLE_OWNER : PC_ROLE_NONE; /* no ring: all ours */
    for (size_t i = 0; i < rt->n; i++) {
        if ((long)rt->at[i] == self) {
            rt->role = i == 0 ? PC_ROLE_OWNER : PC_ROLE_REPLICA;
            break;
        }
    }
}

unsigned pc_route_role(const pc_ring_t *ring, long self, uint32_t slot)
{
    if (ring == NULL || self < 0)
        return PC_ROLE_NONE;
    uint32_t at[PC_RING_MAX_REPLICAS];
    size_t n = pc_ring_slot_members(ring, slot, at, PC_RING_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++) {
        if ((long)at[i] == self)
            return i == 0 ? PC_ROLE_OWNER : PC_ROLE_REPLICA;
    }
    return PC_ROLE_NONE;
}

long pc_route_target(const pc_route_t *rt, long self, int read, pc_route_suspect_fn suspect,
                     const void *arg)
{
    if (rt->role == PC_ROLE_OWNER || rt->n == 0)
        return -1;
    if (!read || !suspect(arg, rt->at[0]))
        return rt->at[0];
    for (size_t i = 1; i < rt->n; i++) {
        if ((long)rt->at[i] == self)
            return -1; /* we are the replica to read from */
        if (!suspect(arg, rt->at[i]))
            return rt->at[i];
    }
    return rt->at[0];
}

#include "pc_proto.h"

static pc_route_action_t act(unsigned kind, long to)
{
    pc_route_action_t a = {.kind = kind, .hits_first = 0, .to = to};
    return a;
}

static int is_write(uint32_t op)
{
    return op == PC_OP_SET || op == PC_OP_DEL || op == PC_OP_TOUCH;
}

static int is_key_op(uint32_t op) { return op == PC_OP_GET || op == PC_OP_MGET || is_write(op); }

/* While homes are on, is the key's Redis traffic another loop's? */
static int foreign(const pc_route_facts_t *f)
{
    return f->homed && f->homes && f->home != f->index;
}

/* Where a key operation is served on this loop, by its ring. */
static pc_route_action_t serve(const pc_route_facts_t *f)
{
    if (f->op == PC_OP_MGET)
        return act(PC_ROUTE_SPLIT, -1);
    if (f->role != PC_ROLE_OWNER) {
        /* A GET that says `here` is a hedged read: its client asks this
         * node because the owner is slow to answer, so relaying it there
         * would wait on the very member it is meant to avoid. */
        if (f->hops == 0 && f->target >= 0 && !(f->here && f->op == PC_OP_GET))
            return act(PC_ROUTE_FORWARD, f->target);
        return act(is_write(f->op) ? PC_ROUTE_RETRY_RING : PC_ROUTE_SERVE_HERE, -1);
    }
    if (is_write(f->op) && f->has_backend && foreign(f))
        return act(PC_ROUTE_RETRY_HOME, -1);
    return act(PC_ROUTE_SERVE, -1);
}

pc_route_action_t pc_route_mget_key(const pc_route_facts_t *f)
{
    if (f->role == PC_ROLE_OWNER) {
        if (f->has_backend && foreign(f)) {
            pc_route_action_t a = act(PC_ROUTE_HOME, (long)f->home);
            a.hits_first = 1;
            return a;
        }
        return act(PC_ROUTE_SERVE, -1);
    }
    if (f->hops == 0 && f->target >= 0 && !f->here) /* `here`: as a GET's, in serve() */
        return act(PC_ROUTE_FORWARD, f->target);
    return act(PC_ROUTE_SERVE_HERE, -1);
}

pc_route_action_t pc_route_decide(const pc_route_facts_t *f)
{
    if (!is_key_op(f->op)) {
        switch (f->op) {
        case PC_OP_HELLO:
        case PC_OP_PING:
            return act(PC_ROUTE_SERVE, -1);
        case PC_OP_REPLICATE:
            if (f->core)
                return act(PC_ROUTE_SERVE, -1);
            return act(f->repl_write && f->homes ? PC_ROUTE_LOCAL : PC_ROUTE_CORE, -1);
        default: /* STATS, CLUSTER, SYNC, unknown ops: the core's */
            return act(f->core ? PC_ROUTE_SERVE : PC_ROUTE_CORE, -1);
        }
    }
    int ours = f->alone || f->owns; /* by the gate */
    if (f->hops > 0) { /* a member's FORWARD */
        if (f->several) {
            if (!f->homes) {
                if (!f->core)
                    return act(PC_ROUTE_CORE, -1);
            } else if (f->op != PC_OP_MGET && f->home != f->index && ours) {
                return act(PC_ROUTE_HOME, (long)f->home);
            }
        }
        return serve(f);
    }
    if (f->several && !f->sealed && f->homes) { /* home loops */
        if (f->op == PC_OP_MGET || !ours || f->home == f->index)
            return serve(f);
        pc_route_action_t a = act(PC_ROUTE_HOME, (long)f->home);
        a.hits_first = f->op == PC_OP_GET;
        return a;
    }
    if (!f->core) { /* a worker, homes off */
        if (f->sealed || f->relayed_writes)
            return act(PC_ROUTE_CORE, -1);
        if (f->op == PC_OP_GET) {
            if (!ours)
                return act(PC_ROUTE_CORE, -1);
            if (!f->has_backend)
                return act(PC_ROUTE_LOCAL, -1);
            pc_route_action_t a = act(PC_ROUTE_CORE, -1);
            a.hits_first = 1;
            return a;
        }
        if (f->op == PC_OP_MGET)
            return act(f->has_backend ? PC_ROUTE_CORE : PC_ROUTE_LOCAL, -1);
        return act(f->local_writes ? PC_ROUTE_LOCAL : PC_ROUTE_CORE, -1);
    }
    return serve(f);
}
