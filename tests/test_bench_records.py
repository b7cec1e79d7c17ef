"""Bench records (durable JSONL, torn lines, de-duplication, atomic folders), process splitting, the checklist score,
summaries / reports / HTML on synthetic records, and the pytest-benchmark report. No models: fast."""

import csv
import io
import json
import os

import pytest
import torch

from vlmteach_fast.evaluate.judge import VLMChecklistJudge, checklist_score
from vlmteach_fast.evaluate.records import (RECORD_KEYS, RecordWriter, config_hash, merge_records,
                                         read_all_records, read_records, shard_path)
from vlmteach_fast.evaluate.summary import summarize, to_csv, to_markdown, write_reports
from vlmteach_fast.evaluate.runner import pending_items
from vlmteach_fast.evaluate.shard import ProcessInfo, split_pending
from vlmteach_fast.evaluate.suites import BenchItem


def rec(iid, method="baseline", score=0.5, status="ok", chash="h1", category="c1", task="t1", seconds=1.0,
        passed=None, finished="2026-11-25T00:00:00", **kw):
    r = {k: None for k in RECORD_KEYS}
    r.update(instance_id=iid, method=method, config_hash=chash, status=status, score=score if status == "ok" else None,
             score_name="rule", passed=passed if status == "ok" else None, category=category, task=task, split="",
             seconds=seconds, cost={"denoiser_forward": 4, "denoiser_backward": 2}, scores={},
             video=f"instances/{method}-{chash}/{iid}/video.mp4" if status == "ok" else None,
             error=None if status == "ok" else "ValueError: bad image", rank=0, finished_at=finished)
    r.update(kw)
    return r


# -- records ---------------------------------------------------------------------------------------------------------

def test_writer_appends_whole_lines_and_drops_a_torn_tail(tmp_path):
    path = shard_path(tmp_path, 0)
    with RecordWriter(path) as w:
        w.append(rec("a"))
        w.append(rec("b"))
    with open(path, "ab") as f:  # what a kill -9 in the middle of a write can leave
        f.write(b'{"instance_id": "c", "met')
    with pytest.warns(UserWarning, match=r"records-rank0\.jsonl:3: skipping"):
        assert [r["instance_id"] for r in read_records(path)] == ["a", "b"]
    with pytest.warns(UserWarning, match="dropping a torn last line"):
        w = RecordWriter(path)
    w.append(rec("c"))
    w.close()
    lines = open(path).read().splitlines()
    assert [json.loads(x)["instance_id"] for x in lines] == ["a", "b", "c"]


def test_a_shard_line_without_status_is_skipped_with_a_warning_and_resume_redoes_it(tmp_path):
    path = shard_path(tmp_path, 0)
    with RecordWriter(path) as w:
        w.append(rec("a"))
    partial = rec("b")
    del partial["status"]
    with open(path, "a") as f:  # valid JSON, but not a record a reader can use (hand-edited, another tool)
        f.write(json.dumps(partial) + "\n")
    with pytest.warns(UserWarning, match=r"records-rank0\.jsonl:2: skipping a record without key\(s\) \['status'\]"):
        records = read_all_records(tmp_path)
    assert [r["instance_id"] for r in records] == ["a"]
    items = [BenchItem(id=i, task="t1", category="c1", prompt="p") for i in ("a", "b")]
    assert [it.id for it in pending_items(items, records, "baseline", "h1")] == ["b"]
    with pytest.warns(UserWarning):
        merge_records(tmp_path, ["a", "b"])  # the reports' input
    assert [json.loads(x)["instance_id"] for x in (tmp_path / "records.jsonl").read_text().splitlines()] == ["a"]


def test_writer_rejects_incomplete_records(tmp_path):
    r = rec("a")
    del r["cost"]
    with RecordWriter(tmp_path / "x.jsonl") as w, pytest.raises(ValueError, match=r"missing key\(s\) \['cost'\]"):
        w.append(r)


def test_read_all_records_merges_shards_and_keeps_the_last_duplicate(tmp_path):
    with RecordWriter(shard_path(tmp_path, 0)) as w:
        w.append(rec("a", status="error", finished="2026-11-25T01:00:00"))
        w.append(rec("b"))
    with RecordWriter(shard_path(tmp_path, 1)) as w:
        w.append(rec("a", score=0.9, finished="2026-11-25T02:00:00"))  # a retry on another process
        w.append(rec("a", method="optimize"))
    recs = {(r["instance_id"], r["method"]): r for r in read_all_records(tmp_path)}
    assert len(recs) == 3 and recs[("a", "baseline")]["score"] == 0.9
    merge_records(tmp_path, order=["b", "a"])
    merged = [json.loads(x) for x in open(tmp_path / "records.jsonl")]
    assert [(r["instance_id"], r["method"]) for r in merged] == [("b", "baseline"), ("a", "baseline"),
                                                                 ("a", "optimize")]


def test_pending_skips_finished_and_optionally_failed(tmp_path):
    items = [BenchItem(id=i, task="t", category="c", prompt="p") for i in "abcd"]
    recs = [rec("a"), rec("b", status="error"), rec("c", chash="other"), rec("d", method="optimize")]
    assert [it.id for it in pending_items(items, recs, "baseline", "h1")] == ["c", "d"]
    assert [it.id for it in pending_items(items, recs, "baseline", "h1", retry_failed=True)] == ["b", "c", "d"]


def test_config_hash_is_canonical():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2}) and len(config_hash({})) == 12


# -- process splitting -----------------------------------------------------------------------------------------------

class SimulatedState:
    """Stand-in for accelerate's PartialState at a given rank: accelerate's own split code, no process group."""

    def __init__(self, rank, world):
        self.process_index, self.num_processes, self.is_main_process = rank, world, rank == 0

    def split_between_processes(self, items):
        from accelerate import PartialState

        return PartialState.split_between_processes(self, items)

    def wait_for_everyone(self):
        pass


@pytest.mark.parametrize("n,world", [(7, 2), (5, 3), (2, 4), (0, 2)])
def test_split_pending_partitions_in_order(n, world):
    items = list(range(n))
    parts = [split_pending(items, ProcessInfo(r, world, SimulatedState(r, world))) for r in range(world)]
    assert sum(parts, []) == items  # every item once, contiguous, in order
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_each_launched_process_uses_its_own_gpu():
    state = SimulatedState(1, 2)
    state.device = "cuda:1"  # what accelerate gives local rank 1
    info = ProcessInfo(1, 2, state)
    assert info.device(None) == torch.device("cuda:1") and info.device("cuda") == torch.device("cuda:1")
    assert info.device("cuda:0") == torch.device("cuda:0") and info.device("cpu") == torch.device("cpu")


def test_process_info_validates():
    with pytest.raises(ValueError, match="0 <= rank < world"):
        ProcessInfo(2, 2)


# -- checklist judge -------------------------------------------------------------------------------------------------

def test_checklist_score_averages_within_then_across_metrics():
    # per metric: IF (2 + 0) / 2 = 1, RC 2 -> (1 + 2) / 2 * 50 = 75; a plain mean over questions would give 66.7
    score, per = checklist_score([("Instruction Following", "Good"), ("Instruction Following", "Poor"),
                                  ("Rule Coherence", "Good")])
    assert score == pytest.approx(75.0) and per == {"Instruction Following": 1.0, "Rule Coherence": 2.0}
    assert checklist_score([("Visual Fidelity", "Medium")])[0] == 50.0
    with pytest.raises(ValueError, match="label must be one of"):
        checklist_score([("Visual Fidelity", "Excellent")])


def test_vlm_judge_maps_p_yes_to_labels():
    from vlmteach_fast.teacher import RewardOutput, as_queries

    class Fixed:
        def reward(self, frames, queries):
            q = as_queries(queries)
            lp = torch.tensor([[0.9, 0.5, 0.1]]).log()[:, : len(q)]
            return RewardOutput(reward=lp.mean(-1), log_probs=lp, weights=torch.ones(len(q)), questions=q.questions,
                                kinds=q.kinds)

    judge = VLMChecklistJudge(Fixed())
    assert judge.label(torch.zeros(1, 2, 3, 4, 4), "p", ["a", "b", "c"]) == ["Good", "Medium", "Poor"]
    with pytest.raises(ValueError, match="medium <= good"):
        VLMChecklistJudge(Fixed(), good=0.2, medium=0.5)


# -- summaries and reports -------------------------------------------------------------------------------------------

def _records():
    return [
        rec("i1", "baseline", 0.2, category="A", task="t1", seconds=1.0, passed=False),
        rec("i2", "baseline", 0.4, category="A", task="t2", seconds=3.0, passed=True),
        rec("i3", "baseline", status="error", category="B", task="t3"),
        rec("i1", "optimize", 0.8, category="A", task="t1", seconds=10.0, passed=True),
        rec("i2", "optimize", 0.6, category="A", task="t2", seconds=20.0, passed=True),
        rec("i3", "optimize", 0.5, category="B", task="t3", seconds=30.0, passed=False),
    ]


def test_summarize_means_pass_rates_and_paired_gains():
    rows = {(r.method, r.level, r.group): r for r in summarize(_records())}
    b, o = rows[("baseline", "all", "all")], rows[("optimize", "all", "all")]
    assert (b.instances, b.failed, b.mean_score, b.pass_rate, b.mean_seconds) == (3, 1, pytest.approx(0.3), 0.5, 2.0)
    assert b.gain_over_baseline is None and b.mean_denoiser_evals == 6 and b.mean_peak_mib is None
    assert o.mean_score == pytest.approx(1.9 / 3) and o.pass_rate == pytest.approx(2 / 3)
    # gain over the instances both finished (i1, i2): ((0.8 - 0.2) + (0.6 - 0.4)) / 2; i3 has no baseline score
    assert o.gain_over_baseline == pytest.approx(0.4)
    assert rows[("optimize", "category", "A")].gain_over_baseline == pytest.approx(0.4)
    assert rows[("optimize", "category", "B")].gain_over_baseline is None
    assert rows[("optimize", "task", "t3")].mean_score == 0.5


def test_a_method_with_two_configs_gets_two_labels_and_the_latest_config_supersedes():
    from vlmteach_fast.evaluate.summary import latest_configs

    recs = [rec("i1", "optimize", 0.1, chash="aaa", finished="2026-11-25T03:00:00"),
            rec("i2", "optimize", 0.1, chash="aaa", finished="2026-11-25T01:00:00"),
            rec("i1", "optimize", 0.9, chash="bbb", finished="2026-11-25T02:00:00"),
            rec("i1", "baseline", 0.5, chash="ccc")]
    assert {r.method for r in summarize(recs)} == {"optimize@aaa", "optimize@bbb", "baseline"}
    current = latest_configs(recs)
    assert [(r["instance_id"], r["config_hash"]) for r in current] == [("i1", "aaa"), ("i2", "aaa"), ("i1", "ccc")]


def test_markdown_and_csv_hold_every_row():
    rows = summarize(_records())
    md = to_markdown(rows)
    assert "| optimize | all | 3 | 0 | rule | 0.633 | 66.7% | 20.0 | 6.000 | - | 0.400 |" in md
    assert "## Per category" in md and "## Per task" in md
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(parsed) == len(rows) and parsed[0]["method"] == "baseline"


def test_write_reports_writes_every_file_and_the_html_lists_every_instance(tmp_path):
    items = [BenchItem(id=f"i{k}", task="t", category="A", prompt=f"prompt <{k}>") for k in (1, 2, 3, 4)]
    paths = write_reports(tmp_path, _records(), items, suite_errors=["s.jsonl:3: not valid JSON"])
    assert sorted(os.listdir(tmp_path)) == ["categories.png", "index.html", "score_vs_seconds.png", "summary.csv",
                                            "summary.md"]
    for name in ("categories.png", "score_vs_seconds.png"):
        assert open(paths[name], "rb").read(4) == b"\x89PNG"
    md = open(paths["summary.md"]).read()
    assert "baseline i3: ValueError: bad image" in md and "s.jsonl:3: not valid JSON" in md
    page = open(paths["index.html"]).read()
    for k in (1, 2, 3, 4):
        assert f'<tr id="i{k}">' in page
    assert page.count("<video") == 5  # 6 records, one failed
    assert "instances/optimize-h1/i3/video.mp4" in page and "failed: ValueError: bad image" in page
    assert "not run" in page and "prompt &lt;4&gt;" in page  # i4 never ran; text is escaped


# -- pytest-benchmark report -----------------------------------------------------------------------------------------

def _bench(name, group, median, **info):
    return {"name": name, "group": group, "extra_info": info,
            "stats": {"median": median, "mean": median, "stddev": 0.0, "rounds": 3}}


def test_throughput_markdown_groups_and_ratios(tmp_path):
    from vlmteach_fast.evaluate.throughput import throughput_markdown

    data = {"machine_info": {"node": "box", "machine": "x86_64", "cpu": {"brand_raw": "CPUX", "count": 2},
                             "python_version": "3.11", "vlmteach_fast": {"torch": "9.9", "cuda": "none",
                                                                         "triton": "3.7.1"}},
            "benchmarks": [_bench("test_l[peft]", "lora 64", 0.004, provider="peft"),
                           _bench("test_l[fused]", "lora 64", 0.001, provider="fused", peak_mem_bytes=2**21),
                           _bench("test_o[optimize16]", "opt", 0.6, provider="optimize16", reference="best_of_5"),
                           _bench("test_o[best_of_5]", "opt", 0.3, provider="best_of_5", reference="best_of_5")]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    md = throughput_markdown([str(path)], reference="peft")
    assert "CPU CPUX (2 threads)" in md and "torch 9.9, CUDA none, Triton 3.7.1" in md
    assert "## lora 64" in md and "## opt" in md
    assert "| test_l[fused] | fused | 1.000 |" in md and "4.00x vs peft" in md and "peak_mem_bytes=2.0 MiB" in md
    assert "0.50x vs best_of_5" in md  # extra_info's reference wins over --reference
    bad = tmp_path / "nope.json"
    bad.write_text('{"x": 1}')
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON"):
        throughput_markdown([str(bad)])
