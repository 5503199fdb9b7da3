"""Order-only deps (`order_only:`, make's `|`, ninja's `||`): built before the job, never
part of its key, never a reason to rerun it; a failure among them skips it.

In-process builds (engine.py) with the fake executor, plus the loader's errors through
click's runner; no process is started."""

from __future__ import annotations

import json

import pytest
from engine import Engine
from fakes import FakeExecutor

from conftest import run_cli, write_project
from rlmake import plancache
from rlmake.executors.base import Completion, Task
from rlmake.model import ReasonKind, Status
from rlmake.project import Project


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


# `obj` includes the generated gen.h, which it does not name as a dep.
GENERATED = """\
rules:
  obj:
    deps: [obj.c]
    order_only: [gen.h]
    command: cat obj.c > obj
  gen.h:
    deps: [version]
    command: cat version > gen.h
"""

# The same, with the header read by the command and listed in a depfile, as gcc -MMD does.
THROUGH_DEPFILE = """\
rules:
  obj:
    deps: [obj.c]
    order_only: [gen.h]
    command: "cat gen.h obj.c > obj; echo 'obj: gen.h' > obj.d"
    depfile: obj.d
  gen.h:
    deps: [version]
    command: cat version > gen.h
"""


def project(engine: Engine, rules: str) -> Engine:
    engine.write("Rulesfile.yaml", rules)
    engine.write("obj.c", "body\n")
    engine.write("version", "1\n")
    return engine


class HoldingExecutor(FakeExecutor):
    """Finishes the jobs in `held` only when nothing else is waiting to run: if a job were
    started while a held one had not finished, it would finish first. `events` lists
    each start and end in order."""

    def __init__(self, clock, held: set[str]):
        super().__init__(clock)
        self.held = held
        self.events: list[tuple[str, str]] = []

    def start(self, task: Task) -> None:
        self.events.append(("start", task.id))
        super().start(task)

    def wait(self, timeout: float | None = None) -> Completion | None:
        queued = self._queued
        for task in list(queued):
            if task.id not in self.held:
                queued.remove(task)
                queued.appendleft(task)
                break
        completion = super().wait(timeout)
        if completion is not None:
            self.events.append(("end", completion.id))
        return completion


# --- building ------------------------------------------------------------------------------

def test_the_order_only_dep_is_built_first(engine):
    project(engine, GENERATED)
    built = engine.build("obj")
    assert built.status == "ok" and built.ran == ["gen.h", "obj"]
    assert engine.build("obj").ran == []


def test_the_job_never_starts_before_its_order_only_dep_finished(engine):
    project(engine, GENERATED)
    executor = HoldingExecutor(engine.clock, held={"gen.h"})
    built = engine.build("obj", executor=executor, jobs=4)
    assert built.status == "ok"
    assert executor.events == [("start", "gen.h"), ("end", "gen.h"),
                               ("start", "obj"), ("end", "obj")]


def test_the_holding_executor_would_see_a_job_that_does_not_wait(engine):
    """The check above can fail: without order_only, the object starts at once and ends
    before the held generator."""
    project(engine, GENERATED.replace("    order_only: [gen.h]\n", "")
            + "  all:\n    deps: [gen.h, obj]\n")
    executor = HoldingExecutor(engine.clock, held={"gen.h"})
    assert engine.build("all", executor=executor, jobs=4).status == "ok"
    assert executor.events.index(("end", "obj")) < executor.events.index(("end", "gen.h"))


def test_changing_an_order_only_dep_does_not_rerun_the_job(engine):
    project(engine, GENERATED)
    engine.build("obj")
    engine.write("version", "2\n")
    built = engine.build("obj")
    assert built.ran == ["gen.h"]
    assert built.outcomes["obj"].status is Status.CACHED
    assert engine.read("gen.h") == "2\n"


def test_an_order_only_source_file_is_built_by_no_one_and_never_reruns_the_job(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  obj:
    deps: [obj.c]
    order_only: [notes.txt]
    command: cat obj.c > obj
""")
    engine.write("obj.c", "body\n")
    engine.write("notes.txt", "one\n")
    assert engine.build().ran == ["obj"]
    engine.write("notes.txt", "two\n")
    assert engine.build().ran == []


def test_a_failed_order_only_dep_skips_the_job(engine):
    project(engine, GENERATED.replace("cat version > gen.h", "exit 3"))
    for keep_going in (False, True):
        built = engine.build("obj", keep_going=keep_going)
        assert built.status == "failed" and built.ran == ["gen.h"]
        assert built.outcomes["gen.h"].status is Status.FAILED
        assert built.outcomes["obj"].status is Status.SKIPPED


def test_a_header_its_depfile_lists_reruns_the_job_when_it_changes(engine):
    """The order-only dep is no reason; the depfile makes the header a real dep, and the
    job is decided after the generator ran, so the new header is seen in the same build."""
    project(engine, THROUGH_DEPFILE)
    assert engine.build("obj").ran == ["gen.h", "obj"]
    assert engine.read("obj") == "1\nbody\n"
    engine.write("version", "2\n")
    built = engine.build("obj")
    assert built.ran == ["gen.h", "obj"]
    assert [r.kind for r in built.outcomes["obj"].decision.reasons] \
        == [ReasonKind.DEPFILE_DEP_CHANGED]
    assert engine.read("obj") == "2\nbody\n"
    assert engine.build("obj").ran == []


def test_a_generator_that_writes_the_same_bytes_leaves_the_job_alone(engine):
    project(engine, THROUGH_DEPFILE.replace("deps: [version]", "deps: [version, notes]"))
    engine.write("notes", "a\n")
    engine.build("obj")
    engine.write("notes", "b\n")
    assert engine.build("obj").ran == ["gen.h"]


def test_a_dry_run_tells_a_header_listed_by_a_depfile_will_be_rebuilt(engine):
    """`-n`, survey and why tell the truth: the header that a job to run first makes is a
    reason (a depfile dep), the order-only dep alone is not."""
    project(engine, THROUGH_DEPFILE + "  other:\n    deps: [obj.c]\n"
            "    order_only: [gen.h]\n    command: cat obj.c > other\n")
    engine.build("obj", "other")
    engine.write("version", "2\n")
    dry = engine.build("obj", "other", dry_run=True)
    assert dry.of(Status.WOULD_RUN) == {"gen.h", "obj"}
    reasons = dry.outcomes["obj"].decision.reasons
    assert [(r.kind, r.path) for r in reasons] == [(ReasonKind.DEP_WILL_CHANGE, "gen.h")]
    answers = {now.target: now.sentence for now, _ in Project(str(engine.root)).why(["other"])}
    assert answers == {"other": "up to date"}


def test_an_aggregate_does_not_take_its_order_only_deps_into_its_content(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  bundle:
    deps: [a]
    order_only: [b]
  user:
    deps: [bundle]
    command: echo used > user
""")
    engine.write("a", "a\n")
    engine.write("b", "b\n")
    assert engine.build("user").ran == ["user"]
    engine.write("b", "changed\n")
    assert engine.build("user").ran == []
    engine.write("a", "changed\n")
    assert engine.build("user").ran == ["user"]


# --- expansion -----------------------------------------------------------------------------

def test_a_pattern_rule_applies_only_if_its_order_only_deps_can_be_made(engine):
    """As in GNU make: a pattern's order-only deps must exist or be makeable too."""
    engine.write("Rulesfile.yaml", """\
rules:
  all:
    deps: [a.o, b.o]
  "%.o":
    deps: ["%.c"]
    order_only: ["gen/%.h"]
    command: cat {{ dep }} > {{ target }}
  "gen/a.h":
    command: echo a > gen/a.h
  "%o":
    deps: ["%c"]
    command: echo other > {{ target }}
""")
    engine.write("a.c", "a\n")
    engine.write("b.c", "b\n")
    built = engine.build("all")
    assert built.status == "ok" and set(built.ran) == {"gen/a.h", "a.o", "b.o"}
    assert engine.read("a.o") == "a\n"
    assert engine.read("b.o") == "other\n"         # gen/b.h cannot be made: the next pattern
    engine.write("gen/b.h", "b\n")                  # a source now: the first pattern applies
    assert engine.build("all").ran == ["b.o"]
    assert engine.read("b.o") == "b\n"
    assert Project(str(engine.root)).plan(["all"]).job("b.o").order_only == ("gen/b.h",)


def test_a_missing_order_only_dep_of_a_pattern_means_no_rule(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  all:
    deps: [b.o]
  "%.o":
    deps: ["%.c"]
    order_only: ["gen/%.h"]
    command: cat {{ dep }} > {{ target }}
""")
    engine.write("b.c", "b\n")
    result = run_cli(["build", "-n", "all"], cwd=engine.root)
    assert result.exit_code == 2
    assert "no rule to make target 'b.o', needed by 'all'" in result.stderr


def test_order_only_entries_are_templated_spliced_and_normalised(engine):
    engine.write("Rulesfile.yaml", """\
vars:
  headers: [h1, ./h2]
rules:
  "out/%.txt":
    deps: ["%.c"]
    order_only: ["{{ headers }}", "gen/{{ stem }}.stamp", "gen/%.stamp", "%.c"]
    command: cat {{ dep }} > {{ target }}
  "gen/%.stamp":
    command: echo > {{ target }}
""")
    for name in ("x.c", "h1", "h2"):
        engine.write(name, "\n")
    job = Project(str(engine.root)).plan(["out/x.txt"]).job("out/x.txt")
    # once each, and not the real dep x.c: as in make, the real dep wins
    assert job.order_only == ("h1", "h2", "gen/x.stamp")
    assert job.deps == ("x.c",)


def test_deps_template_variables_do_not_include_order_only(engine):
    engine.write("Rulesfile.yaml", """\
rules:
  obj:
    deps: [obj.c]
    order_only: [gen.h]
    command: echo {{ deps | join(',') }} {{ dep }} > obj
  gen.h:
    command: echo > gen.h
""")
    engine.write("obj.c", "\n")
    assert engine.build("obj").status == "ok"
    assert engine.read("obj") == "obj.c obj.c\n"


def test_a_stored_plan_keeps_the_order_only_deps(engine):
    project(engine, GENERATED)
    first = Project(str(engine.root)).plan(["obj"])
    name = plancache.entry_name(str(engine.root / "Rulesfile.yaml"), ["obj"], {})
    stored = plancache.load(str(engine.root / ".rlmake"), name, str(engine.root))
    assert stored is not None
    assert stored.job("obj").order_only == first.job("obj").order_only == ("gen.h",)
    assert stored.index.dependents == first.index.dependents


def test_clean_removes_what_order_only_deps_made(engine):
    project(engine, GENERATED)
    engine.build("obj")
    removed = dict(Project(str(engine.root)).clean(["obj"]))
    assert removed == {"obj": "removed", "gen.h": "removed"}


# --- errors: exit status 2, file, line and rule named ---------------------------------------

@pytest.mark.parametrize("value, found", [
    ("{a: b}", "found a mapping"),
    ("[gen.h, [x]]", "found a list"),
    ("[gen.h, ~]", "found nothing"),
    ("[{a: 1}]", "found a mapping"),
])
def test_a_bad_order_only_value_is_refused(tmp_path, value, found):
    write_project(tmp_path, f"""
        rules:
          obj:
            deps: [obj.c]
            order_only: {value}
            command: cat obj.c > obj
        """, {"obj.c": ""})
    result = run_cli(["build", "-n"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert f"Rulesfile.yaml:4: rule 'obj': 'order_only' must be a list of strings, {found}" \
        in result.stderr


@pytest.mark.parametrize("rules, message", [
    ("""
        rules:
          obj:
            order_only: [missing.h]
            command: echo > obj
        """, "Rulesfile.yaml:2: rule 'obj': no rule to make target 'missing.h', needed by 'obj'"),
    ("""
        rules:
          a:
            order_only: [b]
            command: echo > a
          b:
            deps: [a]
            command: echo > b
        """, "dependency cycle: a -> b -> a"),
    ("""
        rules:
          a:
            order_only: ["{{ order_only }}"]
            command: echo > a
        """, "Rulesfile.yaml:3: rule 'a': in order_only: undefined variable 'order_only'"),
    ("""
        rules:
          a:
            order-only: [b]
            command: echo > a
        """, "unknown key 'order-only' (did you mean 'order_only'?)"),
])
def test_order_only_graph_mistakes_are_refused(tmp_path, rules, message):
    write_project(tmp_path, rules)
    result = run_cli(["build", "-n"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- rlmake graph -------------------------------------------------------------------------

def test_graph_shows_order_only_edges_apart(tmp_path):
    write_project(tmp_path, GENERATED, {"obj.c": "", "version": ""})
    dot = run_cli(["graph", "obj"], cwd=tmp_path)
    assert dot.exit_code == 0, dot.describe()
    lines = [line.strip() for line in dot.lines]
    assert '"gen.h" -> "obj" [style=dashed];' in lines
    assert '"obj.c" -> "obj";' in lines
    as_json = run_cli(["graph", "--format", "json", "obj"], cwd=tmp_path)
    jobs = {job["target"]: job for job in json.loads(as_json.stdout)["jobs"]}
    assert jobs["obj"]["order_only"] == ["gen.h"]
    assert jobs["obj"]["needs"] == [] and jobs["obj"]["waits_for"] == ["gen.h"]



def test_a_job_that_waits_for_a_dirty_job_is_decided_again(engine):
    """After an edit, the up-to-date snapshot names the jobs to decide: those downstream of
    the change include the ones that only wait for a dirty job, since what it makes may be
    a header their depfiles list."""
    from rlmake.uptodate import dirty_jobs

    project(engine, GENERATED)
    plan = Project(str(engine.root)).plan(["obj"])
    assert [plan.jobs[i].target for i in dirty_jobs(plan, {"version"}, set())] \
        == ["gen.h", "obj"]
    assert dirty_jobs(plan, {"notes.txt"}, set()) == []
