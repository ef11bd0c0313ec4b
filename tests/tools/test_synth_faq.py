"""The synthetic FAQ file is valid for the service's own reader, sized, unique and repeatable."""

from __future__ import annotations

from pathlib import Path

from index_builder.faq import read_faq
from tools.synth_faq import synthetic_rows, write_faq

REPO = Path(__file__).resolve().parents[2]


def test_file_is_valid_sized_and_starts_with_the_included_faq(tmp_path: Path) -> None:
    sample = REPO / "data" / "faq.jsonl"
    out = tmp_path / "faq.jsonl"
    write_faq(out, 3000, sample, seed=10, check=True)
    items = read_faq(out)  # the reader the index build uses: raises on any invalid row
    included = read_faq(sample)
    assert len(items) == 3000
    assert [i.id for i in items[: len(included)]] == [i.id for i in included]
    assert len({i.id for i in items}) == 3000
    synthetic = items[len(included) :]
    assert len({i.question for i in synthetic}) == len(synthetic)
    assert {i.lang for i in synthetic} == {"de", "en", "es", "fr", "id"}
    assert not out.with_name(out.name + ".tmp.jsonl").exists()


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = list(synthetic_rows(50, seed=1))
    assert a == list(synthetic_rows(50, seed=1))
    assert a != list(synthetic_rows(50, seed=2))
