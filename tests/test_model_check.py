"""The model check: generated projects, random edits and builds, invariants after each build.

A Hypothesis state machine draws a small project (sources, explicit and pattern rules,
extra outputs, aggregates, phony and `always` rules, depfiles, a var used in commands),
then interleaves what a user does to it: edit, revert and touch sources, age every file
past the racy window, delete or hand-edit outputs, override the var, rewrite a rule's
command, make a command fail and fix it again, interrupt a build, build everything or a
few targets, dry-run, restore from the local artifact store.

Invariants, checked after every build:

1. Correct bytes: after a successful build, every output of the requested targets holds
   what a pure Python model of the project says its command writes from the sources as
   they are now (and, in `fresh_build_agrees`, what a from-scratch build of the same
   project in another directory wrote).
2. Nothing left to do: a second build of the same targets runs only the `always` jobs.
3. Dry run, survey and why tell the truth. Let W be the jobs a dry run (`build -n`)
   taken just before a real build lists as WOULD_RUN, and O those of W with a reason of
   their own (anything but DEP_WILL_CHANGE: a job that only waits on a rebuilt dep may
   be spared by early cutoff). Let R be the jobs the real build ran or restored. Then
   R ⊆ W always (also for failed and interrupted builds), and O ⊆ R when the build
   succeeded. `Project.survey()` gives exactly W; `why` (no targets) names exactly the
   jobs of W that have commands. A dry run changes no file.
4. Provenance: for each output on disk, `Project.provenance(path)` names as its maker the
   execution that last wrote those bytes (tracked here from what each build ran or
   restored); an output edited by hand names no maker.

Every command the generated rules use is valid POSIX shell and within the fake
executor's small shell, so `test_model_check_through_the_cli` runs the same machine
through the real CLI and /bin/sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest import mock

import pytest
from engine import Engine
from fakes import FakeExecutor
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from checkout import RLMAKE
from rlmake import jobfiles
from rlmake.model import ReasonKind, Status
from rlmake.project import Project

SOURCES = ("a.c", "b.c", "s1.txt", "s2.txt", "h1.h", "h2.h")
HEADERS = ("h1.h", "h2.h")
CONTENTS = ("", "x\n", "y\n", "xy\n", "yx\n", "hello\n")
FLAGS = ("v0", "v1", "v2")
DEFAULT_FLAG = "v0"
PATTERN_OUTPUTS = ("a.o", "b.o")     # what "%.o": {deps: ["%.c"]} makes from the sources
# Thousands of builds, each committing to SQLite: on tmpfs where there is one, so that
# the check measures the engine, not the disk's fsync.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


# --- the generated project --------------------------------------------------------------

@dataclass
class Spec:
    """One rule. kind: "file" (writes its target), "phony" (a name, with a command),
    "aggregate" (a name, no command), "pattern" (the "%.o" rule)."""

    name: str
    kind: str
    deps: tuple[str, ...] = ()
    extra: str | None = None        # a second output, a copy of the target
    uses_var: bool = False
    header: str | None = None       # the command reads it and lists it in a depfile; a source
                                    # or an earlier rule's output (then also order-only)
    order_only: tuple[str, ...] = ()    # built first, never read
    always: bool = False
    version: int = 0                # bumped to rewrite the command
    failing: str | None = None      # None, "first" or "last": where `exit 3` goes

    @property
    def has_command(self) -> bool:
        return self.kind != "aggregate"

    @property
    def outputs(self) -> tuple[str, ...]:
        if self.kind != "file":
            return ()
        return (self.name, self.extra) if self.extra else (self.name,)


@dataclass
class Project_:
    specs: dict[str, Spec]                      # explicit rules, by target
    pattern: Spec | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def producer(self, path: str) -> Spec | None:
        """The rule that makes `path` (None for a source), pattern instances included."""
        for spec in self.specs.values():
            if path == spec.name or path == spec.extra:
                return spec
        if self.pattern is not None and path in PATTERN_OUTPUTS:
            return replace(self.pattern, name=path, deps=(path[:-2] + ".c",))
        return None

    def rulesfile(self) -> str:
        rules = {spec.name: _rule_json(spec) for spec in self.specs.values()}
        if self.pattern is not None:
            rules["%.o"] = _rule_json(self.pattern)
        rules["all"] = {"deps": list(self.specs)}
        return json.dumps({"vars": {"flag": DEFAULT_FLAG}, "default": "all", "rules": rules},
                          indent=1)

    def closure(self, targets: tuple[str, ...]) -> dict[str, Spec]:
        """The jobs a build of `targets` (none: everything) needs, by job target."""
        jobs: dict[str, Spec] = {}
        stack = list(targets or self.specs)
        while stack:
            spec = self.producer(stack.pop())
            if spec is None or spec.name in jobs:
                continue
            jobs[spec.name] = spec
            stack.extend((*spec.deps, *spec.order_only))
        return jobs

    def every_output(self) -> list[str]:
        return [path for spec in self.closure(()).values() for path in spec.outputs]


def _file_deps(spec: Spec, is_file) -> list[str]:
    return [dep for dep in spec.deps if is_file(dep)]


def _is_file(path: str) -> bool:
    """Sources, outputs of file rules and pattern outputs; phony and aggregate names are
    p*/g*."""
    return not path.startswith(("p", "g"))


def commands(spec: Spec) -> list[str]:
    """The rule's commands: valid POSIX shell, and within the fake executor's shell."""
    tag = f"{spec.name}@{spec.version}"
    if spec.kind == "pattern":
        tag = f"pattern@{spec.version}"
    deps = _file_deps(spec, _is_file)
    if spec.kind == "phony":
        found = [f"echo {tag}"]
        found += [f"cat {' '.join(deps)}"] if deps else []
        found += ["echo {{ flag }}"] if spec.uses_var else []
    else:
        found = [f"echo {tag} > {{{{ target }}}}"]
        if spec.kind == "pattern":
            found.append("cat {{ dep }} >> {{ target }}")
        elif deps:
            found.append(f"cat {' '.join(deps)} >> {{{{ target }}}}")
        found += ["echo {{ flag }} >> {{ target }}"] if spec.uses_var else []
        if spec.header:
            found += [f"cat {spec.header} >> {{{{ target }}}}",
                      f"echo '{{{{ target }}}}: {spec.header}' > {{{{ target }}}}.d"]
        found += [f"cp {{{{ target }}}} {spec.extra}"] if spec.extra else []
    if spec.failing == "first":
        found.insert(0, "exit 3")
    elif spec.failing == "last":
        found.append("exit 3")
    return found


def _rule_json(spec: Spec) -> dict:
    if spec.kind == "aggregate":
        return {"deps": list(spec.deps), "order_only": list(spec.order_only)}
    rule: dict = {"deps": list(spec.deps) if spec.kind != "pattern" else ["%.c"],
                  "command": commands(spec)}
    if spec.kind == "phony":
        rule["phony"] = True
    if spec.extra:
        rule["outputs"] = [spec.extra]
    if spec.header:
        rule["depfile"] = "{{ target }}.d"
    if spec.order_only:
        rule["order_only"] = list(spec.order_only)
    if spec.always:
        rule["always"] = True
    return rule


def expected_bytes(project: Project_, path: str, flag: str) -> str:
    """What a from-scratch build writes to `path`: the model of every command."""
    spec = project.producer(path)
    if spec is None:
        return project.sources[path]
    tag = f"pattern@{spec.version}" if spec.kind == "pattern" else f"{spec.name}@{spec.version}"
    text = tag + "\n"
    text += "".join(expected_bytes(project, dep, flag) for dep in _file_deps(spec, _is_file))
    text += flag + "\n" if spec.uses_var else ""
    text += expected_bytes(project, spec.header, flag) if spec.header else ""
    return text


@st.composite
def projects(draw) -> Project_:
    pattern = None
    if draw(st.booleans()):
        pattern = Spec("%.o", "pattern", uses_var=draw(st.booleans()))
    available = list(SOURCES[:4]) + (list(PATTERN_OUTPUTS) if pattern else [])
    generated: list[str] = []       # outputs of earlier file rules: headers a rule may include
    specs: dict[str, Spec] = {}
    for i in range(draw(st.integers(2, 7))):
        kind = draw(st.sampled_from(("file", "file", "file", "file", "phony", "aggregate")))
        deps = tuple(draw(st.lists(st.sampled_from(available), min_size=1, max_size=3,
                                   unique=True)))
        order_only = tuple(draw(st.lists(st.sampled_from(available), max_size=1)))
        if kind == "file":
            name = draw(st.sampled_from((f"t{i}", f"out/t{i}")))
            extra = f"{name}.x" if draw(st.booleans()) else None
            header = draw(st.sampled_from((None, None, *HEADERS, *generated)))
            if header in generated:         # reached only through its depfile: wait for it
                order_only += (header,)
            spec = Spec(name, kind, deps, extra, draw(st.booleans()), header,
                        always=draw(st.integers(0, 9)) == 0, order_only=order_only)
            available += list(spec.outputs)
            generated += list(spec.outputs)
        elif kind == "phony":
            spec = Spec(f"p{i}", kind, deps, uses_var=draw(st.booleans()),
                        always=draw(st.integers(0, 4)) == 0, order_only=order_only)
            if not spec.always:             # an always name would rerun its dependents forever
                available.append(spec.name)
        else:
            spec = Spec(f"g{i}", kind, deps, order_only=order_only)
            available.append(spec.name)
        specs[spec.name] = spec
    sources = {path: draw(st.sampled_from(CONTENTS)) for path in SOURCES}
    return Project_(specs, pattern, sources)


# --- two ways to build: in-process (fast) and through the CLI (real processes) -----------

@dataclass
class Result:
    status: str                     # "ok", "failed" or "interrupted"
    ran: set[str]                   # jobs whose commands ran
    restored: set[str]              # jobs restored from the artifact store
    would_run: dict = field(default_factory=dict)   # dry run: target -> Decision


class InProcess:
    interrupts = True

    def __init__(self, root: Path):
        self.engine = Engine(root)

    def build(self, targets, overrides, *, cache=False, interrupt_at=None) -> Result:
        executor = FakeExecutor(self.engine.clock, interrupt_at=interrupt_at)
        built = self.engine.build(*targets, local_cache=cache, executor=executor,
                                  overrides=overrides)
        return Result(built.status, set(built.ran), built.of(Status.RESTORED))

    def dry_run(self, targets, overrides) -> Result:
        built = self.engine.build(*targets, overrides=overrides, dry_run=True)
        return Result(built.status, set(), set(),
                      {t: o.decision for t, o in built.outcomes.items()
                       if o.status is Status.WOULD_RUN})


class ThroughTheCli(InProcess):
    """Real builds by the rlmake CLI running /bin/sh; dry runs in-process (the same
    survey `build -n` prints), since the CLI's -n prints commands, not reasons."""

    interrupts = False

    def __init__(self, root: Path):
        super().__init__(root)
        self.root = root

    def build(self, targets, overrides, *, cache=False, interrupt_at=None) -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RLMAKE_")}
        args = ["build", *([] if cache else ["--no-local-cache"]), *targets,
                *(f"{name}={value}" for name, value in overrides.items())]
        done = subprocess.run([*RLMAKE, *args], cwd=self.root, capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode in (0, 1), done.stderr
        with Project(str(self.root)).records() as records:
            runs = records.runs_of(records.executions(1)[0].id)
        return Result("ok" if done.returncode == 0 else "failed",
                      {r.target for r in runs if r.status in (Status.DONE, Status.FAILED)},
                      {r.target for r in runs if r.status is Status.RESTORED})


# --- the machine ----------------------------------------------------------------------------

class ModelCheck(RuleBasedStateMachine):
    backend = InProcess

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="rlmake-model-", dir=SCRATCH))
        self.builder = self.backend(self.root)
        self.project: Project_ | None = None
        self.flag: str | None = None            # the override of the var; None: none
        self.history: dict[str, list[str]] = {}
        self.written: dict[str, tuple[bytes, str]] = {}     # output -> (bytes, execution)
        # key -> what headers are made from (inputs_now) when an entry was stored under it:
        # a job's key leaves out what its depfile lists, so one key can name results made
        # from other headers, and the store must refuse those (it keeps the latest per key)
        self.stored: dict[str, tuple] = {}
        self.hand_edits = 0

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------

    @property
    def overrides(self) -> dict:
        return {} if self.flag is None else {"flag": self.flag}

    def write_rulesfile(self) -> None:
        (self.root / "Rulesfile.yaml").write_text(self.project.rulesfile())

    def write_source(self, path: str, text: str) -> None:
        (self.root / path).write_text(text)
        self.project.sources[path] = text
        self.history.setdefault(path, []).append(text)

    def inputs_now(self) -> tuple:
        """What every file a depfile may list is made from: the sources, and for generated
        headers the var and the rules' commands."""
        return (dict(self.project.sources), self.flag,
                [spec.version for spec in self.specs_with_commands()])

    def outputs_on_disk(self) -> list[str]:
        return [p for p in self.project.every_output() if (self.root / p).is_file()]

    def snapshot_files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes()
                for p in self.root.rglob("*") if p.is_file() and ".rlmake" not in p.parts}

    def specs_with_commands(self) -> list[Spec]:
        found = [s for s in self.project.specs.values() if s.has_command]
        return found + ([self.project.pattern] if self.project.pattern else [])

    # --- the project ------------------------------------------------------------------

    @initialize(project=projects())
    def create(self, project):
        self.project = project
        for path, text in project.sources.items():
            self.write_source(path, text)
        self.write_rulesfile()

    # --- what a user does -------------------------------------------------------------

    @rule(path=st.sampled_from(SOURCES), text=st.sampled_from(CONTENTS))
    def edit_source(self, path, text):
        self.write_source(path, text)

    @rule(data=st.data(), path=st.sampled_from(SOURCES))
    def revert_source(self, data, path):
        self.write_source(path, data.draw(st.sampled_from(self.history[path])))

    @rule(path=st.sampled_from(SOURCES))
    def touch_source(self, path):
        os.utime(self.root / path)

    @rule()
    def age_files(self):
        """Every file 10 s old: past the racy window, so stat is trusted again."""
        past = time.time() - 10
        for path in self.root.rglob("*"):
            if path.is_file() and ".rlmake" not in path.parts:
                os.utime(path, (past, past))

    @rule(data=st.data())
    def delete_output(self, data):
        existing = self.outputs_on_disk()
        if existing:
            (self.root / data.draw(st.sampled_from(existing))).unlink()

    @rule(data=st.data())
    def hand_edit_output(self, data):
        existing = self.outputs_on_disk()
        if existing:
            self.hand_edits += 1
            (self.root / data.draw(st.sampled_from(existing))).write_text(
                f"hand {self.hand_edits}\n")

    @rule(flag=st.sampled_from((None, *FLAGS)))
    def change_var(self, flag):
        self.flag = flag

    @precondition(lambda self: self.specs_with_commands())
    @rule(data=st.data())
    def rewrite_command(self, data):
        spec = data.draw(st.sampled_from(self.specs_with_commands()))
        spec.version += 1
        self.write_rulesfile()

    @precondition(lambda self: self.specs_with_commands())
    @rule(data=st.data(), where=st.sampled_from((None, "first", "last")))
    def make_command_fail_or_fix_it(self, data, where):
        spec = data.draw(st.sampled_from(self.specs_with_commands()))
        spec.failing = where
        self.write_rulesfile()

    # --- building ---------------------------------------------------------------------

    def targets(self, data) -> tuple[str, ...]:
        if data.draw(st.booleans()):
            return ()
        names = [*self.project.specs, *(s.extra for s in self.project.specs.values() if s.extra)]
        if self.project.pattern is not None:
            names += [p for p in PATTERN_OUTPUTS if p in self.project.closure(())]
        return tuple(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2,
                                        unique=True)))

    @rule(data=st.data(), cache=st.booleans())
    def build(self, data, cache):
        self.build_and_check(self.targets(data), cache=cache)

    @precondition(lambda self: self.builder.interrupts)
    @rule(data=st.data(), at=st.integers(1, 4))
    def interrupted_build(self, data, at):
        self.build_and_check(self.targets(data), interrupt_at=at)

    @rule(data=st.data())
    def dry_run_changes_nothing(self, data):
        targets = self.targets(data)
        before = self.snapshot_files()
        self.builder.dry_run(targets, self.overrides)
        assert self.snapshot_files() == before

    @rule(data=st.data())
    def restore_from_the_store(self, data):
        """Delete an output whose job is otherwise up to date and was stored: a build with
        the local store restores it instead of running the command."""
        first = self.build_and_check((), cache=True)
        candidates = [path for path in self.outputs_on_disk()
                      if not self.project.producer(path).always]
        if first.status != "ok" or not candidates:
            return
        path = data.draw(st.sampled_from(candidates))
        target = self.project.producer(path).name
        with Project(str(self.root), overrides=self.overrides).records() as records:
            record = records.job_record(target)
        (self.root / path).unlink()
        reasons = self.builder.dry_run((), self.overrides).would_run[target].reasons
        stored = self.stored.get(record.key) == self.inputs_now()
        result = self.build_and_check((), cache=True)
        if stored and [r.kind for r in reasons] == [ReasonKind.OUTPUT_MISSING]:
            assert target in result.restored and target not in result.ran

    @rule()
    def fresh_build_agrees(self):
        """A from-scratch build of the same project elsewhere writes the same bytes."""
        result = self.build_and_check(())
        if result.status != "ok":
            return
        elsewhere = Path(tempfile.mkdtemp(prefix="rlmake-reference-", dir=SCRATCH))
        try:
            for path, text in self.project.sources.items():
                (elsewhere / path).write_text(text)
            (elsewhere / "Rulesfile.yaml").write_text(self.project.rulesfile())
            # Its sources were written an instant ago, within a coarse clock tick of its
            # jobs' starts: a header a depfile lists for the first time is then judged
            # possibly written while the job ran (a ctime in that tick may belong to a
            # write after the start), and the job fails, as it should where others may
            # write. Here nothing writes but the build's own jobs: no tick to allow for.
            with mock.patch.object(jobfiles, "_TICK_NS", 0):
                assert Engine(elsewhere).build(overrides=self.overrides).status == "ok"
            for path in self.project.every_output():
                assert (self.root / path).read_bytes() == (elsewhere / path).read_bytes(), path
        finally:
            shutil.rmtree(elsewhere)

    # --- the invariants ---------------------------------------------------------------

    def build_and_check(self, targets, *, cache=False, interrupt_at=None) -> Result:
        overrides = self.overrides
        dry = self.builder.dry_run(targets, overrides)
        if not targets:
            self.check_survey_and_why(dry)
        result = self.builder.build(targets, overrides, cache=cache, interrupt_at=interrupt_at)
        done = result.ran | result.restored
        assert done <= dry.would_run.keys(), \
            f"ran or restored {done - dry.would_run.keys()} that -n called up to date"
        jobs = self.project.closure(targets)
        self.track_writes(result, jobs)
        self.check_provenance()
        if result.status != "ok":
            return result
        own = {t for t, d in dry.would_run.items()
               if any(r.kind is not ReasonKind.DEP_WILL_CHANGE for r in d.reasons)}
        assert own <= done, f"-n said {own - done} would run for a reason of their own"
        self.check_outputs(jobs)
        if cache:
            for key in self.keys_of_runs({t for t in result.ran if not jobs[t].always}):
                self.stored[key] = self.inputs_now()
        self.check_second_build(targets, jobs)
        return result

    def check_survey_and_why(self, dry: Result) -> None:
        project = Project(str(self.root), overrides=self.overrides)
        _, surveyed = project.survey()
        assert {t for t, o in surveyed.items() if o.status is Status.WOULD_RUN} \
            == dry.would_run.keys()
        named = {cause.target for cause, _ in project.why()}
        assert named == {t for t in dry.would_run if self.project.producer(t).has_command}

    def check_outputs(self, jobs: dict[str, Spec]) -> None:
        flag = self.flag or DEFAULT_FLAG
        for spec in jobs.values():
            for path in spec.outputs:
                assert (self.root / path).read_text() == \
                    expected_bytes(self.project, path, flag), path

    def check_second_build(self, targets, jobs: dict[str, Spec]) -> None:
        always = {t for t, spec in jobs.items() if spec.always}
        again = self.builder.build(targets, self.overrides)
        assert again.status == "ok" and again.ran == always
        self.track_writes(again, jobs)

    def track_writes(self, result: Result, jobs: dict[str, Spec]) -> None:
        """Remember which execution wrote each output's current bytes."""
        with Project(str(self.root)).records() as records:
            execution = records.executions(1)[0].id
            succeeded = {r.target for r in records.runs_of(execution)
                         if r.status in (Status.DONE, Status.RESTORED)}
        for target in (result.ran | result.restored) & succeeded:
            for path in jobs[target].outputs:
                if (self.root / path).is_file():
                    self.written[path] = ((self.root / path).read_bytes(), execution)

    def keys_of_runs(self, targets: set[str]) -> set[str]:
        with Project(str(self.root)).records() as records:
            return {records.job_record(t).key for t in targets}

    def check_provenance(self) -> None:
        project = Project(str(self.root), overrides=self.overrides)
        for path in self.outputs_on_disk():
            made_by = project.provenance(path).made_by
            now = (self.root / path).read_bytes()
            if path in self.written and self.written[path][0] == now:
                assert made_by is not None and made_by["execution"] == self.written[path][1], \
                    (path, made_by)
            else:
                assert made_by is None, (path, made_by)


ModelCheck.TestCase.settings = settings(
    max_examples=300, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_model_check = ModelCheck.TestCase


class ModelCheckThroughTheCli(ModelCheck):
    backend = ThroughTheCli


ModelCheckThroughTheCli.TestCase.settings = settings(
    max_examples=10, stateful_step_count=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_model_check_through_the_cli = pytest.mark.integration(ModelCheckThroughTheCli.TestCase)
