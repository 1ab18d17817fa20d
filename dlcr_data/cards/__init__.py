"""The dataset card: its template and the code that turns a manifest into plain data for it."""
