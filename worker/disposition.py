"""What becomes of a queue message once a handler is done with it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    DELETE = "delete"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Disposition:
    action: Action
    reason: str = ""
    # RETRY: not sooner than this many seconds (another worker's lease runs out then).
    not_before: float = 0.0


DELETE = Disposition(Action.DELETE)
