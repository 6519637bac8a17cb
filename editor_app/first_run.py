"""Text shown on first launch when no model beyond the built-in demo is set up. Plain text, no Qt:
the GUI shows it in a dialog, and the CLI or docs can print it."""

SD15_REPO_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"

FIRST_RUN_MODEL_HELP = f"""\
Malleable opened with its built-in demo model. The demo is tiny: it runs anywhere in seconds and
shows how each tool works, but its pictures are rough. For real edits, add Stable Diffusion 1.5.

Two ways to get it:

  1. Download it from Malleable: open Model > Choose model..., pick
     "{SD15_REPO_ID}" and press Download. Malleable fetches the
     weights from Hugging Face once (safetensors only, about 4 GB) and keeps them for next time.

  2. Use a file you already have: open Model > Choose model... > Open file... and select a
     Stable Diffusion 1.5 checkpoint in .safetensors format (the kind you download from model
     sites, for example v1-5-pruned-emaonly.safetensors, or a fine-tune of SD 1.5). It loads
     offline. Pickle checkpoints (.ckpt) are refused by default because they can run code.

What it needs:

  - About 4 GB of free disk space for the model.
  - A graphics card (NVIDIA) with 6 GB of memory or more is recommended; Apple Silicon Macs
    also work. Without one, edits run on the processor: they work, but take minutes, not seconds.

You can switch models at any time from the Model menu; the demo model always stays available."""
