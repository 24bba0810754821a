/*
 * test_keys.c -- peercache-cli keygen and keyring, run as a user would
 * ($PC_CLI), on key files in a temporary directory.
 *
 * Every edit is checked three ways: the CLI's output and exit status, the
 * file's mode, and the keys a node would load from it
 * (pc_keyring_load_file), in order. No node or Redis is started: these
 * commands never touch the network, which the tests also pin by giving
 * them a node list that cannot parse.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_harness.h"
#include "pc_seal.h"

static char out[8192];

/* Runs the CLI with printf-style arguments; stdout and stderr both land
 * in out[]. PEERCACHE_NODES is garbage: a command that tried to reach a
 * node would fail on it. */
static int cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cli(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "PEERCACHE_NODES=not-a-node-list '%s' %s 2>&1", getenv("PC_CLI"),
             args);
    return pc_h_run(cmd, out, sizeof(out));
}

static void expect_out(const char *want)
{
    if (strcmp(out, want) != 0)
        fail_msg("output\n%s\nexpected\n%s", out, want);
}

static void expect_in_out(const char *want)
{
    if (strstr(out, want) == NULL)
        fail_msg("output\n%s\nlacks '%s'", out, want);
}

static void path_in_tmp(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", pc_h_tmpdir(), name);
}

static unsigned mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    return (unsigned)(st.st_mode & 07777);
}

/* The ids a node would load from path, in order; returns the count. */
static size_t load_ids(const char *path, uint32_t ids[PC_KEYRING_MAX])
{
    pc_keyring_t *kr = NULL;
    char err[512];

    if (pc_keyring_load_file(path, &kr, err, sizeof(err)) != 0)
        fail_msg("pc_keyring_load_file: %s", err);
    size_t n = pc_keyring_count(kr);
    for (size_t i = 0; i < n; i++)
        ids[i] = pc_keyring_id(kr, i);
    pc_keyring_free(&kr);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(65537);

    assert_non_null(f);
    assert_non_null(buf);
    *len = fread(buf, 1, 65536, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Nothing but the named entries (no FILE.tmp.* left behind). */
static int entries_in_tmp(const char *prefix)
{
    DIR *d = opendir(pc_h_tmpdir());
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* "key id XXXXXXXX ..." -> the id. */
static uint32_t id_in_out(void)
{
    unsigned id;

    if (sscanf(out, "key id %8x ", &id) != 1)
        fail_msg("no key id in '%s'", out);
    return id;
}

static int setup(void **state)
{
    (void)state;
    return getenv("PC_CLI") == NULL ? -1 : pc_seal_init();
}

/* The directory holds key files: leave nothing behind. */
static int teardown(void **state)
{
    (void)state;
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pc_h_tmpdir());
    return pc_h_run(cmd, NULL, 0) == 0 ? 0 : -1;
}

/* ---- keygen -------------------------------------------------------------- */

static void test_keygen(void **state)
{
    (void)state;
    char path[512], want[1024], dangling[512], target[512];
    uint32_t ids[PC_KEYRING_MAX];

    path_in_tmp(path, sizeof(path), "gen.key");
    assert_int_equal(cli("keygen '%s'", path), 0);
    uint32_t id = id_in_out();
    snprintf(want, sizeof(want), "key id %08x written to %s\n", id, path);
    assert_int_equal(strncmp(out, want, strlen(want)), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(load_ids(path, ids), 1);
    assert_int_equal(ids[0], id);

    char umask_path[512];
    path_in_tmp(umask_path, sizeof(umask_path), "gen-umask0.key");
    assert_int_equal(cli("--nodes x keygen '%s'", umask_path), 0); /* --nodes is ignored */
    /* a permissive umask does not loosen the mode */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "umask 000; '%s' keygen '%s.2' >/dev/null", getenv("PC_CLI"),
             umask_path);
    assert_int_equal(pc_h_run(cmd, NULL, 0), 0);
    strcat(umask_path, ".2");
    assert_int_equal(mode_of(umask_path), 0600);

    /* an existing file is never overwritten */
    size_t len1, len2;
    char *before = slurp(path, &len1);
    assert_int_equal(cli("keygen '%s'", path), 2);
    expect_in_out("already exists");
    char *after = slurp(path, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(before, after, len1);
    free(before);
    free(after);

    /* nor a symlink planted at the path, even a dangling one */
    path_in_tmp(dangling, sizeof(dangling), "dangling.key");
    path_in_tmp(target, sizeof(target), "dangling-target.key");
    assert_int_equal(symlink(target, dangling), 0);
    assert_int_equal(cli("keygen '%s'", dangling), 2);
    expect_in_out("already exists");
    assert_int_equal(access(target, F_OK), -1);

    /* a directory that does not exist */
    assert_int_equal(cli("keygen '%s/no/such/dir/k'", pc_h_tmpdir()), 2);
    expect_in_out("cannot create");
    expect_in_out(strerror(ENOENT));

    /* two keys are never the same */
    char other[512];
    path_in_tmp(other, sizeof(other), "gen2.key");
    assert_int_equal(cli("keygen '%s'", other), 0);
    assert_int_not_equal(id_in_out(), id);

    /* arguments */
    assert_int_equal(cli("keygen"), 2);
    expect_in_out("keygen: expected FILE");
    assert_int_equal(cli("keygen a b"), 2);
    assert_int_equal(cli("keygen --json '%s.3'", path), 2);
    expect_in_out("--json only applies");
}

/* ---- keyring ------------------------------------------------------------- */

static void test_keyring_rotation(void **state)
{
    (void)state;
    char path[512], want[1024];
    uint32_t ids[PC_KEYRING_MAX];

    path_in_tmp(path, sizeof(path), "ring.key");
    assert_int_equal(cli("keygen '%s'", path), 0);
    uint32_t old = id_in_out();
    /* an operator's comment survives every edit */
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("\n# rotated by ops, ticket 42\n", f);
    fclose(f);

    assert_int_equal(cli("keyring list '%s'", path), 0);
    snprintf(want, sizeof(want), "1 %08x primary\n", old);
    expect_out(want);

    /* step 1: add the new key (not primary) */
    assert_int_equal(cli("keyring add '%s'", path), 0);
    uint32_t new = id_in_out();
    snprintf(want, sizeof(want), "key id %08x added to %s\n", new, path);
    expect_out(want);
    assert_int_equal(load_ids(path, ids), 2);
    assert_int_equal(ids[0], old);
    assert_int_equal(ids[1], new);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(cli("keyring list '%s'", path), 0);
    snprintf(want, sizeof(want), "1 %08x primary\n2 %08x\n", old, new);
    expect_out(want);

    /* step 2: make it primary (ids in either case) */
    char upper[9];
    snprintf(upper, sizeof(upper), "%08X", new);
    assert_int_equal(cli("keyring use '%s' %s", path, upper), 0);
    snprintf(want, sizeof(want), "key id %08x is now the primary in %s\n", new, path);
    expect_out(want);
    assert_int_equal(load_ids(path, ids), 2);
    assert_int_equal(ids[0], new);
    assert_int_equal(ids[1], old);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(cli("keyring use '%s' %08x", path, new), 0);
    snprintf(want, sizeof(want), "key id %08x is already the primary in %s\n", new, path);
    expect_out(want);

    /* the primary cannot be removed */
    size_t len1, len2;
    char *before = slurp(path, &len1);
    assert_int_equal(cli("keyring remove '%s' %08x", path, new), 2);
    expect_in_out("is the primary: make another key primary first");
    char *after = slurp(path, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(before, after, len1);
    free(after);

    /* step 3: remove the old key */
    assert_int_equal(cli("keyring remove '%s' %08x", path, old), 0);
    snprintf(want, sizeof(want), "key id %08x removed from %s\n", old, path);
    expect_out(want);
    assert_int_equal(load_ids(path, ids), 1);
    assert_int_equal(ids[0], new);
    assert_int_equal(mode_of(path), 0600);
    after = slurp(path, &len2);
    assert_non_null(strstr(after, "\n# rotated by ops, ticket 42\n"));
    free(after);
    free(before);

    /* the last key cannot be removed */
    assert_int_equal(cli("keyring remove '%s' %08x", path, new), 2);
    expect_in_out("is the only key");
    assert_int_equal(load_ids(path, ids), 1);

    /* unknown ids: "no" (exit 1), like get of a missing key */
    uint32_t absent = new ^ 1;
    assert_int_equal(cli("keyring use '%s' %08x", path, absent), 1);
    expect_in_out("no key with id");
    assert_int_equal(cli("keyring remove '%s' %08x", path, absent), 1);
    assert_int_equal(load_ids(path, ids), 1);

    /* no temporary file is left behind */
    assert_int_equal(entries_in_tmp("ring.key"), 1);
}

static void test_keyring_refusals(void **state)
{
    (void)state;
    char path[512], link[512];
    uint32_t ids[PC_KEYRING_MAX];

    path_in_tmp(path, sizeof(path), "refuse.key");
    assert_int_equal(cli("keygen '%s'", path), 0);
    uint32_t id = id_in_out();

    /* usage */
    assert_int_equal(cli("keyring"), 2);
    assert_int_equal(cli("keyring list"), 2);
    assert_int_equal(cli("keyring frob '%s'", path), 2);
    expect_in_out("unknown subcommand 'frob'");
    assert_int_equal(cli("keyring use '%s'", path), 2);
    expect_in_out("keyring use: expected FILE ID");
    assert_int_equal(cli("keyring list '%s' extra", path), 2);
    assert_int_equal(cli("keyring use '%s' 1234567", path), 2);
    expect_in_out("is not a key id");
    assert_int_equal(cli("keyring use '%s' 0x123456", path), 2);
    assert_int_equal(cli("keyring remove '%s' 12345g78", path), 2);

    /* a file others can read: refused like a node refuses it, untouched */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(cli("keyring list '%s'", path), 2);
    expect_in_out("(mode 0640): chmod 600");
    assert_int_equal(cli("keyring add '%s'", path), 2);
    assert_int_equal(mode_of(path), 0640);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(load_ids(path, ids), 1);

    /* a missing file, a file that is not a key file */
    assert_int_equal(cli("keyring list '%s.missing'", path), 2);
    expect_in_out(strerror(ENOENT));
    char junk[512];
    path_in_tmp(junk, sizeof(junk), "junk.key");
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("# comment\nnot a key\n", f);
    fclose(f);
    assert_int_equal(chmod(junk, 0600), 0);
    assert_int_equal(cli("keyring add '%s'", junk), 2);
    expect_in_out("line 2: expected 64 hex digits");

    /* through a symlink the target is edited, the link stays a link */
    path_in_tmp(link, sizeof(link), "refuse-link.key");
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(cli("keyring add '%s'", link), 0);
    uint32_t added = id_in_out();
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(load_ids(path, ids), 2);
    assert_int_equal(ids[0], id);
    assert_int_equal(ids[1], added);
    assert_int_equal(mode_of(path), 0600);

    /* at most PC_KEYRING_MAX keys */
    for (int i = 2; i < PC_KEYRING_MAX; i++)
        assert_int_equal(cli("keyring add '%s'", path), 0);
    assert_int_equal(load_ids(path, ids), PC_KEYRING_MAX);
    assert_int_equal(cli("keyring add '%s'", path), 2);
    expect_in_out("already holds 16 keys");
    assert_int_equal(load_ids(path, ids), PC_KEYRING_MAX);
    assert_int_equal(cli("keyring list '%s'", path), 0);
    /* Lines are "N ID [primary]": look for a line that starts with the
     * number (a random id can end in "17" before " primary"). */
    assert_non_null(strstr(out, "\n16 "));
    assert_null(strstr(out, "\n17 "));
    assert_int_equal(entries_in_tmp("refuse.key"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen),
        cmocka_unit_test(test_keyring_rotation),
        cmocka_unit_test(test_keyring_refusals),
    };
    return pc_h_finish(cmocka_run_group_tests_name("keys", tests, setup, teardown));
}
