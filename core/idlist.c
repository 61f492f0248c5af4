#include "idlist.h"

#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

static int by_id_then_place(const void *a, const void *b)
{
    const idlist_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->place > y->place) - (x->place < y->place);
}

void idlist_sort(idlist_entry *e, size_t n)
{
    qsort(e, n, sizeof *e, by_id_then_place);
}

int idlist_unique(const char *const *ids, size_t n, const char **out, size_t *nout)
{
    idlist_entry *e = malloc((n ? n : 1) * sizeof *e);
    unsigned char *repeat = calloc(n ? n : 1, 1);
    if (e == NULL || repeat == NULL) {
        free(e);
        free(repeat);
        return KZ_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        e[i] = (idlist_entry){ids[i], i};
    idlist_sort(e, n);
    for (size_t i = 1; i < n; i++)
        repeat[e[i].place] = strcmp(e[i].id, e[i - 1].id) == 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!repeat[i])
            out[k++] = ids[i];
    *nout = k;
    free(e);
    free(repeat);
    return 0;
}
