#include "broadcastcli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "broadcast.h"
#include "clock.h"
#include "friendview.h"
#include "message.h"
#include "payload.h"
#include "sandbox.h"
#include "segment.h"
#include "store.h"

static const char *json_text(json_object *o)
{
    return json_object_to_json_string_ext(o,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* "2026-11-23T10:00:00Z" */
static const char *iso(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* ---- what is to be sent ---- */

/* The messages of FILE as a JSON array (one object is taken as a list of
 * one), checked against LINE's rules; NULL after printing why not. */
static json_object *load_messages(const char *path)
{
    json_object *m = json_object_from_file(path);
    if (m == NULL) {
        const char *why = json_util_get_last_err(); /* ends in a newline */
        fprintf(stderr, "kizuna broadcast: --message %s: %s", path, why ? why : "unreadable\n");
        return NULL;
    }
    if (json_object_is_type(m, json_type_object)) {
        json_object *list = json_object_new_array();
        json_object_array_add(list, m);
        m = list;
    }
    const char *text = json_text(m);
    message_error e;
    if (message_validate(text, strlen(text), MESSAGE_MAX_PER_REQUEST, &e) != 0) {
        char line[1024];
        message_error_line(&e, line, sizeof line);
        fprintf(stderr, "kizuna broadcast: --message %s: %s\n", path, line);
        json_object_put(m);
        return NULL;
    }
    return m;
}

typedef struct counter {
    const segment *seg;
    segment_now now;
    int64_t n;
} counter;

static int count_one(void *arg, friend_view *v)
{
    counter *c = arg;
    c->n += friend_view_match(c->seg, v, &c->now);
    return 0;
}

/* Following friends the segment matches now: what the broadcast would
 * reach if the registry did not change meanwhile. */
static int count_recipients(store *st, const cfg_shop *cs, const segment *seg, int64_t *n,
                            char *err, size_t errlen)
{
    counter c = {.seg = seg, .now = friend_view_now(cs->timezone, clock_now_ms())};
    int rc = friend_view_stream(st, cs->id, "", 1, count_one, &c, err, errlen);
    *n = c.n;
    return rc;
}

/* ---- the quota (GET /v2/bot/message/quota and …/consumption) ---- */

typedef struct quota {
    int known;     /* both answers read */
    int limited;   /* type "limited" */
    int64_t limit; /* value */
    int64_t used;  /* totalUsage */
    char why[512]; /* when !known */
} quota;

static int api_base(const cfg *c, const cfg_shop *cs, const broadcast_opts *o, char *out,
                    size_t len)
{
    if (o->api_base != NULL)
        snprintf(out, len, "%s", o->api_base);
    else if (cs->line_api != NULL && strcmp(cs->line_api, "sandbox") == 0)
        snprintf(out, len, "http://%s", c->sandbox.listen);
    else if (cs->line_api != NULL)
        snprintf(out, len, "%s", cs->line_api);
    else
        return KZ_ENOTFOUND;
    return 0;
}

static json_object *api_get(const char *base, const char *path, const char *token, char *why,
                            size_t whylen)
{
    char url[600], err[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    long status = 0;
    char *resp = NULL;
    json_object *o = NULL;
    if (sandbox_http_auth("GET", url, token, NULL, 30, &status, &resp, err, sizeof err) != 0)
        snprintf(why, whylen, "%s", err);
    else if (status != 200)
        snprintf(why, whylen, "GET %.200s: HTTP %ld %.200s", url, status, resp ? resp : "");
    else if ((o = json_tokener_parse(resp)) == NULL)
        snprintf(why, whylen, "GET %.200s: not JSON", url);
    free(resp);
    return o;
}

static quota read_quota(const cfg *c, const cfg_shop *cs, const broadcast_opts *o)
{
    quota q = {0};
    char base[512];
    if (cs->line_access_token == NULL || api_base(c, cs, o, base, sizeof base) != 0) {
        snprintf(q.why, sizeof q.why, "shop '%s' has no line.access_token / line.api", cs->id);
        return q;
    }
    json_object *lim =
        api_get(base, "/v2/bot/message/quota", cs->line_access_token, q.why, sizeof q.why);
    json_object *use = lim != NULL ? api_get(base, "/v2/bot/message/quota/consumption",
                                             cs->line_access_token, q.why, sizeof q.why)
                                   : NULL;
    if (lim != NULL && use != NULL) {
        q.known = 1;
        q.limited =
            payload_str(lim, "type") != NULL && strcmp(payload_str(lim, "type"), "limited") == 0;
        q.limit = payload_int(lim, "value");
        q.used = payload_int(use, "totalUsage");
    }
    json_object_put(lim);
    json_object_put(use);
    return q;
}

static int fits(const quota *q, int64_t needed)
{
    return q->known && (!q->limited || q->limit - q->used >= needed);
}

/* The delivery policy a broadcast is under; parsed from the options. */
typedef struct bc_policy {
    int promotional, priority, drop;
} bc_policy;

/* 2 (usage) with a message when --priority or --over-cap are wrong. */
static int policy_of(const broadcast_opts *o, bc_policy *p)
{
    *p = (bc_policy){.promotional = o->promotional};
    if (!o->promotional && (o->priority != NULL || o->over_cap != NULL)) {
        fprintf(stderr, "kizuna broadcast: --priority and --over-cap go with --promotional\n");
        return 2;
    }
    if (o->priority != NULL) {
        char *end;
        long v = strtol(o->priority, &end, 10);
        if (*o->priority == '\0' || *end != '\0' || v < -1000 || v > 1000) {
            fprintf(stderr,
                    "kizuna broadcast: --priority: expected a whole number from -1000 to "
                    "1000, got '%s'\n",
                    o->priority);
            return 2;
        }
        p->priority = (int)v;
    }
    if (o->over_cap != NULL && strcmp(o->over_cap, "defer") != 0 &&
        strcmp(o->over_cap, "drop") != 0) {
        fprintf(stderr, "kizuna broadcast: --over-cap: expected defer or drop, got '%s'\n",
                o->over_cap);
        return 2;
    }
    p->drop = o->over_cap != NULL && strcmp(o->over_cap, "drop") == 0;
    return 0;
}

static void print_policy(const cfg_shop *cs, const bc_policy *p)
{
    if (!p->promotional)
        printf("  policy:      not promotional: quiet hours and caps do not apply "
               "(--promotional applies them)\n");
    else if (!cs->delivery.enabled)
        printf("  policy:      promotional, but shop '%s' has no delivery policy: sent as "
               "queued\n",
               cs->id);
    else
        printf("  policy:      promotional, priority %d: recipients in quiet hours wait for the "
               "window; over a cap they are %s (kizuna broadcasts shows held and dropped)\n",
               p->priority, p->drop ? "dropped" : "deferred");
}

static void print_plan(const char *shop, const char *expr, int64_t recipients, size_t nmessages,
                       const quota *q, int dry)
{
    printf("broadcast to shop '%s'%s\n", shop, dry ? " (dry run: nothing is sent)" : "");
    printf("  segment:     %s\n", expr);
    printf("  recipients:  %lld (following friends the segment matches now)\n",
           (long long)recipients);
    printf("  messages:    %zu per recipient, %lld message objects; %lld counted against the "
           "quota (LINE counts one per recipient)\n",
           nmessages, (long long)recipients * (long long)nmessages, (long long)recipients);
    if (!q->known)
        printf("  quota:       unknown (%s)\n", q->why);
    else if (!q->limited)
        printf("  quota:       none (no monthly limit); %lld used this month\n",
               (long long)q->used);
    else
        printf("  quota:       %lld this month, %lld used, %lld remaining\n", (long long)q->limit,
               (long long)q->used, (long long)(q->limit - q->used));
    printf("  fits:        %s\n", !q->known             ? "unknown"
                                  : fits(q, recipients) ? "yes"
                                                        : "no: over the remaining quota");
}

/* ---- queueing ---- */

/* A short, sortable, readable id: the request time and 8 random hex digits. */
static void new_id(char *out, size_t len)
{
    char uuid[37], when[32];
    payload_uuid(uuid);
    time_t t = (time_t)(clock_now_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, len, "%s-%s", when, uuid + 28); /* a UUIDv7's random end */
}

/* Stores one event for the shop's core.broadcast instance, creating the
 * instance first: a new instance starts after the shop's last event, so it
 * must exist before the event does, or it would never see it. */
static int store_event_for_broadcast(const cfg *c, const char *shop, const char *uid,
                                     const char *topic, json_object *payload, char *err,
                                     size_t errlen)
{
    store *st = NULL;
    int64_t inst, cursor, id = 0;
    int rc = store_open(c->store_url, c->sync_mode, &st, err, errlen);
    if (rc == 0)
        rc = store_instance_open(st, shop, BROADCAST_INSTANCE, &inst, &cursor, err, errlen);
    const char *text = json_text(payload);
    if (rc == 0)
        rc = store_event_append(st, shop, uid, topic, NULL, clock_now_ms(), text, strlen(text), &id,
                                err, errlen);
    if (rc == 0 && id == 0) {
        snprintf(err, errlen, "event %s was stored already", uid);
        rc = KZ_EEXIST;
    }
    store_close(st);
    return rc;
}

/* The broadcast's record, or NULL before the daemon has picked it up. */
static json_object *record_of(store *st, int64_t inst, const char *id)
{
    char key[BROADCAST_ID_MAX + 16], err[256];
    void *val = NULL;
    size_t len;
    snprintf(key, sizeof key, BROADCAST_KEY "%s", id);
    json_object *rec = NULL;
    if (store_kv_get(st, inst, key, &val, &len, err, sizeof err) == 0)
        rec = json_tokener_parse(val);
    free(val);
    return rec;
}

static void draw_bar(int64_t done, int64_t total, const char *state, int tty)
{
    int width = 40, filled = total > 0 ? (int)(done * width / total) : width;
    if (filled > width)
        filled = width;
    fprintf(stderr, "%s[", tty ? "\r" : "");
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %lld/%lld queued  %-9s%s", (long long)done, (long long)total, state,
            tty ? "" : "\n");
}

static int finished(const char *state)
{
    return strcmp(state, "done") == 0 || strcmp(state, "cancelled") == 0 ||
           strcmp(state, "failed") == 0;
}

/* Polls the record until every chunk is queued (Ctrl-C leaves the
 * broadcast running in the daemon). */
static int wait_progress(const cfg *c, const char *shop, const char *id, int64_t total)
{
    store *st = NULL;
    char err[512];
    int64_t inst, cursor;
    if (store_open(c->store_url, c->sync_mode, &st, err, sizeof err) != 0 ||
        store_instance_open(st, shop, BROADCAST_INSTANCE, &inst, &cursor, err, sizeof err) != 0) {
        fprintf(stderr, "kizuna broadcast: %s\n", err);
        store_close(st);
        return 1;
    }
    int tty = isatty(2), rc = 0;
    fprintf(stderr, "waiting for kizuna serve to queue it (Ctrl-C stops waiting, not the "
                    "broadcast)\n");
    for (char last[16] = "";;) {
        json_object *rec = record_of(st, inst, id);
        const char *state = rec != NULL ? payload_str(rec, "state") : "queued";
        int64_t done = payload_int(rec, "recipients");
        if (tty || strcmp(last, state) != 0)
            draw_bar(done, total > done ? total : done, state, tty);
        snprintf(last, sizeof last, "%s", state);
        int end = finished(state);
        if (end && tty)
            fputc('\n', stderr);
        if (end && strcmp(state, "failed") == 0) {
            fprintf(stderr, "kizuna broadcast: %s\n",
                    payload_str(rec, "error") ? payload_str(rec, "error") : "");
            rc = 1;
        }
        json_object_put(rec);
        if (end)
            break;
        nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
    }
    store_close(st);
    return rc;
}

/* --at TIME: an ISO 8601 time with its zone ("2026-12-01T10:00+09:00" or
 * "…Z"), in the future. A time without a zone is refused rather than read
 * as UTC: "10:00" meant in Tokyo would go out at 19:00 there. */
static int at_of(const char *text, int64_t *ms)
{
    int64_t t = 0;
    size_t n = strlen(text);
    int zoned =
        n > 0 && (text[n - 1] == 'Z' ||
                  (n > 6 && (text[n - 6] == '+' || text[n - 6] == '-') && text[n - 3] == ':'));
    if (!zoned || clock_parse_time(text, &t) != 0) {
        fprintf(stderr,
                "kizuna broadcast: --at '%s': give a time with its zone, e.g. "
                "2026-12-01T10:00:00+09:00\n",
                text);
        return 2;
    }
    if (t <= clock_now_ms()) {
        fprintf(stderr, "kizuna broadcast: --at '%s' is not in the future\n", text);
        return 2;
    }
    if (ms != NULL)
        *ms = t;
    return 0;
}

static int queue_broadcast(const cfg *c, const char *shop, const broadcast_opts *o,
                           const bc_policy *pol, json_object *messages, int64_t estimate)
{
    char id[48], uid[64], err[512];
    new_id(id, sizeof id);
    snprintf(uid, sizeof uid, BROADCAST_KEY "%s", id);
    const char *who = getenv("USER");
    json_object *p = json_object_new_object();
    json_object_object_add(p, "id", json_object_new_string(id));
    json_object_object_add(p, "segment", json_object_new_string(o->segment));
    json_object_object_add(p, "messages", json_object_get(messages));
    json_object_object_add(p, "requestedBy", json_object_new_string(who ? who : "cli"));
    json_object_object_add(p, "estimate", json_object_new_int64(estimate));
    if (pol->promotional) {
        json_object_object_add(p, "promotional", json_object_new_boolean(1));
        json_object_object_add(p, "priority", json_object_new_int(pol->priority));
        json_object_object_add(p, "overCap", json_object_new_string(pol->drop ? "drop" : "defer"));
    }
    int64_t at = 0;
    if (o->at != NULL && at_of(o->at, &at) == 0)
        json_object_object_add(p, "notBefore", json_object_new_int64(at));
    int rc = store_event_for_broadcast(c, shop, uid, "broadcast.requested", p, err, sizeof err);
    json_object_put(p);
    if (rc != 0) {
        fprintf(stderr, "kizuna broadcast: %s (nothing queued)\n", err);
        return 1;
    }
    if (o->id_out != NULL)
        snprintf(o->id_out, o->id_len, "%s", id);
    if (at != 0) {
        printf("broadcast %s scheduled for %s (about %lld recipient(s) now; they are chosen "
               "when it starts); `kizuna broadcast -c FILE %s --cancel %s` cancels it\n",
               id, o->at, (long long)estimate, shop, id);
        return 0;
    }
    printf("broadcast %s queued for %lld recipient(s); `kizuna broadcasts -c FILE %s` reports "
           "it\n",
           id, (long long)estimate, shop);
    fflush(stdout);
    return o->no_wait ? 0 : wait_progress(c, shop, id, estimate);
}

/* The broadcast's state as the daemon last wrote it into state[len]: ""
 * when it has not picked the broadcast up (yet, or the id is unknown). */
static int state_of(const cfg *c, const char *shop, const char *id, char *state, size_t len,
                    char *err, size_t errlen)
{
    store *st = NULL;
    int64_t inst, cursor;
    int rc = store_open(c->store_url, c->sync_mode, &st, err, errlen);
    if (rc == 0)
        rc = store_instance_open(st, shop, BROADCAST_INSTANCE, &inst, &cursor, err, errlen);
    json_object *rec = rc == 0 ? record_of(st, inst, id) : NULL;
    snprintf(state, len, "%s", payload_str(rec, "state") != NULL ? payload_str(rec, "state") : "");
    json_object_put(rec);
    store_close(st);
    return rc;
}

static int cancel(const cfg *c, const char *shop, const char *id)
{
    char uid[128], err[512], state[32];
    if (strlen(id) > BROADCAST_ID_MAX) {
        fprintf(stderr, "kizuna broadcast: --cancel %s: not a broadcast id\n", id);
        return 2;
    }
    if (state_of(c, shop, id, state, sizeof state, err, sizeof err) != 0) {
        fprintf(stderr, "kizuna broadcast: %s\n", err);
        return 1;
    }
    if (state[0] != '\0' && finished(state)) {
        fprintf(stderr, "kizuna broadcast: broadcast %s is %s already: nothing to cancel\n", id,
                state);
        return 1;
    }
    if (state[0] == '\0')
        fprintf(stderr,
                "kizuna broadcast: kizuna serve has not picked up broadcast %s (yet?): "
                "the cancel applies when it does; an id it never sees is logged and "
                "ignored (see kizuna broadcasts)\n",
                id);
    snprintf(uid, sizeof uid, "broadcast-cancel:%s", id);
    json_object *p = json_object_new_object();
    json_object_object_add(p, "id", json_object_new_string(id));
    int rc = store_event_for_broadcast(c, shop, uid, "broadcast.cancel", p, err, sizeof err);
    json_object_put(p);
    if (rc == KZ_EEXIST) {
        printf("broadcast %s: cancel was asked already\n", id);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "kizuna broadcast: %s\n", err);
        return 1;
    }
    printf("broadcast %s: cancel queued; no chunk is queued after kizuna serve handles it "
           "(chunks already queued are still sent)\n",
           id);
    return 0;
}

/* Everything but the queueing: checks, count, quota, the plan. */
static int plan(const cfg *c, const cfg_shop *cs, const broadcast_opts *o, const bc_policy *pol,
                json_object *messages)
{
    segment *seg = NULL;
    segment_error e = {0};
    if (friend_view_compile(cs, o->segment, &seg, &e) != 0) {
        fprintf(stderr, "kizuna broadcast: --segment, column %d: %s\n", e.column, e.message);
        return 2;
    }
    store *st = NULL;
    char err[512];
    int64_t n = 0;
    int rc = store_open(c->store_url, c->sync_mode, &st, err, sizeof err);
    if (rc == 0)
        rc = count_recipients(st, cs, seg, &n, err, sizeof err);
    store_close(st);
    segment_free(seg);
    if (rc != 0) {
        fprintf(stderr, "kizuna broadcast: %s\n", err);
        return 1;
    }
    quota q = read_quota(c, cs, o);
    print_plan(cs->id, o->segment, n, json_object_array_length(messages), &q, o->dry_run);
    print_policy(cs, pol);
    fflush(stdout);
    if (o->dry_run)
        return 0;
    if (n == 0) {
        fprintf(stderr, "kizuna broadcast: the segment matches no following friend: nothing "
                        "to send\n");
        return 1;
    }
    if (!fits(&q, n) && !o->force) {
        fprintf(stderr, "kizuna broadcast: refused: %s; --force sends anyway\n",
                q.known ? "it would go over the remaining monthly quota"
                        : "the quota could not be read");
        return 1;
    }
    return queue_broadcast(c, cs->id, o, pol, messages, n);
}

int broadcastcli_send(const cfg *c, const char *shop, const broadcast_opts *o)
{
    const cfg_shop *cs = cfg_find_shop(c, shop);
    if (cs == NULL) {
        fprintf(stderr, "kizuna broadcast: no shop '%s' in the configuration\n", shop);
        return 1;
    }
    if (o->cancel != NULL)
        return cancel(c, shop, o->cancel);
    if (o->at != NULL && at_of(o->at, NULL) != 0)
        return 2;
    bc_policy pol;
    if (policy_of(o, &pol) != 0)
        return 2;
    if (o->segment == NULL || o->message == NULL) {
        fprintf(stderr, "kizuna broadcast: pass --segment EXPR and --message FILE.json\n");
        return 2;
    }
    json_object *messages = load_messages(o->message);
    if (messages == NULL)
        return 2;
    int rc = plan(c, cs, o, &pol, messages);
    json_object_put(messages);
    return rc;
}

/* ---- the report ---- */

/* Counts by tag: {"broadcast:<id>": [pending, sent, failed, held, dropped]}:
 * outbox rows, then recipients the delivery policy holds or dropped. */
enum { SLOT_PENDING, SLOT_SENT, SLOT_FAILED, SLOT_HELD, SLOT_DROPPED, SLOTS };

static void add_count(json_object *by_tag, const char *tag, int slot, int64_t n)
{
    json_object *row;
    if (!json_object_object_get_ex(by_tag, tag, &row)) {
        row = json_object_new_array();
        for (int i = 0; i < SLOTS; i++)
            json_object_array_add(row, json_object_new_int64(0));
        json_object_object_add(by_tag, tag, row);
    }
    int64_t was = json_object_get_int64(json_object_array_get_idx(row, (size_t)slot));
    json_object_array_put_idx(row, (size_t)slot, json_object_new_int64(was + n));
}

static int count_rows(void *arg, const char *tag, int state, int64_t rows)
{
    add_count(arg, tag,
              state == OUTBOX_PENDING ? SLOT_PENDING
              : state == OUTBOX_SENT  ? SLOT_SENT
                                      : SLOT_FAILED, /* failed, parked */
              rows);
    return 0;
}

static int count_policy(void *arg, const char *tag, int64_t held, int64_t dropped)
{
    add_count(arg, tag, SLOT_HELD, held);
    add_count(arg, tag, SLOT_DROPPED, dropped);
    return 0;
}

typedef struct report {
    json_object *by_tag;
    int json;
    int shown;
} report;

static int64_t rows_of(json_object *by_tag, const char *key, int slot)
{
    json_object *row;
    if (!json_object_object_get_ex(by_tag, key, &row))
        return 0;
    return json_object_get_int64(json_object_array_get_idx(row, (size_t)slot));
}

static void print_report_row(const report *r, json_object *rec, const char *key)
{
    char when[32];
    if (r->shown == 0)
        printf("%-24s %-20s %-9s %10s %6s %5s %6s %7s %5s %7s  %s\n", "ID", "REQUESTED", "STATE",
               "RECIPIENTS", "CHUNKS", "SENT", "FAILED", "PENDING", "HELD", "DROPPED", "SEGMENT");
    printf("%-24s %-20s %-9s %10lld %6lld %5lld %6lld %7lld %5lld %7lld  %s\n",
           payload_str(rec, "id"), iso(payload_int(rec, "requestedAt"), when, sizeof when),
           payload_str(rec, "state"), (long long)payload_int(rec, "recipients"),
           (long long)payload_int(rec, "chunks"), (long long)rows_of(r->by_tag, key, SLOT_SENT),
           (long long)rows_of(r->by_tag, key, SLOT_FAILED),
           (long long)rows_of(r->by_tag, key, SLOT_PENDING),
           (long long)rows_of(r->by_tag, key, SLOT_HELD),
           (long long)rows_of(r->by_tag, key, SLOT_DROPPED), payload_str(rec, "segment"));
}

static int report_one(void *arg, const char *key, const void *val, size_t len)
{
    report *r = arg;
    json_tokener *tok = json_tokener_new();
    json_object *rec = tok != NULL ? json_tokener_parse_ex(tok, val, (int)len) : NULL;
    json_tokener_free(tok);
    if (rec == NULL || payload_str(rec, "id") == NULL) {
        json_object_put(rec);
        return 0;
    }
    if (r->json) {
        json_object *o = json_object_new_object();
        char when[32];
        json_object_object_add(o, "id", json_object_new_string(payload_str(rec, "id")));
        json_object_object_add(
            o, "requested",
            json_object_new_string(iso(payload_int(rec, "requestedAt"), when, sizeof when)));
        const char *by = payload_str(rec, "requestedBy");
        json_object_object_add(o, "requestedBy", json_object_new_string(by != NULL ? by : ""));
        json_object_object_add(o, "segment", json_object_new_string(payload_str(rec, "segment")));
        json_object_object_add(o, "state", json_object_new_string(payload_str(rec, "state")));
        json_object_object_add(o, "recipients",
                               json_object_new_int64(payload_int(rec, "recipients")));
        json_object_object_add(o, "chunks", json_object_new_int64(payload_int(rec, "chunks")));
        json_object_object_add(o, "sent",
                               json_object_new_int64(rows_of(r->by_tag, key, SLOT_SENT)));
        json_object_object_add(o, "failed",
                               json_object_new_int64(rows_of(r->by_tag, key, SLOT_FAILED)));
        json_object_object_add(o, "pending",
                               json_object_new_int64(rows_of(r->by_tag, key, SLOT_PENDING)));
        json_object *promo;
        int promotional =
            json_object_object_get_ex(rec, "promotional", &promo) && json_object_get_boolean(promo);
        json_object_object_add(o, "promotional", json_object_new_boolean(promotional));
        json_object_object_add(o, "held",
                               json_object_new_int64(rows_of(r->by_tag, key, SLOT_HELD)));
        json_object_object_add(o, "dropped",
                               json_object_new_int64(rows_of(r->by_tag, key, SLOT_DROPPED)));
        puts(json_text(o));
        json_object_put(o);
    } else {
        print_report_row(r, rec, key);
    }
    r->shown++;
    json_object_put(rec);
    return 0;
}

int broadcastcli_report(const cfg *c, const char *shop, int json)
{
    if (cfg_find_shop(c, shop) == NULL) {
        fprintf(stderr, "kizuna broadcasts: no shop '%s' in the configuration\n", shop);
        return 1;
    }
    store *st = NULL;
    char err[512];
    int64_t inst, cursor;
    report r = {.by_tag = json_object_new_object(), .json = json};
    int rc = store_open(c->store_url, c->sync_mode, &st, err, sizeof err);
    if (rc == 0)
        rc = store_instance_open(st, shop, BROADCAST_INSTANCE, &inst, &cursor, err, sizeof err);
    if (rc == 0)
        rc =
            store_outbox_tag_states(st, shop, BROADCAST_KEY, count_rows, r.by_tag, err, sizeof err);
    if (rc == 0)
        rc = store_policy_tag_counts(st, shop, BROADCAST_KEY, count_policy, r.by_tag, err,
                                     sizeof err);
    if (rc == 0)
        rc = store_kv_prefix(st, inst, BROADCAST_KEY, report_one, &r, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "kizuna broadcasts: %s\n", err);
    else if (!json && r.shown == 0)
        printf("no broadcasts in shop '%s'\n", shop);
    json_object_put(r.by_tag);
    store_close(st);
    return rc == 0 ? 0 : 1;
}
