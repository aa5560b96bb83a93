"""The Celery app. Configuration lives in settings.py under the CELERY_ namespace."""

import os
import sys
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("passage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def settings_or_exit(sender: Celery, **kwargs: Any) -> None:
    """A bad environment value stops `celery worker` and `celery beat` as it stops manage.py:
    with the message that names the variable, not a traceback through Celery's start-up."""
    try:
        settings.INSTALLED_APPS  # noqa: B018 (reading one setting loads them all)
    except ImproperlyConfigured as error:
        sys.exit(f"Configuration error: {error}")


@task_prerun.connect
@task_postrun.connect
def reuse_or_replace_connections(sender: Task, **kwargs: Any) -> None:
    """A worker's database connections live as a web process's do, a task standing for a
    request: reused up to CONN_MAX_AGE, checked before the next task uses them (a database
    restart), dropped after an error. An eager task runs inside a request, whose
    connection Django manages already."""
    if getattr(sender.request, "is_eager", False):
        return
    close_old_connections()
