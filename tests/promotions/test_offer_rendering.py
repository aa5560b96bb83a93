"""Offer text: placeholders, the opt-out footer, encoding and segments, redemption codes."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotions import offers
from promotions.offers import (
    CODE_ALPHABET,
    TemplateError,
    generate_code,
    render_offer,
    sms_encoding,
    sms_segments,
    template_placeholders,
)

VALUES = {
    "first_name": "Léa",
    "store_name": "Passage Rivoli",
    "product_name": "X200 headphones",
    "code": "K7Q2-M9XB",
    "expires_at": date(2026, 11, 29),
    "locale": "fr-FR",
}


def render(template, **changes):
    return render_offer(template, **{**VALUES, **changes})


def test_the_seed_offer_reads_as_the_spec_says():
    body = render(
        "Bonjour {first_name}, the {product_name} you looked at are 20% off in our "
        "{store_name} store today, code {code}"
    )
    assert body == (
        "Bonjour Léa, the X200 headphones you looked at are 20% off in our Passage Rivoli "
        "store today, code K7Q2-M9XB\nRépondez STOP pour ne plus recevoir de SMS."
    )


@pytest.mark.parametrize(
    ("locale", "footer", "expiry"),
    [
        ("fr-FR", "Répondez STOP pour ne plus recevoir de SMS.", "29/11"),
        ("en-GB", "Reply STOP to opt out.", "29/11"),
        ("en-US", "Reply STOP to opt out.", "11/29"),
        ("es-ES", "Responde STOP para darte de baja.", "29/11"),
        ("de", "Antworte STOP, um keine SMS mehr zu erhalten.", "29/11"),
        ("", "Reply STOP to opt out.", "29/11"),
        ("zz-ZZ", "Reply STOP to opt out.", "29/11"),
    ],
)
def test_the_footer_and_date_follow_the_customers_locale(locale, footer, expiry):
    body = render("Valid until {expires_at}", locale=locale)
    assert body == f"Valid until {expiry}\n{footer}"


def test_every_footer_keeps_the_sms_in_gsm7():
    for footer in offers.OPT_OUT_FOOTERS.values():
        assert sms_encoding(footer) == "GSM-7", footer


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Bonjour {first_name}, -20%", "Bonjour, -20%"),
        ("Hi {first_name}! Code {code}", "Hi! Code K7Q2-M9XB"),
        ("{first_name} here is {code}", "here is K7Q2-M9XB"),
    ],
)
def test_an_empty_first_name_leaves_no_gap(template, expected):
    assert render(template, first_name="").split("\n")[0] == expected


def test_literal_braces_survive():
    assert render("{{VIP}} {code}").startswith("{VIP} K7Q2-M9XB")


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Bonjour Léa, -20% à Rivoli", "GSM-7"),
        ("Price: 20€ [today]", "GSM-7"),
        ("It\u2019s yours", "UCS-2"),  # a curly apostrophe from a word processor
        ("20\u00a0%", "UCS-2"),  # a non-breaking space
        ("Enjoy 🎧", "UCS-2"),
        ("Ça va", "GSM-7"),
        ("ça va", "UCS-2"),  # the GSM table has Ç but not ç
    ],
)
def test_the_encoding_is_gsm7_unless_a_character_is_outside_it(text, encoding):
    assert sms_encoding(text) == encoding


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters cost two septets
        ("€" * 81, 2),
        ("é" * 70 + "\u2019", 2),  # UCS-2: 71 characters
        ("\u2019" * 70, 1),
        ("\u2019" * 134, 2),
        ("\u2019" * 135, 3),
        ("🎧" * 35, 1),  # an emoji is two UTF-16 code units
        ("🎧" * 36, 2),
    ],
)
def test_segments_are_counted_as_carriers_bill_them(text, segments):
    assert sms_segments(text) == segments


def test_codes_are_unguessable_and_unambiguous():
    codes = {generate_code() for _ in range(10_000)}
    assert len(codes) == 10_000
    for code in list(codes)[:500]:
        first, second = code.split("-")
        assert len(first) == len(second) == 4
        assert set(first + second) <= set(CODE_ALPHABET)
    assert not set("0O1IL") & set(CODE_ALPHABET)


text = st.text(max_size=80)
accepted_templates = st.lists(
    st.one_of(
        st.sampled_from([f"{{{name}}}" for name in offers.PLACEHOLDERS]),
        st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20),
        st.just("{{"),
        st.just("}}"),
    ),
    max_size=12,
).map("".join)


@given(accepted_templates, text, text, text, st.sampled_from(["fr-FR", "en-US", "", "xx"]))
def test_any_accepted_template_renders_with_its_footer(
    template, first_name, store, product, locale
):
    template_placeholders(template)
    body = render_offer(
        template,
        first_name=first_name,
        store_name=store,
        product_name=product,
        code="K7Q2-M9XB",
        expires_at=date(2026, 11, 29),
        locale=locale,
    )
    assert body.endswith(offers.opt_out_footer(locale))
    assert sms_segments(body) >= 1


@given(st.text(max_size=400))
def test_segments_follow_the_encoding(body):
    single = 160 if sms_encoding(body) == "GSM-7" else 70
    assert sms_segments(body) >= 1
    assert (sms_segments(body) == 1) == (
        len(body.encode("utf-16-le", "surrogatepass")) // 2 <= single
        if single == 70
        else sum(2 if c in offers.GSM7_EXTENSION else 1 for c in body) <= 160
    )


@given(st.text(max_size=60))
def test_a_template_is_accepted_or_refused_with_a_clear_error(template):
    try:
        template_placeholders(template)
    except TemplateError as error:
        assert str(error)
