/*
 * pc_unsent.h -- how much a client connection's socket may hold unsent in
 * the kernel (TCP_NOTSENT_LOWAT; pc_sock_set_unsent_max sets it, pc_conn
 * decides it here).
 *
 * At most the connection's output budget, so that a client that stops
 * reading costs its budget in the node and about as much in the kernel,
 * not up to net.ipv4.tcp_wmem's maximum. And at most what the client has
 * earned: a connection starts at PC_UNSENT_START, and its bound doubles
 * each time a write that found the socket full has gone out whole (the
 * client took a backlog), the way TCP earns its window. A client that
 * never reads never earns more, so its first large answer costs the node
 * PC_UNSENT_START of copying into the kernel, not its whole budget (1,000
 * such clients arriving at once had the loop copy 300 MiB into sockets
 * nobody read: docs/PERFORMANCE.md "A bound the client earns").
 *
 * Pure: the budget, what was earned and what is set come in as
 * arguments. No allocation, no errors.
 */
#ifndef PC_UNSENT_H
#define PC_UNSENT_H

#include <stddef.h>

#define PC_UNSENT_START (64 * 1024)

/*
 * The bound to set on the socket now, or 0 to leave `set` (what is set
 * now; 0 = nothing yet) as it is. `earned` 0 = nothing earned yet
 * (PC_UNSENT_START). The bound is min(budget, earned); it is set again when
 * the earned bound grows, or the budget has halved or doubled since: a
 * budget that moves less (a connection came or went) leaves it, as a
 * setsockopt each time would cost more than it saves.
 */
size_t pc_unsent_target(size_t set, size_t budget, size_t earned);

/* What the client has earned once it took one more backlog: twice
 * `earned` (0 = PC_UNSENT_START), until it has reached `max` (the largest
 * budget there can be, --max-output). */
size_t pc_unsent_earn(size_t earned, size_t max);

#endif
