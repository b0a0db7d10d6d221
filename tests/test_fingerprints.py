"""Image fingerprints survive re-encoding, resizing, small crops and grayscale; the picture check
tells those apart from another chart of the template and the same diagram with other letters."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from dataprep.fingerprints import (
    hamming,
    image_fingerprint,
    ngrams,
    normalized_answer,
    picture_difference,
)
from dataprep.fixtures import overlaps as planted
from dataprep.fixtures.draw import photo

PHASH_BITS = 6  # the recipe's default `image_distance`
PICTURE = 0.2  # the recipe's default `picture_difference`


def stored_chart(seed: int) -> bytes:
    rng = random.Random(seed)
    return planted.jpeg(planted.chart(rng, ["Kenya", "Peru", "Chile", "Oman"], [40, 75, 20, 90]), 90)


@pytest.mark.parametrize("how", list(planted.TRANSFORMS))
def test_a_planted_copy_keeps_its_hashes_close_and_its_picture(how: str) -> None:
    stored = stored_chart(0)
    original, copy = planted.decoded(stored), planted.decoded(planted.TRANSFORMS[how](stored))
    first, second = image_fingerprint(original), image_fingerprint(copy)
    assert hamming(first.phash, second.phash) <= PHASH_BITS
    assert hamming(first.dhash, second.dhash) <= 16
    assert picture_difference(original, copy) <= PICTURE


def test_another_chart_of_the_template_is_far() -> None:
    rng = random.Random(1)
    labels = ["Kenya", "Peru", "Chile", "Oman"]
    first, second = planted.chart(rng, labels, [40, 75, 20, 90]), planted.chart(rng, labels, [80, 15, 60, 30])
    assert picture_difference(first, second) > PICTURE


def test_the_same_diagram_with_other_letters_differs_in_its_labels() -> None:
    rng = random.Random(2)
    state = rng.getstate()
    first = planted.diagram(rng, "ABCD")
    rng.setstate(state)
    second = planted.diagram(rng, "WXYZ")
    assert hamming(image_fingerprint(first).phash, image_fingerprint(second).phash) <= PHASH_BITS
    assert picture_difference(first, second) > PICTURE


def test_pixels_are_equal_only_for_the_same_pixels() -> None:
    image = photo(random.Random(3), 64, 48)
    png = planted.decoded(planted.png(image))
    assert image_fingerprint(png).pixels == image_fingerprint(image).pixels
    assert (
        image_fingerprint(png.convert("P", palette=Image.Palette.WEB)).pixels
        != image_fingerprint(image).pixels
    )
    assert image_fingerprint(planted.decoded(planted.jpeg(image))).pixels != image_fingerprint(image).pixels


def test_grayscale_keeps_both_hashes_exactly() -> None:
    image = photo(random.Random(4), 96, 72)
    first, second = image_fingerprint(image), image_fingerprint(image.convert("L"))
    assert (first.phash, first.dhash) == (second.phash, second.dhash)


def test_ngrams_stay_within_a_line_and_ignore_case_and_punctuation() -> None:
    text = "<image>\nWhat is the VALUE of Peru, in 2010?\nAnswer briefly."
    assert ngrams(text, 4) == {
        "what is the value",
        "is the value of",
        "the value of peru",
        "value of peru in",
        "of peru in 2010",
        "answer briefly",
    }
    assert ngrams("", 4) == set()
    assert normalized_answer(" Forty-two. ") == "forty two"
