"""Reading SB3 model files (by default without running the code a pickle may hold)."""

from edgekit.loading.sb3_zip import ModelFileInfo, inspect_model_zip, load_agent

__all__ = ["ModelFileInfo", "inspect_model_zip", "load_agent"]
