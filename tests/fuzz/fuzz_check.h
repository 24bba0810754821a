/*
 * fuzz_check.h -- the fuzz targets' one assertion: a violated property
 * prints where and what, then abort()s, which libFuzzer reports as a
 * crash (and the corpus replayers as a failed test).
 */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
