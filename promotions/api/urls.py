from django.urls import path
from rest_framework.routers import SimpleRouter

from promotions.api import views

router = SimpleRouter(trailing_slash=False)
router.register("stores", views.StoreViewSet)
router.register("zones", views.ZoneViewSet)
router.register("beacons", views.BeaconViewSet)
router.register("gateways", views.GatewayViewSet)
router.register("campaigns", views.CampaignViewSet)

urlpatterns = [
    path("pings", views.PingBatchView.as_view(), name="pings"),
    path("sightings", views.SightingBatchView.as_view(), name="sightings"),
    path(
        "gateways/<str:gateway_id>/sightings",
        views.GatewaySightingBatchView.as_view(),
        name="gateway-sightings",
    ),
    *router.urls,
]
