"""scikit-learn's own estimator checks, with no expected failures."""

import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skinfomax import InfoMaxVAETransformer

ESTIMATORS = [
    InfoMaxVAETransformer(
        max_iter=2, hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), random_state=0
    ),
    InfoMaxVAETransformer(
        n_components=2,
        n_info_components=1,
        mi_estimator="infonce",
        max_iter=2,
        hidden_layer_sizes=(8, 8),
        critic_hidden_layer_sizes=(8, 8),
        random_state=0,
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# Checks scikit-learn runs on its own transformers but parametrize_with_checks
# leaves out: set_output, feature names, parameter validation.
EXTRA_CHECKS = [
    "check_dataframe_column_names_consistency",
    "check_get_feature_names_out_error",
    "check_global_output_transform_pandas",
    "check_param_validation",
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas",
]


@pytest.mark.parametrize("check_name", EXTRA_CHECKS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=["mlp", "infonce_with_c"])
def test_extra_sklearn_checks(estimator, check_name):
    pytest.importorskip("pandas")
    check = getattr(estimator_checks, check_name)
    check(type(estimator).__name__, clone(estimator))
