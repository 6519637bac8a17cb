"""`reconstruct`: invert the image, then regenerate it with the same prompt. The plainest method,
it runs the whole engine path end to end and shows how close inversion gets to the input."""
from __future__ import annotations

from dataclasses import dataclass

from ...context import EditContext, MethodOutput
from ...params import MethodParams, param
from ...registry import Method, register
from ...sampling import denoise, invert_cached
from ...unet_calls import unet_forward, vae_decode


@dataclass(frozen=True, kw_only=True)
class ReconstructParams(MethodParams):
    prompt: str = param("", "What the image shows (optional): inversion and regeneration both use it.",
                        kind="text", label="Picture shows")


def run(ctx: EditContext, p: ReconstructParams) -> MethodOutput:
    schedule = ctx.schedule(p.steps)
    traj = invert_cached(ctx, schedule, p.prompt)
    cond = ctx.model.encode_text(p.prompt)
    latent = denoise(ctx.model, schedule, traj.noisiest,
                     lambda x, i, t: unet_forward(ctx.model, x, t, cond), ctx.reporter, stage="regenerate")
    ctx.reporter.stage("decode", 1)
    return MethodOutput(vae_decode(ctx.model, latent))


METHOD = register(Method(
    name="reconstruct", label="Reconstruct — invert and regenerate: a check of the engine (DDIM inversion)",
    diagnostic=True,
    params=ReconstructParams, run=run, samplers=("ddim", "lcm", "tcd"),
    stages=("invert", "regenerate"),
    description="Invert the image with DDIM and regenerate it: a check of the engine, and a baseline."))
