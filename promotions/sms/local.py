"""What the local backends share: a provider-like message id."""

import secrets


def local_sid() -> str:
    # Shaped like Twilio's: SM and 32 hex digits.
    return "SM" + secrets.token_hex(16)
