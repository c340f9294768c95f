from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "APM observability"

    def ready(self) -> None:
        from observability import checks  # noqa: F401 - registers the system checks
