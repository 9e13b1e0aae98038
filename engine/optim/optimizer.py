"""The ``Optimizer`` base: parameter groups, per-parameter state, hooks and ``state_dict``.

An algorithm subclass only declares its defaults, checks its arguments and supplies two per-parameter
rules, ``_init_state`` (the state a parameter starts with) and ``_update`` (one step of one parameter
from its gradient, state and group). Everything else -- the walk over groups and parameters, grad
mode, closures, hooks and the saved format -- lives here once.
"""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .._autograd import RemovableHandle, enable_grad, no_grad
from .._dtype import float32
from ..ops.creation import zeros
from ..tensor import Tensor

__all__ = ["Optimizer", "register_optimizer_step_pre_hook", "register_optimizer_step_post_hook"]

# hooks that run around every optimizer's step (torch.optim.optimizer's module-level registry)
_global_pre_hooks: list[Callable] = []
_global_post_hooks: list[Callable] = []


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Run ``hook(optimizer, args, kwargs)`` before the step of every optimizer."""
    _global_pre_hooks.append(hook)
    return RemovableHandle(_global_pre_hooks, hook)


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Run ``hook(optimizer, args, kwargs)`` after the step of every optimizer."""
    _global_post_hooks.append(hook)
    return RemovableHandle(_global_post_hooks, hook)


def _typename(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return obj.type()
    return type(obj).__qualname__ if type(obj).__module__ == "builtins" else \
        f"{type(obj).__module__}.{type(obj).__qualname__}"


def _hooked(step: Callable) -> Callable:
    """Wrap a ``step`` so the step hooks run once around the outermost call (a subclass's ``step``
    calling ``super().step()`` is still one step)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        # as torch's, the hooks see the optimizer as args[0] and may replace every argument
        self = args[0]
        if self.__dict__.get("_in_step"):
            return step(*args, **kwargs)
        for hook in [*_global_pre_hooks, *self._step_pre_hooks]:
            replaced = hook(self, args, kwargs)
            if replaced is not None:
                if not (isinstance(replaced, tuple) and len(replaced) == 2):
                    raise RuntimeError(
                        f"{hook} must return None or a tuple of (new_args, new_kwargs), but got {replaced}.")
                args, kwargs = replaced
        self._in_step = True
        try:
            out = step(*args, **kwargs)
        finally:
            self._in_step = False
        for hook in [*self._step_post_hooks, *_global_post_hooks]:
            hook(self, args, kwargs)
        return out

    run._hooked = True  # type: ignore[attr-defined]
    return run


class Optimizer:
    """Base of the optimizers: holds ``param_groups``, ``defaults`` and ``state``.

    Example::

        >>> w = engine.ones(3, requires_grad=True)
        >>> opt = engine.optim.SGD([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step(); opt.zero_grad()
    """

    # the AssertionError torch raises when ``capturable=True`` meets a CPU tensor
    _capturable_names = "params and state_steps"
    _capturable_devices = "['cuda', 'xpu', 'hpu', 'privateuseone', 'xla']"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _hooked(step)

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._init_hooks()
        self.state: defaultdict[Any, dict] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got {_typename(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _init_hooks(self) -> None:
        self._step_pre_hooks: list[Callable] = []
        self._step_post_hooks: list[Callable] = []
        self._state_dict_pre_hooks: list[Callable] = []
        self._state_dict_post_hooks: list[Callable] = []
        self._load_state_dict_pre_hooks: list[Callable] = []
        self._load_state_dict_post_hooks: list[Callable] = []

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with its own hyper-parameters; the rest from ``defaults``)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list "
                            "instead.")
        else:
            params = list(params)
        named = [isinstance(p, tuple) for p in params]
        if any(named):
            if not all(named):
                raise ValueError("all optimizer params should be with/without names. "
                                 "Some param names are missing")
            param_group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        if len(params) != len({id(p) for p in params}):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this "
                          "will cause an error; see github.com/pytorch/pytorch/issues/40967 for more "
                          "information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        if self.param_groups and ("param_names" in param_group) != ("param_names" in self.param_groups[0]):
            kind = "with" if "param_names" in param_group else "without"
            raise ValueError("all optimizer param groups should be with/without names. "
                             f"cannot add param group {kind} names to the optimizer")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients: drop them (default) or zero them in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g = p.grad
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    # ------------------------------------------------------------------ stepping

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss, if given."""
        if type(self)._update is Optimizer._update:
            raise NotImplementedError
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                live = [p for p in group["params"] if p.grad is not None]
                if not live:
                    continue
                for p in live:
                    state = self.state.get(p)
                    if not state:
                        fresh = self._init_state(p, group)
                        if fresh is not None:
                            state = self.state[p]
                            state.update(fresh)
                self._check_group(group)
                for p in live:
                    self._update(p, p.grad, self.state.get(p), group)
        return loss

    def _check_group(self, group: dict[str, Any]) -> None:
        if group.get("capturable"):
            raise AssertionError(f"If capturable=True, {self._capturable_names} must be on supported "
                                 f"devices: {self._capturable_devices}.")

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any] | None:
        """The state a parameter starts with (``None``: the algorithm keeps none for it)."""
        return {}

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any] | None, group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` before each step; may return new ``(args, kwargs)``."""
        self._step_pre_hooks.append(hook)
        return RemovableHandle(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` after each step."""
        self._step_post_hooks.append(hook)
        return RemovableHandle(self._step_post_hooks, hook)

    @staticmethod
    def _register(hooks: list[Callable], hook: Callable, prepend: bool) -> RemovableHandle:
        hooks.insert(0, hook) if prepend else hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer)`` before ``state_dict`` packs the state."""
        return self._register(self._state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer, state_dict)`` after packing; a returned dict replaces the state_dict."""
        return self._register(self._state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer, state_dict)`` before loading; a returned dict is loaded instead."""
        return self._register(self._load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer)`` after loading."""
        return self._register(self._load_state_dict_post_hooks, hook, prepend)

    # ------------------------------------------------------------------ saving

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: state}, 'param_groups': [group with 'params' as indices]}``; parameters
        are numbered across groups in order. The state's dicts and tensors are shared, not copied."""
        for hook in self._state_dict_pre_hooks:
            hook(self)
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(k)] if isinstance(k, Tensor) else k: v for k, v in self.state.items()}
        out: dict[str, Any] = {"state": state, "param_groups": groups}
        for hook in self._state_dict_post_hooks:
            replaced = hook(self, out)
            if replaced is not None:
                out = replaced
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the groups' hyper-parameters and the state saved by ``state_dict``; state tensors
        take each parameter's dtype (all but ``step``)."""
        state_dict = dict(state_dict)
        for hook in self._load_state_dict_pre_hooks:
            replaced = hook(self, state_dict)
            if replaced is not None:
                state_dict = replaced
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        by_index = {i: p for s, g in zip(saved_groups, self.param_groups)
                    for i, p in zip(s["params"], g["params"])}
        state: defaultdict[Any, dict] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in by_index:
                p = by_index[key]
                state[p] = {k: self._cast(p, k, v) for k, v in value.items()}
            else:
                state[key] = value
        groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            new = dict(saved)
            new["params"] = group["params"]
            groups.append(new)
        self.state = state
        self.param_groups = groups
        for hook in self._load_state_dict_post_hooks:
            hook(self)

    @staticmethod
    def _cast(p: Tensor, key: str, value: Any) -> Any:
        # 'step' stays a float32 count; other float state follows the parameter's dtype
        if not isinstance(value, Tensor) or key == "step":
            return value
        if p.is_floating_point() and value.is_floating_point() and value.dtype != p.dtype:
            return value.to(p.dtype)
        return value

    # ------------------------------------------------------------------ python protocol

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_hooks()

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    value = group[key]
                    # torch shows a 0-d tensor hyper-parameter (a tensor lr) by its value
                    if isinstance(value, Tensor) and value.dim() == 0:
                        value = value.item()
                    text += f"    {key}: {value}\n"
        return text + ")"


Optimizer.step = _hooked(Optimizer.step)  # type: ignore[method-assign]


def _step_tensor() -> Tensor:
    """A fresh step count, stored as torch stores it: a float32 0-d tensor."""
    return zeros((), dtype=float32)


def _scalar(x: Any) -> Any:
    """A hyper-parameter as a Python number (a one-element tensor lr is read once per use)."""
    return x.item() if isinstance(x, Tensor) else x
