"""Planned-size rendering: a PDF page drawn straight at the size the embedder would resize it to.

The plan (``QwenRenderPlan``) must agree with the processor's own geometry; a planned render must have
exactly the planned size, never more pixels than the budget, and leave the embedder nothing to resize
beyond what it would do to the fitted render anyway; a plan travels to render worker processes; raster
images are not affected.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from umr.backbones.qwen_vl.geometry import QwenRenderPlan
from umr.documents import Page, RenderPlan, iter_pages, load_image, render_files, validate_render
from umr.documents.render import MAX_ASPECT, _planned_matrix

GME = 1280 * 28 * 28
#: GME's processor: final budget [256, 1280] x 28 x 28, qwen-vl-utils' first resize before it
GME_PLAN = QwenRenderPlan(28, 256 * 28 * 28, GME, (4 * 28 * 28, 16384 * 28 * 28))
SMALL = 200 * 56 * 56  # a budget below the processor's maximum (a store's own max_pixels)


def _pdf(path: Path, sizes: list[tuple[float, float]]) -> Path:
    doc = pymupdf.open()
    for i, (w, h) in enumerate(sizes):
        page = doc.new_page(width=w, height=h)
        page.insert_text((4, 14), f"page {i + 1}", fontsize=10)
        page.draw_rect(pymupdf.Rect(2, 2, w - 2, min(h - 2, 40)), color=(0, 0, 1), fill=(0.3, 0.6, 0.2))
    doc.save(path)
    doc.close()
    return path


def test_plan_sizes_equal_the_processor_geometry(tiny_embedder) -> None:
    from umr.backbones.qwen_vl.processing import Processor

    proc = tiny_embedder.processor
    plan = tiny_embedder.render_plan
    assert plan == QwenRenderPlan(28, proc.min_pixels, proc.max_pixels, (proc.pre_min_pixels, proc.pre_max_pixels))
    no_pre = Processor(proc.tokenizer, proc.image_processor, image_pad_token="<|image_pad|>",
                       min_pixels=proc.min_pixels, max_pixels=proc.max_pixels, max_length=64, pre_resize=False,
                       padding_side="left")
    rng = random.Random(0)
    sizes = [(838, 1186), (877, 1134), (1186, 838), (71, 14097), (84, 125), (1, 1), (5000, 20), (28, 28)]
    sizes += [(rng.randint(1, 3000), rng.randint(1, 3000)) for _ in range(300)]
    for processor in (proc, no_pre):
        p = processor.render_plan()
        assert pickle.loads(pickle.dumps(p)) == p
        for w, h in sizes:
            g = processor.geometry(w, h)
            assert p.sizes(w, h) == (g.pre_size, g.final_size), (w, h)


@pytest.mark.parametrize(
    ("name", "size", "budget"),
    [
        ("A4", (595, 842), GME),
        ("A4 odd", (595.3, 841.9), GME),
        ("Letter", (612, 792), GME),
        ("landscape", (842, 595), GME),
        ("long, aspect cap", (100, 30000), SMALL),  # clipped to 200:1 by the renderer
        ("long", (50, 9000), SMALL),
        ("long strip", (300, 20000), GME),
        ("tiny", (20, 30), GME),  # 300 dpi cap: the processor upscales it afterwards
    ],
)
def test_planned_render_has_the_planned_size(tmp_path: Path, name: str, size: tuple[float, float], budget: int) -> None:
    pdf = _pdf(tmp_path / "p.pdf", [size])
    fit = next(iter_pages(pdf, budget)).image
    planned = next(iter_pages(pdf, budget, plan=GME_PLAN)).image
    target = GME_PLAN.target_size(*fit.size, budget)
    assert target is not None, name
    assert planned.size == target
    assert planned.width * planned.height <= budget
    pre, final = GME_PLAN.sizes(*fit.size)
    assert target == pre  # the processor's first planned size: its first resize is a no-op
    # the embedder goes on from the planned render exactly as from its own resize of the fitted one
    assert GME_PLAN.sizes(*planned.size) == (planned.size, final)
    if name.startswith("long, aspect"):
        assert max(planned.size) / min(planned.size) <= MAX_ASPECT


def test_a4_is_drawn_at_the_final_grid_and_sharper_than_two_resamplings(tmp_path: Path) -> None:
    """GME on A4: 838x1186 fitted, resized to 840x1176 by the embedder; planned: drawn at 840x1176."""
    pdf = _pdf(tmp_path / "a4.pdf", [(595, 842)])
    fit = next(iter_pages(pdf, GME)).image
    planned = next(iter_pages(pdf, GME, plan=GME_PLAN)).image
    assert fit.size == (838, 1186) and planned.size == (840, 1176)
    assert GME_PLAN.sizes(*planned.size) == ((840, 1176), (840, 1176))  # no resize left at all
    # the same page: the planned render is close to the embedder's resize of the fitted one
    resized = fit.resize(planned.size, Image.Resampling.BICUBIC)
    diff = sum(abs(a - b) for a, b in zip(resized.convert("L").getdata(), planned.convert("L").getdata()))
    assert diff / (planned.width * planned.height) < 8


def test_no_qualifying_size_renders_as_fitted(tmp_path: Path) -> None:
    """A 200:1 strip at GME's budget: the processor's sizes are over budget or not its own fixed points."""
    pdf = _pdf(tmp_path / "strip.pdf", [(100, 30000)])
    fit = next(iter_pages(pdf, GME)).image
    assert GME_PLAN.target_size(*fit.size, GME) is None
    assert next(iter_pages(pdf, GME, plan=GME_PLAN)).image.size == fit.size


@dataclass(frozen=True)
class _Greedy:
    """A plan that asks for more pixels than any budget allows."""

    resample: int = 3

    def target_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int]:
        return width * 2, height * 2


def test_a_plan_over_the_budget_is_never_used(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "p.pdf", [(595, 842)])
    fit = next(iter_pages(pdf, GME)).image
    planned = next(iter_pages(pdf, GME, plan=_Greedy())).image
    assert planned.size == fit.size and planned.width * planned.height <= GME


def test_planned_matrix_hits_the_target_box_for_offset_and_fractional_pages() -> None:
    rng = random.Random(1)
    for _ in range(500):
        x0, y0 = rng.uniform(-50, 50), rng.uniform(-50, 50)
        w, h = rng.uniform(1, 3000), rng.uniform(1, 3000)
        rect = pymupdf.Rect(x0, y0, x0 + w, y0 + h)
        target = (rng.randint(1, 2000), rng.randint(1, 2000))
        box = (rect * _planned_matrix(pymupdf, rect, target)).irect
        assert (box.width, box.height) == target, (rect, target)


def test_a_plan_travels_to_render_workers(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "p.pdf", [(595, 842), (612, 792), (20, 30)])
    local = [p.image.size for p in iter_pages(pdf, GME, plan=GME_PLAN)]
    remote = [r.image.size for r in render_files([pdf], max_pixels=GME, plan=GME_PLAN) if isinstance(r, Page)]
    assert remote == local == [(840, 1176), (868, 1120), (84, 112)]


def test_a_plan_must_be_a_plan_and_pickle(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "p.pdf", [(595, 842)])
    with pytest.raises(TypeError, match="render plan"):
        render_files([pdf], max_pixels=GME, plan=object())  # type: ignore[arg-type]

    class Local:  # defined in a function: does not pickle
        resample = 3

        def target_size(self, width: int, height: int, max_pixels: int) -> None:
            return None

    assert isinstance(Local(), RenderPlan)
    with pytest.raises(TypeError, match="pickle"):
        render_files([pdf], max_pixels=GME, plan=Local())


def test_raster_images_are_not_affected(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.effect_noise((1500, 1000), 40).convert("RGB").save(path)
    plain = load_image(path, GME)
    planned = load_image(path, GME, plan=GME_PLAN)
    assert planned.size == plain.size and planned.tobytes() == plain.tobytes()
    assert planned.size != GME_PLAN.sizes(*plain.size)[1]  # a planned size exists, and is not used


def test_render_modes_are_validated() -> None:
    assert validate_render("planned") == "planned" and validate_render("fit") == "fit"
    with pytest.raises(ValueError, match="planned, fit"):
        validate_render("sharp")


def test_planned_budget_guarantee_over_many_page_sizes(tmp_path: Path) -> None:
    """Whatever the page, the planned render stays within the budget and has the plan's size."""
    rng = random.Random(2)
    sizes = [(rng.uniform(10, 2000), rng.uniform(10, 2000)) for _ in range(24)]
    pdf = _pdf(tmp_path / "many.pdf", sizes)
    for budget in (GME, SMALL, 64 * 28 * 28):
        for fit, planned in zip(iter_pages(pdf, budget, text=False), iter_pages(pdf, budget, text=False, plan=GME_PLAN)):
            target = GME_PLAN.target_size(*fit.image.size, budget)
            assert planned.image.size == (target or fit.image.size)
            assert planned.image.width * planned.image.height <= budget
            assert (planned.width, planned.height) == planned.image.size


def test_embedders_that_do_not_preprocess_in_umr_have_no_plan() -> None:
    """Own-code engines (no processor) and model servers get today's fit rendering."""
    from types import SimpleNamespace

    from umr.embedder import Embedder
    from umr.remote import RemoteEmbedder

    assert Embedder.render_plan.fget(SimpleNamespace(processor=None)) is None  # type: ignore[attr-defined]
    assert getattr(RemoteEmbedder, "render_plan", None) is None
