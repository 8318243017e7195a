import numpy as np

from kinpath.phenotyping.abstain import NEVER, choose_threshold, curve, evaluate_threshold


def test_threshold_reaches_target_with_most_coverage() -> None:
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], bool)
    th = choose_threshold(conf, correct, target=0.97, level=None)
    assert th.threshold == 0.9 and th.coverage == 0.5 and th.accuracy == 1.0
    th = choose_threshold(conf, correct, target=0.75, level=None)
    assert th.threshold == 0.7 and abs(th.coverage - 5 / 6) < 1e-9
    assert evaluate_threshold(conf, correct, 0.9) == (1.0, 0.5)


def test_ties_are_kept_together_and_hopeless_tasks_abstain() -> None:
    conf = np.array([0.9, 0.9, 0.5])
    correct = np.array([1, 0, 1], bool)
    _, acc, thr = curve(conf, correct)
    assert list(thr) == [0.9, 0.5] and list(acc) == [0.5, 2 / 3]
    th = choose_threshold(conf, correct, target=0.97, level=None)
    assert th.threshold == NEVER and th.coverage == 0.0
