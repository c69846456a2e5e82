"""OpenAI's wire shapes, as our servers speak them: what the kernel and the adapters share.

``conversion`` (Responses <-> Chat Completions, and a Responses object completed to every
field OpenAI's ``Response`` has), ``usage`` (usage objects summed and converted between the
two APIs' names), ``streams`` (server-sent events both ways), ``errors`` (what an error
body from an OpenAI-compatible provider means: the one classifier). Pure functions on plain
dicts: no I/O, no client. The client to a provider is ``nemo_gym_cli.providers``'.
"""
