"""Centroid tracker with identities for Kinema World videos.

``track(frames)`` segments every frame (``segment.detect``), then links detections frame to frame
by greedy matching on a cost of distance to the predicted centre (constant velocity), colour,
shape and area. A track survives gaps of up to ``max_gap`` frames (occlusion, two objects merged
into one component) and is picked up again near its predicted position. Unmatched detections of a
track's colour next to its previous pieces join it as *pieces* (an object that broke), as long as
the total area stays near the object's own area; otherwise they start new tracks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kinema.eval.segment import (
    Detection,
    SegmentConfig,
    detect,
    estimate_background,
    gray_mask,
)


@dataclass(frozen=True)
class TrackerConfig:
    """Matching parameters (distances in pixels, at any frame size)."""

    segment: SegmentConfig = field(default_factory=SegmentConfig)
    gate_px: float = 6.0  # base radius around the predicted centre inside which a detection may match
    gate_speed: float = 1.0  # plus this times the track's speed (px/frame)
    gate_gap: float = 1.0  # plus this per frame the track has been unseen
    max_gap: int = 16  # frames a track may stay unseen and still be picked up again
    color_penalty: float = 8.0  # cost (px) of a colour mismatch; a colour change keeps the track if nothing fits better
    shape_penalty: float = 1.5  # cost (px) of a shape mismatch
    area_penalty: float = 3.0  # cost (px) per unit of |log(area ratio)|
    piece_reach: float = 2.5  # a piece may join a track within this times the track's extent of its previous pieces
    piece_area_growth: float = 1.4  # ... while the track's total area stays below this times its reference area
    piece_max_share: float = 0.6  # an unseen track takes a lone piece only when it is smaller than this share


@dataclass
class Track:
    """One object over time. ``obs[t]`` is the list of its pieces in frame ``t`` (one when intact)."""

    id: int
    obs: dict[int, list[Detection]] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.obs)

    @property
    def first(self) -> int:
        return min(self.obs)

    @property
    def last(self) -> int:
        return max(self.obs)

    def area(self, t: int) -> float:
        """Anti-aliased area (sum of the pieces' coverage) in frame ``t``."""
        return sum(d.mass for d in self.obs[t])

    def center(self, t: int) -> tuple[float, float]:
        ds = self.obs[t]
        a = float(sum(d.mass for d in ds))
        return (sum(d.center[0] * d.mass for d in ds) / a, sum(d.center[1] * d.mass for d in ds) / a)

    def pieces(self, t: int) -> int:
        return len(self.obs[t])

    def color(self, t: int) -> str | None:
        """Colour of the largest share of the track's area in frame ``t``."""
        votes: Counter[str | None] = Counter()
        for d in self.obs[t]:
            votes[d.color] += d.mass
        return votes.most_common(1)[0][0]

    def main(self, t: int) -> Detection:
        return max(self.obs[t], key=lambda d: d.mass)

    def clipped(self, t: int) -> bool:
        return any(d.clipped for d in self.obs[t])

    def centers(self, num_frames: int) -> np.ndarray:
        """Centres as (f, 2) float, NaN where unseen."""
        out = np.full((num_frames, 2), np.nan)
        for t in self.obs:
            out[t] = self.center(t)
        return out

    def majority_color(self, frames: list[int] | None = None) -> str | None:
        votes: Counter[str | None] = Counter(self.color(t) for t in (frames or self.frames))
        return votes.most_common(1)[0][0]

    def majority_shape(self, frames: list[int] | None = None) -> str:
        use = [t for t in (frames or self.frames) if not self.clipped(t) and self.pieces(t) == 1]
        votes = Counter(self.main(t).shape for t in (use or self.frames))
        return votes.most_common(1)[0][0]

    def reference_area(self) -> float:
        """Median area of the first (up to 5) unclipped one-piece observations."""
        use = [t for t in self.frames if not self.clipped(t) and self.pieces(t) == 1][:5]
        return float(np.median([self.area(t) for t in (use or self.frames[:5])]))


@dataclass
class TrackResult:
    """Everything the metrics need from one video's pixels."""

    num_frames: int
    height: int
    width: int
    background: str  # "light" | "dark"
    detections: list[list[Detection]]
    tracks: list[Track]
    occluder_frac: np.ndarray  # (f,) share of pixels that are occluder gray
    occluder: np.ndarray  # (f, h, w) bool occluder-gray mask

    def long_tracks(self, min_frames: int) -> list[Track]:
        return [tr for tr in self.tracks if len(tr.obs) >= min_frames]

    def visible_count(self, t: int, min_frames: int = 2) -> int:
        return sum(1 for tr in self.tracks if t in tr.obs and len(tr.obs) >= min_frames)


def _velocity(tr: Track) -> tuple[float, float]:
    fs = tr.frames
    if len(fs) < 2:
        return (0.0, 0.0)
    a, b = fs[-2], fs[-1]
    (x0, y0), (x1, y1) = tr.center(a), tr.center(b)
    return ((x1 - x0) / (b - a), (y1 - y0) / (b - a))


def link(detections: list[list[Detection]], cfg: TrackerConfig = TrackerConfig()) -> list[Track]:
    """Link per-frame detections into tracks (greedy, lowest cost first)."""
    tracks: list[Track] = []
    ref_area: dict[int, float] = {}
    for t, dets in enumerate(detections):
        active = [tr for tr in tracks if t - tr.last <= cfg.max_gap + 1]
        pairs: list[tuple[float, int, int]] = []
        preds: dict[int, tuple[float, float, float]] = {}
        for ti, tr in enumerate(active):
            vx, vy = _velocity(tr)
            gap = t - tr.last
            cx, cy = tr.center(tr.last)
            px, py = cx + vx * gap, cy + vy * gap
            gate = cfg.gate_px + cfg.gate_speed * float(np.hypot(vx, vy)) + cfg.gate_gap * (gap - 1)
            preds[ti] = (px, py, gate)
            col, shape, area = tr.color(tr.last), tr.majority_shape(tr.frames[-5:]), tr.area(tr.last)
            for di, d in enumerate(dets):
                dist = float(np.hypot(d.center[0] - px, d.center[1] - py))
                if dist > gate:
                    continue
                cost = dist + cfg.color_penalty * (d.color != col) + cfg.shape_penalty * (d.shape != shape)
                cost += cfg.area_penalty * abs(float(np.log(max(d.mass, 1.0) / max(area, 1.0))))
                pairs.append((cost, ti, di))
        pairs.sort()
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            active[ti].obs[t] = [dets[di]]
        # leftover detections: pieces of a track (a break) or new objects
        for di in sorted(set(range(len(dets))) - used_d, key=lambda i: -dets[i].mass):
            d = dets[di]
            best: Track | None = None
            best_dist = np.inf
            for tr in active:
                if tr.color(tr.last) != d.color or tr.id not in ref_area:
                    continue
                prev = tr.obs[tr.last if tr.last < t else (tr.frames[-2] if len(tr.obs) > 1 else t)]
                vx, vy = _velocity(tr)
                reach = cfg.piece_reach * max(max(p.extent for p in prev), 2.0) + cfg.gate_px
                dist = min(
                    float(np.hypot(d.center[0] - p.center[0] - vx, d.center[1] - p.center[1] - vy)) for p in prev
                )
                now = tr.area(t) if t in tr.obs else 0.0
                # a piece splits off a body seen in this frame, or is clearly smaller than the whole object
                piece_like = t in tr.obs or d.mass < cfg.piece_max_share * ref_area[tr.id]
                if piece_like and dist <= reach and now + d.mass <= cfg.piece_area_growth * ref_area[tr.id] and dist < best_dist:
                    best, best_dist = tr, dist
            if best is not None:
                best.obs.setdefault(t, []).append(d)
            else:
                tracks.append(Track(id=len(tracks), obs={t: [d]}))
        for tr in tracks:
            if tr.id not in ref_area and (len(tr.obs) >= 3 or t == len(detections) - 1):
                ref_area[tr.id] = tr.reference_area()
    return tracks


def _opening(m: np.ndarray) -> np.ndarray:
    """Morphological opening with a 3x3 cross per frame: keeps solid regions, drops 1-2 px lines."""
    e = m.copy()
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    e[:, :, 1:] &= m[:, :, :-1]
    e[:, :, :-1] &= m[:, :, 1:]
    d = e.copy()
    d[:, 1:] |= e[:, :-1]
    d[:, :-1] |= e[:, 1:]
    d[:, :, 1:] |= e[:, :, :-1]
    d[:, :, :-1] |= e[:, :, 1:]
    return d & m


def track(frames: np.ndarray, cfg: TrackerConfig = TrackerConfig()) -> TrackResult:
    """Segment and track a clip. ``frames`` uint8 (f, h, w, 3)."""
    occ = _opening(gray_mask(frames, "occluder"))  # (f, h, w); thin blends of wall and background removed
    occ_frac = occ.mean(axis=(1, 2))
    has_occ = occ.sum(axis=(1, 2)) >= 12
    occ = occ & has_occ[:, None, None]
    dets = detect(frames, cfg.segment, occluder=occ if has_occ.any() else None)
    return TrackResult(
        num_frames=int(frames.shape[0]),
        height=int(frames.shape[1]),
        width=int(frames.shape[2]),
        background=estimate_background(frames),
        detections=dets,
        tracks=link(dets, cfg),
        occluder_frac=occ_frac,
        occluder=occ,
    )
