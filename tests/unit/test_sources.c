/*
 * test_sources.c -- pc_sources: what a source is, counting connections
 * against a limit, failures per second that survive a reconnect, and the
 * table's bounds (deletion keeps every entry reachable).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_error.h"
#include "pc_sources.h"

static pc_source_t v4(const char *ip)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
    pc_source_t s;
    pc_source_of((struct sockaddr *)&in, &s);
    return s;
}

static pc_source_t v6(const char *ip)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    pc_source_t s;
    pc_source_of((struct sockaddr *)&in6, &s);
    return s;
}

static void test_what_a_source_is(void **state)
{
    (void)state;
    pc_source_t a = v4("10.1.2.3"), b = v4("10.1.2.4"), m = v6("::ffff:10.1.2.3");
    assert_memory_not_equal(&a, &b, sizeof a);
    assert_memory_equal(&a, &m, sizeof a); /* IPv4-mapped = the IPv4 one */
    /* an IPv6 /64 is one source, whatever the interface id */
    pc_source_t x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff:eeee:dddd:cccc");
    pc_source_t z = v6("2001:db8:1:3::1");
    assert_memory_equal(&x, &y, sizeof x);
    assert_memory_not_equal(&x, &z, sizeof x);
    /* the port plays no part */
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
    pc_source_t p;
    pc_source_of((struct sockaddr *)&in, &p);
    assert_memory_equal(&a, &p, sizeof a);
}

static void test_limit_per_source(void **state)
{
    (void)state;
    pc_sources_t *t = NULL;
    assert_int_equal(pc_sources_new(100, &t), 0);
    pc_source_t a = v4("192.0.2.1"), b = v4("192.0.2.2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(pc_sources_open(t, &a, 3, 5000), 0);
    assert_int_equal(pc_sources_open(t, &a, 3, 5000), PC_EBUSY); /* not counted */
    assert_int_equal(pc_sources_conns(t, &a), 3);
    assert_int_equal(pc_sources_open(t, &b, 3, 5000), 0); /* others are not held up */
    pc_sources_close(t, &a, 5000);
    assert_int_equal(pc_sources_open(t, &a, 3, 5000), 0);
    assert_int_equal(pc_sources_open(t, &a, 0, 5000), 0); /* 0 = no limit */
    assert_int_equal(pc_sources_conns(t, &a), 4);
    for (int i = 0; i < 4; i++)
        pc_sources_close(t, &a, 5000);
    pc_sources_close(t, &b, 5000);
    assert_int_equal(pc_sources_count(t), 0); /* nothing left behind */
    pc_sources_close(t, &a, 5000);            /* unknown: no-op */
    pc_sources_free(&t);
    assert_null(t);
}

static void test_failures_per_second_survive_a_reconnect(void **state)
{
    (void)state;
    pc_sources_t *t = NULL;
    assert_int_equal(pc_sources_new(10, &t), 0);
    pc_source_t a = v4("198.51.100.7");
    assert_int_equal(pc_sources_open(t, &a, 0, 10000), 0);
    assert_int_equal(pc_sources_auth_fail(t, &a, 10000), 1);
    assert_int_equal(pc_sources_auth_fail(t, &a, 10500), 2);
    pc_sources_close(t, &a, 10600); /* the failures are this second's: kept */
    assert_int_equal(pc_sources_count(t), 1);
    assert_int_equal(pc_sources_open(t, &a, 0, 10700), 0);
    assert_int_equal(pc_sources_auth_fail(t, &a, 10800), 3);
    assert_int_equal(pc_sources_auth_fail(t, &a, 11000), 1); /* a new second */
    /* a loop whose clock is still in the last second adds to this one's
     * count: it must not start the count again */
    assert_int_equal(pc_sources_auth_fail(t, &a, 10999), 2);
    assert_int_equal(pc_sources_auth_fail(t, &a, 11001), 3);
    assert_int_equal(pc_sources_auth_fail(t, &a, 10998), 4);
    pc_sources_close(t, &a, 12500); /* the last second's failures: kept */
    assert_int_equal(pc_sources_count(t), 1);
    assert_int_equal(pc_sources_open(t, &a, 0, 13100), 0);
    pc_sources_close(t, &a, 13200); /* two seconds later: gone */
    assert_int_equal(pc_sources_count(t), 0);
    pc_sources_free(&t);
}

/* What the node compares tokens by: failures of this second and the last,
 * read without counting one. */
static void test_recent_failures(void **state)
{
    (void)state;
    pc_sources_t *t = NULL;
    assert_int_equal(pc_sources_new(10, &t), 0);
    pc_source_t a = v4("198.51.100.8"), b = v4("198.51.100.9");
    assert_int_equal(pc_sources_auth_recent(t, &a, 5000), 0); /* unknown */
    assert_int_equal(pc_sources_open(t, &a, 0, 5000), 0);
    assert_int_equal(pc_sources_open(t, &b, 0, 5000), 0);
    for (int i = 0; i < 7; i++)
        pc_sources_auth_fail(t, &a, 5100 + (uint64_t)i);
    assert_int_equal(pc_sources_auth_recent(t, &a, 5900), 7);
    assert_int_equal(pc_sources_auth_recent(t, &a, 5900), 7); /* reading counts nothing */
    assert_int_equal(pc_sources_auth_recent(t, &b, 5900), 0); /* another address */
    assert_int_equal(pc_sources_auth_recent(t, &a, 4999), 7); /* a clock behind */
    /* the next second: those 7 and 3 new */
    for (int i = 0; i < 3; i++)
        pc_sources_auth_fail(t, &a, 6100 + (uint64_t)i);
    assert_int_equal(pc_sources_auth_recent(t, &a, 6500), 10);
    /* a second on: the 3 only; two on, none */
    assert_int_equal(pc_sources_auth_recent(t, &a, 7000), 3);
    assert_int_equal(pc_sources_auth_recent(t, &a, 8000), 0);
    /* a failure two seconds after the last forgets them all */
    assert_int_equal(pc_sources_auth_fail(t, &a, 8100), 1);
    assert_int_equal(pc_sources_auth_recent(t, &a, 8200), 1);
    pc_sources_close(t, &a, 8300);
    pc_sources_close(t, &b, 8300);
    assert_int_equal(pc_sources_count(t), 1); /* a: a failure this second */
    pc_sources_free(&t);
}

/* Fill the table to capacity with sources that have no connection left
 * but failures this second, then two seconds later a newcomer purges them;
 * meanwhile every entry stays findable through deletions. */
static void test_capacity_and_purge(void **state)
{
    (void)state;
    enum { CAP = 200 };
    pc_sources_t *t = NULL;
    assert_int_equal(pc_sources_new(CAP, &t), 0);
    char ip[32];
    for (int i = 0; i < CAP; i++) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250);
        pc_source_t s = v4(ip);
        assert_int_equal(pc_sources_open(t, &s, 0, 1000), 0);
        pc_sources_auth_fail(t, &s, 1000);
    }
    pc_source_t extra = v4("10.9.9.9");
    assert_int_equal(pc_sources_open(t, &extra, 0, 1000), PC_ENOMEM); /* all busy */
    /* close every other one: the rest must all still be found */
    for (int i = 0; i < CAP; i += 2) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250);
        pc_source_t s = v4(ip);
        pc_sources_close(t, &s, 1000);
    }
    for (int i = 1; i < CAP; i += 2) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250);
        pc_source_t s = v4(ip);
        assert_int_equal(pc_sources_conns(t, &s), 1);
    }
    /* a second later their failures still count (this second and the
     * last), two seconds later they are idle: room again */
    assert_int_equal(pc_sources_open(t, &extra, 0, 2000), PC_ENOMEM);
    assert_int_equal(pc_sources_open(t, &extra, 0, 3000), 0);
    assert_int_equal(pc_sources_count(t), CAP / 2 + 1);
    for (int i = 1; i < CAP; i += 2) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250);
        pc_source_t s = v4(ip);
        assert_int_equal(pc_sources_conns(t, &s), 1);
        pc_sources_close(t, &s, 3000);
    }
    pc_sources_close(t, &extra, 3000);
    assert_int_equal(pc_sources_count(t), 0);
    pc_sources_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_a_source_is),
        cmocka_unit_test(test_limit_per_source),
        cmocka_unit_test(test_failures_per_second_survive_a_reconnect),
        cmocka_unit_test(test_recent_failures),
        cmocka_unit_test(test_capacity_and_purge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
