"""taskctl: the operator's command line and web console for taskproc (never deployed)."""
