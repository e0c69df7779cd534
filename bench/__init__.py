"""bench: scale-vs-performance benchmarks of CNN, RNN and Transformer models.

`python -m bench --help` lists the verbs. Framework-neutral modules (spec, data, init,
measure, records, train, aggregate, report) import neither torch nor tensorflow.
"""

# 0.2.0: train accuracy on a test-sized subset, shorter inference blocks (records of 0.1.0
# scored the whole training set); the record's bench_version tells them apart.
__version__ = "0.2.0"
