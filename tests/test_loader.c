/*
 * test_loader — the plugin loader against real fixture plugins.
 *
 * Every fixture is copied into a private temp directory (mode 0700, files
 * 0644) before it is loaded, so the permission check sees the modes the test
 * chose and not the build tree's umask. Refusals are compared as whole lines,
 * real path included, because the line is what an operator reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fx_state.h"
#include "loader.h"

/* ---- a fake host: only the header and log are set ----------------------- */

#define MAX_LOG 32
static char logged[MAX_LOG][128];
static size_t nlogged;

static void fake_log(int level, const char *msg)
{
    (void)level;
    if (nlogged < MAX_LOG)
        snprintf(logged[nlogged++], sizeof logged[0], "%s", msg);
}

static kz_host host;

static void reset_host(void)
{
    memset(&host, 0, sizeof host);
    host.abi_major = KZ_ABI_MAJOR;
    host.abi_minor = KZ_ABI_MINOR;
    host.struct_size = sizeof host;
    host.log = fake_log;
    nlogged = 0;
}

/* ---- temp directories and staged fixtures -------------------------------- */

static char root[256];
static int ndirs;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700); /* a test may have left a directory read-only */
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "%s/kz-loader-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(root) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int test_setup(void **state)
{
    (void)state;
    reset_host();
    return 0;
}

/* A new empty directory under root, mode 0700. */
static void new_dir(char *out, size_t size)
{
    assert_true(snprintf(out, size, "%s/d%d", root, ++ndirs) < (int)size);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0); /* exactly mode, whatever the umask */
    assert_int_equal(close(fd), 0);
}

/* Copies fixture NAME.so into dir as FILE (NULL: NAME.so) with mode. */
static void stage_as(const char *dir, const char *name, const char *file, mode_t mode, char *out,
                     size_t size)
{
    char src[512];
    snprintf(src, sizeof src, "%s/%s.so", KZ_FIXTURE_PLUGIN_DIR, name);
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    static char buf[4 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    assert_true(len > 0 && len < sizeof buf);
    fclose(f);
    if (file != NULL)
        snprintf(out, size, "%s/%s", dir, file);
    else
        snprintf(out, size, "%s/%s.so", dir, name);
    write_file(out, buf, len, mode);
}

static void stage(const char *dir, const char *name, char *out, size_t size)
{
    stage_as(dir, name, NULL, 0644, out, size);
}

static void assert_line(const char *err, const char *fmt, ...) KZ_PRINTF(2, 3);
static void assert_line(const char *err, const char *fmt, ...)
{
    char want[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    assert_string_equal(err, want);
}

static loader *new_loader(void)
{
    loader *l = NULL;
    assert_int_equal(loader_new(&host, &l), KZ_OK);
    assert_non_null(l);
    return l;
}

/* ---- a good plugin ------------------------------------------------------- */

static void test_good_plugin_loads_once(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, "fx_ok", path, sizeof path);
    loader *l = new_loader();
    const char *const search[] = {dir};

    const plugin *p = NULL;
    assert_int_equal(loader_load_name(l, "fx_ok", search, 1, &p, err, sizeof err), KZ_OK);
    assert_non_null(p);
    assert_string_equal(p->name, "fx_ok");
    assert_string_equal(p->path, path);
    assert_int_equal(p->abi_major, KZ_ABI_MAJOR);
    assert_int_equal(p->abi_minor, KZ_ABI_MINOR);
    assert_non_null(p->dl);
    assert_non_null(p->desc.handle);
    assert_string_equal(p->desc.version, "1.0.0");
    assert_string_equal(p->desc.subscriptions[0], "test.*");
    assert_null(p->desc.subscriptions[1]);
    assert_string_equal(p->desc.settings[0].key, "greeting");
    assert_int_equal(p->desc.settings[0].required, 1);

    /* load() ran once, with the host table the loader was given. */
    const fx_state *st = p->state;
    assert_non_null(st);
    assert_string_equal(st->name, "fx_ok");
    assert_ptr_equal(st->host, &host);
    assert_int_equal(st->loads, 1);

    /* The same name or the same file again: the same plugin, no new load. */
    const plugin *again = NULL;
    assert_int_equal(loader_load_name(l, "fx_ok", search, 1, &again, err, sizeof err), KZ_OK);
    assert_ptr_equal(again, p);
    assert_int_equal(loader_load_file(l, path, &again, err, sizeof err), KZ_OK);
    assert_ptr_equal(again, p);
    assert_int_equal(st->loads, 1);
    assert_int_equal(loader_count(l), 1);
    assert_ptr_equal(loader_at(l, 0), p);
    assert_null(loader_at(l, 1));
    assert_ptr_equal(loader_find(l, "fx_ok"), p);
    assert_null(loader_find(l, "fx_other"));

    /* unload() at loader_free; the code stays mapped (no dlclose), so the
     * plugin's static state can still be read afterwards. */
    loader_free(l);
    assert_int_equal(st->unloads, 1);
    assert_int_equal(st->loads, 1);
    assert_int_equal(nlogged, 2);
    assert_string_equal(logged[0], "fx_ok load");
    assert_string_equal(logged[1], "fx_ok unload");
}

/* The frozen fixture was compiled against tests/abi/v1.0 only. */
static void test_frozen_abi_1_0_plugin_loads(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, "fx_frozen_v1_0", path, sizeof path);
    loader *l = new_loader();

    const plugin *p = NULL;
    assert_int_equal(loader_load_file(l, path, &p, err, sizeof err), KZ_OK);
    assert_string_equal(err, "");
    assert_string_equal(p->name, "fx_frozen_v1_0");
    assert_int_equal(p->abi_major, 1);
    assert_int_equal(p->abi_minor, 0);
    assert_int_equal(p->desc.struct_size, 112);
    assert_non_null(p->desc.shop_open);
    assert_non_null(p->desc.shop_close);
    assert_string_equal(p->desc.settings[1].key, "every");
    assert_int_equal(p->desc.settings[1].type, KZ_SETTING_DURATION);
    const fx_state *st = p->state;
    assert_ptr_equal(st->host, &host);
    assert_int_equal(st->loads, 1);
    /* Its kz_log wrapper reached our table through kz_host_api. */
    assert_int_equal(nlogged, 1);
    assert_string_equal(logged[0], "fx_frozen_v1_0 load (ABI 1.0)");

    loader_free(l);
    assert_int_equal(st->unloads, 1);
    assert_string_equal(logged[1], "fx_frozen_v1_0 unload");
}

/* Compiled against tests/abi/v1.1 only: a 1.1 plugin in this host. */
static void test_frozen_abi_1_1_plugin_loads(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, "fx_frozen_v1_1", path, sizeof path);
    loader *l = new_loader();
    const plugin *p = NULL;
    assert_int_equal(loader_load_file(l, path, &p, err, sizeof err), KZ_OK);
    assert_string_equal(p->name, "fx_frozen_v1_1");
    assert_int_equal(p->abi_major, 1);
    assert_int_equal(p->abi_minor, 1);
    assert_non_null(p->desc.handle);
    loader_free(l);
}

/* Compiled against tests/abi/v1.2 only: a 1.2 plugin in this host. */
static void test_frozen_abi_1_2_plugin_loads(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, "fx_frozen_v1_2", path, sizeof path);
    loader *l = new_loader();
    const plugin *p = NULL;
    assert_int_equal(loader_load_file(l, path, &p, err, sizeof err), KZ_OK);
    assert_string_equal(p->name, "fx_frozen_v1_2");
    assert_int_equal(p->abi_major, 1);
    assert_int_equal(p->abi_minor, 2);
    assert_non_null(p->desc.shop_open);
    loader_free(l);
}

/* Loads fixture `name`, built against the frozen headers of ABI 1.<minor>
 * only, and checks the loader records that minor. */
static void expect_frozen_loads(const char *name, uint32_t minor)
{
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, name, path, sizeof path);
    loader *l = new_loader();
    const plugin *p = NULL;
    assert_int_equal(loader_load_file(l, path, &p, err, sizeof err), KZ_OK);
    assert_string_equal(p->name, name);
    assert_int_equal(p->abi_minor, minor);
    loader_free(l);
}

/* Compiled against tests/abi/v1.N only: a 1.N plugin in this host. */
static void test_frozen_abi_1_3_plugin_loads(void **state)
{
    (void)state;
    expect_frozen_loads("fx_frozen_v1_3", 3);
}

static void test_frozen_abi_1_4_plugin_loads(void **state)
{
    (void)state;
    expect_frozen_loads("fx_frozen_v1_4", 4);
}

static void test_frozen_abi_1_5_plugin_loads(void **state)
{
    (void)state;
    expect_frozen_loads("fx_frozen_v1_5", 5);
}

/* ---- refusals ------------------------------------------------------------ */

typedef struct refusal {
    const char *fixture;
    int rc;
    const char *reason;
} refusal;

#define SIZE_1_0 (offsetof(kz_plugin, settings) + sizeof(void *))
#define STR_(x) #x
#define STR(x) STR_(x)
#define HOST_ABI STR(KZ_ABI_MAJOR) "." STR(KZ_ABI_MINOR)

static char minor_new_reason[128];
static char short_reason[128];

static const refusal refusals[] = {
    {"fx_noentry", KZ_EINVAL, "no entry symbol kizuna_plugin_v1"},
    {"fx_major2", KZ_EINVAL, "built for ABI 2, host has ABI " HOST_ABI " — refused"},
    {"fx_nullentry", KZ_EINVAL, "entry kizuna_plugin_v1 returned NULL"},
    {"fx_short", KZ_EINVAL, short_reason},
    {"fx_descmajor2", KZ_EINVAL,
     "built for ABI 2." STR(KZ_ABI_MINOR) ", host has ABI " HOST_ABI " — refused"},
    {"fx_minor_new", KZ_EINVAL, minor_new_reason},
    {"fx_noname", KZ_EINVAL, "descriptor has no name"},
    {"fx_badname", KZ_EINVAL, "name 'Bad-Name' is not [a-z0-9_]+"},
    {"fx_misnamed", KZ_EINVAL, "declares name 'other_name' but the file is 'fx_misnamed.so'"},
    {"fx_nohandler", KZ_EINVAL, "mandatory callback 'handle' is NULL"},
    {"fx_badsub", KZ_EINVAL, "subscription 'a..b' is not a valid topic pattern"},
    {"fx_badtype", KZ_EINVAL, "setting 'mode': unknown type 42"},
    {"fx_badkey", KZ_EINVAL, "setting key 'Bad Key' is not [a-z0-9_]+"},
    {"fx_dupsetting", KZ_EINVAL, "duplicate setting 'mode'"},
    {"fx_reserved", KZ_EINVAL, "setting 'mode': reserved fields must be NULL"},
    {"fx_loadfail", KZ_EINVAL, "load failed: license key missing"},
    {"fx_loadquiet", KZ_EINVAL, "load failed (code -5)"},
};

/* Every refusal in one loader, then a good plugin: the others keep working. */
static void test_each_refusal_then_good_plugin(void **state)
{
    (void)state;
    snprintf(minor_new_reason, sizeof minor_new_reason,
             "built for ABI %d.%d, host has ABI %d.%d — refused", KZ_ABI_MAJOR, KZ_ABI_MINOR + 1,
             KZ_ABI_MAJOR, KZ_ABI_MINOR);
    snprintf(short_reason, sizeof short_reason,
             "descriptor too small (16 bytes; ABI 1.0 needs at least %zu)", (size_t)SIZE_1_0);
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    loader *l = new_loader();

    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const refusal *r = &refusals[i];
        stage(dir, r->fixture, path, sizeof path);
        const plugin *p = (const plugin *)1;
        int rc = loader_load_file(l, path, &p, err, sizeof err);
        print_message("%s: %s\n", r->fixture, err);
        assert_int_equal(rc, r->rc);
        assert_null(p);
        assert_line(err, "plugin '%s' (%s): %s", r->fixture, path, r->reason);
        assert_null(loader_find(l, r->fixture));
    }
    assert_int_equal(loader_count(l), 0);

    const char *const search[] = {dir};
    stage(dir, "fx_ok", path, sizeof path);
    const plugin *ok = NULL;
    assert_int_equal(loader_load_name(l, "fx_ok", search, 1, &ok, err, sizeof err), KZ_OK);
    assert_int_equal(loader_count(l), 1);
    assert_int_equal(((const fx_state *)ok->state)->loads, 1);
    loader_free(l);
}

static void test_writable_file_refused(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage_as(dir, "fx_ok", NULL, 0666, path, sizeof path);
    loader *l = new_loader();

    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err,
                "plugin 'fx_ok' (%s): file is writable by group or others (mode 0666); fix "
                "with chmod go-w",
                path);
    assert_int_equal(nlogged, 0); /* refused before dlopen: no plugin code ran */

    assert_int_equal(chmod(path, 0644), 0); /* the advice works */
    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_OK);
    loader_free(l);
}

static void test_writable_directory_refused(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    stage(dir, "fx_ok", path, sizeof path);
    assert_int_equal(chmod(dir, 0770), 0);
    loader *l = new_loader();

    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err,
                "plugin 'fx_ok' (%s): directory %s is writable by group or others (mode 0770); "
                "fix with chmod go-w",
                path, dir);
    assert_int_equal(nlogged, 0);
    assert_int_equal(chmod(dir, 0700), 0);
    loader_free(l);
}

static void test_dlopen_failure_quotes_dlerror(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/junk.so", dir);
    static const char junk[] = "this is not an ELF object, just text long enough to read\n";
    write_file(path, junk, sizeof junk - 1, 0644);
    /* dlerror's wording belongs to the C library: ask it for the reference
     * (a failed dlopen leaves nothing behind). */
    assert_null(dlopen(path, RTLD_NOW | RTLD_LOCAL));
    char why[512];
    snprintf(why, sizeof why, "%s", dlerror());
    loader *l = new_loader();

    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err, "plugin 'junk' (%s): cannot open: %s; check its dependencies with ldd", path,
                why);
    loader_free(l);
}

static void test_missing_and_misnamed_files(void **state)
{
    (void)state;
    char dir[256], path[512], err[1024];
    new_dir(dir, sizeof dir);
    loader *l = new_loader();

    snprintf(path, sizeof path, "%s/absent.so", dir);
    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_ENOTFOUND);
    assert_line(err, "plugin 'absent' (%s): cannot open: No such file or directory", path);

    snprintf(path, sizeof path, "%s/adir.so", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err, "plugin 'adir' (%s): not a regular file", path);

    /* A file name no descriptor could match is refused without dlopen. */
    stage_as(dir, "fx_ok", "Fx-Ok.so", 0644, path, sizeof path);
    assert_int_equal(loader_load_file(l, path, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err,
                "plugin 'Fx-Ok' (%s): file name 'Fx-Ok.so' is not <name>.so with a name of "
                "[a-z0-9_]+",
                path);
    assert_int_equal(nlogged, 0);
    loader_free(l);
}

/* ---- the search path ----------------------------------------------------- */

static void test_not_found_names_every_directory(void **state)
{
    (void)state;
    char a[256], b[256], err[1024];
    new_dir(a, sizeof a);
    new_dir(b, sizeof b);
    loader *l = new_loader();
    const char *const search[] = {a, b};

    const plugin *p = (const plugin *)1;
    assert_int_equal(loader_load_name(l, "nope", search, 2, &p, err, sizeof err), KZ_ENOTFOUND);
    assert_null(p);
    assert_line(err, "plugin 'nope': not found (no nope.so in %s, %s)", a, b);

    /* The name becomes a path: nothing but [a-z0-9_]+ gets that far. */
    assert_int_equal(loader_load_name(l, "../nope", search, 2, &p, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "plugin '../nope': name is not [a-z0-9_]+");
    loader_free(l);
}

static void test_first_directory_wins(void **state)
{
    (void)state;
    char a[256], b[256], pa[512], pb[512], err[1024];
    new_dir(a, sizeof a);
    new_dir(b, sizeof b);
    stage(a, "fx_ok", pa, sizeof pa);
    stage(b, "fx_ok", pb, sizeof pb);
    loader *l = new_loader();
    const char *const search[] = {"/nonexistent/kizuna", a, b};

    const plugin *p = NULL;
    assert_int_equal(loader_load_name(l, "fx_ok", search, 3, &p, err, sizeof err), KZ_OK);
    assert_string_equal(p->path, pa);
    /* The copy in b is another file with the same name. */
    assert_int_equal(loader_load_file(l, pb, NULL, err, sizeof err), KZ_EINVAL);
    assert_line(err, "plugin 'fx_ok' (%s): duplicate plugin name 'fx_ok' (already loaded from %s)",
                pb, pa);
    loader_free(l);
}

/* ---- scanning ------------------------------------------------------------ */

typedef struct seen {
    char lines[8][1024];
    size_t n;
} seen;

static void record(void *arg, const plugin *p, const char *refusal)
{
    seen *s = arg;
    assert_true((p == NULL) != (refusal == NULL));
    assert_true(s->n < 8);
    snprintf(s->lines[s->n++], sizeof s->lines[0], "%s %s", p != NULL ? "ok" : "refused",
             p != NULL ? p->name : refusal);
}

static void test_scan_order_and_duplicates(void **state)
{
    (void)state;
    char a[256], b[256], missing[512], path[512], pb[512];
    new_dir(a, sizeof a);
    new_dir(b, sizeof b);
    snprintf(missing, sizeof missing, "%s/missing", root);
    /* Staged out of name order: the scan must sort. */
    stage(a, "fx_ok", path, sizeof path);
    stage(a, "fx_frozen_v1_0", path, sizeof path);
    stage(a, "fx_badsub", path, sizeof path);
    stage(b, "fx_ok", pb, sizeof pb);
    char ignored[512];
    snprintf(ignored, sizeof ignored, "%s/README", a);
    write_file(ignored, "x", 1, 0644);
    loader *l = new_loader();
    const char *const search[] = {a, missing, b};

    seen s = {.n = 0};
    assert_int_equal(loader_scan(l, search, 3, record, &s), 2);
    assert_int_equal(s.n, 4);
    assert_line(s.lines[0],
                "refused plugin 'fx_badsub' (%s/fx_badsub.so): subscription 'a..b' is not a valid "
                "topic pattern",
                a);
    assert_string_equal(s.lines[1], "ok fx_frozen_v1_0");
    assert_string_equal(s.lines[2], "ok fx_ok");
    assert_line(s.lines[3],
                "refused plugin 'fx_ok' (%s): duplicate plugin name 'fx_ok' (already loaded from "
                "%s/fx_ok.so)",
                pb, a);

    assert_int_equal(loader_count(l), 2);
    assert_string_equal(loader_at(l, 0)->name, "fx_frozen_v1_0");
    assert_string_equal(loader_at(l, 1)->name, "fx_ok");

    /* unload in reverse load order. */
    nlogged = 0;
    loader_free(l);
    assert_int_equal(nlogged, 2);
    assert_string_equal(logged[0], "fx_ok unload");
    assert_string_equal(logged[1], "fx_frozen_v1_0 unload");
}

/* A refused first copy still shadows a later one, as with loader_load_name:
 * the first directory holding NAME.so decides. */
static void test_scan_refused_name_shadows_later_copy(void **state)
{
    (void)state;
    char a[256], b[256], pa[512], pb[512];
    new_dir(a, sizeof a);
    new_dir(b, sizeof b);
    stage_as(a, "fx_ok", NULL, 0666, pa, sizeof pa);
    stage(b, "fx_ok", pb, sizeof pb);
    loader *l = new_loader();
    const char *const search[] = {a, b};

    seen s = {.n = 0};
    assert_int_equal(loader_scan(l, search, 2, record, &s), 2);
    assert_int_equal(s.n, 2);
    assert_line(s.lines[0],
                "refused plugin 'fx_ok' (%s): file is writable by group or others (mode 0666); fix "
                "with chmod go-w",
                pa);
    assert_line(s.lines[1],
                "refused plugin 'fx_ok' (%s): duplicate plugin name 'fx_ok' (already found in %s, "
                "which was refused)",
                pb, pa);
    assert_int_equal(loader_count(l), 0);
    loader_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_good_plugin_loads_once, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_0_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_1_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_2_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_3_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_4_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_frozen_abi_1_5_plugin_loads, test_setup),
        cmocka_unit_test_setup(test_each_refusal_then_good_plugin, test_setup),
        cmocka_unit_test_setup(test_writable_file_refused, test_setup),
        cmocka_unit_test_setup(test_writable_directory_refused, test_setup),
        cmocka_unit_test_setup(test_dlopen_failure_quotes_dlerror, test_setup),
        cmocka_unit_test_setup(test_missing_and_misnamed_files, test_setup),
        cmocka_unit_test_setup(test_not_found_names_every_directory, test_setup),
        cmocka_unit_test_setup(test_first_directory_wins, test_setup),
        cmocka_unit_test_setup(test_scan_order_and_duplicates, test_setup),
        cmocka_unit_test_setup(test_scan_refused_name_shadows_later_copy, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
