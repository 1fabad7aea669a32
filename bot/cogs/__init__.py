"""Discord command surfaces, one extension each."""
