from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from executions import signals  # noqa: F401
