from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView

from promotions import webhooks
from promotions.api.schema_view import SchemaView

urlpatterns = [
    # Reversed, not "/admin/": under a path prefix (SCRIPT_NAME) the admin is below it.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("customers.api.urls")),
    path("api/v1/", include("promotions.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("webhooks/twilio/status", webhooks.twilio_status, name="twilio-status"),
    path("webhooks/twilio/inbound", webhooks.twilio_inbound, name="twilio-inbound"),
]

# Under /api/ and /webhooks/, what Django answers itself (no view matched, a Host it does
# not serve, a crash) is JSON like the API's own answers; elsewhere (the admin) it stays
# HTML. With DEBUG on, Django shows its technical 404 and 500 pages instead.
handler400 = "promotions.api.errors.bad_request"
handler404 = "promotions.api.errors.not_found"
handler500 = "promotions.api.errors.server_error"
