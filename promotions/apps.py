from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    name = "promotions"
    verbose_name = "Promotions"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Registers the `in_batch` lookup.
        from promotions import batch_sql  # noqa: F401

        # Registers the API-key scheme with drf-spectacular.
        from promotions.api import auth  # noqa: F401
        from promotions.roles import ensure_marketers_group

        post_migrate.connect(ensure_marketers_group, sender=self)
