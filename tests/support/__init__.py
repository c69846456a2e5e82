"""What tests share: free ports, /proc reading, real servers on loopback, the CLI as a
process, a wire for httpx transports. Import from the modules (``support.servers``, ...)."""
