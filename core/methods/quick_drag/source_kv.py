"""Denoising the warped latent with the source picture's self-attention keys and values (FastDrag's
consistency-preserving step; MasaCtrl's mutual self-attention): in the high-resolution decoder the
edited latent's queries look up the source's keys and read the source's values, so the moved content
keeps its look and the uncovered area is drawn from what the picture already holds.

The source branch is teacher-forced on the inversion trajectory (its input at step i is the inverted
latent at step i), so its keys and values at a step depend only on the picture, the model, the prompt
and the schedule, never on the points. They are recorded the first time a step runs (one pass at
batch 2: [edit, source]) and replayed afterwards (batch 1): a second drag of the same picture (live
dragging) pays one UNet pass per step. A step counts as recorded only once its pass has finished, so
a run cancelled half-way leaves only complete steps behind, each valid for any later drag."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...attention import attention_hooks
from ...events import Reporter
from ...layer_maps import layer_map
from ...models import DiffusionModel
from ...reference_attention import ReferenceAttention, reference_blocks
from ...sampling import Trajectory, denoise
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward


class SourceKV:
    """Recorded keys and values: kv[(step, layer name)] = (k, v), each [1, heads, tokens, dim]."""

    def __init__(self) -> None:
        self.kv: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.steps: set[int] = set()

    def __len__(self) -> int:
        return len(self.steps)


class SourceKVHook(ReferenceAttention):
    """Reference attention whose reference is the source branch: batch item 1 while recording (its
    keys and values are stored), the store while replaying."""

    def __init__(self, blocks: frozenset[int], store: SourceKV):
        super().__init__(blocks, reference=1)
        self.store = store
        self.step = 0
        self.recording = False

    def qkv(self, call, q, k, v):
        key = (self.step, call.layer.name)
        if self.recording:
            ks, vs = k[1:2].clone(), v[1:2].clone()
            self.store.kv[key] = (ks, vs)
        else:
            ks, vs = self.store.kv[key]
        return q, ks.expand_as(k), vs.expand_as(v)


def denoise_with_source_kv(model: DiffusionModel, schedule: DDIMSchedule, start: int, edited: torch.Tensor,
                           traj: Trajectory, cond: torch.Tensor, store: Optional[SourceKV],
                           after_step: Optional[Callable] = None,
                           reporter: Optional[Reporter] = None) -> torch.Tensor:
    """Denoise `edited` [1,C,h,w] from timesteps[start] to the clean latent. With a `store`, the
    high-resolution decoder's self-attention reads the source's keys and values (recorded into the
    store on first use); without one, it is plain DDIM sampling."""
    if store is None:
        return denoise(model, schedule, edited, lambda x, i, t: unet_forward(model, x, t, cond), reporter,
                       start_index=start, stage="denoise", after_step=after_step)
    hook = SourceKVHook(reference_blocks(model.unet, layer_map(model)), store)
    cond2 = cond.expand(2, -1, -1)

    def predict(x: torch.Tensor, i: int, t: int) -> torch.Tensor:
        hook.step = i
        hook.recording = i not in store.steps
        if not hook.recording:
            return unet_forward(model, x, t, cond)
        out = unet_forward(model, torch.cat([x, traj.at(i).to(x)]), t, cond2)
        store.steps.add(i)
        return out[:1]

    with attention_hooks(model.unet, hook):
        return denoise(model, schedule, edited, predict, reporter, start_index=start, stage="denoise",
                       after_step=after_step)
