"""The optimization algorithms, one small class each.

Each class names its hyper-parameters (in torch's order: it is the order of a group's keys), checks
them with torch's messages, says what state a parameter starts with and how one parameter moves given
its gradient. The update rules are the ones torch documents; they run as in-place tensor methods (so
version counters advance as torch's do), through ``_kernels`` where float32 must round as torch's
CPU kernels round.
"""

from __future__ import annotations

import math
from typing import Any

from .._dtype import float32
from ..ops.creation import full_like, ones, zeros, zeros_like
from ..ops.elementwise import maximum
from ..tensor import Tensor
from . import _kernels as K
from .optimizer import Optimizer, _scalar, _step_tensor

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta", "Rprop",
           "ASGD"]

Group = dict[str, Any]
State = dict[str, Any]
Betas = tuple[float, float]


# ---------------------------------------------------------------------------- argument checks


def _need(ok: Any, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_lr(lr: Any) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    _need(0.0 <= lr, f"Invalid learning rate: {lr}")


def _check_eps(eps: float) -> None:
    _need(0.0 <= eps, f"Invalid epsilon value: {eps}")


def _check_weight_decay(weight_decay: float) -> None:
    _need(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")


def _check_betas(betas: tuple[float, float]) -> None:
    for i, beta in enumerate(betas):
        _need(0.0 <= beta < 1.0, f"Invalid beta parameter at index {i}: {beta}")


def _check_fused(fused: bool | None, foreach: bool | None, differentiable: bool) -> None:
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")


def _advance(state: State) -> float:
    """Count one more step; the count as a Python number (what the bias corrections use)."""
    step = state["step"]
    step.add_(1)
    return step.item()


def _signed(grad: Tensor, group: Group) -> Tensor:
    return grad.neg() if group["maximize"] else grad


def _l2(grad: Tensor, p: Tensor, weight_decay: float) -> Tensor:
    """The gradient of ``weight_decay / 2 * |p|^2`` added in (coupled weight decay)."""
    return K.add(grad, p, alpha=weight_decay) if weight_decay != 0 else grad


# ---------------------------------------------------------------------------- SGD


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    Example::

        >>> opt = engine.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        _check_lr(lr)
        _need(momentum >= 0.0, f"Invalid momentum value: {momentum}")
        _check_weight_decay(weight_decay)
        _need(not nesterov or (momentum > 0 and dampening == 0),
              "Nesterov momentum requires a momentum and zero dampening")
        _check_fused(fused, foreach, differentiable)
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                                  "foreach": foreach, "differentiable": differentiable, "fused": fused})

    def _init_state(self, p: Tensor, group: Group) -> State | None:
        # plain SGD keeps nothing; the momentum buffer is born from the first gradient
        return {} if group["momentum"] != 0 else None

    def _update(self, p: Tensor, grad: Tensor, state: State | None, group: Group) -> None:
        g = _l2(_signed(grad, group), p, group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone().detach()
            else:
                buf.mul_(momentum)
                K.add_(buf, g, alpha=1 - group["dampening"])
            g = K.add(g, buf, alpha=momentum) if group["nesterov"] else buf
        K.add_(p, g, alpha=-_scalar(group["lr"]))


# ---------------------------------------------------------------------------- Adam family


class Adam(Optimizer):
    """Adam: steps along the bias-corrected first moment over the root of the second.

    Example::

        >>> opt = engine.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        _check_lr(lr)
        _check_eps(eps)
        _check_betas(betas)
        _check_weight_decay(weight_decay)
        if isinstance(lr, Tensor) and foreach and not capturable:
            raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
        if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
            raise ValueError("betas must be either both floats or both Tensors")
        _check_fused(fused, foreach, differentiable)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                                  "capturable": capturable, "differentiable": differentiable, "fused": fused,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def _init_state(self, p: Tensor, group: Group) -> State:
        state = {"step": _step_tensor(), "exp_avg": zeros_like(p), "exp_avg_sq": zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_like(p)
        return state

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        lr, wd = _scalar(group["lr"]), group["weight_decay"]
        beta1, beta2 = (_scalar(b) for b in group["betas"])
        g = _signed(grad, group)
        if wd != 0 and group["decoupled_weight_decay"]:
            p.mul_(1 - lr * wd)
        else:
            g = _l2(g, p, wd)
        step = _advance(state)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        K.lerp_(exp_avg, g, 1 - beta1)
        exp_avg_sq.mul_(beta2)
        K.addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        second = exp_avg_sq
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"]
            second.copy_(maximum(second, exp_avg_sq))
        denom = (second.sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        K.addcdiv_(p, exp_avg, denom, value=-(lr / (1 - beta1 ** step)))


class AdamW(Adam):
    """Adam with decoupled weight decay (the parameters shrink by ``lr * weight_decay`` each step).

    Example::

        >>> opt = engine.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm in place of the second moment.

    Example::

        >>> opt = engine.optim.Adamax(model.parameters(), lr=2e-3)
    """

    def __init__(self, params: Any, lr: Any = 2e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        _check_lr(lr)
        _check_eps(eps)
        _check_betas(betas)
        _check_weight_decay(weight_decay)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "foreach": foreach, "maximize": maximize, "differentiable": differentiable,
                                  "capturable": capturable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        return {"step": _step_tensor(), "exp_avg": zeros_like(p), "exp_inf": zeros_like(p)}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        (beta1, beta2), g = group["betas"], _l2(_signed(grad, group), p, group["weight_decay"])
        step = _advance(state)
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        K.lerp_(exp_avg, g, 1 - beta1)
        exp_inf.mul_(beta2)
        exp_inf.copy_(maximum(exp_inf, g.abs().add_(group["eps"])))
        K.addcdiv_(p, exp_avg, exp_inf, value=-(_scalar(group["lr"]) / (1 - beta1 ** step)))


class NAdam(Optimizer):
    """Adam with Nesterov momentum, its momentum warmed up by ``momentum_decay``.

    Example::

        >>> opt = engine.optim.NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)
    """

    _capturable_names = "params, mu_products and state_steps"

    def __init__(self, params: Any, lr: Any = 2e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        _check_lr(lr)
        _check_eps(eps)
        _check_betas(betas)
        _check_weight_decay(weight_decay)
        _need(0.0 <= momentum_decay, f"Invalid momentum_decay value: {momentum_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "momentum_decay": momentum_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize, "foreach": foreach, "capturable": capturable,
                                  "differentiable": differentiable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        # the running product of the momentum schedule is kept as torch keeps it: float32, 0-d
        return {"step": _step_tensor(), "mu_product": ones((), dtype=float32), "exp_avg": zeros_like(p),
                "exp_avg_sq": zeros_like(p)}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        lr, (beta1, beta2), wd, psi = _scalar(group["lr"]), group["betas"], group["weight_decay"], \
            group["momentum_decay"]
        g = _signed(grad, group)
        step = _advance(state)
        if wd != 0 and group["decoupled_weight_decay"]:
            p.mul_(1 - lr * wd)
        else:
            g = _l2(g, p, wd)
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        mu_product = state["mu_product"]
        mu_product.mul_(mu)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        K.lerp_(exp_avg, g, 1 - beta1)
        exp_avg_sq.mul_(beta2)
        K.addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        denom = exp_avg_sq.div(1 - beta2 ** step).sqrt().add_(group["eps"])
        prod = mu_product.item()
        prod_next = prod * mu_next
        # the gradient's share with this step's momentum, then the average's with the next one's
        K.addcdiv_(p, g, denom, value=-lr * (1.0 - mu) / (1.0 - prod))
        K.addcdiv_(p, exp_avg, denom, value=-lr * mu_next / (1.0 - prod_next))


class RAdam(Optimizer):
    """Rectified Adam: plain momentum steps until the second moment's variance is tractable.

    Example::

        >>> opt = engine.optim.RAdam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
        _check_lr(lr)
        _check_eps(eps)
        _check_betas(betas)
        _check_weight_decay(weight_decay)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "maximize": maximize, "foreach": foreach, "capturable": capturable,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "differentiable": differentiable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        return {"step": _step_tensor(), "exp_avg": zeros_like(p), "exp_avg_sq": zeros_like(p)}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        lr, (beta1, beta2), wd = _scalar(group["lr"]), group["betas"], group["weight_decay"]
        g = _signed(grad, group)
        step = _advance(state)
        if wd != 0 and group["decoupled_weight_decay"]:
            p.mul_(1 - lr * wd)
        else:
            g = _l2(g, p, wd)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        K.lerp_(exp_avg, g, 1 - beta1)
        exp_avg_sq.mul_(beta2)
        K.addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
        corrected = exp_avg / bc1
        rho_inf = 2 / (1 - beta2) - 1
        rho = rho_inf - 2 * step * (beta2 ** step) / bc2
        if rho > 5.0:
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            adaptive = math.sqrt(bc2) / exp_avg_sq.sqrt().add_(group["eps"])
            K.add_(p, corrected * lr * adaptive * rect, alpha=-1.0)
        else:
            K.add_(p, corrected * lr, alpha=-1.0)


# ---------------------------------------------------------------------------- adaptive per-coordinate


class RMSprop(Optimizer):
    """RMSprop: divides the gradient by a running root mean square (optionally centered).

    Example::

        >>> opt = engine.optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99)
    """

    def __init__(self, params: Any, lr: Any = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        _check_lr(lr)
        _check_eps(eps)
        _need(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check_weight_decay(weight_decay)
        _need(0.0 <= alpha, f"Invalid alpha value: {alpha}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                                  "centered": centered, "weight_decay": weight_decay,
                                  "capturable": capturable, "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        state = {"step": _step_tensor(), "square_avg": zeros_like(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = zeros_like(p)
        return state

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        alpha, lr = group["alpha"], _scalar(group["lr"])
        g = _l2(_signed(grad, group), p, group["weight_decay"])
        _advance(state)
        square_avg = state["square_avg"]
        square_avg.mul_(alpha)
        K.addcmul_(square_avg, g, g, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            K.lerp_(grad_avg, g, 1 - alpha)
            avg = K.addcmul(square_avg, grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"])
            K.addcdiv_(buf, g, avg)
            K.add_(p, buf, alpha=-lr)
        else:
            K.addcdiv_(p, g, avg, value=-lr)


class Adagrad(Optimizer):
    """Adagrad: each coordinate's step shrinks with its accumulated squared gradients.

    Example::

        >>> opt = engine.optim.Adagrad(model.parameters(), lr=1e-2, lr_decay=1e-4)
    """

    def __init__(self, params: Any, lr: Any = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        _check_lr(lr)
        _need(0.0 <= lr_decay, f"Invalid lr_decay value: {lr_decay}")
        _check_weight_decay(weight_decay)
        _need(0.0 <= initial_accumulator_value,
              f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check_eps(eps)
        _check_fused(fused, foreach, differentiable)
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable, "fused": fused})
        # torch gives every parameter its accumulator up front, gradient or not
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._init_state(p, group))

    def _init_state(self, p: Tensor, group: Group) -> State:
        # the constructor's value, not the group's: torch fills every accumulator, including those
        # of groups added later or overriding it, from its defaults
        return {"step": _step_tensor(), "sum": full_like(p, self.defaults["initial_accumulator_value"])}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        step = _advance(state)
        g = _l2(_signed(grad, group), p, group["weight_decay"])
        clr = _scalar(group["lr"]) / (1 + (step - 1) * group["lr_decay"])
        acc = state["sum"]
        K.addcmul_(acc, g, g, value=1)
        K.addcdiv_(p, g, acc.sqrt().add_(group["eps"]), value=-clr)


class Adadelta(Optimizer):
    """Adadelta: steps scaled by the ratio of running RMS of updates to running RMS of gradients.

    Example::

        >>> opt = engine.optim.Adadelta(model.parameters(), rho=0.9)
    """

    _capturable_devices = "['cuda', 'xpu', 'hpu', 'privateuseone']"

    def __init__(self, params: Any, lr: Any = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False,
                 differentiable: bool = False) -> None:
        _check_lr(lr)
        _need(0.0 <= rho <= 1.0, f"Invalid rho value: {rho}")
        _check_eps(eps)
        _check_weight_decay(weight_decay)
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                                  "maximize": maximize, "capturable": capturable, "foreach": foreach,
                                  "differentiable": differentiable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        return {"step": _step_tensor(), "square_avg": zeros_like(p), "acc_delta": zeros_like(p)}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        rho, eps = group["rho"], group["eps"]
        g = _l2(_signed(grad, group), p, group["weight_decay"])
        _advance(state)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg.mul_(rho)
        K.addcmul_(square_avg, g, g, value=1 - rho)
        delta = acc_delta.add(eps).sqrt_()
        delta.div_(square_avg.add(eps).sqrt_()).mul_(g)
        acc_delta.mul_(rho)
        K.addcmul_(acc_delta, delta, delta, value=1 - rho)
        K.add_(p, delta, alpha=-_scalar(group["lr"]))


class Rprop(Optimizer):
    """Resilient backpropagation: per-coordinate step sizes grown or shrunk by the gradient's sign.

    Example::

        >>> opt = engine.optim.Rprop(model.parameters(), lr=1e-2, etas=(0.5, 1.2))
    """

    def __init__(self, params: Any, lr: Any = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        _check_lr(lr)
        _need(0.0 < etas[0] < 1.0 < etas[1], f"Invalid eta values: {etas[0]}, {etas[1]}")
        super().__init__(params, {"lr": lr, "etas": etas, "step_sizes": step_sizes, "foreach": foreach,
                                  "maximize": maximize, "differentiable": differentiable,
                                  "capturable": capturable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        return {"step": _step_tensor(), "prev": zeros_like(p),
                "step_size": full_like(p, _scalar(group["lr"]))}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        (eta_minus, eta_plus), (smallest, largest) = group["etas"], group["step_sizes"]
        g = _signed(grad, group)
        _advance(state)
        prev, step_size = state["prev"], state["step_size"]
        agreement = g.mul(prev).sign()
        flipped = agreement < 0
        factor = ones(agreement.shape, dtype=agreement.dtype)
        factor.masked_fill_(agreement > 0, eta_plus)
        factor.masked_fill_(flipped, eta_minus)
        step_size.mul_(factor).clamp_(smallest, largest)
        # after a sign change the coordinate rests this step and forgets its gradient
        g = g.clone()
        g.masked_fill_(flipped, 0)
        K.addcmul_(p, g.sign(), step_size, value=-1)
        prev.copy_(g)


class ASGD(Optimizer):
    """Averaged SGD: SGD with a decaying step, keeping a running average ``ax`` of the iterates.

    Example::

        >>> opt = engine.optim.ASGD(model.parameters(), lr=1e-2, t0=1e6)
    """

    _capturable_names = "params, mus, etas, and state_steps"

    def __init__(self, params: Any, lr: Any = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
                 weight_decay: float = 0, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        _check_lr(lr)
        _check_weight_decay(weight_decay)
        super().__init__(params, {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                                  "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable,
                                  "capturable": capturable})

    def _init_state(self, p: Tensor, group: Group) -> State:
        # eta (the current step size) and mu (the averaging weight) are float32 0-d tensors, as in torch
        return {"step": _step_tensor(), "eta": full_like(zeros((), dtype=float32), _scalar(group["lr"])),
                "mu": ones((), dtype=float32), "ax": zeros_like(p)}

    def _update(self, p: Tensor, grad: Tensor, state: State, group: Group) -> None:
        lr, lambd, alpha = _scalar(group["lr"]), group["lambd"], group["alpha"]
        g = _signed(grad, group)
        step = _advance(state)
        g = _l2(g, p, group["weight_decay"])
        eta, mu, ax = state["eta"], state["mu"], state["ax"]
        eta_now = eta.item()
        p.mul_(1 - lambd * eta_now)
        K.add_(p, g, alpha=-eta_now)
        if mu.item() != 1:
            ax.add_(p.sub(ax).mul_(mu))
        else:
            ax.copy_(p)
        eta.fill_(lr / ((1 + lambd * lr * step) ** alpha))
        mu.fill_(1 / max(1, step - group["t0"]))
