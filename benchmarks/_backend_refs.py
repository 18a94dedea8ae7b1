"""Per-backend references for bench_latency: what a user would write without skdc.

``bare_value_and_grad``: a compiled forward and gradient of the mean cross-entropy with
respect to one tied code (``tf.function`` + ``GradientTape`` / ``jax.jit(jax.value_and_grad)``
over ``stateless_call``), the floor of one adaptation step. ``eager_recipe``: the original
recipe's loop (gradient divided by its RMS + 1e-5, step 0.1) with the backend's own autodiff,
uncompiled.
"""

from __future__ import annotations

import keras
import numpy as np


def _loss_fn(model, X, y):
    from keras import ops

    def loss(code, weights):
        z = ops.tile(code, (X.shape[0], 1))
        out, _ = model.stateless_call([], weights, [X, z], training=False)
        picked = ops.take_along_axis(out, ops.expand_dims(ops.convert_to_tensor(y), 1), axis=1)
        return -ops.mean(ops.log(ops.clip(picked, 1e-7, 1.0)))

    return loss


def _setup(model):
    """The backend's name, the (frozen) model's weights and the code size."""
    weights = [v.value for v in model.non_trainable_variables]
    return keras.backend.backend(), weights, model.inputs[1].shape[-1]


def bare_value_and_grad(model, X, y):
    """A function that runs one compiled value-and-gradient step and waits for it."""
    backend, weights, d = _setup(model)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        fn = jax.jit(jax.value_and_grad(_loss_fn(model, jnp.asarray(X), y)))
        code = jnp.zeros((1, d))
        return lambda: fn(code, weights)[1].block_until_ready()
    if backend == "tensorflow":
        import tensorflow as tf

        loss = _loss_fn(model, tf.constant(X), y)

        @tf.function(autograph=False)
        def step(code):
            with tf.GradientTape() as tape:
                tape.watch(code)
                value = loss(code, weights)
            return value, tape.gradient(value, code)

        code = tf.zeros((1, d))
        concrete = step.get_concrete_function(code)
        return lambda: concrete(code)[1].numpy()
    import torch

    loss = _loss_fn(model, torch.as_tensor(X), y)
    plain = [w.detach() for w in weights]

    def step():
        code = torch.zeros((1, d), requires_grad=True)
        value = loss(code, plain)
        return torch.autograd.grad(value, code)[0]

    return step


def eager_recipe(model, X, y):
    """``run(n)``: ``n`` eager steps of the original recipe on one tied code."""
    backend, weights, d = _setup(model)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        grad = jax.value_and_grad(_loss_fn(model, jnp.asarray(X), y))

        def run(n):
            code = jnp.zeros((1, d))
            for _ in range(n):
                _, g = grad(code, weights)
                code = code - 0.1 * g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)
            return np.asarray(code)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        loss = _loss_fn(model, tf.constant(X), y)

        def run(n):
            code = tf.Variable(tf.zeros((1, d)))
            for _ in range(n):
                with tf.GradientTape() as tape:
                    value = loss(code, weights)
                g = tape.gradient(value, code)
                code.assign_sub(0.1 * g / (tf.sqrt(tf.reduce_mean(g * g)) + 1e-5))
            return code.numpy()

        return run
    import torch

    loss = _loss_fn(model, torch.as_tensor(X), y)
    plain = [w.detach() for w in weights]

    def run(n):
        code = torch.zeros((1, d), requires_grad=True)
        for _ in range(n):
            (g,) = torch.autograd.grad(loss(code, plain), code)
            with torch.no_grad():
                code -= 0.1 * g / (torch.sqrt(torch.mean(g * g)) + 1e-5)
        return code.detach().numpy()

    return run
