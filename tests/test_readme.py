"""The README documents every setting: an undocumented one is a setting nobody can find."""

from __future__ import annotations

from pathlib import Path

from app.core.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [f"FAQ_{name.upper()}" for name in Settings.model_fields]
    missing = [env for env in missing if f"`{env}`" not in text]
    assert not missing, f"README.md does not document {missing}"
