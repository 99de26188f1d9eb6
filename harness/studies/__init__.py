"""Search and test units: Optuna studies on SQLite, a journal file or PostgreSQL, shared by workers."""
