/*
 * friendview — one friend with everything known about them (registry row,
 * tags, attributes, links), loaded from the store for the readers of the
 * registry: the friend_get / segment_match host slots, `kizuna friend` and
 * `kizuna friends --segment`. It renders the friend as the JSON object
 * host.h documents and as the view segment_eval takes.
 *
 * Ownership: a friend_view owns its strings until friend_view_free; the
 * segment_friend it fills points into it. Thread: whoever owns the store
 * connection.
 */
#ifndef KIZUNA_CORE_FRIENDVIEW_H
#define KIZUNA_CORE_FRIENDVIEW_H

#include <stddef.h>

#include <json-c/json.h>

#include "segment.h"
#include "store.h"

#define FRIENDVIEW_TAGS 64  /* at most this many tags are loaded */
#define FRIENDVIEW_ATTRS 64 /* attributes */
#define FRIENDVIEW_LINKS 16 /* linked sources */
#define FRIEND_TAG_MAX 100  /* bytes in a tag (UTF-8, no control characters) */

typedef struct friend_view {
    int known; /* 0: the shop never saw the user (every field empty) */
    store_friend f;
    char *tags[FRIENDVIEW_TAGS];
    size_t ntags;
    char *attr_name[FRIENDVIEW_ATTRS], *attr_value[FRIENDVIEW_ATTRS];
    int attr_type[FRIENDVIEW_ATTRS]; /* CFG_ATTR_* */
    size_t nattrs;
    char *link_source[FRIENDVIEW_LINKS], *link_member[FRIENDVIEW_LINKS];
    size_t nlinks;
    segment_attr seg_attrs[FRIENDVIEW_ATTRS]; /* filled by friend_view_segment */
} friend_view;

/* Loads user of shop. row: the registry row when the caller already has it
 * (a store_friends walk), else NULL to read it. An unknown user is not an
 * error: v->known = 0. */
int friend_view_load(store *st, const char *shop, const char *user, const store_friend *row,
                     friend_view *v, char *err, size_t errlen);
void friend_view_free(friend_view *v);

/* The object host.h documents for friend_get (the caller puts it). */
json_object *friend_view_json(const friend_view *v);

/* The friend as segment_eval sees it; pointers into v. */
void friend_view_segment(friend_view *v, segment_friend *out);
/* 1 when seg (NULL: every friend) matches v at now, 0 when not. */
int friend_view_match(const segment *seg, friend_view *v, const segment_now *now);

#define FRIEND_VALUE_MAX 1000 /* bytes in an attribute value */

/* A stored attribute text as the JSON value of its type (NULL for NULL). */
json_object *friend_attr_json(int type, const char *value);

/* 1 for a real calendar date "YYYY-MM-DD" (leap years included). */
int friend_date_ok(const char *s);
/* text (a CSV cell, a command-line value) as the canonical stored form of
 * an attribute of type CFG_ATTR_*: a number as "%.17g", a bool from
 * true/false/1/0/yes/no as "true"/"false", a date checked, a string as is.
 * KZ_ETYPE with the reason in err when it is not one. */
int friend_attr_parse(int type, const char *text, char *out, size_t outlen, char *err,
                      size_t errlen);

/* Streams the shop's friends after user `after` (store_friends_audience:
 * user order, no query per friend) as views: cb gets each one, valid
 * during the call only; a nonzero return stops the walk and is returned. */
typedef int (*friend_view_cb)(void *arg, friend_view *v);
int friend_view_stream(store *st, const char *shop, const char *after, int following_only,
                       friend_view_cb cb, void *arg, char *err, size_t errlen);

/* "Now" at ms in time zone tz, for now.* in expressions. */
segment_now friend_view_now(const char *tz, int64_t ms);

/* Compiles expr against the attributes shop declares (any attribute when it
 * declares none), as segment_compile. */
struct cfg_shop;
int friend_view_compile(const struct cfg_shop *shop, const char *expr, segment **out,
                        segment_error *e);

#endif
