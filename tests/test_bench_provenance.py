"""Every record and report names its scorer (package, version, commit, mode), judge prompt and vlmteach_fast's
version; records of one report scored by different scorers are flagged, not averaged silently."""

import csv
import json
import os

import pytest

import vlmteach_fast
from vlmteach_fast.cli import main
from vlmteach_fast.evaluate import provenance
from vlmteach_fast.evaluate.judge import VLMChecklistJudge
from vlmteach_fast.evaluate.records import read_all_records

VBVR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vbvr")


def _bench(out, *extra):
    return main(["bench", "--suite", VBVR, "--method", "static", "--scorer", "vbvr", "--out", str(out),
                 "--no-progress", *extra])


def _summary(out):
    with open(os.path.join(out, "summary.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["level"] == "all"]
    return rows, open(os.path.join(out, "summary.md")).read()


def test_records_and_reports_name_the_scorer_its_mode_and_version(fake_evalkit, tmp_path):
    assert _bench(tmp_path) == 0
    recs = read_all_records(tmp_path)
    prov = recs[0]["provenance"]
    assert all(r["provenance"] == prov for r in recs) and len(recs) == 3
    assert prov["scorer"]["name"] == "VBVR-EvalKit" and "rule score only" in prov["scorer"]["mode"]
    assert prov["scorer"]["package"] == "vbvr_bench"  # the stand-in is no installed distribution
    assert prov["scorer"]["commit"]  # tests/fake_evalkit is tracked by this repository: its HEAD
    assert prov["vlmteach_fast"]["version"] == vlmteach_fast.__version__
    rows, md = _summary(tmp_path)
    assert "VBVR-EvalKit, mode vbvr (rule score only" in rows[0]["scored_by"]
    assert "## Provenance" in md and f"commit {prov['scorer']['commit']}" in md
    assert f"vlmteach_fast, version {vlmteach_fast.__version__}" in md


def test_a_rerun_with_another_scorer_commit_is_flagged_in_the_report_and_on_stdout(fake_evalkit, tmp_path,
                                                                                    monkeypatch, capsys):
    real = provenance.source_provenance

    def commit(c):
        monkeypatch.setattr(provenance, "source_provenance",
                            lambda m: dict(real(m), commit=c) if m.startswith("vbvr_bench") else real(m))

    commit("a" * 40)
    assert _bench(tmp_path, "--limit", "1") == 0
    commit("b" * 40)
    capsys.readouterr()
    assert _bench(tmp_path) == 0  # resumes: the first instance keeps its record, the other two are new
    out = capsys.readouterr().out
    assert "Scores `scorer` come from different scorers" in out and "a" * 40 in out and "b" * 40 in out
    rows, md = _summary(tmp_path)
    assert rows[0]["scored_by"].startswith("MIXED: ") and "come from different scorers" in md
    assert f"commit {'a' * 40} (static: 1 instances)" in md and f"commit {'b' * 40} (static: 2 instances)" in md

    _bench(tmp_path / "same")  # one commit: no warning
    assert "different scorers" not in capsys.readouterr().out


def test_the_judge_prompt_hash_changes_with_what_the_judge_is_asked():
    class Teacher:
        def reward(self, frames, queries):
            raise NotImplementedError

    a = provenance.run_provenance(judge=VLMChecklistJudge(Teacher()), judge_spec="teacher")["judge"]
    b = provenance.run_provenance(judge=VLMChecklistJudge(Teacher(), good=0.8), judge_spec="teacher")["judge"]
    assert a["model"] == "teacher" and len(a["prompt_hash"]) == 12 and a["prompt_hash"] != b["prompt_hash"]
    rec = {"status": "ok", "score_name": "checklist", "method": "m", "config_hash": "h",
           "provenance": {"vlmteach_fast": {"version": "0"}, "scorer": None, "judge": a}}
    assert provenance.scored_by(rec) == a and f"prompt hash {a['prompt_hash']}" in provenance.describe(a)
    assert provenance.describe(provenance.scored_by({"score_name": "rule"})).startswith("provenance not recorded")
    assert json.loads(VLMChecklistJudge(Teacher()).prompt_text)["good"] == pytest.approx(2 / 3)
