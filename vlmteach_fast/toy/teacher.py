"""The toy world's teacher: a tiny Qwen2-VL trained in-repo to answer the toy questions with Yes / No.

- Tokenizer: a ``tokenizers`` WordLevel model over the Qwen special tokens, the words of the prompts and questions,
  Yes / No and punctuation (no files needed to build it; ``save_pretrained`` writes tokenizer.json).
- Vision: 32x32 frames are resized to 112x112 (min_pixels = max_pixels = 112**2), so each 14-px Qwen patch covers
  exactly one 4-px world cell (64 patches, 16 tokens after the 2x2 merge).
- ``ToyTeacher`` is a ``VLMTeacher`` whose ``synthesize_queries`` returns the deterministic toy questions
  (``queries.queries_for``) instead of generating text: a model this small cannot write questions.
"""

from __future__ import annotations

import os

import torch

from ..teacher import Queries, RewardConfig, VLMTeacher
from .queries import queries_for, question_words, task_type_of_prompt
from .views import make_view

__all__ = ["ToyTeacher", "build_teacher_tokenizer", "build_teacher_model", "teacher_image_processor",
           "teacher_reward_config", "load_teacher", "IMAGE_PIXELS"]

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
_EXTRA_WORDS = ["system", "user", "assistant", "Yes", "No", "yes", "no", "Answer", "or"]
_PUNCT = list("?.,:;!'\"-\n")
IMAGE_PIXELS = 112 * 112  # one 14-px patch per 4-px cell of the 32-px frame
VOCAB_SIZE = 128


def build_teacher_tokenizer():
    """WordLevel ``PreTrainedTokenizerFast`` with the Qwen special tokens and the toy vocabulary (< VOCAB_SIZE)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0}
    for tok in QWEN_SPECIAL + _EXTRA_WORDS + question_words() + _PUNCT:
        vocab.setdefault(tok, len(vocab))
    if len(vocab) > VOCAB_SIZE:
        raise ValueError(f"toy vocabulary has {len(vocab)} tokens, more than VOCAB_SIZE={VOCAB_SIZE}")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    return fast


def build_teacher_model(tokenizer, width: int = 64, text_layers: int = 2, vision_depth: int = 2, seed: int = 0,
                        vision_init_std: float = 0.1):
    """A tiny ``Qwen2VLForConditionalGeneration`` (fp32, eval mode) sized for 112x112 frames.

    ``vision_init_std`` redraws the vision tower's matrices: at transformers' default (0.02) the merged features of
    two different toy frames differ by 1% of their size (std over images 0.005 vs mean |x| 0.04: the frames are
    mostly black), and a teacher trained from there learned per-question constants and ignored the image (its
    yes-no logit gap was identical on ground-truth and frozen videos). At 0.1 they differ by ~14% (0.17 vs 1.2).
    """
    import transformers as tf

    torch.manual_seed(seed)
    conv = tokenizer.convert_tokens_to_ids
    half = width // 8  # rotary frequencies per head (head_dim = width / 4 heads, halved), split (t, h, w)
    text = dict(vocab_size=VOCAB_SIZE, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=text_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [half // 2, half // 4, half - half // 2 - half // 4]},
                bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=vision_depth, embed_dim=width, hidden_size=width, num_heads=4, mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=conv("<|image_pad|>"),
                              video_token_id=conv("<|video_pad|>"), vision_start_token_id=conv("<|vision_start|>"),
                              vision_end_token_id=conv("<|vision_end|>"))
    model = tf.Qwen2VLForConditionalGeneration(config)
    with torch.no_grad():
        for p in model.model.visual.parameters():
            if p.ndim > 1:
                p.normal_(0.0, vision_init_std)
    for key in ("bos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, tokenizer.pad_token_id)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()


def teacher_image_processor():
    """HF (PIL) Qwen2-VL image processor with pixel bounds fixed at 112x112 (it supplies bounds and normalization)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size={"shortest_edge": IMAGE_PIXELS, "longest_edge": IMAGE_PIXELS})


def teacher_reward_config(**overrides) -> RewardConfig:
    """The ``RewardConfig`` the teacher was trained with: all 9 frames for process questions, the last for the goal
    (with 4 frames a one-frame teleport between two shown frames is invisible)."""
    kw = dict(goal_frames=1, process_frames=9, min_pixels=IMAGE_PIXELS, max_pixels=IMAGE_PIXELS,
              answer_form="log_p_yes")
    kw.update(overrides)
    return RewardConfig(**kw)


class ToyTeacher(VLMTeacher):
    """``VLMTeacher`` with deterministic toy-world query synthesis (goal + rules/integrity/background questions)."""

    def synthesize_queries(self, prompt: str, first_frame: torch.Tensor | None = None, max_process: int = 3,
                           max_new_tokens: int = 160) -> Queries:
        """The toy questions of the task whose prompt is ``prompt``; ``first_frame`` is not needed (ignored)."""
        return queries_for(task_type_of_prompt(prompt), max_process=min(max_process, 3))


def load_teacher(path: str | list[str] | None = None, config: RewardConfig | None = None, device="cpu",
                 view: str | None = None, reduce: str = "mean"):
    """Load the shipped toy teacher offline.

    Args:
        path: a folder written by ``scripts/train_toy_teacher.py``; default: the one in the package. A list of
            two or more folders loads an ``EnsembleTeacher`` of them (comma-separated in the scripts' flags).
        config: reward settings; default ``teacher_reward_config()`` (what it was trained with).
        device: where to put the model.
        view: the input view (``toy.views.VIEWS``); None: the one the teacher was trained with, read from the
            folder's ``view.json`` (``"frames"`` when absent).

        reduce: with several folders, how the ensemble combines its members per question (``"mean"``/``"min"``).

    Returns:
        A :class:`ToyTeacher` (fp32, frozen), or an ``EnsembleTeacher`` of them.
        ``teacher.reward(frames (B, 9, 3, 32, 32) in [0, 1], queries)``.
    """
    from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            path = path[0]
        else:
            from ..teacher import EnsembleTeacher

            return EnsembleTeacher([load_teacher(p, config, device, view) for p in path], reduce=reduce)

    from .models import TEACHER_DIR

    path = TEACHER_DIR if path is None else path
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"no toy teacher at {path!r} (config.json missing); "
                                "train it with scripts/train_toy_teacher.py")
    model = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    if view is None:
        view = trained_view(path)
    return ToyTeacher(model.to(device), (tokenizer, teacher_image_processor()),
                      config=config if config is not None else teacher_reward_config(), frame_transform=make_view(view))


def trained_view(path: str) -> str:
    """The input view a teacher folder was trained with (``view.json``; ``"frames"`` when absent)."""
    import json

    f = os.path.join(path, "view.json")
    if not os.path.isfile(f):
        return "frames"
    with open(f) as fh:
        return json.load(fh)["view"]
