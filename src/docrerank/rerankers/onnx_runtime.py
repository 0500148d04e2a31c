"""A cross-encoder scored by ONNX Runtime on CPU: fp32, or int8 weights by dynamic quantization.

The saved PyTorch model is exported once (``torch.onnx``'s TorchScript exporter, eager attention, batch and
sequence axes left dynamic; then ONNX Runtime's transformer optimizer fuses attention, layer norm and GELU) into
``onnx/model.onnx`` beside it (or a cache folder when it is read-only), and quantized to
``onnx/model_int8.onnx`` (``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantized
on the fly). The reranker keeps its chunks, its tokenizer and its best-chunk rule: only the forward pass moves.

Why not sentence-transformers' own ONNX backend: it needs ``optimum-onnx``, which requires transformers < 4.58,
and this project runs transformers 5; ONNX Runtime itself needs neither.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from docrerank.errors import DocrerankError, import_optional

__all__ = ["RUNTIMES", "OnnxCrossEncoder", "Runtime", "onnx_files"]

Runtime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# model types ONNX Runtime's transformer optimizer fuses (its own names)
FUSED = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert", "electra": "bert",
         "mpnet": "bert"}  # fmt: skip


def _folder(model_path: str) -> Path:
    """Where a model's ONNX files go: beside it when that folder can be written, else a cache folder."""
    path = Path(model_path)
    if path.is_dir() and os.access(path, os.W_OK):
        return path / "onnx"
    cache = Path(os.environ.get("DOCRERANK_CACHE", Path.home() / ".cache" / "docrerank")) / "onnx"
    return cache / hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def onnx_files(cross_encoder, model_path: str, runtime: Runtime) -> Path:
    """The ONNX file of ``runtime`` for a sentence-transformers CrossEncoder, exported (and quantized) on first
    use; a model saved again later (newer weights) is exported again."""
    import_optional("onnx", "onnx")
    folder = _folder(model_path)
    fp32, int8 = folder / "model.onnx", folder / "model_int8.onnx"
    weights = [p for p in Path(model_path).glob("*.safetensors")] if Path(model_path).is_dir() else []
    stale = fp32.is_file() and any(w.stat().st_mtime > fp32.stat().st_mtime for w in weights)
    if not fp32.is_file() or stale:
        folder.mkdir(parents=True, exist_ok=True)
        _export(cross_encoder, fp32)
        int8.unlink(missing_ok=True)
    if runtime == "onnx-int8" and not int8.is_file():
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        partial = int8.with_suffix(".partial.onnx")
        # the fused attention ops have no shape inference: their outputs are float
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
        partial.replace(int8)
    return int8 if runtime == "onnx-int8" else fp32


def _export(cross_encoder, path: Path) -> None:
    import torch

    model = cross_encoder.model.eval()
    sample = cross_encoder.preprocess([("a query", "a passage of the page")])
    names = [name for name in INPUTS if name in sample]

    class Logits(torch.nn.Module):  # positional inputs in, the logits out: what ONNX Runtime is fed
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs, strict=True))).logits

    partial = path.with_suffix(".partial.onnx")
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    attention = model.config._attn_implementation
    model.set_attn_implementation("eager")  # plain attention ops, which ONNX Runtime's optimizer fuses
    try:
        with torch.no_grad():
            torch.onnx.export(
                Logits(), tuple(sample[name] for name in names), str(partial), input_names=names,
                output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
    finally:
        model.set_attn_implementation(attention)
    kind = model.config.model_type
    if kind in FUSED:  # attention, layer norm and GELU fused into single kernels (measured: 0.64x -> 0.88x)
        from onnxruntime.transformers import optimizer

        config = model.config
        fused = optimizer.optimize_model(str(partial), model_type=FUSED[kind], num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size)  # fmt: skip
        fused.save_model_to_file(str(partial))
    partial.replace(path)


class OnnxCrossEncoder:
    """``CrossEncoder.predict`` over an ONNX Runtime session: the same preprocessing and activation."""

    def __init__(self, cross_encoder, path: Path, threads: int | None = None):
        import torch

        ort = import_optional("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # as many as PyTorch uses
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a broken or foreign file: say which, and how to make it again
            raise DocrerankError(f"{path} is not a usable ONNX model ({exc}): delete it to export it again") from None
        self.preprocess = cross_encoder.preprocess  # tokenizer, truncation and padding as PyTorch's predict
        self.activation = cross_encoder.activation_fn
        self.names = [i.name for i in self.session.get_inputs()]

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, **_) -> np.ndarray:
        import torch

        scores: list[np.ndarray] = []
        for start in range(0, len(pairs), batch_size):
            features = self.preprocess(list(pairs[start : start + batch_size]))  # the PyTorch model's own
            feed = {name: features[name].numpy().astype(np.int64) for name in self.names}
            logits = self.session.run(["logits"], feed)[0]
            scores.append(self.activation(torch.from_numpy(logits)).numpy()[:, 0])
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
