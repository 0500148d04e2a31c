"""Prompt templates: Jinja2 files shipped with the package, or the user's own files, by name or path.

A template renders one chat. Its text is the user turn; a template may also define
``{% block system %}...{% endblock %}`` (the system turn) and ``{% block user %}...{% endblock %}`` (then
only that block is the user turn). A user's file needs neither block: plain text is a user turn.

Jinja's ``trim_blocks`` and ``lstrip_blocks`` are on, so a line holding only a tag (``{% if %}``,
``{% include %}``) leaves no line of its own in the output. Variables set outside the blocks are not seen
inside them (blocks are rendered one by one); set them inside.

Shipped templates may include the package's partials (``_page.j2``, names starting with ``_``), and so may a
user's file; a file next to the user's template with the same name wins. Undefined variables are errors
(``StrictUndefined``): a template that uses a variable its stage does not give fails at its first render,
naming the variable, instead of silently rendering an empty string.

``PromptTemplate.fingerprint`` is the sha256 of the template text and of every partial it includes, for
the run's stage fingerprints: editing a prompt invalidates what was generated with it.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from docrerank.errors import DocrerankError

__all__ = ["PromptError", "PromptTemplate", "load_prompt", "prompt_names"]

SUFFIX = ".j2"
_PACKAGE_TEMPLATES = resources.files("docrerank.prompts") / "templates"


class PromptError(DocrerankError):
    """A prompt template cannot be found, parsed or rendered."""


def _read_shipped(name: str) -> str | None:
    resource = _PACKAGE_TEMPLATES / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def prompt_names() -> list[str]:
    """The names of the shipped prompt templates (partials, whose names start with ``_``, left out)."""
    return sorted(
        entry.name[: -len(SUFFIX)]
        for entry in _PACKAGE_TEMPLATES.iterdir()
        if entry.name.endswith(SUFFIX) and not entry.name.startswith("_")
    )


class _Loader(jinja2.BaseLoader):
    """Includes resolve in the user's template folder first (when there is one), then in the package."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    def get_source(self, environment: jinja2.Environment, template: str):
        if self.folder is not None:
            path = self.folder / template
            if path.is_file():
                mtime = path.stat().st_mtime_ns
                return path.read_text(encoding="utf-8"), str(path), lambda: path.stat().st_mtime_ns == mtime
        text = _read_shipped(template)
        if text is None:
            raise jinja2.TemplateNotFound(template)
        return text, f"docrerank/prompts/templates/{template}", lambda: True


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # prompts are plain text, not HTML
    )


class PromptTemplate:
    """One prompt template, parsed. Build it with ``load_prompt``.

    Attributes:
        name: the shipped name, or the file's stem for a template loaded from a path.
        source: where the text came from (``docrerank:<name>`` or the file path).
        text: the template text.
    """

    def __init__(self, name: str, text: str, source: str, folder: Path | None = None):
        self.name = name
        self.text = text
        self.source = source
        self._env = _environment(_Loader(folder))
        try:
            self._ast = self._env.parse(text)
            self._includes = self._collect_includes(self._ast)
            # Render from the partials as read now, so that what renders is what the fingerprint covers.
            self._env = _environment(jinja2.ChoiceLoader([jinja2.DictLoader(self._includes), _Loader(folder)]))
            self._template = self._env.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"prompt template {source}: line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise PromptError(
                f"prompt template {source} includes {exc.name!r}, which is neither next to it nor shipped "
                f"(shipped partials: {', '.join(self._shipped_partials()) or 'none'})"
            ) from None

        if "system" in self._template.blocks and "user" not in self._template.blocks:
            raise PromptError(
                f"prompt template {source} has a system block but no user block; wrap the user turn in "
                "{% block user %}...{% endblock %}"
            )

    @staticmethod
    def _shipped_partials() -> list[str]:
        return sorted(e.name for e in _PACKAGE_TEMPLATES.iterdir() if e.name.startswith("_"))

    def _collect_includes(self, ast) -> dict[str, str]:
        """Every partial the template includes, recursively: name -> text."""
        found: dict[str, str] = {}
        todo = [name for name in meta.find_referenced_templates(ast) if name is not None]
        while todo:
            name = todo.pop()
            if name in found:
                continue
            text, _, _ = self._env.loader.get_source(self._env, name)  # TemplateNotFound: reported by the caller
            found[name] = text
            todo.extend(n for n in meta.find_referenced_templates(self._env.parse(text)) if n is not None)
        return found

    def __repr__(self) -> str:
        return f"PromptTemplate({self.name!r}, source={self.source!r}, fingerprint={self.fingerprint[:12]!r})"

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the template text and of the partials it includes (by name, in name order)."""
        digest = hashlib.sha256(self.text.encode("utf-8"))
        for name in sorted(self._includes):
            digest.update(b"\x00" + name.encode() + b"\x00" + self._includes[name].encode("utf-8"))
        return digest.hexdigest()

    @functools.cached_property
    def variables(self) -> frozenset[str]:
        """The variables the template (and its partials) use."""
        names = set(meta.find_undeclared_variables(self._ast))
        for text in self._includes.values():
            names |= meta.find_undeclared_variables(self._env.parse(text))
        return frozenset(names)

    @property
    def has_system(self) -> bool:
        return "system" in self._template.blocks

    def _render(self, block: str | None, variables: dict[str, Any]) -> str:
        try:
            if block is None:
                text = self._template.render(**variables)
            else:
                context = self._template.new_context(variables)
                text = "".join(self._template.blocks[block](context))
        except jinja2.UndefinedError as exc:
            given = ", ".join(sorted(variables)) or "none"
            raise PromptError(
                f"prompt template {self.source}: {exc.message}. Variables given: {given}; "
                "use only those in the template (or pass the missing one)"
            ) from None
        except jinja2.TemplateError as exc:
            raise PromptError(f"prompt template {self.source}: {exc}") from None
        return text.strip()

    def render(self, **variables: Any) -> str:
        """The user turn: the ``user`` block when the template has one, else the whole template."""
        return self._render("user" if "user" in self._template.blocks else None, variables)

    def render_system(self, **variables: Any) -> str | None:
        """The system turn, or None when the template has no ``system`` block (or it renders empty)."""
        if not self.has_system:
            return None
        return self._render("system", variables) or None


@functools.lru_cache(maxsize=64)
def _load_shipped(name: str) -> PromptTemplate:
    text = _read_shipped(name + SUFFIX)
    assert text is not None  # checked by the caller
    return PromptTemplate(name, text, f"docrerank:{name}")


def load_prompt(name_or_path: str | Path | PromptTemplate) -> PromptTemplate:
    """A shipped template by name (``verify_a``), or a template file by path (``prompts/my_verify.j2``).

    A string that names an existing file, or contains a path separator, or ends in ``.j2`` is a path;
    anything else is a shipped name. A ``PromptTemplate`` is returned as it is.

    Raises:
        PromptError: no such shipped name (the message lists them), no such file, or a syntax error.
    """
    if isinstance(name_or_path, PromptTemplate):
        return name_or_path
    value = str(name_or_path)
    path = Path(value).expanduser()
    is_path = isinstance(name_or_path, Path) or path.is_file() or "/" in value or "\\" in value
    is_path = is_path or value.endswith(SUFFIX)
    if not is_path:
        if _read_shipped(value + SUFFIX) is None or value.startswith("_"):
            raise PromptError(
                f"no shipped prompt template named {value!r}; shipped: {', '.join(prompt_names())}. "
                "To use your own, give the path of a .j2 file"
            )
        return _load_shipped(value)
    if not path.is_file():
        raise PromptError(
            f"prompt template file {value} does not exist; give an existing .j2 file or a shipped name "
            f"({', '.join(prompt_names())})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"prompt template file {value} cannot be read: {exc}") from None
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return PromptTemplate(name, text, str(path.resolve()), folder=path.resolve().parent)
