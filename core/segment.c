#include "segment.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/host.h>

/* ---- compiled form ----
 * One allocation: the segment header, its nodes, then a pool of the names
 * and strings they refer to (NUL-terminated, by offset). && and || are n-ary
 * (children chained through `next`), so a long chain costs no eval stack and
 * the tree is only as deep as the nesting the parser allowed. */

enum kind {
    N_AND,
    N_OR,
    N_NOT,
    N_TAG,
    N_LINKED_ANY,
    N_LINKED,
    N_BLOCKED,
    N_FOLLOWED,
    N_ACTIVE,
    N_HAS,
    N_ATTR_TRUE,
    N_ATTR_CMP,
    N_ATTR_PART,
};

enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
enum part { P_YEAR, P_MONTH, P_DAY, P_WEEKDAY };
enum lit { L_STRING, L_NUMBER, L_BOOL, L_NOW };

#define NONE UINT32_MAX

typedef struct {
    uint8_t kind, op, lit, part;
    uint8_t now_part; /* L_NOW: which field of segment_now */
    uint8_t has_date; /* L_STRING that reads as YYYY-MM-DD: date is set */
    uint32_t first;   /* N_AND/N_OR/N_NOT: first child */
    uint32_t next;    /* next sibling under N_AND/N_OR */
    uint32_t name;    /* pool offset: tag, source or attribute name */
    uint32_t str;     /* pool offset: L_STRING literal */
    int32_t date;     /* YYYYMMDD of a date literal */
    union {
        double n;   /* L_NUMBER */
        int b;      /* L_BOOL */
        int64_t ms; /* N_FOLLOWED/N_ACTIVE */
    } v;
} node;

struct segment {
    uint32_t root;
    uint32_t nnodes;
    const node *nodes;
    const char *pool;
};

/* ---- tokens ---- */

enum tok {
    T_EOF,
    T_IDENT,
    T_STRING,
    T_NUMBER,
    T_DURATION,
    T_LPAREN,
    T_RPAREN,
    T_DOT,
    T_COMMA,
    T_AND,
    T_OR,
    T_NOT,
    T_CMP,
};

typedef struct {
    int kind;
    size_t off, len; /* span in the source */
    int op;          /* T_CMP */
    double num;      /* T_NUMBER */
    int64_t ms;      /* T_DURATION */
    uint32_t str;    /* T_STRING: pool offset of the decoded text */
    uint32_t str_len;
} token;

typedef struct {
    const char *src;
    size_t n, pos;
    const segment_schema *schema;
    segment_error *e;
    token t; /* the one token of lookahead */
    node *nodes;
    uint32_t nnodes;
    char *pool;
    uint32_t plen;
    int depth;
} parser;

static const char *const type_names[] = {"a string", "a number", "a date", "a bool"};
static const char *const part_names[] = {"year", "month", "day", "weekday"};

/* ---- errors ---- */

static int column_at(const char *src, size_t off)
{
    int col = 1;
    for (size_t i = 0; i < off && src[i]; i++)
        if (((unsigned char)src[i] & 0xC0) != 0x80)
            col++;
    return col;
}

/* Only the first error is kept: later ones are consequences of it. */
static KZ_PRINTF(3, 4) int fail(parser *p, size_t off, const char *fmt, ...)
{
    if (p->e != NULL && p->e->column == 0) {
        p->e->column = column_at(p->src, off);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->e->message, sizeof p->e->message, fmt, ap);
        va_end(ap);
    }
    return KZ_EINVAL;
}

/* Source text for a message, cut at a character boundary so a long or
 * multibyte token never garbles the sentence. */
static const char *excerpt(const parser *p, size_t off, size_t len, char *buf, size_t size)
{
    size_t max = size - 4;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)p->src[off + len] & 0xC0) == 0x80)
            len--;
        snprintf(buf, size, "%.*s…", (int)len, p->src + off);
        return buf;
    }
    snprintf(buf, size, "%.*s", (int)len, p->src + off);
    return buf;
}

static const char *tok_text(const parser *p, const token *t, char *buf, size_t size)
{
    if (t->kind == T_EOF)
        return "end of expression";
    return excerpt(p, t->off, t->len, buf, size);
}

/* ---- lexer ---- */

static int is_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || c == '_';
}

static int is_ident(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

static int is_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static size_t utf8_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return len > n ? n : len;
}

/* Rejects malformed UTF-8 before lexing so columns are always countable. */
static int check_utf8(parser *p)
{
    const unsigned char *s = (const unsigned char *)p->src;
    for (size_t i = 0; i < p->n;) {
        size_t len = s[i] < 0x80         ? 1
                     : (s[i] >> 5) == 6  ? 2
                     : (s[i] >> 4) == 14 ? 3
                     : (s[i] >> 3) == 30 ? 4
                                         : 0;
        int ok = len > 0 && i + len <= p->n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (!ok)
            return fail(p, i, "invalid UTF-8");
        i += len;
    }
    return 0;
}

static int lex_string(parser *p, token *t)
{
    size_t i = p->pos + 1;
    t->kind = T_STRING;
    t->str = p->plen;
    for (;;) {
        if (i >= p->n)
            return fail(p, t->off, "unterminated string");
        char c = p->src[i];
        if (c == '"')
            break;
        if (c == '\\') {
            char x = i + 1 < p->n ? p->src[i + 1] : '\0';
            if (x != '"' && x != '\\' && x != 'n') {
                char buf[16];
                return fail(
                    p, i, "unknown escape '\\%s' in string (known: \\\" \\\\ \\n)",
                    x ? excerpt(p, i + 1, utf8_len(p->src + i + 1, p->n - i - 1), buf, sizeof buf)
                      : "");
            }
            c = x == 'n' ? '\n' : x;
            i++;
        }
        p->pool[p->plen++] = c;
        i++;
    }
    p->pool[p->plen++] = '\0';
    t->str_len = p->plen - 1 - t->str;
    t->len = i + 1 - t->off;
    return 0;
}

static int64_t unit_ms(char u)
{
    switch (u) {
    case 's':
        return 1000;
    case 'm':
        return 60 * 1000;
    case 'h':
        return 3600 * 1000;
    case 'd':
        return 86400 * 1000;
    case 'w':
        return 7 * 86400 * 1000;
    }
    return 0;
}

/* A number directly followed by letters is a duration: 30d, 2w. */
static int lex_duration(parser *p, token *t, size_t unit_off, int decimal)
{
    size_t end = unit_off;
    while (end < p->n && (is_ident(p->src[end]) || is_upper(p->src[end])))
        end++;
    t->len = end - t->off;
    char buf[48];
    int64_t unit = end - unit_off == 1 ? unit_ms(p->src[unit_off]) : 0;
    if (unit == 0)
        return fail(p, unit_off, "unknown duration unit '%s' (s, m, h, d, w)",
                    excerpt(p, unit_off, end - unit_off, buf, sizeof buf));
    if (t->num < 0)
        return fail(p, t->off, "a duration cannot be negative");
    if (decimal)
        return fail(p, t->off, "a duration is a whole number of s, m, h, d or w");
    if (t->num > (double)(INT64_MAX / 4) / (double)unit)
        return fail(p, t->off, "duration '%s' is too large",
                    excerpt(p, t->off, t->len, buf, sizeof buf));
    t->kind = T_DURATION;
    t->ms = (int64_t)t->num * unit;
    return 0;
}

static int lex_number(parser *p, token *t)
{
    size_t i = p->pos + (p->src[p->pos] == '-');
    int decimal = 0;
    while (i < p->n && is_digit(p->src[i]))
        i++;
    if (i + 1 < p->n && p->src[i] == '.' && is_digit(p->src[i + 1])) {
        decimal = 1;
        for (i++; i < p->n && is_digit(p->src[i]);)
            i++;
    }
    t->len = i - t->off;
    char buf[64];
    if (t->len >= sizeof buf)
        return fail(p, t->off, "number too long");
    memcpy(buf, p->src + t->off, t->len);
    buf[t->len] = '\0';
    t->kind = T_NUMBER;
    t->num = strtod(buf, NULL);
    if (i < p->n && (is_ident(p->src[i]) || is_upper(p->src[i])))
        return lex_duration(p, t, i, decimal);
    return 0;
}

/* The two-character operators and the single characters that look like
 * half of one. */
static int lex_operator(parser *p, token *t)
{
    static const struct {
        const char *text;
        int kind, op;
    } ops[] = {
        {"&&", T_AND, 0},     {"||", T_OR, 0},      {"==", T_CMP, OP_EQ}, {"!=", T_CMP, OP_NE},
        {"<=", T_CMP, OP_LE}, {">=", T_CMP, OP_GE}, {"<", T_CMP, OP_LT},  {">", T_CMP, OP_GT},
        {"!", T_NOT, 0},      {"(", T_LPAREN, 0},   {")", T_RPAREN, 0},   {".", T_DOT, 0},
        {",", T_COMMA, 0},
    };
    const char *s = p->src + p->pos;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        size_t len = strlen(ops[k].text);
        if (strncmp(s, ops[k].text, len) == 0) {
            t->kind = ops[k].kind;
            t->op = ops[k].op;
            t->len = len;
            return 0;
        }
    }
    if (*s == '&' || *s == '|' || *s == '=')
        return fail(p, p->pos, "'%c' is not an operator (did you mean '%c%c'?)", *s, *s, *s);
    char buf[16];
    return fail(p, p->pos, "unexpected character '%s'",
                excerpt(p, p->pos, utf8_len(s, p->n - p->pos), buf, sizeof buf));
}

static int lex_upper(parser *p, token *t)
{
    size_t i = p->pos;
    while (i < p->n && (is_ident(p->src[i]) || is_upper(p->src[i])))
        i++;
    char buf[48];
    return fail(p, t->off, "unknown name '%s' (names are lowercase)",
                excerpt(p, t->off, i - t->off, buf, sizeof buf));
}

static int next(parser *p)
{
    while (p->pos < p->n && strchr(" \t\r\n", p->src[p->pos]) != NULL)
        p->pos++;
    token *t = &p->t;
    memset(t, 0, sizeof *t);
    t->off = p->pos;
    int rc = 0;
    if (p->pos >= p->n) {
        t->kind = T_EOF;
        return 0;
    }
    char c = p->src[p->pos];
    if (is_ident_start(c)) {
        t->kind = T_IDENT;
        while (p->pos + t->len < p->n && is_ident(p->src[p->pos + t->len]))
            t->len++;
    } else if (c == '"') {
        rc = lex_string(p, t);
    } else if (is_digit(c) || (c == '-' && p->pos + 1 < p->n && is_digit(p->src[p->pos + 1]))) {
        rc = lex_number(p, t);
    } else if (is_upper(c)) {
        rc = lex_upper(p, t);
    } else {
        rc = lex_operator(p, t);
    }
    p->pos += t->len;
    return rc;
}

static int tok_is(const parser *p, const char *word)
{
    size_t len = strlen(word);
    return p->t.kind == T_IDENT && p->t.len == len && memcmp(p->src + p->t.off, word, len) == 0;
}

/* ---- nodes ---- */

static uint32_t add_node(parser *p, int kind)
{
    node *nd = &p->nodes[p->nnodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = (uint8_t)kind;
    nd->first = NONE;
    nd->next = NONE;
    return p->nnodes++;
}

static uint32_t pool_add(parser *p, const char *s, size_t len)
{
    uint32_t off = p->plen;
    memcpy(p->pool + off, s, len);
    p->pool[off + len] = '\0';
    p->plen += (uint32_t)len + 1;
    return off;
}

/* ---- dates ---- */

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Strict YYYY-MM-DD; *out is YYYYMMDD so dates compare as integers. */
static int parse_date(const char *s, size_t len, int32_t *out)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (size_t i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !is_digit(s[i]))
            return 0;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return 0;
    *out = y * 10000 + m * 100 + d;
    return 1;
}

/* ---- parser ---- */

static int parse_or(parser *p, uint32_t *out);

static int expect(parser *p, int kind, const char *what)
{
    if (p->t.kind == kind)
        return next(p);
    char buf[48];
    return fail(p, p->t.off, "expected %s, found '%s'", what, tok_text(p, &p->t, buf, sizeof buf));
}

static int enter(parser *p, size_t off)
{
    if (++p->depth > SEGMENT_DEPTH_MAX)
        return fail(p, off, "expression nested too deeply (limit %d)", SEGMENT_DEPTH_MAX);
    return 0;
}

/* tag("x") and linked("x"): the parenthesised string argument. */
static int parse_name_arg(parser *p, const char *fn, uint32_t *name)
{
    char hint[64];
    snprintf(hint, sizeof hint, "'(' after '%s'", fn);
    int rc = expect(p, T_LPAREN, hint);
    if (rc < 0)
        return rc;
    if (p->t.kind != T_STRING) {
        char buf[48];
        return fail(p, p->t.off, "%s takes a string, as in %s(\"name\"), found '%s'", fn, fn,
                    tok_text(p, &p->t, buf, sizeof buf));
    }
    if (p->t.str_len == 0)
        return fail(p, p->t.off, "%s name is empty", fn);
    *name = p->t.str;
    if ((rc = next(p)) < 0)
        return rc;
    return expect(p, T_RPAREN, "')' after the name");
}

static int parse_time(parser *p, int kind, const char *word, uint32_t *out)
{
    int rc = next(p);
    if (rc < 0)
        return rc;
    char buf[48];
    if (p->t.kind != T_CMP || p->t.op == OP_EQ || p->t.op == OP_NE)
        return fail(p, p->t.off, "'%s' compares with <, <=, > or >=, found '%s'", word,
                    tok_text(p, &p->t, buf, sizeof buf));
    int op = p->t.op;
    if ((rc = next(p)) < 0)
        return rc;
    if (p->t.kind == T_NUMBER)
        return fail(p, p->t.off, "duration needs a unit (s, m, h, d, w)");
    if (p->t.kind != T_DURATION)
        return fail(p, p->t.off, "expected a duration such as 30d, found '%s'",
                    tok_text(p, &p->t, buf, sizeof buf));
    uint32_t i = add_node(p, kind);
    p->nodes[i].op = (uint8_t)op;
    p->nodes[i].v.ms = p->t.ms;
    *out = i;
    return next(p);
}

/* attr.NAME: the name interned into the pool, its schema type in *type
 * (-1 without a schema). */
static int parse_attr_ref(parser *p, uint32_t *name, int *type, size_t *name_off)
{
    int rc = next(p);
    if (rc < 0 || (rc = expect(p, T_DOT, "'.' after 'attr' (attr.NAME)")) < 0)
        return rc;
    char buf[48];
    if (p->t.kind != T_IDENT)
        return fail(p, p->t.off, "expected an attribute name after 'attr.', found '%s'",
                    tok_text(p, &p->t, buf, sizeof buf));
    *name_off = p->t.off;
    *type = -1;
    if (p->schema != NULL) {
        size_t k = 0;
        for (; k < p->schema->count; k++) {
            const char *s = p->schema->attrs[k].name;
            if (s && strlen(s) == p->t.len && memcmp(s, p->src + p->t.off, p->t.len) == 0)
                break;
        }
        if (k == p->schema->count)
            return fail(p, p->t.off, "unknown attribute '%s'", tok_text(p, &p->t, buf, sizeof buf));
        *type = (int)p->schema->attrs[k].type;
    }
    *name = pool_add(p, p->src + p->t.off, p->t.len);
    return next(p);
}

static int parse_has(parser *p, uint32_t *out)
{
    int rc = next(p);
    if (rc < 0 || (rc = expect(p, T_LPAREN, "'(' after 'has'")) < 0)
        return rc;
    if (!tok_is(p, "attr")) {
        char buf[48];
        return fail(p, p->t.off, "has takes an attribute, as in has(attr.age), found '%s'",
                    tok_text(p, &p->t, buf, sizeof buf));
    }
    uint32_t name = 0;
    int type = -1;
    size_t name_off = 0;
    if ((rc = parse_attr_ref(p, &name, &type, &name_off)) < 0)
        return rc;
    *out = add_node(p, N_HAS);
    p->nodes[*out].name = name;
    return expect(p, T_RPAREN, "')' after the attribute");
}

static int parse_part_name(parser *p, int *part)
{
    char buf[48];
    for (int k = 0; k < 4; k++)
        if (tok_is(p, part_names[k])) {
            *part = k;
            return next(p);
        }
    return fail(p, p->t.off, "unknown date part '%s' (year, month, day, weekday)",
                tok_text(p, &p->t, buf, sizeof buf));
}

/* attr.NAME.part OP (number | now.part) */
static int parse_attr_part(parser *p, uint32_t name, int type, const char *aname, uint32_t *out)
{
    int rc = next(p); /* the '.' */
    if (rc < 0)
        return rc;
    size_t part_off = p->t.off;
    int part = 0;
    if ((rc = parse_part_name(p, &part)) < 0)
        return rc;
    if (type >= 0 && type != SEGMENT_DATE)
        return fail(p, part_off, "attribute '%s' is %s, it has no .%s", aname, type_names[type],
                    part_names[part]);
    char buf[48];
    if (p->t.kind != T_CMP)
        return fail(p, p->t.off, "expected a comparison after 'attr.%s.%s', found '%s'", aname,
                    part_names[part], tok_text(p, &p->t, buf, sizeof buf));
    uint32_t i = add_node(p, N_ATTR_PART);
    node *nd = &p->nodes[i];
    nd->name = name;
    nd->part = (uint8_t)part;
    nd->op = (uint8_t)p->t.op;
    if ((rc = next(p)) < 0)
        return rc;
    *out = i;
    if (p->t.kind == T_NUMBER) {
        nd->lit = L_NUMBER;
        nd->v.n = p->t.num;
        return next(p);
    }
    if (!tok_is(p, "now"))
        return fail(p, p->t.off, "expected a number or now.%s, found '%s'", part_names[part],
                    tok_text(p, &p->t, buf, sizeof buf));
    if ((rc = next(p)) < 0 || (rc = expect(p, T_DOT, "'.' after 'now'")) < 0)
        return rc;
    int now_part = 0;
    if ((rc = parse_part_name(p, &now_part)) < 0)
        return rc;
    nd->lit = L_NOW;
    nd->now_part = (uint8_t)now_part;
    return 0;
}

/* Literal for attr.NAME OP …; checked against the schema type when known. */
static int parse_literal(parser *p, node *nd, int type, const char *aname)
{
    char buf[48];
    int lt;
    if (p->t.kind == T_STRING)
        lt = SEGMENT_STRING;
    else if (p->t.kind == T_NUMBER)
        lt = SEGMENT_NUMBER;
    else if (tok_is(p, "true") || tok_is(p, "false"))
        lt = SEGMENT_BOOL;
    else
        return fail(p, p->t.off, "expected a string, number, true or false, found '%s'",
                    tok_text(p, &p->t, buf, sizeof buf));
    if (lt == SEGMENT_STRING) {
        nd->lit = L_STRING;
        nd->str = p->t.str;
        nd->has_date = (uint8_t)parse_date(p->pool + p->t.str, p->t.str_len, &nd->date);
        if (type == SEGMENT_DATE && !nd->has_date)
            return fail(p, p->t.off, "%s is not a date (YYYY-MM-DD)",
                        tok_text(p, &p->t, buf, sizeof buf));
        if (type == SEGMENT_DATE)
            lt = SEGMENT_DATE;
    } else if (lt == SEGMENT_NUMBER) {
        nd->lit = L_NUMBER;
        nd->v.n = p->t.num;
    } else {
        nd->lit = L_BOOL;
        nd->v.b = tok_is(p, "true");
    }
    if (type >= 0 && type != lt)
        return fail(p, p->t.off, "attribute '%s' is %s, compared with %s", aname, type_names[type],
                    type_names[lt]);
    return next(p);
}

static int parse_attr(parser *p, uint32_t *out)
{
    uint32_t name = 0;
    int type = -1;
    size_t name_off = 0;
    int rc = parse_attr_ref(p, &name, &type, &name_off);
    if (rc < 0)
        return rc;
    const char *aname = p->pool + name;
    if (p->t.kind == T_DOT)
        return parse_attr_part(p, name, type, aname, out);
    if (p->t.kind != T_CMP) {
        if (type >= 0 && type != SEGMENT_BOOL)
            return fail(p, name_off, "attribute '%s' is %s; compare it, as in attr.%s == …", aname,
                        type_names[type], aname);
        *out = add_node(p, N_ATTR_TRUE);
        p->nodes[*out].name = name;
        return 0;
    }
    size_t op_off = p->t.off;
    int op = p->t.op;
    uint32_t i = add_node(p, N_ATTR_CMP);
    p->nodes[i].name = name;
    p->nodes[i].op = (uint8_t)op;
    if ((rc = next(p)) < 0 || (rc = parse_literal(p, &p->nodes[i], type, aname)) < 0)
        return rc;
    if (p->nodes[i].lit == L_BOOL && op != OP_EQ && op != OP_NE)
        return fail(p, op_off, "true and false compare only with == and !=");
    *out = i;
    return 0;
}

static int unknown_name(parser *p)
{
    char buf[48];
    const char *name = tok_text(p, &p->t, buf, sizeof buf);
    size_t i = p->pos;
    while (i < p->n && strchr(" \t\r\n", p->src[i]) != NULL)
        i++;
    if (i < p->n && p->src[i] == '(')
        return fail(p, p->t.off, "unknown function '%s' (known: tag, linked, has)", name);
    if (tok_is(p, "not"))
        return fail(p, p->t.off, "unknown name 'not' (use '!')");
    return fail(p, p->t.off,
                "unknown name '%s' (known: tag, linked, blocked, followed, active, has, "
                "attr.NAME)",
                name);
}

static int parse_word(parser *p, uint32_t *out)
{
    int rc;
    if (tok_is(p, "tag") || tok_is(p, "linked")) {
        int kind = tok_is(p, "tag") ? N_TAG : N_LINKED;
        const char *fn = kind == N_TAG ? "tag" : "linked";
        if ((rc = next(p)) < 0)
            return rc;
        if (kind == N_LINKED && p->t.kind != T_LPAREN) {
            *out = add_node(p, N_LINKED_ANY);
            return 0;
        }
        uint32_t name = 0;
        if ((rc = parse_name_arg(p, fn, &name)) < 0)
            return rc;
        *out = add_node(p, kind);
        p->nodes[*out].name = name;
        return 0;
    }
    if (tok_is(p, "blocked")) {
        *out = add_node(p, N_BLOCKED);
        if ((rc = next(p)) < 0)
            return rc;
        if (p->t.kind == T_LPAREN)
            return fail(p, p->t.off, "'blocked' takes no arguments");
        return 0;
    }
    if (tok_is(p, "followed"))
        return parse_time(p, N_FOLLOWED, "followed", out);
    if (tok_is(p, "active"))
        return parse_time(p, N_ACTIVE, "active", out);
    if (tok_is(p, "has"))
        return parse_has(p, out);
    if (tok_is(p, "attr"))
        return parse_attr(p, out);
    if (tok_is(p, "now"))
        return fail(p, p->t.off, "'now' goes on the right, as in attr.birthday.month == now.month");
    return unknown_name(p);
}

static int parse_primary(parser *p, uint32_t *out)
{
    char buf[48];
    if (p->t.kind == T_IDENT)
        return parse_word(p, out);
    if (p->t.kind != T_LPAREN) {
        if (p->t.kind == T_EOF)
            return fail(p, p->t.off, "expected a condition at the end of the expression");
        return fail(p, p->t.off, "expected a condition, found '%s'",
                    tok_text(p, &p->t, buf, sizeof buf));
    }
    size_t open = p->t.off;
    int rc = enter(p, open);
    if (rc < 0 || (rc = next(p)) < 0 || (rc = parse_or(p, out)) < 0)
        return rc;
    if (p->t.kind != T_RPAREN)
        return fail(p, p->t.off, "expected ')' to close '(' at column %d, found '%s'",
                    column_at(p->src, open), tok_text(p, &p->t, buf, sizeof buf));
    p->depth--;
    return next(p);
}

static int parse_unary(parser *p, uint32_t *out)
{
    if (p->t.kind != T_NOT)
        return parse_primary(p, out);
    int rc = enter(p, p->t.off);
    if (rc < 0 || (rc = next(p)) < 0)
        return rc;
    uint32_t child = NONE;
    if ((rc = parse_unary(p, &child)) < 0)
        return rc;
    *out = add_node(p, N_NOT);
    p->nodes[*out].first = child;
    p->depth--;
    return 0;
}

/* One level of && or ||: operands chained under one n-ary node. */
static int parse_chain(parser *p, int tok, int kind, int (*operand)(parser *, uint32_t *),
                       uint32_t *out)
{
    uint32_t first = NONE;
    int rc = operand(p, &first);
    if (rc < 0 || p->t.kind != tok) {
        *out = first;
        return rc;
    }
    uint32_t parent = add_node(p, kind), last = first;
    p->nodes[parent].first = first;
    while (p->t.kind == tok) {
        uint32_t c = NONE;
        if ((rc = next(p)) < 0 || (rc = operand(p, &c)) < 0)
            return rc;
        p->nodes[last].next = c;
        last = c;
    }
    *out = parent;
    return 0;
}

static int parse_and(parser *p, uint32_t *out)
{
    return parse_chain(p, T_AND, N_AND, parse_unary, out);
}

static int parse_or(parser *p, uint32_t *out)
{
    return parse_chain(p, T_OR, N_OR, parse_and, out);
}

static int parse_all(parser *p, uint32_t *root)
{
    int rc = check_utf8(p);
    if (rc < 0 || (rc = next(p)) < 0)
        return rc;
    if (p->t.kind == T_EOF)
        return fail(p, 0, "empty expression");
    if ((rc = parse_or(p, root)) < 0)
        return rc;
    if (p->t.kind == T_EOF)
        return 0;
    char buf[48];
    const char *hint = tok_is(p, "and")  ? " (did you mean '&&'?)"
                       : tok_is(p, "or") ? " (did you mean '||'?)"
                                         : "";
    return fail(p, p->t.off, "unexpected '%s' after a complete expression%s",
                tok_text(p, &p->t, buf, sizeof buf), hint);
}

/* ---- compile ---- */

static segment *pack(const parser *p, uint32_t root)
{
    size_t nodes_size = (size_t)p->nnodes * sizeof(node);
    segment *s = malloc(sizeof *s + nodes_size + p->plen);
    if (s == NULL)
        return NULL;
    node *nodes = (node *)(s + 1);
    char *pool = (char *)(nodes + p->nnodes);
    memcpy(nodes, p->nodes, nodes_size);
    memcpy(pool, p->pool, p->plen);
    s->root = root;
    s->nnodes = p->nnodes;
    s->nodes = nodes;
    s->pool = pool;
    return s;
}

int segment_compile(const char *expr, const segment_schema *schema, segment **out, segment_error *e)
{
    if (e != NULL)
        memset(e, 0, sizeof *e);
    if (out != NULL)
        *out = NULL;
    parser p = {.src = expr, .schema = schema, .e = e};
    if (expr == NULL || out == NULL)
        return fail(&p, 0, "no expression");
    p.n = strlen(expr);
    if (p.n > SEGMENT_EXPR_MAX) {
        fail(&p, 0, "expression longer than %d bytes", SEGMENT_EXPR_MAX);
        return KZ_ETOOBIG;
    }
    /* Every token yields at most one node and at most its length + 1 pool
     * bytes, so these bounds hold for any input and no growth is needed. */
    p.nodes = malloc((p.n + 2) * sizeof(node));
    p.pool = malloc(2 * p.n + 2);
    uint32_t root = 0;
    int rc = p.nodes && p.pool ? parse_all(&p, &root) : KZ_ENOMEM;
    if (rc == 0 && (*out = pack(&p, root)) == NULL)
        rc = KZ_ENOMEM;
    if (rc == KZ_ENOMEM)
        fail(&p, 0, "out of memory");
    free(p.nodes);
    free(p.pool);
    return rc;
}

void segment_free(segment *s)
{
    free(s);
}

/* ---- evaluation ---- */

static int cmp_result(int c, int op)
{
    switch (op) {
    case OP_EQ:
        return c == 0;
    case OP_NE:
        return c != 0;
    case OP_LT:
        return c < 0;
    case OP_LE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static int cmp_num(double a, int op, double b)
{
    if (isnan(a) || isnan(b))
        return op == OP_NE;
    return cmp_result((a > b) - (a < b), op);
}

/* First byte first: most non-matching names differ there. */
static int has_string(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] != NULL && list[i][0] == name[0] && strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static const segment_attr *find_attr(const segment_friend *f, const char *name)
{
    for (size_t i = 0; i < f->nattrs; i++) {
        const char *a = f->attrs[i].name;
        if (a != NULL && a[0] == name[0] && strcmp(a, name) == 0)
            return &f->attrs[i];
    }
    return NULL;
}

static int valid_date(segment_date d)
{
    return d.month >= 1 && d.month <= 12 && d.day >= 1 && d.day <= 31;
}

/* 0 Sunday … 6 Saturday (Sakamoto). */
static int weekday_of(segment_date d)
{
    static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    int y = d.year - (d.month < 3);
    int w = (y + y / 4 - y / 100 + y / 400 + t[d.month - 1] + d.day) % 7;
    return w < 0 ? w + 7 : w;
}

static int date_part(segment_date d, int part)
{
    switch (part) {
    case P_YEAR:
        return d.year;
    case P_MONTH:
        return d.month;
    case P_DAY:
        return d.day;
    default:
        return weekday_of(d);
    }
}

static int now_part(const segment_now *now, int part)
{
    switch (part) {
    case P_YEAR:
        return now->year;
    case P_MONTH:
        return now->month;
    case P_DAY:
        return now->day;
    default:
        return now->weekday;
    }
}

/* A value of another type than the literal never matches, whatever op. */
static int eval_cmp(const segment *s, const node *nd, const segment_attr *a)
{
    switch (a->type) {
    case SEGMENT_STRING:
        return nd->lit == L_STRING && a->v.s != NULL &&
               cmp_result(strcmp(a->v.s, s->pool + nd->str), nd->op);
    case SEGMENT_NUMBER:
        return nd->lit == L_NUMBER && cmp_num(a->v.n, nd->op, nd->v.n);
    case SEGMENT_DATE: {
        if (!nd->has_date || !valid_date(a->v.d))
            return 0;
        int32_t d = a->v.d.year * 10000 + a->v.d.month * 100 + a->v.d.day;
        return cmp_result((d > nd->date) - (d < nd->date), nd->op);
    }
    case SEGMENT_BOOL:
        return nd->lit == L_BOOL && cmp_result((a->v.b != 0) != nd->v.b, nd->op);
    }
    return 0;
}

static int eval_part(const node *nd, const segment_attr *a, const segment_now *now)
{
    if (a->type != SEGMENT_DATE || !valid_date(a->v.d))
        return 0;
    double rhs = nd->lit == L_NOW ? now_part(now, nd->now_part) : nd->v.n;
    return cmp_num(date_part(a->v.d, nd->part), nd->op, rhs);
}

static int since(int64_t at, const segment_now *now, const node *nd)
{
    if (at == 0)
        return 0;
    int64_t ago = now->ms - at;
    return cmp_result((ago > nd->v.ms) - (ago < nd->v.ms), nd->op);
}

static int eval_node(const segment *s, uint32_t i, const segment_friend *f, const segment_now *now);

static int eval_chain(const segment *s, const node *nd, const segment_friend *f,
                      const segment_now *now)
{
    int want = nd->kind == N_OR; /* the value that decides the chain early */
    for (uint32_t c = nd->first; c != NONE; c = s->nodes[c].next)
        if (eval_node(s, c, f, now) == want)
            return want;
    return !want;
}

static int eval_attr(const segment *s, const node *nd, const segment_friend *f,
                     const segment_now *now)
{
    const segment_attr *a = find_attr(f, s->pool + nd->name);
    if (a == NULL)
        return 0;
    switch (nd->kind) {
    case N_HAS:
        return 1;
    case N_ATTR_TRUE:
        return a->type == SEGMENT_BOOL && a->v.b != 0;
    case N_ATTR_CMP:
        return eval_cmp(s, nd, a);
    default:
        return eval_part(nd, a, now);
    }
}

static int eval_node(const segment *s, uint32_t i, const segment_friend *f, const segment_now *now)
{
    const node *nd = &s->nodes[i];
    switch (nd->kind) {
    case N_AND:
    case N_OR:
        return eval_chain(s, nd, f, now);
    case N_NOT:
        return !eval_node(s, nd->first, f, now);
    case N_TAG:
        return has_string(f->tags, f->ntags, s->pool + nd->name);
    case N_LINKED_ANY:
        return f->nlinked > 0;
    case N_LINKED:
        return has_string(f->linked, f->nlinked, s->pool + nd->name);
    case N_BLOCKED:
        return f->blocked != 0;
    case N_FOLLOWED:
        return since(f->followed_ms, now, nd);
    case N_ACTIVE:
        return since(f->active_ms, now, nd);
    default:
        return eval_attr(s, nd, f, now);
    }
}

int segment_eval(const segment *s, const segment_friend *f, const segment_now *now)
{
    if (s == NULL || f == NULL || now == NULL)
        return 0;
    return eval_node(s, s->root, f, now);
}
