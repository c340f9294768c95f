"""What a project's configuration endpoints share (SLOs, notification channels and
rules): fields checked strictly, names unique per project, reads with `read` and every
change with `admin`."""

from __future__ import annotations

from rest_framework import serializers, viewsets

from observability.api.auth import AdminChangesMixin
from observability.api.listing import ProjectScopedMixin, StrictCursorPagination


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
