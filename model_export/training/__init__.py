"""Code-switched encoder training: config, data, losses, trainer, CLI (torch lives here only)."""
