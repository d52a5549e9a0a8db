"""A learnable synthetic retrieval task: pictures of coloured shapes and their descriptions.

Queries are small rendered images (a shape of some colour, at a random place and size, on a noisy
background); the corpus holds one text description per class ("a red circle"). Each query has one
relevant description, so Recall@1 of an untrained model is near chance (1 / number of classes), and
a model that learns colour and shape reaches 1.0. Held-out queries are fresh renders never trained
on. Everything is generated from a seed: the same seed gives the same pixels.

>>> task = ShapesTask(seed=0)                                        # doctest: +SKIP
>>> pairs = task.pairs(per_class=8)          # [(PIL image, "a red circle"), ...]   # doctest: +SKIP
>>> task.write_dataset("shapes")             # corpus.jsonl, queries.jsonl, qrels/, images/  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "cross")

#: pixel budget a shapes model is trained and evaluated with (the images are rendered at this size)
IMAGE_SIZE = 84
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = IMAGE_SIZE * IMAGE_SIZE


@dataclass(frozen=True)
class ShapesTask:
    """``colours`` x ``shapes`` classes; ``seed`` fixes every render."""

    colours: int = 4
    shapes: int = 3
    image_size: int = IMAGE_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.colours <= len(COLOURS):
            raise ValueError(f"colours must be in 1..{len(COLOURS)}, got {self.colours}")
        if not 1 <= self.shapes <= len(SHAPES):
            raise ValueError(f"shapes must be in 1..{len(SHAPES)} ({', '.join(SHAPES)}), got {self.shapes}")

    @property
    def classes(self) -> list[tuple[str, str]]:
        return [(c, s) for c in list(COLOURS)[: self.colours] for s in SHAPES[: self.shapes]]

    @staticmethod
    def describe(cls: tuple[str, str]) -> str:
        return f"a {cls[0]} {cls[1]}"

    @staticmethod
    def class_id(cls: tuple[str, str]) -> str:
        return f"{cls[0]}-{cls[1]}"

    def render(self, cls: tuple[str, str], rng: np.random.Generator) -> Image.Image:
        """One picture of ``cls``: jittered colour, position and size on a noisy light background."""
        size = self.image_size
        bg = rng.integers(200, 245, size=3)
        noise = rng.integers(-6, 7, size=(size, size, 3))
        img = Image.fromarray(np.clip(bg + noise, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        colour = tuple(int(np.clip(v + rng.integers(-15, 16), 0, 255)) for v in COLOURS[cls[0]])
        r = size * rng.uniform(0.34, 0.44)
        cx = size / 2 + rng.uniform(-1, 1) * max(0.0, size / 2 - r - 2)
        cy = size / 2 + rng.uniform(-1, 1) * max(0.0, size / 2 - r - 2)
        shape = cls[1]
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape == "triangle":
            pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
            draw.polygon(pts, fill=colour)
        else:  # cross
            w = r / 3
            draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
            draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
        return img

    def samples(self, per_class: int, split: str = "train") -> list[tuple[Image.Image, tuple[str, str]]]:
        """``per_class`` renders of every class; ``split`` picks an independent random stream."""
        rng = np.random.default_rng([self.seed, {"train": 0, "test": 1}.get(split, 2), per_class])
        out = [(self.render(c, rng), c) for _ in range(per_class) for c in self.classes]
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def pairs(self, per_class: int, split: str = "train") -> list[tuple[Image.Image, str]]:
        """(image query, description) training pairs."""
        return [(img, self.describe(c)) for img, c in self.samples(per_class, split)]

    def write_dataset(
        self, root: str | os.PathLike, train_per_class: int = 8, test_per_class: int = 4
    ) -> Path:
        """A BEIR-layout folder: corpus of descriptions, image queries, qrels/train.tsv and qrels/test.tsv."""
        base = Path(root)
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "qrels").mkdir(exist_ok=True)
        with (base / "corpus.jsonl").open("w", encoding="utf-8") as fh:
            for c in self.classes:
                fh.write(json.dumps({"_id": self.class_id(c), "text": self.describe(c)}) + "\n")
        qlines: list[str] = []
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            rows = []
            for k, (img, c) in enumerate(self.samples(n, split)):
                qid = f"{split}-{k:04d}"
                img.save(base / "images" / f"{qid}.png")
                qlines.append(json.dumps({"_id": qid, "image": f"images/{qid}.png"}))
                rows.append(f"{qid}\t{self.class_id(c)}\t1")
            (base / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
        (base / "queries.jsonl").write_text("\n".join(qlines) + "\n", encoding="utf-8")
        return base


def build_shapes_model(path: str | os.PathLike, *, seed: int = 0, recipe: str = "gme", **kwargs: object) -> Path:
    """A tiny random-weight model (``umr.testing.build_tiny_model``) with the shapes pixel budget recorded."""
    from umr.recipes import read_recipe_marker, write_recipe_marker
    from umr.testing import build_tiny_model

    out = build_tiny_model(path, recipe=recipe, seed=seed, **kwargs)  # type: ignore[arg-type]
    marker = read_recipe_marker(out)
    marker.pop("recipe", None)
    marker.update(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    write_recipe_marker(out, recipe, **marker)
    return out
