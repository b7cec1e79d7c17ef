"""Benchmark runner: suites, durable resumable records, accelerate sharding, judge, reports.

Public API:
- suites: ``load_suite(spec)`` -> ``Suite`` (``items``: ``BenchItem``, ``errors``: ``SuiteError`` with file:line),
  ``load_ruler``, ``load_vbvr``, ``load_toy``, ``checklist_queries``, ``RULER_METRICS``;
- running: ``BenchConfig``, ``run_bench(suite, cfg, load_models, info)``, ``run_item``, ``score_item``;
  ``ground_truth_of(item)``: the answer the sanity methods (static, end_state, ground_truth) use;
- records: ``RecordWriter`` (JSONL, flush + fsync), ``read_all_records``, ``merge_records``, ``config_hash``;
- what counts as done: ``fingerprint`` (``item_key``: the item's fields and files; ``models_key``: the models' files);
- processes: ``process_state()``, ``split_pending`` (accelerate's ``split_between_processes``);
- judge: ``checklist_score``, ``VLMChecklistJudge`` (local and unofficial);
- reports: ``summarize``, ``write_reports`` (markdown, CSV, PNG, HTML); ``throughput_markdown`` (pytest-benchmark);
- official layouts: ``export_official`` (RULER ``{task}/{index}.mp4``, VBVR ``{split}/{task}/{sample}.mp4``);
- CLI: ``add_bench_parsers(subparsers)`` adds ``bench``, ``bench-export`` and ``bench-report``.
"""

from .export import export_official, official_relpath
from .judge import LABEL_POINTS, ChecklistJudge, VLMChecklistJudge, checklist_score
from .records import RecordWriter, config_hash, merge_records, read_all_records, read_records, shard_path
from .summary import SummaryRow, latest_configs, summarize, write_reports
from .runner import METHODS, BenchConfig, ground_truth_of, pending_items, run_bench, run_item, score_item
from .shard import ProcessInfo, process_state, split_pending
from .suites import (DEFAULT_QUERY_METRICS, RULER_METRICS, BenchItem, Suite, SuiteError, checklist_queries,
                     item_id_from_dir, load_ruler, load_suite, load_toy, load_vbvr)
from .throughput import throughput_markdown

__all__ = [
    "load_suite", "load_ruler", "load_vbvr", "load_toy", "checklist_queries", "BenchItem", "Suite", "SuiteError",
    "RULER_METRICS", "DEFAULT_QUERY_METRICS", "BenchConfig", "run_bench", "run_item", "score_item", "pending_items",
    "METHODS", "ground_truth_of", "RecordWriter", "read_records", "read_all_records", "merge_records", "config_hash", "shard_path",
    "ProcessInfo", "process_state", "split_pending", "checklist_score", "ChecklistJudge", "VLMChecklistJudge",
    "LABEL_POINTS", "summarize", "latest_configs", "write_reports", "SummaryRow", "throughput_markdown",
    "export_official", "official_relpath", "item_id_from_dir",
]
