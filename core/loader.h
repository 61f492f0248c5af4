/*
 * loader — finds, opens and checks plugin shared objects.
 *
 * A plugin NAME is the file NAME.so in the first directory of the plugin
 * path that has it. It is opened with dlopen(RTLD_NOW | RTLD_LOCAL) and
 * never dlclose()d (late callbacks into unmapped code are worse than a few
 * pages of memory). It is refused, with one line
 *
 *   plugin 'NAME' (PATH): REASON
 *
 * and the other plugins keep working, when:
 * - the file or its directory is writable by group or others;
 * - dlopen fails (dlerror's text, plus a hint to check dependencies with ldd);
 * - it has no kizuna_plugin_v1 (if it has kizuna_plugin_vN, N > 1:
 *   "built for ABI N, host has ABI 1.M");
 * - the entry returns NULL;
 * - the descriptor's struct_size is below the ABI 1.0 descriptor size;
 * - abi_major differs from the host's, or abi_minor is newer (both versions
 *   named);
 * - name is missing, not [a-z0-9_]+, or differs from the file name;
 * - a plugin of that name is already loaded (from another file);
 * - the mandatory `handle` callback is NULL;
 * - a subscription pattern (topic_pattern_valid) or settings-schema entry is
 *   malformed;
 * - load() returns an error (its err text is quoted).
 *
 * Ownership: the loader owns every `plugin`; pointers stay valid until
 * loader_free. Thread: main thread only.
 */
#ifndef KIZUNA_CORE_LOADER_H
#define KIZUNA_CORE_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/plugin.h>

typedef struct plugin {
    kz_plugin desc;     /* zeroed, then min(struct_size, sizeof) copied */
    const char *name;   /* == desc.name */
    const char *path;   /* absolute or as found on the path */
    uint32_t abi_major; /* as declared by the plugin */
    uint32_t abi_minor;
    void *state; /* from load() */
    void *dl;    /* dlopen handle; never closed */
} plugin;

typedef struct loader loader;

/* host: the table handed to every plugin's entry function. */
int loader_new(const kz_host *host, loader **out);
/* Calls unload() of every loaded plugin (reverse load order). No dlclose. */
void loader_free(loader *l);

/* Loads NAME from the first directory in path[0..npath) holding NAME.so.
 * Already loaded: returns the same plugin. Not found: KZ_ENOTFOUND with
 * "plugin 'NAME': not found (no NAME.so in DIR1, DIR2)". Refused: KZ_EINVAL
 * with the refusal line in err. */
int loader_load_name(loader *l, const char *name, const char *const *path, size_t npath,
                     const plugin **out, char *err, size_t errlen);

/* Loads one file (the name is taken from the file name). */
int loader_load_file(loader *l, const char *file, const plugin **out, char *err, size_t errlen);

/* Loads every *.so in each directory of the path, in directory order and
 * name order inside a directory; a name seen in an earlier directory is
 * refused as a duplicate. Calls cb once per file with the plugin or with the
 * refusal line (plugin NULL). Returns the number of refusals. */
typedef void (*loader_scan_cb)(void *arg, const plugin *p, const char *refusal);
int loader_scan(loader *l, const char *const *path, size_t npath, loader_scan_cb cb, void *arg);

size_t loader_count(const loader *l);
const plugin *loader_at(const loader *l, size_t i);
const plugin *loader_find(const loader *l, const char *name);

#endif
