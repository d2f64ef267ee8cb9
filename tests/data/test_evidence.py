"""lare.data.evidence: evidence boxes mapped onto the patch grid, and the collator's evidence_mask."""

from __future__ import annotations

from PIL import Image

from lare.data.collate import LaReCollator
from lare.data.dataset import Sample
from lare.data.evidence import box_cells, evidence_cells

GRID = (4, 4)  # 16 px cells on a 64 px image


def _marked(mask) -> list[int]:
    return mask.nonzero().flatten().tolist()


def test_a_box_inside_one_cell_marks_that_cell_only():
    assert _marked(box_cells([20, 2, 28, 10], (64, 64), GRID)) == [1]  # row 0, column 1


def test_a_box_larger_than_a_cell_marks_every_cell_it_overlaps():
    # 24×8 px across columns 0-1: no single cell holds half of it, so both overlapped cells are marked.
    assert _marked(box_cells([4, 2, 28, 10], (64, 64), GRID)) == [0, 1]


def test_centre_crop_shifts_the_grid():
    # A 128×64 image is centre-cropped to its middle 64×64: the grid starts 32 px in.
    assert _marked(box_cells([34, 2, 42, 10], (128, 64), GRID)) == [0]
    assert _marked(box_cells([34, 2, 42, 10], (128, 64), GRID, centre_crop=False)) == [1]


def test_evidence_cells_keep_one_row_per_box_in_order():
    cells = evidence_cells([[50, 50, 60, 60], [20, 2, 28, 10]], (64, 64), GRID)
    assert cells.shape == (2, 16)
    assert _marked(cells[0]) == [15] and _marked(cells[1]) == [1]
    assert evidence_cells(None, (64, 64), GRID).shape == (0, 16)


def test_collator_evidence_mask_follows_each_sample(tiny_processor):
    image = Image.new("RGB", (64, 64), (245, 245, 240))
    side = int(tiny_processor.num_image_tokens ** 0.5)
    cell = 64 // side
    two_boxes = Sample(id="b", image=image, question="<image>\nWhere is the red object?", target="Left.",
                       rationale="Find the red object.", answer="left",
                       boxes=[[cell + 1, 1, 2 * cell - 1, cell - 1], [1, cell + 1, cell - 1, 2 * cell - 1]])
    without_box = Sample(id="n", image=image, question="<image>\nDescribe the image.", target="Three objects.")
    text_only = Sample(id="t", image=None, question="What is a circle?", target="A round shape.")
    mask = LaReCollator(tiny_processor)([two_boxes, without_box, text_only])["evidence_mask"]
    assert mask.shape == (3, 2, tiny_processor.num_image_tokens)
    assert _marked(mask[0, 0]) == [1]  # row 0, column 1 of the patch grid
    assert _marked(mask[0, 1]) == [side]  # row 1, column 0
    assert mask[1:].eq(0).all()
