"""The Grafana dashboard queries exactly the metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from app.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "faq-search-dashboard.json"
SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
}


def _exported() -> dict[str, str]:
    """Series name -> metric family, as Prometheus will see them."""
    names = {}
    for family in Metrics().registry.collect():
        assert family.type != "summary", f"{family.name}: histograms, not summaries"
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_covers_every_metric_and_only_real_ones() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = _exported()
    exprs = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bfaq_[a-z_]+", expr)}
    unknown = used - set(exported)
    assert not unknown, f"the dashboard queries series the service does not export: {unknown}"
    # The service's own metrics; the standard process_* / python_* ones need no panel.
    ours = {family for family in exported.values() if family.startswith("faq_")}
    missing = ours - {exported[n] for n in used}
    assert not missing, f"metrics with no panel: {missing}"
    # Latency panels are quantiles over histogram buckets.
    assert any("histogram_quantile(0.99" in e and "_bucket" in e for e in exprs)


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
