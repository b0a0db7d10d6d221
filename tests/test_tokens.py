"""Token counts per sample with a recipe's tokenizer.json."""

from __future__ import annotations

from tokenizers import Tokenizer

from dataprep.files import sha256_file
from dataprep.fixtures.tokenizer import write_tokenizer
from dataprep.tokens import TokenCounter, TokenSettings, tokenizer_file

TEXTS = ["What is in the picture?", "A red square and a blue circle.", "Say hi.", "hi"]


def test_counts_every_turn_without_the_image_placeholder_plus_tokens_per_image(tmp_path):
    file = write_tokenizer(tmp_path / "tok" / "tokenizer.json", TEXTS)
    document = {
        "images": ["jpg", "1.jpg"],
        "conversations": [
            {"from": "human", "value": "<image>\n<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": "A red square and a blue circle."},
        ],
    }
    tokenizer = Tokenizer.from_file(str(file))
    text_tokens = len(tokenizer.encode("\n\nWhat is in the picture?", add_special_tokens=False).ids) + len(
        tokenizer.encode("A red square and a blue circle.", add_special_tokens=False).ids
    )
    without_images = TokenCounter(TokenSettings(str(file), sha256_file(file), 0))
    with_images = TokenCounter(TokenSettings(str(file), sha256_file(file), 256))
    text_only = {"images": [], "conversations": [{"from": "human", "value": "Say hi."}]}
    say_hi = len(tokenizer.encode("Say hi.", add_special_tokens=False).ids)
    assert without_images.count_all([document, text_only]) == [text_tokens, say_hi]
    assert with_images.count_all([document, text_only]) == [text_tokens + 2 * 256, say_hi]


def test_a_folder_stands_for_the_tokenizer_json_inside_it(tmp_path):
    file = write_tokenizer(tmp_path / "model" / "tokenizer.json", TEXTS)
    assert tokenizer_file(tmp_path / "model") == file
    assert tokenizer_file(file) == file
