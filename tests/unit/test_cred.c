/* Unit tests for pc_cred: the AUTH command formatted from the
 * credentials, replacement, and replacement racing formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "pc_cred.h"
#include "pc_error.h"

/* What pc_cred_auth appends, NUL-terminated in out (cap bytes), and its
 * result. */
static int auth_text(pc_cred_t *c, char *out, size_t cap)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    int rc = pc_cred_auth(c, &b);
    snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    pc_buf_free(&b);
    return rc;
}

static void test_empty_sends_nothing(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(auth_text(NULL, out, sizeof out), 0);
    pc_cred_t *c = NULL;
    assert_int_equal(pc_cred_new(&c), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* A user without a password is no AUTH either. */
    assert_int_equal(pc_cred_set(c, "app", NULL), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 0);
    assert_int_equal(pc_cred_set(c, "app", ""), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 0);
    pc_cred_free(&c);
    assert_null(c);
    pc_cred_free(&c); /* NULL-safe */
    pc_cred_free(NULL);
}

static void test_password_and_user(void **state)
{
    (void)state;
    pc_cred_t *c = NULL;
    char out[256];
    assert_int_equal(pc_cred_new(&c), 0);
    assert_int_equal(pc_cred_set(c, NULL, "s3cret"), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 1);
    assert_string_equal(out, "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n");
    assert_int_equal(pc_cred_set(c, "", "s3cret"), 0); /* "" = the default user */
    assert_int_equal(auth_text(c, out, sizeof out), 1);
    assert_string_equal(out, "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n");
    assert_int_equal(pc_cred_set(c, "app", "pw two"), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 1);
    assert_string_equal(out, "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\npw two\r\n");
    /* Cleared: no AUTH from the next connection on. */
    assert_int_equal(pc_cred_set(c, NULL, NULL), 0);
    assert_int_equal(auth_text(c, out, sizeof out), 0);
    pc_cred_free(&c);
}

/* The caller's strings are copied: changing or freeing them later does
 * not change what is sent. */
static void test_copied(void **state)
{
    (void)state;
    pc_cred_t *c = NULL;
    char user[] = "app", pw[] = "first";
    char out[256];
    assert_int_equal(pc_cred_new(&c), 0);
    assert_int_equal(pc_cred_set(c, user, pw), 0);
    memcpy(pw, "xxxxx", 5);
    user[0] = 'X';
    assert_int_equal(auth_text(c, out, sizeof out), 1);
    assert_string_equal(out, "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$5\r\nfirst\r\n");
    pc_cred_free(&c);
}

/* A buffer too small for the command: PC_ENOMEM, and the credentials
 * are still there for the next try. */
static void test_out_of_room(void **state)
{
    (void)state;
    pc_cred_t *c = NULL;
    assert_int_equal(pc_cred_new(&c), 0);
    assert_int_equal(pc_cred_set(c, "app", "a-long-enough-password"), 0);
    pc_buf_t b;
    pc_buf_init(&b, 16);
    assert_int_equal(pc_cred_auth(c, &b), PC_ENOMEM);
    pc_buf_free(&b);
    char out[256];
    assert_int_equal(auth_text(c, out, sizeof out), 1);
    assert_non_null(strstr(out, "a-long-enough-password"));
    pc_cred_free(&c);
}

/* SIGHUP replaces the credentials while loops format AUTH: every command
 * formatted is one of the whole pairs set, never a mix (run it under
 * TSan too: CMake -DPC_TSAN=ON). */
typedef struct race {
    pc_cred_t *c;
    int bad;
    int seen[2];
} race_t;

static void *formatter(void *arg)
{
    race_t *r = arg;
    static const char *const want[2] = {
        "*3\r\n$4\r\nAUTH\r\n$5\r\nuser1\r\n$3\r\npw1\r\n",
        "*3\r\n$4\r\nAUTH\r\n$6\r\nuser-2\r\n$9\r\npassword2\r\n",
    };
    for (int i = 0; i < 20000; i++) {
        char out[256];
        if (auth_text(r->c, out, sizeof out) != 1) {
            r->bad++;
            continue;
        }
        if (strcmp(out, want[0]) == 0)
            r->seen[0]++;
        else if (strcmp(out, want[1]) == 0)
            r->seen[1]++;
        else
            r->bad++;
    }
    return NULL;
}

static void test_replaced_while_formatting(void **state)
{
    (void)state;
    race_t r = {0};
    assert_int_equal(pc_cred_new(&r.c), 0);
    assert_int_equal(pc_cred_set(r.c, "user1", "pw1"), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, formatter, &r), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(pc_cred_set(r.c, i % 2 ? "user1" : "user-2", i % 2 ? "pw1" : "password2"),
                         0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.bad, 0);
    assert_int_equal(r.seen[0] + r.seen[1], 20000);
    pc_cred_free(&r.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_sends_nothing),
        cmocka_unit_test(test_password_and_user),
        cmocka_unit_test(test_copied),
        cmocka_unit_test(test_out_of_room),
        cmocka_unit_test(test_replaced_while_formatting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
