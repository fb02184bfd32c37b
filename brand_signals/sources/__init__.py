"""The signal sources a scanner runs, by name: one module per source, each implementing
`brand_signals.signals.SignalSource`. `load` turns the configured list (`ZEROSCAN_SIGNALS`,
default `DEFAULT`) into sources; an entry is a built-in name or `package.module:Class` (a
plug-in: a class constructed without arguments)."""
from __future__ import annotations

import importlib
from typing import Callable, Sequence

from brand_signals.signals import SignalSource

# name -> "module:attribute"; the order of `DEFAULT` is the order evidence is listed in a
# decision (a presentation signal's rank among equal scores) and supporting facts are added in.
BUILTIN = {
    "wordmarks": "brand_signals.sources.wordmarks:WordMarkSource",
    "images": "brand_signals.sources.images:ImageSource",
    "feedback": "brand_signals.sources.neighbours:NeighbourSource",
    "price": "brand_signals.sources.price:PriceFloorSource",
    "seller": "brand_signals.sources.seller:SellerSource",
}
DEFAULT = ("wordmarks", "images", "feedback", "price", "seller")


def parse(value: str) -> tuple[str, ...]:
    """`ZEROSCAN_SIGNALS`: comma-separated names or `module:Class` entries, each once."""
    names = tuple(x.strip() for x in value.split(",") if x.strip())
    if not names:
        raise ValueError("ZEROSCAN_SIGNALS: no signal source listed")
    for n in names:
        if n not in BUILTIN and ":" not in n:
            raise ValueError(f"ZEROSCAN_SIGNALS: unknown signal source {n!r} (built in: {', '.join(BUILTIN)}; "
                             "a plug-in is written package.module:Class)")
    if len(set(names)) != len(names):
        raise ValueError(f"ZEROSCAN_SIGNALS: a source listed twice in {value!r}")
    return names


def load(names: Sequence[str] = DEFAULT, images: Callable | None = None) -> list[SignalSource]:
    """The sources, in order. `images` builds the image signal index for a catalogue
    (`ImageSignals.build` with the job's fetchers and caches); without it `images` is left
    out (text only)."""
    out: list[SignalSource] = []
    for name in names:
        if name == "images":
            if images is None:
                continue
            from brand_signals.sources.images import ImageSource
            out.append(ImageSource(images))
            continue
        module, _, attr = BUILTIN.get(name, name).partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"signal source {name!r}: cannot load {module}:{attr}: {e}") from None
        out.append(cls())
    return out
