from django.urls import path
from rest_framework.routers import SimpleRouter

from promotions.api import reports, views

router = SimpleRouter(trailing_slash=False)
router.register("stores", views.StoreViewSet)
router.register("zones", views.ZoneViewSet)
router.register("beacons", views.BeaconViewSet)
router.register("gateways", views.GatewayViewSet)
router.register("campaigns", views.CampaignViewSet)

urlpatterns = [
    path("redemptions", reports.RedemptionView.as_view(), name="redemptions"),
    path("deliveries", reports.DeliveryListView.as_view(), name="deliveries"),
    path("campaigns/<int:pk>/stats", reports.CampaignStatsView.as_view(), name="campaign-stats"),
    path("campaigns/<int:pk>/codes", reports.CampaignCodesView.as_view(), name="campaign-codes"),
    path("campaigns/<int:pk>/dry-run", views.CampaignDryRunView.as_view(), name="campaign-dry-run"),
    path("pings", views.PingBatchView.as_view(), name="pings"),
    path("sightings", views.SightingBatchView.as_view(), name="sightings"),
    path(
        "gateways/<str:gateway_id>/sightings",
        views.GatewaySightingBatchView.as_view(),
        name="gateway-sightings",
    ),
    *router.urls,
]
