"""The contract battery of `test_contract.py`, run over the K-FAC problems (a file of its own,
so that pytest-xdist can give it to the other worker)."""

import pytest
from test_contract import (  # noqa: F401 (the battery: collected here with this file's `case`)
    KFAC,
    _float64,
    make_case,
    test_checkpoint_round_trip,
    test_diagnose_runs_on_a_healthy_step,
    test_evaluate_returns_documented_keys,
    test_gradient_matches_central_differences,
    test_init_and_jitted_loss_is_finite,
    test_optional_hooks_keep_their_contract,
    test_short_fit_writes_a_complete_run_directory,
)


@pytest.fixture(scope="module", params=KFAC)
def case(request):
    return make_case(request.param)
