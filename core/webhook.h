/*
 * webhook — turns one LINE webhook request body into bus events.
 *
 * Pure functions (no I/O, no globals): the HTTP server (ingress.c) calls
 * them, and tests drive them directly with LINE's published examples.
 *
 * Signature: X-Line-Signature = base64(HMAC-SHA256(channel secret, raw body)),
 * computed over the bytes exactly as received and compared in constant time,
 * before any parsing.
 *
 * Events: each element of "events" becomes one bus_msg for the shop:
 *   topic  "line.<type>" (follow, unfollow, postback, accountLink, join, …);
 *          a message event is "line.message.<message.type>" (line.message.text,
 *          line.message.image, …) so `line.message.*` sees every message once;
 *          a type that is not a valid topic word becomes "line.unknown".
 *   uid    webhookEventId; without one, "sha256:<hex of the event's JSON>"
 *          so a redelivered copy still deduplicates.
 *   user   source.userId when present (groups and rooms may have none).
 *   json   the event object's bytes as LINE sent them, without the whitespace
 *          between tokens (strings, escapes and numbers untouched).
 * Unknown event types and events without a user are kept, never dropped.
 *
 * Thread: any; no shared state.
 */
#ifndef KIZUNA_CORE_WEBHOOK_H
#define KIZUNA_CORE_WEBHOOK_H

#include <stddef.h>

#include "bus.h"

/* 1 when signature (the header's value, may be NULL) is valid for body. */
int webhook_signature_ok(const char *channel_secret, const char *body, size_t len,
                         const char *signature);

/* base64(HMAC-SHA256(secret, body)) into out (at least 45 bytes). */
void webhook_sign(const char *channel_secret, const char *body, size_t len, char out[45]);

/* The events of one request, owning every string its msgs point to. */
typedef struct webhook_batch {
    bus_msg *msgs;
    size_t n;
    void *priv; /* parsed document and owned strings */
} webhook_batch;

/* Parses body (already authenticated) for shop. KZ_EINVAL with the reason in
 * err when it is not JSON (RFC 8259, RFC 3629 UTF-8, nesting at most 32
 * deep as json-c parses by default), not an object, or lacks an "events"
 * array (an element that is not an object is also KZ_EINVAL: LINE never
 * sends one).
 * An empty "events" array (LINE's verify request) gives n == 0. KZ_ETOOBIG
 * when one event is over KZ_PAYLOAD_MAX (possible only with a raised
 * kizuna.max_body): the ingress answers 413. */
int webhook_parse(const char *shop, const char *body, size_t len, webhook_batch *out, char *err,
                  size_t errlen);
void webhook_batch_free(webhook_batch *b);

#endif
