#include "friendcli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "clock.h"
#include "friendview.h"
#include "host.h"
#include "payload.h"
#include "policy.h"
#include "segment.h"
#include "store.h"

/* Opens the store for an existing shop; prints why not. */
static store *open_for(const cfg *c, const char *cmd, const char *shop)
{
    if (cfg_find_shop(c, shop) == NULL) {
        fprintf(stderr, "kizuna %s: no shop '%s' in the configuration\n", cmd, shop);
        return NULL;
    }
    store *st = NULL;
    char err[512];
    if (store_open(c->store_url, c->sync_mode, &st, err, sizeof err) != 0)
        fprintf(stderr, "kizuna %s: %s\n", cmd, err);
    return st;
}

/* "2026-11-23T10:00:00Z", or "-" for 0. */
static const char *iso(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0)
        return "-";
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static void print_json(const friend_view *v)
{
    json_object *o = friend_view_json(v);
    puts(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void print_row(const friend_view *v)
{
    const store_friend *f = &v->f;
    char a[32], b[32];
    printf("%-33s  %-9s  %-20s  %-20s  %s", f->user, f->following ? "following" : "blocked",
           iso(f->follow_ms, a, sizeof a), iso(f->last_active_ms, b, sizeof b),
           f->display_name[0] ? f->display_name : "-");
    for (size_t i = 0; i < v->ntags; i++)
        printf("%s%s", i == 0 ? "  #" : " #", v->tags[i]);
    putchar('\n');
}

typedef struct walk {
    const segment *seg;
    segment_now now;
    friendcli_print_fn print;
    void *arg;
    long shown;
} walk;

static int on_friend(void *arg, friend_view *v)
{
    walk *w = arg;
    if (friend_view_match(w->seg, v, &w->now)) {
        w->print(w->arg, v);
        w->shown++;
    }
    return 0;
}

static int compile(const char *cmd, const cfg_shop *cs, const char *expr, segment **out)
{
    segment_error e = {0};
    if (friend_view_compile(cs, expr, out, &e) == 0)
        return 0;
    fprintf(stderr, "kizuna %s: --segment, column %d: %s\n", cmd, e.column, e.message);
    return 2;
}

int friendcli_walk(const cfg *c, const char *cmd, const char *shop, const char *segment_expr,
                   friendcli_print_fn print, void *arg, long *shown)
{
    segment *seg = NULL;
    if (cfg_find_shop(c, shop) != NULL && segment_expr != NULL &&
        compile(cmd, cfg_find_shop(c, shop), segment_expr, &seg) != 0)
        return 2;
    store *st = open_for(c, cmd, shop);
    int rc = 1;
    if (st != NULL) {
        walk w = {.seg = seg,
                  .print = print,
                  .arg = arg,
                  .now = friend_view_now(cfg_find_shop(c, shop)->timezone, clock_now_ms())};
        char err[512] = "";
        rc = friend_view_stream(st, shop, "", 0, on_friend, &w, err, sizeof err);
        if (rc < 0)
            fprintf(stderr, "kizuna %s: %s\n", cmd, err);
        if (shown != NULL)
            *shown = w.shown;
        rc = rc == 0 ? 0 : 1;
    }
    store_close(st);
    segment_free(seg);
    return rc;
}

static void print_json_cb(void *arg, const friend_view *v)
{
    (void)arg;
    print_json(v);
}

static void print_row_cb(void *arg, const friend_view *v)
{
    (void)arg;
    print_row(v);
}

int friendcli_list(const cfg *c, const char *shop, const char *segment_expr, int json)
{
    long shown = 0;
    int rc = friendcli_walk(c, "friends", shop, segment_expr, json ? print_json_cb : print_row_cb,
                            NULL, &shown);
    fflush(stdout);
    if (rc == 0 && !json)
        fprintf(stderr, "%ld friend(s)\n", shown);
    return rc;
}

/* The friend's promotional sends against the caps and what waits for
 * them (docs/delivery.md), under the row. */
static void print_delivery(json_object *d)
{
    json_object *held = json_object_object_get(d, "held");
    json_object *cd = json_object_object_get(d, "capDay"),
                *cw = json_object_object_get(d, "capWeek");
    printf("  promotional sends: today %lld/%s, this week %lld/%s\n",
           (long long)payload_int(d, "today"), cd ? json_object_get_string(cd) : "-",
           (long long)payload_int(d, "week"), cw ? json_object_get_string(cw) : "-");
    for (size_t i = 0; i < json_object_array_length(held); i++) {
        json_object *h = json_object_array_get_idx(held, i);
        char at[32];
        printf("  held: send %lld, tag %s, priority %lld, %s until %s (%s)\n",
               (long long)payload_int(h, "send"),
               payload_str(h, "tag") ? payload_str(h, "tag") : "-",
               (long long)payload_int(h, "priority"), payload_str(h, "overCap"),
               iso(payload_int(h, "releaseMs"), at, sizeof at), payload_str(h, "reason"));
    }
    json_object *dropped = json_object_object_get(d, "dropped");
    for (size_t i = 0; i < json_object_array_length(dropped); i++) {
        json_object *h = json_object_array_get_idx(dropped, i);
        char at[32];
        printf("  dropped: tag %s, priority %lld, at %s (%s)\n",
               payload_str(h, "tag") ? payload_str(h, "tag") : "-",
               (long long)payload_int(h, "priority"), iso(payload_int(h, "atMs"), at, sizeof at),
               payload_str(h, "reason"));
    }
}

int friendcli_show(const cfg *c, const char *shop, const char *user, int json)
{
    store *st = open_for(c, "friend", shop);
    if (st == NULL)
        return 1;
    friend_view v;
    char err[512] = "";
    int rc = friend_view_load(st, shop, user, NULL, &v, err, sizeof err);
    if (rc == 0 && !v.known)
        fprintf(stderr, "kizuna friend: shop '%s' has never seen user '%s'\n", shop, user);
    json_object *delivery = NULL;
    const cfg_shop *cs = cfg_find_shop(c, shop);
    if (rc == 0 && v.known && cs->delivery.enabled)
        rc = policy_friend_json(st, cs, user, clock_now_ms(), &delivery, err, sizeof err);
    if (rc == 0 && v.known && json) {
        json_object *o = friend_view_json(&v);
        if (delivery != NULL)
            json_object_object_add(o, "delivery", json_object_get(delivery));
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else if (rc == 0 && v.known) {
        print_row(&v);
        if (delivery != NULL)
            print_delivery(delivery);
    } else if (rc != 0) {
        fprintf(stderr, "kizuna friend: %s\n", err);
    }
    json_object_put(delivery);
    rc = rc == 0 && v.known ? 0 : 1;
    friend_view_free(&v);
    store_close(st);
    return rc;
}

/* "+name" or "name": add; "-name": remove. NULL when the name is bad. */
static const char *tag_of(const char *op, int *add)
{
    *add = op[0] != '-';
    const char *name = op[0] == '+' || op[0] == '-' ? op + 1 : op;
    size_t n = strlen(name);
    if (n == 0 || n > FRIEND_TAG_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return NULL;
    return name;
}

/* A friend.* event {"<key>": …, "by": by} stored in the caller's
 * transaction; o is consumed. */
static int store_change(store *st, const char *shop, const char *topic, const char *user,
                        json_object *o, const char *by, int64_t now, char *err, size_t errlen)
{
    json_object_object_add(o, "by", json_object_new_string(by));
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char uid[37];
    payload_uuid(uid);
    int rc =
        store_event_append(st, shop, uid, topic, user, now, text, strlen(text), NULL, err, errlen);
    json_object_put(o);
    return rc;
}

int friendcli_apply_tag(store *st, const char *shop, const char *user, const char *op,
                        const char *by, FILE *out, char *err, size_t errlen)
{
    int add;
    const char *tag = tag_of(op, &add);
    if (tag == NULL) {
        snprintf(err, errlen, "'%s': a tag is 1 to %d bytes without control characters", op,
                 FRIEND_TAG_MAX);
        return KZ_EINVAL;
    }
    int64_t now = clock_now_ms();
    int rc = add ? store_friend_tag_add(st, shop, user, tag, now, err, errlen)
                 : store_friend_tag_remove(st, shop, user, tag, err, errlen);
    if (rc == KZ_EEXIST || rc == KZ_ENOTFOUND) {
        fprintf(out, "%s: %s %s (no change)\n", user, add ? "already has" : "does not have", tag);
        return 0;
    }
    if (rc != 0)
        return rc;
    json_object *p = json_object_new_object();
    json_object_object_add(p, "tag", json_object_new_string(tag));
    rc = store_change(st, shop, add ? "friend.tagged" : "friend.untagged", user, p, by, now, err,
                      errlen);
    if (rc == 0)
        fprintf(out, "%s: %s%s\n", user, add ? "+" : "-", tag);
    return rc;
}

int friendcli_apply_attr(store *st, const char *shop, const char *user, const cfg_friend_attr *a,
                         const char *value, const char *by, FILE *out, char *err, size_t errlen)
{
    char prev[1100];
    int rc = store_friend_attr_get(st, shop, user, a->name, NULL, prev, sizeof prev, err, errlen);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return rc;
    int had = rc == 0;
    if ((!had && value == NULL) || (had && value != NULL && strcmp(prev, value) == 0))
        return 0;
    int64_t now = clock_now_ms();
    rc = value == NULL
             ? store_friend_attr_del(st, shop, user, a->name, err, errlen)
             : store_friend_attr_set(st, shop, user, a->name, a->type, value, now, err, errlen);
    if (rc != 0)
        return rc;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(a->name));
    json_object_object_add(o, "value", friend_attr_json(a->type, value));
    json_object_object_add(o, "previous", friend_attr_json(a->type, had ? prev : NULL));
    rc = store_change(st, shop, "friend.attribute", user, o, by, now, err, errlen);
    if (rc == 0)
        fprintf(out, "%s: %s = %s\n", user, a->name, value ? value : "(removed)");
    return rc;
}

int friendcli_tag(const cfg *c, const char *shop, const char *user, char *const *ops, int nops)
{
    if (!host_line_id_ok(user, 0)) {
        fprintf(stderr, "kizuna tag: '%s' is not a LINE user id (U and 32 hex digits)\n", user);
        return 2;
    }
    store *st = open_for(c, "tag", shop);
    if (st == NULL)
        return 1;
    char err[512] = "", *done = NULL;
    size_t done_len = 0;
    FILE *out = open_memstream(&done, &done_len);
    int rc = out != NULL ? store_begin(st, err, sizeof err) : KZ_ENOMEM;
    for (int i = 0; rc == 0 && i < nops; i++)
        rc = friendcli_apply_tag(st, shop, user, ops[i], "cli", out, err, sizeof err);
    if (rc == 0)
        rc = store_commit(st, err, sizeof err);
    if (out != NULL)
        fclose(out);
    if (rc == 0) {
        fputs(done, stdout);
    } else {
        store_rollback(st);
        fprintf(stderr, "kizuna tag: %s (nothing changed)\n", err);
    }
    free(done);
    store_close(st);
    return rc == 0 ? 0 : rc == KZ_EINVAL ? 2 : 1;
}
