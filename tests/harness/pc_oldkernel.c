/*
 * pc_oldkernel.c -- an LD_PRELOAD shim that makes a process a test starts
 * see a kernel older than Linux 6.15: setsockopt(IPPROTO_TCP,
 * TCP_RTO_MIN_US) fails with ENOPROTOOPT, as it does there. Every other
 * setsockopt goes to the kernel unchanged. Not for sanitizer builds,
 * whose runtime must be preloaded first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's number (Linux 6.15's <linux/tcp.h>). */
#define TCP_RTO_MIN_US_OPT 45

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    if (level == IPPROTO_TCP && name == TCP_RTO_MIN_US_OPT) {
        errno = ENOPROTOOPT;
        return -1;
    }
    /* The system call itself, not libc's wrapper: that is this function. */
    return (int)syscall(SYS_setsockopt, fd, level, name, value, len);
}
