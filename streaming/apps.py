from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "streaming"
    verbose_name = "Streaming"

    def ready(self) -> None:
        # Checks and cache-invalidating signal receivers register themselves.
        from streaming import providers
        from streaming.accounting import limits  # noqa: F401
        from streaming.api import credentials  # noqa: F401
        from streaming.server import checks  # noqa: F401

        # Import the provider SDKs now rather than on the first request (about 2 s).
        providers.configured()
