#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_add(diag *d, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **lines = realloc(d->lines, cap * sizeof *lines);
        if (lines == NULL) {
            d->dropped++;
            return;
        }
        d->lines = lines;
        d->cap = cap;
    }
    d->lines[d->n] = strdup(buf);
    if (d->lines[d->n] == NULL) {
        d->dropped++;
        return;
    }
    d->n++;
}

size_t diag_count(const diag *d)
{
    return d->n + d->dropped;
}

void diag_print(const diag *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(out, "%s\n", d->lines[i]);
    if (d->dropped > 0)
        fprintf(out, "(%zu more errors lost: out of memory)\n", d->dropped);
}

void diag_free(diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->lines[i]);
    free(d->lines);
    memset(d, 0, sizeof *d);
}
