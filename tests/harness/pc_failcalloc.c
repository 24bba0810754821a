/*
 * pc_failcalloc.c -- an LD_PRELOAD shim for fault-injection tests: calloc
 * returns NULL (ENOMEM) while the file named by $PC_FAILCALLOC_FILE
 * exists. A file, not a signal, so that a test knows the failure is in
 * effect before it acts (it created the file). Slow -- a stat per calloc --
 * and meant only for processes a test starts. Not for sanitizer builds,
 * whose allocator must come first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>

extern void *__libc_calloc(size_t n, size_t size);

static const char *trigger;

__attribute__((constructor)) static void failcalloc_init(void)
{
    trigger = getenv("PC_FAILCALLOC_FILE");
}

void *calloc(size_t n, size_t size)
{
    struct stat st;
    if (trigger != NULL && stat(trigger, &st) == 0) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, size);
}
