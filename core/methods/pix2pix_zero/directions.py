"""Edit directions in text-embedding space (pix2pix-zero): Δc = mean(encoder outputs over sentences
with the target word) − mean(over sentences with the source word), on the full [77, D] output.

The sentences come from the shipped template bank (resources/sentences/templates.txt, written by
tools/make_sentence_bank.py): each template has one `{}` slot, so any word or short phrase gets the
same ~1,000 varied sentences. A model folder may ship its own bank (`sentences.txt` beside
model_index.json, same format) written in the language its text encoder was trained on; the paper
likewise generates the sentences for the domain. The embedded demo model does: its encoder has only
ever read ShapesWorld captions. Word means are computed in batches and cached per (model, bank,
word); directions per (model, bank, word pair)."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from resources import resource_path

from ...cache import LRUCache
from ...conditioning import Conditioning
from ...errors import InvalidInput
from ...models import DiffusionModel

BANK_PATH = resource_path("sentences", "templates.txt")
MODEL_BANK_NAME = "sentences.txt"  # a model folder's own bank, used instead of BANK_PATH
BATCH = 64
_A_SLOT = re.compile(r"\b([Aa]) \{\}")


@functools.lru_cache(maxsize=4)
def load_templates(path: Path = BANK_PATH) -> tuple[str, ...]:
    """The bank's templates (comment lines start with '#')."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidInput(f"The sentence bank {path} cannot be read ({e.strerror}): reinstall Malleable.") from e
    templates = tuple(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InvalidInput(f"The sentence bank {path} is malformed (every line needs one '{{}}'): reinstall Malleable.")
    return templates


def bank_path(model: DiffusionModel) -> Path:
    """The bank for `model`: its folder's own `sentences.txt` when it ships one, else the generic bank."""
    if model.root is not None and (Path(model.root) / MODEL_BANK_NAME).is_file():
        return Path(model.root) / MODEL_BANK_NAME
    return BANK_PATH


def sentences_for(word: str, templates: Optional[Sequence[str]] = None) -> list[str]:
    """The bank's sentences with `word` in the slot ('a {}' becomes 'an {}' before a vowel)."""
    word = " ".join(word.split())
    templates = load_templates() if templates is None else templates
    vowel = word[:1].lower() in "aeiou"
    out = []
    for t in templates:
        if vowel:
            t = _A_SLOT.sub(lambda m: m.group(1) + "n {}", t)
        out.append(t.replace("{}", word))
    return out


def word_token_ids(tokenizer, word: str) -> list[int]:
    """The tokenizer's ids for `word` alone, or InvalidInput when it is empty or unknown to it."""
    clean = " ".join(str(word or "").split())
    if not clean:
        raise InvalidInput("The edit word is empty: type a word such as 'cat' or 'dog'.")
    ids = list(tokenizer(clean, add_special_tokens=False).input_ids)
    unk = getattr(tokenizer, "unk_token_id", None)
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    if not ids:
        raise InvalidInput(f"The word {word!r} gives the text encoder nothing to read: type a plain word.")
    if all(i == unk or i in specials for i in ids):
        raise InvalidInput(f"The word {word!r} is unknown to this model's tokenizer: type a plain word "
                           "(letters, digits).")
    return ids


def check_word_pair(tokenizer, source_word: str, target_word: str) -> None:
    """Raise InvalidInput for an empty/unknown word or two words the encoder cannot tell apart."""
    a = word_token_ids(tokenizer, source_word)
    b = word_token_ids(tokenizer, target_word)
    if a == b:
        raise InvalidInput(f"The source and target words are the same ({source_word!r}): choose a different "
                           "target word (e.g. cat -> dog).")


@torch.no_grad()
def mean_embedding(model: DiffusionModel, sentences: Sequence[str], batch: int = BATCH,
                   check: Optional[Callable[[], None]] = None) -> Conditioning:
    """Mean conditioning (one row: embeddings [1, 77, D], and the pooled embedding where the family
    has one; float32) over `sentences`, encoded `batch` at a time.

    Encodes without model.encode_text's cache, so the bank does not flood the prompt cache."""
    embeds = pooled = None
    for s in range(0, len(sentences), batch):
        out = model.encode_uncached(list(sentences[s: s + batch])).float()
        part = out.embeds.sum(0, keepdim=True)
        embeds = part if embeds is None else embeds + part
        if out.pooled is not None:
            part = out.pooled.sum(0, keepdim=True)
            pooled = part if pooled is None else pooled + part
        if check is not None:
            check()
    n = len(sentences)
    return Conditioning(embeds / n, None if pooled is None else pooled / n)


def _word_key(model: DiffusionModel, word: str) -> tuple:
    templates = load_templates(bank_path(model))
    return (model.model_id, str(model.device), " ".join(word.split()), len(templates), hash(templates))


def word_embedding(model: DiffusionModel, word: str, cache: Optional[LRUCache] = None,
                   check: Optional[Callable[[], None]] = None) -> Conditioning:
    """Mean embedding of the bank's sentences for `word` (cached per model and word)."""
    key = ("word",) + _word_key(model, word)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    emb = mean_embedding(model, sentences_for(word, load_templates(bank_path(model))), check=check)
    if cache is not None:
        cache.put(key, emb)
    return emb


def edit_direction(model: DiffusionModel, source_word: str, target_word: str,
                   cache: Optional[LRUCache] = None, check: Optional[Callable[[], None]] = None) -> Conditioning:
    """Δc (one row, [1, 77, D] embeddings and the pooled difference where there is one; float32 on
    the model's device), from `source_word` towards `target_word`.

    Validates the words (InvalidInput) first. With a cache, a second call for the same model and
    pair (or a pair sharing a word) runs no text-encoder pass for what is already known."""
    check_word_pair(model.tokenizer, source_word, target_word)
    key = ("pair",) + _word_key(model, source_word) + _word_key(model, target_word)[2:]
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    src = word_embedding(model, source_word, cache, check)
    tgt = word_embedding(model, target_word, cache, check)
    direction = tgt - src
    if cache is not None:
        cache.put(key, direction)
    return direction
