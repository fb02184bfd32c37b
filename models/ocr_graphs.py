"""The OCR models as the job runs them: RapidOCR's PP-OCRv4 detection and recognition graphs
with every hard-swish written as one HardSigmoid and one Mul, and the scalar affine steps of
their backbones folded into the convolutions beside them.

The wheel's graphs (exported from Paddle by paddle2onnx) spell hard-swish out in four
element-wise nodes, `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`, which onnxruntime runs as four
passes over the tensor (with layout changes around them); it has no fusion for that pattern.
`x * HardSigmoid(x; alpha=1/6, beta=0.5)` is the same function in two nodes of opset 6, so the
graphs keep their opset (12) and every other node as it is. Per run, one core: recognition
of six 48x320 lines 1.08x faster, detection of a 480x480 photo 1.08x; outputs within 3e-6 of
the wheel's, and the dev logo decisions identical field for field (README, "Throughput").

PP-LCNetV3 (both backbones) puts a learnable affine block, `s*x + b` with one learned s and b,
after every convolution and after every hard-swish; paddle2onnx writes each as a Mul and an Add
over the whole tensor, which onnxruntime does not fuse either. `fold_affine` moves them into the
convolutions (exact up to float rounding; see its doc): 90 of detection's nodes and 96 of
recognition's go, recognition of six lines 1.19x faster and detection 1.14x again, outputs
within 5e-6 of the wheel's (README, "Throughput").

    .venv/bin/python -m models.ocr_graphs [--out DIR]    # what `make setup` runs

Files are written once per source graph and version of this file (named by both sha256s,
written whole then renamed), in `ZEROSCAN_CACHE_DIR`/models (default .cache/models). Rewriting needs the `onnx` package;
running them needs only onnxruntime.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The graphs of the installed rapidocr-onnxruntime wheel that are rewritten (the angle
# classifier is not run: models/ocr.py USE_ANGLE_CLASSIFIER).
WHEEL_GRAPHS = ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx")
SUFFIX = "rewritten"


def default_dir() -> Path:
    return Path(os.environ.get("ZEROSCAN_CACHE_DIR", str(ROOT / ".cache"))).resolve() / "models"


def wheel_graph(name: str) -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).resolve().parent / "models" / name


def rewritten_path(src: Path, out_dir: Path) -> Path:
    """Where the rewrite of `src` lives: named by the source graph's sha256 and this file's, so
    neither another wheel's graph nor a changed rewrite ever reads a stale file."""
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
    return out_dir / f"{src.stem}-{digest}-{SUFFIX}-{code}.onnx"


def ensure(src: Path, out_dir: Path | None = None) -> Path:
    """The rewrite of `src`, made now if it is not there yet (atomically: concurrent workers
    each write their own temporary file and the last rename wins with the same bytes)."""
    out_dir = out_dir or default_dir()
    dst = rewritten_path(src, out_dir)
    if dst.exists():
        return dst
    out_dir.mkdir(parents=True, exist_ok=True)
    data = rewrite(src.read_bytes())
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=dst.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)    # mkstemp's 0600 would keep the workers of another user out
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def ocr_models(out_dir: Path | None = None) -> tuple[Path, Path]:
    """(detection, recognition): the rewritten graphs of the installed wheel."""
    det, rec = (ensure(wheel_graph(n), out_dir) for n in WHEEL_GRAPHS)
    return det, rec


def rewrite(model_bytes: bytes) -> bytes:
    """The serialized graph with each hard-swish as HardSigmoid * x and the affine steps folded
    (see the module's doc)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    fused = fuse_hard_swish(model.graph)
    folded = fold_affine(model.graph)
    onnx.checker.check_model(model)
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + \
        f"zeroscan models/ocr_graphs.py: {fused} hard-swish patterns as HardSigmoid * x, {folded} affine steps folded"
    return model.SerializeToString()


def fuse_hard_swish(graph) -> int:
    """Replace every `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` (either operand order of the Add
    and the Mul) whose intermediate values feed nothing else; returns how many."""
    from onnx import helper

    g = _Graph(graph)
    producer = g.producer

    def is_scalar(name: str, value: float) -> bool:
        a = g.consts.get(name)
        return a is not None and a.size == 1 and float(a.reshape(())) == value

    def only_used_once(node) -> bool:
        return g.only_reader(node.output[0]) is not None

    replaced: dict[int, list] = {}
    dropped: set[int] = set()
    for div in graph.node:
        if div.op_type != "Div" or len(div.input) != 2 or not is_scalar(div.input[1], 6.0):
            continue
        mul = producer.get(div.input[0])
        if mul is None or mul.op_type != "Mul" or not only_used_once(mul):
            continue
        for x_at, clip_at in ((0, 1), (1, 0)):
            clip = producer.get(mul.input[clip_at])
            if (clip is None or clip.op_type != "Clip" or len(clip.input) != 3 or not only_used_once(clip)
                    or not (is_scalar(clip.input[1], 0.0) and is_scalar(clip.input[2], 6.0))):
                continue
            add = producer.get(clip.input[0])
            x = mul.input[x_at]
            if add is None or add.op_type != "Add" or len(add.input) != 2 or not only_used_once(add):
                continue
            three = add.input[1] if add.input[0] == x else add.input[0] if add.input[1] == x else None
            if three is None or not is_scalar(three, 3.0):
                continue
            k = len(replaced)
            gate = f"zs_hardswish_{k}_gate"
            replaced[id(div)] = [
                helper.make_node("HardSigmoid", [x], [gate], name=f"zs_hardswish_{k}_sigmoid", alpha=1.0 / 6, beta=0.5),
                helper.make_node("Mul", [x, gate], [div.output[0]], name=f"zs_hardswish_{k}_mul"),
            ]
            dropped |= {id(add), id(clip), id(mul)}
            break
    nodes = []
    for n in graph.node:
        if id(n) in replaced:
            nodes.extend(replaced[id(n)])
        elif id(n) not in dropped:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph)     # the 3s and 6s the patterns read, when nothing else reads them
    return len(replaced)


def _constants(graph) -> dict:
    """Constant values by name: initializers (those that are not also graph inputs, which a
    caller may feed) and Constant nodes' tensors."""
    from onnx import numpy_helper

    fed = {i.name for i in graph.input}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in fed}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def _drop_unused(graph) -> None:
    """Constant nodes and initializers that nothing reads any more."""
    still = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in still)]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in still]
    del graph.initializer[:]
    graph.initializer.extend(inits)


class _Graph:
    """Who makes and who reads each value of a graph, for the folds below."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.consts = _constants(graph)
        self.producer = {o: n for n in graph.node for o in n.output}
        self.readers: dict[str, list] = defaultdict(list)
        for n in graph.node:
            for i in n.input:
                self.readers[i].append(n)
        self.outputs = {o.name for o in graph.output}
        self.names = ({i.name for i in graph.initializer} | {i.name for i in graph.input} | self.outputs
                      | {v for n in graph.node for v in (*n.input, *n.output)})
        self.made = 0

    def only_reader(self, value: str):
        """The one node that reads `value`, or None (several readers, or a graph output)."""
        r = self.readers.get(value, [])
        return r[0] if len(r) == 1 and value not in self.outputs else None

    def scalar_operand(self, node, op: str, rank: int):
        """(the other input, the scalar) of a two-input `op` node one of whose inputs is a
        finite one-element float constant of at most `rank` dimensions (the other input's rank:
        a constant of more would broadcast the result to more); else None."""
        if node is None or node.op_type != op or len(node.input) != 2:
            return None
        for k in (0, 1):
            a = self.consts.get(node.input[k])
            if (a is not None and a.size == 1 and a.ndim <= rank and a.dtype == np.float32 and np.isfinite(a).all()
                    and node.input[1 - k] not in self.consts):
                return node.input[1 - k], float(a.reshape(()))
        return None

    def conv_params(self, conv):
        """(weight, bias) as float64 arrays of a Conv whose weight and bias are constants."""
        w = self.consts.get(conv.input[1]) if len(conv.input) > 1 else None
        if conv.op_type != "Conv" or w is None or w.dtype != np.float32:
            return None
        if len(conv.input) > 2 and conv.input[2]:
            b = self.consts.get(conv.input[2])
            if b is None or b.dtype != np.float32:
                return None
        else:
            b = np.zeros(w.shape[0], np.float32)
        return w.astype(np.float64), b.astype(np.float64)

    def set_conv_params(self, conv, w, b) -> None:
        from onnx import numpy_helper

        names = []
        while len(names) < 2:             # names nothing in the graph has
            name = f"zs_fold_{self.made}"
            self.made += 1
            if name not in self.names:
                names.append(name)
                self.names.add(name)
        for name, value in zip(names, (w, b)):
            arr = value.astype(np.float32)
            self.graph.initializer.append(numpy_helper.from_array(arr, name))
            self.consts[name] = arr
        del conv.input[1:]
        conv.input.extend(names)


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _unpadded(conv) -> bool:
    """A convolution without padding: every tap of every output reads an input position, so a
    constant added to its input adds the same (b times the weights' sum) to each output."""
    pads = _attr(conv, "pads", None)
    return (pads is None or not any(pads)) and _attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")


def fold_affine(graph) -> int:
    """Fold the graphs' scalar affine steps (PP-LCNetV3's learnable affine blocks, `y = s*x + b`
    with one learned s and b, paddle2onnx writes each as a Mul and an Add over the whole tensor)
    into the convolutions next to them; returns how many Mul and Add nodes went. Three exact
    rewrites (the same function up to float rounding), each only where the intermediate values
    feed nothing else:
    - `Add(Mul(Conv(x; W, c), s), b)` -> `Conv(x; s*W, s*c + b)` (either step alone too);
    - `Mul(x * HardSigmoid(x; a, beta), s)` with x a Conv's output -> the Conv scaled by s and
      `HardSigmoid(x; a/s, beta)`: s*x * hs((s*x)/s) is s * (x * hs(x));
    - `Conv(Add(Mul(x, s), b); W, c)` without padding (1x1 in these graphs) -> `Conv(x; s*W,
      c + b*sum(W))` (padding would add zeros where the Add had b, so padded kxk convolutions
      keep their Add).
    A graph with subgraphs (If, Loop, Scan: their reads are not followed here) is left as it is."""
    from onnx import AttributeProto

    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return 0
    removed = 0
    # 1: affine steps after a convolution
    g = _Graph(graph)
    drop: set[int] = set()
    for conv in list(graph.node):
        params = g.conv_params(conv) if conv.op_type == "Conv" else None
        if params is None or len(conv.output) != 1:
            continue
        w, b = params
        chain = []
        node = g.only_reader(conv.output[0])
        for op in ("Mul", "Add"):
            hit = g.scalar_operand(node, op, w.ndim)
            if hit is None or hit[0] != (chain[-1].output[0] if chain else conv.output[0]):
                continue
            chain.append(node)
            s = hit[1]
            if op == "Mul":
                w, b = w * s, b * s
            else:
                b = b + s
            node = g.only_reader(node.output[0])
        if not chain:
            continue
        g.set_conv_params(conv, w, b)
        conv.output[0] = chain[-1].output[0]
        drop |= {id(n) for n in chain}
        removed += len(chain)
    _remove(graph, drop)
    # 2: a scale after a hard-swish of a convolution's output, into the convolution
    g = _Graph(graph)
    drop = set()
    for hs in list(graph.node):
        if hs.op_type != "HardSigmoid":
            continue
        x = hs.input[0]
        conv = g.producer.get(x)
        params = g.conv_params(conv) if conv is not None else None
        mul = g.only_reader(hs.output[0])
        if (params is None or mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, hs.output[0]])
                or x in g.outputs or {id(n) for n in g.readers[x]} != {id(hs), id(mul)}):
            continue
        after = g.only_reader(mul.output[0])
        scale = g.scalar_operand(after, "Mul", params[0].ndim)
        alpha = float(_attr(hs, "alpha", 0.2))       # ONNX's default
        if scale is None or scale[1] == 0.0 or not np.isfinite(np.float32(alpha / scale[1])):
            continue
        s = scale[1]
        w, b = params
        g.set_conv_params(conv, w * s, b * s)
        for a in hs.attribute:
            if a.name == "alpha":
                a.f = alpha / s
                break
        else:
            from onnx import helper
            hs.attribute.append(helper.make_attribute("alpha", alpha / s))
        mul.output[0] = after.output[0]
        drop.add(id(after))
        removed += 1
    _remove(graph, drop)
    # 3: affine steps before a convolution without padding, into it
    g = _Graph(graph)
    drop = set()
    for conv in list(graph.node):
        params = g.conv_params(conv) if conv.op_type == "Conv" and _unpadded(conv) else None
        if params is None:
            continue
        w, b = params
        value, chain = conv.input[0], []
        for op in ("Add", "Mul"):           # walking back from the convolution
            node = g.producer.get(value)
            hit = g.scalar_operand(node, op, w.ndim)
            if hit is None or g.only_reader(value) is not (chain[-1] if chain else conv):
                continue
            if op == "Add":
                b = b + hit[1] * w.sum(axis=tuple(range(1, w.ndim)))
            else:
                w = w * hit[1]
            chain.append(node)
            value = hit[0]
        if not chain:
            continue
        g.set_conv_params(conv, w, b)
        conv.input[0] = value
        drop |= {id(n) for n in chain}
        removed += len(chain)
    _remove(graph, drop)
    _drop_unused(graph)
    return removed


def _remove(graph, drop: set[int]) -> None:
    if not drop:
        return
    keep = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder (default: ZEROSCAN_CACHE_DIR/models)")
    args = ap.parse_args(argv)
    for path in ocr_models(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
