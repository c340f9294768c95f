"""What a project's configuration endpoints share (SLOs, notification channels and
rules): fields checked strictly, names unique per project, reads with `read` and every
change with `admin`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from observability.api.auth import AdminChangesMixin
from observability.api.errors import ErrorSerializer
from observability.api.listing import ProjectScopedMixin, StrictCursorPagination
from observability.api.schema import ERROR_RESPONSES

NOT_FOUND = {404: ErrorSerializer, **ERROR_RESPONSES}


class StrictModelSerializer(serializers.ModelSerializer):
    """Rejects fields it does not know instead of ignoring them (a typo is a 400), and
    names taken by another object of the project."""

    def validate(self, attrs):
        unknown = sorted(set(getattr(self, "initial_data", {})) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        if "name" in attrs:
            taken = self.Meta.model.objects.filter(
                project_id=self.context["project_id"], name=attrs["name"]
            )
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError({"name": ["Already used in this project."]})
        return super().validate(attrs)

    def current(self, *names: str) -> dict:
        """The instance's values of `names` (empty on create), under the changed ones."""
        return {} if self.instance is None else {n: getattr(self.instance, n) for n in names}


class ById(StrictCursorPagination):
    ordering = ("id",)
    page_size = 100


class ProjectConfigViewSet(AdminChangesMixin, ProjectScopedMixin, viewsets.ModelViewSet):
    """CRUD of one kind of configuration object of the key's project."""

    pagination_class = ById

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self.request, "auth", None) is not None:
            context["project_id"] = self.request.auth.project_id
        return context

    def perform_create(self, serializer):
        serializer.save(project_id=self.request.auth.project_id)


def crud_schema(noun: str, serializer):
    """The OpenAPI description of a ProjectConfigViewSet's six actions."""
    return extend_schema_view(
        list=extend_schema(summary=f"List {noun}s",
                           responses={200: serializer(many=True), **ERROR_RESPONSES}),
        create=extend_schema(summary=f"Create a {noun} (admin scope)",
                             responses={201: serializer, **ERROR_RESPONSES}),
        retrieve=extend_schema(summary=f"Get a {noun}", responses={200: serializer, **NOT_FOUND}),
        update=extend_schema(summary=f"Replace a {noun} (admin scope)",
                             responses={200: serializer, **NOT_FOUND}),
        partial_update=extend_schema(summary=f"Change a {noun} (admin scope)",
                                     responses={200: serializer, **NOT_FOUND}),
        destroy=extend_schema(summary=f"Delete a {noun} (admin scope)",
                              responses={204: None, **NOT_FOUND}),
    )  # fmt: skip
