"""A customer without a first name (it is optional) still gets an SMS that reads as one:
a template opening on {first_name} does not open on the punctuation that followed it."""

from datetime import date

import pytest

from promotions.offers import render_offer, sms_encoding

VALUES = {
    "first_name": "",
    "store_name": "Passage Rivoli",
    "product_name": "X200 headphones",
    "code": "K7Q2-M9XB",
    "expires_at": date(2026, 12, 7),
    "locale": "en",
}


def text_of(template, **changes):
    """The SMS without its opt-out footer."""
    return render_offer(template, **{**VALUES, **changes}).rsplit("\n", 1)[0]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{first_name}, -20% at {store_name}: {code}", "-20% at Passage Rivoli: K7Q2-M9XB"),
        ("{first_name}: your code {code}", "Your code K7Q2-M9XB"),
        ("{first_name}! Your code {code}", "Your code K7Q2-M9XB"),
        ("{first_name}; your code {code}", "Your code K7Q2-M9XB"),
        ("{first_name} - your code {code}", "Your code K7Q2-M9XB"),
        ("{first_name}... {code} is yours", "K7Q2-M9XB is yours"),
        # French spacing, before the separator and further on, as the template has it.
        ("{first_name} ! Votre code : {code}", "Votre code : K7Q2-M9XB"),
        ("{first_name}, ça vous dit ? {code}", "Ça vous dit ? K7Q2-M9XB"),
    ],
)
def test_a_template_opening_on_an_empty_first_name_opens_on_its_own_text(template, expected):
    assert text_of(template) == expected


def test_a_line_opening_on_an_empty_first_name_opens_on_its_own_text():
    template = "Passage Rivoli\n{first_name}, your code {code}"

    assert text_of(template) == "Passage Rivoli\nYour code K7Q2-M9XB"


@pytest.mark.parametrize(
    ("template", "changes", "expected"),
    [
        # A brand keeps its own case.
        ("{first_name}, iPhone -20%: {code}", {}, "iPhone -20%: K7Q2-M9XB"),
        # A value is the customer's to read as it is: a pool code above all.
        ("{first_name}: {code} at Rivoli", {"code": "summer-20"}, "summer-20 at Rivoli"),
        ("{first_name}, {product_name} -20%", {"product_name": "z100 buds"}, "z100 buds -20%"),
        # The minus of a discount is no separator.
        ("{first_name} -20% with {code}", {}, "-20% with K7Q2-M9XB"),
    ],
)
def test_only_the_templates_own_lowercase_word_is_capitalised(template, changes, expected):
    assert text_of(template, **changes) == expected


def test_no_capital_makes_the_sms_cost_more():
    # È is not in the GSM-7 table, è is: its capital would make the SMS UCS-2, three times
    # the segments of what the admin previews with a first name.
    body = render_offer("{first_name}, è il tuo giorno: {code}", **{**VALUES, "locale": "it"})

    assert body.startswith("è il tuo giorno: K7Q2-M9XB")
    assert sms_encoding(body) == "GSM-7"


@pytest.mark.parametrize(
    "template",
    ["{first_name}, your code {code}", "{first_name}: your code {code}"],
)
def test_a_first_name_is_kept_with_what_follows_it(template):
    expected = template.format(first_name="Léa", code="K7Q2-M9XB")

    assert text_of(template, first_name="Léa") == expected
