/*
 * inflight — remembers which handler each worker is running, in a small
 * memory-mapped file, so that after the process dies the next start knows
 * which (instance, event) pair was being handled.
 *
 * A plugin crash is a process crash: in-process hosting cannot isolate it.
 * Without this, an event that makes a plugin crash would crash the daemon
 * again at every restart. The bus counts such a death as a failed attempt of
 * that handler (backoff, then a dead letter), so a poison event ends parked
 * and every other shop and plugin keeps running.
 *
 * Writes are plain stores into a MAP_SHARED mapping: they reach the page
 * cache without a system call and outlive the process (not a power loss,
 * which is not a plugin crash). A clean stop leaves every slot empty because
 * each handler call leaves its slot when it returns.
 *
 * Thread: slot i is written only by worker i; open/close/take on the main
 * thread.
 */
#ifndef KIZUNA_CORE_INFLIGHT_H
#define KIZUNA_CORE_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

typedef struct inflight inflight;

/* Maps `path` (created if missing) with room for `slots` workers. */
int inflight_open(const char *path, int slots, inflight **out, char *err, size_t errlen);
/* Unmaps. NULL is fine. */
void inflight_close(inflight *f);

/* Calls cb for each pair left by a process that died mid-handler, then
 * clears the slots. Returns the number of pairs. */
int inflight_take(inflight *f, void (*cb)(void *arg, int64_t instance, int64_t event), void *arg);

/* Marks worker `slot` as running instance × event; leave clears it. */
void inflight_enter(inflight *f, int slot, int64_t instance, int64_t event);
void inflight_leave(inflight *f, int slot);

#endif
