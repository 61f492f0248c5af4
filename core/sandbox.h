/*
 * sandbox — kizuna's built-in stand-in for the LINE platform.
 *
 * An HTTP server (libmicrohttpd, epoll thread pool) on loopback that answers
 * the Messaging API calls kizuna makes, with LINE's paths, status codes,
 * response shapes and error texts, and checks them against LINE's published
 * rules (docs/sandbox.md has the full list):
 *
 *   POST /v2/bot/message/{reply,push,multicast,narrowcast,broadcast}
 *   POST /v2/bot/message/validate/{reply,push,multicast,narrowcast,broadcast}
 *   GET  /v2/bot/message/progress/narrowcast?requestId=
 *   GET  /v2/bot/message/quota, /v2/bot/message/quota/consumption
 *   GET  /v2/bot/profile/{userId}, /v2/bot/info
 *   POST /v2/bot/user/{userId}/linkToken
 *   rich menus: /v2/bot/richmenu (create, validate, get, list, delete,
 *   content upload and download, bulk link/unlink, aliases),
 *   /v2/bot/user/all/richmenu (default), /v2/bot/user/{userId}/richmenu
 *
 * Channels are the shops of the config that have a `line` group: the
 * `Authorization: Bearer <token>` of a request picks the shop whose
 * line.access_token it is. Every answer carries `x-line-request-id`.
 *
 * State (what each user received, users and their follow state, retry keys,
 * reply tokens, rate windows, monthly usage, rich menus with their images,
 * links and aliases) lives in the sandbox's own
 * store (o->store_url, store.h "sandbox"), so it survives a crash or restart
 * of the daemon or of the sandbox. Every delivered message is recorded (one
 * inbox row per recipient per message) in the same transaction as its retry
 * key and quota use.
 *
 * Faults (o->faults, or `POST /sandbox/faults` at run time) apply to the
 * /v2 endpoints only: added latency, a share of requests answered with an
 * error status, a share of connections closed with no answer.
 *
 * Playing users: sandbox_play (or `POST /sandbox/shops/<shop>/users/<user>/
 * {follow,unfollow,say,postback}`) sends the daemon a signed LINE webhook as
 * that user; `GET /sandbox/shops/<shop>/users/<user>/inbox` shows what the
 * user received; `GET …/richmenu` the rich menu the user sees and
 * `POST …/richmenuswitch` plays a tap on a rich menu switch area.
 *
 * Ownership: the sandbox borrows o->c (it must outlive sandbox_stop) and
 * copies every other option. Thread: start/stop from one thread; requests run
 * on libmicrohttpd's threads; sandbox_play and sandbox_set_faults may be
 * called from any thread.
 */
#ifndef KIZUNA_CORE_SANDBOX_H
#define KIZUNA_CORE_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct sandbox sandbox;

typedef struct sandbox_faults {
    double error_rate; /* 0..1: share of /v2 requests answered with `status` */
    int status;        /* the error status; 0 means 500 */
    int latency_ms;    /* added before every /v2 answer */
    double drop_rate;  /* 0..1: share of /v2 requests whose connection is closed, no answer */
} sandbox_faults;

/* A rate limit replacing LINE's default for one endpoint: `limit` requests
 * per the endpoint's window (see sandbox_endpoint_names). */
typedef cfg_sandbox_rate sandbox_rate; /* endpoint ("push", …), limit >= 1 */

typedef struct sandbox_options {
    const char *listen;       /* "HOST:PORT"; port 0 picks a free one */
    const char *store_url;    /* the sandbox's own database, e.g. "sqlite:var/sandbox.db" */
    const cfg *c;             /* shops, their tokens and channel secrets */
    const char *webhook_base; /* where played users' webhooks go: "http://127.0.0.1:8080"
                                 (the daemon's kizuna.listen); NULL: from c->listen */
    int64_t monthly_limit;    /* messages per month per shop; 0 = unlimited */
    sandbox_faults faults;
    const sandbox_rate *rates; /* overrides of LINE's defaults */
    size_t nrates;
    int64_t reply_token_ttl_ms; /* 0 means LINE's 60 s */
} sandbox_options;

/* The rate-limited endpoint names, NULL-terminated, in the order of their
 * defaults: reply, push, multicast, narrowcast, broadcast, validate,
 * progress, profile, quota, info, link_token, richmenu, richmenu_create,
 * richmenu_delete, richmenu_alias_delete. `validate` covers the five
 * validate calls, `quota` both quota calls, `richmenu` every rich menu call
 * without a limit of its own. */
extern const char *const sandbox_endpoint_names[];

/* Options from the config's kizuna.sandbox group (listen, store,
 * monthly_limit, faults, rate_limits) and kizuna.listen as webhook_base.
 * The strings and the rates array point into c. */
sandbox_options sandbox_options_from_cfg(const cfg *c);

/* Opens the store, binds, starts serving. KZ_EINVAL for bad options (an
 * unknown rate-limit endpoint, a rate outside 0..1, a bad listen address),
 * KZ_EFAIL when it cannot listen, a store error otherwise. */
int sandbox_start(const sandbox_options *o, sandbox **out, char *err, size_t errlen);
/* The port actually bound. */
uint16_t sandbox_port(const sandbox *sb);
/* Stops serving, closes the store, frees. NULL is fine. */
void sandbox_stop(sandbox *sb);

/* Replaces the fault settings (what POST /sandbox/faults does). */
int sandbox_set_faults(sandbox *sb, const sandbox_faults *f, char *err, size_t errlen);

enum sandbox_action { SANDBOX_FOLLOW, SANDBOX_UNFOLLOW, SANDBOX_SAY, SANDBOX_POSTBACK };

/* Plays user `user` (a LINE user id, U + 32 hex) of shop `shop`: builds the
 * webhook (follow, unfollow, a text message `arg`, or a postback with data
 * `arg`), records the user's follow state and the reply token it carries,
 * signs it with the shop's channel secret and POSTs it to
 * <webhook_base>/webhook/<shop>. A user unknown to the sandbox is created on
 * follow with a generated display name (any action creates it, in fact; only
 * follow makes it a friend). Returns 0 when the daemon answered 200;
 * KZ_EINVAL for a bad shop, user or action argument; KZ_EFAIL with the
 * status and body in err when the daemon refused or could not be reached. */
int sandbox_play(sandbox *sb, const char *shop, const char *user, enum sandbox_action action,
                 const char *text_or_data, char *err, size_t errlen);

/* Plays a tap on a richmenuswitch area: links the menu of `alias` to the
 * user (as LINE does) and sends the postback webhook LINE sends for it,
 * with `data` and params {newRichMenuAliasId, status} — status SUCCESS,
 * RICHMENU_ALIAS_ID_NOTFOUND or RICHMENU_NOTFOUND. Returns as
 * sandbox_play. */
int sandbox_richmenu_switch(sandbox *sb, const char *shop, const char *user, const char *alias,
                            const char *data, char *err, size_t errlen);

/* Issues a reply token for user of shop as a webhook would, without sending
 * one (tests, tools): token receives 32 hex digits and a NUL. */
int sandbox_issue_reply_token(sandbox *sb, const char *shop, const char *user, char token[33],
                              char *err, size_t errlen);

/* A small blocking HTTP client for tools that talk to a running sandbox
 * (the CLI): method "GET" or "POST" (body JSON, may be NULL) to url.
 * *status gets the HTTP status and *resp (may be NULL) the body,
 * malloc'd and NUL-terminated, owned by the caller. KZ_EFAIL with the
 * reason in err when no answer came. */
int sandbox_http(const char *method, const char *url, const char *body, long *status, char **resp,
                 char *err, size_t errlen);
/* The same with "Authorization: Bearer <bearer>" when bearer != NULL (the
 * CLI and the admin API), giving up after timeout_s seconds; KZ_ESTATE when
 * nothing listens at the address (connection refused), KZ_EFAIL for other
 * failures. */
int sandbox_http_auth(const char *method, const char *url, const char *bearer, const char *body,
                      long timeout_s, long *status, char **resp, char *err, size_t errlen);

/* Parses "follow", "unfollow", "say", "postback"; -1 otherwise. */
int sandbox_action_parse(const char *name);

/* 1 when s is a LINE user id the sandbox plays (^U[0-9a-f]{32}$), else 0. */
int sandbox_user_id_valid(const char *s);

#endif
