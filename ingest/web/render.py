"""Jinja2 environment and the two ways pages link: a live server, or one self-contained file.

Templates never build a URL themselves: they call ``links`` (a :class:`ServerLinks` for
``neurflow serve``, a :class:`ReportLinks` for ``neurflow report``). A report link to a
page the report does not hold is None, and templates then print plain text.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape

from .layout import share_label
from .views import compact, short_group

__all__ = ["environment", "ServerLinks", "ReportLinks", "anchor"]


def environment() -> Environment:
    env = Environment(loader=PackageLoader("neurflow.ingest.web", "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["compact"] = compact
    env.filters["short_group"] = short_group
    env.filters["num"] = share_label
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.1f}%"
    env.filters["anchor"] = anchor
    return env


def anchor(kind: str, uid: str) -> str:
    """A stable HTML id for a page of the report."""
    return f"{kind}-{hashlib.sha1(uid.encode()).hexdigest()[:12]}"


class ServerLinks:
    """URLs of the explorer."""

    mode = "server"

    def classes(self) -> str:
        return "/"

    def circuit(self, cls: str) -> str | None:
        return "/circuit?" + urlencode({"class": cls})

    def group(self, uid: str) -> str | None:
        return "/group?" + urlencode({"uid": uid})

    def compare(self, a: str, b: str) -> str | None:
        return "/compare?" + urlencode({"a": a, "b": b})

    def concepts(self) -> str | None:
        return "/concepts"

    def concept(self, uid: str) -> str | None:
        return "/concept?" + urlencode({"uid": uid})

    def biased(self) -> str | None:
        return "/biased"

    def img(self, uid: str, kind: str = "thumb", size: int = 96) -> str | None:
        return f"/img?uid={quote(uid, safe='')}&kind={kind}&size={size}"

    def static(self, name: str) -> str:
        return f"/static/{name}"


class ReportLinks:
    """Anchors inside one HTML file; images inlined as data URIs (each picture encoded once)."""

    mode = "report"

    def __init__(self, media: Any, circuits: set[str], groups: set[str], concepts: frozenset[str] | set[str] = frozenset()) -> None:
        self.media = media
        self.circuits = set(circuits)
        self.groups = set(groups)
        self.concepts_in = set(concepts)
        self._uris: dict[tuple[str, str, int], str | None] = {}
        self.missing: list[str] = []

    def classes(self) -> str:
        return "#home"

    def circuit(self, cls: str) -> str | None:
        return "#" + anchor("c", cls) if cls in self.circuits else None

    def group(self, uid: str) -> str | None:
        return "#" + anchor("g", uid) if uid in self.groups else None

    def compare(self, a: str, b: str) -> str | None:
        return None

    def concepts(self) -> str | None:
        return None

    def concept(self, uid: str) -> str | None:
        return None

    def biased(self) -> str | None:
        return "#biased"

    # the explorer's sizes are for sharp pictures on dense screens; the report inlines
    # every picture, so it takes the size the page displays, as JPEG
    SIZE = {48: 48, 64: 64, 96: 64, 128: 128, 192: 128, 320: 192}

    def img(self, uid: str, kind: str = "thumb", size: int = 96) -> str | None:
        key = (uid, kind, self.SIZE.get(size, size))
        if key not in self._uris:
            pic = self.media.picture(uid, kind, key[2], fmt="jpeg")
            if pic is None:
                self.missing.append(f"{kind}:{uid}")
                self._uris[key] = None
            else:
                self._uris[key] = "data:image/jpeg;base64," + base64.b64encode(pic.data).decode("ascii")
        return self._uris[key]

    def static(self, name: str) -> str:
        return ""
