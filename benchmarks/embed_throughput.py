"""Embedding throughput per backend, as images/s and as a fraction of this machine's fp32 matmul peak.

    python -m benchmarks.embed_throughput                      # every model, batches 1/8/32
    python -m benchmarks.embed_throughput --models vit_small@32,resnet18@224 --no-compile --fit-steps 200

For each model: torch eager (``inference_mode``), ``torch.compile`` (if it works here), onnxruntime
fp32 and int8 (static QDQ U8S8, the export package's quantiser), and bf16 where onnxruntime's CPU
provider has bfloat16 kernels (probed, not assumed). The peak is measured in the same run (best of
several 2048³ matmuls, torch and onnxruntime), model FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add), and each throughput is shown as
``images/s × FLOPs/image ÷ peak``. Times are medians of repeated calls, so a busy machine shifts
them less than means would. int8 k-NN agreement (int8 vs fp32 ONNX, digits) is printed per model;
``--fit-steps`` first fits the encoder briefly on digits, since an untrained encoder's embeddings are
so close together that k-NN answers are decided by rounding.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

import zoo
from export.golden import ParitySizes, image_sets
from export.onnx_export import export_image_tower
from export.parity import knn_figures, vector_figures
from export.quantize import bf16_supported, quantize_image_static
from export.runtime import OnnxImageEncoder, SessionSettings
from zoo.data import load_dataset
from zoo.preprocess import preprocess_uint8

MODELS: dict[str, dict] = {
    "vit_tiny@32": {"arch": "vit_tiny", "img_size": 32},
    "vit_small@32": {"arch": "vit_small", "img_size": 32},
    "vit_s16@224": {"arch": "vit_small_patch16_224", "img_size": 224},
    "resnet_narrow@32": {"arch": "resnet_narrow", "img_size": 32},
    "resnet18@32": {"arch": "resnet18_small", "img_size": 32},
    "resnet18@224": {"arch": "resnet18", "img_size": 224},
}
PEAK_N = 2048


def median_seconds(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> float:
    """Median wall time of ``fn`` after one warm-up call, over at least ``min_runs`` calls."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_peak(threads: int, seconds: float) -> dict[str, float]:
    """Best GFLOP/s of a 2048³ fp32 matmul in torch and in onnxruntime (and torch bf16, for scale)."""
    flops = 2 * PEAK_N**3
    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)

    def best(fn: Callable[[], object]) -> float:
        fn()
        times = []
        start = time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return flops / min(times) / 1e9

    out = {"torch fp32": best(lambda: torch.mm(a, b))}
    a16, b16 = a.bfloat16(), b.bfloat16()
    out["torch bf16"] = best(lambda: torch.mm(a16, b16))
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [PEAK_N, PEAK_N]) for n in "aby"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "peak", values[:2], values[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {"a": a.numpy(), "b": b.numpy()}
    out["onnxruntime fp32"] = best(lambda: session.run(None, feeds))
    return out


def count_flops(encoder: torch.nn.Module, input_size: tuple[int, int, int]) -> float:
    """FLOPs of one image through the encoder (matmuls, convolutions and attention)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder(torch.randn(1, *input_size))
    return float(counter.get_total_flops())


def fit_on_digits(encoder: zoo.ImageEncoder, steps: int) -> None:
    """A few supervised steps through a throwaway linear head, so embeddings are not degenerate."""
    data = load_dataset("digits", "train")
    x = torch.from_numpy(preprocess_uint8(data.images, encoder.config.preprocess))
    y = torch.from_numpy(data.labels)
    head = torch.nn.Linear(encoder.embed_dim, 10)
    optimiser = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    encoder.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(head(encoder.backbone(x[idx])), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()


def int8_parity(fp32: OnnxImageEncoder, int8: OnnxImageEncoder, preprocess: zoo.PreprocessConfig) -> dict:
    """k-NN top-1 agreement (own index and mixed) and cosine of int8 vs fp32 ONNX on digits."""
    sets = image_sets(preprocess, ParitySizes(golden=1, random=1, gallery=300, queries=100, calibration=2))
    ref = (fp32.embed_array(sets.gallery), fp32.embed_array(sets.queries))
    cand = (int8.embed_array(sets.gallery), int8.embed_array(sets.queries))
    own = knn_figures(ref, cand, sets.gallery_labels, sets.query_labels)
    mixed = knn_figures(ref, (ref[0], cand[1]), sets.gallery_labels, sets.query_labels)
    cos = vector_figures(np.concatenate(ref), np.concatenate(cand))
    return {"knn": own["knn_agreement"], "mixed": mixed["knn_agreement"], "acc_fp32": own["knn_accuracy_reference"],
            "mean_cos": cos["mean_cosine"], "min_cos": cos["min_cosine"]}


def bench_model(name: str, spec: dict, args: argparse.Namespace, peak: float, tmp: Path) -> list[str]:
    torch.manual_seed(0)
    encoder = zoo.build_encoder(spec["arch"], img_size=spec["img_size"]).eval()
    if args.fit_steps:
        fit_on_digits(encoder, args.fit_steps)
    size = encoder.config.preprocess.input_size
    flops = count_flops(encoder, size)
    fp32_path, int8_path = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
    export_image_tower(encoder, fp32_path)
    calibration = image_sets(encoder.config.preprocess, ParitySizes(1, 1, 1, 1, 128)).calibration
    quantize_image_static(fp32_path, int8_path, calibration)
    settings = SessionSettings(intra_op_threads=args.threads)
    sessions = {"ORT fp32": OnnxImageEncoder(fp32_path, encoder.config, settings),
                "ORT int8": OnnxImageEncoder(int8_path, encoder.config, settings, "int8")}
    parity = int8_parity(sessions["ORT fp32"], sessions["ORT int8"], encoder.config.preprocess)
    compiled = None
    if args.compile:
        try:
            compiled = torch.compile(encoder, dynamic=False)
        except Exception as exc:  # report, do not hide: the column then says why
            print(f"# torch.compile unavailable for {name}: {exc}")
    rows = []
    for batch in args.batches:
        pixels = torch.randn(batch, *size)
        array = pixels.numpy()
        speeds: dict[str, float | None] = {}
        with torch.inference_mode():
            speeds["torch eager"] = batch / median_seconds(lambda x=pixels: encoder(x), args.seconds)
            speeds["torch.compile"] = (batch / median_seconds(lambda x=pixels: compiled(x), args.seconds)
                                       if compiled is not None else None)
        for label, session in sessions.items():
            speeds[label] = batch / median_seconds(lambda s=session, x=array, b=batch: s.embed_array(x, b),
                                                   args.seconds)
        cells = []
        for label in ("torch eager", "torch.compile", "ORT fp32", "ORT int8"):
            value = speeds[label]
            cells.append(f"{value:8.1f} {100 * value * flops / (peak * 1e9):5.1f}%" if value else f"{'n/a':>15}")
        ratio = (speeds["ORT int8"] or 0) / (speeds["ORT fp32"] or 1)
        rows.append(f"| {name:16} | {flops / 1e9:7.3f} | {batch:5} | " + " | ".join(cells) + f" | {ratio:5.2f}× |")
        print(rows[-1], flush=True)
    note = (f"# {name}: int8 vs fp32 ONNX on digits (gallery 300, queries 100): k-NN top-1 agreement "
            f"{parity['knn']:.3f} (int8 queries on an fp32 index {parity['mixed']:.3f}), mean cos "
            f"{parity['mean_cos']:.4f}, min cos {parity['min_cos']:.4f}; fp32 k-NN accuracy {parity['acc_fp32']:.3f}"
            f"{' after ' + str(args.fit_steps) + ' fit steps' if args.fit_steps else ' (untrained weights)'}")
    print(note, flush=True)
    return [*rows, note]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: all cores)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per cell")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--fit-steps", type=int, default=0)
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = measure_peak(args.threads, args.seconds)
    peak = max(peaks["torch fp32"], peaks["onnxruntime fp32"])
    ok, note = bf16_supported()
    print(f"# fp32 matmul peak {peak:.1f} GFLOP/s (best 2048³ matmul: torch {peaks['torch fp32']:.1f}, onnxruntime "
          f"{peaks['onnxruntime fp32']:.1f}; torch bf16 {peaks['torch bf16']:.1f}), {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"# ORT bf16: {'available' if ok else 'not available'} ({note})")
    print("# cells: images/s and % of the fp32 peak (images/s × FLOPs/image ÷ peak)")
    print(f"| {'model':16} | GFLOP/im | batch | {'torch eager':>15} | {'torch.compile':>15} | {'ORT fp32':>15} | "
          f"{'ORT int8':>15} | int8/fp32 |")
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 7}|" + f"{'-' * 17}|" * 4 + f"{'-' * 11}|")
    with tempfile.TemporaryDirectory(prefix="sslzoo-bench-") as folder:
        for name in args.models.split(","):
            bench_model(name, MODELS[name], args, peak, Path(folder))
    after = measure_peak(args.threads, args.seconds)
    print(f"# fp32 matmul peak re-measured after the run: torch {after['torch fp32']:.1f}, onnxruntime "
          f"{after['onnxruntime fp32']:.1f} GFLOP/s, load average {os.getloadavg()[0]:.1f} (percentages use the "
          f"first, {peak:.1f}; if the two differ much, the machine was shared and the percentages are rough)")


if __name__ == "__main__":
    main()
