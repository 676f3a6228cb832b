from pathlib import Path

import pytest

from textbooklm.config import ConfigError, PipelineConfig, config_hash, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_demo_config_loads_with_defaults():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo.toml")
    assert cfg.corpus is not None
    assert cfg.corpus.dedup.num_perm == 128
    assert cfg.corpus.filters.max_lines == 50_000  # default filled in


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "[corpus.dedup]\nnum_perms = 64\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and "corpus.dedup.num_perms" in msg and "unknown key" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    p = write(tmp_path, "[run]\nworkers = 'many'\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "run.workers" in str(err.value) and "'many'" in str(err.value)


def test_cross_field_rule(tmp_path):
    with pytest.raises(ConfigError, match="multiple of bands"):
        load_config(write(tmp_path, "[corpus.dedup]\nnum_perm = 100\nbands = 16\n"))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[corpus\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_source_needs_path():
    with pytest.raises(ConfigError, match="needs a path"):
        parse_config({"corpus": {"sources": [{"kind": "folder"}]}})


def test_config_hash_changes_with_config_and_upstream():
    a = PipelineConfig.model_validate({"corpus": {}}).corpus
    b = PipelineConfig.model_validate({"corpus": {"files_per_shard": 7}}).corpus
    assert config_hash(a) == config_hash(a)
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, "x") != config_hash(a, "y")


@pytest.mark.parametrize("name", ["demo", "phi1-small", "phi1", "phi15"])
def test_shipped_configs_pass_check(name):
    from textbooklm.pipeline import stage_hashes

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.toml")
    stages = list(stage_hashes(cfg))
    assert stages[0] == "corpus" and stages[-1] == "report"
    if name != "demo":
        assert cfg.run.executor == "ray" and any(t.backend == "openai" for t in cfg.teachers.values())


@pytest.mark.parametrize("name", ["demo", "phi1-small", "phi1", "phi15", "ablation-tiny", "ablation-350m"])
def test_shipped_configs_pass_config_check(name):
    """The demo's references all resolve here; cluster configs name data the user provides (--skip-paths)."""
    from typer.testing import CliRunner

    from textbooklm.cli import app

    path = Path(__file__).parents[1] / "configs" / f"{name}.toml"
    args = ["config", "check", str(path)] + (["--skip-paths"] if name.startswith("phi") else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ": ok (" in result.output


def test_a_field_added_later_leaves_old_hashes_alone_until_it_is_set():
    """Upgrading must not re-run finished stages whose behaviour a new option leaves unchanged."""
    from pydantic import Field

    from textbooklm.config_base import ADDED_LATER, StrictModel
    from textbooklm.config_base import config_hash as hash_of

    class Inner(StrictModel):
        a: int = 1

    class Before(StrictModel):
        n: int = 3
        inner: Inner = Field(default_factory=Inner)

    class InnerAfter(Inner):
        new_inner: bool = Field(False, json_schema_extra=ADDED_LATER)

    class After(StrictModel):
        n: int = 3
        inner: InnerAfter = Field(default_factory=InnerAfter)
        new: float | None = Field(None, json_schema_extra=ADDED_LATER)

    class Unmarked(Before):
        plain: int = 0  # not marked: joins the hash like any field

    old = hash_of(Before())
    assert hash_of(After()) == old
    assert hash_of(Unmarked()) != old
    assert hash_of(After(new=0.5)) != old
    assert hash_of(After(inner=InnerAfter(new_inner=True))) != old


@pytest.mark.parametrize("value", ["[" * 3000 + "]" * 3000, "{a = " * 3000 + "1" + "}" * 3000,
                                   "[" * 100 + "]" * 100])
def test_deeply_nested_value_is_a_one_line_config_check_error(tmp_path, value):
    """Nesting near the recursion limit crashed tomllib (and repr, pydantic) with a traceback."""
    import subprocess
    import sys

    p = write(tmp_path, f"[corpus]\nsources = {value}\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(p)
    proc = subprocess.run([sys.executable, "-m", "textbooklm.cli", "config", "check", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{p}: ") and "nested too deeply" in lines[0], lines
