"""Reading SB3 model files (by default without running the code a pickle may hold)."""

from edgekit.host.loading.model_zip import ModelFileInfo, inspect_model_zip
from edgekit.host.loading.sb3_zip import load_agent

__all__ = ["ModelFileInfo", "inspect_model_zip", "load_agent"]
