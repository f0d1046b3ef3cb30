"""Dump or compare every intermediate tensor of an encoder graph, to find where two CPUs first disagree.

``dump`` runs the graph (every node's outputs exposed as graph outputs) on the parity prompts' first tokens and
writes them to an ``.npz``; run it once per architecture (natively, and in the arm64 image under qemu).
``compare`` lists, in graph order, the nodes whose outputs differ although every input is bit-identical: the
kernels that compute differently on the two CPUs.

    python scripts/int8_trace.py dump ENCODER_DIR OUT.npz [--variant int8] [--level all|basic|none]
    python scripts/int8_trace.py compare A.npz B.npz [--graph ENCODER_DIR/encoder.int8.onnx]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ladder.core.encoder import EncoderInfo, Tokenizer

TEXTS = ("東京から大阪まで新幹線で何時間かかりますか？", "How much protein should an adult eat per day?")
LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def exposed(path: Path) -> tuple[onnx.ModelProto, list[str]]:
    """The graph with every node output (except shape bookkeeping) added to its outputs."""
    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    names = [name for node in model.graph.node for name in node.output if name and name not in known]
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    return model, [o.name for o in model.graph.output]


def session(model: onnx.ModelProto, level: str, config: list[str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = 1
    for entry in config:
        key, _, value = entry.partition("=")
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def dump(args: argparse.Namespace) -> None:
    info = EncoderInfo.load(args.encoder)
    model, names = exposed(args.model or args.encoder / getattr(info.files, args.variant))
    sess = session(model, args.level, args.config)
    encoded = Tokenizer(args.encoder, info=info).encode(list(TEXTS[: args.texts]))
    tensors: dict[str, Any] = {}
    for row in range(len(encoded)):
        one = encoded.take([row])
        feeds = {"input_ids": one.input_ids, "attention_mask": one.attention_mask}
        values = sess.run(names, feeds)
        tensors.update({f"{row}|{name}": value for name, value in feeds.items()})
        for name, value in zip(names, values, strict=True):
            tensors[f"{row}|{name}"] = np.asarray(value)
    np.savez_compressed(args.out, **tensors)
    print(json.dumps({"tensors": len(tensors), "rows": len(encoded), "onnxruntime": ort.__version__}))


def replay(args: argparse.Namespace) -> None:
    """Every node alone, fed the tensors one dump recorded: what each kernel computes from the same inputs."""
    recorded = np.load(args.recorded)
    model = onnx.load(str(args.graph))
    inits = {i.name: i for i in model.graph.initializer}
    feeds_all = {key.split("|", 1)[1]: recorded[key] for key in recorded.files if key.startswith("0|")}
    out: dict[str, Any] = {}
    for node in model.graph.node:
        if node.op_type not in args.ops.split(","):
            continue
        inputs = [name for name in node.input if name and name not in inits]
        graph = onnx.helper.make_graph(
            [node], "one", [onnx.ValueInfoProto(name=name) for name in inputs],
            [onnx.ValueInfoProto(name=name) for name in node.output if name],
            [inits[name] for name in node.input if name in inits],
        )  # fmt: skip
        for name, value in zip(inputs, (feeds_all[n] for n in inputs), strict=True):
            dtype = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            graph.input[inputs.index(name)].CopyFrom(onnx.helper.make_tensor_value_info(name, dtype, value.shape))
        one = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        sess = session(one, args.level, args.config)
        values = sess.run(None, {name: feeds_all[name] for name in inputs})
        for name, value in zip([o.name for o in sess.get_outputs()], values, strict=True):
            out[f"0|{name}"] = np.asarray(value)
    np.savez_compressed(args.out, **out)
    print(json.dumps({"tensors": len(out)}))


def compare(args: argparse.Namespace) -> None:
    a, b = np.load(args.a), np.load(args.b)
    model = onnx.load(str(args.graph), load_external_data=False)
    rows = sorted({key.split("|", 1)[0] for key in a.files})
    for row in rows:
        print(f"== row {row}")
        same: dict[str, bool] = {}
        shown = 0
        for node in model.graph.node:
            outs = [o for o in node.output if f"{row}|{o}" in a.files]
            for name in outs:
                x, y = a[f"{row}|{name}"], b[f"{row}|{name}"]
                same[name] = x.shape == y.shape and x.tobytes() == y.tobytes()
            inputs_same = args.replayed or all(same.get(name, True) for name in node.input if name)
            differing = [o for o in outs if not same[o]]
            if inputs_same and differing and shown < args.limit:
                shown += 1
                for name in differing:
                    x = a[f"{row}|{name}"].astype(np.float64)
                    y = b[f"{row}|{name}"].astype(np.float64)
                    diff = np.abs(x - y)
                    print(f"{node.op_type:24s} {node.name or name}: {int((diff > 0).sum())}/{diff.size} differ, "
                          f"max |diff| {diff.max():.3g} (max |value| {np.abs(x).max():.3g})")  # fmt: skip
        first = next((n for n in model.graph.node for o in n.output if o in same and not same[o]), None)
        print(f"first node with a differing output: {first.op_type + ' ' + first.name if first else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("encoder", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--variant", default="int8", choices=("int8", "fp32"))
    d.add_argument("--level", default="all", choices=sorted(LEVELS))
    d.add_argument("--texts", type=int, default=1)
    d.add_argument("--model", type=Path, help="this ONNX file instead of the encoder folder's")
    d.add_argument("--config", action="append", default=["session.x64quantprecision=1"])
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--graph", type=Path, required=True)
    c.add_argument("--limit", type=int, default=40)
    c.add_argument("--replayed", action="store_true", help="files from `replay`: every node had the same inputs")
    r = sub.add_parser("replay")
    r.add_argument("graph", type=Path)
    r.add_argument("recorded", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument(
        "--ops",
        default="QEmbedLayerNormalization,MatMulIntegerToFloat,MultiHeadAttention,"
        "SkipLayerNormalization,BiasGelu,QuantizeLinear,Mul,Div,ReduceL2,ReduceSum,ReduceMax",
    )
    r.add_argument("--level", default="all", choices=sorted(LEVELS))
    r.add_argument("--config", action="append", default=["session.x64quantprecision=1"])
    args = parser.parse_args()
    {"dump": dump, "replay": replay, "compare": compare}[args.command](args)


if __name__ == "__main__":
    main()
