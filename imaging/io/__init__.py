"""Reading CT volumes and label maps into the canonical orientation (RAS+; the readers land next)."""
