"""runserver, with the beat of `make run` (config/beat.py) when BEAT_IN_PROCESS is on."""

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import (
    Command as StaticFilesRunserver,
)

from config.beat import start_in_process_beat


class Command(StaticFilesRunserver):
    def on_bind(self, server_port: int) -> None:
        # Called once the port is bound, in the process that serves: not in the autoreloader's
        # parent, which only watches files and restarts it.
        super().on_bind(server_port)
        if settings.BEAT_IN_PROCESS:
            start_in_process_beat()
