/*
 * store — SQLite backend of store.h.
 *
 * Every statement is prepared once per connection (lazily, on first use) and
 * reset after each use, so the hot path (append, fetch, cursor, kv) never
 * parses SQL. Transaction control statements are cached the same way.
 */
#include "store.h"

#include "errbuf.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#define URL_SCHEME "sqlite:"
#define BUSY_TIMEOUT_MS 10000

/* ---- schema ------------------------------------------------------------- */

/* migrations[v] takes a database from user_version v to v + 1. Never edit a
 * released step: add a new one and bump STORE_SCHEMA_VERSION. */
static const char *const migrations[] = {
    /* 1: initial schema.
     * events: AUTOINCREMENT so an id is never handed out twice, even after
     *   the newest rows were deleted; the (shop) index also orders by rowid,
     *   which serves "shop = ? AND id > ? ORDER BY id" and the max id.
     * kv: WITHOUT ROWID keeps each value in the (instance, key) b-tree, one
     *   lookup per access. */
    "CREATE TABLE events("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " uid TEXT NOT NULL,"
    " topic TEXT NOT NULL,"
    " user TEXT,"
    " time_ms INTEGER NOT NULL,"
    " payload TEXT NOT NULL,"
    " UNIQUE(shop, uid));"
    "CREATE INDEX events_shop ON events(shop);"
    "CREATE TABLE instances("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " plugin TEXT NOT NULL,"
    " cursor INTEGER NOT NULL,"
    " UNIQUE(shop, plugin));"
    "CREATE TABLE failures("
    " instance INTEGER PRIMARY KEY REFERENCES instances(id),"
    " event_id INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " retry_at INTEGER NOT NULL,"
    " error TEXT NOT NULL);"
    "CREATE TABLE dead("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " instance INTEGER NOT NULL REFERENCES instances(id),"
    " event_id INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " error TEXT NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " replay INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX dead_instance ON dead(instance);"
    "CREATE INDEX dead_replay ON dead(instance, id) WHERE replay = 1;"
    "CREATE TABLE kv("
    " instance INTEGER NOT NULL REFERENCES instances(id),"
    " key TEXT NOT NULL,"
    " value BLOB NOT NULL,"
    " PRIMARY KEY(instance, key)) WITHOUT ROWID;"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    /* 2: the sandbox's tables (store.h, "sandbox"). Only the sandbox's own
     * database fills them. sbx_rate keeps one window per (shop, endpoint):
     * a newer window replaces the row, so nothing needs purging. */
    "CREATE TABLE sbx_users("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " display_name TEXT NOT NULL,"
    " following INTEGER NOT NULL,"
    " blocked INTEGER NOT NULL,"
    " since_ms INTEGER NOT NULL,"
    " PRIMARY KEY(shop, user)) WITHOUT ROWID;"
    "CREATE TABLE sbx_inbox("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " request_id TEXT NOT NULL,"
    " message TEXT NOT NULL);"
    "CREATE INDEX sbx_inbox_user ON sbx_inbox(shop, user, id);"
    "CREATE INDEX sbx_inbox_request ON sbx_inbox(shop, request_id);"
    "CREATE TABLE sbx_retry_keys("
    " shop TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " request_id TEXT NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " response TEXT NOT NULL,"
    " PRIMARY KEY(shop, key)) WITHOUT ROWID;"
    "CREATE TABLE sbx_reply_tokens("
    " shop TEXT NOT NULL,"
    " token TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " issued_ms INTEGER NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(shop, token)) WITHOUT ROWID;"
    "CREATE TABLE sbx_rate("
    " shop TEXT NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " window_start INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY(shop, endpoint)) WITHOUT ROWID;"
    "CREATE TABLE sbx_usage("
    " shop TEXT NOT NULL,"
    " month TEXT NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY(shop, month)) WITHOUT ROWID;",
    /* 3: the outbox (store.h, "outbox"). No foreign key on instance: the
     * core itself (kizuna send) queues rows with instance 0. The partial
     * index holds only PENDING rows, in id order with next_at alongside, so
     * "due, oldest first" and the pending count cost the pending rows only;
     * finished rows leave it. */
    "CREATE TABLE outbox("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " instance INTEGER NOT NULL,"
    " kind INTEGER NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " retry_key TEXT,"
    " user TEXT,"
    " fallback_to TEXT,"
    " tag TEXT,"
    " origin TEXT,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL,"
    " next_at_ms INTEGER NOT NULL,"
    " deadline_ms INTEGER NOT NULL,"
    " status INTEGER,"
    " request_id TEXT,"
    " error TEXT,"
    " finished_ms INTEGER);"
    "CREATE INDEX outbox_due ON outbox(id, next_at_ms) WHERE state = 0;",
    /* 4: line_call rows (OUTBOX_CALL): any method and content type (a rich
     * menu image is a blob body), the api-data host, and the plugin that
     * queued the call for its result event. */
    "ALTER TABLE outbox ADD COLUMN method TEXT;"
    "ALTER TABLE outbox ADD COLUMN content_type TEXT;"
    "ALTER TABLE outbox ADD COLUMN data_api INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE outbox ADD COLUMN plugin TEXT;",
    /* 5: the sandbox's rich menus (store.h, "sandbox: rich menus"). The
     * image lives in the menu's row (one menu, at most one image, never
     * replaced); a rowid table keeps the up-to-1 MB blobs out of a
     * WITHOUT ROWID b-tree and gives the creation order for the list.
     * Links: user '' is the shop's default menu. */
    "CREATE TABLE sbx_richmenus("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " image_type TEXT,"
    " image BLOB,"
    " UNIQUE(shop, id));"
    "CREATE TABLE sbx_richmenu_links("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " richmenu TEXT NOT NULL,"
    " PRIMARY KEY(shop, user)) WITHOUT ROWID;"
    "CREATE TABLE sbx_richmenu_aliases("
    " shop TEXT NOT NULL,"
    " alias TEXT NOT NULL,"
    " richmenu TEXT NOT NULL,"
    " PRIMARY KEY(shop, alias)) WITHOUT ROWID;",
    /* 6: the friend registry (store.h, "friends"). Keyed (shop, user) so a
     * shop's friends stream in user order from the primary key; tags are
     * also indexed by tag for segment queries. */
    "CREATE TABLE friends("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " following INTEGER NOT NULL DEFAULT 1,"
    " first_follow_ms INTEGER NOT NULL DEFAULT 0,"
    " follow_ms INTEGER NOT NULL DEFAULT 0,"
    " unfollow_ms INTEGER NOT NULL DEFAULT 0,"
    " follows INTEGER NOT NULL DEFAULT 0,"
    " first_active_ms INTEGER NOT NULL DEFAULT 0,"
    " last_active_ms INTEGER NOT NULL DEFAULT 0,"
    " display_name TEXT NOT NULL DEFAULT '',"
    " picture_url TEXT NOT NULL DEFAULT '',"
    " status_message TEXT NOT NULL DEFAULT '',"
    " language TEXT NOT NULL DEFAULT '',"
    " profile_ms INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(shop, user)) WITHOUT ROWID;"
    "CREATE TABLE friend_tags("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " tag TEXT NOT NULL,"
    " added_ms INTEGER NOT NULL,"
    " PRIMARY KEY(shop, user, tag)) WITHOUT ROWID;"
    "CREATE INDEX friend_tags_by_tag ON friend_tags(shop, tag, user);",
    /* 7: friend attributes and links to member ids of other systems. A
     * member id belongs to one friend per source (the unique index), and
     * finding the friend of an EC order's member is one index lookup. */
    "CREATE TABLE friend_attrs("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " type INTEGER NOT NULL,"
    " value TEXT NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(shop, user, name)) WITHOUT ROWID;"
    "CREATE TABLE friend_links("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " member TEXT NOT NULL,"
    " linked_ms INTEGER NOT NULL,"
    " PRIMARY KEY(shop, user, source)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX friend_links_by_member ON friend_links(shop, source, member);",
    /* 8: durable timers (store.h, "timers"). (instance, key) names one
     * timer, so rescheduling replaces; timers_due makes "what is due" a
     * range scan over due rows only, however many wait in the future. */
    "CREATE TABLE timers("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " instance INTEGER NOT NULL,"
    " key TEXT NOT NULL,"
    " due_ms INTEGER NOT NULL,"
    " topic TEXT NOT NULL,"
    " user TEXT,"
    " payload TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " UNIQUE(instance, key));"
    "CREATE INDEX timers_due ON timers(due_ms, id);",
    /* 9: the delivery policy (store.h, "delivery policy"). A held
     * promotional send keeps its body once (policy_sends) and one row per
     * waiting recipient (policy_held); policy_held_due makes the release
     * walk a range scan over due rows. policy_ledger counts released sends
     * per friend for the caps (one index range per friend and period);
     * policy_stats keeps the /metrics counters with the transactions that
     * change them. */
    "CREATE TABLE policy_sends("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " shop TEXT NOT NULL,"
    " instance INTEGER NOT NULL,"
    " kind INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " tag TEXT,"
    " origin TEXT NOT NULL,"
    " priority INTEGER NOT NULL,"
    " over_cap INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE TABLE policy_held("
    " send INTEGER NOT NULL,"
    " user TEXT NOT NULL,"
    " shop TEXT NOT NULL,"
    " release_ms INTEGER NOT NULL,"
    " reason INTEGER NOT NULL,"
    " PRIMARY KEY(send, user)) WITHOUT ROWID;"
    "CREATE INDEX policy_held_due ON policy_held(release_ms);"
    "CREATE INDEX policy_held_by_user ON policy_held(shop, user);"
    "CREATE TABLE policy_ledger("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "CREATE INDEX policy_ledger_by_user ON policy_ledger(shop, user, at_ms);"
    "CREATE INDEX policy_ledger_by_time ON policy_ledger(at_ms);"
    "CREATE TABLE policy_drops("
    " shop TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL,"
    " reason INTEGER NOT NULL,"
    " tag TEXT,"
    " priority INTEGER NOT NULL);"
    "CREATE INDEX policy_drops_by_user ON policy_drops(shop, user, at_ms);"
    "CREATE INDEX policy_drops_by_time ON policy_drops(at_ms);"
    "CREATE TABLE policy_stats("
    " shop TEXT NOT NULL,"
    " what TEXT NOT NULL,"
    " n INTEGER NOT NULL,"
    " PRIMARY KEY(shop, what)) WITHOUT ROWID;",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---- statements --------------------------------------------------------- */

enum stmt_id {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_SAVEPOINT,
    Q_RELEASE,
    Q_ROLLBACK_TO,
    Q_EV_APPEND,
    Q_EV_AFTER,
    Q_EV_GET,
    Q_EV_MAX,
    Q_INST_GET,
    Q_INST_ADD,
    Q_CUR_GET,
    Q_CUR_SET,
    Q_FAIL_GET,
    Q_FAIL_SET,
    Q_FAIL_CLEAR,
    Q_DEAD_ADD,
    Q_DEAD_LIST,
    Q_DEAD_REPLAY,
    Q_DEAD_NEXT,
    Q_DEAD_REMOVE,
    Q_DEAD_FAILED,
    Q_KV_GET,
    Q_KV_PUT,
    Q_KV_DEL,
    Q_KV_ADD,
    Q_KV_SWAP,
    Q_META_GET,
    Q_META_PUT,
    Q_SBX_USER_GET,
    Q_SBX_USER_PUT,
    Q_SBX_USERS,
    Q_SBX_USERS_FOLLOWING,
    Q_SBX_INBOX_ADD,
    Q_SBX_INBOX,
    Q_SBX_INBOX_COUNT,
    Q_SBX_RETRY_GET,
    Q_SBX_RETRY_PUT,
    Q_SBX_RETRY_PURGE,
    Q_SBX_TOKEN_ADD,
    Q_SBX_TOKEN_USE,
    Q_SBX_RATE_HIT,
    Q_SBX_USAGE_GET,
    Q_SBX_USAGE_ADD,
    Q_SBX_RM_ADD,
    Q_SBX_RM_GET,
    Q_SBX_RM_LIST,
    Q_SBX_RM_DEL,
    Q_SBX_RM_DEL_LINKS,
    Q_SBX_RM_DEL_ALIASES,
    Q_SBX_RM_IMAGE_PUT,
    Q_SBX_RM_IMAGE_GET,
    Q_SBX_RM_LINK_PUT,
    Q_SBX_RM_LINK_DEL,
    Q_SBX_RM_LINK_GET,
    Q_SBX_RM_ALIAS_ADD,
    Q_SBX_RM_ALIAS_SET,
    Q_SBX_RM_ALIAS_GET,
    Q_SBX_RM_ALIAS_DEL,
    Q_SBX_RM_ALIASES,
    Q_FR_FOLLOW,
    Q_FR_UNFOLLOW,
    Q_FR_TOUCH,
    Q_FR_PROFILE,
    Q_FR_GET,
    Q_FR_LIST,
    Q_FR_ENSURE,
    Q_FR_TAG_ADD,
    Q_FR_TAG_DEL,
    Q_FR_TAGS,
    Q_FR_ATTR_SET,
    Q_FR_ATTR_GET,
    Q_FR_ATTR_DEL,
    Q_FR_ATTRS,
    Q_FR_LINK_OWNER,
    Q_FR_LINK_DROP_MEMBER,
    Q_FR_LINK_SET,
    Q_FR_LINK_GET,
    Q_FR_LINK_DEL,
    Q_FR_LINKS,
    Q_FR_AUD_FRIENDS,
    Q_FR_AUD_FOLLOWING,
    Q_FR_AUD_TAGS,
    Q_FR_AUD_ATTRS,
    Q_FR_AUD_LINKS,
    Q_KV_PREFIX,
    Q_OB_TAG_STATES,
    Q_OB_ADD,
    Q_OB_DUE,
    Q_OB_BODY,
    Q_OB_RETRY,
    Q_OB_REWRITE,
    Q_OB_FINISH,
    Q_OB_GET,
    Q_OB_PENDING,
    Q_OB_NEXT,
    Q_TM_SET,
    Q_TM_CANCEL,
    Q_TM_DUE,
    Q_TM_GET,
    Q_TM_DEL,
    Q_TM_FIRE_EVENTS,
    Q_TM_FIRE_DELETE,
    Q_TM_PENDING,
    Q_TM_NEXT,
    Q_PO_SEND_ADD,
    Q_PO_HOLD,
    Q_PO_COUNT,
    Q_PO_LEDGER_ADD,
    Q_PO_LEDGER_PRUNE,
    Q_PO_STAT_ADD,
    Q_PO_STATS,
    Q_PO_HELD_COUNTS,
    Q_PO_DUE,
    Q_PO_NEXT,
    Q_PO_UNHOLD,
    Q_PO_RESCHEDULE,
    Q_PO_SEND_GC,
    Q_PO_HELD_OF,
    Q_PO_TAG_COUNTS,
    Q_EV_PRUNE,
    Q_OB_PRUNE,
    Q_PO_DUE_REASON,
    Q_PO_DROP_ADD,
    Q_PO_DROP_PRUNE,
    Q_PO_DROPS_OF,
    Q_COUNT
};

#define EV_COLUMNS "id, shop, uid, topic, user, time_ms, payload"
#define SBX_USER_COLUMNS "user, display_name, following, blocked, since_ms"
#define FR_COLUMNS                                                                                 \
    "user, following, first_follow_ms, follow_ms, unfollow_ms, follows, first_active_ms,"          \
    " last_active_ms, display_name, picture_url, status_message, language, profile_ms"
#define OB_COLUMNS                                                                                 \
    "id, shop, instance, kind, endpoint, body, retry_key, user, fallback_to, tag, origin, state,"  \
    " attempts, created_ms, next_at_ms, deadline_ms, method, content_type, data_api, plugin, "     \
    "error"
/* The due walk leaves the body in the row: a multicast's is 20 kB of
 * overflow pages, read only for the rows that are sent. */
#define OB_DUE_COLUMNS                                                                             \
    "id, shop, instance, kind, endpoint, NULL, retry_key, user, fallback_to, tag, origin, state,"  \
    " attempts, created_ms, next_at_ms, deadline_ms, method, content_type, data_api, plugin, "     \
    "error"

static const char *const sql_text[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SAVEPOINT] = "SAVEPOINT h",
    [Q_RELEASE] = "RELEASE h",
    [Q_ROLLBACK_TO] = "ROLLBACK TO h",
    [Q_EV_APPEND] = "INSERT INTO events(shop, uid, topic, user, time_ms, payload)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(shop, uid) DO NOTHING",
    [Q_EV_AFTER] = "SELECT " EV_COLUMNS " FROM events WHERE shop = ?1 AND id > ?2"
                   " ORDER BY id LIMIT ?3",
    [Q_EV_GET] = "SELECT " EV_COLUMNS " FROM events WHERE id = ?1",
    [Q_EV_MAX] = "SELECT id FROM events WHERE shop = ?1 ORDER BY id DESC LIMIT 1",
    [Q_INST_GET] = "SELECT id, cursor FROM instances WHERE shop = ?1 AND plugin = ?2",
    /* "WHERE true" resolves the INSERT … SELECT … ON CONFLICT parse ambiguity */
    [Q_INST_ADD] = "INSERT INTO instances(shop, plugin, cursor) SELECT ?1, ?2, coalesce("
                   "(SELECT id FROM events WHERE shop = ?1 ORDER BY id DESC LIMIT 1), 0)"
                   " WHERE true ON CONFLICT(shop, plugin) DO NOTHING",
    [Q_CUR_GET] = "SELECT cursor FROM instances WHERE id = ?1",
    [Q_CUR_SET] = "UPDATE instances SET cursor = ?2 WHERE id = ?1",
    [Q_FAIL_GET] = "SELECT event_id, attempts, retry_at, error FROM failures WHERE instance = ?1",
    [Q_FAIL_SET] = "INSERT INTO failures(instance, event_id, attempts, retry_at, error)"
                   " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(instance) DO UPDATE SET"
                   " event_id = excluded.event_id, attempts = excluded.attempts,"
                   " retry_at = excluded.retry_at, error = excluded.error",
    [Q_FAIL_CLEAR] = "DELETE FROM failures WHERE instance = ?1",
    [Q_DEAD_ADD] = "INSERT INTO dead(instance, event_id, attempts, error, time_ms)"
                   " VALUES(?1, ?2, ?3, coalesce(?4, ''), ?5)",
    /* LEFT JOIN: a dead letter stays listed even if its event were purged */
    [Q_DEAD_LIST] = "SELECT d.id, d.instance, d.event_id, i.shop, i.plugin,"
                    " coalesce(e.topic, ''), coalesce(e.uid, ''), d.error, d.attempts,"
                    " d.time_ms, d.replay FROM dead d JOIN instances i ON i.id = d.instance"
                    " LEFT JOIN events e ON e.id = d.event_id ORDER BY d.id",
    [Q_DEAD_REPLAY] = "UPDATE dead SET replay = 1 WHERE id = ?1",
    [Q_DEAD_NEXT] = "SELECT id, event_id FROM dead WHERE instance = ?1 AND replay = 1"
                    " ORDER BY id LIMIT 1",
    [Q_DEAD_REMOVE] = "DELETE FROM dead WHERE id = ?1",
    [Q_DEAD_FAILED] = "UPDATE dead SET replay = 0, attempts = attempts + 1,"
                      " error = coalesce(?2, '') WHERE id = ?1",
    [Q_KV_GET] = "SELECT value FROM kv WHERE instance = ?1 AND key = ?2",
    [Q_KV_PUT] = "INSERT INTO kv(instance, key, value) VALUES(?1, ?2, ?3)"
                 " ON CONFLICT(instance, key) DO UPDATE SET value = excluded.value",
    [Q_KV_DEL] = "DELETE FROM kv WHERE instance = ?1 AND key = ?2",
    [Q_KV_ADD] = "INSERT INTO kv(instance, key, value) VALUES(?1, ?2, ?3)"
                 " ON CONFLICT(instance, key) DO NOTHING",
    [Q_KV_SWAP] = "UPDATE kv SET value = ?3 WHERE instance = ?1 AND key = ?2 AND value = ?4",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_PUT] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [Q_SBX_USER_GET] = "SELECT " SBX_USER_COLUMNS " FROM sbx_users WHERE shop = ?1 AND user = ?2",
    [Q_SBX_USER_PUT] = "INSERT INTO sbx_users(shop, " SBX_USER_COLUMNS ")"
                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(shop, user) DO UPDATE SET"
                       " display_name = excluded.display_name, following = excluded.following,"
                       " blocked = excluded.blocked, since_ms = excluded.since_ms",
    [Q_SBX_USERS] = "SELECT " SBX_USER_COLUMNS " FROM sbx_users WHERE shop = ?1 ORDER BY user",
    [Q_SBX_USERS_FOLLOWING] = "SELECT " SBX_USER_COLUMNS " FROM sbx_users WHERE shop = ?1"
                              " AND following = 1 ORDER BY user",
    [Q_SBX_INBOX_ADD] = "INSERT INTO sbx_inbox(shop, user, time_ms, endpoint, request_id, message)"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_SBX_INBOX] = "SELECT id, shop, user, time_ms, endpoint, request_id, message FROM sbx_inbox"
                    " WHERE shop = ?1 AND user = ?2 ORDER BY id",
    [Q_SBX_INBOX_COUNT] = "SELECT count(*), count(DISTINCT user) FROM sbx_inbox"
                          " WHERE shop = ?1 AND request_id = ?2",
    [Q_SBX_RETRY_GET] = "SELECT request_id, response FROM sbx_retry_keys"
                        " WHERE shop = ?1 AND key = ?2 AND time_ms > ?3",
    [Q_SBX_RETRY_PUT] = "INSERT INTO sbx_retry_keys(shop, key, request_id, time_ms, response)"
                        " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(shop, key) DO UPDATE SET"
                        " request_id = excluded.request_id, time_ms = excluded.time_ms,"
                        " response = excluded.response",
    [Q_SBX_RETRY_PURGE] = "DELETE FROM sbx_retry_keys WHERE shop = ?1 AND time_ms <= ?2",
    [Q_SBX_TOKEN_ADD] = "INSERT INTO sbx_reply_tokens(shop, token, user, issued_ms)"
                        " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(shop, token) DO NOTHING",
    [Q_SBX_TOKEN_USE] = "UPDATE sbx_reply_tokens SET used = 1 WHERE shop = ?1 AND token = ?2"
                        " AND used = 0 AND issued_ms >= ?3 RETURNING user",
    /* one statement: a full window is left alone (no change = refused) */
    [Q_SBX_RATE_HIT] = "INSERT INTO sbx_rate(shop, endpoint, window_start, count)"
                       " VALUES(?1, ?2, ?3, 1) ON CONFLICT(shop, endpoint) DO UPDATE SET"
                       " count = CASE WHEN window_start = excluded.window_start"
                       " THEN count + 1 ELSE 1 END, window_start = excluded.window_start"
                       " WHERE window_start <> excluded.window_start OR count < ?4",
    [Q_SBX_USAGE_GET] = "SELECT count FROM sbx_usage WHERE shop = ?1 AND month = ?2",
    [Q_SBX_USAGE_ADD] = "INSERT INTO sbx_usage(shop, month, count) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(shop, month) DO UPDATE SET count = count + excluded.count",
    [Q_SBX_RM_ADD] = "INSERT INTO sbx_richmenus(shop, id, body) VALUES(?1, ?2, ?3)",
    [Q_SBX_RM_GET] =
        "SELECT body, image IS NOT NULL FROM sbx_richmenus WHERE shop = ?1 AND id = ?2",
    [Q_SBX_RM_LIST] = "SELECT id, body FROM sbx_richmenus WHERE shop = ?1 ORDER BY seq",
    [Q_SBX_RM_DEL] = "DELETE FROM sbx_richmenus WHERE shop = ?1 AND id = ?2",
    [Q_SBX_RM_DEL_LINKS] = "DELETE FROM sbx_richmenu_links WHERE shop = ?1 AND richmenu = ?2",
    [Q_SBX_RM_DEL_ALIASES] = "DELETE FROM sbx_richmenu_aliases WHERE shop = ?1 AND richmenu = ?2",
    [Q_SBX_RM_IMAGE_PUT] = "UPDATE sbx_richmenus SET image_type = ?3, image = ?4"
                           " WHERE shop = ?1 AND id = ?2 AND image IS NULL",
    [Q_SBX_RM_IMAGE_GET] = "SELECT image_type, image FROM sbx_richmenus"
                           " WHERE shop = ?1 AND id = ?2 AND image IS NOT NULL",
    [Q_SBX_RM_LINK_PUT] = "INSERT INTO sbx_richmenu_links(shop, user, richmenu) VALUES(?1, ?2, ?3)"
                          " ON CONFLICT(shop, user) DO UPDATE SET richmenu = excluded.richmenu",
    [Q_SBX_RM_LINK_DEL] = "DELETE FROM sbx_richmenu_links WHERE shop = ?1 AND user = ?2",
    [Q_SBX_RM_LINK_GET] = "SELECT richmenu FROM sbx_richmenu_links WHERE shop = ?1 AND user = ?2",
    [Q_SBX_RM_ALIAS_ADD] = "INSERT INTO sbx_richmenu_aliases(shop, alias, richmenu)"
                           " VALUES(?1, ?2, ?3) ON CONFLICT(shop, alias) DO NOTHING",
    [Q_SBX_RM_ALIAS_SET] = "UPDATE sbx_richmenu_aliases SET richmenu = ?3"
                           " WHERE shop = ?1 AND alias = ?2",
    [Q_SBX_RM_ALIAS_GET] =
        "SELECT richmenu FROM sbx_richmenu_aliases WHERE shop = ?1 AND alias = ?2",
    [Q_SBX_RM_ALIAS_DEL] = "DELETE FROM sbx_richmenu_aliases WHERE shop = ?1 AND alias = ?2",
    [Q_SBX_RM_ALIASES] = "SELECT alias, richmenu FROM sbx_richmenu_aliases WHERE shop = ?1"
                         " ORDER BY alias",
    [Q_FR_FOLLOW] =
        "INSERT INTO friends(shop, user, following, first_follow_ms, follow_ms, follows,"
        " first_active_ms, last_active_ms) VALUES(?1, ?2, 1, ?3, ?3, 1, ?3, ?3)"
        " ON CONFLICT(shop, user) DO UPDATE SET following = 1, follow_ms = ?3,"
        " follows = follows + 1, first_follow_ms = CASE first_follow_ms WHEN 0"
        " THEN ?3 ELSE first_follow_ms END, first_active_ms = CASE first_active_ms"
        " WHEN 0 THEN ?3 ELSE first_active_ms END,"
        " last_active_ms = max(last_active_ms, ?3)",
    [Q_FR_UNFOLLOW] =
        "INSERT INTO friends(shop, user, following, unfollow_ms) VALUES(?1, ?2, 0, ?3)"
        " ON CONFLICT(shop, user) DO UPDATE SET following = 0, unfollow_ms = ?3",
    /* Only a later minute moves last_active_ms: a chatty user costs one row
     * write a minute, not one per message (store.h). */
    [Q_FR_TOUCH] = "INSERT INTO friends(shop, user, first_active_ms, last_active_ms)"
                   " VALUES(?1, ?2, ?3, ?3) ON CONFLICT(shop, user) DO UPDATE SET"
                   " first_active_ms = CASE first_active_ms WHEN 0 THEN ?3 ELSE first_active_ms"
                   " END, last_active_ms = max(last_active_ms, ?3)"
                   " WHERE ?3 / 60000 > last_active_ms / 60000",
    [Q_FR_PROFILE] = "UPDATE friends SET display_name = ?3, picture_url = ?4, status_message = ?5,"
                     " language = ?6, profile_ms = ?7 WHERE shop = ?1 AND user = ?2",
    [Q_FR_GET] = "SELECT " FR_COLUMNS " FROM friends WHERE shop = ?1 AND user = ?2",
    [Q_FR_LIST] = "SELECT " FR_COLUMNS " FROM friends WHERE shop = ?1 AND user > ?2"
                  " ORDER BY user LIMIT ?3",
    [Q_FR_ENSURE] = "INSERT OR IGNORE INTO friends(shop, user) VALUES(?1, ?2)",
    [Q_FR_TAG_ADD] = "INSERT OR IGNORE INTO friend_tags(shop, user, tag, added_ms)"
                     " VALUES(?1, ?2, ?3, ?4)",
    [Q_FR_TAG_DEL] = "DELETE FROM friend_tags WHERE shop = ?1 AND user = ?2 AND tag = ?3",
    [Q_FR_TAGS] = "SELECT tag FROM friend_tags WHERE shop = ?1 AND user = ?2 ORDER BY tag",
    [Q_FR_ATTR_SET] = "INSERT OR REPLACE INTO friend_attrs(shop, user, name, type, value,"
                      " updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_FR_ATTR_GET] = "SELECT type, value FROM friend_attrs WHERE shop = ?1 AND user = ?2"
                      " AND name = ?3",
    [Q_FR_ATTR_DEL] = "DELETE FROM friend_attrs WHERE shop = ?1 AND user = ?2 AND name = ?3",
    [Q_FR_ATTRS] = "SELECT name, type, value FROM friend_attrs WHERE shop = ?1 AND user = ?2"
                   " ORDER BY name",
    [Q_FR_LINK_OWNER] = "SELECT user FROM friend_links WHERE shop = ?1 AND source = ?2"
                        " AND member = ?3",
    [Q_FR_LINK_DROP_MEMBER] = "DELETE FROM friend_links WHERE shop = ?1 AND source = ?2"
                              " AND member = ?3",
    [Q_FR_LINK_SET] = "INSERT OR REPLACE INTO friend_links(shop, user, source, member, linked_ms)"
                      " VALUES(?1, ?2, ?3, ?4, ?5)",
    [Q_FR_LINK_GET] = "SELECT member FROM friend_links WHERE shop = ?1 AND user = ?2"
                      " AND source = ?3",
    [Q_FR_LINK_DEL] = "DELETE FROM friend_links WHERE shop = ?1 AND user = ?2 AND source = ?3",
    [Q_FR_LINKS] = "SELECT source, member FROM friend_links WHERE shop = ?1 AND user = ?2"
                   " ORDER BY source",
    /* the audience walk: four primary-key ranges in user order, merged in C */
    [Q_FR_AUD_FRIENDS] = "SELECT " FR_COLUMNS " FROM friends WHERE shop = ?1 AND user > ?2"
                         " ORDER BY user",
    [Q_FR_AUD_FOLLOWING] = "SELECT " FR_COLUMNS " FROM friends WHERE shop = ?1 AND user > ?2"
                           " AND following = 1 ORDER BY user",
    [Q_FR_AUD_TAGS] = "SELECT user, tag FROM friend_tags WHERE shop = ?1 AND user > ?2"
                      " ORDER BY user, tag",
    [Q_FR_AUD_ATTRS] = "SELECT user, name, type, value FROM friend_attrs WHERE shop = ?1"
                       " AND user > ?2 ORDER BY user, name",
    [Q_FR_AUD_LINKS] = "SELECT user, source, member FROM friend_links WHERE shop = ?1"
                       " AND user > ?2 ORDER BY user, source",
    [Q_KV_PREFIX] = "SELECT key, value FROM kv WHERE instance = ?1 AND key >= ?2"
                    " AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
    [Q_OB_TAG_STATES] = "SELECT tag, state, count(*) FROM outbox WHERE shop = ?1"
                        " AND substr(tag, 1, length(?2)) = ?2 GROUP BY tag, state",
    [Q_OB_ADD] = "INSERT INTO outbox(shop, instance, kind, endpoint, body, retry_key, user,"
                 " fallback_to, tag, origin, created_ms, next_at_ms, deadline_ms, method,"
                 " content_type, data_api, plugin)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                 " ?17)",
    [Q_OB_DUE] = "SELECT " OB_DUE_COLUMNS " FROM outbox INDEXED BY outbox_due"
                 " WHERE state = 0 AND next_at_ms <= ?1 ORDER BY id LIMIT ?2",
    [Q_OB_BODY] = "SELECT body FROM outbox WHERE id = ?1",
    [Q_OB_RETRY] = "UPDATE outbox SET attempts = ?2, next_at_ms = ?3, error = ?4"
                   " WHERE id = ?1 AND state = 0",
    [Q_OB_REWRITE] = "UPDATE outbox SET kind = ?2, endpoint = ?3, body = ?4, retry_key = ?5"
                     " WHERE id = ?1 AND state = 0",
    [Q_OB_FINISH] = "UPDATE outbox SET state = ?2, status = ?3, request_id = ?4, error = ?5,"
                    " finished_ms = ?6 WHERE id = ?1 AND state = 0",
    [Q_OB_GET] = "SELECT " OB_COLUMNS ", status, request_id FROM outbox WHERE id = ?1",
    [Q_OB_PENDING] = "SELECT count(*) FROM outbox INDEXED BY outbox_due WHERE state = 0",
    [Q_OB_NEXT] = "SELECT min(next_at_ms) FROM outbox INDEXED BY outbox_due WHERE state = 0",
    /* REPLACE deletes the old row and inserts a new id: a rescheduled timer
     * orders after timers set earlier for the same instant. */
    [Q_TM_SET] = "INSERT OR REPLACE INTO timers(shop, instance, key, due_ms, topic, user, payload,"
                 " created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_TM_CANCEL] = "DELETE FROM timers WHERE instance = ?1 AND key = ?2",
    [Q_TM_DUE] = "SELECT id, shop, instance, key, due_ms, topic, user, payload, created_ms"
                 " FROM timers INDEXED BY timers_due WHERE due_ms <= ?1"
                 " ORDER BY due_ms, id LIMIT ?2",
    [Q_TM_GET] = "SELECT shop, topic, user, payload, due_ms FROM timers WHERE id = ?1",
    [Q_TM_DEL] = "DELETE FROM timers WHERE id = ?1",
    /* a batch of due timers in two statements: their events in due order
     * (WHERE keeps the upsert unambiguous), then the same rows deleted */
    [Q_TM_FIRE_EVENTS] = "INSERT INTO events(shop, uid, topic, user, time_ms, payload)"
                         " SELECT shop, 'timer:' || id, topic, user, due_ms, payload"
                         " FROM timers INDEXED BY timers_due WHERE due_ms <= ?1"
                         " ORDER BY due_ms, id LIMIT ?2 ON CONFLICT(shop, uid) DO NOTHING",
    [Q_TM_FIRE_DELETE] = "DELETE FROM timers WHERE id IN (SELECT id FROM timers INDEXED BY"
                         " timers_due WHERE due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2)",
    [Q_TM_PENDING] = "SELECT count(*) FROM timers",
    [Q_TM_NEXT] = "SELECT min(due_ms) FROM timers",
    [Q_PO_SEND_ADD] = "INSERT INTO policy_sends(shop, instance, kind, body, tag, origin, priority,"
                      " over_cap, created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [Q_PO_HOLD] = "INSERT OR REPLACE INTO policy_held(send, user, shop, release_ms, reason)"
                  " VALUES(?1, ?2, ?3, ?4, ?5)",
    [Q_PO_COUNT] = "SELECT count(*) FROM policy_ledger WHERE shop = ?1 AND user = ?2"
                   " AND at_ms >= ?3 AND at_ms < ?4",
    [Q_PO_LEDGER_ADD] = "INSERT INTO policy_ledger(shop, user, at_ms) VALUES(?1, ?2, ?3)",
    [Q_PO_LEDGER_PRUNE] = "DELETE FROM policy_ledger WHERE at_ms < ?1",
    [Q_PO_STAT_ADD] = "INSERT INTO policy_stats(shop, what, n) VALUES(?1, ?2, ?3)"
                      " ON CONFLICT(shop, what) DO UPDATE SET n = n + excluded.n",
    [Q_PO_STATS] = "SELECT shop, what, n FROM policy_stats ORDER BY shop, what",
    /* every shop that ever held a send has counters: its gauge reads 0
     * once the last one went */
    [Q_PO_HELD_COUNTS] = "SELECT s.shop, (SELECT count(*) FROM policy_held h WHERE h.shop = s.shop)"
                         " FROM (SELECT DISTINCT shop FROM policy_stats) s ORDER BY s.shop",
    /* one friend's due sends together, the most urgent first: the release
     * decides each friend's cap in this order */
    [Q_PO_DUE] = "SELECT h.send, h.user, h.shop, h.release_ms, h.reason, p.instance, p.kind,"
                 " p.body, p.tag, p.origin, p.priority, p.over_cap, p.created_ms"
                 " FROM policy_held h INDEXED BY policy_held_due JOIN policy_sends p"
                 " ON p.id = h.send WHERE h.release_ms <= ?1"
                 " ORDER BY h.shop, h.user, p.priority DESC, h.send LIMIT ?2",
    [Q_PO_NEXT] = "SELECT min(release_ms) FROM policy_held",
    [Q_PO_UNHOLD] = "DELETE FROM policy_held WHERE send = ?1 AND user = ?2",
    [Q_PO_RESCHEDULE] = "UPDATE policy_held SET release_ms = ?3, reason = ?4"
                        " WHERE send = ?1 AND user = ?2",
    [Q_PO_SEND_GC] = "DELETE FROM policy_sends WHERE id = ?1"
                     " AND NOT EXISTS (SELECT 1 FROM policy_held WHERE send = ?1)",
    [Q_PO_DROP_ADD] = "INSERT INTO policy_drops(shop, user, at_ms, reason, tag, priority)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_PO_DROP_PRUNE] = "DELETE FROM policy_drops WHERE at_ms < ?1",
    [Q_PO_DROPS_OF] = "SELECT at_ms, reason, tag, priority FROM policy_drops WHERE shop = ?1"
                      " AND user = ?2 AND at_ms >= ?3 ORDER BY at_ms",
    /* The oldest events first, up to the first one not old enough in the
     * shop's id order (the scan costs what it deletes, plus the few that
     * dead letters and failures keep, not every event kept). */
    [Q_EV_PRUNE] = "DELETE FROM events WHERE id IN (SELECT id FROM events INDEXED BY events_shop"
                   " WHERE shop = ?1 AND id <= ?2 AND id < coalesce((SELECT id FROM events"
                   " INDEXED BY events_shop WHERE shop = ?1 AND time_ms >= ?3 ORDER BY id"
                   " LIMIT 1), ?2 + 1) AND id NOT IN (SELECT event_id FROM dead)"
                   " AND id NOT IN (SELECT event_id FROM failures) ORDER BY id LIMIT ?4)",
    /* Finished rows (sent, failed, parked) in id order, up to the first
     * that is pending or finished since before_ms. */
    [Q_OB_PRUNE] = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id < coalesce("
                   "(SELECT id FROM outbox WHERE state = 0 OR finished_ms >= ?1 ORDER BY id"
                   " LIMIT 1), 9223372036854775807) ORDER BY id LIMIT ?2)",
    [Q_PO_DUE_REASON] = "SELECT reason FROM policy_held INDEXED BY policy_held_by_user"
                        " WHERE shop = ?1 AND user = ?2 AND release_ms <= ?3"
                        " ORDER BY release_ms LIMIT 1",
    [Q_PO_TAG_COUNTS] = "SELECT tag, sum(held), sum(dropped) FROM ("
                        " SELECT p.tag AS tag, 1 AS held, 0 AS dropped FROM policy_held h"
                        " JOIN policy_sends p ON p.id = h.send WHERE h.shop = ?1"
                        " AND substr(p.tag, 1, length(?2)) = ?2"
                        " UNION ALL SELECT tag, 0, 1 FROM policy_drops WHERE shop = ?1"
                        " AND substr(tag, 1, length(?2)) = ?2) GROUP BY tag",
    [Q_PO_HELD_OF] = "SELECT h.send, h.release_ms, h.reason, p.tag, p.priority, p.over_cap,"
                     " p.created_ms FROM policy_held h JOIN policy_sends p ON p.id = h.send"
                     " WHERE h.shop = ?1 AND h.user = ?2 ORDER BY h.release_ms, h.send",
};

/* Slots of one event's strings in store.offs while a batch is being filled. */
enum { OFF_SHOP, OFF_UID, OFF_TOPIC, OFF_USER, OFF_PAYLOAD, OFF_COUNT };
#define OFF_NULL SIZE_MAX

/* Threads of one process that write the same database queue on this mutex
 * rather than on SQLite's busy handler, which sleeps (1 ms growing to
 * 100 ms) and so caps a contended daemon at a few thousand transactions a
 * second. The busy timeout still arbitrates between processes (the CLI). */
typedef struct writer_lock {
    char *path; /* realpath of the database file */
    pthread_mutex_t mutex;
    atomic_int waiting; /* threads blocked in writer_enter (store_writer_wanted) */
    int users;
    struct writer_lock *next;
    /* checkpoints (store_checkpointer); ckpt_mutex guards the ints */
    pthread_mutex_t ckpt_mutex;
    pthread_cond_t ckpt_cond;
    int ckpt_served;                            /* checkpointers running for this database */
    int ckpt_wanted;                            /* a commit left the WAL over CHECKPOINT_PAGES */
    atomic_ullong ckpt_background, ckpt_inline; /* store_checkpoint_stats */
} writer_lock;

static pthread_mutex_t writer_locks_guard = PTHREAD_MUTEX_INITIALIZER;
static writer_lock *writer_locks;

struct store {
    sqlite3 *db;
    writer_lock *wlock;
    int wlock_held;
    sqlite3_stmt *q[Q_COUNT];
    int savepoint; /* store_savepoint is open */
    /* Arena offsets of the batch being filled: pointers are only made once
     * the arena has stopped moving. Kept here to reuse the allocation. */
    size_t *offs;
    size_t offs_cap;  /* events */
    char *ob_strings; /* the strings of the last store_outbox_get */
    int ckpt_stop;    /* store_checkpointer_stop was called (wlock->ckpt_mutex) */
};

/* ---- errors ------------------------------------------------------------- */

static int map_code(int sqlrc)
{
    switch (sqlrc & 0xff) {
    case SQLITE_NOMEM:
        return KZ_ENOMEM;
    case SQLITE_TOOBIG:
        return KZ_ETOOBIG;
    case SQLITE_CONSTRAINT: /* NULL argument or unknown instance: retrying cannot help */
        return KZ_EINVAL;
    default:
        return KZ_EIO;
    }
}

/* Reports the connection's last SQLite error; call before resetting. */
static int fail(store *s, int sqlrc, const char *what, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "%s: %s", what, sqlite3_errmsg(s->db));
    return map_code(sqlrc);
}

static int no_memory(char *err, size_t errlen)
{
    errbuf_set(err, errlen, "out of memory");
    return KZ_ENOMEM;
}

/* ---- statement helpers -------------------------------------------------- */

static int prep(store *s, enum stmt_id id, sqlite3_stmt **out, char *err, size_t errlen)
{
    int rc = SQLITE_OK;
    if (s->q[id] == NULL)
        rc =
            sqlite3_prepare_v3(s->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s->q[id], NULL);
    *out = s->q[id]; /* NULL on failure; assigned on every path for the compiler */
    return rc == SQLITE_OK ? 0 : fail(s, rc, "prepare", err, errlen);
}

/* Steps st once. Returns 1 with a row (the caller reads it, then resets st),
 * 0 when done, or a KZ_E* error; st is reset unless a row is returned. */
static int step(store *s, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int kz = rc == SQLITE_DONE ? 0 : fail(s, rc, what, err, errlen);
    sqlite3_reset(st);
    return kz;
}

/* Runs a statement that returns no rows. */
static int run(store *s, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = step(s, st, what, err, errlen);
    if (rc == 1) {
        sqlite3_reset(st);
        return 0;
    }
    return rc;
}

/* Runs a statement that must change a row: KZ_ENOTFOUND when none matched. */
static int run_change(store *s, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = run(s, st, what, err, errlen);
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        return KZ_ENOTFOUND;
    return rc;
}

static void bind_str(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Values always go in as BLOBs, so equality in kv_cas is a byte comparison
 * (SQLite never finds TEXT equal to a BLOB). A NULL pointer would bind SQL
 * NULL, hence "" for empty values. */
static int bind_bytes(store *s, sqlite3_stmt *st, int i, const void *v, size_t n, char *err,
                      size_t errlen)
{
    int rc = sqlite3_bind_blob64(st, i, n ? v : "", n, SQLITE_STATIC);
    return rc == SQLITE_OK ? 0 : fail(s, rc, "bind value", err, errlen);
}

/* ---- open / close ------------------------------------------------------- */

static int mkdir_one(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0777) == 0 || errno == EEXIST || (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    errbuf_set(err, errlen, "cannot create directory '%s': %s", dir, strerror(errno));
    return KZ_EIO;
}

/* mkdir -p of the directory part of path. */
static int make_parent_dir(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (dir == NULL)
        return no_memory(err, errlen);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; *p != '\0' && rc == 0; p++) {
            if (*p != '/')
                continue;
            *p = '\0';
            rc = mkdir_one(dir, err, errlen);
            *p = '/';
        }
        if (rc == 0)
            rc = mkdir_one(dir, err, errlen);
    }
    free(dir);
    return rc;
}

static int exec(store *s, const char *sql, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(s, rc, what, err, errlen);
}

static int schema_version(store *s, int *v, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "read schema version", err, errlen);
    rc = step(s, st, "read schema version", err, errlen);
    if (rc == 1) {
        *v = sqlite3_column_int(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Applies migration step v if the database is still at v once the write
 * lock is held: another process may have migrated it meanwhile. */
static int migrate_step(store *s, int v, char *err, size_t errlen)
{
    int rc = exec(s, "BEGIN IMMEDIATE", "migrate", err, errlen);
    int now = v;
    if (rc == 0)
        rc = schema_version(s, &now, err, errlen);
    if (rc == 0 && now == v) {
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        rc = exec(s, migrations[v], "migrate", err, errlen);
        if (rc == 0)
            rc = exec(s, set, "migrate", err, errlen);
    }
    if (rc == 0)
        rc = exec(s, "COMMIT", "migrate", err, errlen);
    if (rc != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int migrate(store *s, char *err, size_t errlen)
{
    for (;;) {
        int v = 0;
        int rc = schema_version(s, &v, err, errlen);
        if (rc != 0)
            return rc;
        if (v > STORE_SCHEMA_VERSION) {
            errbuf_set(err, errlen,
                       "database schema is version %d, this kizuna understands up to %d; upgrade "
                       "kizuna",
                       v, STORE_SCHEMA_VERSION);
            return KZ_EINVAL;
        }
        if (v == STORE_SCHEMA_VERSION)
            return 0;
        if ((rc = migrate_step(s, v, err, errlen)) != 0)
            return rc;
    }
}

static writer_lock *writer_lock_get(const char *path)
{
    char real[PATH_MAX];
    if (realpath(path, real) == NULL)
        return NULL; /* no sharing: SQLite's own locking still applies */
    pthread_mutex_lock(&writer_locks_guard);
    writer_lock *w = writer_locks;
    while (w != NULL && strcmp(w->path, real) != 0)
        w = w->next;
    if (w == NULL && (w = calloc(1, sizeof *w)) != NULL) {
        w->path = strdup(real);
        if (w->path == NULL) {
            free(w);
            w = NULL;
        } else {
            pthread_mutex_init(&w->mutex, NULL);
            pthread_mutex_init(&w->ckpt_mutex, NULL);
            pthread_cond_init(&w->ckpt_cond, NULL);
            w->next = writer_locks;
            writer_locks = w;
        }
    }
    if (w != NULL)
        w->users++;
    pthread_mutex_unlock(&writer_locks_guard);
    return w;
}

static void writer_lock_put(writer_lock *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&writer_locks_guard);
    if (--w->users == 0) {
        writer_lock **link = &writer_locks;
        while (*link != w)
            link = &(*link)->next;
        *link = w->next;
        pthread_mutex_destroy(&w->mutex);
        pthread_mutex_destroy(&w->ckpt_mutex);
        pthread_cond_destroy(&w->ckpt_cond);
        free(w->path);
        free(w);
    }
    pthread_mutex_unlock(&writer_locks_guard);
}

static void writer_enter(store *s)
{
    if (s->wlock != NULL && !s->wlock_held) {
        atomic_fetch_add(&s->wlock->waiting, 1);
        pthread_mutex_lock(&s->wlock->mutex);
        atomic_fetch_sub(&s->wlock->waiting, 1);
        s->wlock_held = 1;
    }
}

int store_writer_wanted(const store *s)
{
    return s->wlock != NULL && atomic_load_explicit(&s->wlock->waiting, memory_order_relaxed) > 0;
}

/* Called whenever a transaction may have ended. */
static void writer_leave(store *s)
{
    if (s->wlock_held && sqlite3_get_autocommit(s->db)) {
        s->wlock_held = 0;
        pthread_mutex_unlock(&s->wlock->mutex);
    }
}

/* ---- checkpoints ---------------------------------------------------------
 *
 * SQLite's own rule checkpoints the WAL inside the commit that took it over
 * 1000 pages, while that thread still holds the process's writer mutex:
 * every writer of the daemon then waits while 1000 pages are copied into
 * the database and it is synced (bench/webhook: a commit taking 100 ms,
 * a webhook waiting 270 ms). With a checkpointer running, the commit only
 * signals it; the checkpointer copies without the mutex (PASSIVE: writers
 * go on appending) and takes the mutex only for the last few frames, so
 * that the next writer can start the WAL over instead of growing it. */

#define CHECKPOINT_PAGES 1000 /* SQLite's default wal_autocheckpoint */
#define CHECKPOINT_TAIL 64    /* frames left to copy under the writer mutex */
#define CHECKPOINT_ROUNDS 64  /* passes after one signal before waiting again */
/* A WAL this long means the checkpointer is not keeping up (or a reader
 * holds it back): the committing writer checkpoints as SQLite would, so the
 * WAL, and every read's walk through its index, stays bounded. */
#define CHECKPOINT_BEHIND (16 * CHECKPOINT_PAGES)

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    store *s = arg;
    if (pages < CHECKPOINT_PAGES)
        return SQLITE_OK;
    writer_lock *w = s->wlock;
    if (w != NULL && pages < CHECKPOINT_BEHIND) {
        pthread_mutex_lock(&w->ckpt_mutex);
        int served = w->ckpt_served;
        if (served) {
            w->ckpt_wanted = 1;
            pthread_cond_signal(&w->ckpt_cond);
        }
        pthread_mutex_unlock(&w->ckpt_mutex);
        if (served)
            return SQLITE_OK;
    }
    if (w != NULL)
        atomic_fetch_add(&w->ckpt_inline, 1);
    /* SQLite's default: a CLI or a daemon without a checkpointer */
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

/* One PASSIVE pass; 0 with the WAL's frames and those copied, or -1. */
static int checkpoint_pass(store *s, int *log, int *done)
{
    *log = *done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->db, "main", SQLITE_CHECKPOINT_PASSIVE, log, done);
    return rc == SQLITE_OK ? 0 : -1;
}

/* Copies the WAL into the database until it is caught up, the last frames
 * under the writer mutex: a commit already under way when a pass ends
 * appends after it, and only a writer that begins with every frame copied
 * starts the WAL over. Stops early when a pass makes no progress (a reader
 * still needs the frames) or after CHECKPOINT_ROUNDS passes. */
static void checkpoint_catch_up(store *s)
{
    int last = -1;
    for (int round = 0; round < CHECKPOINT_ROUNDS; round++) {
        int log, done;
        if (checkpoint_pass(s, &log, &done) != 0 || log <= 0 || done == last)
            return;
        if (log - done <= CHECKPOINT_TAIL) {
            writer_enter(s);
            checkpoint_pass(s, &log, &done);
            writer_leave(s); /* no transaction is open: always releases */
            return;
        }
        last = done;
    }
}

void store_checkpointer(store *s, void (*after)(void *arg), void *arg)
{
    writer_lock *w = s->wlock;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->ckpt_mutex);
    w->ckpt_served++;
    for (;;) {
        while (!w->ckpt_wanted && !s->ckpt_stop)
            pthread_cond_wait(&w->ckpt_cond, &w->ckpt_mutex);
        if (s->ckpt_stop)
            break;
        w->ckpt_wanted = 0;
        pthread_mutex_unlock(&w->ckpt_mutex);
        checkpoint_catch_up(s);
        atomic_fetch_add(&w->ckpt_background, 1);
        if (after != NULL)
            after(arg);
        pthread_mutex_lock(&w->ckpt_mutex);
    }
    w->ckpt_served--;
    pthread_mutex_unlock(&w->ckpt_mutex);
}

void store_checkpointer_stop(store *s)
{
    writer_lock *w = s->wlock;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->ckpt_mutex);
    s->ckpt_stop = 1;
    pthread_cond_broadcast(&w->ckpt_cond);
    pthread_mutex_unlock(&w->ckpt_mutex);
}

void store_checkpoint_stats(store *s, store_checkpoints *out)
{
    memset(out, 0, sizeof *out);
    writer_lock *w = s->wlock;
    if (w == NULL)
        return;
    out->background = atomic_load(&w->ckpt_background);
    out->in_commit = atomic_load(&w->ckpt_inline);
    pthread_mutex_lock(&w->ckpt_mutex);
    out->checkpointers = w->ckpt_served;
    pthread_mutex_unlock(&w->ckpt_mutex);
}

/* WAL lets readers (the CLI) run beside the writer; the busy timeout makes
 * writers queue instead of failing. It is set first so the other pragmas
 * wait too. Bigger pages (new databases only) and memory-mapped reads cut
 * the system calls per commit, which dominate on virtual machines; with
 * temp_store = MEMORY a savepoint's statement journal stays in memory
 * instead of spilling to a temp file on every handler or webhook. */
static int configure(store *s, int sync_mode, char *err, size_t errlen)
{
    char sql[512];
    int n =
        snprintf(sql, sizeof sql,
                 "PRAGMA busy_timeout = %d; PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;"
                 " PRAGMA temp_store = MEMORY;"
                 " PRAGMA synchronous = %s;"
                 " PRAGMA foreign_keys = ON; PRAGMA mmap_size = 1073741824;"
                 " PRAGMA cache_size = -32768",
                 BUSY_TIMEOUT_MS, sync_mode == STORE_SYNC_NORMAL ? "NORMAL" : "FULL");
    if (n < 0 || (size_t)n >= sizeof sql) /* a cut pragma list would fail silently */
        return KZ_EINVAL;
    return exec(s, sql, "configure database", err, errlen);
}

/* SQLite counts every allocation under a global mutex for
 * sqlite3_memory_used(), which kizuna never asks: off, the store's
 * statements run a few percent faster (bench/step: enroll +8 %). Only
 * possible before SQLite's first use in the process; a later call
 * changes nothing. */
static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

void store_sqlite_setup(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, configure_sqlite);
}

static int open_db(store *s, const char *path, char *err, size_t errlen)
{
    store_sqlite_setup();
    /* NOMUTEX: a connection is used by one thread at a time (store.h) */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc == SQLITE_NOMEM || s->db == NULL)
        return no_memory(err, errlen);
    if (rc != SQLITE_OK) {
        errbuf_set(err, errlen, "cannot open database '%s': %s", path, sqlite3_errmsg(s->db));
        return KZ_EIO;
    }
    sqlite3_extended_result_codes(s->db, 1);
    return 0;
}

int store_open(const char *url, int sync_mode, store **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t n = strlen(URL_SCHEME);
    if (url == NULL || strncmp(url, URL_SCHEME, n) != 0 || url[n] == '\0') {
        errbuf_set(err, errlen, "unsupported store URL '%s': expected sqlite:PATH",
                   url ? url : "(null)");
        return KZ_EINVAL;
    }
    const char *path = url + n;
    int rc = make_parent_dir(path, err, errlen);
    if (rc != 0)
        return rc;
    store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return no_memory(err, errlen);
    rc = open_db(s, path, err, errlen);
    if (rc == 0)
        s->wlock = writer_lock_get(path);
    if (rc == 0)
        rc = configure(s, sync_mode, err, errlen);
    if (rc == 0)
        sqlite3_wal_hook(s->db, on_wal_commit, s);
    if (rc == 0)
        rc = migrate(s, err, errlen);
    if (rc != 0) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db); /* rolls back an open transaction */
    if (s->wlock_held)
        pthread_mutex_unlock(&s->wlock->mutex);
    writer_lock_put(s->wlock);
    free(s->offs);
    free(s->ob_strings);
    free(s);
}

/* ---- transactions ------------------------------------------------------- */

int store_in_transaction(const store *s)
{
    return !sqlite3_get_autocommit(s->db);
}

static int run_id(store *s, enum stmt_id id, const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, id, &st, err, errlen);
    return rc != 0 ? rc : run(s, st, what, err, errlen);
}

static int state_err(const char *msg, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "%s", msg);
    return KZ_ESTATE;
}

int store_begin(store *s, char *err, size_t errlen)
{
    if (store_in_transaction(s))
        return state_err("begin: a transaction is already open", err, errlen);
    s->savepoint = 0;
    writer_enter(s);
    int rc = run_id(s, Q_BEGIN, "begin", err, errlen);
    writer_leave(s);
    return rc;
}

int store_commit(store *s, char *err, size_t errlen)
{
    if (!store_in_transaction(s))
        return state_err("commit: no transaction is open", err, errlen);
    int rc = run_id(s, Q_COMMIT, "commit", err, errlen);
    if (rc == 0)
        s->savepoint = 0;
    writer_leave(s);
    return rc;
}

void store_rollback(store *s)
{
    s->savepoint = 0;
    if (store_in_transaction(s))
        run_id(s, Q_ROLLBACK, "rollback", NULL, 0);
    writer_leave(s);
}

/* SQLite ends the whole transaction on some errors (disk full, I/O), which
 * also drops the savepoint: trust the connection, not only our flag. */
static int savepoint_open(store *s)
{
    if (!store_in_transaction(s))
        s->savepoint = 0;
    return s->savepoint;
}

int store_savepoint(store *s, char *err, size_t errlen)
{
    if (!store_in_transaction(s))
        return state_err("savepoint: no transaction is open", err, errlen);
    if (savepoint_open(s))
        return state_err("savepoint: a savepoint is already open", err, errlen);
    int rc = run_id(s, Q_SAVEPOINT, "savepoint", err, errlen);
    if (rc == 0)
        s->savepoint = 1;
    return rc;
}

int store_release(store *s, char *err, size_t errlen)
{
    if (!savepoint_open(s))
        return state_err("release: no savepoint is open", err, errlen);
    s->savepoint = 0;
    return run_id(s, Q_RELEASE, "release savepoint", err, errlen);
}

int store_rollback_savepoint(store *s, char *err, size_t errlen)
{
    if (!savepoint_open(s))
        return state_err("rollback savepoint: no savepoint is open", err, errlen);
    s->savepoint = 0;
    int rc = run_id(s, Q_ROLLBACK_TO, "rollback savepoint", err, errlen);
    if (rc == 0)
        rc = run_id(s, Q_RELEASE, "rollback savepoint", err, errlen);
    return rc;
}

/* Read-modify-write helpers run inside the caller's transaction, or in one of
 * their own (IMMEDIATE, so the read already holds the write lock). */
static int own_begin(store *s, int *owned, char *err, size_t errlen)
{
    *owned = !store_in_transaction(s);
    if (!*owned)
        return 0;
    writer_enter(s);
    int rc = run_id(s, Q_BEGIN, "begin", err, errlen);
    writer_leave(s);
    return rc;
}

static int own_end(store *s, int owned, int rc, char *err, size_t errlen)
{
    if (!owned)
        return rc;
    if (rc == 0)
        rc = run_id(s, Q_COMMIT, "commit", err, errlen);
    if (rc != 0)
        store_rollback(s);
    writer_leave(s);
    return rc;
}

/* ---- events ------------------------------------------------------------- */

void store_batch_free(store_batch *b)
{
    free(b->ev);
    free(b->arena);
    memset(b, 0, sizeof *b);
}

int store_event_append(store *s, const char *shop, const char *uid, const char *topic,
                       const char *user, int64_t time_ms, const char *payload, size_t len,
                       int64_t *id_out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_EV_APPEND, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, uid);
    bind_str(st, 3, topic);
    bind_str(st, 4, user);
    sqlite3_bind_int64(st, 5, time_ms);
    int b = sqlite3_bind_text64(st, 6, len ? payload : "", len, SQLITE_STATIC, SQLITE_UTF8);
    if (b != SQLITE_OK)
        rc = fail(s, b, "append event", err, errlen);
    else
        rc = run(s, st, "append event", err, errlen);
    if (rc == 0 && id_out != NULL)
        *id_out = sqlite3_changes(s->db) ? sqlite3_last_insert_rowid(s->db) : 0;
    return rc;
}

/* Capacity for `need` items, doubling from the current one (or `min`). */
static size_t next_cap(size_t cap, size_t need, size_t min)
{
    size_t n = cap ? cap : min;
    while (n < need)
        n *= 2;
    return n;
}

/* Copies column col of the current row into the arena, NUL-terminated, and
 * records its offset (OFF_NULL for SQL NULL). */
static int arena_put(store_batch *b, sqlite3_stmt *st, int col, size_t *off)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        *off = OFF_NULL;
        return 0;
    }
    const unsigned char *v = sqlite3_column_text(st, col);
    if (v == NULL)
        return KZ_ENOMEM;
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (b->arena_len + n + 1 > b->arena_cap) {
        size_t cap = next_cap(b->arena_cap, b->arena_len + n + 1, 4096);
        char *a = realloc(b->arena, cap);
        if (a == NULL)
            return KZ_ENOMEM;
        b->arena = a;
        b->arena_cap = cap;
    }
    memcpy(b->arena + b->arena_len, v, n);
    b->arena[b->arena_len + n] = '\0';
    *off = b->arena_len;
    b->arena_len += n + 1;
    return 0;
}

/* Makes room for one more event in b->ev and in its offsets. */
static int batch_reserve(store *s, store_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = next_cap(b->cap, b->n + 1, 16);
        store_event *ev = realloc(b->ev, cap * sizeof *ev);
        if (ev == NULL)
            return KZ_ENOMEM;
        b->ev = ev;
        b->cap = cap;
    }
    if (b->n == s->offs_cap) {
        size_t cap = next_cap(s->offs_cap, b->n + 1, 16);
        size_t *offs = realloc(s->offs, cap * OFF_COUNT * sizeof *offs);
        if (offs == NULL)
            return KZ_ENOMEM;
        s->offs = offs;
        s->offs_cap = cap;
    }
    return 0;
}

/* Adds the current row (EV_COLUMNS) as event b->n. */
static int batch_add_row(store *s, store_batch *b, sqlite3_stmt *st)
{
    if (batch_reserve(s, b) != 0)
        return KZ_ENOMEM;
    store_event *e = &b->ev[b->n];
    size_t *off = &s->offs[b->n * OFF_COUNT];
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(st, 0);
    e->time_ms = sqlite3_column_int64(st, 5);
    static const int cols[OFF_COUNT] = {1, 2, 3, 4, 6};
    for (int k = 0; k < OFF_COUNT; k++)
        if (arena_put(b, st, cols[k], &off[k]) != 0)
            return KZ_ENOMEM;
    e->payload_len = (size_t)sqlite3_column_bytes(st, 6);
    b->n++;
    return 0;
}

static const char *arena_ptr(const store_batch *b, size_t off)
{
    return off == OFF_NULL ? NULL : b->arena + off;
}

/* Turns the recorded offsets into pointers, now that the arena is final. */
static void batch_link(store *s, store_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const size_t *off = &s->offs[i * OFF_COUNT];
        store_event *e = &b->ev[i];
        e->shop = arena_ptr(b, off[OFF_SHOP]);
        e->uid = arena_ptr(b, off[OFF_UID]);
        e->topic = arena_ptr(b, off[OFF_TOPIC]);
        e->user = arena_ptr(b, off[OFF_USER]);
        e->payload = arena_ptr(b, off[OFF_PAYLOAD]);
    }
}

/* Replaces the content of b with every row st yields; resets st. */
static int fetch_events(store *s, sqlite3_stmt *st, store_batch *b, const char *what, char *err,
                        size_t errlen)
{
    b->n = 0;
    b->arena_len = 0;
    int rc;
    while ((rc = step(s, st, what, err, errlen)) == 1) {
        if (batch_add_row(s, b, st) != 0) {
            sqlite3_reset(st);
            b->n = 0;
            return no_memory(err, errlen);
        }
    }
    if (rc != 0) {
        b->n = 0;
        return rc;
    }
    batch_link(s, b);
    return 0;
}

int store_events_after(store *s, const char *shop, int64_t after_id, int limit, store_batch *b,
                       char *err, size_t errlen)
{
    if (limit < 1) { /* SQLite reads a negative LIMIT as "no limit" */
        errbuf_set(err, errlen, "read events: limit must be at least 1, not %d", limit);
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_EV_AFTER, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int(st, 3, limit);
    return fetch_events(s, st, b, "read events", err, errlen);
}

int store_event_get(store *s, int64_t id, store_batch *b, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_EV_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = fetch_events(s, st, b, "read event", err, errlen);
    return rc == 0 && b->n == 0 ? KZ_ENOTFOUND : rc;
}

/* Runs a query and reads column 0 of its first row as an integer;
 * KZ_ENOTFOUND when it yields no row. */
static int query_int(store *s, sqlite3_stmt *st, const char *what, int64_t *out, char *err,
                     size_t errlen)
{
    int rc = step(s, st, what, err, errlen);
    if (rc != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_event_max_id(store *s, const char *shop, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_EV_MAX, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    rc = query_int(s, st, "read last event id", out, err, errlen);
    if (rc == KZ_ENOTFOUND) {
        *out = 0;
        rc = 0;
    }
    return rc;
}

/* ---- instances and cursors --------------------------------------------- */

int store_instance_find(store *s, const char *shop, const char *plugin, int64_t *id,
                        int64_t *cursor, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_INST_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, plugin);
    rc = step(s, st, "find instance", err, errlen);
    if (rc != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    *id = sqlite3_column_int64(st, 0);
    *cursor = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int store_instance_open(store *s, const char *shop, const char *plugin, int64_t *id,
                        int64_t *cursor, char *err, size_t errlen)
{
    int rc = store_instance_find(s, shop, plugin, id, cursor, err, errlen);
    if (rc != KZ_ENOTFOUND)
        return rc;
    /* one statement reads the shop's last id and inserts, under the write
     * lock; a concurrent creator makes it a no-op and the find below wins */
    sqlite3_stmt *st;
    if ((rc = prep(s, Q_INST_ADD, &st, err, errlen)) != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, plugin);
    if ((rc = run(s, st, "create instance", err, errlen)) != 0)
        return rc;
    rc = store_instance_find(s, shop, plugin, id, cursor, err, errlen);
    if (rc == KZ_ENOTFOUND)
        errbuf_set(err, errlen, "create instance: row vanished");
    return rc == KZ_ENOTFOUND ? KZ_EIO : rc;
}

static int not_found(const char *what, int64_t id, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "%s %lld not found", what, (long long)id);
    return KZ_ENOTFOUND;
}

int store_cursor_get(store *s, int64_t instance, int64_t *cursor, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_CUR_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    rc = query_int(s, st, "read cursor", cursor, err, errlen);
    return rc == KZ_ENOTFOUND ? not_found("instance", instance, err, errlen) : rc;
}

int store_cursor_set(store *s, int64_t instance, int64_t cursor, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_CUR_SET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    sqlite3_bind_int64(st, 2, cursor);
    rc = run_change(s, st, "write cursor", err, errlen);
    return rc == KZ_ENOTFOUND ? not_found("instance", instance, err, errlen) : rc;
}

/* ---- failures ----------------------------------------------------------- */

static void copy_text(char *dst, size_t dstlen, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, dstlen, "%s", v ? (const char *)v : "");
}

int store_failure_get(store *s, int64_t instance, store_failure *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_FAIL_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    rc = step(s, st, "read failure", err, errlen);
    if (rc != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    out->event_id = sqlite3_column_int64(st, 0);
    out->attempts = sqlite3_column_int(st, 1);
    out->retry_at = sqlite3_column_int64(st, 2);
    copy_text(out->error, sizeof out->error, st, 3);
    sqlite3_reset(st);
    return 0;
}

int store_failure_set(store *s, int64_t instance, const store_failure *f, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_FAIL_SET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    sqlite3_bind_int64(st, 2, f->event_id);
    sqlite3_bind_int(st, 3, f->attempts);
    sqlite3_bind_int64(st, 4, f->retry_at);
    /* error[] may lack its NUL when the caller filled it to the brim */
    sqlite3_bind_text(st, 5, f->error, (int)strnlen(f->error, sizeof f->error), SQLITE_STATIC);
    return run(s, st, "write failure", err, errlen);
}

int store_failure_clear(store *s, int64_t instance, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_FAIL_CLEAR, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    return run(s, st, "clear failure", err, errlen);
}

/* ---- dead letters ------------------------------------------------------- */

int store_dead_add(store *s, int64_t instance, int64_t event_id, int attempts, const char *error,
                   int64_t time_ms, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_DEAD_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    sqlite3_bind_int64(st, 2, event_id);
    sqlite3_bind_int(st, 3, attempts);
    bind_str(st, 4, error);
    sqlite3_bind_int64(st, 5, time_ms);
    return run(s, st, "add dead letter", err, errlen);
}

static const char *col_str(sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    return v ? (const char *)v : "";
}

static void dead_from_row(sqlite3_stmt *st, store_dead *d)
{
    d->id = sqlite3_column_int64(st, 0);
    d->instance = sqlite3_column_int64(st, 1);
    d->event_id = sqlite3_column_int64(st, 2);
    d->shop = col_str(st, 3);
    d->plugin = col_str(st, 4);
    d->topic = col_str(st, 5);
    d->uid = col_str(st, 6);
    d->error = col_str(st, 7);
    d->attempts = sqlite3_column_int(st, 8);
    d->time_ms = sqlite3_column_int64(st, 9);
    d->replay = sqlite3_column_int(st, 10);
}

/* The walk steps the cached statement while cb runs: cb may call other store
 * functions on this connection, but not store_dead_list itself. */
int store_dead_list(store *s, store_dead_cb cb, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_DEAD_LIST, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "list dead letters", err, errlen)) == 1) {
        store_dead d;
        dead_from_row(st, &d);
        int stop = cb(arg, &d);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

static int dead_change(store *s, enum stmt_id id, int64_t dead, const char *text, const char *what,
                       char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, id, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, dead);
    if (sqlite3_bind_parameter_count(st) >= 2)
        bind_str(st, 2, text);
    return run_change(s, st, what, err, errlen);
}

int store_dead_replay(store *s, int64_t id, char *err, size_t errlen)
{
    /* a documented answer (a mistyped id on the CLI): no error text */
    return dead_change(s, Q_DEAD_REPLAY, id, NULL, "queue replay", err, errlen);
}

int store_dead_next_replay(store *s, int64_t instance, int64_t *dead_id, int64_t *event_id,
                           char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_DEAD_NEXT, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    rc = step(s, st, "next replay", err, errlen);
    if (rc != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    *dead_id = sqlite3_column_int64(st, 0);
    *event_id = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int store_dead_remove(store *s, int64_t id, char *err, size_t errlen)
{
    int rc = dead_change(s, Q_DEAD_REMOVE, id, NULL, "remove dead letter", err, errlen);
    return rc == KZ_ENOTFOUND ? not_found("dead letter", id, err, errlen) : rc;
}

int store_dead_replay_failed(store *s, int64_t id, const char *error, char *err, size_t errlen)
{
    int rc = dead_change(s, Q_DEAD_FAILED, id, error, "record failed replay", err, errlen);
    return rc == KZ_ENOTFOUND ? not_found("dead letter", id, err, errlen) : rc;
}

/* ---- per-instance key/value -------------------------------------------- */

static int kv_stmt(store *s, enum stmt_id id, int64_t instance, const char *key, sqlite3_stmt **st,
                   char *err, size_t errlen)
{
    int rc = prep(s, id, st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(*st, 1, instance);
    bind_str(*st, 2, key);
    return 0;
}

int store_kv_get(store *s, int64_t instance, const char *key, void **val, size_t *len, char *err,
                 size_t errlen)
{
    sqlite3_stmt *st;
    int rc = kv_stmt(s, Q_KV_GET, instance, key, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read value", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    const void *v = sqlite3_column_blob(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    char *copy = malloc(n + 1);
    if (copy != NULL) {
        if (n > 0)
            memcpy(copy, v, n);
        copy[n] = '\0';
    }
    sqlite3_reset(st);
    if (copy == NULL || (n > 0 && v == NULL)) {
        free(copy);
        return no_memory(err, errlen);
    }
    *val = copy;
    if (len != NULL)
        *len = n;
    return 0;
}

int store_kv_put(store *s, int64_t instance, const char *key, const void *val, size_t len,
                 char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = kv_stmt(s, Q_KV_PUT, instance, key, &st, err, errlen);
    if (rc == 0)
        rc = bind_bytes(s, st, 3, val, len, err, errlen);
    return rc != 0 ? rc : run(s, st, "write value", err, errlen);
}

int store_kv_del(store *s, int64_t instance, const char *key, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = kv_stmt(s, Q_KV_DEL, instance, key, &st, err, errlen);
    return rc != 0 ? rc : run_change(s, st, "delete value", err, errlen);
}

/* Both cases are one conditional statement, so the compare and the write
 * are atomic without a transaction of our own. */
int store_kv_cas(store *s, int64_t instance, const char *key, const void *expect, size_t expect_len,
                 const void *val, size_t len, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = kv_stmt(s, expect ? Q_KV_SWAP : Q_KV_ADD, instance, key, &st, err, errlen);
    if (rc == 0)
        rc = bind_bytes(s, st, 3, val, len, err, errlen);
    if (rc == 0 && expect != NULL)
        rc = bind_bytes(s, st, 4, expect, expect_len, err, errlen);
    if (rc == 0)
        rc = run_change(s, st, "compare and set value", err, errlen);
    return rc == KZ_ENOTFOUND ? KZ_ECONFLICT : rc;
}

/* Strict decimal: optional '-', digits only, fits in int64_t. */
static int parse_decimal(const char *v, size_t n, int64_t *out)
{
    if (n == 0 || n > 20)
        return 0;
    size_t i = v[0] == '-' ? 1 : 0;
    if (i == n)
        return 0;
    for (size_t k = i; k < n; k++)
        if (v[k] < '0' || v[k] > '9')
            return 0;
    errno = 0;
    long long x = strtoll(v, NULL, 10); /* v is NUL-terminated by kv_get */
    if (errno == ERANGE)
        return 0;
    *out = x;
    return 1;
}

static int kv_add_delta(store *s, int64_t instance, const char *key, int64_t delta, int64_t *result,
                        char *err, size_t errlen)
{
    void *old = NULL;
    size_t n = 0;
    int64_t cur = 0;
    int rc = store_kv_get(s, instance, key, &old, &n, err, errlen);
    if (rc == 0 && !parse_decimal(old, n, &cur)) {
        errbuf_set(err, errlen, "value of '%s' is not a decimal integer", key);
        rc = KZ_ETYPE;
    }
    free(old);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return rc;
    if ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta)) {
        errbuf_set(err, errlen, "counter '%s' would overflow", key);
        return KZ_EINVAL;
    }
    char text[24];
    int len = snprintf(text, sizeof text, "%lld", (long long)(cur + delta));
    rc = store_kv_put(s, instance, key, text, (size_t)len, err, errlen);
    if (rc == 0 && result != NULL)
        *result = cur + delta;
    return rc;
}

int store_kv_incr(store *s, int64_t instance, const char *key, int64_t delta, int64_t *result,
                  char *err, size_t errlen)
{
    int owned;
    int rc = own_begin(s, &owned, err, errlen);
    if (rc == 0)
        rc = kv_add_delta(s, instance, key, delta, result, err, errlen);
    return own_end(s, owned, rc, err, errlen);
}

int store_kv_prefix(store *s, int64_t instance, const char *prefix, store_kv_cb cb, void *arg,
                    char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_KV_PREFIX, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    bind_str(st, 2, prefix);
    while ((rc = step(s, st, "read values", err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0), sqlite3_column_blob(st, 1),
                      (size_t)sqlite3_column_bytes(st, 1));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

/* ---- meta --------------------------------------------------------------- */

int store_meta_get(store *s, const char *key, char *out, size_t outlen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_META_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, key);
    rc = step(s, st, "read meta", err, errlen);
    if (rc != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    if (outlen > 0)
        copy_text(out, outlen, st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_meta_put(store *s, const char *key, const char *val, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_META_PUT, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, key);
    bind_str(st, 2, val);
    return run(s, st, "write meta", err, errlen);
}

/* ---- sandbox ------------------------------------------------------------ */

static void sbx_user_from_row(sqlite3_stmt *st, store_sbx_user *u)
{
    copy_text(u->user, sizeof u->user, st, 0);
    copy_text(u->display_name, sizeof u->display_name, st, 1);
    u->following = sqlite3_column_int(st, 2);
    u->blocked = sqlite3_column_int(st, 3);
    u->since_ms = sqlite3_column_int64(st, 4);
}

/* Statement id with (shop, second) bound as ?1, ?2. */
static int pair_stmt(store *s, enum stmt_id id, const char *shop, const char *second,
                     sqlite3_stmt **st, char *err, size_t errlen)
{
    int rc = prep(s, id, st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(*st, 1, shop);
    if (second != NULL)
        bind_str(*st, 2, second);
    return 0;
}

int store_sbx_user_get(store *s, const char *shop, const char *user, store_sbx_user *out, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_USER_GET, shop, user, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read sandbox user", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    sbx_user_from_row(st, out);
    sqlite3_reset(st);
    return 0;
}

int store_sbx_user_put(store *s, const char *shop, const store_sbx_user *u, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_USER_PUT, shop, u->user, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, u->display_name);
    sqlite3_bind_int(st, 4, u->following != 0);
    sqlite3_bind_int(st, 5, u->blocked != 0);
    sqlite3_bind_int64(st, 6, u->since_ms);
    return run(s, st, "write sandbox user", err, errlen);
}

int store_sbx_users(store *s, const char *shop, int following_only, store_sbx_user_cb cb, void *arg,
                    char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, following_only ? Q_SBX_USERS_FOLLOWING : Q_SBX_USERS, shop, NULL, &st,
                       err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "list sandbox users", err, errlen)) == 1) {
        store_sbx_user u;
        sbx_user_from_row(st, &u);
        int stop = cb(arg, &u);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_sbx_inbox_add(store *s, const char *shop, const char *user, int64_t time_ms,
                        const char *endpoint, const char *request_id, const char *message,
                        char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_INBOX_ADD, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, time_ms);
    bind_str(st, 4, endpoint);
    bind_str(st, 5, request_id);
    bind_str(st, 6, message);
    return run(s, st, "record delivered message", err, errlen);
}

int store_sbx_inbox(store *s, const char *shop, const char *user, store_sbx_msg_cb cb, void *arg,
                    char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_INBOX, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "read inbox", err, errlen)) == 1) {
        store_sbx_msg m = {.id = sqlite3_column_int64(st, 0),
                           .shop = col_str(st, 1),
                           .user = col_str(st, 2),
                           .time_ms = sqlite3_column_int64(st, 3),
                           .endpoint = col_str(st, 4),
                           .request_id = col_str(st, 5),
                           .message = col_str(st, 6)};
        int stop = cb(arg, &m);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_sbx_inbox_count(store *s, const char *shop, const char *request_id, int64_t *messages,
                          int64_t *users, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_INBOX_COUNT, shop, request_id, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "count delivered messages", err, errlen)) != 1)
        return rc == 0 ? KZ_EIO : rc;
    *messages = sqlite3_column_int64(st, 0);
    *users = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int store_sbx_retry_get(store *s, const char *shop, const char *key, int64_t now_ms,
                        char *request_id, size_t idlen, char **response, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RETRY_GET, shop, key, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, now_ms - STORE_SBX_RETRY_KEEP_MS);
    if ((rc = step(s, st, "read retry key", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    if (idlen > 0)
        copy_text(request_id, idlen, st, 0);
    if (response != NULL && (*response = strdup(col_str(st, 1))) == NULL) {
        sqlite3_reset(st);
        return no_memory(err, errlen);
    }
    sqlite3_reset(st);
    return 0;
}

int store_sbx_retry_put(store *s, const char *shop, const char *key, const char *request_id,
                        int64_t time_ms, const char *response, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RETRY_PURGE, shop, NULL, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 2, time_ms - STORE_SBX_RETRY_KEEP_MS);
    if ((rc = run(s, st, "forget old retry keys", err, errlen)) != 0)
        return rc;
    if ((rc = pair_stmt(s, Q_SBX_RETRY_PUT, shop, key, &st, err, errlen)) != 0)
        return rc;
    bind_str(st, 3, request_id);
    sqlite3_bind_int64(st, 4, time_ms);
    bind_str(st, 5, response ? response : "");
    return run(s, st, "record retry key", err, errlen);
}

int store_sbx_token_add(store *s, const char *shop, const char *token, const char *user,
                        int64_t issued_ms, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_TOKEN_ADD, shop, token, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, user);
    sqlite3_bind_int64(st, 4, issued_ms);
    return run(s, st, "record reply token", err, errlen);
}

int store_sbx_token_use(store *s, const char *shop, const char *token, int64_t not_before_ms,
                        char *user, size_t userlen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_TOKEN_USE, shop, token, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, not_before_ms);
    if ((rc = step(s, st, "use reply token", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    if (userlen > 0)
        copy_text(user, userlen, st, 0);
    /* RETURNING: the update is finished by stepping to the end */
    rc = step(s, st, "use reply token", err, errlen);
    if (rc == 1) {
        sqlite3_reset(st);
        rc = 0;
    }
    return rc;
}

int store_sbx_rate_hit(store *s, const char *shop, const char *endpoint, int64_t window_start,
                       int64_t limit, int *allowed, char *err, size_t errlen)
{
    *allowed = 0;
    if (limit < 1)
        return 0;
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RATE_HIT, shop, endpoint, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, window_start);
    sqlite3_bind_int64(st, 4, limit);
    rc = run(s, st, "count request", err, errlen);
    if (rc == 0)
        *allowed = sqlite3_changes(s->db) > 0;
    return rc;
}

int store_sbx_usage_get(store *s, const char *shop, const char *month, int64_t *count, char *err,
                        size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_USAGE_GET, shop, month, &st, err, errlen);
    if (rc != 0)
        return rc;
    rc = query_int(s, st, "read usage", count, err, errlen);
    if (rc == KZ_ENOTFOUND) {
        *count = 0;
        rc = 0;
    }
    return rc;
}

int store_sbx_usage_add(store *s, const char *shop, const char *month, int64_t delta, char *err,
                        size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_USAGE_ADD, shop, month, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, delta);
    return run(s, st, "count usage", err, errlen);
}

/* ---- sandbox: rich menus -------------------------------------------------- */

int store_sbx_rm_add(store *s, const char *shop, const char *id, const char *body, char *err,
                     size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RM_ADD, shop, id, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, body);
    return run(s, st, "add rich menu", err, errlen);
}

int store_sbx_rm_get(store *s, const char *shop, const char *id, char **body, int *has_image,
                     char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RM_GET, shop, id, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read rich menu", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    if (has_image != NULL)
        *has_image = sqlite3_column_int(st, 1);
    if (body != NULL && (*body = strdup(col_str(st, 0))) == NULL) {
        sqlite3_reset(st);
        return no_memory(err, errlen);
    }
    sqlite3_reset(st);
    return 0;
}

/* Walks the (text, text) rows of a shop's statement. */
static int sbx_pairs(store *s, enum stmt_id id, const char *shop, store_sbx_rm_cb cb, void *arg,
                     const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, id, shop, NULL, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, what, err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0), col_str(st, 1));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_sbx_rm_list(store *s, const char *shop, store_sbx_rm_cb cb, void *arg, char *err,
                      size_t errlen)
{
    return sbx_pairs(s, Q_SBX_RM_LIST, shop, cb, arg, "list rich menus", err, errlen);
}

int store_sbx_rm_delete(store *s, const char *shop, const char *id, char *err, size_t errlen)
{
    static const enum stmt_id steps[] = {Q_SBX_RM_DEL_LINKS, Q_SBX_RM_DEL_ALIASES, Q_SBX_RM_DEL};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof steps / sizeof steps[0]; i++) {
        sqlite3_stmt *st;
        rc = pair_stmt(s, steps[i], shop, id, &st, err, errlen);
        if (rc == 0)
            rc = steps[i] == Q_SBX_RM_DEL ? run_change(s, st, "delete rich menu", err, errlen)
                                          : run(s, st, "delete rich menu", err, errlen);
    }
    return rc;
}

int store_sbx_rm_image_put(store *s, const char *shop, const char *id, const char *content_type,
                           const void *data, size_t n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RM_IMAGE_PUT, shop, id, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, content_type);
    if ((rc = bind_bytes(s, st, 4, data, n, err, errlen)) != 0) {
        sqlite3_reset(st);
        return rc;
    }
    rc = run_change(s, st, "store rich menu image", err, errlen);
    if (rc != KZ_ENOTFOUND)
        return rc;
    /* nothing changed: no such menu, or it has its image already */
    rc = store_sbx_rm_get(s, shop, id, NULL, NULL, err, errlen);
    return rc == 0 ? KZ_EEXIST : rc;
}

int store_sbx_rm_image_get(store *s, const char *shop, const char *id, char *type, size_t typelen,
                           void **data, size_t *n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RM_IMAGE_GET, shop, id, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read rich menu image", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    copy_text(type, typelen, st, 0);
    *n = (size_t)sqlite3_column_bytes(st, 1);
    *data = malloc(*n ? *n : 1);
    if (*data == NULL) {
        sqlite3_reset(st);
        return no_memory(err, errlen);
    }
    if (*n > 0)
        memcpy(*data, sqlite3_column_blob(st, 1), *n);
    sqlite3_reset(st);
    return 0;
}

int store_sbx_rm_link_put(store *s, const char *shop, const char *user, const char *id, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, id != NULL ? Q_SBX_RM_LINK_PUT : Q_SBX_RM_LINK_DEL, shop, user, &st, err,
                       errlen);
    if (rc != 0)
        return rc;
    if (id != NULL)
        bind_str(st, 3, id);
    return run(s, st, "link rich menu", err, errlen);
}

/* One text column of a (shop, key) lookup into out[outlen]. */
static int sbx_text(store *s, enum stmt_id id, const char *shop, const char *key, char *out,
                    size_t outlen, const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, id, shop, key, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, what, err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    copy_text(out, outlen, st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_sbx_rm_link_get(store *s, const char *shop, const char *user, char *id, size_t idlen,
                          char *err, size_t errlen)
{
    return sbx_text(s, Q_SBX_RM_LINK_GET, shop, user, id, idlen, "read rich menu link", err,
                    errlen);
}

int store_sbx_rm_alias_put(store *s, const char *shop, const char *alias, const char *id,
                           int create, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, create ? Q_SBX_RM_ALIAS_ADD : Q_SBX_RM_ALIAS_SET, shop, alias, &st, err,
                       errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, id);
    rc = run_change(s, st, "write rich menu alias", err, errlen);
    return create && rc == KZ_ENOTFOUND ? KZ_EEXIST : rc;
}

int store_sbx_rm_alias_get(store *s, const char *shop, const char *alias, char *id, size_t idlen,
                           char *err, size_t errlen)
{
    return sbx_text(s, Q_SBX_RM_ALIAS_GET, shop, alias, id, idlen, "read rich menu alias", err,
                    errlen);
}

int store_sbx_rm_alias_delete(store *s, const char *shop, const char *alias, char *err,
                              size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_SBX_RM_ALIAS_DEL, shop, alias, &st, err, errlen);
    return rc != 0 ? rc : run_change(s, st, "delete rich menu alias", err, errlen);
}

int store_sbx_rm_aliases(store *s, const char *shop, store_sbx_rm_cb cb, void *arg, char *err,
                         size_t errlen)
{
    return sbx_pairs(s, Q_SBX_RM_ALIASES, shop, cb, arg, "list rich menu aliases", err, errlen);
}

/* ---- friends ------------------------------------------------------------ */

/* Binds (shop, user, third) as ?1..?3. */
static int triple_stmt(store *s, enum stmt_id id, const char *shop, const char *user,
                       const char *third, sqlite3_stmt **st, char *err, size_t errlen)
{
    int rc = pair_stmt(s, id, shop, user, st, err, errlen);
    if (rc == 0)
        bind_str(*st, 3, third);
    return rc;
}

/* The friend row an attribute, tag or link hangs off. */
static int friend_ensure(store *s, const char *shop, const char *user, const char *what, char *err,
                         size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_ENSURE, shop, user, &st, err, errlen);
    return rc == 0 ? run(s, st, what, err, errlen) : rc;
}

/* Runs one of the friend statements that take (shop, user, ms). */
static int friend_event(store *s, enum stmt_id id, const char *shop, const char *user, int64_t ms,
                        const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, id, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, ms);
    return run(s, st, what, err, errlen);
}

int store_friend_follow(store *s, const char *shop, const char *user, int64_t ms, char *err,
                        size_t errlen)
{
    return friend_event(s, Q_FR_FOLLOW, shop, user, ms, "record follow", err, errlen);
}

int store_friend_unfollow(store *s, const char *shop, const char *user, int64_t ms, char *err,
                          size_t errlen)
{
    return friend_event(s, Q_FR_UNFOLLOW, shop, user, ms, "record unfollow", err, errlen);
}

int store_friend_touch(store *s, const char *shop, const char *user, int64_t ms, char *err,
                       size_t errlen)
{
    return friend_event(s, Q_FR_TOUCH, shop, user, ms, "record interaction", err, errlen);
}

int store_friend_profile(store *s, const char *shop, const char *user, const char *display_name,
                         const char *picture_url, const char *status_message, const char *language,
                         int64_t ms, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_PROFILE, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, display_name ? display_name : "");
    bind_str(st, 4, picture_url ? picture_url : "");
    bind_str(st, 5, status_message ? status_message : "");
    bind_str(st, 6, language ? language : "");
    sqlite3_bind_int64(st, 7, ms);
    return run_change(s, st, "record profile", err, errlen);
}

static void friend_from_row(sqlite3_stmt *st, store_friend *f)
{
    copy_text(f->user, sizeof f->user, st, 0);
    f->following = sqlite3_column_int(st, 1);
    f->first_follow_ms = sqlite3_column_int64(st, 2);
    f->follow_ms = sqlite3_column_int64(st, 3);
    f->unfollow_ms = sqlite3_column_int64(st, 4);
    f->follows = sqlite3_column_int64(st, 5);
    f->first_active_ms = sqlite3_column_int64(st, 6);
    f->last_active_ms = sqlite3_column_int64(st, 7);
    copy_text(f->display_name, sizeof f->display_name, st, 8);
    copy_text(f->picture_url, sizeof f->picture_url, st, 9);
    copy_text(f->status_message, sizeof f->status_message, st, 10);
    copy_text(f->language, sizeof f->language, st, 11);
    f->profile_ms = sqlite3_column_int64(st, 12);
}

int store_friend_get(store *s, const char *shop, const char *user, store_friend *out, char *err,
                     size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_GET, shop, user, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read friend", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    friend_from_row(st, out);
    sqlite3_reset(st);
    return 0;
}

int store_friends(store *s, const char *shop, const char *after, int64_t limit, store_friend_cb cb,
                  void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_LIST, shop, after ? after : "", &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
    while ((rc = step(s, st, "read friends", err, errlen)) == 1) {
        store_friend f;
        friend_from_row(st, &f);
        int stop = cb(arg, &f);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_friend_tag_add(store *s, const char *shop, const char *user, const char *tag, int64_t ms,
                         char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = friend_ensure(s, shop, user, "add tag", err, errlen);
    if (rc == 0)
        rc = pair_stmt(s, Q_FR_TAG_ADD, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, tag);
    sqlite3_bind_int64(st, 4, ms);
    rc = run_change(s, st, "add tag", err, errlen);
    return rc == KZ_ENOTFOUND ? KZ_EEXIST : rc;
}

int store_friend_tag_remove(store *s, const char *shop, const char *user, const char *tag,
                            char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_TAG_DEL, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 3, tag);
    return run_change(s, st, "remove tag", err, errlen);
}

int store_friend_tags(store *s, const char *shop, const char *user, store_tag_cb cb, void *arg,
                      char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_TAGS, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "read tags", err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_friend_attr_set(store *s, const char *shop, const char *user, const char *name, int type,
                          const char *value, int64_t ms, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = friend_ensure(s, shop, user, "set attribute", err, errlen);
    if (rc == 0)
        rc = triple_stmt(s, Q_FR_ATTR_SET, shop, user, name, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int(st, 4, type);
    bind_str(st, 5, value);
    sqlite3_bind_int64(st, 6, ms);
    return run(s, st, "set attribute", err, errlen);
}

int store_friend_attr_get(store *s, const char *shop, const char *user, const char *name, int *type,
                          char *value, size_t valuelen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = triple_stmt(s, Q_FR_ATTR_GET, shop, user, name, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read attribute", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    if (type != NULL)
        *type = sqlite3_column_int(st, 0);
    copy_text(value, valuelen, st, 1);
    sqlite3_reset(st);
    return 0;
}

int store_friend_attr_del(store *s, const char *shop, const char *user, const char *name, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st;
    int rc = triple_stmt(s, Q_FR_ATTR_DEL, shop, user, name, &st, err, errlen);
    return rc == 0 ? run_change(s, st, "remove attribute", err, errlen) : rc;
}

int store_friend_attrs(store *s, const char *shop, const char *user, store_attr_cb cb, void *arg,
                       char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_ATTRS, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "read attributes", err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0), sqlite3_column_int(st, 1), col_str(st, 2));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

/* The friend holding member at source into user ("" when none). */
static int link_owner(store *s, const char *shop, const char *source, const char *member,
                      char *user, size_t userlen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = triple_stmt(s, Q_FR_LINK_OWNER, shop, source, member, &st, err, errlen);
    if (userlen > 0)
        user[0] = '\0';
    if (rc != 0 || (rc = step(s, st, "read link", err, errlen)) != 1)
        return rc;
    copy_text(user, userlen, st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_friend_link_set(store *s, const char *shop, const char *user, const char *source,
                          const char *member, int64_t ms, char *prev_user, size_t prevlen,
                          char *err, size_t errlen)
{
    char prev[64];
    sqlite3_stmt *st;
    int rc = link_owner(s, shop, source, member, prev, sizeof prev, err, errlen);
    if (rc == 0 && prev[0] != '\0')
        rc = triple_stmt(s, Q_FR_LINK_DROP_MEMBER, shop, source, member, &st, err, errlen);
    if (rc == 0 && prev[0] != '\0')
        rc = run(s, st, "move link", err, errlen);
    if (rc == 0)
        rc = friend_ensure(s, shop, user, "link", err, errlen);
    if (rc == 0)
        rc = triple_stmt(s, Q_FR_LINK_SET, shop, user, source, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 4, member);
    sqlite3_bind_int64(st, 5, ms);
    rc = run(s, st, "link", err, errlen);
    if (rc == 0 && prev_user != NULL)
        snprintf(prev_user, prevlen, "%s", prev);
    return rc;
}

int store_friend_link_get(store *s, const char *shop, const char *user, const char *source,
                          char *member, size_t memberlen, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = triple_stmt(s, Q_FR_LINK_GET, shop, user, source, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "read link", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    copy_text(member, memberlen, st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_friend_link_del(store *s, const char *shop, const char *user, const char *source,
                          char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = triple_stmt(s, Q_FR_LINK_DEL, shop, user, source, &st, err, errlen);
    return rc == 0 ? run_change(s, st, "unlink", err, errlen) : rc;
}

int store_friend_by_link(store *s, const char *shop, const char *source, const char *member,
                         char *user, size_t userlen, char *err, size_t errlen)
{
    int rc = link_owner(s, shop, source, member, user, userlen, err, errlen);
    return rc == 0 && user[0] == '\0' ? KZ_ENOTFOUND : rc;
}

int store_friend_links(store *s, const char *shop, const char *user, store_link_cb cb, void *arg,
                       char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_FR_LINKS, shop, user, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "read links", err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0), col_str(st, 1));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

/* ---- the audience walk ---------------------------------------------------- */

/* One of the side tables (tags, attributes, links) being merged: its
 * statement and whether it holds an unread row. */
typedef struct aud_side {
    sqlite3_stmt *st;
    int row; /* 1: a row is loaded; 0: exhausted */
} aud_side;

static int aud_open(store *s, enum stmt_id id, const char *shop, const char *after, aud_side *a,
                    char *err, size_t errlen)
{
    int rc = pair_stmt(s, id, shop, after, &a->st, err, errlen);
    if (rc == 0)
        rc = a->row = step(s, a->st, "read audience", err, errlen);
    return rc < 0 ? rc : 0;
}

/* Hands the side's rows of user to emit, skipping rows of users the friend
 * walk left out (blocked ones). Both walks are in user order, so each row
 * is looked at once. */
static int aud_side_rows(store *s, aud_side *a, const char *user,
                         int (*emit)(sqlite3_stmt *st, const store_audience *cb),
                         const store_audience *cb, char *err, size_t errlen)
{
    int rc = 0;
    while (rc == 0 && a->row == 1) {
        int c = strcmp(col_str(a->st, 0), user);
        if (c > 0)
            break;
        if (c == 0 && (rc = emit(a->st, cb)) != 0)
            break;
        if ((a->row = step(s, a->st, "read audience", err, errlen)) < 0)
            rc = a->row;
    }
    return rc;
}

static int emit_tag(sqlite3_stmt *st, const store_audience *cb)
{
    return cb->tag != NULL ? cb->tag(cb->arg, col_str(st, 1)) : 0;
}

static int emit_attr(sqlite3_stmt *st, const store_audience *cb)
{
    return cb->attr != NULL
               ? cb->attr(cb->arg, col_str(st, 1), sqlite3_column_int(st, 2), col_str(st, 3))
               : 0;
}

static int emit_link(sqlite3_stmt *st, const store_audience *cb)
{
    return cb->link != NULL ? cb->link(cb->arg, col_str(st, 1), col_str(st, 2)) : 0;
}

static int aud_friend(store *s, aud_side side[3], sqlite3_stmt *fst, const store_audience *cb,
                      char *err, size_t errlen)
{
    store_friend f;
    friend_from_row(fst, &f);
    int rc = aud_side_rows(s, &side[0], f.user, emit_tag, cb, err, errlen);
    if (rc == 0)
        rc = aud_side_rows(s, &side[1], f.user, emit_attr, cb, err, errlen);
    if (rc == 0)
        rc = aud_side_rows(s, &side[2], f.user, emit_link, cb, err, errlen);
    return rc != 0 ? rc : cb->row(cb->arg, &f);
}

int store_friends_audience(store *s, const char *shop, const char *after, int following_only,
                           const store_audience *cb, char *err, size_t errlen)
{
    static const enum stmt_id sides[3] = {Q_FR_AUD_TAGS, Q_FR_AUD_ATTRS, Q_FR_AUD_LINKS};
    after = after != NULL ? after : "";
    aud_side side[3] = {{0}};
    sqlite3_stmt *fst = NULL;
    int rc = pair_stmt(s, following_only ? Q_FR_AUD_FOLLOWING : Q_FR_AUD_FRIENDS, shop, after, &fst,
                       err, errlen);
    for (int i = 0; rc == 0 && i < 3; i++)
        rc = aud_open(s, sides[i], shop, after, &side[i], err, errlen);
    while (rc == 0 && (rc = step(s, fst, "read friends", err, errlen)) == 1)
        rc = aud_friend(s, side, fst, cb, err, errlen);
    if (fst != NULL)
        sqlite3_reset(fst);
    for (int i = 0; i < 3; i++)
        if (side[i].st != NULL)
            sqlite3_reset(side[i].st);
    return rc;
}

/* ---- outbox ------------------------------------------------------------- */

/* Binds a string or SQL NULL. */
static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        sqlite3_bind_null(st, i);
    else
        bind_str(st, i, v);
}

static const char *col_opt(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    return col_str(st, col);
}

/* The current row (OB_COLUMNS) into *r; pointers into the statement. */
static void outbox_from_row(sqlite3_stmt *st, store_outbox *r)
{
    r->id = sqlite3_column_int64(st, 0);
    r->shop = col_str(st, 1);
    r->instance = sqlite3_column_int64(st, 2);
    r->kind = sqlite3_column_int(st, 3);
    r->endpoint = col_str(st, 4);
    r->body = col_str(st, 5); /* a blob body comes back as its bytes, NUL-terminated */
    r->body_len = (size_t)sqlite3_column_bytes(st, 5);
    r->retry_key = col_opt(st, 6);
    r->user = col_opt(st, 7);
    r->fallback_to = col_opt(st, 8);
    r->tag = col_opt(st, 9);
    r->origin = col_opt(st, 10);
    r->state = sqlite3_column_int(st, 11);
    r->attempts = sqlite3_column_int(st, 12);
    r->created_ms = sqlite3_column_int64(st, 13);
    r->next_at_ms = sqlite3_column_int64(st, 14);
    r->deadline_ms = sqlite3_column_int64(st, 15);
    r->method = col_opt(st, 16);
    r->content_type = col_opt(st, 17);
    r->data_api = sqlite3_column_int(st, 18);
    r->plugin = col_opt(st, 19);
    r->error = col_opt(st, 20);
}

/* JSON bodies are text (readable with the sqlite3 shell); others are blobs. */
static void bind_body(sqlite3_stmt *st, int i, const store_outbox *row)
{
    size_t n = row->body_len ? row->body_len : strlen(row->body);
    if (row->content_type == NULL || strncmp(row->content_type, "application/json", 16) == 0)
        sqlite3_bind_text(st, i, row->body, (int)n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_blob(st, i, row->body, (int)n, SQLITE_TRANSIENT);
}

int store_outbox_add(store *s, const store_outbox *row, int64_t *id, char *err, size_t errlen)
{
    if (row == NULL || row->shop == NULL || row->endpoint == NULL || row->body == NULL) {
        errbuf_set(err, errlen, "queue send: shop, endpoint and body are required");
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, row->shop);
    sqlite3_bind_int64(st, 2, row->instance);
    sqlite3_bind_int(st, 3, row->kind);
    bind_str(st, 4, row->endpoint);
    bind_body(st, 5, row);
    bind_opt(st, 6, row->retry_key);
    bind_opt(st, 7, row->user);
    bind_opt(st, 8, row->fallback_to);
    bind_opt(st, 9, row->tag);
    bind_opt(st, 10, row->origin);
    sqlite3_bind_int64(st, 11, row->created_ms);
    sqlite3_bind_int64(st, 12, row->next_at_ms);
    sqlite3_bind_int64(st, 13, row->deadline_ms);
    bind_opt(st, 14, row->method);
    bind_opt(st, 15, row->content_type);
    sqlite3_bind_int(st, 16, row->data_api);
    bind_opt(st, 17, row->plugin);
    rc = run(s, st, "queue send", err, errlen);
    if (rc == 0 && id != NULL)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

/* The walk steps the cached statement while cb runs: cb may call other store
 * functions on this connection, but not store_outbox_due itself. */
int store_outbox_due(store *s, int64_t now_ms, int limit, store_outbox_cb cb, void *arg, char *err,
                     size_t errlen)
{
    if (limit < 1) {
        errbuf_set(err, errlen, "read outbox: limit must be at least 1, not %d", limit);
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_DUE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = step(s, st, "read outbox", err, errlen)) == 1) {
        store_outbox r;
        outbox_from_row(st, &r);
        r.body = NULL;
        r.body_len = 0;
        int stop = cb(arg, &r);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_outbox_body(store *s, int64_t id, char **body, size_t *len, char *err, size_t errlen)
{
    *body = NULL;
    *len = 0;
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_BODY, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if ((rc = step(s, st, "read outbox body", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    const void *v = sqlite3_column_blob(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    char *b = malloc(n + 1); /* a blob may hold NULs */
    if (b != NULL && n > 0)
        memcpy(b, v, n);
    sqlite3_reset(st);
    if (b == NULL)
        return no_memory(err, errlen);
    b[n] = '\0';
    *body = b;
    *len = n;
    return 0;
}

static int outbox_change(store *s, sqlite3_stmt *st, int64_t id, const char *what, char *err,
                         size_t errlen)
{
    int rc = run_change(s, st, what, err, errlen);
    if (rc == KZ_ENOTFOUND)
        errbuf_set(err, errlen, "%s: outbox row %lld is not pending", what, (long long)id);
    return rc;
}

int store_outbox_retry(store *s, int64_t id, int attempts, int64_t next_at_ms, const char *error,
                       char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_RETRY, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, attempts);
    sqlite3_bind_int64(st, 3, next_at_ms);
    bind_opt(st, 4, error);
    return outbox_change(s, st, id, "reschedule send", err, errlen);
}

int store_outbox_rewrite(store *s, int64_t id, int kind, const char *endpoint, const char *body,
                         const char *retry_key, char *err, size_t errlen)
{
    if (endpoint == NULL || body == NULL) {
        errbuf_set(err, errlen, "rewrite send: endpoint and body are required");
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_REWRITE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, kind);
    bind_str(st, 3, endpoint);
    bind_str(st, 4, body);
    bind_opt(st, 5, retry_key);
    return outbox_change(s, st, id, "rewrite send", err, errlen);
}

int store_outbox_finish(store *s, int64_t id, int state, int status, const char *request_id,
                        const char *error, int64_t now_ms, char *err, size_t errlen)
{
    if (state != OUTBOX_SENT && state != OUTBOX_FAILED && state != OUTBOX_PARKED) {
        errbuf_set(err, errlen, "finish send: state %d is not SENT, FAILED or PARKED", state);
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_FINISH, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_int(st, 3, status);
    bind_opt(st, 4, request_id);
    bind_opt(st, 5, error);
    sqlite3_bind_int64(st, 6, now_ms);
    return outbox_change(s, st, id, "finish send", err, errlen);
}

/* Copies the row's strings into one buffer owned by the connection (kept
 * until the next store_outbox_get), so the statement can be reset at once
 * and holds no read snapshot. */
int store_outbox_get(store *s, int64_t id, store_outbox *out, int *status, const char **request_id,
                     const char **error, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if ((rc = step(s, st, "read outbox row", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    static const int cols[] = {1, 4, 5, 6, 7, 8, 9, 10, 22, 20, 16, 17, 19};
    enum { NCOLS = sizeof cols / sizeof cols[0] };
    size_t total = 0;
    for (int k = 0; k < NCOLS; k++)
        total += (size_t)sqlite3_column_bytes(st, cols[k]) + 1;
    char *buf = malloc(total ? total : 1);
    if (buf == NULL) {
        sqlite3_reset(st);
        return no_memory(err, errlen);
    }
    const char *ptr[NCOLS];
    size_t at = 0;
    for (int k = 0; k < NCOLS; k++) {
        const char *v = col_opt(st, cols[k]);
        if (v == NULL) {
            ptr[k] = NULL;
            continue;
        }
        size_t n = (size_t)sqlite3_column_bytes(st, cols[k]);
        memcpy(buf + at, v, n);
        buf[at + n] = '\0';
        ptr[k] = buf + at;
        at += n + 1;
    }
    store_outbox r;
    outbox_from_row(st, &r);
    int st_status = sqlite3_column_int(st, 21);
    sqlite3_reset(st);
    r.shop = ptr[0];
    r.endpoint = ptr[1];
    r.body = ptr[2];
    r.retry_key = ptr[3];
    r.user = ptr[4];
    r.fallback_to = ptr[5];
    r.tag = ptr[6];
    r.origin = ptr[7];
    r.error = ptr[9];
    r.method = ptr[10];
    r.content_type = ptr[11];
    r.plugin = ptr[12];
    free(s->ob_strings);
    s->ob_strings = buf;
    if (out != NULL)
        *out = r;
    if (status != NULL)
        *status = st_status;
    if (request_id != NULL)
        *request_id = ptr[8];
    if (error != NULL)
        *error = ptr[9];
    return 0;
}

int store_outbox_pending(store *s, int64_t *count, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_PENDING, &st, err, errlen);
    if (rc != 0)
        return rc;
    return query_int(s, st, "count pending sends", count, err, errlen);
}

/* The one value of a min(…) query q; KZ_ENOTFOUND when it is NULL (no rows). */
static int query_min(store *s, int q, const char *what, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, q, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, what, err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    int none = sqlite3_column_type(st, 0) == SQLITE_NULL;
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return none ? KZ_ENOTFOUND : 0;
}

int store_outbox_next(store *s, int64_t *next_at_ms, char *err, size_t errlen)
{
    return query_min(s, Q_OB_NEXT, "next send", next_at_ms, err, errlen);
}

int store_outbox_tag_states(store *s, const char *shop, const char *tag_prefix,
                            store_tag_state_cb cb, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_OB_TAG_STATES, shop, tag_prefix, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "count sends by tag", err, errlen)) == 1) {
        int stop = cb(arg, col_str(st, 0), sqlite3_column_int(st, 1), sqlite3_column_int64(st, 2));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_events_prune(store *s, const char *shop, int64_t max_id, int64_t before_ms, int limit,
                       int *deleted, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_EV_PRUNE, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    sqlite3_bind_int64(st, 2, max_id);
    sqlite3_bind_int64(st, 3, before_ms);
    sqlite3_bind_int(st, 4, limit);
    rc = run(s, st, "prune events", err, errlen);
    *deleted = rc == 0 ? sqlite3_changes(s->db) : 0;
    return rc;
}

int store_outbox_prune(store *s, int64_t before_ms, int limit, int *deleted, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_OB_PRUNE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int(st, 2, limit);
    rc = run(s, st, "prune sends", err, errlen);
    *deleted = rc == 0 ? sqlite3_changes(s->db) : 0;
    return rc;
}

int store_policy_due_reason(store *s, const char *shop, const char *user, int64_t now_ms,
                            int *reason, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_DUE_REASON, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, now_ms);
    if ((rc = step(s, st, "read a due held send", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    *reason = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return 0;
}

int store_policy_tag_counts(store *s, const char *shop, const char *tag_prefix,
                            store_policy_tag_cb cb, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = pair_stmt(s, Q_PO_TAG_COUNTS, shop, tag_prefix, &st, err, errlen);
    if (rc != 0)
        return rc;
    while ((rc = step(s, st, "count held and dropped sends by tag", err, errlen)) == 1) {
        int stop =
            cb(arg, col_str(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

/* ---- timers ---------------------------------------------------------------- */

int store_timer_set(store *s, const store_timer *t, char *err, size_t errlen)
{
    if (t == NULL || t->shop == NULL || t->key == NULL || t->topic == NULL || t->payload == NULL) {
        errbuf_set(err, errlen, "set timer: shop, key, topic and payload are required");
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_SET, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, t->shop);
    sqlite3_bind_int64(st, 2, t->instance);
    bind_str(st, 3, t->key);
    sqlite3_bind_int64(st, 4, t->due_ms);
    bind_str(st, 5, t->topic);
    bind_opt(st, 6, t->user);
    bind_str(st, 7, t->payload);
    sqlite3_bind_int64(st, 8, t->created_ms);
    return run(s, st, "set timer", err, errlen);
}

int store_timer_cancel(store *s, int64_t instance, const char *key, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_CANCEL, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, instance);
    bind_str(st, 2, key);
    return run_change(s, st, "cancel timer", err, errlen);
}

static void timer_from_row(sqlite3_stmt *st, store_timer *t)
{
    t->id = sqlite3_column_int64(st, 0);
    t->shop = col_str(st, 1);
    t->instance = sqlite3_column_int64(st, 2);
    t->key = col_str(st, 3);
    t->due_ms = sqlite3_column_int64(st, 4);
    t->topic = col_str(st, 5);
    t->user = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL : col_str(st, 6);
    t->payload = col_str(st, 7);
    t->created_ms = sqlite3_column_int64(st, 8);
}

int store_timer_due(store *s, int64_t now_ms, int limit, store_timer_cb cb, void *arg, char *err,
                    size_t errlen)
{
    if (limit < 1) { /* SQLite reads a negative LIMIT as "no limit" */
        errbuf_set(err, errlen, "read timers: limit must be at least 1, not %d", limit);
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_DUE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = step(s, st, "read timers", err, errlen)) == 1) {
        store_timer t;
        timer_from_row(st, &t);
        int stop = cb(arg, &t);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

/* Copies the timer's event fields out of the statement so it can be reset
 * before the append reuses the connection. */
static int timer_event(store *s, int64_t id, int64_t *event_id, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_GET, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if ((rc = step(s, st, "fire timer", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    char uid[40];
    snprintf(uid, sizeof uid, "timer:%lld", (long long)id);
    char *shop = strdup(col_str(st, 0)), *topic = strdup(col_str(st, 1));
    int has_user = sqlite3_column_type(st, 2) != SQLITE_NULL;
    char *user = has_user ? strdup(col_str(st, 2)) : NULL;
    char *payload = strdup(col_str(st, 3));
    size_t len = payload != NULL ? strlen(payload) : 0;
    int64_t due = sqlite3_column_int64(st, 4);
    sqlite3_reset(st);
    if (shop == NULL || topic == NULL || payload == NULL || (has_user && user == NULL))
        rc = no_memory(err, errlen);
    else
        rc =
            store_event_append(s, shop, uid, topic, user, due, payload, len, event_id, err, errlen);
    free(shop);
    free(topic);
    free(user);
    free(payload);
    return rc;
}

int store_timer_fire(store *s, int64_t id, int64_t *event_id, char *err, size_t errlen)
{
    int owned;
    int rc = own_begin(s, &owned, err, errlen);
    if (rc != 0)
        return rc;
    rc = timer_event(s, id, event_id, err, errlen);
    sqlite3_stmt *st;
    if (rc == 0 && (rc = prep(s, Q_TM_DEL, &st, err, errlen)) == 0) {
        sqlite3_bind_int64(st, 1, id);
        rc = run(s, st, "fire timer", err, errlen);
    }
    return own_end(s, owned, rc, err, errlen);
}

int store_timer_fire_due(store *s, int64_t now_ms, int limit, int *fired, char *err, size_t errlen)
{
    *fired = 0;
    if (limit < 1) {
        errbuf_set(err, errlen, "fire timers: limit must be at least 1, not %d", limit);
        return KZ_EINVAL;
    }
    int owned;
    int rc = own_begin(s, &owned, err, errlen);
    for (int q = Q_TM_FIRE_EVENTS; rc == 0 && q <= Q_TM_FIRE_DELETE; q++) {
        sqlite3_stmt *st;
        if ((rc = prep(s, (enum stmt_id)q, &st, err, errlen)) != 0)
            break;
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_int(st, 2, limit);
        rc = run(s, st, "fire timers", err, errlen);
    }
    if (rc == 0)
        *fired = sqlite3_changes(s->db);
    return own_end(s, owned, rc, err, errlen);
}

int store_timer_pending(store *s, int64_t *count, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_PENDING, &st, err, errlen);
    return rc != 0 ? rc : query_int(s, st, "count timers", count, err, errlen);
}

int store_timer_next(store *s, int64_t *due_ms, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_TM_NEXT, &st, err, errlen);
    if (rc != 0 || (rc = step(s, st, "next timer", err, errlen)) != 1)
        return rc == 0 ? KZ_ENOTFOUND : rc;
    int none = sqlite3_column_type(st, 0) == SQLITE_NULL;
    *due_ms = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return none ? KZ_ENOTFOUND : 0;
}

/* ---- delivery policy (schema 9) ----------------------------------------- */

int store_policy_send_add(store *s, const store_policy_send *ps, int64_t *id, char *err,
                          size_t errlen)
{
    if (ps == NULL || ps->shop == NULL || ps->body == NULL || ps->origin == NULL) {
        errbuf_set(err, errlen, "hold send: shop, body and origin are required");
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_SEND_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, ps->shop);
    sqlite3_bind_int64(st, 2, ps->instance);
    sqlite3_bind_int(st, 3, ps->kind);
    bind_str(st, 4, ps->body);
    bind_opt(st, 5, ps->tag);
    bind_str(st, 6, ps->origin);
    sqlite3_bind_int(st, 7, ps->priority);
    sqlite3_bind_int(st, 8, ps->over_cap);
    sqlite3_bind_int64(st, 9, ps->created_ms);
    rc = run(s, st, "hold send", err, errlen);
    if (rc == 0 && id != NULL)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int store_policy_hold(store *s, int64_t send, const char *shop, const char *user,
                      int64_t release_ms, int reason, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_HOLD, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, send);
    bind_str(st, 2, user);
    bind_str(st, 3, shop);
    sqlite3_bind_int64(st, 4, release_ms);
    sqlite3_bind_int(st, 5, reason);
    return run(s, st, "hold send", err, errlen);
}

int store_policy_count(store *s, const char *shop, const char *user, int64_t from_ms, int64_t to_ms,
                       int64_t *n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_COUNT, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, from_ms);
    sqlite3_bind_int64(st, 4, to_ms);
    return query_int(s, st, "count sends", n, err, errlen);
}

int store_policy_ledger_add(store *s, const char *shop, const char *user, int64_t at_ms, char *err,
                            size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_LEDGER_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, at_ms);
    return run(s, st, "count send", err, errlen);
}

int store_policy_ledger_prune(store *s, int64_t before_ms, char *err, size_t errlen)
{
    enum stmt_id ids[2] = {Q_PO_LEDGER_PRUNE, Q_PO_DROP_PRUNE};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st;
        int rc = prep(s, ids[i], &st, err, errlen);
        if (rc != 0)
            return rc;
        sqlite3_bind_int64(st, 1, before_ms);
        if ((rc = run(s, st, "prune sends", err, errlen)) != 0)
            return rc;
    }
    return 0;
}

int store_policy_drop_add(store *s, const char *shop, const char *user, int64_t at_ms, int reason,
                          const char *tag, int priority, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_DROP_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, at_ms);
    sqlite3_bind_int(st, 4, reason);
    bind_opt(st, 5, tag);
    sqlite3_bind_int(st, 6, priority);
    return run(s, st, "record dropped send", err, errlen);
}

int store_policy_drops_of(store *s, const char *shop, const char *user, int64_t since_ms,
                          store_policy_drop_cb cb, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_DROPS_OF, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, since_ms);
    while ((rc = step(s, st, "read dropped sends", err, errlen)) == 1) {
        int stop = cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1),
                      sqlite3_column_type(st, 2) == SQLITE_NULL ? NULL : col_str(st, 2),
                      sqlite3_column_int(st, 3));
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_policy_stat_add(store *s, const char *shop, const char *what, int64_t delta, char *err,
                          size_t errlen)
{
    if (delta == 0)
        return 0;
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_STAT_ADD, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, what);
    sqlite3_bind_int64(st, 3, delta);
    return run(s, st, "count policy", err, errlen);
}

int store_policy_stats(store *s, store_policy_stat_cb stat, store_policy_stat_cb held, void *arg,
                       char *err, size_t errlen)
{
    enum stmt_id ids[2] = {Q_PO_STATS, Q_PO_HELD_COUNTS};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st;
        int rc = prep(s, ids[i], &st, err, errlen);
        if (rc != 0)
            return rc;
        while ((rc = step(s, st, "read policy counts", err, errlen)) == 1) {
            int stop = i == 0
                           ? stat(arg, col_str(st, 0), col_str(st, 1), sqlite3_column_int64(st, 2))
                           : held(arg, col_str(st, 0), NULL, sqlite3_column_int64(st, 1));
            if (stop != 0) {
                sqlite3_reset(st);
                return stop;
            }
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int store_policy_due(store *s, int64_t now_ms, int limit, store_policy_held_cb cb, void *arg,
                     char *err, size_t errlen)
{
    if (limit < 1) {
        errbuf_set(err, errlen, "read held sends: limit must be at least 1, not %d", limit);
        return KZ_EINVAL;
    }
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_DUE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = step(s, st, "read held sends", err, errlen)) == 1) {
        store_policy_held h = {
            .send = {.id = sqlite3_column_int64(st, 0),
                     .shop = col_str(st, 2),
                     .instance = sqlite3_column_int64(st, 5),
                     .kind = sqlite3_column_int(st, 6),
                     .body = col_str(st, 7),
                     .tag = sqlite3_column_type(st, 8) == SQLITE_NULL ? NULL : col_str(st, 8),
                     .origin = col_str(st, 9),
                     .priority = sqlite3_column_int(st, 10),
                     .over_cap = sqlite3_column_int(st, 11),
                     .created_ms = sqlite3_column_int64(st, 12)},
            .user = col_str(st, 1),
            .release_ms = sqlite3_column_int64(st, 3),
            .reason = sqlite3_column_int(st, 4)};
        int stop = cb(arg, &h);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}

int store_policy_next(store *s, int64_t *release_ms, char *err, size_t errlen)
{
    return query_min(s, Q_PO_NEXT, "next held send", release_ms, err, errlen);
}

int store_policy_unhold(store *s, int64_t send, const char *user, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_UNHOLD, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, send);
    bind_str(st, 2, user);
    if ((rc = run_change(s, st, "release held send", err, errlen)) != 0)
        return rc;
    /* the body goes with its last recipient */
    if ((rc = prep(s, Q_PO_SEND_GC, &st, err, errlen)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, send);
    return run(s, st, "release held send", err, errlen);
}

int store_policy_reschedule(store *s, int64_t send, const char *user, int64_t release_ms,
                            int reason, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_RESCHEDULE, &st, err, errlen);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, send);
    bind_str(st, 2, user);
    sqlite3_bind_int64(st, 3, release_ms);
    sqlite3_bind_int(st, 4, reason);
    return run_change(s, st, "defer held send", err, errlen);
}

int store_policy_held_of(store *s, const char *shop, const char *user, store_policy_held_cb cb,
                         void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(s, Q_PO_HELD_OF, &st, err, errlen);
    if (rc != 0)
        return rc;
    bind_str(st, 1, shop);
    bind_str(st, 2, user);
    while ((rc = step(s, st, "read held sends", err, errlen)) == 1) {
        store_policy_held h = {
            .send = {.id = sqlite3_column_int64(st, 0),
                     .shop = shop,
                     .tag = sqlite3_column_type(st, 3) == SQLITE_NULL ? NULL : col_str(st, 3),
                     .priority = sqlite3_column_int(st, 4),
                     .over_cap = sqlite3_column_int(st, 5),
                     .created_ms = sqlite3_column_int64(st, 6)},
            .user = user,
            .release_ms = sqlite3_column_int64(st, 1),
            .reason = sqlite3_column_int(st, 2)};
        int stop = cb(arg, &h);
        if (stop != 0) {
            sqlite3_reset(st);
            return stop;
        }
    }
    return rc;
}
