/*
 * friendcli — the friend registry on the command line (docs/friends.md):
 *
 *   kizuna friends -c FILE SHOP [--segment EXPR] [--json]
 *   kizuna friend  -c FILE SHOP USER [--json]
 *   kizuna tag     -c FILE SHOP USER +vip -trial …
 *
 * friends streams the shop's friends in user id order (memory does not grow
 * with their number), filtered by a segment expression compiled once; a bad
 * expression is reported with its column. --json prints one object a line.
 * tag adds (+name or name) and removes (-name) tags in one transaction with
 * a friend.tagged / friend.untagged event per change, which the running
 * daemon hands to plugins like any stored event.
 *
 * Each function prints its own output and errors and returns the process
 * exit code: 0 ok, 1 failure, 2 usage. Ownership: c is borrowed.
 * Thread: main (the segment's "now" is computed with TZ set to the shop's
 * time zone, which is process-wide).
 */
#ifndef KIZUNA_CORE_FRIENDCLI_H
#define KIZUNA_CORE_FRIENDCLI_H

#include "config.h"

int friendcli_list(const cfg *c, const char *shop, const char *segment_expr, int json);
int friendcli_show(const cfg *c, const char *shop, const char *user, int json);
int friendcli_tag(const cfg *c, const char *shop, const char *user, char *const *ops, int nops);

#endif
