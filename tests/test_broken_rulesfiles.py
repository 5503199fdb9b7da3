"""Broken Rulesfiles: each ends the run before any command, with exit status 2 and a
message naming the file, the 1-based line where known, the rule, and the offending key.

Every case runs `rlmake build -n -C <project> ARGS` from the project directory, so the
file is named as given relative to where rlmake runs: `Rulesfile.yaml`, `inc.yaml`.
An expected entry that is a tuple means "any one of these".
"""

from __future__ import annotations

import pytest

from conftest import DIRECTORY, run_cli, run_subprocess, write_project

NO_RULESFILE = None


def case(id, rulesfile, expected, files=None, args=(), xfail=None):
    marks = [pytest.mark.xfail(reason=xfail, strict=True)] if xfail else []
    return pytest.param(rulesfile, files or {}, list(args), expected, id=id, marks=marks)


CASES = [
    # --- YAML and structure ------------------------------------------------------------
    case("bad-yaml-indentation", """
        rules:
          a:
            command: echo
           deps: [x]
        """, ["Rulesfile.yaml:4", "YAML"]),
    case("bad-yaml-unclosed-flow", """
        rules:
          a:
            deps: [x, y
            command: echo
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:4", "Rulesfile.yaml:5"), "YAML"]),
    case("bad-yaml-tab", "rules:\n\ta: {command: x}\n", ["Rulesfile.yaml:2", "YAML"]),
    case("top-level-list", """
        - rules
        - vars
        """, ["Rulesfile.yaml:1", "mapping"]),
    case("top-level-scalar", "just some words\n", ["Rulesfile.yaml:1", "mapping"]),
    case("unknown-top-level-key", """
        varz:
          cc: gcc
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:1", "'varz'", "did you mean 'vars'"]),
    case("unknown-top-level-key-no-suggestion", """
        rules:
          a: {command: x}
        colour: blue
        """, ["Rulesfile.yaml:3", "'colour'"]),
    case("unknown-rule-key", """
        rules:
          prog:
            dep: [prog.c]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'dep'", "did you mean 'deps'"],
        files={"prog.c": ""}),
    case("unknown-rule-key-in-unrequested-rule", """
        rules:
          a:
            command: x
          b:
            comand: y
        """, ["Rulesfile.yaml:5", "rule 'b'", "'comand'", "did you mean 'command'"],
        args=["a"]),
    case("duplicate-key-in-rule", """
        rules:
          a:
            command: one
            deps: []
            command: two
        """, ["Rulesfile.yaml:5", "'command'", "twice", "'a'"]),
    case("duplicate-rule", """
        rules:
          a: {command: one}
          a: {command: two}
        """, ["Rulesfile.yaml:3", "'a'", "twice"]),
    case("duplicate-var", """
        vars:
          cc: gcc
          cc: clang
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:3", "'cc'", "twice"]),
    case("duplicate-top-level-key", """
        rules:
          a: {command: x}
        rules:
          b: {command: y}
        """, ["Rulesfile.yaml:3", "'rules'", "twice"]),
    case("vars-not-a-mapping", """
        vars: [cc, gcc]
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:1", "'vars'", "mapping"]),
    case("rules-not-a-mapping", """
        rules:
          - a
        """, ["Rulesfile.yaml:1", "'rules'", "mapping"]),
    case("rule-not-a-mapping", """
        rules:
          a: [x, y]
        """, ["Rulesfile.yaml:2", "rule 'a'", "mapping"]),
    case("bad-var-name", """
        vars:
          my-var: 1
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:2", "'my-var'"]),

    # --- rule fields ---------------------------------------------------------------------
    case("phony-not-bool", """
        rules:
          test:
            phony: yes-please
            command: ./prog
        """, ["Rulesfile.yaml:3", "rule 'test'", "'phony'", "true or false"]),
    case("always-not-bool", """
        rules:
          test:
            always: 1
            command: ./prog
        """, ["Rulesfile.yaml:3", "rule 'test'", "'always'"]),
    case("phony-with-outputs", """
        rules:
          test:
            phony: true
            outputs: [log.txt]
            command: ./prog > log.txt
        """, ["Rulesfile.yaml:4", "rule 'test'", "phony", "outputs"]),
    case("deps-a-mapping", """
        rules:
          prog:
            deps: {prog.c: lib.c}
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'deps'", "mapping"]),
    case("deps-item-a-mapping", """
        rules:
          prog:
            deps: [a.c, {b: c}]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'deps'"]),
    case("command-a-mapping", """
        rules:
          prog:
            command: {run: cc}
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'command'"]),
    case("env-not-a-mapping", """
        rules:
          prog:
            env: [CC=gcc]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'env'", "mapping"]),
    case("env-value-a-list", """
        rules:
          prog:
            env:
              CFLAGS: [-O2]
            command: cc
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:4"), "rule 'prog'", "'CFLAGS'"]),
    case("two-percents", """
        rules:
          "%.%.o":
            deps: ["%.c"]
            command: cc
        """, ["Rulesfile.yaml:2", "rule '%.%.o'", "'%'"]),

    # --- foreach ---------------------------------------------------------------------------
    case("foreach-a-list", """
        rules:
          "{{ n }}.out":
            foreach: [a, b]
            command: touch {{ target }}
        """, ["Rulesfile.yaml:3", "rule '{{ n }}.out'", "'foreach'", "mapping"]),
    case("foreach-a-number", """
        rules:
          "{{ n }}.out":
            foreach: 3
            command: touch {{ target }}
        """, ["Rulesfile.yaml:3", "rule '{{ n }}.out'", "'foreach'"]),
    case("foreach-value-a-number", """
        rules:
          "{{ n }}.out":
            foreach:
              n: 3
            command: touch {{ target }}
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:4"), "rule '{{ n }}.out'", "'n'"]),
    case("foreach-undefined-var", """
        rules:
          "{{ n }}.out":
            foreach:
              n: "{{ names }}"
            command: touch {{ target }}
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:4"), "rule '{{ n }}.out'", "'names'"]),
    case("foreach-undefined-var-in-item", """
        rules:
          "{{ n }}.out":
            foreach:
              n: [a, "{{ nope }}"]
            command: touch {{ target }}
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:4"), "rule '{{ n }}.out'", "'nope'"]),
    case("foreach-name-refers-to-another", """
        rules:
          "{{ a }}-{{ b }}":
            foreach:
              a: [x, y]
              b: ["{{ a }}1"]
            command: touch {{ target }}
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:5"), "rule '{{ a }}-{{ b }}'", "'a'"]),

    # --- templates -------------------------------------------------------------------------
    case("undefined-var-in-command", """
        vars:
          cc: gcc
        rules:
          prog:
            deps: [prog.c]
            command: "{{ ccc }} -o prog prog.c"
        """, ["Rulesfile.yaml:6", "rule 'prog'", "'ccc'", "undefined"], files={"prog.c": ""}),
    case("undefined-var-in-second-command", """
        rules:
          prog:
            command:
              - echo ok
              - "echo {{ missing }}"
        """, [("Rulesfile.yaml:3", "Rulesfile.yaml:5"), "rule 'prog'", "'missing'"]),
    case("undefined-var-in-deps", """
        rules:
          prog:
            deps: ["{{ srcs }}"]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'srcs'", "undefined"]),
    case("undefined-var-in-target-key", """
        rules:
          "{{ name }}.o":
            command: cc
        """, ["Rulesfile.yaml:2", "'name'", "undefined"]),
    case("undefined-var-in-env", """
        rules:
          prog:
            env: {CC: "{{ compiler }}"}
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'compiler'"]),
    case("undefined-var-in-depfile", """
        rules:
          prog:
            depfile: "{{ dfile }}"
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'dfile'"]),
    case("undefined-attribute-of-var", """
        vars:
          programs: {prog: [a.c]}
        rules:
          prog:
            deps: ["{{ programs.prgo }}"]
            command: cc
        """, ["Rulesfile.yaml:5", "rule 'prog'", "prgo"]),
    case("stem-outside-pattern-rule", """
        rules:
          prog:
            command: "cc {{ stem }}"
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'stem'"]),
    case("dep-without-deps", """
        rules:
          prog:
            command: "cc {{ dep }}"
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'dep'"]),
    case("template-syntax-error", """
        vars:
          cc: gcc
        rules:
          prog:
            command: "{{ cc }"
        """, ["Rulesfile.yaml:5", "rule 'prog'", "syntax"]),
    case("template-syntax-error-block", """
        rules:
          prog:
            deps: ["{% if x %}a.c"]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "syntax"]),
    case("template-type-error", """
        vars:
          cc: gcc
        rules:
          prog:
            command: "{{ cc + 1 }}"
        """, ["Rulesfile.yaml:5", "rule 'prog'", "cc + 1"]),
    case("template-division-by-zero", """
        rules:
          prog:
            deps: ["{{ 1 // 0 }}"]
            command: cc
        """, ["Rulesfile.yaml:3", "rule 'prog'", "1 // 0"]),
    case("unknown-filter", """
        rules:
          prog:
            command: "cc {{ 'a' | shellquote }}"
        """, ["Rulesfile.yaml:3", "rule 'prog'", "shellquote"]),

    # --- the graph -------------------------------------------------------------------------
    case("cycle", """
        rules:
          a:
            deps: [b]
            command: x
          b:
            deps: [a]
            command: y
        """, ["Rulesfile.yaml:", "cycle", "a -> b -> a"]),
    case("cycle-reached-from-elsewhere", """
        rules:
          all:
            deps: [a]
          a:
            deps: [b]
          b:
            deps: [c]
          c:
            deps: [a]
        """, ["Rulesfile.yaml:", "a -> b -> c -> a"]),
    case("self-cycle", """
        rules:
          a:
            deps: [a]
            command: x
        """, ["Rulesfile.yaml:2", "rule 'a'", "a -> a"]),
    case("missing-source", """
        rules:
          prog:
            deps: [prog.c]
            command: cc
        """, ["Rulesfile.yaml:2", "rule 'prog'",
              "no rule to make target 'prog.c', needed by 'prog'"]),
    case("missing-source-through-pattern", """
        rules:
          all:
            deps: [x.o]
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
        """, ["Rulesfile.yaml:2", "rule 'all'", "no rule to make target 'x.o', needed by 'all'"]),
    case("unknown-target-on-command-line", """
        rules:
          prog:
            command: cc
        """, ["no rule to make target 'progg'", "did you mean 'prog'"], args=["progg"]),
    case("unknown-pattern-target-on-command-line", """
        rules:
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
        """, ["no rule to make target 'y.o'"], args=["y.o"]),
    case("unknown-default", """
        default: nothing
        rules:
          prog:
            command: cc
        """, ["Rulesfile.yaml:1: default target 'nothing': no rule makes it"]),
    case("directory-as-dep", """
        rules:
          prog:
            deps: [src]
            command: cc
        """, ["Rulesfile.yaml:2", "rule 'prog'", "'src'", "directory"], files={"src": DIRECTORY}),
    case("same-output-from-two-rules", """
        rules:
          gen1:
            outputs: [x.h]
            command: one
          gen2:
            outputs: [x.h]
            command: two
        """, ["Rulesfile.yaml:", "'x.h'", "'gen1'", "'gen2'"]),
    case("same-target-after-normalisation", """
        rules:
          out/x:
            command: one
          ./out/../out/x:
            command: two
        """, ["Rulesfile.yaml:4", "'out/x'"]),

    # --- pools -----------------------------------------------------------------------------
    case("unknown-pool", """
        pools:
          link: 1
        rules:
          prog:
            pool: lnk
            command: ld
        """, ["Rulesfile.yaml:5", "rule 'prog'", "'lnk'", "did you mean 'link'"]),
    case("pool-without-pools", """
        rules:
          prog:
            pool: link
            command: ld
        """, ["Rulesfile.yaml:3", "rule 'prog'", "'link'"]),
    case("pool-size-zero", """
        pools:
          link: 0
        rules:
          prog: {pool: link, command: ld}
        """, ["Rulesfile.yaml:2", "'link'", "positive"]),
    case("pool-size-a-string", """
        pools:
          link: many
        rules:
          prog: {command: ld}
        """, ["Rulesfile.yaml:2", "'link'", "many"]),

    # --- includes --------------------------------------------------------------------------
    case("missing-include", """
        include: [parts/nothere.yaml]
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:1", "parts/nothere.yaml"]),
    case("include-cycle", """
        include: [a.yaml]
        rules:
          top: {command: x}
        """, ["a.yaml:1: include cycle: Rulesfile.yaml -> a.yaml -> Rulesfile.yaml"],
        files={"a.yaml": "include: [Rulesfile.yaml]\n"}),
    case("include-self", """
        include: [Rulesfile.yaml]
        rules:
          top: {command: x}
        """, ["Rulesfile.yaml:1: include cycle: Rulesfile.yaml -> Rulesfile.yaml"]),
    case("same-target-in-two-files", """
        include: [inc.yaml]
        rules:
          a: {command: one}
        """, ["Rulesfile.yaml:3", "inc.yaml:3", "'a'"],
        files={"inc.yaml": """
            rules:
              b: {command: b}
              a: {command: two}
            """}),
    case("pool-with-two-sizes-across-includes", """
        pools:
          link: 1
        include: [sub/inc.yaml]
        rules:
          a: {command: one}
        """, ["Rulesfile.yaml:2", "sub/inc.yaml:3", "'link'"],
        files={"sub/inc.yaml": """
            pools:
              compile: 4
              link: 2
            """}),
    case("error-inside-included-file", """
        include: [sub/inc.yaml]
        rules:
          a: {command: one}
        """, ["sub/inc.yaml:4", "rule 'b'", "'depz'", "did you mean 'deps'"],
        files={"sub/inc.yaml": """
            rules:
              b:
                command: b
                depz: [a]
            """}),
    case("missing-source-in-included-rule", """
        include: [sub/inc.yaml]
        rules:
          a: {deps: [b], command: one}
        """, ["sub/inc.yaml:2", "rule 'b'", "no rule to make target 'gone.c', needed by 'b'"],
        files={"sub/inc.yaml": """
            rules:
              b: {deps: [gone.c], command: b}
            """}),

    # --- a NUL character, which no path or command can hold ---------------------------------
    case("nul-in-a-dep", """
        rules:
          a:
            deps: ["x\\0y"]
            command: x
        """, ["Rulesfile.yaml:3", "rule 'a'", "NUL character"]),
    case("nul-in-a-var", """
        vars:
          v: "\\x00"
        rules:
          a: {command: "echo {{ v }}"}
        """, ["Rulesfile.yaml:2", "NUL character"]),
    case("depfile-template-error-quotes-what-was-written", """
        rules:
          "%.o":
            deps: ["%.c"]
            command: x
            depfile: "{{ nope }}%.d"
        """, ["Rulesfile.yaml:", "rule '%.o' (target 'a.o')", "in depfile",
              "'nope' in template '{{ nope }}%.d'"], files={"a.c": ""}, args=["a.o"]),
    case("nul-twice-the-first-is-named", """
        rules:
          first:
            command: x
            deps: ["a\\0"]
          second:
            command: x
            deps: ["b\\0"]
        """, ["Rulesfile.yaml:4", "rule 'first'", "NUL character"]),
    case("nul-in-a-rule-name-is-shown-escaped", """
        rules:
          "a\\0b": {command: x}
        """, ["Rulesfile.yaml:2", "rule 'a\\0b'", "NUL character"]),
    case("nul-escape-in-a-comment-and-a-recursive-alias", """
        # printf 'a\\0b'
        vars:
          r: &r [*r]
        rules:
          a: {command: x}
        """, ["Rulesfile.yaml:3", "recursive"]),
    case("nul-from-a-template", """
        rules:
          a:
            command: x
            depfile: 'd{{ "\\x00" }}'
        """, ["Rulesfile.yaml:", "rule 'a'", "in depfile", "NUL character"]),
    case("nul-from-a-template-in-a-command", """
        rules:
          a: {command: 'echo {{ "\\u0000" }}'}
        """, ["Rulesfile.yaml:", "rule 'a'", "in command", "NUL character"]),

    # --- the command line ------------------------------------------------------------------
    case("bad-override-name", """
        rules:
          a: {command: x}
        """, ["1x=3"], args=["1x=3"]),
    case("bad-override-yaml", """
        rules:
          a: {command: x}
        """, ["xs=[a,"], args=["xs=[a,"]),
    case("no-rulesfile", NO_RULESFILE,
         ["no Rulesfile in {tmp} (looked for Rulesfile.yaml, Rulesfile.yml, Rulesfile)"]),
    case("dash-f-missing", NO_RULESFILE, ["nope.yaml"], args=["-f", "nope.yaml"]),
]


def _found(expected, stderr: str) -> bool:
    options = expected if isinstance(expected, tuple) else (expected,)
    return any(option in stderr for option in options)


@pytest.mark.parametrize("rulesfile, files, args, expected", CASES)
def test_broken_rulesfile(tmp_path, rulesfile, files, args, expected):
    write_project(tmp_path, rulesfile, files)
    result = run_cli(["build", "-n", "-C", tmp_path, *args], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert result.stdout == "", result.describe()
    expected = [e.replace("{tmp}", str(tmp_path)) if isinstance(e, str) else e
                for e in expected]
    missing = [e for e in expected if not _found(e, result.stderr)]
    assert not missing, f"missing {missing} in:\n{result.describe()}"
    assert "Traceback" not in result.stderr


def test_case_table_is_large_enough():
    assert len(CASES) >= 25


# --- the same errors through other commands and the console script ----------------------

def test_missing_dash_c_directory_is_usage_error(tmp_path):
    result = run_cli(["build", "-n", "-C", tmp_path / "nope"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "nope" in result.stderr


@pytest.mark.parametrize("command", [["list"], ["graph"], ["graph", "--format", "json"]])
def test_structural_error_in_every_command(tmp_path, command):
    write_project(tmp_path, "rules:\n  a:\n    dep: [x]\n")
    result = run_cli([*command, "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert result.stdout == ""
    assert "Rulesfile.yaml:3" in result.stderr and "'dep'" in result.stderr


def test_graph_reports_cycle(tmp_path):
    write_project(tmp_path, "rules:\n  a: {deps: [b]}\n  b: {deps: [a]}\n")
    result = run_cli(["graph", "--format", "json", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "a -> b -> a" in result.stderr


def test_error_names_file_given_with_dash_f(tmp_path):
    write_project(tmp_path, None, {"conf/build.yaml": "rules:\n  a:\n    bogus: 1\n"})
    result = run_cli(["build", "-n", "-C", tmp_path, "-f", "conf/build.yaml"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "conf/build.yaml:3" in result.stderr
    assert "'bogus'" in result.stderr


def test_template_error_in_unneeded_rule_does_not_stop_build(tmp_path):
    write_project(tmp_path, """
        rules:
          good:
            phony: true
            command: echo good
          bad:
            command: "echo {{ undefined_thing }}"
        """)
    result = run_cli(["build", "-n", "-C", tmp_path, "good"], cwd=tmp_path)
    assert (result.exit_code, result.lines) == (0, ["echo good"]), result.describe()
    result = run_cli(["build", "-n", "-C", tmp_path, "bad"], cwd=tmp_path)
    assert result.exit_code == 2 and "'undefined_thing'" in result.stderr


def test_missing_source_as_needed_by_reports_the_needed_target(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: [prog]
          prog:
            deps: [prog.o]
            command: cc -o prog prog.o
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
        """)
    result = run_cli(["build", "-n", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "no rule to make target 'prog.o', needed by 'prog'" in result.stderr


@pytest.mark.integration
def test_console_script_reports_cycle(tmp_path):
    write_project(tmp_path, "rules:\n  a: {deps: [b], command: x}\n  b: {deps: [a], command: y}\n")
    result = run_subprocess(["build", "-n"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert result.stdout == ""
    assert "a -> b -> a" in result.stderr and "Rulesfile.yaml" in result.stderr


@pytest.mark.integration
def test_console_script_refuses_a_nul_in_a_dep(tmp_path):
    write_project(tmp_path, 'rules:\n  a:\n    deps: ["x\\0y"]\n    command: x\n')
    result = run_subprocess(["build"], tmp_path)
    assert result.exit_code == 2, result.describe()
    assert "Rulesfile.yaml:3: rule 'a': a string holds a NUL character" in result.stderr, \
        result.describe()
    assert "Traceback" not in result.stderr


def test_nested_aliases_are_looked_at_once_for_a_nul(tmp_path):
    """A `\\0` in the text makes the loader look at every string for a NUL; 40 levels of
    aliases, each using the one before twice, must not be walked 2**40 times."""
    levels = ["vars:", "  l0: &l0 [x, x]"]
    levels += [f"  l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 40)]
    write_project(tmp_path, "\n".join([*levels, "rules:", "  a:",
                                       "    command: printf 'a\\0b' | xargs -0 echo", ""]))
    result = run_cli(["build", "-n", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert result.lines == ["printf 'a\\0b' | xargs -0 echo"]
