import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from config.body import ReadChunkedBodies

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
