"""The character vocabulary of CTC checkpoints (Wav2Vec2CTCTokenizer: vocab.json, no tokenizer.json).

Decoding collapses repeated frames, drops the blank (the pad token) and turns the word delimiter
into a space; `decode_offsets` also gives each character's and word's frame span, as transformers'
`output_char_offsets` / `_get_word_offsets` do.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path


class CTCTokenizer:
    """Frame ids → text for CTC heads."""

    def __init__(self, folder: str | Path, config: dict):
        self.folder = Path(folder)
        vocab = json.loads((self.folder / "vocab.json").read_text(encoding="utf-8"))
        target = config.get("target_lang")
        self.vocab: dict[str, int] = vocab[target] if target else vocab
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.config = config
        self.pad_token = _content(config.get("pad_token", "<pad>"))
        self.unk_token = _content(config.get("unk_token", "<unk>"))
        self.word_delimiter_token = _content(config.get("word_delimiter_token", "|"))
        self.replace_word_delimiter_char = config.get("replace_word_delimiter_char", " ")
        self.do_lower_case = bool(config.get("do_lower_case", False))
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.pad_token_id = self.vocab.get(self.pad_token)

    def __len__(self) -> int:
        return len(self.vocab)

    def _tokens(self, ids) -> list[str]:
        return [self.id_to_token.get(int(i), self.unk_token) for i in ids]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.decode_offsets(ids)[0]

    def decode_offsets(self, ids) -> tuple[str, list[dict]]:
        """(text, [{"char", "start_offset", "end_offset"}]) with offsets in frames."""
        chars, offsets, start = [], [], 0
        for token, group in itertools.groupby(self._tokens(ids)):
            end = start + len(list(group))
            if token != self.pad_token:
                char = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
                chars.append(char)
                offsets.append({"char": char, "start_offset": start, "end_offset": end})
            start = end
        text = "".join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        if self.clean_up_tokenization_spaces:
            text = _clean_up(text)
        return text, offsets

    def word_offsets(self, char_offsets: list[dict]) -> list[dict]:
        """Group character spans into word spans at the delimiter character."""
        words = []
        for is_space, group in itertools.groupby(char_offsets, key=lambda o: o["char"] == self.replace_word_delimiter_char):
            if not is_space:
                group = list(group)
                words.append({"word": "".join(o["char"] for o in group), "start_offset": group[0]["start_offset"],
                              "end_offset": group[-1]["end_offset"]})
        return words

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
            if (self.folder / name).is_file():
                (folder / name).write_bytes((self.folder / name).read_bytes())


def _content(token) -> str:
    return token.get("content", "") if isinstance(token, dict) else str(token)


def _clean_up(text: str) -> str:
    text = re.sub(r" ([.?!,])", r"\1", text)
    for a, b in ((" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
