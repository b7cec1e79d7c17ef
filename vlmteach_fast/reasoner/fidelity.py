"""How faithful a light decoder is to the full VAE, measured on latents from the model itself.

Two numbers (docs/light_decoding.md says why both):
- **PSNR** of the light decode against the full decode, on the same frames: is the picture the same?
- **reward agreement**: the Spearman rank correlation of the teacher's reward on light vs full decodes over a few
  candidate latents: does the teacher rank candidates the same way through both? A loop that climbs the reward on the
  light decode only helps the final (full) video when this is high.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["DecoderFidelity", "spearman", "MIN_FAITHFUL_PSNR_DB", "warn_once"]

# Below this PSNR (dB, light vs full decode on the model's own latents, every pixel frame) the light decode is treated
# as a proxy the loop can satisfy alone. 25 dB lies between the toy model's linear map (9.7 dB: the loop games it) and
# its trained tiny decoder (27.7-32.2 dB: the final video follows the loop). Why: docs/light_decoding.md, "Fidelity".
MIN_FAITHFUL_PSNR_DB = 25.0

_WARNED: set = set()


def warn_once(key, message: str) -> bool:
    """Emit ``message`` as a UserWarning the first time ``key`` is seen in this process; True when it was emitted."""
    if key in _WARNED:
        return False
    _WARNED.add(key)
    warnings.warn(message, UserWarning, stacklevel=3)
    return True


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), float64."""
    x = x.to(torch.float64).flatten()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for v in torch.unique(x):
        tie = x == v
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors of equal length >= 2 (NaN when either is constant)."""
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"spearman needs two tensors of equal length >= 2, got {a.numel()} and {b.numel()}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float("nan") if den == 0 else float((ra * rb).sum()) / den


@dataclass
class DecoderFidelity:
    """What :meth:`LightDecoder.measure_fidelity` measured.

    Attributes:
        kind: the light decoder measured ("linear", "tiny", "full").
        psnr_db: PSNR of the light decode against the full decode on the same frames, all candidates together.
        psnr_db_per_candidate: the same per candidate latent.
        reward_spearman: rank correlation of the teacher's reward (light vs full decode) over the candidates; None
            without a teacher.
        light_rewards / full_rewards: the teacher's reward per candidate on each decode (empty without a teacher).
        n_candidates: latents measured. threshold_db: ``MIN_FAITHFUL_PSNR_DB`` at measurement time.
    """

    kind: str
    psnr_db: float
    psnr_db_per_candidate: list[float]
    n_candidates: int
    reward_spearman: float | None = None
    light_rewards: list[float] = field(default_factory=list)
    full_rewards: list[float] = field(default_factory=list)
    threshold_db: float = MIN_FAITHFUL_PSNR_DB

    @property
    def faithful(self) -> bool:
        return self.psnr_db >= self.threshold_db

    def to_dict(self) -> dict:
        d = asdict(self)
        d["faithful"] = self.faithful
        return d

    def message(self) -> str:
        """One line for logs and warnings: the numbers and, when unfaithful, what to do."""
        agree = "" if self.reward_spearman is None else f", teacher-reward rank correlation {self.reward_spearman:+.2f}"
        text = (f"light decoder '{self.kind}': PSNR {self.psnr_db:.1f} dB against the full VAE decode on "
                f"{self.n_candidates} of the model's latents{agree}")
        if self.faithful:
            return text
        return (text + f"; below {self.threshold_db:.0f} dB the loop can raise the reward on the light decode "
                "without the final (full-decode) video following. Use a trained tiny decoder "
                "(LightDecoderConfig(kind='tiny', path=<TAEHV .safetensors>), e.g. taew2_1 for Wan 2.1, taew2_2 for "
                "Wan 2.2 TI2V-5B) or kind='full'")
