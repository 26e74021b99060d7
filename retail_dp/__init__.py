"""retail_dp: the Product Affinity & Cross-Sell data product (a Dagster code location)."""

import warnings
from importlib.metadata import PackageNotFoundError, version

# pandera imports pyspark.pandas when the [spark] extra is installed; the product never uses it
warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)

try:
    __version__ = version("retail-dp")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
