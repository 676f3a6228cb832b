"""Quality: judge educational value (heuristic and LLM), learn it from embeddings, filter the corpus.

phi-1's first move: GPT-4 rated files for "educational value for a student whose goal is to learn
basic coding concepts", a random forest on a code model's embeddings learned those labels, and the
classifier filtered 35B tokens of The Stack down to 6B. Three stages reproduce that loop:

* ``judge`` (:mod:`.judge_stage`): heuristic judge on every record, LLM judge on a sample;
* ``classify`` (:mod:`.classify_stage`): embeddings + random forest / ridge head, held-out metrics;
* ``filter`` (:mod:`.filter_stage`): score the whole corpus, keep the educational records.
"""
