"""Measure the invisible watermark: PSNR, detection after each transformation, false positives, speed.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/watermark_robustness.py --clips 40

Content (``--content``): ``world`` (Kinema World renders, ``sample_example("train", seed, i)``;
sizes cycle 64x64, 96x64, 128x128 with ``--sizes``), ``generated`` (what Kinema ships: the bundled
default model's output for the held-out caption of ``sample_example("heldout", seed, i)``, 20
steps, 64x64, generated unmarked), ``blur (the same renders Gaussian-blurred,
sigma 1 px, contrast halved: like a small model's soft, washed-out output), ``texture`` (moving
1/f "natural" noise, RMS ~30 levels). Transformations: ``none``, ``h264`` (libx264 CRF 28 via
``Video.save``, preset veryfast), ``h264_medium`` (the same with x264's default preset, medium),
``down50`` (Pillow bilinear to half size), ``crop10`` (10% off every border, off
centre by one pixel), ``gif`` (Pillow adaptive 256-colour palette). Detection counts only an exact
payload; a detected wrong payload is reported separately (``wrong``). False positives: the same
clips without the mark, after every transformation. Not a pytest file (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kinema.safety.watermark import Payload, WatermarkConfig, detect_watermark, embed_watermark
from kinema.video import Video, read_video
from kinema.world import sample_example

SIZES = {"64x64": (64, 64), "96x64": (96, 64), "128x128": (128, 128)}


# --------------------------------------------------------------------------- content
def world_clip(index: int, seed: int, size: tuple[int, int], frames: int) -> np.ndarray:
    w, h = size
    return sample_example("train", seed, index, width=w, height=h, num_frames=frames)[1]


def blurred(frames: np.ndarray, sigma: float = 1.0, contrast: float = 0.5) -> np.ndarray:
    """Gaussian blur (separable, reflect padding) and contrast scaled about the clip mean."""
    r = max(1, round(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)  # (f, 3, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    x = x.mean() + contrast * (x - x.mean())
    return x.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()


def texture_clip(index: int, size: tuple[int, int], frames: int) -> np.ndarray:
    """Moving 1/f noise (a textured, natural-looking field drifting one pixel per frame), RMS ~30."""
    w, h = size
    rng = np.random.default_rng(10_000 + index)
    big = 2 * max(w, h) + frames
    fy, fx = np.meshgrid(np.fft.fftfreq(big), np.fft.fftfreq(big), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / big)
    field = np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((big, big)))).real
    field = (field - field.mean()) / field.std()
    rgb = rng.uniform(60, 190, 3) + 30.0 * field[..., None] * rng.uniform(0.6, 1.0, 3)  # (big, big, 3)
    vy, vx = rng.integers(-1, 2, 2)
    oy, ox = big // 2 - h // 2, big // 2 - w // 2
    out = [rgb[oy + t * vy : oy + t * vy + h, ox + t * vx : ox + t * vx + w] for t in range(frames)]
    return np.clip(np.stack(out), 0, 255).round().astype(np.uint8)


_PIPELINE = None


def generated_clip(index: int, seed: int, frames: int) -> np.ndarray:
    """The bundled default model's unmarked output (64x64) for held-out caption ``index``, sampled with seed ``index``."""
    global _PIPELINE
    if _PIPELINE is None:
        from kinema.pipeline import KinemaPipeline

        _PIPELINE = KinemaPipeline.from_pretrained(Path(__file__).resolve().parents[1] / "src/kinema/weights/default")
        _PIPELINE.config.watermark = False
    caption = sample_example("heldout", seed, index)[0].caption
    return _PIPELINE.generate(caption, frames=frames, seed=index).frames


# --------------------------------------------------------------------------- transformations
def t_none(frames: np.ndarray, tmp: Path) -> np.ndarray:
    return frames


def t_h264(frames: np.ndarray, tmp: Path) -> np.ndarray:
    return read_video(Video(frames=frames, fps=16.0).save(tmp / "clip.mp4", crf=28)).frames


def t_h264_medium(frames: np.ndarray, tmp: Path) -> np.ndarray:
    """CRF 28 with x264's own default preset (``medium``: what ``ffmpeg -crf 28`` uses)."""
    return read_video(Video(frames=frames, fps=16.0).save(tmp / "clip_medium.mp4", crf=28, preset="medium")).frames


def t_down50(frames: np.ndarray, tmp: Path) -> np.ndarray:
    h, w = frames.shape[1:3]
    return np.stack([np.asarray(Image.fromarray(f).resize((w // 2, h // 2), Image.BILINEAR)) for f in frames])


def t_crop10(frames: np.ndarray, tmp: Path) -> np.ndarray:
    h, w = frames.shape[1:3]
    dy, dx = round(0.1 * h), round(0.1 * w)
    return frames[:, dy + 1 : h - dy + 1, dx - 1 : w - dx - 1]


def t_gif(frames: np.ndarray, tmp: Path) -> np.ndarray:
    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for f in frames]
    images[0].save(tmp / "clip.gif", save_all=True, append_images=images[1:], duration=62, loop=0)
    return read_video(tmp / "clip.gif").frames


TRANSFORMS: dict[str, Callable[[np.ndarray, Path], np.ndarray]] = {
    "none": t_none, "h264": t_h264, "h264_medium": t_h264_medium, "down50": t_down50, "crop10": t_crop10, "gif": t_gif,
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def run(args: argparse.Namespace) -> int:
    config = WatermarkConfig(**{k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in args.set)})
    sizes = [SIZES[s] for s in args.sizes.split(",")]
    transforms = args.transforms.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="wm_bench_"))
    for content in args.content.split(","):
        hits = {t: 0 for t in transforms}
        wrong = {t: 0 for t in transforms}
        fps_ = {t: 0 for t in transforms}
        misses: dict[str, list[str]] = {t: [] for t in transforms}
        psnrs, t_embed, t_detect, null_scores = [], [], [], []
        for i in range(args.clips):
            size = sizes[i % len(sizes)]
            if content == "texture":
                clip = texture_clip(i, size, args.frames)
            elif content == "generated":
                clip = generated_clip(args.start + i, args.seed, args.frames)
            else:
                clip = world_clip(args.start + i, args.seed, size, args.frames)
                clip = blurred(clip) if content == "blur" else clip
            j = args.start + i  # the payload follows the clip, so a run split by --start equals one run
            payload = Payload.from_ids(f"model-{j % 3}", f"generation-{args.seed}-{j}")
            t0 = time.perf_counter()
            marked = embed_watermark(clip, payload, config)
            t_embed.append(time.perf_counter() - t0)
            psnrs.append(psnr(clip, marked))
            for t in transforms:
                t0 = time.perf_counter()
                d = detect_watermark(TRANSFORMS[t](marked, tmp), config)
                if t == "none":
                    t_detect.append(time.perf_counter() - t0)
                if d.present and d.payload == payload:
                    hits[t] += 1
                else:
                    misses[t].append(f"{i}:{d.score:.1f}")
                    wrong[t] += int(d.present)
                if args.false_positives:
                    null = detect_watermark(TRANSFORMS[t](clip, tmp), config)
                    fps_[t] += int(null.present)
                    null_scores.append(null.score)
        n = args.clips
        print(f"\n== {content}: {n} clips, config {' '.join(args.set) or 'default'}, sizes {args.sizes}, {args.frames} frames, seed {args.seed}")
        print(f"PSNR mean {np.mean(psnrs):.2f} dB, min {np.min(psnrs):.2f}; embed mean {1e3 * np.mean(t_embed):.1f} ms "
              f"(first {1e3 * t_embed[0]:.1f}); detect mean {1e3 * np.mean(t_detect or [0]):.0f} ms")
        if null_scores:
            print(f"unmarked best-candidate score: mean {np.mean(null_scores):.2f}, std {np.std(null_scores):.2f}, "
                  f"max {np.max(null_scores):.2f} over {len(null_scores)} clip-transformations")
        for t in transforms:
            fp = f", false positives {fps_[t]}/{n}" if args.false_positives else ""
            print(f"  {t:7s} detected {hits[t]}/{n} = {100 * hits[t] / n:.1f}%, wrong payload {wrong[t]}{fp}"
                  + (f"  misses {' '.join(misses[t][:12])}" if misses[t] else ""))
        sys.stdout.flush()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=40, help="clips per content type")
    p.add_argument("--content", default="world,blur,texture", help="comma list of world, blur, texture, generated")
    p.add_argument("--transforms", default=",".join(TRANSFORMS))
    p.add_argument("--sizes", default="64x64", help=f"comma list of {sorted(SIZES)}, cycled over clips")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--start", type=int, default=0, help="first example index")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a WatermarkConfig number")
    p.add_argument("--false-positives", action="store_true", help="also run every transformation on unmarked clips")
    return run(p.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
