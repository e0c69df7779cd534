"""The contract `torch_backend` and `tf_backend` both fulfil, and how to pick one.

Each backend module exposes the same names:

    NAME: str                                    "torch" or "tf"
    setup(threads, device, seed) -> dict         pin threads (intra `threads`, inter-op 1)
                                                 before any framework op, seed the
                                                 framework's RNGs, resolve device
                                                 auto|cpu|cuda; returns {"device": "cpu" or
                                                 "cuda", "device_name", "framework_version"}
    build(spec) -> model                         the model for RunSpec `spec`, initialised
                                                 from bench.init.init_weights(spec)
    n_params(model) -> int                       trainable parameters
    snapshot(model) -> state; restore(model, state)   copy / put back every variable
                                                 (weights and normalisation statistics):
                                                 the loop tests the best validation epoch
    get_weights(model) -> list[np.ndarray]       canonical layout/order (spec.weight_shapes)
    set_weights(model, list[np.ndarray])
    to_device(array) -> tensor                   one whole split, kept on the device
    take(tensor, idx: np.ndarray) -> tensor      rows `idx` of a device tensor (a batch)
    Trainer(model, spec)                         owns optimizer state; methods:
        .step(xb, yb, lr: float) -> tensor       one optimizer step at learning rate lr,
                                                 including the L2 penalty and decoupled
                                                 weight decay; returns the mean batch loss
                                                 (data loss + penalty) as a device scalar
        .evaluate(x, y, batch) -> (loss, acc)    eval mode, data loss only, python floats
        .predict(x, batch) -> np.ndarray         eval-mode outputs (logits), for parity tests
        .infer(xb) -> tensor                     one eval-mode forward pass (timing)
    scalar(tensor) -> float                      reads a device scalar (synchronises)
    sync()                                       waits for queued device work
    reset_peak_memory(); peak_memory() -> int | None   device bytes (None on CPU)
    is_oom(exc) -> bool                          the exception means out of memory

The loop in `bench.train` is written once against this contract.

Model definitions (must match spec.weight_shapes exactly in count, order, layout; trainable param
count must equal
spec.param_count(family, size, dataset, spec.batchnorm)). Input numpy layouts: image (N,H,W,C)
float32, series (N,L,C)
float32, tokens (N,L) int64 (class labels int64 (N,)). info = spec.info; arch = spec.arch; n_out =
info.n_outputs
(1 => binary, one logit, sigmoid/BCE-with-logits; else softmax cross-entropy over n_out logits).
- cnn: tokens -> Embedding(vocab, embed) giving (L, embed). Then conv1 (Conv2D 3x3 on images, Conv1D
  k=3 on series/
  embedded tokens), padding from spec.cnn_geometry(shape)[0] ('valid' or 'same'), stride 1, ->
  [BatchNorm if
  spec.batchnorm] -> ReLU -> MaxPool(2) (floor) -> conv2 same way -> [BN] -> ReLU -> MaxPool(2) ->
  flatten in
  CHANNELS-LAST order (H,W,C) -> [Dropout(spec.dropout) if >0] -> Dense(dense, relu) -> [Dropout] ->
  Dense(n_out).
- lstm / gru: tokens -> Embedding(vocab, embed); images (H,W,C) are read row by row as H steps of
  W*C features
  (reshape); series (L,C) as is. Then `layers` recurrent layers of `hidden` units, each returning
  the full sequence
  except the last which returns its final hidden state; Dropout(spec.dropout) between layers (on the
  sequence) when >0.
  Then [BatchNorm on the final hidden state] -> [Dropout] -> Dense(n_out). Gate nonlinearities:
  sigmoid gates, tanh.
  LSTM canonical: kernel (in,4h), recurrent_kernel (h,4h), bias (4h), gate order i,f,c,o (Keras =
  torch's i,f,g,o).
  Torch nn.LSTM has a second bias (bias_hh): keep it at zero and frozen (requires_grad False) so
  trainable counts match.
  GRU canonical = Keras reset_after=True: kernel (in,3h), recurrent_kernel (h,3h), bias (2,3h)
  [input bias row,
  recurrent bias row], gate order z,r,h; torch nn.GRU uses order r,z,n with b_ih,b_hh — same math,
  reorder gates.
  Do NOT use recurrent dropout (Keras would leave the fused kernel).
- transformer: tokens -> Embedding(vocab, d); series/images -> Dense proj (features -> d) (images
  row by row as above).
  Add sinusoidal positional encoding (not trainable): pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos,
  2i+1] = cos(same).
  `layers` pre-LN encoder blocks: x = x + Drop(Attn(LN1(x))); x = x + Drop(FF(LN2(x))), FF =
  Dense(ff, relu) ->
  Dense(d). Attn = own implementation with four Dense d->d layers q,k,v,o: split into `heads` heads
  of d/heads, scores
  = q k^T / sqrt(d/heads), softmax over keys, no mask, weighted sum of v, merge heads, o projection.
  After blocks: final
  LN (name "ln"), mean over the sequence, [BatchNorm on pooled features], [Dropout], Dense(n_out)
  head.
  LayerNorm eps = spec.LAYERNORM_EPS. (torch: you may use F.scaled_dot_product_attention.)
- BatchNorm: eps spec.BATCHNORM_EPS, running-average momentum spec.BATCHNORM_MOMENTUM in the Keras
  sense (torch
  momentum = 1 - that). Only gamma/beta are trainable; running stats are not weights in the
  canonical list.
- Dropout rate spec.dropout (0 => no dropout layers needed); active only in training step.
Initialisation: build(spec) must call bench.init.init_weights(spec) and set_weights with it (so both
frameworks start
from identical weights for a seed). set_weights/get_weights convert between canonical (Keras) layout
and yours.

Training semantics (one meaning, both frameworks — the other backend is written in parallel by
someone else, so
follow this exactly):
- Loss: mean over batch of softmax CE with logits (n_out>1) or BCE with logits (n_out==1, labels 0/1
  float).
- L2 (spec.l2 > 0): add spec.l2 * sum(w**2) over every trainable weight with ndim >= 2 (kernels,
  recurrent kernels,
  embeddings) to the loss inside the step. The step returns the total loss (data + penalty).
- Decoupled weight decay (spec.weight_decay > 0): in every step, for every trainable weight with
  ndim >= 2,
  p <- p - lr * weight_decay * p, applied to the weights BEFORE the optimizer update (same as torch
  AdamW order),
  for any optimizer (adamw = adam + decoupled decay; spec resolves the default 0.01). Do it
  manually; do not use the
  frameworks' weight_decay arguments.
- Optimizers (spec.OPTIMIZERS): sgd: p -= lr*g. momentum: v = 0.9*v + g; p -= lr*v (torch SGD
  momentum=0.9;
  Keras SGD(momentum=0.9) is equivalent). nesterov: torch SGD(nesterov=True, momentum=0.9) / Keras
  SGD(nesterov=True).
  adam and adamw: betas spec.ADAM_BETAS, eps spec.EPSILON (=1e-8; Keras default is 1e-7, override!),
  no amsgrad.
  rmsprop: rho spec.RMSPROP_RHO (torch alpha=0.9), eps spec.EPSILON, no momentum, not centered.
  Check how each
  framework adds eps (outside vs inside sqrt) and make them equal (outside sqrt: g / (sqrt(v) +
  eps)).
- The learning rate is given per step by the caller (schedules are computed by the shared loop): set
  it on the
  optimizer each step without retracing/recompiling (TF: a tf.Variable /
  optimizer.learning_rate.assign inside the
  compiled function with lr passed as a tensor argument; torch: param_group["lr"]).
- Batches may have different sizes (full batch = whole train set; last partial batches are dropped
  by the loop, but
  evaluate() sees a partial last batch) — avoid retracing per step in TF (input_signature with None
  batch dim or
  reduce_retracing).
- spec.compile: torch -> torch.compile the model/step; TF -> tf.function(jit_compile=True) for the
  train step.
  Without it: torch eager, TF tf.function (graph mode, no XLA).
- setup(threads, device, seed): set threads BEFORE any other framework work
  (torch.set_num_threads(threads),
  torch.set_num_interop_threads(1) — this raises if called twice/after work, tolerate that; TF:
  tf.config.threading.set_intra_op_parallelism_threads(threads),
  set_inter_op_parallelism_threads(1)), seed
  (torch.manual_seed; keras.utils.set_random_seed), make CPU runs deterministic (TF:
  tf.config.experimental.
  enable_op_determinism() is acceptable if it does not slow things much; torch: deterministic by
  default on CPU),
  resolve device "auto" -> cuda if available else cpu; "cuda" requested but unavailable -> raise
  bench.spec.SpecError("device 'cuda' requested but no GPU is visible to <framework>"). TF GPU:
  enable memory growth.
- Memory: torch cuda max_memory_allocated after reset_peak_memory_stats; TF
  tf.config.experimental.get_memory_info(
  'GPU:0')['peak'] after reset_memory_stats('GPU:0'); return None on CPU.
- is_oom(exc): torch.cuda.OutOfMemoryError, RuntimeError whose text says "out of memory" or "can't
  allocate memory"
  (CPU allocator); TF tf.errors.ResourceExhaustedError; also MemoryError.
- PERFORMANCE matters: this is a benchmark tool and the two frameworks must not be handicapped by
  our code. Keep the
  step lean (no host syncs inside step(), data stays on device, gather batches on device). Measure
  your backend: the
  seed CNN on "mnist" shapes (random data 28x28x1, batch 64, adam) — reference on this 2-core
  machine: PyTorch eager
  about 2,950 samples/s on 2 threads, Keras graph mode about 4,250 on 2 threads. Note the machine is
  shared and noisy.
  You cannot load the real mnist file; build a RunSpec with dataset "mnist" and random numpy arrays
  of the right shape.

Tests for each backend live in tests/test_<backend>.py (one framework per test process).
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {"torch": "bench.torch_backend", "tf": "bench.tf_backend"}


def load_backend(framework: str) -> ModuleType:
    """Import one backend; a process must never import both frameworks."""
    return importlib.import_module(MODULES[framework])
