"""`python -m engine.train`: runs engine.train.worker."""
from engine.runs.processes import exit_now
from engine.train.worker import main

exit_now(main())  # once its last word is written; no slow interpreter teardown
