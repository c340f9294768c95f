"""The fingerprint algorithm on its own: what it keeps, what it replaces, which frames count."""

import pytest

from observability.error_groups.fingerprint import (
    Failure,
    group_of,
    in_app_frames,
    is_failure,
    parameterize,
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("order 8c1f2b9a not found", "order <id> not found"),
        ("timeout after 3012 ms", "timeout after <duration>"),
        ("timeout after 2.5s", "timeout after <duration>"),
        ("user 550e8400-e29b-41d4-a716-446655440000 denied", "user <uuid> denied"),
        ("row 550e8400e29b41d4a716446655440000 locked", "row <uuid> locked"),
        ("at 2026-12-02T10:00:01.123Z", "at <date>"),
        ("at 2026-12-02 10:00:01+02:00", "at <date>"),
        ("since 10:00:01", "since <time>"),
        ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
        ("connect fe80::1:2:3 refused", "connect <ip> refused"),
        ("GET https://api.example.com/v1/users/42?x=1 failed", "GET <url> failed"),
        ("no account for bob.smith+test@example.co.uk", "no account for <email>"),
        ("Key (email)=('a@b.c') already exists", "Key (email)=(<quoted>) already exists"),
        ('column "price" is null', "column <quoted> is null"),
        ("pointer 0x7f3a12 freed twice", "pointer <id> freed twice"),
        ("user_1234 over quota by -17.5", "<id> over quota by <id>"),
        ("Deadlock detected", "Deadlock detected"),
        ("  many   spaces\n here ", "many spaces here"),
        ("Foo::bar failed", "Foo::bar failed"),  # a C++ name is not an address
    ],
)
def test_variable_parts_become_placeholders(message, expected):
    assert parameterize(message) == expected


PYTHON_TRACE = """Traceback (most recent call last):
  File "/usr/lib/python3.11/site-packages/django/core/handlers/base.py", line 197, in _get_response
    response = wrapped_callback(request, *callback_args, **callback_kwargs)
  File "/srv/app/shop/views.py", line {view_line}, in checkout
    cart.pay()
  File "/srv/app/shop/{module}.py", line {line}, in {function}
    raise PaymentError(reason)
shop.errors.PaymentError: card declined
"""


def python_trace(module="cart", function="pay", line=42, view_line=10):
    return PYTHON_TRACE.format(module=module, function=function, line=line, view_line=view_line)


def test_python_frames_of_the_service_only_without_line_numbers():
    assert in_app_frames(python_trace()) == ["shop/views.py:checkout", "shop/cart.py:pay"]
    assert in_app_frames(python_trace(line=99, view_line=11)) == in_app_frames(python_trace())


def test_frames_of_other_runtimes():
    java = """java.lang.IllegalStateException: stock below zero
        at com.shop.cart.CartService.reserve(CartService.java:42)
        at org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)
        at com.shop.web.CartController.add(CartController.java:17)"""
    assert in_app_frames(java) == [
        "CartService.java:com.shop.cart.CartService.reserve",
        "CartController.java:com.shop.web.CartController.add",
    ]
    node = """TypeError: Cannot read properties of undefined (reading 'id')
    at addItem (/srv/app/src/cart.js:10:5)
    at Layer.handle (/srv/app/node_modules/express/lib/router/layer.js:95:5)
    at /srv/app/src/routes.js:33:12"""
    assert in_app_frames(node) == ["cart.js:addItem", "routes.js:?"]
    go = """panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
shop/cart.(*Service).Add(0xc000010000)
\t/srv/app/cart/service.go:42 +0x1d
net/http.HandlerFunc.ServeHTTP(0x0)
\t/usr/local/go/src/net/http/server.go:2136 +0x29"""
    assert in_app_frames(go) == ["cart/service.go:shop/cart.(*Service).Add"]
    ruby = """/srv/app/models/cart.rb:42:in `add_item'
/var/lib/gems/3.1.0/gems/rack-2.2.3/lib/rack/builder.rb:244:in `call'"""
    assert in_app_frames(ruby) == ["models/cart.rb:add_item"]


def test_all_frames_count_when_none_is_recognisably_the_service_s():
    library_only = 'File "/usr/lib/python3.11/site-packages/x/y.py", line 3, in go'
    assert in_app_frames(library_only) == ["x/y.py:go"]


def failure(**fields) -> Failure:
    values = {"service": "shop", "endpoint": "/cart", "status_code": 500}
    return Failure(**(values | fields))


def test_order_of_preference():
    client = group_of(failure(fingerprint="payments-down", exception_type="E", message="m"))
    stack = group_of(failure(exception_type="PaymentError", stacktrace=python_trace()))
    exception = group_of(failure(exception_type="PaymentError", exception_message="id 42"))
    message = group_of(failure(message="order 42 missing"))
    status = group_of(failure())
    assert [g.kind for g in (client, stack, exception, message, status)] == [
        "client", "stack", "exception", "message", "status",
    ]  # fmt: skip
    assert len({g.fingerprint for g in (client, stack, exception, message, status)}) == 5


def test_what_is_in_each_key():
    # A stack names its own place: the endpoint is not in its key.
    trace = python_trace()
    on_cart = group_of(failure(exception_type="PaymentError", stacktrace=trace))
    on_pay = group_of(failure(exception_type="PaymentError", stacktrace=trace, endpoint="/pay"))
    assert on_cart.fingerprint == on_pay.fingerprint
    # A message alone does not: the same words on two endpoints are two problems.
    assert (
        group_of(failure(message="timeout")).fingerprint
        != group_of(failure(message="timeout", endpoint="/pay")).fingerprint
    )
    # Nothing crosses services, not even a client's fingerprint.
    assert (
        group_of(failure(fingerprint="db")).fingerprint
        != group_of(failure(fingerprint="db", service="billing")).fingerprint
    )


def test_the_title_is_a_real_message():
    grouping = group_of(failure(exception_type="KeyError", exception_message="'user 42'"))
    assert grouping.title == "KeyError: 'user 42'"
    assert group_of(failure(message="order 8c1f2b not found")).title == "order 8c1f2b not found"
    assert group_of(failure(status_code=503)).title == "HTTP 503"


def test_what_is_a_failure():
    assert is_failure(500, "") and is_failure(503, "")
    assert is_failure(200, "ValueError")  # an exception recorded on a request that recovered
    assert not is_failure(404, "") and not is_failure(200, "")
