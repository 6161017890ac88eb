"""Mixed precision for any model: parameters stay float32 (and so do the optimizer state,
the gradients and batch-norm statistics), the model computes in `dtype`.

`Mixed(model, jnp.bfloat16).apply(variables, *args)` casts the floating parameters and
floating inputs to bfloat16, runs the model, and casts its floating outputs (logits,
carries, codes) back to float32, so that losses and softmaxes run in float32. Flax's
normalisation layers reduce in float32 whatever the input (`force_float32_reductions`).
`init`, attributes and methods other than `apply` are the model's own.
"""

import dataclasses

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
        tree,
    )


@dataclasses.dataclass(frozen=True)
class Mixed:
    model: object  # a flax module
    dtype: object  # a jnp dtype

    def apply(self, variables, *args, **kwargs):
        variables = {**variables, "params": _cast(variables["params"], self.dtype)}
        out = self.model.apply(variables, *_cast(args, self.dtype), **kwargs)
        return _cast(out, jnp.float32)

    def clone(self, **changes) -> "Mixed":
        return Mixed(self.model.clone(**changes), self.dtype)

    def __getattr__(self, name):
        if name in ("model", "dtype") or name.startswith("__"):  # copying, pickling
            raise AttributeError(name)
        return getattr(self.model, name)


def with_compute_dtype(models, dtype_name: str):
    """`models` (a module, or a tuple of them) computing in the named dtype."""
    dtype = COMPUTE_DTYPES[dtype_name]
    if dtype == jnp.float32:
        return models
    if isinstance(models, tuple):
        return tuple(Mixed(m, dtype) for m in models)
    return Mixed(models, dtype)
