"""Client.onnx against a real server and embedded: a torch-exported CNN recorded as a module,
gradients with respect to its input and parameters against torch, second order through it, the
model's bytes sent once per client, and AsyncClient doing the same."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch

from client import AsyncClient, Client
from tests.engine import onnx_models as om


class Recording(httpx.HTTPTransport):
    """A real transport that notes whether each request carried the model's bytes."""

    def __init__(self, marker: bytes) -> None:
        super().__init__()
        self.marker, self.sent_model = marker, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent_model.append(self.marker in request.read())
        return super().handle_request(request)


def torch_reference(name: str):
    tm, x = om.make(name)
    xt = x.clone().requires_grad_()
    y = tm(xt)
    loss = (y * y).sum()
    named = dict(tm.named_parameters())
    return tm, x, loss, named, xt


def check_first_order(c: Client) -> None:
    tm, x, loss_t, named, xt = torch_reference("cnn")
    m = c.onnx(om.exported("cnn"))
    xc = c.tensor(x.numpy(), requires_grad=True)
    y = m(x=xc)
    assert tuple(y.shape) == (2, 3)
    params = m.parameters()
    assert set(params) == set(named)
    loss = (y * y).sum()
    grads = c.autograd_grad(loss, [xc, *params.values()])
    want = torch.autograd.grad(loss_t, [xt, *(named[k] for k in params)])
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5 * float(w.abs().max()))
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-5)
    np.testing.assert_array_equal(params["fc.bias"].numpy(), named["fc.bias"].detach().numpy())


@pytest.mark.parametrize("remote", [False, True], ids=["embedded", "remote"])
def test_gradients_of_an_onnx_module_match_torch(remote: bool, server_url: str) -> None:
    with Client(server_url if remote else None) as c:
        check_first_order(c)


def test_second_order_through_the_module(server_url: str) -> None:
    tm, x, loss_t, named, xt = torch_reference("mlp")
    (gxt,) = torch.autograd.grad(loss_t, [xt], create_graph=True)
    hx_t, hw_t = torch.autograd.grad((gxt * gxt).sum(), [xt, named["fc1.weight"]])
    with Client(server_url) as c:
        m = c.onnx(om.exported("mlp"))
        xc = c.tensor(x.numpy(), requires_grad=True)
        y = m(x=xc)
        (gx,) = c.autograd_grad((y * y).sum(), [xc], create_graph=True)
        hx, hw = c.autograd_grad((gx * gx).sum(), [xc, m.parameters()["fc1.weight"]])
    np.testing.assert_allclose(hx, hx_t.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hw, hw_t.numpy(), rtol=1e-4, atol=1e-6)


def test_the_model_is_uploaded_once_per_client(make_server) -> None:
    server = make_server()
    data = om.exported("mlp")
    import base64
    transport = Recording(base64.b64encode(data)[:64])
    _, x = om.make("mlp")
    with Client(server.url, transport=transport) as c:
        m = c.onnx(data)
        for k in range(3):
            y = m(x=c.tensor(x.numpy() + k))
            c.autograd_grad(y.sum(), [m.parameters()["fc2.bias"]])
        # a different loss is another graph; the model still goes by hash
        y = m(x=c.tensor(x.numpy()))
        (g,) = c.autograd_grad((y ** 3).mean(), [m.parameters()["fc2.bias"]])
    assert transport.sent_model == [True, False, False, False]
    assert g.shape == (2,)


def test_a_server_that_forgot_the_model_gets_it_again(make_server) -> None:
    server = make_server(env={"GRADSERVE_PLAN_CACHE_SIZE": "1"})
    data = om.exported("mlp")
    import base64
    transport = Recording(base64.b64encode(data)[:64])
    _, x = om.make("mlp")
    with Client(server.url, transport=transport) as c:
        m = c.onnx(data)
        c.autograd_grad(m(x=c.tensor(x.numpy())).sum(), [m.parameters()["fc2.bias"]])
        w = c.tensor(1.0, requires_grad=True)
        c.autograd_grad(w * 2, [w])  # another graph takes the only cache slot
        (g,) = c.autograd_grad(m(x=c.tensor(x.numpy())).sum(), [m.parameters()["fc2.bias"]])
    assert transport.sent_model == [True, False, False, True]  # by hash: 409, then the bytes again
    np.testing.assert_allclose(g, np.full(2, 4.0))


def test_async_client(server_url: str) -> None:
    tm, x, loss_t, named, xt = torch_reference("mlp")
    (want,) = torch.autograd.grad(loss_t, [named["fc1.weight"]])

    async def main() -> np.ndarray:
        async with AsyncClient(server_url) as c:
            m = c.onnx(om.exported("mlp"))
            y = m(x=c.tensor(x.numpy()))
            (g,) = await c.autograd_grad((y * y).sum(), [m.parameters()["fc1.weight"]])
            return g

    np.testing.assert_allclose(asyncio.run(main()), want.numpy(), rtol=1e-4, atol=1e-6)


def test_misuse_is_explained() -> None:
    c = Client()
    m = c.onnx(om.exported("mlp"))
    _, x = om.make("mlp")
    with pytest.raises(TypeError, match="the model's inputs are"):
        m(z=x.numpy())
    t = c.tensor(x.numpy())
    y1, y2 = m(x=t), m(x=t * 2)
    with pytest.raises(ValueError, match="must be a leaf"):
        y2.sum().item()
    with pytest.raises(ValueError, match="one call of an ONNX model"):
        (y1 + m(x=c.tensor(x.numpy()))).sum().item()
