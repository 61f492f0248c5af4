/*
 * broadcast — the core's built-in bus instance `core.broadcast` of every
 * shop: segment broadcasts (docs/broadcast.md) sent as multicasts of up to
 * 500 recipients through the outbox, up to BROADCAST_ROWS_PER_CALL of them
 * per handler call.
 *
 *   broadcast.requested {"id","segment","messages","requestedBy","estimate",
 *                        "notBefore"?}
 *        creates the broadcast's record and queues its first chunks, or,
 *        with notBefore in the future, records it "scheduled" and sets the
 *        durable timer "broadcast:<id>" that publishes broadcast.continue
 *        then
 *   broadcast.continue  {"id"}   queues the next chunk
 *   broadcast.cancel    {"id"}   no chunk is queued after this one
 *   broadcast.done      {"id","state","recipients","chunks"}   published
 *
 * A handler call takes the next friends after the record's cursor (user
 * order, following only) that the segment matches, up to 500 ×
 * BROADCAST_ROWS_PER_CALL, as multicast outbox rows of 500 ("chunks")
 * tagged "broadcast:<id>"; the cursor and counters; the next event. All of
 * it is written in the handler's transaction, so a crash keeps a whole call's
 * rows or none of them: each recipient is queued exactly once, and the
 * outbox's retry key makes the send itself exactly once.
 *
 * The record is the instance's kv value "broadcast:<id>", a JSON object:
 * id, segment, messages (array), requestedBy, requestedAt (ms), estimate,
 * cursor, recipients, chunks, state (queued, sending, done, cancelled,
 * failed), error. The CLI reads it for progress and the report.
 *
 * Ownership: the plugin record is static; broadcast_plugin borrows cfg,
 * which must outlive the bus. Thread: broadcast_plugin from the main
 * thread before the bus starts; the handler on the bus's workers.
 */
#ifndef KIZUNA_CORE_BROADCAST_H
#define KIZUNA_CORE_BROADCAST_H

#include "config.h"
#include "loader.h"

#define BROADCAST_INSTANCE "core.broadcast"
#define BROADCAST_CHUNK 500  /* recipients per multicast (LINE's limit) */
#define BROADCAST_SCAN 50000 /* friends examined per handler call at most */
/* Multicasts queued per handler call at most: one event a call would cap a
 * broadcast at the bus's event rate (tens a second), far below LINE's
 * 200 multicasts a second; ten keep the sender ahead of the limit while a
 * call's transaction stays small (5,000 ids). */
#define BROADCAST_ROWS_PER_CALL 10
#define BROADCAST_KEY "broadcast:" /* kv key and outbox tag prefix */
#define BROADCAST_ID_MAX 64

/* The built-in plugin record to pass to bus_add_instance for every shop. */
const plugin *broadcast_plugin(const cfg *c);

#endif
