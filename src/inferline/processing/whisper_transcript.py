"""Whisper token sequences (one per audio window) → text and timestamped chunks.

The semantics of transformers 4.57.6's `_decode_asr`: timestamp tokens open and close segments
(time = (id - first timestamp id) * time_precision, plus the window's offset); windows cut with a
stride are merged where their token sequences overlap best; language tokens set each chunk's language.
"""

from __future__ import annotations

import numpy as np

from .whisper_languages import LANGUAGES


def merge_overlapping(sequences: list[list[int]]) -> list[int]:
    """Join token lists that overlap at their ends: each join cuts at the middle of the best-matching overlap."""
    left = list(sequences[0])
    merged: list[int] = []
    for right in sequences[1:]:
        best, cut = 0.0, (len(left), len(left), 0, 0)
        for shift in range(1, len(left) + len(right)):
            l0, l1 = max(0, len(left) - shift), min(len(left), len(left) + len(right) - shift)
            r0, r1 = max(0, shift - len(left)), min(len(right), shift)
            matches = int(np.sum(np.array(left[l0:l1]) == np.array(right[r0:r1])))
            score = matches / shift + shift / 10000.0  # later overlaps win ties
            if matches > 1 and score > best:
                best, cut = score, (l0, l1, r0, r1)
        l0, l1, r0, r1 = cut
        merged.extend(left[: (l0 + l1) // 2])
        left = list(right[(r0 + r1) // 2:])
    return merged + left


class _Chunk(dict):
    def __init__(self, language):
        super().__init__(language=language, timestamp=[None, None], text="")


def transcript(tokenizer, outputs: list[dict], return_timestamps, return_language, time_precision: float,
               segment_size: int = 1500, language_ids=()) -> tuple[str, dict]:
    """outputs: per window {"tokens": (1, T) generated ids, optionally "stride": (length, left, right) in s};
    `language_ids` are the language tokens (special even where the tokenizer does not list them)."""
    first_stamp = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
    special = set(tokenizer.all_special_ids) | set(language_ids)
    language = None
    chunks: list[dict] = []
    chunk = _Chunk(None)
    offset = 0.0
    pending: list[list[int]] = []  # token runs of the open chunk, one per window
    skip = False

    def close(chunk):
        chunk["text"] = tokenizer.decode(merge_overlapping(pending))
        chunks.append(chunk)

    for output in outputs:
        ids = output["tokens"][0].tolist()
        last_allowed, first_allowed = None, first_stamp
        top, previous_top, earlier_segments = 0.0, 0.0, 0.0
        if "stride" in output:
            window, left, right = output["stride"]
            offset -= left
            right_start = window - right
            if left:
                first_allowed = left / time_precision + first_stamp
            if right:  # the last timestamp before the right stride ends what this window may contribute
                for token in reversed(ids):
                    if token >= first_stamp:
                        if last_allowed is not None and (token - first_stamp) * time_precision < right_start:
                            break
                        last_allowed = token
        run: list[int] = []
        for i, token in enumerate(ids):
            if token in special:
                name = LANGUAGES.get((tokenizer.convert_ids_to_tokens(token) or "")[2:-2])
                if name is not None:
                    if language and name != language and not return_timestamps:
                        pending.append(run)
                        close(chunk)
                        pending, run, chunk = [], [], _Chunk(None)
                    chunk["language"] = language = name
            elif token >= first_stamp:
                stamp = float((token - first_stamp) * time_precision)
                if stamp < top:  # timestamps restarted: a new 30 s segment of a long window
                    single_ending = i >= 2 and not (ids[i - 1] >= first_stamp and ids[i - 2] >= first_stamp)
                    if single_ending:
                        earlier_segments += time_precision * segment_size
                    else:
                        top = previous_top
                        earlier_segments += previous_top
                previous_top, top = top, stamp
                time = round((token - first_stamp) * time_precision + offset + earlier_segments, 2)
                if last_allowed and token >= last_allowed:
                    skip = True
                elif skip or (pending and token < first_allowed):
                    skip = False
                elif chunk["timestamp"][0] is None:
                    chunk["timestamp"][0] = time
                elif time != chunk["timestamp"][0]:
                    chunk["timestamp"][1] = time
                    pending.append(run)
                    close(chunk)
                    pending, run, chunk = [], [], _Chunk(language)
            else:
                run.append(token)
        if "stride" in output:
            offset += window - right
        if run:
            pending.append(run)
        elif not any(pending):
            chunk, pending = _Chunk(language), []
    if pending:
        close(chunk)
    text = "".join(c["text"] for c in chunks)
    if not (return_timestamps or return_language):
        return text, {}
    for c in chunks:
        if return_timestamps:
            c["timestamp"] = tuple(c["timestamp"])
        else:
            c.pop("timestamp")
        if not return_language:
            c.pop("language")
    return text, {"chunks": [dict(c) for c in chunks]}
