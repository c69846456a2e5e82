"""Model providers seen from our side: the upstream client (retries, failover, deadlines),
the one error classifier, model ids, Responses <-> Chat conversion, the model catalogue."""
