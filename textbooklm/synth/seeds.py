"""The seed sampler: what makes every synthesis prompt different, and deterministic under a seed.

The papers' diversity tricks, as one sampler: a topic (a leaf of a topic tree, as phi-1.5's 20K
topics), a target audience and a style (phi-1's constraints), a few random words the text must use
(TinyStories), and optionally an excerpt of the filtered corpus (Cosmopedia). Each draw is recorded
in the sample's provenance.

Re-weighting: a value already drawn ``k`` times gets weight ``1 / (1 + k) ** reweight``, so rare
values catch up. The counts are passed in by the stage (from earlier rounds, what was *kept*) and
updated with every draw of the current round, so one round already spreads over many topics, and
rejected samples' seeds come back in later rounds. Same counts + same seed + same round -> same draws.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

FIELDS = ("topic", "audience", "style", "words")


def data_file(name: str) -> Path:
    """A file shipped in textbooklm/synth/data (topics, words, templates)."""
    return Path(str(resources.files("textbooklm.synth") / "data" / name))


def parse_topic_tree(text: str, where: str = "topics") -> list[str]:
    """Leaves of a topic tree as full paths ("A > B > C").

    Two accepted forms, mixable: indentation (any consistent step) gives the nesting, and a line may
    already be a path with ' > '. Blank lines and '#' comments are skipped. A flat list is a tree of
    leaves. Tabs are refused: their width is ambiguous.
    """
    leaves: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, name) of the open ancestors
    pending: str | None = None  # last node seen; it is a leaf unless the next line is deeper
    pending_indent = -1
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"{where}:{n}: indent with spaces, not tabs")
        indent = len(raw) - len(raw.lstrip(" "))
        name = " > ".join(p.strip() for p in raw.strip().split(">") if p.strip())
        if pending is not None and indent <= pending_indent:
            leaves.append(pending)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = " > ".join([s[1] for s in stack] + [name])
        stack.append((indent, name))
        pending, pending_indent = path, indent
    if pending is not None:
        leaves.append(pending)
    seen: set[str] = set()
    unique = [t for t in leaves if not (t in seen or seen.add(t))]
    if not unique:
        raise ValueError(f"{where}: no topics found")
    return unique


def read_lines(path: str | Path, what: str) -> list[str]:
    """Non-blank, non-comment lines of a list file; a missing or empty file is a clear error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such {what} file") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise ValueError(f"{p}: the {what} file has no entries")
    return list(dict.fromkeys(lines))


def load_topics(path: str | Path | None) -> list[str]:
    p = Path(path) if path else data_file("topics.txt")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such topics file") from None
    return parse_topic_tree(text, where=str(p))


def load_words(path: str | Path | None) -> list[str]:
    return read_lines(path or data_file("words.txt"), "random-words")


@dataclass
class Seed:
    """One prompt's choices; stored verbatim in the sample's provenance."""

    index: int
    topic: str
    audience: str
    style: str
    words: list[str] = field(default_factory=list)
    excerpt: dict[str, str] | None = None  # {"id", "path", "text"} of a corpus record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def derived_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (stable across processes, unlike hash())."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


class Coverage:
    """How often each value of each seed field has been drawn or kept: the re-weighting state."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {f: Counter() for f in FIELDS}

    def add(self, seed: Seed | dict[str, Any]) -> None:
        s = seed.to_json() if isinstance(seed, Seed) else seed
        for f in ("topic", "audience", "style"):
            self.counts[f][s[f]] += 1
        for w in s.get("words") or []:
            self.counts["words"][w] += 1

    def copy(self) -> Coverage:
        c = Coverage()
        c.counts = {f: Counter(v) for f, v in self.counts.items()}
        return c


class SeedSampler:
    """Draws :class:`Seed` s. Deterministic in (seed, round, coverage so far)."""

    def __init__(
        self,
        topics: list[str],
        audiences: list[str],
        styles: list[str],
        words: list[str],
        *,
        n_words: int = 2,
        reweight: float = 1.0,
        excerpts: list[dict[str, str]] | None = None,
        excerpt_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not topics or not audiences or not styles:
            raise ValueError("the seed sampler needs at least one topic, audience and style")
        if n_words and len(words) < n_words:
            raise ValueError(f"{n_words} random words per prompt need a word list of at least that many")
        self.topics, self.audiences, self.styles, self.words = topics, audiences, styles, words
        self.n_words = n_words
        self.reweight = reweight
        self.excerpts = excerpts or []
        self.excerpt_fraction = excerpt_fraction if self.excerpts else 0.0
        self.seed = seed

    def _weight(self, count: int) -> float:
        return 1.0 / (1.0 + count) ** self.reweight

    def _picker(self, values: list[str], counts: Counter[str]) -> WeightedPicker:
        return WeightedPicker([self._weight(counts[v]) for v in values])

    def _pick(self, rng: random.Random, picker: WeightedPicker, values: list[str], counts: Counter[str],
              k: int = 1) -> list[str]:
        """``k`` distinct values by weight, then each drawn value's weight follows its new count."""
        chosen: list[int] = []
        for _ in range(k):
            i = picker.draw(rng.random())
            chosen.append(i)
            picker.set(i, 0.0)  # without replacement within one seed
        names = [values[i] for i in chosen]
        for i, name in zip(chosen, names, strict=True):
            counts[name] += 1
            picker.set(i, self._weight(counts[name]))
        return names

    def sample(self, n: int, round_index: int = 0, coverage: Coverage | None = None, start: int = 0) -> list[Seed]:
        """``n`` seeds for one round; ``coverage`` (not modified) holds the counts so far.

        Cost: building the pickers is linear in the number of values once per round; each draw is
        logarithmic (a Fenwick tree of weights), so 20K topics cost as little per seed as 20."""
        rng = random.Random(derived_seed("seeds", self.seed, round_index))
        cov = coverage.copy() if coverage is not None else Coverage()
        fields = {"topic": self.topics, "audience": self.audiences, "style": self.styles, "words": self.words}
        pickers = {f: self._picker(values, cov.counts[f]) for f, values in fields.items()
                   if f != "words" or self.n_words}
        seeds = []
        for i in range(n):
            picked = {f: self._pick(rng, pickers[f], fields[f], cov.counts[f]) for f in ("topic", "audience", "style")}
            seed = Seed(
                index=start + i, topic=picked["topic"][0], audience=picked["audience"][0], style=picked["style"][0],
                words=self._pick(rng, pickers["words"], self.words, cov.counts["words"], self.n_words)
                if self.n_words else [],
            )
            if self.excerpt_fraction and rng.random() < self.excerpt_fraction:
                seed.excerpt = dict(rng.choice(self.excerpts))
            seeds.append(seed)
        return seeds


class WeightedPicker:
    """Weighted draws with weights that change one at a time: a Fenwick (binary indexed) tree of weights.

    Why: the re-weighting changes the drawn value's weight after every draw, and recomputing every
    weight for every draw (``random.choices``) cost 10.8 ms a seed with 20K topics (~39 CPU-hours
    for phi-1.5's 13M seeds). Here a draw and an update each touch log2(n) nodes.
    """

    def __init__(self, weights: list[float]) -> None:
        self.n = len(weights)
        self.weights = list(weights)
        self.tree = [0.0] * (self.n + 1)
        for i, w in enumerate(weights, 1):  # linear-time build
            self.tree[i] += w
            parent = i + (i & -i)
            if parent <= self.n:
                self.tree[parent] += self.tree[i]
        self.size = 1 << max(0, self.n.bit_length() - 1) if self.n else 0

    def total(self) -> float:
        i, out = self.n, 0.0
        while i > 0:
            out += self.tree[i]
            i -= i & -i
        return out

    def set(self, index: int, weight: float) -> None:
        delta = weight - self.weights[index]
        self.weights[index] = weight
        i = index + 1
        while i <= self.n:
            self.tree[i] += delta
            i += i & -i

    def draw(self, u: float) -> int:
        """The index whose cumulative-weight interval holds ``u * total`` (u in [0, 1))."""
        target = u * self.total()
        pos, step = 0, self.size
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= target:
                pos = nxt
                target -= self.tree[nxt]
            step >>= 1
        while pos < self.n - 1 and self.weights[pos] <= 0.0:  # float drift onto a zero-weight value
            pos += 1
        return min(pos, self.n - 1)
