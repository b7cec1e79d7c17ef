"""VBVR-Bench's official scorers (VBVR-EvalKit) as a bench scorer, and VBVR's category / domain of a task.

VBVR-EvalKit (github.com/Video-Reason/VBVR-EvalKit, not on the package index: ``git clone`` it and
``pip install -e`` the clone) has one rule-based evaluator per task. An evaluator takes an ``eval_info`` dict (the
mp4 path and the ground-truth paths), reads the video's frames with OpenCV, and returns ``{"score", "dimensions",
...}``, with score 0 and an ``"error"`` key when it fails. Its two entry points score the same videos differently:

- ``run_evaluation.py`` (the README's recommended "Option A", console script ``vbvr-run-evaluation``): the task's
  rule score only (``evaluate(eval_info, task_specific_only=True)``, ``no_ssim_fallback``). ``--scorer vbvr``
  reproduces this one.
- ``evaluate.py`` / ``VBVRBench.evaluate`` (console script ``vbvr-evaluate``): a weighted mix of first-frame
  consistency, final-frame accuracy, temporal smoothness, visual quality and the rule score. ``--scorer
  vbvr:weighted`` reproduces this one.
Both are fed exactly the ``eval_info`` their script builds, from the sample folder of the downloaded ground truth,
and the evaluator reads the instance's saved ``video.mp4``, the same file ``bench-export`` puts in the official tree.

VBVR's headline numbers are per split (In-Domain_50 / Out-of-Domain_50, the ground-truth folder names) and per
cognitive category (Abstraction, Knowledge, Perception, Spatiality, Transformation, from the EvalKit's task table).
"""

from __future__ import annotations

import os

__all__ = ["VBVR_SCORERS", "INSTALL_HINT", "require_evalkit", "vbvr_category", "vbvr_domain", "VBVRScorer"]

VBVR_SCORERS = {"vbvr": "run_evaluation", "vbvr:weighted": "evaluate"}
# what each --scorer reproduces, in the words the reports use (``provenance``)
MODES = {"vbvr": "vbvr (rule score only, as run_evaluation.py)",
         "vbvr:weighted": "vbvr:weighted (weighted with frame similarity, as evaluate.py)"}
INSTALL_HINT = ("VBVR-EvalKit is not importable (module `vbvr_bench`); it is not on the package index: "
                "git clone https://github.com/Video-Reason/VBVR-EvalKit && pip install -e VBVR-EvalKit")
DOMAINS = {"In-Domain_50": "In-Domain", "Out-of-Domain_50": "Out-of-Domain"}


def require_evalkit():
    """The EvalKit's ``vbvr_bench.evaluators`` module; ``RuntimeError`` saying how to install it otherwise."""
    try:
        from vbvr_bench import evaluators
    except ImportError as err:
        raise RuntimeError(f"{INSTALL_HINT} ({err})") from err
    return evaluators


def vbvr_category(task: str) -> str | None:
    """The task's VBVR cognitive category from the EvalKit's table, or None when the EvalKit is not installed or
    does not know the task."""
    try:
        from vbvr_bench.evaluators import get_task_category
    except ImportError:
        return None
    category = get_task_category(task)
    return None if category in (None, "Unknown") else str(category)


def vbvr_domain(split: str) -> str | None:
    """"In-Domain" / "Out-of-Domain" for a VBVR split folder name, None for other names."""
    return DOMAINS.get(split)


def _existing(path):
    return path if path and os.path.isfile(path) else None


class VBVRScorer:
    """``--scorer vbvr`` / ``vbvr:weighted``: a bench scorer that runs the task's EvalKit evaluator on the saved video.

    Called as ``scorer(item, frames, video_path=path)`` by the runner (``frames`` is unused: the evaluator reads the mp4
    as the official scripts do). Returns {"score": 0..1, "passed": None, "parts": {"dimensions", "error"?,
    "entry_point"}}; an evaluator that fails gives score 0 with its error, as in the official scripts.
    """

    def __init__(self, name: str = "vbvr", device: str | None = None):
        if name not in VBVR_SCORERS:
            raise ValueError(f"VBVR scorer must be one of {sorted(VBVR_SCORERS)}, got {name!r}")
        self.name, self.entry_point = name, VBVR_SCORERS[name]
        self.evaluators = require_evalkit()
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device

    def provenance(self) -> dict:
        """{"name", "mode", "package", "version", "commit"}: which EvalKit code scored, and how
        (``provenance.source_provenance`` of the evaluators' module)."""
        from .provenance import source_provenance

        return {"name": "VBVR-EvalKit", "mode": MODES[self.name], **source_provenance(self.evaluators.__name__)}

    def eval_info(self, item, video: str) -> dict:
        """The ``eval_info`` this entry point's script builds for ``item``'s sample folder and ``video``."""
        gt = {"gt_video_path": _existing(item.ground_truth.get("video")),
              "gt_first_frame": _existing(item.image),
              "gt_final_frame": _existing(item.ground_truth.get("final_frame"))}
        if self.entry_point == "run_evaluation":
            info = {"video_path": video, "task_name": item.task, "no_ssim_fallback": True, **gt, "prompt": item.prompt}
        else:
            sample_dir = os.path.dirname(item.image) if item.image else item.source
            info = {"split": self.evaluators.get_split(item.task), "file_split": item.split,
                    "task_name": item.task, "video_idx": item.index, "video_path": video, "gt_path": sample_dir,
                    **gt, "prompt_path": os.path.join(sample_dir, "prompt.txt"), "prompt": item.prompt}
        return info

    def __call__(self, item, frames=None, video_path: str | None = None) -> dict:
        video = video_path
        if video is None or not os.path.isfile(video):
            raise ValueError(f"the VBVR scorer needs the saved video file, got {video!r}")
        if self.entry_point == "run_evaluation" and item.task not in self.evaluators.TASK_EVALUATOR_MAP:
            raise ValueError(f"VBVR-EvalKit has no evaluator for task {item.task!r} (run_evaluation.py skips it)")
        evaluator = self.evaluators.get_evaluator(item.task, self.device)
        info = self.eval_info(item, video)
        try:
            if self.entry_point == "run_evaluation":
                result = evaluator.evaluate(info, task_specific_only=True)
            else:
                result = evaluator.evaluate(info)
        except Exception as err:  # noqa: BLE001 - both scripts record a raising evaluator as score 0
            result = {"score": 0.0, "error": str(err), "dimensions": {}}
        parts = {"entry_point": self.entry_point,
                 "dimensions": {k: float(v) for k, v in (result.get("dimensions") or {}).items()}}
        if result.get("error"):
            parts["error"] = str(result["error"])
        return {"score": float(result.get("score", 0.0)), "passed": None, "parts": parts}
