"""The documentation's Python examples run, in order, page by page (after TabM's
``test_code_blocks.py``): every fenced ``python`` block of README.md and docs/*.md is
executed in one namespace per page, with a fresh temporary directory as the working
directory, so an example cannot rot and a name one block defines is there for the next.

A block that cannot run here (a server, a GPU, torchrun) is fenced as ``python no-run``
followed by the reason (```` ```python no-run: needs torchrun ````): it is reported as a
skipped case of its own, so the skips stay visible. Keep them few.

The front door's shape is checked too: README.md at most 300 lines with ``pip install``
in its first 80, at least five pages in docs/, and every relative link resolving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A fence line: ``` then the info string (the language and, for us, "no-run: reason").
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None  # set for ```python no-run: why


def code_blocks(page: Path) -> list[Block]:
    """The fenced ``python`` blocks of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        fence, info = opened["fence"], opened["info"].strip()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        words = info.split(maxsplit=1)
        if not words or words[0] not in ("python", "py"):
            continue
        rest = words[1] if len(words) > 1 else ""
        skip = None
        if rest.startswith("no-run"):
            skip = rest.removeprefix("no-run").lstrip(": ").strip() or "marked no-run"
        elif rest:
            raise ValueError(f"{page.name}:{start + 1}: unknown block marker {rest!r}")
        blocks.append(Block(page, start + 1, "\n".join(body) + "\n", skip))
    return blocks


def _id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


SKIPPED = [b for p in PAGES for b in code_blocks(p) if b.skip_reason]


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_python_blocks_of_page_run_in_order(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [b for b in code_blocks(page) if b.skip_reason is None]
    if not blocks:
        pytest.skip(f"{_id(page)} has no Python block to run")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        code = compile(block.code, f"{_id(page)}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(
                f"the Python block at {_id(page)}:{block.line} failed: {type(exc).__name__}: {exc}"
            ) from exc


@pytest.mark.parametrize("block", SKIPPED, ids=[f"{_id(b.page)}:{b.line}" for b in SKIPPED] or None)
def test_blocks_marked_no_run_are_reported(block: Block) -> None:
    # Compiled at least, so a marked block cannot hold a syntax error either.
    compile(block.code, f"{_id(block.page)}:{block.line}", "exec")
    pytest.skip(f"{_id(block.page)}:{block.line}: {block.skip_reason}")


def test_block_extraction_reads_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n```\nnot python\n```\n"
        "````python no-run: needs torchrun\nrun()\n````\n```bash\nls\n```\n```python\ny = x\n```\n"
    )
    blocks = code_blocks(page)
    assert [(b.line, b.code, b.skip_reason) for b in blocks] == [
        (2, "x = 1\n", None),
        (8, "run()\n", "needs torchrun"),
        (14, "y = x\n", None),
    ]
    page.write_text("```python no-rnu\nx\n```\n")
    with pytest.raises(ValueError, match="unknown block marker"):
        code_blocks(page)


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"
    assert any("pip install" in line for line in lines[:80]), "no pip install in 80 lines"
    assert "make demo" in "\n".join(lines) and "make test" in "\n".join(lines)
    assert len(PAGES) - 1 >= 5, "docs/ needs at least five pages"


def test_parameters_page_lists_every_parameter_with_its_default() -> None:
    import inspect

    from steadyclf import BinaryClassifier

    text = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    rows = {
        m["name"]: m["default"]
        for m in re.finditer(r"^\| `(?P<name>\w+)` \| `(?P<default>[^`]*)` \|", text, re.M)
    }
    signature = inspect.signature(BinaryClassifier.__init__).parameters
    expected = {name: repr(p.default) for name, p in signature.items() if name != "self"}
    assert rows == expected, "docs/parameters.md's table differs from BinaryClassifier"


LINK = re.compile(r"\]\((?!https?://|mailto:)(?P<target>[^)\s#]*)(?:#(?P<anchor>[^)\s]*))?\)")
HREF = re.compile(r'(?:href|src)="(?!https?://|#|data:)(?P<target>[^"#]+)"')


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces
    to hyphens, a repeated heading numbered (``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    found = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("page", [*PAGES, ROOT / "benchmarks" / "README.md"], ids=_id)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for match in LINK.finditer(text):
        target = page.parent / match["target"] if match["target"] else page
        if not target.exists():
            broken.append(match["target"])
        elif (
            match["anchor"] is not None
            and target.suffix == ".md"
            and match["anchor"] not in anchors(target)
        ):
            broken.append(f"{match['target']}#{match['anchor']}")
    broken += [m["target"] for m in HREF.finditer(text) if not (page.parent / m["target"]).exists()]
    assert not broken, f"{_id(page)} links to missing files or headings: {broken}"


def test_anchors_follow_github() -> None:
    page = ROOT / "docs" / "cli.md"
    assert {"train", "what-every-command-shares"} <= anchors(page)
