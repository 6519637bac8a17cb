"""Prompt-to-Prompt's local blending (Hertz et al. 2022, `LocalBlend`; StyleDiffusion's official
editing passes it for every word-swap edit): keep everything but the edited words' region.

While the target is generated, the cross-attention maps of the edited words are summed over the
steps: the source word's in the source branch, the target word's in the target branch. From a
fifth of the steps on, after every step, the target latent outside their union is reset to the
source's:

    m = maxpool(Σ maps of the words, mean over layers and heads)   (the official 3×3 at 16×16)
    mask = (m − min m) / (max m − min m) > 0.3
    x_target ← x_source + mask · (x_target − x_source)

The official divides by the maximum only. SD's word maps fall to about 0 away from the word, so
both agree there; a smaller text encoder's maps keep a floor everywhere (the demo's sit at 20-40 %
of their peak over the whole picture), and the max-only rule then marks the whole latent editable.
Measured from the floor, the threshold means the same share of the map's range on any model.

The official reads the maps of SD 1.x's 16×16 cross-attention layers (a quarter of the 64² latent
at 512 px). Here the grid is a quarter of the latent's side too, but never under 8 cells on the
long side: at 4×4 (a 64 px picture's quarter) one cell is a quarter of the picture and the mask
cannot tell an object from its surroundings. So SD 1.x at 512 px reads the official layers, and
smaller latents read the next finer level.

A word's map that marks no place is left out of the union: when its floor is above half its peak
(after the pool), every cell draws at least half the attention of the best one, and stretching that
map from floor to peak turns its noise into a mask. This happens when the model spreads the new
word over the whole picture ("a red shape" → "a blue shape" with two shapes: the target's "blue"
sits at 68 % of its peak everywhere and would free 80 % of the latent, where the source's "red"
marks the star), which is exactly the repaint the blend is there to stop. SD's localised maps fall to
about 0 away from the word, the demo's to 20–47 % of their peak, so a word that is somewhere is
never left out; when every map is flat, the union of all of them stands (the edit is global).

`LocalBlend` is an attention hook (the recording) with a `blend` step (the reset); the method
tells it, per call, which batch rows are the target and the source conditional branches."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .attention import AttentionHook, AttnCall

THRESHOLD = 0.3        # the official threshold on the max-normalised map
START = 0.2            # the official start: blending begins after this share of the steps
OFFICIAL_FACTOR = 4    # SD 1.x at 512 px: 16×16 maps of a 64×64 latent
MIN_CELLS = 8          # never coarser than this many cells on the latent's long side
FLAT = 0.5             # a map whose floor is above this share of its peak marks no place


def blend_factor(latent_hw: tuple[int, int], factors: Sequence[int]) -> Optional[int]:
    """The downsampling factor of the layers whose maps make the mask: the coarsest of `factors`
    (those the UNet's cross-attention layers have) up to the official quarter of the latent's side
    that leaves ≥ MIN_CELLS cells (see the module's note); the finest when none does; None
    without cross-attention."""
    long = max(latent_hw)
    fitting = [f for f in sorted(set(factors)) if f <= OFFICIAL_FACTOR and long / f >= MIN_CELLS]
    return fitting[-1] if fitting else (min(factors) if factors else None)


def token_positions(ids: Sequence[int], word_ids: Sequence[int]) -> list[int]:
    """Positions in a tokenized prompt where the word's tokens occur as a run (every occurrence)."""
    n = len(word_ids)
    out: list[int] = []
    if not n:
        return out
    for j in range(len(ids) - n + 1):
        if list(ids[j: j + n]) == list(word_ids):
            out.extend(range(j, j + n))
    return out


def swapped_positions(source_ids: Sequence[int], target_ids: Sequence[int]) -> list[int]:
    """For two prompts of the same token count (a word swap): the positions whose tokens differ."""
    return [j for j, (a, b) in enumerate(zip(source_ids, target_ids)) if a != b]


def content_length(ids: Sequence[int], eos: int) -> int:
    """Number of tokens between BOS and the first EOS."""
    for j in range(1, len(ids)):
        if ids[j] == eos:
            return j - 1
    return len(ids) - 1


def lcs_pairs(a: Sequence[int], b: Sequence[int]) -> list[tuple[int, int]]:
    """Index pairs (i in a, j in b) of a longest common subsequence."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def changed_positions(source_ids: Sequence[int], target_ids: Sequence[int], eos: int) -> tuple[list[int], list[int]]:
    """For two prompts of any lengths: the content tokens (between BOS and EOS) of each that the
    other lacks, by longest common subsequence: what a user's rewording changed ("a red circle"
    → "a large blue circle": source "red", target "large blue")."""
    ns, nt = content_length(source_ids, eos), content_length(target_ids, eos)
    kept = lcs_pairs(list(source_ids[1: 1 + ns]), list(target_ids[1: 1 + nt]))
    src_kept = {1 + i for i, _ in kept}
    tgt_kept = {1 + j for _, j in kept}
    return ([j for j in range(1, 1 + ns) if j not in src_kept],
            [j for j in range(1, 1 + nt) if j not in tgt_kept])


def changed_prompt_positions(model, source_prompt: str, prompt: str) -> tuple[list[int], list[int], int]:
    """`changed_positions` of two prompts through the model's tokenizer (a DiffusionModel), and the
    tokenized length (the text-token axis of the cross-attention maps)."""
    ids = model.tokenize([source_prompt, prompt])
    src, tgt = changed_positions(ids[0].tolist(), ids[1].tolist(), model.tokenizer.eos_token_id)
    return src, tgt, int(ids.shape[1])


def marks_a_place(word_map: torch.Tensor) -> bool:
    """Whether a (pooled) word map is localised: its floor under FLAT of its peak (module note)."""
    return float(word_map.amin()) < FLAT * float(word_map.amax())


def cross_attention_factors(unet) -> list[int]:
    """The latent downsampling factors at which the UNet has cross-attention (1 = full latent size):
    one per down level with cross-attention (the up levels mirror them)."""
    return [2 ** i for i, kind in enumerate(unet.config.down_block_types) if "CrossAttn" in kind]


class LocalBlend(AttentionHook):
    """Records the edited words' cross-attention maps and blends the target latent with the source's.

    source_tokens / target_tokens: token positions of the words in each prompt. factor: the
    downsampling factor of the layers read (`blend_factor`). steps: the sampling steps (blending
    starts after START of them). The method sets `rows = (target row, source row or None)` of the
    UNet batch before every call it wants recorded, or None to record nothing (e.g. once the
    source branch has left the batch, its summed map is kept as it was)."""

    def __init__(self, source_tokens: Sequence[int], target_tokens: Sequence[int], latent_hw: tuple[int, int],
                 factor: int, steps: int, threshold: float = THRESHOLD, start: float = START):
        if not source_tokens and not target_tokens:
            raise ValueError("LocalBlend needs the token positions of at least one word")
        self.source_tokens = list(source_tokens)
        self.target_tokens = list(target_tokens)
        self.latent_hw = (int(latent_hw[0]), int(latent_hw[1]))
        self.factor = int(factor)
        h, w = self.latent_hw
        for _ in range(int(math.log2(self.factor))):  # each level halves the side, rounding up
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.grid = (h, w)
        # The official 3×3 max-pool widens the mask by one cell of 16, a 16th of the picture;
        # the radius keeps that reach on other grids (none on an 8-cell grid, where one cell is 8th).
        self.pool_radius = max(h, w) // 16
        self.threshold = threshold
        self.start_step = int(start * steps)
        self.rows: Optional[tuple[int, Optional[int]]] = None
        self.sums: dict[str, torch.Tensor] = {}    # "source"/"target" -> [h, w] summed map
        self.last_mask: Optional[torch.Tensor] = None
        self.last_flat: list[str] = []              # the maps the last mask left out (no place marked)

    @classmethod
    def for_unet(cls, unet, source_tokens: Sequence[int], target_tokens: Sequence[int],
                 latent_hw: tuple[int, int], steps: int) -> "LocalBlend":
        """Reading the maps of the UNet's level that `blend_factor` picks for this latent."""
        return cls(source_tokens, target_tokens, latent_hw, blend_factor(latent_hw, cross_attention_factors(unet)),
                   steps)

    def report(self) -> dict:
        """What the method's info says of it."""
        return {"factor": self.factor, "grid": list(self.grid), "editable_share": self.coverage(),
                "flat_maps_left_out": list(self.last_flat)}

    # ---- recording (an attention hook) ---------------------------------------------------------
    def applies(self, call: AttnCall) -> bool:
        return (self.rows is not None and call.layer.is_cross and call.layer.place != "mid"
                and call.tokens == self.grid[0] * self.grid[1])

    def wants_probs(self, call: AttnCall) -> bool:
        return True

    def probs(self, call: AttnCall, p: torch.Tensor) -> torch.Tensor:
        target_row, source_row = self.rows
        for name, row in (("target", target_row), ("source", source_row)):
            if row is None:
                continue
            self.add(name, p[row].mean(0))  # averaged over heads: [N, text tokens]
        return p

    def add(self, name: str, head_mean: torch.Tensor) -> None:
        """Adds one layer's head-averaged map [N, text tokens] of branch `name` ("source"/"target"):
        the words' tokens summed. Maps recorded elsewhere (a reference pass) come in here too."""
        tokens = self.target_tokens if name == "target" else self.source_tokens
        if not tokens or head_mean.shape[-2] != self.grid[0] * self.grid[1]:
            return
        m = head_mean[..., tokens].sum(-1).float().detach().view(self.grid)
        self.sums[name] = self.sums[name] + m.to(self.sums[name]) if name in self.sums else m

    # ---- blending --------------------------------------------------------------------------------
    def mask(self) -> Optional[torch.Tensor]:
        """[1, 1, H, W] latent-size 0/1 mask: the union of the words' thresholded maps, those that
        mark no place left out unless all do (None before anything was recorded)."""
        k = self.pool_radius
        pooled = {name: F.max_pool2d(m[None, None], 2 * k + 1, stride=1, padding=k) if k else m[None, None]
                  for name, m in self.sums.items()}
        placed = {name: m for name, m in pooled.items() if marks_a_place(m)}
        self.last_flat = [name for name in pooled if name not in placed] if placed else []
        union = None
        for m in (placed or pooled).values():
            m = F.interpolate(m, size=self.latent_hw, mode="nearest")
            m = (m - m.amin()) / (m.amax() - m.amin()).clamp_min(1e-12)
            m = (m > self.threshold).float()
            union = m if union is None else torch.maximum(union, m)
        return union

    def blend(self, x_target: torch.Tensor, x_source: torch.Tensor, step: int) -> torch.Tensor:
        """The target latent after step `step`, reset to `x_source` outside the words' region."""
        if step < self.start_step:
            return x_target
        m = self.mask()
        if m is None:
            return x_target
        self.last_mask = m
        return torch.where(m.to(x_target.device) > 0, x_target, x_source.to(x_target))  # exact on both sides

    def after_step(self, traj, then: Optional[Callable] = None, rows: Optional[int] = None) -> Callable:
        """A `denoise` after_step: the first `rows` batch items (all when None) blended against the
        trajectory at the next step, then `then` (e.g. the user's mask, keep_outside_trajectory)."""
        def after(x_prev: torch.Tensor, i: int) -> torch.Tensor:
            n = x_prev.shape[0] if rows is None else rows
            x_prev = torch.cat([self.blend(x_prev[:n], traj.at(i + 1).to(x_prev), i), x_prev[n:]])
            return then(x_prev, i) if then is not None else x_prev
        return after

    def coverage(self) -> Optional[float]:
        """The share of the latent the last blend kept editable (reported in the method's info)."""
        return None if self.last_mask is None else float(self.last_mask.mean())
