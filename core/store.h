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
#define STORE_SCHEMA_VERSION 9

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
/* Process-wide SQLite settings; store_open calls it, and so must any other
 * code before its first sqlite3_* call. Idempotent; any thread. */
void store_sqlite_setup(void);
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

/* 1 when another connection of this process to the same database waits
 * for the write lock now (a long transaction may end early for it). Any
 * thread; a hint, read without ordering. */
int store_writer_wanted(const store *s);

/* Checkpoints of the WAL into the database file. Without a checkpointer a
 * commit that leaves the WAL over 1000 pages copies it itself, holding the
 * process's writer lock meanwhile (SQLite's default). store_checkpointer
 * takes that over for every connection of this process to s's database:
 * it blocks, copying when commits ask, until store_checkpointer_stop (any
 * thread; before it starts, it returns at once), calling after(arg) (may
 * be NULL) on its own thread after each catch-up. s is its own connection,
 * used by nothing else meanwhile. A checkpointer that falls 16 times that
 * far behind gets help: commits copy again themselves. */
void store_checkpointer(store *s, void (*after)(void *arg), void *arg);
void store_checkpointer_stop(store *s);

/* What this process did to s's database since its first connection to it
 * opened; any thread. */
typedef struct store_checkpoints {
    uint64_t background; /* catch-ups a checkpointer ran */
    uint64_t in_commit;  /* checkpoints a commit ran itself */
    int checkpointers;   /* checkpointers running now */
} store_checkpoints;
void store_checkpoint_stats(store *s, store_checkpoints *out);

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

/* Retention: deletes up to `limit` of shop's events, oldest first, with
 * id <= max_id (every instance has handled them) and time before
 * before_ms, up to the first newer one; events a dead letter or a failure
 * refers to stay. Ids are never handed out again (AUTOINCREMENT).
 * *deleted gets how many went. In the caller's transaction if open. */
int store_events_prune(store *s, const char *shop, int64_t max_id, int64_t before_ms, int limit,
                       int *deleted, char *err, size_t errlen);

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

/* The instance of (shop, plugin) without creating it: KZ_ENOTFOUND (no
 * error text) when the plugin never ran for the shop on this store. For
 * readers (reports) that must not start an instance's cursor. */
int store_instance_find(store *s, const char *shop, const char *plugin, int64_t *id,
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

/* Calls cb for each key of the instance starting with prefix, in key order
 * (a nonzero return stops the walk and is returned); key and val are valid
 * during the call only. */
typedef int (*store_kv_cb)(void *arg, const char *key, const void *val, size_t len);
int store_kv_prefix(store *s, int64_t instance, const char *prefix, store_kv_cb cb, void *arg,
                    char *err, size_t errlen);

/* ---- outbox: LINE API calls waiting to be sent ------------------------ */

/* Outbox row states. A row is inserted PENDING in the handler's transaction
 * and leaves PENDING exactly once. */
enum { OUTBOX_PENDING = 0, OUTBOX_SENT = 1, OUTBOX_FAILED = 2, OUTBOX_PARKED = 3 };

/* The kind of a row queued by line_call (any other API call), beside the
 * KZ_LINE_* sends. */
enum { OUTBOX_CALL = 64 };

/* One queued call. Strings are owned by whoever made the struct: the caller
 * of store_outbox_add, or the store during a store_outbox_due callback. */
typedef struct store_outbox {
    int64_t id;
    const char *shop;
    int64_t instance;         /* the plugin instance that queued it */
    int kind;                 /* KZ_LINE_* (kizuna/host.h) */
    const char *endpoint;     /* "/v2/bot/message/push"; a call's path and query */
    const char *body;         /* the request body, exactly as it will be sent ("" for none) */
    size_t body_len;          /* add: 0 means strlen(body); read: always set */
    const char *method;       /* NULL: POST */
    const char *content_type; /* NULL: application/json; anything else is stored as a blob */
    int data_api;             /* 1: api-data.line.me */
    const char *plugin;       /* the queuing plugin's name, or NULL */
    const char *error;        /* read only: the last attempt's error, or NULL */
    const char *retry_key;    /* UUID fixed at insert; NULL for reply */
    const char *user;         /* the recipient for push/reply (message.* events), or NULL */
    const char *fallback_to;  /* reply: push to this user if the token cannot be used */
    const char *tag;          /* the plugin's tag, or NULL */
    const char *origin;       /* uid of the event whose handler queued it */
    int state;                /* OUTBOX_* */
    int attempts;             /* sending attempts so far */
    int64_t created_ms;
    int64_t next_at_ms;  /* not sent before */
    int64_t deadline_ms; /* given up (FAILED) after */
} store_outbox;

/* Inserts a PENDING row (id, state and attempts of *row are ignored); inside
 * the caller's transaction when one is open. *id may be NULL. */
int store_outbox_add(store *s, const store_outbox *row, int64_t *id, char *err, size_t errlen);

/* Calls cb for up to `limit` PENDING rows with next_at <= now, oldest id
 * first; a nonzero return stops the walk and is returned. Pointers in *row
 * are valid during the call only. row->body is NULL (body_len 0): the walk
 * passes over rows a rate limit holds back without reading their bodies;
 * store_outbox_body reads the body of a row that is to be sent. */
typedef int (*store_outbox_cb)(void *arg, const store_outbox *row);
int store_outbox_due(store *s, int64_t now_ms, int limit, store_outbox_cb cb, void *arg, char *err,
                     size_t errlen);

/* The body of row `id`, NUL-terminated, in *body (the caller frees it) and
 * its length in *len. KZ_ENOTFOUND if there is no such row. */
int store_outbox_body(store *s, int64_t id, char **body, size_t *len, char *err, size_t errlen);

/* A failed attempt to be tried again: attempts, next_at and the last error. */
int store_outbox_retry(store *s, int64_t id, int attempts, int64_t next_at_ms, const char *error,
                       char *err, size_t errlen);

/* Rewrites a PENDING row in place (a reply turned into its fallback push):
 * kind, endpoint, body and retry key. */
int store_outbox_rewrite(store *s, int64_t id, int kind, const char *endpoint, const char *body,
                         const char *retry_key, char *err, size_t errlen);

/* Ends a row: state SENT, FAILED or PARKED, with the HTTP status (0 for a
 * network failure), LINE's x-line-request-id (or NULL) and the error text
 * (NULL when sent). KZ_ENOTFOUND if the row is not PENDING any more. */
int store_outbox_finish(store *s, int64_t id, int state, int status, const char *request_id,
                        const char *error, int64_t now_ms, char *err, size_t errlen);

/* Reads one row (any state) into *out; strings stay valid until the next
 * store call on this connection. KZ_ENOTFOUND if absent. Also returns its
 * status, request id and error through the optional pointers. */
int store_outbox_get(store *s, int64_t id, store_outbox *out, int *status, const char **request_id,
                     const char **error, char *err, size_t errlen);

/* Rows still PENDING (for /metrics). */
int store_outbox_pending(store *s, int64_t *count, char *err, size_t errlen);
/* The earliest next_at of the PENDING rows (when the next send or retry
 * is due; a walk of the virtual clock stops there), KZ_ENOTFOUND when none
 * is pending. Reads the pending rows only (the partial index). */
int store_outbox_next(store *s, int64_t *next_at_ms, char *err, size_t errlen);

/* Retention: deletes up to `limit` finished rows (sent, failed, parked),
 * oldest first, stopping at the first row pending or finished at or after
 * before_ms. *deleted gets how many went. */
int store_outbox_prune(store *s, int64_t before_ms, int limit, int *deleted, char *err,
                       size_t errlen);

/* For each (tag, state) of the shop's rows whose tag starts with
 * tag_prefix: cb with the number of rows (a report of tagged sends; stop
 * rules as store_kv_prefix). Not indexed: one scan of the shop's rows. */
typedef int (*store_tag_state_cb)(void *arg, const char *tag, int state, int64_t rows);
int store_outbox_tag_states(store *s, const char *shop, const char *tag_prefix,
                            store_tag_state_cb cb, void *arg, char *err, size_t errlen);

/* ---- friends: the registry of each shop's LINE friends (schema 6) -----
 *
 * One row per (shop, user) ever seen following, with its follow history,
 * profile and interaction times; tags in their own table. Written by the
 * core's `friends` instance (core/friends.c) inside the handler's
 * transaction and by the CLI. Times are ms since the epoch, 0 = never. */

typedef struct store_friend {
    char user[64];
    int following;           /* 1: a friend now; 0: unfollowed (blocked) */
    int64_t first_follow_ms; /* the first follow seen */
    int64_t follow_ms;       /* the last follow or unblock */
    int64_t unfollow_ms;     /* the last unfollow (block) */
    int64_t follows;         /* follow events seen: 2 and more are re-follows */
    int64_t first_active_ms; /* first event from the user */
    int64_t last_active_ms;  /* first event from the user (unfollow excluded) in the latest
                              * minute with one: kept to the minute, so messages within a
                              * minute write the row once */
    char display_name[256];
    char picture_url[512];
    char status_message[512];
    char language[16];
    int64_t profile_ms; /* when the profile was last fetched; 0: never */
} store_friend;

/* A follow at ms: creates the friend or makes them following again. */
int store_friend_follow(store *s, const char *shop, const char *user, int64_t ms, char *err,
                        size_t errlen);
/* An unfollow (the user blocked the account) at ms. Creates the row when the
 * follow predates kizuna. */
int store_friend_unfollow(store *s, const char *shop, const char *user, int64_t ms, char *err,
                          size_t errlen);
/* Any other event from the user at ms: first/last interaction. Creates the
 * row (following unknown = 1: LINE only delivers events of users who have
 * not blocked the account). */
int store_friend_touch(store *s, const char *shop, const char *user, int64_t ms, char *err,
                       size_t errlen);
/* Replaces the profile fields (NULL stores ""). KZ_ENOTFOUND if unknown. */
int store_friend_profile(store *s, const char *shop, const char *user, const char *display_name,
                         const char *picture_url, const char *status_message, const char *language,
                         int64_t ms, char *err, size_t errlen);
/* KZ_ENOTFOUND (no error text) for a user the shop never saw. */
int store_friend_get(store *s, const char *shop, const char *user, store_friend *out, char *err,
                     size_t errlen);
/* Calls cb for each friend of the shop after user `after` ("" from the
 * start), in user id order, at most limit (0: all); a nonzero return stops
 * the walk and is returned. One statement streams the rows: memory does not
 * grow with the number of friends. *f is valid during the call only; cb may
 * not call store_friends back. */
typedef int (*store_friend_cb)(void *arg, const store_friend *f);
int store_friends(store *s, const char *shop, const char *after, int64_t limit, store_friend_cb cb,
                  void *arg, char *err, size_t errlen);

/* Tags: add returns KZ_EEXIST when the friend has it already, remove
 * KZ_ENOTFOUND when they had not; the caller publishes friend.tagged /
 * untagged only on a change. Adding to an unknown user creates the row. */
int store_friend_tag_add(store *s, const char *shop, const char *user, const char *tag, int64_t ms,
                         char *err, size_t errlen);
int store_friend_tag_remove(store *s, const char *shop, const char *user, const char *tag,
                            char *err, size_t errlen);
/* The user's tags in order, each passed to cb (valid during the call). */
typedef int (*store_tag_cb)(void *arg, const char *tag);
int store_friend_tags(store *s, const char *shop, const char *user, store_tag_cb cb, void *arg,
                      char *err, size_t errlen);

/* Attributes (schema 7): a typed value per (friend, name), stored as text in
 * a canonical form: the string itself, a number as "%.17g", a date as
 * "YYYY-MM-DD", a bool as "true"/"false". type is CFG_ATTR_* (config.h).
 * set creates the friend row when needed; get and del are KZ_ENOTFOUND
 * when the friend has no such attribute. */
int store_friend_attr_set(store *s, const char *shop, const char *user, const char *name, int type,
                          const char *value, int64_t ms, char *err, size_t errlen);
int store_friend_attr_get(store *s, const char *shop, const char *user, const char *name, int *type,
                          char *value, size_t valuelen, char *err, size_t errlen);
int store_friend_attr_del(store *s, const char *shop, const char *user, const char *name, char *err,
                          size_t errlen);
typedef int (*store_attr_cb)(void *arg, const char *name, int type, const char *value);
int store_friend_attrs(store *s, const char *shop, const char *user, store_attr_cb cb, void *arg,
                       char *err, size_t errlen);

/* Links to member ids of other systems (schema 7): one member per (friend,
 * source), and a member id of a source belongs to one friend of the shop.
 * set moves the member from its previous friend (whose id goes to
 * prev_user, "" when none; prev_user may be NULL) and replaces the friend's
 * earlier member of that source. */
int store_friend_link_set(store *s, const char *shop, const char *user, const char *source,
                          const char *member, int64_t ms, char *prev_user, size_t prevlen,
                          char *err, size_t errlen);
int store_friend_link_get(store *s, const char *shop, const char *user, const char *source,
                          char *member, size_t memberlen, char *err, size_t errlen);
int store_friend_link_del(store *s, const char *shop, const char *user, const char *source,
                          char *err, size_t errlen);
/* The friend linked to member at source; KZ_ENOTFOUND (no text) if none. */
int store_friend_by_link(store *s, const char *shop, const char *source, const char *member,
                         char *user, size_t userlen, char *err, size_t errlen);
typedef int (*store_link_cb)(void *arg, const char *source, const char *member);
int store_friend_links(store *s, const char *shop, const char *user, store_link_cb cb, void *arg,
                       char *err, size_t errlen);

/* The audience walk (broadcasts, `kizuna friends`): every friend of the shop
 * after user `after` ("" or NULL from the start), in user id order, only
 * those following when following_only, each with its tags, attributes and
 * links. Four statements stream in user order and are merged here, so
 * there is no query per friend and memory does not grow with the number of
 * friends. For each friend: tag / attr / link (each may be NULL) for its
 * rows, then row with the registry row. A nonzero return of any callback
 * stops the walk and is returned. Pointers are valid during the call only;
 * the callbacks must not walk the friends again on this connection. */
typedef struct store_audience {
    store_tag_cb tag;
    store_attr_cb attr;
    store_link_cb link;
    store_friend_cb row;
    void *arg;
} store_audience;
int store_friends_audience(store *s, const char *shop, const char *after, int following_only,
                           const store_audience *cb, char *err, size_t errlen);

/* ---- small key/value of the core itself (virtual clock, …) ------------ */

/* KZ_ENOTFOUND if absent. out is NUL-terminated, truncated to outlen. */
int store_meta_get(store *s, const char *key, char *out, size_t outlen, char *err, size_t errlen);
int store_meta_put(store *s, const char *key, const char *val, char *err, size_t errlen);

/* ---- sandbox: the LINE stand-in's own state (schema 2) ----------------
 *
 * The sandbox (sandbox.h) keeps what LINE would know in a database of its
 * own (its own store_open URL), so kizuna's state and "LINE's" are separate
 * and a crash of the daemon loses neither. The tables exist in every
 * database; only the sandbox's has rows.
 *
 * - users: per shop, the users the sandbox plays (display name, following,
 *   blocked, when the follow state last changed).
 * - inbox: one row per message per recipient that "LINE" delivered, with the
 *   endpoint, the x-line-request-id it answered and the message object.
 * - retry keys: X-Line-Retry-Key per shop with the accepted request's id and
 *   the body a 409 repeats; a key counts for 24 h (STORE_SBX_RETRY_KEEP_MS).
 * - reply tokens: issued with a webhook event, usable once.
 * - rate windows: per (shop, endpoint) the current window's start and count.
 * - usage: messages counted against the monthly limit, per (shop, "YYYY-MM").
 */

#define STORE_SBX_RETRY_KEEP_MS (24LL * 3600 * 1000)

typedef struct store_sbx_user {
    char user[64];
    char display_name[128];
    int following;    /* a friend now */
    int blocked;      /* unfollowed (blocked) */
    int64_t since_ms; /* last follow or unfollow */
} store_sbx_user;

/* KZ_ENOTFOUND (no error text) when the sandbox does not know the user. */
int store_sbx_user_get(store *s, const char *shop, const char *user, store_sbx_user *out, char *err,
                       size_t errlen);
/* Inserts or replaces the user row (u->user names it). */
int store_sbx_user_put(store *s, const char *shop, const store_sbx_user *u, char *err,
                       size_t errlen);
/* Calls cb for each user of the shop (only those following when
 * following_only), in user id order; a nonzero return stops the walk and is
 * returned. *u is valid during the call only; cb must not call
 * store_sbx_users back. */
typedef int (*store_sbx_user_cb)(void *arg, const store_sbx_user *u);
int store_sbx_users(store *s, const char *shop, int following_only, store_sbx_user_cb cb, void *arg,
                    char *err, size_t errlen);

/* One delivered message as read back; pointers valid during the callback. */
typedef struct store_sbx_msg {
    int64_t id; /* increasing in delivery order */
    const char *shop;
    const char *user;
    int64_t time_ms;
    const char *endpoint;   /* "push", "reply", "multicast", "broadcast", "narrowcast" */
    const char *request_id; /* the x-line-request-id of the call */
    const char *message;    /* the message object, JSON text */
} store_sbx_msg;

/* Records that user received message (JSON text) from a call. */
int store_sbx_inbox_add(store *s, const char *shop, const char *user, int64_t time_ms,
                        const char *endpoint, const char *request_id, const char *message,
                        char *err, size_t errlen);
/* Calls cb for each message the user received, oldest first (same stop and
 * reentrancy rules as store_sbx_users). */
typedef int (*store_sbx_msg_cb)(void *arg, const store_sbx_msg *m);
int store_sbx_inbox(store *s, const char *shop, const char *user, store_sbx_msg_cb cb, void *arg,
                    char *err, size_t errlen);
/* Messages delivered by one call (its request id) and to how many distinct
 * users. */
int store_sbx_inbox_count(store *s, const char *shop, const char *request_id, int64_t *messages,
                          int64_t *users, char *err, size_t errlen);

/* The request id accepted with retry key `key` and the body its 409 repeats
 * (*response malloc'd, owned by the caller; response may be NULL), if the
 * key was seen within STORE_SBX_RETRY_KEEP_MS before now_ms; KZ_ENOTFOUND
 * (no error text) otherwise. */
int store_sbx_retry_get(store *s, const char *shop, const char *key, int64_t now_ms,
                        char *request_id, size_t idlen, char **response, char *err, size_t errlen);
/* Records an accepted key (replacing an expired one) and forgets the shop's
 * keys older than STORE_SBX_RETRY_KEEP_MS. */
int store_sbx_retry_put(store *s, const char *shop, const char *key, const char *request_id,
                        int64_t time_ms, const char *response, char *err, size_t errlen);

/* Records a reply token issued to user at issued_ms. */
int store_sbx_token_add(store *s, const char *shop, const char *token, const char *user,
                        int64_t issued_ms, char *err, size_t errlen);
/* Spends a reply token: when it exists, is unused and was issued at or after
 * not_before_ms, marks it used and copies its user into user[userlen];
 * otherwise KZ_ENOTFOUND (no error text) and nothing changes. */
int store_sbx_token_use(store *s, const char *shop, const char *token, int64_t not_before_ms,
                        char *user, size_t userlen, char *err, size_t errlen);

/* Counts one request of (shop, endpoint) in the window starting at
 * window_start (the caller rounds the time down to its window): *allowed is
 * 1 and the count grows when fewer than limit requests were counted in that
 * window (a newer window starts again from 0), else 0 and nothing changes. */
int store_sbx_rate_hit(store *s, const char *shop, const char *endpoint, int64_t window_start,
                       int64_t limit, int *allowed, char *err, size_t errlen);

/* Messages counted for the shop in month ("YYYY-MM"); 0 when none. */
int store_sbx_usage_get(store *s, const char *shop, const char *month, int64_t *count, char *err,
                        size_t errlen);
int store_sbx_usage_add(store *s, const char *shop, const char *month, int64_t delta, char *err,
                        size_t errlen);

/* ---- sandbox: rich menus (schema 4) ------------------------------------
 *
 * Per shop: rich menus (their RichMenuResponse JSON and at most one image),
 * the menu linked to each user and the default one, and aliases. Ids are
 * the sandbox's to make; the store only keeps them. Not found is
 * KZ_ENOTFOUND with no error text, as for users.
 */

/* Stores a new menu: body is its JSON text (RichMenuResponse). */
int store_sbx_rm_add(store *s, const char *shop, const char *id, const char *body, char *err,
                     size_t errlen);
/* *body malloc'd (owned by the caller; body may be NULL); *has_image 1 once
 * an image was stored (has_image may be NULL). */
int store_sbx_rm_get(store *s, const char *shop, const char *id, char **body, int *has_image,
                     char *err, size_t errlen);
/* Calls cb for each menu of the shop, oldest first (stop and reentrancy
 * rules as store_sbx_users). */
typedef int (*store_sbx_rm_cb)(void *arg, const char *id, const char *body);
int store_sbx_rm_list(store *s, const char *shop, store_sbx_rm_cb cb, void *arg, char *err,
                      size_t errlen);
/* Deletes a menu with its image, the links to it (users' and the default)
 * and the aliases naming it. Call inside a transaction. */
int store_sbx_rm_delete(store *s, const char *shop, const char *id, char *err, size_t errlen);
/* Stores the menu's image: KZ_ENOTFOUND for no such menu, KZ_EEXIST when
 * it has one already (an image is never replaced, as on LINE). */
int store_sbx_rm_image_put(store *s, const char *shop, const char *id, const char *content_type,
                           const void *data, size_t n, char *err, size_t errlen);
/* The image: content_type copied into type[typelen], *data malloc'd (owned
 * by the caller). KZ_ENOTFOUND for no such menu or no image yet. */
int store_sbx_rm_image_get(store *s, const char *shop, const char *id, char *type, size_t typelen,
                           void **data, size_t *n, char *err, size_t errlen);
/* Links menu id to user ("" = the shop's default), replacing a link; a NULL
 * id unlinks (no error when nothing was linked). */
int store_sbx_rm_link_put(store *s, const char *shop, const char *user, const char *id, char *err,
                          size_t errlen);
/* The menu linked to user ("" = the default) into id[idlen]. */
int store_sbx_rm_link_get(store *s, const char *shop, const char *user, char *id, size_t idlen,
                          char *err, size_t errlen);
/* create: adds alias -> id, KZ_EEXIST when the alias exists; otherwise
 * points an existing alias at id, KZ_ENOTFOUND when there is none. */
int store_sbx_rm_alias_put(store *s, const char *shop, const char *alias, const char *id,
                           int create, char *err, size_t errlen);
int store_sbx_rm_alias_get(store *s, const char *shop, const char *alias, char *id, size_t idlen,
                           char *err, size_t errlen);
int store_sbx_rm_alias_delete(store *s, const char *shop, const char *alias, char *err,
                              size_t errlen);
/* Calls cb(arg, alias, menu id) for each alias of the shop, by alias. */
int store_sbx_rm_aliases(store *s, const char *shop, store_sbx_rm_cb cb, void *arg, char *err,
                         size_t errlen);

/* ---- timers (schema 8) ---------------------------------------------------
 *
 * Durable timers of plugin instances (docs/scheduler.md). A timer is named
 * by (instance, key); when due it becomes an event of its shop with uid
 * "timer:<id>" (ids are never reused) and the plugin's topic, user and
 * payload. Firing appends that event and deletes the timer in one
 * transaction, so a timer fires exactly once across crashes. Reading what
 * is due costs the due rows, not the pending ones (index on due_ms, id).
 */

typedef struct store_timer {
    int64_t id;
    const char *shop;
    int64_t instance;
    const char *key;
    int64_t due_ms;
    const char *topic;
    const char *user; /* NULL: none */
    const char *payload;
    int64_t created_ms;
} store_timer;

/* Inserts t (id ignored), replacing the timer of the same (instance, key):
 * a rescheduled key keeps one timer. In the caller's transaction if open. */
int store_timer_set(store *s, const store_timer *t, char *err, size_t errlen);
/* KZ_ENOTFOUND (no error text) when the instance has no timer of that key. */
int store_timer_cancel(store *s, int64_t instance, const char *key, char *err, size_t errlen);
/* Calls cb for up to `limit` timers with due_ms <= now, by due_ms then id;
 * a nonzero return stops the walk and is returned. Pointers in *t are valid
 * during the call only; cb must not call the store on this connection. */
typedef int (*store_timer_cb)(void *arg, const store_timer *t);
int store_timer_due(store *s, int64_t now_ms, int limit, store_timer_cb cb, void *arg, char *err,
                    size_t errlen);
/* Appends timer id's event (time_ms: its due time) and deletes the timer,
 * in the caller's transaction or one of its own. *event_id (may be NULL)
 * gets the new event's id. KZ_ENOTFOUND when the timer is gone (cancelled
 * or fired meanwhile). */
int store_timer_fire(store *s, int64_t id, int64_t *event_id, char *err, size_t errlen);
/* Fires up to `limit` timers due by now_ms, in due order, as
 * store_timer_fire does one, with two statements for all of them; in the
 * caller's transaction or one of its own. *fired gets how many. */
int store_timer_fire_due(store *s, int64_t now_ms, int limit, int *fired, char *err, size_t errlen);
/* Timers waiting (for /metrics). */
int store_timer_pending(store *s, int64_t *count, char *err, size_t errlen);
/* The earliest due_ms, KZ_ENOTFOUND when no timer waits. */
int store_timer_next(store *s, int64_t *due_ms, char *err, size_t errlen);

/* ---- delivery policy (schema 9) ------------------------------------------
 *
 * Promotional sends the shop's delivery policy holds back (core/policy.h,
 * docs/delivery.md): a held send keeps its request body once (without
 * "to") and one row per recipient still waiting, with the time it is
 * reconsidered. The ledger has one row per promotional send released to a
 * friend (the caps count it), the drops one per recipient dropped (shown
 * per friend); both are kept 8 days. The stats are the /metrics counters, written
 * in the transactions that hold, drop and release, so they are exact
 * across crashes. Written by the handler's transaction (line_send) and by
 * the release walk (policy_release), which moves due rows into the outbox
 * in one transaction.
 */

/* Why a recipient waits (store_policy_held.reason: QUIET or CAP) or was
 * dropped (store_policy_drop_add: CAP, MAX_DEFER, or BROKEN: the held
 * send's stored body could not be read back when it was released). */
enum {
    STORE_POLICY_QUIET = 0,
    STORE_POLICY_CAP = 1,
    STORE_POLICY_MAX_DEFER = 2,
    STORE_POLICY_BROKEN = 3
};

typedef struct store_policy_send {
    int64_t id;
    const char *shop;
    int64_t instance;
    int kind;         /* KZ_LINE_PUSH or KZ_LINE_MULTICAST */
    const char *body; /* the request body without "to" */
    const char *tag;  /* NULL: none */
    const char *origin;
    int priority;
    int over_cap; /* KZ_OVER_CAP_* */
    int64_t created_ms;
} store_policy_send;

/* One waiting recipient with its send. Pointers are valid during the
 * callback only (held_of: body and origin are NULL). */
typedef struct store_policy_held {
    store_policy_send send;
    const char *user;
    int64_t release_ms;
    int reason; /* STORE_POLICY_* */
} store_policy_held;
typedef int (*store_policy_held_cb)(void *arg, const store_policy_held *h);

/* Stores a send's body (ps->id ignored); *id gets its id. In the caller's
 * transaction when one is open. */
int store_policy_send_add(store *s, const store_policy_send *ps, int64_t *id, char *err,
                          size_t errlen);
/* Holds send for user until release_ms. */
int store_policy_hold(store *s, int64_t send, const char *shop, const char *user,
                      int64_t release_ms, int reason, char *err, size_t errlen);
/* Promotional sends released to user in [from_ms, to_ms). */
int store_policy_count(store *s, const char *shop, const char *user, int64_t from_ms, int64_t to_ms,
                       int64_t *n, char *err, size_t errlen);
/* Counts one promotional send released to user at at_ms. */
int store_policy_ledger_add(store *s, const char *shop, const char *user, int64_t at_ms, char *err,
                            size_t errlen);
/* Records that a promotional send (its tag, may be NULL) to user was
 * dropped at at_ms for reason. */
int store_policy_drop_add(store *s, const char *shop, const char *user, int64_t at_ms, int reason,
                          const char *tag, int priority, char *err, size_t errlen);
/* cb(arg, at_ms, reason, tag, priority) for user's drops since since_ms,
 * oldest first (stop rules as store_kv_prefix). */
typedef int (*store_policy_drop_cb)(void *arg, int64_t at_ms, int reason, const char *tag,
                                    int priority);
int store_policy_drops_of(store *s, const char *shop, const char *user, int64_t since_ms,
                          store_policy_drop_cb cb, void *arg, char *err, size_t errlen);
/* Forgets ledger and drop rows before before_ms (older than any cap
 * period). */
int store_policy_ledger_prune(store *s, int64_t before_ms, char *err, size_t errlen);
/* Adds delta to counter `what` of the shop. */
int store_policy_stat_add(store *s, const char *shop, const char *what, int64_t delta, char *err,
                          size_t errlen);
/* stat(arg, shop, what, n) for each counter, then held(arg, shop, NULL, n)
 * with the recipients waiting per shop. Stop rules as store_kv_prefix. */
typedef int (*store_policy_stat_cb)(void *arg, const char *shop, const char *what, int64_t n);
int store_policy_stats(store *s, store_policy_stat_cb stat, store_policy_stat_cb held, void *arg,
                       char *err, size_t errlen);
/* Up to `limit` recipients with release_ms <= now, by shop, user, priority
 * (higher first), then send id (queue order). cb must not use the
 * connection. */
int store_policy_due(store *s, int64_t now_ms, int limit, store_policy_held_cb cb, void *arg,
                     char *err, size_t errlen);
/* The earliest release_ms; KZ_ENOTFOUND when nothing waits. */
int store_policy_next(store *s, int64_t *release_ms, char *err, size_t errlen);
/* Ends user's wait for send (released or dropped); the send's body goes
 * with its last recipient. KZ_ENOTFOUND when it was not waiting. */
int store_policy_unhold(store *s, int64_t send, const char *user, char *err, size_t errlen);
/* Moves user's wait for send to release_ms. KZ_ENOTFOUND as unhold. */
int store_policy_reschedule(store *s, int64_t send, const char *user, int64_t release_ms,
                            int reason, char *err, size_t errlen);
/* The sends user is waiting for, by release time (`kizuna friend`). */
int store_policy_held_of(store *s, const char *shop, const char *user, store_policy_held_cb cb,
                         void *arg, char *err, size_t errlen);
/* The reason of user's earliest held send due by now_ms (its window has
 * opened or its cap period begun, and no release walk has decided it yet);
 * KZ_ENOTFOUND (no error text) when none is. */
int store_policy_due_reason(store *s, const char *shop, const char *user, int64_t now_ms,
                            int *reason, char *err, size_t errlen);
/* For each tag starting with tag_prefix: the recipients of the shop's
 * promotional sends with that tag held now and dropped (drops are kept
 * until pruned). Not indexed by tag: one scan of the shop's held and
 * dropped rows. Stop rules as store_kv_prefix. */
typedef int (*store_policy_tag_cb)(void *arg, const char *tag, int64_t held, int64_t dropped);
int store_policy_tag_counts(store *s, const char *shop, const char *tag_prefix,
                            store_policy_tag_cb cb, void *arg, char *err, size_t errlen);

#endif /* KIZUNA_CORE_STORE_H */
