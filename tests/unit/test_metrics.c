/*
 * test_metrics.c -- the STATS names (pc_metrics_names, the PC_STATS table
 * of node/pc_metrics.h) against the counter tables of docs/OPERATIONS.md,
 * section "## Watching it": every name STATS sends is documented there,
 * every name documented there is sent, and no name is sent twice.
 *
 * The doc's names are every backticked word in the first column of the
 * table rows of that section (up to the next "## " heading). A name that
 * starts with '_' abbreviates one that shares the previous full name of
 * its cell up to that name's last '_': "`cluster_members_alive`,
 * `_suspect`" is cluster_members_alive and cluster_members_suspect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_metrics.h"

#ifndef PC_OPERATIONS_MD
#error "PC_OPERATIONS_MD: the path of docs/OPERATIONS.md (tests/CMakeLists.txt)"
#endif

#define SECTION "## Watching it"
#define SECTION_TITLE "Watching it" /* SECTION without its "## " */
#define MAX_NAMES 512
#define MAX_NAME 64

typedef struct {
    char name[MAX_NAMES][MAX_NAME];
    size_t n;
    int found;  /* the section heading was seen */
    int errors; /* names that could not be read (printed unless quiet) */
    int quiet;
} doc_names_t;

static void add_name(doc_names_t *d, const char *s, size_t len)
{
    if (len == 0 || len >= MAX_NAME || d->n == MAX_NAMES) {
        if (!d->quiet)
            print_error("doc: cannot keep name \"%.*s\"\n", (int)len, s);
        d->errors++;
        return;
    }
    memcpy(d->name[d->n], s, len);
    d->name[d->n][len] = '\0';
    d->n++;
}

/* The backticked names of one first-column cell [p, end). */
static void parse_cell(doc_names_t *d, const char *p, const char *end)
{
    const char *prev = NULL; /* the last full name of this cell */
    size_t prev_len = 0;
    for (;;) {
        const char *open = memchr(p, '`', (size_t)(end - p));
        if (open == NULL)
            return;
        const char *close = memchr(open + 1, '`', (size_t)(end - open - 1));
        if (close == NULL) {
            if (!d->quiet)
                print_error("doc: unbalanced backtick in \"%.*s\"\n", (int)(end - p), p);
            d->errors++;
            return;
        }
        const char *s = open + 1;
        size_t len = (size_t)(close - s);
        if (len > 0 && s[0] == '_') {
            /* an abbreviation: the previous full name up to its last '_' */
            const char *us = NULL;
            for (size_t i = 0; prev != NULL && i < prev_len; i++)
                if (prev[i] == '_')
                    us = prev + i;
            if (us == NULL) {
                if (!d->quiet)
                    print_error("doc: \"%.*s\" abbreviates nothing before it in its cell\n",
                            (int)len, s);
                d->errors++;
            } else {
                char full[2 * MAX_NAME]; /* prev and s are both < MAX_NAME */
                size_t plen = (size_t)(us - prev);
                memcpy(full, prev, plen);
                memcpy(full + plen, s, len < MAX_NAME ? len : MAX_NAME);
                add_name(d, full, plen + (len < MAX_NAME ? len : MAX_NAME));
            }
        } else {
            add_name(d, s, len);
            prev = s;
            prev_len = len < MAX_NAME ? len : 0;
        }
        p = close + 1;
    }
}

/* The names of section SECTION of the markdown text. */
static void parse_doc(doc_names_t *d, const char *text, int quiet)
{
    memset(d, 0, sizeof *d);
    d->quiet = quiet;
    int in = 0;
    for (const char *line = text; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            eol = line + strlen(line);
        size_t len = (size_t)(eol - line);
        if (len >= 3 && memcmp(line, "## ", 3) == 0) {
            if (in)
                break; /* the next section */
            size_t tl = len; /* the heading without trailing blanks */
            while (tl > 0 && (line[tl - 1] == ' ' || line[tl - 1] == '\r'))
                tl--;
            if (tl == strlen(SECTION) && memcmp(line, SECTION, tl) == 0) {
                in = 1;
                d->found = 1;
            }
        } else if (in && len > 0 && line[0] == '|') {
            const char *cell_end = memchr(line + 1, '|', len - 1);
            if (cell_end != NULL)
                parse_cell(d, line + 1, cell_end);
        }
        line = *eol ? eol + 1 : eol;
    }
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int doc_has(const doc_names_t *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->name[i], name) == 0)
            return 1;
    return 0;
}

/* ---- the parser itself, on a made-up page ---------------------------------- */

static void test_parser(void **state)
{
    (void)state;
    static const char page[] =
        "# Title\n"
        "| `not_this` | before the section |\n"
        "## Watching it better\n"
        "| `nor_this` | another section |\n"
        "## Watching it\n"
        "\n"
        "| counter | meaning |\n"
        "|---|---|\n"
        "| `one`, `two_a` | `not_first_column` |\n"
        "| `members_alive`, `_suspect`, `_dead` | abbreviated |\n"
        "text with `inline_code` outside a table\n"
        "### A subsection\n"
        "| `three` | still in |\n"
        "| `x_y_z`, `_w`, `plain`, `_nothing` | |\n"
        "## Next\n"
        "| `after` | not in |\n";
    doc_names_t *d = malloc(sizeof *d);
    assert_non_null(d);
    parse_doc(d, page, 1);
    assert_true(d->found);
    static const char *const want[] = {"one",          "two_a", "members_alive",
                                       "members_suspect", "members_dead", "three",
                                       "x_y_z",        "x_y_w", "plain"};
    assert_int_equal(d->n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < d->n; i++)
        assert_string_equal(d->name[i], want[i]);
    /* `_nothing` after `plain` (no '_' to cut at): an error, not a name */
    assert_int_equal(d->errors, 1);

    parse_doc(d, "## Elsewhere\n| `a` | |\n", 1);
    assert_false(d->found);
    assert_int_equal(d->n, 0);
    free(d);
}

/* ---- STATS against OPERATIONS.md ------------------------------------------- */

static void test_names_unique(void **state)
{
    (void)state;
    size_t n = 0;
    const char *const *names = pc_metrics_names(&n);
    assert_non_null(names);
    assert_true(n > 50);
    size_t dup = 0;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(names[i]);
        assert_true(names[i][0] != '\0');
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                print_error("STATS sends \"%s\" twice (fields %zu and %zu)\n", names[i], j, i);
                dup++;
            }
        }
    }
    if (dup > 0)
        fail_msg("%zu duplicate STATS names", dup);
    /* the same table every call */
    size_t n2 = 0;
    assert_ptr_equal(pc_metrics_names(&n2), names);
    assert_int_equal(n2, n);
}

static void test_names_documented(void **state)
{
    (void)state;
    char *text = read_all(PC_OPERATIONS_MD);
    doc_names_t *d = malloc(sizeof *d);
    assert_non_null(d);
    parse_doc(d, text, 0);
    free(text);
    if (!d->found)
        fail_msg("%s has no section \"%s\"", PC_OPERATIONS_MD, SECTION);
    assert_int_equal(d->errors, 0);
    assert_true(d->n > 0);

    size_t n = 0;
    const char *const *names = pc_metrics_names(&n);
    size_t undocumented = 0, unknown = 0;
    for (size_t i = 0; i < n; i++) {
        if (!doc_has(d, names[i])) {
            print_error("STATS sends \"%s\", which docs/OPERATIONS.md \"%s\" does not list\n",
                        names[i], SECTION_TITLE);
            undocumented++;
        }
    }
    for (size_t i = 0; i < d->n; i++) {
        size_t j = 0;
        while (j < n && strcmp(names[j], d->name[i]) != 0)
            j++;
        if (j == n) {
            print_error("docs/OPERATIONS.md \"%s\" lists \"%s\", which STATS does not send\n",
                        SECTION_TITLE, d->name[i]);
            unknown++;
        }
    }
    free(d);
    if (undocumented > 0 || unknown > 0)
        fail_msg("%zu STATS names undocumented, %zu documented names not in STATS",
                 undocumented, unknown);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser),
        cmocka_unit_test(test_names_unique),
        cmocka_unit_test(test_names_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
