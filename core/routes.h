/*
 * routes — the registry of plugin HTTP routes, /shops/<shop>/<plugin>/<path>.
 *
 * A plugin registers its routes from shop_open (host.c's `route` slot); the
 * HTTP threads look one up for every request; the bus removes an instance's
 * routes before its shop_close and waits for the callbacks still running on
 * them, so the plugin's `arg` is never used after shop_close.
 *
 * Patterns: "click" is exactly that path, "orders/" + star any path below
 * "orders/", a lone star any path but the root, "" the root. A request goes
 * to the most specific route that takes its method: an exact path, then
 * the longest prefix; at the same path a route with a method before one
 * with NULL (any). A GET route also takes HEAD. When routes match the path
 * but none takes the method, the lookup says which methods would (Allow).
 *
 * Ownership: the registry copies method and path; owner, shop and plugin
 * are borrowed and must stay valid until routes_remove_owner(owner); fn's
 * arg is the plugin's. A route returned by routes_find is held: it stays
 * valid, and its owner registered, until routes_release.
 *
 * Thread: routes_add and routes_remove_owner on the thread that opens and
 * closes instances (main); routes_find, routes_release, route_owner and
 * route_call from any thread (HTTP threads). Every function is thread-safe.
 */
#ifndef KIZUNA_CORE_ROUTES_H
#define KIZUNA_CORE_ROUTES_H

#include <stddef.h>

#include <kizuna/host.h>

typedef struct routes routes;
typedef struct route route;

int routes_new(routes **out, char *err, size_t errlen);
/* Frees every route left. No route may be held. NULL is fine. */
void routes_free(routes *r);

/* 0 when method (NULL, or 1..16 of A-Z) and path are well-formed; KZ_EINVAL
 * with the reason otherwise. Path: relative (no leading '/'), at most 256
 * bytes, no empty, "." or ".." segment, no control byte, '?' or '#', a star
 * only as the whole last segment. */
int routes_check(const char *method, const char *path, char *err, size_t errlen);

/* 1 when a request's path (below the plugin's root) may reach a route: no
 * empty, "." or ".." segment. */
int routes_request_path_ok(const char *path);

/* Registers fn(req, arg) for shop's plugin. KZ_EINVAL (routes_check, or
 * NULL fn), KZ_EEXIST when owner already has method + path, KZ_ENOMEM. */
int routes_add(routes *r, kz_shop *owner, const char *shop, const char *plugin, const char *method,
               const char *path, kz_route_fn fn, void *arg, char *err, size_t errlen);

/* Unregisters owner's routes at once (new lookups miss them), then waits
 * until every holder of one has released it. */
void routes_remove_owner(routes *r, const kz_shop *owner);

/* Routes owner has (NULL: all owners). */
size_t routes_count(routes *r, const kz_shop *owner);

typedef enum route_lookup {
    ROUTE_FOUND,     /* *held is set: routes_release it */
    ROUTE_NO_PATH,   /* no route of shop's plugin matches the path */
    ROUTE_NO_METHOD, /* routes match the path; allow lists their methods */
} route_lookup;

/* Finds the route for a request. allow (may be NULL) gets "GET, HEAD, POST"
 * style text for ROUTE_NO_METHOD, "" otherwise. */
route_lookup routes_find(routes *r, const char *shop, const char *plugin, const char *path,
                         const char *method, route **held, char *allow, size_t allowlen);
void routes_release(routes *r, route *rt);

/* The instance the route belongs to (held route). */
kz_shop *route_owner(const route *rt);
/* Calls the plugin's function (held route). */
void route_call(const route *rt, kz_http *req);

#endif
