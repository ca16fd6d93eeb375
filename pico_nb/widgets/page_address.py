"""Each dashboard view has its own address, so reload, back/forward and shared links work.

The kernel reads the address once (Voila hands it over as QUERY_STRING) and, as the person
moves around, writes it back with history.pushState from an image that cannot load (widgets do
not run <script>). Going back or forward reloads the page, which rebuilds the view from the
address. Other query parameters (a login token) are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from pico_nb.text import esc

KEYS = ("view", "experiment", "run", "compare", "runs", "search", "status", "scope")
APP_TITLE = "PICO workbench"
# Inline handlers resolve names on the element and the document first (`URL` is
# document.URL there), so globals are spelt window.…
_ROUTE_JS = (
    "const r=JSON.parse(this.dataset.route),u=new window.URL(window.location.href);"
    "for(const k of JSON.parse(this.dataset.keys))u.searchParams.delete(k);"
    "for(const [k,v] of Object.entries(r))u.searchParams.set(k,v);"
    "const h=window.history;if(u.href!==window.location.href)"
    "h[this.dataset.push?'pushState':'replaceState']({},'',u);"
    "window.document.title=this.dataset.title;"
    "if(!window.picoRouting){window.picoRouting=1;"
    "window.addEventListener('popstate',()=>window.location.reload())}"
)


@dataclass(frozen=True)
class Route:
    """Where the address points: a top-level view, an experiment and maybe one of its runs."""

    view: str = "list"
    experiment: int | None = None
    run: int | None = None
    compare: tuple[int, ...] = ()
    runs: tuple[int, ...] = ()  # compare these runs (of one experiment or several)
    search: str = ""
    status: str = ""
    scope: str = ""


def _ids(text: str) -> tuple[int, ...]:
    """'3,5' → (3, 5); anything else in the list is ignored."""
    return tuple(int(p) for p in text.split(",") if p.strip().isdigit())


def parse_route(query: str) -> Route:
    """Read the address's query string; unknown or malformed parts fall back to the list."""
    values = {k: v[0] for k, v in parse_qs(query).items() if v}
    experiment = _ids(values.get("experiment", ""))
    run = _ids(values.get("run", ""))
    return Route(
        view=values.get("view", "experiment" if experiment else "list"),
        experiment=experiment[0] if experiment else None,
        run=run[0] if run else None,
        compare=_ids(values.get("compare", "")),
        runs=_ids(values.get("runs", "")),
        search=values.get("search", "")[:200],
        status=values.get("status", "")[:20],
        scope=values.get("scope", "")[:20],
    )


def route_html(route: dict[str, str], title: str, push: bool) -> str:
    """An element that, once in the page, writes this route into the address and the title."""
    return (
        f'<img alt="" src="data:," data-route="{esc(json.dumps(route))}" '
        f'data-keys="{esc(json.dumps(KEYS))}" data-title="{esc(title)} · {APP_TITLE}" '
        f'{"data-push=1 " if push else ""}onerror="{esc(_ROUTE_JS)}">'
    )
