"""The Gradio page: prompt, mode and uploads, settings, a progress bar, the playing result, history.

All generation logic lives in ``kinema.ui.clip`` (testable without a browser); this module only
lays out components and maps their values to a ``ClipRequest`` and a ``ClipResult`` back to them.

Nothing leaves the machine: analytics are off (``GRADIO_ANALYTICS_ENABLED=False`` is set before
Gradio is imported, and ``analytics_enabled=False``), no share link, and the default theme's fonts
are Gradio's bundled files (no CDN). The end-to-end browser test checks that every request the page
makes goes to the app itself.
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from kinema.errors import KinemaError  # noqa: E402
from kinema.ui.clip import (  # noqa: E402
    MODE_INPUTS,
    MODE_LABELS,
    NEW_PART_MODES,
    RANDOM_SEED,
    ClipRequest,
    ClipResult,
    StudioModel,
    generate_clip,
    load_upload,
    user_message,
)
from kinema.ui.provenance import SafetyHooks, load_safety, provenance_markdown  # noqa: E402

log = logging.getLogger(__name__)

NO_REFINER_TIP = "This model has no refiner (use a model folder with a refiner/ inside, or start the UI with --refiner DIR)"
CSS = """
#status .kinema-error { border: 1px solid #d9534f; background: #fdf2f2; color: #8a1f1b; padding: 10px 12px; border-radius: 6px; }
#status .kinema-ok { color: #2f6b2f; padding: 4px 2px; }
#result video { image-rendering: pixelated; }
"""
# Hover text for the (disabled) refine checkbox; Gradio has no title= on components, so it is set on load.
TOOLTIP_JS = """
() => {
  const tip = %s;
  const apply = () => { const el = document.querySelector('#refine'); if (el) { el.title = tip; el.querySelectorAll('input,label').forEach(n => n.title = tip); return true; } return false; };
  if (!apply()) { let n = 0; const t = setInterval(() => { if (apply() || ++n > 50) clearInterval(t); }, 100); }
}
"""


@dataclass
class AppOptions:
    """How the page is served. ``out_dir`` holds one folder per generation (see ``kinema.ui.clip``);
    ``safety`` defaults to what ``kinema.safety`` provides (moderation, watermark, credentials)."""

    out_dir: Path
    player_format: str = ".webm"
    safety: SafetyHooks = field(default_factory=load_safety)


def status_html(message: str, *, error: bool) -> str:
    """The status line under the player (``role=alert`` for errors)."""
    cls, role = ("kinema-error", ' role="alert"') if error else ("kinema-ok", "")
    return f'<div class="{cls}"{role}>{html.escape(message)}</div>'


def mode_updates(model: StudioModel, label: str) -> tuple[Any, ...]:
    """Visibility of uploads/strength and the duration slider's range and label for a mode."""
    mode = MODE_LABELS[label]
    needs = MODE_INPUTS[mode]
    show_image = "image" in needs or mode == "loop"
    seconds_label = "New seconds (added to the input)" if mode in NEW_PART_MODES else "Seconds (0 = one image)"
    if mode == "edit":
        seconds_label = "Seconds (edit keeps the input's length)"
    return (
        gr.update(visible=show_image, label="Start image (optional)" if mode == "loop" else "Start image"),
        gr.update(visible=show_image),
        gr.update(visible="video" in needs, label="Video to continue" if mode.startswith("extend") else "Input video"),
        gr.update(visible="end_video" in needs),
        gr.update(visible=mode == "edit"),
        gr.update(maximum=round(model.seconds_limit(mode), 4), label=seconds_label, interactive=mode != "edit"),
    )


def gallery_items(history: list[ClipResult]) -> list[tuple[str, str]]:
    """Newest first: ``(poster path, caption)``."""
    return [(str(r.poster), r.caption(i + 1)) for i, r in reversed(list(enumerate(history)))]


def build_app(model: StudioModel, options: AppOptions) -> gr.Blocks:
    """The Blocks app for ``model``. Launch with ``launch_app`` (or ``.launch`` with ``allowed_paths``)."""
    cfg = model.pipe.config
    options.out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(MODE_LABELS)

    with gr.Blocks(title="Kinema", analytics_enabled=False) as demo:
        gr.Markdown(f"# Kinema\nModel **{cfg.name}**" + (f": {cfg.description}" if cfg.description else ""))
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red ball bounces on a light background", elem_id="prompt")
                mode = gr.Radio(labels, value=labels[0], label="Mode", elem_id="mode")
                image = gr.File(label="Start image", file_count="single", visible=False, elem_id="image")
                image_preview = gr.Image(label="Start image preview", interactive=False, visible=False, height=160, elem_id="image-preview")
                video = gr.Video(label="Input video", sources=["upload"], include_audio=True, visible=False, elem_id="video")
                end_video = gr.Video(label="Second video", sources=["upload"], include_audio=True, visible=False, elem_id="end-video")
                strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Edit strength (1 = re-imagine completely)", visible=False, elem_id="strength")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Accordion("Settings", open=True):
                    sizes = model.size_choices()
                    size = gr.Dropdown(sizes, value=f"{cfg.default_size[0]}x{cfg.default_size[1]}", label="Size (aspect)", elem_id="size")
                    seconds = gr.Slider(0.0, round(model.max_seconds, 4), value=min(cfg.default_seconds, model.max_seconds), step=0.25, label="Seconds (0 = one image)", elem_id="seconds")
                    fps = gr.Slider(cfg.fps_range[0], cfg.fps_range[1], value=cfg.default_fps, step=1.0, label="Frames per second", elem_id="fps")
                    steps = gr.Slider(1, 100, value=cfg.steps, step=1, label="Sampling steps", elem_id="steps")
                    guidance = gr.Slider(0.0, 15.0, value=cfg.guidance, step=0.5, label="Guidance (1 = off)", elem_id="guidance")
                    seed = gr.Number(value=0, precision=0, label="Seed (-1 = random)", minimum=RANDOM_SEED, elem_id="seed")
                    negative = gr.Textbox(label="Negative prompt", value=cfg.negative_prompt, placeholder="what to steer away from", elem_id="negative")
                    refine = gr.Checkbox(
                        value=False, label=f"Refine ({model.refine_factor}x size)" if model.has_refiner else "Refine", interactive=model.has_refiner,
                        info="Run the refiner on the result" if model.has_refiner else NO_REFINER_TIP, elem_id="refine",
                    )
                    fast = gr.Checkbox(
                        value=False, label=f"Fast ({cfg.fast_steps}-step student)", interactive=model.has_student, elem_id="fast",
                        info="Text-to-video in a few steps; ignores steps, guidance and the negative prompt" if model.has_student else "This model has no few-step student",
                    )
            with gr.Column(scale=3):
                result = gr.Video(label="Result", interactive=False, autoplay=True, loop=True, height=420, buttons=["download"], elem_id="result")
                status = gr.HTML(status_html("Enter a prompt and press Generate.", error=False), elem_id="status")
                downloads = gr.File(label="Downloads (MP4, WebM, settings)", file_count="multiple", interactive=False, elem_id="downloads")
                with gr.Accordion("Provenance", open=True):
                    provenance = gr.Markdown("No clip yet.", elem_id="provenance")
                with gr.Accordion("Settings used", open=False):
                    settings = gr.JSON(label="Settings", elem_id="settings")
        gallery = gr.Gallery(
            label="History (this session): click a clip to show it again", columns=6, height=240, allow_preview=False,
            fit_columns=False, object_fit="contain", elem_id="history",
        )

        mode.change(lambda label: mode_updates(model, label), inputs=mode, outputs=[image, image_preview, video, end_video, strength, seconds])

        def on_image(path: str | None) -> tuple[Any, str]:
            if path is None:
                return None, status_html("Image removed.", error=False)
            try:
                frames = load_upload(path, "image").frames
            except KinemaError as e:
                return None, status_html(user_message(e), error=True)
            return frames[0], status_html(f"Image '{Path(path).name}' loaded ({frames.shape[2]}x{frames.shape[1]}).", error=False)

        image.change(on_image, inputs=image, outputs=[image_preview, status])

        def on_generate(
            prompt_v: str, mode_v: str, image_v: str | None, video_v: str | None, end_v: str | None, strength_v: float,
            size_v: str, seconds_v: float, fps_v: float, steps_v: float, guidance_v: float, seed_v: float | None,
            negative_v: str, refine_v: bool, fast_v: bool, history_v: list[ClipResult], progress: gr.Progress = gr.Progress(),
        ) -> tuple[Any, ...]:
            request = ClipRequest(
                prompt=prompt_v or "", mode=MODE_LABELS[mode_v], negative_prompt=negative_v or "", size=size_v,
                seconds=float(seconds_v), fps=float(fps_v), steps=int(steps_v), guidance=float(guidance_v),
                seed=RANDOM_SEED if seed_v is None else int(seed_v), image=image_v, video=video_v, end_video=end_v,
                strength=float(strength_v), refine=bool(refine_v), fast=bool(fast_v),
            )
            try:
                res = generate_clip(
                    model, request, options.out_dir, safety=options.safety, player_format=options.player_format,
                    progress=lambda frac, desc: progress(frac, desc=desc),
                )
            except KinemaError as e:
                msg = user_message(e)
                gr.Warning(msg)
                keep = gr.update()
                return keep, status_html(msg, error=True), keep, keep, keep, history_v, keep
            new_history = [*history_v, res]
            s = res.settings
            done = f"Made {s['frames']} frames at {s['width']}x{s['height']} ({s['seconds']} s, seed {s['seed']}) in {s['time_s']} s."
            return (
                str(res.video), status_html(done, error=False), [str(p) for p in res.downloads], s,
                provenance_markdown(res.provenance), new_history, gallery_items(new_history),
            )

        generate.click(
            on_generate,
            inputs=[prompt, mode, image, video, end_video, strength, size, seconds, fps, steps, guidance, seed, negative, refine, fast, history],
            outputs=[result, status, downloads, settings, provenance, history, gallery],
            concurrency_limit=1,
            show_progress_on=result,
        )

        def on_select(history_v: list[ClipResult], evt: gr.SelectData) -> tuple[Any, ...]:
            number = len(history_v) - int(evt.index)  # the gallery is newest first
            res = history_v[number - 1]
            shown = status_html(f"Showing clip #{number}: {res.settings['mode']}, seed {res.settings['seed']}, prompt '{res.settings['prompt']}'.", error=False)
            return str(res.video), shown, [str(p) for p in res.downloads], res.settings, provenance_markdown(res.provenance)

        gallery.select(on_select, inputs=history, outputs=[result, status, downloads, settings, provenance])
    return demo


def launch_app(
    model: StudioModel, options: AppOptions, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True
) -> tuple[gr.Blocks, str]:
    """Serve the app on ``host:port`` (never a share link); returns ``(blocks, local_url)``."""
    demo = build_app(model, options)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
        show_error=True, allowed_paths=[str(options.out_dir)], css=CSS, js=None if model.has_refiner else TOOLTIP_JS % json.dumps(NO_REFINER_TIP),
        theme=gr.themes.Default(), footer_links=[], mcp_server=False, ssr_mode=False, pwa=False, enable_monitoring=False,
    )
    return demo, url
