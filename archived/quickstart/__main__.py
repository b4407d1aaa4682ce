"""python -m archived.quickstart (what `bash systemd/bootstrap.sh run` runs)."""

import sys

from archived.quickstart import main

sys.exit(main())
