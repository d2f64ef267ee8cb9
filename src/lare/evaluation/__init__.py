"""Benchmark evaluation: official-format loaders and scorers, the batched resumable runner, and the methods.

  benchmarks/   one module per benchmark (MMBench, MMStar, MMVP, ScienceQA-IMG, POPE): loader + official scorer
  methods.py    direct / cot / lare: prompt instruction and latent steps
  generation.py one batched generate call -> (answer, generated token count)
  runner.py     `run_benchmark`: batched, resumable predictions JSONL
  predictions.py the predictions file format
  scoring.py    `score_predictions`: what `lare eval score` runs
  metrics.py    accuracy by group, tokens_correct and lmms-eval's tokens_per_correct_answer
"""
