"""Ordered tree edit distance (Zhang & Shasha 1989) with unit costs, on postorder-numbered trees.

Why our own: the AST match rate needs an exact tree edit distance, and the trees are small (a
function is tens to a few hundred nodes), so a tight pure-Python Zhang-Shasha is fast enough once
the candidate index has thrown away every pair that cannot reach the lowest threshold of interest.

A tree is given by three arrays over its nodes in postorder (0-based):

* ``labels[i]``: an int label (equal ints = equal labels; relabel costs 1 otherwise);
* ``lml[i]``: the postorder index of the leftmost leaf of the subtree rooted at ``i``;
* ``keyroots``: the nodes that are the root or have a left sibling, in increasing order.
"""

from __future__ import annotations

from collections.abc import Sequence


def keyroots_of(lml: Sequence[int]) -> list[int]:
    """Key roots: for each distinct leftmost leaf, the highest node having it (postorder: the last)."""
    last: dict[int, int] = {}
    for i, leaf in enumerate(lml):
        last[leaf] = i
    return sorted(last.values())


Columns = list[tuple[int, int, int]]
Prepared = list[tuple[int, Columns]]


def prepare(labels: Sequence[int], lml: Sequence[int], keyroots: Sequence[int]) -> Prepared:
    """Per key root: (its leftmost leaf, [(node, leftmost leaf offset, label) for its subtree]).

    Computed once per tree and reused for every pair (benchmark trees meet thousands of samples).
    """
    out = []
    for k in keyroots:
        first = lml[k]
        out.append((first, [(node, lml[node] - first, labels[node]) for node in range(first, k + 1)]))
    return out


def tree_edit_distance(a: Prepared, b: Prepared, size_a: int, size_b: int) -> int:
    """Minimum number of node deletions, insertions and relabelings turning tree a into tree b.

    ``a`` and ``b`` come from :func:`prepare`. Time O(|a| |b| min(depth, leaves)_a
    min(depth, leaves)_b), memory O(|a| |b|).
    """
    if size_a == 0 or size_b == 0:
        return size_a + size_b
    td = [[0] * size_b for _ in range(size_a)]
    for _, rows in a:
        for _, cols in b:
            n = len(cols) + 1
            prev = list(range(n))
            # fd[x][y]: distance between the first x nodes of a's keyroot forest and the first y of b's.
            fd = [prev]
            x = 0
            for i1, px, label in rows:
                x += 1
                row = [x] * n
                td_row = td[i1]
                left = x
                y = 0
                if px == 0:  # a's prefix is a whole subtree: where b's is too, map the two roots
                    for j1, qy, lb in cols:
                        y += 1
                        best = prev[y] + 1
                        if left + 1 < best:
                            best = left + 1
                        if qy == 0:
                            sub = prev[y - 1] + (label != lb)
                            if sub < best:
                                best = sub
                            td_row[j1] = best
                        else:
                            sub = qy + td_row[j1]
                            if sub < best:
                                best = sub
                        row[y] = best
                        left = best
                else:
                    prev_px = fd[px]
                    for j1, qy, _lb in cols:
                        y += 1
                        best = prev[y] + 1
                        if left + 1 < best:
                            best = left + 1
                        sub = prev_px[qy] + td_row[j1]
                        if sub < best:
                            best = sub
                        row[y] = best
                        left = best
                fd.append(row)
                prev = row
    return td[size_a - 1][size_b - 1]
