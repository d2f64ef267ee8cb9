"""The embedded synthetic visual-reasoning benchmark: small shapes on a 64x64 canvas, five question families.

Scenes are laid out on a 4x4 grid of 16 px cells with at most one object per cell, so every object's box lies inside
one cell, 1/16 of the image. That is what makes refocusing matter: the evidence for most questions is one small
region. The families mirror the five evaluation benchmarks:

- `mmbench`: attribute and relation multiple choice (A-D).
- `mmstar`: two hops: find an object, then read an attribute of its neighbour (A-D).
- `mmvp`: pairs of images that differ in one small detail, asked the same question with different answers.
- `pope`: "Is there a ...?" yes/no, with random, popular and adversarial negatives.
- `scienceqa`: a text context states a rule that has to be combined with what is seen.

Every sample carries its question, options, answer, a multi-step explicit rationale, the boxes of its evidence
objects and the full scene metadata, so every answer can be re-derived. A rationale looks before it reasons: the
visual steps come first (in LaRe the latents replace that prefix) and a ScienceQA context's rule after them. It ends
with the sentence that states the answer's value: for a multiple-choice question, the text of the right option and
of no other. Everything is drawn from `random.Random` seeded by the seed and the split name, and files are written
without timestamps: the same seed gives the same bytes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import random
import re
import shutil
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lare.data.collate import answer_text
from lare.data.records import IMAGE_MARKER

logger = logging.getLogger(__name__)

CANVAS_SIZE = 64  # the tiny preset's CLIP image size: an 8x8 grid of 8 px patches
GRID = 4
CELL_SIZE = CANVAS_SIZE // GRID
SMALL_REGION_AREA = CANVAS_SIZE * CANVAS_SIZE / (GRID * GRID)  # one cell: the "evidence is local" threshold
BACKGROUND = (245, 245, 240)
SHAPES = ("circle", "square", "triangle", "cross")
SHAPE_PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
# Skewed shape frequencies give POPE's "popular" negatives their meaning: the most frequent objects in the data.
SHAPE_WEIGHTS = (0.35, 0.30, 0.20, 0.15)
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 190, 20),
    "purple": (150, 60, 190),
    "black": (30, 30, 30),
}
SIZES = {"small": 8, "large": 14}  # side of the object's square box in pixels
MIN_OBJECTS, MAX_OBJECTS = 3, 5  # at most 5 of the 6 colours, so an MMVP pair can always recolour an object
FAMILIES = ("mmbench", "mmstar", "mmvp", "pope", "scienceqa")
POPE_SPLITS = ("random", "popular", "adversarial")
LETTERS = "ABCD"
MATERIALS = ("metal", "wood")
TEMPERATURES = ("hot", "cold")
RELATIONS = {  # direction -> (row step, column step, option word, phrase)
    "left": (0, -1, "left", "left of"),
    "right": (0, 1, "right", "right of"),
    "above": (-1, 0, "above", "above"),
    "below": (1, 0, "below", "below"),
}

# Every sentence the generator emits comes from one of these templates; `vocabulary_corpus` renders all of them.
TEMPLATES = {
    # questions
    "q_shape": "What shape is the {colour} object?",
    "q_colour_at": "What colour is the object in {where}?",
    "q_relation": "Where is the {colour} object relative to the {colour2} object?",
    "q_two_hop": "What is the {attribute} of the object directly {relation} the {colour} {shape}?",
    "q_size": "Is the {colour} {shape} small or large?",
    "q_exists": "Is there a {colour} {shape} in the image?",
    "q_material": "What is the object in {where} made of?",
    "q_temperature": "Is the {colour} object hot or cold?",
    # scienceqa contexts
    "hint_metal": "In this picture, {colours} objects are made of metal. Objects of other colours are made of wood.",
    "hint_hot": "In this picture, {shapes} are hot. The other shapes are cold.",
    # rationale steps
    "find_colour": "Find the {colour} object.",
    "find_named": "Find the {colour} {shape}.",
    "look_at": "Look at {where}.",
    "it_is_in": "It is in {where}.",
    "colour_in": "The {colour} object is in {where}.",
    "it_is_a": "It is a {size} {colour} {shape}.",
    "there_is_a": "The object there is a {size} {colour} {shape}.",
    "that_is_a": "That object is a {size} {colour} {shape}.",
    "neighbour": "The object directly {relation} it is in {where}.",
    "its_attribute": "Its {attribute} is {value}.",
    "so_relation": "So the {colour} object is {relation} the {colour2} object.",
    "so_size": "So it is {size}.",
    "not_a": "It is not a {shape}.",
    "check_all": "Check every object in the image.",
    "no_colour": "No object is {colour}.",
    "present": "So there is a {colour} {shape} in the image.",
    "absent": "So there is no {colour} {shape} in the image.",
    "says_metal": "The context says that {colours} objects are made of metal.",
    "made_of": "It is {colour}, so it is made of {material}.",
    "says_hot": "The context says that {shapes} are hot.",
    "shape_is": "A {shape} is {temperature}.",
    # captions (stage I) and instructions (stage III)
    "q_describe": "Describe the image.",
    "caption_count": "There are {count} objects.",
    "caption_object": "A {size} {colour} {shape} is in {where}.",
    "q_where": "Where is the {colour} object?",
    "q_count": "How many objects are in the image?",
    "q_size_of": "Is the {colour} object small or large?",
    "a_value": "It is {value}.",
    "a_shape": "It is a {shape}.",
    "a_where": "It is in {where}.",
    # prompt layout and the answer sentence
    "context_line": "Context: {value}",
    "option_line": "{letter}. {value}",
    "answer": answer_text("{value}"),
}


@dataclass(frozen=True)
class SceneObject:
    """One shape. `row`/`col` are 1-based grid cells; (cx, cy) is the centre pixel of its square box."""

    shape: str
    colour: str
    size: str
    row: int
    col: int
    cx: int
    cy: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """`(x0, y0, x1, y1)` in pixels, x1/y1 exclusive: exactly the pixels the shape covers."""
        side = SIZES[self.size]
        x0, y0 = self.cx - side // 2, self.cy - side // 2
        return (x0, y0, x0 + side, y0 + side)

    @property
    def where(self) -> str:
        return f"row {self.row}, column {self.col}"

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "row": self.row, "col": self.col,
                "box": list(self.box)}


Scene = tuple[SceneObject, ...]


def render_scene(scene: Scene) -> Image.Image:
    """Draw a scene on the 64x64 canvas (RGB). Plain, aliasing-free drawing: each object covers its box exactly."""
    image = Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene:
        x0, y0, x1, y1 = obj.box
        side, fill = x1 - x0, COLOURS[obj.colour]
        if obj.shape == "square":
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif obj.shape == "circle":
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif obj.shape == "triangle":
            draw.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=fill)
        elif obj.shape == "cross":
            inset = round(side / 3)  # bars of side - 2*inset px: 2 px for small, 4 px for large
            draw.rectangle((x0, y0 + inset, x1 - 1, y1 - 1 - inset), fill=fill)
            draw.rectangle((x0 + inset, y0, x1 - 1 - inset, y1 - 1), fill=fill)
        else:
            raise ValueError(f"unknown shape {obj.shape!r}")
    return image


@dataclass
class Question:
    """One generated question about one scene, before it is written out."""

    family: str
    question: str
    options: list[str] | None
    answer: str
    rationale: list[str]
    evidence: list[SceneObject]
    category: str
    l2_category: str
    hint: str | None = None
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def small_evidence(self) -> bool:
        """True when the union box of the evidence objects fits in 1/16 of the image."""
        return bool(self.evidence) and _union_area([o.box for o in self.evidence]) <= SMALL_REGION_AREA


@dataclass
class _Item:
    """A question with its scene, image and split-level id."""

    question: Question
    scene: Scene
    image: Image.Image
    id: str = ""
    png: bytes = b""


@dataclass
class FamilyStats:
    """Per-family figures of the test split. For `mmvp`, the pair metrics count a pair right only if both are."""

    n_train: int
    n_test: int
    chance: float
    majority: float
    majority_answer: str | None
    small_evidence_fraction: float
    pair_chance: float | None = None
    pair_majority: float | None = None


@dataclass
class BenchmarkExport:
    """One official-format export: the files to pass to a benchmark loader and the folder its image paths are
    relative to (None when the images are embedded as base64)."""

    files: list[Path]
    images: Path | None


@dataclass
class SyntheticSummary:
    """Where `generate_synthetic` wrote what, and the benchmark's statistics."""

    out_dir: Path
    image_root: Path
    train_path: Path
    test_path: Path
    captions_path: Path
    instructions_path: Path
    exports_dir: Path
    exports: dict[str, BenchmarkExport]
    train_exports: dict[str, BenchmarkExport]
    stats_path: Path
    n_train: int
    n_test: int
    n_captions: int
    n_instructions: int
    families: dict[str, FamilyStats]
    small_evidence_fraction: float


def _union_area(boxes: list[tuple[int, int, int, int]]) -> float:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return float((x1 - x0) * (y1 - y0))


def _place(correct: str, distractors: list[str], letter_index: int, rng: random.Random) -> tuple[list[str], str]:
    """Options with `correct` at `letter_index` (chosen by the caller to balance letters), distractors shuffled."""
    others = list(distractors)
    rng.shuffle(others)
    options = others[:letter_index] + [correct] + others[letter_index:]
    return options, LETTERS[letter_index]


def _colour_list(colours: list[str]) -> str:
    return ", ".join(colours[:-1]) + " and " + colours[-1]


def _render(name: str, **slots: Any) -> str:
    return TEMPLATES[name].format(**slots)


class _SplitGenerator:
    """Draws scenes and questions for one split from one RNG, keeping per-family counters that balance answers."""

    def __init__(self, rng: random.Random, forbidden: set[tuple]) -> None:
        self.rng = rng
        self.forbidden = forbidden  # scene signatures of the other split, so no test scene appears in training
        self.signatures: set[tuple] = set()
        self.counters: Counter[str] = Counter()

    # Scenes -----------------------------------------------------------------------------------------------
    def scene(self, max_objects: int = MAX_OBJECTS) -> Scene:
        rng = self.rng
        while True:
            n = rng.randint(MIN_OBJECTS, max_objects)
            cells = rng.sample(range(GRID * GRID), n)
            colours = rng.sample(list(COLOURS), n)  # unique colours: "the red object" always names one object
            objects = []
            for cell, colour in zip(cells, colours):
                shape = rng.choices(SHAPES, weights=SHAPE_WEIGHTS)[0]
                size = rng.choice(tuple(SIZES))
                # Jitter within the cell, keeping a 1 px margin so that neighbouring objects never touch.
                slack = (CELL_SIZE - SIZES[size]) // 2 - 1
                row, col = divmod(cell, GRID)
                cx, cy = _cell_centre(row + 1, col + 1)
                cx, cy = cx + rng.randint(-slack, slack), cy + rng.randint(-slack, slack)
                objects.append(SceneObject(shape, colour, size, row + 1, col + 1, cx, cy))
            scene = tuple(sorted(objects, key=lambda o: (o.row, o.col)))
            signature = _signature(scene)
            if signature not in self.forbidden:
                self.signatures.add(signature)
                return scene

    def _next(self, key: str) -> int:
        count = self.counters[key]
        self.counters[key] += 1
        return count

    def _retry(self, build: Callable[[Scene], Question | None]) -> tuple[Question, Scene]:
        """Draw scenes until `build` finds what it needs (e.g. two objects in one row)."""
        while True:
            scene = self.scene()
            question = build(scene)
            if question is not None:
                return question, scene

    # Families ---------------------------------------------------------------------------------------------
    def mmbench(self) -> list[tuple[Question, Scene]]:
        k = self._next("mmbench")
        letter_index = k % 4  # 3 subtypes and 4 letters are coprime, so every subtype cycles every letter
        subtype = ("shape", "colour", "relation")[k % 3]
        build = {"shape": self._mmbench_shape, "colour": self._mmbench_colour, "relation": self._mmbench_relation}
        return [self._retry(lambda scene: build[subtype](scene, letter_index))]

    def _mmbench_shape(self, scene: Scene, letter_index: int) -> Question:
        obj = self.rng.choice(scene)
        options, letter = _place(obj.shape, [s for s in SHAPES if s != obj.shape], letter_index, self.rng)
        rationale = [
            _render("find_colour", colour=obj.colour),
            _render("it_is_in", where=obj.where),
            _render("it_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
            _render("its_attribute", attribute="shape", value=obj.shape),
        ]
        return Question("mmbench", _render("q_shape", colour=obj.colour), options, letter, rationale, [obj],
                        "shape_recognition", "attribute_reasoning", query={"type": "shape_of", "colour": obj.colour})

    def _mmbench_colour(self, scene: Scene, letter_index: int) -> Question:
        obj = self.rng.choice(scene)
        distractors = self.rng.sample([c for c in COLOURS if c != obj.colour], 3)
        options, letter = _place(obj.colour, distractors, letter_index, self.rng)
        rationale = [
            _render("look_at", where=obj.where),
            _render("there_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
            _render("its_attribute", attribute="colour", value=obj.colour),
        ]
        return Question("mmbench", _render("q_colour_at", where=obj.where), options, letter, rationale, [obj],
                        "colour_recognition", "attribute_reasoning",
                        query={"type": "colour_at", "row": obj.row, "col": obj.col})

    def _mmbench_relation(self, scene: Scene, letter_index: int) -> Question | None:
        pairs = [(a, b) for a in scene for b in scene if a is not b and (a.row == b.row or a.col == b.col)]
        if not pairs:
            return None
        a, b = self.rng.choice(pairs)
        if a.row == b.row:
            direction = "left" if a.col < b.col else "right"
        else:
            direction = "above" if a.row < b.row else "below"
        word, phrase = RELATIONS[direction][2:]
        options, letter = _place(word, [RELATIONS[d][2] for d in RELATIONS if d != direction], letter_index, self.rng)
        rationale = [
            _render("find_colour", colour=a.colour),
            _render("it_is_in", where=a.where),
            _render("find_colour", colour=b.colour),
            _render("it_is_in", where=b.where),
            _render("so_relation", colour=a.colour, relation=phrase, colour2=b.colour),
        ]
        question = _render("q_relation", colour=a.colour, colour2=b.colour)
        return Question("mmbench", question, options, letter, rationale, [a, b], "spatial_relationship",
                        "relation_reasoning", query={"type": "relation", "colour": a.colour, "colour2": b.colour})

    def mmstar(self) -> list[tuple[Question, Scene]]:
        k = self._next("mmstar")
        # Letters cycle fastest (balanced even in tiny splits); the attribute alternates and flips phase every four
        # questions, so each attribute also meets every letter.
        letter_index = k % 4
        attribute = ("shape", "colour")[(k + k // 4) % 2]
        return [self._retry(lambda scene: self._mmstar(scene, attribute, letter_index))]

    def _mmstar(self, scene: Scene, attribute: str, letter_index: int) -> Question | None:
        cells = {(o.row, o.col): o for o in scene}
        hops = [(a, direction, cells[(a.row + dr, a.col + dc)])
                for a in scene for direction, (dr, dc, _, _) in RELATIONS.items()
                if (a.row + dr, a.col + dc) in cells]
        if not hops:
            return None
        a, direction, b = self.rng.choice(hops)
        phrase = RELATIONS[direction][3]
        if attribute == "shape":
            value, distractors = b.shape, [s for s in SHAPES if s != b.shape]
        else:
            # The reference's own colour is no plausible answer (colours are unique), so it is never a distractor.
            value = b.colour
            distractors = self.rng.sample([c for c in COLOURS if c not in (a.colour, b.colour)], 3)
        options, letter = _place(value, distractors, letter_index, self.rng)
        rationale = [
            _render("find_named", colour=a.colour, shape=a.shape),
            _render("it_is_in", where=a.where),
            _render("neighbour", relation=phrase, where=b.where),
            _render("that_is_a", size=b.size, colour=b.colour, shape=b.shape),
            _render("its_attribute", attribute=attribute, value=value),
        ]
        question = _render("q_two_hop", attribute=attribute, relation=phrase, colour=a.colour, shape=a.shape)
        return Question("mmstar", question, options, letter, rationale, [a, b], "instance_reasoning",
                        f"two_hop_{attribute}", query={"type": "two_hop", "attribute": attribute,
                                                       "direction": direction, "colour": a.colour})

    def mmvp(self) -> list[tuple[Question, Scene]]:
        """Two scenes that differ in one attribute of one object, the same question, different answers."""
        k = self._next("mmvp")
        detail = ("shape", "colour", "size")[k % 3]
        rng = self.rng
        while True:
            base = self.scene()
            target = rng.choice(base)
            if detail == "shape":
                changed = _replace(target, shape=rng.choice([s for s in SHAPES if s != target.shape]))
            elif detail == "colour":
                used = {o.colour for o in base}
                changed = _replace(target, colour=rng.choice([c for c in COLOURS if c not in used]))
            else:
                # A small object grown in place could cross its cell border: centre it as a large one is.
                size = "small" if target.size == "large" else "large"
                cx, cy = _cell_centre(target.row, target.col) if size == "large" else (target.cx, target.cy)
                changed = _replace(target, size=size, cx=cx, cy=cy)
            other = tuple(changed if o is target else o for o in base)
            if _signature(other) not in self.forbidden:
                break
        self.signatures.add(_signature(other))
        values = [getattr(target, detail), getattr(changed, detail)]
        options = list(values)
        rng.shuffle(options)
        pair = [(base, target), (other, changed)]
        rng.shuffle(pair)  # which image comes first is random too
        results = []
        for scene, obj in pair:
            letter = LETTERS[options.index(getattr(obj, detail))]
            results.append((self._mmvp_question(obj, detail, options, letter), scene))
        return results

    def _mmvp_question(self, obj: SceneObject, detail: str, options: list[str], letter: str) -> Question:
        if detail == "shape":
            question = _render("q_shape", colour=obj.colour)
            steps = [_render("find_colour", colour=obj.colour), _render("it_is_in", where=obj.where),
                     _render("it_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
                     _render("its_attribute", attribute="shape", value=obj.shape)]
            query = {"type": "shape_of", "colour": obj.colour}
        elif detail == "colour":
            question = _render("q_colour_at", where=obj.where)
            steps = [_render("look_at", where=obj.where),
                     _render("there_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
                     _render("its_attribute", attribute="colour", value=obj.colour)]
            query = {"type": "colour_at", "row": obj.row, "col": obj.col}
        else:
            question = _render("q_size", colour=obj.colour, shape=obj.shape)
            steps = [_render("find_named", colour=obj.colour, shape=obj.shape), _render("it_is_in", where=obj.where),
                     _render("it_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
                     _render("so_size", size=obj.size)]
            query = {"type": "size_of", "colour": obj.colour}
        return Question("mmvp", question, list(options), letter, steps, [obj], detail, "fine_grained_difference",
                        query=query)

    def pope(self) -> list[tuple[Question, Scene]]:
        k = self._next("pope")
        split = POPE_SPLITS[k % 3]
        positive = k % 2 == 0  # 2 and 3 are coprime, so yes/no alternate within each negative-sampling split
        return [self._retry(lambda scene: self._pope(scene, split, positive))]

    def _pope(self, scene: Scene, split: str, positive: bool) -> Question | None:
        rng = self.rng
        present = {(o.colour, o.shape) for o in scene}
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        if positive:
            obj = rng.choice(scene)
            colour, shape = obj.colour, obj.shape
        elif split == "random":
            colour, shape = rng.choice(absent)
        elif split == "popular":
            # The most frequent objects in the data set (by shape frequency) that are not in this image.
            top = max(SHAPE_WEIGHTS[SHAPES.index(s)] for _, s in absent)
            colour, shape = rng.choice([(c, s) for c, s in absent if SHAPE_WEIGHTS[SHAPES.index(s)] == top])
        else:
            # Adversarial: a present object with one attribute changed, the hardest absent object to rule out.
            obj = rng.choice(scene)
            colour, shape = obj.colour, rng.choice([s for s in SHAPES if s != obj.shape])
        same_colour = [o for o in scene if o.colour == colour]
        # What is seen comes first, with no restatement of the question. In LaRe the latents replace that prefix;
        # with a restated "Look for a red circle." there, the text after it often went on about another object
        # ("It is a small blue circle. So there is a blue circle …") and LaRe said "yes" to 90% of POPE questions.
        if same_colour:
            obj = same_colour[0]
            rationale = [_render("colour_in", colour=colour, where=obj.where),
                         _render("it_is_a", size=obj.size, colour=obj.colour, shape=obj.shape)]
            if not positive:
                rationale.append(_render("not_a", shape=shape))
        else:
            rationale = [_render("check_all"), _render("no_colour", colour=colour)]
        rationale.append(_render("present" if positive else "absent", colour=colour, shape=shape))
        return Question("pope", _render("q_exists", colour=colour, shape=shape), None, "yes" if positive else "no",
                        rationale, same_colour, split, "existence",
                        query={"type": "exists", "colour": colour, "shape": shape, "split": split})

    def scienceqa(self) -> list[tuple[Question, Scene]]:
        k = self._next("scienceqa")
        # Every four questions cover both letters, both subtypes, and every (answer value, letter) combination.
        letter_index = k % 2
        subtype = ("material", "temperature")[(k // 2) % 2]
        value_index = (k + k // 2) % 2  # which answer value (metal/wood, hot/cold) is right
        build = {"material": self._scienceqa_material, "temperature": self._scienceqa_temperature}[subtype]
        return [self._retry(lambda scene: build(scene, value_index, letter_index))]

    def _scienceqa_material(self, scene: Scene, value_index: int, letter_index: int) -> Question:
        rng = self.rng
        obj = rng.choice(scene)
        material = MATERIALS[value_index]
        others = [c for c in COLOURS if c != obj.colour]
        # The rule is drawn so that the wanted answer holds: the text alone never gives it away.
        metal = rng.sample(others, 2) + [obj.colour] if material == "metal" else rng.sample(others, 3)
        metal = [c for c in COLOURS if c in metal]  # canonical order
        options, letter = _place2(material, MATERIALS, letter_index)
        rationale = [
            _render("look_at", where=obj.where),
            _render("there_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
            _render("says_metal", colours=_colour_list(metal)),
            _render("made_of", colour=obj.colour, material=material),
        ]
        return Question("scienceqa", _render("q_material", where=obj.where), options, letter, rationale, [obj],
                        "materials", "physics", hint=_render("hint_metal", colours=_colour_list(metal)),
                        query={"type": "material", "row": obj.row, "col": obj.col, "metal": metal})

    def _scienceqa_temperature(self, scene: Scene, value_index: int, letter_index: int) -> Question:
        rng = self.rng
        obj = rng.choice(scene)
        temperature = TEMPERATURES[value_index]
        others = [s for s in SHAPES if s != obj.shape]
        hot = [obj.shape, rng.choice(others)] if temperature == "hot" else rng.sample(others, 2)
        hot = [s for s in SHAPES if s in hot]
        hot_text = " and ".join(SHAPE_PLURALS[s] for s in hot)
        options, letter = _place2(temperature, TEMPERATURES, letter_index)
        rationale = [
            _render("find_colour", colour=obj.colour),
            _render("it_is_in", where=obj.where),
            _render("it_is_a", size=obj.size, colour=obj.colour, shape=obj.shape),
            _render("says_hot", shapes=hot_text),
            _render("shape_is", shape=obj.shape, temperature=temperature),
        ]
        return Question("scienceqa", _render("q_temperature", colour=obj.colour), options, letter, rationale, [obj],
                        "temperature", "physics", hint=_render("hint_hot", shapes=hot_text),
                        query={"type": "temperature", "colour": obj.colour, "hot": hot})


def _place2(correct: str, pair: tuple[str, str], letter_index: int) -> tuple[list[str], str]:
    other = pair[1] if correct == pair[0] else pair[0]
    options = [correct, other] if letter_index == 0 else [other, correct]
    return options, LETTERS[letter_index]


def _cell_centre(row: int, col: int) -> tuple[int, int]:
    """Centre pixel of the 1-based grid cell (row, col)."""
    return (col - 1) * CELL_SIZE + CELL_SIZE // 2, (row - 1) * CELL_SIZE + CELL_SIZE // 2


def _replace(obj: SceneObject, **changes: Any) -> SceneObject:
    values = {name: getattr(obj, name) for name in ("shape", "colour", "size", "row", "col", "cx", "cy")}
    values.update(changes)
    return SceneObject(**values)


def _signature(scene: Scene) -> tuple:
    return tuple((o.shape, o.colour, o.size, o.row, o.col) for o in scene)


def _quotas(n: int) -> dict[str, int]:
    """Near-equal family counts summing to `n`; MMVP's count is even because it comes in pairs."""
    base, extra = divmod(n, len(FAMILIES))
    quotas = {family: base + (i < extra) for i, family in enumerate(FAMILIES)}
    if quotas["mmvp"] % 2:
        quotas["mmvp"] -= 1
        quotas["mmbench"] += 1
    return quotas


def _generate_split(split: str, n: int, seed: int, forbidden: set[tuple]) -> tuple[list[_Item], set[tuple]]:
    generator = _SplitGenerator(random.Random(f"lare-synthetic:{seed}:{split}"), forbidden)
    builders = {"mmbench": generator.mmbench, "mmstar": generator.mmstar, "mmvp": generator.mmvp,
                "pope": generator.pope, "scienceqa": generator.scienceqa}
    items: list[_Item] = []
    for family, quota in _quotas(n).items():
        produced = 0
        while produced < quota:
            for question, scene in builders[family]():
                items.append(_Item(question, scene, render_scene(scene)))
                produced += 1
    for index, item in enumerate(items, start=1):
        item.id = f"{split}_{index:06d}"
        item.png = _png_bytes(item.image)
    return items, generator.signatures


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # no tEXt/tIME chunks unless asked for: deterministic bytes
    return buffer.getvalue()


def _human_turn(question: Question) -> str:
    lines = [IMAGE_MARKER]
    if question.hint is not None:
        lines.append(_render("context_line", value=question.hint))
    lines.append(question.question)
    for letter, option in zip(LETTERS, question.options or []):
        lines.append(_render("option_line", letter=letter, value=option))
    return "\n".join(lines)


def _record(item: _Item, split: str) -> dict[str, Any]:
    question = item.question
    rationale = " ".join(question.rationale)
    record = {
        "id": item.id,
        "image": f"{split}/{item.id}.png",
        "conversations": [
            {"from": "human", "value": _human_turn(question)},
            {"from": "gpt", "value": f"{rationale} {answer_text(question.answer)}"},
        ],
        "rationale": rationale,
        "answer": question.answer,
        "options": question.options,
        "boxes": [list(o.box) for o in question.evidence],
        "family": question.family,
        "category": question.category,
        "l2_category": question.l2_category,
        "hint": question.hint,
        "query": question.query,
        "small_evidence": question.small_evidence,
        "scene": {"width": CANVAS_SIZE, "height": CANVAS_SIZE, "objects": [o.to_json() for o in item.scene]},
    }
    return record


def _caption_record(item: _Item, index: int) -> dict[str, Any]:
    scene = item.scene
    caption = " ".join([_render("caption_count", count=len(scene))] + [
        _render("caption_object", size=o.size, colour=o.colour, shape=o.shape, where=o.where) for o in scene])
    return {
        "id": f"caption_{index:06d}",
        "image": f"train/{item.id}.png",
        "conversations": [{"from": "human", "value": f"{IMAGE_MARKER}\n{_render('q_describe')}"},
                          {"from": "gpt", "value": caption}],
    }


def _instruction_record(item: _Item, index: int, rng: random.Random) -> dict[str, Any]:
    """Short single-hop QA without a rationale (stage III), one template per image in turn."""
    obj = rng.choice(item.scene)
    kind = index % 5
    if kind == 0:
        question, answer = _render("q_colour_at", where=obj.where), _render("a_value", value=obj.colour)
    elif kind == 1:
        question, answer = _render("q_shape", colour=obj.colour), _render("a_shape", shape=obj.shape)
    elif kind == 2:
        question, answer = _render("q_size_of", colour=obj.colour), _render("a_value", value=obj.size)
    elif kind == 3:
        question, answer = _render("q_where", colour=obj.colour), _render("a_where", where=obj.where)
    else:
        question, answer = _render("q_count"), _render("caption_count", count=len(item.scene))
    return {
        "id": f"instruction_{index:06d}",
        "image": f"train/{item.id}.png",
        "conversations": [{"from": "human", "value": f"{IMAGE_MARKER}\n{question}"},
                          {"from": "gpt", "value": answer}],
    }


def _write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def _write_table(path: Path, header: list[str], rows: list[list[Any]], delimiter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _mmstar_question(question: str, options: list[str]) -> str:
    """MMStar spells the options out inside the question: "...\nOptions: A: x, B: y, C: z, D: w"."""
    return f"{question}\nOptions: " + ", ".join(f"{letter}: {option}" for letter, option in zip(LETTERS, options))


def _mmvp_options(options: list[str]) -> str:
    """MMVP's Options cell: "(a) x (b) y"."""
    return " ".join(f"({letter.lower()}) {option}" for letter, option in zip(LETTERS, options))


def _mmvp_letter(letter: str) -> str:
    """MMVP's Correct Answer cell: "(a)"."""
    return f"({letter.lower()})"


def _scienceqa_prompt(hint: str | None, question: str, options: list[str]) -> str:
    """LLaVA's CQM-A human turn: context, question, then "(A) x (B) y" options."""
    choices = " ".join(f"({letter}) {option}" for letter, option in zip(LETTERS, options))
    return f"{IMAGE_MARKER}\nContext: {hint}\nQuestion: {question}\nOptions: {choices}"


def _export(items: list[_Item], exports: Path) -> dict[str, BenchmarkExport]:
    """Write one split in the benchmarks' official file formats."""
    by_family: dict[str, list[_Item]] = {family: [] for family in FAMILIES}
    for item in items:
        by_family[item.question.family].append(item)

    # MMBench (VLMEvalKit TSV): options in columns A-D, base64 PNG images.
    rows = []
    for index, item in enumerate(by_family["mmbench"]):
        q = item.question
        rows.append([index, q.question, q.hint or "", *q.options, q.answer, q.category, q.l2_category,
                     base64.b64encode(item.png).decode("ascii")])
    _write_table(exports / "mmbench.tsv",
                 ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image"],
                 rows, "\t")

    # MMStar (VLMEvalKit TSV): the options are also spelled out inside the question, as in MMStar.
    rows = []
    for index, item in enumerate(by_family["mmstar"]):
        q = item.question
        rows.append([index, _mmstar_question(q.question, q.options), *q.options, q.answer, q.category, q.l2_category,
                     "synthetic", base64.b64encode(item.png).decode("ascii")])
    _write_table(exports / "mmstar.tsv",
                 ["index", "question", "A", "B", "C", "D", "answer", "category", "l2_category", "bench", "image"],
                 rows, "\t")

    # POPE: one JSONL per negative-sampling split, images in a shared folder.
    pope = exports / "pope"
    (pope / "images").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {split: [] for split in POPE_SPLITS}
    for item in by_family["pope"]:
        split = item.question.query["split"]
        (pope / "images" / f"{item.id}.png").write_bytes(item.png)
        entry = {"question_id": len(lines[split]) + 1, "image": f"{item.id}.png", "text": item.question.question,
                 "label": item.question.answer}
        lines[split].append(json.dumps(entry))
    for split, split_lines in lines.items():
        (pope / f"{split}.jsonl").write_text("".join(line + "\n" for line in split_lines), encoding="utf-8")

    # MMVP: Questions.csv with pairs at consecutive indices, images "MMVP Images/{Index}.jpg" (real JPEGs).
    mmvp = exports / "mmvp"
    (mmvp / "MMVP Images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, item in enumerate(by_family["mmvp"], start=1):
        q = item.question
        # 4:4:4 chroma keeps the colours of 8 px objects intact; quality 95 as the issue asks.
        item.image.save(mmvp / "MMVP Images" / f"{index}.jpg", format="JPEG", quality=95, subsampling=0)
        rows.append([index, q.question, _mmvp_options(q.options), _mmvp_letter(q.answer)])
    _write_table(mmvp / "Questions.csv", ["Index", "Question", "Options", "Correct Answer"], rows, ",")

    # ScienceQA: LLaVA's llava_test_CQM-A.json, images/test/{id}/image.png, plus problems.json / pid_splits.json.
    sqa = exports / "scienceqa"
    conversations, problems = [], {}
    for item in by_family["scienceqa"]:
        q = item.question
        folder = sqa / "images" / "test" / item.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "image.png").write_bytes(item.png)
        prompt = _scienceqa_prompt(q.hint, q.question, q.options)
        conversations.append({
            "id": item.id,
            "conversations": [{"from": "human", "value": prompt},
                              {"from": "gpt", "value": answer_text(q.answer)}],
            "image": f"{item.id}/image.png",
        })
        problems[item.id] = {
            "question": q.question, "choices": q.options, "answer": LETTERS.index(q.answer), "hint": q.hint,
            "image": "image.png", "task": "closed choice", "grade": "grade1", "subject": "natural science",
            "topic": q.l2_category, "category": q.category, "lecture": "", "solution": " ".join(q.rationale),
            "split": "test",
        }
    _write_json(sqa / "llava_test_CQM-A.json", conversations)
    _write_json(sqa / "problems.json", problems)
    _write_json(sqa / "pid_splits.json", {"test": list(problems)})
    return {
        "mmbench": BenchmarkExport([exports / "mmbench.tsv"], None),
        "mmstar": BenchmarkExport([exports / "mmstar.tsv"], None),
        "pope": BenchmarkExport([pope / f"{split}.jsonl" for split in POPE_SPLITS], pope / "images"),
        "mmvp": BenchmarkExport([mmvp / "Questions.csv"], mmvp / "MMVP Images"),
        "scienceqa": BenchmarkExport([sqa / "llava_test_CQM-A.json"], sqa / "images" / "test"),
    }


def _family_stats(train: list[_Item], test: list[_Item]) -> dict[str, FamilyStats]:
    stats = {}
    for family in FAMILIES:
        questions = [item.question for item in test if item.question.family == family]
        n_train = sum(item.question.family == family for item in train)
        answers = Counter(q.answer for q in questions)
        majority_answer, majority_count = answers.most_common(1)[0] if answers else (None, 0)
        n = len(questions)
        chance = sum(1 / len(q.options) if q.options else 0.5 for q in questions) / n if n else 0.0
        small = sum(q.small_evidence for q in questions) / n if n else 0.0
        entry = FamilyStats(n_train, n, chance, majority_count / n if n else 0.0, majority_answer, small)
        if family == "mmvp":
            # A pair counts only when both answers are right: blind guessing gets 1/4, a constant answer 0.
            entry.pair_chance = 0.25
            entry.pair_majority = 0.0
        stats[family] = entry
    return stats


_OUTPUT_NAMES = ("train.json", "test.json", "captions.json", "instructions.json", "stats.json", "images", "exports",
                 "exports_train")


def generate_synthetic(
    out_dir: str | Path, n_train: int, n_test: int, seed: int = 0, overwrite: bool = False
) -> SyntheticSummary:
    """Generate the synthetic benchmark into `out_dir`.

    Writes `train.json` / `test.json` (LLaVA conversation records with rationale, answer, options, boxes, family
    and scene metadata), `captions.json` (stage I), `instructions.json` (stage III), `images/{train,test}/`,
    `exports/` (the test split in the official MMBench, MMStar, POPE, MMVP and ScienceQA formats), `exports_train/`
    (the training split in the same formats) and `stats.json`.
    Records' `image` paths are relative to `out_dir/images`.

    Args:
        out_dir: output directory; it must be empty or missing unless `overwrite` is set.
        n_train, n_test: number of questions per split (MMVP pairs count as two).
        seed: the same seed gives byte-identical files. The test split depends only on the seed and `n_test`.
        overwrite: replace the files this function writes (nothing else in `out_dir` is touched).
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace the synthetic benchmark")
        for name in _OUTPUT_NAMES:  # stale files from a larger run would break byte-identical outputs
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)

    # The test split is drawn first and the training split avoids its scenes, so no test image is seen in training.
    test, test_signatures = _generate_split("test", n_test, seed, forbidden=set())
    train, _ = _generate_split("train", n_train, seed, forbidden=test_signatures)

    images = out / "images"
    for split, items in (("train", train), ("test", test)):
        (images / split).mkdir(parents=True, exist_ok=True)
        for item in items:
            (images / split / f"{item.id}.png").write_bytes(item.png)
        _write_json(out / f"{split}.json", [_record(item, split) for item in items])

    instruction_rng = random.Random(f"lare-synthetic:{seed}:instructions")
    captions = [_caption_record(item, index) for index, item in enumerate(train, start=1)]
    instructions = [_instruction_record(item, index, instruction_rng) for index, item in enumerate(train, start=1)]
    _write_json(out / "captions.json", captions)
    _write_json(out / "instructions.json", instructions)
    exports = _export(test, out / "exports")
    # The training split in the same formats lets a harness train on exactly the prompts it evaluates with.
    train_exports = _export(train, out / "exports_train")

    families = _family_stats(train, test)
    every = [item.question for item in train + test]
    small_fraction = sum(q.small_evidence for q in every) / len(every) if every else 0.0
    stats = {
        "seed": seed,
        "n_train": len(train),
        "n_test": len(test),
        "n_captions": len(captions),
        "n_instructions": len(instructions),
        "small_evidence_fraction": small_fraction,
        "small_evidence_threshold_px": SMALL_REGION_AREA,
        "families": {family: vars(entry) for family, entry in families.items()},
    }
    _write_json(out / "stats.json", stats, indent=2)
    summary = SyntheticSummary(
        out_dir=out, image_root=images, train_path=out / "train.json", test_path=out / "test.json",
        captions_path=out / "captions.json", instructions_path=out / "instructions.json",
        exports_dir=out / "exports", exports=exports, train_exports=train_exports, stats_path=out / "stats.json",
        n_train=len(train), n_test=len(test), n_captions=len(captions), n_instructions=len(instructions),
        families=families, small_evidence_fraction=small_fraction,
    )
    logger.info("synthetic benchmark: %d train, %d test questions in %s (evidence in <=1/16 of the image: %.0f%%)",
                len(train), len(test), out, 100 * small_fraction)
    return summary


# Vocabulary ---------------------------------------------------------------------------------------------------
_SLOT_VALUES: dict[str, list[str]] = {
    "colour": list(COLOURS),
    "colour2": list(COLOURS),
    "shape": list(SHAPES),
    "size": list(SIZES),
    "where": [f"row {r}, column {c}" for r in range(1, GRID + 1) for c in range(1, GRID + 1)],
    "attribute": ["shape", "colour"],
    "relation": [RELATIONS[d][3] for d in RELATIONS],
    "colours": [_colour_list(list(COLOURS)[i:i + 3]) for i in range(0, len(COLOURS), 3)],
    "shapes": [" and ".join(SHAPE_PLURALS[s] for s in SHAPES[i:i + 2]) for i in range(0, len(SHAPES), 2)],
    "material": list(MATERIALS),
    "temperature": list(TEMPERATURES),
    "count": [str(n) for n in range(MIN_OBJECTS, MAX_OBJECTS + 1)],
    "letter": list(LETTERS),
    "value": [*SHAPES, *COLOURS, *SIZES, *(RELATIONS[d][2] for d in RELATIONS), *MATERIALS, *TEMPERATURES, "yes",
              "no", *LETTERS],
}


def _template_lines() -> Iterator[str]:
    formatter = string.Formatter()
    for template in TEMPLATES.values():
        slots = sorted({name for _, name, _, _ in formatter.parse(template) if name})
        rounds = max((len(_SLOT_VALUES[slot]) for slot in slots), default=1)
        for i in range(rounds):
            yield template.format(**{slot: _SLOT_VALUES[slot][i % len(_SLOT_VALUES[slot])] for slot in slots})


def _export_format_lines() -> Iterator[str]:
    """The official export formats' own words ("Options:", "(a)", "Question:"), with every option letter."""
    values = _SLOT_VALUES["value"]
    yield _mmstar_question(TEMPLATES["q_describe"], values[: len(LETTERS)])
    yield _mmvp_options(values[:2]) + " " + " ".join(_mmvp_letter(letter) for letter in LETTERS)
    yield _scienceqa_prompt(TEMPLATES["q_describe"], TEMPLATES["q_count"], values[: len(LETTERS)])


def vocabulary_corpus() -> str:
    """Text covering every word and template the generator can emit (one rendering per line).

    Train the tiny tokenizer on it (e.g. `LaReProcessor.tiny(extra_corpus=vocabulary_corpus())`) so that the
    benchmark's words become single tokens.
    """
    lines = [*_template_lines(), *_export_format_lines()]
    return "\n".join(dict.fromkeys(lines)).replace(IMAGE_MARKER + "\n", "") + "\n"


def synthetic_vocabulary() -> list[str]:
    """The sorted set of words and punctuation marks in `vocabulary_corpus()`."""
    return sorted(set(WORD_PATTERN.findall(vocabulary_corpus())))


WORD_PATTERN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
