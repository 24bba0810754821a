/*
 * pc_sock.h -- TCP options the node sets on its own sockets: the one place
 * that sets them, for the client connections it accepts (pc_conns), its
 * connections to other members (pc_peer) and to Redis (pc_backend), so
 * that all three are set up alike.
 *
 * The retransmission timeout floor (--tcp-rto-min, docs/OPERATIONS.md
 * "Lost packets"): a connection that loses its only segment in flight --
 * the usual case for request/response traffic -- waits for the kernel's
 * retransmission timer, whose floor is 200 ms on Linux, two hundred LAN
 * round trips. Linux 6.15+ lets a socket lower it (TCP_RTO_MIN_US). The
 * kernel takes 2 of its clock ticks (8 ms at HZ=250) up to 200 ms, rounded
 * up to a tick, and refuses anything else with EINVAL; older kernels do
 * not know the option (ENOPROTOOPT).
 *
 * Errors: 0; PC_ENOTSUP (this kernel or platform has no such option);
 * PC_ERANGE (the kernel refuses the value); PC_EIO (another failure of
 * the system call; errno says which).
 *
 * A close that resets (pc_sock_reset_on_close), what a send queue
 * still holds (pc_sock_unacked) and what a receive queue holds unread
 * (pc_sock_unread).
 *
 * The most a client socket's kernel send queue holds unsent
 * (pc_sock_set_unsent_max; pc_conn keeps it at the connection's output
 * budget).
 *
 * It also resolves the HOST:PORT a listener binds to (pc_sock_listen_addr).
 *
 * Thread rules: none; system calls on the caller's sockets only.
 */
#ifndef PC_SOCK_H
#define PC_SOCK_H

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

/* The highest floor a socket may ask for: the kernel's own default
 * (TCP_RTO_MIN, 200 ms), which the option may only lower. */
#define PC_SOCK_RTO_MIN_MAX_MS 200

/* Sets the retransmission timeout floor of TCP socket fd to rto_min_ms
 * milliseconds. 0 = leave the kernel's: nothing is called, and 0 is
 * returned. */
int pc_sock_set_rto_min(int fd, uint64_t rto_min_ms);

/* The retransmission timeout floor TCP socket fd has now, in
 * microseconds; 0 if the kernel does not say (no such option). */
uint64_t pc_sock_rto_min_us(int fd);

/*
 * At start-up, before any connection: whether this kernel takes
 * *rto_min_ms (1..PC_SOCK_RTO_MIN_MAX_MS), tried on a scratch TCP socket.
 * One under the kernel's floor (two clock ticks) is raised in *rto_min_ms
 * to the least whole number of milliseconds it takes. *effective_us is
 * what the kernel then uses, read back (its clock tick rounds it up).
 * 0, PC_ENOTSUP, PC_ERANGE (not even the maximum is taken), PC_EIO; on
 * failure *rto_min_ms is not changed.
 */
int pc_sock_rto_min_check(uint64_t *rto_min_ms, uint64_t *effective_us);

/*
 * Bounds what TCP socket fd's kernel send queue holds unsent
 * (TCP_NOTSENT_LOWAT): once over `bytes`, the socket takes no more and
 * polls not writable until it is under again. What a client has not read
 * then waits in the node's own buffers, where it is counted and shed,
 * rather than in the kernel's, up to net.ipv4.tcp_wmem's maximum (4 MiB
 * by default) per socket. 0, PC_ERANGE (bytes over INT_MAX), PC_ENOTSUP,
 * PC_EIO.
 */
int pc_sock_set_unsent_max(int fd, size_t bytes);

/* Makes the next close() of fd a reset (SO_LINGER 0): the kernel sends
 * RST and frees what fd's send queue still holds, instead of delivering
 * it, or retrying, for as long as the other end lets it. 0 or PC_EIO. */
int pc_sock_reset_on_close(int fd);

/* Bytes written to TCP socket fd that the other end has not acknowledged
 * yet (SIOCOUTQ); 0 if the kernel does not say. */
size_t pc_sock_unacked(int fd);

/* Bytes that have come in on stream socket fd (TCP or Unix) and not been
 * read yet (FIONREAD); 0 if the kernel does not say. */
size_t pc_sock_unread(int fd);

/*
 * The address a listener on `addr` (HOST:PORT) binds to, resolved for a
 * passive TCP socket: 0 with *out (free it with freeaddrinfo), PC_EINVAL
 * (not HOST:PORT) or PC_EIO (the name does not resolve); then why[] says
 * so.
 */
int pc_sock_listen_addr(const char *addr, struct addrinfo **out, char *why, size_t whylen);

#endif
