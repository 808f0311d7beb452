"""One run: the loop, its phases, model slots, scoring, checkpoints, faults and the worker process."""
