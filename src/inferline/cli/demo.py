"""The README demo: sentence embeddings and their cosine similarities, offline."""

from __future__ import annotations

HELP = "embed a few sentences offline and print their similarities"

DEFAULT_SENTENCES = [
    "A man is eating food.",
    "Someone is having a meal.",
    "The new movie is awesome.",
    "A cheetah is running behind its prey.",
]


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("sentences", nargs="*")


def main(args) -> int:
    return run_demo(args.model, args.sentences)


def run_demo(model: str, sentences: list[str]) -> int:
    import torch

    from ..factory import pipeline

    sentences = sentences or DEFAULT_SENTENCES
    embed = pipeline("feature-extraction", model=model, device="cpu")
    vectors = torch.tensor(embed(sentences, pooling="auto", normalize=True, batch_size=8))
    similarity = vectors @ vectors.T
    print(f"{model}: {vectors.shape[0]} sentences → {vectors.shape[1]}-dimensional embeddings\n")
    width = max(len(s) for s in sentences)
    for i, sentence in enumerate(sentences):
        row = "  ".join(f"{similarity[i, j]:.3f}" for j in range(len(sentences)))
        print(f"{sentence:<{width}}  {row}")
    best = max(((i, j) for i in range(len(sentences)) for j in range(i + 1, len(sentences))),
               key=lambda ij: similarity[ij])
    print(f"\nMost similar: {sentences[best[0]]!r} ~ {sentences[best[1]]!r} ({similarity[best]:.3f})")
    return 0
