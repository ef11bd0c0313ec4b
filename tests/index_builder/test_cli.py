from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.index_cli import cli


def test_bad_faq_row_exits_2_with_file_and_line(tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"id": "a", "question": "q?", "answer": "a", "lang": "en"}\n{"id": "b"}\n')
    result = CliRunner().invoke(cli, ["build", "--faq", str(faq), "--index-path", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{faq}:2: " in result.output and "question" in result.output
    assert "Traceback" not in result.output


def test_missing_model_exits_2_saying_what_to_run(tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"id": "a", "question": "q?", "answer": "a", "lang": "en"}\n')
    args = ["build", "--faq", str(faq), "--model-dir", str(tmp_path / "nomodel")]
    result = CliRunner().invoke(cli, [*args, "--index-path", str(tmp_path / "q")])
    assert result.exit_code == 2
    assert "manifest.json not found" in result.output and "make model" in result.output
