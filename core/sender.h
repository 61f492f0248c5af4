/*
 * sender — sends committed outbox rows to LINE (or the sandbox) and reports
 * each outcome back on the bus.
 *
 * One thread drives a libcurl multi handle (keep-alive, HTTP/2 where the
 * server offers it) with up to max_in_flight requests at once. It takes only
 * PENDING rows whose transaction has committed (store_outbox_due), so a
 * rolled-back handler never sends. Each row is POSTed to
 * <base><endpoint> with `Authorization: Bearer <shop's access token>`,
 * `Content-Type: application/json` and, except for reply, the row's fixed
 * `X-Line-Retry-Key`, so a resend after a crash or a timeout is delivered
 * once by LINE.
 *
 * Outcomes, each committed in one transaction together with its event:
 * - 2xx: SENT; event `message.sent` {"outbox","kind","tag","to","requestId",
 *   "sentMessages"?} (requestId from x-line-request-id).
 * - 409 with x-line-accepted-request-id: the retry key was already accepted
 *   (an earlier attempt got through): SENT, as above.
 * - 429 "You have reached your monthly limit.": PARKED at once (no retry),
 *   `message.failed`, and an error log line for the operator.
 * - 429 otherwise, 5xx, network errors and timeouts: retried with
 *   exponential backoff and jitter (Retry-After honoured when given) until
 *   the row's deadline, then FAILED.
 * - other 4xx: FAILED at once; `message.failed` {"outbox","kind","tag",
 *   "to","status","message","details"} with LINE's own message and details.
 * - a reply whose token LINE refuses ("Invalid reply token") or that is
 *   older than the token's life, with fallback_to set: rewritten into a push
 *   to fallback_to (with a retry key derived from the row) and sent as such.
 *
 * Before each scan the thread runs the delivery policy's release walk
 * (policy.h): promotional sends held for quiet hours or caps whose time
 * came become outbox rows in one transaction, and this scan sends them.
 *
 * Client-side rate limits (token buckets per shop and endpoint, LINE's
 * documented values by default) keep kizuna itself from causing a 429.
 *
 * Event topics: message.sent, message.failed; user = the row's user; uid
 * "outbox:<id>:sent" / "outbox:<id>:failed", so a crash between the HTTP
 * answer and the commit cannot publish twice.
 *
 * Ownership: the sender borrows cfg, bus and metrics (they outlive it).
 * Thread: start/stop/wake from any thread; everything else on its own.
 */
#ifndef KIZUNA_CORE_SENDER_H
#define KIZUNA_CORE_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "metrics.h"

typedef struct sender sender;

/* Requests per second (or per hour for broadcast/narrowcast, as LINE counts
 * them) allowed per shop for one endpoint. */
typedef struct sender_rate {
    const char *endpoint; /* "push", "reply", "multicast", "broadcast", "narrowcast" */
    double per_second;
} sender_rate;

typedef struct sender_options {
    const char *store_url;
    int sync_mode;
    const cfg *c;               /* shops: line.access_token and line.api */
    const char *sandbox_base;   /* base URL for shops with api = "sandbox", e.g.
                                   "http://127.0.0.1:8081"; NULL: those shops do not send */
    bus *b;                     /* woken after result events are stored */
    metrics *m;                 /* may be NULL */
    int max_in_flight;          /* concurrent requests; 0: 16 */
    int64_t timeout_ms;         /* one request; 0: 30 s */
    int64_t retry_initial_ms;   /* 0: 1 s */
    int64_t retry_max_ms;       /* 0: 5 min */
    int64_t deadline_ms;        /* after the row was created; 0: 24 h */
    int64_t reply_token_ttl_ms; /* 0: 60 s (LINE's) */
    const sender_rate *rates;   /* overrides of LINE's defaults */
    size_t nrates;
    int64_t poll_ms; /* re-check for due rows when not woken; 0: 50 ms */
} sender_options;

int sender_start(const sender_options *o, sender **out, char *err, size_t errlen);
/* New rows were committed: look now instead of at the next poll. */
void sender_wake(sender *s);
/* Finishes requests in flight (bounded by their timeout), stops. NULL ok. */
void sender_stop(sender *s);

#endif
