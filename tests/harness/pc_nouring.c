/*
 * pc_nouring.c -- an LD_PRELOAD shim that makes a process a test starts
 * see a kernel that refuses io_uring, as a container's seccomp profile
 * does (io_uring_setup fails with EPERM): liburing's
 * io_uring_queue_init_params, which the node calls to make every ring,
 * returns -EPERM. Not for sanitizer builds, whose runtime must be
 * preloaded first.
 */
#include <errno.h>

struct io_uring;
struct io_uring_params;

int io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                               struct io_uring_params *p);

int io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                               struct io_uring_params *p)
{
    (void)entries;
    (void)ring;
    (void)p;
    return -EPERM;
}
