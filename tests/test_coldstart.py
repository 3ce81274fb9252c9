"""Cold-start protocol: whole users/items held out, folded in from a few ratings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlfm.cli.main import main
from dlfm.data.ratings import Ratings
from dlfm.data.splits import entity_folds, fold_in_split
from dlfm.datasets import synthetic, write_ratings
from dlfm.errors import ConfigError
from dlfm.evaluation.coldstart import cold_start, parse_given, transpose
from dlfm.evaluation.ranking import RankingSpec
from dlfm.models import create


def test_entity_folds_hold_out_disjoint_whole_users(lowrank):
    folds = list(entity_folds(lowrank, 4, by="user", seed=1))
    held = [np.unique(f.test.users) for f in folds]
    assert sum(len(h) for h in held) == np.count_nonzero(lowrank.user_counts)
    assert len(np.unique(np.concatenate(held))) == sum(len(h) for h in held)  # disjoint
    for fold, users in zip(folds, held):
        assert len(fold.train) + len(fold.test) == len(lowrank)
        assert not np.isin(fold.train.users, users).any()  # every rating of a held-out user is held out
    items = list(entity_folds(lowrank, 3, by="item", seed=1))
    assert not np.isin(items[0].train.items, items[0].test.items).any()
    with pytest.raises(ConfigError, match="k must be between"):
        next(entity_folds(lowrank, 1))


def test_fold_in_split_by_hand_and_nested():
    r = Ratings.from_raw(["a"] * 4 + ["b"] * 2 + ["c"] * 3, list("wxyzwxwxy"), [1, 2, 3, 4, 5, 4, 3, 2, 1])
    given, others = fold_in_split(r, 2, seed=0)
    # a: 2 given + 2 scored; b has only 2 ratings (nothing left to score) → dropped; c: 2 + 1
    assert sorted(r.user_vocab.raw(given.users)) == ["a", "a", "c", "c"]
    assert sorted(r.user_vocab.raw(others.users)) == ["a", "a", "c"]
    pairs = lambda x: set(zip(x.users.tolist(), x.items.tolist()))  # noqa: E731
    assert not pairs(given) & pairs(others)
    one, _ = fold_in_split(r, 1, seed=0)
    b = r.user_vocab.index("b")
    assert {p for p in pairs(one) if p[0] != b} <= pairs(given)  # the same seed draws nested sets
    with pytest.raises(ConfigError):
        fold_in_split(r, 0)
    by_item, _ = fold_in_split(r, 1, by="item", seed=0)
    assert len(np.unique(by_item.items)) == len(by_item)


def test_baseline_new_item_by_hand(tiny):
    model = create("baseline", reg_item=2.0).fit(tiny)
    a, b = tiny.user_vocab.index("a"), tiny.user_vocab.index("b")
    mu, bu = model.global_mean_, model.user_bias_
    b_i = ((5 - mu - bu[a]) + (4 - mu - bu[b])) / (2.0 + 2)
    got = model.predict_new_item({"a": 5, "b": 4}, ["a", "c", "nobody"])
    want = np.clip([mu + bu[a] + b_i, mu + bu[tiny.user_vocab.index("c")] + b_i, mu + b_i], 2, 5)
    assert np.allclose(got, want)
    with pytest.raises(ConfigError):
        model.predict_new_item({}, ["a"])


def test_mf_new_item_reproduces_the_last_als_item_update(lowrank):
    """The ALS warm start ends with an item update against the final user factors, which is
    exactly the fold-in solve: folding an item back in from all its ratings gives its predictions."""
    model = create("mf", gibbs_sweeps=0, n_epochs=3).fit(lowrank)
    j = 7
    col = lowrank.items == j
    ratings = dict(zip(lowrank.user_vocab.raw(lowrank.users[col]), lowrank.ratings[col].tolist()))
    users = lowrank.user_vocab.raw(np.arange(20))
    folded = model.predict_new_item(ratings, users)
    assert np.allclose(folded, model.predict_indices(np.arange(20), np.full(20, j)), atol=1e-8)


def test_transpose_swaps_sides(tiny):
    t = transpose(tiny)
    assert t.n_users == tiny.n_items and np.array_equal(t.users, tiny.items) and t.user_vocab == tiny.item_vocab


@pytest.mark.parametrize("side", ["user", "item"])
def test_cold_start_protocol_end_to_end(lowrank, side):
    spec = RankingSpec(ks=(5,))
    out = cold_start("baseline", {}, lowrank, side=side, given=[3, 10], k=3, seed=0, ranking=spec)
    assert out["protocol"] == ("new-users" if side == "user" else "new-items")
    assert len(out["folds"]) == 6 and {r["given"] for r in out["folds"]} == {3, 10}
    for r in out["folds"]:
        assert r["n_heldout"] > 0 and r["n_given"] == r["given"] * r["n_heldout"]
        for part in ("fold_in", "retrained"):
            assert 0 < r[part]["rmse"] < 2 and 0 <= r[part]["ndcg@5"] <= 1
    mean = out["mean"]["10"]
    # ten given ratings say more than three: the fold-in's error drops
    assert mean["fold_in"]["rmse"] < out["mean"]["3"]["fold_in"]["rmse"]
    # the bias fold-in is the retrained model's closed form for that user: close to it
    assert abs(mean["fold_in"]["rmse"] - mean["retrained"]["rmse"]) < 0.05


def test_mf_fold_in_beats_the_mean_on_low_rank_data(lowrank):
    mf = cold_start("mf", {"gibbs_sweeps": 5}, lowrank, given=[20], k=3, reference=False, only_fold=1)
    mean = cold_start("mean", {}, lowrank, given=[20], k=3, reference=False, only_fold=1)
    assert "retrained" not in mf["mean"]["20"]
    assert mf["mean"]["20"]["fold_in"]["rmse"] < mean["mean"]["20"]["fold_in"]["rmse"] - 0.1


def test_parse_given():
    assert parse_given("20, 5,10,5") == [5, 10, 20]
    for bad in ("", "0", "x", "5,-1"):
        with pytest.raises(ConfigError, match="--given"):
            parse_given(bad)


def test_cli_cold_start_and_ranking(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(60, 40, 1200, seed=0), path)
    out_json = tmp_path / "cs.json"
    code = main(["cv", str(path), "--model", "baseline", "--protocol", "new-items", "--given", "2,4", "--k", "3",
                 "--metrics", "rmse,ndcg@5", "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert code == 0 and "fold-in" in printed and "retrained" in printed
    doc = json.loads(out_json.read_text())
    assert doc["protocol"] == "new-items" and set(doc["mean"]) == {"2", "4"}
    assert set(doc["mean"]["4"]["fold_in"]) >= {"rmse", "mae", "ndcg@5"}
    assert "map@10" not in doc["mean"]["4"]["fold_in"]

    out_json = tmp_path / "cv.json"
    code = main(["cv", str(path), "--model", "popular", "--folds", "kfold", "--k", "2", "--json", str(out_json)])
    assert code == 0
    doc = json.loads(out_json.read_text())
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10"):
        assert key in doc["folds"][0] and key in doc["mean"]
    assert doc["folds"][0]["relevance_threshold"] == pytest.approx(doc["folds"][0]["relevance_threshold"])

    for argv, flag in ((["--metrics", "rmse,auc"], "--metrics"), (["--protocol", "new-users", "--given", "0"], "--given"),
                       (["--relevance-threshold", "nan"], "--relevance-threshold")):
        code = main(["cv", str(path), "--folds", "kfold", *argv])
        err = capsys.readouterr().err
        assert code == 2 and flag in err and "Traceback" not in err


@pytest.mark.parametrize("side", ["user", "item"])
def test_dlf_folds_in_through_its_encoders(side):
    from tests.test_dlf import FAST

    data = synthetic(60, 40, 1200, rank=2, noise=0.3, seed=4)
    out = cold_start("dlf", {**FAST, "mc_samples": 0, "max_epochs": 2}, data, side=side, given=[5], k=3, reference=False, only_fold=2,
                     ranking=RankingSpec(ks=(5,)))
    record = out["folds"][0]
    assert record["fold"] == f"{side}s2" and record["n_heldout"] > 0
    assert 0 < record["fold_in"]["rmse"] < 2 and 0 <= record["fold_in"]["ndcg@5"] <= 1
