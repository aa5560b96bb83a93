"""Offer templates and SMS text on plain values: no Django."""

import re
import secrets
import unicodedata
from datetime import date, datetime, timedelta
from string import Formatter

import phonenumbers

from customers.phones import region_of_locale

PLACEHOLDERS = ("first_name", "store_name", "product_name", "code", "expires_at")
# Twilio refuses a Body longer than this (error 21617), however many segments it makes.
MAX_BODY_CHARACTERS = 1600
# The longest value each placeholder can take: the fields it is filled from (a customer's
# first name, a store's name, a product's name or SKU, a generated or pool code, a short
# date). They mirror the models' max_length; a test keeps them in step.
LONGEST_VALUES = {
    "first_name": 100,
    "store_name": 200,
    "product_name": 200,
    "code": 40,
    "expires_at": 5,
}


class TemplateError(ValueError):
    pass


def template_placeholders(template: str) -> set[str]:
    """The placeholders a template uses. TemplateError names any it cannot fill, and refuses
    a template whose SMS could be longer than Twilio takes, once filled with the longest
    values and followed by the longest opt-out footer."""
    try:
        parts = list(Formatter().parse(template))
    except ValueError:
        raise TemplateError(
            "Unbalanced braces: write a placeholder as {first_name}, a literal brace as {{ or }}."
        ) from None
    used = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join(f"{{{known}}}" for known in PLACEHOLDERS)
            raise TemplateError(f"Unknown placeholder {{{name}}}; use {known}.")
        if spec or conversion:
            raise TemplateError(f"Write the placeholder as {{{name}}}, without a format.")
        used.add(name)
    longest = longest_rendering(template)
    if longest > MAX_BODY_CHARACTERS:
        raise TemplateError(
            f"Too long: filled in with the longest names and codes, and with its opt-out "
            f"footer, this message could reach {longest} characters; Twilio sends at most "
            f"{MAX_BODY_CHARACTERS}. Shorten it by {longest - MAX_BODY_CHARACTERS}."
        )
    return used


def longest_rendering(template: str) -> int:
    """How many characters the SMS of a well-formed template can reach at most: its text,
    each placeholder at its longest value, and the longest opt-out footer on its own line.
    Rendering only ever shortens the rest (trimmed names, collapsed spaces)."""
    length = max(len(footer) for footer in OPT_OUT_FOOTERS.values()) + len("\n")
    for literal, name, _, _ in Formatter().parse(template):
        length += len(literal) + (LONGEST_VALUES[name] if name is not None else 0)
    return length


# --- Rendering ---------------------------------------------------------------------------

# The footer is in the customer's language; every character is in the GSM-7 table, so the
# footer never forces the whole SMS into UCS-2.
OPT_OUT_FOOTERS = {
    "en": "Reply STOP to opt out.",
    "fr": "Répondez STOP pour ne plus recevoir de SMS.",
    "es": "Responde STOP para darte de baja.",
    "de": "Antworte STOP, um keine SMS mehr zu erhalten.",
    "it": "Rispondi STOP per non ricevere più SMS.",
}


def language_of(locale: str) -> str:
    """The language of a locale as Passage writes to customers: fr for fr-FR or fr_CA,
    English when it is not one we write."""
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return language if language in OPT_OUT_FOOTERS else "en"


def opt_out_footer(locale: str) -> str:
    return OPT_OUT_FOOTERS[language_of(locale)]


# Where a short date is written month first: the US, and the territories whose numbers
# phonenumbers gives a region of their own. Everywhere else Passage writes day first.
MONTH_FIRST_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM"})


def format_expiry(day: date, locale: str, phone: str = "") -> str:
    """A short date in the customer's habit: 11/29 in the US, 29/11 elsewhere. The country
    is the locale's (en-US, en-Latn-US); a locale that names none (en) leaves it to the
    customer's phone number."""
    if customer_region(locale, phone) in MONTH_FIRST_REGIONS:
        return f"{day.month:02d}/{day.day:02d}"
    return f"{day.day:02d}/{day.month:02d}"


def customer_region(locale: str, phone: str) -> str | None:
    """The country a customer reads dates by: their locale's, else their phone number's."""
    region = region_of_locale((locale or "").replace("_", "-"))
    if region:
        return region
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone or "", None))
    except phonenumbers.NumberParseException:
        return None


# Marks where a placeholder rendered empty; NUL cannot be stored in a template or a name.
EMPTY_VALUE = "\x00"


def render_offer(
    template: str,
    *,
    first_name: str,
    store_name: str,
    product_name: str,
    code: str,
    expires_at: date,
    locale: str,
    phone: str = "",
) -> str:
    """The SMS a customer receives: the template filled in, then the opt-out footer.
    `phone`, the number it goes to, says how to write the date when the locale does not."""
    values = {
        "first_name": first_name.strip(),
        "store_name": store_name,
        "product_name": product_name,
        "code": code,
        "expires_at": format_expiry(expires_at, locale, phone),
    }
    text, opening = "", False
    for literal, name, _, _ in Formatter().parse(template):
        if opening and literal:
            literal, opening = _line_opening(literal), False
        text += literal
        if name is None:
            continue
        if values[name]:
            text, opening = text + values[name], False
        elif text[text.rfind("\n") + 1 :].strip(" \t"):
            text += EMPTY_VALUE
        else:
            # "{first_name}, your code..." must not open on ", your code": the template's
            # text after an empty value that opened a line opens it instead.
            opening = True
    # An empty first name must not leave "Bonjour , ..." behind, but only the gap it left is
    # closed: the template's own spacing stays (French sets a space before ! ? : ;).
    text = re.sub(rf"[ \t]*{EMPTY_VALUE}(?=[\s,.!?;:]|$)", "", text)
    text = text.replace(EMPTY_VALUE, "").strip()
    return f"{text}\n{opt_out_footer(locale)}"


# What separated an empty value opening a line from the rest: "{first_name}, ...",
# "{first_name} ! ..." (French spacing), "{first_name} - ..." (or an en or em dash), but
# not the minus of "-20%".
SEPARATOR_AFTER = re.compile(r"[ \t]*(?:[,;:.!?\u2026]+|[-\u2013\u2014](?=\s))?[ \t]*")


def _line_opening(literal: str) -> str:
    """The template's text after an empty value that opened a line, as the line's opening:
    its separator removed and its first word capitalised, unless the word is not all lower
    case (a brand such as iPhone) or its capital would cost more to send (È is not in GSM-7,
    è is) or is not one letter (ß)."""
    rest = literal[SEPARATOR_AFTER.match(literal).end() :]
    word = re.match(r"[^\W\d_]+", rest)
    if not word or not word[0].islower():
        return rest
    first, capital = rest[0], rest[0].upper()
    if len(capital) != 1 or (first in GSM7_BASIC and capital not in GSM7_BASIC):
        return rest
    return capital + rest[1:]


# GSM 03.38: the basic table costs one septet a character, the extension table two. ESC
# (0x1B) is left out: in GSM-7 it only introduces an extension character, and Twilio's
# count takes a text holding a bare one for UCS-2.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")
GSM7, UCS2 = "GSM-7", "UCS-2"


def sms_encoding(body: str) -> str:
    """GSM-7 when every character is in its tables, else UCS-2. One curly quote or
    non-breaking space pasted from a word processor makes the SMS UCS-2, which cuts a
    segment from 160 characters to 70 and can triple what the campaign costs."""
    allowed = GSM7_BASIC | GSM7_EXTENSION
    return GSM7 if all(char in allowed for char in body) else UCS2


def sms_segments(body: str) -> int:
    """How many SMS parts the body is billed as."""
    if sms_encoding(body) == GSM7:
        # An extension character is two septets (ESC and the character).
        costs = [2 if char in GSM7_EXTENSION else 1 for char in body]
        single, part = 160, 153
    else:
        # UTF-16 code units: a character outside the BMP (an emoji) takes two.
        costs = [2 if ord(char) > 0xFFFF else 1 for char in body]
        single, part = 70, 67
    if sum(costs) <= single:
        return 1
    # Parts are filled a character at a time: a phone cannot join an escape sequence or a
    # surrogate pair split across two parts, so a part that cannot hold the whole of the
    # next character ends one unit short, and a division of the total would undercount.
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts, used = parts + 1, 0
        used += cost
    return parts


# The most segments a body Twilio takes can make: its longest, all characters outside the
# BMP (each two UTF-16 units, and never split across parts).
LONGEST_SMS_SEGMENTS = sms_segments("\U0001f600" * MAX_BODY_CHARACTERS)


# No look-alikes (0/O, 1/I/L) and no vowels that could spell words at the till.
CODE_ALPHABET = "23456789BCDFGHJKMNPQRSTVWXYZ"


def generate_code() -> str:
    """An unguessable redemption code such as K7Q2-M9XB: 28^8, about 3.8e11 possibilities."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_code(code: str) -> str:
    """A code as the till looks it up: codes are printed K7Q2-M9XB, and a cashier may type
    k7q2 m9xb or K7Q2M9XB, so case, spaces and dashes do not count. Two codes with the same
    normalised form are one code at the till."""
    return re.sub(r"[\s-]", "", code).upper()


# Not one of Unicode's dashes (Pd) but a symbol, which a keyboard autocorrects a dash into.
MINUS_SIGN = "\u2212"


def typed_code_keys(typed: str) -> list[str]:
    """The keys (normalise_code) a code typed at the till may be stored under: its own, and
    the one it has once what a keyboard or a phone put in for a code's characters is read
    back: an autocorrected dash (an en dash, a minus sign), an input method's full-width
    letters and digits, the invisible characters a copied SMS brings along (a direction
    mark, a soft hyphen, a zero-width space). Its own finds a pool code printed with such a
    character, typed as printed."""
    ascii_like = "".join(
        char
        for char in unicodedata.normalize("NFKC", typed)
        if char != MINUS_SIGN and unicodedata.category(char) not in ("Pd", "Cf")
    )
    return list(dict.fromkeys([normalise_code(typed), normalise_code(ascii_like)]))


# Why a queued SMS can no longer go, as its delivery records it.
STALE = "Not sent: its turn came too long after the visit it was for."
OFFER_EXPIRED = "Not sent: its offer expired before its turn came."


def why_past_due(
    at: datetime, *, visited_at: datetime, expires_at: datetime | None, validity: timedelta
) -> str | None:
    """Why an SMS can no longer be sent at `at`: STALE once more than `validity` has passed
    since the visit (the shopper has moved on), OFFER_EXPIRED once its code's last day has
    ended (the till would refuse the code it quotes); None while it can still go.
    `visited_at`: when the shopper was there, no later than when we learned of it."""
    if at - visited_at > validity:
        return STALE
    if expires_at is not None and at > expires_at:
        return OFFER_EXPIRED
    return None
