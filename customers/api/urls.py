from django.urls import path

from customers.api import views

urlpatterns = [
    path("customers/<str:external_id>", views.CustomerView.as_view(), name="customer"),
    path(
        "customers/<str:external_id>/export",
        views.CustomerExportView.as_view(),
        name="customer-export",
    ),
    path("devices", views.DeviceView.as_view(), name="devices"),
    path("identify", views.IdentifyView.as_view(), name="identify"),
    path("events", views.EventBatchView.as_view(), name="events"),
]
