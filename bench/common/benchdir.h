/*
 * benchdir — the scratch directory of a benchmark run: made under /tmp
 * unless the user gave one (--dir), and removed at the end only when the
 * benchmark made it. A 1,000,000-friend run leaves over a gigabyte of
 * database behind otherwise.
 *
 * Header-only (benchmarks are single programs). Thread: main.
 */
#ifndef KIZUNA_BENCH_BENCHDIR_H
#define KIZUNA_BENCH_BENCHDIR_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Fills dir (cap bytes) with a new /tmp/kz-bench-NAME-XXXXXX unless it
 * already names one (made if missing, kept afterwards); returns 1 when it
 * made a temporary one, 0 for a given one, -1 when it cannot be made. */
static inline int bench_dir_make(char *dir, size_t cap, const char *name)
{
    if (dir[0] != '\0')
        return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
    snprintf(dir, cap, "/tmp/kz-bench-%s-XXXXXX", name);
    return mkdtemp(dir) != NULL ? 1 : -1;
}

static inline int bench_dir_unlink(const char *path, const struct stat *sb, int flag,
                                   struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything in it when made is 1. */
static inline void bench_dir_done(const char *dir, int made)
{
    if (made == 1 && nftw(dir, bench_dir_unlink, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
}

#endif
