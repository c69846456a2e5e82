"""The templates ``ng init`` copies: ``resources_server/`` (an environment) and ``agent/``.

Each ``*.tmpl`` file is a ``string.Template``: ``${name}`` is the new folder's name
(``my_env``), ``${Class}`` its class name (``MyEnv``); ``NAME`` in a file name is replaced by
the name too. ``nemo_gym_cli/commands/init.py`` writes them; every template passes its own
test at once (``tests/test_init.py`` scaffolds each into a temporary directory and runs it).
"""

#: How to run what ``ng init <kind>`` made, offline: the configs to compose (``${folder}`` is
#: the new folder, e.g. ``resources_servers/my_env``) and the agent to collect with. A new
#: environment runs with the shipped agent, a new agent with the shipped weather environment.
RUN_WITH = {
    "resources_server": ("configs/offline_model.yaml,${folder}/configs/${name}.yaml", "${name}_simple_agent"),
    "agent": (
        "configs/offline_model.yaml,resources_servers/simple_weather/configs/simple_weather.yaml,"
        "${folder}/configs/${name}.yaml",
        "${name}",
    ),
}
