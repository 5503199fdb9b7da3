"""Every example of the Rulesfile spec (the contract docs/rulesfile.md describes), through the CLI.

Each test writes a project into tmp_path and checks the exact list of commands that
`rlmake build -n` prints: a build from scratch, in dependency order.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import (DIRECTORY, assert_commands, build_n, run_cli, run_subprocess,
                      write_project)
from rlmake import __version__

SMALLEST = """
rules:
  all:
    deps: [prog, prog2]
  prog:
    deps: [prog.o, lib.o]
    command: gcc -o prog prog.o lib.o
  prog2:
    deps: [prog2.o, lib.o]
    command: gcc -o prog2 prog2.o lib.o
  prog.o:
    deps: [prog.c]
    command: gcc -c prog.c
  prog2.o:
    deps: [prog2.c]
    command: gcc -c prog2.c
  lib.o:
    deps: [lib.c]
    command: gcc -c lib.c
"""

FULLER = """
vars:
  cc: gcc
  cflags: -O2 -Wall
  programs:
    prog: [prog.c, lib.c]
    prog2: [prog2.c, lib.c]

default: all

pools:
  link: 1

rules:
  all:
    phony: true
    deps: ["{{ programs.keys() | list }}"]

  "{{ name }}":
    foreach:
      name: "{{ programs.keys() | list }}"
    deps: ["{{ programs[name] | map('replace', '.c', '.o') | list }}"]
    command: "{{ cc }} -o {{ target | quote }} {{ deps | quote_all }}"
    pool: link
    description: "LINK {{ target }}"

  "%.o":
    deps: ["%.c"]
    command: "{{ cc }} {{ cflags }} -c {{ dep | quote }} -o {{ target | quote }}"
    description: "CC {{ dep }}"

  test:
    phony: true
    deps: [prog, prog2]
    command:
      - ./prog
      - ./prog2
"""

C_SOURCES = {"prog.c": "int main() { return 0; }\n", "lib.c": "int lib;\n",
             "prog2.c": "int main() { return 1; }\n"}

SMALLEST_COMMANDS = [
    "gcc -c prog.c",
    "gcc -c lib.c",
    "gcc -o prog prog.o lib.o",
    "gcc -c prog2.c",
    "gcc -o prog2 prog2.o lib.o",
]


SMALLEST_AFTER = {
    "gcc -o prog prog.o lib.o": ["gcc -c prog.c", "gcc -c lib.c"],
    "gcc -o prog2 prog2.o lib.o": ["gcc -c prog2.c", "gcc -c lib.c"],
}


def fuller_after(cc: str) -> dict[str, list[str]]:
    return {
        f"{cc} -o prog prog.o lib.o": [f"{cc} -O2 -Wall -c prog.c -o prog.o",
                                        f"{cc} -O2 -Wall -c lib.c -o lib.o"],
        f"{cc} -o prog2 prog2.o lib.o": [f"{cc} -O2 -Wall -c prog2.c -o prog2.o",
                                          f"{cc} -O2 -Wall -c lib.c -o lib.o"],
    }


def fuller_commands(cc: str) -> list[str]:
    return [
        f"{cc} -O2 -Wall -c prog.c -o prog.o",
        f"{cc} -O2 -Wall -c lib.c -o lib.o",
        f"{cc} -o prog prog.o lib.o",
        f"{cc} -O2 -Wall -c prog2.c -o prog2.o",
        f"{cc} -o prog2 prog2.o lib.o",
    ]


# --- the smallest Rulesfile ------------------------------------------------------------

def test_smallest_rulesfile_default_is_first_rule(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    assert_commands(build_n(tmp_path), SMALLEST_COMMANDS, SMALLEST_AFTER)


def test_smallest_rulesfile_one_target(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    assert_commands(build_n(tmp_path, "prog2"),
                    ["gcc -c prog2.c", "gcc -c lib.c", "gcc -o prog2 prog2.o lib.o"],
                    SMALLEST_AFTER)


def test_smallest_rulesfile_two_targets_share_jobs(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    assert_commands(build_n(tmp_path, "lib.o", "prog"),
                    ["gcc -c lib.c", "gcc -c prog.c", "gcc -o prog prog.o lib.o"],
                    SMALLEST_AFTER)


def test_build_n_runs_nothing(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    build_n(tmp_path)
    written = sorted(p for p in os.listdir(tmp_path) if p != ".rlmake")
    assert written == ["Rulesfile.yaml", "lib.c", "prog.c", "prog2.c"]


# --- the fuller example -----------------------------------------------------------------

def test_fuller_example_default(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    assert_commands(build_n(tmp_path), fuller_commands("gcc"), fuller_after("gcc"))


def test_fuller_example_with_override(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    assert_commands(build_n(tmp_path, "cc=clang"), fuller_commands("clang"),
                    fuller_after("clang"))


def test_fuller_example_override_after_target(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    assert_commands(build_n(tmp_path, "all", "cc=clang"), fuller_commands("clang"),
                    fuller_after("clang"))


def test_fuller_example_test_target(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    lines = build_n(tmp_path, "test")
    assert_commands(lines, fuller_commands("gcc") + ["./prog", "./prog2"], fuller_after("gcc"))
    assert lines[-2:] == ["./prog", "./prog2"]      # one job's commands, in order, last


def test_fuller_example_quotes_paths_with_spaces(tmp_path):
    text = FULLER.replace("prog2: [prog2.c, lib.c]", "prog2: [my prog2.c, lib.c]")
    write_project(tmp_path, text, {**C_SOURCES, "my prog2.c": ""})
    lines = build_n(tmp_path, "prog2")
    assert sorted(lines[:2]) == ["gcc -O2 -Wall -c 'my prog2.c' -o 'my prog2.o'",
                                 "gcc -O2 -Wall -c lib.c -o lib.o"]
    assert lines[2:] == ["gcc -o prog2 'my prog2.o' lib.o"]


def test_phony_one_liner_from_always_row(tmp_path):
    write_project(tmp_path, """
        rules:
          prog:
            deps: [prog.c]
            command: gcc -o prog prog.c
          test: {deps: [prog], command: ./prog --selftest, phony: true}
        """, {"prog.c": ""})
    assert build_n(tmp_path, "test") == ["gcc -o prog prog.c", "./prog --selftest"]


def test_always_rule_is_printed(tmp_path):
    write_project(tmp_path, """
        rules:
          stamp:
            always: true
            command: date > stamp
        """)
    assert build_n(tmp_path) == ["date > stamp"]


# --- depfiles ---------------------------------------------------------------------------

DEPFILE = """
rules:
  prog:
    deps: [prog.o]
    command: gcc -o prog prog.o
  "%.o":
    deps: ["%.c"]
    command: gcc -MMD -MF {{ target }}.d -c {{ dep }} -o {{ target }}
    depfile: "{{ target }}.d"
"""


def test_depfile_example(tmp_path):
    write_project(tmp_path, DEPFILE, {"prog.c": "#include \"prog.h\"\n", "prog.h": ""})
    assert build_n(tmp_path) == ["gcc -MMD -MF prog.o.d -c prog.c -o prog.o",
                                 "gcc -o prog prog.o"]


def test_depfile_is_not_an_output_and_not_a_dep(tmp_path):
    write_project(tmp_path, DEPFILE, {"prog.c": "", "prog.h": ""})
    result = run_cli(["graph", "--format", "json", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    jobs = {job["target"]: job for job in json.loads(result.stdout)["jobs"]}
    assert jobs["prog.o"]["depfile"] == "prog.o.d"
    assert jobs["prog.o"]["outputs"] == ["prog.o"]
    assert jobs["prog.o"]["deps"] == ["prog.c"]


# --- templates: glob, splicing ----------------------------------------------------------

def test_glob_splices_one_dep_per_file(tmp_path):
    write_project(tmp_path, """
        rules:
          app:
            deps: ["{{ glob('src/*.c') | map('replace', '.c', '.o') | list }}"]
            command: cc -o app {{ deps | join(' ') }}
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }} -o {{ target }}
        """, {"src/b.c": "", "src/a.c": "", "src/notes.txt": "", "src/sub/deep.c": ""})
    lines = build_n(tmp_path)
    assert sorted(lines[:2]) == ["cc -c src/a.c -o src/a.o", "cc -c src/b.c -o src/b.o"]
    assert lines[2:] == ["cc -o app src/a.o src/b.o"]


def test_glob_double_star_recurses_and_skips_dot_names(tmp_path):
    write_project(tmp_path, """
        rules:
          list:
            phony: true
            command:
              - "echo {{ glob('src/**/*.c') | join(' ') }}"
              - "echo {{ glob('**/*.c') | join(' ') }}"
              - "echo {{ glob('src/*') | join(' ') }}"
        """, {"src/top.c": "", "src/x/y/deep.c": "", "src/x/mid.c": "", "src/.hidden.c": "",
              "src/.dot/in.c": "", ".rlmake/cached.c": "", "root.c": "",
              "src/x/readme": "", "src/emptydir": DIRECTORY})
    assert build_n(tmp_path) == [
        "echo src/top.c src/x/mid.c src/x/y/deep.c",
        "echo root.c src/top.c src/x/mid.c src/x/y/deep.c",
        "echo src/top.c",
    ]


def test_glob_in_deps_with_pattern_rule_and_spaces(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: ["{{ glob('*.txt') }}"]
            command: cat {{ deps | quote_all }} > all
        """, {"b.txt": "", "a b.txt": ""})
    assert build_n(tmp_path) == ["cat 'a b.txt' b.txt > all"]


def test_whole_expression_string_is_one_entry_not_spliced(tmp_path):
    write_project(tmp_path, """
        vars:
          name: "[a, b]"
        rules:
          out:
            deps: ["{{ name }}"]
            command: "echo {{ deps | length }} {{ dep }}"
        """, {"[a, b]": ""})
    assert build_n(tmp_path) == ["echo 1 [a, b]"]


def test_var_values_are_taken_literally(tmp_path):
    write_project(tmp_path, """
        vars:
          a: "{{ b }}"
        rules:
          out:
            phony: true
            command: "echo '{{ a }}'"
        """)
    assert build_n(tmp_path) == ["echo '{{ b }}'"]


# --- foreach ----------------------------------------------------------------------------

FOREACH_TWO = """
rules:
  "out/{{ os }}-{{ arch }}.txt":
    foreach:
      os: [linux, mac]
      arch: [x86, arm, riscv]
    command: echo {{ os }} {{ arch }} > {{ target }}
"""


def test_foreach_two_names_cartesian_product_first_outermost(tmp_path):
    write_project(tmp_path, FOREACH_TWO)
    result = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert [line.split()[0] for line in result.lines] == [
        "out/linux-x86.txt", "out/linux-arm.txt", "out/linux-riscv.txt",
        "out/mac-x86.txt", "out/mac-arm.txt", "out/mac-riscv.txt",
    ]


def test_foreach_default_is_first_copy(tmp_path):
    write_project(tmp_path, FOREACH_TWO)
    assert build_n(tmp_path) == ["echo linux x86 > out/linux-x86.txt"]


def test_foreach_default_is_first_copy_of_template_list(tmp_path):
    write_project(tmp_path, """
        vars: {oses: [linux, mac]}
        rules:
          "{{ os }}.txt":
            foreach:
              os: "{{ oses }}"
            command: echo {{ os }} > {{ target }}
        """)
    assert build_n(tmp_path) == ["echo linux > linux.txt"]


def test_default_skips_pattern_rules(tmp_path):
    write_project(tmp_path, """
        rules:
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
          prog:
            deps: [a.o]
            command: cc -o prog a.o
        """, {"a.c": ""})
    assert build_n(tmp_path) == ["cc -c a.c", "cc -o prog a.o"]


def test_default_list(tmp_path):
    write_project(tmp_path, SMALLEST.replace("rules:", "default: [lib.o, prog.o]\nrules:", 1),
                  C_SOURCES)
    assert_commands(build_n(tmp_path), ["gcc -c lib.c", "gcc -c prog.c"])


def test_foreach_copies_build_by_name(tmp_path):
    write_project(tmp_path, FOREACH_TWO)
    assert_commands(build_n(tmp_path, "out/mac-arm.txt", "out/linux-riscv.txt"),
                    ["echo mac arm > out/mac-arm.txt", "echo linux riscv > out/linux-riscv.txt"])


def test_foreach_list_from_template_var(tmp_path):
    write_project(tmp_path, """
        vars:
          langs: [en, fr]
        rules:
          all:
            deps: [en.html, fr.html]
          "{{ lang }}.html":
            foreach:
              lang: "{{ langs }}"
            deps: ["{{ lang }}.md"]
            command: pandoc {{ dep }} -o {{ target }}
        """, {"en.md": "", "fr.md": ""})
    assert_commands(build_n(tmp_path), ["pandoc en.md -o en.html", "pandoc fr.md -o fr.html"])


def test_foreach_empty_list_gives_no_copies(tmp_path):
    write_project(tmp_path, """
        default: all
        rules:
          all:
            phony: true
            command: echo done
          "{{ x }}.out":
            foreach:
              x: []
            command: touch {{ target }}
        """)
    assert build_n(tmp_path) == ["echo done"]
    result = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert [line.split()[0] for line in result.lines] == ["all"]


# --- pattern rules ----------------------------------------------------------------------

def test_pattern_chaining(tmp_path):
    write_project(tmp_path, """
        rules:
          prog:
            deps: [x.o]
            command: cc -o prog x.o
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }} -o {{ target }}
          "%.c":
            deps: ["%.c.in"]
            command: gen {{ dep }} > {{ target }}
        """, {"x.c.in": ""})
    assert build_n(tmp_path) == ["gen x.c.in > x.c", "cc -c x.c -o x.o", "cc -o prog x.o"]


def test_pattern_chain_two_targets(tmp_path):
    write_project(tmp_path, """
        rules:
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
          "%.c":
            deps: ["%.c.in"]
            command: gen {{ dep }}
        """, {"x.c": "", "y.c.in": ""})
    assert_commands(build_n(tmp_path, "y.o", "x.o"), ["gen y.c.in", "cc -c y.c", "cc -c x.c"],
                    {"cc -c y.c": ["gen y.c.in"]})


def test_explicit_rule_beats_pattern(tmp_path):
    write_project(tmp_path, """
        rules:
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
          special.o:
            deps: [special.c]
            command: special-cc special.c
        """, {"special.c": "", "plain.c": ""})
    assert_commands(build_n(tmp_path, "special.o", "plain.o"),
                    ["special-cc special.c", "cc -c plain.c"])


def test_explicit_rule_without_command_beats_pattern(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: [lib.o, x.o]
          "%.o":
            deps: ["%.c"]
            command: cc -c {{ dep }}
          lib.o:
            deps: [lib.c]
        """, {"lib.c": "", "x.c": ""})
    assert build_n(tmp_path) == ["cc -c x.c"]


def test_first_listed_pattern_wins_not_shortest_stem(tmp_path):
    write_project(tmp_path, """
        rules:
          "%.o":
            deps: ["%.c"]
            command: generic {{ stem }}
          "src/%.o":
            deps: ["src/%.c"]
            command: specific {{ stem }}
        """, {"src/x.c": ""})
    assert build_n(tmp_path, "src/x.o") == ["generic src/x"]


def test_pattern_that_does_not_apply_is_skipped(tmp_path):
    write_project(tmp_path, """
        rules:
          "%.o":
            deps: ["%.cpp"]
            command: c++ -c {{ dep }}
          "src/%.o":
            deps: ["src/%.c"]
            command: cc -c {{ dep }}
        """, {"src/x.c": "", "y.cpp": ""})
    assert_commands(build_n(tmp_path, "src/x.o", "y.o"), ["cc -c src/x.c", "c++ -c y.cpp"])


def test_stem_matches_slashes(tmp_path):
    write_project(tmp_path, """
        rules:
          "out/%.txt":
            deps: ["in/%.src"]
            command: conv {{ stem }} {{ dep }} {{ target }}
        """, {"in/a/b.src": ""})
    assert build_n(tmp_path, "out/a/b.txt") == ["conv a/b in/a/b.src out/a/b.txt"]


def test_percent_in_outputs(tmp_path):
    write_project(tmp_path, """
        rules:
          main.o:
            deps: [main.c, parse.tab.c]
            command: cc -c main.c parse.tab.c
          "%.tab.c":
            deps: ["%.y"]
            outputs: ["%.tab.h"]
            command: "bison -d {{ dep }} -o {{ target }} # {{ outputs | join(' ') }}"
        """, {"main.c": "", "parse.y": ""})
    assert build_n(tmp_path) == ["bison -d parse.y -o parse.tab.c # parse.tab.c parse.tab.h",
                                 "cc -c main.c parse.tab.c"]


def test_percent_in_outputs_builds_via_either_output(tmp_path):
    write_project(tmp_path, """
        rules:
          main.o:
            deps: [parse.tab.h, main.c, parse.tab.c]
            command: cc -c main.c parse.tab.c
          "%.tab.c":
            deps: ["%.y"]
            outputs: ["%.tab.h"]
            command: bison -d {{ dep }}
        """, {"main.c": "", "parse.y": ""})
    assert build_n(tmp_path) == ["bison -d parse.y", "cc -c main.c parse.tab.c"]


# --- template variables -----------------------------------------------------------------

def test_quote_and_quote_all(tmp_path):
    write_project(tmp_path, """
        vars:
          name: my file.c
          flags: ["-D X=1", -O2, "it's"]
        rules:
          out:
            phony: true
            command: "cc {{ name | quote }} {{ flags | quote_all }} {{ 'plain' | quote }}"
        """)
    assert build_n(tmp_path) == [
        """cc 'my file.c' '-D X=1' -O2 'it'"'"'s' plain"""]


def test_outputs_and_dep_variables(tmp_path):
    write_project(tmp_path, """
        rules:
          app:
            deps: [gen.c, gen.h]
            command: cc -o app gen.c
          gen.c:
            deps: [gen.py, table.txt]
            outputs: [gen.h]
            command: "python {{ dep }} {{ outputs | join(' ') }} # {{ deps | join(',') }} -> {{ target }}"
        """, {"gen.py": "", "table.txt": ""})
    assert build_n(tmp_path) == ["python gen.py gen.c gen.h # gen.py,table.txt -> gen.c",
                                 "cc -o app gen.c"]


def test_extra_output_builds_the_rule_once(tmp_path):
    write_project(tmp_path, """
        rules:
          gen.c:
            outputs: [gen.h]
            command: gen
        """)
    assert build_n(tmp_path, "gen.h") == ["gen"]
    assert build_n(tmp_path, "gen.h", "gen.c") == ["gen"]


def test_block_scalar_command_trailing_newline_dropped(tmp_path):
    write_project(tmp_path, """
        rules:
          a:
            phony: true
            command: |
              echo one
          b:
            phony: true
            deps: [a]
            command:
              - |
                echo two
              - >
                echo
                three
        """)
    result = run_cli(["build", "-n", "-C", tmp_path, "b"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert result.stdout == "echo one\necho two\necho three\n"


def test_env_and_description_do_not_print(tmp_path):
    write_project(tmp_path, """
        rules:
          a:
            phony: true
            env: {GREETING: "hi {{ target }}"}
            description: "SAY {{ target }}"
            command: echo "$GREETING"
        """)
    assert build_n(tmp_path) == ['echo "$GREETING"']


def test_path_normalisation(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: [./x.o, sub/../y.o, ./sub/../x.o, "{{ './z.o' }}"]
          x.o:
            deps: [./x.c]
            command: cc -c {{ dep }} -o {{ target }}
          ./y.o:
            deps: [y.c]
            command: cc -c {{ dep }} -o {{ target }}
          "%.o":
            deps: ["./%.c"]
            command: pat {{ dep }} {{ target }}
        """, {"x.c": "", "y.c": "", "z.c": ""})
    assert_commands(build_n(tmp_path), ["cc -c x.c -o x.o", "cc -c y.c -o y.o", "pat z.c z.o"])
    assert_commands(build_n(tmp_path, "./y.o", "a/../x.o"),
                    ["cc -c y.c -o y.o", "cc -c x.c -o x.o"])


def test_absolute_paths_inside_project_become_relative(tmp_path):
    write_project(tmp_path, f"""
        rules:
          out:
            deps: [{tmp_path}/in.txt]
            command: "cat {{{{ dep }}}} > {{{{ target }}}}"
        """, {"in.txt": ""})
    assert build_n(tmp_path) == ["cat in.txt > out"]
    assert build_n(tmp_path, str(tmp_path / "out")) == ["cat in.txt > out"]


def test_outputs_entry_spliced(tmp_path):
    write_project(tmp_path, """
        vars: {headers: [a.h, b.h]}
        rules:
          gen:
            outputs: ["{{ headers }}", ./c.h]
            command: "gen {{ outputs | join(' ') }}"
        """)
    assert build_n(tmp_path, "b.h") == ["gen gen a.h b.h c.h"]


def test_foreach_entry_spliced(tmp_path):
    write_project(tmp_path, """
        vars: {more: [c, d]}
        rules:
          "{{ f }}.txt":
            foreach: {f: [a, "{{ more }}"]}
            command: "echo {{ f }}"
        """)
    result = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert [line.split()[0] for line in result.lines] == ["a.txt", "c.txt", "d.txt"]


def test_foreach_values_keep_their_yaml_type(tmp_path):
    write_project(tmp_path, """
        rules:
          "{{ n }}.out":
            foreach:
              n: [1, 2]
            command: "echo {{ n * 10 }}"
        """)
    assert_commands(build_n(tmp_path, "1.out", "2.out"), ["echo 10", "echo 20"])


def test_deps_are_taken_as_written(tmp_path):
    write_project(tmp_path, """
        rules:
          all:
            deps: [on, 1.10]
          on:
            command: make-on
        """, {"1.10": ""})
    assert build_n(tmp_path) == ["make-on"]


def test_outputs_template_can_use_dep(tmp_path):
    write_project(tmp_path, """
        rules:
          parse.c:
            deps: [parse.y]
            outputs: ["{{ dep | replace('.y', '.h') }}"]
            command: "yacc -d {{ dep }} # {{ outputs | join(' ') }}"
        """, {"parse.y": ""})
    assert build_n(tmp_path, "parse.h") == ["yacc -d parse.y # parse.c parse.h"]


# --- vars and overrides -----------------------------------------------------------------

OVERRIDES = """
vars:
  n: 1
  xs: [z]
  x: default
rules:
  out:
    phony: true
    command:
      - "echo {{ n + 1 }}"
      - "echo {{ xs | join(',') }} {{ xs | length }}"
      - "echo [{{ x }}]"
"""


def test_overrides_typed_as_yaml(tmp_path):
    write_project(tmp_path, OVERRIDES)
    assert build_n(tmp_path) == ["echo 2", "echo z 1", "echo [default]"]
    assert build_n(tmp_path, "n=3", "xs=[a,b]", "x=") == ["echo 4", "echo a,b 2", "echo []"]


def test_override_may_add_a_var(tmp_path):
    write_project(tmp_path, """
        rules:
          out:
            phony: true
            command: "echo {{ extra }}"
        """)
    assert build_n(tmp_path, "extra=hello world") == ["echo hello world"]


def test_override_string_that_looks_like_yaml(tmp_path):
    write_project(tmp_path, """
        vars: {cc: gcc}
        rules:
          out:
            phony: true
            command: "{{ cc }} {{ cc is string }}"
        """)
    assert build_n(tmp_path, "cc=clang") == ["clang true"]     # booleans render as YAML writes them


def test_overridden_list_is_spliced_into_deps(tmp_path):
    write_project(tmp_path, """
        vars: {srcs: [a.c]}
        rules:
          out:
            deps: ["{{ srcs }}"]
            command: "cc {{ deps | join(' ') }}"
        """, {"a.c": "", "b.c": ""})
    assert build_n(tmp_path, "srcs=[a.c, b.c]") == ["cc a.c b.c"]


# --- include ----------------------------------------------------------------------------

def test_include_merges_vars_and_rules_including_file_wins(tmp_path):
    write_project(tmp_path, """
        vars:
          cc: clang
        include: [sub/inc.yaml]
        rules:
          prog:
            deps: [lib.o]
            command: "{{ cc }} -o prog lib.o"
        """, {
        "sub/inc.yaml": """
            vars:
              cc: gcc
              opt: -O1
            include: [more.yaml]
            default: lib.o
            rules:
              "%.o":
                deps: ["%.c"]
                command: "{{ cc }} {{ opt }} -c {{ dep }} # {{ extra }}"
            """,
        "sub/more.yaml": """
            vars:
              extra: nested
              opt: -O3
            """,
        "lib.c": "",
    })
    # default comes from the top file only: the first rule there, `prog`.
    assert build_n(tmp_path) == ["clang -O1 -c lib.c # nested", "clang -o prog lib.o"]


def test_included_rules_paths_are_project_relative(tmp_path):
    write_project(tmp_path, """
        include: [parts/gen.yaml]
        rules:
          all:
            deps: [out.txt]
        """, {
        "parts/gen.yaml": """
            rules:
              out.txt:
                deps: [in.txt, "{{ glob('*.in') }}"]
                command: "cat {{ deps | join(' ') }} > {{ target }}"
            """,
        "in.txt": "", "a.in": "", "parts/b.in": "",
    })
    assert build_n(tmp_path) == ["cat in.txt a.in > out.txt"]


# --- finding the Rulesfile --------------------------------------------------------------

def test_dash_f_subdirectory_is_project_dir(tmp_path):
    write_project(tmp_path, None, {
        "sub/build.yaml": """
            rules:
              out:
                deps: ["{{ glob('*.txt') }}"]
                command: "cat {{ deps | join(' ') }} > out"
            """,
        "sub/in.txt": "", "top.txt": "",
    })
    assert build_n(tmp_path, "-f", "sub/build.yaml") == ["cat in.txt > out"]


def test_dash_f_is_relative_to_dash_c(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_project(tmp_path / "proj", None, {
        "sub/build.yaml": """
            rules:
              out:
                deps: [in.txt]
                command: cat in.txt > out
            """,
        "sub/in.txt": "",
    })
    assert build_n(tmp_path / "proj", "-f", "sub/build.yaml", cwd=elsewhere) == [
        "cat in.txt > out"]


def test_dash_c_from_another_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_project(tmp_path / "proj", SMALLEST, C_SOURCES)
    assert_commands(build_n(tmp_path / "proj", cwd=elsewhere), SMALLEST_COMMANDS,
                    SMALLEST_AFTER)


def test_long_option_names(tmp_path):
    write_project(tmp_path / "p", None, {"r.yml": "rules: {a: {phony: true, command: hi}}\n"})
    result = run_cli(["build", "--dry-run", "--directory", tmp_path / "p", "--file", "r.yml"],
                     cwd=tmp_path)
    assert (result.exit_code, result.lines) == (0, ["hi"]), result.describe()


def one_rule(word: str) -> str:
    return f"rules:\n  a:\n    phony: true\n    command: echo {word}\n"


def test_rulesfile_name_lookup_order(tmp_path):
    (tmp_path / "Rulesfile").write_text(one_rule("plain"))
    assert build_n(tmp_path) == ["echo plain"]
    (tmp_path / "Rulesfile.yml").write_text(one_rule("yml"))
    assert build_n(tmp_path) == ["echo yml"]
    (tmp_path / "Rulesfile.yaml").write_text(one_rule("yaml"))
    assert build_n(tmp_path) == ["echo yaml"]


def test_rulesfile_in_cwd_without_dash_c(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    result = run_cli(["build", "-n"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert_commands(result.lines, SMALLEST_COMMANDS, SMALLEST_AFTER)


# --- list and graph ---------------------------------------------------------------------

def test_list_smallest(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    result = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert [line.split()[0] for line in result.lines] == [
        "all", "prog", "prog2", "prog.o", "prog2.o", "lib.o"]
    assert "aggregate" in result.lines[0]


def test_list_fuller(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    result = run_cli(["list", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    rows = [line.split(None, 1) for line in result.lines]
    assert [row[0] for row in rows] == ["all", "prog", "prog2", "test", "%.o"]
    assert "phony" in rows[0][1]
    assert rows[1][1] == "LINK prog"
    assert rows[2][1] == "LINK prog2"
    assert "phony" in rows[3][1]
    assert "pattern" in rows[4][1]


def test_graph_json(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    result = run_cli(["graph", "--format", "json", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    data = json.loads(result.stdout)
    assert data["requested"] == ["all"]
    assert sorted(data["sources"]) == ["lib.c", "prog.c", "prog2.c"]
    jobs = {job["target"]: job for job in data["jobs"]}
    assert [job["target"] for job in data["jobs"]] == ["prog.o", "lib.o", "prog", "prog2.o",
                                                        "prog2", "all"]
    assert jobs["prog"]["deps"] == ["prog.o", "lib.o"]
    assert jobs["prog"]["commands"] == ["gcc -o prog prog.o lib.o"]
    assert jobs["prog"]["pool"] == "link"
    assert jobs["prog"]["description"] == "LINK prog"
    assert jobs["prog"]["rule"] == "{{ name }}"
    assert jobs["prog.o"]["description"] == "CC prog.c"
    assert jobs["prog.o"]["rule"] == "%.o"
    assert jobs["all"]["deps"] == ["prog", "prog2"]
    assert jobs["all"]["phony"] is True
    assert jobs["all"]["commands"] == []
    assert sorted(jobs["all"]["needs"]) == ["prog", "prog2"]
    assert sorted(jobs["prog2"]["needs"]) == ["lib.o", "prog2.o"]
    assert jobs["lib.o"]["needs"] == []


def test_graph_json_with_target_and_override(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    result = run_cli(["graph", "--format", "json", "-C", tmp_path, "prog", "cc=tcc"],
                     cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    data = json.loads(result.stdout)
    assert data["requested"] == ["prog"]
    assert [job["target"] for job in data["jobs"]] == ["prog.o", "lib.o", "prog"]
    assert data["jobs"][-1]["commands"] == ["tcc -o prog prog.o lib.o"]


def test_graph_dot(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    result = run_cli(["graph", "--format", "dot", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    text = result.stdout
    assert text.startswith("digraph")
    assert text.rstrip().endswith("}")
    for edge in ['"prog.o" -> "prog"', '"lib.o" -> "prog"', '"lib.o" -> "prog2"',
                 '"prog" -> "all"', '"prog2" -> "all"', '"prog.c" -> "prog.o"']:
        assert edge in text
    assert '"prog" -> "prog.o"' not in text


def test_graph_default_format_is_dot(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    assert run_cli(["graph", "-C", tmp_path], cwd=tmp_path).stdout == \
        run_cli(["graph", "--format", "dot", "-C", tmp_path], cwd=tmp_path).stdout


def test_graph_bad_format_is_usage_error(tmp_path):
    write_project(tmp_path, SMALLEST, C_SOURCES)
    result = run_cli(["graph", "--format", "svg", "-C", tmp_path], cwd=tmp_path)
    assert result.exit_code == 2
    assert "svg" in result.stderr


# --- version and help -------------------------------------------------------------------

def test_version():
    result = run_cli(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout
    assert "rlmake" in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["build", "--help"], ["list", "--help"],
                                  ["graph", "--help"]])
def test_help(args):
    result = run_cli(args)
    assert result.exit_code == 0, result.describe()
    assert result.stdout.startswith("Usage:")


def test_build_help_mentions_options():
    text = run_cli(["build", "--help"]).stdout
    for option in ("-n", "--dry-run", "-C", "--directory", "-f", "--file"):
        assert option in text


def test_main_help_lists_commands():
    text = run_cli(["--help"]).stdout
    for command in ("build", "list", "graph"):
        assert command in text


# --- the installed console script -------------------------------------------------------

@pytest.mark.integration
def test_console_script_version(tmp_path):
    result = run_subprocess(["--version"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert __version__ in result.stdout


@pytest.mark.integration
def test_console_script_build_n(tmp_path):
    write_project(tmp_path, FULLER, C_SOURCES)
    result = run_subprocess(["build", "-n", "cc=clang", "test"], cwd=tmp_path)
    assert result.exit_code == 0, result.describe()
    assert_commands(result.lines, fuller_commands("clang") + ["./prog", "./prog2"],
                    fuller_after("clang"))
    assert result.lines[-2:] == ["./prog", "./prog2"]


@pytest.mark.integration
def test_console_script_error_exit_2(tmp_path):
    write_project(tmp_path, "rules:\n  a:\n    dep: [x]\n")
    result = run_subprocess(["build", "-n"], cwd=tmp_path)
    assert result.exit_code == 2, result.describe()
    assert result.stdout == ""
    assert "Rulesfile.yaml:3" in result.stderr
    assert "'dep'" in result.stderr and "did you mean 'deps'" in result.stderr
