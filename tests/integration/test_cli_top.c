/*
 * test_cli_top.c -- `peercache-cli top` on a real terminal: tmux runs it
 * against a 2-node cluster with Redis behind, and the test reads the
 * screen (capture-pane) and types (send-keys), as a person at the
 * terminal would:
 *  - both members appear, alive, with Redis up and, under load, a 99th
 *    percentile;
 *  - stopping Redis turns both members' REDIS column to DOWN;
 *  - 'q' ends it.
 * tmux runs on a server socket of its own (-L), so nothing else of the
 * machine's is touched.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"

static char sock[64];      /* tmux -L */
static char screen[16384]; /* the last capture */

static int tmux(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tmux(const char *fmt, ...)
{
    char args[2048], cmd[2200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "tmux -L %s %s 2>&1", sock, args);
    return pc_h_run(cmd, screen, sizeof screen);
}

static int kill_tmux(void **state)
{
    (void)state;
    tmux("kill-server");
    return 0;
}

typedef struct watch {
    pc_client_t **c;       /* load on each node, so each has something to time */
    const char *want[5];   /* each must be on the screen */
    const char *twice;     /* on the screen at least twice, or NULL */
} watch_t;

static int screen_shows(void *arg)
{
    watch_t *w = arg;
    for (int i = 0; w->c != NULL && i < 100; i++) {
        pc_value_t v = {0};
        (void)pc_client_get(w->c[i % 2], "top:k", 5, &v);
        pc_value_free(&v);
    }
    if (tmux("capture-pane -p -t top") != 0)
        return 0;
    for (int i = 0; i < 5 && w->want[i] != NULL; i++) {
        if (strstr(screen, w->want[i]) == NULL)
            return 0;
    }
    const char *first = w->twice ? strstr(screen, w->twice) : NULL;
    return w->twice == NULL || (first != NULL && strstr(first + 1, w->twice) != NULL);
}

static int session_gone(void *arg)
{
    (void)arg;
    char out[256];
    char cmd[128];
    snprintf(cmd, sizeof cmd, "tmux -L %s has-session -t top 2>&1", sock);
    return pc_h_run(cmd, out, sizeof out) != 0;
}

static void test_top_on_a_terminal(void **state)
{
    (void)state;
    pc_h_proc_t redis, n0, n1;
    snprintf(sock, sizeof sock, "pc-top-%d", (int)getpid());
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    const char *a0[] = {"--redis", redis.addr, NULL};
    assert_int_equal(pc_h_node_start(&n0, a0), 0);
    const char *a1[] = {"--redis", redis.addr, "--join", n0.addr, NULL};
    assert_int_equal(pc_h_node_start(&n1, a1), 0);
    /* One client per node, not routed by the ring: the key's owner
     * answers its GETs, the other node relays them there, and both time
     * what they answer. */
    pc_client_t *c[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        pc_client_options_t o = {.nodes = i == 0 ? n0.addr : n1.addr, .timeout_ms = 2000,
                                 .no_ring = 1};
        assert_int_equal(pc_client_new(&o, &c[i]), 0);
    }
    assert_int_equal(pc_client_set(c[0], "top:k", 5, "v", 1, NULL, NULL), 0);

    assert_int_equal(tmux("new-session -d -s top -x 120 -y 24 \"'%s' --nodes %s top\"",
                          getenv("PC_CLI"), n0.addr),
                     0);
    /* Both members, alive, Redis up, and a 99th percentile under load;
     * and the loops' busy column. */
    char l0[96], l1[96];
    snprintf(l0, sizeof l0, "%-22s alive", n0.addr);
    snprintf(l1, sizeof l1, "%-22s alive", n1.addr);
    watch_t up = {c, {"peercache top: 2 members", l0, l1, " up ", " BUSY%"}, "<="};
    if (!pc_h_poll(screen_shows, &up, 20000))
        fail_msg("top never showed both members alive with Redis up and a p99:\n%s", screen);
    printf("# the screen:\n%s", screen);

    /* Redis stops: both say DOWN. */
    pc_h_stop(&redis, SIGTERM, 5000);
    watch_t down = {NULL, {l0, l1, NULL, NULL}, " DOWN "};
    if (!pc_h_poll(screen_shows, &down, 20000))
        fail_msg("top never showed Redis DOWN on both members:\n%s", screen);

    /* 'q' quits. */
    assert_int_equal(tmux("send-keys -t top q"), 0);
    if (!pc_h_poll(session_gone, NULL, 10000))
        fail_msg("top still runs 10 s after 'q'");

    pc_client_free(&c[0]);
    pc_client_free(&c[1]);
    assert_int_equal(pc_h_stop(&n1, SIGTERM, 15000), 0);
    assert_int_equal(pc_h_stop(&n0, SIGTERM, 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_top_on_a_terminal, kill_tmux),
    };
    return pc_h_finish(cmocka_run_group_tests_name("top", tests, NULL, NULL));
}
