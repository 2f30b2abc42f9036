"""Image generation and editing with mflux's FLUX.2-klein, one denoising step per ``step``.

mflux's ``Flux2Klein.generate_image`` runs the whole loop in one call (tens of
seconds on a CPU, seconds on Apple Silicon), which would starve the worker's
heartbeat and make a job uncancellable. So the engine drives mflux's loop
itself, step by step, with mflux's own pieces in mflux's own order:

- ``_encode_prompt_pair`` (Qwen3 text encoder; a negative prompt when
  guidance > 1 turns on classifier-free guidance),
- ``_prepare_generation_latents`` (seeded noise; for img2img the VAE-encoded
  input image noised to the start step, mflux's ``image_path`` +
  ``image_strength``),
- ``_Flux2KleinEditHelpers.prepare_reference_image_conditioning`` for edits
  (the input image's latents are concatenated as reference tokens, as mflux's
  ``Flux2KleinEdit`` does: Kontext-style editing),
- the ``predict`` closure of ``Flux2Klein`` / ``Flux2KleinEdit`` and the
  config's scheduler ``step``, one timestep per engine step,
- ``vae.decode_packed_latents`` and ``ImageUtil.to_pil``.

A job's ``n`` images are made one after another (seed, seed + 1, ...). One job
runs at a time; the rest wait in a FIFO queue, bounded by the gateway's
``max_pending``. Every denoising step is logged and reported as a
:class:`~protocol.messages.Progress`; with ``partial_images`` some of them carry
a preview (the current latents through the VAE).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog

from protocol.config import ModelConfig
from protocol.messages import (
    Events,
    Finished,
    GeneratedImage,
    ImageJob,
    Job,
    Output,
    Progress,
    Usage,
    WorkerStats,
)
from workers.engine import JobError, engine_options
from workers.engines.flux_config import mflux_model_config
from workers.engines.image_files import (
    bounded,
    decode_image,
    fit,
    mask_alpha,
    paste_back,
    png_bytes,
)
from workers.engines.one_at_a_time import OneAtATime
from workers.weights import local_or_hub

log = structlog.get_logger()

Mode = Literal["generate", "edit", "img2img"]


class FluxOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of a ``flux`` model."""

    # mflux's name for the architecture and scheduler settings of the checkpoint
    # at ``path`` (e.g. flux2-klein-4b, flux2-klein-9b, flux2-klein-base-4b).
    base_model: str = "flux2-klein-4b"
    # Quantize the weights at load (4 or 8 bits); None keeps the checkpoint's.
    quantize: int | None = None
    default_steps: int = 4
    max_steps: int = 50
    default_guidance: float = 1.0
    # Width and height of a generation whose size is "auto" (or not given).
    default_size: int = 1024
    # Largest image (width x height) a request may ask for; larger input images
    # are scaled down to it. The VAE decode of an image is one engine step and
    # must stay well under the gateway's heartbeat_timeout: on a CPU it grows
    # with the pixels (demo model: ≈ 1.2 s at 64x64, ≈ 5 s at 128x128).
    max_pixels: int = 1024 * 1024
    # mx.compile the transformer call as mflux does. None: only on Metal. On
    # this project's CPU runs compiling took ~20 s on the first image and made
    # each step slower (0.5 s vs 0.16 s for the demo model).
    compile: bool | None = None
    scheduler: str = "flow_match_euler_discrete"


@dataclass
class _Image:
    """One of a job's ``n`` images while it is being denoised."""

    index: int
    seed: int
    config: Any  # mflux Config: scheduler, sigmas, timesteps
    latents: Any
    latent_ids: Any
    latent_height: int
    latent_width: int
    timesteps: list[int]
    done: int = 0


@dataclass
class _Job:
    job: ImageJob
    mode: Mode
    steps: int
    guidance: float
    width: int
    height: int
    seed: int
    input_image: Any = None  # PIL image for edits / img2img
    # An edit's mask, as OpenAI defines it: the alpha channel (PIL "L"), 255
    # where the input image is kept, 0 where it is edited.
    keep: Any = None
    # Set by the first step: prompt embeddings (and an edit's reference tokens).
    encoded: tuple[Any, ...] | None = None
    reference: tuple[Any, Any] | None = None
    predict: Any = None
    prompt_tokens: int = 0
    image: _Image | None = None
    finished_images: int = 0
    previews_at: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @property
    def job_id(self) -> str:
        return self.job.id


class FluxEngine:
    family = "flux"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, FluxOptions)
        self._jobs: OneAtATime[_Job] = OneAtATime()
        self._stats = WorkerStats()

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        import mlx.core as mx
        from mflux.models.flux2.variants.txt2img.flux2_klein import Flux2Klein

        path = local_or_hub(self.config)
        model_config = mflux_model_config(self.options.base_model, path)
        compile_ = self.options.compile
        if compile_ is None:
            compile_ = mx.default_device() == mx.gpu
        if not compile_:
            # mflux wraps its predict closure in mx.compile; this makes that a
            # plain call, for this process (one model per process).
            mx.disable_compile()
        self.model = Flux2Klein(
            quantize=self.options.quantize, model_path=path, model_config=model_config
        )
        self.model_config = model_config
        # MLX streams belong to threads: weights still lazy when the loader
        # thread ends could not be evaluated by the worker loop's thread.
        mx.eval(self.model.parameters())

    # --- jobs ---------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if not isinstance(job, ImageJob):
            raise JobError(
                f"model {self.config.name!r} is an image model: use /v1/images/generations",
                param="model",
            )
        options = self.options
        steps = job.steps if job.steps is not None else options.default_steps
        if not 1 <= steps <= options.max_steps:
            raise JobError(f"'steps' must be 1..{options.max_steps}", param="steps")
        guidance = job.guidance if job.guidance is not None else options.default_guidance
        if guidance < 0:
            raise JobError("'guidance' must be >= 0", param="guidance")
        if job.negative_prompt is not None and guidance <= 1.0:
            raise JobError(
                "'negative_prompt' takes effect through classifier-free guidance: "
                "give 'guidance' > 1 with it",
                param="negative_prompt",
            )
        mode: Mode = "generate"
        input_image = keep = None
        width, height = job.width, job.height
        if job.mask is not None and job.image is None:
            raise JobError("'mask' needs an input image", param="mask")
        if job.image is not None:
            source = decode_image(job.image, what="the image", param="image")
            if job.mask is not None:
                keep = mask_alpha(job.mask, source.size)
            input_image = bounded(source, options.max_pixels)
            mode = "img2img" if job.strength is not None else "edit"
            if not width or not height:
                width, height = fit(input_image.width, input_image.height, options.max_pixels)
        elif job.strength is not None:
            raise JobError("'strength' needs an input image", param="strength")
        if not width or not height:
            width = height = options.default_size
        if job.strength is not None and not 0.0 < job.strength <= 1.0:
            raise JobError("'strength' must be in (0, 1]", param="strength")
        if width % 16 or height % 16 or width < 16 or height < 16:
            raise JobError(f"size {width}x{height}: sides must be multiples of 16", param="size")
        if width * height > options.max_pixels:
            raise JobError(
                f"size {width}x{height} is larger than this model's limit of "
                f"{options.max_pixels} pixels",
                param="size",
            )
        seed = job.seed if job.seed is not None else secrets.randbits(32)
        self._jobs.add(_Job(job, mode, steps, guidance, width, height, seed, input_image, keep))

    def cancel(self, job_id: str) -> bool:
        running = self._jobs.running
        if running is not None and running.job_id == job_id:
            log.info("image job cancelled", job=job_id, images_done=running.finished_images)
        return self._jobs.cancel(job_id) is not None

    def has_work(self) -> bool:
        return self._jobs.has_work()

    def stats(self) -> WorkerStats:
        return self._jobs.count(self._stats)

    # --- generation ---------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """One unit of the running job: encode the prompt, prepare an image's
        latents, one denoising step, or one VAE decode (each may exceed the budget)."""
        events = Events(deltas=[], finished=[], failed=[], outputs=[])
        job = self._jobs.running
        if job is None:
            job = self._jobs.start_next()
            if job is None:
                return events
            job.started = time.perf_counter()
        if job.encoded is None:
            self._encode(job)
        elif job.image is None:
            job.image = self._start_image(job, job.finished_images)
        elif job.image.done < len(job.image.timesteps):
            events.outputs.append(self._denoise(job, job.image))
        else:
            events.outputs.append(self._decode(job, job.image))
            job.image = None
            job.finished_images += 1
            if job.finished_images == job.job.n:
                events.finished.append(self._finish(job))
                self._jobs.finish()
        return events

    def _encode(self, job: _Job) -> None:
        from mflux.models.flux2.variants.edit.flux2_klein_edit import Flux2KleinEdit
        from mflux.models.flux2.variants.edit.flux2_klein_edit_helpers import (
            _Flux2KleinEditHelpers,
        )

        model = self.model
        negative = job.job.negative_prompt if job.job.negative_prompt is not None else " "
        job.encoded = model._encode_prompt_pair(
            prompt=job.job.prompt, negative_prompt=negative, guidance=job.guidance
        )
        job.prompt_tokens = _prompt_tokens(model, job.job.prompt)
        if job.mode == "edit":
            job.reference = _Flux2KleinEditHelpers.prepare_reference_image_conditioning(
                vae=model.vae,
                tiling_config=model.tiling_config,
                image_paths=[job.input_image],
                batch_size=1,
            )
            # Flux2KleinEdit's predict (latents + reference tokens through the
            # transformer, the reference part of the output dropped) only reads
            # the model config, which this Flux2Klein shares.
            job.predict = Flux2KleinEdit._predict(model, model.transformer)
        else:
            job.predict = model._predict(model.transformer)
        _evaluate(job.encoded, job.reference)
        log.info(
            "image job started",
            job=job.job.id,
            mode=job.mode,
            n=job.job.n,
            steps=job.steps,
            size=f"{job.width}x{job.height}",
            prompt_tokens=job.prompt_tokens,
        )

    def _start_image(self, job: _Job, index: int) -> _Image:
        import mlx.core as mx
        from mflux.models.common.config.config import Config

        config = Config(
            model_config=self.model_config,
            num_inference_steps=job.steps,
            height=job.height,
            width=job.width,
            guidance=job.guidance,
            image_path=job.input_image if job.mode == "img2img" else None,
            image_strength=job.job.strength if job.mode == "img2img" else None,
            scheduler=self.options.scheduler,
        )
        seed = job.seed + index
        latents, ids, lh, lw = self.model._prepare_generation_latents(seed=seed, config=config)
        mx.eval(latents)
        timesteps = list(range(config.init_time_step, config.num_inference_steps))
        if job.job.partial_images:
            job.previews_at = _preview_steps(len(timesteps), job.job.partial_images)
        return _Image(index, seed, config, latents, ids, lh, lw, timesteps)

    def _denoise(self, job: _Job, image: _Image) -> Progress:
        import mlx.core as mx

        started = time.perf_counter()
        t = image.timesteps[image.done]
        scheduler = image.config.scheduler
        prompt_embeds, text_ids, negative_embeds, negative_ids = job.encoded or ()
        extra: dict[str, Any] = {}
        if job.reference is not None:
            extra = {"image_latents": job.reference[0], "image_latent_ids": job.reference[1]}
        noise = job.predict(
            latents=image.latents,
            latent_ids=image.latent_ids,
            prompt_embeds=prompt_embeds,
            text_ids=text_ids,
            negative_prompt_embeds=negative_embeds,
            negative_text_ids=negative_ids,
            guidance=job.guidance,
            timestep=scheduler.timesteps[t],
            **extra,
        )
        image.latents = scheduler.step(
            noise=noise, timestep=t, latents=image.latents, sigmas=scheduler.sigmas
        )
        mx.eval(image.latents)
        image.done += 1
        total = len(image.timesteps)
        self._stats.generation_tokens += 1  # for images: denoising steps
        log.info(
            "denoising step",
            job=job.job.id,
            image=image.index,
            step=image.done,
            total=total,
            seconds=round(time.perf_counter() - started, 3),
        )
        preview = None
        if image.done in job.previews_at:
            preview = png_bytes(self._pixels(image))
        return Progress(job.job.id, image.done, total, image.index, preview)

    def _decode(self, job: _Job, image: _Image) -> Output:
        started = time.perf_counter()
        pixels = self._pixels(image)
        if job.keep is not None:
            pixels = paste_back(job.input_image, pixels, job.keep)
        png = png_bytes(pixels)
        log.info(
            "image decoded",
            job=job.job.id,
            image=image.index,
            seconds=round(time.perf_counter() - started, 3),
        )
        return GeneratedImage(job.job.id, image.index, png, image.seed)

    def _pixels(self, image: _Image) -> Any:
        from mflux.utils.image_util import ImageUtil

        latents = image.latents
        packed = latents.reshape(
            latents.shape[0], image.latent_height, image.latent_width, latents.shape[-1]
        ).transpose(0, 3, 1, 2)
        decoded = self.model.vae.decode_packed_latents(
            packed, tiling_config=self.model.tiling_config
        )
        return ImageUtil.to_pil(decoded)

    def _finish(self, job: _Job) -> Finished:
        self._stats.requests_finished += 1
        self._stats.prompt_tokens += job.prompt_tokens
        # Output "tokens": the latent patches generated (16x16 pixels each).
        patches = (job.width // 16) * (job.height // 16) * job.job.n
        log.info(
            "image job finished",
            job=job.job.id,
            seconds=round(time.perf_counter() - job.started, 2),
        )
        return Finished(job.job.id, "stop", Usage(job.prompt_tokens, patches))


def _prompt_tokens(model: Any, prompt: str) -> int:
    tokens = model.tokenizers["qwen3"].tokenize(prompt=prompt, max_length=512)
    return int(tokens.attention_mask.sum().item())


def _evaluate(*trees: Any) -> None:
    import mlx.core as mx

    mx.eval([a for tree in trees if tree is not None for a in tree if a is not None])


def _preview_steps(total: int, partial_images: int) -> set[int]:
    """Steps (1-based, before the last) after which to send a preview: evenly spread."""
    count = min(partial_images, total - 1)
    return {round(total * (i + 1) / (count + 1)) for i in range(count)} - {0, total}
