"""The contract battery of `test_contract.py`, run over the NQS problems (a file of its own,
so that pytest-xdist can give it to the other worker)."""

import pytest
from test_contract import (  # noqa: F401 (the battery: collected here with this file's `case`)
    NQS,
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

# tiny chains can cross R-hat's 1.05 by chance: that warning is tested in tests/nqs, not here
pytestmark = pytest.mark.filterwarnings("ignore::sciml.nqs.ConvergenceWarning")


@pytest.fixture(scope="module", params=NQS)
def case(request):
    return make_case(request.param)
