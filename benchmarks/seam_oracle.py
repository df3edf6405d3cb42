"""The forward-extension seam with a perfect generator: what the VAE alone allows.

`kinema eval-modes --modes extend` gives the first half of a clip (17 of 33 frames) and measures the
seam ratio where the generated frames begin (bar: 1.5x the median adjacent-frame difference). Here the
"generated" latents are the encoder's own latents of the true continuation: the window's 25 frames
(the 9 context frames and the 16 that follow) are encoded as one clip and decoded, and the output is
assembled exactly as ``kinema.modes.run_extend`` does (the context frames cross-faded into their
decoding, then the decoded new frames). Whatever seam remains is the VAE's, not the DiT's.

    python benchmarks/seam_oracle.py --model src/kinema/weights/default --n 50

Also prints the ratio of the reconstruction's steps across latent-group boundaries and within groups
(each over the clip's median step), the true clip's own ratio at the seam frame, and the extension mode's
other two bars (speed change at the seam <= 0.1, the same objects on both sides) measured exactly as
`kinema eval-modes` does, on the oracle's output and on the plain VAE reconstruction of the whole clip:
how much of those bars the VAE and the tracker leave to a generator.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from kinema.eval.modes import GroundTruth, ModeBars, frame_steps, seam_measurements, seam_ratio
from kinema.eval.tracker import track
from kinema.modes import crossfade, decode, encode
from kinema.pipeline import KinemaPipeline
from kinema.world import sample_spec
from kinema.world.render import render


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="src/kinema/weights/default", help="pipeline folder")
    p.add_argument("--n", type=int, default=50, help="held-out clips (examples 0 .. n-1), 33 frames at 64x64")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    pipe = KinemaPipeline.from_pretrained(args.model)
    t = pipe.temporal_factor
    m = 2  # context latents, the pipeline's default
    blended, plain, truth, across, within = [], [], [], [], []
    bars = ModeBars()
    passed: dict[str, dict[str, list[bool]]] = {"oracle": {}, "recon": {}}  # clip, measurement -> verdicts
    for i in tqdm(range(args.n), desc="clips", unit="clip"):
        spec = sample_spec("heldout", args.seed, i, 64, 64, 16.0, 33)
        frames = render(spec)  # (33, 64, 64, 3)
        gt = GroundTruth(f"heldout-{i:05d}", i, spec, frames, track(frames))
        k = frames.shape[0] // 2 + 1  # the eval's seam: the first half given
        start = k - (1 + m * t)  # the context window's first frame
        window = decode(pipe, encode(pipe, frames[start:]))  # window[j] decodes frames[start + j]
        out = np.concatenate([frames[: k - m * t], crossfade(frames[k - m * t : k], window[1 : 1 + m * t], rising=True),
                              window[1 + m * t :]])
        blended.append(seam_ratio(out, k))
        plain.append(seam_ratio(np.concatenate([frames[:k], window[1 + m * t :]]), k))
        truth.append(seam_ratio(frames, k))
        recon = decode(pipe, encode(pipe, frames))
        for name, clip in (("oracle", out), ("recon", recon)):
            for meas in seam_measurements(clip, gt, k, bars, generated=(k, frames.shape[0]))[1:]:
                passed[name].setdefault(meas.name, []).append(bool(meas.passed))
        steps = frame_steps(recon)  # steps[j]: frame j -> j + 1
        typical = max(float(np.median(steps)), 0.5)
        across.append(float(np.median([steps[g * t] for g in range(1, (len(steps) - 1) // t + 1)])) / typical)
        within.append(float(np.median([s for j, s in enumerate(steps) if j % t])) / typical)

    def row(name: str, values: list[float]) -> str:
        v = np.asarray(values)
        return f"{name:<52} median {np.median(v):.2f}, <= 1.5 on {100 * np.mean(v <= 1.5):.0f}%"

    print(f"{args.model}: {args.n} held-out clips, forward extension from frame 17 of 33, perfect latents")
    print(row("seam, cross-faded as run_extend does", blended))
    print(row("seam, no cross-fade", plain))
    print(row("the true clip at the same frame", truth))
    print(f"{'reconstruction: steps across / within latent groups':<52} median {np.median(across):.2f} / {np.median(within):.2f} x the median step")
    for name, what in (("oracle", "the cross-faded oracle"), ("recon", "the whole clip's VAE reconstruction")):
        ok = passed[name]
        print(f"{what + ' at the seam frame':<52} speed change <= {bars.speed_change} on "
              f"{100 * np.mean(ok['speed_change']):.0f}%, same objects on {100 * np.mean(ok['same_objects']):.0f}%, "
              f"motion kept >= {bars.motion_kept} on {100 * np.mean(ok['motion_kept']):.0f}%")


if __name__ == "__main__":
    main()
