"""Offer templates on plain values: no Django."""

from string import Formatter

PLACEHOLDERS = ("first_name", "store_name", "product_name", "code", "expires_at")


class TemplateError(ValueError):
    pass


def template_placeholders(template: str) -> set[str]:
    """The placeholders a template uses; TemplateError names any it cannot fill."""
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
    return used
