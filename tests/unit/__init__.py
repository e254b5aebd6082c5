"""The unit lane (see conftest.py here): a package, so that its conftest is not a second top-level ``conftest``
module that would shadow tests/conftest.py for the modules importing from it."""
