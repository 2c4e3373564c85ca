"""The batcher's length grouping (pure): every row once, longest first, padding bounded."""

from __future__ import annotations

import random

from inferline.serve.batcher import MIN_GROUP, PAD_SLACK, length_groups


def test_length_groups_cover_every_row_and_bound_padding():
    rng = random.Random(0)
    for n in (1, 2, 5, 32, 64):
        lengths = [rng.randint(3, 120) for _ in range(n)]
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(n))
        for g in groups:
            assert [lengths[i] for i in g] == sorted((lengths[i] for i in g), reverse=True)
            if len(g) > MIN_GROUP:
                assert lengths[g[0]] * len(g) <= PAD_SLACK * sum(lengths[i] for i in g) + 1e-9
    assert length_groups([7] * 40) == [list(range(40))]  # equal lengths: one batch
    assert length_groups([0, 0, 0]) == [[0, 1, 2]]  # inputs without input_ids (images): one batch
