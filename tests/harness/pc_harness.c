/* nftw() is XSI. */
#define _XOPEN_SOURCE 700

#include "pc_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pc_proto_reader.h"

uint64_t pc_h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char tmpdir[256];

const char *pc_h_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/peercache-test-XXXXXX", base ? base : "/tmp");
        if (mkdtemp(tmpdir) == NULL) {
            perror("mkdtemp");
            abort();
        }
    }
    return tmpdir;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT) {
        fprintf(stderr, "pc_harness: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

int pc_h_finish(int failed)
{
    if (tmpdir[0] == '\0') {
        return failed ? 1 : 0;
    }
    const char *keep = getenv("PC_KEEP_TMP");
    if (failed || (keep != NULL && keep[0] != '\0' && strcmp(keep, "0") != 0)) {
        fprintf(stderr, "pc_harness: logs kept in %s\n", tmpdir);
    } else if (nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        fprintf(stderr, "pc_harness: cannot remove %s: %s\n", tmpdir, strerror(errno));
    }
    return failed ? 1 : 0;
}

const char *pc_h_tmp_path(const char *name)
{
    static char paths[16][600];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, 600, "%s/%s", pc_h_tmpdir(), name);
    return p;
}

static int port_free(int type, int port)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* The lowest port of the kernel's range for the local ends of outgoing
 * connections (net.ipv4.ip_local_port_range), or -1. */
static int ephemeral_low(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    int low = -1, high = -1;
    if (f != NULL) {
        if (fscanf(f, "%d %d", &low, &high) != 2)
            low = -1;
        fclose(f);
    }
    return low;
}

#define PORT_FLOOR 10000

/*
 * A node gossips over UDP on its TCP port number: both must be free.
 * Chosen at random below the kernel's range for outgoing connections'
 * local ports: a port from that range (bind to port 0) is free when we
 * look, but until the node or Redis binds it, any connect() on the
 * machine may take it as its local port -- and a test beside this one
 * (test_nonreaders) opens thousands of connections. Below the range only
 * a bind takes a port. From the range itself only if there is no room
 * below it.
 */
int pc_h_free_port(void)
{
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)pc_h_now_ms();
    int low = ephemeral_low();
    for (int i = 0; low > PORT_FLOOR + 1000 && i < 200; i++) {
        int port = PORT_FLOOR + (int)((unsigned)rand_r(&seed) % (unsigned)(low - PORT_FLOOR));
        if (port_free(SOCK_STREAM, port) == port && port_free(SOCK_DGRAM, port) == port)
            return port;
    }
    for (int i = 0; i < 100; i++) {
        int port = port_free(SOCK_STREAM, 0);
        if (port > 0 && port_free(SOCK_DGRAM, port) == port)
            return port;
    }
    return -1;
}

int pc_h_poll(int (*fn)(void *arg), void *arg, int timeout_ms)
{
    uint64_t deadline = pc_h_now_ms() + (uint64_t)timeout_ms;
    int v;
    while (!(v = fn(arg)) && pc_h_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return v;
}

/* For pc_h_poll: every thread of the process is stopped ('T' in
 * /proc/PID/task/TID/stat). */
static int all_threads_stopped(void *arg)
{
    pid_t pid = *(const pid_t *)arg;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    int all = 1, seen = 0;
    struct dirent *de;
    while (all && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char stat[sizeof path + sizeof de->d_name + 8], buf[512];
        snprintf(stat, sizeof stat, "%s/%s/stat", path, de->d_name);
        FILE *f = fopen(stat, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* the name may hold spaces */
        all = rp != NULL && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
        seen++;
    }
    closedir(d);
    return all && seen > 0;
}

int pc_h_stop_process(pid_t pid, int timeout_ms)
{
    if (kill(pid, SIGSTOP) != 0)
        return -1;
    return pc_h_poll(all_threads_stopped, &pid, timeout_ms) ? 0 : -1;
}

int pc_h_log_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* fork+exec with stdout/stderr to a log file; dies with the parent. */
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
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int pc_h_spawn(pc_h_proc_t *p, const char *const *argv, const char *name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->log, sizeof p->log, "%s/%s.log", pc_h_tmpdir(), name);
    p->pid = spawn(argv, p->log);
    return p->pid > 0 ? 0 : -1;
}

void pc_h_print_log(const pc_h_proc_t *p)
{
    FILE *f = fopen(p->log, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "---- %s ----\n", p->log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

int pc_h_connect(int port, int rcv_timeout_ms)
{
    return pc_h_connect_from(NULL, port, rcv_timeout_ms);
}

int pc_h_connect_from(const char *from, int port, int rcv_timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((from != NULL && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                          bind(fd, (struct sockaddr *)&src, sizeof src) != 0)) ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcv_timeout_ms > 0) {
        struct timeval tv = {rcv_timeout_ms / 1000, (rcv_timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    return fd;
}

struct alive_arg {
    const pc_h_proc_t *p;
    int redis;
};

static int proc_ready(void *arg)
{
    struct alive_arg *a = arg;
    if (a->redis) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", a->p->port, tv);
        int ok = 0;
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            /* An error is an answer too (-NOAUTH, -LOADING): it is up. */
            ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
            if (r)
                freeReplyObject(r);
        }
        if (c)
            redisFree(c);
        return ok;
    }
    int fd = pc_h_connect(a->p->port, 0);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

int pc_h_wait_ready(pc_h_proc_t *p, int redis)
{
    struct alive_arg a = {p, redis};
    uint64_t deadline = pc_h_now_ms() + 10000;
    while (pc_h_now_ms() < deadline) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            fprintf(stderr, "process %d exited early (status %d)\n", (int)p->pid, status);
            pc_h_print_log(p);
            p->pid = 0;
            return -1;
        }
        if (pc_h_poll(proc_ready, &a, 50))
            return 0;
    }
    fprintf(stderr, "process %d not ready within 10 s\n", (int)p->pid);
    pc_h_print_log(p);
    return -1;
}

int pc_h_redis_start(pc_h_proc_t *p, int port)
{
    return pc_h_redis_start_args(p, port, NULL);
}

const char *pc_h_redis_server_bin(void)
{
    const char *bin = getenv("PC_REDIS_SERVER");
    return bin ? bin : "redis-server";
}

int pc_h_redis_start_args(pc_h_proc_t *p, int port, const char *const *extra)
{
    memset(p, 0, sizeof *p);
    p->port = port > 0 ? port : pc_h_free_port();
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", p->port);
    snprintf(p->log, sizeof p->log, "%s/redis-%d.log", pc_h_tmpdir(), p->port);
    char portstr[16], rdb[32];
    snprintf(portstr, sizeof portstr, "%d", p->port);
    /* A replica writes the RDB of its full sync to disk: one file each, or
     * a server started later in the same directory loads another's. */
    snprintf(rdb, sizeof rdb, "redis-%d.rdb", p->port);
    const char *argv[64] = {pc_h_redis_server_bin(), "--port", portstr, "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", pc_h_tmpdir(),
                            "--dbfilename", rdb, "--protected-mode", "yes"};
    int n = 15;
    for (int i = 0; extra && extra[i]; i++) {
        if (n == 63) {
            fprintf(stderr, "pc_h_redis_start_args: too many extra arguments\n");
            return -1;
        }
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    p->pid = spawn(argv, p->log);
    return p->pid > 0 ? pc_h_wait_ready(p, 1) : -1;
}

int pc_h_write_key_file(const char *path, int nkeys)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    int rnd = open("/dev/urandom", O_RDONLY);
    int rc = rnd < 0 ? -1 : 0;
    for (int k = 0; rc == 0 && k < nkeys; k++) {
        uint8_t key[32];
        char line[66];
        if (read(rnd, key, sizeof key) != (ssize_t)sizeof key) {
            rc = -1;
            break;
        }
        for (int i = 0; i < 32; i++)
            snprintf(line + 2 * i, 3, "%02x", key[i]);
        line[64] = '\n';
        if (write(fd, line, 65) != 65)
            rc = -1;
    }
    if (rnd >= 0)
        close(rnd);
    if (close(fd) != 0)
        rc = -1;
    return rc;
}

const char *pc_h_cluster_key(void)
{
    static char path[600];
    if (path[0] == '\0') {
        char p[600];
        snprintf(p, sizeof p, "%s/cluster.key", pc_h_tmpdir());
        if (pc_h_write_key_file(p, 1) != 0) {
            fprintf(stderr, "cannot write %s: %s\n", p, strerror(errno));
            return NULL;
        }
        memcpy(path, p, sizeof path);
    }
    return path;
}

int pc_h_node_start(pc_h_proc_t *p, const char *const *args)
{
    return pc_h_node_start_port(p, 0, args);
}

int pc_h_node_start_port(pc_h_proc_t *p, int port, const char *const *args)
{
    memset(p, 0, sizeof *p);
    p->port = port > 0 ? port : pc_h_free_port();
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", p->port);
    snprintf(p->log, sizeof p->log, "%s/node-%d.log", pc_h_tmpdir(), p->port);
    const char *bin = getenv("PC_PEERCACHED");
    const char *argv[64] = {bin ? bin : "peercached", "--listen", p->addr};
    int n = 3;
    int keyed = 0;
    for (int i = 0; args && args[i]; i++)
        if (strcmp(args[i], "--insecure") == 0 || strncmp(args[i], "--cluster-key", 13) == 0)
            keyed = 1;
    if (!keyed) {
        const char *key = pc_h_cluster_key();
        if (key == NULL)
            return -1;
        argv[n++] = "--cluster-key";
        argv[n++] = key;
    }
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    p->pid = spawn(argv, p->log);
    p->node = 1;
    return p->pid > 0 ? pc_h_wait_ready(p, 0) : -1;
}

/* The first line of a sanitizer report in the log, or 0 (buf empty). */
static int sanitizer_report(const char *log, char *buf, size_t len)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:", "WARNING: ThreadSanitizer"};
    FILE *f = fopen(log, "r");
    char line[1024];
    buf[0] = '\0';
    if (f == NULL)
        return 0;
    while (buf[0] == '\0' && fgets(line, sizeof line, f)) {
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
            if (strstr(line, marks[i]) != NULL) {
                snprintf(buf, len, "%s", line);
                break;
            }
    }
    fclose(f);
    return buf[0] != '\0';
}

void pc_h_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended with wait status %d", status);
}

/* See pc_harness.h: a node's end is checked here, once, for every test. */
static void check_node_end(const pc_h_proc_t *p, int sig, int status)
{
    char report[1024], how[128];
    pid_t pid = p->pid;
    if (sanitizer_report(p->log, report, sizeof report)) {
        fprintf(stderr, "\npc_harness: node %s (pid %d) logged a sanitizer report: %s",
                p->addr, (int)pid, report);
    } else if (sig == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        pc_h_describe_status(status, how, sizeof how);
        fprintf(stderr, "\npc_harness: node %s (pid %d) %s after SIGTERM, not 0\n", p->addr,
                (int)pid, how);
    } else {
        return;
    }
    pc_h_print_log(p);
    fprintf(stderr, "pc_harness: aborting the test (log: %s)\n", p->log);
    abort();
}

int pc_h_stop(pc_h_proc_t *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    if (sig != 0)
        kill(p->pid, sig);
    uint64_t deadline = pc_h_now_ms() + (uint64_t)timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            if (p->node)
                check_node_end(p, sig, status);
            p->pid = 0;
            return status;
        }
        if (pc_h_now_ms() >= deadline)
            break;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "process %d did not exit within %d ms; killing it\n", (int)p->pid,
            timeout_ms);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    if (p->node)
        check_node_end(p, sig, status); /* a SIGTERM that did not stop it aborts */
    pc_h_print_log(p);
    p->pid = 0;
    return -1;
}

redisContext *pc_h_redis_connect(const pc_h_proc_t *redis)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis->port, tv);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

redisContext *pc_h_redis_connect_auth(const pc_h_proc_t *redis, const char *user,
                                      const char *password)
{
    redisContext *c = pc_h_redis_connect(redis);
    if (c == NULL || password == NULL)
        return c;
    redisReply *r = user ? redisCommand(c, "AUTH %s %s", user, password)
                         : redisCommand(c, "AUTH %s", password);
    if (r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0) {
        freeReplyObject(r);
        return c;
    }
    fprintf(stderr, "AUTH on %s: %s\n", redis->addr,
            r == NULL ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "not +OK");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

int pc_h_redis_is_master(redisContext *c)
{
    if (c == NULL)
        return 0;
    redisReply *r = redisCommand(c, "ROLE");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
    if (r)
        freeReplyObject(r);
    return ok;
}

int pc_h_wait_closed(int fd, uint8_t *buf, size_t keep, size_t *got)
{
    size_t total = 0;
    uint8_t tmp[4096];
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            if (got)
                *got = total;
            return 1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (got)
                *got = total;
            return 0;
        }
        if (buf && total < keep) {
            size_t k = (size_t)n < keep - total ? (size_t)n : keep - total;
            memcpy(buf + total, tmp, k);
        }
        total += (size_t)n;
    }
}

int pc_h_write_file(const char *path, const char *text, mode_t mode)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "pc_h_write_file: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fchmod(fd, mode) == 0;
    if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
        fprintf(stderr, "pc_h_write_file: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

long pc_h_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

int pc_h_run(const char *cmdline, char *out, size_t cap)
{
    FILE *f = popen(cmdline, "r");
    if (f == NULL)
        return -1;
    size_t n = 0;
    if (out && cap > 0) {
        size_t r;
        while (n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, f)) > 0)
            n += r;
        out[n] = '\0';
    }
    char sink[4096];
    while (fread(sink, 1, sizeof sink, f) > 0) {
    }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Feeds every whole frame buffered in rd to fn; -1 once fn or the decoder
 * says stop, else the running count. */
/* kr != NULL: every body must open as a sealed peer reply first. */
static int drain_frames(pc_proto_reader_t *rd, pc_proto_decoder_t *dec, const pc_keyring_t *kr,
                        int count, int n, pc_h_response_fn fn, void *arg)
{
    const uint8_t *body;
    uint32_t len;
    while (count < n && pc_proto_reader_next(rd, &body, &len) == 1) {
        if (kr != NULL) {
            pc_seal_opened_t o;
            if (pc_seal_open(kr, (uint8_t *)(uintptr_t)body, len, &o) != 0 ||
                o.kind != PC_SEAL_PEER_RESP)
                return -1;
            body = o.payload;
            len = (uint32_t)o.len;
        }
        pc_response_t r;
        if (pc_proto_decode_response(dec, body, len, &r) != 0 || fn(arg, count, &r) != 0)
            return -1;
        count++;
    }
    return count;
}

static int read_responses(int fd, int n, const pc_keyring_t *kr, pc_h_response_fn fn, void *arg);

int pc_h_read_responses(int fd, int n, pc_h_response_fn fn, void *arg)
{
    return read_responses(fd, n, NULL, fn, arg);
}

int pc_h_read_sealed_responses(int fd, int n, const pc_keyring_t *kr, pc_h_response_fn fn,
                               void *arg)
{
    return read_responses(fd, n, kr, fn, arg);
}

const pc_keyring_t *pc_h_keyring(void)
{
    static pc_keyring_t *kr;
    char err[256];
    if (kr == NULL && pc_seal_init() == 0 && pc_h_cluster_key() != NULL &&
        pc_keyring_load_file(pc_h_cluster_key(), &kr, err, sizeof err) != 0)
        fprintf(stderr, "pc_h_keyring: %s\n", err);
    return kr;
}

int pc_h_seal_frames(pc_buf_t *b, size_t from, const pc_keyring_t *kr, pc_seal_stream_t *st,
                     uint64_t wall_ms)
{
    size_t off = from;
    while (off < b->len) {
        if (b->len - off < 4)
            return -1;
        size_t len = ((size_t)b->data[off] << 24) | ((size_t)b->data[off + 1] << 16) |
                     ((size_t)b->data[off + 2] << 8) | b->data[off + 3];
        if (b->len - off - 4 < len)
            return -1;
        /* pc_seal_frame wants the frame to end the buffer: move the rest
         * out of the way, seal, put it back. */
        pc_buf_t rest;
        pc_buf_init(&rest, 0);
        if (pc_buf_append(&rest, b->data + off + 4 + len, b->len - off - 4 - len) != 0)
            return -1;
        b->len = off + 4 + len;
        int rc = pc_seal_frame(kr, st, PC_SEAL_PEER_REQ, wall_ms, b, off);
        size_t next = b->len;
        if (rc == 0)
            rc = pc_buf_append(b, rest.data, rest.len);
        pc_buf_free(&rest);
        if (rc != 0)
            return -1;
        off = next;
    }
    return 0;
}

uint64_t pc_h_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int read_responses(int fd, int n, const pc_keyring_t *kr, pc_h_response_fn fn, void *arg)
{
    pc_proto_reader_t rd;
    pc_proto_reader_init(&rd, PC_PROTO_DEFAULT_MAX_FRAME + PC_SEAL_OVERHEAD);
    pc_proto_decoder_t *dec = NULL;
    if (pc_proto_decoder_new(NULL, &dec) != 0)
        return 0;
    int count = 0;
    while (count < n) {
        uint8_t *p;
        size_t avail;
        if (pc_proto_reader_reserve(&rd, 65536, &p, &avail) != 0)
            break;
        ssize_t got = recv(fd, p, avail, 0);
        if (got <= 0)
            break;
        pc_proto_reader_commit(&rd, (size_t)got);
        int c = drain_frames(&rd, dec, kr, count, n, fn, arg);
        if (c < 0)
            break;
        count = c;
    }
    pc_proto_decoder_free(&dec);
    pc_proto_reader_free(&rd);
    return count;
}

int pc_h_decode_responses(const uint8_t *buf, size_t len, pc_h_response_fn fn, void *arg)
{
    pc_proto_reader_t rd;
    pc_proto_reader_init(&rd, PC_PROTO_DEFAULT_MAX_FRAME);
    pc_proto_decoder_t *dec = NULL;
    int count = 0;
    if (pc_proto_decoder_new(NULL, &dec) == 0 && pc_proto_reader_feed(&rd, buf, len) == 0) {
        int c = drain_frames(&rd, dec, NULL, 0, 1 << 30, fn, arg);
        count = c < 0 ? 0 : c;
    }
    pc_proto_decoder_free(&dec);
    pc_proto_reader_free(&rd);
    return count;
}

int pc_h_on_reply(void *arg, int index, const pc_response_t *r)
{
    pc_h_reply_t *x = arg;
    (void)index;
    x->status = r->status;
    x->op = r->op;
    x->n++;
    return 0;
}

int pc_h_on_stat(void *arg, int index, const pc_response_t *r)
{
    pc_h_stat_q_t *q = arg;
    (void)index;
    q->status = r->status;
    for (uint32_t k = 0; k < r->nstats; k++)
        if (r->stats[k].name.len == strlen(q->name) &&
            memcmp(r->stats[k].name.ptr, q->name, r->stats[k].name.len) == 0)
            q->value = r->stats[k].value;
    return 0;
}

int pc_h_send_all(int fd, const pc_buf_t *b)
{
    size_t sent = 0;
    while (sent < b->len) {
        ssize_t n = send(fd, b->data + sent, b->len - sent, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        sent += (size_t)n;
    }
    return 0;
}

int64_t pc_h_stat(pc_client_t *c, const char *name)
{
    pc_stat_entry_t *st = NULL;
    size_t n = 0;
    if (pc_client_stats(c, &st, &n) != 0)
        return -1;
    int64_t v = -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].name, name) == 0)
            v = st[i].value;
    pc_stats_free(st, n);
    return v;
}

int pc_h_backend_up(void *client) { return pc_h_stat(client, "backend_up") == 1; }

int pc_h_stat_is(void *arg)
{
    const pc_h_stat_arg_t *a = arg;
    return pc_h_stat(a->cl, a->name) == a->want;
}

int pc_h_stat_at_least(void *arg)
{
    const pc_h_stat_arg_t *a = arg;
    return pc_h_stat(a->cl, a->name) >= a->want;
}
