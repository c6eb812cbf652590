"""xmcfit: plan, train and evaluate extreme multi-label classifiers that fit the GPU you have."""

__version__ = "0.1.0"
