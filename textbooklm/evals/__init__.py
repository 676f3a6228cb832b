"""Code evaluation (HumanEval, MBPP, the project's own problems) with samples on disk and pass@k.

Generation (``generate.py``, any ``Generator``) and execution (``execute.py``, through
``textbooklm.sandbox``) are separate steps, as in evalplus, so samples can be inspected, re-scored
under other limits, or produced elsewhere. Task loaders live in ``tasks.py``
(``load_problems(task, path)``), reused by decontamination; the generic problem format is in
``problems.py``.
"""
