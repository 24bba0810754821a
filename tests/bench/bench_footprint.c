/*
 * bench_footprint.c -- startup time, memory and binary size of peercached
 * next to memcached and redis-server.
 *
 *   bench_footprint [--smoke] [--runs N] [--conns N]
 *
 *   no option   20 start-ups per server, 1000 idle connections
 *   --smoke     3 start-ups, 100 connections; checks only that every
 *               figure came out (> 0), not the targets (ctest -L bench)
 *
 * Servers: peercached (--insecure --redis none; and --cluster-key with a
 * fresh key, --redis none), from $PC_PEERCACHED; memcached -U 0 (skipped
 * if not installed) and redis-server --save '' --appendonly no, from
 * $PC_MEMCACHED / $PC_REDIS_SERVER or the PATH (memcached gets -u nobody
 * when run as root, which it otherwise refuses). Each listens on a free
 * loopback port; other options are left at their defaults.
 *
 * What is measured, per server:
 *   start    fork+exec to the first successful TCP connect to its port.
 *            The connect is non-blocking and retried every 50 us, so the
 *            figure is at most ~50 us (plus scheduling) late. Median,
 *            minimum and maximum of the runs; each run kills the server
 *            (SIGKILL) and waits for it.
 *   idle     VmRSS (/proc/PID/status) once the server accepts and has
 *            settled: sampled every 10 ms until it is unchanged for
 *            200 ms (at most 3 s). The settle period is a deliberate wait:
 *            a server may still be faulting in pages after it starts to
 *            listen, and there is no event to wait for instead.
 *   conns    VmRSS with N idle connections, each of which has sent one
 *            ping (peercached PING, redis PING, memcached "version") and
 *            read its answer, so the server has accepted and touched
 *            every one; settled the same way.
 *   binary   size of a stripped copy of the executable (strip -o).
 *
 * Prints a table, then one JSON object on a line of its own. Exits non-zero
 * if a server fails to start or a figure is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pc_harness.h"
#include "pc_proto.h"
#include "pc_mbench.h"

#define MAX_RUNS 100
#define START_DEADLINE_MS 10000

enum kind { K_PEERCACHED, K_MEMCACHED, K_REDIS };

typedef struct server {
    const char *label;
    enum kind kind;
    const char *bin;  /* as given to exec (may be a bare name) */
    int keyed;        /* peercached: --cluster-key instead of --insecure */
    int skipped;      /* not installed */
    double start_ms[MAX_RUNS];
    int nstart;
    double start_med, start_min, start_max;
    long idle_kb, conns_kb;
    long binary_bytes;
} server_t;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The argument list for one server on port. Strings live in static
 * storage: one server runs at a time. */
static void server_argv(const server_t *sv, int port, const char **argv)
{
    static char listen[64], portstr[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(portstr, sizeof portstr, "%d", port);
    int n = 0;
    argv[n++] = sv->bin;
    switch (sv->kind) {
    case K_PEERCACHED:
        argv[n++] = "--listen";
        argv[n++] = listen;
        argv[n++] = "--redis";
        argv[n++] = "none";
        argv[n++] = "--max-conns-per-source"; /* every connection is from 127.0.0.1 */
        argv[n++] = "0";
        if (sv->keyed) {
            argv[n++] = "--cluster-key";
            argv[n++] = pc_h_cluster_key();
        } else {
            argv[n++] = "--insecure";
        }
        break;
    case K_MEMCACHED:
        argv[n++] = "-l";
        argv[n++] = "127.0.0.1";
        argv[n++] = "-p";
        argv[n++] = portstr;
        argv[n++] = "-U";
        argv[n++] = "0";
        if (geteuid() == 0) { /* memcached refuses to run as root without -u */
            argv[n++] = "-u";
            argv[n++] = "nobody";
        }
        break;
    case K_REDIS:
        argv[n++] = "--port";
        argv[n++] = portstr;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        break;
    }
    argv[n] = NULL;
}

/* fork+exec with stdout/stderr to log; the child dies with us. */
static pid_t spawn(const char *const *argv, const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/*
 * One non-blocking connect attempt to 127.0.0.1:port. On loopback the
 * answer is immediate (connected, or refused while nothing listens); an
 * EINPROGRESS is given 1 ms to complete. Returns the connected fd or -1.
 */
static int try_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&p, 1, 1) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0)
            return fd;
    }
    close(fd);
    return -1;
}

/* Starts sv on a free port and waits until it accepts. Returns the pid
 * (and the port, and the time from fork to the connect in ms), or -1. */
static pid_t start_server(const server_t *sv, int *port, double *ms)
{
    const char *argv[32];
    char log[600];
    *port = pc_h_free_port();
    if (*port <= 0)
        return -1;
    server_argv(sv, *port, argv);
    snprintf(log, sizeof log, "%s/%s.log", pc_h_tmpdir(), sv->label);
    double t0 = now_us();
    pid_t pid = spawn(argv, log);
    if (pid < 0)
        return -1;
    for (;;) {
        int fd = try_connect(*port);
        if (fd >= 0) {
            *ms = (now_us() - t0) / 1000.0;
            close(fd);
            return pid;
        }
        if (now_us() - t0 > START_DEADLINE_MS * 1000.0 || waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "bench_footprint: %s did not start (log: %s)\n", sv->label, log);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        sleep_us(50);
    }
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* VmRSS once it has been unchanged for 200 ms, sampled every 10 ms
 * (at most 3 s; then the last sample). */
static long settled_rss_kb(pid_t pid)
{
    long last = pc_h_rss_kb(pid);
    double stable_since = now_us(), t0 = stable_since;
    while (last > 0 && now_us() - stable_since < 200e3 && now_us() - t0 < 3e6) {
        sleep_us(10000);
        long kb = pc_h_rss_kb(pid);
        if (kb != last) {
            last = kb;
            stable_since = now_us();
        }
    }
    return last;
}

/* The bytes of one ping in the server's protocol. */
static size_t ping_bytes(enum kind kind, uint8_t *out, size_t cap)
{
    if (kind == K_REDIS) {
        memcpy(out, "PING\r\n", 6);
        return 6;
    }
    if (kind == K_MEMCACHED) {
        memcpy(out, "version\r\n", 9);
        return 9;
    }
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t rq = {.op = PC_OP_PING, .id = 1};
    size_t n = 0;
    if (pc_proto_encode_request(&b, &rq) == 0 && b.len <= cap) {
        memcpy(out, b.data, b.len);
        n = b.len;
    }
    pc_buf_free(&b);
    return n;
}

/*
 * Opens n connections, each sending one ping and reading (some of) its
 * answer; in batches of 50, so the listen backlog never overflows. The
 * fds go to fds[]; returns how many are open and answered.
 */
static int open_idle_conns(const server_t *sv, int port, int *fds, int n)
{
    uint8_t ping[64], buf[256];
    size_t plen = ping_bytes(sv->kind, ping, sizeof ping);
    if (plen == 0)
        return 0;
    int open = 0;
    while (open < n) {
        int batch = n - open < 50 ? n - open : 50;
        for (int i = 0; i < batch; i++) {
            int fd = pc_h_connect(port, 2000);
            if (fd < 0 || send(fd, ping, plen, MSG_NOSIGNAL) != (ssize_t)plen) {
                fprintf(stderr, "bench_footprint: %s: connection %d: %s\n", sv->label,
                        open + i, strerror(errno));
                if (fd >= 0)
                    close(fd);
                return open + i;
            }
            fds[open + i] = fd;
        }
        for (int i = 0; i < batch; i++) {
            if (recv(fds[open + i], buf, sizeof buf, 0) <= 0) {
                fprintf(stderr, "bench_footprint: %s: no answer on connection %d\n",
                        sv->label, open + i);
                for (int j = i; j < batch; j++)
                    close(fds[open + j]);
                return open + i;
            }
        }
        open += batch;
    }
    return open;
}

/* Absolute path of an executable named bare or with a path, or NULL. */
static const char *which(const char *bin, char *out, size_t cap)
{
    if (strchr(bin, '/') != NULL) {
        snprintf(out, cap, "%s", bin);
        return access(out, X_OK) == 0 ? out : NULL;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(out, cap, "%.*s/%s", (int)len, path, bin);
        if (len > 0 && access(out, X_OK) == 0)
            return out;
        path += len + (path[len] == ':');
    }
    return NULL;
}

static long stripped_size(const server_t *sv)
{
    char exe[600], copy[700], cmd[1600], out[64];
    if (which(sv->bin, exe, sizeof exe) == NULL)
        return -1;
    snprintf(copy, sizeof copy, "%s/stripped-%s", pc_h_tmpdir(), sv->label);
    snprintf(cmd, sizeof cmd, "strip -o '%s' '%s' 2>&1", copy, exe);
    if (pc_h_run(cmd, out, sizeof out) != 0)
        return -1;
    struct stat st;
    long size = stat(copy, &st) == 0 ? (long)st.st_size : -1;
    unlink(copy);
    return size;
}

static int measure(server_t *sv, int runs, int nconns)
{
    int port;
    double ms;
    for (int i = 0; i < runs; i++) {
        pid_t pid = start_server(sv, &port, &ms);
        if (pid < 0)
            return -1;
        sv->start_ms[sv->nstart++] = ms;
        if (i < runs - 1) {
            stop_server(pid);
            continue;
        }
        /* The last run stays up for the memory figures. */
        sv->idle_kb = settled_rss_kb(pid);
        int *fds = calloc((size_t)nconns, sizeof *fds);
        int open = fds ? open_idle_conns(sv, port, fds, nconns) : 0;
        sv->conns_kb = open == nconns ? settled_rss_kb(pid) : -1;
        for (int j = 0; j < open; j++)
            close(fds[j]);
        free(fds);
        stop_server(pid);
    }
    double sorted[MAX_RUNS];
    memcpy(sorted, sv->start_ms, (size_t)sv->nstart * sizeof sorted[0]);
    qsort(sorted, (size_t)sv->nstart, sizeof sorted[0], pc_mbench_cmp_double);
    sv->start_min = sorted[0];
    sv->start_max = sorted[sv->nstart - 1];
    sv->start_med = sv->nstart % 2 ? sorted[sv->nstart / 2]
                                   : (sorted[sv->nstart / 2 - 1] + sorted[sv->nstart / 2]) / 2;
    sv->binary_bytes = stripped_size(sv);
    return 0;
}

/* Raise the open file limit: the idle connections need nconns fds here,
 * and the servers inherit the limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    int runs = 20, nconns = 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            runs = 3;
            nconns = 100;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            nconns = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--smoke] [--runs N] [--conns N]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || nconns < 1 || nconns > 100000) {
        fprintf(stderr, "bench_footprint: --runs 1..%d, --conns 1..100000\n", MAX_RUNS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    const char *pcd = getenv("PC_PEERCACHED");
    const char *mcd = getenv("PC_MEMCACHED");
    const char *rds = getenv("PC_REDIS_SERVER");
    server_t servers[] = {
        {.label = "peercached", .kind = K_PEERCACHED, .bin = pcd ? pcd : "peercached"},
        {.label = "peercached-key", .kind = K_PEERCACHED, .bin = pcd ? pcd : "peercached",
         .keyed = 1},
        {.label = "memcached", .kind = K_MEMCACHED, .bin = mcd ? mcd : "memcached"},
        {.label = "redis-server", .kind = K_REDIS, .bin = rds ? rds : "redis-server"},
    };
    size_t nserv = sizeof servers / sizeof servers[0];
    int failed = 0;
    char path[600];
    for (size_t i = 0; i < nserv; i++) {
        server_t *sv = &servers[i];
        if (which(sv->bin, path, sizeof path) == NULL) {
            if (sv->kind == K_MEMCACHED) {
                sv->skipped = 1;
                fprintf(stderr, "bench_footprint: memcached not found: skipped\n");
                continue;
            }
            fprintf(stderr, "bench_footprint: %s not found\n", sv->bin);
            failed = 1;
            continue;
        }
        if (measure(sv, runs, nconns) < 0 || sv->start_min <= 0 || sv->idle_kb <= 0 ||
            sv->conns_kb <= 0 || sv->binary_bytes <= 0) {
            fprintf(stderr, "bench_footprint: %s: a figure is missing\n", sv->label);
            failed = 1;
        }
    }

    printf("%d start-ups each, %d idle connections\n", runs, nconns);
    printf("%-16s %10s %10s %10s %10s %12s %12s\n", "server", "start ms", "min", "max",
           "idle KiB", "conns KiB", "binary B");
    for (size_t i = 0; i < nserv; i++) {
        const server_t *sv = &servers[i];
        if (sv->skipped || sv->nstart == 0)
            continue;
        printf("%-16s %10.2f %10.2f %10.2f %10ld %12ld %12ld\n", sv->label, sv->start_med,
               sv->start_min, sv->start_max, sv->idle_kb, sv->conns_kb, sv->binary_bytes);
    }
    printf("{\"runs\":%d,\"conns\":%d,\"servers\":[", runs, nconns);
    int first = 1;
    for (size_t i = 0; i < nserv; i++) {
        const server_t *sv = &servers[i];
        if (sv->skipped || sv->nstart == 0)
            continue;
        printf("%s{\"name\":\"%s\",\"start_ms_median\":%.3f,\"start_ms_min\":%.3f,"
               "\"start_ms_max\":%.3f,\"idle_rss_kb\":%ld,\"conns_rss_kb\":%ld,"
               "\"stripped_bytes\":%ld}",
               first ? "" : ",", sv->label, sv->start_med, sv->start_min, sv->start_max,
               sv->idle_kb, sv->conns_kb, sv->binary_bytes);
        first = 0;
    }
    printf("]}\n");
    return pc_h_finish(failed);
}
