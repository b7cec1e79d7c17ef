"""One closeness check for kernels: tolerances come from the reference's own low-precision error.

``assert_close_verbose(actual, ref_lowp, ref_exact)`` passes when
    max|actual - ref_exact| <= factor * max|ref_lowp - ref_exact| + floor * max|ref_exact|
where ref_exact is the reference in float64 and ref_lowp the reference run in the test dtype. ``floor`` (default
1e-6 relative) only matters when the reference happens to be exact. On failure it reports where and by how much.
"""

import torch


def assert_close_verbose(actual: torch.Tensor, ref_lowp: torch.Tensor, ref_exact: torch.Tensor, name: str = "output",
                         factor: float = 2.0, floor: float = 1e-6) -> None:
    if actual.shape != ref_exact.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != reference {tuple(ref_exact.shape)}")
    exact = ref_exact.double()
    err = (actual.double() - exact).abs()
    ref_err = (ref_lowp.double() - exact).abs().max().item()
    scale = exact.abs().max().item()
    tol = factor * ref_err + floor * scale
    worst = err.max().item()
    if not torch.isfinite(actual).all():
        bad = (~torch.isfinite(actual)).nonzero()[0].tolist()
        raise AssertionError(f"{name}: non-finite value at index {bad}")
    if worst > tol:
        idx = tuple(torch.unravel_index(err.argmax(), err.shape))
        idx = tuple(int(i) for i in idx)
        raise AssertionError(
            f"{name}: max abs error {worst:.3e} at index {idx} (got {actual[idx].item():.6g}, exact "
            f"{exact[idx].item():.6g}) exceeds {tol:.3e} = {factor} x reference low-precision error {ref_err:.3e} "
            f"+ {floor:g} x max|ref| {scale:.3e}; {int((err > tol).sum())} of {err.numel()} elements out of tolerance"
        )
