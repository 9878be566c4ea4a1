"""``xentbench list``: every registered backend with its implementations and capabilities."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from xentbench.adapters import registry


def backend_listing() -> list[dict[str, Any]]:
    """One entry per registered backend (importing each framework to ask its version)."""
    entries = []
    for status in registry.discover():
        entry: dict[str, Any] = {
            "backend": status.name,
            "source": status.source,
            "available": status.available,
            "reason": status.reason,
            "install": status.install,  # the pip install that adds its framework, if known
            "summary": status.summary,
        }
        if status.available:
            adapter = status.adapter
            entry["version"] = adapter.version()
            entry["devices"] = list(adapter.devices())
            entry["implementations"] = [
                {
                    "name": impl.name,
                    "op": impl.op,
                    "dtypes": list(impl.dtypes),
                    "devices": list(impl.devices),
                    "modes": list(impl.modes),
                    "quantities": list(impl.quantities),
                    "adaptation": impl.adaptation,
                    "gaps": [list(gap) for gap in impl.gaps],
                    "options": list(getattr(impl, "options", ())),
                    "option_values": {
                        name: list(values) for name, values in getattr(impl, "option_values", ())
                    },
                }
                for impl in adapter.implementations()
            ]
        entries.append(entry)
    return entries


def render_listing(entries: list[dict[str, Any]]) -> Table:
    table = Table(
        "backend / implementation",
        "op",
        "dtypes",
        "devices",
        "modes",
        "quantities",
        title="xentbench backends",
    )
    for entry in entries:
        if not entry["available"]:
            why_not = escape(entry["summary"])  # "pip install 'xentbench[extra]'" is no markup
            table.add_row(f"[bold]{escape(entry['backend'])}[/] {why_not}", "", "", "", "", "")
            continue
        devices = ", ".join(entry["devices"])
        table.add_row(
            f"[bold]{entry['backend']}[/] {entry['version']}",
            "",
            "",
            f"visible: {devices}",
            "",
            "",
            end_section=False,
        )
        for impl in entry["implementations"]:
            table.add_row(
                f"  {impl['name']}",
                impl["op"],
                " ".join(impl["dtypes"]),
                " ".join(impl["devices"]),
                " ".join(impl["modes"]),
                " ".join(impl["quantities"]),
            )
        table.add_section()
    return table
