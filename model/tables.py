"""The one Markdown table writer behind every report (metrics, parity, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` is one letter a column ("l" or "r"; default left)."""
    lines = ["| " + " | ".join(header) + " |"]
    rules = {"l": "---", "r": "---:", "c": ":---:"}
    lines.append("|" + "|".join(rules[a] for a in align.ljust(len(header), "l")) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
