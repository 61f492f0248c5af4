#include "inflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kizuna/host.h>

#define MAGIC 0x6b7a696e666c7431ULL /* "kzinflt1" */

typedef struct slot {
    volatile int64_t instance;
    volatile int64_t event;
} slot;

typedef struct header {
    uint64_t magic;
    uint64_t nslots;
} header;

struct inflight {
    header *h;
    slot *slots;
    size_t size;
    int nslots;
};

int inflight_open(const char *path, int slots, inflight **out, char *err, size_t errlen)
{
    size_t size = sizeof(header) + (size_t)slots * sizeof(slot);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)(size > 4096 ? size : 4096)) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KZ_EIO;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    inflight *f = calloc(1, sizeof *f);
    if (map == MAP_FAILED || f == NULL) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        if (map != MAP_FAILED)
            munmap(map, size);
        free(f);
        return KZ_EIO;
    }
    f->h = map;
    f->slots = (slot *)(f->h + 1);
    f->size = size;
    f->nslots = slots;
    /* A file from another layout (or none) holds nothing to recover. */
    if (f->h->magic != MAGIC || f->h->nslots > (uint64_t)slots) {
        memset(map, 0, size);
        f->h->magic = MAGIC;
    }
    f->h->nslots = (uint64_t)slots;
    *out = f;
    return 0;
}

void inflight_close(inflight *f)
{
    if (f == NULL)
        return;
    /* Slots are left as they are: after a clean stop every worker has left
     * its slot already, and a second daemon refused by the store lock must
     * not wipe the first one's. */
    munmap(f->h, f->size);
    free(f);
}

int inflight_take(inflight *f, void (*cb)(void *arg, int64_t instance, int64_t event), void *arg)
{
    int n = 0;
    for (int i = 0; f != NULL && i < f->nslots; i++) {
        if (f->slots[i].instance == 0)
            continue;
        cb(arg, f->slots[i].instance, f->slots[i].event);
        inflight_leave(f, i);
        n++;
    }
    return n;
}

void inflight_enter(inflight *f, int slot_index, int64_t instance, int64_t event)
{
    if (f == NULL)
        return;
    f->slots[slot_index].event = event;
    f->slots[slot_index].instance = instance;
}

void inflight_leave(inflight *f, int slot_index)
{
    if (f == NULL)
        return;
    f->slots[slot_index].instance = 0;
    f->slots[slot_index].event = 0;
}
