"""Embedding throughput per backend, as images/s and as a fraction of this machine's fp32 matmul peak.

    python -m benchmarks.embed_throughput                      # every model, batches 1/8/32
    python -m benchmarks.embed_throughput --models vit_small@32,resnet18@224 --no-compile --fit-steps 200

For each model: torch eager (``inference_mode``), ``torch.compile`` (if it works here), onnxruntime
fp32 and int8 (static QDQ U8S8, the export package's quantiser), and bf16 where onnxruntime's CPU
provider has bfloat16 kernels (probed, not assumed). Model FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add). The fp32 matmul peak is measured in
the same run, twice: best of several 2048³ matmuls (torch, numpy, onnxruntime) before and after, for the
record, and a 1024³ matmul timed round-robin with the backends as a per-row stability check. Each cell
shows the median images/s and ``images/s × FLOPs/image ÷ peak``. A matmul is not a bound for every
kernel: convolutions on small feature maps can run above it.
By default times are CPU time of one thread (``--clock cpu --threads 1``): on a machine shared with
other jobs, wall time charges a call for the time slices others used (short calls escape that, long
ones do not, which once put small models above 100 % of "peak"); CPU time does not. On a dedicated
machine use ``--clock wall --threads 0``.
int8 k-NN agreement (int8 vs fp32 ONNX, digits) is printed per model;
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
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
PROBE_N = 1024  # the per-round peak probe: 2.1 GFLOP, long enough for MKL's full speed, short enough to repeat
COLUMNS = ("torch eager", "torch.compile", "ORT fp32", "ORT int8")


def bf16_peak(best: Callable[[Callable[[], object]], float], clock: Callable[[], float], n: int = PEAK_N) -> float:
    """torch's bf16 n³ GFLOP/s, or its 256³ figure where a 256³ probe shows no native bf16 matmul.

    Without AVX-512 BF16 or AMX (an AVX2-only CPU), torch falls back to a scalar kernel near 0.5 GFLOP/s,
    and a 2048³ product would take minutes.
    """
    small = torch.randn(256, 256).bfloat16()
    start = clock()
    torch.mm(small, small)
    probe = 2 * 256**3 / max(clock() - start, 1e-9) / 1e9
    if probe < 10.0:
        return probe
    a16, b16 = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
    return best(lambda: torch.mm(a16, b16))


def measure_peak(threads: int, seconds: float, clock: Callable[[], float], n: int = PEAK_N) -> dict[str, float]:
    """Best GFLOP/s of an n³ fp32 matmul in torch, numpy and onnxruntime (and torch bf16, for scale)."""
    flops = 2 * n**3
    a, b = torch.randn(n, n), torch.randn(n, n)

    def best(fn: Callable[[], object]) -> float:
        fn()
        times = []
        start = time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < seconds:
            t = clock()
            fn()
            times.append(clock() - t)
        return flops / min(times) / 1e9

    out = {"torch fp32": best(lambda: torch.mm(a, b))}
    a_np, b_np = a.numpy(), b.numpy()
    out["numpy fp32"] = best(lambda: a_np @ b_np)
    out["torch bf16"] = bf16_peak(best, clock, n)
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "aby"]
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


def interleaved(fns: dict[str, Callable[[], object]], probe: Callable[[], object], seconds: float,
                clock: Callable[[], float], min_rounds: int = 5) -> tuple[dict[str, list[float]], list[float]]:
    """Call every function once per round, with a matmul probe in the same round; return all times.

    Round-robin order exposes every backend to the same machine state (load, clock speed, cache), so
    their ratios stay fair when absolute numbers drift; the probe shows how much they drifted.
    """
    for fn in (*fns.values(), probe):
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    probes: list[float] = []
    start = time.perf_counter()
    while len(probes) < min_rounds or time.perf_counter() - start < seconds * len(fns):
        t = clock()
        probe()
        probes.append(clock() - t)
        for name, fn in fns.items():
            t = clock()
            fn()
            times[name].append(clock() - t)
    return times, probes


def bench_model(name: str, spec: dict, args: argparse.Namespace, peak: float, tmp: Path) -> None:
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
    settings = SessionSettings(intra_op_threads=args.threads, spin=args.clock == "wall")
    sessions = {"ORT fp32": OnnxImageEncoder(fp32_path, encoder.config, settings),
                "ORT int8": OnnxImageEncoder(int8_path, encoder.config, settings, "int8")}
    parity = int8_parity(sessions["ORT fp32"], sessions["ORT int8"], encoder.config.preprocess)
    compiled = None
    if args.compile:
        try:
            compiled = torch.compile(encoder, dynamic=False)
        except Exception as exc:  # report, do not hide: the column then says why
            print(f"# torch.compile unavailable for {name}: {exc}")
    a, b = torch.randn(PROBE_N, PROBE_N), torch.randn(PROBE_N, PROBE_N)
    for batch in args.batches:
        pixels = torch.randn(batch, *size)
        array = pixels.numpy()
        fns: dict[str, Callable[[], object]] = {"torch eager": lambda x=pixels: encoder(x)}
        if compiled is not None:
            fns["torch.compile"] = lambda x=pixels: compiled(x)
        for label, session in sessions.items():
            fns[label] = lambda s=session, x=array, n=batch: s.embed_array(x, n)
        with torch.inference_mode():
            times, probes = interleaved(fns, lambda: torch.mm(a, b), args.seconds, CLOCKS[args.clock])
        cells = []
        for label in COLUMNS:
            if label not in times:
                cells.append(f"{'n/a':>15}")
                continue
            speed = batch / statistics.median(times[label])
            cells.append(f"{speed:8.1f} {100 * speed * flops / (peak * 1e9):5.1f}%")
        ratio = statistics.median(times["ORT fp32"]) / statistics.median(times["ORT int8"])
        probe_gflops = 2 * PROBE_N**3 / statistics.median(probes) / 1e9
        print(f"| {name:16} | {flops / 1e9:8.3f} | {batch:5} | " + " | ".join(cells) +
              f" | {ratio:8.2f}× | {probe_gflops:6.1f} |", flush=True)
    print(f"# {name}: int8 vs fp32 ONNX on digits (gallery 300, queries 100): k-NN top-1 agreement "
          f"{parity['knn']:.3f} (int8 queries on an fp32 index {parity['mixed']:.3f}), mean cos "
          f"{parity['mean_cos']:.4f}, min cos {parity['min_cos']:.4f}; fp32 k-NN accuracy {parity['acc_fp32']:.3f}"
          f"{' after ' + str(args.fit_steps) + ' fit steps' if args.fit_steps else ' (untrained weights)'}",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads (0: all cores)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: process CPU time, fair on a shared machine (with --threads 1 it is one "
                             "dedicated core's throughput); wall: elapsed time, for a dedicated machine")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per cell")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--fit-steps", type=int, default=0)
    parser.add_argument("--peak-n", type=int, default=PEAK_N, help="side of the square matmul that measures the peak")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = measure_peak(args.threads, args.seconds, CLOCKS[args.clock], args.peak_n)
    peak = max(v for k, v in peaks.items() if "fp32" in k)  # the best library: the machine's peak
    ok, note = bf16_supported()
    print(f"# fp32 matmul peak {peak:.1f} GFLOP/s (best {args.peak_n}³ matmul: torch {peaks['torch fp32']:.1f}, numpy "
          f"{peaks['numpy fp32']:.1f}, onnxruntime {peaks['onnxruntime fp32']:.1f}; torch bf16 "
          f"{peaks['torch bf16']:.1f}), {torch.get_num_threads()} "
          f"threads, {args.clock} clock, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"# ORT bf16: {'available' if ok else 'not available'} ({note})")
    print("# cells: median images/s, and images/s × FLOPs/image ÷ peak; last column: median GFLOP/s of a 1024³")
    print("# torch matmul timed round-robin with the backends (a row whose probe strays was disturbed)")
    print(f"| {'model':16} | GFLOP/im | batch | {'torch eager':>15} | {'torch.compile':>15} | {'ORT fp32':>15} | "
          f"{'ORT int8':>15} | int8/fp32 | probe  |")
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 7}|" + f"{'-' * 17}|" * 4 + f"{'-' * 11}|{'-' * 8}|")
    with tempfile.TemporaryDirectory(prefix="sslzoo-bench-") as folder:
        for name in args.models.split(","):
            bench_model(name, MODELS[name], args, peak, Path(folder))
    after = measure_peak(args.threads, args.seconds, CLOCKS[args.clock], args.peak_n)
    print(f"# fp32 matmul peak re-measured after the run: torch {after['torch fp32']:.1f}, numpy "
          f"{after['numpy fp32']:.1f}, onnxruntime {after['onnxruntime fp32']:.1f} GFLOP/s, load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
