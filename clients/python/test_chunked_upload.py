#!/usr/bin/env python3
"""Upload a file to depot: ``test_chunked_upload.py <file_path>``.

The seed's script name, kept for those who run it, and the chunked API it
is named for: a thin wrapper around
``python -m depot_client upload --method seed``, which sends the file in
pieces over ``/api/files/upload/chunked``, skips pieces the server already
has (by their BLAKE3) and resumes when run again. The server comes from ``DEPOT_SERVER``
(default http://localhost:8080). Prints the file id last.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from depot_client.cli import main  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: test_chunked_upload.py <file_path>", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(["upload", "--method", "seed", sys.argv[1]]))
