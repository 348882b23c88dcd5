from __future__ import annotations

from pathlib import Path

from tests.service.onnx_fixtures import DIGITS, edit_card, write_model
from trainer.report import END, START, write_reports


def test_report_lists_every_valid_card_and_rewrites_only_the_marked_block(tmp_path: Path) -> None:
    zoo = tmp_path / "exported"
    write_model(zoo, "cond-gray", dim=16, labels=DIGITS, seed=1, samples=True)
    write_model(zoo, "uncond", dim=12, value_range=(0.0, 1.0), seed=3)
    variant = write_model(zoo, "cond-gray-int8", dim=16, labels=DIGITS, seed=2)
    quantization = {"source": "cond-gray", "source_sha256": "0" * 64, "scheme": "QDQ", "calibrated_on": "z"}
    edit_card(variant, quantization=quantization)
    broken = zoo / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{START}\nstale\n{END}\n\n## after\n")

    cards = write_reports(zoo, readme)

    assert [c.name for c in cards] == ["cond-gray", "cond-gray-int8", "uncond"]
    page = (zoo / "README.md").read_text()
    assert "| `cond-gray` |" in page
    assert "| `cond-gray-int8` (int8 of `cond-gray`) |" in page
    assert "![cond-gray](cond-gray/samples.png)" in page
    assert "broken" not in page
    text = readme.read_text()
    assert text.startswith("# intro\n")
    assert text.endswith("## after\n")
    assert "stale" not in text
    assert f"![uncond]({zoo.as_posix()}/uncond/samples.png)" in text
    assert "10 classes" in text
