"""The Marketers group: what people who run campaigns may do in the admin, and no more.

They configure places and campaigns and read results and customers; they cannot see API
keys (not even their hashes), export or erase customers (an export holds the location
history they cannot view), or edit what the engine recorded, unless an administrator grants
it to the group. Checked after every migrate, so a new model's permissions are granted
where they belong; what an administrator granted stays.
"""

from typing import Any

from django.apps import apps as global_apps

MARKETERS = "Marketers"
# (app, model): the actions marketers may take on it.
GRANTS = {
    ("promotions", "store"): ("view", "add", "change"),
    ("promotions", "zone"): ("view", "add", "change", "delete"),
    ("promotions", "beacon"): ("view", "add", "change", "delete"),
    ("promotions", "gateway"): ("view", "add", "change", "delete"),
    ("promotions", "campaign"): ("view", "add", "change", "delete"),
    ("promotions", "offercode"): ("view", "add", "delete"),
    ("promotions", "delivery"): ("view",),
    ("promotions", "presenceevent"): ("view",),
    ("promotions", "redemption"): ("view",),
    ("customers", "customer"): ("view",),
    ("customers", "consentchange"): ("view",),
    ("customers", "device"): ("view",),
    # Read-only in the admin: products are the site's catalogue (customers.admin.ProductAdmin).
    ("customers", "product"): ("view",),
    ("customers", "productintent"): ("view",),
    ("customers", "categoryintent"): ("view",),
    ("customers", "cartintent"): ("view",),
}


def ensure_marketers_group(*, apps: Any = None, **kwargs: Any) -> None:
    """post_migrate: create the group, and give it the grants above it lacks."""
    # The models as the migrations left them: after `migrate <app>` on a new database, auth
    # may have no tables yet (Django's own create_permissions waits for them the same way).
    try:
        Group = (apps or global_apps).get_model("auth", "Group")
        Permission = (apps or global_apps).get_model("auth", "Permission")
    except LookupError:
        return
    group, _ = Group.objects.get_or_create(name=MARKETERS)
    wanted = [
        Permission.objects.filter(content_type__app_label=app, codename=f"{action}_{model}").first()
        for (app, model), actions in GRANTS.items()
        for action in actions
    ]
    group.permissions.add(*[permission for permission in wanted if permission is not None])
