import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotions.models import CODE_KEY_LENGTH
from promotions.offers import (
    PLACEHOLDERS,
    TemplateError,
    generate_code,
    normalise_code,
    template_placeholders,
)


@pytest.mark.parametrize(
    ("template", "placeholders"),
    [
        ("", set()),
        ("Welcome to our store!", set()),
        ("Bonjour {first_name}", {"first_name"}),
        (
            "Bonjour {first_name}, -20% on {product_name} at {store_name}: {code}",
            {"first_name", "product_name", "store_name", "code"},
        ),
        ("{code} until {expires_at}, {code} again", {"code", "expires_at"}),
        ("Literal braces: {{not a placeholder}}", set()),
        ("{{{code}}}", {"code"}),
        ("Bonjour Léa ☕ {first_name}", {"first_name"}),
    ],
)
def test_it_names_the_placeholders_a_template_uses(template, placeholders):
    assert template_placeholders(template) == placeholders


def test_every_documented_placeholder_is_accepted():
    template = " ".join(f"{{{name}}}" for name in PLACEHOLDERS)

    assert template_placeholders(template) == {
        "first_name",
        "store_name",
        "product_name",
        "code",
        "expires_at",
    }


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Hello {last_name}", "Unknown placeholder {last_name}"),
        ("Hello {First_Name}", "Unknown placeholder {First_Name}"),
        ("Hello {}", "Unknown placeholder {}"),
        ("Hello {0}", "Unknown placeholder {0}"),
        ("Hello { first_name }", "Unknown placeholder { first_name }"),
        ("Hello {first_name.upper}", "Unknown placeholder {first_name.upper}"),
        ("Hello {first_name[0]}", "Unknown placeholder {first_name[0]}"),
        ("Hello {first_name", "Unbalanced braces"),
        ("Hello first_name}", "Unbalanced braces"),
        ("Hello {{first_name}", "Unbalanced braces"),
        ("Hello {first_name}}", "Unbalanced braces"),
        ("Hello {first_name:>10}", "without a format"),
        ("Hello {first_name!r}", "without a format"),
        ("{code:{code}}", "without a format"),
    ],
)
def test_it_rejects_what_it_cannot_fill_with_a_clear_error(template, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        template_placeholders(template)


def test_an_unknown_placeholder_error_lists_the_known_ones():
    with pytest.raises(TemplateError) as error:
        template_placeholders("{price}")

    for name in PLACEHOLDERS:
        assert f"{{{name}}}" in str(error.value)


def test_a_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)


@given(st.text(alphabet=st.sampled_from("{}!:.[]0 _abcdefimnorst"), max_size=30) | st.text())
def test_any_text_either_parses_or_raises_a_template_error(template):
    try:
        placeholders = template_placeholders(template)
    except TemplateError:
        return
    assert placeholders <= set(PLACEHOLDERS)


# --- Codes at the till -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("K7Q2-M9XB", "K7Q2M9XB"),
        ("k7q2 m9xb", "K7Q2M9XB"),
        (" K7Q2M9XB\n", "K7Q2M9XB"),
        ("save-10", "SAVE10"),
        ("GIFT - CARD\t7", "GIFTCARD7"),
        ("café", "CAFÉ"),
        ("--", ""),
    ],
)
def test_a_code_is_keyed_as_the_till_reads_it(typed, key):
    assert normalise_code(typed) == key


def test_a_generated_code_is_its_key_with_a_dash():
    code = generate_code()

    assert normalise_code(code) == code.replace("-", "")


@given(st.text(max_size=40))
def test_a_key_is_its_own_key_and_fits_its_column(code):
    key = normalise_code(code)

    assert normalise_code(key) == key
    assert len(key) <= CODE_KEY_LENGTH
