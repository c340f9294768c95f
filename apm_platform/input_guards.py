"""Request parameters PostgreSQL cannot hold, refused before any view sees them.

A NUL character cannot be stored in, compared with or searched for in PostgreSQL text;
in any query parameter it would reach a query and fail there (a 500). It is a 400
naming the parameter, in the API's error shape.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


class RejectNulParameters:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bad = sorted(
            {name for name, values in request.GET.lists() for v in [name, *values] if "\x00" in v}
        )
        if bad:
            return JsonResponse(
                {
                    "code": "invalid",
                    "detail": "The request has invalid parameters or fields.",
                    "errors": {name: ["Must not contain NUL characters."] for name in bad},
                },
                status=400,
            )
        return self.get_response(request)
