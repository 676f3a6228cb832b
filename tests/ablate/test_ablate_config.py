"""The ablation config: phi-1's arms by default, strict validation, the shipped configs are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from textbooklm.ablate.config import AblationConfig
from textbooklm.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"model": {"preset": "nano"}}


def test_default_arms_are_phi1s_comparison():
    cfg = AblationConfig(tokens=1000, train=TRAIN, finetune=TRAIN)
    assert [a.name for a in cfg.arms] == ["A", "B", "C", "D"]
    assert [s.dataset for s in cfg.arms[0].sources] == ["corpus"]
    assert [s.dataset for s in cfg.arms[2].sources] == ["filter", "textbooks"]
    assert cfg.arms[3].base == "C"
    assert [a.paper_pass_at_1 for a in cfg.arms] == [12.19, 17.68, 20.12, 45.0]


@pytest.mark.parametrize("ablate, reason", [
    ({"seeds": [0, 1]}, "at least 3"),
    ({"seeds": [0, 0, 1]}, "seeds must differ"),
    ({"arms": [{"name": "A", "sources": [{"dataset": "corpus"}]}, {"name": "A", "sources": [{"dataset": "filter"}]}]},
     "unique"),
    ({"arms": [{"name": "D", "sources": [{"dataset": "exercises"}], "base": "C"}]}, "not an earlier arm"),
    ({"finetune": None}, "add an [ablate.finetune] section"),
    ({"tokenz": 5}, "unknown key"),
])
def test_bad_configs_name_the_key_and_reason(ablate, reason):
    raw = {"ablate": {"tokens": 1000, "train": TRAIN, "finetune": TRAIN, **ablate}}
    if raw["ablate"].get("finetune") is None:
        raw["ablate"].pop("finetune")
    with pytest.raises(ConfigError) as err:
        parse_config(raw, source="abl.toml")
    assert "abl.toml: ablate" in str(err.value) and reason in str(err.value)


@pytest.mark.parametrize("name", ["ablation-tiny.toml", "ablation-350m.toml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(ROOT / "configs" / name).ablate
    assert cfg is not None and len(cfg.seeds) >= 3 and [a.name for a in cfg.arms] == ["A", "B", "C", "D"]


def test_350m_config_is_phi1_small_through_torchrun():
    cfg = load_config(ROOT / "configs" / "ablation-350m.toml").ablate
    assert cfg.train.model.preset == "phi-1-small" and cfg.launcher == "torchrun" and cfg.nproc_per_node == 8


def test_heldout_share_follows_the_runs_decontam_and_never_exceeds_it(tmp_path):
    import json

    from textbooklm.ablate.runner import holdout_fraction

    assert holdout_fraction(None, tmp_path) == 0.2  # a folder without a recorded config
    (tmp_path / "run.json").write_text(json.dumps({"config": {"decontam": {"heldout_fraction": 0.1}}}))
    assert holdout_fraction(None, tmp_path) == 0.1
    assert holdout_fraction(0.05, tmp_path) == 0.05  # a subset of decontam's held-out sources: fine
    with pytest.raises(ValueError, match=r"0.2 is larger than the run.s \[decontam\] heldout_fraction 0.1"):
        holdout_fraction(0.2, tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"config": {"decontam": {"heldout_exercises": False}}}))
    assert holdout_fraction(0.3, tmp_path) == 0.3
