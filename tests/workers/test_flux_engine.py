"""FluxEngine in-process, on the demo FLUX.2-klein model: mflux's pipeline
driven one denoising step per engine step."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from protocol.messages import Events, GeneratedImage, ImageJob, Progress
from tests.conftest import mask_png, png_bytes
from tests.workers.engine_helpers import loaded, run_to_end
from workers.engine import JobError
from workers.engines.flux import FluxEngine


@pytest.fixture(scope="module")
def engine(demo_flux: Path) -> Iterator[FluxEngine]:
    yield loaded(FluxEngine, "flux", "flux", demo_flux)


def run(engine: FluxEngine, job: ImageJob) -> list[Events]:
    engine.submit(job)
    return run_to_end(engine, 0.02)


def outputs(steps: list[Events], kind: type) -> list[Any]:
    return [o for events in steps for o in events.outputs if isinstance(o, kind)]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_each_denoising_step_is_one_engine_step_and_matches_mflux(engine: FluxEngine) -> None:
    steps = run(engine, ImageJob("a", "a lighthouse", width=64, height=48, steps=2, seed=3))
    progress = outputs(steps, Progress)
    assert [(p.step, p.total) for p in progress] == [(1, 2), (2, 2)]
    # Each denoising step came out of its own engine step.
    assert all(len(events.outputs) <= 1 for events in steps)
    (image,) = outputs(steps, GeneratedImage)
    assert image.seed == 3
    assert steps[-1].finished[0].usage.completion_tokens == (64 // 16) * (48 // 16)
    # mflux's own generate_image with the same seed and steps: the same picture.
    reference = engine.model.generate_image(
        seed=3, prompt="a lighthouse", num_inference_steps=2, width=64, height=48
    )
    assert np.array_equal(pixels(image.png), np.asarray(reference.image.convert("RGB")))


def test_n_images_use_consecutive_seeds(engine: FluxEngine) -> None:
    steps = run(engine, ImageJob("n", "x", width=32, height=32, n=2, steps=1, seed=10))
    images = outputs(steps, GeneratedImage)
    assert [(i.index, i.seed) for i in images] == [(0, 10), (1, 11)]
    assert not np.array_equal(pixels(images[0].png), pixels(images[1].png))


def test_edit_and_img2img_take_the_input_image(engine: FluxEngine) -> None:
    source = png_bytes(48, 32)
    edit = run(engine, ImageJob("e", "greener", width=0, height=0, image=source, steps=1))
    (edited,) = outputs(edit, GeneratedImage)
    assert pixels(edited.png).shape == (32, 48, 3)  # the input's size
    # img2img: strength 0.5 of 2 steps starts from the noised input at step 1.
    img2img = ImageJob("i", "greener", 48, 32, image=source, steps=2, strength=0.5, seed=1)
    steps = run(engine, img2img)
    assert [(p.step, p.total) for p in outputs(steps, Progress)] == [(1, 1)]
    assert len(outputs(steps, GeneratedImage)) == 1


def test_a_mask_keeps_the_input_where_it_is_opaque(engine: FluxEngine) -> None:
    source = png_bytes(48, 32, seed=3)
    job = ImageJob("m", "x", 0, 0, image=source, mask=mask_png(48, 32, 24), steps=1, seed=2)
    (edited,) = outputs(run(engine, job), GeneratedImage)
    out, original = pixels(edited.png), pixels(source)
    assert np.array_equal(out[:, :24], original[:, :24])  # kept
    assert not np.array_equal(out[:, 24:], original[:, 24:])  # edited


def test_partial_images_are_previews_before_the_last_step(engine: FluxEngine) -> None:
    job = ImageJob("p", "x", 32, 32, steps=3, partial_images=1, guidance=2.0, negative_prompt="y")
    progress = outputs(run(engine, job), Progress)
    assert [p.preview_png is not None for p in progress] == [False, True, False]
    assert pixels(progress[1].preview_png).shape == (32, 32, 3)


def test_cancel_between_steps_frees_the_engine(engine: FluxEngine) -> None:
    engine.submit(ImageJob("c1", "x", 32, 32, steps=20))
    engine.submit(ImageJob("c2", "x", 32, 32, steps=20))
    for _ in range(3):  # encode, latents, one denoising step
        engine.step(0.02)
    assert engine.stats().active == 1 and engine.stats().queued == 1
    assert engine.cancel("c1") and engine.cancel("c2")
    assert not engine.has_work() and not engine.cancel("c1")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"width": 40, "height": 32}, "size"),
        ({"width": 2048, "height": 2048}, "size"),
        ({"steps": 0}, "steps"),
        ({"steps": 51}, "steps"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"image": b"not an image"}, "image"),
        ({"image": png_bytes(), "mask": png_bytes()}, "mask"),  # no alpha channel
        ({"image": png_bytes(), "mask": mask_png(32, 32)}, "mask"),  # not the image's size
        ({"mask": mask_png(32, 32)}, "mask"),  # no image
        ({"strength": 0.5}, "strength"),
    ],
)
def test_bad_jobs_are_refused_naming_the_field(
    engine: FluxEngine, fields: dict[str, Any], param: str
) -> None:
    job = ImageJob(**{"id": "bad", "prompt": "x", "width": 32, "height": 32, **fields})
    with pytest.raises(JobError) as caught:
        engine.submit(job)
    assert caught.value.param == param and caught.value.status == 400
    assert not engine.has_work()
