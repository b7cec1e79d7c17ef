"""Tiny random VLMs (Qwen2-VL / Qwen2.5-VL / Qwen3-VL, Idefics3 / SmolVLM, LLaVA), their offline tokenizers and
image processors, for tests and benchmarks of teachers.

Nothing is downloaded: models are built from configs with random weights, the tokenizers are `tokenizers`
WordLevel models holding each family's special tokens. Everything is fp32 and in eval mode.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
WORDS = (
    "system user assistant You are a helpful Yes No yes no Does do the ball red green square purple circle reach "
    "reaches stay stays intact end at in on of to and is it frame video final move onto through walls without "
    "disappearing overlap Is Are goal process question questions answer JSON list task prompt first Write one "
    "Return only with keys Answer"
).split()
PUNCT = list("?.,:;!\"'{}[]()<>-_/\n") + [str(d) for d in range(10)] + ["seconds"]


def make_qwen_tokenizer(with_yes: bool = True) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer with the Qwen special tokens; `with_yes=False` drops every yes/Yes token."""
    words = [w for w in WORDS if with_yes or w.lower() != "yes"]
    vocab = {"[UNK]": 0}
    for tok in QWEN_SPECIAL + words + PUNCT:
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    return fast


def _ids(tok):
    conv = tok.convert_tokens_to_ids
    return dict(
        image_token_id=conv("<|image_pad|>"),
        video_token_id=conv("<|video_pad|>"),
        vision_start_token_id=conv("<|vision_start|>"),
        vision_end_token_id=conv("<|vision_end|>"),
    )


def _text_config(vocab_size: int, width: int = 32, **extra) -> dict:
    # 4 heads; at width 32, head_dim 8 -> 4 rotary frequencies split (t, h, w) = (2, 1, 1) by mrope_section.
    half = width // 8
    section = [half // 2, half // 4, half - half // 2 - half // 4]
    cfg = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
    )
    cfg.update(extra)
    return cfg


def _finish(model, tok, bos_token_id, weight_std: float):
    """Generation ids from the tokenizer, matrices re-drawn from N(0, weight_std) (transformers' 0.02 default makes
    a tiny model's output nearly independent of its input), eval mode. Returns (model, tok)."""
    model.generation_config.bos_token_id = bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0.0, weight_std)
    model.eval()
    return model, tok


def make_qwen_vl(family: str = "qwen2_vl", vocab_size: int = 160, text_layers: int = 2, vision_depth: int = 2,
                 weight_std: float = 0.2, width: int = 32):
    """A tiny random `*ForConditionalGeneration` of the given Qwen-VL family, fp32, eval mode, plus its tokenizer.

    Matrices are redrawn with std `weight_std`: at the default init (0.02) every logit is ~log(1/V) +- 1e-3, so
    comparisons between code paths would pass even if questions or images were mixed up; at 0.2 log P(Yes) varies by
    ~1 nat between questions and frames.
    """
    import transformers as tf

    tok = make_qwen_tokenizer()
    if len(tok) > vocab_size:
        raise ValueError(f"vocab_size must be >= {len(tok)}, got {vocab_size}")
    ids = _ids(tok)
    text = _text_config(vocab_size, width, num_hidden_layers=text_layers, bos_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if family == "qwen2_vl":
        vision = dict(depth=vision_depth, embed_dim=width, hidden_size=width, num_heads=2, mlp_ratio=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        model = tf.Qwen2VLForConditionalGeneration(config)
    elif family == "qwen2_5_vl":
        vision = dict(depth=vision_depth, hidden_size=width, intermediate_size=2 * width, num_heads=2,
                      out_hidden_size=width, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                      fullatt_block_indexes=[vision_depth - 1])
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    elif family == "qwen3_vl":
        text.update(head_dim=width // 4)
        text["rope_parameters"] = dict(text["rope_parameters"], mrope_interleaved=True)
        vision = dict(depth=vision_depth, hidden_size=width, intermediate_size=2 * width, num_heads=2,
                      out_hidden_size=width, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                      num_position_embeddings=64,
                      deepstack_visual_indexes=[0])
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
        model = tf.Qwen3VLForConditionalGeneration(config)
    else:
        raise ValueError(f"family must be one of qwen2_vl, qwen2_5_vl, qwen3_vl, got {family!r}")
    return _finish(model, tok, tok.pad_token_id, weight_std)


def make_qwen_image_processor(family: str = "qwen2_vl", min_pixels: int = 28 * 28, max_pixels: int = 56 * 56):
    """The HF (PIL-backed) image processor configured like the family's checkpoints, with small pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if family == "qwen3_vl":
        return Qwen2VLImageProcessorPil(
            patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        )
    return Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})


IDEFICS_SPECIAL = [
    "<|end_of_text|>",
    "<|begin_of_text|>",
    "<|im_start|>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
]


def make_idefics_tokenizer(family: str = "idefics3") -> PreTrainedTokenizerFast:
    """WordLevel tokenizer with the Idefics3/SmolVLM special tokens."""
    vocab = {"[UNK]": 0}
    for tok in IDEFICS_SPECIAL + WORDS + ["User", "Assistant"] + PUNCT:
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    bos = "<|begin_of_text|>" if family == "idefics3" else "<|im_start|>"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="<|end_of_text|>", eos_token="<end_of_utterance>",
        bos_token=bos,
    )
    fast.add_special_tokens({"additional_special_tokens": IDEFICS_SPECIAL})
    return fast


def make_idefics3(family: str = "idefics3", vocab_size: int = 160, image_size: int = 64, patch_size: int = 8,
                  weight_std: float = 0.2):
    """A tiny random Idefics3 or SmolVLM (`family="smolvlm"`), fp32, eval mode, plus its tokenizer.

    64 px encoder input with 8 px patches and pixel-shuffle scale 2 -> 16 image tokens per frame.
    """
    import transformers as tf

    tok = make_idefics_tokenizer(family)
    text = dict(model_type="llama", vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch_size)
    image_token_id = tok.convert_tokens_to_ids("<image>")
    if family == "idefics3":
        config = tf.Idefics3Config(text_config=text, vision_config=vision, scale_factor=2,
                                   image_token_id=image_token_id, pad_token_id=tok.pad_token_id)
        model = tf.Idefics3ForConditionalGeneration(config)
    elif family == "smolvlm":
        config = tf.SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2,
                                  image_token_id=image_token_id, pad_token_id=tok.pad_token_id)
        model = tf.SmolVLMForConditionalGeneration(config)
    else:
        raise ValueError(f"family must be 'idefics3' or 'smolvlm', got {family!r}")
    return _finish(model, tok, tok.bos_token_id, weight_std)


def make_idefics_image_processor(image_size: int = 64, longest_edge: int = 128):
    """HF (PIL-backed) Idefics3 image processor without image splitting (frames as single global images)."""
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    return Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": longest_edge}, max_image_size={"longest_edge": image_size}
    )


def make_llava(vocab_size: int = 160, image_size: int = 32, patch_size: int = 8, weight_std: float = 0.2,
               strategy: str = "default"):
    """A tiny random LLaVA-1.5-style model (CLIP tower, 16 image tokens), fp32, eval mode, plus its tokenizer."""
    import transformers as tf

    special = ["<pad>", "<s>", "</s>", "<image>"]
    vocab = {"[UNK]": 0}
    for t in special + WORDS + ["USER", "ASSISTANT"] + PUNCT:
        vocab.setdefault(t, len(vocab))
    wl = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="[UNK]", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = dict(model_type="llama", vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=32)
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                            vision_feature_layer=-2, vision_feature_select_strategy=strategy)
    model = tf.LlavaForConditionalGeneration(config)
    return _finish(model, tok, tok.bos_token_id, weight_std)


def make_llava_image_processor(image_size: int = 32):
    """HF (PIL-backed) LLaVA image processor: shortest edge to `image_size`, centre crop, CLIP normalization."""
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    return LlavaImageProcessorPil(size={"shortest_edge": image_size},
                                  crop_size={"height": image_size, "width": image_size})
