"""Phone numbers: parsed with phonenumbers, stored as E.164, refused when no SMS can reach them."""

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

# Sending to these costs money and reaches nobody; MOBILE, FIXED_LINE_OR_MOBILE (the US,
# where the plan does not say) and VOIP numbers can take a text.
_CANNOT_TAKE_SMS = {
    PhoneNumberType.FIXED_LINE: "a fixed-line number",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.UAN: "a company switchboard number",
    PhoneNumberType.VOICEMAIL: "a voicemail number",
    PhoneNumberType.PAGER: "a pager number",
}
_LOCALE_REGION = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{4})?-([a-z]{2})\b", re.IGNORECASE)


class PhoneError(ValueError):
    pass


def region_of_locale(locale: str) -> str | None:
    """The country of a BCP 47 locale ("fr-FR" -> "FR"), used to read national numbers."""
    match = _LOCALE_REGION.match(locale or "")
    return match.group(1).upper() if match else None


def normalise_phone(raw: str, region: str | None = None) -> str:
    """The E.164 form of `raw`, read in `region` when it has no country code."""
    if region not in phonenumbers.SUPPORTED_REGIONS:
        # A locale's country no numbering plan has (en-UK: the United Kingdom's is GB) reads
        # no national number: the number needs its country code, which is what the error
        # must ask for, rather than call it no phone number at all.
        region = None
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        hint = "" if region else " with its country code"
        raise PhoneError(
            f"Not a phone number; give it{hint} in E.164, e.g. +33612345678."
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("Not a valid phone number for its country.")
    kind = _CANNOT_TAKE_SMS.get(phonenumbers.number_type(number))
    if kind:
        raise PhoneError(f"This is {kind} and cannot receive SMS.")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def reply_number(raw: str) -> str:
    """The E.164 form of the number a reply came from (Twilio writes it so), "" when it is no
    number. Not judged as normalise_phone judges a number given to us: one a customer gave
    when it was valid may no longer be by phonenumbers' newer metadata, and their STOP must
    still find them."""
    try:
        number = phonenumbers.parse(raw)
    except NumberParseException:
        return ""
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
