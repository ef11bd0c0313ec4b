"""docs/configuration.md is what tools/config_docs.py makes of Settings now.

The page is generated, so a setting added, removed or changed in the code without
`python -m tools.config_docs` shows here, and a hand edit of the page does too.
"""

from __future__ import annotations

from tools.config_docs import PAGE, env_names, render, settings_class


def test_configuration_page_is_generated_from_settings() -> None:
    expected = render(settings_class())
    assert PAGE.read_text(encoding="utf-8") == expected, (
        "docs/configuration.md is stale: run `python -m tools.config_docs`"
    )


def test_every_setting_is_on_the_page() -> None:
    cls = settings_class()
    prefix = str(cls.model_config.get("env_prefix", ""))
    text = PAGE.read_text(encoding="utf-8")
    missing = [
        name
        for name, field in cls.model_fields.items()
        if f"`{env_names(name, field, prefix)[0]}`" not in text
    ]
    assert not missing, f"docs/configuration.md does not name {missing}"


def test_the_page_follows_settings_at_run_time() -> None:
    # Nothing on the page is hard-coded: a field added to Settings appears with its default.
    from pydantic import Field

    base = settings_class()

    class More(base):  # type: ignore[valid-type,misc]
        new_knob: int = Field(3, ge=1, description="A knob added after the page was written.")

    text = render(More)
    assert "| `FAQ_NEW_KNOB` | integer, >= 1 | `3` | A knob added after" in text
    assert text != render(base)
