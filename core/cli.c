#include "cli.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "broadcast.h"
#include "broadcastcli.h"
#include "bus.h"
#include "chat.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "friendcli.h"
#include "friends.h"
#include "friendcsv.h"
#include "host.h"
#include "log.h"
#include "payload.h"
#include "sandbox.h"
#include "stepcli.h"
#include "store.h"
#include "topic.h"

#ifndef KIZUNA_VERSION
#define KIZUNA_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: kizuna COMMAND [-c FILE] [options]\n"
    "\n"
    "commands:\n"
    "  serve   -c FILE [--clock real|virtual|virtual:TIME]   run the daemon\n"
    "  check   -c FILE                  check config and plugins; print every error\n"
    "  plugins -c FILE [-v]             list loadable plugins and refusals\n"
    "  events  -c FILE --dead           list dead letters\n"
    "  events  -c FILE --replay ID      hand dead letter ID to its plugin once more\n"
    "  publish -c FILE SHOP TOPIC [--user U] [--id UID] [JSON]\n"
    "  publish -c FILE --lines FILE|-   one JSON object a line: "
    "{\"shop\",\"topic\",\"user\",\"id\",\"payload\"}\n"
    "  kv      -c FILE SHOP PLUGIN KEY|--prefix P   a value a plugin instance stored, or\n"
    "                                    each key starting with P (core.friends and\n"
    "                                    core.broadcast are instances too)\n"
    "  friends -c FILE SHOP [--segment EXPR] [--json]   the shop's friends (docs/friends.md)\n"
    "  friend  -c FILE SHOP USER [--json]    one friend, with tags\n"
    "  tag     -c FILE SHOP USER +TAG -TAG …  add and remove tags\n"
    "  export  -c FILE SHOP [--segment EXPR]   friends, tags and attributes as CSV\n"
    "  import  -c FILE SHOP FILE.csv|- [--all-or-nothing]   tags and attributes from CSV\n"
    "  broadcast -c FILE SHOP --segment EXPR --message FILE.json [--at TIME] [--dry-run]\n"
    "          [--force] [--no-wait] [--promotional [--priority N] [--over-cap defer|drop]]\n"
    "                                   send to a segment in multicasts of 500 "
    "(docs/broadcast.md);\n"
    "                                   --promotional: the shop's quiet hours and caps apply\n"
    "  broadcast -c FILE SHOP --cancel ID   no more chunks of broadcast ID\n"
    "  broadcasts -c FILE SHOP [--json]  each broadcast: state, recipients, rows sent/failed\n"
    "  steps   -c FILE SHOP [SCENARIO] [--user USER] [--json]   step delivery: per step\n"
    "          users waiting/sent/skipped/stopped; --user: one user's entries and path\n"
    "  sandbox serve -c FILE            run the LINE sandbox on kizuna.sandbox.listen\n"
    "  sandbox -c FILE follow|unfollow SHOP USER\n"
    "  sandbox -c FILE say SHOP USER TEXT | postback SHOP USER DATA\n"
    "                                   play a LINE user against the running sandbox\n"
    "  sandbox -c FILE inbox SHOP USER [--json]   what the user received\n"
    "  sandbox -c FILE richmenu SHOP USER [--json] the rich menu the user sees\n"
    "  sandbox -c FILE advance DURATION|--to TIME [--timeout DURATION]\n"
    "                                   walk the daemon's virtual clock, firing what is due\n"
    "  sandbox -c FILE clock            the daemon's time\n"
    "  chat    -c FILE SHOP USER          chat as a LINE user in the terminal (docs/chat.md)\n"
    "  version                          print versions\n"
    "\n"
    "-c defaults to $KIZUNA_CONFIG. See docs/ for details.\n";

typedef struct args {
    const char *config;
    const char *clock;
    const char *user;
    const char *id;
    const char *lines;
    const char *replay;
    const char *segment;
    const char *to;      /* sandbox advance --to */
    const char *timeout; /* sandbox advance --timeout */
    const char *prefix;  /* kv --prefix */
    int all_or_nothing;
    broadcast_opts bc; /* broadcast */
    int dead;
    int verbose;
    int json;
    char **rest;
    int nrest;
} args;

/* in_order: options only before the first operand, so `tag … -trial`
 * keeps "-trial" as an operand (a tag to remove), not an option. */
static int parse_args(int argc, char **argv, args *a, int in_order)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"clock", required_argument, 0, 'k'},
                                         {"user", required_argument, 0, 'u'},
                                         {"id", required_argument, 0, 'i'},
                                         {"lines", required_argument, 0, 'l'},
                                         {"replay", required_argument, 0, 'r'},
                                         {"dead", no_argument, 0, 'd'},
                                         {"verbose", no_argument, 0, 'v'},
                                         {"help", no_argument, 0, 'h'},
                                         {"json", no_argument, 0, 'j'},
                                         {"segment", required_argument, 0, 's'},
                                         {"message", required_argument, 0, 'm'},
                                         {"at", required_argument, 0, 'a'},
                                         {"cancel", required_argument, 0, 'x'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"force", no_argument, 0, 'f'},
                                         {"no-wait", no_argument, 0, 'w'},
                                         {"all-or-nothing", no_argument, 0, 'o'},
                                         {"to", required_argument, 0, 't'},
                                         {"timeout", required_argument, 0, 'T'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {"promotional", no_argument, 0, 'P'},
                                         {"priority", required_argument, 0, 'R'},
                                         {"over-cap", required_argument, 0, 'O'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->config = getenv("KIZUNA_CONFIG");
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, in_order ? "+c:vh" : "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case 'k':
            a->clock = optarg;
            break;
        case 'u':
            a->user = optarg;
            break;
        case 'i':
            a->id = optarg;
            break;
        case 'l':
            a->lines = optarg;
            break;
        case 'r':
            a->replay = optarg;
            break;
        case 'd':
            a->dead = 1;
            break;
        case 'v':
            a->verbose = 1;
            break;
        case 'j':
            a->json = 1;
            break;
        case 's':
            a->segment = a->bc.segment = optarg;
            break;
        case 'm':
            a->bc.message = optarg;
            break;
        case 'a':
            a->bc.at = optarg;
            break;
        case 'x':
            a->bc.cancel = optarg;
            break;
        case 'n':
            a->bc.dry_run = 1;
            break;
        case 'f':
            a->bc.force = 1;
            break;
        case 'w':
            a->bc.no_wait = 1;
            break;
        case 'o':
            a->all_or_nothing = 1;
            break;
        case 't':
            a->to = optarg;
            break;
        case 'T':
            a->timeout = optarg;
            break;
        case 'p':
            a->prefix = optarg;
            break;
        case 'P':
            a->bc.promotional = 1;
            break;
        case 'R':
            a->bc.priority = optarg;
            break;
        case 'O':
            a->bc.over_cap = optarg;
            break;
        default:
            return -1;
        }
    }
    a->rest = argv + optind;
    a->nrest = argc - optind;
    return 0;
}

static int need_config(const args *a, const char *cmd)
{
    if (a->config != NULL)
        return 0;
    fprintf(stderr, "kizuna %s: no config file: pass -c FILE or set KIZUNA_CONFIG\n", cmd);
    return -1;
}

/* Loads the config alone (commands that run no plugin code). */
static cfg *load_config(const char *path, const char *cmd)
{
    diag d = {0};
    cfg *c = NULL;
    if (cfg_load(path, &c, &d) != 0 || diag_count(&d) > 0) {
        diag_print(&d, stderr);
        fprintf(stderr, "kizuna %s: %zu problem(s) in %s (see kizuna check)\n", cmd, diag_count(&d),
                path);
        if (c != NULL)
            cfg_free(c);
        c = NULL;
    }
    diag_free(&d);
    if (c != NULL)
        log_set_level(c->log_level);
    return c;
}

/* ---- check ---- */

static int cmd_check(const args *a)
{
    if (need_config(a, "check") != 0)
        return 2;
    app ap;
    size_t problems = app_prepare(&ap, a->config, 1);
    if (problems > 0) {
        diag_print(&ap.d, stdout);
        printf("%s: %zu problem(s)\n", a->config, problems);
    } else {
        size_t uses = 0;
        for (size_t i = 0; i < ap.c->nshops; i++)
            uses += ap.c->shops[i].nplugins;
        printf("%s: ok (%zu shop(s), %zu plugin setting(s), %zu plugin(s) loaded)\n", a->config,
               ap.c->nshops, uses, loader_count(ap.l));
    }
    app_free(&ap);
    return problems > 0 ? 1 : 0;
}

/* ---- plugins ---- */

static const char *type_name(int t)
{
    static const char *const names[] = {"none",     "string", "integer", "float", "boolean",
                                        "duration", "secret", "list",    "group"};
    return t >= 0 && t <= KZ_SETTING_GROUP ? names[t] : "?";
}

static void print_plugin_details(const plugin *p)
{
    if (p->desc.description != NULL)
        printf("    %s\n", p->desc.description);
    printf("    subscribes:");
    for (const char *const *s = p->desc.subscriptions; s != NULL && *s != NULL; s++)
        printf(" %s", *s);
    printf("\n");
    for (const kz_setting_spec *s = p->desc.settings; s != NULL && s->key != NULL; s++)
        printf("    setting %s (%s%s%s%s): %s\n", s->key, type_name(s->type),
               s->required ? ", required" : "", s->default_value ? ", default " : "",
               s->default_value ? s->default_value : "", s->description ? s->description : "");
}

typedef struct scan_state {
    int verbose;
    int refused;
    diag refusals;
} scan_state;

static void on_scanned(void *arg, const plugin *p, const char *refusal)
{
    scan_state *st = arg;
    if (p == NULL) {
        diag_add(&st->refusals, "refused: %s", refusal);
        st->refused++;
        return;
    }
    printf("%-16s %-10s %-16s %-10s ABI %u.%u  %s\n", p->name,
           p->desc.version ? p->desc.version : "-", p->desc.vendor ? p->desc.vendor : "-",
           p->desc.license ? p->desc.license : "-", p->abi_major, p->abi_minor, p->path);
    if (st->verbose)
        print_plugin_details(p);
}

static int cmd_plugins(const args *a)
{
    if (need_config(a, "plugins") != 0)
        return 2;
    cfg *c = load_config(a->config, "plugins");
    if (c == NULL)
        return 1;
    loader *l = NULL;
    if (loader_new(host_table(), &l) != 0) {
        cfg_free(c);
        return 2;
    }
    scan_state st = {.verbose = a->verbose};
    printf("%-16s %-10s %-16s %-10s %-8s %s\n", "NAME", "VERSION", "VENDOR", "LICENSE", "ABI",
           "PATH");
    loader_scan(l, c->plugin_path, c->nplugin_path, on_scanned, &st);
    for (size_t s = 0; s < c->nshops; s++)
        for (size_t u = 0; u < c->shops[s].nplugins; u++) {
            const char *name = c->shops[s].plugins[u].name;
            const plugin *p;
            char err[1024];
            if (loader_find(l, name) == NULL &&
                loader_load_name(l, name, c->plugin_path, c->nplugin_path, &p, err, sizeof err) ==
                    KZ_ENOTFOUND) {
                diag_add(&st.refusals, "refused: %s (enabled by shop '%s')", err, c->shops[s].id);
                st.refused++;
            }
        }
    diag_print(&st.refusals, stdout);
    diag_free(&st.refusals);
    loader_free(l);
    cfg_free(c);
    return st.refused > 0 ? 1 : 0;
}

/* ---- events ---- */

static void format_time(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_dead_row(int *count, long long id, const char *when, const char *shop,
                           const char *plugin, const char *topic, int attempts, const char *uid,
                           int replay, const char *error)
{
    if ((*count)++ == 0)
        printf("%-6s %-20s %-12s %-14s %-20s %-8s %s\n", "ID", "PARKED", "SHOP", "PLUGIN", "TOPIC",
               "ATTEMPTS", "EVENT / ERROR");
    printf("%-6lld %-20s %-12s %-14s %-20s %-8d %s%s\n       error: %s\n", id, when, shop, plugin,
           topic, attempts, uid, replay ? " (queued for replay)" : "", error);
}

static int print_dead(void *arg, const store_dead *d)
{
    char when[32];
    format_time(d->time_ms, when, sizeof when);
    print_dead_row(arg, (long long)d->id, when, d->shop, d->plugin, d->topic, d->attempts, d->uid,
                   d->replay, d->error);
    return 0;
}

static const char *jget(json_object *o, const char *key);

/* GET /admin/dead's JSON array, printed like print_dead. */
static int print_dead_json(const char *body, char *err, size_t errlen)
{
    json_object *list = json_tokener_parse(body);
    if (list == NULL || !json_object_is_type(list, json_type_array)) {
        json_object_put(list);
        snprintf(err, errlen, "admin API: unexpected answer to GET /admin/dead");
        return KZ_EFAIL;
    }
    int count = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *d = json_object_array_get_idx(list, i), *v;
        long long id = json_object_object_get_ex(d, "id", &v) ? json_object_get_int64(v) : 0;
        int attempts = json_object_object_get_ex(d, "attempts", &v) ? json_object_get_int(v) : 0;
        int replay = json_object_object_get_ex(d, "replay", &v) && json_object_get_boolean(v);
        const char *f[6] = {"time", "shop", "plugin", "topic", "uid", "error"};
        for (size_t k = 0; k < 6; k++)
            f[k] = jget(d, f[k]) ? jget(d, f[k]) : "";
        print_dead_row(&count, id, f[0], f[1], f[2], f[3], attempts, f[4], replay, f[5]);
    }
    if (count == 0)
        printf("no dead letters\n");
    json_object_put(list);
    return 0;
}

/* The running daemon's admin API: method path (with a JSON body, or NULL)
 * → *status and *resp. KZ_ESTATE when the daemon is not running (nothing
 * listens). */
int cli_admin_call_wait(const cfg *c, const char *method, const char *path, const char *body,
                        long timeout_s, long *status, char **resp, char *err, size_t errlen)
{
    char url[512];
    snprintf(url, sizeof url, "http://%s%s", c->listen, path);
    return sandbox_http_auth(method, url, c->admin_token, body, timeout_s, status, resp, err,
                             errlen);
}

int cli_admin_call(const cfg *c, const char *method, const char *path, const char *body,
                   long *status, char **resp, char *err, size_t errlen)
{
    return cli_admin_call_wait(c, method, path, body, 30, status, resp, err, errlen);
}

/* An admin API answer other than 2xx: its message. */
void cli_admin_error(long status, const char *resp, char *err, size_t errlen)
{
    json_object *o = json_tokener_parse(resp != NULL ? resp : "");
    const char *msg = jget(o, "message");
    snprintf(err, errlen, "admin API: %ld %s%s", status, msg ? msg : "",
             status == 401   ? " (is kizuna.admin_token the daemon's?)"
             : status == 403 ? " (run it on the daemon's host, or set kizuna.admin_remote)"
                             : "");
    json_object_put(o);
}

/* With kizuna.admin_token: through the running daemon. --dead falls back
 * to reading the store when the daemon is not running; --replay then queues
 * in the store and says so (the daemon replays it when it starts).
 * Returns 1 when handled (rc in *rc), 0 to go on with the store. */
static int events_via_daemon(const cfg *c, const args *a, long long id, int *rc, char *err,
                             size_t errlen)
{
    char path[64];
    if (a->replay != NULL)
        snprintf(path, sizeof path, "/admin/dead/%lld/replay", id);
    long status = 0;
    char *resp = NULL;
    int r =
        cli_admin_call(c, a->replay != NULL ? "POST" : "GET",
                       a->replay != NULL ? path : "/admin/dead", NULL, &status, &resp, err, errlen);
    if (r == KZ_ESTATE) { /* not running */
        if (a->replay != NULL)
            fprintf(stderr,
                    "kizuna events: kizuna is not running at %s: start it, or the replay waits: "
                    "queued in the store, dead letter %lld is replayed when kizuna starts\n",
                    c->listen, id);
        else
            fprintf(stderr, "kizuna events: kizuna is not running at %s; reading the store\n",
                    c->listen);
        return 0;
    }
    *rc = 0;
    if (r != 0) {
        *rc = r;
    } else if (status == 404 && a->replay != NULL) {
        *rc = KZ_ENOTFOUND;
    } else if (status != 200) {
        cli_admin_error(status, resp, err, errlen);
        *rc = KZ_EFAIL;
    } else if (a->replay != NULL) {
        printf("dead letter %lld queued for replay; the daemon hands it to its plugin once more\n",
               id);
    } else {
        *rc = print_dead_json(resp, err, errlen);
    }
    free(resp);
    return 1;
}

static int cmd_events(const args *a)
{
    if (need_config(a, "events") != 0)
        return 2;
    if (!a->dead && a->replay == NULL) {
        fprintf(stderr, "kizuna events: pass --dead or --replay ID\n");
        return 2;
    }
    cfg *c = load_config(a->config, "events");
    if (c == NULL)
        return 1;
    long long id = 0;
    if (a->replay != NULL) {
        char *end;
        id = strtoll(a->replay, &end, 10);
        if (*end != '\0' || id <= 0) {
            fprintf(stderr,
                    "kizuna events: no dead letter with id '%s' (see kizuna events --dead)\n",
                    a->replay);
            cfg_free(c);
            return 1;
        }
    }
    store *st = NULL;
    char err[512];
    int rc = 0;
    int count = 0;
    if (c->admin_token != NULL && events_via_daemon(c, a, id, &rc, err, sizeof err)) {
        /* answered by the daemon */
    } else {
        rc = store_open(c->store_url, c->sync_mode, &st, err, sizeof err);
        if (rc == 0 && a->replay != NULL) {
            rc = store_dead_replay(st, id, err, sizeof err);
            if (rc == 0)
                printf("dead letter %lld queued for replay; the daemon hands it to its plugin "
                       "once more\n",
                       id);
        } else if (rc == 0) {
            rc = store_dead_list(st, print_dead, &count, err, sizeof err);
            if (rc == 0 && count == 0)
                printf("no dead letters\n");
        }
    }
    if (rc == KZ_ENOTFOUND && a->replay != NULL)
        snprintf(err, sizeof err, "no dead letter with id '%s' (see kizuna events --dead)",
                 a->replay);
    if (rc != 0)
        fprintf(stderr, "kizuna events: %s\n", err);
    store_close(st);
    cfg_free(c);
    return rc == 0 ? 0 : 1;
}

/* ---- publish ---- */

typedef struct pub_ctx {
    const cfg *c;
    store *st;
    int64_t now_ms; /* the events' time: the running daemon's clock when it tells */
    int64_t published, duplicates;
} pub_ctx;

/* Instances are created before the first event they should see: a plugin's
 * history starts when a command first meets it in the config. */
static int ensure_instances(pub_ctx *p, const cfg_shop *shop, char *err, size_t errlen)
{
    for (size_t u = 0; u < shop->nplugins; u++) {
        int64_t id, cursor;
        int rc =
            store_instance_open(p->st, shop->id, shop->plugins[u].name, &id, &cursor, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int publish_one(pub_ctx *p, const char *shop_id, const char *topic, const char *user,
                       const char *uid, const char *json, char *err, size_t errlen)
{
    const cfg_shop *shop = cfg_find_shop(p->c, shop_id);
    if (shop == NULL) {
        snprintf(err, errlen, "unknown shop '%s'", shop_id);
        return KZ_EINVAL;
    }
    if (!topic_valid(topic)) {
        snprintf(err, errlen, "invalid topic '%s'", topic);
        return KZ_EINVAL;
    }
    size_t len = strlen(json);
    int rc = payload_check(json, len, err, errlen);
    if (rc == 0)
        rc = ensure_instances(p, shop, err, errlen);
    char uuid[37];
    if (uid == NULL)
        payload_uuid(uuid);
    int64_t id = 0;
    if (rc == 0)
        rc = store_event_append(p->st, shop_id, uid ? uid : uuid, topic, user, p->now_ms, json, len,
                                &id, err, errlen);
    if (rc == 0 && id == 0)
        p->duplicates++;
    else if (rc == 0)
        p->published++;
    return rc;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static int publish_line(pub_ctx *p, const char *line, char *err, size_t errlen)
{
    json_object *o = json_tokener_parse(line);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        snprintf(err, errlen, "not a JSON object");
        return KZ_EINVAL;
    }
    json_object *payload = NULL;
    json_object_object_get_ex(o, "payload", &payload);
    const char *text =
        payload ? json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN) : "{}";
    const char *shop = jstr(o, "shop"), *topic = jstr(o, "topic");
    int rc;
    if (shop == NULL || topic == NULL) {
        snprintf(err, errlen, "needs string fields \"shop\" and \"topic\"");
        rc = KZ_EINVAL;
    } else {
        rc = publish_one(p, shop, topic, jstr(o, "user"), jstr(o, "id"), text, err, errlen);
    }
    json_object_put(o);
    return rc;
}

/* All lines in one transaction: a bad line publishes nothing. */
static int publish_lines(pub_ctx *p, const char *path, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s", path);
        return KZ_EINVAL;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = store_begin(p->st, err, errlen);
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        char lerr[512];
        rc = publish_line(p, line, lerr, sizeof lerr);
        if (rc != 0)
            snprintf(err, errlen, "%s:%ld: %s; nothing published", path, lineno, lerr);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (rc == 0)
        rc = store_commit(p->st, err, errlen);
    if (rc != 0)
        store_rollback(p->st);
    return rc;
}

/* The running daemon's clock (virtual in tests and demos) through its admin
 * API, so published events carry the time its handlers live in; this
 * process's clock when there is no admin token or no daemon answers. */
static int64_t daemon_now_ms(const cfg *c)
{
    long status = 0;
    char *resp = NULL, err[256];
    int64_t now = clock_now_ms();
    if (c->admin_token != NULL &&
        cli_admin_call(c, "GET", "/admin/clock", NULL, &status, &resp, err, sizeof err) == 0 &&
        status == 200) {
        json_object *o = json_tokener_parse(resp), *v;
        if (json_object_object_get_ex(o, "now_ms", &v))
            now = json_object_get_int64(v);
        json_object_put(o);
    }
    free(resp);
    return now;
}

static int cmd_publish(const args *a)
{
    if (need_config(a, "publish") != 0)
        return 2;
    if (a->lines == NULL && (a->nrest < 2 || a->nrest > 3)) {
        fprintf(stderr, "usage: kizuna publish -c FILE SHOP TOPIC [--user U] [--id UID] [JSON]\n"
                        "       kizuna publish -c FILE --lines FILE|-\n");
        return 2;
    }
    cfg *c = load_config(a->config, "publish");
    if (c == NULL)
        return 1;
    pub_ctx p = {.c = c, .now_ms = daemon_now_ms(c)};
    char err[1024] = "";
    int rc = store_open(c->store_url, c->sync_mode, &p.st, err, sizeof err);
    if (rc == 0 && a->lines != NULL)
        rc = publish_lines(&p, a->lines, err, sizeof err);
    else if (rc == 0)
        rc = publish_one(&p, a->rest[0], a->rest[1], a->user, a->id,
                         a->nrest == 3 ? a->rest[2] : "{}", err, sizeof err);
    if (rc == 0)
        printf("published %lld event(s)%s\n", (long long)p.published,
               p.duplicates ? " (some ids were already stored: skipped)" : "");
    else
        fprintf(stderr, "kizuna publish: %s\n", err);
    store_close(p.st);
    cfg_free(c);
    return rc == 0 ? 0 : 1;
}

/* ---- kv ---- */

/* The instances a shop has: its enabled plugins and the core's own. */
static int shop_has_instance(const cfg_shop *shop, const char *name)
{
    if (shop != NULL &&
        (strcmp(name, FRIENDS_INSTANCE) == 0 || strcmp(name, BROADCAST_INSTANCE) == 0))
        return 1;
    for (size_t u = 0; shop != NULL && u < shop->nplugins; u++)
        if (strcmp(shop->plugins[u].name, name) == 0)
            return 1;
    return 0;
}

static int print_kv(void *arg, const char *key, const void *val, size_t len)
{
    (void)arg;
    printf("%s\t%.*s\n", key, (int)len, (const char *)val);
    return 0;
}

/* KEY: its value; --prefix P: every key starting with P and its value, a
 * line each (KEY<TAB>VALUE), in key order. */
static int cmd_kv(const args *a)
{
    if (need_config(a, "kv") != 0)
        return 2;
    if (a->nrest != (a->prefix != NULL ? 2 : 3)) {
        fprintf(stderr, "usage: kizuna kv -c FILE SHOP PLUGIN KEY|--prefix PREFIX\n");
        return 2;
    }
    cfg *c = load_config(a->config, "kv");
    if (c == NULL)
        return 1;
    store *st = NULL;
    char err[512] = "";
    int rc = KZ_EINVAL;
    if (!shop_has_instance(cfg_find_shop(c, a->rest[0]), a->rest[1]))
        snprintf(err, sizeof err, "shop '%s' does not enable plugin '%s'", a->rest[0], a->rest[1]);
    else
        rc = store_open(c->store_url, c->sync_mode, &st, err, sizeof err);
    int64_t id, cursor;
    void *val = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = store_instance_open(st, a->rest[0], a->rest[1], &id, &cursor, err, sizeof err);
    if (rc == 0 && a->prefix != NULL)
        rc = store_kv_prefix(st, id, a->prefix, print_kv, NULL, err, sizeof err);
    else if (rc == 0 && (rc = store_kv_get(st, id, a->rest[2], &val, &len, err, sizeof err)) == 0)
        printf("%.*s\n", (int)len, (const char *)val);
    if (rc == KZ_ENOTFOUND)
        fprintf(stderr, "kizuna kv: no key '%s'\n", a->rest[2]);
    else if (rc != 0)
        fprintf(stderr, "kizuna kv: %s\n", err);
    free(val);
    store_close(st);
    cfg_free(c);
    return rc == 0 ? 0 : 1;
}

/* ---- sandbox ---- */

/* friends / friend / tag: SHOP and nargs more positional arguments (at
 * least, for tag). */
static int cmd_friends(const args *a, const char *cmd, int nargs, const char *use)
{
    if (need_config(a, cmd) != 0)
        return 2;
    int ok = strcmp(cmd, "tag") == 0 ? a->nrest >= 1 + nargs : a->nrest == 1 + nargs;
    if (!ok) {
        fprintf(stderr, "usage: kizuna %s -c FILE %s\n", cmd, use);
        return 2;
    }
    cfg *c = load_config(a->config, cmd);
    if (c == NULL)
        return 1;
    int rc;
    if (strcmp(cmd, "friends") == 0)
        rc = friendcli_list(c, a->rest[0], a->segment, a->json);
    else if (strcmp(cmd, "friend") == 0)
        rc = friendcli_show(c, a->rest[0], a->rest[1], a->json);
    else if (strcmp(cmd, "export") == 0)
        rc = friendcsv_export(c, a->rest[0], a->segment);
    else if (strcmp(cmd, "import") == 0)
        rc = friendcsv_import(c, a->rest[0], a->rest[1], a->all_or_nothing);
    else
        rc = friendcli_tag(c, a->rest[0], a->rest[1], a->rest + 2, a->nrest - 2);
    cfg_free(c);
    return rc;
}

/* broadcast / broadcasts: SHOP and the options. */
static int cmd_broadcast(const args *a, const char *cmd)
{
    if (need_config(a, cmd) != 0)
        return 2;
    if (a->nrest != 1) {
        fprintf(stderr, "usage: kizuna %s -c FILE SHOP %s\n", cmd,
                strcmp(cmd, "broadcasts") == 0
                    ? "[--json]"
                    : "--segment EXPR --message FILE.json [--dry-run] [--force] [--no-wait] | "
                      "--cancel ID");
        return 2;
    }
    cfg *c = load_config(a->config, cmd);
    if (c == NULL)
        return 1;
    int rc = strcmp(cmd, "broadcasts") == 0 ? broadcastcli_report(c, a->rest[0], a->json)
                                            : broadcastcli_send(c, a->rest[0], &a->bc);
    cfg_free(c);
    return rc;
}

/* steps: SHOP [SCENARIO], --user, --json. */
static int cmd_steps(const args *a)
{
    if (need_config(a, "steps") != 0)
        return 2;
    if (a->nrest < 1 || a->nrest > 2) {
        fprintf(stderr, "usage: kizuna steps -c FILE SHOP [SCENARIO] [--user USER] [--json]\n");
        return 2;
    }
    cfg *c = load_config(a->config, "steps");
    if (c == NULL)
        return 1;
    steps_opts o = {.scenario = a->nrest == 2 ? a->rest[1] : NULL,
                    .user = a->user,
                    .json = a->json,
                    .now_ms = clock_now_ms(),
                    .out = stdout};
    int rc = stepcli_report(c, a->rest[0], &o);
    cfg_free(c);
    return rc;
}

static int sandbox_serve(const cfg *c)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the server's threads inherit it */
    sandbox_options o = sandbox_options_from_cfg(c);
    sandbox *sb = NULL;
    char err[512];
    if (sandbox_start(&o, &sb, err, sizeof err) != 0) {
        fprintf(stderr, "kizuna sandbox serve: %s\n", err);
        return 2;
    }
    log_msg(KZ_LOG_INFO, "sandbox listening on %.*s:%u, store %s, webhooks to http://%s",
            (int)strcspn(o.listen, ":"), o.listen, sandbox_port(sb), o.store_url, c->listen);
    int sig = 0;
    sigwait(&set, &sig);
    log_msg(KZ_LOG_INFO, "sandbox stopping (signal %d)", sig);
    sandbox_stop(sb);
    return 0;
}

static const char *jget(json_object *o, const char *key)
{
    json_object *v;
    return o != NULL && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static void print_inbox(const char *body)
{
    json_object *o = json_tokener_parse(body);
    json_object *msgs = NULL, *v;
    json_object_object_get_ex(o, "messages", &msgs);
    int known = json_object_object_get_ex(o, "known", &v) && json_object_get_boolean(v);
    int following = json_object_object_get_ex(o, "following", &v) && json_object_get_boolean(v);
    printf("%s (shop %s): %s, %zu message(s)\n", jget(o, "userId"), jget(o, "shop"),
           !known      ? "not a known user"
           : following ? "friend"
                       : "blocked",
           msgs ? json_object_array_length(msgs) : 0);
    for (size_t i = 0; msgs != NULL && i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i), *msg = NULL;
        json_object_object_get_ex(m, "message", &msg);
        const char *type = jget(msg, "type");
        const char *text = jget(msg, "text") ? jget(msg, "text") : jget(msg, "altText");
        printf("%s  %-10s %s%s%s\n", jget(m, "time"), jget(m, "endpoint"), type ? type : "?",
               text ? ": " : "", text ? text : "");
    }
    json_object_put(o);
}

/* ---- sandbox advance / clock: the daemon's clock, through its admin API ---- */

static void print_clock_answer(const char *resp, int advanced)
{
    json_object *o = json_tokener_parse(resp != NULL ? resp : "");
    json_object *v = NULL;
    int virt = json_object_object_get_ex(o, "virtual", &v) && json_object_get_boolean(v);
    printf("%s%s (%s clock)", advanced ? "clock at " : "", jget(o, "now") ? jget(o, "now") : "?",
           virt ? "virtual" : "real");
    if (advanced) {
        long long n[4] = {0, 0, 0, 0};
        const char *keys[] = {"steps", "timers_fired", "events_handled", "handler_failures"};
        for (int k = 0; k < 4; k++)
            if (json_object_object_get_ex(o, keys[k], &v))
                n[k] = (long long)json_object_get_int64(v);
        printf(": %lld step(s), %lld timer(s) fired, %lld event(s) handled", n[0], n[1], n[2]);
        if (n[3] > 0)
            printf(", %lld handler failure(s)", n[3]);
    }
    printf("\n");
    json_object_put(o);
}

/* `advance DURATION`, `advance --to TIME`, `clock`. */
static int sandbox_clock(const args *a, const char *what)
{
    int advance = strcmp(what, "advance") == 0;
    if (a->nrest != (advance && a->to == NULL ? 2 : 1) ||
        (!advance && (a->to != NULL || a->timeout != NULL))) {
        fprintf(stderr, "usage: kizuna sandbox -c FILE advance DURATION|--to TIME "
                        "[--timeout DURATION]\n"
                        "       kizuna sandbox -c FILE clock\n");
        return 2;
    }
    /* wait a little longer than the walk may take, so that the daemon's own
     * answer (503, where the clock got to) arrives rather than a timeout */
    int64_t walk_ms = BUS_WALK_TIMEOUT_MS;
    if (a->timeout != NULL && (clock_parse_duration(a->timeout, &walk_ms) != 0 || walk_ms <= 0 ||
                               walk_ms > BUS_WALK_TIMEOUT_MAX_MS)) {
        fprintf(stderr,
                "kizuna sandbox: advance: --timeout '%s' is not a duration between 1ms "
                "and 10m\n",
                a->timeout);
        return 2;
    }
    int64_t ms = 0;
    if (advance && a->to == NULL &&
        (a->rest[1][0] == '-' || clock_parse_duration(a->rest[1], &ms) != 0)) {
        fprintf(stderr,
                "kizuna sandbox: advance: '%s' is not a duration (90s, 15m, 2h, 3d, 1w, "
                "1h30m)\n",
                a->rest[1]);
        return 2;
    }
    if (advance && a->to != NULL && clock_parse_time(a->to, &ms) != 0) {
        fprintf(stderr, "kizuna sandbox: advance: '%s' is not a time (2026-12-01T10:00:00+09:00)\n",
                a->to);
        return 2;
    }
    cfg *c = load_config(a->config, "sandbox");
    if (c == NULL)
        return 1;
    if (c->admin_token == NULL) {
        fprintf(stderr,
                "kizuna sandbox: %s goes through the daemon's admin API: set "
                "kizuna.admin_token (docs/http.md)\n",
                what);
        cfg_free(c);
        return 1;
    }
    char *body = NULL;
    if (advance) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, a->to != NULL ? "to" : "by",
                               json_object_new_string(a->to != NULL ? a->to : a->rest[1]));
        if (a->timeout != NULL)
            json_object_object_add(o, "timeout", json_object_new_string(a->timeout));
        body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    }
    long status = 0;
    char *resp = NULL, err[512] = "";
    int rc = cli_admin_call_wait(c, advance ? "POST" : "GET",
                                 advance ? "/admin/clock/advance" : "/admin/clock", body,
                                 (long)(walk_ms / 1000) + 30, &status, &resp, err, sizeof err);
    int exit_code = 0;
    if (rc == KZ_ESTATE) {
        fprintf(stderr,
                "kizuna sandbox: kizuna is not running at %s (start it with kizuna serve "
                "-c FILE --clock virtual)\n",
                c->listen);
        exit_code = 1;
    } else if (rc != 0) {
        fprintf(stderr, "kizuna sandbox: %s\n", err);
        exit_code = 1;
    } else if (status != 200) {
        cli_admin_error(status, resp, err, sizeof err);
        fprintf(stderr, "kizuna sandbox: %s\n", err);
        if (status == 503) /* past the time limit: say where the clock got to */
            print_clock_answer(resp, 1);
        exit_code = 1;
    } else {
        print_clock_answer(resp, advance);
    }
    free(body);
    free(resp);
    cfg_free(c);
    return exit_code;
}

static int cmd_sandbox(const args *a)
{
    if (need_config(a, "sandbox") != 0)
        return 2;
    const char *what = a->nrest > 0 ? a->rest[0] : "";
    if (strcmp(what, "advance") == 0 || strcmp(what, "clock") == 0)
        return sandbox_clock(a, what);
    int action = sandbox_action_parse(what);
    int richmenu = strcmp(what, "richmenu") == 0;
    int inbox = richmenu || strcmp(what, "inbox") == 0; /* both GET a view of the user */
    int serve = strcmp(what, "serve") == 0;
    int want = serve ? 1 : action == SANDBOX_SAY || action == SANDBOX_POSTBACK ? 4 : 3;
    if ((!serve && !inbox && action < 0) || a->nrest != want) {
        fprintf(stderr, "usage: kizuna sandbox serve -c FILE\n"
                        "       kizuna sandbox -c FILE follow|unfollow SHOP USER\n"
                        "       kizuna sandbox -c FILE say SHOP USER TEXT\n"
                        "       kizuna sandbox -c FILE postback SHOP USER DATA\n"
                        "       kizuna sandbox -c FILE inbox SHOP USER [--json]\n"
                        "       kizuna sandbox -c FILE richmenu SHOP USER [--json]\n"
                        "       kizuna sandbox -c FILE advance DURATION|--to TIME "
                        "[--timeout DURATION]\n"
                        "       kizuna sandbox -c FILE clock\n");
        return 2;
    }
    cfg *c = load_config(a->config, "sandbox");
    if (c == NULL)
        return 1;
    if (serve) {
        int rc = sandbox_serve(c);
        cfg_free(c);
        return rc;
    }
    char url[512], err[512];
    snprintf(url, sizeof url, "http://%s/sandbox/shops/%s/users/%s/%s", c->sandbox.listen,
             a->rest[1], a->rest[2], what);
    char *body = NULL;
    if (want == 4) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, action == SANDBOX_SAY ? "text" : "data",
                               json_object_new_string(a->rest[3]));
        body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    }
    long status = 0;
    char *resp = NULL;
    int rc = sandbox_http(inbox ? "GET" : "POST", url, body, &status, &resp, err, sizeof err);
    free(body);
    int exit_code = 0;
    if (rc != 0) {
        fprintf(stderr, "kizuna sandbox: %s (is `kizuna sandbox serve` running?)\n", err);
        exit_code = 1;
    } else if (status != 200) {
        json_object *o = json_tokener_parse(resp);
        const char *msg = jget(o, "message");
        /* the shop is in this file, so the sandbox answering is not ours */
        int other = msg != NULL && strncmp(msg, "unknown shop", 12) == 0 &&
                    cfg_find_shop(c, a->rest[1]) != NULL;
        fprintf(stderr, "kizuna sandbox: %s%s%s%s\n", msg ? msg : resp,
                other ? " — the sandbox on " : "", other ? c->sandbox.listen : "",
                other ? " runs another configuration (another kizuna on that port?)" : "");
        json_object_put(o);
        exit_code = 1;
    } else if (inbox && a->json) {
        printf("%s\n", resp);
    } else if (richmenu) {
        char *text = chat_render_richmenu(resp, NULL, 1);
        fputs(text, stdout);
        free(text);
    } else if (inbox) {
        print_inbox(resp);
    } else {
        printf("%s %s: %s sent to shop '%s'\n", what, a->rest[2],
               action == SANDBOX_SAY ? "message" : what, a->rest[1]);
    }
    free(resp);
    cfg_free(c);
    return exit_code;
}

/* ---- chat ---- */

static int cmd_chat(const args *a)
{
    if (need_config(a, "chat") != 0)
        return 2;
    if (a->nrest != 2) {
        fprintf(stderr, "usage: kizuna chat -c FILE SHOP USER\n");
        return 2;
    }
    if (!sandbox_user_id_valid(a->rest[1])) {
        fprintf(stderr, "kizuna chat: invalid user id '%s': expected U and 32 hex digits\n",
                a->rest[1]);
        return 2;
    }
    cfg *c = load_config(a->config, "chat");
    if (c == NULL)
        return 1;
    int rc = chat_run(c, a->rest[0], a->rest[1], stdin, stdout);
    cfg_free(c);
    return rc;
}

int cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kizuna %s (plugin ABI %d.%d)\n", KIZUNA_VERSION, KZ_ABI_MAJOR, KZ_ABI_MINOR);
        return 0;
    }
    args a;
    if (parse_args(argc - 1, argv + 1, &a, strcmp(cmd, "tag") == 0) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(cmd, "serve") == 0) {
        if (need_config(&a, "serve") != 0)
            return 2;
        serve_opts o = {.clock = a.clock};
        return daemon_serve(a.config, &o);
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(&a);
    if (strcmp(cmd, "plugins") == 0)
        return cmd_plugins(&a);
    if (strcmp(cmd, "events") == 0)
        return cmd_events(&a);
    if (strcmp(cmd, "publish") == 0)
        return cmd_publish(&a);
    if (strcmp(cmd, "kv") == 0)
        return cmd_kv(&a);
    if (strcmp(cmd, "sandbox") == 0)
        return cmd_sandbox(&a);
    if (strcmp(cmd, "friends") == 0)
        return cmd_friends(&a, cmd, 0, "SHOP [--segment EXPR] [--json]");
    if (strcmp(cmd, "friend") == 0)
        return cmd_friends(&a, cmd, 1, "SHOP USER [--json]");
    if (strcmp(cmd, "tag") == 0)
        return cmd_friends(&a, cmd, 2, "SHOP USER +TAG|-TAG …");
    if (strcmp(cmd, "export") == 0)
        return cmd_friends(&a, cmd, 0, "SHOP [--segment EXPR]");
    if (strcmp(cmd, "import") == 0)
        return cmd_friends(&a, cmd, 1, "SHOP FILE.csv|- [--all-or-nothing]");
    if (strcmp(cmd, "broadcast") == 0 || strcmp(cmd, "broadcasts") == 0)
        return cmd_broadcast(&a, cmd);
    if (strcmp(cmd, "steps") == 0)
        return cmd_steps(&a);
    if (strcmp(cmd, "chat") == 0)
        return cmd_chat(&a);
    fprintf(stderr, "kizuna: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
