"""The progress bar of the commands that count items: description, bar, done/total, elapsed (on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["StageBars", "counting_bar", "progress_bar"]


def progress_bar(disable: bool = False) -> Progress:
    """A bar per task; each task's description is its label."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), disable=disable)


@contextmanager
def counting_bar(label: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """One bar, and the ``(done, total)`` callback that a library function reports its progress to."""
    with progress_bar(disable) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


class StageBars:
    """A bar per pipeline stage, drawn from an executor's progress callback (``bars(stage, done, total)``);
    used as a context manager around the run."""

    def __init__(self, disable: bool = False):
        self.progress = progress_bar(disable)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> StageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(f"{stage:<20}", total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)
