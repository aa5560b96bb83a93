"""What tells one version of a stored thing from another: a digest of its values.

The admin's campaign page carries one for each field it shows (CampaignForm), the config
API one for each resource it answers with (its ETag, promotions/api/conditional.py). Digests
of the values themselves, not a counter: every way of saving (the admin's page and actions,
the API, a worker) changes them, with nothing to keep up to date."""

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


def value_digest(value: Any, *, size: int) -> str:
    """A hex digest of `size` bytes of a JSON-able value (times, decimals and UUIDs as
    Django's encoder writes them). A dict's keys are read in sorted order: the same outline
    read back from a jsonb column, which reorders them, has the same digest."""
    encoded = json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True).encode()
    return hashlib.blake2b(encoded, digest_size=size).hexdigest()
