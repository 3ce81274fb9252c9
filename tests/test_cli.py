"""The command line: clear errors without tracebacks, JSON outputs, the main commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlfm.cli.main import main
from dlfm.datasets import synthetic, write_ratings
from tests.conftest import write


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_rejects_bad_rating_naming_line_2(tmp_path):
    path = write(tmp_path, "1\t2\t3\n1\t3\tfive\n")
    proc = subprocess.run([sys.executable, "-m", "dlfm", "info", str(path)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "line 2" in proc.stderr and "Traceback" not in proc.stderr


def test_info_json(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(50, 40, 400, seed=0), path)
    code, out, _ = run(["info", str(path), "--json", str(tmp_path / "o.json")], capsys)
    info = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and (info["users"], info["items"], info["ratings"]) == (50, 40, 400)


def test_unknown_dataset_and_model_are_clear(tmp_path, capsys):
    code, _, err = run(["info", "no-such-thing"], capsys)
    assert code == 2 and "neither a known data set" in err
    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    code, _, err = run(["cv", str(path), "--folds", "kfold", "--model", "nope"], capsys)
    assert code == 2 and "unknown model" in err
    code, _, err = run(["cv", str(path), "--folds", "kfold", "--param", "oops"], capsys)
    assert code == 2 and "key=value" in err


def test_cv_kfold_on_a_file_writes_json(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(60, 40, 800, seed=0), path)
    out_json = tmp_path / "cv.json"
    code, out, _ = run(["cv", str(path), "--model", "baseline", "--folds", "kfold", "--k", "3", "--seed", "1",
                        "--json", str(out_json)], capsys)
    assert code == 0 and "mean" in out
    doc = json.loads(out_json.read_text())
    assert doc["model"] == "baseline" and len(doc["folds"]) == 3
    for key in ("fold", "rmse", "mae", "fit_seconds", "predict_seconds", "n_test"):
        assert key in doc["folds"][0]
    assert {"rmse", "mae"} <= set(doc["mean"]) and "versions" in doc


def test_train_predict_recommend(tmp_path, capsys):
    path = tmp_path / "r.csv"
    data = synthetic(60, 40, 800, seed=0)
    write_ratings(data, path)
    model = tmp_path / "m.dlfm"
    assert run(["train", str(path), "--model", "mf", "-o", str(model)], capsys)[0] == 0
    user, item = data.raw_users()[0], data.raw_items()[0]
    code, out, _ = run(["predict", str(model), "--user", str(user), "--item", str(item), "--json", str(tmp_path / "p.json")], capsys)
    assert code == 0 and json.loads((tmp_path / "p.json").read_text())[0]["prediction"] > 0
    code, out, _ = run(["recommend", str(model), "--user", str(user), "-k", "5", "--json", str(tmp_path / "r.json")], capsys)
    rec = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and len(rec) == 5 and [r["rank"] for r in rec] == [1, 2, 3, 4, 5]
    code, _, _ = run(["recommend", str(model), "--ratings", f"{item}:5", "-k", "3", "--json", str(tmp_path / "n.json")], capsys)
    assert code == 0 and str(item) not in [str(r["item"]) for r in json.loads((tmp_path / "n.json").read_text())]
    code, _, err = run(["predict", str(model), "--user", "ghost", "--item", str(item), "--strict"], capsys)
    assert code == 2 and "unknown user" in err


def test_datasets_lists_known_sets(capsys, tmp_path):
    code, out, _ = run(["datasets", "--data-dir", str(tmp_path)], capsys)
    assert code == 0
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small"):
        assert name in out


def test_help_on_each_command():
    for command in ("datasets", "info", "cv", "train", "predict", "recommend"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0


@pytest.mark.slow
def test_cv_official_baseline_on_ml100k(ml100k_root, tmp_path, capsys):
    out_json = tmp_path / "cv.json"
    code, _, _ = run(["cv", "ml-100k", "--data-dir", str(ml100k_root), "--model", "baseline", "--json", str(out_json)], capsys)
    doc = json.loads(out_json.read_text())
    assert code == 0 and 0.935 <= doc["mean"]["rmse"] <= 0.950


# ----------------------------------------------------------------------------- never hang, never clobber
def _dlfm(*argv, timeout=120, **kwargs):
    """``python -m dlfm ARGV`` in a subprocess that cannot hang the suite."""
    return subprocess.run([sys.executable, "-m", "dlfm", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_a_nan_loss_with_the_background_batch_thread_stops_with_the_error(tmp_path):
    """``--threads 1`` on 2 cores gathers batches in a background thread: a NaN loss must stop
    training with the error and exit 2, not hang in the thread's hand-over."""
    path = tmp_path / "r.csv"
    write_ratings(synthetic(80, 60, 1500, seed=0), path)
    proc = _dlfm("train", path, "--model", "dlf", "--param", "lr=1e30", "--param", "batch_size=64", "--threads", "1",
                 "--device", "cpu", "--quiet", "-o", tmp_path / "x.dlfm", timeout=60)
    assert proc.returncode == 2 and "training loss became nan" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.dlfm").exists()


def test_ctrl_c_during_training_exits_within_5_seconds(tmp_path):
    import os
    import signal
    import time

    path = tmp_path / "r.csv"
    write_ratings(synthetic(200, 150, 6000, seed=0), path)
    checkpoints = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "dlfm", "train", str(path), "--model", "dlf", "--threads", "1",
                             "--device", "cpu", "--quiet", "--param", "max_epochs=1000", "--param", "patience=1000",
                             "--param", "batch_size=64", "--checkpoint-dir", str(checkpoints), "-o", str(tmp_path / "m.dlfm")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (checkpoints / "checkpoint.dlfm").exists():  # an epoch is done: training is under way
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=5)
        assert time.monotonic() - sent < 5
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_train_onto_a_character_device_leaves_it_a_device(tmp_path, capsys):
    import os
    import stat

    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # our own, never the system's /dev/null
    except PermissionError:
        pytest.skip("creating a device node needs root")
    code, _, _ = run(["train", str(path), "--model", "baseline", "-o", str(device), "--json", str(device)], capsys)
    assert code == 0 and stat.S_ISCHR(os.stat(device).st_mode)


def test_json_to_a_link_to_stdout_prints_the_json(tmp_path, capfd):
    """``--json /dev/stdout``, through a link of our own to this process's fd 1 (never the
    system's /dev nodes): the JSON is printed, and the link is not replaced by a file."""
    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    assert main(["info", str(path), "--json", str(link)]) == 0
    out = capfd.readouterr().out
    assert json.loads(out[out.index("{"):])["ratings"] == 200
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "stdout"]


def test_a_checkpoint_dir_that_is_a_file_fails_before_training(tmp_path, capsys, monkeypatch):
    from dlfm.models import neural

    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(neural.NeuralFactorModel, "_fit", lambda *a: pytest.fail("training started"))
    for where, message in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "which is a file")):
        code, _, err = run(["train", str(path), "--model", "dlf", "--checkpoint-dir", str(where), "-o",
                            str(tmp_path / "m.dlfm")], capsys)
        assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.dlfm").exists()


def test_dlfm_predict_of_a_json_file_says_it_is_not_a_model(tmp_path, capsys):
    (tmp_path / "m.json").write_text('{"model": "dlf"}')
    code, _, err = run(["predict", str(tmp_path / "m.json"), "--user", "1", "--item", "2"], capsys)
    assert code == 2 and "not a dlfm model file" in err and "pickle" not in err
    code, _, err = run(["predict", str(tmp_path), "--user", "1", "--item", "2"], capsys)
    assert code == 2 and "is a directory" in err


def test_bad_params_on_the_command_line_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    for model, pair in (("dlf", "lr=nan"), ("dlf", "weight_decay=nan"), ("dlf", "seed=-1"),
                        ("dlf", "seed=99999999999999999999999"), ("baseline", "reg_user=nan"), ("mf", "reg=nan"),
                        ("mf", "noise_scale=nan"), ("dlf", "hidden=2.5")):
        code, _, err = run(["train", str(path), "--model", model, "--param", pair, "-o", str(tmp_path / "m.dlfm")], capsys)
        assert code == 2 and err.count("\n") == 1 and f"dlfm params {model}" in err, (pair, err)
    assert not (tmp_path / "m.dlfm").exists()


def test_likelihood_option_takes_exactly_the_registry(tmp_path, capsys):
    from dlfm.cli.main import build_parser
    from dlfm.cli.model_commands import model_params
    from dlfm.nn.likelihoods import LIKELIHOODS

    parser = build_parser()
    for name in LIKELIHOODS:
        args = parser.parse_args(["train", "x.csv", "--model", "dlf", "--likelihood", name, "-o", "m.dlfm"])
        assert model_params(args)["likelihood"] == name
    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    code, _, err = run(["train", str(path), "--model", "dlf", "--likelihood", "laplace", "-o", str(tmp_path / "m")],
                       capsys)
    assert code == 2 and err.count("\n") == 1 and "--likelihood" in err and ", ".join(LIKELIHOODS) in err, err
