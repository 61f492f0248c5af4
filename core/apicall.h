/*
 * apicall — the line_call host slot: a plugin's Messaging API call (profile,
 * rich menus, link tokens, quota, …) checked and queued as outbox rows of
 * kind OUTBOX_CALL in the handler's transaction; core/sender.c makes the
 * calls after the commit and publishes api.done / api.failed.
 *
 * What is refused (KZ_EINVAL, with one log line naming the event): a method
 * other than GET, POST, PUT or DELETE; a path that does not start with
 * /v2/bot/ or /bot/, holds characters outside RFC 3986's or a "..", or is
 * one of the message-sending endpoints (kz_line_send validates messages and
 * fixes a retry key, line_call would do neither); a body with GET; a JSON
 * body that does not parse; users without a JSON object body, or with an id
 * that is not a user id; a tag over 100 bytes. A body over KZ_PAYLOAD_MAX
 * is KZ_ETOOBIG.
 *
 * Ownership: the request is only read during the call.
 * Thread: handler (the slot's own rule, see kizuna/host.h).
 */
#ifndef KIZUNA_CORE_APICALL_H
#define KIZUNA_CORE_APICALL_H

#include <stdint.h>

#include <kizuna/host.h>

int apicall_queue(kz_ctx *ctx, const kz_line_call *req, int64_t *outbox_id);

#endif
