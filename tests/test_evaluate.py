"""The evaluation script on a small real dataset and a tiny model: every method and metric, the control, the files."""

from __future__ import annotations

import json
import math

import pytest

from psp_hub import PSPGAN, tiny_config
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.evaluation import METRICS, main, other_person_index
from tests.model_helpers import make_live


def test_other_person_index_never_picks_the_same_person():
    ids = ["a", "a", "b", "c", "c", "c"]
    swap = other_person_index(ids).tolist()
    assert all(ids[j] != ids[i] for i, j in enumerate(swap))
    assert other_person_index(["a", "b"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="two people"):
        other_person_index(["a", "a"])


def test_evaluate_writes_every_method_metric_and_group(faces, tmp_path):
    data = build_sample_dataset(faces, tmp_path / "data")
    model_dir = tmp_path / "model"
    make_live(PSPGAN(tiny_config(64))).save_pretrained(model_dir)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "--model",
                str(model_dir),
                "--data",
                str(data),
                "--levels",
                "severe",
                "--refs",
                "0",
                "1",
                "--max-samples",
                "8",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--other-person-refs",
                "--card",
                "--summary",
                "test run",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    severe = results["levels"]["severe"]
    assert severe["samples"] == 8
    assert set(severe["methods"]) == {"bicubic", "K=0", "K=1", "K=1, other person"}
    for groups in severe["methods"].values():
        for metrics in groups.values():
            assert set(metrics) == set(METRICS) and all(math.isfinite(v) for v in metrics.values())
            assert 0 <= metrics["ssim"] <= 1 and 0 <= metrics["lpips"] <= 1.5 and metrics["dlib_distance"] >= 0
    # a live (random) fusion makes the other person's references give a different result from the right ones
    assert severe["methods"]["K=1"]["all"] != severe["methods"]["K=1, other person"]["all"]
    assert "K=1, other person" in (out / "results.md").read_text()
    assert (out / "grid.png").stat().st_size > 0
    card = (model_dir / "README.md").read_text()  # --card: the table, the control explained, how to reproduce
    assert "| K=1, other person |" in card and "*K=1, other person*:" in card and "--other-person-refs" in card
    assert (model_dir / "eval_grid.webp").is_file() and json.loads(
        (model_dir / "eval_results.json").read_text()
    ) == results
    assert "--refs 0 1" in card and "LFW (research use" in card  # the 128 px corpus' licences by default
    _check_card_from_results(model_dir, out, results, tmp_path)


def _check_card_from_results(model_dir, out, results, tmp_path):
    """The card again from a finished run's results, with another data section: nothing is evaluated again."""
    (out / "results.json").write_text(json.dumps({**results, "seconds": -1.0}))
    data_md = tmp_path / "data.md"
    data_md.write_text("Trained on the sharp set (research use only).")
    card_args = ["--model", str(model_dir), "--refs", "0", "1", "--other-person-refs", "--card"]
    card_args += ["--results", str(out / "results.json"), "--training-data", str(data_md), "--datasets", "sharp"]
    assert main(card_args) == 0
    card = (model_dir / "README.md").read_text()
    assert "Trained on the sharp set (research use only)." in card and "LFW (research use" not in card
    assert "- sharp" in card and "- lfw" not in card
    assert json.loads((model_dir / "eval_results.json").read_text())["seconds"] == -1.0
