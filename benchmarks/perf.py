"""Kinema's performance harness: Kinema against a matched diffusers pipeline, on the same machine, in one run.

    .venv/bin/python benchmarks/perf.py                       # everything, writes benchmarks/perf/results.json
    .venv/bin/python benchmarks/perf.py --only latency,e2e    # a subset
    .venv/bin/python benchmarks/perf.py --no-peer             # Kinema only (no diffusers installed)

Sections (each reports Kinema and, where a peer exists, the peer and the ratio):

- ``peak``: the measured fp32 matmul peak of this machine (best of square ``torch.mm`` sizes).
- ``latency``: sampling + decoding of one clip, warm, at every supported size and duration
  (median of ``--repeats``); Kinema also with its few-step student (``fast``) and with
  ``torch.compile`` at the default size.
- ``train``: DiT training throughput (samples/s, achieved GFLOP/s and percent of the peak), the
  same step Kinema's trainer takes (flow-matching loss with conditioning input, backward, AdamW).
- ``e2e``: ``kinema generate`` in a fresh process against the peer's equivalent script, wall time
  and peak resident memory (``ru_maxrss`` of the child).
- ``ablation``: each speed-up of issue 10 on and off (text K/V cache, batched guidance, oneDNN
  convolutions, threads).

The peer is diffusers' ``WanPipeline`` with random weights sized like Kinema's default model
(``benchmarks/peers/diffusers_wan.py``): same tokens, steps and guidance. ``benchmarks/RESULTS.md``
quotes a run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "src" / "kinema" / "weights" / "default"
PROMPT = "a red ball bounces"
SECTIONS = ("peak", "latency", "train", "e2e", "ablation")
GNU_TIME = "/usr/bin/time"


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------ peak
def matmul_peak() -> dict[str, float]:
    """Best fp32 ``torch.mm`` GFLOP/s over square sizes (the denominator of "% of peak")."""
    best, per = 0.0, {}
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        reps = max(3, int(2e9 / (2 * n**3)))
        dt = timed(lambda: [torch.mm(a, b) for _ in range(reps)], repeats=3)
        gflops = 2 * n**3 * reps / dt / 1e9
        per[str(n)] = round(gflops, 1)
        best = max(best, gflops)
    return {"gflops": round(best, 1), "per_size": per}  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------ Kinema
def load_kinema(model: Path) -> Any:
    from kinema.pipeline import KinemaPipeline

    return KinemaPipeline.from_pretrained(model)


def kinema_clip(pipe: Any, width: int, height: int, frames: int, *, fast: bool = False, seed: int = 0) -> Callable[[], Any]:
    """Sampling + decoding of one clip with the model's defaults (no watermark, no file)."""
    from kinema.modes import decode
    from kinema.pipeline import SampleSettings

    cfg = pipe.config
    steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)
    s = SampleSettings(PROMPT, "", width, height, frames, cfg.default_fps, steps, guidance, "euler", 0.0, seed, pipe.name)
    return lambda: decode(pipe, pipe.sample_latents(s, pipe.latent_shape(s), fast=fast))


def kinema_train_step(pipe: Any, batch: int, width: int, height: int, frames: int) -> tuple[Callable[[], float], float]:
    """One DiT training step like ``kinema train dit`` (flow loss with the conditioning input,
    AdamW); returns the step and its FLOPs (counted on the meta device)."""
    from kinema.dit import DiT
    from kinema.train.common import measure_flops
    from kinema.train.config import OptimConfig
    from kinema.train.optim import build_optimizer

    dit = DiT(pipe.dit.config)
    dit.load_state_dict(pipe.dit.state_dict())
    dit.train()
    opt = build_optimizer(dit, OptimConfig())  # the trainer's AdamW (the peer's step builds the same)
    shape = pipe.vae.latent_shape(frames, height, width)  # (c, f, h, w)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((batch, *shape), generator=g)
    text = torch.randn(batch, 32, dit.config.text_dim, generator=g)
    mask = torch.ones(batch, 32, dtype=torch.bool)
    cond_mask = torch.zeros(batch, shape[1])
    cond_mask[: batch // 2, 0] = 1.0

    def loss_of(model: Any, x0: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(x0)
        t = torch.rand(x0.shape[0])
        tb = t[:, None, None, None, None]
        v = model(((1 - tb) * x0 + tb * noise), t, text, mask, x0, cond_mask)
        return torch.mean((v - (noise - x0)) ** 2)

    def step() -> float:
        loss = loss_of(dit, x0, text, mask, cond_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)  # as the trainer (and the peer's step) do
        opt.step()
        return float(loss.detach())

    def probe() -> torch.Tensor:  # runs on the meta device: every tensor is made inside
        return loss_of(DiT(pipe.dit.config), torch.zeros(batch, *shape), torch.zeros(batch, 32, dit.config.text_dim),
                       torch.ones(batch, 32, dtype=torch.bool), torch.zeros(batch, shape[1]))

    return step, measure_flops(probe)


def run_e2e(cmd: list[str], repeats: int) -> dict[str, float]:
    """Median wall seconds and the largest peak RSS (MiB) of ``cmd`` run ``repeats`` times.

    The RSS comes from GNU time (``%M``) around the command: a child forked straight from this
    process would count this process's own pages (the loaded pipelines) in its ``ru_maxrss``.
    """
    if not Path(GNU_TIME).is_file():
        raise RuntimeError(f"{GNU_TIME} not found: install GNU time (Debian: apt install time) for the e2e memory column")
    walls, rss = [], []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "time.txt"
        for _ in range(repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([GNU_TIME, "-f", "%M", "-o", str(report), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-2000:]}")
            rss.append(int(report.read_text().split()[-1]) / 1024)
    return {"wall_s": round(statistics.median(walls), 3), "peak_rss_mib": round(max(rss), 1)}


# ------------------------------------------------------------------------------------------ sections
def section_latency(pipe: Any, peer: Any, repeats: int, compile_: bool) -> list[dict[str, Any]]:
    rows = []
    durations = [f for f in (17, 33, 49, 65) if f <= pipe.config.max_frames]
    for width, height in [tuple(s) for s in pipe.config.sizes]:
        for frames in durations:
            row: dict[str, Any] = {"size": f"{width}x{height}", "frames": frames, "seconds": (frames - 1) / pipe.config.default_fps}
            row["kinema_s"] = round(timed(kinema_clip(pipe, width, height, frames), repeats), 4)
            if pipe.student() is not None:
                row["kinema_fast_s"] = round(timed(kinema_clip(pipe, width, height, frames, fast=True), repeats), 4)
            if peer is not None:
                from benchmarks.peers.diffusers_wan import wan_generate

                row["peer_s"] = round(timed(lambda: wan_generate(peer, PROMPT, width=width, height=height, frames=frames), repeats), 4)
                row["speedup"] = round(row["peer_s"] / row["kinema_s"], 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if compile_:
        w, h = pipe.config.default_size
        frames = pipe.frames_for(pipe.config.default_seconds, pipe.config.default_fps)
        t0 = time.perf_counter()
        pipe.compile()
        kinema_clip(pipe, w, h, frames)()
        row = {"size": f"{w}x{h}", "frames": frames, "compiled": True, "compile_s": round(time.perf_counter() - t0, 1),
               "kinema_s": round(timed(kinema_clip(pipe, w, h, frames), repeats), 4)}
        if pipe.student() is not None:
            row["kinema_fast_s"] = round(timed(kinema_clip(pipe, w, h, frames, fast=True), repeats, warmup=2), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def section_train(pipe: Any, peer: Any, peak_gflops: float, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    w, h = pipe.config.default_size
    frames = pipe.frames_for(pipe.config.default_seconds, pipe.config.default_fps)
    for batch in batches:
        step, flops = kinema_train_step(pipe, batch, w, h, frames)
        dt = timed(step, repeats, warmup=2)
        row: dict[str, Any] = {"batch": batch, "kinema_samples_per_s": round(batch / dt, 2), "kinema_gflop_per_step": round(flops / 1e9, 2),
                               "kinema_gflops": round(flops / dt / 1e9, 1), "kinema_pct_peak": round(100 * flops / dt / 1e9 / peak_gflops, 1)}
        if peer is not None:
            from benchmarks.peers.diffusers_wan import wan_train_step

            peer_step = wan_train_step(peer, batch=batch, width=w, height=h, frames=frames)
            row["peer_samples_per_s"] = round(batch / timed(peer_step, repeats, warmup=2), 2)
            row["speedup"] = round(row["kinema_samples_per_s"] / row["peer_samples_per_s"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def section_e2e(model: Path, peer_dir: Path | None, repeats: int, out_dir: Path) -> dict[str, Any]:
    kinema = [str(ROOT / ".venv" / "bin" / "kinema"), "generate", PROMPT, "-o", str(out_dir / "kinema.mp4"), "--model", str(model), "--quiet"]
    result: dict[str, Any] = {"kinema": run_e2e(kinema, repeats)}
    result["kinema_fast"] = run_e2e([*kinema, "--fast"], repeats) if (model / "dit_fast").is_dir() else None
    if peer_dir is not None:
        peer = [sys.executable, str(ROOT / "benchmarks" / "peers" / "diffusers_wan.py"), "generate", "--model", str(peer_dir), PROMPT,
                "-o", str(out_dir / "peer.mp4")]
        result["peer"] = run_e2e(peer, repeats)
        result["speedup"] = round(result["peer"]["wall_s"] / result["kinema"]["wall_s"], 2)
        result["memory_ratio"] = round(result["peer"]["peak_rss_mib"] / result["kinema"]["peak_rss_mib"], 2)
    print(json.dumps(result), flush=True)
    return result


def section_ablation(pipe: Any, repeats: int) -> list[dict[str, Any]]:
    """Each speed-up on and off, at the default clip."""
    from kinema.flow import euler, get_schedule, guided_velocity_fn
    from kinema.flow.guidance import combine_guidance

    w, h = pipe.config.default_size
    frames = pipe.frames_for(pipe.config.default_seconds, pipe.config.default_fps)
    shape = pipe.vae.latent_shape(frames, h, w)
    text, negative = pipe.text_encoder.encode([PROMPT]), pipe.text_encoder.encode([""])
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    schedule = get_schedule(pipe.config.steps, shift=pipe.sampling_shift(pipe.dit.num_tokens(*shape[1:])))
    scale, dit = pipe.config.guidance, pipe.dit
    rows = []

    def add(name: str, on: Callable[[], Any], off: Callable[[], Any]) -> None:
        t_on, t_off = timed(on, repeats), timed(off, repeats)
        row = {"speedup": name, "on_s": round(t_on, 4), "off_s": round(t_off, 4), "gain": round(t_off / t_on, 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)

    def uncached(xx: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # text projected and K/V computed at every step
        both = type(text).cat([text, negative])
        v = dit(torch.cat([xx, xx]), torch.cat([t, t]), both.states, both.mask)
        return combine_guidance(*v.chunk(2), scale)

    def two_pass(xx: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # guidance as two batch-1 passes
        return combine_guidance(dit(xx, t, text.states, text.mask), dit(xx, t, negative.states, negative.mask), scale)

    with torch.no_grad():
        add("text K/V cached across steps", lambda: euler(guided_velocity_fn(dit, text, negative, scale), x, schedule), lambda: euler(uncached, x, schedule))
        add("batched guidance (one 2-batch pass)", lambda: euler(guided_velocity_fn(dit, text, negative, scale), x, schedule), lambda: euler(two_pass, x, schedule))
        z = torch.randn(1, *shape)
        from kinema.vae import layers

        one_dnn = layers.conv3d

        def torch_default_dispatch() -> None:  # PyTorch's own choice (slow_conv3d for batch-1 clips)
            layers.conv3d = lambda conv, inp: conv(inp)  # type: ignore[assignment]
            try:
                pipe.vae.decode(z)
            finally:
                layers.conv3d = one_dnn

        add("oneDNN convolutions in VAE decode", lambda: pipe.vae.decode(z), torch_default_dispatch)
        threads = torch.get_num_threads()
        if threads > 1:
            clip = kinema_clip(pipe, w, h, frames)

            def one_thread() -> None:
                torch.set_num_threads(1)
                try:
                    clip()
                finally:
                    torch.set_num_threads(threads)

            add(f"{threads} threads instead of 1", clip, one_thread)
    return rows


def render_markdown(r: dict[str, Any]) -> str:
    """``benchmarks/RESULTS.md`` from a results dict (every number comes from the run)."""
    m = r["machine"]
    lines = [
        "# Kinema performance against diffusers (measured)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}, Python {m['python']}; "
        f"measured fp32 matmul peak **{r['peak']['gflops']} GFLOP/s**. Run {r['date']}: `{r['command']}`.",
        "",
        "Peer: diffusers `WanPipeline` (`WanTransformer3DModel` + `AutoencoderKLWan` + a UMT5 encoder + `FlowMatchEulerDiscreteScheduler`) "
        f"with random weights sized like Kinema's default model (preset `{r.get('peer_preset', '-')}`, `benchmarks/peers/diffusers_wan.py`): "
        "the same tokens at every size and duration, 20 steps, guidance 4, 32 text tokens.",
        "",
        "| parameters | Kinema | peer |",
        "|---|---|---|",
    ]
    peer_params = r.get("peer_params", {})
    kp = r["kinema_params"]
    lines += [f"| DiT | {kp['dit'] / 1e6:.2f}M | {peer_params.get('transformer', 0) / 1e6:.2f}M |",
              f"| VAE | {kp['vae'] / 1e6:.2f}M | {peer_params.get('vae', 0) / 1e6:.2f}M |"]
    if "latency" in r:
        lines += ["", "## Sampling + decoding, one clip, warm (median seconds)", "",
                  "| size | frames | Kinema | Kinema `--fast` | peer | peer / Kinema |", "|---|---|---|---|---|---|"]
        for row in r["latency"]:
            name = f"{row['size']}{' compiled' if row.get('compiled') else ''}"
            lines.append(f"| {name} | {row['frames']} | {row['kinema_s']:.3f} | {row.get('kinema_fast_s', '-')} | "
                         f"{row.get('peer_s', '-')} | {row.get('speedup', '-')} |")
    if "train" in r:
        lines += ["", "## DiT training throughput (64x64, 33 frames)", "",
                  "| batch | Kinema samples/s | GFLOP/s | % of peak | peer samples/s | Kinema / peer |", "|---|---|---|---|---|---|"]
        for row in r["train"]:
            lines.append(f"| {row['batch']} | {row['kinema_samples_per_s']} | {row['kinema_gflops']} | {row['kinema_pct_peak']}% | "
                         f"{row.get('peer_samples_per_s', '-')} | {row.get('speedup', '-')} |")
    if "e2e" in r:
        e = r["e2e"]
        lines += ["", "## End to end: a fresh process that imports, loads, generates the default clip and writes an MP4", "",
                  "| | wall (s) | peak RSS (MiB) |", "|---|---|---|",
                  f"| `kinema generate` | {e['kinema']['wall_s']} | {e['kinema']['peak_rss_mib']} |"]
        if e.get("kinema_fast"):
            lines.append(f"| `kinema generate --fast` | {e['kinema_fast']['wall_s']} | {e['kinema_fast']['peak_rss_mib']} |")
        if "peer" in e:
            lines += [f"| peer (`diffusers_wan.py generate`) | {e['peer']['wall_s']} | {e['peer']['peak_rss_mib']} |", "",
                      f"Kinema is **{e['speedup']}x** faster end to end and uses {e['memory_ratio']}x less peak memory."]
    if "ablation" in r:
        lines += ["", "## Speed-ups on and off (default clip)", "", "| speed-up | on (s) | off (s) | gain |", "|---|---|---|---|"]
        lines += [f"| {row['speedup']} | {row['on_s']} | {row['off_s']} | {row['gain']}x |" for row in r["ablation"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="Kinema pipeline folder (default: the bundled model)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--no-peer", action="store_true", help="skip diffusers (Kinema numbers only)")
    parser.add_argument("--peer-preset", default="params", help="WAN_PEER_PRESETS entry: params (matched parameters) or compute (matched per-token work)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile latency row")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--batches", default="8,16,32", help="training batch sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "perf" / "results.json")
    args = parser.parse_args()
    sections = [s for s in args.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")

    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    peak = matmul_peak()
    results["peak"] = peak
    print(json.dumps({"peak": peak}), flush=True)
    pipe = load_kinema(args.model)
    peer, peer_dir = None, None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_peer:
            from benchmarks.peers.diffusers_wan import WAN_PEER_PRESETS, load_wan, save_matched_wan

            peer_dir = Path(tmp) / "wan"
            results["peer_preset"] = args.peer_preset
            results["peer_params"] = save_matched_wan(peer_dir, config=WAN_PEER_PRESETS[args.peer_preset])
            peer = load_wan(peer_dir)
        results["kinema_params"] = {"dit": pipe.dit.param_count(), "vae": sum(p.numel() for p in pipe.vae.parameters())}
        if "latency" in sections:
            results["latency"] = section_latency(pipe, peer, args.repeats, compile_=not args.no_compile)
            pipe = load_kinema(args.model)  # uncompiled again for the other sections
        if "train" in sections:
            results["train"] = section_train(pipe, peer, peak["gflops"], [int(b) for b in args.batches.split(",")], args.repeats)
        if "e2e" in sections:
            results["e2e"] = section_e2e(args.model, peer_dir, args.repeats, Path(tmp))
        if "ablation" in sections:
            results["ablation"] = section_ablation(pipe, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render_markdown(results))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
