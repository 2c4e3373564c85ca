"""Whisper token sequences (one per audio window) → text and timestamped chunks.

The semantics of transformers 4.57.6's `_decode_asr`: timestamp tokens open and close segments
(time = (id - first timestamp id) * time_precision, plus the window's offset); windows cut with a
stride are merged where their token sequences overlap best; language tokens set each chunk's language.
"""

from __future__ import annotations

import numpy as np

from .whisper_languages import LANGUAGES


def merge_overlapping(sequences: list[list[int]], times: list[list[tuple]] | None = None):
    """Join token lists that overlap at their ends: each join cuts at the middle of the best-matching overlap.

    With `times` (a (start, end) per token, word timestamps) a token matches only where the left copy's
    time is not after the right one's, and the times are cut alike: returns (tokens, times)."""
    left = list(sequences[0])
    left_times = list(times[0]) if times else []
    merged: list[int] = []
    merged_times: list[tuple] = []
    for k, right in enumerate(sequences[1:], 1):
        best, cut = 0.0, (len(left), len(left), 0, 0)
        for shift in range(1, len(left) + len(right)):
            l0, l1 = max(0, len(left) - shift), min(len(left), len(left) + len(right) - shift)
            r0, r1 = max(0, shift - len(left)), min(len(right), shift)
            same = np.array(left[l0:l1]) == np.array(right[r0:r1])
            if times:
                same &= np.array([a <= b for a, b in zip(left_times[l0:l1], times[k][r0:r1])], dtype=bool)
            matches = int(np.sum(same))
            score = matches / shift + shift / 10000.0  # later overlaps win ties
            if matches > 1 and score > best:
                best, cut = score, (l0, l1, r0, r1)
        l0, l1, r0, r1 = cut
        merged.extend(left[: (l0 + l1) // 2])
        left = list(right[(r0 + r1) // 2:])
        if times:
            merged_times.extend(left_times[: (l0 + l1) // 2])
            left_times = list(times[k][(r0 + r1) // 2:])
    if times is None:
        return merged + left
    return merged + left, merged_times + left_times


# Languages written without spaces: their words are split at whole characters instead.
_UNSPACED = {"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"}
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_PREPENDED, _APPENDED = "\"'“¡¿([{-", "\"'.。,，!！?？:：”)]}、"


def _split_on_characters(tokenizer, tokens: list[int]) -> list[tuple[str, list[int]]]:
    """(text, token indices) pieces, each ending where the tokens decode to whole Unicode characters."""
    full = tokenizer.decode(tokens)
    pieces, current, offset = [], [], 0
    for index in range(len(tokens)):
        current.append(index)
        text = tokenizer.decode([tokens[i] for i in current])
        bad = text.find("\ufffd")
        if bad < 0 or (offset + bad < len(full) and full[offset + bad] == "\ufffd"):
            pieces.append((text, current))
            current, offset = [], offset + len(text)
    return pieces


def words_of(tokenizer, tokens: list[int], language: str | None) -> list[tuple[str, list[int]]]:
    """Group text tokens into words (text, token indices) as transformers' Whisper tokenizer does: a word
    starts at a leading space or a punctuation piece; opening punctuation joins the next word, closing
    punctuation the previous one."""
    pieces = _split_on_characters(tokenizer, tokens)
    if (language or "english") not in _UNSPACED:
        words: list[list] = []
        for text, indices in pieces:
            if tokens[indices[0]] >= tokenizer.eos_token_id or text.startswith(" ") or \
                    text.strip() in _PUNCTUATION or not words:
                words.append([text, list(indices)])
            else:
                words[-1][0] += text
                words[-1][1].extend(indices)
    else:
        words = [[text, list(indices)] for text, indices in pieces]
    j = len(words) - 1
    for i in range(len(words) - 2, -1, -1):  # opening punctuation onto the word after it
        if words[i][0].startswith(" ") and words[i][0].strip() in _PREPENDED:
            words[j] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[i] = ["", []]
        else:
            j = i
    i = 0
    for j in range(1, len(words)):  # closing punctuation onto the word before it
        if not words[i][0].endswith(" ") and words[j][0] in _APPENDED:
            words[i] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[j] = ["", []]
        else:
            i = j
    return [(text, indices) for text, indices in words if text]


class _Chunk(dict):
    def __init__(self, language):
        super().__init__(language=language, timestamp=[None, None], text="")


def transcript(tokenizer, outputs: list[dict], return_timestamps, return_language, time_precision: float,
               segment_size: int = 1500, language_ids=()) -> tuple[str, dict]:
    """outputs: per window {"tokens": (1, T) generated ids, optionally "stride": (length, left, right) in s,
    and for return_timestamps="word" "token_timestamps": (1, T) seconds per token};
    `language_ids` are the language tokens (special even where the tokenizer does not list them)."""
    first_stamp = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
    special = set(tokenizer.all_special_ids) | set(language_ids)
    language = None
    chunks: list[dict] = []
    chunk = _Chunk(None)
    offset = 0.0
    pending: list[list[int]] = []  # token runs of the open chunk, one per window
    pending_times: list[list[tuple]] = []  # word timestamps: (start, end) per token of each run
    words = return_timestamps == "word"
    skip = False

    def close(chunk):
        if words:
            tokens, times = merge_overlapping(pending, pending_times)
            chunk["words"] = [{"text": text, "timestamp": (times[idx[0]][0], times[idx[-1]][1]),
                               **({"language": language} if return_language else {})}
                              for text, idx in words_of(tokenizer, tokens, language)]
        else:
            tokens = merge_overlapping(pending)
        chunk["text"] = tokenizer.decode(tokens)
        chunks.append(chunk)

    for output in outputs:
        ids = output["tokens"][0].tolist()
        stamps = output["token_timestamps"][0].tolist() if words else None
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
        run_times: list[tuple] = []
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
                    pending_times.append(run_times)
                    close(chunk)
                    pending, run, chunk, pending_times, run_times = [], [], _Chunk(language), [], []
            else:
                run.append(token)
                if words:  # from the previous token's time (the window's start for the first) to its own
                    run_times.append((round((stamps[i - 1] if i else 0.0) + offset, 2), round(stamps[i] + offset, 2)))
        if "stride" in output:
            offset += window - right
        if run:
            pending.append(run)
            pending_times.append(run_times)
        elif not any(pending):
            chunk, pending, pending_times = _Chunk(language), [], []
    if pending:
        close(chunk)
    text = "".join(c["text"] for c in chunks)
    if not (return_timestamps or return_language):
        return text, {}
    if words:
        return text, {"chunks": [word for c in chunks for word in c["words"]]}
    for c in chunks:
        if return_timestamps:
            c["timestamp"] = tuple(c["timestamp"])
        else:
            c.pop("timestamp")
        if not return_language:
            c.pop("language")
    return text, {"chunks": [dict(c) for c in chunks]}
