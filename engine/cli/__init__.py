"""The headless commands `python app.py` dispatches, one module per family: train (train, convert), jobs
(chat, export), many (sweep, compare, queue), tools (launch-script, identity).

Light package, like config/ runs/ data/ preflight/: it imports those and never torch or any ML library; the
work itself runs in worker processes.
"""
