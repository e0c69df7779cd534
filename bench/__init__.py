"""bench: scale-vs-performance benchmarks of CNN, RNN and Transformer models, and of an
encoder-decoder Transformer that translates.

`python -m bench --help` lists the verbs. Every module but the backends (torch_backend,
tf_backend with tf_optimizers) and the framework files of bench.models (torch.py, tf.py,
torch_layers, tf_layers) is framework-neutral: it imports neither torch nor tensorflow
(README, "Architecture").
"""

# The one version number (pyproject.toml reads it). It changes whenever what a record means
# changes; run-job redoes, and aggregate refuses, records of another version.
# 0.2.0: train accuracy on a test-sized subset, shorter inference blocks.
# 0.3.0: runs stop at a validation plateau and are tested at the best validation epoch's
#        weights; model memory above the pre-build baseline; warm-up of the runtime first.
# 0.4.0: the seq2seq family (run specs gain label_smoothing, so every run id changes).
# 0.5.0: one device read per timed block (step times per block), precision and GPU math
#        settings in the spec, the device peak of the training phase from epoch 2 on.
# 0.6.0: the article's size is named `article` (it was `seed`, read as a random seed), so
#        its runs' ids change; every other record holds what 0.5.0 wrote.
# 0.7.0: TensorFlow trains up to 32 steps per call into its graph (steps_per_call), so
#        its throughput and run times change; the record says how many.
__version__ = "0.7.0"
