"""Dependency messages that tell a vlmteach-fast user nothing they can act on, filtered out where the commands start
(``quiet_dependencies``, called by ``vlmteach-fast``'s main). Each entry says why it does not concern the user; any
other message of the same logger still shows."""

from __future__ import annotations

import logging

__all__ = ["IGNORED", "quiet_dependencies"]

# (logger, start of the message, why it does not concern the user)
IGNORED = (
    ("transformers.utils.import_utils", "`CLIPImageProcessor` requires torchvision (not installed)",
     "diffusers' image-to-video pipelines import CLIPImageProcessor when they load; without torchvision transformers "
     "uses its PIL implementation, the one it used before version 5. Nothing here needs torchvision, and the "
     "advice to import another class is for the code importing it, which is diffusers'."),
)


class _Drop(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_dependencies() -> None:
    """Filter the ``IGNORED`` messages out of their loggers (once per process: a second call adds nothing)."""
    for name, start, _ in IGNORED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.start == start for f in logger.filters):
            logger.addFilter(_Drop(start))
