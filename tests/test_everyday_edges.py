"""The everyday rough edges: a dry run that writes nothing, flags that mean one thing,
readable names in the JOB STATUS table and `list`, `-v` showing commands, `clean` of
depfiles and of the directories rlmake made, `compdb`, and shell completion."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from buildkit import Project, build_env
from checkout import RLMAKE
from conftest import run_cli, write_project
from rlmake.model import Job, Location, Outcome, Status
from rlmake.reporters.console import readable_rule, status_table

LIBS = """
vars:
  libs: [one, two]
default: all
rules:
  all:
    phony: true
    deps: [lib/libone.a, lib/libtwo.a]
  "lib/lib{{ lib }}.a":
    foreach:
      lib: "{{ libs }}"
    deps: ["{{ glob('src/*.c') | map('replace', '.c', '.o') | map('replace', 'src/', 'build/obj/') | list }}"]
    command: "cat {{ deps | quote_all }} > {{ target }}"
    description: "AR {{ target }}"
  "build/obj/%.o":
    deps: ["src/%.c"]
    command: "cp {{ dep }} {{ target }} && echo '{{ target }}: {{ dep }}' > build/obj/{{ stem }}.d"
    depfile: "build/obj/{{ stem }}.d"
    description: "CC {{ dep }}"
"""


def libs_project(root: Path) -> Project:
    project = Project(root)
    project.rules(LIBS)
    for name in ("a", "b", "c"):
        project.write(f"src/{name}.c", f"int {name};\n")
    return project


def state_files(project: Path) -> dict[str, str]:
    """Every file under .rlmake with a digest of its bytes (SQLite's -wal and -shm files
    come and go as any reader opens the database: not counted)."""
    found = {}
    for path in sorted((project / ".rlmake").rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            found[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# --- a dry run writes nothing ---------------------------------------------------------------

def test_a_dry_run_of_a_new_project_makes_no_state_directory(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "int a;\n"})
    result = run_cli(["build", "-n"], cwd=project)
    assert result.exit_code == 0, result.describe()
    assert "cp src/a.c build/obj/a.o" in result.stdout
    assert not (project / ".rlmake").exists()


@pytest.mark.integration
def test_a_dry_run_after_edits_leaves_the_state_as_it_was(tmp_path):
    project = libs_project(tmp_path / "p")
    project.build()
    project.write("src/b.c", "int b = 2;\n")
    project.rules(LIBS.replace("cat {{", "cat -- {{"))     # a new plan, not yet stored
    before = state_files(project.root)
    result = project.cli("build", "-n")
    assert "cat -- build/obj/a.o" in result.stdout, result.describe()
    assert state_files(project.root) == before


# --- flags mean one thing -------------------------------------------------------------------

def test_cache_write_without_a_cache_is_a_usage_error(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "int a;\n"})
    result = run_cli(["build", "--cache-write"], cwd=project)
    assert result.exit_code == 2, result.describe()
    assert "--cache-write" in result.stderr and "--cache" in result.stderr
    assert not (project / "build").exists()


@pytest.mark.integration
def test_log_takes_f_as_the_rulesfile_and_files_and_limit_by_name(tmp_path):
    project = libs_project(tmp_path / "p")
    project.write("other.yaml", (project.root / "Rulesfile.yaml").read_text())
    project.build()
    project.build("-B")
    files = project.cli("log", "--files").lines
    assert any(line.split()[-1] == "lib/libone.a" or "lib/libone.a" in line for line in files)
    assert project.cli("log", "-f", "Rulesfile.yaml", "--files").lines == files
    assert len(json.loads(project.cli("log", "--limit", "1", "--json").stdout)) == 1
    assert len(json.loads(project.cli("log", "--json").stdout)) == 2
    assert project.cli("log", "-n", "1", expect=2).returncode == 2


# --- readable names -----------------------------------------------------------------------------

def test_a_templated_rule_reads_with_stars():
    assert readable_rule("lib/libbrotli{{ lib }}.a") == "lib/libbrotli*.a"
    assert readable_rule("{{ name }}") == "*"
    assert readable_rule("%.o") == "%.o"
    assert readable_rule("out/{{ a | upper }}-{{ b }}.txt") == "out/*-*.txt"


def outcome(target: str, rule: str, status: Status) -> Outcome:
    return Outcome(Job(target, rule, Location("Rulesfile.yaml", 1), (target,), (), ("true",)),
                   status)


def rows(table: str) -> dict[str, list[str]]:
    """RULE -> its numbers, from a JOB STATUS table."""
    found = {}
    for line in table.splitlines()[2:]:
        *name, pending, running, failed, cached, restored, done, total = line.split()
        found[" ".join(name)] = [pending, running, failed, cached, restored, done, total]
    return found


def test_the_table_folds_up_to_date_jobs_alike_however_they_were_found():
    """The same work gives the same rows, whether the build decided every job (and found
    most cached) or knew them up to date without looking."""
    rule = "lib/lib{{ lib }}.a"
    decided = [outcome("x.o", "%.o", Status.DONE), outcome("y.o", "%.o", Status.CACHED),
               outcome("z.o", "%.o", Status.CACHED), outcome("lib/libone.a", rule, Status.CACHED)]
    known = [outcome("x.o", "%.o", Status.DONE)]
    full, edit = status_table(decided), status_table(known, up_to_date=3)
    assert rows(full) == rows(edit)
    assert list(rows(full)) == ["%.o", "(3 jobs up to date)", "ALL"]
    assert rows(full)["ALL"][-1] == "4"


def test_the_table_names_rules_readably_and_counts_in_words():
    rule = "lib/lib{{ lib }}.a"
    outcomes = [outcome(f"r{i}", f"rule{i}", Status.DONE) for i in range(3)]
    outcomes += [outcome("lib/libone.a", rule, Status.DONE), outcome("c", "c", Status.CACHED)]
    table = rows(status_table(outcomes, max_rules=3))
    assert list(table) == ["rule0", "rule1", "rule2", "(1 more rule)", "(1 job up to date)",
                           "ALL"]
    assert table["(1 more rule)"][-2:] == ["1", "1"]
    assert "lib/lib*.a" in rows(status_table(outcomes))


def test_list_shows_pattern_descriptions_rendered_with_the_stem(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "int a;\n"})
    result = run_cli(["list"], cwd=project)
    assert result.exit_code == 0, result.describe()
    assert "{{" not in result.stdout, result.stdout
    pattern = next(line for line in result.lines if line.startswith("build/obj/%.o"))
    assert pattern.split() == ["build/obj/%.o", "[pattern]", "CC", "src/%.c"]
    assert any(line.split()[:3] == ["lib/libone.a", "AR", "lib/libone.a"]
               for line in result.lines)


@pytest.mark.integration
def test_verbose_shows_each_command_and_the_table_readable_names(tmp_path):
    project = libs_project(tmp_path / "p")
    result = project.build()
    assert "  cp src/a.c build/obj/a.o && echo 'build/obj/a.o: src/a.c' > build/obj/a.d" \
        in result.lines, result.describe()
    assert "  cat build/obj/a.o build/obj/b.o build/obj/c.o > lib/libone.a" in result.lines
    table = rows(result.stdout[result.stdout.index("JOB STATUS"):])
    assert table["lib/lib*.a"][-1] == "2" and table["build/obj/%.o"][-1] == "3"
    project.write("src/a.c", "int a = 1;\n")
    again = project.build(verbose=False)
    edit = rows(again.stdout[again.stdout.index("JOB STATUS"):])
    assert list(edit) == ["build/obj/%.o", "lib/lib*.a", "(2 jobs up to date)", "ALL"]


# --- clean ------------------------------------------------------------------------------------

@pytest.mark.integration
def test_clean_removes_depfiles_and_the_directories_rlmake_made(tmp_path):
    project = libs_project(tmp_path / "p")
    project.write("lib/README", "the user's own file\n")        # lib/ is the user's
    project.build()
    assert (project.root / "build/obj/a.d").is_file()
    preview = project.cli("clean", "-n").lines
    assert "build/obj/a.d: would remove" in preview
    assert "build/: would remove (empty directory)" in preview
    project.write("build/obj/c.d", "edited by hand\n")
    result = project.cli("clean")
    assert "build/obj/a.d: removed" in result.lines
    assert "build/obj/c.d: kept (changed since rlmake wrote it)" in result.lines
    assert not (project.root / "build/obj/a.d").exists()
    assert (project.root / "build/obj").is_dir(), "it still holds the edited depfile"
    assert (project.root / "lib/README").is_file()
    os.remove(project.root / "build/obj/c.d")
    assert set(project.cli("clean").lines) == {"build/obj/: removed (empty directory)",
                                               "build/: removed (empty directory)"}
    assert sorted(p.name for p in project.root.iterdir()) == \
        [".rlmake", "Rulesfile.yaml", "lib", "rlmake.toml", "src"]


@pytest.mark.integration
def test_clean_of_one_target_removes_only_the_directories_above_it(tmp_path):
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          a/deep/x.txt: {command: echo x > a/deep/x.txt}
          b/y.txt: {command: echo y > b/y.txt}
    """)
    project.build("a/deep/x.txt", "b/y.txt")
    assert set(project.cli("clean", "a/deep/x.txt").lines) == {
        "a/deep/x.txt: removed", "a/deep/: removed (empty directory)",
        "a/: removed (empty directory)"}
    assert (project.root / "b/y.txt").is_file()


# --- compdb -----------------------------------------------------------------------------------

def test_compdb_writes_one_entry_per_compiled_source(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "", "src/b.c": ""})
    result = run_cli(["compdb"], cwd=project)
    assert result.exit_code == 0, result.describe()
    written = json.loads((project / "compile_commands.json").read_text())
    assert written == [
        {"directory": str(project), "file": f"src/{name}.c", "output": f"build/obj/{name}.o",
         "command": f"cp src/{name}.c build/obj/{name}.o && "
                    f"echo 'build/obj/{name}.o: src/{name}.c' > build/obj/{name}.d"}
        for name in ("a", "b")]
    printed = run_cli(["compdb", "-o", "-"], cwd=project)
    assert json.loads(printed.stdout) == written


# --- shell completion -------------------------------------------------------------------------

@pytest.mark.integration
def test_bash_completion_offers_commands_flags_and_targets(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": ""})

    def complete(words: str) -> list[str]:
        env = build_env(COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1),
                        _RLMAKE_COMPLETE="bash_complete")
        done = subprocess.run(RLMAKE, cwd=project, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and done.stderr == "", done
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("rlmake bu") == ["build"]
    assert "--cache-write" in complete("rlmake build --cache")
    assert complete("rlmake build lib/libo") == ["lib/libone.a"]
    assert complete(f"rlmake -C {project} why a") == ["all"]
    script = subprocess.run(RLMAKE, env=build_env(_RLMAKE_COMPLETE="bash_source"),
                            capture_output=True, text=True, timeout=60)
    assert "_rlmake_completion" in script.stdout


# --- rlmake.toml ------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, wanted", [('[cache]\nwrite = "yes"\n', "true or false"),
                                             ("[build]\nscheduler = 8786\n", "a string"),
                                             ("[cache]\nlocal = 1\n", "true or false")])
def test_a_setting_of_the_wrong_type_is_a_usage_error(tmp_path, setting, wanted):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "", "rlmake.toml": setting})
    result = run_cli(["build", "-n"], cwd=project)
    assert result.exit_code == 2, result.describe()
    assert "rlmake.toml" in result.stderr and wanted in result.stderr, result.describe()


# --- rlmake's own state is never an input --------------------------------------------------------

def test_glob_never_matches_the_state_directory(tmp_path):
    project = write_project(tmp_path / "p", """
        rules:
          list.txt:
            deps: ["{{ glob('.rlmake/*') }}", "{{ glob('**/*.txt') }}"]
            command: "echo {{ deps | quote_all }} > list.txt"
    """, {"a.txt": "", ".rlmake/lock": "", ".rlmake/x.txt": ""})
    result = run_cli(["build", "-n"], cwd=project)
    assert result.exit_code == 0, result.describe()
    assert result.lines == ["echo a.txt > list.txt"]


def test_a_dep_in_the_state_directory_is_refused(tmp_path):
    project = write_project(tmp_path / "p", """
        rules:
          list.txt:
            deps: [.rlmake/lock]
            command: "echo x > list.txt"
    """)
    result = run_cli(["build", "-n"], cwd=project)
    assert result.exit_code == 2, result.describe()
    assert "Rulesfile.yaml:3: rule 'list.txt': dep '.rlmake/lock' is in .rlmake/" in result.stderr


# --- Ctrl-C while the command line is read ------------------------------------------------------

def test_ctrl_c_while_click_reads_the_command_line_is_an_interrupt(monkeypatch, capsys):
    """Not click's 'Aborted!' and exit 1: a signal that lands before the command runs (a
    busy machine, a slow start) must end rlmake as any interrupt does."""
    import click

    from rlmake.cli import main

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(click.Group, "make_context", interrupted)
    with pytest.raises(SystemExit) as ended:
        main(["build"], prog_name="rlmake")
    assert ended.value.code == 130
    assert capsys.readouterr().err == "rlmake: interrupted\n"


def test_a_default_target_no_rule_makes_is_named_with_its_line(tmp_path):
    project = write_project(tmp_path / "p", """
        vars: {x: 1}
        default: al
        rules:
          all: {command: "true", phony: true}
    """)
    result = run_cli(["build", "-n"], cwd=project)
    assert result.exit_code == 2, result.describe()
    assert result.stderr == ("rlmake: error: Rulesfile.yaml:2: default target 'al': no rule makes "
                             "it and no such file exists (did you mean 'all'?)\n")


def test_a_terminal_that_reports_no_width_gets_eighty_columns(monkeypatch):
    from rlmake.reporters import console

    monkeypatch.setattr(console.os, "get_terminal_size", lambda: os.terminal_size((0, 0)))
    assert console._terminal_width() == 80


@pytest.mark.integration
def test_a_former_output_taken_as_a_source_is_said_once_when_the_plan_changes(tmp_path):
    """A typo in a pattern rule's order_only makes the rule not apply: its old output
    would pass for a source, up to date for ever, without a word."""
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          app: {deps: [main.o], command: cp main.o app}
          cfg.h: {command: "echo '#define X 1' > cfg.h"}
          "%.o": {deps: ["%.c"], order_only: [cfg.h], command: "cp {{ dep }} {{ target }}"}
    """)
    project.write("main.c", "1\n")
    assert "earlier build made" not in project.build().stderr
    project.write("Rulesfile.yaml", project.read("Rulesfile.yaml").replace("[cfg.h]", "[cfgg.h]"))
    warned = project.build()
    assert "rlmake: warning: 'main.o': an earlier build made it with a rule, but no rule " \
           "makes it now, so it is taken as a source" in warned.stderr, warned.describe()
    assert "earlier build made" not in project.build().stderr     # the plan is stored now


def test_compdb_that_cannot_be_written_is_a_clear_error(tmp_path):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": ""})
    (project / "taken.json").mkdir()
    for target in ("taken.json", str(tmp_path / "no" / "such" / "dir.json")):
        result = run_cli(["compdb", "-o", target], cwd=project)
        assert result.exit_code == 2, result.describe()
        assert "cannot write the compilation database" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == [".rlmake", "Rulesfile.yaml", "src",
                                                         "taken.json"]   # no temporary left


# --- a directory store other users read ----------------------------------------------------------

def test_a_directory_stores_entries_are_made_as_any_new_file(tmp_path):
    """Mode 0666 less the umask, not 0600: on a shared volume other users read them."""
    from rlmake.cache.local import LocalStore

    source = tmp_path / "blob"
    source.write_bytes(b"bytes\n")
    previous = os.umask(0o022)
    try:
        store = LocalStore(str(tmp_path / "store"))
        store.put_blob("ab" * 32, str(source))
        store.put_action("cd" * 32, b"{}")
    finally:
        os.umask(previous)
    modes = {path.name[:2]: path.stat().st_mode & 0o777
             for path in (tmp_path / "store").rglob("*") if path.is_file()}
    assert modes == {"ab": 0o644, "cd": 0o644}, modes


@pytest.mark.integration
def test_clean_never_removes_a_directory_outside_the_project(tmp_path):
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          all: {deps: [../outside/deep/x.txt]}
          ../outside/deep/x.txt: {command: "echo x > ../outside/deep/x.txt"}
    """)
    project.build()
    (tmp_path / "outside/deep/x.txt").unlink()          # the user took the file away
    project.cli("clean")
    assert (tmp_path / "outside/deep").is_dir()


@pytest.mark.integration
def test_clean_never_follows_a_directory_turned_into_a_link_out_of_the_project(tmp_path):
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          all: {phony: true, deps: [out/sub/x]}
          out/sub/x: {command: echo hi > out/sub/x}
    """)
    project.build()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "sub/x").write_text("hi\n")                 # the same bytes, the user's file
    (elsewhere / "empty").mkdir()
    import shutil
    shutil.rmtree(project.root / "out")
    (project.root / "out").symlink_to(elsewhere)
    result = project.cli("clean")
    assert "out/sub/x: kept (outside the project)" in result.lines, result.describe()
    assert (elsewhere / "sub/x").read_text() == "hi\n"
    assert (elsewhere / "sub").is_dir() and (project.root / "out").is_symlink()


@pytest.mark.integration
def test_clean_keeps_a_directory_the_user_made_where_rlmake_once_made_one(tmp_path):
    project = Project(tmp_path / "p")
    project.rules("""
        rules:
          out/x: {command: echo hi > out/x}
    """)
    project.build()
    import shutil
    shutil.rmtree(project.root / "out")
    (project.root / "out").mkdir()                         # the user's own now
    assert project.cli("clean").lines == ["nothing to clean"]
    assert (project.root / "out").is_dir()


def test_a_directory_made_again_in_place_is_another_directory(tmp_path):
    """ext4 gives the freed inode number to the very next mkdir: the identity clean
    compares must still tell the two apart (the test above once failed that way)."""
    from rlmake import jobfiles

    made = tmp_path / "out"
    made.mkdir()
    before = jobfiles.directory_identity(str(made))
    made.rmdir()
    made.mkdir()
    assert before is not None and jobfiles.directory_identity(str(made)) != before
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(made)
    assert jobfiles.directory_identity(str(tmp_path / "file")) is None
    assert jobfiles.directory_identity(str(tmp_path / "link")) is None


@pytest.mark.parametrize("args, said", [
    (["build", "-n", "--trace", ""], "--trace needs a file name"),
    (["build", "-n", "--report", ".rlmake/state.db"], "--report .rlmake/state.db: that is in "),
    (["build", "-n", "--trace", "./.rlmake/../.rlmake/plans"], "where rlmake keeps its state"),
    (["report", "-o", ".rlmake/page.html"], "-o .rlmake/page.html: that is in "),
])
def test_a_report_file_must_be_named_and_not_rlmakes_own_state(tmp_path, args, said):
    project = write_project(tmp_path / "p", LIBS, {"src/a.c": "", ".rlmake/state.db": "mine"})
    result = run_cli(args, cwd=project)
    assert result.exit_code == 2, result.describe()
    assert said in result.stderr, result.describe()
    assert (project / ".rlmake/state.db").read_text() == "mine"


# --- closed standard descriptors --------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("closed", ["stdout", "stderr", "stdout and stderr"])
def test_a_build_with_a_closed_output_stream_builds_and_keeps_the_database_whole(
        tmp_path, closed):
    """`rlmake build >&-`: Python has no sys.stdout, which the console reporter used to
    trip over with a traceback; and the closed descriptor is the next one a file opened
    gets, which must not be the state database that rlmake's output would then enter."""
    import sqlite3

    from buildkit import rlmake_exe

    project = Project(tmp_path / "proj")
    project.rules("rules:\n  out.txt:\n    deps: [in.txt]\n    command: cp in.txt out.txt\n")
    project.write("in.txt", "in\n")
    fds = {"stdout": [1], "stderr": [2], "stdout and stderr": [1, 2]}[closed]
    done = subprocess.run(rlmake_exe() + ["build"], cwd=project.root, env=build_env(),
                          stdin=subprocess.DEVNULL, timeout=60, capture_output=True,
                          preexec_fn=lambda: [os.close(fd) for fd in fds])
    assert done.returncode == 0, done.stderr
    assert project.read("out.txt") == "in\n"
    with sqlite3.connect(project.root / ".rlmake" / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert project.build().ran == set()
