"""retail_dp: the Product Affinity & Cross-Sell data product (a Dagster code location)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retail-dp")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
