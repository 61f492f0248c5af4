/* Segment expressions: compile, evaluate, report errors with columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/host.h>

#include "segment.h"

#define DAY_MS (86400LL * 1000)

/* 2026-11-23 12:00 UTC, a Monday. */
static const segment_now NOW = {
    .ms = 1795435200000LL, .year = 2026, .month = 11, .day = 23, .weekday = 1};

static const char *const TAGS[] = {"dry-skin", "乾燥肌", "vip"};
static const char *const LINKED[] = {"rakuten"};

static segment_attr ATTRS[] = {
    {.name = "gender", .type = SEGMENT_STRING, .v.s = "female"},
    {.name = "age", .type = SEGMENT_NUMBER, .v.n = 34},
    {.name = "birthday", .type = SEGMENT_DATE, .v.d = {1990, 11, 8}}, /* a Thursday */
    {.name = "member", .type = SEGMENT_BOOL, .v.b = 1},
    {.name = "newsletter", .type = SEGMENT_BOOL, .v.b = 0},
    {.name = "city", .type = SEGMENT_STRING, .v.s = "札幌"},
};

/* Followed 10 days ago, active 3 days ago, linked with rakuten. */
static segment_friend full_friend(void)
{
    segment_friend f = {
        .tags = TAGS,
        .ntags = sizeof TAGS / sizeof TAGS[0],
        .attrs = ATTRS,
        .nattrs = sizeof ATTRS / sizeof ATTRS[0],
        .linked = LINKED,
        .nlinked = 1,
        .followed_ms = NOW.ms - 10 * DAY_MS,
        .active_ms = NOW.ms - 3 * DAY_MS,
    };
    return f;
}

static const segment_attr_def SCHEMA_ATTRS[] = {
    {"gender", SEGMENT_STRING}, {"age", SEGMENT_NUMBER},  {"birthday", SEGMENT_DATE},
    {"member", SEGMENT_BOOL},   {"city", SEGMENT_STRING},
};
static const segment_schema SCHEMA = {SCHEMA_ATTRS, sizeof SCHEMA_ATTRS / sizeof SCHEMA_ATTRS[0]};

static int eval_expr(const char *expr, const segment_schema *schema, const segment_friend *f)
{
    segment *s = NULL;
    segment_error e;
    int rc = segment_compile(expr, schema, &s, &e);
    if (rc != 0)
        fail_msg("'%s' did not compile: column %d: %s", expr, e.column, e.message);
    int m = segment_eval(s, f, &NOW);
    segment_free(s);
    return m;
}

typedef struct {
    const char *expr;
    int full, empty; /* expected on full_friend() and on a friend with nothing */
} match_case;

static void check_matches(const match_case *cases, size_t n, const segment_schema *schema)
{
    segment_friend full = full_friend(), empty = {0};
    for (size_t i = 0; i < n; i++) {
        int got = eval_expr(cases[i].expr, schema, &full);
        if (got != cases[i].full)
            fail_msg("'%s' on the full friend: got %d", cases[i].expr, got);
        got = eval_expr(cases[i].expr, schema, &empty);
        if (got != cases[i].empty)
            fail_msg("'%s' on the empty friend: got %d", cases[i].expr, got);
    }
}

static void predicates(void **state)
{
    (void)state;
    static const match_case cases[] = {
        {"tag(\"dry-skin\")", 1, 0},
        {"tag(\"dry\")", 0, 0},
        {"tag(\"dry-skin-x\")", 0, 0},
        {"tag(\"乾燥肌\")", 1, 0},
        {"tag(\"v\\\"ip\")", 0, 0},
        {"linked", 1, 0},
        {"linked(\"rakuten\")", 1, 0},
        {"linked(\"shop\")", 0, 0},
        {"blocked", 0, 0},
        {"!blocked", 1, 1},
        {"followed < 30d", 1, 0},
        {"followed < 10d", 0, 0},
        {"followed <= 10d", 1, 0},
        {"followed > 1w", 1, 0},
        {"followed >= 240h", 1, 0},
        {"followed > 240h", 0, 0},
        {"followed < 864000s", 0, 0},
        {"followed < 864001s", 1, 0},
        {"followed < 14400m", 0, 0},
        {"active < 7d", 1, 0},
        {"active < 3d", 0, 0},
        {"active > 2d", 1, 0},
        {"!(active < 30d)", 0, 1}, /* never active: not recently active */
        {"has(attr.age)", 1, 0},
        {"has(attr.height)", 0, 0},
        {"!has(attr.age)", 0, 1},
    };
    check_matches(cases, sizeof cases / sizeof cases[0], NULL);
}

static void attributes(void **state)
{
    (void)state;
    static const match_case cases[] = {
        {"attr.gender == \"female\"", 1, 0},
        {"attr.gender != \"female\"", 0, 0}, /* missing: the comparison is false */
        {"!(attr.gender == \"female\")", 0, 1},
        {"attr.gender != \"male\"", 1, 0},
        {"attr.gender < \"g\"", 1, 0},
        {"attr.gender > \"g\"", 0, 0},
        {"attr.gender >= \"female\"", 1, 0},
        {"attr.gender <= \"fem\"", 0, 0},
        {"attr.city == \"札幌\"", 1, 0},
        {"attr.age >= 20", 1, 0},
        {"attr.age >= 34", 1, 0},
        {"attr.age > 34", 0, 0},
        {"attr.age < 34.5", 1, 0},
        {"attr.age == 34", 1, 0},
        {"attr.age != 34", 0, 0},
        {"attr.age > -1", 1, 0},
        {"attr.age <= 33.99", 0, 0},
        {"attr.birthday == \"1990-11-08\"", 1, 0},
        {"attr.birthday < \"1990-11-09\"", 1, 0},
        {"attr.birthday > \"1990-11-08\"", 0, 0},
        {"attr.birthday >= \"1990-01-01\"", 1, 0},
        {"attr.birthday != \"2000-02-29\"", 1, 0},
        {"attr.birthday.year == 1990", 1, 0},
        {"attr.birthday.month == now.month", 1, 0},
        {"attr.birthday.month == 11", 1, 0},
        {"attr.birthday.day == now.day", 0, 0},
        {"attr.birthday.day < now.day", 1, 0},
        {"attr.birthday.weekday == 4", 1, 0},
        {"attr.birthday.weekday == now.weekday", 0, 0},
        {"attr.birthday.year < now.year", 1, 0},
        {"attr.member", 1, 0},
        {"attr.newsletter", 0, 0},
        {"!attr.newsletter", 1, 1},
        {"attr.member == true", 1, 0},
        {"attr.member != true", 0, 0},
        {"attr.newsletter == false", 1, 0},
        {"attr.newsletter != false", 0, 0},
    };
    check_matches(cases, sizeof cases / sizeof cases[0], NULL);
    /* The same expressions, with their types declared, evaluate the same. */
    static const match_case typed[] = {
        {"attr.gender == \"female\"", 1, 0},
        {"attr.age >= 20", 1, 0},
        {"attr.birthday == \"1990-11-08\"", 1, 0},
        {"attr.birthday.month == now.month", 1, 0},
        {"attr.member", 1, 0},
        {"attr.member == false", 0, 0},
    };
    check_matches(typed, sizeof typed / sizeof typed[0], &SCHEMA);
}

/* Without a schema a literal of another type than the value never matches. */
static void type_mismatch_at_eval(void **state)
{
    (void)state;
    static const match_case cases[] = {
        {"attr.age == \"34\"", 0, 0},
        {"attr.age != \"34\"", 0, 0},
        {"attr.gender == 1", 0, 0},
        {"attr.gender == true", 0, 0},
        {"attr.birthday == 1990", 0, 0},
        {"attr.birthday == \"not a date\"", 0, 0},
        {"attr.gender == \"1990-11-08\"", 0, 0},
        {"attr.gender.year == 1990", 0, 0},
        {"attr.age", 0, 0},
        {"attr.member == 1", 0, 0},
        {"!(attr.age == \"34\")", 1, 1},
    };
    check_matches(cases, sizeof cases / sizeof cases[0], NULL);
}

static void operators(void **state)
{
    (void)state;
    static const match_case cases[] = {
        {"tag(\"vip\") && linked", 1, 0},
        {"tag(\"vip\") && blocked", 0, 0},
        {"blocked || tag(\"vip\")", 1, 0},
        {"blocked || tag(\"x\")", 0, 0},
        {"!tag(\"x\")", 1, 1},
        {"!!tag(\"vip\")", 1, 0},
        /* ! binds tighter than &&, && tighter than || */
        {"!blocked && tag(\"x\")", 0, 0},
        {"!(blocked && tag(\"x\"))", 1, 1},
        {"!attr.age >= 40", 1, 1}, /* a comparison is one predicate: !(attr.age >= 40) */
        {"!attr.age >= 30", 0, 1},
        {"tag(\"vip\") || blocked && tag(\"x\")", 1, 0},
        {"(tag(\"vip\") || blocked) && tag(\"x\")", 0, 0},
        {"blocked && tag(\"x\") || !linked", 0, 1},
        {"blocked && (tag(\"x\") || !linked)", 0, 0},
        {"tag(\"a\") || tag(\"b\") || tag(\"vip\") || tag(\"c\")", 1, 0},
        {"tag(\"vip\") && linked && attr.age > 30 && !blocked", 1, 0},
        {"((((tag(\"vip\")))))", 1, 0},
        {"  tag( \"vip\" )\n&&\tlinked ", 1, 0},
        {"tag(\"vip\")&&linked(\"rakuten\")&&attr.age>=34", 1, 0},
    };
    check_matches(cases, sizeof cases / sizeof cases[0], NULL);
}

/* Short-circuit shows through a friend whose tag list would crash: the right
 * operand must never be evaluated when the left one decides. */
static void short_circuit(void **state)
{
    (void)state;
    segment_friend f = {.blocked = 1, .ntags = 1000000}; /* tags is NULL: reading it faults */
    assert_int_equal(eval_expr("blocked || tag(\"x\")", NULL, &f), 1);
    assert_int_equal(eval_expr("!blocked && tag(\"x\")", NULL, &f), 0);
    assert_int_equal(eval_expr("(blocked || tag(\"a\")) || tag(\"b\")", NULL, &f), 1);
}

static void escapes(void **state)
{
    (void)state;
    static const char *const tags[] = {"a\"b", "c\\d", "e\nf"};
    segment_friend f = {.tags = tags, .ntags = 3};
    assert_int_equal(eval_expr("tag(\"a\\\"b\")", NULL, &f), 1);
    assert_int_equal(eval_expr("tag(\"c\\\\d\")", NULL, &f), 1);
    assert_int_equal(eval_expr("tag(\"e\\nf\")", NULL, &f), 1);
    assert_int_equal(eval_expr("tag(\"e\\\\nf\")", NULL, &f), 0);
}

/* The first attribute of a name wins; NULL entries are skipped. */
static void odd_views(void **state)
{
    (void)state;
    segment_attr attrs[] = {
        {.name = NULL, .type = SEGMENT_NUMBER, .v.n = 1},
        {.name = "age", .type = SEGMENT_NUMBER, .v.n = 20},
        {.name = "age", .type = SEGMENT_NUMBER, .v.n = 40},
        {.name = "bad", .type = SEGMENT_DATE, .v.d = {2000, 13, 1}},
        {.name = "s", .type = SEGMENT_STRING, .v.s = NULL},
    };
    const char *tags[] = {NULL, "x"};
    segment_friend f = {.attrs = attrs, .nattrs = 5, .tags = tags, .ntags = 2};
    assert_int_equal(eval_expr("attr.age == 20", NULL, &f), 1);
    assert_int_equal(eval_expr("tag(\"x\")", NULL, &f), 1);
    assert_int_equal(eval_expr("attr.bad.month == 13", NULL, &f), 0);
    assert_int_equal(eval_expr("attr.bad < \"2001-01-01\"", NULL, &f), 0);
    assert_int_equal(eval_expr("attr.s == \"\"", NULL, &f), 0);
    assert_int_equal(eval_expr("has(attr.s)", NULL, &f), 1);
    segment *s = NULL;
    assert_int_equal(segment_compile("blocked", NULL, &s, NULL), 0);
    assert_int_equal(segment_eval(s, NULL, &NOW), 0);
    assert_int_equal(segment_eval(NULL, &f, &NOW), 0);
    segment_free(s);
    segment_free(NULL);
}

/* One compiled segment evaluated against many friends gives each its own
 * answer (nothing is cached between calls). */
static void reuse(void **state)
{
    (void)state;
    segment *s = NULL;
    segment_error e;
    assert_int_equal(segment_compile("attr.age >= 20 && tag(\"vip\")", NULL, &s, &e), 0);
    const char *vip[] = {"vip"};
    for (int age = 0; age < 40; age++) {
        segment_attr a = {.name = "age", .type = SEGMENT_NUMBER, .v.n = age};
        segment_friend f = {.attrs = &a, .nattrs = 1, .tags = vip, .ntags = age % 2};
        assert_int_equal(segment_eval(s, &f, &NOW), age >= 20 && age % 2);
    }
    segment_free(s);
}

typedef struct {
    const char *expr;
    int column;
    const char *message;
} error_case;

static void check_errors(const error_case *cases, size_t n, const segment_schema *schema)
{
    for (size_t i = 0; i < n; i++) {
        segment *s = (segment *)&s; /* must come back NULL */
        segment_error e;
        int rc = segment_compile(cases[i].expr, schema, &s, &e);
        if (rc != KZ_EINVAL || s != NULL)
            fail_msg("'%s': rc %d, want KZ_EINVAL and no segment", cases[i].expr, rc);
        if (e.column != cases[i].column || strcmp(e.message, cases[i].message) != 0)
            fail_msg("'%s':\n got  %d: %s\n want %d: %s", cases[i].expr, e.column, e.message,
                     cases[i].column, cases[i].message);
    }
}

static void compile_errors(void **state)
{
    (void)state;
    static const error_case cases[] = {
        {"", 1, "empty expression"},
        {"   ", 1, "empty expression"},
        {"(tag(\"a\")", 10, "expected ')' to close '(' at column 1, found 'end of expression'"},
        {"x && (tag(\"a\") || blocked", 1,
         "unknown name 'x' (known: tag, linked, blocked, followed, active, has, attr.NAME)"},
        {"blocked && (tag(\"a\") blocked", 22,
         "expected ')' to close '(' at column 12, found 'blocked'"},
        {"tags(\"a\")", 1, "unknown function 'tags' (known: tag, linked, has)"},
        {"blocked || xyz (1)", 12, "unknown function 'xyz' (known: tag, linked, has)"},
        {"tag(\"a", 5, "unterminated string"},
        {"tag(\"a\\\")", 5, "unterminated string"},
        {"tag(\"a\\t\")", 7, "unknown escape '\\t' in string (known: \\\" \\\\ \\n)"},
        {"followed < 30", 12, "duration needs a unit (s, m, h, d, w)"},
        {"followed < 30x", 14, "unknown duration unit 'x' (s, m, h, d, w)"},
        {"followed < 30days", 14, "unknown duration unit 'days' (s, m, h, d, w)"},
        {"followed < 1.5d", 12, "a duration is a whole number of s, m, h, d or w"},
        {"followed < -3d", 12, "a duration cannot be negative"},
        {"followed < 99999999999999999w", 12, "duration '99999999999999999w' is too large"},
        {"followed == 3d", 10, "'followed' compares with <, <=, > or >=, found '=='"},
        {"active 3d", 8, "'active' compares with <, <=, > or >=, found '3d'"},
        {"active < \"3d\"", 10, "expected a duration such as 30d, found '\"3d\"'"},
        {"tag(\"a\") xyz", 10, "unexpected 'xyz' after a complete expression"},
        {"tag(\"a\") and blocked", 10,
         "unexpected 'and' after a complete expression (did you mean '&&'?)"},
        {"tag(\"a\") or blocked", 10,
         "unexpected 'or' after a complete expression (did you mean '||'?)"},
        {"blocked)", 8, "unexpected ')' after a complete expression"},
        {"tag(\"a\") & blocked", 10, "'&' is not an operator (did you mean '&&'?)"},
        {"tag(\"a\") | blocked", 10, "'|' is not an operator (did you mean '||'?)"},
        {"attr.age = 3", 10, "'=' is not an operator (did you mean '=='?)"},
        {"blocked && #", 12, "unexpected character '#'"},
        {"blocked && ☃", 12, "unexpected character '☃'"},
        {"Tag(\"a\")", 1, "unknown name 'Tag' (names are lowercase)"},
        {"not blocked", 1, "unknown name 'not' (use '!')"},
        {"blocked &&", 11, "expected a condition at the end of the expression"},
        {"()", 2, "expected a condition, found ')'"},
        {"!", 2, "expected a condition at the end of the expression"},
        {"&& blocked", 1, "expected a condition, found '&&'"},
        {"\"vip\"", 1, "expected a condition, found '\"vip\"'"},
        {"tag", 4, "expected '(' after 'tag', found 'end of expression'"},
        {"tag(vip)", 5, "tag takes a string, as in tag(\"name\"), found 'vip'"},
        {"tag(\"\")", 5, "tag name is empty"},
        {"tag(\"a\", \"b\")", 8, "expected ')' after the name, found ','"},
        {"linked(3)", 8, "linked takes a string, as in linked(\"name\"), found '3'"},
        {"blocked()", 8, "'blocked' takes no arguments"},
        {"has(age)", 5, "has takes an attribute, as in has(attr.age), found 'age'"},
        {"has(attr.age", 13, "expected ')' after the attribute, found 'end of expression'"},
        {"attr", 5, "expected '.' after 'attr' (attr.NAME), found 'end of expression'"},
        {"attr.", 6, "expected an attribute name after 'attr.', found 'end of expression'"},
        {"attr.Age", 6, "unknown name 'Age' (names are lowercase)"},
        {"attr.age ==", 12, "expected a string, number, true or false, found 'end of expression'"},
        {"attr.age == yes", 13, "expected a string, number, true or false, found 'yes'"},
        {"attr.member < true", 13, "true and false compare only with == and !="},
        {"attr.birthday.moon == 1", 15, "unknown date part 'moon' (year, month, day, weekday)"},
        {"attr.birthday.month", 20,
         "expected a comparison after 'attr.birthday.month', found 'end of expression'"},
        {"attr.birthday.month == \"11\"", 24, "expected a number or now.month, found '\"11\"'"},
        {"attr.birthday.month == now", 27, "expected '.' after 'now', found 'end of expression'"},
        {"attr.birthday.month == now.hour", 28,
         "unknown date part 'hour' (year, month, day, weekday)"},
        {"now.month == 3", 1, "'now' goes on the right, as in attr.birthday.month == now.month"},
        {"blocked && \xff", 12, "invalid UTF-8"},
        {"tag(\"\xe4\xb9\")", 6, "invalid UTF-8"},
    };
    check_errors(cases, sizeof cases / sizeof cases[0], NULL);
}

/* Columns count characters, not bytes. */
static void utf8_columns(void **state)
{
    (void)state;
    static const error_case cases[] = {
        {"tag(\"乾燥肌\") && foo", 15,
         "unknown name 'foo' (known: tag, linked, blocked, followed, active, has, attr.NAME)"},
        {"attr.city == \"札幌\" tag", 19, "unexpected 'tag' after a complete expression"},
        {"tag(\"🍣\") &&", 12, "expected a condition at the end of the expression"},
        {"(tag(\"é\")", 10, "expected ')' to close '(' at column 1, found 'end of expression'"},
        {"tag(\"é\") && (blocked", 21,
         "expected ')' to close '(' at column 13, found 'end of expression'"},
    };
    check_errors(cases, sizeof cases / sizeof cases[0], NULL);
}

static void schema_errors(void **state)
{
    (void)state;
    static const error_case cases[] = {
        {"attr.agee >= 20", 6, "unknown attribute 'agee'"},
        {"has(attr.height)", 10, "unknown attribute 'height'"},
        {"attr.age == \"20\"", 13, "attribute 'age' is a number, compared with a string"},
        {"attr.gender == 1", 16, "attribute 'gender' is a string, compared with a number"},
        {"attr.gender == true", 16, "attribute 'gender' is a string, compared with a bool"},
        {"attr.birthday == 19901108", 18, "attribute 'birthday' is a date, compared with a number"},
        {"attr.birthday < \"1990-13-01\"", 17, "\"1990-13-01\" is not a date (YYYY-MM-DD)"},
        {"attr.birthday < \"2026-02-29\"", 17, "\"2026-02-29\" is not a date (YYYY-MM-DD)"},
        {"attr.birthday < \"1990-1-1\"", 17, "\"1990-1-1\" is not a date (YYYY-MM-DD)"},
        {"attr.member == \"yes\"", 16, "attribute 'member' is a bool, compared with a string"},
        {"attr.age.month == 1", 10, "attribute 'age' is a number, it has no .month"},
        {"attr.age && blocked", 6, "attribute 'age' is a number; compare it, as in attr.age == …"},
        {"tag(\"a\") && attr.city", 18,
         "attribute 'city' is a string; compare it, as in attr.city == …"},
    };
    check_errors(cases, sizeof cases / sizeof cases[0], &SCHEMA);
    /* Dates in a leap year and the types the schema allows compile. */
    static const match_case ok[] = {
        {"attr.birthday < \"2024-02-29\"", 1, 0},
        {"has(attr.member) && attr.member", 1, 0},
    };
    check_matches(ok, sizeof ok / sizeof ok[0], &SCHEMA);
}

static void limits(void **state)
{
    (void)state;
    char expr[SEGMENT_EXPR_MAX + 2];
    segment *s = NULL;
    segment_error e;
    /* 64 levels of ( compile; the 65th is refused at its column. */
    int n = 0;
    for (int i = 0; i < SEGMENT_DEPTH_MAX; i++)
        expr[n++] = '(';
    n += sprintf(expr + n, "blocked");
    for (int i = 0; i < SEGMENT_DEPTH_MAX; i++)
        expr[n++] = ')';
    expr[n] = '\0';
    assert_int_equal(segment_compile(expr, NULL, &s, &e), 0);
    segment_friend f = {.blocked = 1};
    assert_int_equal(segment_eval(s, &f, &NOW), 1);
    segment_free(s);

    memset(expr, '!', SEGMENT_DEPTH_MAX + 1);
    strcpy(expr + SEGMENT_DEPTH_MAX + 1, "blocked");
    assert_int_equal(segment_compile(expr, NULL, &s, &e), KZ_EINVAL);
    assert_int_equal(e.column, SEGMENT_DEPTH_MAX + 1);
    assert_string_equal(e.message, "expression nested too deeply (limit 64)");

    /* A long flat chain is not nesting: it compiles and evaluates. */
    n = sprintf(expr, "tag(\"a\")");
    while (n + 24 < SEGMENT_EXPR_MAX)
        n += sprintf(expr + n, " || tag(\"a\")");
    n += sprintf(expr + n, " || blocked");
    assert_int_equal(segment_compile(expr, NULL, &s, &e), 0);
    assert_int_equal(segment_eval(s, &f, &NOW), 1);
    segment_free(s);

    memset(expr, ' ', SEGMENT_EXPR_MAX + 1);
    memcpy(expr, "blocked", 7);
    expr[SEGMENT_EXPR_MAX + 1] = '\0';
    assert_int_equal(segment_compile(expr, NULL, &s, &e), KZ_ETOOBIG);
    assert_null(s);
    assert_string_equal(e.message, "expression longer than 4096 bytes");
    assert_int_equal(segment_compile(NULL, NULL, &s, &e), KZ_EINVAL);
    assert_int_equal(segment_compile("blocked", NULL, NULL, NULL), KZ_EINVAL);
}

/* Random soups of tokens: each compiles or fails with a column inside the
 * expression (+1 for the end); compiled ones evaluate. ASan watches. */
static void token_soup(void **state)
{
    (void)state;
    static const char *const parts[] = {
        "tag(\"a\")",
        "tag",
        "(",
        ")",
        "\"",
        "\"x\"",
        "&&",
        "||",
        "!",
        "&",
        "=",
        "==",
        "<",
        ">=",
        "30d",
        "30",
        "-1.5",
        "attr",
        ".",
        "age",
        "birthday",
        "month",
        "now",
        "linked",
        "has",
        "true",
        "blocked",
        "followed",
        "active",
        "\\",
        "乾燥肌",
        "\xff",
        ",",
        "1990-11-08",
        "\"1990-11-08\"",
        " ",
        "9999999999999999999999999w",
    };
    const size_t nparts = sizeof parts / sizeof parts[0];
    segment_friend full = full_friend(), empty = {0};
    unsigned seed = 12345;
    char expr[512];
    int compiled = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0;
        int ntok = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
        for (int k = 0; k < ntok; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *t = parts[(seed >> 16) % nparts];
            if (n + strlen(t) + 2 >= sizeof expr)
                break;
            n += (size_t)sprintf(expr + n, "%s%s", t, (seed >> 8) & 1 ? " " : "");
        }
        expr[n] = '\0';
        segment *s = NULL;
        segment_error e;
        const segment_schema *schema = iter % 2 ? &SCHEMA : NULL;
        int rc = segment_compile(expr, schema, &s, &e);
        if (rc == 0) {
            compiled++;
            int a = segment_eval(s, &full, &NOW), b = segment_eval(s, &full, &NOW);
            assert_int_equal(a, b);
            assert_true(segment_eval(s, &empty, &NOW) <= 1);
            segment_free(s);
        } else {
            assert_int_equal(rc, KZ_EINVAL);
            assert_null(s);
            assert_true(e.column >= 1 && (size_t)e.column <= n + 1);
            assert_true(e.message[0] != '\0');
        }
    }
    assert_true(compiled > 0);
}

/* Random bytes from the language's alphabet (and a few outside it). */
static void byte_soup(void **state)
{
    (void)state;
    static const char alphabet[] = "()!&|=<>.,\"\\ \nadgtmswhy_019-attrnow\xe4\xb9\xbe\xff#A";
    segment_friend full = full_friend();
    unsigned seed = 777;
    char expr[64];
    for (int iter = 0; iter < 20000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % (sizeof expr - 1);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            expr[k] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        expr[n] = '\0';
        segment *s = NULL;
        segment_error e;
        if (segment_compile(expr, iter % 2 ? &SCHEMA : NULL, &s, &e) == 0) {
            assert_true(segment_eval(s, &full, &NOW) <= 1);
            segment_free(s);
        } else {
            assert_true(e.column >= 1 && (size_t)e.column <= n + 1);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(predicates),
        cmocka_unit_test(attributes),
        cmocka_unit_test(type_mismatch_at_eval),
        cmocka_unit_test(operators),
        cmocka_unit_test(short_circuit),
        cmocka_unit_test(escapes),
        cmocka_unit_test(odd_views),
        cmocka_unit_test(reuse),
        cmocka_unit_test(compile_errors),
        cmocka_unit_test(utf8_columns),
        cmocka_unit_test(schema_errors),
        cmocka_unit_test(limits),
        cmocka_unit_test(token_soup),
        cmocka_unit_test(byte_soup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
