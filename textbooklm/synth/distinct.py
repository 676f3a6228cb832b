"""Diversity figures of a whole synthetic dataset in constant memory: distinct n-grams and openings.

Why: the overall distinct-n of a dataset used to be one Python set of every distinct word n-gram
(~170 kB per textbook): phi-1's 500k textbooks would need tens of GB for that set alone, phi-1.5's
13M a terabyte or more. Here:

- each n-gram is a stable 64-bit hash (a polynomial hash of each word's bytes, vectorised over the
  text, mixed with splitmix64 by position), so a resumed run gives the same figures as an
  uninterrupted one;
- up to ``exact_limit`` distinct n-grams are counted exactly (a set of those hashes); beyond it the
  set is folded into a HyperLogLog sketch of 2^14 registers (16 kB) whose relative standard error is
  1.04 / sqrt(2^14) = 0.81% (Flajolet et al. 2007), and the report says the figure is estimated;
- the most repeated openings are kept by the Misra-Gries algorithm with ``capacity`` counters:
  exact while fewer distinct openings were seen, else each count is under by at most
  samples / capacity (enough to name a template the teacher keeps reusing).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

HLL_P = 14
HLL_M = 1 << HLL_P
HLL_ERROR = round(1.04 / HLL_M ** 0.5, 4)
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return x ^ (x >> np.uint64(31))


_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2^64
_POWERS = np.ones(1, dtype=np.uint64)
_INVERSE = np.ones(1, dtype=np.uint64)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i modulo 2^64 for i < n (grown on demand, kept)."""
    global _POWERS, _INVERSE
    if len(_POWERS) < n:
        size = max(n, 2 * len(_POWERS))
        inv_base = np.uint64(pow(int(_BASE), -1, 2**64))
        with np.errstate(over="ignore"):
            _POWERS = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, _BASE, dtype=np.uint64)], dtype=np.uint64)
            _INVERSE = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, inv_base, dtype=np.uint64)], dtype=np.uint64)
    return _POWERS, _INVERSE


def word_hashes(text: str) -> np.ndarray:
    """A stable 64-bit hash per whitespace-separated word of ``text`` lower-cased, computed for all words
    at once: a polynomial hash of each word's UTF-8 bytes from prefix sums (no Python loop per word).
    Words are what ``str.split`` gives: a text with non-ASCII characters is re-joined with spaces first, so
    Unicode spaces (no-break, ideographic, ...) separate words here too."""
    lowered = text.lower()
    if not lowered.isascii():
        lowered = " ".join(lowered.split())
    data = np.frombuffer(lowered.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.uint64)
    space = np.isin(data, np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8))
    edges = np.diff(np.r_[True, space, True].astype(np.int8))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    powers, inverse = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        prefix = np.r_[np.uint64(0), np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers[: len(data)],
                                                dtype=np.uint64)]
        h = (prefix[ends] - prefix[starts]) * inverse[starts]
        return _splitmix(h ^ (ends - starts).astype(np.uint64))


def ngram_hashes(words: np.ndarray | list[str], n: int) -> np.ndarray:
    """A stable 64-bit hash per word n-gram, from per-word hashes (``word_hashes``) or words."""
    if not isinstance(words, np.ndarray):
        words = word_hashes(" ".join(words))
    w = words
    if len(w) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(w) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = _splitmix(h ^ (w[j: len(w) - n + 1 + j] + np.uint64(j + 1)))
    return h


class DistinctCounter:
    """Distinct count of 64-bit hashes: exact up to ``exact_limit``, then HyperLogLog."""

    def __init__(self, exact_limit: int = 200_000) -> None:
        self.exact_limit = exact_limit
        self.exact: set[int] | None = set()
        self.registers = np.zeros(HLL_M, dtype=np.uint8)
        self.total = 0

    def add(self, hashes: np.ndarray) -> None:
        self.total += len(hashes)
        if self.exact is not None:
            self.exact.update(hashes.tolist())
            if len(self.exact) <= self.exact_limit:
                return
            hashes = np.fromiter(self.exact, dtype=np.uint64, count=len(self.exact))
            self.exact = None
        self._sketch(hashes)

    def _sketch(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        index = (hashes >> np.uint64(64 - HLL_P)).astype(np.int64)
        rest = hashes & np.uint64((1 << (64 - HLL_P)) - 1)  # < 2^50: exact in float64
        bits = np.zeros(len(rest), dtype=np.int64)
        nonzero = rest > 0
        bits[nonzero] = np.floor(np.log2(rest[nonzero].astype(np.float64))).astype(np.int64) + 1
        rank = ((64 - HLL_P) - bits + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    @property
    def estimated(self) -> bool:
        return self.exact is None

    def distinct(self) -> float:
        if self.exact is not None:
            return float(len(self.exact))
        alpha = 0.7213 / (1 + 1.079 / HLL_M)
        raw = alpha * HLL_M * HLL_M / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.sum(self.registers == 0))
        if raw <= 2.5 * HLL_M and zeros:
            return HLL_M * float(np.log(HLL_M / zeros))  # small-range correction (linear counting)
        return raw

    def ratio(self) -> float:
        return min(1.0, self.distinct() / self.total) if self.total else 0.0


class TopOpenings:
    """Heavy hitters in bounded memory (Misra-Gries): exact while fewer than ``capacity`` distinct
    openings were seen; after that each count is low by at most samples / capacity."""

    def __init__(self, capacity: int = 2_000) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.seen = 0
        self.decrements = 0  # how much any count may be under its true value

    def add(self, key: str) -> None:
        self.seen += 1
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < self.capacity:
            self.counts[key] = 1
        else:  # full: every counter drops by one (amortised O(1): each add pays for one decrement)
            self.decrements += 1
            self.counts = {k: c - 1 for k, c in self.counts.items() if c > 1}

    def top(self, k: int) -> list[list[str | int]]:
        return [[o, c] for o, c in sorted(self.counts.items(), key=lambda kv: -kv[1])[:k]]  # ties: first seen first

    @property
    def max_undercount(self) -> int:
        return self.decrements


class DatasetDiversity:
    """The overall text-side numbers of ``diversity_report``, fed one text at a time."""

    def __init__(self, openings_words: int = 6, exact_limit: int = 200_000, capacity: int = 2_000) -> None:
        self.openings_words = openings_words
        self.distinct = {n: DistinctCounter(exact_limit) for n in (1, 2, 3)}
        self.openings = TopOpenings(capacity)
        self.samples = 0
        self.words = 0

    def add_many(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        self.samples += 1
        w = word_hashes(text)
        self.words += len(w)
        for n, counter in self.distinct.items():
            counter.add(ngram_hashes(w, n))
        if text.strip():
            self.openings.add(" ".join(text.split(None, self.openings_words)[: self.openings_words]))

    def report(self, near_duplicates: int, candidates: int, top: int = 5) -> dict:
        """``near_duplicates`` of ``candidates``: what the finish step found before dropping any."""
        estimated = any(c.estimated for c in self.distinct.values())
        return {
            "samples": self.samples, "words": self.words,
            **{f"distinct_{n}": round(c.ratio(), 4) for n, c in self.distinct.items()},
            "distinct_estimated": estimated, "distinct_relative_error": HLL_ERROR if estimated else 0.0,
            "near_duplicates": near_duplicates,
            "near_duplicate_rate": round(near_duplicates / candidates, 4) if candidates else 0.0,
            "near_duplicates_among": candidates,
            "top_openings": self.openings.top(top), "top_openings_max_undercount": self.openings.max_undercount,
        }
