/*
 * peercache_cli_top.c -- `peercache-cli top`: the cluster's members and
 * each one's counters, refreshed every second, until 'q' (or Ctrl-C).
 * The numbers and the frame are pc_top's; here are the terminal, the
 * clock and the connections: the seed client asks for the members, and
 * each member gets a seed-only client of its own for its STATS.
 */
#include "peercache_cli_top.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "pc_top.h"

#define REFRESH_MS 1000

typedef struct tnode {
    char *addr;
    pc_client_t *c;
    pc_top_sample_t prev, cur;
    char err[160];
    bool seen; /* a member at the last refresh */
} tnode_t;

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static tnode_t *node_for(tnode_t **nodes, size_t *n, const char *addr)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*nodes)[i].addr, addr) == 0)
            return &(*nodes)[i];
    }
    tnode_t *grown = realloc(*nodes, (*n + 1) * sizeof **nodes);
    if (grown == NULL)
        return NULL;
    *nodes = grown;
    tnode_t *t = &grown[(*n)++];
    memset(t, 0, sizeof *t);
    t->addr = strdup(addr);
    if (t->addr == NULL) {
        (*n)--;
        return NULL;
    }
    return t;
}

static void node_free(tnode_t *t)
{
    pc_client_free(&t->c);
    free(t->addr);
}

/* Reads t's STATS into t->cur (the last reading moves to t->prev). */
static void node_read(tnode_t *t, const char *token, int timeout_ms)
{
    t->prev = t->cur;
    memset(&t->cur, 0, sizeof t->cur);
    if (t->c == NULL) {
        pc_client_options_t o = {.nodes = t->addr, .timeout_ms = timeout_ms, .token = token,
                                 .no_ring = 1};
        int rc = pc_client_new(&o, &t->c);
        if (rc != 0) {
            snprintf(t->err, sizeof t->err, "%s", pc_strerror(rc));
            return;
        }
    }
    pc_stat_entry_t *st = NULL;
    size_t n = 0;
    int rc = pc_client_stats(t->c, &st, &n);
    if (rc != 0) {
        snprintf(t->err, sizeof t->err, "%s", pc_client_errmsg(t->c));
        return;
    }
    pc_top_sample_from_stats(st, n, now_ms(), &t->cur);
    pc_stats_free(st, n);
}

/* Waits until `until` (monotonic ms) for 'q' on in_fd. 1 = quit. */
static int wait_for_key(int in_fd, bool *in_open, uint64_t until)
{
    for (;;) {
        uint64_t now = now_ms();
        if (stop_signal != 0)
            return 1;
        if (now >= until)
            return 0;
        struct pollfd p = {.fd = in_fd, .events = POLLIN};
        int r = poll(&p, *in_open ? 1 : 0, (int)(until - now));
        if (r < 0 && errno != EINTR)
            return 1;
        if (r <= 0)
            continue;
        char buf[64];
        ssize_t got = read(in_fd, buf, sizeof buf);
        if (got <= 0) {
            *in_open = false; /* stdin ended (not a terminal): run until a signal */
            continue;
        }
        if (memchr(buf, 'q', (size_t)got) != NULL || memchr(buf, 'Q', (size_t)got) != NULL)
            return 1;
    }
}

int cli_top_run(pc_client_t *seed, const char *token, int timeout_ms)
{
    tnode_t *nodes = NULL;
    size_t nnodes = 0;
    int in_fd = STDIN_FILENO;
    bool in_open = true, tty_in = isatty(in_fd), tty_out = isatty(STDOUT_FILENO);
    struct termios saved;
    struct sigaction sa = {.sa_handler = on_stop_signal}; /* no SA_RESTART: poll wakes */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (tty_in && tcgetattr(in_fd, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO); /* keys one at a time, unechoed */
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(in_fd, TCSANOW, &raw);
    } else {
        tty_in = false;
    }
    if (timeout_ms > REFRESH_MS - 100)
        timeout_ms = REFRESH_MS - 100; /* a silent node must not stall the view */
    int status = 0;
    for (;;) {
        uint64_t start = now_ms();
        pc_cluster_info_t *ci = NULL;
        int rc = pc_client_cluster(seed, &ci);
        pc_buf_t frame;
        pc_buf_init(&frame, 0);
        char clock[16] = "";
        time_t wall = time(NULL);
        struct tm tm;
        if (localtime_r(&wall, &tm) != NULL)
            strftime(clock, sizeof clock, "%H:%M:%S", &tm);
        int width = 0;
        struct winsize ws;
        if (tty_out && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
            width = ws.ws_col;
        if (rc != 0) {
            char line[600];
            int n = snprintf(line, sizeof line, "peercache top: %s (q quits)\ncluster: %s\n",
                             clock, pc_client_errmsg(seed));
            pc_buf_append(&frame, line, (size_t)n);
        } else {
            pc_top_node_t *shown = calloc(ci->nmembers + 1, sizeof *shown);
            for (size_t i = 0; i < nnodes; i++)
                nodes[i].seen = false;
            size_t ns = 0;
            for (size_t i = 0; shown != NULL && i < ci->nmembers; i++) {
                const pc_client_member_t *m = &ci->members[i];
                tnode_t *t = node_for(&nodes, &nnodes, m->addr);
                if (t == NULL)
                    continue;
                t->seen = true;
                node_read(t, token, timeout_ms);
                pc_top_node_t *s = &shown[ns++];
                s->addr = t->addr;
                s->state = pc_client_member_state_name(m->state);
                s->error = t->err;
                s->cur = t->cur;
                pc_top_row(&t->prev, &t->cur, &s->row);
            }
            if (shown == NULL || pc_top_format(&frame, shown, ns, ci->fingerprint, clock,
                                               width) != 0)
                status = 2;
            free(shown);
            /* Members that left the view go, with their connections. */
            for (size_t i = 0; i < nnodes;) {
                if (nodes[i].seen) {
                    i++;
                    continue;
                }
                node_free(&nodes[i]);
                nodes[i] = nodes[--nnodes];
            }
        }
        pc_cluster_info_free(&ci);
        if (tty_out)
            fputs("\x1b[H\x1b[2J", stdout); /* home, clear */
        if (frame.len > 0)
            fwrite(frame.data, 1, frame.len, stdout);
        if (!tty_out)
            fputc('\n', stdout); /* frames apart in a file or a pipe */
        fflush(stdout);
        pc_buf_free(&frame);
        if (status != 0 || wait_for_key(in_fd, &in_open, start + REFRESH_MS))
            break;
    }
    if (tty_in)
        tcsetattr(in_fd, TCSANOW, &saved);
    for (size_t i = 0; i < nnodes; i++)
        node_free(&nodes[i]);
    free(nodes);
    return status;
}
