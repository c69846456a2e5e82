"""One module per command (``ng_run``, ``ng_collect_rollouts``, ``ng models``, ...); the
console scripts in ``nemo_gym_cli.cli`` only parse, call these and set the exit code."""
