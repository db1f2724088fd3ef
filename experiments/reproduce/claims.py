"""A number a paper states (a value, a band, a bound) and how far a result lies from it.

`deviation` returns a verdict (`inside`, `outside`, ...) and a text saying by how much, in the claim's unit.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("value", "band", "at_least", "at_most")
POINTS = ("%", "pp")  # units whose deviations are differences in percentage points


@dataclass(frozen=True)
class PaperClaim:
    kind: str  # one of KINDS
    low: float  # the value, the band's low end, or the bound
    high: float | None = None  # the band's high end
    unit: str = "x"  # "x" (ratio), "%" or "pp" (deviations in percentage points), "ms"
    text: str = ""  # how the paper states it, shown in the report; made from the numbers when empty
    source: str = ""  # where the number comes from (docs/papers/...)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"PaperClaim.kind={self.kind!r}: use one of {KINDS}")
        if self.kind == "band" and (self.high is None or self.high < self.low):
            raise ValueError("a band needs high >= low")

    def shown(self) -> str:
        if self.text:
            return self.text
        value = format_number(self.low, self.unit)
        if self.kind == "band":
            return f"{format_number(self.low, '')}-{format_number(self.high, self.unit)}"
        return {"value": value, "at_least": f">= {value}", "at_most": f"<= {value}"}[self.kind]

    def deviation(self, result: float) -> tuple[str, str]:
        """(verdict, how far): verdict is `inside`/`outside` for bands and bounds, `off` for a value."""
        if self.kind == "value":
            return "off", self._gap(result, self.low)
        if self.kind == "band":
            if self.low <= result <= self.high:
                return "inside", "inside the band"
            edge = self.low if result < self.low else self.high
            side = "below" if result < edge else "above"
            return "outside", f"{side} the band by {self._gap(result, edge, signed=False)}"
        ok = result >= self.low if self.kind == "at_least" else result <= self.low
        words = {("at_least", True): "meets it", ("at_least", False): "falls short",
                 ("at_most", True): "within it", ("at_most", False): "exceeds it"}[self.kind, ok]
        return ("inside" if ok else "outside"), f"{words}: {self._gap(result, self.low)}"

    def _gap(self, result: float, ref: float, signed: bool = True) -> str:
        diff = result - ref if signed else abs(result - ref)
        sign = "+" if signed and diff >= 0 else ""  # a negative number carries its own sign
        if self.unit in POINTS:
            return f"{sign}{diff:.2f} pp"
        rel = f" ({sign}{100 * diff / ref:.1f}%)" if ref else ""
        return f"{sign}{format_number(diff, self.unit)}{rel}"


def format_number(value: float, unit: str) -> str:
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return f"{text}{unit}" if unit in ("x", "%", "") else f"{text} {unit}"
