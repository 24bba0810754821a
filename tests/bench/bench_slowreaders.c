/*
 * bench_slowreaders.c -- what clients that stop reading cost everyone else.
 *
 *   bench_slowreaders [--conns N[,N...]] [--kinds K[,K...]] [--seconds S]
 *                     [--cycles N] [--pin [--probe-on-node]] [--client-buf B]
 *                     [--hold MB] [--no-idle] [--smoke] [--json]
 *
 *   no option   kinds get,ping,unauth x conns 100,1000; 10 s phases
 *   --smoke     kind get, 50 connections, 2 s phases; checks only that
 *               every figure came out (ctest -L bench)
 *   --pin       the node on CPU 0, started there, this process -- the
 *               probe and the hostile clients -- on CPU 1, so that what
 *               the probe sees is the node's doing, not the generator
 *               competing with it for a core; there the hostile clients'
 *               thread runs at nice 19, so that the probe does not wait
 *               for CPU 1 behind it either, and the probe runs at
 *               SCHED_FIFO, so that it takes CPU 1 the moment it wakes
 *               (as root; else it warns). A node started on one CPU
 *               runs one loop unless PEERCACHE_THREADS says otherwise
 *               (its default is the CPUs it may use): two loops on one
 *               core take turns at the kernel scheduler's pace, and a
 *               request waits for the other loop's time slice
 *   --probe-on-node  with --pin, the probe on CPU 0, the node's, still
 *               at SCHED_FIFO: the hostile clients' thread alone on CPU 1.
 *               On CPU 1 the probe waits for that thread's system calls,
 *               which this kernel does not preempt (CONFIG_PREEMPT_NONE):
 *               under 1,000 PING floods its sends went out up to 0.48 ms
 *               late and it read the answers up to 0.38 ms after the node
 *               had written them (p99s; 0.16 and 0.09 ms alone), more
 *               than the node itself made it wait (docs/PERFORMANCE.md
 *               "Where a probe's time goes"). On CPU 0 it waits only for
 *               the node's own work, as a client on another host would;
 *               it takes the CPU from the node whenever it wakes
 *   --cycles N  N floods, each followed by S seconds alone again (the
 *               first 2 s of those not counted: the node settling), so
 *               that `before` and `during` are interleaved over the run
 *               and a noisy minute on a shared host falls on both; the
 *               figures pool every `before` and every `during` window,
 *               and `med x` is the median over the floods of each one's
 *               p99 during over the p99 of the time alone just before it
 *               (each flood's pair printed on a line below; 1 to 64).
 *               Default 1: before, during, after, as below
 *   --no-idle   hold /dev/cpu_dma_latency at 0 for the run (a PM QoS
 *               request, as cyclictest makes; root only): no CPU enters
 *               an idle state it takes time to leave. In a virtual
 *               machine an idle CPU halts, and the host may take
 *               milliseconds to run it again when the probe's timer or
 *               answer comes; a node busy with a flood never halts, one
 *               alone does. Under `spin` (below) the probe's p99 moved
 *               by 1.4-1.5x (median over 12 floods) with no traffic to
 *               the node at all: that is the host's doing, and with
 *               --no-idle it is left out of both sides of the ratio
 *   --client-buf B  each hostile connection's send and receive buffers
 *               (SO_SNDBUF, SO_RCVBUF, set before it connects), in bytes;
 *               default the kernel's (autotuned up to net.ipv4.tcp_wmem's
 *               and tcp_rmem's maxima). On loopback both ends of every
 *               socket are this host's: a small B stands for remote
 *               clients, whose buffers are on their own host, and leaves
 *               this host's TCP memory to what the node holds
 *
 * One scenario: a memory-only peercached (--insecure --redis none, every
 * other limit at its default; --threads from PEERCACHE_THREADS or the
 * node's default, the number of CPUs it may use; the `loops` column) holding a 100-byte key and a 1 MiB key. A probe client
 * on a connection of its own sends GETs of the small key at 200/s, open
 * loop: each GET has an intended send time, and its latency counts from
 * then, so a stalled node shows up in full. Three phases of S seconds:
 *
 *   before   the probe alone
 *   during   N hostile connections that send requests and never read,
 *            each closed and opened again every 9 s (as the outside test
 *            did, so that no output timeout ever catches them): all open
 *            at once as the phase begins, and the first time each is
 *            closed is spread over those 9 s, so that later they come
 *            and go evenly, not all at one moment; and every
 *            500 ms a new connection that sends PING and wants its answer
 *            within 2 s (accepted / refused with BUSY / stalled). The
 *            probe and the newcomers connect from 127.0.0.2, the hostile
 *            connections from 127.0.0.1: other clients, as far as the
 *            node's per-address limit is concerned
 *   after    the hostile connections gone; the probe alone again
 *
 * Kinds of hostile connection:
 *   get     pipelines 400 GETs of the 1 MiB key (400 MiB of answers)
 *   ping    pipelines PINGs for as long as the node reads them
 *   unauth  the node requires a token (--token-file); the connection
 *           never sends HELLO and pipelines GETs, each answered
 *           AUTH_REQUIRED, for as long as the node reads them
 *   spin    the control (only when asked for): no connection at all, the
 *           thread that would run them busy on its CPU, so that what a
 *           busy machine does to the probe without the node's doing
 *           shows beside the others (conns ignored)
 *   spin0   the control for the node's own CPU (with --pin only): no
 *           connection either, a thread busy on CPU 0 beside the node
 *           at SCHED_IDLE, which the node and the probe preempt the
 *           moment they wake. The node has nothing more to do; what
 *           changes is that its CPU never idles: the kernel's tick runs
 *           on it (every 4 ms at HZ=250) and the host sees a virtual CPU
 *           that is always busy. What the probe loses to that is no
 *           work of the node's, and a flood pays it too
 *   hold    as spin0, and the thread holds 256 MiB (the node's default
 *           --max-buffer-memory; --hold MB to change) resident, writing
 *           a byte of each page in turn: what the machine charges
 *           everyone on it for memory held, with no work of the node's.
 *           On the virtual machine of docs/PERFORMANCE.md "What memory
 *           held costs here", the probe's p99 went from about 0.2 ms to
 *           2.1 ms with 256 MiB held and to 10 ms with 1 GiB, in stalls
 *           of the whole machine; under 1,000 PING floods the node (up
 *           to its cap) and the kernel's socket buffers at both ends
 *           hold more
 *
 * Figures per scenario: the probe's p50 / p99 / max in each phase and p99
 * during over p99 before (`p99 x`; `med x` with --cycles, above); new
 * connections served / refused / stalled; the node's RSS before, at its
 * highest during (sampled every 100 ms) and at the end of `after`, and its
 * STATS buffer_memory at its highest (sampled with it); the kernel's TCP
 * memory (/proc/net/sockstat) at its highest, and over the `during` phase
 * how long it was under memory pressure (TcpExt TCPMemoryPressuresChrono,
 * ms) and how many retransmission timeouts the host's TCP took
 * (TCPTimeouts): over net.ipv4.tcp_mem's pressure mark the kernel drops
 * segments, of the probe's connection too, and a resend waits for the
 * timeout -- host-wide figures, both ends of every loopback socket; STATS
 * buffer_evictions, buffer_full_rejects, output_timeouts; and, over the
 * `during` phase, how busy the node's loops were (loop_busy_us over their
 * wall time) and their mean work per iteration (loop_busy_us /
 * loop_iterations), which is about what a request waits before it is read.
 * The load generator runs in this process on the same machine: read ratios,
 * not absolutes.
 *
 * SLOW_TRACE=MS in the environment prints every probe answer that came
 * more than MS ms late, with its intended send time (from the probe's
 * start, and as CLOCK_MONOTONIC seconds, "mono", to find it in a
 * `perf record -k CLOCK_MONOTONIC` or the node's own timestamps), and
 * when each flood starts and ends, on the same clock.
 *
 * Exits non-zero if the node fails to start or stop, or a figure is
 * missing; the targets themselves are printed, never checked (timing on a
 * shared machine is measured, not asserted: tests/integration/test_hostile
 * checks what can be checked exactly).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pc_harness.h"
#include "pc_proto.h"
#include "pc_mbench.h"

#define PROBE_RATE 200
#define MAX_SAMPLES 200000
#define RECONNECT_MS 9000
/* The probe and the newcomers stand for other clients: from another
 * address than the hostile connections' 127.0.0.1, so that the node's
 * per-address limit (--max-conns-per-source) does not count them with the
 * crowd (with 1,000 hostile connections reconnecting, it briefly did). */
#define OTHER_CLIENT "127.0.0.2"
#define NEWCONN_EVERY_MS 500
#define SETTLE_MS 2000 /* --cycles: not counted after each flood */
#define TOKEN "slowreaders-token"

enum kind { K_GET, K_PING, K_UNAUTH, K_SPIN, K_SPIN0, K_HOLD, NKINDS };
static const char *const KIND_NAMES[NKINDS] = {"get", "ping", "unauth", "spin", "spin0", "hold"};
/* kind hold: what it keeps resident (--hold MB); the default is the
 * node's default --max-buffer-memory */
static size_t hold_bytes = (size_t)256 << 20;
enum phase { P_BEFORE, P_DURING, P_AFTER, NPHASES, P_SETTLE = NPHASES /* not counted */ };
static const char *const PHASE_NAMES[NPHASES] = {"before", "during", "after"};

typedef struct lat {
    double *v;
    uint8_t *flood; /* v[i] was taken before or during flood flood[i] */
    size_t n;
} lat_t;

#define MAX_CYCLES 64

typedef struct probe {
    pthread_t tid;
    int port;
    int token;
    atomic_int phase;
    atomic_int flood; /* the flood under way, or the next one */
    atomic_int stop;
    lat_t lat[NPHASES];
    long errors;
} probe_t;

typedef struct result {
    enum kind kind;
    int conns;
    double p50[NPHASES], p99[NPHASES], max[NPHASES];
    /* --cycles: p99 before and during each flood, and the median of the
     * floods' ratios (with one flood, the same as p99 during / before) */
    double flood_p99[2][MAX_CYCLES], med_ratio;
    int cycles;
    int served, refused, stalled;
    long rss_before_kb, rss_max_kb, rss_after_kb;
    long long bufmem_max; /* STATS buffer_memory at its highest (sampled) */
    long tcp_mem_max_kb;
    long long tcp_pressure_ms, tcp_timeouts; /* over `during`, host-wide */
    long long evictions, full_rejects, output_timeouts;
    long probe_errors;
    /* The node's loops during the hostile phase (STATS loop_busy_us,
     * loop_iterations, threads): the share of their time they worked, and
     * the mean work per iteration -- what a request waits to be read. */
    double busy_pct, iter_us;
    int loops; /* STATS threads */
} result_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until(double t)
{
    double d = t - now_ms();
    if (d <= 0)
        return;
    struct timespec ts = {(time_t)(d / 1000), (long)((d - (double)(time_t)(d / 1000) * 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

static double pct(lat_t *l, double p)
{
    if (l->n == 0)
        return -1;
    qsort(l->v, l->n, sizeof *l->v, pc_mbench_cmp_double);
    size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->v[i];
}

/* The p-th percentile of the samples of l taken before or during flood f
 * (l->v is not reordered), or -1 if there are none. */
static double pct_flood(const lat_t *l, int f, double p)
{
    lat_t sub = {.v = malloc((l->n ? l->n : 1) * sizeof(double)), .n = 0};
    for (size_t i = 0; sub.v != NULL && i < l->n; i++)
        if (l->flood[i] == f)
            sub.v[sub.n++] = l->v[i];
    double r = sub.v != NULL ? pct(&sub, p) : -1;
    free(sub.v);
    return r;
}

/* ---- raw protocol helpers --------------------------------------------------- */

static int send_req(int fd, const pc_request_t *rq)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    int rc = pc_proto_encode_request(&b, rq) == 0 ? pc_h_send_all(fd, &b) : -1;
    pc_buf_free(&b);
    return rc;
}

static int want_ok(void *arg, int index, const pc_response_t *r)
{
    (void)index;
    *(int *)arg = r->status;
    return 0;
}

/* One request, one answer (blocking, the socket's timeout): its status,
 * or -1. */
static int call(int fd, const pc_request_t *rq)
{
    int st = -1;
    if (send_req(fd, rq) != 0 || pc_h_read_responses(fd, 1, want_ok, &st) != 1)
        return -1;
    return st;
}

static int hello(int fd, int token)
{
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = PC_PROTO_VERSION};
    if (token)
        h.token = (pc_bytes_t){(const uint8_t *)TOKEN, sizeof TOKEN - 1};
    return call(fd, &h) == PC_ST_OK ? 0 : -1;
}

/* ---- the probe ------------------------------------------------------------- */

static int pin = 0; /* --pin: the node on CPU 0, this process on CPU 1 */
static int no_idle = 0; /* --no-idle */
static int probe_on_node = 0; /* --probe-on-node: the probe on CPU 0 */

static void pin_to(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(pid, sizeof set, &set) != 0)
        perror("bench_slowreaders: sched_setaffinity");
}

static void *probe_main(void *arg)
{
    probe_t *p = arg;
    /* With --pin the probe shares CPU 1 with the hostile clients' thread,
     * and nice 19 there was not enough: that thread runs out its time
     * slice before a waking probe gets the core (on this kernel's
     * scheduler), and 1% of the probe's wake-ups waited 3.5 ms or more
     * (perf sched, 1,000 PING floods). A client on another host would not
     * wait for our load generator at all: the probe takes the core at
     * once (SCHED_FIFO, root only; else it says so and goes on). */
    struct sched_param sp = {.sched_priority = 1};
    if (pin && sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
        perror("bench_slowreaders: the probe at SCHED_FIFO (so CPU 1's queue counts)");
    if (probe_on_node)
        pin_to(0, 0); /* this thread only */
    int fd = pc_h_connect_from(OTHER_CLIENT, p->port, 10000);
    if (fd < 0 || hello(fd, p->token) != 0) {
        p->errors++;
        return NULL;
    }
    pc_request_t get = {.op = PC_OP_GET, .key = {(const uint8_t *)"small", 5}};
    double t0 = now_ms();
    for (uint64_t i = 0; !atomic_load(&p->stop); i++) {
        double intended = t0 + (double)i * (1000.0 / PROBE_RATE);
        sleep_until(intended);
        int ph = atomic_load(&p->phase);
        get.id = i + 2;
        double sent_at = now_ms();
        if (call(fd, &get) != PC_ST_OK) {
            p->errors++;
            close(fd);
            fd = pc_h_connect_from(OTHER_CLIENT, p->port, 10000);
            if (fd < 0 || hello(fd, p->token) != 0)
                break;
            continue;
        }
        double took = now_ms() - intended;
        lat_t *l = ph == P_SETTLE ? NULL : &p->lat[ph];
        if (l != NULL && l->n < MAX_SAMPLES) {
            l->flood[l->n] = (uint8_t)atomic_load(&p->flood);
            l->v[l->n++] = took;
        }
        if (getenv("SLOW_TRACE") && took > atof(getenv("SLOW_TRACE")))
            fprintf(stderr,
                    "probe: %.0f ms late at %.0f ms (sent %.0f ms late, answered in %.0f ms) "
                    "mono %.3f\n",
                    took, intended - t0, sent_at - intended, now_ms() - sent_at, intended / 1e3);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* ---- the hostile connections ------------------------------------------------ */

typedef struct hostile {
    pthread_t tid;
    int port;
    enum kind kind;
    int n;
    atomic_int stop;
} hostile_t;

typedef struct hconn {
    int fd;
    double opened;
    double life; /* ms from opened to the next reopening */
    size_t sent; /* bytes sent: of the one-off payload (get), or of the block */
} hconn_t;

static int client_buf = 0; /* --client-buf; 0 = the kernel's */

/* A hostile connection to the node (its buffers --client-buf), or -1. */
static int hconn_open(int port)
{
    if (client_buf == 0)
        return pc_h_connect(port, 1000); /* sends are MSG_DONTWAIT */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    /* before connect: the window it advertises is scaled by it */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &client_buf, sizeof client_buf) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &client_buf, sizeof client_buf) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *hostile_main(void *arg)
{
    hostile_t *h = arg;
    /* With --pin the probe shares CPU 1 with this thread: the lowest
     * priority here, so that the probe's own wait for the core is not
     * counted as the node's (its send was 1-14 ms late at times). */
    if (pin && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
        perror("bench_slowreaders: setpriority");
    if (h->kind == K_SPIN0 || h->kind == K_HOLD) {
        /* the node's CPU busy, at the class that yields to anyone */
        struct sched_param idle = {.sched_priority = 0};
        pin_to(0, 0);
        if (sched_setscheduler(0, SCHED_IDLE, &idle) != 0)
            perror("bench_slowreaders: the control at SCHED_IDLE");
    }
    if (h->kind == K_HOLD) {
        uint8_t *mem = malloc(hold_bytes);
        if (mem == NULL) {
            perror("bench_slowreaders: hold");
            return NULL;
        }
        memset(mem, 1, hold_bytes);
        for (size_t i = 0; !atomic_load(&h->stop); i = (i + 4096) % hold_bytes)
            ((volatile uint8_t *)mem)[i]++;
        free(mem);
        return NULL;
    }
    if (h->kind == K_SPIN || h->kind == K_SPIN0) {
        /* the control: this thread busy, the node left alone */
        volatile uint64_t x = 0;
        while (!atomic_load(&h->stop))
            for (int i = 0; i < 100000; i++)
                x = x + (uint64_t)i;
        return NULL;
    }
    hconn_t *c = calloc((size_t)h->n, sizeof *c);
    /* get: 400 GETs of the big key, sent once per connection. ping and
     * unauth: a block of requests sent again and again while the node
     * takes them. */
    pc_buf_t once, flood;
    pc_buf_init(&once, 0);
    pc_buf_init(&flood, 0);
    for (int i = 0; i < 400; i++) {
        pc_request_t g = {.op = PC_OP_GET, .id = (uint64_t)i + 1,
                          .key = {(const uint8_t *)"big", 3}};
        pc_proto_encode_request(&once, &g);
    }
    for (int i = 0; i < 1024; i++) {
        pc_request_t r = {.op = h->kind == K_PING ? PC_OP_PING : PC_OP_GET, .id = (uint64_t)i + 1,
                          .key = {(const uint8_t *)"small", 5}};
        pc_proto_encode_request(&flood, &r);
    }
    const pc_buf_t *payload = h->kind == K_GET ? &once : &flood;
    struct pollfd *pf = calloc((size_t)h->n, sizeof *pf);
    double start = now_ms();
    for (int i = 0; i < h->n; i++) {
        c[i].fd = -1;
        c[i].opened = start - RECONNECT_MS; /* all due now */
        c[i].life = 0;
    }
    while (!atomic_load(&h->stop)) {
        double now = now_ms();
        int npf = 0;
        for (int i = 0; i < h->n; i++) {
            if (now - c[i].opened >= c[i].life) {
                if (c[i].fd >= 0)
                    close(c[i].fd);
                /* The first life is staggered, so that they do not all
                 * reconnect at one moment ever after. */
                c[i].life = c[i].fd < 0 && c[i].life == 0
                                ? (double)RECONNECT_MS * (i + 1) / h->n
                                : RECONNECT_MS;
                c[i].fd = hconn_open(h->port);
                c[i].opened = now;
                c[i].sent = 0;
            }
            if (c[i].fd < 0)
                continue;
            int more = h->kind != K_GET || c[i].sent < payload->len;
            if (more) {
                pf[npf].fd = c[i].fd;
                pf[npf].events = POLLOUT;
                npf++;
            }
        }
        if (npf == 0 || poll(pf, (nfds_t)npf, 50) <= 0) {
            if (npf == 0)
                sleep_until(now_ms() + 50);
            continue;
        }
        for (int k = 0, i = 0; k < npf; k++) {
            if (!(pf[k].revents & POLLOUT))
                continue;
            while (i < h->n && c[i].fd != pf[k].fd)
                i++;
            if (i == h->n)
                break;
            /* The flood kinds send their block again and again: from
             * where the last send stopped, so that the stream stays whole
             * frames (from the block's start after a short send, it was
             * cut mid-frame, and the node read garbage lengths). */
            size_t off = c[i].sent % payload->len;
            ssize_t w = send(c[i].fd, payload->data + off, payload->len - off,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                c[i].sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                close(c[i].fd); /* closed by the node: open again next round */
                c[i].fd = -1;
            }
        }
    }
    for (int i = 0; i < h->n; i++)
        if (c[i].fd >= 0)
            close(c[i].fd);
    free(c);
    free(pf);
    pc_buf_free(&once);
    pc_buf_free(&flood);
    return NULL;
}

/* ---- node-side figures ---------------------------------------------------- */

static long tcp_mem_kb(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    char line[256];
    long pages = -1;
    while (f && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, " mem ");
        if (strncmp(line, "TCP:", 4) == 0 && m)
            pages = strtol(m + 5, NULL, 10);
    }
    if (f)
        fclose(f);
    return pages < 0 ? -1 : pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* TcpExt counter `name` of /proc/net/netstat (a header line of names,
 * then one of values), or -1. */
static long long tcp_ext(const char *name)
{
    FILE *f = fopen("/proc/net/netstat", "r");
    static char names[8192], vals[8192];
    long long v = -1;
    while (f && fgets(names, sizeof names, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *sn = NULL, *sv = NULL;
        char *n = strtok_r(names + 7, " \n", &sn), *x = strtok_r(vals + 7, " \n", &sv);
        for (; n && x; n = strtok_r(NULL, " \n", &sn), x = strtok_r(NULL, " \n", &sv))
            if (strcmp(n, name) == 0)
                v = strtoll(x, NULL, 10);
    }
    if (f)
        fclose(f);
    return v;
}

typedef struct statq {
    const char *name;
    long long v;
} statq_t;

static int on_stats(void *arg, int index, const pc_response_t *r)
{
    statq_t *q = arg;
    (void)index;
    for (; q->name; q++)
        for (uint32_t i = 0; i < r->nstats; i++)
            if (r->stats[i].name.len == strlen(q->name) &&
                memcmp(r->stats[i].name.ptr, q->name, r->stats[i].name.len) == 0)
                q->v = r->stats[i].value;
    return 0;
}

static int stats(int port, int token, statq_t *q)
{
    int fd = pc_h_connect_from(OTHER_CLIENT, port, 5000);
    if (fd < 0 || hello(fd, token) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    pc_request_t st = {.op = PC_OP_STATS, .id = 7};
    int ok = send_req(fd, &st) == 0 && pc_h_read_responses(fd, 1, on_stats, q) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* A new connection's PING: 0 served, 1 refused (BUSY), 2 no answer in 2 s. */
static int newconn(int port, int token)
{
    int fd = pc_h_connect_from(OTHER_CLIENT, port, 2000);
    if (fd < 0)
        return 2;
    int res = 2;
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = PC_PROTO_VERSION};
    if (token)
        h.token = (pc_bytes_t){(const uint8_t *)TOKEN, sizeof TOKEN - 1};
    int st = call(fd, &h);
    if (st == PC_ST_OK)
        res = 0;
    else if (st == PC_ST_BUSY)
        res = 1;
    close(fd);
    return res;
}

/* ---- one scenario --------------------------------------------------------- */

static int run(enum kind kind, int conns, int seconds, int cycles, result_t *res)
{
    memset(res, 0, sizeof *res);
    res->kind = kind;
    res->conns = conns;
    int token = kind == K_UNAUTH;
    char tokfile[512];
    snprintf(tokfile, sizeof tokfile, "%s/slowreaders.token", pc_h_tmpdir());
    if (token) {
        FILE *f = fopen(tokfile, "w");
        if (f == NULL)
            return -1;
        fprintf(f, "%s\n", TOKEN);
        fclose(f);
        chmod(tokfile, 0600);
    }
    const char *args_plain[] = {"--insecure", "--redis", "none", NULL};
    const char *args_tok[] = {"--insecure", "--redis", "none", "--token-file", tokfile, NULL};
    pc_h_proc_t node;
    if (pin) /* the node is started from here: on CPU 0 from its start */
        pin_to(0, 0);
    int started = pc_h_node_start(&node, token ? args_tok : args_plain);
    if (pin)
        pin_to(0, 1); /* this thread; the probe and the flood inherit it */
    if (started != 0)
        return -1;
    int fd = pc_h_connect(node.port, 5000);
    if (fd < 0 || hello(fd, token) != 0)
        return -1;
    size_t big = 1024 * 1024;
    uint8_t *val = malloc(big);
    memset(val, 'b', big);
    pc_request_t s1 = {.op = PC_OP_SET, .id = 2, .key = {(const uint8_t *)"small", 5},
                       .value = {val, 100}};
    pc_request_t s2 = {.op = PC_OP_SET, .id = 3, .key = {(const uint8_t *)"big", 3},
                       .value = {val, (uint32_t)big}};
    int ok = call(fd, &s1) == PC_ST_OK && call(fd, &s2) == PC_ST_OK;
    free(val);
    close(fd);
    if (!ok)
        return -1;

    probe_t pr;
    memset(&pr, 0, sizeof pr);
    pr.port = node.port;
    pr.token = token;
    for (int i = 0; i < NPHASES; i++) {
        pr.lat[i].v = malloc(MAX_SAMPLES * sizeof(double));
        pr.lat[i].flood = malloc(MAX_SAMPLES);
        if (pr.lat[i].v == NULL || pr.lat[i].flood == NULL)
            return -1;
    }
    hostile_t h = {.port = node.port, .kind = kind, .n = conns};
    pthread_create(&pr.tid, NULL, probe_main, &pr);

    sleep_until(now_ms() + 1000 * seconds);
    res->rss_before_kb = pc_h_rss_kb(node.pid);
    statq_t l0[] = {{"loop_busy_us", -1}, {"loop_iterations", -1}, {"threads", -1}, {NULL, 0}};
    statq_t l1[] = {{"loop_busy_us", -1}, {"loop_iterations", -1}, {NULL, 0}};
    double busy_us = 0, iters = 0, wall_ms = 0;
    int lrc = 0;
    res->tcp_pressure_ms = res->tcp_timeouts = 0;
    for (int cyc = 0; cyc < cycles; cyc++) {
        atomic_store(&pr.flood, cyc);
        if (cyc > 0) {
            /* Alone again between floods (--cycles): the first SETTLE_MS are
             * not counted (the hostile connections' closes, the node giving
             * memory back); the rest counts as `before`. */
            atomic_store(&pr.phase, P_SETTLE);
            sleep_until(now_ms() + SETTLE_MS);
            atomic_store(&pr.phase, P_BEFORE);
            sleep_until(now_ms() + 1000.0 * seconds - SETTLE_MS);
        }
        double t0 = now_ms();
        lrc |= stats(node.port, token, l0);
        res->loops = (int)l0[2].v;
        long long press0 = tcp_ext("TCPMemoryPressuresChrono"), rto0 = tcp_ext("TCPTimeouts");
        if (getenv("SLOW_TRACE"))
            fprintf(stderr, "flood %d starts at mono %.3f\n", cyc + 1, now_ms() / 1e3);
        atomic_store(&pr.phase, P_DURING);
        atomic_store(&h.stop, 0);
        pthread_create(&h.tid, NULL, hostile_main, &h);
        double end = now_ms() + 1000 * seconds, next_new = now_ms() + NEWCONN_EVERY_MS;
        while (now_ms() < end) {
            long rss = pc_h_rss_kb(node.pid), tm = tcp_mem_kb();
            if (rss > res->rss_max_kb)
                res->rss_max_kb = rss;
            statq_t bq[] = {{"buffer_memory", -1}, {NULL, 0}};
            if (stats(node.port, token, bq) == 0 && bq[0].v > res->bufmem_max)
                res->bufmem_max = bq[0].v;
            if (tm > res->tcp_mem_max_kb)
                res->tcp_mem_max_kb = tm;
            if (now_ms() >= next_new) {
                int r = newconn(node.port, token);
                res->served += r == 0;
                res->refused += r == 1;
                res->stalled += r == 2;
                next_new += NEWCONN_EVERY_MS;
            }
            sleep_until(now_ms() + 100);
        }
        lrc |= stats(node.port, token, l1);
        double t1 = now_ms();
        long long press1 = tcp_ext("TCPMemoryPressuresChrono"), rto1 = tcp_ext("TCPTimeouts");
        /* summed over the floods; -1 once a count could not be read */
        if (res->tcp_pressure_ms >= 0)
            res->tcp_pressure_ms =
                press0 >= 0 && press1 >= press0 ? res->tcp_pressure_ms + press1 - press0 : -1;
        if (res->tcp_timeouts >= 0)
            res->tcp_timeouts = rto0 >= 0 && rto1 >= rto0 ? res->tcp_timeouts + rto1 - rto0 : -1;
        if (lrc == 0 && l0[2].v > 0 && l1[1].v > l0[1].v && t1 > t0) {
            busy_us += (double)(l1[0].v - l0[0].v);
            iters += (double)(l1[1].v - l0[1].v);
            wall_ms += t1 - t0;
        } else {
            lrc = -1;
        }
        atomic_store(&h.stop, 1);
        pthread_join(h.tid, NULL);
        if (getenv("SLOW_TRACE"))
            fprintf(stderr, "flood %d ends at mono %.3f\n", cyc + 1, now_ms() / 1e3);
    }
    res->busy_pct = res->iter_us = -1;
    if (lrc == 0 && iters > 0) {
        res->busy_pct = 100.0 * busy_us / (wall_ms * 1000.0 * (double)res->loops);
        res->iter_us = busy_us / iters;
    }
    atomic_store(&pr.phase, P_AFTER);
    sleep_until(now_ms() + 1000 * seconds);
    res->rss_after_kb = pc_h_rss_kb(node.pid);
    atomic_store(&pr.stop, 1);
    pthread_join(pr.tid, NULL);
    res->probe_errors = pr.errors;
    res->cycles = cycles;
    double ratios[MAX_CYCLES];
    int nratios = 0;
    for (int f = 0; f < cycles; f++) {
        res->flood_p99[0][f] = pct_flood(&pr.lat[P_BEFORE], f, 0.99);
        res->flood_p99[1][f] = pct_flood(&pr.lat[P_DURING], f, 0.99);
        if (res->flood_p99[0][f] > 0 && res->flood_p99[1][f] >= 0)
            ratios[nratios++] = res->flood_p99[1][f] / res->flood_p99[0][f];
    }
    res->med_ratio = -1;
    if (nratios > 0) {
        qsort(ratios, (size_t)nratios, sizeof *ratios, pc_mbench_cmp_double);
        res->med_ratio = nratios % 2 ? ratios[nratios / 2]
                                     : (ratios[nratios / 2 - 1] + ratios[nratios / 2]) / 2;
    }
    for (int i = 0; i < NPHASES; i++) {
        res->p50[i] = pct(&pr.lat[i], 0.50);
        res->p99[i] = pct(&pr.lat[i], 0.99);
        res->max[i] = pct(&pr.lat[i], 1.0);
        free(pr.lat[i].v);
        free(pr.lat[i].flood);
    }
    statq_t q[] = {{"buffer_evictions", -1}, {"buffer_full_rejects", -1},
                   {"output_timeouts", -1}, {NULL, 0}};
    int srv = stats(node.port, token, q);
    res->evictions = q[0].v;
    res->full_rejects = q[1].v;
    res->output_timeouts = q[2].v;
    int st = pc_h_stop(&node, SIGTERM, 20000);
    if (srv != 0 || st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return 0;
}

static void print_result(const result_t *r)
{
    printf("%-6s %5d %5d  ", KIND_NAMES[r->kind], r->conns, r->loops);
    for (int i = 0; i < NPHASES; i++)
        printf("%7.2f %8.2f %8.1f  ", r->p50[i], r->p99[i], r->max[i]);
    printf("%5.2fx %5.2fx  %2d/%2d/%2d  %6.1f %7.1f %6.1f %7.1f  %7.1f %6lld %5lld  %5lld %4lld %4lld  "
           "%5.1f %7.1f\n",
           r->p99[P_BEFORE] > 0 ? r->p99[P_DURING] / r->p99[P_BEFORE] : -1, r->med_ratio, r->served,
           r->refused, r->stalled, r->rss_before_kb / 1024.0, r->rss_max_kb / 1024.0,
           r->rss_after_kb / 1024.0, (double)r->bufmem_max / (1024.0 * 1024.0),
           r->tcp_mem_max_kb / 1024.0, r->tcp_pressure_ms, r->tcp_timeouts, r->evictions,
           r->full_rejects, r->output_timeouts, r->busy_pct, r->iter_us);
    if (r->cycles > 1) {
        printf("  per flood, p99 before / during:");
        for (int f = 0; f < r->cycles; f++)
            printf(" %.2f/%.2f", r->flood_p99[0][f], r->flood_p99[1][f]);
        printf("\n");
    }
    fflush(stdout);
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = atoi(t);
    free(copy);
    return n;
}

int main(int argc, char **argv)
{
    int conns[8] = {100, 1000}, nconns = 2, seconds = 10, cycles = 1, smoke = 0, json = 0;
    int kinds[NKINDS] = {K_GET, K_PING, K_UNAUTH}, nkinds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
            conns[0] = 50;
            nconns = 1;
            kinds[0] = K_GET;
            nkinds = 1;
            seconds = 2;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--pin") == 0) {
            pin = 1;
        } else if (strcmp(argv[i], "--probe-on-node") == 0) {
            probe_on_node = 1;
        } else if (strcmp(argv[i], "--no-idle") == 0) {
            no_idle = 1;
        } else if (strcmp(argv[i], "--client-buf") == 0 && i + 1 < argc) {
            client_buf = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc) {
            long v = atol(argv[++i]);
            if (v < 1 || v > 16384) {
                fprintf(stderr, "bench_slowreaders: --hold: 1 to 16384 (MiB)\n");
                return 2;
            }
            hold_bytes = (size_t)v << 20;
        } else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            nconns = parse_list(argv[++i], conns, 8);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) {
            cycles = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--kinds") == 0 && i + 1 < argc) {
            char *copy = strdup(argv[++i]), *save = NULL;
            nkinds = 0;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int k = 0;
                while (k < NKINDS && strcmp(t, KIND_NAMES[k]) != 0)
                    k++;
                if (k == NKINDS || nkinds == NKINDS) {
                    fprintf(stderr, "bench_slowreaders: --kinds: %s\n",
                            k == NKINDS ? "get, ping, unauth, spin, spin0 or hold" : "too many");
                    return 2;
                }
                kinds[nkinds++] = k;
            }
            free(copy);
        } else {
            fprintf(stderr, "usage: %s [--conns N,...] [--kinds get,ping,unauth,spin,spin0,hold] "
                            "[--seconds S] [--cycles N] [--pin [--probe-on-node]] "
                            "[--client-buf BYTES] [--hold MB] [--no-idle] [--smoke] [--json]\n",
                    argv[0]);
            return 2;
        }
    }
    if (cycles < 1 || cycles > MAX_CYCLES) {
        fprintf(stderr, "bench_slowreaders: --cycles: 1 to %d\n", MAX_CYCLES);
        return 2;
    }
    for (int k = 0; k < nkinds; k++)
        if ((kinds[k] == K_SPIN0 || kinds[k] == K_HOLD) && !pin) {
            fprintf(stderr, "bench_slowreaders: %s needs --pin (it busies the node's CPU)\n",
                    KIND_NAMES[kinds[k]]);
            return 2;
        }
    if (probe_on_node && !pin) {
        fprintf(stderr, "bench_slowreaders: --probe-on-node needs --pin\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    /* held open until exit: the request lasts as long as the fd */
    int qos = -1;
    if (no_idle) {
        int32_t zero = 0;
        qos = open("/dev/cpu_dma_latency", O_WRONLY);
        if (qos < 0 || write(qos, &zero, sizeof zero) != (ssize_t)sizeof zero) {
            perror("bench_slowreaders: --no-idle: /dev/cpu_dma_latency");
            return 2;
        }
    }
    printf("# bench_slowreaders: probe %d GET/s open loop; %d s per phase, %d flood(s)%s; latencies "
           "in ms; RSS and kernel TCP memory in MiB\n", PROBE_RATE, seconds, cycles,
           no_idle ? ", CPUs kept out of idle states" : "");
    printf("%-6s %5s %5s  %-26s  %-26s  %-26s  %-13s  %-8s  %-28s  %-20s  %-15s  %s\n", "kind",
           "conns", "loops", "before p50 p99 max", "during p50 p99 max", "after p50 p99 max", "p99 x  med x",
           "new s/r/x", "RSS before max after bufmax", "tcp mem press_ms rto", "evict full otmo",
           "busy% iter_us");
    result_t res[NKINDS * 8];
    int nres = 0, failed = 0;
    for (int k = 0; k < nkinds; k++) {
        for (int c = 0; c < nconns; c++) {
            result_t *r = &res[nres];
            if (run(kinds[k], conns[c], seconds, cycles, r) != 0) {
                fprintf(stderr, "bench_slowreaders: %s x %d: the node failed\n",
                        KIND_NAMES[kinds[k]], conns[c]);
                failed = 1;
                continue;
            }
            print_result(r);
            if (r->p99[P_BEFORE] < 0 || r->p99[P_DURING] < 0 || r->p99[P_AFTER] < 0 ||
                r->rss_max_kb <= 0 || r->served + r->refused + r->stalled == 0 ||
                r->busy_pct < 0 || r->iter_us < 0) {
                fprintf(stderr, "bench_slowreaders: a figure is missing\n");
                failed = 1;
            }
            nres++;
        }
    }
    if (json) {
        printf("{\"results\": [");
        for (int i = 0; i < nres; i++) {
            const result_t *r = &res[i];
            printf("%s{\"kind\": \"%s\", \"conns\": %d, \"loops\": %d", i ? ", " : "",
                   KIND_NAMES[r->kind], r->conns, r->loops);
            for (int p = 0; p < NPHASES; p++)
                printf(", \"%s_p50_ms\": %.3f, \"%s_p99_ms\": %.3f, \"%s_max_ms\": %.3f",
                       PHASE_NAMES[p], r->p50[p], PHASE_NAMES[p], r->p99[p], PHASE_NAMES[p],
                       r->max[p]);
            printf(", \"new_served\": %d, \"new_refused\": %d, \"new_stalled\": %d"
                   ", \"rss_before_kb\": %ld, \"rss_max_kb\": %ld, \"rss_after_kb\": %ld"
                   ", \"buffer_memory_max\": %lld"
                   ", \"tcp_mem_max_kb\": %ld, \"tcp_pressure_ms\": %lld"
                   ", \"tcp_timeouts\": %lld, \"buffer_evictions\": %lld"
                   ", \"buffer_full_rejects\": %lld, \"output_timeouts\": %lld"
                   ", \"during_loop_busy_pct\": %.1f, \"during_iteration_us\": %.1f"
                   ", \"median_flood_ratio\": %.3f}",
                   r->served, r->refused, r->stalled, r->rss_before_kb, r->rss_max_kb,
                   r->rss_after_kb, r->bufmem_max, r->tcp_mem_max_kb, r->tcp_pressure_ms,
                   r->tcp_timeouts, r->evictions, r->full_rejects, r->output_timeouts,
                   r->busy_pct, r->iter_us, r->med_ratio);
        }
        printf("]}\n");
    }
    (void)smoke;
    if (qos >= 0)
        close(qos);
    return pc_h_finish(failed);
}
