"""Analysis of the pipeline's results across runs (imports nothing heavy).

- ``runstats``  run-level inference: Spearman correlation across runs per checkpoint, permutation
  p-values over runs, bootstrap intervals over runs, per-run dynamics features
- ``studies``   the course's study tables: training phases, label noise, most-confused classes
"""
