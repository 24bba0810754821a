/*
 * pc_sock.c -- TCP options the node sets on its own sockets (pc_sock.h).
 */
#include "pc_sock.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __linux__
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "pc_addr.h"

/* Linux 6.15's <linux/tcp.h> has it; C library headers older than that
 * (Debian 12's) do not. The number is the kernel's ABI. */
#ifndef TCP_RTO_MIN_US
#define TCP_RTO_MIN_US 45
#endif
#endif

int pc_sock_set_rto_min(int fd, uint64_t rto_min_ms)
{
    if (rto_min_ms == 0)
        return 0;
    if (rto_min_ms > PC_SOCK_RTO_MIN_MAX_MS)
        return PC_ERANGE;
#ifdef __linux__
    int us = (int)(rto_min_ms * 1000);
    if (setsockopt(fd, IPPROTO_TCP, TCP_RTO_MIN_US, &us, sizeof us) == 0)
        return 0;
    if (errno == ENOPROTOOPT)
        return PC_ENOTSUP;
    return errno == EINVAL ? PC_ERANGE : PC_EIO;
#else
    /* Elsewhere the option number may mean something else entirely. */
    (void)fd;
    return PC_ENOTSUP;
#endif
}

uint64_t pc_sock_rto_min_us(int fd)
{
#ifdef __linux__
    int us = 0;
    socklen_t len = sizeof us;
    return getsockopt(fd, IPPROTO_TCP, TCP_RTO_MIN_US, &us, &len) == 0 && us > 0 ? (uint64_t)us
                                                                                : 0;
#else
    (void)fd;
    return 0;
#endif
}

int pc_sock_set_unsent_max(int fd, size_t bytes)
{
    if (bytes > INT_MAX)
        return PC_ERANGE;
#ifdef TCP_NOTSENT_LOWAT
    int v = (int)bytes;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v) == 0)
        return 0;
    return errno == ENOPROTOOPT ? PC_ENOTSUP : PC_EIO;
#else
    (void)fd;
    return PC_ENOTSUP;
#endif
}

int pc_sock_reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0 ? 0 : PC_EIO;
}

size_t pc_sock_unacked(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (size_t)n : 0;
}

size_t pc_sock_unread(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? (size_t)n : 0;
}

int pc_sock_rto_min_check(uint64_t *rto_min_ms, uint64_t *effective_us)
{
    if (rto_min_ms == NULL || effective_us == NULL || *rto_min_ms == 0 ||
        *rto_min_ms > PC_SOCK_RTO_MIN_MAX_MS)
        return PC_EINVAL;
#ifdef __linux__
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) /* a host without IPv4 */
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PC_EIO;
    /* The kernel's floor is two of its ticks, 20 ms at the coarsest
     * (HZ=100), and does not say which: walking up from the value asked
     * for takes at most that many tries, once. */
    uint64_t ms = *rto_min_ms;
    int rc;
    while ((rc = pc_sock_set_rto_min(fd, ms)) == PC_ERANGE && ms < PC_SOCK_RTO_MIN_MAX_MS)
        ms++;
    int err = errno;
    if (rc == 0) {
        uint64_t us = pc_sock_rto_min_us(fd);
        *rto_min_ms = ms;
        *effective_us = us > 0 ? us : ms * 1000;
    }
    close(fd);
    errno = err;
    return rc;
#else
    return PC_ENOTSUP;
#endif
}

int pc_sock_listen_addr(const char *addr, struct addrinfo **out, char *why, size_t whylen)
{
    char host[256], portstr[16];
    int port;
    *out = NULL;
    if (pc_addr_parse(addr, host, sizeof host, &port) < 0) {
        snprintf(why, whylen, "bad address '%s'", addr);
        return PC_EINVAL;
    }
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    int rc = getaddrinfo(host, portstr, &hints, out);
    if (rc != 0) {
        *out = NULL;
        snprintf(why, whylen, "%s: %s", addr, gai_strerror(rc));
        return PC_EIO;
    }
    return 0;
}
