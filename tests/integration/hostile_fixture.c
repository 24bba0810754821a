/*
 * hostile_fixture.c -- the fixture of test_hostile.c and test_nonreaders.c
 * (hostile_fixture.h).
 */
#include "hostile_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

pc_h_proc_t redis;

void hostile_prelude(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    if (getenv("PC_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("PC_TEST_FILTER"));
}

void node_up(pc_h_proc_t *node, const char *first, ...)
{
    const char *args[32] = {"--redis", redis.addr, "--redis-timeout", "5000"};
    int n = 4;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    assert_int_equal(pc_h_node_start(node, args), 0);
}

void node_down(pc_h_proc_t *node)
{
    int st = pc_h_stop(node, SIGTERM, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    FILE *f = fopen(node->log, "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f))
        assert_null(strstr(line, "accounting is off"));
    fclose(f);
}

pc_client_t *client_for(const pc_h_proc_t *node, int timeout_ms)
{
    pc_client_options_t o = {.nodes = node->addr, .timeout_ms = timeout_ms};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void normal_key(const normal_t *nc, int i, char *k, size_t kn, char *v, size_t vn)
{
    snprintf(k, kn, "normal:%s:%d", nc->tag, i);
    snprintf(v, vn, "value %d of %s", i * 7919, nc->tag);
}

void normal_step(normal_t *nc)
{
    char k[64], v[64];
    assert_int_equal(pc_client_ping(nc->cl), 0);
    normal_key(nc, nc->nkeys, k, sizeof k, v, sizeof v);
    assert_int_equal(pc_client_set(nc->cl, k, strlen(k), v, strlen(v), NULL, NULL), 0);
    nc->nkeys++;
    for (int i = 0; i < nc->nkeys; i++) {
        normal_key(nc, i, k, sizeof k, v, sizeof v);
        pc_value_t got;
        assert_int_equal(pc_client_get(nc->cl, k, strlen(k), &got), 0);
        assert_int_equal(got.len, strlen(v));
        assert_memory_equal(got.data, v, got.len);
        pc_value_free(&got);
    }
}

int collect(void *arg, int i, const pc_response_t *r)
{
    seen_t *s = arg;
    assert_true(r->status <= PC_ST_MAX);
    if (i < 8) {
        s->status[i] = r->status;
        s->id[i] = r->id;
    }
    s->n = i + 1;
    return 0;
}

static int count_frames(const uint8_t *buf, size_t len)
{
    int n = 0;
    size_t off = 0;
    while (off + 4 <= len) {
        uint32_t fl = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
                      (uint32_t)buf[off + 2] << 8 | buf[off + 3];
        if (fl == 0 || fl > len - off - 4)
            return -1;
        off += 4 + (size_t)fl;
        n++;
    }
    return off == len ? n : -1;
}

void expect_closed(int fd, seen_t *s)
{
    static uint8_t got[256 * 1024];
    size_t n = 0;
    assert_int_equal(pc_h_wait_closed(fd, got, sizeof got, &n), 1);
    assert_true(n < sizeof got);
    int frames = count_frames(got, n);
    assert_true(frames >= 0);
    memset(s, 0, sizeof *s);
    assert_int_equal(pc_h_decode_responses(got, n, collect, s), frames);
}

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void latency(normal_t *nc, int n, const char *when, uint64_t *p50, uint64_t *p99)
{
    uint64_t *t = malloc((size_t)n * sizeof *t);
    char k[32], v[32];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "lat:%d", i / 2);
        snprintf(v, sizeof v, "v%d", i / 2);
        uint64_t t0 = now_us();
        if (i % 2 == 0) {
            assert_int_equal(pc_client_set(nc->cl, k, strlen(k), v, strlen(v), NULL, NULL), 0);
        } else {
            pc_value_t got;
            assert_int_equal(pc_client_get(nc->cl, k, strlen(k), &got), 0);
            assert_int_equal(got.len, strlen(v));
            assert_memory_equal(got.data, v, got.len);
            pc_value_free(&got);
        }
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    *p50 = t[n / 2];
    *p99 = t[n * 99 / 100];
    fprintf(stderr, "latency %s: p50 %llu us, p99 %llu us (%d round trips)\n", when,
            (unsigned long long)*p50, (unsigned long long)*p99, n);
    free(t);
}

int group_setup(void **state)
{
    (void)state;
    return pc_h_redis_start(&redis, 0);
}

int group_teardown(void **state)
{
    (void)state;
    pc_h_stop(&redis, SIGKILL, 5000);
    return 0;
}
