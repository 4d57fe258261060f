"""Statistics in validation: Wilson 95 % intervals on accuracy and agreement, McNemar's
exact test of each artifact against its fp32 reference on the same images, and the
`--drop-significance` gate built on it."""
import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn

from edgecnn.toolchain import gates, stats


def test_wilson_and_mcnemar_give_the_textbook_values():
    low, high = stats.wilson(90, 100)  # (p + z²/2n ± z√(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.96
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)
    assert stats.wilson(0, 0) is None and stats.wilson(10, 10)[1] == pytest.approx(1.0)
    assert stats.mcnemar_p(0, 10) == pytest.approx(0.5 ** 10)  # ten losses, no gains
    assert stats.mcnemar_p(5, 5) == pytest.approx(638 / 1024)  # P(5 or more of 10 fair coins)
    assert stats.mcnemar_p(10, 0) == 1.0 and stats.mcnemar_p(0, 0) == 1.0


def _gate(gained, lost):
    row = {"paired": {"gained": gained, "lost": lost}}
    row["drop_p_value"] = stats.mcnemar_p(gained, lost)
    entry, = gates.check(row, {"drop_significance": 0.05})
    return entry["passed"]


def test_the_gate_fails_only_a_significant_loss():
    assert not _gate(1, 12)   # p = 0.0017: the artifact is worse
    assert _gate(3, 5)        # p = 0.36: noise
    assert _gate(12, 1)       # significantly better is not a drop
    assert not gates.check({}, {"drop_significance": 0.05})[0]["passed"]  # not measured: no reference


def test_validate_reports_intervals_and_the_paired_test(digits_artifacts, tmp_path):
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH, "--drop-significance", "0.05",
                "--json")
    assert r.code == 0, r
    for row in r.json["results"]:
        low, high = row["accuracy_ci"]
        assert low < row["accuracy"] <= high and high - low < 0.1, row  # 540 test images
        assert row["agreement_ci"][0] <= row["agreement"] <= row["agreement_ci"][1]
        assert row["paired"]["lost"] >= 0 and 0 <= row["drop_p_value"] <= 1
        assert [g["gate"] for g in row["gates"]] == ["drop_significance"] and row["status"] == "pass"
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH)
    assert "[" in r.out and "–" in r.out, r.out  # the table shows the intervals
    assert_bad_input(edgecnn("validate", digits_artifacts, "--drop-significance", "1.5"),
                     "--drop-significance", "between 0 and 1")
