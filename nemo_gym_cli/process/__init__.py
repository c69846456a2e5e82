"""Processes: the supervisor that starts and stops servers, the fork server it starts them
from, the head server, and the open-file limit."""
