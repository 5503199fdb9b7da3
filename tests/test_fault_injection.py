"""Randomized fault injection: builds killed at random points never leave a wrong result.

A project of about 300 jobs in layers (a pattern rule, `foreach` rules, rules
with depfiles, an aggregate that a job depends on) whose commands each write
their output in several steps with short sleeps between, so that a kill lands
mid-write. Again and again, the test does what a user might (edit a source or
revert it, delete outputs, force a rebuild with -B, or nothing), starts a
build, and kills it after a random delay with SIGKILL, SIGINT or SIGHUP. After
every kill the next build runs to completion and must leave every output
byte for byte as a from-scratch build of the same sources in another
directory, and a further build must run nothing.

The seed is printed; RLMAKE_FAULT_SEED=N reruns that sequence (the kill points
fall where the machine's speed puts them, so a failure is likely, not certain,
to recur). RLMAKE_FAULT_KILLS sets how many kills (default 100).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from buildkit import BuildResult, Project, build_env, kill_group, rlmake_exe
from conftest import run_cli

pytestmark = pytest.mark.integration

SOURCES = 140               # src/sI.txt -> l1/sI.txt (pattern) -> l2/pI.txt (foreach)
GROUPS = 12                 # l3/gK.txt: ten l2 files and, through its depfile, extra/eK.txt
KILLS = int(os.environ.get("RLMAKE_FAULT_KILLS", "100"))
JOBS = "-j4"                # the commands mostly sleep: more than the CPUs keeps kills busy
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGHUP)
EDITABLE = ("src/s3.txt", "src/s77.txt", "extra/e5.txt", "src/s139.txt")
OUTPUT_DIRS = ("l1", "l2", "l3")

STEP = "sleep 0.01"


def rulesfile() -> str:
    """About 300 jobs: l1 (a pattern rule), l2 (foreach), l3 (depfiles), total.txt (through
    an aggregate), all (the default aggregate)."""
    l3 = [f"l3/g{k}.txt" for k in range(GROUPS)]
    lines = [
        "default: all",
        "rules:",
        f"  all:\n    deps: [{', '.join(l3)}, total.txt]",
        f"  groups:\n    deps: [{', '.join(l3)}]",
        "  total.txt:",
        "    deps: [groups]",
        f"    command: >-\n      echo total > total.txt; {STEP}; cat {' '.join(l3)} >> total.txt;"
        f"\n      {STEP}; echo end >> total.txt",
    ]
    for k in range(GROUPS):
        pairs = [f"l2/p{i}.txt" for i in range(k * SOURCES // GROUPS, (k + 1) * SOURCES // GROUPS)]
        lines += [
            f"  l3/g{k}.txt:",
            f"    deps: [{', '.join(pairs)}]",
            f"    depfile: l3/g{k}.d",
            "    command: >-",
            f"      echo group {k} > {{{{ target }}}}; {STEP}; cat {{{{ deps | join(' ') }}}} >> "
            f"{{{{ target }}}}; {STEP}; cat extra/e{k}.txt >> {{{{ target }}}};",
            f"      echo '{{{{ target }}}}: extra/e{k}.txt' > l3/g{k}.d",
        ]
    lines += [
        '  "l2/p{{ i }}.txt":',
        "    foreach:",
        f'      i: "{{{{ range({SOURCES}) | list }}}}"',
        f'    deps: ["l1/s{{{{ i }}}}.txt", "l1/s{{{{ (i + 7) % {SOURCES} }}}}.txt"]',
        "    command: >-",
        f"      echo pair {{{{ i }}}} > {{{{ target }}}}; {STEP};"
        f" cat {{{{ deps | join(' ') }}}} >> {{{{ target }}}}; {STEP};",
        "      wc -c < {{ dep }} >> {{ target }}",
        '  "l1/%.txt":',
        '    deps: ["src/%.txt"]',
        "    command: >-",
        f"      echo 'layer1 {{{{ stem }}}}' > {{{{ target }}}}; {STEP};"
        f" tr a-z A-Z < {{{{ dep }}}} >> {{{{ target }}}}; {STEP}; echo end >> {{{{ target }}}}",
    ]
    return "\n".join(lines) + "\n"


def write_sources(root: Path) -> None:
    for i in range(SOURCES):
        write(root / f"src/s{i}.txt", f"source {i}\n" * (1 + i % 5))
    for k in range(GROUPS):
        write(root / f"extra/e{k}.txt", f"extra {k}\n")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def outputs(root: Path) -> dict[str, bytes]:
    """Every file the build writes, by path (all small)."""
    files = [root / "total.txt"] + [path for top in OUTPUT_DIRS
                                    for path in sorted((root / top).rglob("*"))]
    return {str(path.relative_to(root)): path.read_bytes() for path in files if path.is_file()}


def differences(expected: dict[str, bytes], found: dict[str, bytes]) -> str:
    wrong = sorted(path for path in expected.keys() | found.keys()
                   if expected.get(path) != found.get(path))
    if not wrong:
        return ""
    first = wrong[0]
    return (f"outputs unlike a from-scratch build: {wrong[:10]}\n--- {first} expected:\n"
            f"{expected.get(first)!r}\n--- found:\n{found.get(first)!r}")


def sources_state(root: Path) -> str:
    return hashlib.sha256(b"".join(
        (root / path).read_bytes() for path in EDITABLE)).hexdigest()


class References:
    """From-scratch builds, one per state of the sources, each in a directory of its own."""

    def __init__(self, parent: Path):
        self.parent = parent
        self.built: dict[str, dict[str, bytes]] = {}

    def outputs_for(self, project: Path) -> dict[str, bytes]:
        state = sources_state(project)
        if state not in self.built:
            scratch = self.parent / f"reference-{len(self.built)}"
            shutil.copytree(project, scratch, ignore=shutil.ignore_patterns(
                ".rlmake", *OUTPUT_DIRS, "total.txt"))
            result = run_cli(["build", "-j8"], scratch)
            assert result.exit_code == 0, result.describe()
            self.built[state] = outputs(scratch)
            shutil.rmtree(scratch)
        return self.built[state]


class User:
    """What someone does between builds: edit a source or revert it, delete outputs,
    force a rebuild of something, or nothing. Returns the build's arguments."""

    def __init__(self, project: Project, rng: random.Random):
        self.project = project
        self.rng = rng
        self.originals = {path: project.read(path) for path in EDITABLE}
        self.edited: str | None = None          # one source at a time: few references

    def act(self) -> tuple[str, list[str]]:
        rng, project = self.rng, self.project
        choice = rng.choices(["edit", "delete", "force", "nothing"], [45, 25, 25, 5])[0]
        if choice == "edit" and self.edited is None:
            self.edited = rng.choice(EDITABLE)
            project.write(self.edited, self.originals[self.edited] + "an edit\n")
            return f"edit {self.edited}", []
        if choice == "edit":
            path, self.edited = self.edited, None
            project.write(path, self.originals[path])
            return f"revert {path}", []
        if choice == "delete":
            built = sorted(path for path in outputs(project.root)
                           if not path.endswith(".d"))   # a depfile is no output: kept gone
            doomed = rng.sample(built, rng.randint(1, 20))
            for path in doomed:
                (project.root / path).unlink()
            return f"delete {len(doomed)} outputs", []
        if choice == "force":
            target = rng.choice(["all", f"l3/g{rng.randrange(GROUPS)}.txt",
                                 f"l2/p{rng.randrange(SOURCES)}.txt"])
            return f"-B {target}", ["-B", target]
        return "nothing", []


def killed_build(project: Project, args: list[str], signum: int, delay: float) -> bool:
    """Start `rlmake build ARGS`, send it `signum` after `delay` seconds (the delay is the
    random kill point, not a wait for a condition); whether the signal found it running."""
    process = subprocess.Popen([*rlmake_exe(), "build", JOBS, *args], cwd=project.root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=build_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + delay
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        landed = process.poll() is None
        if landed:
            process.send_signal(signum)         # rlmake alone, as a terminal or `kill` would
        stdout, stderr = process.communicate(timeout=60)
    finally:
        kill_group(process)
    result = BuildResult(args, process.returncode, stdout, stderr, 0.0)
    # 130 once rlmake handles signals; before that (Python starting up) the signal's default
    # action, or for SIGINT a KeyboardInterrupt wherever the interpreter was
    expected = (0, 130, -signum) if landed else (0,)
    starting = signum == signal.SIGINT and stderr.rstrip().endswith("KeyboardInterrupt")
    if process.returncode not in expected and not starting:
        raise AssertionError(f"a build killed by {signum.name} ended so:\n{result.describe()}")
    return landed


def test_builds_killed_at_random_never_leave_a_wrong_result(tmp_path, monkeypatch):
    seed = int(os.environ.get("RLMAKE_FAULT_SEED") or random.randrange(1 << 32))
    print(f"\nRLMAKE_FAULT_SEED={seed}")
    rng = random.Random(seed)
    for name in [name for name in os.environ if name.startswith("RLMAKE_")]:
        monkeypatch.delenv(name)                # in-process builds: as build_env() does
    project = Project(tmp_path / "proj")
    project.write("Rulesfile.yaml", rulesfile())
    write_sources(project.root)
    references = References(tmp_path)
    user = User(project, rng)
    started = time.monotonic()
    assert run_cli(["build", "-j8"], project.root).exit_code == 0
    history: list[str] = []
    kills = rounds = 0
    while kills < KILLS:
        rounds += 1
        did, args = user.act()
        signum = rng.choice(SIGNALS)
        # rlmake starts its first jobs about 0.25 s in; most builds here (an edit, a few
        # deleted outputs) are over by 0.6 s, and a later kill only finds a long build
        # (-B all) further along, at the cost of a round's time
        delay = rng.uniform(0.05, 0.6)
        landed = killed_build(project, args, signum, delay)
        kills += landed
        history.append(f"{did}; build {' '.join(args)} "
                       + (f"killed by {signum.name} after {delay:.2f}s" if landed
                          else "finished first"))
        context = f"RLMAKE_FAULT_SEED={seed}, round {rounds}:\n  " + "\n  ".join(history[-8:])

        follow = run_cli(["build", JOBS], project.root)     # the next build, to completion
        assert follow.exit_code == 0, f"{context}\n{follow.describe()}"
        wrong = differences(references.outputs_for(project.root), outputs(project.root))
        assert not wrong, f"{context}\n{wrong}\n{follow.describe()}"
        again = run_cli(["build", "-v"], project.root)
        ran = BuildResult([], again.exit_code, again.stdout, again.stderr, 0.0).ran
        assert again.exit_code == 0 and not ran, f"{context}\na further build ran {sorted(ran)}"
    elapsed = time.monotonic() - started
    print(f"{kills} kills in {rounds} rounds, {len(references.built)} reference builds, "
          f"{elapsed:.0f}s")
