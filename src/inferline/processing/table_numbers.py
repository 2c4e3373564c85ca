"""Numbers and dates in table cells and questions, found and compared as TAPAS does.

The semantics of transformers 4.57.6 `tokenization_tapas` (itself the original TAPAS `number_utils` and
`number_annotation_utils`): the longest number and date spans of a text; a column's values consolidated to
its most common type; sort keys that compare numbers, or dates on the fields all of them have.

A value is a float (a number) or a (year, month, day) tuple of floats or None (a date).
"""

from __future__ import annotations

import collections
import datetime
import math
import re
from typing import Callable, Union

Value = Union[float, tuple]

_YEAR, _YEAR_MONTH, _YEAR_MONTH_DAY = (True, False, False), (True, True, False), (True, True, True)
_MONTH, _MONTH_DAY = (False, True, False), (False, True, True)
# strptime formats, tried in this order, with the date fields each one sets.
DATE_FORMATS = (
    ("%B", _MONTH), ("%Y", _YEAR), ("%Ys", _YEAR), ("%b %Y", _YEAR_MONTH), ("%B %Y", _YEAR_MONTH),
    ("%B %d", _MONTH_DAY), ("%b %d", _MONTH_DAY), ("%d %b", _MONTH_DAY), ("%d %B", _MONTH_DAY),
    ("%B %d, %Y", _YEAR_MONTH_DAY), ("%d %B %Y", _YEAR_MONTH_DAY), ("%m-%d-%Y", _YEAR_MONTH_DAY),
    ("%Y-%m-%d", _YEAR_MONTH_DAY), ("%Y-%m", _YEAR_MONTH), ("%B %Y", _YEAR_MONTH), ("%d %b %Y", _YEAR_MONTH_DAY),
    ("%Y-%m-%d", _YEAR_MONTH_DAY), ("%b %d, %Y", _YEAR_MONTH_DAY), ("%d.%m.%Y", _YEAR_MONTH_DAY),
    ("%A, %b %d", _MONTH_DAY), ("%A, %B %d", _MONTH_DAY),
)
_FIELD_PATTERNS = {"%A": r"\w+", "%B": r"\w+", "%Y": r"\d{4}", "%b": r"\w{3}", "%d": r"\d{1,2}", "%m": r"\d{1,2}"}


def _prefilter(fmt: str) -> re.Pattern:
    """A regex a text must match before strptime is tried with `fmt` (strptime alone is more lenient)."""
    regex = fmt.replace(".", r"\.").replace("-", r"\-").replace(" ", r"\s+")
    for field, pattern in _FIELD_PATTERNS.items():
        regex = regex.replace(field, pattern)
    return re.compile(f"^{regex}$")


_DATES = tuple((fmt, mask, _prefilter(fmt)) for fmt, mask in DATE_FORMATS)
_MAX_DATE_WORDS = 5
_MIN_YEAR, _MAX_YEAR = 1700, 2016
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")
ORDINAL_WORDS = ("zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                 "tenth", "eleventh", "twelfth")
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
_NUMBER = re.compile(r"((^|\s)[+-])?((\.\d+)|(\d+(,\d\d\d)*(\.\d*)?))")
EQ, LT, GT = 1, 2, 4  # the numeric-relation bits: question value equal to / less than / greater than the cell's


def normalize_for_match(text: str) -> str:
    return " ".join(text.lower().split())


def is_date(value: Value) -> bool:
    return isinstance(value, tuple)


def parse_number(text: str) -> float | None:
    """A cardinal or ordinal ("3rd") number with optional thousands commas; NaN and +inf are not numbers."""
    for suffix in _ORDINAL_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return None if math.isnan(value) or value == math.inf else value


def parse_date(text: str) -> tuple | None:
    text = re.sub(r"Sept\b", "Sep", text)
    for fmt, mask, prefilter in _DATES:
        if not prefilter.match(text):
            continue
        try:
            date = datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if not _MIN_YEAR <= date.year <= _MAX_YEAR:  # checked whatever fields the format sets
            continue
        return tuple(float(v) if keep else None for v, keep in zip((date.year, date.month, date.day), mask))
    return None


def _word_spans(text: str, max_words: int):
    """(begin, end) of every run of 1..max_words consecutive alphanumeric words."""
    starts: list[int] = []
    for i, char in enumerate(text):
        if not char.isalnum():
            continue
        if i == 0 or not text[i - 1].isalnum():
            starts.append(i)
        if i + 1 == len(text) or not text[i + 1].isalnum():
            for start in starts[-max_words:]:
                yield start, i + 1


def parse_text(text: str) -> list[tuple[tuple[int, int], list[Value]]]:
    """The longest non-overlapping number and date spans of `text`, in order: [((begin, end), values)]."""
    spans: dict[tuple[int, int], list[Value]] = collections.defaultdict(list)
    for match in _NUMBER.finditer(text):
        number = parse_number(match.group(0))
        if number is not None:
            spans[match.span()].append(number)
    for begin, end in _word_spans(text, 1):
        if (begin, end) in spans:
            continue
        word = text[begin:end]
        number = parse_number(word)
        if number is not None:
            spans[begin, end].append(number)
        for words in (NUMBER_WORDS, ORDINAL_WORDS):
            if word in words:
                spans[begin, end].append(float(words.index(word)))
    for begin, end in _word_spans(text, _MAX_DATE_WORDS):
        date = parse_date(text[begin:end])
        if date is not None:
            spans[begin, end].append(date)
    longest_first = sorted(spans.items(), key=lambda kv: (kv[0][1] - kv[0][0], -kv[0][0]), reverse=True)
    chosen: list = []
    for span, values in longest_first:
        if not any(begin <= span[0] and span[1] <= end for (begin, end), _ in chosen):
            chosen.append((span, values))
    return sorted(chosen, key=lambda kv: kv[0][0])


def text_values(text: str) -> list[Value]:
    """Every value of every span of the normalised text, in order."""
    return [v for _, values in parse_text(normalize_for_match(text)) for v in values]


def consolidate(per_row: list[list[Value]], min_fraction: float = 0.7) -> dict[int, Value]:
    """row → its first value of the column's most common type (dates win a tie); {} when fewer than
    `min_fraction` of the rows have a value of that type."""
    counts: collections.Counter = collections.Counter()
    for values in per_row:
        counts.update({is_date(v) for v in values})
    if not counts:
        return {}
    top = max(counts.values())
    if top < len(per_row) * min_fraction:
        return {}
    kinds = {kind for kind, count in counts.items() if count == top}
    date = True if len(kinds) > 1 else kinds.pop()
    out = {}
    for row, values in enumerate(per_row):
        first = next((v for v in values if is_date(v) == date), None)
        if first is not None:
            out[row] = first
    return out


def sort_key(values: list[Value]) -> Callable[[Value], object]:
    """A key comparing these values: numbers as they are, dates on the fields every one of them has.
    ValueError when they mix numbers and dates or share no date field."""
    kinds = {is_date(v) for v in values}
    if len(kinds) != 1:
        raise ValueError("numbers and dates do not compare")
    if not kinds.pop():
        return lambda v: v
    fields = [i for i in range(3) if all(v[i] is not None for v in values)]
    if not fields:
        raise ValueError("no date field in common")
    return lambda v: tuple(v[i] for i in fields)


def column_ranks(column: dict[int, Value]) -> dict[int, tuple[int, int]]:
    """row → (rank, inverse rank) of its value among the column's distinct values (1 = smallest)."""
    if not column:
        return {}
    try:
        key = sort_key(list(column.values()))
    except ValueError:
        return {}
    keys = {row: key(v) for row, v in column.items()}
    order = {k: i for i, k in enumerate(sorted(set(keys.values())))}
    return {row: (order[k] + 1, len(order) - order[k]) for row, k in keys.items()}


def numeric_relations(question: list[Value], columns: list[dict[int, Value]]) -> dict[tuple[int, int], int]:
    """(column, row) → the EQ/LT/GT bits of how the question's values compare with that cell's value."""
    found: dict[tuple[int, int], set] = collections.defaultdict(set)
    for value in question:
        for c, column in enumerate(columns):
            if not column:
                continue
            try:
                key = sort_key([*column.values(), value])
            except ValueError:
                continue
            mine = key(value)
            for row, cell in column.items():
                theirs = key(cell)
                relation = EQ if mine == theirs else LT if mine < theirs else GT if mine > theirs else None
                if relation is not None:
                    found[c, row].add(relation)
    return {cell: sum(bits) for cell, bits in found.items()}
