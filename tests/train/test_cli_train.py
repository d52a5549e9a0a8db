"""`umr train DATA_DIR --model M --out DIR` end to end on a synthetic dataset, then `umr eval --model DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umr.cli import main

pytest.importorskip("peft")

# the defaults (auto epochs and lr) must already give the lift on a tiny model
FAST = ["--no-progress"]


@pytest.fixture(scope="module")
def lift_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from umr.train.synthetic import ShapesTask

    return ShapesTask(colours=3, shapes=2, seed=0).write_dataset(
        tmp_path_factory.mktemp("shapes-cli"), train_per_class=32, test_per_class=8
    )


def test_train_then_eval_shows_a_large_held_out_gain(
    lift_dataset: Path, shapes_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(["train", str(lift_dataset), "--model", str(shapes_model_dir), "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "model saved to" in printed and "| recall@1 |" in printed and "| ndcg@10 |" in printed
    assert "10 epochs" in printed and "lr 0.005" in printed  # auto: ~100 steps capped at 10 passes; toy lr
    report = json.loads((out / "train_report.json").read_text())
    before = report["eval_before"]["retrieval"]["recall@1"]
    after = report["eval_after"]["retrieval"]["recall@1"]
    assert before <= 0.35, before  # 6 classes: chance is 1/6
    assert after >= 0.5 and after - before >= 0.3, (before, after)
    rc = main(["eval", str(lift_dataset), "--model", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert result["retrieval"]["recall@1"] == pytest.approx(after, abs=1e-9)  # same model, same held-out split
    rc = main(["eval", str(lift_dataset), "--model", str(shapes_model_dir), "--json"])
    assert json.loads(capsys.readouterr().out)["retrieval"]["recall@1"] == pytest.approx(before, abs=1e-9)


def test_rerun_resumes_and_json_output(
    shapes_dataset: Path, shapes_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["train", str(shapes_dataset), "--model", str(shapes_model_dir), "--out", str(out),
            "--batch-size", "4", "--epochs", "2", "--lora-r", "4", "--checkpoint-every", "1", "--no-progress"]
    assert main([*args, "--max-steps", "3", "--no-eval"]) == 0
    assert "stopped early" in capsys.readouterr().out
    assert main([*args, "--json", "--no-eval"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resumed_from_step"] == 3 and report["completed"] and report["steps"] == report["total_steps"] == 12


def test_usage_and_data_errors(
    shapes_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "nope"), "--model", str(shapes_model_dir), "--out", str(tmp_path / "o")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    (bad / "qrels" / "train.tsv").write_text("q1\td404\t1\n")
    rc = main(["train", str(bad), "--model", str(shapes_model_dir), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "corpus id 'd404' is not in corpus.jsonl" in err
    assert main(["train", str(bad), "--model", str(shapes_model_dir), "--out", str(tmp_path / "o"),
                 "--batch-size", "1"]) == 2


def test_missing_peft_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from umr.train.lora import require_peft

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r'pip install "umr\[train\]"'):
        require_peft()


def test_distill_from_a_reranker_caches_its_scores(
    shapes_model_dir: Path, tiny_reranker_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from umr.train.synthetic import ShapesTask

    data = ShapesTask(colours=2, shapes=2, seed=3).write_dataset(tmp_path / "data", train_per_class=2, test_per_class=1)
    out = tmp_path / "out"
    args = ["train", str(data), "--model", str(shapes_model_dir), "--out", str(out), "--batch-size", "8",
            "--lora-r", "4", "--distill", str(tiny_reranker_dir), "--distill-top-k", "3", "--hard-negatives", "1",
            "--no-eval", "--no-progress", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (out / "reranker_scores.json").is_file()
    assert any("0 cached, 24 computed" in n for n in first["notes"]), first["notes"]  # 8 queries x top-3
    assert main([*args, "--no-resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert any("24 cached, 0 computed" in n for n in second["notes"]), second["notes"]


def test_train_is_listed_in_the_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train" in capsys.readouterr().out
