/*
 * segment — the segment expression language (docs/segments.md).
 *
 *   tag("dry-skin") && attr.age >= 20 && !(active < 30d)
 *
 * An expression is compiled once (segment_compile) into an immutable
 * segment, then evaluated per friend (segment_eval) against a read-only view
 * the caller fills. Evaluation allocates nothing and takes no locks.
 *
 * Ownership: a segment belongs to whoever compiled it and is released with
 * segment_free; it keeps no pointer into expr or schema. segment_eval keeps
 * no pointer into the friend view or now after it returns.
 *
 * Thread: segment_compile and segment_free any thread; segment_eval from any
 * number of threads at once on the same segment (it is never written after
 * compile). The module does no time-zone work: the caller fills segment_now
 * in the shop's time zone.
 */
#ifndef KIZUNA_CORE_SEGMENT_H
#define KIZUNA_CORE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define SEGMENT_EXPR_MAX 4096 /* bytes of expression text */
#define SEGMENT_DEPTH_MAX 64  /* nesting of (, ! and operators */

typedef enum {
    SEGMENT_STRING,
    SEGMENT_NUMBER,
    SEGMENT_DATE,
    SEGMENT_BOOL,
} segment_type;

typedef struct {
    int year, month, day; /* month 1..12, day 1..31 */
} segment_date;

/* One attribute a shop declares; the strings are the caller's. */
typedef struct {
    const char *name;
    segment_type type;
} segment_attr_def;

typedef struct {
    const segment_attr_def *attrs;
    size_t count;
} segment_schema;

/* One attribute value of a friend; strings are the caller's. */
typedef struct {
    const char *name;
    segment_type type;
    union {
        const char *s;  /* SEGMENT_STRING, NUL-terminated UTF-8 */
        double n;       /* SEGMENT_NUMBER */
        segment_date d; /* SEGMENT_DATE */
        int b;          /* SEGMENT_BOOL, 0 or 1 */
    } v;
} segment_attr;

/* A friend as the evaluator sees it. Every pointer is the caller's and only
 * read during segment_eval. An attribute name appearing twice: the first
 * wins. */
typedef struct {
    const char *const *tags; /* ntags NUL-terminated names */
    size_t ntags;
    const segment_attr *attrs;
    size_t nattrs;
    const char *const *linked; /* member sources: "shop", "rakuten", … */
    size_t nlinked;
    int64_t followed_ms; /* when the friend followed, ms since epoch; 0 unknown */
    int64_t active_ms;   /* last interaction, ms since epoch; 0 never */
    int blocked;         /* nonzero: the friend blocked the account */
} segment_friend;

/* "Now" in the shop's time zone, filled by the caller. */
typedef struct {
    int64_t ms;           /* ms since epoch */
    int year, month, day; /* month 1..12 */
    int weekday;          /* 0 Sunday … 6 Saturday */
} segment_now;

typedef struct {
    int column;        /* 1-based, in UTF-8 characters, at the offending token */
    char message[256]; /* one English sentence; it does not repeat the column */
} segment_error;

typedef struct segment segment;

/* Compiles expr. schema may be NULL: then any attribute name is accepted and
 * a type mismatch found at evaluation is simply false. On success *out is
 * the caller's (segment_free) and returns 0. On error returns KZ_EINVAL
 * (KZ_ETOOBIG over SEGMENT_EXPR_MAX, KZ_ENOMEM) with *out NULL and e filled
 * (e may be NULL). */
int segment_compile(const char *expr, const segment_schema *schema, segment **out,
                    segment_error *e);

void segment_free(segment *s); /* NULL is fine */

/* 1 if f matches s, 0 if not. Allocates nothing. */
int segment_eval(const segment *s, const segment_friend *f, const segment_now *now);

#endif
