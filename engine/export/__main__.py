"""`python -m engine.export`: runs engine.export.worker."""
from engine.export.worker import main
from engine.runs.processes import exit_now

exit_now(main())  # once its last word is written; no slow interpreter teardown
