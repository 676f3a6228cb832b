import json
import subprocess
import sys

from typer.testing import CliRunner

from textbooklm.cli import app

runner = CliRunner()


def test_help_lists_stages():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "status", "config", "corpus"):
        assert cmd in res.output


def test_help_groups_pipeline_stage_and_tool_commands():
    out = runner.invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    pipeline, stages, tools = (out.index(f"{g} commands:") for g in ("Pipeline", "Stage", "Tool"))
    assert pipeline < stages < tools
    section = {name: out.rindex("commands:", 0, out.index(f"\n  {name} ")) for name in
               ("run", "status", "corpus", "decontam", "synth", "sandbox", "generate")}
    assert section["run"] == section["status"] == out.index("Pipeline commands:") + len("Pipeline ")
    assert section["corpus"] == section["decontam"] == section["synth"] == out.index("Stage commands:") + len("Stage ")
    assert section["sandbox"] == section["generate"] == out.index("Tool commands:") + len("Tool ")


def test_corpus_help_explains_options():
    res = runner.invoke(app, ["corpus", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for opt in ("--glob", "--num-perm", "--threshold", "--max-line-length", "--min-alnum-fraction", "--workers"):
        assert opt in res.output
    assert "Shingle size" in res.output  # field description used as help text


def test_config_show_and_check(tmp_path):
    res = runner.invoke(app, ["config", "show", "configs/demo.toml"])
    assert res.exit_code == 0
    shown = json.loads(res.stdout)
    assert shown["corpus"]["filters"]["max_lines"] == 50_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[corpus]\nfile_per_shard = 3\n")
    res = runner.invoke(app, ["config", "check", str(bad)])
    assert res.exit_code == 2 and "corpus.file_per_shard: unknown key" in res.output
    assert runner.invoke(app, ["config", "check", "configs/demo.toml"]).exit_code == 0


def test_corpus_command_then_status(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.py").write_text("".join(f"v{i}_{j} = {j} * {i} + 1\n" for j in range(6)))
    (src / "tiny.py").write_text("x = 1\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["corpus", str(src), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "3 kept" in res.output and "too-few-lines 1" in res.output
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "corpus" in res.output and "done" in res.output


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "textbooklm.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "corpus" in res.stdout
