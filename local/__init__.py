"""The offline stack (never deployed): embedded AWS, the HTTP API and the queue consumers on one machine."""
