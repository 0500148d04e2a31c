"""``docrerank view``: a run's data in the browser, page by page, with corrections that every export applies."""

from docrerank.viewer.items import Filters, Item, RunView

__all__ = ["Filters", "Item", "RunView", "create_app"]


def create_app(*args, **kwargs):
    """The web app (``viewer.app.create_app``), imported when asked: it needs the `serve` extra (FastAPI)."""
    from docrerank.errors import import_optional

    import_optional("fastapi", "viewer")  # a missing extra named, not a bare ImportError
    from docrerank.viewer.app import create_app as build

    return build(*args, **kwargs)
