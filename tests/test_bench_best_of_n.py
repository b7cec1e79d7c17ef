"""Best-of-N in the bench: a separate judge model picks (``--select-judge``), the records and reports say who picked,
and ``best_of_n_oracle`` (picked by the benchmark's own score) is reported as an upper reference, not a method."""

import json
import os

import pytest

from vlmteach_fast.evaluate import BenchConfig, load_suite, read_all_records, run_bench
from vlmteach_fast.evaluate.cli import main
from vlmteach_fast.evaluate.summary import summarize, write_reports
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig
from vlmteach_fast.testing import BrightnessTeacher, tiny_ti2v_pipeline

TINY = "py:vlmteach_fast.testing:tiny_ti2v_pipeline"
BRIGHT = "py:vlmteach_fast.testing:BrightnessTeacher"
DARK = "py:vlmteach_fast.testing:DarknessTeacher"


def darkness(item, frames):
    """The suite's scorer in these tests: 1 - mean of the last frame (the teacher prefers the opposite)."""
    return float(1.0 - frames[0, -1].mean())


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    import torch
    from PIL import Image

    root = tmp_path_factory.mktemp("suite")
    g = torch.Generator().manual_seed(0)
    lines = []
    for k in range(2):
        Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()).save(root / f"f{k}.png")
        lines.append(json.dumps({"index": k, "task_name": "t", "category": "c", "prompt": "make it bright",
                                 "input_image_path": f"f{k}.png"}))
    (root / "s.jsonl").write_text("\n".join(lines) + "\n")
    return str(root / "s.jsonl")


def _cfg(method, out, **kw):
    optimize = OptimizeConfig(progress=False, sampling=SamplingConfig(num_frames=5, final_steps=1))
    return BenchConfig(method=method, out=str(out), optimize=optimize, options={"n": 3, "rounds": 0}, **kw)


def _result(out, rec):
    with open(os.path.join(out, os.path.dirname(rec["video"]), "result.json")) as f:
        return json.load(f)


def test_oracle_picks_the_scorers_best_and_is_reported_as_a_reference(suite_file, tmp_path):
    suite, pipe = load_suite(suite_file), tiny_ti2v_pipeline()
    recs = {}
    for method in ("baseline", "best_of_n", "best_of_n_oracle"):
        cfg = _cfg(method, tmp_path, scorer=darkness, identity={"scorer": "py:test_bench_best_of_n:darkness"})
        recs[method] = run_bench(suite, cfg, lambda: (pipe, BrightnessTeacher(), None), progress=False)
        assert [r["status"] for r in recs[method]] == ["ok", "ok"]
    for oracle, teacher_pick in zip(recs["best_of_n_oracle"], recs["best_of_n"]):
        values = [c["selection"] for c in _result(tmp_path, oracle)["candidates"]]
        # the oracle's recorded score is the best scorer value among its candidates, found by the scorer itself
        assert len(values) == 3 and oracle["score"] == pytest.approx(max(values), abs=1e-6)
        assert oracle["score"] >= teacher_pick["score"] and oracle["selected_by"] == "oracle"
        assert teacher_pick["selected_by"] == "teacher"
        assert oracle["cost"]["extra"]["oracle_score_calls"] == 3
        assert oracle["provenance"]["selector"]["name"] == "oracle"
        assert teacher_pick["provenance"]["selector"]["name"] == "teacher"
    # on at least one instance the teacher and the scorer disagree: the oracle really used the scorer
    assert any(o["score"] > t["score"] + 1e-6 for o, t in zip(recs["best_of_n_oracle"], recs["best_of_n"]))

    records = read_all_records(tmp_path)
    rows = {(r.method, r.level): r for r in summarize(records)}
    assert rows[("best_of_n_oracle", "all")].kind == "oracle" and rows[("best_of_n", "all")].kind == "method"
    assert rows[("best_of_n_oracle", "all")].gain_over_baseline is None
    assert rows[("best_of_n", "all")].gain_over_baseline is not None
    paths = write_reports(tmp_path, records)
    md = open(paths["summary.md"]).read()
    methods_part, references = md.split("## References: oracle upper bounds (pass@k), not methods")
    assert "best_of_n_oracle" not in methods_part.split("## Provenance")[0]
    assert "| best_of_n_oracle (oracle, pass@k) | all: all |" in references and "not a competitor" in references
    overall = methods_part.split("## Overall")[1]
    assert "| best_of_n |" in overall and "best_of_n_oracle |" not in overall
    assert "best_of_n picks its video among the candidates by: teacher" in md
    assert "<th>best_of_n_oracle (oracle, pass@k)</th>" in open(paths["index.html"]).read()
    csv = open(paths["summary.csv"]).read().splitlines()
    assert csv[0].endswith(",kind") and any(line.startswith("best_of_n_oracle,all,") and line.endswith(",oracle")
                                            for line in csv)


def test_select_judge_picks_in_the_bench_and_is_recorded(suite_file, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 3\nprogress: false\nsampling: {num_frames: 5, final_steps: 1}\n")
    picks = {}
    for name, extra in (("teacher", []), ("judge", ["--select-judge", DARK])):
        out = tmp_path / name
        assert main(["bench", "--suite", suite_file, "--method", "best_of_n", "--pipeline", TINY, "--teacher",
                     BRIGHT, "--config", str(cfg), "--out", str(out), "--no-progress", *extra]) == 0
        recs = read_all_records(out)
        assert {r["selected_by"] for r in recs} == {name}
        picks[name] = [_result(out, r)["candidates"][0]["seed"] for r in sorted(recs, key=lambda r: r["index"])]
        if name == "judge":
            assert all(r["cost"]["judge_reward_calls"] == 3 and r["cost"]["reward_calls"] == 3 for r in recs)
            assert {r["provenance"]["selector"]["model"] for r in recs} == {DARK}
            assert f"best_of_n picks its video among the candidates by: judge, model {DARK}" in \
                (out / "summary.md").read_text()
    # the darkness judge prefers what the brightness teacher ranks last: different picks
    assert picks["judge"] != picks["teacher"]
    assert "oracle" not in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--select-judge", "py:no_such_module:f"], "--select-judge 'py:no_such_module:f': cannot import module"),
    (["--select-judge", "./no/judge"], "--select-judge directory not found"),
    (["--select-judge", "none"], "--select-judge none: expected teacher, tiny, toy"),
    (["--method", "baseline", "--select-judge", DARK], "needs --method best_of_n, got --method baseline"),
])
def test_bad_select_judge_fails_in_one_line_before_models_load(suite_file, tmp_path, extra, message):
    args = ["bench", "--suite", suite_file, "--method", "best_of_n", "--pipeline", TINY, "--teacher", BRIGHT, "--out",
            str(tmp_path / "out")]
    for k in range(0, len(extra), 2):
        if extra[k] in args:
            args[args.index(extra[k]) + 1] = extra[k + 1]
        else:
            args += extra[k:k + 2]
    with pytest.raises(SystemExit) as exc:
        main(args)
    text = str(exc.value)
    assert message in text and "\n" not in text
    assert not os.path.exists(tmp_path / "out" / "shards")  # nothing ran


def test_cli_labels_the_oracle_run_as_a_reference(suite_file, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 2\nprogress: false\nsampling: {num_frames: 5, final_steps: 1}\n")
    assert main(["bench", "--suite", suite_file, "--method", "best_of_n_oracle", "--pipeline", TINY, "--teacher",
                 BRIGHT, "--scorer", "py:test_bench_best_of_n:darkness", "--config", str(cfg), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bench: best_of_n_oracle (oracle upper reference, pass@k: picked by the benchmark's own score; not a " \
           "method)" in out
    assert "## References: oracle upper bounds (pass@k)" in (tmp_path / "o" / "summary.md").read_text()
