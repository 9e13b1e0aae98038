"""The client never imports fastapi or starlette, not even in embedded mode."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CODE = textwrap.dedent("""
    import sys
    import numpy as np
    import client
    from client import Client

    c = Client()                       # embedded: the engine runs in this process
    w = c.tensor(0.5, requires_grad=True)
    x = c.tensor(np.array([1.0, 2.0]))
    (g,), (loss,) = c.autograd_grad(((w * x - 1.0) ** 2).mean(), [w], return_values=[w * 2])
    assert abs(float(g) + 0.5) < 1e-6, g   # mean(2 (w x - 1) x) at w = 0.5, x = [1, 2]
    try:
        c.autograd_grad((w * x).sum(), [x])
    except RuntimeError:
        pass
    else:
        raise SystemExit("expected an autograd error")
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette", "uvicorn"))
    print("LOADED:", bad)
    raise SystemExit(1 if bad else 0)
""")


def test_client_never_imports_fastapi() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED: []" in proc.stdout
