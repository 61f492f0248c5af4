/* Store (SQLite backend) behaviour. Each test works in its own temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

typedef struct fx {
    char dir[256];
    char path[320]; /* database file, two directory levels below dir */
    char url[340];
    store *s;
} fx;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/kz_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/sub/dir/kizuna.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    char err[256] = "";
    if (store_open(f->url, STORE_SYNC_NORMAL, &f->s, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- raw SQLite, only to forge what the API cannot ---------------------- */

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ---- helpers ------------------------------------------------------------ */

static int64_t append(store *s, const char *shop, const char *uid, const char *payload)
{
    int64_t id = -1;
    char err[256] = "";
    assert_int_equal(store_event_append(s, shop, uid, "order.created", NULL, 1000, payload,
                                        strlen(payload), &id, err, sizeof err),
                     0);
    return id;
}

static int64_t instance(store *s, const char *shop, const char *plugin, int64_t *cursor)
{
    int64_t id = 0, cur = -1;
    assert_int_equal(store_instance_open(s, shop, plugin, &id, &cur, NULL, 0), 0);
    assert_true(id > 0);
    if (cursor != NULL)
        *cursor = cur;
    return id;
}

static void put(store *s, int64_t inst, const char *key, const char *val)
{
    assert_int_equal(store_kv_put(s, inst, key, val, strlen(val), NULL, 0), 0);
}

/* Asserts the stored value of key equals `want` (NULL: absent). */
static void expect_kv(store *s, int64_t inst, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    int rc = store_kv_get(s, inst, key, &v, &n, NULL, 0);
    if (want == NULL) {
        assert_int_equal(rc, KZ_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    assert_int_equal(((char *)v)[n], '\0');
    free(v);
}

static size_t count_events(store *s, const char *shop)
{
    store_batch b = {0};
    assert_int_equal(store_events_after(s, shop, 0, 100000, &b, NULL, 0), 0);
    size_t n = b.n;
    store_batch_free(&b);
    return n;
}

/* ---- open and migrations ------------------------------------------------ */

static void test_open_migrates_and_reopens(void **state)
{
    fx *f = *state;
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0); /* parent dirs were created */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    int64_t id = append(f->s, "a", "u1", "{}");
    assert_int_equal(store_meta_put(f->s, "clock", "42", NULL, 0), 0);
    store_close(f->s);
    f->s = NULL;

    char err[256] = "";
    assert_int_equal(store_open(f->url, STORE_SYNC_FULL, &f->s, err, sizeof err), 0);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    int64_t max = 0;
    assert_int_equal(store_event_max_id(f->s, "a", &max, NULL, 0), 0);
    assert_int_equal(max, id);
    char v[16];
    assert_int_equal(store_meta_get(f->s, "clock", v, sizeof v, NULL, 0), 0);
    assert_string_equal(v, "42");
}

static void test_unsupported_url(void **state)
{
    (void)state;
    store *s = (store *)1;
    char err[256] = "";
    assert_int_equal(store_open("postgres://db/kz", STORE_SYNC_FULL, &s, err, sizeof err),
                     KZ_EINVAL);
    assert_null(s);
    assert_string_equal(err, "unsupported store URL 'postgres://db/kz': expected sqlite:PATH");
    assert_int_equal(store_open("sqlite:", STORE_SYNC_FULL, &s, err, sizeof err), KZ_EINVAL);
}

static void test_newer_schema_refused(void **state)
{
    fx *f = *state;
    char path[400], url[420], sql[64], want[160], err[256] = "";
    snprintf(path, sizeof path, "%s/future.db", f->dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 6);
    raw_exec(path, sql);
    store *s = NULL;
    assert_int_equal(store_open(url, STORE_SYNC_FULL, &s, err, sizeof err), KZ_EINVAL);
    assert_null(s);
    snprintf(want, sizeof want,
             "database schema is version %d, this kizuna understands up to %d; upgrade kizuna",
             STORE_SCHEMA_VERSION + 6, STORE_SCHEMA_VERSION);
    assert_string_equal(err, want);
    /* refused, not migrated */
    assert_int_equal(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION + 6);
}

/* ---- events ------------------------------------------------------------- */

static void test_append_and_duplicate(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t id1 = -1, id2 = -1, dup = -1, other = -1;
    const char *p1 = "{\"n\":1}";
    assert_int_equal(store_event_append(s, "a", "u1", "order.created", "bob", 1234, p1, strlen(p1),
                                        &id1, NULL, 0),
                     0);
    assert_int_equal(
        store_event_append(s, "a", "u2", "order.paid", NULL, 1235, "{}", 2, &id2, NULL, 0), 0);
    assert_true(id1 > 0);
    assert_true(id2 > id1);
    assert_int_equal(
        store_event_append(s, "a", "u1", "other.topic", NULL, 9, "[]", 2, &dup, NULL, 0), 0);
    assert_int_equal(dup, 0);
    /* the same uid in another shop is another event */
    assert_int_equal(
        store_event_append(s, "b", "u1", "order.created", NULL, 1, "{}", 2, &other, NULL, 0), 0);
    assert_true(other > id2);

    int64_t max = 0;
    assert_int_equal(store_event_max_id(s, "a", &max, NULL, 0), 0);
    assert_int_equal(max, id2);
    assert_int_equal(store_event_max_id(s, "nobody", &max, NULL, 0), 0);
    assert_int_equal(max, 0);

    store_batch b = {0};
    assert_int_equal(store_event_get(s, id1, &b, NULL, 0), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.ev[0].id, id1);
    assert_string_equal(b.ev[0].shop, "a");
    assert_string_equal(b.ev[0].uid, "u1");
    assert_string_equal(b.ev[0].topic, "order.created"); /* the duplicate wrote nothing */
    assert_string_equal(b.ev[0].user, "bob");
    assert_int_equal(b.ev[0].time_ms, 1234);
    assert_int_equal(b.ev[0].payload_len, strlen(p1));
    assert_string_equal(b.ev[0].payload, p1);
    assert_int_equal(store_event_get(s, id2, &b, NULL, 0), 0);
    assert_null(b.ev[0].user);
    assert_int_equal(store_event_get(s, other + 100, &b, NULL, 0), KZ_ENOTFOUND);
    store_batch_free(&b);
    assert_int_equal(count_events(s, "a"), 2);
}

static void test_events_after_order_and_limit(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t ids[10];
    char uid[16];
    for (int i = 0; i < 10; i++) {
        snprintf(uid, sizeof uid, "a%d", i);
        ids[i] = append(s, "a", uid, "{}");
        snprintf(uid, sizeof uid, "b%d", i);
        append(s, "b", uid, "{}");
    }
    store_batch b = {0};
    assert_int_equal(store_events_after(s, "a", 0, 100, &b, NULL, 0), 0);
    assert_int_equal(b.n, 10);
    for (size_t i = 0; i < b.n; i++) {
        snprintf(uid, sizeof uid, "a%d", (int)i);
        assert_int_equal(b.ev[i].id, ids[i]);
        assert_string_equal(b.ev[i].shop, "a");
        assert_string_equal(b.ev[i].uid, uid);
    }
    assert_int_equal(store_events_after(s, "a", 0, 3, &b, NULL, 0), 0);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.ev[2].id, ids[2]);
    assert_int_equal(store_events_after(s, "a", ids[3], 100, &b, NULL, 0), 0);
    assert_int_equal(b.n, 6);
    assert_int_equal(b.ev[0].id, ids[4]);
    assert_string_equal(b.ev[0].uid, "a4");
    assert_int_equal(store_events_after(s, "a", ids[9], 100, &b, NULL, 0), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(store_events_after(s, "a", 0, 0, &b, NULL, 0), KZ_EINVAL);
    store_batch_free(&b);
}

static void fill_payload(char *p, size_t len, int i)
{
    int n = snprintf(p, len, "{\"i\":%d,\"pad\":\"", i);
    memset(p + n, 'a' + i % 26, len - (size_t)n - 2);
    memcpy(p + len - 2, "\"}", 2);
}

static void check_big_batch(const store_batch *b, int first, char *want, size_t len)
{
    char uid[16];
    for (size_t k = 0; k < b->n; k++) {
        int i = first + (int)k;
        fill_payload(want, len, i);
        snprintf(uid, sizeof uid, "big%d", i);
        assert_string_equal(b->ev[k].shop, "s");
        assert_string_equal(b->ev[k].uid, uid);
        assert_string_equal(b->ev[k].topic, "order.created");
        assert_int_equal(b->ev[k].payload_len, len);
        assert_memory_equal(b->ev[k].payload, want, len);
        assert_int_equal(b->ev[k].payload[len], '\0');
    }
}

/* 200 x 10 KB in one batch makes the arena move many times while filling. */
static void test_events_after_large_payloads(void **state)
{
    store *s = ((fx *)*state)->s;
    enum { N = 200, LEN = 10 * 1024 };
    char *p = malloc(LEN);
    assert_non_null(p);
    char uid[16];
    assert_int_equal(store_begin(s, NULL, 0), 0);
    for (int i = 0; i < N; i++) {
        fill_payload(p, LEN, i);
        snprintf(uid, sizeof uid, "big%d", i);
        assert_int_equal(
            store_event_append(s, "s", uid, "order.created", NULL, i, p, LEN, NULL, NULL, 0), 0);
    }
    assert_int_equal(store_commit(s, NULL, 0), 0);

    store_batch b = {0};
    assert_int_equal(store_events_after(s, "s", 0, N, &b, NULL, 0), 0);
    assert_int_equal(b.n, N);
    check_big_batch(&b, 0, p, LEN);
    /* reuse the batch: a smaller fetch replaces the content */
    assert_int_equal(store_events_after(s, "s", b.ev[149].id, 10, &b, NULL, 0), 0);
    assert_int_equal(b.n, 10);
    check_big_batch(&b, 150, p, LEN);
    store_batch_free(&b);
    assert_null(b.ev);
    free(p);
}

static void test_ids_never_reused(void **state)
{
    fx *f = *state;
    append(f->s, "a", "u1", "{}");
    int64_t id2 = append(f->s, "a", "u2", "{}");
    raw_exec(f->path, "DELETE FROM events WHERE id >= (SELECT max(id) FROM events)");
    int64_t max = 0;
    assert_int_equal(store_event_max_id(f->s, "a", &max, NULL, 0), 0);
    assert_int_equal(max, id2 - 1);
    assert_true(append(f->s, "a", "u3", "{}") > id2);
}

/* ---- checkpoints -------------------------------------------------------- */

#define PAGE 16384 /* a new database's page size (store.c) */

static off_t wal_bytes(const fx *f)
{
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    struct stat st;
    return stat(wal, &st) == 0 ? st.st_size : 0;
}

/* One commit of 100 events of 8 KiB: about 100 pages of WAL (two such rows
 * do not fit in one page). */
static void commit_pages(fx *f, int round)
{
    static char payload[8192 + 16];
    memset(payload, 0, sizeof payload);
    payload[0] = '"';
    memset(payload + 1, 'p', 8190);
    payload[8191] = '"';
    char err[256] = "", uid[32];
    assert_int_equal(store_begin(f->s, err, sizeof err), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(uid, sizeof uid, "r%d-%d", round, i);
        append(f->s, "a", uid, payload);
    }
    assert_int_equal(store_commit(f->s, err, sizeof err), 0);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Polls (every 5 ms, up to 10 s) until the stats satisfy pred. */
static void wait_stats(store *s, int (*pred)(const store_checkpoints *, uint64_t), uint64_t arg)
{
    int64_t until = now_ms() + 10000;
    store_checkpoints c;
    for (store_checkpoint_stats(s, &c); !pred(&c, arg); store_checkpoint_stats(s, &c)) {
        if (now_ms() > until)
            fail_msg("checkpoint stats never got there: background %llu, in commit %llu, "
                     "checkpointers %d",
                     (unsigned long long)c.background, (unsigned long long)c.in_commit,
                     c.checkpointers);
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
}

static int serving(const store_checkpoints *c, uint64_t n)
{
    return (uint64_t)c->checkpointers == n;
}

static int background_past(const store_checkpoints *c, uint64_t n)
{
    return c->background > n;
}

/* Without a checkpointer, a commit that takes the WAL over 1000 pages
 * copies it into the database itself (SQLite's rule), so the WAL starts
 * over and stays bounded. */
static void test_checkpoint_in_commit_without_checkpointer(void **state)
{
    fx *f = *state;
    store_checkpoints before, after;
    store_checkpoint_stats(f->s, &before);
    for (int r = 0; r < 30; r++) /* ~3000 pages */
        commit_pages(f, r);
    store_checkpoint_stats(f->s, &after);
    assert_int_equal(after.checkpointers, 0);
    assert_true(after.in_commit >= before.in_commit + 2);
    assert_int_equal(after.background, before.background);
    assert_true(wal_bytes(f) <= (off_t)1300 * PAGE);
}

static void *run_checkpointer(void *arg)
{
    store_checkpointer(arg, NULL, NULL);
    return NULL;
}

/* With a checkpointer, commits only ask: it copies the WAL (commits never
 * do), the WAL still starts over, and every row is there afterwards. */
static void test_checkpointer_takes_over(void **state)
{
    fx *f = *state;
    char err[256] = "";
    store *ck = NULL;
    assert_int_equal(store_open(f->url, STORE_SYNC_NORMAL, &ck, err, sizeof err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_checkpointer, ck), 0);
    wait_stats(f->s, serving, 1);

    store_checkpoints c0, c;
    store_checkpoint_stats(f->s, &c0);
    int r = 0;
    for (int round = 0; round < 3; round++) {
        store_checkpoint_stats(f->s, &c);
        uint64_t seen = c.background;
        for (int k = 0; k < 10; k++) /* past 1000 pages of WAL */
            commit_pages(f, r++);
        wait_stats(f->s, background_past, seen);
        fprintf(stderr, "round %d wal %lld pages\n", round, (long long)(wal_bytes(f) / PAGE));
        /* one round's worth: each round after the first starts the WAL over */
        assert_true(wal_bytes(f) <= (off_t)1300 * PAGE);
    }
    store_checkpoint_stats(f->s, &c);
    assert_int_equal(c.in_commit, c0.in_commit);
    assert_true(c.background >= c0.background + 3);

    store_checkpointer_stop(ck);
    assert_int_equal(pthread_join(t, NULL), 0);
    store_close(ck);
    store_checkpoint_stats(f->s, &c);
    assert_int_equal(c.checkpointers, 0);

    int64_t max = 0;
    assert_int_equal(store_event_max_id(f->s, "a", &max, NULL, 0), 0);
    assert_int_equal(max, (int64_t)r * 100);
}

/* Stopped before it runs, a checkpointer returns at once. */
static void test_checkpointer_stopped_first(void **state)
{
    fx *f = *state;
    char err[256] = "";
    store *ck = NULL;
    assert_int_equal(store_open(f->url, STORE_SYNC_NORMAL, &ck, err, sizeof err), 0);
    store_checkpointer_stop(ck);
    store_checkpointer(ck, NULL, NULL);
    store_checkpoints c;
    store_checkpoint_stats(f->s, &c);
    assert_int_equal(c.checkpointers, 0);
    store_close(ck);
}

/* ---- instances and cursors --------------------------------------------- */

static void test_instance_open_and_cursor(void **state)
{
    store *s = ((fx *)*state)->s;
    append(s, "a", "u1", "{}");
    append(s, "a", "u2", "{}");
    int64_t last_a = append(s, "a", "u3", "{}");
    append(s, "b", "u1", "{}"); /* newer, but another shop */

    int64_t cur = -1, found = 0;
    /* find never creates: a report must not start an instance's cursor */
    assert_int_equal(store_instance_find(s, "a", "p1", &found, &cur, NULL, 0), KZ_ENOTFOUND);
    int64_t i1 = instance(s, "a", "p1", &cur);
    assert_int_equal(cur, last_a);
    assert_int_equal(store_instance_find(s, "a", "p1", &found, &cur, NULL, 0), 0);
    assert_int_equal(found, i1);
    int64_t ic = instance(s, "c", "p1", &cur);
    assert_int_equal(cur, 0);
    assert_true(ic != i1);

    assert_int_equal(store_cursor_set(s, i1, 1, NULL, 0), 0);
    int64_t again = instance(s, "a", "p1", &cur);
    assert_int_equal(again, i1);
    assert_int_equal(cur, 1); /* existing row, not reset to the shop's end */
    assert_int_equal(store_cursor_get(s, i1, &cur, NULL, 0), 0);
    assert_int_equal(cur, 1);

    int64_t newest = append(s, "a", "u4", "{}");
    int64_t i2 = instance(s, "a", "p2", &cur);
    assert_true(i2 != i1);
    assert_int_equal(cur, newest);

    char err[128] = "";
    assert_int_equal(store_cursor_get(s, 9999, &cur, err, sizeof err), KZ_ENOTFOUND);
    assert_string_equal(err, "instance 9999 not found");
    assert_int_equal(store_cursor_set(s, 9999, 5, NULL, 0), KZ_ENOTFOUND);
}

/* ---- failures ----------------------------------------------------------- */

static void test_failures(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t e = append(s, "a", "u1", "{}");
    int64_t i = instance(s, "a", "p", NULL);
    store_failure f = {0};
    assert_int_equal(store_failure_get(s, i, &f, NULL, 0), KZ_ENOTFOUND);

    store_failure in = {.event_id = e, .attempts = 2, .retry_at = 5000};
    snprintf(in.error, sizeof in.error, "handler said no");
    assert_int_equal(store_failure_set(s, i, &in, NULL, 0), 0);
    assert_int_equal(store_failure_get(s, i, &f, NULL, 0), 0);
    assert_int_equal(f.event_id, e);
    assert_int_equal(f.attempts, 2);
    assert_int_equal(f.retry_at, 5000);
    assert_string_equal(f.error, "handler said no");

    /* replaced, not added; an unterminated full buffer is cut to fit */
    in.attempts = 3;
    memset(in.error, 'x', sizeof in.error);
    assert_int_equal(store_failure_set(s, i, &in, NULL, 0), 0);
    assert_int_equal(store_failure_get(s, i, &f, NULL, 0), 0);
    assert_int_equal(f.attempts, 3);
    assert_int_equal(strlen(f.error), sizeof f.error - 1);

    assert_int_equal(store_failure_clear(s, i, NULL, 0), 0);
    assert_int_equal(store_failure_get(s, i, &f, NULL, 0), KZ_ENOTFOUND);
    assert_int_equal(store_failure_clear(s, i, NULL, 0), 0);
}

/* ---- dead letters ------------------------------------------------------- */

typedef struct dead_seen {
    int n;
    int stop_at; /* return 42 on this call (1-based); 0: never */
    store_dead d[8];
    char error[8][64], plugin[8][16], uid[8][16];
} dead_seen;

static int collect(void *arg, const store_dead *d)
{
    dead_seen *ds = arg;
    if (ds->n < 8) {
        ds->d[ds->n] = *d;
        snprintf(ds->error[ds->n], sizeof ds->error[0], "%s", d->error);
        snprintf(ds->plugin[ds->n], sizeof ds->plugin[0], "%s", d->plugin);
        snprintf(ds->uid[ds->n], sizeof ds->uid[0], "%s", d->uid);
    }
    ds->n++;
    return ds->n == ds->stop_at ? 42 : 0;
}

static dead_seen list_dead(store *s)
{
    dead_seen ds = {0};
    assert_int_equal(store_dead_list(s, collect, &ds, NULL, 0), 0);
    return ds;
}

static void test_dead_letters(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t e1 = append(s, "a", "u1", "{}");
    int64_t e2 = append(s, "a", "u2", "{}");
    int64_t i1 = instance(s, "a", "p1", NULL);
    int64_t i2 = instance(s, "a", "p2", NULL);
    assert_int_equal(store_dead_add(s, i1, e1, 5, "boom", 1000, NULL, 0), 0);
    assert_int_equal(store_dead_add(s, i2, e2, 3, "bang", 2000, NULL, 0), 0);

    dead_seen ds = list_dead(s);
    assert_int_equal(ds.n, 2);
    int64_t d1 = ds.d[0].id, d2 = ds.d[1].id;
    assert_true(d2 > d1);
    assert_int_equal(ds.d[0].instance, i1);
    assert_int_equal(ds.d[0].event_id, e1);
    assert_string_equal(ds.plugin[0], "p1");
    assert_string_equal(ds.uid[0], "u1");
    assert_string_equal(ds.error[0], "boom");
    assert_int_equal(ds.d[0].attempts, 5);
    assert_int_equal(ds.d[0].time_ms, 1000);
    assert_int_equal(ds.d[0].replay, 0);
    assert_string_equal(ds.plugin[1], "p2");
    assert_string_equal(ds.uid[1], "u2");

    int64_t did = 0, eid = 0;
    assert_int_equal(store_dead_next_replay(s, i1, &did, &eid, NULL, 0), KZ_ENOTFOUND);
    assert_int_equal(store_dead_replay(s, d1, NULL, 0), 0);
    char err[64] = "untouched"; /* a documented KZ_ENOTFOUND writes no error */
    assert_int_equal(store_dead_replay(s, d2 + 100, err, sizeof err), KZ_ENOTFOUND);
    assert_string_equal(err, "untouched");
    assert_int_equal(list_dead(s).d[0].replay, 1);
    assert_int_equal(store_dead_next_replay(s, i1, &did, &eid, NULL, 0), 0);
    assert_int_equal(did, d1);
    assert_int_equal(eid, e1);
    assert_int_equal(store_dead_next_replay(s, i2, &did, &eid, NULL, 0), KZ_ENOTFOUND);

    assert_int_equal(store_dead_replay_failed(s, d1, "again", NULL, 0), 0);
    ds = list_dead(s);
    assert_int_equal(ds.d[0].replay, 0);
    assert_int_equal(ds.d[0].attempts, 6);
    assert_string_equal(ds.error[0], "again");
    assert_int_equal(store_dead_next_replay(s, i1, &did, &eid, NULL, 0), KZ_ENOTFOUND);
    assert_int_equal(store_dead_replay_failed(s, d2 + 100, "x", NULL, 0), KZ_ENOTFOUND);

    assert_int_equal(store_dead_remove(s, d1, NULL, 0), 0);
    ds = list_dead(s);
    assert_int_equal(ds.n, 1);
    assert_int_equal(ds.d[0].id, d2);
    assert_int_equal(store_dead_remove(s, d1, NULL, 0), KZ_ENOTFOUND);
}

static void test_dead_replay_order_and_stop(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t e1 = append(s, "a", "u1", "{}");
    int64_t e2 = append(s, "a", "u2", "{}");
    int64_t i = instance(s, "a", "p", NULL);
    assert_int_equal(store_dead_add(s, i, e1, 1, "x", 1, NULL, 0), 0);
    assert_int_equal(store_dead_add(s, i, e2, 1, "y", 2, NULL, 0), 0);
    dead_seen ds = list_dead(s);
    assert_int_equal(store_dead_replay(s, ds.d[1].id, NULL, 0), 0);
    assert_int_equal(store_dead_replay(s, ds.d[0].id, NULL, 0), 0);
    int64_t did = 0, eid = 0;
    assert_int_equal(store_dead_next_replay(s, i, &did, &eid, NULL, 0), 0);
    assert_int_equal(did, ds.d[0].id); /* oldest first, not most recently queued */
    assert_int_equal(eid, e1);

    dead_seen stop = {.stop_at = 1};
    assert_int_equal(store_dead_list(s, collect, &stop, NULL, 0), 42);
    assert_int_equal(stop.n, 1);
    /* the stopped walk left nothing behind: a write and a full list work */
    assert_int_equal(store_dead_remove(s, did, NULL, 0), 0);
    assert_int_equal(list_dead(s).n, 1);
}

/* ---- kv ----------------------------------------------------------------- */

static void test_kv_get_put_del(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i1 = instance(s, "a", "p1", NULL);
    int64_t i2 = instance(s, "a", "p2", NULL);
    void *v = NULL;
    size_t n = 0;
    char err[64] = "untouched";
    assert_int_equal(store_kv_get(s, i1, "k", &v, &n, err, sizeof err), KZ_ENOTFOUND);
    assert_string_equal(err, "untouched");
    put(s, i1, "k", "hello");
    expect_kv(s, i1, "k", "hello");
    expect_kv(s, i2, "k", NULL); /* per instance */
    put(s, i1, "k", "hi");
    expect_kv(s, i1, "k", "hi");

    const char bin[] = {'a', '\0', 'b'};
    assert_int_equal(store_kv_put(s, i1, "bin", bin, sizeof bin, NULL, 0), 0);
    assert_int_equal(store_kv_get(s, i1, "bin", &v, &n, NULL, 0), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(v, bin, 3);
    free(v);

    assert_int_equal(store_kv_put(s, i1, "empty", NULL, 0, NULL, 0), 0);
    assert_int_equal(store_kv_get(s, i1, "empty", &v, &n, NULL, 0), 0);
    assert_int_equal(n, 0);
    assert_int_equal(((char *)v)[0], '\0');
    free(v);

    assert_int_equal(store_kv_del(s, i1, "k", NULL, 0), 0);
    expect_kv(s, i1, "k", NULL);
    assert_int_equal(store_kv_del(s, i1, "k", NULL, 0), KZ_ENOTFOUND);
}

static void test_kv_cas(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i = instance(s, "a", "p", NULL);
    assert_int_equal(store_kv_cas(s, i, "k", NULL, 0, "v1", 2, NULL, 0), 0);
    expect_kv(s, i, "k", "v1");
    assert_int_equal(store_kv_cas(s, i, "k", NULL, 0, "zz", 2, NULL, 0), KZ_ECONFLICT);
    expect_kv(s, i, "k", "v1");
    assert_int_equal(store_kv_cas(s, i, "k", "v1", 2, "v2", 2, NULL, 0), 0);
    expect_kv(s, i, "k", "v2");
    assert_int_equal(store_kv_cas(s, i, "k", "v1", 2, "v3", 2, NULL, 0), KZ_ECONFLICT);
    assert_int_equal(store_kv_cas(s, i, "k", "v", 1, "v3", 2, NULL, 0), KZ_ECONFLICT);
    expect_kv(s, i, "k", "v2");
    assert_int_equal(store_kv_cas(s, i, "absent", "v2", 2, "v3", 2, NULL, 0), KZ_ECONFLICT);
    expect_kv(s, i, "absent", NULL);
    /* a counter compares as its decimal bytes */
    assert_int_equal(store_kv_incr(s, i, "n", 5, NULL, NULL, 0), 0);
    assert_int_equal(store_kv_cas(s, i, "n", "5", 1, "6", 1, NULL, 0), 0);
    expect_kv(s, i, "n", "6");
}

static void test_kv_incr(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i = instance(s, "a", "p", NULL);
    int64_t r = 0;
    assert_int_equal(store_kv_incr(s, i, "n", 5, &r, NULL, 0), 0);
    assert_int_equal(r, 5);
    assert_int_equal(store_kv_incr(s, i, "n", -7, &r, NULL, 0), 0);
    assert_int_equal(r, -2);
    expect_kv(s, i, "n", "-2");
    assert_false(store_in_transaction(s));

    put(s, i, "t", "abc");
    char err[128] = "";
    assert_int_equal(store_kv_incr(s, i, "t", 1, &r, err, sizeof err), KZ_ETYPE);
    assert_true(err[0] != '\0');
    expect_kv(s, i, "t", "abc");
    put(s, i, "t", "12x");
    assert_int_equal(store_kv_incr(s, i, "t", 1, NULL, NULL, 0), KZ_ETYPE);
    put(s, i, "t", "");
    assert_int_equal(store_kv_incr(s, i, "t", 1, NULL, NULL, 0), KZ_ETYPE);
    assert_false(store_in_transaction(s));

    put(s, i, "big", "9223372036854775807");
    assert_int_equal(store_kv_incr(s, i, "big", 1, NULL, NULL, 0), KZ_EINVAL);
    expect_kv(s, i, "big", "9223372036854775807");

    assert_int_equal(store_begin(s, NULL, 0), 0);
    assert_int_equal(store_kv_incr(s, i, "n", 10, &r, NULL, 0), 0);
    assert_int_equal(r, 8);
    assert_true(store_in_transaction(s)); /* used the caller's transaction */
    store_rollback(s);
    expect_kv(s, i, "n", "-2");
}

/* ---- transactions ------------------------------------------------------- */

static void test_savepoint_rollback_keeps_outer(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i = instance(s, "a", "p", NULL);
    assert_int_equal(store_begin(s, NULL, 0), 0);
    put(s, i, "a", "1");
    append(s, "a", "e1", "{}");
    assert_int_equal(store_savepoint(s, NULL, 0), 0);
    put(s, i, "a", "changed");
    put(s, i, "b", "2");
    assert_int_equal(store_kv_incr(s, i, "c", 1, NULL, NULL, 0), 0);
    int64_t e2 = append(s, "a", "e2", "{}");
    assert_int_equal(store_rollback_savepoint(s, NULL, 0), 0);
    assert_true(store_in_transaction(s));
    put(s, i, "d", "4");
    assert_int_equal(store_commit(s, NULL, 0), 0);
    assert_false(store_in_transaction(s));

    expect_kv(s, i, "a", "1");
    expect_kv(s, i, "b", NULL);
    expect_kv(s, i, "c", NULL);
    expect_kv(s, i, "d", "4");
    assert_int_equal(count_events(s, "a"), 1);
    assert_true(append(s, "a", "e2", "{}") >= e2); /* not a duplicate any more */
}

static void test_savepoint_release_keeps_writes(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i = instance(s, "a", "p", NULL);
    assert_int_equal(store_savepoint(s, NULL, 0), KZ_ESTATE); /* needs a transaction */
    assert_int_equal(store_begin(s, NULL, 0), 0);
    assert_int_equal(store_release(s, NULL, 0), KZ_ESTATE);
    assert_int_equal(store_savepoint(s, NULL, 0), 0);
    assert_int_equal(store_savepoint(s, NULL, 0), KZ_ESTATE); /* one level */
    put(s, i, "x", "1");
    assert_int_equal(store_release(s, NULL, 0), 0);
    /* a second handler's savepoint in the same transaction */
    assert_int_equal(store_savepoint(s, NULL, 0), 0);
    put(s, i, "y", "2");
    assert_int_equal(store_rollback_savepoint(s, NULL, 0), 0);
    assert_int_equal(store_commit(s, NULL, 0), 0);
    expect_kv(s, i, "x", "1");
    expect_kv(s, i, "y", NULL);
}

static void test_begin_commit_rollback(void **state)
{
    store *s = ((fx *)*state)->s;
    int64_t i = instance(s, "a", "p", NULL);
    store_rollback(s); /* nothing open: harmless */
    assert_false(store_in_transaction(s));
    assert_int_equal(store_commit(s, NULL, 0), KZ_ESTATE);

    assert_int_equal(store_begin(s, NULL, 0), 0);
    assert_true(store_in_transaction(s));
    assert_int_equal(store_begin(s, NULL, 0), KZ_ESTATE);
    put(s, i, "k", "v");
    append(s, "a", "u1", "{}");
    store_rollback(s);
    assert_false(store_in_transaction(s));
    expect_kv(s, i, "k", NULL);
    assert_int_equal(count_events(s, "a"), 0);
}

static void test_second_connection_sees_commit(void **state)
{
    fx *f = *state;
    store *s2 = NULL;
    char err[256] = "";
    assert_int_equal(store_open(f->url, STORE_SYNC_FULL, &s2, err, sizeof err), 0);
    int64_t i = instance(f->s, "a", "p", NULL);

    assert_int_equal(store_begin(f->s, NULL, 0), 0);
    put(f->s, i, "k", "v");
    append(f->s, "a", "u1", "{}");
    expect_kv(s2, i, "k", NULL);
    assert_int_equal(count_events(s2, "a"), 0);
    assert_int_equal(store_commit(f->s, NULL, 0), 0);
    expect_kv(s2, i, "k", "v");
    assert_int_equal(count_events(s2, "a"), 1);

    /* and the other way round */
    assert_int_equal(store_kv_put(s2, i, "k", "w", 1, NULL, 0), 0);
    expect_kv(f->s, i, "k", "w");
    store_close(s2);
}

/* ---- meta --------------------------------------------------------------- */

static void test_meta(void **state)
{
    store *s = ((fx *)*state)->s;
    char v[32] = "";
    assert_int_equal(store_meta_get(s, "clock", v, sizeof v, NULL, 0), KZ_ENOTFOUND);
    assert_int_equal(store_meta_put(s, "clock", "hello", NULL, 0), 0);
    assert_int_equal(store_meta_get(s, "clock", v, sizeof v, NULL, 0), 0);
    assert_string_equal(v, "hello");
    assert_int_equal(store_meta_put(s, "clock", "12345", NULL, 0), 0);
    char small[4];
    assert_int_equal(store_meta_get(s, "clock", small, sizeof small, NULL, 0), 0);
    assert_string_equal(small, "123");
}

/* ---- sandbox tables ------------------------------------------------------ */

static int collect_user(void *arg, const store_sbx_user *u)
{
    char *out = arg;
    strcat(out, u->user);
    strcat(out, u->following ? "+" : "-");
    strcat(out, ";");
    return 0;
}

static void test_sbx_users(void **state)
{
    store *s = ((fx *)*state)->s;
    store_sbx_user u = {0};
    char err[256] = "";
    assert_int_equal(store_sbx_user_get(s, "a", "U1", &u, err, sizeof err), KZ_ENOTFOUND);
    assert_string_equal(err, "");
    store_sbx_user w = {.user = "U1", .display_name = "Aiko", .following = 1, .since_ms = 5};
    assert_int_equal(store_sbx_user_put(s, "a", &w, err, sizeof err), 0);
    store_sbx_user w2 = {.user = "U2", .display_name = "Ben", .blocked = 1, .since_ms = 6};
    assert_int_equal(store_sbx_user_put(s, "a", &w2, err, sizeof err), 0);
    store_sbx_user other = {.user = "U3", .display_name = "C", .following = 1};
    assert_int_equal(store_sbx_user_put(s, "b", &other, err, sizeof err), 0);
    assert_int_equal(store_sbx_user_get(s, "a", "U1", &u, err, sizeof err), 0);
    assert_string_equal(u.display_name, "Aiko");
    assert_int_equal(u.following, 1);
    assert_int_equal(u.blocked, 0);
    assert_int_equal(u.since_ms, 5);
    char list[128] = "";
    assert_int_equal(store_sbx_users(s, "a", 0, collect_user, list, err, sizeof err), 0);
    assert_string_equal(list, "U1+;U2-;");
    list[0] = '\0';
    assert_int_equal(store_sbx_users(s, "a", 1, collect_user, list, err, sizeof err), 0);
    assert_string_equal(list, "U1+;");
    /* replace: unfollow */
    w.following = 0;
    w.blocked = 1;
    assert_int_equal(store_sbx_user_put(s, "a", &w, err, sizeof err), 0);
    list[0] = '\0';
    assert_int_equal(store_sbx_users(s, "a", 1, collect_user, list, err, sizeof err), 0);
    assert_string_equal(list, "");
}

static int collect_msg(void *arg, const store_sbx_msg *m)
{
    char *out = arg;
    char line[256];
    snprintf(line, sizeof line, "%s/%s/%s/%lld/%s;", m->user, m->endpoint, m->request_id,
             (long long)m->time_ms, m->message);
    strcat(out, line);
    return 0;
}

static int stop_at_first(void *arg, const store_sbx_msg *m)
{
    (void)m;
    (*(int *)arg)++;
    return 7;
}

static void test_sbx_inbox(void **state)
{
    store *s = ((fx *)*state)->s;
    char err[256] = "";
    assert_int_equal(
        store_sbx_inbox_add(s, "a", "U1", 10, "push", "r1", "{\"type\":\"text\"}", err, sizeof err),
        0);
    assert_int_equal(
        store_sbx_inbox_add(s, "a", "U2", 11, "multicast", "r2", "{}", err, sizeof err), 0);
    assert_int_equal(
        store_sbx_inbox_add(s, "a", "U1", 11, "multicast", "r2", "{}", err, sizeof err), 0);
    assert_int_equal(
        store_sbx_inbox_add(s, "a", "U1", 11, "multicast", "r2", "[]", err, sizeof err), 0);
    char out[512] = "";
    assert_int_equal(store_sbx_inbox(s, "a", "U1", collect_msg, out, err, sizeof err), 0);
    assert_string_equal(out, "U1/push/r1/10/{\"type\":\"text\"};U1/multicast/r2/11/{};"
                             "U1/multicast/r2/11/[];");
    out[0] = '\0';
    assert_int_equal(store_sbx_inbox(s, "b", "U1", collect_msg, out, err, sizeof err), 0);
    assert_string_equal(out, "");
    int calls = 0;
    assert_int_equal(store_sbx_inbox(s, "a", "U1", stop_at_first, &calls, err, sizeof err), 7);
    assert_int_equal(calls, 1);
    int64_t msgs = -1, users = -1;
    assert_int_equal(store_sbx_inbox_count(s, "a", "r2", &msgs, &users, err, sizeof err), 0);
    assert_int_equal(msgs, 3);
    assert_int_equal(users, 2);
    assert_int_equal(store_sbx_inbox_count(s, "a", "nope", &msgs, &users, err, sizeof err), 0);
    assert_int_equal(msgs, 0);
    assert_int_equal(users, 0);
}

static void test_sbx_retry_keys(void **state)
{
    store *s = ((fx *)*state)->s;
    char err[256] = "", id[64] = "";
    char *resp = NULL;
    const int64_t day = STORE_SBX_RETRY_KEEP_MS;
    assert_int_equal(store_sbx_retry_get(s, "a", "k1", 1000, id, sizeof id, &resp, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(
        store_sbx_retry_put(s, "a", "k1", "req1", 1000, "{\"sentMessages\":[]}", err, sizeof err),
        0);
    assert_int_equal(
        store_sbx_retry_get(s, "a", "k1", 1000 + day - 1, id, sizeof id, &resp, err, sizeof err),
        0);
    assert_string_equal(id, "req1");
    assert_string_equal(resp, "{\"sentMessages\":[]}");
    free(resp);
    /* another shop's key space */
    assert_int_equal(store_sbx_retry_get(s, "b", "k1", 1000, id, sizeof id, NULL, err, sizeof err),
                     KZ_ENOTFOUND);
    /* 24 h later it is forgotten, and may be accepted again */
    assert_int_equal(
        store_sbx_retry_get(s, "a", "k1", 1000 + day, id, sizeof id, NULL, err, sizeof err),
        KZ_ENOTFOUND);
    assert_int_equal(store_sbx_retry_put(s, "a", "k2", "req2", 1000 + day, "", err, sizeof err), 0);
    assert_int_equal(
        store_sbx_retry_get(s, "a", "k1", 1000 + 10, id, sizeof id, NULL, err, sizeof err),
        KZ_ENOTFOUND); /* purged by the put */
    assert_int_equal(store_sbx_retry_put(s, "a", "k1", "req3", 2000 + day, "", err, sizeof err), 0);
    assert_int_equal(
        store_sbx_retry_get(s, "a", "k1", 2000 + day, id, sizeof id, NULL, err, sizeof err), 0);
    assert_string_equal(id, "req3");
}

static void test_sbx_reply_tokens(void **state)
{
    store *s = ((fx *)*state)->s;
    char err[256] = "", user[64] = "";
    assert_int_equal(store_sbx_token_add(s, "a", "t1", "U1", 1000, err, sizeof err), 0);
    assert_int_equal(store_sbx_token_add(s, "a", "t2", "U2", 1000, err, sizeof err), 0);
    /* expired: issued before not_before */
    assert_int_equal(store_sbx_token_use(s, "a", "t2", 1001, user, sizeof user, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_sbx_token_use(s, "b", "t1", 0, user, sizeof user, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_sbx_token_use(s, "a", "t1", 1000, user, sizeof user, err, sizeof err),
                     0);
    assert_string_equal(user, "U1");
    /* single use */
    assert_int_equal(store_sbx_token_use(s, "a", "t1", 0, user, sizeof user, err, sizeof err),
                     KZ_ENOTFOUND);
    /* inside a rolled-back transaction the use is undone */
    assert_int_equal(store_begin(s, err, sizeof err), 0);
    assert_int_equal(store_sbx_token_use(s, "a", "t2", 0, user, sizeof user, err, sizeof err), 0);
    store_rollback(s);
    assert_int_equal(store_sbx_token_use(s, "a", "t2", 0, user, sizeof user, err, sizeof err), 0);
    assert_string_equal(user, "U2");
}

static void test_sbx_rate_and_usage(void **state)
{
    store *s = ((fx *)*state)->s;
    char err[256] = "";
    int ok = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_sbx_rate_hit(s, "a", "push", 1000, 3, &ok, err, sizeof err), 0);
        assert_int_equal(ok, 1);
    }
    assert_int_equal(store_sbx_rate_hit(s, "a", "push", 1000, 3, &ok, err, sizeof err), 0);
    assert_int_equal(ok, 0);
    /* other endpoint, other shop: own windows */
    assert_int_equal(store_sbx_rate_hit(s, "a", "reply", 1000, 3, &ok, err, sizeof err), 0);
    assert_int_equal(ok, 1);
    assert_int_equal(store_sbx_rate_hit(s, "b", "push", 1000, 3, &ok, err, sizeof err), 0);
    assert_int_equal(ok, 1);
    /* next window starts over */
    assert_int_equal(store_sbx_rate_hit(s, "a", "push", 2000, 3, &ok, err, sizeof err), 0);
    assert_int_equal(ok, 1);
    assert_int_equal(store_sbx_rate_hit(s, "a", "push", 2000, 1, &ok, err, sizeof err), 0);
    assert_int_equal(ok, 0);

    int64_t n = -1;
    assert_int_equal(store_sbx_usage_get(s, "a", "2026-11", &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_sbx_usage_add(s, "a", "2026-11", 5, err, sizeof err), 0);
    assert_int_equal(store_sbx_usage_add(s, "a", "2026-11", 2, err, sizeof err), 0);
    assert_int_equal(store_sbx_usage_add(s, "a", "2026-12", 1, err, sizeof err), 0);
    assert_int_equal(store_sbx_usage_get(s, "a", "2026-11", &n, err, sizeof err), 0);
    assert_int_equal(n, 7);
    assert_int_equal(store_sbx_usage_get(s, "b", "2026-11", &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
}

/* A database at schema 1 (before the sandbox) gains the sandbox tables. */
static void test_sbx_migrates_from_1(void **state)
{
    fx *f = *state;
    char path[400], url[420], err[256] = "";
    snprintf(path, sizeof path, "%s/v1.db", f->dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    raw_exec(path, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                   "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, shop TEXT NOT NULL,"
                   " uid TEXT NOT NULL, topic TEXT NOT NULL, user TEXT, time_ms INTEGER NOT NULL,"
                   " payload TEXT NOT NULL, UNIQUE(shop, uid));"
                   "PRAGMA user_version = 1");
    store *s = NULL;
    assert_int_equal(store_open(url, STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    assert_int_equal(store_sbx_usage_add(s, "a", "2026-11", 1, err, sizeof err), 0);
    store_close(s);
}

/* ---- outbox ------------------------------------------------------------- */

#define OB_KEY "123e4567-e89b-12d3-a456-426614174000"

static int64_t ob_add(store *s, const char *shop, int kind, int64_t next_at, const char *tag)
{
    store_outbox r = {.shop = shop,
                      .instance = 7,
                      .kind = kind,
                      .endpoint =
                          kind == KZ_LINE_REPLY ? "/v2/bot/message/reply" : "/v2/bot/message/push",
                      .body = "{\"to\":\"U1\",\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}]}",
                      .retry_key = kind == KZ_LINE_REPLY ? NULL : OB_KEY,
                      .user = "U1",
                      .fallback_to = kind == KZ_LINE_REPLY ? "U1" : NULL,
                      .tag = tag,
                      .origin = "ev-1",
                      .state = OUTBOX_SENT, /* ignored */
                      .attempts = 9,        /* ignored */
                      .created_ms = 1000,
                      .next_at_ms = next_at,
                      .deadline_ms = 5000};
    int64_t id = 0;
    char err[256] = "";
    if (store_outbox_add(s, &r, &id, err, sizeof err) != 0)
        fail_msg("store_outbox_add: %s", err);
    assert_true(id > 0);
    return id;
}

typedef struct ob_seen {
    int64_t ids[16];
    int n;
    int stop_after;
} ob_seen;

static int ob_collect(void *arg, const store_outbox *r)
{
    ob_seen *seen = arg;
    assert_int_equal(r->state, OUTBOX_PENDING);
    assert_null(r->body); /* read with store_outbox_body, for rows that go */
    assert_string_equal(r->retry_key ? r->retry_key : "", r->kind == KZ_LINE_REPLY ? "" : OB_KEY);
    assert_string_equal(r->user, "U1");
    seen->ids[seen->n++] = r->id;
    return seen->stop_after && seen->n == seen->stop_after ? 42 : 0;
}

static void test_outbox_add_get(void **state)
{
    fx *f = *state;
    int64_t push = ob_add(f->s, "a", KZ_LINE_PUSH, 1000, "welcome");
    int64_t reply = ob_add(f->s, "a", KZ_LINE_REPLY, 1000, NULL);
    assert_true(reply > push);

    store_outbox r;
    int status = -1;
    const char *rid = "x", *error = "x";
    char err[256] = "";
    assert_int_equal(store_outbox_get(f->s, push, &r, &status, &rid, &error, err, sizeof err), 0);
    assert_int_equal(r.id, push);
    assert_string_equal(r.shop, "a");
    assert_int_equal(r.instance, 7);
    assert_int_equal(r.kind, KZ_LINE_PUSH);
    assert_string_equal(r.endpoint, "/v2/bot/message/push");
    assert_string_equal(r.body,
                        "{\"to\":\"U1\",\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}]}");
    assert_string_equal(r.retry_key, OB_KEY);
    assert_string_equal(r.user, "U1");
    assert_null(r.fallback_to);
    assert_string_equal(r.tag, "welcome");
    assert_string_equal(r.origin, "ev-1");
    assert_int_equal(r.state, OUTBOX_PENDING);
    assert_int_equal(r.attempts, 0);
    assert_int_equal(r.created_ms, 1000);
    assert_int_equal(r.next_at_ms, 1000);
    assert_int_equal(r.deadline_ms, 5000);
    assert_int_equal(status, 0);
    assert_null(rid);
    assert_null(error);

    assert_int_equal(store_outbox_get(f->s, reply, &r, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(r.kind, KZ_LINE_REPLY);
    assert_null(r.retry_key);
    assert_null(r.tag);
    assert_string_equal(r.fallback_to, "U1");

    assert_int_equal(store_outbox_get(f->s, reply + 100, &r, NULL, NULL, NULL, err, sizeof err),
                     KZ_ENOTFOUND);
    store_outbox bad = {.shop = "a", .endpoint = NULL, .body = "{}"};
    assert_int_equal(store_outbox_add(f->s, &bad, NULL, err, sizeof err), KZ_EINVAL);
}

static void test_outbox_due_order_limit(void **state)
{
    fx *f = *state;
    int64_t a = ob_add(f->s, "a", KZ_LINE_PUSH, 1000, NULL);
    int64_t b = ob_add(f->s, "b", KZ_LINE_PUSH, 3000, NULL); /* not due at 2000 */
    int64_t c = ob_add(f->s, "a", KZ_LINE_PUSH, 500, NULL);
    int64_t d = ob_add(f->s, "a", KZ_LINE_PUSH, 2000, NULL);
    char err[256] = "";

    ob_seen seen = {0};
    assert_int_equal(store_outbox_due(f->s, 2000, 10, ob_collect, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.ids[0], a); /* oldest id first, not earliest next_at */
    assert_int_equal(seen.ids[1], c);
    assert_int_equal(seen.ids[2], d);

    seen = (ob_seen){0};
    assert_int_equal(store_outbox_due(f->s, 2000, 2, ob_collect, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 2);

    seen = (ob_seen){.stop_after = 1};
    assert_int_equal(store_outbox_due(f->s, 9000, 10, ob_collect, &seen, err, sizeof err), 42);
    assert_int_equal(seen.n, 1);
    assert_int_equal(store_outbox_due(f->s, 9000, 0, ob_collect, &seen, err, sizeof err),
                     KZ_EINVAL);

    char *body = NULL;
    size_t len = 0;
    assert_int_equal(store_outbox_body(f->s, c, &body, &len, err, sizeof err), 0);
    assert_string_equal(body, "{\"to\":\"U1\",\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}]}");
    assert_int_equal(len, strlen(body));
    free(body);
    assert_int_equal(store_outbox_body(f->s, d + 100, &body, &len, err, sizeof err), KZ_ENOTFOUND);
    assert_null(body);

    /* finished rows leave the due set and the pending count */
    int64_t pending = 0;
    assert_int_equal(store_outbox_pending(f->s, &pending, err, sizeof err), 0);
    assert_int_equal(pending, 4);
    assert_int_equal(
        store_outbox_finish(f->s, a, OUTBOX_SENT, 200, "rid-a", NULL, 2100, err, sizeof err), 0);
    assert_int_equal(
        store_outbox_finish(f->s, b, OUTBOX_FAILED, 400, "rid-b", "Bad", 2100, err, sizeof err), 0);
    seen = (ob_seen){0};
    assert_int_equal(store_outbox_due(f->s, 9000, 10, ob_collect, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.ids[0], c);
    assert_int_equal(seen.ids[1], d);
    assert_int_equal(store_outbox_pending(f->s, &pending, err, sizeof err), 0);
    assert_int_equal(pending, 2);
}

static void test_outbox_retry_rewrite_finish(void **state)
{
    fx *f = *state;
    int64_t id = ob_add(f->s, "a", KZ_LINE_REPLY, 1000, "t");
    char err[256] = "";
    assert_int_equal(
        store_outbox_retry(f->s, id, 2, 4000, "500 Internal server error", err, sizeof err), 0);
    ob_seen seen = {0};
    assert_int_equal(store_outbox_due(f->s, 3999, 10, ob_collect, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 0);
    assert_int_equal(store_outbox_due(f->s, 4000, 10, ob_collect, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 1);

    store_outbox r;
    const char *error = NULL;
    assert_int_equal(store_outbox_get(f->s, id, &r, NULL, NULL, &error, err, sizeof err), 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.next_at_ms, 4000);
    assert_string_equal(error, "500 Internal server error");

    assert_int_equal(store_outbox_rewrite(f->s, id, KZ_LINE_PUSH, "/v2/bot/message/push",
                                          "{\"to\":\"U1\",\"messages\":[]}", OB_KEY, err,
                                          sizeof err),
                     0);
    assert_int_equal(store_outbox_get(f->s, id, &r, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(r.kind, KZ_LINE_PUSH);
    assert_string_equal(r.endpoint, "/v2/bot/message/push");
    assert_string_equal(r.body, "{\"to\":\"U1\",\"messages\":[]}");
    assert_string_equal(r.retry_key, OB_KEY);
    assert_string_equal(r.fallback_to, "U1");
    assert_int_equal(r.attempts, 2);

    int status = 0;
    const char *rid = NULL;
    assert_int_equal(store_outbox_finish(f->s, id, OUTBOX_PARKED, 429, "rid-1",
                                         "You have reached your "
                                         "monthly limit.",
                                         5000, err, sizeof err),
                     0);
    assert_int_equal(store_outbox_get(f->s, id, &r, &status, &rid, &error, err, sizeof err), 0);
    assert_int_equal(r.state, OUTBOX_PARKED);
    assert_int_equal(status, 429);
    assert_string_equal(rid, "rid-1");
    assert_string_equal(error, "You have reached your monthly limit.");
    assert_int_equal(raw_int(f->path, "SELECT finished_ms FROM outbox"), 5000);

    /* a row leaves PENDING exactly once */
    assert_int_equal(
        store_outbox_finish(f->s, id, OUTBOX_SENT, 200, "rid-2", NULL, 6000, err, sizeof err),
        KZ_ENOTFOUND);
    assert_int_equal(store_outbox_retry(f->s, id, 3, 7000, "x", err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(
        store_outbox_rewrite(f->s, id, KZ_LINE_PUSH, "/p", "{}", NULL, err, sizeof err),
        KZ_ENOTFOUND);
    assert_int_equal(
        store_outbox_finish(f->s, id + 1, OUTBOX_SENT, 200, NULL, NULL, 6000, err, sizeof err),
        KZ_ENOTFOUND);
    assert_int_equal(
        store_outbox_finish(f->s, id, OUTBOX_PENDING, 200, NULL, NULL, 6000, err, sizeof err),
        KZ_EINVAL);
}

/* A row queued in a rolled-back transaction never becomes due; one
 * finished together with an event commits with it. */
static void test_outbox_transactions(void **state)
{
    fx *f = *state;
    char err[256] = "";
    assert_int_equal(store_begin(f->s, err, sizeof err), 0);
    ob_add(f->s, "a", KZ_LINE_PUSH, 0, NULL);
    store_rollback(f->s);
    int64_t pending = -1;
    assert_int_equal(store_outbox_pending(f->s, &pending, err, sizeof err), 0);
    assert_int_equal(pending, 0);

    int64_t id = ob_add(f->s, "a", KZ_LINE_PUSH, 0, NULL);
    assert_int_equal(store_begin(f->s, err, sizeof err), 0);
    assert_int_equal(
        store_outbox_finish(f->s, id, OUTBOX_SENT, 200, "rid", NULL, 10, err, sizeof err), 0);
    assert_int_equal(store_event_append(f->s, "a", "outbox:1:sent", "message.sent", "U1", 10, "{}",
                                        2, NULL, err, sizeof err),
                     0);
    store_rollback(f->s);
    store_outbox r;
    assert_int_equal(store_outbox_get(f->s, id, &r, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(r.state, OUTBOX_PENDING);
    int64_t max = -1;
    assert_int_equal(store_event_max_id(f->s, "a", &max, err, sizeof err), 0);
    assert_int_equal(max, 0);
}

/* A database at schema 2 (before the outbox) gains the outbox and keeps its
 * rows. */
static void test_outbox_migrates_from_2(void **state)
{
    fx *f = *state;
    char path[400], url[420], err[256] = "";
    snprintf(path, sizeof path, "%s/v2.db", f->dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    raw_exec(path, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                   "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, shop TEXT NOT NULL,"
                   " uid TEXT NOT NULL, topic TEXT NOT NULL, user TEXT, time_ms INTEGER NOT NULL,"
                   " payload TEXT NOT NULL, UNIQUE(shop, uid));"
                   "INSERT INTO events(shop, uid, topic, time_ms, payload)"
                   " VALUES('a', 'u1', 't', 1, '{}');"
                   "CREATE TABLE sbx_usage(shop TEXT NOT NULL, month TEXT NOT NULL,"
                   " count INTEGER NOT NULL, PRIMARY KEY(shop, month)) WITHOUT ROWID;"
                   "PRAGMA user_version = 2");
    store *s = NULL;
    assert_int_equal(store_open(url, STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    int64_t max = 0;
    assert_int_equal(store_event_max_id(s, "a", &max, err, sizeof err), 0);
    assert_int_equal(max, 1);
    int64_t id = ob_add(s, "a", KZ_LINE_PUSH, 0, NULL);
    assert_int_equal(id, 1);
    store_close(s);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM outbox WHERE state = 0"), 1);
}

/* A send queued at schema 3 (before line_call) reads back unchanged at 4:
 * a JSON POST with no plugin, and new call rows keep binary bodies. */
static void test_outbox_migrates_from_3(void **state)
{
    fx *f = *state;
    char path[400], url[420], err[256] = "";
    snprintf(path, sizeof path, "%s/v3.db", f->dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    raw_exec(path, "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " shop TEXT NOT NULL, instance INTEGER NOT NULL, kind INTEGER NOT NULL,"
                   " endpoint TEXT NOT NULL, body TEXT NOT NULL, retry_key TEXT, user TEXT,"
                   " fallback_to TEXT, tag TEXT, origin TEXT, state INTEGER NOT NULL DEFAULT 0,"
                   " attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
                   " next_at_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, status INTEGER,"
                   " request_id TEXT, error TEXT, finished_ms INTEGER);"
                   "CREATE INDEX outbox_due ON outbox(id, next_at_ms) WHERE state = 0;"
                   "INSERT INTO outbox(shop, instance, kind, endpoint, body, created_ms,"
                   " next_at_ms, deadline_ms) VALUES('a', 0, 2, '/v2/bot/message/push',"
                   " '{\"to\":\"x\"}', 1, 1, 9);"
                   "PRAGMA user_version = 3");
    store *s = NULL;
    assert_int_equal(store_open(url, STORE_SYNC_NORMAL, &s, err, sizeof err), 0);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    store_outbox r;
    assert_int_equal(store_outbox_get(s, 1, &r, NULL, NULL, NULL, err, sizeof err), 0);
    assert_null(r.method);
    assert_null(r.content_type);
    assert_null(r.plugin);
    assert_int_equal(r.data_api, 0);
    assert_string_equal(r.body, "{\"to\":\"x\"}");
    assert_int_equal(r.body_len, 10);

    static const char png[] = {'\x89', 'P', 'N', 'G', 0, 1, 0, 2};
    store_outbox c = {.shop = "a",
                      .kind = OUTBOX_CALL,
                      .endpoint = "/v2/bot/richmenu/x/content",
                      .body = png,
                      .body_len = sizeof png,
                      .method = "POST",
                      .content_type = "image/png",
                      .data_api = 1,
                      .plugin = "p",
                      .created_ms = 1,
                      .next_at_ms = 1,
                      .deadline_ms = 9};
    int64_t id = 0;
    assert_int_equal(store_outbox_add(s, &c, &id, err, sizeof err), 0);
    assert_int_equal(store_outbox_get(s, id, &r, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(r.body_len, sizeof png);
    assert_memory_equal(r.body, png, sizeof png);
    assert_string_equal(r.content_type, "image/png");
    assert_string_equal(r.plugin, "p");
    assert_int_equal(r.data_api, 1);
    store_close(s);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM outbox WHERE typeof(body) = 'blob'"), 1);
}

static int collect_pair(void *arg, const char *a, const char *b)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s=%s;", a, b);
    return 0;
}

/* Rich menus of the sandbox: menus, one image each, links, the default
 * (user ""), aliases, and a delete that unlinks. */
static void test_sbx_richmenus(void **state)
{
    fx *f = *state;
    store *s = f->s;
    char err[256], id[80], type[32], seen[256] = "";
    int has_image = -1;
    char *body = NULL;
    assert_int_equal(store_sbx_rm_add(s, "a", "m1", "{\"n\":1}", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_add(s, "a", "m2", "{\"n\":2}", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_get(s, "a", "m1", &body, &has_image, err, sizeof err), 0);
    assert_string_equal(body, "{\"n\":1}");
    assert_int_equal(has_image, 0);
    free(body);
    assert_int_equal(store_sbx_rm_get(s, "b", "m1", NULL, NULL, err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(
        store_sbx_rm_image_put(s, "a", "m1", "image/png", "\x89PNG", 4, err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_image_put(s, "a", "m1", "image/png", "x", 1, err, sizeof err),
                     KZ_EEXIST);
    assert_int_equal(store_sbx_rm_image_put(s, "a", "zz", "image/png", "x", 1, err, sizeof err),
                     KZ_ENOTFOUND);
    void *data = NULL;
    size_t n = 0;
    assert_int_equal(
        store_sbx_rm_image_get(s, "a", "m1", type, sizeof type, &data, &n, err, sizeof err), 0);
    assert_string_equal(type, "image/png");
    assert_int_equal(n, 4);
    assert_memory_equal(data, "\x89PNG", 4);
    free(data);
    assert_int_equal(store_sbx_rm_list(s, "a", collect_pair, seen, err, sizeof err), 0);
    assert_string_equal(seen, "m1={\"n\":1};m2={\"n\":2};");
    assert_int_equal(store_sbx_rm_link_put(s, "a", "U1", "m1", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_link_put(s, "a", "", "m1", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_link_put(s, "a", "U2", "m2", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_link_get(s, "a", "U1", id, sizeof id, err, sizeof err), 0);
    assert_string_equal(id, "m1");
    assert_int_equal(store_sbx_rm_alias_put(s, "a", "p1", "m1", 1, err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_alias_put(s, "a", "p1", "m2", 1, err, sizeof err), KZ_EEXIST);
    assert_int_equal(store_sbx_rm_alias_put(s, "a", "p9", "m2", 0, err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(store_sbx_rm_alias_put(s, "a", "p2", "m2", 1, err, sizeof err), 0);
    assert_int_equal(store_begin(s, err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_delete(s, "a", "m1", err, sizeof err), 0);
    assert_int_equal(store_commit(s, err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_delete(s, "a", "m1", err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(store_sbx_rm_link_get(s, "a", "U1", id, sizeof id, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_sbx_rm_link_get(s, "a", "", id, sizeof id, err, sizeof err),
                     KZ_ENOTFOUND);
    seen[0] = '\0';
    assert_int_equal(store_sbx_rm_aliases(s, "a", collect_pair, seen, err, sizeof err), 0);
    assert_string_equal(seen, "p2=m2;");
    assert_int_equal(store_sbx_rm_link_put(s, "a", "U2", NULL, err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_link_get(s, "a", "U2", id, sizeof id, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_sbx_rm_alias_delete(s, "a", "p2", err, sizeof err), 0);
    assert_int_equal(store_sbx_rm_alias_delete(s, "a", "p2", err, sizeof err), KZ_ENOTFOUND);
}

/* ---- friends ---- */

static int collect_friend(void *arg, const store_friend *f)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "%s%s;", f->user, f->following ? "" : "(x)");
    return 0;
}

static int collect_tag(void *arg, const char *tag)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s;", tag);
    return 0;
}

static void test_friends_registry(void **state)
{
    fx *f = *state;
    char err[256], seen[512] = "", tags[256] = "";
    assert_int_equal(store_friend_follow(f->s, "a", "U3", 10, err, sizeof err), 0);
    assert_int_equal(store_friend_follow(f->s, "a", "U1", 20, err, sizeof err), 0);
    assert_int_equal(store_friend_touch(f->s, "a", "U2", 30, err, sizeof err), 0);
    assert_int_equal(store_friend_unfollow(f->s, "a", "U1", 40, err, sizeof err), 0);
    assert_int_equal(store_friend_follow(f->s, "b", "U9", 50, err, sizeof err), 0);
    /* streamed in user order, per shop; after and limit page through */
    assert_int_equal(store_friends(f->s, "a", "", 0, collect_friend, seen, err, sizeof err), 0);
    assert_string_equal(seen, "U1(x);U2;U3;");
    seen[0] = '\0';
    assert_int_equal(store_friends(f->s, "a", "U1", 1, collect_friend, seen, err, sizeof err), 0);
    assert_string_equal(seen, "U2;");
    store_friend fr;
    assert_int_equal(store_friend_get(f->s, "a", "U2", &fr, err, sizeof err), 0);
    assert_int_equal(fr.follows, 0); /* seen talking, follow predates the registry */
    assert_int_equal(fr.last_active_ms, 30);
    assert_int_equal(store_friend_get(f->s, "a", "U7", &fr, err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(
        store_friend_profile(f->s, "a", "U7", "x", NULL, NULL, NULL, 1, err, sizeof err),
        KZ_ENOTFOUND);
    /* tags: a change or a precise no-change */
    assert_int_equal(store_friend_tag_add(f->s, "a", "U2", "vip", 60, err, sizeof err), 0);
    assert_int_equal(store_friend_tag_add(f->s, "a", "U2", "vip", 61, err, sizeof err), KZ_EEXIST);
    assert_int_equal(store_friend_tag_add(f->s, "a", "U2", "乾燥肌", 62, err, sizeof err), 0);
    assert_int_equal(store_friend_tag_add(f->s, "a", "U8", "new", 63, err, sizeof err), 0);
    assert_int_equal(store_friend_tags(f->s, "a", "U2", collect_tag, tags, err, sizeof err), 0);
    assert_string_equal(tags, "vip;乾燥肌;");
    assert_int_equal(store_friend_tag_remove(f->s, "a", "U2", "vip", err, sizeof err), 0);
    assert_int_equal(store_friend_tag_remove(f->s, "a", "U2", "vip", err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_friend_get(f->s, "a", "U8", &fr, err, sizeof err), 0); /* created */
}

/* Interactions move last_active_ms once a minute: the first event of a
 * later minute, never an earlier time; first_active_ms is set once. */
static void test_friend_touch_minutes(void **state)
{
    fx *f = *state;
    char err[256];
    store_friend fr;
    const int64_t t = 1700000080000; /* 40 s into a minute */
    assert_int_equal(store_friend_touch(f->s, "a", "U1", t, err, sizeof err), 0);
    assert_int_equal(store_friend_touch(f->s, "a", "U1", t + 15000, err, sizeof err), 0);
    assert_int_equal(store_friend_get(f->s, "a", "U1", &fr, err, sizeof err), 0);
    assert_int_equal(fr.first_active_ms, t);
    assert_int_equal(fr.last_active_ms, t); /* same minute: not written */
    assert_int_equal(store_friend_touch(f->s, "a", "U1", t + 25000, err, sizeof err), 0);
    assert_int_equal(store_friend_get(f->s, "a", "U1", &fr, err, sizeof err), 0);
    assert_int_equal(fr.last_active_ms, t + 25000); /* the next minute */
    assert_int_equal(store_friend_touch(f->s, "a", "U1", t, err, sizeof err), 0);
    assert_int_equal(store_friend_get(f->s, "a", "U1", &fr, err, sizeof err), 0);
    assert_int_equal(fr.last_active_ms, t + 25000); /* late delivery: never backwards */
    assert_int_equal(fr.first_active_ms, t);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_open_migrates_and_reopens),
        T(test_sbx_richmenus),
        T(test_friends_registry),
        T(test_friend_touch_minutes),
        T(test_unsupported_url),
        T(test_newer_schema_refused),
        T(test_append_and_duplicate),
        T(test_events_after_order_and_limit),
        T(test_events_after_large_payloads),
        T(test_ids_never_reused),
        T(test_instance_open_and_cursor),
        T(test_failures),
        T(test_dead_letters),
        T(test_dead_replay_order_and_stop),
        T(test_kv_get_put_del),
        T(test_kv_cas),
        T(test_kv_incr),
        T(test_savepoint_rollback_keeps_outer),
        T(test_savepoint_release_keeps_writes),
        T(test_begin_commit_rollback),
        T(test_second_connection_sees_commit),
        T(test_checkpoint_in_commit_without_checkpointer),
        T(test_checkpointer_takes_over),
        T(test_checkpointer_stopped_first),
        T(test_meta),
        T(test_sbx_users),
        T(test_sbx_inbox),
        T(test_sbx_retry_keys),
        T(test_sbx_reply_tokens),
        T(test_sbx_rate_and_usage),
        T(test_sbx_migrates_from_1),
        T(test_outbox_add_get),
        T(test_outbox_due_order_limit),
        T(test_outbox_retry_rewrite_finish),
        T(test_outbox_transactions),
        T(test_outbox_migrates_from_2),
        T(test_outbox_migrates_from_3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
