"""`python -m engine.chat`: runs engine.chat.worker."""
from engine.chat.worker import main
from engine.runs.processes import exit_now

exit_now(main())  # once its last word is written; no slow interpreter teardown
