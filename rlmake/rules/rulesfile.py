"""Finding and loading Rulesfiles: YAML with line numbers, includes, and validation.

This is the only module that imports yaml. Everything it returns is plain
data (see model.py); templates stay unrendered until expand.py.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import yaml

from rlmake.errors import RulesfileError, UsageError, did_you_mean
from rlmake.locate import display_path
from rlmake.model import Location, RuleSpec, Rulesfile

TOP_KEYS = ("vars", "default", "include", "pools", "rules")
RULE_KEYS = ("deps", "command", "order_only", "outputs", "phony", "always", "env",
             "description", "pool", "depfile", "foreach")

if TYPE_CHECKING:
    from yaml import SafeLoader as _BaseLoader
else:       # the C loader where libyaml is installed: the same results, ten times faster
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A YAML mapping that remembers the line of each key, and the text of scalar
    values as written (`on`, `1.10`), for fields that are strings whatever they look like."""

    line: int | None = 0
    key_lines: dict[str, int]
    raw: dict[str, Any]          # key -> scalar text, or list of item texts (None: not a scalar)


class _Loader(_BaseLoader):
    """Safe YAML loader: keys are kept as written (`on:` stays 'on'), a key
    written twice is an error, and mappings remember their lines."""

    def __init__(self, stream, display_path: str):
        super().__init__(stream)
        self.display_path = display_path


def _construct_mapping(loader: _Loader, node, deep=False):
    own = len(node.value)
    loader.flatten_mapping(node)        # YAML merge keys (<<) come first
    merged = len(node.value) - own
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    result.raw = {}
    for index, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, yaml.ScalarNode):
            raise RulesfileError("a mapping key must be a plain string",
                                 loader.display_path, key_node.start_mark.line + 1)
        key = key_node.value
        line = key_node.start_mark.line + 1
        if key in result.key_lines and index >= merged:
            raise RulesfileError(
                f"key '{key}' written twice in one mapping "
                f"(first on line {result.key_lines[key]})", loader.display_path, line)
        strings = _plain_strings(value_node)
        result[key] = strings if strings is not None \
            else loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
        result.raw[key] = _raw_text(value_node)
    return result


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _plain_strings(node) -> list[str] | None:
    """A list of strings (a rule's deps) built without constructing each item: what
    construct_object gives for it, a hundred thousand calls fewer in a large Rulesfile.
    None for anything else."""
    if not isinstance(node, yaml.SequenceNode) or node.tag != _SEQ_TAG:
        return None
    items = node.value
    for item in items:
        if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG:
            return None
    return [item.value for item in items]


def _raw_text(node):
    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [item.value if isinstance(item, yaml.ScalarNode) else None for item in node.value]
    return None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_override(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line; VALUE is read as a YAML scalar."""
    name, _, value = text.partition("=")
    if not name.isidentifier():
        raise UsageError(f"bad override '{text}': expected NAME=VALUE with NAME a variable name")
    if value == "":
        return name, ""
    try:
        parsed = yaml.load(value, Loader=_BaseLoader)
    except yaml.YAMLError as error:
        raise UsageError(f"bad override '{text}': {error}") from None
    return name, "" if parsed is None else parsed


def load(path: str) -> Rulesfile:
    """Load the Rulesfile at absolute `path` with all its includes."""
    project_dir = os.path.dirname(path)
    state = _LoadState()
    _load_file(path, state, chain=())
    default = state.default
    return Rulesfile(path=display_path(path), project_dir=project_dir, vars=state.vars,
                     default=default, pools=state.pools, rules=tuple(state.rules),
                     files=tuple(state.files), top_rule_count=state.top_rule_count,
                     default_line=state.default_line)


class _LoadState:
    def __init__(self):
        self.vars: dict[str, Any] = {}
        self.pools: dict[str, int] = {}
        self.pool_where: dict[str, Location] = {}
        self.rules: list[RuleSpec] = []
        self.rule_where: dict[str, Location] = {}
        self.files: list[str] = []
        self.default: tuple[str, ...] | None = None
        self.default_line: int | None = None
        self.top_rule_count = 0


def _read_text(path: str, shown: str) -> str:
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except OSError as error:
        raise RulesfileError(f"cannot read: {error.strerror}", shown) from None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise RulesfileError(f"not UTF-8 text: byte 0x{content[error.start]:02x} cannot be "
                             "read; save the file as UTF-8", shown, line) from None


def _read_yaml(path: str, shown: str) -> LineDict:
    text = _read_text(path, shown)
    try:
        loader = _Loader(text, shown)
        try:
            node = loader.get_single_node()
            if _NUL_ESCAPE.search(text):
                _refuse_nul(node, shown)
            data = _construct(loader, node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        raise RulesfileError(f"bad YAML: {error.problem or error}", shown, line) from None
    except yaml.YAMLError as error:
        raise RulesfileError(f"bad YAML: {error}", shown) from None
    if data is None:
        data = _empty_mapping(1)
    if not isinstance(data, LineDict):      # every mapping the loader makes is one
        raise RulesfileError("the top level must be a mapping of keys "
                             f"({', '.join(TOP_KEYS)})", shown, 1)
    return data


# The only ways YAML text can hold a NUL character (PyYAML refuses a raw one): searched
# first, so that only a Rulesfile that may hold one has its nodes walked.
_NUL_ESCAPE = re.compile(r"\\(0|x00|u0000|U00000000)")


def _refuse_nul(document, shown: str) -> None:
    """A NUL character can be in no path, command or name: refused where it is first
    written. Each node is looked at once: aliases share theirs, and may nest or recur."""
    seen: set[int] = set()
    stack = [document] if document is not None else []
    lines = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if "\0" in node.value:
                lines.append(node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
    if lines:
        line = min(lines)
        rule = _rule_at_line(document, line)
        raise RulesfileError("a string holds a NUL character (\\0), which no path, command "
                             "or name can hold", shown, line,
                             None if rule is None else rule.replace("\0", "\\0"))


def _construct(loader: _Loader, node):
    if node is None:
        return None
    try:
        return loader.construct_document(node)
    except RulesfileError as error:
        if error.rule is None and error.line:
            error.rule = _rule_at_line(node, error.line)
        raise


def _rule_at_line(document, line: int) -> str | None:
    """The rule whose text spans `line` (1-based), for errors found while parsing YAML."""
    if not isinstance(document, yaml.MappingNode):
        return None
    for key, value in document.value:
        if key.value == "rules" and isinstance(value, yaml.MappingNode):
            for rule_key, body in value.value:
                if rule_key.start_mark.line < line <= body.end_mark.line + 1:
                    return rule_key.value
    return None


def _load_file(path: str, state: _LoadState, chain: tuple[str, ...]) -> None:
    shown = display_path(path)
    data = _read_yaml(path, shown)
    state.files.append(path)
    is_top = not chain
    for key in data:
        if key not in TOP_KEYS:
            raise RulesfileError(f"unknown top-level key '{key}'{did_you_mean(key, TOP_KEYS)}",
                                 shown, data.key_lines[key])
    where = lambda key: Location(shown, data.key_lines.get(key))  # noqa: E731
    if is_top and "default" in data:
        state.default = _string_list(data["default"], "default", where("default"))
        state.default_line = data.key_lines.get("default")
    if "vars" in data:
        _merge_vars(state, data["vars"], where("vars"))
    if "pools" in data:
        _merge_pools(state, data["pools"], where("pools"))
    rules = data.get("rules")
    if rules is not None:
        if not isinstance(rules, LineDict):
            raise RulesfileError("'rules' must be a mapping from targets to rules",
                                 shown, data.key_lines["rules"])
        for key, body in rules.items():
            _add_rule(state, parse_rule(key, body, Location(shown, rules.key_lines[key])))
    if is_top:
        state.top_rule_count = len(state.rules)
    for include in _string_list(data.get("include", []), "include", where("include")):
        included = os.path.normpath(os.path.join(os.path.dirname(path), include))
        if not os.path.isfile(included):
            raise RulesfileError(f"included file '{include}' not found", shown,
                                 data.key_lines["include"])
        if included in (*chain, path):
            cycle = " -> ".join(display_path(p) for p in (*chain, path, included))
            raise RulesfileError(f"include cycle: {cycle}", shown, data.key_lines["include"])
        _load_file(included, state, (*chain, path))
    if is_top:
        _check_pools_exist(state)


def _merge_vars(state: _LoadState, values: Any, where: Location) -> None:
    if not isinstance(values, LineDict):
        raise RulesfileError("'vars' must be a mapping of names to values", where.path, where.line)
    for name, value in values.items():
        if not name.isidentifier():
            raise RulesfileError(f"var '{name}' is not a valid name (letters, digits, _)",
                                 where.path, values.key_lines[name])
        state.vars.setdefault(name, value)      # the including file's vars win


def _merge_pools(state: _LoadState, pools: Any, where: Location) -> None:
    if not isinstance(pools, LineDict):
        raise RulesfileError("'pools' must be a mapping of names to sizes", where.path, where.line)
    for name, size in pools.items():
        here = Location(where.path, pools.key_lines[name])
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise RulesfileError(f"pool '{name}' must have a positive integer size, not {size!r}",
                                 here.path, here.line)
        if name in state.pools and state.pools[name] != size:
            raise RulesfileError(f"pool '{name}' has size {size} here and "
                                 f"{state.pools[name]} at {state.pool_where[name]}",
                                 here.path, here.line)
        state.pools[name] = size
        state.pool_where[name] = here


def _add_rule(state: _LoadState, rule: RuleSpec) -> None:
    if rule.key in state.rule_where:
        raise RulesfileError(f"target defined twice: here and at {state.rule_where[rule.key]}",
                             rule.where.path, rule.where.line, rule.key)
    state.rule_where[rule.key] = rule.where
    state.rules.append(rule)


def _check_pools_exist(state: _LoadState) -> None:
    for rule in state.rules:
        if rule.pool is not None and rule.pool not in state.pools:
            known = f"; pools are: {', '.join(state.pools)}" if state.pools else "; no pools are defined"
            raise RulesfileError(
                f"unknown pool '{rule.pool}'{did_you_mean(rule.pool, state.pools)}{known}",
                rule.where.path, rule.line_of("pool"), rule.key)


def parse_rule(key: str, body: Any, where: Location) -> RuleSpec:
    """Validate one rule's mapping and turn it into a RuleSpec."""
    fail = lambda message, field=None: RulesfileError(  # noqa: E731
        message, where.path, body.key_lines.get(field, where.line) if field else where.line, key)
    if body is None:
        body = _empty_mapping(where.line)
    if not isinstance(body, LineDict):
        raise fail("a rule must be a mapping of keys (deps, command, ...)")
    for field in body:
        if field not in RULE_KEYS:
            raise fail(f"unknown key '{field}'{did_you_mean(field, RULE_KEYS)}", field)
    if key.count("%") > 1:
        raise fail("a pattern rule may contain only one '%'")
    for flag in ("phony", "always"):
        if flag in body and not isinstance(body[flag], bool):
            raise fail(f"'{flag}' must be true or false", flag)
    if body.get("phony") and body.get("outputs"):
        raise fail("a phony rule cannot have outputs", "outputs")
    strings = lambda field: _string_list(  # noqa: E731
        body.get(field, []), field, Location(where.path, body.key_lines.get(field)), key,
        body.raw.get(field))
    commands = tuple(c.rstrip("\n") for c in strings("command"))
    outputs = strings("outputs")
    if outputs and not commands:
        # an aggregate writes nothing: it cannot stand for files that no command makes
        raise fail("a rule without a command cannot have outputs (nothing would write them)",
                   "outputs")
    return RuleSpec(
        key=key, where=where,
        deps=strings("deps"),
        order_only=strings("order_only"),
        commands=commands,
        outputs=outputs,
        phony=bool(body.get("phony", False)),
        always=bool(body.get("always", False)),
        env=_env(body, fail),
        description=_optional_string(body, "description", fail),
        pool=_optional_string(body, "pool", fail),
        depfile=_optional_string(body, "depfile", fail),
        foreach=_foreach(body, fail),
        key_lines=dict(body.key_lines),
    )


def _empty_mapping(line: int | None) -> LineDict:
    mapping = LineDict()
    mapping.line, mapping.key_lines, mapping.raw = line, {}, {}
    return mapping


def _string_list(value: Any, field: str, where: Location, rule: str | None = None,
                 raw: Any = None) -> tuple[str, ...]:
    """A list of scalars, or one scalar, as strings: as written, when `raw` has the text."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    texts = raw if isinstance(raw, list) else [raw] * len(items)
    if len(texts) != len(items):
        texts = [None] * len(items)
    for item in items:
        if isinstance(item, (dict, list)) or item is None:
            raise RulesfileError(f"'{field}' must be a list of strings, found {_describe(item)}",
                                 where.path, where.line, rule)
    return tuple(item if isinstance(item, str) else (text if text is not None else _scalar_text(item))
                 for item, text in zip(items, texts))


def _optional_string(body: LineDict, field: str, fail) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise fail(f"'{field}' must be a string, found {_describe(value)}", field)
    return value if isinstance(value, str) else body.raw.get(field) or _scalar_text(value)


def _env(body: LineDict, fail) -> tuple[tuple[str, str], ...]:
    env = body.get("env")
    if env is None:
        return ()
    if not isinstance(env, LineDict):
        raise fail("'env' must be a mapping of variable names to values", "env")
    for name, value in env.items():
        if isinstance(value, (dict, list)) or value is None:
            raise fail(f"env '{name}' must be a string, found {_describe(value)}", "env")
    return tuple((name, value if isinstance(value, str) else env.raw.get(name) or _scalar_text(value))
                 for name, value in env.items())


def _foreach(body: LineDict, fail) -> tuple[tuple[str, Any], ...]:
    foreach = body.get("foreach")
    if foreach is None:
        return ()
    if not isinstance(foreach, dict) or not foreach:
        raise fail("'foreach' must be a mapping of names to lists", "foreach")
    for name, values in foreach.items():
        if not name.isidentifier():
            raise fail(f"foreach name '{name}' is not a valid variable name", "foreach")
        if not isinstance(values, (list, str)):
            raise fail(f"foreach '{name}' must be a list or a template giving a list, "
                       f"found {_describe(values)}", "foreach")
    return tuple(foreach.items())


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
