"""Top-N metrics and protocol against hand-computed cases: ties, users without a relevant item,
k larger than the candidates; the vectorised protocol against a per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.errors import ConfigError
from dlfm.evaluation import metrics as m
from dlfm.evaluation.ranking import RankingSpec, evaluate_ranking, parse_metrics, top_k
from dlfm.models import create

L2, L3, L4 = 1.0, 1 / math.log2(3), 1 / math.log2(4)


def test_ranking_from_hits_by_hand():
    out = m.ranking_from_hits(np.array([[1, 0, 1]]), np.array([2]), [3])
    assert out["precision@3"] == pytest.approx(2 / 3)
    assert out["recall@3"] == pytest.approx(1.0)
    assert out["ndcg@3"] == pytest.approx((L2 + L4) / (L2 + L3))
    assert out["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    # at k = 1 only the first rank counts; ideal is one discount
    one = m.ranking_from_hits(np.array([[0, 1, 1]]), np.array([2]), [1])
    assert one == {"precision@1": 0.0, "recall@1": 0.0, "ndcg@1": 0.0, "map@1": 0.0}


def test_users_without_relevant_items_are_left_out():
    out = m.ranking_from_hits(np.array([[1, 0], [0, 0]]), np.array([1, 0]), [2])
    assert out["precision@2"] == pytest.approx(0.5)  # not 0.25: the second user is not averaged
    assert out["recall@2"] == pytest.approx(1.0)
    nothing = m.ranking_from_hits(np.array([[1, 0]]), np.array([0]), [2])
    assert all(math.isnan(v) for v in nothing.values())


def test_k_larger_than_the_list():
    out = m.ranking_from_hits(np.array([[0, 1]]), np.array([1]), [5])
    assert out["precision@5"] == pytest.approx(1 / 5)  # missing places are misses
    assert out["recall@5"] == pytest.approx(1.0)
    assert out["ndcg@5"] == pytest.approx(L3 / L2)
    assert out["map@5"] == pytest.approx(0.5)


def test_per_user_views_agree_with_the_hand_values():
    ranked, relevant = [3, 1, 7, 5], [1, 5, 9]
    assert m.precision_at_k(ranked, relevant, 2) == 0.5
    assert m.ndcg_at_k(ranked, relevant, 4) == pytest.approx((L3 + 1 / math.log2(5)) / (L2 + L3 + L4))
    assert m.average_precision_at_k(ranked, relevant, 10) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert math.isnan(m.precision_at_k(ranked, [], 2))
    with pytest.raises(ValueError):
        m.precision_at_k(ranked, relevant, 0)


def test_top_k_ties_by_lower_column_and_invalid_last():
    scores = np.array([[1.0, 3.0, 3.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    cols, valid = top_k(scores, 2)
    assert cols.tolist() == [[1, 2], [0, 1]] and valid.all()
    cols, _ = top_k(scores, 3)
    assert cols.tolist() == [[1, 2, 3], [0, 1, 2]]
    # a tie straddling the cut: columns 1, 2, 3 tie for places 2-4, two are taken
    cols, _ = top_k(np.array([[5.0, 1.0, 1.0, 1.0, 0.0]]), 3)
    assert cols.tolist() == [[0, 1, 2]]
    cols, valid = top_k(np.array([[-np.inf, 1.0, np.nan]]), 5)  # k larger than the columns
    assert cols.tolist() == [[1, 0, 2]] and valid.tolist() == [[True, False, False]]


def _toy() -> tuple[Ratings, Ratings]:
    """3 users × 5 items. Train: u0 rated i0, u1 rated i1, u2 rated i2 and i3; item 4 has no
    training rating. Test: u0 i1=5, i2=2, i4=5 (i4 is no candidate); u1 i0=4, i3=4; u2 i1=3 (nothing relevant)."""
    users, items = [str(u) for u in range(3)], [str(i) for i in range(5)]
    full = Ratings.from_raw(["0", "1", "2", "2", "0", "0", "0", "1", "1", "2"],
                            ["0", "1", "2", "3", "1", "2", "4", "0", "3", "1"], [3, 4, 2, 2, 5, 2, 5, 4, 4, 3], user_vocab=Vocabulary(users), item_vocab=Vocabulary(items),
                            scale=(1, 5))
    return full.subset(np.arange(4)), full.subset(np.arange(4, 10))


def test_protocol_by_hand():
    train, test = _toy()
    table = np.array([[9, 1, 8, 7, 100], [1, 9, 2, 3, 100], [0, 0, 0, 0, 0]], dtype=float)
    out = evaluate_ranking(lambda u, i: table[u, i], train, test, RankingSpec(ks=(1, 2)))
    # u0: candidates 1, 2, 3 (0 seen, 4 unrated) → ranked 2, 3, 1; relevant {1}: hit at rank 3
    # u1: candidates 0, 2, 3 → ranked 3, 2, 0; relevant {0, 3}: hits at ranks 1 and 3
    # u2: nothing relevant → left out
    assert out["n_rank_users"] == 2
    assert out["precision@1"] == pytest.approx((0 + 1) / 2)
    assert out["recall@2"] == pytest.approx((0 + 1 / 2) / 2)
    assert out["ndcg@2"] == pytest.approx((0 + 1 / (L2 + L3)) / 2)
    assert out["map@2"] == pytest.approx((0 + 1 / 2) / 2)
    # with the threshold at 5 only u0's item 1 is relevant
    strict = evaluate_ranking(lambda u, i: table[u, i], train, test, RankingSpec(ks=(3,), threshold=5))
    assert strict["n_rank_users"] == 1 and strict["recall@3"] == 1.0 and strict["precision@3"] == pytest.approx(1 / 3)


def test_vectorised_protocol_matches_a_per_user_reference(lowrank):
    from dlfm.data.splits import holdout

    fold = holdout(lowrank, 0.2, seed=3)
    train, test = fold.train, fold.test
    scores = np.random.default_rng(0).normal(size=(train.n_users, train.n_items)).round(1)  # many ties
    got = evaluate_ranking(lambda u, i: scores[u, i], train, test, RankingSpec(ks=(5, 20)), chunk_pairs=3000)
    threshold = m.default_relevance_threshold(train.scale)
    candidates = set(np.flatnonzero(train.item_counts > 0).tolist())
    rankings, relevant = {}, {}
    for u in np.unique(test.users):
        seen = set(train.items[train.users == u].tolist())
        cand = sorted(candidates - seen)
        order = sorted(cand, key=lambda i: (-scores[u, i], i))
        rankings[u] = order
        relevant[u] = [i for i, r in zip(test.items[test.users == u], test.ratings[test.users == u])
                       if r >= threshold and i in candidates]
    for k in (5, 20):
        want = m.ranking_metrics(rankings, relevant, k)
        for key, value in want.items():
            assert got[key] == pytest.approx(value), key


def test_parse_metrics():
    spec = parse_metrics(None)
    assert spec is not None and spec.names == ("precision@10", "recall@10", "ndcg@10", "map@10")
    assert parse_metrics("rmse,mae") is None
    spec = parse_metrics("rmse, NDCG@5,recall@20", threshold=3.5)
    assert spec.ks == (5, 20) and spec.metrics == ("recall", "ndcg") and spec.threshold == 3.5
    for bad, fragment in (("rmse,foo", "unknown metric 'foo'"), ("ndcg@0", "at least 1"), ("ndcg@x", "whole number"),
                          ("ndcg", "unknown metric"), ("", "names no metric")):
        with pytest.raises(ConfigError, match=fragment):
            parse_metrics(bad)
    with pytest.raises(ConfigError, match="--relevance-threshold"):
        parse_metrics(None, threshold=float("nan"))


def test_default_relevance_threshold_rule():
    assert m.default_relevance_threshold((1, 5)) == 4.0
    assert m.default_relevance_threshold((0.5, 5)) == 3.875
    assert m.default_relevance_threshold((0, 1)) == 0.75


def test_popular_ranks_by_count_and_predicts_the_baseline(tiny):
    popular = create("popular").fit(tiny)
    baseline = create("baseline").fit(tiny)
    u = np.zeros(3, dtype=np.int64)
    i = np.arange(3)
    assert popular.score_indices(u, i).tolist() == [3.0, 3.0, 2.0]  # x, y rated 3 times, z twice
    assert np.allclose(popular.predict_indices(u, i), baseline.predict_indices(u, i))
    # user d rated x and y; the only candidate is z
    assert popular.score_matrix(np.array([3]), np.arange(3)).tolist() == [[3.0, 3.0, 2.0]]


def test_mf_score_matrix_is_its_unclipped_prediction(lowrank):
    model = create("mf", gibbs_sweeps=3, n_epochs=2).fit(lowrank)
    users, items = np.array([0, 5, -1]), np.array([1, 2, 3, -1])
    grid = model.score_matrix(users, items)
    pairs = model.score_indices(np.repeat(users, 4), np.tile(items, 3)).reshape(3, 4)
    assert np.allclose(grid, pairs)
    assert np.allclose(np.clip(grid, *lowrank.scale), model.predict_indices(np.repeat(users, 4), np.tile(items, 3)).reshape(3, 4))


def test_popular_recommends_the_most_rated_items(lowrank):
    popular = create("popular").fit(lowrank)
    user = lowrank.raw_users()[0]
    top = popular.recommend(user, 5)
    u = lowrank.user_vocab.index(user)
    seen = set(lowrank.item_vocab.raw(lowrank.items[lowrank.users == u]))
    counts = {raw: int(c) for raw, c in zip(lowrank.item_vocab.raw(np.arange(lowrank.n_items)), lowrank.item_counts)}
    unseen = sorted((raw for raw in counts if raw not in seen and counts[raw] > 0), key=lambda r: -counts[r])
    assert [counts[item] for item, _ in top] == [counts[r] for r in unseen[:5]]
    # the score shown is the predicted rating (the baseline's), not the count
    assert all(lowrank.scale[0] <= score <= lowrank.scale[1] for _, score in top)
