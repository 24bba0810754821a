/*
 * test_http.c -- the operators' HTTP endpoint (--http, node/pc_admin.h,
 * docs/OPERATIONS.md "HTTP endpoint") of a real peercached with a real
 * redis-server behind it, spoken to over raw sockets:
 *  - /healthz, /readyz and /metrics answer, and anything else is refused
 *    with the status the contract names (404, 405, 413, 414, 431, 400);
 *  - /metrics of a busy node passes `promtool check metrics` (Debian's
 *    prometheus package), and its request counter and latency
 *    histograms grow with the load;
 *  - /readyz turns 503 with the reason when Redis stops, and 200 again
 *    when it is back;
 *  - the connection limit and the request timeout hold;
 *  - a real Prometheus server scraping a 3-node cluster reports up == 1
 *    for each, and their request counters growing;
 *  - /cluster is what `peercache-cli cluster --json` prints;
 *  - with --log-format json, every line of a node's log is one JSON
 *    object (time, level, node, msg).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"

/* As node/pc_admin.c: connections at once, and the time a request has. */
#define MAX_CONNS 16
#define TIMEOUT_MS 5000

typedef struct node {
    pc_h_proc_t redis, node;
    int http_port;
} node_t;

static void node_up(node_t *n, int redis_port)
{
    char http[64];
    assert_int_equal(pc_h_redis_start(&n->redis, redis_port), 0);
    /* Two free ports, not the same one twice (neither is bound until the
     * node binds both). */
    int port = pc_h_free_port();
    do
        n->http_port = pc_h_free_port();
    while (n->http_port == port);
    snprintf(http, sizeof http, "127.0.0.1:%d", n->http_port);
    const char *args[] = {"--redis", n->redis.addr, "--http",       http,
                          "--insecure", "--log-format", "json", NULL};
    assert_int_equal(pc_h_node_start_port(&n->node, port, args), 0);
}

/* Every line of a --log-format json log is one JSON object with time,
 * level, node and msg (python3's parser judges); the harness's log also
 * holds the node's stdout, whose one line says "ready ADDR". */
static void check_json_log(const char *path)
{
    char cmd[1024], out[2048];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys\n"
             "n=0\n"
             "for line in open(sys.argv[1]):\n"
             "    if line.startswith(\"ready \"): continue\n"
             "    o=json.loads(line); n+=1\n"
             "    assert sorted(o)==[\"level\",\"msg\",\"node\",\"time\"], line\n"
             "assert n>0\n"
             "print(n)' '%s' 2>&1",
             path);
    int rc = pc_h_run(cmd, out, sizeof out);
    if (rc != 0)
        fail_msg("%s is not one JSON object per line: %s", path, out);
}

static void node_down(node_t *n)
{
    char log[sizeof n->node.log];
    memcpy(log, n->node.log, sizeof log);
    assert_int_equal(pc_h_stop(&n->node, SIGTERM, 10000), 0);
    check_json_log(log);
    if (n->redis.pid > 0)
        pc_h_stop(&n->redis, SIGTERM, 5000);
}

/* An answer: status, its headers and body, NUL terminated. */
typedef struct answer {
    int status;
    char raw[65536];
    const char *body;
    size_t body_len;
} answer_t;

/* Sends `req` (raw bytes) on a new connection and reads the answer to
 * EOF. status -1 when there was none (or no connection). */
static void exchange(int port, const char *req, size_t len, answer_t *a)
{
    memset(a, 0, sizeof *a);
    a->status = -1;
    int fd = pc_h_connect(port, 10000);
    if (fd < 0)
        return; /* nobody listens: status -1 */
    pc_buf_t b;
    memset(&b, 0, sizeof b);
    b.data = (uint8_t *)req;
    b.len = b.cap = len;
    if (len > 0)
        assert_int_equal(pc_h_send_all(fd, &b), 0);
    size_t got = 0;
    pc_h_wait_closed(fd, (uint8_t *)a->raw, sizeof a->raw - 1, &got);
    close(fd);
    a->raw[got < sizeof a->raw ? got : sizeof a->raw - 1] = '\0';
    if (sscanf(a->raw, "HTTP/1.1 %d ", &a->status) != 1)
        a->status = -1;
    const char *end = strstr(a->raw, "\r\n\r\n");
    a->body = end != NULL ? end + 4 : "";
    a->body_len = strlen(a->body);
}

static void get(int port, const char *path, answer_t *a)
{
    char req[1024];
    /* Connection: close, or a server that keeps connections (Prometheus)
     * would leave exchange() waiting for an end that does not come. */
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    exchange(port, req, (size_t)n, a);
}

static answer_t ans; /* large: not on the stack */

static int readyz_is(void *arg)
{
    const int *want = arg; /* {port, status} */
    get(want[0], "/readyz", &ans);
    return ans.status == want[1];
}

static void test_endpoints_and_refusals(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, 0);

    get(n.http_port, "/healthz", &ans);
    assert_int_equal(ans.status, 200);
    assert_string_equal(ans.body, "ok\n");
    assert_non_null(strstr(ans.raw, "Connection: close\r\n"));
    /* The node listens before its loops have connected to Redis, and
     * says so (503 "redis: not connected") until they have. */
    int ready[2] = {n.http_port, 200};
    if (!pc_h_poll(readyz_is, ready, 10000))
        fail_msg("/readyz still %d 10 s after the node started: %s", ans.status, ans.body);
    assert_string_equal(ans.body, "ready\n");
    get(n.http_port, "/metrics?ignored=1", &ans);
    assert_int_equal(ans.status, 200);
    assert_non_null(strstr(ans.raw, "Content-Type: text/plain; version=0.0.4"));
    get(n.http_port, "/nothing", &ans);
    assert_int_equal(ans.status, 404);

    /* HEAD: the headers of a GET, no body. */
    static const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    exchange(n.http_port, head, sizeof head - 1, &ans);
    assert_int_equal(ans.status, 200);
    assert_non_null(strstr(ans.raw, "Content-Length: 3\r\n"));
    assert_int_equal(ans.body_len, 0);

    static const char post[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    exchange(n.http_port, post, sizeof post - 1, &ans);
    assert_int_equal(ans.status, 405);
    assert_non_null(strstr(ans.raw, "Allow: GET, HEAD\r\n"));
    static const char body[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    exchange(n.http_port, body, sizeof body - 1, &ans);
    assert_int_equal(ans.status, 413);
    static const char chunked[] =
        "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    exchange(n.http_port, chunked, sizeof chunked - 1, &ans);
    assert_int_equal(ans.status, 413);
    static const char junk[] = "this is not HTTP\r\n\r\n";
    exchange(n.http_port, junk, sizeof junk - 1, &ans);
    assert_int_equal(ans.status, 400);

    /* A path over 1,024 bytes; headers over 8 KiB. */
    char *big = malloc(16384);
    assert_non_null(big);
    int len = snprintf(big, 16384, "GET /%01100d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    exchange(n.http_port, big, (size_t)len, &ans);
    assert_int_equal(ans.status, 414);
    len = snprintf(big, 16384, "GET /metrics HTTP/1.1\r\nX-Big: %09000d\r\n\r\n", 0);
    exchange(n.http_port, big, (size_t)len, &ans);
    assert_int_equal(ans.status, 431);
    free(big);

    /* Still serving after all that. */
    get(n.http_port, "/healthz", &ans);
    assert_int_equal(ans.status, 200);
    node_down(&n);
}

/* The value of a sample line "name value" in a /metrics body, or -1. */
static long long sample(const char *body, const char *name)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(body, pat);
    return p != NULL ? atoll(p + strlen(pat)) : -1;
}

static void test_metrics_pass_promtool(void **state)
{
    (void)state;
    enum { OPS = 200 };
    node_t n;
    node_up(&n, 0);
    pc_client_options_t o = {.nodes = n.node.addr, .timeout_ms = 5000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);

    get(n.http_port, "/metrics", &ans);
    assert_int_equal(ans.status, 200);
    long long before = sample(ans.raw, "peercache_requests_total");
    assert_true(before >= 0);
    for (int i = 0; i < OPS; i++) {
        char key[32];
        pc_value_t v = {0};
        int kl = snprintf(key, sizeof key, "m:%d", i % 20);
        assert_int_equal(pc_client_set(c, key, (size_t)kl, "v", 1, NULL, NULL), 0);
        assert_int_equal(pc_client_get(c, key, (size_t)kl, &v), 0);
        pc_value_free(&v);
    }
    pc_client_free(&c);

    get(n.http_port, "/metrics", &ans);
    assert_int_equal(ans.status, 200);
    long long after = sample(ans.raw, "peercache_requests_total");
    if (after < before + 2 * OPS)
        fail_msg("peercache_requests_total went from %lld to %lld over %d requests", before,
                 after, 2 * OPS);
    assert_true(sample(ans.raw, "peercache_hits_total") >= OPS / 2);
    /* Every GET was a hit (its SET just filled the store), and every SET
     * went to Redis: the histograms counted each. */
    long long hits = sample(ans.raw, "peercache_op_duration_seconds_count{op=\"get_hit\"}");
    long long sets = sample(ans.raw, "peercache_op_duration_seconds_count{op=\"set\"}");
    long long redis = sample(ans.raw, "peercache_redis_duration_seconds_count");
    if (hits < OPS || sets < OPS || redis < OPS)
        fail_msg("histogram counts: get_hit %lld, set %lld, redis %lld; want >= %d each", hits,
                 sets, redis, OPS);
    /* The loops' iterations: every one timed, and what they worked is
     * the histogram's sum -- more than nothing after 400 requests, less
     * than the wall time of every loop since the node started. */
    long long iters = sample(ans.raw, "peercache_loop_iterations_total");
    long long timed = sample(ans.raw, "peercache_loop_iteration_seconds_count");
    long long inf = sample(ans.raw, "peercache_loop_iteration_seconds_bucket{le=\"+Inf\"}");
    const char *busy_at = strstr(ans.raw, "\npeercache_loop_busy_seconds_total ");
    const char *sum_at = strstr(ans.raw, "\npeercache_loop_iteration_seconds_sum ");
    assert_non_null(busy_at);
    assert_non_null(sum_at);
    double busy = atof(busy_at + strlen("\npeercache_loop_busy_seconds_total "));
    double sum = atof(sum_at + strlen("\npeercache_loop_iteration_seconds_sum "));
    double up = (double)sample(ans.raw, "peercache_uptime_seconds") + 1;
    double loops = (double)sample(ans.raw, "peercache_threads");
    if (iters <= 0 || timed != iters || inf != iters || !(busy > 0) || busy > up * loops ||
        sum < busy - 1e-6 || sum > busy + 1e-3)
        fail_msg("loop iterations %lld, timed %lld (+Inf %lld); busy %.6f s, histogram sum %.6f s, "
                 "uptime under %.0f s, %.0f loops",
                 iters, timed, inf, busy, sum, up, loops);
    assert_non_null(strstr(ans.raw, "# TYPE peercache_loop_iteration_seconds histogram\n"));
    assert_non_null(strstr(ans.raw, "# TYPE peercache_op_duration_seconds histogram\n"));
    assert_non_null(
        strstr(ans.raw, "\npeercache_op_duration_seconds_bucket{op=\"get_hit\",le=\"+Inf\"} "));
    assert_non_null(strstr(ans.raw, "# TYPE peercache_items gauge\n"));
    assert_non_null(strstr(ans.raw, "# TYPE peercache_uptime_seconds gauge\n"));
    assert_non_null(strstr(ans.raw, "\npeercache_info{version=\""));

    /* promtool reads the body from stdin; its findings go to stdout. */
    char path[512], cmd[1200], out[4096];
    snprintf(path, sizeof path, "%s/metrics.txt", pc_h_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(ans.body, 1, ans.body_len, f), ans.body_len);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' 2>&1", path);
    int rc = pc_h_run(cmd, out, sizeof out);
    if (rc != 0)
        fail_msg("promtool check metrics: exit %d\n%s", rc, out);
    node_down(&n);
}

static void test_readyz_follows_redis(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, 0);
    int redis_port = n.redis.port;
    int ready[2] = {n.http_port, 200}, unready[2] = {n.http_port, 503};
    assert_true(pc_h_poll(readyz_is, ready, 10000));

    pc_h_stop(&n.redis, SIGTERM, 5000);
    n.redis.pid = 0;
    if (!pc_h_poll(readyz_is, unready, 10000))
        fail_msg("/readyz still %d 10 s after Redis stopped: %s", ans.status, ans.body);
    assert_non_null(strstr(ans.body, "redis: not connected"));

    assert_int_equal(pc_h_redis_start(&n.redis, redis_port), 0);
    if (!pc_h_poll(readyz_is, ready, 10000))
        fail_msg("/readyz still %d 10 s after Redis came back: %s", ans.status, ans.body);
    node_down(&n);
}

static void test_connection_limit_and_timeout(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, 0);
    int fds[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) {
        fds[i] = pc_h_connect(n.http_port, 10000);
        assert_true(fds[i] >= 0);
    }
    /* One more is accepted after them, and closed at once, unanswered. */
    get(n.http_port, "/healthz", &ans);
    assert_int_equal(ans.status, -1);

    /* The silent ones are closed at the timeout (each socket waits up to
     * 10 s for that). */
    uint64_t t0 = pc_h_now_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
        assert_int_equal(pc_h_wait_closed(fds[i], NULL, 0, NULL), 1);
        close(fds[i]);
    }
    printf("# %d silent connections closed within %llu ms (timeout %d ms)\n", MAX_CONNS,
           (unsigned long long)(pc_h_now_ms() - t0), TIMEOUT_MS);
    get(n.http_port, "/healthz", &ans); /* room again */
    assert_int_equal(ans.status, 200);
    node_down(&n);
}

/* ---- a real Prometheus server scraping a cluster ---------------------------- */

static pc_h_proc_t prom; /* stopped by the teardown, whatever happened */

static int stop_prometheus(void **state)
{
    (void)state;
    if (prom.pid > 0)
        pc_h_stop(&prom, SIGKILL, 5000);
    return 0;
}

typedef struct query {
    int port;
    const char *q; /* URL-encoded */
    int want;      /* how many results with value 1 (the up query) */
    double value;  /* otherwise: the first result's value, out */
} query_t;

/* Asks Prometheus' HTTP API. For `up`: the number of results whose value
 * is "1" reached want; else the first result's value, and 1 if there is
 * one. */
static int prom_query(void *arg)
{
    query_t *q = arg;
    char path[512];
    snprintf(path, sizeof path, "/api/v1/query?query=%s", q->q);
    get(q->port, path, &ans);
    if (ans.status != 200 || strstr(ans.body, "\"status\":\"success\"") == NULL)
        return 0;
    if (q->want > 0) {
        int ones = 0;
        for (const char *p = ans.body; (p = strstr(p, ",\"1\"]")) != NULL; p++)
            ones++;
        return ones >= q->want;
    }
    const char *v = strstr(ans.body, "\"value\":[");
    if (v == NULL || (v = strchr(v, ',')) == NULL || v[1] != '"')
        return 0;
    q->value = atof(v + 2);
    return 1;
}

/* pc_h_poll, asking every 200 ms: Prometheus is a server under test
 * too, and a query is work for it. */
static int poll_prom(int (*fn)(void *), void *arg, int timeout_ms)
{
    uint64_t deadline = pc_h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (fn(arg))
            return 1;
        if (pc_h_now_ms() >= deadline)
            return 0;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The sum of every node's request counter, as Prometheus last scraped it,
 * has reached q->value. */
static int prom_sum_reached(void *arg)
{
    query_t *q = arg, now = *q;
    return prom_query(&now) && now.value >= q->value;
}

static char cli_out[8192];

typedef struct cluster_json {
    int http_port;
    const char *addr; /* the node's, as the CLI is given it */
    int alive;        /* members that must be alive */
} cluster_json_t;

/* The node's /cluster and the CLI's `cluster --json` for that node are
 * the same text, with every member alive. */
static int cluster_json_agrees(void *arg)
{
    const cluster_json_t *cj = arg;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --nodes %s cluster --json", getenv("PC_CLI"), cj->addr);
    if (pc_h_run(cmd, cli_out, sizeof cli_out) != 0)
        return 0;
    get(cj->http_port, "/cluster", &ans);
    if (ans.status != 200 || strstr(ans.raw, "Content-Type: application/json\r\n") == NULL)
        return 0;
    int alive = 0;
    for (const char *p = ans.body; (p = strstr(p, "\"state\":\"alive\"")) != NULL; p++)
        alive++;
    return alive == cj->alive && strcmp(ans.body, cli_out) == 0;
}

static void test_prometheus_scrapes_a_cluster(void **state)
{
    (void)state;
    enum { N = 3, OPS = 300 };
    pc_h_proc_t redis, node[N];
    int http[N];
    char cfg[1024], path[512], datadir[512], listen[64];
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    int n = snprintf(cfg, sizeof cfg,
                     "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                     "scrape_configs:\n  - job_name: peercache\n    static_configs:\n"
                     "      - targets: [");
    for (int i = 0; i < N; i++) {
        char h[64];
        int port = pc_h_free_port();
        do
            http[i] = pc_h_free_port();
        while (http[i] == port);
        snprintf(h, sizeof h, "127.0.0.1:%d", http[i]);
        const char *args[] = {"--redis", redis.addr, "--http", h,
                              i > 0 ? "--join" : NULL, i > 0 ? node[0].addr : NULL, NULL};
        assert_int_equal(pc_h_node_start_port(&node[i], port, args), 0);
        n += snprintf(cfg + n, sizeof cfg - (size_t)n, "%s'%s'", i > 0 ? ", " : "", h);
    }
    snprintf(cfg + n, sizeof cfg - (size_t)n, "]\n");
    snprintf(path, sizeof path, "%s/prometheus.yml", pc_h_tmpdir());
    snprintf(datadir, sizeof datadir, "%s/prometheus-data", pc_h_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(cfg, f) >= 0);
    assert_int_equal(fclose(f), 0);
    int prom_port = pc_h_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", prom_port);
    char a_cfg[600], a_data[600], a_listen[100];
    snprintf(a_cfg, sizeof a_cfg, "--config.file=%s", path);
    snprintf(a_data, sizeof a_data, "--storage.tsdb.path=%s", datadir);
    snprintf(a_listen, sizeof a_listen, "--web.listen-address=%s", listen);
    const char *argv[] = {"prometheus", a_cfg, a_data, a_listen, NULL};
    assert_int_equal(pc_h_spawn(&prom, argv, "prometheus"), 0);
    uint64_t t_start = pc_h_now_ms();

    /* Every node scraped: up == 1 for all three. */
    query_t up = {prom_port, "up", N, 0};
    if (!poll_prom(prom_query, &up, 60000))
        fail_msg("Prometheus did not report up == 1 for %d nodes within 60 s (log: %s): %d %s",
                 N, prom.log, ans.status, ans.body);

    uint64_t up_ms = pc_h_now_ms() - t_start;

    /* The request counters it scrapes grow with the load. */
    query_t sum = {prom_port, "sum%28peercache_requests_total%29", 0, 0};
    assert_true(poll_prom(prom_query, &sum, 10000));
    double before = sum.value;
    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s,%s,%s", node[0].addr, node[1].addr, node[2].addr);
    pc_client_options_t o = {.nodes = seeds, .timeout_ms = 5000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    for (int i = 0; i < OPS; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "p:%d", i);
        assert_int_equal(pc_client_set(c, key, (size_t)kl, "v", 1, NULL, NULL), 0);
    }
    pc_client_free(&c);
    sum.value = before + OPS;
    if (!poll_prom(prom_sum_reached, &sum, 30000))
        fail_msg("sum(peercache_requests_total) in Prometheus went from %.0f, not past %.0f, "
                 "within 30 s", before, before + OPS);
    printf("# Prometheus: up == 1 for %d nodes %llu ms after it started; "
           "sum(peercache_requests_total) %.0f -> >= %.0f\n",
           N, (unsigned long long)up_ms, before, before + OPS);

    /* /cluster is what the CLI prints for the same node. */
    cluster_json_t cj = {http[0], node[0].addr, N};
    if (!pc_h_poll(cluster_json_agrees, &cj, 10000))
        fail_msg("/cluster of %s never matched `peercache-cli cluster --json` with %d members "
                 "alive:\n%s\nCLI:\n%s", node[0].addr, N, ans.body, cli_out);

    pc_h_stop(&prom, SIGTERM, 10000);
    for (int i = N - 1; i >= 0; i--)
        assert_int_equal(pc_h_stop(&node[i], SIGTERM, 15000), 0);
    pc_h_stop(&redis, SIGTERM, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_and_refusals),
        cmocka_unit_test(test_metrics_pass_promtool),
        cmocka_unit_test(test_readyz_follows_redis),
        cmocka_unit_test(test_connection_limit_and_timeout),
        cmocka_unit_test_teardown(test_prometheus_scrapes_a_cluster, stop_prometheus),
    };
    return pc_h_finish(cmocka_run_group_tests_name("http", tests, NULL, NULL));
}
