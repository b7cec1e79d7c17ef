"""Cheap differentiable latent -> RGB decoding for the reward (the paper's "Light VAE"), with frame selection.

Four kinds, one interface ``LightDecoder(reasoner, config)(latents, frames=...) -> (B, F_sel, 3, H, W)`` in [0, 1]:
- ``"auto"`` (default): a trained tiny decoder registered for this exact VAE (``register_tiny_decoder``; the toy
  world registers its own), else ``"linear"`` with a one-time warning that names its measured fidelity.
- ``"linear"``: RGB = z @ W + b per latent pixel, bilinearly upsampled to the frame size. W (C x 3) and b are fitted
  by least squares against the model's own VAE on random latents, once per VAE, and cached as safetensors (keyed by
  the VAE's config and a fingerprint of its weights). One latent frame gives one RGB frame: the pixel frame it
  stands for (``VideoFamily.pixel_frame_index``: for Wan the last of its 4 frames). Measured to be a poor proxy
  on a trained model's latents (bench/RESULTS.md, "Light decoders").
- ``"tiny"``: a tiny decoder from ``path``: a TAEHV-style file (``.safetensors``; ``.pth`` / ``.pt`` only through
  ``torch.load(weights_only=True)``), e.g. the published ``taew2_1`` (Wan 2.1) / ``taew2_2`` (Wan 2.2 TI2V-5B),
  built as :class:`~vlmteach_fast.reasoner.taehv.TinyVideoDecoder` and checked against the VAE's latent channels
  and scale factors; or a diffusers ``AutoencoderTiny`` directory (applied per latent frame); or a module passed as
  ``tiny_module``: per-frame ((B, C, F_sel, h, w) -> (B, F_sel, 3, H, W) in [0, 1]) or TAEHV's interface
  ``decode_video((N, T, C, h, w)) -> (N, T', 3, H, W)`` in [0, 1] (its temporal memory needs every latent frame, so
  all are decoded and the selected frames picked).
- ``"full"``: the full VAE on all latent frames (temporal VAEs are causal: decoding a subset is not exact), then the
  selected frames are picked. Exact but the expensive baseline.
Frame selection happens on latent frames *before* a light decode, so the reward never pays for frames it ignores.
``LightDecoder.measure_fidelity`` reports PSNR and teacher-reward agreement against the full decode.
Design notes: docs/light_decoding.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..checks import check_int
from ..io_atomic import atomic_path
from .fidelity import DecoderFidelity, spearman, warn_once

__all__ = ["LightDecoderConfig", "LightDecoder", "select_latent_frames", "psnr", "vae_fingerprint",
           "register_tiny_decoder", "registered_tiny_decoders"]

_KINDS = ("auto", "linear", "tiny", "full")
_REGISTRY: list[str] = []  # tiny decoder files for kind="auto", matched to a VAE by their vae_fingerprint header
_NAMED_SELECTIONS = ("pixels", "all", "first", "last", "first_last")


def select_latent_frames(num_latent_frames: int, frames) -> list[int]:
    """Latent frame indices for a selection.

    Args:
        num_latent_frames: F_lat of the latents.
        frames: ``"pixels"`` (every latent frame; the decoder then emits every pixel frame, see
            ``LightDecoder.__call__``), ``"all"``, ``"first"``, ``"last"``, ``"first_last"``, ``("every", k)`` (0, k, 2k, ... and always
            the last frame, which the goal question looks at), or an explicit list of indices (negative allowed).
    """
    n = num_latent_frames
    if isinstance(frames, str):
        if frames in ("all", "pixels"):
            return list(range(n))
        if frames == "first":
            return [0]
        if frames == "last":
            return [n - 1]
        if frames == "first_last":
            return [0, n - 1] if n > 1 else [0]
        raise ValueError(f"`frames` must be one of {_NAMED_SELECTIONS}, ('every', k) or a list of ints, got {frames!r}")
    if isinstance(frames, tuple) and len(frames) == 2 and frames[0] == "every":
        k = frames[1]
        check_int("frames=('every', k): k", k)
        idx = list(range(0, n, k))
        return idx if idx[-1] == n - 1 else idx + [n - 1]
    if isinstance(frames, (list, tuple)) and frames and all(isinstance(i, int) and not isinstance(i, bool)
                                                            for i in frames):
        out = []
        for i in frames:
            if not -n <= i < n:
                raise ValueError(f"`frames` index {i} is out of range for {n} latent frames")
            out.append(i % n)
        return out
    raise ValueError(f"`frames` must be one of {_NAMED_SELECTIONS}, ('every', k) or a list of ints, got {frames!r}")


def vae_fingerprint(vae) -> str:
    """Hex digest of a VAE's class, config and exact weights (float32 bytes): what a trained light decoder was
    distilled from. A different checkpoint, or the same one loaded in another dtype, gives another fingerprint."""
    h = hashlib.sha256(type(vae).__name__.encode())
    cfg = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in vae.named_parameters():
            h.update(f"{name}:{tuple(p.shape)}".encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two same-shape tensors with values in [0, 1]."""
    mse = float(torch.mean((x.to(torch.float32) - y.to(torch.float32)) ** 2))
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(1.0 / mse)).item()


def user_cache_dir() -> str:
    """This package's folder in the user cache directory: $VLMTEACH_FAST_CACHE, else $XDG_CACHE_HOME/vlmteach_fast,
    else ~/.cache/vlmteach_fast. Every cache the package writes lives under it."""
    if os.environ.get("VLMTEACH_FAST_CACHE"):
        return os.environ["VLMTEACH_FAST_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vlmteach_fast")


def register_tiny_decoder(path) -> None:
    """Make a trained tiny decoder file available to ``kind="auto"``: it is used for any VAE whose
    :func:`vae_fingerprint` equals the file's ``vae_fingerprint`` header (written by the training script).
    The file is read only when a LightDecoder resolves ``auto``; registering twice is harmless."""
    path = os.fspath(path)
    if path not in _REGISTRY:
        _REGISTRY.append(path)


def registered_tiny_decoders() -> list[str]:
    return list(_REGISTRY)


def _header(path: str) -> dict:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


@dataclass
class LightDecoderConfig:
    kind: str = field(default="auto", metadata={"help": f"one of {_KINDS}"})
    frames: object = field(
        default="pixels",
        metadata={"help": "frame selection (see select_latent_frames); 'pixels' = every pixel frame, what a judge "
                          "scores; 'all' = one frame per latent frame"},
    )
    path: str | None = field(
        default=None,
        metadata={"help": "kind='tiny': a TAEHV-style .safetensors file (.pth/.pt read with weights_only=True) or a "
                          "diffusers AutoencoderTiny directory"},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "where fitted linear maps are cached; None = the user cache directory "
                          "($VLMTEACH_FAST_CACHE, else $XDG_CACHE_HOME/vlmteach_fast, else ~/.cache/vlmteach_fast)"},
    )
    fit_samples: int = field(default=4, metadata={"help": "random latent videos decoded for the least-squares fit"})
    fit_latent_frames: int = field(default=3, metadata={"help": "latent frames per fitting video"})
    fit_latent_size: int = field(default=16, metadata={"help": "latent height = width of fitting videos"})
    fit_seed: int = field(default=0, metadata={"help": "seed of the fitting latents"})
    tiny_path: str | None = field(default=None, metadata={"help": "old name of `path` (still accepted)"})
    tiny_latent_space: str = field(
        default="vae", metadata={"help": "kind='tiny': 'vae' (un-normalised VAE latents, TAEHV's convention) or "
                                         "'normalized' (as sampled)"}
    )

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}, got {self.kind!r}")
        select_latent_frames(4, self.frames)  # validates the selection's form
        for name in ("fit_samples", "fit_latent_frames", "fit_latent_size"):
            check_int(name, getattr(self, name))
        if self.tiny_latent_space not in ("vae", "normalized"):
            raise ValueError(f"`tiny_latent_space` must be 'vae' or 'normalized', got {self.tiny_latent_space!r}")
        if self.tiny_path is not None:
            if self.path is not None and os.fspath(self.path) != os.fspath(self.tiny_path):
                raise ValueError(f"`tiny_path` is the old name of `path`; give one, got path={self.path!r} and "
                                 f"tiny_path={self.tiny_path!r}")
            warnings.warn("LightDecoderConfig(tiny_path=...) is renamed `path`", DeprecationWarning, stacklevel=3)
            self.path, self.tiny_path = self.tiny_path, None
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)):
                raise TypeError(f"`path` must be a str or os.PathLike, got {type(self.path).__name__}")
            self.path = os.fspath(self.path)
            if self.kind not in ("tiny", "auto"):
                raise ValueError(f"`path` is for kind='tiny' (a tiny decoder file), got kind={self.kind!r} with "
                                 f"path={self.path!r}")
            if self.kind == "auto":
                self.kind = "tiny"  # a path says which decoder to use


class LightDecoder:
    """Latents (B, C, F_lat, h, w) -> frames (B, F_sel, 3, H, W) float32 in [0, 1], differentiable in the latents.

    Args:
        reasoner: a :class:`~vlmteach_fast.reasoner.Reasoner` (its family gives the VAE and frame mapping).
        config: :class:`LightDecoderConfig`.
        tiny_module: for ``kind="tiny"``, a module mapping (B, C, F_sel, h, w) -> (B, F_sel, 3, H, W) in [0, 1],
            or one with ``decode_video`` (TAEHV's interface: (N, T, C, h, w) -> (N, T', 3, H, W) in [0, 1], with
            T' = T or the VAE's temporal expansion); overrides ``config.path``.

    Attributes:
        kind: the decoder actually used ("linear", "tiny" or "full"; ``auto`` resolved).
        source: where a tiny decoder came from (its path, "module" or None).

    Raises (at construction, so before any optimization): FileNotFoundError naming a missing ``path``; ValueError
    naming both sides when a tiny decoder's latent channels or scale factors do not fit the VAE's.
    """

    def __init__(self, reasoner, config: LightDecoderConfig | None = None, tiny_module=None):
        self.config = config or LightDecoderConfig()
        self.family = reasoner.family
        self.reasoner = reasoner
        self.weight = None  # (C, 3) for kind='linear'
        self.bias = None  # (3,)
        self.fit_psnr = None  # dB of the fit against the full VAE on the fitting latents (kind='linear')
        self.cache_path = None
        self.loaded_from_cache = None  # True / False for kind='linear'
        self.tiny = None
        self.source = None
        self.fidelity = None  # DecoderFidelity of the first check_fidelity call
        if not isinstance(self.config, LightDecoderConfig):
            raise TypeError(f"`config` must be a LightDecoderConfig, got {type(self.config).__name__}")
        self.kind = self.config.kind
        if tiny_module is not None and self.kind == "auto":
            self.kind = "tiny"
        if self.kind == "auto":
            self.source = self._registered_path()
            self.kind = "tiny" if self.source is not None else "linear"
        if self.kind == "linear":
            self._load_or_fit()
            if self.config.kind == "auto":
                warn_once(("linear", self.cache_path), self._linear_fallback_message())
        elif self.kind == "tiny":
            if tiny_module is not None:
                self.tiny, self.source = tiny_module, "module"
            else:
                self.source = self.source or self.config.path
                self.tiny = self._load_tiny(self.source).to(self.family.device)
            self._check_tiny_fits()

    @classmethod
    def from_linear_map(cls, reasoner, weight: torch.Tensor, bias: torch.Tensor,
                        config: LightDecoderConfig | None = None) -> "LightDecoder":
        """A linear decoder with a given map (``weight`` (C, 3), ``bias`` (3,)): no fit, no cache. For models whose
        weights hold no data (shape-only accounting, ``vlmteach_fast.plan``)."""
        config = dataclasses.replace(config or LightDecoderConfig(), kind="full")
        decoder = cls(reasoner, config)
        decoder.kind, decoder.weight, decoder.bias = "linear", weight, bias
        return decoder

    def _registered_path(self) -> str | None:
        """The first registered tiny decoder distilled from this VAE (same fingerprint), or None."""
        paths = [p for p in _REGISTRY if os.path.isfile(p)]
        if not paths:
            return None
        fp = vae_fingerprint(self.family.pipe.vae)
        for p in paths:
            if _header(p).get("vae_fingerprint") == fp:
                return p
        return None

    def _linear_fallback_message(self) -> str:
        from .fidelity import MIN_FAITHFUL_PSNR_DB

        return (f"LightDecoderConfig(kind='auto'): no trained tiny decoder is registered for this {self.family.name} "
                f"VAE, so the reward sees the linear latent->RGB map (PSNR {self.fit_psnr:.1f} dB against the full "
                "VAE on its N(0, 1) fitting latents). On a trained model's own latents the linear map measured "
                f"9.7 dB (toy model; faithful means >= {MIN_FAITHFUL_PSNR_DB:.0f} dB), and the loop then raised the "
                "reward on it without the final video following. Measure yours with LightDecoder.measure_fidelity"
                "(latents); pass a TAEHV checkpoint with LightDecoderConfig(kind='tiny', path=...) (taew2_1 for Wan "
                "2.1, taew2_2 for Wan 2.2 TI2V-5B) or use kind='full'.")

    # ----- linear map: fit and cache -----

    def _fingerprint(self) -> str:
        """Cache key of a linear fit: the family, the VAE's exact weights and the fitting settings."""
        c = self.config
        fit = f"{self.family.name},{c.fit_samples},{c.fit_latent_frames},{c.fit_latent_size},{c.fit_seed}"
        return hashlib.sha256((vae_fingerprint(self.family.pipe.vae) + fit).encode()).hexdigest()[:20]

    def _cache_dir(self) -> str:
        # Only ever the user's cache: never the model's folder (the user's checkpoint, or this package's shipped
        # weights), which other users and installs share.
        if self.config.cache_dir is not None:
            return self.config.cache_dir
        return os.path.join(user_cache_dir(), "light_decoder")

    def _load_or_fit(self) -> None:
        from safetensors.torch import load_file, save_file

        path = os.path.join(self._cache_dir(), f"linear_{self.family.name}_{self._fingerprint()}.safetensors")
        self.cache_path = path
        if os.path.exists(path):
            t = load_file(path)
            self.weight, self.bias = t["weight"], t["bias"]
            self.fit_psnr = float(t["fit_psnr"])
            self.loaded_from_cache = True
            return
        self.loaded_from_cache = False
        self.weight, self.bias, self.fit_psnr = self._fit()
        tensors = {"weight": self.weight, "bias": self.bias, "fit_psnr": torch.tensor(self.fit_psnr, dtype=torch.float64)}
        with atomic_path(path) as tmp:  # a concurrent reader sees the old file or the whole new one
            save_file(tensors, tmp, metadata={"family": self.family.name, "kind": "linear"})

    def fit_data(self, seed: int):
        """(latents (N, C, F_lat, h, w), targets (N, F_lat, 3, h, w)) from the full VAE on N(0, 1) latents.

        Targets are the full decode's frame for each latent frame, area-averaged to latent resolution (each latent
        pixel stands for an s x s pixel block).
        """
        c, a = self.config, self.family
        gen = torch.Generator().manual_seed(seed)
        shape = (c.fit_samples, a.latent_channels, c.fit_latent_frames, c.fit_latent_size, c.fit_latent_size)
        z = torch.randn(shape, generator=gen).to(a.device)
        with torch.no_grad():
            video = torch.cat([a.decode(z[i: i + 1]) for i in range(z.shape[0])])  # (N, F, 3, H, W)
        idx = a.pixel_frame_index(c.fit_latent_frames)
        target = video[:, idx]  # (N, F_lat, 3, H, W)
        n, f = target.shape[:2]
        target = F.avg_pool2d(target.flatten(0, 1), a.spatial).view(n, f, 3, c.fit_latent_size, c.fit_latent_size)
        return z, target

    def _fit(self):
        z, target = self.fit_data(self.config.fit_seed)
        x = z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1]).to(torch.float64)  # (N*F*h*w, C)
        y = target.permute(0, 1, 3, 4, 2).reshape(-1, 3).to(torch.float64)  # (N*F*h*w, 3)
        x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # bias column
        sol = torch.linalg.lstsq(x1.cpu(), y.cpu()).solution  # (C + 1, 3), float64 for a well-posed solve
        w, b = sol[:-1].to(torch.float32), sol[-1].to(torch.float32)
        pred = (x1.cpu() @ sol).clamp(0, 1)
        return w.contiguous(), b.contiguous(), psnr(pred, y.cpu())

    def linear_rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) -> (B, F, 3, h, w) at latent resolution, before upsampling and clamping."""
        w = self.weight.to(latents.device, latents.dtype)
        b = self.bias.to(latents.device, latents.dtype)
        return (torch.einsum("bcfhw,cd->bfdhw", latents, w) + b.view(1, 1, 3, 1, 1))

    # ----- tiny autoencoder -----

    @staticmethod
    def _load_tiny(path):
        if path is None:
            raise ValueError("kind='tiny' needs `path` (a TAEHV-style .safetensors file or a diffusers AutoencoderTiny "
                             "directory) or `tiny_module`")
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "config.json")):
                raise ValueError(f"`path`={path!r} is a directory without config.json: not a diffusers AutoencoderTiny "
                                 "directory; for a TAEHV checkpoint give the file itself")
            from diffusers import AutoencoderTiny

            model = AutoencoderTiny.from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)
            return _PerFrameTinyDecoder(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"tiny decoder `path`={path!r} does not exist")
        from .taehv import load_tiny_decoder

        model, _ = load_tiny_decoder(path)
        return model.requires_grad_(False)

    def _check_tiny_fits(self) -> None:
        """A TAEHV-style decoder must take this VAE's latent channels and expand them by its scale factors."""
        cfg = getattr(self.tiny, "config", None)
        if not hasattr(cfg, "temporal_factor"):
            return  # a user module or an AutoencoderTiny: checked by shape at the first decode
        a = self.family
        want = (a.latent_channels, a.spatial, getattr(a, "temporal", cfg.temporal_factor))
        got = (cfg.latent_channels, cfg.spatial_factor, cfg.temporal_factor)
        if got != want:
            raise ValueError(
                f"tiny decoder {self.source!r} does not fit this {a.name} VAE: the decoder takes {got[0]} latent "
                f"channels and upsamples {got[1]}x in space and {got[2]}x in time; the VAE has {want[0]} latent "
                f"channels, {want[1]}x spatial and {want[2]}x temporal compression (taew2_1 fits the Wan 2.1 VAE, "
                "taew2_2 the Wan 2.2 TI2V-5B VAE)"
            )

    # ----- fidelity -----

    def check_fidelity(self, latents: torch.Tensor) -> DecoderFidelity | None:
        """Measure once (the first call; later calls return the same record) how faithful this decoder is, on
        latents from the model itself (e.g. ``optimize``'s first prediction): PSNR against the full decode, one
        full decode without gradient. Below ``MIN_FAITHFUL_PSNR_DB`` a warning names the numbers and what to do,
        once per decoder. None for ``kind="full"`` (exact by definition).

        Args:
            latents: (B, C, F_lat, h, w) normalized latents.
        """
        if self.kind == "full":
            return None
        if self.fidelity is None:
            self.fidelity = self.measure_fidelity(latents.detach())
            if not self.fidelity.faithful:  # measured once per decoder, so warned once per decoder
                warnings.warn("optimize: " + self.fidelity.message(), UserWarning, stacklevel=3)
        return self.fidelity

    def measure_fidelity(self, latents: torch.Tensor, teacher=None, queries=None, frames=None) -> DecoderFidelity:
        """PSNR against the full decode and, with a teacher, agreement of its reward between the two decodes.

        Args:
            latents: (N, C, F_lat, h, w) normalized latents from the model itself (e.g. ``Reasoner.predict`` or
                ``sample(decode=False)`` outputs of a few seeds / instances), N >= 1; N >= 2 for the reward
                agreement (3-8 candidates give a usable rank correlation).
            teacher: anything with ``reward(frames (B, F, 3, H, W), queries) -> RewardOutput``; None skips the
                reward agreement.
            queries: the teacher's queries (required with ``teacher``).
            frames: frame selection (default ``config.frames``): both decodes are compared on these frames
                (``"pixels"``: every frame of the video, as the teacher and the judge see it).

        Returns:
            :class:`~vlmteach_fast.reasoner.fidelity.DecoderFidelity`. Costs N light and N full decodes (+ 2N reward
            calls with a teacher), without gradient.
        """
        if not torch.is_tensor(latents) or latents.dim() != 5 or latents.shape[0] < 1:
            got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"`latents` must have shape (N, {self.family.latent_channels}, F_lat, h, w), got {got}")
        if teacher is not None and queries is None:
            raise ValueError("`queries` is required when `teacher` is given")
        selection = self.config.frames if frames is None else frames
        every_pixel = isinstance(selection, str) and selection == "pixels"
        idx = select_latent_frames(latents.shape[2], selection)
        pix = self.family.pixel_frame_index(latents.shape[2])
        light, full = [], []
        with torch.no_grad():
            for i in range(latents.shape[0]):
                z = latents[i: i + 1]
                light.append(self(z, frames=selection))
                video = self.reasoner.decode(z)  # (1, F_pix, 3, H, W)
                full.append(video if every_pixel else video[:, [pix[j] for j in idx]])
            per = [psnr(a, b) for a, b in zip(light, full)]
            out = DecoderFidelity(kind=self.kind, psnr_db=psnr(torch.cat(light), torch.cat(full)),
                                  psnr_db_per_candidate=per, n_candidates=len(per))
            if teacher is not None:
                out.light_rewards = [float(teacher.reward(x, queries).reward.mean()) for x in light]
                out.full_rewards = [float(teacher.reward(x, queries).reward.mean()) for x in full]
                if len(per) >= 2:
                    out.reward_spearman = spearman(torch.tensor(out.light_rewards), torch.tensor(out.full_rewards))
        return out

    # ----- decoding -----

    def __call__(self, latents: torch.Tensor, frames=None) -> torch.Tensor:
        """Decode the selected latent frames.

        Args:
            latents: (B, C, F_lat, h, w) normalized latents as returned by ``Reasoner.predict``; any float dtype.
            frames: selection (see :func:`select_latent_frames`); None = ``config.frames``.

        Returns:
            (B, F_sel, 3, H, W) float32 in [0, 1] with H, W the frame size (h, w times the VAE's spatial factor).
            With ``frames="pixels"`` F_sel is the video's pixel frame count: the full VAE and temporal tiny decoders
            emit every frame; per-frame decoders (linear, 2-D tiny) hold each latent frame's image over the pixel
            frames it stands for, so frame indices mean the same as in the final video.
        """
        a = self.family
        if not torch.is_tensor(latents) or latents.dim() != 5 or latents.shape[1] != a.latent_channels:
            shape = tuple(getattr(latents, "shape", ()))
            raise ValueError(f"`latents` must have shape (B, {a.latent_channels}, F_lat, h, w), got {shape}")
        selection = self.config.frames if frames is None else frames
        if isinstance(selection, str) and selection == "pixels":
            return self._decode_pixels(latents)
        idx = select_latent_frames(latents.shape[2], selection)
        kind = self.kind
        if kind == "full":
            video = self.reasoner.decode(latents)  # (B, F, 3, H, W)
            return video[:, [a.pixel_frame_index(latents.shape[2])[i] for i in idx]]
        sel = latents[:, :, idx].to(torch.float32)
        if kind == "tiny":
            if hasattr(self.tiny, "decode_video"):
                return self._decode_video_tiny(latents, idx)
            z = a.to_vae_space(sel) if self.config.tiny_latent_space == "vae" else sel
            return self.tiny(z).to(torch.float32).clamp(0, 1)
        rgb = self.linear_rgb(sel)  # (B, F_sel, 3, h, w)
        b, f = rgb.shape[:2]
        size = (latents.shape[3] * a.spatial, latents.shape[4] * a.spatial)
        up = F.interpolate(rgb.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        return up.view(b, f, 3, *size).clamp(0, 1)


    def _decode_pixels(self, latents):
        """Every pixel frame (see ``__call__``): (B, F_pix, 3, H, W)."""
        a = self.family
        f_lat = latents.shape[2]
        pix = a.pixel_frame_index(f_lat)  # pixel frame each latent frame stands for (increasing)
        if self.kind == "full":
            return self.reasoner.decode(latents)
        if self.kind == "tiny" and hasattr(self.tiny, "decode_video"):
            return self._decode_video_tiny(latents, list(range(f_lat)), every_pixel=True)
        per_latent = self(latents, frames="all")  # (B, F_lat, 3, H, W)
        # pixel frame p shows latent frame i, the first whose pixel frame is at or after p
        owner = [next(i for i, q in enumerate(pix) if q >= p) for p in range(pix[-1] + 1)]
        return per_latent[:, owner]

    def _decode_video_tiny(self, latents, idx, every_pixel: bool = False):
        a = self.family
        z = latents.to(torch.float32)
        z = a.to_vae_space(z) if self.config.tiny_latent_space == "vae" else z
        video = self.tiny.decode_video(z.transpose(1, 2))  # (B, T', 3, H, W) in [0, 1]
        f_lat, t_out = latents.shape[2], video.shape[1]
        if every_pixel and t_out > f_lat:
            return video.to(torch.float32).clamp(0, 1)
        if t_out == f_lat:
            pick = idx
        else:
            pix = a.pixel_frame_index(f_lat)
            if pix[-1] >= t_out:
                raise ValueError(
                    f"`tiny_module.decode_video` returned {t_out} frames for {f_lat} latent frames; expected "
                    f"{f_lat} or at least {pix[-1] + 1} (the VAE's temporal expansion)"
                )
            pick = [pix[i] for i in idx]
        return video[:, pick].to(torch.float32).clamp(0, 1)


class _PerFrameTinyDecoder(torch.nn.Module):
    """A 2-D ``AutoencoderTiny`` applied to each latent frame: (B, C, F, h, w) -> (B, F, 3, H, W) in [0, 1]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z):
        b, c, f, h, w = z.shape
        x = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        img = self.model.decode(x, return_dict=False)[0]  # (B*F, 3, H, W) in [-1, 1]
        return (img / 2 + 0.5).view(b, f, *img.shape[1:])
