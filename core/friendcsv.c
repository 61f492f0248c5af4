#include "friendcsv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "friendcli.h"
#include "friendview.h"
#include "host.h"
#include "store.h"

#define COLS_MAX 80

/* ---- export ------------------------------------------------------------- */

typedef struct exporter {
    const cfg_shop *shop;
} exporter;

static void cell(const char *text, int last)
{
    csv_fwrite(stdout, text, strlen(text));
    putchar(last ? '\n' : ',');
}

static const char *attr_of(const friend_view *v, const char *name)
{
    for (size_t i = 0; i < v->nattrs; i++)
        if (strcmp(v->attr_name[i], name) == 0)
            return v->attr_value[i];
    return "";
}

static void export_row(void *arg, const friend_view *v)
{
    const exporter *x = arg;
    char tags[FRIENDVIEW_TAGS * (FRIEND_TAG_MAX + 1) + 1] = "";
    size_t used = 0;
    for (size_t i = 0; i < v->ntags && used < sizeof tags; i++)
        used += (size_t)snprintf(tags + used, sizeof tags - used, "%s%s", i ? "|" : "", v->tags[i]);
    size_t n = x->shop->nfriend_attrs;
    cell(v->f.user, 0);
    cell(v->f.following ? "true" : "false", 0);
    cell(v->f.display_name, 0);
    cell(tags, n == 0);
    for (size_t i = 0; i < n; i++)
        cell(attr_of(v, x->shop->friend_attrs[i].name), i + 1 == n);
}

int friendcsv_export(const cfg *c, const char *shop, const char *segment_expr)
{
    const cfg_shop *cs = cfg_find_shop(c, shop);
    if (cs == NULL) {
        fprintf(stderr, "kizuna export: no shop '%s' in the configuration\n", shop);
        return 1;
    }
    static const char *const fixed[] = {"user", "following", "display_name", "tags"};
    for (int i = 0; i < 4; i++)
        cell(fixed[i], i == 3 && cs->nfriend_attrs == 0);
    for (size_t i = 0; i < cs->nfriend_attrs; i++)
        cell(cs->friend_attrs[i].name, i + 1 == cs->nfriend_attrs);
    exporter x = {cs};
    long shown = 0;
    int rc = friendcli_walk(c, "export", shop, segment_expr, export_row, &x, &shown);
    fflush(stdout); /* the rows before the summary, also when both go to one file */
    if (rc == 0)
        fprintf(stderr, "%ld friend(s) exported\n", shown);
    return rc;
}

/* ---- import ------------------------------------------------------------- */

enum { COL_USER = -1, COL_TAGS = -2 }; /* else: index into the shop's attributes */

typedef struct importer {
    const char *path, *shop_id;
    const cfg_shop *shop;
    store *st;
    FILE *out; /* what was applied, printed after the commit */
    int col[COLS_MAX];
    size_t ncols;
    char *cell[COLS_MAX];
    size_t ncells;
    long record; /* 1: the header */
    long applied, refused;
    int header_bad, store_failed;
    char store_err[512];
} importer;

static void cells_free(importer *im)
{
    for (size_t i = 0; i < im->ncells; i++)
        free(im->cell[i]);
    im->ncells = 0;
}

static void on_field(void *data, size_t len, void *arg)
{
    importer *im = arg;
    if (im->ncells == COLS_MAX)
        return;
    char *v = malloc(len + 1);
    if (v != NULL) {
        memcpy(v, data, len);
        v[len] = '\0';
    }
    im->cell[im->ncells++] = v;
}

static int header_column(importer *im, const char *name)
{
    if (strcmp(name, "user") == 0)
        return COL_USER;
    if (strcmp(name, "tags") == 0)
        return COL_TAGS;
    for (size_t i = 0; i < im->shop->nfriend_attrs; i++)
        if (strcmp(im->shop->friend_attrs[i].name, name) == 0)
            return (int)i;
    /* export's read-only columns come back in a round trip: ignore them */
    if (strcmp(name, "following") == 0 || strcmp(name, "display_name") == 0)
        return -3;
    fprintf(stderr,
            "%s:1: column '%s' is neither user, tags nor a declared attribute of shop '%s'\n",
            im->path, name, im->shop_id);
    im->header_bad = 1;
    return -3;
}

static void read_header(importer *im)
{
    int has_user = 0;
    for (size_t i = 0; i < im->ncells; i++) {
        im->col[i] = header_column(im, im->cell[i] ? im->cell[i] : "");
        has_user |= im->col[i] == COL_USER;
    }
    im->ncols = im->ncells;
    if (!has_user) {
        fprintf(stderr, "%s:1: no 'user' column\n", im->path);
        im->header_bad = 1;
    }
}

/* Checks a row without changing anything: the message goes to why. */
static int row_ok(const importer *im, const char **user, char *why, size_t whylen)
{
    *user = NULL;
    for (size_t i = 0; i < im->ncells && i < im->ncols; i++) {
        const char *v = im->cell[i] ? im->cell[i] : "";
        char canon[FRIEND_VALUE_MAX + 32], err[160];
        if (im->col[i] == COL_USER)
            *user = v;
        else if (im->col[i] >= 0 && v[0] != '\0' && strcmp(v, "null") != 0 &&
                 friend_attr_parse(im->shop->friend_attrs[im->col[i]].type, v, canon, sizeof canon,
                                   err, sizeof err) != 0) {
            snprintf(why, whylen, "column '%s': %s", im->shop->friend_attrs[im->col[i]].name, err);
            return 0;
        }
    }
    if (*user == NULL || !host_line_id_ok(*user, 0)) {
        snprintf(why, whylen, "user '%s' is not a LINE user id", *user ? *user : "");
        return 0;
    }
    return 1;
}

/* The tags cell: '|'-separated operands for friendcli_apply_tag. */
static int apply_tags(importer *im, const char *user, const char *cell, char *err, size_t errlen)
{
    char *copy = strdup(cell), *save = NULL;
    int rc = copy != NULL ? 0 : KZ_ENOMEM;
    for (char *t = copy ? strtok_r(copy, "|", &save) : NULL; rc == 0 && t != NULL;
         t = strtok_r(NULL, "|", &save))
        rc = friendcli_apply_tag(im->st, im->shop_id, user, t, "import", im->out, err, errlen);
    free(copy);
    return rc;
}

static int apply_row(importer *im, const char *user, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < im->ncells && i < im->ncols; i++) {
        const char *v = im->cell[i] ? im->cell[i] : "";
        if (v[0] == '\0')
            continue;
        if (im->col[i] == COL_TAGS) {
            rc = apply_tags(im, user, v, err, errlen);
        } else if (im->col[i] >= 0) {
            const cfg_friend_attr *a = &im->shop->friend_attrs[im->col[i]];
            char canon[FRIEND_VALUE_MAX + 32], why[160];
            int null = strcmp(v, "null") == 0;
            if (!null)
                friend_attr_parse(a->type, v, canon, sizeof canon, why, sizeof why);
            rc = friendcli_apply_attr(im->st, im->shop_id, user, a, null ? NULL : canon, "import",
                                      im->out, err, errlen);
        }
    }
    return rc;
}

/* A bad tag fails inside the savepoint: the row's other changes go too. */
static void import_row(importer *im)
{
    const char *user;
    char why[300], err[512] = "";
    if (!row_ok(im, &user, why, sizeof why)) {
        fprintf(stderr, "%s:%ld: %s\n", im->path, im->record, why);
        im->refused++;
        return;
    }
    int rc = store_savepoint(im->st, err, sizeof err);
    if (rc == 0)
        rc = apply_row(im, user, err, sizeof err);
    if (rc == KZ_EINVAL) {
        store_rollback_savepoint(im->st, why, sizeof why);
        fprintf(stderr, "%s:%ld: %s\n", im->path, im->record, err);
        im->refused++;
        return;
    }
    if (rc == 0)
        rc = store_release(im->st, err, sizeof err);
    if (rc != 0 && !im->store_failed) {
        im->store_failed = 1;
        snprintf(im->store_err, sizeof im->store_err, "%s", err);
    }
    im->applied += rc == 0;
}

static void on_record(int end, void *arg)
{
    (void)end;
    importer *im = arg;
    im->record++;
    if (im->record == 1)
        read_header(im);
    else if (!im->header_bad && !im->store_failed && im->ncells > 0)
        import_row(im);
    cells_free(im);
}

/* Feeds the file to libcsv; 0, or 1 after printing why. */
static int parse_file(importer *im, FILE *in)
{
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL | CSV_STRICT | CSV_STRICT_FINI) != 0)
        return 1;
    char buf[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (csv_parse(&p, buf, n, on_field, on_record, im) != n)
            rc = 1;
    if (rc == 0 && csv_fini(&p, on_field, on_record, im) != 0)
        rc = 1;
    if (rc != 0)
        fprintf(stderr, "%s:%ld: %s\n", im->path, im->record + 1, csv_strerror(csv_error(&p)));
    csv_free(&p);
    cells_free(im);
    return rc;
}

static int finish(importer *im, int parse_rc, int all_or_nothing, char *done)
{
    char err[512] = "";
    int keep = parse_rc == 0 && !im->header_bad && !im->store_failed &&
               !(all_or_nothing && im->refused > 0);
    int rc = keep ? store_commit(im->st, err, sizeof err) : KZ_EFAIL;
    if (rc != 0)
        store_rollback(im->st);
    if (rc == 0) {
        fputs(done, stdout);
        fflush(stdout);
        fprintf(stderr, "%ld row(s) applied, %ld refused\n", im->applied, im->refused);
        return im->refused > 0 ? 1 : 0;
    }
    if (im->store_failed || err[0] != '\0')
        fprintf(stderr, "kizuna import: %s\n", im->store_failed ? im->store_err : err);
    fprintf(stderr, "nothing imported (%ld row(s) refused%s)\n", im->refused,
            all_or_nothing && im->refused > 0 ? ", --all-or-nothing" : "");
    return 1;
}

int friendcsv_import(const cfg *c, const char *shop, const char *path, int all_or_nothing)
{
    importer im = {.path = strcmp(path, "-") == 0 ? "<stdin>" : path, .shop_id = shop};
    if ((im.shop = cfg_find_shop(c, shop)) == NULL) {
        fprintf(stderr, "kizuna import: no shop '%s' in the configuration\n", shop);
        return 1;
    }
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "kizuna import: cannot open %s\n", path);
        return 1;
    }
    char err[512], *done = NULL;
    size_t done_len = 0;
    int rc = 1;
    if (store_open(c->store_url, c->sync_mode, &im.st, err, sizeof err) != 0)
        fprintf(stderr, "kizuna import: %s\n", err);
    else if ((im.out = open_memstream(&done, &done_len)) != NULL &&
             store_begin(im.st, err, sizeof err) == 0) {
        int prc = parse_file(&im, in);
        fclose(im.out);
        im.out = NULL;
        rc = finish(&im, prc, all_or_nothing, done ? done : "");
    }
    if (im.out != NULL)
        fclose(im.out);
    free(done);
    store_close(im.st);
    if (in != stdin)
        fclose(in);
    return rc;
}
