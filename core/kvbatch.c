#include "kvbatch.h"

#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

int kvbatch_add(kvbatch *kb, int64_t inst, const char *key, int64_t delta)
{
    for (size_t i = 0; i < kb->n; i++) {
        kvbatch_item *it = &kb->item[i];
        if (it->inst != inst || strcmp(it->key, key) != 0)
            continue;
        if ((delta > 0 && it->delta > INT64_MAX - delta) ||
            (delta < 0 && it->delta < INT64_MIN - delta))
            return KZ_ETOOBIG;
        it->delta += delta;
        return 0;
    }
    if (kb->n == KVBATCH_MAX)
        return KZ_ETOOBIG;
    char *copy = strdup(key);
    if (copy == NULL)
        return KZ_ENOMEM;
    kb->item[kb->n++] = (kvbatch_item){.inst = inst, .delta = delta, .key = copy};
    return 0;
}

static int matches(const kvbatch_item *it, int64_t inst, const char *key)
{
    return inst < 0 || (it->inst == inst && (key == NULL || strcmp(it->key, key) == 0));
}

int kvbatch_holds(const kvbatch *kb, int64_t inst, const char *key)
{
    for (size_t i = 0; i < kb->n; i++)
        if (matches(&kb->item[i], inst, key))
            return 1;
    return 0;
}

int kvbatch_flush(kvbatch *kb, store *st, int64_t inst, const char *key, char *err, size_t errlen)
{
    int rc = 0;
    size_t kept = 0;
    for (size_t i = 0; i < kb->n; i++) {
        kvbatch_item *it = &kb->item[i];
        if (!matches(it, inst, key)) {
            kb->item[kept++] = *it;
            continue;
        }
        /* a zero sum still writes: kz_kv_incr by 0 creates the counter */
        if (rc == 0)
            rc = store_kv_incr(st, it->inst, it->key, it->delta, NULL, err, errlen);
        free(it->key);
    }
    kb->n = kept;
    if (rc != 0)
        kvbatch_clear(kb);
    return rc;
}

void kvbatch_clear(kvbatch *kb)
{
    for (size_t i = 0; i < kb->n; i++)
        free(kb->item[i].key);
    kb->n = 0;
}
