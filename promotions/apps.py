from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    name = "promotions"
    verbose_name = "Promotions"

    def ready(self) -> None:
        # Registers the API-key scheme with drf-spectacular.
        from promotions.api import auth  # noqa: F401
