"""`python -m engine.export`: runs engine.export.worker."""
import sys

from engine.export.worker import main

sys.exit(main())
