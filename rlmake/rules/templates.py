"""Rendering a rule's templates: the Jinja2 environment, filters, glob() and list splicing.

This is the only module that imports jinja2. A template that fails raises
TemplateProblem, which knows nothing of rules: expand.py adds the location.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Iterable

import jinja2
import jinja2.meta

from rlmake.paths import glob_files, is_text, shown

# A whole-`{{ ... }}` entry: evaluated as an expression so that a list stays a list.
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}\s*$", re.S)
# `{{ name }}` with a plain name and no filter: what most commands are made of.
_PLAIN_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# What makes Jinja do more than print text and plain names.
_JINJA_SYNTAX = ("{{", "{%", "{#")
# Names Jinja reads as literals or operators, whatever the context holds.
_JINJA_WORDS = frozenset(("true", "false", "none", "True", "False", "None", "and", "or",
                          "not", "in", "is", "if", "else", "for", "recursive"))


class TemplateProblem(Exception):
    """A template could not be rendered; the message names the variable or the syntax error."""


def _quote_all(items: Any) -> str:
    if isinstance(items, str):
        items = [items]
    return " ".join(shlex.quote(str(item)) for item in items)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=False, finalize=_yaml_scalar)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    env.filters["quote_all"] = _quote_all
    return env


class _Compiled:
    """One environment and what it compiled, shared by every Templates of the process:
    nothing in them depends on the project (glob() comes with each render's context), and
    compiling costs far more than rendering when a Rulesfile is expanded again."""

    def __init__(self) -> None:
        self.env = _environment()
        self.templates: dict[str, jinja2.Template] = {}
        self.expressions: dict[str, Any] = {}
        self.referenced: dict[str, frozenset[str]] = {}
        self.plain: dict[str, tuple[str, ...] | None] = {}
        self.stems: dict[str, str] = {}


_COMPILED: _Compiled | None = None


def _compiled() -> _Compiled:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = _Compiled()
    return _COMPILED


class Templates:
    """Renders templates for one project; compiled templates are cached by their text."""

    def __init__(self, project_dir: str):
        self.project_dir = project_dir
        self.globs_read: dict[str, tuple[str, ...]] = {}
        compiled = _compiled()
        self._env = compiled.env
        self._templates = compiled.templates
        self._expressions = compiled.expressions
        self._referenced = compiled.referenced
        self._plain = compiled.plain
        self._stems = compiled.stems

    def glob(self, pattern: str) -> list[str]:
        """Sorted project files matching `pattern`; `**` spans directories; dot-names skipped."""
        if pattern not in self.globs_read:
            found = glob_files(self.project_dir, pattern)
            for path in found:
                if not is_text(path):
                    raise TemplateProblem(
                        f"glob('{pattern}') found '{shown(path)}', whose name is not UTF-8; "
                        "rlmake keeps paths as text: rename the file or narrow the pattern")
            self.globs_read[pattern] = found
        return list(self.globs_read[pattern])

    def render(self, source: str, context: dict[str, Any], written: str | None = None) -> str:
        """One template to one string. `written`: the template as the user wrote it, for
        messages, when `source` was rewritten from it (stem_written_in)."""
        if "{" not in source:
            return source
        if source in self._plain:
            pieces = self._plain[source]
        else:
            pieces = self._plain[source] = _plain_pieces(source)
        shown_as = written or source
        if pieces is not None:
            text = _fill(pieces, context)
            if text is not None:
                return _checked(text, shown_as)
        template = self._templates.get(source)
        try:
            if template is None:
                template = self._templates[source] = self._env.from_string(source)
            return _checked(template.render(self._with_globals(context)), shown_as)
        except TemplateProblem:
            raise
        except Exception as error:  # noqa: BLE001 - any failure in a template is the user's to fix
            raise TemplateProblem(_explain(error, shown_as)) from None

    def stem_written_in(self, source: str) -> str:
        """A pattern rule's template with each `%` of its own text written as `{{ stem }}`:
        not one inside a tag, a comment or a raw block, and not one that a value brings
        in when it is rendered. Found by Jinja's own lexer, so string literals holding
        `}}` or `%}` are read as Jinja reads them. A template it cannot read is returned
        as it is, for rendering to report in the user's own text."""
        if "%" not in source:
            return source
        found = self._stems.get(source)
        if found is None:
            found = self._stems[source] = _stem_written_in(self._env, source)
        return found

    def render_list(self, entries: Iterable[str], context: dict[str, Any],
                    keep_types: bool = False) -> list[Any]:
        """Each entry rendered; an entry that is one `{{ }}` giving a list is spliced in.

        `keep_types`: spliced items stay as they are (foreach values) instead of strings."""
        result: list[Any] = []
        for entry in entries:
            match = _WHOLE_EXPRESSION.match(entry) if "{" in entry else None
            if match is None:
                result.append(self.render(entry, context))
                continue
            value = self._evaluate(match.group("expr"), entry, context)
            if isinstance(value, (list, tuple)):
                result.extend(value if keep_types else (_checked(_text(item), entry)
                                                        for item in value))
            else:
                result.append(self.render(entry, context))
        return result

    def referenced(self, source: str) -> frozenset[str]:
        """The variables a template reads (for explaining why its rendering changed)."""
        if "{" not in source:
            return frozenset()
        names = self._referenced.get(source)
        if names is None:
            try:
                names = frozenset(jinja2.meta.find_undeclared_variables(self._env.parse(source)))
            except jinja2.TemplateSyntaxError:
                names = frozenset()
            self._referenced[source] = names
        return names

    def _evaluate(self, expression: str, source: str, context: dict[str, Any]) -> Any:
        compiled = self._expressions.get(expression)
        try:
            if compiled is None:
                compiled = self._expressions[expression] = self._env.compile_expression(
                    expression, undefined_to_none=False)
            value = compiled(**self._with_globals(context))
            if isinstance(value, jinja2.Undefined):
                str(value)              # raises UndefinedError with the variable's name
            return value
        except TemplateProblem:
            raise
        except Exception as error:  # noqa: BLE001
            raise TemplateProblem(_explain(error, source)) from None

    def _with_globals(self, context: dict[str, Any]) -> dict[str, Any]:
        return {"glob": self.glob, **context}


def _plain_pieces(source: str) -> tuple[str, ...] | None:
    """`source` split into text and names (odd places) when it is text with `{{ name }}`
    and nothing else Jinja would act on; None otherwise. Rendering such a template is
    joining strings: a Jinja render per job was most of the cost of a large expansion."""
    if source.endswith("\n"):
        return None                     # Jinja drops one trailing newline: leave it to Jinja
    pieces = tuple(_PLAIN_NAME.split(source))
    texts, names = pieces[::2], pieces[1::2]
    if any(marker in text for text in texts for marker in _JINJA_SYNTAX) \
            or any(text.endswith("{") for text in texts[:-1]) \
            or any(name in _JINJA_WORDS for name in names):
        return None                     # `{{{ a }}` and the like: Jinja's to parse
    return pieces


def _fill(pieces: tuple[str, ...], context: dict[str, Any]) -> str | None:
    """The plain template rendered as Jinja would; None when a name is not in `context`
    (a Jinja global, or undefined: Jinja gives the answer or the error message)."""
    parts = list(pieces)
    for place in range(1, len(parts), 2):
        try:
            value = context[parts[place]]
        except KeyError:
            return None
        if isinstance(value, bool):
            parts[place] = "true" if value else "false"
        elif isinstance(value, str):
            parts[place] = value
        elif isinstance(value, (int, float)) or value is None:
            parts[place] = str(value)
        else:
            return None                 # lists, dicts, Markup: Jinja's own str() rules
    return "".join(parts)


def _yaml_scalar(value: Any) -> Any:
    """`{{ flag }}` of a YAML `true` prints `true` as it was written, not Python's `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _stem_written_in(env: jinja2.Environment, source: str) -> str:
    try:
        tokens = list(env.lex(source))
    except jinja2.TemplateSyntaxError:
        return source
    pieces, raw = [], False
    # Joined, the lexer's tokens give the source back, less the whitespace that `-`
    # inside a raw block's tags strips anyway.
    for _, kind, value in tokens:
        if kind == "raw_begin" or kind == "raw_end":
            raw = kind == "raw_begin"
        elif kind == "data" and not raw:
            value = value.replace("%", "{{ stem }}")
        pieces.append(value)
    return "".join(pieces)


def _checked(text: str, source: str) -> str:
    """`text`, unless it holds a lone surrogate (`"\\udcff"` in a template), which no
    file, JSON record or SQLite row can hold as UTF-8, or a NUL character, which no
    path or command can hold."""
    if "\0" in text:
        raise TemplateProblem(f"template '{source}' gave a NUL character (\\0), which no "
                              "path or command can hold")
    if not text.isascii() and not is_text(text):
        raise TemplateProblem(f"template '{source}' gave '{shown(text)}', which is not "
                              "valid Unicode text")
    return text


def _text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


def _explain(error: Exception, source: str) -> str:
    if isinstance(error, jinja2.UndefinedError):
        match = re.match(r"'([^']+)' is undefined", str(error))
        if match:
            return f"undefined variable '{match.group(1)}' in template '{source}'"
        return f"{error} in template '{source}'"
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"template syntax error in '{source}': {error.message}"
    if isinstance(error, jinja2.TemplateError):
        return f"cannot render template '{source}': {error}"
    return f"cannot render template '{source}': {type(error).__name__}: {error}"
