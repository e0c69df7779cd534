"""bench: scale-vs-performance benchmarks of CNN, RNN and Transformer models.

`python -m bench --help` lists the verbs. Framework-neutral modules (spec, data, init,
measure, records, train, aggregate, report) import neither torch nor tensorflow.
"""

__version__ = "0.1.0"
