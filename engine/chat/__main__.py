"""`python -m engine.chat`: runs engine.chat.worker."""
import sys

from engine.chat.worker import main

sys.exit(main())
