"""Loader and expander cases from the issue "Never wrong": vars in rule keys, cycles
reported closed, outputs under .rlmake/, names that are not UTF-8, and `why` on deep
or wide graphs of aggregates. All in-process: no command runs."""

from __future__ import annotations

import re

import pytest

from conftest import build_n, run_cli, write_project


def failure(project, *args, command="build"):
    """Run `rlmake COMMAND [-n] -C project ARGS`; it must end with exit status 2 and no
    traceback. Returns stderr."""
    flags = ["-n"] if command == "build" else []
    result = run_cli([command, *flags, "-C", project, *args], cwd=project)
    assert result.exit_code == 2, result.describe()
    assert result.exception is None or isinstance(result.exception, SystemExit), result.describe()
    assert result.stdout == "", result.describe()
    return result.stderr


# --- vars in a rule's key ----------------------------------------------------------------

def test_var_in_an_explicit_key(tmp_path):
    write_project(tmp_path, """
        vars: {build_dir: out}
        rules:
          "{{ build_dir }}/prog":
            deps: [prog.c]
            command: cc -o {{ target }} {{ dep }}
        """, {"prog.c": ""})
    assert build_n(tmp_path) == ["cc -o out/prog prog.c"]
    assert build_n(tmp_path, "out/prog") == ["cc -o out/prog prog.c"]
    assert build_n(tmp_path, "build_dir=elsewhere") == ["cc -o elsewhere/prog prog.c"]
    listed = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert listed.exit_code == 0 and listed.lines == ["out/prog"], listed.describe()


def test_var_and_foreach_name_in_a_key(tmp_path):
    write_project(tmp_path, """
        vars: {build_dir: out}
        default: all
        rules:
          all:
            deps: ["{{ build_dir }}/a", "{{ build_dir }}/b"]
          "{{ build_dir }}/{{ name }}":
            foreach: {name: [a, b]}
            deps: ["{{ name }}.c"]
            command: cp {{ dep }} {{ target }}
        """, {"a.c": "", "b.c": ""})
    assert sorted(build_n(tmp_path)) == ["cp a.c out/a", "cp b.c out/b"]


def test_var_in_a_pattern_key(tmp_path):
    write_project(tmp_path, """
        vars: {build_dir: out}
        rules:
          all:
            deps: [out/x.o]
          "{{ build_dir }}/%.o":
            deps: ["%.c"]
            command: "cc -c {{ dep }} -o {{ target }} # stem {{ stem }}"
        """, {"x.c": ""})
    assert build_n(tmp_path) == ["cc -c x.c -o out/x.o # stem x"]


def test_undefined_var_in_a_key_is_still_an_error(tmp_path):
    write_project(tmp_path, """
        rules:
          "{{ nowhere }}/prog": {command: x}
        """)
    stderr = failure(tmp_path)
    assert "Rulesfile.yaml:2" in stderr and "undefined variable 'nowhere'" in stderr


# --- cycles read closed --------------------------------------------------------------------

def cycle_in(stderr: str) -> list[str]:
    match = re.search(r"dependency cycle: (.*?)(?: \(|$)", stderr, re.M)
    assert match, stderr
    return match.group(1).split(" -> ")


THROUGH_OUTPUT = """
    rules:
      a:
        deps: [x]
        command: make a
      b:
        outputs: [x]
        deps: [a]
        command: make b and x
    """


@pytest.mark.parametrize("requested, expected", [
    ("a", ["a", "b", "a"]),
    ("b", ["b", "a", "b"]),
    ("x", ["b", "a", "b"]),
])
def test_cycle_through_an_extra_output_is_listed_closed(tmp_path, requested, expected):
    write_project(tmp_path, THROUGH_OUTPUT)
    stderr = failure(tmp_path, requested)
    assert cycle_in(stderr) == expected
    assert "'a' needs 'x', an output of 'b'" in stderr


@pytest.mark.parametrize("rules", [
    "a: {deps: [b]}\n  b: {deps: [a]}",
    "a: {deps: [a]}",
    "b: {outputs: [x], deps: [x], command: c}",
    "a: {deps: [b]}\n  b: {deps: [c], outputs: [y], command: c}\n  c: {deps: [y]}",
    "all: {deps: [q.o]}\n  '%.o': {deps: ['%.c'], command: c}\n  '%.c': {deps: ['%.h'], command: c}"
    "\n  q.h: {deps: [q.o], command: c}",
    "all: {deps: [q.o]}\n  '%.o': {outputs: ['%.d'], deps: ['%.c'], command: c}"
    "\n  q.c: {deps: [q.d], command: c}",
], ids=["plain", "self", "self-through-output", "through-output-mid-chain", "patterns",
        "pattern-output"])
def test_every_cycle_reads_closed(tmp_path, rules):
    write_project(tmp_path, f"rules:\n  {rules}\n")
    names = cycle_in(failure(tmp_path))
    assert len(names) >= 2 and names[0] == names[-1], names


# --- outputs under .rlmake/ ---------------------------------------------------------------

@pytest.mark.parametrize("rules, line, rule", [
    ("  .rlmake/x: {command: c}\n", 2, "'.rlmake/x'"),
    ("  a:\n    command: c\n    outputs: [./.rlmake/state.db]\n", 4, "'a'"),
    ("  .rlmake: {command: c}\n", 2, "'.rlmake'"),
    ("  all: {deps: [.rlmake/q.o]}\n  '%.o': {command: c}\n", 2, "'all'"),   # the dep
    ("  all: {deps: [q.o]}\n  '%.o':\n    deps: ['%.c']\n    outputs: ['.rlmake/%.d']\n"
     "    command: c\n", 5, "'%.o' (target 'q.o')"),
    ("  './.rlmake/%.o': {command: c}\n", 2, "'./.rlmake/%.o'"),
    ("  '{{ state }}/x': {command: c}\n", 2, "'{{ state }}/x' (target '.rlmake/x')"),
    ("  'out/{{ n }}':\n    foreach: {n: [a, b]}\n    outputs: ['.rlmake/{{ n }}']\n"
     "    command: c\n", 4, "'out/{{ n }}' (target 'out/a')"),
], ids=["target", "outputs", "the-directory", "pattern-instance", "pattern-outputs",
        "pattern-key", "var-key", "foreach-outputs"])
def test_output_under_the_state_directory_is_refused(tmp_path, rules, line, rule):
    write_project(tmp_path, "vars: {state: .rlmake}\nrules:\n" + rules, {"q.c": ""})
    stderr = failure(tmp_path)
    assert f"Rulesfile.yaml:{line + 1}: rule {rule}: " in stderr
    assert ".rlmake/" in stderr and "state" in stderr


def test_names_that_only_look_like_the_state_directory_are_fine(tmp_path):
    write_project(tmp_path, """
        default: all
        rules:
          all: {deps: [.rlmakefile, sub/.rlmake/x, rlmake/y]}
          .rlmakefile: {command: a}
          sub/.rlmake/x: {command: b}
          rlmake/y: {command: c}
        """)
    assert sorted(build_n(tmp_path)) == ["a", "b", "c"]


# --- names that are not UTF-8 -------------------------------------------------------------

def test_glob_finding_a_name_that_is_not_utf8_is_a_clear_error(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: ["{{ glob('*.c') }}"]
            command: cat {{ deps | quote_all }}
        """, {"ok.c": ""})
    (tmp_path / "ok.c").with_name("\udcff.c").write_bytes(b"")     # the name b'\xff.c'
    for command in ("build", "list", "graph"):
        stderr = failure(tmp_path, command=command)
        assert "Rulesfile.yaml:3: rule 'all'" in stderr
        assert "'\\xff.c'" in stderr and "not UTF-8" in stderr


def test_target_argument_that_is_not_utf8_is_a_clear_error(tmp_path):
    write_project(tmp_path, "rules:\n  a: {command: c}\n")
    (tmp_path / "\udcff.c").write_bytes(b"")
    stderr = failure(tmp_path, "\udcff.c")
    assert "'\\xff.c'" in stderr and "not UTF-8" in stderr


def test_rulesfile_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "Rulesfile.yaml").write_bytes(b"rules:\n  a:\n    command: echo \xff\n")
    stderr = failure(tmp_path)
    assert "Rulesfile.yaml:3: " in stderr and "0xff" in stderr and "UTF-8" in stderr


def test_template_giving_a_lone_surrogate_is_a_clear_error(tmp_path):
    write_project(tmp_path, r"""
        rules:
          a: {command: 'echo {{ "\udcff" }}'}
        """)
    stderr = failure(tmp_path)
    assert "Rulesfile.yaml:2: rule 'a': in command:" in stderr and "Unicode" in stderr


# --- why on deep and wide graphs of aggregates --------------------------------------------

def aggregate_chain(length: int, bottom: str) -> str:
    lines = ["rules:"]
    lines += [f"  r{i}: {{deps: [r{i + 1}]}}" for i in range(length - 1)]
    lines.append(f"  r{length - 1}: {{deps: [{bottom}]}}")
    return "\n".join(lines) + "\n"


def test_why_on_a_chain_of_500_aggregates(tmp_path):
    write_project(tmp_path, aggregate_chain(500, "src.txt"), {"src.txt": "x"})
    result = run_cli(["why", "-C", tmp_path, "r0"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert result.lines == ["r0: up to date", "r0: has no command"]


def test_why_on_a_chain_of_500_aggregates_over_a_job_to_run(tmp_path):
    rules = aggregate_chain(500, "gen") + "  gen: {deps: [src.txt], command: cp src.txt gen}\n"
    write_project(tmp_path, rules, {"src.txt": "x"})
    result = run_cli(["why", "-C", tmp_path, "r0"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert result.lines[0] == "r0: will be brought up to date because r1 will be rebuilt"
    assert result.lines[1].strip() == "r1: will be brought up to date because r2 will be rebuilt"


def test_why_explains_a_shared_job_once(tmp_path):
    """A ladder of aggregates, each level needing both of the next: the tree of causes
    would repeat each level's answer twice as often as the one above (2**levels)."""
    levels = 18
    lines = ["rules:"]
    for i in range(levels):
        below = f"[a{i + 1}, b{i + 1}]" if i < levels - 1 else "[gen]"
        lines += [f"  a{i}: {{deps: {below}}}", f"  b{i}: {{deps: {below}}}"]
    lines.append("  gen: {deps: [src.txt], command: cp src.txt gen}")
    write_project(tmp_path, "\n".join(lines) + "\n", {"src.txt": "x"})
    result = run_cli(["why", "-C", tmp_path, "a0"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert len(result.lines) < 4 * levels, result.stdout[:2000]
    assert any(line.strip().startswith("gen: will be rebuilt because") for line in result.lines)
    assert any("(see above)" in line for line in result.lines)


# --- found by tests/test_loader_fuzz.py -----------------------------------------------------

@pytest.mark.parametrize("rules", [
    # the resolver reached the aggregate again and again through its own output
    "a: {deps: [a.c], outputs: [a.c]}",
    # the aggregate's job came into the plan twice, and 'b' was said to fail
    "all: {deps: [a, b]}\n  a: {deps: [a.c], outputs: [gen.c]}\n  b: {deps: [gen.c], command: x}",
    "all: {deps: [q.d]}\n  '%.o':\n    deps: ['%.c']\n    outputs: ['%.d']",
], ids=["own-output", "output-needed-elsewhere", "pattern"])
def test_rule_without_a_command_cannot_have_outputs(tmp_path, rules):
    write_project(tmp_path, f"rules:\n  {rules}\n", {"a.c": "", "q.c": ""})
    stderr = failure(tmp_path)
    assert "rule without a command cannot have outputs" in stderr
    assert re.search(r"Rulesfile.yaml:\d+: rule '(a|%\.o)': ", stderr), stderr
