"""Running one method over a suite: resumable, one record per finished instance, sharded across processes.

Recipe of ``run_bench``:
1. read every shard's records; pending = suite items without a current record for (id, method, config hash):
   one whose item content or models' files changed since (``fingerprint.py``) is stale and runs again;
2. barrier (every process has read before any writes), take this process's slice (accelerate);
3. load the models (only if this process has work), run each instance under its lock (``locks.py``: another run
   into the same ``--out`` holding it, or having recorded it meanwhile, means skip it): method -> scores -> outputs
   written as one set -> record appended (flush + fsync); an instance that raises is recorded with its error, the
   run goes on;
4. barrier; the main process merges the shards into ``records.jsonl`` and writes the reports.
A full, read-only or over-quota file system stops the run the same way, recording nothing for the instance it hit.
Ctrl-C stops the run: the instance it cut is not recorded, the records of finished ones are merged (the ``bench``
command then writes their reports and exits 130); re-running the same command resumes.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field

import torch

from ..checks import check_int
from ..io_atomic import atomic_write_json, storage_error
from ..methods import METHODS
from .locks import InstanceLock, lock_path
from .provenance import run_provenance
from .fingerprint import item_keys, models_key, stale_reason
from .records import RecordWriter, config_hash, merge_records, read_all_records, shard_path
from .shard import ProcessInfo, split_pending
from .suites import DEFAULT_QUERY_METRICS, RULER_METRICS, BenchItem, Suite, checklist_queries

__all__ = ["METHODS", "BenchConfig", "run_item", "run_bench", "pending_items", "ground_truth_of"]

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    """What one ``bench`` run does (the models are passed separately, as objects or a loader).

    Attributes:
        method: one of ``METHODS``.
        out: output folder (records, instance outputs, reports).
        optimize: ``OptimizeConfig`` (its ``sampling`` and ``lora`` are used by every method).
        options: {"n": Best-of-N candidates (also ``best_of_n_oracle``'s), "rounds": VLM-as-solver critique rounds,
            "reward": the teacher's ``RewardConfig`` fields set from a config file, or None}.
        limit: run only the first ``limit`` suite items (None: all).
        query_metrics: checklist metrics whose questions become the teacher's queries.
        retry_failed: re-run instances whose record says "error" (otherwise they count as done).
        fps: of the written videos.
        identity: extra settings that define "the same run" (model specs; ``select_judge``: Best-of-N's picker
            when it is not the teacher): part of the config hash.
        models_key: stands for the models' files (``fingerprint.models_key``; any JSON value); records made with
            another are stale.
            Default: computed from ``identity``'s pipeline / teacher / judge specs (None when it names none: models
            passed as objects are not checked).
        scorer: optional ``scorer(item, frames (1, F, 3, H, W) float in [0, 1]) -> float | {"score", "passed",
            "parts"}``: the suite's own scorer (e.g. VBVR-Bench's rule scorers); it becomes the primary score. Put
            its name in ``identity`` so that changing it changes the hash. Its version and commit (a ``provenance()``
            method, else its module's package) are stored in every record (``provenance.run_provenance``).
    """

    method: str = "optimize"
    out: str = "bench_out"
    optimize: object = None
    options: dict = field(default_factory=lambda: {"n": 5, "rounds": 0})
    limit: int | None = None
    query_metrics: tuple = DEFAULT_QUERY_METRICS
    retry_failed: bool = False
    fps: int = 8
    identity: dict = field(default_factory=dict)
    scorer: object = None
    models_key: object = None

    def __post_init__(self):
        from ..optimization import OptimizeConfig

        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {self.method!r}")
        if self.optimize is None:
            self.optimize = OptimizeConfig(progress=False)
        if not isinstance(self.optimize, OptimizeConfig):
            raise TypeError(f"`optimize` must be an OptimizeConfig, got {type(self.optimize).__name__}")
        check_int("limit", self.limit, optional=True)
        if self.scorer is not None and not callable(self.scorer):
            raise TypeError(f"`scorer` must be callable(item, frames), got {type(self.scorer).__name__}")
        unknown = [m for m in self.query_metrics if m not in RULER_METRICS]
        if unknown:
            raise ValueError(f"`query_metrics`: unknown metric(s) {unknown}; allowed: {list(RULER_METRICS)}")
        self.query_metrics = tuple(self.query_metrics)

    def settings(self) -> dict:
        """The settings that change results (not ``out``, ``limit``, ``retry_failed``), JSON-ready."""
        settings = {"method": self.method, "optimize": dataclasses.asdict(self.optimize),
                    "query_metrics": list(self.query_metrics), "identity": self.identity}
        if self.method in ("best_of_n", "best_of_n_oracle"):
            settings["n"] = self.options.get("n")
        if self.method == "vlm_as_solver":
            settings["rounds"] = self.options.get("rounds")
        if self.options.get("reward"):
            settings["reward"] = self.options["reward"]  # the teacher's RewardConfig fields the config file sets
        for name in ("progress", "memory_limit", "memory_headroom"):  # a progress bar, the memory check: no result
            settings["optimize"].pop(name, None)
        return json.loads(json.dumps(settings, default=str))

    def hash(self) -> str:
        """``config_hash`` of ``settings()``: records of the same hash are results of the same settings."""
        return config_hash(self.settings())


def _first_frame(item: BenchItem):
    if item.toy is not None:
        return item.toy.first_frame
    if item.image is None:
        return None
    from ..instance import load_image

    return load_image(item.image)


def ground_truth_of(item: BenchItem) -> dict:
    """The item's answer as the sanity methods use it: {"final_frame", "video"} where the suite has them. VBVR: the
    sample's final_frame.png and ground_truth.mp4; RULER: ``gt_image_path`` (the reference image of the solved state
    its judge is shown) as the final frame; the toy world: its solution video (9 frames) and that video's last
    frame."""
    gt = dict(item.ground_truth)
    if item.extra.get("gt_image_path"):
        gt.setdefault("final_frame", item.extra["gt_image_path"])
    if item.toy is not None:
        gt.update(video=item.toy.solution, final_frame=item.toy.solution[-1])
    return gt


def _solve(item: BenchItem, cfg: BenchConfig, pipe, teacher, judge=None, select_judge=None):
    """Run the method on one item; returns its ``MethodOutput`` (whose ``geometry`` says how the first frame was
    brought to the model's size). ``select_judge``: Best-of-N's picker when not the teacher; ``judge``: the
    checklist judge, part of the score ``best_of_n_oracle`` picks by."""
    from ..methods import run_method

    oracle = _oracle_score(item, cfg, judge) if cfg.method == "best_of_n_oracle" else None
    return run_method(cfg.method, pipe, teacher, item.prompt, image=_first_frame(item),
                      queries=checklist_queries(item, cfg.query_metrics), config=cfg.optimize,
                      n=cfg.options.get("n", 5), rounds=cfg.options.get("rounds", 0), reward=cfg.options.get("reward"),
                      ground_truth=ground_truth_of(item),
                      select_judge=select_judge if cfg.method == "best_of_n" else None, oracle_score=oracle)


def _oracle_score(item: BenchItem, cfg: BenchConfig, judge):
    """The score ``run_item`` records for a video (``score_item``'s primary score), as ``best_of_n_oracle``'s picker:
    ``score(frames, p_yes) -> float``. A scorer that reads the saved file gets each candidate written to a
    temporary folder first (as the runner saves a result)."""
    import tempfile

    from ..outputs import save_frames_result

    def score(frames, p_yes):
        if cfg.scorer is None or not _takes_video_path(cfg.scorer):
            return score_item(item, frames, p_yes, judge, cfg.scorer)["score"]
        with tempfile.TemporaryDirectory(prefix="vlmteach-oracle-") as tmp:
            save_frames_result(frames, {}, tmp, fps=cfg.fps)
            return score_item(item, frames, p_yes, judge, cfg.scorer, video=os.path.join(tmp, "video.mp4"))["score"]

    return score


def _final_frame_match(frames: torch.Tensor, path: str) -> float:
    """1 - mean |last frame - ground-truth final frame| (resized to the video's size): a crude proxy, not a VBVR rule
    scorer (those are task-specific colour-mask checks)."""
    from PIL import Image
    import numpy as np

    from ..first_frame import image_to_rgb

    last = frames[0, -1].detach().float().cpu()  # (3, H, W)
    with Image.open(path) as im:
        gt = image_to_rgb(im, f"ground-truth final frame {path!r}").resize((last.shape[2], last.shape[1]),
                                                                            Image.BILINEAR)
    gt = torch.from_numpy(np.asarray(gt, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return float(1.0 - (last - gt).abs().mean())


def _takes_video_path(scorer) -> bool:
    """Whether ``scorer`` takes a ``video_path`` argument (official scorers read the saved file)."""
    try:
        params = inspect.signature(scorer).parameters.values()
    except (TypeError, ValueError):
        params = ()
    return any(p.name == "video_path" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _call_scorer(scorer, item, frames, video):
    """``scorer(item, frames, video_path=path)`` when it takes ``video_path``, else ``scorer(item, frames)``."""
    if _takes_video_path(scorer):
        return scorer(item, frames, video_path=video)
    return scorer(item, frames)


def score_item(item: BenchItem, frames: torch.Tensor, p_yes: list[float], judge=None, scorer=None,
               video: str | None = None) -> dict:
    """All scores of one video. Returns {"score", "score_name", "passed", "scores"}: the primary score is the given
    ``scorer``'s (see ``BenchConfig.scorer``), else the suite's rule scorer (toy: 0..1), else the checklist judge
    (0..100), else the ground-truth final-frame match (0..1), else the teacher's mean P(Yes) (0..1). ``passed``: the
    scorer's / rule passed / every checklist label Good / None (proxy) / every P(Yes) >= 0.5. ``video``: the saved
    video file, passed to a scorer that takes a ``video_path`` argument. ``p_yes`` empty (a sanity method run
    without a teacher) and none of the others: ``ValueError``."""
    scores, primary = {}, (None, None, None)
    if p_yes:
        scores["teacher"] = sum(p_yes) / len(p_yes)
        primary = ("teacher", scores["teacher"], all(p >= 0.5 for p in p_yes))
    if "final_frame" in item.ground_truth:
        scores["final_frame_match"] = _final_frame_match(frames, item.ground_truth["final_frame"])
        primary = ("final_frame_match", scores["final_frame_match"], None)
    if judge is not None and item.checklist:
        from .judge import checklist_score

        labels = judge.label(frames, item.prompt, [q for _, q in item.checklist])
        score, per_metric = checklist_score([(m, lab) for (m, _), lab in zip(item.checklist, labels)])
        scores.update(checklist=score, checklist_metrics=per_metric, checklist_labels=labels)
        primary = ("checklist", score, all(lab == "Good" for lab in labels))
    if item.toy is not None:
        from ..toy import score_video

        rule = score_video(item.toy, frames[0].detach().float().cpu())
        scores.update(rule=rule.score, rule_parts=rule.parts)
        primary = ("rule", rule.score, bool(rule.passed))
    if scorer is not None:
        out = _call_scorer(scorer, item, frames, video)
        out = out if isinstance(out, dict) else {"score": out}
        if "score" not in out:
            raise ValueError(f"the scorer must return a number or a dict with 'score', got keys {sorted(out)}")
        scores.update(scorer=float(out["score"]), scorer_parts=out.get("parts", {}))
        primary = ("scorer", float(out["score"]), None if out.get("passed") is None else bool(out["passed"]))
    if primary[0] is None:
        raise ValueError("nothing scores this video: no teacher, judge, scorer or ground-truth final frame "
                         "(give --teacher, --judge or --scorer)")
    return {"score_name": primary[0], "score": primary[1], "passed": primary[2], "scores": scores}


def run_item(item: BenchItem, cfg: BenchConfig, pipe, teacher, judge=None, rank: int = 0,
             chash: str | None = None, select_judge=None) -> dict:
    """Run, score and save one instance; never raises for a failing instance (the record says "error"), but does for
    a full, read-only or over-quota file system (``io_atomic.storage_error``), and Ctrl-C (``KeyboardInterrupt``,
    also when ``optimize`` stopped early on it) propagates: then no record is made, so the same command redoes the
    instance once resumed (after space is freed). ``select_judge``: Best-of-N's picker when not the teacher
    (``best_of_n``'s ``judge``); the record's ``selected_by`` says who picked ("teacher", "judge", "oracle")."""
    chash = chash or cfg.hash()
    rec = {"instance_id": item.id, "task": item.task, "index": item.index, "category": item.category,
           "split": item.split,
           "method": cfg.method, "config_hash": chash, "status": "ok", "error": None, "score": None,
           "score_name": None, "passed": None, "scores": {}, "teacher_p_yes": None, "stop_reason": None,
           "seconds": None, "cost": None, "video": None, "adapter": None, "geometry": None, "rank": rank,
           "item_key": None, "models_key": None, "provenance": None, "selected_by": None}
    t0 = time.perf_counter()
    stage = "run"
    try:
        result = _solve(item, cfg, pipe, teacher, judge, select_judge)
        if result.stop_reason == "interrupted":  # optimize turned Ctrl-C into an early stop: the run stops here
            raise KeyboardInterrupt
        rec.update(geometry=getattr(result, "geometry", None), teacher_p_yes=list(result.p_yes),
                   stop_reason=result.stop_reason, cost=result.cost.to_dict(),
                   selected_by=getattr(result, "selected_by", None))
        # outputs first: a scorer that fails must not cost the generated video
        rel = os.path.join("instances", f"{cfg.method}-{chash}", item.dir_name)
        result.save(os.path.join(cfg.out, rel), fps=cfg.fps)  # one set, moved into place whole
        rec["video"] = os.path.join(rel, "video.mp4")
        if os.path.isdir(os.path.join(cfg.out, rel, "adapter")):
            rec["adapter"] = os.path.join(rel, "adapter")
        stage = "scoring"
        rec.update(score_item(item, result.frames, result.p_yes, judge, cfg.scorer,
                              video=os.path.join(cfg.out, rec["video"])))
    except Exception as err:  # noqa: BLE001 - one bad instance (bad image, OOM, NaN) must not stop the benchmark
        if storage_error(err):  # a full or read-only disk fails every instance alike: stop, record nothing
            raise
        from ..sanity import SanityRefusal

        if not isinstance(err, SanityRefusal):  # a refusal is its one-line reason, not a bug to trace
            log.warning("instance %s failed: %s", item.id, traceback.format_exc(limit=3))
        where = "" if stage == "run" else f"{stage} failed (the video is kept at {rec['video']}): "
        rec.update(status="error", error=f"{where}{type(err).__name__}: {err}", score=None, passed=None)
        missing = getattr(cfg.scorer, "missing_video_score", None)
        if stage == "run" and missing is not None:
            # a benchmark whose official script scores a sample without a video (VBVR-Pro-Bench: 0) counts the
            # failure in its means; the record stays failed, so --retry-failed still redoes it
            rec.update(score=float(missing), score_name="scorer",
                       scores={"scorer": float(missing), "scorer_parts": {"error": "no prediction"}})
        if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()
    rec["seconds"] = time.perf_counter() - t0
    rec["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return rec


def pending_items(items: list[BenchItem], records: list[dict], method: str, chash: str,
                  retry_failed: bool = False, keys: dict | None = None, models=None,
                  stale: list | None = None) -> list[BenchItem]:
    """Items without a record for (id, method, config hash); with ``retry_failed`` also those whose record failed.
    With ``keys`` ({id: ``fingerprint.item_key``}) and ``models`` (``models_key``), a record whose item or models
    changed since does not count, and (id, reason) is appended to ``stale``."""
    done = {}
    for r in records:
        if r["method"] == method and r["config_hash"] == chash and (r["status"] == "ok" or not retry_failed):
            done[r["instance_id"]] = r
    pending = []
    for it in items:
        reason = None if keys is None or it.id not in done else stale_reason(done[it.id], keys[it.id], models)
        if reason is not None and stale is not None:
            stale.append((it.id, reason))
        if it.id not in done or reason is not None:
            pending.append(it)
    return pending


def _print_stale(stale: list, shown: int = 10) -> None:
    for iid, reason in stale[:shown]:
        print(f"bench: instance {iid}: {reason} since it was recorded: running it again", flush=True)
    if len(stale) > shown:
        print(f"bench: ... and {len(stale) - shown} more instance(s) whose records are stale", flush=True)


def run_bench(suite: Suite, cfg: BenchConfig, load_models, info: ProcessInfo | None = None, progress: bool = True):
    """Run ``cfg.method`` over ``suite`` into ``cfg.out``; resumes from the records already there.

    Args:
        suite: from ``load_suite``.
        cfg: the run's settings.
        load_models: zero-argument callable -> (pipe, teacher, judge or None) or (pipe, teacher, judge, select
            judge or None: Best-of-N's picker when not the teacher); called only if this process has instances to
            run.
        info: this process's place (``shard.process_state()``); default: a single process.
    Returns:
        (records of this run's method and config hash, merged over all processes; only on the main process, else
        None).
    """
    info = info or ProcessInfo()
    chash = cfg.hash()
    items = suite.items[: cfg.limit] if cfg.limit else list(suite.items)
    keys, models = item_keys(items), cfg.models_key or models_key(cfg.identity)
    stale = []
    pending = pending_items(items, read_all_records(cfg.out), cfg.method, chash, cfg.retry_failed, keys, models, stale)
    if info.is_main:
        # what a hash stands for, beside the records that carry it
        atomic_write_json(os.path.join(cfg.out, "configs", f"{chash}.json"), cfg.settings())
    info.wait()  # 2. nobody writes before everybody has read: all processes split the same pending list
    mine = split_pending(pending, info)
    if info.is_main:
        print(f"bench: {len(items)} instances, {len(items) - len(pending)} already done, {len(pending)} to run "
              f"on {info.world} process(es); method {cfg.method}, config {chash}", flush=True)
        _print_stale(stale)
    try:
        if mine:
            pipe, teacher, judge, select_judge = (*load_models(), None)[:4]
            # who scores (scorer version and commit, judge prompt) and who picks: stored in each record, compared by
            # the reports
            prov = run_provenance(cfg.scorer, cfg.identity.get("scorer"), judge, cfg.identity.get("judge"),
                                  selector=_selector(cfg, select_judge))
            bar = _progress(mine, info, progress)
            with RecordWriter(shard_path(cfg.out, info.rank)) as writer:
                for item in bar:
                    with InstanceLock(lock_path(cfg.out, cfg.method, chash, item.dir_name), info.rank) as lock:
                        if not lock.acquired:
                            print(f"bench: [rank {info.rank}] {item.id} is being run by {lock.holder}: skipped",
                                  flush=True)
                            continue
                        if not pending_items([item], read_all_records(cfg.out), cfg.method, chash, cfg.retry_failed,
                                             keys, models):
                            continue  # another run into the same --out finished it after we listed it
                        rec = run_item(item, cfg, pipe, teacher, judge, info.rank, chash, select_judge)
                        rec.update(item_key=keys[item.id], models_key=models, provenance=prov)
                        writer.append(rec)  # before the lock is released: the next holder sees the record
                    if rec["status"] != "ok":
                        print(f"bench: [rank {info.rank}] {item.id} failed: {rec['error']}", flush=True)
    except KeyboardInterrupt:
        # Ctrl-C: the cut instance has no record (a resume redoes it); what finished is merged for the reports.
        # No barrier: the other ranks got the same signal and are stopping too.
        if info.is_main:
            merge_records(cfg.out, [it.id for it in items])
        raise
    info.wait()
    if not info.is_main:
        return None
    merge_records(cfg.out, [it.id for it in items])
    return [r for r in read_all_records(cfg.out) if r["method"] == cfg.method and r["config_hash"] == chash
            and r["instance_id"] in keys and stale_reason(r, keys[r["instance_id"]], models) is None]


def _selector(cfg: BenchConfig, select_judge) -> dict | None:
    """Who picks among Best-of-N's candidates, for the records' provenance: {"name", "model"}; None for methods that
    pick nothing."""
    if cfg.method == "best_of_n_oracle":
        return {"name": "oracle", "model": f"the benchmark's score ({cfg.identity.get('scorer') or 'primary score'})"}
    if cfg.method != "best_of_n":
        return None
    if select_judge is None:
        return {"name": "teacher", "model": cfg.identity.get("teacher")}
    return {"name": "judge", "model": cfg.identity.get("select_judge") or type(select_judge).__name__}


def _progress(items, info: ProcessInfo, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=f"bench rank {info.rank}", position=info.rank, leave=False)
