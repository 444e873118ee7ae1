"""One rule for how a trial ended (raysynth.outcome), as every consumer reads it."""

import pytest

from raysynth.outcome import FAILED, FINISHED, PRUNED, completed_outcome, trial_outcome


@pytest.mark.parametrize("metrics, error, expected", [
    ({"epoch": 6, "val_acc": 0.9}, False, FINISHED),
    ({"epoch": 7, "val_acc": 0.9}, False, FINISHED),  # a resumed trial may report past the last epoch
    ({"epoch": 3, "val_acc": 0.9}, False, PRUNED),
    ({"val_acc": 0.9}, False, PRUNED),  # no epoch reported: never counted as finished
    ({"epoch": 6, "val_acc": 0.9}, True, FAILED),
    ({"epoch": 6}, False, FAILED),  # no validation accuracy: nothing to compare
    (None, False, FAILED),
    ({}, False, FAILED),
])
def test_a_trial_is_finished_pruned_or_failed_by_one_rule(metrics, error, expected):
    assert trial_outcome(metrics, 6, error) == expected


def test_the_searchers_and_callbacks_agree_with_the_results():
    """The Tune callbacks see only the last epoch of a trial that ended without error."""
    for epoch in range(8):
        assert completed_outcome(epoch, 6) == trial_outcome({"epoch": epoch, "val_acc": 0.5}, 6)
