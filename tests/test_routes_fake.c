/*
 * testing.h's route fake, driven with the fx_routes fixture compiled into
 * the test: a plugin author's unit test of their routes, without a daemon.
 * The expectations match tests/test_routes.c, which runs the same fixture on
 * the real host.
 */
#include <kizuna/testing.h>

static void load(void)
{
    kz_assert_ok(kz_test_load(kizuna_plugin_v1));
}

static void routes_registered(void **state)
{
    (void)state;
    load();
    assert_int_equal(kz_test_route_count(), 15);
    assert_string_equal(kz_test_route_path(0), "hello");
    assert_string_equal(kz_test_route_method(0), "GET");
    assert_null(kz_test_route_method(4)); /* "any" takes every method */
    /* the refusals shop_open saw are the host's */
    assert_int_equal(kz_test_http("GET", "selftest", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "dup=-10 abs=-1 dotdot=-1 empty=-1 midstar=-1 "
                                                 "partstar=-1 method=-1 nofn=-1 second=0");
}

static void answers_and_statuses(void **state)
{
    (void)state;
    load();
    const char *const hdrs[] = {"X-PROBE: v1", NULL};
    assert_int_equal(kz_test_http("GET", "hello?x=1&q=caf%C3%A9+%26%20b", hdrs, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "shop=test method=GET path=hello q=café & b h=v1");
    assert_string_equal(kz_test_http_content_type(), "text/plain; charset=utf-8");
    assert_int_equal(kz_test_http("GET", "items/x/y", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "item items/x/y");
    assert_int_equal(kz_test_http("GET", "items/special", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "special");
    assert_int_equal(kz_test_http("GET", "", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "root");
    assert_int_equal(kz_test_http("GET", "click", NULL, NULL, 0), 302);
    assert_string_equal(kz_test_http_header("location"),
                        "https://shop.example/items/123?from=line");
    assert_int_equal(kz_test_http("GET", "nope", NULL, NULL, 0), 404);
    assert_int_equal(kz_test_http("GET", "items/", NULL, NULL, 0), 404);
    assert_int_equal(kz_test_http("POST", "hello", NULL, "{}", 2), 405);
    assert_string_equal(kz_test_http_header("Allow"), "GET, HEAD");
    assert_int_equal(kz_test_http("PUT", "multi", NULL, NULL, 0), 405);
    assert_string_equal(kz_test_http_header("Allow"), "GET, HEAD, DELETE");
    assert_int_equal(kz_test_http("GET", "forget", NULL, NULL, 0), 500);
    assert_int_equal(kz_test_published_count(NULL), 0); /* dropped with the 500 */
    static const char body[] = "bin\0ary";
    size_t len = 0;
    assert_int_equal(kz_test_http("POST", "echo", NULL, body, sizeof body - 1), 200);
    assert_memory_equal(kz_test_http_body(&len), body, sizeof body - 1);
    assert_int_equal(len, sizeof body - 1);
    assert_string_equal(kz_test_http_header("X-Body-Len"), "7");
}

static void published_events(void **state)
{
    (void)state;
    load();
    const char *order = "{\"order\":\"A-2\"}";
    for (int i = 0; i < 2; i++)
        assert_int_equal(kz_test_http("POST", "orders?id=A-2&user=U1", NULL, order, strlen(order)),
                         202);
    assert_int_equal(kz_test_published_count("ec.order.created"), 1); /* dedupe key: once */
    assert_string_equal(kz_test_published_id(0), "dedupe:A-2");
    assert_string_equal(kz_test_published_user(0), "U1");
    assert_string_equal(kz_test_published_payload(0), order);
    assert_int_equal(kz_test_http("POST", "orders", NULL, "{}", 2), 202);
    assert_int_equal(kz_test_http("POST", "orders", NULL, "{}", 2), 202);
    assert_int_equal(kz_test_published_count(NULL), 3);
    /* the handler's side: the event the route published, handled */
    kz_assert_ok(kz_test_handle(kz_test_published(0)));
    assert_string_equal(kz_test_kv_get("orders", NULL), "1");
    /* storing fails: 503, nothing recorded */
    kz_test_fail_next(KZ_TEST_FAIL_ROUTE_STORE, KZ_EIO);
    assert_int_equal(kz_test_http("POST", "orders?id=B", NULL, "{}", 2), 503);
    assert_int_equal(kz_test_published_count(NULL), 3);
}

static void misuse_and_stale_requests(void **state)
{
    (void)state;
    load();
    assert_int_equal(kz_test_http("GET", "badpub", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL),
                        "topic=-1 json=-1 emptykey=-1 clen=-1 crlf=-1 status=-1 redirect=-1");
    assert_int_equal(kz_test_http("GET", "twice", NULL, NULL, 0), 200);
    assert_string_equal(kz_test_http_body(NULL), "first");
    kz_http *stale = kz_test_last_http();
    assert_int_equal(kz_http_respond_text(stale, 200, "late"), KZ_ESTATE);
    assert_null(kz_http_path(stale));
    assert_int_equal(kz_http_publish(stale, "ec.x", NULL, NULL, NULL), KZ_ESTATE);
    assert_int_equal(kz_test_http("GET", "selftest", NULL, NULL, 0), 200);
    assert_non_null(strstr(kz_test_http_body(NULL), "second=-7"));
    /* outside shop_open */
    assert_int_equal(kz_route(kz_test_shop(), "GET", "late", NULL, NULL), KZ_ESTATE);
    kz_assert_ok(kz_test_handle(kz_test_event("test.late", NULL, NULL, NULL, NULL)));
    assert_string_equal(kz_test_kv_get("late_rc", NULL), "-7");
    /* gone after shop_close */
    kz_test_close();
    assert_int_equal(kz_test_route_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(routes_registered, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(answers_and_statuses, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(published_events, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(misuse_and_stale_requests, kz_test_setup, kz_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
