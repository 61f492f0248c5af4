/*
 * kvbatch — counter increments summed over a bus batch, written once.
 *
 * A plugin that counts (kz_kv_incr without asking for the result) usually
 * moves the same few counters on every event: "sent", "waiting". Each
 * increment is a read and a write of the row; over a batch of events they
 * add up to one change a counter. In a batch run without savepoints
 * (bus.h), host.c hands such increments here, and they are written before
 * anything else touches the same key (a read must see them) and before the
 * batch commits. A write that fails then (a value that is not a number, an
 * overflow) makes the bus run the batch again carefully, where increments
 * go straight to the store and the failing handler gets its error as
 * before.
 *
 * A kvbatch lives in one worker's kz_ctx; only that worker thread uses it.
 * Keys are copied.
 */
#ifndef KIZUNA_KVBATCH_H
#define KIZUNA_KVBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define KVBATCH_MAX 32 /* distinct counters held before a flush */

typedef struct kvbatch_item {
    int64_t inst;
    int64_t delta;
    char *key;
} kvbatch_item;

typedef struct kvbatch {
    size_t n;
    kvbatch_item item[KVBATCH_MAX];
} kvbatch;

/* Adds delta to (inst, key). 0; KZ_ETOOBIG when the batch is full or the
 * sum would overflow (flush, then add again); KZ_ENOMEM. */
int kvbatch_add(kvbatch *kb, int64_t inst, const char *key, int64_t delta);
/* 1 when an increment of (inst, key) is held; key NULL: any of inst's;
 * inst < 0: any at all. */
int kvbatch_holds(const kvbatch *kb, int64_t inst, const char *key);
/* Writes the increments kvbatch_holds would match into the open
 * transaction and forgets them; on an error the rest are forgotten too
 * (the batch is rolled back). 0 or the store's error. */
int kvbatch_flush(kvbatch *kb, store *st, int64_t inst, const char *key, char *err, size_t errlen);
/* Forgets every increment held (a rolled-back batch). */
void kvbatch_clear(kvbatch *kb);

#endif
