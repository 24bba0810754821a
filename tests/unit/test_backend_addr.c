/*
 * test_backend_addr.c -- pc_backend_addr: every accepted form of --redis
 * with the fields it parses to, every refusal with its code and the word
 * its message must hold, and the text for logs.
 *
 * Tables, one row per case, so that a form the header documents and this
 * file does not list stands out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pc_backend_addr.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Parses s, failing the test with the message if it is refused. */
static void parse_ok(const char *s, pc_backend_addr_t *a)
{
    char err[256] = "unset";
    int rc = pc_backend_addr_parse(s, a, err, sizeof(err));

    if (rc != 0)
        fail_msg("'%s': %d: %s", s, rc, err);
    assert_string_equal(err, "");
}

/* ---- accepted forms ----------------------------------------------------- */

/* One row: the input, then what it parses to. hosts is "h:p,h:p" (with
 * IPv6 hosts bare, as stored), "" for none. */
static const struct good {
    const char *s;
    enum pc_backend_mode mode;
    const char *hosts;
    const char *path;
    const char *master;
    int db;
} good[] = {
    {"none", PC_BACKEND_NONE, "", "", "", 0},
    {"NoNe", PC_BACKEND_NONE, "", "", "", 0},

    /* the legacy form, as pc_addr_parse reads it */
    {"127.0.0.1:6379", PC_BACKEND_SINGLE, "127.0.0.1:6379", "", "", 0},
    {"redis-1.example.com:7000", PC_BACKEND_SINGLE, "redis-1.example.com:7000", "", "", 0},
    {"redis:6379", PC_BACKEND_SINGLE, "redis:6379", "", "", 0}, /* a host named redis */
    {"[::1]:6380", PC_BACKEND_SINGLE, "::1:6380", "", "", 0},
    {"[fe80::1%eth0]:6379", PC_BACKEND_SINGLE, "fe80::1%eth0:6379", "", "", 0},
    {"h:1", PC_BACKEND_SINGLE, "h:1", "", "", 0},
    {"h:65535", PC_BACKEND_SINGLE, "h:65535", "", "", 0},
    {"h:00080", PC_BACKEND_SINGLE, "h:80", "", "", 0},

    /* redis:// */
    {"redis://10.0.0.9", PC_BACKEND_SINGLE, "10.0.0.9:6379", "", "", 0},
    {"redis://r1:6380", PC_BACKEND_SINGLE, "r1:6380", "", "", 0},
    {"redis://r1:6380/2", PC_BACKEND_SINGLE, "r1:6380", "", "", 2},
    {"redis://r1/5", PC_BACKEND_SINGLE, "r1:6379", "", "", 5},
    {"REDIS://r1/", PC_BACKEND_SINGLE, "r1:6379", "", "", 0},
    {"Redis://r1:7000/", PC_BACKEND_SINGLE, "r1:7000", "", "", 0},
    {"redis://r1/0", PC_BACKEND_SINGLE, "r1:6379", "", "", 0},
    {"redis://r1/007", PC_BACKEND_SINGLE, "r1:6379", "", "", 7},
    {"redis://r1/1000000", PC_BACKEND_SINGLE, "r1:6379", "", "", 1000000},
    {"redis://[::1]/3", PC_BACKEND_SINGLE, "::1:6379", "", "", 3},
    {"redis://[2001:db8::7]:6381", PC_BACKEND_SINGLE, "2001:db8::7:6381", "", "", 0},

    /* unix:// */
    {"unix:///run/redis.sock", PC_BACKEND_SINGLE, "", "/run/redis.sock", "", 0},
    {"unix:///run/redis.sock?db=2", PC_BACKEND_SINGLE, "", "/run/redis.sock", "", 2},
    {"UNIX:///run/redis.sock?db=0", PC_BACKEND_SINGLE, "", "/run/redis.sock", "", 0},
    /* an '@' in a path is a path, not a user (systemd instance names) */
    {"unix:///run/redis@main/redis.sock", PC_BACKEND_SINGLE, "", "/run/redis@main/redis.sock",
     "", 0},

    /* sentinel:// */
    {"sentinel://s1,s2,s3:26380/mymaster/1", PC_BACKEND_SENTINEL,
     "s1:26379,s2:26379,s3:26380", "", "mymaster", 1},
    {"sentinel://10.0.0.1:5000/m", PC_BACKEND_SENTINEL, "10.0.0.1:5000", "", "m", 0},
    {"SENTINEL://[::1]/m", PC_BACKEND_SENTINEL, "::1:26379", "", "m", 0},
    {"sentinel://s1:1,s1:1/my.master-1_X", PC_BACKEND_SENTINEL, "s1:1,s1:1", "",
     "my.master-1_X", 0},

    /* cluster:// */
    {"cluster://r1:7000,r2:7000", PC_BACKEND_CLUSTER, "r1:7000,r2:7000", "", "", 0},
    {"cluster://r1", PC_BACKEND_CLUSTER, "r1:6379", "", "", 0},
    {"Cluster://r1,[::1]:7001/0", PC_BACKEND_CLUSTER, "r1:6379,::1:7001", "", "", 0},
};

/* a->hosts as "h:p,h:p". */
static void hosts_text(const pc_backend_addr_t *a, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < a->nhosts && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s:%d", i ? "," : "",
                                 a->hosts[i].host, a->hosts[i].port);
}

static void test_accepted_forms(void **state)
{
    char hosts[PC_BACKEND_ADDR_MAX * 300];

    (void)state;
    for (size_t i = 0; i < N(good); i++) {
        pc_backend_addr_t a;

        memset(&a, 0x5a, sizeof(a));
        parse_ok(good[i].s, &a);
        hosts_text(&a, hosts, sizeof(hosts));
        if (a.mode != good[i].mode || strcmp(hosts, good[i].hosts) != 0 ||
            strcmp(a.path, good[i].path) != 0 || strcmp(a.master, good[i].master) != 0 ||
            a.db != good[i].db)
            fail_msg("'%s': mode %d hosts '%s' path '%s' master '%s' db %d; want mode %d "
                     "hosts '%s' path '%s' master '%s' db %d",
                     good[i].s, (int)a.mode, hosts, a.path, a.master, a.db, (int)good[i].mode,
                     good[i].hosts, good[i].path, good[i].master, good[i].db);
        /* A single server over TCP has exactly one host; a socket none. */
        if (a.mode == PC_BACKEND_SINGLE)
            assert_int_equal(a.nhosts, a.path[0] != '\0' ? 0 : 1);
    }
}

/* The largest of everything: 16 hosts, a 255-byte host, a 107-byte path,
 * a 127-byte master name. */
static void test_limits_accepted(void **state)
{
    char s[8192], name[300];
    pc_backend_addr_t a;
    size_t used;

    (void)state;
    used = (size_t)snprintf(s, sizeof(s), "cluster://");
    for (int i = 0; i < PC_BACKEND_ADDR_MAX; i++)
        used += (size_t)snprintf(s + used, sizeof(s) - used, "%sr%d:%d", i ? "," : "", i,
                                 7000 + i);
    parse_ok(s, &a);
    assert_int_equal(a.nhosts, PC_BACKEND_ADDR_MAX);
    assert_string_equal(a.hosts[15].host, "r15");
    assert_int_equal(a.hosts[15].port, 7015);

    memset(name, 'h', 255);
    name[255] = '\0';
    snprintf(s, sizeof(s), "redis://%s:1", name);
    parse_ok(s, &a);
    assert_string_equal(a.hosts[0].host, name);

    name[0] = '/';
    memset(name + 1, 'p', 106);
    name[107] = '\0';
    snprintf(s, sizeof(s), "unix://%s", name);
    parse_ok(s, &a);
    assert_string_equal(a.path, name);

    memset(name, 'm', 127);
    name[127] = '\0';
    snprintf(s, sizeof(s), "sentinel://s/%s", name);
    parse_ok(s, &a);
    assert_string_equal(a.master, name);
}

/* ---- refusals --------------------------------------------------------------- */

/* One row: the input, the code, and a word the message must hold. */
static const struct bad {
    const char *s;
    int rc;
    const char *word;
} bad[] = {
    {"", PC_EINVAL, "no address"},

    /* a user or password, anywhere */
    {"redis://user:pw@h:1", PC_EPERM, "--redis-password-file"},
    {"redis://:pw@h", PC_EPERM, "--redis-user"},
    {"user@h:6379", PC_EPERM, "never given in --redis"},
    {"sentinel://u:pw@s1/m", PC_EPERM, "--redis-password-file"},
    {"sentinel://s1,u:pw@s2/m", PC_EPERM, "--redis-password-file"},
    {"cluster://u@r1", PC_EPERM, "--redis-password-file"},
    {"unix://u:pw@/run/redis.sock", PC_EPERM, "--redis-password-file"},
    {"unix:///run/redis.sock?password=pw", PC_EPERM, "--redis-password-file"},
    {"unix:///run/redis.sock?db=1&user=pw", PC_EPERM, "--redis-password-file"},
    {"redis://h?password=pw", PC_EPERM, "--redis-password-file"},
    {"rediss://u:pw@h", PC_EPERM, "--redis-password-file"},

    /* schemes */
    {"http://h:1", PC_EINVAL, "unknown scheme 'http://'"},
    {"rediss://h", PC_EINVAL, "cluster://HOST[:PORT][,...]"},
    {"://h", PC_EINVAL, "unknown scheme"},
    {"redis:/h", PC_EINVAL, "has a '/'"},

    /* hosts */
    {"redis://", PC_EINVAL, "no host after 'redis://'"},
    {"redis:///2", PC_EINVAL, "no host"},
    {"redis://:6379", PC_EINVAL, "empty host"},
    {":6379", PC_EINVAL, "empty host"},
    {"[]:6379", PC_EINVAL, "empty host"},
    {"localhost", PC_EINVAL, "no port"},
    {"::1:80", PC_EINVAL, "more than one ':'"},
    {"redis://h:1:2", PC_EINVAL, "more than one ':'"},
    {"[::1:80", PC_EINVAL, "closing ']'"},
    {"[::1]x", PC_EINVAL, "after ']'"},
    {"redis://[::1]6379", PC_EINVAL, "after ']'"},
    {"[zz]:1", PC_EINVAL, "not an IPv6 address"},
    {"[localhost]:1", PC_EINVAL, "not an IPv6 address"},
    {"h%:1", PC_EINVAL, "not a host name"},
    {"redis://h h", PC_EINVAL, "not a host name"},
    {" h:1", PC_EINVAL, "not a host name"},
    {"redis://h#x", PC_EINVAL, "not a host name"},
    {"a:1,b:2", PC_EINVAL, "list of hosts"},
    {"h:6379/2", PC_EINVAL, "redis://HOST:PORT/DB"},
    {"/run/redis.sock", PC_EINVAL, "unix:///PATH"},

    /* ports */
    {"h:0", PC_ERANGE, "out of range"},
    {"h:65536", PC_ERANGE, "out of range"},
    {"redis://h:99999999999999999999", PC_ERANGE, "out of range"},
    {"h:000080", PC_ERANGE, "out of range"},
    {"redis://h:abc", PC_EINVAL, "not a number"},
    {"h:-1", PC_EINVAL, "not a number"},
    {"h:+1", PC_EINVAL, "not a number"},
    {"redis://h:", PC_EINVAL, "empty port"},
    {"h:", PC_EINVAL, "empty port"},
    {"sentinel://s1:/m", PC_EINVAL, "empty port"},
    {"[::1]:", PC_EINVAL, "empty port"},

    /* databases */
    {"redis://h/x", PC_EINVAL, "not a decimal number"},
    {"redis://h/-1", PC_EINVAL, "not a decimal number"},
    {"redis://h/1/2", PC_EINVAL, "not a decimal number"},
    {"redis://h//", PC_EINVAL, "not a decimal number"},
    {"redis://h/1000001", PC_ERANGE, "over the maximum of 1000000"},
    {"redis://h/99999999999999999999", PC_ERANGE, "over the maximum"},
    {"sentinel://s/m/x", PC_EINVAL, "not a decimal number"},
    {"sentinel://s/m/", PC_EINVAL, "empty database"},
    {"unix:///run/x?db=1000001", PC_ERANGE, "over the maximum"},
    {"unix:///run/x?db=", PC_EINVAL, "empty database"},
    {"unix:///run/x?db=a", PC_EINVAL, "not a decimal number"},
    {"cluster://r1/1", PC_ERANGE, "only database 0"},
    {"cluster://r1/", PC_EINVAL, "empty database"},
    {"cluster://r1/x", PC_EINVAL, "not a decimal number"},

    /* lists */
    {"sentinel://a:1,,b:2/m", PC_EINVAL, "host 2 of the sentinel:// list is empty"},
    {"cluster://a,", PC_EINVAL, "host 2 of the cluster:// list is empty"},
    {"cluster://,a", PC_EINVAL, "host 1 of the cluster:// list is empty"},
    {"cluster://", PC_EINVAL, "no host after 'cluster://'"},
    {"sentinel:///m", PC_EINVAL, "no host after 'sentinel://'"},
    {"cluster://a,b:x", PC_EINVAL, "not a number"},

    /* master names */
    {"sentinel://s1", PC_EINVAL, "missing master name"},
    {"sentinel://s1/", PC_EINVAL, "missing master name"},
    {"sentinel://s1//1", PC_EINVAL, "missing master name"},
    {"sentinel://s1/my master", PC_EINVAL, "may hold only letters"},
    {"sentinel://s1/m:x", PC_EINVAL, "may hold only letters"},

    /* unix:// */
    {"unix://run/redis.sock", PC_EINVAL, "must be absolute"},
    {"unix://", PC_EINVAL, "must be absolute"},
    {"unix://localhost/run/redis.sock", PC_EINVAL, "must be absolute"},
    {"unix:///run/x\x01y", PC_EINVAL, "control character"},
    {"unix:///run/x?foo=1", PC_EINVAL, "unknown query parameter 'foo'"},
    {"unix:///run/x?DB=1", PC_EINVAL, "unknown query parameter 'DB'"},
    {"unix:///run/x?db=1&db=2", PC_EINVAL, "twice"},
    {"unix:///run/x?db=1&", PC_EINVAL, "unknown query parameter ''"},
    {"unix:///run/x?", PC_EINVAL, "empty query"},
    {"unix:///run/x?db", PC_EINVAL, "no value"},

    /* query parameters elsewhere */
    {"redis://h?db=1", PC_EINVAL, "query parameters"},
    {"redis://h:1/2?timeout=1", PC_EINVAL, "only unix:// takes ?db=N"},
    {"h:1?x", PC_EINVAL, "query parameters"},
    {"cluster://a?ssl=true", PC_EINVAL, "query parameters"},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(bad); i++) {
        pc_backend_addr_t a, before;
        char err[512];
        int rc;

        memset(&a, 0x5a, sizeof(a));
        before = a;
        rc = pc_backend_addr_parse(bad[i].s, &a, err, sizeof(err));
        if (rc != bad[i].rc || strstr(err, bad[i].word) == NULL)
            fail_msg("'%s': %d '%s'; want %d and '%s'", bad[i].s, rc, err, bad[i].rc,
                     bad[i].word);
        /* One line, and nothing written to the result. */
        assert_null(strchr(err, '\n'));
        assert_memory_equal(&a, &before, sizeof(a));
        /* A password is never repeated. */
        if (rc == PC_EPERM)
            assert_null(strstr(err, "pw"));
    }
}

/* Bounds: one past each limit of test_limits_accepted. */
static void test_limits_refused(void **state)
{
    char s[8192], name[300], err[256];
    pc_backend_addr_t a;
    size_t used;

    (void)state;
    used = (size_t)snprintf(s, sizeof(s), "sentinel://");
    for (int i = 0; i <= PC_BACKEND_ADDR_MAX; i++)
        used += (size_t)snprintf(s + used, sizeof(s) - used, "%ss%d", i ? "," : "", i);
    snprintf(s + used, sizeof(s) - used, "/m");
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_ERANGE);
    assert_non_null(strstr(err, "more than 16 hosts"));

    memset(name, 'h', 256);
    name[256] = '\0';
    snprintf(s, sizeof(s), "cluster://a,%s:1", name);
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_ERANGE);
    assert_non_null(strstr(err, "longer than 255"));
    snprintf(s, sizeof(s), "%s", name);
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_ERANGE);
    assert_non_null(strstr(err, "longer than 255"));

    name[0] = '/';
    memset(name + 1, 'p', 107);
    name[108] = '\0';
    snprintf(s, sizeof(s), "unix://%s?db=1", name);
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_ERANGE);
    assert_non_null(strstr(err, "socket path of 108 bytes is longer than 107"));

    memset(name, 'm', 128);
    name[128] = '\0';
    snprintf(s, sizeof(s), "sentinel://s/%s", name);
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_ERANGE);
    assert_non_null(strstr(err, "master name of 128 bytes"));
}

/* NULL arguments, a missing or short error buffer, and what is quoted. */
static void test_arguments_and_messages(void **state)
{
    pc_backend_addr_t a;
    char err[256], tiny[8], s[512];

    (void)state;
    assert_int_equal(pc_backend_addr_parse(NULL, &a, err, sizeof(err)), PC_EINVAL);
    assert_non_null(strstr(err, "no address"));
    assert_int_equal(pc_backend_addr_parse("h:1", NULL, err, sizeof(err)), PC_EINVAL);
    /* err is optional, and a short one is cut, not overrun. */
    assert_int_equal(pc_backend_addr_parse("h:0", &a, NULL, 0), PC_ERANGE);
    assert_int_equal(pc_backend_addr_parse("h:1", &a, NULL, 0), 0);
    memset(tiny, 'x', sizeof(tiny));
    assert_int_equal(pc_backend_addr_parse("h:0", &a, tiny, sizeof(tiny)), PC_ERANGE);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    /* The parts quoted name the culprit exactly. */
    assert_int_equal(pc_backend_addr_parse("redis://r1:70000", &a, err, sizeof(err)),
                     PC_ERANGE);
    assert_string_equal(err, "port 70000 of 'r1' is out of range 1..65535");
    assert_int_equal(pc_backend_addr_parse("sentinel://s1/m/db2", &a, err, sizeof(err)),
                     PC_EINVAL);
    assert_string_equal(err, "database 'db2' is not a decimal number 0..1000000");
    /* Control characters are not written out, and long parts are cut. */
    assert_int_equal(pc_backend_addr_parse("redis://h\n\x1b[2J:1", &a, err, sizeof(err)),
                     PC_EINVAL);
    assert_null(strchr(err, '\n'));
    assert_null(strchr(err, '\x1b'));
    memset(s, 0, sizeof(s));
    memcpy(s, "sentinel://s/", 13);
    memset(s + 13, 'm', 100);
    s[113] = ' ';
    assert_int_equal(pc_backend_addr_parse(s, &a, err, sizeof(err)), PC_EINVAL);
    assert_non_null(strstr(err, "mmm...'"));
}

/* ---- describe ---------------------------------------------------------------- */

static void test_describe(void **state)
{
    static const struct {
        const char *s, *text;
    } cases[] = {
        {"none", "none"},
        {"127.0.0.1:6379", "127.0.0.1:6379"},
        {"redis://r1", "r1:6379"},
        {"redis://[::1]:6380/2", "[::1]:6380 db 2"},
        {"unix:///run/redis.sock", "unix:///run/redis.sock"},
        {"unix:///run/redis.sock?db=2", "unix:///run/redis.sock db 2"},
        {"sentinel://a,b,c/mymaster", "sentinel mymaster via 3 sentinels"},
        {"sentinel://a/m/4", "sentinel m via 1 sentinel db 4"},
        {"cluster://a:1,b:2", "cluster via 2 seeds"},
        {"cluster://a", "cluster via 1 seed"},
    };
    char out[128];

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        pc_backend_addr_t a;
        size_t n;

        parse_ok(cases[i].s, &a);
        n = pc_backend_addr_describe(&a, out, sizeof(out));
        assert_string_equal(out, cases[i].text);
        assert_int_equal(n, strlen(cases[i].text));
    }
}

static void test_describe_small_buffer(void **state)
{
    pc_backend_addr_t a;
    char out[16];

    (void)state;
    parse_ok("redis://10.0.0.9:6379/12", &a);
    /* "10.0.0.9:6379 db 12" is 19 bytes: cut to what fits, NUL-terminated. */
    memset(out, 'x', sizeof(out));
    assert_int_equal(pc_backend_addr_describe(&a, out, 5), 4);
    assert_string_equal(out, "10.0");
    assert_int_equal(out[5], 'x');
    /* cut inside the " db 12" that follows the address */
    assert_int_equal(pc_backend_addr_describe(&a, out, 16), 15);
    assert_string_equal(out, "10.0.0.9:6379 d");
    assert_int_equal(pc_backend_addr_describe(&a, out, 1), 0);
    assert_string_equal(out, "");
    /* cap 0 writes nothing */
    out[0] = 'x';
    assert_int_equal(pc_backend_addr_describe(&a, out, 0), 0);
    assert_int_equal(out[0], 'x');
    /* exactly enough */
    parse_ok("none", &a);
    assert_int_equal(pc_backend_addr_describe(&a, out, 5), 4);
    assert_string_equal(out, "none");
    assert_int_equal(pc_backend_addr_describe(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_forms),
        cmocka_unit_test(test_limits_accepted),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits_refused),
        cmocka_unit_test(test_arguments_and_messages),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_describe_small_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
