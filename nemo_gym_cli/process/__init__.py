"""Processes: the supervisor that starts and stops servers, the fork server it starts them
from, the head server, and what every process of ours runs with (the open-file limit, the
event loop and the garbage collector's tuning)."""
