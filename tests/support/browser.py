"""Headless Chromium (Debian's /usr/bin/chromium) and a small DOM reader for the browser tests."""
from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = os.environ.get("OMNIRECON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]
WINDOW = (1280, 1600)


def chromium(url: str, tmp: Path, *, screenshot: Path | None = None, timeout: float = 60) -> str:
    """Open url once in a fresh profile; return the DOM after load (--dump-dom) or write a PNG (--screenshot)."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    profile = tmp / f"chromium-profile-{'shot' if screenshot else 'dom'}"
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=5000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"chromium exited {r.returncode}: {r.stderr[-2000:]}"
    return r.stdout


def assert_not_blank(png: Path, size=WINDOW) -> None:
    """A real rendering: the window's size, many colours, no single colour covering nearly everything."""
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == size, img.size
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, f"only {len(colours or [])} colours: blank page?"
    top = max(n for n, _ in colours)
    assert top < 0.95 * size[0] * size[1], "one colour covers 95% of the screenshot"


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], []

    def iter(self, tag: str | None = None):
        for c in self.children:
            if tag is None or c.tag == tag:
                yield c
            yield from c.iter(tag)

    def find(self, tag: str | None = None, **attrs) -> "Node | None":
        return next((n for n in self.iter(tag) if all(n.attrs.get(k) == v for k, v in attrs.items())), None)

    def text_content(self) -> str:
        parts = list(self.text)
        for c in self.children:
            parts.append(c.text_content())
        return " ".join(p.strip() for p in parts if p.strip())

    def rows(self) -> list["Node"]:
        """A table's data rows (those with <td>)."""
        return [tr for tr in self.iter("tr") if any(True for _ in tr.iter("td"))]

    def cells(self) -> list[str]:
        return [td.text_content() for td in self.iter("td")]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text.append(data)


def parse_html(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    b.close()
    return b.root
