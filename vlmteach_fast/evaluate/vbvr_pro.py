"""VBVR-Pro-Bench's official rule scorers as a bench scorer (``--scorer vbvr-pro``), and its task categories.

VBVR-Pro-Bench (github.com/Video-Reason/VBVR-Pro-Bench) is VBVR-Bench's harder successor from the same group: 100
tasks x 5 samples at 1024 x 1024, scored by rules only (OpenCV, matching, tracking; no model judge). Its ground
truth has VBVR-Bench's layout plus one file per sample, ``metadata.json`` (the task's parameters and symbolic
answer, which its evaluators read): ``{In-Domain_50|Out-of-Domain_50}/{task}/{00000..}/{first_frame.png,
prompt.txt, ground_truth.mp4, final_frame.png, metadata.json}``; ``load_suite`` reads it as a VBVR-style folder and
keeps the metadata path in ``BenchItem.ground_truth["metadata"]``. Its video entry point,
``run_evaluation_video.py``, reads ``{model}/{split}/{task}/{sample}.mp4`` (the tree ``bench-export`` writes for
VBVR), enumerates every sample of the ground truth and scores a sample without a video 0.

The repository is not a pip package: clone it and put the clone on ``PYTHONPATH``, or name it in the environment
variable ``VBVR_PRO_BENCH``. Its evaluators are the module ``vbvr_pro_bench.evaluators`` (the name in the stored
snapshot this was written against; an older layout named it ``vbvr_bench``, which is VBVR-EvalKit's module name
too, and is not looked for).
"""

from __future__ import annotations

import os
import sys

from .vbvr import _existing

__all__ = ["PRO_SCORER", "PRO_INSTALL_HINT", "require_pro_bench", "vbvr_pro_category", "VBVRProScorer"]

PRO_SCORER = "vbvr-pro"
MODE = "vbvr-pro (rule score only, as run_evaluation_video.py; a sample without a video scores 0)"
PRO_INSTALL_HINT = ("VBVR-Pro-Bench is not importable (module `vbvr_pro_bench`); it is not a pip package: "
                    "git clone https://github.com/Video-Reason/VBVR-Pro-Bench, pip install -r "
                    "VBVR-Pro-Bench/requirements.txt, then export VBVR_PRO_BENCH=$PWD/VBVR-Pro-Bench")
ENV = "VBVR_PRO_BENCH"


def _add_clone_to_path() -> None:
    clone = os.environ.get(ENV)
    if clone and os.path.abspath(clone) not in (os.path.abspath(p) for p in sys.path):
        sys.path.insert(0, os.path.abspath(clone))


def require_pro_bench():
    """VBVR-Pro-Bench's ``vbvr_pro_bench.evaluators`` module (from ``$VBVR_PRO_BENCH`` when set); ``RuntimeError``
    saying how to install it otherwise."""
    _add_clone_to_path()
    try:
        from vbvr_pro_bench import evaluators
    except ImportError as err:
        raise RuntimeError(f"{PRO_INSTALL_HINT} ({err})") from err
    return evaluators


def vbvr_pro_category(task: str) -> str | None:
    """The task's cognitive category from VBVR-Pro-Bench's table, or None when it is not installed or does not know
    the task."""
    try:
        evaluators = require_pro_bench()
    except RuntimeError:
        return None
    category = evaluators.get_task_category(task)
    return None if category in (None, "Unknown") else str(category)


class VBVRProScorer:
    """``--scorer vbvr-pro``: runs the task's VBVR-Pro-Bench evaluator on the saved video, as its
    ``run_evaluation_video.py`` does (``evaluate(eval_info, task_specific_only=True)``).

    Called as ``scorer(item, frames, video_path=path)`` by the runner (``frames``, (1, F, 3, H, W) float, is unused:
    the evaluator reads the mp4). Returns {"score": 0..1, "passed": None, "parts": {"dimensions", "error"?,
    "entry_point"}}. A missing video (``video_path`` None or not a file) scores 0 with the error "no prediction", and
    so does an instance whose generation failed (``missing_video_score``, read by the runner): the official script
    counts both as 0 in every mean, so the reports do too. An evaluator that raises scores 0 with its error.
    """

    missing_video_score = 0.0

    def __init__(self, device: str | None = None):
        self.evaluators = require_pro_bench()
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"  # the evaluators use it for OCR only
        self.device = device

    def provenance(self) -> dict:
        """{"name", "mode", "package", "version", "commit"}: which VBVR-Pro-Bench code scored, and how."""
        from .provenance import source_provenance

        return {"name": "VBVR-Pro-Bench", "mode": MODE, **source_provenance(self.evaluators.__name__)}

    def eval_info(self, item, video: str | None) -> dict:
        """The ``eval_info`` ``run_evaluation_video.py`` builds for ``item``'s sample folder and ``video``: the
        ground-truth paths (None where absent), the prompt, the sample folder and the metadata candidates (the
        sample's ``metadata.json`` first, then the older ``./annotations/{task}/{sample}.json``)."""
        sample_dir = os.path.dirname(item.image) if item.image else item.source
        return {"video_path": video, "task_name": item.task, "no_ssim_fallback": True,
                "gt_video_path": _existing(item.ground_truth.get("video")),
                "gt_first_frame": _existing(item.image),
                "gt_final_frame": _existing(item.ground_truth.get("final_frame")),
                "prompt": item.prompt, "gt_path": sample_dir,
                "metafile_path": [os.path.join(sample_dir, "metadata.json"),
                                  os.path.join("./annotations", item.task, f"{item.index}.json")]}

    def __call__(self, item, frames=None, video_path: str | None = None) -> dict:
        if item.task not in self.evaluators.TASK_EVALUATOR_MAP:
            raise ValueError(f"VBVR-Pro-Bench has no evaluator for task {item.task!r} "
                             "(run_evaluation_video.py skips it)")
        if video_path is None or not os.path.isfile(video_path):
            return {"score": self.missing_video_score, "passed": None,
                    "parts": {"entry_point": "run_evaluation_video", "dimensions": {}, "error": "no prediction"}}
        try:
            evaluator = self.evaluators.get_evaluator(item.task, self.device)
            result = evaluator.evaluate(self.eval_info(item, video_path), task_specific_only=True)
        except Exception as err:  # noqa: BLE001 - the script records a raising evaluator as score 0
            result = {"score": 0.0, "error": str(err), "dimensions": {}}
        parts = {"entry_point": "run_evaluation_video",
                 "dimensions": {k: float(v) for k, v in (result.get("dimensions") or {}).items()}}
        if result.get("error"):
            parts["error"] = str(result["error"])
        return {"score": float(result.get("score", 0.0)), "passed": None, "parts": parts}
