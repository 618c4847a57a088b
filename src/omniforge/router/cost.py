"""The cost model: compute-seconds turned into money and energy with the machine's prices, or per-token prices for models served elsewhere.

Settings (config file, OMNIFORGE_* environment):
    machine_usd_per_hour   what an hour of this machine costs (amortized hardware, rent, cloud VM)
    machine_watts          its power draw under load
    usd_per_kwh            the electricity price
Energy cost is added to the machine's hourly price. A model whose spec options carry
`usd_per_1k_input_tokens` / `usd_per_1k_output_tokens` (served elsewhere, billed by token) is
priced by its tokens instead, plus nothing for local compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings


@dataclass
class Cost:
    compute_seconds: float = 0.0
    usd: float = 0.0
    energy_wh: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.compute_seconds + other.compute_seconds, self.usd + other.usd, self.energy_wh + other.energy_wh)

    def rounded(self) -> dict[str, float]:
        return {"compute_seconds": round(self.compute_seconds, 4), "usd": round(self.usd, 8),
                "energy_wh": round(self.energy_wh, 5)}

    def header(self) -> str:
        """The x-omniforge-cost header value: usd=...; compute_s=...; energy_wh=..."""
        r = self.rounded()
        return f"usd={r['usd']:.8f}; compute_s={r['compute_seconds']:.4f}; energy_wh={r['energy_wh']:.5f}"

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CostModel:
    usd_per_hour: float = 0.0
    watts: float = 0.0
    usd_per_kwh: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CostModel:
        return cls(settings.machine_usd_per_hour, settings.machine_watts, settings.usd_per_kwh)

    def of_seconds(self, seconds: float) -> Cost:
        """What `seconds` of this machine's compute cost, in money and energy."""
        energy_wh = self.watts * seconds / 3600
        usd = self.usd_per_hour * seconds / 3600 + energy_wh / 1000 * self.usd_per_kwh
        return Cost(seconds, usd, energy_wh)

    def of_request(self, spec: ModelSpec, seconds: float, input_tokens: int = 0, output_tokens: int = 0) -> Cost:
        """A request's cost: per token for a model priced by token, else by compute time here."""
        per_in = spec.options.get("usd_per_1k_input_tokens")
        per_out = spec.options.get("usd_per_1k_output_tokens")
        if per_in is not None or per_out is not None:
            usd = input_tokens / 1000 * float(per_in or 0) + output_tokens / 1000 * float(per_out or 0)
            return Cost(seconds, usd, 0.0)
        return self.of_seconds(seconds)

    def describe(self) -> dict[str, Any]:
        return {"usd_per_hour": self.usd_per_hour, "watts": self.watts, "usd_per_kwh": self.usd_per_kwh,
                "usd_per_compute_hour": round(self.of_seconds(3600).usd, 6)}


__all__ = ["Cost", "CostModel"]
