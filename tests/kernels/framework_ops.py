"""Framework ops behind the verify signature, for the torch and JAX array kinds (autograd)."""


def torch_cross_entropy(x, labels):
    import torch.nn.functional as F

    return F.cross_entropy(x, labels, reduction="none")


def jax_logsumexp(x):
    import jax

    return jax.nn.logsumexp(x, axis=-1)
