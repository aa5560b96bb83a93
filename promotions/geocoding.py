"""An address to coordinates, through geopy, for the admin's store page and the stores API."""

from urllib.parse import urlsplit

from django.conf import settings
from geopy.exc import GeopyError
from geopy.geocoders import Nominatim

TIMEOUT_SECONDS = 5


class GeocodingError(Exception):
    """Why no coordinates came back, in words a marketer can act on; the caller says what
    to do instead (move the pin, send the coordinates)."""


def geocode(address: str) -> tuple[float, float]:
    address = address.strip()
    if not address:
        raise GeocodingError("There is no address to look up.")
    if settings.GEOCODER == "none":
        raise GeocodingError("No geocoder is configured (GEOCODER).")
    url = urlsplit(settings.GEOCODER_URL)
    geocoder = Nominatim(
        user_agent=settings.GEOCODER_USER_AGENT,
        domain=url.netloc + url.path.rstrip("/"),
        scheme=url.scheme,
        timeout=TIMEOUT_SECONDS,
    )
    try:
        location = geocoder.geocode(address, exactly_one=True)
    except GeopyError as error:
        raise GeocodingError(
            f"The geocoder at {settings.GEOCODER_URL} could not be reached "
            f"({error.__class__.__name__})."
        ) from None
    if location is None:
        raise GeocodingError("The geocoder found no place at this address.")
    return location.latitude, location.longitude
