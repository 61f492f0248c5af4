/*
 * broadcastcli — segment broadcasts on the command line (docs/broadcast.md):
 *
 *   kizuna broadcast  -c FILE SHOP --segment EXPR --message FILE.json
 *                     [--at TIME] [--dry-run] [--force] [--no-wait]
 *   kizuna broadcast  -c FILE SHOP --cancel ID
 *   kizuna broadcasts -c FILE SHOP [--json]
 *
 * broadcast checks the messages (LINE's rules, 1..5) and the segment
 * (with its column), counts the recipients by streaming the registry,
 * reads the monthly quota and consumption from the shop's Messaging API
 * (or the sandbox), and prints them on --dry-run. Otherwise it refuses a
 * send that would go over the remaining quota (unless --force), stores a
 * broadcast.requested event for the core.broadcast instance (broadcast.h)
 * that the running daemon picks up, prints the broadcast id and, unless
 * --no-wait, a progress bar until every chunk is queued. --cancel stores a
 * broadcast.cancel. broadcasts reports each broadcast with its outbox rows
 * (sent, failed, pending).
 *
 * Each function prints its own output and errors and returns the process
 * exit code: 0 ok, 1 failure (or refused), 2 usage. Ownership: c and o are
 * borrowed. Thread: main.
 */
#ifndef KIZUNA_CORE_BROADCASTCLI_H
#define KIZUNA_CORE_BROADCASTCLI_H

#include <stddef.h>

#include "config.h"

typedef struct broadcast_opts {
    const char *segment; /* --segment EXPR */
    const char *message; /* --message FILE: a JSON array of 1..5 messages (or one) */
    const char *at;      /* --at TIME: ISO 8601 with its zone, in the future */
    const char *cancel;  /* --cancel ID */
    int dry_run, force, no_wait;
    /* --promotional: the shop's delivery policy (docs/delivery.md) holds,
     * defers or drops recipients; --priority N (-1000..1000, default 0)
     * and --over-cap defer|drop (default defer) only with it */
    int promotional;
    const char *priority, *over_cap;
    const char *api_base; /* NULL: the shop's line.api (the sandbox's listen
                             address for "sandbox"); tests set their own */
    char *id_out;         /* the queued broadcast's id, when not NULL */
    size_t id_len;
} broadcast_opts;

int broadcastcli_send(const cfg *c, const char *shop, const broadcast_opts *o);
int broadcastcli_report(const cfg *c, const char *shop, int json);

#endif
