"""The Edit panel's "Fast (LCM)" choice: on a few-step model (an LCM-LoRA, an LCM or a TCD checkpoint;
DiffusionModel.few_step) and for a method that holds up with the LCM sampler (Method.samplers), an
edit runs with LCM's timesteps at 4 steps and, where the method has a classifier-free guidance
field, a low guidance: few-step models are distilled for guidance near 1 (LCM-LoRA's authors
recommend 1 to 2; higher over-saturates)."""
from __future__ import annotations

from core.registry import Method

SAMPLER = "lcm"
STEPS = 4
GUIDANCE = 1.5
GUIDANCE_FIELD = "guidance"  # the classifier-free guidance scale, where a method has one


def offered(method: Method, few_step_model: bool) -> bool:
    return few_step_model and SAMPLER in method.samplers


def changes(method: Method) -> dict:
    """The form values Fast replaces."""
    names = {f.name for f in method.params.fields()}
    out = {"steps": STEPS}
    if GUIDANCE_FIELD in names:
        out[GUIDANCE_FIELD] = GUIDANCE
    return out


def note(method: Method) -> str:
    guidance = f", guidance {GUIDANCE:g}" if GUIDANCE_FIELD in changes(method) else ""
    return f"Fast: the LCM sampler at {STEPS} steps{guidance} (the form's values for these are not used)."
