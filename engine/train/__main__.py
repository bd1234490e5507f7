"""`python -m engine.train`: runs engine.train.worker."""
import sys

from engine.train.worker import main

sys.exit(main())
