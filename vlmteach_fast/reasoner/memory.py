"""Peak tensor memory on any device, CPU included, by watching the storages that ops create.

The CPU allocator keeps no statistics, ``tracemalloc`` does not see torch's allocations and RSS moves with glibc's
arena reuse (a K=1 vs K=8 difference of a few MB drowns in it). So :class:`TensorMemoryTracker` is a
``TorchDispatchMode``: every storage an op returns while it is active is counted once (views share a storage) and
uncounted when the storage is freed (a weak reference's callback), giving the live and peak bytes of tensors
created inside the block, in the forward *and* the backward pass (CPU autograd runs on the calling thread, and a
checkpoint's recomputation goes through the dispatcher too). Tensors that existed before (weights) are not counted:
the number is the extra memory a computation needs, which is what checkpointing changes. The same approach as
``torch.distributed._tools.mem_tracker``, without its module attribution, and with no distributed dependency.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["TensorMemoryTracker"]


class TensorMemoryTracker(TorchDispatchMode):
    """``with TensorMemoryTracker() as mem: ...``; then ``mem.peak_bytes`` and ``mem.current_bytes``."""

    def __init__(self, meta: bool | None = False):
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        self._seen: dict[int, weakref.ref] = {}
        self._meta = meta  # True: shape-only (meta) storages instead of real ones (``vlmteach_fast.plan``); None: both

    def _free(self, key: int, nbytes: int, _ref) -> None:
        if self._seen.pop(key, None) is not None:
            self.current_bytes -= nbytes

    def _track(self, t: torch.Tensor) -> None:
        if (self._meta is not None and t.is_meta != self._meta) or getattr(t, "is_sparse", False):
            return
        try:
            st = t.untyped_storage()
        except (NotImplementedError, RuntimeError):  # tensors without a storage (e.g. some subclasses)
            return
        nbytes = st.nbytes()
        key = id(st)
        ref = self._seen.get(key)
        if nbytes == 0 or (ref is not None and ref() is st):
            return
        self._seen[key] = weakref.ref(st, lambda r, k=key, n=nbytes: self._free(k, n, r))
        self.current_bytes += nbytes
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out
