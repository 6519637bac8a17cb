"""Write the CLIP BPE tokenizer files (Hugging Face layout) from open_clip's BPE merge list.

    python -m tools.build_tokenizer_files [path/to/bpe_simple_vocab_16e6.txt.gz]

The merge list ships inside the open_clip_torch wheel (`pip download --no-deps open_clip_torch`,
then unzip open_clip/bpe_simple_vocab_16e6.txt.gz). The vocabulary is built exactly as CLIP's
SimpleTokenizer builds it, so ids match the text encoder every SD 1.x model was trained with.
Writes resources/tokenizer/clip/ and a copy in resources/configs/stable-diffusion-v1-5/tokenizer/.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "tokenizer" / "clip"
COPIES = [ROOT / "resources" / "configs" / "stable-diffusion-v1-5" / "tokenizer"]
DEFAULT_BPE = Path("/tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # CLIP keeps this many merges: 256 bytes x2 + merges + 2 specials = 49408


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build(bpe_gz: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise SystemExit(f"{bpe_gz} does not look like CLIP's BPE merge list")
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [BOS, EOS]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    if len(encoder) != 49408:
        raise SystemExit(f"vocabulary has {len(encoder)} entries, expected 49408")
    return encoder, merges


def _special(tok: str) -> dict:
    return {"content": tok, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write(out: Path, encoder: dict[str, int], merges: list[tuple[str, str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                    encoding="utf-8")
    specials = {"bos_token": _special(BOS), "eos_token": _special(EOS), "pad_token": EOS,
                "unk_token": _special(EOS)}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    config = {
        "add_prefix_space": False,
        "bos_token": _special(BOS),
        "do_lower_case": True,
        "eos_token": _special(EOS),
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": _special(EOS),
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bpe", nargs="?", type=Path, default=DEFAULT_BPE, help="bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    encoder, merges = build(args.bpe)
    write(args.out, encoder, merges)
    if args.out == OUT:
        for dest in COPIES:
            dest.mkdir(parents=True, exist_ok=True)
            for f in OUT.iterdir():
                shutil.copyfile(f, dest / f.name)
    print(f"wrote {len(encoder)} tokens and {len(merges)} merges to {args.out}")


if __name__ == "__main__":
    main()
