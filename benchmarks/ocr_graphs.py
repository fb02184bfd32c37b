"""The OCR graphs side by side, in one process, photo by photo: the wheel's own graphs, the
hard-swish rewrite alone, and the graphs as the job runs them (`models/ocr_graphs.py`: the
hard-swish rewrite and the affine fold). Every reader reads every photo in turn (the order
rotates from photo to photo), so drift of the machine falls on all of them alike; then the
lines each read are compared with the job's graphs: texts, boxes and scores.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ocr_graphs [--data DIR] [--n 0] [--out FILE]

`--n`: photos to read, spread over the set (0: all; the dev logo set has 1,109). Prints ms per
photo for each, the ratios to the job's graphs, and how many photos read other lines; `--out`
writes the same as JSON. Needs the `onnx` package (as `make setup` installs it).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brand_signals.images.image_decode import decode_rgb  # noqa: E402
from models.ocr import TextReader  # noqa: E402
from models.ocr_graphs import WHEEL_GRAPHS, fuse_hard_swish, ocr_models, wheel_graph  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "logos"


def hard_swish_only(out_dir: Path) -> tuple[Path, Path]:
    """The wheel's graphs with the hard-swish rewrite alone (the job's graphs before the fold)."""
    import onnx

    paths = []
    for name in WHEEL_GRAPHS:
        model = onnx.load(str(wheel_graph(name)))
        fuse_hard_swish(model.graph)
        path = out_dir / name
        onnx.save(model, str(path))
        paths.append(path)
    return paths[0], paths[1]


def readers(tmp: Path) -> dict[str, TextReader]:
    """name -> reader, the job's graphs first."""
    out = {"rewritten": TextReader(threads=1), "wheel": TextReader(threads=1, graphs="wheel"),
           "hard_swish_only": TextReader(threads=1, graphs=hard_swish_only(tmp))}
    assert out["rewritten"].graphs == ocr_models()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=0, help="photos, spread over the set (0: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    files = sorted(p for p in (a.data / "images").iterdir() if p.is_file())
    if a.n and a.n < len(files):
        files = [files[round(i * len(files) / a.n)] for i in range(a.n)]
    photos = [decode_rgb(p.read_bytes()) for p in files]
    with tempfile.TemporaryDirectory() as tmp:
        rs = readers(Path(tmp))
        names = list(rs)
        for r in rs.values():
            r.read(photos[:2])                          # warm-up (sessions, allocations)
        seconds = dict.fromkeys(names, 0.0)
        lines: dict[str, list] = {n: [] for n in names}
        for i, photo in enumerate(photos):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                t0 = time.perf_counter()
                lines[name].append(rs[name].read([photo])[0])
                seconds[name] += time.perf_counter() - t0
    res: dict = {"photos": len(photos), "lines": sum(map(len, lines["rewritten"])),
                 "ms_per_photo": {n: round(seconds[n] / len(photos) * 1000, 2) for n in names},
                 "time_over_rewritten": {n: round(seconds[n] / seconds["rewritten"], 3) for n in names}}
    for n in names[1:]:
        other = score = box = 0.0
        for mine, theirs in zip(lines["rewritten"], lines[n]):
            if [x.text for x in mine] != [x.text for x in theirs]:
                other += 1
                continue
            for x, y in zip(mine, theirs):
                score = max(score, abs(x.score - y.score))
                box = max(box, float(np.abs(np.subtract(x.box, y.box)).max()))
        res[f"vs_{n}"] = {"photos_with_other_lines": int(other), "max_score_diff": float(f"{score:.3g}"),
                          "max_box_diff_px": round(box, 3)}
    print(json.dumps(res, indent=2))
    if a.out:
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
