"""The function-name pool exercises are written for: phi-1's diversity trick, made explicit.

phi-1 got ~880k distinct exercises by constraining function names. Here the pool is built first,
deterministically and deduplicated, from data kind x verb x object seeds (``count_vowels``,
``remove_duplicates_in_words``, ``find_peaks``...) plus a list of classic algorithm names, each with
a parameter list that fixes what the function receives. A user's ``names_file`` comes first. The
pool is interleaved across data kinds and verbs, so any prefix of it covers them evenly.

The generated pool has a few hundred names: enough for the demo and small runs; for phi-1 scale,
supply a names file (e.g. written by a teacher and deduplicated).
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from textbooklm.synth.seeds import derived_seed, read_lines

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# data kind -> (topic phrase, parameters, objects)
KINDS: dict[str, tuple[str, str, list[str]]] = {
    "string": ("working with strings", "text: str",
               ["vowels", "words", "digits", "uppercase_letters", "consonants", "spaces", "sentences",
                "punctuation", "repeated_characters", "palindromic_substrings"]),
    "numbers": ("lists of numbers", "numbers: list[int]",
                ["even_numbers", "odd_numbers", "negatives", "duplicates", "peaks", "primes", "zeros",
                 "multiples_of_three", "local_minima", "increasing_runs"]),
    "words": ("lists of words", "words: list[str]",
              ["anagrams", "long_words", "palindromes", "capitalized_words", "short_words", "repeated_words",
               "words_with_digits", "vowel_initial_words"]),
    "matrix": ("grids stored as lists of lists", "grid: list[list[int]]",
               ["rows", "columns", "diagonal_values", "zero_cells", "row_maxima", "border_cells", "negative_cells"]),
    "scores": ("dictionaries", "scores: dict[str, int]",
               ["passing_names", "top_scores", "failing_names", "tied_scores", "perfect_scores"]),
    "intervals": ("intervals and ranges", "intervals: list[tuple[int, int]]",
                  ["overlaps", "gaps", "nested_intervals", "empty_intervals"]),
}
VERBS = ["count", "find", "remove", "first", "last", "sum_of", "sort", "reverse", "group", "has"]
_NUMERIC = {"even_numbers", "odd_numbers", "negatives", "primes", "multiples_of_three", "peaks", "local_minima",
            "row_maxima", "top_scores", "digits", "perfect_scores"}

CLASSICS: list[tuple[str, str, str]] = [
    ("binary_search", "items: list[int], target: int", "searching"),
    ("merge_sorted_lists", "left: list[int], right: list[int]", "sorting"),
    ("is_balanced_brackets", "text: str", "stacks"),
    ("rotate_matrix", "grid: list[list[int]]", "matrices"),
    ("flatten_nested_list", "items: list", "recursion"),
    ("run_length_encode", "text: str", "strings"),
    ("run_length_decode", "encoded: str", "strings"),
    ("greatest_common_divisor", "a: int, b: int", "number theory"),
    ("is_prime", "n: int", "number theory"),
    ("nth_fibonacci", "n: int", "dynamic programming"),
    ("transpose", "grid: list[list[int]]", "matrices"),
    ("moving_average", "values: list[float], window: int", "sliding windows"),
    ("two_sum_indices", "numbers: list[int], target: int", "hash maps"),
    ("longest_common_prefix", "words: list[str]", "strings"),
    ("max_subarray_sum", "numbers: list[int]", "dynamic programming"),
    ("count_islands", "grid: list[list[int]]", "graph search"),
    ("shortest_path_length", "graph: dict[str, list[str]], start: str, goal: str", "breadth-first search"),
    ("caesar_shift", "text: str, shift: int", "strings"),
    ("is_anagram", "first: str, second: str", "strings"),
    ("digit_sum", "n: int", "arithmetic"),
    ("to_binary", "n: int", "number bases"),
    ("from_roman", "numeral: str", "parsing"),
    ("to_roman", "n: int", "number formatting"),
    ("median", "values: list[float]", "statistics"),
    ("mode", "values: list[int]", "statistics"),
    ("chunk_list", "items: list[int], size: int", "lists"),
    ("interleave", "left: list[int], right: list[int]", "lists"),
    ("pascal_row", "n: int", "combinatorics"),
    ("count_paths_in_grid", "rows: int, cols: int", "dynamic programming"),
    ("knapsack_best_value", "weights: list[int], values: list[int], capacity: int", "dynamic programming"),
    ("edit_distance", "first: str, second: str", "dynamic programming"),
    ("merge_intervals", "intervals: list[tuple[int, int]]", "intervals"),
    ("word_frequencies", "text: str", "dictionaries"),
    ("invert_dictionary", "mapping: dict[str, int]", "dictionaries"),
    ("second_largest", "numbers: list[int]", "lists"),
    ("is_sorted", "numbers: list[int]", "sorting"),
    ("valid_ipv4", "address: str", "parsing"),
    ("power_set_size", "items: list[int]", "combinatorics"),
]


@dataclass(frozen=True)
class FunctionName:
    """One name of the pool with what fixes the exercise's shape."""

    name: str
    params: str
    topic: str
    kind: str  # data kind, 'classic' or 'user'
    verb: str = ""

    @property
    def signature(self) -> str:
        return f"{self.name}({self.params})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def generated_names(seed: int = 0) -> list[FunctionName]:
    """The kind x verb x object pool plus the classics, deduplicated and interleaved."""
    per_kind: dict[str, list[FunctionName]] = {}
    seen: set[str] = set()
    for kind, (topic, params, objects) in KINDS.items():
        names = []
        for obj in objects:
            for verb in VERBS:
                if verb == "sum_of" and obj not in _NUMERIC:
                    continue
                name = f"{verb}_{obj}"
                if name in seen:  # the same object in two kinds: say which
                    name = f"{verb}_{obj}_in_{kind}"
                seen.add(name)
                names.append(FunctionName(name, params, topic, kind, verb))
        per_kind[kind] = names
    per_kind["classic"] = [FunctionName(n, p, t, "classic") for n, p, t in CLASSICS if n not in seen]
    rng = random.Random(derived_seed("names", seed))
    for names in per_kind.values():
        rng.shuffle(names)
    # Round-robin across kinds so every prefix covers all of them.
    pool: list[FunctionName] = []
    queues = list(per_kind.values())
    while any(queues):
        for q in queues:
            if q:
                pool.append(q.pop())
    return pool


_USER_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def user_names(path: str | Path) -> list[FunctionName]:
    """``name`` or ``name(params)`` per line; a bad line names the file, the line and the reason."""
    out = []
    for i, line in enumerate(read_lines(path, "function-names"), 1):
        m = _USER_LINE.match(line)
        if not m:
            raise ValueError(f"{path}: entry {i} {line!r} is not 'name' or 'name(params)'")
        out.append(FunctionName(m.group(1), (m.group(2) or "").strip(), "Python programming", "user"))
    return out


def name_pool(count: int, names_file: str | Path | None = None, seed: int = 0) -> list[FunctionName]:
    """The first ``count`` distinct names: the user's file first, then the generated pool."""
    pool = (user_names(names_file) if names_file else []) + generated_names(seed)
    unique: dict[str, FunctionName] = {}
    for fn in pool:
        if not _IDENT.match(fn.name):
            raise ValueError(f"function name {fn.name!r} is not a Python identifier")
        unique.setdefault(fn.name, fn)
    if count > len(unique):
        raise ValueError(
            f"exercises.count is {count} but only {len(unique)} distinct function names are available; "
            "add more in exercises.names_file"
        )
    return list(unique.values())[:count]
