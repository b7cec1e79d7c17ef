"""Stand-in for ``vbvr_pro_bench.evaluators``: the functions ``run_evaluation_video.py`` imports, and evaluators
that record what they were given.

``evaluate`` needs the sample's ``metadata.json`` (the first ``metafile_path`` entry), as the real ones do, and
returns the mean brightness of the video's last frame; without the metadata it fails the way real evaluators do
(score 0 + error).
"""

import os

CALLS = []
TASK_EVALUATOR_MAP = {"G-3_stable_sort_data-generator": None, "O-39_maze_data-generator": None}
_CATEGORY = {"G-3_stable_sort_data-generator": "Perception", "O-39_maze_data-generator": "Spatiality"}


def get_task_category(task_name):
    return _CATEGORY.get(task_name, "Unknown")


def is_out_of_domain(task_name):
    return task_name.startswith("O-39_")


def get_split(task_name):
    return "Out_of_Domain" if is_out_of_domain(task_name) else "In_Domain"


class _Evaluator:
    def __init__(self, device="cuda", task_name=""):
        self.device, self.task_name = device, task_name

    def evaluate(self, eval_info, **kwargs):
        import imageio.v2 as imageio

        CALLS.append((dict(eval_info), dict(kwargs), self.device, self.task_name))
        if not os.path.isfile(eval_info["metafile_path"][0]):
            return {"score": 0.0, "error": "metadata.json not found", "dimensions": {}}
        s = float(imageio.mimread(eval_info["video_path"])[-1].mean()) / 255.0
        return {"score": s, "dimensions": {"task_specific": s}}


def get_evaluator(task_name, device="cuda"):
    return _Evaluator(device=device, task_name=task_name)
