"""Fuzzing the loader and expander: generated and mutated Rulesfiles, each read by
`rlmake build -n`, `rlmake list` and `rlmake graph` in-process. Whatever the file says,
the answer is an exit status of 0, 1 or 2, never a traceback.

Nothing runs: `-n` runs no command, `list` and `graph` never do, and every command the
generator writes is harmless anyway. Each example gets its own temporary project.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli

# --- the pieces a generated Rulesfile is made of -----------------------------------------

# Each list is (plausible pieces, odd pieces). A file is tame (plausible pieces only,
# so that it gets past loading to expansion) or wild (odd pieces too, and odd shapes).
TARGETS = (["all", "a", "b", "prog", "out/prog", "a.o", "x", "%.o", "%.c", "{{ n }}",
            "{{ d }}/p", "out/{{ n }}"],
           ["src/x.c", "a.c", "dir", "out/%.o", "%", "%%", "x%y%z", ".rlmake/x",
            "./.rlmake/state.db", "../up", "/abs/path", "", " ", "{{ d }}/%.o",
            "{{ undefined }}", "{{ n", "{% if %}", "{{ glob('*.c') }}", "on", "1.10", "~"])
PATHS = (["a.c", "b", "x", "a.o", "prog", "src/x.c", "%.c", "{{ dep }}", "{{ n }}.c",
          "{{ glob('*.c') }}", "{{ target }}.d", "{{ stem }}.c", "{{ ns }}"],
         ["missing.c", "dir", "%", "inc.yaml", ".rlmake/state.db", "../outside",
          "{{ glob('**') }}", "{{ deps }}", "{{ outputs[1] }}", "{{ undefined }}", "{{ 1/0 }}",
          "{{ [1, [2]] }}", "{{ {} }}", "{{ '\\udcff' }}", "{{", "}}", "{% for %}",
          "{{ d | quote }}", "{{ none }}"])
COMMANDS = (["true", "echo {{ target }}", "cat {{ deps | quote_all }} > /dev/null",
             ": {{ dep | quote }}", "echo {{ outputs | join(' ') }}"],
            ["echo {{ n }} {{ stem }}", "echo {{ undefined }}", "echo {{ 1 + }}",
             "echo {% if x %}", "echo {{ glob('*') | length }}", "echo {{ d.missing.attr }}",
             "echo {{ ns[5] }}", "echo {{ range(3) | list }}", "echo {{ '%s' % n }}"])
INCLUDES = (["inc.yaml"], ["missing.yaml", "dir", "Rulesfile.yaml", "../x.yaml"])
SCALAR_TEXTS = ["", "x", "on", "yes", "1.10", "~", "%", "{{ n }}", "[", "{{", "true"]
JUNK_KEYS = ["dep", "comand", "", "<<", "rules", "vars", "%", "{{ n }}", "1"]
RULE_KEYS = ["deps", "command", "outputs", "phony", "always", "env", "description", "pool",
             "depfile", "foreach", "order_only"]


class Generator:
    """Random Rulesfile mappings, in plain Python over a Random that Hypothesis seeds: far
    cheaper to draw than nested strategies."""

    def __init__(self, rng):
        self.rng = rng
        self.wild = rng.random() < 0.5

    def odd(self, one_in: int) -> bool:
        """Whether to write something odd here: never in a tame file."""
        return self.wild and self.rng.randrange(one_in) == 0

    def pick(self, choices):
        if isinstance(choices, tuple):          # (plausible, odd)
            plausible, odd = choices
            choices = plausible * 3 + odd if self.wild else plausible
        return self.rng.choice(choices)

    def count(self, most: int) -> int:
        return self.rng.randint(0, most)

    def scalar(self):
        return self.pick([lambda: self.pick(SCALAR_TEXTS), lambda: self.rng.randint(-3, 3),
                          lambda: self.rng.random() < 0.5, lambda: None,
                          lambda: float("nan")])()

    def some(self, choices, most: int = 3):
        """A list of picks (mostly), one pick, or (wild) another shape altogether."""
        if self.odd(8):
            return self.pick([self.scalar, lambda: [self.scalar()],
                              lambda: {"k": self.pick(choices)}])()
        if self.rng.randrange(4) == 0:
            return self.pick(choices)
        return [self.pick(choices) for _ in range(self.count(most))]

    def rule_body(self):
        if self.odd(12):
            return self.pick([self.scalar, lambda: [self.scalar()]])()
        fields = self.rng.sample(RULE_KEYS, self.count(4))
        if self.odd(8):
            fields.append(self.pick(JUNK_KEYS))
        if "command" not in fields and self.rng.random() < 0.5:
            fields.append("command")
        if not self.wild and "outputs" in fields:
            if "phony" in fields:
                fields.remove("outputs")
            elif "command" not in fields:
                fields.append("command")
        return {field: self.field(field) for field in fields}

    def field(self, name: str):
        if name in ("deps", "outputs", "order_only"):
            return self.some(PATHS)
        if name == "command":
            return self.some(COMMANDS, most=2)
        if self.odd(6):
            return self.scalar()
        if name in ("phony", "always"):
            return self.rng.random() < 0.5
        if name == "env":
            return {self.pick((["CC", "X"], ["", "1"])): self.pick(COMMANDS)
                    for _ in range(self.count(2))}
        if name == "description":
            return self.pick(COMMANDS)
        if name == "pool":
            return self.pick((["link"], ["nope", ""]))
        if name == "depfile":
            return self.pick((["{{ target }}.d"], [".rlmake/d", "dir", "{{"]))
        if name == "foreach":
            return {self.pick((["n", "m"], ["d", "target", "1x", ""])): self.foreach_values()
                    for _ in range(self.rng.randint(1, 2))}
        return self.scalar()

    def foreach_values(self):
        if self.rng.randrange(3) == 0:
            return self.pick((["{{ ns }}", "{{ glob('*.c') }}", "{{ range(2) | list }}",
                               "plain"], ["{{ 3 }}", "{{ undefined }}", "{{ [] }}"]))
        return [self.pick((["a", "b", 0, 1.5, True], ["%", "", "x/y"]))
                for _ in range(self.count(3))]

    def vars(self):
        values = {"n": lambda: self.pick((["one"], ["%", "{{ d }}", ".rlmake"])),
                  "d": lambda: self.pick((["out"], [".rlmake", "", "../x", "a%b"])),
                  "ns": lambda: [self.pick((["a", "b"], ["%"])) for _ in range(self.count(3))],
                  "rlmake_hash": lambda: self.pick((["fast", "content"], ["bogus"]))}
        chosen = {name: value() for name, value in values.items()
                  if not self.wild or self.rng.random() < 0.7}
        if self.odd(5):
            chosen[self.pick(["1bad", "", "a-b"])] = self.scalar()
        return chosen

    def rulesfile(self) -> dict:
        top: dict = {}
        if not self.wild or self.rng.random() < 0.7:
            top["vars"] = self.scalar() if self.odd(10) else self.vars()
        if self.rng.randrange(4) == 0:
            top["default"] = self.some(TARGETS)
        if self.rng.randrange(4) == 0:
            top["include"] = self.some(INCLUDES, most=2)
        if not self.wild or self.rng.randrange(3) == 0:
            top["pools"] = self.scalar() if self.odd(10) else {
                self.pick((["link"], ["", "1"])): self.pick(([1, 2], [0, -1, "x", None, True]))
                for _ in range(self.rng.randint(0 if self.wild else 1, 2))}
        if self.odd(15):
            top[self.pick(JUNK_KEYS)] = self.scalar()
        if self.odd(25):
            top["rules"] = self.pick([None, [self.scalar()], self.scalar()])
        else:
            top["rules"] = {self.pick(TARGETS): self.rule_body() for _ in range(self.count(6))}
            if not self.wild:               # a first rule to build, needing some of the others
                made = [key for key in top["rules"] if "%" not in key and key != "all"]
                top["rules"] = {"all": {"deps": self.rng.sample(made, min(len(made), 3))},
                                **top["rules"]}
        return top


# A seed, not Hypothesis's own Random: its every call would be a traced draw, costing
# most of the test's time. A failure prints the seed and the file it gave.
rulesfile_mappings = st.integers(0, 2**32).map(lambda seed: Generator(random.Random(seed)).rulesfile())


def dump(mapping) -> bytes:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(mapping, Dumper=dumper, sort_keys=False, allow_unicode=True).encode()


# --- byte-level mutations of valid Rulesfiles ---------------------------------------------

SEEDS = [
    b"""rules:
  all:
    deps: [prog, prog2]
  prog:
    deps: [prog.o, lib.o]
    command: gcc -o prog prog.o lib.o
  prog.o:
    deps: [a.c]
    command: gcc -c a.c
""",
    b"""vars:
  cc: gcc
  programs:
    prog: [a.c]
default: all
pools:
  link: 1
include: [inc.yaml]
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
    outputs: ["%.d"]
    depfile: "{{ target }}.dep"
    env: {CFLAGS: "-O2"}
    command: "{{ cc }} -c {{ dep | quote }} -o {{ target | quote }}"
""",
    b"""base: &base
  command: echo {{ target }}
rules:
  a:
    <<: *base
    deps: ["{{ glob('src/*.c') }}"]
    always: true
  b: {deps: [a], outputs: [x], command: |
      echo b
      echo x}
""",
]
YAML_PIECES = [b":", b"-", b"[", b"]", b"{", b"}", b"#", b"&", b"*", b"!", b"|", b">", b"'",
               b'"', b"%", b"@", b"`", b",", b"?", b"\n", b"\t", b" ", b"  ", b"<<: ",
               b"{{", b"}}", b"{%", b"%}", b"\\", b"\xff", b"\x00", b"\xef\xbb\xbf", b"!!python/",
               b"- - ", b": :", b"&a ", b"*a"]


@st.composite
def mutated_rulesfiles(draw):
    text = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        span = draw(st.integers(0, 12))
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "insert"]))
        if kind == "delete":
            del text[at:at + span]
        elif kind == "duplicate":
            text[at:at] = text[at:at + span]
        else:
            text[at:at] = draw(st.sampled_from(YAML_PIECES))
    return bytes(text)


# --- the project around it ------------------------------------------------------------------

# Thousands of small projects: in memory where the machine has a tmpfs (much faster to
# create and remove than on an overlay disk), else wherever tempfile puts them.
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
INCLUDED = b"rules:\n  inc_target: {deps: [a.c], command: true}\n"


def write_project(root: str, rulesfile: bytes, included: bytes, odd_name: bool) -> None:
    with open(os.path.join(root, "Rulesfile.yaml"), "wb") as stream:
        stream.write(rulesfile)
    with open(os.path.join(root, "inc.yaml"), "wb") as stream:
        stream.write(included)
    os.makedirs(os.path.join(root, "src"))
    os.makedirs(os.path.join(root, "dir"))
    for name in ("a.c", "src/x.c", "lib.c", "prog.c", "b", "x"):
        with open(os.path.join(root, name), "w") as stream:
            stream.write(name)
    if odd_name:
        open(os.path.join(os.fsencode(root), b"\xff.c"), "wb").close()


class TookTooLong(Exception):
    """Raised in the middle of a command that has run for seconds: a loop that never ends
    is a failure to report with its input, not a test run that hangs."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(signum, frame):
        raise TookTooLong(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# Every example loads and expands through `build -n`, and through one of the other two
# commands that read a whole Rulesfile, drawn with the example.
OTHER_COMMANDS = st.sampled_from((["list"], ["graph"]))


def check_never_crashes(rulesfile: bytes, included: bytes, odd_name: bool,
                        other: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="rlmake-fuzz-", dir=FAST_TMP) as root:
        write_project(root, rulesfile, included, odd_name)
        for args in (["build", "-n"], other):
            with time_limit(10):
                result = run_cli([*args, "-C", root], cwd=root)
            assert result.exception is None or isinstance(result.exception, SystemExit), \
                f"{args} on\n{rulesfile.decode('utf-8', 'replace')}\n{result.describe()}"
            assert result.exit_code in (0, 1, 2), result.describe()
            if result.exit_code == 2:
                assert result.stderr.startswith("rlmake: error: "), result.describe()


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@fuzz(1200)
@given(mapping=rulesfile_mappings, included=st.one_of(st.just(INCLUDED), rulesfile_mappings),
       odd_name=st.booleans(), other=OTHER_COMMANDS)
def test_generated_rulesfiles_never_crash(mapping, included, odd_name, other):
    check_never_crashes(dump(mapping), included if isinstance(included, bytes) else dump(included),
                        odd_name, other)


@fuzz(1000)
@given(rulesfile=mutated_rulesfiles(), odd_name=st.booleans(), other=OTHER_COMMANDS)
def test_mutated_rulesfiles_never_crash(rulesfile, odd_name, other):
    check_never_crashes(rulesfile, INCLUDED, odd_name, other)
