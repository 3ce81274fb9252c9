"""Hyper-parameters: declared once per model, validated by type and range with a ConfigError
that names them, parsed from --param, listed by ``dlfm params``; and the API's edges."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest

from dlfm.cli.main import main
from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError, DataError, ModelFileError
from dlfm.models import MODELS, create, model_class, parse_params
from dlfm.models.base import Recommender

NAMES = ["mean", "baseline", "popular", "mf", "pmf", "dlf", "vdlf"]


@pytest.mark.parametrize("name", NAMES)
def test_every_init_parameter_is_declared_with_a_type_its_default_has(name):
    cls = model_class(name)
    specs = cls.param_specs()
    assert list(specs) == cls.param_names()
    for key, default in cls.param_defaults().items():
        spec = specs[key]
        assert type(default) is spec.kind, (key, default, spec.kind)
        assert spec.help and "\n" not in spec.help
        spec.check(default, name)  # every default is allowed


@pytest.mark.parametrize("name", NAMES)
def test_the_declared_types_match_the_init_annotations(name):
    for key, parameter in model_class(name)._init_parameters().items():
        assert parameter.annotation == model_class(name).param_specs()[key].kind.__name__


BAD = [
    ("dlf", "lr", "x"), ("dlf", "hidden", 2.5), ("dlf", "hidden", "10"), ("dlf", "hidden", None),
    ("dlf", "latent", 1e9), ("dlf", "latent", 10**9), ("dlf", "dropout", "0.5"), ("dlf", "seed", -1),
    ("dlf", "seed", "a"), ("dlf", "seed", 2**70), ("dlf", "lr", float("nan")), ("dlf", "weight_decay", float("nan")),
    ("dlf", "decoder_hidden", True), ("dlf", "lr", 0.0), ("dlf", "lr", float("inf")), ("dlf", "lr", 10**400),
    ("dlf", "dropout", 1.0), ("dlf", "likelihood", "laplace"), ("dlf", "device", "tpu"), ("dlf", "verbose", 1),
    ("dlf", "interaction", None), ("dlf", "max_groups", 1), ("dlf", "batch_size", 0), ("dlf", "activation", "TANH"),
    ("vdlf", "noise", "none"), ("vdlf", "fixed_sigma", 0.0), ("vdlf", "n_samples", 0), ("vdlf", "kl_weight", -1.0),
    ("baseline", "reg_user", float("nan")), ("baseline", "n_epochs", 0), ("baseline", "reg_item", "1"),
    ("mf", "reg", float("nan")), ("mf", "noise_scale", float("nan")), ("mf", "n_factors", 1.5), ("mf", "biased", "yes"),
    ("mf", "seed", 2**64), ("pmf", "gibbs_sweeps", -1),
]


@pytest.mark.parametrize("name, key, value", BAD)
def test_a_bad_value_through_the_api_is_a_config_error_naming_it(tiny, name, key, value):
    model = create(name, **{key: value})
    with pytest.raises(ConfigError, match=rf"^{name}: {key} must be "):
        model.fit(tiny)


def test_no_model_is_fitted_before_its_parameters_are_checked(tiny):
    model = create("dlf", hidden=2.5)
    with pytest.raises(ConfigError):
        model.fit(tiny)
    assert not hasattr(model, "train_")


@pytest.mark.parametrize("pair, message", [
    ("hidden=2.5", "expected an integer"), ("lr=nan", "finite"), ("seed=-1", "from 0 to"),
    ("seed=99999999999999999999999", "from 0 to"), ("weight_decay=nan", "finite"), ("likelihood=cauchy", "one of"),
    ("verbose=maybe", "true or false"), ("hiden=10", "did you mean 'hidden'"),
])
def test_param_errors_name_the_parameter_and_point_at_dlfm_params(pair, message):
    with pytest.raises(ConfigError) as caught:
        parse_params("dlf", [pair])
    assert message in str(caught.value) and "dlfm params dlf" in str(caught.value)
    assert pair.split("=")[0] in str(caught.value)


def test_param_values_are_parsed_into_the_declared_types():
    assert parse_params("dlf", ["hidden=10", "lr=1e-3", "verbose=false", "likelihood=poisson", "max-epochs=3"]) == \
        {"hidden": 10, "lr": 1e-3, "verbose": False, "likelihood": "poisson", "max_epochs": 3}
    assert parse_params("mf", ["biased=0", "noise-scale=1"]) == {"biased": False, "noise_scale": 1.0}


def test_dlfm_params_lists_hidden_with_its_default_and_meaning(capsys):
    assert main(["params", "dlf"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("hidden "))
    assert "integer" in line and " 200 " in line and "width of the encoders' hidden layer" in line
    assert main(["params", "vdlf", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"name": "fixed_sigma", "type": "number", "default": 0.1, "allowed": "> 0",
            "meaning": "σ during training when noise is fixed"} in doc
    assert len(doc) == len(model_class("vdlf").param_names())


def test_dlfm_params_of_an_unknown_model_suggests_one(capsys):
    assert main(["params", "dfl"]) == 2
    assert "did you mean 'dlf'" in capsys.readouterr().err


def test_defaults_are_unchanged():
    assert model_class("dlf").param_defaults()["hidden"] == 200
    assert model_class("mf").param_defaults() == {"n_factors": 10, "reg": 0.1, "bias_reg": 0.2, "n_epochs": 8,
                                                  "init_std": 0.1, "biased": True, "seed": 0, "reg_exponent": 1.0,
                                                  "gibbs_sweeps": 100, "noise_scale": 1.2}
    assert model_class("vdlf").param_defaults()["fixed_sigma"] == 0.1


# ----------------------------------------------------------------------------- degenerate data, no NaN
@pytest.mark.parametrize("name", ["baseline", "mf", "pmf"])
@pytest.mark.parametrize("ratings", [
    Ratings.from_raw([1, 1, 2, 2, 3], [1, 2, 1, 3, 2], [4.0] * 5),  # all equal
    Ratings.from_raw([1], [1], [3.0]),  # one rating
])
def test_degenerate_data_fits_and_predicts_the_obvious(name, ratings):
    model = create(name).fit(ratings)
    assert np.allclose(model.predict([1, 2], [1, 2]), ratings.ratings[0])


@pytest.mark.parametrize("name", NAMES)
def test_ratings_too_large_to_compute_with_are_a_data_error_not_nan(name):
    huge = Ratings.from_raw([1, 2, 3], [1, 1, 2], [1e308, 1e308, 5e307])  # loading them is faithful
    with pytest.raises(DataError, match="beyond what the models compute with"):
        create(name).fit(huge)


def test_a_diverged_model_is_an_error_not_nan_predictions(tiny):
    from dlfm.errors import TrainingError

    model = create("baseline").fit(tiny)
    model.user_bias_ = model.user_bias_ * np.nan
    with pytest.raises(TrainingError, match="NaN"):
        model.predict("a", "x")


# ----------------------------------------------------------------------------- API edges
def test_predict_with_a_2d_array_is_an_error_not_one_value(tiny):
    model = create("baseline").fit(tiny)
    with pytest.raises(ConfigError, match="1-D"):
        model.predict(np.array([["a"], ["b"]]), np.array([["x"], ["y"]]))
    with pytest.raises(ConfigError, match="differ in length"):
        model.predict(["a", "b"], ["x", "y", "z"])
    assert list(model.predict(["a", "b"], "x")) == [model.predict("a", "x"), model.predict("b", "x")]


def test_recommend_with_a_fractional_k_is_an_error(tiny):
    model = create("baseline").fit(tiny)
    for k in (2.5, "2", True, 0):
        with pytest.raises(ConfigError, match="k must be"):
            model.recommend("a", k=k)
        with pytest.raises(ConfigError, match="k must be"):
            model.recommend_new_user({"x": 4}, k=k)


def test_a_new_users_rating_that_is_not_a_number_is_an_error(tiny):
    model = create("baseline").fit(tiny)
    with pytest.raises(ConfigError, match="rating of item 'x' must be a number"):
        model.predict_new_user({"x": "x"}, ["y"])


def test_fit_takes_a_dataframe(tiny):
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c", "c", "d", "d"],
                          "item": ["x", "y", "x", "z", "y", "z", "x", "y"], "rating": [5, 3, 4, 1, 2, 5, 3, 4]})
    from_frame = create("baseline").fit(frame)
    assert from_frame.predict("a", "y") == pytest.approx(create("baseline").fit(tiny).predict("a", "y"))
    with pytest.raises(ConfigError, match="Ratings or a pandas DataFrame"):
        create("baseline").fit([(1, 2, 3)])


def test_predict_distribution_broadcasts_one_item_against_many_users(tiny):
    model = create("dlf", hidden=8, latent=4, decoder_hidden=4, max_epochs=1, verbose=False, device="cpu").fit(tiny)
    dist = model.predict_distribution(["a", "b"], ["x"], n_samples=10)
    assert dist["mean"].shape == (2,)
    with pytest.raises(ConfigError, match="differ in length"):
        model.predict_distribution(["a", "b"], ["x", "y", "z"], n_samples=10)


# ----------------------------------------------------------------------------- edited model files
def _edited(tmp_path, model, change):
    from dlfm.persistence import load_payload, save_payload

    model.save(tmp_path / "m.dlfm")
    meta, tensors = load_payload(tmp_path / "m.dlfm")
    change(meta)
    save_payload(tmp_path / "e.dlfm", meta, tensors)  # a valid checksum: only the content is wrong
    return tmp_path / "e.dlfm"


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta["params"].update(hidden=10), "weights do not fit"),
    (lambda meta: meta["params"].update(hidden=10**9), "hidden must be"),
    (lambda meta: meta["params"].update(hidden=100_000), "weights do not fit"),
    (lambda meta: meta.update(model="vdlf"), "weights do not fit"),
    (lambda meta: meta["params"].update(lr=None), "lr must be"),
])
def test_an_edited_neural_model_file_is_refused_before_allocating(tmp_path, tiny, change, message):
    model = create("dlf", hidden=8, latent=4, decoder_hidden=4, max_epochs=1, verbose=False, device="cpu").fit(tiny)
    with pytest.raises(ModelFileError, match=message):
        Recommender.load(_edited(tmp_path, model, change))


@pytest.mark.parametrize("name", ["baseline", "mf"])
def test_an_edited_factor_model_file_is_refused(tmp_path, tiny, name):
    model = create(name).fit(tiny)
    with pytest.raises(ModelFileError, match="corrupt or was edited"):
        Recommender.load(_edited(tmp_path, model, lambda meta: meta["user_vocab"].update(
            {k: v[:-1] if isinstance(v, list) else v for k, v in meta["user_vocab"].items()})))


@pytest.mark.parametrize("name", NAMES)
def test_every_tuning_search_space_lies_inside_the_declared_ranges(name):
    """``search_space`` (what ``dlfm tune`` tries) names declared parameters only, and every
    value it can draw is one that fit accepts."""
    from dlfm.models.space import Choice

    cls = model_class(name)
    specs = cls.param_specs()
    for key, space in cls.search_space.items():
        values = space.values if isinstance(space, Choice) else (space.low, space.high)
        for value in values:
            specs[key].check(value, name)


# ---------------------------------------------------------------------------------- renamed parameters
# mf/pmf renamed n_samples → gibbs_sweeps and noise → noise_scale (``renamed_params``): the old
# names work for this release with a FutureWarning, and files saved under them load silently.

def _tiny_ratings():
    from dlfm.datasets import synthetic

    return synthetic(30, 20, 300, rank=2, seed=3)


@pytest.mark.parametrize("cls_name", ["mf", "pmf"])
def test_a_renamed_parameter_works_in_python_with_a_future_warning_at_the_callers_line(cls_name):
    cls = model_class(cls_name)
    with pytest.warns(FutureWarning, match="'n_samples' is renamed 'gibbs_sweeps'") as caught:
        model = cls(n_samples=3)
    assert caught[0].filename == __file__  # points at this line, not inside dlfm
    assert model.gibbs_sweeps == 3 and not hasattr(model, "n_samples")
    assert "n_samples" not in model.get_params() and model.get_params()["gibbs_sweeps"] == 3
    assert "n_samples" not in repr(model)


def test_a_renamed_parameter_works_through_dlfm_create_and_set_params():
    import dlfm

    with pytest.warns(FutureWarning, match="'noise' is renamed 'noise_scale'") as caught:
        model = dlfm.create("mf", noise=0.5)
    assert caught[0].filename == __file__
    assert model.get_params()["noise_scale"] == 0.5
    with pytest.warns(FutureWarning, match="gibbs_sweeps"):
        model.set_params(n_samples=2)
    assert model.gibbs_sweeps == 2


def test_old_and_new_names_give_the_same_model():
    data = _tiny_ratings()
    with pytest.warns(FutureWarning):
        old = create("mf", n_samples=4, noise=0.8).fit(data)
    new = create("mf", gibbs_sweeps=4, noise_scale=0.8).fit(data)
    assert np.array_equal(old.predict_indices(data.users, data.items), new.predict_indices(data.users, data.items))


def test_an_old_name_and_its_new_name_together_are_an_error():
    with pytest.raises(ConfigError, match="give gibbs_sweeps only"):
        create("mf", n_samples=3, gibbs_sweeps=4)


def test_introspection_reads_the_real_init_after_the_rename_wrapper():
    from dlfm.models import MatrixFactorization, PMF

    for cls in (MatrixFactorization, PMF):
        assert "gibbs_sweeps" in cls.param_names() and "noise_scale" in cls.param_names()
        assert "n_samples" not in cls.param_names() and "noise" not in cls.param_names()
        assert cls.param_defaults()["gibbs_sweeps"] == 100 and cls.param_defaults()["noise_scale"] == 1.2
        assert "gibbs_sweeps" in inspect.signature(cls.__init__).parameters
        assert cls.__init__.__doc__ == inspect.unwrap(cls.__init__).__doc__
    assert PMF.renamed() == {"n_samples": "gibbs_sweeps", "noise": "noise_scale"}  # inherited
    assert model_class("baseline").renamed() == {}


def test_a_subclass_may_add_renames_without_its_own_init_and_they_do_not_leak_upwards():
    from dlfm.models import BaselineModel

    class Renamed(BaselineModel):
        name = "renamed-baseline"
        renamed_params = {"lambda_user": "reg_user"}

    with pytest.warns(FutureWarning, match="'lambda_user' is renamed 'reg_user'"):
        assert Renamed(lambda_user=3.0).reg_user == 3.0
    assert Renamed.param_names() == BaselineModel.param_names()
    with pytest.raises(TypeError):
        BaselineModel(lambda_user=3.0)


def test_a_file_saved_under_the_old_names_loads_silently_with_the_new_ones(tmp_path):
    import warnings

    from dlfm.persistence import load_payload, save_payload

    data = _tiny_ratings()
    model = create("mf", gibbs_sweeps=3, noise_scale=0.9).fit(data)
    path = tmp_path / "new.dlfm"
    model.save(path)
    meta, tensors = load_payload(path)
    params = meta["params"]
    params["n_samples"], params["noise"] = params.pop("gibbs_sweeps"), params.pop("noise_scale")
    old = tmp_path / "old.dlfm"
    save_payload(old, meta, tensors)  # as a file of the previous release
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        loaded = Recommender.load(old)
    assert loaded.get_params() == model.get_params()
    assert np.array_equal(loaded.predict_indices(data.users, data.items), model.predict_indices(data.users, data.items))
    loaded.save(tmp_path / "again.dlfm")
    assert "n_samples" not in load_payload(tmp_path / "again.dlfm")[0]["params"]  # saved under the new names


def test_a_renamed_param_on_the_command_line_is_one_warning_line_and_saves_the_new_name(tmp_path, capsys):
    from dlfm.datasets import write_ratings
    from dlfm.persistence import load_payload

    path = tmp_path / "r.csv"
    write_ratings(_tiny_ratings(), path)
    out = tmp_path / "m.dlfm"
    assert main(["train", str(path), "--model", "mf", "--param", "n_samples=2", "--param", "noise=0.7",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "renamed" in line]
    assert lines == ["dlfm: warning: mf: the parameter 'n_samples' is renamed 'gibbs_sweeps'; 'n_samples' still works "
                     "in this release but will be removed",
                     "dlfm: warning: mf: the parameter 'noise' is renamed 'noise_scale'; 'noise' still works in this "
                     "release but will be removed"]
    assert "Traceback" not in err and "FutureWarning" not in err
    params = load_payload(out)[0]["params"]
    assert params["gibbs_sweeps"] == 2 and params["noise_scale"] == 0.7 and "n_samples" not in params


def test_parse_params_reads_an_old_name_as_the_new_one_with_a_warning():
    with pytest.warns(FutureWarning, match="gibbs_sweeps"):
        assert parse_params("pmf", ["n-samples=7"]) == {"gibbs_sweeps": 7}


def test_dlfm_params_shows_the_new_names_and_lists_the_deprecated_ones(capsys):
    assert main(["params", "mf"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(("set ", "deprecated"))]
    assert "gibbs_sweeps" in names and "noise_scale" in names and "n_samples" not in names and "noise" not in names
    assert "deprecated names, still accepted in this release (with a warning): n_samples → gibbs_sweeps, " \
           "noise → noise_scale" in out
    assert main(["params", "mf", "--json", "-"]) == 0
    doc = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert doc["gibbs_sweeps"]["deprecated_names"] == ["n_samples"] and "deprecated_names" not in doc["reg"]
