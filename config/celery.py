"""The Celery app. Configuration lives in settings.py under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("passage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
