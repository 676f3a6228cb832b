"""The demo config asks for both exercise sources, passes `config check`, and holds out of finetuning
exactly the exercises its eval scores."""

from __future__ import annotations

from pathlib import Path

from textbooklm.config import load_config
from textbooklm.run_check import check_run

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def test_demo_config_checks_and_uses_both_sources():
    cfg = load_config(DEMO)
    assert check_run(cfg, str(DEMO)) == []
    assert cfg.exercises.sources == ["corpus", "teacher"] and cfg.exercises.teacher == "smollm2"
    assert cfg.filter is not None  # what corpus mining reads
    assert cfg.eval.heldout_exercises.fraction == cfg.finetune.data.val_fraction
    assert [s.dataset for s in cfg.finetune.data.sources] == ["exercises"]
