"""Client for depot, the deduplicating file server: uploads that send only
what the server lacks, downloads that resume and verify."""

from .api import Client, DepotError, Rejected
from .download import download
from .upload import upload

__version__ = "0.1.0"
__all__ = ["Client", "DepotError", "Rejected", "download", "upload", "__version__"]
