"""Write ``benchmarks/data/exercise_replies.jsonl`` (+ ``.json``) from a finished run's teacher cache.

The recording bench_exercises.py replays: every exercise and extra-solution reply the run's teacher
gave (matched by prompt text and seed), and the exercises settings that reproduce the same prompts.

Usage: python benchmarks/record_exercise_replies.py RUN_DIR [--config CONFIG.toml]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from textbooklm.config import load_config

OUT = Path(__file__).parent / "data" / "exercise_replies.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    args = ap.parse_args()
    cfg = load_config(args.config)
    ex = cfg.exercises.model_dump(mode="json", exclude={"teacher", "source", "corpus", "generate_inputs"})
    db = args.run_dir / "_cache" / "teacher_cache.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = []
    for request, result in con.execute("SELECT request, result FROM results"):
        req, res = json.loads(request), json.loads(result)
        content = req["messages"][-1]["content"]
        if "Complete this Python function" not in content and "Each exercise is one code block" not in content:
            continue  # not an exercise or solution prompt
        if res.get("error"):
            continue
        rows.append({"content": content, "seed": req["params"]["seed"], "max_tokens": req["params"]["max_tokens"],
                     "text": res["text"], "finish_reason": res.get("finish_reason")})
    rows.sort(key=lambda r: (r["content"], r["seed"] or 0))
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    OUT.with_suffix(".json").write_text(json.dumps({"seed": cfg.run.seed, "teacher": cfg.teachers[cfg.exercises.teacher]
                                                    .model_dump(mode="json", include={"backend", "model"}),
                                                    "config": ex, "replies": len(rows)}, indent=1) + "\n")
    print(f"{len(rows)} replies -> {OUT}")


if __name__ == "__main__":
    main()
