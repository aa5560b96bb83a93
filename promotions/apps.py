from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    name = "promotions"
    verbose_name = "Promotions"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Register the `in_batch` lookup, and the system checks.
        from promotions import batch_sql, checks  # noqa: F401

        # Registers the API-key scheme with drf-spectacular.
        from promotions.api import auth  # noqa: F401
        from promotions.roles import ensure_marketers_group

        post_migrate.connect(ensure_marketers_group, sender=self)

        # Workers rebuild their fence index when these change (tracking.current_watch).
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from promotions.models import Campaign, Store
        from promotions.tracking import fences_changed

        for model in (Store, Campaign):
            post_save.connect(fences_changed, sender=model, dispatch_uid=f"fences-{model}")
            post_delete.connect(fences_changed, sender=model, dispatch_uid=f"fences-{model}-")
        m2m_changed.connect(
            fences_changed, sender=Campaign.stores.through, dispatch_uid="fences-campaign-stores"
        )

        # A device's deletion waits for ping ingest in flight (pings have no foreign key).
        from django.db.models.signals import pre_delete

        from customers.models import Device
        from promotions.ingest import devices_deleted

        pre_delete.connect(devices_deleted, sender=Device, dispatch_uid="devices-deleted")
