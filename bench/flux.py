"""Seconds per denoising step: the gateway's flux worker vs mflux in-process.

    python bench/flux.py [--size 128x128] [--steps 9] [--repeats 3] [--json out.json]

Same model (the offline demo FLUX.2-klein, ``models/demo-flux2-klein-tiny``),
same size, prompt and seed on both sides, one BLAS thread each, mx.compile off
on both sides (as the worker runs on a CPU: ``compile`` option, None = Metal
only). Per-step time is taken from whole requests so that it can be measured
the same way on both sides without instrumenting either:

    s/step = (time of an image with --steps steps - time with 1 step) / (steps - 1)

which cancels what both runs share: prompt encoding, latents, the VAE decode
and, for the gateway, HTTP, base64 and the hop to the worker. In-process is
``Flux2Klein.generate_image``; the gateway is ``POST /v1/images/generations``
on a real stack (honcho, gateway, supervised worker). The two alternate
``--repeats`` times after one warm-up each; medians are reported. The ratio is
in-process s/step over gateway s/step (1.0 = no loss; the target is >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# First: OpenBLAS with one thread, loaded before anything imports mlx.core,
# exactly as the supervisor launches workers.
from common import ROOT, exit_on_sigterm, running_stack

MODEL = "demo-flux2-klein-tiny"
PROMPT = "a lighthouse on a cliff at dusk"
SEED = 11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="128x128")
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    exit_on_sigterm()
    width, height = (int(v) for v in args.size.split("x"))

    from demos.flux import ensure_demo_flux

    folder = ensure_demo_flux(ROOT / "models")
    in_process = _in_process(folder)
    times: dict[str, dict[int, list[float]]] = {
        side: {1: [], args.steps: []} for side in ("in-process", "gateway")
    }
    with tempfile.TemporaryDirectory() as tmp:
        entry = {"name": MODEL, "family": "flux", "path": str(folder), "demo": True}
        with running_stack([entry], Path(tmp)) as stack:
            url = f"{stack.base_url}/v1/images/generations"

            def gateway(steps: int) -> float:
                body = {
                    "model": MODEL,
                    "prompt": PROMPT,
                    "size": args.size,
                    "steps": steps,
                    "seed": SEED,
                }
                started = time.perf_counter()
                reply = httpx.post(url, json=body, timeout=600)
                reply.raise_for_status()
                return time.perf_counter() - started

            def local(steps: int) -> float:
                return in_process(steps, width, height)

            for run in (local, gateway):  # warm-up: first-call costs on both sides
                run(1)
            for _ in range(args.repeats):
                for steps in (1, args.steps):
                    times["in-process"][steps].append(local(steps))
                    times["gateway"][steps].append(gateway(steps))
    _report(times, args)


def _in_process(folder: Path) -> Any:
    import mlx.core as mx

    from workers.engines.flux import FluxOptions
    from workers.engines.flux_config import mflux_model_config

    mx.disable_compile()  # as the worker does on a CPU
    from mflux.models.flux2.variants.txt2img.flux2_klein import Flux2Klein

    base = FluxOptions().base_model
    model = Flux2Klein(model_path=str(folder), model_config=mflux_model_config(base, str(folder)))

    def run(steps: int, width: int, height: int) -> float:
        started = time.perf_counter()
        model.generate_image(
            seed=SEED, prompt=PROMPT, num_inference_steps=steps, width=width, height=height
        )
        return time.perf_counter() - started

    return run


def _report(times: dict[str, dict[int, list[float]]], args: argparse.Namespace) -> None:
    steps = args.steps
    rows: dict[str, dict[str, float]] = {}
    for side, by_steps in times.items():
        one, many = statistics.median(by_steps[1]), statistics.median(by_steps[steps])
        rows[side] = {
            "image_1_step_s": one,
            f"image_{steps}_steps_s": many,
            "s_per_step": (many - one) / (steps - 1),
            # The fastest runs: least disturbed by other load on a shared machine.
            "s_per_step_min": (min(by_steps[steps]) - min(by_steps[1])) / (steps - 1),
        }
    ratio = rows["in-process"]["s_per_step"] / rows["gateway"]["s_per_step"]
    ratio_min = rows["in-process"]["s_per_step_min"] / rows["gateway"]["s_per_step_min"]
    image_ratio = (
        rows["in-process"][f"image_{steps}_steps_s"] / rows["gateway"][f"image_{steps}_steps_s"]
    )
    print(f"\n{MODEL}, {args.size}, {steps} vs 1 steps, {args.repeats} repeats (medians)\n")
    print(f"| side | 1-step image s | {steps}-step image s | s/denoising step |")
    print("|---|---|---|---|")
    for side, row in rows.items():
        print(
            f"| {side} | {row['image_1_step_s']:.3f} | {row[f'image_{steps}_steps_s']:.3f} "
            f"| {row['s_per_step']:.4f} |"
        )
    print(f"\nper-step ratio (in-process / gateway): {ratio:.3f} (target >= 0.95)")
    print(f"per-step ratio from the fastest runs: {ratio_min:.3f}")
    print(f"whole {steps}-step image ratio: {image_ratio:.3f}")
    if args.json is not None:
        result = {
            "rows": rows,
            "ratio": ratio,
            "ratio_fastest": ratio_min,
            "image_ratio": image_ratio,
            "raw": times,
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
