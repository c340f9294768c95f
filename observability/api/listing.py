"""Lists of stored things: cursor pages and orderings whose parameters are checked, and
the project scope every list and detail has."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination


class StrictCursorPagination(CursorPagination):
    """Cursor pages whose parameters are checked, not ignored when wrong."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (raw.isdigit() and 1 <= int(raw) <= self.max_page_size):
            raise exceptions.ValidationError(
                {
                    self.page_size_query_param: [
                        f"Must be an integer from 1 to {self.max_page_size}."
                    ]
                }
            )
        return super().get_page_size(request)

    def decode_cursor(self, request):
        if request.query_params.get(self.cursor_query_param) == "":
            raise exceptions.ValidationError({self.cursor_query_param: ["Must not be empty."]})
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            # DRF answers 404 for a bad cursor; it is a bad parameter.
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Invalid cursor."]}
            ) from exc

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class StrictOrderingFilter(OrderingFilter):
    """OrderingFilter that rejects unknown fields with a 400 instead of ignoring them."""

    def get_ordering(self, request, queryset, view):
        params = request.query_params.get(self.ordering_param)
        if params:
            fields = [param.strip() for param in params.split(",")]
            allowed = {f for f in view.ordering_fields} | {f"-{f}" for f in view.ordering_fields}
            unknown = [field for field in fields if field not in allowed]
            if unknown:
                reason = (
                    f"Unknown ordering {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}."
                )
                raise exceptions.ValidationError({self.ordering_param: [reason]})
        ordering = super().get_ordering(request, queryset, view)
        # A unique tie-breaker keeps cursor pages stable when the sort values are equal.
        unique = view.ordering_tie_breaker
        tie_breaker = f"-{unique}" if ordering and ordering[0].startswith("-") else unique
        return (*ordering, tie_breaker) if ordering else ordering


class ProjectScopedMixin:
    """Every query is limited to the project of the authenticating API key."""

    def get_queryset(self):
        return super().get_queryset().filter(project_id=self.request.auth.project_id)
