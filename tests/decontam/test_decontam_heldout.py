"""Held-out exercises as a benchmark, on a small real run: corpus -> judge -> classify -> filter ->
exercises mined from the filtered files (tests from the real sandbox) -> decontam.

What must hold: no held-out exercise (its function, its source file) is left in any training dataset,
no source file has exercises on both sides of the split, every removal keeps its evidence, and
decontam keeps the provenance that reached it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textbooklm.code_tasks import load_problems
from textbooklm.config import parse_config
from textbooklm.evals.config import HeldOutExercises
from textbooklm.evals.heldout import (
    TrainingSource,
    heldout_problems,
    heldout_source_files,
    model_overlap,
    training_overlap,
)
from textbooklm.lm.pack import PackedTokens
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.pipeline import run_pipeline
from textbooklm.record import exercise_source_key, is_heldout_exercise, provenance
from textbooklm.run import Run
from textbooklm.store import Dataset

pytestmark = pytest.mark.slow
FRACTION = 0.5

# Six modules of two documented functions each (mined into exercises), with enough statements that an
# AST match on them decides alone.
FUNCTIONS = [
    ("running_total", "values", "Return the running totals of values.",
     "out = []\n    total = 0\n    for v in values:\n        total += v\n        out.append(total)\n    return out"),
    ("count_evens", "values", "Count the even numbers among values.",
     "n = 0\n    for v in values:\n        if v % 2 == 0:\n            n += 1\n    return n"),
    ("largest_gap", "values", "Return the largest difference between neighbouring values.",
     "best = 0\n    for a, b in zip(values, values[1:]):\n        if abs(b - a) > best:\n"
     "            best = abs(b - a)\n    return best"),
    ("squares_below", "limit", "List the squares of the numbers below limit.",
     "out = []\n    k = 0\n    while k * k < limit:\n        out.append(k * k)\n        k += 1\n    return out"),
    ("digit_sum", "number", "Add up the decimal digits of a non-negative number.",
     "number = abs(number)\n    total = 0\n    while number:\n        total += number % 10\n        number //= 10\n"
     "    return total"),
    ("halve_odds", "values", "Halve the odd values (rounding down) and keep the even ones.",
     "out = []\n    for v in values:\n        if v % 2:\n            out.append(v // 2)\n        else:\n"
     "            out.append(v)\n    return out"),
    ("clip_all", "values", "Clip every value into the range 0..9.",
     "out = []\n    for v in values:\n        if v < 0:\n            v = 0\n        elif v > 9:\n            v = 9\n"
     "        out.append(v)\n    return out"),
    ("alternating_sum", "values", "Add the values at even positions and subtract the others.",
     "total = 0\n    for i, v in enumerate(values):\n        if i % 2:\n            total -= v\n        else:\n"
     "            total += v\n    return total"),
    ("count_runs", "values", "Count the runs of equal neighbouring values.",
     "runs = 0\n    prev = None\n    for v in values:\n        if v != prev:\n            runs += 1\n"
     "        prev = v\n    return runs"),
    ("first_repeat", "values", "Return the first value seen twice, or -1.",
     "seen = set()\n    for v in values:\n        if v in seen:\n            return v\n        seen.add(v)\n"
     "    return -1"),
    ("triangle_numbers", "count", "List the first count triangle numbers.",
     "out = []\n    total = 0\n    for k in range(1, count + 1):\n        total += k\n        out.append(total)\n"
     "    return out"),
    ("longest_rise", "values", "Length of the longest strictly rising stretch of values.",
     "best = 0\n    run = 0\n    prev = None\n    for v in values:\n"
     "        run = run + 1 if prev is not None and v > prev else 1\n        best = max(best, run)\n        prev = v\n"
     "    return best"),
]
TYPES = {"values": "list[int]", "limit": "int", "number": "int", "count": "int"}


def function_source(name: str, arg: str, doc: str, body: str) -> str:
    return f'def {name}({arg}: {TYPES[arg]}):\n    """{doc}"""\n    {body}\n'


def undocumented_copy(name: str, arg: str, body: str) -> str:
    """The function without its docstring, renamed: not mined, caught only by the AST match."""
    return f"def vendored_{name}(items):\n    " + body.replace(arg, "items") + "\n"


def corpus_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for m in range(6):
        funcs = FUNCTIONS[2 * m : 2 * m + 2]
        text = f'"""Module {m}: small list utilities for the lessons."""\n\n\n' + "\n\n".join(
            function_source(*f) for f in funcs)
        (root / f"utils_{m}.py").write_text(text)
    # Every function again, renamed and without docstrings, in one file nobody mines.
    (root / "vendored.py").write_text('"""Vendored helpers."""\n\n\n' + "\n\n".join(
        undocumented_copy(n, a, b) for n, a, _, b in FUNCTIONS))
    # A one-line __eq__ with HumanEval/54's tree shape (set(a) == set(b)): tiny, must not be removed.
    (root / "bag.py").write_text('"""A bag of items."""\n\n\nclass Bag(list):\n    """Items."""\n\n'
                                 "    def __eq__(self, other):\n        return set(self) == set(other)\n\n"
                                 "    def size(self):\n        return len(self)\n")
    for i in range(6):
        (root / f"data_{i}.py").write_text("".join(f"x{j} = {(j + i) * 7919 % 1000}\n" for j in range(40)))
    return root


@pytest.fixture(scope="module")
def heldout_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heldout")
    cfg = parse_config({
        "run": {"workers": 1, "seed": 0},
        "corpus": {"sources": [{"kind": "folder", "path": str(corpus_folder(root / "code"))}],
                   "dedup": {"near": False}, "filters": {"min_lines": 1}},
        "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
        "classify": {"embedder": "hashing-256", "n_estimators": 10, "test_fraction": 0.3},
        "filter": {"threshold": 0.0},  # keep every file: this test is about held-out exercises
        "exercises": {"source": "corpus", "min_tests": 3, "sandbox": {"timeout_s": 3.0},
                      "corpus": {"inputs": 10, "per_call_s": 0.2}},
        "decontam": {"embedder": "hashing", "heldout_fraction": FRACTION, "rows_per_task": 4},
        # A nano model through pretraining and finetuning, to measure what it trained on.
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "pack": {"val_fraction": 0.1},
        "pretrain": {"model": {"preset": "nano"}, "max_steps": 2, "batch_size": 2, "micro_batch_size": 2,
                     "eval_every": 2, "save_every": 2},
        "finetune": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "eval_every": 2, "save_every": 2,
                     "loss_on": "completion", "data": {"sources": [{"dataset": "exercises"}], "loss_on": "completion",
                                                       "val_fraction": FRACTION}},
    })
    run_pipeline(cfg, root / "run")
    return root / "run"


def test_heldout_exercises_are_in_no_training_dataset(heldout_run):
    exercises = Dataset(heldout_run / "exercises")
    rows = list(exercises.iter_records())
    held = [r for r in rows if is_heldout_exercise(r, FRACTION)]
    train = [r for r in rows if not is_heldout_exercise(r, FRACTION)]
    assert held and train, "the split must put some source files on each side"
    problems = heldout_problems(exercises, FRACTION)
    files = heldout_source_files(exercises, FRACTION)
    assert files and set(files.values()) <= set(Dataset(heldout_run / "filter").column("id"))

    cleaned = [TrainingSource("filter", Dataset(heldout_run / "decontam" / "filter"), 0.0),
               TrainingSource("exercises", Dataset(heldout_run / "decontam" / "exercises"), FRACTION)]
    got = training_overlap({"exercises": problems}, cleaned, files)
    assert got["exercises"]["overlapping"] == 0, got
    # The same measure finds them all in the data decontam was given (the failure this prevents).
    raw = training_overlap({"exercises": problems}, [TrainingSource("filter", Dataset(heldout_run / "filter"), 0.0)],
                           files)
    assert raw["exercises"]["overlapping"] == len(problems)

    kept_ids = set(Dataset(heldout_run / "decontam" / "filter").column("id"))
    assert not set(files.values()) & kept_ids
    rejected = {r["id"]: r for r in Dataset(heldout_run / "decontam" / "rejected").iter_records()}
    for source in set(files.values()):
        assert rejected[source]["reason"] == "contaminated-source"
    # The renamed, undocumented copies are caught by the AST match against the held-out exercises.
    vendored = next(r for r in Dataset(heldout_run / "filter").iter_records() if r["path"].endswith("vendored.py"))
    assert vendored["id"] in rejected and rejected[vendored["id"]]["signal"] == "ast"
    assert rejected[vendored["id"]]["problem_id"].startswith("exercise/")

    report = json.loads((heldout_run / "decontam" / "report.json").read_text())
    assert report["heldout_exercises"]["n_problems"] == len(held)
    assert report["n_problems"] == 164  # the HumanEval pruning table stays about HumanEval
    # The ledger counts checked training records; the held-out exercises pass through, counted apart.
    counts = Dataset(heldout_run / "decontam").manifest["summary"]["counts"]
    assert counts["counters"]["heldout_exercises"] == len(held)
    copies = [Dataset(p) for p in (heldout_run / "decontam").iterdir() if p.is_dir() and p.name != "rejected"
              and Dataset(p).is_finished]
    assert sum(c.num_rows for c in copies) == counts["kept"] + len(held)
    assert Dataset(heldout_run / "decontam" / "rejected").num_rows == counts["dropped"] == len(rejected)


def test_no_source_file_on_both_sides_and_the_split_is_carried(heldout_run):
    cleaned = list(Dataset(heldout_run / "decontam" / "exercises").iter_records())
    sides: dict[str, set[str]] = {}
    for r in cleaned:
        note = provenance(r)["decontam"]
        assert note["split"] == ("heldout" if is_heldout_exercise(r, FRACTION) else "train")
        assert note["split_key"] == exercise_source_key(r) and note["split_fraction"] == FRACTION
        sides.setdefault(note["split_key"], set()).add(note["split"])
    assert all(len(s) == 1 for s in sides.values()) and {"heldout"} in sides.values()
    # Every held-out exercise is still there (finetuning's validation split, eval's held-out set).
    held = {r["id"] for r in Dataset(heldout_run / "exercises").iter_records() if is_heldout_exercise(r, FRACTION)}
    assert held <= {r["id"] for r in cleaned}


def test_every_removal_keeps_its_pair_and_a_tiny_ast_match_does_not_decide(heldout_run):
    out = heldout_run / "decontam"
    rejected = list(Dataset(out / "rejected").iter_records())
    assert rejected
    for r in rejected:
        pair = json.loads(r["pair"])
        assert pair["problem_id"] == r["problem_id"] and pair["signal"] == r["signal"]
        assert pair["problem_text"] and pair["training_snippet"] and pair["score"] is not None
        if r["signal"] in ("ast", "source"):  # from the matched function on, not the file's head
            assert pair["training_snippet"].startswith("def ") and len(pair["training_snippet"]) < len(r["text"])
    pairs = json.loads((out / "pairs.json").read_text())
    assert {(p["id"], p["problem_id"]) for p in pairs if p["decision"] != "keep"} == {
        (r["id"], r["problem_id"]) for r in rejected}

    bag = next(r for r in Dataset(out / "filter").iter_records() if r["path"].endswith("bag.py"))
    note = provenance(bag)["decontam"]
    assert note["decision"] == "keep" and note["ast_problem"] == "HumanEval/54" and note["ast_tau"] >= 0.9
    assert "statement" in note["held_back"]
    report = json.loads((out / "report.json").read_text())
    assert all("HumanEval/54" not in t["similar_problems"] for t in report["taus"])
    shown = next(p for p in pairs if p["id"] == bag["id"])
    assert shown["held_back"] and "set(self) == set(other)" in shown["training_snippet"]


def test_decontam_keeps_the_provenance_that_reached_it(heldout_run):
    before = {r["id"]: provenance(r) for r in Dataset(heldout_run / "filter").iter_records()}
    for r in Dataset(heldout_run / "decontam" / "filter").iter_records():
        after = provenance(r)
        assert {k: v for k, v in after.items() if k != "decontam"} == before[r["id"]]
        assert {"corpus", "filter"} <= set(after)


def test_finetuning_trains_on_the_train_side_only_and_eval_measures_it(heldout_run):
    exercises = list(Dataset(heldout_run / "decontam" / "exercises").iter_records())
    tok = load_tokenizer(heldout_run / "tokenizer" / "tokenizer.json")
    data = heldout_run / "finetune" / "data"
    text = {split: tok.decode([int(t) for s in PackedTokens(data, split, 8).tokens for t in s])
            for split in ("train", "val")}
    for r in exercises:  # each exercise is packed on its side of the split, never on the other
        side, other = ("val", "train") if is_heldout_exercise(r, FRACTION) else ("train", "val")
        assert f"def {r['entry_point']}(" in text[side] and f"def {r['entry_point']}(" not in text[other]
    # What each model trained on, through its lineage, holds no held-out exercise and no HumanEval problem.
    run = Run(heldout_run)
    problems = heldout_problems(Dataset(heldout_run / "decontam" / "exercises"), FRACTION)
    section = HeldOutExercises(dataset="exercises", fraction=FRACTION)
    for model in ("pretrain", "finetune"):
        got = model_overlap(run, model, load_problems("humaneval")[:20], problems, section)
        assert got["exercises"]["overlapping"] == 0 and got["humaneval"]["overlapping"] == 0, got
        paths = {Path(d["path"]).relative_to(heldout_run).as_posix() for d in got["training_data"]}
        assert "decontam/filter" in paths
    assert "decontam/exercises" in paths  # the finetuned model: pretraining data and the exercises
    assert model_overlap(run, "/elsewhere/model", [], problems, section).keys() == {"unknown"}
