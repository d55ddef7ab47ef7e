"""torchdiffeq side of `ude_vs_torchdiffeq.py`; runs in `.venv-torchdiffeq`, not the system python.

Started by the driver as a long-lived subprocess so that the two sides can be
interleaved without paying the start-up cost each round:

    .venv-torchdiffeq/bin/python benchmarks/_torchdiffeq_worker.py DATA.npz THREADS

DATA.npz (written by the driver) holds the float32 spiral data `ts`, `ys`,
the initial MLP weights `w1 b1 w2 b2` (sciml's init, (out, in) layout like
torch.nn.Linear), the window start indices `starts` (iterations x batch) and
the scalars `batch_time rtol atol lr`. Protocol: one JSON request per stdin
line, one JSON reply per stdout line:

    {"cmd": "run", "mode": "backprop" | "adjoint", "iters": N}
      -> {"seconds", "final_loss", "nfe_forward", "nfe_backward"}   (NFE per iteration, mean)
    {"cmd": "quit"}

Each "run" trains N Adam iterations from the initial weights on the batches
`starts[0:N]` (the same batches the JAX side uses), so every round repeats
the same computation. `backprop` differentiates through dopri5's operations
(`torchdiffeq.odeint`), `adjoint` solves the continuous adjoint backwards
(`torchdiffeq.odeint_adjoint`, same tolerances backwards).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torchdiffeq


class CubicMLP(torch.nn.Module):
    """f(t, y) = MLP(y**3), 2-50-2 tanh, counting its calls."""

    def __init__(self, w1, b1, w2, b2):
        super().__init__()
        self.l1 = torch.nn.Linear(w1.shape[1], w1.shape[0])
        self.l2 = torch.nn.Linear(w2.shape[1], w2.shape[0])
        with torch.no_grad():
            for p, v in ((self.l1.weight, w1), (self.l1.bias, b1), (self.l2.weight, w2), (self.l2.bias, b2)):
                p.copy_(torch.from_numpy(np.asarray(v, np.float32)))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.l2(torch.tanh(self.l1(y**3)))


def main(data_path: str, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    d = np.load(data_path)
    ts = torch.from_numpy(d["ts"].astype(np.float32))
    ys = torch.from_numpy(d["ys"].astype(np.float32))
    starts = torch.from_numpy(d["starts"].astype(np.int64))
    bt = int(d["batch_time"])
    rtol, atol, lr = float(d["rtol"]), float(d["atol"]), float(d["lr"])
    t_window = ts[:bt]
    offs = torch.arange(bt)
    info = {"torch": torch.__version__, "torchdiffeq": getattr(torchdiffeq, "__version__", "?"),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    print(json.dumps(info), flush=True)

    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        mode, iters = req["mode"], int(req["iters"])
        solve = torchdiffeq.odeint if mode == "backprop" else torchdiffeq.odeint_adjoint
        func = CubicMLP(d["w1"], d["b1"], d["w2"], d["b2"])
        opt = torch.optim.Adam(func.parameters(), lr=lr)
        nfe_f = nfe_b = 0
        t0 = time.perf_counter()
        for it in range(iters):
            # Same windows as the JAX side: ys[start : start + batch_time] for each start.
            windows = ys[starts[it][:, None] + offs]  # (batch, batch_time, 2)
            batch_y0 = windows[:, 0]
            opt.zero_grad()
            func.nfe = 0
            pred = solve(func, batch_y0, t_window, rtol=rtol, atol=atol, method="dopri5")  # (bt, batch, 2)
            loss = torch.mean(torch.abs(pred - windows.transpose(0, 1)))
            nfe_f += func.nfe
            func.nfe = 0
            loss.backward()
            nfe_b += func.nfe
            opt.step()
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "final_loss": float(loss.item()),
                          "nfe_forward": nfe_f / iters, "nfe_backward": nfe_b / iters}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
