"""exportq: turn PyTorch models into validated TorchScript, PNNX and ncnn artifacts.

This package is the torch-free core shared by the client, the API and the workers.
"""

__version__ = "0.1.0"
