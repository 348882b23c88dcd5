"""The evaluate command: each subcommand, and each older flag spelling, → one action with its options."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import cli, evaluate_cli
from trainer.evaluate import EVAL_SEED
from trainer.evaluate_cli import EvaluatePlan, Scoring, plan_from_args, with_action


def _plan(argv: list[str]) -> EvaluatePlan:
    return plan_from_args(cli.build_parser().parse_args(with_action(argv)))


# The older spelling (as docs/quality.md printed it) beside the subcommand that replaces it.
SPELLINGS = [
    (["evaluate", "all", "--n", "0", "--reference"], ["evaluate", "score", "all", "--n", "0", "--reference"]),
    (
        ["evaluate", "condgen-mnist", "--n", "10000", "--classifier-n", "0", "--threads", "2"],
        ["evaluate", "score", "condgen-mnist", "--n", "10000", "--classifier-n", "0", "--threads", "2"],
    ),
    (
        ["evaluate", "m", "--no-doc", "--device", "cpu"],
        ["evaluate", "score", "m", "--no-doc", "--device", "cpu"],
    ),
    (
        ["evaluate", "mnist", "--reference-only", "--real-n", "500", "--reference"],
        ["evaluate", "reference", "mnist", "--real-n", "500"],
    ),
    (["evaluate", "all", "--reference-only", "--no-doc"], ["evaluate", "reference", "all", "--no-doc"]),
    (
        ["evaluate", "all", "--doc-only", "--doc", "d/q.md", "--models", "x", "--n", "0"],
        ["evaluate", "doc", "--doc", "d/q.md", "--models", "x"],
    ),
    (
        ["evaluate", "m", "--checkpoints", "runs/m/epochs", "--append", "--n", "1000", "--reference"],
        ["evaluate", "curve", "m", "--append", "--n", "1000"],
    ),
    (
        ["evaluate", "m", "--checkpoints", "elsewhere", "--seed", "3"],
        ["evaluate", "curve", "m", "--checkpoints", "elsewhere", "--seed", "3"],
    ),
    (["--log-level", "DEBUG", "evaluate", "m"], ["--log-level", "DEBUG", "evaluate", "score", "m"]),
    (["evaluate", "--n", "5", "m"], ["evaluate", "score", "m", "--n", "5"]),
]


@pytest.mark.parametrize(("old", "new"), SPELLINGS)
def test_the_older_spelling_plans_what_its_subcommand_plans(old: list[str], new: list[str]) -> None:
    assert _plan(old) == _plan(new)


@pytest.mark.parametrize(("old", "new"), SPELLINGS[:1] + SPELLINGS[3:4] + SPELLINGS[5:7])
def test_main_runs_the_same_action_for_both_spellings(
    old: list[str], new: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[EvaluatePlan] = []

    def record(plan: EvaluatePlan) -> int:
        ran.append(plan)
        return 0

    monkeypatch.setattr(evaluate_cli, "RUNNERS", dict.fromkeys(evaluate_cli.ACTIONS, record))
    assert cli.main(old) == 0
    assert cli.main(new) == 0
    assert len(ran) == 2
    assert ran[0] == ran[1]


def test_each_subcommand_carries_its_options() -> None:
    score = _plan(["evaluate", "score", "a", "b", "a", "--reference", "--classifier-real-n", "300"])
    assert score.action == "score"
    assert score.targets == ("a", "b")  # a name given twice is scored once
    assert score.reference
    assert score.write_doc
    assert score.scoring == Scoring(classifier_real_n=300)
    assert score.seed == EVAL_SEED

    ref = _plan(["evaluate", "reference", "mnist", "fashion-mnist", "--no-doc", "--data-dir", "data/x"])
    assert (ref.action, ref.targets, ref.reference, ref.write_doc) == (
        "reference",
        ("mnist", "fashion-mnist"),
        False,
        False,
    )
    assert ref.scoring is not None
    assert ref.scoring.data_dir == Path("data/x")

    doc = _plan(["evaluate", "doc"])
    assert doc == EvaluatePlan("doc")  # scores nothing: no scoring options

    curve = _plan(["evaluate", "curve", "cdcgan-mnist", "--doc", "out/q.md"])
    assert (curve.action, curve.targets, curve.append) == ("curve", ("cdcgan-mnist",), False)
    assert curve.checkpoints == Path("runs/cdcgan-mnist/epochs")
    assert curve.doc == Path("out/q.md")


def test_with_action_leaves_subcommands_help_and_other_commands_alone() -> None:
    for argv in (
        ["evaluate", "doc"],
        ["evaluate", "-h"],
        ["train", "gan-mnist"],
        ["--log-level", "INFO", "list"],
    ):
        assert with_action(argv) == argv
    assert with_action(["evaluate", "x"]) == ["evaluate", "legacy", "x"]


def test_nonsense_is_refused_before_anything_is_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(evaluate_cli, "_config", lambda plan: pytest.fail("nothing should be scored"))
    assert cli.main(["evaluate", "all", "--doc-only", "--no-doc"]) == 2
    assert cli.main(["evaluate", "reference", "mnist", "cifar", "--doc", str(tmp_path / "q.md")]) == 2
    assert cli.main(["evaluate", "curve", "m", "--checkpoints", str(tmp_path)]) == 2  # no *.pt there
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "score"])  # a model is required
    assert "MODEL" in capsys.readouterr().err


def test_reference_takes_folder_datasets_by_name_or_classifier_key() -> None:
    from trainer.evaluate_cli import reference_datasets

    assert reference_datasets(("lego", "synthetic-faces")) == ["lego-bricks", "synthetic-faces"]
    assert reference_datasets(("faces", "faces")) == ["synthetic-faces"]
    assert reference_datasets(("all",)) == sorted(
        ["mnist", "fashion-mnist", "lego-bricks", "synthetic-faces"]
    )
    with pytest.raises(ValueError, match="not celeba"):
        reference_datasets(("lego", "celeba"))


def test_score_takes_model_directories_beside_names() -> None:
    plan = _plan(["evaluate", "score", "runs/export64/cdcgan64-lego", "m", "--n", "0", "--data-dir", "data"])
    assert plan.targets == ("runs/export64/cdcgan64-lego", "m")
    assert plan.scoring == Scoring(n=0, data_dir=Path("data"))
