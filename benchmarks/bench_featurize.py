"""Frame-to-feature throughput of ``rankfusion data featurize`` on CPU: frames per second.

Usage::

    python benchmarks/bench_featurize.py [--frames 64] [--batch 32] [--repeats 3] [--threads N]
                                         [--device cpu] [--json out.json]

Writes ``--frames`` RGB JPEG frames (480 x 640) and as many 16-bit depth PNG frames (NTU's
424 x 512) into a temporary folder, then times, per repeat and per kind:

* ``featurize``: the whole step (read and decode, resize, normalise, the backbone, the atomic
  write of the video's ``.npy``), as :func:`rankfusion.data.featurize.featurize` runs it;
* ``forward``: the backbone alone on the same number of preprocessed frames, same batch size;

each as wall-clock frames per second and as CPU seconds of the process per frame (all threads),
which moves less with the load of other processes than the wall clock does.

The backbone is the ResNet-50 architecture with random weights (timing does not depend on the
weights). torchvision's ``resnet50`` is used when it can be imported; otherwise the same
architecture is built here (bottleneck blocks 3, 4, 6, 3; checked against torchvision's
parameter count, 25,557,032 with the 1000-way head), for timing only.

``--importers`` times instead the other first steps per 1,000 frames: ``import-ntu-skeleton``
on ``.skeleton`` files written here (one body per frame, 100 frames per clip) and ``import-r3d`` on
a folder of (frames, 2048) float32 features with both modalities (100 frames per video); each
includes the check of the written dataset.

Medians over repeats are printed with ``uptime``'s load; the machine is shared, so read the
figure with the load stated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rankfusion.data.featurize import featurize, to_input
from rankfusion.data.frames import read_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import positive_int, run  # noqa: E402

#: torchvision's ResNet-50 parameter count (with its 1000-way fc).
RESNET50_PARAMS = 25_557_032


class _Bottleneck(torch.nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def resnet50_architecture(with_head=False) -> torch.nn.Module:
    """ResNet-50 (v1.5: stride in the 3x3 convolution), random weights, 2048-d pooled output."""
    try:
        import torchvision.models as tvm

        model = tvm.resnet50(weights=None)
        source = "torchvision"
    except Exception:  # absent, or built for another torch
        nn = torch.nn
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for b in range(blocks):
                layers.append(_Bottleneck(cin, width, stride if b == 0 else 1))
                cin = 4 * width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        model = nn.Sequential(*layers)
        model.fc = nn.Linear(2048, 1000)  # counted below, then dropped
        source = "built here"
    n = sum(p.numel() for p in model.parameters())
    assert n == RESNET50_PARAMS, f"not ResNet-50: {n} parameters"
    model.fc = torch.nn.Identity()
    return model.eval(), source


def _write_frames(root: Path, n: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "rgb" / "v0").mkdir(parents=True, exist_ok=True)
        (root / "depth" / "v0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(
            root / "rgb" / "v0" / f"img_{i:05d}.jpg", quality=90)
        Image.fromarray(rng.integers(500, 4500, (424, 512)).astype(np.uint16)).save(
            root / "depth" / "v0" / f"MDepth-{i:08d}.png")


@torch.inference_mode()
def _forward_time(model, files, batch, device):
    x = torch.stack([to_input(read_frame(f)) for f in files]).to(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    return time.perf_counter() - t0, time.process_time() - c0


def _ntu_text(rng, n):
    lines = [str(n)]
    for _ in range(n):
        lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1 -0.2 2", "25"]
        lines += [" ".join(f"{v:.7g}" for v in (*rng.normal(size=3), 270.1, 210.5, 1000.2, 530.7, 0.2, 0.0, 0.9, 0.0)) + " 2"
                  for _ in range(25)]
    return "\n".join(lines) + "\n"


def time_importers(frames: int, repeats: int) -> dict:
    """Seconds per 1,000 frames of import-ntu-skeleton and import-r3d (medians over repeats)."""
    from rankfusion.data import import_ntu_skeleton, import_r3d

    rng = np.random.default_rng(0)
    clips, per = max(frames // 100, 4), 100
    out = {"ntu_skeleton": [], "r3d": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ntu").mkdir()
        for k in range(clips):
            (root / "ntu" / f"S001C001P{k % 4 + 1:03d}R001A{k % 5 + 1:03d}.skeleton").write_text(_ntu_text(rng, per))
        src = root / "r3d"
        for d in ("groundTruth", "features", "features_depth", "splits"):
            (src / d).mkdir(parents=True)
        (src / "mapping.txt").write_text("1 a\n2 b\n")
        for k in range(clips):
            (src / "groundTruth" / f"v{k}.txt").write_text("a\n" * (per // 2) + "b\n" * (per - per // 2))
            for d in ("features", "features_depth"):
                np.save(src / d / f"v{k}.npy", rng.standard_normal((per, 2048)).astype(np.float32))
        names = [f"v{k}.txt" for k in range(clips)]
        for split, part in (("train", names[:-2]), ("val", names[-2:-1]), ("test", names[-1:])):
            (src / "splits" / f"{split}_split.txt").write_text("\n".join(part) + "\n")
        for rep in range(repeats):
            t0 = time.perf_counter()
            import_ntu_skeleton(root / "ntu", root / f"o_ntu{rep}")
            out["ntu_skeleton"].append((time.perf_counter() - t0) * 1000 / (clips * per))
            t0 = time.perf_counter()
            import_r3d(src, root / f"o_r3d{rep}")
            out["r3d"].append((time.perf_counter() - t0) * 1000 / (clips * per))
    return {k: statistics.median(v) for k, v in out.items()} | {"frames": clips * per, "load": os.getloadavg()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=positive_int, default=64)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--threads", type=positive_int, default=None, help="torch threads (default torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--importers", action="store_true", help="Time import-ntu-skeleton and import-r3d instead.")
    args = ap.parse_args(argv)
    if args.importers:
        res = time_importers(args.frames, args.repeats)
        print(f"import-ntu-skeleton {res['ntu_skeleton']:.2f} s, import-r3d (rgb+depth, 2048-d) {res['r3d']:.2f} s "
              f"per 1,000 frames ({res['frames']} frames; load {tuple(round(x, 1) for x in res['load'])})")
        return res
    if args.threads:
        torch.set_num_threads(args.threads)
    model, source = resnet50_architecture()
    model = model.to(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_frames(root / "frames", args.frames)
        for rep in range(args.repeats):
            for kind in ("rgb", "depth"):
                t0, c0 = time.perf_counter(), time.process_time()
                featurize(root / "frames" / kind, root / f"out{rep}", kind, backbone=model, batch_size=args.batch,
                          device=args.device)
                t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
                files = sorted((root / "frames" / kind / "v0").iterdir())
                t_fwd, c_fwd = _forward_time(model, files, args.batch, args.device)
                rows.append({"repeat": rep, "kind": kind, "featurize_fps": args.frames / t_all,
                             "forward_fps": args.frames / t_fwd, "featurize_cpu_s_per_frame": c_all / args.frames,
                             "forward_cpu_s_per_frame": c_fwd / args.frames, "load": os.getloadavg()})
    keys = ("featurize_fps", "forward_fps", "featurize_cpu_s_per_frame", "forward_cpu_s_per_frame")
    summary = {kind: {k: statistics.median(r[k] for r in rows if r["kind"] == kind) for k in keys}
               for kind in ("rgb", "depth")}
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": args.device, "backbone": f"ResNet-50 architecture ({source}), random weights",
            "frames": args.frames, "batch": args.batch, "repeats": args.repeats, "summary": summary, "rows": rows}
    for kind, s in summary.items():
        print(f"{kind:5s}  featurize {s['featurize_fps']:6.2f} frames/s   backbone alone {s['forward_fps']:6.2f} frames/s"
              f"   ({1000 / s['featurize_fps']:.0f} s per 1,000 frames; CPU {s['featurize_cpu_s_per_frame']:.2f} s"
              f" per frame, backbone {s['forward_cpu_s_per_frame']:.2f})")
    print(f"load (1/5/15 min) during the runs: {[tuple(round(x, 1) for x in r['load']) for r in rows]}")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return info


if __name__ == "__main__":
    sys.exit(run(main))
