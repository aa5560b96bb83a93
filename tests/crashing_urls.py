"""The real URLconf plus one API view with a bug, for the tests of what a crash looks like to
a client: the real middleware, authentication and error handlers, and a view that raises."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.views import APIView

from config import urls
from promotions.models import Scope

CRASH_PATH = "api/v1/crash"


class CrashingView(APIView):
    required_scope = Scope.REPORTS

    def get(self, request: Request) -> None:
        raise RuntimeError("a bug")


urlpatterns = [path(CRASH_PATH, CrashingView.as_view()), *urls.urlpatterns]

# Django looks its error views up on the root URLconf: the real ones.
handler400 = urls.handler400
handler404 = urls.handler404
handler500 = urls.handler500
