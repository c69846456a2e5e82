"""Model providers seen from our side: the upstream client (retries, failover, deadlines),
the model catalogue and start-up check, model ids as gateways write them. Only model
servers that forward to a provider (``openai_model``) and the commands that ask one
(``ng models``, dry-run prices) need it; the wire shapes are ``nemo_gym_cli.openai``'s."""
