from django.urls import path, register_converter

from customers.api import views


class CustomerIdConverter:
    """A customer's id as the path carries it. The server decodes %2F before routing, so an
    id holding a "/" arrives as several segments: taken whole, a PUT of one is refused with
    its reason (customers.models.validate_external_id) rather than a bare 404, and a
    customer stored with one before such ids were refused can still be read, exported and
    erased. Any character, a line feed included (a 400 or 404 saying why, not a routing
    miss), but no "/" at the end: that is a trailing slash, which the API's 404 names."""

    regex = r"(?s:.*[^/])"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(CustomerIdConverter, "customer_id")

urlpatterns = [
    # The export's route first: ".../C-1/export" is C-1's export.
    path(
        "customers/<customer_id:external_id>/export",
        views.CustomerExportView.as_view(),
        name="customer-export",
    ),
    path("customers/<customer_id:external_id>", views.CustomerView.as_view(), name="customer"),
    path("devices", views.DeviceView.as_view(), name="devices"),
    path("identify", views.IdentifyView.as_view(), name="identify"),
    path("events", views.EventBatchView.as_view(), name="events"),
]
