from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_builder.faq import FaqFileError, content_hash, read_faq

REPO = Path(__file__).resolve().parents[2]


def _jsonl(tmp_path: Path, rows: list[object], name: str = "faq.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _row(i: str, **kw: object) -> dict[str, object]:
    return {"id": i, "question": f"question {i}?", "answer": "an answer", "lang": "en", **kw}


def test_reads_jsonl_with_optional_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [_row("a", market="MX", tags=["orders"]), _row("b", lang="ES")])
    items = read_faq(path)
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].market == "mx" and items[0].tags == ["orders"]
    assert items[1].lang == "es" and items[1].market is None


def test_reads_csv_with_pipe_separated_tags(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        "id,question,answer,lang,market,tags\n"
        'a,"Where is my order?","Track it, here.",en,global,orders|tracking\n'
        "b,¿Dónde está mi pedido?,Aquí.,es,,\n",
        encoding="utf-8",
    )
    items = read_faq(path)
    assert items[0].answer == "Track it, here."
    assert items[0].tags == ["orders", "tracking"]
    assert items[1].question == "¿Dónde está mi pedido?" and items[1].market is None


@pytest.mark.parametrize(
    ("line", "row", "needle"),
    [
        (2, "{not json", "invalid JSON"),
        (2, json.dumps(["a", "list"]), "JSON object"),
        (2, json.dumps({"id": "b", "answer": "x", "lang": "en"}), "question"),
        (2, json.dumps({**_row("b"), "question": "   "}), "question"),
        (2, json.dumps({**_row("b"), "colour": "red"}), "colour"),
        (2, json.dumps(_row("a")), "duplicate id 'a' (first on line 1)"),
    ],
)
def test_bad_jsonl_row_names_file_and_line(
    tmp_path: Path, line: int, row: str, needle: str
) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text(json.dumps(_row("a")) + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(FaqFileError) as err:
        read_faq(path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert needle in str(err.value)


def test_bad_csv_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text("id,question,answer,lang\na,q?,ans,en\nb,,ans,en\n", encoding="utf-8")
    with pytest.raises(FaqFileError) as err:
        read_faq(path)
    assert err.value.line == 3 and "question" in str(err.value)


def test_csv_header_problems(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text("id,question,lang\na,q?,en\n", encoding="utf-8")
    with pytest.raises(FaqFileError, match="lacks column"):
        read_faq(path)
    path.write_text("id,question,answer,lang,colour\na,q?,x,en,red\n", encoding="utf-8")
    with pytest.raises(FaqFileError, match="unknown CSV column"):
        read_faq(path)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(FaqFileError, match="not found"):
        read_faq(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(FaqFileError, match="no FAQ entries"):
        read_faq(empty)
    other = tmp_path / "faq.xml"
    other.write_text("<faq/>", encoding="utf-8")
    with pytest.raises(FaqFileError, match="unknown format"):
        read_faq(other)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FaqFileError, match="UTF-8"):
        read_faq(binary)


def test_content_hash_ignores_order_but_sees_edits(tmp_path: Path) -> None:
    a = read_faq(_jsonl(tmp_path, [_row("a"), _row("b")], "a.jsonl"))
    b = read_faq(_jsonl(tmp_path, [_row("b"), _row("a")], "b.jsonl"))
    c = read_faq(_jsonl(tmp_path, [_row("a"), {**_row("b"), "answer": "changed"}], "c.jsonl"))
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(c)


def test_shipped_sample_faq_is_valid() -> None:
    items = read_faq(REPO / "data" / "faq.jsonl")
    langs = {i.lang for i in items}
    topics = {i.tags[0] for i in items if i.lang == "en"}
    assert len(topics) >= 40
    assert "en" in langs and len(langs - {"en"}) >= 4
    # Every translation belongs to a topic that also has an English entry.
    assert {i.tags[0] for i in items} <= topics
    assert read_faq(REPO / "data" / "faq.csv")
