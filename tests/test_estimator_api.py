"""scikit-learn estimator contract for every detector in predictor.detect."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from predictor.detect import AnomalyEnsemble, RobustZScore

# Every check applies, so none is listed as an expected failure. The checks include
# check_methods_subset_invariance and check_methods_sample_order_invariance, which hold
# only because every member scores each row on its own.
ESTIMATORS = [
    RobustZScore(),
    AnomalyEnsemble(n_estimators=10, random_state=0),
    AnomalyEnsemble(members=("copod", "hbos", "lof", "robust_z"), random_state=0),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda estimator: {})
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
