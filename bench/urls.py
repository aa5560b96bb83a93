from django.urls import path

from bench.baseline import BaselinePingView
from config.urls import urlpatterns as passage_urlpatterns

urlpatterns = [
    path("bench/drf/pings", BaselinePingView.as_view()),
    *passage_urlpatterns,
]
