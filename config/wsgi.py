import logging
import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from config.body import ReadChunkedBodies
from config.logs import ServerLines

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

GUNICORN_APP_LOAD_ERROR = 4

try:
    application = ReadChunkedBodies(get_wsgi_application())
except ImproperlyConfigured as error:
    # As manage.py does: the message names the variable, a server's traceback would bury it.
    print(f"Configuration error: {error}", file=sys.stderr)
    # 4 is gunicorn's "the application cannot load": its master stops instead of booting
    # workers that fail the same way for ever. Any other server sees a failure as well.
    sys.exit(GUNICORN_APP_LOAD_ERROR)

# gunicorn sets its loggers up itself (its own handlers, no propagation) before it loads
# this module, and settings.LOGGING naming them would take their handlers away: their
# filter is added here, in the process that loads the application (gunicorn's master with
# --preload, whose workers inherit it, or each worker).
for _name in ("gunicorn.error", "gunicorn.access"):
    logging.getLogger(_name).addFilter(ServerLines())
