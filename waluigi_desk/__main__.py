"""``python -m waluigi_desk``: same as the ``waluigi-desk`` console script."""

import sys

from waluigi_desk.cli import main

if __name__ == "__main__":
    sys.exit(main())
