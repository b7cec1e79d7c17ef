"""`VLMTeacher`: a frozen transformers VLM as query writer and differentiable VQA scorer.

reward(frames, queries) in five steps:
1. check inputs; pick each question kind's frames (goal: last frame(s); process: frames spread over the video);
2. preprocess the picked frames in torch (differentiable): the union of them as images, or one clip per frame view
   (`frames_as="video"`), and run the vision tower once for all of them;
3. per frame view, score its questions in a batched LM pass that reuses the view's visual prefix;
4. form logits at the answer position only (lm_head on one hidden state per question, not on the sequence);
5. log P("Yes") over the full vocabulary (or yes-vs-no normalized), weighted mean over questions.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

from dataclasses import dataclass, field

import torch

from ..checks import check_int
from .augment import random_views
from .base import GOAL, PROCESS, Queries, RewardOutput, as_queries, check_frames
from .idefics3 import Idefics3Family
from .llava import LlavaFamily
from .preprocess import select_frames
from .queries import QueryCache, build_instruction, parse_queries
from .qwen_vl import QwenVLFamily

# One wrapper per model family, keyed by transformers' `config.model_type`.
FAMILIES = {t: cls for cls in (QwenVLFamily, Idefics3Family, LlavaFamily) for t in cls.model_types}
YES_CANDIDATES = ("Yes", " Yes", "yes", " yes", "YES")
NO_CANDIDATES = ("No", " No", "no", " no", "NO")


# What each family's teacher shows the model, where that differs from the model's usual input (printed by
# `vlmteach-fast doctor`; measurements in docs/teachers.md).
_GLOBAL_ONLY = ("frames are scored on the global image only: the released Idefics3/SmolVLM processors split each "
                "frame into tiles plus a global image (13-17 images per frame), the teacher feeds the global image "
                "alone, so its scores differ from the model's usual input (measured on a tiny model: docs/teachers.md)")
FAMILY_NOTES = {
    "qwen2_vl": "as its processors: image bounds for frames_as='images', the video processor's for 'video'",
    "qwen2_5_vl": "as its processors: image bounds for frames_as='images', the video processor's for 'video'",
    "qwen3_vl": "as its processors: image bounds for frames_as='images', the video processor's for 'video'",
    "idefics3": _GLOBAL_ONLY,
    "smolvlm": _GLOBAL_ONLY,
    "llava": "as its processor: one image per frame at the vision tower's size",
}


def supported_model_types() -> list[str]:
    """transformers `model_type`s with a teacher family wrapper."""
    return sorted(FAMILIES)


@dataclass
class RewardConfig:
    """How `VLMTeacher.reward` looks at the video and turns answers into a score."""

    goal_frames: int = field(default=1, metadata={"help": "final frames shown with the goal question"})
    process_frames: int = field(default=4, metadata={"help": "frames spread over the video for process questions"})
    # frames_as="video" (Qwen-VL): None takes the video processor's bounds, which are not the image processor's
    # (and hold per clip for Qwen3-VL, as its video processor counts them)
    min_pixels: int | None = field(default=None, metadata={"help": "per-frame pixel floor; None: processor's"})
    max_pixels: int | None = field(default=None, metadata={"help": "per-frame pixel cap; None: processor's"})
    answer_form: str = field(
        default="log_p_yes",
        metadata={"help": "'log_p_yes': full-vocabulary log P(Yes); 'yes_no': log P(Yes) / (P(Yes) + P(No))"},
    )
    question_suffix: str = field(default=" Answer yes or no.", metadata={"help": "appended to every question"})
    frames_as: str = field(
        default="images",
        metadata={"help": "'images': each picked frame is an image; 'video': the picked frames form one clip "
                          "(Qwen-VL families; consecutive frames share a temporal patch)"},
    )
    video_fps: float = field(
        default=24.0,
        metadata={"help": "frame rate of the frames given to reward; Qwen3-VL writes frame times into the prompt "
                          "(24 is transformers' own fallback when a video's fps is unknown)"},
    )
    augment_views: int = field(
        default=0,
        metadata={"help": "score K randomly perturbed views of every video and average (0: the frames as they are)"},
    )
    augment_noise: float = field(default=0.02, metadata={"help": "pixel noise std of each view"})
    augment_shift: int = field(default=1, metadata={"help": "max integer translation (pixels) of each view"})
    share_prefix: bool = field(
        default=True, metadata={"help": "reuse the visual prefix's KV cache across questions (False: full rows)"}
    )
    checkpoint_layers: bool = field(default=False, metadata={
        "help": "recompute the VLM's vision and language layers in backward instead of keeping their activations "
                "(less memory, one more forward of the teacher per step; docs/planning.md)"})

    def __post_init__(self):
        for name in ("goal_frames", "process_frames"):
            check_int(f"RewardConfig.{name}", getattr(self, name))
        for name in ("min_pixels", "max_pixels"):
            check_int(f"RewardConfig.{name}", getattr(self, name), optional=True)
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"RewardConfig.min_pixels ({self.min_pixels}) must be <= max_pixels ({self.max_pixels})")
        check_int("RewardConfig.augment_views", self.augment_views, minimum=0)
        if self.augment_noise < 0 or not isinstance(self.augment_shift, int) or self.augment_shift < 0:
            raise ValueError(
                "RewardConfig.augment_noise must be >= 0 and augment_shift an int >= 0, got "
                f"{self.augment_noise!r} and {self.augment_shift!r}"
            )
        if not isinstance(self.checkpoint_layers, bool):
            raise TypeError(f"RewardConfig.checkpoint_layers must be a bool, got {self.checkpoint_layers!r}")
        if not self.video_fps > 0:
            raise ValueError(f"RewardConfig.video_fps must be > 0, got {self.video_fps!r}")
        if self.frames_as not in ("images", "video"):
            raise ValueError(f"RewardConfig.frames_as must be 'images' or 'video', got {self.frames_as!r}")
        if self.answer_form not in ("log_p_yes", "yes_no"):
            raise ValueError(f"RewardConfig.answer_form must be 'log_p_yes' or 'yes_no', got {self.answer_form!r}")


LAYER_LISTS = ("layers", "blocks")  # transformers' decoder layers and vision blocks


def _checkpointed(forward, *args, **kwargs):
    """``forward`` (a layer's) under checkpointing; with a KV cache only its ``mlp`` is (the layer's recompute would
    append to the cache a second time; the MLP, 5x wider than the hidden state in Qwen2.5-VL, holds most of what a
    layer keeps)."""
    from torch.utils.checkpoint import checkpoint

    if not any(v is not None for k, v in kwargs.items() if k in ("cache", "past_key_values", "past_key_value")):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    mlp = getattr(forward.__self__, "mlp", None)
    if mlp is None:
        return forward(*args, **kwargs)
    own = mlp.__dict__.get("forward")
    mlp.forward = functools.partial(checkpoint, mlp.forward, use_reentrant=False)
    try:
        return forward(*args, **kwargs)
    finally:
        if own is None:
            del mlp.forward
        else:
            mlp.forward = own


@contextlib.contextmanager
def checkpointed_layers(model: torch.nn.Module):
    """Run every layer of ``model``'s layer lists (``LAYER_LISTS``) under activation checkpointing while inside:
    each keeps only its inputs for backward and recomputes its forward there. Works in eval mode (transformers'
    own switch acts only in training). In a call that fills or reads a KV cache (the shared visual prefix) only the
    layer's MLP is checkpointed."""
    patched = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in LAYER_LISTS and isinstance(module, torch.nn.ModuleList):
            for layer in module:
                own = layer.__dict__.get("forward")  # an instance-level forward (a hook's) is restored as it was
                layer.forward = functools.partial(_checkpointed, layer.forward)
                patched.append((layer, own))
    try:
        yield len(patched)
    finally:
        for layer, own in patched:
            if own is None:
                del layer.forward
            else:
                layer.forward = own


def resolve_answer_token(tokenizer, candidates=YES_CANDIDATES) -> int:
    """Id of the first candidate spelling that the tokenizer encodes as exactly one known token.

    BPE vocabularies differ on whether the answer starts with a space ("Yes" vs " Yes"). Adapters order their
    candidates by their template: after Qwen's "assistant\\n" the answer token is the space-less one, after
    Idefics3's "Assistant:" or LLaVA's "ASSISTANT:" it is the spaced one.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    for text in candidates:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] != unk:
            return int(ids[0])
    raise ValueError(
        f"tokenizer has no single-token spelling of the answer among {list(candidates)}; "
        "a VQA reward needs one (pass the model's own tokenizer)"
    )


def _video_processor(processor):
    """The ``video_processor`` of a full transformers processor (Qwen-VL, where torchvision is installed), else None."""
    if isinstance(processor, (tuple, list)):
        return None
    return getattr(processor, "video_processor", None)


def _split_processor(processor):
    """(tokenizer, image_processor) from a processor, a tokenizer, or a (tokenizer, image_processor) pair."""
    if isinstance(processor, (tuple, list)) and len(processor) == 2:
        return processor[0], processor[1]
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        return tok, getattr(processor, "image_processor", None)
    if callable(getattr(processor, "convert_tokens_to_ids", None)):
        return processor, None
    raise TypeError(
        "processor must be a transformers processor, a tokenizer, or a (tokenizer, image_processor) pair, "
        f"got {type(processor).__name__}"
    )


class VLMTeacher:
    """A frozen VLM that writes yes/no questions and scores frames with a differentiable log P("Yes").

    Args:
        model: a transformers `*ForConditionalGeneration` of a supported family (see `supported_model_types()`).
            It is put in eval mode and its parameters get requires_grad=False: no gradient ever reaches them.
        processor: the model's processor, or its tokenizer, or a (tokenizer, image_processor) pair. The image
            processor only supplies normalization and pixel bounds; preprocessing itself runs in torch. A full
            processor's video processor supplies the pixel bounds of ``frames_as="video"`` (else the family's video
            processor defaults).
        config: `RewardConfig` (defaults work).
        frame_transform: optional differentiable callable, frames (B, F, 3, H, W) in [0, 1] -> same shape in
            [0, 1], applied to every video before frame selection and augmentation: the input view the teacher was
            trained on (e.g. the toy world's one-colour-per-cell view). None: the frames as they are.
    """

    def __init__(self, model, processor, config: RewardConfig | None = None, frame_transform=None):
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in FAMILIES:
            raise ValueError(
                f"unsupported VLM family {model_type!r} ({type(model).__name__}); supported model_type values: "
                f"{supported_model_types()}"
            )
        self.config = config if config is not None else RewardConfig()
        if not isinstance(self.config, RewardConfig):
            raise TypeError(f"config must be a RewardConfig, got {type(self.config).__name__}")
        self.tokenizer, self.image_processor = _split_processor(processor)
        model.eval()
        model.requires_grad_(False)
        self.model = model
        self.family = FAMILIES[model_type](model, self.tokenizer, self.image_processor)
        if getattr(self.image_processor, "do_image_splitting", False) and model_type in ("idefics3", "smolvlm"):
            warnings.warn(f"{model_type} teacher: {_GLOBAL_ONLY}", UserWarning, stacklevel=2)
        video_processor = _video_processor(processor)
        if video_processor is not None and hasattr(self.family, "use_video_processor"):
            self.family.use_video_processor(video_processor)
        self.yes_id = resolve_answer_token(self.tokenizer, getattr(self.family, "yes_candidates", YES_CANDIDATES))
        try:
            self.no_id = resolve_answer_token(self.tokenizer, getattr(self.family, "no_candidates", NO_CANDIDATES))
        except ValueError:
            self.no_id = None  # only the 'yes_no' form needs it; checked there
        self.query_cache = QueryCache()
        if frame_transform is not None and not callable(frame_transform):
            raise TypeError(f"frame_transform must be callable or None, got {type(frame_transform).__name__}")
        self.frame_transform = frame_transform

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: torch.dtype = torch.bfloat16, device="cpu",
                        config: RewardConfig | None = None, trust_remote_code: bool = False, **model_kwargs):
        """Load model + tokenizer (+ image processor when loadable) from a hub id or local directory.

        What the teacher sees (``FAMILY_NOTES``, also printed by ``vlmteach-fast doctor``): Qwen2/2.5/3-VL and LLaVA
        frames are preprocessed as their processors do. Idefics3 / SmolVLM frames are scored on the
        global image only: their released processors split each frame into tiles plus a global image (13-17 images
        per frame) and the teacher does not, so its P(Yes) differs from the model's usual input (measured:
        docs/teachers.md).
        """
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        hf_config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        if hf_config.model_type not in FAMILIES:
            raise ValueError(
                f"unsupported VLM family {hf_config.model_type!r} at {name_or_path!r}; supported model_type values: "
                f"{supported_model_types()}"
            )
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **model_kwargs
        ).to(device)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        try:
            image_processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, ImportError, AttributeError):
            image_processor = None  # family defaults (normalization, pixel bounds) are used then
        return cls(model, (tokenizer, image_processor), config=config)

    # ---- queries ------------------------------------------------------------------------------------------------
    def synthesize_queries(self, prompt: str, first_frame: torch.Tensor | None = None, max_process: int = 3,
                           max_new_tokens: int = 160) -> Queries:
        """Ask the VLM for one goal and up to `max_process` process questions about the task.

        Args:
            prompt: the task prompt.
            first_frame: (3, H, W) float in [0, 1] or None.
        Unusable output falls back to a goal derived from the prompt (with a warning). Cached per
        (prompt, image hash, max_process).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        check_int("max_process", max_process, minimum=0)
        if first_frame is not None:
            if not isinstance(first_frame, torch.Tensor) or first_frame.ndim != 3:
                shape = tuple(first_frame.shape) if isinstance(first_frame, torch.Tensor) else type(first_frame)
                raise ValueError(f"`first_frame` must be a tensor of shape (3, H, W) in [0, 1], got {shape}")
            check_frames(first_frame[None, None], "first_frame")
        key = self.query_cache.key(prompt, first_frame, max_process)
        cached = self.query_cache.get(key)
        if cached is not None:
            return cached
        text = self.generate_text(build_instruction(prompt, max_process), first_frame, max_new_tokens)
        queries, _ = parse_queries(text, prompt, max_process)
        self.query_cache.put(key, queries)
        return queries

    def generate_text(self, instruction: str, image: torch.Tensor | None = None, max_new_tokens: int = 160) -> str:
        """The VLM's greedy answer (no gradient) to ``instruction`` about an optional (3, H, W) float image in [0, 1],
        preprocessed with this teacher's pixel bounds."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"`instruction` must be a non-empty string, got {instruction!r}")
        check_int("max_new_tokens", max_new_tokens, 1)
        with torch.no_grad():
            return self.family.generate_text(instruction, image, max_new_tokens, self.config.min_pixels,
                                             self.config.max_pixels)

    # ---- reward -------------------------------------------------------------------------------------------------
    def _views(self, num_frames: int, kinds: list[str]) -> dict[str, list[int]]:
        views = {}
        if GOAL in kinds:
            views[GOAL] = select_frames(num_frames, self.config.goal_frames, "last")
        if PROCESS in kinds:
            views[PROCESS] = select_frames(num_frames, self.config.process_frames, "uniform")
        return views

    def _encode(self, frames: torch.Tensor, views: dict[str, list[int]]):
        """One vision-tower pass for every frame view; returns (features, {kind: per-video feature indices})."""
        B = frames.shape[0]
        cfg = self.config
        if cfg.frames_as == "video":
            if not getattr(self.family, "supports_video", False):
                raise ValueError(
                    f"RewardConfig.frames_as='video' is not supported for {self.family.name!r}; "
                    "use frames_as='images'"
                )
            feats = self.family.encode_videos(
                [frames[:, idx] for idx in views.values()], cfg.min_pixels, cfg.max_pixels,
                frame_indices=list(views.values()), fps=cfg.video_fps,
            )
            # Clip-major, then video: view v of video b is clip v * B + b.
            return feats, {kind: [[v * B + b] for b in range(B)] for v, kind in enumerate(views)}, B * len(views)
        union = sorted({i for v in views.values() for i in v})
        U = len(union)
        images = frames[:, union].reshape(B * U, *frames.shape[2:])
        pv, grid = self.family.preprocess(images, cfg.min_pixels, cfg.max_pixels)
        feats = self.family.encode(pv, grid)
        layout = {kind: [[b * U + union.index(i) for i in idx] for b in range(B)] for kind, idx in views.items()}
        return feats, layout, B * U

    def answer_logits(self, frames: torch.Tensor, questions: list[str], kinds: list[str]):
        """(B, Q, V) logits at the answer position, and stats. Steps 1-4 of `reward`; frames already checked."""
        B, F_ = frames.shape[:2]
        views = self._views(F_, kinds)
        feats, layout, n_items = self._encode(frames, views)  # the one vision-tower pass
        stats = {"vision_calls": 1, "lm_calls": 0, "visual_items": n_items}
        suffix = self.config.question_suffix
        hidden = None
        for kind in views:
            cols = [i for i, k in enumerate(kinds) if k == kind]
            # With one question there is nothing to share: the full row is one LM call instead of two.
            share = self.config.share_prefix and len(cols) > 1
            h, calls = self.family.answer_hidden(feats, layout[kind], [questions[i] + suffix for i in cols], share)
            stats["lm_calls"] += calls
            if hidden is None:
                hidden = h.new_zeros(B, len(questions), h.shape[-1])
            hidden = hidden.index_copy(1, torch.tensor(cols, device=h.device), h)
        logits = self.model.get_output_embeddings()(hidden)  # (B, Q, V): lm_head on Q positions only
        return logits, stats

    def log_probs(self, frames: torch.Tensor, questions: list[str], kinds: list[str]):
        """Per-question answer log-probabilities, without weighting.

        Args:
            frames: (B, F, 3, H, W) float in [0, 1].
            questions: Q question strings.
            kinds: Q entries, "goal" or "process" (which frames each question sees).
        Returns: ((B, Q) float32 log P("Yes") or yes-vs-no normalized form, stats dict).
        """
        frames = check_frames(frames)
        if not questions or len(questions) != len(kinds):
            raise ValueError(
                f"questions and kinds must be non-empty and of equal length, got {len(questions)} and {len(kinds)}"
            )
        bad = [k for k in kinds if k not in (GOAL, PROCESS)]
        if bad:
            raise ValueError(f"kinds must be 'goal' or 'process', got {bad}")
        if self.config.answer_form == "yes_no" and self.no_id is None:
            raise ValueError("answer_form='yes_no' needs a single-token 'No' in the tokenizer; none was found")
        if self.model.training:
            # A caller (or a training loop over other modules) may have flipped it back; dropout in the teacher
            # would make the reward random.
            self.model.eval()
        device = next(self.model.parameters()).device
        # fp32 through resize/normalize: bf16 frames would add ~4e-3 rounding before the vision tower's own cast.
        x = frames.to(device=device, dtype=torch.float32)
        if self.frame_transform is not None:
            x = self.frame_transform(x)
        K = self.config.augment_views
        if K:
            x = random_views(x, K, self.config.augment_noise, self.config.augment_shift)  # (B*K, ...)
        logits, stats = self.answer_logits(x, questions, kinds)
        logits = logits.float()
        if self.config.answer_form == "log_p_yes":
            log_probs = torch.log_softmax(logits, dim=-1)[..., self.yes_id]
        else:
            log_probs = torch.log_softmax(logits[..., [self.yes_id, self.no_id]], dim=-1)[..., 0]
        if K:
            log_probs = log_probs.view(frames.shape[0], K, -1).mean(dim=1)  # mean log-prob over views
            stats["augment_views"] = K
        return log_probs, stats

    def reward(self, frames: torch.Tensor, queries, weights=None) -> RewardOutput:
        """Differentiable VQA reward.

        Args:
            frames: (B, F, 3, H, W) float (fp32/bf16/fp16) in [0, 1]; typically requires grad.
            queries: `Queries`, or a non-empty list of question strings (first = goal, rest = process).
            weights: optional (Q,) per-question weights overriding `queries.weights`.
        Returns: `RewardOutput`; `.reward` is (B,) and differentiable w.r.t. `frames` only.
        """
        queries = as_queries(queries)
        if weights is not None:
            queries = Queries(queries.goal, queries.process, list(weights))
        layers = checkpointed_layers(self.model) if self.config.checkpoint_layers and torch.is_grad_enabled() \
            else contextlib.nullcontext()
        with layers:
            log_probs, stats = self.log_probs(frames, queries.questions, queries.kinds)
        w = queries.weight_tensor(device=log_probs.device)
        w = w / w.sum()
        return RewardOutput(
            reward=(log_probs * w).sum(-1), log_probs=log_probs, weights=w,
            questions=queries.questions, kinds=queries.kinds, stats=stats,
        )
