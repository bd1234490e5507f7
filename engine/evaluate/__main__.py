"""`python -m engine.evaluate`: runs engine.evaluate.worker."""
from engine.evaluate.worker import main
from engine.runs.processes import exit_now

exit_now(main())  # once its last word is written; no slow interpreter teardown
