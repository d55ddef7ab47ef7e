"""DeepXDE side of `pinn_vs_deepxde.py`; runs in the DeepXDE venv, not the sciml one.

Needs only deepxde 1.15, torch and numpy (see `requirements-deepxde.txt`); it
imports neither sciml nor jax. The backend is forced to PyTorch
(`DDE_BACKEND=pytorch`, set here before deepxde is imported).

Problem: viscous Burgers u_t + u u_x = nu u_xx on x in [-1, 1], t in
[0, t_final], u(x, 0) = -sin(pi x), u(+-1, t) = 0; network 2-[width]*depth-1
tanh (DeepXDE's `FNN`, "Glorot normal" weights, zero biases unless the data
file carries initial weights); Adam (torch defaults, lr from the data file);
DeepXDE's loss: the sum of the mean squared PDE residual (interior points),
boundary error and initial error.

    python benchmarks/_deepxde_worker.py DATA.npz [--dtype float32|float64] [--threads N]
        [--formulation pointset|example] [--iters N [--warmup W]]

With `--iters`, train once and print one JSON line. Without it, serve
requests (one JSON object per stdin line, one JSON reply per stdout line), so
the driver can interleave runs without paying the start-up each time; the
first line printed is `{"deepxde", "torch", "numpy", "dtype", "threads", ...}`:

    {"cmd": "run", "iters": N, "warmup": W}   -> the result of one training (below)
    {"cmd": "quit"}

DATA.npz (written by the driver): `interior` (N_i, 2), `boundary` (N_b, 2),
`initial` (N_0, 2) collocation points with columns (x, t); `grid` (M, 2) and
`u_ref` (M,) the reference solution; scalars `nu`, `t_final`, `lr`, `width`,
`depth`, `seed`; optionally the initial weights `w0 b0 w1 b1 ...` in
torch.nn.Linear's (out, in) layout and `u_init` (M,) the network they define,
evaluated on `grid` (to check that both sides start from the same function).

Formulations (how the given points reach DeepXDE):

* `pointset` (default; the same loss as a PINN with separate point sets):
  the interior points are the PDE points (`TimePDE(..., num_domain=0,
  num_boundary=0, num_initial=0, anchors=interior)`), the boundary and
  initial points enter through `dde.icbc.PointSetBC` with values 0 and
  -sin(pi x). DeepXDE still feeds all points through the network (it always
  evaluates the PDE on its whole input batch and slices), but the residual
  loss averages over the interior only.
* `example` (DeepXDE's Burgers example): `DirichletBC` + `IC` on the
  geometry, all given points as anchors; DeepXDE then puts the boundary and
  initial points into the PDE loss as well (its PDE points are all the
  points) and feeds them twice (once as BC points, once as PDE points).

One run builds the data, the network and the model anew (start-up, timed
apart), checks the initial function against `u_init`, trains `iters` Adam
iterations with `model.train(display_every=1000)` and a callback that reads
the clock after iteration `warmup` and after the last one. Reply:

    {"s_per_iter", "seconds_timed", "iters", "warmup", "train_wall_s", "startup_s",
     "rel_l2", "final_loss", "loss_terms", "init_max_abs_diff", "n_points_network"}

`s_per_iter` = (clock after the last iteration - clock after iteration
`warmup`) / (iters - warmup): DeepXDE's own loop, including its loss
evaluation every 1000 iterations. `rel_l2` = ||u - u_ref|| / ||u_ref|| on the
grid, in float64 from the network's predictions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

os.environ["DDE_BACKEND"] = "pytorch"

import numpy as np  # noqa: E402

# DeepXDE prints its backend and progress on stdout; stdout carries the replies.
with contextlib.redirect_stdout(sys.stderr):
    import deepxde as dde  # noqa: E402
    import torch  # noqa: E402

DISPLAY_EVERY = 1000  # DeepXDE's default: evaluate and record the losses every 1000 iterations


class ClockAt(dde.callbacks.Callback):
    """Reads the clock at the end of iteration `first` and of every later iteration."""

    def __init__(self, first: int):
        super().__init__()
        self.first = first
        self.count = 0
        self.t_first = None
        self.t_last = None

    def on_epoch_end(self):
        self.count += 1
        now = time.perf_counter()
        if self.count == self.first:
            self.t_first = now
        self.t_last = now


def burgers_residual(nu: float):
    def pde(x, u):
        u_x = dde.grad.jacobian(u, x, i=0, j=0)
        u_t = dde.grad.jacobian(u, x, i=0, j=1)
        u_xx = dde.grad.hessian(u, x, i=0, j=0)
        return u_t + u * u_x - nu * u_xx

    return pde


def build_data(d, formulation: str):
    nu, t_final = float(d["nu"]), float(d["t_final"])
    geom = dde.geometry.Interval(-1.0, 1.0)
    geomtime = dde.geometry.GeometryXTime(geom, dde.geometry.TimeDomain(0.0, t_final))
    interior, boundary, initial = d["interior"], d["boundary"], d["initial"]
    if formulation == "pointset":
        bcs = [
            dde.icbc.PointSetBC(boundary, np.zeros((len(boundary), 1))),
            dde.icbc.PointSetBC(initial, -np.sin(np.pi * initial[:, :1])),
        ]
        anchors = interior
    elif formulation == "example":
        bcs = [
            dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary),
            dde.icbc.IC(
                geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial
            ),
        ]
        anchors = np.vstack([interior, boundary, initial])
    else:
        raise ValueError(f"unknown formulation {formulation!r}; allowed: pointset, example")
    data = dde.data.TimePDE(
        geomtime,
        burgers_residual(nu),
        bcs,
        num_domain=0,
        num_boundary=0,
        num_initial=0,
        anchors=anchors,
    )
    if formulation == "example":
        # The geometry's boundary / initial filters must find exactly the given points.
        found = list(data.num_bcs)
        want = [len(boundary), len(initial)]
        if found != want:
            raise RuntimeError(
                f"DeepXDE found {found} boundary / initial points among the "
                f"anchors, expected {want}"
            )
    return data


def load_initial_weights(net, d) -> bool:
    if "w0" not in d:
        return False
    with torch.no_grad():
        for i, layer in enumerate(net.linears):
            w, b = d[f"w{i}"], d[f"b{i}"]
            if tuple(layer.weight.shape) != w.shape or tuple(layer.bias.shape) != b.shape:
                raise ValueError(
                    f"layer {i}: DeepXDE has weight {tuple(layer.weight.shape)}, "
                    f"bias {tuple(layer.bias.shape)}; the data file {w.shape}, {b.shape}"
                )
            layer.weight.copy_(torch.from_numpy(np.asarray(w)))
            layer.bias.copy_(torch.from_numpy(np.asarray(b)))
    return True


def run(d, formulation: str, iters: int, warmup: int) -> dict:
    if not 0 < warmup < iters:
        raise ValueError(f"need 0 < warmup < iters, got warmup={warmup}, iters={iters}")
    width, depth = int(d["width"]), int(d["depth"])
    quiet = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(quiet):
        dde.config.set_random_seed(int(d["seed"]))
        data = build_data(d, formulation)
        net = dde.nn.FNN([2] + [width] * depth + [1], "tanh", "Glorot normal")
        copied = load_initial_weights(net, d)
        model = dde.Model(data, net)
        model.compile("adam", lr=float(d["lr"]))
    startup = time.perf_counter() - t0
    grid = d["grid"]
    init_diff = None
    if copied and "u_init" in d:
        with contextlib.redirect_stdout(quiet):
            u0 = model.predict(grid.astype(dde.config.real(np)))
        init_diff = float(np.max(np.abs(u0.ravel().astype(np.float64) - d["u_init"])))

    clock = ClockAt(warmup)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(quiet):
        losshistory, train_state = model.train(
            iterations=iters, display_every=DISPLAY_EVERY, callbacks=[clock], verbose=0
        )
    wall = time.perf_counter() - t0
    if clock.count != iters:
        raise RuntimeError(f"DeepXDE ran {clock.count} iterations, asked for {iters}")
    with contextlib.redirect_stdout(quiet):
        u = model.predict(grid.astype(dde.config.real(np))).ravel().astype(np.float64)
    u_ref = d["u_ref"].astype(np.float64)
    terms = np.asarray(train_state.loss_train, dtype=np.float64)
    return {
        "s_per_iter": (clock.t_last - clock.t_first) / (iters - warmup),
        "seconds_timed": clock.t_last - clock.t_first,
        "iters": iters,
        "warmup": warmup,
        "train_wall_s": wall,
        "startup_s": startup,
        "rel_l2": float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref)),
        "final_loss": float(terms.sum()),  # DeepXDE evaluates it after the last update
        "loss_terms": terms.tolist(),  # [pde, boundary, initial]
        "initial_weights_copied": copied,
        "init_max_abs_diff": init_diff,
        "n_points_network": int(len(data.train_x)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="the .npz written by pinn_vs_deepxde.py")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's own choice)",
    )
    ap.add_argument("--formulation", choices=["pointset", "example"], default="pointset")
    ap.add_argument("--iters", type=int, default=None, help="train once and exit")
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="iterations before the clock starts (default: min(100, iters // 10))",
    )
    a = ap.parse_args()

    reply = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        dde.config.set_default_float(a.dtype)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    d = dict(np.load(a.data))

    def warmup_for(iters, w):
        return max(1, min(100, iters // 10)) if w is None else w

    if a.iters is not None:
        out = run(d, a.formulation, a.iters, warmup_for(a.iters, a.warmup))
        print(json.dumps(out), file=reply, flush=True)
        return
    info = {
        "deepxde": dde.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "backend": dde.backend.backend_name,
        "dtype": a.dtype,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "formulation": a.formulation,
        "display_every": DISPLAY_EVERY,
    }
    print(json.dumps(info), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        iters = int(req["iters"])
        out = run(d, a.formulation, iters, warmup_for(iters, req.get("warmup")))
        print(json.dumps(out), file=reply, flush=True)


if __name__ == "__main__":
    main()
