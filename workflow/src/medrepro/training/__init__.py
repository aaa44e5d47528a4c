"""Training: a seeded, resumable loop (``loop.py``) and per-task trainers (``landmarks.py``)."""
