"""Bayesian networks: every weight a distribution, trained by variational inference (Pyro).

:class:`BayesianNet` turns a float network (``mlp`` or ``cnn``) into a Pyro model: each weight
and bias of its dense and convolutional layers gets a Gaussian prior (``prior_scale``) and a
mean-field Gaussian posterior (Pyro's ``AutoNormal`` guide, initialised at the float network's
own initial weights with width ``posterior_init_scale``). Training minimises the negative ELBO
per training event (:meth:`BayesianNet.negative_elbo`, Pyro's ``Trace_ELBO``) with the shared
trainer's optimiser; the likelihood is a categorical of the logits (classification) or a
mixture of ``mixture`` Gaussians whose weights (logits), means and widths are the outputs
(regression: the widths learn the smearing). ``forward`` uses the posterior-mean weights
(deterministic: every generic evaluator works unchanged; regression: the mixture's mean);
:func:`sample_outputs` draws weight samples for the per-event spread.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.nn import PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

# Parameters live in the modules (checkpoints, several models side by side), not in Pyro's
# global parameter store.
pyro.settings.set(module_local_params=True)

#: Smallest Gaussian width of a regression output (in units of the scaled target).
MIN_SIGMA = 1e-3


def gaussian_width(raw: torch.Tensor) -> torch.Tensor:
    """A Gaussian width from a raw network output (softplus, floored)."""
    return nn.functional.softplus(raw) + MIN_SIGMA


def mixture_parts(out: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight logits, means, widths), each (N, k), of regression outputs (N, 3k)."""
    return out[:, :k], out[:, k:2 * k], gaussian_width(out[:, 2 * k:3 * k])


def output_distribution(out: torch.Tensor, k: int) -> dist.Distribution:
    """The regression likelihood of outputs (N, 3k): a Gaussian, or a mixture of k."""
    logits, mu, sigma = mixture_parts(out, k)
    if k == 1:
        return dist.Normal(mu[:, 0], sigma[:, 0])
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(mu, sigma))


class BayesianNet(nn.Module):
    """A float network with distributions over its weights (see the module docstring)."""

    def __init__(self, net: nn.Module, task: str, input_shape: tuple[int, ...],
                 prior_scale: float = 1.0, init_scale: float = 0.01, mixture: int = 1):
        super().__init__()
        self.task = task
        self.mixture = mixture
        self.input_shape = tuple(input_shape)
        init: dict[str, torch.Tensor] = {}
        to_pyro_module_(net)
        for mname, mod in net.named_modules():
            if not isinstance(mod, nn.Linear | nn.Conv2d):
                continue
            for pname in ("weight", "bias"):
                value = getattr(mod, pname)
                if value is None:
                    continue
                value = value.detach().clone()
                delattr(mod, pname)
                prior = dist.Normal(0.0, prior_scale).expand(value.shape).to_event(value.dim())
                setattr(mod, pname, PyroSample(prior))
                init[f"{mname}.{pname}"] = value
        self.sites = tuple(init)
        self.net = net
        self.guide = AutoNormal(self.model, init_loc_fn=init_to_value(values=init),
                                init_scale=init_scale)
        x0 = torch.zeros(2, *input_shape)
        y0 = torch.zeros(2, dtype=torch.long if task == "classification" else torch.float32)
        self.guide(x0, y0)  # creates the posterior parameters now (deterministic, eager)
        self._elbo = Trace_ELBO()

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None,
              scale: float = 1.0) -> torch.Tensor:
        """The Pyro model: weights from their priors, the likelihood of the targets ``y``
        scaled by ``scale`` (training events / batch events)."""
        out = self.net(x)
        with pyro.plate("events", x.shape[0]), poutine.scale(scale=scale):
            if self.task == "classification":
                pyro.sample("obs", dist.Categorical(logits=out), obs=y)
            else:
                pyro.sample("obs", output_distribution(out, self.mixture), obs=y)
        return out

    def negative_elbo(self, x: torch.Tensor, y: torch.Tensor, n_train: int) -> torch.Tensor:
        """-ELBO of the whole training set from one batch (one weight sample), per event."""
        scale = n_train / max(1, x.shape[0])
        return self._elbo.differentiable_loss(self.model, self.guide, x, y, scale) / n_train

    def posterior_mean(self) -> dict[str, torch.Tensor]:
        """The posterior mean of every weight and bias."""
        return {k: v for k, v in self.guide.median().items() if k in self.sites}

    def posterior_sample(self) -> dict[str, torch.Tensor]:
        """One draw of every weight and bias from the posterior (torch's random stream)."""
        trace = poutine.trace(self.guide).get_trace(torch.zeros(1, *self.input_shape), None)
        return {k: trace.nodes[k]["value"].detach() for k in self.sites}

    def forward_with(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The network's output with the given weights."""
        with poutine.condition(data=weights):
            return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output at the posterior-mean weights (deterministic); regression: the mean of
        the predicted distribution (N, 1)."""
        out = self.forward_with(self.posterior_mean(), x)
        if self.task == "classification":
            return out
        logits, mu, _ = mixture_parts(out, self.mixture)
        return (torch.softmax(logits, dim=1) * mu).sum(1, keepdim=True)


def sample_outputs(model: BayesianNet, inputs: np.ndarray, n_samples: int, seed: int,
                   to_tensor, batch: int = 4096) -> np.ndarray:
    """Outputs (n_samples, N, outputs) for ``n_samples`` weight draws (seeded), each applied
    to every event; ``to_tensor`` turns an input chunk into the network's input tensor."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        draws = [model.posterior_sample() for _ in range(n_samples)]
    finally:
        torch.random.set_rng_state(gen_state)
    out = []
    with torch.no_grad():
        for w in draws:
            out.append(np.concatenate([
                model.forward_with(w, to_tensor(inputs[s:s + batch])).double().numpy()
                for s in range(0, len(inputs), batch)]))
    return np.stack(out)
