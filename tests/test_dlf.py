"""The deterministic deep latent factor model: exact removal, no leakage, features, contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlfm.data.splits import holdout
from dlfm.datasets import synthetic
from dlfm.evaluation.metrics import rmse
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.training.batching import batch_codes as batch_codes_of, BlockSampler, Incidence

FAST = dict(hidden=32, latent=8, decoder_hidden=16, max_epochs=3, batch_size=256, verbose=False, ema_decay=0.0,
            lr=3e-3)


@pytest.fixture(scope="module")
def data():
    return synthetic(120, 80, 3000, rank=3, noise=0.3, seed=2)


@pytest.fixture(scope="module")
def fitted(data):
    return create("dlf", **FAST).fit(data)


def batch_codes(model, ratings, removal):
    """Training-time codes of every rating (its own rating kept out), dropout off, and the
    batch each rating fell in."""
    model.network_.eval()
    inc = Incidence(ratings, model.center_)
    sampler = BlockSampler(inc, 500, input_keep=1.0, max_neighbors=None, seed=0, removal=removal)
    users = torch.zeros(len(ratings), model.latent)
    items = torch.zeros(len(ratings), model.latent)
    batch_of = np.zeros(len(ratings), dtype=np.int64)
    with torch.no_grad():
        for number, batch in enumerate(sampler):
            users[batch.ratings], items[batch.ratings] = batch_codes_of(model.network_, batch, model.device_)
            batch_of[batch.ratings] = number
    return users, items, batch_of


@pytest.mark.parametrize("removal", ["block", "rating"])
def test_exact_removal_of_the_rating_being_predicted(data, removal):
    model = create("dlf", **FAST).fit(data)
    u1, v1, batch_of = batch_codes(model, data, removal)
    t = 0
    user, item = data.users[t], data.items[t]
    changed = data.ratings.copy()
    changed[t] += 3.0
    u2, v2, _ = batch_codes(model, data.with_ratings(changed), removal)
    assert torch.allclose(u1[t], u2[t], atol=1e-5) and torch.allclose(v1[t], v2[t], atol=1e-5)
    # a rating of the same user in another batch (block) sees r_ij, so its user code changes
    same_user = np.flatnonzero((data.users == user) & (batch_of != batch_of[t]))
    assert len(same_user) and not torch.allclose(u1[same_user[0]], u2[same_user[0]], atol=1e-4)
    # changing that rating of row i changes u for (i, j)
    other = same_user[0]
    changed2 = data.ratings.copy()
    changed2[other] += 3.0
    u3, _, _ = batch_codes(model, data.with_ratings(changed2), removal)
    assert not torch.allclose(u1[t], u3[t], atol=1e-4)
    assert data.items[other] != item


def test_block_batches_never_feed_a_target_to_its_encoders(data):
    inc = Incidence(data, data.global_mean)
    sampler = BlockSampler(inc, 300, input_keep=0.5, max_neighbors=None, seed=3)
    seen = 0
    for batch in sampler:
        us, its = batch.user_segments, batch.item_segments
        assert torch.all(us.weights != 0) and torch.all(its.weights != 0)  # compacted
        user_rows = np.repeat(np.arange(len(us.offsets)), np.diff(np.append(us.offsets.numpy(), len(us.columns))))
        item_rows = np.repeat(np.arange(len(its.offsets)), np.diff(np.append(its.offsets.numpy(), len(its.columns))))
        fed_to_users = set(zip(user_rows.tolist(), us.columns.tolist()))
        fed_to_items = set(zip(item_rows.tolist(), its.columns.tolist()))
        for r, u_seg, i_seg in zip(batch.ratings, batch.user_of.tolist(), batch.item_of.tolist()):
            assert (u_seg, int(inc.items[r])) not in fed_to_users
            assert (i_seg, int(inc.users[r])) not in fed_to_items
        seen += len(batch.ratings)
    assert seen == len(data)


def test_transposed_backward_matches_autograd():
    from dlfm.nn.encoders import RowEncoder
    from dlfm.training.batching import gather_rows

    ratings = synthetic(40, 30, 400, rank=2, noise=0.3, seed=1)
    inc = Incidence(ratings, ratings.global_mean)
    rng = np.random.default_rng(0)
    segments = gather_rows(inc.by_user, np.array([0, 3, 5, 9]), keep=0.5, generator=rng)
    compact = segments.compact()
    encoder = RowEncoder(ratings.n_items, 8, 3)
    grads = []
    for seg in (segments, compact):
        encoder.zero_grad()
        transpose = seg.transpose
        sums = encoder.row_sums(seg.columns, seg.values, seg.weights, seg.offsets, transpose)
        (sums * torch.arange(8.0)).pow(2).sum().backward()
        grads.append((sums.detach(), encoder.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5) and grads[1][1].abs().sum() > 0


def test_no_test_rating_reaches_the_encoders(data):
    fold = holdout(data, 0.2, seed=0)
    model = create("dlf", **FAST).fit(fold.train)
    incidence = model.scorer_.incidence
    assert len(incidence) == len(fold.train)
    train_keys = set((fold.train.users * data.n_items + fold.train.items).tolist())
    encoded = set((incidence.users * data.n_items + incidence.items).tolist())
    assert encoded == train_keys
    before = model.predict_indices(fold.test.users, fold.test.items)
    # a fresh scorer (no cached codes): the codes are recomputed from the stored training ratings alone
    model.scorer_ = model.make_scorer(model.network_, model.likelihood_, Incidence(fold.train, model.center_),
                                      model.device_, model.fit_offsets(fold.train, model.likelihood_))
    after = model.predict_indices(fold.test.users, fold.test.items)
    assert np.array_equal(before, after)
    # and they do read those ratings: encoders given the test ratings too predict otherwise
    model.scorer_ = model.make_scorer(model.network_, model.likelihood_, Incidence(data, model.center_),
                                      model.device_)
    assert not np.allclose(after, model.predict_indices(fold.test.users, fold.test.items))


def test_learns_better_than_the_mean(data):
    fold = holdout(data, 0.2, seed=0)
    model = create("dlf", **{**FAST, "max_epochs": 15}).fit(fold.train)
    score = rmse(fold.test.ratings, model.predict_indices(fold.test.users, fold.test.items))
    mean_score = rmse(fold.test.ratings, np.full(len(fold.test), fold.train.global_mean))
    assert score < mean_score - 0.03
    assert model.history_ and {"epoch", "train_loss", "val_rmse", "seconds"} <= set(model.history_[0])


def test_same_seed_same_numbers(data):
    a = create("dlf", **FAST, seed=5).fit(data).predict_indices(data.users[:50], data.items[:50])
    b = create("dlf", **FAST, seed=5).fit(data).predict_indices(data.users[:50], data.items[:50])
    c = create("dlf", **FAST, seed=6).fit(data).predict_indices(data.users[:50], data.items[:50])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_save_load_identical(tmp_path, fitted, data):
    path = tmp_path / "dlf.dlfm"
    fitted.save(path)
    again = Recommender.load(path)
    assert np.array_equal(again.predict_indices(data.users[:200], data.items[:200]),
                          fitted.predict_indices(data.users[:200], data.items[:200]))
    assert again.card_["n_ratings"] == len(data) and "versions" in again.card_


def test_new_user_without_retraining(fitted, data):
    items = data.raw_items()[:5]
    likes = fitted.predict_new_user({i: 5.0 for i in items}, data.raw_items()[5:15])
    hates = fitted.predict_new_user({i: -1.0 for i in items}, data.raw_items()[5:15])
    assert likes.shape == (10,) and not np.allclose(likes, hates)
    top = fitted.recommend_new_user({items[0]: 5.0, items[1]: 4.0}, 10)
    assert len(top) == 10 and not {items[0], items[1]} & {i for i, _ in top}


def test_new_item_without_retraining(fitted, data):
    users = data.raw_users()[:5]
    out = fitted.predict_new_item({u: 5.0 for u in users}, data.raw_users()[5:10])
    assert out.shape == (5,) and np.all(np.isfinite(out))


def test_unknown_ids_fall_back_inside_scale(fitted, data):
    value = fitted.predict("ghost", data.raw_items()[0])
    assert data.scale[0] <= value <= data.scale[1]


def test_recommend_excludes_seen(fitted, data):
    user = data.raw_users()[0]
    seen = {i for u, i in zip(data.raw_users(), data.raw_items()) if u == user}
    top = fitted.recommend(user, 10)
    assert len(top) == 10 and not seen & {i for i, _ in top}


@pytest.mark.parametrize("interaction", ["hadamard", "concat", "both"])
def test_interactions(data, interaction):
    model = create("dlf", **{**FAST, "max_epochs": 1}, interaction=interaction).fit(data)
    assert np.all(np.isfinite(model.predict_indices(data.users[:10], data.items[:10])))


def test_distribution_of_dlf_is_point_plus_noise(fitted, data):
    dist = fitted.predict_distribution(data.raw_users()[:20], data.raw_items()[:20], n_samples=4000)
    point = fitted.predict(data.raw_users()[:20], data.raw_items()[:20])
    assert np.allclose(dist["q50"], point, atol=0.1)
    assert np.all(dist["q05"] <= dist["q95"]) and dist["samples"].shape == (20, 4000)


def test_hyperparameters_matter(data):
    base = create("dlf", **FAST).fit(data).predict_indices(data.users[:50], data.items[:50])
    for key, value in [("hidden", 16), ("latent", 4), ("dropout", 0.1), ("input_dropout", 0.1), ("lr", 0.01),
                       ("weight_decay", 0.0), ("activation", "relu"), ("batch_size", 64), ("max_neighbors", 5),
                       ("ema_decay", 0.9), ("interaction", "hadamard"), ("lr_decay", 0.5),
                       ("removal", "rating"), ("row_cap", 3), ("max_groups", 2)]:
        other = create("dlf", **{**FAST, key: value}).fit(data).predict_indices(data.users[:50], data.items[:50])
        assert not np.allclose(base, other), key


def test_nan_loss_stops_with_epoch_and_batch(data):
    from dlfm.errors import TrainingError

    with pytest.raises(TrainingError, match=r"epoch 1, batch \d+"):
        create("dlf", **{**FAST, "lr": 1e30}).fit(data)


def test_load_chooses_the_device(tmp_path, fitted, data):
    path = tmp_path / "dlf.dlfm"
    fitted.save(path)
    on_cpu = Recommender.load(path, device="cpu")
    assert on_cpu.device_.type == "cpu"
    assert np.array_equal(on_cpu.predict_indices(data.users[:20], data.items[:20]),
                          fitted.predict_indices(data.users[:20], data.items[:20]))
    if not torch.cuda.is_available():
        # a model saved from a GPU run still loads on a machine without one
        fitted.set_params(device="cuda")
        try:
            fitted.save(tmp_path / "gpu.dlfm")
        finally:
            fitted.set_params(device="auto")
        assert Recommender.load(tmp_path / "gpu.dlfm").device_.type == "cpu"


@pytest.mark.slow
def test_ml100k_u1_accuracy_and_new_user_recommendations(ml100k_root, tmp_path):
    """Real data: u1 test RMSE well under the report's 0.9271, and `dlfm recommend --ratings`
    from a model trained on ml-100k leaves out the items the new user rated."""
    import json

    from dlfm import datasets
    from dlfm.cli.main import main

    fold = next(iter(datasets.official_folds("ml-100k", data_dir=ml100k_root)))
    model = create("dlf", verbose=False).fit(fold.train)
    assert rmse(fold.test.ratings, model.predict_indices(fold.test.users, fold.test.items)) < 0.905
    path = tmp_path / "ml100k.dlfm"
    model.save(path)
    out = tmp_path / "rec.json"
    assert main(["recommend", str(path), "--ratings", "50:5,172:5,181:4", "-k", "10", "--json", str(out)]) == 0
    items = [str(r["item"]) for r in json.loads(out.read_text())]
    assert len(items) == 10 and not {"50", "172", "181"} & set(items)


def test_row_cap_weights_long_rows_down():
    from dlfm.training.batching import gather_rows, row_scale

    assert np.allclose(row_scale(np.array([0, 5, 10, 40]), 10), [1.0, 1.0, 1.0, 0.25])
    assert np.allclose(row_scale(np.array([3, 400]), None), 1.0)
    ratings = synthetic(30, 60, 900, rank=2, noise=0.3, seed=4)
    inc = Incidence(ratings, ratings.global_mean)
    longest = int(np.argmax(inc.by_user.counts))
    seg = gather_rows(inc.by_user, np.array([longest]), row_cap=5)
    assert np.allclose(seg.weights.numpy(), 5 / inc.by_user.counts[longest])


def test_row_norm_weights_rows_by_a_power_of_their_length():
    from dlfm.training.batching import ROW_NORM_LENGTH, gather_rows, row_scale

    assert ROW_NORM_LENGTH == 30
    # (30 / n)^0.5: a row of 30 keeps weight 1, one of 120 weighs 1/2, one of 7.5... 2
    assert np.allclose(row_scale(np.array([30, 120, 270]), None, 0.5), [1.0, 0.5, 1 / 3])
    assert np.allclose(row_scale(np.array([30, 60]), None, 1.0), [1.0, 0.5])
    # with a cap the two multiply: n = 120, cap 60 → 0.5 · 0.5
    assert np.allclose(row_scale(np.array([120]), 60, 0.5), [0.25])
    assert np.allclose(row_scale(np.array([5, 400]), None, 0.0), 1.0)
    ratings = synthetic(30, 60, 900, rank=2, noise=0.3, seed=4)
    inc = Incidence(ratings, ratings.global_mean)
    longest = int(np.argmax(inc.by_user.counts))
    seg = gather_rows(inc.by_user, np.array([longest]), row_norm=0.5)
    assert np.allclose(seg.weights.numpy(), np.sqrt(30 / inc.by_user.counts[longest]))


def test_a_new_row_is_weighted_as_a_training_row_of_its_length():
    # the code of a new user from exactly a known user's ratings equals that user's code
    ratings = synthetic(60, 40, 1000, rank=2, noise=0.3, seed=5)
    model = create("dlf", **FAST, row_norm=0.5, mc_samples=0).fit(ratings)
    user = int(np.argmax(ratings.user_counts))
    mine = ratings.users == user
    code = model.scorer_.encode_new(model.network_.user_encoder, ratings.items[mine], ratings.ratings[mine])
    known, _ = model.scorer_.code_rows(np.array([user]), np.array([0]))
    assert torch.allclose(code, known, atol=1e-5)
