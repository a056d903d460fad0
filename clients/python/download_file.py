#!/usr/bin/env python3
"""Download a file from depot: ``download_file.py <file_id> [output_path]``.

The seed's script name, kept for those who run it: a thin wrapper around
``python -m depot_client download``, which resumes a partial download
(``output_path.part``), verifies what it got and refuses to overwrite an
existing ``output_path``. The server comes from ``DEPOT_SERVER`` (default
http://localhost:8080).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from depot_client.cli import main  # noqa: E402

if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3 or sys.argv[1] in ("-h", "--help"):
        print("usage: download_file.py <file_id> [output_path]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(["download", *sys.argv[1:]]))
