from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "streaming"
    verbose_name = "Streaming"

    def ready(self) -> None:
        from streaming import checks, providers  # noqa: F401 - checks register themselves

        # Import the provider SDKs now rather than on the first request (about 2 s).
        providers.configured()
