"""bfloat16 compute on this CPU: is a ``compute_dtype`` option worth it for the seed workload?

The question (issue item): this CPU has AVX512_BF16 (and AMX_BF16), which could double
matmul throughput. A ``compute_dtype`` option is worth adding if bf16 gives >= 1.5 x on
the seed workload's adaptation step with codes within 1e-2 of float32. Measured side by
side in one process, runs interleaved round-robin, medians, for JAX (``jax.jit``) and
TensorFlow (``tf.function``, without and with ``jit_compile=True``):

(a) a plain matmul of the seed workload's size, 2000 x 512 @ 512 x 512, fp32 vs bf16;
(b) the adaptation step: value and gradient of the mean cross-entropy with respect to
    one tied 50-d code, through the seed network's weights (taken from ``code_model()``),
    written directly in jnp / tf ops. ``full``: every step runs the whole network, as the
    recipe does (``X @ W1`` included); ``split``: the first layer's ``X @ W1 + b1`` is
    computed once outside the step, as skdc's engine does. The tied code's branch
    ``z @ B_l`` is computed once and broadcast to the rows (the same values as
    broadcasting ``z`` to the rows first). Variants:
      * ``fp32``;
      * ``bf16 matmul``: weights and activations cast to bf16 for every matmul (fp32
        accumulation inside the kernel, output rounded to bf16), bias, code branch sum,
        sigmoid and softmax/cross-entropy in fp32 (mixed precision with fp32 elementwise);
      * ``bf16 all``: as Keras' ``mixed_bfloat16`` policy computes: activations stay bf16
        between layers (bias and sigmoid in bf16), logits cast to fp32 for the softmax
        and cross-entropy.
    The code itself stays fp32 (it is cast to bf16 where it enters a matmul), and so does
    the gradient returned.
(c) accuracy: 100 steps from the zero code with each bf16 variant (on the split network
    only those >= 1.5 x), under two update rules: the seed recipe's (gradient divided by
    its RMS, times 0.1) and skdc's default (Adam, lr 0.05); max |code - code_fp32|
    against TF tf.function's fp32 run on the full network with the same rule (every fp32
    step, JAX or TF, full or split, gives the same gradient to rounding: printed), the
    final loss as the variant computes it, and the fp32 loss at the variant's final code.

The verdict: does any (network, backend, bf16 variant) give >= 1.5 x with codes within
1e-2 under both update rules?

    python benchmarks/bench_bf16.py           # 2-3 minutes (123 s at load 2-3, 167 s at 6)
    python benchmarks/bench_bf16.py --quick   # 5 timed runs per case instead of 10 (the
                                              # accuracy runs, most of the time, unchanged)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["KERAS_BACKEND"] = "tensorflow"  # the seed model and its labels are built in TF

from _common import (  # noqa: E402  (first: it imports skdc, which quiets TF's start-up)
    banner,
    code_model,
    footer,
    keras,
    make_data,
    np,
    ratio,
    run_cases,
    table,
)

# isort: split
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import tensorflow as tf  # noqa: E402

SPEEDUP_TARGET = 1.5
CODE_TOLERANCE = 1e-2
VARIANTS = ("fp32", "bf16 matmul", "bf16 all")
BACKENDS = ("JAX jit", "TF tf.function", "TF jit_compile=True")
RULES = ("recipe", "adam")
REFERENCE = "TF tf.function"  # whose fp32 run the bf16 codes are compared with


# -- the seed network's weights -------------------------------------------------------
def seed_weights(model):
    """``[(W, b, B), ...]`` per hidden layer and ``(Wo, bo)``, in network order (float32)."""
    hidden = []
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    for add in adds:
        dense = [t._keras_history.operation for t in add._inbound_nodes[0].input_tensors]
        (main,) = [d for d in dense if d.use_bias]
        (code,) = [d for d in dense if not d.use_bias]
        hidden.append((main.kernel.numpy(), main.bias.numpy(), code.kernel.numpy()))
    out = model.layers[-1]
    return hidden, (out.kernel.numpy(), out.bias.numpy())


# -- JAX ---------------------------------------------------------------------------------
def jax_step(weights, X, y, variant, split):
    """A jitted ``code -> (loss, grad)`` of the given variant."""
    hidden, (Wo, bo) = weights
    low = jnp.float32 if variant == "fp32" else jnp.bfloat16
    ew = jnp.bfloat16 if variant == "bf16 all" else jnp.float32  # elementwise dtype
    Ws = [jnp.asarray(W, low) for W, _, _ in hidden]
    bs = [jnp.asarray(b, ew) for _, b, _ in hidden]
    Bs = [jnp.asarray(B, low) for _, _, B in hidden]
    Wo_, bo_ = jnp.asarray(Wo, low), jnp.asarray(bo, jnp.float32)
    yj = jnp.asarray(y, jnp.int32)
    if split:  # the first layer's feature part, once, in fp32 (as skdc's frontier)
        pre1 = jnp.asarray(X @ hidden[0][0] + hidden[0][1], ew)
        x_in = None
    else:
        pre1 = None
        x_in = jnp.asarray(X, low)

    def loss(code):
        c = code.astype(low)[None, :]
        h = None
        for i in range(len(Ws)):
            zb = (c @ Bs[i]).astype(ew)
            if i == 0 and split:
                pre = pre1 + zb
            else:
                pre = (x_in if i == 0 else h) @ Ws[i]
                pre = pre.astype(ew) + bs[i] + zb
            h = jax.nn.sigmoid(pre).astype(low)
        logits = (h @ Wo_).astype(jnp.float32) + bo_
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, yj[:, None], axis=1))

    vg = jax.jit(jax.value_and_grad(loss))

    def step(code):
        value, grad = vg(jnp.asarray(code, jnp.float32))
        return float(value), np.asarray(grad, np.float32)

    zero = jnp.zeros(hidden[0][2].shape[0], jnp.float32)

    def timed():
        return jax.block_until_ready(vg(zero))

    return step, timed


def jax_matmul(dtype):
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((2000, 512)), dtype)
    b = jnp.asarray(rng.standard_normal((512, 512)) / np.sqrt(512), dtype)
    f = jax.jit(jnp.matmul)
    return lambda: jax.block_until_ready(f(a, b))


# -- TensorFlow --------------------------------------------------------------------------
def tf_step(weights, X, y, variant, split, jit):
    hidden, (Wo, bo) = weights
    low = tf.float32 if variant == "fp32" else tf.bfloat16
    ew = tf.bfloat16 if variant == "bf16 all" else tf.float32
    Ws = [tf.constant(W, low) for W, _, _ in hidden]
    bs = [tf.cast(tf.constant(b), ew) for _, b, _ in hidden]
    Bs = [tf.constant(B, low) for _, _, B in hidden]
    Wo_, bo_ = tf.constant(Wo, low), tf.constant(bo, tf.float32)
    yt = tf.constant(y, tf.int32)
    if split:
        pre1 = tf.cast(tf.constant(X @ hidden[0][0] + hidden[0][1]), ew)
        x_in = None
    else:
        pre1 = None
        x_in = tf.cast(tf.constant(X), low)

    def loss(code):
        c = tf.cast(code, low)[None, :]
        h = None
        for i in range(len(Ws)):
            zb = tf.cast(tf.matmul(c, Bs[i]), ew)
            if i == 0 and split:
                pre = pre1 + zb
            else:
                pre = tf.matmul(x_in if i == 0 else h, Ws[i])
                pre = tf.cast(pre, ew) + bs[i] + zb
            h = tf.cast(tf.sigmoid(pre), low)
        logits = tf.cast(tf.matmul(h, Wo_), tf.float32) + bo_
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yt, logits))

    d = hidden[0][2].shape[0]

    @tf.function(input_signature=[tf.TensorSpec([d], tf.float32)], jit_compile=jit,
                 autograph=False)
    def vg(code):
        with tf.GradientTape() as tape:
            tape.watch(code)
            value = loss(code)
        return value, tape.gradient(value, code)

    vg = vg.get_concrete_function()

    def step(code):
        value, grad = vg(tf.constant(code, tf.float32))
        return float(value), grad.numpy()

    zero = tf.zeros([d], tf.float32)

    def timed():
        value, _ = vg(zero)
        return value.numpy()

    return step, timed


def tf_matmul(dtype, jit):
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((2000, 512)), dtype)
    b = tf.constant(rng.standard_normal((512, 512)) / np.sqrt(512), dtype)
    f = tf.function(tf.matmul, jit_compile=jit, autograph=False).get_concrete_function(a, b)
    return lambda: f(a, b)


# -- the runs ----------------------------------------------------------------------------
def make_step(backend, weights, X, y, variant, split):
    if backend == "JAX jit":
        return jax_step(weights, X, y, variant, split)
    return tf_step(weights, X, y, variant, split, jit=backend == "TF jit_compile=True")


def descend(step, d, steps, rule):
    """``steps`` updates from the zero code; returns the code and the loss there.

    ``recipe``: the seed recipe's update, gradient / (its RMS + 1e-5) times 0.1.
    ``adam``: skdc's default optimizer and rate (Adam, lr 0.05, 0.9 / 0.999 / 1e-8).
    """
    code = np.zeros(d, np.float64)
    m, v = np.zeros(d), np.zeros(d)
    for t in range(1, steps + 1):
        g = step(code.astype(np.float32))[1].astype(np.float64)
        if rule == "recipe":
            code -= 0.1 * g / (np.sqrt(np.mean(np.square(g))) + 1e-5)
        else:
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            code -= 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    code = code.astype(np.float32)
    return code, step(code)[0]


def check_forward(model, weights, X):
    """The fp32 network written here equals the Keras model (guards the weight order)."""
    hidden, (Wo, bo) = weights
    code = np.random.default_rng(5).standard_normal((1, hidden[0][2].shape[0])).astype(np.float32)
    h = X[:256].astype(np.float64)
    for W, b, B in hidden:
        h = 1.0 / (1.0 + np.exp(-(h @ W + b + code @ B)))
    logits = h @ Wo + bo
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref = model([X[:256], np.repeat(code, 256, 0)], training=False).numpy()
    err = float(np.abs(p - ref).max())
    assert err < 1e-4, f"direct network differs from the Keras model by {err}"
    return err


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case")
    parser.add_argument("--steps", type=int, default=100, help="descent steps for accuracy")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="5 timed runs per case")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 5
    t_start = time.perf_counter()
    model = code_model()
    X, y, _ = make_data(model, args.rows)
    weights = seed_weights(model)
    d = weights[0][0][2].shape[0]
    err = check_forward(model, weights, X)
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    isa = ", ".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags)
    banner("bfloat16 compute on this CPU",
           f"seed model (440 -> 3 x 512 + 50-d code -> 183); {args.rows} rows; one tied code; "
           f"value + gradient w.r.t. the code; median of {args.repeats} interleaved runs")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (default on)")
    print(f"CPU flags: {isa or 'none of avx512_bf16/amx_bf16'}; JAX {jax.__version__}; "
          f"TF_ENABLE_ONEDNN_OPTS={onednn}; "
          f"direct fp32 network vs Keras model: max |p diff| {err:.1e}\n", flush=True)

    # (a) matmul ----------------------------------------------------------------------
    flop = 2 * 2000 * 512 * 512
    cases = {}
    for dtype_name in ("fp32", "bf16"):
        cases[("JAX jit", dtype_name)] = jax_matmul(jnp.float32 if dtype_name == "fp32"
                                                    else jnp.bfloat16)
        for jit in (False, True):
            backend = "TF jit_compile=True" if jit else "TF tf.function"
            cases[(backend, dtype_name)] = tf_matmul(tf.float32 if dtype_name == "fp32"
                                                     else tf.bfloat16, jit)
    res = run_cases(cases, args.repeats * 4)
    rows = []
    for backend in BACKENDS:
        base = res[(backend, "fp32")]["median"]
        for dtype_name in ("fp32", "bf16"):
            t = res[(backend, dtype_name)]["median"]
            rows.append([backend, dtype_name, t * 1e3, flop / t / 1e9, ratio(base, t)])
    print("(a) matmul 2000 x 512 @ 512 x 512\n")
    print(table(["backend", "dtype", "ms", "GFLOP/s", "speed-up vs fp32"], rows) + "\n",
          flush=True)

    # (b) step timing, (c) accuracy -------------------------------------------------
    summary = []
    for split in (False, True):
        workload = "split" if split else "full"
        steps = {(b, v): make_step(b, weights, X, y, v, split) for b in BACKENDS for v in VARIANTS}
        res = run_cases({k: s[1] for k, s in steps.items()}, args.repeats)
        speed = {k: ratio(res[(k[0], "fp32")]["median"], r["median"]) for k, r in res.items()}
        # accuracy: every bf16 variant on the full network; on the split network those
        # fast enough to meet the speed-up target. Reference for both: TF tf.function's
        # fp32 run on the full network (all fp32 steps agree to rounding, checked below)
        if not split:
            ref_step = steps[(REFERENCE, "fp32")][0]
            ref = {r: descend(ref_step, d, args.steps, r) for r in RULES}
        todo = [k for k in steps if k[1] != "fp32" and (not split or speed[k] >= SPEEDUP_TARGET)]
        acc = {(k, r): descend(steps[k][0], d, args.steps, r) for k in todo for r in RULES}
        if not split:
            acc.update({((REFERENCE, "fp32"), r): ref[r] for r in RULES})
        rows = []
        for k in steps:
            row = [k[0], k[1], res[k]["median"] * 1e3, res[k]["first"], speed[k]]
            diffs = []
            for r in RULES:
                if (k, r) in acc:
                    code, own = acc[k, r]
                    diffs.append(float(np.abs(code - ref[r][0]).max()))
                    row += [f"{diffs[-1]:.2e}", f"{own:.4f} / {ref_step(code)[0]:.4f}"]
                else:
                    row += ["-", "-"]
            rows.append(row)
            if k[1] != "fp32":
                summary.append((workload, *k, speed[k], max(diffs) if diffs else float("nan")))
        title = ("full network (every step runs X @ W1, as the recipe)" if not split else
                 "split network (X @ W1 + b1 computed once outside the step, as skdc's engine; "
                 f"accuracy only for variants >= {SPEEDUP_TARGET} x)")
        print(f"(b, c) adaptation step, {title}; accuracy after {args.steps} steps from the "
              f"zero code (recipe: gradient / RMS x 0.1; adam: lr 0.05) against {REFERENCE} "
              f"fp32 on the full network; final loss as the variant computes it / fp32 loss "
              f"at its code\n")
        headers = ["backend", "variant", "ms/step", "first call s", "speed-up vs fp32"]
        for r in RULES:
            headers += [f"{r}: max |code - code_fp32|", f"{r}: final loss own / fp32"]
        print(table(headers, rows) + "\n", flush=True)
        code = ref[RULES[0]][0]
        g_ref = ref_step(code)[1]
        spread = max(float(np.abs(steps[(b, "fp32")][0](code)[1] - g_ref).max())
                     for b in BACKENDS) / float(np.abs(g_ref).max())
        print(f"fp32 steps of the three backends ({workload} network) at the reference's final "
              f"{RULES[0]} code (max |code| {float(np.abs(code).max()):.2f}): gradients agree "
              f"with the reference's to {spread:.1e} of max |gradient|\n", flush=True)

    met = [s for s in summary if s[3] >= SPEEDUP_TARGET and s[4] <= CODE_TOLERANCE]
    best = max(summary, key=lambda s: s[3])
    if met:
        names = "; ".join(f"{w} {b} {v} ({s:.2f} x, {dd:.2e})" for w, b, v, s, dd in met)
        print(f"Verdict: criterion (>= {SPEEDUP_TARGET} x with max code difference <= "
              f"{CODE_TOLERANCE:g} under both update rules) MET by: {names}")
    else:
        print(f"Verdict: criterion (>= {SPEEDUP_TARGET} x with max code difference <= "
              f"{CODE_TOLERANCE:g} under both update rules) NOT met on any backend; best "
              f"speed-up {best[3]:.2f} x ({best[0]} {best[1]} {best[2]}, max code difference "
              f"{best[4]:.2e})")
    print(f"(whole run {time.perf_counter() - t_start:.0f} s)")
    footer()


if __name__ == "__main__":
    main()
