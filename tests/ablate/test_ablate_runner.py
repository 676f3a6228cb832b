"""``textbooklm ablate`` end to end on a small real run (nano model, real training, real sandbox):
every arm x seed trained and measured, tables/plots/report written, re-runs redo nothing, a changed
arm is redone alone, and a SIGKILL mid-run followed by a re-run gives exactly the clean run's numbers."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
[ablate]
tokens = 2048            # 8 steps of 4 x 64
seeds = [0, 1, 2]
points = 2
val_fraction = 0.2
{arms}
[ablate.train]
model = {{ preset = "nano" }}
batch_size = 4
micro_batch_size = 4
log_every = 4

[ablate.finetune]
batch_size = 4
micro_batch_size = 4
max_steps = 4
lr = 1e-3

[ablate.eval]
val_sequences = 8
humaneval_limit = 3
n_samples = 2
max_new_tokens = 16
holdout_fraction = 0.3
"""


def write_config(path: Path, arms: str = "") -> Path:
    path.write_text(CONFIG.format(arms=arms))
    return path


def ablate(config: Path, run: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "textbooklm.cli", "ablate", str(config), "--run", str(run)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def points(run: Path) -> list[dict[str, str]]:
    with (run / "ablation" / "points.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def done(tmp_path_factory, run_maker) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("ablate_e2e")
    run = run_maker(root / "run")
    config = write_config(root / "ablation.toml")
    return run, config, finish(ablate(config, run))


def test_every_arm_and_seed_is_trained_and_measured(done):
    run, _, out = done
    summary = json.loads((run / "ablation" / "summary.json").read_text())
    table = {r["arm"]: r for r in summary["table"]}
    assert list(table) == ["A", "B", "C", "D"] and all(r["status"] == "trained" for r in table.values())
    assert all(r["seeds"] == 3 for r in table.values())
    # Equal budget for the pretraining arms; D continues from C with its finetuning tokens.
    assert table["A"]["tokens"] == table["B"]["tokens"] == table["C"]["tokens"] == 2048
    assert table["D"]["tokens"] == 2048 + 4 * 4 * 64
    for r in table.values():
        for m in summary["metrics"]:
            assert math.isfinite(r[f"{m} mean"])
        assert r["validation loss (shared) std"] > 0  # seeds differ
    assert "held-out exercises pass@1" in summary["metrics"] and "humaneval pass@1" in summary["metrics"]
    steps = {c["step"] for c in summary["comparisons"]}
    assert steps == {"A -> B", "B -> C", "C -> D"}
    assert len(summary["verdicts"]) == 3 * len(summary["metrics"])
    assert "ablate: A -> B" in out
    # D finetuned each seed's C model.
    state = json.loads((run / "ablation" / "D" / "seed-1" / "train" / "step-0000004" / "state.json").read_text())
    assert state["train_config"]["init_from"].endswith("C/seed-1/train/step-0000008")
    # Curves: 2 points per seed of every pretraining arm, for every metric measured there.
    rows = points(run)
    assert {(r["arm"], r["seed"], r["step"]) for r in rows if r["metric"] == "validation loss (shared)"} == {
        (a, str(s), str(t)) for a in "ABC" for s in range(3) for t in (4, 8)} | {
        ("D", str(s), str(t)) for s in range(3) for t in (2, 4)}


def test_each_seed_draws_its_own_documents(done):
    """The budget (2,048 tokens) takes a few documents of many: each seed's draw differs, so the spread
    over seeds covers which documents were taken, not only initialisation and order."""
    run, _, _ = done
    for arm in "ABC":
        packs = [json.loads((run / "ablation" / arm / f"pack-seed-{s}" / "index.json").read_text()) for s in range(3)]
        assert [p["seed"] for p in packs] == [0, 1, 2]
        # same held-out documents (the hash rule), different training draws
        assert len({json.dumps(p["splits"]["val"]) for p in packs}) == 1
        trained = {(run / "ablation" / arm / f"pack-seed-{s}" / "train" / "tokens-00000.bin").read_bytes()
                   for s in range(3)}
        assert len(trained) == 3, arm
        assert not (run / "ablation" / arm / "pack").exists()


def test_tables_plots_and_report(done):
    run, _, _ = done
    folder = run / "ablation"
    for name in ("table.csv", "comparisons.csv", "points.csv"):
        assert (folder / name).stat().st_size > 100
    pngs = sorted((folder / "plots").glob("*.png"))
    assert len(pngs) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (run / "report.html").read_text()
    section = html[html.index('id="ablation"'):]
    assert "Data ablation" in html and "A -&gt; B" in section and "Welch p" in section
    assert section.count("data:image/png;base64,") >= 4


def test_rerun_redoes_nothing(done):
    run, config, _ = done
    ckpt = run / "ablation" / "B" / "seed-2" / "train" / "step-0000008" / "model.safetensors"
    before, rows = ckpt.stat().st_mtime_ns, points(run)
    out = finish(ablate(config, run))
    assert "training" not in out and "measuring" not in out
    assert ckpt.stat().st_mtime_ns == before and points(run) == rows


def test_sigkill_then_rerun_equals_the_clean_run(done, tmp_path, run_maker):
    clean_run, config, _ = done
    run = run_maker(tmp_path / "run")
    proc = ablate(config, run)
    target = run / "ablation" / "B" / "seed-1" / "train" / "step-0000004"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "ablation" / "summary.json").exists()
    finish(ablate(config, run))
    key = lambda r: (r["arm"], r["seed"], r["step"], r["metric"])  # noqa: E731
    got = {key(r): float(r["value"]) for r in points(run)}
    want = {key(r): float(r["value"]) for r in points(clean_run)}
    assert got == want


def test_a_changed_arm_is_redone_alone_and_missing_exercises_skip_finetuning(tmp_path, run_maker):
    run = run_maker(tmp_path / "run", exercises=0)
    arms = """
[[ablate.arms]]
name = "A"
sources = [{ dataset = "corpus" }]
[[ablate.arms]]
name = "B"
sources = [{ dataset = "filter" }]
[[ablate.arms]]
name = "F"
sources = [{ dataset = "exercises" }]
base = "B"
"""
    config = write_config(tmp_path / "a.toml", arms)
    config.write_text(config.read_text().replace("val_fraction = 0.2\n", "val_fraction = 0.2\nresample = false\n"))
    out = finish(ablate(config, run))
    assert "F: skipped, no training tokens in exercises" in out
    # resample = false: one draw of documents for every seed
    assert (run / "ablation" / "A" / "pack").is_dir() and not list((run / "ablation" / "A").glob("pack-seed-*"))
    summary = json.loads((run / "ablation" / "summary.json").read_text())
    assert summary["skipped"] == {"F": "no training tokens in exercises: nothing there passed verification"}
    assert "held-out exercises pass@1" not in summary["metrics"]
    a_ckpt = run / "ablation" / "A" / "seed-0" / "train" / "step-0000008" / "model.safetensors"
    a_time = a_ckpt.stat().st_mtime_ns
    b_vals = [r["value"] for r in points(run) if r["arm"] == "B"]
    write_config(config, arms.replace('dataset = "filter" }', 'dataset = "filter" }, { dataset = "textbooks" }'))
    config.write_text(config.read_text().replace("val_fraction = 0.2\n", "val_fraction = 0.2\nresample = false\n"))
    out = finish(ablate(config, run))
    assert "ablate B (" in out and "ablate A (" not in out
    assert a_ckpt.stat().st_mtime_ns == a_time
    assert [r["value"] for r in points(run) if r["arm"] == "B"] != b_vals


def test_torchrun_launcher_trains_the_same_model(done, tmp_path):
    clean_run, _, _ = done
    run = tmp_path / "run"
    shutil.copytree(clean_run, run, ignore=shutil.ignore_patterns("ablation", "report.html"))
    config = write_config(tmp_path / "t.toml", '[[ablate.arms]]\nname = "A"\nsources = [{ dataset = "corpus" }]\n')
    config.write_text(config.read_text().replace("val_fraction = 0.2\n", 'val_fraction = 0.2\nlauncher = "torchrun"\n'))
    finish(ablate(config, run))
    assert (run / "ablation" / "A" / "seed-0" / "train_job.json").is_file()
    mine = {(r["seed"], r["step"], r["metric"]): r["value"] for r in points(run)}
    clean = {(r["seed"], r["step"], r["metric"]): r["value"] for r in points(clean_run) if r["arm"] == "A"}
    assert mine == clean
