"""`vlmteach-fast demo --instances 1` runs offline on the shipped toy models and writes its table, GIF, plot, HTML."""

import json
import os

import pytest

from vlmteach_fast.cli import main
from vlmteach_fast.cost import UnitCosts

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vlmteach_fast", "toy", "weights")


@pytest.mark.skipif(not os.path.isdir(WEIGHTS), reason="toy weights are not in this checkout")
def test_demo_one_instance(tmp_path, capsys):
    assert main(["demo", "--instances", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for method in ("plain", "best_of_5", "optimize"):
        assert f"| {method} |" in out
    files = sorted(os.listdir(tmp_path))
    assert {"index.html", "instance_000.gif", "results.json"} <= set(files), files
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == ["plain", "best_of_5", "optimize"]
    assert all(0.0 <= r["rule_score"] <= 1.0 for r in results["rows"])
    # Best-of-5's cost record: 5 samples of 4 steps; optimize ran the steps planned from Best-of-5's unit costs
    bon, opt = results["rows"][1]["cost"], results["rows"][2]["cost"]
    assert bon["denoiser_forward"] == 20
    units = opt["extra"]["unit_costs"]
    assert opt["extra"]["budget_seconds"] == 5 * units["candidate"]
    assert results["rows"][2]["steps"] <= opt["extra"]["planned_steps"] == UnitCosts(**units).steps_within(5, 0)
    assert units["finish"] < units["candidate"]  # k-step over 4 steps: the kept prediction is decoded, not resampled
    assert "instance_000.gif" in (tmp_path / "index.html").read_text()
    assert "quality_vs_cost.png" in (tmp_path / "index.html").read_text()
    assert (tmp_path / "quality_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not os.path.isdir(WEIGHTS), reason="toy weights are not in this checkout")
def test_demo_with_recorded_units_plans_the_same_steps_on_any_machine(tmp_path, capsys):
    # 5 candidates of 1 s: 5 - finish 1 = 4 s = last step 1 + one step of 2 + 1 left: two steps, however fast this
    # machine is; the demo prints the units it planned from, to be passed back
    units = {"candidate": 1.0, "step": 2.0, "evaluation": 1.0, "finish": 1.0}
    assert main(["demo", "--instances", "1", "--out", str(tmp_path), "--units", json.dumps(units)]) == 0
    out = capsys.readouterr().out
    opt = json.loads((tmp_path / "results.json").read_text())["rows"][2]
    assert opt["cost"]["extra"]["planned_steps"] == 2 and opt["cost"]["extra"]["unit_costs"] == units
    assert f"--units '{json.dumps(units)}'" in out
    with pytest.raises(SystemExit, match="--units must be a JSON object"):
        main(["demo", "--instances", "1", "--out", str(tmp_path / "x"), "--units", "{candidate: 1}"])
    with pytest.raises(SystemExit, match="error: DemoConfig.unit_costs has unknown or missing keys"):
        main(["demo", "--instances", "1", "--out", str(tmp_path / "y"), "--units", '{"candidate": 1.0}'])
