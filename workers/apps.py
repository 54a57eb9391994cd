from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the Celery signal handlers: the completion listener.
        from workers import signals  # noqa: F401
