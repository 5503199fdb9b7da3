"""Expanding a large Rulesfile fast without changing what it expands to.

Plain templates (text and `{{ name }}`) are filled in without Jinja; everything else,
and every error, is still Jinja's."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from rlmake.rules import rulesfile
from rlmake.rules import templates as templates_module
from rlmake.rules.expand import Expander
from rlmake.rules.templates import TemplateProblem, Templates

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate  # noqa: E402  (bench/generate.py)

CONTEXT = {"dep": "src/a b.c", "target": "obj/a.o", "flag": True, "off": False, "n": 3,
           "ratio": 1.5, "nothing": None, "items": [1, "x"], "table": {"k": 1},
           "true": "shadowed", "bad": "\udcff"}


def jinja_render(source: str, context: dict) -> tuple[str, str]:
    """What Jinja itself makes of `source`: ("ok", text) or ("error", "")."""
    env = templates_module._environment()
    try:
        return "ok", templates_module._checked(env.from_string(source).render(context), source)
    except Exception:  # noqa: BLE001 - any failure is one outcome here
        return "error", ""


def ours(source: str, context: dict) -> tuple[str, str]:
    try:
        return "ok", Templates("/nonexistent").render(source, context)
    except TemplateProblem:
        return "error", ""


def test_plain_templates_do_not_compile_jinja(monkeypatch):
    templates = Templates("/nonexistent")

    def no_jinja(source):
        raise AssertionError(f"Jinja compiled {source!r}")

    monkeypatch.setattr(templates._env, "from_string", no_jinja)
    rendered = templates.render("cp {{ dep }} {{target}} # {{ flag }} {{n}}", CONTEXT)
    assert rendered == "cp src/a b.c obj/a.o # true 3"


@pytest.mark.parametrize("source", [
    "{{ dep }}", "cp {{ dep }} {{ target }}", "{{ flag }}/{{ off }}", "{{ n }}{{ ratio }}",
    "{{ nothing }}", "{{ items }}", "{{ table }}", "{{ true }}", "{{ none }}", "{{ range }}",
    "{{ undefined_name }}", "{{ bad }}", "x {{ dep }}\n", "{{{ dep }}", "{{ dep }}}",
    "{ {{ dep }} }", "${HOME} {{ dep }}", "{{- dep }}", "{{ dep -}} x", "{{ dep }}{# c #}",
    "{% if flag %}{{ dep }}{% endif %}", "{{ dep | quote }}", "{{ dep }}{{", "{{ in }}",
])
def test_same_text_and_errors_as_jinja(source):
    assert ours(source, CONTEXT) == jinja_render(source, CONTEXT)


def test_same_as_jinja_on_every_short_mix_of_braces_and_names():
    alphabet = ["{", "}", "{{", "}}", "{%", "{#", " ", "dep", "flag", "true", "-", "\n", "x"]
    for length in range(1, 4):
        for parts in itertools.product(alphabet, repeat=length):
            source = "".join(parts)
            if "{" in source:   # without one, the text is the text (not Jinja's business)
                assert ours(source, CONTEXT) == jinja_render(source, CONTEXT), source


@pytest.mark.parametrize("style", ["explicit", "pattern", "archives"])
def test_bench_projects_expand_to_the_jobs_they_describe(tmp_path, style):
    generate.generate(tmp_path, 300, group=100, style=style)
    expander = Expander(rulesfile.load(str(tmp_path / "Rulesfile.yaml")))
    plan = expander.plan(expander.default_targets())
    jobs = {job.target: job for job in plan.jobs}
    if style == "archives":
        assert jobs["obj/g1/f7.o"].commands == ("cp src/g1/f7.c obj/g1/f7.o",)
        assert jobs["lib/g2.a"].commands[0].endswith("obj/g2/f99.o > lib/g2.a")
        assert len(jobs) == 300 + 3 + 1
    else:
        assert jobs["out/g1/f7.txt"].commands == ("cp src/g1/f7.txt out/g1/f7.txt",)
        assert len(jobs) == 300 + 1
