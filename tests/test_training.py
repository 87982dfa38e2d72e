"""Training on real and small data: learning, exact kill-and-resume, DDP with torchrun, sweeps, bad input."""

import json
import os
import pathlib
import re
import statistics
import subprocess
import sys

import pytest
import torch

from plugattn.checkpoint import CheckpointError, load_checkpoint, split_prefix
from plugattn.data import DataError, load_data
from plugattn.cli.parsing import parse_grid
from plugattn.sweep import expand, sweep
from plugattn.training import TrainConfig, evaluate_checkpoint, train
from tests.conftest import FASHION_MNIST, make_image_folder, make_manifest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(folder: pathlib.Path, out: pathlib.Path, **overrides) -> TrainConfig:
    values = dict(model="resnet20", attention="se", reduction=4, dataset=f"imagefolder:{folder}", epochs=3,
                  batch_size=16, lr=0.05, out_dir=str(out), progress=False)
    return TrainConfig(**(values | overrides))


def _cli(*args: str, env: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable, "-m"]) + ["plugattn", *args]
    environment = os.environ | {"OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=600)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_loss_decreases_on_fashion_mnist(tmp_path):
    summary = train(TrainConfig(model="resnet20", attention="cbam", reduction=4, epochs=2, train_subset=2048,
                                test_subset=1000, batch_size=64, lr=0.05, out_dir=str(tmp_path), progress=False))
    history = [json.loads(json.dumps(r)) for r in load_checkpoint(tmp_path / "last.safetensors")[1]["history"]]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert summary["top1"] > 0.5  # chance is 0.1
    assert len(summary["per_class_accuracy"]) == 10 and summary["samples"] == 1000
    for name in ("metrics.csv", "summary.json", "confusion.png", "best.safetensors"):
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_learns_an_image_folder_and_writes_every_artifact(image_folder, tmp_path):
    summary = train(_config(image_folder, tmp_path, epochs=4, attention="cbam"))
    assert summary["top1"] > 0.6  # three visibly different classes; chance is 1/3
    metrics = (tmp_path / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,lr,train_loss") and len(metrics) == 5
    assert evaluate_checkpoint(tmp_path / "best.safetensors")["top1"] == pytest.approx(summary["best_top1"])


def test_kill_and_resume_equals_the_uninterrupted_run_bit_for_bit(image_folder, tmp_path):
    common = ["train", "--model", "resnet20", "--attention", "cbam", "--reduction", "4", "--dataset",
              f"imagefolder:{image_folder}", "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--no-progress"]
    whole = _cli(*common, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = _cli(*common, "--out", str(tmp_path / "cut"), env={"PLUGATTN_FAULT_KILL_AFTER": "1"})
    assert killed.returncode == -9  # SIGKILL: no clean-up ran
    assert load_checkpoint(tmp_path / "cut" / "last.safetensors")[1]["epoch"] == 1
    resumed = _cli(*common, "--out", str(tmp_path / "cut"), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    final_whole, meta_whole = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    final_cut, meta_cut = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert meta_cut["epoch"] == meta_whole["epoch"] == 3
    assert final_whole.keys() == final_cut.keys()
    for name in final_whole:
        assert torch.equal(final_whole[name], final_cut[name]), name


def _same_checkpoints(whole: pathlib.Path, cut: pathlib.Path) -> None:
    final_whole, meta_whole = load_checkpoint(whole / "last.safetensors")
    final_cut, meta_cut = load_checkpoint(cut / "last.safetensors")
    assert meta_cut["epoch"] == meta_whole["epoch"] and meta_cut["history"][-1]["train_loss"] == \
        meta_whole["history"][-1]["train_loss"]
    assert final_whole.keys() == final_cut.keys() and "rng.cpu" in final_whole
    assert any(name.startswith("ema.") for name in final_whole)
    different = [name for name in final_whole if not torch.equal(final_whole[name], final_cut[name])]
    assert not different, f"{len(different)} of {len(final_whole)} tensors differ, e.g. {different[:5]}"


# two processes: the multimodal kill-and-resume test and the torchrun test cover DDP; this one is marked slow
@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_killed_inside_an_epoch_a_model_with_dropout_resumes_to_the_same_checkpoint(processes, tmp_path):
    """MobileNetV2 (Dropout(0.2) before its classifier) with SE, DataLoader workers and EMA, SIGKILLed in the middle
    of epoch 2 and resumed: every tensor of the final checkpoint — weights, optimiser, EMA, RNG state — equals the
    uninterrupted run's, in one process and with two gloo ranks (each drawing its own dropout masks)."""
    folder = make_image_folder(tmp_path / "images", train=32, test=8)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"] \
        if processes == 2 else None
    batch = 16 // processes
    common = ["train", "--model", "torchvision:mobilenet_v2", "--attention", "se", "--reduction", "4", "--dataset",
              f"imagefolder:{folder}", "--epochs", "2", "--batch-size", str(batch), "--lr", "0.05", "--workers", "2",
              "--ema", "0.9", "--no-progress"]
    steps = 96 // (batch * processes)
    whole = _cli(*common, "--out", str(tmp_path / "whole"), launcher=launcher)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _cli(*common, "--out", str(tmp_path / "cut"), launcher=launcher,
                  env={"PLUGATTN_FAULT_KILL_AT_STEP": str(steps + 2)})  # two steps into epoch 2
    assert killed.returncode != 0
    assert load_checkpoint(tmp_path / "cut" / "last.safetensors")[1]["epoch"] == 1
    resumed = _cli(*common, "--out", str(tmp_path / "cut"), "--resume", "auto", launcher=launcher)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_checkpoints(tmp_path / "whole", tmp_path / "cut")


def test_torchrun_two_processes_on_gloo(image_folder, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    result = _cli("train", "--dataset", f"imagefolder:{image_folder}", "--attention", "se", "--reduction", "4",
                  "--epochs", "2", "--batch-size", "16", "--no-progress", "--out", str(tmp_path), launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    tensors, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["epoch"] == 2
    assert evaluate_checkpoint(tmp_path / "last.safetensors")["top1"] == pytest.approx(summary["top1"])


def test_an_interrupted_sweep_resumes_without_rerunning_finished_runs(image_folder, tmp_path):
    args = ["sweep", "attention=none,se", "--dataset", f"imagefolder:{image_folder}", "--epochs", "2",
            "--batch-size", "16", "--lr", "0.05", "--no-nesterov", "--weight-decay", "1e-4", "--schedule", "step",
            "--milestones", "1", "--no-progress", "--out", str(tmp_path)]
    first = _cli(*args, env={"PLUGATTN_FAULT_KILL_AFTER": "1@attention=se"})
    assert first.returncode == -9
    assert (tmp_path / "attention=none" / "summary.json").exists()
    assert not (tmp_path / "attention=se" / "summary.json").exists()
    finished_at = (tmp_path / "attention=none" / "summary.json").stat().st_mtime_ns
    second = _cli(*args)
    assert second.returncode == 0, second.stderr
    assert "attention=none: finished earlier, skipped" in second.stdout
    assert "attention=se: resuming" in second.stdout
    assert (tmp_path / "attention=none" / "summary.json").stat().st_mtime_ns == finished_at
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("attention,top1") and len(rows) == 3
    assert (tmp_path / "results.png").stat().st_size > 0 and "±" in (tmp_path / "results.md").read_text()
    config = load_checkpoint(tmp_path / "attention=se" / "last.safetensors")[1]["config"]
    assert (config["nesterov"], config["weight_decay"], config["schedule"], config["milestones"]) == (False, 1e-4, "step", [1])


def test_sweep_grid_mean_and_std_over_seeds_against_the_control(image_folder, tmp_path):
    base = _config(image_folder, tmp_path, epochs=1)
    rows = sweep(base, parse_grid(["attention=se", "reduction=2,4", "seeds=0,1"]), tmp_path, latency_rounds=3)
    assert len(rows) == 6 and {r["seed"] for r in rows} == {0, 1}
    assert [r["attention"] for r in rows[:2]] == ["none", "none"]  # the control, added: same budget and seeds
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0].startswith("| attention | reduction | runs | top-1 (mean ± std) | Δ top-1 vs control |")
    assert "latency batch 1" in table[0] and "latency batch 8" in table[0]
    top1 = {}
    for row in rows:
        top1.setdefault((row["attention"], row.get("reduction")), []).append(row["top1"])
    control, r2 = statistics.fmean(top1[("none", None)]), statistics.fmean(top1[("se", 2)])
    assert "| none |  | 2 |" in table[2] and "| control |" in table[2]
    assert table[3].startswith("| se | 2 | 2 |") and f"{r2:.2%} ± {statistics.stdev(top1[('se', 2)]):.2%}" in table[3]
    assert f"{(r2 - control) * 100:+.2f} pp" in table[3]
    se_params = rows[2]["params"]
    assert f"({se_params / rows[0]['params'] - 1:+.1%})" in table[3] and re.search(r"×\d\.\d\d \| ×\d\.\d\d", table[3])
    assert not (tmp_path / "attention=none_reduction=2_seed=0").exists()  # block options do not multiply the control
    sweep(base, {"attention": ["se"], "seed": [0]}, tmp_path / "no-control", control=False, latency_rounds=0)
    assert "control" not in (tmp_path / "no-control" / "results.md").read_text()
    with pytest.raises(ValueError, match="latency_rounds must be an int >= 0"):
        sweep(base, {"attention": ["se"]}, tmp_path, latency_rounds=-1)


def test_a_grid_without_attention_keeps_the_base_attention_and_its_options():
    """Only a combination that sets attention=none is a control run (attention options dropped, deduplicated)."""
    assert expand({"reduction": [2, 4], "seed": [0]}) == [{"reduction": 2, "seed": 0}, {"reduction": 4, "seed": 0}]
    assert expand({"attention": ["none", "se"], "reduction": [2, 4]}) == [
        {"attention": "none"}, {"attention": "se", "reduction": 2}, {"attention": "se", "reduction": 4}]


def test_a_new_run_never_overwrites_an_earlier_one(image_folder, tmp_path):
    from typer.testing import CliRunner

    from plugattn.cli import app

    train(_config(image_folder, tmp_path, epochs=1))
    before = (tmp_path / "last.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run .*--resume auto"):
        train(_config(image_folder, tmp_path, epochs=2))
    assert (tmp_path / "last.safetensors").read_bytes() == before
    common = ["train", "--attention", "se", "--reduction", "4", "--dataset", f"imagefolder:{image_folder}",
              "--batch-size", "16", "--epochs", "1", "--no-progress"]
    refused = CliRunner().invoke(app, [*common, "--out", str(tmp_path)], env={"COLUMNS": "300"})
    assert refused.exit_code == 2 and "nothing was overwritten" in refused.output
    started = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "fresh"), "--resume", "auto"])
    assert started.exit_code == 0, started.output  # 'auto' with nothing to continue starts the run
    assert (tmp_path / "fresh" / "summary.json").exists()


def test_a_run_from_weights_measures_the_model_before_any_step_and_keeps_it_on_resume(image_folder, tmp_path):
    plain = train(_config(image_folder, tmp_path / "plain", attention=None, epochs=1))
    weights = str(tmp_path / "plain" / "last.safetensors")
    first = train(_config(image_folder, tmp_path / "se", weights=weights, epochs=1))
    assert first["start_metrics"]["top1"] == plain["top1"]  # SE inserted as the identity: same predictions
    assert first["start_metrics"]["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    resumed = train(_config(image_folder, tmp_path / "se", weights=weights, epochs=2),
                    resume=tmp_path / "se" / "last.safetensors")
    assert resumed["epochs"] == 2 and resumed["start_metrics"] == first["start_metrics"]
    assert train(_config(image_folder, tmp_path / "scratch", epochs=1))["start_metrics"] is None


def test_an_unset_init_is_recorded_resolved_and_an_older_checkpoints_unset_init_keeps_its_meaning(image_folder, tmp_path):
    """Runs record the start an unset ``init`` resolved to (identity-boost with weights); a checkpoint written
    before that, with ``init`` unset, was built as ``identity`` and is rebuilt and resumed as such, never as the
    new default (whose α = 10·a would silently scale its stored a tenfold)."""
    from plugattn.blocks import IdentityStart
    from plugattn.checkpoint import save_checkpoint
    from plugattn.training.evaluation import load_trained

    train(_config(image_folder, tmp_path / "plain", attention=None, epochs=1))
    weights = str(tmp_path / "plain" / "last.safetensors")
    train(_config(image_folder, tmp_path / "boost", weights=weights, epochs=1))
    assert load_checkpoint(tmp_path / "boost" / "last.safetensors")[1]["config"]["init"] == "identity-boost"
    train(_config(image_folder, tmp_path / "old", weights=weights, epochs=1, init="identity"))
    tensors, meta = load_checkpoint(tmp_path / "old" / "last.safetensors")
    meta["config"]["init"] = None  # as written before the default changed
    save_checkpoint(tmp_path / "old" / "last.safetensors", tensors, meta)
    model = load_trained(tmp_path / "old" / "last.safetensors")[0]
    gains = {module.gain for module in model.modules() if isinstance(module, IdentityStart)}
    assert gains == {1.0}
    with pytest.raises(CheckpointError, match="init: checkpoint has 'identity', this run has 'identity-boost'"):
        train(_config(image_folder, tmp_path / "old", weights=weights, epochs=2), resume=tmp_path / "old" / "last.safetensors")
    resumed = train(_config(image_folder, tmp_path / "old", weights=weights, epochs=2, init="identity"),
                    resume=tmp_path / "old" / "last.safetensors")
    assert resumed["epochs"] == 2


BAD = [
    ("missing Fashion-MNIST folder", lambda tmp, folder: TrainConfig(data_dir=str(tmp / "nowhere")),
     DataError, ["train-images-idx3-ubyte.gz", "not found", "apt-get install dataset-fashion-mnist"]),
    ("unknown data set", lambda tmp, folder: TrainConfig(dataset="mnist"), DataError, ["dataset must be one of", "'mnist'"]),
    ("CIFAR without --download", lambda tmp, folder: TrainConfig(dataset="cifar10", data_dir=str(tmp)),
     DataError, ["cifar-10-batches-py", "--download"]),
    ("batch larger than the data", lambda tmp, folder: TrainConfig(dataset=f"imagefolder:{folder}", batch_size=1000),
     DataError, ["batch_size 1000", "larger than the training set", "144"]),
    ("bad epochs", lambda tmp, folder: TrainConfig(epochs=0), ValueError, ["epochs", "0"]),
    ("bad optimizer", lambda tmp, folder: TrainConfig(optimizer="lbfgs"), ValueError, ["optimizer", "'lbfgs'"]),
]


@pytest.mark.parametrize(("label", "make", "error", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(label, make, error, fragments, tmp_path, image_folder):
    config = make(tmp_path, image_folder)
    config.out_dir, config.progress = str(tmp_path / "out"), False
    with pytest.raises(error) as caught:
        train(config)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


def test_image_folder_with_one_class_or_a_broken_image(tmp_path):
    single = make_image_folder(tmp_path / "single", classes=1)
    with pytest.raises(DataError, match="at least 2 class folders.*class0"):
        load_data(f"imagefolder:{single}")
    broken = make_image_folder(tmp_path / "broken", classes=2)
    bad_file = broken / "train" / "class1" / "0003.png"
    bad_file.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=f"cannot decode image file {bad_file}"):
        load_data(f"imagefolder:{broken}", progress=False)
    with pytest.raises(DataError, match="not a directory"):
        load_data(f"imagefolder:{tmp_path / 'absent'}")


def test_resume_refuses_corrupt_foreign_and_mismatching_checkpoints(image_folder, tmp_path):
    train(_config(image_folder, tmp_path / "se", epochs=1))
    good = tmp_path / "se" / "last.safetensors"
    with pytest.raises(CheckpointError, match=r"does not match this run — attention: checkpoint has 'se', this run has 'cbam'"):
        train(_config(image_folder, tmp_path / "cbam", attention="cbam"), resume=good)
    with pytest.raises(CheckpointError, match="reduction: checkpoint has 4, this run has 8"):
        train(_config(image_folder, tmp_path / "r8", reduction=8), resume=good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(_config(image_folder, tmp_path / "t"), resume=truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save(split_prefix(load_checkpoint(good)[0], "model"), foreign)
    with pytest.raises(CheckpointError, match="pickle"):
        train(_config(image_folder, tmp_path / "f"), resume=foreign)


def test_cli_reports_errors_without_a_traceback(tmp_path):
    result = _cli("train", "--data-dir", str(tmp_path), "--no-progress", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr and "apt-get install" in result.stderr


def test_sgd_momentum_is_nesterov_unless_told_otherwise():
    from plugattn.training import make_optimizer

    model = torch.nn.Linear(3, 2)
    assert make_optimizer(TrainConfig(), model).defaults["nesterov"] is True
    plain = make_optimizer(TrainConfig(nesterov=False, momentum=0.9, weight_decay=1e-4), model)  # He et al.'s SGD
    assert plain.defaults["nesterov"] is False and plain.defaults["momentum"] == 0.9
    assert make_optimizer(TrainConfig(momentum=0.0), model).defaults["nesterov"] is False


@pytest.mark.parametrize("processes", [pytest.param(1, marks=pytest.mark.slow), 2])  # one process: the test above
def test_a_multimodal_run_killed_inside_an_epoch_resumes_to_the_same_checkpoint(processes, tmp_path):
    """Two ResNet-8 streams with MMTM after stage 2, modality dropout, DataLoader workers and EMA on a pairs
    manifest, SIGKILLed two steps into epoch 2 and resumed: every tensor of the final checkpoint equals the
    uninterrupted run's, in one process and with two gloo ranks."""
    manifest = make_manifest(tmp_path / "pairs", train=16, test=4)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"] \
        if processes == 2 else None
    batch = 8 // processes
    common = ["train", "--model", "image=resnet8,audio=resnet8", "--fusion", "mmtm", "--fusion-stages", "2",
              "--modality-dropout", "0.3", "--dataset", f"pairs:{manifest}", "--epochs", "2", "--batch-size", str(batch),
              "--lr", "0.05", "--workers", "2", "--ema", "0.9", "--no-progress"]
    steps = 48 // (batch * processes)
    whole = _cli(*common, "--out", str(tmp_path / "whole"), launcher=launcher)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _cli(*common, "--out", str(tmp_path / "cut"), launcher=launcher,
                  env={"PLUGATTN_FAULT_KILL_AT_STEP": str(steps + 2)})
    assert killed.returncode != 0
    assert load_checkpoint(tmp_path / "cut" / "last.safetensors")[1]["epoch"] == 1
    resumed = _cli(*common, "--out", str(tmp_path / "cut"), "--resume", "auto", launcher=launcher)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_checkpoints(tmp_path / "whole", tmp_path / "cut")
    if processes == 1:
        summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
        assert summary["input_shape"] == {"image": [1, 8, 8], "audio": [1, 6, 10]} and summary["macs"] > 0
        assert any("fusion: mmtm at stages [2]" in note for note in summary["model_notes"])


def test_a_multimodal_run_learns_evaluates_under_corruption_and_draws_its_weights(tmp_path):
    manifest = make_manifest(tmp_path / "pairs", train=24, test=8)
    result = _cli("train", "--model", "resnet8", "--fusion", "se-sum", "--fusion-stages", "2,3", "--dataset",
                  f"pairs:{manifest}", "--epochs", "4", "--batch-size", "8", "--lr", "0.05", "--no-progress",
                  "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["top1"] > 0.5  # 3 classes, visible in both modalities
    metrics = evaluate_checkpoint(tmp_path / "run" / "last.safetensors", corrupt=["image=blank", "image=blank,audio=silence"])
    assert metrics["top1"] == pytest.approx(summary["top1"])
    both = metrics["corrupted"]["image=blank,audio=silence"]
    assert both["top1"] <= metrics["top1"] and len(set(both["confusion"][0])) >= 1
    shown = _cli("eval", str(tmp_path / "run" / "last.safetensors"), "--corrupt", "audio=noise:3")
    assert shown.returncode == 0 and "audio=noise:3" in shown.stdout and "under corruption" in shown.stdout
    wrong = _cli("eval", str(tmp_path / "run" / "last.safetensors"), "--corrupt", "depth=blank")
    assert wrong.returncode == 2 and "'depth'" in wrong.stderr and "['image', 'audio']" in wrong.stderr
    drawn = _cli("viz", str(tmp_path / "run" / "last.safetensors"), "--out", str(tmp_path / "viz"), "--samples", "24")
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    numbers = json.loads((tmp_path / "viz" / "modalities.json").read_text())
    assert set(numbers["clean"]) == {"fusions.0", "fusions.1"}
    assert set(numbers["under_corruption"]) == {"image", "audio"}
    for picture in ("modalities.png", "modalities_corrupted.png"):
        assert (tmp_path / "viz" / picture).stat().st_size > 5000


@pytest.mark.parametrize(("args", "fragments"), [
    (["--fusion", "mmtm", "--fusion-stages", "7"], ["fusion stage 7", "stages 1..3"]),
    (["--fusion", "mmtn", "--fusion-stages", "2"], ["did you mean 'mmtm'"]),
    (["--modality-dropout", "1.5"], ["modality_dropout", "[0, 1)"]),
])
def test_multimodal_bad_input_is_named(args, fragments, tmp_path):
    manifest = make_manifest(tmp_path / "pairs", train=4, test=2)
    result = _cli("train", "--model", "resnet8", "--dataset", f"pairs:{manifest}", "--epochs", "1", "--batch-size", "4",
                  "--no-progress", "--out", str(tmp_path / "run"), *args)
    message = " ".join(result.stderr.split())  # the console wraps long lines
    assert result.returncode == 2 and all(fragment in message for fragment in fragments), result.stderr[-2000:]


def test_fusion_options_on_image_data_are_refused(image_folder, tmp_path):
    with pytest.raises(ValueError, match="fusion and fusion_stages apply to paired data"):
        train(_config(image_folder, tmp_path, fusion="mmtm", fusion_stages=[2]))
