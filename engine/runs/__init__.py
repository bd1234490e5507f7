"""A run folder and its processes (light: stdlib + yaml).

paths (where things live), atomic (files and folders that appear whole), events (the JSONL writer and
reader), metrics (the one table of metric names, units and charts), progress (the one fold from a
run's events to its state), store (finding runs in saves/ and summarising them), processes (the one
spawn helper, worker files, liveness), launcher (start / stop / resume training runs), queue (runs
waiting their turn) and queue_runner (the process that starts them), placement (which queued runs start
on which GPUs), sweep (one queued run per grid combination), compare (runs side by side, the best
marked), the clients of the chat, export and evaluation workers, torchrun (multi-process and SLURM
command lines), failures (exceptions in plain words) and trackers (the experiment trackers a run
reports to).
"""
