"""The OCR graphs as the job runs them (models/ocr_graphs.py): every hard-swish of the wheel's
detection and recognition graphs written as HardSigmoid * x and nothing else changed, the
scalar affine steps folded into the convolutions beside them, the same outputs and the same
text read, patterns that cannot be rewritten left alone, and the files written once per source
graph."""
from __future__ import annotations

import collections
import os
import stat

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from models.ocr_graphs import (WHEEL_GRAPHS, _constants, ensure, fold_affine, fuse_hard_swish, rewrite,
                               rewritten_path, wheel_graph)

pytestmark = pytest.mark.unit


def _session(model_bytes: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", WHEEL_GRAPHS)
def test_every_hard_swish_becomes_two_nodes_and_nothing_else_changes(name):
    src = wheel_graph(name).read_bytes()
    before, after = onnx.load_from_string(src), onnx.load_from_string(src)
    fuse_hard_swish(after.graph)
    ops_before = collections.Counter(n.op_type for n in before.graph.node)
    ops_after = collections.Counter(n.op_type for n in after.graph.node)
    k = ops_before["Clip"]            # every Clip of these graphs is a hard-swish's
    assert k >= 20 and ops_after["Clip"] == 0
    assert ops_after["HardSigmoid"] == ops_before["HardSigmoid"] + k
    assert ops_after["Div"] == ops_before["Div"] - k and ops_after["Add"] == ops_before["Add"] - k
    assert ops_after["Mul"] == ops_before["Mul"]              # one Mul out, one in
    for op in set(ops_before) - {"Clip", "Div", "Add", "HardSigmoid", "Constant"}:
        assert ops_after[op] == ops_before[op], op
    assert [(o.domain, o.version) for o in after.opset_import] == [(o.domain, o.version) for o in before.opset_import]
    assert {p.key: p.value for p in after.metadata_props} == {p.key: p.value for p in before.metadata_props}
    assert [i.name for i in after.graph.input] == [i.name for i in before.graph.input]
    assert [o.name for o in after.graph.output] == [o.name for o in before.graph.output]


def _scalar_steps(graph) -> list[tuple[object, list, object]]:
    """(node, its readers, its producer) of every Mul and Add with a one-element constant."""
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    readers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            readers[i].append(n)
    return [(n, readers[n.output[0]], next((producer[i] for i in n.input if i in producer and i not in consts), None))
            for n in graph.node
            if n.op_type in ("Mul", "Add") and any(i in consts and consts[i].size == 1 for i in n.input)]


def _kernel(node) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])


@pytest.mark.parametrize("name", WHEEL_GRAPHS)
def test_affine_steps_are_folded_where_a_convolution_can_take_them(name):
    """PP-LCNetV3's learnable affine blocks (a scalar Mul and Add after each convolution and
    after each hard-swish) go into the convolutions; what is left feeds what cannot take them:
    a padded kxk convolution, pooling, a sigmoid, the attention's MatMul."""
    src = wheel_graph(name).read_bytes()
    hs = onnx.load_from_string(src)
    fuse_hard_swish(hs.graph)
    after = onnx.load_from_string(rewrite(src))
    steps_before, steps_after = _scalar_steps(hs.graph), _scalar_steps(after.graph)
    assert len(steps_before) >= 100 and len(steps_after) <= 0.3 * len(steps_before)
    made = {o: n for n in after.graph.node for o in n.output}

    def hard_swish_of_conv(node) -> bool:       # node = Mul(x, HardSigmoid(x)), x a Conv's output
        gates = [made.get(i) for i in node.input]
        return node.op_type == "Mul" and any(
            g is not None and g.op_type == "HardSigmoid" and g.input[0] in node.input
            and made.get(g.input[0]) is not None and made[g.input[0]].op_type == "Conv" for g in gates)

    for node, readers, producer in steps_after:
        assert producer is None or producer.op_type != "Conv", node.name       # into the Conv before it
        assert not (node.op_type == "Mul" and producer is not None and hard_swish_of_conv(producer)), node.name
        assert not (len(readers) == 1 and readers[0].op_type == "Conv" and set(_kernel(readers[0])) == {1}), node.name
    ops_hs = collections.Counter(n.op_type for n in hs.graph.node)
    ops_after = collections.Counter(n.op_type for n in after.graph.node)
    for op in set(ops_hs) - {"Mul", "Add", "Constant"}:
        assert ops_after[op] == ops_hs[op], op           # only Mul and Add nodes go
    assert "affine steps folded" in after.doc_string
    assert [i.name for i in after.graph.input] == [i.name for i in hs.graph.input]
    assert [o.name for o in after.graph.output] == [o.name for o in hs.graph.output]


@pytest.mark.parametrize("name, shape", [(WHEEL_GRAPHS[0], (1, 3, 320, 448)), (WHEEL_GRAPHS[1], (6, 3, 48, 320))])
def test_rewritten_graph_computes_what_the_wheel_graph_does(name, shape):
    src = wheel_graph(name).read_bytes()
    a, b = _session(src), _session(rewrite(src))
    rng = np.random.default_rng(3)
    feed = {a.get_inputs()[0].name: rng.uniform(-1, 1, shape).astype(np.float32)}   # the models' normalised range
    out_a, out_b = a.run(None, feed)[0], b.run(None, feed)[0]
    assert out_a.shape == out_b.shape
    np.testing.assert_allclose(out_b, out_a, atol=1e-4, rtol=0)


def _photos() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    out = []
    for i, (text, scale) in enumerate([("ZEROSCAN 42", 1.4), ("Genuine Parts", 1.0), ("ACME", 2.0),
                                       ("made in 2026 - lot 7731", 0.8)]):
        img = np.full((220, 420, 3), 230 - 20 * i, np.uint8)
        cv2.rectangle(img, (30, 140), (390, 200), (40 + 30 * i, 90, 200), -1)
        cv2.putText(img, text, (20, 90), cv2.FONT_HERSHEY_SIMPLEX, scale, (10, 10, 10), 3)
        cv2.putText(img, "Brand", (60, 185), cv2.FONT_HERSHEY_DUPLEX, 1.0, (250, 250, 250), 2)
        out.append(cv2.add(img, rng.integers(0, 14, img.shape, dtype=np.uint8)))
    return out


def test_reader_reads_the_same_lines_through_either_graph():
    from models.ocr import TextReader

    photos = _photos()
    rewritten = TextReader(threads=1).read(photos)
    wheel = TextReader(threads=1, graphs="wheel").read(photos)
    assert sum(map(len, wheel)) >= 6
    for a, b in zip(rewritten, wheel):
        assert [line.text for line in a] == [line.text for line in b]
        for x, y in zip(a, b):
            assert abs(x.score - y.score) < 1e-4
            np.testing.assert_allclose(x.box, y.box, atol=0.5)
    with pytest.raises(ValueError, match="graphs"):
        TextReader(threads=1, graphs="quantised")


def _hard_swish_model(*, share_clip: bool = False, swapped: bool = False, six: float = 6.0) -> onnx.ModelProto:
    """y = hard-swish(conv(x)) written as paddle2onnx writes it; `swapped`: the operands of the
    Add and the Mul the other way round; `share_clip`: the Clip's value is also an output."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.linspace(-2, 2, 12).tolist())
    consts = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, TensorProto.FLOAT, [], [v]))
              for n, v in (("three", 3.0), ("zero", 0.0), ("six", 6.0), ("divisor", six))]
    nodes = consts + [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["three", "c"] if swapped else ["c", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["k"]),
        helper.make_node("Mul", ["k", "c"] if swapped else ["c", "k"], ["m"]),
        helper.make_node("Div", ["m", "divisor"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])]
    if share_clip:
        outputs.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outputs, [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


@pytest.mark.parametrize("kw, fused", [({}, 1), ({"swapped": True}, 1), ({"share_clip": True}, 0), ({"six": 5.0}, 0)])
def test_only_whole_patterns_are_rewritten_and_the_function_stays(kw, fused):
    model = _hard_swish_model(**kw)
    src = model.SerializeToString()
    rewritten = onnx.load_from_string(src)
    assert fuse_hard_swish(rewritten.graph) == fused
    onnx.checker.check_model(rewritten)
    ops = collections.Counter(n.op_type for n in rewritten.graph.node)
    assert ops["Clip"] == 1 - fused and ops["HardSigmoid"] == fused
    x = np.random.default_rng(5).uniform(-4, 4, (1, 3, 8, 8)).astype(np.float32)
    for want, got in zip(_session(src).run(None, {"x": x}), _session(rewritten.SerializeToString()).run(None, {"x": x})):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_rewrites_are_written_once_per_source_graph(tmp_path):
    src = tmp_path / "model.onnx"
    src.write_bytes(_hard_swish_model().SerializeToString())
    out = tmp_path / "models"
    first = ensure(src, out)
    assert first == rewritten_path(src, out) and first.parent == out
    assert stat.S_IMODE(first.stat().st_mode) == 0o644
    before = first.stat().st_mtime_ns
    os.utime(first, ns=(before - 10**9, before - 10**9))
    assert ensure(src, out) == first and first.stat().st_mtime_ns == before - 10**9   # not written again
    src.write_bytes(_hard_swish_model(swapped=True).SerializeToString())               # another source graph
    second = ensure(src, out)
    assert second != first and sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])
    ops = collections.Counter(n.op_type for n in onnx.load(str(second)).graph.node)
    assert ops["HardSigmoid"] == 1 and ops["Clip"] == 0


def test_float32_normalisation_gives_the_readings_of_rapidocrs_own():
    """The reader hands RapidOCR its detection mean and std as float32 arrays (models/ocr.py
    DET_MEAN): the same lines, boxes and scores as RapidOCR's own float64 normalisation."""
    from rapidocr_onnxruntime import RapidOCR

    from models.ocr import MIN_TEXT_SCORE, REC_BATCH, REC_IMAGE_SHAPE, TextReader

    reader = TextReader(threads=1)
    det, rec = reader.graphs
    own = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, rec_batch_num=REC_BATCH,
                   rec_img_shape=list(REC_IMAGE_SHAPE), det_model_path=str(det), rec_model_path=str(rec),
                   det_limit_type="max", det_limit_side_len=960, det_mean=[0.5, 0.5, 0.5], det_std=[0.5, 0.5, 0.5],
                   text_score=MIN_TEXT_SCORE, use_cls=False, print_verbose=False)
    photos = _photos()
    ours = reader.read(photos)
    for photo, lines in zip(photos, ours):
        result, _ = own(np.ascontiguousarray(photo[:, :, ::-1]))
        assert [(line.text, round(line.score, 6)) for line in lines] == [(t, round(float(s), 6)) for _, t, s in result or ()]
    assert sum(map(len, ours)) >= 6


def _affine_model(*, scale_shape: tuple = (1,), also_output: bool = False, second_kernel: int = 1,
                  second_padded: bool | None = None, s2: float = 0.8, default_alpha: bool = False,
                  conv_read_twice: bool = False, swish_input_read_twice: bool = False) -> onnx.ModelProto:
    """PP-LCNetV3's pattern twice: conv -> affine -> hard-swish -> affine -> conv, the second
    convolution `second_kernel` wide and padded to keep its size when `second_padded` (default:
    when wider than 1; a padded one must keep the Add before it), ending in a padded depthwise
    convolution. `scale_shape`: the first scale's constant shape ((4, 1, 1): one per channel,
    which the folds leave alone); `also_output`: the first scaled value is also a graph output;
    `default_alpha`: the first HardSigmoid without attributes (ONNX's 0.2 and 0.5);
    `conv_read_twice`: the first convolution's output is also read by a Relu (an output);
    `swish_input_read_twice`: so is the second hard-swish's input."""
    rng = np.random.default_rng(7)

    def tensor(name, shape, low=-1.0, high=1.0):
        return helper.make_tensor(name, TensorProto.FLOAT, list(shape), rng.uniform(low, high, shape).ravel().tolist())

    k2 = second_kernel
    pad2 = (k2 // 2 if second_padded is None else int(second_padded))
    inits = [tensor("w1", (4, 3, 3, 3)), tensor("c1", (4,)), tensor("w2", (6, 4, k2, k2)), tensor("c2", (6,)),
             tensor("w3", (6, 1, 3, 3)), tensor("c3", (6,))]
    values = {"s1": (scale_shape, 1.3), "b1": ((1,), 0.2), "s2": ((1,), s2), "b2": ((1,), -0.4),
              "s3": ((1,), 0.9), "b3": ((1,), 0.1), "s4": ((1,), -1.1), "b4": ((1,), 0.3)}
    consts = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, TensorProto.FLOAT, list(shape),
                                                                           [v] * int(np.prod(shape))))
              for n, (shape, v) in values.items()]

    def hard_swish(x, y, k):
        gate = (helper.make_node("HardSigmoid", [x], [f"g{k}"]) if default_alpha and k == 1 else
                helper.make_node("HardSigmoid", [x], [f"g{k}"], alpha=1.0 / 6, beta=0.5))
        return [gate, helper.make_node("Mul", [x, f"g{k}"], [y])]

    nodes = consts + [
        helper.make_node("Conv", ["x", "w1", "c1"], ["a1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["a1", "s1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["h1"]),
        *hard_swish("h1", "q1", 1),
        helper.make_node("Mul", ["q1", "s2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["h2"]),
        helper.make_node("Conv", ["h2", "w2", "c2"], ["a2"], kernel_shape=[k2, k2], pads=[pad2] * 4),
        helper.make_node("Mul", ["s3", "a2"], ["m3"]), helper.make_node("Add", ["b3", "m3"], ["h3"]),
        *hard_swish("h3", "q3", 3),
        helper.make_node("Mul", ["q3", "s4"], ["m4"]), helper.make_node("Add", ["m4", "b4"], ["h4"]),
        helper.make_node("Conv", ["h4", "w3", "c3"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=6),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, None, None])]
    if also_output:
        outputs.append(helper.make_tensor_value_info("m1", TensorProto.FLOAT, [1, 4, 10, 10]))
    for read, value in ((conv_read_twice, "a1"), (swish_input_read_twice, "h3")):
        if read:
            nodes.append(helper.make_node("Relu", [value], [f"relu_{value}"]))
            outputs.append(helper.make_tensor_value_info(f"relu_{value}", TensorProto.FLOAT, [1, None, None, None]))
    graph = helper.make_graph(nodes, "lab", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


@pytest.mark.parametrize("kw, left", [
    ({}, {"b4"}),                                   # only the Add before the padded depthwise convolution
    ({"second_kernel": 3}, {"b2", "b4"}),           # a padded convolution keeps the Add before it
    ({"scale_shape": (4, 1, 1)}, {"s1", "b1", "b4"}),   # a per-channel scale is not a scalar step
    ({"also_output": True}, {"b1", "b4"}),          # the scaled value is an output: the Conv writes it
    ({"s2": 0.0}, {"b4"}),                          # a zero scale: into the 1x1 convolution after it
    ({"second_kernel": 3, "second_padded": False}, {"b4"}),   # an unpadded 3x3 convolution takes the Add
    ({"second_padded": True}, {"b2", "b4"}),        # a padded 1x1 convolution does not
    ({"default_alpha": True}, {"b4"}),              # HardSigmoid's default slope, scaled as well
    ({"conv_read_twice": True}, {"s1", "b1", "b4"}),      # the convolution's output is read elsewhere
    ({"swish_input_read_twice": True}, {"s4", "b4"}),     # so is the hard-swish's input: its scale stays
])
def test_affine_folds_keep_the_function(kw, left):
    model = _affine_model(**kw)
    src = model.SerializeToString()
    folded = onnx.load_from_string(src)
    removed = fold_affine(folded.graph)
    onnx.checker.check_model(folded)
    kept = {i for n in folded.graph.node if n.op_type in ("Mul", "Add") for i in n.input if i[0] in "sb" and len(i) == 2}
    assert kept == left and removed == 8 - len(left)
    x = np.random.default_rng(5).uniform(-2, 2, (1, 3, 10, 10)).astype(np.float32)
    for want, got in zip(_session(src).run(None, {"x": x}), _session(folded.SerializeToString()).run(None, {"x": x})):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert fold_affine(folded.graph) == 0            # nothing left to fold a second time


def test_a_size_one_constant_of_higher_rank_is_not_folded():
    """`Conv(x) * s` with s of shape (1, 1, 1, 1, 1) broadcasts the output to five dimensions;
    folding s into the convolution would drop one."""
    nodes = [helper.make_node("Constant", [], ["s"], value=helper.make_tensor("s", TensorProto.FLOAT, [1] * 5, [2.0])),
             helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.linspace(-1, 1, 6).tolist())
    graph = helper.make_graph(nodes, "rank", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)
    assert fold_affine(model.graph) == 0
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)
    assert _session(model.SerializeToString()).run(None, {"x": x})[0].shape == (1, 1, 2, 4, 4)


def test_folded_weights_get_names_nothing_else_has():
    """A second fold over a folded graph, and a graph whose own values are named like the
    folds' weights, still give a valid graph with the same function."""
    consts = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, TensorProto.FLOAT, [], [v]))
              for n, v in (("s0", 1.5), ("s1", -0.5), ("s2", 3.0))]
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.linspace(-1, 1, 6).tolist())
    nodes = consts + [helper.make_node("Mul", ["x", "s0"], ["zs_fold_0"]),
                      helper.make_node("Conv", ["zs_fold_0", "w"], ["c"]),
                      helper.make_node("Mul", ["c", "s1"], ["zs_fold_2"]), helper.make_node("Mul", ["zs_fold_2", "s2"], ["y"])]
    graph = helper.make_graph(nodes, "names", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)
    src = model.SerializeToString()
    folded = onnx.load_from_string(src)
    total = 0
    for _ in range(3):
        total += fold_affine(folded.graph)
        onnx.checker.check_model(folded)
    assert total == 3 and not [n for n in folded.graph.node if n.op_type == "Mul"]
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(_session(folded.SerializeToString()).run(None, {"x": x})[0],
                               _session(src).run(None, {"x": x})[0], atol=1e-5)
