"""Every failed `solve` explains itself: eager `SolveFailed`, traced errors, tolerances, events."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import pytest

from sciml.ude import SolveFailed, check_solution, failure_report, solve, solve_batch


def blow_up(t, y, args):
    """y' = y^2 from y0 blows up at t = 1 / y0."""
    return y**2


TS = jnp.linspace(0.0, 2.0, 11)
Y0S = jnp.array([[0.1], [1.0], [2.0]])


def test_eager_failure_raises_solve_failed_with_time_steps_and_advice():
    # Before: throw=True raised diffrax's bare EquinoxRuntimeError "The maximum number of
    # solver steps was reached", with no time and no sample.
    with pytest.raises(SolveFailed) as info:
        solve(blow_up, jnp.array([1.0]), TS, max_steps=200)
    e = info.value
    assert e.index is None and e.num_steps == 200
    assert 0.95 < e.t_reached < 1.01  # float32 reaches 1 + 2e-5 before the budget runs out
    assert "maximum number of solver steps" in e.result
    message = str(e)
    assert message.startswith("solve failed: The maximum number of solver steps was reached")
    assert "the integration stopped at t = 1" in message and "after 200 steps" in message
    assert "larger max_steps (now 200)" in message and "Kvaerno5" in message


def test_solve_batch_failure_names_the_first_failed_sample():
    match = r"solve_batch failed for batch element 1 \(2 of 3 failed\).*stopped at t = 1.*after 200"
    with pytest.raises(SolveFailed, match=match) as info:
        solve_batch(blow_up, Y0S, TS, max_steps=200)
    assert info.value.index == 1 and 0.95 < info.value.t_reached < 1.01
    # throw=False keeps the old contract: inf where unreached, check_solution reports
    sol = solve_batch(blow_up, Y0S, TS, max_steps=200, throw=False)
    with pytest.raises(SolveFailed, match=r"batch element 1 \(2 of 3 failed\).*last saved time"):
        check_solution(sol)


def test_traced_failure_points_at_throw_false_and_check_solution():
    @eqx.filter_jit
    def final(y0):
        return solve(blow_up, y0, TS, max_steps=200).ys[-1]

    with pytest.raises(eqx.EquinoxRuntimeError, match=r"(?s)solve failed: The maximum number of "
                       r"solver steps.*larger max_steps.*throw=False.*check_solution"):
        final(jnp.array([1.0]))
    assert jnp.isfinite(final(jnp.array([0.1]))).all()  # a good solve passes through


def test_tolerance_below_the_dtype_resolution_is_refused(x64):
    # float32 with rtol=1e-9 used to hit max_steps (Tsit5 on an oscillator: 4812 steps
    # against 176 at rtol=1e-7) with no sign of why
    y32 = jnp.array([1.0, 0.0], jnp.float32)
    ts32 = TS.astype(jnp.float32)
    ctrl = dfx.PIDController(rtol=1e-9, atol=1e-12)
    msg = (r"solve: rtol=1e-09 is below the resolution of the state's dtype float32 \(machine "
           r"epsilon 1.19e-07\).*rtol >= 1.19e-07 for float32.*float64")
    with pytest.raises(ValueError, match=msg):
        solve(blow_up, y32, ts32, stepsize_controller=ctrl)
    with pytest.raises(ValueError, match=msg):  # through a wrapping controller
        clip = dfx.ClipStepSizeController(ctrl, step_ts=ts32)
        solve(blow_up, y32, ts32, stepsize_controller=clip)
    with pytest.raises(ValueError, match=msg):  # every batch mode
        solve_batch(blow_up, Y0S.astype(jnp.float32), ts32, mode="joint", stepsize_controller=ctrl)
    # the check runs while tracing: eval_shape shows what is allowed without compiling a solve
    allowed = [
        (y32, ts32, dfx.PIDController(rtol=2e-7, atol=1e-9)),  # above float32's epsilon
        (y32, ts32, dfx.PIDController(rtol=0.0, atol=1e-6)),  # pure absolute control
        (y32.astype(jnp.float64), ts32, ctrl),  # float64 state
        (y32, ts32.astype(jnp.float64), ctrl),  # float64 times promote the state to float64
    ]
    for y0, ts, controller in allowed:
        eqx.filter_eval_shape(solve, blow_up, y0, ts, stepsize_controller=controller)


def test_a_solve_stopped_by_an_event_is_not_a_failure():
    # y' = -1 from 1 crosses zero at t = 1
    crossing = dfx.VeryChord(rtol=1e-6, atol=1e-6)
    event = dfx.Event(lambda t, y, args, **kw: y[0], root_finder=crossing)
    sol = solve(lambda t, y, a: -jnp.ones_like(y), jnp.array([1.0]), t0=0.0, t1=5.0, event=event)
    assert sol.result == dfx.RESULTS.event_occurred
    assert abs(float(sol.ts[-1]) - 1.0) < 1e-5 and abs(float(sol.ys[-1, 0])) < 1e-5
    assert failure_report(sol) is None
    check_solution(sol)
