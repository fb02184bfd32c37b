"""Render the simple-icons set (npm `simple-icons`, CC0-1.0: about 3,500 brand icons as SVG
paths) to PNG logos, one per brand, for `eval_logo_finetune_cv.py --icons`. Research only.

    npm pack simple-icons@16.37.0 && tar xzf simple-icons-16.37.0.tgz    # writes ./package
    .venv-train/bin/python benchmarks/research/render_simple_icons.py package DIR

Each icon is drawn in its brand colour on white (on black when the colour is near white),
192 px square. cairosvg (in benchmarks/research/requirements-finetune.txt) needs the system's libcairo.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cairosvg

SIDE = 192


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="the unpacked npm package (holds data/ and icons/)")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for icon in json.loads((args.package / "data" / "simple-icons.json").read_text()):
        svg = args.package / "icons" / f"{icon['slug']}.svg"
        if not svg.exists():
            continue
        colour = icon["hex"]
        light = sum(int(colour[i:i + 2], 16) for i in (0, 2, 4)) >= 600
        text = svg.read_text().replace("<path ", f'<path fill="#{colour}" ')
        cairosvg.svg2png(bytestring=text.encode(), write_to=str(args.out / f"{icon['slug']}.png"),
                         output_width=SIDE, output_height=SIDE, background_color="black" if light else "white")
        n += 1
    print(f"{n} icons in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
