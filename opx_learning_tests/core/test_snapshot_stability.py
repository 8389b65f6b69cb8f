"""A snapshot's hash ignores float noise in the last bits of its summaries, but not real changes."""

import polars as pl

import opx_learning as opx


def test_last_bit_noise_keeps_the_hash_and_real_changes_do_not() -> None:
    frame = opx.generate_outcomes("2026-01-01", "2026-01-03", per_day=50, seed=2)
    summaries = opx.extract_patterns(frame, "2026-01-01", "2026-01-03")
    noisy = summaries.with_columns(pl.col("avg_ttd_ms") * (1 + 2**-50))  # a few ulps, as a re-sliced sum gives
    changed = summaries.with_columns(pl.col("avg_ttd_ms") * 1.001)
    build = lambda s: opx.build_snapshot("CUSTOM", "2026-01-01", "2026-01-03", frame, s)
    assert (noisy["avg_ttd_ms"] != summaries["avg_ttd_ms"]).any()
    assert build(noisy).content_hash == build(summaries).content_hash
    assert build(changed).content_hash != build(summaries).content_hash
