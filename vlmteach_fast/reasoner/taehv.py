"""A tiny causal video decoder in the layout of madebyollin's TAEHV, so its published Wan checkpoints load as-is.

TAEHV ("tiny autoencoder for Hunyuan Video", also released for Wan 2.1 as ``taew2_1`` and Wan 2.2 TI2V-5B as
``taew2_2``) decodes a video's latents with 2-D convolutions applied to every frame at once, plus two tricks for time:
- **MemBlock**: a residual block whose first conv sees the block's input at this frame *and at the previous frame*
  (zeros before the first), so information flows forward in time, never backward (causal, like the Wan VAE).
- **TGrow**: a 1x1 conv from C to stride x C channels, read as ``stride`` consecutive frames of C channels: frame t
  becomes frames ``stride*t .. stride*t + stride - 1``.
Layout (``blocks_per_stage`` = 3 in the published files, ``nn.Sequential`` indices are the state-dict keys)::

    decoder.0  Clamp (3 tanh(x / 3): keeps out-of-range latents from exploding)
    decoder.1  conv3x3(latent_channels -> widths[0]), decoder.2 ReLU
    stage s = 0, 1, 2:  MemBlock(widths[s]) x blocks, Upsample(2 or 1), TGrow(widths[s], 2 or 1),
                        conv3x3(widths[s] -> widths[s + 1], no bias)
    ReLU, conv3x3(widths[3] -> 3 * patch_size**2), pixel shuffle by patch_size

With time upscaling on stages 1 and 2 a latent frame grows into 4 frames and the first 3 of the video are dropped, so
T latent frames give ``4 (T - 1) + 1`` frames: latent frame 0 is pixel frame 0 and latent frame j >= 1 covers
pixel frames 4j-3 .. 4j, exactly the Wan VAE's causal frame mapping (``WanAdapter.pixel_frame_index``).
TAEHV works on the VAE's own (un-normalised) latents and returns RGB in [0, 1].

Only the decoder is implemented; published files also hold an encoder (``encoder.*`` keys), which is ignored.
Design notes: docs/light_decoding.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..io_atomic import atomic_path

__all__ = ["TinyDecoderConfig", "TinyVideoDecoder", "TAEW2_1", "TAEW2_2", "tiny_decoder_from_state_dict",
           "save_tiny_decoder", "load_tiny_decoder"]


@dataclass(frozen=True)
class TinyDecoderConfig:
    """Shape of a :class:`TinyVideoDecoder`.

    Attributes:
        latent_channels: C of the latents (16 for the Wan 2.1 VAE, 48 for Wan 2.2 TI2V-5B's).
        widths: channels of the three stages and of the output head (published: 256, 128, 64, 64).
        blocks_per_stage: MemBlocks per stage (published: 3; fewer for a cheaper decoder).
        space_upscale: per stage, whether it doubles height and width. Spatial factor = 2**sum * patch_size.
        time_upscale: per stage, whether its TGrow doubles the frame count. Temporal factor = 2**sum.
        patch_size: the head emits 3 * p * p channels, pixel-shuffled to p x p pixels (Wan 2.2's VAE: 2).
    """

    latent_channels: int = 16
    widths: tuple = (256, 128, 64, 64)
    blocks_per_stage: int = 3
    space_upscale: tuple = (True, True, True)
    time_upscale: tuple = (False, True, True)
    patch_size: int = 1

    def __post_init__(self):
        for name in ("latent_channels", "blocks_per_stage", "patch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TinyDecoderConfig.{name} must be an int >= 1, got {v!r}")
        w = tuple(self.widths)
        if len(w) != 4 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in w):
            raise ValueError(f"TinyDecoderConfig.widths must be 4 ints >= 1, got {self.widths!r}")
        object.__setattr__(self, "widths", w)
        for name in ("space_upscale", "time_upscale"):
            v = tuple(getattr(self, name))
            if len(v) != 3 or not all(isinstance(b, bool) for b in v):
                raise ValueError(f"TinyDecoderConfig.{name} must be 3 bools (one per stage), "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)

    @property
    def spatial_factor(self) -> int:
        return 2 ** sum(self.space_upscale) * self.patch_size

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.time_upscale)

    def num_frames(self, num_latent_frames: int) -> int:
        """Decoded frames for ``num_latent_frames`` latent frames: ``temporal (T - 1) + 1`` (causal, first kept)."""
        return self.temporal_factor * (num_latent_frames - 1) + 1


TAEW2_1 = TinyDecoderConfig()  # taew2_1: the Wan 2.1 VAE (16 ch, 8x spatial, 4x temporal); also Wan 2.2 A14B's
TAEW2_2 = TinyDecoderConfig(latent_channels=48, patch_size=2)  # taew2_2: Wan 2.2 TI2V-5B's VAE (48 ch, 16x, 4x)


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class _Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """``relu(conv(cat(x_t, x_{t-1})) + skip(x_t))`` on (N*T, C, H, W) frames; ``past`` is the previous frame's
    input (zeros for the first frame)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(2 * n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """(N*T, C, H, W) -> (N*T*stride, C, H, W): a 1x1 conv to stride*C channels, read as ``stride`` frames."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return self.conv(x).reshape(nt * self.stride, c, h, w)  # channel block s -> frame stride*t + s


class TinyVideoDecoder(nn.Module):
    """Latents (N, T, C, h, w) -> frames (N, temporal (T - 1) + 1, 3, s h, s w), differentiable.

    ``forward`` returns the raw output (not clamped: what a distillation loss should see); ``decode_video`` clamps
    to [0, 1] (TAEHV's interface, which :class:`~vlmteach_fast.reasoner.LightDecoder` calls). Input latents are the
    VAE's own (un-normalised) latents, any float dtype; output is in the parameters' dtype.
    """

    def __init__(self, config: TinyDecoderConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else TinyDecoderConfig()
        if not isinstance(c, TinyDecoderConfig):
            raise TypeError(f"`config` must be a TinyDecoderConfig, got {type(c).__name__}")
        w = c.widths
        layers: list[nn.Module] = [_Clamp(), _conv(c.latent_channels, w[0]), nn.ReLU()]
        for s in range(3):
            layers += [MemBlock(w[s], w[s]) for _ in range(c.blocks_per_stage)]
            layers += [nn.Upsample(scale_factor=2) if c.space_upscale[s] else nn.Identity(),
                       TGrow(w[s], 2 if c.time_upscale[s] else 1), _conv(w[s], w[s + 1], bias=False)]
        layers += [nn.ReLU(), _conv(w[3], 3 * c.patch_size ** 2)]
        self.decoder = nn.Sequential(*layers)
        # Frames before the video's first: the first latent frame grows into `temporal` frames of which only the
        # last is real (Wan's VAE keeps frame 0 alone). Dropped right after the last TGrow: nothing after it looks
        # at other frames, so the per-frame head never runs on them (3 of 12 frames on the toy model).
        self.frames_to_trim = c.temporal_factor - 1
        self._last_tgrow = max(i for i, m in enumerate(layers) if isinstance(m, TGrow))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not torch.is_tensor(latents) or latents.dim() != 5 or latents.shape[2] != c.latent_channels:
            got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"`latents` must have shape (N, T, {c.latent_channels}, h, w), got {got}")
        n = latents.shape[0]
        x = latents.to(self.decoder[1].weight.dtype).flatten(0, 1)  # (N*T, C, h, w)
        for i, layer in enumerate(self.decoder):
            if isinstance(layer, MemBlock):
                xt = x.unflatten(0, (n, -1))  # (N, T, C, H, W)
                past = F.pad(xt, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1]  # frame t-1 (zeros at t = 0)
                x = layer(x, past.flatten(0, 1))
            else:
                x = layer(x)
            if i == self._last_tgrow and self.frames_to_trim:
                x = x.unflatten(0, (n, -1))[:, self.frames_to_trim:].flatten(0, 1)
        if c.patch_size > 1:
            x = F.pixel_shuffle(x, c.patch_size)
        return x.unflatten(0, (n, -1))  # (N, T', 3, H, W)

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, T, C, h, w) VAE latents -> (N, T', 3, H, W) RGB clamped to [0, 1] (TAEHV's ``decode_video``)."""
        return self.forward(latents).clamp(0, 1)


def _stage_layout(blocks: int):
    """Sequential indices: (first MemBlock, TGrow, stage conv) per stage, then the head conv."""
    base, out = 3, []
    for _ in range(3):
        out.append((base, base + blocks + 1, base + blocks + 2))
        base += blocks + 3
    return out, base + 1


def tiny_decoder_from_state_dict(state_dict: dict, space_upscale=(True, True, True), source: str = "state dict"):
    """Build a :class:`TinyVideoDecoder` whose shape is read from a checkpoint, and load the weights.

    Args:
        state_dict: {name: tensor} in TAEHV's naming (``decoder.<index>...``; ``encoder.*`` keys are ignored).
        space_upscale: which stages upsample in space (not visible in the weights; published files: all three).
        source: how to name the checkpoint in error messages (e.g. its path).

    Everything else (latent channels, widths, blocks per stage, time strides, patch size) comes from the weights.
    Raises ValueError naming ``source`` when the keys are not a TAEHV decoder's.
    """
    sd = {k[len("decoder."):]: v for k, v in state_dict.items() if k.startswith("decoder.")}
    if "1.weight" not in sd:
        raise ValueError(f"{source}: not a TAEHV-style decoder (no 'decoder.1.weight'; "
                         f"keys start {sorted(state_dict)[:4]})")
    first = sd["1.weight"]  # (widths[0], C, 3, 3)
    blocks = 0
    while f"{3 + blocks}.conv.0.weight" in sd:
        blocks += 1
    if blocks == 0:
        raise ValueError(f"{source}: not a TAEHV-style decoder (no MemBlock at 'decoder.3.conv.0.weight')")
    stages, head = _stage_layout(blocks)
    try:
        widths = [int(first.shape[0])]
        time_up = []
        for _, tgrow, conv in stages:
            g = sd[f"{tgrow}.conv.weight"]  # (stride * n, n, 1, 1)
            time_up.append(int(g.shape[0]) // int(g.shape[1]) == 2)
            widths.append(int(sd[f"{conv}.weight"].shape[0]))
        out_ch = int(sd[f"{head}.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"{source}: not a TAEHV-style decoder with {blocks} MemBlocks per stage "
                         f"(missing 'decoder.{err.args[0]}')") from None
    patch = int(round((out_ch / 3) ** 0.5))
    if 3 * patch * patch != out_ch:
        raise ValueError(f"{source}: the head emits {out_ch} channels, not 3 * patch_size**2")
    config = TinyDecoderConfig(latent_channels=int(first.shape[1]), widths=tuple(widths), blocks_per_stage=blocks,
                               space_upscale=tuple(bool(b) for b in space_upscale), time_upscale=tuple(time_up),
                               patch_size=patch)
    model = TinyVideoDecoder(config)
    try:
        missing, unexpected = model.decoder.load_state_dict(sd, strict=False)
    except RuntimeError as err:  # a shape that the inferred layout does not have
        raise ValueError(f"{source}: decoder weights do not fit the TAEHV layout they imply ({config}): "
                         f"{err}") from None
    if missing or unexpected:
        raise ValueError(f"{source}: decoder weights do not fit the TAEHV layout they imply ({config}): "
                         f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval()


def save_tiny_decoder(model: TinyVideoDecoder, path, metadata: dict | None = None) -> str:
    """Write ``model`` as a safetensors file in TAEHV's key names (``decoder.*``), atomically.

    ``space_upscale`` (not visible in the weights) and any ``metadata`` (str -> str) go into the file's header.
    """
    from safetensors.torch import save_file

    path = os.fspath(path)
    meta = {"format": "taehv-decoder", "space_upscale": ",".join(str(int(b)) for b in model.config.space_upscale)}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    tensors = {f"decoder.{k}": v.detach().contiguous() for k, v in model.decoder.state_dict().items()}
    with atomic_path(path) as tmp:  # a reader sees the old file or the whole new one
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # the temporary file is owner-only; a shipped decoder must be readable by all
    return path


def load_tiny_decoder(path, space_upscale=None) -> tuple[TinyVideoDecoder, dict]:
    """Read a TAEHV-style checkpoint: ``.safetensors``, or ``.pth`` / ``.pt`` through ``torch.load(weights_only=True)``.

    Args:
        path: the file (published ``taew2_1`` / ``taew2_2`` files or one written by :func:`save_tiny_decoder`).
        space_upscale: 3 bools; default: the file's ``space_upscale`` header, else all True (the published files).

    Returns:
        (decoder in eval mode, the safetensors header metadata ({} for .pth)).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tiny decoder file {path!r} not found")
    meta: dict = {}
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    elif path.endswith((".pth", ".pt")):
        warnings.warn(f"reading {path!r} with torch.load(weights_only=True): only tensors are unpickled, but prefer "
                      "the .safetensors file (the published TAEHV checkpoints ship both)", UserWarning, stacklevel=2)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            raise ValueError(f"{path!r} holds a {type(sd).__name__}, not a state dict")
    else:
        raise ValueError(f"tiny decoder file must end in .safetensors, .pth or .pt, got {path!r}")
    if space_upscale is None:
        s = meta.get("space_upscale")
        space_upscale = (True, True, True) if s is None else tuple(bool(int(b)) for b in s.split(","))
    return tiny_decoder_from_state_dict(sd, space_upscale, source=repr(path)), meta
