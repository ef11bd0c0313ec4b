"""Write evaluation results as JSON (everything, per-query ranks included), markdown and a PNG."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_export.evaluation.metrics import METRICS
from model_export.evaluation.queries import KINDS
from model_export.evaluation.runner import EvalResults

KIND_LABELS = {
    "translated": "translated",
    "english": "English",
    "cs-tgt": "CS: target + en words",
    "cs-en": "CS: en + target words",
    "code-switched": "code-switched (both)",
}
# The two code-switching directions as the table names them.
DIRECTION_LABELS = {"cs-tgt": "target + English words", "cs-en": "English + target words"}


def to_json(results: EvalResults) -> dict[str, Any]:
    cfg = results.config
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "wall_s": round(results.wall_s, 1),
        "eval_sets": {ds: s.checksum for ds, s in results.sets.items()},
        "config": {
            "datasets": cfg.datasets,
            "kinds": list(cfg.kinds),
            "languages": list(cfg.languages),
            "max_queries": cfg.max_queries,
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
        },
        "models": {
            r.spec.name: {
                "kind": r.spec.kind,
                "path": r.spec.path or r.spec.url,
                "variant": r.spec.variant,
                "note": r.spec.note,
                "status": r.status,
                "wall_s": round(r.wall_s, 1),
            }
            for r in results.runs
        },
        "results": results.summary_rows(),
        "comparisons": results.comparisons(),
        "penalties": results.penalties(),
        "penalty_comparisons": results.penalty_comparisons(),
        "ranks": {
            r.spec.name: {
                f"{ds}/{lang}/{kind}": ranks for (ds, lang, kind), ranks in r.ranks.items()
            }
            for r in results.runs
            if r.status == "ok"
        },
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _cell(row: dict[str, Any] | None, metric: str = "R@1", ci: bool = True) -> str:
    if row is None:
        return "-"
    m = row["metrics"][metric]
    if not ci:
        return _pct(m["mean"])
    return f"{_pct(m['mean'])} [{_pct(m['ci_low'])}, {_pct(m['ci_high'])}]"


def _points(x: float) -> str:
    """A fraction as signed percentage points, one decimal; never "-0.0"."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def _interval(mean: float, lo: float, hi: float) -> str:
    """`+d.d [+lo, +hi]` in percentage points."""
    return f"{_points(mean)} [{_points(lo)}, {_points(hi)}]"


def _dataset_label(ds: str) -> str:
    return "all datasets" if ds == "all" else ds


def direction_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines: R@1 of B minus A per code-switching direction, per dataset and pooled.

    One row per compare pair (e.g. recipe minus ablation), one column per dataset (and all
    datasets) x direction; cells are paired differences with their 95% interval.
    """
    comps = {
        (c["a"], c["b"], c["dataset"], c["group"]): c
        for c in report["comparisons"]
        if c["metric"] == "R@1" and c["group"] in DIRECTION_LABELS
    }
    pairs = list(dict.fromkeys((a, b) for a, b, _, _ in comps))
    if not pairs:
        return []
    columns = [
        (ds, kind) for ds in [*report["config"]["datasets"], "all"] for kind in DIRECTION_LABELS
    ]
    head = ["A", "B"] + [f"{_dataset_label(ds)}: {DIRECTION_LABELS[k]}" for ds, k in columns]
    lines = [
        "Recall@1 of B minus A per code-switching direction (percentage points, 95% paired "
        "bootstrap interval; pooled over languages):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for a, b in pairs:
        cells = []
        for ds, kind in columns:
            c = comps.get((a, b, ds, kind))
            cells.append("-" if c is None else _interval(c["delta"], c["ci_low"], c["ci_high"]))
        lines.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
    return lines


def penalty_table(report: dict[str, Any], dataset: str) -> list[str]:
    """Markdown lines: the code-switching penalty of each model per language of `dataset`.

    Rows are models, columns the languages and their pooled value ("all"); cells are
    R@1(translated) - R@1(cs-tgt) on the same entries with a 95% paired interval, in points.
    """
    rows = [p for p in report.get("penalties", []) if p["dataset"] == dataset]
    if not rows:
        return []
    cells = {(p["model"], p["lang"]): p for p in rows}
    models = list(dict.fromkeys(p["model"] for p in rows))
    langs = [*sorted({p["lang"] for p in rows} - {"all"}), "all"]
    lines = [
        f"**{_dataset_label(dataset)}**, code-switching penalty per language: R@1 on translated "
        "queries minus R@1 on the same entries' target + English words queries (percentage "
        "points, 95% paired bootstrap interval; 0 = no penalty; n = entries in `all`):",
        "",
        "| model | " + " | ".join(langs) + " | n |",
        "|---|" + "---|" * (len(langs) + 1),
    ]
    for m in models:
        row = [cells.get((m, lang)) for lang in langs]
        texts = ["-" if p is None else _interval(p["mean"], p["ci_low"], p["ci_high"]) for p in row]
        n = cells[(m, "all")]["n"] if (m, "all") in cells else 0
        lines.append(f"| {m} | " + " | ".join(texts) + f" | {n} |")
    return lines


def penalty_difference_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines: penalty of B minus penalty of A per compare pair, pooled over languages.

    A negative difference means B loses less R@1 to code-switching than A; per-language
    differences are in the JSON report (`penalty_comparisons`).
    """
    comps = [c for c in report.get("penalty_comparisons", []) if c["lang"] == "all"]
    if not comps:
        return []
    lines = [
        "Code-switching penalty of B minus that of A (percentage points, pooled over languages; "
        "95% paired bootstrap interval over entries; sign-flip permutation p):",
        "",
        "| A | B | dataset | penalty A | penalty B | B - A | 95% CI | p | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comps:
        lines.append(
            f"| {c['a']} | {c['b']} | {_dataset_label(c['dataset'])} | {_points(c['penalty_a'])}"
            f" | {_points(c['penalty_b'])} | {_points(c['delta'])} | [{_points(c['ci_low'])}, "
            f"{_points(c['ci_high'])}] | {c['p_value']:.3g} | {int(c['n'])} |"
        )
    return lines


def _code_switching_sections(report: dict[str, Any]) -> list[str]:
    """The per-direction comparison, the penalty tables and the penalty differences."""
    tables = [direction_table(report)]
    tables += [penalty_table(report, ds) for ds in [*report["config"]["datasets"], "all"]]
    tables.append(penalty_difference_table(report))
    lines: list[str] = []
    for table in tables:
        if table:
            lines += ["", *table]
    return lines


def _index(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["model"], r["dataset"], r["kind"], r["lang"]): r for r in rows}


def to_markdown(report: dict[str, Any]) -> str:
    rows = report["results"]
    idx = _index(rows)
    models = [m for m, info in report["models"].items() if info["status"] == "ok"]
    datasets: list[str] = report["config"]["datasets"]
    lines: list[str] = []
    lines.append(
        "Recall@1 (%) with 95% bootstrap intervals, pooled over languages "
        "(queries per cell in the detailed tables)."
    )
    lines.append("")
    head = ["model"] + [
        f"{ds} {KIND_LABELS[k]}"
        for ds in datasets
        for k in ("translated", "english", "code-switched")
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for m in models:
        cells = [
            _cell(idx.get((m, ds, k, "all")))
            for ds in datasets
            for k in ("translated", "english", "code-switched")
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    skipped = {m: i for m, i in report["models"].items() if i["status"] != "ok"}
    if skipped:
        lines.append("")
        lines.append(
            "Not produced: " + "; ".join(f"{m} ({i['status']})" for m, i in skipped.items())
        )
    for ds in datasets:
        lines.append("")
        lines.append(f"**{ds}**, all metrics (%), pooled over languages:")
        lines.append("")
        lines.append("| model | queries | n | R@1 | R@5 | R@10 | R@30 | MRR@10 | nDCG@10 |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for m in models:
            for k in (*KINDS, "code-switched"):
                r = idx.get((m, ds, k, "all"))
                if r is None:
                    continue
                vals = " | ".join(_pct(r["metrics"][x]["mean"]) for x in METRICS)
                lines.append(f"| {m} | {KIND_LABELS[k]} | {r['n']} | {vals} |")
        langs = sorted(
            {r["lang"] for r in rows if r["dataset"] == ds and r["lang"] not in ("all", "en")}
        )
        lines.append("")
        lines.append(f"**{ds}**, Recall@1 (%) per language (translated / cs-tgt / cs-en):")
        lines.append("")
        lines.append("| model | " + " | ".join(langs) + " |")
        lines.append("|---|" + "---|" * len(langs))
        for m in models:
            cells = []
            for lang in langs:
                parts = [
                    _cell(idx.get((m, ds, k, lang)), ci=False)
                    for k in ("translated", "cs-tgt", "cs-en")
                ]
                cells.append(" / ".join(parts))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    # The markdown keeps Recall@1 on the headline groups; results.json has every comparison.
    headline = ("translated", "english", "code-switched")
    comps = [c for c in report["comparisons"] if c["metric"] == "R@1" and c["group"] in headline]
    if comps:
        lines.append("")
        lines.append(
            "Paired differences (B - A, percentage points; 95% paired bootstrap interval; "
            "sign-flip permutation p):"
        )
        lines.append("")
        lines.append("| A | B | dataset | queries | metric | delta | 95% CI | p | n |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for c in comps:
            lines.append(
                f"| {c['a']} | {c['b']} | {c['dataset']} | {KIND_LABELS[c['group']]}"
                f" | {c['metric']} | {100 * c['delta']:+.1f} | [{100 * c['ci_low']:+.1f}, "
                f"{100 * c['ci_high']:+.1f}] | {c['p_value']:.3g} | {int(c['n'])} |"
            )
    lines += _code_switching_sections(report)
    lines.append("")
    sets = ", ".join(f"{ds} `{h[:16]}`" for ds, h in report["eval_sets"].items())
    lines.append(f"Eval sets: {sets}. Wall time {report['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path, metric: str = "R@1") -> Path:
    """Bars of `metric` per language, one panel per dataset x query kind, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = _index(report["results"])
    models = [m for m, info in report["models"].items() if info["status"] == "ok"]
    datasets: list[str] = report["config"]["datasets"]
    kinds = [k for k in KINDS if k in report["config"]["kinds"]]
    size = (4.2 * len(kinds), 3.4 * len(datasets))
    fig, axes = plt.subplots(len(datasets), len(kinds), figsize=size, squeeze=False, sharey=True)
    width = 0.8 / max(1, len(models))
    for i, ds in enumerate(datasets):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            langs = sorted({k[3] for k in idx if k[1] == ds and k[2] == kind and k[3] != "all"})
            langs.append("all")
            for n, m in enumerate(models):
                vals = [
                    100 * idx[(m, ds, kind, lang)]["metrics"][metric]["mean"]
                    if (m, ds, kind, lang) in idx
                    else 0.0
                    for lang in langs
                ]
                xs = [x + n * width for x in range(len(langs))]
                ax.bar(xs, vals, width, label=m)
            ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(langs))], langs)
            ax.set_title(f"{ds}: {KIND_LABELS[kind]}", fontsize=9)
            ax.set_ylim(0, 100)
            ax.grid(axis="y", alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{metric} (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(models)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(models) // 4), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_reports(
    results: EvalResults, out_dir: Path, chart: Path | None = None
) -> dict[str, Path]:
    report = to_json(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(
        json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    paths["png"] = plot(report, chart or out_dir / "results.png")
    return paths
