"""The demo's verdict lines state what was measured, including misses."""

from __future__ import annotations

from types import SimpleNamespace

from lare.demo.report import verdict
from lare.demo.run import MethodScore


def _result(lare: float, cot: float, zero: float, shuffle: float, lare_tokens: float = 20.0, extras=None):
    def score(accuracy, tokens=10.0):
        return MethodScore(accuracy=accuracy, tokens_correct=tokens, n=500)

    return SimpleNamespace(
        methods={"lare": score(lare, lare_tokens), "cot": score(cot, 40.0), "direct": score(0.45, 6.0)},
        latent_ablations={"zero": score(zero), "shuffle": score(shuffle)},
        extras=extras or {})


def test_a_run_that_misses_every_target_says_so():
    lines = "\n".join(verdict(_result(lare=0.55, cot=0.63, zero=0.56, shuffle=0.55, lare_tokens=38.0)))
    assert "LaRe accuracy 55.0% < standard CoT 63.0%: LaRe does **not** beat CoT" in lines
    assert "0.95× CoT's tokens per correct answer (misses the ≤ 0.85× target)" in lines
    assert "changes LaRe's accuracy by +1.0 points: the latents are **not** shown to matter" in lines
    # 2 · sqrt(0.55 · 0.45 / 500) = 4.4 points.
    assert "across samples changes it by +0.0 points: within two standard errors (4.4 points)" in lines


def test_a_run_that_meets_them_says_so_and_reports_latent_use():
    use = {"prefix_ce": {"own": 0.25, "shuffled": 0.89}, "target_ce": {"own": 0.079, "shuffled": 0.094}}
    lines = "\n".join(verdict(_result(lare=0.66, cot=0.63, zero=0.30, shuffle=0.55, extras={"latent_use": use})))
    assert "LaRe accuracy 66.0% ≥ standard CoT 63.0%." in lines
    assert "(meets the ≤ 0.85× target)" in lines
    assert "by -36.0 points (the answers depend on the latents)" in lines
    assert "by -11.0 points (the answers use what each sample's own latents hold)" in lines
    assert "costs 0.250 nats/token decoded from its own latents and 0.890 from another sample's" in lines
    assert "costs 0.079 and 0.094" in lines
