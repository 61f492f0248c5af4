#include "scenario.h"

#include <stdlib.h>
#include <string.h>

#include "../common/jscan.h"

typedef struct loader {
    kz_shop *shop;
    char *err;
    size_t errlen;
} loader;

static int bad(const loader *l, const kz_setting *s, const char *msg)
{
    return kz_setting_error(s, l->err, l->errlen, "%s", msg);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > STEP_NAME_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* A string setting (*out stays NULL when absent and not required). */
static int get_string(const loader *l, const kz_setting *g, const char *key, int required,
                      const char **out)
{
    const kz_setting *s = kz_setting_child(g, key);
    *out = NULL;
    if (s == NULL)
        return required ? kz_setting_error(g, l->err, l->errlen, "%s is required", key) : 0;
    if (kz_setting_string(s, out) != 0)
        return bad(l, s, "expected a string");
    return 0;
}

static int get_name(const loader *l, const kz_setting *g, char *out)
{
    const char *v;
    int rc = get_string(l, g, "name", 1, &v);
    if (rc != 0)
        return rc;
    if (!name_ok(v))
        return bad(l, kz_setting_child(g, "name"),
                   "names are 1..40 letters, digits, '_' or '-' (they key the users' progress)");
    strcpy(out, v);
    return 0;
}

/* "10:00" → 600. */
static int parse_hhmm(const char *s, int *min)
{
    int h, m;
    char tail;
    if (sscanf(s, "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 || m > 59 ||
        strlen(s) != 5)
        return -1;
    *min = h * 60 + m;
    return 0;
}

static int get_hhmm(const loader *l, const kz_setting *g, const char *key, int *min)
{
    const char *v;
    int rc = get_string(l, g, key, 0, &v);
    if (rc != 0 || v == NULL)
        return rc;
    if (parse_hhmm(v, min) != 0)
        return bad(l, kz_setting_child(g, key), "expected a time of day \"HH:MM\" (00:00..23:59)");
    return 0;
}

static int get_duration(const loader *l, const kz_setting *g, const char *key, int64_t *ms)
{
    const kz_setting *s = kz_setting_child(g, key);
    if (s == NULL)
        return 0;
    if (kz_setting_duration_ms(s, ms) != 0 || *ms < 0)
        return bad(l, s, "expected a duration such as \"90m\", \"1d\" or \"1d12h\"");
    return 0;
}

/* [ "a", "b" ] or "a" → a malloc'ed array of copies. */
static int get_strings(const loader *l, const kz_setting *g, const char *key, char ***out,
                       size_t *n)
{
    const kz_setting *s = kz_setting_child(g, key);
    *out = NULL;
    *n = 0;
    if (s == NULL)
        return 0;
    const char *one;
    size_t count = kz_setting_type(s) == KZ_SETTING_LIST ? kz_setting_count(s) : 1;
    if (kz_setting_type(s) != KZ_SETTING_LIST && kz_setting_string(s, &one) != 0)
        return bad(l, s, "expected a string or a list of strings");
    *out = calloc(count + 1, sizeof **out);
    if (*out == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        const kz_setting *e = kz_setting_type(s) == KZ_SETTING_LIST ? kz_setting_elem(s, i) : s;
        const char *v;
        if (kz_setting_string(e, &v) != 0 || *v == '\0' || strlen(v) > KZ_TOPIC_MAX)
            return bad(l, e, "expected a topic such as \"line.unfollow\" or \"ec.order.*\"");
        if (((*out)[i] = strdup(v)) == NULL)
            return KZ_ENOMEM;
        (*n)++;
    }
    return 0;
}

static void strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int get_segment(const loader *l, const kz_setting *g, kz_segment **out)
{
    const kz_setting *s = kz_setting_child(g, "segment");
    *out = NULL;
    return s == NULL ? 0 : kz_segment_compile(l->shop, s, out, l->err, l->errlen);
}

/* ---- payload conditions ------------------------------------------------ */

static const char *const op_names[] = {"==", "!=", "<", "<=", ">", ">=", "contains", "exists"};

static int load_cond(const loader *l, const kz_setting *g, cond *c)
{
    const char *path, *op;
    int rc = get_string(l, g, "path", 1, &path);
    if (rc == 0)
        rc = get_string(l, g, "op", 0, &op);
    if (rc != 0)
        return rc;
    if ((c->path = strdup(path)) == NULL)
        return KZ_ENOMEM;
    c->op = op == NULL ? COND_EXISTS : -1;
    for (int i = 0; op != NULL && i < (int)(sizeof op_names / sizeof op_names[0]); i++)
        if (strcmp(op, op_names[i]) == 0)
            c->op = i;
    if (c->op < 0)
        return bad(l, kz_setting_child(g, "op"),
                   "op is one of ==, !=, <, <=, >, >=, contains, exists");
    const kz_setting *v = kz_setting_child(g, "value");
    if (c->op == COND_EXISTS)
        return v == NULL ? 0 : bad(l, v, "op \"exists\" takes no value");
    if (v == NULL)
        return kz_setting_error(g, l->err, l->errlen, "value is required with op \"%s\"", op);
    int64_t i;
    int b;
    const char *s;
    if (kz_setting_type(v) == KZ_SETTING_INT && kz_setting_int(v, &i) == 0)
        c->is_number = 1, c->number = (double)i;
    else if (kz_setting_type(v) == KZ_SETTING_FLOAT && kz_setting_float(v, &c->number) == 0)
        c->is_number = 1;
    else if (kz_setting_bool(v, &b) == 0)
        c->is_bool = 1, c->text = strdup(b ? "true" : "false");
    else if (kz_setting_string(v, &s) == 0)
        c->text = strdup(s);
    else
        return bad(l, v, "value is a number, a string or a bool");
    if (!c->is_number && c->text == NULL)
        return KZ_ENOMEM;
    if (!c->is_number && c->op >= COND_LT && c->op <= COND_GE)
        return bad(l, v, "<, <=, > and >= compare numbers");
    return 0;
}

static int load_conds(const loader *l, const kz_setting *g, scenario *sc)
{
    const kz_setting *w = kz_setting_child(g, "when");
    if (w == NULL)
        return 0;
    if (kz_setting_type(w) != KZ_SETTING_LIST)
        return bad(l, w, "expected a list ( { path = \"total\"; op = \">=\"; value = 5000; }, … )");
    sc->when = calloc(kz_setting_count(w) + 1, sizeof *sc->when);
    if (sc->when == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < kz_setting_count(w); i++) {
        const kz_setting *e = kz_setting_elem(w, i);
        if (kz_setting_type(e) != KZ_SETTING_GROUP)
            return bad(l, e, "expected a group { path = …; op = …; value = …; }");
        sc->nwhen++;
        int rc = load_cond(l, e, &sc->when[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The JSON value's number, or 0 with *ok = 0. */
static double number_at(const char *v, int *ok)
{
    char *end;
    double d = strtod(v, &end);
    *ok = end != v && (*v == '-' || (*v >= '0' && *v <= '9'));
    return d;
}

static int value_holds(const cond *c, const char *v)
{
    if (c->op == COND_EXISTS)
        return strncmp(v, "null", 4) != 0;
    if (c->is_number) {
        int ok;
        double d = number_at(v, &ok);
        if (!ok)
            return c->op == COND_NE;
        switch (c->op) {
        case COND_EQ:
            return d == c->number;
        case COND_NE:
            return d != c->number;
        case COND_LT:
            return d < c->number;
        case COND_LE:
            return d <= c->number;
        case COND_GT:
            return d > c->number;
        case COND_GE:
            return d >= c->number;
        default:
            return 0;
        }
    }
    int eq;
    if (c->is_bool) {
        eq = strncmp(v, c->text, strlen(c->text)) == 0;
    } else if (c->op == COND_CONTAINS) {
        char *s = jscan_string_dup(v);
        eq = s != NULL && strstr(s, c->text) != NULL;
        free(s);
        return eq;
    } else {
        eq = jscan_string_is(v, c->text);
    }
    return c->op == COND_NE ? !eq : eq;
}

typedef struct walk {
    const cond *c;
    const char *rest; /* the path still to follow */
} walk;

static int holds_at(const cond *c, const char *v, const char *rest);

static int elem_holds(const char *elem, void *arg)
{
    const walk *w = arg;
    return holds_at(w->c, elem, w->rest);
}

/* Follows rest from v; an array on the way holds when any element does. */
static int holds_at(const cond *c, const char *v, const char *rest)
{
    v += strspn(v, " \t\r\n");
    if (*v == '[' && (*rest != '\0' || c->op == COND_CONTAINS)) {
        walk w = {c, rest};
        return jscan_each(v, elem_holds, &w) == 1;
    }
    if (*rest == '\0')
        return value_holds(c, v);
    const char *dot = strchr(rest, '.');
    size_t n = dot ? (size_t)(dot - rest) : strlen(rest);
    char key[256];
    if (n >= sizeof key)
        return 0;
    memcpy(key, rest, n);
    key[n] = '\0';
    const char *m = jscan_member(v, key);
    if (m == NULL)
        return c->op == COND_NE;
    return holds_at(c, m, dot ? dot + 1 : "");
}

int conds_hold(const cond *c, size_t n, const char *payload)
{
    for (size_t i = 0; i < n; i++)
        if (!holds_at(&c[i], payload, c[i].path))
            return 0;
    return 1;
}

int topic_in(char *const *patterns, size_t n, const char *topic)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = patterns[i];
        size_t len = strlen(p);
        if (strcmp(p, "*") == 0 || strcmp(p, topic) == 0)
            return 1;
        if (len >= 2 && strcmp(p + len - 2, ".*") == 0 && strncmp(p, topic, len - 1) == 0)
            return 1;
    }
    return 0;
}

/* ---- the delivery window ----------------------------------------------- */

/* "mon-fri", "sat,sun", "mon-wed,sat", "daily" → bits, Sunday = bit 0. */
static int parse_days(const char *s, int *bits)
{
    static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    *bits = 0;
    if (strcmp(s, "daily") == 0 || strcmp(s, "*") == 0) {
        *bits = 0x7f;
        return 0;
    }
    while (*s != '\0') {
        int a = -1, b = -1;
        for (int i = 0; i < 7; i++)
            if (strncmp(s, names[i], 3) == 0)
                a = i;
        if (a < 0)
            return -1;
        s += 3;
        b = a;
        if (*s == '-') {
            b = -1;
            for (int i = 0; i < 7; i++)
                if (strncmp(s + 1, names[i], 3) == 0)
                    b = i;
            if (b < 0)
                return -1;
            s += 4;
        }
        for (int d = a;; d = (d + 1) % 7) {
            *bits |= 1 << d;
            if (d == b)
                break;
        }
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return -1;
    }
    return 0;
}

static int load_window(const loader *l, const kz_setting *g, window *w)
{
    const kz_setting *s = kz_setting_child(g, "window");
    if (s == NULL)
        return 0;
    if (kz_setting_type(s) != KZ_SETTING_GROUP)
        return bad(l, s, "expected { days = \"mon-fri\"; from = \"10:00\"; to = \"20:00\"; }");
    const char *days;
    w->on = 1;
    w->from_min = 0;
    w->to_min = 24 * 60;
    int rc = get_string(l, s, "days", 0, &days);
    if (rc == 0 && parse_days(days ? days : "daily", &w->days) != 0)
        rc = bad(l, kz_setting_child(s, "days"),
                 "days are \"daily\" or names sun..sat with ranges and commas: \"mon-fri,sun\"");
    if (rc == 0)
        rc = get_hhmm(l, s, "from", &w->from_min);
    const char *to = NULL;
    if (rc == 0)
        rc = get_string(l, s, "to", 0, &to);
    if (rc == 0 && to != NULL && strcmp(to, "24:00") != 0) /* "24:00": until midnight */
        rc = get_hhmm(l, s, "to", &w->to_min);
    if (rc == 0 && w->to_min <= w->from_min)
        rc = bad(l, s, "the window must end after it starts on the same day (to > from)");
    return rc;
}

/* ---- steps -------------------------------------------------------------- */

static int load_clicked(const loader *l, const kz_setting *g, int *clicked)
{
    const kz_setting *s = kz_setting_child(g, "clicked");
    int b;
    *clicked = CLICK_ANY;
    if (s == NULL)
        return 0;
    if (kz_setting_bool(s, &b) != 0)
        return bad(l, s, "expected true (only if the previous step's link was clicked) or false");
    *clicked = b ? CLICK_YES : CLICK_NO;
    return 0;
}

static int load_step(const loader *l, const kz_setting *g, step *st, int promotional)
{
    st->at_min = -1;
    st->goto_index = -1;
    st->promotional = promotional;
    const kz_setting *promo = kz_setting_child(g, "promotional");
    if (promo != NULL && kz_setting_bool(promo, &st->promotional) != 0)
        return bad(l, promo, "expected true or false");
    int rc = get_name(l, g, st->name);
    if (rc == 0)
        rc = get_duration(l, g, "after", &st->after_ms);
    if (rc == 0)
        rc = get_hhmm(l, g, "at", &st->at_min);
    if (rc == 0)
        rc = get_segment(l, g, &st->segment);
    if (rc == 0)
        rc = load_clicked(l, g, &st->clicked);
    if (rc == 0)
        rc = msgset_load(kz_setting_child(g, "messages"), &st->messages, l->err, l->errlen);
    if (rc == 0)
        rc = taglist_load(kz_setting_child(g, "tags"), &st->tags, l->err, l->errlen);
    if (rc == 0 && st->messages.count == 0 && st->tags.n == 0)
        rc = bad(l, g, "a step needs messages and/or tags");
    return rc;
}

/* goto = "name" | "end", resolved once every step is known. */
static int resolve_gotos(const loader *l, const kz_setting *list, scenario *sc)
{
    for (size_t i = 0; i < sc->nsteps; i++) {
        const kz_setting *g = kz_setting_elem(list, i);
        const char *to;
        int rc = get_string(l, g, "goto", 0, &to);
        if (rc != 0 || to == NULL)
            continue;
        sc->steps[i].goto_index =
            strcmp(to, "end") == 0 ? (int)sc->nsteps : scenario_step_index(sc, to);
        if (sc->steps[i].goto_index < 0 || sc->steps[i].goto_index == (int)i)
            return bad(l, kz_setting_child(g, "goto"),
                       "goto names another step of this scenario, or \"end\"");
    }
    return 0;
}

static int load_steps(const loader *l, const kz_setting *g, scenario *sc)
{
    const kz_setting *list = kz_setting_child(g, "steps");
    if (list == NULL || kz_setting_type(list) != KZ_SETTING_LIST || kz_setting_count(list) == 0)
        return bad(l, list ? list : g, "steps = ( { name = …; after = …; messages = …; }, … )");
    sc->steps = calloc(kz_setting_count(list), sizeof *sc->steps);
    if (sc->steps == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < kz_setting_count(list); i++) {
        const kz_setting *e = kz_setting_elem(list, i);
        if (kz_setting_type(e) != KZ_SETTING_GROUP)
            return bad(l, e, "expected a group { name = …; after = …; messages = …; }");
        sc->nsteps++;
        int rc = load_step(l, e, &sc->steps[i], sc->promotional);
        if (rc == 0 && scenario_step_index(sc, sc->steps[i].name) != (int)i)
            rc = bad(l, kz_setting_child(e, "name"), "another step has this name");
        if (rc != 0)
            return rc;
    }
    return resolve_gotos(l, list, sc);
}

/* ---- scenarios ---------------------------------------------------------- */

static int load_reentry(const loader *l, const kz_setting *g, int *out)
{
    const char *v;
    int rc = get_string(l, g, "reentry", 0, &v);
    *out = REENTRY_ONCE;
    if (rc != 0 || v == NULL || strcmp(v, "once") == 0)
        return rc;
    if (strcmp(v, "restart") == 0)
        *out = REENTRY_RESTART;
    else if (strcmp(v, "parallel") == 0)
        *out = REENTRY_PARALLEL;
    else
        return bad(l, kz_setting_child(g, "reentry"),
                   "reentry is \"once\", \"restart\" or \"parallel\"");
    return 0;
}

static int load_numbers(const loader *l, const kz_setting *g, scenario *sc)
{
    const kz_setting *cap = kz_setting_child(g, "daily_cap");
    if (cap != NULL && (kz_setting_int(cap, &sc->daily_cap) != 0 || sc->daily_cap <= 0))
        return bad(l, cap, "expected a positive number of sends per day");
    const kz_setting *promo = kz_setting_child(g, "promotional");
    sc->promotional = 1;
    if (promo != NULL && kz_setting_bool(promo, &sc->promotional) != 0)
        return bad(l, promo, "expected true or false");
    const kz_setting *prio = kz_setting_child(g, "priority");
    int64_t p = 0;
    if (prio != NULL && (kz_setting_int(prio, &p) != 0 || p < -1000 || p > 1000))
        return bad(l, prio, "expected a number from -1000 to 1000");
    sc->priority = (int)p;
    const kz_setting *keep = kz_setting_child(g, "keep_finished");
    if (keep != NULL &&
        (kz_setting_duration_ms(keep, &sc->keep_ms) != 0 || sc->keep_ms < 60 * 1000))
        return bad(l, keep, "expected a duration of at least a minute (e.g. \"90d\")");
    const char *oc;
    int rc = get_string(l, g, "over_cap", 0, &oc);
    sc->over_cap = KZ_OVER_CAP_DEFER;
    if (rc == 0 && oc != NULL && strcmp(oc, "drop") == 0)
        sc->over_cap = KZ_OVER_CAP_DROP;
    else if (rc == 0 && oc != NULL && strcmp(oc, "defer") != 0)
        rc = bad(l, kz_setting_child(g, "over_cap"),
                 "over_cap is \"defer\" (wait until the friend's cap allows) or \"drop\"");
    return rc;
}

static int load_scenario(const loader *l, const kz_setting *g, scenario *sc)
{
    int rc = get_name(l, g, sc->name);
    if (rc == 0)
        rc = get_strings(l, g, "trigger", &sc->triggers, &sc->ntriggers);
    if (rc == 0 && sc->ntriggers == 0)
        rc = kz_setting_error(g, l->err, l->errlen,
                              "trigger is required (a topic, e.g. \"line.follow\")");
    if (rc == 0)
        rc = get_strings(l, g, "stop_on", &sc->stop_on, &sc->nstop);
    if (rc == 0)
        rc = get_segment(l, g, &sc->segment);
    if (rc == 0)
        rc = load_conds(l, g, sc);
    if (rc == 0)
        rc = load_reentry(l, g, &sc->reentry);
    if (rc == 0)
        rc = load_window(l, g, &sc->win);
    if (rc == 0)
        rc = load_numbers(l, g, sc);
    if (rc == 0)
        rc = taglist_load(kz_setting_child(g, "tags"), &sc->tags, l->err, l->errlen);
    if (rc == 0)
        rc = load_steps(l, g, sc);
    return rc;
}

int scenario_set_load(kz_shop *shop, const kz_setting *group, scenario_set *out, char *err,
                      size_t errlen)
{
    loader l = {shop, err, errlen};
    const kz_setting *list = kz_setting_child(group, "scenarios");
    memset(out, 0, sizeof *out);
    if (list == NULL || kz_setting_type(list) != KZ_SETTING_LIST)
        return bad(&l, list ? list : group,
                   "scenarios = ( { name = …; trigger = …; steps = …; }, … )");
    out->v = calloc(kz_setting_count(list) + 1, sizeof *out->v);
    if (out->v == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < kz_setting_count(list); i++) {
        const kz_setting *e = kz_setting_elem(list, i);
        if (kz_setting_type(e) != KZ_SETTING_GROUP)
            return bad(&l, e, "expected a group { name = …; trigger = …; steps = …; }");
        out->n++;
        int rc = load_scenario(&l, e, &out->v[i]);
        if (rc == 0 && scenario_find(out, out->v[i].name) != &out->v[i])
            rc = bad(&l, kz_setting_child(e, "name"), "another scenario has this name");
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void scenario_free(scenario *sc)
{
    strings_free(sc->triggers, sc->ntriggers);
    strings_free(sc->stop_on, sc->nstop);
    kz_segment_free(sc->segment);
    for (size_t i = 0; i < sc->nwhen; i++) {
        free(sc->when[i].path);
        free(sc->when[i].text);
    }
    free(sc->when);
    taglist_free(&sc->tags);
    for (size_t i = 0; i < sc->nsteps; i++) {
        kz_segment_free(sc->steps[i].segment);
        msgset_free(&sc->steps[i].messages);
        taglist_free(&sc->steps[i].tags);
    }
    free(sc->steps);
}

void scenario_set_free(scenario_set *s)
{
    for (size_t i = 0; s->v != NULL && i < s->n; i++)
        scenario_free(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

const scenario *scenario_find(const scenario_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

int scenario_step_index(const scenario *sc, const char *name)
{
    for (size_t i = 0; i < sc->nsteps; i++)
        if (strcmp(sc->steps[i].name, name) == 0)
            return (int)i;
    return -1;
}
