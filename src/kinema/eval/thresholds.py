"""Pass/fail thresholds of every metric, as data. docs/eval.md explains each one.

Distances that scale with the picture are given as a share of the frame's shorter side (``*_frac``),
so one set of thresholds serves 64x64 and larger clips. Presets: ``default`` (used by every suite)
and ``strict`` (tighter, for well-trained models).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final


@dataclass(frozen=True)
class Thresholds:
    # count
    count_frames: float = 0.9  # share of frames whose visible object count must be right
    # attributes (colour, shape, size of each expected object)
    attributes: float = 1.0  # share of expected objects that must be found with the right attributes
    # spurious appearance / disappearance
    min_track_frames: int = 3  # tracks seen in fewer frames are noise
    spurious_events: int = 0  # unexplained appearances + disappearances allowed
    # identity persistence
    color_drift: float = 0.1  # share of an object's frames in a colour it should not have
    shape_drift: float = 0.5  # share of its unclipped frames with another shape (small triangles blur)
    size_drift: float = 1.7  # p90 / p10 of its unclipped, intact area
    # direction / still
    direction_min_frac: float = 0.04  # a said direction needs at least this net displacement
    still_max_frac: float = 0.04  # a still object moves at most this far
    # speed
    speed_ratio: float = 1.4  # measured / expected mean speed must lie in [1/r, r] (rollout)
    speed_slack_px: float = 0.25  # absolute slack in px/frame
    speed_word_ratio: float = 1.15  # "quickly" must be this much faster than normal, "slowly" this much slower
    # trajectory (rollout only)
    trajectory_frac: float = 0.06  # median centre error against the rollout
    # gravity
    gravity_rel_error: float = 0.4  # |a - g| / g, g = the rollout's (or the world's at this size and fps)
    gravity_residual_px: float = 1.0  # RMS residual of the piecewise parabola fit
    bounce_gain_px: float = 1.5  # a bounce may not rise higher than the previous apex by more than this
    # bounce / collision
    event_frames: int = 2  # a bounce/collision/occlusion end seen within this many frames of the rollout's
    bounce_recall: float = 0.75  # share of rollout bounces that must be detected
    momentum_rel_error: float = 0.35  # |p_after - p_before| / sum |p_i| before
    contact_factor: float = 1.6  # colliding objects come within this times the sum of their radii
    # permanence
    permanence_frac: float = 0.12  # reappearance within this (+0.05) of the rollout's position
    # background / camera
    background_mad: float = 4.0  # mean |frame-to-frame change| of scene pixels (still camera), 0..255
    pan_min_px: float = 0.15  # a said pan moves at least this many px/frame; a still camera at most this
    pan_rel_error: float = 0.35  # |measured - rollout| / |rollout| pan
    # flicker
    flicker: float = 3.0  # max |L_t - (L_{t-1} + L_{t+1}) / 2| of scene-pixel luma, 0..255
    # state change
    state_persistence: float = 0.85  # share of frames after the change that keep the new state
    bite_area_ratio: float = 0.93  # area after a bite / before must be below this
    # image-to-video and extension
    first_frame_psnr: float = 26.0  # dB between the given image and frame 0
    seam_ratio: float = 3.0  # seam change / median frame-to-frame change
    seam_slack: float = 3.0  # ... plus this (mean abs, 0..255)
    seam_jump_frac: float = 0.06  # an object's |second difference| at the seam, at least this is allowed


THRESHOLD_PRESETS: Final[dict[str, Thresholds]] = {
    "default": Thresholds(),
    "strict": replace(Thresholds(), count_frames=0.97, trajectory_frac=0.04, speed_ratio=1.2, flicker=2.0),
}
