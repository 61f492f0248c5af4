#include "friendview.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "tz.h"

static int keep_tag(void *arg, const char *tag)
{
    friend_view *v = arg;
    if (v->ntags < FRIENDVIEW_TAGS && (v->tags[v->ntags] = strdup(tag)) != NULL)
        v->ntags++;
    return 0;
}

static int keep_attr(void *arg, const char *name, int type, const char *value)
{
    friend_view *v = arg;
    size_t i = v->nattrs;
    if (i == FRIENDVIEW_ATTRS)
        return 0;
    v->attr_name[i] = strdup(name);
    v->attr_value[i] = strdup(value);
    v->attr_type[i] = type;
    if (v->attr_name[i] != NULL && v->attr_value[i] != NULL)
        v->nattrs++;
    else {
        free(v->attr_name[i]);
        free(v->attr_value[i]);
    }
    return 0;
}

static int keep_link(void *arg, const char *source, const char *member)
{
    friend_view *v = arg;
    size_t i = v->nlinks;
    if (i == FRIENDVIEW_LINKS)
        return 0;
    v->link_source[i] = strdup(source);
    v->link_member[i] = strdup(member);
    if (v->link_source[i] != NULL && v->link_member[i] != NULL)
        v->nlinks++;
    else {
        free(v->link_source[i]);
        free(v->link_member[i]);
    }
    return 0;
}

int friend_view_load(store *st, const char *shop, const char *user, const store_friend *row,
                     friend_view *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    int rc = 0;
    if (row != NULL)
        v->f = *row;
    else
        rc = store_friend_get(st, shop, user, &v->f, err, errlen);
    if (rc == KZ_ENOTFOUND) {
        snprintf(v->f.user, sizeof v->f.user, "%s", user);
        return 0;
    }
    v->known = rc == 0;
    if (rc == 0)
        rc = store_friend_tags(st, shop, user, keep_tag, v, err, errlen);
    if (rc == 0)
        rc = store_friend_attrs(st, shop, user, keep_attr, v, err, errlen);
    if (rc == 0)
        rc = store_friend_links(st, shop, user, keep_link, v, err, errlen);
    if (rc != 0)
        friend_view_free(v);
    return rc;
}

void friend_view_free(friend_view *v)
{
    for (size_t i = 0; i < v->ntags; i++)
        free(v->tags[i]);
    for (size_t i = 0; i < v->nattrs; i++) {
        free(v->attr_name[i]);
        free(v->attr_value[i]);
    }
    for (size_t i = 0; i < v->nlinks; i++) {
        free(v->link_source[i]);
        free(v->link_member[i]);
    }
    memset(v, 0, sizeof *v);
}

static json_object *jtime(int64_t ms)
{
    if (ms <= 0)
        return NULL;
    char b[32];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_object_new_string(b);
}

json_object *friend_attr_json(int type, const char *value)
{
    if (value == NULL)
        return NULL;
    if (type == CFG_ATTR_NUMBER)
        return json_object_new_double(strtod(value, NULL));
    if (type == CFG_ATTR_BOOL)
        return json_object_new_boolean(strcmp(value, "true") == 0);
    return json_object_new_string(value);
}

static void add_collections(json_object *o, const friend_view *v)
{
    json_object *tags = json_object_new_array(), *attrs = json_object_new_object(),
                *links = json_object_new_object();
    for (size_t i = 0; i < v->ntags; i++)
        json_object_array_add(tags, json_object_new_string(v->tags[i]));
    for (size_t i = 0; i < v->nattrs; i++)
        json_object_object_add(attrs, v->attr_name[i],
                               friend_attr_json(v->attr_type[i], v->attr_value[i]));
    for (size_t i = 0; i < v->nlinks; i++)
        json_object_object_add(links, v->link_source[i], json_object_new_string(v->link_member[i]));
    json_object_object_add(o, "tags", tags);
    json_object_object_add(o, "attributes", attrs);
    json_object_object_add(o, "links", links);
}

json_object *friend_view_json(const friend_view *v)
{
    const store_friend *f = &v->f;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "user", json_object_new_string(f->user));
    json_object_object_add(o, "following", json_object_new_boolean(f->following));
    json_object_object_add(o, "follows", json_object_new_int64(f->follows));
    json_object_object_add(o, "firstFollow", jtime(f->first_follow_ms));
    json_object_object_add(o, "lastFollow", jtime(f->follow_ms));
    json_object_object_add(o, "unfollow", jtime(f->unfollow_ms));
    json_object_object_add(o, "firstActive", jtime(f->first_active_ms));
    json_object_object_add(o, "lastActive", jtime(f->last_active_ms));
    json_object_object_add(o, "displayName", json_object_new_string(f->display_name));
    json_object_object_add(o, "pictureUrl", json_object_new_string(f->picture_url));
    json_object_object_add(o, "statusMessage", json_object_new_string(f->status_message));
    json_object_object_add(o, "language", json_object_new_string(f->language));
    json_object_object_add(o, "profileFetched", jtime(f->profile_ms));
    add_collections(o, v);
    return o;
}

static void attr_segment(int type, const char *value, segment_attr *a)
{
    switch (type) {
    case CFG_ATTR_NUMBER:
        a->type = SEGMENT_NUMBER;
        a->v.n = strtod(value, NULL);
        break;
    case CFG_ATTR_BOOL:
        a->type = SEGMENT_BOOL;
        a->v.b = strcmp(value, "true") == 0;
        break;
    case CFG_ATTR_DATE:
        a->type = SEGMENT_DATE;
        if (sscanf(value, "%d-%d-%d", &a->v.d.year, &a->v.d.month, &a->v.d.day) != 3)
            a->v.d = (segment_date){0, 0, 0};
        break;
    default:
        a->type = SEGMENT_STRING;
        a->v.s = value;
    }
}

int friend_view_match(const segment *seg, friend_view *v, const segment_now *now)
{
    if (seg == NULL)
        return 1;
    segment_friend sf;
    friend_view_segment(v, &sf);
    return segment_eval(seg, &sf, now);
}

void friend_view_segment(friend_view *v, segment_friend *out)
{
    for (size_t i = 0; i < v->nattrs; i++) {
        v->seg_attrs[i].name = v->attr_name[i];
        attr_segment(v->attr_type[i], v->attr_value[i], &v->seg_attrs[i]);
    }
    *out = (segment_friend){.tags = (const char *const *)v->tags,
                            .ntags = v->ntags,
                            .attrs = v->seg_attrs,
                            .nattrs = v->nattrs,
                            .linked = (const char *const *)v->link_source,
                            .nlinked = v->nlinks,
                            .followed_ms = v->known ? v->f.follow_ms : 0,
                            .active_ms = v->known ? v->f.last_active_ms : 0,
                            .blocked = v->known && !v->f.following};
}

int friend_date_ok(const char *s)
{
    int y, m, d;
    char tail;
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
        m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m != 2 || d <= 28 + leap;
}

static int parse_bool(const char *t, char *out, size_t outlen)
{
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(t, yes[i]) == 0 || strcasecmp(t, no[i]) == 0) {
            snprintf(out, outlen, "%s", strcasecmp(t, yes[i]) == 0 ? "true" : "false");
            return 0;
        }
    }
    return KZ_ETYPE;
}

int friend_attr_parse(int type, const char *text, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    static const char *const names[] = {"a string", "a number", "a date (YYYY-MM-DD)",
                                        "a bool (true/false)"};
    int rc = 0;
    char *end = NULL;
    double n;
    if (text == NULL || strlen(text) > FRIEND_VALUE_MAX)
        rc = KZ_ETYPE;
    else if (type == CFG_ATTR_NUMBER) {
        n = strtod(text, &end);
        rc = end != text && *end == '\0' && isfinite(n) ? 0 : KZ_ETYPE;
        if (rc == 0)
            snprintf(out, outlen, "%.17g", n);
    } else if (type == CFG_ATTR_BOOL)
        rc = parse_bool(text, out, outlen);
    else if (type == CFG_ATTR_DATE && !friend_date_ok(text))
        rc = KZ_ETYPE;
    else
        snprintf(out, outlen, "%s", text);
    if (rc != 0)
        snprintf(err, errlen, "expected %s, got '%.60s'", names[type >= 0 && type <= 3 ? type : 0],
                 text ? text : "");
    return rc;
}

typedef struct stream {
    friend_view v;
    friend_view_cb cb;
    void *arg;
} stream;

/* The friend's tags, attributes and links have been kept in s->v: hand the
 * view on, then empty it for the next friend. */
static int stream_row(void *arg, const store_friend *f)
{
    stream *s = arg;
    s->v.f = *f;
    s->v.known = 1;
    int rc = s->cb(s->arg, &s->v);
    friend_view_free(&s->v);
    return rc;
}

int friend_view_stream(store *st, const char *shop, const char *after, int following_only,
                       friend_view_cb cb, void *arg, char *err, size_t errlen)
{
    stream *s = calloc(1, sizeof *s); /* a view is ~10 KB: not on a worker's stack */
    if (s == NULL)
        return KZ_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    store_audience a = {
        .tag = keep_tag, .attr = keep_attr, .link = keep_link, .row = stream_row, .arg = &s->v};
    /* keep_* take the view; stream_row needs the stream: the view is its
     * first member */
    int rc = store_friends_audience(st, shop, after, following_only, &a, err, errlen);
    friend_view_free(&s->v); /* a walk stopped by an error mid-friend */
    free(s);
    return rc;
}

segment_now friend_view_now(const char *tz, int64_t ms)
{
    segment_now n = {.ms = ms};
    kz_local_time lt;
    tz_local(tz, ms, &lt);
    n.year = lt.year;
    n.month = lt.month;
    n.day = lt.day;
    n.weekday = lt.weekday;
    return n;
}

int friend_view_compile(const struct cfg_shop *shop, const char *expr, segment **out,
                        segment_error *e)
{
    static const segment_type types[] = {SEGMENT_STRING, SEGMENT_NUMBER, SEGMENT_DATE,
                                         SEGMENT_BOOL};
    segment_attr_def defs[FRIENDVIEW_ATTRS];
    size_t n = 0;
    for (size_t i = 0; shop != NULL && i < shop->nfriend_attrs && n < FRIENDVIEW_ATTRS; i++)
        defs[n++] =
            (segment_attr_def){shop->friend_attrs[i].name, types[shop->friend_attrs[i].type]};
    segment_schema schema = {defs, n};
    return segment_compile(expr, n > 0 ? &schema : NULL, out, e);
}
