/*
 * idlist — repeated ids in a list of LINE ids. A user listed twice in a
 * multicast receives once from LINE; kizuna must not split the repeats
 * into two requests (two messages) nor count them twice against a cap.
 *
 * Thread: any. Pointers are the caller's; nothing is kept.
 */
#ifndef KIZUNA_CORE_IDLIST_H
#define KIZUNA_CORE_IDLIST_H

#include <stddef.h>

typedef struct idlist_entry {
    const char *id;
    size_t place; /* its index in the list */
} idlist_entry;

/* Sorts e[0..n) by id, then by place, so the repeats of an id follow its
 * first listing: n log n comparisons, not n². */
void idlist_sort(idlist_entry *e, size_t n);

/* Copies ids[0..n) into out (room for n) without repeats, keeping each
 * id's first place, and sets *nout. 0 or KZ_ENOMEM. */
int idlist_unique(const char *const *ids, size_t n, const char **out, size_t *nout);

#endif
