"""Decontamination: find and remove training samples too close to the evaluation benchmarks.

Three signals, cheapest first (phi-1 section 5): n-gram overlap on normalized tokens, embedding
cosine similarity, and the AST match rate tau = 1 - tree edit distance / max(tree sizes) between
normalized function syntax trees, computed only for the pairs an exact shape bound lets through.
"""
