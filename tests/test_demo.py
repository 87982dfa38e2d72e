"""The demo's story on real data at a small size: a plain network trained, SE and CBAM inserted as the
identity (its accuracy unchanged at insertion), fine-tuned against the plain network trained on, how far the
gates moved, pictures."""

import json
import re

import pytest

from plugattn.demo import find_av_data, run_demo
from tests.conftest import FASHION_MNIST


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_demo_inserts_attention_without_changing_accuracy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per row
    rows = run_demo(tmp_path, train_subset=1024, test_subset=1000, modality_images=512, latency_rounds=2,
                    av_train_pairs=3072, av_epochs=1, av_test_pairs=2000)
    pretrained = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert [row["attention"] for row in rows] == ["none", "se", "cbam"]
    for row in rows:  # the identity insertion computes what the trained network computed: same test predictions
        assert row["start_top1"] == pytest.approx(pretrained["top1"], abs=1.5 / 1000), row
    assert pretrained["top1"] > 0.15  # trained: above chance (10 classes), so equal accuracies are not trivial
    assert rows[1]["params"] > rows[0]["params"] and rows[2]["macs"] > rows[0]["macs"]
    table = (tmp_path / "finetune" / "results.md").read_text()
    assert "control" in table and "latency batch 8" in table and "top-1 before training" in table
    real_modalities = find_av_data(None) is not None  # AV-MNIST's sources in ../shared/data or data/
    pictures = ["insertion.png", "finetune/results.png", "viz/modalities.png", "viz/spatial.png", "viz/excitation.png",
                "viz/gradcam.png"] + (["viz/modalities_corrupted.png"] if real_modalities else [])
    for picture in pictures:
        assert (tmp_path / picture).stat().st_size > 5000, picture
    printed = capsys.readouterr().out
    if real_modalities:
        assert "AV-MNIST, two ResNet-8 streams with MMTM" in printed and "audio=noise:-10" in printed
        summary = json.loads((tmp_path / "avmnist" / "summary.json").read_text())
        assert summary["top1"] > 0.15  # 24 steps: above chance (10 classes, 2,000 test pairs)
    else:
        assert "plugattn fetch avmnist" in printed
    assert "top-1 at insertion" in printed and "+ CBAM (identity-boost)" in printed and "latency batch 8" in printed
    assert "how far the inserted gates moved from 1" in printed
    for network, gate in (("SE", "channel"), ("CBAM", "channel"), ("CBAM", "spatial")):  # one row each, spread > 0
        row = re.search(rf"\b{network}\W+{gate}\W+([0-9.]+) \(", printed)  # cells split by spaces or box lines
        assert row and float(row.group(1)) > 0, (network, gate)
    assert all(row["latency_b1"] > 0 and row["latency_b8"] > 0 for row in rows)

    again = run_demo(tmp_path, train_subset=1024, test_subset=1000, modality_images=512, latency_rounds=2,
                     av_train_pairs=3072, av_epochs=1, av_test_pairs=2000)
    assert [row["top1"] for row in again] == [row["top1"] for row in rows]  # finished runs are read, not redone
    assert "finished earlier, skipped" in capsys.readouterr().out
