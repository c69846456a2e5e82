"""The templates ``ng init`` copies: ``resources_server/`` (an environment) and ``agent/``.

Each ``*.tmpl`` file is a ``string.Template``: ``${name}`` is the new folder's name
(``my_env``), ``${Class}`` its class name (``MyEnv``); ``NAME`` in a file name is replaced by
the name too. ``nemo_gym_cli/commands/init.py`` writes them; every template passes its own
test at once (``tests/test_init.py`` scaffolds each into a temporary directory and runs it).
"""
