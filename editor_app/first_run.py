"""Text shown on first launch when no model beyond the built-in demo is set up. Plain text, no Qt:
the GUI shows it in a dialog, and the CLI or docs can print it."""

SD15_REPO_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"

# One line per paragraph: the dialog wraps them to its width (hard breaks made ragged lines).
FIRST_RUN_MODEL_HELP = "\n\n".join([
    "Malleable opened with its built-in demo model. The demo is tiny: it runs anywhere in seconds and "
    "shows how each tool works, but it only knows simple coloured shapes: on photos its results are "
    "abstract. For real edits, add Stable Diffusion 1.5. Two ways to get it:",

    "1. Download it from Malleable: choose File ▸ Model…, pick “Download from Hugging Face:” (it is "
    f"filled in with {SD15_REPO_ID}) and press “Load”. Malleable fetches the weights from Hugging Face "
    "once (safetensors only, about 4 GB) and keeps them for next time; the status bar shows the "
    "download and can cancel it.",

    "2. Use a file you already have: choose File ▸ Model…, pick “A checkpoint file (.safetensors):”, "
    "press “Browse…”, select a Stable Diffusion 1.5 checkpoint in .safetensors format (the kind you "
    "download from model sites, for example v1-5-pruned-emaonly.safetensors, or a fine-tune of SD 1.5) "
    "and press “Load”. It loads offline. Pickle checkpoints (.ckpt) are refused unless you tick "
    "“Allow pickle checkpoints”, because they can run code.",

    "What it needs: about 4 GB of free disk space for the model, and a graphics card (NVIDIA) with "
    "6 GB of memory or more is recommended (tick “Low VRAM” in File ▸ Model… on a small one); Apple "
    "Silicon Macs also work. Without one, edits run on the processor: they work, but take minutes, "
    "not seconds.",

    "You can switch models at any time from File ▸ Model…; the demo model always stays available there "
    "(“Built-in demo model”).",
])
