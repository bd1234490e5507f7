"""`python -m engine.evaluate`: runs engine.evaluate.worker."""
import sys

from engine.evaluate.worker import main

sys.exit(main())
