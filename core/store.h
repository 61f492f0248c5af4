/*
 * store — the only module that talks to the database.
 *
 * No SQLite call exists outside store.c; a PostgreSQL backend will implement
 * this same interface. The interface is semantic (events, cursors, failures,
 * dead letters, key/value), not SQL, so each backend may lay out its tables
 * as suits it.
 *
 * Model
 * - events: append-only per shop, ids strictly increasing in commit order,
 *   unique (shop, uid). An append with a known (shop, uid) is a no-op that
 *   reports the duplicate (webhook redeliveries, re-published ids).
 * - instances: one row per (shop, plugin) with a cursor: the id of the last
 *   event of that shop the instance has finished with. Advancing the cursor
 *   in the same transaction as the handler's effects is the "handled" mark.
 * - failures: at most one per instance — the event at the head of that
 *   instance's queue that failed, with attempts, next retry time and error.
 * - dead letters: events parked after too many failures, per instance, until
 *   replayed (replay = handed to that instance once more) or purged.
 * - kv: per-instance key/value, values are blobs; counters are stored as
 *   decimal text so kv_get shows them readably.
 *
 * Connections and threads: a `store` is one connection. It may be used by
 * one thread at a time; open one per thread. Several connections (and
 * processes, for the CLI) may use the same database; writers serialize
 * (SQLite: WAL, BEGIN IMMEDIATE, busy timeout).
 *
 * Errors: every function returns 0 or a negative KZ_E* code (kizuna/host.h)
 * and, when err != NULL, writes a one-line reason into err[errlen].
 * KZ_ENOTFOUND is a normal answer where documented and writes no error.
 */
#ifndef KIZUNA_CORE_STORE_H
#define KIZUNA_CORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/host.h>

/* Schema version this build writes and understands. */
#define STORE_SCHEMA_VERSION 1

typedef struct store store;

/* Durability of a commit. FULL: survives power loss (fsync on commit).
 * NORMAL: survives a crash of the process, may lose the last commits on power
 * loss (SQLite WAL + synchronous=NORMAL). */
enum { STORE_SYNC_FULL = 0, STORE_SYNC_NORMAL = 1 };

/* Opens `url` ("sqlite:PATH"; PATH relative to the working directory; its
 * parent directory is created if missing), applies pending migrations inside a
 * transaction, and refuses a schema newer than STORE_SCHEMA_VERSION with
 * "database schema is version N, this kizuna understands up to M; upgrade
 * kizuna". *out is owned by the caller; free with store_close. */
int store_open(const char *url, int sync_mode, store **out, char *err, size_t errlen);
void store_close(store *s);

/* Transactions. begin = BEGIN IMMEDIATE (takes the write lock, waiting up to
 * the busy timeout). A savepoint nests one level inside a transaction:
 * handler effects go between savepoint and release; rollback_savepoint undoes
 * them and keeps the outer transaction usable. */
int store_begin(store *s, char *err, size_t errlen);
int store_commit(store *s, char *err, size_t errlen);
void store_rollback(store *s);
int store_savepoint(store *s, char *err, size_t errlen);
int store_release(store *s, char *err, size_t errlen);
int store_rollback_savepoint(store *s, char *err, size_t errlen);
int store_in_transaction(const store *s);

/* ---- events ----------------------------------------------------------- */

/* An event as read back. All pointers are owned by the batch that holds it. */
typedef struct store_event {
    int64_t id;
    const char *shop;
    const char *uid;
    const char *topic;
    const char *user; /* NULL when none */
    int64_t time_ms;
    const char *payload; /* NUL-terminated JSON text */
    size_t payload_len;
} store_event;

/* Events fetched in one call; owns their memory. Reuse across fetches. */
typedef struct store_batch {
    store_event *ev;
    size_t n, cap;
    char *arena; /* private */
    size_t arena_len, arena_cap;
} store_batch;

void store_batch_free(store_batch *b);

/* Appends one event; works inside or outside a transaction (outside: its own
 * implicit transaction). user may be NULL; payload is len bytes of JSON text.
 * *id_out receives the new id, or 0 when (shop, uid) already existed (then
 * nothing is written and 0 is returned). id_out may be NULL. */
int store_event_append(store *s, const char *shop, const char *uid, const char *topic,
                       const char *user, int64_t time_ms, const char *payload, size_t len,
                       int64_t *id_out, char *err, size_t errlen);

/* Replaces the content of *b with up to `limit` events of `shop` with
 * id > after_id, in id order. */
int store_events_after(store *s, const char *shop, int64_t after_id, int limit, store_batch *b,
                       char *err, size_t errlen);

/* Reads one event by id into *b (b->n becomes 1); KZ_ENOTFOUND if absent. */
int store_event_get(store *s, int64_t id, store_batch *b, char *err, size_t errlen);

/* Highest event id of the shop, 0 when it has none. */
int store_event_max_id(store *s, const char *shop, int64_t *out, char *err, size_t errlen);

/* ---- instances and cursors ------------------------------------------- */

/* Finds or creates the instance row of (shop, plugin). A new instance starts
 * with its cursor at the shop's current last event id, so enabling a plugin
 * does not replay the shop's history to it. Returns its id and cursor. */
int store_instance_open(store *s, const char *shop, const char *plugin, int64_t *id,
                        int64_t *cursor, char *err, size_t errlen);

int store_cursor_get(store *s, int64_t instance, int64_t *cursor, char *err, size_t errlen);
int store_cursor_set(store *s, int64_t instance, int64_t cursor, char *err, size_t errlen);

/* ---- failures (head-of-line retry state) ------------------------------ */

typedef struct store_failure {
    int64_t event_id;
    int attempts;     /* failed attempts so far */
    int64_t retry_at; /* ms since epoch; not retried before */
    char error[512];  /* last error text */
} store_failure;

/* KZ_ENOTFOUND when the instance has no failure recorded. */
int store_failure_get(store *s, int64_t instance, store_failure *out, char *err, size_t errlen);
/* Inserts or replaces the instance's failure row. */
int store_failure_set(store *s, int64_t instance, const store_failure *f, char *err, size_t errlen);
int store_failure_clear(store *s, int64_t instance, char *err, size_t errlen);

/* ---- dead letters ----------------------------------------------------- */

typedef struct store_dead {
    int64_t id; /* dead-letter id, shown by `kizuna events --dead` */
    int64_t instance;
    int64_t event_id;
    const char *shop;
    const char *plugin;
    const char *topic;
    const char *uid;
    const char *error;
    int attempts;
    int64_t time_ms; /* when it was parked */
    int replay;      /* 1: queued for replay */
} store_dead;

int store_dead_add(store *s, int64_t instance, int64_t event_id, int attempts, const char *error,
                   int64_t time_ms, char *err, size_t errlen);
/* Calls cb for every dead letter, oldest first; a nonzero return stops the
 * walk and is returned. Pointers in *d are valid during the call only. */
typedef int (*store_dead_cb)(void *arg, const store_dead *d);
int store_dead_list(store *s, store_dead_cb cb, void *arg, char *err, size_t errlen);
/* Queues dead letter `id` for replay; KZ_ENOTFOUND if no such id. */
int store_dead_replay(store *s, int64_t id, char *err, size_t errlen);
/* The oldest dead letter of `instance` queued for replay: its dead id and
 * event id; KZ_ENOTFOUND when none. */
int store_dead_next_replay(store *s, int64_t instance, int64_t *dead_id, int64_t *event_id,
                           char *err, size_t errlen);
/* Removes a dead letter (after a successful replay). */
int store_dead_remove(store *s, int64_t id, char *err, size_t errlen);
/* Marks a queued replay as failed again: clears the replay flag, adds
 * attempts, stores the error. */
int store_dead_replay_failed(store *s, int64_t id, const char *error, char *err, size_t errlen);

/* ---- per-instance key/value ------------------------------------------- */

/* *val is malloc'd (NUL-terminated beyond len) and owned by the caller.
 * KZ_ENOTFOUND if absent. */
int store_kv_get(store *s, int64_t instance, const char *key, void **val, size_t *len, char *err,
                 size_t errlen);
int store_kv_put(store *s, int64_t instance, const char *key, const void *val, size_t len,
                 char *err, size_t errlen);
/* KZ_ENOTFOUND if absent. */
int store_kv_del(store *s, int64_t instance, const char *key, char *err, size_t errlen);
/* expect == NULL: write only if absent. KZ_ECONFLICT on mismatch. */
int store_kv_cas(store *s, int64_t instance, const char *key, const void *expect, size_t expect_len,
                 const void *val, size_t len, char *err, size_t errlen);
/* Counter stored as decimal text; absent = 0. KZ_ETYPE if the stored value
 * is not a decimal integer. result may be NULL. */
int store_kv_incr(store *s, int64_t instance, const char *key, int64_t delta, int64_t *result,
                  char *err, size_t errlen);

/* ---- small key/value of the core itself (virtual clock, …) ------------ */

/* KZ_ENOTFOUND if absent. out is NUL-terminated, truncated to outlen. */
int store_meta_get(store *s, const char *key, char *out, size_t outlen, char *err, size_t errlen);
int store_meta_put(store *s, const char *key, const char *val, char *err, size_t errlen);

#endif /* KIZUNA_CORE_STORE_H */
