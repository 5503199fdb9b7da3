"""`rlmake log FILE` on a project of real shape: many objects sharing the same headers
through their depfiles, linked into archives and a program. Each file is shown once,
the headers are folded, the JSON shares nodes, and a file rebuilt to identical bytes
says so.

In-process: builds with the fake executor (tests/engine.py), `log` through the CLI
in-process (no command of the project runs)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from buildkit import build_env, run_in_process
from engine import Engine

OBJECTS, HEADERS, ARCHIVES = 30, 10, 3
HEADER_NAMES = [f"inc/h{n}.h" for n in range(HEADERS)]


def _rules() -> str:
    lines = ["default: [bin/tool]", "rules:"]
    listed = " ".join(HEADER_NAMES)
    for n in range(OBJECTS):
        source, obj = f"src/f{n}.c", f"obj/f{n}.o"
        lines += [f"  {obj}:", f"    deps: [{source}]", f"    depfile: obj/f{n}.d",
                  "    command: " + json.dumps(f"cat {source} > {obj}; "
                                          f"printf '{obj}: {source} {listed}\\n' > obj/f{n}.d")]
    for a in range(ARCHIVES):
        members = [f"obj/f{n}.o" for n in range(OBJECTS) if n % ARCHIVES == a]
        lines += [f"  lib/a{a}.a:", f"    deps: [{', '.join(members)}]",
                  f"    command: cat {' '.join(members)} > lib/a{a}.a"]
    archives = [f"lib/a{a}.a" for a in range(ARCHIVES)]
    lines += ["  bin/tool:", f"    deps: [{', '.join(archives)}]",
              f"    command: cat {' '.join(archives)} > bin/tool"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    engine.write("Rulesfile.yaml", _rules())
    for name in HEADER_NAMES:
        engine.write(name, f"/* {name} */\n")
    for n in range(OBJECTS):
        engine.write(f"src/f{n}.c", f"int f{n};\n")
    for directory in ("obj", "lib", "bin"):
        (engine.root / directory).mkdir()
    assert engine.build().status == "ok"
    return engine


def rl(engine: Engine, *args: str) -> str:
    status, out, err = run_in_process(list(args), engine.root, build_env())
    assert status == 0, out + err
    return out


NODE = re.compile(r"^[│├└─ ]*(?P<path>[\w./]+) (?P<digest>[0-9a-f]{8}|none)(?:  (?P<note>.*))?$")


def nodes(lines: list[str]) -> Counter:
    """How many times each file has a line of its own, references back excluded."""
    shown = Counter()
    for line in lines:
        match = NODE.match(line)
        if match and match["note"] != "(see above)":
            shown[match["path"]] += 1
    return shown


def test_each_file_once_and_the_headers_folded(engine):
    lines = rl(engine, "log", "bin/tool").splitlines()
    shown = nodes(lines)
    assert max(shown.values()) == 1, [path for path, count in shown.items() if count > 1]
    assert set(shown) == ({"bin/tool"} | {f"lib/a{a}.a" for a in range(ARCHIVES)}
                          | {f"obj/f{n}.o" for n in range(OBJECTS)}
                          | {f"src/f{n}.c" for n in range(OBJECTS)})
    folded = [line for line in lines if "source files from its depfile" in line]
    assert len(folded) == OBJECTS
    assert folded[0].endswith(f"+ {HEADERS} source files from its depfile: inc/h0.h, "
                              "inc/h1.h, inc/h2.h, ... (--depth N lists them)")
    # the old answer repeated ten headers and the source under every object: over 450 lines
    assert len(lines) <= 5 * OBJECTS + 4 * ARCHIVES + 3, "\n".join(lines)


def test_depth_lists_the_depfile_inputs_each_once(engine):
    lines = rl(engine, "log", "bin/tool", "--depth", "3").splitlines()
    shown = nodes(lines)
    assert max(shown.values()) == 1
    assert all(shown[header] == 1 for header in HEADER_NAMES)
    assert f"{HEADER_NAMES[0]} " in lines[[i for i, line in enumerate(lines)
                                            if "h0.h" in line][0]]
    assert sum("(see above)" in line for line in lines) == (OBJECTS - 1) * HEADERS
    assert not any("source files from its depfile" in line for line in lines)
    assert not any(line.endswith("src/f0.c" + "  source (from the depfile)") for line in lines)

    shallow = rl(engine, "log", "bin/tool", "--depth", "1").splitlines()
    assert sum("└── ... 10 inputs below this depth" in line for line in shallow) == 3
    assert not any("obj/" in line and "made by" in line for line in shallow)
    status, _, err = run_in_process(["log", "--depth", "1"], engine.root, build_env())
    assert status == 2 and "--depth is for `log FILE`" in err, err


def test_json_keeps_every_edge_and_shares_nodes(engine):
    tree = json.loads(rl(engine, "log", "bin/tool", "--json"))
    full, refs = [], []

    def walk(node):
        (refs if "ref" in node else full).append(node)
        for child in node.get("inputs", ()):
            walk(child)

    walk(tree)
    assert len({node["id"] for node in full}) == len(full)
    assert {ref["ref"] for ref in refs} <= {node["id"] for node in full}
    files = 1 + ARCHIVES + 2 * OBJECTS + HEADERS
    edges = ARCHIVES + OBJECTS + OBJECTS * (1 + HEADERS)
    assert len(full) == files and len(full) + len(refs) == 1 + edges
    first = next(node for node in full if node["path"] == "obj/f0.o")
    assert [child["path"] for child in first["inputs"]] == ["src/f0.c", *HEADER_NAMES]
    assert [child["from_depfile"] for child in first["inputs"]] == [False] + [True] * HEADERS


def test_a_file_rebuilt_to_identical_bytes_says_which_run_made_its_bytes(engine):
    engine.write(HEADER_NAMES[0], "/* edited */\n")        # every object reruns, the same
    built = engine.build()
    assert sorted(built.ran) == sorted(f"obj/f{n}.o" for n in range(OBJECTS))
    second, first = [execution["id"] for execution in json.loads(rl(engine, "log", "--json"))]

    lines = rl(engine, "log", "bin/tool").splitlines()
    made = [line for line in lines if "made by rule 'obj/f0.o'" in line]
    assert len(made) == 1
    assert re.fullmatch(rf"[│ ]+made by rule 'obj/f0\.o' in {first} at .+ \(\d+\.\d\ds\); "
                        rf"rebuilt to identical bytes in {second} at [^;]+", made[0]), made
    assert sum("rebuilt to identical bytes" in line for line in lines) == OBJECTS
    # the object itself, asked for directly, was last made by the second build
    direct = rl(engine, "log", "obj/f0.o").splitlines()
    assert re.fullmatch(rf" +made by rule 'obj/f0\.o' in {second} at .+ \(\d+\.\d\ds\)",
                        direct[1]), direct
