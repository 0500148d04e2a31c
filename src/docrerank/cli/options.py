"""Options that several commands share, declared once: where the work runs (this machine or a Ray cluster)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

__all__ = ["AddressOption", "ExecutorKind", "ExecutorOption"]


class ExecutorKind(str, Enum):
    LOCAL = "local"
    RAY = "ray"


ExecutorOption = Annotated[
    ExecutorKind, typer.Option(help="where the work runs: this machine, or a Ray cluster (--address)")
]
AddressOption = Annotated[
    str | None, typer.Option(help="the Ray cluster (ray start --head prints it); default: start a local one")
]
