"""Stand-in for ``vbvr_bench.evaluators``: the same functions, evaluators that record what they were given.

``evaluate`` reads the mp4 (as the real evaluators do, with OpenCV when present, else imageio) and returns a score
that tells the two entry points apart: the mean brightness of the last frame for ``task_specific_only=True``,
half of it otherwise; a prompt containing "unreadable" makes it fail the way real evaluators do (score 0 + error).
With ``RULE_MIRRORS = True`` (a test sets it) the score of G-3 and O-39 is instead their official rule score as
``rules.py`` mirrors it (still halved for the weighted entry point).
"""

CALLS = []
RULE_MIRRORS = False
TASK_EVALUATOR_MAP = {"G-3_stable_sort_data-generator": None, "O-39_maze_data-generator": None}
_CATEGORY = {"G-3_stable_sort_data-generator": "Perception", "O-39_maze_data-generator": "Spatiality"}


def get_task_category(task_name):
    return _CATEGORY.get(task_name, "Unknown")


def is_out_of_domain(task_name):
    return task_name.startswith("O-39_")


def get_split(task_name):
    return "Out_of_Domain" if is_out_of_domain(task_name) else "In_Domain"


def _read(path):
    import imageio.v2 as imageio

    return imageio.mimread(path)


def _task_score(task_name, path):
    frames = _read(path)
    if RULE_MIRRORS:
        from .rules import RULES

        return float(RULES[task_name]([f[..., :3] for f in frames]))
    return float(frames[-1].mean()) / 255.0


class _Evaluator:
    def __init__(self, device="cuda", task_name=""):
        self.device, self.task_name = device, task_name

    def evaluate(self, eval_info, **kwargs):
        CALLS.append((dict(eval_info), dict(kwargs), self.device, self.task_name))
        if "unreadable" in (eval_info.get("prompt") or ""):
            return {"score": 0.0, "error": "cannot read video", "dimensions": {}}
        s = _task_score(self.task_name, eval_info["video_path"])
        if kwargs.get("task_specific_only"):
            return {"score": s, "dimensions": {"task_specific": s}}
        return {"score": s / 2, "dimensions": {"task_specific": s, "final_frame_accuracy": 0.0}}


def get_evaluator(task_name, device="cuda"):
    return _Evaluator(device=device, task_name=task_name)
