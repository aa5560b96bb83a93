import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    application = get_asgi_application()
except ImproperlyConfigured as error:
    # As manage.py does: the message names the variable, a server's traceback would bury it.
    sys.exit(f"Configuration error: {error}")
