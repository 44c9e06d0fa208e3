"""Where moved keys live (the process environment, a ``.env`` file, the OS keyring) and the
atomic file writes every surface shares."""
