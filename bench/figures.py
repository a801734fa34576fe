"""What a benchmark hands to the report: spreads over runs, tables, and figures with targets."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spread:
    """Values of one quantity over repeated runs, shown as min / median / max."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float] | tuple[float, ...]) -> Spread:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def fmt(self, spec: str = ",.2f", unit: str = "") -> str:
        if len(self.values) == 1:
            return f"{self.values[0]:{spec}}{unit} (1 run)"
        return f"{self.min:{spec}} / {self.median:{spec}} / {self.max:{spec}}{unit} ({len(self.values)} runs)"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Figure:
    """One headline number with its target; met is None when there is no verdict (pending, informational)."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Section:
    number: int
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def mib(n: float) -> float:
    return n / 2**20


def prose(doc: str | None, skip: int = 1) -> str:
    """A module docstring as Markdown: the first `skip` paragraphs dropped, hard-wrapped lines
    joined, `- ` items kept as a list."""
    paragraphs = (doc or "").strip().split("\n\n")[skip:]
    out = []
    for para in paragraphs:
        items: list[str] = []
        for line in para.splitlines():
            line = line.strip()
            if line.startswith("- ") or not items:
                items.append(line)
            else:
                items[-1] += " " + line
        out.append("\n".join(items))
    return "\n\n".join(out)
