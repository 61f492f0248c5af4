/*
 * daemon — prepares a configuration with its plugins (the common first step
 * of `check`, `plugins` and `serve`) and runs `kizuna serve`.
 *
 * Ownership: app owns its cfg, loader and diag; app_free releases them.
 * Thread: main thread.
 */
#ifndef KIZUNA_CORE_DAEMON_H
#define KIZUNA_CORE_DAEMON_H

#include "config.h"
#include "diag.h"
#include "loader.h"

struct bus;
struct bus_options;

typedef struct app {
    cfg *c;
    loader *l;
    diag d;         /* every problem found, one check-style line each */
    int open_shops; /* app_prepare also runs each plugin's shop_open checks */
} app;

/* Loads the config, loads every plugin a shop enables and checks each
 * plugin's setting against its schema; with open_shops, also runs each
 * plugin's shop_open (and shop_close) so its own checks are reported (what
 * `kizuna check` does; `serve` opens shops for real instead, and a failing
 * shop_open there disables the plugin for that shop only). Returns the
 * number of problems (also in a->d); a->c may be NULL when the file could
 * not be parsed. */
size_t app_prepare(app *a, const char *config_path, int open_shops);
void app_free(app *a);

/* Bus options from the config's kizuna group. */
struct bus_options app_bus_options(const cfg *c);

/* Opens the core's friends instance (friends.h) and every enabled plugin
 * for every shop on the bus. A failing shop_open disables that plugin for
 * that shop (logged) and the rest go on. Returns the number of plugin
 * instances opened (the friends instances not counted), or < 0 when the
 * store fails. */
int app_open_instances(const app *a, struct bus *b);

typedef struct serve_opts {
    const char *clock; /* NULL or "real"; "virtual" (now) or "virtual:TIME" */
} serve_opts;

/* Runs until SIGINT or SIGTERM. Returns the process exit code: 0 after a
 * clean stop, 1 when the config is refused, 2 when start-up fails. */
int daemon_serve(const char *config_path, const serve_opts *o);

#endif
