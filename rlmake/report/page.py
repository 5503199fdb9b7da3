"""`rlmake report`: one self-contained HTML page for a recorded build. Its style, script and
data are inline (no network), and it draws the timeline on one <canvas>, so a build of
10,000 jobs is 10,000 rectangles in a few paths, not 10,000 DOM nodes."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

TEMPLATE = "template.html"


def render(data: dict[str, Any]) -> bytes:
    """The page for `data` (timeline.report_data)."""
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    title = f"rlmake build {data['execution']['id']}"
    return (template.replace("__RLMAKE_TITLE__", html.escape(title))
            .replace("__RLMAKE_DATA__", embedded_json(data))).encode("utf-8")


def embedded_json(data: Any) -> str:
    """JSON that can sit inside a <script> element: every `<` is written as \\u003c, so no
    text in it (an output tail saying `</script>` or `<!--`) can end the element early.
    JSON.parse reads it back unchanged."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
