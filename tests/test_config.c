/*
 * test_config — cfg_load / cfg_check_plugin / kz_setting accessors.
 *
 * Error cases are small texts written to a temporary file, so each
 * expectation shows the input and the exact line it produces. Fixture files
 * in tests/config/ cover what needs a real directory (relative secret files,
 * relative plugin_path).
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

#define FIX KZ_CONFIG_FIXTURES

static char tmpdir[] = "/tmp/kz-test-config-XXXXXX";
static char tmpconf[PATH_MAX];

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads text from a temp file; *rc gets cfg_load's result. */
static cfg *load_text(const char *text, diag *d, int *rc)
{
    cfg *c = NULL;
    write_file(tmpconf, text);
    int r = cfg_load(tmpconf, &c, d);
    if (rc != NULL)
        *rc = r;
    return c;
}

/* Checks that d holds exactly the given lines (NULL-terminated), each
 * written without the "FILE:" prefix, which is file + ":". */
static void expect_lines_v(const diag *d, const char *file, va_list ap)
{
    size_t i = 0;
    const char *want;
    while ((want = va_arg(ap, const char *)) != NULL) {
        char full[2048];
        snprintf(full, sizeof full, "%s:%s", file, want);
        if (i >= d->n)
            fail_msg("missing error line %zu: %s", i, full);
        assert_string_equal(d->lines[i], full);
        i++;
    }
    if (d->n != i) {
        for (size_t j = i; j < d->n; j++)
            print_error("unexpected: %s\n", d->lines[j]);
        fail_msg("%zu error lines, expected %zu", d->n, i);
    }
}

static void expect_lines(const diag *d, const char *file, ...)
{
    va_list ap;
    va_start(ap, file);
    expect_lines_v(d, file, ap);
    va_end(ap);
}

/* Loads text and expects it to parse with exactly the given error lines. */
static void expect_errors(const char *text, ...)
{
    diag d = {0};
    int rc;
    cfg *c = load_text(text, &d, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    va_list ap;
    va_start(ap, text);
    expect_lines_v(&d, tmpconf, ap);
    va_end(ap);
    cfg_free(c);
    diag_free(&d);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(tmpconf, sizeof tmpconf, "%s/t.conf", tmpdir);
    setenv("KZ_TEST_ADMIN_TOKEN", "admin-token-123", 1);
    setenv("KZ_TEST_CHANNEL_SECRET", "channel-secret-456", 1);
    setenv("KZ_TEST_API_KEY", "plugin-api-key-789", 1);
    unsetenv("KZ_TEST_UNSET");
    return 0;
}

static int teardown(void **state)
{
    char path[PATH_MAX];
    (void)state;
    unlink(tmpconf);
    snprintf(path, sizeof path, "%s/tok.txt", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    log_clear_secrets();
    return 0;
}

/* ---- the plugin schema used by the plugin tests ------------------------- */

static const kz_setting_spec hello_specs[] = {
    {"text", KZ_SETTING_STRING, 1, NULL, "what to say", {0}},
    {"count", KZ_SETTING_INT, 0, "3", "how often", {0}},
    {"ratio", KZ_SETTING_FLOAT, 0, "0.5", "a share", {0}},
    {"enabled", KZ_SETTING_BOOL, 0, "true", "on or off", {0}},
    {"delay", KZ_SETTING_DURATION, 0, "\"1d\"", "wait", {0}},
    {"api_key", KZ_SETTING_SECRET, 0, NULL, "key", {0}},
    {"tags", KZ_SETTING_LIST, 0, "[ \"a\", \"b\" ]", "labels", {0}},
    {"scenarios", KZ_SETTING_LIST, 0, NULL, "flows", {0}},
    {"greeting", KZ_SETTING_STRING, 0, "\"hello\"", "first words", {0}},
    {"limits", KZ_SETTING_GROUP, 0, "{ max = 10; names = ( \"x\" ); }", "nested", {0}},
    {NULL, 0, 0, NULL, NULL, {0}}};
static const kz_plugin hello_desc = {.name = "hello", .settings = hello_specs};
static const kz_plugin quiet_desc = {.name = "quiet", .settings = NULL};

#define HELLO_KNOWN "text, count, ratio, enabled, delay, api_key, tags, scenarios, greeting, limits"

static const cfg_plugin_use *find_use(const cfg_shop *s, const char *name)
{
    for (size_t i = 0; i < s->nplugins; i++)
        if (strcmp(s->plugins[i].name, name) == 0)
            return &s->plugins[i];
    return NULL;
}

/* Loads text (which must have no core errors), checks plugin `name` of the
 * first shop against desc and expects exactly the given lines. */
static void expect_plugin_errors(const char *text, const kz_plugin *desc, ...)
{
    diag d = {0};
    cfg *c = load_text(text, &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_true(c->nshops >= 1);
    const cfg_plugin_use *u = find_use(&c->shops[0], desc->name);
    assert_non_null(u);
    int n = cfg_check_plugin(c, &c->shops[0], u, desc, &d);
    assert_int_equal((size_t)n, diag_count(&d));
    va_list ap;
    va_start(ap, desc);
    expect_lines_v(&d, tmpconf, ap);
    va_end(ap);
    cfg_free(c);
    diag_free(&d);
}

/* ---- file-level --------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("# nothing\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_string_equal(c->path, tmpconf);
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_string_equal(c->store_url, "sqlite:var/kizuna.db");
    assert_string_equal(c->timezone, "Asia/Tokyo");
    assert_int_equal(c->log_level, KZ_LOG_INFO);
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->batch, 256);
    assert_int_equal(c->max_body, 1048576);
    assert_int_equal(c->sync_mode, 0);
    assert_int_equal(c->retry_attempts, 5);
    assert_int_equal(c->retry_initial_ms, 1000);
    assert_int_equal(c->retry_max_ms, 600000);
    assert_int_equal(c->nshops, 0);
    assert_true(c->nplugin_path >= 1); /* KZ_DEFAULT_PLUGIN_PATH: absolute dirs */
    for (size_t i = 0; i < c->nplugin_path; i++)
        assert_int_equal(c->plugin_path[i][0], '/');
    cfg_free(c);
    diag_free(&d);
}

static void test_syntax_error(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = (cfg *)1;
    assert_int_equal(cfg_load(FIX "/syntax.conf", &c, &d), KZ_EINVAL);
    assert_null(c);
    expect_lines(&d, FIX "/syntax.conf", "3: syntax error", NULL);
    diag_free(&d);

    c = load_text("a = [1, \"x\"];\n", &d, NULL);
    assert_null(c);
    expect_lines(&d, tmpconf, "1: syntax error: mismatched element type in array", NULL);
    diag_free(&d);

    c = load_text("kizuna = {};\n\nkizuna = {};\n", &d, NULL);
    assert_null(c);
    expect_lines(&d, tmpconf, "3: syntax error: duplicate setting name", NULL);
    diag_free(&d);
}

static void test_unreadable(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = (cfg *)1;
    assert_int_equal(cfg_load(FIX "/does-not-exist.conf", &c, &d), KZ_EINVAL);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.lines[0],
                        FIX "/does-not-exist.conf: cannot read: No such file or directory");
    diag_free(&d);

    assert_int_equal(cfg_load(FIX, &c, &d), KZ_EINVAL);
    assert_null(c);
    assert_string_equal(d.lines[0], FIX ": cannot read: Is a directory");
    diag_free(&d);

    assert_int_equal(cfg_load(NULL, &c, &d), KZ_EINVAL);
    assert_int_equal(cfg_load(tmpconf, NULL, &d), KZ_EINVAL);
    cfg_free(NULL);
}

static void test_unknown_top_level(void **state)
{
    (void)state;
    expect_errors("kizuna = {};\n"
                  "foo = 1;\n",
                  "2: unknown top-level setting 'foo' (expected kizuna, shops)", NULL);
    expect_errors("kizuna = 3;\nshops = { };\n", "1: kizuna: expected a group, got an integer",
                  "2: shops: expected a list, got a group", NULL);
    expect_errors("shops = ();\n", NULL);
    expect_errors("shops = [];\n", NULL);
}

/* ---- kizuna group ------------------------------------------------------- */

static void test_kizuna_unknown_key(void **state)
{
    (void)state;
    expect_errors("kizuna = {\n"
                  "  wrokers = 4;\n"
                  "  retry = { attempts = 3;\n"
                  "            backoff = \"1s\"; };\n"
                  "};\n",
                  "2: kizuna: unknown setting 'wrokers' (known: listen, store, timezone, "
                  "log_level, plugin_path, workers, batch, durability, retry, admin_token, "
                  "admin_remote, max_body, sandbox, sender, retention)",
                  "4: kizuna.retry: unknown setting 'backoff' (known: attempts, initial, max)",
                  NULL);
}

static void test_kizuna_types(void **state)
{
    (void)state;
    expect_errors("kizuna = {\n"
                  "  workers = \"2\";\n"
                  "  listen = 8080;\n"
                  "  store = true;\n"
                  "  timezone = 9.5;\n"
                  "  log_level = [ \"info\" ];\n"
                  "  batch = { n = 1; };\n"
                  "  durability = 1;\n"
                  "  retry = ( );\n"
                  "  plugin_path = 3;\n"
                  "};\n",
                  "2: kizuna.workers: expected an integer, got a string",
                  "3: kizuna.listen: expected a string, got an integer",
                  "4: kizuna.store: expected a string, got a boolean",
                  "5: kizuna.timezone: expected a string, got a float",
                  "6: kizuna.log_level: expected a string, got a list",
                  "7: kizuna.batch: expected an integer, got a group",
                  "8: kizuna.durability: expected a string, got an integer",
                  "9: kizuna.retry: expected a group, got a list",
                  "10: kizuna.plugin_path: expected a string or a list of strings, got an integer",
                  NULL);
}

static void test_kizuna_values(void **state)
{
    (void)state;
    expect_errors("kizuna = {\n"
                  "  workers = 0;\n"
                  "  batch = 10001;\n"
                  "  durability = \"fast\";\n"
                  "  log_level = \"verbose\";\n"
                  "  listen = \"\";\n"
                  "  retry = { attempts = 101;\n"
                  "            initial = \"soon\";\n"
                  "            max = \"0s\"; };\n"
                  "};\n",
                  "2: kizuna.workers: must be between 1 and 64, got 0",
                  "3: kizuna.batch: must be between 1 and 10000, got 10001",
                  "4: kizuna.durability: expected \"full\" or \"normal\", got \"fast\"",
                  "5: kizuna.log_level: expected debug, info, warn or error, got \"verbose\"",
                  "6: kizuna.listen: must not be empty",
                  "7: kizuna.retry.attempts: must be between 1 and 100, got 101",
                  "8: kizuna.retry.initial: invalid duration \"soon\" (examples: 1500ms, 90s, "
                  "15m, 1h30m, 1d)",
                  "9: kizuna.retry.max: must be longer than 0", NULL);
    expect_errors("kizuna = { workers = 65; };\n",
                  "1: kizuna.workers: must be between 1 and 64, got 65", NULL);
    expect_errors("kizuna = {\n  retry = { initial = \"5m\"; max = \"1m\"; };\n};\n",
                  "2: kizuna.retry: initial (300000 ms) must not exceed max (60000 ms)", NULL);
}

static void test_max_body(void **state)
{
    (void)state;
    expect_errors("kizuna = {\n"
                  "  max_body = 1023;\n"
                  "};\n",
                  "2: kizuna.max_body: must be between 1024 and 67108864, got 1023", NULL);
    expect_errors("kizuna = { max_body = 67108865; };\n",
                  "1: kizuna.max_body: must be between 1024 and 67108864, got 67108865", NULL);
    expect_errors("kizuna = { max_body = \"1M\"; };\n",
                  "1: kizuna.max_body: expected an integer, got a string", NULL);
    const char *ok[] = {"kizuna = { max_body = 1024; };\n", "kizuna = { max_body = 67108864; };\n"};
    const size_t want[] = {1024, 67108864};
    for (size_t i = 0; i < 2; i++) {
        diag d = {0};
        cfg *c = load_text(ok[i], &d, NULL);
        assert_non_null(c);
        assert_int_equal(diag_count(&d), 0);
        assert_int_equal(c->max_body, want[i]);
        cfg_free(c);
        diag_free(&d);
    }
}

static void test_sandbox_group(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("kizuna = { };\n", &d, NULL);
    assert_non_null(c);
    assert_string_equal(c->sandbox.listen, "127.0.0.1:8081");
    assert_string_equal(c->sandbox.store_url, "sqlite:var/sandbox.db");
    assert_int_equal(c->sandbox.monthly_limit, 0);
    assert_int_equal(c->sandbox.error_status, 500);
    assert_int_equal(c->sandbox.nrates, 0);
    cfg_free(c);
    c = load_text(
        "kizuna = { sandbox = { listen = \"127.0.0.1:9091\"; store = \"sqlite:x.db\";\n"
        "  monthly_limit = 200;\n"
        "  faults = { error_rate = 0.25; status = 503; latency_ms = 40; drop_rate = 1; };\n"
        "  rate_limits = { push = 5; broadcast = 2; }; }; };\n",
        &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_string_equal(c->sandbox.listen, "127.0.0.1:9091");
    assert_string_equal(c->sandbox.store_url, "sqlite:x.db");
    assert_int_equal(c->sandbox.monthly_limit, 200);
    assert_true(c->sandbox.error_rate == 0.25);
    assert_int_equal(c->sandbox.error_status, 503);
    assert_int_equal(c->sandbox.latency_ms, 40);
    assert_true(c->sandbox.drop_rate == 1.0);
    assert_int_equal(c->sandbox.nrates, 2);
    assert_string_equal(c->sandbox.rates[0].endpoint, "push");
    assert_int_equal(c->sandbox.rates[0].limit, 5);
    assert_string_equal(c->sandbox.rates[1].endpoint, "broadcast");
    assert_int_equal(c->sandbox.rates[1].limit, 2);
    cfg_free(c);
    diag_free(&d);
    expect_errors("kizuna = { sandbox = {\n"
                  "  monthly_limit = -1;\n"
                  "  faults = { error_rate = 1.5; status = 200; lag = 1; };\n"
                  "  rate_limits = { pushh = 1; reply = 0; push = \"x\"; };\n"
                  "  colour = 1; }; };\n",
                  "2: kizuna.sandbox.monthly_limit: must be 0 (unlimited) or more, got -1",
                  "3: kizuna.sandbox.faults.error_rate: must be between 0 and 1, got 1.5",
                  "3: kizuna.sandbox.faults.status: must be between 400 and 599, got 200",
                  "3: kizuna.sandbox.faults: unknown setting 'lag' (known: error_rate, status, "
                  "latency_ms, drop_rate)",
                  "4: kizuna.sandbox.rate_limits: unknown endpoint 'pushh' (known: reply, push, "
                  "multicast, narrowcast, broadcast, validate, progress, profile, quota, info, "
                  "link_token, richmenu, richmenu_create, richmenu_delete, "
                  "richmenu_alias_delete)",
                  "4: kizuna.sandbox.rate_limits.reply: must be at least 1, got 0",
                  "4: kizuna.sandbox.rate_limits.push: expected an integer, got a string",
                  "5: kizuna.sandbox: unknown setting 'colour' (known: listen, embedded, store, "
                  "monthly_limit, faults, rate_limits)",
                  NULL);
}

/* kizuna.sender: timeouts and concurrency of LINE requests. */
static void test_sender_group(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("kizuna = { };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(c->sender_timeout_ms, 0); /* 0: the sender's own defaults */
    assert_int_equal(c->sender_deadline_ms, 0);
    assert_int_equal(c->sender_max_in_flight, 0);
    cfg_free(c);
    c = load_text("kizuna = { sender = { timeout = \"10s\"; deadline = \"6h\";"
                  " max_in_flight = 32; }; };\n",
                  &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->sender_timeout_ms, 10000);
    assert_int_equal(c->sender_deadline_ms, 6 * 3600000LL);
    assert_int_equal(c->sender_max_in_flight, 32);
    cfg_free(c);
    diag_free(&d);
    expect_errors("kizuna = { sender = {\n"
                  "  timeout = \"0s\"; deadline = \"2d\";\n"
                  "  max_in_flight = 0; retries = 3; }; };\n",
                  "2: kizuna.sender.timeout: must be between 1s and 10m",
                  "2: kizuna.sender.deadline: must be between 1m and 24h (LINE keeps a retry "
                  "key 24 h)",
                  "3: kizuna.sender.max_in_flight: must be between 1 and 256, got 0",
                  "3: kizuna.sender: unknown setting 'retries' (known: timeout, deadline, "
                  "max_in_flight)",
                  NULL);
}

/* kizuna.retention: defaults, values, "0s" for good, and refusals. */
static void test_retention(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("kizuna = { };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(c->retention_events_ms, 30 * 86400000LL);
    assert_int_equal(c->retention_sends_ms, 90 * 86400000LL);
    cfg_free(c);
    c = load_text("kizuna = { retention = { events = \"7d\"; sends = \"0s\"; }; };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->retention_events_ms, 7 * 86400000LL);
    assert_int_equal(c->retention_sends_ms, 0);
    cfg_free(c);
    diag_free(&d);
    expect_errors("kizuna = { retention = {\n"
                  "  events = \"12h\"; sends = \"4000d\"; logs = \"1d\"; }; };\n",
                  "2: kizuna.retention.events: must be 0s (kept for good) or at least 1d",
                  "2: kizuna.retention.sends: must be between 0s (kept for good) and 3650d",
                  "2: kizuna.retention: unknown setting 'logs' (known: events, sends)", NULL);
}

/* A shop's own LINE rate limits (what the sender keeps to). */
static void test_line_rate_limits(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("shops = ( { id = \"a\"; line = { channel_secret = \"s\";\n"
                       "  access_token = \"t\"; rate_limits = { multicast = 100; broadcast = 10; };"
                       " }; } );\n",
                       &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->shops[0].nline_rates, 2);
    assert_string_equal(c->shops[0].line_rates[0].endpoint, "multicast");
    assert_int_equal(c->shops[0].line_rates[0].limit, 100);
    assert_string_equal(c->shops[0].line_rates[1].endpoint, "broadcast");
    assert_int_equal(c->shops[0].line_rates[1].limit, 10);
    cfg_free(c);
    diag_free(&d);
    expect_errors("shops = ( { id = \"a\"; line = { channel_secret = \"s\"; access_token = \"t\";\n"
                  "  rate_limits = { profile = 1; push = 0; }; }; },\n"
                  "          { id = \"a\"; line = { channel_secret = \"s\"; access_token = \"t\";\n"
                  "  rate_limits = { push = 5; }; }; } );\n",
                  "2: shop 'a': line.rate_limits: unknown endpoint 'profile' (known: reply, push, "
                  "multicast, broadcast, narrowcast, call, richmenu_create, richmenu_delete, "
                  "richmenu_alias_delete, richmenu_batch_progress, richmenu_batch)",
                  "2: shop 'a': line.rate_limits.push: must be at least 1, got 0",
                  "3: shop 'a': duplicate shop id (first defined at line 1)", NULL);
}

static void test_kizuna_ok_values(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("kizuna = { workers = 64; batch = 1; durability = \"full\";\n"
                       "  log_level = \"error\"; retry = { max = \"2s\"; }; };\n",
                       &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->workers, 64);
    assert_int_equal(c->batch, 1);
    assert_int_equal(c->sync_mode, 0);
    assert_int_equal(c->log_level, KZ_LOG_ERROR);
    assert_int_equal(c->retry_initial_ms, 1000);
    assert_int_equal(c->retry_max_ms, 2000);
    cfg_free(c);
}

static void test_plugin_path_string(void **state)
{
    (void)state;
    diag d = {0};
    char want[PATH_MAX + 16], *dir = realpath(tmpdir, NULL);
    assert_non_null(dir);
    cfg *c = load_text("kizuna = { plugin_path = \"lib/plugins:/usr/lib/x\"; };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->nplugin_path, 2);
    snprintf(want, sizeof want, "%s/lib/plugins", dir);
    assert_string_equal(c->plugin_path[0], want);
    assert_string_equal(c->plugin_path[1], "/usr/lib/x");
    cfg_free(c);
    free(dir);

    expect_errors("kizuna = {\n  plugin_path = ( \"a\",\n    \"\", 3 );\n};\n",
                  "3: kizuna.plugin_path[1]: empty directory name",
                  "3: kizuna.plugin_path[2]: expected a string, got an integer", NULL);
    expect_errors("kizuna = { plugin_path = \"a::b\"; };\n",
                  "1: kizuna.plugin_path: empty directory name", NULL);
    expect_errors("kizuna = { plugin_path = [ ]; };\n",
                  "1: kizuna.plugin_path: must name at least one directory", NULL);
}

static void test_admin_token(void **state)
{
    (void)state;
    expect_errors("kizuna = {\n  admin_token = \"env:KZ_TEST_UNSET\";\n};\n",
                  "2: kizuna.admin_token: environment variable 'KZ_TEST_UNSET' is not set", NULL);
    expect_errors("kizuna = { admin_token = 5; };\n",
                  "1: kizuna.admin_token: expected a string, got an integer", NULL);
    expect_errors("kizuna = { admin_token = \"env:KZ_TEST_ADMIN_TOKEN\"; };\n", NULL);
    expect_errors("kizuna = { admin_token = \"\"; };\n", "1: kizuna.admin_token: must not be empty",
                  NULL);
    expect_errors("kizuna = { admin_remote = \"yes\"; };\n",
                  "1: kizuna.admin_remote: expected a boolean, got a string", NULL);
    /* resolved into cfg.admin_token; admin_remote defaults to false */
    diag d = {0};
    cfg *c = load_text("kizuna = { admin_token = \"env:KZ_TEST_ADMIN_TOKEN\"; };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_string_equal(c->admin_token, "admin-token-123");
    assert_int_equal(c->admin_remote, 0);
    cfg_free(c);
    diag_free(&d);
    c = load_text("kizuna = { admin_remote = true; };\n", &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_null(c->admin_token);
    assert_int_equal(c->admin_remote, 1);
    cfg_free(c);
    diag_free(&d);
}

/* ---- shops -------------------------------------------------------------- */

static void test_shop_unknown_key(void **state)
{
    (void)state;
    expect_errors("shops = (\n"
                  "  { id = \"solia\";\n"
                  "    nmae = \"Solia\"; }\n"
                  ");\n",
                  "3: shop 'solia': unknown setting 'nmae' (known: id, name, timezone, line, "
                  "plugins, friends, delivery)",
                  NULL);
}

static void test_shop_missing_id(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("shops = (\n"
                       "  { id = \"a\"; },\n"
                       "  { id = \"b\"; },\n"
                       "  { name = \"nameless\";\n"
                       "    colour = 1; }\n"
                       ");\n",
                       &d, NULL);
    assert_non_null(c);
    expect_lines(&d, tmpconf, "4: shops[2]: missing required setting 'id'",
                 "5: shops[2]: unknown setting 'colour' (known: id, name, timezone, line, plugins, "
                 "friends, delivery)",
                 NULL);
    assert_int_equal(c->nshops, 2); /* the nameless shop is not kept */
    cfg_free(c);
    diag_free(&d);
}

static void test_shop_bad_id(void **state)
{
    (void)state;
    expect_errors(
        "shops = (\n"
        "  { id = 7; },\n"
        "  { id = \"Solia!\"; },\n"
        "  { id = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"; },\n"
        "  \"solia\" );\n",
        "2: shops[0]: id: expected a string, got an integer",
        "3: shops[1]: id: invalid shop id \"Solia!\" (use 1 to 64 of a-z, 0-9, _ and -)",
        "4: shops[2]: id: invalid shop id "
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (use 1 to "
        "64 of a-z, 0-9, _ and -)",
        "5: shops[3]: expected a group, got a string", NULL);
}

static void test_shop_duplicate_id(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_text("shops = (\n"
                       "  { id = \"solia\"; name = \"First\"; },\n"
                       "  { id = \"mori\"; },\n"
                       "  { id = \"solia\"; name = \"Second\"; }\n"
                       ");\n",
                       &d, NULL);
    assert_non_null(c);
    expect_lines(&d, tmpconf, "4: shop 'solia': duplicate shop id (first defined at line 2)", NULL);
    assert_int_equal(c->nshops, 2);
    assert_string_equal(c->shops[0].name, "First");
    cfg_free(c);
    diag_free(&d);
}

static void test_shop_types(void **state)
{
    (void)state;
    expect_errors("shops = ( { id = \"s\";\n"
                  "  name = 1;\n"
                  "  timezone = \"\";\n"
                  "  line = \"x\";\n"
                  "  plugins = ( );\n"
                  "} );\n",
                  "2: shop 's': name: expected a string, got an integer",
                  "3: shop 's': timezone: must not be empty",
                  "4: shop 's': line: expected a group, got a string",
                  "5: shop 's': plugins: expected a group, got a list", NULL);
}

/* friends.attributes declares typed attributes; time zones must exist. */
static void test_shop_friends_and_zone(void **state)
{
    (void)state;
    diag d = {0};
    int rc = 0;
    cfg *c = load_text("shops = ( { id = \"s\"; timezone = \"America/New_York\";\n"
                       "  friends = { attributes = { birthday = \"date\"; age = \"number\";"
                       " vip = \"bool\"; gender = \"string\"; }; }; } );\n",
                       &d, &rc);
    assert_int_equal(diag_count(&d), 0);
    assert_int_equal(c->shops[0].nfriend_attrs, 4);
    assert_string_equal(c->shops[0].friend_attrs[0].name, "birthday");
    assert_int_equal(c->shops[0].friend_attrs[0].type, CFG_ATTR_DATE);
    assert_int_equal(c->shops[0].friend_attrs[1].type, CFG_ATTR_NUMBER);
    assert_int_equal(c->shops[0].friend_attrs[2].type, CFG_ATTR_BOOL);
    assert_int_equal(c->shops[0].friend_attrs[3].type, CFG_ATTR_STRING);
    cfg_free(c);
    diag_free(&d);
    expect_errors("shops = ( { id = \"s\"; timezone = \"Asia/Tokio\";\n"
                  "  friends = { attributes = {\n"
                  "    birthday = \"day\";\n"
                  "    Age = \"number\";\n"
                  "    vip = true; };\n"
                  "  colour = 1; }; } );\n",
                  "1: shop 's': timezone: unknown time zone \"Asia/Tokio\" (an IANA name such as "
                  "\"Asia/Tokyo\")",
                  "3: shop 's': friends.attributes.birthday: unknown type \"day\" (known: string, "
                  "number, date, bool)",
                  "4: shop 's': friends.attributes: invalid attribute name 'Age' (use a-z, 0-9 and "
                  "_, not a digit first)",
                  "5: shop 's': friends.attributes.vip: expected a string, got a boolean",
                  "6: shop 's': friends: unknown setting 'colour' (known: attributes)", NULL);
}

static void test_shop_line(void **state)
{
    (void)state;
    char tok[PATH_MAX];
    snprintf(tok, sizeof tok, "%s/tok.txt", tmpdir);
    write_file(tok, "token-from-file\r\n");
    diag d = {0};
    cfg *c = load_text("shops = ( { id = \"s\";\n"
                       "  line = { channel_secret = \"inline-secret\";\n"
                       "           access_token = \"file:tok.txt\"; }; } );\n",
                       &d, NULL);
    assert_non_null(c);
    assert_int_equal(diag_count(&d), 0);
    assert_string_equal(c->shops[0].line_channel_secret, "inline-secret");
    assert_string_equal(c->shops[0].line_access_token, "token-from-file");
    assert_string_equal(c->shops[0].line_api, "https://api.line.me");
    cfg_free(c);
}

static void test_shop_line_errors(void **state)
{
    (void)state;
    expect_errors("shops = ( { id = \"solia\";\n"
                  "  line = {\n"
                  "    channel_secret = \"env:KZ_TEST_UNSET\";\n"
                  "    access_token = \"file:nope/token.txt\";\n"
                  "    api = \"ftp://x\";\n"
                  "    webhook = \"/hook\";\n"
                  "  };\n"
                  "} );\n",
                  "3: shop 'solia': line.channel_secret: environment variable 'KZ_TEST_UNSET' "
                  "is not set",
                  "4: shop 'solia': line.access_token: cannot read secret file "
                  "'nope/token.txt': No such file or directory",
                  "5: shop 'solia': line.api: expected \"sandbox\" or an http(s):// URL, got "
                  "\"ftp://x\"",
                  "6: shop 'solia': line: unknown setting 'webhook' (known: channel_secret, "
                  "access_token, api, rate_limits)",
                  NULL);
    expect_errors("shops = ( { id = \"solia\";\n"
                  "  line = { api = \"https://api.line.me\";\n"
                  "           channel_secret = \"env:\"; };\n"
                  "} );\n",
                  "3: shop 'solia': line.channel_secret: expected env:NAME, got \"env:\"",
                  "2: shop 'solia': line: missing required setting 'access_token'", NULL);
}

static void test_shop_plugins_shape(void **state)
{
    (void)state;
    expect_errors("shops = ( { id = \"solia\";\n"
                  "  plugins = {\n"
                  "    hello = \"yes\";\n"
                  "    Hello = { };\n"
                  "    ok = { };\n"
                  "  };\n"
                  "} );\n",
                  "3: shop 'solia': plugin 'hello': expected a group, got a string",
                  "4: shop 'solia': plugin 'Hello': invalid plugin name (use a-z, 0-9 and _)",
                  NULL);
}

static void test_many_errors(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = NULL;
    assert_int_equal(cfg_load(FIX "/many.conf", &c, &d), 0);
    assert_non_null(c);
    expect_lines(&d, FIX "/many.conf", "3: kizuna.workers: must be between 1 and 64, got 0",
                 "4: kizuna.log_level: expected debug, info, warn or error, got \"verbose\"",
                 "5: kizuna.durability: expected \"full\" or \"normal\", got \"fast\"",
                 "6: kizuna: unknown setting 'colour' (known: listen, store, timezone, "
                 "log_level, plugin_path, workers, batch, durability, retry, admin_token, "
                 "admin_remote, max_body, sandbox, sender, retention)",
                 "9: shop 'a': plugin 'hello': expected a group, got a string",
                 "10: shops[1]: missing required setting 'id'",
                 "11: shop 'a': duplicate shop id (first defined at line 9)",
                 "13: unknown top-level setting 'extra' (expected kizuna, shops)", NULL);
    assert_int_equal(c->nshops, 1);
    cfg_free(c);
    diag_free(&d);
}

/* ---- the good fixture --------------------------------------------------- */

static cfg *load_good(diag *d)
{
    cfg *c = NULL;
    assert_int_equal(cfg_load(FIX "/good.conf", &c, d), 0);
    assert_non_null(c);
    if (diag_count(d) != 0)
        diag_print(d, stderr);
    assert_int_equal(diag_count(d), 0);
    return c;
}

static void test_good(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_good(&d);
    assert_string_equal(c->listen, "0.0.0.0:9090");
    assert_string_equal(c->store_url, "sqlite:/tmp/kizuna-test.db");
    assert_string_equal(c->timezone, "Europe/Paris");
    assert_int_equal(c->log_level, KZ_LOG_DEBUG);
    assert_int_equal(c->workers, 8);
    assert_int_equal(c->batch, 100);
    assert_int_equal(c->sync_mode, 1);
    assert_int_equal(c->retry_attempts, 7);
    assert_int_equal(c->retry_initial_ms, 2000);
    assert_int_equal(c->retry_max_ms, 3600000);
    assert_int_equal(c->nshops, 2);

    const cfg_shop *s = &c->shops[0];
    assert_string_equal(s->id, "solia");
    assert_string_equal(s->name, "Solia Cosmetics");
    assert_string_equal(s->timezone, "Europe/Paris"); /* inherited */
    assert_int_equal(s->line, 17);
    assert_string_equal(s->line_channel_secret, "channel-secret-456");
    assert_string_equal(s->line_access_token, "s3cr3t-access-token");
    assert_string_equal(s->line_api, "sandbox");
    assert_int_equal(s->nplugins, 2);
    assert_string_equal(s->plugins[0].name, "hello");
    assert_int_equal(s->plugins[0].line, 23);
    assert_string_equal(s->plugins[1].name, "quiet");
    assert_int_equal(s->plugins[1].line, 32);

    s = &c->shops[1];
    assert_string_equal(s->id, "mori-2");
    assert_string_equal(s->name, "mori-2"); /* defaults to the id */
    assert_string_equal(s->timezone, "Asia/Seoul");
    assert_null(s->line_channel_secret);
    assert_null(s->line_api);
    assert_int_equal(s->nplugins, 0);
    cfg_free(c);
}

static void test_relative_plugin_path(void **state)
{
    (void)state;
    diag d = {0};
    char want[PATH_MAX + 16], *dir = realpath(FIX, NULL);
    assert_non_null(dir);
    cfg *c = load_good(&d);
    assert_int_equal(c->nplugin_path, 2);
    snprintf(want, sizeof want, "%s/plugins", dir);
    assert_string_equal(c->plugin_path[0], want);
    assert_string_equal(c->plugin_path[1], "/opt/kizuna/plugins");
    cfg_free(c);
    free(dir);
}

/* Secrets are registered with the log, which masks them in every line. */
static void test_secrets_masked(void **state)
{
    (void)state;
    diag d = {0};
    char *buf = NULL;
    size_t len = 0;
    log_clear_secrets();
    cfg *c = load_good(&d);
    const cfg_plugin_use *u = find_use(&c->shops[0], "hello");
    assert_int_equal(cfg_check_plugin(c, &c->shops[0], u, &hello_desc, &d), 0);
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    log_set_stream(out);
    log_msg(KZ_LOG_ERROR, "a=%s b=%s c=%s d=%s", "admin-token-123", "channel-secret-456",
            "s3cr3t-access-token", "plugin-api-key-789");
    log_set_stream(NULL);
    fclose(out);
    assert_non_null(strstr(buf, "a=*** b=*** c=*** d=***"));
    assert_null(strstr(buf, "secret-456"));
    free(buf);
    cfg_free(c);
    log_clear_secrets();
}

/* ---- plugin schema ------------------------------------------------------ */

static const char *const shop_hello_fmt = "shops = ( { id = \"solia\";\n"
                                          "  plugins = {\n"
                                          "    hello = {\n"
                                          "%s"
                                          "    };\n"
                                          "  };\n"
                                          "} );\n";

/* shop_hello_fmt with body as hello's group, lines 4.. */
static char *hello_conf(const char *body)
{
    size_t size = strlen(shop_hello_fmt) + strlen(body) + 1;
    char *text = malloc(size);
    assert_non_null(text);
    snprintf(text, size, shop_hello_fmt, body);
    return text;
}

static void test_plugin_unknown_key(void **state)
{
    (void)state;
    char *t = hello_conf("      text = \"hi\";\n"
                         "      txet = \"typo\";\n");
    expect_plugin_errors(
        t, &hello_desc,
        "5: shop 'solia': plugin 'hello': unknown setting 'txet' (known: " HELLO_KNOWN ")", NULL);
    free(t);
    t = hello_conf("");
    memcpy(strstr(t, "hello"), "quiet", 5);
    expect_plugin_errors(t, &quiet_desc, NULL);
    free(t);
    t = hello_conf("      loud = true;\n");
    memcpy(strstr(t, "hello"), "quiet", 5);
    expect_plugin_errors(
        t, &quiet_desc,
        "4: shop 'solia': plugin 'quiet': unknown setting 'loud' (this plugin takes no settings)",
        NULL);
    free(t);
}

static void test_plugin_types(void **state)
{
    (void)state;
    char *t = hello_conf("      text = 1;\n"
                         "      count = \"3\";\n"
                         "      ratio = \"0.5\";\n"
                         "      enabled = 1;\n"
                         "      delay = 90;\n"
                         "      api_key = [ ];\n"
                         "      tags = { };\n"
                         "      limits = ( );\n");
    expect_plugin_errors(
        t, &hello_desc, "4: shop 'solia': plugin 'hello': text: expected a string, got an integer",
        "5: shop 'solia': plugin 'hello': count: expected an integer, got a string",
        "6: shop 'solia': plugin 'hello': ratio: expected a float, got a string",
        "7: shop 'solia': plugin 'hello': enabled: expected a boolean, got an "
        "integer",
        "8: shop 'solia': plugin 'hello': delay: expected a duration string, got "
        "an integer",
        "9: shop 'solia': plugin 'hello': api_key: expected a string, got a list",
        "10: shop 'solia': plugin 'hello': tags: expected a list, got a group",
        "11: shop 'solia': plugin 'hello': limits: expected a group, got a list", NULL);
    free(t);
    t = hello_conf("      text = \"x\";\n"
                   "      delay = \"ten minutes\";\n"
                   "      api_key = \"env:KZ_TEST_UNSET\";\n");
    expect_plugin_errors(t, &hello_desc,
                         "5: shop 'solia': plugin 'hello': delay: invalid duration \"ten minutes\" "
                         "(examples: 1500ms, 90s, 15m, 1h30m, 1d)",
                         "6: shop 'solia': plugin 'hello': api_key: environment variable "
                         "'KZ_TEST_UNSET' is not set",
                         NULL);
    free(t);
}

static void test_plugin_missing_required(void **state)
{
    (void)state;
    char *t = hello_conf("      count = 1;\n");
    expect_plugin_errors(t, &hello_desc,
                         "3: shop 'solia': plugin 'hello': missing required setting 'text'", NULL);
    free(t);
}

static void test_plugin_bad_default(void **state)
{
    (void)state;
    static const kz_setting_spec specs[] = {{"a", KZ_SETTING_INT, 0, "\"three\"", "", {0}},
                                            {"b", KZ_SETTING_STRING, 0, "unquoted", "", {0}},
                                            {"c", KZ_SETTING_DURATION, 0, "\"1 day\"", "", {0}},
                                            {"0d", KZ_SETTING_INT, 0, "1", "", {0}},
                                            {"e", 99, 0, NULL, "", {0}},
                                            {NULL, 0, 0, NULL, NULL, {0}}};
    static const kz_plugin desc = {.name = "hello", .settings = specs};
    char *t = hello_conf("");
    expect_plugin_errors(
        t, &desc,
        "3: shop 'solia': plugin 'hello': plugin bug: default for 'a' is a string, declared as "
        "an integer",
        "3: shop 'solia': plugin 'hello': plugin bug: default for 'b' is not a valid value: "
        "unquoted",
        "3: shop 'solia': plugin 'hello': c: invalid duration \"1 day\" (examples: 1500ms, 90s, "
        "15m, 1h30m, 1d)",
        "3: shop 'solia': plugin 'hello': cannot add default for '0d'",
        "3: shop 'solia': plugin 'hello': plugin bug: setting 'e' has unknown type 99", NULL);
    free(t);
}

static void test_plugin_defaults_and_accessors(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_good(&d);
    const cfg_shop *s = &c->shops[0];
    const cfg_plugin_use *u = find_use(s, "hello");
    assert_int_equal(cfg_check_plugin(c, s, u, &hello_desc, &d), 0);
    assert_int_equal(cfg_check_plugin(c, s, u, &hello_desc, &d), 0); /* idempotent */
    const kz_setting *g = u->setting;
    const char *str;
    int64_t i64;
    double f;
    int b;

    assert_int_equal(cfg_setting_type(g), KZ_SETTING_GROUP);
    assert_string_equal(cfg_setting_name(g), "hello");
    assert_int_equal(cfg_setting_line(g), 23);
    assert_int_equal(cfg_setting_count(g), 10);

    /* given values */
    const kz_setting *text = cfg_setting_child(g, "text");
    assert_ptr_equal(text, cfg_setting_child(g, "text")); /* stable handles */
    assert_int_equal(cfg_setting_string(text, &str), 0);
    assert_string_equal(str, "友だち追加ありがとうございます!");
    assert_int_equal(cfg_setting_line(text), 24);
    assert_int_equal(cfg_setting_int(cfg_setting_child(g, "count"), &i64), 0);
    assert_true(i64 == 5000000000LL);
    assert_int_equal(cfg_setting_type(cfg_setting_child(g, "count")), KZ_SETTING_INT);
    assert_int_equal(cfg_setting_float(cfg_setting_child(g, "ratio"), &f), 0);
    assert_true(f == 2.0);
    assert_int_equal(cfg_setting_string(cfg_setting_child(g, "api_key"), &str), 0);
    assert_string_equal(str, "plugin-api-key-789");

    /* defaults: present, typed, line 0 */
    const kz_setting *greet = cfg_setting_child(g, "greeting");
    assert_non_null(greet);
    assert_int_equal(cfg_setting_line(greet), 0);
    assert_int_equal(cfg_setting_string(greet, &str), 0);
    assert_string_equal(str, "hello");
    assert_int_equal(cfg_setting_duration_ms(cfg_setting_child(g, "delay"), &i64), 0);
    assert_true(i64 == 86400000);
    assert_int_equal(cfg_setting_bool(cfg_setting_child(g, "enabled"), &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(cfg_setting_float(cfg_setting_child(g, "ratio"), &f), 0);
    const kz_setting *tags = cfg_setting_child(g, "tags");
    assert_int_equal(cfg_setting_type(tags), KZ_SETTING_LIST);
    assert_int_equal(cfg_setting_count(tags), 2);
    assert_int_equal(cfg_setting_string(cfg_setting_elem(tags, 1), &str), 0);
    assert_string_equal(str, "b");
    assert_null(cfg_setting_name(cfg_setting_elem(tags, 1)));
    assert_null(cfg_setting_elem(tags, 2));
    const kz_setting *lim = cfg_setting_child(g, "limits");
    assert_int_equal(cfg_setting_int(cfg_setting_child(lim, "max"), &i64), 0);
    assert_true(i64 == 10);
    assert_int_equal(cfg_setting_count(cfg_setting_child(lim, "names")), 1);
    assert_int_equal(cfg_setting_line(cfg_setting_child(lim, "max")), 0);

    /* the other plugin took none: still an empty group */
    const cfg_plugin_use *q = find_use(s, "quiet");
    assert_int_equal(cfg_check_plugin(c, s, q, &quiet_desc, &d), 0);
    assert_int_equal(cfg_setting_count(q->setting), 0);
    cfg_free(c);
}

static void test_accessor_errors(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_good(&d);
    const kz_setting *g = find_use(&c->shops[0], "hello")->setting;
    const kz_setting *text = cfg_setting_child(g, "text");
    const char *str;
    int64_t i64;
    double f;
    int b;

    assert_int_equal(cfg_setting_int(text, &i64), KZ_ETYPE);
    assert_int_equal(cfg_setting_float(text, &f), KZ_ETYPE);
    assert_int_equal(cfg_setting_bool(text, &b), KZ_ETYPE);
    assert_int_equal(cfg_setting_duration_ms(text, &i64), KZ_EINVAL); /* not a duration */
    assert_int_equal(cfg_setting_string(cfg_setting_child(g, "count"), &str), KZ_ETYPE);
    assert_int_equal(cfg_setting_duration_ms(cfg_setting_child(g, "count"), &i64), KZ_ETYPE);
    assert_int_equal(cfg_setting_string(g, &str), KZ_ETYPE);
    assert_int_equal(cfg_setting_string(NULL, &str), KZ_EINVAL);
    assert_int_equal(cfg_setting_int(NULL, &i64), KZ_EINVAL);
    assert_int_equal(cfg_setting_float(NULL, &f), KZ_EINVAL);
    assert_int_equal(cfg_setting_bool(NULL, &b), KZ_EINVAL);
    assert_int_equal(cfg_setting_duration_ms(NULL, &i64), KZ_EINVAL);
    assert_null(cfg_setting_child(g, "nope"));
    assert_null(cfg_setting_child(text, "x"));
    assert_null(cfg_setting_child(NULL, "x"));
    assert_null(cfg_setting_elem(text, 0));
    assert_null(cfg_setting_elem(NULL, 0));
    assert_int_equal(cfg_setting_count(text), 0);
    assert_int_equal(cfg_setting_count(NULL), 0);
    assert_int_equal(cfg_setting_type(NULL), KZ_SETTING_NONE);
    assert_null(cfg_setting_name(NULL));
    assert_int_equal(cfg_setting_line(NULL), 0);
    assert_non_null(cfg_setting_elem(g, 0)); /* a group's members by index */
    cfg_free(c);
}

static void test_setting_error(void **state)
{
    (void)state;
    diag d = {0};
    char err[512];
    cfg *c = load_good(&d);
    const cfg_plugin_use *u = find_use(&c->shops[0], "hello");
    assert_int_equal(cfg_check_plugin(c, &c->shops[0], u, &hello_desc, &d), 0);
    const kz_setting *sc = cfg_setting_child(u->setting, "scenarios");
    const kz_setting *steps = cfg_setting_child(cfg_setting_elem(sc, 0), "steps");
    const kz_setting *after = cfg_setting_child(cfg_setting_elem(steps, 1), "after");
    int64_t ms;
    assert_int_equal(cfg_setting_duration_ms(after, &ms), KZ_EINVAL);
    assert_int_equal(cfg_setting_error(after, err, sizeof err, "invalid duration \"2 days\""),
                     KZ_EINVAL);
    assert_string_equal(err, FIX "/good.conf:30: shop 'solia': plugin 'hello': "
                                 "scenarios[0].steps[1].after: invalid duration \"2 days\"");
    cfg_setting_error(cfg_setting_elem(steps, 0), err, sizeof err, "bad step");
    assert_string_equal(err, FIX "/good.conf:29: shop 'solia': plugin 'hello': "
                                 "scenarios[0].steps[0]: bad step");
    cfg_setting_error(u->setting, err, sizeof err, "cannot start");
    assert_string_equal(err, FIX "/good.conf:23: shop 'solia': plugin 'hello': cannot start");
    /* a default has line 0: the error points at the plugin group */
    cfg_setting_error(cfg_setting_child(u->setting, "delay"), err, sizeof err, "too long");
    assert_string_equal(err, FIX "/good.conf:23: shop 'solia': plugin 'hello': delay: too long");
    assert_int_equal(cfg_setting_error(NULL, err, sizeof err, "x"), KZ_EINVAL);
    assert_int_equal(cfg_setting_error(after, NULL, 0, "x"), KZ_EINVAL);
    cfg_setting_error(after, err, 20, "truncated safely");
    assert_int_equal(strlen(err), 19);

    cfg_plugin_error(c, &c->shops[0], u, &d, "shop_open failed: no token");
    expect_lines(&d, FIX "/good.conf",
                 "23: shop 'solia': plugin 'hello': shop_open failed: no token", NULL);
    diag_free(&d);
    cfg_free(c);
}

/* Plugins may read their settings from several workers at once. */
static void *walk(void *arg)
{
    const kz_setting *g = arg;
    for (int n = 0; n < 200; n++) {
        const kz_setting *sc = cfg_setting_child(g, "scenarios");
        for (size_t i = 0; i < cfg_setting_count(sc); i++) {
            const kz_setting *steps = cfg_setting_child(cfg_setting_elem(sc, i), "steps");
            for (size_t j = 0; j < cfg_setting_count(steps); j++) {
                const char *s;
                if (cfg_setting_string(cfg_setting_child(cfg_setting_elem(steps, j), "after"),
                                       &s) != 0)
                    return (void *)1;
            }
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    diag d = {0};
    cfg *c = load_good(&d);
    const kz_setting *g = find_use(&c->shops[0], "hello")->setting;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, walk, (void *)g), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    cfg_free(c);
}

/* cfg_load and cfg_check_plugin must survive any prefix of a valid file. */
static void test_truncations(void **state)
{
    (void)state;
    FILE *f = fopen(FIX "/good.conf", "r");
    assert_non_null(f);
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    for (size_t cut = 0; cut <= len; cut += 3) {
        char saved = text[cut];
        text[cut] = '\0';
        diag d = {0};
        cfg *c = load_text(text, &d, NULL);
        for (size_t i = 0; c != NULL && i < c->nshops; i++)
            for (size_t j = 0; j < c->shops[i].nplugins; j++)
                cfg_check_plugin(c, &c->shops[i], &c->shops[i].plugins[j], &hello_desc, &d);
        cfg_free(c);
        diag_free(&d);
        text[cut] = saved;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_unknown_top_level),
        cmocka_unit_test(test_kizuna_unknown_key),
        cmocka_unit_test(test_kizuna_types),
        cmocka_unit_test(test_kizuna_values),
        cmocka_unit_test(test_sender_group),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_line_rate_limits),
        cmocka_unit_test(test_kizuna_ok_values),
        cmocka_unit_test(test_max_body),
        cmocka_unit_test(test_sandbox_group),
        cmocka_unit_test(test_plugin_path_string),
        cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_shop_unknown_key),
        cmocka_unit_test(test_shop_missing_id),
        cmocka_unit_test(test_shop_bad_id),
        cmocka_unit_test(test_shop_duplicate_id),
        cmocka_unit_test(test_shop_types),
        cmocka_unit_test(test_shop_friends_and_zone),
        cmocka_unit_test(test_shop_line),
        cmocka_unit_test(test_shop_line_errors),
        cmocka_unit_test(test_shop_plugins_shape),
        cmocka_unit_test(test_many_errors),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_relative_plugin_path),
        cmocka_unit_test(test_secrets_masked),
        cmocka_unit_test(test_plugin_unknown_key),
        cmocka_unit_test(test_plugin_types),
        cmocka_unit_test(test_plugin_missing_required),
        cmocka_unit_test(test_plugin_bad_default),
        cmocka_unit_test(test_plugin_defaults_and_accessors),
        cmocka_unit_test(test_accessor_errors),
        cmocka_unit_test(test_setting_error),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
