/*
 * procmem — the process's anonymous resident memory, for the benchmarks'
 * "memory independent of N" checks. Peak RSS (getrusage) also counts the
 * database file the store maps (mmap_size): it grows with the file and is
 * page cache the kernel may drop, not memory the program holds.
 *
 * Header-only (benchmarks are single programs). Thread: any.
 */
#ifndef KIZUNA_BENCH_PROCMEM_H
#define KIZUNA_BENCH_PROCMEM_H

#include <stdio.h>

/* RssAnon from /proc/self/status in MiB, or -1. */
static inline long proc_anon_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

#endif
