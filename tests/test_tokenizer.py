"""The shipped CLIP tokenizer files give the ids SD 1.x text encoders were trained with."""
import json

import pytest
from transformers import CLIPTokenizer

from resources import resource_path

FOLDERS = [resource_path("tokenizer", "clip"), resource_path("configs", "stable-diffusion-v1-5", "tokenizer")]


@pytest.fixture(scope="module", params=FOLDERS, ids=["tokenizer/clip", "sd15/tokenizer"])
def tokenizer(request):
    return CLIPTokenizer.from_pretrained(request.param)


def test_known_ids(tokenizer):
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # CLIP lower-cases and cleans whitespace before BPE
    assert tokenizer("A  Photo OF a CAT").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_max_length_padding_and_truncation(tokenizer):
    assert tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == 49407 and tokenizer.bos_token_id == 49406
    ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True).input_ids[0]
    assert len(ids) == 77
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids[7:] == [49407] * 70
    long = tokenizer(["cat " * 200], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407 and long[1:-1] == [2368] * 75


def test_files_are_complete():
    for folder in FOLDERS:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        assert len(vocab) == 49408
        assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
        merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894
    a, b = FOLDERS
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
