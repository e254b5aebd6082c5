"""Bundle format: its layout (``layout``), manifest schema, and file integrity (light; used on the device)."""

from edgekit.bundle.files import staged_directory, verify_all, verify_file
from edgekit.bundle.layout import hash_tree, sha256_file
from edgekit.bundle.manifest import FORMAT_VERSION, MANIFEST_NAME, Manifest, ModelEntry, Preprocess, TensorSpec

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Manifest",
    "ModelEntry",
    "Preprocess",
    "TensorSpec",
    "hash_tree",
    "sha256_file",
    "staged_directory",
    "verify_all",
    "verify_file",
]
