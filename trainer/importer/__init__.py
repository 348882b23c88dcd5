"""Import generators condgen did not train (ONNX, TorchScript, a PyTorch class and its weights):
wrapped in condgen's own signature, checked against their source, served like the zoo."""

from .importing import ImportReport, import_model
from .options import ImportOptions, ImportRefused

__all__ = ["ImportOptions", "ImportRefused", "ImportReport", "import_model"]
