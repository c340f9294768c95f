"""Admin for projects and API keys. A new key's secret is shown once, on creation."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from observability.models import ApiKey, Membership, Project


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["name", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are created from the key page, which shows the secret


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ApiKeyInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        # A project's request rows are not linked by a database foreign key (ingest speed),
        # so deleting one here would orphan them; retention removes old data instead.
        return False


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ApiKey.SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=list(ApiKey.SCOPES),
    )

    class Meta:
        model = ApiKey
        fields = ["project", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "project",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["project", "revoked_at"]
    search_fields = ["name", "prefix", "project__slug"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["project", "name", "scopes"]
        return ["project", "name", "scopes", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        # A key's project and scopes are fixed once issued: issue a new key instead.
        return [*self.readonly_fields, "project", "scopes"] if obj else []

    def save_model(self, request, obj, form, change):
        plaintext = None if change else obj.set_new_secret()
        super().save_model(request, obj, form, change)
        if plaintext:
            messages.warning(
                request, f"New API key (copy it now, it is not shown again): {plaintext}"
            )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who sees which project in the UI, as a viewer or an admin (staff see all)."""

    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["project", "role"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["project"]
