"""Collection: options, the engine that runs rollouts, rollout files, metrics."""
