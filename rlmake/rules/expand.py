"""From loaded rules to jobs: vars, foreach, pattern rules, rendering, and resolution.

`Expander.plan(targets)` walks the requested targets depth first and returns
the jobs they need in dependency order. Every template and graph mistake
(undefined variable, cycle, missing source, two rules for one output) is a
RulesfileError raised here, before anything runs.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from typing import Any, Iterator, NamedTuple

from rlmake.errors import RlmakeError, RulesfileError, UnreadableFile, UsageError, did_you_mean
from rlmake.model import Job, JobList, Plan, PlanIndex, RuleSpec, Rulesfile
from rlmake.paths import STATE_DIR, in_state_dir, normalise
from rlmake.rules.templates import TemplateProblem, Templates

MAX_PATTERN_CHAIN = 16


class Instance(NamedTuple):
    """A rule bound to one target: its foreach names and, for patterns, its stem.

    A NamedTuple: one is made per pattern job, and a frozen dataclass costs several
    times as much to make. Compared by identity where it matters (`is`)."""

    spec: RuleSpec
    target: str
    names: tuple[tuple[str, Any], ...] = ()
    stem: str | None = None

    def output_patterns(self) -> list[str]:
        """A pattern rule's `outputs` entries that are plain `%` patterns, for matching."""
        return [entry for entry in self.spec.outputs if "%" in entry and "{" not in entry]


class Expander:
    def __init__(self, rulesfile: Rulesfile, overrides: dict[str, Any] | None = None,
                 templates: Templates | None = None):
        self.rulesfile = rulesfile
        self.project_dir = rulesfile.project_dir
        self.vars = {**rulesfile.vars, **(overrides or {})}
        self.templates = templates or Templates(self.project_dir)
        self.explicit: dict[str, Instance] = {}      # every explicit target and output
        self.explicit_order: list[Instance] = []
        self.patterns: list[Instance] = []
        self._vars_as_json: dict[str, str] = {}
        self._vars_read_of: dict[int, tuple[tuple[str, str], ...]] = {}    # id(spec) ->
        self._normalised: dict[str, str] = {}
        self._plain_deps: dict[int, bool] = {}  # id(spec) -> its deps hold no template
        # target -> (instance, context, deps) of the pattern instance last found for it, so
        # that making its job does not render its deps a second time
        self._prepared: dict[str, tuple[Instance, dict[str, Any], list[str]]] = {}
        self._match_candidates: list[tuple[tuple[str, str], ...]] = []  # per pattern: the
                                                # (prefix, suffix) of each `%` it matches by
        self.probes: dict[str, str] = {}        # every path whose existence expansion asked about
        self.regular_files: set[str] = set()    # those of them that were regular files
        self._suffixes: tuple[str, ...] = ()    # every pattern's suffixes: a path that ends
                                                # in none of them matches no pattern
        self._full_prefix = os.path.join(self.project_dir, "")
        self._index()

    # --- the index of what rules make -------------------------------------------------

    def _index(self) -> None:
        claimed: dict[str, Instance] = {}
        for spec in self.rulesfile.rules:
            for names in self._foreach_copies(spec):
                # the key sees every var and the copy's foreach names, as every template does
                key = self._render(spec, spec.key, {**self.vars, **dict(names)}, "the target")
                key = self._norm(key) if "%" not in key else key
                instance = Instance(spec, key, names)
                if key.count("%") > 1:
                    raise self._error(spec, "a pattern rule may contain only one '%'", key=key)
                if "%" in key:
                    self._refuse_state_dir(spec, self._norm(key), None, key)
                    self.patterns.append(instance)
                    self._match_candidates.append(tuple(
                        _split_pattern(candidate)
                        for candidate in (key, *instance.output_patterns())))
                    self._suffixes += tuple(suffix for _, suffix in self._match_candidates[-1])
                    continue
                self.explicit_order.append(instance)
                outputs = self._outputs(instance)
                self._check_places(instance, outputs)
                for path in (key, *outputs):
                    if path in claimed:
                        other = claimed[path].spec
                        raise self._error(spec, f"'{path}' is made by two rules: here and "
                                          f"by rule '{other.key}' at {other.where}", key=key)
                    claimed[path] = instance
        self.explicit = claimed

    def _foreach_copies(self, spec: RuleSpec) -> list[tuple[tuple[str, Any], ...]]:
        if not spec.foreach:
            return [()]
        names, lists = [], []
        for name, values in spec.foreach:
            entries = [values] if isinstance(values, str) else values
            try:
                lists.append([value for entry in entries for value in (
                    self.templates.render_list([entry], self.vars, keep_types=True)
                    if isinstance(entry, str) else [entry])])
            except TemplateProblem as problem:
                raise self._error(spec, f"in foreach '{name}': {problem}", "foreach") from None
            names.append(name)
        return [tuple(zip(names, combination)) for combination in itertools.product(*lists)]

    # --- rendering ----------------------------------------------------------------------

    def _context(self, instance: Instance) -> dict[str, Any]:
        context = {**self.vars, **dict(instance.names), "target": instance.target} \
            if instance.names else {**self.vars, "target": instance.target}
        if instance.stem is not None:
            context["stem"] = instance.stem
        return context

    def _deps(self, instance: Instance, context: dict[str, Any]) -> list[str]:
        """Rendered with the rule's vars, names, target and stem; adds `deps` and `dep` to context."""
        spec = instance.spec
        plain = self._plain_deps.get(id(spec))
        if plain is None:       # the specs live as long as the expander: their ids stay theirs
            plain = self._plain_deps[id(spec)] = not any("{" in dep for dep in spec.deps)
        # deps with no template in them render to themselves
        rendered = spec.deps if plain else self._render_list(instance, spec.deps, context,
                                                             "deps")
        stem = instance.stem
        norm = self._norm
        deps = [norm(path.replace("%", stem)) for path in rendered] if stem is not None \
            else [norm(path) for path in rendered]
        for dep in deps:
            if dep.startswith(STATE_DIR) and in_state_dir(dep):
                raise self._error(instance.spec, f"dep '{dep}' is in {STATE_DIR}/, where rlmake "
                                  "keeps its state, which changes on every build; a rule "
                                  "cannot read files there", "deps", instance.target)
        context["deps"] = deps
        if deps:
            context["dep"] = deps[0]
        return deps

    def _outputs(self, instance: Instance, context: dict[str, Any] | None = None) -> list[str]:
        """The further outputs, rendered after the deps; adds `outputs` to context."""
        if context is None:
            context = self._context(instance)
            if instance.spec.outputs:
                self._deps(instance, context)
        rendered = (self._render_list(instance, instance.spec.outputs, context, "outputs")
                    if instance.spec.outputs else [])
        outputs = [self._norm(self._substitute_stem(path, instance)) for path in rendered]
        context["outputs"] = [instance.target, *outputs]
        return outputs

    def _order_only(self, instance: Instance, context: dict[str, Any],
                    deps: list[str]) -> list[str]:
        """Rendered after the deps and outputs, with every template variable; each once,
        and none that is also a dep (as in make, the real dep wins)."""
        rendered = self._render_list(instance, instance.spec.order_only, context, "order_only")
        paths = (self._norm(self._substitute_stem(path, instance)) for path in rendered)
        return [path for path in dict.fromkeys(paths) if path not in deps]

    def make_job(self, instance: Instance) -> Job:
        spec = instance.spec
        prepared = self._prepared.pop(instance.target, None)
        if prepared is not None and prepared[0] is instance:    # as _pattern_for found it
            context, deps = prepared[1], prepared[2]
        else:
            context = self._context(instance)
            deps = self._deps(instance, context)
        target = instance.target
        if spec.outputs:
            outputs = [target, *self._outputs(instance, context)]
        else:                                   # what _outputs would add, without rendering
            context["outputs"] = [target]
            outputs = [target]
        order_only = self._order_only(instance, context, deps) if spec.order_only else ()
        if instance.stem is not None:           # explicit rules were checked by _index
            self._check_places(instance, outputs[1:])
        render = self._render
        commands = tuple([render(spec, command, context, "command", instance)
                          for command in spec.commands])
        env = tuple([(name, render(spec, value, context, f"env '{name}'", instance))
                     for name, value in spec.env]) if spec.env else ()
        depfile = self._depfile(instance, spec.depfile, context) if spec.depfile else None
        writes = not spec.phony and bool(commands)
        # positional, in Job's field order: a hundred thousand keyword calls add up
        return Job(
            target, spec.key, spec.where,
            tuple(outputs) if writes else (),
            tuple(deps), commands, env,
            render(spec, spec.description, context, "description", instance)
            if spec.description else None,
            spec.pool, depfile,
            spec.phony, spec.always, self._vars_read(spec),
            tuple(order_only))

    def _depfile(self, instance: Instance, template: str, context: dict[str, Any]
                 ) -> str | None:
        """The depfile's path, or None if its template renders empty. In a pattern rule a
        `%` written in it is the stem."""
        spec = instance.spec
        source = template if instance.stem is None else self.templates.stem_written_in(template)
        rendered = self._render(spec, source, context, "depfile", instance, written=template)
        if not rendered:
            return None
        path = self._norm(rendered)
        self._refuse_state_dir(spec, path, "depfile", instance.target)
        return path

    def _vars_read(self, spec: RuleSpec) -> tuple[tuple[str, str], ...]:
        """The vars the rule's templates read, with their values: the same for every job
        of the rule (the specs live as long as the expander, so their ids stay theirs)."""
        found = self._vars_read_of.get(id(spec))
        if found is None:
            found = self._vars_read_of[id(spec)] = self._find_vars_read(spec)
        return found

    def _find_vars_read(self, spec: RuleSpec) -> tuple[tuple[str, str], ...]:
        sources = [spec.key, *spec.deps, *spec.commands, *spec.outputs,
                   *(value for _, value in spec.env), spec.description or "", spec.depfile or "",
                   *(values for _, values in spec.foreach if isinstance(values, str))]
        names = set().union(*(self.templates.referenced(source) for source in sources
                              if "{" in source))
        return tuple((name, self._var_json(name)) for name in sorted(names) if name in self.vars)

    def _var_json(self, name: str) -> str:
        if name not in self._vars_as_json:
            self._vars_as_json[name] = json.dumps(self.vars[name], sort_keys=True, default=str)
        return self._vars_as_json[name]

    def _render(self, spec: RuleSpec, text: str, context: dict[str, Any], field: str,
                instance: Instance | None = None, written: str | None = None) -> str:
        try:
            return self.templates.render(text, context, written)
        except TemplateProblem as problem:
            raise self._error(spec, f"in {field}: {problem}", _field_key(field),
                              instance.target if instance else None) from None

    def _render_list(self, instance: Instance, entries, context, field: str) -> list[str]:
        try:
            return self.templates.render_list(entries, context)
        except TemplateProblem as problem:
            raise self._error(instance.spec, f"in {field}: {problem}", field,
                              instance.target) from None

    def _error(self, spec: RuleSpec, message: str, field: str | None = None,
               key: str | None = None) -> RulesfileError:
        line = spec.line_of(field) if field else spec.where.line
        return RulesfileError(message, spec.where.path, line, spec.key, key)

    def _check_places(self, instance: Instance, outputs: list[str]) -> None:
        self._refuse_state_dir(instance.spec, instance.target, None, instance.target)
        for path in outputs:
            self._refuse_state_dir(instance.spec, path, "outputs", instance.target)

    def _refuse_state_dir(self, spec: RuleSpec, path: str, field: str | None,
                          key: str) -> None:
        """A rule must not make a file in .rlmake/: it would overwrite rlmake's own state."""
        if in_state_dir(path):
            what = "depfile" if field == "depfile" else "output"
            raise self._error(spec, f"{what} '{path}' is in {STATE_DIR}/, where rlmake keeps its "
                              "state; a rule cannot make files there (choose another path)",
                              field, key)

    def _norm(self, path: str) -> str:
        """Remembered: a large plan names each path several times (as a dep, a target,
        a pattern's match). A path already normal is its own answer, and most are."""
        if _is_normal(path):
            return path
        found = self._normalised.get(path)
        if found is None:
            found = self._normalised[path] = normalise(path, self.project_dir)
        return found

    @staticmethod
    def _substitute_stem(path: str, instance: Instance) -> str:
        return path.replace("%", instance.stem) if instance.stem is not None else path

    def pattern_description(self, pattern: Instance) -> str | None:
        """A pattern rule's description as `rlmake list` shows it: rendered with `%` as the
        stem (`CC %.c`); None when it has none, or needs a real stem to render."""
        if not pattern.spec.description:
            return None
        try:
            return self.make_job(Instance(pattern.spec, pattern.target, pattern.names,
                                          stem="%")).description
        except RlmakeError:
            return None

    # --- defaults and requested targets -------------------------------------------------

    def default_targets(self) -> list[str]:
        if self.rulesfile.default is not None:
            return [self._checked_default(self._norm(t)) for t in self.rulesfile.default]
        top = {rule.key for rule in self.rulesfile.rules[:self.rulesfile.top_rule_count]}
        for instance in self.explicit_order:
            if instance.spec.key in top:
                return [instance.target]
        raise UsageError(f"{self.rulesfile.path}: no targets: the Rulesfile has no "
                         "non-pattern rule and no 'default'")

    def _checked_default(self, path: str) -> str:
        if not self._can_be_built(path):
            raise RulesfileError(f"default target '{path}': no rule makes it and no such file "
                                 f"exists{did_you_mean(path, self.explicit)}",
                                 self.rulesfile.path, self.rulesfile.default_line)
        return path

    def _can_be_built(self, path: str) -> bool:
        return path in self.explicit or self._pattern_for(path) is not None \
            or self.probe(path) == "file"

    def check_requested(self, targets: list[str]) -> list[str]:
        """Normalise command-line targets; an unknown one is an error with a suggestion."""
        result = []
        for target in targets:
            path = self._norm(target)
            if not self._can_be_built(path):
                suggestion = did_you_mean(path, self.explicit)
                raise UsageError(f"no rule to make target '{path}'{suggestion}")
            result.append(path)
        return result

    # --- resolution ---------------------------------------------------------------------

    def plan(self, requested: list[str]) -> Plan:
        resolver = _Resolver(self)
        for target in requested:
            resolver.resolve(target)
        hash_setting = self.vars.get("rlmake_hash")
        jobs = JobList(resolver.order)
        return Plan(tuple(requested), jobs, resolver.producers, tuple(resolver.sources),
                    PlanIndex.of(jobs), dict(self.rulesfile.pools),
                    None if hash_setting is None else str(hash_setting))

    def probe(self, path: str) -> str:
        """'file', 'dir' or 'missing'; remembered, so a stored plan can be checked later."""
        kind = self.probes.get(path)
        if kind is None:
            full = path if path.startswith("/") else self._full_prefix + path
            try:
                mode = os.stat(full).st_mode
            except (FileNotFoundError, NotADirectoryError):
                kind = "missing"
            except OSError as error:    # a symlink loop, no permission, a name too long
                raise UnreadableFile.from_os_error(path, error) from None
            else:
                kind = "dir" if stat.S_ISDIR(mode) else "file"
                if stat.S_ISREG(mode):
                    self.regular_files.add(path)
            self.probes[path] = kind
        return kind

    def instance_for(self, path: str, chain: frozenset[int] = frozenset()) -> Instance | None:
        """The rule instance that makes `path`: explicit first, then the first pattern that applies."""
        if path in self.explicit:
            return self.explicit[path]
        return self._pattern_for(path, chain)

    def _pattern_for(self, path: str, chain: frozenset[int] = frozenset()) -> Instance | None:
        if len(chain) >= MAX_PATTERN_CHAIN or not path.endswith(self._suffixes):
            return None         # (most sources end in no pattern's suffix: one call says so)
        for number, pattern in enumerate(self.patterns):
            if number in chain:
                continue            # as in make, a pattern is used once per chain
            stem = _stem(self._match_candidates[number], path)
            if stem is None:
                continue
            target = self._norm(pattern.target.replace("%", stem))
            instance = Instance(pattern.spec, target, pattern.names, stem)
            if all(self._can_make(path, chain, number)
                   for path in self._prerequisites(instance)):
                return instance
        return None

    def _prerequisites(self, instance: Instance) -> list[str]:
        """A pattern instance's deps and order-only deps: it applies only if each can be made
        or exists, as in GNU make."""
        context = self._context(instance)
        deps = self._deps(instance, context)
        self._prepared[instance.target] = (instance, context, deps)
        if not instance.spec.order_only:
            return deps
        self._outputs(instance, context)
        return [*deps, *self._order_only(instance, context, deps)]

    def _can_make(self, path: str, chain: frozenset[int], number: int) -> bool:
        """Whether `path`, a prerequisite of pattern `number` reached through `chain`, is
        made by a rule or exists (the longer chain is made only when it is needed)."""
        return (path in self.explicit or self.probe(path) != "missing"
                or self._pattern_for(path, chain | {number}) is not None)


def _split_pattern(pattern: str) -> tuple[str, str]:
    prefix, _, suffix = pattern.partition("%")
    return prefix, suffix


def _stem(candidates: tuple[tuple[str, str], ...], path: str) -> str | None:
    """What `%` stands for in the first (prefix, suffix) that `path` matches (a stem
    is never empty), or None."""
    for prefix, suffix in candidates:
        if len(path) > len(prefix) + len(suffix) and path.startswith(prefix) \
                and path.endswith(suffix):
            return path[len(prefix):len(path) - len(suffix)]
    return None


def _is_normal(path: str) -> bool:
    """Whether `normalise` would give `path` itself, judged without it: relative, and no
    empty, `.` or `..` component (a `./` or `.` anywhere is left to `normalise`, even in
    `a./b`, which it would keep)."""
    return bool(path) and path[0] != "/" and path[-1] not in "/." and "//" not in path \
        and "./" not in path


def _needs(job: Job) -> tuple[str, ...]:
    return (*job.deps, *job.order_only) if job.order_only else job.deps


def _field_key(field: str) -> str:
    return "env" if field.startswith("env ") else field


class _Resolver:
    """Depth-first walk from the requested targets; post-order gives dependency order."""

    def __init__(self, expander: Expander):
        self.expander = expander
        self.order: list[Job] = []
        self.producers: dict[str, str] = {}
        self.sources: list[str] = []
        self._done: set[str] = set()
        self._source_set: set[str] = set()

    def resolve(self, root: str) -> None:
        # by its job: two outputs of one rule asked for together are one job
        if self.producers.get(root, root) in self._done or root in self._source_set:
            return
        root_job = self._job_for(root, needed_by=None)
        if root_job is None:
            return
        # each job with what it needs made first: its deps, then its order-only deps
        stack: list[tuple[Job, Iterator[str]]] = [(root_job, iter(_needs(root_job)))]
        on_stack = {root_job.target: root}
        producers, done, sources = self.producers, self._done, self._source_set
        while stack:
            job, needs = stack[-1]
            for dep in needs:
                owner = producers.get(dep)
                if owner in on_stack:
                    self._cycle(stack, on_stack, owner, dep)
                if owner in done or dep in sources:
                    continue
                dep_job = self._job_for(dep, needed_by=job)
                if dep_job is not None:
                    on_stack[dep_job.target] = dep
                    stack.append((dep_job, iter(_needs(dep_job))))
                    break
            else:                   # all it needs is made first
                stack.pop()
                del on_stack[job.target]
                done.add(job.target)
                self.order.append(job)

    def _job_for(self, path: str, needed_by: Job | None) -> Job | None:
        """The job that makes `path` (registered as its producer), or None for a source."""
        try:
            return self._job_or_source(path, needed_by)
        except UnreadableFile as error:
            raise self._needed_error(str(error), needed_by) from None

    def _job_or_source(self, path: str, needed_by: Job | None) -> Job | None:
        expander = self.expander
        instance = expander.explicit.get(path) or expander._pattern_for(path)
        if instance is None:
            kind = expander.probe(path)
            if kind == "dir":
                raise self._needed_error(f"'{path}' is a directory; a dep must be a file "
                                         "(use glob() to depend on its files)", needed_by)
            if kind == "missing":
                by = f", needed by '{needed_by.target}'" if needed_by else ""
                raise self._needed_error(f"no rule to make target '{path}'{by}", needed_by)
            self._source_set.add(path)
            self.sources.append(path)
            return None
        job = expander.make_job(instance)
        for output in (job.target, *job.outputs):
            self.producers[output] = job.target
        return job

    @staticmethod
    def _needed_error(message: str, needed_by: Job | None) -> RlmakeError:
        if needed_by is None:
            return UsageError(message)
        return RulesfileError(message, needed_by.where.path, needed_by.where.line, needed_by.rule)

    @staticmethod
    def _cycle(stack, on_stack, owner: str, dep: str):
        """The cycle as the targets of its jobs, closed (`b -> a -> b`), whatever paths its
        edges go through; an edge through another output of a job is named after it."""
        targets = [job.target for job, _ in stack]
        cycle = targets[targets.index(owner):]
        # each job needs the path its successor was reached by; the last one needs `dep`
        edges = [(needer, on_stack[maker], maker) for needer, maker in itertools.pairwise(cycle)]
        edges.append((cycle[-1], dep, owner))
        through = [f"'{needer}' needs '{path}', an output of '{maker}'"
                   for needer, path, maker in edges if path != maker]
        note = f" ({'; '.join(through)})" if through else ""
        job = stack[-1][0]
        raise RulesfileError(f"dependency cycle: {' -> '.join([*cycle, owner])}{note}",
                             job.where.path, job.where.line, job.rule)

